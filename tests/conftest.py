import os
import shutil
from pathlib import Path

import pytest

# Tests never touch the user's real cache/config/data dirs.
os.environ.setdefault("XDG_CACHE_HOME", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "xdg-cache"))
os.environ.setdefault("XDG_CONFIG_HOME", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "xdg-config"))


@pytest.fixture(scope="session")
def tiny_weights_master(tmp_path_factory) -> Path:
    """A tiny DVD release in the official formats (written once per session)."""
    from dvd_vfx.model.tiny import write_tiny_weights

    folder = tmp_path_factory.mktemp("tiny-weights")
    write_tiny_weights(folder, seed=0)
    return folder


@pytest.fixture
def tiny_weights(tiny_weights_master, tmp_path) -> Path:
    """A private copy of the tiny release that a test may damage."""
    dst = tmp_path / "weights"
    shutil.copytree(tiny_weights_master, dst)
    return dst
