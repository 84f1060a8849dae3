"""A recording fake of Nuke's Python API (the part dvd_nuke uses), failing where Nuke fails.

Installed as ``sys.modules["nuke"]`` only inside the Nuke tests (fixture in test_nuke.py).
Each behaviour it enforces names the Foundry page it comes from:

- Threading (https://learn.foundry.com/nuke/developers/90/pythondevguide/threading.html): nodes,
  knobs and dialogs are touched only on the main thread (any access from another thread raises
  RuntimeError and is recorded in ``violations``); ``executeInMainThread(call, args=(), kwargs={})``
  is for other threads ("Do not run the above functions from within the main thread or NUKE will
  hang"): it queues the call, and the test's main thread runs the queue with :func:`pump` /
  :func:`pump_until` (Nuke's event loop). ``args`` must be a tuple.
- Knobs (https://learn.foundry.com/nuke/developers/160/pythondevguide/_autosummary/nuke.knob.html,
  nuke.Node: ``node['name']`` on a knob the node does not have raises NameError): unknown knob
  names fail, also as keyword arguments of ``nuke.nodes.Class(...)``.
- Knob flags (https://learn.foundry.com/nuke/developers/105/ndkdevguide/knobs-and-handles/knobflags.html):
  INVISIBLE hides a knob's panel and Viewer widgets and is saved with the knob; ``setVisible``
  only changes the open panel, so :func:`save_and_reload` keeps flags and drops visibility.
- PyScript_Knob(name, label=None, command=None)
  (https://learn.foundry.com/nuke/developers/132/pythondevguide/_autosummary/nuke.PyScript_Knob.html):
  the command is a string of Python run with ``nuke.thisNode()`` set.
- knobChanged (https://learn.foundry.com/nuke/developers/132/pythondevguide/_autosummary/nuke.addKnobChanged.html):
  a node's ``knobChanged`` knob runs when the user changes a knob, with nuke.thisNode() and
  nuke.thisKnob() set (:func:`user_set` is the user's edit).
- nuke.filename(node, i) (https://learn.foundry.com/nuke/developers/131/pythondevguide/_autosummary/nuke.filename.html):
  "All expansion of commands and variables is done", sequences come back as %04d; the file knob's
  own value() keeps the TCL (File_Knob:
  https://learn.foundry.com/nuke/developers/151/pythondevguide/_autosummary/nuke.File_Knob.html).
  TCL here: ``[getenv NAME]`` (empty when unset, as Tcl's getenv with no default) and ``$env(NAME)``;
  %V/%v are left for the view (nuke.evaluateString:
  https://learn.foundry.com/nuke/developers/latest/pythondevguide/_autosummary/nuke.evaluateString.html).
- Node.sample(channel, x, y, dx, dy, frame)
  (https://learn.foundry.com/nuke/developers/132/pythondevguide/_autosummary/nuke.sample.html):
  "integers are at the corners of pixels, to center on a pixel add .5"; Nuke's y axis points up
  from the bottom-left corner of the format, so row = height - 1 - floor(y) in file order.
- Read frame modes (https://learn.foundry.com/nuke/8.0/content/getting_started/managing_scripts/changing_read_frames.html,
  knobs: https://learn.foundry.com/nuke/11.1/content/reference_guide/image_nodes/read.html):
  "expression" (the frame read in at comp frame `frame`, e.g. frame+499), "start at" N (the Read's
  first frame shows at N), "offset" N (file frame + N); ``before``/``after`` = hold | black outside
  first..last.
- Copy (https://learn.foundry.com/nuke/content/reference_guide/channel_nodes/copy.html): input 0
  is B (passed through), input 1 is A (from0 copied into to0).
- ZDefocus2 knobs (https://learn.foundry.com/nuke/14.1/content/reference_guide/filter_nodes/zdefocus.html):
  channels, z_channel, math (direct | depth | far = 0 | far = -0), focal_point (XY), center
  (the focus plane).
- ProgressTask (https://learn.foundry.com/nuke/developers/131/pythondevguide/_autosummary/nuke.ProgressTask.html):
  setProgress/setMessage/isCancelled from any thread; the task stays on screen until the object
  is destroyed, so :class:`ProgressTask` records when it is (``record.ended``).
- onScriptClose callbacks (nuke.addOnScriptClose, in nuke.callbacks:
  https://learn.foundry.com/nuke/developers/111/pythonreference/identifier-index-O.html):
  :func:`script_close` runs them, then starts a new empty script (as File > Close / quitting do).
"""

from __future__ import annotations

import math
import os
import queue
import re
import threading
import time

# -- recording and threading rules -----------------------------------------------------------

violations: list[str] = []
messages: list[str] = []
main_thread_calls: list[str] = []
progress_tasks: list["ProgressTask"] = []
undo_log: list[str] = []
_queue: queue.Queue = queue.Queue()
_script_directory = ""
env = {"gui": True, "NukeVersionMajor": 15}


def _on_main(what: str) -> None:
    if threading.current_thread() is not threading.main_thread():
        message = f"{what} from thread {threading.current_thread().name!r}: Nuke allows it only on the main thread"
        violations.append(message)
        raise RuntimeError(message)


def executeInMainThread(call, args=(), kwargs=None):
    if threading.current_thread() is threading.main_thread():
        violations.append(f"executeInMainThread({getattr(call, '__name__', call)}) called on the main thread")
        raise RuntimeError("executeInMainThread is for other threads; call directly on the main thread")
    if not isinstance(args, tuple):
        args = (args,)
    _queue.put((call, args, dict(kwargs or {})))


def pump(max_calls: int | None = None) -> int:
    """Run queued main-thread calls (the test is Nuke's event loop); how many ran."""
    assert threading.current_thread() is threading.main_thread()
    ran = 0
    while max_calls is None or ran < max_calls:
        try:
            call, args, kwargs = _queue.get_nowait()
        except queue.Empty:
            break
        main_thread_calls.append(getattr(call, "__name__", repr(call)))
        call(*args, **kwargs)
        ran += 1
    return ran


def pump_until(predicate, timeout: float = 60.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pump()
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


# -- knobs -------------------------------------------------------------------------------------


# knob flags (Knob.h FlagMask values for the ones used)
DISABLED = 0x80
DO_NOT_WRITE = 0x200
INVISIBLE = 0x400
STARTLINE = 0x1000
REPLACE = 1  # nuke.filename(node, nuke.REPLACE)


class Knob:
    default = ""

    def __init__(self, name, label=None, *args):
        if not isinstance(name, str) or not name:
            raise TypeError("a knob's first argument is its name, a non-empty string")
        self._name, self._label = name, label if label is not None else name
        self._value = self.default
        self._visible, self._tooltip, self.node = True, "", None
        self._flags = 0

    def name(self):
        return self._name

    def label(self):
        return self._label

    def value(self):
        _on_main(f"{self._name}.value()")
        return self._value

    getValue = value

    def setValue(self, value):
        _on_main(f"{self._name}.setValue()")
        self._value = self._coerce(value)
        return True

    def _coerce(self, value):
        return value

    def setVisible(self, visible):
        _on_main(f"{self._name}.setVisible()")
        self._visible = bool(visible)

    def visible(self):
        return self._visible

    def setTooltip(self, text):
        _on_main(f"{self._name}.setTooltip()")
        self._tooltip = text

    def setFlag(self, flag):
        _on_main(f"{self._name}.setFlag()")
        self._flags |= int(flag)

    def clearFlag(self, flag):
        _on_main(f"{self._name}.clearFlag()")
        self._flags &= ~int(flag)

    def getFlag(self, flag):
        _on_main(f"{self._name}.getFlag()")
        return bool(self._flags & int(flag))

    def evaluate(self):
        _on_main(f"{self._name}.evaluate()")
        return expand_tcl(str(self._value))


class String_Knob(Knob):
    def __init__(self, name, label=None, value=""):
        super().__init__(name, label)
        self._value = str(value)

    def _coerce(self, value):
        return str(value)


class File_Knob(String_Knob):
    pass


class Multiline_Eval_String_Knob(String_Knob):
    pass


class Text_Knob(String_Knob):
    pass


class XY_Knob(Knob):
    """A position (x, y) with a Viewer handle; value(i) is one of them, value() the first."""

    def __init__(self, name, label=None):
        super().__init__(name, label)
        self._value = [0.0, 0.0]

    def value(self, index=None):
        _on_main(f"{self._name}.value()")
        return list(self._value) if index is None else self._value[index]

    def getValue(self, index=None):
        return self.value(index)

    def _coerce(self, value):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise TypeError(f"{self._name}: an XY_Knob takes [x, y]")
        return [float(value[0]), float(value[1])]


class Tab_Knob(Knob):
    pass


class Int_Knob(Knob):
    default = 0

    def _coerce(self, value):
        return int(value)


class Double_Knob(Knob):
    default = 0.0

    def _coerce(self, value):
        return float(value)


class Boolean_Knob(Knob):
    default = False

    def _coerce(self, value):
        return bool(value)


class Enumeration_Knob(Knob):
    def __init__(self, name, label, values):  # Enumeration_Knob(name, label, values): all three required
        super().__init__(name, label)
        self._values = [str(v) for v in values]
        self._value = self._values[0] if self._values else ""

    def values(self):
        _on_main(f"{self._name}.values()")
        return list(self._values)

    def setValues(self, values):
        _on_main(f"{self._name}.setValues()")
        self._values = [str(v) for v in values]

    def _coerce(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            value = self._values[value]
        if value not in self._values:
            raise ValueError(f"{self._name}: {value!r} is not one of {self._values}")
        return value


class PyScript_Knob(Knob):
    def __init__(self, name, label=None, command=""):
        super().__init__(name, label)
        if not isinstance(command, str):
            raise TypeError("PyScript_Knob takes its command as a string of Python code")
        self._value = command

    def execute(self):
        """Press the button: Nuke runs the code with nuke.thisNode() set to the knob's node."""
        _on_main(f"{self._name}.execute()")
        _run_with_this(self._value, self.node, self)


def _run_with_this(code, node, knob):
    global _this_node, _this_knob
    previous = _this_node, _this_knob
    _this_node, _this_knob = node, knob
    try:
        exec(code, {"nuke": __import__("nuke")})
    finally:
        _this_node, _this_knob = previous


def user_set(knob, value):
    """The user edits a knob in the panel or drags its Viewer handle: set it, then run the node's knobChanged."""
    _on_main("user_set()")
    knob.setValue(value)
    code = knob.node._knobs["knobChanged"]._value if knob.node is not None else ""
    if code:
        _run_with_this(code, knob.node, knob)


# -- nodes -------------------------------------------------------------------------------------

# knobs each class has (beyond name/label/xpos/ypos); values are the defaults
_COMMON_KNOBS = {"name": String_Knob, "label": String_Knob, "xpos": Int_Knob, "ypos": Int_Knob,
                 "disable": Boolean_Knob, "knobChanged": String_Knob}
_CLASS_KNOBS = {
    "Read": {"file": File_Knob, "first": Int_Knob, "last": Int_Knob, "origfirst": Int_Knob, "origlast": Int_Knob,
             "raw": Boolean_Knob, "colorspace": String_Knob, "frame": String_Knob},
    "Copy": {"from0": String_Knob, "to0": String_Knob},
    "ZDefocus2": {"channels": String_Knob, "z_channel": String_Knob, "focal_point": XY_Knob, "center": Double_Knob},
    "Expression": {"temp_name0": String_Knob, "temp_expr0": String_Knob, "expr0": String_Knob,
                   "expr1": String_Knob, "expr2": String_Knob, "expr3": String_Knob},
    "Root": {"project_directory": File_Knob, "first_frame": Int_Knob, "last_frame": Int_Knob},
}
_ENUMS = {"Read": {"frame_mode": ["expression", "start at", "offset"], "before": ["hold", "loop", "bounce", "black"],
                   "after": ["hold", "loop", "bounce", "black"], "on_error": ["error", "black", "checkerboard",
                                                                                "nearest frame"]},
          "ZDefocus2": {"math": ["direct", "depth", "far = 0", "far = -0"]}}
_MAX_INPUTS = {"Read": 0, "Input": 0, "Constant": 0, "Copy": 2, "ZDefocus2": 3, "Group": 1, "Root": 0, "Output": 1}

nodes_created: list["Node"] = []


class Node:
    def __init__(self, node_class, parent):
        _on_main(f"creating a {node_class} node")
        self._class, self._parent = node_class, parent
        self._knobs: dict[str, Knob] = {}
        self._inputs: list = [None] * _MAX_INPUTS.get(node_class, 1)
        for name, kind in _COMMON_KNOBS.items():
            self._attach(kind(name))
        for name, kind in _CLASS_KNOBS.get(node_class, {}).items():
            self._attach(kind(name))
        for name, values in _ENUMS.get(node_class, {}).items():
            self._attach(Enumeration_Knob(name, name, values))
        self._knobs["name"]._value = self._unique_name(node_class)
        if parent is not None:
            parent._children.append(self)
        nodes_created.append(self)

    def _unique_name(self, base):
        taken = {n._knobs["name"]._value for n in (self._parent._children if self._parent else [])}
        stem = base.rstrip("0123456789") or base
        i = 1
        while f"{stem}{i}" in taken:
            i += 1
        return f"{stem}{i}"

    def _attach(self, knob):
        knob.node = self
        self._knobs[knob.name()] = knob

    # knobs
    def __getitem__(self, name):
        _on_main(f"{self._knobs['name']._value}[{name!r}]")
        if name not in self._knobs:
            raise NameError(f"knob {name} does not exist")  # what Nuke raises for node['nope']
        return self._knobs[name]

    def knob(self, name):
        _on_main(f"knob({name!r})")
        return self._knobs.get(name)

    def knobs(self):
        _on_main("knobs()")
        return dict(self._knobs)

    def addKnob(self, knob):
        _on_main(f"addKnob({knob.name()!r})")
        if knob.name() in self._knobs:
            raise ValueError(f"knob {knob.name()!r} already exists")
        self._attach(knob)

    # identity
    def Class(self):
        return self._class

    def name(self):
        _on_main("name()")
        return self._knobs["name"]._value

    def setName(self, name):
        _on_main("setName()")
        siblings = self._parent._children if self._parent else []
        if any(n is not self and n._knobs["name"]._value == name for n in siblings):
            name = Node._unique_name(self, name)
        self._knobs["name"]._value = name

    def fullName(self):
        _on_main("fullName()")
        parts, node = [], self
        while node is not None and node._class != "Root":
            parts.append(node._knobs["name"]._value)
            node = node._parent
        return ".".join(reversed(parts))

    # graph
    def input(self, i):
        _on_main("input()")
        return self._inputs[i] if i < len(self._inputs) else None

    def inputs(self):
        _on_main("inputs()")
        return len(self._inputs)

    def setInput(self, i, node):
        _on_main("setInput()")
        while len(self._inputs) <= i:
            self._inputs.append(None)
        self._inputs[i] = node
        return True

    def dependent(self):
        return [n for n in nodes_created if any(x is self for x in n._inputs)]

    # image (evaluated from the graph: Read files, Copy, Group through its Output)
    def width(self):
        _on_main("width()")
        return self._format()[0]

    def height(self):
        _on_main("height()")
        return self._format()[1]

    def _format(self):
        if self._class == "Read":
            return _file_size(self._frame_file(_frame))
        upstream = self._upstream()
        return upstream._format() if upstream is not None else _ROOT_FORMAT

    def channels(self):
        """The channels this node outputs (what the Viewer's channel menu lists), at the current frame."""
        _on_main("channels()")
        return self._channels(_frame)

    def _channels(self, frame):
        if self._class == "Read":
            path = self._frame_file(frame)
            if path is None or not os.path.exists(path):
                return []
            if path.lower().endswith(".exr"):
                import OpenEXR

                with OpenEXR.File(path) as exr:
                    return sorted(exr.channels())
            return sorted(["rgba.red", "rgba.green", "rgba.blue"])
        if self._class == "Copy" and not self._knobs["disable"]._value:
            b = self._inputs[0]._channels(frame) if self._inputs[0] is not None else []
            return sorted(set(b) | {self._knobs["to0"]._value})
        if self._knobs["disable"]._value and self._class != "Group":
            return self._inputs[0]._channels(frame) if self._inputs and self._inputs[0] is not None else []
        upstream = self._upstream()
        return upstream._channels(frame) if upstream is not None else []

    def sample(self, channel, x, y, dx=None, dy=None, frame=None):
        """The value of `channel` at (x, y) in Nuke's pixel coordinates (origin bottom-left, y up)."""
        _on_main("sample()")
        return self._sample(channel, float(x), float(y), _frame if frame is None else int(frame))

    def _upstream(self):
        if self._class == "Group":
            out = next((n for n in self._children if n._class == "Output"), None)
            return out
        if self._class == "Input":
            group = self._parent
            return group._inputs[0] if group is not None and group._inputs else None
        return self._inputs[0] if self._inputs else None

    def _sample(self, channel, x, y, frame):
        if self._knobs["disable"]._value and self._class not in ("Group",):
            upstream = self._inputs[0] if self._inputs else None
            return upstream._sample(channel, x, y, frame) if upstream is not None else 0.0
        if self._class == "Read":
            return _read_pixel(self._frame_file(frame), channel, x, y)
        if self._class == "Copy":
            if channel == self._knobs["to0"]._value:
                a = self._inputs[1]
                return a._sample(self._knobs["from0"]._value, x, y, frame) if a is not None else 0.0
            b = self._inputs[0]
            return b._sample(channel, x, y, frame) if b is not None else 0.0
        upstream = self._upstream()
        return upstream._sample(channel, x, y, frame) if upstream is not None else 0.0

    def _frame_file(self, comp_frame):
        """The file a Read shows at a comp frame (None: black), from its frame mode, range and before/after."""
        k = self._knobs
        first, last, mode, value = k["first"]._value, k["last"]._value, k["frame_mode"]._value, k["frame"]._value
        value = (value or "").strip()
        if mode == "offset":
            file_frame = comp_frame - int(float(value or 0))
        elif mode == "start at":
            file_frame = comp_frame - (int(float(value or first)) - first)
        else:
            m = re.match(r"^\s*(?:frame)?\s*(?:([+-])\s*(\d+))?\s*$", value)
            if m is None:
                raise RuntimeError(f"{self._knobs['name']._value}: frame expression {value!r} not understood here")
            file_frame = comp_frame + (int(m.group(2)) * (1 if m.group(1) == "+" else -1) if m.group(2) else 0)
        if file_frame < first or file_frame > last:
            side = k["before"]._value if file_frame < first else k["after"]._value
            if side == "black":
                return None
            file_frame = min(max(file_frame, first), last)
        path = filename(self)
        path = re.sub(r"%(\d*)d", lambda m: f"{file_frame:0{int(m.group(1) or 1)}d}", path)
        return path

    def xpos(self):
        return self["xpos"].value()

    def ypos(self):
        return self["ypos"].value()

    def setXYpos(self, x, y):
        self["xpos"].setValue(x)
        self["ypos"].setValue(y)

    def __repr__(self):
        return f"<fake {self._class} {self._knobs['name']._value}>"


class Group(Node):
    def __init__(self, node_class="Group", parent=None):
        self._children: list[Node] = []
        super().__init__(node_class, parent)

    def begin(self):
        _on_main("begin()")
        _context.append(self)
        return self

    def end(self):
        _on_main("end()")
        assert _context[-1] is self, "end() without a matching begin()"
        _context.pop()

    def __enter__(self):
        return self.begin()

    def __exit__(self, *exc):
        self.end()

    def nodes(self):
        _on_main("nodes()")
        return list(self._children)

    def node(self, name):
        """A node inside this group by name (None when there is none)."""
        _on_main(f"node({name!r})")
        return next((c for c in self._children if c._knobs["name"]._value == name), None)


_root: Group | None = None
_context: list[Group] = []
_this_node = None
_this_knob = None
_frame = 1
_views = ["main"]
_ROOT_FORMAT = (1920, 1080)
_script_close_callbacks: list = []


def _current() -> Group:
    return _context[-1] if _context else _root


def reset(script_directory: str = "", script_name: str = "comp_v001.nk", views=("main",)) -> None:
    """A fresh, empty session; the script saved as script_directory/script_name (unsaved: script_directory "")."""
    global _this_node, _this_knob, _frame
    for store in (violations, messages, main_thread_calls, progress_tasks, undo_log, nodes_created,
                  _script_close_callbacks):
        store.clear()
    while not _queue.empty():
        _queue.get_nowait()
    _this_node = _this_knob = None
    _frame = 1
    _views[:] = list(views)
    _new_script(script_directory, script_name)


def _new_script(script_directory, script_name):
    global _root, _script_directory
    _context.clear()
    _script_directory = script_directory
    _root = Group("Root", None)
    # nuke.root().name(): the script's path, "Root" while unsaved
    _root._knobs["name"]._value = os.path.join(script_directory, script_name) if script_directory else "Root"
    _root._knobs["first_frame"]._value, _root._knobs["last_frame"]._value = 1, 100


def root():
    return _root


def script_directory():
    return _script_directory


def thisNode():
    _on_main("thisNode()")
    return _this_node


def thisKnob():
    _on_main("thisKnob()")
    return _this_knob


def frame(n=None):
    """The current frame (nuke.frame(n) sets it, as moving the time slider)."""
    global _frame
    if n is not None:
        _on_main("frame(n)")
        _frame = int(n)
    return _frame


def views():
    return list(_views)


def addOnScriptClose(call, args=(), kwargs=None, nodeClass="Root"):
    if not isinstance(args, tuple):
        raise TypeError("addOnScriptClose: args must be a tuple")
    _script_close_callbacks.append((call, args, dict(kwargs or {})))


def script_close(script_directory: str = "", script_name: str = "Untitled.nk") -> None:
    """File > Close (or quitting): the onScriptClose callbacks run, then a new script replaces the old one."""
    _on_main("scriptClose()")
    for call, args, kwargs in list(_script_close_callbacks):
        call(*args, **kwargs)
    _new_script(script_directory, script_name)


def save_and_reload() -> None:
    """Save the script and open it again: knob values and flags persist, panel-only state (setVisible) does not."""
    for node in nodes_created:
        for knob in node._knobs.values():
            knob._visible = True


_TCL_GETENV = re.compile(r"\[\s*getenv\s+([A-Za-z_][A-Za-z0-9_]*)\s*\]")
_TCL_ENV = re.compile(r"\$env\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand_tcl(text: str) -> str:
    """The TCL this fake understands: [getenv NAME] and $env(NAME); other [...] is an error, as in Nuke."""
    text = _TCL_GETENV.sub(lambda m: os.environ.get(m.group(1), ""), text)
    text = _TCL_ENV.sub(lambda m: os.environ[m.group(1)], text)
    if "[" in text:
        raise RuntimeError(f"TCL expression in {text!r} not understood by the fake")
    return text


def filename(node, i=0):
    """The node's file, expressions expanded, #### as %04d (nuke.REPLACE: the current frame's number)."""
    _on_main("filename()")
    if "file" not in node._knobs:
        return None
    text = expand_tcl(node._knobs["file"]._value)
    text = re.sub(r"#+", lambda m: "%d" if len(m.group()) == 1 else f"%0{len(m.group())}d", text)
    if i & REPLACE:
        text = re.sub(r"%(\d*)d", lambda m: f"{_frame:0{int(m.group(1) or 1)}d}", text)
    return text or None


def _file_size(path):
    if path is None:
        return _ROOT_FORMAT
    if path.lower().endswith(".exr"):
        import OpenEXR

        with OpenEXR.File(path) as exr:
            (x0, y0), (x1, y1) = exr.header()["displayWindow"]
            return int(x1 - x0 + 1), int(y1 - y0 + 1)
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def _read_pixel(path, channel, x, y):
    """Impulse-filtered sample: the pixel (x, y) lands in, with Nuke's y axis (bottom-up)."""
    if path is None or not os.path.exists(path):
        return 0.0
    width, height = _file_size(path)
    col, row = int(math.floor(x)), height - 1 - int(math.floor(y))
    if not (0 <= col < width and 0 <= row < height):
        return 0.0
    if path.lower().endswith(".exr"):
        import OpenEXR

        with OpenEXR.File(path) as exr:
            channels = exr.channels()
            if channel not in channels:
                return 0.0
            return float(channels[channel].pixels[row, col])
    from PIL import Image

    with Image.open(path) as im:
        index = {"rgba.red": 0, "rgba.green": 1, "rgba.blue": 2}.get(channel)
        return 0.0 if index is None else im.convert("RGB").getpixel((col, row))[index] / 255.0


def _make(node_class, **knobs):
    node = Group(node_class, _current()) if node_class == "Group" else Node(node_class, _current())
    for name, value in knobs.items():
        if name == "name":
            node.setName(value)
        elif name not in node._knobs:
            raise NameError(f"{node_class}: no knob named {name!r}")
        else:
            node[name].setValue(value)
    return node


def createNode(node_class, knobs="", inpanel=True):
    return _make(node_class)


class _NodeFactory:
    def __getattr__(self, node_class):
        return lambda **knobs: _make(node_class, **knobs)


nodes = _NodeFactory()


def toNode(name):
    _on_main(f"toNode({name!r})")
    parts = name.split(".")
    group = _root if len(parts) > 1 or not _context else _current()
    if parts[0] == "root":
        parts = parts[1:]
    node = group
    for part in parts:
        node = next((c for c in getattr(node, "_children", []) if c._knobs["name"]._value == part), None)
        if node is None:
            return None
    return node


def allNodes(filter=None, group=None):
    _on_main("allNodes()")
    found = list((group or _current())._children)
    return [n for n in found if filter is None or n.Class() == filter]


def delete(node):
    _on_main("delete()")
    if node._parent is not None:
        node._parent._children.remove(node)


def message(text):
    _on_main("message()")
    messages.append(str(text))


class TaskRecord:
    """What the user saw of one ProgressTask (kept after the task object is gone)."""

    def __init__(self, name):
        self.name = name
        self.progress: list[int] = []
        self.messages: list[str] = []
        self.threads: set[str] = {threading.current_thread().name}
        self.ended = False  # the task left the screen: its object was destroyed
        self._cancelled = threading.Event()

    def cancel(self):  # test helper: the user clicks the task's Cancel button
        self._cancelled.set()


class ProgressTask:
    def __init__(self, name):
        self.record = TaskRecord(name)
        progress_tasks.append(self.record)

    def setProgress(self, i):
        if not isinstance(i, int):
            raise TypeError("ProgressTask.setProgress takes an int")
        self.record.progress.append(i)
        self.record.threads.add(threading.current_thread().name)

    def setMessage(self, text):
        self.record.messages.append(str(text))

    def isCancelled(self):
        return self.record._cancelled.is_set()

    def __del__(self):
        self.record.ended = True


class Undo:
    @staticmethod
    def begin(name=None):
        _on_main("Undo.begin()")
        undo_log.append(f"begin {name}")

    @staticmethod
    def end():
        _on_main("Undo.end()")
        undo_log.append("end")


class Menu:
    def __init__(self, name):
        self.name, self.items = name, {}

    def addMenu(self, name, **kwargs):
        return self.items.setdefault(name, Menu(name))

    def addCommand(self, name, command=None, shortcut="", icon="", **kwargs):
        if not (callable(command) or isinstance(command, str)):
            raise TypeError("Menu.addCommand: command is a callable or a string of Python")
        self.items[name] = command
        return command

    def findItem(self, name):
        return self.items.get(name)


_menus: dict[str, Menu] = {}


def menu(name):
    _on_main("menu()")
    return _menus.setdefault(name, Menu(name))


def pluginAddPath(path):
    import sys

    if path not in sys.path:
        sys.path.insert(0, path)


reset()
