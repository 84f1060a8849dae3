"""Anchors from a camera solve: project a matchmove's 3D points through its per-frame camera.

``dvd-vfx anchors from-camera --points POINTS --camera CAMERA -o anchors.csv`` writes the CSV that
``--anchors`` reads (``frame,x,y,depth``), one row per point per frame where the point is in front
of the camera and inside the plate.

Conventions (docs/anchors.md says the same for users):

- World and camera: right-handed, +Y up; the camera looks down its local -Z, +X is screen right
  (Nuke, Blender, Maya, OpenGL). ``depth`` is the distance along the viewing axis (-z in camera
  space), in the solve's units: what a renderer's Z pass holds, not the distance to the eye.
- Nuke ``.chan``: ``frame tx ty tz rx ry rz [vfov]`` per line, angles in degrees, the camera's
  world transform with Nuke's defaults: scale-rotate-translate, rotation order ZXY (rz applied
  first, then rx, then ry: R = Ry Rx Rz; ``rotation_order`` changes it), ``vfov`` the vertical
  field of view in degrees.
- JSON: ``{"width", "height", "intrinsics": {...}, "frames": [{"frame", "matrix", ...}]}`` with
  ``matrix`` the 4x4 camera-to-world matrix, row-major (translation in the last column, bottom row
  0 0 0 1), and intrinsics ``focal_px`` | ``fx``,``fy`` | ``focal_mm`` + ``film_back_mm``,
  optional ``cx``, ``cy`` (pixels from the top-left; default the centre); a frame's own keys
  override the top-level ones.
- Intrinsics from millimetres: the film back's width spans the plate's width (Nuke's and
  Blender's horizontal fit): fx = focal / film_width * width, fy = fx * pixel_aspect.
- Pixels: x, y from the top-left corner of the display window, a pixel's centre at +0.5; the
  principal point defaults to (width / 2, height / 2). Lens distortion is not modelled: project
  onto the undistorted plate (or expect errors of the distortion's size near the edges).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dvd_vfx.anchors import csv_text
from dvd_vfx.errors import InputError
from dvd_vfx.fsutil import write_atomic

ROTATION_ORDERS = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")
DEFAULT_ROTATION_ORDER = "ZXY"  # Nuke's Camera default
DEFAULT_MIN_DEPTH = 1e-6
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


# ---------------------------------------------------------------------------------------------
# points


def read_points(path) -> np.ndarray:
    """3D points [N, 3] (float64) from a CSV/TXT (x,y,z per row, header and a name column
    optional), an OBJ (``v`` lines) or a PLY (ASCII or binary vertices)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"--points {path}: cannot read it ({exc.strerror or exc})") from None
    if suffix == ".ply" or data.startswith(b"ply"):
        points = _read_ply(path, data)
    elif suffix == ".obj":
        points = _read_obj(path, data)
    elif suffix in (".csv", ".txt", ".xyz", ".pts", ""):
        points = _read_table(path, data)
    else:
        raise InputError(f"--points {path}: unknown point format {suffix!r}; give a .csv/.txt (x,y,z per row), "
                         ".obj (v lines) or .ply file")
    if len(points) == 0:
        raise InputError(f"--points {path}: no points in it")
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        raise InputError(f"--points {path}: point #{int(np.flatnonzero(bad)[0])} is not finite ({points[bad][0]})")
    return points


def _text(path: Path, data: bytes) -> list[str]:
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"--points {path}: not a text file (expected x,y,z rows)") from None


def _is_number(text: str) -> bool:
    return bool(_NUMBER.match(text.strip()))


def _read_table(path: Path, data: bytes) -> np.ndarray:
    rows = []
    columns = None  # indices of x, y, z when the file has a header
    for number, line in enumerate(_text(path, data), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = [f.strip() for f in (stripped.split(",") if "," in stripped else stripped.split())]
        if columns is None and not rows and not all(_is_number(f) for f in fields[-3:]):
            names = [f.lower() for f in fields]
            if not all(k in names for k in "xyz"):
                raise InputError(f"--points {path} line {number}: a header must name the columns x, y, z "
                                 f"(got {stripped!r}); or give rows of x,y,z numbers (an optional name first)")
            columns = [names.index(k) for k in "xyz"]
            continue
        try:
            if columns is not None:
                values = [float(fields[i]) for i in columns]
            else:
                start = 0 if _is_number(fields[0]) else 1  # a leading point name
                values = [float(v) for v in fields[start:start + 3]]
                if len(values) != 3:
                    raise ValueError
        except (ValueError, IndexError):
            raise InputError(f"--points {path} line {number}: expected x,y,z numbers (an optional name first), "
                             f"got {stripped!r}") from None
        rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def _read_obj(path: Path, data: bytes) -> np.ndarray:
    rows = []
    for number, line in enumerate(_text(path, data), start=1):
        fields = line.split()
        if not fields or fields[0] != "v":
            continue
        try:
            rows.append([float(v) for v in fields[1:4]])
            if len(rows[-1]) != 3:
                raise ValueError
        except ValueError:
            raise InputError(f"--points {path} line {number}: a vertex needs 'v x y z', got {line.strip()!r}") from None
    if not rows:
        raise InputError(f"--points {path}: no 'v x y z' vertex lines in this OBJ")
    return np.asarray(rows, dtype=np.float64)


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


@dataclass
class _PlyElement:
    name: str
    count: int
    properties: list = field(default_factory=list)  # (name, type) or (name, ("list", count_type, item_type))


def _read_ply(path: Path, data: bytes) -> np.ndarray:
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise InputError(f"--points {path}: not a PLY file (no 'ply' ... 'end_header' header)")
    body_start = data.index(b"\n", end) + 1
    fmt = None
    elements: list[_PlyElement] = []
    for number, raw in enumerate(data[:end].decode("ascii", "replace").splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0] in ("ply", "comment", "obj_info"):
            continue
        try:
            if fields[0] == "format":
                fmt = fields[1]
            elif fields[0] == "element":
                elements.append(_PlyElement(fields[1], int(fields[2])))
            elif fields[0] == "property":
                if fields[1] == "list":
                    prop = (fields[4], ("list", _PLY_TYPES[fields[2]], _PLY_TYPES[fields[3]]))
                else:
                    prop = (fields[2], _PLY_TYPES[fields[1]])
                elements[-1].properties.append(prop)
            else:
                raise ValueError
        except (ValueError, IndexError, KeyError):
            raise InputError(f"--points {path} header line {number}: not understood ({raw.strip()!r})") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise InputError(f"--points {path}: PLY format {fmt!r} is not ascii, binary_little_endian or "
                         "binary_big_endian")
    names = [e.name for e in elements]
    if "vertex" not in names:
        raise InputError(f"--points {path}: the PLY has no 'vertex' element (elements: {', '.join(names) or 'none'})")
    vertex = elements[names.index("vertex")]
    props = [p[0] for p in vertex.properties]
    missing = [k for k in "xyz" if k not in props]
    if missing:
        raise InputError(f"--points {path}: the PLY's vertices have no {', '.join(missing)} property "
                         f"(properties: {', '.join(props)})")
    if any(isinstance(p[1], tuple) for p in vertex.properties):
        raise InputError(f"--points {path}: list properties on PLY vertices are not supported")
    body = data[body_start:]
    if fmt == "ascii":
        lines = body.decode("ascii", "replace").splitlines()
        skip = 0
        for e in elements[:names.index("vertex")]:
            skip += e.count
        header_lines = data[:body_start].count(b"\n")
        rows = lines[skip:skip + vertex.count]
        if len(rows) < vertex.count:
            raise InputError(f"--points {path}: the PLY promises {vertex.count} vertices, the file has {len(rows)}")
        idx = [props.index(k) for k in "xyz"]
        out = np.empty((vertex.count, 3))
        for i, line in enumerate(rows):
            fields = line.split()
            try:
                out[i] = [float(fields[j]) for j in idx]
            except (ValueError, IndexError):
                raise InputError(f"--points {path} line {header_lines + skip + i + 1}: expected "
                                 f"{len(props)} numbers ({' '.join(props)}), got {line.strip()!r}") from None
        return out
    order = "<" if fmt == "binary_little_endian" else ">"
    offset = 0
    for e in elements[:names.index("vertex")]:
        if any(isinstance(p[1], tuple) for p in e.properties):
            raise InputError(f"--points {path}: a PLY element with list properties ({e.name}) comes before the "
                             "vertices; write the vertices first")
        offset += e.count * sum(np.dtype(p[1]).itemsize for p in e.properties)
    dtype = np.dtype([(name, order + t) for name, t in vertex.properties])
    need = offset + vertex.count * dtype.itemsize
    if len(body) < need:
        raise InputError(f"--points {path}: the PLY is truncated ({len(body)} bytes of vertex data, "
                         f"{vertex.count} vertices need {need})")
    table = np.frombuffer(body, dtype=dtype, count=vertex.count, offset=offset)
    return np.stack([table[k].astype(np.float64) for k in "xyz"], axis=1)


# ---------------------------------------------------------------------------------------------
# cameras


@dataclass(frozen=True)
class Intrinsics:
    fx: float  # focal length in pixels, horizontal
    fy: float
    cx: float  # principal point, pixels from the top-left corner
    cy: float


@dataclass
class Camera:
    """A per-frame pinhole camera: camera-to-world rotations [F,3,3], positions [F,3], intrinsics."""

    source: str
    frames: np.ndarray  # int64 [F]
    rotations: np.ndarray  # camera-to-world, columns = camera axes in world
    positions: np.ndarray
    intrinsics: list[Intrinsics]
    size: tuple[int, int]


def euler_matrix(rx: float, ry: float, rz: float, order: str = DEFAULT_ROTATION_ORDER) -> np.ndarray:
    """Rotation matrix of Euler angles in degrees, ``order`` naming the axes in the order they are
    applied (ZXY: rz first, then rx, then ry; R = Ry @ Rx @ Rz for column vectors)."""
    a = {"X": math.radians(rx), "Y": math.radians(ry), "Z": math.radians(rz)}

    def axis(name: str) -> np.ndarray:
        c, s = math.cos(a[name]), math.sin(a[name])
        if name == "X":
            return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
        if name == "Y":
            return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])

    m = np.eye(3)
    for name in order:
        m = axis(name) @ m
    return m


def parse_film_back(text: str) -> tuple[float, float | None]:
    """'36x24' -> (36, 24); '24.576' -> (24.576, None) (a horizontal aperture), in mm."""
    parts = str(text).lower().replace("mm", "").split("x")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"--film-back {text!r}: write WIDTHxHEIGHT in mm (e.g. 36x24) or the horizontal "
                         "aperture alone (e.g. 24.576)")
    return values[0], (values[1] if len(values) == 2 else None)


def _mm_intrinsics(focal_mm: float, film_width_mm: float, size, pixel_aspect: float = 1.0) -> tuple[float, float]:
    fx = focal_mm / film_width_mm * size[0]
    return fx, fx * pixel_aspect


def read_chan(path, size: tuple[int, int], *, focal_mm: float | None = None, film_back=None,
              pixel_aspect: float = 1.0, rotation_order: str = DEFAULT_ROTATION_ORDER) -> Camera:
    """A Nuke .chan camera (``frame tx ty tz rx ry rz [vfov]`` per line)."""
    path = Path(path)
    order = rotation_order.upper()
    if order not in ROTATION_ORDERS:
        raise InputError(f"--rotation-order {rotation_order!r} is not one of {', '.join(ROTATION_ORDERS)}")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--camera {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if focal_mm is not None and (film_back is None):
        raise InputError(f"--camera {path}: --focal needs --film-back (the film back / aperture in mm, e.g. "
                         "36x24 or Nuke's default horizontal aperture 24.576)")
    frames, rotations, positions, intrinsics = [], [], [], []
    w, h = size
    fixed = _mm_intrinsics(focal_mm, film_back[0], size, pixel_aspect) if focal_mm is not None else None
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            values = [float(v) for v in fields]
            if len(values) not in (7, 8):
                raise ValueError
        except ValueError:
            raise InputError(f"--camera {path} line {number}: expected 'frame tx ty tz rx ry rz [vfov]' (7 or 8 "
                             f"numbers), got {line.strip()!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"--camera {path} line {number}: a value is not finite ({line.strip()!r})")
        frame = values[0]
        if frame != int(frame):
            continue  # a sub-frame sample (motion blur): plates have whole frames
        if fixed is not None:  # --focal: the same for every frame
            fx, fy = fixed
        elif len(values) == 8:
            vfov = values[7]
            if not 0 < vfov < 180:
                raise InputError(f"--camera {path} line {number}: vfov {vfov:g} must be a vertical field of view "
                                 "in degrees, between 0 and 180")
            half = math.tan(math.radians(vfov) / 2)
            if film_back is not None and film_back[1] is not None:  # Nuke: focal from the vertical aperture
                fx, fy = _mm_intrinsics(film_back[1] / (2 * half), film_back[0], size, pixel_aspect)
            else:  # the plate's vertical field of view
                fy = h / 2 / half
                fx = fy / pixel_aspect
        else:
            raise InputError(f"--camera {path} line {number}: no vfov column; pass --focal MM and --film-back "
                             "WxH (mm) for this camera")
        frames.append(int(frame))
        rotations.append(euler_matrix(values[4], values[5], values[6], order))
        positions.append(values[1:4])
        intrinsics.append(Intrinsics(fx, fy, w / 2, h / 2))
    return _camera(str(path), frames, rotations, positions, intrinsics, size)


def read_json_camera(path, size: tuple[int, int] | None, defaults: dict | None = None) -> Camera:
    """A JSON camera: per frame a 4x4 camera-to-world matrix (row-major) and intrinsics.
    ``defaults``: intrinsics keys the file's own override (from --focal/--film-back/--pixel-aspect)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise InputError(f"--camera {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise InputError(f"--camera {path}: not valid JSON ({exc})") from None
    if isinstance(data, list):
        data = {"frames": data}
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or not data["frames"]:
        raise InputError(f"--camera {path}: expected an object with a 'frames' list of "
                         "{frame, matrix[, intrinsics]} objects")
    if size is None:
        try:
            size = (int(data["width"]), int(data["height"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"--camera {path}: the plate size is unknown; give 'width' and 'height' in the file, "
                             "--width/--height or --plate") from None
    top = {**(defaults or {}), **(data.get("intrinsics") or {})}
    frames, rotations, positions, intrinsics = [], [], [], []
    for i, item in enumerate(data["frames"]):
        where = f"--camera {path} frames[{i}]"
        if not isinstance(item, dict):
            raise InputError(f"{where}: expected an object with frame and matrix")
        try:
            frame = item["frame"]
            if isinstance(frame, bool) or float(frame) != int(frame):
                raise ValueError
            m = np.asarray(item["matrix"], dtype=np.float64).reshape(4, 4)
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{where}: needs 'frame' (an integer) and 'matrix' (4x4 camera-to-world, row-major, "
                             "as 4 rows or 16 numbers)") from None
        if not np.isfinite(m).all() or not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
            raise InputError(f"{where}: the matrix's bottom row must be 0 0 0 1 (row-major, translation in the last "
                             f"column); got {m[3].tolist()} - is it transposed?")
        r = m[:3, :3]
        scale = np.linalg.norm(r, axis=0)
        if not np.all(scale > 1e-12):
            raise InputError(f"{where}: the matrix's rotation part is singular")
        r = r / scale  # a scaled camera projects the same: keep its rotation
        if abs(np.linalg.det(r) - 1) > 1e-3 or not np.allclose(r.T @ r, np.eye(3), atol=1e-3):
            raise InputError(f"{where}: the matrix is not a rotation and translation (sheared or mirrored)")
        keys = {**top, **(item.get("intrinsics") or {}), **{k: v for k, v in item.items()
                                                           if k not in ("frame", "matrix", "intrinsics")}}
        frames.append(int(frame))
        rotations.append(r)
        positions.append(m[:3, 3])
        intrinsics.append(_json_intrinsics(keys, size, where))
    return _camera(str(path), frames, rotations, positions, intrinsics, size)


def _json_intrinsics(keys: dict, size, where: str) -> Intrinsics:
    def num(name):
        value = keys.get(name)
        if value is None:
            return None
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and (value > 0 or name in ("cx", "cy"))):
            raise InputError(f"{where}: {name} = {keys.get(name)!r} must be a positive number")
        return value

    aspect = num("pixel_aspect") or 1.0
    if num("fx") is not None:
        fx = num("fx")
        fy = num("fy") or fx * aspect
    elif num("focal_px") is not None:
        fx, fy = num("focal_px"), num("focal_px") * aspect
    elif num("focal_mm") is not None:
        film = keys.get("film_back_mm")
        width = film[0] if isinstance(film, (list, tuple)) and film else film
        try:
            width = float(width)
            if not width > 0:
                raise ValueError
        except (TypeError, ValueError):
            raise InputError(f"{where}: focal_mm needs film_back_mm (width in mm, or [width, height])") from None
        fx, fy = _mm_intrinsics(num("focal_mm"), width, size, aspect)
    else:
        raise InputError(f"{where}: no intrinsics; give focal_px, fx/fy, or focal_mm and film_back_mm (per frame or "
                         "in the top-level 'intrinsics')")
    cx, cy = num("cx"), num("cy")
    return Intrinsics(fx, fy, size[0] / 2 if cx is None else cx, size[1] / 2 if cy is None else cy)


def _camera(source, frames, rotations, positions, intrinsics, size) -> Camera:
    if not frames:
        raise InputError(f"--camera {source}: no whole-frame camera samples in it")
    seen = set()
    for f in frames:
        if f in seen:
            raise InputError(f"--camera {source}: frame {f} appears twice")
        seen.add(f)
    order = np.argsort(frames, kind="stable")
    return Camera(source, np.asarray(frames, dtype=np.int64)[order], np.asarray(rotations)[order],
                  np.asarray(positions, dtype=np.float64)[order], [intrinsics[i] for i in order],
                  (int(size[0]), int(size[1])))


def read_camera(path, size: tuple[int, int] | None, **chan_options) -> Camera:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        defaults = {}
        if chan_options.get("focal_mm") is not None:
            if chan_options.get("film_back") is None:
                raise InputError(f"--camera {path}: --focal needs --film-back (mm, e.g. 36x24)")
            defaults = {"focal_mm": chan_options["focal_mm"], "film_back_mm": list(chan_options["film_back"])}
        if chan_options.get("pixel_aspect", 1.0) != 1.0:
            defaults["pixel_aspect"] = chan_options["pixel_aspect"]
        return read_json_camera(path, size, defaults)
    if suffix in (".chan", ".txt"):
        if size is None:
            raise InputError(f"--camera {path}: a .chan camera needs the plate size: --width and --height, or "
                             "--plate")
        return read_chan(path, size, **chan_options)
    raise InputError(f"--camera {path}: unknown camera format {suffix!r}; give a Nuke .chan file or a .json camera")


# ---------------------------------------------------------------------------------------------
# projection


def project(points, rotation: np.ndarray, position: np.ndarray, k: Intrinsics):
    """Plate pixels (x, y) and view-axis depth of world points through one camera. ``points``: [N,3],
    or its three columns (contiguous x, y, z arrays: faster over many frames)."""
    px, py, pz = (points[:, 0], points[:, 1], points[:, 2]) if isinstance(points, np.ndarray) else points
    r = np.asarray(rotation, dtype=np.float64)
    o = np.asarray(position, dtype=np.float64) @ r
    # local = R^T (p - c), one axis at a time (a [N,3] @ [3,3] product is several times slower)
    lx = px * r[0, 0] + py * r[1, 0] + pz * r[2, 0] - o[0]
    ly = px * r[0, 1] + py * r[1, 1] + pz * r[2, 1] - o[1]
    depth = -(px * r[0, 2] + py * r[1, 2] + pz * r[2, 2] - o[2])
    with np.errstate(divide="ignore", invalid="ignore"):
        x = k.cx + k.fx * lx / depth
        y = k.cy - k.fy * ly / depth
    return x, y, depth


def spread(x: np.ndarray, y: np.ndarray, n: int, size) -> np.ndarray:
    """Indices of ``n`` of the points spread over the image (deterministic): the image is cut into
    a grid of at most ``n`` cells of about equal sides; each cell gives the point nearest its centre,
    then (while more are wanted) its next nearest, best-centred first. Cell centres keep anchors
    off the image's edges and corners, where a pass is most often clipped."""
    if len(x) <= n:
        return np.arange(len(x))
    w, h = float(size[0]), float(size[1])
    cols = max(1, min(n, int(math.floor(math.sqrt(n * w / h)))))
    rows = max(1, n // cols)
    u = np.clip(x / w * cols, 0, cols - 1e-9)
    v = np.clip(y / h * rows, 0, rows - 1e-9)
    cell = v.astype(np.int64) * cols + u.astype(np.int64)
    off = (u - np.floor(u) - 0.5) ** 2 + (v - np.floor(v) - 0.5) ** 2
    order = np.argsort(cell + off)  # by cell, then distance to its centre (< 1)
    sorted_cells = cell[order]
    position = np.arange(len(order))
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_cells[1:] != sorted_cells[:-1]
    rank = position - np.maximum.accumulate(np.where(first, position, 0))  # 0 = the cell's best point
    k = int(np.searchsorted(np.cumsum(np.bincount(rank)), n)) + 1  # ranks 0..k-1 hold at least n points
    cand = order[rank < k]
    pick = cand[np.lexsort((cand, off[cand], rank[rank < k]))][:n]
    return np.sort(pick)


@dataclass
class Projection:
    rows: np.ndarray  # [N, 4] frame, x, y, depth
    frames: int  # frames that gave at least one anchor
    behind: int  # point-frames dropped: behind the camera or closer than min_depth
    outside: int  # point-frames dropped: outside the plate


def select_frames(camera: Camera, frames: tuple[int, int] | None = None, every: int = 1) -> np.ndarray:
    """Indices into the camera's frames: those in ``frames`` (inclusive), every ``every``-th from the first."""
    if every < 1:
        raise InputError(f"--every {every}: give 1 or more")
    numbers = camera.frames
    if frames is not None:
        wanted = np.arange(frames[0], frames[1] + 1)
        missing = np.setdiff1d(wanted, numbers)
        if missing.size:
            from dvd_vfx.footage.base import format_frame_list

            runs = format_frame_list(missing.tolist(), limit=6)
            raise InputError(f"--camera {camera.source}: frames {runs} of --frames {frames[0]}-{frames[1]} are "
                             f"not in the camera (it has {numbers[0]}-{numbers[-1]}); narrow --frames or "
                             "export those frames")
        keep = np.flatnonzero((numbers >= frames[0]) & (numbers <= frames[1]))
    else:
        keep = np.arange(numbers.size)
    first = numbers[keep[0]]
    return keep[(numbers[keep] - first) % every == 0]


def project_points(points: np.ndarray, camera: Camera, *, frames: tuple[int, int] | None = None, every: int = 1,
                   per_frame: int | None = None, min_depth: float = DEFAULT_MIN_DEPTH) -> Projection:
    """Every point through every chosen frame of the camera; those in front of it (depth > min_depth)
    and inside the plate (0 <= x < width, 0 <= y < height), at most ``per_frame`` per frame."""
    if per_frame is not None and per_frame < 1:
        raise InputError(f"--per-frame {per_frame}: give 1 or more")
    if not (math.isfinite(min_depth) and min_depth >= 0):
        raise InputError(f"--min-depth {min_depth}: give a distance >= 0 in scene units")
    w, h = camera.size
    out, behind, outside, used = [], 0, 0, 0
    columns = tuple(np.ascontiguousarray(points[:, j], dtype=np.float64) for j in range(3))
    for i in select_frames(camera, frames, every):
        x, y, depth = project(columns, camera.rotations[i], camera.positions[i], camera.intrinsics[i])
        front = depth > max(min_depth, 0.0)
        inside = front & (x >= 0) & (x < w) & (y >= 0) & (y < h)
        behind += int((~front).sum())
        outside += int((front & ~inside).sum())
        idx = np.flatnonzero(inside)
        if per_frame is not None and idx.size > per_frame:
            idx = idx[spread(x[idx], y[idx], per_frame, camera.size)]
        if idx.size:
            used += 1
            out.append(np.stack([np.full(idx.size, camera.frames[i], dtype=np.float64), x[idx], y[idx], depth[idx]],
                                axis=1))
    rows = np.concatenate(out) if out else np.empty((0, 4))
    return Projection(rows, used, behind, outside)


def write_anchors_csv(rows: np.ndarray, path) -> Path:
    path = Path(path)
    try:
        if not path.parent.is_dir():
            raise FileNotFoundError(2, "folder does not exist")
        return write_atomic(path, csv_text(rows.tolist()))
    except OSError as exc:
        raise InputError(f"-o {path}: cannot write it ({exc.strerror or exc}); pass a writable path") from None


def from_camera(points_path, camera_path, output, *, size: tuple[int, int] | None = None, focal_mm=None,
                film_back=None, pixel_aspect: float = 1.0, rotation_order: str = DEFAULT_ROTATION_ORDER,
                frames=None, every: int = 1, per_frame: int | None = None, frame_offset: int = 0,
                min_depth: float = DEFAULT_MIN_DEPTH, plate_frames=None) -> tuple[Path, Projection, int]:
    """`dvd-vfx anchors from-camera`: read, project, write. Returns (csv path, projection, points).
    ``plate_frames``: the plate's frame numbers (``--plate``); camera frames outside them are skipped."""
    if not (math.isfinite(pixel_aspect) and pixel_aspect > 0):
        raise InputError(f"--pixel-aspect {pixel_aspect}: give a positive number (1 for square pixels)")
    if size is not None and not (size[0] > 0 and size[1] > 0):
        raise InputError(f"--width {size[0]} / --height {size[1]}: give the plate's size in pixels")
    points = read_points(points_path)
    camera = read_camera(camera_path, size, focal_mm=focal_mm, film_back=film_back, pixel_aspect=pixel_aspect,
                         rotation_order=rotation_order)
    if frame_offset:
        camera.frames = camera.frames + int(frame_offset)
    if plate_frames is not None:
        keep = np.isin(camera.frames, np.asarray(list(plate_frames), dtype=np.int64))
        if not keep.any():
            raise InputError(f"--camera {camera_path}: its frames {camera.frames[0]}-{camera.frames[-1]} (after "
                             f"--frame-offset {frame_offset}) are none of the plate's {min(plate_frames)}-"
                             f"{max(plate_frames)}; set --frame-offset (e.g. {min(plate_frames) - camera.frames[0]})")
        camera.frames, camera.rotations, camera.positions = \
            camera.frames[keep], camera.rotations[keep], camera.positions[keep]
        camera.intrinsics = [k for k, ok in zip(camera.intrinsics, keep) if ok]
    result = project_points(points, camera, frames=frames, every=every, per_frame=per_frame, min_depth=min_depth)
    if len(result.rows) == 0:
        raise InputError(f"--points {points_path}: none of its {len(points)} points lies in front of the camera "
                         f"{camera_path} and inside the {camera.size[0]}x{camera.size[1]} plate on any chosen frame "
                         f"({result.behind} point-frames behind the camera, {result.outside} outside the plate); "
                         "check the plate size, the focal length/film back, the rotation order and the axes "
                         "(+Y up, camera looking down -Z)")
    return write_anchors_csv(result.rows, output), result, len(points)
