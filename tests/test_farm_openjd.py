"""`dvd-vfx farm openjd`: a job template that `openjd check` accepts and `openjd run` executes into the
same pass as a single-process render."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dvd_vfx.cli import main
from dvd_vfx.render import RenderOptions
from dvd_vfx.errors import InputError
from dvd_vfx.farm.openjd import build_template, validate
from dvd_vfx.farm.plan import ShotTasks
from dvd_vfx.plugins import ModelSettings
from footage_helpers import make_testsrc

OPENJD = shutil.which("openjd") or str(Path(sys.executable).with_name("openjd"))
EPOCH = "1700000000"
COMMON = ["--resolution", "48", "--window", "5", "--overlap", "2", "--device", "cpu"]


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return exc.value.code, out.out + out.err


def exr_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.exr"))}


@pytest.fixture
def plates(tmp_path):
    return [make_testsrc(tmp_path / "sh010.mp4", frames=13), make_testsrc(tmp_path / "sh020.mp4", frames=5)]


def test_template_structure_and_openjd_check(plates, tiny_weights_master, tmp_path, capsys):
    job = tmp_path / "job.yaml"
    code, out = run_cli(capsys, "farm", "openjd", *plates, "--output-dir", tmp_path / "out", "--cache-dir",
                        tmp_path / "cache", "--weights", tiny_weights_master, *COMMON[:-2], "--windows-per-task", "2",
                        "--frames-per-task", "5", "--gpus-per-task", "1", "-o", job)
    assert code == 0, out
    assert "4 steps" in out and "openjd run" in out
    template = yaml.safe_load(job.read_text())
    steps = {s["name"]: s for s in template["steps"]}
    assert list(steps) == ["sh010 windows", "sh010 assemble", "sh020 windows", "sh020 assemble"]
    # 13 frames, window 5 overlap 2 -> 4 windows in chunks of 2; 5 frames -> 1 window
    assert steps["sh010 windows"]["parameterSpace"]["taskParameterDefinitions"][0]["range"] == ["0-1", "2-3"]
    assert steps["sh020 windows"]["parameterSpace"]["taskParameterDefinitions"][0]["range"] == ["0-0"]
    assert steps["sh010 assemble"]["dependencies"] == [{"dependsOn": "sh010 windows"}]
    assert steps["sh010 assemble"]["parameterSpace"]["taskParameterDefinitions"][0]["range"] == ["1-5", "6-10", "11-13"]
    assert "parameterSpace" not in steps["sh020 assemble"]  # 5 frames fit one assemble task
    vcpu = {"name": "amount.worker.vcpu", "min": 1}  # --cpus-per-task (default 1) = the tasks' --threads
    assert steps["sh010 windows"]["hostRequirements"]["amounts"] == [vcpu, {"name": "amount.worker.gpu", "min": 1}]
    # every task of a GPU job runs --device cuda (the cache key holds the device class), so the
    # assemble tasks need a CUDA worker too
    assert steps["sh010 assemble"]["hostRequirements"]["amounts"] == [vcpu, {"name": "amount.worker.gpu", "min": 1}]
    args = steps["sh010 assemble"]["script"]["actions"]["onRun"]["args"]
    assert args[args.index("--device") + 1] == "cuda"
    assert args[args.index("--threads") + 1] == "1"  # every task predicts with the same thread count
    assert args[:4] == ["-m", "dvd_vfx.cli", "render", "{{Param.Shot1}}"]
    assert args[-3:] == ["--assemble", "--write-frames", "{{Task.Param.Frames}}"]
    params = {p["name"]: p for p in template["parameterDefinitions"]}
    # PATH defaults are relative to the template's folder (the specification joins them to it and
    # refuses defaults outside it); the values file has every path, absolute
    assert params["Shot1"]["default"] == "sh010.mp4" and params["OutputDir"]["default"] == "out"
    assert "default" not in params["Weights"]  # outside the template's folder
    assert params["DvdVfxPython"]["default"] == sys.executable
    values = yaml.safe_load((tmp_path / "job.params.yaml").read_text())
    assert values == {"DvdVfxPython": sys.executable, "OutputDir": str(tmp_path / "out"),
                      "CacheDir": str(tmp_path / "cache"), "Weights": str(tiny_weights_master),
                      "Shot1": str(plates[0]), "Shot2": str(plates[1])}
    check = subprocess.run([OPENJD, "check", str(job)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.slow
def test_openjd_run_gives_the_single_render_pass(tiny_weights_master, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    plate = make_testsrc(tmp_path / "plate.mp4", frames=13)
    weights = ["--weights", tiny_weights_master]
    # the farm's tasks predict with --threads 1 (--cpus-per-task's default); so does this reference
    code, out = run_cli(capsys, "render", plate, "-o", tmp_path / "single", "--cache-dir", tmp_path / "c1",
                        *weights, *COMMON, "--threads", "1")
    assert code == 0, out
    job = tmp_path / "job.json"
    code, out = run_cli(capsys, "farm", "openjd", plate, "--output-dir", tmp_path / "farm", "--cache-dir",
                        tmp_path / "c2", *weights, *COMMON, "--windows-per-task", "2", "--frames-per-task", "7",
                        "-o", job)
    assert code == 0, out
    json.loads(job.read_text())  # a .json name writes JSON
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}
    values = tmp_path / "job.params.json"
    assert json.loads(values.read_text())["Weights"] == str(tiny_weights_master)
    proc = subprocess.run([OPENJD, "run", str(job), "-p", f"file://{values}"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[:1500] + proc.stderr[-3000:]
    assert "Chunks run: 4" in proc.stdout  # 2 window tasks + 2 assemble tasks
    single, farm = exr_bytes(tmp_path / "single"), exr_bytes(tmp_path / "farm")
    assert len(single) == 13 and single == farm
    assert not list((tmp_path / "farm").glob(".*"))  # no staging leftovers


def test_errors_name_the_value(plates, tmp_path, capsys):
    code, out = run_cli(capsys, "farm", "openjd", *plates, "--output-dir", tmp_path / "o", "--no-cache",
                        "-o", tmp_path / "job.yaml")
    assert code == 2 and "--no-cache" in out and "Traceback" not in out
    code, out = run_cli(capsys, "farm", "openjd", *plates, "--output-dir", tmp_path / "o",
                        "-o", tmp_path / "missing" / "job.yaml")
    assert code == 2 and "does not exist" in out
    code, out = run_cli(capsys, "farm", "openjd", *plates, "--shot", "hero", "--output-dir", tmp_path / "o",
                        "-o", tmp_path / "job.yaml")
    assert code == 2 and "--shot 'hero'" in out
    twin = tmp_path / "other"
    twin.mkdir()
    shutil.copy(plates[0], twin / plates[0].name)
    code, out = run_cli(capsys, "farm", "openjd", plates[0], twin / plates[0].name, "--output-dir", tmp_path / "o",
                        "-o", tmp_path / "job.yaml")
    assert code == 2 and "both make shot 'sh010'" in out
    assert not (tmp_path / "job.yaml").exists()


def test_too_many_shots_for_one_job(tmp_path):
    shots = [ShotTasks(source=f"/plates/s{i}.mp4", shot=f"s{i}", frame_range=(1, 5), n_windows=1,
                       window_chunks=[(0, 0)], frame_chunks=[(1, 5)]) for i in range(47)]
    kwargs = dict(cache_dir="/cache", model=ModelSettings(), python=sys.executable, template_dir=tmp_path)
    with pytest.raises(InputError, match="47 shots do not fit"):
        build_template(shots, RenderOptions(out_dir=tmp_path), **kwargs)
    validate(build_template(shots[:46], RenderOptions(out_dir=tmp_path), **kwargs)[0])  # the limit itself is valid


def _shot(name, windows=1, frames=5, source=None):
    return ShotTasks(source=source or f"/plates/{name}.mp4", shot=name, frame_range=(1, frames), n_windows=windows,
                     window_chunks=[(i, i) for i in range(windows)], frame_chunks=[(1, frames)])


def test_long_shot_names_stay_unique_and_valid(tmp_path):
    kwargs = dict(cache_dir="/cache", model=ModelSettings(), python=sys.executable, template_dir=tmp_path)
    prefix = "show_seq010_" + "x" * 60
    template, _ = build_template([_shot(prefix + "_a"), _shot(prefix + "_b")], RenderOptions(out_dir=tmp_path),
                                 **kwargs)
    names = [s["name"] for s in template["steps"]]
    assert len(set(names)) == 4 and all(len(n) <= 64 for n in names)
    assert template["steps"][1]["dependencies"] == [{"dependsOn": names[0]}]
    validate(template)


def test_values_openjd_cannot_carry_are_refused(tmp_path):
    kwargs = dict(cache_dir="/cache", model=ModelSettings(), python=sys.executable, template_dir=tmp_path)
    with pytest.raises(InputError, match=r"'\{\{' or '\}\}'"):
        build_template([_shot("sh{{010}}")], RenderOptions(out_dir=tmp_path), **kwargs)
    with pytest.raises(InputError, match="1500 window tasks; one step holds at most 1024: raise --windows-per-task"):
        build_template([_shot("long", windows=1500)], RenderOptions(out_dir=tmp_path), **kwargs)


def test_tasks_get_the_cache_cap_and_the_pinned_capdate(tmp_path):
    template, _ = build_template([_shot("sh010")], RenderOptions(out_dir=tmp_path), cache_dir="/cache",
                                 model=ModelSettings(), python=sys.executable, template_dir=tmp_path,
                                 cache_max_gb=200, source_date_epoch=EPOCH, plugins_dirs=["/studio/plugins"])
    args = template["steps"][0]["script"]["actions"]["onRun"]["args"]
    assert args[args.index("--cache-max-gb") + 1] == "200.0" and "--plugins-dir=/studio/plugins" in args
    assert template["jobEnvironments"] == [{"name": "dvd-vfx", "variables": {"SOURCE_DATE_EPOCH": EPOCH}}]
    validate(template)
