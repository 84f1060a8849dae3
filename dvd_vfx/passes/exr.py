"""EXR depth-pass writer: one single-part scanline OpenEXR file per frame, written atomically.

File layout (what Nuke and Blender expect)
------------------------------------------
* ``<out_dir>/<shot>.depth.<frame>.exr``; the frame is zero-padded to 4 digits like C's
  ``%04d`` (``1001``, ``0007``, ``12345``, ``-005``), which is how Nuke and Blender expand
  ``####``.
* Single part, scanline, lossless compression (ZIP by default; ZIPS, PIZ, RLE or none).
* Channel ``depth.Z`` FLOAT32 holding the depth exactly as given (bit-exact float32): it is
  Nuke ZDefocus' default depth channel and Blender shows it as a ``depth`` layer socket (a bare
  ``Z`` channel loads as zeros in Blender). Optional HALF ``R``, ``G``, ``B`` preview.
* Windows: the display window follows the plate, the data window defaults to it. Both are
  given as inclusive EXR boxes ``(xmin, ymin, xmax, ymax)``; without them both are
  ``(0, 0, W-1, H-1)`` of the first submitted frame. Every depth must have the data window's
  size.

Header
------
Standard attributes: ``framesPerSecond`` (rational, e.g. 24000/1001 kept exactly),
``owner`` ("dvd-vfx"), ``comments`` (one human line, e.g.
``DVD depth pass, mode=depth near=0.1 far=100``), ``capDate`` (local time,
``YYYY:MM:DD HH:MM:SS``; UTC from ``$SOURCE_DATE_EPOCH`` when set, for reproducible files) with
``utcOffset`` (seconds, UTC = local + utcOffset),
``pixelAspectRatio``, ``displayWindow``, ``dataWindow``.

Every item of ``attributes`` (per writer) and ``frame_attributes`` (per frame, wins on a
clash) is written as ``dvd/<key>`` (a key already starting with ``dvd/`` is kept as is).
Python values map to EXR attribute types like this:

==========================================  ================================================
Python value                                EXR attribute
==========================================  ================================================
``str``, ``os.PathLike``                    ``string`` (paths as text)
``bool``                                    ``int`` 0 / 1
``int`` / numpy integer within int32        ``int``
``int`` outside int32                       ``string`` (decimal text, exact)
``float`` / numpy floating                  ``double`` (full precision; near/far/percentiles)
``fractions.Fraction``                      ``rational``
``list``, ``tuple``, ``dict``, ndarray      ``string`` holding compact JSON (any reader can
                                            parse it; NaN/inf become ``null``)
``None``                                    not written (absent means unknown)
anything else                               ``string`` of ``str(value)``
==========================================  ================================================

(The OpenEXR Python binding writes Python floats as 32-bit ``float``; a one-element float64
array is its way to write a ``double``, which is what we use. It reads such an attribute
back as a one-element array; :func:`read_pass_attributes` undoes both that and the JSON.)

Atomicity
---------
Frames are encoded in a small thread pool (``workers``) into a hidden staging folder inside
``out_dir`` (``.dvd-vfx-staging-<shot>-<pid>-<random>``), each to a temporary name then
renamed. At most ``max_pending`` frames are queued or being written; ``submit`` blocks beyond
that, so memory does not grow with shot length. :meth:`DepthPassWriter.commit` waits for the
writes and renames every file into ``out_dir`` (same filesystem, so each rename is atomic;
files of an earlier render with the same names are replaced, and restored if the commit
fails). On any failure the staging folder is deleted, nothing from this render is left in
``out_dir``, folders the writer created are removed again, and :class:`InputError` says which
file could not be written and what to do. The one exception: earlier files that a failed commit
could not restore stay in the staging folder's ``.replaced`` (their only copy), and the error
names that folder.

Context manager: leaving the ``with`` block *without* having called ``commit()`` (whether by
an exception, a cancel or a plain return) aborts: a pass is only ever published by an
explicit ``commit()``, never half-way by accident.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import math
import numbers
import operator
import os
import re
import shutil
import tempfile
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from fractions import Fraction
from pathlib import Path

import numpy as np
import OpenEXR

from dvd_vfx.errors import InputError
from dvd_vfx.jsonvalues import jsonable

__all__ = [
    "ATTRIBUTE_PREFIX",
    "COMPRESSIONS",
    "DEPTH_CHANNEL",
    "OWNER",
    "DepthPassWriter",
    "exr_attribute",
    "pass_filename",
    "read_pass_attributes",
]

OWNER = "dvd-vfx"
DEPTH_CHANNEL = "depth.Z"
PREVIEW_CHANNELS = ("R", "G", "B")
ATTRIBUTE_PREFIX = "dvd/"
STAGING_PREFIX = ".dvd-vfx-staging-"
BACKUP_FOLDER = ".replaced"  # in a staging folder: the files a publish replaces, until it succeeds

#: Lossless compressions hosts read (name -> OpenEXR enum).
COMPRESSIONS = {
    "zip": OpenEXR.ZIP_COMPRESSION,
    "zips": OpenEXR.ZIPS_COMPRESSION,
    "piz": OpenEXR.PIZ_COMPRESSION,
    "rle": OpenEXR.RLE_COMPRESSION,
    "none": OpenEXR.NO_COMPRESSION,
}
_LOSSY = {"dwaa", "dwab", "b44", "b44a", "pxr24"}

_INT32 = (-(2**31), 2**31 - 1)
_NTSC = tuple(Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120))
_HALF_MAX = 65504.0


# --------------------------------------------------------------------------- names


def pass_filename(shot: str, frame: int, kind: str = "depth") -> str:
    """``<shot>.<kind>.<frame>.exr`` with the frame padded like ``%04d``."""
    return f"{shot}.{kind}.{operator.index(frame):04d}.exr"


def _check_shot(shot: str) -> str:
    if (
        not isinstance(shot, str)
        or not shot.strip()
        or shot.startswith(".")
        or any(c in shot for c in "/\\\0")
    ):
        raise InputError(
            f"invalid shot name {shot!r}: use a name without path separators that does not "
            "start with a dot"
        )
    return shot


# --------------------------------------------------------------------------- header values


def exr_attribute(value):
    """The value to hand the OpenEXR binding for a ``dvd/`` attribute (see module table).

    Returns ``None`` for ``None`` (the attribute is then not written).
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(bool(value))
    if isinstance(value, Fraction):
        return value
    if isinstance(value, numbers.Integral):
        v = int(value)
        return v if _INT32[0] <= v <= _INT32[1] else str(v)
    if isinstance(value, numbers.Real):
        return np.array([float(value)], dtype=np.float64)  # binding: 1-element f64 = double
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        return json.dumps(jsonable(value, finite=True), separators=(",", ":"), allow_nan=False)
    return str(value)


def _attribute_name(key) -> str:
    if not isinstance(key, str) or not key or "\0" in key:
        raise ValueError(f"attribute names must be non-empty strings, got {key!r}")
    name = key if key.startswith(ATTRIBUTE_PREFIX) else ATTRIBUTE_PREFIX + key
    if len(name) > 255:
        raise ValueError(f"attribute name too long (max 255 characters): {name[:40]}...")
    return name


def _convert_attributes(attributes: dict | None) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in (attributes or {}).items():
        converted = exr_attribute(value)
        if converted is not None:
            out[_attribute_name(key)] = converted
    return out


def read_pass_attributes(path) -> dict[str, object]:
    """The ``dvd/`` attributes of a pass file, prefix stripped, decoded back to Python.

    Doubles come back as ``float``, JSON text (strings starting with ``[`` or ``{``) as
    lists / dicts, everything else as the binding returns it.
    """
    header = OpenEXR.File(os.fspath(path), header_only=True).header()
    out: dict[str, object] = {}
    for name, value in header.items():
        if not name.startswith(ATTRIBUTE_PREFIX):
            continue
        if isinstance(value, np.ndarray) and value.shape == (1,):
            value = float(value[0])
        elif isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[name[len(ATTRIBUTE_PREFIX) :]] = value
    return out


def pass_frames(out_dir, shot: str, kind: str = "depth") -> dict[int, Path]:
    """The frames of `shot`'s pass already in `out_dir`: {frame number: path}."""
    pattern = re.compile(re.escape(shot) + r"\." + re.escape(kind) + r"\.(-?\d+)\.exr")
    found = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir(out_dir):
            m = pattern.fullmatch(entry.name)
            if m and entry.is_file():
                found[int(m.group(1))] = Path(entry.path)
    return dict(sorted(found.items()))


def foreign_frames(out_dir, shot: str, keep, attribute: str, value: str) -> dict[int, dict]:
    """Frames of `shot` in `out_dir` outside `keep` whose ``dvd/<attribute>`` is not `value`:
    {frame: its dvd/ attributes ({} when unreadable or written without them)}.

    The pass-identity attributes (``setupId``, ``passId``) tell one normalisation from another:
    a folder must never hold frames of one shot from two (see DepthPassWriter's docstring).
    """
    keep = set(keep)
    out = {}
    for number, path in pass_frames(out_dir, shot).items():
        if number in keep:
            continue
        try:
            attrs = read_pass_attributes(path)
        except Exception:  # noqa: BLE001 - unreadable files are foreign too
            attrs = {}
        if attrs.get(attribute) != value:
            out[number] = attrs
    return out


def _compression(name: str):
    key = str(name).strip().lower()
    if key in COMPRESSIONS:
        return COMPRESSIONS[key]
    choices = ", ".join(COMPRESSIONS)
    if key in _LOSSY:
        raise InputError(
            f"compression {name!r} is lossy; depth passes are written lossless only: "
            f"choose one of {choices}"
        )
    raise InputError(f"unknown EXR compression {name!r}; choose one of {choices}")


def _as_fps(fps) -> Fraction:
    try:
        if isinstance(fps, bool):
            raise TypeError
        if isinstance(fps, numbers.Rational):
            value = Fraction(fps.numerator, fps.denominator)
        elif isinstance(fps, str):
            value = Fraction(fps.strip())
        elif isinstance(fps, numbers.Real) and math.isfinite(float(fps)):
            f = float(fps)
            value = next((n for n in _NTSC if abs(f - float(n)) < 5e-4), None)
            if value is None:
                value = Fraction(f).limit_denominator(1001)
        else:
            raise TypeError
    except (TypeError, ValueError, ZeroDivisionError):
        raise InputError(
            f"invalid frame rate {fps!r}; give it as a fraction such as 24000/1001"
        ) from None
    if value <= 0:
        raise InputError(f"invalid frame rate {fps!r}; it must be positive")
    if value.numerator > _INT32[1] or value.denominator > 2**32 - 1:
        value = value.limit_denominator(100000)
    return value


def _as_box(box, what: str) -> tuple[int, int, int, int] | None:
    if box is None:
        return None
    try:
        flat = [operator.index(v) for v in np.asarray(box).reshape(-1).tolist()]
    except (TypeError, ValueError):
        flat = []
    if len(flat) != 4 or flat[2] < flat[0] or flat[3] < flat[1]:
        raise ValueError(f"{what} must be an inclusive box (xmin, ymin, xmax, ymax), got {box!r}")
    return tuple(flat)  # type: ignore[return-value]


def _exr_box(box: tuple[int, int, int, int]):
    return (
        np.array(box[:2], dtype=np.int32),
        np.array(box[2:], dtype=np.int32),
    )


def _comments(attributes: dict) -> str:
    def get(key):
        return attributes.get(key, attributes.get(ATTRIBUTE_PREFIX + key))

    parts = []
    mode = get("mode")
    if mode is not None:
        parts.append(f"mode={mode}")
    for key in ("near", "far"):
        v = get(key)
        if isinstance(v, numbers.Real) and not isinstance(v, bool):
            parts.append(f"{key}={float(v):g}")
    text = "DVD depth pass"
    return f"{text}, {' '.join(parts)}" if parts else f"{text} (channel {DEPTH_CHANNEL})"


# --------------------------------------------------------------------------- low-level I/O


def _write_exr(path: Path, header: dict, channels: dict) -> None:
    """Encode one EXR file to ``path`` and flush it to disk (the seam tests patch).

    Written through a Python file object so that I/O errors surface as ``OSError`` with
    their errno (disk full, quota, permissions) rather than as the binding's RuntimeError.
    """
    exr = OpenEXR.File(header, channels)
    with open(path, "wb") as fh:
        exr.write(fh)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def _hint(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return "free space or choose another output folder"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "check the folder's permissions or choose another output folder"
    return "choose another output folder"


def remove_created(created: list[Path]) -> None:
    """Remove the folders the writer created (innermost first), if they are empty."""
    for d in reversed(created):
        try:
            os.rmdir(d)
        except OSError:
            pass


def discard_staging(staging: Path) -> None:
    """Delete a staging folder, except its ``.replaced`` folder while that holds files: frames of the
    previous render that a failed publish could not put back (see publish_staged), their only copy."""
    backups = Path(staging) / BACKUP_FOLDER
    try:
        keep = any(backups.iterdir())
    except FileNotFoundError:
        keep = False
    except OSError:
        keep = True  # cannot tell: never delete it
    if not keep:
        shutil.rmtree(staging, ignore_errors=True)
        return
    try:
        children = [child for child in Path(staging).iterdir() if child.name != BACKUP_FOLDER]
    except OSError:
        return
    for child in children:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            try:
                child.unlink()
            except OSError:
                pass


def kept_note(exc: BaseException, out_dir: Path) -> str:
    """For a failed publish_staged: '; <where the previous render's unrestored files are>' ('' when none)."""
    kept = getattr(exc, "kept", None)
    if not kept:
        return ""
    names = [Path(p).name for p in getattr(exc, "unrestored", ())]
    listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"; the previous render's {listed or 'files'} could not be put back: the only copies are in {kept}; "
            f"move them back into {out_dir}")


def _discard(staging: Path, created: list[Path]) -> None:
    """Delete the staging folder (but backups a failed publish could not restore) and every (now empty)
    folder the writer created."""
    discard_staging(staging)
    remove_created(created)


def make_out_dir(out_dir: Path) -> list[Path]:
    """Create ``out_dir`` (and missing parents); return the folders created, outermost first."""
    missing: list[Path] = []
    p = out_dir
    while not os.path.lexists(p):
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    created: list[Path] = []
    try:
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except FileExistsError:
                if not d.is_dir():
                    raise
                continue
            created.append(d)
        if not out_dir.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "it exists and is not a folder")
    except OSError as exc:
        remove_created(created)
        raise InputError(
            f"cannot create output folder {out_dir}: {_reason(exc)}; {_hint(exc)}"
        ) from exc
    return created


# --------------------------------------------------------------------------- writer


def publish_staged(staging: Path, out_dir: Path, names: list[str], remove: list[str] = ()) -> list[Path]:
    """Move the files `names` from `staging` into `out_dir`, replacing existing ones, and take the
    files `remove` out of `out_dir`: all or nothing.

    On an OSError the files moved so far are removed and the replaced (or removed) ones
    restored, and the error is raised again with ``filename`` set to the destination that failed.
    A file that cannot be put back stays in ``staging/.replaced``, its only copy: the error then has
    ``kept`` (that folder) and ``unrestored`` (the paths it belongs at); otherwise ``kept`` is None.
    Remove a staging folder with discard_staging, which leaves such a folder alone.
    """
    moved: list[Path] = []
    replaced: list[tuple[Path, Path]] = []
    backup_dir = staging / BACKUP_FOLDER
    current = None

    def set_aside(name: str) -> Path:  # an existing file of that name goes to the backup folder
        path = out_dir / name
        if os.path.lexists(path):
            backup_dir.mkdir(exist_ok=True)
            os.replace(path, backup_dir / name)
            replaced.append((backup_dir / name, path))
        return path

    try:
        for name in remove:
            current = set_aside(name)
        for name in names:
            current = set_aside(name)
            os.replace(staging / name, current)
            moved.append(current)
    except OSError as exc:
        for path in moved:
            try:
                path.unlink()
            except OSError:
                pass
        unrestored = []
        for backup, original in replaced:
            try:
                os.replace(backup, original)
            except OSError:
                unrestored.append(original)
        exc.filename = str(current)
        exc.kept = backup_dir if unrestored else None
        exc.unrestored = unrestored
        raise
    return moved


class DepthPassWriter:
    """Writes one shot's depth pass; see the module docstring for format and guarantees.

    ``out_dir``: folder of the pass (created if missing). ``shot``: file-name prefix.
    ``fps``: frame rate, a Fraction (ints, "24000/1001" and NTSC floats are accepted).
    ``attributes``: ``dvd/`` header attributes shared by all frames. ``compression``:
    "zip" (default), "zips", "piz", "rle" or "none". ``preview``: every frame carries a half
    RGB preview (``preview_rgb`` then required). ``pixel_aspect``: pixel aspect ratio.
    ``display_window`` / ``data_window``: inclusive boxes (xmin, ymin, xmax, ymax).
    ``workers``: encoder threads. ``max_pending``: frames queued or in flight before
    ``submit`` blocks.
    """

    def __init__(
        self,
        out_dir,
        shot: str,
        *,
        fps: Fraction,
        attributes: dict[str, object],
        compression: str = "zip",
        preview: bool = False,
        pixel_aspect: float = 1.0,
        display_window=None,
        data_window=None,
        workers: int = 2,
        max_pending: int = 8,
    ) -> None:
        # Everything that can be checked without touching the disk first.
        self.shot = _check_shot(shot)
        self.compression = str(compression).strip().lower()
        self._compression = _compression(compression)
        self.fps = _as_fps(fps)
        self.preview = bool(preview)
        pa = float(pixel_aspect)
        if not (math.isfinite(pa) and pa > 0):
            raise ValueError(f"pixel_aspect must be a positive number, got {pixel_aspect!r}")
        self.pixel_aspect = pa
        self._display = _as_box(display_window, "display_window")
        self._data = _as_box(data_window, "data_window")
        if self._display is None:
            self._display = self._data
        elif self._data is None:
            self._data = self._display
        workers = operator.index(workers)
        max_pending = operator.index(max_pending)
        if workers < 1 or max_pending < 1:
            raise ValueError("workers and max_pending must be >= 1")
        self._attributes = _convert_attributes(attributes)
        self._comments = _comments(dict(attributes or {}))
        # SOURCE_DATE_EPOCH (the reproducible-builds convention) pins capDate, so two renders
        # of the same shot can be compared byte for byte.
        epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
        now = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch.isdigit()
               else datetime.datetime.now().astimezone())
        self._cap_date = now.strftime("%Y:%m:%d %H:%M:%S")
        offset = now.utcoffset()
        self._utc_offset = (-offset.total_seconds() + 0.0) if offset is not None else 0.0

        # Then the folder: creatable and writable, before any work is done.
        self.out_dir = Path(os.path.abspath(os.path.expanduser(os.fspath(out_dir))))
        self._created = make_out_dir(self.out_dir)
        try:
            staging = tempfile.mkdtemp(
                prefix=f"{STAGING_PREFIX}{self.shot}-{os.getpid()}-", dir=self.out_dir
            )
        except OSError as exc:
            remove_created(self._created)
            raise InputError(
                f"cannot write to output folder {self.out_dir}: {_reason(exc)}; {_hint(exc)}"
            ) from exc
        self._staging = Path(staging)
        self._finalizer = weakref.finalize(self, _discard, self._staging, list(self._created))

        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"dvd-exr-{self.shot}"
        )
        self._slots = threading.BoundedSemaphore(max_pending)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._futures: dict[int, Future] = {}
        self._failure: tuple[int, BaseException] | None = None
        self._error: InputError | None = None
        self._state = "open"  # open | committed | aborted
        self._committed: list[Path] = []

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> "DepthPassWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._state == "open":
            self.abort()  # not committed explicitly: never publish a partial pass
        return False

    # ------------------------------------------------------------------ public API

    @property
    def staging_dir(self) -> Path:
        return self._staging

    def final_path(self, frame: int) -> Path:
        return self.out_dir / pass_filename(self.shot, frame)

    def submit(
        self,
        frame: int,
        depth: np.ndarray,
        preview_rgb: np.ndarray | None = None,
        frame_attributes: dict | None = None,
    ) -> None:
        """Queue one frame (copied); blocks while ``max_pending`` frames are queued."""
        self._check_usable()
        frame = operator.index(frame)
        if frame in self._futures:
            raise ValueError(f"frame {frame} was already submitted")
        d = np.asarray(depth)
        if d.ndim == 3 and d.shape[2] == 1:
            d = d[:, :, 0]
        if d.ndim != 2 or d.size == 0:
            raise ValueError(f"depth must be a non-empty [H,W] array, got shape {d.shape}")
        if self._data is None:
            h, w = d.shape
            self._data = self._display = (0, 0, w - 1, h - 1)
        x0, y0, x1, y1 = self._data
        if d.shape != (y1 - y0 + 1, x1 - x0 + 1):
            raise ValueError(
                f"depth is {d.shape[1]}x{d.shape[0]} but the data window is "
                f"{x1 - x0 + 1}x{y1 - y0 + 1}"
            )
        p = None
        if self.preview:
            if preview_rgb is None:
                raise ValueError("this writer writes previews: pass preview_rgb for every frame")
            p = np.asarray(preview_rgb)
            if p.ndim != 3 or p.shape[:2] != d.shape or p.shape[2] < 3:
                raise ValueError(
                    f"preview_rgb must be [H,W,3] matching the depth, got shape {p.shape}"
                )
        elif preview_rgb is not None:
            raise ValueError("preview_rgb given but the writer was created with preview=False")
        header = self._header(frame_attributes)

        # Bounded memory: wait for a free slot before copying the frame.
        while not self._slots.acquire(timeout=0.05):
            if self._stop.is_set():
                break
        else:
            try:
                self._check_usable()
                channels = {DEPTH_CHANNEL: np.array(d, dtype=np.float32, order="C", copy=True)}
                if p is not None:
                    rgb = np.clip(p[:, :, :3].astype(np.float32), -_HALF_MAX, _HALF_MAX)
                    for i, name in enumerate(PREVIEW_CHANNELS):
                        channels[name] = np.ascontiguousarray(rgb[:, :, i], dtype=np.float16)
                self._futures[frame] = self._executor.submit(
                    self._write_one, frame, header, channels
                )
            except BaseException:
                self._slots.release()
                raise
            return
        self._check_usable()  # a failure or abort() stopped the writer while we waited
        raise RuntimeError("this DepthPassWriter was stopped")

    def scratch(self, name: str) -> Path:
        """A private folder in the staging area: on the output's disk (not a RAM-backed /tmp), and
        removed with the staging area on commit, abort or a crash cleanup."""
        return self._staging / f".{name}"

    def commit(self, *, remove_frames=()) -> list[Path]:
        """Wait for every write, publish all files into ``out_dir``; paths in frame order.

        ``remove_frames``: frames of this shot to take out of ``out_dir`` in the same all-or-nothing
        publish (what ``--replace`` does to frames of another render of the shot).
        """
        if self._state == "committed":
            return list(self._committed)
        self._check_usable()
        wait_futures(list(self._futures.values()))
        self._check_usable()
        self._executor.shutdown(wait=True)

        names = [pass_filename(self.shot, frame) for frame in sorted(self._futures)]
        try:
            moved = publish_staged(self._staging, self.out_dir, names,
                                   [pass_filename(self.shot, frame) for frame in remove_frames])
        except OSError as exc:
            self._fail(InputError(f"cannot write {exc.filename}: {_reason(exc)}; {_hint(exc)}"
                                  f"{kept_note(exc, self.out_dir)}"), exc)
            raise self._error from exc  # type: ignore[misc]
        shutil.rmtree(self._staging, ignore_errors=True)
        self._finalizer.detach()
        _fsync_dir(self.out_dir)
        self._state = "committed"
        self._committed = moved
        return list(moved)

    def abort(self) -> None:
        """Stop, delete every temporary file and the staging folder, remove a created out_dir.

        Safe to call more than once; does nothing after a successful commit.
        """
        with self._lock:
            if self._state != "open":
                return
            self._state = "aborted"
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._finalizer()  # _discard(staging, created folders), exactly once

    # ------------------------------------------------------------------ internals

    def _header(self, frame_attributes: dict | None) -> dict:
        # A fresh dict per file: the binding adds keys to the dict it is given.
        header = {
            "type": OpenEXR.scanlineimage,
            "compression": self._compression,
            "lineOrder": OpenEXR.INCREASING_Y,
            "displayWindow": _exr_box(self._display),  # type: ignore[arg-type]
            "dataWindow": _exr_box(self._data),  # type: ignore[arg-type]
            "pixelAspectRatio": self.pixel_aspect,
            "framesPerSecond": self.fps,
            "owner": OWNER,
            "comments": self._comments,
            "capDate": self._cap_date,
            "utcOffset": self._utc_offset,
        }
        header.update(self._attributes)
        header.update(_convert_attributes(frame_attributes))
        return header

    def _write_one(self, frame: int, header: dict, channels: dict) -> Path | None:
        name = pass_filename(self.shot, frame)
        tmp = self._staging / f".{name}.tmp"
        try:
            if self._stop.is_set():
                return None
            _write_exr(tmp, header, channels)
            staged = self._staging / name
            os.replace(tmp, staged)
            return staged
        except BaseException as exc:
            with self._lock:
                if self._failure is None:
                    self._failure = (frame, exc)
            self._stop.set()
            try:
                tmp.unlink()
            except OSError:
                pass
            raise
        finally:
            channels.clear()
            self._slots.release()

    def _fail(self, error: InputError, cause: BaseException) -> None:
        """Record ``error`` (raised from now on), stop the writer and clean up."""
        if self._error is None:
            error.__cause__ = cause
            self._error = error
        with self._lock:
            if self._state == "open":
                self._state = "aborted"
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._finalizer()

    def _check_usable(self) -> None:
        """Raise if the writer failed (cleaning up first) or is no longer open."""
        if self._failure is not None and self._error is None:
            frame, exc = self._failure
            if isinstance(exc, (OSError, RuntimeError)):
                self._fail(
                    InputError(
                        f"cannot write {self.final_path(frame)}: {_reason(exc)}; {_hint(exc)}"
                    ),
                    exc,
                )
            else:  # a bug, not an I/O problem: clean up, then let it through unchanged
                self.abort()
                raise exc
        if self._error is not None:
            raise self._error
        if self._state == "aborted":
            raise RuntimeError("this DepthPassWriter was aborted")
        if self._state == "committed":
            raise RuntimeError("this DepthPassWriter was already committed")
