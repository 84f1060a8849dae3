"""NODE_OT_dvd_check_weights: run `dvd-vfx weights check` in the engine's Python and show the answer."""

import subprocess
import tempfile

import bpy

from .. import preferences


def check_weights(python: str, weights_dir: str = "", timeout: float = 120) -> tuple[bool, str]:
    """(ok, text) of `dvd-vfx weights check --no-hash [DIR]`."""
    cmd = [python, "-m", "dvd_vfx.cli", "weights", "check", "--no-hash"] + ([weights_dir] if weights_dir else [])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              cwd=tempfile.gettempdir())  # never Blender's cwd: no stray checkout
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"could not run {python}: {exc}"
    text = (proc.stdout + proc.stderr).strip()
    return proc.returncode == 0, text or f"exit code {proc.returncode}"


class NODE_OT_dvd_check_weights(bpy.types.Operator):
    """Validate the weights folder with the engine (files, keys, shapes)"""

    bl_idname = "node.dvd_check_weights"
    bl_label = "Check"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context):
        prefs = preferences.get(context)
        python = prefs.resolved_python()
        if not python:
            prefs.check_result = "No engine Python: set it above"
            self.report({"ERROR"}, prefs.check_result)
            return {"CANCELLED"}
        ok, text = check_weights(python, bpy.path.abspath(prefs.weights_dir) if prefs.weights_dir else "")
        prefs.check_result = text
        self.report({"INFO"} if ok else {"ERROR"}, text.splitlines()[-1])
        return {"FINISHED"} if ok else {"CANCELLED"}


def register():
    bpy.utils.register_class(NODE_OT_dvd_check_weights)


def unregister():
    bpy.utils.unregister_class(NODE_OT_dvd_check_weights)
