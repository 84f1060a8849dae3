"""The command-line vocabulary that several commands share (`render`, `info`, `demo`, `eval`,
`farm ray`, `farm openjd`): argparse groups, and the objects the parsed flags make.

Flags and settings convert here in both directions:
  flags -> settings  render_options(args), model_settings(args), split_options(args)
  settings -> flags  render_flags(options), model_flags(model): what farm tasks run
so `render_options` of the parsed `render_flags(options)` is `options` again.

Presets fill the flags left unset (apply_preset). One Engine (one plugin manager) serves a whole
command (engine_for); make_cache and make_predictor build what the flags ask for.
Neither torch nor numpy is imported here; the modules that need them are imported when called.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from dvd_vfx.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from dvd_vfx.render import RenderOptions
    from dvd_vfx.plugins import ModelSettings

# -- argument groups -------------------------------------------------------------------------------


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--weights, --device, --dtype, --vae-tiling, --offload, --attention (read by model_settings)."""
    g = p.add_argument_group("model")
    g.add_argument("--weights", metavar="DIR", help="weights folder (default: $DVD_VFX_WEIGHTS, else the user data dir)")
    g.add_argument("--device", help="auto | cuda | cuda:N | cpu | mps (default auto)")
    g.add_argument("--dtype", help="auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32")
    g.add_argument("--vae-tiling", action=argparse.BooleanOptionalAction, default=None,
                   help="tile the VAE for large frames (default: automatic above 1280x720 working size)")
    g.add_argument("--vae-tiling-auto", action=argparse.BooleanOptionalAction, default=None,
                   help="decide VAE tiling at render start from the GPU's free memory and the window size "
                        "(off on a CPU; recorded as on/off; not for split/farm renders); --no-vae-tiling-auto "
                        "turns a preset's off")
    g.add_argument("--offload", action=argparse.BooleanOptionalAction, default=None,
                   help="keep networks on the GPU only while they run (small GPUs)")
    g.add_argument("--attention", choices=("auto", "flash", "cudnn", "math"),
                   help="attention kernel: auto (PyTorch's fastest available, default) | flash | cudnn (CUDA) | math")
    g.add_argument("--fp32-decoder-head", action="store_true", default=None,
                   help="the VAE decoder's last layer in float32 with bf16/fp16 (finer depth steps; not the "
                        "official numerics)")
    g.add_argument("--vae-channels-last", action="store_true", default=None,
                   help="the VAE's causal convolutions in channels_last_3d memory format (for GPUs; rounds "
                        "differently, recorded in the cache key)")
    g.add_argument("--cudnn-benchmark", action="store_true", default=None,
                   help="let cuDNN time and pick its convolution algorithms for the shot's shapes (CUDA only; "
                        "not bit-reproducible between runs; recorded in the cache key)")
    g.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the DiT blocks and VAE chunks (the first window of each size compiles: "
                        "minutes on a CPU; needs a C++ compiler on CPU, Triton on CUDA; recorded in the cache key)")


def add_preset_arg(p) -> None:
    """--preset NAME (a parser or an argument group); apply_preset reads it."""
    p.add_argument("--preset", metavar="NAME", help="start from a preset (`dvd-vfx presets ls`); flags override it")


def add_window_args(g) -> None:
    """--resolution, --window, --overlap: the model windows (a parser or an argument group)."""
    g.add_argument("--resolution", type=int, metavar="SHORT_SIDE", help="working short side (default 480)")
    g.add_argument("--window", type=int, help="frames per window, 4n+1 (default 81)")
    g.add_argument("--overlap", type=int, help="frames shared by consecutive windows (default 21)")


def add_render_args(r: argparse.ArgumentParser, *, output_flags=("-o", "--output"), split: bool = True,
                    output_help: str | None = None) -> None:
    """Every flag of RenderOptions (render_options / render_flags), --predictor, the cache flags and,
    with split, the split-render flags (split_options). output_help: the output flag is then optional
    and means that (`batch`: a pattern per shot)."""
    r.add_argument(*output_flags, dest="output", required=output_help is None,
                   metavar="OUT_DIR" if output_help is None else "OUT_PATTERN",
                   help=output_help or "output folder for SHOT.depth.####.exr")
    r.add_argument("--shot", help="output name (default: the source's name)")
    add_footage_args(r)
    g = r.add_argument_group("windows")
    add_window_args(g)
    g.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads torch predicts with (default: torch's own, all cores; farm tasks: their CPUs). "
                        "Renders are byte-identical only for windows predicted with the same device and count; "
                        "it is recorded in the cache and the header (dvd/threads)")
    g = r.add_argument_group("output")
    g.add_argument("--mode", choices=("depth", "disparity"),
                   help="depth: z in [near, far] scene units; disparity: normalised, near = 1 (default depth)")
    g.add_argument("--near", type=float, help="depth of the nearest 2%% of the shot (default 1)")
    g.add_argument("--far", type=float, help="depth of the farthest 2%% of the shot (default 100)")
    g.add_argument("--invert", action=argparse.BooleanOptionalAction, default=None, help="swap near and far")
    g.add_argument("--clamp", action=argparse.BooleanOptionalAction, default=None,
                   help="disparity mode: clip to 0..1 (default); --no-clamp keeps the shot's 2%% tails below 0 "
                        "and above 1 (for measuring, e.g. dvd-vfx eval)")
    g.add_argument("--upsample", choices=("bilinear", "guided"),
                   help="to plate resolution: bilinear, or guided by the plate for sharper edges")
    g.add_argument("--compression", help="EXR compression: zip | zips | piz | none (lossless only)")
    g.add_argument("--preview", action=argparse.BooleanOptionalAction, default=None,
                   help="also write half R,G,B preview channels")
    g.add_argument("--replace", action="store_true",
                   help="frames of this shot already in the output folder from another render (other frames, "
                        "near/far or settings) are removed; without it such a render is refused, since one folder "
                        "must hold one normalisation per shot")
    g.add_argument("--anchors", metavar="FILE",
                   help="known distances (CSV frame,x,y,depth[,weight] or JSON): depth mode in the scene's units, "
                        "one robust scale for the whole shot (near/far come from the fit)")
    g.add_argument("--predictor", help="depth predictor registered by a plugin (default dvd; see `dvd-vfx plugins`)")
    add_cache_args(r)
    if not split:
        return
    g = r.add_argument_group("split rendering (farm): parts share windows through the cache")
    g.add_argument("--only-windows", metavar="A-B", help="predict only windows A..B into the cache; write no pass")
    g.add_argument("--assemble", action="store_true",
                   help="write the pass from a cache that holds every window (fails, listing the missing ones)")
    g.add_argument("--write-frames", metavar="X-Y", help="write only these source frames of the pass")


def add_footage_args(p: argparse.ArgumentParser) -> None:
    """How the source is read: shared by `render` (and the farm commands) and `info`."""
    p.add_argument("--frames", metavar="A-B", help="inclusive source frame range (default: all)")
    p.add_argument("--start-frame", type=int, help="first frame number of a movie (default 1)")
    p.add_argument("--fps", help="frame rate of an image sequence, e.g. 24 or 24000/1001 (default: from EXR or 24)")
    p.add_argument("--hold-missing", action="store_true", help="repeat the previous frame over gaps in a sequence")
    p.add_argument("--colorspace", default="auto", help="plate colour: auto | display | linear (default auto)")
    p.add_argument("--ocio-colorspace", help="OCIO colourspace of linear EXR plates (needs $OCIO + PyOpenColorIO)")
    p.add_argument("--part", metavar="NAME|N", help="multi-part EXR: the part to read, by name or number (0 = first; "
                                                   "default: the first part with R,G,B)")
    p.add_argument("--view", help="multi-view EXR: the view to read, e.g. left or right (default: the default view)")


def add_cache_args(p: argparse.ArgumentParser) -> None:
    """--cache-dir, --no-cache, --cache-max-gb (read by make_cache)."""
    g = p.add_argument_group("cache")
    g.add_argument("--cache-dir", help="per-shot cache folder (default: $DVD_VFX_CACHE_DIR, else the user cache dir)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    g.add_argument("--cache-max-gb", type=float, help="cache size cap, least recently used shots evicted (default 20)")


# -- flags -> settings -----------------------------------------------------------------------------


def parse_fps(text):
    """--fps as an exact Fraction (None when not given)."""
    from fractions import Fraction

    if not text:
        return None
    try:
        fps = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"--fps {text!r} is not a frame rate; use e.g. 24, 25 or 24000/1001") from None
    if fps <= 0:
        raise InputError(f"--fps {text!r} must be positive")
    return fps


def apply_preset(args) -> None:
    """Fill unset flags: explicit flag > --preset value > default."""
    from dvd_vfx import presets

    preset = presets.get(engine_for(args), args.preset) if getattr(args, "preset", None) else None
    explicit = {key: getattr(args, key, None) for key in presets.DEFAULTS}
    split = bool(getattr(args, "only_windows", None) or getattr(args, "assemble", False)
                 or getattr(args, "farm_command", None))  # (a preset's vae_tiling_auto gives way to its vae_tiling)
    for key, value in presets.merge(preset, explicit, split=split).items():
        setattr(args, key, value)


def render_options(args) -> RenderOptions:
    """The RenderOptions of parsed add_render_args flags (apply_preset first: it fills the defaults)."""
    from dvd_vfx.render import RenderOptions
    from dvd_vfx.footage import parse_frame_range

    fps = parse_fps(args.fps)
    return RenderOptions(
        out_dir=Path(args.output), shot=args.shot, frames=parse_frame_range(args.frames) if args.frames else None,
        start_frame=args.start_frame, resolution=args.resolution, window=args.window, overlap=args.overlap,
        mode=args.mode, near=args.near, far=args.far, invert=args.invert, clamp=args.clamp, upsample=args.upsample,
        compression=args.compression, preview=args.preview, hold_missing=args.hold_missing,
        colorspace=args.colorspace, ocio_colorspace=args.ocio_colorspace, part=args.part, view=args.view,
        fps=fps, threads=args.threads, replace=args.replace, anchors=args.anchors)


def model_settings(args) -> ModelSettings:
    """The ModelSettings of parsed add_model_args flags; unset ones take the defaults."""
    from dvd_vfx.plugins import MODEL_SWITCHES, ModelSettings
    from dvd_vfx.presets import DEFAULTS

    def pick(key):
        value = getattr(args, key, None)
        return DEFAULTS[key] if value is None else value

    return ModelSettings(weights=args.weights, device=pick("device"), dtype=pick("dtype"),
                         vae_tiling=pick("vae_tiling"), offload=bool(pick("offload")),
                         attention=getattr(args, "attention", None) or "auto",
                         **{name: bool(getattr(args, name, None)) for name in MODEL_SWITCHES})


def split_options(args) -> dict:
    """--only-windows / --assemble / --write-frames as render_shot's keywords (absent: a whole render)."""
    from dvd_vfx.footage import parse_frame_range

    if args is None:
        return {}
    only = getattr(args, "only_windows", None)
    if only and getattr(args, "assemble", False):
        raise InputError("--only-windows and --assemble are separate parts of a split render; use one")
    frames = getattr(args, "write_frames", None)
    return {"only_windows": parse_frame_range(only) if only else None, "assemble": bool(getattr(args, "assemble", False)),
            "write_frames": parse_frame_range(frames) if frames else None}


# -- settings -> flags -----------------------------------------------------------------------------


def render_flags(options: RenderOptions) -> list[str]:
    """`dvd-vfx render` flags that rebuild exactly `options` (the cache key and the pass header):
    render_options() of these flags, parsed, is `options`.

    Model, cache and split flags are not included: callers add them.
    """
    flags = ["-o", str(Path(options.out_dir))]
    if options.shot:
        flags += ["--shot", options.shot]
    if options.frames is not None:
        flags += ["--frames", f"{options.frames[0]}-{options.frames[1]}"]
    if options.start_frame is not None:
        flags += ["--start-frame", str(options.start_frame)]
    if options.fps is not None:
        flags += ["--fps", str(options.fps)]
    if options.hold_missing:
        flags.append("--hold-missing")
    flags += ["--colorspace", options.colorspace]
    if options.ocio_colorspace:
        flags += ["--ocio-colorspace", options.ocio_colorspace]
    if options.part is not None:
        flags += ["--part", str(options.part)]
    if options.view is not None:
        flags += ["--view", str(options.view)]
    flags += ["--resolution", str(options.resolution), "--window", str(options.window),
              "--overlap", str(options.overlap), "--mode", options.mode,
              "--near", repr(float(options.near)), "--far", repr(float(options.far)),
              "--invert" if options.invert else "--no-invert", "--clamp" if options.clamp else "--no-clamp",
              "--upsample", options.upsample,
              *(["--threads", str(options.threads)] if options.threads is not None else []),
              *(["--replace"] if options.replace else []),
              *(["--anchors", str(options.anchors)] if options.anchors is not None else []),
              "--compression", options.compression, "--preview" if options.preview else "--no-preview"]
    return flags


def model_flags(model: ModelSettings) -> list[str]:
    """`dvd-vfx render` flags that rebuild a dvd_vfx.plugins.ModelSettings (model_settings())."""
    from dvd_vfx.plugins import MODEL_SWITCHES

    flags = []
    if model.weights:
        flags += ["--weights", str(model.weights)]
    flags += ["--device", model.device, "--dtype", model.dtype,
              "--offload" if model.offload else "--no-offload"]
    if model.vae_tiling is not None:
        flags.append("--vae-tiling" if model.vae_tiling else "--no-vae-tiling")
    if model.attention != "auto":
        flags += ["--attention", model.attention]
    flags += ["--" + name.replace("_", "-") for name in MODEL_SWITCHES if getattr(model, name)]
    return flags


# -- what the flags ask for ------------------------------------------------------------------------


def engine_for(args):
    """The command's one Engine (one PluginManager, with --plugins-dir), kept on `args`."""
    from dvd_vfx.engine import Engine

    engine = getattr(args, "_engine", None)
    if engine is None:
        engine = Engine(plugins_dirs=getattr(args, "plugins_dir", None) or ())
        if args is not None:
            args._engine = engine
    return engine


def make_predictor(args):
    """The --predictor (default dvd) built with the model flags."""
    return engine_for(args).make_predictor(getattr(args, "predictor", None) or "dvd", model_settings(args))


def make_cache(args):
    """The shot cache the flags ask for, or None (--no-cache)."""
    if getattr(args, "no_cache", False):
        return None
    from dvd_vfx.cache import ShotCache

    return ShotCache(getattr(args, "cache_dir", None), max_gb=getattr(args, "cache_max_gb", None))
