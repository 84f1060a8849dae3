"""What the queue, the runner and the previewer share: settings, the event bus, one lock and one Engine."""

from __future__ import annotations

import itertools
import logging
import os
import threading
from pathlib import Path

from ..events import EventBus
from ..settings import Settings

log = logging.getLogger("dvd_vfx_ui.controller")

IDLE, RUNNING, PAUSING, CANCELLING = "idle", "running", "pausing", "cancelling"


def one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


class PanelContext:
    """Shared by the controller's parts. ``lock`` guards the rows and the batch state (re-entrant)."""

    def __init__(self, *, settings: Settings | None = None, settings_path: str | os.PathLike | None = None,
                 plugins=(), engine=None):
        self.events = EventBus()
        self.settings_path = settings_path
        self.settings = settings if settings is not None else Settings.load(settings_path)
        self.lock = threading.RLock()
        self._extra_plugins = tuple(plugins)
        self._engine = engine
        self._own_plugins: list[tuple[object, str]] = []  # (plugin, name) registered on every Engine
        self._presets: dict | None = None
        self._versions = itertools.count(1)

    def next_version(self) -> int:
        """A number that grows with every snapshot or progress event: a listener that receives events from
        several threads keeps the newest (a worker's event can arrive after a newer one from the UI thread)."""
        with self.lock:
            return next(self._versions)

    # -- engine ---------------------------------------------------------------------------------
    def add_plugin(self, plugin, name: str) -> None:
        """A plugin of the panel's own (the runner's job hooks), registered on the Engine when it is made."""
        self._own_plugins.append((plugin, name))

    @property
    def engine(self):
        """One Engine (one PluginManager) for the panel; the panel's own plugins are registered on it."""
        with self.lock:
            if self._engine is None:
                from dvd_vfx.engine import Engine

                dirs = [self.settings.plugins_dir] if self.settings.plugins_dir else []
                self._engine = Engine(plugins_dirs=dirs, plugins=self._extra_plugins)
            for plugin, name in self._own_plugins:
                if not self._engine.pm.is_registered(plugin):
                    self._engine.register(plugin, name=name)
            return self._engine

    def forget_engine(self) -> None:
        """Make a new Engine (and read the presets again) when next asked: the plugins folder changed."""
        with self.lock:
            self._engine, self._presets = None, None

    def presets(self, *, reload: bool = False) -> dict:
        """name -> dvd_vfx.presets.Preset (shipped, plugins, user); read once, reload on demand."""
        with self.lock:
            if reload or self._presets is None:
                self._presets = self.engine.presets()
            return self._presets

    # -- settings and messages ------------------------------------------------------------------
    def save_settings(self) -> Path:
        path = self.settings.save(self.settings_path)
        self.events.emit("settings.changed", settings=self.settings.to_dict())
        return path

    def save_settings_quietly(self) -> None:
        """Remember folders as they change; a read-only config dir only costs a warning."""
        try:
            self.settings.save(self.settings_path)
        except OSError as exc:
            log.warning("cannot save panel settings: %s", exc)

    def message(self, level: str, text: str) -> None:
        log.log(logging.WARNING if level == "warning" else logging.INFO, "%s", text)
        self.events.emit("message", level=level, text=text)
