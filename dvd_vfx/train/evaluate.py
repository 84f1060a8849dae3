"""`dvd-vfx eval`: render every clip of a dataset through the real engine and score it.

Each clip (a one-frame clip for an image source) is rendered exactly as `dvd-vfx render` would
render it — windows, joint stitch, one shot-global normalisation, upsampling to plate size —
in ``mode="disparity"``, and the written EXR pass is read back and compared with the ground
truth at the ground truth's resolution.

Protocol (affine-invariant depth, as in the DVD paper):

- ground-truth disparity ``g = 1/depth`` over the valid pixels (depth 0, negative, inf, NaN or
  ``>= max_depth`` is invalid); NOT normalised.
- ONE least-squares scale and shift per clip, in disparity space, over every valid pixel of every
  frame of the clip: ``(s, b) = argmin sum (s*p + b - g)^2`` where ``p`` is the pass's disparity.
- aligned disparity ``s*p + b`` is clamped below at ``1 / max valid GT depth of the clip`` (the
  smallest GT disparity: guards zero and negative values, i.e. predicted depth never exceeds the
  clip's farthest GT depth), then turned into depth ``d_pred = 1 / (s*p + b)``.
- ``AbsRel = mean(|d_pred - d_gt| / d_gt)`` and ``delta1 = mean(max(d_pred/d_gt, d_gt/d_pred) < 1.25)``
  over all valid pixels of the clip (pixel-weighted within a clip).
- shot-level scale drift: the same fit per frame gives ``s_t``; ``r_t = s_t / s`` is that frame's
  scale relative to the clip's (1 everywhere = the shot keeps one scale). ``drift`` =
  mean(r over the last 10% of frames) / mean(r over the first 10%) - 1 (at least one frame each;
  0 = no drift, +0.05 = the GT-per-prediction scale grew 5% along the shot); ``scale_range`` =
  max(r) / min(r) over the frames (1 = stable). Both are None for one-frame clips, and
  ``scale_range`` is None when some frame's scale has the opposite sign.
- dataset summary: the mean over clips (each clip counts once) of AbsRel, delta1 and |drift|, the
  largest scale_range; the same per source.
- with anchors (``--anchors [CLIP=]FILE``, docs/anchors.md): the clip is also rendered in depth mode
  with its anchors (the same predictions, re-exported: no extra model call) and that pass, depth in
  the anchors' scene units, is compared with the GT depth as it is, with no fit:
  ``anchored_abs_rel`` and ``anchored_delta1`` over the same valid pixels; ``anchored_abs_rel`` in
  the summary is the mean over the anchored clips.

Memory does not grow with clip length: a first pass over the frames accumulates per-frame
least-squares moments (six numbers per frame), a second pass computes the metrics; one
predicted and one ground-truth frame are held at a time.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from dvd_vfx.errors import InputError
from dvd_vfx.fsutil import write_atomic
from dvd_vfx.jsonvalues import jsonable
from dvd_vfx.train.dataset import ClipSpec, Dataset, clip_length, depth_files, load_dataset, read_depth_frames

log = logging.getLogger("dvd_vfx.eval")

SCHEMA = "dvd-vfx.eval/1"
DELTA1_THRESHOLD = 1.25
DRIFT_FRACTION = 0.10
PROTOCOL = (
    "per clip: GT disparity = 1/depth (valid pixels, not normalised); one least-squares scale+shift of the "
    "rendered disparity pass onto it over all valid pixels of the clip; aligned disparity clamped below at "
    "1/max GT depth of the clip; depth = 1/aligned; AbsRel = mean |d-d_gt|/d_gt; delta1 = mean "
    "max(d/d_gt, d_gt/d)<1.25; drift = mean per-frame scale ratio (frame fit / clip fit) over the last 10% "
    "of frames / over the first 10% - 1; scale_range = max/min per-frame scale ratio; summary = mean over clips; "
    "with anchors: the depth-mode pass anchored to scene units, compared with GT depth without any fit "
    "(anchored_abs_rel, anchored_delta1)"
)

__all__ = [
    "ClipMetrics",
    "EvalReport",
    "Moments",
    "SCHEMA",
    "evaluate",
    "format_table",
    "parse_anchor_args",
    "score_anchored",
    "score_clip",
    "write_report",
]


# ---------------------------------------------------------------------------------------------
# least squares from streamed moments


@dataclass
class Moments:
    """Centred moments of (p, g) pairs; merged with Chan's formula (stable, streamable)."""

    n: int = 0
    mean_p: float = 0.0
    mean_g: float = 0.0
    cpp: float = 0.0  # sum (p - mean_p)^2
    cpg: float = 0.0  # sum (p - mean_p)(g - mean_g)
    cgg: float = 0.0

    @classmethod
    def of(cls, p: np.ndarray, g: np.ndarray) -> Moments:
        p = np.asarray(p, dtype=np.float64).ravel()
        g = np.asarray(g, dtype=np.float64).ravel()
        if p.size == 0:
            return cls()
        mp, mg = float(p.mean()), float(g.mean())
        dp, dg = p - mp, g - mg
        return cls(int(p.size), mp, mg, float(dp @ dp), float(dp @ dg), float(dg @ dg))

    def merge(self, other: Moments) -> Moments:
        if other.n == 0:
            return replace(self)
        if self.n == 0:
            return replace(other)
        n = self.n + other.n
        dp, dg = other.mean_p - self.mean_p, other.mean_g - self.mean_g
        f = self.n * other.n / n
        return Moments(n, self.mean_p + dp * other.n / n, self.mean_g + dg * other.n / n,
                       self.cpp + other.cpp + dp * dp * f, self.cpg + other.cpg + dp * dg * f,
                       self.cgg + other.cgg + dg * dg * f)

    def fit(self) -> tuple[float, float]:
        """``(scale, shift)`` minimising sum (scale*p + shift - g)^2; NaN scale if p is constant."""
        if self.n == 0:
            return math.nan, math.nan
        if not self.cpp > 1e-12 * max(self.n, 1) * max(self.mean_p * self.mean_p, 1e-12):
            return math.nan, self.mean_g
        scale = self.cpg / self.cpp
        return scale, self.mean_g - scale * self.mean_p


# ---------------------------------------------------------------------------------------------
# scoring one clip


@dataclass
class ClipMetrics:
    name: str
    source: str
    kind: str
    frames: int
    valid_pixels: int
    abs_rel: float
    delta1: float
    scale: float
    shift: float
    drift: float | None
    scale_range: float | None
    frame_scales: list[float] = field(default_factory=list)  # r_t per frame (NaN: no fit)
    gt_size: tuple[int, int] = (0, 0)
    pass_pattern: str | None = None
    working_size: tuple[int, int] | None = None
    seconds: float = 0.0
    anchored_abs_rel: float | None = None  # with anchors: the depth pass in scene units vs GT, no fit
    anchored_delta1: float | None = None
    anchors: dict | None = None  # the render's dvd/anchors fit (file, used, rejected, scale, shift, errors)
    anchored_pass: str | None = None


def _to_size(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    from dvd_vfx.footage.colour import resize_plane

    plane = np.asarray(plane, dtype=np.float32)
    if plane.shape == (height, width):
        return plane
    return resize_plane(np.array(plane, dtype=np.float32), width, height)


def score_clip(
    clip: ClipSpec,
    prediction: Callable[[int], np.ndarray],
    *,
    start: int = 0,
    count: int | None = None,
    source: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> ClipMetrics:
    """Score predicted disparity frames against a clip's ground truth (see the module docstring).

    ``prediction(t)`` returns frame ``t`` (0-based, relative to ``start``) of the prediction as a
    float [H, W] disparity-like map at any size (resized to the GT's size). Called twice per frame.
    """
    files = depth_files(clip.depth)
    offset = (clip.index or 0) + start
    total = clip_length(clip)
    if count is None:
        count = total - start
    if not (0 <= start and 1 <= count and start + count <= total):
        raise InputError(f"clip {clip.name}: frames {start}..{start + count - 1} are outside its {total} frames")
    files = files[offset:offset + count]
    report = progress or (lambda done, total: None)

    def frame(t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        depth, valid = read_depth_frames([files[t]], max_depth=clip.max_depth)
        depth, valid = depth[0], valid[0]
        h, w = depth.shape
        pred = _to_size(prediction(t), w, h)
        valid = valid & np.isfinite(pred)
        return depth, valid, pred

    # pass 1: per-frame moments (disparity space) and the clip's farthest valid depth
    per_frame: list[Moments] = []
    max_depth = 0.0
    gt_size = (0, 0)
    for t in range(count):
        depth, valid, pred = frame(t)
        gt_size = (depth.shape[1], depth.shape[0])
        if valid.any():
            d = depth[valid].astype(np.float64)
            max_depth = max(max_depth, float(d.max()))
            per_frame.append(Moments.of(pred[valid], 1.0 / d))
        else:
            per_frame.append(Moments())
        report(t + 1, 2 * count)
    clip_m = Moments()
    for m in per_frame:
        clip_m = clip_m.merge(m)
    if clip_m.n == 0:
        raise InputError(
            f"clip {clip.name}: no valid ground-truth depth in {clip.depth} (every pixel is 0, inf, NaN"
            f"{' or >= max_depth' if clip.max_depth else ''}); fix the depth files or drop the clip"
        )
    scale, shift = clip_m.fit()
    if math.isnan(scale):
        scale = 0.0  # a constant prediction: the best affine is the mean GT disparity everywhere
    if scale < 0:
        log.warning("clip %s: the prediction is anti-correlated with the GT disparity (scale %.4g): "
                    "is the predictor returning depth (larger = farther) instead of disparity?", clip.name, scale)
    floor = 1.0 / max_depth

    # pass 2: metrics with the clip's one affine
    abs_rel_sum = 0.0
    delta_hits = 0
    n = 0
    for t in range(count):
        depth, valid, pred = frame(t)
        if valid.any():
            d_gt = depth[valid].astype(np.float64)
            disp = np.maximum(scale * pred[valid].astype(np.float64) + shift, floor)
            d_pred = 1.0 / disp
            abs_rel_sum += float(np.sum(np.abs(d_pred - d_gt) / d_gt))
            delta_hits += int(np.count_nonzero(np.maximum(d_pred / d_gt, d_gt / d_pred) < DELTA1_THRESHOLD))
            n += int(d_gt.size)
        report(count + t + 1, 2 * count)

    ratios = []
    for m in per_frame:
        s_t, _ = m.fit()
        ratios.append(s_t / scale if scale != 0 and math.isfinite(s_t) else math.nan)
    drift, scale_range = _drift(ratios)
    return ClipMetrics(
        name=clip.name, source=source, kind=clip.kind, frames=count, valid_pixels=n,
        abs_rel=abs_rel_sum / n, delta1=delta_hits / n, scale=float(scale), shift=float(shift),
        drift=drift, scale_range=scale_range, frame_scales=[float(r) for r in ratios], gt_size=gt_size,
    )


def _drift(ratios: Sequence[float]) -> tuple[float | None, float | None]:
    r = np.asarray([x for x in ratios if math.isfinite(x)], dtype=np.float64)
    if r.size < 2:
        return None, None
    k = max(1, int(math.ceil(DRIFT_FRACTION * r.size)))
    first, last = float(r[:k].mean()), float(r[-k:].mean())
    drift = last / first - 1.0 if first > 0 and last > 0 else None
    scale_range = float(r.max() / r.min()) if r.min() > 0 else None
    return drift, scale_range


def score_anchored(clip: ClipSpec, depth: Callable[[int], np.ndarray], *, count: int) -> tuple[float, float]:
    """``(AbsRel, delta1)`` of predicted depth frames in scene units against the clip's GT depth, as
    they are (no fit), over the GT's valid pixels. ``depth(t)``: frame t (0-based) at any size."""
    files = depth_files(clip.depth)[clip.index or 0:]
    abs_rel_sum, hits, n = 0.0, 0, 0
    for t in range(count):
        gt, valid = read_depth_frames([files[t]], max_depth=clip.max_depth)
        gt, valid = gt[0], valid[0]
        pred = _to_size(depth(t), gt.shape[1], gt.shape[0]).astype(np.float64)
        valid = valid & np.isfinite(pred) & (pred > 0)
        d_gt, d = gt[valid].astype(np.float64), pred[valid]
        abs_rel_sum += float(np.sum(np.abs(d - d_gt) / d_gt))
        hits += int(np.count_nonzero(np.maximum(d / d_gt, d_gt / d) < DELTA1_THRESHOLD))
        n += int(d_gt.size)
    if n == 0:
        raise InputError(f"clip {clip.name}: no valid ground-truth depth to score the anchored pass against")
    return abs_rel_sum / n, hits / n


def parse_anchor_args(values: Sequence[str] | None, clips: Sequence[str]) -> dict[str, str]:
    """``--anchors [CLIP=]FILE`` values -> {clip name: file}. A bare FILE needs exactly one clip."""
    out: dict[str, str] = {}
    for value in values or ():
        name, sep, path = value.partition("=")
        if sep and name in clips:
            clip, file = name, path
        elif len(clips) == 1:
            clip, file = clips[0], value
        else:
            shown = ", ".join(clips[:8]) + (" ..." if len(clips) > 8 else "")
            raise InputError(f"--anchors {value}: name the clip, --anchors CLIP=FILE (the dataset has {len(clips)} "
                             f"clips: {shown}), or evaluate one clip with --source")
        if not Path(file).is_file():
            raise InputError(f"--anchors {value}: file {file} not found")
        if clip in out:
            raise InputError(f"--anchors {value}: clip {clip} already has anchors ({out[clip]})")
        out[clip] = file
    return out


# ---------------------------------------------------------------------------------------------
# the whole dataset


@dataclass
class EvalReport:
    dataset: str
    clips: list[ClipMetrics]
    model: dict
    predictor: str
    settings: dict
    seconds: float = 0.0

    def summary(self, clips: list[ClipMetrics] | None = None) -> dict:
        clips = self.clips if clips is None else clips
        drifts = [abs(c.drift) for c in clips if c.drift is not None]
        ranges = [c.scale_range for c in clips if c.scale_range is not None]
        anchored = [c for c in clips if c.anchored_abs_rel is not None]
        return {
            "clips": len(clips),
            "frames": sum(c.frames for c in clips),
            "abs_rel": float(np.mean([c.abs_rel for c in clips])) if clips else None,
            "delta1": float(np.mean([c.delta1 for c in clips])) if clips else None,
            "abs_drift": float(np.mean(drifts)) if drifts else None,
            "max_scale_range": float(max(ranges)) if ranges else None,
            **({"anchored_clips": len(anchored),
                "anchored_abs_rel": float(np.mean([c.anchored_abs_rel for c in anchored])),
                "anchored_delta1": float(np.mean([c.anchored_delta1 for c in anchored])),
                # the same clips' affine-fitted AbsRel, for the comparison
                "anchored_clips_abs_rel": float(np.mean([c.abs_rel for c in anchored]))} if anchored else {}),
        }

    def by_source(self) -> dict[str, dict]:
        names = list(dict.fromkeys(c.source for c in self.clips))
        return {s: self.summary([c for c in self.clips if c.source == s]) for s in names}

    def to_json(self) -> dict:
        from dvd_vfx import __version__

        return jsonable({
            "schema": SCHEMA,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "dvd_vfx_version": __version__,
            "dataset": self.dataset,
            "protocol": PROTOCOL,
            "predictor": self.predictor,
            "model": self.model,
            "settings": self.settings,
            "seconds": round(self.seconds, 3),
            "summary": self.summary(),
            "sources": self.by_source(),
            "clips": [{
                "name": c.name, "source": c.source, "kind": c.kind, "frames": c.frames,
                "valid_pixels": c.valid_pixels, "gt_size": list(c.gt_size), "abs_rel": c.abs_rel,
                "delta1": c.delta1, "scale": c.scale, "shift": c.shift, "drift": c.drift,
                "scale_range": c.scale_range, "frame_scales": c.frame_scales, "pass": c.pass_pattern,
                "working_size": list(c.working_size) if c.working_size else None, "seconds": round(c.seconds, 3),
                **({"anchored_abs_rel": c.anchored_abs_rel, "anchored_delta1": c.anchored_delta1,
                    "anchors": c.anchors, "anchored_pass": c.anchored_pass} if c.anchors is not None else {}),
            } for c in self.clips],
        })


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "clip"


def evaluate(
    dataset: Dataset,
    predictor,
    options,
    *,
    engine=None,
    work_dir: str | os.PathLike,
    cache=None,
    sources: Sequence[str] | None = None,
    max_frames: int | None = None,
    progress_factory: Callable[[str], object] | None = None,
    keep_passes: bool = True,
    anchors: dict[str, str] | None = None,
) -> EvalReport:
    """Render and score every clip of ``dataset`` (optionally only ``sources``).

    ``predictor``: a predictor object (built once, reused for every clip). ``options``: a
    RenderOptions template (resolution, window, overlap, upsample, compression); mode, out_dir,
    shot, frames and colorspace are set per clip. ``engine``: a dvd_vfx.engine.Engine (hooks
    fire per clip); None = a default one. Passes go to ``work_dir/<NNN>_<clip>/``.
    ``progress_factory(label)`` returns one clip's progress display: a plugin registered on ``engine``
    for the clip's render (its ``dvd_vfx_job_progress`` hook), whose ``update(stage, done, total)``
    reports the scoring and ``close()`` ends it, e.g. dvd_vfx.console.ProgressBars.
    ``anchors``: {clip name: anchors file}; those clips are also rendered in depth mode with their
    anchors (from the same cache entry: without ``cache`` a temporary one serves the two renders)
    and scored in scene units (``score_anchored``).
    """
    from dvd_vfx.engine import Engine
    from dvd_vfx.passes.depth_reader import read_depth
    from dvd_vfx.train.dataset import open_clip_footage

    engine = engine or Engine()
    chosen = list(dataset.sources)
    if sources:
        known = [s.name for s in dataset.sources]
        unknown = [s for s in sources if s not in known]
        if unknown:
            raise InputError(f"--source {unknown[0]!r} is not in {dataset.path}; its sources are {', '.join(known)}")
        chosen = [s for s in chosen if s.name in sources]
    if max_frames is not None and max_frames < 1:
        raise InputError(f"--max-frames {max_frames}: give at least 1")
    work_dir = Path(work_dir)
    jobs = [(source.name, clip) for source in chosen for clip in source.clips]
    anchors = dict(anchors or {})
    unknown = sorted(set(anchors) - {clip.name for _, clip in jobs})
    if unknown:
        raise InputError(f"--anchors {unknown[0]}={anchors[unknown[0]]}: no clip {unknown[0]!r} is evaluated "
                         f"(clips: {', '.join(c.name for _, c in jobs[:8])})")
    results: list[ClipMetrics] = []
    t_all = time.perf_counter()
    identity = dict(predictor.identity())
    for number, (source_name, clip) in enumerate(jobs, 1):
        t0 = time.perf_counter()
        label = f"[{number}/{len(jobs)}] {clip.name}"
        bar = progress_factory(label) if progress_factory else None
        length = clip_length(clip)
        count = min(length, max_frames) if max_frames else length
        info = open_clip_footage(clip.frames, clip.colorspace).info
        offset = clip.index or 0
        numbers = info.frame_numbers[offset:offset + count]
        shot = f"{number:03d}_{_safe(clip.name)}"[:120]
        clip_options = replace(options, out_dir=work_dir / shot, shot=shot, mode="disparity", invert=False, clamp=False,
                               frames=(numbers[0], numbers[-1]), colorspace=clip.colorspace, preview=False,
                               start_frame=None, fps=None, hold_missing=False)
        plugin_name = None
        if bar is not None:
            plugin_name = engine.register(bar)
        clip_cache, scratch = cache, None
        if clip.name in anchors and cache is None:  # two renders of one clip, one set of predictions
            from dvd_vfx.cache import ShotCache

            scratch = Path(tempfile.mkdtemp(prefix="dvd-vfx-eval-cache-"))
            clip_cache = ShotCache(scratch)
        try:
            result = engine.render(clip.frames, clip_options, predictor, cache=clip_cache)
            if len(result.paths) != count:
                raise InputError(f"clip {clip.name}: the render wrote {len(result.paths)} frames for {count}; "
                                 "check the footage's frame range")
            paths = list(result.paths)
            metrics = score_clip(clip, lambda t: read_depth(paths[t])[0], count=count, source=source_name,
                                 progress=(lambda d, n: bar.update("evaluate", d, n)) if bar is not None else None)
            if clip.name in anchors:
                anchored = engine.render(clip.frames, replace(clip_options, out_dir=work_dir / f"{shot}_anchored",
                                                              mode="depth", clamp=True,
                                                              anchors=str(anchors[clip.name])),
                                         predictor, cache=clip_cache)
                depth_paths = list(anchored.paths)
                metrics.anchored_abs_rel, metrics.anchored_delta1 = score_anchored(
                    clip, lambda t: read_depth(depth_paths[t])[0], count=count)
                metrics.anchors = anchored.anchors
                metrics.anchored_pass = anchored.pattern if keep_passes else None
                log.info("clip %s: anchored depth AbsRel %.4f (affine-fitted %.4f); %s", clip.name,
                         metrics.anchored_abs_rel, metrics.abs_rel, anchored.anchors)
        finally:
            if plugin_name is not None:
                engine.unregister(plugin_name)
            if bar is not None:
                bar.close()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        metrics.pass_pattern = result.pattern
        if not keep_passes:  # a temporary work folder holds one clip's passes at a time
            shutil.rmtree(work_dir / shot, ignore_errors=True)
            shutil.rmtree(work_dir / f"{shot}_anchored", ignore_errors=True)
            metrics.pass_pattern = None
        metrics.working_size = tuple(result.working_size)
        metrics.seconds = time.perf_counter() - t0
        results.append(metrics)
    settings = {
        "resolution": options.resolution, "window": options.window, "overlap": options.overlap,
        "upsample": options.upsample, "sources": list(sources) if sources else None, "max_frames": max_frames,
        "anchors": anchors or None,
    }
    return EvalReport(dataset=str(dataset.path), clips=results, model=identity,
                      predictor=str(getattr(predictor, "name", type(predictor).__name__)), settings=settings,
                      seconds=time.perf_counter() - t_all)


# ---------------------------------------------------------------------------------------------
# output


def _fmt(value, spec: str, none: str = "-") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return none
    return format(value, spec)


def format_table(report: EvalReport) -> str:
    """The terminal table: one row per clip, then the mean per source and over all clips."""
    anchored = any(c.anchored_abs_rel is not None for c in report.clips)
    extra = (lambda values: values) if anchored else (lambda values: ())
    rows = [(c.name, str(c.frames), _fmt(c.abs_rel, ".4f"), _fmt(c.delta1, ".4f"), _fmt(c.drift, "+.4f"),
             _fmt(c.scale_range, ".4f"), *extra((_fmt(c.anchored_abs_rel, ".4f"), _fmt(c.anchored_delta1, ".4f"))))
            for c in report.clips]
    foot = []
    by_source = report.by_source()
    if len(by_source) > 1:
        for name, s in by_source.items():
            foot.append((f"mean {name} ({s['clips']} clips)", str(s["frames"]), _fmt(s["abs_rel"], ".4f"),
                         _fmt(s["delta1"], ".4f"), _fmt(s["abs_drift"], ".4f"), _fmt(s["max_scale_range"], ".4f"),
                         *extra((_fmt(s.get("anchored_abs_rel"), ".4f"), _fmt(s.get("anchored_delta1"), ".4f")))))
    s = report.summary()
    foot.append((f"mean ({s['clips']} clips)", str(s["frames"]), _fmt(s["abs_rel"], ".4f"), _fmt(s["delta1"], ".4f"),
                 _fmt(s["abs_drift"], ".4f"), _fmt(s["max_scale_range"], ".4f"),
                 *extra((_fmt(s.get("anchored_abs_rel"), ".4f"), _fmt(s.get("anchored_delta1"), ".4f")))))
    head = ("clip", "frames", "AbsRel", "delta1", "drift", "scale max/min",
            *extra(("anchored AbsRel", "anchored delta1")))
    widths = [max(len(r[i]) for r in [head, *rows, *foot]) for i in range(len(head))]

    def line(r):
        return "  ".join(r[0].ljust(widths[0]) if i == 0 else r[i].rjust(widths[i]) for i in range(len(r)))

    rule = "  ".join("-" * w for w in widths)
    out = [line(head), rule, *map(line, rows), rule, *map(line, foot)]
    out.append("(summary rows: mean over clips; drift column = mean |drift|, scale column = the largest)")
    if anchored:
        out.append("(anchored: the depth pass fitted to the anchors, in scene units, against the GT depth with no fit; "
                   "summary rows: mean over the anchored clips)")
    return "\n".join(out)


def write_report(report: EvalReport, path: str | os.PathLike) -> Path:
    """Write the JSON report atomically; returns its path."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(report.to_json(), indent=2) + "\n")
    except OSError as exc:
        raise InputError(f"cannot write the eval report {path}: {exc.strerror or exc}; pass a writable --report") from None
    return path


# ---------------------------------------------------------------------------------------------
# the command line


def add_eval_parser(sub) -> None:
    """`dvd-vfx eval` on the CLI's subparsers (called from dvd_vfx.cli.build_parser)."""
    from dvd_vfx import cli_args

    ev = sub.add_parser("eval", help="score a model on a dataset: AbsRel, delta1, scale drift (renders every clip)")
    ev.add_argument("--data", required=True, metavar="DATASET", help="dataset .toml file (see docs/training.md)")
    ev.add_argument("--report", metavar="JSON",
                    help="where to write the JSON report (default: WORK_DIR/eval.json with -o, else ./eval.json)")
    ev.add_argument("-o", "--output", metavar="WORK_DIR",
                    help="keep the rendered passes here (default: a temporary folder, removed afterwards)")
    ev.add_argument("--source", action="append", metavar="NAME", help="evaluate only this source (repeatable)")
    ev.add_argument("--max-frames", type=int, metavar="N", help="score at most the first N frames of each clip")
    ev.add_argument("--predictor", help="depth predictor registered by a plugin (default dvd; see `dvd-vfx plugins`)")
    ev.add_argument("--anchors", action="append", metavar="[CLIP=]FILE",
                    help="also score the depth anchored to these known distances (scene units, no fit to the GT); "
                         "CLIP= names the clip (e.g. shots/sh010), not needed for a one-clip evaluation; repeatable")
    cli_args.add_preset_arg(ev)
    g = ev.add_argument_group("windows")
    cli_args.add_window_args(g)
    g.add_argument("--upsample", choices=("bilinear", "guided"), help="to plate resolution (default bilinear)")
    cli_args.add_cache_args(ev)
    cli_args.add_model_args(ev)


def run_eval_command(args) -> int:
    """The handler of `dvd-vfx eval`."""
    from dvd_vfx import cli_args
    from dvd_vfx.console import ProgressBars, warn_if_test_model
    from dvd_vfx.render import RenderOptions

    dataset = load_dataset(args.data)
    cli_args.apply_preset(args)
    evaluated = [c.name for s in dataset.sources if not args.source or s.name in args.source for c in s.clips]
    anchors = parse_anchor_args(args.anchors, evaluated)
    report_path = Path(args.report) if args.report else (Path(args.output) / "eval.json" if args.output
                                                          else Path("eval.json"))
    if report_path.is_dir():
        raise InputError(f"--report {report_path} is a folder; give a file name such as {report_path / 'eval.json'}")
    parent = report_path.resolve().parent
    if not parent.is_dir() and not args.output:
        raise InputError(f"--report {report_path}: folder {parent} does not exist; create it or pass another path")
    options = RenderOptions(out_dir=Path("."), resolution=args.resolution, window=args.window, overlap=args.overlap,
                            mode="disparity", upsample=args.upsample, compression=args.compression)
    options.validate()
    engine = cli_args.engine_for(args)
    predictor = cli_args.make_predictor(args)
    warn_if_test_model(predictor)
    if args.output:
        work_dir = Path(args.output)
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create work folder {work_dir}: {exc.strerror or exc}; pass a writable -o") from None
        cleanup = None
    else:
        work_dir = cleanup = Path(tempfile.mkdtemp(prefix="dvd-vfx-eval-"))
    try:
        report = evaluate(dataset, predictor, options, engine=engine, work_dir=work_dir, cache=cli_args.make_cache(args),
                          sources=args.source, max_frames=args.max_frames, progress_factory=ProgressBars,
                          keep_passes=cleanup is None, anchors=anchors)
    finally:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
    report.settings.update(preset=getattr(args, "preset", None), weights=args.weights,
                           predictor=args.predictor or "dvd", work_dir=str(work_dir) if args.output else None)
    written = write_report(report, report_path)
    print(format_table(report))
    print(f"\nreport: {written}", file=sys.stdout)
    return 0
