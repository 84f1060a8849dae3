"""Shot arithmetic shared by the operator and the compositor wiring: names, paths, frames, arguments."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

_DIGITS_RE = re.compile(r"(\d+)(?=\D*$)")  # the last run of digits in a file name


def shot_name(name: str) -> str:
    """A file-system-safe shot name from a clip or image name ('plate.mov' -> 'plate')."""
    stem = re.sub(r"\.(mov|mp4|mkv|avi|mxf|webm|exr|png|jpe?g|tiff?|dpx)$", "", name.strip(), flags=re.I)
    stem = re.sub(r"[.#]+\d*$", "", stem) or stem  # 'plate.1001' / 'plate.####' -> 'plate'
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")
    return safe or "shot"


def sequence_pattern(path: str) -> tuple[str, int]:
    """('plate.####.exr', 1001) from one file of a numbered sequence; ValueError when it has no number."""
    head, base = os.path.split(path)
    m = _DIGITS_RE.search(base)
    if not m:
        raise ValueError(f"{path!r} is not a numbered image sequence (expected e.g. plate.1001.exr)")
    digits = m.group(1)
    pattern = base[:m.start()] + "#" * len(digits) + base[m.end():]
    return os.path.join(head, pattern), int(digits)


def resolve_output_dir(setting: str, *, blend_dir: str | None, shot: str) -> str:
    """The output folder: `//` is the .blend's folder, `<clip>` the shot name. ValueError for an unsaved file."""
    text = (setting or "//depth/<clip>/").replace("<clip>", shot).replace("<shot>", shot)
    if text.startswith("//"):
        if not blend_dir:
            raise ValueError("save the .blend first (the output folder is relative to it) or set an absolute "
                             "output folder")
        text = os.path.join(blend_dir, text[2:])
    return os.path.normpath(text)


@dataclass(frozen=True)
class ImageUserMapping:
    """frame_start / frame_offset / frame_duration of an Image node showing frames first..last of the pass."""

    frame_start: int
    frame_offset: int
    frame_duration: int


def image_user_mapping(*, clip_start: int, clip_offset: int, source_first: int, first: int, last: int
                       ) -> ImageUserMapping:
    """Play pass frame N at the scene frame where the clip shows source frame N.

    Blender shows clip frame c = scene - clip_start + 1, read from source frame
    c + clip_offset + (source_first - 1); an Image node reads file frame
    scene - frame_start + 1 + frame_offset. Pass files carry the source's frame numbers.
    """
    if last < first:
        raise ValueError(f"empty frame range {first}-{last}")
    scene_of_first = clip_start + (first - source_first) - clip_offset
    return ImageUserMapping(frame_start=scene_of_first, frame_offset=first - 1, frame_duration=last - first + 1)


def pass_path(out_dir: str, shot: str, frame: int) -> str:
    """<out>/<shot>.depth.<frame>.exr, 4-digit padding (what the engine writes)."""
    return os.path.join(out_dir, f"{shot}.depth.{frame:04d}.exr")


@dataclass(frozen=True)
class RenderRequest:
    """Everything the engine needs for one shot, gathered on Blender's main thread."""

    source: str
    out_dir: str
    shot: str
    preset: str = ""
    mode: str = "depth"
    near: float = 1.0
    far: float = 100.0
    frames: tuple[int, int] | None = None
    start_frame: int | None = None  # first frame number of a movie file
    weights: str = ""
    cache_dir: str = ""
    extra_args: str = ""
    anchors: str = ""  # the anchors CSV from the clip's camera solve (scene scale); "" = near/far

    def args(self) -> list[str]:
        """What follows `dvd-vfx render`."""
        if self.mode not in ("depth", "disparity"):
            raise ValueError(f"mode {self.mode!r} must be depth or disparity")
        if self.mode == "depth" and not 0 < self.near < self.far:
            raise ValueError(f"near {self.near:g} and far {self.far:g}: need 0 < near < far")
        args = [self.source, "-o", self.out_dir, "--shot", self.shot, "--mode", self.mode]
        if self.anchors and self.mode != "depth":
            raise ValueError("anchors give depth in scene units: use mode depth")
        if self.mode == "depth" and self.anchors:
            args += ["--anchors", self.anchors]
        elif self.mode == "depth":
            args += ["--near", f"{self.near:g}", "--far", f"{self.far:g}"]
        if self.preset:
            args += ["--preset", self.preset]
        if self.frames is not None:
            a, b = self.frames
            if b < a:
                raise ValueError(f"frame range {a}-{b} is empty")
            args += ["--frames", f"{a}-{b}"]
        if self.start_frame is not None:
            args += ["--start-frame", str(self.start_frame)]
        if self.weights:
            args += ["--weights", self.weights]
        if self.cache_dir:
            args += ["--cache-dir", self.cache_dir]
        args.append("--replace")  # the clip's folder holds its one pass: a new range replaces the old one
        return args + shlex.split(self.extra_args)


def progress_fraction(stage: str, done: int, total: int) -> float:
    """One 0..1 number over the engine's stages (predict is most of the time)."""
    # A copy of dvd_vfx.progress.progress_fraction (this add-on does not import dvd_vfx): it must give
    # the same numbers, which tests/test_jobs.py checks. Change both or neither.
    weights = {"predict": (0.0, 0.8), "stitch": (0.8, 0.9), "write": (0.9, 1.0)}
    lo, hi = weights.get(stage, (0.0, 1.0))
    return lo + (hi - lo) * (min(max(done, 0), total) / total if total > 0 else 0.0)


def status_line(stage: str, done: int, total: int) -> str:
    unit = "windows" if stage == "predict" else "frames"
    return f"dvd-vfx: {stage} {done}/{total} {unit} ({100 * progress_fraction(stage, done, total):.0f}%)  Esc cancels"
