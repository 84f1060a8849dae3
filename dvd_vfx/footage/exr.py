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
    view: str | None = None  # multi-part multi-view: this part's view
    multi_view: tuple[str, ...] = ()  # single-part multi-view: the views (the first is the default)


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
        elif name == "view" and kind == "string":
            part.view = value.decode("latin-1")
        elif name == "multiView" and kind == "stringvector":
            part.multi_view = tuple(_parse_stringvector(value, path))


def _parse_stringvector(value: bytes, path: str) -> list[str]:
    items, pos = [], 0
    while pos + 4 <= len(value):
        (n,) = struct.unpack("<i", value[pos:pos + 4])
        if n < 0 or pos + 4 + n > len(value):
            raise _bad_exr(path, "string list is corrupt")
        items.append(value[pos + 4:pos + 4 + n].decode("latin-1"))
        pos += 4 + n
    return items


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
    part_name: str | None = None
    view: str | None = None
    description: str | None = None  # which part/view/channels, and what else the file has (for info)

    @property
    def size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.display_window
        return x1 - x0 + 1, y1 - y0 + 1


@dataclass
class _Candidate:
    index: int  # part
    view: str | None
    channels: dict  # name as seen in this view (R, G, B, layer.R, ...) -> the file's channel name


def _part_label(header: ExrHeader, index: int) -> str:
    name = header.parts[index].name
    return f'{index} "{name}"' if name else str(index)


def _candidates(header: ExrHeader) -> list[_Candidate]:
    """Every (part, view) of the file in order: parts in file order, a multi-view part's default view first."""
    out = []
    for index, part in enumerate(header.parts):
        views = part.multi_view
        if not views:
            out.append(_Candidate(index, part.view, {n: n for n in part.channels}))
            continue
        for view in views:
            channels = {}
            for name in part.channels:
                pieces = name.split(".")
                if len(pieces) >= 2 and pieces[-2] in views:  # layer.view.channel or view.channel
                    if pieces[-2] == view:
                        channels[".".join(pieces[:-2] + pieces[-1:])] = name
                elif view == views[0]:  # no view in the name: the default view's channel
                    channels[name] = name
            out.append(_Candidate(index, view, channels))
    return out


def _find_part(header: ExrHeader, part: str, frame_label: str) -> int:
    names = [p.name for p in header.parts]
    if part in names:
        return names.index(part)
    if str(part).strip().isdigit() and int(part) < len(header.parts):
        return int(part)
    listed = ", ".join(_part_label(header, i) for i in range(len(header.parts)))
    raise InputError(
        f"{frame_label} has no part {part!r} (parts: {listed}); pass --part with one of those names or numbers"
    )


def choose_layout(header: ExrHeader, frame_label: str, part: str | None = None,
                  view: str | None = None) -> ExrLayout:
    """Pick R,G,B (or Y, or the one layer with R,G,B) from the first part/view that has them.

    part: a part's name or number (0 = first); view: a view of a multi-view file (multi-part
    with `view` attributes, or single-part with a `multiView` list). None = the first part
    with a picture, in its default view.
    """
    if header.deep:
        raise InputError(
            f"{frame_label} is a deep EXR; write the plate as a flat (scanline or tiled) EXR"
        )
    everything = _candidates(header)
    candidates = everything
    if part is not None:
        index = _find_part(header, part, frame_label)
        candidates = [c for c in candidates if c.index == index]
    if view is not None:
        views = sorted({c.view for c in everything if c.view is not None})
        if not views:
            raise InputError(f"{frame_label} has no views (it is not a multi-view EXR); drop --view {view}")
        candidates = [c for c in candidates if c.view == view]
        if not candidates:
            where = f" in part {_part_label(header, index)}" if part is not None else ""
            raise InputError(
                f"{frame_label} has no view {view!r}{where} (views: {', '.join(views)}); "
                "pass --view with one of those"
            )
    usable = []
    for cand in candidates:
        names = _pick_channels(cand.channels, frame_label, quiet=bool(usable))
        if names:
            usable.append((cand, tuple(cand.channels[n] for n in names)))
    if not usable:
        searched = candidates or everything
        found = sorted({n for c in searched for n in c.channels.values()})
        shown = ", ".join(found[:16]) + (f", ... ({len(found) - 16} more)" if len(found) > 16 else "")
        where = ""
        if part is not None or view is not None:
            where = " in the " + " and ".join(
                x for x in (part is not None and f"part {part!r}", view is not None and f"view {view!r}") if x)
        raise InputError(
            f"{frame_label} has no R, G, B or Y channels{where} (found: {shown or 'none'}); "
            "write the plate with R, G, B channels" + (", or choose another --part / --view" if where else "")
        )
    cand, names = usable[0]
    chosen = header.parts[cand.index]
    for n in names:
        _type, xs, ys = chosen.channels[n]
        if xs != 1 or ys != 1:
            raise InputError(
                f"{frame_label}: channel {n} is subsampled ({xs}x{ys}); write the plate with "
                "full-resolution R, G, B channels"
            )
    types = {chosen.channels[n][0] for n in names}
    ptype = "float" if "float" in types else ("uint" if "uint" in types else "half")
    description = _describe_choice(header, everything, usable, cand, names)
    if len(usable) > 1 and part is None and view is None:
        others = "; ".join(_where(header, c) for c, _ in usable[1:4]) + ("; ..." if len(usable) > 4 else "")
        log.warning(
            "%s: using %s; it also has a picture in %s: choose with --part / --view",
            frame_label, _where(header, cand), others,
        )
    return ExrLayout(
        part_index=cand.index,
        names=names,
        pixel_type=ptype,
        data_window=chosen.data_window,
        display_window=chosen.display_window,
        pixel_aspect=chosen.pixel_aspect,
        fps=chosen.fps,
        part_name=chosen.name,
        view=cand.view,
        description=description,
    )


def _where(header: ExrHeader, cand: _Candidate) -> str:
    text = f"part {_part_label(header, cand.index)}" if len(header.parts) > 1 else ""
    if cand.view is not None:
        text += (" " if text else "") + f"view {cand.view}"
    return text or "the image"


def _describe_choice(header: ExrHeader, everything, usable, cand: _Candidate, names) -> str | None:
    """'part 1 "rgba" (of 0 "depth", 1 "rgba"), view left (of left, right), channels R, G, B' for info;
    None for a plain single-part, single-view file read from its R, G, B channels."""
    views = []
    for c in everything:
        if c.view is not None and c.view not in views:
            views.append(c.view)
    if len(header.parts) == 1 and not views and names == ("R", "G", "B"):
        return None
    bits = []
    if len(header.parts) > 1:
        listed = ", ".join(_part_label(header, i) for i in range(len(header.parts)))
        bits.append(f"part {_part_label(header, cand.index)} (of {listed})")
    if views:
        bits.append(f"view {cand.view} (of {', '.join(views)})")
    bits.append("channels " + ", ".join(names))
    text = ", ".join(bits)
    if len(header.parts) > 1 or len(views) > 1:
        text += "; choose with --part / --view"
    return text


def _pick_channels(channels: dict, frame_label: str, quiet: bool = False) -> tuple[str, ...] | None:
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
    if len(layers) > 1 and not quiet:
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
