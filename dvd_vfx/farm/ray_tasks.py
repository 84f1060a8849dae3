"""Worker side of `dvd-vfx farm ray`: one Ray task = one part of a split render, in a child process
(a warm task, run_warm: window parts of several shots in one child process, dvd_vfx.farm.ray_worker).

A part runs ``python -m dvd_vfx.cli render ... --json-progress`` (``--only-windows A-B`` or
``--assemble --write-frames X-Y``) with the worker's Python. The child process is what makes a
task safe to kill and retry: the model loads in it, a crash or a kill is a failed task that Ray
retries, and the split-render rules (the cache key, the stitch solved once) are the engine's.
Its JSON event lines go to the submitter through a small relay actor, where the same hooks fire
as for a local render.

Predictions travel one of two ways:
  shared   every task uses the same --cache-dir (shared storage); window results are receipts
  objects  each task renders into a private cache in a scratch folder on its worker's disk; a
           window task returns its entry's key and manifest, then each window (bytes and
           manifest entry) as its own Ray object; a shot split into several frame chunks gets
           one stitch task, which solves the stitch once and returns its numbers; each assemble
           task fetches the windows one at a time into its own private cache entry (the
           manifest's sha256 sums are checked again), with the stitch numbers, and returns each
           EXR file as its own object for the submitter to write.

A task's returns: its payload objects (see `payload_count`), then its receipt, last: once the
submitter sees the receipt, every object of the task exists. run_part runs the render, then
returns a generator that Ray stores one return value at a time (heap memory holds one window or
one file, whatever the shot's length). run_part is not itself a generator function because Ray
does not retry (retry_exceptions) an exception raised while it iterates one: everything that
can fail and be retried happens before the generator is returned.

Ray itself is imported only inside the task (this module imports on machines without Ray).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dvd_vfx.render import RenderOptions
from dvd_vfx.errors import PERMANENT_EXIT_CODES
from dvd_vfx.farm.plan import task_argv
from dvd_vfx.jobs import parse_event
from dvd_vfx.plugins import ModelSettings

TERMINATE_GRACE_S = 10.0
CHILD_POLL_S = 0.2  # how often the task's main thread wakes up: a cancel (KeyboardInterrupt) lands then
SCRATCH_FOLDER = "farm-scratch"  # object store: below the worker's dvd-vfx cache folder unless --scratch-dir


class PartFailed(Exception):
    """A part failed in a way a retry cannot fix (bad input, weights, NaN predictions): its shot fails at once."""

    def __init__(self, message: str, exit_code: int = 1, error_type: str = "DvdError"):
        super().__init__(message, exit_code, error_type)
        self.message, self.exit_code, self.error_type = message, exit_code, error_type

    def __str__(self) -> str:
        return self.message


class PartCrashed(PartFailed):
    """The part's process was killed or failed unexpectedly: Ray retries the task (retry_exceptions)."""


@dataclass
class PartSpec:
    """Everything a worker needs to run one part (pickled into the task)."""

    shot_index: int
    shot: str
    part: str  # "windows 0-1" | "frames 1001-1050": names the task in progress and errors
    source: str  # absolute movie path or sequence pattern
    options: RenderOptions  # out_dir: the shot's staging folder (shared storage)
    cache_dir: str | None  # the shared cache; None: a private cache on the worker (object store)
    windows: tuple[int, int] | None = None  # a window task: --only-windows A-B
    frames: tuple[int, int] | None = None  # an assemble task: --assemble --write-frames X-Y
    solve_stitch: bool = False  # a stitch task (object store): frames is one frame, returns the stitch numbers
    scratch_dir: str | None = None  # object store: the parent of the task's scratch folder on the worker
    predictor: str | None = None
    model: ModelSettings | None = None
    plugins_dirs: tuple[str, ...] = ()
    env: dict = dataclasses.field(default_factory=dict)  # SOURCE_DATE_EPOCH, DVD_VFX_* of the submitter
    cache_max_gb: float | None = None


@dataclass
class WarmSpec:
    """A warm window task: window parts of one or more shots with the same predictor and model
    settings, rendered one after the other by ONE process (dvd_vfx.farm.ray_worker), which loads the
    model once for all of them."""

    name: str  # "warm task 1/2": names the task in Ray and in errors
    parts: list  # PartSpec window parts, in the order they render


class Relay:
    """A Ray actor (wrapped by the submitter) that queues the parts' job events for the submitter."""

    def __init__(self):
        self._events: list = []

    def push(self, shot_index: int, part: str, event: dict) -> None:
        self._events.append((shot_index, part, event))

    def flush(self) -> bool:
        """Returns once every earlier push of the caller is queued (a caller's calls run in order)."""
        return True

    def drain(self) -> list:
        events, self._events = self._events, []
        return events


def probe_paths(files: dict[str, str]) -> tuple[str, dict[str, bool]]:
    """On one node: which of the submitter's probe files it sees with the submitter's token."""
    seen = {}
    for path, token in files.items():
        try:
            seen[path] = Path(path).read_text() == token
        except OSError:
            seen[path] = False
    return socket.gethostname(), seen


def payload_count(spec: PartSpec | WarmSpec) -> int:
    """How many objects a task returns before its receipt (num_returns = this + 1); a warm task
    returns its parts' objects one part after the other."""
    if isinstance(spec, WarmSpec):
        return sum(payload_count(part) for part in spec.parts)
    if spec.cache_dir is not None:
        return 0
    if spec.windows is not None:
        return 1 + spec.windows[1] - spec.windows[0] + 1  # the entry's key and manifest, then one per window
    if spec.solve_stitch:
        return 1  # the stitch numbers
    return spec.frames[1] - spec.frames[0] + 1  # one per EXR file


def run_part(spec: PartSpec, relay, *after, windows=(), stitch: dict | None = None):
    """One part on a worker; returns the generator of its `payload_count(spec)` objects, then its receipt.

    after: the receipts of the tasks this one waits for (Ray resolves them before it starts; only
    their order matters). windows: object store, an assemble or stitch task: per window task, the
    ObjectRefs of its returns (nested in a list, so Ray does not fetch them all into this worker
    before it starts: they are fetched and written one at a time). stitch: the stitch task's
    numbers, written into the private manifest so this task does not solve the stitch again.
    receipt: the render's result, timings and node (the submitter waits on it).
    """
    import ray

    t0 = time.perf_counter()
    work = _scratch(spec) if spec.cache_dir is None else None
    try:
        options, cache_dir = spec.options, spec.cache_dir
        if work is not None:
            cache_dir = str(work / "cache")
            if spec.frames is not None:
                _unpack_windows(spec, Path(cache_dir), windows, stitch)
                options = dataclasses.replace(options, out_dir=work / "out")
        split = (["--only-windows", f"{spec.windows[0]}-{spec.windows[1]}"] if spec.windows is not None
                 else ["--assemble", "--write-frames", f"{spec.frames[0]}-{spec.frames[1]}"])
        argv = task_argv(spec.source, options, cache_dir=cache_dir, predictor=spec.predictor, model=spec.model,
                         plugins_dirs=spec.plugins_dirs, split=split)
        if spec.cache_max_gb is not None:
            argv += ["--cache-max-gb", repr(float(spec.cache_max_gb))]
        argv.append("--json-progress")
        env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}

        def forward(event: dict) -> None:
            relay.push.remote(spec.shot_index, spec.part, event)

        code, result, error, tail = _run_child([sys.executable, "-m", "dvd_vfx.cli", *argv], env, forward)
        child_s = time.perf_counter() - t0
        try:
            ray.get(relay.flush.remote(), timeout=30)  # the submitter sees every event before the result
        except Exception:  # noqa: BLE001 - progress is best effort; the result still counts
            pass
        if code != 0:
            raise _part_error(spec, code, error, tail)
        payload = _payload(spec, work, Path(cache_dir)) if work is not None else iter(())
        receipt = {"result": result, "child_s": round(child_s, 3), "node": socket.gethostname()}
    except BaseException:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        raise
    return _returns(payload, receipt, work, t0)


def run_warm(spec: WarmSpec, relay):
    """A warm window task on a worker: its parts rendered by one process that loads the model once.
    Returns the generator of every part's payload objects (payload_count), then the receipt.

    Each part keeps its own outcome: receipt["items"][i] is {"result": ..., "loads": 0|1} or
    {"error": {"type", "message", "exit_code"}}; a failed part does not fail the task (its shot
    fails alone, or the submitter runs it again as its own task) and its payload objects are None.
    Only a crash of the whole process (killed, out of memory) fails the task, which Ray retries;
    finished windows are in the shared cache then.
    """
    import pickle

    import ray

    from dvd_vfx.farm.ray_worker import item_job_id, predictor_key

    t0 = time.perf_counter()
    first = spec.parts[0]
    objects = first.cache_dir is None
    work = _scratch(first) if objects else Path(tempfile.mkdtemp(prefix="dvd-vfx-warm-"))
    try:
        items = [{"source": p.source, "options": p.options, "windows": p.windows, "predictor": p.predictor,
                  "model": p.model, "cache_max_gb": p.cache_max_gb,
                  "cache_dir": str(work / f"cache-{i}") if objects else p.cache_dir}  # a private entry per part
                 for i, p in enumerate(spec.parts)]
        items_file = work / "items.pickle"
        items_file.write_bytes(pickle.dumps({"plugins_dirs": first.plugins_dirs, "items": items}))
        env = {**os.environ, **first.env, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        parts = {item_job_id(i): p for i, p in enumerate(spec.parts)}
        outcomes: dict[str, tuple[str, dict | None]] = {}

        def forward(event: dict) -> None:
            part = parts.get(str(event.get("job_id")))
            if part is None:
                return
            if event["event"] == "job_finished":
                outcomes[event["job_id"]] = ("result", event.get("result") or {})
            elif event["event"] == "job_failed":
                outcomes[event["job_id"]] = ("error", event.get("error") or {})
            relay.push.remote(part.shot_index, part.part, event)

        code, _, _, tail = _run_child([sys.executable, "-m", "dvd_vfx.farm.ray_worker", str(items_file)], env,
                                      forward)
        child_s = time.perf_counter() - t0
        try:
            ray.get(relay.flush.remote(), timeout=30)
        except Exception:  # noqa: BLE001 - progress is best effort
            pass
        if code != 0:  # the process rendering every part: name the task and its shots, not the first part
            shots = ", ".join(dict.fromkeys(f"{p.shot} {p.part}" for p in spec.parts))
            raise PartCrashed(f"{spec.name} ({shots}) ended: {_part_error(first, code, None, tail).message}",
                              code if code > 0 else 128 - code)
        results, payloads, predicted = [], [], set()
        for i, part in enumerate(spec.parts):
            kind, value = outcomes.get(item_job_id(i), ("error", None))
            if kind == "result" and objects:
                try:
                    payloads.append(_pack_windows(Path(items[i]["cache_dir"]), *part.windows))
                except PartCrashed as exc:
                    kind, value = "error", {"type": "DvdError", "message": exc.message, "exit_code": 1}
            if kind == "error":
                results.append({"error": value or {"type": "DvdError", "exit_code": 1,
                                                   "message": "the render ended without a result"}})
                payloads.append(iter([None] * payload_count(part)))
                continue
            calls = int(value.get("predictor_calls", 0))
            key = predictor_key(items[i])
            results.append({"result": value, "loads": int(calls > 0 and key not in predicted)})  # the process's first
            if calls > 0:
                predicted.add(key)
            if not objects:
                payloads.append(iter(()))
        receipt = {"items": results, "child_s": round(child_s, 3), "node": socket.gethostname()}
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return _returns((obj for payload in payloads for obj in payload), receipt, work, t0)


def _returns(payload, receipt: dict, work: Path | None, t0: float):
    try:
        yield from payload
        yield {**receipt, "task_s": round(time.perf_counter() - t0, 3)}
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def _payload(spec: PartSpec, work: Path, cache_dir: Path):
    """The object-store part's returns after its render, checked first (a missing piece is a crash, retried)."""
    if spec.windows is not None:
        return _pack_windows(cache_dir, *spec.windows)
    if spec.solve_stitch:
        manifest = json.loads((_entry_folder(cache_dir) / "manifest.json").read_text())
        if not manifest.get("stitch"):
            raise PartCrashed(f"the stitch of {spec.shot} is missing from the part's cache after a successful render")
        return iter([manifest["stitch"]])
    files = sorted((work / "out").glob("*.exr"))
    expected = spec.frames[1] - spec.frames[0] + 1
    if len(files) != expected:
        raise PartCrashed(f"the render wrote {len(files)} EXR files for frames {spec.frames[0]}-{spec.frames[1]}, "
                          f"expected {expected}")
    return ((p.name, p.read_bytes()) for p in files)


def scratch_root(spec: PartSpec) -> Path:
    """Where object-store tasks render on this worker: a disk folder, not /tmp (often RAM)."""
    if spec.scratch_dir:
        return Path(spec.scratch_dir)
    from dvd_vfx.cache import ShotCache

    return ShotCache(None).root / SCRATCH_FOLDER  # the worker's own cache folder ($DVD_VFX_CACHE_DIR of `ray start`)


def _scratch(spec: PartSpec) -> Path:
    """A fresh scratch folder `<host>-<pid>-*` for this task; folders of dead tasks of this host go first."""
    root = scratch_root(spec)
    host = re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname())
    try:
        root.mkdir(parents=True, exist_ok=True)
        _sweep_scratch(root, host)
        return Path(tempfile.mkdtemp(prefix=f"{host}-{os.getpid()}-", dir=root))
    except OSError as exc:
        raise PartFailed(f"cannot create a scratch folder in {root} on {socket.gethostname()}: "
                         f"{exc.strerror or exc}; choose a writable folder on the workers' disks with --scratch-dir",
                         2, "InputError") from None


def _sweep_scratch(root: Path, host: str) -> None:
    """Remove scratch folders left by killed tasks of this host (the folder may be shared between hosts)."""
    for d in root.glob(f"{host}-*-*"):
        m = re.fullmatch(re.escape(host) + r"-(\d+)-.*", d.name)
        if m is None or not d.is_dir():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # alive (or another user's process): leave it
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except OSError:
            continue


# -- the child process ---------------------------------------------------------------------------


def _parent_death_signal():
    """Linux: the child gets SIGTERM when this worker dies (a killed task leaves no orphan render)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def set_signal() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_signal


def _run_child(cmd: list[str], env: dict, on_event) -> tuple[int, dict | None, dict | None, list[str]]:
    """Run the render; every event line goes to on_event. (exit code, result, error, stderr tail).

    Threads read the child's output; this (main) thread only waits in short steps, so a cancel
    (ray.cancel raises KeyboardInterrupt in the main thread) lands within CHILD_POLL_S even while
    the render prints nothing, and the render then gets SIGTERM.
    """
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True, encoding="utf-8", errors="replace", bufsize=1,
                            start_new_session=True, preexec_fn=_parent_death_signal())
    tail: collections.deque[str] = collections.deque(maxlen=40)
    events: queue.Queue = queue.Queue()

    def read_stderr() -> None:
        for line in proc.stderr:
            tail.append(line.rstrip("\n"))

    def read_stdout() -> None:
        try:
            for line in proc.stdout:
                event = parse_event(line)
                if event is not None:
                    events.put(event)
        finally:
            events.put(None)  # the end of the output

    readers = [threading.Thread(target=read_stderr, daemon=True), threading.Thread(target=read_stdout, daemon=True)]
    for reader in readers:
        reader.start()
    result = error = None
    try:
        while True:
            try:
                event = events.get(timeout=CHILD_POLL_S)
            except queue.Empty:
                continue
            if event is None:
                break
            if event["event"] == "job_finished":
                result = event.get("result")
            elif event["event"] == "job_failed":
                error = event.get("error")
            on_event(event)
        while True:
            try:
                code = proc.wait(timeout=CHILD_POLL_S)
                break
            except subprocess.TimeoutExpired:
                continue
    except BaseException:  # cancelled (KeyboardInterrupt from ray.cancel) or failing: stop the render
        _stop(proc)
        raise
    readers[0].join(timeout=5)
    return code, result, error, list(tail)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the render's process group (it removes its staged files), SIGKILL after a grace period."""
    for sig, wait_s in ((signal.SIGTERM, TERMINATE_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _part_error(spec: PartSpec, code: int, error: dict | None, tail: list[str]) -> PartFailed:
    said = [line.split("error:", 1)[1].strip() for line in tail if line.startswith("dvd-vfx: error:")]
    if error and error.get("message"):
        message = str(error["message"])
    elif said:
        message = said[-1]
    else:
        lines = [line for line in tail if line.strip()]
        message = lines[-1] if lines else f"the render exited with code {code}"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return PartCrashed(f"the render process was killed ({name}) on {socket.gethostname()}", 128 - code)
    error_type = str((error or {}).get("type", "DvdError"))
    if code == 2 and spec.cache_dir is None and spec.frames is not None and "not in the cache" in message:
        return PartFailed("the assembling worker computed another cache key than the window tasks: the plate, the "
                          "weights or the model settings differ between workers; make them identical (same files, "
                          "sizes and modification times) or use shared storage (--object-store never)", 2, "InputError")
    if code in PERMANENT_EXIT_CODES:  # bad input, weights or predictions: the same again on every retry
        return PartFailed(message, code, error_type)
    return PartCrashed(message, code, error_type)


# -- predictions through the object store ---------------------------------------------------------


def _entry_folder(cache_dir: Path) -> Path:
    manifests = list(cache_dir.glob("*/*/manifest.json"))
    if len(manifests) != 1:
        raise PartCrashed(f"the private cache {cache_dir} holds {len(manifests)} entries, expected 1")
    return manifests[0].parent


def _pack_windows(cache_dir: Path, first: int, last: int):
    """A window task's returns: the entry's key and manifest, then each window a..b (index, entry, bytes)."""
    folder = _entry_folder(cache_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    for k in range(first, last + 1):
        if str(k) not in manifest["windows"] or not (folder / f"window.{k:05d}.npy").is_file():
            raise PartCrashed(f"window {k} is missing from the part's cache after a successful render")
    base = {k: v for k, v in manifest.items() if k not in ("windows", "stitch", "complete", "timings")}

    def returns():
        yield {"key": manifest["key"], "manifest": base, "node": socket.gethostname()}
        for k in range(first, last + 1):
            yield k, manifest["windows"][str(k)], (folder / f"window.{k:05d}.npy").read_bytes()

    return returns()


def _unpack_windows(spec: PartSpec, cache_dir: Path, windows, stitch: dict | None) -> None:
    """Write the window tasks' windows into this worker's private cache entry (one key for all), one at a time.

    windows: per window task, the ObjectRefs of its returns (key and manifest first).
    """
    import ray

    from dvd_vfx.cache import ShotCache

    infos = ray.get([refs[0] for refs in windows])  # small: keys and manifests
    keys = sorted({r["key"] for r in infos})
    if len(keys) != 1:
        nodes = ", ".join(sorted({r.get("node", "?") for r in infos}))
        raise PartFailed(f"the window tasks of {spec.shot} computed {len(keys)} different cache keys (nodes {nodes}): "
                         "the plate or the weights differ between workers (content, size or modification time); make "
                         "them identical or use shared storage (--object-store never)", 2, "InputError")
    folder = ShotCache(cache_dir).folder(keys[0])
    folder.mkdir(parents=True)
    manifest = {**infos[0]["manifest"], "windows": {}, "stitch": stitch, "complete": False,
                "last_used": time.time()}
    for refs in windows:
        for ref in refs[1:]:
            k, entry, data = ray.get(ref)
            (folder / f"window.{int(k):05d}.npy").write_bytes(data)
            manifest["windows"][str(k)] = entry
            del data
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
