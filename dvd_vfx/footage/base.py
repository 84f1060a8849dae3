"""Shared pieces of the footage readers: FootageInfo, the Footage base class, frame ranges.

Nothing here imports torch; numpy is the only heavy dependency.
"""

from __future__ import annotations

import abc
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from dvd_vfx.errors import InputError

log = logging.getLogger("dvd_vfx.footage")

# Frame rates that cameras and editorial actually use; a measured or rounded rate that is
# within a hair of one of these is taken to be it (e.g. 23.98 -> 24000/1001).
STANDARD_RATES: tuple[Fraction, ...] = tuple(
    Fraction(x)
    for x in (
        "24000/1001", "24", "25", "30000/1001", "30", "48000/1001", "48", "50",
        "60000/1001", "60", "72", "96", "100", "120000/1001", "120", "12", "15",
        "16", "18", "20", "8", "10", "144", "240",
    )
)


@dataclass(frozen=True)
class FootageInfo:
    """Everything the engine needs to know about a source, probed before any frame is read."""

    source: str
    path: str
    kind: str  # "video" | "sequence"
    width: int
    height: int
    frame_numbers: tuple[int, ...]
    fps: Fraction
    pixel_format: str
    bit_depth: int
    pixel_aspect: Fraction = Fraction(1)
    rotation: int = 0
    colorspace: str = "display"  # "display" | "linear"
    codec: str | None = None
    data_window: tuple[int, int, int, int] | None = None
    display_window: tuple[int, int, int, int] | None = None
    # Extras (all optional, with defaults, so the required fields above stay the contract).
    ocio_colorspace: str | None = None  # OCIO source colourspace used instead of the sRGB curve
    color_matrix: str | None = None  # video: YCbCr matrix used for YUV -> RGB
    color_matrix_note: str | None = None  # video: why that matrix ("tagged", "untagged; HD ...")
    color_range: str | None = None  # video: "tv" (limited) / "pc" (full) when tagged
    held_frames: tuple[int, ...] = ()  # sequences with hold_missing: frames repeating a previous one
    sequence_note: str | None = None  # one numbered file given: the sequence it belongs to
    part: str | None = None  # multi-part EXR: the part read (its name, else its number)
    view: str | None = None  # multi-view EXR: the view read
    picture: str | None = None  # EXR: which part/view/channels make the picture, when there is a choice
    readable_frames: int | None = None  # movie checked by check_length: frames really in a truncated file

    def frame_file(self, number: int) -> str:
        """A sequence's file of frame `number` (printf token in the file name only, so a folder named
        `100%` is fine); the file itself for a single unnumbered image."""
        folder, name = os.path.split(self.path)
        try:
            return os.path.join(folder, name % number)
        except (TypeError, ValueError):  # no frame token: one image
            return self.path

    @property
    def frame_count(self) -> int:
        return len(self.frame_numbers)

    @property
    def first_frame(self) -> int:
        return self.frame_numbers[0]

    @property
    def last_frame(self) -> int:
        return self.frame_numbers[-1]

    def describe(self, frames: tuple[int, int] | None = None) -> str:
        """Multi-line human summary (used by `dvd-vfx info`); frames: only this (checked) range."""
        fps = format_fps(self.fps)
        first, last = frames or (self.first_frame, self.last_frame)
        count = sum(1 for n in self.frame_numbers if first <= n <= last)
        held = [n for n in self.held_frames if first <= n <= last]
        lines = [f"source:      {self.source}"]
        if self.path != self.source:
            lines.append(f"path:        {self.path}")
        if self.kind == "video":
            lines.append(
                f"kind:        video ({self.codec or 'unknown codec'}, {self.pixel_format}, "
                f"{self.bit_depth}-bit)"
            )
        else:
            fmt = (self.codec or "image").upper()
            lines.append(
                f"kind:        image sequence ({fmt}, {self.pixel_format}, {self.bit_depth}-bit)"
            )
        size = f"{self.width}x{self.height}"
        extras = []
        if self.pixel_aspect != 1:
            extras.append(f"pixel aspect {format_fraction(self.pixel_aspect)}")
        if self.rotation:
            extras.append(f"rotated {self.rotation} degrees clockwise on read")
        lines.append(f"size:        {size}" + (f" ({', '.join(extras)})" if extras else ""))
        if self.picture:
            lines.append(f"picture:     {self.picture}")
        if self.data_window is not None and self.data_window != self.display_window:
            dw, dsp = self.data_window, self.display_window
            lines.append(
                f"windows:     data {dw[0]},{dw[1]}-{dw[2]},{dw[3]} inside display "
                f"{dsp[0]},{dsp[1]}-{dsp[2]},{dsp[3]} (outside the data window is black)"
            )
        whole = (first, last) == (self.first_frame, self.last_frame)
        truncated = self.readable_frames is not None and self.readable_frames < self.frame_count
        lines.append(
            f"frames:      {format_frame_span(first, last)} ({count} frame{'s' if count != 1 else ''}"
            + ("" if whole else f" of {format_frame_span(self.first_frame, self.last_frame)}")
            + (", as the container says" if truncated else "")
            + f") at {fps} fps"
        )
        if truncated:
            n = self.readable_frames
            if n:
                end = self.first_frame + n - 1
                lines.append(
                    f"truncated:   the container says {self.frame_count} frames but the file ends after {n} "
                    f"(frame {end}); re-export it, or render only --frames {format_frame_span(self.first_frame, end)}"
                )
            else:
                lines.append(
                    f"truncated:   the container says {self.frame_count} frames but none of them is in the "
                    "file; re-export it"
                )
        if held:
            lines.append(
                f"held:        {format_frame_list(held)} "
                "(missing; the previous frame is repeated)"
            )
        if self.sequence_note:
            lines.append(f"sequence:    {self.sequence_note}")
        if self.ocio_colorspace:
            colour = f"OCIO: {self.ocio_colorspace} -> default display/view"
        elif self.colorspace == "linear":
            colour = "scene-linear, converted with the sRGB transfer function (clipped to 0-1)"
        else:
            colour = "display-referred (used as is)"
        if self.kind == "video" and self.color_matrix:
            colour += f"; YCbCr matrix {self.color_matrix}"
            if self.color_matrix_note:
                colour += f" ({self.color_matrix_note})"
            if self.color_range:
                colour += f", {'full' if self.color_range == 'pc' else 'limited'} range"
        lines.append(f"colour:      {colour}")
        return "\n".join(lines)


class Footage(abc.ABC):
    """An opened, probed source. `read` streams frames one at a time."""

    info: FootageInfo

    def read(
        self,
        size: tuple[int, int] | None = None,
        frames: tuple[int, int] | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Stream (source_frame_number, float32 [H, W, 3] in [0, 1], display-referred).

        size = (width, height) of the returned frames (None = plate size); frames = inclusive
        (first, last) source frame numbers (None = all). Arguments are checked now, before the
        first frame is decoded; closing the iterator early stops any decoder it started.
        """
        width, height = self._check_size(size)
        first, last = self._check_range(frames)
        return self._read(width, height, first, last)

    def read_frame(self, frame: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """One frame (convenience; streaming many frames with `read` is much faster)."""
        it = self.read(size=size, frames=(frame, frame))
        try:
            return next(it)[1]
        finally:
            it.close()

    @abc.abstractmethod
    def _read(self, width: int, height: int, first: int, last: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield frames first..last (already validated) at width x height."""

    def check_length(self) -> FootageInfo:
        """Verify the frame count against the file where it comes from an index (movies); see VideoFootage."""
        return self.info

    def check_range(self, frames) -> tuple[int, int]:
        """(first, last) checked against the source's frames (InputError naming both if outside)."""
        return self._check_range(frames)

    def _check_size(self, size) -> tuple[int, int]:
        if size is None:
            return self.info.width, self.info.height
        try:
            width, height = size
            ok = int(width) == width and int(height) == height and width > 0 and height > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(
                f"working size {size!r} for {self.info.path} is invalid; "
                "give (width, height) as two positive integers"
            )
        return int(width), int(height)

    def _check_range(self, frames) -> tuple[int, int]:
        info = self.info
        if frames is None:
            return info.first_frame, info.last_frame
        try:
            first, last = (int(f) for f in frames)
        except (TypeError, ValueError):
            raise InputError(
                f"frame range {frames!r} for {info.path} is invalid; give (first, last) frame numbers"
            ) from None
        if first > last:
            raise InputError(
                f"frame range {first}-{last} for {info.path} is empty (first > last); "
                f"give first <= last within {info.first_frame}-{info.last_frame}"
            )
        if first < info.first_frame or last > info.last_frame:
            raise InputError(
                f"frame range {first}-{last} is outside {info.path}, which has frames "
                f"{info.first_frame}-{info.last_frame}; choose a range inside that"
            )
        return first, last

    def __repr__(self) -> str:
        i = self.info
        return (
            f"<{type(self).__name__} {i.path} {i.width}x{i.height} "
            f"frames {format_frame_span(i.first_frame, i.last_frame)} @ {format_fps(i.fps)}>"
        )


# ---------------------------------------------------------------------------------------------
# frame numbers and rates


_RANGE_RE = re.compile(r"^\s*(-?\d+)\s*(?:(?:-|:|\.\.)\s*(-?\d+)\s*)?$")


def parse_frame_range(text: str) -> tuple[int, int]:
    """"1001-1100" -> (1001, 1100); "12" -> (12, 12). Also "1001:1100" and "1001..1100"."""
    m = _RANGE_RE.match(str(text))
    if not m:
        raise InputError(
            f"frame range {text!r} is not understood; write FIRST-LAST (e.g. 1001-1100) or one frame"
        )
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) is not None else first
    if first > last:
        raise InputError(f"frame range {text!r} is empty (first > last); write FIRST-LAST with FIRST <= LAST")
    return first, last


def format_frame_span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def group_frames(numbers: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted runs of consecutive numbers: [1,2,3,7] -> [(1,3), (7,7)]."""
    runs: list[tuple[int, int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def format_frame_list(numbers: Iterable[int], limit: int = 8) -> str:
    """Compact list: "1005-1007, 1012"; long lists end with "... (N more)"."""
    runs = group_frames(numbers)
    text = ", ".join(format_frame_span(a, b) for a, b in runs[:limit])
    if len(runs) > limit:
        rest = sum(b - a + 1 for a, b in runs[limit:])
        text += f", ... ({rest} more frame{'s' if rest != 1 else ''})"
    return text


def format_fraction(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def format_fps(fps: Fraction) -> str:
    if fps.denominator == 1:
        return str(fps.numerator)
    return f"{fps.numerator}/{fps.denominator} ({float(fps):.3f})"


def snap_rate(value: Fraction | float, tolerance: float) -> Fraction | None:
    """The standard rate within `tolerance` (absolute, fps) of value, or None."""
    best = None
    for rate in STANDARD_RATES:
        diff = abs(float(rate) - float(value))
        if diff <= tolerance and (best is None or diff < best[0]):
            best = (diff, rate)
    return best[1] if best else None


def coerce_fps(value, what: str = "fps") -> Fraction:
    """A user-supplied rate (Fraction, int, float, "24000/1001", "23.976") as an exact Fraction."""
    try:
        if isinstance(value, Fraction):
            fps = value
        elif isinstance(value, int):
            fps = Fraction(value)
        elif isinstance(value, float):
            fps = snap_rate(value, 0.0005) or Fraction(value).limit_denominator(1001)
        else:
            text = str(value).strip()
            fps = Fraction(text)
            if "/" not in text and fps.denominator != 1:
                fps = snap_rate(fps, 0.0005) or fps.limit_denominator(1001)
    except (TypeError, ValueError, ZeroDivisionError):
        raise InputError(f"{what} {value!r} is not a frame rate; give e.g. 24, 25 or 24000/1001") from None
    if fps <= 0:
        raise InputError(f"{what} {value!r} must be positive; give e.g. 24, 25 or 24000/1001")
    return fps


def one_line(text: str, limit: int = 300) -> str:
    """Squash a (possibly multi-line) message from a tool into one short line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
