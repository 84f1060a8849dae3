"""Window plan and working resolution (dvd_vfx.windows)."""

from __future__ import annotations

import pytest

from dvd_vfx.errors import InputError
from dvd_vfx.windows import Window, overlap_pairs, plan_windows, working_size

# ------------------------------------------------------------------------------ plan_windows


@pytest.mark.parametrize("window", [0, 2, 4, 80, 82, -3])
def test_window_must_be_4n_plus_1(window):
    with pytest.raises(InputError) as err:
        plan_windows(200, window=window, overlap=0)
    msg = str(err.value)
    assert f"window={window}" in msg and "4n+1" in msg
    assert "\n" not in msg
    assert err.value.exit_code == 2


@pytest.mark.parametrize("overlap", [81, 100, -1])
def test_overlap_must_be_smaller_than_window(overlap):
    with pytest.raises(InputError) as err:
        plan_windows(200, window=81, overlap=overlap)
    assert f"overlap={overlap}" in str(err.value)


@pytest.mark.parametrize("n", [0, -5])
def test_shot_needs_frames(n):
    with pytest.raises(InputError, match=f"n_frames={n}"):
        plan_windows(n)


def test_non_integer_arguments_are_input_errors():
    with pytest.raises(InputError, match="window=81.0"):
        plan_windows(100, window=81.0)
    with pytest.raises(InputError, match="n_frames"):
        plan_windows("100")


def _check_plan(plan: list[Window], n: int, window: int, overlap: int) -> None:
    covered = [0] * n
    for k, w in enumerate(plan):
        assert w.index == k
        assert (w.length - 1) % 4 == 0
        assert w.length >= w.stop - w.start >= 1
        assert w.pad == w.length - (w.stop - w.start)
        for f in range(w.start, w.stop):
            covered[f] += 1
    assert all(c >= 1 for c in covered), "every frame is covered"
    assert plan[0].start == 0
    assert plan[-1].stop == n, "the last window ends at the last frame"
    for prev, cur in zip(plan, plan[1:]):
        assert cur.start > prev.start and cur.stop > prev.stop, "no window inside the previous"
        assert prev.stop - cur.start >= overlap, "consecutive windows share >= overlap frames"
    if n > window:
        assert all(w.length == window and w.pad == 0 for w in plan), "full windows, no padding"
        step = window - overlap
        assert [w.start for w in plan[:-1]] == [k * step for k in range(len(plan) - 1)]


@pytest.mark.parametrize(
    "n,window,overlap",
    [
        (1, 81, 21),
        (50, 81, 21),
        (81, 81, 21),
        (82, 81, 21),
        (141, 81, 21),
        (142, 81, 21),
        (200, 81, 21),
        (1000, 81, 21),
        (10007, 81, 21),
        (97, 17, 0),
        (100, 17, 12),
        (64, 1, 0),
        (30, 5, 4),
    ],
)
def test_plan_covers_every_frame_and_ends_at_n(n, window, overlap):
    _check_plan(plan_windows(n, window, overlap), n, window, overlap)


def test_last_window_is_aligned_to_the_end_not_padded():
    plan = plan_windows(200, 81, 21)
    assert [(w.start, w.stop, w.length) for w in plan] == [
        (0, 81, 81),
        (60, 141, 81),
        (119, 200, 81),
    ]
    # a shot that is exactly two steps long needs no extra window
    assert [(w.start, w.stop) for w in plan_windows(141, 81, 21)] == [(0, 81), (60, 141)]


def test_short_shot_is_padded_to_4n_plus_1():
    (w,) = plan_windows(50, 81, 21)
    assert (w.start, w.stop, w.length, w.pad) == (0, 50, 53, 3)
    (w,) = plan_windows(81, 81, 21)
    assert (w.length, w.pad) == (81, 0)
    (w,) = plan_windows(2, 81, 21)
    assert (w.length, w.pad) == (5, 3)


def test_single_frame_shot():
    assert plan_windows(1) == [Window(index=0, start=0, stop=1, length=1)]
    assert plan_windows(1)[0].pad == 0


def test_overlap_pairs_consecutive_and_beyond():
    plan = plan_windows(200, 81, 21)
    assert overlap_pairs(plan) == [(0, 1, 60, 81), (1, 2, 119, 141)]
    # overlap > window/2: windows two apart share frames as well
    plan = plan_windows(40, 17, 12)
    pairs = overlap_pairs(plan)
    assert (0, 1, 5, 17) in pairs and (0, 2, 10, 17) in pairs
    for i, j, lo, hi in pairs:
        assert i < j
        assert lo == max(plan[i].start, plan[j].start) and hi == min(plan[i].stop, plan[j].stop)
    expected = {
        (i, j)
        for j in range(len(plan))
        for i in range(j)
        if min(plan[i].stop, plan[j].stop) > max(plan[i].start, plan[j].start)
    }
    assert {(i, j) for i, j, _, _ in pairs} == expected
    assert overlap_pairs(plan_windows(10, 81, 21)) == []


# ------------------------------------------------------------------------------ working_size


def test_hd_plate_gets_480_short_side():
    assert working_size(1920, 1080) == (848, 480)
    assert working_size(1080, 1920) == (480, 848)
    assert working_size(1920, 1080, short_side=720) == (1280, 720)


@pytest.mark.parametrize(
    "w,h",
    [(1920, 1080), (4096, 2160), (2048, 858), (1280, 720), (3840, 1600), (720, 1280), (999, 1001)],
)
def test_multiples_of_16_and_aspect_kept(w, h):
    ww, hh = working_size(w, h)
    assert ww % 16 == 0 and hh % 16 == 0
    assert min(ww, hh) == 480
    assert abs((ww / hh) / (w / h) - 1.0) < 0.02


def test_small_plates_are_not_upscaled():
    assert working_size(320, 240) == (320, 240)
    assert working_size(17, 9) == (32, 16)
    assert working_size(8, 8) == (16, 16)
    assert working_size(1, 1) == (16, 16)
    ww, hh = working_size(300, 200)
    assert ww % 16 == 0 and hh % 16 == 0
    assert hh <= 208 and ww <= 320  # only the rounding to 16 may grow it


def test_short_side_rounds_to_nearest_16():
    assert working_size(1000, 1000, short_side=500) == (496, 496)
    assert working_size(1000, 1000, short_side=504) == (512, 512)
    assert working_size(1000, 1000, short_side=16) == (16, 16)


@pytest.mark.parametrize("args", [(0, 1080), (1920, -1), (1920, 1080, 8), (1920, 1080, 0)])
def test_working_size_rejects_bad_input(args):
    with pytest.raises(InputError) as err:
        working_size(*args)
    assert "\n" not in str(err.value)
