"""NODE_OT_dvd_render: render the depth pass of the active clip and wire it into the compositor."""

import bpy
from bpy.props import StringProperty

from .. import runtime


class NODE_OT_dvd_render(bpy.types.Operator):
    """Render a temporally stable depth pass (EXR) for the clip and wire it to Defocus/Fog"""

    bl_idname = "node.dvd_render"
    bl_label = "Render Depth"
    bl_options = {"REGISTER"}

    clip: StringProperty(name="Clip", default="", options={"SKIP_SAVE", "HIDDEN"},
                         description="Movie clip by name (default: the Movie Clip editor's or the scene's active clip)")

    _timer = None
    _run = None

    @classmethod
    def poll(cls, context):
        if context.scene is None:
            return False
        if runtime.active_run(context.scene) is not None:
            cls.poll_message_set("a depth render is already running")
            return False
        return True

    def _clip(self, context):
        if self.clip:
            return bpy.data.movieclips.get(self.clip)
        space = context.space_data
        return getattr(space, "clip", None) if space is not None and space.type == "CLIP_EDITOR" else None

    def _start(self, context):
        try:
            return runtime.DepthRun.start(context, clip=self._clip(context))
        except Exception as exc:  # noqa: BLE001 - every start failure is a message for the artist
            self.report({"ERROR"}, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return None

    def _report_end(self, run) -> set:
        for message in run.warnings[-3:]:
            self.report({"WARNING"}, message)
        if run.error == "cancelled":
            self.report({"WARNING"}, "Depth render cancelled; finished windows are cached")
            return {"CANCELLED"}
        if run.error:
            self.report({"ERROR"}, run.error)
            return {"CANCELLED"}
        self.report({"INFO"}, context_free_summary(run))
        return {"FINISHED"}

    def execute(self, context):
        """Blocking: for scripts and background mode (no event loop for a modal timer)."""
        run = self._start(context)
        if run is None:
            return {"CANCELLED"}
        run.wait(context)
        return self._report_end(run)

    def invoke(self, context, event):
        run = self._start(context)
        if run is None:
            return {"CANCELLED"}
        self._run = run
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0.0, 1.0)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        run = self._run
        if event.type == "ESC" and event.value == "PRESS":
            run.request_cancel()
        if event.type != "TIMER" and event.type != "ESC":
            return {"PASS_THROUGH"}
        running = run.tick(context)
        context.window_manager.progress_update(context.scene.dvd_vfx.progress)
        if context.workspace is not None:
            context.workspace.status_text_set(context.scene.dvd_vfx.status if running else None)
        for area in context.screen.areas if context.screen else ():
            if area.type in ("NODE_EDITOR", "CLIP_EDITOR"):
                area.tag_redraw()
        if running:
            return {"RUNNING_MODAL"}
        self._end(context)
        return self._report_end(run)

    def cancel(self, context):  # Blender closes the window or file mid-job
        if self._run is not None and self._run.running:
            self._run.request_cancel()
            self._run.wait(context, timeout=15)
        self._end(context)

    def _end(self, context):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)


def context_free_summary(run) -> str:
    r = run.result
    return (f"Depth pass {r.shot}: frames {r.first_frame}-{r.last_frame} in {r.seconds:.1f} s "
            f"(cache {r.cache}) -> image {run.image_name!r}")


def register():
    bpy.utils.register_class(NODE_OT_dvd_render)


def unregister():
    bpy.utils.unregister_class(NODE_OT_dvd_render)
