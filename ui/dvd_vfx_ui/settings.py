"""Panel settings in platformdirs' user config dir (``<config>/dvd-vfx/panel.json``). Qt-free.

Settings are the user's machine setup (engine Python, weights, cache, last folders); what a
batch renders (preset, defaults, output pattern) lives in the queue and its JSON file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from dvd_vfx.fsutil import write_atomic

log = logging.getLogger("dvd_vfx_ui.settings")


def default_settings_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("dvd-vfx", appauthor=False)) / "panel.json"


@dataclass
class Settings:
    engine_python: str = ""  # "" = render in this process; else `dvd-vfx render` in that Python
    weights: str = ""  # "" = $DVD_VFX_WEIGHTS, else the user data dir (dvd-vfx weights)
    cache_dir: str = ""  # "" = $DVD_VFX_CACHE_DIR, else the user cache dir
    plugins_dir: str = ""
    use_cache: bool = True
    last_add_folder: str = ""
    last_queue_folder: str = ""
    # what a new batch starts with
    preset: str = "standard"
    output_pattern: str = "{source_dir}/depth/{shot}/"
    window_geometry: str = ""  # hex of QMainWindow.saveGeometry()
    recent_queues: list[str] = field(default_factory=list)  # newest first (File > Open recent)
    batch_defaults: dict = field(default_factory=dict)  # the batch bar's values (mode, near, far, ...) last used
    reopen_last_queue: bool = True  # a launch without paths reopens recent_queues[0]
    font_scale: float = 0.0  # text size factor; 0 = chosen from the screen at launch
    blender: str = ""  # "" = `blender` on PATH (Open in Blender)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "Settings":
        path = Path(path) if path else default_settings_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            log.warning("settings %s unreadable (%s); using defaults", path, exc)
            return cls()
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, path: str | os.PathLike | None = None) -> Path:
        path = Path(path) if path else default_settings_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(path, json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
