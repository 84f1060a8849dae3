"""The panel's brain, without Qt: the shot queue, the batch worker thread, settings and queue files.

Widgets never call the engine. They call :class:`BatchController`'s methods (start,
pause_after_current, cancel_current, retry_failed, add_sources, set_overrides, ...) and subscribe to
its events (events.TOPICS), which arrive on whatever thread emitted them; the Qt layer re-emits them
as a Qt signal so every widget update happens on the UI thread.

BatchController is a facade over the package's parts, which share one :class:`PanelContext`
(settings, event bus, lock, Engine):

  shot_queue.py  ShotQueue: rows and statuses, preset / batch values / per-shot overrides, probing,
                 queue files
  runner.py      BatchRunner: the worker thread that renders the batch (in process or through
                 dvd_vfx.jobs.SubprocessJob), pause / cancel / retry, progress and ETA
  previewer.py   Previewer: plate, depth and defocus / fog images for the preview pane

This package must not import Qt (tests check it in a fresh interpreter).
"""

from __future__ import annotations

import os
from pathlib import Path

from dvd_vfx.errors import InputError

from .. import shots as S
from ..settings import Settings
from .context import CANCELLING, IDLE, PAUSING, RUNNING, PanelContext, one_line
from .previewer import Previewer
from .runner import BatchRunner
from .shot_queue import ShotQueue

__all__ = ["BatchController", "BatchRunner", "PanelContext", "Previewer", "ShotQueue", "one_line",
           "IDLE", "RUNNING", "PAUSING", "CANCELLING"]


def check_settings(values: dict) -> None:
    """Engine Python, weights, plugins and cache folders as they are entered: InputError naming the path."""
    import subprocess

    python = str(values.get("engine_python") or "").strip()
    if python:
        if not os.path.isfile(python) or not os.access(python, os.X_OK):
            raise InputError(f"engine Python {python}: no such executable; give the python of the environment "
                             "where dvd-vfx is installed, or leave it empty to render in this process")
        try:
            proc = subprocess.run([python, "-c", "import dvd_vfx"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InputError(f"engine Python {python} does not run: {exc}") from None
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise InputError(f"engine Python {python} cannot import dvd_vfx ({tail}); "
                             "pip install dvd-vfx into that environment or pick another Python")
    for key, what in (("plugins_dir", "plugins folder"), ("weights", "weights folder")):
        folder = str(values.get(key) or "").strip()
        if folder and not os.path.isdir(os.path.expanduser(folder)):
            raise InputError(f"{what} {folder} does not exist; pick an existing folder or leave it empty")
    cache = str(values.get("cache_dir") or "").strip()
    if cache:
        problem = S.writable_folder_problem(cache)
        if problem:
            raise InputError(problem.replace("output folder", "cache folder", 1).replace(
                "pick another output folder", "pick another cache folder"))


class BatchController:
    """Queue + runner + previewer behind one object. Thread-safe: state changes under one lock; events
    carry copies (snapshots)."""

    def __init__(self, *, settings: Settings | None = None, settings_path: str | os.PathLike | None = None,
                 plugins=(), engine=None):
        self.ctx = PanelContext(settings=settings, settings_path=settings_path, plugins=plugins, engine=engine)
        self.queue = ShotQueue(self.ctx)
        self.runner = BatchRunner(self.ctx, self.queue)
        self.previewer = Previewer(self.ctx.events, self.queue.shot)

    # -- shared ---------------------------------------------------------------------------------
    @property
    def events(self):
        return self.ctx.events

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def settings_path(self):
        return self.ctx.settings_path

    @property
    def engine(self):
        """One Engine (one PluginManager) for the panel; the runner's hooks are one of its plugins."""
        return self.ctx.engine

    def presets(self, *, reload: bool = False) -> dict:
        """name -> dvd_vfx.presets.Preset (shipped, plugins, user); read once, reload on demand."""
        return self.ctx.presets(reload=reload)

    # -- queue ----------------------------------------------------------------------------------
    @property
    def preset(self) -> str:
        return self.queue.preset

    @property
    def defaults(self) -> dict:
        """Batch-wide values of preset keys (dvd_vfx.presets.KEYS)."""
        return self.queue.defaults

    @property
    def output_pattern(self) -> str:
        return self.queue.output_pattern

    @property
    def queue_path(self) -> str | None:
        return self.queue.queue_path

    def shots(self) -> list[dict]:
        return self.queue.shots()

    def shot(self, shot_id: str) -> dict:
        return self.queue.shot(shot_id)

    def add_sources(self, paths, *, overrides: dict | None = None, probe_async: bool = True) -> list[str]:
        """Add movies, sequences and folders (one row per shot); probing runs off the calling thread.
        A queue file (.json) among them is loaded instead (it replaces the queue), as on the command line."""
        paths = [os.fspath(p) for p in paths]
        queues = [p for p in paths if p.lower().endswith(".json")]
        ids = []
        if queues:
            if len(queues) > 1:
                raise InputError(f"{len(queues)} queue files at once ({', '.join(queues)}); open one queue")
            ids += self.load_queue(queues[0], probe_async=probe_async)
        rest = [p for p in paths if not p.lower().endswith(".json")]
        if rest:
            ids += self.queue.add_sources(rest, overrides=overrides, probe_async=probe_async)
        return ids

    def add_edit(self, path, *, handles: int = 0, rate=None, probe_async: bool = True) -> list[str]:
        """One row per clip of an edit (OpenTimelineIO: .otio, CMX 3600 .edl, FCP 7 .xml) or per row of a
        shot list (.csv; .json lists): its media, its source frames plus `handles` (clamped to the media) and
        its name, as `dvd-vfx batch` renders them. Clips that cannot be placed are reported, not added.
        rate: an EDL's timecode frame rate (`--edit-rate`; None = 24)."""
        from dvd_vfx import batch

        specs = batch.resolved(batch.load_shots(path, handles=handles, rate=rate))
        return self.queue.add_shots(specs, probe_async=probe_async)

    def wait_probed(self, timeout: float = 30.0) -> bool:
        return self.queue.wait_probed(timeout)

    def remove(self, shot_ids) -> None:
        """Remove rows from the queue (and the batch), except the one that renders now."""
        ids = set(shot_ids)
        with self.ctx.lock:
            busy = ids & {self.runner.current_shot}
            self.queue.remove(ids - busy)
            self.runner.forget(ids - busy)
        if busy:
            self.ctx.message("warning", "the shot that is rendering stays in the queue; cancel it first")
        self.queue.emit_queue()

    def move(self, shot_id: str, offset: int) -> None:
        self.queue.move(shot_id, offset)

    def move_to(self, shot_ids, index: int) -> None:
        """Reorder: the rows of `shot_ids` to position `index` (the batch renders in queue order)."""
        self.queue.move_to(shot_ids, index)

    def undo_remove(self) -> list[str]:
        """The last removed rows back at their places."""
        return self.queue.undo_remove()

    def can_undo_remove(self) -> bool:
        return self.queue.can_undo_remove()

    def clear(self) -> None:
        with self.ctx.lock:
            self.remove([s.id for s in self.queue.rows()])

    # -- what a shot renders with ---------------------------------------------------------------
    def set_batch_defaults(self, *, preset: str | None = None, output_pattern: str | None = None,
                           **values) -> None:
        """Batch-wide settings: preset, output pattern and preset keys (None removes a key)."""
        self.queue.set_batch_defaults(preset=preset, output_pattern=output_pattern, **values)

    def set_overrides(self, shot_ids, **values) -> None:
        """Per-shot overrides: preset keys, "preset", "output" (a folder), "shot" (name); None removes one."""
        self.queue.set_overrides(shot_ids, **values)

    def clear_overrides(self, shot_ids) -> None:
        self.queue.clear_overrides(shot_ids)

    def effective_values(self, shot: S.Shot) -> tuple[dict, str]:
        """(every preset key -> value, preset name): defaults < preset < batch < shot overrides."""
        return self.queue.effective_values(shot)

    # -- run controls and progress --------------------------------------------------------------
    @property
    def state(self) -> str:
        return self.runner.state

    def start(self, ids=None) -> bool:
        """A new batch of every queued, cached or outdated row (or those of `ids`); False if there is nothing
        to do. Cancelled and skipped rows wait for resume() or retry_failed()."""
        return self.runner.start(ids)

    def resume(self) -> bool:
        """Go on with a paused or cancelled batch (the cancelled shot first, from its cached windows)."""
        return self.runner.resume()

    @property
    def resumable(self) -> bool:
        return self.runner.resumable

    def pause_after_current(self) -> None:
        self.runner.pause_after_current()

    def cancel_batch(self) -> None:
        """Stop the shot that renders now (its finished windows stay cached) and the batch after it."""
        self.runner.cancel_batch()

    cancel_current = cancel_batch  # the old name

    def skip_current(self) -> str | None:
        """Stop the shot that renders now (cancelled, windows cached) and go on with the next; its id."""
        return self.runner.skip_current()

    def rerender(self, ids=None) -> list[str]:
        """Render again the rows whose settings differ from the pass on disk (or the rows of `ids`): from
        the cache when it holds their windows (no model run). Joins a running batch or starts one."""
        return self.runner.rerender(ids)

    def batch_counts(self) -> dict:
        return self.runner.batch_counts()

    def retry_failed(self, *, start: bool = True) -> list[str]:
        """Failed (and cancelled) shots back to queued; starts the batch if it is idle."""
        return self.runner.retry_failed(start=start)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the batch worker ends (for scripts and tests); True if it did."""
        return self.runner.wait(timeout)

    def shutdown(self, timeout: float = 15.0) -> None:
        """Cancel what runs and wait for it (the cache keeps finished windows)."""
        self.runner.shutdown(timeout)

    def batch_progress(self) -> dict:
        """fraction of the batch (weighted by frames), ETA in seconds (None until it can be told)."""
        return self.runner.batch_progress()

    # -- settings and queue files ---------------------------------------------------------------
    def save_settings(self) -> Path:
        return self.ctx.save_settings()

    def update_settings(self, **values) -> None:
        """Change settings; engine Python, weights and plugins folders are checked first (InputError says why)."""
        settings = self.ctx.settings
        for key in values:
            if not hasattr(settings, key):
                raise InputError(f"unknown setting {key!r}")
        check_settings(values)
        for key, value in values.items():
            setattr(settings, key, value)
        if "plugins_dir" in values:
            with self.ctx.lock:
                self.ctx.forget_engine()
                self.runner.forget_predictors()
        if "weights" in values or "engine_python" in values:
            self.runner.forget_predictors()
        self.save_settings()
        self.queue.refresh_all()

    def save_queue(self, path) -> Path:
        return self.queue.save(path)

    def load_queue(self, path, *, probe_async: bool = True) -> list[str]:
        """Replace the queue with a saved one (rows start queued; the cache marks what is done)."""
        if self.runner.state != IDLE:
            raise InputError("a batch is running; cancel it before loading another queue")
        data = self.queue.read(path)
        self.runner.forget_batch()
        return self.queue.replace(data, path, probe_async=probe_async)

    # -- preview --------------------------------------------------------------------------------
    def request_preview(self, shot_id: str, frame: int | None = None) -> None:
        """Load plate + depth of a frame; answers with "preview.changed"."""
        self.previewer.request_preview(shot_id, frame)

    def request_comp(self, shot_id: str, params: dict) -> None:
        """Defocus + fog of the last previewed frame (dvd_vfx.comp); answers with "preview.comp.changed".

        params: focus_t (0..1, far..near), fstop, fog_t (0..1), fog_colour (r, g, b in 0..1).
        """
        self.previewer.request_comp(shot_id, params)
