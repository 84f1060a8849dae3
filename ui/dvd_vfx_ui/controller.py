"""The panel's brain, without Qt: the shot queue, the batch worker thread, settings and queue files.

Widgets never call the engine. They call the controller's methods (start, pause_after_current,
cancel_current, retry_failed, add_sources, set_overrides, ...) and subscribe to its events
(events.TOPICS), which arrive on whatever thread emitted them; the Qt layer re-emits them as a
Qt signal so every widget update happens on the UI thread.

The batch runs shots one after another on one worker thread, either in this process
(``Engine.render`` with one predictor kept loaded for the whole batch) or, when
``Settings.engine_python`` names another interpreter, as ``dvd-vfx render --json-progress``
through ``dvd_vfx.jobs.SubprocessJob``. Either way the engine reports through the same hooks
(dvd_vfx_job_progress, ...), answered by :class:`_JobHooks`; cancelling is the
``dvd_vfx_should_cancel`` hook plus ``Job.cancel()``, so a cancelled shot keeps its finished
windows in the cache and resumes from them.

This module must not import Qt (tests check it in a fresh interpreter).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from dvd_vfx.errors import Cancelled, DvdError, InputError
from dvd_vfx.hookspecs import hookimpl
from dvd_vfx.jobs import new_job_id

from . import shots as S
from .events import EventBus
from .settings import Settings

log = logging.getLogger("dvd_vfx_ui.controller")

IDLE, RUNNING, PAUSING, CANCELLING = "idle", "running", "pausing", "cancelling"
# share of a shot's progress bar per engine stage (predict counts windows, the others frames)
STAGE_WEIGHTS = {"predict": (0.0, 0.8), "stitch": (0.8, 0.1), "write": (0.9, 0.1)}


def one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


class _JobHooks:
    """The controller's plugin on the Engine: job hooks -> shot state + events."""

    def __init__(self, controller: "BatchController"):
        self.c = controller

    @hookimpl
    def dvd_vfx_job_started(self, job):
        self.c._on_job_started(job)

    @hookimpl
    def dvd_vfx_job_progress(self, job, stage, done, total):
        self.c._on_progress(job.id, stage, done, total)

    @hookimpl
    def dvd_vfx_job_log(self, job, level, message):
        self.c._on_log(job.id, level, message)

    @hookimpl
    def dvd_vfx_job_finished(self, job, result):
        self.c._on_finished(job.id, result)

    @hookimpl
    def dvd_vfx_should_cancel(self, job):
        return True if self.c._cancel_requested(job.id) else None


class BatchController:
    """Queue + worker. Thread-safe: state changes under one lock; events carry copies (snapshots)."""

    def __init__(self, *, settings: Settings | None = None, settings_path: str | os.PathLike | None = None,
                 plugins=(), engine=None):
        self.events = EventBus()
        self.settings_path = settings_path
        self.settings = settings if settings is not None else Settings.load(settings_path)
        self.preset = self.settings.preset
        self.defaults: dict = {}  # batch-wide values of preset keys (dvd_vfx.presets.KEYS)
        self.output_pattern = self.settings.output_pattern or S.DEFAULT_OUTPUT_PATTERN
        self.queue_path: str | None = None
        self._extra_plugins = tuple(plugins)
        self._engine = engine
        self._hooks = _JobHooks(self)
        self._lock = threading.RLock()
        self._shots: list[S.Shot] = []
        self._state = IDLE
        self._worker: threading.Thread | None = None
        self._pause_requested = False
        self._stop_requested = False
        self._cancel_jobs: set[str] = set()
        self._job_shot: dict[str, str] = {}  # job id -> shot id
        self._jobs: dict[str, object] = {}  # job id -> dvd_vfx.jobs.Job (to cancel it)
        self._current_shot: str | None = None
        self._predictors: dict = {}
        self._presets: dict | None = None
        self._batch_ids: list[str] = []
        self._batch_started = 0.0
        self._preview_lock = threading.Condition()
        self._preview_request = None
        self._comp_request = None
        self._last_preview = None
        self._preview_thread: threading.Thread | None = None
        self._probe_threads: list[threading.Thread] = []

    # -- engine ---------------------------------------------------------------------------------
    @property
    def engine(self):
        """One Engine (one PluginManager) for the panel; the controller's hooks are one of its plugins."""
        with self._lock:
            if self._engine is None:
                from dvd_vfx.engine import Engine

                dirs = [self.settings.plugins_dir] if self.settings.plugins_dir else []
                self._engine = Engine(plugins_dirs=dirs, plugins=self._extra_plugins)
            if not self._engine.pm.is_registered(self._hooks):
                self._engine.register(self._hooks, name="dvd_vfx_ui.controller")
            return self._engine

    def presets(self, *, reload: bool = False) -> dict:
        """name -> dvd_vfx.presets.Preset (shipped, plugins, user); read once, reload on demand."""
        with self._lock:
            if reload or self._presets is None:
                self._presets = self.engine.presets()
            return self._presets

    # -- queue ----------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._state

    def shots(self) -> list[dict]:
        with self._lock:
            return [self._snapshot(s) for s in self._shots]

    def shot(self, shot_id: str) -> dict:
        with self._lock:
            return self._snapshot(self._get(shot_id))

    def _snapshot(self, shot: S.Shot) -> dict:
        """The shot as widgets see it, with the values it renders with ("values", "preset")."""
        data = shot.snapshot()
        try:
            data["values"], data["preset"] = self.effective_values(shot)
        except DvdError as exc:
            data["values"], data["preset"] = {}, f"? ({one_line(exc, 60)})"
        return data

    def _get(self, shot_id: str) -> S.Shot:
        for s in self._shots:
            if s.id == shot_id:
                return s
        raise KeyError(shot_id)

    def add_sources(self, paths, *, overrides: dict | None = None, probe_async: bool = True) -> list[str]:
        """Add movies, sequences and folders (one row per shot); probing runs off the calling thread."""
        sources, skipped = S.expand_sources(paths)
        added = []
        with self._lock:
            known = {s.source for s in self._shots}
            for source in sources:
                if source in known:
                    continue
                shot = S.Shot(source=source, overrides=dict(overrides or {}), probing=True)
                self._shots.append(shot)
                added.append(shot)
        for item in skipped:
            self._message("warning", f"skipped {item}")
        if added:
            self._emit_queue()
            first = Path(sources[0])
            self.settings.last_add_folder = str(first.parent if not first.is_dir() else first)
            self._save_settings_quietly()
            self._probe([s.id for s in added], probe_async)
        return [s.id for s in added]

    def _probe(self, ids: list[str], probe_async: bool) -> None:
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

        with self._lock:
            try:
                shot = self._get(shot_id)
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
        with self._lock:
            try:
                shot = self._get(shot_id)
            except KeyError:
                return
            shot.probing = False
            shot.info = info
            if error:
                shot.status, shot.error = S.FAILED, error
                shot.log.append(f"probe failed: {error}")
            elif shot.status == S.QUEUED and self._is_cached(shot):
                shot.status = S.CACHED
            self._refresh_out_dir(shot)
        self._emit_shot(shot_id)

    def _is_cached(self, shot: S.Shot) -> bool:
        """Does the cache hold every window of this shot with the settings it would render with?"""
        if not self.settings.use_cache or shot.info is None:
            return False
        try:
            from dvd_vfx.cache import ShotCache
            from dvd_vfx.windows import working_size

            values, _ = self.effective_values(shot)
            work = list(working_size(shot.info.width, shot.info.height, values["resolution"]))
            for entry in ShotCache(self.settings.cache_dir or None).entries():
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

    def remove(self, shot_ids) -> None:
        ids = set(shot_ids)
        with self._lock:
            busy = ids & {self._current_shot}
            self._shots = [s for s in self._shots if s.id not in ids or s.id in busy]
            self._batch_ids = [i for i in self._batch_ids if i not in ids or i in busy]
        if busy:
            self._message("warning", "the shot that is rendering stays in the queue; cancel it first")
        self._emit_queue()

    def move(self, shot_id: str, offset: int) -> None:
        with self._lock:
            i = next(k for k, s in enumerate(self._shots) if s.id == shot_id)
            j = max(0, min(len(self._shots) - 1, i + offset))
            self._shots.insert(j, self._shots.pop(i))
        self._emit_queue()

    def clear(self) -> None:
        with self._lock:
            self.remove([s.id for s in self._shots])

    # -- what a shot renders with ---------------------------------------------------------------
    def set_batch_defaults(self, *, preset: str | None = None, output_pattern: str | None = None,
                           **values) -> None:
        """Batch-wide settings: preset, output pattern and preset keys (None removes a key)."""
        from dvd_vfx import presets as P

        if preset is not None:
            if preset not in self.presets():
                raise InputError(f"unknown preset {preset!r}; available: {', '.join(sorted(self.presets()))}")
            self.preset = preset
            self.settings.preset = preset
        if output_pattern is not None:
            probe = S.Shot(source="/x/y.mov")
            S.output_dir(output_pattern, probe)  # validates the fields
            self.output_pattern = output_pattern
            self.settings.output_pattern = output_pattern
        keep = {k: v for k, v in values.items() if v is not None}
        P.validate(keep, "batch settings")
        self.defaults.update(keep)
        for k in [k for k, v in values.items() if v is None]:
            self.defaults.pop(k, None)
        self._refresh_all()

    def set_overrides(self, shot_ids, **values) -> None:
        """Per-shot overrides: preset keys, "preset", "output" (a folder), "shot" (name); None removes one."""
        from dvd_vfx import presets as P

        unknown = [k for k in values if k not in P.KEYS and k not in S.EXTRA_OVERRIDES]
        if unknown:
            raise InputError(f"cannot override {unknown[0]!r}; use one of {', '.join([*S.EXTRA_OVERRIDES, *P.KEYS])}")
        keep = {k: v for k, v in values.items() if v is not None and v != ""}
        P.validate({k: v for k, v in keep.items() if k in P.KEYS}, "shot override")
        if "preset" in keep and keep["preset"] not in self.presets():
            raise InputError(f"unknown preset {keep['preset']!r}; available: {', '.join(sorted(self.presets()))}")
        ids = list(shot_ids)
        with self._lock:
            for shot_id in ids:
                shot = self._get(shot_id)
                shot.overrides.update(keep)
                for k in [k for k in values if k not in keep]:
                    shot.overrides.pop(k, None)
                if shot.status == S.CACHED:
                    shot.status = S.QUEUED
                if shot.status == S.QUEUED and self._is_cached(shot):
                    shot.status = S.CACHED
                self._refresh_out_dir(shot)
        for shot_id in ids:
            self._emit_shot(shot_id)

    def clear_overrides(self, shot_ids) -> None:
        with self._lock:
            for shot_id in shot_ids:
                self._get(shot_id).overrides.clear()
        self.set_overrides(shot_ids)

    def effective_values(self, shot: S.Shot) -> tuple[dict, str]:
        """(every preset key -> value, preset name): defaults < preset < batch < shot overrides."""
        from dvd_vfx import presets as P

        name = shot.overrides.get("preset") or self.preset
        available = self.presets()
        if name not in available:
            raise InputError(f"unknown preset {name!r}; available: {', '.join(sorted(available))}")
        explicit = {**self.defaults, **{k: v for k, v in shot.overrides.items() if k in P.KEYS}}
        return P.merge(available[name], explicit), name

    def _refresh_out_dir(self, shot: S.Shot) -> None:
        try:
            _, preset = self.effective_values(shot)
            shot.out_dir = S.output_dir(self.output_pattern, shot, preset)
        except DvdError as exc:
            shot.out_dir = ""
            if shot.status in (S.QUEUED, S.CACHED):
                shot.error = one_line(exc)

    def _refresh_all(self) -> None:
        with self._lock:
            for shot in self._shots:
                if shot.status == S.CACHED:
                    shot.status = S.QUEUED
                if shot.status == S.QUEUED:
                    shot.error = ""
                    if self._is_cached(shot):
                        shot.status = S.CACHED
                self._refresh_out_dir(shot)
        self._emit_queue()

    # -- run controls ---------------------------------------------------------------------------
    def start(self) -> bool:
        """Render every queued, cached or cancelled shot in order; False if there is nothing to do."""
        with self._lock:
            if self._state in (RUNNING, PAUSING) and self._worker is not None and self._worker.is_alive():
                self._pause_requested = self._stop_requested = False
                self._set_state(RUNNING)
                return True
            if self._worker is not None and self._worker.is_alive():
                return False  # still cancelling
            runnable = [s.id for s in self._shots if s.status in S.RUNNABLE and not s.probing]
            if not runnable:
                self._message("info", "nothing to render: add shots, or Retry the failed ones")
                return False
            self._batch_ids = runnable
            self._batch_started = time.monotonic()
            self._pause_requested = self._stop_requested = False
            self._set_state(RUNNING)
            self._worker = threading.Thread(target=self._run_batch, name="dvd-vfx-panel-batch", daemon=True)
            self._worker.start()
        self._emit_batch_progress()
        return True

    def pause_after_current(self) -> None:
        with self._lock:
            if self._state == RUNNING:
                self._pause_requested = True
                self._set_state(PAUSING)

    def cancel_current(self) -> None:
        """Stop the shot that renders now (its finished windows stay cached) and the batch after it."""
        with self._lock:
            if self._state == IDLE:
                return
            self._stop_requested = True
            for job_id, shot_id in self._job_shot.items():
                if shot_id == self._current_shot:
                    self._cancel_jobs.add(job_id)
                    job = self._jobs.get(job_id)
                    if job is not None:
                        job.cancel()
            self._set_state(CANCELLING)

    def retry_failed(self, *, start: bool = True) -> list[str]:
        """Failed (and cancelled) shots back to queued; starts the batch if it is idle."""
        with self._lock:
            ids = []
            for shot in self._shots:
                if shot.status in (S.FAILED, S.CANCELLED):
                    shot.status, shot.error, shot.fraction, shot.stage = S.QUEUED, "", 0.0, ""
                    ids.append(shot.id)
                    if shot.info is None:
                        shot.probing = True
        for shot_id in ids:
            if self.shot(shot_id)["probing"]:
                self._probe([shot_id], probe_async=False)
            else:
                self._emit_shot(shot_id)
        if start and ids and self._state == IDLE:
            self.start()
        elif ids and self._state != IDLE:
            with self._lock:
                self._batch_ids += [i for i in ids if i not in self._batch_ids]
        return ids

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the batch worker ends (for scripts and tests); True if it did."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
            return not worker.is_alive()
        return True

    def shutdown(self, timeout: float = 15.0) -> None:
        """Cancel what runs and wait for it (the cache keeps finished windows)."""
        self.cancel_current()
        self.wait(timeout)

    # -- the worker -----------------------------------------------------------------------------
    def _next_shot(self) -> S.Shot | None:
        with self._lock:
            for shot in self._shots:
                if shot.id in self._batch_ids and shot.status in S.RUNNABLE and not shot.probing:
                    return shot
        return None

    def _run_batch(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._stop_requested:  # cancelled before a shot began
                        break
                shot = self._next_shot()
                if shot is None:
                    break
                self._render_one(shot.id)
                with self._lock:  # "pause after current": the shot that began always finishes
                    if self._pause_requested or self._stop_requested:
                        break
        finally:
            with self._lock:
                counts = {k: sum(1 for s in self._shots if s.id in self._batch_ids and s.status == k)
                          for k in (S.DONE, S.FAILED, S.CANCELLED)}
                self._current_shot = None
                self._pause_requested = self._stop_requested = False
                self._set_state(IDLE)
            self._emit_batch_progress()
            self.events.emit("batch.finished", **counts)

    def _render_one(self, shot_id: str) -> None:
        from dvd_vfx.render import RenderOptions
        from dvd_vfx.plugins import ModelSettings

        job_id = new_job_id()
        with self._lock:
            shot = self._get(shot_id)
            self._current_shot = shot_id
            self._job_shot[job_id] = shot_id
            shot.status, shot.stage, shot.fraction, shot.error, shot.pattern = S.RENDERING, "start", 0.0, "", ""
            shot.log.append(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} render {shot.source}")
            source, name = shot.source, shot.shot_name
        self._emit_shot(shot_id)
        status, error, trace = S.DONE, "", ""
        try:
            with self._lock:
                values, preset = self.effective_values(shot)
                self._refresh_out_dir(shot)
                out_dir = S.output_dir(self.output_pattern, shot, preset)
                shot.log.append(f"preset {preset}; " + ", ".join(f"{k}={v}" for k, v in sorted(values.items())))
                shot.log.append(f"output {out_dir}")
            self._emit_shot(shot_id)
            options = RenderOptions(
                out_dir=Path(out_dir), shot=name, resolution=values["resolution"], window=values["window"],
                overlap=values["overlap"], mode=values["mode"], near=values["near"], far=values["far"],
                invert=values["invert"], upsample=values["upsample"], compression=values["compression"],
                preview=values["preview"], replace=True)  # the row's folder holds the row's one pass
            model = ModelSettings(weights=self.settings.weights or None, device=values["device"],
                                  dtype=values["dtype"], vae_tiling=values["vae_tiling"],
                                  offload=bool(values["offload"]))
            if self._subprocess_python():
                self._render_subprocess(job_id, source, options, values, model)
            else:
                self._render_in_process(job_id, source, options, values["predictor"], model)
        except Cancelled as exc:
            status, error = S.CANCELLED, one_line(exc)
        except DvdError as exc:
            status, error = S.FAILED, one_line(exc)
        except Exception as exc:  # a bug somewhere: the row says so, the log has the traceback
            status, error, trace = S.FAILED, one_line(f"unexpected {type(exc).__name__}: {exc}"), traceback.format_exc()
        with self._lock:
            self._job_shot.pop(job_id, None)
            self._jobs.pop(job_id, None)
            self._cancel_jobs.discard(job_id)
            if status == S.DONE:
                shot.fraction, shot.stage = 1.0, "done"
            if status == S.FAILED and self._stop_requested and "cancel" in error.lower():
                status = S.CANCELLED
            shot.status, shot.error = status, error
            shot.log.append(f"{status}" + (f": {error}" if error else f": {shot.pattern}"))
            if trace:
                shot.log.extend(trace.rstrip().splitlines())
        self._emit_shot(shot_id)
        self._emit_batch_progress()

    def _subprocess_python(self) -> str | None:
        python = self.settings.engine_python.strip()
        if not python:
            return None
        if os.path.realpath(python) == os.path.realpath(sys.executable):
            return None
        return python

    def _predictor(self, name: str, model):
        """One predictor per (name, model settings), kept for the batch: the weights load once."""
        key = (name, model)
        if key not in self._predictors:
            self._predictors.clear()  # never hold two models
            self._predictors[key] = self.engine.make_predictor(name, model)
        return self._predictors[key]

    def _cache(self):
        if not self.settings.use_cache:
            return None
        from dvd_vfx.cache import ShotCache

        return ShotCache(self.settings.cache_dir or None)

    def _render_in_process(self, job_id, source, options, predictor_name, model) -> None:
        predictor = self._predictor(predictor_name, model)
        if self._cancel_requested(job_id):
            raise Cancelled("render cancelled before it started")
        self.engine.render(source, options, predictor, job_id=job_id, cache=self._cache())

    def _render_subprocess(self, job_id, source, options, values, model) -> None:
        args = [source, "-o", os.fspath(options.out_dir), "--shot", options.shot,
                "--predictor", values["predictor"], "--resolution", values["resolution"],
                "--window", values["window"], "--overlap", values["overlap"], "--mode", values["mode"],
                "--near", values["near"], "--far", values["far"], "--upsample", values["upsample"],
                "--compression", values["compression"], "--device", values["device"], "--dtype", values["dtype"],
                "--invert" if values["invert"] else "--no-invert",
                "--preview" if values["preview"] else "--no-preview",
                "--offload" if values["offload"] else "--no-offload", "--replace"]
        if values["vae_tiling"] is not None:
            args.append("--vae-tiling" if values["vae_tiling"] else "--no-vae-tiling")
        if model.weights:
            args += ["--weights", model.weights]
        if not self.settings.use_cache:
            args.append("--no-cache")
        elif self.settings.cache_dir:
            args += ["--cache-dir", self.settings.cache_dir]
        job = self.engine.subprocess_job(python=self._subprocess_python(), args=[str(a) for a in args],
                                         job_id=job_id, plugins_dir=self.settings.plugins_dir or None)
        with self._lock:
            self._jobs[job_id] = job.job
        while job.poll(timeout=0.1):
            with self._lock:
                self._jobs[job_id] = job.job
        outcome = job.wait()
        if outcome.error is not None:
            tail = [line for line in job.stderr_tail if line.strip()]
            if tail:
                with self._lock:
                    self._get(self._job_shot[job_id]).log.extend(f"engine: {line}" for line in tail[-40:])
            raise outcome.error

    # -- hook callbacks (worker thread) ---------------------------------------------------------
    def _cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancel_jobs

    def _on_job_started(self, job) -> None:
        with self._lock:
            if job.id in self._job_shot:
                self._jobs[job.id] = job
                if job.id in self._cancel_jobs:
                    job.cancel()

    def _on_progress(self, job_id: str, stage: str, done: int, total: int) -> None:
        with self._lock:
            shot_id = self._job_shot.get(job_id)
            if shot_id is None:
                return
            shot = self._get(shot_id)
            base, share = STAGE_WEIGHTS.get(stage, (0.0, 1.0))
            shot.stage = stage
            shot.fraction = min(1.0, base + share * (done / total if total else 1.0))
            fraction = shot.fraction
        self.events.emit("job.progress.changed", shot_id=shot_id, stage=stage, done=done, total=total,
                         fraction=fraction)
        self._emit_batch_progress()

    def _on_log(self, job_id: str, level: str, message: str) -> None:
        with self._lock:
            shot_id = self._job_shot.get(job_id)
            if shot_id is None:
                return
            self._get(shot_id).log.append(f"{level}: {message}")
        self.events.emit("job.log", shot_id=shot_id, level=level, message=message)

    def _on_finished(self, job_id: str, result) -> None:
        with self._lock:
            shot_id = self._job_shot.get(job_id)
            if shot_id is not None:
                shot = self._get(shot_id)
                shot.pattern = result.pattern
                shot.log.append(f"{result.frame_count} frames in {result.seconds:.1f} s, cache {result.cache}")

    # -- progress -------------------------------------------------------------------------------
    def batch_progress(self) -> dict:
        """fraction of the batch (weighted by frames), ETA in seconds (None until it can be told)."""
        with self._lock:
            work = done = 0.0
            finished = 0
            for shot in self._shots:
                if shot.id not in self._batch_ids:
                    continue
                weight = float(shot.info.frame_count) if shot.info else 1.0
                work += weight
                if shot.status in (S.DONE, S.FAILED, S.CANCELLED):
                    done += weight
                    finished += 1
                elif shot.status == S.RENDERING:
                    done += weight * shot.fraction
            fraction = done / work if work else 0.0
            elapsed = time.monotonic() - self._batch_started if self._batch_started else 0.0
            eta = elapsed * (1 - fraction) / fraction if fraction > 0.01 and self._state != IDLE else None
            return {"fraction": fraction, "eta_s": eta, "done": finished, "total": len(self._batch_ids)}

    # -- settings and queue files ---------------------------------------------------------------
    def save_settings(self) -> Path:
        path = self.settings.save(self.settings_path)
        self.events.emit("settings.changed", settings=self.settings.to_dict())
        return path

    def update_settings(self, **values) -> None:
        for key, value in values.items():
            if not hasattr(self.settings, key):
                raise InputError(f"unknown setting {key!r}")
            setattr(self.settings, key, value)
        if "plugins_dir" in values:
            with self._lock:
                self._engine, self._predictors, self._presets = None, {}, None
        if "weights" in values or "engine_python" in values:
            self._predictors = {}
        self.save_settings()
        self._refresh_all()

    def save_queue(self, path) -> Path:
        path = Path(path)
        with self._lock:
            text = S.queue_to_json(self._shots, preset=self.preset, defaults=dict(self.defaults),
                                   output_pattern=self.output_pattern)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        self.queue_path = str(path)
        self._remember_queue(path)
        self._message("info", f"queue saved to {path}")
        return path

    def load_queue(self, path, *, probe_async: bool = True) -> list[str]:
        """Replace the queue with a saved one (rows start queued; the cache marks what is done)."""
        if self._state != IDLE:
            raise InputError("a batch is running; cancel it before loading another queue")
        data = S.read_queue(path)
        if data["preset"] not in self.presets():
            raise InputError(f"{path}: unknown preset {data['preset']!r}; available: {', '.join(sorted(self.presets()))}")
        from dvd_vfx import presets as P

        P.validate(data["defaults"], f"{path}: defaults")
        with self._lock:
            self._shots = []
            self._batch_ids = []
            self.preset, self.defaults, self.output_pattern = data["preset"], data["defaults"], data["output_pattern"]
            for shot in data["shots"]:
                shot.probing = True
                self._shots.append(shot)
        self.queue_path = str(path)
        self._remember_queue(Path(path))
        self._emit_queue()
        ids = [s.id for s in data["shots"]]
        self._probe(ids, probe_async)
        return ids

    def _remember_queue(self, path: Path) -> None:
        path = str(Path(path).resolve())
        self.settings.last_queue_folder = str(Path(path).parent)
        self.settings.recent_queues = [path] + [p for p in self.settings.recent_queues if p != path][:7]
        self._save_settings_quietly()

    def _save_settings_quietly(self) -> None:
        """Remember folders as they change; a read-only config dir only costs a warning."""
        try:
            self.settings.save(self.settings_path)
        except OSError as exc:
            log.warning("cannot save panel settings: %s", exc)

    # -- preview (its own thread; the newest request of each kind wins) -------------------------
    def request_preview(self, shot_id: str, frame: int | None = None) -> None:
        """Load plate + depth of a frame; answers with "preview.changed"."""
        with self._preview_lock:
            self._preview_request = (shot_id, frame)
            self._wake_preview()

    def request_comp(self, shot_id: str, params: dict) -> None:
        """Defocus + fog of the last previewed frame (dvd_vfx.comp); answers with "preview.comp.changed".

        params: focus_t (0..1, far..near), fstop, fog_t (0..1), fog_colour (r, g, b in 0..1).
        """
        with self._preview_lock:
            self._comp_request = (shot_id, dict(params))
            self._wake_preview()

    def _wake_preview(self) -> None:
        self._preview_lock.notify()
        if self._preview_thread is None or not self._preview_thread.is_alive():
            self._preview_thread = threading.Thread(target=self._preview_loop, name="dvd-vfx-panel-preview",
                                                    daemon=True)
            self._preview_thread.start()

    def _preview_loop(self) -> None:
        while True:
            with self._preview_lock:
                if self._preview_request is None and self._comp_request is None:
                    self._preview_lock.wait(timeout=5.0)
                    if self._preview_request is None and self._comp_request is None:
                        self._preview_thread = None
                        return
                frame_request, self._preview_request = self._preview_request, None
                comp_request = None
                if frame_request is None:
                    comp_request, self._comp_request = self._comp_request, None
            if frame_request is not None:
                self._load_preview(*frame_request)
            elif comp_request is not None:
                self._make_comp(*comp_request)

    def _load_preview(self, shot_id: str, frame: int | None) -> None:
        from . import preview

        try:
            snapshot = self.shot(shot_id)
        except KeyError:
            return
        info = snapshot["info"]
        if info is None:
            self.events.emit("preview.changed", shot_id=shot_id, frame=frame, images={},
                             info={"note": snapshot["error"] or "probing the footage\u2026"})
            return
        frame = info["first_frame"] if frame is None else max(info["first_frame"], min(info["last_frame"], frame))
        try:
            result = preview.load_preview(snapshot, frame)
        except DvdError as exc:
            result = {"note": one_line(exc)}
        except Exception as exc:
            result = {"note": one_line(f"preview failed: {type(exc).__name__}: {exc}")}
        images = {k: result.pop(k) for k in ("plate", "depth", "depth_rgb") if result.get(k) is not None}
        for k in ("plate", "depth", "depth_rgb"):
            result.pop(k, None)
        result["plate_width"] = info["width"]
        self._last_preview = (shot_id, frame, images, result)
        self.events.emit("preview.changed", shot_id=shot_id, frame=frame, images=images, info=result)

    def _make_comp(self, shot_id: str, params: dict) -> None:
        from . import preview

        last = self._last_preview
        if last is None or last[0] != shot_id:
            return
        _, frame, images, info = last
        if images.get("depth") is None or images.get("plate") is None:
            self.events.emit("preview.comp.changed", shot_id=shot_id, frame=frame, image=None,
                             note="defocus / fog: render the shot first")
            return
        mode, near, far = info.get("mode"), info.get("near"), info.get("far")
        try:
            image = preview.comp_preview(
                images["plate"], images["depth"], mode=mode, near=near, far=far,
                focus=preview.focus_from_slider(params.get("focus_t", 0.5), mode, near, far),
                fstop=float(params.get("fstop", 2.8)),
                fog_density=preview.fog_density_from_slider(params.get("fog_t", 0.0), mode, near, far),
                fog_colour=params.get("fog_colour", (0.75, 0.78, 0.84)), plate_width=info.get("plate_width"))
            note = ""
        except DvdError as exc:
            image, note = None, one_line(exc)
        except Exception as exc:
            image, note = None, one_line(f"defocus / fog failed: {type(exc).__name__}: {exc}")
        self.events.emit("preview.comp.changed", shot_id=shot_id, frame=frame, image=image, note=note)

    # -- events ---------------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        self._state = state
        self.events.emit("batch.state.changed", state=state)

    def _emit_shot(self, shot_id: str) -> None:
        try:
            snapshot = self.shot(shot_id)
        except KeyError:
            return
        self.events.emit("shot.changed", shot=snapshot)

    def _emit_queue(self) -> None:
        self.events.emit("queue.changed", shots=self.shots())

    def _emit_batch_progress(self) -> None:
        self.events.emit("batch.progress.changed", **self.batch_progress())

    def _message(self, level: str, text: str) -> None:
        log.log(logging.WARNING if level == "warning" else logging.INFO, "%s", text)
        self.events.emit("message", level=level, text=text)
