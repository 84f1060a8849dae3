"""--compile on the CPU: compile time and eager vs compiled time per window (issue 21, item 2).

    python benchmarks/bench_compile.py                       # tiny model, 9x64x96 windows, + a mid-size DiT
    python benchmarks/bench_compile.py --frames 13 --height 32 --width 48 --no-mid

1. the tiny official-format model through the production loader (DVDPredictor, fp32): eager windows,
   then compiled ones: the first compiled window (compiling included), the next ones (steady state),
   the graphs compiled and the largest difference from eager;
2. a mid-size random DiT (8 blocks of 256 wide, 1,200 tokens), the transformer alone: eager vs compiled
   per pass. 8 blocks is torch's default recompile limit: one graph per block would fall back to eager.
TorchInductor caches compiled kernels on disk (TORCHINDUCTOR_CACHE_DIR, default a temp folder): a cold
compile is measured with an empty one (the script uses a fresh folder unless --warm-cache).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def _median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def tiny(args) -> dict:
    from dvd_vfx.model.compile import graphs_compiled
    from dvd_vfx.model.predictor import DVDPredictor
    from dvd_vfx.model.tiny import write_tiny_weights

    folder = tempfile.mkdtemp(prefix="dvd-bench-compile-")
    write_tiny_weights(folder)
    eager = DVDPredictor(folder, device="cpu")
    compiled = DVDPredictor(folder, device="cpu", compile=True)
    rng = np.random.default_rng(0)
    windows = [rng.random((args.frames, args.height, args.width, 3), dtype=np.float32) for _ in range(args.runs + 1)]
    eager.predict(windows[0])  # (load, allocator)
    eager_s = _median_time(lambda: eager.predict(windows[1]), args.runs)
    reference = eager.predict(windows[0])
    graphs = graphs_compiled()
    t0 = time.perf_counter()
    out = compiled.predict(windows[0])
    first_s = time.perf_counter() - t0
    graphs_first = graphs_compiled() - graphs
    steady_s = _median_time(lambda: compiled.predict(windows[1]), args.runs)
    return {"window": f"{args.frames}x{args.width}x{args.height}", "eager_window_s": round(eager_s, 3),
            "compiled_first_window_s": round(first_s, 1), "compile_s": round(first_s - steady_s, 1),
            "compiled_window_s": round(steady_s, 3), "speedup": round(eager_s / steady_s, 2),
            "graphs_first_window": graphs_first, "graphs_after": graphs_compiled() - graphs,
            "max_abs_diff_vs_eager": float(np.abs(out - reference).max())}


def mid_dit(args) -> dict:
    import torch

    from dvd_vfx.model.attention import fold_cross_attention
    from dvd_vfx.model.compile import compiled, graphs_compiled
    from dvd_vfx.model.predictor import run_transformer
    from dvd_vfx.model.tiny import TINY_DIT, build_tiny_networks

    config = {**TINY_DIT, "num_attention_heads": 4, "attention_head_dim": 64, "num_layers": 8, "ffn_dim": 1024}
    dit, vae = build_tiny_networks(seed=1, dit_config=config)
    fold_cross_attention(dit)
    z = torch.randn(1, 16, 3, 40, 40, generator=torch.Generator().manual_seed(0))  # 3 x 20 x 20 = 1,200 tokens
    with torch.inference_mode():
        reference = run_transformer(dit, z)
        eager_s = _median_time(lambda: run_transformer(dit, z), args.runs)
        graphs = graphs_compiled()
        with compiled(dit, vae):
            t0 = time.perf_counter()
            out = run_transformer(dit, z)
            first_s = time.perf_counter() - t0
            steady_s = _median_time(lambda: run_transformer(dit, z), args.runs)
    return {"dit": "8 blocks x 256 wide, ffn 1024, 1200 tokens", "eager_pass_s": round(eager_s, 3),
            "compiled_first_pass_s": round(first_s, 1), "compiled_pass_s": round(steady_s, 3),
            "speedup": round(eager_s / steady_s, 2), "graphs": graphs_compiled() - graphs,
            "max_abs_diff_vs_eager": float((out - reference).abs().max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-mid", action="store_true", help="skip the mid-size DiT")
    ap.add_argument("--warm-cache", action="store_true", help="keep TorchInductor's kernel cache (not a cold compile)")
    args = ap.parse_args()
    if not args.warm_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="dvd-inductor-cold-")
    import torch

    torch.set_num_threads(args.threads)
    result = {"torch": torch.__version__, "threads": args.threads, "cold_compile": not args.warm_cache,
              "tiny": tiny(args)}
    print(json.dumps(result), flush=True)
    if not args.no_mid:
        result["mid_dit"] = mid_dit(args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
