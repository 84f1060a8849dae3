"""`dvd-vfx install blender`: build the Blender extension zip from plugins/blender (and install it).

No bpy here: this runs in the engine's Python. The zip carries engine.json, the interpreter that
built it, so the add-on finds the engine without any setting.
"""

from __future__ import annotations

import json
import os
import re
import sys
import zipfile
from pathlib import Path

from dvd_vfx import __version__
from dvd_vfx.errors import InputError

EXTENSION_ID = "dvd_vfx"
SUPPORTED = ((4, 2), (5, 0))  # Blender 4.2 LTS through 5.0


def addon_source_dir() -> Path:
    """plugins/blender of this dvd-vfx (a source checkout or an editable install)."""
    here = Path(__file__).resolve().parents[2] / "plugins" / "blender"
    if (here / "blender_manifest.toml").is_file():
        return here
    raise InputError(f"the Blender add-on sources are not next to this dvd-vfx ({here} is missing); install "
                     f"dvd-vfx from its source checkout (pip install -e .) to build the add-on")


def parse_blender_version(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.\d+)?\s*", text or "")
    if not m:
        raise InputError(f"--blender-version {text!r}: expected X.Y, e.g. 4.2 or 5.0")
    version = (int(m.group(1)), int(m.group(2)))
    if not SUPPORTED[0] <= version <= SUPPORTED[1]:
        raise InputError(f"Blender {version[0]}.{version[1]} is not supported: the add-on needs Blender "
                         f"{SUPPORTED[0][0]}.{SUPPORTED[0][1]} to {SUPPORTED[1][0]}.{SUPPORTED[1][1]}")
    return version


def blender_config_root(env=None, platform: str = sys.platform) -> Path:
    """Blender's per-user folder holding one X.Y folder per version."""
    env = os.environ if env is None else env
    if platform.startswith("win"):
        return Path(env.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "Blender Foundation" / "Blender"
    if platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Blender"
    return Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "blender"


def user_extensions_dir(version: tuple[int, int], env=None, platform: str = sys.platform) -> Path:
    """<config>/<X.Y>/extensions/user_default ($BLENDER_USER_EXTENSIONS wins, as in Blender)."""
    env = os.environ if env is None else env
    if env.get("BLENDER_USER_EXTENSIONS"):
        return Path(env["BLENDER_USER_EXTENSIONS"]) / "user_default"
    if env.get("BLENDER_USER_RESOURCES"):
        return Path(env["BLENDER_USER_RESOURCES"]) / "extensions" / "user_default"
    return blender_config_root(env, platform) / f"{version[0]}.{version[1]}" / "extensions" / "user_default"


def detect_blender_version(env=None, platform: str = sys.platform) -> tuple[int, int]:
    """The newest supported X.Y that has a user folder; else 4.2."""
    root = blender_config_root(env, platform)
    found = []
    if root.is_dir():
        for child in root.iterdir():
            m = re.fullmatch(r"(\d+)\.(\d+)", child.name)
            if m and SUPPORTED[0] <= (int(m[1]), int(m[2])) <= SUPPORTED[1]:
                found.append((int(m[1]), int(m[2])))
    return max(found) if found else SUPPORTED[0]


def _files(src: Path):
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
            yield path, rel.as_posix()


def build_zip(dest: str | os.PathLike, *, engine_python: str | None = None) -> Path:
    """The extension zip (manifest at the top level, as Blender expects), with engine.json."""
    src = addon_source_dir()
    as_dir = os.fspath(dest).endswith(("/", os.sep))
    dest = Path(dest)
    if dest.is_dir() or as_dir:
        dest = dest / f"{EXTENSION_ID}-{__version__}.zip"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, rel in _files(src):
            zf.write(path, rel)
        zf.writestr("engine.json", json.dumps({"python": engine_python or sys.executable,
                                               "dvd_vfx": __version__}, indent=2) + "\n")
    os.replace(tmp, dest)
    return dest


def install(zip_path: str | os.PathLike, version: tuple[int, int], env=None) -> Path:
    """Unpack the zip into the user's extensions repository; Blender enables it from Preferences > Add-ons."""
    target = user_extensions_dir(version, env) / EXTENSION_ID
    staging = target.with_name(target.name + ".installing")
    import shutil

    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(staging)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target
