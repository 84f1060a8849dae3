"""Add-on preferences: where the engine lives and its defaults, with a Check button."""

import os

import bpy
from bpy.props import StringProperty

from .utils.engine import find_engine_python

ADDON_DIR = os.path.dirname(os.path.abspath(__file__))


class DVD_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    engine_python: StringProperty(
        name="Engine Python", subtype="FILE_PATH", default="",
        description="Python of the environment where dvd-vfx and torch are installed; empty: found automatically "
                    "($DVD_VFX_ENGINE_PYTHON, `dvd-vfx install blender`, or `dvd-vfx` on PATH)")
    weights_dir: StringProperty(name="Weights", subtype="DIR_PATH", default="",
                                description="DVD weights folder; empty: $DVD_VFX_WEIGHTS or the user data dir")
    default_preset: StringProperty(name="Default Preset", default="standard",
                                   description="dvd-vfx preset used when the panel's preset is empty")
    cache_dir: StringProperty(name="Cache", subtype="DIR_PATH", default="",
                              description="Per-shot cache folder; empty: dvd-vfx's default")
    extra_args: StringProperty(name="Extra Arguments", default="",
                               description="More `dvd-vfx render` flags, e.g. --device cuda:1")
    check_result: StringProperty(name="Check", default="", options={"SKIP_SAVE"})

    def resolved_python(self) -> str | None:
        return find_engine_python(bpy.path.abspath(self.engine_python) if self.engine_python else "",
                                  addon_dir=ADDON_DIR)

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "engine_python")
        if not self.engine_python:
            found = self.resolved_python()
            col.label(text=f"Found: {found}" if found else "Not found: set it, or run `dvd-vfx install blender`",
                      icon="INFO" if found else "ERROR")
        col.prop(self, "weights_dir")
        col.prop(self, "default_preset")
        col.prop(self, "cache_dir")
        col.prop(self, "extra_args")
        row = layout.row()
        row.operator("node.dvd_check_weights", icon="CHECKMARK")
        for line in self.check_result.splitlines()[-6:]:
            layout.label(text=line)


def get(context=None) -> DVD_AP_preferences:
    context = context or bpy.context
    return context.preferences.addons[__package__].preferences


classes = (DVD_AP_preferences,)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
