"""The shot queue: its rows and their statuses, what each row renders with (preset, batch values,
per-shot overrides, output folder), probing new rows, and queue files (save / load)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from dvd_vfx.errors import DvdError, InputError
from dvd_vfx.fsutil import write_atomic

from .. import shots as S
from .context import PanelContext, log, one_line


class ShotQueue:
    """The rows, in order. Read and change them under ``ctx.lock``; events carry copies (snapshots)."""

    def __init__(self, ctx: PanelContext):
        self.ctx = ctx
        self.preset = ctx.settings.preset
        self.defaults: dict = {}  # batch-wide values of preset keys (dvd_vfx.presets.KEYS)
        self.output_pattern = ctx.settings.output_pattern or S.DEFAULT_OUTPUT_PATTERN
        self.queue_path: str | None = None
        self._shots: list[S.Shot] = []
        self._probe_threads: list[threading.Thread] = []

    # -- rows -----------------------------------------------------------------------------------
    def rows(self) -> list[S.Shot]:
        """The rows in order: a new list of the same Shot objects (the runner changes them under ``ctx.lock``)."""
        with self.ctx.lock:
            return list(self._shots)

    def get(self, shot_id: str) -> S.Shot:
        """The row itself (KeyError if it is gone); the caller holds ``ctx.lock``."""
        for s in self._shots:
            if s.id == shot_id:
                return s
        raise KeyError(shot_id)

    def shots(self) -> list[dict]:
        with self.ctx.lock:
            return [self.snapshot(s) for s in self._shots]

    def shot(self, shot_id: str) -> dict:
        with self.ctx.lock:
            return self.snapshot(self.get(shot_id))

    def snapshot(self, shot: S.Shot) -> dict:
        """The shot as widgets see it, with the values it renders with ("values", "preset")."""
        data = shot.snapshot()
        try:
            data["values"], data["preset"] = self.effective_values(shot)
        except DvdError as exc:
            data["values"], data["preset"] = {}, f"? ({one_line(exc, 60)})"
        return data

    def add_sources(self, paths, *, overrides: dict | None = None, probe_async: bool = True) -> list[str]:
        """Add movies, sequences and folders (one row per shot); probing runs off the calling thread."""
        sources, skipped = S.expand_sources(paths)
        added = []
        with self.ctx.lock:
            known = {s.source for s in self._shots}
            for source in sources:
                if source in known:
                    continue
                shot = S.Shot(source=source, overrides=dict(overrides or {}), probing=True)
                self._shots.append(shot)
                added.append(shot)
        for item in skipped:
            self.ctx.message("warning", f"skipped {item}")
        if added:
            self.emit_queue()
            first = Path(sources[0])
            self.ctx.settings.last_add_folder = str(first.parent if not first.is_dir() else first)
            self.ctx.save_settings_quietly()
            self.probe([s.id for s in added], probe_async)
        return [s.id for s in added]

    def remove(self, shot_ids) -> None:
        """Drop rows (no event: the caller emits "queue.changed" once it is done)."""
        ids = set(shot_ids)
        with self.ctx.lock:
            self._shots = [s for s in self._shots if s.id not in ids]

    def move(self, shot_id: str, offset: int) -> None:
        with self.ctx.lock:
            i = next(k for k, s in enumerate(self._shots) if s.id == shot_id)
            j = max(0, min(len(self._shots) - 1, i + offset))
            self._shots.insert(j, self._shots.pop(i))
        self.emit_queue()

    def requeue_failed(self) -> list[str]:
        """Failed (and cancelled) rows back to queued (probed again if they never were)."""
        with self.ctx.lock:
            ids = []
            for shot in self._shots:
                if shot.status in (S.FAILED, S.CANCELLED):
                    shot.status, shot.error, shot.fraction, shot.stage = S.QUEUED, "", 0.0, ""
                    ids.append(shot.id)
                    if shot.info is None:
                        shot.probing = True
        for shot_id in ids:
            if self.shot(shot_id)["probing"]:
                self.probe([shot_id], probe_async=False)
            else:
                self.emit_shot(shot_id)
        return ids

    # -- probing --------------------------------------------------------------------------------
    def probe(self, ids: list[str], probe_async: bool) -> None:
        if not probe_async:
            for shot_id in ids:
                self._probe_one(shot_id)
            return
        t = threading.Thread(target=lambda: [self._probe_one(i) for i in ids], name="dvd-vfx-panel-probe",
                             daemon=True)
        self._probe_threads = [p for p in self._probe_threads if p.is_alive()] + [t]
        t.start()

    def wait_probed(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        for t in list(self._probe_threads):
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._probe_threads)

    def _probe_one(self, shot_id: str) -> None:
        from dvd_vfx.footage import open_footage

        with self.ctx.lock:
            try:
                shot = self.get(shot_id)
            except KeyError:
                return
            source = shot.source
        info, error = None, ""
        try:
            fi = open_footage(source).info
            info = S.ShotInfo(kind=fi.kind, first_frame=fi.first_frame, last_frame=fi.last_frame,
                              frame_count=fi.frame_count, width=fi.width, height=fi.height, fps=str(fi.fps),
                              path=str(fi.path), describe=fi.describe())
        except DvdError as exc:
            error = one_line(exc)
        except Exception as exc:  # a reader bug must not kill the prober
            error = one_line(f"cannot read {source}: {type(exc).__name__}: {exc}")
        with self.ctx.lock:
            try:
                shot = self.get(shot_id)
            except KeyError:
                return
            shot.probing = False
            shot.info = info
            if error:
                shot.status, shot.error = S.FAILED, error
                shot.log.append(f"probe failed: {error}")
            elif shot.status == S.QUEUED and self.is_cached(shot):
                shot.status = S.CACHED
            self.refresh_out_dir(shot)
        self.emit_shot(shot_id)

    def is_cached(self, shot: S.Shot) -> bool:
        """Does the cache hold every window of this shot with the settings it would render with?"""
        settings = self.ctx.settings
        if not settings.use_cache or shot.info is None:
            return False
        try:
            from dvd_vfx.cache import ShotCache
            from dvd_vfx.windows import working_size

            values, _ = self.effective_values(shot)
            work = list(working_size(shot.info.width, shot.info.height, values["resolution"]))
            for entry in ShotCache(settings.cache_dir or None).entries():
                m = entry.manifest
                if not entry.complete:
                    continue
                same_source = m.get("source_arg") == shot.source or \
                    os.path.realpath(str((m.get("source") or {}).get("path", ""))) == os.path.realpath(shot.info.path)
                params = m.get("params") or {}
                if same_source and params.get("window") == values["window"] and \
                        params.get("overlap") == values["overlap"] and params.get("working_size") == work and \
                        (m.get("identity") or {}).get("predictor", values["predictor"]) == values["predictor"]:
                    return True
        except Exception as exc:  # the badge is a hint; never fail the queue over it
            log.debug("cache check for %s failed: %s", shot.source, exc)
        return False

    # -- what a shot renders with ---------------------------------------------------------------
    def set_batch_defaults(self, *, preset: str | None = None, output_pattern: str | None = None,
                           **values) -> None:
        """Batch-wide settings: preset, output pattern and preset keys (None removes a key)."""
        from dvd_vfx import presets as P

        settings = self.ctx.settings
        if preset is not None:
            if preset not in self.ctx.presets():
                raise InputError(f"unknown preset {preset!r}; available: {', '.join(sorted(self.ctx.presets()))}")
            self.preset = preset
            settings.preset = preset
        if output_pattern is not None:
            probe = S.Shot(source="/x/y.mov")
            S.output_dir(output_pattern, probe)  # validates the fields
            self.output_pattern = output_pattern
            settings.output_pattern = output_pattern
        keep = {k: v for k, v in values.items() if v is not None}
        P.validate(keep, "batch settings")
        self.defaults.update(keep)
        for k in [k for k, v in values.items() if v is None]:
            self.defaults.pop(k, None)
        self.refresh_all()

    def set_overrides(self, shot_ids, **values) -> None:
        """Per-shot overrides: preset keys, "preset", "output" (a folder), "shot" (name); None removes one."""
        from dvd_vfx import presets as P

        unknown = [k for k in values if k not in P.KEYS and k not in S.EXTRA_OVERRIDES]
        if unknown:
            raise InputError(f"cannot override {unknown[0]!r}; use one of {', '.join([*S.EXTRA_OVERRIDES, *P.KEYS])}")
        keep = {k: v for k, v in values.items() if v is not None and v != ""}
        P.validate({k: v for k, v in keep.items() if k in P.KEYS}, "shot override")
        if "preset" in keep and keep["preset"] not in self.ctx.presets():
            raise InputError(f"unknown preset {keep['preset']!r}; available: {', '.join(sorted(self.ctx.presets()))}")
        ids = list(shot_ids)
        with self.ctx.lock:
            for shot_id in ids:
                shot = self.get(shot_id)
                shot.overrides.update(keep)
                for k in [k for k in values if k not in keep]:
                    shot.overrides.pop(k, None)
                if shot.status == S.CACHED:
                    shot.status = S.QUEUED
                if shot.status == S.QUEUED and self.is_cached(shot):
                    shot.status = S.CACHED
                self.refresh_out_dir(shot)
        for shot_id in ids:
            self.emit_shot(shot_id)

    def clear_overrides(self, shot_ids) -> None:
        with self.ctx.lock:
            for shot_id in shot_ids:
                self.get(shot_id).overrides.clear()
        self.set_overrides(shot_ids)

    def effective_values(self, shot: S.Shot) -> tuple[dict, str]:
        """(every preset key -> value, preset name): defaults < preset < batch < shot overrides."""
        from dvd_vfx import presets as P

        name = shot.overrides.get("preset") or self.preset
        available = self.ctx.presets()
        if name not in available:
            raise InputError(f"unknown preset {name!r}; available: {', '.join(sorted(available))}")
        explicit = {**self.defaults, **{k: v for k, v in shot.overrides.items() if k in P.KEYS}}
        return P.merge(available[name], explicit), name

    def refresh_out_dir(self, shot: S.Shot) -> None:
        try:
            _, preset = self.effective_values(shot)
            shot.out_dir = S.output_dir(self.output_pattern, shot, preset)
        except DvdError as exc:
            shot.out_dir = ""
            if shot.status in (S.QUEUED, S.CACHED):
                shot.error = one_line(exc)

    def refresh_all(self) -> None:
        """Settings changed: every waiting row's status (cached or not) and output folder again."""
        with self.ctx.lock:
            for shot in self._shots:
                if shot.status == S.CACHED:
                    shot.status = S.QUEUED
                if shot.status == S.QUEUED:
                    shot.error = ""
                    if self.is_cached(shot):
                        shot.status = S.CACHED
                self.refresh_out_dir(shot)
        self.emit_queue()

    # -- queue files ----------------------------------------------------------------------------
    def save(self, path) -> Path:
        path = Path(path)
        with self.ctx.lock:
            text = S.queue_to_json(self._shots, preset=self.preset, defaults=dict(self.defaults),
                                   output_pattern=self.output_pattern)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
        self.queue_path = str(path)
        self._remember(path)
        self.ctx.message("info", f"queue saved to {path}")
        return path

    def read(self, path) -> dict:
        """A saved queue, checked (its preset exists, its defaults are valid); the rows are untouched."""
        data = S.read_queue(path)
        if data["preset"] not in self.ctx.presets():
            raise InputError(f"{path}: unknown preset {data['preset']!r}; "
                             f"available: {', '.join(sorted(self.ctx.presets()))}")
        from dvd_vfx import presets as P

        P.validate(data["defaults"], f"{path}: defaults")
        return data

    def replace(self, data: dict, path, *, probe_async: bool = True) -> list[str]:
        """Replace the rows with a queue from :meth:`read` (rows start queued; the cache marks what is done)."""
        with self.ctx.lock:
            self._shots = []
            self.preset, self.defaults, self.output_pattern = data["preset"], data["defaults"], data["output_pattern"]
            for shot in data["shots"]:
                shot.probing = True
                self._shots.append(shot)
        self.queue_path = str(path)
        self._remember(Path(path))
        self.emit_queue()
        ids = [s.id for s in data["shots"]]
        self.probe(ids, probe_async)
        return ids

    def _remember(self, path: Path) -> None:
        settings = self.ctx.settings
        path = str(Path(path).resolve())
        settings.last_queue_folder = str(Path(path).parent)
        settings.recent_queues = [path] + [p for p in settings.recent_queues if p != path][:7]
        self.ctx.save_settings_quietly()

    # -- events ---------------------------------------------------------------------------------
    def emit_shot(self, shot_id: str) -> None:
        try:
            snapshot = self.shot(shot_id)
        except KeyError:
            return
        self.ctx.events.emit("shot.changed", shot=snapshot)

    def emit_queue(self) -> None:
        self.ctx.events.emit("queue.changed", shots=self.shots())
