"""`dvd-vfx render` end to end: real ffmpeg, real files, the tiny model; EXRs read back with OpenImageIO."""

import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import OpenEXR
import OpenImageIO as oiio
import pytest

from footage_helpers import ffmpeg_children, write_exr_sequence

from dvd_vfx.cli import main
from dvd_vfx.render import RenderOptions, render_shot
from dvd_vfx.footage.ffmpeg_tools import find_ffmpeg as ffmpeg_binary
from dvd_vfx.passes.exr import read_pass_attributes

FAST = ["--resolution", "48", "--window", "5", "--overlap", "2", "--device", "cpu"]


def ffmpeg(*args):
    subprocess.run([ffmpeg_binary(), "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def h264(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "plate.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24000/1001", "-frames:v", 11, "-pix_fmt", "yuv420p", path)
    return path


@pytest.fixture(scope="module")
def prores(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "plate.mov"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", 7, "-c:v", "prores_ks",
           "-profile:v", 3, "-pix_fmt", "yuv422p10le", path)
    return path


def render_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(["render", *map(str, argv)])
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def read_depth(path):
    inp = oiio.ImageInput.open(str(path))
    assert inp is not None, oiio.geterror()
    spec = inp.spec()
    pixels = inp.read_image(0, 0, 0, spec.nchannels, oiio.FLOAT)
    inp.close()
    return spec, pixels


def test_h264_render_writes_a_loadable_depth_pass(h264, tiny_weights_master, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = render_cli(capsys, h264, "-o", out, "--weights", tiny_weights_master, *FAST,
                                   "--near", "2", "--far", "40")
    assert code == 0, err
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"plate.depth.{n:04d}.exr" for n in range(1, 12)]
    percentiles = set()
    for n, f in enumerate(files, start=1):
        spec, px = read_depth(f)
        assert (spec.width, spec.height) == (64, 48)
        assert [spec.channelformat(i).basetype for i in range(spec.nchannels)] == [oiio.FLOAT]
        assert list(spec.channelnames) == ["depth.Z"]
        assert spec.tile_width == 0  # scanline
        assert spec.get_string_attribute("compression") == "zip"
        assert spec.getattribute("FramesPerSecond") in ("24000/1001", [24000, 1001], (24000, 1001)) or \
            Fraction(*spec.getattribute("FramesPerSecond")) == Fraction(24000, 1001)
        assert 2.0 - 1e-4 <= px.min() and px.max() <= 40.0 + 1e-3
        attrs = read_pass_attributes(f)
        assert attrs["mode"] == "depth" and attrs["near"] == 2.0 and attrs["far"] == 40.0
        assert attrs["sourceFrame"] == n and attrs["window"] == 5 and attrs["overlap"] == 2
        assert attrs["modelId"] == "dvd-1.1" and len(attrs["weightsSha256"]) == 64
        percentiles.add(tuple(attrs["percentiles"]))
    assert len(percentiles) == 1  # ONE normalisation for the whole shot
    assert "11 frames" in stdout and "plate.depth.####.exr" in stdout
    # the depth pass uses the whole near..far range of the shot (2nd-98th percentile)
    all_px = np.concatenate([read_depth(f)[1].ravel() for f in files])
    assert np.percentile(all_px, 1) < 2.5 and np.percentile(all_px, 99) > 30


def test_prores_10bit_and_start_frame(prores, tiny_weights_master, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = render_cli(capsys, prores, "-o", out, "--weights", tiny_weights_master, *FAST,
                              "--start-frame", 101, "--mode", "disparity", "--preview")
    assert code == 0, err
    names = sorted(f.name for f in out.iterdir())
    assert names == [f"plate.depth.{n:04d}.exr" for n in range(101, 108)]
    spec, px = read_depth(out / names[0])
    assert sorted(spec.channelnames) == ["B", "G", "R", "depth.Z"]
    assert spec.channelformat(list(spec.channelnames).index("R")).basetype == oiio.HALF
    z = px[..., list(spec.channelnames).index("depth.Z")]
    assert 0.0 <= z.min() and z.max() <= 1.0
    assert read_pass_attributes(out / names[0])["sourceFrame"] == 101


def test_exr_sequence_keeps_frame_numbers_and_range(tiny_weights_master, tmp_path, capsys):
    pattern = write_exr_sequence(tmp_path / "plates")
    out = tmp_path / "out"
    code, _, err = render_cli(capsys, pattern, "-o", out, "--weights", tiny_weights_master, *FAST,
                              "--frames", "1002-1005", "--shot", "sh010")
    assert code == 0, err
    assert sorted(f.name for f in out.iterdir()) == [f"sh010.depth.{n}.exr" for n in range(1002, 1006)]
    spec, _ = read_depth(out / "sh010.depth.1003.exr")
    assert (spec.width, spec.height) == (40, 24)
    assert Fraction(*spec.getattribute("FramesPerSecond")) == 24


def test_depth_is_monotone_in_disparity_with_the_shot_numbers(h264, tiny_weights_master, tmp_path):
    from dvd_vfx.model.predictor import DVDPredictor

    predictor = DVDPredictor(str(tiny_weights_master), device="cpu")
    common = dict(resolution=48, window=5, overlap=2)
    disp = render_shot(h264, RenderOptions(out_dir=tmp_path / "d", mode="disparity", **common), predictor)
    depth = render_shot(h264, RenderOptions(out_dir=tmp_path / "z", mode="depth", near=1.5, far=30, **common),
                        predictor)
    assert disp.percentiles == depth.percentiles
    for fd, fz in zip(disp.paths, depth.paths):
        d = read_depth(fd)[1][..., 0].ravel()
        z = read_depth(fz)[1][..., 0].ravel()
        expected = 1.0 / (d * (1 / 1.5 - 1 / 30) + 1 / 30)
        np.testing.assert_allclose(z, expected, rtol=1e-5)
        order = np.argsort(d, kind="stable")
        assert np.all(np.diff(z[order]) <= 1e-5)  # nearer (larger disparity) -> smaller depth


class AffinePerWindowPredictor:
    """Luminance under a different random affine per window: what stitching must undo."""

    name = "affine-test"

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def identity(self):
        return {"predictor": self.name, "model_id": "test", "weights_sha256": "0" * 64}

    def predict(self, frames):
        self.calls += 1
        a, b = self.rng.uniform(0.6, 1.2), self.rng.uniform(-0.1, 0.1)
        lum = frames.mean(axis=-1)  # stays inside (0, 1): no saturated pixels
        return ((lum * a + b) * 0.7 + 0.1).astype(np.float32)


def test_static_shot_has_the_same_scale_first_to_last_frame(tmp_path):
    # a static plate: every output frame must be the same although each window saw another affine
    plates = tmp_path / "static"
    plates.mkdir()
    yy, xx = np.mgrid[0:32, 0:48].astype(np.float32)
    rgb = np.stack([xx / 48, yy / 32, (xx + yy) / 80], axis=-1)
    for n in range(1, 41):
        OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION}, {"RGB": rgb}).write(str(plates / f"s.{n:04d}.exr"))
    predictor = AffinePerWindowPredictor()
    result = render_shot(plates / "s.####.exr", RenderOptions(out_dir=tmp_path / "o", mode="disparity",
                                                              resolution=32, window=9, overlap=4), predictor)
    assert predictor.calls == result.windows >= 7
    frames = [read_depth(p)[1][..., 0] for p in result.paths]
    assert max(np.abs(f - frames[0]).max() for f in frames) < 0.01


# -- bad input: exit 2, one line naming the problem, nothing left in the output folder ---------


def _assert_bad(capsys, source, out, *extra, match):
    code, _, err = render_cli(capsys, source, "-o", out, *extra, *FAST)
    lines = [l for l in err.strip().splitlines() if l.startswith("dvd-vfx: error")]
    assert code == 2, err
    assert lines and match in lines[-1], err
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_bad_sources_leave_nothing(tiny_weights_master, tmp_path, capsys, h264):
    out = tmp_path / "out"
    w = ["--weights", tiny_weights_master]
    _assert_bad(capsys, tmp_path / "missing.mov", out, *w, match="missing.mov")
    (tmp_path / "empty").mkdir()
    _assert_bad(capsys, tmp_path / "empty", out, *w, match="empty")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    _assert_bad(capsys, junk, out, *w, match="junk.mp4")
    audio = tmp_path / "audio.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", audio)
    _assert_bad(capsys, audio, out, *w, match="audio.m4a")
    _assert_bad(capsys, h264, out, *w, "--frames", "5-50", match="5-50")


def test_missing_frames_listed_or_held(tiny_weights_master, tmp_path, capsys):
    pattern = write_exr_sequence(tmp_path / "p", count=8)
    (tmp_path / "p" / "plate.1003.exr").unlink()
    (tmp_path / "p" / "plate.1004.exr").unlink()
    out = tmp_path / "out"
    _assert_bad(capsys, pattern, out, "--weights", tiny_weights_master, match="1003")
    code, _, err = render_cli(capsys, pattern, "-o", out, "--weights", tiny_weights_master, *FAST, "--hold-missing")
    assert code == 0, err
    assert len(list(out.iterdir())) == 8


def test_unwritable_output_and_bad_values(tiny_weights_master, h264, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _assert_bad(capsys, h264, blocker / "out", "--weights", tiny_weights_master, match=str(blocker))
    _assert_bad(capsys, h264, tmp_path / "o", "--weights", tiny_weights_master, "--near", "5", "--far", "1",
                match="near")
    code, _, err = render_cli(capsys, h264, "-o", tmp_path / "o2", "--weights", tiny_weights_master,
                              "--resolution", "48", "--window", "6")
    assert code == 2 and "4n+1" in err


def test_disk_full_while_writing_leaves_nothing(tiny_weights_master, h264, tmp_path, capsys, monkeypatch):
    import errno

    from dvd_vfx.passes import exr

    real = exr._write_exr
    count = {"n": 0}

    def failing(path, header, channels):
        count["n"] += 1
        if count["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, header, channels)

    monkeypatch.setattr(exr, "_write_exr", failing)
    out = tmp_path / "out"
    _assert_bad(capsys, h264, out, "--weights", tiny_weights_master, match="No space left")
    assert not out.exists()


def test_missing_weights_is_exit_3(h264, tmp_path, capsys):
    code, _, err = render_cli(capsys, h264, "-o", tmp_path / "o", "--weights", tmp_path / "none", *FAST)
    assert code == 3 and "does not exist" in err
    assert not (tmp_path / "o").exists()


def test_odd_plate_size(tiny_weights_master, tmp_path, capsys):
    src = tmp_path / "odd.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=18x10:rate=24", "-frames:v", 3, "-pix_fmt", "yuv444p", src)
    code, _, err = render_cli(capsys, src, "-o", tmp_path / "o", "--weights", tiny_weights_master, *FAST)
    assert code == 0, err
    spec, _ = read_depth(tmp_path / "o" / "odd.depth.0001.exr")
    assert (spec.width, spec.height) == (18, 10)


def test_info_prints_probe(h264, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["info", str(h264)])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "64" in out and "48" in out and "11" in out


def test_demo_runs_offline_with_the_tiny_model(tmp_path):
    env = {**os.environ, "DVD_VFX_WEIGHTS": str(tmp_path / "no-weights"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-m", "dvd_vfx.cli", "demo", "-o", str(tmp_path / "demo")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "MEANINGLESS" in res.stderr and "weights fetch" in res.stderr
    assert len(list((tmp_path / "demo").glob("dvd_demo.depth.*.exr"))) == 24


def test_invert_swaps_near_and_far(h264, tiny_weights_master, tmp_path):
    from dvd_vfx.model.predictor import DVDPredictor

    predictor = DVDPredictor(str(tiny_weights_master), device="cpu")
    common = dict(resolution=48, window=5, overlap=2, mode="disparity")
    plain = render_shot(h264, RenderOptions(out_dir=tmp_path / "a", **common), predictor)
    inverted = render_shot(h264, RenderOptions(out_dir=tmp_path / "b", invert=True, **common), predictor)
    a, b = read_depth(plain.paths[3])[1], read_depth(inverted.paths[3])[1]
    np.testing.assert_allclose(a + b, 1.0, atol=1e-6)
    assert read_pass_attributes(inverted.paths[3])["invert"] == 1


def test_no_clamp_keeps_the_tails_of_the_shot(h264, tiny_weights_master, tmp_path, capsys):
    """--no-clamp (disparity): the shot's 2% tails go below 0 / above 1; inside 0..1 nothing changes."""
    from dvd_vfx.model.predictor import DVDPredictor

    predictor = DVDPredictor(str(tiny_weights_master), device="cpu")
    common = dict(resolution=48, window=5, overlap=2, mode="disparity")
    clamped = render_shot(h264, RenderOptions(out_dir=tmp_path / "a", **common), predictor)
    raw = render_shot(h264, RenderOptions(out_dir=tmp_path / "b", clamp=False, **common), predictor)
    a = np.stack([read_depth(p)[1] for p in clamped.paths])
    b = np.stack([read_depth(p)[1] for p in raw.paths])
    assert b.min() < 0.0 and b.max() > 1.0 and 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(np.clip(b, 0.0, 1.0), a)
    assert read_pass_attributes(raw.paths[0])["clamp"] == 0
    code, _, err = render_cli(capsys, h264, "-o", tmp_path / "c", "--weights", tiny_weights_master,
                              "--no-clamp", "--resolution", 48, "--window", 5, "--overlap", 2)
    assert code == 2 and "--no-clamp applies to --mode disparity only" in err and not (tmp_path / "c").exists()


def test_cancel_stops_the_decoder_and_leaves_nothing(h264, tiny_weights_master, tmp_path):
    from dvd_vfx.errors import Cancelled

    predictor = AffinePerWindowPredictor()
    with pytest.raises(Cancelled) as exc_info:
        render_shot(h264, RenderOptions(out_dir=tmp_path / "o", resolution=48, window=5, overlap=2,
                                        upsample="guided"), predictor, should_cancel=lambda: predictor.calls >= 1)
    assert exc_info.value is not None  # the exception (and its traceback) is still alive here
    assert ffmpeg_children() == []
    assert not (tmp_path / "o").exists()


def test_unexpected_errors_are_one_line(monkeypatch, capsys):
    import dvd_vfx.cli as cli

    def broken(args):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setitem(cli._HANDLERS, "info", broken)
    with pytest.raises(SystemExit) as exc:
        main(["info", "x.mov"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 1 and len(err) == 1 and "RuntimeError: something broke" in err[0]


def test_uncached_windows_stay_on_the_output_disk_not_in_tmp(h264, tiny_weights_master, tmp_path, monkeypatch):
    """--no-cache: window predictions go to the pass's staging folder (/tmp is often RAM), then vanish."""
    import tempfile

    from dvd_vfx.cache import WindowStore
    from dvd_vfx.model.predictor import DVDPredictor

    tmp = tmp_path / "system-tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    seen = []
    put = WindowStore.put

    def spy_put(store, k, *args, **kwargs):  # (the store writes on a background thread, in window order)
        put(store, k, *args, **kwargs)
        seen.append(sorted(p.name for p in (tmp_path / "out").glob(".*/.windows/window.*.npy")))

    monkeypatch.setattr(WindowStore, "put", spy_put)
    result = render_shot(h264, RenderOptions(out_dir=tmp_path / "out", resolution=48, window=5, overlap=2),
                         DVDPredictor(str(tiny_weights_master), device="cpu"))
    assert seen == [[f"window.{k:05d}.npy" for k in range(n)] for n in range(1, result.windows + 1)]
    assert list(tmp.iterdir()) == []  # nothing in the system temp folder
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in result.paths]
