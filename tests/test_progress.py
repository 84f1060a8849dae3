"""Progress without a render: the terminal's bars fed by the job-progress hook, and SIGTERM
unwinding like Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from types import SimpleNamespace

import pytest

from dvd_vfx.console import ProgressBars, sigterm_as_interrupt


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
