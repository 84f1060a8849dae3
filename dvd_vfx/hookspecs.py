"""Every hook a plugin can implement (pluggy project "dvd_vfx"; each hook is named ``dvd_vfx_*``).

Plugins implement hooks with ``@hookimpl`` and keyword arguments named exactly as below;
pluggy passes arguments by name, so a plugin may accept only the ones it needs. Argument
names are an API: renaming one costs a deprecation cycle.

Each hookspec's docstring is its reference: a one-line summary, then every parameter
(``:param name:`` with its type, meaning and unit or range) and what the hook returns
(``:returns:``). docs/hooks.md has one section per hook, headed ``dvd_vfx_name(arg1, arg2)``,
with when it is called and an example; tests/test_docs.py keeps the two in step.

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
    """Return predictor factories; the first factory of a name wins (third-party before built-in).

    Called when an Engine needs its predictors (``dvd-vfx render --predictor NAME``,
    ``dvd-vfx plugins``), not when the plugin loads: keep heavy imports inside ``create``.

    :returns: A list of :class:`dvd_vfx.plugins.PredictorFactory` ``(name, create,
        description)``; ``create(settings: ModelSettings)`` builds the predictor when a job
        needs it. The predictor's ``predict(frames)`` takes float32 ``[T, H, W, 3]`` in [0, 1]
        (T = 4n+1; H, W multiples of 16) and returns float32 ``[T, H, W]`` disparity-like
        values (larger = nearer, any affine, every value finite).
    """


@hookspec
def dvd_vfx_register_readers() -> list[ReaderInfo]:
    """Return descriptions of the footage kinds this plugin can read (informational in this version).

    :returns: A list of :class:`dvd_vfx.plugins.ReaderInfo` ``(name, extensions,
        description)``: ``extensions`` without the leading dot (``("r3d",)``). Listed by
        ``dvd-vfx plugins`` and usable for a host's file filters; the engine itself reads
        only movies and image sequences (map other footage with ``dvd_vfx_resolve_footage``).
    """


@hookspec
def dvd_vfx_register_writers() -> list[WriterInfo]:
    """Return descriptions of the passes this plugin writes (informational in this version).

    :returns: A list of :class:`dvd_vfx.plugins.WriterInfo` ``(name, pattern, channels,
        description)``, e.g. ``("exr-depth", "{shot}.depth.####.exr", ("depth.Z",), ...)``.
        Listed by ``dvd-vfx plugins``; the engine always writes the EXR depth pass.
    """


@hookspec
def dvd_vfx_register_presets() -> list[Preset | str | os.PathLike]:
    """Return presets (Preset objects or paths of .toml files); later plugins override by name.

    Precedence by name: shipped presets < plugin presets < the user's presets folder; on the
    command line explicit flags override the preset's values.

    :returns: A list whose items are :class:`dvd_vfx.presets.Preset` ``(name, values,
        description, source)`` objects or paths (``str`` / ``os.PathLike``) of flat TOML preset
        files, named after the file; docs/hooks.md lists the keys. A bad key or value is an
        error naming the file (or preset) and the key.
    """


# -- Footage --------------------------------------------------------------------------------


@hookspec(firstresult=True)
def dvd_vfx_resolve_footage(source: object) -> str | os.PathLike | None:
    """Return the movie path or sequence pattern for ``source`` (e.g. a host's clip), or None to pass.

    ``firstresult``: the first implementation that returns something other than None wins;
    the built-in one (called last) returns ``source`` unchanged when it is a ``str`` or
    ``os.PathLike``. The result becomes ``job.source``.

    :param source: What was passed to ``Engine.render`` (type ``object``): a path, a sequence
        pattern, or a host's own object (a Blender movie clip, a Nuke Read node).
    :returns: A movie file path, an image sequence pattern (``shot.####.exr``,
        ``shot.%04d.png``, ``shot.1001-1100#.exr``) or a folder, as ``str`` or
        ``os.PathLike``; or None to let another plugin answer.
    """


@hookspec(firstresult=True)
def dvd_vfx_resolve_anchors(source: object, job: Job) -> str | os.PathLike | list[dict] | None:
    """Return scene-scale anchors for a job that has no ``--anchors``, or None to pass.

    ``firstresult``: the first implementation that returns something other than None wins;
    nothing built in answers. Called once per job, after ``dvd_vfx_resolve_footage`` and before
    ``dvd_vfx_job_started``, only when the render options name no anchors file and the mode is
    ``"depth"``. The job then writes depth in the anchors' scene units (see ``--anchors``).

    :param source: What was passed to ``Engine.render`` (type ``object``): a path, or a host's
        own object (a Blender movie clip with a camera solve, a Nuke node with picked points).
    :param job: The job (:class:`dvd_vfx.jobs.Job`) as ``dvd_vfx_job_started`` will receive it;
        ``job.options["anchors"]`` is None.
    :returns: The path (``str`` / ``os.PathLike``) of an anchors file (CSV with the header
        ``frame,x,y,depth[,weight]`` or a JSON list), or a list of ``dict`` with keys ``frame``
        (``int``, the plate's frame number), ``x``, ``y`` (plate pixels from the top-left of the
        display window, a pixel's centre at +0.5), ``depth`` (distance along the viewing axis,
        scene units, > 0) and optional ``weight`` (> 0); at least 3. A list is written once to a
        CSV named by its content under the cache folder's ``anchors/``, which the pass's header
        names. None lets another plugin answer.
    """


# -- Job events: called on the thread that runs the job (in process) or polls it (jobs.py) ---


@hookspec
def dvd_vfx_job_started(job: Job) -> None:
    """Called once when a render job starts, before footage is read or the model loads.

    :param job: The job (:class:`dvd_vfx.jobs.Job`): ``id``, ``source`` (the resolved path),
        ``out_dir``, ``shot`` (None = named after the source), ``predictor``, ``options`` (the
        render options as JSON) and ``cancel()``. The same object is passed to every later hook
        of this job.
    :returns: Nothing; return values are ignored.
    """


@hookspec
def dvd_vfx_job_progress(job: Job, stage: str, done: int, total: int) -> None:
    """Called as a stage advances: "predict" counts windows, "stitch" and "write" count frames.

    Called per frame or window: implementations must be cheap.

    :param job: The job (:class:`dvd_vfx.jobs.Job`).
    :param stage: ``str``, one of ``"predict"`` (model windows), ``"stitch"`` (frames
        stitched and measured) and ``"write"`` (EXR files written), in this order.
    :param done: ``int``, units of ``stage`` finished, ``0 <= done <= total``; ``"predict"``
        starts at the number of windows already in the cache.
    :param total: ``int``, units in ``stage``: the shot's windows for ``"predict"``, its
        frames for ``"stitch"`` and ``"write"``.
    :returns: Nothing; return values are ignored.
    """


@hookspec
def dvd_vfx_job_log(job: Job, level: str, message: str) -> None:
    """Called for each warning or error the engine logs while the job runs (for a host's report).

    :param job: The job (:class:`dvd_vfx.jobs.Job`).
    :param level: ``str``, the record's level in lower case: ``"warning"``, ``"error"`` or
        ``"critical"`` (records below warning are not passed).
    :param message: ``str``, the formatted log message, usually one line.
    :returns: Nothing; return values are ignored.
    """


@hookspec
def dvd_vfx_pass_written(job: Job, pass_info: PassInfo) -> None:
    """Called for each output file once the shot's files are committed to the output folder.

    Output is atomic per shot: the first call comes after every file of the pass is in place.

    :param job: The job (:class:`dvd_vfx.jobs.Job`).
    :param pass_info: The file (:class:`dvd_vfx.jobs.PassInfo`): ``path`` (its final name),
        ``frame`` (``int``, the source frame number), ``shot`` and ``kind`` (``"depth"``).
    :returns: Nothing; return values are ignored.
    """


@hookspec
def dvd_vfx_job_finished(job: Job, result: JobResult) -> None:
    """Called once when the job succeeded; ``result`` has the output pattern and frame range.

    :param job: The job (:class:`dvd_vfx.jobs.Job`).
    :param result: What the job produced (:class:`dvd_vfx.jobs.JobResult`): ``pattern``
        (``OUT_DIR/SHOT.depth.####.exr``), ``first_frame``, ``last_frame``, ``frame_count``,
        sizes, timings, normalisation and cache status; its docstring describes every field.
    :returns: Nothing; return values are ignored.
    """


@hookspec
def dvd_vfx_job_failed(job: Job, error: DvdError) -> None:
    """Called once when the job failed or was cancelled (``error`` is then dvd_vfx.errors.Cancelled).

    A failed job leaves nothing in the output folder; finished windows stay cached.

    :param job: The job (:class:`dvd_vfx.jobs.Job`); out of process, when the engine stopped
        before reporting ``job_started``, only ``id`` and the ``source`` / ``out_dir`` given
        on the command line are known.
    :param error: A :class:`dvd_vfx.errors.DvdError` (``InputError``, ``WeightsError``,
        ``PredictionError``, ``DeviceMemoryError``, ``Cancelled``, ``PluginError``) with a
        one-line message and ``exit_code`` (``int``: 2, 3, 4, 75, 130, 1 respectively).
    :returns: Nothing; return values are ignored.
    """


# -- Control --------------------------------------------------------------------------------


@hookspec(firstresult=True)
def dvd_vfx_should_cancel(job: Job) -> bool | None:
    """Return True to stop the job at the next window or frame; finished windows stay cached.

    ``firstresult``. Asked before each window and frame in process, and on each
    ``SubprocessJob.poll()`` out of process. A cancelled job fails with ``Cancelled``
    (exit code 130).

    :param job: The job (:class:`dvd_vfx.jobs.Job`); ``job.cancel()`` stops it the same way
        from any thread without a plugin.
    :returns: True to cancel; None (not False) to let other plugins answer.
    """
