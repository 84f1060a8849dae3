"""Read a depth pass frame back: the ``depth.Z`` channel (else ``Z``, else the only channel).

The counterpart of :mod:`dvd_vfx.passes.exr` for consumers such as :mod:`dvd_vfx.comp`. A data
window smaller than the display window is placed into it; pixels outside the data window have
no depth and come back as NaN (callers decide what that means: comp treats it as "far").
"""

from __future__ import annotations

import os

import numpy as np

from dvd_vfx.errors import InputError

__all__ = ["DEPTH_CHANNELS", "read_depth"]

#: Channel names tried in order; a file with exactly one channel is read whatever its name.
DEPTH_CHANNELS = ("depth.Z", "Z", "depth.z", "z")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__


def read_depth(path) -> tuple[np.ndarray, dict[str, object]]:
    """``(depth float32 [H, W] at display-window size, dvd/ attributes without the prefix)``."""
    import OpenEXR

    from dvd_vfx.passes.exr import read_pass_attributes

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"depth pass frame not found: {path}; render it with `dvd-vfx render` or fix --depth")
    try:
        exr = OpenEXR.File(path, separate_channels=True)
        part = exr.parts[0]
        channels = part.channels
        header = part.header
    except (RuntimeError, OSError, IndexError, ValueError) as exc:
        raise InputError(f"cannot read depth pass {path}: {_one_line(exc)}; re-render it") from None
    name = next((n for n in DEPTH_CHANNELS if n in channels), None)
    if name is None and len(channels) == 1:
        name = next(iter(channels))
    if name is None:
        found = ", ".join(sorted(channels)[:16]) or "none"
        raise InputError(
            f"{path} has no depth channel (looked for {', '.join(DEPTH_CHANNELS[:2])}; found: {found}); "
            "pass a depth pass written by `dvd-vfx render`"
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
    try:
        attributes = read_pass_attributes(path)
    except (RuntimeError, OSError, ValueError):
        attributes = {}
    return depth, attributes
