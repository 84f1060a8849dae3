"""Scene-scale depth: a ray-cast scene with known geometry and a moving camera, a predictor that
behaves like DVD (each window 2-98 % normalised on its own, clipped, noisy), anchors taken from the
scene's 3D points through the camera; the anchored pass is as good as the best single affine fit."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import OpenEXR
import pytest

from dvd_vfx import anchors as anchors_mod
from dvd_vfx.cache import ShotCache
from dvd_vfx.engine import Engine
from dvd_vfx.hookspecs import hookimpl
from dvd_vfx.errors import InputError
from dvd_vfx.passes.exr import read_pass_attributes
from dvd_vfx.render import RenderOptions, render_shot
from plugin_helpers import Recorder

W, H, FOCAL, FRAMES, FIRST = 96, 64, 70.0, 24, 1001


def camera(t: int) -> np.ndarray:
    return np.array([0.1 * t / FRAMES, 1.5, 0.2 * t])  # walking forward, drifting right; looks along +z


def rays():
    x, y = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    return np.stack([(x - W / 2) / FOCAL, -(y - H / 2) / FOCAL, np.ones_like(x)], axis=-1)  # z component 1


def depth_of(t: int) -> np.ndarray:
    """Distance along the view axis (a Z pass) to a floor (y=0), a wall (z=25) and a sphere."""
    c, d = camera(t), rays()
    hits = [np.where(d[..., 1] < 0, -c[1] / np.minimum(d[..., 1], -1e-9), np.inf), (25.0 - c[2]) / d[..., 2]]
    centre, radius = np.array([0.4, 1.2, 9.0]), 1.3
    oc = c - centre
    b = (d * oc).sum(-1)
    a = (d * d).sum(-1)
    disc = b * b - a * ((oc * oc).sum() - radius**2)
    hits.append(np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / a, np.inf))
    return np.min(hits, axis=0)  # ray z-component is 1: the ray parameter IS the view-axis depth


def project(point: np.ndarray, t: int) -> tuple[float, float, float]:
    """A 3D point through the pinhole camera of frame t: plate pixel (x, y) and view-axis depth."""
    rel = point - camera(t)
    return W / 2 + FOCAL * rel[0] / rel[2], H / 2 - FOCAL * rel[1] / rel[2], float(rel[2])


class DvdLike:
    """Disparity from the plate (which encodes the truth), then what DVD's output looks like:
    each window normalised to its own 2-98 %, clipped to [0, 1], plus noise."""

    name = "dvdlike"

    def __init__(self):
        self.calls = 0

    def identity(self):
        return {"predictor": self.name, "model_id": "test", "weights_sha256": "0" * 64}

    def predict(self, frames):
        self.calls += 1
        d = frames.mean(axis=-1).astype(np.float64)
        lo, hi = np.percentile(d, [2, 98])
        d = np.clip((d - lo) / (hi - lo), 0, 1)
        rng = np.random.default_rng(int(d.sum() * 1000) % 2**32)
        return (d + rng.normal(0, 0.01, d.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scene")
    truth = {}
    for t in range(FRAMES):
        z = depth_of(t)
        truth[FIRST + t] = z
        rgb = np.repeat((2.0 / z)[..., None], 3, axis=2).astype(np.float32)  # disparity, in [0, 1]
        OpenEXR.File({"type": OpenEXR.scanlineimage},
                     {c: np.ascontiguousarray(rgb[..., i]) for i, c in enumerate("RGB")}).write(
            str(folder / f"plate.{FIRST + t}.exr"))
    return folder / "plate.####.exr", truth


def scene_points(n: int, seed: int) -> list:
    """3D points on the floor, the wall and the sphere that frame t sees: anchors through the camera."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        t = int(rng.integers(FRAMES))
        px, py = rng.uniform(2, W - 2), rng.uniform(2, H - 2)
        z = depth_of(t)[int(py), int(px)]
        # the visible surface point under that pixel's centre, then projected back through the camera
        point = camera(t) + z * np.array([(int(px) + 0.5 - W / 2) / FOCAL, -(int(py) + 0.5 - H / 2) / FOCAL, 1.0])
        x, y, depth = project(point, t)
        out.append((FIRST + t, x, y, depth))
    return out


def write_csv(path, rows, wrong=()):
    lines = ["frame,x,y,depth"] + [f"{f},{x:.4f},{y:.4f},{d * (2.5 if i in wrong else 1):.6f}"
                                   for i, (f, x, y, d) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def render(plate, out, anchors=None, cache=None, predictor=None, **kw):
    options = RenderOptions(out_dir=out, resolution=64, window=9, overlap=4, colorspace="display",
                            anchors=str(anchors) if anchors else None, **kw)
    return render_shot(plate, options, predictor or DvdLike(), cache=cache)


def pass_depth(result):
    return {int(p.name.split(".")[-2]): OpenEXR.File(str(p)).channels()["depth.Z"].pixels for p in result.paths}


def scores(result, truth):
    """AbsRel of the pass and of the best single affine fit of its disparity, on mid-range pixels."""
    z = pass_depth(result)
    true = np.stack([truth[n] for n in sorted(z)])
    got = np.stack([z[n] for n in sorted(z)]).astype(np.float64)
    lo, hi = np.percentile(true, [10, 90])
    mid = (true > lo) & (true < hi)
    A = np.stack([1 / got[mid], np.ones(mid.sum())], axis=1)
    coef, *_ = np.linalg.lstsq(A, 1 / true[mid], rcond=None)
    oracle = 1 / (A @ coef)
    absrel = float(np.mean(np.abs(got[mid] - true[mid]) / true[mid]))
    return absrel, float(np.mean(np.abs(oracle - true[mid]) / true[mid]))


@pytest.mark.parametrize("n, wrong_fraction", [(40, 0.0), (40, 0.1), (10, 0.1)])
def test_anchored_depth_is_as_good_as_the_best_affine_fit(scene, tmp_path, n, wrong_fraction):
    plate, truth = scene
    rows = scene_points(n, seed=n)
    wrong = set(range(0, n, int(round(1 / wrong_fraction)))) if wrong_fraction else set()
    result = render(plate, tmp_path / "out", write_csv(tmp_path / "anchors.csv", rows, wrong))
    absrel, oracle = scores(result, truth)
    assert absrel <= 1.5 * oracle + 0.005, (absrel, oracle)
    # every wrong anchor is left out; right ones only where the pass is clipped (the shot's 2/98 % tails)
    assert wrong <= set(result.anchors["rejectedAnchors"]) and result.anchors["used"] >= n // 2
    header = read_pass_attributes(result.paths[0])
    assert header["anchors"]["used"] == result.anchors["used"] and header["near"] == pytest.approx(result.near)
    assert header["anchors"]["medianRelError"] < 0.05 and "anchorsSha256" in header


def test_json_anchors_and_a_reexport_with_other_anchors_runs_no_model(scene, tmp_path):
    plate, truth = scene
    rows = scene_points(20, seed=3)
    cache = ShotCache(tmp_path / "cache")
    first = render(plate, tmp_path / "a", write_csv(tmp_path / "a.csv", rows), cache=cache)
    (tmp_path / "b.json").write_text(json.dumps([{"frame": f, "x": x, "y": y, "depth": d * 2, "weight": 1}
                                                 for f, x, y, d in rows]))
    counting = DvdLike()
    second = render(plate, tmp_path / "b", tmp_path / "b.json", cache=cache, predictor=counting)
    assert counting.calls == 0 and second.cache == "hit"
    assert second.near == pytest.approx(2 * first.near, rel=1e-6) and second.far == pytest.approx(2 * first.far, rel=1e-6)


def test_errors_name_the_anchors_and_leave_no_output(scene, tmp_path):
    plate, _ = scene
    rows = scene_points(6, seed=5)
    with pytest.raises(InputError, match="2 anchors; at least 3"):
        render(plate, tmp_path / "o1", write_csv(tmp_path / "two.csv", rows[:2]))
    bad = [(999, 10.0, 10.0, 5.0)] + rows
    with pytest.raises(InputError, match=r"#0 \(frame 999\).*outside the shot's 1001-1024"):
        render(plate, tmp_path / "o2", write_csv(tmp_path / "frames.csv", bad))
    off = [(1001, 500.0, 10.0, 5.0)] + rows
    with pytest.raises(InputError, match=r"#0 \(500, 10\) lie outside the 96x64 plate"):
        render(plate, tmp_path / "o3", write_csv(tmp_path / "off.csv", off))
    (tmp_path / "hdr.csv").write_text("f,x,y,z\n1001,1,1,1\n")
    with pytest.raises(InputError, match="missing frame, depth"):
        render(plate, tmp_path / "o4", tmp_path / "hdr.csv")
    with pytest.raises(InputError, match="use --mode depth"):
        render(plate, tmp_path / "o5", write_csv(tmp_path / "ok.csv", rows), mode="disparity")
    # depths that grow with disparity cannot be one scene scale
    swapped = [(f, x, y, 1.0 / d) for f, x, y, d in rows]
    with pytest.raises(InputError, match="near and far swapped|do not fit"):
        render(plate, tmp_path / "o6", write_csv(tmp_path / "swapped.csv", swapped))
    assert not any((tmp_path / f"o{i}").exists() and any((tmp_path / f"o{i}").iterdir()) for i in range(1, 7))


def test_the_fit_ignores_a_few_wrong_anchors():
    rng = np.random.default_rng(0)
    d = rng.uniform(0, 1, 30)
    z = 1 / (0.4 * d + 0.05)
    z[:3] *= 3  # a moving object, a typo
    fit = anchors_mod.fit(d, z)
    assert fit.scale == pytest.approx(0.4, rel=1e-9) and fit.shift == pytest.approx(0.05, rel=1e-9)
    assert fit.rejected == 3 and set(fit.rejected_anchors) == {0, 1, 2}
    assert fit.near == pytest.approx(1 / 0.45) and fit.far == pytest.approx(20.0)


class HostClip:
    """A host's own clip object (a Blender movie clip with a solve, a Nuke node with picked points)."""

    def __init__(self, plate, rows):
        self.plate, self.rows = plate, rows


class SolvePlugin:
    """What a host plugin does: maps its clip to footage and its solve to anchors."""

    def __init__(self, as_file=None):
        self.as_file, self.asked = as_file, []

    @hookimpl
    def dvd_vfx_resolve_footage(self, source):
        return str(source.plate) if isinstance(source, HostClip) else None

    @hookimpl
    def dvd_vfx_resolve_anchors(self, source, job):
        self.asked.append(dict(job.options))
        if not isinstance(source, HostClip):
            return None
        if self.as_file is not None:
            return self.as_file
        return [{"frame": f, "x": x, "y": y, "depth": d} for f, x, y, d in source.rows]


def test_hook_resolve_anchors(scene, tmp_path):
    """A host plugin supplies anchors for its clip: rows stored by content, a re-export runs no model."""
    plate, truth = scene
    rows = scene_points(40, seed=7)
    plugin, recorder = SolvePlugin(), Recorder()
    engine = Engine(plugins=[plugin, recorder], entry_points=False, env=False)
    cache = ShotCache(tmp_path / "cache")
    options = RenderOptions(out_dir=tmp_path / "out", resolution=64, window=9, overlap=4, colorspace="display")
    result = engine.render(HostClip(plate, rows), options, DvdLike(), cache=cache)
    absrel, oracle = scores(result, truth)
    assert absrel <= 1.5 * oracle + 0.005 and result.anchors["used"] >= 20
    stored = Path(result.anchors["file"])
    assert stored.parent == cache.root / "anchors" and stored.is_file()
    assert anchors_mod.read_anchors(stored) == [anchors_mod.Anchor(*row) for row in rows]
    assert plugin.asked[0]["anchors"] is None
    (started,) = recorder.of("job_started")
    assert started["job"]["options"]["anchors"] == str(stored)
    # the same solve again: the same stored file, the same setup id: the pass is re-exported from the cache
    counting = DvdLike()
    again = engine.render(HostClip(plate, rows), options, counting, cache=cache)
    assert counting.calls == 0 and again.anchors["file"] == str(stored) and again.near == pytest.approx(result.near)
    # a plain path source: the plugin passes, the shot renders with near/far as before
    plain = engine.render(plate, dataclasses.replace(options, out_dir=tmp_path / "plain"), DvdLike(), cache=cache)
    assert plain.anchors is None
    # --anchors on the job wins: the hook is not asked; disparity mode does not ask either
    asked = len(plugin.asked)
    engine.render(HostClip(plate, rows), dataclasses.replace(options, out_dir=tmp_path / "given",
                  anchors=str(write_csv(tmp_path / "given.csv", rows))), DvdLike(), cache=cache)
    engine.render(HostClip(plate, rows), dataclasses.replace(options, out_dir=tmp_path / "disp", mode="disparity"),
                  DvdLike(), cache=cache)
    assert len(plugin.asked) == asked


def test_supplied_anchors_are_checked_like_a_file(scene, tmp_path):
    plate, _ = scene
    rows = scene_points(6, seed=9)
    options = RenderOptions(out_dir=tmp_path / "out", resolution=64, window=9, overlap=4, colorspace="display")
    recorder = Recorder()
    bad = [dict(frame=f, x=x, y=y, depth=d) for f, x, y, d in rows[:5]] + [{"frame": 1001, "x": 1, "y": 2}]
    with pytest.raises(InputError, match=r"from dvd_vfx_resolve_anchors item 5: needs numbers"):
        Engine(plugins=[_Returns(bad), recorder], entry_points=False, env=False).render(
            HostClip(plate, rows), options, DvdLike())
    (failed,) = recorder.of("job_failed")
    assert "item 5" in failed["message"] and failed["exit_code"] == 2
    with pytest.raises(InputError, match=r"missing.csv: cannot read it"):
        Engine(plugins=[SolvePlugin(as_file=str(tmp_path / "missing.csv"))], entry_points=False, env=False).render(
            HostClip(plate, rows), options, DvdLike())
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


class _Returns:
    def __init__(self, value):
        self.value = value

    @hookimpl
    def dvd_vfx_resolve_footage(self, source):
        return str(source.plate) if isinstance(source, HostClip) else None

    @hookimpl
    def dvd_vfx_resolve_anchors(self, source, job):
        return self.value
