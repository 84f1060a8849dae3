"""`dvd-vfx install nuke`: put the DVD Depth NUKE_PATH folder where Nuke finds it.

The folder (``<dest>/dvd_depth``) holds init.py, menu.py and the ``dvd_nuke`` package (copied
from this package's ``nuke_path/`` data, so ``pip install dvd-vfx`` alone is enough), plus
``_dvd_lib/`` with links (or copies) of the pure-Python packages Nuke's Python needs (dvd_vfx,
pluggy) and ``dvd_nuke_config.json`` recording this environment's Python as the engine. Running
it again refreshes everything in place.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from dvd_vfx import __version__
from dvd_vfx.errors import InputError

from .config import CONFIG_NAME

FOLDER_NAME = "dvd_depth"  # not "dvd_vfx": Nuke puts plugin folders' parents on sys.path
SOURCE = Path(__file__).resolve().parent / "nuke_path"
LIB_NAME = "_dvd_lib"
LIB_PACKAGES = ("dvd_vfx", "pluggy")


@dataclass(frozen=True)
class Installed:
    folder: Path
    engine_python: str
    linked: bool
    init_line: str
    init_file: Path
    added_to_init: bool


def default_dest() -> Path:
    return Path(os.environ.get("DVD_VFX_NUKE_HOME") or Path.home() / ".nuke")


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _package_dir(name: str) -> Path:
    module = __import__(name)
    return Path(module.__file__).resolve().parent


def _place(src: Path, dst: Path, link: bool) -> bool:
    """Link dst -> src (True) or copy it (False; also when links are not allowed here)."""
    _remove(dst)
    if link:
        try:
            dst.symlink_to(src, target_is_directory=src.is_dir())
            return True
        except (OSError, NotImplementedError):
            pass
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(src, dst, ignore=ignore) if src.is_dir() else shutil.copy2(src, dst)
    return False


def install_nuke(dest=None, *, link: bool = True, engine_python: str | None = None,
                 add_to_init: bool = False) -> Installed:
    dest = Path(os.path.expanduser(os.fspath(dest))) if dest else default_dest()
    folder = dest / FOLDER_NAME
    if folder.exists() and not (folder / CONFIG_NAME).exists():
        raise InputError(f"{folder} exists and was not made by `dvd-vfx install nuke`; move it away or pass "
                         f"another folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for entry in ("init.py", "menu.py", "dvd_nuke"):
            _place(SOURCE / entry, folder / entry, link=False)  # small: always real files
        lib = folder / LIB_NAME
        lib.mkdir(exist_ok=True)
        linked = all([_place(_package_dir(name), lib / name, link) for name in LIB_PACKAGES])
        python = engine_python or sys.executable
        config = {"engine_python": python, "dvd_vfx_version": __version__, "linked": linked}
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"could not install the Nuke plugin into {folder}: {exc}") from None
    init_file = dest / "init.py"
    line = f'nuke.pluginAddPath("{folder.as_posix()}")'
    added = False
    if add_to_init:
        text = init_file.read_text(encoding="utf-8") if init_file.exists() else ""
        if line not in text.splitlines():
            with init_file.open("a", encoding="utf-8") as fh:
                fh.write(("" if not text or text.endswith("\n") else "\n") + line + "\n")
        added = True  # the line is in init.py now (added once; re-runs find it there)
    return Installed(folder=folder, engine_python=python, linked=linked, init_line=line, init_file=init_file,
                     added_to_init=added)


def describe(installed: Installed) -> str:
    how = "linked to this environment" if installed.linked else "copied (re-run after upgrading dvd-vfx)"
    lines = [f"installed the DVD Depth node for Nuke in {installed.folder}",
             f"  engine Python: {installed.engine_python}",
             f"  dvd_vfx for Nuke's Python: {how}"]
    if installed.added_to_init:
        lines.append(f"{installed.init_file} loads it: {installed.init_line}")
    else:
        lines += [f"to load it, add this line to {installed.init_file}:", f"  {installed.init_line}",
                  f"or put the folder on NUKE_PATH: NUKE_PATH={installed.folder}"]
    lines.append("then in Nuke: Nodes > DVD > DVD Depth")
    return "\n".join(lines)
