"""`dvd-vfx eval --anchors`: the anchored depth's AbsRel in scene units beside the affine-fitted
numbers, on test_eval's ground-truth clips (the plate carries the GT disparity)."""

import json

import numpy as np
import pytest

from dvd_vfx.engine import Engine
from dvd_vfx.render import RenderOptions
from dvd_vfx.train.dataset import load_dataset
from dvd_vfx.train.evaluate import evaluate
from test_eval import FAST, H, W, gt_plugins, make_gt_clip, run_cli  # noqa: F401


def gt_anchors(folder, path, n=30, frames=9, first=1001, scale=1.0, seed=0):
    """Anchors at pixel centres with the GT depth there (avoiding the GT's invalid pixels)."""
    import OpenEXR

    rng = np.random.default_rng(seed)
    rows = ["frame,x,y,depth"]
    for _ in range(n):
        t = int(rng.integers(frames))
        z = OpenEXR.File(str(folder / f"depth.{first + t:04d}.exr")).channels()["ViewLayer.Depth.Z"].pixels
        while True:
            i, j = int(rng.integers(W)), int(rng.integers(H))
            if np.isfinite(z[j, i]) and z[j, i] > 0:
                break
        rows.append(f"{first + t},{i + 0.5},{j + 0.5},{scale * float(z[j, i])!r}")
    path.write_text("\n".join(rows) + "\n")
    return path


def two_clip_dataset(tmp_path):
    make_gt_clip(tmp_path / "a", 9)
    make_gt_clip(tmp_path / "b", 9)
    ds = tmp_path / "d.toml"
    ds.write_text('[[source]]\nname = "s"\ncolorspace = "display"\nclips = [\n'
                  '  { name = "a", frames = "a/rgb.####.exr", depth = "a/depth.####.exr" },\n'
                  '  { name = "b", frames = "b/rgb.####.exr", depth = "b/depth.####.exr" },\n]\n')
    return ds


def test_eval_reports_anchored_abs_rel_in_scene_units(tmp_path, capsys, gt_plugins, monkeypatch):  # noqa: F811
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    ds = two_clip_dataset(tmp_path)
    good = gt_anchors(tmp_path / "a", tmp_path / "good.csv")
    doubled = gt_anchors(tmp_path / "b", tmp_path / "doubled.csv", scale=2.0)  # a solve in other units
    report = tmp_path / "r.json"
    code, out, err = run_cli(capsys, "--plugins-dir", gt_plugins, "eval", "--data", ds, "--predictor", "gt_affine",
                             *FAST, "--report", report, "--anchors", f"s/a={good}", "--anchors", f"s/b={doubled}")
    assert code == 0, err
    data = json.loads(report.read_text())
    a, b = data["clips"]
    # the affine-fitted numbers are those of an eval without anchors; the anchored ones are in units
    assert a["abs_rel"] < 1e-3 and b["abs_rel"] < 1e-3
    assert a["anchored_abs_rel"] < 0.01 and a["anchored_delta1"] == 1.0  # measured ~0.002 (float16 store)
    assert b["anchored_abs_rel"] == pytest.approx(1.0, abs=0.02) and b["anchored_delta1"] == 0.0  # twice as far
    assert a["anchors"]["used"] == 30 and a["anchors"]["rejected"] == 0 and a["anchors"]["file"] == str(good)
    assert data["summary"]["anchored_clips"] == 2
    assert data["summary"]["anchored_abs_rel"] == pytest.approx((a["anchored_abs_rel"] + b["anchored_abs_rel"]) / 2)
    assert data["settings"]["anchors"] == {"s/a": str(good), "s/b": str(doubled)}
    head = out.splitlines()[0]
    assert "anchored AbsRel" in head and "anchored delta1" in head
    row = next(line for line in out.splitlines() if line.startswith("s/b"))
    assert row.split()[-2] == f"{b['anchored_abs_rel']:.4f}"
    # --no-cache: a temporary cache served the two renders of each clip and is gone; no work folder left
    assert not list((tmp_path / "tmp").iterdir())


class CountingGt:
    """The GT disparity (the plate's red channel) under one affine; counts model calls."""

    name = "counting_gt"

    def __init__(self):
        self.calls = 0

    def identity(self):
        return {"predictor": self.name, "model_id": "counting-gt", "weights_sha256": "2" * 64}

    def predict(self, frames):
        self.calls += 1
        return (0.8 * frames[..., 0] + 0.1).astype(np.float32)


def test_the_anchored_render_runs_no_model_call(tmp_path):
    make_gt_clip(tmp_path / "a", 9)
    ds = tmp_path / "d.toml"
    ds.write_text('[[source]]\nname = "s"\ncolorspace = "display"\n'
                  'clips = [ { name = "a", frames = "a/rgb.####.exr", depth = "a/depth.####.exr" } ]\n')
    anchors = gt_anchors(tmp_path / "a", tmp_path / "a.csv")
    options = RenderOptions(out_dir=tmp_path, resolution=48, window=5, overlap=2)
    plain, anchored = CountingGt(), CountingGt()
    evaluate(load_dataset(ds), plain, options, engine=Engine(), work_dir=tmp_path / "w1")
    report = evaluate(load_dataset(ds), anchored, options, engine=Engine(), work_dir=tmp_path / "w2",
                      anchors={"s/a": str(anchors)})
    assert plain.calls == anchored.calls == 3  # 9 frames in windows of 5 overlapping by 2
    (clip,) = report.clips
    assert clip.anchored_abs_rel < 0.01 and clip.anchors["used"] == 30
    assert len(list((tmp_path / "w2").rglob("*_anchored/*.depth.*.exr"))) == 9


def test_anchor_flag_errors(tmp_path, capsys, gt_plugins):  # noqa: F811
    ds = two_clip_dataset(tmp_path)
    good = gt_anchors(tmp_path / "a", tmp_path / "good.csv")
    base = ["--plugins-dir", gt_plugins, "eval", "--data", ds, "--predictor", "gt_affine", *FAST,
            "--report", tmp_path / "r.json"]
    code, _, err = run_cli(capsys, *base, "--anchors", good)
    assert code == 2 and "name the clip, --anchors CLIP=FILE" in err and "s/a, s/b" in err
    code, _, err = run_cli(capsys, *base, "--anchors", f"s/a={tmp_path / 'none.csv'}")
    assert code == 2 and "none.csv not found" in err
    # one clip evaluated (--source or a one-clip dataset): a bare FILE is enough; wrong frames are named
    (tmp_path / "late.csv").write_text("frame,x,y,depth\n2001,1,1,5\n1001,2,2,5\n1002,3,3,6\n")
    code, _, err = run_cli(capsys, *base, "--anchors", f"s/a={tmp_path / 'late.csv'}")
    assert code == 2 and "#0 (frame 2001)" in err and "outside the shot's 1001-1009" in err
    assert not (tmp_path / "r.json").exists()
