"""Anchors from a camera solve: every bundle projected through the reconstructed camera (no bpy).

Blender's tracking data, read by ``tracking.py`` on the main thread, arrives here as plain numbers:

- ``cameras``: clip frame -> the reconstructed camera's 4x4 camera-to-world matrix
  (MovieReconstructedCamera.matrix, rows; Blender cameras look down -Z with +Y up),
  https://docs.blender.org/api/current/bpy.types.MovieReconstructedCamera.html
- ``tracks``: (bundle xyz in the reconstruction's space, {clip frame: (x, y) normalised marker
  position, bottom-left origin}) for each track with a bundle, only the frames where the track
  has an enabled marker (MovieTrackingTrack.bundle / markers, MovieTrackingMarker.co / mute),
  https://docs.blender.org/api/current/bpy.types.MovieTrackingTrack.html
- the tracking camera's intrinsics in pixels (focal_length_pixels, principal_point_pixels from
  the bottom-left corner, pixel_aspect),
  https://docs.blender.org/api/current/bpy.types.MovieTrackingCamera.html

Output rows are the engine's ``--anchors`` CSV: ``frame,x,y,depth`` with frame the SOURCE frame
number the pass file carries, x,y plate pixels from the TOP-left corner (continuous: the centre of
pixel (i, j) is (i + 0.5, j + 0.5)) and depth the distance along the camera's viewing axis in scene
units (the reconstruction's units times the scale the user's Set Scale put on the solved camera).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass


def _mat_inv_rigid(m):
    """Inverse of a 4x4 rotation+translation(+uniform scale) matrix, rows."""
    r = [[m[i][j] for j in range(3)] for i in range(3)]
    t = [m[i][3] for i in range(3)]
    s2 = sum(r[i][0] ** 2 for i in range(3))  # squared scale of the first column
    rt = [[r[j][i] / s2 for j in range(3)] for i in range(3)]  # R^T / s^2 = inverse of s R
    ti = [-sum(rt[i][k] * t[k] for k in range(3)) for i in range(3)]
    return [rt[0] + [ti[0]], rt[1] + [ti[1]], rt[2] + [ti[2]], [0.0, 0.0, 0.0, 1.0]]


def _apply(m, p):
    return [sum(m[i][k] * p[k] for k in range(3)) + m[i][3] for i in range(3)]


def det3(m) -> float:
    return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))


def uniform_scale(m) -> float:
    """The uniform scale of a 4x4 similarity (|det|^(1/3) of its 3x3 part)."""
    return abs(det3(m)) ** (1.0 / 3.0)


@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    focal_px: float
    cx: float  # principal point, pixels from the left
    cy: float  # principal point, pixels from the BOTTOM
    pixel_aspect: float = 1.0


@dataclass(frozen=True)
class Anchor:
    frame: int
    x: float
    y: float
    depth: float
    track: str = ""


def project(camera, point, k: Intrinsics) -> tuple[float, float, float] | None:
    """(x from the left, y from the top, depth along the view axis) in reconstruction units; None behind."""
    pc = _apply(_mat_inv_rigid(camera), point)
    depth = -pc[2]
    if depth <= 0:
        return None
    x = k.cx + k.focal_px * pc[0] / depth
    y_bottom = k.cy + k.focal_px * k.pixel_aspect * pc[1] / depth
    return x, k.height - y_bottom, depth


def anchors_from_solve(cameras: dict, tracks, k: Intrinsics, *, scale: float = 1.0, source_offset: int = 0,
                       frames: tuple[int, int] | None = None) -> list[Anchor]:
    """One anchor per (bundle, frame) where the track is enabled, the frame solved and the bundle in view.

    source_offset: source frame = clip frame + source_offset (clip.frame_offset + first file number - 1).
    frames: keep only source frames in this inclusive range (the render's --frames).
    """
    out = []
    for name, bundle, markers in tracks:
        for clip_frame in sorted(markers):
            camera = cameras.get(clip_frame)
            if camera is None:
                continue
            source = clip_frame + source_offset
            if frames is not None and not frames[0] <= source <= frames[1]:
                continue
            hit = project(camera, bundle, k)
            if hit is None:
                continue
            x, y, depth = hit
            if not (0.0 <= x <= k.width and 0.0 <= y <= k.height):
                continue
            out.append(Anchor(source, x, y, depth * scale, name))
    return out


def write_anchors_csv(path: str, anchors: list[Anchor]) -> str:
    """The engine's anchors CSV (frame,x,y,depth), written to a temporary name and renamed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("frame,x,y,depth\n")
        for a in anchors:
            f.write(f"{a.frame},{a.x:.4f},{a.y:.4f},{a.depth:.6g}\n")
    os.replace(tmp, path)
    return path


def describe_fit(fit: dict | None, bundles: int) -> str:
    """The panel's line about the scene-scale fit the engine reports (JobResult.anchors / dvd/anchors)."""
    if not fit:
        return ""
    med, worst = fit.get("medianRelError"), fit.get("worstRelError")
    err = (f"; depth error median {100 * med:.1f} %, worst {100 * worst:.1f} %"
           if isinstance(med, (int, float)) and isinstance(worst, (int, float)) and math.isfinite(med) else "")
    return f"Scene scale: {bundles} bundles, {fit.get('used', 0)} anchors used, {fit.get('rejected', 0)} rejected{err}"
