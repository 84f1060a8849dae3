"""Just enough OpenEXR to read one value of a depth pass and its header (standard library only).

Blender loads a ``depth.Z`` EXR as a multilayer image whose pixels Python cannot read, so the
focus picker reads the file itself: single-part scanline files with NONE, RLE, ZIPS or ZIP
compression (what dvd-vfx writes by default; PIZ is refused with a message), FLOAT or HALF
channels. Layout per the OpenEXR file format: magic, version, header attributes
(name, type, size, value) up to an empty name, the line offset table, then chunks of
(y, data size, data) with channels in name order, each scanline's values for one channel
together, little-endian. https://openexr.com/en/latest/OpenEXRFileLayout.html
"""

from __future__ import annotations

import json
import struct
import zlib

MAGIC = 20000630
_COMPRESSION = {0: "none", 1: "rle", 2: "zips", 3: "zip", 4: "piz"}
_LINES = {0: 1, 1: 1, 2: 1, 3: 16}


class ExrError(ValueError):
    pass


def _cstr(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(b"\0", pos)
    return data[pos:end].decode("latin-1"), end + 1


def read_header(data: bytes) -> tuple[dict, int]:
    if len(data) < 8 or struct.unpack_from("<i", data, 0)[0] != MAGIC:
        raise ExrError("not an OpenEXR file")
    if struct.unpack_from("<i", data, 4)[0] & 0x1200:  # tiled or multi-part
        raise ExrError("tiled or multi-part EXR: expected a scanline depth pass")
    pos, header = 8, {}
    while True:
        name, pos = _cstr(data, pos)
        if not name:
            return header, pos
        kind, pos = _cstr(data, pos)
        size = struct.unpack_from("<i", data, pos)[0]
        pos += 4
        raw = data[pos:pos + size]
        pos += size
        if kind == "chlist":
            channels, p = [], 0
            while raw[p:p + 1] != b"\0":
                cname, p = _cstr(raw, p)
                ptype = struct.unpack_from("<i", raw, p)[0]
                channels.append((cname, ptype))
                p += 16
            header[name] = channels
        elif kind == "box2i":
            header[name] = struct.unpack_from("<4i", raw)
        elif kind == "compression":
            header[name] = raw[0]
        elif kind == "string":
            header[name] = raw.decode("utf-8", "replace")
        else:
            header[name] = raw


def _undo_zip(raw: bytes) -> bytes:
    t = bytearray(zlib.decompress(raw))
    for i in range(1, len(t)):  # predictor
        t[i] = (t[i - 1] + t[i] - 128) & 0xFF
    half = (len(t) + 1) // 2
    out = bytearray(len(t))
    out[0::2] = t[:half]
    out[1::2] = t[half:]
    return bytes(out)


def _undo_rle(raw: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(raw):
        n = struct.unpack_from("b", raw, i)[0]
        i += 1
        if n < 0:
            out += raw[i:i - n]
            i -= n
        else:
            out += raw[i:i + 1] * (n + 1)
            i += 1
    t = out
    for j in range(1, len(t)):
        t[j] = (t[j - 1] + t[j] - 128) & 0xFF
    half = (len(t) + 1) // 2
    res = bytearray(len(t))
    res[0::2] = t[:half]
    res[1::2] = t[half:]
    return bytes(res)


def read_value(path: str, x: int, y: int, channel: str = "depth.Z") -> float:
    """The value of `channel` at pixel (x, y), counted from the TOP-left of the data window."""
    with open(path, "rb") as f:
        data = f.read()
    header, pos = read_header(data)
    xmin, ymin, xmax, ymax = header["dataWindow"]
    width, height = xmax - xmin + 1, ymax - ymin + 1
    if not (0 <= x < width and 0 <= y < height):
        raise ExrError(f"{path}: pixel ({x}, {y}) is outside the {width}x{height} pass")
    comp = _COMPRESSION.get(header.get("compression", 0))
    if comp not in ("none", "rle", "zips", "zip"):
        raise ExrError(f"{path}: {comp or 'this'} compression is not read by the add-on; render the pass with "
                       f"--compression zip")
    channels = sorted(header["channels"])
    names = [c for c, _ in channels]
    if channel not in names:
        raise ExrError(f"{path} has no channel {channel} (it has {', '.join(names)})")
    lines = _LINES[header.get("compression", 0)]
    chunk = y // lines
    offset = struct.unpack_from("<Q", data, pos + 8 * chunk)[0]
    size = struct.unpack_from("<i", data, offset + 4)[0]
    raw = data[offset + 8:offset + 8 + size]
    rows = min(lines, height - chunk * lines)
    bytes_per = [4 if t == 2 else 2 if t == 1 else 4 for _, t in channels]
    expected = rows * width * sum(bytes_per)
    if len(raw) < expected:
        raw = _undo_zip(raw) if comp in ("zip", "zips") else _undo_rle(raw) if comp == "rle" else raw
    row = y - chunk * lines
    p = row * width * sum(bytes_per)
    for (name, ptype), nbytes in zip(channels, bytes_per):
        if name == channel:
            p += x * nbytes
            if ptype == 2:
                return struct.unpack_from("<f", raw, p)[0]
            if ptype == 1:
                return struct.unpack_from("<e", raw, p)[0]
            return float(struct.unpack_from("<I", raw, p)[0])
        p += width * nbytes
    raise ExrError(f"{path}: channel {channel} not found")  # unreachable: checked above


def read_size(path: str) -> tuple[int, int]:
    """(width, height) of the data window."""
    with open(path, "rb") as f:
        header, _ = read_header(f.read(1 << 16))
    xmin, ymin, xmax, ymax = header["dataWindow"]
    return xmax - xmin + 1, ymax - ymin + 1


def read_anchors_header(path: str) -> dict | None:
    """The ``dvd/anchors`` header (the scene-scale fit) of a pass file, or None."""
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    try:
        header, _ = read_header(data)
    except (ExrError, ValueError, struct.error):
        return None
    text = header.get("dvd/anchors")
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
