"""Upsampling depth from the working resolution to the plate resolution (pure numpy).

Conventions
-----------
* ``size`` is always ``(width, height)``, like PIL; arrays are ``[height, width]`` or
  ``[height, width, channels]``.
* Sampling uses pixel centres (half-pixel convention, the same as
  ``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)`` and PIL's
  BILINEAR when enlarging): output pixel ``i`` samples the source at
  ``(i + 0.5) * n_in / n_out - 0.5``, clamped to the edge pixels. Shrinking does not low-pass
  filter first (depth is only ever enlarged here).

``upsample_guided`` is the fast guided filter of He & Sun (2015) on top of the guided filter
of He, Sun & Tang (2010): the linear coefficients are solved on a grid ``s`` times coarser than
the plate (box filters by cumulative sums, O(1) per pixel, in float64 so variances of nearly
flat regions do not cancel), then enlarged and applied to the full-resolution plate luminance,
so depth edges snap to the plate's edges. The result is clipped to the input depth's range.
"""

from __future__ import annotations

import numpy as np

from dvd_vfx.errors import InputError

__all__ = ["METHODS", "resize_bilinear", "upsample", "upsample_guided"]

METHODS = ("bilinear", "guided")

# Rec. 709 luma weights, used to turn an RGB plate into a single-channel guide.
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


# --------------------------------------------------------------------------- helpers


def _check_size(size) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive, got {width}x{height}")
    return width, height


def _source_coords(n_in: int, n_out: int) -> np.ndarray:
    """Source coordinate of every output pixel centre (half-pixel convention)."""
    return (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5


def _interp_axis(x: np.ndarray, axis: int, coords: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``x`` along ``axis`` at fractional ``coords`` (edge-clamped)."""
    n = x.shape[axis]
    coords = np.clip(coords, 0.0, n - 1)
    i0 = np.floor(coords).astype(np.intp)
    i1 = np.minimum(i0 + 1, n - 1)
    shape = [1] * x.ndim
    shape[axis] = coords.size
    w = (coords - i0).astype(x.dtype).reshape(shape)
    a = np.take(x, i0, axis=axis)
    b = np.take(x, i1, axis=axis)
    # a + (b - a) * w, in place to keep peak memory at two output-sized buffers
    np.subtract(b, a, out=b)
    np.multiply(b, w, out=b)
    np.add(a, b, out=a)
    return a


def _box_mean_1d(x: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Mean over the window [i-r, i+r] along ``axis``, truncated at the borders."""
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 0)
    c = np.pad(np.cumsum(x, axis=axis), pad)  # c[k] = sum of the first k samples
    idx = np.arange(n)
    hi = np.minimum(idx + r + 1, n)
    lo = np.maximum(idx - r, 0)
    shape = [1] * x.ndim
    shape[axis] = n
    s = np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)
    s /= (hi - lo).astype(x.dtype).reshape(shape)
    return s


def _box_mean(x: np.ndarray, r: int) -> np.ndarray:
    return _box_mean_1d(_box_mean_1d(x, r, 0), r, 1)


def _luminance(guide: np.ndarray) -> np.ndarray:
    g = np.asarray(guide)
    if g.ndim == 3 and g.shape[2] == 1:
        g = g[:, :, 0]
    if g.ndim not in (2, 3) or (g.ndim == 3 and g.shape[2] < 3):
        raise ValueError(f"guide must be [H,W], [H,W,1] or [H,W,3+], got shape {g.shape}")
    if np.issubdtype(g.dtype, np.integer):
        scale = np.float32(1.0 / np.iinfo(g.dtype).max)
    else:
        scale = np.float32(1.0)
    if g.ndim == 2:
        lum = g.astype(np.float32) * scale
    else:
        lum = g[:, :, 0].astype(np.float32) * (_LUMA[0] * scale)
        lum += g[:, :, 1].astype(np.float32) * (_LUMA[1] * scale)
        lum += g[:, :, 2].astype(np.float32) * (_LUMA[2] * scale)
    return lum


def _as_depth(depth: np.ndarray) -> np.ndarray:
    d = np.asarray(depth)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[:, :, 0]
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"depth must be a non-empty [H,W] array, got shape {d.shape}")
    return d.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- public API


def resize_bilinear(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``[h,w]`` or ``[h,w,c]`` to ``size=(width, height)``; float32 out.

    Separable (one 1-D interpolation per axis, the cheaper order first), half-pixel centres,
    edge-clamped: matches ``align_corners=False`` bilinear. Axes whose size does not change
    are copied, not resampled.
    """
    a = np.asarray(img)
    if a.ndim not in (2, 3) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"image must be a non-empty [H,W] or [H,W,C] array, got shape {a.shape}")
    width, height = _check_size(size)
    a = a.astype(np.float32, copy=False)
    h, w = a.shape[:2]
    if (h, w) == (height, width):
        return a.copy()
    # Interpolating width first costs h*width, height first height*w (then the full size).
    order = (1, 0) if h * width <= height * w else (0, 1)
    out = a
    for axis in order:
        n_in = out.shape[axis]
        n_out = width if axis == 1 else height
        if n_in != n_out:
            out = _interp_axis(out, axis, _source_coords(n_in, n_out))
    return out


def upsample_guided(
    depth_small: np.ndarray, guide_rgb: np.ndarray, *, radius: int = 8, eps: float = 1e-4
) -> np.ndarray:
    """Edge-aware upsampling of ``depth_small`` to the guide's size; float32 ``[H,W]``.

    ``guide_rgb`` is the plate, ``[H,W,3]`` (or more channels, the first three are RGB) or
    ``[H,W]``; integer plates are scaled to [0,1]. Its luminance is the guide, normalised by
    its 1st-99th percentile range so ``eps`` does not depend on exposure. ``radius`` is the
    window radius in plate pixels, ``eps`` the regulariser (smaller = follows plate edges
    more closely). Output values stay within ``[depth_small.min(), depth_small.max()]``.
    """
    p_small = _as_depth(depth_small)
    radius = int(radius)
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    eps = float(eps)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    lum = _luminance(guide_rgb)
    H, W = lum.shape
    h, w = p_small.shape
    lo = float(np.nanmin(p_small))
    hi = float(np.nanmax(p_small))

    # Subsampling factor of the fast guided filter: the depth has no detail finer than
    # H/h plate pixels, so the coefficients can be solved on a grid that coarse.
    s = int(max(1, min(H / h, W / w, radius / 2)))
    r_low = max(1, int(round(radius / s)))
    hs, ws = -(-H // s), -(-W // s)

    # Guide on the coarse grid: block means (edge-padded to a multiple of s).
    if s == 1:
        i_low = lum.astype(np.float64)
    else:
        padded = np.pad(lum, ((0, hs * s - H), (0, ws * s - W)), mode="edge")
        i_low = padded.reshape(hs, s, ws, s).mean(axis=(1, 3), dtype=np.float64)
    # Normalise the guide's range (robust) so eps is exposure independent.
    g_lo, g_hi = np.percentile(i_low, [1.0, 99.0])
    g_scale = 1.0 / (g_hi - g_lo) if g_hi - g_lo > 1e-12 else 1.0
    i_low = (i_low - g_lo) * g_scale

    # Depth sampled at the coarse grid's pixel centres (plate coordinate (j+0.5)*s - 0.5).
    ys = (np.arange(hs) + 0.5) * s * (h / H) - 0.5
    xs = (np.arange(ws) + 0.5) * s * (w / W) - 0.5
    p_low = _interp_axis(_interp_axis(p_small.astype(np.float64), 0, ys), 1, xs)

    # Guided filter (He et al. 2010) on the coarse grid.
    mean_i = _box_mean(i_low, r_low)
    mean_p = _box_mean(p_low, r_low)
    cov_ip = _box_mean(i_low * p_low, r_low) - mean_i * mean_p
    var_i = _box_mean(i_low * i_low, r_low) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    mean_a = _box_mean(a, r_low).astype(np.float32)
    mean_b = _box_mean(b, r_low).astype(np.float32)

    # Enlarge the coefficients to the plate and apply them to the full-resolution guide.
    ys_full = (np.arange(H) + 0.5) / s - 0.5
    xs_full = (np.arange(W) + 0.5) / s - 0.5
    big_a = _interp_axis(_interp_axis(mean_a, 1, xs_full), 0, ys_full)
    big_b = _interp_axis(_interp_axis(mean_b, 1, xs_full), 0, ys_full)
    g_norm = lum
    g_norm -= np.float32(g_lo)
    g_norm *= np.float32(g_scale)
    big_a *= g_norm
    big_a += big_b
    np.clip(big_a, lo, hi, out=big_a)
    return big_a


def upsample(
    depth_small: np.ndarray, size: tuple[int, int], *, method: str = "bilinear", guide=None
) -> np.ndarray:
    """Upsample depth to ``size=(width, height)`` with ``method`` "bilinear" or "guided".

    "guided" needs ``guide``: the plate at exactly ``size``.
    """
    name = str(method).strip().lower()
    if name not in METHODS:
        raise InputError(
            f"unknown upsampling method {method!r}; use one of: {', '.join(METHODS)}"
        )
    width, height = _check_size(size)
    if name == "bilinear":
        return resize_bilinear(_as_depth(depth_small), (width, height))
    if guide is None:
        raise InputError(
            "guided upsampling needs the plate as a guide; pass the plate frames or use "
            "method 'bilinear'"
        )
    g = np.asarray(guide)
    if g.ndim < 2 or g.shape[:2] != (height, width):
        got = f"{g.shape[1]}x{g.shape[0]}" if g.ndim >= 2 else f"shape {g.shape}"
        raise InputError(
            f"guide is {got} but the output size is {width}x{height}; "
            "pass the plate at output resolution"
        )
    return upsample_guided(depth_small, g)

