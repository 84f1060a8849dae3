"""Split shots into farm tasks: window chunks (predict into the shared cache) and frame chunks
(assemble: write part of the pass). Planning probes the footage only; no frame is decoded and
neither torch, ray nor openjd is imported.

Every task is an ordinary `dvd-vfx render` with the same render flags (so it computes the same
cache key) plus `--only-windows A-B`, or `--assemble --write-frames X-Y`. The flags come from
dvd_vfx.cli_args (render_flags, model_flags), which also reads them back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dvd_vfx.cli_args import model_flags, model_settings, render_flags
from dvd_vfx.render import RenderOptions, shot_layout
from dvd_vfx.errors import InputError


@dataclass(frozen=True)
class ShotTasks:
    source: str
    shot: str
    frame_range: tuple[int, int]  # inclusive source frame numbers of the pass
    n_windows: int
    window_chunks: list[tuple[int, int]]  # inclusive window indices, one predict task each
    frame_chunks: list[tuple[int, int]]  # inclusive source frames, one assemble task each
    options: RenderOptions | None = None  # the shot's own options (a batch's shot); None: the command's
    model: object = None  # a batch's shot: its ModelSettings (its row's preset may change them); None: the command's
    predictor: str | None = None  # a batch's shot: its --predictor; None: the command's


def chunks(first: int, last: int, size: int) -> list[tuple[int, int]]:
    """first..last (inclusive) in runs of at most `size`: chunks(0, 6, 3) -> [(0, 2), (3, 5), (6, 6)]."""
    if size < 1:
        raise InputError(f"chunk size {size} must be at least 1")
    return [(a, min(a + size - 1, last)) for a in range(first, last + 1, size)]


def plan_shot(source, options: RenderOptions, *, windows_per_task: int = 1,
              frames_per_task: int | None = None) -> ShotTasks:
    """Probe `source` and split its render into window-chunk and frame-chunk tasks.

    frames_per_task: frames written by one assemble task (default: the whole pass in one task).
    """
    from dvd_vfx.footage import open_footage

    if windows_per_task < 1:
        raise InputError(f"--windows-per-task {windows_per_task} must be at least 1")
    if frames_per_task is not None and frames_per_task < 1:
        raise InputError(f"--frames-per-task {frames_per_task} must be at least 1")
    options.validate()
    footage = open_footage(source, start_frame=options.start_frame, fps=options.fps,
                           hold_missing=options.hold_missing, colorspace=options.colorspace,
                           ocio_colorspace=options.ocio_colorspace, part=options.part, view=options.view)
    try:
        layout = shot_layout(footage.info, options)
        path = str(footage.info.source)
    finally:
        close = getattr(footage, "close", None)
        if close is not None:
            close()
    first, last = layout.frame_range
    n = len(layout.windows)
    return ShotTasks(source=path, shot=layout.shot, frame_range=layout.frame_range, n_windows=n,
                     window_chunks=chunks(0, n - 1, windows_per_task),
                     frame_chunks=chunks(first, last, frames_per_task or (last - first + 1)))


def plan_batch(args, prepare, *, windows_per_task: int = 1, frames_per_task: int | None = None) -> list[ShotTasks]:
    """The shots of `--batch EDIT|SHOTS` (dvd_vfx.batch) as tasks, each with its own RenderOptions: the
    output folder from the -o pattern, the frames of its clip or row (handles included), the row's
    overrides; `prepare(options)` adds what the farm sets for every task (threads, absolute paths).
    A shot that cannot be planned (missing media) stops the submission, naming the shot."""
    import dataclasses

    from dvd_vfx import batch
    from dvd_vfx.errors import DvdError

    shots = []
    for spec in batch.load_shots(args.batch, handles=args.handles, rate=args.edit_rate):
        try:
            options, flags = batch.shot_options(args, spec, args.output)
            frames, _ = batch.shot_frames(spec, options)
            options = prepare(dataclasses.replace(options, frames=frames))
            tasks = plan_shot(spec.source, options, windows_per_task=windows_per_task,
                              frames_per_task=frames_per_task)
        except DvdError as exc:
            raise InputError(f"{args.batch}: {spec.origin} ({spec.shot}): {exc}; fix it or take the shot out "
                             "(`dvd-vfx batch --plan` lists the shots)") from None
        shots.append(dataclasses.replace(tasks, options=options, model=model_settings(flags),
                                         predictor=getattr(flags, "predictor", None)))
    return shots


def warm_tasks(shots: list[tuple[object, int]], slots: int) -> list[list[tuple[int, int, int]]]:
    """Windows of several shots spread over at most `slots` tasks that each load the model once.

    shots: (model key, windows) per shot; shots with the same key (the same predictor and model
    settings) may share a task, others never do. Per key, the shots' windows, in shot order, are
    cut into at most `slots` runs of nearly equal length, each run split at shot boundaries into
    items (shot index, first window, last window); one list of items per task:
    warm_tasks([("m", 4), ("m", 4), ("m", 4)], 2) -> [[(0, 0, 3), (1, 0, 1)], [(1, 2, 3), (2, 0, 3)]].
    Model loads for the batch = tasks = min(slots, windows) per distinct model key.
    """
    if slots < 1:
        raise InputError(f"{slots} task slots: at least 1 is needed")
    groups: dict = {}
    for index, (key, n) in enumerate(shots):
        groups.setdefault(repr(key), []).append((index, n))
    tasks = []
    for members in groups.values():
        total = sum(n for _, n in members)
        if total == 0:
            continue
        size = -(-total // slots)  # ceil: at most `slots` tasks
        current: list[tuple[int, int, int]] = []
        room = size
        for index, n in members:
            first = 0
            while first < n:
                take = min(room, n - first)
                current.append((index, first, first + take - 1))
                first, room = first + take, room - take
                if room == 0:
                    tasks.append(current)
                    current, room = [], size
        if current:
            tasks.append(current)
    return tasks


def task_threads(options: RenderOptions, cpus: float) -> RenderOptions:
    """`options` with the CPU thread count every task predicts with: --threads, else the task's CPUs.
    One count for all tasks, so the windows (and a single render with the same --threads) agree."""
    import dataclasses

    if options.threads is not None:
        return options
    return dataclasses.replace(options, threads=max(1, int(cpus)))


def task_model(model, gpus_per_task: float):
    """The model settings every task of a farm job gets. The device is made explicit: the cache key
    holds the device class and dtype, so window and assemble tasks must agree whatever worker they
    land on (a GPU worker's "auto" is cuda, a CPU worker's is cpu)."""
    import dataclasses

    device = (model.device or "auto").lower()
    if device == "auto":
        device = "cuda" if gpus_per_task > 0 else "cpu"
    if device.startswith("cuda:"):
        raise InputError(f"--device {device}: the farm picks the GPU of each task; use --device cuda (or auto)")
    if device == "cuda" and gpus_per_task <= 0:
        raise InputError("--device cuda needs --gpus-per-task N: a task is only given the GPUs it asks for")
    if device != "cuda" and gpus_per_task > 0:
        raise InputError(f"--gpus-per-task {gpus_per_task:g} with --device {device}: the tasks would hold GPUs "
                         "they never use; drop one of them")
    return dataclasses.replace(model, device=device, weights=absolute(model.weights) if model.weights else None)


def shot_task_model(shot, gpus_per_task: float):
    """A batch shot's own model settings (its row's preset or columns) as its tasks get them, or None for a
    shot that takes the command's; a refusal names the shot."""
    if shot.model is None:
        return None
    try:
        return task_model(shot.model, gpus_per_task)
    except InputError as exc:
        raise InputError(f"shot {shot.shot}: {exc}") from None


def absolute(path) -> str:
    """An absolute path (~ expanded): what a task on another machine or in another folder needs."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def task_argv(source: str, options: RenderOptions, *, cache_dir: str, predictor: str | None = None, model=None,
              plugins_dirs=(), split: list[str] = (), cache_max_gb: float | None = None) -> list[str]:
    """Arguments after the program (`dvd-vfx` or `python -m dvd_vfx.cli`) of one task of a split render."""
    argv = [f"--plugins-dir={d}" for d in plugins_dirs]
    argv += ["render", str(source), *render_flags(options), "--cache-dir", str(cache_dir)]
    if cache_max_gb is not None:
        argv += ["--cache-max-gb", repr(float(cache_max_gb))]
    if predictor:
        argv += ["--predictor", predictor]
    if model is not None:
        argv += model_flags(model)
    return argv + list(split)


def check_unique_shots(shots: list[ShotTasks]) -> None:
    """Two sources with one shot name would write the same EXR files: refuse before any task runs."""
    seen: dict[str, str] = {}
    for s in shots:
        if s.shot in seen:
            raise InputError(f"{seen[s.shot]} and {s.source} both make shot {s.shot!r} (same output files); "
                             "render them in separate jobs with --shot, or rename one plate")
        seen[s.shot] = s.source
