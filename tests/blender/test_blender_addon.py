"""The add-on in real Blender (the `bpy` wheel), driving the real engine out of process with the tiny model.

Skipped where bpy is not importable (the main venv); .ci/blender-tests runs it in bpy 4.5 and 5.0 venvs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import time

import pytest

from conftest import run_engine

bpy = pytest.importorskip("bpy")
import addon_utils  # noqa: E402  (ships with bpy)

MODULE = "bl_ext.user_default.dvd_vfx"
FAST = "--resolution 48 --window 5 --overlap 2 --device cpu"
IS_5 = bpy.app.version >= (5, 0, 0)


def ffmpeg_exe(engine_py) -> str:
    return shutil.which("ffmpeg") or run_engine(
        "from dvd_vfx.footage.ffmpeg_tools import find_ffmpeg; print(find_ffmpeg())").strip()


def make_clip(engine_py, path, frames):
    subprocess.run([ffmpeg_exe(engine_py), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=64x48:rate=24", "-frames:v", str(frames), "-pix_fmt", "yuv420p", str(path)],
                   check=True, capture_output=True)
    return path


def read_exr_depth(path) -> list:
    """depth.Z of one EXR, read by the engine's OpenEXR (an independent reader), top row first."""
    out = run_engine("import sys, json, OpenEXR; f = OpenEXR.File(sys.argv[1]); "
                     "print(json.dumps(f.channels()['depth.Z'].pixels.tolist()))", str(path))
    return json.loads(out)


@pytest.fixture(scope="module")
def work(tmp_path_factory, engine_py):
    folder = tmp_path_factory.mktemp("blender-work")
    weights = folder / "weights"
    run_engine("import sys; from dvd_vfx.model.tiny import write_tiny_weights; write_tiny_weights(sys.argv[1], seed=0)",
               str(weights))
    return {"dir": folder, "weights": weights, "cache": folder / "cache",
            "plate": make_clip(engine_py, folder / "plate.mp4", 9)}


@pytest.fixture(scope="module")
def addon(blender_home, engine_py, work):
    """The extension zip from `dvd-vfx install blender`, installed and enabled the way a user does it."""
    subprocess.run([engine_py, "-m", "dvd_vfx.cli", "install", "blender", "--zip-only", "--zip",
                    str(work["dir"] / "dvd_vfx.zip"), "--engine-python", engine_py], check=True, capture_output=True)
    result = bpy.ops.extensions.package_install_files(filepath=str(work["dir"] / "dvd_vfx.zip"),
                                                      repo="user_default", enable_on_install=True)
    assert result == {"FINISHED"}
    configure(work)
    import importlib

    yield importlib.import_module(MODULE)
    addon_utils.disable(MODULE, default_set=True)


def configure(work):
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.weights_dir = str(work["weights"])
    prefs.cache_dir = str(work["cache"])
    prefs.default_preset = "preview"
    prefs.extra_args = FAST


def fresh_scene(work, *, clip_start=1):
    scene = bpy.context.scene
    clip = bpy.data.movieclips.load(str(work["plate"]))
    clip.frame_start = clip_start
    scene.active_clip = clip
    s = scene.dvd_vfx
    s.output_dir = str(work["dir"] / "out" / "<clip>")
    s.near, s.far = 2.0, 40.0
    s.use_solve = True  # the clip has no camera solve: Near/Far it is
    scene.camera.data.dof.aperture_fstop = 4.0
    s.use_fog, s.fog_start, s.fog_end, s.fog_density = True, 2.0, 40.0, 1.5
    return scene, clip


def tree_of(scene):
    return scene.compositing_node_group if IS_5 else scene.node_tree


def test_extension_registers_and_unregisters_cleanly(addon, work):
    assert hasattr(bpy.types.Scene, "dvd_vfx")
    for op in ("dvd_render", "dvd_cancel", "dvd_check_weights"):
        assert hasattr(bpy.ops.node, op)
    assert "NODE_PT_dvd_vfx" in dir(bpy.types) and "CLIP_PT_dvd_vfx" in dir(bpy.types)
    addon_utils.disable(MODULE, default_set=True)
    assert not hasattr(bpy.types.Scene, "dvd_vfx")
    assert "NODE_PT_dvd_vfx" not in dir(bpy.types) and "dvd_render" not in dir(bpy.ops.node)
    addon_utils.enable(MODULE, default_set=True)
    assert hasattr(bpy.types.Scene, "dvd_vfx")
    configure(work)  # Blender drops unsaved preferences of a disabled add-on


def test_check_button_runs_weights_check(addon):
    assert bpy.ops.node.dvd_check_weights() == {"FINISHED"}
    assert "weights OK" in bpy.context.preferences.addons[MODULE].preferences.check_result


@pytest.fixture(scope="module")
def rendered(addon, work):
    scene, clip = fresh_scene(work, clip_start=10)
    started = time.monotonic()
    assert bpy.ops.node.dvd_render() == {"FINISHED"}, scene.dvd_vfx.status
    return scene, clip, time.monotonic() - started


def test_render_loads_the_sequence_and_wires_defocus_and_fog(rendered, work):
    scene, clip, _ = rendered
    out = work["dir"] / "out" / "plate"
    assert sorted(p.name for p in out.iterdir()) == [f"plate.depth.{n:04d}.exr" for n in range(1, 10)]
    tree = tree_of(scene)
    nodes = {n.name: n for n in tree.nodes if n.name.startswith("DVD ")}
    assert set(nodes) == {"DVD Depth", "DVD Plate", "DVD Defocus", "DVD Fog Range", "DVD Fog Density",
                          "DVD Fog Exp", "DVD Fog Amount", "DVD Fog Colour", "DVD Fog Mix"}
    depth = nodes["DVD Depth"]
    image = depth.image
    assert image.name == "plate.depth" and image.source == "SEQUENCE"
    assert bpy.path.abspath(image.filepath) == str(out / "plate.depth.0001.exr")
    assert (depth.frame_start, depth.frame_offset, depth.frame_duration) == (10, 0, 9)  # clip starts at 10
    assert nodes["DVD Plate"].clip == clip
    defocus = nodes["DVD Defocus"]
    assert defocus.use_zbuffer and defocus.scene == scene and defocus.f_stop == pytest.approx(4.0)
    driver = next(f for f in tree.animation_data.drivers if f.data_path == 'nodes["DVD Defocus"].f_stop').driver
    assert driver.variables[0].targets[0].data_path == "camera.data.dof.aperture_fstop"  # the camera's f-stop
    assert not [n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers"]  # F12 renders no 3D scene

    def links_into(node):
        return {(l.from_node.name, l.from_socket.name, l.to_socket.identifier) for l in tree.links if l.to_node == node}

    assert ("DVD Depth", "depth", "Z") in links_into(defocus)
    assert ("DVD Plate", "Image", "Image") in links_into(defocus)
    assert ("DVD Depth", "depth", "Value") in links_into(nodes["DVD Fog Range"])
    mix = nodes["DVD Fog Mix"]
    assert {l[0] for l in links_into(mix)} == {"DVD Fog Amount", "DVD Defocus", "DVD Fog Colour"}
    output = next(n for n in tree.nodes if n.bl_idname == ("NodeGroupOutput" if IS_5 else "CompositorNodeComposite"))
    assert {l[0] for l in links_into(output)} == {"DVD Fog Mix"}
    assert nodes["DVD Fog Density"].inputs[1].default_value == pytest.approx(-1.5)
    assert scene.dvd_vfx.progress == pytest.approx(1.0) and "done" in scene.dvd_vfx.status
    assert scene.dvd_vfx.solve_status == "Near/Far 2..40"  # no camera solve: the panel's near/far
    assert not list((work["dir"] / "out").glob("*.anchors.csv"))


def test_rerun_replaces_in_place_and_is_served_by_the_cache(rendered, addon):
    scene, clip, first_seconds = rendered
    tree = tree_of(scene)
    before = sorted(n.name for n in tree.nodes)
    images_before = len(bpy.data.images)
    scene.dvd_vfx.use_fog = False
    assert bpy.ops.node.dvd_render() == {"FINISHED"}
    run_status = scene.dvd_vfx.status
    assert "cache hit" in run_status, run_status
    assert len(bpy.data.images) == images_before  # the same Image, reloaded
    after = sorted(n.name for n in tree.nodes)
    assert after == [n for n in before if not n.startswith("DVD Fog")]  # fog nodes gone, nothing stacked
    scene.dvd_vfx.use_fog = True
    assert bpy.ops.node.dvd_render() == {"FINISHED"}
    assert sorted(n.name for n in tree.nodes) == before


def test_compositor_render_reads_the_engine_depth(rendered, work):
    """Depth through the Image node and Blender's compositor equals the EXR the engine wrote."""
    scene, clip, _ = rendered
    tree = tree_of(scene)
    depth = tree.nodes["DVD Depth"]
    output = next(n for n in tree.nodes if n.bl_idname == ("NodeGroupOutput" if IS_5 else "CompositorNodeComposite"))
    keep = output.inputs[0].links[0].from_socket
    tree.links.new(depth.outputs["depth"], output.inputs[0])
    r = scene.render
    r.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.device = "CPU"
    r.resolution_x, r.resolution_y, r.resolution_percentage = 64, 48, 100
    r.image_settings.file_format = "OPEN_EXR"
    r.image_settings.color_depth = "32"
    r.use_compositing = True
    frame = 13  # scene 13 = clip frame 4 (clip starts at 10)
    scene.frame_set(frame)
    r.filepath = str(work["dir"] / "comp.exr")
    try:
        bpy.ops.render.render(write_still=True)
    finally:
        tree.links.new(keep, output.inputs[0])
    rendered_img = bpy.data.images.load(str(work["dir"] / "comp.exr"))
    w, h = rendered_img.size
    px = list(rendered_img.pixels)
    got = [[px[((h - 1 - y) * w + x) * 4] for x in range(w)] for y in range(h)]  # Blender is bottom-up
    want = read_exr_depth(work["dir"] / "out" / "plate" / "plate.depth.0004.exr")
    assert (w, h) == (len(want[0]), len(want))
    worst = max(abs(g - v) for gr, wr in zip(got, want) for g, v in zip(gr, wr))
    assert worst < 1e-4 * max(abs(v) for row in want for v in row), worst
    other = read_exr_depth(work["dir"] / "out" / "plate" / "plate.depth.0005.exr")
    assert max(abs(g - v) for gr, wr in zip(got, other) for g, v in zip(gr, wr)) > worst  # the right frame


SLOW_PLUGIN = textwrap.dedent('''
    import time
    import numpy as np
    from dvd_vfx.hookspecs import hookimpl
    from dvd_vfx.plugins import PredictorFactory

    class Slow:
        name = "slow"
        def identity(self):
            return {"predictor": "slow", "model_id": "slow-1", "weights_sha256": "0" * 64}
        def predict(self, frames):
            time.sleep(0.4)
            return (frames.mean(axis=-1) * 0.8 + 0.1).astype(np.float32)

    @hookimpl
    def dvd_vfx_register_predictors():
        return [PredictorFactory("slow", lambda settings: Slow(), "slow brightness (tests)")]
''')


@pytest.fixture
def fast_prefs(addon, work):
    yield
    configure(work)


def test_cancel_mid_job_leaves_blender_consistent(addon, work, engine_py, monkeypatch, fast_prefs):
    plugins = work["dir"] / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "slow.py").write_text(SLOW_PLUGIN)
    monkeypatch.setenv("DVD_VFX_PLUGINS_DIR", str(plugins))  # the engine process inherits it
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.extra_args = FAST + " --predictor slow --no-cache"  # the fixture `fast_prefs` puts it back
    scene = bpy.context.scene
    long_clip = bpy.data.movieclips.load(str(make_clip(engine_py, work["dir"] / "long.mp4", 41)))
    scene.active_clip = long_clip
    nodes_before = sorted(n.name for n in tree_of(scene).nodes) if tree_of(scene) else []
    images_before = sorted(i.name for i in bpy.data.images)
    run = addon.runtime.DepthRun.start(bpy.context)
    deadline = time.monotonic() + 60
    while run.tick() and not (run.stage == "predict" and run.done >= 1):
        assert time.monotonic() < deadline, list(run.job.stderr_tail)
        time.sleep(0.05)
    assert not bpy.ops.node.dvd_render.poll()  # one job per scene
    assert bpy.ops.node.dvd_cancel() == {"FINISHED"}
    assert run.wait(timeout=30)
    assert run.error == "cancelled" and run.job.proc.poll() is not None
    assert addon.runtime.active_run(scene) is None and not bpy.ops.node.dvd_cancel.poll()
    assert "cancelled" in scene.dvd_vfx.status
    assert sorted(i.name for i in bpy.data.images) == images_before
    assert (sorted(n.name for n in tree_of(scene).nodes) if tree_of(scene) else []) == nodes_before
    out = work["dir"] / "out" / "long"
    assert not out.exists() or not list(out.iterdir())
    assert bpy.ops.node.dvd_render.poll()


def test_engine_errors_reach_the_artist_as_one_line(addon, work, fast_prefs):
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.extra_args = FAST + " --window 6"
    scene = bpy.context.scene
    scene.active_clip = bpy.data.movieclips.load(str(work["plate"]), check_existing=True)
    with pytest.raises(RuntimeError, match=r"window=6 is not 4n\+1 frames"):  # the operator's ERROR report
        bpy.ops.node.dvd_render()
    status = scene.dvd_vfx.status
    assert status.startswith("dvd-vfx: failed:") and "window" in status and "\n" not in status


# -- the extension as Blender's own tool sees it -------------------------------------------------


def test_extension_validates_and_builds_with_blenders_own_tool(tmp_path):
    """bl_pkg's blender_ext.py (what `blender --command extension validate|build` runs) accepts plugins/blender."""
    import glob
    import importlib.util
    import sys

    from conftest import ADDON_SRC

    root = os.path.dirname(importlib.util.find_spec("bpy").origin)
    tool = glob.glob(os.path.join(root, "*", "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py"))
    assert tool, f"no blender_ext.py in {root}"
    for step in (["validate", str(ADDON_SRC)], ["build", "--source-dir", str(ADDON_SRC), "--output-dir", str(tmp_path)]):
        proc = subprocess.run([sys.executable, tool[0], *step], capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "error" not in out.lower() and "warn" not in out.lower(), out
    import tomllib
    import zipfile

    manifest = tomllib.loads((ADDON_SRC / "blender_manifest.toml").read_text())
    assert len(manifest["tagline"]) <= 64
    # https://docs.blender.org/manual/en/latest/advanced/extensions/licenses.html: add-ons are GPL-3.0-or-later
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    names = zipfile.ZipFile(next(tmp_path.glob("*.zip"))).namelist()
    assert "LICENSE" in names and "blender_manifest.toml" in names and "utils/job.py" in names
    assert "GNU GENERAL PUBLIC LICENSE" in (ADDON_SRC / "LICENSE").read_text()[:200]


# -- F12 composites the clip without rendering the 3D scene ---------------------------------------


class _CountingEngine(bpy.types.RenderEngine):
    """A render engine that only counts how often Blender asks it to render the 3D scene."""

    bl_idname = "DVD_TEST_COUNTING"
    bl_label = "Counting (tests)"
    calls = 0

    def render(self, depsgraph):
        type(self).calls += 1
        scene = depsgraph.scene
        w = scene.render.resolution_x * scene.render.resolution_percentage // 100
        h = scene.render.resolution_y * scene.render.resolution_percentage // 100
        result = self.begin_result(0, 0, w, h)
        result.layers[0].passes["Combined"].rect = [[1.0, 0.0, 1.0, 1.0]] * (w * h)
        self.end_result(result)


def _new_scene(name, size=(96, 48)):
    scene = bpy.data.scenes.new(name)
    bpy.context.window.scene = scene
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    scene.render.use_compositing = True
    camera = bpy.data.objects.new(f"{name} Camera", bpy.data.cameras.new(f"{name} Camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    return scene


def _compositor_for_plate(scene):
    """What turning compositing on gives: 4.x use_nodes (default Render Layers -> Composite), 5.0 a node group."""
    from conftest import ADDON_SRC  # noqa: F401

    if IS_5:
        tree = bpy.data.node_groups.new(f"{scene.name} Compositing", "CompositorNodeTree")
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        out = tree.nodes.new("NodeGroupOutput")
        rl = tree.nodes.new("CompositorNodeRLayers")
        tree.links.new(rl.outputs["Image"], out.inputs[0])
        scene.compositing_node_group = tree
    else:
        scene.use_nodes = True
        tree = scene.node_tree
    assert any(n.bl_idname == "CompositorNodeRLayers" for n in tree.nodes)
    return tree


def _write_plate(path, w, h, pixel):
    """A plate frame saved by Blender (RGBA float rows bottom-up), pixel(x, y_top) -> value."""
    img = bpy.data.images.new(os.path.basename(path), w, h, float_buffer=True)
    px = []
    for y in range(h - 1, -1, -1):
        for x in range(w):
            v = pixel(x, y)
            px += [v, v, v, 1.0]
    img.pixels = px
    img.filepath_raw = str(path)
    img.file_format = "OPEN_EXR"
    img.save()
    bpy.data.images.remove(img)


def _depth_pass(engine_py, folder, shot, frames, values):
    """A depth.Z EXR sequence like the engine's (values: rows top-first), written by the engine's OpenEXR."""
    folder.mkdir(parents=True, exist_ok=True)
    run_engine("import sys, json, numpy as np, OpenEXR\n"
               "z = np.array(json.loads(sys.argv[2]), np.float32)\n"
               "for f in json.loads(sys.argv[3]):\n"
               "    OpenEXR.File({'compression': OpenEXR.ZIP_COMPRESSION, 'type': OpenEXR.scanlineimage},\n"
               "                 {'depth.Z': z}).write(f'{sys.argv[1]}.depth.{f:04d}.exr')\n",
               str(folder / shot), json.dumps(values), json.dumps(list(frames)))
    return folder / f"{shot}.depth.{frames[0]:04d}.exr"


def _render_comp(scene, path):
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(str(path), check_existing=False)
    w, h = img.size
    px = list(img.pixels)
    bpy.data.images.remove(img)
    return [[px[((h - 1 - y) * w + x) * 4] for x in range(w)] for y in range(h)]  # rows top-first


def test_f12_composites_the_clip_without_rendering_the_3d_scene(addon, engine_py, work):
    bpy.utils.register_class(_CountingEngine)
    try:
        scene = _new_scene("F12")
        scene.render.engine = _CountingEngine.bl_idname
        _compositor_for_plate(scene)
        _CountingEngine.calls = 0
        _render_comp(scene, work["dir"] / "f12-before.exr")
        assert _CountingEngine.calls == 1  # the control: a Render Layers node makes F12 render the scene

        folder = work["dir"] / "f12"
        _write_plate(folder / "plate.0001.exr", 96, 48, lambda x, y: 0.25 + 0.5 * ((x // 8 + y // 8) % 2))
        plate = bpy.data.images.load(str(folder / "plate.0001.exr"))
        first = _depth_pass(engine_py, folder, "plate", [1], [[5.0] * 96] * 48)
        image = addon.compositor.load_depth_image("f12.depth", str(first))
        mapping = addon.utils.shot.image_user_mapping(clip_start=1, clip_offset=0, source_first=1, first=1, last=1)
        addon.compositor.wire(scene, image=image, mapping=mapping, mode="depth", plate_image=plate)
        _CountingEngine.calls = 0
        got = _render_comp(scene, work["dir"] / "f12-after.exr")
        assert _CountingEngine.calls == 0  # the 3D scene was not rendered
        dark, bright = got[2][2], got[2][10]  # the plate's checker (4.x writes it display-encoded)
        assert bright > dark + 0.2 and got[12][12] == pytest.approx(dark, abs=1e-3)
    finally:
        bpy.utils.unregister_class(_CountingEngine)


# -- defocus like a lens, in both modes -------------------------------------------------------------

BANDS = 6  # the pass holds 6 vertical bands of 32 px, each at one depth


def _sharpness(rows, band, width=32):
    """Mean squared horizontal step over the central 16 px of a band: an edge spread over n px keeps its
    total step but its energy falls as 1/n, so this falls as the blur grows."""
    x0 = band * width + width // 2 - 8
    steps = [(r[x + 1] - r[x]) ** 2 for r in rows[8:-8] for x in range(x0, x0 + 16)]
    return sum(steps) / len(steps)


@pytest.mark.parametrize("mode, values, focus_band", [
    ("depth", [2.0, 4.0, 10.0, 20.0, 40.0, 80.0], 2),      # scene units
    ("disparity", [1.0, 0.8, 0.6, 0.4, 0.2, 0.0], 2)])     # 0 far .. 1 near
def test_defocus_is_sharp_at_the_picked_focus_and_blurs_away_from_it(addon, engine_py, work, mode, values,
                                                                      focus_band):
    w, h = 32 * BANDS, 64
    scene = _new_scene(f"Lens {mode}", (w, h))
    scene.render.engine = "CYCLES"  # never rendered: no Render Layers node
    cam = scene.camera.data
    cam.lens, cam.sensor_width, cam.sensor_fit = 100.0, 36.0, "HORIZONTAL"
    cam.dof.aperture_fstop = 16.0  # changed after wiring: the Defocus follows the camera through a driver
    folder = work["dir"] / f"lens-{mode}"
    _write_plate(folder / "plate.0001.exr", w, h, lambda x, y: 0.25 + 0.5 * ((x // 8 + y // 8) % 2))
    plate = bpy.data.images.load(str(folder / "plate.0001.exr"))
    row = [values[x // 32] for x in range(w)]
    first = _depth_pass(engine_py, folder, "plate", [1], [row] * h)
    image = addon.compositor.load_depth_image(f"lens-{mode}.depth", str(first))
    mapping = addon.utils.shot.image_user_mapping(clip_start=1, clip_offset=0, source_first=1, first=1, last=1)
    settings = scene.dvd_vfx
    settings.mode, settings.max_blur = mode, 20.0
    addon.compositor.wire(scene, image=image, mapping=mapping, mode=mode, max_blur=20.0, plate_image=plate)
    cam.dof.aperture_fstop = 0.5 if mode == "depth" else 2.8
    settings.focus_point = ((focus_band * 32 + 16) / w, 0.5)  # Focus on Point: the middle of the focus band
    assert bpy.ops.node.dvd_set_focus(source="POINT") == {"FINISHED"}
    if mode == "depth":  # the camera's DOF, which the z-buffer Defocus reads
        assert cam.dof.use_dof and cam.dof.focus_object is None
        assert cam.dof.focus_distance == pytest.approx(values[focus_band])
    else:
        assert settings.focus_disparity == pytest.approx(values[focus_band])
    got = _render_comp(scene, folder / "comp.exr")
    sharp = [_sharpness(got, b) for b in range(BANDS)]
    reference = _sharpness([[0.25 + 0.5 * ((x // 8 + y // 8) % 2) for x in range(w)] for y in range(h)], 0)
    dark, bright = min(min(r) for r in got), max(max(r) for r in got)
    reference *= ((bright - dark) / 0.5) ** 2  # 4.x writes the composite display-encoded
    assert sharp[focus_band] > 0.9 * reference, (sharp, reference)  # in focus: the plate's own edges
    assert sharp[2] > sharp[1] > sharp[0] and sharp[2] > sharp[3] > sharp[4], sharp  # blur grows away from focus
    assert max(sharp[0], sharp[4]) < 0.6 * sharp[focus_band], sharp
    if mode == "disparity":
        assert sharp[4] > sharp[5], sharp  # radius = Max Blur * 2.8/N * |d - focus|: linear in disparity


# -- depth in the scene's scale from the clip's camera solve -------------------------------------

SOLVE_FRAMES = 16
PLANES = {  # name: (y of the plane in front of the camera, x range, z range): three depths
    "Wall": (14.0, (-12.0, 12.0), (-8.0, 10.0)),
    "Mid": (8.0, (-5.0, -0.5), (-3.0, 3.0)),
    "Near": (4.5, (0.5, 2.5), (-1.5, 0.8)),
}
BRIGHTNESS_PLUGIN = textwrap.dedent('''
    from dvd_vfx.hookspecs import hookimpl
    from dvd_vfx.plugins import PredictorFactory

    class Brightness:
        name = "brightness"
        def identity(self):
            return {"predictor": "brightness", "model_id": "brightness-1", "weights_sha256": "1" * 64}
        def predict(self, frames):
            return frames.mean(axis=-1).astype("float32")

    @hookimpl
    def dvd_vfx_register_predictors():
        return [PredictorFactory("brightness", lambda settings: Brightness(), "brightness as disparity (tests)")]
''')


def _disparity_material():
    """Emission = 3 / (view-axis depth): the plate's brightness is a disparity (the test predictor reads it)."""
    mat = bpy.data.materials.new("disparity")
    mat.use_nodes = True
    nt = mat.node_tree
    nt.nodes.clear()
    cam = nt.nodes.new("ShaderNodeCameraData")
    div = nt.nodes.new("ShaderNodeMath")
    div.operation = "DIVIDE"
    div.inputs[0].default_value = 3.0
    nt.links.new(cam.outputs["View Z Depth"], div.inputs[1])
    emission = nt.nodes.new("ShaderNodeEmission")
    emission.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    nt.links.new(div.outputs[0], emission.inputs["Strength"])
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(emission.outputs[0], out.inputs["Surface"])
    return mat


def _clip_editor_override(clip):
    window = bpy.context.window
    area = window.screen.areas[0]
    area.type = "CLIP_EDITOR"
    area.spaces.active.clip = clip
    return bpy.context.temp_override(window=window, area=area)


@pytest.fixture(scope="module")
def solved(addon, engine_py, work):
    """A scene rendered through a moving camera (Cycles), one track per surface point with markers at its
    true projection, Blender's own solver, a solved camera with Set Scale from two bundles, and Z passes."""
    import random

    from mathutils import Vector

    folder = work["dir"] / "solve"
    folder.mkdir()
    scene = _new_scene("Solve", (160, 120))
    scene.frame_start, scene.frame_end = 1, SOLVE_FRAMES
    scene.render.engine = "CYCLES"
    scene.cycles.samples, scene.cycles.device = 1, "CPU"
    scene.cycles.use_denoising = False
    scene.render.filter_size = 0.01
    try:
        scene.view_settings.view_transform = "Raw"  # the PNG keeps 3/z linearly
    except TypeError:
        scene.view_settings.view_transform = "Standard"
    world = bpy.data.worlds.new("black")
    world.color = (0.0, 0.0, 0.0)
    scene.world = world
    mat = _disparity_material()
    for name, (y, (x0, x1), (z0, z1)) in PLANES.items():
        mesh = bpy.data.meshes.new(name)
        mesh.from_pydata([(x0, y, z0), (x1, y, z0), (x1, y, z1), (x0, y, z1)], [], [(0, 1, 2, 3)])
        mesh.materials.append(mat)
        scene.collection.objects.link(bpy.data.objects.new(name, mesh))
    true_cam = scene.camera
    true_cam.name = "True Camera"
    true_cam.data.lens, true_cam.data.sensor_width = 35.0, 36.0
    true_cam.rotation_euler = (1.5708, 0.0, 0.0)  # looking along +Y
    for frame, loc, yaw in ((1, (-1.2, -2.0, 0.3), 0.03), (SOLVE_FRAMES, (1.2, -2.3, 0.6), -0.03)):
        true_cam.location, true_cam.rotation_euler[2] = loc, yaw
        true_cam.keyframe_insert("location", frame=frame)
        true_cam.keyframe_insert("rotation_euler", frame=frame)
    # the plate (PNG) and, on three frames, the scene's Z pass (multilayer EXR)
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    scene.render.filepath = str(folder / "plate_####")
    bpy.ops.render.render(animation=True)
    scene.view_layers[0].use_pass_z = True
    if hasattr(scene.render.image_settings, "media_type"):  # 5.0: multilayer is a media type of OPEN_EXR
        scene.render.image_settings.media_type = "MULTI_LAYER_IMAGE"
    else:
        scene.render.image_settings.file_format = "OPEN_EXR_MULTILAYER"
    scene.render.image_settings.color_depth = "32"
    z_files = {}
    for frame in (1, 8, SOLVE_FRAMES):
        scene.frame_set(frame)
        scene.render.filepath = str(folder / f"z_{frame:04d}.exr")
        bpy.ops.render.render(write_still=True)
        z_files[frame] = folder / f"z_{frame:04d}.exr"

    clip = bpy.data.movieclips.load(str(folder / "plate_0001.png"))
    clip.frame_start = 1
    scene.active_clip = clip
    w, h = clip.size
    cam = clip.tracking.camera
    cam.sensor_width, cam.focal_length = 36.0, 35.0
    rng = random.Random(3)
    points = []
    for name, count in (("Wall", 20), ("Mid", 8), ("Near", 6)):
        y, (x0, x1), (z0, z1) = PLANES[name]
        while sum(1 for p in points if p[0] == name) < count:
            p = Vector((rng.uniform(x0, x1), y, rng.uniform(z0, z1)))
            points.append((name, p))
    markers = {}
    for frame in range(1, SOLVE_FRAMES + 1):  # true projections: tracks as a perfect tracker would give them
        scene.frame_set(frame)
        inv = true_cam.matrix_world.inverted()
        eye = true_cam.matrix_world.translation
        f_px = true_cam.data.lens / true_cam.data.sensor_width * w
        depsgraph = bpy.context.evaluated_depsgraph_get()
        for i, (name, p) in enumerate(points):
            pc = inv @ p
            if pc.z >= 0:
                continue
            hit, where, *_ = scene.ray_cast(depsgraph, eye, (p - eye).normalized(), distance=(p - eye).length + 1e-3)
            if hit and (where - p).length > 1e-3:  # hidden behind a nearer plane: no marker
                continue
            x, yb = w / 2 + f_px * pc.x / -pc.z, h / 2 + f_px * pc.y / -pc.z
            if 6 < x < w - 6 and 6 < yb < h - 6:
                markers.setdefault(i, {})[frame] = (x / w, yb / h)
    tracks = clip.tracking.tracks
    for i, frames in markers.items():
        track = tracks.new(name=f"{points[i][0]}{i}", frame=min(frames))
        for frame, co in frames.items():
            track.markers.insert_frame(frame, co=co)
    obj = clip.tracking.objects.active
    obj.keyframe_a, obj.keyframe_b = 1, SOLVE_FRAMES
    with _clip_editor_override(clip):
        assert bpy.ops.clip.solve_camera() == {"FINISHED"}
    assert clip.tracking.reconstruction.is_valid
    # the solved camera, as Setup Tracking Scene makes it, then Set Scale from two wall bundles
    solved_cam = bpy.data.objects.new("Solved Camera", bpy.data.cameras.new("Solved Camera"))
    scene.collection.objects.link(solved_cam)
    solved_cam.constraints.new("CAMERA_SOLVER").use_active_clip = True
    scene.camera = solved_cam
    wall = [i for i in markers if points[i][0] == "Wall" and tracks[f"Wall{i}"].has_bundle]
    a, b = max(((i, j) for i in wall for j in wall), key=lambda ij: (points[ij[0]][1] - points[ij[1]][1]).length)
    for track in tracks:
        track.select = track.name in (f"Wall{a}", f"Wall{b}")
    with _clip_editor_override(clip):
        assert bpy.ops.clip.set_scale(distance=(points[a][1] - points[b][1]).length) == {"FINISHED"}
    scene.frame_set(1)
    return {"scene": scene, "clip": clip, "z": z_files, "folder": folder, "true": true_cam, "solved": solved_cam}


def _z_at(path, points):
    """The scene's Z pass at plate pixels (x, y from the top-left), read by the engine's OpenEXR."""
    code = ("import sys, json, math, OpenEXR\n"
            "f = OpenEXR.File(sys.argv[1])\n"
            "z = next(ch.pixels for part in f.parts for name, ch in part.channels.items()\n"
            "         if name.endswith('Depth.Z') or name.endswith('Depth.V') or name == 'Depth')\n"
            "z = z if z.ndim == 2 else z[..., 0]\n"
            "print(json.dumps([float(z[int(math.floor(y)), int(math.floor(x))]) for x, y in json.loads(sys.argv[2])]))\n")
    return json.loads(run_engine(code, str(path), json.dumps(points)))


def addon_exr():
    import importlib

    return importlib.import_module(MODULE + ".utils.exr")


def test_camera_solve_gives_anchors_at_the_scenes_depth(solved, addon):
    """Bundles projected through the solved camera: pixels where the plate shows them, depth = the Z pass."""
    scene, clip = solved["scene"], solved["clip"]
    rec = clip.tracking.reconstruction
    assert rec.average_error < 0.5, rec.average_error
    anchors, info = addon.tracking.solve_anchors(scene, clip, source_first=1)
    assert info.bundles >= 15 and info.scale_from == "Solved Camera"
    assert info.anchors == len(anchors) > 200
    errors, pixel_errors = [], []
    for a in anchors:
        marker = clip.tracking.tracks[a.track].markers.find_frame(a.frame, exact=True)
        pixel_errors.append(max(abs(a.x - marker.co[0] * 160), abs(a.y - (1 - marker.co[1]) * 120)))
    for frame, path in solved["z"].items():
        on_frame = [a for a in anchors if a.frame == frame]
        zs = _z_at(path, [(a.x, a.y) for a in on_frame])
        errors += [abs(a.depth / z - 1) for a, z in zip(on_frame, zs)]
    errors.sort()
    pixel_errors.sort()
    assert len(errors) >= 40
    assert pixel_errors[len(pixel_errors) // 2] < 0.5 and pixel_errors[-1] < 2.0, pixel_errors[-5:]
    print(f"solve: {info.bundles} bundles, {len(anchors)} anchors, scale {info.scale:.4f}, solve error "
          f"{rec.average_error:.2e} px; depth vs Z pass: median {errors[len(errors) // 2]:.2e}, "
          f"p90 {errors[int(0.9 * len(errors))]:.2e} ({len(errors)} anchors); pixel vs marker median "
          f"{pixel_errors[len(pixel_errors) // 2]:.3f} px")
    assert errors[len(errors) // 2] < 0.02 and errors[int(0.9 * len(errors))] < 0.05, errors[-5:]
    # without Set Scale the same bundles are in the solver's units: the scale is what made them match
    solved["solved"].scale = (1.0, 1.0, 1.0)
    try:
        unscaled, _ = addon.tracking.solve_anchors(scene, clip, source_first=1)
    finally:
        solved["solved"].scale = (info.scale,) * 3
    assert unscaled[0].depth == pytest.approx(anchors[0].depth / info.scale, rel=1e-4)
    assert abs(info.scale - 1) > 0.1  # the solver's units are not the scene's


def test_render_with_a_camera_solve_is_in_scene_units(solved, addon, work, monkeypatch, fast_prefs):
    scene, clip = solved["scene"], solved["clip"]
    plugins = work["dir"] / "plugins-brightness"
    plugins.mkdir(exist_ok=True)
    (plugins / "brightness.py").write_text(BRIGHTNESS_PLUGIN)
    monkeypatch.setenv("DVD_VFX_PLUGINS_DIR", str(plugins))
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.extra_args = FAST + " --predictor brightness --no-cache"
    s = scene.dvd_vfx
    s.output_dir = str(work["dir"] / "out" / "<clip>")
    s.mode, s.use_solve, s.near, s.far = "depth", True, 1.0, 2.0  # near/far must not be used
    run = addon.runtime.DepthRun.start(bpy.context)
    assert "--anchors" in run.job.command and "--near" not in run.job.command
    assert run.wait(timeout=300) and run.error is None, run.error
    assert run.result.anchors["used"] >= 100  # the engine's JSON result carries the fit
    assert s.solve_status.startswith("Scene scale: ") and "anchors used" in s.solve_status, s.solve_status
    shot = addon.utils.shot.shot_name(clip.name)
    anchors_csv = work["dir"] / "out" / f"{shot}.anchors.csv"  # next to the shot's pass folder
    assert anchors_csv.read_text().splitlines()[0] == "frame,x,y,depth"
    pass_file = work["dir"] / "out" / shot / f"{shot}.depth.0008.exr"
    fit = addon_exr().read_anchors_header(str(pass_file))
    assert fit["used"] >= 100 and fit["medianRelError"] < 0.05, fit
    # the pass itself now sits at the scene's depth: compare with the Z pass inside each plane
    errors = []
    pixels = [(20, 20), (140, 15), (40, 60), (120, 100), (80, 110)]
    for (x, y), z in zip(pixels, _z_at(solved["z"][8], [(x + 0.5, y + 0.5) for x, y in pixels])):
        d = addon_exr().read_value(str(pass_file), x, y)
        errors.append(abs(d / z - 1))
    errors.sort()
    print(f"render with solve: fit {fit}; pass vs Z pass at 5 pixels: {[round(e, 4) for e in errors]}")
    assert errors[len(errors) // 2] < 0.1, errors


def test_fog_density_is_per_scene_unit(addon, engine_py, work):
    """amount = 1 - exp(-density * distance travelled in fog), the distance in scene units from Fog Start to Fog End."""
    import math

    depths = [2.0, 10.0, 30.0, 60.0, 200.0]
    w, h = 32 * len(depths), 16
    scene = _new_scene("Fog", (w, h))
    try:
        scene.view_settings.view_transform = "Raw"
    except TypeError:
        scene.view_settings.view_transform = "Standard"
    folder = work["dir"] / "fog"
    _write_plate(folder / "plate.0001.exr", w, h, lambda x, y: 0.0)
    plate = bpy.data.images.load(str(folder / "plate.0001.exr"))
    first = _depth_pass(engine_py, folder, "plate", [1], [[depths[x // 32] for x in range(w)]] * h)
    image = addon.compositor.load_depth_image("fog.depth", str(first))
    mapping = addon.utils.shot.image_user_mapping(clip_start=1, clip_offset=0, source_first=1, first=1, last=1)
    addon.compositor.wire(scene, image=image, mapping=mapping, mode="depth", plate_image=plate, fog=True,
                          fog_start=5.0, fog_end=100.0, fog_density=0.05, fog_colour=(1.0, 1.0, 1.0, 1.0))
    got = _render_comp(scene, folder / "comp.exr")
    for band, z in enumerate(depths):
        want = 1 - math.exp(-0.05 * (min(max(z, 5.0), 100.0) - 5.0))
        assert got[h // 2][band * 32 + 16] == pytest.approx(want, abs=0.01), (band, z, [got[h // 2][b * 32 + 16] for b in range(5)])
