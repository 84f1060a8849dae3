"""Finding the engine's Python (the interpreter where dvd-vfx and torch are installed).

Blender's Python has no torch and imports nothing of dvd_vfx: the add-on runs
``python -m dvd_vfx.cli render ... --json-progress`` in the engine's own interpreter and reads its
JSON-lines events with its own code (utils/job.py). An extension must be self-contained, so
nothing of the engine's site-packages ever goes on Blender's sys.path.
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
