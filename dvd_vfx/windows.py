"""Window plan and working resolution for the video depth model.

Pure Python (stdlib only): which frames each model window sees and at which resolution the
model runs. The model takes ``T = 4n + 1`` frames whose height and width are multiples of 16.

Terms used here and in :mod:`dvd_vfx.stitch`:

- a *window* is one forward pass of the model over consecutive shot frames
  ``[start, stop)``; ``length`` is the number of frames fed to the model (always ``4n + 1``).
  When the shot is shorter than one window the window is *padded* by repeating the last real
  frame; padded frames are never used for output.
- an *overlap* is the run of real frames two windows share; the stitcher relates the two
  windows' predictions there.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from dvd_vfx.errors import InputError

__all__ = ["Window", "working_size", "plan_windows", "overlap_pairs"]

_MULTIPLE = 16


def _as_int(value, name: str) -> int:
    """``value`` as a Python int (bool and floats refused), else InputError naming it."""
    if isinstance(value, bool):
        raise InputError(f"{name}={value!r} is not an integer: pass a whole number")
    try:
        return operator.index(value)
    except TypeError:
        raise InputError(f"{name}={value!r} is not an integer: pass a whole number") from None


def _round16(value: float) -> int:
    """Nearest multiple of 16 (halves round up), at least 16."""
    return max(_MULTIPLE, int(math.floor(value / _MULTIPLE + 0.5)) * _MULTIPLE)


def working_size(width: int, height: int, short_side: int = 480) -> tuple[int, int]:
    """The model's working resolution ``(w, h)`` for a plate of ``width x height``.

    - both sides are multiples of 16 (at least 16);
    - the short side is ``short_side`` rounded to the nearest multiple of 16, except that a
      plate whose short side is already smaller is not upscaled: its own short side is rounded
      to the nearest multiple of 16 instead (so a 320x240 plate stays 320x240, a 17x9 plate
      becomes 32x16 — only the growth needed to reach a multiple of 16);
    - the long side follows the plate's aspect ratio from the *rounded* short side, then is
      rounded to the nearest multiple of 16, so the aspect error is at most 8 px on the long
      side (1920x1080 -> 848x480, 0.6 % off).

    Portrait plates are handled symmetrically (1080x1920 -> 480x848).
    """
    w = _as_int(width, "width")
    h = _as_int(height, "height")
    s = _as_int(short_side, "short_side")
    if w <= 0 or h <= 0:
        raise InputError(f"plate size {w}x{h} is not valid: width and height must be positive")
    if s < _MULTIPLE:
        raise InputError(
            f"short_side={s} is too small: use at least {_MULTIPLE} (a multiple of 16, e.g. 480)"
        )
    short, long_ = (w, h) if w <= h else (h, w)
    short_out = _round16(min(s, short))
    long_out = _round16(short_out * long_ / short)
    return (short_out, long_out) if w <= h else (long_out, short_out)


@dataclass(frozen=True)
class Window:
    """One model window over shot frames ``[start, stop)``.

    ``length`` is the number of frames fed to the model (``4n + 1``, ``>= stop - start``);
    the ``pad`` extra frames repeat the last real frame and are discarded after prediction.
    """

    index: int
    start: int
    stop: int
    length: int

    @property
    def n_real(self) -> int:
        """Number of real shot frames in this window."""
        return self.stop - self.start

    @property
    def pad(self) -> int:
        """Number of padding frames (repeats of the last real frame) after the real ones."""
        return self.length - (self.stop - self.start)


def plan_windows(n_frames: int, window: int = 81, overlap: int = 21) -> list[Window]:
    """Split a shot of ``n_frames`` into model windows of ``window`` frames.

    ``window`` must be ``4n + 1`` and ``0 <= overlap < window``. Windows start at
    ``0, step, 2*step, ...`` with ``step = window - overlap``, as long as a full window fits
    before the end of the shot. The **last window is aligned to end exactly at the last
    frame** (``start = n_frames - window``) instead of being padded past the end: it then
    overlaps its predecessor by ``overlap`` frames or more, so every window of a shot longer
    than one window is full of real frames — more real temporal context for the model and more
    shared frames for the stitcher, instead of repeated (frozen) padding frames that the model
    would otherwise see as a still camera.

    Only a shot shorter than one window is padded: it gets a single window whose length is the
    smallest ``4n + 1 >= n_frames`` (a one-frame shot -> one window of length 1). No window is
    ever fully contained in the previous one. Every frame is covered; consecutive windows share
    at least ``overlap`` frames (``overlap > window / 2`` also makes non-consecutive windows
    overlap; see :func:`overlap_pairs`).
    """
    n = _as_int(n_frames, "n_frames")
    win = _as_int(window, "window")
    ov = _as_int(overlap, "overlap")
    if n < 1:
        raise InputError(f"n_frames={n} is not valid: a shot needs at least one frame")
    if win < 1 or (win - 1) % 4 != 0:
        raise InputError(f"window={win} is not 4n+1 frames: use e.g. 81, 49, 33 or 17")
    if not 0 <= ov < win:
        raise InputError(
            f"overlap={ov} is not valid for window={win}: use 0 <= overlap < window, e.g. 21"
        )

    if n <= win:
        length = 4 * ((n - 1 + 3) // 4) + 1  # smallest 4k+1 >= n
        return [Window(index=0, start=0, stop=n, length=length)]

    step = win - ov
    starts = []
    start = 0
    while start + win < n:
        starts.append(start)
        start += step
    # The last window ends at the last frame. The loop guarantees it starts after the previous
    # one (so it is not contained in it) and no later than previous + step (overlap kept).
    starts.append(n - win)
    return [Window(index=k, start=s, stop=s + win, length=win) for k, s in enumerate(starts)]


def overlap_pairs(plan: list[Window]) -> list[tuple[int, int, int, int]]:
    """Every pair of windows sharing real frames: ``(i, j, start, stop)`` with ``i < j``.

    ``[start, stop)`` are the shared shot frames. Ordered by ``j`` then ``i``, so a streaming
    engine meets each pair as soon as its later window is predicted. With ``overlap <= window/2``
    only consecutive windows overlap; larger overlaps also pair windows further apart.
    """
    pairs = []
    for j, wj in enumerate(plan):
        earlier = []
        for i in range(j - 1, -1, -1):
            wi = plan[i]
            lo, hi = max(wi.start, wj.start), min(wi.stop, wj.stop)
            if hi <= lo:
                break  # starts and stops are increasing: earlier windows end even sooner
            earlier.append((i, j, lo, hi))
        pairs.extend(reversed(earlier))
    return pairs
