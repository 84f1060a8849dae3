"""Preview images for the selected shot: plate, depth colour map and its legend. Qt-free (numpy).

Everything returns float32 / uint8 numpy arrays; the Qt layer only wraps them in QImages.
Defocus and fog come from dvd_vfx.comp (issue 9) when that module is importable; without it the
panel shows the plate and the depth map only and says why.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import numpy as np

PREVIEW_WIDTH = 960  # sharp in a large pane and at 2x DPI

# Colour stops of the depth map, far (0) -> near (1): deep blue, teal, yellow-green, orange, red.
_STOPS = np.array([
    [0.00, 0.05, 0.03, 0.25],
    [0.25, 0.10, 0.35, 0.65],
    [0.50, 0.15, 0.70, 0.60],
    [0.75, 0.90, 0.80, 0.20],
    [1.00, 0.85, 0.15, 0.10],
], dtype=np.float32)


def colour_map(unit: np.ndarray) -> np.ndarray:
    """[H,W] in 0..1 (1 = near) -> uint8 [H,W,3]; NaN/inf show as black."""
    u = np.asarray(unit, dtype=np.float32)
    bad = ~np.isfinite(u)
    u = np.clip(np.where(bad, 0, u), 0, 1)
    rgb = np.stack([np.interp(u, _STOPS[:, 0], _STOPS[:, c]) for c in (1, 2, 3)], axis=-1)
    rgb[bad] = 0
    return (rgb * 255 + 0.5).astype(np.uint8)


def legend_bar(width: int = 256, height: int = 12) -> np.ndarray:
    """uint8 [height,width,3]: far at the left, near at the right (the labels go with it)."""
    return np.repeat(colour_map(np.linspace(0, 1, width, dtype=np.float32))[None], height, axis=0)


def depth_to_unit(values: np.ndarray, mode: str, near: float | None, far: float | None) -> np.ndarray:
    """The pass's values -> 0..1 with 1 = near. Depth is mapped in 1/z so mid-distances stay readable."""
    v = np.asarray(values, dtype=np.float32)
    if mode == "depth" and near and far and far > near:
        with np.errstate(divide="ignore", invalid="ignore"):
            return ((1.0 / v) - 1.0 / far) / (1.0 / near - 1.0 / far)
    lo, hi = np.nanpercentile(v, 1), np.nanpercentile(v, 99)
    return (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(rgb, dtype=np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


def preview_size(width: int, height: int, max_width: int = PREVIEW_WIDTH) -> tuple[int, int]:
    if width <= max_width:
        return width, height
    return max_width, max(1, round(height * max_width / width))


def resize_nearest(image: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    ys = (np.arange(height) * h / height).astype(int)
    xs = (np.arange(width) * w / width).astype(int)
    return image[ys][:, xs]


def read_depth_pass(path: str) -> tuple[np.ndarray, dict]:
    """depth.Z of one pass file and its dvd/ attributes."""
    import OpenEXR

    from dvd_vfx.passes.exr import read_pass_attributes

    with OpenEXR.File(os.fspath(path)) as exr:
        channels = exr.channels()
        name = "depth.Z" if "depth.Z" in channels else next(iter(channels))
        pixels = np.array(channels[name].pixels, dtype=np.float32)
    return pixels, read_pass_attributes(path)


def load_preview(snapshot: dict, frame: int, *, max_width: int = PREVIEW_WIDTH) -> dict:
    """Plate and depth of `frame` of a shot (a Shot.snapshot()).

    -> {"plate": float32 [h,w,3], "depth": float32 [h,w] or None, "depth_rgb": uint8 or None,
        "mode", "near", "far", "depth_path", "note"}; raises dvd_vfx.errors.InputError for the plate.
    """
    from dvd_vfx.footage import open_footage
    from dvd_vfx.passes.exr import pass_filename

    info = snapshot["info"]
    w, h = preview_size(info["width"], info["height"], max_width)
    values = snapshot.get("values") or {}
    footage = open_footage(snapshot["source"], start_frame=values.get("start_frame"),
                           hold_missing=bool(values.get("hold_missing")))  # numbered as the row shows it
    plate = footage.read_frame(frame, size=(w, h))
    out = {"plate": plate, "depth": None, "depth_rgb": None, "mode": None, "near": None, "far": None,
           "depth_path": None, "note": ""}
    if snapshot.get("out_dir"):
        path = os.path.join(snapshot["out_dir"], pass_filename(snapshot["shot_name"], frame))
        if os.path.isfile(path):
            depth, attributes = read_depth_pass(path)
            depth = resize_nearest(depth, w, h)
            mode = str(attributes.get("mode", "depth"))
            near, far = attributes.get("near"), attributes.get("far")
            out.update(depth=depth, mode=mode, near=near, far=far, depth_path=path,
                       depth_rgb=colour_map(depth_to_unit(depth, mode, near, far)))
        else:
            out["note"] = f"no depth pass for frame {frame} in {snapshot['out_dir']}"
    else:
        out["note"] = "no output folder for this shot"
    return out


# -- defocus / fog (dvd_vfx.comp, issue 9) ----------------------------------------------------------

COMP_MISSING = "needs dvd_vfx.comp"


def comp_module():
    """dvd_vfx.comp if it is installed, else None."""
    if importlib.util.find_spec("dvd_vfx.comp") is None:
        return None
    try:
        return importlib.import_module("dvd_vfx.comp")
    except Exception:  # half-written or broken: behave as if missing
        return None


def focus_from_slider(t: float, mode: str | None, near, far) -> float:
    """Slider 0..1 -> focus: a distance between far (0) and near (1), even in 1/z; disparity as is."""
    t = min(1.0, max(0.0, float(t)))
    if mode == "depth" and near and far and far > near:
        return 1.0 / (1.0 / far + t * (1.0 / near - 1.0 / far))
    return t


def fog_density_from_slider(t: float, mode: str | None, near, far) -> float:
    """Slider 0..1 -> density per scene unit: at 1, the far end keeps exp(-4) (2 %) of the plate."""
    t = min(1.0, max(0.0, float(t)))
    span = float(far - near) if mode == "depth" and near and far and far > near else 1.0
    return 4.0 * t * t / span


def comp_preview(plate: np.ndarray, depth: np.ndarray, *, mode: str, near, far, focus: float, fstop: float,
                 fog_density: float, fog_colour=(0.75, 0.78, 0.84), plate_width: int | None = None) -> np.ndarray:
    """Defocus then fog of a (display-referred) preview frame through dvd_vfx.comp.

    Blur radii follow the preview's width (the thin-lens CoC scales with the image), and the
    largest radius is the plate's 64 px scaled down the same way.
    """
    comp = comp_module()
    if comp is None:
        raise RuntimeError(COMP_MISSING)
    scale = plate.shape[1] / float(plate_width or plate.shape[1])
    mode = mode if mode in ("depth", "disparity") else "depth"
    image = plate
    settings = comp.DefocusSettings(focus=focus, fstop=fstop, max_blur=max(1.0, 64.0 * scale),
                                    relative_scale=64.0 * scale if mode == "disparity" else None)
    if mode == "depth" and focus * settings.unit_scale * 1000.0 <= settings.focal_length:
        settings = comp.DefocusSettings(focus=settings.focal_length / 500.0, fstop=fstop, max_blur=settings.max_blur)
    image = comp.defocus(image, depth, settings, mode=mode, transfer="srgb")
    if fog_density > 0:
        image = comp.fog(image, depth, comp.FogSettings(density=fog_density, colour=tuple(fog_colour),
                                                        start=float(near or 0.0) if mode == "depth" else 0.0),
                         mode=mode, transfer="srgb")
    return image
