"""Panels: the Compositor sidebar and the Movie Clip editor sidebar (tab "DVD")."""

import bpy

from . import runtime


def draw_settings(layout, context, *, in_clip_editor: bool):
    scene = context.scene
    settings = scene.dvd_vfx
    col = layout.column()
    if in_clip_editor:
        clip = context.space_data.clip
        col.label(text=f"Clip: {clip.name}" if clip else "Open a movie clip", icon="SEQUENCE")
    else:
        col.prop(settings, "source", expand=True)
        if settings.source == "CLIP":
            col.prop(scene, "active_clip", text="Clip")
        else:
            col.prop(settings, "image")
    col.prop(settings, "preset")
    col.prop(settings, "mode")
    sub = col.column(align=True)
    sub.enabled = settings.mode == "depth"
    sub.prop(settings, "near")
    sub.prop(settings, "far")
    col.prop(settings, "use_frame_range")
    if settings.use_frame_range:
        row = col.row(align=True)
        row.prop(settings, "frame_first")
        row.prop(settings, "frame_last")
    col.prop(settings, "output_dir")
    col.separator()
    col.prop(settings, "f_stop")
    col.prop(settings, "use_fog")
    if settings.use_fog:
        fog = col.column(align=True)
        fog.prop(settings, "fog_start")
        fog.prop(settings, "fog_end")
        fog.prop(settings, "fog_density")
        fog.prop(settings, "fog_colour")
    col.separator()
    running = runtime.active_run(scene) is not None
    row = col.row(align=True)
    op = row.operator("node.dvd_render", icon="RENDER_ANIMATION")
    if in_clip_editor and context.space_data.clip:
        op.clip = context.space_data.clip.name
    row.operator("node.dvd_cancel", icon="CANCEL")
    if running:
        col.prop(settings, "progress", text="", slider=True)
    if settings.status:
        col.label(text=settings.status)


class NODE_PT_dvd_vfx(bpy.types.Panel):
    bl_label = "Depth Pass"
    bl_space_type = "NODE_EDITOR"
    bl_region_type = "UI"
    bl_category = "DVD"

    @classmethod
    def poll(cls, context):
        space = context.space_data
        return space is not None and getattr(space, "tree_type", "") == "CompositorNodeTree"

    def draw(self, context):
        draw_settings(self.layout, context, in_clip_editor=False)


class CLIP_PT_dvd_vfx(bpy.types.Panel):
    bl_label = "Depth Pass"
    bl_space_type = "CLIP_EDITOR"
    bl_region_type = "UI"
    bl_category = "DVD"

    def draw(self, context):
        draw_settings(self.layout, context, in_clip_editor=True)


classes = (NODE_PT_dvd_vfx, CLIP_PT_dvd_vfx)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
