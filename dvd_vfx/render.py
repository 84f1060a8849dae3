"""render_shot(): footage in, windowed prediction, ONE global scale per shot, EXR depth passes out.

The narrative (docs/architecture.md, "Data flow of one shot"); each step is a function below:
  1. probe the footage and validate everything before any output exists
  2. plan the working resolution and the windows
  3. open the shot's cache entry (or a private temp store)
  4. predict the windows not cached yet (frames stream; raw predictions go to the store)
  5. solve every window's affine jointly from bounded overlap samples
  6. one pass over the stitched shot for its robust 2nd/98th percentiles
  7. a second pass: normalise with the shot's numbers, convert, upsample, write (atomic per shot)
Memory does not grow with shot length: at most one window of frames and one stitched frame
(plus bounded samples) are held; predictions are re-read from the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from dvd_vfx import __version__, stitch, threads
from dvd_vfx import anchors as anchors_mod
from dvd_vfx.cache import ShotCache, WindowStore, cache_key, nonfinite_count, source_fingerprint
from dvd_vfx.errors import Cancelled, InputError, PredictionError
from dvd_vfx.pipeline import BackgroundWriter, Prefetcher
from dvd_vfx.windows import Window, overlap_pairs, plan_windows, working_size

log = logging.getLogger("dvd_vfx.render")

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)
MODES = ("depth", "disparity")
UPSAMPLE_METHODS = ("bilinear", "guided")


@dataclass
class RenderOptions:
    """Everything that shapes one render. Near/far/mode/format do not change the predictions."""

    out_dir: Path
    shot: str | None = None  # output name; default: the source's name
    frames: tuple[int, int] | None = None  # inclusive source frame range
    start_frame: int | None = None  # first frame number of a movie (default 1)
    resolution: int = 480  # working short side
    window: int = 81
    overlap: int = 21
    mode: str = "depth"
    near: float = 1.0
    far: float = 100.0
    invert: bool = False
    clamp: bool = True  # disparity mode: False keeps the shot's 2% tails outside 0..1 (evaluation)
    upsample: str = "bilinear"
    compression: str = "zip"
    preview: bool = False
    hold_missing: bool = False
    colorspace: str = "auto"
    ocio_colorspace: str | None = None
    part: str | None = None  # multi-part EXR: part name or number (default: the first with a picture)
    view: str | None = None  # multi-view EXR: view (default: the default view)
    fps: Fraction | None = None
    threads: int | None = None  # torch CPU threads while predicting (None: torch's default); see threads.py
    replace: bool = False  # frames of this shot from another render in out_dir are removed, not refused
    anchors: str | None = None  # CSV/JSON of known distances: depth in scene units (dvd_vfx.anchors)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"--mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.upsample not in UPSAMPLE_METHODS:
            raise InputError(f"--upsample {self.upsample!r} is not one of {', '.join(UPSAMPLE_METHODS)}")
        if self.anchors is not None and self.mode != "depth":
            raise InputError(f"--anchors {self.anchors}: anchors give depth in scene units; use --mode depth")
        if not self.clamp and self.mode != "disparity":
            raise InputError("--no-clamp applies to --mode disparity only (depth maps the shot to near..far)")
        if self.mode == "depth" and not (0 < self.near < self.far):
            raise InputError(f"--near {self.near} / --far {self.far}: need 0 < near < far (scene units)")
        if self.resolution < 16:
            raise InputError(f"--resolution {self.resolution}: the working short side must be at least 16")
        plan_windows(1, self.window, self.overlap)  # validates window (4n+1) and overlap
        threads.check(self.threads)


@dataclass
class RenderResult:
    """What render_shot produced (also the source of dvd_vfx.jobs.JobResult).

    Args:
        out_dir: the pass's folder.
        shot: the file-name prefix of the pass (``<shot>.depth.<frame>.exr``).
        pattern: the pass as a ``####`` path (``/out/shot.depth.####.exr``); "" for a
            ``--only-windows`` part, which writes no pass.
        frame_numbers: (first, last) source frame numbers of the shot, inclusive: the frames that
            define its normalisation (``dvd/normalisedFrames``). With ``--write-frames`` fewer are written.
        paths: the files written, in frame order (absolute paths); [] for a window part.
        seconds: wall time of the render, s.
        working_size: (width, height) the model saw, px, multiples of 16.
        plate_size: (width, height) of the plate and of the pass, px.
        windows: number of model windows of the shot.
        percentiles: the shot's (2nd, 98th) percentiles of raw stitched disparity (the
            predictor's units; DVD: about 0..1); NaN for a window part.
        scales, shifts: each window's affine (a_k, b_k) onto window 0's disparity, one per window.
        mode: "depth" (z in near..far scene units) or "disparity" (0..1, near = 1).
        near, far: the depth range (scene units, 0 < near < far) in depth mode; None otherwise.
        predictor_calls: windows predicted by this render (0 = everything came from the cache).
        cache: "off" (no cache), "miss" (all windows predicted), "partial" (resumed), "hit" (none).
        cache_key: sha256 hex of the shot's cache entry, or None without a cache.
        timings: seconds per stage: ``predict_s``, ``stitch_s``, ``write_s``.
        anchors: with ``--anchors``, the scene-scale fit (``dvd/anchors``: file, used, rejected, scale,
            shift of 1/depth = scale * d + shift, medianRelError, worstRelError); near/far are then
            the shot's 2-98 % range in scene units. None otherwise.
    """

    out_dir: Path
    shot: str
    pattern: str  # e.g. /out/shot.depth.####.exr
    frame_numbers: tuple[int, int]
    paths: list[Path]
    seconds: float
    working_size: tuple[int, int]
    plate_size: tuple[int, int]
    windows: int
    percentiles: tuple[float, float]
    scales: list[float]
    shifts: list[float]
    mode: str
    near: float | None
    far: float | None
    predictor_calls: int = 0
    cache: str = "off"  # off | miss | partial | hit
    cache_key: str | None = None
    timings: dict = field(default_factory=dict)
    anchors: dict | None = None

    @property
    def frame_count(self) -> int:
        return len(self.paths)

    @property
    def fps(self) -> float:
        return self.frame_count / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ShotLayout:
    """What a render of one shot will do, known from the probe alone (no frame decoded)."""

    shot: str
    numbers: list[int]  # source frame numbers rendered
    frame_range: tuple[int, int]
    working_size: tuple[int, int]
    windows: list[Window]


def shot_layout(info, options: RenderOptions) -> ShotLayout:
    """The frames, working size and window plan render_shot uses for probed footage `info`.

    Farm planners split a shot with this, so their tasks address exactly the engine's windows.
    """
    numbers = list(info.frame_numbers)
    if options.frames is not None:
        first, last = options.frames
        if first > last or first < info.first_frame or last > info.last_frame:
            raise InputError(f"{info.source}: frame range {first}-{last} is outside the source's frames "
                             f"{info.first_frame}-{info.last_frame}; pass --frames within that range")
        numbers = [n for n in numbers if first <= n <= last]
    par = float(info.pixel_aspect or 1)
    size = working_size(max(1, round(info.width * par)), info.height, options.resolution)
    return ShotLayout(shot=options.shot or _default_shot_name(info), numbers=numbers,
                      frame_range=(numbers[0], numbers[-1]), working_size=size,
                      windows=plan_windows(len(numbers), options.window, options.overlap))


def _default_shot_name(info) -> str:
    """The source's file name without folder, extension and frame number.

    plate.mov -> plate; sh010.%04d.exr -> sh010; Desk.exr -> Desk; one file of a sequence,
    singlepart.0003.exr (frame 3) -> singlepart.
    """
    file_name = name = Path(info.path).name
    for token in ("%", "#", "@"):
        name = name.split(token)[0]
    if info.kind == "video":
        name = name.rsplit(".", 1)[0]
    elif name == file_name:  # one image file, no frame-number token: drop the extension and frame number
        name = name.rsplit(".", 1)[0]
        m = re.search(r"(?:^|[._-])(\d+)$", name)  # (not a version number like v002)
        if m and len(info.frame_numbers) == 1 and int(m.group(1)) == info.frame_numbers[0]:
            name = name[: m.start()]
    stem = name.rstrip("._- ")
    return stem or "shot"


def _window_frames(frames: Iterator[tuple[int, np.ndarray]], plan: list[Window]) -> Iterator[tuple[Window, np.ndarray]]:
    """Group a frame stream into padded model windows.

    Each window is filled in place in one array; the frames it shares with the next window are
    copied over, so at most one window (plus the shared frames) is held at a time.
    """
    prev: tuple[Window, np.ndarray] | None = None
    for w in plan:
        block = None
        filled = w.start
        if prev is not None:
            pw, parr = prev
            shared = max(0, pw.stop - w.start)
            if shared:
                block = np.empty((w.length, *parr.shape[1:]), dtype=np.float32)
                block[:shared] = parr[w.start - pw.start:pw.stop - pw.start]
                filled = w.start + shared
            prev = None
            del parr
        while filled < w.stop:
            _, frame = next(frames)
            if block is None:
                block = np.empty((w.length, *frame.shape), dtype=np.float32)
            block[filled - w.start] = frame
            filled += 1
        block[w.n_real:] = block[w.n_real - 1]  # padding repeats the last real frame
        yield w, block
        prev = (w, block)
        del block


def _digest(fields: dict) -> str:
    """A short stable id of JSON-able fields (floats by repr: exact)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _describe_pass(attrs: dict) -> str:
    if not attrs.get("setupId"):
        return "written without a pass id: another tool or an older dvd-vfx"
    if attrs.get("anchorsSha256"):
        values = f"depth in scene units from anchors {attrs['anchorsSha256'][:12]}"
    elif attrs.get("mode") == "depth" and "near" in attrs:
        values = f"depth {float(attrs['near']):g}..{float(attrs['far']):g}"
    else:
        values = attrs.get("mode") or "disparity"
    return f"{values}, normalised over frames {attrs.get('normalisedFrames', '?')}"


def _one_normalisation(writer, writing: list[int], id_key: str, ours: dict, options: RenderOptions) -> list[int]:
    """The frames of this shot in the output folder that another render wrote (another `id_key`):
    refused (InputError, nothing written), or with `--replace` returned to be removed at the commit."""
    from dvd_vfx.passes.exr import foreign_frames

    foreign = foreign_frames(writer.out_dir, writer.shot, writing, id_key, ours[id_key])
    if not foreign or options.replace:
        return sorted(foreign)
    numbers = sorted(foreign)
    raise InputError(
        f"{writer.out_dir} already holds frames {_spans(numbers)} of shot {writer.shot!r} from another render "
        f"({_describe_pass(foreign[numbers[0]])}); writing frames {_spans(writing)} ({_describe_pass(ours)}) "
        "beside them would mix two normalisations in one folder. Render the whole shot again (from the cache: "
        "no model call), or update frames under that pass's own numbers with --write-frames A-B and its flags, "
        f"or add --replace to make this render the shot's only pass (frames {_spans(numbers)} are removed), "
        "or write to another -o")


def _spans(indices: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out, start = [], indices[0]
    for a, b in zip(indices, indices[1:] + [None]):
        if b != a + 1:
            out.append(f"{start}-{a}" if a != start else f"{a}")
            start = b
    return ", ".join(out)


def _check_finite(pred: np.ndarray, w: Window, numbers: list[int], predictor: str, identity: dict) -> None:
    """PredictionError naming the window when its prediction holds NaN/inf: nothing gets cached for it."""
    bad = nonfinite_count(pred)
    if not bad:
        return
    dtype = identity.get("dtype")
    hint = ("try --dtype bf16 or fp32 (float16 overflows)" if dtype == "float16"
            else f"try another --dtype (now {dtype})" if dtype else "try another --dtype")
    if predictor != "dvd":
        hint += f", or check the predictor plugin {predictor!r} (`dvd-vfx plugins` shows where it comes from)"
    raise PredictionError(f"predictor {predictor!r} returned {bad} NaN/inf values of {pred.size} for window "
                          f"{w.index} (source frames {numbers[w.start]}-{numbers[w.start + w.n_real - 1]}); "
                          f"nothing was cached for it; {hint}")


@dataclass
class _Render:
    """What the steps of one render share (render_shot builds it in steps 1-3)."""

    options: RenderOptions
    footage: object  # dvd_vfx.footage.Footage
    layout: ShotLayout
    predictor: object
    identity: dict
    attributes: dict  # the pass's shot-level dvd/ header attributes
    writing: list[int]  # source frame numbers this render writes
    progress: ProgressFn
    check_cancel: Callable[[], None]
    store: WindowStore | None = None
    anchors: list | None = None  # dvd_vfx.anchors.Anchor, checked against the shot
    anchor_fit: object = None  # dvd_vfx.anchors.AnchorFit once solved
    key: str | None = None  # the cache key, when the store is a cache entry
    streams: list = field(default_factory=list)  # open ffmpeg readers, closed on every path

    @property
    def info(self):
        return self.footage.info

    @property
    def plan(self) -> list[Window]:
        return self.layout.windows


def render_shot(source, options: RenderOptions, predictor, *, progress: ProgressFn | None = None,
                should_cancel: Callable[[], bool] | None = None, cache: ShotCache | None = None,
                only_windows: tuple[int, int] | None = None, assemble: bool = False,
                write_frames: tuple[int, int] | None = None) -> RenderResult:
    """Render one shot's depth pass. Raises InputError/WeightsError/PredictionError/Cancelled; leaves no partial output.

    With a `cache`, raw window predictions are kept per shot: a re-render with other near/far,
    mode or format runs no predictor call, and a killed render resumes from its finished windows.

    Split rendering (the cache is the shared state): `only_windows=(a, b)` predicts just windows
    a..b into the cache and writes no pass; `assemble=True` requires every window cached and
    writes the pass; `write_frames=(x, y)` writes only those source frames of the pass. Any split
    gives the same files as one render: the stitch is solved once and kept in the manifest.
    """
    from dvd_vfx.footage import open_footage
    from dvd_vfx.passes.exr import DepthPassWriter

    t_start = time.perf_counter()

    def check_cancel():
        if should_cancel is not None and should_cancel():
            raise Cancelled("render cancelled; finished windows are kept")

    # 1. Probe and validate before any output exists
    options.validate()
    footage = open_footage(source, start_frame=options.start_frame, fps=options.fps,
                           hold_missing=options.hold_missing, colorspace=options.colorspace,
                           ocio_colorspace=options.ocio_colorspace, part=options.part, view=options.view)
    # 2. Working resolution (display aspect, so anamorphic plates are unsqueezed) and windows
    layout = shot_layout(footage.info, options)
    _check_split(layout, only_windows, assemble, write_frames, cache)
    anchors = None
    if options.anchors is not None and only_windows is None:
        anchors = anchors_mod.read_anchors(options.anchors)
        anchors_mod.check_placement(anchors, layout.numbers, (footage.info.width, footage.info.height),
                                    str(options.anchors))
    if hasattr(predictor, "plan_window"):  # choices made from the window size enter the identity (cache key)
        predictor.plan_window(max(w.stop - w.start for w in layout.windows), layout.working_size[1],
                              layout.working_size[0], split=only_windows is not None or assemble)
    identity = predictor.identity()
    r = _Render(options=options, footage=footage, layout=layout, predictor=predictor, identity=identity,
                attributes=_pass_attributes(footage.info, options, layout, identity, predictor),
                writing=[n for n in layout.numbers if write_frames is None or write_frames[0] <= n <= write_frames[1]],
                progress=progress or (lambda stage, done, total: None), check_cancel=check_cancel,
                anchors=anchors)
    writer = None if only_windows is not None else DepthPassWriter(
        options.out_dir, layout.shot, fps=r.info.fps, attributes=r.attributes, compression=options.compression,
        preview=options.preview, pixel_aspect=float(r.info.pixel_aspect or 1),
        display_window=r.info.display_window, workers=max(2, min(8, os.cpu_count() or 2)))
    # 3. The window store: the shot's cache entry (locked: exclusively for a whole render, shared
    #    by the parts of a split render so they run at once), or a private folder
    _open_store(r, source, cache, shared=only_windows is not None or assemble, writer=writer)
    timings: dict = {}
    complete = False
    try:
        if writer is not None:  # fail before any work when the folder holds another pass of the shot
            _one_normalisation(writer, r.writing, "setupId", r.attributes, options)
        # 4. Predict the windows not cached yet; decode only if something is missing
        t0 = time.perf_counter()
        status, calls = _predict_windows(r, only_windows, assemble, cache)
        timings["predict_s"] = time.perf_counter() - t0
        if only_windows is not None:  # a part of a split render: windows only, no pass
            return _result(r, t_start, status, calls, timings)
        # 5-6. The stitch, solved once per cache entry
        t0 = time.perf_counter()
        scales, shifts, percentiles = _solve_stitch(r)
        if r.anchors is not None:  # the shot's scene scale: one (scale, shift) from the known distances
            r.anchor_fit = _fit_anchors(r, scales, shifts, percentiles)
        timings["stitch_s"] = time.perf_counter() - t0
        # 7. Normalise, convert, upsample, write
        t0 = time.perf_counter()
        paths = _write_pass(r, writer, scales, shifts, percentiles, write_frames)
        timings["write_s"] = time.perf_counter() - t0
        complete = True
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        for stream in r.streams:  # stop the ffmpeg decoders on every path
            stream.close()
        r.store.close(complete=complete and only_windows is None, timings=timings)  # finished windows stay
    if r.key is not None:  # (not a window part: those must not evict windows other shots' assemble parts need)
        try:
            cache.enforce_cap(keep=r.key)
        except OSError as exc:  # another process changing the cache; the pass is already written
            log.warning("cache size check skipped: %s", exc)
    return _result(r, t_start, status, calls, timings, paths=paths, scales=scales, shifts=shifts,
                   percentiles=percentiles)


def _check_split(layout: ShotLayout, only_windows, assemble: bool, write_frames, cache) -> None:
    """The split-render arguments fit this shot (before any output exists)."""
    n, frame_range = len(layout.windows), layout.frame_range
    if only_windows is not None and not (0 <= only_windows[0] <= only_windows[1] < n):
        raise InputError(f"--only-windows {only_windows[0]}-{only_windows[1]}: this shot has windows 0-{n - 1}")
    if write_frames is not None:
        if not (frame_range[0] <= write_frames[0] <= write_frames[1] <= frame_range[1]):
            raise InputError(f"--write-frames {write_frames[0]}-{write_frames[1]} is outside the shot's frames "
                             f"{frame_range[0]}-{frame_range[1]}")
    if (only_windows is not None or assemble) and (cache is None or not cache.writable()):
        raise InputError("--only-windows / --assemble share windows through the cache; drop --no-cache and use a "
                         "writable --cache-dir that every part can reach")


def _pass_attributes(info, options: RenderOptions, layout: ShotLayout, identity: dict, predictor) -> dict:
    """The shot-level dvd/ header attributes, with the ids that tell one pass of the shot from
    another (setupId: everything known before predicting; the passId adds the stitch)."""
    work_w, work_h = layout.working_size
    attributes = {
        "version": __version__, "mode": options.mode, "invert": int(options.invert),
        "clamp": int(options.clamp),
        "window": options.window, "overlap": options.overlap, "workingSize": f"{work_w}x{work_h}",
        "predictor": identity.get("predictor", getattr(predictor, "name", "?")),
        "modelId": identity.get("model_id", "?"), "weightsSha256": identity.get("weights_sha256", "?"),
        "source": str(info.path), "upsample": options.upsample,
    }
    if info.color_matrix:  # YCbCr sources: the matrix their RGB was made with
        attributes["colorMatrix"] = info.color_matrix
    if options.anchors is not None:  # near/far come from the anchors' fit (frame attributes)
        attributes["anchorsSha256"] = anchors_mod.file_sha256(options.anchors)
    elif options.mode == "depth":
        attributes.update(near=float(options.near), far=float(options.far))
    # one normalisation per shot in a folder: the frames that define it
    attributes["normalisedFrames"] = f"{layout.frame_range[0]}-{layout.frame_range[1]}"
    attributes["setupId"] = _digest(attributes)
    return attributes


def _open_store(r: _Render, source, cache: ShotCache | None, *, shared: bool, writer) -> None:
    """r.store: the shot's cache entry (r.key set), or a private folder for an uncached render."""
    info, options, layout = r.info, r.options, r.layout
    if cache is not None and cache.writable():
        params = {"working_size": list(layout.working_size), "window": options.window, "overlap": options.overlap,
                  "colorspace": options.colorspace, "ocio": options.ocio_colorspace,
                  "hold_missing": options.hold_missing}
        for name in ("part", "view"):  # only when chosen: the keys of existing cache entries stay valid
            if getattr(options, name) is not None:
                params[name] = str(getattr(options, name))
        source_id = source_fingerprint(info, layout.numbers)
        r.key = cache_key(source_id, r.identity, params)
        r.store = cache.open(r.key, {"shot": layout.shot, "source": source_id, "source_arg": str(source),
                                     "frames": list(layout.frame_range),
                                     "plan": [[w.start, w.stop, w.length] for w in layout.windows],
                                     "identity": r.identity, "params": params, "fps": str(info.fps),
                                     "plate_size": [info.width, info.height]}, shared=shared)
        return
    # windows of an uncached render live beside the pass being written: /tmp is often RAM
    # (tmpfs), and memory must not grow with shot length
    r.store = WindowStore(writer.scratch("windows") if writer is not None
                          else Path(tempfile.mkdtemp(prefix="dvd-vfx-windows-")))


def _predict_windows(r: _Render, only_windows, assemble: bool, cache) -> tuple[str, int]:
    """Predict the wanted windows the store lacks; (cache status, predictor calls)."""
    plan, numbers, store = r.plan, r.layout.numbers, r.store
    work_w, work_h = r.layout.working_size
    cached = [w.index for w in plan if store.has(w.index)]
    status = "off"
    if r.key is not None:
        status = "hit" if len(cached) == len(plan) else "partial" if cached else "miss"
    wanted = set(range(only_windows[0], only_windows[1] + 1)) if only_windows else set(range(len(plan)))
    missing = sorted(wanted - set(cached))
    if assemble and missing:
        raise InputError(f"--assemble: windows {_spans(missing)} of {len(plan)} are not in the cache {cache.root}; "
                         "render them first with --only-windows")
    r.progress("predict", len(cached), len(plan))
    calls = 0
    if not missing:
        return status, calls
    # decode from the first missing window on (a part of a split render late in a long shot does
    # not decode the shot's start)
    first = plan[missing[0]]
    frames = r.footage.read(size=(work_w, work_h), frames=(numbers[first.start], r.layout.frame_range[1]))
    r.streams.append(frames)
    name = r.attributes["predictor"]
    wanted_plan = [w for w in plan[missing[0]:] if w.index <= missing[-1]]  # nothing after this part's last
    items = _window_frames(frames, wanted_plan)
    stage = getattr(r.predictor, "stage", None) if STAGE else None
    if callable(stage):  # optional: the predictor readies the next window on the prefetch thread
        items = _staged(items, stage, set(missing))
    if OVERLAP:  # the next window decodes and the last one is stored while the model runs (dvd_vfx.pipeline)
        windows = Prefetcher(items, depth=1)
        writer = BackgroundWriter(r.store.put, depth=1)
    else:
        windows, writer = _Inline(items), _Inline(r.store.put)
    try:
        with threads.pinned(r.options.threads) as n_threads:
            for w, window_frames in windows:  # [T,h,w,3] in [0,1]
                r.check_cancel()
                if w.index not in missing:
                    del window_frames
                    windows.release()
                    continue
                t_window = time.perf_counter()
                pred = r.predictor.predict(window_frames)  # [T,h,w] disparity-like, any affine
                del window_frames
                windows.release()
                calls += 1
                if pred.shape != (w.length, work_h, work_w):
                    raise InputError(f"predictor {name!r} returned shape {pred.shape} for a "
                                     f"window of {(w.length, work_h, work_w)}")
                _check_finite(pred[: w.n_real], w, numbers, name, r.identity)
                writer.submit(w.index, pred[: w.n_real], time.perf_counter() - t_window, n_threads)
                del pred
                r.progress("predict", len(cached) + calls, len(plan))
    except BaseException:
        window_frames = pred = None  # (a traceback kept by the caller must not keep a staged window alive)
        windows.close()
        try:
            writer.close()  # the windows already predicted are stored (a cancelled render keeps them)
        except Exception as exc:
            log.warning("storing a finished window failed too: %s", exc)
        raise
    windows.close()
    writer.close()
    return status, calls


# The host (decoding the next window, storing the last) runs while the model predicts; False runs
# them one after the other on the render's thread (the same bytes; benchmarks/bench_overlap.py).
OVERLAP = True


# Predictors with a stage() method get it called for each window they will predict, on the
# prefetch thread, and predict() gets what it returned; False leaves stage() uncalled
# (benchmarks/gpu_run.py --no-stage).
STAGE = True


def _staged(items, stage, wanted: set):
    """(window, frames) -> (window, stage(frames)) for the windows that will be predicted."""
    for w, block in items:
        yield w, (stage(block) if w.index in wanted else block)
        del block


class _Inline:
    """Prefetcher/BackgroundWriter's interface, run on the caller's thread (OVERLAP = False)."""

    def __init__(self, target):
        self._target = target

    def __iter__(self):
        return iter(self._target)

    def release(self) -> None:
        pass

    def submit(self, *args) -> None:
        self._target(*args)

    def close(self) -> None:
        pass


def _stitched(r: _Render, index: int, scales, shifts) -> np.ndarray:
    """Frame `index` of the shot from its windows' predictions under their affines: [h,w] float32."""
    contrib = stitch.frame_contributions(r.plan, index)
    r.store.release_before(contrib[0][0])
    return stitch.stitch_frame(contrib, lambda k, t: r.store.get(k)[t], scales, shifts)


def _solve_stitch(r: _Render) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Every window's affine (solved jointly) and the shot's 2nd/98th percentiles.

    Solved once per cache entry: the first part of a split render solves it under the entry's
    stitch lock and keeps it in the manifest, the other parts wait and read its numbers.
    """
    plan, store, n = r.plan, r.store, len(r.layout.numbers)
    with store.stitch_lock():
        saved = store.stitch()
        if saved is not None:
            r.progress("stitch", n, n)
            return np.array(saved["scales"]), np.array(saved["shifts"]), tuple(saved["percentiles"])
        # 5. Joint affines from bounded overlap samples (all read back from the store)
        samples = []
        for i, j, lo, hi in overlap_pairs(plan):
            a, b = plan[i], plan[j]
            samples.append((i, j, stitch.overlap_samples(store.get(i)[lo - a.start:hi - a.start],
                                                         store.get(j)[lo - b.start:hi - b.start])))
            store.release_before(i)
        scales, shifts = stitch.solve_affines(len(plan), samples)
        # 6. Shot-global percentiles (one pass, bounded sample)
        acc = stitch.PercentileAccumulator(2.0, 98.0)
        for index in range(n):
            r.check_cancel()
            acc.add(_stitched(r, index, scales, shifts))
            r.progress("stitch", index + 1, n)
        p_lo, p_hi = acc.result()
        store.save_stitch(scales=[float(a) for a in scales], shifts=[float(b) for b in shifts],
                          percentiles=[float(p_lo), float(p_hi)])
    return scales, shifts, (p_lo, p_hi)


def _fit_anchors(r: _Render, scales, shifts, percentiles):
    """Sample the shot's normalised disparity (unclipped) at every anchor and fit the scene scale."""
    by_frame: dict[int, list[int]] = {}
    for k, a in enumerate(r.anchors):
        by_frame.setdefault(a.frame, []).append(k)
    d = np.full(len(r.anchors), np.nan)
    plate = (r.info.width, r.info.height)
    for index, number in enumerate(r.layout.numbers):
        if number not in by_frame:
            continue
        r.check_cancel()
        frame = stitch.normalise(_stitched(r, index, scales, shifts), *percentiles, clip=False)  # [h,w]
        for k in by_frame[number]:
            d[k] = anchors_mod.sample(frame, r.anchors[k].x, r.anchors[k].y, plate)
    found = anchors_mod.fit(d, [a.depth for a in r.anchors], [a.weight for a in r.anchors],
                            source=str(r.options.anchors))
    log.info("anchors: %s", found.describe())
    return found


def _write_pass(r: _Render, writer, scales, shifts, percentiles, write_frames) -> list[Path]:
    """Normalise with the shot's numbers, convert, upsample and write the frames; publish all at once."""
    from dvd_vfx.passes.upsample import upsample

    options, info, numbers = r.options, r.info, r.layout.numbers
    near, far = options.near, options.far
    p_lo, p_hi = percentiles
    guides = None
    if options.upsample == "guided":
        guides = r.footage.read(size=None, frames=write_frames or r.layout.frame_range)
        r.streams.append(guides)
    frame_attrs_common = {"percentiles": [float(p_lo), float(p_hi)],
                          "affines": [[float(a), float(b)] for a, b in zip(scales, shifts)],
                          "threads": threads.describe(r.store.threads(w.index) for w in r.plan)}
    if r.anchor_fit is not None:  # depth in scene units: the fit is the shot's near/far
        near, far = r.anchor_fit.near, r.anchor_fit.far
        frame_attrs_common.update(near=near, far=far, anchors=r.anchor_fit.header(str(options.anchors)))
    pass_id = _digest({"setupId": r.attributes["setupId"], "percentiles": frame_attrs_common["percentiles"],
                       "affines": frame_attrs_common["affines"], "near": near, "far": far})
    frame_attrs_common["passId"] = pass_id
    foreign = _one_normalisation(writer, r.writing, "passId", {**r.attributes, "passId": pass_id}, options)
    for index, number in enumerate(numbers):
        if write_frames is not None and not write_frames[0] <= number <= write_frames[1]:
            continue
        r.check_cancel()
        d = stitch.normalise(_stitched(r, index, scales, shifts), p_lo, p_hi, clip=options.clamp)  # [h,w]
        if options.invert:
            d = 1.0 - d
        guide = next(guides)[1] if guides is not None else None
        d_plate = upsample(d, (info.width, info.height), method=options.upsample, guide=guide)  # [H,W]
        if options.clamp:
            d_plate = np.clip(d_plate, 0.0, 1.0)
        value = stitch.depth_from_disparity(d_plate, near, far) \
            if options.mode == "depth" else d_plate.astype(np.float32)
        preview = np.repeat(d_plate[..., None], 3, axis=2) if options.preview else None
        writer.submit(number, value, preview, {**frame_attrs_common, "sourceFrame": number})
        r.progress("write", index + 1, len(numbers))
    return writer.commit(remove_frames=foreign)


def _result(r: _Render, t_start: float, status: str, calls: int, timings: dict, *, paths=None, scales=(),
            shifts=(), percentiles=(float("nan"), float("nan"))) -> RenderResult:
    from dvd_vfx.passes.exr import pass_filename

    options, layout, info, fit = r.options, r.layout, r.info, r.anchor_fit
    depth = options.mode == "depth"
    pattern = str(Path(options.out_dir) / pass_filename(layout.shot, 0).replace(".0000.", ".####.")) \
        if paths is not None else ""
    return RenderResult(
        out_dir=Path(options.out_dir), shot=layout.shot, pattern=pattern, frame_numbers=layout.frame_range,
        paths=list(paths or []), seconds=time.perf_counter() - t_start, working_size=layout.working_size,
        plate_size=(info.width, info.height), windows=len(layout.windows), percentiles=tuple(percentiles),
        scales=[float(a) for a in scales], shifts=[float(b) for b in shifts], mode=options.mode,
        near=(fit.near if fit else options.near) if depth and paths is not None else None,
        far=(fit.far if fit else options.far) if depth and paths is not None else None,
        anchors=fit.header(str(options.anchors)) if fit else None,
        predictor_calls=calls, cache=status, cache_key=r.key, timings=timings)
