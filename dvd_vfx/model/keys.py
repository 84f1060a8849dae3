"""Tensor names of the DVD transformer and the Wan VAE, and the peft LoRA key layout.

Three namings meet in this project:

- the ORIGINAL Wan names, used by the official DVD files (``pipe.dit.blocks.0.self_attn.q.weight``)
  and by ``Wan2.1_VAE.pth`` (``encoder.downsamples.0.residual.0.gamma``);
- diffusers' names, used by the networks we build (``blocks.0.attn1.to_q.weight``);
- peft's wrapping of LoRA-adapted modules (``<module>.base_layer.weight``,
  ``<module>.lora_A.default.weight`` [r, in], ``<module>.lora_B.default.weight`` [out, r]).

The loader maps original -> diffusers with diffusers' own converter (:func:`dit_key_map`); the
writers (the tiny test model, `dvd-vfx train`'s export) map diffusers -> original with
:func:`dit_to_original` / :func:`vae_to_original`, and :func:`checked_original_names` proves
the two agree before a checkpoint is written. Importing this module imports neither torch nor
diffusers (only :func:`dit_key_map` and :func:`checked_original_names` need diffusers).
"""

from __future__ import annotations

import re

OFFICIAL_PREFIX = "pipe.dit."  # in front of the original Wan names in the DVD release
LORA_TARGETS = ("q", "k", "v", "o", "ffn.0", "ffn.2")  # DVD's LoRA targets, original Wan names
ADAPTER = "default"  # peft's adapter name; it is part of the official key names
BASE_LAYER = "base_layer"
LORA_A = f"lora_A.{ADAPTER}"
LORA_B = f"lora_B.{ADAPTER}"
_PEFT_PARAM = re.compile(
    rf"^(?P<module>.+)\.(?P<part>{BASE_LAYER}|{re.escape(LORA_A)}|{re.escape(LORA_B)})\.(?P<param>weight|bias)$")


# --------------------------------------------------------------------------------------------
# peft LoRA keys


def is_lora_target(module: str, targets: tuple[str, ...] = LORA_TARGETS) -> bool:
    """peft's target matching on original names: the module name equals a target or ends in '.' + target."""
    return any(module == t or module.endswith("." + t) for t in targets)


def split_peft_name(name: str) -> tuple[str, str, str] | None:
    """'blocks.0.self_attn.q.lora_A.default.weight' -> ('blocks.0.self_attn.q', 'lora_A.default', 'weight');
    None for a name that peft did not wrap."""
    m = _PEFT_PARAM.match(name)
    return (m["module"], m["part"], m["param"]) if m else None


def plain_name(name: str) -> str | None:
    """A parameter name without peft's wrapping ('x.q.base_layer.weight' -> 'x.q.weight'); None for LoRA."""
    parts = split_peft_name(name)
    if parts is None:
        return name
    module, part, param = parts
    return f"{module}.{param}" if part == BASE_LAYER else None


def peft_key(module: str, part: str, param: str = "weight", prefix: str = OFFICIAL_PREFIX) -> str:
    """The file key of one tensor of a LoRA-wrapped module: part is BASE_LAYER, LORA_A or LORA_B."""
    return f"{prefix}{module}.{part}.{param}"


# --------------------------------------------------------------------------------------------
# DiT: diffusers <-> original Wan names

# diffusers -> original Wan names (the inverse of diffusers' converter, checked by checked_original_names)
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
    """diffusers WanTransformer3DModel parameter name -> original Wan name."""
    if name == "scale_shift_table":
        return "head.modulation"
    if name.endswith(".scale_shift_table"):
        return name.replace(".scale_shift_table", ".modulation")
    for new, old in _DIT_RULES:
        name = name.replace(new, old)
    return name


def dit_key_map(original_names: list[str]) -> dict[str, str]:
    """diffusers name -> original Wan name, by running diffusers' converter on the names."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    converted = convert_wan_transformer_to_diffusers({n: n for n in original_names})
    return {new: old for new, old in converted.items()}


def checked_original_names(diffusers_names: list[str]) -> dict[str, str]:
    """diffusers name -> original Wan name by :func:`dit_to_original`, verified with diffusers' converter.

    If a diffusers upgrade renames a module this fails loudly, instead of writing a checkpoint
    that nothing can load.
    """
    mapping = {n: dit_to_original(n) for n in diffusers_names}
    back = dit_key_map(sorted(mapping.values()))
    if back != mapping:
        wrong = sorted(set(back.items()) ^ set(mapping.items()))[:3]
        raise RuntimeError(f"diffusers' Wan converter disagrees with dvd_vfx.model.keys.dit_to_original: {wrong}")
    return mapping


# --------------------------------------------------------------------------------------------
# VAE: diffusers -> original Wan names

_VAE_FIXED = {"quant_conv": "conv1", "post_quant_conv": "conv2", "encoder.conv_in": "encoder.conv1",
              "decoder.conv_in": "decoder.conv1", "encoder.norm_out": "encoder.head.0",
              "encoder.conv_out": "encoder.head.2", "decoder.norm_out": "decoder.head.0",
              "decoder.conv_out": "decoder.head.2"}
_RES = {"norm1.gamma": "residual.0.gamma", "conv1": "residual.2", "norm2.gamma": "residual.3.gamma",
        "conv2": "residual.6", "conv_shortcut": "shortcut"}


def _res_part(rest: str) -> str:
    for new, old in _RES.items():
        if rest == new or rest.startswith(new + "."):
            return old + rest[len(new):]
    raise KeyError(rest)


def vae_to_original(name: str, blocks_per_level: int = 3) -> str:
    """diffusers AutoencoderKLWan parameter name -> its name in Wan2.1_VAE.pth."""
    for new, old in _VAE_FIXED.items():
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
