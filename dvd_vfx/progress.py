"""One progress bar over the engine's stages, as every host shows it (standard library only:
Nuke's and Blender's Pythons import it, without pluggy)."""

from __future__ import annotations

#: (start, end) of each engine stage on a job's one progress bar: predicting windows is most of the
#: time, stitching and writing frames the rest. A stage the bar does not know spans all of it.
STAGE_SPANS = {"predict": (0.0, 0.8), "stitch": (0.8, 0.9), "write": (0.9, 1.0)}


def progress_fraction(stage: str, done: int, total: int) -> float:
    """A job's progress in 0..1 from one ``dvd_vfx_job_progress`` call (predict 0-0.8, stitch 0.8-0.9,
    write 0.9-1): ``done`` is held in 0..total, and a stage with nothing to count (total 0) is at its start.

    The Blender add-on cannot import dvd_vfx and keeps a copy (plugins/blender/utils/shot.py
    ``progress_fraction``); tests check that both give the same numbers.
    """
    lo, hi = STAGE_SPANS.get(stage, (0.0, 1.0))
    return lo + (hi - lo) * (min(max(done, 0), total) / total if total > 0 else 0.0)
