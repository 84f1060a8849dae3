"""Reading DVD / Wan checkpoints without torch: safetensors headers, key layout, architecture.

Everything here works from tensor *names and shapes* (a safetensors header is a JSON blob),
so `dvd-vfx weights check` can validate a 4.5 GB checkpoint in milliseconds, and the loader
can decide what to build before it reads a single weight. The one exception is the VAE's .pth
(a pickle): :func:`read_vae_state` imports torch when called.

Official DVD layout (the names are spelled out in dvd_vfx.model.keys): keys ``pipe.dit.<original
Wan name>``; LoRA (peft) on modules whose name ends in q, k, v, o, ffn.0, ffn.2 stored as
``<m>.base_layer.weight|bias``, ``<m>.lora_A.default.weight`` [r, in] and
``<m>.lora_B.default.weight`` [out, r]; DVD always trains with alpha == rank, so W' = W + B @ A.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from dvd_vfx.errors import WeightsError
from dvd_vfx.model.keys import BASE_LAYER, LORA_A, OFFICIAL_PREFIX, split_peft_name

# Known key prefixes in front of the original Wan names.
DIT_PREFIXES = (OFFICIAL_PREFIX, "model.diffusion_model.", "dit.", "")
HEAD_DIM = 128  # Wan's attention head size; heads = dim / 128

# Sizes of the Wan 2.1 family, by model width.
_WAN_SIZES = {1536: "Wan2.1 1.3B", 5120: "Wan2.1 14B"}


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def read_dvd_vfx_metadata(path: str | os.PathLike) -> dict:
    """The ``dvd_vfx`` entry of a safetensors file's metadata (what `dvd-vfx train` records:
    kind "lora" or "merged", model_id, step, ...); {} for files from elsewhere or unreadable ones."""
    try:
        with open(path, "rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            if header_len > 100 * 1024 * 1024:
                return {}
            meta = json.loads(fh.read(header_len)).get("__metadata__") or {}
        info = json.loads(meta.get("dvd_vfx", "{}"))
    except (OSError, ValueError, struct.error, AttributeError, UnicodeDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def read_safetensors_header(path: str | os.PathLike) -> dict[str, TensorInfo]:
    """Parse and validate a safetensors header; detects truncated and corrupt files.

    Raises WeightsError naming the file when the header is unreadable or the file is shorter
    than its header says (an interrupted download).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw_len = fh.read(8)
            if len(raw_len) < 8:
                raise WeightsError(f"{path}: not a safetensors file (only {size} bytes); re-download it")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len <= 1 or header_len > min(size - 8, 100 * 1024 * 1024):
                raise WeightsError(
                    f"{path}: not a valid safetensors file (header length {header_len} does not fit a "
                    f"{size}-byte file); the file is corrupt or truncated, re-download it")
            header = json.loads(fh.read(header_len))
    except WeightsError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path}: cannot read safetensors header ({exc}); re-download the file") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: safetensors header is not a table; the file is corrupt, re-download it")
    header.pop("__metadata__", None)
    tensors: dict[str, TensorInfo] = {}
    data_end = 0
    for name, meta in header.items():
        try:
            dtype, shape, (begin, end) = meta["dtype"], tuple(int(s) for s in meta["shape"]), meta["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"{path}: entry {name!r} of the safetensors header is malformed; "
                               "the file is corrupt, re-download it") from None
        n = 1
        for s in shape:
            n *= s
        if dtype in _DTYPE_BYTES and end - begin != n * _DTYPE_BYTES[dtype]:
            raise WeightsError(f"{path}: tensor {name!r} has {end - begin} bytes for shape {list(shape)} "
                               f"{dtype}; the file is corrupt, re-download it")
        tensors[name] = TensorInfo(dtype, shape, end - begin)
        data_end = max(data_end, end)
    expected = 8 + header_len + data_end
    if size < expected:
        raise WeightsError(f"{path}: truncated ({size} of {expected} bytes); the download was interrupted, "
                           "re-download it")
    return tensors


# --------------------------------------------------------------------------------------------
# DiT checkpoints


@dataclass
class DitLayout:
    """What a DiT checkpoint holds: original Wan names -> shapes, and its LoRA pairs."""

    prefix: str
    base: dict[str, TensorInfo]  # original Wan name (LoRA-wrapped modules unwrapped) -> info
    lora: dict[str, tuple[str, str]] = field(default_factory=dict)  # module -> (A key, B key) (full keys)
    base_keys: dict[str, str] = field(default_factory=dict)  # original Wan name -> full key in file
    lora_rank: int | None = None

    @property
    def has_lora(self) -> bool:
        return bool(self.lora)


def dit_layout(tensors: dict[str, TensorInfo], path: str | os.PathLike) -> DitLayout:
    """Group a checkpoint's keys into base weights and LoRA pairs, under the original Wan names."""
    prefix = next((p for p in DIT_PREFIXES if any(k.startswith(p + "patch_embedding.") for k in tensors)), None)
    if prefix is None:
        raise WeightsError(
            f"{path}: not a Wan/DVD transformer checkpoint (no patch_embedding weights among "
            f"{len(tensors)} tensors); point --weights at the DVD release (model.safetensors or "
            "dvd_1.1.safetensors)")
    layout = DitLayout(prefix=prefix, base={})
    lora_a: dict[str, str] = {}
    lora_b: dict[str, str] = {}
    for key, info in tensors.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        parts = split_peft_name(name)
        if parts is None:
            layout.base[name] = info
            layout.base_keys[name] = key
            continue
        module, part, param = parts
        if part == BASE_LAYER:
            layout.base[f"{module}.{param}"] = info
            layout.base_keys[f"{module}.{param}"] = key
        elif param == "weight":
            (lora_a if part == LORA_A else lora_b)[module] = key
    for module in sorted(set(lora_a) | set(lora_b)):
        if module not in lora_a or module not in lora_b:
            missing = "lora_B" if module in lora_a else "lora_A"
            raise WeightsError(f"{path}: LoRA of {prefix}{module} has no {missing} weight; the checkpoint is "
                               "incomplete, re-download it")
        a, b = tensors[lora_a[module]], tensors[lora_b[module]]
        w = layout.base.get(f"{module}.weight")
        if w is None or len(a.shape) != 2 or len(b.shape) != 2 or a.shape[0] != b.shape[1] \
                or w.shape != (b.shape[0], a.shape[1]):
            raise WeightsError(
                f"{path}: LoRA shapes of {prefix}{module} do not fit its weight (A {list(a.shape)}, "
                f"B {list(b.shape)}, W {list(w.shape) if w else None}); the checkpoint is corrupt")
        layout.lora[module] = (lora_a[module], lora_b[module])
        layout.lora_rank = a.shape[0]
    return layout


def infer_dit_config(layout: DitLayout, path: str | os.PathLike) -> dict:
    """Architecture of a Wan T2V DiT from tensor shapes (diffusers WanTransformer3DModel kwargs).

    Rejects other families (image-to-video, VACE, Wan 2.2 with 48 latent channels) and the 14B
    model with a message that says what the file is.
    """
    base = layout.base
    names = set(base)
    if any(n.startswith("img_emb.") or ".k_img." in n for n in names):
        raise WeightsError(f"{path}: is a Wan image-to-video checkpoint (img_emb/k_img weights); DVD is built "
                           "on Wan2.1-T2V-1.3B — use the DVD release")
    if any(n.startswith("vace_") for n in names):
        raise WeightsError(f"{path}: is a Wan VACE checkpoint; DVD is built on Wan2.1-T2V-1.3B — use the DVD release")
    pe = base["patch_embedding.weight"].shape  # [dim, in, pt, ph, pw]
    if pe[0] == 5120:
        raise WeightsError(f"{path}: is a Wan2.1 14B checkpoint (dim 5120); DVD is built on Wan2.1-T2V-1.3B "
                           "(dim 1536) — use the DVD release")
    try:
        ffn = base["blocks.0.ffn.0.weight"].shape  # [ffn, dim]
        text = base["text_embedding.0.weight"].shape  # [dim, text_dim]
        time = base["time_embedding.0.weight"].shape  # [dim, freq_dim]
        head = base["head.head.weight"].shape  # [out * prod(patch), dim]
    except KeyError as exc:
        raise WeightsError(f"{path}: Wan transformer weight {exc.args[0]!r} is missing; the checkpoint is "
                           "incomplete or of another family") from None
    dim, in_ch = pe[0], pe[1]
    patch = list(pe[2:])
    if in_ch != 16:
        raise WeightsError(f"{path}: transformer takes {in_ch} latent channels, not 16; this is another Wan "
                           "family (Wan 2.2 / image-to-video), not DVD")
    if dim % HEAD_DIM:
        raise WeightsError(f"{path}: model width {dim} is not a multiple of the head size {HEAD_DIM}; not a Wan model")
    layers = 1 + max(int(n.split(".")[1]) for n in names if n.startswith("blocks."))
    patch_n = patch[0] * patch[1] * patch[2]
    return {
        "patch_size": patch,
        "num_attention_heads": dim // HEAD_DIM,
        "attention_head_dim": HEAD_DIM,
        "in_channels": in_ch,
        "out_channels": head[0] // patch_n,
        "text_dim": text[1],
        "freq_dim": time[1],
        "ffn_dim": ffn[0],
        "num_layers": layers,
    }


def describe_dit_size(cfg: dict) -> str:
    dim = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    known = _WAN_SIZES.get(dim)
    tag = known if known and cfg["num_layers"] in (30, 40) else "custom/test size"
    return f"{tag} (dim {dim}, {cfg['num_layers']} layers, {cfg['num_attention_heads']} heads, ffn {cfg['ffn_dim']})"


def is_full_size(cfg: dict) -> bool:
    return cfg["num_attention_heads"] * cfg["attention_head_dim"] == 1536 and cfg["num_layers"] == 30


# --------------------------------------------------------------------------------------------
# VAE state dicts (original Wan names)


def read_vae_state(path: Path) -> dict:
    """Wan2.1_VAE.pth (a pickle): loaded with weights_only=True, memory-mapped where possible.

    The one reader here that needs torch (a .pth cannot be opened without it); torch is imported
    on call, so ImportError tells a torch-free Python that the file cannot be inspected.
    """
    import torch

    try:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle / zip errors of many kinds
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({str(exc).splitlines()[0][:160]}); "
                           "re-download Wan2.1_VAE.pth") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path}: holds no tensor table; not a Wan VAE, re-download Wan2.1_VAE.pth")
    if all(k.startswith("model.") for k in sd):
        sd = {k[len("model."):]: v for k, v in sd.items()}
    return sd


def read_vae_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in read_vae_state(path).items()}


VAE_REQUIRED = ("encoder.conv1.weight", "decoder.conv1.weight", "conv1.weight", "conv2.weight")


def infer_vae_config(shapes: dict[str, tuple[int, ...]], path: str | os.PathLike) -> dict:
    """Architecture of a Wan 2.1 VAE (diffusers AutoencoderKLWan kwargs) from its tensor shapes."""
    missing = [k for k in VAE_REQUIRED if k not in shapes]
    if missing:
        raise WeightsError(f"{path}: not a Wan VAE (missing {', '.join(missing)}); expected Wan2.1_VAE.pth "
                           "from Wan-AI/Wan2.1-T2V-1.3B")
    base_dim = shapes["encoder.conv1.weight"][0]
    z2 = shapes["conv1.weight"][0]
    if z2 != 32:
        raise WeightsError(f"{path}: VAE has {z2 // 2} latent channels, not 16; this is the Wan 2.2 VAE or "
                           "another family, DVD needs Wan2.1_VAE.pth")
    # Encoder.downsamples is a flat list: per level, num_res_blocks residual blocks then a
    # Resample (except after the last level). Residual blocks have residual.2 convs.
    idx = sorted({int(k.split(".")[2]) for k in shapes if k.startswith("encoder.downsamples.")})
    levels: list[list[int]] = [[]]
    temporal: list[bool] = []
    for i in idx:
        pre = f"encoder.downsamples.{i}."
        if pre + "residual.2.weight" in shapes:
            levels[-1].append(shapes[pre + "residual.2.weight"][0])
        elif pre + "resample.1.weight" in shapes:
            temporal.append(pre + "time_conv.weight" in shapes)
            levels.append([])
    counts = {len(level) for level in levels}
    if len(counts) != 1 or not levels[0]:
        raise WeightsError(f"{path}: VAE encoder layout is irregular ({[len(x) for x in levels]} residual blocks "
                           "per level); not a Wan 2.1 VAE")
    dim_mult = [level[0] // base_dim for level in levels]
    return {
        "base_dim": base_dim,
        "z_dim": z2 // 2,
        "dim_mult": dim_mult,
        "num_res_blocks": counts.pop(),
        "temperal_downsample": temporal,
        "attn_scales": [],
    }
