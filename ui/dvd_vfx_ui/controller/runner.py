"""The batch runner: one worker thread renders the batch's rows one after another, in this process
(``Engine.render``, one predictor kept loaded for the whole batch) or, when ``Settings.engine_python``
names another interpreter, as ``dvd-vfx render --json-progress`` through ``dvd_vfx.jobs.SubprocessJob``.
Either way the engine reports through the same hooks, answered by :class:`_JobHooks`: progress
(``dvd_vfx.progress.progress_fraction``), log lines, the result. Pause waits for the shot that renders;
cancel is the ``dvd_vfx_should_cancel`` hook plus ``Job.cancel()``, so a cancelled shot keeps its
finished windows in the cache and resumes from them. Also the batch's progress and ETA.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from pathlib import Path

from dvd_vfx.errors import Cancelled, DvdError
from dvd_vfx.hookspecs import hookimpl
from dvd_vfx.jobs import new_job_id
from dvd_vfx.progress import progress_fraction

from .. import shots as S
from .context import CANCELLING, IDLE, PAUSING, RUNNING, PanelContext, one_line
from .shot_queue import ShotQueue


def render_args(source: str, options, values: dict, model, *, use_cache: bool, cache_dir: str) -> list[str]:
    """What follows ``dvd-vfx render`` for one row rendered out of process.

    options: dvd_vfx.render.RenderOptions; values: the row's preset keys; model: dvd_vfx.plugins.ModelSettings.
    """
    from dvd_vfx.cli_args import model_flags, render_flags

    args = [source, *render_flags(options), "--predictor", values["predictor"], *model_flags(model)]
    if not use_cache:
        args.append("--no-cache")
    elif cache_dir:
        args += ["--cache-dir", cache_dir]
    return [str(a) for a in args]


def render_options(out_dir: Path, shot: str, values: dict):
    """dvd_vfx.render.RenderOptions of a row: its preset keys and render options (ShotQueue.effective_values)."""
    from dvd_vfx.render import RenderOptions

    from ..shots import parse_frames

    return RenderOptions(
        out_dir=Path(out_dir), shot=shot, resolution=values["resolution"], window=values["window"],
        overlap=values["overlap"], mode=values["mode"], near=values["near"], far=values["far"],
        invert=values["invert"], clamp=values["clamp"], upsample=values["upsample"],
        compression=values["compression"], preview=values["preview"],
        frames=parse_frames(values["frames"]) if values.get("frames") else None,
        start_frame=values.get("start_frame"), hold_missing=bool(values.get("hold_missing")),
        colorspace=values.get("colorspace") or "auto", ocio_colorspace=values.get("ocio_colorspace") or None,
        anchors=values.get("anchors") or None,
        replace=True)  # the row's folder holds the row's one pass


def shot_eta(elapsed: float, fraction: float) -> float | None:
    """Seconds left for a shot from its elapsed time and fraction (None until 2 % is done)."""
    return elapsed * (1 - fraction) / fraction if fraction >= 0.02 else None


class _JobHooks:
    """The runner's plugin on the Engine: job hooks -> shot state + events."""

    def __init__(self, runner: "BatchRunner"):
        self.r = runner

    @hookimpl
    def dvd_vfx_job_started(self, job):
        self.r._on_job_started(job)

    @hookimpl
    def dvd_vfx_job_progress(self, job, stage, done, total):
        self.r._on_progress(job.id, stage, done, total)

    @hookimpl
    def dvd_vfx_job_log(self, job, level, message):
        self.r._on_log(job.id, level, message)

    @hookimpl
    def dvd_vfx_job_finished(self, job, result):
        self.r._on_finished(job.id, result)

    @hookimpl
    def dvd_vfx_should_cancel(self, job):
        return True if self.r._cancel_requested(job.id) else None


class BatchRunner:
    """Start / pause after current / cancel / retry, the worker thread, and progress. State under ``ctx.lock``."""

    def __init__(self, ctx: PanelContext, queue: ShotQueue):
        self.ctx = ctx
        self.queue = queue
        self._hooks = _JobHooks(self)
        ctx.add_plugin(self._hooks, "dvd_vfx_ui.controller")
        self._state = IDLE
        self._worker: threading.Thread | None = None
        self._pause_requested = False
        self._stop_requested = False
        self._cancel_jobs: set[str] = set()
        self._job_shot: dict[str, str] = {}  # job id -> shot id
        self._jobs: dict[str, object] = {}  # job id -> dvd_vfx.jobs.Job (to cancel it)
        self._current_shot: str | None = None
        self._predictors: dict = {}
        self._batch_ids: list[str] = []
        self._failed_before: list[str] = []  # rows that had failed (a probe, an earlier batch) at Start
        self._batch_started = 0.0
        self._skip_jobs: set[str] = set()  # jobs cancelled by "skip this shot" (the batch goes on)
        self._resumable = False  # the last batch was paused or cancelled with shots left

    @property
    def state(self) -> str:
        return self._state

    @property
    def current_shot(self) -> str | None:
        """The id of the row that renders now, if any."""
        return self._current_shot

    def forget(self, shot_ids) -> None:
        """Rows left the queue: they leave the batch too."""
        ids = set(shot_ids)
        with self.ctx.lock:
            self._batch_ids = [i for i in self._batch_ids if i not in ids]

    def forget_batch(self) -> None:
        with self.ctx.lock:
            self._batch_ids = []

    def forget_predictors(self) -> None:
        """Load the model again for the next shot (weights, engine or plugins changed)."""
        self._predictors = {}

    # -- run controls ---------------------------------------------------------------------------
    @property
    def resumable(self) -> bool:
        """Resume has something to do: a pause is pending, or a paused/cancelled batch has shots left."""
        with self.ctx.lock:
            if self._state == PAUSING:
                return True
            if self._state != IDLE or not self._resumable:
                return False
            return any(s.id in self._batch_ids and (s.status in S.RUNNABLE or s.status == S.CANCELLED)
                       for s in self.queue.rows())

    def start(self, ids=None) -> bool:
        """A new batch: every queued, cached or outdated row in order (or those of `ids`); cancelled and
        skipped rows wait for Resume or Retry. False if there is nothing to do."""
        with self.ctx.lock:
            if self._state == PAUSING and self._worker is not None and self._worker.is_alive():
                self._pause_requested = False  # un-pause: the batch goes on
                self._set_state(RUNNING)
                return True
            if self._worker is not None and self._worker.is_alive():
                if ids is not None and self._state == RUNNING:  # joins the running batch
                    self._batch_ids += [i for i in ids if i not in self._batch_ids]
                    return True
                return False  # still cancelling
            wanted = set(ids) if ids is not None else None
            runnable = [s.id for s in self.queue.rows() if s.status in S.RUNNABLE
                        and (wanted is None or s.id in wanted)]
            if not runnable:
                self.ctx.message("info", "nothing to render: add shots, Resume, or Retry the failed ones")
                return False
            return self._begin(runnable)

    def resume(self) -> bool:
        """Go on with a paused or cancelled batch: its cancelled shot first (from its cached windows),
        then the shots it had left."""
        with self.ctx.lock:
            if self._state == PAUSING:
                return self.start()
            if self._state != IDLE or (self._worker is not None and self._worker.is_alive()):
                return False
            rows = self.queue.rows()
            left = [s.id for s in rows if s.id in self._batch_ids and s.status == S.CANCELLED] + \
                [s.id for s in rows if s.id in self._batch_ids and s.status in S.RUNNABLE and not s.probing]
            if not left:
                return self.start()
            for shot in rows:
                if shot.id in left and shot.status == S.CANCELLED:
                    shot.status, shot.error = S.QUEUED, ""
            return self._begin(left)

    def _begin(self, ids: list[str]) -> bool:
        with self.ctx.lock:
            self._batch_ids = list(ids)
            self._failed_before = [s.id for s in self.queue.rows() if s.status == S.FAILED and s.id not in ids]
            self._batch_started = time.monotonic()
            self._pause_requested = self._stop_requested = False
            self._set_state(RUNNING)
            self._worker = threading.Thread(target=self._run_batch, name="dvd-vfx-panel-batch", daemon=True)
            self._worker.start()
            self._resumable = False
        self._emit_batch_progress()
        return True

    def pause_after_current(self) -> None:
        with self.ctx.lock:
            if self._state == RUNNING:
                self._pause_requested = True
                self._set_state(PAUSING)

    def cancel_batch(self) -> None:
        """Stop the shot that renders now (its finished windows stay cached) and the batch after it."""
        with self.ctx.lock:
            if self._state == IDLE:
                return
            self._stop_requested = True
            self._cancel_current_job(skip=False)
            self._set_state(CANCELLING)

    cancel_current = cancel_batch  # the old name

    def skip_current(self) -> str | None:
        """Stop the shot that renders now (marked cancelled, windows cached) and go on with the next one."""
        with self.ctx.lock:
            if self._state == IDLE or self._current_shot is None:
                return None
            self._cancel_current_job(skip=True)
            return self._current_shot

    def _cancel_current_job(self, *, skip: bool) -> None:
        for job_id, shot_id in self._job_shot.items():
            if shot_id == self._current_shot:
                self._cancel_jobs.add(job_id)
                if skip:
                    self._skip_jobs.add(job_id)
                job = self._jobs.get(job_id)
                if job is not None:
                    job.cancel()

    def rerender(self, ids=None) -> list[str]:
        """Rows whose settings differ from their pass on disk (or the rows of `ids`) render again, from the
        cache when it holds their windows; joins the running batch or starts one."""
        if ids is None:
            ids = [s.id for s in self.queue.rows() if s.status == S.OUTDATED]
        with self.ctx.lock:
            ids = [i for i in ids if i != self._current_shot]
        ids = self.queue.requeue(ids)
        if ids:
            self.start(ids)
        return ids

    def retry_failed(self, *, start: bool = True) -> list[str]:
        """Failed (and cancelled) shots back to queued; starts the batch if it is idle."""
        ids = self.queue.requeue_failed()
        if start and ids and self._state == IDLE:
            self.start(ids)
        elif ids and self._state != IDLE:
            with self.ctx.lock:
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
        self.cancel_batch()
        self.wait(timeout)

    # -- the worker -----------------------------------------------------------------------------
    def _next_shot(self) -> S.Shot | None:
        while True:
            with self.ctx.lock:
                rows = {s.id: s for s in self.queue.rows()}
                probing = False
                for shot_id in self._batch_ids:  # batch order: Resume puts the cancelled shot first
                    shot = rows.get(shot_id)
                    if shot is None or shot.status not in S.RUNNABLE:
                        continue
                    if shot.probing:  # Start pressed while it is probed: it renders when probed, in order
                        probing = True
                        break
                    return shot
                if not probing or self._stop_requested:
                    return None
            time.sleep(0.05)

    def _run_batch(self) -> None:
        try:
            while True:
                with self.ctx.lock:
                    if self._stop_requested:  # cancelled before a shot began
                        break
                shot = self._next_shot()
                if shot is None:
                    break
                self._render_one(shot.id)
                with self.ctx.lock:  # "pause after current": the shot that began always finishes
                    if self._pause_requested or self._stop_requested:
                        break
        finally:
            with self.ctx.lock:
                counts = self.batch_counts()
                # Resume: after a pause, a cancel or a skip, the batch's cancelled and unstarted rows
                self._resumable = self._pause_requested or self._stop_requested or \
                    any(s.id in self._batch_ids and s.status == S.CANCELLED for s in self.queue.rows())
                self._current_shot = None
                self._pause_requested = self._stop_requested = False
                self._set_state(IDLE)
            self._emit_batch_progress()
            self.ctx.events.emit("batch.finished", **counts)

    def batch_counts(self) -> dict:
        """The batch's rows by outcome: done (of which from_cache ran no model), failed, cancelled, left,
        total, and the ids of the failed rows; failed_before_start: queued rows outside the batch that had
        already failed when it started (a probe that failed) and still have, so the outcome never hides them."""
        with self.ctx.lock:
            failed_before = sum(1 for s in self.queue.rows() if s.id in self._failed_before and s.status == S.FAILED
                                and s.id not in self._batch_ids)  # a retried row that joined counts once
            rows = [s for s in self.queue.rows() if s.id in self._batch_ids]
            return {"done": sum(1 for s in rows if s.status == S.DONE),
                    "from_cache": sum(1 for s in rows if s.status == S.DONE and s.cache == "hit"),
                    "failed": sum(1 for s in rows if s.status == S.FAILED),
                    "cancelled": sum(1 for s in rows if s.status == S.CANCELLED),
                    "left": sum(1 for s in rows if s.status in S.RUNNABLE or s.status == S.RENDERING),
                    "total": len(rows), "failed_ids": [s.id for s in rows if s.status == S.FAILED],
                    "failed_before_start": failed_before}

    def _render_one(self, shot_id: str) -> None:
        from dvd_vfx.plugins import ModelSettings

        q = self.queue
        job_id = new_job_id()
        with self.ctx.lock:
            shot = q.get(shot_id)
            self._current_shot = shot_id
            self._job_shot[job_id] = shot_id
            shot.status, shot.stage, shot.fraction, shot.error, shot.pattern = S.RENDERING, "start", 0.0, "", ""
            shot.done = shot.total = 0
            shot.started, shot.seconds, shot.cache, shot.differences = time.time(), 0.0, "", []
            shot.log.append(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} render {shot.source}")
            source, name = shot.source, shot.shot_name
        q.emit_shot(shot_id)
        status, error, trace = S.DONE, "", ""
        try:
            with self.ctx.lock:
                values, preset = q.effective_values(shot)
                q.refresh_out_dir(shot)
                out_dir = S.output_dir(q.output_pattern, shot, preset)
                shot.log.append(f"preset {preset}; " + ", ".join(f"{k}={v}" for k, v in sorted(values.items())))
                shot.log.append(f"output {out_dir}")
            q.emit_shot(shot_id)
            options = render_options(Path(out_dir), name, values)
            model = ModelSettings(weights=self.ctx.settings.weights or None, device=values["device"],
                                  dtype=values["dtype"], vae_tiling=values["vae_tiling"],
                                  offload=bool(values["offload"]),
                                  vae_tiling_auto=bool(values.get("vae_tiling_auto")))
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
        with self.ctx.lock:
            skipped = job_id in self._skip_jobs
            self._job_shot.pop(job_id, None)
            self._jobs.pop(job_id, None)
            self._cancel_jobs.discard(job_id)
            self._skip_jobs.discard(job_id)
            shot.seconds = time.time() - shot.started
            if status == S.DONE:
                shot.fraction, shot.stage = 1.0, "done"
            if status == S.FAILED and (self._stop_requested or skipped) and "cancel" in error.lower():
                status = S.CANCELLED
            if status == S.CANCELLED and skipped:
                error = "skipped (its finished windows are cached; Resume or Retry renders it)"
            shot.status, shot.error = status, error
            if status == S.DONE:
                from .on_disk import find_pass

                shot.on_disk = find_pass(shot.out_dir, shot.shot_name)
            shot.log.append(f"{status}" + (f": {error}" if error else f": {shot.pattern}"))
            if trace:
                shot.log.extend(trace.rstrip().splitlines())
        q.emit_shot(shot_id)
        self._emit_batch_progress()

    def _subprocess_python(self) -> str | None:
        python = self.ctx.settings.engine_python.strip()
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
            self._predictors[key] = self.ctx.engine.make_predictor(name, model)
        return self._predictors[key]

    def _cache(self):
        if not self.ctx.settings.use_cache:
            return None
        from dvd_vfx.cache import ShotCache

        return ShotCache(self.ctx.settings.cache_dir or None)

    def _render_in_process(self, job_id, source, options, predictor_name, model) -> None:
        predictor = self._predictor(predictor_name, model)
        if self._cancel_requested(job_id):
            raise Cancelled("render cancelled before it started")
        self.ctx.engine.render(source, options, predictor, job_id=job_id, cache=self._cache())

    def _render_subprocess(self, job_id, source, options, values, model) -> None:
        settings = self.ctx.settings
        args = render_args(source, options, values, model, use_cache=settings.use_cache, cache_dir=settings.cache_dir)
        job = self.ctx.engine.subprocess_job(python=self._subprocess_python(), args=args, job_id=job_id,
                                             plugins_dir=settings.plugins_dir or None)
        with self.ctx.lock:
            self._jobs[job_id] = job.job
        while job.poll(timeout=0.1):
            with self.ctx.lock:
                self._jobs[job_id] = job.job
        outcome = job.wait()
        if outcome.error is not None:
            tail = [line for line in job.stderr_tail if line.strip()]
            if tail:
                with self.ctx.lock:
                    self.queue.get(self._job_shot[job_id]).log.extend(f"engine: {line}" for line in tail[-40:])
            raise outcome.error

    # -- hook callbacks (worker thread) ---------------------------------------------------------
    def _cancel_requested(self, job_id: str) -> bool:
        with self.ctx.lock:
            return job_id in self._cancel_jobs

    def _on_job_started(self, job) -> None:
        with self.ctx.lock:
            if job.id in self._job_shot:
                self._jobs[job.id] = job
                if job.id in self._cancel_jobs:
                    job.cancel()

    def _on_progress(self, job_id: str, stage: str, done: int, total: int) -> None:
        with self.ctx.lock:
            shot_id = self._job_shot.get(job_id)
            if shot_id is None:
                return
            shot = self.queue.get(shot_id)
            shot.stage, shot.done, shot.total = stage, done, total
            shot.fraction = progress_fraction(stage, done, total)
            fraction, started = shot.fraction, shot.started
            version = self.ctx.next_version()
        elapsed = time.time() - started
        self.ctx.events.emit("job.progress.changed", shot_id=shot_id, stage=stage, done=done, total=total,
                             version=version, fraction=fraction, elapsed_s=elapsed, eta_s=shot_eta(elapsed, fraction))
        self._emit_batch_progress()

    def _on_log(self, job_id: str, level: str, message: str) -> None:
        with self.ctx.lock:
            shot_id = self._job_shot.get(job_id)
            if shot_id is None:
                return
            self.queue.get(shot_id).log.append(f"{level}: {message}")
        self.ctx.events.emit("job.log", shot_id=shot_id, level=level, message=message)

    def _on_finished(self, job_id: str, result) -> None:
        with self.ctx.lock:
            shot_id = self._job_shot.get(job_id)
            if shot_id is not None:
                shot = self.queue.get(shot_id)
                shot.pattern = result.pattern
                shot.cache = str(result.cache)
                shot.log.append(f"{result.frame_count} frames in {result.seconds:.1f} s, cache {result.cache}")

    # -- progress -------------------------------------------------------------------------------
    def batch_progress(self) -> dict:
        """fraction of the batch that is really done (rendered shots and the running one's share, weighted by
        frames; failed and cancelled shots add nothing), ETA in seconds (None until it can be told), and
        the counts of batch_counts()."""
        with self.ctx.lock:
            work = done = 0.0
            remaining = 0.0
            for shot in self.queue.rows():
                if shot.id not in self._batch_ids:
                    continue
                weight = float(shot.info.frame_count) if shot.info else 1.0
                work += weight
                if shot.status == S.DONE:
                    done += weight
                elif shot.status == S.RENDERING:
                    done += weight * shot.fraction
                    remaining += weight * (1 - shot.fraction)
                elif shot.status in S.RUNNABLE:
                    remaining += weight
            fraction = done / work if work else 0.0
            elapsed = time.monotonic() - self._batch_started if self._batch_started else 0.0
            eta = elapsed * remaining / done if done > 0.01 * work and self._state != IDLE else None
            return {"fraction": fraction, "eta_s": eta, "state": self._state, **self.batch_counts()}

    def _emit_batch_progress(self) -> None:
        self.ctx.events.emit("batch.progress.changed", **self.batch_progress())

    def _set_state(self, state: str) -> None:
        self._state = state
        self.ctx.events.emit("batch.state.changed", state=state)
