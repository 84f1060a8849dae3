"""Small file-system helpers shared by the engine, the cache, the farm runners, the weights and training."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: bytes | str, *, fsync: bool = False) -> Path:
    """Write `data` to a temp file beside `path`, then rename it over `path`: a reader sees the old
    file or the whole new one, never a part. The temp file is removed if anything fails.
    fsync: flush to the disk before the rename (files other processes rely on, e.g. manifests)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(tmp, "xb") as fh:
            fh.write(payload)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file's bytes, read in 8 MiB blocks (any size in little memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()
