"""NODE_OT_dvd_set_focus: pick the focus by sampling the depth pass at a point or a tracked marker.

Depth mode writes the value (scene units along the view axis) to the scene camera's depth of field
(Camera.dof.focus_distance, which the z-buffer Defocus node reads); disparity mode sets the focus
of the blur-radius map. https://docs.blender.org/api/current/bpy.types.CameraDOFSettings.html
"""

import bpy
from bpy.props import EnumProperty, StringProperty

from .. import compositor
from ..utils import exr


def marker_point(clip, track_name: str, scene_frame: int):
    """(x, y) normalised, bottom-left origin, of an enabled marker of the track at a scene frame."""
    track = clip.tracking.tracks.get(track_name) if track_name else clip.tracking.tracks.active
    if track is None:
        raise ValueError(f"clip {clip.name} has no track {track_name!r}" if track_name else
                         f"clip {clip.name} has no active track: select one in the Movie Clip editor")
    clip_frame = scene_frame - clip.frame_start + 1  # markers are numbered in clip frames
    marker = track.markers.find_frame(clip_frame, exact=False)
    if marker is None or marker.mute:
        raise ValueError(f"track {track.name} is not enabled at frame {scene_frame}; pick another frame or track")
    return tuple(marker.co), track.name


class NODE_OT_dvd_set_focus(bpy.types.Operator):
    """Focus where the depth pass is sampled: at the Focus Point or the clip's active track"""

    bl_idname = "node.dvd_set_focus"
    bl_label = "Set Focus"
    bl_options = {"REGISTER", "UNDO"}

    source: EnumProperty(name="From", items=(("POINT", "Point", "The panel's Focus Point"),
                                             ("TRACK", "Track", "The clip's active (or named) track")),
                         default="POINT")
    track: StringProperty(name="Track", default="", description="Track name (default: the active track)")

    def execute(self, context):
        scene = context.scene
        settings = scene.dvd_vfx
        try:
            width, height, clip = self._plate_size(context)
            if self.source == "TRACK":
                if clip is None:
                    raise ValueError("focus on a track needs a movie clip")
                (u, v), name = marker_point(clip, self.track, scene.frame_current)
            else:
                u, v = settings.focus_point
                name = "point"
            x, y = u * width, (1.0 - v) * height  # the pass's pixels run from the top-left
            value = compositor.sample_pass(scene, x, y)
            message = compositor.set_focus(scene, value, settings.mode)
        except (ValueError, RuntimeError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{message} from {name} at frame {scene.frame_current}")
        return {"FINISHED"}

    @staticmethod
    def _plate_size(context):
        """The pass's size (the plate's), from its file, and the clip the panel is about."""
        space = context.space_data
        clip = getattr(space, "clip", None) if space is not None and space.type == "CLIP_EDITOR" else None
        clip = clip or context.scene.active_clip
        width, height = exr.read_size(compositor.pass_file_at(context.scene))
        return width, height, clip


def register():
    bpy.utils.register_class(NODE_OT_dvd_set_focus)


def unregister():
    bpy.utils.unregister_class(NODE_OT_dvd_set_focus)
