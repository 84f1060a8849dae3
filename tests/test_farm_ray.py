"""`dvd-vfx farm ray` on a real two-node Ray cluster on loopback (started and stopped here):
passes byte-identical to single-process renders, a killed task retried, GPU requests checked
before submitting, predictions through the object store, failed shots leave nothing, a cancel
stops a silent render at once. Without a cluster: the object store's one-file-at-a-time paths,
the node-loss check, set-up errors."""

import _thread
import json
import os
import re
import signal
import subprocess
import sys
import threading
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
# Predictions depend on torch's thread count (float sums in another order), and Ray's 1-CPU
# tasks predict with --threads 1 (the farm's default: the task's CPUs), so the single-process
# references pin one thread too: then the passes are byte-identical on any machine.
REFERENCE_ENV = {"SOURCE_DATE_EPOCH": EPOCH}
SINGLE_RENDERS = """
import sys
from pathlib import Path
from dvd_vfx.render import RenderOptions, render_shot
from dvd_vfx.model.predictor import DVDPredictor
predictor = DVDPredictor(sys.argv[1], device="cpu")
for plate in sys.argv[3:]:
    render_shot(plate, RenderOptions(out_dir=Path(sys.argv[2]), resolution=48, window=5, overlap=2, threads=1),
                predictor)
"""

# A luma predictor that, the first time it is called anywhere (a marker file records it), kills
# its own render process ("process") or the Ray worker running the task and then itself
# ("worker"); "error" raises on every call; "sleep" appends its pid to the marker and sleeps
# without a word.
PREDICTOR_PLUGIN = '''
import os
import signal
import time

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
        if KILL == "sleep":
            with open(MARKER, "a") as fh:
                fh.write(f"{{os.getpid()}}\\n")
            time.sleep(600)
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


def farm_cmd(cluster, sources, out, *flags, plugins_dir=None):
    cmd = [sys.executable, "-m", "dvd_vfx.cli"]
    if plugins_dir is not None:
        cmd.append(f"--plugins-dir={plugins_dir}")
    return cmd + ["farm", "ray", *map(str, sources), "-o", str(out), *FAST, "--address", cluster.address,
                  *map(str, flags)]


def farm(cluster, sources, out, *flags, plugins_dir=None, env=None):
    cmd = farm_cmd(cluster, sources, out, *flags, plugins_dir=plugins_dir)
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
                           "-o", str(out), "--no-cache", "--predictor", "killonce", "--threads", "1", *FAST], env=env,
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
    plates = [make_plate(tmp_path / "sh010.mp4", 13), make_plate(tmp_path / "sh020.mp4", 5)]
    plugins, _ = killonce_dir(tmp_path, None)
    proc, _ = farm(cluster, plates, tmp_path / "farm", "--predictor", "killonce", "--frames-per-task", 5,
                   "--object-store", "always", "--cache-dir", tmp_path / "cache", "--scratch-dir", tmp_path / "scratch",
                   plugins_dir=plugins)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 5 windows in 2 warm tasks (sh010 0-2 | sh010 3, sh020 0): sh010 2 window parts, its stitch task and 3
    # assemble tasks; sh020 1 window part and 1 assemble task
    assert "through Ray's object store" in proc.stdout and "; 8 tasks" in proc.stdout, proc.stdout
    assert "model loads: 2 for 2 shots (warm tasks: 2 over 2 task slots" in proc.stdout, proc.stdout
    assert not (tmp_path / "cache").exists()  # the submitter's cache was never used
    assert (tmp_path / "scratch").is_dir() and not list((tmp_path / "scratch").iterdir())  # used, then emptied
    farmed = exr_bytes(tmp_path / "farm")
    assert len(farmed) == 13 + 5
    for plate in plates:
        single = reference(tmp_path, plate, plugins, tmp_path / "single" / plate.stem)
        assert single == {k: v for k, v in farmed.items() if k.startswith(plate.stem + ".")}


def test_a_batch_of_shots_gets_its_own_folders_and_frames(cluster, tmp_path):
    """`farm ray --batch SHOTS`: each row's shot in its folder from the -o pattern, with its frames and
    handles, byte-identical to `dvd-vfx batch` of the same list on one machine. The batch's windows
    run in warm tasks: the model is loaded once per worker used (2), not once per shot and worker;
    a shot whose predictions fail fails alone, naming itself, and leaves nothing."""
    plates = [make_plate(tmp_path / "plates" / "a.mp4", 13), make_plate(tmp_path / "plates" / "b.mp4", 9),
              make_plate(tmp_path / "plates" / "c.mp4", 11), make_plate(tmp_path / "plates" / "wide.mp4", 5, "96x48")]
    rows = [f"{plates[0]},4-9,hero", f"{plates[1]},,", f"{plates[3]},,", f"{plates[2]},,"]
    shots = tmp_path / "shots.csv"
    shots.write_text("source,frames,shot\n" + "\n".join(rows) + "\n")
    loads = tmp_path / "loads.txt"
    write_plugin(tmp_path / "plugins", "loadcount", LOADS_PLUGIN.format(loads=str(loads)))
    proc, _ = farm(cluster, [], tmp_path / "farm" / "{shot}", "--batch", shots, "--handles", 2, "--predictor",
                   "loadcount", "--max-retries", 0, "--cache-dir", tmp_path / "cache", plugins_dir=tmp_path / "plugins")
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    assert "3 of 4 shots" in proc.stdout and "wide             FAILED after" in proc.stdout, proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dvd-vfx: error:")]
    assert len(errors) == 1 and re.match(r"dvd-vfx: error: 1 of 4 shots failed; first: shot wide: windows 0-0: plugin "
                                         r".*loadcount.py failed in the render: ValueError: loadcount takes frames at "
                                         r"most 64 pixels wide \(after 1 attempt\)$", errors[0]), proc.stderr
    # hero 10 frames (3 windows), b 9 (3), wide 5 (1), c 11 (3): 10 windows in 2 warm tasks, 1 load each
    assert "model loads: 2 for 4 shots (warm tasks: 2 over 2 task slots, 1 model setting)" in proc.stdout, proc.stdout
    pids = loads.read_text().split()
    assert len(pids) == len(set(pids)) == 2  # 2 processes, one load each, for all four shots
    assert not (tmp_path / "farm" / "wide").exists()  # the failed shot left nothing, not even its folder

    good = tmp_path / "good.csv"
    good.write_text("source,frames,shot\n" + "\n".join(rows[:2] + rows[3:]) + "\n")
    done = subprocess.run([sys.executable, "-m", "dvd_vfx.cli", f"--plugins-dir={tmp_path / 'plugins'}", "batch",
                           str(good), "--handles", "2", "-o", str(tmp_path / "single" / "{shot}"), "--no-cache",
                           "--predictor", "loadcount", "--threads", "1", *FAST], env={**os.environ, **REFERENCE_ENV},
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    hero, b, c = (exr_bytes(tmp_path / "farm" / name) for name in ("hero", "b", "c"))
    assert sorted(hero) == [f"hero.depth.{n:04d}.exr" for n in range(2, 12)]  # 4-9 and 2 handles each side
    assert sorted(b) == [f"b.depth.{n:04d}.exr" for n in range(1, 10)]  # no frames: the whole plate
    assert len(c) == 11
    assert hero == exr_bytes(tmp_path / "single" / "hero") and b == exr_bytes(tmp_path / "single" / "b")
    assert c == exr_bytes(tmp_path / "single" / "c")
    assert not (tmp_path / "farm" / "{shot}").exists()


def test_a_cancelled_task_stops_while_its_render_prints_nothing(cluster, tmp_path):
    """SIGTERM to the submitter cancels the tasks; a render sleeping silently stops at once (not when
    it prints its next line, nor after ray_runner.FORCE_CANCEL_S, when its Ray worker is killed)."""
    plate = make_plate(tmp_path / "sh010.mp4", 9)
    plugins, marker = killonce_dir(tmp_path, "sleep")
    proc = subprocess.Popen(farm_cmd(cluster, [plate], tmp_path / "farm", "--predictor", "killonce", "--cache-dir",
                                     tmp_path / "cache", plugins_dir=plugins),
                            env=ray_env(SOURCE_DATE_EPOCH=EPOCH), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (marker.exists() and marker.read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        time.sleep(1.0)  # the render is in its silent sleep
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT_S)
        seconds = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert seconds < min(10.0, ray_runner.FORCE_CANCEL_S / 2), (seconds, err[-3000:])  # about 1 s here
    for pid in map(int, marker.read_text().split()):  # every render that started is gone
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (tmp_path / "farm").exists()


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


def test_an_unwritable_output_folder_is_one_error_line(tmp_path, capsys):
    from dvd_vfx.cli import main

    plate = make_plate(tmp_path / "sh010.mp4", 5)
    out = tmp_path / "readonly"
    out.mkdir()
    out.chmod(0o555)
    if os.access(out, os.W_OK):  # root writes anywhere: a folder where nobody can create files
        out = Path("/proc")
        if not out.is_dir():
            pytest.skip("no folder that this user cannot write into")
    with pytest.raises(SystemExit) as exc:
        main(["farm", "ray", str(plate), "-o", str(out), "--object-store", "always", *FAST])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("dvd-vfx: error:")]
    assert exc.value.code == 2 and len(errors) == 1, err
    assert errors[0].startswith(f"dvd-vfx: error: cannot write into the output folder {out}: "), errors
    assert "Traceback" not in err


def test_a_cancel_lands_while_the_render_prints_nothing():
    """ray.cancel raises KeyboardInterrupt in the task's main thread (interrupt_main): it must not wait
    for the render's next line."""
    from dvd_vfx.farm import ray_tasks

    from dvd_vfx.jobs import SCHEMA

    events = []
    script = ("import json, sys, time; print(json.dumps({'schema': sys.argv[1], 'event': 'job_started'}), "
              "flush=True); time.sleep(120)")
    timer = threading.Timer(1.5, _thread.interrupt_main)
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            ray_tasks._run_child([sys.executable, "-c", script, SCHEMA], dict(os.environ), events.append)
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 1.5 + 5.0  # the child gets SIGTERM and goes at once
    assert [e.get("event") for e in events] == ["job_started"]


def test_an_assemble_tasks_files_are_fetched_and_freed_one_at_a_time(tmp_path):
    """The submitter's side of the object store: it holds one file's bytes at a time and drops each
    ref (it is its only owner) once the file is written."""
    held = []

    class FakeRay:
        def get(self, ref):
            held.append(len(part.payload))
            return ref

    files = [(f"sh010.depth.{n:04d}.exr", bytes([n]) * 10) for n in range(1, 6)]
    part = ray_runner._Part(name="frames 1-5", kind="assemble", size=5, payload=list(files))
    shot = ray_runner._Shot(index=0, tasks=None, job=None, staging=tmp_path)
    farm = ray_runner.RayFarm(FakeRay(), None, [], None, ray_runner.FarmSettings(address=None), model=None)
    farm._fetch_files(shot, part)
    assert held == [4, 3, 2, 1, 0] and part.payload == []  # each ref left the list before its bytes came
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == dict(files)


def test_object_store_parts_return_one_object_per_window_or_file(tmp_path, monkeypatch):
    """The worker's side: a window task returns its key and manifest, then one object per window; an
    assemble task writes them one at a time (and the shot's stitch numbers) into its private cache,
    and returns one object per EXR file, read only when Ray takes it."""
    import ray

    from dvd_vfx.cache import ShotCache
    from dvd_vfx.render import RenderOptions
    from dvd_vfx.farm import ray_tasks

    key = "ab" + "0" * 62
    cache = tmp_path / "cache"
    folder = ShotCache(cache).folder(key)
    folder.mkdir(parents=True)
    windows = {}
    for k in range(3):
        data = bytes([k]) * (100 + k)
        (folder / f"window.{k:05d}.npy").write_bytes(data)
        windows[str(k)] = {"sha256": f"sum{k}", "bytes": len(data), "seconds": 0.1}
    manifest = {"schema": 1, "key": key, "plan": [[0, 5, 5]] * 3, "windows": windows, "stitch": None,
                "complete": False, "timings": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))

    returns = list(ray_tasks._pack_windows(cache, 1, 2))
    assert len(returns) == ray_tasks.payload_count(ray_tasks.PartSpec(
        0, "sh010", "windows 1-2", "p.mp4", RenderOptions(out_dir=tmp_path), None, windows=(1, 2)))
    assert returns[0]["key"] == key and "windows" not in returns[0]["manifest"]
    assert [(k, e["bytes"], len(d)) for k, e, d in returns[1:]] == [(1, 101, 101), (2, 102, 102)]
    with pytest.raises(ray_tasks.PartCrashed, match="window 3 is missing"):
        ray_tasks._pack_windows(cache, 2, 3)  # checked before anything is returned (a crash: retried)

    fetched = []
    monkeypatch.setattr(ray, "get", lambda ref: fetched.append(ref) or ref if not isinstance(ref, list) else ref)
    chunks = [list(ray_tasks._pack_windows(cache, 0, 0)), returns]
    spec = ray_tasks.PartSpec(0, "sh010", "frames 1-2", "p.mp4", RenderOptions(out_dir=tmp_path), None, frames=(1, 2))
    stitch = {"scales": [1.0, 0.5, 2.0], "shifts": [0.0, 0.1, -0.1], "percentiles": [0.25, 0.75]}
    private = tmp_path / "private"
    ray_tasks._unpack_windows(spec, private, chunks, stitch)
    written = json.loads((ShotCache(private).folder(key) / "manifest.json").read_text())
    assert written["stitch"] == stitch and written["windows"] == windows and written["complete"] is False
    assert all((ShotCache(private).folder(key) / f"window.{k:05d}.npy").read_bytes() == bytes([k]) * (100 + k)
               for k in range(3))
    assert len(fetched) == 3  # the windows, one get each

    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    for n in (1, 2):
        (work / "out" / f"sh010.depth.{n:04d}.exr").write_bytes(bytes([n]))
    files = ray_tasks._payload(spec, work, private)
    assert not isinstance(files, (list, tuple))  # a generator: nothing read yet
    assert list(files) == [("sh010.depth.0001.exr", b"\x01"), ("sh010.depth.0002.exr", b"\x02")]
    (work / "out" / "sh010.depth.0002.exr").unlink()
    with pytest.raises(ray_tasks.PartCrashed, match="wrote 1 EXR files for frames 1-2, expected 2"):
        ray_tasks._payload(spec, work, private)


def test_pending_tasks_that_no_live_node_fits_fail_their_shot_after_a_grace_period():
    class FakeRay:
        alive = [{"Alive": True, "Resources": {"CPU": 8.0}}]

        def nodes(self):
            return self.alive

    class FakeEngine:
        failed = []

        def call(self, hook, job, error):
            self.failed.append((hook, job, str(error)))

    settings = ray_runner.FarmSettings(address="h:1", gpus_per_task=1)
    farm = ray_runner.RayFarm(FakeRay(), FakeEngine(), [], None, settings, model=None)
    farm.where = "h:1"
    shot = ray_runner._Shot(index=0, tasks=None, job="job-1", staging=None)
    windows = ray_runner._Part(name="windows 2-3", kind="windows", size=2)
    assemble = ray_runner._Part(name="frames 1-9", kind="assemble", size=9)
    shot.parts = {p.name: p for p in (windows, assemble)}
    shot.refs = ["w", "a"]
    farm.pending = {"w": (shot, windows), "a": (shot, assemble)}
    farm._check_nodes(now=100.0)  # the GPU node just went: wait for it to come back
    farm._check_nodes(now=100.0 + ray_runner.NODE_LOSS_GRACE_S - 1)
    assert not shot.closed and not farm.engine.failed

    class Cancelling(FakeRay):
        cancelled = []

        def cancel(self, ref, force=False):
            self.cancelled.append(ref)

    farm.ray = Cancelling()
    farm._check_nodes(now=100.0 + ray_runner.NODE_LOSS_GRACE_S + ray_runner.NODE_CHECK_S)
    assert shot.closed and farm.ray.cancelled == ["w", "a"]
    (hook, job, message), = farm.engine.failed
    assert hook == "dvd_vfx_job_failed" and job == "job-1"
    assert message.startswith("windows 2-3: no live node of the Ray cluster at h:1 has 1 CPU and 1 GPU for it any "
                              "more (1 live node, 8 CPUs, 0 GPUs, for "), message

    FakeRay.alive = [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}}]  # a node that fits: no failure
    shot2 = ray_runner._Shot(index=1, tasks=None, job="job-2", staging=None)
    farm.pending = {"w2": (shot2, windows)}
    farm._check_nodes(now=1000.0)
    farm._check_nodes(now=1000.0 + 2 * ray_runner.NODE_LOSS_GRACE_S)
    assert not shot2.closed


def test_farm_without_cache_and_without_object_store_is_refused(tmp_path, capsys):
    from dvd_vfx.cli import main

    plate = make_plate(tmp_path / "sh010.mp4", 5)
    with pytest.raises(SystemExit) as exc:
        main(["farm", "ray", str(plate), "-o", str(tmp_path / "o"), "--no-cache", "--object-store", "never", *FAST])
    assert exc.value.code == 2 and "--no-cache with --object-store never" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# A luma predictor that "loads its model" on its first predict, as DVDPredictor does (building a
# predictor for its identity, e.g. in an assemble task, loads nothing), recording each load in LOADS;
# it refuses frames wider than 64 pixels (a wide plate's shot fails).
LOADS_PLUGIN = '''
import os

from dvd_vfx.hookspecs import hookimpl
from dvd_vfx.plugins import PredictorFactory

LOADS = {loads!r}


class Luma:
    name = "loadcount"
    loaded = False

    def identity(self):
        return {{"predictor": self.name, "model_id": "luma", "weights_sha256": "0" * 64}}

    def predict(self, frames):
        if not self.loaded:
            self.loaded = True
            with open(LOADS, "a") as fh:
                fh.write(f"{{os.getpid()}}\\n")
        if frames.shape[2] > 64:  # a wide plate: a shot that fails on its own
            raise ValueError("loadcount takes frames at most 64 pixels wide")
        return (frames.mean(axis=-1) * 0.8 + 0.1).astype("float32")


def create(settings):
    return Luma()


@hookimpl
def dvd_vfx_register_predictors():
    return [PredictorFactory("loadcount", create, "luma; counts model loads")]
'''


def test_model_loads_per_shot_equal_the_workers_used_not_the_windows(cluster, tmp_path):
    """Default --windows-per-task: a shot's windows are split over the cluster's 2 task slots, so
    the model is loaded twice for the shot (once per worker), not once per window."""
    plate = make_plate(tmp_path / "sh010.mp4", 25)
    loads = tmp_path / "loads.txt"
    write_plugin(tmp_path / "plugins", "loadcount", LOADS_PLUGIN.format(loads=str(loads)))
    proc, _ = farm(cluster, [plate], tmp_path / "farm", "--predictor", "loadcount", "--cache-dir", tmp_path / "cache",
                   plugins_dir=tmp_path / "plugins")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "25 frames, 8 windows)" in proc.stdout and "2 model loads" in proc.stdout, proc.stdout
    assert len(set(loads.read_text().split())) == len(loads.read_text().split()) == 2  # 2 processes, 1 load each
    loads.unlink()
    env = {**os.environ, **REFERENCE_ENV}
    done = subprocess.run([sys.executable, "-m", "dvd_vfx.cli", f"--plugins-dir={tmp_path / 'plugins'}", "render",
                           str(plate), "-o", str(tmp_path / "single"), "--no-cache", "--predictor", "loadcount",
                           "--threads", "1", *FAST], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert exr_bytes(tmp_path / "farm") == exr_bytes(tmp_path / "single")


def test_a_warm_task_process_loads_the_model_once_and_a_bad_shot_fails_alone(tmp_path):
    """The process of a warm task (dvd_vfx.farm.ray_worker) renders window parts of several shots with
    one predictor: one model load; a part that fails (a missing plate, a predictor error) reports its
    own job_failed and the next part still runs; the windows land in each part's cache."""
    import pickle

    from dvd_vfx.cache import ShotCache
    from dvd_vfx.jobs import parse_event
    from dvd_vfx.plugins import ModelSettings
    from dvd_vfx.render import RenderOptions

    loads = tmp_path / "loads.txt"
    write_plugin(tmp_path / "plugins", "loadcount", LOADS_PLUGIN.format(loads=str(loads)))
    plates = [make_plate(tmp_path / "a.mp4", 9), make_plate(tmp_path / "wide.mp4", 5, size="128x48"),
              tmp_path / "missing.mp4", make_plate(tmp_path / "b.mp4", 5)]
    items = [{"source": str(p), "options": RenderOptions(out_dir=tmp_path / "out", resolution=48, window=5, overlap=2,
                                                         threads=1),
              "windows": w, "predictor": "loadcount", "model": ModelSettings(device="cpu"),
              "cache_dir": str(tmp_path / "cache"), "cache_max_gb": None}
             for p, w in zip(plates, [(1, 2), (0, 0), (0, 0), (0, 0)])]
    spec = tmp_path / "items.pickle"
    spec.write_bytes(pickle.dumps({"plugins_dirs": (str(tmp_path / "plugins"),), "items": items}))
    done = subprocess.run([sys.executable, "-m", "dvd_vfx.farm.ray_worker", str(spec)], capture_output=True,
                          text=True, timeout=TIMEOUT_S, env={**os.environ, **REFERENCE_ENV})
    assert done.returncode == 0, done.stderr
    events = [e for e in map(parse_event, done.stdout.splitlines()) if e is not None]
    ends = {e["job_id"]: e for e in events if e["event"] in ("job_finished", "job_failed")}
    assert sorted(ends) == ["item-0", "item-1", "item-2", "item-3"]
    assert ends["item-0"]["event"] == ends["item-3"]["event"] == "job_finished"
    assert ends["item-0"]["result"]["predictor_calls"] == 2 and ends["item-3"]["result"]["predictor_calls"] == 1
    assert ends["item-1"]["error"]["message"].endswith("loadcount takes frames at most 64 pixels wide")
    assert ends["item-2"]["error"]["type"] == "InputError" and "missing.mp4" in ends["item-2"]["error"]["message"]
    assert [e["event"] for e in events if e["job_id"] == "item-2"][0] == "job_started"  # each part is a job
    assert loads.read_text().split() == [str(loads.read_text().split()[0])]  # one load for all four parts
    windows = sorted(p.name for p in ShotCache(tmp_path / "cache").root.glob("*/*/window.*.npy"))
    assert windows == ["window.00000.npy", "window.00001.npy", "window.00002.npy"]  # a: 1-2, b: 0
    assert not (tmp_path / "out").exists()  # window parts write no pass
