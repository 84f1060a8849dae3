"""dvd_vfx.train.evaluate and `dvd-vfx eval`: the protocol's numbers, the real engine, the report."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dvd_vfx.cli import main
from dvd_vfx.train.dataset import ClipSpec
from dvd_vfx.train.evaluate import Moments, score_clip
from footage_helpers import write_exr, write_exr_rgb
from plugin_helpers import make_plate, write_plugin

W, H = 64, 48
FAST = ["--resolution", "48", "--window", "5", "--overlap", "2", "--no-cache"]
NEAR_D, FAR_D = 1.0, 20.0  # depth of the near (bottom) and far (top) plateaus

# Predictors that see the ground truth: the synthetic plates carry the GT disparity, mapped to
# 0.1..0.9, in their red channel (display-referred EXR, so the engine passes it through).
GT_PLUGIN = '''
    import numpy as np

    from dvd_vfx.hookspecs import hookimpl
    from dvd_vfx.plugins import PredictorFactory


    class GtAffine:
        """The ground truth under a new random affine in every window (the stitch must undo them)."""
        name = "gt_affine"

        def __init__(self):
            self.rng = np.random.default_rng(7)
            self.used = []

        def identity(self):
            return {"predictor": "gt_affine", "model_id": "gt-affine-1", "weights_sha256": "0" * 64}

        def predict(self, frames):
            a = self.rng.uniform(0.5, 1.0)
            b = self.rng.uniform(0.05 - 0.1 * a, 0.95 - 0.9 * a)
            self.used.append((a, b))
            return (a * frames[..., 0] + b).astype(np.float32)


    class GtDepth:
        """A classic mistake: depth-like output (larger = farther) instead of disparity."""
        name = "gt_depth"

        def identity(self):
            return {"predictor": "gt_depth", "model_id": "gt-depth-1", "weights_sha256": "1" * 64}

        def predict(self, frames):
            u = np.clip(frames[..., 0], 0.1, 0.9)
            return ((1 / u - 1 / 0.9) / (10 - 1 / 0.9) * 0.9 + 0.05).astype(np.float32)


    @hookimpl
    def dvd_vfx_register_predictors():
        return [PredictorFactory("gt_affine", lambda settings: GtAffine(), "GT under random affines (tests)"),
                PredictorFactory("gt_depth", lambda settings: GtDepth(), "GT as depth (tests)")]
'''


def gt_disparity(t: int) -> np.ndarray:
    """GT disparity of frame t: far plateau on top, near plateau at the bottom (>2% each, so the
    shot percentiles sit on them), a moving pattern in between."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    lo, hi = 1 / FAR_D, 1 / NEAR_D
    middle = 0.5 + 0.35 * np.sin(xx / 9.0 + t / 2.5) * np.cos(yy / 7.0 - t / 4.0)
    g = lo + (hi - lo) * middle
    g[: H // 5] = lo
    g[-H // 5:] = hi
    return g


def make_gt_clip(folder: Path, frames: int, first: int = 1001) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lo, hi = 1 / FAR_D, 1 / NEAR_D
    for t in range(frames):
        g = gt_disparity(t)
        u = 0.1 + 0.8 * (g - lo) / (hi - lo)
        depth = (1 / g).astype(np.float32)
        depth[25, 3:6] = [0.0, np.inf, np.nan]  # invalid GT pixels are masked out
        write_exr_rgb(folder / f"rgb.{first + t:04d}.exr", np.repeat(u[..., None], 3, axis=2).astype(np.float32))
        write_exr(folder / f"depth.{first + t:04d}.exr", {"ViewLayer.Depth.Z": depth})
    return folder


def gt_dataset(tmp_path: Path) -> Path:
    make_gt_clip(tmp_path / "sh010", 13)
    make_gt_clip(tmp_path / "sh020", 7, first=1)
    make_gt_clip(tmp_path / "still", 1)
    ds = tmp_path / "gt.toml"
    ds.write_text(textwrap.dedent("""
        [[source]]
        name = "shots"
        weight = 0.8
        colorspace = "display"
        folders = "sh0*"
        frames = "rgb.####.exr"
        depth = "depth.####.exr"

        [[source]]
        name = "stills"
        kind = "image"
        weight = 0.2
        colorspace = "display"
        clips = [ { name = "one", frames = "still/rgb.####.exr", depth = "still/depth.####.exr" } ]
    """))
    return ds


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([*map(str, argv)])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.fixture
def gt_plugins(tmp_path):
    folder = tmp_path / "plugins"
    write_plugin(folder, f"gt_predictors_{tmp_path.name[-12:].replace('-', '_')}", GT_PLUGIN)
    return folder


def test_ground_truth_under_random_affines_scores_zero(tmp_path, capsys, gt_plugins, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    ds = gt_dataset(tmp_path)
    report = tmp_path / "report.json"
    code, out, err = run_cli(capsys, "--plugins-dir", gt_plugins, "eval", "--data", ds, "--predictor", "gt_affine",
                             *FAST, "--report", report)
    assert code == 0, err
    data = json.loads(report.read_text())
    assert data["schema"] == "dvd-vfx.eval/1" and data["predictor"] == "gt_affine"
    assert data["model"]["model_id"] == "gt-affine-1"
    assert [c["name"] for c in data["clips"]] == ["shots/sh010", "shots/sh020", "stills/one"]
    assert [c["frames"] for c in data["clips"]] == [13, 7, 1]
    for c in data["clips"]:
        assert c["abs_rel"] < 1e-3, c  # ~2.5e-4: the engine keeps raw window predictions as float16
        assert c["delta1"] == 1.0
        assert c["valid_pixels"] == c["frames"] * (W * H - 3)
        assert c["gt_size"] == [W, H]
    long = data["clips"][0]
    assert abs(long["drift"]) < 1e-3 and long["scale_range"] < 1.002
    assert len(long["frame_scales"]) == 13 and all(abs(r - 1) < 2e-3 for r in long["frame_scales"])
    assert data["clips"][2]["drift"] is None  # one frame: no drift
    assert data["summary"]["clips"] == 3 and data["summary"]["frames"] == 21 and data["summary"]["abs_rel"] < 1e-3
    assert set(data["sources"]) == {"shots", "stills"} and data["sources"]["shots"]["clips"] == 2
    assert data["settings"]["window"] == 5 and data["settings"]["overlap"] == 2
    # the table: one row per clip + per-source means + the overall mean
    assert "shots/sh010" in out and "mean shots (2 clips)" in out and "mean (3 clips)" in out
    assert f"report: {report}" in out
    # no work folder left behind without -o
    assert not list((tmp_path / "tmp").glob("dvd-vfx-eval-*"))


def test_depth_instead_of_disparity_scores_badly(tmp_path, capsys, gt_plugins, caplog):
    make_gt_clip(tmp_path / "sh", 9)
    ds = tmp_path / "d.toml"
    ds.write_text('[[source]]\nname = "s"\ncolorspace = "display"\n'
                  'clips = [ { frames = "sh/rgb.####.exr", depth = "sh/depth.####.exr" } ]\n')
    work = tmp_path / "work"
    code, out, err = run_cli(capsys, "--plugins-dir", gt_plugins, "eval", "--data", ds, "--predictor", "gt_depth",
                             *FAST, "-o", work)
    assert code == 0, err
    data = json.loads((work / "eval.json").read_text())  # default report path with -o
    (clip,) = data["clips"]
    assert clip["abs_rel"] > 0.15 and clip["delta1"] < 0.6  # measured 0.219 and 0.490
    assert clip["scale"] < 0  # anti-correlated, and said so
    assert "anti-correlated" in err or "anti-correlated" in caplog.text
    # -o keeps the rendered passes
    assert len(list(work.rglob("*.depth.*.exr"))) == 9


def test_tiny_model_end_to_end_report(tmp_path, capsys, caplog, tiny_weights_master):
    clip = tmp_path / "mv"
    make_plate(clip / "plate.mp4", frames=6)
    for i in range(6):
        yy = np.mgrid[0:H, 0:W][0].astype(np.float32)
        write_exr(clip / f"depth.{i + 1:04d}.exr", {"depth.Z": 2.0 + yy / H * 8 + i * 0.1})
    ds = tmp_path / "d.toml"
    ds.write_text('[[source]]\nname = "plates"\nclips = [ { name = "mv", frames = "mv/plate.mp4", '
                  'depth = "mv/depth.####.exr" } ]\n')
    code, out, err = run_cli(capsys, "eval", "--data", ds, "--weights", tiny_weights_master, "--device", "cpu",
                             *FAST, "-o", tmp_path / "work", "--report", tmp_path / "r.json")
    assert code == 0, err
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["predictor"] == "dvd" and len(data["model"]["weights_sha256"]) == 64
    assert data["settings"]["resolution"] == 48 and data["settings"]["weights"] == str(tiny_weights_master)
    (c,) = data["clips"]
    assert c["name"] == "plates/mv" and c["frames"] == 6 and c["valid_pixels"] == 6 * W * H
    assert math.isfinite(c["abs_rel"]) and c["abs_rel"] >= 0 and 0 <= c["delta1"] <= 1
    assert c["working_size"] == [64, 48] and Path(c["pass"]).parent.is_dir()
    assert data["summary"]["abs_rel"] == c["abs_rel"]
    assert "plates/mv" in out and "AbsRel" in out and "tiny/custom test model" in err + caplog.text


def test_bad_dataset_is_one_line_exit_2(tmp_path, capsys, gt_plugins):
    ds = tmp_path / "bad.toml"
    ds.write_text('[[source]]\nname = "s"\nweight = -1\nclips = []\n')
    code, out, err = run_cli(capsys, "eval", "--data", ds)
    assert code == 2 and "Traceback" not in err
    assert err.strip().count("\n") == 0 and str(ds) in err and "weight = -1" in err
    code, out, err = run_cli(capsys, "eval", "--data", tmp_path / "none.toml")
    assert code == 2 and "dataset file not found" in err
    make_gt_clip(tmp_path / "sh", 2)
    ds.write_text('[[source]]\nname = "s"\nclips = [ { frames = "sh/rgb.####.exr", depth = "sh/depth.####.exr" } ]\n')
    code, out, err = run_cli(capsys, "--plugins-dir", gt_plugins, "eval", "--data", ds, "--predictor", "gt_affine",
                             *FAST, "--source", "nope", "--report", tmp_path / "r.json")
    assert code == 2 and "--source 'nope' is not in" in err and "its sources are s" in err


# ---------------------------------------------------------------------------------------------
# the protocol's numbers, without the engine


def clip_of(tmp_path: Path, depths: np.ndarray) -> ClipSpec:
    folder = tmp_path / "gt"
    folder.mkdir()
    for t, z in enumerate(depths):
        write_exr_rgb(folder / f"rgb.{t + 1:04d}.exr", np.zeros((*z.shape, 3), np.float32))
        write_exr(folder / f"depth.{t + 1:04d}.exr", {"Z": z.astype(np.float32)})
    return ClipSpec("c", str(folder / "rgb.####.exr"), str(folder / "depth.####.exr"), "video")


def test_score_clip_matches_an_independent_computation(tmp_path):
    rng = np.random.default_rng(0)
    depths = rng.uniform(1.0, 10.0, size=(4, 6, 8)).astype(np.float32).astype(np.float64)  # as stored
    depths[1, 2, 3] = 0.0  # invalid
    clip = clip_of(tmp_path, depths)
    preds = rng.uniform(0.0, 1.0, size=depths.shape).astype(np.float32)
    calls = []

    def prediction(t):
        calls.append(t)
        return preds[t]

    m = score_clip(clip, prediction, source="src")
    assert calls == [0, 1, 2, 3, 0, 1, 2, 3]  # two streaming passes, one frame at a time
    valid = depths > 0
    g = 1 / depths[valid]
    p = preds[valid].astype(np.float64)
    s, b = np.polyfit(p, g, 1)
    disp = np.maximum(s * p + b, 1 / depths[valid].max())
    d = 1 / disp
    assert m.scale == pytest.approx(s, rel=1e-9) and m.shift == pytest.approx(b, rel=1e-9, abs=1e-12)
    assert m.abs_rel == pytest.approx(np.mean(np.abs(d - depths[valid]) / depths[valid]), rel=1e-9)
    assert m.delta1 == pytest.approx(np.mean(np.maximum(d / depths[valid], depths[valid] / d) < 1.25))
    assert m.valid_pixels == valid.sum() == 4 * 48 - 1 and m.frames == 4 and m.source == "src"


def test_score_clip_exact_affine_and_scale_drift(tmp_path):
    yy, xx = np.mgrid[0:6, 0:8]
    depths = np.stack([1.0 + xx + yy + t for t in range(10)]).astype(np.float64)
    clip = clip_of(tmp_path, depths)
    g = 1 / depths
    exact = score_clip(clip, lambda t: (3.0 * g[t] - 0.2).astype(np.float32))
    assert exact.abs_rel < 1e-6 and exact.delta1 == 1.0
    assert exact.scale == pytest.approx(1 / 3, rel=1e-5) and exact.drift == pytest.approx(0, abs=1e-5)
    # prediction scale grows 10% along the shot: frame scale s_t = 1/k_t
    k = 1 + 0.1 * np.arange(10) / 9
    drifting = score_clip(clip, lambda t: (k[t] * g[t]).astype(np.float32))
    assert drifting.drift == pytest.approx(1 / 1.1 - 1, rel=1e-4)
    assert drifting.scale_range == pytest.approx(1.1, rel=1e-4)
    r = np.array(drifting.frame_scales)
    assert r[0] / r[-1] == pytest.approx(1.1, rel=1e-4) and drifting.abs_rel > 0.005


def test_streamed_moments_equal_one_big_fit():
    rng = np.random.default_rng(1)
    p = rng.normal(size=10_000) * 0.1 + 0.5
    g = 2.5 * p + 0.3 + rng.normal(size=p.size) * 1e-3
    merged = Moments()
    for chunk in np.array_split(np.arange(p.size), 7):
        merged = merged.merge(Moments.of(p[chunk], g[chunk]))
    s, b = merged.fit()
    ref_s, ref_b = np.polyfit(p, g, 1)
    assert s == pytest.approx(ref_s, rel=1e-10) and b == pytest.approx(ref_b, rel=1e-10)
    assert math.isnan(Moments.of(np.ones(5), np.arange(5.0)).fit()[0])
