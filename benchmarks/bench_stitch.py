"""Cost and accuracy of the shot stitcher (dvd_vfx.stitch) on synthetic shots.

    python benchmarks/bench_stitch.py --frames 10000

Part 1 times the whole stitch of a long synthetic shot at a small spatial size: overlap
sampling of every window pair, the joint affine solve, pass 1 over every frame (blend weights
+ stitched frame + percentile accumulation) and pass 2 over every frame (stitched frame +
normalisation + disparity->depth). Not timed: making the synthetic predictions (the model's
job), reading the window cache, upsampling, EXR writing.

Part 2 measures scale drift with known ground truth on shots of --drift-frames frames, ours
(solve_affines) against the official sequential chain (sequential_chain_affines): every window
has a random scale in [0.5, 2] and shift, plus Gaussian noise of --sigma, clipped to [0, 1].
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dvd_vfx import stitch  # noqa: E402
from dvd_vfx.windows import overlap_pairs, plan_windows  # noqa: E402


def gt_disparity(t0: int, t1: int, h: int, w: int) -> np.ndarray:
    """Smooth moving ground-truth disparity in [0.05, 0.95] for frames t0..t1-1."""
    t = np.arange(t0, t1, dtype=np.float64)[:, None, None]
    y = np.linspace(0.0, 1.0, h)[None, :, None]
    x = np.linspace(0.0, 1.0, w)[None, None, :]
    return (
        0.5
        + 0.3 * np.sin(2 * np.pi * (x + 0.5 * y) + t / 37.0)
        + 0.08 * np.sin(t / 151.0)
        + 0.05 * np.cos(3 * np.pi * y + t / 23.0)
    )


def synthetic_shot(n, h, w, window, overlap, sigma, seed):
    rng = np.random.default_rng(seed)
    plan = plan_windows(n, window, overlap)
    a = rng.uniform(0.5, 2.0, len(plan))
    b = 0.5 - 0.5 * a + rng.uniform(-0.1, 0.1, len(plan)) * a
    preds = {}
    for win in plan:
        p = (gt_disparity(win.start, win.stop, h, w) - b[win.index]) / a[win.index]
        p += rng.normal(0.0, sigma, p.shape)
        preds[win.index] = np.clip(p, 0.0, 1.0).astype(np.float32)
    return plan, preds, a, b


def sample_overlaps(plan, preds):
    out = []
    for i, j, lo, hi in overlap_pairs(plan):
        pi = preds[i][lo - plan[i].start : hi - plan[i].start]
        pj = preds[j][lo - plan[j].start : hi - plan[j].start]
        out.append((i, j, stitch.overlap_samples(pi, pj)))
    return out


def slope(plan, preds, scales, shifts, frames, h, w):
    """Slope of stitched disparity against ground truth (saturated pixels left out)."""
    xs, ys = [], []
    for f in frames:
        contrib = stitch.frame_contributions(plan, f)
        out = stitch.stitch_frame(contrib, preds, scales, shifts)
        ok = np.ones(out.shape, dtype=bool)
        for k, t, _ in contrib:
            ok &= (preds[k][t] > 0.01) & (preds[k][t] < 0.99)
        xs.append(gt_disparity(f, f + 1, h, w)[0][ok])
        ys.append(out[ok])
    return float(np.polyfit(np.concatenate(xs), np.concatenate(ys), 1)[0])


def drift_numbers(plan, preds, a, b, ov, h, w, n):
    ra = a / a[0]
    ours = stitch.solve_affines(len(plan), ov)
    seq = stitch.sequential_chain_affines([s for i, j, s in ov if j == i + 1])
    res = {}
    for name, (sa, sb) in (("ours", ours), ("sequential", seq)):
        m = min(100, n // 2)
        first = slope(plan, preds, sa, sb, range(m), h, w)
        last = slope(plan, preds, sa, sb, range(n - m, n), h, w)
        res[name] = (
            abs(sa[-1] / ra[-1] - 1.0),
            float(np.abs(sa / ra - 1.0).max()),
            abs(last / first - 1.0),
        )
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=10000, help="frames of the timed shot")
    ap.add_argument("--height", type=int, default=32)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--window", type=int, default=81)
    ap.add_argument("--overlap", type=int, default=21)
    ap.add_argument("--sigma", type=float, default=0.02, help="noise of each window prediction")
    ap.add_argument("--drift-frames", type=int, default=1200, help="frames of the drift shots")
    ap.add_argument("--drift-seeds", type=int, default=10, help="drift shots (seeds 0..N-1)")
    args = ap.parse_args(argv)
    h, w, n = args.height, args.width, args.frames

    print(f"# bench_stitch  python {platform.python_version()}  numpy {np.__version__}  "
          f"{platform.machine()} {platform.processor() or ''}".rstrip())
    print(f"## 1. stitch cost: {n} frames at {w}x{h}, window {args.window}, overlap {args.overlap}")
    plan, preds, a, b = synthetic_shot(n, h, w, args.window, args.overlap, args.sigma, seed=0)
    print(f"windows: {len(plan)}, window pairs sharing frames: {len(overlap_pairs(plan))} "
          "(synthetic predictions made beforehand, not timed)")

    t = {}
    t0 = time.perf_counter()
    ov = sample_overlaps(plan, preds)
    t["overlap sampling (all pairs)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scales, shifts = stitch.solve_affines(len(plan), ov)
    t["joint affine solve"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc = stitch.PercentileAccumulator()
    for f in range(n):
        acc.add(stitch.stitch_frame(stitch.frame_contributions(plan, f), preds, scales, shifts))
    p_lo, p_hi = acc.result()
    t["pass 1: blend + stitch + percentile accumulation"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for f in range(n):
        d = stitch.normalise(
            stitch.stitch_frame(stitch.frame_contributions(plan, f), preds, scales, shifts),
            p_lo,
            p_hi,
        )
        stitch.depth_from_disparity(d, 1.0, 100.0)
    t["pass 2: blend + stitch + normalise + depth"] = time.perf_counter() - t0
    for k, v in t.items():
        print(f"  {k:<52s} {v:8.3f} s")
    total = sum(t.values())
    print(f"  {'total':<52s} {total:8.3f} s   ({1e3 * total / n:.3f} ms/frame)")
    ra = a / a[0]
    seq_a, _ = stitch.sequential_chain_affines([s for i, j, s in ov if j == i + 1])
    print(f"  this shot: worst-window scale error ours {np.abs(scales / ra - 1).max():.3%}, "
          f"last window ours {abs(scales[-1] / ra[-1] - 1):.3%} vs sequential "
          f"{abs(seq_a[-1] / ra[-1] - 1):.3%}; percentiles {p_lo:.4f}..{p_hi:.4f}")
    del preds, ov

    print(f"\n## 2. scale drift: {args.drift_frames}-frame shots at {w}x{h}, sigma {args.sigma}, "
          f"scales in [0.5, 2]")
    print("seed  windows | ours: last-window  worst-window  slope drift | "
          "sequential: last-window  worst-window  slope drift")
    rows = []
    for seed in range(args.drift_seeds):
        plan, preds, a, b = synthetic_shot(
            args.drift_frames, h, w, args.window, args.overlap, args.sigma, seed
        )
        ov = sample_overlaps(plan, preds)
        r = drift_numbers(plan, preds, a, b, ov, h, w, args.drift_frames)
        rows.append(r["ours"] + r["sequential"])
        o, s = r["ours"], r["sequential"]
        print(f"{seed:4d} {len(plan):8d} |      {o[0]:8.3%}      {o[1]:8.3%}    {o[2]:8.3%} |"
              f"             {s[0]:8.3%}      {s[1]:8.3%}    {s[2]:8.3%}")
    rows = np.array(rows)
    rms = np.sqrt((rows**2).mean(axis=0))
    print(f" rms          |      {rms[0]:8.3%}      {rms[1]:8.3%}    {rms[2]:8.3%} |"
          f"             {rms[3]:8.3%}      {rms[4]:8.3%}    {rms[5]:8.3%}")
    print("(last-window / worst-window: recovered scale vs true scale relative to window 0; "
          "slope drift: stitched-vs-truth slope, last 100 frames over first 100 frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
