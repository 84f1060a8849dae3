"""`dvd-vfx anchors from-camera`: projection speed on a big solve, and the anchored AbsRel of
renders anchored through it on tests/test_anchors.py's scene.

    python benchmarks/bench_anchors_camera.py [--points 200000] [--frames 240]

Speed: a cloud of N random points around a 1920x1080 camera that walks and pans (a .chan with
vfov), projected through every frame with --per-frame 20, and (24 frames) with every visible point kept;
seconds for reading, projecting (+ spreading) and writing the CSV. Accuracy: the ray-cast scene
(24 frames, 96x64), 40 surface points, anchors through `anchors from-camera` with --per-frame N
(points hidden behind the sphere on some frames become wrong anchors), AbsRel on mid-range pixels
against the oracle (the best single affine fit). One JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from dvd_vfx import anchors_camera as ac  # noqa: E402


def speed(n_points: int, frames: int, folder: Path) -> None:
    rng = np.random.default_rng(0)
    pts = rng.uniform([-40, -2, -80], [40, 20, -2], size=(n_points, 3))
    (folder / "cloud.ply").write_bytes(
        f"ply\nformat binary_little_endian 1.0\nelement vertex {n_points}\nproperty float x\nproperty float y\n"
        "property float z\nend_header\n".encode() + pts.astype("<f4").tobytes())
    lines = [f"{1001 + t} {0.02 * t} 1.7 {-0.05 * t} {2 * np.sin(t / 40)} {20 * t / frames - 10} 0 40"
             for t in range(frames)]
    (folder / "cam.chan").write_text("\n".join(lines) + "\n")
    for per_frame, last in ((20, None), (None, min(frames, 24))):  # every visible point: 24 frames (the CSV grows)
        t0 = time.perf_counter()
        points = ac.read_points(folder / "cloud.ply")
        t1 = time.perf_counter()
        camera = ac.read_camera(folder / "cam.chan", (1920, 1080))
        span = (1001, 1000 + last) if last else None
        result = ac.project_points(points, camera, per_frame=per_frame, frames=span)
        t2 = time.perf_counter()
        ac.write_anchors_csv(result.rows, folder / "a.csv")
        t3 = time.perf_counter()
        print(json.dumps({"points": n_points, "frames": last or frames, "per_frame": per_frame, "anchors": len(result.rows),
                          "read_s": round(t1 - t0, 3), "project_s": round(t2 - t1, 3),
                          "write_s": round(t3 - t2, 3), "csv_mb": round((folder / "a.csv").stat().st_size / 1e6, 1)}),
              flush=True)


def accuracy(folder: Path) -> None:
    import OpenEXR
    import test_anchors as scene
    import test_anchors_camera as tc

    truth = {}
    plates = folder / "plates"
    plates.mkdir()
    for t in range(scene.FRAMES):
        z = scene.depth_of(t)
        truth[scene.FIRST + t] = z
        rgb = np.repeat((2.0 / z)[..., None], 3, axis=2).astype(np.float32)
        OpenEXR.File({"type": OpenEXR.scanlineimage}, {c: np.ascontiguousarray(rgb[..., i]) for i, c in
                                                       enumerate("RGB")}).write(str(plates / f"plate.{scene.FIRST + t}.exr"))
    chan = tc.write_chan(folder / "scene.chan")
    for seed in (5, 6, 7):
        pts = folder / f"points{seed}.csv"
        pts.write_text("".join(f"{a!r},{b!r},{c!r}\n" for a, b, c in tc.mirror(tc.surface_points(40, seed)).tolist()))
        for per_frame in (2, 4, 8, None):
            out = folder / f"a{seed}_{per_frame}.csv"
            _, projected, _ = ac.from_camera(pts, chan, out, size=(scene.W, scene.H), per_frame=per_frame)
            result = scene.render(plates / "plate.####.exr", folder / f"out{seed}_{per_frame}", out)
            absrel, oracle = scene.scores(result, truth)
            print(json.dumps({"seed": seed, "per_frame": per_frame, "anchors": len(projected.rows),
                              "used": result.anchors["used"], "rejected": result.anchors["rejected"],
                              "absrel": round(absrel, 4), "oracle": round(oracle, 4),
                              "ratio": round(absrel / oracle, 3)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        speed(args.points, args.frames, Path(tmp))
        if not args.skip_accuracy:
            accuracy(Path(tmp))


if __name__ == "__main__":
    main()
