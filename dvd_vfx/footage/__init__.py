"""Footage readers: movie files through ffmpeg, image sequences (EXR via OpenEXR, the rest via ffmpeg).

    footage = open_footage("/shots/sh010/plate.####.exr")   # probes + validates everything
    print(footage.info.describe())
    for number, rgb in footage.read(size=(832, 480), frames=(1001, 1040)):
        ...   # rgb: float32 [480, 832, 3] in [0, 1], display-referred

Every problem a user can fix is an `InputError` with a one-line message that names the file,
frame or value, what is wrong and what to do. Warnings go to the "dvd_vfx.footage" logger.
Importing this package never imports torch.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction

from dvd_vfx.errors import InputError

from .base import Footage, FootageInfo, coerce_fps, parse_frame_range
from .colour import make_ocio
from .sequence import IMAGE_EXTS, SequenceFootage, spec_from_file, spec_from_folder, spec_from_pattern
from .video import VideoFootage

__all__ = [
    "Footage",
    "FootageInfo",
    "SequenceFootage",
    "VideoFootage",
    "open_footage",
    "parse_frame_range",
]

COLORSPACES = ("auto", "linear", "display")
_ALIASES = {"srgb": "display", "sRGB": "display", "scene-linear": "linear", "lin": "linear"}
_NUKE_RANGE_RE = re.compile(r"^(?P<path>.*\S)\s+(?P<a>-?\d+)-(?P<b>-?\d+)$")


def open_footage(
    source: str | os.PathLike,
    *,
    start_frame: int | None = None,
    fps: Fraction | None = None,
    hold_missing: bool = False,
    colorspace: str = "auto",
    ocio_colorspace: str | None = None,
    part: str | None = None,
    view: str | None = None,
) -> Footage:
    """Open and probe a movie file, an image sequence (pattern, folder) or a single image.

    start_frame: number of a movie's first frame (default 1); sequences keep the numbers of
        their file names. fps: overrides the rate (movies: from the stream; sequences: the EXR
        framesPerSecond attribute, else 24). hold_missing: fill gaps in a sequence by repeating
        the previous frame instead of failing. colorspace: "auto" (EXR = scene-linear, converted
        with the sRGB curve; everything else = display-referred), "linear" or "display".
        ocio_colorspace: convert from this OCIO colourspace to $OCIO's default display/view
        instead (needs PyOpenColorIO). part / view: multi-part / multi-view EXR: the part (name or
        number, 0 = first) and view to read (default: the first part with a picture, default view).
    """
    if source is None or (isinstance(source, str) and not source.strip()):
        raise InputError("no footage given; pass a movie file, an image sequence pattern or a folder")
    try:
        text = os.fspath(source)
    except TypeError:
        raise InputError(f"footage {source!r} is not a path; pass a movie file, a sequence pattern or a folder") from None
    colorspace = _ALIASES.get(colorspace, colorspace)
    if colorspace not in COLORSPACES:
        raise InputError(f"colorspace {colorspace!r} is not one of {', '.join(COLORSPACES)}; pick one of them")
    rate = coerce_fps(fps) if fps is not None else None
    if start_frame is not None:
        try:
            start_frame = int(start_frame)
        except (TypeError, ValueError):
            raise InputError(f"start frame {start_frame!r} is not a whole number; give e.g. 1 or 1001") from None
    part = None if part is None or str(part) == "" else str(part)
    view = None if view is None or str(view) == "" else str(view)
    ocio = make_ocio(ocio_colorspace) if ocio_colorspace else None
    common = dict(fps=rate, colorspace=colorspace, ocio=ocio)
    exr = dict(part=part, view=view)

    path = os.path.abspath(os.path.expanduser(text))
    frame_range = None
    if not os.path.exists(path):
        m = _NUKE_RANGE_RE.match(path)
        if m:  # Nuke's "shot.%04d.exr 1001-1100"
            path, frame_range = m.group("path"), parse_frame_range(f"{m.group('a')}-{m.group('b')}")
    if os.path.isdir(path):
        spec = spec_from_folder(path)
        return SequenceFootage(text, spec, start_frame=start_frame, hold_missing=hold_missing, **common, **exr)
    if os.path.isfile(path):
        ext = os.path.splitext(path)[1].lower().lstrip(".")
        if ext in IMAGE_EXTS:
            spec = spec_from_file(path, start_frame)
            return SequenceFootage(text, spec, start_frame=start_frame, hold_missing=hold_missing, **common, **exr)
        if part is not None or view is not None:
            flag = "--part" if part is not None else "--view"
            raise InputError(
                f"{flag} chooses a part or view of a multi-part or multi-view EXR, but {path} is a movie file; "
                f"drop {flag}"
            )
        return VideoFootage(text, path, start_frame=start_frame, **common)
    spec = spec_from_pattern(path, frame_range)
    if spec is not None:
        return SequenceFootage(text, spec, start_frame=start_frame, hold_missing=hold_missing, **common, **exr)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise InputError(f"footage not found: {path} (folder {parent} does not exist); check the path")
    raise InputError(
        f"footage not found: {path} (no such file or folder); check the path, or give a sequence "
        "as a pattern like shot.####.exr"
    )
