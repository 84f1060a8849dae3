"""The Engine: what hosts and the command line drive. Plugins (dvd_vfx.plugins) plus jobs.

``Engine.render`` runs dvd_vfx.render.render_shot with the hooks firing: progress ->
dvd_vfx_job_progress, should_cancel -> dvd_vfx_should_cancel, plus job_started / job_log /
pass_written / job_finished / job_failed. ``Engine.subprocess_job`` runs the render in another
Python (dvd_vfx.jobs.SubprocessJob) and replays its events as the same hooks here. Importing
this module does not import torch or numpy (hosts import it); the render is imported when used.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import threading
from collections.abc import Callable

from dvd_vfx.errors import Cancelled, DvdError, PluginError
from dvd_vfx.jobs import Job, JobResult, PassInfo, new_job_id
from dvd_vfx.jsonvalues import jsonable
from dvd_vfx.plugins import ModelSettings, Plugins, plugin_error

log = logging.getLogger("dvd_vfx.engine")


class _JobLogHandler(logging.Handler):
    """Engine warnings of the job's thread -> dvd_vfx_job_log."""

    def __init__(self, engine: "Engine", job: Job):
        super().__init__(level=logging.WARNING)
        self.engine, self.job, self.thread = engine, job, threading.get_ident()
        self.error: DvdError | None = None
        self._busy = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread or self._busy or record.name.startswith("dvd_vfx.plugins"):
            return
        self._busy = True
        try:
            self.engine.call("dvd_vfx_job_log", job=self.job, level=record.levelname.lower(),
                             message=record.getMessage())
        except DvdError as exc:
            self.error = self.error or exc
        finally:
            self._busy = False


class Engine(Plugins):
    """The engine as hosts use it: its own PluginManager (see Plugins), predictors from plugins,
    hook-driven jobs."""

    # -- jobs ----------------------------------------------------------------------------------
    def render(self, source, options, predictor: str | object = "dvd", *, model: ModelSettings | None = None,
               job_id: str | None = None, on_predictor: Callable[[object], None] | None = None, **render_kwargs):
        """Render one shot with hooks firing; returns dvd_vfx.render.RenderResult.

        predictor: a registered name (built inside the job from `model`) or a predictor object.
        render_kwargs go to render_shot unchanged (e.g. cache=...). Raises what render_shot
        raises; a plugin's unexpected exception becomes a PluginError naming it.
        """
        from dvd_vfx.render import render_shot

        resolved = self.resolve_footage(source)
        name = predictor if isinstance(predictor, str) else getattr(predictor, "name", type(predictor).__name__)
        job = Job(id=job_id or new_job_id(), source=os.fspath(resolved) if isinstance(resolved, os.PathLike)
                  else str(resolved), out_dir=os.fspath(options.out_dir), shot=options.shot, predictor=str(name),
                  options=jsonable(dataclasses.asdict(options)))
        logs = _JobLogHandler(self, job)
        logging.getLogger("dvd_vfx").addHandler(logs)
        try:
            if options.anchors is None and options.mode == "depth":
                options = self._supplied_anchors(source, job, options, render_kwargs.get("cache"))
            self.call("dvd_vfx_job_started", job=job)
            model_predictor = self.make_predictor(predictor, model) if isinstance(predictor, str) else predictor
            if on_predictor is not None:
                on_predictor(model_predictor)
            result = render_shot(
                resolved, options, model_predictor,
                progress=lambda stage, done, total: self.call("dvd_vfx_job_progress", job=job, stage=stage,
                                                              done=done, total=total),
                should_cancel=lambda: self.should_cancel(job), **render_kwargs)
            if logs.error is not None:
                raise logs.error
            logging.getLogger("dvd_vfx").removeHandler(logs)
            for path in result.paths:
                self.call("dvd_vfx_pass_written", job=job, pass_info=PassInfo.from_path(path, shot=result.shot))
            self.call("dvd_vfx_job_finished", job=job, result=JobResult.from_render(result))
        except BaseException as exc:
            logging.getLogger("dvd_vfx").removeHandler(logs)
            error = self._job_error(exc)
            try:
                self.call("dvd_vfx_job_failed", job=job, error=error)
            except DvdError as hook_exc:
                log.warning("%s", hook_exc)
            if error is exc or isinstance(exc, KeyboardInterrupt) or not isinstance(error, PluginError):
                raise
            raise error from exc
        return result

    def _supplied_anchors(self, source, job: Job, options, cache):
        """Anchors from dvd_vfx_resolve_anchors (a file, or rows stored as a CSV under the cache)."""
        supplied = self.call("dvd_vfx_resolve_anchors", source=source, job=job)
        if supplied is None:
            return options
        if isinstance(supplied, (str, os.PathLike)):
            path = os.fspath(supplied)
        else:
            from dvd_vfx import anchors

            rows = anchors.anchors_from_items(supplied, "from dvd_vfx_resolve_anchors")
            folder = os.path.join(cache.root, "anchors") if cache is not None else \
                os.path.join(tempfile.gettempdir(), "dvd-vfx-anchors")
            path = str(anchors.stored_anchors_file(rows, folder))
        job.options["anchors"] = path
        return dataclasses.replace(options, anchors=path)

    def should_cancel(self, job: Job) -> bool:
        return job.cancel_requested or bool(self.call("dvd_vfx_should_cancel", job=job))

    def _job_error(self, exc: BaseException) -> DvdError:
        if isinstance(exc, DvdError):
            return exc
        if isinstance(exc, KeyboardInterrupt):
            return Cancelled("interrupted; finished windows are kept")
        if isinstance(exc, Exception):
            found = plugin_error(self.pm, exc, "the render")
            if found is not None:
                return found
        return DvdError(f"unexpected {type(exc).__name__}: {exc}".splitlines()[0])

    def subprocess_job(self, *, python=None, args, **kwargs):
        """A SubprocessJob whose events replay into this Engine's hooks."""
        from dvd_vfx.jobs import SubprocessJob

        return SubprocessJob(python=python, args=args, pm=self.pm, **kwargs)


__all__ = ["Engine"]
