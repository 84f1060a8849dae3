"""dvd-vfx train: LMR loss, LoRA wiring, official-format export, the training loop, resume, CLI errors.

Everything runs on CPU with the tiny official-format model and synthetic clips written here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dvd_vfx.errors import InputError
import torch
from PIL import Image

from dvd_vfx.cli import main
from dvd_vfx.model.predictor import DVDNetworks, DVDPredictor
from dvd_vfx.train import lora
from dvd_vfx.train.loss import dvd_loss, latent_mask, lmr_terms
from footage_helpers import write_exr

RES = 32
FRAMES = 5


# -- synthetic data -------------------------------------------------------------------------------


def make_clip(folder: Path, *, frames: int, seed: int, w: int = 48, h: int = 32, hole: bool = False) -> None:
    """A bright near disk moving over a far, tilted ground: RGB PNGs + depth EXRs (optionally a hole)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, r = rng.uniform(0.3, 0.6) * w, rng.uniform(0.3, 0.7) * h, h / 4
    for i in range(frames):
        disk = (xx - cx - 2 * i) ** 2 + (yy - cy) ** 2 < r * r
        depth = np.where(disk, 2.0, 5.0 + 5.0 * yy / h).astype(np.float32)
        if hole:
            depth[:3, :3] = 0.0  # invalid depth: masked out of the loss
        rgb = np.stack([np.where(disk, 0.9, 0.2 + 0.3 * yy / h), np.where(disk, 0.3, 0.5 - 0.2 * yy / h),
                        0.4 + 0.1 * np.sin(xx / 3)], -1)
        Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(folder / f"rgb.{i + 1:04d}.png")
        write_exr(folder / f"depth.{i + 1:04d}.exr", {"depth.Z": depth})


def make_dataset(root: Path, *, images: bool = True) -> Path:
    make_clip(root / "shots" / "sh010", frames=7, seed=0, hole=True)
    make_clip(root / "shots" / "sh020", frames=6, seed=1)
    text = '[[source]]\nname = "plates"\nweight = 2\nfolders = "shots/*"\nframes = "rgb.####.png"\n' \
           'depth = "depth.####.exr"\n'
    if images:
        make_clip(root / "stills", frames=3, seed=2)
        text += '\n[[source]]\nname = "stills"\nkind = "image"\n' \
                'clips = [ { frames = "stills/rgb.####.png", depth = "stills/depth.####.exr" } ]\n'
    (root / "data.toml").write_text(text)
    return root / "data.toml"


def _config(data, weights, run_dir, **kw):
    from dvd_vfx.train.trainer import TrainConfig

    base = dict(data=str(data), weights=str(weights), run_dir=str(run_dir), steps=50, lr=1e-3, rank=4, frames=FRAMES,
                resolution=RES, checkpoint_every=25, workers=1, progress=False, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def _frames(t=FRAMES, seed=3):
    return np.random.default_rng(seed).random((t, RES, RES, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("train-data"))


@pytest.fixture(scope="module")
def run50(dataset_file, tiny_weights_master, tmp_path_factory):
    """One 50-step run on the mixed (video + image) dataset, with --merge."""
    from dvd_vfx.train.trainer import train

    run_dir = tmp_path_factory.mktemp("run50") / "run"
    result = train(_config(dataset_file, tiny_weights_master, run_dir, merge=True))
    return result


# -- the loss -------------------------------------------------------------------------------------


def _hand_tensors():
    p = torch.arange(8, dtype=torch.float32).view(1, 1, 2, 2, 2)  # t0 [[0,1],[2,3]], t1 [[4,5],[6,7]]
    q = torch.tensor([[[0, 0], [0, 3]], [[1, 1], [1, 1]]], dtype=torch.float32).view(1, 1, 2, 2, 2)
    return p, q


def test_lmr_terms_equal_a_hand_computation():
    p, q = _hand_tensors()
    l_h, l_w, l_t = lmr_terms(p, q)
    # dH: p -> 2 everywhere; q -> t0 [0, 3], t1 [0, 0]; |2-0|,|2-3|,|2-0|,|2-0| -> 7/4
    assert l_h.item() == pytest.approx(1.75)
    # dW: p -> 1 everywhere; q -> t0 [0], [3]; t1 [0], [0]; |1|,|-2|,|1|,|1| -> 5/4
    assert l_w.item() == pytest.approx(1.25)
    # dT: p -> 4 everywhere; q -> [[1,1],[1,-2]]; 3,3,3,6 -> 15/4
    assert l_t.item() == pytest.approx(3.75)
    parts = dvd_loss(p, q, lam=0.5)
    # L2: (p-q) = t0 [[0,1],[2,0]], t1 [[3,4],[5,6]] -> (0+1+4+0+9+16+25+36)/8
    assert parts.l2.item() == pytest.approx(91 / 8)
    assert parts.sp.item() == pytest.approx(1.75 + 1.25) and parts.temp.item() == pytest.approx(3.75)
    assert parts.total.item() == pytest.approx(91 / 8 + 0.5 * (1.75 + 1.25 + 3.75))
    assert dvd_loss(p, q, lam=0.0).total.item() == pytest.approx(91 / 8)


def test_lmr_one_frame_has_no_temporal_term_and_identical_inputs_give_zero():
    p, q = _hand_tensors()
    one = dvd_loss(p[:, :, :1], q[:, :, :1], lam=0.5)
    assert not one.has_temporal and one.temp.item() == 0.0
    # t0 only: dH |2-0|,|2-3| -> 1.5; dW |1-0|,|1-3| -> 1.5; L2 (0+1+4+0)/4
    assert one.sp.item() == pytest.approx(3.0) and one.total.item() == pytest.approx(1.25 + 0.5 * 3.0)
    x = torch.randn(2, 16, 3, 4, 5)
    same = dvd_loss(x, x.clone())
    assert same.total.item() == 0.0 and same.l2.item() == 0.0 and same.sp.item() == 0.0 and same.temp.item() == 0.0
    assert same.has_temporal


def test_latent_mask_and_masked_loss():
    valid = torch.ones(1, 5, 16, 16, dtype=torch.bool)
    valid[0, 3, 9, 2] = False  # frame 3 -> latent frame 1 (frames 1-4), pixel (9, 2) -> cell (1, 0)
    m = latent_mask(valid)
    assert m.shape == (1, 1, 2, 2, 2) and m.sum().item() == 7 and m[0, 0, 1, 1, 0].item() == 0.0
    p, q = _hand_tensors()
    full = torch.ones(1, 1, 2, 2, 2)
    assert dvd_loss(p, q, mask=full).total.item() == pytest.approx(dvd_loss(p, q).total.item())
    first_only = full.clone()
    first_only[:, :, 1] = 0  # keep latent frame 0: no temporal pair survives
    masked = dvd_loss(p, q, lam=0.5, mask=first_only)
    assert masked.temp.item() == 0.0
    assert masked.total.item() == pytest.approx(dvd_loss(p[:, :, :1], q[:, :, :1], lam=0.5).total.item())
    nothing = dvd_loss(p, q, mask=torch.zeros_like(full))
    assert nothing.total.item() == 0.0  # no kept cell: zero, not NaN


# -- LoRA ------------------------------------------------------------------------------------------


def _loaded(folder):
    from dvd_vfx.model.loader import load_transformer, load_vae
    from dvd_vfx.model.weights import find_weight_files

    files = find_weight_files(folder)
    dit, _ = load_transformer(files, torch.float32)
    return dit, load_vae(files, torch.float32), files


def test_gradients_reach_only_lora_parameters(tiny_weights_master):
    from dvd_vfx.model.predictor import run_transformer

    dit, _vae, _ = _loaded(tiny_weights_master)
    torch.manual_seed(0)
    wrapped = lora.add_lora(dit, rank=4)
    assert len(wrapped) == 20  # 2 blocks x (self q,k,v,o + cross q,k,v,o + ffn.0, ffn.2)
    assert sorted({o.split(".", 2)[2] for o in wrapped.values()}) == sorted(
        [f"{a}.{t}" for a in ("self_attn", "cross_attn") for t in "qkvo"] + ["ffn.0", "ffn.2"])
    trainable = {n for n, p in dit.named_parameters() if p.requires_grad}
    assert trainable == set(lora.lora_parameters(dit)) and all(".lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in dit.named_parameters() if not p.requires_grad}
    dit.enable_gradient_checkpointing()
    dit.train()
    opt = torch.optim.AdamW(lora.lora_parameters(dit).values(), lr=1e-2)
    z, target = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 16, 2, 4, 4)
    for _ in range(2):
        opt.zero_grad()
        dvd_loss(run_transformer(dit, z), target).total.backward()
        with_grad = {n for n, p in dit.named_parameters() if p.grad is not None}
        assert with_grad and with_grad <= trainable
        opt.step()
    grads = {n: p.grad.abs().sum().item() for n, p in dit.named_parameters() if p.grad is not None}
    assert all(v > 0 for n, v in grads.items() if "lora_B" in n)
    assert all(v > 0 for n, v in grads.items() if "lora_A" in n)  # after one step lora_B != 0
    for n, p in dit.named_parameters():
        if n in before:
            assert torch.equal(p, before[n]), n


def test_fresh_lora_is_the_loaded_model_at_step_0(tiny_weights_master):
    dit, vae, _ = _loaded(tiny_weights_master)
    frames = _frames()
    reference = DVDPredictor(networks=DVDNetworks.from_modules(dit, vae), device="cpu").predict(frames)
    lora.add_lora(dit, rank=4)
    wrapped = DVDPredictor(networks=DVDNetworks.from_modules(dit.eval(), vae), device="cpu").predict(frames)
    assert np.array_equal(reference, wrapped)


def test_export_folds_alpha_and_pads_the_official_targets(tiny_weights_master, tmp_path):
    from safetensors import safe_open

    from dvd_vfx.train import export

    dit, vae, files = _loaded(tiny_weights_master)
    torch.manual_seed(1)
    lora.add_lora(dit, rank=4, alpha=12.0, targets=("q", "v", "ffn.0"))
    with torch.no_grad():
        for n, p in lora.lora_parameters(dit).items():
            if "lora_B" in n:
                p.normal_(0.0, 0.05)
    frames = _frames()
    in_memory = DVDPredictor(networks=DVDNetworks.from_modules(dit.eval(), vae), device="cpu").predict(frames)
    folder = export.write_lora_folder(tmp_path / "out", dit, source=files, rank=4, alpha=12.0)
    loaded = DVDPredictor(str(folder), device="cpu").predict(frames)
    assert np.abs(loaded - in_memory).max() <= 1e-5
    assert not np.array_equal(loaded, DVDPredictor(str(tiny_weights_master), device="cpu").predict(frames))
    with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
        keys = set(fh.keys())
        assert all(k.startswith("pipe.dit.") for k in keys)
        for attn in ("self_attn", "cross_attn"):
            for t in "qkvo":
                m = f"pipe.dit.blocks.1.{attn}.{t}"
                assert {f"{m}.base_layer.weight", f"{m}.base_layer.bias", f"{m}.lora_A.default.weight",
                        f"{m}.lora_B.default.weight"} <= keys
        # k was not trained: an all-zero pair so the official strict load still finds every key
        assert not fh.get_tensor("pipe.dit.blocks.0.self_attn.k.lora_B.default.weight").any()
        assert fh.get_tensor("pipe.dit.blocks.0.self_attn.q.lora_B.default.weight").any()
        assert "pipe.dit.blocks.0.ffn.2.lora_A.default.weight" in keys and "pipe.dit.head.head.weight" in keys
    with safe_open(str(tiny_weights_master / "dvd_1.1.safetensors"), framework="pt") as fh:
        assert keys == set(fh.keys())  # exactly the key set of an official-format release
    assert "lora_rank: 4" in (folder / "model_config.yaml").read_text()
    assert (folder / "Wan2.1_VAE.pth").stat().st_ino == (tiny_weights_master / "Wan2.1_VAE.pth").stat().st_ino


# -- the training loop ------------------------------------------------------------------------------


def test_50_steps_reduce_the_training_loss(run50, capsys):
    losses = [r["loss"] for r in run50.records]
    assert len(losses) == 50 and [r["step"] for r in run50.records] == list(range(1, 51))
    first, last = float(np.mean(losses[:5])), float(np.mean(losses[-5:]))
    with capsys.disabled():
        print(f"\n50 tiny-model steps: loss mean of the first 5 = {first:.4f}, of the last 5 = {last:.4f} "
              f"({last / first:.0%})")
    assert last < 0.6 * first
    log = (run50.run_dir / "log.csv").read_text().splitlines()
    assert log[0] == "step,loss,l2,sp,temp,lr,seconds,kinds,kept" and len(log) == 51
    summary = json.loads((run50.run_dir / "log.json").read_text())["summary"]
    assert summary["steps"] == 50 and summary["loss_last5"] == pytest.approx(last)
    assert (run50.run_dir / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_mixed_dataset_trains_images_and_videos(run50):
    kinds = [r["kinds"] for r in run50.records]
    assert "image" in kinds and "video" in kinds
    assert all(r["temp"] == 0.0 for r in run50.records if r["kinds"] == "image")  # T=1: no temporal term
    assert all(r["temp"] > 0.0 for r in run50.records if r["kinds"] == "video")


def test_checkpoint_loads_through_the_production_loader_and_predicts_identically(run50):
    final = run50.run_dir / "final"
    frames = _frames()
    in_memory = DVDPredictor(networks=run50.networks, device="cpu").predict(frames)
    from_disk = DVDPredictor(str(final), device="cpu").predict(frames)
    assert np.abs(from_disk - in_memory).max() <= 1e-5
    assert sorted(p.name for p in (run50.run_dir / "checkpoints").iterdir()) == ["step-000025", "step-000050"]
    ckpt = DVDPredictor(str(run50.run_dir / "checkpoints" / "step-000050"), device="cpu").predict(frames)
    assert np.array_equal(ckpt, from_disk)


def test_merged_model_predicts_like_the_lora_checkpoint(run50, tiny_weights_master, caplog):
    from safetensors import safe_open

    frames = _frames()
    lora_out = DVDPredictor(str(run50.final), device="cpu").predict(frames)
    with caplog.at_level("WARNING", logger="dvd_vfx"):
        merged = DVDPredictor(str(run50.merged), device="cpu")
        merged_out = merged.predict(frames)
    assert "plain Wan backbone" not in caplog.text  # a merged fine-tune is DVD, not a bare backbone
    # EXR headers and cache identities name the fine-tune: the base model's id + the run's name
    assert merged.identity()["model_id"] == f"dvd-1.1+{run50.run_dir.name}"
    assert np.abs(merged_out - lora_out).max() <= 1e-5
    with safe_open(str(run50.merged / "model.safetensors"), framework="pt") as fh:
        assert not any(".lora_" in k or ".base_layer." in k for k in fh.keys())
    base = DVDPredictor(str(tiny_weights_master), device="cpu").predict(frames)
    assert np.abs(merged_out - base).max() > 1e-3  # training changed the model


def test_exported_checkpoints_pass_weights_check(run50, capsys):
    outputs = []
    for folder in (run50.final, run50.merged):
        with pytest.raises(SystemExit) as exc:
            main(["weights", "check", str(folder), "--no-hash"])
        outputs.append(capsys.readouterr().out)
        assert exc.value.code == 0 and "weights OK" in outputs[-1]
    assert "LoRA: 20 adapted modules, rank 4" in outputs[0]
    assert "LoRA: merged into the weights by `dvd-vfx train --merge` (rank 4)" in outputs[1]
    assert f"model id: dvd-1.1+{run50.run_dir.name}" in outputs[0]


def test_resume_continues_from_the_same_step_with_the_same_losses(run50, dataset_file, tiny_weights_master, tmp_path):
    from dvd_vfx.train.trainer import train

    run_dir = tmp_path / "run"

    def kill_at_7(step, record):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_config(dataset_file, tiny_weights_master, run_dir, steps=10, checkpoint_every=5), on_step=kill_at_7)
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step-000005"]
    assert not (run_dir / "final").exists()
    resumed = train(_config(dataset_file, tiny_weights_master, run_dir, steps=10, checkpoint_every=5, resume=True))
    straight = run50.records[:10]
    assert [r["step"] for r in resumed.records] == list(range(1, 11))
    for a, b in zip(resumed.records, straight):
        assert a["kinds"] == b["kinds"]
        for key in ("loss", "l2", "sp", "temp"):
            assert a[key] == pytest.approx(b[key], abs=1e-6, rel=0), (a["step"], key)
    log = (run_dir / "log.csv").read_text().splitlines()
    assert len(log) == 11 and log[6].startswith("6,")  # steps 6-7 of the killed run were replaced
    assert resumed.summary["steps_this_run"] == 5


# -- the command line ----------------------------------------------------------------------------


def _cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    return exc.value.code, capsys.readouterr().err.strip()


def test_cli_errors_are_one_line(run50, dataset_file, tiny_weights_master, tmp_path, capsys):
    common = ["train", "--data", str(dataset_file), "--weights", str(tiny_weights_master), "--no-progress"]
    code, err = _cli(capsys, *common, "-o", str(tmp_path / "a"), "--resolution", "250")
    assert code == 2 and "multiples of 16" in err and "250" in err and len(err.splitlines()) == 1
    code, err = _cli(capsys, *common, "-o", str(tmp_path / "a"), "--frames", "6")
    assert code == 2 and "4n+1" in err and "use 5 or 9" in err
    code, err = _cli(capsys, *common, "-o", str(tmp_path / "a"), "--targets", "q,attn")
    assert code == 2 and "attn" in err
    code, err = _cli(capsys, *common, "-o", str(tmp_path / "a"), "--frames", "9", "--device", "cpu")
    assert code == 2 and "source 'plates': no clip has the 9 frames" in err and "longest has 7" in err
    code, err = _cli(capsys, "train", "--data", str(tmp_path / "nope.toml"), "-o", str(tmp_path / "a"))
    assert code == 2 and "nope.toml" in err and "not found" in err
    code, err = _cli(capsys, "train", "--data", str(dataset_file), "--weights", str(tmp_path / "none"),
                     "-o", str(tmp_path / "a"))
    assert code == 3 and "does not exist" in err
    code, err = _cli(capsys, *common, "-o", str(run50.run_dir), "--steps", "60")
    assert code == 2 and "--resume" in err and "step-000050" in err
    code, err = _cli(capsys, *common, "-o", str(run50.run_dir), "--steps", "60", "--resume", "--lr", "1e-4",
                     "--rank", "4", "--frames", str(FRAMES), "--resolution", str(RES))
    assert code == 2 and "other settings" in err and "lr" in err
    assert not (tmp_path / "a").exists()  # nothing written on failure


def test_train_help_and_python_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "dvd_vfx.cli", "train", "--help"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    assert "accelerate launch -m dvd_vfx.cli train" in text and "--resume" in text


def test_out_of_memory_is_one_line_with_what_to_lower(dataset_file, tiny_weights_master, tmp_path, monkeypatch):
    import torch

    from dvd_vfx.train import trainer

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer, "_micro_step", oom)
    with pytest.raises(InputError, match=r"out of GPU memory at step 1 .*lower --frames, --resolution"):
        trainer.train(_config(dataset_file, tiny_weights_master, tmp_path / "run", steps=2))


def test_logged_temporal_term_averages_video_micro_batches_only(dataset_file, tiny_weights_master, tmp_path,
                                                              monkeypatch):
    """With --accum and mixed data, image micro-batches (no temporal term) must not dilute L_temp in the log."""
    from dvd_vfx.train import trainer
    from dvd_vfx.train.loss import LossParts

    def fixed_parts(batch, model, *args, **kwargs):
        zero = sum((p * 0).sum() for p in model.parameters() if p.requires_grad)
        video = batch["kind"] == "video"
        return LossParts(total=zero + 1.0, l2=zero + 0.5, sp=zero + 0.25, temp=zero + (1.0 if video else 0.0),
                         has_temporal=video), 1

    monkeypatch.setattr(trainer, "_micro_step", fixed_parts)
    records = []
    trainer.train(_config(dataset_file, tiny_weights_master, tmp_path / "run", steps=8, accum=3),
                  on_step=lambda step, record: records.append(record))
    mixed = [r for r in records if r["kinds"] == "image+video"]
    assert mixed, "the mixed dataset should give steps with both kinds"
    for r in records:
        assert r["l2"] == pytest.approx(0.5) and r["sp"] == pytest.approx(0.25)
        assert r["temp"] == pytest.approx(0.0 if r["kinds"] == "image" else 1.0)
