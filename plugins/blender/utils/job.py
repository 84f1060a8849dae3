"""The engine's JSON-lines job protocol, spoken with this add-on's own code (standard library only).

The add-on imports nothing from dvd_vfx: the engine runs in its own Python as
``python -m dvd_vfx.cli render ARGS --json-progress --job-id ID`` and writes one JSON event per
line on stdout, schema ``dvd-vfx.job/1`` (the engine's docs/hooks.md has the table)::

    {"schema": "dvd-vfx.job/1", "event": "job_started" | "progress" | "log" | "pass_written"
     | "job_finished" | "job_failed", "job_id": ID, "time": T, ...}

Reader threads only fill a queue; :meth:`EngineJob.poll`, called from Blender's main thread,
replays the events as calls of ``on_progress`` / ``on_log``, so no bpy data is touched off the
main thread. Cancelling ends the engine's whole process group (SIGTERM, SIGKILL after a grace
period); its finished windows stay in the shot cache.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass, field

SCHEMA = "dvd-vfx.job/1"
EVENTS = ("job_started", "progress", "log", "pass_written", "job_finished", "job_failed")


def parse_event(line: str) -> dict | None:
    """One event of this schema, or None for anything else (a stray print, another schema)."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        event = json.loads(text)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("schema") != SCHEMA or event.get("event") not in EVENTS:
        return None
    return event


@dataclass
class EngineResult:
    """The ``job_finished`` event's ``result`` (the engine's JobResult), with attribute access."""

    shot: str
    out_dir: str
    pattern: str
    first_frame: int
    last_frame: int
    seconds: float = 0.0
    mode: str = "depth"
    near: float | None = None
    far: float | None = None
    cache: str = "off"
    plate_size: tuple = (0, 0)
    anchors: dict | None = None
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: dict) -> "EngineResult":
        return cls(shot=str(data["shot"]), out_dir=str(data["out_dir"]), pattern=str(data["pattern"]),
                   first_frame=int(data["first_frame"]), last_frame=int(data["last_frame"]),
                   seconds=float(data.get("seconds") or 0.0), mode=str(data.get("mode", "depth")),
                   near=data.get("near"), far=data.get("far"), cache=str(data.get("cache", "off")),
                   plate_size=tuple(data.get("plate_size") or (0, 0)), anchors=data.get("anchors") or None,
                   raw=dict(data))


@dataclass
class EngineError:
    """The ``job_failed`` event's ``error``, or what the add-on could tell when the engine gave none."""

    type: str
    message: str
    exit_code: int = 1

    @property
    def cancelled(self) -> bool:
        return self.type == "Cancelled"

    def __str__(self) -> str:
        return self.message


class EngineJob:
    """``dvd-vfx render ARGS`` in the engine's Python; events replayed by :meth:`poll` on the caller's thread."""

    def __init__(self, python: str, args: list[str], *, on_progress=None, on_log=None, env: dict | None = None,
                 job_id: str | None = None, cancel_grace_s: float = 10.0):
        if not python or not os.path.isfile(python):
            raise RuntimeError(f"engine Python {python!r} does not exist; set the add-on's Engine Python to the "
                               f"python of the environment where dvd-vfx is installed")
        if not os.access(python, os.X_OK):
            raise RuntimeError(f"engine Python {python} is not executable; set the add-on's Engine Python to the "
                               f"python of the dvd-vfx environment")
        self.python = python
        self.id = job_id or uuid.uuid4().hex[:12]
        self.command = [python, "-m", "dvd_vfx.cli", "render", *[str(a) for a in args], "--json-progress",
                        "--job-id", self.id]
        self.on_progress = on_progress
        self.on_log = on_log
        self.cancel_grace_s = cancel_grace_s
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self.result: EngineResult | None = None
        self.error: EngineError | None = None
        self.finished = False
        self._events: queue.Queue = queue.Queue()
        self._cancel_sent = False
        kwargs = {"start_new_session": True} if os.name == "posix" else \
            {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        run_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=run_env, text=True, encoding="utf-8",
                                         cwd=tempfile.gettempdir(),  # never Blender's cwd: no stray checkout
                                         errors="replace", bufsize=1, **kwargs)
        except OSError as exc:
            raise RuntimeError(f"could not start the engine {python}: {exc}") from None
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._threads:
            t.start()

    # -- reader threads (no callbacks here) ------------------------------------------------------
    def _read_stdout(self) -> None:
        try:
            for line in self.proc.stdout:
                event = parse_event(line)
                if event is not None:
                    self._events.put(event)
        finally:
            self._events.put(None)  # end of stream

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_tail.append(line.rstrip("\n"))

    # -- main thread ---------------------------------------------------------------------------
    def poll(self) -> bool:
        """Replay the pending events; False once the engine has exited and every event is replayed."""
        if self.finished:
            return False
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return True
            if event is None:
                self._end()
                return False
            self._replay(event)

    def _replay(self, event: dict) -> None:
        kind = event["event"]
        if kind == "progress" and self.on_progress is not None:
            self.on_progress(str(event.get("stage", "")), int(event.get("done", 0)), int(event.get("total", 0)))
        elif kind == "log" and self.on_log is not None:
            self.on_log(str(event.get("level", "")), str(event.get("message", "")))
        elif kind == "job_finished":
            self.result = EngineResult.from_dict(event["result"])
        elif kind == "job_failed":
            e = event.get("error") or {}
            self.error = EngineError(str(e.get("type", "DvdError")), str(e.get("message", "")).strip(),
                                     int(e.get("exit_code", 1)))

    def _end(self) -> None:
        code = self.proc.wait()
        for t in self._threads:
            t.join(timeout=5)
        self.finished = True
        if self.result is not None and code == 0:
            return
        if self.error is None:
            if self._cancel_sent:
                self.error = EngineError("Cancelled", "cancelled", 130)
            else:
                tail = [line for line in self.stderr_tail if line.strip()]
                reason = tail[-1].strip() if tail else f"exit code {code}"
                if "No module named" in reason:
                    reason = (f"engine Python {self.python} cannot import dvd_vfx ({reason}); set the add-on's "
                              f"Engine Python to the python where dvd-vfx is installed")
                self.error = EngineError("EngineError", f"the engine stopped without an answer: {reason}", code or 1)
        self.result = None if self.error else self.result

    def cancel(self) -> None:
        """End the engine's process group (SIGTERM; SIGKILL after cancel_grace_s)."""
        if self._cancel_sent or self.proc.poll() is not None:
            return
        self._cancel_sent = True
        self._signal(kill=False)

        def escalate():
            if self.proc.poll() is None:
                self._signal(kill=True)

        timer = threading.Timer(self.cancel_grace_s, escalate)
        timer.daemon = True
        timer.start()

    def _signal(self, *, kill: bool) -> None:
        try:
            if os.name == "posix":  # the whole group: ffmpeg readers end with the engine
                os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            else:
                (self.proc.kill if kill else self.proc.terminate)()
        except OSError:
            pass
