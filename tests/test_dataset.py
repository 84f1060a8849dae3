"""dvd_vfx.train.dataset: the dataset TOML, clip reading (EXR / movie / still), depth masks, targets."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dvd_vfx.errors import InputError
from dvd_vfx.train.dataset import (
    ClipSpec,
    clip_length,
    disparity_target,
    load_dataset,
    read_clip,
    resize_depth,
)
from footage_helpers import encode_raw, write_exr, write_exr_rgb

W, H = 16, 12


def depth_plane(i: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    return (2.0 + xx / W + yy / H + 0.1 * i).astype(np.float32)


def make_exr_clip(folder: Path, frames: int = 4, first: int = 1001, channel: str = "ViewLayer.Depth.Z"):
    """RGB EXR sequence + depth EXR sequence (Blender's channel name) with some 0/inf/NaN pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    depths = []
    for i in range(frames):
        rgb = np.full((H, W, 3), 0.18 * (i + 1) / frames, np.float32)
        write_exr_rgb(folder / f"beauty.{first + i:04d}.exr", rgb)
        z = depth_plane(i)
        z[0, 0], z[0, 1], z[0, 2], z[1, 0] = 0.0, np.inf, np.nan, -3.0
        write_exr(folder / f"depth.{first + i:04d}.exr", {channel: z, "ViewLayer.Combined.R": z})
        depths.append(z)
    return np.stack(depths)


def make_movie_clip(folder: Path, frames: int = 5):
    folder.mkdir(parents=True, exist_ok=True)
    grey = np.repeat(np.linspace(30, 220, frames).astype(np.uint8), H * W * 3).reshape(frames, H, W, 3)
    encode_raw(folder / "plate.mov", grey, pix_fmt_in="rgb24", out_args=("-c:v", "ffv1", "-pix_fmt", "bgr0"))
    for i in range(frames):
        write_exr(folder / f"depth.{i + 1:04d}.exr", {"depth.Z": depth_plane(i)})
    return grey


def write_toml(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_import_does_not_pull_torch():
    code = "import sys, dvd_vfx.train.dataset; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_exr_sequence_with_blender_depth_channel_and_invalid_pixels(tmp_path):
    gt = make_exr_clip(tmp_path / "sh010")
    ds = write_toml(tmp_path / "data.toml", """
        [[source]]
        name = "cg"
        kind = "video"
        weight = 2
        clips = [ { name = "sh010", frames = "sh010/beauty.####.exr", depth = "sh010/depth.####.exr" } ]
    """)
    dataset = load_dataset(ds)
    assert [s.name for s in dataset.sources] == ["cg"] and dataset.weights == {"cg": 1.0}
    (clip,) = dataset.clips()
    assert clip.name == "cg/sh010" and clip.kind == "video"
    assert clip.frames == str(tmp_path / "sh010" / "beauty.####.exr")
    assert clip_length(clip) == 4
    rgb, depth, valid = read_clip(clip)
    assert rgb.shape == (4, H, W, 3) and rgb.dtype == np.float32
    assert depth.shape == valid.shape == (4, H, W) and depth.dtype == np.float32 and valid.dtype == bool
    # linear 0.18*k/4 through the sRGB curve (EXR plates are scene-linear)
    lin = 0.18 * 3 / 4
    assert rgb[2, 5, 5, 0] == pytest.approx(1.055 * lin ** (1 / 2.4) - 0.055, abs=1e-4)
    bad = np.zeros((H, W), bool)
    bad[0, 0] = bad[0, 1] = bad[0, 2] = bad[1, 0] = True
    assert (valid == ~bad[None]).all()
    assert (depth[:, bad] == 0).all()
    np.testing.assert_array_equal(depth[valid], gt[valid])
    # start/count by position
    rgb2, depth2, _ = read_clip(clip, start=1, count=2)
    np.testing.assert_array_equal(depth2, depth[1:3])
    np.testing.assert_array_equal(rgb2, rgb[1:3])
    with pytest.raises(InputError, match="outside the clip"):
        read_clip(clip, start=3, count=2)


def test_resize_never_blends_invalid_depth(tmp_path):
    make_exr_clip(tmp_path / "sh", frames=2)
    clip = ClipSpec("x", str(tmp_path / "sh/beauty.####.exr"), str(tmp_path / "sh/depth.####.exr"), "video")
    rgb, depth, valid = read_clip(clip, size=(8, 6))
    assert rgb.shape == (2, 6, 8, 3) and depth.shape == valid.shape == (2, 6, 8)
    # output pixel (0,0) covers input 2x2 block with 3 of 4 pixels invalid -> invalid
    assert not valid[0, 0, 0] and depth[0, 0, 0] == 0
    # (0,1) covers [0:2, 2:4] with one invalid (NaN at [0,2]): the mean of the 3 valid ones
    z = depth_plane(0)
    assert valid[0, 0, 1] and depth[0, 0, 1] == pytest.approx((z[0, 3] + z[1, 2] + z[1, 3]) / 3, rel=1e-6)
    assert np.isfinite(depth).all()
    # upscaling is nearest: values are a subset of the source values
    big, ok = resize_depth(z, np.ones_like(z, bool), (W * 2, H * 2))
    assert big.shape == (H * 2, W * 2) and ok.all() and big[5, 7] == z[2, 3]


def test_movie_with_depth_z_sequence_and_image_source(tmp_path):
    make_movie_clip(tmp_path / "mv")
    still = tmp_path / "still"
    still.mkdir()
    encode_raw(still / "photo.png", np.full((1, H, W, 3), 128, np.uint8), pix_fmt_in="rgb24", out_args=())
    write_exr(still / "photo_depth.exr", {"Z": depth_plane(0)})
    ds = write_toml(tmp_path / "data.toml", """
        [[source]]
        name = "movies"
        weight = 0.7
        clips = [ { frames = "mv/plate.mov", depth = "mv/depth.####.exr" } ]

        [[source]]
        name = "stills"
        kind = "image"
        weight = 0.3
        clips = [
          { name = "photo", frames = "still/photo.png", depth = "still/photo_depth.exr" },
          { name = "mvframes", frames = "mv/plate.mov", depth = "mv/depth.####.exr" },
        ]
    """)
    dataset = load_dataset(ds)
    assert dataset.weights == pytest.approx({"movies": 0.7, "stills": 0.3})
    movie, photo, *frames = dataset.clips()
    assert movie.kind == "video" and clip_length(movie) == 5
    rgb, depth, valid = read_clip(movie)
    assert rgb.shape == (5, H, W, 3) and valid.all()
    means = rgb.mean(axis=(1, 2, 3))
    assert np.all(np.diff(means) > 0.1)  # frames in order, grey ramp 30..220
    np.testing.assert_allclose(depth[4], depth_plane(4))
    assert photo.name == "stills/photo" and clip_length(photo) == 1
    rgb, depth, valid = read_clip(photo)
    assert rgb.shape == (1, H, W, 3) and abs(rgb.mean() - 128 / 255) < 0.01
    np.testing.assert_array_equal(depth[0], depth_plane(0))
    # an image source over a movie: every frame is a one-frame clip at its position
    assert [c.name for c in frames] == [f"stills/mvframes@{n}" for n in range(1, 6)]
    assert all(clip_length(c) == 1 for c in frames)
    rgb3, depth3, _ = read_clip(frames[3])
    np.testing.assert_allclose(depth3[0], depth_plane(3))
    assert abs(rgb3.mean() - read_clip(movie, start=3, count=1)[0].mean()) < 1e-6


def test_image_source_over_a_sequence_points_at_each_file(tmp_path):
    make_exr_clip(tmp_path / "s", frames=3, channel="depth.Z")
    ds = write_toml(tmp_path / "d.toml", """
        [[source]]
        name = "stills"
        kind = "image"
        folders = "s*"
        frames = "beauty.####.exr"
        depth = "depth.####.exr"
    """)
    clips = load_dataset(ds).clips()
    assert [c.name for c in clips] == ["stills/s@1001", "stills/s@1002", "stills/s@1003"]
    assert clips[1].frames.endswith("beauty.1002.exr") and clips[1].depth.endswith("depth.1002.exr")
    _, depth, valid = read_clip(clips[2])
    assert depth.shape == (1, H, W) and valid.sum() == H * W - 4


def test_folders_glob_and_max_depth(tmp_path):
    for shot in ("sh010", "sh020"):
        make_exr_clip(tmp_path / "renders" / shot, frames=2)
    ds = write_toml(tmp_path / "d.toml", """
        [[source]]
        name = "cg"
        folders = "renders/sh*"
        frames = "beauty.####.exr"
        depth = "depth.####.exr"
        max_depth = 2.5
    """)
    clips = load_dataset(ds).clips()
    assert [c.name for c in clips] == ["cg/renders/sh010", "cg/renders/sh020"]
    _, depth, valid = read_clip(clips[0])
    assert not valid[depth_plane(0)[None].repeat(2, 0) >= 2.5].any()
    assert (depth[valid] < 2.5).all() and valid.any()


@pytest.mark.parametrize("text, match", [
    ("[[source]\nname='x'", "is not valid TOML"),
    ("name = 'x'", "unknown key 'name' in the top level"),
    ("", "lists no sources"),
    ("[[source]]\nkind = 'video'\nclips = []", "has no 'name'"),
    ("[[source]]\nname = 'a'\nkind = 'movie'\nclips = []", "kind = 'movie'.*video, image"),
    ("[[source]]\nname = 'a'\nweight = 0\nclips = []", "weight = 0 in source 'a' must be a positive number"),
    ("[[source]]\nname = 'a'\nweight = 'heavy'\nclips = []", "weight = 'heavy'"),
    ("[[source]]\nname = 'a'\nwieght = 1\nclips = []", "unknown key 'wieght'.*did you mean 'weight'"),
    ("[[source]]\nname = 'a'\nclips = []", "source 'a' has no clips"),
    ("[[source]]\nname = 'a'\nclips = [ { frames = 'x.mov' } ]", "clip #1 of source 'a' has no 'depth'"),
    ("[[source]]\nname = 'a'\nclips = [ { frames = 'nope.mov', depth = 'd.####.exr' } ]", "footage not found"),
    ("[[source]]\nname = 'a'\nfolders = 'nothing*'\nframes = 'a.mov'\ndepth = 'b'", "matches no folder"),
    ("[[source]]\nname = 'a'\nclips = []\n[[source]]\nname = 'a'\nclips = []", "no clips|named 'a'"),
])
def test_bad_dataset_files(tmp_path, text, match):
    ds = write_toml(tmp_path / "bad.toml", text)
    with pytest.raises(InputError, match=match) as exc:
        load_dataset(ds)
    assert str(ds) in str(exc.value) and "\n" not in str(exc.value)


def test_missing_file_and_frame_count_mismatch_and_non_exr_depth(tmp_path):
    with pytest.raises(InputError, match="dataset file not found"):
        load_dataset(tmp_path / "missing.toml")
    make_exr_clip(tmp_path / "sh", frames=3)
    (tmp_path / "sh" / "depth.1003.exr").unlink()
    ds = write_toml(tmp_path / "d.toml", """
        [[source]]
        name = "cg"
        clips = [ { frames = "sh/beauty.####.exr", depth = "sh/depth.####.exr" } ]
    """)
    with pytest.raises(InputError, match=r"beauty.####.exr has 3 frames but depth .* has 2 files"):
        load_dataset(ds)
    encode_raw(tmp_path / "sh" / "depth.1003.png", np.zeros((1, H, W, 3), np.uint8), pix_fmt_in="rgb24", out_args=())
    ds2 = write_toml(tmp_path / "d2.toml", """
        [[source]]
        name = "cg"
        clips = [ { frames = "sh/beauty.1001.exr", depth = "sh/depth.1003.png" } ]
    """)
    with pytest.raises(InputError, match="depth must be OpenEXR"):
        load_dataset(ds2)
    # a depth file without a depth channel names the file and the channels found
    write_exr(tmp_path / "sh" / "nodepth.exr", {"R": depth_plane(0), "G": depth_plane(0)})
    clip = ClipSpec("x", str(tmp_path / "sh/beauty.1001.exr"), str(tmp_path / "sh/nodepth.exr"), "image")
    with pytest.raises(InputError, match=r"nodepth.exr has no depth channel .*found: G, R"):
        read_clip(clip)
    # read_clip re-checks the counts (files can change after loading)
    clip = ClipSpec("y", str(tmp_path / "sh/beauty.####.exr"), str(tmp_path / "sh/depth.####.exr"), "video")
    with pytest.raises(InputError, match="has 3 frames but depth"):
        read_clip(clip)


def test_disparity_target_matches_a_hand_computation():
    rng = np.random.default_rng(3)
    depth = rng.uniform(1.0, 50.0, size=(3, 10, 10)).astype(np.float32)
    valid = np.ones_like(depth, bool)
    valid[0, :2] = False
    depth[0, 0] = 0.0
    depth[1, 1, 1] = np.inf
    valid[1, 1, 1] = True  # inf is invalid even if the mask says otherwise
    out = disparity_target(depth, valid)
    ok = valid & np.isfinite(depth) & (depth > 0)
    disp = 1.0 / depth[ok].astype(np.float64)
    s = np.sort(disp)
    n = s.size

    def pct(q):  # numpy's default linear interpolation, by hand
        pos = (n - 1) * q / 100.0
        lo = int(np.floor(pos))
        return s[lo] + (s[min(lo + 1, n - 1)] - s[lo]) * (pos - lo)

    lo, hi = pct(2), pct(98)
    expect = np.clip((1.0 / depth[ok] - lo) / (hi - lo), 0, 1)
    assert out.dtype == np.float32 and out.shape == depth.shape
    np.testing.assert_allclose(out[ok], expect, atol=1e-6)
    assert (out[~ok] == 0).all()
    assert (out[ok] == 1).sum() == pytest.approx(0.02 * n, abs=2) and (out[ok] == 0).sum() == pytest.approx(0.02 * n, abs=2)
    # simple numbers: depths 1, 2, 4 -> disparity 1, .5, .25
    d = np.array([[[1.0, 2.0, 4.0, 0.0]]], np.float32)
    t = disparity_target(d, d > 0)
    lo, hi = 0.25 + 0.04 * 0.25, 0.5 + 0.96 * 0.5  # 2nd / 98th percentiles of [.25, .5, 1]
    np.testing.assert_allclose(t[0, 0], [1.0, (0.5 - lo) / (hi - lo), 0.0, 0.0], atol=1e-6)
    assert not disparity_target(np.zeros((1, 2, 2), np.float32), np.zeros((1, 2, 2), bool)).any()
