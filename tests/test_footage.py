"""Footage readers against real files: ffmpeg-encoded movies and images, OpenEXR sequences."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
from fractions import Fraction

import numpy as np
import pytest

from footage_helpers import (
    FPS_NTSC,
    bundled_ffmpeg,
    encode_raw,
    ffmpeg,
    ffmpeg_children,
    gradient16,
    srgb,
    make_testsrc,
    write_exr,
    write_exr_rgb,
)

from dvd_vfx.errors import InputError
from dvd_vfx.footage import Footage, FootageInfo, open_footage, parse_frame_range
from dvd_vfx.footage import ffmpeg_tools

LOGGER = "dvd_vfx.footage"


def raises_one_line(*needles: str):
    """Context manager: InputError whose message is one line and contains every needle."""

    class _Check:
        def __enter__(self):
            self.cm = pytest.raises(InputError)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.cm.__exit__(*exc)
            msg = str(self.info.value)
            assert "\n" not in msg, msg
            assert self.info.value.exit_code == 2
            for needle in needles:
                assert needle in msg, f"{needle!r} not in {msg!r}"
            return handled

    return _Check()


@pytest.fixture(autouse=True)
def _real_ffprobe(monkeypatch):
    """Tests start from the normal binaries unless they choose otherwise."""
    monkeypatch.delenv("DVD_VFX_FFPROBE", raising=False)
    monkeypatch.delenv("DVD_VFX_FFMPEG", raising=False)


@pytest.fixture(params=["zscale", "swscale"])
def scaler(request, monkeypatch):
    """Run a test through both conversion paths (zimg's zscale and swscale's scale)."""
    if request.param == "zscale" and not ffmpeg_tools.use_zscale(ffmpeg_tools.find_ffmpeg()):
        pytest.skip("this ffmpeg has no zscale filter")
    monkeypatch.setenv("DVD_VFX_SCALER", request.param)
    return request.param


@pytest.fixture(params=["ffprobe", "ffmpeg-only"])
def probe_mode(request, monkeypatch):
    """Run a test with ffprobe and with the ffprobe-free fallback."""
    if request.param == "ffmpeg-only":
        monkeypatch.setattr(ffmpeg_tools, "find_ffprobe", lambda: None)
    return request.param


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Tiny movies shared by the tests (made once per module)."""
    d = tmp_path_factory.mktemp("media")
    m = {}
    m["h264"] = make_testsrc(d / "clip.mp4", frames=12)
    m["prores"] = encode_raw(
        d / "grad.mov", gradient16(frames=4), pix_fmt_in="rgb48le",
        out_args=("-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le"), rate="25",
    )
    m["mkv"] = make_testsrc(d / "clip.mkv", frames=7)  # Matroska: no nb_frames, packets are counted
    return m


@pytest.fixture(scope="module")
def rotated(tmp_path_factory, media):
    d = tmp_path_factory.mktemp("rot")
    out = d / "rot.mp4"
    try:  # ffmpeg >= 6: -display_rotation (counter-clockwise degrees)
        ffmpeg("-display_rotation", "90", "-i", str(media["h264"]), "-c", "copy", str(out))
    except RuntimeError:  # ffmpeg 5: the rotate tag
        ffmpeg("-i", str(media["h264"]), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(out))
    return out


# ---------------------------------------------------------------------------------------------
# movies


def test_h264_probe(media):
    footage = open_footage(media["h264"])
    info = footage.info
    assert isinstance(footage, Footage) and isinstance(info, FootageInfo)
    assert info.kind == "video"
    assert info.path == str(media["h264"])
    assert info.fps == Fraction(24000, 1001) and isinstance(info.fps, Fraction)
    assert (info.width, info.height) == (64, 48)
    assert info.frame_count == 12 and info.frame_numbers == tuple(range(1, 13))
    assert (info.first_frame, info.last_frame) == (1, 12)
    assert info.pixel_format == "yuv420p" and info.bit_depth == 8 and info.codec == "h264"
    assert info.pixel_aspect == 1 and info.rotation == 0 and info.colorspace == "display"
    assert info.data_window is None and info.display_window is None
    text = info.describe()
    assert "24000/1001" in text and "64x48" in text and "1-12" in text and "h264" in text


def test_h264_streams_at_working_size(media):
    frames = list(open_footage(media["h264"]).read(size=(32, 16)))
    assert [n for n, _ in frames] == list(range(1, 13))
    for _, rgb in frames:
        assert rgb.shape == (16, 32, 3) and rgb.dtype == np.float32
        assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert frames[0][1].std() > 0.1  # a real picture, not a flat frame
    assert not np.array_equal(frames[0][1], frames[5][1])  # testsrc2 moves


def test_frame_range_is_exact_and_start_frame_numbers(media):
    full = list(open_footage(media["h264"]).read(size=(32, 24)))
    footage = open_footage(media["h264"], start_frame=1001)
    assert footage.info.frame_numbers == tuple(range(1001, 1013))
    part = list(footage.read(size=(32, 24), frames=(1004, 1007)))
    assert [n for n, _ in part] == [1004, 1005, 1006, 1007]
    for (_, got), (_, want) in zip(part, full[3:7]):
        assert np.array_equal(got, want)
    last = footage.read_frame(1012, size=(32, 24))
    assert np.array_equal(last, full[11][1])


def test_frame_range_outside_source(media):
    footage = open_footage(media["h264"], start_frame=1001)
    with raises_one_line("1-5", "1001-1012", str(media["h264"])):
        footage.read(frames=(1, 5))
    with raises_one_line("1001-1012"):
        footage.read(frames=(1010, 1013))
    with raises_one_line("empty"):
        footage.read(frames=(1005, 1004))
    with raises_one_line("working size"):
        footage.read(size=(0, 10))


def test_parse_frame_range():
    assert parse_frame_range("1001-1100") == (1001, 1100)
    assert parse_frame_range("12") == (12, 12)
    assert parse_frame_range(" 5 - 9 ") == (5, 9)
    assert parse_frame_range("-3--1") == (-3, -1)
    for junk in ("", "abc", "1-2-3", "10-5", "1.5"):
        with raises_one_line(repr(junk)):
            parse_frame_range(junk)


def test_prores_10bit_keeps_precision(media, scaler):
    footage = open_footage(media["prores"])
    info = footage.info
    assert info.codec == "prores" and info.pixel_format == "yuv422p10le" and info.bit_depth == 10
    assert info.fps == 25 and info.frame_count == 4
    rgb = footage.read_frame(2)
    assert rgb.shape == (48, 64, 3)
    levels = np.unique(np.round(rgb[..., 1] * 65535))
    assert len(levels) > 256, len(levels)  # an 8-bit path would give at most 256
    ramp = gradient16()[0, ..., 1] / 65535.0
    assert np.abs(rgb[..., 1] - ramp).mean() < 0.01


def test_rotation_applied_and_reported(media, rotated):
    plain = open_footage(media["h264"]).read_frame(1)
    footage = open_footage(rotated)
    info = footage.info
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (48, 64)
    rgb = footage.read_frame(1)
    assert rgb.shape == (64, 48, 3)
    # rotation is clockwise degrees: 90 -> np.rot90(k=-1)
    expected = np.rot90(plain, k=-1 if info.rotation == 90 else 1)
    wrong = np.rot90(plain, k=1 if info.rotation == 90 else -1)
    assert np.abs(rgb - expected).mean() < 0.05  # chroma siting differs a little once rotated
    assert np.abs(rgb - wrong).mean() > 3 * np.abs(rgb - expected).mean()


@pytest.mark.parametrize("tagged", [True, False])
def test_colour_matrix_from_stream_tags(tmp_path, tagged, scaler):
    rgb = np.zeros((1, 16, 16, 3), np.uint8)
    rgb[:] = (200, 50, 30)
    matrix = "bt709" if tagged else "bt601"
    tags = ("-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv") if tagged else ()
    path = encode_raw(
        tmp_path / "solid.mp4", rgb, pix_fmt_in="rgb24",
        out_args=("-vf", f"scale=out_color_matrix={matrix}:out_range=tv", "-c:v", "libx264", "-qp", "0",
                  "-pix_fmt", "yuv444p", *tags),
    )
    footage = open_footage(path)
    assert footage.info.color_matrix == matrix
    got = footage.read_frame(1)[8, 8] * 255
    assert np.abs(got - (200, 50, 30)).max() < 2.0, got  # decoding bt709 as bt601 is ~15 levels off


def _yuv444_frames(levels_8bit: list[int]) -> np.ndarray:
    """Raw yuv444p frames (planar Y, Cb, Cr) of flat grey Y levels with neutral chroma."""
    frames = []
    for y in levels_8bit:
        planes = np.empty((3, 8, 8), np.uint8)
        planes[0], planes[1:] = y, 128
        frames.append(planes)
    return np.stack(frames)


@pytest.mark.parametrize("full_range", [False, True])
def test_black_and_white_levels_are_exact(tmp_path, scaler, full_range):
    """Code-value black/white of 8-bit YCbCr, 8-bit RGB and 10-bit RGB come out as 0.0 / 1.0."""
    tol = 1e-5 if scaler == "zscale" else 2e-3
    lo, hi = (0, 255) if full_range else (16, 235)
    mid = 126  # any level in between
    yuv = _yuv444_frames([lo, mid, hi])
    tags = ("-color_range", "pc" if full_range else "tv")
    path = encode_raw(tmp_path / "levels.mkv", yuv, pix_fmt_in="yuv444p", size=(8, 8),
                      extra_in=("-color_range", "pc" if full_range else "tv"),
                      out_args=("-c:v", "ffv1", "-pix_fmt", "yuv444p", *tags))
    footage = open_footage(path)
    assert footage.info.color_range == ("pc" if full_range else "tv")
    got = [float(rgb.mean()) for _, rgb in footage.read(size=(4, 4))]
    want_mid = (mid - lo) / (hi - lo)
    assert got == pytest.approx([0.0, want_mid, 1.0], abs=tol)
    if full_range:
        return
    rgb8 = np.zeros((2, 8, 8, 3), np.uint8)
    rgb8[1] = 255
    encode_raw(tmp_path / "w8.%04d.png", rgb8, pix_fmt_in="rgb24", out_args=("-pix_fmt", "rgb24"))
    rgb10 = np.zeros((2, 8, 8, 3), np.uint16)
    rgb10[1] = 65535
    encode_raw(tmp_path / "w10.%04d.dpx", rgb10, pix_fmt_in="rgb48le", out_args=("-pix_fmt", "gbrp10le"))
    for pattern in ("w8.####.png", "w10.####.dpx"):
        footage = open_footage(tmp_path / pattern)
        for size in (None, (4, 4)):  # swscale has separate unscaled and scaled code paths
            means = [float(rgb.mean()) for _, rgb in footage.read(size=size)]
            assert means == pytest.approx([0.0, 1.0], abs=tol), (pattern, size)


def test_early_close_kills_ffmpeg(media):
    assert sys.platform.startswith("linux")
    it = open_footage(media["h264"]).read()
    n, _ = next(it)
    assert n == 1
    assert ffmpeg_children(), "ffmpeg should be streaming"
    it.close()
    assert ffmpeg_children() == []


def test_odd_size_video(tmp_path, scaler):
    pixels = np.random.default_rng(3).integers(0, 256, (3, 9, 17, 3), dtype=np.uint8)
    path = encode_raw(tmp_path / "odd.mkv", pixels, pix_fmt_in="rgb24", out_args=("-c:v", "ffv1", "-pix_fmt", "bgr0"))
    footage = open_footage(path)
    assert (footage.info.width, footage.info.height) == (17, 9)
    assert footage.info.frame_count == 3 and footage.info.color_matrix is None  # RGB codec
    tol = 0.01 if scaler == "zscale" else 0.6  # lossless codec; swscale rounds to 8.8 fixed point
    np.testing.assert_allclose(footage.read_frame(2) * 255, pixels[1], atol=tol)
    assert footage.read_frame(3, size=(16, 16)).shape == (16, 16, 3)


def _infos_without_and_with_ffprobe(monkeypatch, sources, **kwargs):
    with_probe = [open_footage(s, **kwargs).info for s in sources]
    monkeypatch.setenv("DVD_VFX_FFPROBE", "no-such-ffprobe-binary")
    assert ffmpeg_tools.find_ffprobe() is None
    without = [open_footage(s, **kwargs).info for s in sources]
    return with_probe, without


def test_no_ffprobe_fallback_same_probe(monkeypatch, media, rotated, tmp_path):
    encode_raw(tmp_path / "f.%04d.png", gradient16(frames=2), pix_fmt_in="rgb48le", out_args=("-pix_fmt", "rgb48be"))
    sources = [media["h264"], media["prores"], media["mkv"], rotated, tmp_path / "f.####.png"]
    with_probe, without = _infos_without_and_with_ffprobe(monkeypatch, sources)
    for a, b in zip(with_probe, without):
        assert dataclasses.asdict(a) == dataclasses.asdict(b)
    assert without[0].fps == FPS_NTSC and without[1].fps == 25 and without[2].frame_count == 7
    # frames decode the same way
    a = open_footage(media["h264"]).read_frame(3, size=(32, 24))
    monkeypatch.delenv("DVD_VFX_FFPROBE")
    b = open_footage(media["h264"]).read_frame(3, size=(32, 24))
    assert np.array_equal(a, b)


def test_pip_only_install_bundled_ffmpeg_without_ffprobe(monkeypatch, media):
    """imageio-ffmpeg ships ffmpeg but no ffprobe: the probe must still be exact."""
    exe = bundled_ffmpeg()
    if exe is None:
        pytest.skip("imageio-ffmpeg not installed")
    expected = open_footage(media["h264"]).info
    ref = open_footage(media["h264"]).read_frame(2, size=(32, 24))
    monkeypatch.setattr(ffmpeg_tools, "find_ffprobe", lambda: None)
    monkeypatch.setenv("DVD_VFX_FFMPEG", exe)
    footage = open_footage(media["h264"])
    assert footage.info == expected
    got = footage.read_frame(2, size=(32, 24))
    assert np.abs(got - ref).max() < 3 / 255  # another ffmpeg build, same pixels (within rounding)


def test_bad_ffmpeg_env(monkeypatch, media):
    monkeypatch.setenv("DVD_VFX_FFMPEG", "/nonexistent/ffmpeg")
    with raises_one_line("DVD_VFX_FFMPEG=/nonexistent/ffmpeg"):
        open_footage(media["h264"])


def test_fps_override(media):
    assert open_footage(media["h264"], fps=Fraction(24)).info.fps == 24
    assert open_footage(media["h264"], fps="30000/1001").info.fps == Fraction(30000, 1001)
    assert open_footage(media["h264"], fps=23.976).info.fps == FPS_NTSC
    with raises_one_line("fps"):
        open_footage(media["h264"], fps=0)


# ---------------------------------------------------------------------------------------------
# bad movies


def test_missing_path(tmp_path):
    with raises_one_line("footage not found", "nope.mov"):
        open_footage(tmp_path / "nope.mov")
    with raises_one_line("does not exist", "no_dir"):
        open_footage(tmp_path / "no_dir" / "shot.####.exr")


def test_random_bytes_and_text_files(tmp_path, probe_mode):
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(1).bytes(3000))
    (tmp_path / "notes.txt").write_text("hello, this is not a video\n")
    (tmp_path / "text.mov").write_text("hello, this is not a video either\n")
    for name in ("junk.mp4", "notes.txt", "text.mov"):
        with raises_one_line(name, "not a video"):
            open_footage(tmp_path / name)


def test_truncated_movies(tmp_path, media, probe_mode):
    data = media["prores"].read_bytes()
    cut = tmp_path / "cut.mov"
    cut.write_bytes(data[: len(data) // 2])  # moov atom at the end is gone
    with raises_one_line("cut.mov"):
        open_footage(cut)
    whole = make_testsrc(tmp_path / "fs.mp4", rate="24", frames=30, extra=("-g", "5", "-movflags", "+faststart"))
    data = whole.read_bytes()
    cut = tmp_path / "fs_cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])  # index intact, media data short
    footage = open_footage(cut)
    if probe_mode == "ffmpeg-only":
        # packets are counted, so only what is really in the file is announced
        assert 0 < footage.info.frame_count < 30
        assert len(list(footage.read(size=(16, 16)))) == footage.info.frame_count
        return
    assert footage.info.frame_count == 30  # ffprobe trusts the index (no full-file pass)
    got = []
    with raises_one_line("fs_cut.mp4", "truncated", "up to 30"):
        for n, _ in footage.read(size=(16, 16)):
            got.append(n)
    assert got and got == list(range(1, len(got) + 1))


def test_audio_only(tmp_path, monkeypatch):
    path = tmp_path / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.2", "-c:a", "aac", str(path))
    with raises_one_line("tone.m4a", "no video stream", "audio aac"):
        open_footage(path)
    monkeypatch.setenv("DVD_VFX_FFPROBE", "none")  # the ffmpeg-only probe says the same
    with raises_one_line("tone.m4a", "no video stream", "audio aac"):
        open_footage(path)


def test_no_decodable_frames(tmp_path, probe_mode):
    # every IDR slice removed: the file has packets but the decoder never outputs a picture
    path = make_testsrc(tmp_path / "noidr.mp4", rate="24", frames=5, extra=("-bsf:v", "filter_units=remove_types=5"))
    with raises_one_line("noidr.mp4", "no decodable video frames"):
        open_footage(path)


def test_empty_video_stream(tmp_path, probe_mode):
    path = make_testsrc(tmp_path / "zero.mp4", frames=0)
    with raises_one_line("zero.mp4"):
        open_footage(path)


# ---------------------------------------------------------------------------------------------
# EXR sequences

LINEAR = np.array([0.0, 0.001, 0.0031308, 0.01, 0.18, 0.5, 1.0, 4.0], np.float32)


@pytest.fixture
def exr_seq(tmp_path):
    d = tmp_path / "plates"
    d.mkdir()
    rows = []
    for i, n in enumerate((1001, 1002, 1003)):
        row = LINEAR * (1.0 if i == 0 else 0.5 * i)
        img = np.stack([np.tile(row, (4, 1)), np.tile(row, (4, 1)) * 0.5, np.tile(row, (4, 1)) * 0.25], axis=2)
        write_exr_rgb(d / f"sh010.{n}.exr", img.astype(np.float16), framesPerSecond=Fraction(25))
        rows.append(img.astype(np.float16).astype(np.float64))
    return d, rows


def test_exr_sequence_linear_to_srgb(exr_seq):
    d, rows = exr_seq
    footage = open_footage(d / "sh010.####.exr")
    info = footage.info
    assert info.kind == "sequence" and info.path == str(d / "sh010.%04d.exr")
    assert info.frame_numbers == (1001, 1002, 1003)
    assert (info.width, info.height) == (8, 4)
    assert info.pixel_format == "half" and info.bit_depth == 16 and info.codec == "exr"
    assert info.colorspace == "linear" and info.fps == 25
    assert info.data_window == info.display_window == (0, 0, 7, 3)
    frames = list(footage.read())
    assert [n for n, _ in frames] == [1001, 1002, 1003]
    for (_, rgb), src in zip(frames, rows):
        assert rgb.dtype == np.float32 and rgb.shape == (4, 8, 3)
        np.testing.assert_allclose(rgb, srgb(src), atol=2e-6)
    first = frames[0][1][0, :, 0]
    assert first[4] == pytest.approx(0.46142, abs=1e-5)  # 18% grey (as half: 0.18005)
    assert first[6] == 1.0 and first[7] == 1.0  # white and over-range clip to exactly 1
    # the same plate taken as display-referred: values pass through, clipped
    raw = open_footage(d / "sh010.####.exr", colorspace="display", fps=24).read_frame(1001)
    np.testing.assert_allclose(raw, np.clip(rows[0], 0, 1), atol=1e-6)


@pytest.mark.parametrize(
    "spelling, frames",
    [
        ("sh010.####.exr", (1001, 1003)),
        ("sh010.%04d.exr", (1001, 1003)),
        ("sh010.#.exr", (1001, 1003)),
        ("sh010.@@@@.exr", (1001, 1003)),
        ("sh010.$F4.exr", (1001, 1003)),
        ("sh010.1001-1002#.exr", (1001, 1002)),
        ("sh010.1002-1003####.exr", (1002, 1003)),
        ("sh010.%04d.exr 1002-1003", (1002, 1003)),
    ],
)
def test_sequence_spellings(exr_seq, spelling, frames):
    d, _ = exr_seq
    info = open_footage(f"{d}/{spelling}").info
    assert (info.first_frame, info.last_frame) == frames
    assert info.path == str(d / "sh010.%04d.exr")


def test_folder_and_single_frame_sources(exr_seq, tmp_path, caplog):
    d, rows = exr_seq
    assert open_footage(d).info.frame_numbers == (1001, 1002, 1003)
    single = open_footage(d / "sh010.1002.exr")  # one numbered file = just that frame
    assert single.info.frame_numbers == (1002,) and single.info.path == str(d / "sh010.1002.exr")
    np.testing.assert_allclose(single.read_frame(1002), srgb(rows[1]), atol=2e-6)
    plain = tmp_path / "plate.exr"
    shutil.copy(d / "sh010.1001.exr", plain)
    assert open_footage(plain).info.frame_numbers == (1,)
    assert open_footage(plain, start_frame=101).info.frame_numbers == (101,)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert open_footage(d, start_frame=1).info.first_frame == 1001
    assert "start_frame 1 ignored" in caplog.text


def test_exr_data_window(tmp_path):
    inner = np.ones((2, 3), np.float16)
    path = write_exr(tmp_path / "dw.0001.exr", {"R": inner, "G": inner * 0.5, "B": inner * 0},
                     dataWindow=((2, 1), (4, 2)), displayWindow=((0, 0), (7, 5)))
    footage = open_footage(path)
    info = footage.info
    assert (info.width, info.height) == (8, 6)
    assert info.data_window == (2, 1, 4, 2) and info.display_window == (0, 0, 7, 5)
    assert "data 2,1-4,2" in info.describe()
    rgb = footage.read_frame(1)
    assert rgb.shape == (6, 8, 3)
    mask = np.zeros((6, 8), bool)
    mask[1:3, 2:5] = True
    assert np.all(rgb[mask, 0] == 1.0) and np.all(rgb[~mask] == 0.0)
    np.testing.assert_allclose(rgb[mask, 1], srgb(0.5), atol=1e-6)
    # overscan: a data window larger than the display window is cropped to it
    big = np.full((10, 12), 0.18, np.float16)
    path = write_exr(tmp_path / "over.0001.exr", {"R": big, "G": big, "B": big},
                     dataWindow=((-2, -2), (9, 7)), displayWindow=((0, 0), (7, 5)))
    rgb = open_footage(path).read_frame(1)
    assert rgb.shape == (6, 8, 3)
    np.testing.assert_allclose(rgb, srgb(np.float16(0.18)), atol=1e-6)


def test_exr_float_luminance_and_layers(tmp_path):
    y = np.full((4, 6), 0.18, np.float32)
    footage = open_footage(write_exr(tmp_path / "lum.exr", {"Y": y}))
    assert footage.info.pixel_format.startswith("float") and footage.info.bit_depth == 32
    rgb = footage.read_frame(1)
    assert rgb.shape == (4, 6, 3)
    np.testing.assert_allclose(rgb, srgb(0.18), atol=1e-6)
    layer = {"beauty.R": y, "beauty.G": y * 0, "beauty.B": y * 0, "depth.Z": y}
    rgb = open_footage(write_exr(tmp_path / "layer.exr", layer)).read_frame(1)
    np.testing.assert_allclose(rgb[..., 0], srgb(0.18), atol=1e-6)
    assert np.all(rgb[..., 1:] == 0)


def test_exr_tiled_rgba_and_multipart(tmp_path):
    import OpenEXR

    plate = np.random.default_rng(4).random((20, 30)).astype(np.float16)
    tiles = OpenEXR.TileDescription()
    tiles.xSize, tiles.ySize, tiles.mode = 16, 16, OpenEXR.ONE_LEVEL
    path = write_exr(tmp_path / "tiled.exr", {"R": plate, "G": plate, "B": plate, "A": plate * 0},
                     type=OpenEXR.tiledimage, tiles=tiles, compression=OpenEXR.PIZ_COMPRESSION)
    np.testing.assert_allclose(open_footage(path).read_frame(1)[..., 1], srgb(plate), atol=2e-6)
    parts = [  # RGB in the second part: the first part with a picture is used
        OpenEXR.Part({"type": OpenEXR.scanlineimage}, {"Z": plate.astype(np.float32)}, "depth"),
        OpenEXR.Part({"type": OpenEXR.scanlineimage}, {"R": plate, "G": plate * 0, "B": plate * 0}, "rgba"),
    ]
    OpenEXR.File(parts).write(str(tmp_path / "multi.exr"))
    rgb = open_footage(tmp_path / "multi.exr").read_frame(1)
    np.testing.assert_allclose(rgb[..., 0], srgb(plate), atol=2e-6)
    assert np.all(rgb[..., 1:] == 0)


def test_exr_resize_is_area_average_in_linear_light(tmp_path):
    checker = np.indices((8, 16)).sum(axis=0) % 2  # 0/1 checkerboard
    plate = np.repeat(checker[:, :, None], 3, axis=2).astype(np.float16)
    footage = open_footage(write_exr_rgb(tmp_path / "chk.exr", plate))
    small = footage.read_frame(1, size=(4, 2))
    assert small.shape == (2, 4, 3)
    np.testing.assert_allclose(small, srgb(0.5), atol=1e-4)  # average in linear, then encode
    big = footage.read_frame(1, size=(32, 16))  # enlarging works too (bicubic, clipped)
    assert big.shape == (16, 32, 3) and big.min() >= 0 and big.max() <= 1


def test_exr_odd_size(tmp_path):
    plate = np.random.default_rng(0).random((9, 17, 3)).astype(np.float16)
    footage = open_footage(write_exr_rgb(tmp_path / "odd.exr", plate))
    assert (footage.info.width, footage.info.height) == (17, 9)
    np.testing.assert_allclose(footage.read_frame(1), srgb(plate.astype(np.float64)), atol=2e-6)
    assert footage.read_frame(1, size=(8, 4)).shape == (4, 8, 3)


def test_huge_exr_frame_bounded_memory(tmp_path):
    import OpenEXR
    import tracemalloc

    h, w = 4320, 8192
    ramp = np.linspace(0, 1, w, dtype=np.float16)[None, :].repeat(h, axis=0)
    path = write_exr(tmp_path / "big.exr", {"R": ramp, "G": ramp, "B": ramp},
                     compression=OpenEXR.ZIP_COMPRESSION)
    del ramp
    footage = open_footage(path)
    assert (footage.info.width, footage.info.height) == (8192, 4320)
    tracemalloc.start()
    try:
        rgb = footage.read_frame(1, size=(832, 448))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rgb.shape == (448, 832, 3)
    np.testing.assert_allclose(rgb[0, :, 0], srgb((np.arange(832) + 0.5) / 832), atol=0.01)
    half_plate = h * w * 3 * 2
    # one frame's half channels + one float32 plane; a float32 RGB copy would add 425 MB
    assert peak < half_plate + h * w * 4 + 50e6, peak / 1e6


# ---------------------------------------------------------------------------------------------
# integer image sequences (ffmpeg image2)


def test_png16_sequence_keeps_16_bits(tmp_path):
    pixels = gradient16(frames=3)
    pixels[1] = 65535 - pixels[1]
    encode_raw(tmp_path / "g.%04d.png", pixels, pix_fmt_in="rgb48le", out_args=("-pix_fmt", "rgb48be", "-start_number", "7"))
    footage = open_footage(tmp_path / "g.####.png")
    info = footage.info
    assert info.frame_numbers == (7, 8, 9) and info.bit_depth == 16 and info.codec == "png"
    assert info.colorspace == "display" and info.fps == 24
    frames = list(footage.read())
    assert [n for n, _ in frames] == [7, 8, 9]
    for (_, rgb), src in zip(frames, pixels):
        np.testing.assert_allclose(rgb, src / 65535.0, atol=0.6 / 65535)
    small = list(footage.read(size=(16, 12), frames=(8, 9)))
    assert [n for n, _ in small] == [8, 9] and small[0][1].shape == (12, 16, 3)


def test_jpeg_and_tiff_sequences(tmp_path):
    pixels = gradient16(frames=2)
    encode_raw(tmp_path / "j.%04d.jpg", (pixels >> 8).astype(np.uint8), pix_fmt_in="rgb24",
               out_args=("-q:v", "1", "-start_number", "11"))
    footage = open_footage(tmp_path / "j.%04d.jpg")
    assert footage.info.frame_numbers == (11, 12) and footage.info.codec == "mjpeg"
    assert footage.info.bit_depth == 8
    np.testing.assert_allclose(footage.read_frame(12), pixels[1] / 65535.0, atol=0.03)  # lossy
    encode_raw(tmp_path / "t.%04d.tif", pixels, pix_fmt_in="rgb48le", out_args=("-pix_fmt", "rgb48le"))
    footage = open_footage(tmp_path / "t.####.tif")
    assert footage.info.codec == "tiff" and footage.info.bit_depth == 16
    np.testing.assert_allclose(footage.read_frame(2), pixels[1] / 65535.0, atol=1e-5)


def test_dpx_10bit_sequence(tmp_path, scaler):
    pixels = gradient16(frames=3)
    encode_raw(tmp_path / "scan.%04d.dpx", pixels, pix_fmt_in="rgb48le",
               out_args=("-pix_fmt", "gbrp10le", "-start_number", "1001"))
    footage = open_footage(tmp_path / "scan.%04d.dpx")
    info = footage.info
    assert info.frame_numbers == (1001, 1002, 1003)
    assert info.codec == "dpx" and info.bit_depth == 10 and (info.width, info.height) == (64, 48)
    rgb = footage.read_frame(1002)
    np.testing.assert_allclose(rgb, pixels[0] / 65535.0, atol=1.01 / 1023)
    assert len(np.unique(rgb[..., 0])) > 256


def test_png_missing_frames_and_hold(tmp_path, caplog):
    pixels = (np.arange(6)[:, None, None, None] * 40 + np.zeros((6, 8, 8, 3))).astype(np.uint16) * 257
    encode_raw(tmp_path / "h.%04d.png", pixels, pix_fmt_in="rgb48le", out_args=("-pix_fmt", "rgb48be", "-start_number", "1001"))
    for n in (1002, 1004, 1005):
        (tmp_path / f"h.{n}.png").unlink()
    pattern = tmp_path / "h.####.png"
    with raises_one_line("missing frames 1002, 1004-1005", str(tmp_path / "h.%04d.png"), "--hold-missing"):
        open_footage(pattern)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        footage = open_footage(pattern, hold_missing=True)
    assert "1002, 1004-1005" in caplog.text
    assert footage.info.frame_numbers == tuple(range(1001, 1007))
    assert footage.info.held_frames == (1002, 1004, 1005)
    values = {n: round(float(rgb[0, 0, 0]) * 255) for n, rgb in footage.read()}
    assert values == {1001: 0, 1002: 0, 1003: 80, 1004: 80, 1005: 80, 1006: 200}
    # a held frame at the start of a range comes from the previous file on disk
    part = dict(footage.read(frames=(1004, 1006)))
    assert round(float(part[1004][0, 0, 0]) * 255) == 80
    # a range in the name that starts before the first file: the next frame is used
    footage = open_footage(tmp_path / "h.1000-1001#.png", hold_missing=True)
    assert [round(float(r[0, 0, 0]) * 255) for _, r in footage.read()] == [0, 0]


def test_exr_missing_frames_and_hold(exr_seq):
    d, rows = exr_seq
    (d / "sh010.1002.exr").unlink()
    with raises_one_line("missing frames 1002"):
        open_footage(d / "sh010.####.exr")
    frames = dict(open_footage(d / "sh010.####.exr", hold_missing=True).read())
    assert np.array_equal(frames[1002], frames[1001])
    np.testing.assert_allclose(frames[1003], srgb(rows[2]), atol=2e-6)


def test_mixed_sizes(tmp_path, exr_seq):
    encode_raw(tmp_path / "m.%04d.png", gradient16(frames=2), pix_fmt_in="rgb48le", out_args=("-pix_fmt", "rgb48be"))
    encode_raw(tmp_path / "m.%04d.png", gradient16(32, 24, frames=1), pix_fmt_in="rgb48le",
               out_args=("-pix_fmt", "rgb48be", "-start_number", "3"))
    with raises_one_line("frame 3", "m.0003.png", "32x24", "64x48"):
        open_footage(tmp_path / "m.####.png")
    # detected at read time too, naming the frame (a frame replaced after opening)
    (tmp_path / "m.0003.png").unlink()
    footage = open_footage(tmp_path / "m.####.png")
    shutil.copy(tmp_path / "m.0001.png", tmp_path / "keep.png")
    encode_raw(tmp_path / "m.%04d.png", gradient16(32, 24, frames=1), pix_fmt_in="rgb48le",
               out_args=("-pix_fmt", "rgb48be", "-start_number", "2"))
    with raises_one_line("frame 2", "32x24"):
        list(footage.read())
    # EXR: display windows differ, found when opening and (if changed later) when reading
    d, _ = exr_seq
    footage = open_footage(d / "sh010.####.exr")
    write_exr_rgb(d / "sh010.1003.exr", np.zeros((6, 8, 3), np.float16))
    with raises_one_line("frame 1003", "8x6", "8x4"):
        open_footage(d / "sh010.####.exr")
    with raises_one_line("frame 1003", "8x6", "8x4"):
        list(footage.read())


def test_exr_without_rgb_names_channels(tmp_path):
    z = np.ones((4, 4), np.float32)
    write_exr(tmp_path / "depth.0001.exr", {"Z": z, "depth.Z": z})
    with raises_one_line("depth.0001.exr", "found: Z, depth.Z"):
        open_footage(tmp_path / "depth.0001.exr")


def test_nan_inf_negative_sanitised_with_warning(tmp_path, caplog):
    bad = np.array([[np.nan, np.inf, -np.inf, -1.0, 0.18, 0.5]], np.float32)
    write_exr(tmp_path / "bad.0042.exr", {"R": bad, "G": bad, "B": bad})
    footage = open_footage(tmp_path / "bad.0042.exr")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        rgb = footage.read_frame(42)
    np.testing.assert_allclose(rgb[0, :, 0], [0, 1, 0, 0, srgb(0.18), srgb(0.5)], atol=1e-6)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "frame 42" in warnings[0].getMessage()
    assert "NaN" in warnings[0].getMessage() and "Inf" in warnings[0].getMessage()


def test_damaged_exr(tmp_path, exr_seq):
    (tmp_path / "junk.0001.exr").write_bytes(b"not an exr at all")
    with raises_one_line("junk.0001.exr", "OpenEXR"):
        open_footage(tmp_path / "junk.0001.exr")
    d, _ = exr_seq
    noise = np.random.default_rng(2).random((64, 64, 3)).astype(np.float16)
    whole = write_exr_rgb(tmp_path / "cut.0001.exr", noise).read_bytes()
    (tmp_path / "cut.0001.exr").write_bytes(whole[: len(whole) // 2])
    footage = open_footage(tmp_path / "cut.0001.exr")  # the header is intact
    with raises_one_line("frame 1", "cut.0001.exr"):
        footage.read_frame(1)


# ---------------------------------------------------------------------------------------------
# folders and other bad input


def test_folder_errors(tmp_path, exr_seq):
    empty = tmp_path / "empty"
    empty.mkdir()
    with raises_one_line("no numbered image frames", "empty"):
        open_footage(empty)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    (other / "._sh.0001.exr").write_bytes(b"mac resource fork")  # hidden: ignored
    with raises_one_line("notes.txt"):
        open_footage(other)
    d, _ = exr_seq
    encode_raw(d / "ref.%04d.png", gradient16(8, 8, frames=2), pix_fmt_in="rgb48le", out_args=("-pix_fmt", "rgb48be"))
    with raises_one_line("2 image sequences", "sh010.%04d.exr (1001-1003", "ref.%04d.png (1-2"):
        open_footage(d)
    with raises_one_line("no frames match", "sh011.%04d.exr", "sh010.%04d.exr"):
        open_footage(d / "sh011.####.exr")
    with raises_one_line("no frames of", "2000-2010"):
        open_footage(d / "sh010.2000-2010#.exr")


def test_option_errors(media, monkeypatch):
    with raises_one_line("colorspace 'rec2020'"):
        open_footage(media["h264"], colorspace="rec2020")
    with raises_one_line("no footage given"):
        open_footage("")


def test_ocio_unavailable_is_one_line_error(media, monkeypatch):
    monkeypatch.setitem(sys.modules, "PyOpenColorIO", None)  # as if not installed
    with raises_one_line("ocio_colorspace 'ACEScg'", "opencolorio"):
        open_footage(media["h264"], ocio_colorspace="ACEScg")


def test_ocio_conversion(tmp_path, monkeypatch):
    OCIO = pytest.importorskip("PyOpenColorIO")
    monkeypatch.setenv("OCIO", "ocio://default")
    plate = np.full((4, 4, 3), 0.18, np.float16)
    path = write_exr_rgb(tmp_path / "aces.exr", plate)
    with raises_one_line("not in the config"):
        open_footage(path, ocio_colorspace="No Such Space")
    config = OCIO.Config.CreateFromEnv()
    name = config.getColorSpace("ACEScg").getName() if config.getColorSpace("ACEScg") else config.getColorSpaceNames()[0]
    footage = open_footage(path, ocio_colorspace=name)
    assert footage.info.ocio_colorspace == name
    rgb = footage.read_frame(1)
    assert rgb.shape == (4, 4, 3) and 0.05 < rgb.mean() < 0.95


def test_footage_imports_without_torch():
    import subprocess

    code = "import sys, dvd_vfx.footage; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------------------------
# engine-hardening "Footage" defects found on real footage


def _levels_sequence(folder, name, ext, pix_fmt, count=20, first=1001, size=(32, 24)):
    """count frames name.####.ext, frame i a flat grey of 8-bit level 10*i (16-bit: same level * 257)."""
    w, h = size
    levels = (np.arange(count) * 10 + 10).astype(np.uint16)
    pixels = np.repeat(levels[:, None, None, None], h * w * 3, axis=1).reshape(count, h, w, 3)
    if pix_fmt in ("rgb24",):
        encode_raw(folder / f"{name}.%04d.{ext}", pixels.astype(np.uint8), pix_fmt_in="rgb24",
                   out_args=("-pix_fmt", pix_fmt, "-start_number", str(first)))
    else:
        encode_raw(folder / f"{name}.%04d.{ext}", pixels * 257, pix_fmt_in="rgb48le",
                   out_args=("-pix_fmt", pix_fmt, "-start_number", str(first)))
    return {first + i: int(levels[i]) for i in range(count)}


@pytest.mark.parametrize("ext,pix_fmt", [("png", "rgb24"), ("png", "rgb48be"), ("tif", "rgb24"), ("tif", "rgb48le")])
def test_hold_missing_png_tiff_gap_inside_long_sequence(tmp_path, ext, pix_fmt, monkeypatch):
    """ffmpeg's image2 demuxer probes ahead in powers of two, so its last frame lies past a gap;
    the frame-threaded PNG/TIFF decoders then read into the missing file and lost frames before it."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    want = _levels_sequence(tmp_path, "g", ext, pix_fmt)
    (tmp_path / f"g.1010.{ext}").unlink()
    (tmp_path / f"g.1011.{ext}").unlink()
    want[1010] = want[1011] = want[1009]
    footage = open_footage(tmp_path / f"g.####.{ext}", hold_missing=True)
    got = {n: round(float(rgb[0, 0, 0]) * 255) for n, rgb in footage.read()}
    assert got == want
    got = {n: round(float(rgb[0, 0, 0]) * 255) for n, rgb in footage.read(size=(16, 12), frames=(1004, 1012))}
    assert got == {n: want[n] for n in range(1004, 1013)}
    assert ffmpeg_children() == []
    # a range given in the name that stops before a gap reads the same way
    limited = open_footage(tmp_path / f"g.1001-1009#.{ext}")
    assert [n for n, _ in limited.read()] == list(range(1001, 1010))
    assert list(scratch.iterdir()) == []  # the links to the run's files are gone
    # where links cannot be made (Windows without the symlink privilege): one decoder thread
    from dvd_vfx.footage import sequence

    monkeypatch.setattr(sequence, "link_run", lambda paths, ext: None)
    got = {n: round(float(rgb[0, 0, 0]) * 255) for n, rgb in footage.read()}
    assert got == want


def test_damaged_png_in_sequence_is_named(tmp_path):
    _levels_sequence(tmp_path, "d", "png", "rgb24", count=14, size=(64, 48))
    path = tmp_path / "d.1008.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    footage = open_footage(tmp_path / "d.####.png")
    got = []
    with raises_one_line("frame 1008", "d.1008.png", "re-render it"):
        for n, _ in footage.read():
            got.append(n)
    assert got == list(range(1001, 1001 + len(got))) and len(got) <= 7  # the threaded decoder may hold some back


def run_cli(capsys, *argv):
    from dvd_vfx.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_info_takes_the_flags_that_change_what_it_reports(exr_seq, media, capsys):
    d, _ = exr_seq
    (d / "sh010.1002.exr").unlink()
    pattern = d / "sh010.####.exr"
    code, out, err = run_cli(capsys, "info", pattern)
    assert code == 2 and "--hold-missing" in err and out == ""
    code, out, err = run_cli(capsys, "info", pattern, "--hold-missing")  # what the message says to do
    assert code == 0, err
    assert "1001-1003 (3 frames) at 25 fps" in out and "held:        1002" in out
    code, out, err = run_cli(capsys, "info", pattern, "--hold-missing", "--frames", "1003-1003", "--fps", "24")
    assert code == 0, err
    assert "frames:      1003 (1 frame of 1001-1003) at 24 fps" in out and "held" not in out
    code, out, err = run_cli(capsys, "info", pattern, "--hold-missing", "--frames", "990-1002")
    assert code == 2 and "990-1002" in err and "1001-1003" in err
    code, out, err = run_cli(capsys, "info", media["h264"], "--start-frame", "1001", "--frames", "1005-1012")
    assert code == 0, err
    assert "1005-1012 (8 frames of 1001-1012)" in out
    code, out, err = run_cli(capsys, "info", pattern, "--hold-missing", "--colorspace", "display")
    assert code == 0 and "display-referred" in out


def test_constant_rate_with_a_container_duration_one_frame_long(tmp_path, probe_mode):
    """r_frame_rate 60/1, frames 1/60 s apart, but avg_frame_rate 3600/61 (the last sample lasts two
    frames): the clip is 60 fps, not 59.016, in every probe mode and container."""
    plain = make_testsrc(tmp_path / "c60.mp4", rate="60", frames=60)
    long_last = tmp_path / "long_last.mp4"
    ffmpeg("-i", str(plain), "-c", "copy", "-bsf:v", r"setts=duration=if(eq(N\,59)\,2*DURATION\,DURATION)",
           str(long_last))
    ffmpeg("-i", str(long_last), "-c", "copy", str(tmp_path / "long_last.mkv"))  # DefaultDuration 61/3600 s
    if shutil.which("ffprobe"):
        import ffmpeg as ffmpeg_python

        stream = ffmpeg_python.probe(str(long_last), cmd=shutil.which("ffprobe"))["streams"][0]
        assert (stream["r_frame_rate"], stream["avg_frame_rate"]) == ("60/1", "3600/61")  # the defect's input
    for source in (long_last, tmp_path / "long_last.mkv"):
        info = open_footage(source).info
        assert info.fps == 60 and info.frame_count == 60, (source, info.fps)
        assert "at 60 fps" in info.describe()


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe")
def test_variable_rate_clip_is_still_variable(tmp_path):
    """Timestamps that really vary (15 frames at 1/30 s, then 1/20 s): not called 30 fps."""
    path = make_testsrc(tmp_path / "vfr.mp4", rate="30", frames=30,
                        extra=("-vf", "setpts='(N+if(gte(N,15),(N-15)*0.5,0))/(30*TB)'", "-fps_mode", "vfr"))
    assert open_footage(path).info.fps == 25  # ffprobe's average, as before


def test_default_shot_names_drop_extension_and_frame_number(tmp_path, exr_seq, media, caplog):
    from dvd_vfx.render import RenderOptions, shot_layout

    def shot(source, **kw):
        return shot_layout(open_footage(source, **kw).info, RenderOptions(out_dir=tmp_path)).shot

    d, _ = exr_seq
    one = np.zeros((4, 6, 3), np.float16)
    write_exr_rgb(tmp_path / "Desk.exr", one)
    write_exr_rgb(tmp_path / "plate_v002.exr", one)
    single = tmp_path / "single"
    single.mkdir()
    for n in range(1, 6):
        write_exr_rgb(single / f"singlepart.{n:04d}.exr", one)
    write_exr_rgb(tmp_path / "lonely.0007.exr", one)
    assert shot(tmp_path / "Desk.exr") == "Desk"
    assert shot(tmp_path / "Desk.exr", start_frame=1001) == "Desk"
    assert shot(tmp_path / "plate_v002.exr") == "plate_v002"  # a version, not a frame number
    assert shot(tmp_path / "lonely.0007.exr") == "lonely"
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        footage = open_footage(single / "singlepart.0003.exr")
    assert footage.info.frame_numbers == (3,)
    assert shot(single / "singlepart.0003.exr") == "singlepart"
    # it says that only that frame is used, and offers the sequence
    hint = str(single / "singlepart.####.exr")
    assert "only frame 3" in caplog.text and hint in caplog.text and "1-5" in caplog.text
    assert "only frame 3" in footage.info.describe() and hint in footage.info.describe()
    assert open_footage(tmp_path / "lonely.0007.exr").info.sequence_note is None
    # unchanged: patterns, folders, movies
    assert shot(d / "sh010.####.exr") == shot(d) == "sh010"
    assert shot(media["h264"]) == "clip"


class Luma:
    """A cheap predictor for renders in these tests: brightness as disparity."""

    name = "luma"

    def identity(self):
        return {"predictor": "luma", "model_id": "luma-1", "weights_sha256": "0" * 64}

    def predict(self, frames):
        return (frames.mean(axis=-1) * 0.8 + 0.1).astype(np.float32)


def render(source, out, cache=None, **kw):
    from dvd_vfx.render import RenderOptions, render_shot

    return render_shot(source, RenderOptions(out_dir=out, resolution=16, window=5, overlap=2, **kw), Luma(),
                       cache=cache)


def test_single_exr_renders_without_the_extension_in_the_name(tmp_path):
    xx, yy = np.meshgrid(np.linspace(0, 1, 40), np.linspace(0, 1, 24))
    write_exr_rgb(tmp_path / "Desk.exr", np.stack([xx, yy, np.full_like(xx, 0.5)], axis=2).astype(np.float16))
    result = render(tmp_path / "Desk.exr", tmp_path / "out")
    assert result.shot == "Desk"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["Desk.depth.0001.exr"]


def test_single_image_and_percent_folders_render_through_the_cache(tmp_path):
    """The cache fingerprints a single image (no frame token) and sequences in a folder named with a
    '%' (the frame token is in the file name only)."""
    from dvd_vfx.cache import ShotCache

    xx, yy = np.meshgrid(np.linspace(0, 1, 40), np.linspace(0, 1, 24))
    rgb = np.stack([xx, yy, np.full_like(xx, 0.5)], axis=2).astype(np.float16)
    write_exr_rgb(tmp_path / "Desk.exr", rgb)
    cache = ShotCache(tmp_path / "cache")
    assert render(tmp_path / "Desk.exr", tmp_path / "out", cache=cache).cache == "miss"
    assert render(tmp_path / "Desk.exr", tmp_path / "out", cache=cache).cache == "hit"
    folder = tmp_path / "100%_v2"
    folder.mkdir()
    for n in (1, 2, 3):
        write_exr_rgb(folder / f"sh.{n:04d}.exr", rgb)
    result = render(folder / "sh.####.exr", tmp_path / "out2", cache=cache)
    assert result.cache == "miss" and result.frame_count == 3


def test_display_window_mismatch_shows_both_windows(exr_seq):
    d, _ = exr_seq
    same_size = np.zeros((4, 8, 3), np.float16)  # 8x4 like the others, but moved 2 pixels right
    write_exr_rgb(d / "sh010.1003.exr", same_size, dataWindow=((2, 0), (9, 3)), displayWindow=((2, 0), (9, 3)))
    with raises_one_line("frame 1003", "sh010.1003.exr", "8x4 at 2,0 (2,0-9,3)", "8x4 at 0,0 (0,0-7,3)",
                         "frame 1001", "re-render"):
        open_footage(d / "sh010.####.exr")


def _stereo_exr(path, left, right, *, depth_first=True, swap=False):
    """Multi-part multi-view EXR: [depth (Z only)], rgba.left (view left), rgba.right (view right)."""
    import OpenEXR

    z = np.ones(left.shape[:2], np.float32)
    parts = [OpenEXR.Part({"type": OpenEXR.scanlineimage}, {"Z": z}, "depth")] if depth_first else []
    views = [
        OpenEXR.Part({"type": OpenEXR.scanlineimage, "view": "left"},
                     {c: np.ascontiguousarray(left[..., i]) for i, c in enumerate("RGB")}, "rgba.left"),
        OpenEXR.Part({"type": OpenEXR.scanlineimage, "view": "right"},
                     {c: np.ascontiguousarray(right[..., i]) for i, c in enumerate("RGB")}, "rgba.right"),
    ]
    OpenEXR.File(parts + (views[::-1] if swap else views)).write(str(path))
    return path


def test_multipart_multiview_exr_says_what_it_reads_and_lets_you_choose(tmp_path, caplog, capsys):
    left = np.full((4, 6, 3), 0.18, np.float16)
    right = np.full((4, 6, 3), 0.5, np.float16)
    path = _stereo_exr(tmp_path / "stereo.0001.exr", left, right)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        footage = open_footage(path)
    assert 'part 1 "rgba.left" view left' in caplog.text and 'part 2 "rgba.right" view right' in caplog.text
    assert "--part / --view" in caplog.text
    info = footage.info
    assert (info.part, info.view) == ("rgba.left", "left")
    assert 'part 1 "rgba.left" (of 0 "depth", 1 "rgba.left", 2 "rgba.right")' in info.describe()
    assert "view left (of left, right)" in info.describe()
    np.testing.assert_allclose(footage.read_frame(1), srgb(np.float16(0.18)), atol=1e-6)
    for kw in ({"view": "right"}, {"part": "rgba.right"}, {"part": "2"}, {"part": 2, "view": "right"}):
        chosen = open_footage(path, **kw)
        assert (chosen.info.part, chosen.info.view) == ("rgba.right", "right"), kw
        np.testing.assert_allclose(chosen.read_frame(1), srgb(np.float16(0.5)), atol=1e-6)
    with raises_one_line("stereo.0001.exr", "no part 'beauty'", '0 "depth", 1 "rgba.left", 2 "rgba.right"', "--part"):
        open_footage(path, part="beauty")
    with raises_one_line("stereo.0001.exr", "no view 'centre'", "left, right", "--view"):
        open_footage(path, view="centre")
    with raises_one_line("no view 'right'", 'part 1 "rgba.left"'):
        open_footage(path, part="rgba.left", view="right")
    with raises_one_line("no R, G, B or Y channels in the part 'depth'", "found: Z", "--part"):
        open_footage(path, part="depth")
    # a sequence whose later frame stores the parts in another order still reads the chosen part
    _stereo_exr(tmp_path / "stereo.0002.exr", left, right, swap=True)
    frames = dict(open_footage(tmp_path / "stereo.####.exr", part="rgba.right").read())
    np.testing.assert_allclose(frames[2], srgb(np.float16(0.5)), atol=1e-6)
    # info takes the flags too
    code, out, err = run_cli(capsys, "info", path, "--view", "right")
    assert code == 0, err
    assert "picture:" in out and 'part 2 "rgba.right"' in out and "view right" in out
    code, out, err = run_cli(capsys, "info", path, "--part", "nope")
    assert code == 2 and "no part 'nope'" in err


def test_single_part_multiview_exr(tmp_path):
    left = np.full((4, 6), 0.18, np.float16)
    right = np.full((4, 6), 0.5, np.float16)
    channels = {"R": left, "G": left, "B": left, "right.R": right, "right.G": right, "right.B": right}
    path = write_exr(tmp_path / "mv.exr", channels, multiView=["left", "right"])
    footage = open_footage(path)
    assert footage.info.view == "left" and footage.info.part is None
    assert "view left (of left, right), channels R, G, B" in footage.info.describe()
    np.testing.assert_allclose(footage.read_frame(1), srgb(np.float16(0.18)), atol=1e-6)
    right_view = open_footage(path, view="right")
    assert right_view.info.view == "right" and "channels right.R, right.G, right.B" in right_view.info.describe()
    np.testing.assert_allclose(right_view.read_frame(1), srgb(np.float16(0.5)), atol=1e-6)
    # a plain file: --view has nothing to choose
    plain = write_exr_rgb(tmp_path / "plain.exr", np.zeros((4, 6, 3), np.float16))
    with raises_one_line("plain.exr", "no views", "drop --view"):
        open_footage(plain, view="left")
    assert open_footage(plain, part="0").info.part is None  # its only part


def test_part_and_view_need_an_exr(tmp_path, media):
    encode_raw(tmp_path / "p.%04d.png", gradient16(frames=1), pix_fmt_in="rgb48le", out_args=("-pix_fmt", "rgb48be"))
    with raises_one_line("--part", "p.%04d.png", "PNG", "drop --part"):
        open_footage(tmp_path / "p.####.png", part="1")
    with raises_one_line("--view", "clip.mp4", "movie", "drop --view"):
        open_footage(media["h264"], view="left")


def test_two_parts_of_one_file_never_share_cached_windows(tmp_path):
    from dvd_vfx.cache import ShotCache

    rng = np.random.default_rng(7)
    for n in (1, 2, 3):
        _stereo_exr(tmp_path / f"st.{n:04d}.exr", rng.random((12, 16, 3)).astype(np.float16),
                    rng.random((12, 16, 3)).astype(np.float16), depth_first=False)
    cache = ShotCache(tmp_path / "cache")
    pattern = tmp_path / "st.####.exr"
    left = render(pattern, tmp_path / "left", cache=cache, mode="disparity", view="left")
    right = render(pattern, tmp_path / "right", cache=cache, mode="disparity", view="right")
    again = render(pattern, tmp_path / "again", cache=cache, mode="disparity", view="right")
    assert left.cache == right.cache == "miss" and again.cache == "hit"
    assert len({left.cache_key, right.cache_key}) == 2 and again.cache_key == right.cache_key
    assert left.percentiles != right.percentiles
    plain = render(pattern, tmp_path / "plain", cache=cache, mode="disparity")  # default: part 0, view left
    assert plain.cache_key not in (left.cache_key, right.cache_key) and plain.percentiles == left.percentiles


@pytest.mark.parametrize("size,matrix", [((1280, 720), "bt709"), ((1920, 800), "bt709"), ((720, 576), "bt601")])
def test_untagged_hd_video_is_bt709(tmp_path, size, matrix, probe_mode, scaler):
    w, h = size
    rgb = np.zeros((1, h, w, 3), np.uint8)
    rgb[:] = (200, 50, 30)
    path = encode_raw(
        tmp_path / "untagged.mp4", rgb, pix_fmt_in="rgb24",
        out_args=("-vf", f"scale=out_color_matrix={matrix}:out_range=tv", "-c:v", "libx264", "-qp", "0",
                  "-pix_fmt", "yuv444p"),  # no colour tags
    )
    info = open_footage(path).info
    assert info.color_matrix == matrix
    text = info.describe()
    assert f"YCbCr matrix {matrix} (untagged; {'HD video' if matrix == 'bt709' else 'SD'}" in text
    got = open_footage(path).read_frame(1, size=(16, 16))[8, 8] * 255
    assert np.abs(got - (200, 50, 30)).max() < 2.0, got  # bt709 decoded as bt601 is ~15 levels off


def test_colour_matrix_in_the_pass_header(tmp_path, exr_seq):
    from dvd_vfx.passes.exr import read_pass_attributes

    rgb = np.zeros((5, 720, 1280, 3), np.uint8)
    rgb[:] = (200, 50, 30)
    path = encode_raw(tmp_path / "hd.mp4", rgb, pix_fmt_in="rgb24",
                      out_args=("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"))
    result = render(path, tmp_path / "out", mode="disparity")
    assert read_pass_attributes(result.paths[0])["colorMatrix"] == "bt709"
    d, _ = exr_seq  # RGB sources have no matrix to record
    result = render(d / "sh010.####.exr", tmp_path / "exr", mode="disparity")
    assert "colorMatrix" not in read_pass_attributes(result.paths[0])


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="the container's count comes from ffprobe")
@pytest.mark.parametrize("keep", [0.6, 0.45])
def test_info_on_a_truncated_movie_says_the_count_is_the_containers(tmp_path, capsys, keep):
    whole = make_testsrc(tmp_path / "fs.mp4", rate="24", frames=30, extra=("-g", "5", "-movflags", "+faststart"))
    data = whole.read_bytes()
    cut = tmp_path / "fs_cut.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])  # index intact, media data short
    code, out, err = run_cli(capsys, "info", cut)
    assert code == 0, err
    assert "30 frames, as the container says" in out and "container says 30 frames" in out
    readable = open_footage(cut).check_length().readable_frames
    got = []
    with raises_one_line("fs_cut.mp4", "truncated"):
        for n, _ in open_footage(cut).read(size=(16, 16)):
            got.append(n)
    assert readable == len(got)  # what info counts is what decodes
    assert f"ends after {readable} (frame {readable})" in out and f"--frames 1-{readable}" in out
    code, out, err = run_cli(capsys, "info", whole)
    assert code == 0 and "truncated:" not in out and "container" not in out
    assert open_footage(whole).check_length().readable_frames is None
