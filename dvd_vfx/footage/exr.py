"""OpenEXR plates: a small header reader (for cheap per-frame probing) and the pixel reader.

Headers are parsed here from the file format (magic, version flags, attribute list) so that
probing a 1000-frame sequence reads ~1 KB per frame and sees channel pixel types, which the
bindings' header-only mode does not expose. Pixels are read with the OpenEXR bindings
(`OpenEXR.File`, any compression, scanline or tiled), one frame at a time.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from dvd_vfx.errors import InputError

from .base import log, one_line
from .colour import BadPixels, resize_plane, sanitise_plane

EXR_MAGIC = b"\x76\x2f\x31\x01"
PIXEL_TYPES = {0: "uint", 1: "half", 2: "float"}
BIT_DEPTHS = {"uint": 32, "half": 16, "float": 32}


@dataclass
class ExrPart:
    channels: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # name -> (type, xs, ys)
    data_window: tuple[int, int, int, int] | None = None
    display_window: tuple[int, int, int, int] | None = None
    pixel_aspect: float = 1.0
    fps: Fraction | None = None
    part_type: str | None = None
    name: str | None = None


@dataclass
class ExrHeader:
    path: str
    parts: list[ExrPart]
    deep: bool
    tiled: bool


def _bad_exr(path: str, why: str) -> InputError:
    return InputError(f"{path} is not a readable OpenEXR file ({why}); re-render or re-export it")


def read_exr_header(path: str) -> ExrHeader:
    """Parse the header(s) of an EXR file without touching pixel data."""
    try:
        with open(path, "rb") as f:
            chunk = f.read(1 << 16)  # headers are small: parse from memory, not byte reads
            try:
                version, parts = _parse_headers(io.BytesIO(chunk), path)
            except _Truncated:
                if len(chunk) < 1 << 16:
                    raise _bad_exr(path, "header is truncated") from None
                f.seek(0)
                version, parts = _parse_headers(f, path)  # a huge header: read it from the file
    except _Truncated:
        raise _bad_exr(path, "header is truncated") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}; check the file and its permissions") from None
    tiled = bool(version & 0x200)
    deep = bool(version & 0x800)
    if not parts:
        raise _bad_exr(path, "no image parts")
    if any(p.part_type and "deep" in p.part_type for p in parts):
        deep = True
    for p in parts:
        if p.data_window is None or p.display_window is None:
            raise _bad_exr(path, "header has no data or display window")
    return ExrHeader(path=path, parts=parts, deep=deep, tiled=tiled)


class _Truncated(Exception):
    pass


def _parse_headers(f, path: str) -> tuple[int, list[ExrPart]]:
    if f.read(4) != EXR_MAGIC:
        raise _bad_exr(path, "wrong magic number")
    (version,) = struct.unpack("<i", _read(f, 4, path))
    multipart = bool(version & 0x1000)
    parts = []
    while True:
        part = _read_one_header(f, path)
        if part is None:  # empty header: end of the multi-part header list
            break
        parts.append(part)
        if not multipart:
            break
    return version, parts


def _read(f, n: int, path: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise _Truncated
    return data


def _cstr(f, path: str) -> str:
    out = bytearray()
    while True:
        b = f.read(1)
        if not b:
            raise _Truncated
        if b == b"\0":
            return out.decode("latin-1")
        out += b
        if len(out) > 256:
            raise _bad_exr(path, "header is corrupt")


def _read_one_header(f, path: str) -> ExrPart | None:
    part = ExrPart()
    first = True
    while True:
        name = _cstr(f, path)
        if not name:
            return None if first else part
        first = False
        kind = _cstr(f, path)
        (size,) = struct.unpack("<i", _read(f, 4, path))
        if size < 0 or size > 1 << 28:
            raise _bad_exr(path, "header is corrupt")
        value = _read(f, size, path)
        if kind == "chlist":
            part.channels = _parse_chlist(value, path)
        elif kind == "box2i" and name in ("dataWindow", "displayWindow") and size == 16:
            box = struct.unpack("<4i", value)
            if name == "dataWindow":
                part.data_window = box
            else:
                part.display_window = box
        elif name == "pixelAspectRatio" and kind == "float" and size == 4:
            part.pixel_aspect = struct.unpack("<f", value)[0]
        elif name == "framesPerSecond" and kind == "rational" and size == 8:
            num, den = struct.unpack("<iI", value)
            if num > 0 and den > 0:
                part.fps = Fraction(num, den)
        elif name == "type" and kind == "string":
            part.part_type = value.decode("latin-1")
        elif name == "name" and kind == "string":
            part.name = value.decode("latin-1")


def _parse_chlist(value: bytes, path: str) -> dict[str, tuple[str, int, int]]:
    channels = {}
    pos = 0
    while pos < len(value):
        end = value.find(b"\0", pos)
        if end < 0:
            raise _bad_exr(path, "channel list is corrupt")
        name = value[pos:end].decode("latin-1")
        if not name:
            break
        if end + 17 > len(value):
            raise _bad_exr(path, "channel list is corrupt")
        ptype, _plinear, xs, ys = struct.unpack("<iB3xii", value[end + 1:end + 17])
        channels[name] = (PIXEL_TYPES.get(ptype, "unknown"), xs, ys)
        pos = end + 17
    return channels


# ---------------------------------------------------------------------------------------------
# which channels make the picture


@dataclass
class ExrLayout:
    """The channels used for the picture, chosen from one frame's header."""

    part_index: int
    names: tuple[str, ...]  # 3 names (R, G, B) or 1 (Y -> grey)
    pixel_type: str
    data_window: tuple[int, int, int, int]
    display_window: tuple[int, int, int, int]
    pixel_aspect: float
    fps: Fraction | None

    @property
    def size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.display_window
        return x1 - x0 + 1, y1 - y0 + 1


def choose_layout(header: ExrHeader, frame_label: str) -> ExrLayout:
    """Pick R,G,B (or Y, or the one layer with R,G,B) from the first part that has them."""
    if header.deep:
        raise InputError(
            f"{frame_label} is a deep EXR; write the plate as a flat (scanline or tiled) EXR"
        )
    for index, part in enumerate(header.parts):
        names = _pick_channels(part.channels, frame_label)
        if not names:
            continue
        types = {part.channels[n][0] for n in names}
        for n in names:
            _type, xs, ys = part.channels[n]
            if xs != 1 or ys != 1:
                raise InputError(
                    f"{frame_label}: channel {n} is subsampled ({xs}x{ys}); write the plate with "
                    "full-resolution R, G, B channels"
                )
        ptype = "float" if "float" in types else ("uint" if "uint" in types else "half")
        return ExrLayout(
            part_index=index,
            names=names,
            pixel_type=ptype,
            data_window=part.data_window,
            display_window=part.display_window,
            pixel_aspect=part.pixel_aspect,
            fps=part.fps,
        )
    found = sorted({n for part in header.parts for n in part.channels})
    shown = ", ".join(found[:16]) + (f", ... ({len(found) - 16} more)" if len(found) > 16 else "")
    raise InputError(
        f"{frame_label} has no R, G, B or Y channels (found: {shown or 'none'}); "
        "write the plate with R, G, B channels"
    )


def _pick_channels(channels: dict, frame_label: str) -> tuple[str, ...] | None:
    if {"R", "G", "B"} <= channels.keys():
        return ("R", "G", "B")
    if "Y" in channels:
        return ("Y",)
    layers = sorted(
        name[:-1] for name in channels
        if name.endswith(".R") and name[:-1] + "G" in channels and name[:-1] + "B" in channels
    )
    if not layers:
        return None
    if len(layers) > 1:
        log.warning(
            "%s has no plain R, G, B channels; using layer %s (also found: %s)",
            frame_label, layers[0].rstrip("."), ", ".join(x.rstrip(".") for x in layers[1:]),
        )
    p = layers[0]
    return (p + "R", p + "G", p + "B")


# ---------------------------------------------------------------------------------------------
# pixels


def read_exr_frame(
    path: str,
    layout: ExrLayout,
    width: int,
    height: int,
    frame_label: str,
) -> tuple[np.ndarray, BadPixels]:
    """Read one EXR frame as linear float32 [height, width, 3], sanitised, resized.

    Memory: the stored channels of one frame plus one plate-size float32 plane at a time.
    """
    import OpenEXR

    try:
        exr = OpenEXR.File(path, separate_channels=True)
        part = exr.parts[layout.part_index]
        arrays = [part.channels[n].pixels for n in layout.names]
    except (RuntimeError, OSError, KeyError, IndexError, ValueError) as exc:
        raise InputError(
            f"cannot read {frame_label}: {one_line(exc, 160)}; the file may be truncated or damaged, "
            "re-render it (or remove it and pass --hold-missing)"
        ) from None
    del exr, part  # keep only the channels we use
    dsp = layout.display_window
    plate_w, plate_h = layout.size
    bad = BadPixels()
    planes = []
    while arrays:
        src = arrays.pop(0)
        try:
            plane = _place(src, layout.data_window, dsp, plate_w, plate_h)
        except ValueError as exc:
            raise InputError(f"cannot read {frame_label}: {exc}; re-render it") from None
        del src
        bad.add(sanitise_plane(plane))
        planes.append(resize_plane(plane, width, height))
        del plane
    if len(planes) == 1:
        rgb = np.repeat(planes[0][:, :, None], 3, axis=2)
    else:
        rgb = np.stack(planes, axis=2)
    return rgb, bad


def _place(src: np.ndarray, dw, dsp, plate_w: int, plate_h: int) -> np.ndarray:
    """Float32 plate-size plane: the data window pasted into the display window, black outside."""
    if src.shape != (dw[3] - dw[1] + 1, dw[2] - dw[0] + 1):
        raise ValueError(f"channel size {src.shape} does not match the data window {dw}")
    if tuple(dw) == tuple(dsp):
        return src.astype(np.float32)  # copy: we sanitise in place
    plane = np.zeros((plate_h, plate_w), dtype=np.float32)
    x0, y0 = max(dw[0], dsp[0]), max(dw[1], dsp[1])
    x1, y1 = min(dw[2], dsp[2]), min(dw[3], dsp[3])
    if x0 <= x1 and y0 <= y1:
        plane[y0 - dsp[1]:y1 - dsp[1] + 1, x0 - dsp[0]:x1 - dsp[0] + 1] = src[
            y0 - dw[1]:y1 - dw[1] + 1, x0 - dw[0]:x1 - dw[0] + 1
        ]
    return plane
