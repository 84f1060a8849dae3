"""Jobs: what a render looks like to the hooks, in process and out of process.

A host whose Python has no torch (Blender, Nuke) runs the engine in another interpreter::

    job = SubprocessJob(python="/opt/dvd/venv/bin/python", args=["plate.mov", "-o", "/out"], pm=engine.pm)
    while job.poll():          # from a timer on the host's main thread
        ...                    # hook calls (job_progress, pass_written, ...) happen inside poll()
    outcome = job.wait()

The engine process (``dvd-vfx render --json-progress``) writes one JSON event per line on
stdout; :class:`SubprocessJob` reads them in a thread and replays each as the same hook call
an in-process render makes, on the thread that calls :meth:`SubprocessJob.poll` /
:meth:`SubprocessJob.wait`. Event schema ``dvd-vfx.job/1`` (docs/hooks.md has the table)::

    {"schema": "dvd-vfx.job/1", "event": "job_started",  "job_id": ID, "time": T, "job": {...}}
    {"schema": ..., "event": "progress",     "job_id": ID, "stage": "predict", "done": 3, "total": 9}
    {"schema": ..., "event": "log",          "job_id": ID, "level": "warning", "message": "..."}
    {"schema": ..., "event": "pass_written", "job_id": ID, "pass": {"path", "frame", "shot", "kind"}}
    {"schema": ..., "event": "job_finished", "job_id": ID, "result": {"pattern", "first_frame", ...}}
    {"schema": ..., "event": "job_failed",   "job_id": ID, "error": {"type", "message", "exit_code"}}

Event payloads. Each line is one JSON object written by ``json.dumps`` (ASCII, no line
breaks inside; a float that is not finite is written as ``NaN`` / ``Infinity``, which Python's
``json`` reads). Every event has:

    schema (`str`):
        ``"dvd-vfx.job/1"``. Readers skip events of another schema with a warning; new fields
        may appear within a schema, a change that breaks readers bumps the version.
    event (`str`):
        One of ``EVENTS``: ``job_started``, ``progress``, ``log``, ``pass_written``,
        ``job_finished``, ``job_failed`` (in that order over a job's life; ``progress``,
        ``log`` and ``pass_written`` repeat).
    job_id (`str`):
        The job's id: ``--job-id``, else 12 random hex digits. Equal to ``job.id``.
    time (`float`):
        When the event was written, in Unix seconds (UTC), rounded to 1 ms.

and, per event:

    job_started -> job (`object`):
        :meth:`Job.to_dict`: ``id``, ``source``, ``out_dir``, ``shot``, ``predictor``,
        ``options`` (see :class:`Job`). Replayed as ``dvd_vfx_job_started(job)``.
    progress -> stage (`str`), done (`int`), total (`int`):
        ``stage`` ``"predict"`` counts windows (``done`` starts at the number already cached),
        ``"stitch"`` and ``"write"`` count frames; ``0 <= done <= total``. Replayed as
        ``dvd_vfx_job_progress(job, stage, done, total)``.
    log -> level (`str`), message (`str`):
        ``level`` ``"warning"``, ``"error"`` or ``"critical"``; ``message`` the formatted log
        record. Replayed as ``dvd_vfx_job_log(job, level, message)``.
    pass_written -> pass (`object`):
        The :class:`PassInfo` fields ``path``, ``frame``, ``shot``, ``kind``; one event per
        file, all after the shot's files are committed. Replayed as
        ``dvd_vfx_pass_written(job, pass_info)``.
    job_finished -> result (`object`):
        :meth:`JobResult.to_dict`: every :class:`JobResult` field, pairs as 2-item lists.
        Replayed as ``dvd_vfx_job_finished(job, result)``.
    job_failed -> error (`object`):
        ``type`` (`str`, the class name in :mod:`dvd_vfx.errors`, e.g. ``"InputError"``),
        ``message`` (`str`, one line), ``exit_code`` (`int`: ``InputError`` 2, ``WeightsError``
        3, ``PredictionError`` 4, ``DeviceMemoryError`` 75, ``Cancelled`` 130, ``PluginError``
        and unexpected errors 1). Replayed as ``dvd_vfx_job_failed(job, error)`` with the same
        error class (:func:`error_from_dict`).

This module imports only the standard library, pluggy and dvd_vfx.errors (no numpy, no torch).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from dvd_vfx import __version__, errors
from dvd_vfx.errors import Cancelled, DvdError, InputError, PluginError
from dvd_vfx.hookspecs import hookimpl
from dvd_vfx.jsonvalues import jsonable
from dvd_vfx.plugins import Plugins, call_hook

log = logging.getLogger("dvd_vfx.jobs")

SCHEMA = "dvd-vfx.job/1"
EVENTS = ("job_started", "progress", "log", "pass_written", "job_finished", "job_failed")
_FRAME_RE = re.compile(r"\.(-?\d+)\.exr$")


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


# -- What the hooks receive -------------------------------------------------------------------


@dataclass
class Job:
    """One render job, as every job hook receives it. Equal in and out of process: every field is plain JSON.

    Args:
        id (`str`):
            The job's id: ``--job-id`` / ``Engine.render(job_id=...)``, else 12 random hex
            digits. Also the ``job_id`` of every JSON event of the job.
        source (`str`):
            The footage the job reads: what ``dvd_vfx_resolve_footage`` made of the source, a
            movie path, an image sequence pattern (``shot.####.exr``, ``shot.%04d.png``,
            ``shot.1001-1100#.exr``) or a folder, as given (not made absolute).
        out_dir (`str`):
            The output folder, as given (``-o`` / ``RenderOptions.out_dir``; not made absolute).
        shot (`str` or `None`):
            The ``--shot`` name; None = named after the source (the name the files get is
            :attr:`JobResult.shot`).
        predictor (`str`):
            The name of the predictor the job renders with (``"dvd"`` unless ``--predictor``),
            or the ``name`` of a predictor object passed to ``Engine.render``; ``""`` before an
            out-of-process engine reports ``job_started``.
        options (`dict`):
            The job's ``dvd_vfx.render.RenderOptions`` as JSON: one key per field (``out_dir``,
            ``frames`` as ``[first, last]`` or None, ``resolution`` in px, ``window``,
            ``overlap``, ``mode``, ``near``, ``far``, ``fps`` as a string such as
            ``"24000/1001"`` or None, ...); empty before an out-of-process engine reports
            ``job_started``.

    ``cancel()`` asks the job to stop at the next window or frame, from any thread.
    """

    id: str
    source: str
    out_dir: str
    shot: str | None
    predictor: str
    options: dict = field(default_factory=dict)
    _cancel: threading.Event = field(default_factory=threading.Event, init=False, repr=False, compare=False)

    def cancel(self) -> None:
        """Ask the job to stop at the next window or frame (thread-safe)."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def to_dict(self) -> dict:
        return {"id": self.id, "source": self.source, "out_dir": self.out_dir, "shot": self.shot,
                "predictor": self.predictor, "options": jsonable(self.options)}

    @classmethod
    def from_dict(cls, data: dict) -> "Job":
        return cls(id=str(data["id"]), source=str(data.get("source", "")), out_dir=str(data.get("out_dir", "")),
                   shot=data.get("shot"), predictor=str(data.get("predictor", "")), options=dict(data.get("options") or {}))


@dataclass(frozen=True)
class PassInfo:
    """One output file, committed (final name, complete), as ``dvd_vfx_pass_written`` receives it.

    Args:
        path (`str`):
            The file's absolute path, ``/abs/OUT_DIR/SHOT.depth.NNNN.exr`` (the frame number
            padded to at least four digits). It exists and is complete when the hook runs.
        frame (`int`):
            The source frame number the file holds (sequences keep their numbers: 1001...;
            movies start at ``--start-frame``, default 1); read from the file name, 0 when the
            name has none.
        shot (`str`):
            The shot name (:attr:`JobResult.shot`), the files' prefix.
        kind (`str`):
            The pass: ``"depth"`` (the ``depth.Z`` EXR pass; the only kind in this version).
    """

    path: str
    frame: int
    shot: str
    kind: str = "depth"

    @classmethod
    def from_path(cls, path, shot: str, kind: str = "depth") -> "PassInfo":
        m = _FRAME_RE.search(os.fspath(path))
        return cls(path=os.fspath(path), frame=int(m.group(1)) if m else 0, shot=shot, kind=kind)


@dataclass(frozen=True)
class JobResult:
    """What a finished job produced: enough for a host to load the sequence.

    ``dvd_vfx_job_finished`` receives it in process (built from ``dvd_vfx.render.RenderResult``
    by :meth:`from_render`) and out of process (the ``job_finished`` event's ``result``,
    :meth:`to_dict` / :meth:`from_dict`): the same values either way.

    Args:
        shot (`str`):
            The shot name: ``--shot``, else the source's file name without extension and frame
            number (``plate.####.exr`` -> ``plate``). The prefix of every output file.
        out_dir (`str`):
            The output folder, as given (not made absolute).
        pattern (`str`):
            The pass's files, ``OUT_DIR/SHOT.depth.####.exr``: ``####`` stands for the frame
            number padded to four digits (``%04d``; more digits past 9999). ``""`` for an
            ``--only-windows`` part of a split render, which writes no pass.
        first_frame (`int`):
            The first source frame number of the shot as rendered (after ``--frames``):
            sequences keep their numbers (1001...), movies start at ``--start-frame`` (default 1).
        last_frame (`int`):
            The last source frame number, inclusive; ``first_frame <= last_frame``. With
            ``--write-frames``, first/last are still the shot's range, not the written one.
        frame_count (`int`):
            Files this job wrote: ``last_frame - first_frame + 1`` for a whole render, fewer with
            ``--write-frames``, 0 for an ``--only-windows`` part.
        windows (`int`):
            Model windows in the shot's plan (>= 1; ``--window`` frames each, ``--overlap``
            shared).
        predictor_calls (`int`):
            Windows this job predicted, ``0 <= predictor_calls <= windows``: 0 when every window
            came from the cache (``cache == "hit"``).
        seconds (`float`):
            Wall-clock seconds from probing the footage to committing the last file (including
            a model the predictor loads on first use), rounded to 1 ms; >= 0.
        mode (`str`):
            ``"depth"`` (``depth.Z`` holds z in scene units, near..far) or ``"disparity"``
            (normalised, 0 far .. 1 near; ``--invert`` swaps them).
        near (`float` or `None`):
            Depth mode: the depth (scene units, > 0) the shot's nearest 2 % maps to. None in
            disparity mode and for an ``--only-windows`` part.
        far (`float` or `None`):
            Depth mode: the depth (scene units, ``far > near``) the shot's farthest 2 % maps to.
            None in disparity mode and for an ``--only-windows`` part.
        working_size (`tuple[int, int]`):
            ``(width, height)`` in pixels the model saw: the short side ``--resolution`` (default
            480) unless the plate is smaller, both sides multiples of 16, display aspect
            (anamorphic plates unsqueezed). A 2-item list in JSON.
        plate_size (`tuple[int, int]`):
            ``(width, height)`` in pixels of the source frames, which is the pass's size. A 2-item
            list in JSON.
        percentiles (`tuple[float, float]`):
            ``(p2, p98)``: the 2nd and 98th percentiles of the whole stitched shot in raw
            predictor units (disparity-like, after the window alignment; ``p2 <= p98``), the
            values mapped to far and near (``--invert`` swaps them). NaN for an ``--only-windows`` part. A 2-item list in
            JSON.
        cache (`str`):
            How the shot cache served the windows: ``"off"`` (no cache: ``--no-cache``),
            ``"miss"`` (all predicted), ``"partial"`` (resumed: some were cached) or ``"hit"``
            (all cached, no predictor call).
        anchors (`dict` or `None`):
            With ``--anchors``: the scene-scale fit, the EXR header ``dvd/anchors`` (``file``,
            ``used`` and ``rejected`` anchor counts, ``scale``/``shift`` of 1/depth = scale * d +
            shift, ``medianRelError``/``worstRelError`` of depth at the anchors, ``rejectedAnchors``
            0-based indices); None without anchors (and in JSON from an engine without the field).
    """

    shot: str
    out_dir: str
    pattern: str
    first_frame: int
    last_frame: int
    frame_count: int
    windows: int
    predictor_calls: int
    seconds: float
    mode: str
    near: float | None
    far: float | None
    working_size: tuple[int, int]
    plate_size: tuple[int, int]
    percentiles: tuple[float, float]
    cache: str = "off"
    anchors: dict | None = None

    @classmethod
    def from_render(cls, r) -> "JobResult":
        """From dvd_vfx.render.RenderResult."""
        return cls(shot=r.shot, out_dir=os.fspath(r.out_dir), pattern=str(r.pattern),
                   first_frame=int(r.frame_numbers[0]), last_frame=int(r.frame_numbers[1]),
                   frame_count=int(r.frame_count), windows=int(r.windows), predictor_calls=int(r.predictor_calls),
                   seconds=round(float(r.seconds), 3), mode=r.mode, near=r.near, far=r.far,
                   working_size=tuple(r.working_size), plate_size=tuple(r.plate_size),
                   percentiles=tuple(float(p) for p in r.percentiles), cache=str(getattr(r, "cache", "off")),
                   anchors=jsonable(r.anchors) if getattr(r, "anchors", None) else None)

    def to_dict(self) -> dict:
        return jsonable(self)

    @classmethod
    def from_dict(cls, data: dict) -> "JobResult":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for key in ("working_size", "plate_size", "percentiles"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def error_to_dict(error: BaseException) -> dict:
    return {"type": type(error).__name__, "message": str(error), "exit_code": getattr(error, "exit_code", 1)}


def error_from_dict(data: dict) -> DvdError:
    """The same DvdError class when known (InputError, WeightsError, Cancelled, PluginError, ...)."""
    cls = getattr(errors, str(data.get("type", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, DvdError)):
        cls = DvdError
    error = cls(str(data.get("message", "")))
    code = data.get("exit_code")
    if isinstance(code, int) and code != error.exit_code:
        error.exit_code = code
    return error


# -- Engine side: hook calls -> JSON lines ----------------------------------------------------


def make_event(event: str, job_id: str, **fields) -> dict:
    return {"schema": SCHEMA, "event": event, "job_id": job_id, "time": round(time.time(), 3), **fields}


class JsonLinesEmitter:
    """A plugin that writes every job event as one JSON line (`dvd-vfx render --json-progress`).

    ``tryfirst`` so an event is on the stream before any other plugin sees it.
    """

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self._lock = threading.Lock()

    def emit(self, event: str, job_id: str, **fields) -> None:
        line = json.dumps(make_event(event, job_id, **fields), separators=(",", ":"))
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    @hookimpl(tryfirst=True)
    def dvd_vfx_job_started(self, job):
        self.emit("job_started", job.id, job=job.to_dict())

    @hookimpl(tryfirst=True)
    def dvd_vfx_job_progress(self, job, stage, done, total):
        self.emit("progress", job.id, stage=stage, done=int(done), total=int(total))

    @hookimpl(tryfirst=True)
    def dvd_vfx_job_log(self, job, level, message):
        self.emit("log", job.id, level=level, message=message)

    @hookimpl(tryfirst=True)
    def dvd_vfx_pass_written(self, job, pass_info):
        self.emit("pass_written", job.id, **{"pass": jsonable(pass_info)})

    @hookimpl(tryfirst=True)
    def dvd_vfx_job_finished(self, job, result):
        self.emit("job_finished", job.id, result=result.to_dict())

    @hookimpl(tryfirst=True)
    def dvd_vfx_job_failed(self, job, error):
        self.emit("job_failed", job.id, error=error_to_dict(error))


# -- Host side: JSON lines -> hook calls ------------------------------------------------------


def parse_event(line: str) -> dict | None:
    """One event, or None (with a warning) for a line that is not one (a stray print, a partial line)."""
    text = line.strip()
    if not text:
        return None
    try:
        event = json.loads(text)
    except ValueError:
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str) or "schema" not in event:
        log.warning("ignoring a line that is not a dvd-vfx job event: %.120r", text)
        return None
    if event["schema"] != SCHEMA:
        log.warning("ignoring an event of schema %r (this dvd-vfx reads %s)", event["schema"], SCHEMA)
        return None
    if event["event"] not in EVENTS:
        log.warning("ignoring an unknown job event %r", event["event"])
        return None
    return event


@dataclass(frozen=True)
class JobOutcome:
    exit_code: int
    result: JobResult | None = None
    error: DvdError | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.error is None


def check_engine_python(python, *, cwd=None, env: dict | None = None) -> str:
    """The interpreter's path, after checking it exists and can import dvd_vfx; else InputError."""
    text = os.fspath(python)
    path = text if os.sep in text or (os.altsep and os.altsep in text) else shutil.which(text)
    if not path or not os.path.isfile(path):
        raise InputError(f"engine Python {text!r} does not exist; pass the python of the environment where "
                         f"dvd-vfx and torch are installed (e.g. /path/to/venv/bin/python)")
    if not os.access(path, os.X_OK):
        raise InputError(f"engine Python {path} is not executable; pass the python of the dvd-vfx environment")
    try:
        probe = subprocess.run([path, "-c", "import dvd_vfx, sys; sys.stdout.write(dvd_vfx.__version__)"],
                               capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                               cwd=cwd, env=env)
    except (OSError, subprocess.SubprocessError) as exc:
        raise InputError(f"engine Python {path} could not be started: {exc}") from None
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"])[-1]
        raise InputError(f"engine Python {path} cannot import dvd_vfx ({reason}); install dvd-vfx into that "
                         f"environment ({path} -m pip install dvd-vfx) or pass the python that has it")
    if probe.stdout.strip() != __version__:
        log.warning("engine Python %s has dvd-vfx %s, this host has %s; events use schema %s",
                    path, probe.stdout.strip(), __version__, SCHEMA)
    return path


def _placeholder_job(job_id: str, args: Sequence[str]) -> Job:
    """The job as far as the host knows it before the engine reports job_started."""
    source = args[0] if args and not str(args[0]).startswith("-") else ""
    out_dir = ""
    for flag in ("-o", "--output"):
        if flag in args and args.index(flag) + 1 < len(args):
            out_dir = str(args[args.index(flag) + 1])
    return Job(id=job_id, source=str(source), out_dir=out_dir, shot=None, predictor="")


class SubprocessJob:
    """`dvd-vfx render ARGS --json-progress` in another Python, replayed as hook calls in this one.

    python: the engine's interpreter (checked before anything starts). args: what follows
    ``dvd-vfx render`` (source, -o OUT, flags). pm: the host's PluginManager (default: a new
    Plugins'). Hooks are called on the thread that calls poll() or wait(); the host's
    ``dvd_vfx_should_cancel`` is asked on each poll. A job that fails before the engine reports
    job_started still ends with exactly one ``dvd_vfx_job_failed``.
    """

    def __init__(self, *, python=None, args: Sequence[str], pm=None, plugins_dir=None, job_id: str | None = None,
                 env: dict | None = None, cwd=None, cancel_grace_s: float = 10.0, start: bool = True):
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        self.cwd = cwd
        self.python = check_engine_python(python or sys.executable, cwd=cwd, env=self.env)
        args = [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args]
        if args and args[0] == "render":
            args = args[1:]
        if pm is None:
            pm = Plugins().pm
        self.pm = pm
        self.id = job_id or new_job_id()
        self.job = _placeholder_job(self.id, args)
        global_args = []
        for folder in ([plugins_dir] if isinstance(plugins_dir, (str, os.PathLike)) else plugins_dir or []):
            global_args += ["--plugins-dir", os.fspath(folder)]
        self.command = [self.python, "-m", "dvd_vfx.cli", *global_args, "render", *args,
                        "--json-progress", "--job-id", self.id]
        self.cancel_grace_s = cancel_grace_s
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self.proc: subprocess.Popen | None = None
        self._events: queue.Queue = queue.Queue()
        self._stdout_done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False  # job_started replayed
        self._outcome: JobOutcome | None = None
        self._result: JobResult | None = None
        self._error: DvdError | None = None
        self._cancel_sent = False
        self._host_failed = False
        if start:
            self.start()

    # -- process ---------------------------------------------------------------------------
    def start(self) -> "SubprocessJob":
        if self.proc is not None:
            return self
        kwargs = {"start_new_session": True} if os.name == "posix" else \
            {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=self.env, cwd=self.cwd, text=True,
                                         encoding="utf-8", errors="replace", bufsize=1, **kwargs)
        except OSError as exc:
            raise InputError(f"could not start the engine {self.python}: {exc}") from None
        for target, name in ((self._read_stdout, "stdout"), (self._read_stderr, "stderr")):
            t = threading.Thread(target=target, name=f"dvd-vfx-job-{self.id}-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _read_stdout(self) -> None:
        try:
            for line in self.proc.stdout:
                event = parse_event(line)
                if event is not None:
                    self._events.put(event)
        finally:
            self._stdout_done.set()
            self._events.put(None)  # wake a waiting poll

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self.stderr_tail.append(line)
            log.debug("engine %s: %s", self.id, line)

    @property
    def running(self) -> bool:
        return self._outcome is None

    def cancel(self) -> None:
        """End the engine's process group (SIGTERM, then SIGKILL after cancel_grace_s); cached windows stay."""
        self.job.cancel()
        if self._cancel_sent or self.proc is None or self.proc.poll() is not None:
            return
        self._cancel_sent = True
        self._signal(kill=False)

        def escalate():
            if self.proc.poll() is None:
                log.warning("engine %s did not stop within %.0f s; killing it", self.id, self.cancel_grace_s)
                self._signal(kill=True)

        timer = threading.Timer(self.cancel_grace_s, escalate)
        timer.daemon = True
        timer.start()

    def _signal(self, *, kill: bool) -> None:
        try:
            if os.name == "posix":  # the whole group: ffmpeg readers die with the engine
                os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            else:
                (self.proc.kill if kill else self.proc.terminate)()
        except OSError:  # already gone
            pass

    # -- replay ----------------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> bool:
        """Replay pending events as hook calls (waiting up to `timeout` s for one); False once done."""
        if self._outcome is not None:
            return False
        try:
            event = self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait()
        except queue.Empty:
            event = None
        while event is not None or not self._events.empty():
            if event is not None:
                self._replay(event)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
        if self._outcome is None and not self._cancel_sent and self._error is None:
            try:
                wants_cancel = self.job.cancel_requested or self._call("dvd_vfx_should_cancel", job=self.job)
            except DvdError as exc:  # a host plugin failed: stop the engine, fail the job (as in process)
                self._fail_from_host(exc)
            else:
                if wants_cancel:
                    self.cancel()
        if self._stdout_done.is_set() and self._events.empty() and self.proc.poll() is not None:
            self._finish()
            return False
        return True

    def wait(self, timeout: float | None = None) -> JobOutcome | None:
        """Replay events until the engine exits; the outcome, or None if `timeout` s passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll(timeout=0.05):
            if deadline is not None and time.monotonic() > deadline:
                return None
        return self._outcome

    def _call(self, hook_name: str, **kwargs):
        return call_hook(self.pm, hook_name, **kwargs)

    def _replay(self, event: dict) -> None:
        if self._error is not None:  # already failed on the host side: the rest is moot
            return
        kind = event["event"]
        try:
            if kind == "job_started":
                job = Job.from_dict(event.get("job") or {"id": self.id})
                job._cancel = self.job._cancel  # a cancel asked before job_started still counts
                self.job = job
                self._started = True
                self._call("dvd_vfx_job_started", job=self.job)
            elif kind == "progress":
                self._call("dvd_vfx_job_progress", job=self.job, stage=str(event["stage"]),
                           done=int(event["done"]), total=int(event["total"]))
            elif kind == "log":
                self._call("dvd_vfx_job_log", job=self.job, level=str(event.get("level", "warning")),
                           message=str(event.get("message", "")))
            elif kind == "pass_written":
                p = event["pass"]
                self._call("dvd_vfx_pass_written", job=self.job,
                           pass_info=PassInfo(path=str(p["path"]), frame=int(p["frame"]), shot=str(p["shot"]),
                                              kind=str(p.get("kind", "depth"))))
            elif kind == "job_finished":
                self._result = JobResult.from_dict(event["result"])
                self._call("dvd_vfx_job_finished", job=self.job, result=self._result)
            elif kind == "job_failed":
                self._error = error_from_dict(event.get("error") or {})
                self._fail_hook(self._error)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring a malformed %r event (%s: %s)", kind, type(exc).__name__, exc)
        except DvdError as exc:  # a host plugin failed: the job fails, as it would in process
            self._fail_from_host(exc)

    def _fail_from_host(self, error: DvdError) -> None:
        self._error = error
        self._host_failed = True
        self.cancel()
        self._fail_hook(error)

    def _fail_hook(self, error: DvdError) -> None:
        try:
            self._call("dvd_vfx_job_failed", job=self.job, error=error)
        except DvdError as exc:
            log.warning("%s", exc)

    def _finish(self) -> None:
        for t in self._threads:
            t.join(timeout=5)
        code = self.proc.wait()
        if code < 0:  # killed by a signal
            code = Cancelled.exit_code if self._cancel_sent else 128 - code
        if self._error is None and self._result is None:
            # the engine ended without a terminal event: bad arguments, a crash, or SIGKILL
            if self._cancel_sent:
                self._error = Cancelled("render cancelled; finished windows are kept")
            else:
                lines = [l for l in self.stderr_tail if l.strip()]
                said = [l.split("error:", 1)[1].strip() for l in lines if l.startswith("dvd-vfx: error:")]
                message = said[-1] if said else (lines[-1] if lines else f"the engine exited with code {code}")
                cls = {2: InputError, 3: errors.WeightsError, 130: Cancelled}.get(code, DvdError)
                self._error = cls(message)
                if code and code != self._error.exit_code:
                    self._error.exit_code = code
            self._fail_hook(self._error)
        if self._error is not None and (code == 0 or self._host_failed):
            code = self._error.exit_code
        self._outcome = JobOutcome(exit_code=code, result=self._result if self._error is None else None,
                                   error=self._error)


__all__ = ["SCHEMA", "Job", "JobOutcome", "JobResult", "JsonLinesEmitter", "PassInfo", "PluginError",
           "SubprocessJob", "check_engine_python", "error_from_dict", "error_to_dict", "jsonable", "parse_event"]
