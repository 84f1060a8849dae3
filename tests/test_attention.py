"""The cross-attention fold (bit-identical to the stock path) and --attention (dvd_vfx.model.attention)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dvd_vfx.errors import InputError
from dvd_vfx.model.attention import FoldedCrossAttention, fold_cross_attention
from dvd_vfx.model.predictor import DVDNetworks, DVDPredictor, run_transformer
from dvd_vfx.model.tiny import TINY_DIT, build_tiny_networks

# a little wider than the tiny test model: several heads and layers, a bigger text projection
DIT = {**TINY_DIT, "num_attention_heads": 2, "attention_head_dim": 64, "num_layers": 3, "text_dim": 96}


def _nets(dtype=torch.float32):
    dit, vae = build_tiny_networks(seed=3, dit_config=DIT)
    return DVDNetworks.from_modules(dit.to(dtype).eval(), vae.to(dtype).eval())


def _windows(n=2, t=9, h=32, w=48):
    rng = np.random.default_rng(7)
    return [rng.random((t, h, w, 3), dtype=np.float32) for _ in range(n)]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_folded_predictor_is_bit_identical_to_the_stock_one(dtype):
    stock = DVDPredictor(networks=_nets(), device="cpu", dtype=dtype, fold_cross_attention=False)
    folded = DVDPredictor(networks=_nets(), device="cpu", dtype=dtype)
    if dtype == "bf16":
        for p in (stock, folded):
            p.load().transformer.to(torch.bfloat16)
            p.load().vae.to(torch.bfloat16)
    for frames in _windows():  # the second window reuses the rows computed on the first
        np.testing.assert_array_equal(folded.predict(frames), stock.predict(frames))
    processors = [b.attn2.processor for b in folded.load().transformer.blocks]
    assert all(isinstance(p, FoldedCrossAttention) for p in processors)
    assert all(p.folded_calls == 1 for p in processors)  # really folded on the second window
    assert not any(isinstance(b.attn2.processor, FoldedCrossAttention) for b in stock.load().transformer.blocks)


@torch.inference_mode()
def test_fold_in_the_dit_alone_in_bf16_and_a_real_context_runs_stock():
    nets = _nets(torch.bfloat16)
    stock = _nets(torch.bfloat16)
    assert fold_cross_attention(nets.transformer) == DIT["num_layers"]
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        z = torch.randn(1, 16, 3, 8, 12, generator=gen).to(torch.bfloat16)
        assert torch.equal(run_transformer(nets.transformer, z), run_transformer(stock.transformer, z))
    # a text context that is not constant: the stock processor, the same bits, nothing folded
    calls = [b.attn2.processor.folded_calls for b in nets.transformer.blocks]
    ctx = torch.randn(1, 512, DIT["text_dim"], generator=gen).to(torch.bfloat16)
    z = torch.randn(1, 16, 3, 8, 12, generator=gen).to(torch.bfloat16)
    t = torch.full((1,), 500.0)
    a = nets.transformer(hidden_states=z, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]
    b = stock.transformer(hidden_states=z, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]
    assert torch.equal(a, b)
    assert [b.attn2.processor.folded_calls for b in nets.transformer.blocks] == calls


def test_the_fold_steps_aside_for_training():
    nets = _nets()
    fold_cross_attention(nets.transformer)
    z = torch.randn(1, 16, 3, 8, 12, generator=torch.Generator().manual_seed(1))
    run_transformer(nets.transformer, z).sum().backward()  # grads flow through the stock attention
    assert all(b.attn2.processor.folded_calls == 0 for b in nets.transformer.blocks)
    assert nets.transformer.blocks[0].attn2.to_q.weight.grad is not None


def test_attention_backend_choice_is_recorded_and_checked():
    auto = DVDPredictor(networks=_nets(), device="cpu")
    math = DVDPredictor(networks=_nets(), device="cpu", attention="math")
    assert "attention" not in auto.identity()  # the cache keys of earlier renders stay valid
    assert math.identity()["attention"] == "math"
    frames = _windows(1)[0]
    np.testing.assert_allclose(math.predict(frames), auto.predict(frames), atol=2e-5)
    with pytest.raises(InputError, match="--attention cudnn needs a CUDA device"):
        DVDPredictor(networks=_nets(), device="cpu", attention="cudnn")
    with pytest.raises(InputError, match="unknown --attention 'fast'"):
        DVDPredictor(networks=_nets(), device="cpu", attention="fast")


def test_the_fold_follows_weights_changed_in_place():
    """Weights trained (changed in place) after a prediction: the layer's row is computed again."""
    nets, stock = _nets(), _nets()
    fold_cross_attention(nets.transformer)
    z = torch.randn(1, 16, 3, 8, 12, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        run_transformer(nets.transformer, z)
    with torch.no_grad():
        for t in (nets.transformer, stock.transformer):
            t.blocks[1].attn2.to_v.weight.mul_(1.5)
            t.blocks[1].attn2.to_out[0].bias.add_(0.25)
    with torch.inference_mode():
        assert torch.equal(run_transformer(nets.transformer, z), run_transformer(stock.transformer, z))


def test_the_vae_memory_plan_is_said_and_warns_when_it_will_not_fit():
    from dvd_vfx.model.predictor import memory_plan

    msg, fits = memory_plan(81, 720, 1280, torch.bfloat16, False, False, free_bytes=12 * 2**30)
    # 141 B a pixel-frame (the meta-device replay's 9.79 GiB) + 2.85 GiB of weights: over 12 GiB
    assert not fits and "about 12.7 GiB" in msg and "12.0 GiB are free" in msg and "--vae-tiling" in msg
    msg, fits = memory_plan(81, 480, 848, torch.bfloat16, False, True, free_bytes=12 * 2**30)
    assert fits and msg == ("VAE tiling off for 81x848x480 windows (automatic: on above 1280x720); "
                            "the decode needs about 7.2 GiB with the weights")
    assert memory_plan(81, 720, 1280, torch.float32, False, False, free_bytes=24 * 2**30)[1] is False
    assert memory_plan(81, 1088, 1920, torch.bfloat16, True, True) == (
        "VAE tiling on for 81x1920x1088 windows (automatic: on above 1280x720)", True)
    assert memory_plan(81, 720, 1280, torch.bfloat16, False, False, free_bytes=11 * 2**30, offload=True)[1]


def test_fp32_decoder_head_is_closer_to_the_fp32_reference_and_recorded():
    """Issue 21, item 6: bf16 with the decoder's last layer in float32, measured against fp32."""
    frames = _windows(1, t=5)[0]
    ref = DVDPredictor(networks=_nets(), device="cpu", dtype="fp32").predict(frames)
    bf16_nets = _nets(torch.bfloat16)
    stock = DVDPredictor(networks=bf16_nets, device="cpu", dtype="bf16")
    head = DVDPredictor(networks=bf16_nets, device="cpu", dtype="bf16", fp32_decoder_head=True)
    a, b = stock.predict(frames), head.predict(frames)
    err_stock, err_head = np.abs(a - ref), np.abs(b - ref)
    print(f"max |error| bf16 {err_stock.max():.2e} -> fp32 head {err_head.max():.2e}; rms "
          f"{np.sqrt((err_stock ** 2).mean()):.2e} -> {np.sqrt((err_head ** 2).mean()):.2e}; distinct values "
          f"{np.unique(a).size} -> {np.unique(b).size} (fp32 {np.unique(ref).size})")
    assert np.sqrt((err_head ** 2).mean()) < np.sqrt((err_stock ** 2).mean())
    assert np.unique(b).size > np.unique(a).size
    assert np.array_equal(stock.predict(frames), a)  # the shared networks got their stock layer back
    assert head.identity()["decoder_head"] == "fp32" and "decoder_head" not in stock.identity()
    assert "decoder_head" not in DVDPredictor(networks=_nets(), device="cpu", dtype="fp32",
                                              fp32_decoder_head=True).identity()  # fp32 already
