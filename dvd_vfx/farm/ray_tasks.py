"""Worker side of `dvd-vfx farm ray`: one Ray task = one part of a split render, in a child process.

A part runs ``python -m dvd_vfx.cli render ... --json-progress`` (``--only-windows A-B`` or
``--assemble --write-frames X-Y``) with the worker's Python. The child process is what makes a
task safe to kill and retry: the model loads in it, a crash or a kill is a failed task that Ray
retries, and the split-render rules (the cache key, the stitch solved once) are the engine's.
Its JSON event lines go to the submitter through a small relay actor, where the same hooks fire
as for a local render.

Predictions travel one of two ways:
  shared   every task uses the same --cache-dir (shared storage); window results are receipts
  objects  each task renders into a private cache on its worker; a window task returns its
           windows' bytes and manifest entries as a Ray object, the assemble task writes them
           into its own private cache entry (the manifest's sha256 sums are checked again) and
           returns the EXR files' bytes for the submitter to write.

Ray itself is imported only inside the task (this module imports on machines without Ray).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
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

from dvd_vfx.engine import RenderOptions
from dvd_vfx.farm.plan import task_argv
from dvd_vfx.jobs import parse_event
from dvd_vfx.plugins import ModelSettings

TERMINATE_GRACE_S = 10.0


class PartFailed(Exception):
    """A part failed in a way a retry cannot fix (bad input, weights): its shot fails at once."""

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
    predictor: str | None = None
    model: ModelSettings | None = None
    plugins_dirs: tuple[str, ...] = ()
    env: dict = dataclasses.field(default_factory=dict)  # SOURCE_DATE_EPOCH, DVD_VFX_* of the submitter
    cache_max_gb: float | None = None


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


def run_part(spec: PartSpec, relay, *window_payloads) -> tuple[dict, object]:
    """One part on a worker: (receipt, payload), two Ray objects.

    receipt: the render's result, timings and node (the submitter waits on it). payload: what the
    part hands on through the object store: a window task's windows (the inputs of the shot's
    assemble tasks, `window_payloads`), an assemble task's EXR files; None with shared storage.
    """
    import ray

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="dvd-vfx-ray-")) if spec.cache_dir is None else None
    try:
        options, cache_dir = spec.options, spec.cache_dir
        if work is not None:
            cache_dir = str(work / "cache")
            if spec.frames is not None:
                _unpack_windows(spec, Path(cache_dir), window_payloads)
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
        payload = None
        if work is not None and spec.windows is not None:
            payload = _pack_windows(Path(cache_dir), *spec.windows)
        if work is not None and spec.frames is not None:
            payload = {p.name: p.read_bytes() for p in sorted((work / "out").glob("*.exr"))}
        receipt = {"result": result, "child_s": round(child_s, 3), "task_s": round(time.perf_counter() - t0, 3),
                   "node": socket.gethostname()}
        return receipt, payload
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


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
    """Run the render; every event line goes to on_event. (exit code, result, error, stderr tail)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True, encoding="utf-8", errors="replace", bufsize=1,
                            start_new_session=True, preexec_fn=_parent_death_signal())
    tail: collections.deque[str] = collections.deque(maxlen=40)

    def read_stderr() -> None:
        for line in proc.stderr:
            tail.append(line.rstrip("\n"))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    result = error = None
    try:
        for line in proc.stdout:
            event = parse_event(line)
            if event is None:
                continue
            if event["event"] == "job_finished":
                result = event.get("result")
            elif event["event"] == "job_failed":
                error = event.get("error")
            on_event(event)
        code = proc.wait()
    except BaseException:  # cancelled (KeyboardInterrupt from ray.cancel) or failing: stop the render
        _stop(proc)
        raise
    reader.join(timeout=5)
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
    if code in (2, 3):  # bad input or weights: the same again on every retry
        return PartFailed(message, code, error_type)
    return PartCrashed(message, code, error_type)


# -- predictions through the object store ---------------------------------------------------------


def _entry_folder(cache_dir: Path) -> Path:
    manifests = list(cache_dir.glob("*/*/manifest.json"))
    if len(manifests) != 1:
        raise PartCrashed(f"the private cache {cache_dir} holds {len(manifests)} entries, expected 1")
    return manifests[0].parent


def _pack_windows(cache_dir: Path, first: int, last: int) -> dict:
    """A window task's windows a..b as bytes + their manifest entries, and the entry's key and manifest."""
    folder = _entry_folder(cache_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    windows = {}
    for k in range(first, last + 1):
        entry = manifest["windows"].get(str(k))
        if entry is None:
            raise PartCrashed(f"window {k} is missing from the part's cache after a successful render")
        windows[str(k)] = (entry, (folder / f"window.{k:05d}.npy").read_bytes())
    base = {k: v for k, v in manifest.items() if k not in ("windows", "stitch", "complete", "timings")}
    return {"key": manifest["key"], "manifest": base, "windows": windows, "node": socket.gethostname()}


def _unpack_windows(spec: PartSpec, cache_dir: Path, payloads) -> None:
    """Write the window tasks' payloads into this worker's private cache entry (one key for all)."""
    from dvd_vfx.cache import ShotCache

    keys = sorted({r["key"] for r in payloads})
    if len(keys) != 1:
        nodes = ", ".join(sorted({r.get("node", "?") for r in payloads}))
        raise PartFailed(f"the window tasks of {spec.shot} computed {len(keys)} different cache keys (nodes {nodes}): "
                         "the plate or the weights differ between workers (content, size or modification time); make "
                         "them identical or use shared storage (--object-store never)", 2, "InputError")
    folder = ShotCache(cache_dir).folder(keys[0])
    folder.mkdir(parents=True)
    manifest = {**payloads[0]["manifest"], "windows": {}, "stitch": None, "complete": False,
                "last_used": time.time()}
    for r in payloads:
        for k, (entry, data) in r["windows"].items():
            (folder / f"window.{int(k):05d}.npy").write_bytes(data)
            manifest["windows"][k] = entry
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
