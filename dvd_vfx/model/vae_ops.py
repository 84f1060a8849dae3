"""Leaner per-op versions of the Wan VAE's layers that give bit-identical outputs (issue 21, item 2).

`native_upsample`: diffusers' WanUpsample converts its bf16/fp16 input to float32, upsamples with
nearest-exact and converts back. At integer scale factors nearest-exact only copies elements
(source index floor((i + 0.5) / s) for output i), so running it in the input's dtype gives the same
bits without the two float32 copies (in the decoder the largest is 2 x 4 bytes a pixel x 256
channels per frame). Layers with a non-integer scale keep the stock path.
"""

from __future__ import annotations

import torch


def _native_forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.nn.Upsample.forward(self, x)


def _integer_scale(module: torch.nn.Upsample) -> bool:
    scale = module.scale_factor
    scales = scale if isinstance(scale, (tuple, list)) else (scale,)
    return (module.size is None and module.mode in ("nearest", "nearest-exact") and scale is not None
            and all(float(s).is_integer() and s >= 1 for s in scales))


def native_upsample(vae: torch.nn.Module) -> int:
    """Make every integer-scale nearest WanUpsample of `vae` run in its input's dtype (bit-identical).
    Returns how many layers were changed (idempotent: 0 the second time)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanUpsample

    changed = 0
    for module in vae.modules():
        if (type(module) is WanUpsample and _integer_scale(module)
                and module.__dict__.get("forward") is None):
            module.forward = _native_forward.__get__(module)
            changed += 1
    return changed
