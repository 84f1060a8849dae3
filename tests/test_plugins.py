"""Loading plugins (plugins dir, $DVD_VFX_PLUGINS_DIR, entry points), overriding defaults, failures, tracing."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import subprocess
import sys

import pytest

from plugin_helpers import FAST, LUMA_PLUGIN, Recorder, make_plate, write_plugin
from dvd_vfx.cli import main
from dvd_vfx.render import RenderOptions
from dvd_vfx.errors import PluginError
from dvd_vfx.hookspecs import hookimpl
from dvd_vfx.passes.exr import read_pass_attributes
from dvd_vfx.engine import Engine
from dvd_vfx.plugins import PredictorFactory


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    return make_plate(tmp_path_factory.mktemp("media") / "plate.mp4", 7)


def cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def test_plugins_dir_predictor_is_used_by_the_cli(plate, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    path = write_plugin(plugins, "luma", LUMA_PLUGIN)
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, "--plugins-dir", plugins, "render", plate, "-o", out, "--predictor", "luma",
                            *FAST)
    assert code == 0, err
    files = sorted(out.glob("plate.depth.*.exr"))
    assert len(files) == 7
    attrs = read_pass_attributes(files[0])
    assert attrs["predictor"] == "luma" and attrs["modelId"] == "luma-1"

    code, stdout, _ = cli(capsys, "--plugins-dir", plugins, "plugins")
    assert code == 0 and str(path) in stdout and "[plugins dir]" in stdout and "luma (brightness" in stdout
    code, stdout, _ = cli(capsys, "--plugins-dir", plugins, "plugins", "--json")
    listing = json.loads(stdout)
    assert {"name": "luma", "description": "brightness as depth (tests)"} in listing["predictors"]
    assert any(p["location"] == str(path) and p["hooks"] == ["dvd_vfx_register_predictors"]
               for p in listing["plugins"])


def test_unknown_predictor_names_the_registered_ones(plate, tmp_path, capsys):
    code, _, err = cli(capsys, "render", plate, "-o", tmp_path / "out", "--predictor", "nope", *FAST)
    assert code == 2 and "unknown predictor 'nope'; registered: dvd" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_env_plugins_dir(tmp_path, monkeypatch):
    write_plugin(tmp_path / "a", "luma", LUMA_PLUGIN)
    monkeypatch.setenv("DVD_VFX_PLUGINS_DIR", str(tmp_path / "a"))
    assert "luma" in Engine(entry_points=False).predictors()
    assert "luma" not in Engine(entry_points=False, env=False).predictors()


def test_third_party_plugin_overrides_the_default_predictor(plate, tmp_path, capsys):
    # a plugin that registers "dvd" wins over the built-in trylast factory: no weights needed
    write_plugin(tmp_path / "plugins", "mydvd", LUMA_PLUGIN.replace('PredictorFactory("luma"', 'PredictorFactory("dvd"'))
    engine = Engine(plugins_dirs=[tmp_path / "plugins"], entry_points=False, env=False)
    assert type(engine.make_predictor("dvd")).__name__ == "Luma"
    code, _, err = cli(capsys, "--plugins-dir", tmp_path / "plugins", "render", plate, "-o", tmp_path / "out", *FAST,
                       "--weights", tmp_path / "no-weights-here")
    assert code == 0, err
    # blocking the third-party plugin brings the built-in one back
    engine.unregister(str(tmp_path / "plugins" / "mydvd.py"))
    assert engine.predictors()["dvd"].description.startswith("DVD video depth")


def test_broken_plugin_module_is_skipped_with_a_warning(tmp_path, caplog):
    plugins = tmp_path / "plugins"
    broken = write_plugin(plugins, "broken", "import no_such_module_for_dvd\n")
    typo = write_plugin(plugins, "typo", """
        from dvd_vfx.hookspecs import hookimpl

        @hookimpl
        def dvd_vfx_job_finsihed(job, result):
            pass

        def dvd_vfx_job_started(job):
            pass
    """)
    write_plugin(plugins, "luma", LUMA_PLUGIN)
    with caplog.at_level(logging.WARNING, logger="dvd_vfx"):
        engine = Engine(plugins_dirs=[plugins, tmp_path / "missing"], entry_points=False, env=False)
    text = caplog.text
    assert f"plugin {broken} failed to import: ModuleNotFoundError: No module named 'no_such_module_for_dvd'" in text
    assert "dvd_vfx_job_finsihed is not a dvd-vfx hook" in text
    assert f"plugin {typo}: dvd_vfx_job_started is not marked @hookimpl" in text
    assert "missing does not exist" in text
    assert "luma" in engine.predictors()  # the good one still loads


def test_raising_hook_fails_the_job_naming_the_plugin(plate, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    path = write_plugin(plugins, "boom", """
        from dvd_vfx.hookspecs import hookimpl

        @hookimpl
        def dvd_vfx_job_progress(job, stage, done, total):
            if stage == "stitch":
                raise ValueError("boom")
    """)
    write_plugin(plugins, "luma", LUMA_PLUGIN)
    out = tmp_path / "out"
    code, _, err = cli(capsys, "--plugins-dir", plugins, "render", plate, "-o", out, "--predictor", "luma", *FAST)
    assert code == 1
    assert f"dvd-vfx: error: plugin {path} failed in dvd_vfx_job_progress: ValueError: boom" in err
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())

    recorder = Recorder()
    engine = Engine(plugins_dirs=[plugins], plugins=[recorder], entry_points=False, env=False)
    with pytest.raises(PluginError, match="boom.py failed in dvd_vfx_job_progress"):
        engine.render(plate, RenderOptions(out_dir=out, resolution=48, window=5, overlap=2), "luma")
    assert recorder.of("job_failed")[0]["type"] == "PluginError"


def test_predictor_that_raises_is_blamed_on_its_plugin(plate, tmp_path):
    class Bad:
        name = "bad"

        def identity(self):
            return {"predictor": "bad"}

        def predict(self, frames):
            raise RuntimeError("CUDA out of memory (pretend)")

    class BadPlugin:
        @hookimpl
        def dvd_vfx_register_predictors(self):
            return [PredictorFactory("bad", lambda settings: Bad())]

    engine = Engine(plugins=[BadPlugin()], entry_points=False, env=False)
    with pytest.raises(PluginError, match="failed in the render: RuntimeError: CUDA out of memory"):
        engine.render(plate, RenderOptions(out_dir=tmp_path / "o", resolution=48, window=5, overlap=2), "bad")


def test_entry_point_plugins(tmp_path, monkeypatch, caplog):
    pkg = tmp_path / "site"
    write_plugin(pkg, "good_dvd_plugin", LUMA_PLUGIN)
    write_plugin(pkg, "bad_dvd_plugin", "raise RuntimeError('cannot load')\n")
    monkeypatch.syspath_prepend(str(pkg))
    eps = [importlib.metadata.EntryPoint("good", "good_dvd_plugin", "dvd_vfx"),
           importlib.metadata.EntryPoint("bad", "bad_dvd_plugin", "dvd_vfx")]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: eps if group == "dvd_vfx" else [])
    with caplog.at_level(logging.WARNING, logger="dvd_vfx"):
        engine = Engine(env=False)
    assert "luma" in engine.predictors()
    assert [s.kind for s in engine.plugins() if s.name == "good"] == ["entry point"]
    assert "bad_dvd_plugin (entry point 'bad') failed to import: RuntimeError: cannot load" in caplog.text


def test_trace_hooks(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DVD_VFX_TRACE_HOOKS", "1")
    engine = Engine(entry_points=False, env=False)
    engine.predictors()
    err = capsys.readouterr().err
    assert "dvd-vfx: hook dvd_vfx_register_predictors() -> [[PredictorFactory(name='dvd'" in err
    assert "[dvd_vfx.default_plugins.predictors]" in err


def test_engine_modules_import_without_torch():
    code = """
import sys
import dvd_vfx, dvd_vfx.jobs, dvd_vfx.hookspecs, dvd_vfx.plugins, dvd_vfx.presets, dvd_vfx.engine
engine = dvd_vfx.engine.Engine()
engine.predictors(); engine.readers(); engine.writers(); engine.presets()
print(sorted(m for m in ("torch", "diffusers", "numpy", "dvd_vfx.model", "dvd_vfx.render") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
