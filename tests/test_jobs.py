"""Out-of-process jobs: `dvd-vfx render --json-progress` events replayed as hook calls in the host."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import pytest

from plugin_helpers import FAST, LUMA_PLUGIN, Recorder, make_plate, write_plugin
from dvd_vfx import cli
from dvd_vfx.console import warn_if_test_model
from dvd_vfx.render import RenderOptions
from dvd_vfx.errors import Cancelled, InputError
from dvd_vfx.jobs import SCHEMA, JsonLinesEmitter, SubprocessJob, parse_event
from dvd_vfx.engine import Engine
from dvd_vfx.plugins import ModelSettings


def host(*plugins) -> Engine:
    return Engine(plugins=plugins, entry_points=False, env=False)


@pytest.fixture(scope="module")
def plugins_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugins")
    write_plugin(folder, "luma", LUMA_PLUGIN)
    return folder


def _without_timing(calls):
    out = []
    for name, args in calls:
        if name == "job_finished":
            args = {**args, "result": {k: v for k, v in args["result"].items() if k != "seconds"}}
        out.append((name, args))
    return out


@pytest.mark.slow
def test_event_stream_of_a_real_render_replays_as_the_same_hook_calls(tiny_weights_master, tmp_path):
    plate = make_plate(tmp_path / "plate.mp4", 5)  # one window of the tiny DVD model
    out = tmp_path / "out"
    local = Recorder()
    host(local).render(str(plate), RenderOptions(out_dir=out, resolution=48, window=5, overlap=2), "dvd",
                       model=ModelSettings(weights=str(tiny_weights_master), device="cpu"), job_id="job-1",
                       on_predictor=warn_if_test_model)

    remote = Recorder()
    job = host(remote).subprocess_job(args=[plate, "-o", out, *FAST, "--weights", tiny_weights_master,
                                            "--device", "cpu", "--no-cache"], job_id="job-1")
    outcome = job.wait(timeout=300)
    assert outcome.ok, (outcome, list(job.stderr_tail))
    assert outcome.result.pattern == str(out / "plate.depth.####.exr")
    assert local.names()[0] == "job_started" and local.names()[-1] == "job_finished"
    assert "job_log" in local.names()  # the tiny-model warning travels as an event too
    assert _without_timing(remote.calls) == _without_timing(local.calls)
    assert remote.threads == {__import__("threading").get_ident()}  # replayed on the polling thread


def test_cancel_mid_render_keeps_cached_windows_and_the_shot_resumes(plugins_dir, tmp_path):
    plate = make_plate(tmp_path / "plate.mp4", 41)  # 13 windows
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [plate, "-o", out, "--predictor", "luma", *FAST, "--cache-dir", cache]
    recorder = Recorder(cancel_when=lambda r: any(a["stage"] == "predict" and a["done"] >= 2
                                                  for a in r.of("job_progress")))
    job = host(recorder).subprocess_job(args=args, plugins_dir=plugins_dir, env={"DVD_TEST_PREDICT_SLEEP": "0.3"})
    outcome = job.wait(timeout=120)
    assert outcome.exit_code == 130 and isinstance(outcome.error, Cancelled), list(job.stderr_tail)
    assert recorder.names().count("job_failed") == 1 and recorder.of("job_failed")[0]["type"] == "Cancelled"
    assert "job_finished" not in recorder.names() and "pass_written" not in recorder.names()
    assert not out.exists() or not list(out.iterdir())  # nothing half-written

    again = Recorder()
    outcome = host(again).subprocess_job(args=args, plugins_dir=plugins_dir).wait(timeout=120)
    assert outcome.ok, outcome
    result = outcome.result
    assert result.frame_count == 41 and result.windows == 13
    assert result.cache == "partial" and result.predictor_calls <= result.windows - 2  # resumed
    assert [a["done"] for a in again.of("job_progress") if a["stage"] == "predict"][0] >= 2
    assert len(again.of("pass_written")) == 41


def test_a_host_without_torch_runs_a_whole_job(plugins_dir, tmp_path):
    plate = make_plate(tmp_path / "plate.mp4", 7)
    script = textwrap.dedent("""
        import importlib.abc, json, sys

        class NoTorch(importlib.abc.MetaPathFinder):   # a Blender/Nuke-like Python
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "diffusers"):
                    raise ImportError(f"No module named {name!r} (blocked)")

        sys.meta_path.insert(0, NoTorch())
        import dvd_vfx, dvd_vfx.hookspecs, dvd_vfx.jobs, dvd_vfx.engine
        from dvd_vfx.hookspecs import hookimpl

        seen = []
        class Host:
            @hookimpl
            def dvd_vfx_job_finished(self, job, result):
                seen.append(result.pattern)

        engine = dvd_vfx.engine.Engine(plugins=[Host()])
        job = engine.subprocess_job(python=sys.argv[1], args=sys.argv[3:], plugins_dir=sys.argv[2])
        outcome = job.wait(timeout=120)
        print(json.dumps({"ok": outcome.ok, "seen": seen, "error": str(outcome.error),
                          "heavy": [m for m in ("torch", "diffusers", "dvd_vfx.model") if m in sys.modules]}))
    """)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", script, sys.executable, plugins_dir, plate, "-o", out,
                           "--predictor", "luma", *FAST, "--no-cache"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"ok": True, "seen": [str(out / "plate.depth.####.exr")], "error": "None", "heavy": []}


def test_stray_output_lines_are_skipped_with_a_warning(plugins_dir, tmp_path, caplog):
    noisy = tmp_path / "noisy"
    write_plugin(noisy, "noisy", """
        from dvd_vfx.hookspecs import hookimpl

        @hookimpl
        def dvd_vfx_job_started(job):
            print("a stray print from a plugin", flush=True)
            print('{"event": "progress"}', flush=True)
    """)
    plate = make_plate(tmp_path / "plate.mp4", 5)
    recorder = Recorder()
    with caplog.at_level(logging.WARNING, logger="dvd_vfx.jobs"):
        job = host(recorder).subprocess_job(args=[plate, "-o", tmp_path / "out", "--predictor", "luma", *FAST,
                                                  "--no-cache"], plugins_dir=[plugins_dir, noisy])
        outcome = job.wait(timeout=120)
    assert outcome.ok, list(job.stderr_tail)
    assert recorder.names()[0] == "job_started" and recorder.names()[-1] == "job_finished"
    assert "ignoring a line that is not a dvd-vfx job event: 'a stray print from a plugin'" in caplog.text


def test_a_host_plugin_that_raises_fails_the_job_and_stops_the_engine(plugins_dir, tmp_path):
    from dvd_vfx.errors import PluginError
    from dvd_vfx.hookspecs import hookimpl

    class Fragile:
        @hookimpl
        def dvd_vfx_job_progress(self, job, stage, done, total):
            if done >= 1:
                raise KeyError("panel was closed")

    recorder = Recorder()
    plate = make_plate(tmp_path / "plate.mp4", 41)
    job = host(Fragile(), recorder).subprocess_job(
        args=[plate, "-o", tmp_path / "out", "--predictor", "luma", *FAST, "--no-cache"], plugins_dir=plugins_dir,
        env={"DVD_TEST_PREDICT_SLEEP": "0.3"})
    outcome = job.wait(timeout=120)
    assert isinstance(outcome.error, PluginError) and outcome.exit_code == 1
    assert str(outcome.error).startswith("plugin test_jobs.Fragile failed in dvd_vfx_job_progress: "
                                         "KeyError: 'panel was closed'")
    assert recorder.names().count("job_failed") == 1 and "job_finished" not in recorder.names()
    assert job.proc.returncode != 0  # the engine was stopped


def test_parse_event():
    line = json.dumps({"schema": SCHEMA, "event": "progress", "job_id": "x", "stage": "write", "done": 1, "total": 2})
    assert parse_event(line + "\n")["done"] == 1
    for junk in ("", "   ", "{not json", '["list"]', '{"event": "progress"}', line[:20]):
        assert parse_event(junk) is None
    assert parse_event(line.replace(SCHEMA, "dvd-vfx.job/99")) is None
    assert parse_event(line.replace('"progress"', '"teleport"')) is None


def test_progress_fraction_matches_the_blender_addons_copy(monkeypatch):
    """The add-on cannot import dvd_vfx, so plugins/blender/utils/shot.py keeps its own progress_fraction."""
    import importlib.util
    from pathlib import Path

    from dvd_vfx.progress import progress_fraction

    path = Path(__file__).resolve().parent.parent / "plugins" / "blender" / "utils" / "shot.py"
    spec = importlib.util.spec_from_file_location("dvd_blender_shot_helpers", path)
    blender = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, blender)  # its dataclasses look their module up
    spec.loader.exec_module(blender)
    grid = [(stage, done, total) for stage in ("predict", "stitch", "write", "start", "other")
            for total in (-1, 0, 1, 2, 3, 7, 10, 48, 1001) for done in (-3, -1, 0, 1, 2, total // 2, total - 1,
                                                                       total, total + 1, 5000)]
    assert [progress_fraction(*g) for g in grid] == [blender.progress_fraction(*g) for g in grid]
    assert [progress_fraction(s, d, t) for s, d, t in (("predict", 0, 4), ("predict", 4, 4), ("stitch", 0, 9),
                                                       ("write", 10, 10))] == [0.0, 0.8, 0.8, 1.0]


def test_a_job_that_fails_before_it_starts_still_reports_job_failed(tmp_path):
    recorder = Recorder()
    job = host(recorder).subprocess_job(args=["plate.mov", "-o", tmp_path / "out", "--preset", "nope"])
    outcome = job.wait(timeout=120)
    assert outcome.exit_code == 2 and isinstance(outcome.error, InputError)
    assert recorder.names() == ["job_failed"]
    failed = recorder.of("job_failed")[0]
    assert failed["type"] == "InputError" and failed["message"].startswith("unknown preset 'nope'")
    assert failed["job"] == job.id


def test_engine_python_is_checked_before_anything_starts(tmp_path):
    with pytest.raises(InputError, match="engine Python .*nope.* does not exist"):
        SubprocessJob(python=tmp_path / "nope" / "python", args=["x", "-o", "y"], pm=host().pm)
    bare = tmp_path / "bare-python"  # a Python without dvd-vfx installed (no site-packages)
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    bare.chmod(0o755)
    with pytest.raises(InputError, match="cannot import dvd_vfx .*No module named 'dvd_vfx'.*pip install dvd-vfx"):
        SubprocessJob(python=bare, args=["x", "-o", "y"], pm=host().pm, cwd=tmp_path)


def test_json_progress_keeps_stdout_for_events(plugins_dir, tmp_path, capsys):
    plate = make_plate(tmp_path / "plate.mp4", 5)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--plugins-dir", str(plugins_dir), "render", str(plate), "-o", str(tmp_path / "out"),
                  "--predictor", "luma", *FAST, "--json-progress", "--job-id", "abc", "--no-cache"])
    captured = capsys.readouterr()
    assert exc.value.code == 0
    events = [json.loads(line) for line in captured.out.splitlines()]  # every stdout line is an event
    assert {e["schema"] for e in events} == {SCHEMA} and {e["job_id"] for e in events} == {"abc"}
    assert [e["event"] for e in events][0] == "job_started" and events[-1]["event"] == "job_finished"
    assert events[-1]["result"]["first_frame"] == 1 and events[-1]["result"]["last_frame"] == 5
    assert "output" in captured.err  # the summary went to stderr


def test_emitter_writes_one_line_per_event():
    import io

    from dvd_vfx.jobs import Job

    stream = io.StringIO()
    emitter = JsonLinesEmitter(stream)
    job = Job(id="j", source="s", out_dir="o", shot=None, predictor="dvd")
    emitter.dvd_vfx_job_started(job=job)
    emitter.dvd_vfx_job_failed(job=job, error=Cancelled("stop"))
    first, second = (json.loads(l) for l in stream.getvalue().splitlines())
    assert first["job"]["id"] == "j" and second["error"] == {"type": "Cancelled", "message": "stop", "exit_code": 130}
