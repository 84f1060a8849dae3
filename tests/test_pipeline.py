"""The host/model overlap (dvd_vfx.pipeline, render.OVERLAP): the same bytes, bounded memory,
errors, cancel, progress and warnings as the inline render. No torch."""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref

import numpy as np
import pytest
from footage_helpers import write_exr_rgb, write_exr_sequence
from plugin_helpers import Recorder

from dvd_vfx import render as render_mod
from dvd_vfx.cache import ShotCache
from dvd_vfx.engine import Engine
from dvd_vfx.errors import Cancelled, PredictionError
from dvd_vfx.pipeline import BackgroundWriter, Prefetcher
from dvd_vfx.render import RenderOptions, render_shot


# -- the helpers -------------------------------------------------------------------------------

def test_prefetcher_keeps_order_and_at_most_depth_plus_one_items_alive():
    alive, peak = [0], [0]

    def items():
        for i in range(20):
            alive[0] += 1
            peak[0] = max(peak[0], alive[0])
            yield i

    got = []
    p = Prefetcher(items(), depth=1)
    for i in p:
        time.sleep(0.002)  # the consumer is the slow side: the helper runs ahead as far as allowed
        got.append(i)
        alive[0] -= 1
        p.release()
    p.close()
    assert got == list(range(20)) and peak[0] == 2


def test_prefetcher_raises_the_helpers_error_on_the_consumer_thread_and_replays_its_warnings():
    boom = OSError("frame 3 unreadable")
    threads_seen = []

    class Catch(logging.Handler):
        def emit(self, record):
            threads_seen.append((record.getMessage(), record.thread))

    def items():
        yield 0
        logging.getLogger("dvd_vfx.footage.sequence").warning("frame 2 held")
        yield 1
        raise boom

    handler = Catch(level=logging.WARNING)
    logging.getLogger("dvd_vfx").addHandler(handler)
    try:
        p = Prefetcher(items(), depth=1)
        got = []
        with pytest.raises(OSError) as exc:
            for i in p:
                got.append(i)
                p.release()
        p.close()
    finally:
        logging.getLogger("dvd_vfx").removeHandler(handler)
    assert exc.value is boom and got == [0, 1]
    assert threads_seen == [("frame 2 held", threading.get_ident())]  # once, from the consumer's thread


def test_prefetcher_close_stops_the_helper_early():
    made = []

    def items():
        for i in range(1000):
            made.append(i)
            yield i

    p = Prefetcher(items(), depth=1)
    next(p)
    p.close()
    assert len(made) <= 3


def test_background_writer_runs_in_order_and_raises_a_failed_call_once():
    done = []

    def write(k):
        if k == 2:
            raise OSError("disk full")
        time.sleep(0.001)
        done.append(k)

    w = BackgroundWriter(write, depth=1)
    with pytest.raises(OSError, match="disk full"):
        for k in range(10):
            w.submit(k)
        w.close()
    w.close()  # already raised: closing again is quiet
    assert done == [0, 1]  # nothing after the failed call ran

    ok = BackgroundWriter(done.append, depth=1)
    for k in range(5):
        ok.submit(k)
    ok.close()
    assert done == [0, 1, 0, 1, 2, 3, 4]


# -- renders: overlapped == inline ----------------------------------------------------------------

class Affine:
    """Luminance under a fixed affine per window; sleeps like a GPU."""

    name = "affine-test"

    def __init__(self, sleep=0.0, nan_window=None):
        self.calls, self.sleep, self.nan_window = 0, sleep, nan_window

    def identity(self):
        return {"predictor": self.name, "model_id": "test", "weights_sha256": "0" * 64}

    def predict(self, frames):
        k = self.calls
        self.calls += 1
        time.sleep(self.sleep)
        out = ((frames.mean(axis=-1) * (0.6 + 0.05 * k) + 0.01 * k) * 0.7 + 0.1).astype(np.float32)
        if k == self.nan_window:
            out[0, 0, 0] = np.nan
        return out


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    return write_exr_sequence(tmp_path_factory.mktemp("plate"), count=23, size=(48, 32))


def _render(plate, out, *, overlap, monkeypatch, cache=None, **kw):
    monkeypatch.setattr(render_mod, "OVERLAP", overlap)
    events = []
    result = render_shot(plate, RenderOptions(out_dir=out, resolution=32, window=5, overlap=2), Affine(**kw),
                         cache=cache, progress=lambda *e: events.append(e))
    return result, events


def test_overlapped_render_writes_the_same_bytes_and_progress_as_inline(plate, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a, ev_a = _render(plate, tmp_path / "a", overlap=False, monkeypatch=monkeypatch, cache=ShotCache(tmp_path / "ca"))
    b, ev_b = _render(plate, tmp_path / "b", overlap=True, monkeypatch=monkeypatch, cache=ShotCache(tmp_path / "cb"))
    assert a.windows == b.windows == 7 and b.predictor_calls == 7
    assert [p.read_bytes() for p in a.paths] == [p.read_bytes() for p in b.paths]
    assert ev_a == ev_b
    assert [e for e in ev_b if e[0] == "predict"] == [("predict", i, 7) for i in range(8)]
    wa = sorted((tmp_path / "ca").rglob("window.*.npy"))
    wb = sorted((tmp_path / "cb").rglob("window.*.npy"))
    assert len(wa) == 7 and [p.read_bytes() for p in wa] == [p.read_bytes() for p in wb]


def test_overlapped_cancel_keeps_every_window_predicted_before_it(plate, tmp_path, monkeypatch):
    monkeypatch.setattr(render_mod, "OVERLAP", True)
    predictor = Affine(sleep=0.01)
    events = []
    with pytest.raises(Cancelled):
        render_shot(plate, RenderOptions(out_dir=tmp_path / "o", resolution=32, window=5, overlap=2), predictor,
                    cache=ShotCache(tmp_path / "c"), should_cancel=lambda: predictor.calls >= 3,
                    progress=lambda *e: events.append(e))
    assert predictor.calls == 3 and events[-1] == ("predict", 3, 7)
    assert len(list((tmp_path / "c").rglob("window.*.npy"))) == 3  # what progress reported is stored
    assert not (tmp_path / "o").exists()
    # the resumed render predicts only the rest
    result, _ = _render(plate, tmp_path / "o", overlap=True, monkeypatch=monkeypatch, cache=ShotCache(tmp_path / "c"))
    assert result.cache == "partial" and result.predictor_calls == 4


def test_overlapped_prediction_error_names_the_window_and_keeps_the_earlier_ones(plate, tmp_path, monkeypatch):
    with pytest.raises(PredictionError, match="window 4 "):
        _render(plate, tmp_path / "o", overlap=True, monkeypatch=monkeypatch, cache=ShotCache(tmp_path / "c"),
                nan_window=4)
    assert len(list((tmp_path / "c").rglob("window.*.npy"))) == 4 and not (tmp_path / "o").exists()


def test_warnings_of_the_prefetch_thread_reach_the_jobs_log_hook(tmp_path, monkeypatch):
    """A plate's bad pixels, found while the next window is decoded on the helper thread, still
    arrive as dvd_vfx_job_log on the job's thread."""
    monkeypatch.setattr(render_mod, "OVERLAP", True)
    plate = write_exr_sequence(tmp_path / "plate", count=13, size=(48, 32))
    rgb = np.full((32, 48, 3), 0.5, np.float16)
    rgb[3, 4] = np.nan
    write_exr_rgb(tmp_path / "plate" / "plate.1011.exr", rgb)  # frame 11 of 13: decoded ahead of time
    recorder = Recorder()
    engine = Engine(plugins=[recorder], entry_points=False, env=False)
    engine.render(plate, RenderOptions(out_dir=tmp_path / "o", resolution=32, window=5, overlap=2), Affine(),
                  job_id="j")
    logs = [a["message"] for a in recorder.of("job_log")]
    assert any("1011" in m and "NaN" in m for m in logs), logs
    assert len(recorder.threads) == 1  # every hook on the job's thread


# -- predictors with stage(): the next window readied on the prefetch thread ----------------------

class Ready:
    """What Staging.stage returns: the window's frames with the thread that made them."""

    def __init__(self, frames, thread):
        self.frames, self.thread = frames.copy(), thread
        self.shape = frames.shape


class Staging(Affine):
    """Affine with the optional stage(): predict takes what stage returned (docs/hooks.md)."""

    def __init__(self, fail_stage_at=None, **kw):
        super().__init__(**kw)
        self.staged, self.stage_threads, self.predict_threads, self.fail_stage_at = [], [], [], fail_stage_at

    def stage(self, frames):
        if len(self.staged) == self.fail_stage_at:
            raise OSError("staging window failed")
        ready = Ready(frames, threading.current_thread().name)
        self.staged.append(weakref.ref(ready))
        self.stage_threads.append(ready.thread)
        return ready

    def predict(self, frames):
        assert isinstance(frames, Ready), type(frames)
        self.predict_threads.append(threading.current_thread().name)
        return super().predict(frames.frames)


@pytest.mark.parametrize("overlap", [True, False])
def test_staging_writes_the_same_bytes_and_runs_on_the_prefetch_thread(plate, tmp_path, monkeypatch, overlap):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.setattr(render_mod, "OVERLAP", overlap)
    runs = {}
    for name, predictor in (("plain", Affine()), ("staged", Staging())):
        events = []
        result = render_shot(plate, RenderOptions(out_dir=tmp_path / name, resolution=32, window=5, overlap=2),
                             predictor, cache=ShotCache(tmp_path / f"c-{name}"), progress=lambda *e: events.append(e))
        windows = sorted((tmp_path / f"c-{name}").rglob("window.*.npy"))
        runs[name] = ([p.read_bytes() for p in result.paths], [p.read_bytes() for p in windows], events)
    assert runs["plain"] == runs["staged"] and len(runs["staged"][1]) == 7
    render_thread = threading.current_thread().name
    assert len(predictor.stage_threads) == 7 and predictor.predict_threads == [render_thread] * 7
    if overlap:  # staged by the prefetch thread, never by the render's own
        assert set(predictor.stage_threads) == {"dvd-vfx-prefetch"}
    else:
        assert set(predictor.stage_threads) == {render_thread}


def test_staging_only_the_windows_a_resumed_render_predicts(plate, tmp_path, monkeypatch):
    monkeypatch.setattr(render_mod, "OVERLAP", True)
    cache = ShotCache(tmp_path / "c")
    with pytest.raises(Cancelled):
        first = Staging()
        render_shot(plate, RenderOptions(out_dir=tmp_path / "o", resolution=32, window=5, overlap=2), first,
                    cache=cache, should_cancel=lambda: first.calls >= 3)
    again = Staging()
    result = render_shot(plate, RenderOptions(out_dir=tmp_path / "o", resolution=32, window=5, overlap=2), again,
                         cache=cache)
    assert result.cache == "partial" and again.calls == 4 and len(again.staged) == 4  # cached windows: not staged


def test_cancelled_staged_render_keeps_its_windows_and_leaks_no_staged_window(plate, tmp_path, monkeypatch):
    monkeypatch.setattr(render_mod, "OVERLAP", True)
    predictor = Staging(sleep=0.01)
    events = []
    with pytest.raises(Cancelled) as caught:
        render_shot(plate, RenderOptions(out_dir=tmp_path / "o", resolution=32, window=5, overlap=2), predictor,
                    cache=ShotCache(tmp_path / "c"), should_cancel=lambda: predictor.calls >= 3,
                    progress=lambda *e: events.append(e))
    assert predictor.calls == 3 and events[-1] == ("predict", 3, 7)
    assert len(list((tmp_path / "c").rglob("window.*.npy"))) == 3 and not (tmp_path / "o").exists()
    # the window staged for the 4th call (and one prefetched after it) is freed, though the caller
    # still holds the exception and its traceback (a job's error kept by a host)
    gc.collect()
    assert caught.value is not None and len(predictor.staged) >= 4
    assert [ref() for ref in predictor.staged] == [None] * len(predictor.staged)


def test_a_failing_stage_is_raised_on_the_render_thread_after_the_windows_before_it(plate, tmp_path, monkeypatch):
    monkeypatch.setattr(render_mod, "OVERLAP", True)
    predictor = Staging(fail_stage_at=4)
    with pytest.raises(OSError, match="staging window failed"):
        render_shot(plate, RenderOptions(out_dir=tmp_path / "o", resolution=32, window=5, overlap=2), predictor,
                    cache=ShotCache(tmp_path / "c"))
    assert predictor.calls == 4 and len(list((tmp_path / "c").rglob("window.*.npy"))) == 4
    assert not (tmp_path / "o").exists()


def test_stage_is_left_uncalled_when_switched_off(plate, tmp_path, monkeypatch):
    monkeypatch.setattr(render_mod, "STAGE", False)

    class StageOnly(Affine):
        def stage(self, frames):
            raise AssertionError("stage called with render.STAGE = False")

    result = render_shot(plate, RenderOptions(out_dir=tmp_path / "o", resolution=32, window=5, overlap=2), StageOnly())
    assert result.predictor_calls == 7
