"""Shots from an edit or a shot list, and rendering them one after another (`dvd-vfx batch`).

    shots = load_shots("cut.otio", handles=8)   # also .edl (CMX 3600), .xml (FCP 7 XML), .csv, .json
    for shot in shots:
        shot.shot, shot.source, shot.frames, shot.overrides

An edit is read with OpenTimelineIO (EDL and FCP XML through its adapters): one shot per clip of the
video tracks, in track order, named after the clip; its source is the clip's media (a movie, or an
image sequence) and its frames the clip's source range widened by the handles (clamped to the media,
with a note). A shot list (CSV or JSON, or a queue saved by the panel) gives each row's source,
frames, shot name and overrides (preset keys, `preset`, `output`).

Nothing here renders by itself except `render_shots`; the panel and the farms take the ShotSpecs.
Neither torch nor numpy is imported here (footage is probed only when frames are resolved).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import string
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from dvd_vfx.errors import DvdError, InputError

EDIT_SUFFIXES = {".otio": "otio_json", ".edl": "cmx_3600", ".xml": "fcp_xml"}
LIST_SUFFIXES = (".csv", ".json")
PANEL_QUEUE_SCHEMA = "dvd-vfx.panel-queue/1"  # what the panel's "Save queue" writes
OUTPUT_FIELDS = ("shot", "source_dir", "source_name", "preset")
ROW_KEYS = ("source", "frames", "shot", "preset", "output", "handles")  # besides the preset and render keys
# render options a row (or the panel's queue) may set besides the preset keys: the render flags' names
RENDER_KEYS = {"start_frame": (int, ()), "colorspace": (str, ("auto", "display", "linear")),
               "ocio_colorspace": (str, ()), "hold_missing": (bool, ()), "anchors": (str, ())}


@dataclass(frozen=True)
class ShotSpec:
    """One shot to render.

    shot: output name (the pass is <out>/<shot>.depth.####.exr). source: movie path or sequence
    pattern. frames: inclusive source frame numbers, or None (all; an edit's clip resolves them
    from media_range). media_range: (offset, count) of an edit's clip, counted in frames from the
    media's first frame, before handles. handles: frames added on each side (clamped to the media).
    overrides: preset keys and `preset`, `output` (an output folder or pattern for this shot).
    origin: where the shot came from ("clip 2 of track V1", "row 3"). error: why the shot cannot
    be rendered as listed (a clip without media), or None.
    """

    shot: str
    source: str
    frames: tuple[int, int] | None = None
    media_range: tuple[int, int] | None = None
    handles: int = 0
    overrides: dict = field(default_factory=dict)
    origin: str = ""
    error: str | None = None


@dataclass
class ShotOutcome:
    spec: ShotSpec
    status: str  # done | cached | failed
    frames: tuple[int, int] | None = None
    seconds: float = 0.0
    detail: str = ""  # the pass pattern, or the one-line reason of a failure
    exit_code: int = 0


# -- reading ---------------------------------------------------------------------------------------


def load_shots(path, *, handles: int = 0, rate=None) -> list[ShotSpec]:
    """The shots of an edit (.otio, .edl, .xml) or a shot list (.csv, .json, a panel queue)."""
    path = Path(os.path.expanduser(os.fspath(path)))
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"batch file {path} does not exist; give an edit (.otio, .edl, .xml) or a shot list "
                         "(.csv, .json)")
    if handles < 0:
        raise InputError(f"--handles {handles} must be 0 or more frames")
    if suffix in EDIT_SUFFIXES:
        return load_edit(path, handles=handles, rate=rate)
    if suffix in LIST_SUFFIXES:
        return load_shot_list(path, handles=handles)
    raise InputError(f"{path}: '{suffix or path.name}' is neither an edit (.otio, .edl, .xml) nor a shot list "
                     "(.csv, .json); export the edit as OTIO, CMX 3600 EDL or FCP 7 XML")


def load_edit(path, *, handles: int = 0, rate=None) -> list[ShotSpec]:
    """One ShotSpec per clip of the edit's video tracks (OpenTimelineIO and its adapters)."""
    import opentimelineio as otio

    path = Path(path)
    adapter = EDIT_SUFFIXES.get(path.suffix.lower(), "otio_json")
    kwargs = {}
    if adapter == "cmx_3600" and rate:
        from dvd_vfx.footage.base import coerce_fps

        kwargs["rate"] = float(coerce_fps(rate, "--edit-rate"))
    try:
        timeline = otio.adapters.read_from_file(str(path), adapter_name=adapter, **kwargs)
    except otio.exceptions.NoKnownAdapterForExtensionError:  # pragma: no cover - the adapters are dependencies
        raise InputError(f"{path}: no OpenTimelineIO adapter {adapter!r} installed; pip install otio-cmx3600-adapter "
                         "otio-fcp-adapter") from None
    except Exception as exc:  # noqa: BLE001 - adapters raise many kinds; one line naming the file
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise InputError(f"{path}: cannot read the edit ({reason}); export it again as OTIO, EDL or FCP XML") from None
    if not isinstance(timeline, otio.schema.Timeline):
        timelines = [t for t in getattr(timeline, "find_children", lambda **k: [])(descended_from_type=otio.schema.Timeline)]
        if not timelines:
            raise InputError(f"{path}: holds no timeline; export the cut as a timeline")
        timeline = timelines[0]
    base = path.absolute().parent
    shots = []
    for t_index, track in enumerate(timeline.video_tracks(), 1):
        track_name = track.name or f"V{t_index}"
        clips = [c for c in track.find_clips(shallow_search=False)]
        for c_index, clip in enumerate(clips, 1):
            origin = f"clip {c_index} of track {track_name}"
            shots.append(_clip_shot(clip, origin, base, handles))
    if not shots:
        raise InputError(f"{path}: the edit has no clips on its video tracks")
    return _unique_names(shots)


def _clip_shot(clip, origin: str, base: Path, handles: int) -> ShotSpec:
    import opentimelineio as otio

    name = _shot_name(clip.name) or "shot"
    ref = clip.media_reference
    source = ""
    if isinstance(ref, otio.schema.ImageSequenceReference):
        folder = _url_path(ref.target_url_base, base)
        token = f"%0{ref.frame_zero_padding}d" if ref.frame_zero_padding > 1 else "%d"
        source = os.path.join(folder, f"{ref.name_prefix}{token}{ref.name_suffix}")
    elif isinstance(ref, otio.schema.ExternalReference) and ref.target_url:
        source = _url_path(ref.target_url, base)
    if not source:
        return ShotSpec(shot=name, source="", origin=origin, handles=handles,
                        error=f"{origin} ({clip.name!r}) has no media reference; relink it in the edit")
    try:
        src_range = clip.source_range or clip.trimmed_range()
    except Exception:  # noqa: BLE001 - no range anywhere
        src_range = None
    if src_range is None:
        return ShotSpec(shot=name, source=source, origin=origin, handles=handles)
    rate = src_range.start_time.rate
    start = round(src_range.start_time.value)
    count = max(1, round(src_range.duration.rescaled_to(rate).value))
    available = ref.available_range
    if available is not None:
        start -= round(available.start_time.rescaled_to(rate).value)
    return ShotSpec(shot=name, source=source, media_range=(start, count), handles=handles, origin=origin)


def _url_path(url: str, base: Path) -> str:
    """A media reference's target URL (file:// URL or path; relative to the edit's folder) as a path."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        text = unquote(parsed.path)
        if parsed.netloc and parsed.netloc != "localhost":
            text = f"//{parsed.netloc}{text}"
    else:  # a path (C:/ parses as scheme "c"), or another scheme left for the footage plugins
        text = url
    text = os.path.expanduser(text)
    return text if os.path.isabs(text) or "://" in text else str(base / text)


def _shot_name(text) -> str:
    """A clip or row name usable as a file-name prefix: path separators and spaces become '_'."""
    name = str(text or "").strip()
    name = os.path.splitext(name)[0] if os.path.splitext(name)[1].lower() in (".mov", ".mp4", ".exr", ".mxf") else name
    return "".join("_" if ch in '/\\:*?"<>| \t' else ch for ch in name).strip("._") or ""


def _unique_names(shots: list[ShotSpec]) -> list[ShotSpec]:
    """Two clips with one name (a shot cut in twice) would write the same files: the later ones get _2, _3."""
    seen: dict[str, int] = {}
    out = []
    for s in shots:
        n = seen.get(s.shot, 0) + 1
        seen[s.shot] = n
        out.append(s if n == 1 else dataclasses.replace(s, shot=f"{s.shot}_{n}"))
    return out


def load_shot_list(path, *, handles: int = 0) -> list[ShotSpec]:
    """Rows of a CSV (header: source, frames, shot, then preset keys, preset, output) or JSON file
    (a list of such objects, {"shots": [...]}, or the panel's saved queue)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read shot list {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
        if not reader.fieldnames or "source" not in [f.strip() for f in reader.fieldnames]:
            raise InputError(f"{path}: the first line must name the columns, with at least 'source' "
                             "(e.g. source,frames,shot,resolution)")
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None and (v or "").strip()}
                for row in reader]
        defaults, where = {}, "row {}"
        rows_at = 2  # the header is line 1
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(f"{path}: not JSON ({exc}); give a list of shots or a queue saved by the panel") from None
        defaults = {}
        if isinstance(data, dict) and data.get("schema") == PANEL_QUEUE_SCHEMA:
            defaults = dict(data.get("defaults") or {})
            if data.get("preset"):
                defaults["preset"] = data["preset"]
            if data.get("output_pattern"):
                defaults["output_pattern"] = data["output_pattern"]
            rows = [{"source": item.get("source"), **(item.get("overrides") or {})} if isinstance(item, dict) else item
                    for item in data.get("shots") or []]
        elif isinstance(data, dict) and isinstance(data.get("shots"), list):
            rows = data["shots"]
        elif isinstance(data, list):
            rows = data
        else:
            raise InputError(f"{path}: expected a list of shots, {{\"shots\": [...]}} or a queue saved by the panel")
        where, rows_at = "shot {}", 1
    shots = []
    for i, row in enumerate(rows):
        label = f"{path}: " + where.format(i + rows_at)
        shots.append(_row_shot(row, label, handles, defaults))
    if not shots:
        raise InputError(f"{path}: lists no shots")
    return _unique_names(shots)


def _row_shot(row, label: str, handles: int, defaults: dict) -> ShotSpec:
    from dvd_vfx import presets
    from dvd_vfx.footage import parse_frame_range

    if not isinstance(row, dict) or not isinstance(row.get("source"), str) or not row["source"].strip():
        raise InputError(f"{label} has no source path; give each shot a 'source' (movie or sequence pattern)")
    source = row["source"].strip()
    unknown = [k for k in row if k not in ROW_KEYS and k not in presets.KEYS and k not in RENDER_KEYS]
    if unknown:
        raise InputError(f"{label} ({source}): unknown column {unknown[0]!r}; known: "
                         f"{', '.join(ROW_KEYS + tuple(RENDER_KEYS))} and the preset keys "
                         f"({', '.join(k for k in presets.KEYS if k != 'description')})")
    overrides = {k: _typed(k, v, label) if k in RENDER_KEYS else v for k, v in defaults.items()
                 if (k in presets.KEYS or k in RENDER_KEYS or k in ("preset", "output_pattern")) and v not in (None, "")}
    for key, value in row.items():
        if key in ("source", "frames", "shot", "handles") or value in (None, ""):
            continue
        if key in presets.KEYS or key in RENDER_KEYS:
            value = _typed(key, value, label)
        overrides[key] = value
    frames = None
    if row.get("frames") not in (None, ""):
        try:
            frames = parse_frame_range(str(row["frames"]))
        except InputError as exc:
            raise InputError(f"{label} ({source}): {exc}") from None
    own_handles = handles
    if row.get("handles") not in (None, ""):
        try:
            own_handles = int(row["handles"])
        except (TypeError, ValueError):
            raise InputError(f"{label} ({source}): handles {row['handles']!r} is not a whole number") from None
    if frames is not None and own_handles:
        frames = (frames[0] - own_handles, frames[1] + own_handles)
    name = _shot_name(row.get("shot")) if row.get("shot") else ""
    if not name:
        name = _default_name(source)
    return ShotSpec(shot=name, source=source, frames=frames, overrides=overrides, origin=label.split(": ", 1)[-1],
                    handles=own_handles)


def _typed(key: str, value, label: str):
    """A CSV cell (text) or JSON value as the preset key's type."""
    from dvd_vfx import presets

    kind, allowed = RENDER_KEYS[key] if key in RENDER_KEYS else presets.KEYS[key][:2]
    try:
        if kind is bool:
            if isinstance(value, bool):
                out = value
            elif str(value).lower() in ("1", "true", "yes", "on"):
                out = True
            elif str(value).lower() in ("0", "false", "no", "off"):
                out = False
            else:
                raise ValueError
        else:
            out = kind(value)
    except (TypeError, ValueError):
        raise InputError(f"{label}: {key} {value!r} is not {kind.__name__}; fix the cell") from None
    if allowed and out not in allowed:
        raise InputError(f"{label}: {key} {out!r} is not one of {', '.join(map(str, allowed))}")
    return out


def _default_name(source: str) -> str:
    name = os.path.basename(source.rstrip("/\\"))
    for token in ("%", "#", "@", "$F"):
        name = name.split(token)[0]
    if name == os.path.basename(source.rstrip("/\\")):
        name = os.path.splitext(name)[0]
    return name.rstrip("._- ") or "shot"


# -- resolving frames and output folders ---------------------------------------------------------


def resolve_frames(spec: ShotSpec, info) -> tuple[tuple[int, int] | None, str]:
    """(first, last) source frames of `spec` for probed footage `info`, and a note when handles or the
    clip were clamped to the media ("" otherwise). InputError when the clip lies outside the media."""
    if spec.media_range is None:
        return spec.frames, ""
    offset, count = spec.media_range
    first = info.first_frame + offset
    last = first + count - 1
    if first < info.first_frame or last > info.last_frame:
        raise InputError(
            f"{spec.origin} ({spec.shot}) uses frames {offset + 1}-{offset + count} of {spec.source}, which has "
            f"{info.frame_count} ({info.first_frame}-{info.last_frame}); relink the clip or fix its source range")
    want_first, want_last = first - spec.handles, last + spec.handles
    got_first, got_last = max(want_first, info.first_frame), min(want_last, info.last_frame)
    note = ""
    if (got_first, got_last) != (want_first, want_last):
        note = (f"handles clamped to the media: {got_first}-{got_last} instead of {want_first}-{want_last}")
    return (got_first, got_last), note


def resolved(shots: list[ShotSpec], **footage) -> list[ShotSpec]:
    """`shots` with each edit clip's source frames filled in from its probed media (handles included,
    clamped), for a queue that wants plain rows (source, frames, shot). A shot whose media cannot be
    opened keeps frames None and gets `error`, the one-line reason. footage: open_footage's keywords."""
    from dvd_vfx.footage import open_footage

    out = []
    for spec in shots:
        if spec.media_range is None or spec.error:
            out.append(spec)
            continue
        try:
            frames, _ = probe_shot(spec, lambda source: open_footage(source, **footage))
        except DvdError as exc:
            out.append(dataclasses.replace(spec, error=f"{spec.origin} ({spec.shot}): {_one_line(exc)}"))
            continue
        out.append(dataclasses.replace(spec, frames=frames, media_range=None))
    return out


def output_dir(pattern: str, spec: ShotSpec, preset: str = "") -> str:
    """An output folder pattern ({shot}, {source_dir}, {source_name}, {preset}) for one shot; a row's
    `output` wins."""
    if spec.overrides.get("output"):
        pattern = str(spec.overrides["output"])
    fields = {"shot": spec.shot, "source_dir": os.path.dirname(os.path.abspath(os.path.expanduser(spec.source))),
              "source_name": os.path.basename(spec.source), "preset": preset}
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    except ValueError as exc:
        raise InputError(f"output pattern {pattern!r}: {exc}; write fields as {{shot}}") from None
    unknown = [n for n in names if n not in fields]
    if unknown:
        raise InputError(f"output pattern {pattern!r} uses {{{unknown[0]}}}; the fields are "
                         f"{', '.join('{' + f + '}' for f in OUTPUT_FIELDS)}")
    return os.path.normpath(os.path.abspath(os.path.expanduser(pattern.format(**fields))))


# -- the plan and the render loop ------------------------------------------------------------------


def probe_shot(spec: ShotSpec, open_footage):
    """(frames, note) of a shot from its footage (probed); InputError as the footage raises it."""
    if spec.error:
        raise InputError(spec.error)
    footage = open_footage(spec.source)
    try:
        return resolve_frames(spec, footage.info)
    finally:
        close = getattr(footage, "close", None)
        if close is not None:
            close()


def plan_lines(shots: list[ShotSpec], *, out_pattern: str | None, probe=None) -> list[str]:
    """The shot list as `--plan` prints it: number, shot, frames (with handles), source, output."""
    rows = []
    for i, spec in enumerate(shots, 1):
        note = ""
        try:
            frames, note = probe(spec) if probe else (spec.frames, "")
            span = f"{frames[0]}-{frames[1]}" if frames else "all"
            if frames:
                span += f" ({frames[1] - frames[0] + 1})"
        except DvdError as exc:
            span, note = "-", f"WILL FAIL: {exc}"
        out = ""
        if out_pattern or spec.overrides.get("output") or spec.overrides.get("output_pattern"):
            try:
                out = output_dir(out_pattern or spec.overrides.get("output_pattern") or "", spec,
                                 str(spec.overrides.get("preset") or ""))
            except DvdError as exc:
                note = note or f"WILL FAIL: {exc}"
        rows.append((str(i), spec.shot, span, str(spec.handles), spec.source or "(no media)", out, note))
    head = ("#", "shot", "frames", "handles", "source", "output", "")
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(5)]
    lines = []
    for r in [head, *rows]:
        text = "  ".join(r[c].ljust(widths[c]) for c in range(5)) + f"  {r[5]}"
        if r[6]:
            text += f"  [{r[6]}]"
        lines.append(text.rstrip())
    return lines


def render_shots(shots: list[ShotSpec], render_one, *, on_done=None) -> list[ShotOutcome]:
    """Render shots in order with `render_one(spec) -> (RenderResult, frames, note)`; a failing shot
    (DvdError, or an unexpected exception) is recorded with its one-line reason and the loop goes on.
    KeyboardInterrupt stops the loop (the outcomes so far are on the exception as .outcomes)."""
    outcomes = []
    for index, spec in enumerate(shots, 1):
        start = time.monotonic()
        try:
            if spec.error:
                raise InputError(spec.error)
            result, frames, note = render_one(spec)
        except KeyboardInterrupt as exc:
            exc.outcomes = outcomes
            raise
        except DvdError as exc:
            outcome = ShotOutcome(spec, "failed", seconds=time.monotonic() - start, detail=_one_line(exc),
                                  exit_code=exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - one shot's bug must not stop the others
            outcome = ShotOutcome(spec, "failed", seconds=time.monotonic() - start,
                                  detail=_one_line(f"unexpected {type(exc).__name__}: {exc}"), exit_code=1)
        else:
            status = "cached" if result.cache == "hit" else "done"
            outcome = ShotOutcome(spec, status, frames=tuple(result.frame_numbers), seconds=time.monotonic() - start,
                                  detail=result.pattern + (f" ({note})" if note else ""))
        outcomes.append(outcome)
        if on_done is not None:
            on_done(index, len(shots), outcome)
    return outcomes


def progress_line(index: int, total: int, o: ShotOutcome) -> str:
    frames = f"{o.frames[0]}-{o.frames[1]}" if o.frames else "-"
    return f"[{index}/{total}] {o.spec.shot}: {o.status} {frames} {o.seconds:.1f} s  {o.detail}"


def summary_lines(outcomes: list[ShotOutcome]) -> list[str]:
    """The summary table: shot, status, frames, time, output or the failure's reason; then the counts."""
    rows = [("shot", "status", "frames", "time", "output / reason")]
    for o in outcomes:
        frames = f"{o.frames[0]}-{o.frames[1]}" if o.frames else "-"
        rows.append((o.spec.shot, o.status, frames, f"{o.seconds:.1f} s", o.detail))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    lines = ["  ".join(r[c].ljust(widths[c]) for c in range(4)) + "  " + r[4] for r in rows]
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("done", "cached", "failed")}
    lines.append(f"{len(outcomes)} shot{'s' if len(outcomes) != 1 else ''}: {counts['done']} done, "
                 f"{counts['cached']} cached, {counts['failed']} failed")
    return lines


def _one_line(exc) -> str:
    return " ".join(str(exc).split())


# -- `dvd-vfx batch` -------------------------------------------------------------------------------


def add_arguments(p, *, farm: bool = False) -> None:
    """The batch flags (the render, model and preset flags are added by the CLI): `dvd-vfx batch`'s,
    or with `farm` the farm commands' (``--batch FILE`` instead of the positional file, no --plan)."""
    g = p.add_argument_group("batch")
    when = "with --batch: " if farm else ""
    if farm:
        g.add_argument("--batch", metavar="EDIT|SHOTS",
                       help="the shots of an edit or shot list, as `dvd-vfx batch` takes them (instead of SOURCEs); "
                            "the output folder may then hold {shot}, {source_dir}, {source_name}, {preset}")
    g.add_argument("--handles", type=int, default=0, metavar="N",
                   help=f"{when}frames added before and after each clip's (or row's) range, clamped to the media "
                        "(default 0)")
    if not farm:
        g.add_argument("--plan", action="store_true", help="print the shot list (frames with handles, source, "
                                                           "output) and render nothing")
    g.add_argument("--edit-rate", metavar="FPS", help=f"{when}frame rate of an EDL's timecodes (default 24)")


def shot_options(args, spec: ShotSpec, out_pattern: str | None):
    """(RenderOptions without frames, the preset name, the parsed flags of this shot): the command's
    flags with the shot's overrides on top (a row's value wins), its preset, output folder and name."""
    import argparse

    from dvd_vfx import cli_args, presets

    a = argparse.Namespace(**vars(args))
    for key, value in spec.overrides.items():
        if (key in presets.KEYS and key != "description") or key in RENDER_KEYS:
            setattr(a, key, value)
    if spec.overrides.get("preset"):
        a.preset = spec.overrides["preset"]
    cli_args.apply_preset(a)
    pattern = out_pattern or spec.overrides.get("output_pattern") or ""
    a.output = output_dir(pattern, spec, a.preset or "")
    a.shot, a.frames = spec.shot, None
    return cli_args.render_options(a), a


def _open(spec: ShotSpec, options):
    from dvd_vfx.footage import open_footage

    return open_footage(spec.source, start_frame=options.start_frame, fps=options.fps,
                        hold_missing=options.hold_missing, colorspace=options.colorspace,
                        ocio_colorspace=options.ocio_colorspace, part=options.part, view=options.view)


def shot_frames(spec: ShotSpec, options) -> tuple[tuple[int, int] | None, str]:
    """The shot's source frames (handles included) from its probed footage, and a clamp note."""
    return probe_shot(spec, lambda _source: _open(spec, options))


def run_batch(args) -> int:
    """`dvd-vfx batch FILE`: plan, render every shot here (continuing past failures), or hand the shots
    to a farm. 0 when every shot was rendered (or planned); the first failure's exit code otherwise."""
    import sys

    from dvd_vfx import cli_args
    from dvd_vfx.console import sigterm_as_interrupt, warn_if_test_model

    if getattr(args, "shot", None) or getattr(args, "frames", None):
        raise InputError("--shot and --frames name one shot; a batch takes them per clip or row (the clip's name "
                         "and source range, a shot list's shot and frames columns)")
    shots = load_shots(args.batch_file, handles=args.handles, rate=args.edit_rate)
    out_pattern = args.output
    if not out_pattern:
        missing = [s for s in shots if not (s.overrides.get("output") or s.overrides.get("output_pattern"))]
        if missing:
            raise InputError(f"-o OUT_PATTERN is needed: {missing[0].origin} ({missing[0].shot}) has no output "
                             "folder; give e.g. -o renders/{shot}")
    if args.plan:
        def probe(spec):
            options, _ = shot_options(args, spec, out_pattern)
            return shot_frames(spec, options)

        print(f"{args.batch_file}: {len(shots)} shot{'s' if len(shots) != 1 else ''}")
        for line in plan_lines(shots, out_pattern=out_pattern, probe=probe):
            print(line)
        return 0

    engine = cli_args.engine_for(args)
    cache = cli_args.make_cache(args)
    predictors: dict = {}

    def render_one(spec):
        options, a = shot_options(args, spec, out_pattern)
        frames, note = shot_frames(spec, options)
        options = dataclasses.replace(options, frames=frames)
        model = cli_args.model_settings(a)
        key = (a.predictor or "dvd", repr(model))
        if key not in predictors:
            predictors[key] = engine.make_predictor(a.predictor or "dvd", model)
            warn_if_test_model(predictors[key])
        result = engine.render(spec.source, options, predictors[key], model=model, cache=cache)
        return result, frames, note

    def on_done(index, total, outcome):
        print(progress_line(index, total, outcome), flush=True)

    try:
        with sigterm_as_interrupt():
            outcomes = render_shots(shots, render_one, on_done=on_done)
    except KeyboardInterrupt as exc:
        outcomes = getattr(exc, "outcomes", [])
        print("\n".join(["", *summary_lines(outcomes)]))
        print(f"dvd-vfx: interrupted after {len(outcomes)} of {len(shots)} shots", file=sys.stderr)
        return 130
    print("\n".join(["", *summary_lines(outcomes)]))
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        print(f"dvd-vfx: error: {len(failed)} of {len(outcomes)} shots failed; first: {failed[0].spec.shot}: "
              f"{failed[0].detail}", file=sys.stderr)
        return failed[0].exit_code or 1
    return 0

