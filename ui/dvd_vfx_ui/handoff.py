"""Finished passes into the hosts: a paste-able Nuke Read node and a Blender launch that loads the
sequence into the compositor. Qt-free (plain text and argument lists)."""

from __future__ import annotations

import os
import re
import shutil

from dvd_vfx.errors import InputError


def _nuke_path(path: str) -> str:
    return str(path).replace("\\", "/")


def nuke_read_node(shot: dict) -> str:
    """A Read node for the row's pass, as Nuke's clipboard text (paste into the Node Graph with Ctrl+V).

    shot: a row snapshot with the pass on disk (``on_disk``) or a finished render (``pattern``)."""
    disk = shot.get("on_disk") or {}
    pattern = disk.get("pattern") or shot.get("pattern")
    if not pattern:
        raise InputError(f"{shot.get('shot_name', 'shot')}: no depth pass on disk yet; render the shot first")
    info = shot.get("info") or {}
    first = disk.get("first", info.get("first_frame", 1))
    last = disk.get("last", info.get("last_frame", first))
    width, height = info.get("width"), info.get("height")
    name = re.sub(r"[^A-Za-z0-9_]", "_", f"Read_{shot.get('shot_name', 'shot')}_depth")
    lines = ["set cut_paste_input [stack 0]", "version 14.0", "Read {", " inputs 0", " file_type exr",
             f' file "{_nuke_path(pattern)}"']
    if width and height:
        lines.append(f' format "{width} {height} 0 0 {width} {height} 1 "')
    lines += [f" first {first}", f" last {last}", f" origfirst {first}", f" origlast {last}", " origset true",
              " on_error black", f" name {name}",
              ' label "depth.Z: dvd-vfx pass"', " selected true", "}", ""]
    return "\n".join(lines)


BLENDER_SCRIPT = '''\
import bpy
path, first, last = {path!r}, {first}, {last}
image = bpy.data.images.load(path, check_existing=True)
image.source = "SEQUENCE"
scene = bpy.context.scene
scene.frame_start, scene.frame_end = first, last
try:  # Blender 4.x: the scene's node tree; 5.x: a compositing node group
    tree = getattr(scene, "compositing_node_group", None)
    if tree is None:
        scene.use_nodes = True
        tree = scene.node_tree
    if tree is None:
        tree = bpy.data.node_groups.new("dvd-vfx depth", "CompositorNodeTree")
        scene.compositing_node_group = tree
    node = tree.nodes.new("CompositorNodeImage")
    node.image = image
    node.frame_duration, node.frame_start, node.frame_offset = last - first + 1, first, first - 1
    node.label = {label!r}
except Exception as exc:
    print("dvd-vfx: the depth pass is loaded as an image; compositor node not made:", exc)
'''


def blender_command(shot: dict, blender: str = "") -> list[str]:
    """``blender --python-expr ...`` that opens a new file with the row's pass as an image sequence in
    the compositor (frame range set). InputError when there is no pass or no Blender."""
    disk = shot.get("on_disk") or {}
    pattern = disk.get("pattern") or shot.get("pattern")
    if not pattern:
        raise InputError(f"{shot.get('shot_name', 'shot')}: no depth pass on disk yet; render the shot first")
    first = int(disk.get("first", (shot.get("info") or {}).get("first_frame", 1)))
    last = int(disk.get("last", first))
    digits = pattern.count("#")
    first_file = pattern.replace("#" * digits, f"{first:0{digits}d}") if digits else pattern
    exe = blender.strip() or shutil.which("blender") or ""
    if not exe or not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise InputError(f"Blender not found ({blender or 'no blender on PATH'}); set its path in Settings\u2026")
    script = BLENDER_SCRIPT.format(path=first_file, first=first, last=last,
                                   label=f"{shot.get('shot_name', 'shot')} depth.Z")
    return [exe, "--python-expr", script]
