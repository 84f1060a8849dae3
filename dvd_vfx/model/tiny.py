"""Tiny random DVD models written in the OFFICIAL file formats.

Used by the tests and by ``dvd-vfx demo`` when no real weights are installed: they load through
exactly the production loader (original Wan key names, peft LoRA keys, a Wan VAE .pth), so
the whole path from file to depth pass runs anywhere in seconds. Their depth is meaningless.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from dvd_vfx.model.checkpoint import is_lora_target

TINY_DIT = {"num_attention_heads": 1, "attention_head_dim": 128, "num_layers": 2, "ffn_dim": 256,
            "text_dim": 64, "freq_dim": 32, "in_channels": 16, "out_channels": 16, "patch_size": [1, 2, 2]}
TINY_VAE = {"base_dim": 8, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
            "temperal_downsample": [False, True, True], "attn_scales": []}
TINY_MARKER = "dvd-vfx-tiny-test-model"

# diffusers -> original Wan names (the inverse of diffusers' converter, checked by the tests)
_DIT_RULES = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1", "self_attn"), ("attn2", "cross_attn"),
    (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."), (".to_v.", ".v."),
    ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
    (".norm2.", ".norm3."),
    ("proj_out", "head.head"),
]


def dit_to_original(name: str) -> str:
    if name == "scale_shift_table":
        return "head.modulation"
    if name.endswith(".scale_shift_table"):
        return name.replace(".scale_shift_table", ".modulation")
    for new, old in _DIT_RULES:
        name = name.replace(new, old)
    return name


_RES = {"norm1.gamma": "residual.0.gamma", "conv1": "residual.2", "norm2.gamma": "residual.3.gamma",
        "conv2": "residual.6", "conv_shortcut": "shortcut"}


def _res_part(rest: str) -> str:
    for new, old in _RES.items():
        if rest == new or rest.startswith(new + "."):
            return old + rest[len(new):]
    raise KeyError(rest)


def vae_to_original(name: str, blocks_per_level: int = 3) -> str:
    fixed = {"quant_conv": "conv1", "post_quant_conv": "conv2", "encoder.conv_in": "encoder.conv1",
             "decoder.conv_in": "decoder.conv1", "encoder.norm_out": "encoder.head.0",
             "encoder.conv_out": "encoder.head.2", "decoder.norm_out": "decoder.head.0",
             "decoder.conv_out": "decoder.head.2"}
    for new, old in fixed.items():
        if name.startswith(new + "."):
            return old + name[len(new):]
    m = re.match(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d)\.(.+)", name)
    if m:
        side, kind, i, rest = m.groups()
        if kind == "attentions":
            return f"{side}.middle.1.{rest}"
        return f"{side}.middle.{0 if i == '0' else 2}.{_res_part(rest)}"
    m = re.match(r"encoder\.down_blocks\.(\d+)\.(.+)", name)
    if m:
        i, rest = m.groups()
        if rest.startswith(("resample.", "time_conv.")):
            return f"encoder.downsamples.{i}.{rest}"
        return f"encoder.downsamples.{i}.{_res_part(rest)}"
    m = re.match(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.+)", name)
    if m:
        b, kind, r, rest = m.groups()
        stride = blocks_per_level + 1
        if kind == "upsamplers":
            return f"decoder.upsamples.{int(b) * stride + blocks_per_level}.{rest}"
        return f"decoder.upsamples.{int(b) * stride + int(r)}.{_res_part(rest)}"
    raise KeyError(f"no original Wan VAE name for {name}")


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
            out[f"pipe.dit.{orig}"] = tensor.contiguous()
            continue
        if param == "weight":
            n_out, n_in = tensor.shape
            a = 0.05 * torch.randn(rank, n_in, generator=gen)
            b = 0.05 * torch.randn(n_out, rank, generator=gen)
            base = tensor - b @ a  # so that base + B @ A is the merged weight
            merged[name] = base + b @ a
            out[f"pipe.dit.{module}.base_layer.weight"] = base.contiguous()
            out[f"pipe.dit.{module}.lora_A.default.weight"] = a.contiguous()
            out[f"pipe.dit.{module}.lora_B.default.weight"] = b.contiguous()
        else:
            out[f"pipe.dit.{module}.base_layer.{param}"] = tensor.contiguous()
    save_file(out, str(folder / dit_name), metadata={"format": "pt", "note": TINY_MARKER})
    vae_sd = {vae_to_original(k): v.contiguous() for k, v in vae.state_dict().items()}
    torch.save(vae_sd, folder / "Wan2.1_VAE.pth")
    if with_config:
        (folder / "config.json").write_text(json.dumps(TINY_DIT, indent=2))
    return {"transformer": merged, "vae": vae.state_dict()}
