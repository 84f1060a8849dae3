"""Frame-sequence spellings through fileseq: every style artists type, ranges with steps and lists,
negative frames and padding, in open_footage, `info` and `render` (the pass keeps the plate's
frame numbers). tests/test_footage.py holds the behaviour that predates fileseq."""

from __future__ import annotations

import numpy as np
import pytest

from footage_helpers import encode_raw, write_exr_rgb

from dvd_vfx.errors import InputError
from dvd_vfx.footage import open_footage


def grey_exr(path, level: float) -> None:
    write_exr_rgb(path, np.full((4, 8, 3), level, np.float16))


@pytest.fixture
def plates(tmp_path):
    """sh.1001-1006 (4 digits), neg.-0003..0002 (printf %04d: -003), p6.000001-000003, un.1..12 (unpadded)."""
    for n in range(1001, 1007):
        grey_exr(tmp_path / f"sh.{n:04d}.exr", (n - 1000) / 10)
    for n in range(-3, 3):
        grey_exr(tmp_path / f"neg.{n:04d}.exr", (n + 4) / 10)
    for n in range(1, 4):
        grey_exr(tmp_path / f"p6.{n:06d}.exr", n / 10)
    for n in range(1, 13):
        grey_exr(tmp_path / f"un.{n}.exr", n / 20)
    return tmp_path


def frames(source, **kw) -> list[int]:
    return list(open_footage(source, **kw).info.frame_numbers)


@pytest.mark.parametrize("spelling", ["sh.####.exr", "sh.%04d.exr", "sh.@@@@.exr", "sh.$F4.exr", "sh.#.exr"])
def test_every_style_names_the_same_sequence(plates, spelling):
    info = open_footage(plates / spelling).info
    assert info.frame_numbers == tuple(range(1001, 1007))
    assert info.path == str(plates / "sh.%04d.exr")
    assert info.frame_file(1003) == str(plates / "sh.1003.exr")


@pytest.mark.parametrize("spelling, expected", [
    ("sh.1001-1005x2#.exr", [1001, 1003, 1005]),
    ("sh.1001-1006x2####.exr", [1001, 1003, 1005]),
    ("sh.1002-1006x3@@@@.exr", [1002, 1005]),
    ("sh.1001,1004-1005#.exr", [1001, 1004, 1005]),
    ("sh.1002-1004#.exr", [1002, 1003, 1004]),
    ("sh.%04d.exr 1002-1003", [1002, 1003]),
])
def test_ranges_steps_and_lists(plates, spelling, expected):
    footage = open_footage(f"{plates}/{spelling}")
    assert list(footage.info.frame_numbers) == expected
    # each frame is its own file: frame n has grey level (n - 1000) / 10 (linear, so compare ranks)
    levels = [float(rgb.mean()) for _, rgb in footage.read()]
    assert [n for n, _ in footage.read()] == expected
    assert levels == sorted(levels) and len(set(levels)) == len(levels)
    first, *_ = expected
    np.testing.assert_allclose(footage.read_frame(first), open_footage(plates / "sh.####.exr").read_frame(first))


def test_a_step_with_a_missing_frame_holds_or_fails(plates):
    (plates / "sh.1003.exr").unlink()
    with pytest.raises(InputError, match=r"missing frames 1003 .*of the range's step.*--hold-missing"):
        open_footage(plates / "sh.1001-1005x2#.exr")
    assert frames(plates / "sh.1001-1005x2#.exr", hold_missing=True) == [1001, 1003, 1005]
    assert open_footage(plates / "sh.1001-1005x2#.exr", hold_missing=True).info.held_frames == (1003,)
    assert frames(plates / "sh.1004-1006x2#.exr") == [1004, 1006]  # steps over the gap: nothing missing


def test_negative_frames(plates):
    for spelling in ("neg.####.exr", "neg.%04d.exr", "neg.@@@@.exr"):
        assert frames(plates / spelling) == [-3, -2, -1, 0, 1, 2]
    assert frames(plates / "neg.-2-1#.exr") == [-2, -1, 0, 1]
    assert frames(plates / "neg.-3--2#.exr") == [-3, -2]
    footage = open_footage(plates / "neg.####.exr")
    assert footage.info.frame_file(-3) == str(plates / "neg.-003.exr")  # printf pads the sign into the width
    read = dict(footage.read())
    assert sorted(read) == [-3, -2, -1, 0, 1, 2]
    assert float(read[-3].mean()) < float(read[2].mean())
    assert frames(plates / "neg.-003.exr") == [-3]  # one numbered file: that frame


def test_negative_frames_of_png_sequences_decode_through_ffmpeg(tmp_path):
    pixels = np.stack([np.full((8, 16, 3), 4000 * (i + 1), np.uint16) for i in range(4)])
    encode_raw(tmp_path / "tmp.%04d.png", pixels, pix_fmt_in="rgb48le", out_args=("-pix_fmt", "rgb48be"))
    for i, n in enumerate((-2, -1, 0, 1)):  # ffmpeg writes 0001..0004; renumber them -2..1
        (tmp_path / f"tmp.{i + 1:04d}.png").rename(tmp_path / f"png.{n:04d}.png")
    footage = open_footage(tmp_path / "png.####.png")
    assert footage.info.frame_numbers == (-2, -1, 0, 1)
    means = {n: float(rgb.mean()) for n, rgb in footage.read()}
    np.testing.assert_allclose([means[n] for n in (-2, -1, 0, 1)], [4000 * k / 65535 for k in (1, 2, 3, 4)], atol=1e-4)


def test_padding(plates):
    for spelling in ("p6.######.exr", "p6.%06d.exr", "p6.@@@@@@.exr", "p6.$F6.exr"):
        info = open_footage(plates / spelling).info
        assert info.frame_numbers == (1, 2, 3) and info.path == str(plates / "p6.%06d.exr")
    # unpadded: %d, $F and one '@' take 1, 2, ... 12
    for spelling in ("un.%d.exr", "un.$F.exr", "un.@.exr"):
        info = open_footage(plates / spelling).info
        assert info.frame_numbers == tuple(range(1, 13)) and info.frame_file(12) == str(plates / "un.12.exr")
    # a 4-digit pattern takes numbers past 9999 (more digits, no leading zero), not other paddings
    grey_exr(plates / "sh.10000.exr", 0.5)
    grey_exr(plates / "sh.7.exr", 0.5)
    grey_exr(plates / "sh.000008.exr", 0.5)
    assert frames(plates / "sh.####.exr", hold_missing=True)[-1] == 10000
    assert 7 not in frames(plates / "sh.####.exr", hold_missing=True)
    with pytest.raises(InputError, match="no frames match"):
        open_footage(plates / "p6.####.exr")  # 6-digit files are not a 4-digit sequence


def test_two_tokens_and_a_folder_of_sequences(plates):
    with pytest.raises(InputError, match="more than one frame-number token"):
        open_footage(plates / "sh.####.v@@.exr")
    with pytest.raises(InputError, match=r"4 image sequences.*neg\.%04d\.exr \(-3-2; 6 files\)"):
        open_footage(plates)


def test_info_and_render_keep_a_stepped_range(plates, tmp_path, capsys):
    from dvd_vfx.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["info", str(plates / "sh.1001-1005x2#.exr")])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "frames:      1001-1005 (3 frames)" in out

    from dvd_vfx.render import RenderOptions, render_shot

    class Luma:
        name = "luma"

        def identity(self):
            return {"predictor": "luma", "model_id": "luma-1", "weights_sha256": "0" * 64}

        def predict(self, frames):
            return (frames.mean(axis=-1) * 0.8 + 0.1).astype(np.float32)

    out_dir = tmp_path / "out"
    result = render_shot(str(plates / "sh.1001-1005x2#.exr"),
                         RenderOptions(out_dir=out_dir, resolution=16, window=5, overlap=2), Luma())
    assert result.shot == "sh" and result.pattern == str(out_dir / "sh.depth.####.exr")
    assert sorted(p.name for p in out_dir.iterdir()) == ["sh.depth.1001.exr", "sh.depth.1003.exr", "sh.depth.1005.exr"]
    neg = render_shot(str(plates / "neg.####.exr"), RenderOptions(out_dir=tmp_path / "neg", resolution=16, window=5,
                                                                  overlap=2), Luma())
    assert [p.name for p in neg.paths][:2] == ["neg.depth.-003.exr", "neg.depth.-002.exr"]


@pytest.mark.parametrize("pattern", ["fog.####.png", "fog.%04d.png", "fog.@@@@.png", "fog.$F4.png", "fog.#.png"])
def test_output_patterns_take_every_spelling(tmp_path, pattern):
    from dvd_vfx.comp import frame_path

    assert frame_path(str(tmp_path / pattern), 1001) == str(tmp_path / "fog.1001.png")
    assert frame_path(str(tmp_path / pattern), 7) == str(tmp_path / "fog.0007.png")
    assert frame_path(str(tmp_path / pattern), -7) == str(tmp_path / "fog.-007.png")
    assert frame_path(str(tmp_path / "fog.png"), 7) == str(tmp_path / "fog.png")  # one file: no token
