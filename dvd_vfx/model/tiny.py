"""Tiny random DVD models written in the OFFICIAL file formats.

Used by the tests and by ``dvd-vfx demo`` when no real weights are installed: they load through
exactly the production loader (original Wan key names, peft LoRA keys, a Wan VAE .pth), so
the whole path from file to depth pass runs anywhere in seconds. Their depth is meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dvd_vfx.model.keys import (BASE_LAYER, LORA_A, LORA_B, OFFICIAL_PREFIX, dit_to_original, is_lora_target,
                                peft_key, vae_to_original)

TINY_DIT = {"num_attention_heads": 1, "attention_head_dim": 128, "num_layers": 2, "ffn_dim": 256,
            "text_dim": 64, "freq_dim": 32, "in_channels": 16, "out_channels": 16, "patch_size": [1, 2, 2]}
TINY_VAE = {"base_dim": 8, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
            "temperal_downsample": [False, True, True], "attn_scales": []}
TINY_MARKER = "dvd-vfx-tiny-test-model"


def _randomise(module: torch.nn.Module, gen: torch.Generator, scale: float) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("gamma", "norm_q.weight", "norm_k.weight")) or ".norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(scale * torch.randn(p.shape, generator=gen))


def build_tiny_networks(seed: int = 0, dit_config: dict | None = None, vae_config: dict | None = None):
    """Random diffusers Wan modules of the tiny size (float32, CPU)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    gen = torch.Generator().manual_seed(seed)
    dit = WanTransformer3DModel(**(dit_config or TINY_DIT))
    _randomise(dit, gen, 0.05)
    vae = AutoencoderKLWan(**(vae_config or TINY_VAE))
    _randomise(vae, gen, 0.05)
    return dit.eval(), vae.eval()


def write_tiny_weights(folder: str | Path, *, seed: int = 0, rank: int = 4, lora: bool = True,
                       dit_name: str = "dvd_1.1.safetensors", with_config: bool = False) -> dict:
    """Write a tiny DVD release into `folder`: DiT safetensors (pipe.dit.*, peft LoRA) + Wan VAE .pth.

    Returns the MERGED diffusers-named state dicts {"transformer": ..., "vae": ...} so tests can
    build the reference model directly.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dit, vae = build_tiny_networks(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    merged = {k: v.clone() for k, v in dit.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in merged.items():
        orig = dit_to_original(name)
        module, _, param = orig.rpartition(".")
        is_target = lora and is_lora_target(module)
        if not is_target:
            out[OFFICIAL_PREFIX + orig] = tensor.contiguous()
            continue
        if param == "weight":
            n_out, n_in = tensor.shape
            a = 0.05 * torch.randn(rank, n_in, generator=gen)
            b = 0.05 * torch.randn(n_out, rank, generator=gen)
            base = tensor - b @ a  # so that base + B @ A is the merged weight
            merged[name] = base + b @ a
            out[peft_key(module, BASE_LAYER)] = base.contiguous()
            out[peft_key(module, LORA_A)] = a.contiguous()
            out[peft_key(module, LORA_B)] = b.contiguous()
        else:
            out[peft_key(module, BASE_LAYER, param)] = tensor.contiguous()
    save_file(out, str(folder / dit_name), metadata={"format": "pt", "note": TINY_MARKER})
    vae_sd = {vae_to_original(k): v.contiguous() for k, v in vae.state_dict().items()}
    torch.save(vae_sd, folder / "Wan2.1_VAE.pth")
    if with_config:
        (folder / "config.json").write_text(json.dumps(TINY_DIT, indent=2))
    return {"transformer": merged, "vae": vae.state_dict()}
