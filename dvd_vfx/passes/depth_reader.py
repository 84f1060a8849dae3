"""Read a depth pass frame back: ``depth.Z`` (else ``<layer>.Depth.Z``, else ``Z``, else the only channel).

The counterpart of :mod:`dvd_vfx.passes.exr` for consumers such as :mod:`dvd_vfx.comp`. A data
window smaller than the display window is placed into it; pixels outside the data window have
no depth and come back as NaN (callers decide what that means: comp treats it as "far").
"""

from __future__ import annotations

import os

import numpy as np

from dvd_vfx.errors import InputError

__all__ = ["DEPTH_CHANNELS", "pick_depth_channel", "read_depth", "read_depth_channel"]

#: Channel names tried in order; a file with exactly one channel is read whatever its name.
DEPTH_CHANNELS = ("depth.Z", "Z", "depth.z", "z")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__


def pick_depth_channel(channels) -> str | None:
    """The depth channel among ``channels``: ``depth.Z``, then any ``<layer>.Depth.Z`` (Blender's
    ``ViewLayer.Depth.Z``), then ``Z`` (then lower-case spellings), else the only channel; None."""
    if "depth.Z" in channels:
        return "depth.Z"
    layered = sorted(n for n in channels if n.endswith(".Depth.Z"))
    if layered:
        return layered[0]
    name = next((n for n in DEPTH_CHANNELS[1:] if n in channels), None)
    if name is None and len(channels) == 1:
        name = next(iter(channels))
    return name


def read_depth_channel(
    path,
    *,
    what: str = "depth pass",
    missing_hint: str = "render it with `dvd-vfx render` or fix --depth",
    fix_hint: str = "pass a depth pass written by `dvd-vfx render`",
) -> tuple[np.ndarray, str, dict]:
    """``(depth float32 [H, W] at display-window size, channel name, header)`` of one EXR file.

    The channel is chosen by :func:`pick_depth_channel` in the first part that has one. ``what``
    names the file in errors, the hints say what to do (missing file / unusable file)."""
    import OpenEXR

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{what} frame not found: {path}; {missing_hint}")
    try:
        exr = OpenEXR.File(path, separate_channels=True)
        parts = [(part.channels, part.header) for part in exr.parts]
    except (RuntimeError, OSError, IndexError, ValueError) as exc:
        raise InputError(f"cannot read {what} {path}: {_one_line(exc)}; {fix_hint}") from None
    name = None
    for channels, header in parts:
        name = pick_depth_channel(channels)
        if name is not None:
            break
    if name is None:
        found = sorted({n for channels, _ in parts for n in channels})
        shown = ", ".join(found[:16]) + (f", ... ({len(found) - 16} more)" if len(found) > 16 else "")
        raise InputError(
            f"{path} has no depth channel (looked for depth.Z, <layer>.Depth.Z, Z; found: {shown or 'none'}); "
            f"{fix_hint}"
        )
    src = np.asarray(channels[name].pixels, dtype=np.float32)
    dw = [int(v) for v in (*header["dataWindow"][0], *header["dataWindow"][1])]
    dsp = [int(v) for v in (*header["displayWindow"][0], *header["displayWindow"][1])]
    if dw == dsp:
        depth = np.array(src, dtype=np.float32)
    else:
        depth = np.full((dsp[3] - dsp[1] + 1, dsp[2] - dsp[0] + 1), np.nan, dtype=np.float32)
        x0, y0, x1, y1 = max(dw[0], dsp[0]), max(dw[1], dsp[1]), min(dw[2], dsp[2]), min(dw[3], dsp[3])
        if x0 <= x1 and y0 <= y1:
            depth[y0 - dsp[1]:y1 - dsp[1] + 1, x0 - dsp[0]:x1 - dsp[0] + 1] = src[
                y0 - dw[1]:y1 - dw[1] + 1, x0 - dw[0]:x1 - dw[0] + 1
            ]
    return depth, name, header


def read_depth(path) -> tuple[np.ndarray, dict[str, object]]:
    """``(depth float32 [H, W] at display-window size, dvd/ attributes without the prefix)``."""
    from dvd_vfx.passes.exr import read_pass_attributes

    path = os.fspath(path)
    depth, _name, _header = read_depth_channel(path)
    try:
        attributes = read_pass_attributes(path)
    except (RuntimeError, OSError, ValueError):
        attributes = {}
    return depth, attributes
