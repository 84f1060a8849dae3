"""Host/model overlap on CPU with a predictor that sleeps like a GPU (issue: the GPU path at its bound).

    python benchmarks/bench_overlap.py [--frames 321] [--size 1920x1080] [--resolution 480] [--window 21 --overlap 5]

A GPU predictor leaves the CPU idle while it runs (the CUDA calls release the GIL); a predictor
that sleeps does the same. Measured: the predict stage of render_shot (decode + resize + predict
+ store writes), run as a window part (`only_windows`: every window, no EXR pass, whose writing
would only add the same time to each case):

  host only     an instant predictor: decoding, resizing, windowing, the store writes
  model only    the sleeping predictor's sleeps alone (windows x seconds a window)
  together      the sleeping predictor in a real render, the host run inline (before, OVERLAP off)
                and overlapped (after: dvd_vfx.pipeline's prefetch thread and background writer)

The sleep per window is set to the measured host time per window (the case the issue names:
host time = model time); the target for "together" is close to max(host, model).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


class SleepingPredictor:
    """Sleeps `seconds` per window like a GPU (no CPU used), returns the green channel."""

    name = "sleeping"

    def __init__(self, seconds: float):
        self.seconds = seconds

    def identity(self):
        return {"predictor": self.name, "model_id": f"sleep-{self.seconds}", "weights_sha256": "0" * 64}

    def predict(self, frames):
        time.sleep(self.seconds)
        return frames[..., 1].astype(np.float32, copy=True)


def make_clip(path: Path, frames: int, size: str) -> Path:
    from dvd_vfx.footage.ffmpeg_tools import find_ffmpeg

    if not path.is_file():
        subprocess.run([find_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=24",
                        "-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                        str(path)], check=True)
    return path


def render(clip: Path, predictor, *, overlap: bool, args, work: Path) -> dict:
    from dvd_vfx import render as render_mod
    from dvd_vfx.cache import ShotCache

    out = work / "out"
    cache_dir = work / "cache"
    for d in (out, cache_dir):
        shutil.rmtree(d, ignore_errors=True)
    render_mod.OVERLAP = overlap
    options = render_mod.RenderOptions(out_dir=out, resolution=args.resolution, window=args.window,
                                       overlap=args.overlap)
    from dvd_vfx.footage import open_footage

    n = len(render_mod.shot_layout(open_footage(clip).info, options).windows)
    try:
        result = render_mod.render_shot(clip, options, predictor, cache=ShotCache(cache_dir), only_windows=(0, n - 1))
    finally:
        render_mod.OVERLAP = True
    return {"windows": result.windows, "predict_s": round(result.timings["predict_s"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=321)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--resolution", type=int, default=480)
    ap.add_argument("--window", type=int, default=21, help="frames per window (default 21: more windows per shot)")
    ap.add_argument("--overlap", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each case; the fastest is kept")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "dvd-bench-overlap"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    clip = make_clip(work / f"clip{args.frames}_{args.size}.mp4", args.frames, args.size)

    def best(predictor, overlap):
        runs = [render(clip, predictor, overlap=overlap, args=args, work=work)
                for _ in range(args.repeat)]
        return min(runs, key=lambda r: r["predict_s"])

    host = best(SleepingPredictor(0.0), False)
    n = host["windows"]
    per_window = round(host["predict_s"] / n, 3)
    model = {"windows": n, "predict_s": round(per_window * n, 2)}
    sleeping = SleepingPredictor(per_window)
    before = best(sleeping, False)
    after = best(sleeping, True)
    bound = max(host["predict_s"], model["predict_s"])
    print(json.dumps({"clip": f"{args.frames} frames {args.size} H.264", "resolution": args.resolution,
                      "window": args.window, "overlap": args.overlap,
                      "sleep_per_window_s": per_window, "host_only": host, "model_only": model,
                      "together_inline": before, "together_overlapped": after,
                      "overlapped_vs_max": round(after["predict_s"] / bound, 3),
                      "inline_vs_max": round(before["predict_s"] / bound, 3),
                      "ideal_overlapped_vs_max": round((n + 1) / n, 3)}, indent=1))
    shutil.rmtree(work / "out", ignore_errors=True)
    shutil.rmtree(work / "cache", ignore_errors=True)


if __name__ == "__main__":
    main()
