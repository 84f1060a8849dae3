"""Staging the next window on CUDA while the model runs the current one (DVDPredictor.stage).

The render's prefetch thread (dvd_vfx.pipeline.Prefetcher) calls ``DVDPredictor.stage(frames)``
for the next window while ``predict`` runs on the render's thread. On CUDA staging:

1. copies the window (float32 [T,H,W,3]) into ONE page-locked (pinned) host buffer that is reused
   for every window (``PinnedBuffer``: allocated once per window size, so host memory does not grow
   with the shot's length); a plain memory copy, the one a pageable upload makes anyway;
2. uploads it with ``non_blocking=True`` on a side CUDA stream and records an event after the copy.
   The staged window (``StagedWindow``) holds the device tensor and the event.

``predict`` makes the compute stream wait for that event, marks the tensor as used on the compute
stream (``record_stream``, so the caching allocator does not hand its memory to the side stream while
the model still reads it), and goes on exactly as with frames uploaded in place: the same float32
values on the same device, then the same operations (2x - 1, the model's dtype), so the same bytes.
The pinned buffer is overwritten for the next window only after the previous copy's event has
completed, and never dropped while a copy from it is in flight.

The staged window (float32: 12 bytes a pixel-frame, 0.37 GiB for an 81x848x480 window, 0.84 GiB at
81x1280x720) lives on the GPU while the previous window runs; ``staged_bytes`` is what
``--vae-tiling-auto`` adds to its estimate for it. (Making 2x - 1 in bf16 on the host would halve that
but costs host time per window: benchmarks/bench_staging.py.)

The CUDA calls go through a small seam (``CudaStreams``) and the buffer's allocation through another
(``PinnedBuffer(allocate=...)``), so tests on a CPU drive the same buffer reuse and ordering with
stand-ins; they are named as stand-ins there, and no CUDA run is claimed by them.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class StagedWindow:
    """A window's frames on the device: ``tensor`` float32 [T,H,W,3] in [0, 1], ready once ``ready``
    (an event on the side stream) has completed."""

    tensor: torch.Tensor | None  # None once predict took it
    ready: object
    frames_shape: tuple  # the window's [T,H,W,3]

    @property
    def shape(self) -> tuple:  # (what the engine and check_window look at)
        return self.frames_shape


def staged_bytes(t: int, h: int, w: int) -> int:
    """Device memory of one staged window (the next window's frames, held while the current one runs)."""
    return t * h * w * 3 * 4


def _pinned(n: int) -> torch.Tensor:
    return torch.empty(n, dtype=torch.float32, pin_memory=True)


class PinnedBuffer:
    """One float32 host buffer reused for every window; grown (reallocated) only for a larger window.

    `allocate(n)` makes the flat buffer: page-locked memory by default (`torch.empty(...,
    pin_memory=True)`, which needs CUDA); tests pass a plain allocator. ``fill`` waits for the event
    of the last copy that read the buffer (``in_use_until``) before writing into it or dropping it.
    """

    def __init__(self, allocate=_pinned):
        self._allocate = allocate
        self._flat: torch.Tensor | None = None
        self._busy = None
        self.allocations = 0  # how many buffers were made (one per larger window size)

    @property
    def nbytes(self) -> int:
        return 0 if self._flat is None else self._flat.numel() * self._flat.element_size()

    def fill(self, frames: np.ndarray) -> torch.Tensor:
        """frames float32 [T,H,W,3] -> a view of the buffer holding a copy of them."""
        if self._busy is not None:  # the last copy from the buffer must be done before it is overwritten
            self._busy.synchronize()
            self._busy = None
        n = frames.size
        if self._flat is None or self._flat.numel() < n:
            self._flat = None  # (free the smaller one first: its copy is done, synchronised above)
            self._flat = self._allocate(n)
            self.allocations += 1
        view = self._flat[:n].view(frames.shape)
        view.copy_(torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)))
        return view

    def in_use_until(self, event) -> None:
        """A copy reading the buffer was queued; `event` completes when it is done."""
        self._busy = event


class CudaStreams:
    """The CUDA calls staging makes (the seam tests replace with CPU stand-ins)."""

    def __init__(self, device: torch.device):
        self.device = device
        self._side = None

    def side(self):
        """The stream uploads run on (one per predictor, made on first use)."""
        if self._side is None:
            self._side = torch.cuda.Stream(self.device)
        return self._side

    def on(self, stream):
        return torch.cuda.stream(stream)

    def record(self, stream):
        event = torch.cuda.Event()
        event.record(stream)
        return event

    def use(self, staged: StagedWindow) -> None:
        """Before the compute stream reads the staged tensor: wait for its upload, mark it used there."""
        current = torch.cuda.current_stream(self.device)
        current.wait_event(staged.ready)
        staged.tensor.record_stream(current)


class Stager:
    """Pinned buffer + non-blocking upload on a side stream (one per predictor; thread-safe)."""

    def __init__(self, device: torch.device, *, streams=None, allocate=_pinned):
        self.device = device
        self.streams = streams if streams is not None else CudaStreams(device)
        self.buffer = PinnedBuffer(allocate)
        self._lock = threading.Lock()  # two renders sharing a predictor share its buffer

    def stage(self, frames: np.ndarray) -> StagedWindow:
        # the prefetch thread's current CUDA device is 0 until set: pinning, the stream and the event are
        # made for the predictor's device (no context on another GPU with --device cuda:N)
        on_device = torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext()
        with self._lock, on_device, torch.inference_mode():
            host = self.buffer.fill(frames)
            side = self.streams.side()
            with self.streams.on(side):
                # copy=True: a distinct device tensor even where the device is the host (tests)
                tensor = host.to(self.device, non_blocking=True, copy=True)
                ready = self.streams.record(side)
            self.buffer.in_use_until(ready)  # the next fill waits for this copy
        return StagedWindow(tensor, ready, tuple(frames.shape))

    def take(self, staged: StagedWindow) -> torch.Tensor:
        """The staged tensor, safe to read on the render thread's current stream. The window gives it up
        (its device memory goes when the caller drops it, not when the engine drops the window)."""
        self.streams.use(staged)
        tensor, staged.tensor = staged.tensor, None
        return tensor
