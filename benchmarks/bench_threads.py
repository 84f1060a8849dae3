"""How much a pass depends on torch's CPU thread count (why `--threads` exists).

    python benchmarks/bench_threads.py [--frames 40] [--size 256x144] [--threads 1 2] [--resolution 480]

Renders one generated clip (ffmpeg testsrc2) with the tiny official-format model on CPU, once
per thread count, without the cache (each render predicts its own windows), near 1 / far 100,
and compares every pass to the first: frames that differ, max |depth difference|, and whether a
second render with the same count is byte-identical (SOURCE_DATE_EPOCH pins the header's date).
Prints one JSON line per comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--size", default="256x144")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--resolution", type=int, default=480, help="working short side (default 480, the engine's)")
    ap.add_argument("--window", type=int, default=81)
    ap.add_argument("--overlap", type=int, default=21)
    args = ap.parse_args()
    os.environ["SOURCE_DATE_EPOCH"] = "1700000000"

    from dvd_vfx.render import RenderOptions, render_shot
    from dvd_vfx.footage.ffmpeg_tools import find_ffmpeg
    from dvd_vfx.model.predictor import DVDPredictor
    from dvd_vfx.model.tiny import write_tiny_weights
    from dvd_vfx.passes.exr import DEPTH_CHANNEL
    import OpenEXR

    def depth(path: Path) -> np.ndarray:
        with OpenEXR.File(str(path)) as f:
            return np.array(f.channels()[DEPTH_CHANNEL].pixels)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = tmp / "clip.mp4"
        subprocess.run([find_ffmpeg(), "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={args.size}:rate=24",
                        "-frames:v", str(args.frames), "-pix_fmt", "yuv420p", str(clip)], check=True)
        write_tiny_weights(tmp / "w", seed=0)
        predictor = DVDPredictor(tmp / "w", device="cpu")
        runs = []
        for n in [args.threads[0], *args.threads]:
            out = tmp / f"out{len(runs)}"
            render_shot(clip, RenderOptions(out_dir=out, resolution=args.resolution, window=args.window,
                                            overlap=args.overlap, near=1, far=100,
                                            threads=n), predictor)
            runs.append((n, sorted(out.glob("*.exr"))))
        ref_n, ref = runs[0]
        for k, (n, paths) in enumerate(runs[1:], 1):
            diffs = [float(np.abs(depth(a) - depth(b)).max()) for a, b in zip(ref, paths)]
            same_bytes = all(a.read_bytes() == b.read_bytes() for a, b in zip(ref, paths))
            print(json.dumps({"reference_threads": ref_n, "threads": n, "frames": len(paths),
                              "frames_differing": sum(d > 0 for d in diffs), "max_abs_depth_diff": max(diffs),
                              "byte_identical": same_bytes, "run": k}))


if __name__ == "__main__":
    main()
