"""Plugins, plates and a hook-call recorder for the plugin, job and preset tests (no torch)."""

from __future__ import annotations

import subprocess
import textwrap
import threading
from pathlib import Path

from dvd_vfx.hookspecs import hookimpl
from dvd_vfx.jsonvalues import jsonable

# A cheap predictor as a plugins-dir module: brightness as disparity. $DVD_TEST_PREDICT_SLEEP
# (seconds) slows each window down so a test can cancel mid-render.
LUMA_PLUGIN = textwrap.dedent('''
    import os
    import time

    import numpy as np

    from dvd_vfx.hookspecs import hookimpl
    from dvd_vfx.plugins import PredictorFactory


    class Luma:
        name = "luma"

        def identity(self):
            return {"predictor": "luma", "model_id": "luma-1", "weights_sha256": "0" * 64}

        def predict(self, frames):
            time.sleep(float(os.environ.get("DVD_TEST_PREDICT_SLEEP", "0")))
            return (frames.mean(axis=-1) * 0.8 + 0.1).astype(np.float32)


    @hookimpl
    def dvd_vfx_register_predictors():
        return [PredictorFactory("luma", lambda settings: Luma(), "brightness as depth (tests)")]
''')

FAST = ["--resolution", "48", "--window", "5", "--overlap", "2"]


def write_plugin(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def make_plate(path: Path, frames: int, size: str = "64x48") -> Path:
    from dvd_vfx.footage.ffmpeg_tools import find_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([find_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=24",
                    "-frames:v", str(frames), "-pix_fmt", "yuv420p", str(path)], check=True, capture_output=True)
    return path


class Recorder:
    """Records every job hook call as (hook, plain-JSON arguments); answers should_cancel via `cancel_when`."""

    def __init__(self, cancel_when=None):
        self.calls: list[tuple[str, dict]] = []
        self.cancel_when = cancel_when
        self.threads: set[int] = set()

    def _record(self, hook: str, **kwargs) -> None:
        self.threads.add(threading.get_ident())
        self.calls.append((hook, {k: (v.to_dict() if hasattr(v, "to_dict") else jsonable(v))
                                  for k, v in kwargs.items()}))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def of(self, hook: str) -> list[dict]:
        return [args for name, args in self.calls if name == hook]

    @hookimpl
    def dvd_vfx_job_started(self, job):
        self._record("job_started", job=job)

    @hookimpl
    def dvd_vfx_job_progress(self, job, stage, done, total):
        self._record("job_progress", job=job.id, stage=stage, done=done, total=total)

    @hookimpl
    def dvd_vfx_job_log(self, job, level, message):
        self._record("job_log", job=job.id, level=level, message=message)

    @hookimpl
    def dvd_vfx_pass_written(self, job, pass_info):
        self._record("pass_written", job=job.id, pass_info=pass_info)

    @hookimpl
    def dvd_vfx_job_finished(self, job, result):
        self._record("job_finished", job=job.id, result=result)

    @hookimpl
    def dvd_vfx_job_failed(self, job, error):
        self._record("job_failed", job=job.id, type=type(error).__name__, message=str(error),
                     exit_code=error.exit_code)

    @hookimpl
    def dvd_vfx_should_cancel(self, job):
        if self.cancel_when is not None and self.cancel_when(self):
            return True
        return None
