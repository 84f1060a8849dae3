"""Scene-scale anchors: anchored AbsRel vs the best single affine fit, by anchor count and wrong fraction.

    python benchmarks/bench_anchors.py [--seeds 3]

The scene of tests/test_anchors.py: a ray-cast floor, wall and sphere seen by a camera walking
forward (24 frames, 96x64), a predictor that behaves like DVD (each window 2-98 % normalised on
its own, clipped, noise 0.01), anchors from the scene's 3D points through the camera; a wrong
anchor has 2.5x its depth. AbsRel on mid-range pixels (true depth within the shot's 10-90 %);
the oracle is the best single affine fit of the pass's disparity to the truth. Prints a JSON line
per (anchors, wrong fraction) with the median over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import OpenEXR

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import test_anchors as scene  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        truth = {}
        for t in range(scene.FRAMES):
            z = scene.depth_of(t)
            truth[scene.FIRST + t] = z
            rgb = np.repeat((2.0 / z)[..., None], 3, axis=2).astype(np.float32)
            OpenEXR.File({"type": OpenEXR.scanlineimage},
                         {c: np.ascontiguousarray(rgb[..., i]) for i, c in enumerate("RGB")}).write(
                str(tmp / f"plate.{scene.FIRST + t}.exr"))
        plate = tmp / "plate.####.exr"
        for n in (3, 10, 40, 200):
            for wrong_fraction in (0.0, 0.1, 0.3):
                results, oracle, failed = [], None, 0
                for seed in range(args.seeds):
                    rng = np.random.default_rng(1000 + seed)
                    rows = scene.scene_points(n, seed=100 * n + seed)
                    wrong = set(rng.choice(n, size=int(round(wrong_fraction * n)), replace=False).tolist())
                    csv = scene.write_csv(tmp / f"a{n}-{seed}.csv", rows, wrong)
                    try:
                        result = scene.render(plate, tmp / f"out{n}-{wrong_fraction}-{seed}", csv)
                    except Exception as exc:  # noqa: BLE001 - a refused fit is a result here
                        failed += 1
                        print(f"  n={n} wrong={wrong_fraction} seed={seed}: {exc}", file=sys.stderr)
                        continue
                    absrel, oracle = scene.scores(result, truth)
                    results.append(absrel)
                print(json.dumps({"anchors": n, "wrong_fraction": wrong_fraction, "seeds": args.seeds,
                                  "refused": failed, "absrel_median": statistics.median(results) if results else None,
                                  "oracle_absrel": oracle,
                                  "ratio": statistics.median(results) / oracle if results and oracle else None}))


if __name__ == "__main__":
    main()
