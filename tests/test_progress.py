"""Progress without a render: a farm shot's stages summed over its tasks' events, the terminal's
bars fed by the job-progress hook, and SIGTERM unwinding like Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from types import SimpleNamespace

import pytest

from dvd_vfx.console import ProgressBars, sigterm_as_interrupt
from dvd_vfx.farm.ray_progress import ShotProgress


def test_a_shots_progress_sums_its_parts_and_only_moves_forward():
    p = ShotProgress(n_windows=4)
    p.add("windows 0-1", "windows", 2)
    p.add("windows 2-3", "windows", 2)
    p.add("frames 1-5", "assemble", 5)
    p.add("frames 6-9", "assemble", 4)
    assert p.start() == ("predict", 0, 4)
    assert p.event("windows 2-3", "predict", 1, 4) is None  # one window was cached before the task: no news
    assert p.event("windows 2-3", "predict", 2, 4) == ("predict", 1, 4)
    p.restart("windows 2-3")  # a retried task counts again from its own first event
    assert p.event("windows 2-3", "predict", 0, 4) == ("predict", 0, 4)
    assert p.finished("windows 0-1") == ("predict", 2, 4)
    assert p.finished("windows 2-3") == ("predict", 4, 4)
    assert p.event("frames 1-5", "stitch", 9, 9) == ("stitch", 9, 9)
    assert p.event("frames 1-5", "write", 1, 9) == ("write", 1, 9)
    assert p.event("frames 6-9", "stitch", 3, 9) is None  # a later part still stitching: never backwards
    assert p.event("frames 6-9", "write", 1, 9) == ("write", 2, 9)
    assert p.finished("frames 1-5", frames=5) == ("write", 6, 9)
    assert p.finished("frames 6-9") == ("write", 9, 9)


def test_the_stitch_tasks_written_frame_is_not_counted():
    p = ShotProgress(n_windows=1)
    p.add("stitch", "stitch", 0)
    p.add("frames 1-3", "assemble", 3)
    assert p.event("stitch", "stitch", 3, 3) == ("stitch", 3, 3)
    assert p.event("stitch", "write", 1, 3) is None and p.finished("stitch") is None
    assert p.finished("frames 1-3") == ("write", 3, 3)


def bars(monkeypatch, **kwargs):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    return ProgressBars(**kwargs), stream


def test_one_job_gets_a_bar_per_stage(monkeypatch):
    progress, stream = bars(monkeypatch, label="sh010")
    job = SimpleNamespace(id="job-1")
    for stage, total in (("predict", 3), ("write", 10)):
        for done in range(total + 1):
            progress.dvd_vfx_job_progress(job=job, stage=stage, done=done, total=total)
    progress.update("evaluate", 4, 4)  # a stage outside the render
    progress.close()
    text = stream.getvalue()
    assert "sh010: predict (windows): 100%" in text and "3/3" in text
    assert "sh010: write (frames): 100%" in text and "10/10" in text and "sh010: evaluate: 100%" in text


def test_stacked_bars_name_each_job_and_change_stage_in_place(monkeypatch):
    progress, stream = bars(monkeypatch, stacked=True)
    progress.names.update({"job-1": "sh010"})
    for job_id in ("job-1", "job-2"):
        job = SimpleNamespace(id=job_id)
        progress.dvd_vfx_job_progress(job=job, stage="predict", done=2, total=2)
        progress.dvd_vfx_job_progress(job=job, stage="write", done=5, total=5)
    assert len(progress._bars) == 2  # one bar per job, whatever its stage
    progress.close()
    text = stream.getvalue()
    assert "sh010: write (frames): 100%" in text and "job-2: write (frames): 100%" in text


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM to oneself")
def test_sigterm_unwinds_like_ctrl_c_inside_the_block_only():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # interrupted at once
    assert signal.getsignal(signal.SIGTERM) is before
