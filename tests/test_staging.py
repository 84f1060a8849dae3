"""DVDPredictor.stage (dvd_vfx.model.staging): the next window readied on the prefetch thread.

No GPU here: the CUDA branch's own logic (the reused host buffer, the order of copy / event / wait,
the input it makes, predict taking a staged window) runs with CPU stand-ins for the two CUDA seams
(`CpuStandInStreams` for the side stream and events, `unpinned` for the page-locked allocation).
That checks the logic and the bytes on a CPU; it is not a CUDA run (benchmarks/gpu_run.py is).
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest
import torch

from dvd_vfx import render as render_mod
from dvd_vfx.cache import ShotCache
from dvd_vfx.errors import InputError
from dvd_vfx.model.predictor import DVDPredictor, choose_vae_tiling
from dvd_vfx.model.staging import PinnedBuffer, StagedWindow, Stager, staged_bytes
from dvd_vfx.render import RenderOptions, render_shot

GiB = 2**30


def unpinned(n):
    """The allocation seam without CUDA: ordinary (pageable) host memory."""
    return torch.empty(n, dtype=torch.float32)


class StandInEvent:
    """Stands in for a torch.cuda.Event: the copies here are synchronous, so it is complete at once;
    it records who waited for it and what the buffer held then."""

    def __init__(self, log, name):
        self.log, self.name = log, name

    def synchronize(self):
        self.log.append(("synchronize", self.name))


class CpuStandInStreams:
    """Stands in for dvd_vfx.model.staging.CudaStreams on a CPU and records the calls in order."""

    def __init__(self):
        self.log = []
        self.events = 0

    def side(self):
        return "side-stream"

    @contextlib.contextmanager
    def on(self, stream):
        self.log.append(("on", stream))
        yield

    def record(self, stream):
        self.events += 1
        self.log.append(("record", f"copy{self.events}"))
        return StandInEvent(self.log, f"copy{self.events}")

    def use(self, staged):
        self.log.append(("wait", staged.ready.name, threading.current_thread().name))


def frames_of(seed, t=5, h=48, w=64):
    return np.random.default_rng(seed).random((t, h, w, 3), dtype=np.float32)


def test_host_buffer_is_reused_and_only_grows_for_a_larger_window():
    buf = PinnedBuffer(allocate=unpinned)
    for seed in range(6):  # a shot's windows: one allocation, whatever the shot's length
        frames = frames_of(seed)
        view = buf.fill(frames)
        assert view.shape == frames.shape and view.numpy().tobytes() == frames.tobytes()
    assert buf.allocations == 1 and buf.nbytes == 5 * 48 * 64 * 3 * 4
    buf.fill(frames_of(9, t=9))  # a longer window: one more, the buffer grows
    short = frames_of(10, t=1)
    assert buf.fill(short).numpy().tobytes() == short.tobytes()  # a shorter one fits in it
    assert buf.allocations == 2 and buf.nbytes == 9 * 48 * 64 * 3 * 4


def test_buffer_waits_for_the_last_copy_before_it_is_overwritten():
    log = []
    buf = PinnedBuffer(allocate=unpinned)
    first = frames_of(1)
    view = buf.fill(first)

    class Checking(StandInEvent):
        def synchronize(self):  # when the wait happens the buffer still holds the window being copied
            assert view.numpy().tobytes() == first.tobytes()
            super().synchronize()

    buf.in_use_until(Checking(log, "copy1"))
    buf.fill(frames_of(2))
    buf.fill(frames_of(3))  # no copy queued in between: nothing to wait for
    assert log == [("synchronize", "copy1")]


def test_stager_copies_on_the_side_stream_records_then_waits_before_use():
    streams = CpuStandInStreams()
    stager = Stager(torch.device("cpu"), streams=streams, allocate=unpinned)
    a, b = frames_of(1), frames_of(2)
    sa = stager.stage(a)
    sb = stager.stage(b)  # refills the one buffer: the first staged window is a copy, not a view of it
    assert isinstance(sa, StagedWindow) and sa.shape == a.shape
    assert sa.tensor.numpy().tobytes() == a.tobytes() and sb.tensor.numpy().tobytes() == b.tobytes()
    assert stager.buffer.allocations == 1
    tensor = sa.tensor
    assert stager.take(sa) is tensor and sa.tensor is None  # handed over: the window holds no device memory
    assert streams.log == [("on", "side-stream"), ("record", "copy1"),
                           ("synchronize", "copy1"),  # the second fill waited for the first copy
                           ("on", "side-stream"), ("record", "copy2"),
                           ("wait", "copy1", threading.current_thread().name)]


def _with_stand_ins(predictor):
    streams = CpuStandInStreams()
    predictor.__dict__["_staging"] = Stager(predictor.device, streams=streams, allocate=unpinned)
    return streams


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_dvd_predict_of_a_staged_window_is_byte_identical(tiny_weights_master, dtype):
    frames = frames_of(3, t=5, h=48, w=64)
    plain = DVDPredictor(str(tiny_weights_master), device="cpu", dtype=dtype).predict(frames)
    predictor = DVDPredictor(str(tiny_weights_master), device="cpu", dtype=dtype)
    streams = _with_stand_ins(predictor)
    staged = predictor.stage(frames)
    assert isinstance(staged, StagedWindow)
    assert predictor.predict(staged).tobytes() == plain.tobytes()
    assert [e[0] for e in streams.log] == ["on", "record", "wait"]
    with pytest.raises(InputError, match="predicted already"):
        predictor.predict(staged)


def test_dvd_stage_on_cpu_is_the_plain_path_and_checks_the_window(tiny_weights_master):
    predictor = DVDPredictor(str(tiny_weights_master), device="cpu")
    frames = frames_of(4)
    assert predictor.stage(frames) is frames
    with pytest.raises(InputError, match="4n\\+1"):
        predictor.stage(frames_of(4, t=4))
    other = DVDPredictor(str(tiny_weights_master), device="cpu")
    _with_stand_ins(other)
    with pytest.raises(InputError, match="without staging: pass it the frames"):
        DVDPredictor(str(tiny_weights_master), device="cpu").predict(other.stage(frames))


def test_a_dvd_render_with_staging_writes_the_same_bytes(tiny_weights_master, tmp_path, monkeypatch):
    from footage_helpers import write_exr_sequence

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    plate = write_exr_sequence(tmp_path / "plate", count=11, size=(64, 48))
    options = dict(resolution=48, window=5, overlap=2)
    monkeypatch.setattr(render_mod, "STAGE", False)
    plain = render_shot(plate, RenderOptions(out_dir=tmp_path / "a", **options),
                        DVDPredictor(str(tiny_weights_master), device="cpu", dtype="bf16"),
                        cache=ShotCache(tmp_path / "ca"))
    monkeypatch.setattr(render_mod, "STAGE", True)
    predictor = DVDPredictor(str(tiny_weights_master), device="cpu", dtype="bf16")
    streams = _with_stand_ins(predictor)
    staged = render_shot(plate, RenderOptions(out_dir=tmp_path / "b", **options), predictor,
                         cache=ShotCache(tmp_path / "cb"))
    assert [p.read_bytes() for p in plain.paths] == [p.read_bytes() for p in staged.paths]
    wa, wb = sorted((tmp_path / "ca").rglob("window.*.npy")), sorted((tmp_path / "cb").rglob("window.*.npy"))
    assert len(wa) == plain.windows and [p.read_bytes() for p in wa] == [p.read_bytes() for p in wb]
    # every window staged once, waited for on the render's thread before use
    assert sum(1 for e in streams.log if e[0] == "record") == plain.windows
    assert {e[2] for e in streams.log if e[0] == "wait"} == {threading.current_thread().name}
    assert predictor.__dict__["_staging"].buffer.allocations == 1


def test_auto_tiling_counts_the_staged_window():
    assert staged_bytes(81, 720, 1280) == 81 * 720 * 1280 * 3 * 4  # 0.84 GiB of float32 frames
    free = 14 * GiB  # 720p untiled: 12.7 GiB + 1 GiB slack fits; with the next window staged (13.5) it does not
    assert choose_vae_tiling(81, 720, 1280, torch.bfloat16, "cuda", free)[0] is False
    tiling, line = choose_vae_tiling(81, 720, 1280, torch.bfloat16, "cuda", free, staged=True)
    assert tiling and line.startswith("VAE tiling: on (estimate 13.5 GiB with the next window staged + 1 GiB slack")


def test_auto_tiling_counts_the_memory_this_process_holds_already(tiny_weights_master, monkeypatch, caplog):
    """plan_window's arithmetic with torch.cuda's memory queries replaced (there is no GPU here): the blocks
    PyTorch's allocator caches (a warm-up, an earlier shot of a batch) and weights already on the GPU are
    usable by the window, so they do not push a render into tiling."""
    from dvd_vfx.model.predictor import untiled_bytes

    predictor = DVDPredictor(str(tiny_weights_master), device="cpu", dtype="bf16", vae_tiling_auto=True)
    predictor.device = torch.device("cuda")  # (only the plan's arithmetic runs; no tensor is made)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (6 * GiB, 80 * GiB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 6 * GiB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 3 * GiB)
    staged = staged_bytes(81, 480, 848)
    with caplog.at_level("INFO", logger="dvd_vfx"):
        predictor.plan_window(81, 480, 848)  # 6 free + 3 cached = 9 GiB; 7.2 + 0.4 staged + 1 slack fits
        assert predictor.vae_tiling is False
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3 * GiB)
        predictor.plan_window(81, 480, 848)  # 6 GiB usable: tiles
        assert predictor.vae_tiling is True
        monkeypatch.setattr(predictor, "_weights_on_device", lambda: True)
        predictor.plan_window(81, 480, 848)  # weights loaded already: the window needs 4.7 GiB + 1: fits
        assert predictor.vae_tiling is False
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("VAE tiling:")]
    need = untiled_bytes(81, 480, 848) + staged
    assert f"estimate {need / GiB:.1f} GiB with the next window staged" in lines[0] and "free 9.0 GiB" in lines[0]
    assert "free 6.0 GiB" in lines[1]
    assert f"estimate {(untiled_bytes(81, 480, 848, offload=True) + staged) / GiB:.1f} GiB" in lines[2]


def test_out_of_memory_while_staging_is_exit_75(tiny_weights_master):
    from dvd_vfx.errors import DeviceMemoryError

    class Full:
        def stage(self, frames):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 198.00 MiB")

    predictor = DVDPredictor(str(tiny_weights_master), device="cpu")
    predictor.__dict__["_staging"] = Full()
    with pytest.raises(DeviceMemoryError, match="staging the next 5-frame 64x48 window") as caught:
        predictor.stage(frames_of(5))
    assert caught.value.exit_code == 75
