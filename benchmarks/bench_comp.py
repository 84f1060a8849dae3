"""Defocus throughput (dvd_vfx.comp.defocus) at plate resolution on this machine.

    python benchmarks/bench_comp.py --size 1920x1080 --max-blur 32 --frames 3

A synthetic worst case for the layered gather: a textured frame whose depth runs from well in
front of the focus plane to far behind it (a slanted ground plane plus a few near boxes), so
the CoC covers the whole [-max_blur, max_blur] range and every layer is populated over a large
part of the frame. Times the whole defocus() call (CoC, layers, blur, composite), per backend,
after one warm-up frame. Not timed: reading and writing files. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dvd_vfx import comp  # noqa: E402


def scene(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    img = rng.random((height, width, 3), dtype=np.float32) * 0.5
    img[::37, ::41] = 8.0  # HDR highlights: bokeh shapes
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    depth = (0.6 + 60.0 * (1.0 - y) ** 3 + 0.5 * x).astype(np.float32)  # ground plane 0.6 .. 61 m
    for cx, cy, r, z in ((0.2, 0.6, 0.12, 0.7), (0.55, 0.4, 0.08, 4.0), (0.8, 0.7, 0.1, 1.2)):
        box = (np.abs(x - cx) < r) & (np.abs(y - cy) < r * 1.6)
        depth[box] = z
    return img, depth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--max-blur", type=float, default=32.0)
    ap.add_argument("--frames", type=int, default=3, help="timed frames per backend (after 1 warm-up)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--backends", default=",".join(comp.available_backends()))
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    img, depth = scene(width, height)
    # focus 2 m, 50 mm f/1.4 on a 36 mm back: K ~ 34 px at 1080p, so CoC spans -32..+32 px
    settings = comp.DefocusSettings(focus=2.0, fstop=1.4, focal_length=50.0, sensor_width=36.0,
                                    max_blur=args.max_blur)
    coc = comp.circle_of_confusion(depth, settings, width=width)
    results = []
    for backend in args.backends.split(","):
        if backend == "torch":
            import torch

            if args.threads:
                torch.set_num_threads(args.threads)
            be = comp._TorchBackend("cpu")
        else:
            be = backend
        comp.defocus(img, depth, settings, backend=be)  # warm-up
        times = []
        for _ in range(args.frames):
            t0 = time.perf_counter()
            comp.defocus(img, depth, settings, backend=be)
            times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        results.append({"backend": backend + ("-cpu" if backend == "torch" else ""),
                        "s_per_frame_median": round(med, 3), "fps": round(1.0 / med, 3),
                        "times": [round(t, 3) for t in times]})
        print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps({
        "size": f"{width}x{height}", "max_blur_px": args.max_blur,
        "coc_range_px": [round(float(coc.min()), 2), round(float(coc.max()), 2)],
        "layers": int(len(comp.layer_radii(args.max_blur))),
        "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
