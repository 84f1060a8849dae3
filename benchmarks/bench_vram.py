"""VRAM of one window, replayed on the meta device (no memory used, no GPU needed).

    python benchmarks/bench_vram.py [--sizes 480x640 480x848 720x1280] [--frames 81] [--dtype bf16]

Runs the full-size Wan VAE decode and encode on meta tensors under a dispatch mode that adds up
the bytes of every tensor while it is alive: the peak is what the allocator must hold for the
activations (weights not included: DiT 2.6 GiB + VAE 0.24 GiB in bf16). Each size untiled and
with diffusers' spatial tiling. The CUDA allocator's slack and the context (~0.5-1 GiB) come on top.
"""

from __future__ import annotations

import argparse
import json
import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    """The bytes of the tensors alive (base tensors, their storages' sizes), and the peak."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0

    def _free(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t._base is None:
                n = t.untyped_storage().nbytes()
                self.live += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, n)
        return out


def replay(frames: int, height: int, width: int, dtype: torch.dtype, tiling: bool) -> dict:
    from diffusers import AutoencoderKLWan

    from dvd_vfx.model.loader import shipped_config

    with torch.device("meta"):
        vae = AutoencoderKLWan(**shipped_config("vae")).to(dtype).eval()
    if tiling:
        vae.enable_tiling()
    out = {}
    with torch.no_grad():
        x = torch.empty(1, 3, frames, height, width, device="meta", dtype=dtype)
        with LiveBytes() as m:
            vae.encode(x)
        out["encode_gib"] = round((m.peak + x.nbytes) / 2**30, 2)
        z = torch.empty(1, 16, (frames - 1) // 4 + 1, height // 8, width // 8, device="meta", dtype=dtype)
        with LiveBytes() as m:
            vae.decode(z, return_dict=False)
        out["decode_gib"] = round(m.peak / 2**30, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["480x640", "480x848", "720x1280"], help="HxW working sizes")
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--tiling", choices=("both", "off", "on"), default="both",
                    help="replay untiled, tiled or both (tiled replays are slow on a CPU: minutes)")
    args = ap.parse_args()
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    rows = []
    for size in args.sizes:
        h, w = map(int, size.split("x"))
        for tiling in {"both": (False, True), "off": (False,), "on": (True,)}[args.tiling]:
            t0 = time.perf_counter()
            row = {"size": f"{w}x{h}", "tiling": tiling, **replay(args.frames, h, w, dtype, tiling),
                   "replay_s": round(time.perf_counter() - t0, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)


if __name__ == "__main__":
    main()
