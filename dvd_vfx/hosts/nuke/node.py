"""The DVD Depth node in Nuke: knobs, finding the plate's Read, starting/cancelling renders, loading results.

The node is a Group whose output is its input plate with a ``depth.Z`` channel added: inside it a
Read of the depth pass ("depth_read") and a Copy ("depth_copy": B = the plate, A = the pass), so
the Viewer's channel menu shows depth.Z, a ZDefocus2 or fog below it just works, and a Write
renders it on the farm. Everything here runs on Nuke's main thread: knob callbacks (Render,
Cancel, Submit to farm, knobChanged) and the two functions a render worker is given to queue
with ``nuke.executeInMainThread`` (show_progress, render_ended). The worker (worker.py) never
touches a node or a knob; the decisions (paths, frames, flags) are plain functions in shot.py.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import re
import subprocess
import sys

from dvd_vfx import __version__
from dvd_vfx.errors import Cancelled, DvdError, InputError

from .config import engine_python as configured_engine_python
from .shot import (MODES, NodeSettings, Pick, ReadSource, RenderRequest, anchor_rows, anchors_csv,
                   depth_read_frames, focus_value, fog_amount_expression, format_pick, parse_picks, plan_render,
                   substitute_view, zdefocus_math)

NODE_LABEL = "DVD Depth"
MARKER_KNOB = "dvd_depth_version"
FALLBACK_PRESETS = ("standard", "preview", "final", "long-shot", "low-vram")
HELPER_KNOBS = ("depth_side_read", "depth_zdefocus", "depth_fog")  # hidden: names of helpers next to the node
INNER_READ, INNER_COPY = "depth_read", "depth_copy"  # inside the group
DTYPES = ("auto", "bf16", "fp16", "fp32")
OFFLOAD = ("auto", "on", "off")
KNOB_CHANGED = "import dvd_nuke; dvd_nuke.knob_changed(nuke.thisNode(), nuke.thisKnob())"

_VIEW_TOKEN = re.compile(r"%[Vv]")
_RENDERS: dict[str, object] = {}  # node full name -> RenderWorker; main thread only
_SCRIPT = {"generation": 0}  # bumped when a script closes: a render of a closed script loads nothing


def _nuke():
    import nuke  # Nuke's own module (or the tests' fake); imported late so installs work without Nuke

    return nuke


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextlib.contextmanager
def undo(name: str):
    nuke = _nuke()
    nuke.Undo.begin(name)
    try:
        yield
    finally:
        nuke.Undo.end()


# -- creating the node ---------------------------------------------------------------------------


def preset_names() -> list[str]:
    """Shipped and user presets (torch-free: presets are TOML); the shipped names if that fails."""
    try:
        from dvd_vfx.engine import Engine

        names = list(Engine().presets())
    except Exception:  # a broken user preset must not stop the node from being created
        names = []
    names = names or list(FALLBACK_PRESETS)
    if "standard" in names:
        names.remove("standard")
        names.insert(0, "standard")
    return names


def _command(function: str) -> str:
    # PyScript_Knob commands are code strings run by Nuke with nuke.thisNode() set; keep them one call
    return f"import dvd_nuke; dvd_nuke.{function}(nuke.thisNode())"


def add_knobs(node) -> None:
    nuke = _nuke()
    defaults = NodeSettings()
    knobs = [
        nuke.Tab_Knob("dvd_depth", NODE_LABEL),
        nuke.Enumeration_Knob("preset", "preset", preset_names()),
        nuke.Enumeration_Knob("mode", "mode", list(MODES)),
        nuke.Double_Knob("near", "near"),
        nuke.Double_Knob("far", "far"),
        nuke.Boolean_Knob("use_read_range", "frame range from Read"),
        nuke.Int_Knob("first", "first frame"),
        nuke.Int_Knob("last", "last frame"),
        nuke.String_Knob("view", "view"),
        nuke.File_Knob("output", "output"),
        nuke.Int_Knob("resolution", "resolution"),
        nuke.Int_Knob("window", "window"),
        nuke.Int_Knob("overlap", "overlap"),
        nuke.Enumeration_Knob("dtype", "dtype", list(DTYPES)),
        nuke.Enumeration_Knob("offload", "offload", list(OFFLOAD)),
        nuke.File_Knob("engine_python", "engine Python"),
        nuke.File_Knob("weights", "weights folder"),
        nuke.String_Knob("extra_args", "extra engine flags"),
        nuke.PyScript_Knob("render", "Render", _command("render")),
        nuke.PyScript_Knob("cancel", "Cancel", _command("cancel")),
        nuke.PyScript_Knob("submit_farm", "Submit to farm", _command("submit_farm")),
        nuke.Text_Knob("status", "status", "idle"),
        nuke.Tab_Knob("dvd_focus", "Focus and scale"),
        nuke.XY_Knob("focus_point", "focus point"),
        nuke.Text_Knob("focus_depth", "depth here", "-"),
        nuke.Boolean_Knob("add_zdefocus", "add ZDefocus"),
        nuke.Boolean_Knob("add_fog", "add fog"),
        nuke.Boolean_Knob("side_read", "also a Read of the pass next to the node"),
        nuke.Double_Knob("anchor_distance", "distance at focus point"),
        nuke.PyScript_Knob("add_anchor", "Add anchor", _command("add_anchor")),
        nuke.Multiline_Eval_String_Knob("anchor_points", "anchor points"),
        nuke.File_Knob("anchors_file", "anchors file"),
        nuke.File_Knob("camera_chan", "camera .chan"),
        nuke.File_Knob("camera_points", "camera points"),
        nuke.PyScript_Knob("anchors_from_camera", "Anchors from camera", _command("anchors_from_camera")),
    ]
    hidden = [nuke.String_Knob(MARKER_KNOB, MARKER_KNOB)] + [nuke.String_Knob(k, k) for k in HELPER_KNOBS]
    for knob in knobs + hidden:
        node.addKnob(knob)
    for knob in hidden:
        knob.setFlag(nuke.INVISIBLE)  # saved with the script (setVisible only changes an open panel)
    node[MARKER_KNOB].setValue(__version__)
    node["near"].setValue(defaults.near)
    node["far"].setValue(defaults.far)
    node["use_read_range"].setValue(True)
    node["overlap"].setValue(defaults.overlap)
    node["knobChanged"].setValue(KNOB_CHANGED)
    node["output"].setTooltip("the pass: DIR/NAME.depth.####.exr, relative to the script's folder, with tokens {shot} "
                              "(the plate's name), {version} (the script's vNNN), {script} (its name), {view}; "
                              "empty: depth/{shot}/{shot}.depth.####.exr")
    node["view"].setTooltip("stereo plates (%V in the Read's file): the view to render, e.g. left")
    for name, what in (("resolution", "working short side"), ("window", "frames per window, 4n+1")):
        node[name].setTooltip(f"{what}; 0: the preset's")
    node["overlap"].setTooltip("frames shared by consecutive windows; -1: the preset's")
    node["focus_point"].setTooltip("drag in the Viewer: depth.Z under it sets the ZDefocus focus plane")
    node["anchor_points"].setTooltip("known distances, one per line: frame x y distance [weight] (Nuke pixel "
                                     "coordinates, comp frames); depth mode then renders in these scene units")
    node["anchors_file"].setTooltip("or a CSV/JSON anchors file (frame,x,y,depth[,weight] in plate file frames, "
                                    "y from the top); used when 'anchor points' is empty")
    node["engine_python"].setTooltip("python of the environment with dvd-vfx and torch; empty: $DVD_VFX_PYTHON or "
                                     "what `dvd-vfx install nuke` recorded")
    node["weights"].setTooltip("DVD weights folder; empty: the engine's default ($DVD_VFX_WEIGHTS, user data dir)")
    node["extra_args"].setTooltip("more `dvd-vfx render` flags, e.g. --resolution 320 --device cuda:1")


def create_node():
    """Nodes > DVD > DVD Depth: a Group (its input plate + depth.Z once a pass is loaded) with the DVD Depth knobs."""
    nuke = _nuke()
    with undo("Create DVD Depth"):
        node = nuke.createNode("Group", inpanel=False)
        node.setName("DVDDepth1")
        node.begin()
        try:
            plate = nuke.nodes.Input(name="plate")
            read = nuke.nodes.Read(name=INNER_READ)
            read["raw"].setValue(True)  # data, not colour
            read["on_error"].setValue("black")  # frames the farm has not written yet
            copy = nuke.nodes.Copy(name=INNER_COPY)
            copy["from0"].setValue("depth.Z")
            copy["to0"].setValue("depth.Z")
            copy.setInput(0, plate)  # B: the plate passes through
            copy.setInput(1, read)  # A: the depth pass
            copy["disable"].setValue(True)  # until a pass is loaded
            nuke.nodes.Output().setInput(0, copy)
        finally:
            node.end()
        add_knobs(node)
        node["label"].setValue("[value mode]")
    return node


def register_callbacks() -> None:
    """Closing the script (or quitting) cancels this session's renders; idempotent (init.py runs once per start)."""
    nuke = _nuke()
    if not _SCRIPT.get("registered"):
        nuke.addOnScriptClose(on_script_close)
        atexit.register(on_script_close)  # quitting however Nuke quits: no engine process outlives the session
        _SCRIPT["registered"] = True


def on_script_close() -> None:
    """onScriptClose: cancel every render (the engine stops; finished windows stay cached) and forget them, so a
    render that ends later loads nothing into the next script's node of the same name."""
    _SCRIPT["generation"] += 1
    workers = list(_RENDERS.values())
    _RENDERS.clear()
    for worker in workers:
        worker.cancel()
    for worker in workers:
        worker.join(timeout=15)


def add_menu() -> None:
    """menu.py: Nodes > DVD > DVD Depth (a callable, not a code string)."""
    nuke = _nuke()
    nuke.menu("Nodes").addMenu("DVD").addCommand(NODE_LABEL, create_node)


# -- reading the node and its plate ------------------------------------------------------------------


def is_dvd_node(node) -> bool:
    return node is not None and MARKER_KNOB in node.knobs()


def find_read(node):
    """The nearest Read upstream (breadth-first through every input), or InputError."""
    seen, frontier = set(), [node.input(i) for i in range(node.inputs())]
    while frontier:
        current = frontier.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if current.Class() == "Read":
            return current
        frontier += [current.input(i) for i in range(current.inputs())]
    raise InputError(f"{node.name()} has no Read upstream; connect its input to a Read node (or to a node "
                     f"below one)")


def read_source(read, view: str = "") -> ReadSource:
    """The plate as Nuke reads it: nuke.filename() expands TCL/environment expressions; %V/%v become the view."""
    nuke = _nuke()
    try:
        file = nuke.filename(read) or ""
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"Read {read.name()}: its file knob {read['file'].value()!r} does not expand: "
                         f"{first_line(exc)}") from None
    file = substitute_view(file, view, nuke.views())
    return ReadSource.from_knobs(file=file, first=read["first"].value(), last=read["last"].value(),
                                 frame_mode=read["frame_mode"].value(), frame=read["frame"].value(),
                                 read_name=read.name())


def node_settings(node) -> NodeSettings:
    return NodeSettings(
        preset=node["preset"].value(), mode=node["mode"].value(), near=node["near"].value(),
        far=node["far"].value(), use_read_range=bool(node["use_read_range"].value()),
        first=int(node["first"].value()), last=int(node["last"].value()), output=node["output"].value(),
        engine_python=node["engine_python"].value(), weights=node["weights"].value(),
        extra_args=node["extra_args"].value(), resolution=int(node["resolution"].value()),
        window=int(node["window"].value()), overlap=int(node["overlap"].value()), dtype=node["dtype"].value(),
        offload=node["offload"].value(), view=node["view"].value().strip(),
        anchors=node["anchors_file"].value().strip())


def script_name() -> str:
    """The saved script's path ("" while unsaved: nuke.root().name() is then "Root")."""
    name = _nuke().root().name()
    return "" if not name or name == "Root" else name


def project_directory() -> str:
    """The root's project directory, expanded (Nuke resolves relative file paths against it), else ""."""
    knob = _nuke().root().knob("project_directory")
    if knob is None:
        return ""
    try:
        return (knob.evaluate() or "").strip()
    except (RuntimeError, ValueError):
        return ""


def plan(node) -> RenderRequest:
    """The render this node asks for now (reads knobs: main thread)."""
    nuke = _nuke()
    read = find_read(node)
    settings = node_settings(node)
    if settings.view and not _VIEW_TOKEN.search(read["file"].value()):
        settings = dataclasses.replace(settings, view="")  # a mono plate: the view knob does not apply
    source = read_source(read, settings.view)
    picks = parse_picks(node["anchor_points"].value())
    script_dir = nuke.script_directory()
    request = plan_render(source, settings, script_dir=script_dir, configured_python=configured_engine_python(),
                          script_name=script_name(), project_dir=project_directory())
    if picks:
        request = _with_picked_anchors(request, picks, read)
    if node["use_read_range"].value():  # show the range that will render
        node["first"].setValue(request.comp_range[0])
        node["last"].setValue(request.comp_range[1])
    return request


def _with_picked_anchors(request: RenderRequest, picks: list[Pick], read) -> RenderRequest:
    """Write the Viewer-picked anchors as the engine's CSV (next to the pass) and add --anchors to the render."""
    if request.mode != "depth":
        raise InputError("anchor points give depth in scene units: set mode to depth (disparity has no scale)")
    if len(picks) < 3:
        raise InputError(f"{len(picks)} anchor points; at least 3 are needed to fit the shot's scale (pick more, "
                         f"spread over near and far)")
    rows = anchor_rows(picks, offset=request.source.offset, plate_height=int(read.height()))
    lo, hi = request.file_range
    outside = [format_pick(p) for p, row in zip(picks, rows) if not lo <= row[0] <= hi]
    if outside:
        raise InputError(f"anchor points {'; '.join(outside)} are on frames outside the render's comp frames "
                         f"{request.comp_range[0]}-{request.comp_range[1]}; render those frames or remove the points")
    path = os.path.join(request.out_dir, f"{request.shot}.anchors.csv")
    os.makedirs(request.out_dir, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(anchors_csv(rows))
    os.replace(tmp, path)
    args = [a for a in request.args]
    if "--anchors" in args:  # the picks win over an anchors file
        i = args.index("--anchors")
        del args[i:i + 2]
    at = args.index("--replace")
    args[at:at] = ["--anchors", path]
    return dataclasses.replace(request, args=args)


def set_status(node, text: str) -> None:
    node["status"].setValue(text)


# -- Render / Cancel (knob commands) ----------------------------------------------------------------


def is_rendering(node) -> bool:
    return node.fullName() in _RENDERS


def render(node):
    """Render button: plan on the main thread, then render in a worker thread. Returns the worker or None."""
    nuke = _nuke()
    if is_rendering(node):
        nuke.message(f"{node.name()} is already rendering; press Cancel first")
        return None
    try:
        request = plan(node)
    except DvdError as exc:
        set_status(node, f"not rendered: {first_line(exc)}")
        nuke.message(f"{NODE_LABEL} {node.name()}: {first_line(exc)}")
        return None
    from .worker import RenderWorker  # pluggy (through the job protocol) only when a render starts

    worker = RenderWorker(node.fullName(), request, show_progress=show_progress, render_ended=render_ended)
    worker.script_generation = _SCRIPT["generation"]
    _RENDERS[node.fullName()] = worker
    set_status(node, f"rendering {request.shot} frames {request.comp_range[0]}-{request.comp_range[1]} ...")
    worker.start()
    return worker


def cancel(node) -> bool:
    """Cancel button: ask the worker to stop (finished windows stay cached)."""
    worker = _RENDERS.get(node.fullName())
    if worker is None:
        set_status(node, "idle (nothing to cancel)")
        return False
    worker.cancel()
    set_status(node, "cancelling ...")
    return True


# -- results (passed to the worker, which queues them with nuke.executeInMainThread) ----------------


def show_progress(node_name: str, text: str) -> None:
    node = _nuke().toNode(node_name)
    if node is not None:
        set_status(node, text)


def render_ended(node_name: str, worker, result, error) -> None:
    """The worker's last call: load the pass, or report the engine's one-line error."""
    nuke = _nuke()
    if _RENDERS.get(node_name) is worker:
        del _RENDERS[node_name]
    if getattr(worker, "script_generation", _SCRIPT["generation"]) != _SCRIPT["generation"]:
        return  # its script was closed: a node of the same name in another script is not this node
    node = nuke.toNode(node_name)
    if node is None or not is_dvd_node(node):  # deleted while rendering: the files are on disk
        return
    if error is None:
        load_result(node, worker.request, result)
    elif isinstance(error, Cancelled):
        set_status(node, "cancelled (finished windows are cached; Render resumes)")
    else:
        set_status(node, f"failed: {first_line(error)}")
        nuke.message(f"{NODE_LABEL} {node.name()} failed:\n{first_line(error)}")


def _parent(node):
    nuke = _nuke()
    path = node.fullName().rsplit(".", 1)
    return nuke.toNode(path[0]) if len(path) == 2 else nuke.root()


def _owns(node, helper) -> bool:
    """A helper is this node's when it reads from the node (input 0), or, for the side Read (no input), when its
    label names the node: a pasted copy of a DVD node carries the original's helper names in its hidden knobs
    and must make its own helpers rather than take over the original's."""
    if helper.Class() == "Read":
        return helper["label"].value().endswith(f" of {node.name()}")
    return helper.input(0) is node


def _helper(node, knob: str, node_class: str, name: str):
    """The helper node whose name `knob` records, if it is still this node's, else a new one (next to the node)."""
    nuke = _nuke()
    existing = nuke.toNode(node[knob].value()) if node[knob].value() else None
    if existing is not None and existing.Class() == node_class and _owns(node, existing):
        return existing
    helper = getattr(nuke.nodes, node_class)()
    helper.setName(name)
    node[knob].setValue(helper.name())
    return helper


def _inner(node, name: str):
    inner = node.node(name)
    if inner is None:
        raise InputError(f"{node.name()} has no {name} node inside; create a new DVD Depth node")
    return inner


def set_pass(node, request: RenderRequest, pattern: str, first_file: int, last_file: int, mode: str) -> None:
    """Point the node's inner Read at a pass (file frames first..last) and put its depth.Z in the node's stream."""
    read = _inner(node, INNER_READ)
    read["file"].setValue(pattern.replace(os.sep, "/"))
    for knob, value in depth_read_frames(request.source, first_file, last_file).items():
        read[knob].setValue(value)
    read["label"].setValue(f"depth.Z ({mode})")
    _inner(node, INNER_COPY)["disable"].setValue(False)


def load_result(node, request: RenderRequest, result) -> None:
    """The pass into the node's stream (inner Read + Copy) and the helpers asked for next to the node."""
    with undo("DVD Depth: load depth pass"):
        set_pass(node, request, result.pattern, result.first_frame, result.last_frame, result.mode)
        with _parent(node):
            _update_helpers(node, request, result.mode, result.pattern, result.first_frame, result.last_frame)
        cache = {"hit": "cache hit", "partial": "cache resumed", "miss": "rendered", "off": "rendered"}
        set_status(node, f"done: {result.shot} frames {result.first_frame}-{result.last_frame} "
                         f"({cache.get(result.cache, result.cache)}, {result.seconds:.1f} s)")


def _update_helpers(node, request, mode, pattern, first_file, last_file) -> None:
    if node["side_read"].value():  # optional: the pass as its own Read next to the node
        side = _helper(node, "depth_side_read", "Read", f"{node.name()}_depth")
        side["file"].setValue(pattern.replace(os.sep, "/"))
        for knob, value in depth_read_frames(request.source, first_file, last_file).items():
            side[knob].setValue(value)
        side["raw"].setValue(True)
        side["label"].setValue(f"depth.Z ({mode}) of {node.name()}")
        side.setXYpos(node.xpos() + 120, node.ypos())
    if node["add_zdefocus"].value():
        defocus = _helper(node, "depth_zdefocus", "ZDefocus2", f"{node.name()}_ZDefocus")
        defocus["channels"].setValue("rgba")
        defocus["z_channel"].setValue("depth.Z")
        defocus["math"].setValue(zdefocus_math(mode))
        defocus.setInput(0, node)  # the node's stream carries depth.Z
        defocus.setXYpos(node.xpos(), node.ypos() + 60)
    if node["add_fog"].value():
        fog = _helper(node, "depth_fog", "Expression", f"{node.name()}_fog")
        fog["temp_name0"].setValue("f")
        fog["temp_expr0"].setValue(fog_amount_expression(mode, request.near, request.far))
        for i, colour in enumerate(("0.6", "0.65", "0.7")):  # a neutral haze; edit to taste
            fog[f"expr{i}"].setValue(f"{'rgb'[i]} + ({colour} - {'rgb'[i]}) * f")
        fog.setInput(0, node)
        fog.setXYpos(node.xpos() + 120, node.ypos() + 60)


# -- focus and anchors (knobChanged, buttons) ----------------------------------------------------------


def knob_changed(node, knob) -> None:
    """The node's knobChanged: dragging the focus point samples depth.Z and sets the ZDefocus focus plane."""
    if knob is None or knob.name() != "focus_point":
        return
    try:
        update_focus(node)
    except DvdError as exc:
        node["focus_depth"].setValue(first_line(exc))


def update_focus(node) -> float:
    """depth.Z of the node's output under the focus point (current frame) -> 'depth here' and the ZDefocus2's
    focal_point and focus plane (center). Returns the depth."""
    nuke = _nuke()
    x, y = node["focus_point"].value()
    value = focus_value(node.sample("depth.Z", x, y), node["mode"].value())
    node["focus_depth"].setValue(f"{value:.4g} at frame {nuke.frame()}")
    name = node["depth_zdefocus"].value()
    defocus = nuke.toNode(name) if name else None
    if defocus is not None and defocus.Class() == "ZDefocus2" and defocus.input(0) is node:
        defocus["focal_point"].setValue([x, y])
        defocus["center"].setValue(value)
    return value


def add_anchor(node) -> None:
    """Add anchor button: the focus point at the current frame with the typed distance, as an anchor line."""
    nuke = _nuke()
    distance = float(node["anchor_distance"].value())
    if distance <= 0:
        nuke.message(f"{NODE_LABEL} {node.name()}: type the distance to the point under the focus point "
                     f"(scene units, along the camera's axis) in 'distance at focus point' first")
        return
    x, y = node["focus_point"].value()
    line = format_pick(Pick(int(nuke.frame()), x, y, distance))
    text = node["anchor_points"].value().rstrip("\n")
    node["anchor_points"].setValue((text + "\n" if text else "") + line)
    set_status(node, f"anchor added: {line}")


def _run_engine(args: list, command: str, *, timeout: float, cwd) -> None:
    """Run a `dvd-vfx COMMAND` in the engine's Python; InputError with its last error line when it fails."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise InputError(lines[-1] if lines else f"dvd-vfx {command} exited with {proc.returncode}")


def anchors_from_camera(node) -> bool:
    """Anchors from a CameraTracker export (.chan + points): `dvd-vfx anchors from-camera` in the engine's Python,
    written next to the script; the file goes on the 'anchors file' knob."""
    nuke = _nuke()
    chan, points = node["camera_chan"].value().strip(), node["camera_points"].value().strip()
    try:
        if not chan or not points:
            raise InputError("set 'camera .chan' (the CameraTracker's exported camera) and 'camera points' (its "
                             "exported point cloud) first")
        request = plan(node)
        out = os.path.join(os.path.dirname(request.out_dir) or request.out_dir, f"{request.shot}.camera-anchors.csv")
        # the plate gives the size and the frames the camera may use (its handles are skipped)
        args = [request.engine_python, "-m", "dvd_vfx.cli", "anchors", "from-camera", "--points", points,
                "--camera", chan, "--plate", request.source.engine_source, "-o", out]
        os.makedirs(os.path.dirname(out), exist_ok=True)
        _run_engine(args, "anchors from-camera", timeout=300, cwd=nuke.script_directory() or None)
    except (DvdError, OSError, subprocess.SubprocessError) as exc:
        set_status(node, f"no anchors: {first_line(exc)}")
        nuke.message(f"{NODE_LABEL} {node.name()}: {first_line(exc)}")
        return False
    node["anchors_file"].setValue(out.replace(os.sep, "/"))
    set_status(node, f"anchors from the camera: {out}")
    return True


# -- farm and batch -----------------------------------------------------------------------------------


def farm_paths(request: RenderRequest, script: str) -> str:
    """Where Submit to farm writes the Open Job Description template: next to the script."""
    stem = os.path.splitext(os.path.basename(script))[0] or "untitled"
    return os.path.join(os.path.dirname(script), "farm", f"{stem}.{request.shot}", "template.yaml")


def submit_farm(node):
    """Submit to farm: `dvd-vfx farm openjd` writes the shot's job next to the script; the node's Read points at
    the pass, so its frames appear in the node's stream as the farm writes them. Returns the template path."""
    nuke = _nuke()
    try:
        request = plan(node)
        script = script_name()
        if not script:
            raise InputError("save the script first: the farm job is written next to it")
        template = farm_paths(request, script)
        args = [request.engine_python, "-m", "dvd_vfx.cli", "farm", "openjd"] + _farm_args(request) + [
            "-o", template, "--engine-python", request.engine_python]
        folder = os.path.dirname(template)
        made = not os.path.isdir(folder)
        os.makedirs(folder, exist_ok=True)
        try:
            _run_engine(args, "farm openjd", timeout=600, cwd=os.path.dirname(script))
        except InputError:
            if made:
                with contextlib.suppress(OSError):
                    os.rmdir(folder)  # nothing left behind (only if the engine wrote nothing there)
            raise
    except (DvdError, OSError, subprocess.SubprocessError) as exc:
        set_status(node, f"not submitted: {first_line(exc)}")
        nuke.message(f"{NODE_LABEL} {node.name()}: {first_line(exc)}")
        return None
    with undo("DVD Depth: farm job"):
        set_pass(node, request, request.pattern, request.file_range[0], request.file_range[1], request.mode)
    set_status(node, f"farm job written: {template} (the node shows frames as they are written)")
    return template


def _farm_args(request: RenderRequest) -> list[str]:
    """The render's arguments as `dvd-vfx farm openjd` takes them (--output-dir for -o; no --replace)."""
    args = list(request.args)
    args[args.index("-o")] = "--output-dir"
    return [a for a in args if a != "--replace"]


def render_and_wait(node, *, quiet: bool = False):
    """Render a DVD Depth node and wait, on the calling thread: for `nuke -t` and batch scripts.

    Raises the engine's error (DvdError) when the render fails; returns the result (pattern, frames, ...).
    The node's stream carries the pass afterwards, so a Write below it renders depth.Z. Progress goes to
    stdout unless quiet.
    """
    if is_rendering(node):
        raise InputError(f"{node.name()} is already rendering in this session")
    request = plan(node)
    from .worker import RenderWorker

    def say(_name, text):
        if not quiet:
            print(f"{NODE_LABEL} {node.name()}: {text}", file=sys.stdout, flush=True)

    worker = RenderWorker(node.fullName(), request, show_progress=say, render_ended=lambda *a: None)
    worker.run_blocking()
    if worker.error is not None:
        set_status(node, f"failed: {first_line(worker.error)}")
        raise worker.error
    load_result(node, request, worker.result)
    return worker.result
