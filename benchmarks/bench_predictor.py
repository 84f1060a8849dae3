"""Predictor benchmark: time per window and peak memory, plus the FLOP count of a full window.

    python benchmarks/bench_predictor.py --size tiny  --frames 9 --height 240 --width 320
    python benchmarks/bench_predictor.py --size full  --frames 9 --height 240 --width 320 --dtype bf16
    python benchmarks/bench_predictor.py --flops --frames 81 --height 480 --width 640

`--size full` builds the full Wan2.1-T2V-1.3B DiT + Wan VAE with random weights (no weights are
downloaded); `--size tiny` writes the tiny official-format test model and loads it through the
production loader. Peak memory: process peak RSS on CPU, torch.cuda.max_memory_allocated on CUDA.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

from dvd_vfx.model.loader import shipped_config
from dvd_vfx.model.predictor import DVDNetworks, DVDPredictor, resolve_device


def full_networks(dtype: torch.dtype, device: torch.device) -> DVDNetworks:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from dvd_vfx.model.loader import _keep_fp32

    torch.manual_seed(0)
    dit = WanTransformer3DModel(**shipped_config("transformer"))
    with torch.no_grad():  # as the production loader: keep diffusers' fp32 modules in fp32
        for name, p in dit.named_parameters():
            if not _keep_fp32(dit, name):
                p.data = p.data.to(dtype)
    vae = AutoencoderKLWan(**shipped_config("vae")).to(dtype)
    return DVDNetworks.from_modules(dit.eval().requires_grad_(False).to(device), vae.eval().requires_grad_(False).to(device))


def _time_stages(nets: DVDNetworks, device: torch.device) -> dict[str, list[float]]:
    """Wrap VAE encode, the DiT and VAE decode to time each stage of a prediction."""
    times: dict[str, list[float]] = {}

    def wrap(obj, attr, label):
        inner = getattr(obj, attr)

        def timed(*a, **k):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = inner(*a, **k)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.setdefault(label, []).append(time.perf_counter() - t0)
            return out

        setattr(obj, attr, timed)

    wrap(nets.vae, "encode", "vae_encode")
    wrap(nets.transformer, "forward", "dit")
    wrap(nets.vae, "decode", "vae_decode")
    return times


def count_flops(frames: int, height: int, width: int) -> dict:
    """FLOPs of one window, counted by torch's FlopCounterMode on the meta device (no memory used)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        dit = WanTransformer3DModel(**shipped_config("transformer")).eval()
        vae = AutoencoderKLWan(**shipped_config("vae")).eval()
    t, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    out = {}
    with torch.no_grad():
        x = torch.empty(1, 3, frames, height, width, device="meta")
        with FlopCounterMode(display=False) as fc:
            vae.encode(x)
        out["vae_encode"] = fc.get_total_flops()
        z = torch.empty(1, 16, t, h, w, device="meta")
        with FlopCounterMode(display=False) as fc:
            dit(hidden_states=z, timestep=torch.full((1,), 500.0, device="meta"),
                encoder_hidden_states=torch.empty(1, 512, 4096, device="meta"), return_dict=False)
        out["dit"] = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            vae.decode(z, return_dict=False)
        out["vae_decode"] = fc.get_total_flops()
    out["total"] = sum(out.values())
    out["tokens"] = t * (h // 2) * (w // 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("tiny", "full"), default="tiny")
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed predictions first (default 1)")
    ap.add_argument("--flops", action="store_true", help="only count the FLOPs of one window (meta device)")
    ap.add_argument("--peak-tflops", type=float, default=790.0, help="accelerator bf16 peak for the bound (H100 ~790)")
    args = ap.parse_args()

    if args.flops:
        f = count_flops(args.frames, args.height, args.width)
        best_s = f["total"] / (args.peak_tflops * 1e12)
        print(json.dumps({**{k: (f"{v / 1e12:.2f} TFLOP" if k != "tokens" else v) for k, v in f.items()},
                          "bound_s_at_peak": round(best_s, 4),
                          "bound_fps_at_peak": round(args.frames / best_s, 1)}, indent=1))
        return

    device = resolve_device(args.device)
    if args.size == "tiny":
        from dvd_vfx.model.tiny import write_tiny_weights

        folder = tempfile.mkdtemp(prefix="dvd-bench-")
        write_tiny_weights(folder)
        predictor = DVDPredictor(folder, device=str(device), dtype=args.dtype)
    else:
        from dvd_vfx.model.predictor import resolve_dtype

        dtype = resolve_dtype(args.dtype, device)
        t0 = time.perf_counter()
        predictor = DVDPredictor(networks=full_networks(dtype, device), device=str(device), dtype=args.dtype)
        print(f"built full-size networks with random weights in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    frames = np.random.default_rng(0).random((args.frames, args.height, args.width, 3), dtype=np.float32)
    stages = _time_stages(predictor.load(), device)
    for _ in range(args.warmup):
        predictor.predict(frames)
    stages.clear()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        predictor.predict(frames)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    result = {
        "size": args.size, "device": str(device), "dtype": str(predictor.dtype).removeprefix("torch."),
        "window": f"{args.frames}x{args.height}x{args.width}", "median_s_per_window": round(med, 3),
        "fps": round(args.frames / med, 2), "times_s": [round(t, 3) for t in times],
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "torch_threads": torch.get_num_threads(),
        "stage_median_s": {k: round(statistics.median(v), 3) for k, v in stages.items()},
    }
    if device.type == "cuda":
        result["peak_vram_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        result["card"] = torch.cuda.get_device_name()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
