"""Global affine coherence (dvd_vfx.stitch), on synthetic shots with known ground truth."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dvd_vfx.errors import InputError
from dvd_vfx.stitch import (
    OverlapSamples,
    PercentileAccumulator,
    depth_from_disparity,
    frame_contributions,
    normalise,
    overlap_samples,
    sequential_chain_affines,
    solve_affines,
    stitch_frame,
)
from dvd_vfx.windows import overlap_pairs, plan_windows

# ------------------------------------------------------------------------------ helpers


def gt_disparity(n: int, h: int, w: int) -> np.ndarray:
    """A smooth moving disparity sequence in [0.05, 0.95] (float64 [n, h, w])."""
    t = np.arange(n, dtype=np.float64)[:, None, None]
    y = np.linspace(0.0, 1.0, h)[None, :, None]
    x = np.linspace(0.0, 1.0, w)[None, None, :]
    d = (
        0.5
        + 0.3 * np.sin(2 * np.pi * (x + 0.5 * y) + t / 37.0)
        + 0.08 * np.sin(t / 151.0)
        + 0.05 * np.cos(3 * np.pi * y + t / 23.0)
    )
    assert 0.05 <= d.min() and d.max() <= 0.95
    return d


def random_affines(k: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Per-window true affines: scales in [0.5, 2], shifts keeping each window roughly in
    range (a model's output spans most of [0, 1]) with a random offset."""
    a = rng.uniform(0.5, 2.0, k)
    b = 0.5 - 0.5 * a + rng.uniform(-0.1, 0.1, k) * a
    return a, b


def window_predictions(plan, gt, a, b, rng, sigma=0.0, garbage=0.0):
    """pred_k = (gt - b_k) / a_k + noise, a fraction ``garbage`` of pixels replaced by uniform
    junk, clipped to [0, 1] like the model's output."""
    preds = {}
    for w in plan:
        p = (gt[w.start : w.stop] - b[w.index]) / a[w.index]
        if sigma:
            p = p + rng.normal(0.0, sigma, p.shape)
        if garbage:
            junk = rng.random(p.shape) < garbage
            p[junk] = rng.random(int(junk.sum()))
        preds[w.index] = np.clip(p, 0.0, 1.0).astype(np.float32)
    return preds


def all_overlaps(plan, preds, **kw):
    out = []
    for i, j, lo, hi in overlap_pairs(plan):
        pi = preds[i][lo - plan[i].start : hi - plan[i].start]
        pj = preds[j][lo - plan[j].start : hi - plan[j].start]
        out.append((i, j, overlap_samples(pi, pj, **kw)))
    return out


def relative_truth(a, b):
    """The affines solve_affines should find: window 0 fixed, i.e. relative to window 0."""
    return a / a[0], (b - b[0]) / a[0]


# ------------------------------------------------------------------------------ overlap samples


def test_overlap_samples_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        overlap_samples(np.zeros((3, 4, 4)), np.zeros((3, 4, 5)))


def test_overlap_samples_excludes_saturated_and_nan_and_keeps_pairs():
    rng = np.random.default_rng(0)
    pi = rng.random((4, 8, 8)).astype(np.float32)
    pj = (0.5 * pi + 0.2).astype(np.float32)
    pi[0, 0, :4] = [0.0, 1.0, 0.005, np.nan]
    pj[1, 0, 0] = 0.999
    s = overlap_samples(pi, pj)
    assert s.xi.dtype == np.float64 and s.xj.dtype == np.float64 and s.xi.ndim == 1
    assert s.n_total == pi.size
    ok = (pi > 0.01) & (pi < 0.99) & (pj > 0.01) & (pj < 0.99)
    assert len(s) == s.n_valid == int(ok.sum())
    assert np.all((s.xi > 0.01) & (s.xi < 0.99) & (s.xj > 0.01) & (s.xj < 0.99))
    np.testing.assert_allclose(s.xj, 0.5 * s.xi + 0.2, atol=1e-6)  # same pixel in both


def test_overlap_samples_bounded_and_deterministic():
    rng = np.random.default_rng(1)
    pi = rng.uniform(0.05, 0.95, (21, 64, 64)).astype(np.float32)
    pj = (pi * 0.8 + 0.1).astype(np.float32)
    s1 = overlap_samples(pi, pj, max_samples=5000)
    s2 = overlap_samples(pi, pj, max_samples=5000)
    assert len(s1) == 5000 and s1.n_valid == pi.size
    np.testing.assert_array_equal(s1.xi, s2.xi)
    np.testing.assert_array_equal(s1.xj, s2.xj)
    np.testing.assert_allclose(s1.xj, s1.xi * 0.8 + 0.1, atol=1e-6)
    s3 = overlap_samples(pi, pj, max_samples=5000, seed=7)
    assert not np.array_equal(s1.xi, s3.xi)


# ------------------------------------------------------------------------------ solve


def test_exact_recovery_without_noise():
    rng = np.random.default_rng(2)
    plan = plan_windows(65, 17, 5)  # 5 windows, consecutive overlaps only
    assert len(plan) == 5 and len(overlap_pairs(plan)) == 4
    gt = gt_disparity(65, 16, 16)
    a, b = random_affines(len(plan), rng)
    preds = window_predictions(plan, gt, a, b, rng)
    sa, sb = solve_affines(len(plan), all_overlaps(plan, preds))
    ra, rb = relative_truth(a, b)
    assert sa[0] == 1.0 and sb[0] == 0.0
    np.testing.assert_allclose(sa, ra, rtol=1e-5)
    np.testing.assert_allclose(sb, rb, atol=1e-5)


def test_exact_recovery_with_non_consecutive_overlaps():
    rng = np.random.default_rng(3)
    plan = plan_windows(40, 17, 12)  # overlap > window/2: windows two apart overlap too
    a, b = random_affines(len(plan), rng)
    preds = window_predictions(plan, gt_disparity(40, 16, 16), a, b, rng)
    ov = all_overlaps(plan, preds)
    assert any(j - i == 2 for i, j, _ in ov)
    sa, sb = solve_affines(len(plan), ov)
    ra, rb = relative_truth(a, b)
    np.testing.assert_allclose(sa, ra, rtol=1e-5)
    np.testing.assert_allclose(sb, rb, atol=1e-5)
    # the order and orientation of the overlaps do not matter
    flipped = [(j, i, OverlapSamples(s.xj, s.xi)) for i, j, s in reversed(ov)]
    fa, fb = solve_affines(len(plan), flipped)
    np.testing.assert_allclose(fa, sa, rtol=1e-9)
    np.testing.assert_allclose(fb, sb, atol=1e-9)


def test_scale_is_not_clipped_and_stays_positive():
    # a real scale jump of 3x between windows: the official clip to [0.7, 1.5] cannot follow
    rng = np.random.default_rng(4)
    plan = plan_windows(30, 17, 4)
    gt = gt_disparity(30, 16, 16)
    a = np.array([1.0, 3.0])
    b = np.array([0.0, -0.5])
    preds = window_predictions(plan, gt, a, b, rng)
    ov = all_overlaps(plan, preds)
    sa, sb = solve_affines(2, ov)
    np.testing.assert_allclose(sa, [1.0, 3.0], rtol=1e-5)
    np.testing.assert_allclose(sb, [0.0, -0.5], atol=1e-5)
    qa, _ = sequential_chain_affines([s for _, _, s in ov])
    assert qa[1] == pytest.approx(1.5)  # the reference clips


def _slope_against_gt(plan, preds, gt, scales, shifts, frames):
    """Slope of the stitched disparity against the ground truth over some frames (pixels
    where any contributing window is saturated are left out)."""
    xs, ys = [], []
    for f in frames:
        contrib = frame_contributions(plan, f)
        out = stitch_frame(contrib, preds, scales, shifts)
        ok = np.ones(out.shape, dtype=bool)
        for k, t, _ in contrib:
            ok &= (preds[k][t] > 0.01) & (preds[k][t] < 0.99)
        xs.append(gt[f][ok])
        ys.append(out[ok])
    return float(np.polyfit(np.concatenate(xs), np.concatenate(ys), 1)[0])


def test_long_shot_has_no_scale_drift_unlike_sequential_chain():
    """1200 frames, window 81 / overlap 21 (20 windows), noisy predictions with random scales
    in [0.5, 2]: the joint symmetric solve keeps one scale for the whole shot."""
    n, h, w = 1200, 32, 32
    rng = np.random.default_rng(0)
    plan = plan_windows(n, 81, 21)
    gt = gt_disparity(n, h, w)
    a, b = random_affines(len(plan), rng)
    preds = window_predictions(plan, gt, a, b, rng, sigma=0.02)
    ov = all_overlaps(plan, preds)
    ours_a, ours_b = solve_affines(len(plan), ov)
    seq_a, seq_b = sequential_chain_affines([s for i, j, s in ov if j == i + 1])
    ra, _ = relative_truth(a, b)

    ours_last = abs(ours_a[-1] / ra[-1] - 1.0)
    seq_last = abs(seq_a[-1] / ra[-1] - 1.0)
    first, last = range(100), range(n - 100, n)
    ours_drift = abs(
        _slope_against_gt(plan, preds, gt, ours_a, ours_b, last)
        / _slope_against_gt(plan, preds, gt, ours_a, ours_b, first)
        - 1.0
    )
    seq_drift = abs(
        _slope_against_gt(plan, preds, gt, seq_a, seq_b, last)
        / _slope_against_gt(plan, preds, gt, seq_a, seq_b, first)
        - 1.0
    )
    print(
        f"\n{len(plan)} windows over {n} frames: last-window scale error ours {ours_last:.4%} "
        f"vs sequential {seq_last:.4%}; slope drift first->last 100 frames ours "
        f"{ours_drift:.4%} vs sequential {seq_drift:.4%}; worst window ours "
        f"{np.abs(ours_a / ra - 1).max():.4%}"
    )
    assert ours_last < 0.01
    assert ours_drift < 0.01
    assert np.abs(ours_a / ra - 1.0).max() < 0.01  # no window of the shot is off by 1 %
    assert seq_last > ours_last and seq_drift > ours_drift
    assert np.all(ours_a > 0)


def test_robust_to_gross_outliers():
    """10 % of every window's pixels replaced by junk: the robust solve stays within 1 %,
    a plain (non-robust) orthogonal fit of the same samples does not."""
    n, h, w = 321, 32, 32
    rng = np.random.default_rng(5)
    plan = plan_windows(n, 81, 21)
    assert len(plan) == 5
    gt = gt_disparity(n, h, w)
    a, b = random_affines(len(plan), rng)
    preds = window_predictions(plan, gt, a, b, rng, sigma=0.01, garbage=0.10)
    ov = all_overlaps(plan, preds)
    sa, sb = solve_affines(len(plan), ov)
    ra, rb = relative_truth(a, b)
    assert np.abs(sa / ra - 1.0).max() < 0.01
    assert np.abs(sb - rb).max() < 0.01

    # the same samples without robustness: chain of plain orthogonal regressions
    plain = [1.0]
    for _, _, s in ov:
        cov = np.cov(np.vstack([s.xj, s.xi]))
        _, vecs = np.linalg.eigh(cov)
        major = vecs[:, 1]
        plain.append(plain[-1] * major[1] / major[0])
    assert np.abs(np.array(plain) / ra - 1.0).max() > 0.01


def test_isolated_window_takes_neighbours_affine():
    rng = np.random.default_rng(6)
    plan = plan_windows(45, 17, 3)  # 3 windows
    gt = gt_disparity(45, 16, 16)
    a, b = random_affines(3, rng)
    preds = window_predictions(plan, gt, a, b, rng)
    ov = all_overlaps(plan, preds)
    empty = OverlapSamples(np.zeros(0), np.zeros(0))
    sa, sb = solve_affines(3, [ov[0], (1, 2, empty)])  # e.g. all saturated
    ra, rb = relative_truth(a, b)
    np.testing.assert_allclose(sa[:2], ra[:2], rtol=1e-5)
    assert (sa[2], sb[2]) == (sa[1], sb[1])
    # window 2 with no overlap at all
    sa, sb = solve_affines(3, [ov[0]])
    assert (sa[2], sb[2]) == (sa[1], sb[1])


def test_flat_overlap_matches_medians_with_neighbours_scale():
    xi = np.full(500, 0.4)
    xj = np.full(500, 0.7)  # a flat wall: no scale information, but an offset
    good = OverlapSamples(np.linspace(0.1, 0.9, 200), np.linspace(0.1, 0.9, 200) * 0.5 + 0.2)
    sa, sb = solve_affines(3, [(0, 1, good), (1, 2, OverlapSamples(xi, xj))])
    assert sa[1] == pytest.approx(2.0) and sb[1] == pytest.approx(-0.4)
    assert sa[2] == pytest.approx(sa[1])
    assert sa[2] * 0.7 + sb[2] == pytest.approx(sa[1] * 0.4 + sb[1])


def test_solve_rejects_bad_overlap_indices():
    s = OverlapSamples(np.linspace(0.1, 0.9, 50), np.linspace(0.1, 0.9, 50))
    with pytest.raises(ValueError):
        solve_affines(2, [(0, 0, s)])
    with pytest.raises(ValueError):
        solve_affines(2, [(0, 2, s)])
    assert solve_affines(1, []) == (pytest.approx([1.0]), pytest.approx([0.0]))


def test_sequential_reference_is_exact_without_noise_inside_clip_range():
    x = np.linspace(0.1, 0.9, 300)
    ov = [OverlapSamples(x, (x - 0.1) / 1.2), OverlapSamples(x, (x + 0.05) / 0.9)]
    qa, qb = sequential_chain_affines(ov)
    np.testing.assert_allclose(qa, [1.0, 1.2, 1.2 * 0.9], rtol=1e-9)
    np.testing.assert_allclose(qb, [0.0, 0.1, 1.2 * -0.05 + 0.1], atol=1e-9)


# ------------------------------------------------------------------------------ blending


@pytest.mark.parametrize(
    "n,window,overlap", [(300, 81, 21), (40, 17, 12), (50, 81, 21), (1, 81, 21)]
)
def test_blend_weights_sum_to_one(n, window, overlap):
    plan = plan_windows(n, window, overlap)
    for f in range(n):
        contrib = frame_contributions(plan, f)
        assert sum(w for _, _, w in contrib) == pytest.approx(1.0, abs=1e-12)
        for k, t, w in contrib:
            assert 0.0 < w <= 1.0
            assert plan[k].start + t == f and 0 <= t < plan[k].stop - plan[k].start


def test_blend_ramps_linearly_across_overlap():
    plan = plan_windows(300, 81, 21)  # windows at 0, 60, 120, 180, 219
    assert frame_contributions(plan, 10) == [(0, 10, 1.0)]
    # overlap of windows 0 and 1: frames 60..80 (21 frames)
    later = [dict((k, w) for k, _, w in frame_contributions(plan, f))[1] for f in range(60, 81)]
    np.testing.assert_allclose(later, np.arange(1, 22) / 22.0)
    np.testing.assert_allclose(np.diff(later), 1.0 / 22.0)
    assert frame_contributions(plan, 81) == [(1, 21, 1.0)]
    # the last, end-aligned window overlaps its predecessor by more (219..260: 42 frames)
    later = [dict((k, w) for k, _, w in frame_contributions(plan, f))[4] for f in range(219, 261)]
    np.testing.assert_allclose(later, np.arange(1, 43) / 43.0)
    with pytest.raises(ValueError):
        frame_contributions(plan, 300)


def test_stitching_identical_windows_reproduces_them_exactly():
    rng = np.random.default_rng(7)
    n = 150
    plan = plan_windows(n, 33, 9)
    shot = rng.random((n, 12, 20)).astype(np.float32)
    preds = {w.index: shot[w.start : w.stop].copy() for w in plan}
    ones, zeros = np.ones(len(plan)), np.zeros(len(plan))
    for f in range(n):
        contrib = frame_contributions(plan, f)
        out = stitch_frame(contrib, preds, ones, zeros)
        assert out.dtype == np.float32 and out.shape == (12, 20)
        np.testing.assert_array_equal(out, shot[f])
        out2 = stitch_frame(contrib, lambda k, t: preds[k][t], ones, zeros)
        np.testing.assert_array_equal(out2, shot[f])


def test_stitch_with_known_affines_reproduces_ground_truth():
    rng = np.random.default_rng(8)
    n = 120
    plan = plan_windows(n, 33, 9)
    gt = rng.uniform(0.2, 0.8, (n, 8, 8))
    a = rng.uniform(0.8, 1.2, len(plan))
    b = rng.uniform(-0.1, 0.1, len(plan))
    preds = {w.index: ((gt[w.start : w.stop] - b[w.index]) / a[w.index]) for w in plan}
    for f in range(n):
        out = stitch_frame(frame_contributions(plan, f), preds, a, b)
        np.testing.assert_allclose(out, gt[f], atol=1e-6)


# ------------------------------------------------------------------------------ normalisation


def test_percentiles_exact_with_few_pixels():
    rng = np.random.default_rng(9)
    frames = [rng.normal(size=(16, 16)) for _ in range(20)]
    acc = PercentileAccumulator()
    for fr in frames:
        acc.add(fr)
    lo, hi = acc.result()
    ref = np.percentile(np.concatenate([f.ravel() for f in frames]).astype(np.float32), [2, 98])
    assert (lo, hi) == (pytest.approx(ref[0], abs=1e-12), pytest.approx(ref[1], abs=1e-12))
    assert isinstance(lo, float) and isinstance(hi, float)


def test_percentiles_close_on_large_shot_and_bounded():
    rng = np.random.default_rng(10)
    frames = [rng.beta(2.0, 5.0, size=(96, 96)) + 0.001 * k for k in range(150)]
    full = np.percentile(np.concatenate([f.ravel() for f in frames]), [2, 98])
    acc = PercentileAccumulator(samples_per_frame=4096)
    small = PercentileAccumulator(samples_per_frame=1024, max_samples=20_000)
    for fr in frames:
        acc.add(fr)
        small.add(fr)
    np.testing.assert_allclose(acc.result(), full, atol=2e-3)
    assert small.n_samples <= 20_000
    np.testing.assert_allclose(small.result(), full, atol=6e-3)
    again = PercentileAccumulator(samples_per_frame=4096)
    for fr in frames:
        again.add(fr)
    assert again.result() == acc.result()  # deterministic


def test_percentiles_ignore_nan_and_need_values():
    acc = PercentileAccumulator(lo=0.0, hi=100.0)
    acc.add(np.array([[np.nan, 1.0], [3.0, np.inf]]))
    acc.add(np.array([2.0, np.nan]))
    assert acc.result() == (1.0, 3.0)
    with pytest.raises(ValueError):
        PercentileAccumulator().result()


def test_normalise_range_and_flat_guard():
    d = np.array([-1.0, 0.0, 0.25, 0.5, 2.0])
    out = normalise(d, 0.0, 0.5)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero
        for lo, hi in [(0.5, 0.5), (0.6, 0.5), (np.nan, 1.0)]:
            flat = normalise(d, lo, hi)
            assert flat.dtype == np.float32 and flat.shape == d.shape
            np.testing.assert_array_equal(flat, 0.5)


def test_depth_from_disparity():
    d = np.linspace(0.0, 1.0, 101)
    z = depth_from_disparity(d, near=2.0, far=50.0)
    assert z.dtype == np.float32
    assert z[0] == pytest.approx(50.0) and z[-1] == pytest.approx(2.0)
    assert np.all(np.diff(z) < 0)  # larger disparity = nearer
    clipped = depth_from_disparity(np.array([1.5, -0.5]), 2.0, 50.0)
    assert clipped.tolist() == pytest.approx([2.0, 50.0])


@pytest.mark.parametrize(
    "near,far", [(0.0, 10.0), (-1.0, 10.0), (10.0, 10.0), (20.0, 10.0), (1.0, float("nan"))]
)
def test_depth_rejects_bad_near_far(near, far):
    with pytest.raises(InputError) as err:
        depth_from_disparity(np.zeros(3), near, far)
    msg = str(err.value)
    assert f"near={near}" in msg and f"far={far}" in msg and "\n" not in msg
