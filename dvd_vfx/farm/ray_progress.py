"""`dvd-vfx farm ray`: one shot's progress, summed over its tasks' events.

A shot's parts (window chunks, the stitch, frame chunks) run at once and each reports its own
render's progress; ShotProgress turns that into one job's stages, as a local render reports them:
predict (windows done of the shot's), stitch (frames), write (frames written of the pass). A
retried part starts counting again; a window task counts only the windows it predicts (not those
cached before it started); a finished part counts in full. The stages only move forward.
"""

from __future__ import annotations

from dataclasses import dataclass

STAGES = ("predict", "stitch", "write")

@dataclass
class _Count:
    kind: str  # windows | stitch | assemble
    size: int  # windows or frames in the chunk
    done: int = 0  # windows predicted / frames written by the current attempt
    stitch: int = 0  # frames stitched by the current attempt
    base: int | None = None  # the first "predict" count of the attempt (windows cached before it)
    final: int | None = None  # finished: the windows or frames the part made


class ShotProgress:
    """Each method returns the (stage, done, total) to report through dvd_vfx_job_progress, or None
    when the shot's progress did not move."""

    def __init__(self, n_windows: int = 0):
        self.n_windows = n_windows
        self.frames_total = 0  # frames of the pass (known once a part stitches or writes)
        self.last: tuple[str, int, int] | None = None
        self._parts: dict[str, _Count] = {}

    def add(self, part: str, kind: str, size: int) -> None:
        self._parts[part] = _Count(kind, size)

    def start(self) -> tuple[str, int, int] | None:
        return self._report("predict", 0, self.n_windows)

    def restart(self, part: str) -> None:
        """A new attempt of `part`: its counters start again."""
        c = self._parts[part]
        c.done, c.stitch, c.base = 0, 0, None

    def event(self, part: str, stage: str, done: int, total: int) -> tuple[str, int, int] | None:
        """A progress event of `part`'s render."""
        c = self._parts[part]
        if stage == "predict":
            c.base = done if c.base is None else c.base
            c.done = min(c.size, done - c.base)
            return self._report("predict", self._windows_done(), self.n_windows)
        if c.kind == "stitch" and stage != "stitch":
            return None  # the stitch task's one written frame is thrown away
        if stage == "stitch":
            c.stitch = done
            self.frames_total = total
            return self._report("stitch", max(p.stitch for p in self._parts.values()), total)
        if stage == "write":
            c.done += 1
            self.frames_total = total
            return self._report("write", self._frames_done(), total)
        return None

    def finished(self, part: str, frames: int | None = None) -> tuple[str, int, int] | None:
        """`part` is done; an assemble part wrote `frames` (default: its chunk's size)."""
        c = self._parts[part]
        c.final = c.size if frames is None else frames
        if c.kind == "windows":
            return self._report("predict", self._windows_done(), self.n_windows)
        if c.kind == "stitch":
            return None
        done = self._frames_done()
        return self._report("write", done, self.frames_total or done)

    def _windows_done(self) -> int:
        return sum(c.done if c.final is None else c.size for c in self._parts.values() if c.kind == "windows")

    def _frames_done(self) -> int:
        return sum(c.done if c.final is None else c.final for c in self._parts.values() if c.kind == "assemble")

    def _report(self, stage: str, done: int, total: int) -> tuple[str, int, int] | None:
        rank = STAGES.index(stage) if stage in STAGES else len(STAGES)
        last = STAGES.index(self.last[0]) if self.last else 0
        if rank < last or (stage, done, total) == self.last:
            return None
        self.last = (stage, done, total)
        return self.last
