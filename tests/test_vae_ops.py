"""Issue 21, item 2: leaner VAE ops give the stock bits (dvd_vfx.model.vae_ops)."""

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers.models.autoencoders.autoencoder_kl_wan import WanUpsample  # noqa: E402

from dvd_vfx.model.tiny import build_tiny_networks  # noqa: E402
from dvd_vfx.model.vae_ops import native_upsample  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("scale", [(2.0, 2.0), (2.0, 3.0)])
def test_native_upsample_is_bit_identical_per_op(dtype, scale):
    stock = WanUpsample(scale_factor=scale, mode="nearest-exact")
    lean = copy.deepcopy(stock)
    assert native_upsample(torch.nn.Sequential(lean)) == 1
    x = (torch.randn(3, 8, 7, 11, generator=torch.Generator().manual_seed(1)) * 40).to(dtype)
    a, b = stock(x), lean(x)
    assert b.dtype == dtype and b.shape == a.shape and torch.equal(a, b)


def test_non_integer_scales_and_other_modes_keep_the_stock_path():
    layers = torch.nn.Sequential(WanUpsample(scale_factor=(1.5, 1.5), mode="nearest-exact"),
                                 WanUpsample(scale_factor=(2.0, 2.0), mode="bilinear"))
    assert native_upsample(layers) == 0
    assert all("forward" not in m.__dict__ for m in layers)


def test_the_whole_vae_decodes_and_encodes_the_same_bits_in_bf16():
    _, vae = build_tiny_networks(seed=5)
    stock = vae.to(torch.bfloat16).eval()
    lean = copy.deepcopy(stock)
    n = native_upsample(lean)
    assert n > 0 and native_upsample(lean) == 0  # every upsample of the decoder, once
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(1, 3, 9, 32, 48, generator=g) * 2 - 1).to(torch.bfloat16)
    with torch.inference_mode():
        za, zb = stock.encode(x).latent_dist.mode(), lean.encode(x).latent_dist.mode()
        assert torch.equal(za, zb)
        a, b = stock.decode(za, return_dict=False)[0], lean.decode(zb, return_dict=False)[0]
    assert a.shape == (1, 3, 9, 32, 48) and torch.equal(a, b)


def test_the_predictor_installs_it():
    from dvd_vfx.model.predictor import DVDNetworks, DVDPredictor

    dit, vae = build_tiny_networks(seed=5)
    predictor = DVDPredictor(networks=DVDNetworks.from_modules(dit.eval(), vae.eval()), device="cpu")
    nets = predictor.load()
    assert [m for m in nets.vae.modules() if isinstance(m, WanUpsample)]
    assert all("forward" in m.__dict__ for m in nets.vae.modules() if isinstance(m, WanUpsample))
