"""NODE_OT_dvd_cancel: ask the scene's running depth render to stop (the Cancel button)."""

import bpy

from .. import runtime


class NODE_OT_dvd_cancel(bpy.types.Operator):
    """Stop the running depth render; finished windows stay cached"""

    bl_idname = "node.dvd_cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER", "INTERNAL"}

    @classmethod
    def poll(cls, context):
        return context.scene is not None and runtime.active_run(context.scene) is not None

    def execute(self, context):
        runtime.active_run(context.scene).request_cancel()
        return {"FINISHED"}


def register():
    bpy.utils.register_class(NODE_OT_dvd_cancel)


def unregister():
    bpy.utils.unregister_class(NODE_OT_dvd_cancel)
