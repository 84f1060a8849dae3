"""Farm planning: tasks address exactly the engine's windows and frames, and task flags rebuild the options."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace
from pathlib import Path

import pytest

from dvd_vfx import cli, cli_args
from dvd_vfx.render import RenderOptions
from dvd_vfx.errors import InputError
from dvd_vfx.farm.plan import chunks, plan_shot, task_model, warm_tasks
from dvd_vfx.plugins import ModelSettings
from dvd_vfx.windows import plan_windows
from footage_helpers import make_testsrc


def test_chunks_cover_the_range_once():
    assert chunks(0, 6, 3) == [(0, 2), (3, 5), (6, 6)]
    assert chunks(1001, 1001, 5) == [(1001, 1001)]
    with pytest.raises(InputError):
        chunks(0, 3, 0)


def test_plan_matches_the_engine_windows(tmp_path):
    movie = make_testsrc(tmp_path / "plate.mp4", frames=30)
    options = RenderOptions(out_dir=tmp_path / "out", window=9, overlap=4, start_frame=1001, frames=(1003, 1027))
    tasks = plan_shot(movie, options, windows_per_task=2, frames_per_task=10)
    expected = plan_windows(25, 9, 4)
    assert tasks.shot == "plate" and tasks.frame_range == (1003, 1027)
    assert tasks.n_windows == len(expected)
    flat = [i for a, b in tasks.window_chunks for i in range(a, b + 1)]
    assert flat == list(range(len(expected)))
    assert tasks.frame_chunks == [(1003, 1012), (1013, 1022), (1023, 1027)]
    whole = plan_shot(movie, options)
    assert whole.window_chunks == [(i, i) for i in range(len(expected))] and whole.frame_chunks == [(1003, 1027)]


def test_plan_rejects_bad_inputs_with_the_value(tmp_path):
    movie = make_testsrc(tmp_path / "plate.mp4", frames=12)
    with pytest.raises(InputError, match="--windows-per-task 0"):
        plan_shot(movie, RenderOptions(out_dir=tmp_path), windows_per_task=0)
    with pytest.raises(InputError, match="frame range 5-40"):
        plan_shot(movie, RenderOptions(out_dir=tmp_path, frames=(5, 40)))


@pytest.mark.parametrize("options", [
    RenderOptions(out_dir=Path("/farm/out")),
    RenderOptions(out_dir=Path("out dir"), shot="sh 010", frames=(1001, 1040), start_frame=1001,
                  fps=Fraction(24000, 1001), hold_missing=True, colorspace="linear", resolution=240, window=17,
                  overlap=5, mode="disparity", near=0.1, far=1e4, invert=True, upsample="guided",
                  compression="piz", preview=True),
    RenderOptions(out_dir=Path("out"), part="rgba.left", view="left"),
    RenderOptions(out_dir=Path("out"), part="0"),
])
def test_render_flags_rebuild_the_options(options):
    args = cli.build_parser().parse_args(["render", "SRC", *cli_args.render_flags(options)])
    cli_args.apply_preset(args)
    assert cli_args.render_options(args) == options


@pytest.mark.parametrize("device, gpus, message", [
    ("cuda", 0, "--device cuda needs --gpus-per-task N"),
    ("cpu", 1, "--gpus-per-task 1 with --device cpu"),
    ("cuda:1", 1, "the farm picks the GPU of each task"),
])
def test_device_and_gpu_flags_must_agree(device, gpus, message):
    with pytest.raises(InputError, match=message):
        task_model(ModelSettings(device=device), gpus)


def test_auto_device_is_made_explicit_for_every_task():
    """The cache key holds the device class: window and assemble tasks must not each resolve 'auto'."""
    assert task_model(ModelSettings(), 0).device == "cpu"
    assert task_model(ModelSettings(), 0.5).device == "cuda"
    assert task_model(ModelSettings(weights="w"), 0).weights == str(Path("w").resolve())


def test_ray_keeps_the_model_warm_one_window_task_per_slot():
    from dvd_vfx.farm.ray_runner import FarmSettings, model_loads, task_slots

    nodes = [{"Resources": {"CPU": 16, "GPU": 2}}, {"Resources": {"CPU": 8, "GPU": 1}}, {"Resources": {"CPU": 4}}]
    assert task_slots(nodes, FarmSettings(None, gpus_per_task=1, cpus_per_task=4)) == 3  # GPUs bound the GPU nodes
    assert task_slots(nodes, FarmSettings(None, gpus_per_task=0, cpus_per_task=4)) == 4 + 2 + 1
    assert warm_tasks([("m", 17)], 3) == [[(0, 0, 5)], [(0, 6, 11)], [(0, 12, 16)]]  # 3 workers: 3 loads, not 17
    assert warm_tasks([("m", 2)], 8) == [[(0, 0, 0)], [(0, 1, 1)]]
    parts = [SimpleNamespace(kind="windows", attempts=1, loads=None, result={"result": {"predictor_calls": 6}}),
             SimpleNamespace(kind="windows", attempts=2, loads=None, result={"result": {"predictor_calls": 5}}),  # retried
             SimpleNamespace(kind="windows", attempts=1, loads=None, result={"result": {"predictor_calls": 0}}),  # cached
             SimpleNamespace(kind="windows", attempts=1, loads=0, result={"result": {"predictor_calls": 3}}),  # warm process
             SimpleNamespace(kind="windows", attempts=1, loads=1, result={"result": {"predictor_calls": 3}}),  # its 1st
             SimpleNamespace(kind="assemble", attempts=1, loads=None, result={"result": {"predictor_calls": 0}})]
    assert model_loads(parts) == 4


def test_warm_tasks_spread_a_batch_over_the_slots_one_load_each_per_model():
    """A batch's windows, in shot order, cut into at most `slots` even runs split at shot boundaries:
    model loads for the batch = tasks = slots per distinct model, not shots x slots."""
    three = warm_tasks([("m", 4), ("m", 4), ("m", 4)], 2)
    assert three == [[(0, 0, 3), (1, 0, 1)], [(1, 2, 3), (2, 0, 3)]]
    for slots in (1, 2, 3, 5, 40):
        tasks = warm_tasks([("m", 5), ("m", 1), ("m", 7)], slots)
        assert len(tasks) == min(slots, 13)
        covered = sorted((i, k) for items in tasks for i, a, b in items for k in range(a, b + 1))
        assert covered == [(0, k) for k in range(5)] + [(1, 0)] + [(2, k) for k in range(7)]  # each window once
        sizes = [sum(b - a + 1 for _, a, b in items) for items in tasks]
        assert sizes[:-1] == [-(-13 // slots)] * (len(sizes) - 1) and 0 < sizes[-1] <= sizes[0]
    # two model settings never share a task: each gets its own slots' worth of tasks (a load per task)
    mixed = warm_tasks([("fp16", 3), ("bf16", 2), ("fp16", 3)], 2)
    assert mixed == [[(0, 0, 2)], [(2, 0, 2)], [(1, 0, 0)], [(1, 1, 1)]]
    assert warm_tasks([("m", 0), ("m", 2)], 2) == [[(1, 0, 0)], [(1, 1, 1)]]
    with pytest.raises(InputError):
        warm_tasks([("m", 2)], 0)


def test_a_batch_rows_model_settings_keep_their_own_warm_tasks(tmp_path):
    """`farm ray --batch`: a row whose preset or columns change the model settings (as in `dvd-vfx batch`)
    gets them on its tasks, and never shares a warm task (one loaded model) with rows of other settings."""
    from dvd_vfx.farm.plan import plan_batch

    plates = [make_testsrc(tmp_path / f"{name}.mp4", frames=9) for name in ("a", "b", "c")]
    shots = tmp_path / "shots.csv"
    shots.write_text(f"source,dtype\n{plates[0]},\n{plates[1]},fp32\n{plates[2]},\n")
    args = cli.build_parser().parse_args(["farm", "ray", "--batch", str(shots), "-o", str(tmp_path / "{shot}"),
                                          "--resolution", "48", "--window", "5", "--overlap", "2", "--dtype", "bf16"])
    cli_args.apply_preset(args)
    planned = plan_batch(args, lambda o: o)
    assert [s.model.dtype for s in planned] == ["bf16", "fp32", "bf16"]
    assert [s.n_windows for s in planned] == [3, 3, 3]
    tasks = warm_tasks([((s.predictor, s.model), s.n_windows) for s in planned], 2)
    assert tasks == [[(0, 0, 2)], [(2, 0, 2)], [(1, 0, 1)], [(1, 2, 2)]]  # 2 loads per model setting
