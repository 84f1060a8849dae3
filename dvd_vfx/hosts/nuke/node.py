"""The DVD Depth node in Nuke: knobs, finding the plate's Read, starting/cancelling renders, loading results.

Everything here runs on Nuke's main thread: knob callbacks (Render, Cancel) and the two functions
a render worker is given to queue with ``nuke.executeInMainThread`` (show_progress, render_ended). The worker (worker.py) never touches a
node or a knob; the decisions (paths, frames, flags) are plain functions in shot.py.
"""

from __future__ import annotations

import contextlib
import os

from dvd_vfx import __version__
from dvd_vfx.errors import Cancelled, DvdError, InputError

from .config import engine_python as configured_engine_python
from .shot import MODES, NodeSettings, ReadSource, RenderRequest, fog_amount_expression, plan_render, zdefocus_math

NODE_LABEL = "DVD Depth"
MARKER_KNOB = "dvd_depth_version"
FALLBACK_PRESETS = ("standard", "preview", "final", "long-shot", "low-vram")
HELPER_KNOBS = ("depth_read", "depth_copy", "depth_zdefocus", "depth_fog")  # hidden: names of our helper nodes

_RENDERS: dict[str, object] = {}  # node full name -> RenderWorker; main thread only


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
        nuke.File_Knob("output", "output"),
        nuke.File_Knob("engine_python", "engine Python"),
        nuke.File_Knob("weights", "weights folder"),
        nuke.String_Knob("extra_args", "extra engine flags"),
        nuke.Boolean_Knob("add_zdefocus", "add ZDefocus"),
        nuke.Boolean_Knob("add_fog", "add fog"),
        nuke.PyScript_Knob("render", "Render", _command("render")),
        nuke.PyScript_Knob("cancel", "Cancel", _command("cancel")),
        nuke.Text_Knob("status", "status", "idle"),
    ]
    hidden = [nuke.String_Knob(MARKER_KNOB, MARKER_KNOB)] + [nuke.String_Knob(k, k) for k in HELPER_KNOBS]
    for knob in knobs + hidden:
        node.addKnob(knob)
    for knob in hidden:
        knob.setVisible(False)
    node[MARKER_KNOB].setValue(__version__)
    node["near"].setValue(defaults.near)
    node["far"].setValue(defaults.far)
    node["use_read_range"].setValue(True)
    node["output"].setTooltip("SHOT.depth.####.exr sequence; empty: next to the script, "
                              "depth/<shot>/<shot>.depth.####.exr")
    node["engine_python"].setTooltip("python of the environment with dvd-vfx and torch; empty: $DVD_VFX_PYTHON or "
                                     "what `dvd-vfx install nuke` recorded")
    node["weights"].setTooltip("DVD weights folder; empty: the engine's default ($DVD_VFX_WEIGHTS, user data dir)")
    node["extra_args"].setTooltip("more `dvd-vfx render` flags, e.g. --resolution 320 --device cuda:1")


def create_node():
    """Nodes > DVD > DVD Depth: a Group (passes its input through) with the DVD Depth knobs."""
    nuke = _nuke()
    with undo("Create DVD Depth"):
        node = nuke.createNode("Group", inpanel=False)
        node.setName("DVDDepth1")
        node.begin()
        try:
            plate = nuke.nodes.Input(name="plate")
            nuke.nodes.Output().setInput(0, plate)
        finally:
            node.end()
        add_knobs(node)
        node["label"].setValue("[value mode]")
    return node


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


def read_source(read) -> ReadSource:
    return ReadSource.from_knobs(file=read["file"].value(), first=read["first"].value(), last=read["last"].value(),
                                 frame_mode=read["frame_mode"].value(), frame=read["frame"].value(),
                                 read_name=read.name())


def node_settings(node) -> NodeSettings:
    return NodeSettings(
        preset=node["preset"].value(), mode=node["mode"].value(), near=node["near"].value(),
        far=node["far"].value(), use_read_range=bool(node["use_read_range"].value()),
        first=int(node["first"].value()), last=int(node["last"].value()), output=node["output"].value(),
        engine_python=node["engine_python"].value(), weights=node["weights"].value(),
        extra_args=node["extra_args"].value())


def plan(node) -> RenderRequest:
    """The render this node asks for now (reads knobs: main thread)."""
    nuke = _nuke()
    source = read_source(find_read(node))
    request = plan_render(source, node_settings(node), script_dir=nuke.script_directory(),
                          configured_python=configured_engine_python())
    if node["use_read_range"].value():  # show the range that will render
        node["first"].setValue(request.comp_range[0])
        node["last"].setValue(request.comp_range[1])
    return request


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
    node = nuke.toNode(node_name)
    if node is None:  # deleted while rendering: the files are on disk, nothing to update
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


def _helper(node, knob: str, node_class: str, name: str, **knobs):
    """The helper node whose name `knob` records, or a new one (created next to the DVD node)."""
    nuke = _nuke()
    existing = nuke.toNode(node[knob].value()) if node[knob].value() else None
    if existing is not None and existing.Class() == node_class:
        return existing
    helper = getattr(nuke.nodes, node_class)(**knobs)
    helper.setName(name)
    node[knob].setValue(helper.name())
    return helper


def load_result(node, request: RenderRequest, result) -> None:
    """Create or update the Read of the depth pass (and the helpers asked for) next to the node."""
    with undo("DVD Depth: load depth pass"), _parent(node):
        read = _helper(node, "depth_read", "Read", f"{node.name()}_depth")
        read.setXYpos(node.xpos() + 120, node.ypos())
        read["file"].setValue(result.pattern.replace(os.sep, "/"))
        for knob, value in (("origfirst", result.first_frame), ("origlast", result.last_frame),
                            ("first", result.first_frame), ("last", result.last_frame)):
            read[knob].setValue(value)
        read["frame_mode"].setValue(request.source.frame_mode)  # the plate's offset: depth lines up with it
        read["frame"].setValue(request.source.frame)
        read["raw"].setValue(True)  # data, not colour
        read["on_error"].setValue("black")
        read["label"].setValue(f"depth.Z ({result.mode})")
        if node["add_zdefocus"].value() or node["add_fog"].value():
            copy = _helper(node, "depth_copy", "Copy", f"{node.name()}_withDepth")
            copy["from0"].setValue("depth.Z")
            copy["to0"].setValue("depth.Z")
            copy.setInput(0, node)  # B: the plate, through the DVD node
            copy.setInput(1, read)  # A: the depth pass
            copy.setXYpos(node.xpos(), node.ypos() + 60)
            if node["add_zdefocus"].value():
                defocus = _helper(node, "depth_zdefocus", "ZDefocus2", f"{node.name()}_ZDefocus")
                defocus["channels"].setValue("rgba")
                defocus["z_channel"].setValue("depth.Z")
                defocus["math"].setValue(zdefocus_math(result.mode))
                defocus.setInput(0, copy)
                defocus.setXYpos(copy.xpos(), copy.ypos() + 60)
            if node["add_fog"].value():
                fog = _helper(node, "depth_fog", "Expression", f"{node.name()}_fog")
                fog["temp_name0"].setValue("f")
                fog["temp_expr0"].setValue(fog_amount_expression(result.mode, request.near, request.far))
                for i, colour in enumerate(("0.6", "0.65", "0.7")):  # a neutral haze; edit to taste
                    fog[f"expr{i}"].setValue(f"{'rgb'[i]} + ({colour} - {'rgb'[i]}) * f")
                fog.setInput(0, copy)
                fog.setXYpos(copy.xpos() + 120, copy.ypos() + 60)
        cache = {"hit": "cache hit", "partial": "cache resumed", "miss": "rendered", "off": "rendered"}
        set_status(node, f"done: {result.shot} frames {result.first_frame}-{result.last_frame} "
                         f"({cache.get(result.cache, result.cache)}, {result.seconds:.1f} s)")
