"""The shared command-line vocabulary: settings -> flags -> parsed -> the same settings, for every field."""

from __future__ import annotations

import argparse
import dataclasses
from fractions import Fraction
from pathlib import Path

import pytest

from dvd_vfx import cli_args
from dvd_vfx.render import RenderOptions
from dvd_vfx.errors import InputError
from dvd_vfx.plugins import ModelSettings


def parse(argv):
    """What `render` and the farm commands parse: the render and model groups."""
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    cli_args.add_render_args(parser)
    cli_args.add_model_args(parser)
    args = parser.parse_args(["SRC", *argv])
    cli_args.apply_preset(args)  # the defaults of flags left unset (no --preset: no engine is built)
    return args


# every field of RenderOptions away from its default
EVERY_FIELD = RenderOptions(
    out_dir=Path("out dir"), shot="sh 010", frames=(1001, 1040), start_frame=1001, resolution=240, window=17,
    overlap=5, mode="disparity", near=0.1, far=1e4, invert=True, clamp=False, upsample="guided", compression="piz",
    preview=True, hold_missing=True, colorspace="linear", ocio_colorspace="ACES - ACEScg", part="rgba.left",
    view="left", fps=Fraction(24000, 1001), threads=3, replace=True, anchors="solve/anchors.csv")


def test_the_round_trip_covers_every_field_of_render_options():
    """A field added to RenderOptions must be added to the flags (both directions) and here."""
    defaults = RenderOptions(out_dir=Path("."))
    same = [f.name for f in dataclasses.fields(RenderOptions)
            if getattr(EVERY_FIELD, f.name) == getattr(defaults, f.name)]
    assert same == [], f"give these fields a value other than the default: {same}"


@pytest.mark.parametrize("options", [
    EVERY_FIELD,
    RenderOptions(out_dir=Path("/farm/out")),
    RenderOptions(out_dir=Path("out"), part="0", threads=1),
    dataclasses.replace(EVERY_FIELD, mode="depth", clamp=True, invert=False, preview=False, replace=False,
                        hold_missing=False, fps=Fraction(25)),
])
def test_render_options_survive_flags_and_parsing(options):
    args = parse(cli_args.render_flags(options))
    assert cli_args.render_options(args) == options
    assert cli_args.split_options(args) == {"only_windows": None, "assemble": False, "write_frames": None}


@pytest.mark.parametrize("model", [
    ModelSettings(),
    ModelSettings(weights="/w/dvd", device="cuda", dtype="bf16", vae_tiling=True, offload=True),
    ModelSettings(device="cpu", dtype="fp32", vae_tiling=False),
    ModelSettings(device="cuda", attention="cudnn", fp32_decoder_head=True),
    ModelSettings(device="cuda", vae_tiling_auto=True),
    ModelSettings(device="cuda", vae_channels_last=True, cudnn_benchmark=True),
    ModelSettings(device="cpu", compile=True),
])
def test_model_settings_survive_flags_and_parsing(model):
    args = parse(["-o", "out", *cli_args.model_flags(model)])
    assert cli_args.model_settings(args) == model


def test_split_flags_and_fps_are_checked():
    args = parse(["-o", "out", "--only-windows", "2-4"])
    assert cli_args.split_options(args) == {"only_windows": (2, 4), "assemble": False, "write_frames": None}
    with pytest.raises(InputError, match="separate parts of a split render"):
        cli_args.split_options(parse(["-o", "out", "--only-windows", "2-4", "--assemble"]))
    with pytest.raises(InputError, match="--fps '0' must be positive"):
        cli_args.render_options(parse(["-o", "out", "--fps", "0"]))
