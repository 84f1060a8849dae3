"""`dvd-vfx ...`: the command line. Exit codes: 0 ok, 2 bad input/usage, 3 weights, 4 NaN/inf predictions,
75 out of GPU memory (may be transient: farms retry it), 130 interrupted, 1 unexpected."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dvd_vfx import __version__, cli_args
from dvd_vfx.errors import DvdError, InputError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2
        self.print_usage(sys.stderr)
        print(f"dvd-vfx: error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dvd-vfx", description="Temporally stable depth passes (OpenEXR) for whole shots.")
    parser.add_argument("--version", action="version", version=f"dvd-vfx {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--plugins-dir", action="append", metavar="DIR",
                        help="load every .py file in DIR as a plugin (repeatable; also $DVD_VFX_PLUGINS_DIR)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    w = sub.add_parser("weights", help="check or fetch the DVD model weights")
    wsub = w.add_subparsers(dest="weights_command", required=True, parser_class=_Parser)
    wc = wsub.add_parser("check", help="validate a weights folder (files, keys, shapes, sha256)")
    wc.add_argument("folder", nargs="?", help="weights folder (default: --weights resolution order)")
    wc.add_argument("--no-hash", action="store_true", help="skip the sha256 of the files (fast)")
    wf = wsub.add_parser("fetch", help="download the official files from Hugging Face (needs network)")
    wf.add_argument("folder", nargs="?", help="destination (default: the user data dir)")
    wf.add_argument("--version", dest="dvd_version", choices=("1.0", "1.1"), default="1.1")

    i = sub.add_parser("info", help="print what dvd-vfx sees in a movie file or image sequence")
    i.add_argument("source", help="movie file, sequence (shot.####.exr, shot.%%04d.png, shot.1001-1100#.exr) or folder")
    cli_args.add_footage_args(i)

    r = sub.add_parser("render", help="render a shot's depth pass (EXR sequence)")
    r.add_argument("source", help="movie file, sequence (shot.####.exr, shot.%%04d.png, shot.1001-1100#.exr) or folder")
    cli_args.add_render_args(r)
    cli_args.add_model_args(r)
    _add_job_args(r)

    _add_batch_parser(sub)

    c = sub.add_parser("cache", help="list, inspect or clear the per-shot cache")
    csub = c.add_subparsers(dest="cache_command", required=True, parser_class=_Parser)
    cl = csub.add_parser("ls", help="cached shots: source, frames, size, age, complete/partial")
    ci = csub.add_parser("info", help="one entry in detail")
    ci.add_argument("target", metavar="KEY|SOURCE", help="cache key (or its first characters) or the source path")
    cc = csub.add_parser("clear", help="remove entries (all, or filtered)")
    cc.add_argument("--older-than", metavar="AGE", help="only entries unused for AGE (e.g. 7d, 12h)")
    cc.add_argument("--shot", help="only entries of this shot name")
    for sp in (cl, ci, cc):
        sp.add_argument("--cache-dir", help="cache folder (default: $DVD_VFX_CACHE_DIR, else the user cache dir)")

    d = sub.add_parser("demo", help="render a generated sample shot end to end (works offline)")
    d.add_argument("-o", "--output", default="demo_out", help="output folder (default ./demo_out)")
    cli_args.add_model_args(d)

    pl = sub.add_parser("plugins", help="list loaded plugins, predictors, readers, writers")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    ps = sub.add_parser("presets", help="list or show render presets")
    pssub = ps.add_subparsers(dest="presets_command", required=True, parser_class=_Parser)
    pssub.add_parser("ls", help="every preset: name, description, where it comes from")
    pshow = pssub.add_parser("show", help="one preset's values")
    pshow.add_argument("name")

    ins = sub.add_parser("install", help="install a host integration (nuke: the DVD Depth node)")
    ins.add_argument("host", choices=("nuke", "blender"),
                     help="nuke: copy the NUKE_PATH folder into ~/.nuke (or --dest); blender: build the extension "
                          "zip and install it into Blender's user extensions")
    ins.add_argument("--dest", metavar="DIR", help="parent folder (default ~/.nuke, or $DVD_VFX_NUKE_HOME)")
    ins.add_argument("--copy", action="store_true", help="copy dvd_vfx for the host's Python instead of linking it")
    ins.add_argument("--engine-python", metavar="PYTHON",
                     help="interpreter that renders (default: this one, which has dvd-vfx and torch)")
    ins.add_argument("--add-to-init", action="store_true", help="also add the pluginAddPath line to DEST/init.py")
    ins.add_argument("--blender-version", metavar="X.Y",
                     help="blender: which Blender's user folder (default: the newest 4.2-5.0 found)")
    ins.add_argument("--zip", metavar="PATH", help="blender: where to write the extension zip "
                                                   "(default ./dvd_vfx-VERSION.zip)")
    ins.add_argument("--zip-only", action="store_true", help="blender: build the zip, do not install it")
    _add_comp_parser(sub)
    _add_anchors_parser(sub)
    _add_farm_parser(sub)
    from dvd_vfx.train.evaluate import add_eval_parser

    add_eval_parser(sub)
    from dvd_vfx.train.cli_train import add_train_parser

    add_train_parser(sub)
    return parser


def _add_anchors_parser(sub) -> None:
    an = sub.add_parser("anchors", help="make anchors (known distances) for `render --anchors`")
    ansub = an.add_subparsers(dest="anchors_command", required=True, parser_class=_Parser)
    fc = ansub.add_parser("from-camera", help="project a camera solve's 3D points into frame,x,y,depth anchors "
                                              "(docs/anchors.md: axes, rotation order, units)")
    fc.add_argument("--points", required=True, metavar="POINTS",
                    help="3D points: .csv/.txt (x,y,z rows; header and a name column optional), .obj (v lines) "
                         "or .ply (ASCII or binary vertices)")
    fc.add_argument("--camera", required=True, metavar="CAMERA",
                    help="per-frame camera: Nuke .chan (frame tx ty tz rx ry rz [vfov]) or .json (4x4 "
                         "camera-to-world matrices and intrinsics)")
    fc.add_argument("-o", "--output", required=True, metavar="CSV", help="anchors CSV to write (frame,x,y,depth)")
    size = fc.add_argument_group("plate and lens")
    size.add_argument("--width", type=int, help="plate width in pixels (or --plate)")
    size.add_argument("--height", type=int, help="plate height in pixels (or --plate)")
    size.add_argument("--plate", metavar="SOURCE",
                      help="read the plate's size from this movie, sequence or folder; camera frames outside its "
                           "frame range are skipped")
    size.add_argument("--start-frame", type=int, help="with --plate: first frame number of a movie (default 1; "
                                                      "as the render's --start-frame)")
    size.add_argument("--focal", type=float, metavar="MM",
                      help="focal length in mm (with --film-back); overrides the .chan's vfov column")
    size.add_argument("--film-back", metavar="WxH",
                      help="film back (aperture) in mm, WIDTHxHEIGHT or the width alone, e.g. 36x24 or 24.576; "
                           "its width spans the plate's width")
    size.add_argument("--pixel-aspect", type=float, default=1.0, help="plate pixel aspect (default 1; 2 for 2x "
                                                                      "anamorphic)")
    size.add_argument("--rotation-order", default="ZXY", type=str.upper,
                      help=".chan rotation order, axes in the order applied (default ZXY, Nuke's)")
    pick = fc.add_argument_group("which anchors")
    pick.add_argument("--frames", metavar="A-B", help="only these camera frames (inclusive; all must be in the camera)")
    pick.add_argument("--every", type=int, default=1, metavar="K", help="every K-th frame from the first (default 1)")
    pick.add_argument("--per-frame", type=int, metavar="N",
                      help="at most N anchors per frame, spread over the image (deterministic)")
    pick.add_argument("--frame-offset", type=int, default=0, metavar="N",
                      help="add N to the camera's frame numbers to get plate frames (e.g. 1000)")
    pick.add_argument("--min-depth", type=float, default=1e-6, metavar="Z",
                      help="keep points farther than Z scene units in front of the camera (default 1e-6)")


def _cmd_anchors(args) -> int:
    from dvd_vfx import anchors_camera as ac

    size = plate_frames = None
    if args.plate:
        from dvd_vfx.footage import open_footage

        info = open_footage(args.plate, start_frame=args.start_frame).info
        size, plate_frames = (info.width, info.height), info.frame_numbers
    if args.width is not None or args.height is not None:
        if args.width is None or args.height is None:
            raise InputError("--width and --height go together (the plate's size in pixels)")
        size = (args.width, args.height)
    frames = None
    if args.frames:
        from dvd_vfx.footage import parse_frame_range

        frames = parse_frame_range(args.frames)
    film_back = ac.parse_film_back(args.film_back) if args.film_back else None
    path, result, count = ac.from_camera(
        args.points, args.camera, args.output, size=size, focal_mm=args.focal, film_back=film_back,
        pixel_aspect=args.pixel_aspect, rotation_order=args.rotation_order, frames=frames, every=args.every,
        per_frame=args.per_frame, frame_offset=args.frame_offset, min_depth=args.min_depth, plate_frames=plate_frames)
    print(f"wrote {len(result.rows)} anchors on {result.frames} frames from {count} points: {path} "
          f"({result.behind} point-frames behind the camera, {result.outside} outside the plate)")
    return 0


def _add_farm_parser(sub) -> None:
    from dvd_vfx import batch

    fa = sub.add_parser("farm", help="render shots as farm tasks: on a Ray cluster, or as an Open Job Description job")
    fsub = fa.add_subparsers(dest="farm_command", required=True, parser_class=_Parser)
    fr = fsub.add_parser("ray", help="run window-chunk tasks and an assemble task per shot on a Ray cluster")
    fo = fsub.add_parser("openjd", help="write an Open Job Description job template (openjd run, Deadline Cloud)")
    for p, output_flags in ((fr, ("-o", "--output")), (fo, ("--output-dir",))):
        p.add_argument("sources", nargs="*", metavar="SOURCE", help="shots: movie files, sequences or folders")
        cli_args.add_render_args(p, output_flags=output_flags, split=False)
        batch.add_arguments(p, farm=True)
        cli_args.add_model_args(p)
        cli_args.add_preset_arg(p)
        g = p.add_argument_group("tasks")
        g.add_argument("--windows-per-task", type=int, metavar="K",
                       help="model windows predicted by one task; each task loads the model once (default: "
                            "farm ray: the shot's windows split evenly over the tasks the cluster runs at once, "
                            "so model loads per shot = workers used; farm openjd: 8)")
        g.add_argument("--frames-per-task", type=int, metavar="N",
                       help="frames written by one assemble task (default: the whole shot in one task; "
                            "100 when `farm ray` moves predictions through Ray's object store)")
    from dvd_vfx.farm import openjd, ray_runner

    ray_runner.add_arguments(fr)
    openjd.add_arguments(fo)


def _add_batch_parser(sub) -> None:
    from dvd_vfx import batch

    b = sub.add_parser("batch", help="render the shots of an edit (.otio, .edl, .xml) or a shot list (.csv, .json, "
                                     "a saved panel queue) one after another")
    b.add_argument("batch_file", metavar="EDIT|SHOTS",
                   help="edit: one shot per clip (its media, source range + handles, clip name); shot list: "
                        "rows of source, frames, shot and overrides")
    cli_args.add_render_args(b, output_help="output folder per shot, with {shot}, {source_dir}, {source_name}, "
                                            "{preset} (e.g. renders/{shot}); a panel queue brings its own")
    cli_args.add_model_args(b)
    cli_args.add_preset_arg(b)
    batch.add_arguments(b)


def _add_job_args(r: argparse.ArgumentParser) -> None:
    g = r.add_argument_group("presets and hosts")
    cli_args.add_preset_arg(g)
    g.add_argument("--json-progress", action="store_true",
                   help="write job events as JSON lines on stdout (schema dvd-vfx.job/1; for hosts)")
    g.add_argument("--job-id", help="id of the job in events and hooks (default: random)")


def _cmd_weights(args) -> int:
    from dvd_vfx.model import weights as wt

    folder = wt.resolve_weights_dir(args.folder)
    if args.weights_command == "check":
        try:
            lines = wt.check_weights(folder, with_hash=not args.no_hash)
        except DvdError as exc:
            print(f"weights check FAILED: {exc}", file=sys.stderr)
            return exc.exit_code
        print("\n".join(lines))
        print("weights OK")
        return 0
    print(f"downloading DVD {args.dvd_version} into {folder} ({wt.LICENCE})")
    for path in wt.fetch_weights(folder, version=args.dvd_version):
        print(f"  {path}")
    return 0


def _cmd_info(args) -> int:
    from dvd_vfx.footage import open_footage, parse_frame_range

    frames = parse_frame_range(args.frames) if args.frames else None
    footage = open_footage(args.source, start_frame=args.start_frame, fps=cli_args.parse_fps(args.fps),
                           hold_missing=args.hold_missing, colorspace=args.colorspace,
                           ocio_colorspace=args.ocio_colorspace, part=args.part, view=args.view)
    if frames is not None:
        frames = footage.check_range(frames)
    print(footage.check_length().describe(frames=frames))
    return 0


def _cmd_render(args) -> int:
    from dvd_vfx.console import run_render

    cli_args.apply_preset(args)
    return run_render(args.source, cli_args.render_options(args), args.predictor, cli_args.make_cache(args),
                      args=args, model=cli_args.model_settings(args))


def _cmd_batch(args) -> int:
    from dvd_vfx.batch import run_batch

    return run_batch(args)


def _cmd_demo(args) -> int:
    from dvd_vfx import demo

    return demo.run(args)


def _cmd_cache(args) -> int:
    import time

    from dvd_vfx.cache import ShotCache, parse_age

    cache = ShotCache(args.cache_dir)
    if args.cache_command == "ls":
        entries = cache.entries()
        print(f"cache: {cache.root} ({sum(e.size for e in entries) / 1e9:.2f} GB of {cache.max_bytes / 1e9:.0f} GB)")
        for e in entries:
            m = e.manifest
            age_h = (time.time() - e.last_used) / 3600
            state = "complete" if e.complete else f"partial {e.windows_done}/{e.windows_total} windows"
            print(f"  {e.key[:12]}  {m.get('shot', '?'):<16} {m.get('frames', ['?', '?'])[0]}-"
                  f"{m.get('frames', ['?', '?'])[1]}  {e.size / 1e6:8.1f} MB  {age_h:7.1f} h ago  {state}  "
                  f"{m.get('source_arg', '')}")
        if not entries:
            print("  (empty)")
        return 0
    if args.cache_command == "info":
        found = cache.find(args.target)
        if not found:
            raise InputError(f"no cache entry matches {args.target!r}; see `dvd-vfx cache ls`")
        for e in found:
            m = e.manifest
            print(f"key        {e.key}\nfolder     {e.folder}\nshot       {m.get('shot')}\n"
                  f"source     {m.get('source_arg')}\nframes     {m.get('frames')}\n"
                  f"windows    {e.windows_done}/{e.windows_total} ({'complete' if e.complete else 'partial'})\n"
                  f"model      {m.get('identity')}\nparams     {m.get('params')}\n"
                  f"stitch     {m.get('stitch') and {k: m['stitch'][k] for k in ('percentiles',)}}\n"
                  f"size       {e.size / 1e6:.1f} MB\ntimings    {m.get('timings')}")
        return 0
    removed = cache.clear(older_than_s=parse_age(args.older_than) if args.older_than else None, shot=args.shot)
    print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} "
          f"({sum(e.size for e in removed) / 1e6:.1f} MB) from {cache.root}")
    return 0


def _cmd_plugins(args) -> int:
    import json

    engine = cli_args.engine_for(args)
    plugins, predictors = engine.plugins(), engine.predictors()
    readers, writers, presets = engine.readers(), engine.writers(), engine.presets()
    if args.json:
        from dataclasses import asdict

        print(json.dumps({
            "plugins": [asdict(p) for p in plugins],
            "predictors": [{"name": f.name, "description": f.description} for f in predictors.values()],
            "readers": [asdict(r) for r in readers], "writers": [asdict(w) for w in writers],
            "presets": [{"name": p.name, "source": p.source} for p in presets.values()],
        }, indent=2))
        return 0
    print(f"plugins ({len(plugins)}):")
    for p in plugins:
        print(f"  {p.name}  [{p.kind}]" + (f"  {p.location}" if p.location != p.name else ""))
        print(f"      hooks: {', '.join(h.removeprefix('dvd_vfx_') for h in p.hooks) or '(none)'}")
    print("predictors: " + "; ".join(f"{f.name} ({f.description})" if f.description else f.name
                                     for f in predictors.values()))
    print("readers:    " + "; ".join(f"{r.name} ({', '.join(r.extensions)})" for r in readers))
    print("writers:    " + "; ".join(f"{w.name} ({w.pattern})" for w in writers))
    print("presets:    " + ", ".join(presets))
    return 0


def _cmd_presets(args) -> int:
    from dvd_vfx import presets as pr

    engine = cli_args.engine_for(args)
    if args.presets_command == "ls":
        found = engine.presets()
        width = max((len(n) for n in found), default=4)
        for preset in found.values():
            print(f"{preset.name:<{width}}  {preset.description}")
            print(f"{'':<{width}}  {preset.source}")
        print(f"(user presets: {pr.user_presets_dir()}/NAME.toml)")
        return 0
    print(pr.to_toml(pr.get(engine, args.name)))
    return 0


def _cmd_install(args) -> int:
    if args.host == "blender":
        return _install_blender(args)
    from dvd_vfx.hosts.nuke import install

    installed = install.install_nuke(args.dest, link=not args.copy, engine_python=args.engine_python,
                                     add_to_init=args.add_to_init)
    print(install.describe(installed))
    return 0


def _install_blender(args) -> int:
    from dvd_vfx.hosts import blender

    version = (blender.parse_blender_version(args.blender_version) if args.blender_version
               else blender.detect_blender_version())
    zip_path = blender.build_zip(args.zip or Path.cwd(), engine_python=args.engine_python)
    print(f"extension zip: {zip_path} (Blender {blender.SUPPORTED[0][0]}.{blender.SUPPORTED[0][1]}-"
          f"{blender.SUPPORTED[1][0]}.{blender.SUPPORTED[1][1]}; Preferences > Get Extensions > Install from Disk)")
    if args.zip_only:
        return 0
    env = dict(__import__("os").environ)
    if args.dest:
        env["BLENDER_USER_EXTENSIONS"] = args.dest
    target = blender.install(zip_path, version, env=env)
    print(f"installed for Blender {version[0]}.{version[1]}: {target}\n"
          f"enable it in Preferences > Add-ons (\"dvd-vfx Depth Passes\")")
    return 0


def _add_comp_parser(sub) -> None:
    co = sub.add_parser("comp", help="defocus or fog a plate with its depth pass (EXR or PNG previews)")
    cosub = co.add_subparsers(dest="comp_command", required=True, parser_class=_Parser)
    cd = cosub.add_parser("defocus", help="thin-lens depth of field, layered so sharp edges do not bleed")
    cf = cosub.add_parser("fog", help="exponential fog: I*exp(-density*z) + colour*(1-exp(-density*z))")
    for p in (cd, cf):
        p.add_argument("--plate", required=True, metavar="SOURCE", help="the plate (movie, sequence or folder)")
        p.add_argument("--depth", required=True, metavar="PASS",
                       help="its depth pass, e.g. OUT_DIR/shot.depth.####.exr")
        p.add_argument("-o", "--output", required=True, metavar="OUT",
                       help="folder (SHOT.<op>.####.exr inside) or a pattern such as out/shot.fog.####.png")
        p.add_argument("--format", dest="image_format", choices=("exr", "png"),
                       help="for a folder output: exr (RGB half, plate colourspace; default) or png (8-bit sRGB)")
        p.add_argument("--frames", metavar="A-B", help="inclusive frame range (default: the whole plate)")
        p.add_argument("--colorspace", default="auto", help="plate colour: auto | display | linear (default auto)")
        p.add_argument("--mode", choices=("depth", "disparity"), help="override the pass's dvd/mode attribute")
    cd.add_argument("--focus", type=float, required=True,
                    help="focus distance in scene units (disparity passes: in-focus disparity, 0-1, 1 = near)")
    cd.add_argument("--fstop", type=float, default=2.8, help="f-number (default 2.8)")
    cd.add_argument("--focal-length", type=float, default=35.0, help="lens focal length in mm (default 35)")
    cd.add_argument("--sensor-width", type=float, default=36.0, help="sensor (filmback) width in mm (default 36)")
    cd.add_argument("--unit-scale", type=float, default=1.0, help="metres per scene unit (default 1)")
    cd.add_argument("--relative-scale", type=float, metavar="PX",
                    help="disparity passes: blur radius in px per unit of disparity difference (default --max-blur)")
    cd.add_argument("--max-blur", type=float, default=32.0, help="largest blur radius in pixels (default 32)")
    cd.add_argument("--blades", type=int, default=0, help="aperture blades, 0 = round (default 0)")
    cd.add_argument("--blade-rotation", type=float, default=0.0, help="aperture rotation in degrees")
    cd.add_argument("--backend", choices=("auto", "numpy", "torch"), default="auto",
                    help="auto: torch on a CUDA GPU, else numpy (faster than torch on CPUs)")
    cf.add_argument("--density", type=float, required=True,
                    help="extinction per scene unit (disparity passes: per unit of relative depth 0-1)")
    cf.add_argument("--colour", "--color", dest="colour", default="0.7,0.75,0.8", metavar="R,G,B",
                    help="fog colour in the plate's encoding (default 0.7,0.75,0.8)")
    cf.add_argument("--start", type=float, default=0.0, help="distance before which there is no fog (default 0)")


def _cmd_comp(args) -> int:
    from dvd_vfx import comp

    if args.comp_command == "defocus":
        settings = comp.DefocusSettings(
            focus=args.focus, fstop=args.fstop, focal_length=args.focal_length, sensor_width=args.sensor_width,
            unit_scale=args.unit_scale, relative_scale=args.relative_scale, max_blur=args.max_blur,
            blades=args.blades, blade_rotation=args.blade_rotation)
        backend = args.backend
    else:
        try:
            colour = tuple(float(v) for v in args.colour.split(","))
        except ValueError:
            colour = ()
        if len(colour) != 3:
            raise InputError(f"fog colour {args.colour!r} is not R,G,B; write e.g. 0.7,0.75,0.8")
        settings = comp.FogSettings(density=args.density, colour=colour, start=args.start)
        backend = "numpy"
    written = comp.comp_sequence(settings, plate=args.plate, depth=args.depth, output=args.output,
                                 frames=args.frames, image_format=args.image_format, colorspace=args.colorspace,
                                 mode=args.mode, backend=backend)
    if written:
        print(f"wrote {len(written)} frame{'s' if len(written) != 1 else ''}: {written[0]}"
              + (f" ... {written[-1].name}" if len(written) > 1 else ""))
    return 0


def _cmd_farm(args) -> int:
    from dvd_vfx.farm import openjd, ray_runner

    cli_args.apply_preset(args)
    if args.batch and (args.sources or args.shot or args.frames):
        raise InputError(f"--batch {args.batch} names the shots, their names and frames; drop the SOURCEs, --shot "
                         "and --frames")
    if not args.batch and not args.sources:
        raise InputError("no shots: give SOURCEs (movies, sequences, folders) or --batch EDIT|SHOTS")
    if args.shot and len(args.sources) > 1:
        raise InputError(f"--shot {args.shot!r} names one shot but {len(args.sources)} sources were given; "
                         "drop --shot (each shot is named after its source)")
    options = cli_args.render_options(args)
    return (ray_runner if args.farm_command == "ray" else openjd).run(args, options)


def _cmd_eval(args) -> int:
    from dvd_vfx.train.evaluate import run_eval_command

    return run_eval_command(args)


def _cmd_train(args) -> int:
    from dvd_vfx.train.cli_train import cmd_train

    return cmd_train(args)


_HANDLERS = {"train": _cmd_train, "eval": _cmd_eval, "weights": _cmd_weights, "info": _cmd_info,
             "render": _cmd_render, "batch": _cmd_batch, "demo": _cmd_demo, "cache": _cmd_cache,
             "plugins": _cmd_plugins, "presets": _cmd_presets, "install": _cmd_install, "comp": _cmd_comp,
             "farm": _cmd_farm, "anchors": _cmd_anchors}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="dvd-vfx: %(levelname)s: %(message)s" if args.verbose else "dvd-vfx: %(message)s")
    for name in ("diffusers", "torch", "urllib3", "filelock"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        code = _HANDLERS[args.command](args)
    except DvdError as exc:
        print(f"dvd-vfx: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("dvd-vfx: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        code = 1
    except Exception as exc:  # noqa: BLE001 - a bug or an environment failure: one line, trace with -v
        if args.verbose:
            raise
        print(f"dvd-vfx: error: unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(run with -v for the traceback)", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
