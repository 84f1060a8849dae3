"""The render worker: a thread that runs `dvd-vfx render` out of process and reports back.

It owns a ``nuke.ProgressTask`` (progress and its Cancel button) and the engine job; it never
touches a node or a knob. Everything for the node graph goes through the two callables it is
given (node.py passes its ``show_progress`` and ``render_ended``), queued with
``nuke.executeInMainThread`` so they run on Nuke's main thread.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable

from dvd_vfx.errors import DvdError
from dvd_vfx.hookspecs import hookimpl

from .shot import RenderRequest, progress_percent


def _nuke():
    import nuke

    return nuke


class _JobEvents:
    """Host plugin: the engine's job events (replayed on the worker thread) -> progress task + status line."""

    def __init__(self, worker: "RenderWorker", task):
        self.worker, self.task = worker, task
        self._last_status = None

    @hookimpl
    def dvd_vfx_job_progress(self, stage, done, total):
        self.task.setProgress(progress_percent(stage, done, total))
        text = f"{stage} {done}/{total}"
        self.task.setMessage(text)
        if text != self._last_status:  # one main-thread call per visible change
            self._last_status = text
            self.worker.to_main(self.worker.show_progress, self.worker.node_name,
                                f"rendering {self.worker.request.shot}: {text}")

    @hookimpl
    def dvd_vfx_job_log(self, level, message):
        if level in ("warning", "error"):
            self.task.setMessage(message.splitlines()[0] if message else level)

    @hookimpl
    def dvd_vfx_should_cancel(self):
        return self.worker.cancel_requested or bool(self.task.isCancelled())


class RenderWorker:
    """One render of one DVD Depth node (request: resolved on the main thread).

    The callables run on Nuke's main thread: ``show_progress(node_name, text)`` on each visible
    progress change, ``render_ended(node_name, worker, result, error)`` once, at the end.
    """

    poll_interval_s = 0.1

    def __init__(self, node_name: str, request: RenderRequest, *, show_progress: Callable[[str, str], None],
                 render_ended: Callable[[str, "RenderWorker", object, "DvdError | None"], None]):
        self.node_name = node_name
        self.request = request
        self.show_progress = show_progress
        self.render_ended = render_ended
        self.job = None
        self.result = None
        self.error: DvdError | None = None
        self._cancel = threading.Event()
        self._blocking = False
        self.script_generation = 0
        self.thread = threading.Thread(target=self._run, name=f"dvd-depth-{node_name}", daemon=True)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        """Thread-safe: the worker's next poll stops the engine (SIGTERM to its process group)."""
        self._cancel.set()

    def to_main(self, call: Callable[..., None], *args) -> None:
        """Queue call(*args) on Nuke's main thread (run_blocking: it IS the main thread, so call directly)."""
        if self._blocking:
            call(*args)
        else:
            _nuke().executeInMainThread(call, args)

    def run_blocking(self) -> None:
        """Render on the calling thread and return when the engine has ended (`nuke -t`, batch scripts: no
        event loop runs executeInMainThread there); render_ended is called before it returns."""
        self._blocking = True
        self._run()

    def _run(self) -> None:
        nuke = _nuke()
        task = nuke.ProgressTask(f"DVD Depth: {self.request.shot}")
        task.setMessage("starting the engine")
        events = _JobEvents(self, task)
        engine = None
        try:
            from dvd_vfx.engine import Engine

            engine = Engine(plugins=[events])
            self.job = engine.subprocess_job(python=self.request.engine_python, args=self.request.args)
            while self.job.poll(timeout=self.poll_interval_s):
                pass
            outcome = self.job.wait()
            self.result, self.error = outcome.result, outcome.error
            if self.error is None and self.result is None:
                self.error = DvdError(f"the engine exited with code {outcome.exit_code} and no result")
        except DvdError as exc:  # bad engine Python, host plugin failure, ...
            self.error = exc
        except Exception as exc:  # a bug here must still end the render visibly
            self.error = DvdError(f"{type(exc).__name__}: {exc}")
        finally:
            task.setProgress(100)
            # End the task now: Nuke removes a progress task when its object is destroyed, and the engine's
            # plugin manager -> events -> worker -> job -> plugin manager is a reference cycle that only the
            # garbage collector would free. Unhook the events and drop every reference to the task.
            if engine is not None:
                with contextlib.suppress(Exception):
                    engine.pm.unregister(events)
            events.task = events.worker = None
            del task, events, engine
            self.to_main(self.render_ended, self.node_name, self, self.result, self.error)

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)
