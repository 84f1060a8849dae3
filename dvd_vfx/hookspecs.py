"""Every hook a plugin can implement (pluggy project "dvd_vfx"; each hook is named ``dvd_vfx_*``).

Plugins implement hooks with ``@hookimpl`` and keyword arguments named exactly as below;
pluggy passes arguments by name, so a plugin may accept only the ones it needs. Argument
names are an API: renaming one costs a deprecation cycle. docs/hooks.md documents each hook.

Importing this module imports pluggy and nothing heavy (no numpy, no torch).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # the types live in dvd_vfx.plugins / dvd_vfx.jobs; both stay torch-free
    from dvd_vfx.errors import DvdError
    from dvd_vfx.jobs import Job, JobResult, PassInfo
    from dvd_vfx.plugins import PredictorFactory, ReaderInfo, WriterInfo
    from dvd_vfx.presets import Preset

PROJECT = "dvd_vfx"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- Registration: called when an Engine needs the list; each returns a list ----------------


@hookspec
def dvd_vfx_register_predictors() -> list[PredictorFactory]:
    """Return predictor factories; the first factory of a name wins (third-party before built-in)."""


@hookspec
def dvd_vfx_register_readers() -> list[ReaderInfo]:
    """Return descriptions of the footage kinds this plugin can read (informational in this version)."""


@hookspec
def dvd_vfx_register_writers() -> list[WriterInfo]:
    """Return descriptions of the passes this plugin writes (informational in this version)."""


@hookspec
def dvd_vfx_register_presets() -> list[Preset | str | os.PathLike]:
    """Return presets (Preset objects or paths of .toml files); later plugins override by name."""


# -- Footage --------------------------------------------------------------------------------


@hookspec(firstresult=True)
def dvd_vfx_resolve_footage(source: object) -> str | os.PathLike | None:
    """Return the movie path or sequence pattern for ``source`` (e.g. a host's clip), or None to pass."""


# -- Job events: called on the thread that runs the job (in process) or polls it (jobs.py) ---


@hookspec
def dvd_vfx_job_started(job: Job) -> None:
    """Called once when a render job starts, before footage is read or the model loads."""


@hookspec
def dvd_vfx_job_progress(job: Job, stage: str, done: int, total: int) -> None:
    """Called as a stage advances: "predict" counts windows, "stitch" and "write" count frames."""


@hookspec
def dvd_vfx_job_log(job: Job, level: str, message: str) -> None:
    """Called for each warning or error the engine logs while the job runs (for a host's report)."""


@hookspec
def dvd_vfx_pass_written(job: Job, pass_info: PassInfo) -> None:
    """Called for each output file once the shot's files are committed to the output folder."""


@hookspec
def dvd_vfx_job_finished(job: Job, result: JobResult) -> None:
    """Called once when the job succeeded; ``result`` has the output pattern and frame range."""


@hookspec
def dvd_vfx_job_failed(job: Job, error: DvdError) -> None:
    """Called once when the job failed or was cancelled (``error`` is then dvd_vfx.errors.Cancelled)."""


# -- Control --------------------------------------------------------------------------------


@hookspec(firstresult=True)
def dvd_vfx_should_cancel(job: Job) -> bool | None:
    """Return True to stop the job at the next window or frame; finished windows stay cached."""
