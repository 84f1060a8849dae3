"""The CPU thread count a prediction ran with: pinned by `--threads N`, recorded with each window.

Why it matters: torch splits a CPU convolution or matrix product across its intra-op threads,
and float sums in another order round differently. The same window predicted with 1 and with 2
threads differs by ~2e-6, which after the shot's normalisation can move a depth value by a
float16 step of the window store. So two renders are byte-identical when they are assembled
from the same cached windows, or when their windows were predicted on the same device class
with the same thread count; a farm task that runs with `OMP_NUM_THREADS=1` and a desktop render
with 16 threads are not. `--threads` makes the count explicit, the cache's window entries and
the pass header (`dvd/threads`) record it.

torch is never imported here: a predictor that does not use torch has no count to pin.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from dvd_vfx.errors import InputError


def check(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise InputError(f"--threads {threads}: need at least 1 CPU thread (or leave it out for torch's default)")


def current() -> int | None:
    """torch's intra-op thread count in this process, or None when torch is not loaded."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


@contextlib.contextmanager
def pinned(threads: int | None) -> Iterator[int | None]:
    """Run the block with torch's intra-op threads set to `threads` (None: leave as is); yields
    the count in effect. The previous count is restored afterwards (hosts share the process)."""
    check(threads)
    torch = sys.modules.get("torch")
    if threads is None or torch is None:
        yield current()
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def describe(counts) -> str | None:
    """'2', or '1,2' when windows were predicted with different counts; None when none is known."""
    known = sorted({int(c) for c in counts if c is not None})
    return ",".join(str(c) for c in known) or None
