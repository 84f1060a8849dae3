"""The movie clip's camera solve as anchors for the engine's scene-scale fit (main thread, bpy).

Reads the clip's tracking reconstruction (MovieTrackingReconstruction.is_valid / cameras, each
track's bundle and markers) and hands plain numbers to utils/solve.py, which projects every
bundle through the reconstructed camera on each frame where its track has an enabled marker.
https://docs.blender.org/api/current/bpy.types.MovieTrackingReconstruction.html

Scale: the reconstruction is in the solver's units. Set Scale (and Set Floor/Origin) put their
transform on the solved camera object (the Camera Solver constraint computes
``camera.matrix_world = object matrix @ reconstructed camera``), so the scene's scale is the
uniform scale of ``camera.matrix_world @ inverse(reconstructed camera)`` on a solved frame.
https://docs.blender.org/api/current/bpy.types.CameraSolverConstraint.html
"""

from __future__ import annotations

from dataclasses import dataclass

from .utils import solve


@dataclass
class SolveInfo:
    bundles: int = 0
    anchors: int = 0
    scale: float = 1.0
    average_error: float = 0.0
    scale_from: str = ""  # the camera object whose Set Scale applies, "" when solver units


def has_solve(clip) -> bool:
    if clip is None:
        return False
    rec = clip.tracking.objects.active.reconstruction if clip.tracking.objects.active else clip.tracking.reconstruction
    return bool(rec.is_valid and len(rec.cameras) > 0)


def solver_camera(scene, clip):
    """The scene camera (or any camera object) whose Camera Solver constraint follows this clip."""
    candidates = [scene.camera] if scene.camera is not None else []
    candidates += [o for o in scene.objects if o.type == "CAMERA" and o is not scene.camera]
    for ob in candidates:
        for con in ob.constraints:
            if con.type == "CAMERA_SOLVER" and not con.mute and con.influence > 0.999:
                used = scene.active_clip if con.use_active_clip else con.clip
                if used == clip:
                    return ob
    return None


def scene_scale(scene, clip, cameras: dict) -> tuple[float, str]:
    """(scale, camera name): the solved camera's uniform scale in the scene; (1, '') without one."""
    ob = solver_camera(scene, clip)
    if ob is None or not cameras:
        return 1.0, ""
    clip_frame = min(cameras)
    scene_frame = clip_frame + clip.frame_start - 1
    keep = scene.frame_current
    scene.frame_set(scene_frame)
    try:
        world = [list(row) for row in ob.matrix_world]
    finally:
        scene.frame_set(keep)
    recon = cameras[clip_frame]
    obj = _mul(world, solve._mat_inv_rigid(recon))
    return solve.uniform_scale(obj), ob.name


def _mul(a, b):
    return [[sum(a[i][k] * b[k][j] for k in range(4)) for j in range(4)] for i in range(4)]


def solve_anchors(scene, clip, *, source_first: int, frames: tuple[int, int] | None = None
                  ) -> tuple[list, SolveInfo]:
    """Anchors (utils.solve.Anchor, source frame numbers) from the clip's camera solve, and what was used."""
    tracking = clip.tracking
    obj = tracking.objects.active
    rec = obj.reconstruction if obj is not None else tracking.reconstruction
    tracks_src = obj.tracks if obj is not None else tracking.tracks
    cameras = {c.frame: [list(row) for row in c.matrix] for c in rec.cameras}
    tracks = []
    for track in tracks_src:
        if not track.has_bundle:
            continue
        markers = {m.frame: tuple(m.co) for m in track.markers if not m.mute}
        if markers:
            tracks.append((track.name, tuple(track.bundle), markers))
    cam = tracking.camera
    w, h = clip.size
    pp = cam.principal_point_pixels if hasattr(cam, "principal_point_pixels") else cam.principal
    k = solve.Intrinsics(width=w, height=h, focal_px=cam.focal_length_pixels, cx=pp[0], cy=pp[1],
                         pixel_aspect=cam.pixel_aspect or 1.0)
    scale, camera_name = scene_scale(scene, clip, cameras)
    source_offset = clip.frame_offset + source_first - 1
    anchors = solve.anchors_from_solve(cameras, tracks, k, scale=scale, source_offset=source_offset, frames=frames)
    info = SolveInfo(bundles=len(tracks), anchors=len(anchors), scale=scale, average_error=rec.average_error,
                     scale_from=camera_name)
    return anchors, info
