"""VRAM of one window, replayed on the meta device (no memory used, no GPU needed).

    python benchmarks/bench_vram.py [--sizes 480x640 480x848 720x1280] [--frames 81] [--dtype bf16] [--lean]

Runs the full-size Wan VAE decode and encode on meta tensors under dvd_vfx.model.memory.LiveBytes,
a dispatch mode that adds up the bytes of every tensor while it is alive: the peak is what the
allocator must hold for the activations (weights not included: DiT 2.6 GiB + VAE 0.24 GiB in bf16). Each size untiled and
with diffusers' spatial tiling. `--lean` replays the VAE as DVDPredictor.load() runs it (the
bit-identical ops of dvd_vfx.model.vae_ops installed: nearest upsample in bf16, padding inside the
causal convolution, fused RMS norm + SiLU); without it, the stock diffusers VAE. The CUDA allocator's slack and the context (~0.5-1 GiB) come on top.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from dvd_vfx.model.memory import meta_vae, replay_vae
from dvd_vfx.model.vae_ops import lean_vae


def replay(frames: int, height: int, width: int, dtype: torch.dtype, tiling: bool, lean: bool = False) -> dict:
    vae = meta_vae(dtype)
    if lean:
        lean_vae(vae)
    r = replay_vae(vae, frames, height, width, tiling=tiling, dtype=dtype)
    return {"encode_gib": round(r["encode_bytes"] / 2**30, 2), "decode_gib": round(r["decode_bytes"] / 2**30, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["480x640", "480x848", "720x1280"], help="HxW working sizes")
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--tiling", choices=("both", "off", "on"), default="both",
                    help="replay untiled, tiled or both (tiled replays are slow on a CPU: minutes)")
    ap.add_argument("--lean", action="store_true", help="the VAE with dvd_vfx.model.vae_ops installed, as DVD runs it")
    args = ap.parse_args()
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    rows = []
    for size in args.sizes:
        h, w = map(int, size.split("x"))
        for tiling in {"both": (False, True), "off": (False,), "on": (True,)}[args.tiling]:
            t0 = time.perf_counter()
            row = {"size": f"{w}x{h}", "tiling": tiling, "lean": args.lean,
                   **replay(args.frames, h, w, dtype, tiling, args.lean),
                   "replay_s": round(time.perf_counter() - t0, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)


if __name__ == "__main__":
    main()
