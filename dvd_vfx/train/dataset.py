"""Training / evaluation datasets: clips of frames with per-frame ground-truth depth.

A *clip* is footage (a movie, an image sequence or one image; anything `dvd-vfx render` reads)
plus a depth sequence with the same number of frames (OpenEXR, one file per frame). A *still* is
a one-frame clip. A *source* is a named list of clips with a mixing weight; a dataset file lists
sources, so image and video data train in one run (as DVD's joint training does).

Dataset file (TOML; every relative path is relative to the folder of the TOML file)::

    # dataset.toml
    [[source]]
    name = "show_cg"              # required, unique; appears in logs and eval reports
    kind = "video"                # "video" (default) or "image"
    weight = 0.7                  # mixing weight (> 0; default 1); weights are relative
    clips = [
      { frames = "renders/sh010/beauty.####.exr", depth = "renders/sh010/depth.####.exr" },
      { name = "sh020", frames = "plates/sh020.mov", depth = "renders/sh020/depth.####.exr" },
    ]

    [[source]]
    name = "cg_library"
    weight = 0.3
    folders = "library/*"         # glob: every matching folder is one clip, named after it
    frames = "rgb.####.png"       # inside each folder
    depth = "depth.####.exr"      # inside each folder
    max_depth = 1e9               # optional: depth >= this is invalid (Cycles' sky is 1e10)
    colorspace = "auto"           # optional: auto | linear | display (as `render --colorspace`)

    [[source]]
    name = "stills"
    kind = "image"                # every frame of every clip is a separate one-frame clip
    clips = [ { frames = "stills/img.####.jpg", depth = "stills/depth.####.exr" } ]

A source may have ``clips``, ``folders`` (+ ``frames`` and ``depth``) or both. Frames are matched
to depth files by position (1st frame <-> 1st depth file), so a movie starting at frame 1 can use
depth files numbered from 1001; the counts must be equal. Depth files are OpenEXR; the channel
is ``depth.Z``, else any ``<layer>.Depth.Z`` (Blender's ``ViewLayer.Depth.Z``), else ``Z``, else
the file's only channel. Depth that is 0, negative, infinite or NaN (or >= ``max_depth``) is
invalid and masked out of the targets and the metrics. Depth may live in the same multi-layer
EXR as the beauty (give the same pattern for ``frames`` and ``depth``).

Loading checks everything a run would trip on later (paths, frame counts, keys, values) and
raises :class:`~dvd_vfx.errors.InputError` naming the file, the key or value and what to do.
Frames are read only by :func:`read_clip`. Importing this module never imports torch.
"""

from __future__ import annotations

import difflib
import functools
import glob
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvd_vfx.errors import InputError

__all__ = [
    "ClipSpec",
    "Dataset",
    "Source",
    "clip_length",
    "depth_files",
    "disparity_target",
    "load_dataset",
    "read_clip",
    "read_depth_frames",
]

KINDS = ("video", "image")
COLORSPACES = ("auto", "linear", "display")
#: Percentiles of the valid disparities that map to 0 and 1 in the training target.
TARGET_PERCENTILES = (2.0, 98.0)

_TOP_KEYS = ("source",)
_SOURCE_KEYS = ("name", "kind", "weight", "clips", "folders", "frames", "depth", "max_depth", "colorspace")
_CLIP_KEYS = ("name", "frames", "depth")


@dataclass(frozen=True)
class ClipSpec:
    """One clip: absolute footage and depth sources (patterns, folders or files).

    ``index`` set: the clip is the single frame at that position of ``frames`` and ``depth``
    (how an image source uses the frames of a movie). ``max_depth``: depth >= it is invalid.
    """

    name: str
    frames: str
    depth: str
    kind: str  # "video" | "image"
    index: int | None = None
    max_depth: float | None = None
    colorspace: str = "auto"


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    weight: float
    clips: tuple[ClipSpec, ...]


@dataclass(frozen=True)
class Dataset:
    path: Path
    sources: tuple[Source, ...]

    def clips(self) -> list[ClipSpec]:
        """Every clip of every source, in file order."""
        return [clip for source in self.sources for clip in source.clips]

    @property
    def weights(self) -> dict[str, float]:
        """Source name -> mixing weight normalised to sum 1."""
        total = sum(s.weight for s in self.sources)
        return {s.name: s.weight / total for s in self.sources}


# ---------------------------------------------------------------------------------------------
# the dataset file


def load_dataset(path) -> Dataset:
    """Parse and check a dataset TOML file (see the module docstring for the format)."""
    try:
        path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    except TypeError:
        raise InputError(f"dataset {path!r} is not a path; pass a dataset .toml file") from None
    if path.is_dir():
        raise InputError(f"dataset {path} is a folder; pass the dataset .toml file that lists its clips")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"dataset file not found: {path}; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read dataset file {path}: {getattr(exc, 'strerror', None) or exc}; "
                         "check the file and its permissions") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path} is not valid TOML ({exc}); fix the syntax (see docs/training.md)") from None
    _check_keys(path, "the top level", data, _TOP_KEYS)
    raw_sources = data.get("source")
    if raw_sources is None:
        raise InputError(f"{path} lists no sources; add at least one [[source]] table with name, weight and clips")
    if not isinstance(raw_sources, list) or not all(isinstance(s, Mapping) for s in raw_sources):
        raise InputError(f"{path}: 'source' must be an array of tables; write each one as [[source]]")
    if not raw_sources:
        raise InputError(f"{path} lists no sources; add at least one [[source]] table")
    sources: list[Source] = []
    names: set[str] = set()
    clip_names: dict[str, str] = {}
    for number, raw in enumerate(raw_sources, 1):
        source = _parse_source(path, number, raw)
        if source.name in names:
            raise InputError(f"{path}: two sources are named {source.name!r}; give every [[source]] its own name")
        names.add(source.name)
        for clip in source.clips:
            if clip.name in clip_names:
                raise InputError(
                    f"{path}: clip name {clip.name!r} is used twice ({clip_names[clip.name]} and {clip.frames}); "
                    "give the clips distinct names with name = \"...\""
                )
            clip_names[clip.name] = clip.frames
        sources.append(source)
    return Dataset(path=path, sources=tuple(sources))


def _check_keys(path: Path, where: str, table: Mapping, allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
            raise InputError(f"{path}: unknown key {key!r} in {where}; {hint}")


def _string(path: Path, where: str, table: Mapping, key: str, *, required: bool, example: str) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise InputError(f"{path}: {where} has no {key!r}; add {key} = {example}")
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{path}: {key} = {value!r} in {where} must be a non-empty string, e.g. {key} = {example}")
    return value.strip()


def _parse_source(path: Path, number: int, raw: Mapping) -> Source:
    where = f"[[source]] #{number}"
    _check_keys(path, where, raw, _SOURCE_KEYS)
    name = _string(path, where, raw, "name", required=True, example='"show_cg"')
    if "/" in name:
        raise InputError(f"{path}: source name {name!r} contains '/'; use letters, digits, '-' and '_'")
    where = f"source {name!r}"
    kind = raw.get("kind", "video")
    if kind not in KINDS:
        raise InputError(f"{path}: kind = {kind!r} in {where} is not one of {', '.join(KINDS)}; pick one of them")
    weight = raw.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
        raise InputError(
            f"{path}: weight = {weight!r} in {where} must be a positive number (relative mixing weight, e.g. 0.7)"
        )
    max_depth = raw.get("max_depth")
    if max_depth is not None and (
        isinstance(max_depth, bool) or not isinstance(max_depth, (int, float)) or not max_depth > 0
    ):
        raise InputError(f"{path}: max_depth = {max_depth!r} in {where} must be a positive number, e.g. 1e9")
    colorspace = raw.get("colorspace", "auto")
    if colorspace not in COLORSPACES:
        raise InputError(
            f"{path}: colorspace = {colorspace!r} in {where} is not one of {', '.join(COLORSPACES)}; pick one"
        )
    base = path.parent
    entries: list[tuple[str, str, str, str]] = []  # (clip name, frames, depth, where)
    raw_clips = raw.get("clips")
    if raw_clips is not None:
        if not isinstance(raw_clips, list) or not all(isinstance(c, Mapping) for c in raw_clips):
            raise InputError(
                f"{path}: clips in {where} must be a list of tables like "
                '{ frames = "sh010/beauty.####.exr", depth = "sh010/depth.####.exr" }'
            )
        for i, clip in enumerate(raw_clips, 1):
            cw = f"clip #{i} of {where}"
            _check_keys(path, cw, clip, _CLIP_KEYS)
            frames = _string(path, cw, clip, "frames", required=True, example='"sh010/beauty.####.exr"')
            depth = _string(path, cw, clip, "depth", required=True, example='"sh010/depth.####.exr"')
            clip_name = _string(path, cw, clip, "name", required=False, example='"sh010"') or frames
            entries.append((clip_name, _resolve(base, frames), _resolve(base, depth), cw))
    folders = raw.get("folders")
    if folders is not None:
        pattern = _string(path, where, raw, "folders", required=True, example='"renders/*"')
        frames = _string(path, where, raw, "frames", required=True, example='"beauty.####.exr"')
        depth = _string(path, where, raw, "depth", required=True, example='"depth.####.exr"')
        matched = sorted(p for p in glob.glob(_resolve(base, pattern)) if os.path.isdir(p))
        if not matched:
            raise InputError(
                f"{path}: folders = {pattern!r} in {where} matches no folder under {base}; check the glob"
            )
        for folder in matched:
            rel = os.path.relpath(folder, base)
            entries.append((rel, os.path.join(folder, frames), os.path.join(folder, depth), f"folder {folder} of {where}"))
    else:
        for key in ("frames", "depth"):
            if key in raw:
                raise InputError(
                    f"{path}: {key} in {where} only goes with folders = \"...\"; put it in clips = [ {{ ... }} ] "
                    "or add folders"
                )
    if not entries:
        raise InputError(
            f"{path}: {where} has no clips; add clips = [ {{ frames = \"...\", depth = \"...\" }} ] or folders = \"...\""
        )
    clips: list[ClipSpec] = []
    for clip_name, frames, depth, cw in entries:
        clips.extend(_expand(path, cw, f"{name}/{clip_name}", frames, depth, kind, max_depth, colorspace))
    return Source(name=name, kind=kind, weight=float(weight), clips=tuple(clips))


def _resolve(base: Path, text: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(text)))


def _expand(path, where, name, frames, depth, kind, max_depth, colorspace) -> list[ClipSpec]:
    """Check one clip (footage opens, depth files exist, counts match); image kind -> stills."""
    md = float(max_depth) if max_depth is not None else None
    clip = ClipSpec(name=name, frames=frames, depth=depth, kind=kind, max_depth=md, colorspace=colorspace)
    try:
        footage = open_clip_footage(frames, colorspace)
        files = depth_files(depth)
    except InputError as exc:
        raise InputError(f"{path}: {where}: {exc}") from None
    count = footage.info.frame_count
    if count != len(files):
        raise InputError(
            f"{path}: {where}: {frames} has {count} frame{'s' if count != 1 else ''} but depth {depth} has "
            f"{len(files)} file{'s' if len(files) != 1 else ''}; give one depth file per frame"
        )
    if kind == "video" or count == 1:
        return [clip]
    spec = getattr(footage, "spec", None)
    stills = []
    for i, number in enumerate(footage.info.frame_numbers):
        if spec is not None and number in spec.files:  # a sequence: point at the frame's own files
            stills.append(ClipSpec(name=f"{name}@{number}", frames=spec.files[number], depth=files[i],
                                   kind=kind, max_depth=md, colorspace=colorspace))
        else:  # a movie (or a held frame): the frame at this position
            stills.append(ClipSpec(name=f"{name}@{number}", frames=frames, depth=depth, kind=kind,
                                   index=i, max_depth=md, colorspace=colorspace))
    return stills


# ---------------------------------------------------------------------------------------------
# reading clips


@functools.lru_cache(maxsize=32)
def open_clip_footage(frames: str, colorspace: str = "auto"):
    """The footage reader of a clip's ``frames`` (as `dvd-vfx render` opens them), cached by path and
    colour space: loading, measuring, reading and evaluating a clip all ask for it."""
    from dvd_vfx.footage import open_footage

    return open_footage(frames, colorspace=colorspace)


@functools.lru_cache(maxsize=32)
def _depth_files_cached(depth: str) -> tuple[str, ...]:
    from dvd_vfx.footage.sequence import spec_from_file, spec_from_folder, spec_from_pattern

    path = os.path.abspath(os.path.expanduser(depth))
    if os.path.isdir(path):
        spec = spec_from_folder(path)
    elif os.path.isfile(path):
        spec = spec_from_file(path, None)
    else:
        spec = spec_from_pattern(path)
        if spec is None:
            raise InputError(
                f"depth not found: {path} (no such file or folder); check the path, or give a sequence "
                "as a pattern like depth.####.exr"
            )
    if spec.ext != "exr":
        raise InputError(
            f"depth {spec.pattern} is .{spec.ext}; depth must be OpenEXR files (float depth in a "
            "depth.Z, <layer>.Depth.Z or Z channel); convert it to EXR"
        )
    numbers = sorted(spec.files)
    if spec.frame_range is not None:
        numbers = [n for n in numbers if spec.frame_range[0] <= n <= spec.frame_range[1]]
    if not numbers:
        raise InputError(f"no depth files of {spec.pattern} in the range {spec.frame_range}; check the range")
    return tuple(spec.files[n] for n in numbers)


def depth_files(depth: str) -> list[str]:
    """The depth files of a clip in frame order (pattern, folder or one file)."""
    return list(_depth_files_cached(os.fspath(depth)))


def clip_length(clip: ClipSpec) -> int:
    """Number of frames of a clip (probe only, cached)."""
    if clip.index is not None or clip.kind == "image":  # a still: one frame by construction (no probe)
        return 1
    return open_clip_footage(clip.frames, clip.colorspace).info.frame_count


def read_depth_frames(
    files: list[str],
    *,
    size: tuple[int, int] | None = None,
    max_depth: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(depth float32 [T, H, W], valid bool [T, H, W])`` of these EXR depth files.

    Invalid (0, negative, inf, NaN, >= max_depth) depth is set to 0. ``size`` = (width, height):
    shrinking averages the valid depths in each output pixel's footprint (an output pixel is
    valid when at least half its footprint is); enlarging takes the nearest pixel.
    """
    out_d, out_v = [], []
    shape = None
    for f in files:
        depth, valid = _read_depth_frame(f, max_depth)
        if shape is None:
            shape = depth.shape
        elif depth.shape != shape:
            raise InputError(
                f"depth {f} is {depth.shape[1]}x{depth.shape[0]} but the clip's first depth file is "
                f"{shape[1]}x{shape[0]}; render every depth frame at one size"
            )
        if size is not None:
            depth, valid = resize_depth(depth, valid, size)
        out_d.append(depth)
        out_v.append(valid)
    return np.stack(out_d), np.stack(out_v)


def _read_depth_frame(path: str, max_depth: float | None) -> tuple[np.ndarray, np.ndarray]:
    from dvd_vfx.passes.depth_reader import read_depth_channel

    depth, _name, _header = read_depth_channel(
        path, what="depth", missing_hint="check the dataset's depth path",
        fix_hint="write depth as float OpenEXR with a depth.Z, ViewLayer.Depth.Z or Z channel",
    )
    valid = np.isfinite(depth) & (depth > 0)
    if max_depth is not None:
        valid &= depth < max_depth
    depth[~valid] = 0.0
    return depth, valid


def resize_depth(depth: np.ndarray, valid: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize one depth plane and its mask to size=(width, height) without mixing in invalid pixels."""
    from PIL import Image

    width, height = (int(v) for v in size)
    h, w = depth.shape
    if (w, h) == (width, height):
        return depth, valid
    if width <= w and height <= h:  # area average over valid pixels only
        weight = valid.astype(np.float32)
        box = Image.Resampling.BOX

        def shrink(plane):
            return np.asarray(Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32)).resize((width, height), box),
                              dtype=np.float32)

        cover = shrink(weight)
        total = shrink(np.where(valid, depth, 0.0))
        out_valid = cover >= 0.5 - 1e-6
        out = np.zeros((height, width), dtype=np.float32)
        np.divide(total, cover, out=out, where=out_valid)
        return out, out_valid
    ys = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return np.ascontiguousarray(depth[ys][:, xs]), np.ascontiguousarray(valid[ys][:, xs])


def read_clip(
    clip: ClipSpec,
    *,
    start: int = 0,
    count: int | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rgb float32 [T,H,W,3] in [0,1], depth float32 [T,H,W], valid bool [T,H,W])``.

    ``start``/``count``: positions from the clip's first frame (not frame numbers); count None =
    to the end. ``size`` = (width, height) for all three (RGB with the footage reader's scaler,
    depth with :func:`resize_depth`); None = the depth files' size (the RGB is scaled to it).
    """
    footage = open_clip_footage(clip.frames, clip.colorspace)
    files = depth_files(clip.depth)
    available = footage.info.frame_count
    if available != len(files):
        raise InputError(
            f"clip {clip.name}: {clip.frames} has {available} frames but depth {clip.depth} has "
            f"{len(files)} files; give one depth file per frame"
        )
    offset = 0
    if clip.index is not None:
        if not 0 <= clip.index < available:
            raise InputError(f"clip {clip.name}: frame position {clip.index} is outside {clip.frames} "
                             f"({available} frames); reload the dataset")
        offset, available = clip.index, 1
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise InputError(f"clip {clip.name}: start {start!r} must be a whole number >= 0")
    if count is None:
        count = available - start
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1 or start + count > available:
        raise InputError(
            f"clip {clip.name}: frames {start}..{start + count - 1 if isinstance(count, int) else count} are "
            f"outside the clip ({available} frame{'s' if available != 1 else ''}); ask for positions 0..{available - 1}"
        )
    chosen = files[offset + start: offset + start + count]
    depth, valid = read_depth_frames(chosen, size=size, max_depth=clip.max_depth)
    dh, dw = depth.shape[1:]
    if size is None:
        size = (dw, dh)
    numbers = footage.info.frame_numbers[offset + start: offset + start + count]
    rgb = np.empty((count, size[1], size[0], 3), dtype=np.float32)
    for i, (_n, frame) in enumerate(footage.read(size=size, frames=(numbers[0], numbers[-1]))):
        rgb[i] = frame
    return rgb, depth, valid


# ---------------------------------------------------------------------------------------------
# targets


def disparity_target(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The training target of the official DVD training, float32 with depth's shape.

    disparity = 1/depth over the valid pixels; lo, hi = its 2nd and 98th percentiles over ALL
    the given frames (one sample = one clip, so the normalisation is per clip, never per frame);
    target = clip((disparity - lo) / (hi - lo), 0, 1); invalid pixels are 0. A sample with no
    valid pixels, or a flat one (hi == lo), is 0 everywhere (the caller masks it out).
    """
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.asarray(valid, dtype=bool)
    if depth.shape != valid.shape:
        raise ValueError(f"depth {depth.shape} and valid {valid.shape} must have the same shape")
    valid = valid & np.isfinite(depth) & (depth > 0)
    out = np.zeros(depth.shape, dtype=np.float32)
    if not valid.any():
        return out
    disp = 1.0 / depth[valid].astype(np.float64)
    lo, hi = np.percentile(disp, TARGET_PERCENTILES)
    if not hi > lo:
        return out
    out[valid] = np.clip((disp - lo) / (hi - lo), 0.0, 1.0)
    return out
