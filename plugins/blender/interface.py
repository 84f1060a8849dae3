"""Panels: the Compositor sidebar and the Movie Clip editor sidebar (tab "DVD")."""

import bpy

from . import runtime, tracking


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
    clip = (context.space_data.clip if in_clip_editor else scene.active_clip) if settings.source == "CLIP" else None
    solved = settings.mode == "depth" and settings.source == "CLIP" and tracking.has_solve(clip)
    if solved:
        col.prop(settings, "use_solve")
    if solved and settings.use_solve:
        rec = clip.tracking.objects.active.reconstruction
        bundles = sum(1 for t in clip.tracking.objects.active.tracks if t.has_bundle)
        col.label(text=f"Camera solve: {bundles} bundles, error {rec.average_error:.2f} px", icon="TRACKING")
    else:
        sub = col.column(align=True)
        sub.enabled = settings.mode == "depth"
        sub.prop(settings, "near")
        sub.prop(settings, "far")
    if settings.solve_status:
        col.label(text=settings.solve_status, icon="INFO")
    col.prop(settings, "use_frame_range")
    if settings.use_frame_range:
        row = col.row(align=True)
        row.prop(settings, "frame_first")
        row.prop(settings, "frame_last")
    col.prop(settings, "output_dir")
    col.separator()
    box = col.box()
    box.label(text="Defocus", icon="CAMERA_DATA")
    camera = scene.camera
    if camera is not None and camera.type == "CAMERA":
        dof = camera.data.dof
        box.prop(dof, "aperture_fstop", text="F-Stop")
        if settings.mode == "depth":
            box.prop(dof, "focus_object")
            sub = box.column()
            sub.enabled = dof.focus_object is None
            sub.prop(dof, "focus_distance")
    else:
        box.label(text="No scene camera: Render Depth adds one")
    if settings.mode == "disparity":
        box.prop(settings, "max_blur")
        box.prop(settings, "focus_disparity")
    row = box.row(align=True)
    row.prop(settings, "focus_point", text="")
    row = box.row(align=True)
    row.operator("node.dvd_set_focus", text="Focus on Point", icon="EYEDROPPER").source = "POINT"
    op = row.operator("node.dvd_set_focus", text="Focus on Track", icon="TRACKER")
    op.source = "TRACK"
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
