"""Training benchmark: optimizer steps per second and peak memory of `dvd-vfx train`.

    python benchmarks/bench_train.py                                   # tiny model, end to end, CPU
    python benchmarks/bench_train.py --resolution 64 --frames 9 --steps 30
    python benchmarks/bench_train.py --size full --resolution 256 --frames 9 --steps 10   # GPU

`--size tiny` runs the real `train()` (reading, targets, VAE encodes, DiT forward + backward with
gradient checkpointing, AdamW, checkpoints) on synthetic PNG + EXR clips written to a temporary
folder, with the tiny official-format model; the first `--warmup` steps are left out of the rate.
`--size full` builds the Wan2.1-T2V-1.3B DiT + Wan VAE with random weights (nothing is
downloaded), adds the LoRA and times the same training step on synthetic tensors (no file I/O),
bf16 autocast on CUDA. Peak memory: process peak RSS; on CUDA also torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def write_clips(root: Path, *, frames: int, width: int, height: int) -> Path:
    """Two video clips and a few stills: a moving disk over a tilted ground (PNG RGB + EXR depth)."""
    import OpenEXR
    from PIL import Image

    def clip(folder: Path, count: int, seed: int) -> None:
        folder.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        cx, cy, r = rng.uniform(0.3, 0.6) * width, rng.uniform(0.3, 0.7) * height, height / 4
        for i in range(count):
            disk = (xx - cx - 2 * i) ** 2 + (yy - cy) ** 2 < r * r
            depth = np.ascontiguousarray(np.where(disk, 2.0, 5.0 + 5.0 * yy / height), dtype=np.float32)
            rgb = np.stack([np.where(disk, 0.9, 0.2 + 0.3 * yy / height), np.full_like(xx, 0.5),
                            0.4 + 0.1 * np.sin(xx / 3)], -1)
            Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(folder / f"rgb.{i + 1:04d}.png")
            OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                         {"depth.Z": depth}).write(str(folder / f"depth.{i + 1:04d}.exr"))

    clip(root / "shots" / "a", frames + 4, 0)
    clip(root / "shots" / "b", frames + 4, 1)
    clip(root / "stills", 4, 2)
    (root / "data.toml").write_text(
        '[[source]]\nname = "plates"\nweight = 3\nfolders = "shots/*"\nframes = "rgb.####.png"\n'
        'depth = "depth.####.exr"\n\n[[source]]\nname = "stills"\nkind = "image"\n'
        'clips = [ { frames = "stills/rgb.####.png", depth = "stills/depth.####.exr" } ]\n')
    return root / "data.toml"


def bench_tiny(args) -> dict:
    from dvd_vfx.model.tiny import write_tiny_weights
    from dvd_vfx.train.trainer import TrainConfig, train

    tmp = Path(tempfile.mkdtemp(prefix="dvd-bench-train-"))
    write_tiny_weights(tmp / "weights")
    w, h = args.resolution
    data = write_clips(tmp / "data", frames=args.frames, width=w * 3 // 2, height=h)
    cfg = TrainConfig(data=str(data), weights=str(tmp / "weights"), run_dir=str(tmp / "run"), steps=args.steps,
                      rank=args.rank, frames=args.frames, resolution=(w, h), batch=args.batch, accum=args.accum,
                      checkpoint_every=args.checkpoint_every, device=args.device, workers=args.workers,
                      progress=False)
    t0 = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - t0
    secs = [r["seconds"] for r in result.records][args.warmup:]
    video = [r["seconds"] for r in result.records[args.warmup:] if r["kinds"] == "video"]
    image = [r["seconds"] for r in result.records[args.warmup:] if r["kinds"] == "image"]
    return {"size": "tiny (end to end: reading + VAE + DiT fwd/bwd + AdamW + checkpoints)",
            "device": result.summary["device"], "torch_threads": torch.get_num_threads(),
            "steps": args.steps, "timed_steps": len(secs), "steps_per_s": round(len(secs) / sum(secs), 3),
            "median_step_s": round(statistics.median(secs), 4),
            "median_video_step_s": round(statistics.median(video), 4) if video else None,
            "median_image_step_s": round(statistics.median(image), 4) if image else None,
            "wall_s_incl_load_and_outputs": round(wall, 2),
            "loss_first5": round(result.summary["loss_first5"], 4),
            "loss_last5": round(result.summary["loss_last5"], 4),
            **{k: v for k, v in result.summary.items() if k.startswith("peak_")}}


def bench_full(args) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_predictor import full_networks

    from dvd_vfx.model.predictor import encode_latents, resolve_device, run_transformer
    from dvd_vfx.train import lora
    from dvd_vfx.train.loss import dvd_loss

    device = resolve_device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    t0 = time.perf_counter()
    nets = full_networks(dtype, device)
    lora.add_lora(nets.transformer, rank=args.rank)
    nets.transformer.to(device).enable_gradient_checkpointing()
    nets.transformer.train()
    build_s = time.perf_counter() - t0
    params = list(lora.lora_parameters(nets.transformer).values())
    opt = torch.optim.AdamW(params, lr=1e-4)
    w, h = args.resolution
    x = torch.rand(args.batch, 3, args.frames, h, w, device=device) * 2 - 1
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(args.accum):
            with torch.no_grad():
                z = encode_latents(nets, x.to(dtype)).to(dtype)
                target = encode_latents(nets, (-x).to(dtype))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = run_transformer(nets.transformer, z)
            (dvd_loss(out, target).total / args.accum).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        print(f"step {i + 1}: {times[-1]:.2f}s", file=sys.stderr)
    timed = times[args.warmup:] or times
    out = {"size": "full (Wan2.1-T2V-1.3B DiT + Wan VAE, random weights; no file I/O)", "device": str(device),
           "dtype": str(dtype), "rank": args.rank, "lora_params_M": round(sum(p.numel() for p in params) / 1e6, 1),
           "build_s": round(build_s, 1), "steps_per_s": round(len(timed) / sum(timed), 4),
           "median_step_s": round(statistics.median(timed), 3),
           "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    if device.type == "cuda":
        out["peak_cuda_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("tiny", "full"), default="tiny")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3, help="first steps left out of the rate (default 3)")
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--resolution", default="64", help="N or WxH, multiples of 16 (default 64)")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--accum", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--checkpoint-every", type=int, default=1000)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    from dvd_vfx.train.trainer import parse_resolution

    args.resolution = parse_resolution(args.resolution)
    logging.basicConfig(level=logging.WARNING)
    result = bench_tiny(args) if args.size == "tiny" else bench_full(args)
    result.update({"frames": args.frames, "resolution": "x".join(map(str, args.resolution)), "rank": args.rank,
                   "batch": args.batch, "accum": args.accum})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
