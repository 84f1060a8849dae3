"""Global affine coherence: stitch per-window predictions into ONE scale for the whole shot.

Pure numpy, no model needed. The model's prediction for window ``k`` is an unknown affine of
the shot's true disparity ``d``: ``pred_k ~ (d - b_k) / a_k``. We find ``(a_k, b_k)`` for every
window so that ``a_k * pred_k + b_k`` agrees across the shot, blend overlapping windows with a
linear ramp, then normalise the whole shot once with robust percentiles.

Streaming contract (memory does not grow with shot length beyond O(windows) small samples):

1. for each pair of windows that share frames, the engine calls :func:`overlap_samples` with
   both windows' predictions of the shared frames and keeps only the bounded sample it returns;
2. :func:`solve_affines` solves every window's affine jointly from those samples;
3. for each frame, :func:`frame_contributions` + :func:`stitch_frame` give the stitched
   disparity, which is fed to a :class:`PercentileAccumulator` (first pass) and then mapped by
   :func:`normalise` (and :func:`depth_from_disparity`) in a second pass over the cache.

:func:`sequential_chain_affines` is the official reference stitcher, kept only to measure how
much better the joint solve is.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dvd_vfx.errors import InputError
from dvd_vfx.windows import Window

__all__ = [
    "OverlapSamples",
    "overlap_samples",
    "solve_affines",
    "sequential_chain_affines",
    "frame_contributions",
    "stitch_frame",
    "PercentileAccumulator",
    "normalise",
    "depth_from_disparity",
]

_MAD_TO_SIGMA = 1.4826  # MAD of a Gaussian times this = its standard deviation
_HUBER_C = 1.345  # classic 95 %-efficiency tuning constants, in robust-sigma units
_TUKEY_C = 4.685


# --------------------------------------------------------------------------------------------
# 1. overlap samples
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverlapSamples:
    """Paired pixel values of two windows' predictions of the same frames.

    ``xi[n]`` and ``xj[n]`` are the same pixel of the same frame as predicted by windows i and j
    (float64, 1-D, equal length, saturated and non-finite pixels removed). ``n_valid`` is how
    many unsaturated pairs existed before subsampling, ``n_total`` how many pixel pairs the
    overlap had; both are for diagnostics only.
    """

    xi: np.ndarray
    xj: np.ndarray
    n_valid: int = 0
    n_total: int = 0

    def __len__(self) -> int:
        return int(self.xi.shape[0])


def _unsaturated(x: np.ndarray, saturation: float) -> tuple[float, float]:
    """The open interval of values that carry affine information: (saturation, 1 - saturation)
    for a prediction in [0, 1] (DVD clamps to it); for a plugin's prediction in any affine (the
    predictor contract), the same fraction inside its own finite range."""
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return 0.0, 0.0  # nothing is valid
    x_min, x_max = float(finite.min()), float(finite.max())
    if 0.0 <= x_min and x_max <= 1.0:
        return saturation, 1.0 - saturation
    margin = saturation * (x_max - x_min)
    return x_min + margin, x_max - margin


def overlap_samples(
    pred_i: np.ndarray,
    pred_j: np.ndarray,
    max_samples: int = 20000,
    saturation: float = 0.01,
    seed: int = 0,
) -> OverlapSamples:
    """A bounded, deterministic sample of pixel pairs from two windows' shared frames.

    ``pred_i`` and ``pred_j`` are the two windows' predictions of the *same* shot frames
    (``[T, h, w]``, same shape; DVD's values are in [0, 1]). A pair is kept only when both values are
    finite and strictly inside ``(saturation, 1 - saturation)``: values at the ends of [0, 1]
    were clamped by the model and carry no affine information (a window outside [0, 1], from a
    plugin predictor of any affine, uses the same fraction of its own range). When more than ``max_samples``
    pairs remain, ``max_samples`` of them are drawn uniformly without replacement with a fixed
    ``seed`` (same inputs -> same sample), in their original pixel order.

    Memory: the returned sample is at most ``2 * max_samples`` float64 values (320 kB by
    default); transiently the call needs a boolean mask and the index list of valid pixels.
    """
    a = np.asarray(pred_i)
    b = np.asarray(pred_j)
    if a.shape != b.shape:
        raise ValueError(f"overlap predictions differ in shape: {a.shape} vs {b.shape}")
    if max_samples < 1:
        raise ValueError(f"max_samples={max_samples} must be at least 1")
    if not 0.0 <= saturation < 0.5:
        raise ValueError(f"saturation={saturation} must be in [0, 0.5)")
    a = a.reshape(-1)
    b = b.reshape(-1)
    # NaN compares False, so non-finite values drop out here as well.
    lo_a, hi_a = _unsaturated(a, saturation)
    lo_b, hi_b = _unsaturated(b, saturation)
    valid = (a > lo_a) & (a < hi_a) & (b > lo_b) & (b < hi_b)
    idx = np.flatnonzero(valid)
    n_valid = int(idx.size)
    if n_valid > max_samples:
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(n_valid, size=max_samples, replace=False))
        idx = idx[pick]
    return OverlapSamples(
        xi=a[idx].astype(np.float64),
        xj=b[idx].astype(np.float64),
        n_valid=n_valid,
        n_total=int(a.size),
    )


# --------------------------------------------------------------------------------------------
# 2. joint robust affine solve
# --------------------------------------------------------------------------------------------


def _iqr(x: np.ndarray) -> float:
    q25, q75 = np.percentile(x, [25.0, 75.0])
    return float(q75 - q25)


def _robust_weights(r: np.ndarray, kind: str, scale: float) -> np.ndarray:
    """Huber or Tukey-biweight IRLS weights for the residuals ``r`` of one overlap, whose
    robust scale (MAD) is ``scale`` (floored so exact data gives weight 1, not 0/0)."""
    u = np.abs(r) / max(scale, 1e-12)
    if kind == "huber":
        return np.minimum(1.0, _HUBER_C / np.maximum(u, 1e-300))
    t = u / _TUKEY_C
    return np.where(t < 1.0, (1.0 - t * t) ** 2, 0.0)


@dataclass(frozen=True)
class _Link:
    """Robust symmetric fit of one overlap: ``xi ~ ratio * xj + c`` with ``ratio = a_j/a_i``.

    The fitted line passes through the weighted centroid ``(mi, mj)``. ``var_log`` is the
    approximate variance of ``log(ratio)``, ``var_shift`` that of the centroid relation (in raw
    units squared, per unit scale); both only weight links against each other in loops.
    """

    i: int
    j: int
    ratio: float
    mi: float
    mj: float
    var_log: float
    var_shift: float


def _fit_link(
    i: int,
    j: int,
    xi: np.ndarray,
    xj: np.ndarray,
    iterations: int,
    bounds: tuple[float, float] | None,
    margin: float,
) -> _Link | None:
    """Orthogonal (total least squares) line through the pairs ``(xj, xi)``, robustly.

    Both windows' raw predictions carry noise of about the same size, so the perpendicular
    distance to the line is the right residual; ordinary least squares of one on the other
    would shrink the slope by ``var(signal) / (var(signal) + var(noise))`` (regression
    dilution). IRLS: starts from IQR/median matching, two Huber iterations, then Tukey
    biweight (gross outliers get weight 0). None when the fit is degenerate (no positive
    correlation, all weight lost).
    """
    ratio = _iqr(xi) / _iqr(xj)
    c = float(np.median(xi)) - ratio * float(np.median(xj))
    result = None
    for it in range(iterations):
        root_k = math.sqrt(1.0 + ratio * ratio)
        r = (xi - ratio * xj - c) / root_k
        sigma = _MAD_TO_SIGMA * float(np.median(np.abs(r)))
        w = _robust_weights(r, "huber" if it < 2 else "tukey", sigma)
        if bounds is not None:
            # Keep pairs whose *projection onto the line* lies a margin inside the unsaturated
            # range. The projection's noise is independent of the perpendicular residual, so
            # this selection does not bias the fit, and it discards the pixels near the
            # saturation thresholds, whose residuals the threshold on the raw values truncated.
            lo, hi = bounds[0] + margin * sigma, bounds[1] - margin * sigma
            pi, pj = xi - r / root_k, xj + r * ratio / root_k
            inside = (pi > lo) & (pi < hi) & (pj > lo) & (pj < hi)
            if np.count_nonzero(inside) >= 8:
                w = w * inside
        sw = float(w.sum())
        if sw <= 0.0:
            return None
        mi, mj = _dot(w, xi) / sw, _dot(w, xj) / sw
        di, dj = xi - mi, xj - mj
        wdi, wdj = w * di, w * dj
        cii, cjj, cij = _dot(wdi, di) / sw, _dot(wdj, dj) / sw, _dot(wdi, dj) / sw
        if not cij > 0.0:
            return None
        # slope of the major axis of the weighted covariance, xi against xj
        new_ratio = ((cii - cjj) + math.sqrt((cii - cjj) ** 2 + 4.0 * cij * cij)) / (2.0 * cij)
        if not (math.isfinite(new_ratio) and new_ratio > 0.0):
            return None
        new_c = mi - new_ratio * mj
        change = abs(new_ratio - ratio) / new_ratio + abs(new_c - c)
        ratio, c = new_ratio, new_c
        # Across the line: the noise variance; along it: the signal. Asymptotic variance of
        # the slope ~ noise * (1 + ratio^2)^2 * (1 + noise/signal) / (n_eff * signal); used
        # only to weight links against each other.
        half = math.sqrt(0.25 * (cii - cjj) ** 2 + cij * cij)
        noise = max(0.5 * (cii + cjj) - half, 1e-30)
        signal = max(2.0 * half, 1e-30)
        n_eff = sw * sw / max(_dot(w, w), 1e-300)
        k = 1.0 + ratio * ratio
        var_log = noise * k * k * (1.0 + noise / signal) / (n_eff * signal * ratio * ratio)
        # floors (1e-6 relative in scale, 1e-7 in shift) keep the weights' dynamic range, and
        # so the conditioning of the joint solve, sane when some links are noise-free
        result = _Link(i, j, ratio, mi, mj, max(var_log, 1e-12), max(noise / n_eff, 1e-14))
        if it >= 3 and change < 1e-7:  # far below any statistical error
            break
    return result


def _components(n: int, links: Sequence[_Link]) -> list[list[int]]:
    """Connected components of the window graph, each sorted, ordered by smallest member."""
    parent = list(range(n))

    def find(u: int) -> int:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    for e in links:
        ri, rj = find(e.i), find(e.j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for u in range(n):
        groups.setdefault(find(u), []).append(u)
    return sorted(groups.values(), key=lambda g: g[0])


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of a*b with numpy's pairwise sum: the same bits at any BLAS thread count (a BLAS dot
    product splits the sum by thread, so the stitch - and the EXR header - would depend on it)."""
    return float((a * b).sum())


def _laplacian_solve(m: int, eqs: Sequence[tuple[int, int, float, float]]) -> np.ndarray:
    """Weighted least squares for ``u_j - u_i = value`` over a connected graph, ``u_0 = 0``.

    ``eqs`` holds ``(i, j, value, weight)`` in local indices. Dense normal equations: the graph
    Laplacian with node 0 removed (positive definite for a connected graph).
    """
    if m == 1:
        return np.zeros(1)
    L = np.zeros((m, m))
    rhs = np.zeros(m)
    for i, j, value, weight in eqs:
        L[i, i] += weight
        L[j, j] += weight
        L[i, j] -= weight
        L[j, i] -= weight
        rhs[j] += weight * value
        rhs[i] -= weight * value
    u = np.zeros(m)
    u[1:] = np.linalg.solve(L[1:, 1:], rhs[1:])
    return u


def _solve_component(m: int, links: Sequence[_Link]) -> tuple[np.ndarray, np.ndarray]:
    """Joint scales and shifts of one connected component (local indices, a_0=1, b_0=0).

    Scales: least squares on ``log a_j - log a_i = log ratio`` over every link, weighted by
    the inverse variance of each link's log-ratio (positive by construction). Shifts: with
    those scales, each link's line through its centroid gives ``b_j - b_i = a_i*mi - a_j*mj``,
    solved the same way. For a chain this is exact composition of the per-link fits; with
    loops (non-consecutive overlaps) the redundant links average out.
    """
    log_a = _laplacian_solve(m, [(e.i, e.j, math.log(e.ratio), 1.0 / e.var_log) for e in links])
    a = np.exp(log_a)
    shift_eqs = []
    for e in links:
        weight = 1.0 / (e.var_shift * (a[e.i] ** 2 + a[e.j] ** 2))
        shift_eqs.append((e.i, e.j, a[e.i] * e.mi - a[e.j] * e.mj, weight))
    b = _laplacian_solve(m, shift_eqs)
    return a, b


def solve_affines(
    n_windows: int,
    overlaps: Sequence[tuple[int, int, OverlapSamples]],
    *,
    iterations: int = 10,
    min_pairs: int = 32,
    min_spread: float = 1e-3,
    saturation: float | None = 0.01,
    margin: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-window ``(scales a[K], shifts b[K])`` making ``a_k * pred_k + b_k`` consistent.

    ``overlaps`` is any list of ``(i, j, samples)`` (consecutive windows or not, several per
    pair allowed); each sample pair states ``a_i*xi + b_i = a_j*xj + b_j`` with both sides
    unknown. Window 0 is fixed at ``a=1, b=0``; all other scales and shifts are solved jointly.

    Method, in two linear stages:

    1. every overlap gets a robust *symmetric* fit ``xi ~ (a_j/a_i) * xj + c``: orthogonal
       (total least squares) regression, since both windows' predictions are equally noisy;
       IRLS with Huber then Tukey-biweight weights on the perpendicular residual, scaled by
       its MAD, so gross outliers get zero weight. This is unbiased, whereas ordinary least
       squares of one window on the other (what fixing ``a_0 = 1`` and solving the raw
       equations by linear least squares amounts to on a chain) under-estimates every link's
       scale by the same factor, which compounds into a steady drift along a long shot.
    2. all scales are solved jointly by weighted least squares on their logarithms
       (``log a_j - log a_i = log ratio``, inverse-variance weights), then all shifts by least
       squares on the links' centroid relations. The remaining error is a random walk of the
       per-link statistical errors — no systematic drift — and redundant links (overlap >
       window/2) reduce it. (A single global total-least-squares eigenproblem over all 2K
       unknowns is also consistent, but its slow "bending" mode along a chain has an
       eigenvalue gap far below the noise level, which made it several times less accurate.)

    Scales are always positive; there is no clipping. Overlaps with fewer than ``min_pairs``
    pairs, whose inter-quartile range on either side is below ``min_spread`` (nearly flat: no
    scale information), or whose robust fit is degenerate (no positive correlation) do not
    take part. A window, or a group of windows, left without such a link to window 0 is placed
    gracefully: if it still has a weak overlap with an already solved window it takes that
    neighbour's scale, with the shift that makes the overlap's medians agree; otherwise its
    first window takes the affine of the window just before it (the model's output range is
    similar from one window to the next). Links inside such a group are still honoured.
    """
    K = int(n_windows)
    if K < 1:
        raise ValueError(f"n_windows={n_windows} must be at least 1")
    if iterations < 1:
        raise ValueError(f"iterations={iterations} must be at least 1")
    bounds = None if saturation is None else (float(saturation), 1.0 - float(saturation))
    good: list[_Link] = []
    weak: list[tuple[int, int, np.ndarray, np.ndarray]] = []
    for i, j, s in overlaps:
        i, j = int(i), int(j)
        if not (0 <= i < K and 0 <= j < K) or i == j:
            raise ValueError(f"overlap ({i}, {j}) does not name two different windows of {K}")
        xi = np.asarray(s.xi, dtype=np.float64).reshape(-1)
        xj = np.asarray(s.xj, dtype=np.float64).reshape(-1)
        if xi.shape != xj.shape:
            raise ValueError(f"overlap ({i}, {j}): xi and xj differ in length")
        ok = np.isfinite(xi) & np.isfinite(xj)
        if not ok.all():
            xi, xj = xi[ok], xj[ok]
        if xi.size == 0:
            continue
        link = None
        if xi.size >= min_pairs and _iqr(xi) >= min_spread and _iqr(xj) >= min_spread:
            link = _fit_link(i, j, xi, xj, iterations, bounds, margin)
        if link is not None:
            good.append(link)
        else:
            weak.append((i, j, xi, xj))

    a = np.ones(K)
    b = np.zeros(K)
    solved = np.zeros(K, dtype=bool)
    for comp in _components(K, good):
        local = {g: n for n, g in enumerate(comp)}
        comp_links = [
            _Link(local[e.i], local[e.j], e.ratio, e.mi, e.mj, e.var_log, e.var_shift)
            for e in good
            if e.i in local
        ]
        ca, cb = _solve_component(len(comp), comp_links)
        alpha, beta = 1.0, 0.0  # the component containing window 0 keeps its own gauge
        if comp[0] != 0:
            alpha, beta = _attach(comp, local, ca, cb, weak, a, b, solved)
        idx = np.asarray(comp)
        a[idx] = alpha * ca
        b[idx] = alpha * cb + beta
        solved[idx] = True
    return a, b


def _attach(comp, local, ca, cb, weak, a, b, solved) -> tuple[float, float]:
    """Global affine (alpha, beta) placing a component that has no good link to window 0."""
    best = None
    for i, j, xi, xj in weak:
        if i in local and solved[j]:
            cand = (xi.size, j, xj, local[i], xi)
        elif j in local and solved[i]:
            cand = (xi.size, i, xi, local[j], xj)
        else:
            continue
        if best is None or cand[0] > best[0]:
            best = cand
    if best is not None:
        _, g_out, x_out, l_in, x_in = best
        alpha = a[g_out] / ca[l_in]
        beta = float(np.median(a[g_out] * x_out + b[g_out])) - alpha * float(
            np.median(ca[l_in] * x_in + cb[l_in])
        )
        return float(alpha), beta
    prev = comp[0] - 1  # solved: its component's smallest member is smaller than comp[0]
    alpha = a[prev] / ca[0]
    return float(alpha), float(b[prev] - alpha * cb[0])


def sequential_chain_affines(
    overlaps_in_order: Sequence[OverlapSamples],
) -> tuple[np.ndarray, np.ndarray]:
    """The official reference stitcher, for comparison only (do not use for output).

    ``overlaps_in_order[k]`` holds the samples of windows ``(k, k+1)``. Window 0 is fixed; each
    new window is fitted by ordinary least squares onto the already aligned previous window
    (target ``a_k*xi + b_k``, regressor the new window's raw ``xj``) and the scale is clipped to
    [0.7, 1.5]; because the target is already aligned, the fit composes along the chain. OLS
    with a noisy regressor under-estimates the scale, and the error accumulates.
    """
    K = len(overlaps_in_order) + 1
    a = np.ones(K)
    b = np.zeros(K)
    for k, s in enumerate(overlaps_in_order):
        xi = np.asarray(s.xi, dtype=np.float64)
        xj = np.asarray(s.xj, dtype=np.float64)
        if xi.size < 2 or float(np.var(xj)) <= 0.0:
            a[k + 1], b[k + 1] = a[k], b[k]
            continue
        target = a[k] * xi + b[k]
        mx, mt = float(xj.mean()), float(target.mean())
        scale = float(((xj - mx) * (target - mt)).mean() / np.var(xj))
        scale = min(max(scale, 0.7), 1.5)
        a[k + 1] = scale
        b[k + 1] = mt - scale * mx
    return a, b


# --------------------------------------------------------------------------------------------
# 3. blending
# --------------------------------------------------------------------------------------------


def _ramp_weight(plan: Sequence[Window], k: int, frame: int) -> float:
    """Unnormalised weight of window k at a frame it covers: a linear ramp up across the frames
    it shares with earlier windows, a ramp down across those shared with later windows."""
    w = plan[k]
    up = down = 1.0
    if k > 0 and plan[k - 1].stop > w.start and frame < plan[k - 1].stop:
        length = plan[k - 1].stop - w.start
        up = (frame - w.start + 1) / (length + 1)
    if k + 1 < len(plan) and plan[k + 1].start < w.stop and frame >= plan[k + 1].start:
        length = w.stop - plan[k + 1].start
        down = (w.stop - frame) / (length + 1)
    return min(up, down)


def frame_contributions(plan: Sequence[Window], frame: int) -> list[tuple[int, int, float]]:
    """``(window index, local frame index, weight)`` of every window that covers ``frame``.

    Weights sum to 1. Where one window covers the frame its weight is 1. Across the overlap of
    two consecutive windows (``L`` shared frames) the weights cross-fade linearly: the later
    window's weight is ``1/(L+1), 2/(L+1), ..., L/(L+1)`` and the earlier one's is the
    complement, so both windows contribute on every shared frame and the step from the last
    single-window frame is the same as every other step. Where three or more windows overlap
    (``overlap > window/2``) each window's ramp weight is normalised by their sum. Padding
    frames are never used.
    """
    if not plan:
        raise ValueError("empty window plan")
    f = int(frame)
    if not plan[0].start <= f < plan[-1].stop:
        raise ValueError(f"frame {f} is outside the plan [{plan[0].start}, {plan[-1].stop})")
    starts = [w.start for w in plan]
    # candidates: windows starting at or before f, scanned back while they still cover f
    k_last = bisect.bisect_right(starts, f) - 1
    ks = []
    k = k_last
    while k >= 0 and plan[k].stop > f:
        ks.append(k)
        k -= 1
    ks.reverse()
    raw = [_ramp_weight(plan, k, f) for k in ks]
    total = sum(raw)
    return [(k, f - plan[k].start, r / total) for k, r in zip(ks, raw)]


def stitch_frame(
    contributions: Sequence[tuple[int, int, float]],
    window_preds: Mapping[int, np.ndarray] | Callable[[int, int], np.ndarray],
    scales: np.ndarray,
    shifts: np.ndarray,
) -> np.ndarray:
    """One stitched frame ``sum_k w_k * (a_k * pred_k[t_k] + b_k)`` as float32 ``[h, w]``.

    ``window_preds`` is either a mapping ``window index -> [T, h, w]`` predictions or a callable
    ``(window index, local frame) -> [h, w]`` (e.g. a reader of the per-window cache).
    Accumulates in float64; no clamping (normalisation clips later).
    """
    out = None
    for k, t, w in contributions:
        if callable(window_preds):
            img = window_preds(k, t)
        else:
            img = window_preds[k][t]
        term = np.asarray(img, dtype=np.float64) * (w * float(scales[k])) + w * float(shifts[k])
        out = term if out is None else out + term
    if out is None:
        raise ValueError("no contributions for this frame")
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------
# 4. shot-global normalisation and depth
# --------------------------------------------------------------------------------------------


class PercentileAccumulator:
    """Robust percentiles of a whole shot from a bounded, deterministic sample.

    ``add(frame)`` keeps at most ``samples_per_frame`` finite values of each frame (all of them
    when the frame has fewer; otherwise uniformly drawn with replacement from a generator
    seeded with ``seed``). The pool is capped at ``max_samples`` values (float32, 8 MB by
    default): when it overflows, half of it is dropped at random and from then on every frame
    keeps each of its drawn values with half the probability, so all frames stay equally
    represented (a decimating reservoir). NaN/inf are ignored.

    Accuracy: exact (``np.percentile``, linear interpolation, on all values) while every frame
    has at most ``samples_per_frame`` finite values and the total stays under the cap;
    otherwise the percentile's rank error is about ``sqrt(p(1-p)/n)`` for a pool of ``n``
    values — about 1e-4 (0.01 percentile points) with a full 2M pool.
    """

    def __init__(
        self,
        lo: float = 2.0,
        hi: float = 98.0,
        samples_per_frame: int = 4096,
        seed: int = 0,
        max_samples: int = 2_000_000,
    ) -> None:
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles lo={lo}, hi={hi} must satisfy 0 <= lo < hi <= 100")
        if samples_per_frame < 1 or max_samples < 2 * samples_per_frame:
            raise ValueError("need samples_per_frame >= 1 and max_samples >= 2*samples_per_frame")
        self.lo = float(lo)
        self.hi = float(hi)
        self.samples_per_frame = int(samples_per_frame)
        self.max_samples = int(max_samples)
        self._rng = np.random.default_rng(seed)
        self._chunks: list[np.ndarray] = []
        self._count = 0
        self._level = 0  # each drawn value is kept with probability 2**-level
        self.frames = 0

    @property
    def n_samples(self) -> int:
        """Number of values currently held."""
        return self._count

    def add(self, frame: np.ndarray) -> None:
        """Add one frame (any shape) of stitched disparity."""
        x = np.asarray(frame).reshape(-1)
        x = x[np.isfinite(x)]
        self.frames += 1
        if x.size > self.samples_per_frame:
            x = x[self._rng.integers(0, x.size, size=self.samples_per_frame)]
        if self._level:
            x = x[self._rng.random(x.size) < 0.5**self._level]
        if x.size == 0:
            return
        self._chunks.append(x.astype(np.float32, copy=True))
        self._count += x.size
        while self._count > self.max_samples:
            pool = np.concatenate(self._chunks)
            pool = pool[self._rng.random(pool.size) < 0.5]
            self._chunks = [pool]
            self._count = pool.size
            self._level += 1

    def result(self) -> tuple[float, float]:
        """``(p_lo, p_hi)`` of everything added; ValueError when no finite value was seen."""
        if self._count == 0:
            raise ValueError("no finite values were added: cannot compute percentiles")
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        p_lo, p_hi = np.percentile(self._chunks[0].astype(np.float64), [self.lo, self.hi])
        return float(p_lo), float(p_hi)


def normalise(d: np.ndarray, p_lo: float, p_hi: float, *, clip: bool = True) -> np.ndarray:
    """``(d - p_lo) / (p_hi - p_lo)`` clipped to [0, 1] (unless ``clip=False``), float32.

    When ``p_hi <= p_lo`` (a flat shot) or either is not finite, there is no range to map: the
    result is 0.5 everywhere (mid range, rather than pushing the whole frame to the far plane).
    NaN in ``d`` stays NaN.
    """
    x = np.asarray(d, dtype=np.float32)
    lo, hi = float(p_lo), float(p_hi)
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return np.full(x.shape, 0.5, dtype=np.float32)
    out = (x - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return (np.clip(out, 0.0, 1.0) if clip else out).astype(np.float32, copy=False)


def depth_from_disparity(d: np.ndarray, near: float, far: float) -> np.ndarray:
    """Metric-like depth ``z = 1 / (d * (1/near - 1/far) + 1/far)`` as float32.

    ``d`` is the shot's normalised disparity in [0, 1] (values outside are clipped):
    ``d = 1 -> near``, ``d = 0 -> far``, monotonic in between (larger d = nearer).
    """
    n, f = float(near), float(far)
    if not (math.isfinite(n) and math.isfinite(f) and 0.0 < n < f):
        raise InputError(
            f"near={near}, far={far} are not valid: use 0 < near < far, e.g. near=1 far=100"
        )
    x = np.clip(np.asarray(d, dtype=np.float64), 0.0, 1.0)
    z = 1.0 / (x * (1.0 / n - 1.0 / f) + 1.0 / f)
    return z.astype(np.float32)
