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


# -- causal convolutions: spatial padding inside the convolution (bit-identical) -------------------

from diffusers.models.autoencoders.autoencoder_kl_wan import (  # noqa: E402
    WanCausalConv3d, WanResidualBlock, WanRMS_norm)

from dvd_vfx.model import vae_ops  # noqa: E402

# (in, out, kernel, stride, padding): the VAE's kinds: 3x3x3 (padding 1), 1x1x1 (shortcuts, quant),
# the upsample's time conv (3,1,1) padding (1,0,0), the downsample's (3,1,1) stride (2,1,1)
CONVS = [(6, 8, 3, 1, 1), (6, 8, 1, 1, 0), (6, 12, (3, 1, 1), 1, (1, 0, 0)), (6, 6, (3, 1, 1), (2, 1, 1), 0)]
CHUNKS = [(1, None), (4, None), (4, 2), (4, 1), (2, 2)]  # (frames, cached frames: the causal decode's cache)
# (the downsample's time conv has no time padding: the VAE gives it >= 3 frames, its cache concatenated)
CASES = [(spec, frames, cached) for spec in CONVS for frames, cached in CHUNKS if spec[4] != 0 or frames >= 3]


def _lean_copy(module, install):
    lean = copy.deepcopy(module)
    assert install(torch.nn.Sequential(lean)) == 1
    assert install(torch.nn.Sequential(lean)) == 0  # idempotent
    return lean


def _randn(*shape, seed=0, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("spec,frames,cached", CASES)
def test_conv_padding_inside_the_convolution_is_bit_identical_per_op(dtype, spec, frames, cached):
    ci, co, kernel, stride, padding = spec
    torch.manual_seed(3)
    stock = WanCausalConv3d(ci, co, kernel, stride=stride, padding=padding).to(dtype)
    lean = _lean_copy(stock, vae_ops.conv_padding)
    x = _randn(1, ci, frames, 10, 14, seed=1, dtype=dtype)
    cache = None if cached is None else _randn(1, ci, cached, 10, 14, seed=2, dtype=dtype)  # causal decode's
    with torch.inference_mode():
        a, b = stock(x, cache), lean(x, cache)
    assert b.dtype == dtype and b.shape == a.shape and torch.equal(a, b)


@pytest.mark.parametrize("frames,cached", [(4, 2), (1, None), (4, 1)])
def test_conv_padding_is_bit_identical_on_the_fast_cpu_kernel(frames, cached):
    """Shapes large enough for oneDNN (the real VAE's path on a CPU), float32."""
    torch.manual_seed(4)
    stock = WanCausalConv3d(64, 64, 3, padding=1)
    lean = _lean_copy(stock, vae_ops.conv_padding)
    x = _randn(1, 64, frames, 64, 24, seed=1)
    cache = None if cached is None else _randn(1, 64, cached, 64, 24, seed=2)
    with torch.inference_mode():
        assert torch.equal(stock(x, cache), lean(x, cache))


def test_conv_padding_copies_in_time_only_when_the_cache_does_not_cover_it(monkeypatch):
    conv = _lean_copy(WanCausalConv3d(4, 4, 3, padding=1), vae_ops.conv_padding)
    pads = []
    real_pad = vae_ops.F.pad
    monkeypatch.setattr(vae_ops.F, "pad", lambda x, pad, *a, **k: pads.append(tuple(pad)) or real_pad(x, pad, *a, **k))
    x = _randn(1, 4, 4, 6, 6)
    with torch.inference_mode():
        conv(x, _randn(1, 4, 2, 6, 6))  # two cached frames: no padded copy at all
        assert pads == []
        conv(x, _randn(1, 4, 1, 6, 6))
        conv(x)
    assert pads == [(0, 0, 0, 0, 1, 0), (0, 0, 0, 0, 2, 0)]  # time only, in front; H/W inside the conv


def test_conv_padding_leaves_other_padding_alone():
    odd = WanCausalConv3d(4, 4, 3, padding=1)
    odd._padding = (1, 2, 1, 1, 2, 0)  # asymmetric: not expressible as conv padding
    assert vae_ops.conv_padding(torch.nn.Sequential(odd)) == 0 and "forward" not in odd.__dict__


# -- RMS norm + SiLU fused (bit-identical values) --------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("images,bias", [(False, False), (True, False), (False, True)])
def test_rms_norm_silu_is_bit_identical_per_op(dtype, images, bias):
    norm = WanRMS_norm(24, images=images, bias=bias)
    with torch.no_grad():
        norm.gamma.copy_(_randn(*norm.gamma.shape, seed=5, scale=0.3) + 1)
        if bias:
            norm.bias.copy_(_randn(*norm.bias.shape, seed=6, scale=0.1))
    norm = norm.to(dtype)
    x = _randn(*((2, 24, 9, 13) if images else (1, 24, 3, 9, 13)), seed=7, dtype=dtype, scale=3)
    with torch.inference_mode():
        a = torch.nn.functional.silu(norm(x))
        b = vae_ops.rms_norm_silu(x, norm.gamma, norm.scale, norm.bias)
    assert b.dtype == dtype and torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("cached", [False, True])
def test_fused_residual_block_is_bit_identical(dtype, cached):
    torch.manual_seed(8)
    stock = WanResidualBlock(6, 8).to(dtype).eval()
    lean = copy.deepcopy(stock)
    assert vae_ops.fused_norm_silu(lean) == 2 and vae_ops.fused_norm_silu(lean) == 0
    assert isinstance(lean.nonlinearity, vae_ops.NormDidSiLU)  # the SiLU runs once, inside the norm
    x = _randn(1, 6, 4, 8, 10, seed=9, dtype=dtype, scale=2)
    with torch.inference_mode():
        if cached:  # the causal decode's cache path: a second chunk after a first
            ca, cb = [None, None], [None, None]
            stock(x[:, :, :1], ca, [0]), lean(x[:, :, :1], cb, [0])
            a, b = stock(x[:, :, 1:], ca, [0]), lean(x[:, :, 1:], cb, [0])
            assert all(torch.equal(p, q) for p, q in zip(ca, cb))
        else:
            a, b = stock(x), lean(x)
    assert torch.equal(a, b)


def test_fused_norm_trains_through_the_stock_ops():
    torch.manual_seed(8)
    stock = WanResidualBlock(4, 4)
    lean = copy.deepcopy(stock)
    vae_ops.fused_norm_silu(lean)
    x = _randn(1, 4, 3, 6, 6, seed=1).requires_grad_()
    xl = x.detach().clone().requires_grad_()
    stock(x).square().sum().backward()
    lean(xl).square().sum().backward()
    assert torch.equal(x.grad, xl.grad) and torch.equal(stock.norm1.gamma.grad, lean.norm1.gamma.grad)


def test_fused_norm_needs_the_silu_right_after_the_norm():
    class Reordered(torch.nn.Module):
        def forward(self, x):
            x = self.nonlinearity(self.norm1(x))
            return x

    class Stock(torch.nn.Module):
        def forward(self, x):
            x = self.norm1(x)
            x = self.nonlinearity(x)
            x = self.norm_out(x)
            x = self.nonlinearity(x)
            return x

    assert vae_ops._norms_before_silu(Reordered) is None
    assert vae_ops._norms_before_silu(Stock) == ("norm1", "norm_out")
    assert vae_ops._norms_before_silu(WanResidualBlock) == ("norm1", "norm2")


def test_fused_norm_needs_a_norm_that_normalises_in_float32(monkeypatch):
    """diffusers before its float32-normalise change normalised bf16 in bf16: the fused op (float32) would
    change the bits there, so it is not installed and the VAE stays stock."""
    import torch.nn.functional as F
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm

    class OldNorm(torch.nn.Module):  # the older diffusers' forward
        def forward(self, x):
            return F.normalize(x, dim=(1 if self.channel_first else -1)) * self.scale * self.gamma + self.bias

    assert vae_ops._normalises_in_float32(WanRMS_norm)  # the installed diffusers
    assert not vae_ops._normalises_in_float32(OldNorm)
    monkeypatch.setitem(vae_ops._SOURCE_OK, WanRMS_norm, False)  # as if the installed norm were the old one
    block = WanResidualBlock(8, 8)
    assert vae_ops.fused_norm_silu(torch.nn.Sequential(block)) == 0
    assert type(block.nonlinearity) is torch.nn.SiLU and "forward" not in block.norm1.__dict__


# -- the whole VAE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_whole_lean_vae_encodes_and_decodes_the_same_bits(dtype):
    _, vae = build_tiny_networks(seed=5)
    stock = vae.to(dtype).eval()
    lean = copy.deepcopy(stock)
    counts = vae_ops.lean_vae(lean)
    causal = [m for m in lean.modules() if isinstance(m, WanCausalConv3d)]
    assert counts["conv_padding"] == len(causal) > 0 and counts["upsample"] > 0
    # every residual block's two norms and the encoder's and decoder's heads
    assert counts["norm_silu"] == 2 * sum(isinstance(m, WanResidualBlock) for m in lean.modules()) + 2
    assert set(vae_ops.lean_vae(lean).values()) == {0}
    x = _randn(1, 3, 5, 32, 48, seed=2, dtype=torch.float32).clamp(-1, 1).to(dtype)  # 2 chunks: the cache path
    with torch.inference_mode():
        za, zb = stock.encode(x).latent_dist.mode(), lean.encode(x).latent_dist.mode()
        assert torch.equal(za, zb)
        a, b = stock.decode(za, return_dict=False)[0], lean.decode(zb, return_dict=False)[0]
    assert a.shape == (1, 3, 5, 32, 48) and torch.equal(a, b)


# -- channels_last_3d (an option: other kernels, other rounding) -----------------------------------

# measured 2.0e-6 of the output's largest magnitude here, 3.1e-6 on a decoder-sized layer (float32,
# oneDNN on a CPU; benchmarks/bench_vae_ops.py), the 3e-6
CHANNELS_LAST_RTOL = 1e-5


def test_channels_last_3d_is_within_its_tolerance_per_op():
    torch.manual_seed(4)
    conv = _lean_copy(WanCausalConv3d(64, 64, 3, padding=1), vae_ops.conv_padding)
    x, cache = _randn(1, 64, 4, 64, 24, seed=1), _randn(1, 64, 2, 64, 24, seed=2)
    with torch.inference_mode():
        a = conv(x, cache)
        with vae_ops.channels_last_3d():
            b = conv(x, cache)
        c = conv(x, cache)  # off again after the context
    assert torch.equal(a, c) and b.shape == a.shape
    assert (a - b).abs().max() <= CHANNELS_LAST_RTOL * a.abs().max()


def test_channels_last_3d_whole_vae_is_within_its_tolerance():
    _, vae = build_tiny_networks(seed=5)
    vae = vae.eval()
    vae_ops.lean_vae(vae)
    x = _randn(1, 3, 5, 32, 48, seed=2).clamp(-1, 1)
    with torch.inference_mode():
        za = vae.encode(x).latent_dist.mode()
        a = vae.decode(za, return_dict=False)[0]
        with vae_ops.channels_last_3d():
            zb = vae.encode(x).latent_dist.mode()
            b = vae.decode(za, return_dict=False)[0]
    assert (za - zb).abs().max() <= CHANNELS_LAST_RTOL * za.abs().max()
    assert (a - b).abs().max() <= CHANNELS_LAST_RTOL * a.abs().max()


# -- cudnn.benchmark: CUDA only ---------------------------------------------------------------------


def test_cudnn_benchmark_is_a_no_op_off_cuda():
    before = torch.backends.cudnn.benchmark
    with vae_ops.cudnn_benchmark(True, torch.device("cpu")):
        assert torch.backends.cudnn.benchmark == before
    with vae_ops.cudnn_benchmark(True, torch.device("cuda")):  # (only sets the flag: no CUDA needed)
        assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.benchmark == before


def _predictor(**options):
    from dvd_vfx.model.predictor import DVDNetworks, DVDPredictor

    dit, vae = build_tiny_networks(seed=5)
    return DVDPredictor(networks=DVDNetworks.from_modules(dit.eval(), vae.eval()), device="cpu", **options)


def test_the_predictor_installs_the_lean_ops_and_keeps_its_identity():
    predictor = _predictor()
    base = predictor.identity()
    nets = predictor.load()
    assert all("forward" in m.__dict__ for m in nets.vae.modules() if type(m) is WanCausalConv3d)
    assert any(isinstance(m, vae_ops.NormDidSiLU) for m in nets.vae.modules())
    assert predictor.identity() == base and "vae_memory_format" not in base and "cudnn_benchmark" not in base


def test_the_predictor_options_on_cpu():
    frames = torch.rand(5, 32, 48, 3, generator=torch.Generator().manual_seed(3)).numpy()
    default = _predictor()
    seen = []
    default.load().vae.decoder.conv_out.register_forward_hook(
        lambda *_: seen.append(torch.backends.cudnn.benchmark))
    reference = default.predict(frames)
    bench = _predictor(cudnn_benchmark=True)
    bench._networks = default._networks  # the same weights and hook
    # --cudnn-benchmark on a CPU: nothing changes (flag, identity, bits)
    assert bench.identity() == default.identity() and bench.cudnn_benchmark is False
    assert (bench.predict(frames) == reference).all()
    assert len(set(seen)) == 1 and seen[0] == torch.backends.cudnn.benchmark
    # --vae-channels-last: recorded (another cache key), within the tolerance
    cl = _predictor(vae_channels_last=True)
    cl._networks = default._networks
    assert cl.identity() == {**default.identity(), "vae_memory_format": "channels_last_3d"}
    assert abs(cl.predict(frames) - reference).max() <= 1e-5


# -- memory: the lean ops hold fewer bytes at the peak (replayed on the meta device) ----------------


def test_in_place_results_are_counted_once_by_the_replay():
    from dvd_vfx.model.memory import LiveBytes

    with LiveBytes() as live:
        x = torch.empty(1000, device="meta")
        x.mul_(2.0)
        torch.nn.functional.silu(x, inplace=True)
    assert live.peak == 4000


def test_the_lean_vae_peaks_lower_than_the_stock():
    from dvd_vfx.model.memory import meta_vae, replay_vae

    stock, lean = meta_vae(torch.bfloat16), meta_vae(torch.bfloat16)
    vae_ops.lean_vae(lean)
    a = replay_vae(stock, 5, 64, 96, dtype=torch.bfloat16)
    b = replay_vae(lean, 5, 64, 96, dtype=torch.bfloat16)
    assert b["decode_bytes"] < a["decode_bytes"] and b["encode_bytes"] < a["encode_bytes"]
