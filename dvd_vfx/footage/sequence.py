"""Numbered image sequences (EXR, PNG, JPEG, TIFF, DPX, TGA, BMP).

Accepted spellings of a sequence (the frame-number token is in the file name):
  shot.%04d.exr   printf; %d = unpadded
  shot.####.exr   '#' runs: one '#' = 4 digits (Shake/RV), N '#'s = N digits (Nuke)
  shot.@@@@.exr   '@' = one digit each
  shot.$F4.exr    Houdini ($F = unpadded)
  shot.1001-1100#.exr, shot.1001-1100####.exr   a range in front of the token limits the frames;
  shot.1001-1100x2#.exr                          with a step, only every 2nd frame (fileseq's frame sets:
                                                 also lists, 1001-1010,1050; negative frames, -10--1#)
  "shot.%04d.exr 1001-1100"                      Nuke's "file first-last" form
  a folder        the one sequence in it (an error lists them if there are several, or none)
  shot.1001.exr   a single existing numbered file means just that one frame (pass the folder
                  or a pattern for the whole sequence); an unnumbered image is one frame,
                  numbered start_frame (default 1).
Frame numbers come from the file names and are kept (negative ones too: shot.-005.exr is frame -5
of shot.%04d.exr, as printf writes it). Hidden files (".name") are ignored. The spellings are
parsed, and the files of a sequence listed, by fileseq (the library VFX pipelines share); what is
ours is below it: gaps and hold-missing, one size and one display window per sequence, the reads.

EXR plates are read with the OpenEXR bindings; the other formats with ffmpeg's image2 demuxer
(converted and resized by ffmpeg as for movies, see ffmpeg_tools: 10-bit DPX and 16-bit
PNG/TIFF keep their precision). One ffmpeg process decodes each run of consecutive files. The
demuxer finds a sequence's end by probing numbers in growing steps, so it may step over a gap
and then fail on the missing file, while frame-threaded decoders (PNG, TIFF) still hold the last
frames of the run: a run that ends at a gap is therefore given to ffmpeg as links to exactly its
files in a temporary folder (or, where links cannot be made, decoded with one thread).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import fileseq
import numpy as np

from dvd_vfx.errors import InputError

from .base import Footage, FootageInfo, format_frame_list, log
from .colour import BadPixels, OcioConversion, to_display
from .exr import BIT_DEPTHS, ExrLayout, choose_layout, read_exr_frame, read_exr_header
from .ffmpeg_tools import (
    Conversion,
    RawStream,
    ffmpeg_reason,
    add_conversion,
    find_ffmpeg,
    passthrough_args,
    probe_media,
    stream_frames,
)

IMAGE_EXTS = frozenset({"exr", "png", "jpg", "jpeg", "tif", "tiff", "dpx", "tga", "bmp"})
MAX_BAD_PIXEL_WARNINGS = 5  # per read; then one summary line at the end
# After ffmpeg fails on a run, the files from the first missing frame on are decoded one by one
# to name the broken one (a frame-threaded decoder fails a few frames after the last it output).
MAX_BLAME_CHECKS = 40

# fileseq reads every spelling; with HASH1 N '#'s are N digits (Nuke). One '#' alone is 4 digits
# (Shake/RV), as fileseq's HASH4 style has it.
_PAD_STYLE = fileseq.PAD_STYLE_HASH1
_UNPADDED = ("%d", "$F")
# Only to tell "two tokens" from "no token" when fileseq cannot parse a name.
_TOKEN_CHARS_RE = re.compile(r"#|@|%\d*d|\$F\d*")


@dataclass
class SequenceSpec:
    """A resolved sequence: where its files are and which frame numbers exist."""

    directory: str
    prefix: str
    suffix: str
    pad: int | None  # digits; 0 = unpadded; None = a single unnumbered image
    files: dict[int, str]  # frame number -> absolute path
    frame_range: tuple[int, int] | None = None  # limits given with the source
    single: bool = False  # the user named one existing file: just that frame
    frame_set: tuple[int, ...] | None = None  # the frames a pattern's range names when it has a step

    @property
    def ext(self) -> str:
        return self.suffix.rsplit(".", 1)[-1].lower()

    @property
    def pattern(self) -> str:
        """printf-style path (/x/shot.%04d.exr); the file itself for an unnumbered image."""
        if self.single:
            return next(iter(self.files.values()))
        token = f"%0{self.pad}d" if self.pad > 1 else "%d"
        return os.path.join(self.directory, self.prefix + token + self.suffix)

    def summary(self) -> str:
        nums = sorted(self.files)
        span = format_frame_list(nums, limit=3)
        return f"{os.path.basename(self.pattern)} ({span}; {len(nums)} file{'s' if len(nums) != 1 else ''})"


# ---------------------------------------------------------------------------------------------
# resolving what the user gave (fileseq parses the spellings and lists the files)


def _listdir(directory: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if not n.startswith("."))
    except FileNotFoundError:
        raise InputError(f"folder {directory} does not exist; check the path") from None
    except OSError as exc:
        raise InputError(f"cannot list folder {directory}: {exc.strerror or exc}; check its permissions") from None


def _check_ext(spec_name: str, ext: str) -> None:
    if ext not in IMAGE_EXTS:
        raise InputError(
            f"{spec_name}: '.{ext}' is not an image format for sequences; use EXR, PNG, JPEG, TIFF, "
            "DPX, TGA or BMP frames"
        )


def _parse(name: str) -> fileseq.FileSequence | None:
    try:
        return fileseq.FileSequence(name, pad_style=_PAD_STYLE, allow_subframes=False)
    except fileseq.ParseException:
        return None


def _pad_of(token: str) -> int:
    """Digits of a frame token: %04d, $F4, @@@@, N '#'s -> N; one '#' -> 4; %d, $F -> 0 (unpadded)."""
    if token in _UNPADDED:
        return 0
    if token == "#":
        return 4
    return fileseq.getPaddingNum(token, pad_style=_PAD_STYLE)


def _files_on_disk(directory: str, prefix: str, suffix: str, pad: int) -> dict[int, str]:
    """Frame number -> file of prefix<number>suffix in `directory`, numbers written with `pad` digits
    (more without a leading zero; any when unpadded). Negative numbers count (-005 is 4 digits)."""
    chars = fileseq.getPaddingChars(max(pad, 1), pad_style=_PAD_STYLE)
    try:
        found = fileseq.findSequenceOnDisk(os.path.join(directory, prefix + chars + suffix), strictPadding=True,
                                           pad_style=_PAD_STYLE)
    except fileseq.FileSeqException:
        return {}
    files = {}
    for number in found.frameSet() or ():
        path = found.frame(number)
        if os.path.isfile(path) and not os.path.basename(path).startswith("."):
            files[int(number)] = path
    return files


def _token(path: str):
    """(fileseq's parse, prefix, digits, suffix) of a file name with one frame token, None without one."""
    name = os.path.basename(path)
    seq = _parse(name)
    tokens = _TOKEN_CHARS_RE.findall(name)
    whole = seq is not None and seq.padding() and (
        seq.basename() + (seq.frameRange() or "") + seq.padding() + seq.extension() == name)
    if not whole or _TOKEN_CHARS_RE.search(seq.basename()):
        if tokens and (seq is None or seq.padding() or len(tokens) > 1):
            raise InputError(
                f"{path} has more than one frame-number token; use one, e.g. shot.%04d.exr or shot.####.exr"
            )
        return None
    return seq, seq.basename(), _pad_of(seq.padding()), seq.extension()


def pattern_frame(path: str, frame: int) -> str | None:
    """The file of `frame` in a sequence pattern of any spelling (####, %04d, @@@@, $F4, one '#' = 4
    digits), as printf writes it (-5 in 4 digits: -005); None when the name has no frame token."""
    parsed = _token(path)
    if parsed is None:
        return None
    _, prefix, pad, suffix = parsed
    if "%" in prefix or "%" in suffix:
        prefix, suffix = prefix.replace("%%", "%"), suffix.replace("%%", "%")
    return os.path.join(os.path.dirname(path), f"{prefix}{frame:0{max(pad, 1)}d}{suffix}")


def spec_from_pattern(path: str, frame_range: tuple[int, int] | None = None) -> SequenceSpec | None:
    """A sequence spec for a path whose file name holds a frame token, or None if it has none."""
    directory, name = os.path.split(path)
    parsed = _token(path)
    if parsed is None:
        return None
    seq, _, pad, _ = parsed
    frame_set = None
    if seq.frameRange():
        numbers = sorted(int(n) for n in seq.frameSet())
        if frame_range is None:
            frame_range = (numbers[0], numbers[-1])
        if len(numbers) != numbers[-1] - numbers[0] + 1:  # a step (1001-1100x2) or a list (1001,1005)
            frame_set = tuple(numbers)
    prefix, suffix = seq.basename(), seq.extension()
    if "%" in prefix or "%" in suffix:
        prefix, suffix = prefix.replace("%%", "%"), suffix.replace("%%", "%")
    _check_ext(path, suffix.rsplit(".", 1)[-1].lower() if "." in suffix else "")
    files = _files_on_disk(directory, prefix, suffix, pad)
    spec = SequenceSpec(directory, prefix, suffix, pad, files, frame_range, frame_set=frame_set)
    if not files:
        _listdir(directory)  # a missing folder says so
        raise InputError(
            f"no frames match {spec.pattern}; {_folder_contents(directory)}"
        )
    return spec


def spec_from_file(path: str, start_frame: int | None) -> SequenceSpec:
    """One existing image file: its own frame number if it has one, else start_frame (1)."""
    directory, name = os.path.split(path)
    seq = _parse(name)
    if seq is not None and seq.frameSet() is not None and len(seq.frameSet()) == 1:
        number = int(seq.frameSet()[0])
        pad = seq.zfill()
        return SequenceSpec(directory, seq.basename(), seq.extension(), 0 if pad <= 1 else pad, {number: path},
                            single=True)
    number = 1 if start_frame is None else int(start_frame)
    stem, ext = os.path.splitext(name)
    return SequenceSpec(directory, stem, ext, None, {number: path}, single=True)


def sequence_around(spec: SequenceSpec) -> SequenceSpec | None:
    """For one numbered file named on its own: the sequence it belongs to (2+ files), else None."""
    if not spec.single or spec.pad is None:
        return None
    files = _files_on_disk(spec.directory, spec.prefix, spec.suffix, spec.pad)
    if len(files) < 2:
        return None
    return SequenceSpec(spec.directory, spec.prefix, spec.suffix, spec.pad, files)


def hash_pattern(spec: SequenceSpec) -> str:
    """The sequence as the user would type it: /x/shot.####.exr (%d when unpadded)."""
    token = "#" * spec.pad if spec.pad and spec.pad > 1 else "%d"
    if spec.pad == 1:
        token = "%01d"
    return os.path.join(spec.directory, spec.prefix + token + spec.suffix)


def find_sequences(directory: str) -> tuple[list[SequenceSpec], list[str]]:
    """All numbered image sequences in a folder, and the names of the other entries."""
    entries = _listdir(directory)
    specs = []
    taken = set()
    try:
        found = fileseq.findSequencesOnDisk(directory, pad_style=_PAD_STYLE)
    except fileseq.FileSeqException:
        found = []
    for seq in found:
        ext = seq.extension()[1:].lower()
        if not seq.padding() or seq.frameSet() is None or ext not in IMAGE_EXTS:
            continue
        files = {int(n): seq.frame(n) for n in seq.frameSet()}
        files = {n: p for n, p in files.items() if os.path.isfile(p) and not os.path.basename(p).startswith(".")}
        if not files:
            continue
        pad = seq.zfill()
        pad = 0 if pad <= 1 else pad
        taken.update(os.path.basename(p) for p in files.values())
        specs.append(SequenceSpec(directory, seq.basename(), seq.extension(), pad, files))
    specs.sort(key=lambda s: (s.prefix, s.suffix, s.pad))
    others = [e + ("/" if os.path.isdir(os.path.join(directory, e)) else "") for e in entries if e not in taken]
    return specs, others


def _folder_contents(directory: str) -> str:
    try:
        specs, others = find_sequences(directory)
    except InputError:
        return "the folder cannot be listed"
    items = [s.summary() for s in specs] + others
    if not items:
        return f"folder {directory} is empty"
    shown = ", ".join(items[:6]) + (f", ... ({len(items) - 6} more)" if len(items) > 6 else "")
    return f"{directory} has: {shown}"


def spec_from_folder(directory: str) -> SequenceSpec:
    specs, others = find_sequences(directory)
    if len(specs) == 1:
        return specs[0]
    if not specs:
        found = ", ".join(others[:6]) + (f", ... ({len(others) - 6} more)" if len(others) > 6 else "")
        raise InputError(
            f"no numbered image frames in folder {directory} "
            f"({'found: ' + found if others else 'it is empty'}); "
            "pass a movie file or a folder of frames like shot.1001.exr"
        )
    listed = "; ".join(s.summary() for s in specs[:6]) + ("; ..." if len(specs) > 6 else "")
    raise InputError(
        f"folder {directory} holds {len(specs)} image sequences: {listed}; pass one of them as a pattern"
    )


# ---------------------------------------------------------------------------------------------
# cheap size checks for non-EXR frames


def image_size(path: str) -> tuple[int, int] | None:
    """Stored width, height from the file header (DPX parsed here, others via Pillow); None if unknown."""
    try:
        if path.lower().endswith(".dpx"):
            with open(path, "rb") as f:
                head = f.read(780)
            if len(head) < 780 or head[:4] not in (b"SDPX", b"XPDS"):
                return None
            endian = ">" if head[:4] == b"SDPX" else "<"
            w, h = struct.unpack(endian + "II", head[772:780])
            return int(w), int(h)
        from PIL import Image

        with Image.open(path) as img:
            return img.size
    except Exception:  # unknown variants: ffmpeg still decodes them; skip the cheap check
        return None


# ---------------------------------------------------------------------------------------------
# the footage


def _frame_label(number: int, path: str) -> str:
    return f"frame {number} ({path})"


def _window_text(box) -> str:
    """An EXR window as size and origin: '400x300 at 0,0 (0,0-399,299)'."""
    x0, y0, x1, y1 = box
    return f"{x1 - x0 + 1}x{y1 - y0 + 1} at {x0},{y0} ({x0},{y0}-{x1},{y1})"


class SequenceFootage(Footage):
    """A numbered image sequence (or a single image)."""

    def __init__(
        self,
        source: str,
        spec: SequenceSpec,
        *,
        start_frame: int | None = None,
        fps: Fraction | None = None,
        hold_missing: bool = False,
        colorspace: str = "auto",
        ocio: OcioConversion | None = None,
        part: str | None = None,
        view: str | None = None,
    ):
        self.spec = spec
        self._ocio = ocio
        self._part, self._view = part, view
        pattern = spec.pattern
        if (part is not None or view is not None) and spec.ext != "exr":
            flag = "--part" if part is not None else "--view"
            raise InputError(
                f"{flag} chooses a part or view of a multi-part or multi-view EXR, but {pattern} is "
                f"{spec.ext.upper()}; drop {flag}"
            )
        if start_frame is not None and spec.pad is not None:
            log.warning(
                "%s: start_frame %s ignored; image sequences keep the frame numbers of their file names",
                pattern, start_frame,
            )
        files = spec.files
        if spec.frame_range is not None:
            first, last = spec.frame_range
            inside = [n for n in files if first <= n <= last]
            if not inside:
                raise InputError(
                    f"no frames of {pattern} are in the range {first}-{last}; it has frames "
                    f"{format_frame_list(files)}"
                )
        else:
            first, last = min(files), max(files)
        # the frames of the shot: every number first..last, or those of a stepped range (1001-1100x2)
        wanted = [n for n in (spec.frame_set or range(first, last + 1)) if first <= n <= last]
        step = "" if spec.frame_set is None else " of the range's step"
        missing = [n for n in wanted if n not in files]
        if missing and not hold_missing:
            raise InputError(
                f"missing frames {format_frame_list(missing)} in {pattern} "
                f"(frames {first}-{last}{step}); fill them or pass --hold-missing"
            )
        # source file used for each frame: itself, else the previous existing one (else the next)
        self._source_of: dict[int, int] = {}
        previous = None
        for n in wanted:
            if n in files:
                previous = n
            self._source_of[n] = previous
        following = None
        for n in reversed(wanted):
            if n in files:
                following = n
            if self._source_of[n] is None:
                self._source_of[n] = following
        if missing:
            log.warning(
                "%s: missing frames %s are filled by repeating the previous frame (--hold-missing)",
                pattern, format_frame_list(missing),
            )
        whole = sequence_around(spec)
        sequence_note = None
        if whole is not None:
            only = next(iter(files))
            sequence_note = (
                f"only frame {only}: {os.path.basename(spec.pattern)} is one file of "
                f"{hash_pattern(whole)} (frames {format_frame_list(whole.files, limit=3)}, {len(whole.files)} files); "
                "pass that pattern or the folder for the whole sequence"
            )
            log.warning("%s: %s", spec.pattern, sequence_note)
        existing = [n for n in wanted if n in files]
        if spec.ext == "exr":
            fields = self._probe_exr(existing, fps)
            default_cs = "linear"
        else:
            fields = self._probe_image(existing, fps)
            default_cs = "display"
        self.info = FootageInfo(
            source=source,
            path=pattern,
            kind="sequence",
            frame_numbers=tuple(wanted),
            colorspace=default_cs if colorspace == "auto" else colorspace,
            ocio_colorspace=ocio.colorspace if ocio else None,
            held_frames=tuple(missing),
            sequence_note=sequence_note,
            **fields,
        )

    # -- probing ----------------------------------------------------------------------------

    def _probe_exr(self, existing: list[int], fps: Fraction | None) -> dict:
        files = self.spec.files
        first = existing[0]
        header = read_exr_header(files[first])
        layout = choose_layout(header, _frame_label(first, files[first]), self._part, self._view)
        self._layout = layout
        self._first_exr = first
        for n in existing[1:]:
            self._frame_layout(n, read_exr_header(files[n]))
        width, height = layout.size
        return dict(
            width=width,
            height=height,
            fps=fps or layout.fps or Fraction(24),
            pixel_format=layout.pixel_type if len(layout.names) == 3 else f"{layout.pixel_type} (Y)",
            bit_depth=BIT_DEPTHS.get(layout.pixel_type, 32),
            pixel_aspect=Fraction(layout.pixel_aspect).limit_denominator(10000) if layout.pixel_aspect > 0 else Fraction(1),
            codec="exr",
            data_window=tuple(layout.data_window),
            display_window=tuple(layout.display_window),
            part=(layout.part_name or str(layout.part_index)) if len(header.parts) > 1 else None,
            view=layout.view,
            picture=layout.description,
        )

    def _frame_layout(self, number: int, header) -> ExrLayout:
        """This frame's layout (its own data window), checked against the first frame."""
        ref = self._layout
        path = self.spec.files[number]
        label = _frame_label(number, path)
        index = ref.part_index
        names = [p.name for p in header.parts]
        if ref.part_name is not None and len(header.parts) > 1:
            if ref.part_name not in names:
                raise InputError(
                    f"{label} has no part \"{ref.part_name}\" (its parts: {', '.join(str(n) for n in names)}), "
                    f"which frame {self._first_exr} has; re-render it with the same parts"
                )
            index = names.index(ref.part_name)
        if index >= len(header.parts):
            raise InputError(f"{label} has fewer image parts than the first frame; re-render it")
        part = header.parts[index]
        if part.display_window != ref.display_window:
            raise InputError(
                f"{label} has display window {_window_text(part.display_window)} but the sequence's is "
                f"{_window_text(ref.display_window)} (frame {self._first_exr}); all frames must have the same "
                "display window, size and origin: re-render it"
            )
        missing = [n for n in ref.names if n not in part.channels]
        if missing:
            found = ", ".join(sorted(part.channels)[:16]) or "none"
            raise InputError(
                f"{label} lacks channel{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(found: {found}); re-render it with the same channels as the other frames"
            )
        return dataclasses.replace(ref, part_index=index, data_window=part.data_window,
                                   display_window=part.display_window)

    def _probe_image(self, existing: list[int], fps: Fraction | None) -> dict:
        files = self.spec.files
        first = existing[0]
        probe = probe_media(files[first], count_frames=False)
        self._probe = probe
        self._stored_size = (probe.width, probe.height)
        for n in existing[1:]:
            self._check_image_size(n)
        width, height = probe.display_size
        return dict(
            width=width,
            height=height,
            fps=fps or Fraction(24),
            pixel_format=probe.pix_fmt,
            bit_depth=probe.bit_depth,
            pixel_aspect=probe.sar,
            rotation=probe.rotation,
            codec=probe.codec,
        )

    def _check_image_size(self, number: int) -> None:
        path = self.spec.files[number]
        size = image_size(path)
        if size is None:
            if not os.path.isfile(path):
                raise InputError(f"{_frame_label(number, path)} has disappeared; restore it or pass --hold-missing")
            return
        if size != self._stored_size:
            raise InputError(
                f"{_frame_label(number, path)} is {size[0]}x{size[1]} but the sequence is "
                f"{self._stored_size[0]}x{self._stored_size[1]}; all frames must have the same size: "
                "re-render it"
            )

    # -- reading ----------------------------------------------------------------------------

    def _read(self, width: int, height: int, first: int, last: int) -> Iterator[tuple[int, np.ndarray]]:
        plan = [(n, self._source_of[n]) for n in self.info.frame_numbers if first <= n <= last]
        warned = {"count": 0, "suppressed": 0}
        held = None  # private copy of the last frame, kept only when a hold follows
        last_src = None
        i = 0
        while i < len(plan):
            number, src = plan[i]
            if src == last_src:
                yield number, held.copy()
                i += 1
                continue
            j = i  # a run of consecutive source files
            while j + 1 < len(plan) and plan[j + 1][1] == plan[j][1] + 1:
                j += 1
            sources = [s for _, s in plan[i:j + 1]]
            for k, frame in enumerate(self._read_files(sources, width, height, warned)):
                number = plan[i + k][0]
                if k == len(sources) - 1 and j + 1 < len(plan) and plan[j + 1][1] == sources[-1]:
                    held = frame.copy()
                yield number, frame
            last_src = sources[-1]
            i = j + 1
        if warned["suppressed"]:
            log.warning(
                "%s: %d more frame%s had NaN/Inf/negative pixels (sanitised, not reported one by one)",
                self.info.path, warned["suppressed"], "s" if warned["suppressed"] > 1 else "",
            )

    def _read_files(self, sources: list[int], width: int, height: int, warned: dict) -> Iterator[np.ndarray]:
        if self.spec.ext == "exr":
            yield from self._read_exr(sources, width, height, warned)
        else:
            yield from self._read_ffmpeg(sources, width, height)

    def _read_exr(self, sources: list[int], width: int, height: int, warned: dict) -> Iterator[np.ndarray]:
        info = self.info
        for n in sources:
            path = self.spec.files[n]
            label = _frame_label(n, path)
            layout = self._frame_layout(n, read_exr_header(path))
            rgb, bad = read_exr_frame(path, layout, width, height, label)
            if bad:
                self._warn_bad(label, bad, warned)
            yield to_display(rgb, info.colorspace, self._ocio)

    @staticmethod
    def _warn_bad(label: str, bad: BadPixels, warned: dict) -> None:
        if warned["count"] < MAX_BAD_PIXEL_WARNINGS:
            warned["count"] += 1
            log.warning(
                "%s has %s pixel values; set NaN and negatives to 0 and +Inf to 1", label, bad.describe()
            )
        else:
            warned["suppressed"] += 1

    def ffmpeg_args(
        self, start: int, count: int, width: int, height: int, *, links: str | None = None, threads: int | None = None
    ) -> tuple[list[str], Conversion]:
        """ffmpeg command that decodes `count` files from frame `start`.

        links: a folder of links frame.000000.EXT ... made by `link_run` (start is then ignored);
        threads: decoder threads (None = ffmpeg's default).
        """
        import ffmpeg

        spec = self.spec
        exe = find_ffmpeg()
        opts = {} if threads is None else {"threads": threads}
        if links is not None:
            pattern = os.path.join(links.replace("%", "%%"), "frame.%06d" + _link_ext(spec))
            inp = ffmpeg.input("file:" + pattern, f="image2", pattern_type="sequence", start_number=0, **opts)
        elif spec.single or spec.pad is None:
            inp = ffmpeg.input("file:" + spec.files[start], f="image2", pattern_type="none", **opts)
        else:
            pattern = os.path.join(
                spec.directory, spec.prefix.replace("%", "%%") + (f"%0{spec.pad}d" if spec.pad > 1 else "%d")
                + spec.suffix.replace("%", "%%")
            )
            inp = ffmpeg.input("file:" + pattern, f="image2", pattern_type="sequence", start_number=start, **opts)
        stream, conv = add_conversion(inp["0"], self._probe, (self.info.width, self.info.height), (width, height), exe)
        sync = passthrough_args(exe)
        out = ffmpeg.output(stream, "pipe:", format="rawvideo", **{"frames:v": count, sync[0][1:]: sync[1]})
        # -xerror: stop at a broken frame instead of skipping it (which would shift numbering)
        args = out.global_args("-hide_banner", "-nostdin", "-loglevel", "error", "-xerror").compile(cmd=exe)
        return args, conv

    def _ends_at_gap(self, sources: list[int]) -> bool:
        """True when ffmpeg's demuxer could read past the run into a missing file."""
        files = self.spec.files
        after = sources[-1] + 1
        return not (self.spec.single or self.spec.pad is None) and after not in files and max(files) > after

    def _read_ffmpeg(self, sources: list[int], width: int, height: int) -> Iterator[np.ndarray]:
        info = self.info
        for n in sources:
            self._check_image_size(n)  # cheap; the scaler would silently resize a stray frame
        links = None
        threads = None
        if self._ends_at_gap(sources) or sources[0] < 0:  # (image2 numbers files from 0 up)
            links = link_run([self.spec.files[n] for n in sources], _link_ext(self.spec))
            if links is None:
                threads = 1  # no read-ahead past the run's last file
        try:
            status = RawStream()
            args, conv = self.ffmpeg_args(sources[0], len(sources), width, height, links=links, threads=threads)
            for frame in stream_frames(args, conv, len(sources), status):
                yield to_display(frame, info.colorspace, self._ocio)
        finally:
            if links is not None:
                shutil.rmtree(links, ignore_errors=True)
        if status.frames < len(sources):
            n, reason = self._blame(sources[status.frames:])
            if n is None:
                n = sources[status.frames]
                reason = (ffmpeg_reason(status.stderr, self.spec.files[n]) if status.stderr
                          else f"ffmpeg exit status {status.returncode}")
            path = self.spec.files[n]
            raise InputError(
                f"cannot decode {_frame_label(n, path)}: {reason}; the file may be truncated or damaged, "
                "re-render it"
            )

    def _blame(self, numbers: list[int]) -> tuple[int | None, str]:
        """The first of `numbers` whose file ffmpeg cannot decode on its own, and ffmpeg's reason."""
        exe = find_ffmpeg()
        for n in numbers[:MAX_BLAME_CHECKS]:
            path = self.spec.files[n]
            if not os.path.isfile(path):
                return n, "the file has disappeared"
            cmd = [exe, "-hide_banner", "-nostdin", "-v", "error", "-xerror", "-f", "image2", "-pattern_type",
                   "none", "-i", "file:" + path, "-frames:v", "1", "-f", "framecrc", "-"]
            try:
                proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
            except (OSError, subprocess.SubprocessError):
                return None, ""
            decoded = any(line and not line.startswith(b"#") for line in proc.stdout.splitlines())
            if proc.returncode != 0 or not decoded:
                err = proc.stderr.decode("utf-8", "replace")
                return n, ffmpeg_reason(err, path) if err.strip() else f"ffmpeg exit status {proc.returncode}"
        return None, ""


def _link_ext(spec: SequenceSpec) -> str:
    """Extension for linked frames: ffmpeg picks the image decoder from it."""
    return "." + spec.ext


def link_run(paths: list[str], ext: str) -> str | None:
    """A temporary folder with links frame.000000EXT, frame.000001EXT, ... to `paths` (symbolic, else
    hard links); None when the links cannot be made (the caller then decodes without read-ahead)."""
    try:
        folder = tempfile.mkdtemp(prefix="dvd-vfx-frames-")
    except OSError:
        return None
    try:
        for i, path in enumerate(paths):
            link = os.path.join(folder, f"frame.{i:06d}{ext}")
            try:
                os.symlink(os.path.abspath(path), link)
            except OSError:
                os.link(path, link)  # Windows without the symlink privilege
    except OSError as exc:
        log.debug("cannot link frames into %s (%s); decoding with one thread", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return folder
