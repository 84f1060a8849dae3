"""ffmpeg / ffprobe: finding the binaries, probing a file, streaming decoded frames.

Binaries
  ffmpeg:  $DVD_VFX_FFMPEG (path or name on PATH), else `ffmpeg` on PATH, else the binary
           bundled with imageio-ffmpeg (so a plain `pip install` works).
  ffprobe: $DVD_VFX_FFPROBE (path or name; a name that cannot be found, or "none"/"0"/"",
           means "no ffprobe"), else `ffprobe` on PATH, else one beside the ffmpeg binary.
           Without ffprobe, `ffmpeg -i` is parsed and packets are counted with a fast
           `-c copy -f framecrc` pass (which also gives exact packet timing for the rate).

Frame rate
  r_frame_rate when it agrees with avg_frame_rate (within 1%). When they disagree (e.g. a
  constant 60 fps clip whose container duration is one frame long: avg 3600/61), or the rate is
  not a standard one, the packet timestamps decide (first packets + last seconds, one seek): a
  rate whose frame interval the first and last timestamps keep wins; otherwise the clip is
  variable-rate and avg_frame_rate is used.

Streaming and conversion
  One ffmpeg process per read decodes, converts to RGB and resizes; frames are read from its
  pipe one at a time into one reused buffer; closing the iterator kills the process.
  - zscale (zimg), when the ffmpeg build has it (default; DVD_VFX_SCALER=zscale|swscale picks):
    exact YCbCr -> RGB with the stream's matrix and range (untagged: BT.709 for HD video, 720
    lines and up, as Nuke assumes; BT.601 otherwise, as ffmpeg assumes), output as 32-bit float planar RGB, resized with a bilinear (tent) filter when
    reducing -- an antialiased, ringing-free average -- and bicubic when enlarging.
  - swscale (`scale` filter) otherwise: rgb48le, flags area (reducing) / bicubic (enlarging)
    + accurate_rnd + full_chroma_int, in_color_matrix from the stream. swscale puts n-bit
    white at (2^n - 1) << (16 - n) (YCbCr sources: at 255 << 8), so that is what we divide
    by; the leftover error is below 0.1% and clipped.
  Either way 10/12/16-bit sources keep their precision (never squeezed through 8 bits).
"""

from __future__ import annotations

import collections
import functools
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from dvd_vfx.errors import InputError

from .base import STANDARD_RATES, log, one_line, snap_rate

# ffprobe colour-space names -> (swscale in_color_matrix, zscale matrixin number)
_MATRIX = {
    "bt709": ("bt709", 1),
    "fcc": ("fcc", 4),
    "bt470bg": ("bt470", 5),
    "smpte170m": ("smpte170m", 6),
    "smpte240m": ("smpte240m", 7),
    "bt2020nc": ("bt2020", 9),
    "bt2020c": ("bt2020", 10),
}
DEFAULT_MATRIX = "bt601"  # what ffmpeg assumes for untagged YCbCr (= smpte170m coefficients)
HD_MATRIX = "bt709"  # untagged HD video (720 lines and up, or 1280 wide): BT.709 by convention, as Nuke assumes
_RGB_FAMILY = ("rgb", "bgr", "gbr", "argb", "abgr", "0rgb", "0bgr", "x2rgb", "x2bgr", "gray", "ya", "pal", "mono")

_DISABLED = {"", "0", "none", "no", "false", "off"}


# ---------------------------------------------------------------------------------------------
# binaries


def find_ffmpeg() -> str:
    """Path of the ffmpeg binary to use (InputError with the fix when there is none)."""
    env = os.environ.get("DVD_VFX_FFMPEG")
    if env:
        found = shutil.which(env)
        if not found:
            raise InputError(
                f"DVD_VFX_FFMPEG={env} is not an executable ffmpeg; point it to ffmpeg or unset it"
            )
        return found
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        raise InputError(
            "ffmpeg was not found; install ffmpeg (e.g. apt install ffmpeg) or `pip install imageio-ffmpeg`"
        ) from None


def find_ffprobe() -> str | None:
    """Path of ffprobe, or None to use the ffmpeg-only fallback (tests monkeypatch this)."""
    env = os.environ.get("DVD_VFX_FFPROBE")
    if env is not None:
        if env.strip().lower() in _DISABLED:
            return None
        found = shutil.which(env)
        if not found:
            log.debug("DVD_VFX_FFPROBE=%s not found; probing with ffmpeg alone", env)
        return found
    found = shutil.which("ffprobe")
    if found:
        return found
    try:
        beside = os.path.join(os.path.dirname(find_ffmpeg()), "ffprobe")
    except InputError:
        return None
    return beside if os.path.isfile(beside) and os.access(beside, os.X_OK) else None


def _query(exe: str, flag: str) -> str | None:
    """stdout of `exe -hide_banner FLAG` (an ffmpeg capability query), None if it cannot run."""
    try:
        return subprocess.run([exe, "-hide_banner", flag], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=8)
def _ffmpeg_version(exe: str) -> tuple[int, int]:
    out = _query(exe, "-version")
    if out is None:
        return (99, 0)
    m = re.search(r"version n?(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (99, 0)  # git builds are new


def passthrough_args(exe: str) -> list[str]:
    """Output options that emit every decoded frame exactly once (no dup/drop)."""
    return ["-fps_mode", "passthrough"] if _ffmpeg_version(exe) >= (5, 1) else ["-vsync", "passthrough"]


@functools.lru_cache(maxsize=8)
def _pix_fmt_depths(exe: str) -> dict[str, int]:
    out = _query(exe, "-pix_fmts")
    if out is None:
        return {}
    depths = {}
    for line in out.splitlines():
        m = re.match(r"^[IOHPB.]{5}\s+(\w+)\s+\d+\s+\d+\s+([\d-]+)\s*$", line)
        if m:
            depths[m.group(1)] = max(int(x) for x in m.group(2).split("-") if x)
    return depths


def bit_depth_of(pix_fmt: str, exe: str | None = None) -> int:
    """Bits per component of an ffmpeg pixel format (10 for yuv422p10le, 16 for rgb48be)."""
    if exe:
        depth = _pix_fmt_depths(exe).get(pix_fmt)
        if depth:
            return depth
    name = pix_fmt.lower()
    if re.match(r"^(rgb|bgr)48|^(rgb|bgr)a64", name):
        return 16
    if "f32" in name:
        return 32
    if "f16" in name:
        return 16
    m = re.search(r"(\d+)(le|be)$", name)
    if m and int(m.group(1)) in (9, 10, 12, 14, 16):
        return int(m.group(1))
    return 8


def ffmpeg_input_name(path: str) -> str:
    """A local path spelled so ffmpeg never takes it for a protocol or an option."""
    return "file:" + os.path.abspath(path)


def ffmpeg_reason(stderr: str, path: str | None = None) -> str:
    """The most telling line of ffmpeg's stderr, without [demuxer @ 0x...] prefixes."""
    lines = []
    for raw in stderr.splitlines():
        line = re.sub(r"^\[[^\]]*@ ?0x[0-9a-f]+\]\s*", "", raw.strip())
        line = line.replace("file:", "")
        if path:
            line = line.replace(os.path.abspath(path) + ": ", "")
        if line and not line.startswith(("To ignore this", "Conversion failed", "frame=")) and line not in lines:
            lines.append(line)
    return one_line("; ".join(lines[-2:]), 200) if lines else "no details from ffmpeg"


# ---------------------------------------------------------------------------------------------
# probing


@dataclass
class MediaProbe:
    """What the readers need from one file's first usable video stream."""

    path: str
    format_name: str
    stream_index: int
    codec: str
    width: int  # coded size, before rotation
    height: int
    pix_fmt: str
    bit_depth: int
    sar: Fraction
    rotation: int  # clockwise degrees applied for display (0/90/180/270)
    fps: Fraction | None
    frame_count: int
    color_space: str | None
    color_range: str | None
    other_streams: list[str] = field(default_factory=list)
    probed_with: str = "ffprobe"
    count_from_container: bool = False  # frame_count is the container's (index) count, not packets read
    duration: float | None = None  # seconds, when known

    @property
    def display_size(self) -> tuple[int, int]:
        if self.rotation in (90, 270):
            return self.height, self.width
        return self.width, self.height

    @property
    def is_rgb(self) -> bool:
        return is_rgb_family(self.pix_fmt)

    @property
    def color_matrix(self) -> str | None:
        """YCbCr matrix used for YUV -> RGB (ffprobe names); None for RGB/grey sources.

        The stream's tag when it has a known one; untagged HD video (720 lines and up, or 1280
        wide) is BT.709 by convention, anything else untagged BT.601 (SD, and JPEG by definition).
        """
        if self.is_rgb:
            return None
        if self.color_space in _MATRIX:
            return self.color_space
        return HD_MATRIX if self._hd_video else DEFAULT_MATRIX

    @property
    def color_matrix_note(self) -> str | None:
        """Why color_matrix is what it is, for `dvd-vfx info`; None for RGB/grey sources."""
        if self.is_rgb:
            return None
        if self.color_space in _MATRIX:
            return "tagged"
        if self._hd_video:
            return "untagged; HD video (720 lines and up) is BT.709 by convention"
        if self._jpeg:
            return "untagged; JPEG is BT.601"
        return "untagged; SD is BT.601" + (f" (tag {self.color_space} not supported)" if self.color_space else "")

    @property
    def _jpeg(self) -> bool:
        return self.codec in ("mjpeg", "jpegls") or self.pix_fmt.startswith("yuvj")

    @property
    def _hd_video(self) -> bool:
        image = self.format_name.startswith("image2") or self.format_name.endswith("_pipe")
        return not image and not self._jpeg and (self.height >= 720 or self.width >= 1280)

    @property
    def full_range(self) -> bool:
        if self.color_range:
            return self.color_range == "pc"
        return self.pix_fmt.startswith("yuvj")  # the JPEG formats are full range by definition


def is_rgb_family(pix_fmt: str) -> bool:
    return pix_fmt.startswith(_RGB_FAMILY)


def _ratio(text, default=None) -> Fraction | None:
    if text is None:
        return default
    try:
        num, _, den = str(text).partition("/" if "/" in str(text) else ":")
        value = Fraction(int(num), int(den or 1))
    except (ValueError, ZeroDivisionError):
        return default
    return value if value > 0 else default


def _cw_rotation(ccw_degrees: float) -> int:
    """Display-matrix rotation (counter-clockwise, as ffprobe prints it) -> clockwise 0/90/180/270."""
    return int(round(-ccw_degrees / 90.0)) * 90 % 360


def _choose_rate(r_rate: Fraction | None, avg_rate: Fraction | None) -> Fraction | None:
    if r_rate and avg_rate:
        if abs(r_rate - avg_rate) <= avg_rate * Fraction(1, 100):
            rate = r_rate  # the nominal rate, usually the exact rational
        else:
            rate = avg_rate  # VFR or field-rate r_frame_rate: the average is what plays
    else:
        rate = r_rate or avg_rate
    if rate is None or rate > 1000:
        return None
    if rate.denominator > 1001:  # a measured value: snap to the rate it obviously is
        rate = snap_rate(rate, float(rate) * 0.0005) or rate.limit_denominator(1001)
    return rate


def _not_media(path: str, reason: str) -> InputError:
    return InputError(
        f"cannot read {path}: not a video or image file ffmpeg understands ({reason}); "
        "check the file, or re-export it"
    )


def _no_video(path: str, others: list[str]) -> InputError:
    found = ", ".join(others) if others else "no streams at all"
    return InputError(
        f"{path} has no video stream (found: {found}); give a file with picture in it"
    )


def probe_media(path: str, *, count_frames: bool = True) -> MediaProbe:
    """Probe with ffprobe when there is one, else with ffmpeg alone; then decode frame 1."""
    ffmpeg = find_ffmpeg()
    ffprobe = find_ffprobe()
    if ffprobe:
        probe = _probe_ffprobe(path, ffprobe, ffmpeg, count_frames)
    else:
        probe = _probe_ffmpeg(path, ffmpeg)
    if probe.codec in ("ansi", "tty"):
        raise _not_media(path, "it is a text file")
    _check_decodes(probe, ffmpeg)
    return probe


def _probe_ffprobe(path: str, ffprobe: str, ffmpeg: str, count_frames: bool) -> MediaProbe:
    import ffmpeg as ffmpeg_python

    try:
        data = ffmpeg_python.probe(ffmpeg_input_name(path), cmd=ffprobe, v="error")
    except ffmpeg_python.Error as exc:
        raise _not_media(path, ffmpeg_reason(exc.stderr.decode("utf-8", "replace"), path)) from None
    except (OSError, ValueError) as exc:  # json errors, exec failures
        raise _not_media(path, one_line(exc)) from None
    streams = data.get("streams", [])
    video, others = None, []
    for s in streams:
        kind = s.get("codec_type", "?")
        if (
            video is None
            and kind == "video"
            and not s.get("disposition", {}).get("attached_pic")
            and not s.get("disposition", {}).get("timed_thumbnails")
        ):
            video = s
        elif kind != "video":
            others.append(f"{kind} {s.get('codec_name', '?')}")
    if video is None:
        raise _no_video(path, others)
    pix_fmt = video.get("pix_fmt") or "unknown"
    rotation = 0
    for side in video.get("side_data_list", []) or []:
        if "rotation" in side:
            rotation = _cw_rotation(float(side["rotation"]))
            break
    else:
        tag = (video.get("tags") or {}).get("rotate")
        if tag:
            rotation = int(round(float(tag) / 90.0)) * 90 % 360
    nb = video.get("nb_frames")
    count = int(nb) if nb and str(nb).isdigit() else 0
    from_container = count > 0
    if count <= 0 and count_frames:
        count = _count_packets_ffprobe(path, ffprobe, video["index"])
    color_space = video.get("color_space")
    duration = _float(video.get("duration")) or _float(data.get("format", {}).get("duration"))
    r_rate, avg_rate = _ratio(video.get("r_frame_rate")), _ratio(video.get("avg_frame_rate"))
    fps = _choose_rate(r_rate, avg_rate)
    if count_frames and count > 1 and fps is not None and (
        (r_rate and avg_rate and r_rate != avg_rate) or fps not in STANDARD_RATES
    ):
        # the rates disagree (a container duration one frame long, a VFR clip) or are odd: the
        # packet timestamps decide; the clip is variable-rate only when they vary
        measured = _rate_from_timestamps(path, ffprobe, int(video["index"]), count, _ratio(video.get("time_base")),
                                         duration, [r_rate, avg_rate])
        if measured is not None:
            fps = measured
    return MediaProbe(
        path=path,
        format_name=data.get("format", {}).get("format_name", "?"),
        stream_index=int(video["index"]),
        codec=video.get("codec_name", "unknown"),
        width=int(video.get("width") or 0),
        height=int(video.get("height") or 0),
        pix_fmt=pix_fmt,
        bit_depth=bit_depth_of(pix_fmt, ffmpeg),
        sar=_ratio(video.get("sample_aspect_ratio"), Fraction(1)),
        rotation=rotation,
        fps=fps,
        frame_count=count,
        color_space=None if color_space in (None, "unknown", "reserved") else color_space,
        color_range=video.get("color_range") if video.get("color_range") in ("tv", "pc") else None,
        other_streams=others,
        probed_with="ffprobe",
        count_from_container=from_container,
        duration=duration,
    )


def _float(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value == value and value > 0 else None


# Timestamps of the first HEAD_PACKETS packets and of the last TAIL_SECONDS give a stream's span.
HEAD_PACKETS = 32
TAIL_SECONDS = 2.0


def _rate_from_timestamps(path: str, ffprobe: str, index: int, count: int, time_base: Fraction | None,
                          duration: float | None, candidates: list) -> Fraction | None:
    """The rate whose constant frame interval the packet timestamps keep, or None (they vary).

    `count` frames whose first and last timestamps lie (count - 1) intervals of 1/rate apart
    play at that rate, whatever the container's duration says. Reads the first packets and the
    last seconds (one seek), not the whole file. Candidates are tried first (exact nominal
    rationals), then the measured rate if it is a standard one.
    """
    if time_base is None or duration is None or count < 2:
        return None
    intervals = f"%+#{HEAD_PACKETS},{max(0.0, duration - TAIL_SECONDS):.6f}%"
    cmd = [ffprobe, "-v", "error", "-select_streams", str(index), "-read_intervals", intervals,
           "-show_entries", "packet=pts,dts", "-of", "json", ffmpeg_input_name(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        packets = json.loads(proc.stdout).get("packets", [])
    except (OSError, subprocess.SubprocessError, ValueError, AttributeError):
        return None
    stamps = []
    for packet in packets:
        value = packet.get("pts", packet.get("dts"))
        if isinstance(value, int):
            stamps.append(value)
    if len(stamps) < 2:
        return None
    span = (max(stamps) - min(stamps)) * time_base
    if span <= 0:
        return None
    measured = (count - 1) / span
    snapped = snap_rate(measured, float(measured) * 0.0005)
    for rate in [*candidates, snapped]:
        if rate and abs(span - (count - 1) / rate) <= Fraction(1, 2) / rate:
            return rate
    return None


def count_readable_frames(probe: MediaProbe) -> int | None:
    """Frames whose data is really in a movie whose frame count comes from its container index:
    fewer than probe.frame_count for a truncated file, else None (complete, or cannot be told).

    Cheap for a complete file: one seek to its last seconds (the packets there must be readable).
    Only a file that fails that is counted, packet by packet (no decoding); its last packet is
    taken to be cut short and not counted (at worst one frame too few, never one too many).
    """
    ffprobe = find_ffprobe()
    if ffprobe is None or not probe.count_from_container or probe.frame_count <= 0:
        return None
    where = f"{max(0.0, probe.duration - TAIL_SECONDS):.6f}%" if probe.duration else "%+#1"
    cmd = [ffprobe, "-v", "error", "-select_streams", str(probe.stream_index), "-read_intervals", where,
           "-show_entries", "packet=pts", "-of", "json", ffmpeg_input_name(probe.path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        tail = json.loads(proc.stdout).get("packets", [])
    except (OSError, subprocess.SubprocessError, ValueError, AttributeError):
        return None
    if tail and "partial file" not in proc.stderr:
        return None
    cmd = [ffprobe, "-v", "error", "-select_streams", str(probe.stream_index), "-count_packets",
           "-show_entries", "stream=nb_read_packets", "-of", "json", ffmpeg_input_name(probe.path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        readable = int(json.loads(proc.stdout)["streams"][0]["nb_read_packets"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError, TypeError):
        return None
    if readable >= probe.frame_count:
        return None  # all there after all
    # the file was cut somewhere, almost surely inside its last packet: that one does not decode
    return max(0, readable - 1)


def _count_packets_ffprobe(path: str, ffprobe: str, index: int) -> int:
    cmd = [
        ffprobe, "-v", "error", "-select_streams", str(index), "-count_packets",
        "-show_entries", "stream=nb_read_packets", "-of", "json", ffmpeg_input_name(path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    try:
        return int(json.loads(proc.stdout)["streams"][0]["nb_read_packets"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise _not_media(path, ffmpeg_reason(proc.stderr, path)) from None


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside (...) or [...]."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


_STREAM_RE = re.compile(
    r"^\s*Stream #\d+:(\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?:\s*(\w+):\s*(.*)$"
)
_FIELD_ORDER = {"progressive", "top first", "bottom first", "top coded first (swapped)",
                "bottom coded first (swapped)", "unknown"}


def _probe_ffmpeg(path: str, ffmpeg: str) -> MediaProbe:
    """ffprobe-free probe: parse `ffmpeg -i` and count packets with a stream-copy framecrc pass."""
    cmd = [
        ffmpeg, "-hide_banner", "-nostdin", "-i", ffmpeg_input_name(path),
        "-map", "0:V:0?", "-c", "copy", "-f", "framecrc", "-",
    ]
    proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    err = proc.stderr.decode("utf-8", "replace")
    out = proc.stdout.decode("utf-8", "replace")
    head = err.split("Stream mapping:")[0].split("Output #0")[0]
    if "Input #0" not in head:
        raise _not_media(path, ffmpeg_reason(err, path))
    fmt = re.search(r"Input #0, (.*?), from ", head)
    lines = head.splitlines()
    video, others = None, []
    for i, line in enumerate(lines):
        m = _STREAM_RE.match(line)
        if not m:
            continue
        kind = m.group(2).lower()
        desc = m.group(3)
        if kind == "video" and video is None and "(attached pic)" not in desc and "(thumbnail)" not in desc:
            block = []
            for nxt in lines[i + 1:]:
                if _STREAM_RE.match(nxt) or not nxt.startswith("    "):
                    break
                block.append(nxt)
            video = (int(m.group(1)), desc, "\n".join(block))
        elif kind != "video":
            codec = _split_top(desc)[0].split()[0] if desc else "?"
            others.append(f"{kind} {codec}")
    if video is None:
        raise _no_video(path, others)
    index, desc, block = video
    fields = _split_top(desc)
    codec = fields[0].split()[0] if fields and fields[0] else "unknown"
    pix_fmt, color_space, color_range = "unknown", None, None
    width = height = 0
    for f in fields[1:]:
        size = re.match(r"^(\d+)x(\d+)", f)
        if size:
            width, height = int(size.group(1)), int(size.group(2))
            break
        pm = re.match(r"^([0-9a-z_]+)(?:\((.*)\))?$", f)
        if pm and pix_fmt == "unknown" and not re.search(r"\d+ (kb/s|fps|tbr|tbn)", f):
            pix_fmt = pm.group(1)
            for item in (pm.group(2) or "").split(","):
                item = item.strip()
                if item in ("tv", "pc"):
                    color_range = item
                elif item and item not in _FIELD_ORDER:
                    cs = item.split("/")[0]
                    if cs not in ("unknown", "reserved"):
                        color_space = cs
    sar_m = re.search(r"SAR (\d+):(\d+)", desc)
    sar = _ratio(f"{sar_m.group(1)}:{sar_m.group(2)}", Fraction(1)) if sar_m else Fraction(1)
    rotation = 0
    rot_m = re.search(r"rotation of (-?\d+(?:\.\d+)?) degrees", block, re.IGNORECASE)
    if rot_m:
        rotation = _cw_rotation(float(rot_m.group(1)))
    else:
        tag_m = re.search(r"^\s*rotate\s*:\s*(-?\d+)", block, re.MULTILINE)
        if tag_m:
            rotation = int(tag_m.group(1)) % 360

    # packets from framecrc: "stream, dts, pts, duration, size, crc"
    tb_m = re.search(r"^#tb 0: (\d+)/(\d+)", out, re.MULTILINE)
    tb = Fraction(int(tb_m.group(1)), int(tb_m.group(2))) if tb_m else None
    pts, durations = [], []
    for line in out.splitlines():
        if not line or line.startswith("#"):
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) >= 4:
            try:
                pts.append(int(cols[2]))
                durations.append(int(cols[3]))
            except ValueError:
                pass
    count = len(pts)
    text_rate = None
    for unit in ("tbr", "fps"):
        tm = re.search(r"(\d+(?:\.\d+)?)(k?) " + unit, desc)
        if tm:
            text_rate = Fraction(tm.group(1)) * (1000 if tm.group(2) else 1)
            break
    fps = _rate_from_packets(tb, pts, durations, text_rate)
    return MediaProbe(
        path=path,
        format_name=fmt.group(1) if fmt else "?",
        stream_index=index,
        codec=codec,
        width=width,
        height=height,
        pix_fmt=pix_fmt,
        bit_depth=bit_depth_of(pix_fmt, ffmpeg),
        sar=sar,
        rotation=rotation,
        fps=fps,
        frame_count=count,
        color_space=color_space,
        color_range=color_range,
        other_streams=others,
        probed_with="ffmpeg",
    )


def _rate_from_packets(tb, pts, durations, text_rate) -> Fraction | None:
    """Exact rate from packet timing, cross-checked with ffmpeg's rounded printout."""
    candidates = []
    if tb:
        durs = [d for d in durations if d > 0]
        if durs:
            common = collections.Counter(durs).most_common(1)[0][0]
            candidates.append(1 / (common * tb))
        if len(pts) > 1 and max(pts) > min(pts):
            candidates.append((len(pts) - 1) / ((max(pts) - min(pts)) * tb))
    tolerance = 0.0051  # ffmpeg prints rates with two decimals
    for cand in candidates:
        if cand.denominator <= 1001 and (text_rate is None or abs(float(cand - text_rate)) <= tolerance):
            return cand
    printed = (snap_rate(text_rate, tolerance) or text_rate.limit_denominator(1001)) if text_rate is not None else None
    if tb and len(pts) > 1 and max(pts) > min(pts):
        # constant timestamps win over a printed rate taken from the container's duration: a
        # standard rate whose frame interval the first and last timestamps keep, where the
        # printed one does not keep it
        span = (max(pts) - min(pts)) * tb

        def keeps(rate):
            return rate is not None and abs(span - (len(pts) - 1) / rate) <= Fraction(1, 2) / rate

        steady = snap_rate((len(pts) - 1) / span, float((len(pts) - 1) / span) * 0.0005)
        if keeps(steady) and not keeps(printed):
            return steady
    if printed is not None:
        return printed
    for cand in candidates:
        return snap_rate(cand, float(cand) * 0.001) or cand.limit_denominator(1001)
    return None


def _check_decodes(probe: MediaProbe, ffmpeg: str) -> None:
    """Decode the first frame: catches files whose packets never turn into a picture."""
    cmd = [
        ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-i", ffmpeg_input_name(probe.path),
        "-map", f"0:{probe.stream_index}", "-frames:v", "1", "-f", "framecrc", "-",
    ]
    proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    out = proc.stdout.decode("utf-8", "replace")
    if not any(line and not line.startswith("#") for line in out.splitlines()):
        reason = ffmpeg_reason(proc.stderr.decode("utf-8", "replace"), probe.path)
        raise InputError(
            f"{probe.path} contains no decodable video frames ({reason}); re-export the file"
        )


# ---------------------------------------------------------------------------------------------
# streaming


class _StderrTail(threading.Thread):
    """Drains a process's stderr so it never blocks; keeps the last lines for messages."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: collections.deque[str] = collections.deque(maxlen=30)

    def run(self) -> None:
        for raw in iter(self.stream.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class RawStream:
    """Result holder for stream_frames: how many frames came and why it stopped."""

    frames: int = 0
    returncode: int | None = None
    stderr: str = ""


@functools.lru_cache(maxsize=8)
def _filters(exe: str) -> frozenset[str]:
    try:
        out = subprocess.run(
            [exe, "-hide_banner", "-filters"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and "->" in parts[2]:
            names.add(parts[1])
    return frozenset(names)


def use_zscale(exe: str) -> bool:
    """zscale (exact float conversion) unless DVD_VFX_SCALER=swscale or the build lacks it."""
    choice = os.environ.get("DVD_VFX_SCALER", "auto").strip().lower()
    if choice == "swscale":
        return False
    has = "zscale" in _filters(exe)
    if choice == "zscale" and not has:
        raise InputError(
            f"DVD_VFX_SCALER=zscale but {exe} has no zscale filter (built without libzimg); "
            "unset DVD_VFX_SCALER or use an ffmpeg built with zimg"
        )
    return has


@dataclass(frozen=True)
class Conversion:
    """How frames leave ffmpeg: pixel format on the pipe, bytes per frame, how to normalise."""

    pix_fmt: str  # "gbrpf32le" (zscale) or "rgb48le" (swscale)
    width: int
    height: int
    white: float = 1.0  # rgb48le code value of white

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * (12 if self.pix_fmt == "gbrpf32le" else 6)

    def to_rgb(self, buf: bytearray) -> np.ndarray:
        h, w = self.height, self.width
        if self.pix_fmt == "gbrpf32le":
            planes = np.frombuffer(buf, dtype="<f4").reshape(3, h, w)  # G, B, R
            rgb = np.empty((h, w, 3), dtype=np.float32)
            rgb[..., 0] = planes[2]
            rgb[..., 1] = planes[0]
            rgb[..., 2] = planes[1]
            return rgb
        rgb = np.frombuffer(buf, dtype="<u2").reshape(h, w, 3).astype(np.float32)
        rgb *= np.float32(1.0 / self.white)
        return rgb


def add_conversion(stream, probe: MediaProbe, src: tuple[int, int], dst: tuple[int, int], exe: str):
    """Append resize + RGB conversion filters to an ffmpeg-python stream; returns (stream, Conversion)."""
    width, height = dst
    reducing = dst[0] <= src[0] and dst[1] <= src[1]
    if use_zscale(exe):
        opts = {"filter": "bilinear" if reducing else "bicubic"}
        if not probe.is_rgb:
            opts["matrixin"] = _MATRIX.get(probe.color_matrix, (None, 6))[1]
            opts["rangein"] = "full" if probe.full_range else "limited"
        stream = stream.filter("zscale", width, height, **opts).filter("format", "gbrpf32le")
        return stream, Conversion("gbrpf32le", width, height)
    opts = {"flags": ("area" if reducing else "bicubic") + "+accurate_rnd+full_chroma_int"}
    if not probe.is_rgb:
        opts["in_color_matrix"] = _MATRIX.get(probe.color_matrix, ("bt601", 6))[0]
        opts["in_range"] = "full" if probe.full_range else "limited"
        white = 255 << 8
    else:
        n = min(max(probe.bit_depth, 8), 16)
        white = ((1 << n) - 1) << (16 - n)
        if src == dst and n > 8 and probe.pix_fmt.startswith(("gbrp", "gbrap")):
            white = 65535  # swscale's unscaled planar-RGB converter scales to full 16 bits
    stream = stream.filter("scale", width, height, **opts).filter("format", "rgb48le")
    return stream, Conversion("rgb48le", width, height, float(white))


def stream_frames(args: list[str], conv: Conversion, expected: int, status: RawStream) -> Iterator[np.ndarray]:
    """Run ffmpeg `args` (raw frames in conv.pix_fmt on stdout) and yield float32 [H, W, 3] frames.

    Yields at most `expected` frames; fills `status` when the process ends. The process is
    killed if the consumer stops early (generator close / garbage collection).
    """
    frame_bytes = conv.frame_bytes
    buf = bytearray(frame_bytes)
    view = memoryview(buf)
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
    )
    tail = _StderrTail(proc.stderr)
    tail.start()
    ended = False
    try:
        while status.frames < expected:
            got = 0
            while got < frame_bytes:
                n = proc.stdout.readinto(view[got:])
                if not n:
                    break
                got += n
            if got < frame_bytes:
                ended = True  # ffmpeg closed its output: let it exit and keep its status
                break
            frame = conv.to_rgb(buf)
            status.frames += 1
            yield frame
    finally:
        if ended:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        status.returncode = proc.wait()
        tail.join(timeout=5)
        proc.stderr.close()
        status.stderr = tail.text()
