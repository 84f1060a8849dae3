"""Pixel maths shared by the readers: sanitising, resizing float planes, colour conversion.

Order for float (EXR) plates, per channel and one channel at a time so that a huge plate
never exists as a float32 RGB copy:
    plate-size float32 plane -> sanitise (NaN -> 0, +Inf -> 1, negative -> 0)
    -> resize in linear light (Pillow "F" mode: BOX = area average when reducing,
       BICUBIC when enlarging)
then on the small RGB frame: transfer function (sRGB, or OCIO) -> clip to [0, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from dvd_vfx.errors import InputError

from .base import one_line


@dataclass
class BadPixels:
    """Counts of non-finite / negative values found in one frame."""

    nan: int = 0
    posinf: int = 0
    negative: int = 0  # includes -Inf

    def __bool__(self) -> bool:
        return bool(self.nan or self.posinf or self.negative)

    def add(self, other: BadPixels) -> None:
        self.nan += other.nan
        self.posinf += other.posinf
        self.negative += other.negative

    def describe(self) -> str:
        parts = []
        if self.nan:
            parts.append(f"{self.nan} NaN")
        if self.posinf:
            parts.append(f"{self.posinf} +Inf")
        if self.negative:
            parts.append(f"{self.negative} negative")
        return ", ".join(parts)


def sanitise_plane(plane: np.ndarray) -> BadPixels:
    """In place: NaN -> 0, +Inf -> 1, negatives (and -Inf) -> 0. Returns what was found."""
    bad = BadPixels()
    lo = plane.min(initial=0.0)
    hi = plane.max(initial=0.0)
    if np.isfinite(lo) and np.isfinite(hi) and lo >= 0:
        return bad  # the common case: two cheap passes, nothing to fix
    nan = np.isnan(plane)
    bad.nan = int(nan.sum())
    if bad.nan:
        plane[nan] = 0.0
    del nan
    pos = np.isposinf(plane)
    bad.posinf = int(pos.sum())
    if bad.posinf:
        plane[pos] = 1.0  # linear 1.0 -> display 1.0 after the transfer function
    del pos
    neg = plane < 0
    bad.negative = int(neg.sum())
    if bad.negative:
        plane[neg] = 0.0
    return bad


def resize_plane(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize one float32 plane to width x height (area average down, bicubic up)."""
    h, w = plane.shape
    if (w, h) == (width, height):
        return plane
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
    reducing = width <= w and height <= h
    resample = Image.Resampling.BOX if reducing else Image.Resampling.BICUBIC
    out = np.asarray(img.resize((width, height), resample=resample), dtype=np.float32)
    return np.array(out)  # writable, owns its memory


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Scene-linear -> sRGB-encoded (IEC 61966-2-1 piecewise curve), in place where possible."""
    x = np.clip(linear, 0.0, 1.0, out=linear)
    low = x <= 0.0031308
    out = np.power(x, 1.0 / 2.4, dtype=np.float32)
    out *= 1.055
    out -= 0.055
    out[low] = x[low] * 12.92
    out[x >= 1.0] = 1.0  # exact white (float32 rounding would give 0.99999994)
    return out


@dataclass
class OcioConversion:
    """A CPU processor from an OCIO colourspace to the config's default display/view."""

    colorspace: str
    description: str
    processor: object = field(repr=False)

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.ascontiguousarray(rgb, dtype=np.float32)
        self.processor.applyRGB(rgb)
        return rgb


def make_ocio(colorspace: str) -> OcioConversion:
    """Build the OCIO conversion or fail with a one-line reason (checked at open time)."""
    flag = f"ocio_colorspace {colorspace!r}"
    try:
        import PyOpenColorIO as OCIO  # optional dependency
    except ImportError:
        raise InputError(
            f"{flag} needs OpenColorIO, which is not installed; `pip install opencolorio`, "
            "or leave the OCIO colourspace out to use the built-in sRGB conversion"
        ) from None
    config_path = os.environ.get("OCIO")
    if not config_path:
        raise InputError(
            f"{flag} needs an OCIO config but $OCIO is not set; set OCIO to your config.ocio "
            "(or to ocio://default)"
        )
    try:
        config = OCIO.Config.CreateFromEnv()
    except Exception as exc:  # OCIO raises its own Exception type
        raise InputError(f"cannot load the OCIO config $OCIO={config_path}: {one_line(exc)}; fix $OCIO") from None
    if config.getColorSpace(colorspace) is None:
        names = list(config.getColorSpaceNames())
        shown = ", ".join(names[:12]) + (f", ... ({len(names) - 12} more)" if len(names) > 12 else "")
        raise InputError(
            f"OCIO colourspace {colorspace!r} is not in the config $OCIO={config_path} "
            f"(it has: {shown}); pick one of those"
        )
    try:
        display = config.getDefaultDisplay()
        view = config.getDefaultView(display)
        transform = OCIO.DisplayViewTransform(src=colorspace, display=display, view=view)
        processor = config.getProcessor(transform).getDefaultCPUProcessor()
    except Exception as exc:
        raise InputError(
            f"OCIO cannot convert {colorspace!r} to the default display of $OCIO={config_path}: "
            f"{one_line(exc)}; check the config"
        ) from None
    return OcioConversion(colorspace, f"{colorspace} -> {display} / {view}", processor)


def to_display(rgb: np.ndarray, colorspace: str, ocio: OcioConversion | None) -> np.ndarray:
    """Make a float32 [H, W, 3] frame display-referred and clip it to [0, 1]."""
    if ocio is not None:
        rgb = ocio.apply(rgb)
        np.nan_to_num(rgb, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    elif colorspace == "linear":
        rgb = srgb_encode(rgb)
    return np.clip(rgb, 0.0, 1.0, out=rgb)
