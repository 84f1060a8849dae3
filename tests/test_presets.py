"""Presets: shipped files, user overrides, validation, and the merge order shipped < user < CLI flag."""

from __future__ import annotations

import pytest

from plugin_helpers import LUMA_PLUGIN, make_plate, write_plugin
from dvd_vfx import cli, cli_args, presets
from dvd_vfx.errors import InputError
from dvd_vfx.passes.exr import read_pass_attributes
from dvd_vfx.engine import Engine


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    folder = presets.user_presets_dir()
    assert str(folder).startswith(str(tmp_path))
    folder.mkdir(parents=True)
    return folder


def engine():
    return Engine(entry_points=False, env=False)


def parsed(*argv):
    args = cli.build_parser().parse_args(["render", "plate.mov", "-o", "out", *map(str, argv)])
    cli_args.apply_preset(args)
    return args


def test_shipped_presets(user_dir):
    found = engine().presets()
    assert {"preview", "standard", "final", "long-shot", "low-vram"} <= set(found)
    assert all(p.source.startswith(str(presets.PRESETS_DIR)) and p.description for p in found.values())
    v = {name: found[name].values for name in found}
    assert (v["preview"]["resolution"], v["preview"]["window"], v["preview"]["overlap"]) == (320, 33, 8)
    assert (v["standard"]["resolution"], v["standard"]["window"], v["standard"]["overlap"]) == (480, 81, 21)
    assert v["final"]["resolution"] > 480 and v["final"]["overlap"] > 21
    assert v["low-vram"]["vae_tiling"] and v["low-vram"]["offload"] and v["low-vram"]["dtype"] == "bf16"
    # small GPUs decide tiling from free memory (tiled where a split render cannot decide); delivery
    # and the 480p/320p presets do not: their passes must not depend on the GPU's free memory
    assert v["low-vram"]["vae_tiling_auto"] is True
    assert not any(v[name].get("vae_tiling_auto") for name in ("standard", "final", "long-shot", "preview"))
    for p in found.values():  # every shipped preset is a valid render
        merged = presets.merge(p, {})
        assert (merged["window"] - 1) % 4 == 0 and merged["overlap"] < merged["window"]
    # the standard preset is what a render without --preset does
    assert {k: presets.DEFAULTS[k] for k in v["standard"]} == v["standard"]


def test_merge_order_shipped_then_user_then_cli_flag(user_dir):
    args = parsed("--preset", "preview")
    assert (args.resolution, args.window, args.overlap) == (320, 33, 8)  # shipped
    assert (args.mode, args.near, args.far, args.offload) == ("depth", 1.0, 100.0, False)  # defaults

    (user_dir / "preview.toml").write_text('description = "our dailies"\nresolution = 256\nwindow = 17\n'
                                           'overlap = 4\nmode = "disparity"\noffload = true\n')
    args = parsed("--preset", "preview")
    assert (args.resolution, args.window, args.overlap, args.mode, args.offload) == (256, 17, 4, "disparity", True)
    assert engine().presets()["preview"].source == str(user_dir / "preview.toml")

    args = parsed("--preset", "preview", "--window", "9", "--mode", "depth", "--no-offload")
    assert (args.resolution, args.window, args.overlap, args.mode, args.offload) == (256, 9, 4, "depth", False)

    args = parsed("--preset", "low-vram", "--no-vae-tiling", "--dtype", "fp32")
    assert (args.vae_tiling, args.dtype, args.offload) == (False, "fp32", True)
    assert cli_args.model_settings(args).vae_tiling is False


def test_vae_tiling_auto_from_a_preset_and_flags(user_dir):
    def tiling(*argv):
        args = parsed(*argv)
        model = cli_args.model_settings(args)
        assert (args.vae_tiling, args.vae_tiling_auto) == (model.vae_tiling, model.vae_tiling_auto)
        return model.vae_tiling, model.vae_tiling_auto

    assert tiling() == (None, False)  # the default: unchanged
    assert tiling("--preset", "low-vram") == (None, True)  # decided at render start
    assert tiling("--preset", "low-vram", "--no-vae-tiling") == (False, False)  # a fixed choice wins
    assert tiling("--preset", "low-vram", "--vae-tiling") == (True, False)
    assert tiling("--preset", "low-vram", "--no-vae-tiling-auto") == (True, False)  # the preset's fixed one
    assert tiling("--preset", "final") == (True, False)
    assert tiling("--preset", "final", "--vae-tiling-auto") == (None, True)  # auto wins over the preset's
    assert tiling("--vae-tiling-auto", "--vae-tiling") == (True, True)  # both asked: the predictor refuses it
    # a split render cannot decide per GPU: a preset's auto gives way to its vae_tiling (or the default)
    assert tiling("--preset", "low-vram", "--only-windows", "0-1") == (True, False)
    assert tiling("--preset", "low-vram", "--assemble") == (True, False)
    assert presets.merge(presets.Preset("mine", {"vae_tiling_auto": True}), {}, split=True)["vae_tiling"] is None
    # ... but an explicit --vae-tiling-auto stays, so the render says why it cannot
    assert tiling("--vae-tiling-auto", "--only-windows", "0-1") == (None, True)
    assert cli_args.model_flags(cli_args.model_settings(parsed("--preset", "low-vram")))[-1] == "--vae-tiling-auto"


def test_farm_submission_uses_a_presets_fixed_tiling(user_dir):
    args = cli.build_parser().parse_args(["farm", "openjd", "plate.mov", "-o", "job.yaml", "--output-dir", "out",
                                          "--preset", "low-vram"])
    cli_args.apply_preset(args)
    model = cli_args.model_settings(args)
    assert (model.vae_tiling, model.vae_tiling_auto) == (True, False)
    assert "--vae-tiling" in cli_args.model_flags(model) and "--vae-tiling-auto" not in cli_args.model_flags(model)


def test_preset_drives_a_render(user_dir, tmp_path, capsys):
    (user_dir / "tiny.toml").write_text('resolution = 32\nwindow = 9\noverlap = 4\npredictor = "luma"\n'
                                        'mode = "disparity"\n')
    write_plugin(tmp_path / "plugins", "luma", LUMA_PLUGIN)
    plate = make_plate(tmp_path / "plate.mp4", 12)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--plugins-dir", str(tmp_path / "plugins"), "render", str(plate), "-o", str(tmp_path / "out"),
                  "--preset", "tiny", "--overlap", "2", "--no-cache"])
    assert exc.value.code == 0, capsys.readouterr().err
    attrs = read_pass_attributes(tmp_path / "out" / "plate.depth.0001.exr")
    assert (attrs["window"], attrs["overlap"], attrs["mode"], attrs["predictor"]) == (9, 2, "disparity", "luma")


@pytest.mark.parametrize("text, message", [
    ("resolutoin = 320\n", "unknown key 'resolutoin'"),
    ('window = "33"\n', "window must be an integer, got '33'"),
    ("window = 33.0\n", "window must be an integer, got 33.0"),
    ("offload = 1\n", "offload must be true or false, got 1"),
    ('vae_tiling_auto = "yes"\n', "vae_tiling_auto must be true or false, got 'yes'"),
    ("near = true\n", "near must be a number, got True"),
    ("window = 32\n", "window = 32 is not 4n+1"),
    ("window = 9\noverlap = 9\n", "overlap = 9 must be smaller than window = 9"),
    ('mode = "zdepth"\n', "mode = 'zdepth' is not one of depth, disparity"),
    ("near = 5\nfar = 2\n", "near = 5.0 must be smaller than far = 2.0"),
    ("window = [\n", "not valid TOML"),
])
def test_invalid_user_preset_is_one_clear_error(user_dir, text, message, capsys):
    path = user_dir / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        engine().presets()
    assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_overlap_from_flags_checked_against_the_preset_window(user_dir):
    with pytest.raises(InputError, match="preset 'preview' .* overlap 40 must be smaller than window 33"):
        parsed("--preset", "preview", "--overlap", "40")


def test_presets_cli(user_dir, capsys):
    (user_dir / "mine.toml").write_text('description = "my look"\nresolution = 400\n')
    with pytest.raises(SystemExit) as exc:
        cli.main(["presets", "ls"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert "preview" in out and "mine" in out and "my look" in out and str(user_dir / "mine.toml") in out
    with pytest.raises(SystemExit) as exc:
        cli.main(["presets", "show", "low-vram"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "offload = true" in out and 'dtype = "bf16"' in out
    with pytest.raises(SystemExit) as exc:
        cli.main(["presets", "show", "nope"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "unknown preset 'nope'; available: final, long-shot, low-vram, mine" in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["render", "x.mov", "-o", "out", "--preset", "nope"])
    assert exc.value.code == 2


def test_shipped_preset_files_are_package_data():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert "presets/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["dvd_vfx"]
    assert len(presets.shipped_preset_files()) >= 5
