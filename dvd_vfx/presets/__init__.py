"""Presets: named sets of render and model settings in TOML files.

Where presets come from (a later source replaces an earlier preset of the same name wholly):
  1. shipped: the *.toml files in this package folder (dvd_vfx/presets/), registered by the
     default plugin dvd_vfx.default_plugins.presets;
  2. plugins: dvd_vfx_register_presets() (Preset objects or .toml paths);
  3. user: <platformdirs user_config_dir("dvd-vfx")>/presets/*.toml.
On the command line, explicit flags override the chosen preset's values, which override the
defaults (DEFAULTS). A preset file is flat: ``key = value`` with the keys in KEYS; the preset's
name is the file name without .toml.
"""

from __future__ import annotations

import os

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.9/3.10 (Nuke 14/15): the same parser as the tomli package
    import tomli as tomllib
from dataclasses import dataclass, field
from pathlib import Path

from dvd_vfx.errors import InputError

PRESETS_DIR = Path(__file__).resolve().parent

# key -> (type, allowed values or None, meaning); the CLI flag is --key-with-dashes
KEYS: dict[str, tuple[type, tuple | None, str]] = {
    "description": (str, None, "one line shown by `dvd-vfx presets ls`"),
    "predictor": (str, None, "registered predictor name (default dvd)"),
    "resolution": (int, None, "working short side in pixels (>= 16; rounded to a multiple of 16)"),
    "window": (int, None, "frames per model window, 4n+1 (5, 9, ... 33, ... 81)"),
    "overlap": (int, None, "frames shared by consecutive windows (0 <= overlap < window)"),
    "mode": (str, ("depth", "disparity"), "depth (near..far scene units) or disparity (0..1, near = 1)"),
    "near": (float, None, "depth of the nearest 2% of the shot (> 0)"),
    "far": (float, None, "depth of the farthest 2% of the shot (> near)"),
    "invert": (bool, None, "swap near and far"),
    "clamp": (bool, None, "disparity mode: clip to 0..1 (false keeps the 2% tails below 0 and above 1)"),
    "upsample": (str, ("bilinear", "guided"), "to plate resolution: bilinear, or guided by the plate"),
    "compression": (str, ("zip", "zips", "piz", "rle", "none"), "EXR compression (lossless only)"),
    "preview": (bool, None, "also write half R,G,B preview channels"),
    "device": (str, None, "auto | cuda | cuda:N | cpu | mps"),
    "dtype": (str, ("auto", "bf16", "fp16", "fp32"), "network precision"),
    "vae_tiling": (bool, None, "tile the VAE (large frames, small GPUs)"),
    "vae_tiling_auto": (bool, None, "decide VAE tiling at render start from the GPU's free memory (whole renders; "
                                    "split and farm renders use vae_tiling)"),
    "offload": (bool, None, "keep networks on the GPU only while they run"),
}

# what a render uses when neither a flag nor the preset sets a key (= the "standard" preset)
DEFAULTS: dict[str, object] = {
    "predictor": "dvd", "resolution": 480, "window": 81, "overlap": 21, "mode": "depth", "near": 1.0,
    "far": 100.0, "invert": False, "clamp": True, "upsample": "bilinear", "compression": "zip", "preview": False,
    "device": "auto", "dtype": "auto", "vae_tiling": None, "offload": False, "vae_tiling_auto": False,
}

_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


@dataclass(frozen=True)
class Preset:
    name: str
    values: dict = field(default_factory=dict)  # validated; never contains "description"
    description: str = ""
    source: str = ""  # file path, or "plugin NAME"


def user_presets_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("dvd-vfx", appauthor=False)) / "presets"


def shipped_preset_files() -> list[Path]:
    return sorted(PRESETS_DIR.glob("*.toml"))


def validate(values: dict, where: str) -> dict:
    """Checked values (floats as float); InputError naming `where` and the key otherwise."""
    out = {}
    for key, value in values.items():
        if key not in KEYS:
            raise InputError(f"{where}: unknown key {key!r}; known keys: {', '.join(KEYS)}")
        kind, allowed, _ = KEYS[key]
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise InputError(f"{where}: {key} must be {_TYPE_WORDS[kind]}, got {value!r}")
        if allowed is not None and value not in allowed:
            raise InputError(f"{where}: {key} = {value!r} is not one of {', '.join(allowed)}")
        out[key] = value
    if "resolution" in out and out["resolution"] < 16:
        raise InputError(f"{where}: resolution = {out['resolution']} must be at least 16")
    if "window" in out and (out["window"] < 1 or (out["window"] - 1) % 4):
        raise InputError(f"{where}: window = {out['window']} is not 4n+1 (e.g. 33, 49, 81)")
    if "overlap" in out and out["overlap"] < 0:
        raise InputError(f"{where}: overlap = {out['overlap']} must not be negative")
    if "overlap" in out and "window" in out and out["overlap"] >= out["window"]:
        raise InputError(f"{where}: overlap = {out['overlap']} must be smaller than window = {out['window']}")
    for key in ("near", "far"):
        if key in out and out[key] <= 0:
            raise InputError(f"{where}: {key} = {out[key]} must be positive")
    if "near" in out and "far" in out and out["near"] >= out["far"]:
        raise InputError(f"{where}: near = {out['near']} must be smaller than far = {out['far']}")
    return out


def load_preset_file(path: str | os.PathLike) -> Preset:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read preset ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    return make_preset(path.stem, data, str(path))


def make_preset(name: str, data: dict, source: str) -> Preset:
    data = dict(data)
    description = data.pop("description", "")
    if not isinstance(description, str):
        raise InputError(f"{source}: description must be a string, got {description!r}")
    return Preset(name=name, values=validate(data, source), description=description, source=source)


def collect(engine) -> dict[str, Preset]:
    """All presets by name: shipped < plugins < user config dir."""
    found: dict[str, Preset] = {}
    for batch in reversed(engine.call("dvd_vfx_register_presets")):  # default plugins (trylast) first
        for item in batch or []:
            if isinstance(item, Preset):
                preset = make_preset(item.name, {"description": item.description, **item.values},
                                     item.source or f"preset {item.name!r} from a plugin")
            elif isinstance(item, (str, os.PathLike)):
                preset = load_preset_file(item)
            else:
                raise InputError(f"dvd_vfx_register_presets returned {item!r}; return Preset objects or .toml paths")
            found[preset.name] = preset
    folder = user_presets_dir()
    if folder.is_dir():
        for path in sorted(folder.glob("*.toml")):
            found[path.stem] = load_preset_file(path)
    return found


def get(engine, name: str) -> Preset:
    presets = collect(engine)
    if name not in presets:
        raise InputError(f"unknown preset {name!r}; available: {', '.join(sorted(presets))} "
                         f"(user presets go in {user_presets_dir()})")
    return presets[name]


def merge(preset: Preset | None, explicit: dict, *, split: bool = False) -> dict:
    """DEFAULTS < preset values < explicit (non-None) values; checks a preset's window/overlap against flags.

    VAE tiling is one choice made by two keys: an explicit ``vae_tiling`` (--vae-tiling/--no-vae-tiling)
    turns a preset's ``vae_tiling_auto`` off, an explicit ``vae_tiling_auto`` drops a preset's
    ``vae_tiling``. A preset's own ``vae_tiling`` beside ``vae_tiling_auto = true`` is the choice for
    `split` renders (farm tasks, --only-windows/--assemble), which cannot decide per GPU.
    """
    given = {k: v for k, v in explicit.items() if v is not None}
    values = {**DEFAULTS, **(preset.values if preset else {}), **given}
    if "vae_tiling" in given and "vae_tiling_auto" not in given:
        values["vae_tiling_auto"] = False
    elif values.get("vae_tiling_auto") and "vae_tiling" not in given:
        if split and "vae_tiling_auto" not in given:
            values["vae_tiling_auto"] = False  # the preset's vae_tiling (or the default) for every part
        else:
            values["vae_tiling"] = None
    if preset is not None and ("window" in preset.values or "overlap" in preset.values) \
            and values["overlap"] >= values["window"]:  # flags alone: RenderOptions.validate says it
        raise InputError(f"preset {preset.name!r} ({preset.source}) with your flags: overlap {values['overlap']} "
                         f"must be smaller than window {values['window']}")
    return values


def to_toml(preset: Preset) -> str:
    """The preset as a file (for `dvd-vfx presets show`)."""
    lines = [f"# {preset.name}: {preset.source}"]
    if preset.description:
        lines.append(f"description = {_toml_value(preset.description)}")
    lines += [f"{key} = {_toml_value(value)}" for key, value in preset.values.items()]
    return "\n".join(lines)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
