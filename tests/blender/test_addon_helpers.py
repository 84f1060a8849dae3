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


from dvd_blender_utils import exr, job, solve  # noqa: E402


def test_the_addon_imports_nothing_of_the_engine():
    """An extension is self-contained: no dvd_vfx / torch / numpy / pluggy import, no sys.path edits."""
    import ast

    from conftest import ADDON_SRC

    for path in ADDON_SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                assert name.split(".")[0] not in ("dvd_vfx", "torch", "numpy", "pluggy", "platformdirs"), (path, name)
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
                raise AssertionError(f"{path} touches sys.path")


def test_render_request_passes_the_solve_anchors_instead_of_near_far():
    req = shot.RenderRequest(source="/f/plate.mov", out_dir="/o", shot="plate", anchors="/o/plate.anchors.csv")
    args = req.args()
    assert args[args.index("--anchors") + 1] == "/o/plate.anchors.csv" and "--near" not in args
    with pytest.raises(ValueError, match="mode depth"):
        shot.RenderRequest(source="s", out_dir="o", shot="s", mode="disparity", anchors="a.csv").args()


def test_job_events_of_another_schema_or_stray_lines_are_skipped():
    assert job.parse_event('{"schema": "dvd-vfx.job/1", "event": "progress", "stage": "predict"}')["stage"] == "predict"
    assert job.parse_event('{"schema": "dvd-vfx.job/2", "event": "progress"}') is None
    assert job.parse_event('{"schema": "dvd-vfx.job/1", "event": "nope"}') is None
    assert job.parse_event("loading weights...") is None and job.parse_event("{broken") is None


def test_job_names_an_engine_python_without_dvd_vfx(tmp_path):
    bare = tmp_path / "py"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    j = job.EngineJob(str(bare), ["plate.mov", "-o", str(tmp_path)])
    while j.poll():
        pass
    assert j.result is None and "cannot import dvd_vfx" in str(j.error) and str(bare) in str(j.error)
    with pytest.raises(RuntimeError, match="does not exist"):
        job.EngineJob(str(tmp_path / "missing"), [])


def test_job_replays_a_failing_render_as_one_error(engine_py, tmp_path):
    from conftest import run_engine

    run_engine("import sys; from dvd_vfx.model.tiny import write_tiny_weights; write_tiny_weights(sys.argv[1], seed=0)",
               str(tmp_path / "w"))
    seen = []
    j = job.EngineJob(engine_py, [str(tmp_path / "missing.mov"), "-o", str(tmp_path / "out"), "--weights",
                                  str(tmp_path / "w")], on_progress=lambda *a: seen.append(a))
    while j.poll():
        pass
    assert j.error.type == "InputError" and j.error.exit_code == 2 and "missing.mov" in j.error.message
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


WRITE_EXR = """
import json, sys, OpenEXR, numpy as np
z = (np.arange(37 * 53, dtype=np.float32).reshape(37, 53) * 0.37 + 1.5)
comp = {"none": OpenEXR.NO_COMPRESSION, "rle": OpenEXR.RLE_COMPRESSION, "zips": OpenEXR.ZIPS_COMPRESSION,
        "zip": OpenEXR.ZIP_COMPRESSION, "piz": OpenEXR.PIZ_COMPRESSION}[sys.argv[2]]
header = {"compression": comp, "type": OpenEXR.scanlineimage, "dvd/anchors": json.dumps({"used": 7, "rejected": 1})}
OpenEXR.File(header, {"depth.Z": z, "other.Z": -z}).write(sys.argv[1])
"""


@pytest.mark.parametrize("compression", ["none", "rle", "zips", "zip"])
def test_exr_reader_matches_openexr(engine_py, tmp_path, compression):
    from conftest import run_engine

    path = tmp_path / f"p.{compression}.exr"
    run_engine(WRITE_EXR, str(path), compression)
    for x, y in [(0, 0), (52, 0), (0, 36), (17, 20), (52, 36), (5, 31)]:
        assert exr.read_value(str(path), x, y) == pytest.approx((y * 53 + x) * 0.37 + 1.5, rel=1e-6)
        assert exr.read_value(str(path), x, y, "other.Z") == pytest.approx(-((y * 53 + x) * 0.37 + 1.5), rel=1e-6)
    assert exr.read_size(str(path)) == (53, 37)
    assert exr.read_anchors_header(str(path)) == {"used": 7, "rejected": 1}
    with pytest.raises(exr.ExrError, match="outside"):
        exr.read_value(str(path), 53, 0)
    with pytest.raises(exr.ExrError, match="no channel"):
        exr.read_value(str(path), 0, 0, "Z")


def test_exr_reader_refuses_piz_with_the_fix(engine_py, tmp_path):
    from conftest import run_engine

    path = tmp_path / "p.exr"
    run_engine(WRITE_EXR, str(path), "piz")
    with pytest.raises(exr.ExrError, match="--compression zip"):
        exr.read_value(str(path), 0, 0)


def _look_at(eye, yaw_deg):
    """Camera-to-world: at `eye`, looking along +Y turned by yaw about Z (Blender camera: -Z forward, +Y up)."""
    import math

    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    right, up, back = (c, s, 0.0), (0.0, 0.0, 1.0), (s, -c, 0.0)
    return [[right[i], up[i], back[i], eye[i]] for i in range(3)] + [[0.0, 0.0, 0.0, 1.0]]


def test_solve_projection_conventions():
    """Top-left pixels with +0.5 centres, depth along the view axis, scale, source frames, range, visibility."""
    k = solve.Intrinsics(width=200, height=100, focal_px=100.0, cx=100.0, cy=50.0)
    cam = _look_at((0.0, 0.0, 0.0), 0.0)
    # straight ahead 10 units: the frame's centre; 2 up and 1 right at depth 10: right of and ABOVE the centre
    assert solve.project(cam, (0.0, 10.0, 0.0), k) == pytest.approx((100.0, 50.0, 10.0))
    assert solve.project(cam, (1.0, 10.0, 2.0), k) == pytest.approx((110.0, 30.0, 10.0))
    assert solve.project(cam, (0.0, -5.0, 0.0), k) is None  # behind
    moved = _look_at((3.0, -2.0, 0.0), 30.0)
    point = (3.0 - 12 * 0.5, -2.0 + 12 * 3 ** 0.5 / 2, 0.0)  # 12 units along the view axis
    assert solve.project(moved, point, k)[2] == pytest.approx(12.0)
    tracks = [("A", (1.0, 10.0, 2.0), {1: (0.55, 0.7), 2: (0.55, 0.7), 5: (0.5, 0.5)}),
              ("B", (50.0, 10.0, 0.0), {1: (1.2, 0.5)})]  # B is outside the frame
    cameras = {1: cam, 2: cam}  # frame 5 is not solved
    got = solve.anchors_from_solve(cameras, tracks, k, scale=2.5, source_offset=1000)
    assert [(a.frame, a.x, a.y, a.depth) for a in got] == [(1001, 110.0, 30.0, 25.0), (1002, 110.0, 30.0, 25.0)]
    assert [a.frame for a in solve.anchors_from_solve(cameras, tracks, k, source_offset=1000,
                                                       frames=(1002, 1010))] == [1002]
    scaled = [[2.0 * v for v in row[:3]] + [row[3]] for row in moved[:3]] + [moved[3]]
    assert solve.uniform_scale(scaled) == pytest.approx(2.0)


def test_anchors_csv_is_what_the_engine_reads(engine_py, tmp_path):
    from conftest import run_engine

    rows = [solve.Anchor(1001, 10.25, 20.5, 3.5), solve.Anchor(1002, 0.5, 0.5, 12.0), solve.Anchor(1003, 5, 6, 7)]
    path = solve.write_anchors_csv(str(tmp_path / "a" / "shot.anchors.csv"), rows)
    out = run_engine("import sys; from dvd_vfx.anchors import read_anchors; "
                     "print([(a.frame, a.x, a.y, a.depth) for a in read_anchors(sys.argv[1])])", path)
    assert out.strip() == "[(1001, 10.25, 20.5, 3.5), (1002, 0.5, 0.5, 12.0), (1003, 5.0, 6.0, 7.0)]"
    assert not list((tmp_path / "a").glob("*.tmp"))
    line = solve.describe_fit({"used": 40, "rejected": 2, "medianRelError": 0.012, "worstRelError": 0.08}, 21)
    assert line == "Scene scale: 21 bundles, 40 anchors used, 2 rejected; depth error median 1.2 %, worst 8.0 %"
