"""Nuke host: the "DVD Depth" node (a Group with knobs) that renders a shot's depth pass in the background.

Layout (thin Nuke layer over plain Python, see docs in each module):

- shot.py    Read knobs + node knobs -> `dvd-vfx render` arguments, frame offsets, paths (no nuke)
- node.py    knobs, Read discovery, Render/Cancel, loading the EXR sequence (Nuke main thread only)
- worker.py  the render thread: SubprocessJob + nuke.ProgressTask; node changes only through the
             functions node.py passes it, queued with executeInMainThread
- install.py `dvd-vfx install nuke`: the NUKE_PATH folder (nuke_path/, package data)
- config.py  what the install recorded (the engine's Python)

Importing this package imports neither nuke, torch nor numpy.
"""

from .node import add_menu, cancel, create_node, find_read, is_dvd_node, is_rendering, load_result, plan, render

__all__ = ["add_menu", "cancel", "create_node", "find_read", "is_dvd_node", "is_rendering", "load_result", "plan",
           "render"]
