"""What a DVD Depth node renders, worked out from plain values (no `nuke` here, so it is tested directly).

Nuke speaks of a Read's file knob (``plate.####.exr``, ``plate.%04d.exr``, ``plate.#.exr``,
``plate.mov``), its frame range (``first``/``last``, file frame numbers) and its frame offset
(``frame_mode`` + ``frame``: where those file frames sit on the comp's timeline). The engine
speaks of a source, ``--frames A-B`` in file frame numbers, ``-o DIR --shot NAME``. This
module translates one into the other:

    source = ReadSource.from_knobs(file="/plates/sh010.####.exr", first=1001, last=1100,
                                   frame_mode="offset", frame="-1000")
    request = plan_render(source, NodeSettings(...), script_dir="/comp/sh010")
    request.args  # -> ["/plates/sh010.%04d.exr", "-o", ..., "--frames", "1001-1100", ...]

Frame ranges on the node are in comp (timeline) frames, what the compositor sees in the
viewer; the EXRs carry the source's file frame numbers (engine rule), and the Read that
loads them gets the plate Read's offset back, so the depth lines up with the plate.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field

from dvd_vfx.errors import InputError
from dvd_vfx.progress import progress_fraction

MOVIE_EXTS = frozenset({".mov", ".mp4", ".m4v", ".mxf", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".mts",
                        ".m2ts", ".ts", ".wmv", ".gif"})
MODES = ("depth", "disparity")
FRAME_MODES = ("expression", "start at", "offset")

_HASHES_RE = re.compile(r"#+")
_PRINTF_RE = re.compile(r"%(\d*)d")
_VIEW_RE = re.compile(r"%[Vv]")
_FRAME_EXPR_RE = re.compile(r"^\s*(?:frame|x|t)?\s*(?:(?P<sign>[+-])\s*(?P<k>\d+))?\s*$")
_OUTPUT_NAME_RE = re.compile(r"^(?P<shot>.+)\.depth\.(?:####|%04d)\.exr$")
_SHOT_TRIM_RE = re.compile(r"[._\-\s]+$")
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")


# -- the plate ------------------------------------------------------------------------------------


def substitute_view(file: str, view: str = "", views=()) -> str:
    """A stereo path's %V (view name) and %v (its initial) for one view; other paths unchanged.

    Nuke expands both per view (nuke.evaluateString's STRING_EXPAND_FILENUMBER); the engine renders one
    view at a time, so the node renders the view chosen on its 'view' knob.
    """
    if not _VIEW_RE.search(file or ""):
        return file
    views = [v for v in views if v]
    if not view:
        raise InputError(f"the Read's file {file!r} is a stereo (%V/%v) path; choose the view to render on the DVD "
                         f"Depth node's 'view' knob ({', '.join(views) or 'the script has no views'})")
    if views and view not in views:
        raise InputError(f"view {view!r} is not one of this script's views ({', '.join(views)}); the Read's file "
                         f"{file!r} is a stereo path: choose one of them on the 'view' knob")
    return file.replace("%V", view).replace("%v", view[:1])


def engine_pattern(file: str) -> str:
    """A Read's file knob as the engine reads it: Nuke's N '#'s (N digits) -> %0Nd; movies unchanged.

    The engine reads a lone '#' as 4 digits (Shake/RV); in Nuke it means 1 digit (unpadded),
    so every '#' run is rewritten to printf before the engine sees it. The node passes the file
    through nuke.filename() first (TCL and environment expressions expanded) and substitute_view.
    """
    text = (file or "").strip()
    if not text:
        raise InputError("the Read's file knob is empty; point the Read at a movie or an image sequence")
    if "[" in text:
        raise InputError(f"the Read's file {text!r} still holds a TCL expression after Nuke expanded it; check "
                         f"the expression (e.g. [getenv NAME] with NAME unset) in the Read's file knob")
    if _VIEW_RE.search(text):
        raise InputError(f"the Read's file {text!r} is a stereo (%V/%v) path; choose the view to render on the DVD "
                         f"Depth node's 'view' knob")
    directory, name = os.path.split(text)
    tokens = _HASHES_RE.findall(name) + _PRINTF_RE.findall(name)
    if len(tokens) > 1:
        raise InputError(f"the Read's file {text!r} has more than one frame-number token; use one, e.g. "
                         f"plate.####.exr")
    name = _HASHES_RE.sub(lambda m: "%d" if len(m.group()) == 1 else f"%0{len(m.group())}d", name)
    return os.path.join(directory, name) if directory else name


def is_movie(file: str) -> bool:
    return os.path.splitext(file.strip())[1].lower() in MOVIE_EXTS


def shot_name(file: str) -> str:
    """The plate's name without frame token and extension: /p/sh010_plate.####.exr -> sh010_plate."""
    name = os.path.basename(file.strip())
    stem = os.path.splitext(name)[0]
    stem = _PRINTF_RE.split(_HASHES_RE.split(stem)[0])[0] if _HASHES_RE.search(stem) or _PRINTF_RE.search(stem) \
        else stem
    stem = _SHOT_TRIM_RE.sub("", stem)
    stem = _UNSAFE_RE.sub("_", stem).strip("._") or "shot"
    return stem


def frame_offset(frame_mode: str, frame: str, first: int) -> int:
    """Comp frame minus file frame for a Read's ``frame_mode``/``frame`` knobs.

    "start at" N: the Read's first frame shows at N. "offset" N: file frame + N.
    "expression": empty, "frame", "frame+K" or "frame-K" (file frame = comp frame +/- K).
    """
    mode = (frame_mode or "expression").strip().lower()
    value = (frame or "").strip()
    if mode not in FRAME_MODES:
        raise InputError(f"the Read's frame_mode {frame_mode!r} is not one of {', '.join(FRAME_MODES)}")
    if mode in ("start at", "offset"):
        if not value:
            return 0
        try:
            number = int(float(value))
        except ValueError:
            raise InputError(f"the Read's frame knob {value!r} is not a number ({mode})") from None
        return number - int(first) if mode == "start at" else number
    m = _FRAME_EXPR_RE.match(value)
    if m is None:
        raise InputError(f"the Read's frame expression {value!r} is not a plain offset (frame+K or frame-K); "
                         f"set frame mode to 'offset' or 'start at'")
    k = int(m.group("k") or 0) * (-1 if m.group("sign") == "-" else 1)
    return -k


@dataclass(frozen=True)
class ReadSource:
    """The plate as its Read node describes it."""

    file: str  # the file knob as typed (####, %04d, # or a movie)
    first: int  # file frame numbers (movies: 1..N, as Nuke numbers them)
    last: int
    offset: int = 0  # comp frame - file frame
    frame_mode: str = "expression"  # copied to the depth Read so it lines up
    frame: str = ""
    read_name: str = ""

    @classmethod
    def from_knobs(cls, *, file: str, first, last, frame_mode: str = "expression", frame: str = "",
                   read_name: str = "") -> "ReadSource":
        first, last = int(first), int(last)
        if last < first:
            raise InputError(f"Read {read_name or file}: last frame {last} is before first frame {first}")
        return cls(file=file.strip(), first=first, last=last, offset=frame_offset(frame_mode, frame, first),
                   frame_mode=frame_mode or "expression", frame=frame or "", read_name=read_name)

    @property
    def movie(self) -> bool:
        return is_movie(self.file)

    @property
    def engine_source(self) -> str:
        return self.file if self.movie else engine_pattern(self.file)

    @property
    def comp_range(self) -> tuple[int, int]:
        return self.first + self.offset, self.last + self.offset


def depth_read_frames(source: ReadSource, first_file: int, last_file: int) -> dict:
    """Knobs of the Read that loads the pass (file frames first_file..last_file) so that each depth frame
    shows at the comp frame where the plate shows the same file frame, whatever the plate Read's frame mode.

    The plate's mode is not copied: "start at N" would put the depth's FIRST RENDERED frame at N, which is
    wrong for a partial render; the plate's comp - file offset is given as "offset" instead, which holds
    for every mode (expression frame+K, start at, offset). Outside the rendered frames the depth is black.
    """
    return {"first": int(first_file), "last": int(last_file), "origfirst": int(first_file),
            "origlast": int(last_file), "frame_mode": "offset", "frame": str(int(source.offset)),
            "before": "black", "after": "black"}


# -- the node's settings and the render it asks for ------------------------------------------------


@dataclass(frozen=True)
class NodeSettings:
    """The DVD Depth node's knobs, as plain values."""

    preset: str = ""
    mode: str = "depth"
    near: float = 1.0
    far: float = 100.0
    use_read_range: bool = True
    first: int = 1  # comp frames; used when use_read_range is False
    last: int = 1
    output: str = ""  # template; empty: DEFAULT_OUTPUT (relative to the script's folder)
    engine_python: str = ""
    weights: str = ""
    extra_args: str = ""  # more `dvd-vfx render` flags, shell-quoted
    resolution: int = 0  # 0: the preset's (or the engine's default)
    window: int = 0
    overlap: int = -1  # -1: the preset's; 0 is a valid overlap
    dtype: str = "auto"  # "auto": the preset's / the engine's choice
    offload: str = "auto"  # auto | on | off
    view: str = ""  # stereo plates (%V): the view to render
    anchors: str = ""  # a CSV/JSON anchors file (scene-scale depth); relative to the script's folder


@dataclass(frozen=True)
class RenderRequest:
    """One render, fully resolved on the main thread; the worker only reads this."""

    source: ReadSource
    shot: str
    out_dir: str
    comp_range: tuple[int, int]
    file_range: tuple[int, int]
    mode: str
    near: float
    far: float
    engine_python: str
    args: list[str] = field(default_factory=list)
    view: str = ""

    @property
    def pattern(self) -> str:
        return os.path.join(self.out_dir, f"{self.shot}.depth.####.exr")


DEFAULT_OUTPUT = "depth/{shot}/{shot}.depth.####.exr"
OUTPUT_TOKENS = ("shot", "version", "script", "view")
_VERSION_RE = re.compile(r"(?:^|[._-])(v\d+)(?=$|[._-])", re.IGNORECASE)
_TOKEN_RE = re.compile(r"\{([^{}]*)\}")


def script_version(script_name: str) -> str:
    """The version token of a script's name: comp_sh010_v012.nk -> "v012" ("" when it has none)."""
    stem = os.path.splitext(os.path.basename(script_name or ""))[0]
    found = _VERSION_RE.findall(stem)
    return found[-1] if found else ""


def expand_output(template: str, *, shot: str, script_name: str = "", view: str = "") -> str:
    """An output template's {shot}, {version} (the script's vNNN), {script} (its name) and {view}, expanded."""
    script = os.path.splitext(os.path.basename(script_name or ""))[0]
    values = {"shot": shot, "script": script, "version": script_version(script_name), "view": view}

    def one(m):
        token = m.group(1)
        if token not in values:
            raise InputError(f"output {template!r}: unknown token {{{token}}}; use {', '.join('{%s}' % t for t in OUTPUT_TOKENS)}")
        if not values[token]:
            why = {"script": "the script is not saved", "version": f"the script's name {script_name!r} has no "
                   "version (e.g. comp_v012.nk)" if script_name else "the script is not saved",
                   "view": "the plate is not stereo", "shot": "the shot has no name"}[token]
            raise InputError(f"output {template!r} uses {{{token}}} but {why}; save/rename the script or edit "
                             f"the output knob")
        return values[token]

    return _TOKEN_RE.sub(one, template)


def default_output(script_dir: str, shot: str) -> str:
    if not script_dir:
        raise InputError("the script is not saved, so there is no folder to put the depth pass next to; save the "
                         "script or set 'output' on the DVD Depth node")
    return os.path.join(script_dir, DEFAULT_OUTPUT.format(shot=shot))


def resolve_path(path: str, base_dir: str, what: str) -> str:
    """A path as Nuke resolves it: ~ expanded, relative to the project directory (else the script's folder)."""
    text = os.path.expanduser(path.strip())
    if os.path.isabs(text):
        return os.path.normpath(text)
    if not base_dir:
        raise InputError(f"{what} {path!r} is relative and neither the script's project directory nor the script's "
                         f"folder is known (save the script, or use an absolute path)")
    return os.path.normpath(os.path.join(base_dir, text))


def split_output(output: str, script_dir: str = "") -> tuple[str, str]:
    """(out_dir, shot) of an output knob value ``DIR/SHOT.depth.####.exr`` (relative to the script)."""
    text = os.path.expanduser(output.strip())
    directory, name = os.path.split(text)
    m = _OUTPUT_NAME_RE.match(name)
    if m is None:
        raise InputError(f"output {output!r} must name the sequence as DIR/SHOT.depth.####.exr (the engine writes "
                         f"SHOT.depth.<frame>.exr, 4-digit frames)")
    if not os.path.isabs(directory):
        if not script_dir:
            raise InputError(f"output {output!r} is relative and the script is not saved; use an absolute path")
        directory = os.path.join(script_dir, directory)
    return os.path.normpath(directory), m.group("shot")


def resolve_engine_python(knob_value: str, *, environ=os.environ, configured: str | None = None) -> str:
    """The engine's interpreter: the knob, else $DVD_VFX_PYTHON, else what `dvd-vfx install nuke` recorded."""
    for candidate in (knob_value, environ.get("DVD_VFX_PYTHON", ""), configured or ""):
        if candidate and candidate.strip():
            return os.path.expanduser(candidate.strip())
    raise InputError("no engine Python: set 'engine Python' on the DVD Depth node (or $DVD_VFX_PYTHON) to the "
                     "python of the environment where dvd-vfx and torch are installed, or run "
                     "`dvd-vfx install nuke` from that environment")


def setting_flags(settings: NodeSettings) -> list[str]:
    """The settings knobs as `dvd-vfx render` flags (only those set; the rest come from the preset)."""
    flags = []
    for name, value, unset in (("resolution", settings.resolution, 0), ("window", settings.window, 0),
                               ("overlap", settings.overlap, -1)):
        value = int(value)
        if value != unset:
            if value < 0 or (name != "overlap" and value == 0):
                raise InputError(f"{name} {value} on the DVD Depth node is not valid; set it to a positive number "
                                 f"(or {unset} for the preset's)")
            flags += [f"--{name}", str(value)]
    if settings.window and settings.overlap >= 0 and settings.overlap >= settings.window:
        raise InputError(f"overlap {settings.overlap} must be smaller than window {settings.window}")
    if settings.dtype and settings.dtype != "auto":
        flags += ["--dtype", settings.dtype]
    if settings.offload in ("on", "off"):
        flags.append("--offload" if settings.offload == "on" else "--no-offload")
    elif settings.offload not in ("", "auto"):
        raise InputError(f"offload {settings.offload!r} is not one of auto, on, off")
    return flags


def plan_render(source: ReadSource, settings: NodeSettings, *, script_dir: str = "",
                configured_python: str | None = None, environ=os.environ, script_name: str = "",
                project_dir: str = "") -> RenderRequest:
    """Check the node's settings against the plate and build the `dvd-vfx render` arguments.

    script_dir: the saved script's folder (outputs, anchors); project_dir: the root's project directory
    (relative plate paths, as Nuke reads them; default script_dir); script_name: for {version}/{script}.
    """
    if settings.mode not in MODES:
        raise InputError(f"mode {settings.mode!r} is not one of {', '.join(MODES)}")
    near, far = float(settings.near), float(settings.far)
    if settings.mode == "depth" and not (0 < near < far):
        raise InputError(f"near {near:g} and far {far:g}: depth mode needs 0 < near < far")
    comp = source.comp_range if settings.use_read_range else (int(settings.first), int(settings.last))
    if comp[1] < comp[0]:
        raise InputError(f"frame range {comp[0]}-{comp[1]}: the last frame is before the first")
    lo, hi = source.comp_range
    if comp[0] < lo or comp[1] > hi:
        raise InputError(f"frame range {comp[0]}-{comp[1]} is outside the Read's frames {lo}-{hi} (comp frames)")
    files = (comp[0] - source.offset, comp[1] - source.offset)
    plate_shot = shot_name(source.file)
    if settings.view and settings.view not in plate_shot:  # stereo: one pass per view
        plate_shot += f"_{settings.view}"
    template = settings.output.strip() or DEFAULT_OUTPUT
    if not settings.output.strip() and not script_dir:
        default_output(script_dir, plate_shot)  # the "save the script" error
    out_dir, shot = split_output(expand_output(template, shot=plate_shot, script_name=script_name,
                                               view=settings.view), script_dir)
    python = resolve_engine_python(settings.engine_python, environ=environ, configured=configured_python)
    try:
        extra = shlex.split(settings.extra_args or "")
    except ValueError as exc:
        raise InputError(f"extra engine flags {settings.extra_args!r}: {exc}") from None
    plate = source.file if source.movie else source.engine_source
    if not os.path.isabs(plate):
        plate = resolve_path(plate, project_dir or script_dir, "the Read's file")
    args = [plate, "-o", out_dir, "--shot", shot, "--frames", f"{files[0]}-{files[1]}"]
    if source.movie:
        args += ["--start-frame", "1"]  # Nuke numbers a movie's frames from 1
    if settings.preset.strip():
        args += ["--preset", settings.preset.strip()]
    args += ["--mode", settings.mode]
    if settings.mode == "depth":
        args += ["--near", repr(near), "--far", repr(far)]
    if settings.weights.strip():
        args += ["--weights", os.path.expanduser(settings.weights.strip())]
    args += setting_flags(settings)
    if settings.anchors.strip():
        if settings.mode != "depth":
            raise InputError("anchors give depth in scene units: set mode to depth (disparity has no scale)")
        args += ["--anchors", resolve_path(settings.anchors, script_dir, "anchors file")]
    args.append("--replace")  # the node's folder holds the node's one pass: a new range replaces the old one
    args += extra
    return RenderRequest(source=source, shot=shot, out_dir=out_dir, comp_range=comp, file_range=files,
                         mode=settings.mode, near=near, far=far, engine_python=python, args=args, view=settings.view)


# -- helpers' maths ---------------------------------------------------------------------------------


def zdefocus_math(mode: str) -> str:
    """ZDefocus' `math` for our pass: real depth is "depth"; disparity (near = 1, far -> 0) is 1/z-like, "far = 0"."""
    return {"depth": "depth", "disparity": "far = 0"}[mode]


def fog_amount_expression(mode: str, near: float, far: float) -> str:
    """Nuke expression for fog amount in [0, 1] from depth.Z: 0 at the nearest 2 %, 1 at the farthest 2 %."""
    if mode == "depth":
        return f"clamp((depth.Z - {near:g}) / ({far:g} - {near:g}))"
    return "clamp(1 - depth.Z)"


def progress_percent(stage: str, done: int, total: int) -> int:
    """One bar over the stages in whole percent (dvd_vfx.progress.progress_fraction: predict 0-80 %, stitch
    80-90 %, write 90-100 %), rounded down."""
    # the small epsilon: 100 * (0.8 + 0.1 * 0.5) is 84.99999999999999 in floating point, and is 85 %
    return int(100 * progress_fraction(stage, done, total) + 1e-9)


# -- scene scale: anchors picked in the Viewer ------------------------------------------------------


@dataclass(frozen=True)
class Pick:
    """A point picked in Nuke's Viewer with a typed distance: comp frame, Nuke pixel coordinates (origin at the
    BOTTOM-left of the format, y up), distance along the viewing axis in scene units."""

    frame: int
    x: float
    y: float
    depth: float
    weight: float = 1.0


def parse_picks(text: str) -> list[Pick]:
    """The node's 'anchor points' knob: one pick per line, ``frame x y distance [weight]`` (# comments)."""
    picks = []
    for number, line in enumerate((text or "").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) not in (4, 5) or values[3] <= 0 or (len(values) == 5 and values[4] <= 0):
            raise InputError(f"anchor points line {number} {line!r}: expected 'frame x y distance [weight]' with "
                             f"a positive distance (and weight)")
        picks.append(Pick(int(values[0]), values[1], values[2], values[3], values[4] if len(values) == 5 else 1.0))
    return picks


def format_pick(pick: Pick) -> str:
    weight = "" if pick.weight == 1.0 else f" {pick.weight:g}"
    return f"{pick.frame} {pick.x:.2f} {pick.y:.2f} {pick.depth:g}{weight}"


def anchor_rows(picks: list[Pick], *, offset: int, plate_height: int) -> list[tuple]:
    """Viewer picks as the engine's anchors: (file frame, x, y from the TOP-left, depth, weight).

    Nuke's pixel coordinates start at the bottom-left corner (y up) and a pixel's centre is at +0.5 on
    both axes; the engine's start at the top-left (y down), same centres: y_engine = height - y_nuke.
    Comp frames become file frames with the plate Read's offset (comp = file + offset).
    """
    if plate_height <= 0:
        raise InputError("the plate's height is unknown; connect the DVD Depth node to its Read")
    return [(p.frame - int(offset), p.x, float(plate_height) - p.y, p.depth, p.weight) for p in picks]


def anchors_csv(rows: list[tuple]) -> str:
    lines = ["frame,x,y,depth,weight"] + [f"{f},{x:.4f},{y:.4f},{d:.6g},{w:g}" for f, x, y, d, w in rows]
    return "\n".join(lines) + "\n"


# -- focus ------------------------------------------------------------------------------------------


def focus_value(sampled: float, mode: str) -> float:
    """ZDefocus2's focus plane ('center') for depth.Z sampled at the focus point: the pass's value itself in
    both modes (math "depth" reads distance, "far = 0" reads disparity), refused when nothing is there."""
    if sampled != sampled or sampled in (float("inf"), float("-inf")):
        raise InputError("depth.Z at the focus point is not a number; move the focus point onto the plate")
    if mode == "depth" and sampled <= 0:
        raise InputError(f"depth.Z at the focus point is {sampled:g} (no depth there: outside the rendered "
                         f"frames or the plate); move the focus point or render this frame")
    return float(sampled)
