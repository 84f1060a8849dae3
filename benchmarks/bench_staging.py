"""The host side of staging (DVDPredictor.stage on CUDA, dvd_vfx.model.staging), measured on a CPU.

    python benchmarks/bench_staging.py [--window 81] [--size 848x480] [--repeat 5]

Staging copies the next window's float32 frames into one reused (pinned) host buffer on the
prefetch thread, then uploads them non-blocking on a side stream while the model runs the window
before; predict then does on the GPU what it did before (2x - 1, the model's dtype). The host time
it adds (`PinnedBuffer.fill`) is hidden behind the model as long as host + staging < model per
window. Measured here with ordinary host memory (a CPU build of torch cannot page-lock memory).
For comparison, the design not taken: making 2x - 1 in bf16 on the host (half the upload and the
staged GPU memory, but elementwise work per window on the host). The upload itself needs a GPU:
benchmarks/gpu_run.py --compare-no-stage.

Prints one JSON object: the window, median seconds of the fill and of the bf16 alternative, the
buffer allocations, the staged GPU memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from dvd_vfx.model.staging import PinnedBuffer, staged_bytes


def median_s(fn, repeat: int) -> float:
    fn()  # first touch of the buffers
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=int, default=81)
    ap.add_argument("--size", default="848x480", help="working size WxH (default 848x480)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    frames = np.random.default_rng(0).random((args.window, h, w, 3), dtype=np.float32)
    buf = PinnedBuffer(allocate=lambda n: torch.empty(n, dtype=torch.float32))
    fill_s = median_s(lambda: buf.fill(frames), args.repeat)
    bf16 = torch.empty(frames.shape, dtype=torch.bfloat16)
    x = torch.from_numpy(frames)
    bf16_s = median_s(lambda: bf16.copy_(x * 2.0 - 1.0), args.repeat)
    print(json.dumps({
        "window": f"{args.window}x{w}x{h}", "torch_threads": torch.get_num_threads(),
        "fill_float32_median_s": fill_s, "buffer_allocations": buf.allocations,
        "alternative_bf16_on_host_median_s": bf16_s,
        "staged_gpu_mib": {"float32 (staged)": round(staged_bytes(args.window, h, w) / 2**20),
                           "bf16 (alternative)": round(staged_bytes(args.window, h, w) / 2 / 2**20)},
    }, indent=1))


if __name__ == "__main__":
    main()
