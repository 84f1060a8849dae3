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
        # batch-wide values of preset keys (dvd_vfx.presets.KEYS) and render options (shots.OPTION_KEYS),
        # remembered across launches (Settings.batch_defaults)
        self.defaults: dict = self._remembered_defaults()
        self.output_pattern = ctx.settings.output_pattern or S.DEFAULT_OUTPUT_PATTERN
        self.queue_path: str | None = None
        self._shots: list[S.Shot] = []
        self._probe_threads: list[threading.Thread] = []
        self._removed: list[list[tuple[int, S.Shot]]] = []  # undo stack of removals: (index, row)

    def _remembered_defaults(self) -> dict:
        from dvd_vfx import presets as P

        saved = dict(self.ctx.settings.batch_defaults or {})
        try:
            return {**P.validate({k: v for k, v in saved.items() if k in P.KEYS}, "remembered batch values"),
                    **S.validate_options(saved, "remembered batch values")}
        except DvdError as exc:  # an old or hand-edited settings file: start from the preset
            log.warning("%s; starting from the preset", exc)
            return {}

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
        data["version"] = self.ctx.next_version()
        try:
            data["values"], data["preset"] = self.effective_values(shot)
        except DvdError as exc:
            data["values"], data["preset"] = {}, f"? ({one_line(exc, 60)})"
        return data

    def add_sources(self, paths, *, overrides: dict | None = None, probe_async: bool = True) -> list[str]:
        """Add movies, sequences and folders (one row per shot); probing runs off the calling thread."""
        sources, skipped = S.expand_sources(paths)
        added = []
        duplicates = []
        with self.ctx.lock:
            known = {s.source for s in self._shots}
            for source in sources:
                if source in known:
                    duplicates.append(os.path.basename(source))
                    continue
                known.add(source)
                shot = S.Shot(source=source, overrides=dict(overrides or {}), probing=True)
                self._shots.append(shot)
                added.append(shot)
        for item in skipped:
            self.ctx.message("warning", f"skipped {item}")
        self._warn_duplicates(duplicates)
        if added:
            self.emit_queue()
            first = Path(sources[0])
            self.ctx.settings.last_add_folder = str(first.parent if not first.is_dir() else first)
            self.ctx.save_settings_quietly()
            self.probe([s.id for s in added], probe_async)
        return [s.id for s in added]

    def add_shots(self, specs, *, probe_async: bool = True) -> list[str]:
        """Rows from dvd_vfx.batch.ShotSpec (an edit's clips, a shot list's rows): each with its source, its
        frames (handles included) and its name; a shot the batch could not place (`error`) is reported, not
        added. Two clips of one movie are two rows; the same clip twice is added once."""
        added, duplicates, failed = [], [], []
        with self.ctx.lock:
            known = {(s.source, s.overrides.get("frames"), s.overrides.get("shot")) for s in self._shots}
            for spec in specs:
                if spec.error:
                    failed.append(spec.error)
                    continue
                overrides = {k: v for k, v in spec.overrides.items() if k != "output_pattern"}
                overrides["shot"] = spec.shot
                if spec.frames is not None:
                    overrides["frames"] = f"{spec.frames[0]}-{spec.frames[1]}"
                key = (spec.source, overrides.get("frames"), spec.shot)
                if key in known:
                    duplicates.append(spec.shot)
                    continue
                known.add(key)
                shot = S.Shot(source=spec.source, overrides=overrides, probing=True)
                self._shots.append(shot)
                added.append(shot)
        for reason in failed:
            self.ctx.message("warning", f"not added: {reason}")
        self._warn_duplicates(duplicates)
        if added:
            self.emit_queue()
            self.probe([s.id for s in added], probe_async)
        return [s.id for s in added]

    def _warn_duplicates(self, names: list[str]) -> None:
        """One warning naming (up to five of) the rows that were already queued and so not added again."""
        if names:
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            self.ctx.message("warning", f"already in the queue, not added again: {', '.join(names[:5])}{more}")

    def remove(self, shot_ids) -> None:
        """Drop rows (no event: the caller emits "queue.changed" once it is done); undo_remove() brings them back."""
        ids = set(shot_ids)
        with self.ctx.lock:
            gone = [(i, s) for i, s in enumerate(self._shots) if s.id in ids]
            if gone:
                self._removed.append(gone)
                del self._removed[:-20]
            self._shots = [s for s in self._shots if s.id not in ids]

    def can_undo_remove(self) -> bool:
        return bool(self._removed)

    def undo_remove(self) -> list[str]:
        """The last removal back, at the rows' old places (unless the same source was added again)."""
        with self.ctx.lock:
            if not self._removed:
                return []
            known = {s.source for s in self._shots}
            back = [(i, s) for i, s in self._removed.pop() if s.source not in known]
            for index, shot in back:
                self._shots.insert(min(index, len(self._shots)), shot)
        self.emit_queue()
        return [s.id for _, s in back]

    def move_to(self, shot_ids, index: int) -> None:
        """Move rows (in their order) so the first lands at `index` (drag and drop reordering)."""
        ids = list(shot_ids)
        with self.ctx.lock:
            moving = [s for s in self._shots if s.id in ids]
            before = sum(1 for s in self._shots[:max(0, index)] if s.id in ids)
            rest = [s for s in self._shots if s.id not in ids]
            at = max(0, min(len(rest), index - before))
            self._shots = rest[:at] + moving + rest[at:]
        self.emit_queue()

    def requeue(self, shot_ids) -> list[str]:
        """Rows back to queued (cached when the cache holds their windows) for Re-render; not the running one."""
        ids = []
        with self.ctx.lock:
            for shot in self._shots:
                if shot.id in shot_ids and shot.status in (S.DONE, S.OUTDATED, S.FAILED, S.CANCELLED, S.QUEUED,
                                                           S.CACHED) and not shot.probing and shot.info is not None:
                    shot.status, shot.error, shot.fraction, shot.stage = S.QUEUED, "", 0.0, ""
                    if self.is_cached(shot):
                        shot.status = S.CACHED
                    ids.append(shot.id)
        for shot_id in ids:
            self.emit_shot(shot_id)
        return ids

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
                if shot.status in (S.FAILED, S.CANCELLED) and not shot.output_problem:
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
            try:
                values, _ = self.effective_values(shot)
            except DvdError:
                values = dict(S.OPTION_DEFAULTS)
        info, error, thumbnail = None, "", None
        try:
            footage = open_footage(source, start_frame=values.get("start_frame"),
                                   hold_missing=bool(values.get("hold_missing")))
            fi = footage.info
            info = S.ShotInfo(kind=fi.kind, first_frame=fi.first_frame, last_frame=fi.last_frame,
                              frame_count=fi.frame_count, width=fi.width, height=fi.height, fps=str(fi.fps),
                              path=str(fi.path), describe=fi.describe())
            thumbnail = self._thumbnail(footage, fi)
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
            shot.thumbnail = thumbnail
            if error:
                shot.status, shot.error = S.FAILED, error
                shot.log.append(f"probe failed: {error}")
            elif shot.status == S.FAILED and not shot.output_problem:
                shot.status, shot.error = S.QUEUED, ""
            self.refresh_out_dir(shot)
            self.refresh_state(shot)
        self.emit_shot(shot_id)

    @staticmethod
    def _thumbnail(footage, fi, width: int = 96):
        """uint8 [h,w,3] of the first frame for the row; None when it cannot be read (the render will say why)."""
        try:
            import numpy as np

            height = max(2, round(fi.height * width / max(1, fi.width)) // 2 * 2)
            frame = footage.read_frame(fi.first_frame, size=(width, height))
            return (np.clip(frame[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8)
        except Exception as exc:
            log.debug("thumbnail of %s: %s", fi.path, exc)
            return None

    def refresh_state(self, shot: S.Shot) -> None:
        """A waiting or finished row's status from the cache and the pass on disk (caller holds ctx.lock):
        queued | cached (every window in the cache) | done (the pass on disk has the row's settings) |
        outdated (a pass is on disk with other settings: Re-render)."""
        from .on_disk import differences, find_pass

        if shot.probing or shot.info is None or shot.status not in (S.QUEUED, S.CACHED, S.DONE, S.OUTDATED):
            return
        try:
            values, _ = self.effective_values(shot)
        except DvdError:
            return
        shot.on_disk = find_pass(shot.out_dir, shot.shot_name)
        if shot.on_disk:
            shot.pattern = shot.on_disk["pattern"]
            first = S.parse_frames(values["frames"])[0] if values.get("frames") else shot.info.first_frame
            shot.differences = differences(shot.on_disk, values, first_frame=first)
            shot.status = S.OUTDATED if shot.differences else S.DONE
            if shot.status == S.DONE:
                shot.fraction = 1.0
            return
        shot.differences = []
        if shot.status in (S.DONE, S.OUTDATED):  # the pass was deleted or the row points elsewhere now
            shot.status, shot.pattern = S.QUEUED, ""
        if shot.status in (S.QUEUED, S.CACHED):
            shot.status = S.CACHED if self.is_cached(shot) else S.QUEUED

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
                        params.get("colorspace", "auto") == values["colorspace"] and \
                        params.get("ocio") == values["ocio_colorspace"] and \
                        bool(params.get("hold_missing")) == bool(values["hold_missing"]) and \
                        (m.get("identity") or {}).get("predictor", values["predictor"]) == values["predictor"]:
                    return True
        except Exception as exc:  # the badge is a hint; never fail the queue over it
            log.debug("cache check for %s failed: %s", shot.source, exc)
        return False

    # -- what a shot renders with ---------------------------------------------------------------
    def set_batch_defaults(self, *, preset: str | None = None, output_pattern: str | None = None,
                           **values) -> None:
        """Batch-wide settings: preset, output pattern, preset keys and render options (None removes a key).

        An output pattern without fields is checked when it is set (the folder must be writable)."""
        from dvd_vfx import presets as P

        settings = self.ctx.settings
        unknown = [k for k in values if k not in P.KEYS and k not in S.OPTION_KEYS]
        if unknown:
            raise InputError(f"batch settings: unknown key {unknown[0]!r}; known keys: "
                             f"{', '.join([*P.KEYS, *S.OPTION_KEYS])}")
        keep = {k: v for k, v in values.items() if v is not None and k in P.KEYS}
        P.validate(keep, "batch settings")
        keep.update(S.validate_options(values, "batch settings"))
        if preset is not None:
            if preset not in self.ctx.presets():
                raise InputError(f"unknown preset {preset!r}; available: {', '.join(sorted(self.ctx.presets()))}")
        if output_pattern is not None:
            probe = S.Shot(source="/x/y.mov")
            S.output_dir(output_pattern, probe)  # validates the fields
            if "{" not in output_pattern:
                problem = S.writable_folder_problem(output_pattern)
                if problem:
                    raise InputError(problem)
        if preset is not None:
            self.preset = preset
            settings.preset = preset
        if output_pattern is not None:
            self.output_pattern = output_pattern
            settings.output_pattern = output_pattern
        self.defaults.update(keep)
        for k in [k for k, v in values.items() if v is None]:
            self.defaults.pop(k, None)
        settings.batch_defaults = dict(self.defaults)
        self.ctx.save_settings_quietly()
        reprobe = bool({"start_frame", "hold_missing"} & set(values))
        self.refresh_all()
        if reprobe:
            self._reprobe([s.id for s in self.rows()])

    def set_overrides(self, shot_ids, **values) -> None:
        """Per-shot overrides: preset keys, render options (shots.OPTION_KEYS), "preset", "output" (a folder),
        "shot" (name); None removes one."""
        from dvd_vfx import presets as P

        unknown = [k for k in values if k not in P.KEYS and k not in S.EXTRA_OVERRIDES]
        if unknown:
            raise InputError(f"cannot override {unknown[0]!r}; use one of {', '.join([*S.EXTRA_OVERRIDES, *P.KEYS])}")
        keep = {k: v for k, v in values.items() if v is not None and v != ""}
        P.validate({k: v for k, v in keep.items() if k in P.KEYS}, "shot override")
        keep.update(S.validate_options(keep, "shot override"))
        if "preset" in keep and keep["preset"] not in self.ctx.presets():
            raise InputError(f"unknown preset {keep['preset']!r}; available: {', '.join(sorted(self.ctx.presets()))}")
        if "output" in keep:
            keep["output"] = os.path.abspath(os.path.expanduser(keep["output"]))
            problem = S.writable_folder_problem(keep["output"])
            if problem:
                raise InputError(problem)
        ids = list(shot_ids)
        reprobe = []
        with self.ctx.lock:
            for shot_id in ids:
                shot = self.get(shot_id)
                before = (shot.overrides.get("start_frame"), shot.overrides.get("hold_missing"))
                shot.overrides.update(keep)
                for k in [k for k in values if k not in keep]:
                    shot.overrides.pop(k, None)
                if before != (shot.overrides.get("start_frame"), shot.overrides.get("hold_missing")):
                    reprobe.append(shot_id)
                self.refresh_out_dir(shot)
                self.refresh_state(shot)
        for shot_id in ids:
            self.emit_shot(shot_id)
        self._reprobe(reprobe)

    def _reprobe(self, ids) -> None:
        """Probe rows again (their start frame or hold-missing changed what the footage reads as)."""
        with self.ctx.lock:
            ids = [i for i in ids if any(s.id == i and s.status != S.RENDERING for s in self._shots)]
            for shot in self._shots:
                if shot.id in ids:
                    shot.probing = True
        if ids:
            self.probe(ids, probe_async=True)

    def clear_overrides(self, shot_ids) -> None:
        with self.ctx.lock:
            for shot_id in shot_ids:
                self.get(shot_id).overrides.clear()
        self.set_overrides(shot_ids)

    def effective_values(self, shot: S.Shot) -> tuple[dict, str]:
        """(every preset key and render option -> value, preset name):
        defaults < preset < batch < shot overrides."""
        from dvd_vfx import presets as P

        name = shot.overrides.get("preset") or self.preset
        available = self.ctx.presets()
        if name not in available:
            raise InputError(f"unknown preset {name!r}; available: {', '.join(sorted(available))}")
        explicit = {**self.defaults, **{k: v for k, v in shot.overrides.items() if k in P.KEYS}}
        values = P.merge(available[name], {k: v for k, v in explicit.items() if k in P.KEYS})
        values.update(S.OPTION_DEFAULTS)
        values.update({k: v for k, v in {**self.defaults, **shot.overrides}.items() if k in S.OPTION_KEYS})
        return values, name

    def refresh_out_dir(self, shot: S.Shot) -> None:
        try:
            _, preset = self.effective_values(shot)
            shot.out_dir = S.output_dir(self.output_pattern, shot, preset)
        except DvdError as exc:
            shot.out_dir = ""
            if shot.status in (S.QUEUED, S.CACHED):
                shot.error = one_line(exc)
            return
        problem = S.writable_folder_problem(shot.out_dir) if shot.status != S.RENDERING else ""
        if problem:  # caught now, not when the batch reaches the row
            if shot.status in (S.QUEUED, S.CACHED, S.OUTDATED, S.FAILED, S.CANCELLED):
                shot.status, shot.error, shot.output_problem = S.FAILED, problem, True
        elif shot.output_problem:
            shot.status, shot.error, shot.output_problem = S.QUEUED, "", False

    def refresh_all(self) -> None:
        """Settings changed: every waiting or finished row's status (cached, done, outdated) and output folder."""
        with self.ctx.lock:
            for shot in self._shots:
                if shot.status in (S.QUEUED, S.CACHED):
                    shot.error = ""
                self.refresh_out_dir(shot)
                self.refresh_state(shot)
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

        defaults = data["defaults"]
        unknown = [k for k in defaults if k not in P.KEYS and k not in S.OPTION_KEYS]
        if unknown:
            raise InputError(f"{path}: defaults: unknown key {unknown[0]!r}; known keys: "
                             f"{', '.join([*P.KEYS, *S.OPTION_KEYS])}")
        data["defaults"] = {**P.validate({k: v for k, v in defaults.items() if k in P.KEYS}, f"{path}: defaults"),
                            **S.validate_options(defaults, f"{path}: defaults")}
        for i, shot in enumerate(data["shots"]):
            where = f"{path}: shot {i + 1} ({shot.source})"
            P.validate({k: v for k, v in shot.overrides.items() if k in P.KEYS}, where)
            shot.overrides.update(S.validate_options(shot.overrides, where))
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
