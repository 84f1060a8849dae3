"""The VAE's activation memory replayed on the meta device: no memory used, no GPU needed.

`LiveBytes` is a dispatch mode that adds up the bytes of every tensor while it is alive (base tensors,
their storages' sizes) and keeps the peak: what the allocator must hold for activations on a GPU
(weights, allocator slack and the CUDA context come on top). `replay_vae` runs the Wan VAE's encode and
decode on meta tensors under it. benchmarks/bench_vram.py replays the full-size VAE at working sizes;
tests/test_memory_plan.py replays small sizes against `predictor.vae_decode_bytes`.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    """The bytes of the tensors alive (base tensors, their storages' sizes), and the peak."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._counted: set[int] = set()  # ids of the tensors alive and counted: an in-place op returns its
        # input (mul_, silu_(inplace), div(out=)), which must not be counted a second time

    def _free(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t._base is None and id(t) not in self._counted:
                n = t.untyped_storage().nbytes()
                self.live += n
                self.peak = max(self.peak, self.live)
                self._counted.add(id(t))
                weakref.finalize(t, self._free, n)
                weakref.finalize(t, self._counted.discard, id(t))
        return out


def meta_vae(dtype: torch.dtype = torch.bfloat16, config: dict | None = None) -> torch.nn.Module:
    """The Wan VAE (the shipped full-size config unless `config`) built on the meta device."""
    from diffusers import AutoencoderKLWan

    from dvd_vfx.model.loader import shipped_config

    with torch.device("meta"):
        return AutoencoderKLWan(**(config or shipped_config("vae"))).to(dtype).eval()


def replay_vae(vae: torch.nn.Module, frames: int, height: int, width: int, *, tiling: bool | dict = False,
               dtype: torch.dtype = torch.bfloat16) -> dict:
    """Peak live bytes of encoding a [1,3,frames,height,width] window (the input included) and of
    decoding its latents (the latents not included: they are the DiT's output, counted there).
    `tiling`: False, True (diffusers' default tiles) or enable_tiling()'s keyword arguments."""
    if tiling:
        vae.enable_tiling(**(tiling if isinstance(tiling, dict) else {}))
    else:
        vae.disable_tiling()
    out = {}
    with torch.no_grad():
        x = torch.empty(1, 3, frames, height, width, device="meta", dtype=dtype)
        with LiveBytes() as m:
            vae.encode(x)
        out["encode_bytes"] = m.peak + x.untyped_storage().nbytes()
        del x
        z = torch.empty(1, vae.config.z_dim, (frames - 1) // 4 + 1, height // 8, width // 8,
                        device="meta", dtype=dtype)
        with LiveBytes() as m:
            vae.decode(z, return_dict=False)
        out["decode_bytes"] = m.peak
    return out
