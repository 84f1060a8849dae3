"""`dvd-vfx farm ray` on a real two-node Ray cluster on loopback (started and stopped here):
passes byte-identical to single-process renders, a killed task retried, GPU requests checked
before submitting, predictions through the object store, failed shots leave nothing."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from dvd_vfx.errors import InputError  # noqa: E402
from dvd_vfx.farm import ray_runner  # noqa: E402
from plugin_helpers import FAST, make_plate, write_plugin  # noqa: E402
from ray_cluster import LocalRayCluster, ray_env  # noqa: E402

EPOCH = "1700000000"
TIMEOUT_S = 420  # one farm run; the whole module takes about two minutes on 2 busy cores
# Single-process references run with this machine's default thread count, Ray's 1-CPU tasks with
# one thread: the pass must not depend on it.
REFERENCE_ENV = {"SOURCE_DATE_EPOCH": EPOCH}
SINGLE_RENDERS = """
import sys
from pathlib import Path
from dvd_vfx.engine import RenderOptions, render_shot
from dvd_vfx.model.predictor import DVDPredictor
predictor = DVDPredictor(sys.argv[1], device="cpu")
for plate in sys.argv[3:]:
    render_shot(plate, RenderOptions(out_dir=Path(sys.argv[2]), resolution=48, window=5, overlap=2), predictor)
"""

# A luma predictor that, the first time it is called anywhere (a marker file records it), kills
# its own render process ("process") or the Ray worker running the task and then itself
# ("worker"); "error" raises on every call.
PREDICTOR_PLUGIN = '''
import os
import signal

import numpy as np

from dvd_vfx.hookspecs import hookimpl
from dvd_vfx.plugins import PredictorFactory

MARKER = {marker!r}
KILL = {kill!r}


class KillOnce:
    name = "killonce"

    def identity(self):
        return {{"predictor": "killonce", "model_id": "luma-1", "weights_sha256": "0" * 64}}

    def predict(self, frames):
        if KILL == "error":
            raise ValueError("the test predictor always fails")
        if KILL and not os.path.exists(MARKER):
            open(MARKER, "w").close()
            if KILL == "worker":
                os.kill(os.getppid(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
        return (frames.mean(axis=-1) * 0.8 + 0.1).astype(np.float32)


@hookimpl
def dvd_vfx_register_predictors():
    return [PredictorFactory("killonce", lambda settings: KillOnce(), "luma; kills its process once (tests)")]
'''

# Records the submitter's job hooks (only where $DVD_TEST_HOOK_LOG is set: not on the workers).
RECORDER_PLUGIN = '''
import json
import os

from dvd_vfx.hookspecs import hookimpl


def _write(hook, job, **fields):
    path = os.environ.get("DVD_TEST_HOOK_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"hook": hook, "job": job.id, **fields}) + "\\n")


@hookimpl
def dvd_vfx_job_started(job):
    _write("job_started", job, source=job.source)


@hookimpl
def dvd_vfx_job_progress(job, stage, done, total):
    _write("job_progress", job, stage=stage, done=done, total=total)


@hookimpl
def dvd_vfx_pass_written(job, pass_info):
    _write("pass_written", job, path=pass_info.path, frame=pass_info.frame, shot=pass_info.shot)


@hookimpl
def dvd_vfx_job_finished(job, result):
    _write("job_finished", job, shot=result.shot, frames=result.frame_count, calls=result.predictor_calls)


@hookimpl
def dvd_vfx_job_failed(job, error):
    _write("job_failed", job, message=str(error))
'''


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster(nodes=2, cpus_per_node=1, object_store_mb=200) as c:
        yield c


def farm(cluster, sources, out, *flags, plugins_dir=None, env=None):
    cmd = [sys.executable, "-m", "dvd_vfx.cli"]
    if plugins_dir is not None:
        cmd.append(f"--plugins-dir={plugins_dir}")
    cmd += ["farm", "ray", *map(str, sources), "-o", str(out), *FAST, "--address", cluster.address, *map(str, flags)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=ray_env(SOURCE_DATE_EPOCH=EPOCH, **(env or {})), capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    return proc, time.monotonic() - t0


def exr_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.exr"))}


def killonce_dir(tmp_path, kill, name="plugins"):
    marker = tmp_path / f"marker-{name}"
    write_plugin(tmp_path / name, "killonce", PREDICTOR_PLUGIN.format(marker=str(marker), kill=kill))
    return tmp_path / name, marker


def reference(tmp_path, plate, plugins_dir, out):
    """A single-process render of `plate` with the killonce predictor, its marker already set."""
    env = {**os.environ, **REFERENCE_ENV}
    done = subprocess.run([sys.executable, "-m", "dvd_vfx.cli", f"--plugins-dir={plugins_dir}", "render", str(plate),
                           "-o", str(out), "--no-cache", "--predictor", "killonce", *FAST], env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return exr_bytes(out)


def test_three_shots_on_two_nodes_equal_single_process_renders(cluster, tiny_weights_master, tmp_path):
    frames = {"sh010": 13, "sh020": 9, "sh030": 11}
    plates = [make_plate(tmp_path / "plates" / f"{shot}.mp4", n) for shot, n in frames.items()]
    done = subprocess.run([sys.executable, "-c", SINGLE_RENDERS, str(tiny_weights_master), str(tmp_path / "single"),
                           *map(str, plates)], env={**os.environ, **REFERENCE_ENV}, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    write_plugin(tmp_path / "recorder", "recorder", RECORDER_PLUGIN)
    hooks = tmp_path / "hooks.jsonl"
    proc, seconds = farm(cluster, plates, tmp_path / "farm", "--weights", tiny_weights_master, "--windows-per-task", 2,
                         "--frames-per-task", 7, "--cache-dir", tmp_path / "cache", plugins_dir=tmp_path / "recorder",
                         env={"DVD_TEST_HOOK_LOG": str(hooks)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 of 3 shots" in proc.stdout and "through the shared cache" in proc.stdout, proc.stdout
    assert "(2 nodes, 2 CPUs, 0 GPUs)" in proc.stdout
    single, farmed = exr_bytes(tmp_path / "single"), exr_bytes(tmp_path / "farm")
    assert len(single) == 13 + 9 + 11 and single.keys() == farmed.keys()
    assert all(single[k] == farmed[k] for k in single)  # pixels and headers, byte for byte
    assert not [p for p in (tmp_path / "farm").iterdir() if p.name.startswith(".")]  # no staging left

    calls = [json.loads(line) for line in hooks.read_text().splitlines()]
    jobs = {c["job"] for c in calls}
    assert len(jobs) == 3 and sorted(c["hook"] for c in calls if c["hook"] == "job_started") == ["job_started"] * 3
    for job in jobs:
        mine = [c for c in calls if c["job"] == job]
        assert mine[0]["hook"] == "job_started" and mine[-1]["hook"] == "job_finished"
        shot = mine[-1]["shot"]
        written = [c for c in mine if c["hook"] == "pass_written"]
        assert len(written) == frames[shot] == mine[-1]["frames"]
        assert all(Path(c["path"]).parent == tmp_path / "farm" for c in written)  # final paths, not staging
        stages = [c["stage"] for c in mine if c["hook"] == "job_progress"]
        assert stages[0] == "predict" and stages[-1] == "write" and "stitch" in stages
        assert stages == sorted(stages, key=["predict", "stitch", "write"].index)  # a shot's stages move forward
        predict = [c for c in mine if c["hook"] == "job_progress" and c["stage"] == "predict"]
        assert predict[-1]["done"] == predict[-1]["total"] == mine[-1]["calls"]  # every window predicted once


@pytest.mark.parametrize("kill", ["process", "worker"])
def test_a_task_killed_mid_run_is_retried_and_the_pass_is_identical(cluster, tmp_path, kill):
    plate = make_plate(tmp_path / "sh010.mp4", 13)
    plugins, marker = killonce_dir(tmp_path, kill)
    proc, _ = farm(cluster, [plate], tmp_path / "farm", "--predictor", "killonce", "--windows-per-task", 2,
                   "--cache-dir", tmp_path / "cache", plugins_dir=plugins)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert marker.exists() and "1 retried" in proc.stdout, proc.stdout
    ref_plugins, ref_marker = killonce_dir(tmp_path, None, name="ref")
    single = reference(tmp_path, plate, ref_plugins, tmp_path / "single")
    assert len(single) == 13 and exr_bytes(tmp_path / "farm") == single


def test_predictions_through_the_object_store_give_the_same_pass(cluster, tmp_path):
    plate = make_plate(tmp_path / "sh010.mp4", 13)
    plugins, _ = killonce_dir(tmp_path, None)
    proc, _ = farm(cluster, [plate], tmp_path / "farm", "--predictor", "killonce", "--windows-per-task", 2,
                   "--frames-per-task", 5, "--object-store", "always", "--cache-dir", tmp_path / "cache",
                   plugins_dir=plugins)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "through Ray's object store" in proc.stdout and "5 tasks" in proc.stdout, proc.stdout
    assert not (tmp_path / "cache").exists()  # the submitter's cache was never used
    assert exr_bytes(tmp_path / "farm") == reference(tmp_path, plate, plugins, tmp_path / "single")


def test_gpu_request_on_a_cpu_cluster_fails_fast(cluster, tmp_path):
    plate = make_plate(tmp_path / "sh010.mp4", 5)
    proc, seconds = farm(cluster, [plate], tmp_path / "farm", "--gpus-per-task", 1, "--cache-dir", tmp_path / "cache")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dvd-vfx: error:")]
    assert len(errors) == 1, proc.stderr
    assert (f"--gpus-per-task 1 asks for 1 GPU per task but the Ray cluster at {cluster.address} has no GPUs"
            in errors[0])
    assert seconds < 120 and not (tmp_path / "farm").exists()


def test_a_failing_shot_leaves_nothing_and_names_itself(cluster, tmp_path):
    plate = make_plate(tmp_path / "sh010.mp4", 9)
    plugins, _ = killonce_dir(tmp_path, "error")
    proc, _ = farm(cluster, [plate], tmp_path / "farm", "--predictor", "killonce", "--max-retries", 0,
                   "--cache-dir", tmp_path / "cache", plugins_dir=plugins)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dvd-vfx: error:")]
    assert len(errors) == 1 and re.match(r"dvd-vfx: error: shot sh010: windows \d-\d: plugin .*killonce.py failed "
                                         r"in the render: ValueError: the test predictor always fails \(after 1 "
                                         r"attempt\)$", errors[0]), proc.stderr
    assert "sh010            FAILED after" in proc.stdout
    assert not (tmp_path / "farm").exists()  # created for the run, removed again: nothing partial


# -- without a cluster ---------------------------------------------------------------------------


def test_ray_missing_is_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match=r"pip install 'dvd-vfx\[farm\]'"):
        ray_runner.import_ray()


def test_cpus_per_task_larger_than_any_node_is_refused():
    class FakeRay:
        @staticmethod
        def nodes():
            return [{"Alive": True, "Resources": {"CPU": 4.0}}, {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}}]

        @staticmethod
        def cluster_resources():
            return {"CPU": 12.0, "GPU": 1.0}

    settings = ray_runner.FarmSettings(address="h:1", cpus_per_task=16)
    with pytest.raises(InputError, match=r"--cpus-per-task 16: no node of the Ray cluster at h:1 .*at most 8"):
        ray_runner.check_resources(FakeRay, settings, "h:1")
    two_gpus = ray_runner.FarmSettings(address="h:1", gpus_per_task=2)
    with pytest.raises(InputError, match="asks for 2 GPUs per task but the Ray cluster at h:1 has at most 1 on one"):
        ray_runner.check_resources(FakeRay, two_gpus, "h:1")
    assert len(ray_runner.check_resources(FakeRay, ray_runner.FarmSettings(address="h:1", gpus_per_task=1), "h:1")) == 1


def test_farm_without_cache_and_without_object_store_is_refused(tmp_path, capsys):
    from dvd_vfx.cli import main

    plate = make_plate(tmp_path / "sh010.mp4", 5)
    with pytest.raises(SystemExit) as exc:
        main(["farm", "ray", str(plate), "-o", str(tmp_path / "o"), "--no-cache", "--object-store", "never", *FAST])
    assert exc.value.code == 2 and "--no-cache with --object-store never" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
