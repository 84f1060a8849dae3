"""Farm benchmark: a batch of shots in one process vs `dvd-vfx farm ray` on a local 2-node Ray cluster.

    python benchmarks/bench_farm.py [--shots 6] [--frames 17] [--windows-per-task 0 1 3]

Tiny official-format model (CPU), 96x64 clips at working short side 64, window 9 / overlap 4
(3 windows per 17-frame shot). The cluster is two `ray start` nodes of one CPU each on loopback
(tests/ray_cluster.py), so each task's torch runs one thread (Ray sets OMP_NUM_THREADS to the
task's CPUs). The one-process baseline runs twice: with this machine's default threads, and
with one thread (what one Ray node gets). The Ray runs use dvd_vfx.farm.ray_runner.RayFarm in
this process, so every task's receipt (task time, render-process time, render time) and the
batch's model loads are read back; plus the round trip of an empty Ray task on the same cluster.
`--windows-per-task 0` is farm ray's default: warm tasks (the batch's windows over the cluster's
task slots, one model load per slot). Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from plugin_helpers import make_plate  # noqa: E402
from ray_cluster import RAY_ENV, LocalRayCluster  # noqa: E402

OPTS = dict(resolution=64, window=9, overlap=4)
ONE_PROCESS = """
import sys, time
from pathlib import Path
from dvd_vfx.render import RenderOptions, render_shot
from dvd_vfx.model.predictor import DVDPredictor
t0 = time.perf_counter()
predictor = DVDPredictor(sys.argv[1], device="cpu")
for plate in sys.argv[3:]:
    render_shot(plate, RenderOptions(out_dir=Path(sys.argv[2]), resolution=64, window=9, overlap=4), predictor)
print(time.perf_counter() - t0)
"""
NOOP_LATENCY = """
import json, statistics, sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
@ray.remote(num_cpus=1)
def noop():
    return None
ray.get(noop.remote())  # a worker process exists from here on
one = []
for _ in range(30):
    t0 = time.perf_counter(); ray.get(noop.remote()); one.append(time.perf_counter() - t0)
t0 = time.perf_counter(); ray.get([noop.remote() for _ in range(200)]); batch = time.perf_counter() - t0
print(json.dumps({"noop_task_round_trip_ms": round(statistics.median(one) * 1000, 2),
                  "noop_tasks_per_s_200_at_once": round(200 / batch, 1)}))
"""


def one_process(weights: Path, plates: list[Path], out: Path, threads: int | None) -> float:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run([sys.executable, "-c", ONE_PROCESS, str(weights), str(out), *map(str, plates)], env=env,
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def farm_run(cluster: LocalRayCluster, weights: Path, plates: list[Path], out: Path, cache: Path, k: int) -> dict:
    from dvd_vfx.render import RenderOptions
    from dvd_vfx.farm.plan import plan_shot
    from dvd_vfx.farm.plan import task_model
    from dvd_vfx.farm.ray_runner import FarmSettings, RayFarm, import_ray, model_loads
    from dvd_vfx.engine import Engine
    from dvd_vfx.plugins import ModelSettings

    os.environ.update(RAY_ENV)
    options = RenderOptions(out_dir=out, **OPTS)
    shots = [plan_shot(str(p), options, windows_per_task=k or 1) for p in plates]
    farm = RayFarm(import_ray(), Engine(), shots, options, FarmSettings(address=cluster.address),
                   model=task_model(ModelSettings(weights=str(weights)), 0), cache_root=str(cache),
                   windows_per_task=k or None)
    t0 = time.perf_counter()
    farm.run()
    wall = time.perf_counter() - t0
    assert all(s.error is None for s in farm.shots), [str(s.error) for s in farm.shots]
    receipts = [p.result for s in farm.shots for p in s.parts.values() if not (farm.warm and p.kind == "windows")]
    receipts += [{**w.result, "result": {"seconds": sum(float(i["result"]["seconds"]) for i in w.result["items"])}}
                 for w in farm.warm_tasks]  # a warm task: one process for its parts of several shots
    task_s = [r["task_s"] for r in receipts]
    child_s = [r["child_s"] for r in receipts]
    render_s = [float(r["result"]["seconds"]) for r in receipts]
    outside = [c - r for c, r in zip(child_s, render_s)]  # interpreter, imports, plugins, predictor build
    return {"windows_per_task": k or "warm", "tasks": len(receipts), "wall_s": round(wall, 1),
            "model_loads": sum(model_loads(s.parts.values()) for s in farm.shots),
            "sum_task_s": round(sum(task_s), 1), "sum_render_s": round(sum(render_s), 1),
            "median_process_outside_render_s": round(statistics.median(outside), 2),
            "median_task_minus_process_s": round(statistics.median(t - c for t, c in zip(task_s, child_s)), 3),
            "cluster_busy": round(sum(task_s) / (2 * wall), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", type=int, default=6)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--windows-per-task", type=int, nargs="+", default=[0, 1, 3],
                    help="one Ray run per value; 0: warm tasks (farm ray's default)")
    ap.add_argument("--no-one-process", action="store_true", help="skip the one-process baselines")
    args = ap.parse_args()
    from dvd_vfx.model.tiny import write_tiny_weights

    work = Path(tempfile.mkdtemp(prefix="dvd-bench-farm-"))
    write_tiny_weights(work / "tiny", seed=0)
    plates = [make_plate(work / "plates" / f"sh{i:02d}0.mp4", args.frames, size="96x64")
              for i in range(1, args.shots + 1)]
    print(json.dumps({"shots": args.shots, "frames_per_shot": args.frames, "plate": "96x64", **OPTS,
                      "cpus": os.cpu_count()}), flush=True)
    for threads in () if args.no_one_process else (None, 1):
        seconds = one_process(work / "tiny", plates, work / f"one-{threads or 'default'}", threads)
        print(json.dumps({"one_process_threads": threads or "default", "wall_s": round(seconds, 1)}), flush=True)
    with LocalRayCluster(nodes=2, cpus_per_node=1, object_store_mb=300) as cluster:
        noop = subprocess.run([sys.executable, "-c", NOOP_LATENCY, cluster.address], env={**os.environ, **RAY_ENV},
                              capture_output=True, text=True, check=True)
        print(noop.stdout.strip(), flush=True)
        for k in args.windows_per_task:
            print(json.dumps(farm_run(cluster, work / "tiny", plates, work / f"farm-{k}", work / f"cache-{k}", k)),
                  flush=True)


if __name__ == "__main__":
    main()
