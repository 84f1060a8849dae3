"""Finding the engine's Python, and making dvd_vfx's host-side modules importable in Blender.

Blender's Python has no torch, so the add-on runs `dvd-vfx render --json-progress` in the
engine's own interpreter (dvd_vfx.jobs.SubprocessJob). The add-on itself needs only the
torch-free part of dvd_vfx (jobs, plugins, hookspecs) plus pluggy and platformdirs. When those
are not installed in Blender's Python, ``bridge_dir`` exposes exactly those three packages of the
engine's environment through a folder of links, appended to sys.path: nothing else from the
engine's site-packages (numpy 2, torch) can shadow Blender's own modules.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ENGINE_PYTHON_ENV = "DVD_VFX_ENGINE_PYTHON"
ENGINE_FILE = "engine.json"  # written by `dvd-vfx install blender` next to the add-on
BRIDGED_PACKAGES = ("dvd_vfx", "pluggy", "platformdirs")


def python_of_script(script: str | os.PathLike) -> str | None:
    """The interpreter a console script (`dvd-vfx`) was installed for, from its shebang or folder."""
    script = Path(script)
    if os.name == "nt" or script.suffix.lower() == ".exe":
        candidate = script.parent.parent / "python.exe"
        if not candidate.is_file():
            candidate = script.parent / "python.exe"
        return str(candidate) if candidate.is_file() else None
    try:
        with open(script, "rb") as f:
            first = f.readline(4096).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env" and len(words) > 1:  # #!/usr/bin/env python3
        return shutil.which(words[1])
    if words[0] == "/bin/sh" or words[0].endswith("/sh"):  # pip's long-path trampoline: '''exec' PY "$0"
        return None
    return words[0] if os.path.isfile(words[0]) else None


def find_engine_python(preference: str = "", *, env=None, addon_dir=None, which=shutil.which) -> str | None:
    """Preference > $DVD_VFX_ENGINE_PYTHON > engine.json from `dvd-vfx install blender` > `dvd-vfx` on PATH."""
    env = os.environ if env is None else env
    if preference.strip():
        return preference.strip()
    if env.get(ENGINE_PYTHON_ENV, "").strip():
        return env[ENGINE_PYTHON_ENV].strip()
    if addon_dir is not None:
        recorded = read_engine_file(Path(addon_dir) / ENGINE_FILE)
        if recorded:
            return recorded
    script = which("dvd-vfx")
    return python_of_script(script) if script else None


def read_engine_file(path: Path) -> str | None:
    try:
        python = json.loads(Path(path).read_text(encoding="utf-8")).get("python")
    except (OSError, ValueError, AttributeError):
        return None
    return python if isinstance(python, str) and os.path.isfile(python) else None


_LOCATE = ("import importlib.util, json, os\n"
           "out = {}\n"
           "for name in %r:\n"
           "    spec = importlib.util.find_spec(name)\n"
           "    if spec is not None:\n"
           "        out[name] = os.path.dirname(spec.origin) if spec.submodule_search_locations else spec.origin\n"
           "print(json.dumps(out))\n")


def locate_packages(python: str, names=BRIDGED_PACKAGES, timeout: float = 60) -> dict[str, str]:
    """Where `python` imports each package from (a package folder or a module file)."""
    proc = subprocess.run([python, "-c", _LOCATE % (tuple(names),)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL,
                          cwd=tempfile.gettempdir())  # not Blender's cwd: no accidental source checkout
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise RuntimeError(f"engine Python {python} could not be asked where dvd_vfx is: {reason}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bridge_dir(python: str, folder: str | os.PathLike, names=BRIDGED_PACKAGES) -> Path:
    """A folder holding links to the engine's dvd_vfx, pluggy and platformdirs (copies where links fail)."""
    found = locate_packages(python, names)
    if "dvd_vfx" not in found:
        raise RuntimeError(f"engine Python {python} cannot import dvd_vfx; set the add-on's engine Python to the "
                           f"python of the environment where `pip install dvd-vfx` was run")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, origin in found.items():
        target = folder / os.path.basename(origin)
        if target.is_symlink() or target.exists():
            if target.is_symlink() and os.path.realpath(target) == os.path.realpath(origin):
                continue
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        try:
            target.symlink_to(origin, target_is_directory=os.path.isdir(origin))
        except OSError:  # Windows without the symlink privilege
            if os.path.isdir(origin):
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(origin, target)
    return folder


def ensure_importable(python: str | None, folder: str | os.PathLike) -> None:
    """Make `import dvd_vfx.jobs` work in this (Blender's) Python, bridging from the engine if needed."""
    try:
        import dvd_vfx.jobs  # noqa: F401

        return
    except ImportError:
        pass
    if not python:
        raise RuntimeError("dvd_vfx is not importable in Blender's Python and no engine Python is set; set it in "
                           "the add-on preferences or run `dvd-vfx install blender` from the dvd-vfx environment")
    path = str(bridge_dir(python, folder))
    if path not in sys.path:
        sys.path.append(path)  # last: Blender's own packages win
    for name in [m for m in sys.modules if m == "dvd_vfx" or m.startswith("dvd_vfx.")]:
        del sys.modules[name]
    import dvd_vfx.jobs  # noqa: F401,F811
