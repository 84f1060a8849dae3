"""Parts of one shot's split render run at the same time: the entry lock is shared by parts,
the manifest is merged under its own lock, the stitch is solved once. (Whole renders of one shot
still wait for each other: tests/test_cache.py.)"""

import threading
from pathlib import Path

import numpy as np

from dvd_vfx.cache import EntryLock, ShotCache
from dvd_vfx.render import RenderOptions, render_shot
from plugin_helpers import make_plate

OPTS = dict(resolution=48, window=5, overlap=2, mode="disparity")
WAIT_S = 60  # generous: a barrier that breaks means the parts ran one after the other


class Luma:
    name = "luma"

    def __init__(self, barrier: threading.Barrier | None = None):
        self.barrier = barrier

    def identity(self):
        return {"predictor": "luma", "model_id": "luma-1", "weights_sha256": "0" * 64}

    def predict(self, frames):
        if self.barrier is not None:
            self.barrier.wait()  # both parts must be predicting at once to get past this
        return (frames.mean(axis=-1) * 0.8 + 0.1).astype(np.float32)


def run_parts(parts):
    """Run each (kwargs) render_shot call in its own thread; re-raise the first failure."""
    errors, threads = [], []

    def target(kwargs):
        try:
            kwargs["result"] = render_shot(**{k: v for k, v in kwargs.items() if k != "result"})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for kwargs in parts:
        threads.append(threading.Thread(target=target, args=(kwargs,)))
        threads[-1].start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]
    return [kwargs["result"] for kwargs in parts]


def test_two_only_windows_parts_of_one_shot_predict_at_the_same_time(tmp_path):
    clip = make_plate(tmp_path / "shot.mp4", 13)
    cache = ShotCache(tmp_path / "cache")
    predictor = Luma(threading.Barrier(2, timeout=WAIT_S))
    results = run_parts([dict(source=clip, options=RenderOptions(out_dir=tmp_path / "o", **OPTS),
                              predictor=predictor, cache=cache, only_windows=(k, k)) for k in (0, 1)])
    assert [r.predictor_calls for r in results] == [1, 1]
    entry = cache.entries()[0]
    assert sorted(entry.manifest["windows"]) == ["0", "1"]  # neither part's window was lost


def test_two_assemble_parts_write_at_the_same_time_and_solve_the_stitch_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    clip = make_plate(tmp_path / "shot.mp4", 13)
    single = render_shot(clip, RenderOptions(out_dir=tmp_path / "single", **OPTS), Luma(),
                         cache=ShotCache(tmp_path / "c1"))
    cache = ShotCache(tmp_path / "c2")
    render_shot(clip, RenderOptions(out_dir=tmp_path / "split", **OPTS), Luma(), cache=cache, only_windows=(0, 3))
    barrier = threading.Barrier(2, timeout=WAIT_S)
    stitch_events = {0: 0, 1: 0}

    def progress_of(part):
        def progress(stage, done, total):
            if stage == "stitch":
                stitch_events[part] += 1
            if stage == "write" and done in (1, 7):  # each part's first frame: wait for the other part
                barrier.wait()
        return progress

    run_parts([dict(source=clip, options=RenderOptions(out_dir=tmp_path / "split", **OPTS), predictor=Luma(),
                    cache=cache, assemble=True, write_frames=frames, progress=progress_of(part))
               for part, frames in enumerate([(1, 6), (7, 13)])])
    assert sorted(stitch_events.values()) == [1, 13]  # one part solved it frame by frame, the other read it
    a = {p.name: p.read_bytes() for p in single.paths}
    b = {p.name: p.read_bytes() for p in sorted(Path(tmp_path / "split").glob("*.exr"))}
    assert len(a) == 13 and a == b


def test_a_part_in_progress_keeps_its_entry_from_eviction(tmp_path):
    cache = ShotCache(tmp_path / "cache")
    entry = cache.open("ab" + "0" * 62, {"shot": "sh010", "plan": [[0, 5, 5]]}, shared=True)
    entry.put(0, np.zeros((5, 16, 16), np.float32))
    other_part = cache.open("ab" + "0" * 62, {"shot": "sh010"}, shared=True)  # parts share the lock
    assert not EntryLock(entry.folder / "lock").acquire(blocking=False)  # a whole render would wait
    summary = cache.entries()[0]
    assert not cache.remove(summary) and entry.folder.is_dir()
    other_part.close()
    entry.close()
    assert cache.remove(summary) and not entry.folder.exists()
