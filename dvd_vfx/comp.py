"""Defocus and fog from a depth pass (numpy; torch when available), for previews and the CLI.

The maths
---------
Circle of confusion (thin lens). Focal length ``f`` and sensor width ``w_s`` in millimetres,
depth ``z`` and focus distance ``S`` in scene units (``unit_scale`` metres per unit), f-stop
``N``, plate width ``W`` pixels. The aperture is ``f / N``; a point at ``z`` images as a disk
of diameter ``f^2 / (N (S - f)) * |z - S| / z`` on the sensor. As a *signed radius in pixels*
(positive behind the focus plane, negative in front of it)::

    coc(z) = K * (1 - S / z),   K = f^2 / (N (S - f)) / w_s * W / 2

(``K`` is the radius of a point at infinity). Disparity passes (``mode="disparity"``:
normalised ``d`` in [0, 1], 1 = near, unknown scale) are handled in relative terms, the same
formula written with ``1/z`` and the unknown scale folded into ``relative_scale``::

    coc(d) = relative_scale * (d_focus - d)     (pixels; d_focus = ``focus``)

Both are clamped to ``[-max_blur, max_blur]``; ``|coc| < 1e-3`` px counts as in focus.

Defocus is a layered gather. The signed CoC range is cut into layers at fixed radii (1 px
apart up to ~7 px, then at most 15 % apart); each pixel is shared between its two nearest
layers (linear weights, so the blur radius varies continuously). Each layer -- its premultiplied
colour and its weight -- is blurred with the bokeh kernel of that radius (a round or n-bladed
aperture, anti-aliased), large radii at a reduced resolution (box down, bilinear up, with the
kernel shrunk so the spread's second moment is unchanged). Layers are composited back to front
with *over* and the result is divided by the accumulated weight. So a sharp foreground never
leaks onto a blurred background (a layer only spreads its own pixels), a blurred foreground
does spread over a sharp background, holes behind a foreground are filled from the visible
background, and pixels in focus with nothing blurred in front of them are returned
bit-identical. Memory is bounded: frames are processed in bands of rows (with a halo of
``max_blur`` plus resampling margin) and only a few band-sized planes exist at a time.

Fog, per pixel, in linear light::

    t = exp(-density * max(z - start, 0));   I' = I * t + C * (1 - t)

with ``z`` the depth in scene units (depth passes) or ``1 - d`` (disparity passes: 0 at the
nearest, 1 at the farthest point of the shot). NaN depth counts as infinitely far.

Colour: blur and fog happen in linear light. Scene-linear plates are used as they are
(``transfer="linear"``, HDR values kept); display-referred plates (``transfer="srgb"``) are
decoded with the sRGB curve, processed and encoded back. Outputs keep the plate's encoding.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dvd_vfx.errors import InputError

__all__ = [
    "DefocusSettings",
    "FogSettings",
    "available_backends",
    "bokeh_kernel",
    "circle_of_confusion",
    "comp_sequence",
    "defocus",
    "fog",
    "layer_radii",
]

MODES = ("depth", "disparity")
TRANSFERS = ("linear", "srgb")
BACKENDS = ("auto", "numpy", "torch")
IN_FOCUS_PX = 1e-3  # |coc| below this is exactly in focus
_COARSE_RADIUS = 8.0  # layers wider than this (in pixels) are blurred at a reduced resolution
_TILE_PIXELS = 4_000_000  # pixels per band (1080p: one band; 4K: three)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DefocusSettings:
    """Lens and bokeh. ``focus``: distance in scene units (depth passes) or the in-focus
    disparity in [0, 1] (disparity passes). ``relative_scale``: disparity passes only, blur
    radius in pixels per unit of disparity difference (default ``max_blur``).
    ``max_blur``: largest blur radius in pixels. ``blades``: 0 = round aperture, else the
    number of aperture blades (>= 3), rotated by ``blade_rotation`` degrees."""

    focus: float
    fstop: float = 2.8
    focal_length: float = 35.0  # mm
    sensor_width: float = 36.0  # mm
    unit_scale: float = 1.0  # metres per scene unit
    relative_scale: float | None = None
    max_blur: float = 32.0
    blades: int = 0
    blade_rotation: float = 0.0

    operation = "defocus"

    def check(self, mode: str) -> None:
        def positive(name):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise InputError(f"{name.replace('_', ' ')} {v!r} is invalid; give a positive number")

        if not (isinstance(self.focus, (int, float)) and math.isfinite(self.focus)):
            raise InputError(f"focus {self.focus!r} is invalid; give a number")
        for name in ("fstop", "focal_length", "sensor_width", "unit_scale"):
            positive(name)
        if not (math.isfinite(self.max_blur) and 0 <= self.max_blur <= 512):
            raise InputError(f"max blur {self.max_blur!r} px is invalid; give 0 to 512 pixels")
        if self.relative_scale is not None and not (
            math.isfinite(self.relative_scale) and self.relative_scale >= 0
        ):
            raise InputError(f"relative scale {self.relative_scale!r} is invalid; give a number >= 0")
        if self.blades != 0 and not (3 <= int(self.blades) <= 16):
            raise InputError(f"blades {self.blades!r} is invalid; give 0 (round) or 3 to 16")
        if mode == "depth":
            if self.focus <= 0:
                raise InputError(f"focus distance {self.focus!r} is invalid; give a positive distance in scene units")
            if self.focus * self.unit_scale * 1000.0 <= self.focal_length:
                raise InputError(
                    f"focus distance {self.focus:g} units ({self.focus * self.unit_scale:g} m) is inside the "
                    f"focal length {self.focal_length:g} mm; focus farther away or check --unit-scale"
                )
        elif not 0.0 <= self.focus <= 1.0:
            raise InputError(
                f"focus {self.focus!r} is invalid for a disparity pass; give a disparity in [0, 1] (1 = near)"
            )


@dataclass(frozen=True)
class FogSettings:
    """Exponential fog: ``density`` per scene unit (per unit of relative depth for disparity
    passes), ``colour`` in the plate's encoding, ``start`` distance before which there is no fog."""

    density: float
    colour: tuple[float, float, float] = (0.7, 0.75, 0.8)
    start: float = 0.0

    operation = "fog"

    def check(self, mode: str) -> None:
        if not (math.isfinite(self.density) and self.density >= 0):
            raise InputError(f"fog density {self.density!r} is invalid; give a number >= 0")
        if not math.isfinite(self.start):
            raise InputError(f"fog start {self.start!r} is invalid; give a distance")
        if len(self.colour) != 3 or not all(math.isfinite(c) for c in self.colour):
            raise InputError(f"fog colour {self.colour!r} is invalid; give three numbers R,G,B")


def _check_choice(value: str, choices, what: str) -> str:
    if value not in choices:
        raise InputError(f"{what} {value!r} is not one of {', '.join(choices)}; pick one of them")
    return value


# --------------------------------------------------------------------------- circle of confusion


def circle_of_confusion(depth: np.ndarray, settings: DefocusSettings, *, mode: str = "depth",
                        width: int | None = None) -> np.ndarray:
    """Signed CoC radius in pixels (float32, same shape as ``depth``; see the module maths).

    ``width``: plate width in pixels (default: ``depth.shape[1]``).
    """
    _check_choice(mode, MODES, "depth mode")
    settings.check(mode)
    d = np.asarray(depth, dtype=np.float32)
    R = np.float32(settings.max_blur)
    if mode == "depth":
        width = int(width if width is not None else d.shape[-1])
        f = settings.focal_length / 1000.0
        S_m = settings.focus * settings.unit_scale
        k = f * f / (settings.fstop * (S_m - f)) / (settings.sensor_width / 1000.0) * width / 2.0
        S = np.float32(settings.focus)  # float32 like the pass: z == S gives exactly 0
        z = np.nan_to_num(d, nan=np.inf, posinf=np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            coc = np.float32(k) * (np.float32(1.0) - S / z)
        coc[~(z > 0)] = -R  # zero or negative depth: nearer than anything
    else:
        scale = settings.max_blur if settings.relative_scale is None else settings.relative_scale
        disparity = np.nan_to_num(d, nan=0.0, posinf=1.0, neginf=0.0)
        coc = np.float32(scale) * (np.float32(settings.focus) - disparity)
    coc = np.clip(coc, -R, R).astype(np.float32, copy=False)
    coc[np.abs(coc) < IN_FOCUS_PX] = 0.0
    return coc


def layer_radii(max_blur: float) -> np.ndarray:
    """Signed layer radii, ascending, symmetric, including 0 (1 px apart, then <= 15 %)."""
    radii = [0.0]
    while radii[-1] < max_blur - 1e-6:
        radii.append(min(radii[-1] + max(1.0, 0.15 * radii[-1]), float(max_blur)))
    pos = np.array(radii, dtype=np.float64)
    return np.concatenate([-pos[:0:-1], pos])


def _layer_scale(radius: float) -> int:
    s = 1
    while radius / s >= _COARSE_RADIUS:
        s *= 2
    return s


# --------------------------------------------------------------------------- bokeh kernel


def bokeh_kernel(radius: float, blades: int = 0, rotation: float = 0.0, supersample: int = 8) -> np.ndarray:
    """The aperture image (point spread) of ``radius`` pixels: float32 [2k+1, 2k+1], sum 1.

    Round for ``blades == 0``, else a regular polygon with that circumradius. Anti-aliased by
    ``supersample`` x ``supersample`` coverage per pixel.
    """
    radius = max(float(radius), 1e-3)
    k = int(math.ceil(radius + 0.5))
    n = supersample
    offs = (np.arange(n) + 0.5) / n - 0.5
    grid = np.arange(-k, k + 1, dtype=np.float64)
    ys = (grid[:, None] + offs[None, :]).reshape(-1)
    y, x = ys[:, None], ys[None, :]  # [(2k+1)n, (2k+1)n]
    if blades:
        inside = np.ones((ys.size, ys.size), dtype=bool)
        apothem = radius * math.cos(math.pi / blades)
        for i in range(blades):
            phi = math.radians(rotation) + (i + 0.5) * 2 * math.pi / blades
            inside &= x * math.cos(phi) + y * math.sin(phi) <= apothem
    else:
        inside = x * x + y * y <= radius * radius
    cover = inside.reshape(2 * k + 1, n, 2 * k + 1, n).sum(axis=(1, 3)).astype(np.float64)
    if cover.sum() == 0:
        cover[k, k] = 1.0
    return (cover / cover.sum()).astype(np.float32)


# --------------------------------------------------------------------------- backends


def _kernel_spans(kernel: np.ndarray) -> list[tuple[int, int, int, float, list[tuple[int, float]]]]:
    """Rows of a convex kernel as (row, a, b, weight, taps): a run a..b of equal full-coverage
    weights (a difference of prefix sums: O(1) per row) plus the few soft edge taps."""
    full = float(kernel.max())
    spans = []
    for j in range(kernel.shape[0]):
        row = kernel[j]
        nz = np.flatnonzero(row)
        if nz.size == 0:
            continue
        run = np.flatnonzero(row == full)
        a, b = 0, -1
        if run.size and run[-1] - run[0] + 1 == run.size:
            a, b = int(run[0]), int(run[-1])
        taps = [(int(i), float(row[i])) for i in nz if not a <= i <= b]
        spans.append((j, a, b, full, taps))
    return spans


class _NumpyBackend:
    name = "numpy"

    def asarray(self, a):
        return np.ascontiguousarray(a, dtype=np.float32)

    def to_numpy(self, a):
        return np.asarray(a)

    def zeros(self, *shape):
        return np.zeros(shape, dtype=np.float32)

    def convolve(self, x, kernel):
        """Correlate [C,h,w] with ``kernel`` (already flipped), zero padding, same size."""
        c, h, w = x.shape
        k = kernel.shape[0] // 2
        xp = np.zeros((c, h + 2 * k, w + 2 * k), dtype=np.float32)
        xp[:, k:k + h, k:k + w] = x
        prefix = np.zeros((c, h + 2 * k, w + 2 * k + 1), dtype=np.float64)
        np.cumsum(xp, axis=2, out=prefix[:, :, 1:])
        boxes = {}  # (a, b) -> horizontal box sums, float32; rows dy and -dy share one
        runs = np.zeros((c, h, w), dtype=np.float32)
        out = np.zeros((c, h, w), dtype=np.float32)
        full = 0.0
        for j, a, b, full, taps in _kernel_spans(kernel):
            if b >= a:
                box = boxes.get((a, b))
                if box is None:
                    box = boxes[(a, b)] = (prefix[:, :, b + 1:b + 1 + w] - prefix[:, :, a:a + w]).astype(np.float32)
                runs += box[:, j:j + h]
            for i, weight in taps:
                out += np.float32(weight) * xp[:, j:j + h, i:i + w]
        out += np.float32(full) * runs
        return out

    def box_down(self, x, s):
        c, h, w = x.shape
        return x.reshape(c, h // s, s, w // s, s).mean(axis=(2, 4), dtype=np.float32)

    def bilinear_up(self, x, s):
        """Pixel-centre aligned, edge-clamped bilinear upsampling by ``s`` (torch's rule)."""
        c, h, w = x.shape

        def taps(n):
            src = np.maximum((np.arange(n * s) + 0.5) / s - 0.5, 0.0)
            i0 = np.minimum(np.floor(src).astype(np.intp), n - 1)
            i1 = np.minimum(i0 + 1, n - 1)
            return i0, i1, (src - i0).astype(np.float32)

        r0, r1, fy = taps(h)
        c0, c1, fx = taps(w)
        rows = x[:, r0, :] * (1 - fy)[None, :, None] + x[:, r1, :] * fy[None, :, None]
        return rows[:, :, c0] * (1 - fx) + rows[:, :, c1] * fx


class _TorchBackend:
    name = "torch"

    def __init__(self, device=None):
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)

    def asarray(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device)

    def to_numpy(self, a):
        return a.detach().cpu().numpy()

    def zeros(self, *shape):
        return self.torch.zeros(shape, dtype=self.torch.float32, device=self.device)

    def convolve(self, x, kernel):
        """As the numpy backend (row spans of prefix sums) on the CPU, where torch's large-kernel
        convolutions are slow; a depthwise conv2d on GPUs."""
        torch, F = self.torch, self.F
        c, h, w = x.shape
        k = kernel.shape[0] // 2
        if self.device.type != "cpu":
            kt = self.asarray(kernel)[None, None].expand(c, 1, -1, -1)
            return F.conv2d(x[None], kt, padding=k, groups=c)[0]
        xp = F.pad(x, (k, k, k, k))
        prefix = F.pad(torch.cumsum(xp, dim=2, dtype=torch.float64), (1, 0))
        boxes = {}
        runs = torch.zeros((c, h, w), dtype=torch.float32, device=self.device)
        out = torch.zeros((c, h, w), dtype=torch.float32, device=self.device)
        full = 0.0
        for j, a, b, full, taps in _kernel_spans(kernel):
            if b >= a:
                box = boxes.get((a, b))
                if box is None:
                    box = boxes[(a, b)] = (prefix[:, :, b + 1:b + 1 + w] - prefix[:, :, a:a + w]).float()
                runs += box[:, j:j + h]
            for i, weight in taps:
                out += weight * xp[:, j:j + h, i:i + w]
        out += full * runs
        return out

    def box_down(self, x, s):
        return self.F.avg_pool2d(x[None], s)[0]

    def bilinear_up(self, x, s):
        return self.F.interpolate(x[None], scale_factor=s, mode="bilinear", align_corners=False)[0]


def available_backends() -> list[str]:
    """``["numpy"]`` plus ``"torch"`` when torch imports."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return ["numpy"]
    return ["numpy", "torch"]


def _backend(backend, device=None):
    if not isinstance(backend, str):
        return backend
    _check_choice(backend, BACKENDS, "backend")
    if backend == "numpy":
        return _NumpyBackend()
    if backend == "torch":
        try:
            return _TorchBackend(device)
        except ImportError:
            raise InputError("backend 'torch' needs torch, which is not installed; use --backend numpy") from None
    # auto: torch on a GPU; on a CPU the numpy path measured faster (benchmarks/bench_comp.py)
    if device not in (None, "cpu") or _gpu_available():
        return _TorchBackend(device)
    return _NumpyBackend()


def _gpu_available() -> bool:
    if "torch" not in available_backends():
        return False
    import torch

    return bool(torch.cuda.is_available())


# --------------------------------------------------------------------------- colour


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.04045, x / np.float32(12.92),
                    np.power((np.maximum(x, 0) + np.float32(0.055)) / np.float32(1.055), np.float32(2.4)))


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * np.float32(12.92),
                    np.float32(1.055) * np.power(x, np.float32(1 / 2.4)) - np.float32(0.055)).astype(np.float32)


def _to_linear(rgb, transfer):
    return srgb_to_linear(rgb) if transfer == "srgb" else np.asarray(rgb, dtype=np.float32)


def _from_linear(rgb, transfer):
    return linear_to_srgb(rgb) if transfer == "srgb" else rgb


def _check_pair(image, depth):
    img = np.asarray(image)
    d = np.asarray(depth)
    if img.ndim != 3 or img.shape[2] < 3:
        raise InputError(f"image must be [H, W, 3], got shape {img.shape}")
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[:, :, 0]
    if d.shape != img.shape[:2]:
        raise InputError(
            f"depth is {d.shape[1] if d.ndim > 1 else '?'}x{d.shape[0]} but the image is "
            f"{img.shape[1]}x{img.shape[0]}; give a depth pass of the plate's size"
        )
    return img[:, :, :3], d


# --------------------------------------------------------------------------- defocus


def defocus(image: np.ndarray, depth: np.ndarray, settings: DefocusSettings, *, mode: str = "depth",
            transfer: str = "linear", backend="auto", device=None,
            tile_pixels: int = _TILE_PIXELS) -> np.ndarray:
    """Depth-of-field: float32 [H, W, 3] in the image's encoding (see the module maths).

    ``image``: [H, W, 3]; ``depth``: [H, W] (scene units, or disparity for
    ``mode="disparity"``). ``transfer``: "linear" (scene-linear image) or "srgb"
    (display-referred; blurred in linear light). ``backend``: "auto" (torch on a CUDA GPU,
    else numpy, which is the faster of the two on CPUs), "numpy" or "torch". ``tile_pixels``: pixels per band.
    """
    img, d = _check_pair(image, depth)
    _check_choice(transfer, TRANSFERS, "transfer")
    be = _backend(backend, device)
    coc = circle_of_confusion(d, settings, mode=mode, width=img.shape[1])
    lin = _to_linear(img, transfer)
    out, sharp = _defocus_linear(be, lin, coc, settings, tile_pixels)
    out = _from_linear(out, transfer)
    out[sharp] = img[sharp]  # exactly the input where nothing changed
    return out


def _defocus_linear(be, lin, coc, settings, tile_pixels):
    """Banded driver: [H,W,3] linear -> ([H,W,3], in-focus-and-unchanged mask [H,W])."""
    h, w = coc.shape
    radii = layer_radii(settings.max_blur)
    kernels: dict[float, tuple[int, np.ndarray]] = {}
    for r in np.abs(radii):
        if r > 0 and r not in kernels:
            s = _layer_scale(r)
            # box down (var (s^2-1)/12 per axis) + bilinear up (var ~s^2/6) widen the spread;
            # shrink the disk (var rho^2/4 per axis) so the total matches radius r.
            extra = 0.0 if s == 1 else (s * s - 1) / 12.0 + s * s / 6.0
            rho = math.sqrt(max(r * r - 4.0 * extra, (0.5 * s) ** 2))
            kern = bokeh_kernel(rho / s, settings.blades, settings.blade_rotation)
            kernels[r] = (s, np.ascontiguousarray(kern[::-1, ::-1]))  # scatter -> gather
    s_max = max([s for s, _ in kernels.values()] + [1])
    halo = int(math.ceil((settings.max_blur + 3 * s_max + 2) / s_max)) * s_max
    band = max(s_max, (max(int(tile_pixels), 1) // max(w, 1)) // s_max * s_max)
    out = np.empty((h, w, 3), dtype=np.float32)
    sharp = np.zeros((h, w), dtype=bool)
    chw = np.moveaxis(lin, 2, 0)
    for y in range(0, h, band):
        e0, e1 = max(0, y - halo), min(h, y + band + halo)
        res, sh = _defocus_band(be, chw[:, e0:e1], coc[e0:e1], radii, kernels)
        stop = min(h, y + band)
        out[y:stop] = np.moveaxis(res[:, y - e0:stop - e0], 0, 2)
        sharp[y:stop] = sh[y - e0:stop - e0]
    return out, sharp


def _defocus_band(be, chw, coc, radii, kernels):
    """Layers back to front (far = positive CoC first), composited with *over*."""
    _, h, w = chw.shape
    acc = be.zeros(4, h, w)  # premultiplied RGB + weight
    front = be.zeros(h, w)  # alpha of the layers in front of the focus plane
    image = be.asarray(chw)
    for i in range(len(radii) - 1, -1, -1):
        L = radii[i]
        lo = radii[i - 1] if i > 0 else -np.inf
        hi = radii[i + 1] if i + 1 < len(radii) else np.inf
        inside = (coc > lo) & (coc < hi)
        rows = np.flatnonzero(inside.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(inside.any(axis=0))
        r = abs(L)
        s, kern = kernels.get(r, (1, None))
        reach = int(math.ceil(r)) + 2 * s + 1 if r > 0 else 0
        y0 = max(0, rows[0] - reach) // s * s
        x0 = max(0, cols[0] - reach) // s * s
        y1 = min(h, rows[-1] + 1 + reach)
        x1 = min(w, cols[-1] + 1 + reach)
        c = coc[y0:y1, x0:x1]
        with np.errstate(divide="ignore", invalid="ignore"):
            up = (hi - c) / (hi - L) if np.isfinite(hi) else np.ones_like(c)
            down = (c - lo) / (L - lo) if np.isfinite(lo) else np.ones_like(c)
        weight = np.clip(np.where(c >= L, up, down), 0.0, 1.0).astype(np.float32)
        weight = be.asarray(weight)
        layer = be.zeros(4, y1 - y0, x1 - x0)
        layer[:3] = image[:, y0:y1, x0:x1] * weight
        layer[3] = weight
        if r > 0:
            layer = _blur_layer(be, layer, s, kern)
        alpha = layer[3]
        region = acc[:, y0:y1, x0:x1]
        acc[:, y0:y1, x0:x1] = layer + (1 - alpha) * region
        if L < 0:
            front[y0:y1, x0:x1] = alpha + (1 - alpha) * front[y0:y1, x0:x1]
    acc = be.to_numpy(acc)
    front = be.to_numpy(front)
    weight = acc[3]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(weight > 0, acc[:3] / np.where(weight > 0, weight, 1), chw)
    sharp = (coc == 0) & (front <= 1e-6)
    out[:, sharp] = chw[:, sharp]
    return out.astype(np.float32, copy=False), sharp


def _blur_layer(be, layer, s, kern):
    """Blur [4,h,w] with ``kern`` at 1/s resolution (s = 1: directly)."""
    if s == 1:
        return be.convolve(layer, kern)
    _, h, w = layer.shape
    hh, ww = -(-h // s) * s, -(-w // s) * s
    if (hh, ww) != (h, w):
        padded = be.zeros(4, hh, ww)
        padded[:, :h, :w] = layer
        layer = padded
    coarse = be.convolve(be.box_down(layer, s), kern)
    return be.bilinear_up(coarse, s)[:, :h, :w]


# --------------------------------------------------------------------------- fog


def fog(image: np.ndarray, depth: np.ndarray, settings: FogSettings, *, mode: str = "depth",
        transfer: str = "linear") -> np.ndarray:
    """Exponential fog (see the module maths): float32 [H, W, 3] in the image's encoding."""
    img, d = _check_pair(image, depth)
    _check_choice(mode, MODES, "depth mode")
    _check_choice(transfer, TRANSFERS, "transfer")
    settings.check(mode)
    colour = _to_linear(np.asarray(settings.colour, dtype=np.float32), transfer)
    out = np.empty(img.shape, dtype=np.float32)
    step = max(1, _TILE_PIXELS // max(img.shape[1], 1))
    for y in range(0, img.shape[0], step):
        part = img[y:y + step].astype(np.float32)
        dd = np.asarray(d[y:y + step], dtype=np.float32)
        if mode == "depth":
            z = np.nan_to_num(dd, nan=np.inf)
        else:
            z = np.float32(1.0) - np.nan_to_num(dd, nan=0.0)
        dist = np.maximum(z - np.float32(settings.start), np.float32(0.0))
        with np.errstate(invalid="ignore", over="ignore"):
            t = np.exp(-np.float32(settings.density) * dist)
        t = np.nan_to_num(t, nan=1.0)[:, :, None]  # 0 * inf (no density, infinite depth): no fog
        lin = _to_linear(part, transfer)
        res = _from_linear(lin * t + colour * (np.float32(1.0) - t), transfer)
        clear = (dist == 0) | (np.float32(settings.density) == 0)
        res[clear] = part[clear]
        out[y:y + step] = res
    return out


# --------------------------------------------------------------------------- sequences (CLI)

IMAGE_FORMATS = ("exr", "png")


def _has_token(pattern: str) -> bool:
    from dvd_vfx.footage.sequence import pattern_frame

    return pattern_frame(pattern, 0) is not None


def frame_path(pattern: str, frame: int) -> str:
    """``shot.depth.####.exr`` / ``%04d`` / ``@@@@`` / ``$F4`` with ``frame`` filled in (fileseq's spellings;
    one ``#`` = 4 digits, as sequences are read)."""
    from dvd_vfx.footage.sequence import pattern_frame

    return pattern_frame(pattern, frame) or pattern


def _output_pattern(output, depth_pattern: str, operation: str, image_format: str | None, frames: int) -> tuple[str, str]:
    text = os.path.abspath(os.path.expanduser(os.fspath(output)))
    ext = os.path.splitext(text)[1].lower().lstrip(".")
    if image_format is not None:
        _check_choice(image_format, IMAGE_FORMATS, "output format")
    if ext in IMAGE_FORMATS:
        if image_format is not None and image_format != ext:
            raise InputError(f"output {text} is a .{ext} name but --format is {image_format}; make them agree")
        if not _has_token(text) and frames > 1:
            raise InputError(f"output {text} has no frame number for {frames} frames; write it as NAME.####.{ext}")
        return text, ext
    fmt = image_format or "exr"
    base = os.path.basename(depth_pattern)
    shot = base.split(".depth.")[0] if ".depth." in base else re.split(r"[.#%]", base)[0] or "comp"
    return os.path.join(text, f"{shot}.{operation}.####.{fmt}"), fmt


def _write_atomic(path: str, writer) -> None:
    folder = os.path.dirname(path)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        writer(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        reason = exc.strerror or " ".join(str(exc).split())
        raise InputError(f"cannot write {path}: {reason}; check the folder or choose another output") from exc


def _write_exr(path: str, rgb: np.ndarray, attributes: dict) -> None:
    import OpenEXR

    from dvd_vfx.passes.exr import OWNER, exr_attribute

    half = np.clip(np.nan_to_num(rgb, nan=0.0), -65504.0, 65504.0).astype(np.float16)
    channels = {name: np.ascontiguousarray(half[:, :, i]) for i, name in enumerate("RGB")}
    header = {
        "type": OpenEXR.scanlineimage,
        "compression": OpenEXR.ZIP_COMPRESSION,
        "owner": OWNER,
        "comments": f"dvd-vfx comp {attributes.get('comp', '')}".strip(),
    }
    for key, value in attributes.items():
        v = exr_attribute(value)
        if v is not None:
            header[f"dvd/{key}"] = v

    def write(tmp):
        with open(tmp, "wb") as fh:
            OpenEXR.File(header, channels).write(fh)
            fh.flush()
            os.fsync(fh.fileno())

    _write_atomic(path, write)


def _write_png(path: str, rgb: np.ndarray, linear: bool) -> None:
    from PIL import Image

    display = linear_to_srgb(rgb) if linear else np.clip(rgb, 0.0, 1.0)
    pixels = np.round(np.nan_to_num(display) * 255.0).astype(np.uint8)
    _write_atomic(path, lambda tmp: Image.fromarray(pixels, "RGB").save(tmp, format="PNG"))


def _plate_frames(footage, first: int, last: int, linear: bool):
    """(frame, [H,W,3] float32): scene-linear EXR plates as stored (HDR kept), else display."""
    if not linear:
        yield from footage.read(frames=(first, last))
        return
    from dvd_vfx.footage.exr import choose_layout, read_exr_frame, read_exr_header

    info = footage.info
    for n in range(first, last + 1):
        path = footage.spec.files[n]
        label = f"frame {n} ({path})"
        layout = choose_layout(read_exr_header(path), label)
        rgb, _bad = read_exr_frame(path, layout, info.width, info.height, label)
        yield n, rgb


def comp_sequence(settings: DefocusSettings | FogSettings, *, plate, depth, output, frames=None,
                  image_format: str | None = None, colorspace: str = "auto", mode: str | None = None,
                  backend="auto", progress: bool = True) -> list[Path]:
    """Apply ``settings`` (defocus or fog) to every frame of ``plate`` with its depth frame.

    ``depth``: ``OUT_DIR/shot.depth.####.exr`` (or one file for a one-frame plate).
    ``output``: a folder (``<shot>.<operation>.####.<format>`` inside) or a pattern ending in
    ``.exr`` / ``.png``. ``frames``: "A-B" or (first, last). ``mode``: "depth" / "disparity"
    (default: the pass's ``dvd/mode`` attribute, else depth). Returns the files written.
    """
    from tqdm import tqdm

    from dvd_vfx.footage import open_footage, parse_frame_range
    from dvd_vfx.passes.depth_reader import read_depth

    footage = open_footage(plate, colorspace=colorspace)
    info = footage.info
    first, last = info.first_frame, info.last_frame
    if frames is not None:
        first, last = parse_frame_range(frames) if isinstance(frames, str) else tuple(int(f) for f in frames)
        if first < info.first_frame or last > info.last_frame:
            raise InputError(
                f"frames {first}-{last} are outside the plate {info.path} (frames "
                f"{info.first_frame}-{info.last_frame}); choose a range inside it"
            )
    numbers = [n for n in info.frame_numbers if first <= n <= last]  # (a stepped plate: its frames only)
    depth_text = os.path.abspath(os.path.expanduser(os.fspath(depth)))
    if _has_token(depth_text):
        depth_files = {n: frame_path(depth_text, n) for n in numbers}
    elif len(numbers) == 1:
        depth_files = {numbers[0]: depth_text}
    else:
        raise InputError(
            f"depth {depth_text} has no frame number but the plate has {len(numbers)} frames; "
            "give the pass as OUT_DIR/shot.depth.####.exr"
        )
    missing = [n for n, p in depth_files.items() if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(str(n) for n in missing[:8]) + (f", ... ({len(missing)} in all)" if len(missing) > 8 else "")
        raise InputError(
            f"missing depth frames {shown} (e.g. {depth_files[missing[0]]}) for plate {info.path}; "
            "render them or restrict --frames"
        )
    linear = (info.kind == "sequence" and info.codec == "exr" and info.colorspace == "linear"
              and not info.ocio_colorspace)
    transfer = "linear" if linear else "srgb"
    pattern, fmt = _output_pattern(output, depth_text, settings.operation, image_format, len(numbers))
    folder = os.path.dirname(pattern)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {folder}: {exc.strerror or exc}; choose another output") from exc
    be = _backend(backend) if settings.operation == "defocus" else None

    written: list[Path] = []
    bar = tqdm(total=len(numbers), desc=f"comp {settings.operation}", unit="frame", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    try:
        for n, rgb in _plate_frames(footage, first, last, linear):
            z, attributes = read_depth(depth_files[n])
            if z.shape != rgb.shape[:2]:
                raise InputError(
                    f"depth {depth_files[n]} is {z.shape[1]}x{z.shape[0]} but plate frame {n} "
                    f"({info.path}) is {rgb.shape[1]}x{rgb.shape[0]}; render the pass at plate resolution"
                )
            frame_mode = mode or str(attributes.get("mode", "depth"))
            if frame_mode not in MODES:
                raise InputError(f"depth {depth_files[n]} has unknown mode {frame_mode!r}; pass --mode depth|disparity")
            if settings.operation == "defocus":
                result = defocus(rgb, z, settings, mode=frame_mode, transfer=transfer, backend=be)
            else:
                result = fog(rgb, z, settings, mode=frame_mode, transfer=transfer)
            target = frame_path(pattern, n) if _has_token(pattern) else pattern
            if fmt == "exr":
                attrs = {"comp": settings.operation, "mode": frame_mode,
                         "colorspace": "linear" if linear else "display",
                         "plate": info.path, "depth": depth_files[n], "frame": n,
                         "settings": asdict(settings)}
                _write_exr(target, result, attrs)
            else:
                _write_png(target, result, linear)
            written.append(Path(target))
            bar.update(1)
    finally:
        bar.close()
    return written
