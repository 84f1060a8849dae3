"""A recording fake of Nuke's Python API (the part dvd_nuke uses), enforcing Nuke's threading rules.

Installed as ``sys.modules["nuke"]`` only inside the Nuke tests (fixture in test_nuke.py).

Rules it enforces like Nuke (where breaking them crashes or corrupts a session):
- nodes, knobs and dialogs (nuke.message) are touched only on the main thread: any access
  from another thread raises RuntimeError and is recorded in ``violations``;
- ``executeInMainThread`` is for other threads: it queues the call; the test's main thread
  runs the queue with :func:`pump` / :func:`pump_until` (Nuke's event loop);
- ``ProgressTask`` may be driven from any thread (as Nuke's docs do from worker threads); a
  test presses its Cancel button with ``task.cancel()``.
"""

from __future__ import annotations

import queue
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


class Knob:
    default = ""

    def __init__(self, name, label=None, *args):
        self._name, self._label = name, label if label is not None else name
        self._value = self.default
        self._visible, self._tooltip, self.node = True, "", None

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


class String_Knob(Knob):
    def __init__(self, name, label=None, value=""):
        super().__init__(name, label)
        self._value = str(value)

    def _coerce(self, value):
        return str(value)


class File_Knob(String_Knob):
    pass


class Text_Knob(String_Knob):
    pass


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
    def __init__(self, name, label=None, values=()):
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
        global _this_node
        previous, _this_node = _this_node, self.node
        try:
            exec(self._value, {"nuke": __import__("nuke")})
        finally:
            _this_node = previous


# -- nodes -------------------------------------------------------------------------------------

# knobs each class has (beyond name/label/xpos/ypos); values are the defaults
_CLASS_KNOBS = {
    "Read": {"file": File_Knob, "first": Int_Knob, "last": Int_Knob, "origfirst": Int_Knob, "origlast": Int_Knob,
             "raw": Boolean_Knob, "colorspace": String_Knob, "on_error": String_Knob,
             "frame": String_Knob, "before": String_Knob, "after": String_Knob},
    "Copy": {"from0": String_Knob, "to0": String_Knob},
    "ZDefocus2": {"channels": String_Knob, "z_channel": String_Knob, "focal_point": String_Knob},
    "Expression": {"temp_name0": String_Knob, "temp_expr0": String_Knob, "expr0": String_Knob,
                   "expr1": String_Knob, "expr2": String_Knob, "expr3": String_Knob},
}
_ENUMS = {"Read": {"frame_mode": ["expression", "start at", "offset"]},
          "ZDefocus2": {"math": ["direct", "depth", "far = 0", "far = -0"]}}
_MAX_INPUTS = {"Read": 0, "Input": 0, "Constant": 0, "Copy": 2, "ZDefocus2": 3, "Group": 1, "Root": 0}

nodes_created: list["Node"] = []


class Node:
    def __init__(self, node_class, parent):
        _on_main(f"creating a {node_class} node")
        self._class, self._parent = node_class, parent
        self._knobs: dict[str, Knob] = {}
        self._inputs: list = [None] * _MAX_INPUTS.get(node_class, 1)
        for name, kind in {"name": String_Knob, "label": String_Knob, "xpos": Int_Knob, "ypos": Int_Knob}.items():
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


_root: Group | None = None
_context: list[Group] = []
_this_node = None


def _current() -> Group:
    return _context[-1] if _context else _root


def reset(script_directory: str = "") -> None:
    """A fresh, empty session."""
    global _root, _this_node, _script_directory
    for store in (violations, messages, main_thread_calls, progress_tasks, undo_log, nodes_created):
        store.clear()
    while not _queue.empty():
        _queue.get_nowait()
    _context.clear()
    _this_node = None
    _script_directory = script_directory
    _root = Group("Root", None)
    _root._knobs["name"]._value = "root"
    for name, value in (("first_frame", 1), ("last_frame", 100)):
        _root._attach(Int_Knob(name))
        _root._knobs[name]._value = value


def root():
    return _root


def script_directory():
    return _script_directory


def thisNode():
    _on_main("thisNode()")
    return _this_node


def _make(node_class, **knobs):
    node = Group(node_class, _current()) if node_class == "Group" else Node(node_class, _current())
    for name, value in knobs.items():
        if name == "name":
            node.setName(value)
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


class ProgressTask:
    def __init__(self, name):
        self.name = name
        self.progress: list[int] = []
        self.messages: list[str] = []
        self.threads: set[str] = {threading.current_thread().name}
        self._cancelled = threading.Event()
        progress_tasks.append(self)

    def setProgress(self, i):
        self.progress.append(int(i))

    def setMessage(self, text):
        self.messages.append(str(text))

    def isCancelled(self):
        return self._cancelled.is_set()

    def cancel(self):  # test helper: the user clicks the task's Cancel button
        self._cancelled.set()


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
