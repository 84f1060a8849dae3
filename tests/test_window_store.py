"""The window store keeps every predictor's values ("any affine"): per-window offset/scale (uint16) or
float32, while DVD's [0, 1] windows stay float16 byte for byte."""

import io
import json
import logging

import numpy as np
import OpenEXR
import pytest

from plugin_helpers import FAST, make_plate, write_plugin

from dvd_vfx import cache as cache_mod
from dvd_vfx.cache import ShotCache, WindowStore, window_encoding
from dvd_vfx.cli import main

# Brightness as disparity, mapped far outside [0, 1]: metric disparity above float16's 65504,
# and a narrow range far from 0 (float16 steps of 0.5 there) with fine steps.
AFFINE_PLUGIN = '''
    import numpy as np

    from dvd_vfx.hookspecs import hookimpl
    from dvd_vfx.plugins import PredictorFactory


    class Affine:
        def __init__(self, name, offset, scale):
            self.name, self.offset, self.scale = name, offset, scale

        def identity(self):
            return {"predictor": self.name, "model_id": self.name, "weights_sha256": "0" * 64}

        def predict(self, frames):
            return (frames.mean(axis=-1) * self.scale + self.offset).astype(np.float32)


    @hookimpl
    def dvd_vfx_register_predictors():
        return [PredictorFactory("metric", lambda settings: Affine("metric", 1.0e5, 5.0e4), "1e5-1.5e5"),
                PredictorFactory("narrow", lambda settings: Affine("narrow", 1000.0, 10.0), "1000-1010"),
                PredictorFactory("drifting", lambda settings: Drifting(), "another affine in every window")]


    class Drifting(Affine):
        """Each window in its own affine, far from [0, 1]: what the stitch exists to undo."""

        def __init__(self):
            super().__init__("drifting", 1000.0, 10.0)
            self.calls = 0

        def predict(self, frames):
            k, self.calls = self.calls, self.calls + 1
            return (frames.mean(axis=-1) * 10.0 * (1 + 0.3 * k) + 1000.0 + 5.0 * k).astype(np.float32)
'''


def _dvd_like(shape=(5, 32, 48), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(shape, dtype=np.float32)


def _npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_dvd_windows_stay_float16_byte_for_byte(tmp_path):
    pred = _dvd_like()
    pred[0, 0, :2] = [0.0, 1.0]  # the ends of DVD's range are still "as it is"
    store = WindowStore(tmp_path / "w")
    store.put(0, pred)
    assert store.encoding(0) == {"dtype": "float16"}
    assert store.path(0).read_bytes() == _npy_bytes(pred.astype(np.float16))  # what caches held before
    assert store.get(0).dtype == np.float16


@pytest.mark.parametrize("offset, scale", [(1.0e5, 5.0e4), (1000.0, 10.0), (-3.0, 0.5), (7.0, 0.0)])
def test_any_affine_window_keeps_its_values(tmp_path, offset, scale):
    pred = (_dvd_like() * scale + offset).astype(np.float32)
    store = WindowStore(tmp_path / "w")
    store.put(3, pred)
    enc = store.encoding(3)
    assert enc["dtype"] == "uint16" and enc["offset"] == float(pred.min())
    assert store.path(3).stat().st_size == len(_npy_bytes(np.zeros(pred.shape, np.float16)))  # a DVD window's size
    window = store.get(3)
    assert window.shape == pred.shape and np.isfinite(window[1]).all()
    # half a step of 1/65535 of the window's range (plus float32's rounding of the value)
    tol = scale / 131070 * 1.001 + abs(offset) * 2**-24
    assert np.abs(window[1] - pred[1]).max() <= tol
    assert np.abs(window[0:2] - pred[0:2]).max() <= tol
    assert np.abs(np.asarray(window) - pred).max() <= tol


def test_outliers_make_a_window_float32(tmp_path):
    pred = (_dvd_like() * 10 + 1).astype(np.float32)
    pred[0, 0, 0] = 1e6  # one pixel far away: float16 steps over 1e6 would flatten the bulk
    assert window_encoding(pred) == {"dtype": "float32"}
    store = WindowStore(tmp_path / "w")
    store.put(0, pred)
    assert np.array_equal(store.get(0), pred)


def test_nan_and_inf_are_refused_by_the_store(tmp_path):
    pred = _dvd_like()
    pred[1, 2, 3] = np.nan
    store = WindowStore(tmp_path / "w")
    with pytest.raises(ValueError, match="1 of 7680 predicted values are NaN/inf"):
        store.put(0, pred)
    assert list((tmp_path / "w").iterdir()) == []


def test_cache_entry_records_the_encoding_and_reads_it_back(tmp_path):
    cache = ShotCache(tmp_path / "cache")
    pred = (_dvd_like() * 10 + 1000).astype(np.float32)
    entry = cache.open("ab" * 32, {"plan": [[0, 5, 5]]})
    entry.put(0, pred)
    entry.close()
    manifest = json.loads((cache.folder("ab" * 32) / "manifest.json").read_text())
    assert manifest["windows"]["0"]["encoding"] == window_encoding(pred)
    entry = cache.open("ab" * 32, {"plan": [[0, 5, 5]]})
    assert entry.has(0)
    assert np.abs(np.asarray(entry.get(0)) - pred).max() <= 10 / 131070 + 1e-4
    entry.close()


def _legacy_entry(cache, key, pred):
    """An entry as the float16-only store wrote it: float16 as it is, no encoding in the manifest."""
    entry = cache.open(key, {"plan": [[0, 5, 5]]})
    entry.put(0, pred)
    entry.close()
    folder = cache.folder(key)
    data = _npy_bytes(np.asarray(pred, dtype=np.float16))
    (folder / "window.00000.npy").write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    import hashlib

    manifest["windows"]["0"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "seconds": 0.1}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_legacy_windows_are_read_as_float16_or_recomputed_when_they_lost_values(tmp_path, caplog):
    cache = ShotCache(tmp_path / "cache")
    dvd = _dvd_like()
    _legacy_entry(cache, "cd" * 32, dvd)
    entry = cache.open("cd" * 32, {"plan": [[0, 5, 5]]})
    assert entry.has(0)  # a DVD window of an existing cache is used as it is
    assert np.array_equal(entry.get(0), dvd.astype(np.float16))
    entry.close()
    _legacy_entry(cache, "ef" * 32, dvd * 10 + 1000)  # held 0.5-unit steps
    entry = cache.open("ef" * 32, {"plan": [[0, 5, 5]]})
    with caplog.at_level(logging.WARNING, logger="dvd_vfx.cache"):
        assert not entry.has(0)
    entry.close()
    assert "lost values outside 0..1; recomputing it" in caplog.text
    assert not (cache.folder("ef" * 32) / "window.00000.npy").exists()


def _render(tmp_path, predictor, out, *extra):
    plate = make_plate(tmp_path / "plate.mp4", 13)
    with pytest.raises(SystemExit) as exc:
        main(["--plugins-dir", str(tmp_path / "plugins"), "render", str(plate), "-o", str(out),
              "--predictor", predictor, "--mode", "disparity", "--no-clamp", "--cache-dir", str(tmp_path / "cache"),
              *FAST, *map(str, extra)])
    assert exc.value.code == 0
    return {p.name: OpenEXR.File(str(p)).channels()["depth.Z"].pixels for p in sorted(out.glob("*.exr"))}


@pytest.mark.parametrize("predictor", ["metric", "narrow"])
def test_plugin_values_far_outside_0_1_give_the_float32_pass(tmp_path, monkeypatch, predictor):
    """A predictor's windows around 1e5 (float16 inf before) and at 1000-1010 (float16 steps of 0.5
    before) stitch to the pass that float32 windows give, within float16's precision of the range."""
    write_plugin(tmp_path / "plugins", "affine", AFFINE_PLUGIN)
    got = _render(tmp_path, predictor, tmp_path / "stored")
    with monkeypatch.context() as m:
        m.setattr(cache_mod, "window_encoding", lambda pred: {"dtype": "float32"})
        truth = _render(tmp_path, predictor, tmp_path / "truth", "--no-cache")
    assert len(got) == 13 and got.keys() == truth.keys()
    for name in got:
        assert np.isfinite(got[name]).all()
        np.testing.assert_allclose(got[name], truth[name], rtol=0, atol=1e-4, err_msg=name)
    assert _render(tmp_path, predictor, tmp_path / "again").keys() == got.keys()  # from the cache



def test_windows_in_their_own_affine_outside_0_1_are_stitched(tmp_path):
    """The stitch fits overlaps inside each window's own range (not DVD's [0, 1]): a predictor whose
    every window has another scale and shift gives the pass of one consistent affine."""
    write_plugin(tmp_path / "plugins", "affine", AFFINE_PLUGIN)
    drifting = _render(tmp_path, "drifting", tmp_path / "drifting")
    consistent = _render(tmp_path, "narrow", tmp_path / "consistent")
    assert len(drifting) == 13
    for name in drifting:
        np.testing.assert_allclose(drifting[name], consistent[name], rtol=0, atol=2e-3, err_msg=name)
