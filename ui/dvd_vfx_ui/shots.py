"""Shots in the queue: what the user added, how it is labelled, where its pass goes. Qt-free.

A shot's `source` is what `dvd-vfx render` accepts: a movie path or a sequence pattern
(``/plates/sh010/plate.####.exr``). Folders and single frames are expanded to their sequences
when added, so every row is one shot.
"""

from __future__ import annotations

import dataclasses
import json
import os
import string
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from dvd_vfx.errors import InputError

QUEUED, CACHED, RENDERING, DONE, FAILED, CANCELLED = "queued", "cached", "rendering", "done", "failed", "cancelled"
OUTDATED = "outdated"  # a pass is on disk, but the row's settings differ from its header: re-render it
STATUSES = (QUEUED, CACHED, OUTDATED, RENDERING, DONE, FAILED, CANCELLED)
RUNNABLE = (QUEUED, CACHED, OUTDATED)  # what Start picks up; Resume adds cancelled shots (from the cache)

DEFAULT_OUTPUT_PATTERN = "{source_dir}/depth/{shot}/"
OUTPUT_FIELDS = ("source_dir", "source_name", "shot", "preset")
QUEUE_SCHEMA = "dvd-vfx.panel-queue/1"

MOVIE_EXTS = ("mov", "mp4", "m4v", "mxf", "avi", "mkv", "webm", "mpg", "mpeg", "mts", "m2ts", "wmv", "gif")
# render options that are not preset keys: batch values and per-shot overrides, passed to
# dvd_vfx.render.RenderOptions (and so through dvd_vfx.cli_args.render_flags to `dvd-vfx render`)
OPTION_KEYS = {
    "start_frame": "first frame number of a movie's pass (--start-frame; plates usually start at 1001)",
    "frames": "inclusive source frame range A-B (--frames)",
    "colorspace": "plate colour: auto | display | linear (--colorspace)",
    "ocio_colorspace": "OCIO colourspace of linear EXR plates (--ocio-colorspace; needs $OCIO)",
    "hold_missing": "repeat the previous frame over missing or damaged sequence frames (--hold-missing)",
    "anchors": "CSV/JSON of known distances: depth in scene units (--anchors FILE)",
}
OPTION_DEFAULTS = {"start_frame": None, "frames": None, "colorspace": "auto", "ocio_colorspace": None,
                   "hold_missing": False, "anchors": None}
COLORSPACES = ("auto", "display", "linear")
# keys a shot may override besides the preset keys (dvd_vfx.presets.KEYS) and OPTION_KEYS
EXTRA_OVERRIDES = ("preset", "output", "shot", *OPTION_KEYS)


def parse_frames(text: str, where: str = "frames") -> tuple[int, int]:
    """"1001-1100" -> (1001, 1100), as `dvd-vfx render --frames` reads it (one frame, negative frames and
    A:B too: dvd_vfx.footage.parse_frame_range); InputError naming `where` and the value otherwise."""
    from dvd_vfx.footage import parse_frame_range

    try:
        return parse_frame_range(text)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def validate_options(values: dict, where: str) -> dict:
    """Checked OPTION_KEYS values (None = not set); InputError naming `where`, the key and the value."""
    out = {}
    for key, value in values.items():
        if key not in OPTION_KEYS or value is None:
            continue
        if key == "start_frame":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"{where}: start_frame {value!r} must be a whole frame number >= 0, e.g. 1001")
        elif key == "frames":
            first, last = parse_frames(value, f"{where}: frames")
            value = f"{first}-{last}"
        elif key == "colorspace":
            if value not in COLORSPACES:
                raise InputError(f"{where}: colorspace {value!r} is not one of {', '.join(COLORSPACES)}")
        elif key == "hold_missing":
            if not isinstance(value, bool):
                raise InputError(f"{where}: hold_missing must be true or false, got {value!r}")
        elif key == "anchors":
            value = os.path.abspath(os.path.expanduser(str(value)))
            if not os.path.isfile(value):
                raise InputError(f"{where}: anchors file {value} does not exist; pick the CSV/JSON of known "
                                 "distances (frame,x,y,depth)")
        elif not isinstance(value, str):
            raise InputError(f"{where}: {key} must be a string, got {value!r}")
        out[key] = value
    return out


def writable_folder_problem(folder: str) -> str:
    """"" if `folder` exists and is writable, or can be made under a writable parent; else why not."""
    path = os.path.abspath(os.path.expanduser(folder))
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if os.path.exists(probe) and not os.path.isdir(probe):
        return f"output folder {path}: {probe} is a file, not a folder; pick another output folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"output folder {path}: {probe} is not writable; pick another output folder"
    return ""


@dataclass
class ShotInfo:
    """What the probe found (dvd_vfx.footage FootageInfo, reduced to plain values)."""

    kind: str  # video | sequence
    first_frame: int
    last_frame: int
    frame_count: int
    width: int
    height: int
    fps: str
    path: str
    describe: str = ""


@dataclass
class Shot:
    source: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    overrides: dict = field(default_factory=dict)
    status: str = QUEUED
    info: ShotInfo | None = None
    stage: str = ""
    fraction: float = 0.0  # progress of the current/last render, 0..1
    error: str = ""  # one line
    log: list[str] = field(default_factory=list)  # full log of the last render(s)
    out_dir: str = ""  # resolved output folder (after the pattern)
    pattern: str = ""  # result: /out/shot.depth.####.exr (also found on disk)
    probing: bool = False
    done: int = 0  # the stage's step (window, frame) ...
    total: int = 0  # ... of this many
    started: float = 0.0  # time.time() the current/last render began
    seconds: float = 0.0  # render time of the last finished render
    cache: str = ""  # the last render's cache status (hit = from the cache, no model run)
    on_disk: dict = field(default_factory=dict)  # the pass found in out_dir: pattern, first, last, count, attributes
    differences: list = field(default_factory=list)  # settings that differ from the pass on disk ("near 1 -> 2")
    output_problem: bool = False  # the error is about the output folder (cleared when the folder changes)
    thumbnail: object = field(default=None, repr=False)  # uint8 [h,w,3] of the first frame, or None

    @property
    def label(self) -> str:
        return source_label(self.source, self.info)

    @property
    def shot_name(self) -> str:
        return self.overrides.get("shot") or default_shot_name(self.source)

    def snapshot(self) -> dict:
        """A plain copy for widgets (never shares mutable state with the worker thread)."""
        data = dataclasses.asdict(self)
        data["label"] = self.label
        data["shot_name"] = self.shot_name
        data["log"] = list(self.log)
        return data


# -- names --------------------------------------------------------------------------------------


def is_sequence_pattern(source: str) -> bool:
    name = os.path.basename(source)
    return "#" in name or "%" in name or "@@" in name


def default_shot_name(source: str) -> str:
    """The engine's default output name: a movie's stem, a sequence's prefix (dvd_vfx.render)."""
    name = os.path.basename(source.rstrip("/\\"))
    if is_sequence_pattern(source):
        for token in ("%", "#", "@"):
            name = name.split(token)[0]
    else:
        name = name.rsplit(".", 1)[0] if "." in name else name
    return name.rstrip("._- ") or "shot"


def source_label(source: str, info: ShotInfo | None = None) -> str:
    """`plate.####.exr [1001-1100]` for a sequence, the file name for a movie."""
    name = os.path.basename(source)
    if info is not None and info.kind == "sequence":
        return f"{name} [{info.first_frame}-{info.last_frame}]"
    return name


def sequence_source(spec) -> str:
    """dvd_vfx.footage.sequence.SequenceSpec -> a ``####`` pattern path."""
    if spec.single or spec.pad is None:
        return next(iter(spec.files.values()))
    token = "#" * spec.pad if spec.pad > 1 else "%d"
    return os.path.join(spec.directory, spec.prefix + token + spec.suffix)


def is_depth_pass(prefix: str) -> bool:
    """Files this product writes (``shot.depth.1001.exr``) are outputs, never plates to add."""
    return prefix.endswith(".depth.")


# -- adding sources -------------------------------------------------------------------------------


def expand_sources(paths, *, depth: int = 2) -> tuple[list[str], list[str]]:
    """Files, folders and patterns -> shot sources (one per movie or sequence), and what was skipped.

    A folder yields its sequences and movies, and those of its sub-folders (to `depth` levels).
    One frame of a sequence yields the whole sequence.
    """
    from dvd_vfx.footage.sequence import IMAGE_EXTS, find_sequences

    found: list[str] = []
    skipped: list[str] = []

    def add(source: str) -> None:
        if source not in found:
            found.append(source)

    def walk(folder: str, level: int) -> None:
        try:
            specs, others = find_sequences(folder)
        except InputError as exc:
            skipped.append(f"{folder}: {exc}")
            return
        for spec in specs:
            if is_depth_pass(spec.prefix):
                skipped.append(f"{sequence_source(spec)} (a depth pass, not a plate)")
                continue
            add(sequence_source(spec))
        for entry in others:
            full = os.path.join(folder, entry.rstrip("/"))
            if entry.endswith("/"):
                if level < depth:
                    walk(full, level + 1)
            elif entry.rsplit(".", 1)[-1].lower() in MOVIE_EXTS:
                add(full)
            elif entry.rsplit(".", 1)[-1].lower() in IMAGE_EXTS:
                add(full)  # a lone, unnumbered image
            else:
                skipped.append(full)

    for raw in paths:
        path = os.path.abspath(os.path.expanduser(os.fspath(raw)))
        if os.path.isdir(path):
            walk(path, 0)
        elif os.path.isfile(path):
            ext = path.rsplit(".", 1)[-1].lower()
            if ext in IMAGE_EXTS:
                specs, _ = find_sequences(os.path.dirname(path))
                match = [s for s in specs if path in s.files.values()]
                add(sequence_source(match[0]) if match else path)
            else:
                add(path)  # a movie, or something the probe will reject with a clear message
        elif is_sequence_pattern(path):
            add(path)
        else:
            skipped.append(f"{path}: no such file or folder")
    return found, skipped


# -- output folder --------------------------------------------------------------------------------


def output_dir(pattern: str, shot: Shot, preset: str = "") -> str:
    """Expand an output pattern such as ``{source_dir}/depth/{shot}/`` for `shot`."""
    source = shot.source
    fields = {
        "source_dir": os.path.dirname(os.path.abspath(os.path.expanduser(source))),
        "source_name": os.path.basename(source),
        "shot": shot.shot_name,
        "preset": preset,
    }
    unknown = [name for _, name, _, _ in string.Formatter().parse(pattern) if name and name not in fields]
    if unknown:
        raise InputError(f"output pattern {pattern!r} uses {{{unknown[0]}}}; "
                         f"the fields are {', '.join('{' + f + '}' for f in OUTPUT_FIELDS)}")
    text = shot.overrides.get("output") or pattern.format(**fields)
    return os.path.normpath(os.path.abspath(os.path.expanduser(text)))


# -- queue files ----------------------------------------------------------------------------------


def queue_to_json(shots: list[Shot], *, preset: str, defaults: dict, output_pattern: str) -> str:
    data = {
        "schema": QUEUE_SCHEMA,
        "preset": preset,
        "defaults": defaults,
        "output_pattern": output_pattern,
        "shots": [{"source": s.source, "overrides": dict(s.overrides), "last_status": s.status} for s in shots],
    }
    return json.dumps(data, indent=2) + "\n"


def queue_from_json(text: str, where: str = "queue file") -> dict:
    """-> {"preset", "defaults", "output_pattern", "shots": [Shot]}; InputError naming the problem."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{where}: not JSON ({exc}); pick a file saved by the panel") from None
    if not isinstance(data, dict) or data.get("schema") != QUEUE_SCHEMA:
        raise InputError(f"{where}: not a dvd-vfx panel queue (schema {QUEUE_SCHEMA!r} missing)")
    shots = []
    for i, item in enumerate(data.get("shots") or []):
        if not isinstance(item, dict) or not isinstance(item.get("source"), str):
            raise InputError(f"{where}: shot {i + 1} has no source path")
        overrides = item.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise InputError(f"{where}: shot {i + 1} ({item['source']}): overrides must be an object")
        shots.append(Shot(source=item["source"], overrides=overrides))
    return {"preset": str(data.get("preset") or "standard"), "defaults": dict(data.get("defaults") or {}),
            "output_pattern": str(data.get("output_pattern") or DEFAULT_OUTPUT_PATTERN), "shots": shots}


def read_queue(path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read queue {path}: {exc.strerror or exc}") from None
    return queue_from_json(text, str(path))
