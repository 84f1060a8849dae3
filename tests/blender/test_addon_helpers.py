"""The add-on's pure helpers (plugins/blender/utils): no bpy, run in every venv."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import load_addon_utils

utils = load_addon_utils()
from dvd_blender_utils import engine as eng  # noqa: E402
from dvd_blender_utils import shot  # noqa: E402


@pytest.mark.parametrize("name, expected", [("plate.mov", "plate"), ("sh010 plate.mp4", "sh010_plate"),
                                            ("plate.1001.exr", "plate"), ("plate.####.exr", "plate"),
                                            ("???", "shot"), ("Clip.001", "Clip")])
def test_shot_name(name, expected):
    assert shot.shot_name(name) == expected


def test_sequence_pattern_keeps_padding_and_first_frame():
    assert shot.sequence_pattern("/a/b/plate.1001.exr") == ("/a/b/plate.####.exr", 1001)
    assert shot.sequence_pattern("/a/sh2_v3/plate_00007.png") == ("/a/sh2_v3/plate_#####.png", 7)
    with pytest.raises(ValueError, match="not a numbered image sequence"):
        shot.sequence_pattern("/a/plate.exr")


def test_output_dir_is_relative_to_the_blend_and_names_the_clip(tmp_path):
    assert shot.resolve_output_dir("//depth/<clip>/", blend_dir="/proj/sh010", shot="plate") == \
        os.path.normpath("/proj/sh010/depth/plate")
    assert shot.resolve_output_dir("", blend_dir="/p", shot="x") == os.path.normpath("/p/depth/x")
    assert shot.resolve_output_dir(str(tmp_path / "<clip>"), blend_dir=None, shot="x") == str(tmp_path / "x")
    with pytest.raises(ValueError, match="save the .blend"):
        shot.resolve_output_dir("//depth/", blend_dir=None, shot="x")


def _clip_source_frame(scene, clip_start, clip_offset, source_first):
    """What Blender's movie clip shows at a scene frame (BKE_movieclip_remap_scene_to_clip_frame + offset)."""
    return scene - clip_start + 1 + clip_offset + (source_first - 1)


def _image_file_frame(scene, m):
    """What Blender's image user reads at a scene frame (BKE_image_user_frame_get, in range)."""
    return scene - m.frame_start + 1 + m.frame_offset


@pytest.mark.parametrize("clip_start, clip_offset, source_first, first, last", [
    (1, 0, 1, 1, 24), (101, 0, 1, 1, 24), (1, 5, 1001, 1001, 1100), (10, -3, 1001, 1010, 1020), (1, 0, 1, 5, 9)])
def test_pass_frames_play_where_the_clip_shows_the_same_source_frame(clip_start, clip_offset, source_first,
                                                                    first, last):
    m = shot.image_user_mapping(clip_start=clip_start, clip_offset=clip_offset, source_first=source_first,
                                first=first, last=last)
    assert m.frame_duration == last - first + 1
    for scene in range(m.frame_start, m.frame_start + m.frame_duration):
        assert _image_file_frame(scene, m) == _clip_source_frame(scene, clip_start, clip_offset, source_first)
    assert _image_file_frame(m.frame_start, m) == first


def test_render_request_args():
    req = shot.RenderRequest(source="/f/plate.mov", out_dir="/o", shot="plate", preset="preview", near=2, far=40,
                             frames=(3, 9), weights="/w", cache_dir="/c", extra_args="--device cpu --window 5")
    assert req.args() == ["/f/plate.mov", "-o", "/o", "--shot", "plate", "--mode", "depth", "--near", "2",
                          "--far", "40", "--preset", "preview", "--frames", "3-9", "--weights", "/w",
                          "--cache-dir", "/c", "--replace", "--device", "cpu", "--window", "5"]
    assert "--near" not in shot.RenderRequest(source="s", out_dir="o", shot="s", mode="disparity").args()
    with pytest.raises(ValueError, match="near"):
        shot.RenderRequest(source="s", out_dir="o", shot="s", near=5, far=5).args()
    with pytest.raises(ValueError, match="empty"):
        shot.RenderRequest(source="s", out_dir="o", shot="s", frames=(9, 3)).args()


def test_progress_is_monotonic_over_stages():
    seq = [("predict", 0, 4), ("predict", 4, 4), ("stitch", 5, 10), ("write", 10, 10)]
    values = [shot.progress_fraction(*s) for s in seq]
    assert values == sorted(values) and values[0] == 0 and values[-1] == 1
    assert "Esc cancels" in shot.status_line("predict", 1, 4)


def test_engine_python_from_a_console_script_shebang(tmp_path):
    script = tmp_path / "dvd-vfx"
    script.write_text(f"#!{sys.executable}\nimport sys\n")
    assert eng.python_of_script(script) == sys.executable
    script.write_text("#!/usr/bin/env python3\n")
    assert eng.python_of_script(script) is not None
    script.write_text("no shebang\n")
    assert eng.python_of_script(script) is None


def test_engine_python_resolution_order(tmp_path):
    script = tmp_path / "dvd-vfx"
    script.write_text(f"#!{sys.executable}\n")
    which = {"dvd-vfx": str(script)}.get
    (tmp_path / "engine.json").write_text(f'{{"python": "{sys.executable}"}}')
    env = {"DVD_VFX_ENGINE_PYTHON": "/env/python"}
    assert eng.find_engine_python("/pref/python", env=env, addon_dir=tmp_path, which=which) == "/pref/python"
    assert eng.find_engine_python("", env=env, addon_dir=tmp_path, which=which) == "/env/python"
    assert eng.find_engine_python("", env={}, addon_dir=tmp_path, which=which) == sys.executable
    assert eng.find_engine_python("", env={}, addon_dir=tmp_path / "none", which=which) == sys.executable
    assert eng.find_engine_python("", env={}, addon_dir=None, which=lambda name: None) is None
