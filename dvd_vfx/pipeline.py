"""Overlapping the host with the model: a prefetch thread and a background writer.

render.py predicts a shot window by window. Without overlap the host work (decoding and
resizing the next window's frames, the float16 store write of the last prediction) and the model
run one after the other; with the two helpers here the host work runs while the model predicts,
so a shot takes about max(host, model) instead of host + model.

- ``Prefetcher(items)``: iterates `items` (a generator that decodes) on a helper thread, at most
  `depth` items ahead. Each item must be released (``release()``) once the consumer is done
  with it, so the number of items alive is bounded (depth + 1) whatever the shot's length.
- ``BackgroundWriter(fn)``: runs ``fn(*args)`` on a helper thread, in order, with at most
  `depth` calls queued (``submit`` blocks while the queue is full).

Both behave like the inline code for errors: an exception of the helper thread is raised again
on the caller's thread (the same object) at the next call, and ``close()`` stops the helper and
waits for it. Warnings logged on a helper thread are held and logged again on the caller's thread
(the engine forwards a job's warnings from the job's thread only), in order, at the next call.

Standard library only.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable

_END = object()


class _HeldLogs(logging.Filter):
    """Holds the records a helper thread logs; `replay` logs them again on the caller's thread.

    Installed on the ``dvd_vfx`` loggers that exist and on the handlers of ``dvd_vfx`` and the
    root logger (a logger created later still reaches those), so each record is held once and
    reaches no handler from the helper's thread.
    """

    def __init__(self):
        super().__init__()
        self.helper: int | None = None
        self.records: queue.SimpleQueue = queue.SimpleQueue()
        self._installed: list[logging.Filterer] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.helper is None or threading.get_ident() != self.helper:
            return True
        if not getattr(record, "_dvd_vfx_held", False):
            record._dvd_vfx_held = True
            self.records.put(record)
        return False

    def install(self) -> None:
        names = ["dvd_vfx"] + [n for n in list(logging.Logger.manager.loggerDict) if n.startswith("dvd_vfx.")]
        targets: list[logging.Filterer] = [logging.getLogger(name) for name in names]
        targets += list(logging.getLogger("dvd_vfx").handlers) + list(logging.getLogger().handlers)
        for target in targets:
            target.addFilter(self)
            self._installed.append(target)

    def remove(self) -> None:
        for target in self._installed:
            target.removeFilter(self)
        self._installed.clear()

    def replay(self) -> None:
        while True:
            try:
                record = self.records.get_nowait()
            except queue.Empty:
                return
            record.thread, record.threadName = threading.get_ident(), threading.current_thread().name
            logging.getLogger(record.name).handle(record)


class Prefetcher:
    """Iterate `items` on a helper thread, at most `depth` items ahead of the consumer.

    ``for item in prefetcher: ...; prefetcher.release()``: release() says the consumer dropped
    its item, which lets the helper start on the next one (items alive <= depth + 1).
    """

    def __init__(self, items: Iterable, *, depth: int = 1, name: str = "dvd-vfx-prefetch"):
        self._items = iter(items)
        self._queue: queue.Queue = queue.Queue()
        self._slots = threading.Semaphore(depth + 1)  # the consumer's item and `depth` ahead
        self._stop = threading.Event()
        self._logs = _HeldLogs()
        self._logs.install()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._logs.helper = threading.get_ident()
        try:
            while not self._stop.is_set():
                while not self._slots.acquire(timeout=0.1):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                try:
                    item = next(self._items)
                except StopIteration:
                    self._queue.put((_END, None))
                    return
                self._queue.put((item, None))
                del item
        except BaseException as exc:  # raised again on the consumer's thread
            self._queue.put((None, exc))

    def __iter__(self):
        return self

    def __next__(self):
        item, exc = self._queue.get()
        self._logs.replay()
        if exc is not None:
            raise exc
        if item is _END:
            raise StopIteration
        return item

    def release(self) -> None:
        self._slots.release()

    def close(self) -> None:
        """Stop the helper (after the item it is making now) and wait for it; held warnings are logged."""
        self._stop.set()
        self._thread.join()
        self._logs.remove()
        self._logs.replay()
        while not self._queue.empty():  # drop prefetched items
            self._queue.get_nowait()
        close = getattr(self._items, "close", None)
        if close is not None:  # a generator: run its finally blocks now, on this thread
            close()


class BackgroundWriter:
    """Run ``fn(*args)`` calls in order on a helper thread, at most `depth` queued."""

    def __init__(self, fn: Callable, *, depth: int = 1, name: str = "dvd-vfx-writer"):
        self._fn = fn
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._raised = False
        self._logs = _HeldLogs()
        self._logs.install()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._logs.helper = threading.get_ident()
        while True:
            args = self._queue.get()
            if args is _END:
                return
            if self._error is None:  # after a failure the rest is dropped: the caller raises it
                try:
                    self._fn(*args)
                except BaseException as exc:
                    self._error = exc
            del args

    def _check(self) -> None:
        self._logs.replay()
        if self._error is not None and not self._raised:
            self._raised = True
            raise self._error

    def submit(self, *args) -> None:
        """Queue fn(*args); raises the exception of an earlier call, if one failed."""
        self._check()
        self._queue.put(args)

    def close(self) -> None:
        """Finish every queued call, stop the helper; raises the exception of a failed call."""
        self._queue.put(_END)
        self._thread.join()
        self._logs.remove()
        self._check()
