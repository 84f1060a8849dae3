"""Nuke host: the "DVD Depth" node (a Group with knobs) that renders a shot's depth pass in the background.

Layout (thin Nuke layer over plain Python, see docs in each module):

- shot.py    Read knobs + node knobs -> `dvd-vfx render` arguments, frame offsets, paths (no nuke)
- node.py    knobs, Read discovery (nuke.filename), Render/Cancel/Submit to farm, the pass in the node's
             stream (inner Read + Copy), focus point, anchors, render_and_wait for `nuke -t`
             (Nuke main thread only)
- worker.py  the render thread: SubprocessJob + nuke.ProgressTask; node changes only through the
             functions node.py passes it, queued with executeInMainThread
- install.py `dvd-vfx install nuke`: the NUKE_PATH folder (nuke_path/, package data)
- config.py  what the install recorded (the engine's Python)

Importing this package imports neither nuke, torch nor numpy.
"""

from .node import (add_anchor, add_menu, anchors_from_camera, cancel, create_node, find_read, is_dvd_node,
                   is_rendering, knob_changed, load_result, on_script_close, plan, register_callbacks, render,
                   render_and_wait, submit_farm, update_focus)

__all__ = ["add_anchor", "add_menu", "anchors_from_camera", "cancel", "create_node", "find_read", "is_dvd_node",
           "is_rendering", "knob_changed", "load_result", "on_script_close", "plan", "register_callbacks", "render",
           "render_and_wait", "submit_farm", "update_focus"]
