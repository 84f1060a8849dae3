"""Write fine-tuned weights as a DVD weights folder in the OFFICIAL format.

A folder written here is usable as ``--weights`` directly and by the official DVD scripts
(``test_script/*.py --ckpt DIR --model_config DIR/model_config.yaml``)::

    model.safetensors     pipe.dit.<original Wan name>; LoRA-wrapped modules as
                          <m>.base_layer.weight|bias (the weights training started from: the
                          release with ITS LoRA merged) + <m>.lora_A.default.weight [r, in] and
                          <m>.lora_B.default.weight [out, r] (the LoRA trained here)
    Wan2.1_VAE.pth        the frozen VAE (hard link to the source file, else a copy)
    config.json           the transformer architecture
    model_config.yaml     the official scripts' model config (lora_rank = this rank)

DVD's code always uses alpha = rank (scale 1) and so does our loader, so a LoRA trained with
another alpha is written with alpha/rank folded into lora_B. The official loader strict-loads a
LoRA on ALL six official targets; modules left out of ``--targets`` get an all-zero pair.

``merge_folder`` writes the merged model (plain ``pipe.dit.*``, no LoRA keys) with the loader's
own merge function, so it predicts exactly what the LoRA folder predicts.

Every folder is written beside its destination under a temporary name and renamed into place:
a failure leaves no partial folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import torch

from dvd_vfx.errors import InputError
from dvd_vfx.model import checkpoint as ck
from dvd_vfx.model.keys import (BASE_LAYER, LORA_A, LORA_B, OFFICIAL_PREFIX, dit_to_original, is_lora_target,
                                peft_key, split_peft_name)
from dvd_vfx.model.weights import VAE_FILE, WeightFiles
from dvd_vfx.train import lora as lora_mod

MODEL_FILE = "model.safetensors"  # the name the official scripts read (also accepted by our loader)
_ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
_OFFICIAL_MODEL_CONFIG = """\
# Official DVD model config (read by test_script/*.py --model_config); written by dvd-vfx train.
model_id_with_origin_paths: Wan-AI/Wan2.1-T2V-1.3B:diffusion_pytorch_model*.safetensors,Wan-AI/Wan2.1-T2V-1.3B:Wan2.1_VAE.pth
trainable_models: dit
mode: regression
denoise_step: 0.5
training_target: x
lora_base_model: {lora_base_model}
lora_rank: {rank}
"""


@contextlib.contextmanager
def atomic_folder(dst: str | os.PathLike):
    """Yield a temporary folder beside `dst`; on success it replaces `dst`, on failure it is removed."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if dst.exists():
            old = dst.parent / f".{dst.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dst, old)
        os.replace(tmp, dst)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard link (no extra disk for a 500 MB VAE), else copy (another file system)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def source_dtypes(files: WeightFiles) -> dict[str, torch.dtype]:
    """original Wan name -> dtype of that tensor in the source checkpoint (empty when unknown).

    Base weights are written back in their source dtype: the official release is bf16, and a
    bf16 weight trained on a CPU in float32 stays exactly representable, so nothing is lost.
    """
    out: dict[str, torch.dtype] = {}
    if files.dit is not None:
        tensors = ck.read_safetensors_header(files.dit)
        layout = ck.dit_layout(tensors, files.dit)
        for name, key in layout.base_keys.items():
            if tensors[key].dtype in _ST_DTYPES:
                out[name] = _ST_DTYPES[tensors[key].dtype]
    elif files.diffusers_transformer is not None:
        for shard in sorted(files.diffusers_transformer.glob("*.safetensors")):
            for name, info in ck.read_safetensors_header(shard).items():
                if info.dtype in _ST_DTYPES:
                    out[dit_to_original(name)] = _ST_DTYPES[info.dtype]
    return out


def lora_tensors(dit: torch.nn.Module, *, rank: int, alpha: float, dtypes: dict[str, torch.dtype] | None = None
                 ) -> dict[str, torch.Tensor]:
    """The peft-wrapped DiT as official-format tensors (see the module docstring)."""
    dtypes = dtypes or {}
    names = lora_mod.original_names(dit)  # unwrapped diffusers name -> original name
    scale = float(alpha) / float(rank)
    params = {n: p.detach() for n, p in dit.named_parameters()}
    out: dict[str, torch.Tensor] = {}
    wrapped: set[str] = set()
    for name, tensor in params.items():
        parts = split_peft_name(name)
        if parts is None:
            orig = names[name]
            out[OFFICIAL_PREFIX + orig] = _cpu(tensor, dtypes.get(orig))
            continue
        module, part, param = parts
        orig_module = names[f"{module}.weight"].removesuffix(".weight")
        wrapped.add(orig_module)
        if part == BASE_LAYER:
            orig = f"{orig_module}.{param}"
            out[peft_key(orig_module, BASE_LAYER, param)] = _cpu(tensor, dtypes.get(orig))
        elif part == LORA_A:
            out[peft_key(orig_module, LORA_A)] = _cpu(tensor, torch.float32)
        else:
            b = tensor.float() * scale if scale != 1.0 else tensor
            out[peft_key(orig_module, LORA_B)] = _cpu(b, torch.float32)
    # Official targets not trained here: an all-zero pair, so the official strict load succeeds.
    for key in list(out):
        orig = key.removeprefix(OFFICIAL_PREFIX)
        module, _, param = orig.rpartition(".")
        if param != "weight" or module in wrapped or not is_lora_target(module) or f".{BASE_LAYER}" in module:
            continue
        weight = out.pop(key)
        out[peft_key(module, BASE_LAYER)] = weight
        bias_key = f"{OFFICIAL_PREFIX}{module}.bias"
        if bias_key in out:
            out[peft_key(module, BASE_LAYER, "bias")] = out.pop(bias_key)
        out[peft_key(module, LORA_A)] = torch.zeros(rank, weight.shape[1])
        out[peft_key(module, LORA_B)] = torch.zeros(weight.shape[0], rank)
    return out


def _cpu(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return t.to("cpu", dtype=dtype or t.dtype).contiguous()


def _save(tensors: dict[str, torch.Tensor], path: Path, info: dict) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": "pt", "dvd_vfx": json.dumps(info, sort_keys=True)})


def _copy_vae_and_config(files: WeightFiles, folder: Path) -> None:
    if files.vae is not None:
        link_or_copy(files.vae, folder / VAE_FILE)
    else:  # a diffusers-format VAE folder
        (folder / "vae").mkdir()
        for p in sorted(files.diffusers_vae.iterdir()):
            if p.is_file():
                link_or_copy(p, folder / "vae" / p.name)


def _config_json(dit: torch.nn.Module) -> str:
    from dvd_vfx.model.loader import shipped_config

    keys = set(shipped_config("transformer"))
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(dit.config).items() if k in keys}
    return json.dumps(cfg, indent=2, sort_keys=True) + "\n"


def write_lora_folder(folder: str | os.PathLike, dit: torch.nn.Module, *, source: WeightFiles, rank: int,
                      alpha: float, info: dict | None = None) -> Path:
    """The peft-wrapped `dit` as an official-format weights folder at `folder` (atomic)."""
    folder = Path(folder)
    meta = {"kind": "lora", "rank": rank, "alpha_folded": alpha, **(info or {})}
    with atomic_folder(folder) as tmp:
        write_lora_files(tmp, dit, source=source, rank=rank, alpha=alpha, info=meta)
    return folder


def write_lora_files(folder: Path, dit: torch.nn.Module, *, source: WeightFiles, rank: int, alpha: float,
                     info: dict) -> None:
    """Write the weights files into an existing (temporary) folder."""
    tensors = lora_tensors(dit, rank=rank, alpha=alpha, dtypes=source_dtypes(source))
    _save(tensors, folder / MODEL_FILE, info)
    _copy_vae_and_config(source, folder)
    (folder / "config.json").write_text(_config_json(dit))
    (folder / "model_config.yaml").write_text(_OFFICIAL_MODEL_CONFIG.format(lora_base_model="dit", rank=rank))


def merge_folder(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """A LoRA weights folder -> the merged model (plain pipe.dit.*, no LoRA keys), with the loader's merge.

    Each weight is W + B @ A computed exactly as the production loader computes it when it loads
    the LoRA folder, so both folders predict the same numbers.
    """
    from safetensors import safe_open

    from dvd_vfx.model.loader import merge_lora
    from dvd_vfx.model.weights import find_weight_files

    src, dst = Path(src), Path(dst)
    files = find_weight_files(src)
    if files.dit is None:
        raise InputError(f"{src}: holds a diffusers-format transformer, not an official-format DVD safetensors; "
                         "merge a folder written by dvd-vfx train")
    tensors = ck.read_safetensors_header(files.dit)
    layout = ck.dit_layout(tensors, files.dit)
    out: dict[str, torch.Tensor] = {}
    with safe_open(str(files.dit), framework="pt", device="cpu") as fh:
        meta = dict(fh.metadata() or {})
        for name, key in layout.base_keys.items():
            t = fh.get_tensor(key)
            module, _, param = name.rpartition(".")
            if param == "weight" and module in layout.lora:
                key_a, key_b = layout.lora[module]
                t = merge_lora(t, fh.get_tensor(key_a), fh.get_tensor(key_b))
            out[OFFICIAL_PREFIX + name] = t.contiguous()
    try:
        info = json.loads(meta.get("dvd_vfx", "{}"))
    except ValueError:
        info = {}
    info.update({"kind": "merged", "merged_from": str(src), "merged_lora_rank": layout.lora_rank})
    with atomic_folder(dst) as tmp:
        _save(out, tmp / MODEL_FILE, info)
        _copy_vae_and_config(files, tmp)
        if files.dit_config is not None:
            shutil.copy2(files.dit_config, tmp / "config.json")
        # The official scripts load a merged model without injecting a LoRA.
        (tmp / "model_config.yaml").write_text(_OFFICIAL_MODEL_CONFIG.format(lora_base_model="null", rank=0))
    return dst
