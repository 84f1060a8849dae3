"""What `dvd-vfx install nuke` recorded next to the NUKE_PATH folder (the engine's Python).

The folder's ``dvd_nuke/__init__.py`` calls :func:`set_home` with its own folder; tests and
scripts may call it too. Standard library only.
"""

from __future__ import annotations

import json
import os

CONFIG_NAME = "dvd_nuke_config.json"

_home: str | None = None


def set_home(folder: str | None) -> None:
    global _home
    _home = folder


def load(folder: str | None = None) -> dict:
    folder = folder or _home
    if not folder:
        return {}
    try:
        with open(os.path.join(folder, CONFIG_NAME), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def engine_python() -> str | None:
    value = load().get("engine_python")
    return value if isinstance(value, str) and value else None
