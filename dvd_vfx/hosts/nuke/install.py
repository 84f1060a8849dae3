"""`dvd-vfx install nuke`: put the DVD Depth NUKE_PATH folder where Nuke finds it.

The folder (``<dest>/dvd_depth``) holds init.py, menu.py and the ``dvd_nuke`` package (copied
from this package's ``nuke_path/`` data, so ``pip install dvd-vfx`` alone is enough), plus
``_dvd_lib/`` with links (or copies) of the pure-Python packages Nuke's Python needs (dvd_vfx and
the host-side dependencies pluggy, platformdirs, tomli) and ``dvd_nuke_config.json`` recording
this environment's Python as the engine. Running it again refreshes everything in place.

Nuke 14/15/16 run Python 3.9/3.10/3.11, so every bridged dependency must run on 3.9: the
installer checks each one's Requires-Python and refuses (naming the pin to install) when this
environment holds a newer release. Compiled builds (tomli ships mypyc extension modules for the
engine's Python) are bridged as their pure-Python sources, which every host Python can import.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
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
LIB_PACKAGES = ("dvd_vfx",)
# (import name, distribution, the requirement that still runs on HOST_OLDEST_PYTHON)
HOST_DEPENDENCIES = (("pluggy", "pluggy", "pluggy>=1.3,<1.7"), ("platformdirs", "platformdirs", "platformdirs>=3,<4.5"),
                     ("tomli", "tomli", "tomli>=2"))
HOST_OLDEST_PYTHON = (3, 9)  # Nuke 14
_COMPILED = ("*.so", "*.pyd", "*.dylib")


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


def _place(src: Path, dst: Path, link: bool, *, pure: bool = False) -> bool:
    """Link dst -> src (True) or copy it (False; also when links are not allowed here).

    pure: copy the Python sources only (no compiled extension modules) when src has any.
    """
    _remove(dst)
    compiled = pure and src.is_dir() and any(p for pattern in _COMPILED for p in src.rglob(pattern))
    if link and not compiled:
        try:
            dst.symlink_to(src, target_is_directory=src.is_dir())
            return True
        except (OSError, NotImplementedError):
            pass
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", *(_COMPILED if compiled else ()))
    shutil.copytree(src, dst, ignore=ignore) if src.is_dir() else shutil.copy2(src, dst)
    return False


def python_admits(requires_python: str, version: tuple) -> bool:
    """Whether a Requires-Python specifier ("">=3.9", ">=3.8,<4", "!=3.0.*") admits `version` (major, minor)."""
    have = tuple(version) + (0,) * (3 - len(version))
    for clause in filter(None, (c.strip() for c in (requires_python or "").split(","))):
        m = re.match(r"^(~=|==|!=|<=|>=|<|>)\s*([0-9][0-9.]*)(\.\*)?$", clause)
        if m is None:
            continue  # not a form we know: do not refuse on it
        op, number, wildcard = m.group(1), tuple(int(x) for x in m.group(2).split(".")), bool(m.group(3))
        if wildcard or op in ("==", "!=") and len(number) < 3:
            same = have[:len(number)] == number
            if (op == "==") != same:
                return False
            continue
        want = number + (0,) * (3 - len(number))
        ok = {"<": have < want, "<=": have <= want, ">": have > want, ">=": have >= want, "==": have == want,
              "!=": have != want, "~=": have >= want and have[:len(number) - 1] == number[:-1]}[op]
        if not ok:
            return False
    return True


def host_dependency(module: str, dist: str, requirement: str) -> Path:
    """The folder of a dependency Nuke's Python gets from this environment, checked to run on Nuke 14's Python."""
    oldest = ".".join(map(str, HOST_OLDEST_PYTHON))
    try:
        meta = importlib.metadata.metadata(dist)
        folder = _package_dir(module)
    except (importlib.metadata.PackageNotFoundError, ImportError):
        raise InputError(f"{dist} is not installed in this environment ({sys.executable}), and Nuke's Python "
                         f"needs it: pip install '{requirement}', then re-run `dvd-vfx install nuke`") from None
    requires = meta.get("Requires-Python") or ""
    if not python_admits(requires, HOST_OLDEST_PYTHON):
        raise InputError(f"{dist} {meta.get('Version')} in this environment requires Python {requires}, but Nuke 14 "
                         f"runs Python {oldest}: pip install '{requirement}' here, then re-run "
                         f"`dvd-vfx install nuke`")
    return folder


def install_nuke(dest=None, *, link: bool = True, engine_python: str | None = None,
                 add_to_init: bool = False) -> Installed:
    dest = Path(os.path.expanduser(os.fspath(dest))) if dest else default_dest()
    folder = dest / FOLDER_NAME
    for module, dist, requirement in HOST_DEPENDENCIES:  # before touching anything
        host_dependency(module, dist, requirement)
    if folder.exists() and not (folder / CONFIG_NAME).exists():
        raise InputError(f"{folder} exists and was not made by `dvd-vfx install nuke`; move it away or pass "
                         f"another folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for entry in ("init.py", "menu.py", "dvd_nuke"):
            _place(SOURCE / entry, folder / entry, link=False)  # small: always real files
        lib = folder / LIB_NAME
        lib.mkdir(exist_ok=True)
        dependencies = {module: host_dependency(module, dist, req) for module, dist, req in HOST_DEPENDENCIES}
        linked = all([_place(_package_dir(name), lib / name, link) for name in LIB_PACKAGES])
        bridged = {}
        for (module, dist, _), origin in zip(HOST_DEPENDENCIES, dependencies.values()):
            how = "linked" if _place(origin, lib / module, link, pure=True) else "copied"
            bridged[module] = f"{importlib.metadata.version(dist)} ({how})"
        python = engine_python or sys.executable
        config = {"engine_python": python, "dvd_vfx_version": __version__, "linked": linked,
                  "host_libraries": bridged}
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
