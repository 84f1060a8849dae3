"""Per-shot cache: raw window predictions + a manifest, so re-renders are instant and resumable.

Layout: ``<root>/<key[:2]>/<key>/``  with ``manifest.json``, ``window.NNNNN.npy`` (working
resolution, padding dropped; encoded as below) and ``lock``. The key (sha256) covers exactly what changes
the predictions: the source (path, size, mtime, frame range, bytes sampled from the media), the
model (predictor identity: name, weights sha256, dtype, device class) and the inference
parameters (working size, window, overlap, colour handling, engine version). Near/far, mode,
format and upsampling are applied after the cache and never change the key.

Safety: every file is written to a temp name and renamed; the manifest (written last) lists
each window with its sha256, and a window whose bytes do not match is discarded and
recomputed; a cache folder that cannot be written degrades to no cache with a warning.

Window encoding (each window its own; the manifest's window entry records it as ``encoding``,
and `get` returns the prediction's values whatever it is):
``{"dtype": "float16"}``  the values as they are: a window within [0, 1] (DVD's output), 2 bytes a
                        value, steps of at most 2^-11 (byte for byte what caches held before);
``{"dtype": "uint16", "offset": o, "scale": s}``  ``round((v - o) / s)`` with o the window's minimum
                        and s its range / 65535: any other window, e.g. metric disparity above
                        float16's 65504 or 1000-1010 (float16 steps of 0.5 there); 2 bytes a value,
                        steps of 1/65535 of the window's range whatever the predictor's affine
                        (the predictor contract: "any affine");
``{"dtype": "float32"}``  the values as predicted, 4 bytes a value: a window whose full range is
                        more than RANGE_PER_SPREAD times the spread of its 2-98 % (outliers would
                        make uint16 steps coarser than 1/4096 of that spread).
A window entry without ``encoding`` (written before encodings existed) is float16 as it is; such
a window holding values outside [0, 1] or NaN/inf lost them when it was written and is recomputed.
Predictions with NaN/inf are refused (ValueError; the engine checks first and names the window).

Locks (files in the entry folder, across processes and machines that share the folder):
``lock`` is held for a whole render: exclusively by an unsplit render (a second render of the
same shot waits, then reuses its windows) and by eviction, shared by the parts of a split
render (--only-windows / --assemble), so parts of one shot run in parallel; ``manifest.lock``
covers each read-modify-write of the manifest, so parts adding windows at once all keep theirs;
``stitch.lock`` lets the first assemble part solve the stitch while the others wait for its
numbers.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvd_vfx import __version__
from dvd_vfx.fsutil import sha256_file, write_atomic

log = logging.getLogger("dvd_vfx.cache")

ENV_DIR = "DVD_VFX_CACHE_DIR"
ENV_MAX_GB = "DVD_VFX_CACHE_MAX_GB"
DEFAULT_MAX_GB = 20.0
SCHEMA = 1
_SAMPLE_BYTES = 1 << 20
RAW_F16 = {"dtype": "float16"}  # a window within [0, 1]: float16 as it is
RANGE_PER_SPREAD = 16.0  # a window's full range above this times its 2-98 % spread is kept float32
_U16_STEPS = 65535
_SPREAD_SAMPLES = 1 << 16  # values (evenly strided) the spread is measured on
_F16_ONE = 0x3C00  # float16 1.0: the bits of 0.0 <= x <= 1.0 are 0x0000..0x3C00 (and -0.0 is 0x8000)


def default_cache_dir() -> Path:
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dvd-vfx", appauthor=False)) / "shots"


def _sample_bytes(path: str, h) -> None:
    """Feed the first, middle and last MiB of a file: notices a re-export under the same name."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        for offset in sorted({0, max(0, size // 2 - _SAMPLE_BYTES // 2), max(0, size - _SAMPLE_BYTES)}):
            fh.seek(offset)
            h.update(fh.read(_SAMPLE_BYTES))


def source_fingerprint(info, frame_numbers: list[int]) -> dict:
    """What identifies the source's pixels for a frame range (cheap: stats + sampled bytes)."""
    h = hashlib.sha256()
    first_index = list(info.frame_numbers).index(frame_numbers[0])
    if info.kind == "video":
        st = os.stat(info.path)
        h.update(f"{os.path.realpath(info.path)}|{st.st_size}|{st.st_mtime_ns}".encode())
        _sample_bytes(info.path, h)
    else:
        files = []
        for n in frame_numbers:
            path = info.frame_file(n)
            try:
                st = os.stat(path)
                files.append(path)
                h.update(f"{n}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{n}|missing\n".encode())
        # sorted: a set's order of str varies per process (hash seed), and the key must not
        for path in sorted({files[0], files[len(files) // 2], files[-1]}) if files else ():
            _sample_bytes(path, h)
    return {"path": os.path.realpath(info.path) if info.kind == "video" else info.path, "kind": info.kind,
            "first_index": first_index, "frames": len(frame_numbers), "content_sha256": h.hexdigest()}


def cache_key(source: dict, identity: dict, params: dict) -> str:
    blob = json.dumps({"source": source, "model": identity, "params": params, "engine": __version__,
                       "schema": SCHEMA}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def nonfinite_count(pred: np.ndarray) -> int:
    """How many NaN/inf values `pred` holds (0 in one min/max pass when there are none)."""
    pred = np.asarray(pred)
    if pred.size == 0 or (math.isfinite(float(np.min(pred))) and math.isfinite(float(np.max(pred)))):
        return 0
    return int(pred.size - np.count_nonzero(np.isfinite(pred)))


def window_encoding(pred: np.ndarray) -> dict:
    """How window `pred` is stored (see the module docstring); ValueError for NaN/inf."""
    pred = np.asarray(pred)
    if pred.size == 0:
        return dict(RAW_F16)
    lo, hi = float(np.min(pred)), float(np.max(pred))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{nonfinite_count(pred)} of {pred.size} predicted values are NaN/inf")
    if 0.0 <= lo and hi <= 1.0:
        return dict(RAW_F16)
    flat = pred.reshape(-1)
    p_lo, p_hi = np.percentile(flat[:: max(1, flat.size // _SPREAD_SAMPLES)].astype(np.float64), [2.0, 98.0])
    if hi - lo > RANGE_PER_SPREAD * float(p_hi - p_lo):
        return {"dtype": "float32"}
    return {"dtype": "uint16", "offset": lo, "scale": (hi - lo) / _U16_STEPS or 1.0}


def encode_window(pred: np.ndarray, encoding: dict) -> np.ndarray:
    """The array written to disk for `pred` under `encoding` (frame by frame: no float64 copy of the window)."""
    if "offset" not in encoding:
        return np.asarray(pred, dtype=encoding["dtype"])
    pred = np.asarray(pred)
    out = np.empty(pred.shape, dtype=encoding["dtype"])
    offset, scale = float(encoding["offset"]), float(encoding["scale"])
    for t in range(pred.shape[0]):
        out[t] = np.clip(np.rint((pred[t].astype(np.float64) - offset) / scale), 0, _U16_STEPS)
    return out


class DecodedWindow:
    """A stored window read through its offset/scale: indexing decodes only what is asked for (float32)."""

    def __init__(self, data: np.ndarray, offset: float, scale: float):
        self.data, self.offset, self.scale = data, float(offset), float(scale)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index) -> np.ndarray:
        return (np.asarray(self.data[index], dtype=np.float64) * self.scale + self.offset).astype(np.float32)

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype)


def _read_window(path: Path, encoding: dict | None):
    """Window file `path` memory-mapped, decoded on access when its encoding has an offset/scale."""
    data = np.load(path, mmap_mode="r")
    want = np.dtype((encoding or RAW_F16)["dtype"])
    if data.dtype != want:
        raise ValueError(f"cached window {path} holds {data.dtype}, its encoding says {want}")
    if encoding and "offset" in encoding:
        return DecodedWindow(data, encoding["offset"], encoding["scale"])
    return data


def _within_unit_range(path: Path) -> bool:
    """A float16 window file holds only values in [0, 1] (no NaN/inf): checked on the bits, no float16 math."""
    try:
        bits = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    if bits.dtype != np.float16:
        return False
    bits = bits.view(np.uint16)
    if bits.size == 0 or int(bits.max()) <= _F16_ONE:
        return True
    return not np.any((bits > _F16_ONE) & (bits != 0x8000))


class WindowStore:
    """Raw per-window predictions, encoded per window (float16 mostly), memory-mapped back (a private temp folder)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._open: dict[int, np.ndarray | DecodedWindow] = {}
        self._encodings: dict[int, dict] = {}
        self._threads: dict[int, int | None] = {}

    def path(self, k: int) -> Path:
        return self.folder / f"window.{k:05d}.npy"

    def has(self, k: int) -> bool:
        return self.path(k).is_file()

    def _stage(self, k: int, pred: np.ndarray) -> tuple[Path, dict]:
        """Window k encoded (window_encoding) as .npy in a uniquely named temp file of the folder:
        parts on several hosts of a shared cache never share a temp name, whatever their pids
        (created with the umask's permissions, so farm users sharing the cache can read it)."""
        encoding = window_encoding(pred)
        tmp = self.folder / f".window.{k:05d}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npy"
        try:
            with open(tmp, "xb") as fh:
                np.save(fh, encode_window(pred, encoding))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp), encoding

    def put(self, k: int, pred: np.ndarray, seconds: float = 0.0, threads: int | None = None) -> None:
        tmp, encoding = self._stage(k, pred)
        os.replace(tmp, self.path(k))
        self._encodings[k] = encoding
        self._open.pop(k, None)
        self._threads[k] = threads

    def threads(self, k: int) -> int | None:
        """The CPU thread count window k was predicted with (None: unknown, or not a torch predictor)."""
        return self._threads.get(k)

    def encoding(self, k: int) -> dict | None:
        return self._encodings.get(k)

    def get(self, k: int) -> np.ndarray | DecodedWindow:
        """Window k's predicted values, memory-mapped (an offset/scale window decodes the frames indexed)."""
        if k not in self._open:
            self._open[k] = _read_window(self.path(k), self.encoding(k))
        return self._open[k]

    def release_before(self, k: int) -> None:
        for j in [j for j in self._open if j < k]:
            del self._open[j]

    def stitch(self) -> dict | None:
        return None

    def save_stitch(self, **numbers) -> None:
        pass

    def stitch_lock(self):
        """Held while the stitch is read or solved (a private store needs no lock)."""
        return contextlib.nullcontext()

    def close(self, *, complete: bool = False, timings: dict | None = None) -> None:
        self._open.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


class EntryLock:
    """The entry's ``lock`` file: shared (parts of a split render) or exclusive (a whole render, eviction).

    flock(2) locks, released by the kernel when a process dies, so a killed render never leaves
    the entry locked. After the wait the lock file is checked to be the one in the folder: an
    eviction may have removed the folder meanwhile, and then the folder is made again. Where
    flock is missing (Windows) every hold is exclusive (parts then run one after another).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None
        self._fallback = None

    @property
    def is_locked(self) -> bool:
        return self._fd is not None or (self._fallback is not None and self._fallback.is_locked)

    def acquire(self, *, shared: bool = False, blocking: bool = True) -> bool:
        """Take the lock; False when `blocking` is off and another process holds it."""
        try:
            import fcntl
        except ImportError:
            return self._acquire_fallback(blocking)
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        while True:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):  # some filesystems: EACCES
                        raise
                    if not blocking:
                        os.close(fd)
                        return False
                    log.warning("another render of this shot holds %s; waiting for it to finish", self.path.parent)
                    fcntl.flock(fd, mode)
                try:
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                self._fd = fd
                return True
            os.close(fd)  # the folder was removed while we waited: lock the new one

    def _acquire_fallback(self, blocking: bool) -> bool:
        import filelock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fallback = self._fallback or filelock.FileLock(str(self.path))
        try:
            self._fallback.acquire(timeout=0)
        except filelock.Timeout:
            if not blocking:
                return False
            log.warning("another render of this shot holds %s; waiting for it to finish", self.path.parent)
            self._fallback.acquire()
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases the flock
        elif self._fallback is not None and self._fallback.is_locked:
            self._fallback.release()


class CacheEntry(WindowStore):
    """One shot's entry: windows verified against the manifest's checksums, under the entry's locks.

    shared: a part of a split render (holds ``lock`` shared, so parts of one shot run at once);
    otherwise a whole render (holds it exclusively). Every manifest change re-reads the manifest
    under ``manifest.lock`` first, so concurrent parts merge instead of overwriting each other.
    """

    def __init__(self, folder: Path, manifest: dict, *, shared: bool = False):
        import filelock

        self._verified: set[int] = set()
        super().__init__(folder)
        self.shared = shared
        self._lock = EntryLock(self.folder / "lock")
        self._manifest_lock = filelock.FileLock(str(self.folder / "manifest.lock"))
        self._stitch_lock = filelock.FileLock(str(self.folder / "stitch.lock"))
        self.manifest = manifest

    # -- locking ----------------------------------------------------------------------------
    def acquire(self) -> None:
        self._lock.acquire(shared=self.shared)
        self._refresh()

    def _refresh(self) -> None:
        """Take the manifest on disk (other processes' windows), keeping this render's shot name."""
        on_disk = _read_manifest(self.folder)
        if on_disk is not None and on_disk.get("schema") == SCHEMA:
            on_disk.update({k: v for k, v in self.manifest.items() if k in ("shot", "out_dir")})
            self.manifest = on_disk

    def _update(self, change) -> None:
        """Read-modify-write of the manifest under its lock: change(manifest) edits it in place."""
        with self._manifest_lock:
            self._refresh()
            change(self.manifest)
            self._save()

    def stitch_lock(self):
        return self._stitch_lock

    def close(self, *, complete: bool = False, timings: dict | None = None) -> None:
        self._open.clear()

        def finish(m: dict) -> None:
            m["last_used"] = time.time()
            if complete:
                m["complete"] = True
            if timings:
                m.setdefault("timings", {}).update({k: round(v, 3) for k, v in timings.items()})

        try:
            self._update(finish)
        finally:
            if self._lock.is_locked:
                self._lock.release()

    # -- windows ----------------------------------------------------------------------------
    def has(self, k: int) -> bool:
        if k in self._verified:
            return True
        path = self.path(k)
        if str(k) not in self.manifest["windows"] and path.is_file():
            self._refresh()  # another part may have added it since this render opened the entry
        entry = self.manifest["windows"].get(str(k))
        if entry is None or not path.is_file():
            return False
        if not _usable(path, entry):
            # Decide under the manifest lock, against the manifest on disk: another part may have
            # replaced the window (file and entry change together under this lock) since we read it.
            with self._manifest_lock:
                self._refresh()
                entry = self.manifest["windows"].get(str(k))
                if entry is None or not path.is_file():
                    return False
                if not _usable(path, entry):
                    if _matches(path, entry):
                        log.warning("cached window %d of %s was stored as float16 before windows kept their own "
                                    "offset/scale and lost values outside 0..1; recomputing it", k, self.folder)
                    else:
                        log.warning("cached window %d of %s is corrupt (checksum mismatch); recomputing it",
                                    k, self.folder)
                    path.unlink(missing_ok=True)
                    self.manifest["windows"].pop(str(k), None)
                    self.manifest["stitch"] = None
                    self._save()
                    return False
        self._verified.add(k)
        return True

    def encoding(self, k: int) -> dict | None:
        entry = self.manifest["windows"].get(str(k))
        return entry.get("encoding") if entry is not None else self._encodings.get(k)

    def put(self, k: int, pred: np.ndarray, seconds: float = 0.0, threads: int | None = None) -> None:
        tmp, encoding = self._stage(k, pred)
        try:
            entry = {"sha256": sha256_file(tmp), "bytes": tmp.stat().st_size, "seconds": round(seconds, 3),
                     "encoding": encoding, "threads": threads}

            def add(m: dict) -> None:
                os.replace(tmp, self.path(k))  # file and manifest entry change together, under the lock
                old = m["windows"].get(str(k))
                if old is None or old.get("sha256") != entry["sha256"]:
                    m["stitch"] = None  # the same bytes again (a retried part) keep the solved stitch
                m["windows"][str(k)] = entry
                m["last_used"] = time.time()

            self._update(add)
        finally:
            tmp.unlink(missing_ok=True)
        self._open.pop(k, None)
        self._verified.add(k)

    def threads(self, k: int) -> int | None:
        return (self.manifest["windows"].get(str(k)) or {}).get("threads")

    def stitch(self) -> dict | None:
        """The solved stitch, as the manifest on disk has it now (another part may have solved it)."""
        self._refresh()
        return self.manifest.get("stitch")

    def save_stitch(self, **numbers) -> None:
        self._update(lambda m: m.__setitem__("stitch", numbers))

    def _save(self) -> None:
        write_atomic(self.folder / "manifest.json", json.dumps(self.manifest, indent=1), fsync=True)


def _matches(path: Path, entry: dict) -> bool:
    """The window file has the size and sha256 its manifest entry records."""
    try:
        return path.stat().st_size == entry["bytes"] and sha256_file(path) == entry["sha256"]
    except OSError:
        return False


def _usable(path: Path, entry: dict) -> bool:
    """_matches, and a window stored before encodings existed holds only what float16 kept exactly enough."""
    return _matches(path, entry) and ("encoding" in entry or _within_unit_range(path))


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


@dataclass
class EntrySummary:
    key: str
    folder: Path
    manifest: dict
    size: int

    @property
    def windows_done(self) -> int:
        return len(self.manifest.get("windows", {}))

    @property
    def windows_total(self) -> int:
        return len(self.manifest.get("plan", []))

    @property
    def complete(self) -> bool:
        return self.windows_total > 0 and self.windows_done == self.windows_total

    @property
    def last_used(self) -> float:
        return float(self.manifest.get("last_used") or self.manifest.get("created") or 0)


class ShotCache:
    """The cache root: opens entries, lists, clears and keeps the total under its cap."""

    def __init__(self, root: str | os.PathLike | None = None, *, max_gb: float | None = None):
        self.root = Path(root).expanduser() if root else default_cache_dir()
        if max_gb is None:
            try:
                max_gb = float(os.environ.get(ENV_MAX_GB, DEFAULT_MAX_GB))
            except ValueError:
                max_gb = DEFAULT_MAX_GB
        self.max_bytes = int(max_gb * 1e9)

    def writable(self) -> bool:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass
            return True
        except OSError as exc:
            log.warning("cache folder %s is not writable (%s); rendering without the cache", self.root,
                        exc.strerror or exc)
            return False

    def folder(self, key: str) -> Path:
        return self.root / key[:2] / key

    def open(self, key: str, manifest: dict, *, shared: bool = False) -> CacheEntry:
        """The entry of `key`, locked: exclusively for a whole render, `shared` for a part of a split one."""
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        base = {"schema": SCHEMA, "key": key, "created": time.time(), "windows": {}, "stitch": None,
                "complete": False, **manifest}
        entry = CacheEntry(folder, base, shared=shared)
        entry.acquire()
        return entry

    def entries(self) -> list[EntrySummary]:
        out = []
        if not self.root.is_dir():
            return out
        for manifest_path in self.root.glob("*/*/manifest.json"):
            folder = manifest_path.parent
            manifest = _read_manifest(folder)
            if manifest is None:
                continue
            try:
                size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
            except OSError:  # another process is replacing or evicting files of this entry
                continue
            out.append(EntrySummary(folder.name, folder, manifest, size))
        return sorted(out, key=lambda e: e.last_used, reverse=True)

    def find(self, key_or_source: str) -> list[EntrySummary]:
        entries = self.entries()
        if os.path.exists(key_or_source):
            real = os.path.realpath(key_or_source)
            return [e for e in entries if os.path.realpath(e.manifest.get("source", {}).get("path", "")) == real
                    or e.manifest.get("source_arg") == key_or_source]
        return [e for e in entries if e.key.startswith(key_or_source.lower())]

    def remove(self, entry: EntrySummary) -> bool:
        lock = EntryLock(entry.folder / "lock")
        if not lock.acquire(blocking=False):
            return False  # in use by a render or a part of one: leave it
        try:
            shutil.rmtree(entry.folder, ignore_errors=True)
        finally:
            lock.release()
        return True

    def clear(self, *, older_than_s: float | None = None, shot: str | None = None) -> list[EntrySummary]:
        now = time.time()
        removed = []
        for e in self.entries():
            if older_than_s is not None and now - e.last_used < older_than_s:
                continue
            if shot is not None and e.manifest.get("shot") != shot:
                continue
            if self.remove(e):
                removed.append(e)
        return removed

    def enforce_cap(self, keep: str | None = None) -> list[EntrySummary]:
        """Evict least-recently-used entries until the cache fits under its cap."""
        entries = self.entries()
        total = sum(e.size for e in entries)
        removed = []
        for e in sorted(entries, key=lambda e: e.last_used):
            if total <= self.max_bytes:
                break
            if e.key == keep:
                continue
            if self.remove(e):
                total -= e.size
                removed.append(e)
                log.info("cache: evicted %s (%s, %.1f MB) to stay under %.1f GB", e.key[:12],
                         e.manifest.get("shot"), e.size / 1e6, self.max_bytes / 1e9)
        return removed


def parse_age(text: str) -> float:
    """'7d', '12h', '30m', '45s' -> seconds."""
    from dvd_vfx.errors import InputError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip().lower()
    try:
        if text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text) * 86400
    except (ValueError, IndexError):
        raise InputError(f"--older-than {text!r} is not an age; use e.g. 7d, 12h or 30m") from None
