"""The DVD model engine: official checkpoint loading, LoRA merge, single-pass semantics, bad weights."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from dvd_vfx.cli import main
from dvd_vfx.errors import InputError, WeightsError
from dvd_vfx.model.loader import merge_lora
from dvd_vfx.model.predictor import DVDNetworks, DVDPredictor


def _frames(t=5, h=32, w=48, seed=0):
    return np.random.default_rng(seed).random((t, h, w, 3), dtype=np.float32)


def _reference_networks(folder):
    """The tiny model built DIRECTLY: whole-file load, merge in plain torch, diffusers' converters."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from diffusers.loaders.single_file_utils import (convert_wan_transformer_to_diffusers,
                                                     convert_wan_vae_to_diffusers)
    from safetensors.torch import load_file

    from dvd_vfx.model.tiny import TINY_DIT, TINY_VAE

    raw = {k.removeprefix("pipe.dit."): v for k, v in load_file(folder / "dvd_1.1.safetensors").items()}
    merged = {}
    for k, v in raw.items():
        if ".lora_" in k:
            continue
        if ".base_layer." in k:
            module, param = k.split(".base_layer.")
            if param == "weight":
                v = v + raw[f"{module}.lora_B.default.weight"] @ raw[f"{module}.lora_A.default.weight"]
            k = f"{module}.{param}"
        merged[k] = v
    dit = WanTransformer3DModel(**TINY_DIT)
    dit.load_state_dict(convert_wan_transformer_to_diffusers(merged), strict=True)
    vae = AutoencoderKLWan(**TINY_VAE)
    vae.load_state_dict(convert_wan_vae_to_diffusers(torch.load(folder / "Wan2.1_VAE.pth", weights_only=True)),
                        strict=True)
    return dit.eval(), vae.eval()


@torch.no_grad()
def _official_forward(dit, vae, frames):
    """The official DVD inference, restated step by step as the oracle."""
    x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None] * 2 - 1
    mu = vae.encode(x).latent_dist.mean
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    z = (mu - mean) / std
    out = dit(hidden_states=z, timestep=torch.tensor([500.0]),
              encoder_hidden_states=torch.zeros(1, 512, dit.config.text_dim), return_dict=False)[0]
    video = vae.decode(out * std + mean, return_dict=False)[0].clamp(-1, 1)
    return ((video + 1) / 2).mean(dim=1)[0].numpy()


def test_lora_merge_equals_unmerged_computation():
    g = torch.Generator().manual_seed(0)
    w, a, b = torch.randn(48, 32, generator=g), torch.randn(8, 32, generator=g), torch.randn(48, 8, generator=g)
    x = torch.randn(5, 32, generator=g)
    unmerged = x @ w.T + x @ a.T @ b.T
    merged = x @ merge_lora(w, a, b).T
    assert torch.allclose(merged, unmerged, atol=1e-5, rtol=0)


def test_tiny_official_checkpoint_matches_directly_built_model(tiny_weights_master):
    predictor = DVDPredictor(str(tiny_weights_master), device="cpu")
    frames = _frames()
    out = predictor.predict(frames)
    dit, vae = _reference_networks(tiny_weights_master)
    expected = _official_forward(dit, vae, frames)
    assert out.shape == (5, 32, 48) and out.dtype == np.float32
    assert np.abs(out - expected).max() <= 1e-5
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert out.std() > 1e-3  # not a constant map
    assert np.array_equal(out, predictor.predict(frames))  # deterministic
    # the same networks injected directly give the same numbers
    direct = DVDPredictor(networks=DVDNetworks.from_modules(dit, vae), device="cpu").predict(frames)
    assert np.abs(direct - out).max() <= 1e-5


def test_single_frame_and_9_frame_windows(tiny_weights_master):
    predictor = DVDPredictor(str(tiny_weights_master), device="cpu")
    assert predictor.predict(_frames(t=1, h=16, w=16)).shape == (1, 16, 16)
    assert predictor.predict(_frames(t=9, h=16, w=32)).shape == (9, 16, 32)


def test_bf16_on_cpu_is_close_to_fp32(tiny_weights_master):
    frames = _frames()
    fp32 = DVDPredictor(str(tiny_weights_master), device="cpu").predict(frames)
    bf16 = DVDPredictor(str(tiny_weights_master), device="cpu", dtype="bf16").predict(frames)
    assert np.abs(bf16 - fp32).mean() < 0.05


def test_identity_names_model_and_weights(tiny_weights_master):
    ident = DVDPredictor(str(tiny_weights_master), device="cpu").identity()
    assert ident["predictor"] == "dvd" and ident["model_id"] == "dvd-1.1"
    assert len(ident["weights_sha256"]) == 64 and ident["dtype"] == "float32" and ident["device_class"] == "cpu"
    assert ident["vae_tiling"] == "auto"  # tiling changes the predictions: part of the cache key


def test_weights_resolution_env(tiny_weights_master, monkeypatch):
    monkeypatch.setenv("DVD_VFX_WEIGHTS", str(tiny_weights_master))
    assert DVDPredictor(device="cpu").identity()["model_id"] == "dvd-1.1"


def test_import_dvd_vfx_does_not_import_torch():
    code = ("import sys, dvd_vfx, dvd_vfx.errors, dvd_vfx.cli, dvd_vfx.model, dvd_vfx.model.weights, "
            "dvd_vfx.model.checkpoint; bad = [m for m in ('torch', 'diffusers') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_config_json_beside_weights_is_used_and_checked(tiny_weights):
    from dvd_vfx.model.tiny import TINY_DIT

    (tiny_weights / "config.json").write_text(json.dumps(TINY_DIT))
    assert DVDPredictor(str(tiny_weights), device="cpu").predict(_frames(t=1, h=16, w=16)).shape == (1, 16, 16)
    (tiny_weights / "config.json").write_text(json.dumps({**TINY_DIT, "num_layers": 3}))
    with pytest.raises(WeightsError, match=r"config\.json: num_layers = 3 but the tensors"):
        DVDPredictor(str(tiny_weights), device="cpu").load()


# -- bad weights: one line naming the file, exit code 3, no traceback ----------------------------


def _cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    captured = capsys.readouterr()
    _cli.out = captured.out
    return exc.value.code, captured.err.strip()


def test_missing_weights_folder(tmp_path, capsys):
    code, err = _cli(capsys, "weights", "check", str(tmp_path / "nope"))
    assert code == 3 and "does not exist" in err and str(tmp_path / "nope") in err and "weights fetch" in err


def test_missing_vae_file(tiny_weights, capsys):
    (tiny_weights / "Wan2.1_VAE.pth").unlink()
    code, err = _cli(capsys, "weights", "check", str(tiny_weights))
    assert code == 3 and "Wan2.1_VAE.pth" in err and "lacks the VAE" in err


def test_missing_transformer_file(tiny_weights, capsys):
    (tiny_weights / "dvd_1.1.safetensors").unlink()
    code, err = _cli(capsys, "weights", "check", str(tiny_weights))
    assert code == 3 and "lacks the DVD transformer" in err


def test_truncated_safetensors(tiny_weights, capsys):
    path = tiny_weights / "dvd_1.1.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    code, err = _cli(capsys, "weights", "check", str(tiny_weights))
    assert code == 3 and "truncated" in err and str(path) in err
    with pytest.raises(WeightsError, match="truncated"):
        DVDPredictor(str(tiny_weights), device="cpu").load()


def test_corrupt_safetensors_header(tiny_weights, capsys):
    path = tiny_weights / "dvd_1.1.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + b"\0" * 64)
    code, err = _cli(capsys, "weights", "check", str(tiny_weights))
    assert code == 3 and str(path) in err and "re-download" in err


def test_pth_that_is_not_a_vae(tiny_weights, capsys):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tiny_weights / "Wan2.1_VAE.pth")
    code, err = _cli(capsys, "weights", "check", str(tiny_weights))
    assert code == 3 and "not a Wan VAE" in err
    (tiny_weights / "Wan2.1_VAE.pth").write_bytes(b"this is not a pickle")
    code, err = _cli(capsys, "weights", "check", str(tiny_weights))
    assert code == 3 and "not a readable PyTorch weights file" in err and "Wan2.1_VAE.pth" in err


def test_plain_wan_checkpoint_without_lora_loads_with_a_warning(tmp_path, caplog):
    from dvd_vfx.model.tiny import write_tiny_weights

    write_tiny_weights(tmp_path, lora=False, dit_name="model.safetensors")
    with caplog.at_level("WARNING", logger="dvd_vfx.model"):
        out = DVDPredictor(str(tmp_path), device="cpu").predict(_frames(t=1, h=16, w=16))
    assert out.shape == (1, 16, 16)
    assert any("no LoRA keys" in r.getMessage() and "model.safetensors" in r.getMessage() for r in caplog.records)


def _write_header_only(path, shapes):
    from safetensors.torch import save_file

    save_file({k: torch.zeros(s, dtype=torch.float16) for k, s in shapes.items()}, str(path))


def test_14b_checkpoint_is_rejected(tiny_weights, capsys):
    _write_header_only(tiny_weights / "dvd_1.1.safetensors", {"pipe.dit.patch_embedding.weight": (5120, 16, 1, 2, 2)})
    code, err = _cli(capsys, "weights", "check", str(tiny_weights))
    assert code == 3 and "14B" in err and "dvd_1.1.safetensors" in err


def test_other_families_are_rejected(tiny_weights, capsys):
    _write_header_only(tiny_weights / "dvd_1.1.safetensors", {"model.diffusion_model.input_blocks.0.0.weight": (8, 4)})
    code, err = _cli(capsys, "weights", "check", str(tiny_weights))
    assert code == 3 and "not a Wan/DVD transformer checkpoint" in err
    _write_header_only(tiny_weights / "dvd_1.1.safetensors", {"pipe.dit.patch_embedding.weight": (128, 16, 1, 2, 2),
                                                             "pipe.dit.img_emb.proj.0.weight": (4,)})
    code, err = _cli(capsys, "weights", "check", str(tiny_weights))
    assert code == 3 and "image-to-video" in err


def test_cli_error_has_no_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "dvd_vfx.cli", "weights", "check", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert res.returncode == 3
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_weights_check_ok(tiny_weights_master, capsys):
    code, _ = _cli(capsys, "weights", "check", str(tiny_weights_master))
    assert code == 0
    assert "weights OK" in _cli.out and "rank 4" in _cli.out and "CC BY-NC 4.0" in _cli.out


def test_weights_fetch_offline_fails_fast(tmp_path, capsys, monkeypatch):
    import socket
    import time

    def offline(*a, **k):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    t0 = time.monotonic()
    code, err = _cli(capsys, "weights", "fetch", str(tmp_path / "w"))
    assert code == 3 and "offline" in err and time.monotonic() - t0 < 5


@pytest.mark.parametrize("shape, match", [((4, 16, 16, 3), "4n\\+1"), ((5, 20, 16, 3), "multiple of 16"),
                                          ((5, 16, 16), "\\[T,H,W,3\\]")])
def test_predictor_rejects_bad_windows(tiny_weights_master, shape, match):
    with pytest.raises(InputError, match=match):
        DVDPredictor(str(tiny_weights_master), device="cpu").predict(np.zeros(shape, np.float32))


def test_diffusers_format_folder_loads_the_same_model(tiny_weights_master, tmp_path):
    dit, vae = _reference_networks(tiny_weights_master)
    dit.save_pretrained(tmp_path / "transformer")
    vae.save_pretrained(tmp_path / "vae")
    frames = _frames()
    out = DVDPredictor(str(tmp_path), device="cpu").predict(frames)
    assert DVDPredictor(str(tmp_path), device="cpu").model_id == "dvd-diffusers"
    assert np.abs(out - DVDPredictor(str(tiny_weights_master), device="cpu").predict(frames)).max() <= 1e-5


def test_vae_tiling_on_large_frames(tiny_weights_master):
    frames = _frames(t=1, h=288, w=304)
    plain = DVDPredictor(str(tiny_weights_master), device="cpu", vae_tiling=False).predict(frames)
    tiled = DVDPredictor(str(tiny_weights_master), device="cpu", vae_tiling=True).predict(frames)
    assert tiled.shape == plain.shape == (1, 288, 304)
    assert np.abs(tiled - plain).mean() < 0.05  # tiles blend to nearly the same map
