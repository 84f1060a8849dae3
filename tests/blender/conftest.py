"""Blender add-on tests. The bpy tests run in a Python that has the `bpy` wheel (see .ci/blender-tests)
and drive the engine out of process in $DVD_VFX_ENGINE_PYTHON (the main venv's python, with torch).
Helpers here import neither bpy nor dvd_vfx: in Blender's venv dvd_vfx comes through the add-on's bridge.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ADDON_SRC = REPO / "plugins" / "blender"


def engine_python() -> str | None:
    """The python that has dvd_vfx and torch: $DVD_VFX_ENGINE_PYTHON, else this one if it has dvd_vfx."""
    env = os.environ.get("DVD_VFX_ENGINE_PYTHON")
    if env:
        return env
    return sys.executable if importlib.util.find_spec("dvd_vfx") else None


def load_addon_utils():
    """plugins/blender/utils as the package `dvd_blender_utils` (no bpy needed)."""
    name = "dvd_blender_utils"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ADDON_SRC / "utils" / "__init__.py",
                                                  submodule_search_locations=[str(ADDON_SRC / "utils")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_engine(code: str, *args: str) -> str:
    proc = subprocess.run([engine_python(), "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="session")
def engine_py() -> str:
    python = engine_python()
    if not python:
        pytest.skip("no engine Python: set DVD_VFX_ENGINE_PYTHON to the main venv's python")
    return python


# A private Blender user folder (extensions, config): Blender reads it when bpy is first imported,
# which is at collection time, so it is set here and removed when the session ends.
BLENDER_HOME = Path(tempfile.mkdtemp(prefix="dvd-blender-home-"))
os.environ["BLENDER_USER_RESOURCES"] = str(BLENDER_HOME)
atexit.register(shutil.rmtree, BLENDER_HOME, True)


@pytest.fixture(scope="session")
def blender_home() -> Path:
    return BLENDER_HOME
