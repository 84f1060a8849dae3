"""Where the DVD weights live, what a weights folder holds, and checking it — without torch.

A weights folder holds either the official release files::

    model.safetensors | dvd_1.1.safetensors   DVD transformer (pipe.dit.* keys, LoRA unmerged)
    Wan2.1_VAE.pth                            Wan 2.1 VAE (original key names)
    config.json                               optional: transformer architecture (else inferred)

or diffusers-format folders ``transformer/`` and ``vae/`` (each config.json + safetensors).
Weights are never fetched unless the user runs ``dvd-vfx weights fetch``.
Licence of the DVD weights: CC BY-NC 4.0 (non-commercial).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import dvd_vfx.model.checkpoint as ck
from dvd_vfx.errors import WeightsError
from dvd_vfx.fsutil import sha256_file, write_atomic

DIT_FILES = ("dvd_1.1.safetensors", "model.safetensors")  # preference order
VAE_FILE = "Wan2.1_VAE.pth"
HF_DVD_REPO = "FayeHongfeiZhang/DVD"
HF_WAN_REPO = "Wan-AI/Wan2.1-T2V-1.3B"
LICENCE = "DVD weights: CC BY-NC 4.0 (non-commercial use only); Wan2.1 VAE: Apache 2.0"
ENV_WEIGHTS = "DVD_VFX_WEIGHTS"


def default_weights_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("dvd-vfx", appauthor=False)) / "weights"


def resolve_weights_dir(weights: str | os.PathLike | None = None) -> Path:
    """--weights DIR, else $DVD_VFX_WEIGHTS, else the user data dir."""
    if weights:
        return Path(weights).expanduser().resolve()
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        return Path(env).expanduser().resolve()
    return default_weights_dir()


@dataclass(frozen=True)
class WeightFiles:
    folder: Path
    dit: Path | None = None  # official DVD safetensors
    vae: Path | None = None  # Wan2.1_VAE.pth
    dit_config: Path | None = None  # config.json beside the official files
    diffusers_transformer: Path | None = None
    diffusers_vae: Path | None = None

    @property
    def model_id(self) -> str:
        if self.dit is not None:
            trained = ck.read_dvd_vfx_metadata(self.dit).get("model_id")  # written by `dvd-vfx train`
            if isinstance(trained, str) and trained:
                return trained
            return {"dvd_1.1.safetensors": "dvd-1.1", "model.safetensors": "dvd-1.0"}.get(self.dit.name, self.dit.stem)
        return "dvd-diffusers"

    def files(self) -> list[Path]:
        """The files whose bytes define the model (for the identity hash)."""
        out = [p for p in (self.dit, self.dit_config, self.vae) if p is not None]
        for folder in (self.diffusers_transformer, self.diffusers_vae):
            if folder is not None:
                out += sorted(p for p in folder.iterdir() if p.suffix in (".json", ".safetensors"))
        return out


def find_weight_files(folder: str | os.PathLike) -> WeightFiles:
    """Locate the transformer and VAE in a weights folder, or say exactly what is missing."""
    folder = Path(folder)
    if not folder.exists():
        raise WeightsError(f"weights folder {folder} does not exist; run `dvd-vfx weights fetch` "
                           f"or pass --weights DIR (or set {ENV_WEIGHTS})")
    if not folder.is_dir():
        raise WeightsError(f"weights path {folder} is not a folder; pass the folder that holds "
                           f"{' or '.join(DIT_FILES)} and {VAE_FILE}")
    dit = next((folder / n for n in DIT_FILES if (folder / n).is_file()), None)
    vae = folder / VAE_FILE if (folder / VAE_FILE).is_file() else None
    cfg = folder / "config.json" if (folder / "config.json").is_file() else None
    d_tr = folder / "transformer" if (folder / "transformer" / "config.json").is_file() else None
    d_vae = folder / "vae" if (folder / "vae" / "config.json").is_file() else None
    missing = []
    if dit is None and d_tr is None:
        missing.append(f"the DVD transformer ({' or '.join(DIT_FILES)})")
    if vae is None and d_vae is None:
        missing.append(f"the VAE ({VAE_FILE})")
    if missing:
        raise WeightsError(f"weights folder {folder} lacks {' and '.join(missing)}; run `dvd-vfx weights fetch` "
                           "or copy the files there")
    return WeightFiles(folder=folder, dit=dit, vae=vae, dit_config=cfg,
                       diffusers_transformer=None if dit else d_tr, diffusers_vae=None if vae else d_vae)


# --------------------------------------------------------------------------------------------
# Hashes (cached by path, size and mtime: hashing 4.5 GB takes a while)


def _hash_cache_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("dvd-vfx", appauthor=False)) / "weights-sha256.json"


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a weights file, remembered in the user cache by path, size and mtime."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = _hash_cache_path()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    digest = sha256_file(path)
    cache[key] = digest
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache_file, json.dumps(cache, indent=0))
    except OSError:
        pass  # a read-only cache only costs time
    return digest


def weights_sha256(files: WeightFiles) -> str:
    """One digest over every file that defines the model (names and contents)."""
    h = hashlib.sha256()
    for p in files.files():
        h.update(p.name.encode() + b"\0" + file_sha256(p).encode() + b"\n")
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# `dvd-vfx weights check`


def check_weights(folder: str | os.PathLike, *, with_hash: bool = True) -> list[str]:
    """Validate a weights folder; return report lines. Raises WeightsError on the first problem."""
    files = find_weight_files(folder)
    lines = [f"weights folder: {files.folder}", f"model id: {files.model_id}"]
    if files.dit is not None:
        tensors = ck.read_safetensors_header(files.dit)
        layout = ck.dit_layout(tensors, files.dit)
        cfg = ck.infer_dit_config(layout, files.dit)
        if files.dit_config is not None:
            check_config_agrees(cfg, files.dit_config, files.dit)
        lines.append(f"transformer: {files.dit.name} ({files.dit.stat().st_size / 1e9:.2f} GB, {len(tensors)} tensors) "
                     f"— {ck.describe_dit_size(cfg)}")
        if layout.has_lora:
            lines.append(f"  LoRA: {len(layout.lora)} adapted modules, rank {layout.lora_rank} (merged at load, scale 1)")
        elif (trained := ck.read_dvd_vfx_metadata(files.dit)).get("kind") == "merged":
            lines.append(f"  LoRA: merged into the weights by `dvd-vfx train --merge` "
                         f"(rank {trained.get('merged_lora_rank')})")
        else:
            lines.append("  LoRA: none — this is a plain Wan backbone, not DVD; its depth will be meaningless")
        if not ck.is_full_size(cfg):
            lines.append("  note: not the DVD 1.3B size; fine for tests, not for production depth")
    else:
        lines.append(f"transformer: diffusers folder {files.diffusers_transformer}")
    if files.vae is not None:
        lines.append(f"vae: {files.vae.name} ({files.vae.stat().st_size / 1e6:.0f} MB) — "
                     + describe_vae(files.vae))
    else:
        lines.append(f"vae: diffusers folder {files.diffusers_vae}")
    if with_hash:
        for p in files.files():
            lines.append(f"sha256 {file_sha256(p)}  {p.name}")
    lines.append(f"licence: {LICENCE}")
    return lines


def check_config_agrees(inferred: dict, config_path: Path, weights_path: Path) -> dict:
    """config.json beside the weights must describe the tensors that are there."""
    try:
        cfg = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{config_path}: unreadable config ({exc}); fix or delete it") from None
    for key, value in inferred.items():
        if key in cfg and _norm(cfg[key]) != _norm(value):
            raise WeightsError(f"{config_path}: {key} = {cfg[key]!r} but the tensors in {weights_path.name} say "
                               f"{value!r}; the config belongs to another model, fix or delete it")
    return cfg


def _norm(v):
    return list(v) if isinstance(v, (list, tuple)) else v


def describe_vae(path: Path) -> str:
    try:
        shapes = ck.read_vae_shapes(path)
    except ImportError:  # torch missing: the .pth cannot be opened without it
        return "not inspected (torch is not installed in this Python)"
    cfg = ck.infer_vae_config(shapes, path)
    return f"Wan VAE base_dim {cfg['base_dim']}, z_dim {cfg['z_dim']}, dim_mult {cfg['dim_mult']}"


# --------------------------------------------------------------------------------------------
# `dvd-vfx weights fetch`


def fetch_weights(folder: str | os.PathLike, *, version: str = "1.1", timeout: float = 10.0) -> list[str]:
    """Download the official files with huggingface_hub (only when the user asks)."""
    folder = Path(folder)
    try:
        import huggingface_hub
    except ImportError:
        raise WeightsError("`dvd-vfx weights fetch` needs huggingface_hub: pip install 'dvd-vfx[fetch]'") from None
    _check_online("huggingface.co", timeout)
    dit_name = "dvd_1.1.safetensors" if version == "1.1" else "model.safetensors"
    folder.mkdir(parents=True, exist_ok=True)
    got = []
    for repo, name in ((HF_DVD_REPO, dit_name), (HF_WAN_REPO, VAE_FILE)):
        try:
            p = huggingface_hub.hf_hub_download(repo_id=repo, filename=name, local_dir=folder)
        except Exception as exc:  # noqa: BLE001 - any hub failure becomes one clear line
            raise WeightsError(f"could not download {name} from huggingface.co/{repo}: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        got.append(p)
    return got


def _check_online(host: str, timeout: float) -> None:
    import socket

    try:
        socket.getaddrinfo(host, 443)
        with socket.create_connection((host, 443), timeout=timeout):
            pass
    except OSError as exc:
        raise WeightsError(f"cannot reach {host} ({exc.strerror or exc}); this machine is offline. Download "
                           f"{' or '.join(DIT_FILES)} from huggingface.co/{HF_DVD_REPO} and {VAE_FILE} from "
                           f"huggingface.co/{HF_WAN_REPO} elsewhere and copy them into the weights folder") from None
