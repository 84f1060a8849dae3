"""Makers of tiny real media for the footage tests: ffmpeg-encoded movies and images, OpenEXR files."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np


def ffmpeg_exe() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def bundled_ffmpeg() -> str | None:
    """imageio-ffmpeg's binary (what a plain `pip install` has), if installed."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        return None


def ffmpeg(*args: str, stdin: bytes | None = None) -> None:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)}\n{proc.stderr.decode(errors='replace')}")


def make_testsrc(path: Path, *, size="64x48", rate="24000/1001", frames=12, codec=("-c:v", "libx264", "-pix_fmt", "yuv420p"), extra=()) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}", "-frames:v", str(frames), *codec, *extra, str(path))
    return path


def gradient16(width: int = 64, height: int = 48, frames: int = 1) -> np.ndarray:
    """uint16 [N, H, W, 3] smooth grey ramp over the whole image (width*height distinct levels)."""
    ramp = np.linspace(0, 65535, width * height).reshape(height, width)
    img = np.repeat(ramp[:, :, None], 3, axis=2).round().astype(np.uint16)
    return np.repeat(img[None], frames, axis=0)


def encode_raw(path: Path, pixels: np.ndarray, *, pix_fmt_in: str, out_args: tuple, rate: str = "25",
               extra_in=(), size: tuple[int, int] | None = None) -> Path:
    """Encode raw frames [N, H, W, C] (uint8/uint16, little-endian) with ffmpeg.

    Planar input (e.g. [N, 3, H, W] for yuv444p) needs size=(W, H)."""
    w, h = size or (pixels.shape[2], pixels.shape[1])
    ffmpeg(
        "-f", "rawvideo", "-pix_fmt", pix_fmt_in, "-s", f"{w}x{h}", "-r", rate, *extra_in, "-i", "-",
        *out_args, str(path),
        stdin=np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes(),
    )
    return path


def write_exr(path: Path, channels: dict[str, np.ndarray], **header) -> Path:
    import OpenEXR

    head = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    head.update(header)
    # the bindings take raw buffers: views like rgb[..., 0] must be made contiguous first
    channels = {name: np.ascontiguousarray(px) for name, px in channels.items()}
    OpenEXR.File(head, channels).write(str(path))
    return path


def write_exr_rgb(path: Path, rgb: np.ndarray, **header) -> Path:
    return write_exr(path, {"R": rgb[..., 0], "G": rgb[..., 1], "B": rgb[..., 2]}, **header)


def write_exr_sequence(folder: Path, name: str = "plate", first: int = 1001, count: int = 6,
                       size: tuple[int, int] = (40, 24)) -> Path:
    """A half-float RGB EXR ramp sequence (frames differ in blue); returns its #### pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(count):
        rgb = np.stack([xx / w, yy / h, np.full_like(xx, (i + 1) / count)], axis=-1) * 0.8
        write_exr_rgb(folder / f"{name}.{first + i:04d}.exr", rgb.astype(np.float16))
    return folder / f"{name}.####.exr"


def srgb(linear: np.ndarray) -> np.ndarray:
    """Reference sRGB encode in float64 (IEC 61966-2-1)."""
    x = np.clip(np.asarray(linear, dtype=np.float64), 0, 1)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def live_processes():
    """(pid, command name, stat fields after the name) of every live (non-zombie) process (Linux /proc)."""
    import os

    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...
        if fields[0] != "Z":
            yield int(entry), stat[stat.index("(") + 1:stat.rindex(")")], fields


def ffmpeg_children() -> list[int]:
    """PIDs of live ffmpeg processes that are children of this process."""
    import os

    me = os.getpid()
    return [pid for pid, comm, fields in live_processes() if int(fields[1]) == me and "ffmpeg" in comm]


FPS_NTSC = Fraction(24000, 1001)
