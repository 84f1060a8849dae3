"""Cache benchmark: fresh render vs re-export from the cache, and cache size per 100 frames at 480p.

    python benchmarks/bench_cache.py

Timing uses the tiny official-format model (CPU) on a 48-frame 256x144 clip at working short
side 128, window 9 / overlap 4; the re-export changes near/far and mode (same cache key).
The size part uses an instant predictor (size does not depend on the model) on a 100-frame
854x480 clip at the default 480p / window 81 / overlap 21.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import InstantPredictor, make_clip  # noqa: E402

from dvd_vfx.cache import ShotCache  # noqa: E402
from dvd_vfx.render import RenderOptions, render_shot  # noqa: E402


def main() -> None:
    from dvd_vfx.model.predictor import DVDPredictor
    from dvd_vfx.model.tiny import write_tiny_weights

    work = Path(tempfile.mkdtemp(prefix="dvd-bench-cache-"))
    write_tiny_weights(work / "tiny")
    predictor = DVDPredictor(str(work / "tiny"), device="cpu")
    clip = make_clip(work / "clip48.mp4", 48, size="256x144")
    fresh, reexport = [], []
    for run in range(3):
        cache = ShotCache(work / f"cache{run}")
        opts = dict(resolution=128, window=9, overlap=4)
        t0 = time.perf_counter()
        a = render_shot(clip, RenderOptions(out_dir=work / f"a{run}", mode="depth", near=1, far=50, **opts),
                        predictor, cache=cache)
        fresh.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = render_shot(clip, RenderOptions(out_dir=work / f"b{run}", mode="disparity", **opts), predictor, cache=cache)
        reexport.append(time.perf_counter() - t0)
        assert a.cache == "miss" and b.cache == "hit" and b.predictor_calls == 0
    f, r = statistics.median(fresh), statistics.median(reexport)
    print(json.dumps({"fresh_s": [round(x, 2) for x in fresh], "reexport_s": [round(x, 3) for x in reexport],
                      "median_fresh_s": round(f, 2), "median_reexport_s": round(r, 3), "ratio": round(f / r, 1)}))

    clip100 = make_clip(work / "clip100.mp4", 100, size="854x480")
    cache = ShotCache(work / "cache480")
    res = render_shot(clip100, RenderOptions(out_dir=work / "c"), InstantPredictor(), cache=cache)
    entry = cache.entries()[0]
    print(json.dumps({"frames": res.frame_count, "working_size": res.working_size, "windows": res.windows,
                      "cache_mb": round(entry.size / 1e6, 1),
                      "cache_mb_per_100_frames": round(entry.size / 1e6 * 100 / res.frame_count, 1)}))


if __name__ == "__main__":
    main()
