"""Failures that must not lose data or be misread: NaN/inf predictions (never cached, exit 4) and running
out of GPU memory (exit 75, retried by farms)."""

import json

import numpy as np
import pytest
import torch

from plugin_helpers import FAST, make_plate, write_plugin

from dvd_vfx.cli import main
from dvd_vfx.errors import PERMANENT_EXIT_CODES, DeviceMemoryError, PredictionError
from dvd_vfx.farm import ray_tasks
from dvd_vfx.jobs import error_from_dict, error_to_dict
from dvd_vfx.windows import plan_windows

# Brightness as disparity, except the second window, which comes back with NaN (a broken plugin).
NAN_PLUGIN = '''
    import numpy as np

    from dvd_vfx.hookspecs import hookimpl
    from dvd_vfx.plugins import PredictorFactory


    class Broken:
        name = "broken"
        calls = 0

        def identity(self):
            return {"predictor": "broken", "model_id": "broken-1", "weights_sha256": "0" * 64}

        def predict(self, frames):
            Broken.calls += 1
            out = frames.mean(axis=-1).astype(np.float32)
            if Broken.calls == 2:
                out[1, 2, 3] = np.nan
                out[2] = np.inf
            return out


    @hookimpl
    def dvd_vfx_register_predictors():
        return [PredictorFactory("broken", lambda settings: Broken(), "NaN in window 1 (tests)")]
'''


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([*map(str, argv)])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def cached_windows(cache_dir):
    manifests = list(cache_dir.glob("*/*/manifest.json"))
    assert len(manifests) == 1
    folder = manifests[0].parent
    return sorted(json.loads(manifests[0].read_text())["windows"]), sorted(p.name for p in folder.glob("window.*"))


def test_nan_window_is_named_not_cached_and_exits_4(tmp_path, capsys):
    plate = make_plate(tmp_path / "plate.mp4", 13)
    write_plugin(tmp_path / "plugins", "broken_nan", NAN_PLUGIN)
    code, _, err = run_cli(capsys, "--plugins-dir", tmp_path / "plugins", "render", plate, "-o", tmp_path / "out",
                           "--predictor", "broken", "--cache-dir", tmp_path / "cache", *FAST)
    w1 = plan_windows(13, 5, 2)[1]
    lines = err.strip().splitlines()
    assert code == PredictionError.exit_code == 4
    assert lines[-1].startswith("dvd-vfx: error: ") and "unexpected" not in err
    msg = lines[-1]
    assert f"window 1 (source frames {w1.start + 1}-{w1.start + w1.n_real})" in msg
    assert "NaN/inf" in msg and "nothing was cached for it" in msg
    assert "--dtype" in msg and "plugin 'broken'" in msg
    assert cached_windows(tmp_path / "cache") == (["0"], ["window.00000.npy"])  # window 0 stays, 1 does not
    assert not (tmp_path / "out").exists()


def test_dvd_overflow_names_the_dtype(tmp_path, capsys, tiny_weights, monkeypatch):
    from dvd_vfx.model.predictor import DVDPredictor

    def overflowing(self, frames):
        out = np.full(frames.shape[:3], 0.5, dtype=np.float32)
        out[0, 0, 0] = np.nan
        return out

    monkeypatch.setattr(DVDPredictor, "_predict", overflowing)
    plate = make_plate(tmp_path / "plate.mp4", 5)
    code, _, err = run_cli(capsys, "render", plate, "-o", tmp_path / "out", "--weights", tiny_weights,
                           "--device", "cpu", "--dtype", "fp16", "--no-cache", *FAST)
    assert code == 4
    assert "predictor 'dvd' returned 1 NaN/inf values of" in err and "window 0 (source frames 1-5)" in err
    assert "try --dtype bf16 or fp32 (float16 overflows)" in err
    assert not (tmp_path / "out").exists()


def test_cuda_out_of_memory_exits_75_not_bad_input(tmp_path, capsys, tiny_weights, monkeypatch):
    from dvd_vfx.model.predictor import DVDPredictor

    def oom(self, frames):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(DVDPredictor, "_predict", oom)
    plate = make_plate(tmp_path / "plate.mp4", 5)
    code, _, err = run_cli(capsys, "render", plate, "-o", tmp_path / "out", "--weights", tiny_weights,
                           "--device", "cpu", "--cache-dir", tmp_path / "cache", *FAST)
    lines = err.strip().splitlines()
    assert code == DeviceMemoryError.exit_code == 75
    assert lines[-1].startswith("dvd-vfx: error: out of CPU memory for a 5-frame 64x48 window")
    assert "--offload" in lines[-1] and "retr" in lines[-1]
    assert not (tmp_path / "out").exists()


def test_job_events_carry_the_new_error_classes():
    for error in (DeviceMemoryError("out of memory"), PredictionError("NaN")):
        back = error_from_dict(json.loads(json.dumps(error_to_dict(error))))
        assert type(back) is type(error) and back.exit_code == error.exit_code


def _spec(tmp_path):
    from dvd_vfx.render import RenderOptions

    return ray_tasks.PartSpec(0, "sh010", "windows 0-1", "p.mp4", RenderOptions(out_dir=tmp_path), str(tmp_path),
                              windows=(0, 1))


def test_farm_retries_out_of_memory_and_fails_bad_predictions_at_once(tmp_path):
    def decide(code, error_type):
        error = {"type": error_type, "message": f"{error_type} happened", "exit_code": code}
        return ray_tasks._part_error(_spec(tmp_path), code, error, [f"dvd-vfx: error: {error_type} happened"])

    oom = decide(75, "DeviceMemoryError")
    assert isinstance(oom, ray_tasks.PartCrashed)  # retry_exceptions=[PartCrashed]: Ray runs it again
    assert oom.exit_code == 75 and oom.error_type == "DeviceMemoryError"
    for code, error_type in ((2, "InputError"), (3, "WeightsError"), (4, "PredictionError")):
        failed = decide(code, error_type)
        assert type(failed) is ray_tasks.PartFailed and failed.exit_code == code  # not retried
    assert isinstance(decide(1, "DvdError"), ray_tasks.PartCrashed)
    assert PERMANENT_EXIT_CODES == {2, 3, 4}
