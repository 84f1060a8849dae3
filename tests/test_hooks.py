"""Every hook: documented in docs/hooks.md, and exercised by a test_hook_<name> here (in process, no torch)."""

from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from plugin_helpers import Recorder, make_plate
from dvd_vfx import hookspecs
from dvd_vfx.render import RenderOptions
from dvd_vfx.errors import Cancelled, InputError
from dvd_vfx.hookspecs import hookimpl
from dvd_vfx.jobs import JobResult, PassInfo
from dvd_vfx.engine import Engine
from dvd_vfx.plugins import PredictorFactory, ReaderInfo, WriterInfo
from dvd_vfx.presets import Preset

ROOT = Path(__file__).resolve().parent.parent
HOOKS = {name: fn for name, fn in vars(hookspecs).items() if name.startswith("dvd_vfx_") and callable(fn)}


def test_every_hook_is_documented_with_its_arguments():
    text = (ROOT / "docs" / "hooks.md").read_text()
    documented = {m.group(1): [a.strip() for a in m.group(2).split(",") if a.strip()]
                  for m in re.finditer(r"^## (dvd_vfx_\w+)\((.*)\)\s*$", text, re.M)}
    assert set(documented) == set(HOOKS)
    for name, fn in HOOKS.items():
        assert documented[name] == list(inspect.signature(fn).parameters), name
        assert fn.__doc__ and fn.__doc__.strip().splitlines()[0].strip(), f"{name}: one-line summary first"


def test_every_hook_has_a_test():
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    missing = [n for n in HOOKS if f"def test_hook_{n.removeprefix('dvd_vfx_')}(" not in sources]
    assert not missing


class Luma:
    name = "luma"

    def __init__(self):
        self.calls = 0

    def identity(self):
        return {"predictor": "luma", "model_id": "luma-1", "weights_sha256": "0" * 64}

    def predict(self, frames):
        if self.calls == 0:
            logging.getLogger("dvd_vfx.luma").warning("luma is brightness, not depth")
        self.calls += 1
        return (frames.mean(axis=-1) * 0.8 + 0.1).astype(np.float32)


class LumaPlugin:
    @hookimpl
    def dvd_vfx_register_predictors(self):
        return [PredictorFactory("luma", lambda settings: Luma(), "brightness")]


def options(out, **kw):
    return RenderOptions(out_dir=out, resolution=48, window=5, overlap=2, **kw)


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    return make_plate(tmp_path_factory.mktemp("media") / "plate.mp4", 11)


@pytest.fixture(scope="module")
def rendered(plate, tmp_path_factory):
    """One in-process render with every job hook recorded."""
    recorder = Recorder()
    engine = Engine(plugins=[LumaPlugin(), recorder], entry_points=False, env=False)
    out = tmp_path_factory.mktemp("out")
    result = engine.render(plate, options(out), "luma", job_id="j1")
    return recorder, result, out


def test_hook_register_predictors(plate, tmp_path):
    engine = Engine(plugins=[LumaPlugin()], entry_points=False, env=False)
    assert list(engine.predictors()) == ["luma", "dvd"]
    assert isinstance(engine.make_predictor("luma"), Luma)
    result = engine.render(plate, options(tmp_path), "luma")
    assert result.predictor_calls == result.windows == 3


def test_hook_register_readers():
    from dvd_vfx.default_plugins.footage import SEQUENCE_EXTENSIONS
    from dvd_vfx.footage.sequence import IMAGE_EXTS

    class Raw:
        @hookimpl
        def dvd_vfx_register_readers(self):
            return [ReaderInfo("r3d", ("r3d",), "RED raw via a proxy")]

    readers = Engine(plugins=[Raw()], entry_points=False, env=False).readers()
    assert [r.name for r in readers] == ["r3d", "video", "sequence"]
    assert set(SEQUENCE_EXTENSIONS) == set(IMAGE_EXTS)  # what is listed is what the engine reads


def test_hook_register_writers(rendered):
    recorder, result, out = rendered
    (writer,) = Engine(entry_points=False, env=False).writers()
    assert isinstance(writer, WriterInfo) and "depth.Z" in writer.channels
    expected = writer.pattern.format(shot=result.shot).replace("####", "{:04d}")
    assert sorted(p.name for p in out.iterdir()) == [expected.format(n) for n in range(1, 12)]


def test_hook_register_presets(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    toml = tmp_path / "dailies.toml"
    toml.write_text('description = "dailies"\nresolution = 256\nwindow = 17\noverlap = 4\n')

    class Studio:
        @hookimpl
        def dvd_vfx_register_presets(self):
            return [toml, Preset("preview", {"resolution": 160}, "studio preview", "studio plugin")]

    presets = Engine(plugins=[Studio()], entry_points=False, env=False).presets()
    assert presets["dailies"].values == {"resolution": 256, "window": 17, "overlap": 4}
    assert presets["preview"].values == {"resolution": 160}  # the plugin replaced the shipped one
    assert presets["standard"].values["window"] == 81  # shipped ones stay

    class Broken:
        @hookimpl
        def dvd_vfx_register_presets(self):
            return [Preset("bad", {"window": 8})]

    with pytest.raises(InputError, match="window = 8 is not 4n\\+1"):
        Engine(plugins=[Broken()], entry_points=False, env=False).presets()


def test_hook_resolve_footage(plate, tmp_path):
    class Clip:  # a host's own object, e.g. bpy.types.MovieClip
        def __init__(self, filepath):
            self.filepath = filepath

    class Host:
        @hookimpl
        def dvd_vfx_resolve_footage(self, source):
            return source.filepath if isinstance(source, Clip) else None

    recorder = Recorder()
    engine = Engine(plugins=[LumaPlugin(), Host(), recorder], entry_points=False, env=False)
    result = engine.render(Clip(str(plate)), options(tmp_path), "luma")
    assert result.frame_count == 11 and recorder.of("job_started")[0]["job"]["source"] == str(plate)
    with pytest.raises(InputError, match="no plugin can read footage of type object"):
        Engine(entry_points=False, env=False).resolve_footage(object())


def test_hook_job_started(rendered):
    recorder, _, out = rendered
    assert recorder.names()[0] == "job_started" and recorder.names().count("job_started") == 1
    job = recorder.of("job_started")[0]["job"]
    assert job["id"] == "j1" and job["predictor"] == "luma" and job["out_dir"] == str(out)
    assert job["options"]["window"] == 5 and job["shot"] is None


def test_hook_job_progress(rendered):
    recorder, result, _ = rendered
    progress = [(a["stage"], a["done"], a["total"]) for a in recorder.of("job_progress")]
    stages = [s for s, _, _ in progress]
    assert stages == sorted(stages, key=["predict", "stitch", "write"].index)
    assert [p for p in progress if p[0] == "predict"] == [("predict", i, 3) for i in range(4)]
    assert progress[-1] == ("write", 11, 11)


def test_hook_job_log(rendered):
    recorder, _, _ = rendered
    assert {"job": "j1", "level": "warning", "message": "luma is brightness, not depth"} in recorder.of("job_log")


def test_hook_pass_written(rendered):
    recorder, result, _ = rendered
    passes = [a["pass_info"] for a in recorder.of("pass_written")]
    assert [p["frame"] for p in passes] == list(range(1, 12))
    assert all(Path(p["path"]).is_file() and p["shot"] == "plate" and p["kind"] == "depth" for p in passes)
    assert PassInfo.from_path("/o/sh.depth.-005.exr", "sh").frame == -5
    # every file is committed before the first pass_written
    assert recorder.names().index("pass_written") > max(i for i, n in enumerate(recorder.names()) if n == "job_progress")


def test_hook_job_finished(rendered):
    recorder, result, out = rendered
    assert recorder.names()[-1] == "job_finished"
    finished = recorder.of("job_finished")[0]["result"]
    assert finished["pattern"] == str(out / "plate.depth.####.exr") == result.pattern
    assert (finished["first_frame"], finished["last_frame"], finished["frame_count"]) == (1, 11, 11)
    assert JobResult.from_dict(finished) == JobResult.from_render(result)  # JSON round trip is lossless


def test_hook_job_failed(plate, tmp_path):
    recorder = Recorder()
    engine = Engine(plugins=[LumaPlugin(), recorder], entry_points=False, env=False)
    with pytest.raises(InputError, match="4n\\+1"):
        engine.render(plate, RenderOptions(out_dir=tmp_path / "o", resolution=48, window=6, overlap=2), "luma")
    assert recorder.names() == ["job_started", "job_failed"]
    assert recorder.of("job_failed")[0]["type"] == "InputError" and recorder.of("job_failed")[0]["exit_code"] == 2
    with pytest.raises(InputError, match="unknown predictor 'nope'; registered: dvd, luma"):
        engine.render(plate, options(tmp_path / "o"), "nope")
    assert recorder.names()[-1] == "job_failed"


def test_hook_should_cancel(plate, tmp_path):
    recorder = Recorder(cancel_when=lambda r: any(a["stage"] == "predict" and a["done"] >= 1
                                                  for a in r.of("job_progress")))
    engine = Engine(plugins=[LumaPlugin(), recorder], entry_points=False, env=False)
    with pytest.raises(Cancelled):
        engine.render(plate, options(tmp_path / "o"), "luma")
    assert recorder.names()[-1] == "job_failed" and recorder.of("job_failed")[0]["exit_code"] == 130
    assert not any(recorder.names().count(n) for n in ("pass_written", "job_finished"))
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
    # job.cancel() from another thread does the same without a plugin
    recorder2 = Recorder()

    class CancelOnStart:
        @hookimpl
        def dvd_vfx_job_started(self, job):
            job.cancel()

    engine = Engine(plugins=[LumaPlugin(), recorder2, CancelOnStart()], entry_points=False, env=False)
    with pytest.raises(Cancelled):
        engine.render(plate, options(tmp_path / "o2"), "luma")
