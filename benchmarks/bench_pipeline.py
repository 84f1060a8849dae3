"""Shot-pipeline benchmarks (issue: shot rendering).

    python benchmarks/bench_pipeline.py memory    # peak RSS, 100 vs 1000 frames of 1920x1080, tiny model
    python benchmarks/bench_pipeline.py overhead  # whole pipeline with an instant predictor vs plain ffmpeg decode

Each measurement runs in a fresh subprocess so peak RSS (ru_maxrss) belongs to that render alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_clip(path: Path, frames: int, size: str = "1920x1080") -> Path:
    from dvd_vfx.footage.ffmpeg_tools import find_ffmpeg

    if not path.is_file():
        subprocess.run([find_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=24",
                        "-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                        str(path)], check=True)
    return path


class InstantPredictor:
    """Returns at once: measures everything but the model."""

    name = "instant"

    def identity(self):
        return {"predictor": self.name, "model_id": "instant", "weights_sha256": "0" * 64}

    def predict(self, frames):
        return frames[..., 1].astype(np.float32, copy=True)


def _child(args) -> None:
    from dvd_vfx.render import RenderOptions, render_shot

    if args.predictor == "tiny":
        from dvd_vfx.model.predictor import DVDPredictor

        predictor = DVDPredictor(args.weights, device="cpu")
    else:
        predictor = InstantPredictor()
    out = Path(tempfile.mkdtemp(prefix="dvd-bench-out-"))
    t0 = time.perf_counter()
    result = render_shot(args.clip, RenderOptions(out_dir=out, resolution=args.resolution, window=args.window,
                                                  overlap=args.overlap), predictor)
    dt = time.perf_counter() - t0
    print(json.dumps({"frames": result.frame_count, "seconds": round(dt, 2), "fps": round(result.frame_count / dt, 2),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "timings": {k: round(v, 2) for k, v in result.timings.items()}}))
    for p in result.paths:
        p.unlink()
    out.rmdir()


def _run_child(**kw) -> dict:
    cmd = [sys.executable, __file__, "_child"] + [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def ffmpeg_decode_fps(clip: Path, frames: int) -> float:
    from dvd_vfx.footage.ffmpeg_tools import find_ffmpeg

    t0 = time.perf_counter()
    subprocess.run([find_ffmpeg(), "-v", "error", "-i", str(clip), "-f", "null", "-"], check=True)
    return frames / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("memory", "overhead", "_child"))
    ap.add_argument("--clip")
    ap.add_argument("--predictor", default="instant")
    ap.add_argument("--weights")
    ap.add_argument("--resolution", type=int, default=480)
    ap.add_argument("--window", type=int, default=81)
    ap.add_argument("--overlap", type=int, default=21)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "dvd-bench"))
    args = ap.parse_args()
    if args.what == "_child":
        return _child(args)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.what == "memory":
        from dvd_vfx.model.tiny import write_tiny_weights

        weights = work / "tiny"
        if not (weights / "Wan2.1_VAE.pth").is_file():
            write_tiny_weights(weights)
        rows = {}
        for n in (100, 1000):
            clip = make_clip(work / f"clip{n}.mp4", n)
            rows[n] = _run_child(clip=clip, predictor="tiny", weights=weights, resolution=64, window=9, overlap=4)
            print(f"{n} frames: {rows[n]}", flush=True)
        print(json.dumps({"peak_rss_ratio_1000_vs_100": round(rows[1000]["peak_rss_mib"] / rows[100]["peak_rss_mib"], 3)}))
    else:
        n = 240
        clip = make_clip(work / f"clip{n}.mp4", n)
        pipe = _run_child(clip=clip, predictor="instant")
        decode = ffmpeg_decode_fps(clip, n)
        print(json.dumps({"pipeline": pipe, "ffmpeg_decode_fps": round(decode, 2),
                          "ratio": round(pipe["fps"] / decode, 3)}, indent=1))


if __name__ == "__main__":
    main()
