"""The Nuke host: plain logic directly; the Nuke layer against tests/fake_nuke.py (threading rules enforced).

A real render with the tiny model runs through the node's Render button, in a worker thread,
out of process (SubprocessJob); the test's main thread plays Nuke's event loop (fake_nuke.pump).
"""

from __future__ import annotations

import filecmp
import gc
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from dvd_vfx.errors import InputError
from dvd_vfx.hosts.nuke import shot
from dvd_vfx.hosts.nuke.shot import NodeSettings, ReadSource

ENGINE_PYTHON = os.environ.get("DVD_VFX_TEST_ENGINE_PYTHON") or sys.executable  # a host-Python run: the engine's
ENGINE_HERE = os.path.realpath(ENGINE_PYTHON) == os.path.realpath(sys.executable)
needs_engine = pytest.mark.skipif(not ENGINE_HERE, reason="imports the engine (torch, numpy): run by the engine's "
                                                          "Python, not a host Python")
REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
PLUGIN_DIR = REPO / "plugins" / "nuke"
PACKAGE_NUKE_PATH = REPO / "dvd_vfx" / "hosts" / "nuke" / "nuke_path"
FAST = "--resolution 48 --window 5 --overlap 2 --device cpu"


# -- plain logic: file knobs, offsets, paths, flags ----------------------------------------------------


@pytest.mark.parametrize("knob, expected", [
    ("/p/sh010.####.exr", "/p/sh010.%04d.exr"),
    ("/p/sh010.%04d.exr", "/p/sh010.%04d.exr"),
    ("/p/sh010.#.exr", "/p/sh010.%d.exr"),  # Nuke: one '#' = one digit (the engine would read 4)
    ("/p/sh010_######.dpx", "/p/sh010_%06d.dpx"),
    ("/p/sh010.%d.png", "/p/sh010.%d.png"),
])
def test_file_knob_padding_becomes_printf(knob, expected):
    assert shot.engine_pattern(knob) == expected


@pytest.mark.parametrize("knob, words", [
    ("", "empty"), ("[getenv PLATE]/a.####.exr", "TCL"), ("/p/a.%V.####.exr", "view"),
    ("/p/a_####.####.exr", "more than one"),
])
def test_file_knobs_the_engine_cannot_take_are_named(knob, words):
    with pytest.raises(InputError, match=words):
        shot.engine_pattern(knob)


def test_shot_name_and_movie_detection():
    assert shot.shot_name("/p/sh010_plate.####.exr") == "sh010_plate"
    assert shot.shot_name("/p/sh010_plate_%04d.exr") == "sh010_plate"
    assert shot.shot_name("/p/my plate.mov") == "my_plate"
    assert shot.is_movie("/p/a.MOV") and shot.is_movie("a.mp4") and not shot.is_movie("/p/a.####.exr")
    movie = ReadSource.from_knobs(file="/p/a.mov", first=1, last=48)
    assert movie.engine_source == "/p/a.mov"  # a movie path is passed unchanged


@pytest.mark.parametrize("mode, frame, first, offset", [
    ("expression", "", 1001, 0), ("expression", "frame", 1001, 0), ("expression", "frame+1000", 1, -1000),
    ("expression", "frame - 24", 1, 24), ("offset", "-1000", 1001, -1000), ("offset", "", 1001, 0),
    ("start at", "1", 1001, -1000), ("start at", "1001", 1, 1000),
])
def test_frame_offsets_of_a_read(mode, frame, first, offset):
    assert shot.frame_offset(mode, frame, first) == offset


def test_unsupported_frame_expression_says_what_to_do():
    with pytest.raises(InputError, match="offset"):
        shot.frame_offset("expression", "frame*2", 1)


def test_plan_for_a_sequence_with_an_offset_uses_file_frames_and_the_default_output():
    source = ReadSource.from_knobs(file="/plates/sh010.####.exr", first=1001, last=1100, frame_mode="offset",
                                   frame="-1000")
    assert source.comp_range == (1, 100)
    request = shot.plan_render(source, NodeSettings(engine_python="/venv/bin/python", weights="/w", near=2, far=50,
                                                    extra_args="--device 'cuda:1'"),
                               script_dir="/comp/sh010")
    assert request.comp_range == (1, 100) and request.file_range == (1001, 1100)
    assert request.out_dir == "/comp/sh010/depth/sh010" and request.shot == "sh010"
    assert request.pattern == "/comp/sh010/depth/sh010/sh010.depth.####.exr"
    assert request.args == ["/plates/sh010.%04d.exr", "-o", "/comp/sh010/depth/sh010", "--shot", "sh010",
                            "--frames", "1001-1100", "--mode", "depth", "--near", "2.0", "--far", "50.0",
                            "--weights", "/w", "--replace", "--device", "cuda:1"]
    # a sub-range in comp frames
    part = shot.plan_render(source, NodeSettings(use_read_range=False, first=10, last=20, engine_python="py",
                                                 mode="disparity", preset="preview"), script_dir="/c")
    assert part.file_range == (1010, 1020)
    assert "--near" not in part.args and part.args[part.args.index("--preset") + 1] == "preview"
    with pytest.raises(InputError, match="outside the Read's frames 1-100"):
        shot.plan_render(source, NodeSettings(use_read_range=False, first=0, last=20, engine_python="py"),
                         script_dir="/c")


def test_plan_for_a_movie_numbers_frames_from_one():
    source = ReadSource.from_knobs(file="/plates/take3.mov", first=1, last=48, frame_mode="start at", frame="1001")
    request = shot.plan_render(source, NodeSettings(engine_python="py"), script_dir="/c")
    assert request.comp_range == (1001, 1048) and request.file_range == (1, 48)
    assert request.args[:8] == ["/plates/take3.mov", "-o", "/c/depth/take3", "--shot", "take3", "--frames", "1-48",
                                "--start-frame"]


def test_output_knob_rules_and_engine_python_resolution():
    source = ReadSource.from_knobs(file="/p/a.####.exr", first=1, last=5)
    custom = shot.plan_render(source, NodeSettings(output="renders/hero.depth.%04d.exr", engine_python="py"),
                              script_dir="/comp")
    assert (custom.out_dir, custom.shot) == ("/comp/renders", "hero")
    with pytest.raises(InputError, match="SHOT.depth.####.exr"):
        shot.plan_render(source, NodeSettings(output="/o/hero.####.exr", engine_python="py"))
    with pytest.raises(InputError, match="not saved"):
        shot.plan_render(source, NodeSettings(engine_python="py"), script_dir="")
    with pytest.raises(InputError, match="near < far"):
        shot.plan_render(source, NodeSettings(near=5, far=5, engine_python="py"), script_dir="/c")
    assert shot.resolve_engine_python("", environ={"DVD_VFX_PYTHON": "/env/py"}, configured="/cfg/py") == "/env/py"
    assert shot.resolve_engine_python("", environ={}, configured="/cfg/py") == "/cfg/py"
    with pytest.raises(InputError, match="dvd-vfx install nuke"):
        shot.resolve_engine_python("", environ={}, configured=None)


def test_helper_maths_match_the_mode():
    assert shot.zdefocus_math("depth") == "depth"  # real distance: large = far
    assert shot.zdefocus_math("disparity") == "far = 0"  # 1/z-like: near = 1, far -> 0
    assert shot.fog_amount_expression("depth", 2, 50) == "clamp((depth.Z - 2) / (50 - 2))"
    assert shot.fog_amount_expression("disparity", 2, 50) == "clamp(1 - depth.Z)"
    assert [shot.progress_percent(*e) for e in (("predict", 0, 4), ("predict", 2, 4), ("stitch", 5, 10),
                                                ("write", 10, 10))] == [0, 40, 85, 100]


# -- the fake Nuke -------------------------------------------------------------------------------------


@pytest.fixture
def nuke(monkeypatch, tmp_path):
    import fake_nuke

    script_dir = tmp_path / "comp"
    script_dir.mkdir()
    fake_nuke.reset(script_directory=str(script_dir))
    monkeypatch.setitem(sys.modules, "nuke", fake_nuke)
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))  # as NUKE_PATH would
    monkeypatch.delitem(sys.modules, "dvd_nuke", raising=False)
    yield fake_nuke
    assert fake_nuke.violations == [], "a node, knob or dialog was touched off the main thread"


def test_fake_nuke_enforces_the_main_thread_rule(nuke):
    read = nuke.nodes.Read(file="/p/a.####.exr")
    first = read["first"]
    errors = []

    def worker():
        for touch in (lambda: read["file"].value(), lambda: read["first"].setValue(3), lambda: nuke.message("x"),
                      lambda: nuke.nodes.Grade()):
            try:
                touch()
            except RuntimeError as exc:
                errors.append(str(exc))
        nuke.executeInMainThread(first.setValue, (7,))  # the allowed way

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert len(errors) == 4 and len(nuke.violations) == 4
    assert read["first"].value() == 0  # queued, not run yet
    assert nuke.pump() == 1 and read["first"].value() == 7
    with pytest.raises(RuntimeError):
        nuke.executeInMainThread(print, ())  # from the main thread: not allowed either
    nuke.violations.clear()
    # unknown knobs fail as in Nuke (NameError), also as creation keywords; signatures are checked
    with pytest.raises(NameError, match="fiel"):
        read["fiel"]
    with pytest.raises(NameError, match="frist"):
        nuke.nodes.Read(frist=1)
    with pytest.raises(TypeError):
        nuke.Enumeration_Knob("mode", "mode")  # values are required
    with pytest.raises(TypeError):
        nuke.XY_Knob("p").setValue(3.0)
    with pytest.raises(TypeError):
        nuke.ProgressTask("t").setProgress(42.5)
    # TCL in a file knob: kept by value(), expanded by nuke.filename (#### as %04d)
    read["file"].setValue("[getenv DVD_FAKE_UNSET_VAR]/p/a.####.exr")
    assert read["file"].value().startswith("[getenv") and nuke.filename(read) == "/p/a.%04d.exr"


def _plate_read(nuke, file, first, last, frame_mode="expression", frame=""):
    read = nuke.nodes.Read(file=str(file), first=first, last=last, origfirst=first, origlast=last)
    read["frame_mode"].setValue(frame_mode)
    read["frame"].setValue(frame)
    return read


def test_menu_creates_the_dvd_depth_group_with_its_knobs(nuke):
    init_globals = {"nuke": nuke}
    exec((PLUGIN_DIR / "init.py").read_text(), init_globals)
    exec((PLUGIN_DIR / "menu.py").read_text(), {"nuke": nuke})
    command = nuke.menu("Nodes").findItem("DVD").findItem("DVD Depth")
    assert callable(command)  # a callable, not a code string
    node = command()
    assert node.Class() == "Group"
    for name in ("preset", "mode", "near", "far", "use_read_range", "first", "last", "output", "engine_python",
                 "weights", "render", "cancel", "status", "add_zdefocus", "add_fog"):
        assert name in node.knobs(), name
    assert node["mode"].values() == ["depth", "disparity"]
    assert node["preset"].values()[0] == "standard" and "preview" in node["preset"].values()
    assert (node["near"].value(), node["far"].value()) == (1.0, 100.0)
    for name in ("resolution", "window", "overlap", "dtype", "offload", "view", "focus_point", "anchor_points",
                 "anchor_distance", "add_anchor", "anchors_file", "submit_farm", "side_read"):
        assert name in node.knobs(), name
    assert node["dtype"].values() == ["auto", "bf16", "fp16", "fp32"] and node["offload"].values()[0] == "auto"
    # inside: plate -> Copy (B) <- Read of the pass (A) -> Output; the Copy waits, disabled, for a pass
    assert sorted(n.Class() for n in node.nodes()) == ["Copy", "Input", "Output", "Read"]
    copy = node.node("depth_copy")
    assert copy.input(0) is node.node("plate") and copy.input(1) is node.node("depth_read")
    assert copy["disable"].value() is True and node.node("depth_read")["raw"].value() is True
    assert nuke.undo_log == ["begin Create DVD Depth", "end"]
    # hidden knobs: the INVISIBLE flag, which a saved script keeps (setVisible would not survive a reload)
    nuke.save_and_reload()
    for name in ("dvd_depth_version", "depth_zdefocus", "depth_fog", "depth_side_read"):
        assert node[name].getFlag(nuke.INVISIBLE), name
    assert not node["mode"].getFlag(nuke.INVISIBLE)


def test_read_found_upstream_and_offsets_planned(nuke):
    import dvd_nuke

    read = _plate_read(nuke, "/plates/sh020.####.exr", 1001, 1010, "start at", "1")
    grade = nuke.nodes.Grade()
    grade.setInput(0, read)
    node = dvd_nuke.create_node()
    node.setInput(0, grade)
    node["engine_python"].setValue("/venv/bin/python")
    assert dvd_nuke.find_read(node) is read
    request = dvd_nuke.plan(node)
    assert request.file_range == (1001, 1010) and request.comp_range == (1, 10)
    assert (node["first"].value(), node["last"].value()) == (1, 10)  # the knobs show the Read's range
    assert request.args[0] == "/plates/sh020.%04d.exr"


def test_render_without_a_read_explains_in_a_message(nuke):
    import dvd_nuke

    node = dvd_nuke.create_node()
    node["render"].execute()
    assert not dvd_nuke.is_rendering(node)
    assert len(nuke.messages) == 1 and "no Read upstream" in nuke.messages[0]
    assert node["status"].value().startswith("not rendered:")


@pytest.fixture(scope="module")
def png_plate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plates")
    ffmpeg = subprocess.run([ENGINE_PYTHON, "-c", "from dvd_vfx.footage.ffmpeg_tools import find_ffmpeg; "
                             "print(find_ffmpeg())"], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24",
                    "-frames:v", "6", "-start_number", "1001", str(folder / "sh030.%04d.png")], check=True)
    return folder / "sh030.####.png"


@pytest.fixture(scope="module")
def engine_weights(tmp_path_factory):
    """The tiny DVD release, written by the engine's Python (this one may be a host Python without torch)."""
    folder = tmp_path_factory.mktemp("tiny-weights")
    subprocess.run([ENGINE_PYTHON, "-c", "import sys; from dvd_vfx.model.tiny import write_tiny_weights; "
                    "write_tiny_weights(sys.argv[1], seed=0)", str(folder)], check=True, timeout=300)
    return folder


def _exr(path):
    """(channels, {channel: rows of values}) of an EXR, read by the engine's Python (OpenEXR lives there)."""
    code = ("import json, sys, OpenEXR\nwith OpenEXR.File(sys.argv[1]) as f:\n"
            "    ch = f.channels()\n"
            "    print(json.dumps({k: v.pixels.astype(float).tolist() for k, v in ch.items()}))")
    out = subprocess.run([ENGINE_PYTHON, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _dvd_node(nuke, dvd_nuke, plate, weights, *, extra=FAST, **knobs):
    read = _plate_read(nuke, plate, 1001, 1006, "offset", "-1000")
    node = dvd_nuke.create_node()
    node.setInput(0, read)
    node["engine_python"].setValue(ENGINE_PYTHON)
    node["weights"].setValue(str(weights))
    node["extra_args"].setValue(extra)
    for name, value in knobs.items():
        node[name].setValue(value)
    return node


def _wait(nuke, dvd_nuke, node, timeout=120):
    nuke.pump_until(lambda: not dvd_nuke.is_rendering(node), timeout=timeout)


@pytest.mark.slow
def test_render_button_renders_in_a_worker_and_puts_depth_in_the_nodes_stream(nuke, png_plate, engine_weights,
                                                                                tmp_path, monkeypatch):
    import dvd_nuke

    monkeypatch.setenv("DVD_VFX_CACHE_DIR", str(tmp_path / "cache"))
    node = _dvd_node(nuke, dvd_nuke, png_plate, engine_weights, mode="disparity", add_zdefocus=True,
                     add_fog=True)
    nuke.frame(3)
    assert node.channels() == ["rgba.blue", "rgba.green", "rgba.red"]  # no pass yet: the plate passes through
    gc.disable()  # the progress task must end without the garbage collector's help
    try:
        node["render"].execute()  # the button, on the main thread
        assert dvd_nuke.is_rendering(node) and node["status"].value().startswith("rendering sh030 frames 1-6")
        _wait(nuke, dvd_nuke, node)
        task = nuke.progress_tasks[-1]
        assert task.ended, "the ProgressTask is still on screen after the render ended"
    finally:
        gc.enable()
    assert nuke.messages == [], nuke.messages
    assert node["status"].value().startswith("done: sh030 frames 1001-1006 (rendered"), node["status"].value()

    # the pass is in the node's own stream: inner Read (raw, offset like the plate) -> Copy depth.Z into the plate
    read, copy = node.node("depth_read"), node.node("depth_copy")
    pattern = read["file"].value()
    assert pattern == str(Path(nuke.script_directory()) / "depth" / "sh030" / "sh030.depth.####.exr")
    assert (read["first"].value(), read["last"].value()) == (1001, 1006)
    assert (read["frame_mode"].value(), read["frame"].value()) == ("offset", "-1000")
    assert read["raw"].value() is True and copy["disable"].value() is False
    assert copy.input(1) is read and copy["from0"].value() == copy["to0"].value() == "depth.Z"
    assert not os.path.exists(pattern.replace("####", "1007"))
    exr = _exr(pattern.replace("####", "1003"))
    assert list(exr) == ["depth.Z"]
    # comp frame 3 shows file frame 1003; Nuke's y axis is bottom-up: (x, y) samples row h-1-floor(y)
    nuke.frame(3)
    assert node.channels() == ["depth.Z", "rgba.blue", "rgba.green", "rgba.red"]  # the Viewer's channel menu
    nuke.frame(9)  # past the plate: the Read holds its last frame, depth.Z is black but still in the stream
    assert node.channels() == ["depth.Z", "rgba.blue", "rgba.green", "rgba.red"]
    assert node.sample("depth.Z", 10.5, 5.5) == 0.0
    nuke.frame(3)
    h = len(exr["depth.Z"])
    for x, y in ((10.5, 5.5), (40.5, 30.5), (0.5, h - 0.5)):
        assert node.sample("depth.Z", x, y) == pytest.approx(exr["depth.Z"][h - 1 - int(y)][int(x)], abs=1e-6)
    assert node.sample("rgba.red", 10.5, 5.5) > 0  # the plate passes through

    # focus: dragging the focus point sets the ZDefocus focus plane to depth.Z under it
    defocus = nuke.toNode(node["depth_zdefocus"].value())
    assert defocus.input(0) is node and defocus["math"].value() == "far = 0"
    assert defocus["z_channel"].value() == "depth.Z"
    nuke.user_set(node["focus_point"], [40.5, 30.5])
    expected = exr["depth.Z"][h - 1 - 30][40]
    assert defocus["center"].value() == pytest.approx(expected, abs=1e-6)
    assert defocus["focal_point"].value() == [40.5, 30.5]
    assert node["focus_depth"].value() == f"{expected:.4g} at frame 3"
    fog = nuke.toNode(node["depth_fog"].value())
    assert fog["temp_expr0"].value() == "clamp(1 - depth.Z)" and fog.input(0) is node

    # the worker reported through a ProgressTask and changed the graph only via executeInMainThread
    assert task.name == "DVD Depth: sh030" and task.progress[-1] == 100 and max(task.progress) <= 100
    assert task.threads == {f"dvd-depth-{node.fullName()}"}
    assert "show_progress" in nuke.main_thread_calls and nuke.main_thread_calls[-1] == "render_ended"

    # re-render, unchanged shot, depth mode now: a cache hit; the same helpers are updated in place
    count = len(nuke.root().nodes())
    node["mode"].setValue("depth")
    t0 = time.monotonic()
    node["render"].execute()
    _wait(nuke, dvd_nuke, node)
    assert "cache hit" in node["status"].value(), node["status"].value()
    assert time.monotonic() - t0 < 30
    assert len(nuke.root().nodes()) == count
    assert defocus["math"].value() == "depth" and read["label"].value() == "depth.Z (depth)"


@pytest.mark.slow
def test_engine_error_reaches_nuke_message_as_one_line(nuke, png_plate, tmp_path, monkeypatch):
    """(the engine refuses the missing weights folder)"""
    import dvd_nuke

    monkeypatch.setenv("DVD_VFX_CACHE_DIR", str(tmp_path / "cache"))
    node = _dvd_node(nuke, dvd_nuke, png_plate, tmp_path / "no-weights-here")
    node["render"].execute()
    _wait(nuke, dvd_nuke, node)
    assert len(nuke.messages) == 1
    message = nuke.messages[0]
    assert message.startswith(f"DVD Depth {node.name()} failed:\n")
    engine_line = message.split("\n", 1)[1]
    assert "\n" not in engine_line and "no-weights-here" in engine_line
    assert node["status"].value() == f"failed: {engine_line}"
    assert not node.node("depth_read")["file"].value() and node.node("depth_copy")["disable"].value()


def test_bad_engine_python_is_reported_without_touching_nodes_from_the_worker(nuke, png_plate, tmp_path):
    import dvd_nuke

    node = _dvd_node(nuke, dvd_nuke, png_plate, tmp_path)
    node["engine_python"].setValue(str(tmp_path / "nope" / "python"))
    node["render"].execute()
    _wait(nuke, dvd_nuke, node, timeout=30)
    assert len(nuke.messages) == 1 and "engine Python" in nuke.messages[0] and "does not exist" in nuke.messages[0]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["cancel button", "progress task"])
def test_cancel_stops_the_engine_and_says_so(nuke, png_plate, engine_weights, tmp_path, monkeypatch, how):
    import dvd_nuke

    monkeypatch.setenv("DVD_VFX_CACHE_DIR", str(tmp_path / "cache"))
    node = _dvd_node(nuke, dvd_nuke, png_plate, engine_weights, extra=FAST + " --no-cache")
    worker = dvd_nuke.render(node)
    if how == "cancel button":
        node["cancel"].execute()
        assert node["status"].value() == "cancelling ..."
    else:
        nuke.pump_until(lambda: nuke.progress_tasks, timeout=10)
        nuke.progress_tasks[-1].cancel()  # the user clicks Cancel on Nuke's progress bar
    _wait(nuke, dvd_nuke, node, timeout=60)
    assert worker.job is not None and worker.job.proc.poll() is not None  # the engine is gone
    assert node["status"].value().startswith("cancelled"), node["status"].value()
    assert nuke.messages == [] and not node.node("depth_read")["file"].value()


# -- frames, paths, settings, anchors, helpers (fake Nuke, no render) -----------------------------------


def _frame_of(path):
    import re

    return None if path is None else int(re.findall(r"\.(\d+)\.[a-z]+$", path)[0])


@pytest.mark.parametrize("mode, frame", [("start at", "1"), ("offset", "-1000"), ("expression", "frame+1000"),
                                         ("expression", ""), ("start at", "2001")])
def test_depth_lines_up_with_the_plate_for_every_read_frame_mode(nuke, mode, frame):
    """A partial render (file frames 1010-1020) shows each depth frame where the plate shows that file frame."""
    import dvd_nuke
    from dvd_vfx.hosts.nuke import node as node_module

    plate = _plate_read(nuke, "/plates/sh050.####.exr", 1001, 1100, mode, frame)
    node = dvd_nuke.create_node()
    node.setInput(0, plate)
    node["engine_python"].setValue("/venv/bin/python")
    offset = shot.frame_offset(mode, frame, 1001)
    node["use_read_range"].setValue(False)
    node["first"].setValue(1010 + offset)
    node["last"].setValue(1020 + offset)
    request = dvd_nuke.plan(node)
    assert request.file_range == (1010, 1020)
    node_module.set_pass(node, request, "/comp/depth/sh050.depth.####.exr", 1010, 1020, "depth")
    depth = node.node("depth_read")
    shown = {}
    for comp in range(1005 + offset, 1026 + offset):
        plate_file, depth_file = _frame_of(plate._frame_file(comp)), _frame_of(depth._frame_file(comp))
        shown[comp] = depth_file
        if 1010 <= plate_file <= 1020:
            assert depth_file == plate_file, (comp, plate_file, depth_file)
        else:
            assert depth_file is None, (comp, depth_file)  # black outside the rendered frames
    assert shown[1010 + offset] == 1010


def test_plate_paths_as_nuke_resolves_them(nuke, monkeypatch, tmp_path):
    import dvd_nuke

    monkeypatch.setenv("DVD_TEST_PLATES", "/srv/plates")
    read = _plate_read(nuke, "[getenv DVD_TEST_PLATES]/sh040/sh040.####.exr", 1, 10)
    node = dvd_nuke.create_node()
    node.setInput(0, read)
    node["engine_python"].setValue("/venv/bin/python")
    assert dvd_nuke.plan(node).args[0] == "/srv/plates/sh040/sh040.%04d.exr"  # TCL expanded by nuke.filename
    # a relative plate: against the root's project directory, else the script's folder
    read["file"].setValue("plates/sh040.####.exr")
    assert dvd_nuke.plan(node).args[0] == os.path.join(nuke.script_directory(), "plates", "sh040.%04d.exr")
    nuke.root()["project_directory"].setValue("$env(DVD_TEST_PLATES)/project")
    assert dvd_nuke.plan(node).args[0] == "/srv/plates/project/plates/sh040.%04d.exr"
    # stereo: %V per view, a clear refusal without one
    nuke.reset(script_directory=str(tmp_path), views=("left", "right"))
    read = _plate_read(nuke, "/p/sh060.%V.####.exr", 1, 10)
    node = dvd_nuke.create_node()
    node.setInput(0, read)
    node["engine_python"].setValue("/venv/bin/python")
    node["render"].execute()
    assert "'view' knob" in nuke.messages[-1] and "left, right" in nuke.messages[-1]
    node["view"].setValue("right")
    request = dvd_nuke.plan(node)
    assert request.args[0] == "/p/sh060.right.%04d.exr" and request.shot == "sh060.right"
    node["view"].setValue("centre")
    with pytest.raises(InputError, match="'centre' is not one of this script's views"):
        dvd_nuke.plan(node)


def test_output_template_tokens(tmp_path):
    source = ReadSource.from_knobs(file="/p/sh070.####.exr", first=1, last=5)
    settings = NodeSettings(engine_python="py", output="renders/{shot}/{version}/{shot}_{version}.depth.####.exr")
    request = shot.plan_render(source, settings, script_dir="/comp", script_name="/comp/sh070_comp_v012.nk")
    assert (request.out_dir, request.shot) == ("/comp/renders/sh070/v012", "sh070_v012")
    named = shot.plan_render(source, NodeSettings(engine_python="py", output="/o/{script}.depth.####.exr"),
                             script_dir="/comp", script_name="/comp/sh070_comp_v012.nk")
    assert (named.out_dir, named.shot) == ("/o", "sh070_comp_v012")
    with pytest.raises(InputError, match=r"\{version\}.*no version"):
        shot.plan_render(source, settings, script_dir="/comp", script_name="/comp/sh070_comp.nk")
    with pytest.raises(InputError, match=r"unknown token \{take\}"):
        shot.plan_render(source, NodeSettings(engine_python="py", output="/o/{take}.depth.####.exr"),
                         script_dir="/comp", script_name="/comp/a_v1.nk")
    assert shot.script_version("/c/sh010_v003_fix.nk") == "v003" and shot.script_version("/c/dev.nk") == ""


def test_settings_knobs_become_engine_flags(nuke):
    import dvd_nuke

    node = dvd_nuke.create_node()
    node.setInput(0, _plate_read(nuke, "/p/sh080.####.exr", 1, 10))
    node["engine_python"].setValue("/venv/bin/python")
    assert not {"--resolution", "--window", "--overlap", "--dtype", "--offload"} & set(dvd_nuke.plan(node).args)
    for name, value in (("resolution", 320), ("window", 9), ("overlap", 2), ("dtype", "fp16"), ("offload", "on")):
        node[name].setValue(value)
    args = dvd_nuke.plan(node).args
    assert " ".join(args[args.index("--resolution"):args.index("--replace")]) == (
        "--resolution 320 --window 9 --overlap 2 --dtype fp16 --offload")
    node["offload"].setValue("off")
    assert "--no-offload" in dvd_nuke.plan(node).args
    node["overlap"].setValue(9)
    with pytest.raises(InputError, match="overlap 9 must be smaller than window 9"):
        dvd_nuke.plan(node)


def test_anchors_picked_in_the_viewer_become_the_engines_csv(nuke, png_plate):
    import dvd_nuke

    node = dvd_nuke.create_node()
    node.setInput(0, _plate_read(nuke, png_plate, 1001, 1006, "offset", "-1000"))
    node["engine_python"].setValue("/venv/bin/python")
    nuke.frame(3)
    node["focus_point"].setValue([10.5, 5.5])
    node["add_anchor"].execute()
    assert nuke.messages and "distance" in nuke.messages[-1]  # no distance typed yet: nothing added
    assert node["anchor_points"].value() == ""
    node["anchor_distance"].setValue(12.0)
    node["add_anchor"].execute()
    nuke.frame(4)
    node["focus_point"].setValue([20.0, 30.0])
    node["anchor_distance"].setValue(8.0)
    node["add_anchor"].execute()
    assert node["anchor_points"].value() == "3 10.50 5.50 12\n4 20.00 30.00 8"
    with pytest.raises(InputError, match="2 anchor points; at least 3"):
        dvd_nuke.plan(node)
    node["anchor_points"].setValue(node["anchor_points"].value() + "\n# typed by hand\n5 60.25 47.5 30 2")
    request = dvd_nuke.plan(node)
    path = request.args[request.args.index("--anchors") + 1]
    assert path == os.path.join(request.out_dir, "sh030.anchors.csv")
    # file frames (comp + 1000), y from the top of the 64x48 plate (Nuke's y is from the bottom)
    assert Path(path).read_text() == ("frame,x,y,depth,weight\n1003,10.5000,42.5000,12,1\n"
                                      "1004,20.0000,18.0000,8,1\n1005,60.2500,0.5000,30,2\n")
    if ENGINE_HERE:
        from dvd_vfx.anchors import read_anchors

        rows = read_anchors(path)
        assert [(a.frame, a.x, a.y, a.depth, a.weight) for a in rows] == [
            (1003, 10.5, 42.5, 12.0, 1.0), (1004, 20.0, 18.0, 8.0, 1.0), (1005, 60.25, 0.5, 30.0, 2.0)]
    node["anchor_points"].setValue("9 1 1 5\n3 1 1 5\n3 2 2 5")  # comp frame 9 is outside the plate's 1-6
    with pytest.raises(InputError, match="outside the render's comp frames 1-6"):
        dvd_nuke.plan(node)
    node["anchor_points"].setValue("3 1 1 -5\n3 1 1 5\n3 2 2 5")
    with pytest.raises(InputError, match="line 1"):
        dvd_nuke.plan(node)
    node["anchor_points"].setValue("3 1 1 5\n3 1 1 5\n3 2 2 5")
    node["mode"].setValue("disparity")
    with pytest.raises(InputError, match="set mode to depth"):
        dvd_nuke.plan(node)


def _fake_result(pattern, mode="depth"):
    from types import SimpleNamespace

    return SimpleNamespace(pattern=pattern, first_frame=1, last_frame=9, mode=mode, shot="sh090", cache="miss",
                           seconds=1.0)


def test_a_pasted_node_makes_its_own_helpers(nuke):
    import dvd_nuke

    read = _plate_read(nuke, "/p/sh090.####.exr", 1, 9)
    original = dvd_nuke.create_node()
    original.setInput(0, read)
    original["engine_python"].setValue("/venv/bin/python")
    original["add_zdefocus"].setValue(True)
    original["add_fog"].setValue(True)
    original["side_read"].setValue(True)
    dvd_nuke.load_result(original, dvd_nuke.plan(original), _fake_result("/d/sh090.depth.####.exr"))
    defocus, fog, side = (nuke.toNode(original[k].value()) for k in ("depth_zdefocus", "depth_fog", "depth_side_read"))
    assert defocus.input(0) is original and fog.input(0) is original
    assert side["file"].value() == "/d/sh090.depth.####.exr" and side["raw"].value() is True
    dvd_nuke.load_result(original, dvd_nuke.plan(original), _fake_result("/d/sh090.depth.####.exr"))
    assert nuke.toNode(original["depth_side_read"].value()) is side  # its own helpers are updated in place
    # copy/paste: the new node's hidden knobs hold the original's helper names
    pasted = dvd_nuke.create_node()
    for name in ("engine_python", "add_zdefocus", "add_fog", "side_read", "depth_zdefocus", "depth_fog",
                 "depth_side_read"):
        pasted[name].setValue(original[name].value())
    pasted.setInput(0, read)
    dvd_nuke.load_result(pasted, dvd_nuke.plan(pasted), _fake_result("/d2/sh090.depth.####.exr", "disparity"))
    mine = nuke.toNode(pasted["depth_zdefocus"].value())
    assert mine is not defocus and mine.input(0) is pasted and mine["math"].value() == "far = 0"
    assert nuke.toNode(pasted["depth_fog"].value()) is not fog
    assert nuke.toNode(pasted["depth_side_read"].value()) is not side
    assert side["file"].value() == "/d/sh090.depth.####.exr"
    assert defocus.input(0) is original and defocus["math"].value() == "depth"  # the original's, untouched
    assert original.node("depth_read")["file"].value() == "/d/sh090.depth.####.exr"


def test_anchors_from_camera_needs_the_exports(nuke, tmp_path):
    import dvd_nuke

    node = dvd_nuke.create_node()
    node.setInput(0, _plate_read(nuke, "/p/sh092.####.exr", 1, 9))
    node["engine_python"].setValue(ENGINE_PYTHON)
    assert dvd_nuke.anchors_from_camera(node) is False
    assert "camera .chan" in nuke.messages[-1] and node["anchors_file"].value() == ""
    node["camera_chan"].setValue(str(tmp_path / "missing.chan"))
    node["camera_points"].setValue(str(tmp_path / "missing.txt"))
    dvd_nuke.anchors_from_camera(node)  # the engine's answer (a missing file, or no such command) as one line
    assert node["anchors_file"].value() == "" and len(nuke.messages) == 2 and "\n" not in nuke.messages[-1]


@needs_engine
def test_anchors_from_camera_projects_the_exported_solve(nuke, png_plate, tmp_path):
    """A CameraTracker export: a .chan (frame tx ty tz rx ry rz vfov; camera at the origin looking down -Z)
    and its points; the node projects them through `dvd-vfx anchors from-camera` with the plate's size."""
    import dvd_nuke

    (tmp_path / "cam.chan").write_text("".join(f"{f} 0 0 0 0 0 0 60\n" for f in range(1001, 1007)))
    points = [(0.0, 0.0, -5.0), (1.0, 0.5, -8.0), (-1.5, -0.5, -12.0), (0.5, -0.2, -20.0)]
    (tmp_path / "points.txt").write_text("".join(f"{x} {y} {z}\n" for x, y, z in points))
    node = dvd_nuke.create_node()
    node.setInput(0, _plate_read(nuke, png_plate, 1001, 1006))
    node["engine_python"].setValue(ENGINE_PYTHON)
    node["camera_chan"].setValue(str(tmp_path / "cam.chan"))
    node["camera_points"].setValue(str(tmp_path / "points.txt"))
    assert dvd_nuke.anchors_from_camera(node) is True, nuke.messages
    rows = [line.split(",") for line in Path(node["anchors_file"].value()).read_text().splitlines()[1:]]
    assert {int(r[0]) for r in rows} == set(range(1001, 1007)) and len(rows) == 6 * len(points)
    focal_px = 24 / math.tan(math.radians(30))  # vfov 60 degrees over the plate's 48 rows
    first = [r for r in rows if r[0] == "1001"]
    for (x, y, z), row in zip(points, first):
        assert float(row[1]) == pytest.approx(32 + focal_px * x / -z, abs=1e-3)
        assert float(row[2]) == pytest.approx(24 - focal_px * y / -z, abs=1e-3)
        assert float(row[3]) == pytest.approx(-z, rel=1e-6)


def test_focus_point_off_the_pass_says_so(nuke):
    import dvd_nuke

    node = dvd_nuke.create_node()
    node.setInput(0, _plate_read(nuke, "/p/sh091.####.exr", 1, 9))
    nuke.user_set(node["focus_point"], [5.0, 5.0])  # no pass loaded: depth.Z is 0 here
    assert "no depth there" in node["focus_depth"].value()


@pytest.mark.slow
def test_submit_to_farm_writes_an_openjd_job_next_to_the_script(nuke, png_plate, engine_weights, tmp_path,
                                                                monkeypatch):
    import dvd_nuke

    monkeypatch.setenv("DVD_VFX_CACHE_DIR", str(tmp_path / "cache"))
    node = _dvd_node(nuke, dvd_nuke, png_plate, engine_weights, extra="--resolution 48 --window 5 --overlap 2")
    template = dvd_nuke.submit_farm(node)
    assert nuke.messages == [], nuke.messages
    script_dir = Path(nuke.script_directory())
    assert template == str(script_dir / "farm" / "comp_v001.sh030" / "template.yaml")
    assert Path(template).is_file() and (Path(template).parent / "template.params.yaml").is_file()
    text = Path(template).read_text() + (Path(template).parent / "template.params.yaml").read_text()
    assert "sh030" in text and str(script_dir / "depth" / "sh030") in text
    # the node already reads the pass the farm will write, lined up with the plate
    read = node.node("depth_read")
    assert read["file"].value() == str(script_dir / "depth" / "sh030" / "sh030.depth.####.exr")
    assert (read["first"].value(), read["last"].value(), read["frame"].value()) == (1001, 1006, "-1000")
    assert node.node("depth_copy")["disable"].value() is False
    assert node["status"].value().startswith("farm job written")


@pytest.mark.slow
def test_render_and_wait_for_terminal_nuke(nuke, png_plate, engine_weights, tmp_path, monkeypatch, capsys):
    """`nuke -t`: no event loop, so the render runs on the calling thread (executeInMainThread never called)."""
    import dvd_nuke

    monkeypatch.setenv("DVD_VFX_CACHE_DIR", str(tmp_path / "cache"))
    node = _dvd_node(nuke, dvd_nuke, png_plate, engine_weights)
    result = dvd_nuke.render_and_wait(node)
    assert (result.first_frame, result.last_frame) == (1001, 1006)
    assert node.node("depth_read")["file"].value() == result.pattern and not dvd_nuke.is_rendering(node)
    assert node["status"].value().startswith("done: sh030")
    assert "DVD Depth DVDDepth1: rendering sh030: write 6/6" in capsys.readouterr().out
    assert nuke.progress_tasks[-1].ended
    node["weights"].setValue(str(tmp_path / "no-weights"))
    with pytest.raises(Exception, match="no-weights"):
        dvd_nuke.render_and_wait(node, quiet=True)
    assert node["status"].value().startswith("failed:")


@pytest.mark.slow
def test_closing_the_script_cancels_the_render_and_loads_nothing_elsewhere(nuke, png_plate, engine_weights,
                                                                          tmp_path, monkeypatch):
    import dvd_nuke

    monkeypatch.setenv("DVD_VFX_CACHE_DIR", str(tmp_path / "cache"))
    dvd_nuke.register_callbacks.__globals__["_SCRIPT"]["registered"] = False  # a fresh session
    dvd_nuke.register_callbacks()
    node = _dvd_node(nuke, dvd_nuke, png_plate, engine_weights, extra=FAST + " --no-cache")
    worker = dvd_nuke.render(node)
    nuke.pump_until(lambda: worker.job is not None, timeout=30)
    nuke.script_close(script_directory=str(tmp_path / "other"), script_name="other_v001.nk")
    assert worker.job.proc.poll() is not None  # the engine was stopped with the script
    # the next script has a node of the same name: the old job's end must not touch it
    other = _dvd_node(nuke, dvd_nuke, png_plate, engine_weights)
    assert other.fullName() == node.fullName()
    nuke.pump_until(lambda: not worker.thread.is_alive(), timeout=30)
    nuke.pump()
    assert other.node("depth_read")["file"].value() == "" and other["status"].value() == "idle"
    assert nuke.messages == [] and not dvd_nuke.is_rendering(other)


# -- what ships: NUKE_PATH folder, import without torch/numpy, install -----------------------------------


def test_plugins_nuke_is_the_shipped_nuke_path_folder():
    # one copy in the repository: plugins/nuke is a link to the package data that pip installs
    assert PLUGIN_DIR.is_symlink() and PLUGIN_DIR.resolve() == PACKAGE_NUKE_PATH.resolve()
    assert (PLUGIN_DIR / "dvd_nuke" / "__init__.py").is_file()
    for name in ("init.py", "menu.py"):
        code = [l for l in (PLUGIN_DIR / name).read_text().splitlines() if l.strip() and not l.startswith("#")]
        assert len(code) <= 3, f"{name} should stay a few lines that call into dvd_nuke"


_NO_HEAVY = textwrap.dedent("""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "numpy", "diffusers", "OpenEXR", "safetensors", "PIL", "ffmpeg"}:
                raise ImportError(f"blocked in this test: {name} (a host's Python has no such module)")
    sys.meta_path.insert(0, Block())
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    import fake_nuke
    sys.modules["nuke"] = fake_nuke
    fake_nuke.reset(script_directory=sys.argv[3])
    exec(open(sys.argv[1] + "/init.py").read(), {"nuke": fake_nuke})
    exec(open(sys.argv[1] + "/menu.py").read(), {"nuke": fake_nuke})
    node = fake_nuke.menu("Nodes").findItem("DVD").findItem("DVD Depth")()
    read = fake_nuke.nodes.Read(file="/p/a.####.exr", first=1, last=9)
    node.setInput(0, read)
    node["engine_python"].setValue("/x/python")
    import dvd_nuke
    request = dvd_nuke.plan(node)
    print(request.args[0], request.file_range)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "numpy", "diffusers", "OpenEXR"})
    print("heavy:", heavy)
""")


def test_nuke_layer_imports_without_torch_or_numpy(tmp_path):
    env = {**os.environ, "PYTHONPATH": "" if ENGINE_HERE else os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", _NO_HEAVY, str(PLUGIN_DIR), str(TESTS), str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "/p/a.%04d.exr (1, 9)" in out.stdout and "heavy: []" in out.stdout


@needs_engine
def test_install_nuke_is_idempotent_and_works_from_a_bare_python(tmp_path, capsys):
    from dvd_vfx.cli import main
    from dvd_vfx.hosts.nuke import install

    dest = tmp_path / "dot_nuke"
    for _ in range(2):
        with pytest.raises(SystemExit) as exc:
            main(["install", "nuke", "--dest", str(dest), "--add-to-init"])
        assert exc.value.code == 0
    printed = capsys.readouterr().out
    folder = dest / install.FOLDER_NAME
    line = f'nuke.pluginAddPath("{folder.as_posix()}")'
    assert line in printed and "Nodes > DVD > DVD Depth" in printed
    assert (dest / "init.py").read_text().splitlines().count(line) == 1  # added once
    for name in ("init.py", "menu.py", "dvd_nuke/__init__.py"):
        assert filecmp.cmp(folder / name, PACKAGE_NUKE_PATH / name, shallow=False)
    config = json.loads((folder / "dvd_nuke_config.json").read_text())
    assert config["engine_python"] == sys.executable
    assert (folder / "_dvd_lib" / "dvd_vfx" / "jobs.py").is_file()

    # Nuke's Python: no site-packages at all (-S), only the installed folder (as NUKE_PATH) and the fake nuke
    probe = textwrap.dedent("""
        import sys
        sys.path[:0] = [sys.argv[1], sys.argv[2]]
        import fake_nuke; sys.modules["nuke"] = fake_nuke
        import dvd_nuke, dvd_vfx, dvd_vfx.hosts.nuke.config as c
        assert "numpy" not in sys.modules and "torch" not in sys.modules
        print(dvd_vfx.__file__); print(c.engine_python())
    """)
    out = subprocess.run([sys.executable, "-S", "-c", probe, str(folder), str(TESTS)], capture_output=True,
                         text=True, cwd=tmp_path, timeout=60, env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(str(folder / "_dvd_lib")) and lines[1] == sys.executable

    # someone else's folder of that name is left alone
    (tmp_path / "other" / install.FOLDER_NAME).mkdir(parents=True)
    with pytest.raises(InputError, match="not made by"):
        install.install_nuke(tmp_path / "other")


# -- install, then render, in Nuke 14/15's Pythons --------------------------------------------------------


def _host_python(version):
    import glob
    import shutil

    found = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python")))
    return found[-1] if found else shutil.which(f"python{version}")


_INSTALLED_RENDER = textwrap.dedent("""
    import json, os, sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]     # the installed NUKE_PATH folder, and tests/ for the fake nuke
    import fake_nuke
    sys.modules["nuke"] = fake_nuke
    fake_nuke.reset(script_directory=sys.argv[3])
    exec(open(os.path.join(sys.argv[1], "init.py")).read(), {"nuke": fake_nuke})
    exec(open(os.path.join(sys.argv[1], "menu.py")).read(), {"nuke": fake_nuke})
    node = fake_nuke.menu("Nodes").findItem("DVD").findItem("DVD Depth")()
    read = fake_nuke.nodes.Read(file=sys.argv[4], first=1001, last=1006, origfirst=1001, origlast=1006)
    read["frame_mode"].setValue("start at")
    read["frame"].setValue("1")
    node.setInput(0, read)
    node["weights"].setValue(sys.argv[5])
    node["extra_args"].setValue("--resolution 48 --window 5 --overlap 2 --device cpu")
    import dvd_nuke
    result = dvd_nuke.render_and_wait(node, quiet=True)   # engine Python: what the installer recorded
    inner = node.node("depth_read")
    print(json.dumps({"python": sys.version.split()[0], "pattern": result.pattern,
                      "frames": [result.first_frame, result.last_frame], "file": inner["file"].value(),
                      "mode": inner["frame_mode"].value(), "offset": inner["frame"].value(),
                      "presets": node["preset"].values(), "heavy": sorted(m for m in sys.modules
                      if m.split(".")[0] in ("torch", "numpy")), "status": node["status"].value()}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.9", "3.10"])
def test_install_then_render_in_an_old_nuke_python(version, png_plate, engine_weights, tmp_path, monkeypatch):
    """Nuke 14 (3.9) / 15 (3.10): `dvd-vfx install nuke` from the engine, then Nuke's Python (no site-packages,
    only the installed folder) creates the node from the menu and renders a plate."""
    python = _host_python(version)
    if python is None:
        pytest.skip(f"no Python {version} (~/.pyenv/versions/{version}.*/bin/python or python{version})")
    dest = tmp_path / "dot_nuke"
    subprocess.run([ENGINE_PYTHON, "-m", "dvd_vfx.cli", "install", "nuke", "--dest", str(dest)], check=True,
                   capture_output=True, timeout=120)
    script_dir = tmp_path / "comp"
    script_dir.mkdir()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "DVD_VFX_CACHE_DIR": str(tmp_path / "cache"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    out = subprocess.run([python, "-S", "-E", "-X", f"pycache_prefix={tmp_path / 'pyc'}", "-c", _INSTALLED_RENDER,
                          str(dest / "dvd_depth"), str(TESTS), str(script_dir), str(png_plate), str(engine_weights)],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["python"].startswith(version + ".")
    assert report["frames"] == [1001, 1006] and report["status"].startswith("done: sh030")
    assert report["file"] == report["pattern"] == str(script_dir / "depth" / "sh030" / "sh030.depth.####.exr")
    assert (report["mode"], report["offset"]) == ("offset", "-1000")  # "start at 1" as an offset
    assert report["presets"][0] == "standard" and report["heavy"] == []
    for frame in range(1001, 1007):
        assert os.path.exists(report["pattern"].replace("####", str(frame)))
