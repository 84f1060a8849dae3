"""Build the DVD networks (diffusers' own Wan classes) from a weights folder, offline.

The transformer is built on the meta device and filled tensor by tensor straight from the
memory-mapped safetensors file, merging each LoRA pair on the way (W' = W + B @ A, scale 1),
so peak RAM stays near one copy of the model. Key names go through diffusers' own converters.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

import torch

import dvd_vfx.model.checkpoint as ck
from dvd_vfx.errors import WeightsError
from dvd_vfx.model.keys import dit_key_map
from dvd_vfx.model.weights import WeightFiles, check_config_agrees

log = logging.getLogger("dvd_vfx.model")

BASE_CONFIG = "wan2.1-t2v-1.3b"


def shipped_config(name: str) -> dict:
    """The Wan2.1-T2V-1.3B configs shipped in the package (never fetched from the Hub)."""
    text = resources.files("dvd_vfx.model").joinpath("configs", BASE_CONFIG, f"{name}.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def merge_lora(weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """W' = W + scale * B @ A, computed in float32 (DVD trains with alpha == rank: scale 1)."""
    merged = weight.float() + scale * (lora_b.float() @ lora_a.float())
    return merged.to(weight.dtype)


def _keep_fp32(model: torch.nn.Module, name: str) -> bool:
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    parts = name.split(".")
    return any(k in parts for k in keep)


def load_transformer(files: WeightFiles, dtype: torch.dtype) -> tuple[torch.nn.Module, dict]:
    """The DVD transformer on CPU in `dtype`; returns (model, info)."""
    from diffusers import WanTransformer3DModel

    if files.dit is None:
        return _load_diffusers(WanTransformer3DModel, files.diffusers_transformer, dtype), {"lora": "merged (diffusers)"}
    path = files.dit
    tensors = ck.read_safetensors_header(path)
    layout = ck.dit_layout(tensors, path)
    inferred = ck.infer_dit_config(layout, path)
    config = shipped_config("transformer")
    if files.dit_config is not None:
        user = check_config_agrees(inferred, files.dit_config, path)
        config.update({k: v for k, v in user.items() if k in config})
    config.update(inferred)
    if not layout.has_lora and ck.read_dvd_vfx_metadata(path).get("kind") != "merged":
        log.warning("%s has no LoRA keys: loading it as a plain Wan backbone, not DVD; its depth will be "
                    "meaningless", path)
    key_map = dit_key_map(sorted(layout.base))

    model, expected = _build_on_meta(WanTransformer3DModel, config, key_map, path,
                                     "a Wan T2V transformer", "not a DVD checkpoint")
    from safetensors import safe_open

    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            for new_name, old_name in key_map.items():
                t = fh.get_tensor(layout.base_keys[old_name])
                module, _, param = old_name.rpartition(".")
                if param == "weight" and module in layout.lora:
                    key_a, key_b = layout.lora[module]
                    t = merge_lora(t, fh.get_tensor(key_a), fh.get_tensor(key_b))
                if tuple(t.shape) != tuple(expected[new_name].shape):
                    raise WeightsError(f"{path}: {layout.base_keys[old_name]} has shape {list(t.shape)}, the "
                                       f"architecture needs {list(expected[new_name].shape)}")
                target = torch.float32 if _keep_fp32(model, new_name) else dtype
                state[new_name] = t.to(target)
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise WeightsError(f"{path}: cannot read tensors ({str(exc).splitlines()[0]}); the file is corrupt, "
                           "re-download it") from None
    model.load_state_dict(state, strict=True, assign=True)
    del state
    _rebuild_non_persistent_buffers(model)
    model.eval().requires_grad_(False)
    info = {"lora": f"{len(layout.lora)} modules, rank {layout.lora_rank}" if layout.has_lora else "none",
            "config": config, "full_size": ck.is_full_size(inferred)}
    return model, info


def _build_on_meta(cls, config: dict, provided, path: Path, what: str, hint: str):
    """An empty model (no memory) and its expected state dict; the file's keys must match it exactly."""
    with torch.device("meta"):
        model = cls(**config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(provided))
    unexpected = sorted(set(provided) - set(expected))
    if missing or unexpected:
        shown = [provided[k] if isinstance(provided[k], str) else k for k in unexpected[:3]]
        raise WeightsError(f"{path}: tensors do not match {what} (missing {missing[:3]}, unexpected {shown}); {hint}")
    return model, expected


def _assert_materialised(model: torch.nn.Module) -> None:
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"{type(model).__name__}: tensors left on the meta device after loading: {left[:5]}")


def _rebuild_non_persistent_buffers(model: torch.nn.Module) -> None:
    """Buffers that are not in a state dict (the RoPE tables) are rebuilt off the meta device."""
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    cfg = model.config
    model.rope = WanRotaryPosEmbed(cfg.attention_head_dim, tuple(cfg.patch_size), cfg.rope_max_seq_len)
    _assert_materialised(model)


def load_vae(files: WeightFiles, dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import AutoencoderKLWan

    if files.vae is None:
        return _load_diffusers(AutoencoderKLWan, files.diffusers_vae, dtype)
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    path = files.vae
    sd = ck.read_vae_state(path)
    inferred = ck.infer_vae_config({k: tuple(v.shape) for k, v in sd.items()}, path)
    config = shipped_config("vae")
    config.update(inferred)
    converted = convert_wan_vae_to_diffusers(sd)
    vae, expected = _build_on_meta(AutoencoderKLWan, config, converted, path, "a Wan 2.1 VAE",
                                   "re-download Wan2.1_VAE.pth")
    for k, v in converted.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise WeightsError(f"{path}: {k} has shape {list(v.shape)}, expected {list(expected[k].shape)}")
    vae.load_state_dict({k: v.to(dtype) for k, v in converted.items()}, strict=True, assign=True)
    _assert_materialised(vae)
    return vae.eval().requires_grad_(False)


def _load_diffusers(cls, folder: Path, dtype: torch.dtype) -> torch.nn.Module:
    """A diffusers-format folder (config.json + safetensors shards), streamed like the official files."""
    from safetensors import safe_open

    try:
        config = {k: v for k, v in json.loads((folder / "config.json").read_text()).items() if not k.startswith("_")}
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{folder / 'config.json'}: unreadable ({exc}); re-export the folder") from None
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise WeightsError(f"{folder}: no .safetensors weights beside config.json; re-export the folder")
    where = {}
    for shard in shards:
        where.update({name: shard for name in ck.read_safetensors_header(shard)})
    try:
        model, expected = _build_on_meta(cls, config, where, folder, f"a diffusers {cls.__name__}",
                                         "the folder holds another model")
    except TypeError as exc:
        raise WeightsError(f"{folder / 'config.json'}: not a {cls.__name__} config ({exc})") from None
    state = {}
    for shard in shards:
        with safe_open(str(shard), framework="pt", device="cpu") as fh:
            for name in fh.keys():
                t = fh.get_tensor(name)
                if tuple(t.shape) != tuple(expected[name].shape):
                    raise WeightsError(f"{shard}: {name} has shape {list(t.shape)}, the config needs "
                                       f"{list(expected[name].shape)}")
                state[name] = t.to(torch.float32 if _keep_fp32(model, name) else dtype)
    model.load_state_dict(state, strict=True, assign=True)
    if hasattr(model, "rope"):
        _rebuild_non_persistent_buffers(model)
    else:
        _assert_materialised(model)
    return model.eval().requires_grad_(False)
