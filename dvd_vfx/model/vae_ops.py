"""Leaner per-op versions of the Wan VAE's layers (issue 21, item 2).

Installed on the loaded VAE by DVDPredictor.load, each idempotent (it returns how many layers it
changed: 0 the second time), each giving the stock bits on CPU (tests/test_vae_ops.py):

`native_upsample`: diffusers' WanUpsample converts its bf16/fp16 input to float32, upsamples with
nearest-exact and converts back. At integer scale factors nearest-exact only copies elements
(source index floor((i + 0.5) / s) for output i), so running it in the input's dtype gives the same
bits without the two float32 copies (in the decoder the largest is 2 x 4 bytes a pixel x 256
channels per frame). Layers with a non-integer scale keep the stock path.

`conv_padding`: WanCausalConv3d pads every input with F.pad (height and width on both sides, time
in front) and convolves without padding: a full copy of every activation per layer. The lean
forward gives the height/width padding to the convolution itself (zero padding inside the kernel,
no copy) and pads time only where the cache does not already supply the frames in front (with the
causal decode's cache that is only the first chunk). CPU (oneDNN) gives the same bits; cuDNN may
choose another algorithm for the other padding (benchmarks/bench_vae_ops.py checks it on a GPU).

`fused_norm_silu`: WanResidualBlock and the encoder/decoder heads run RMS norm -> SiLU -> conv.
Stock, in bf16, that is a float32 copy, the float32 quotient, its bf16 copy, then three bf16
intermediates (x scale, x gamma, + bias) and the SiLU output. The fused function computes the same
norm, writes the quotient straight into the bf16 output (the same rounding as .to(bf16)) and does
the scale, gamma and SiLU in place, in the stock order and dtypes: the same values (a zero's sign
can differ: the stock adds a float 0.0 bias, which the next convolution's bias addition hides).
The block's SiLU module is replaced by `NormDidSiLU` (an identity) so it does not run twice.

Options that change the numbers (recorded in the predictor's identity, off by default):
`channels_last_3d()` runs the causal convolutions in channels_last_3d memory format (about 1e-5
from the stock in float32 on CPU, see BENCHMARKS.md); `cudnn_benchmark()` lets cuDNN time and pick
its convolution algorithms for the shot's static shapes (CUDA only, a no-op elsewhere; the pick can
differ from run to run, so renders with it are not bit-reproducible).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import re

import torch
import torch.nn.functional as F


# -- integer-scale nearest upsample in the input's dtype -------------------------------------------


def _native_forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.nn.Upsample.forward(self, x)


def _integer_scale(module: torch.nn.Upsample) -> bool:
    scale = module.scale_factor
    scales = scale if isinstance(scale, (tuple, list)) else (scale,)
    return (module.size is None and module.mode in ("nearest", "nearest-exact") and scale is not None
            and all(float(s).is_integer() and s >= 1 for s in scales))


def native_upsample(vae: torch.nn.Module) -> int:
    """Make every integer-scale nearest WanUpsample of `vae` run in its input's dtype (bit-identical).
    Returns how many layers were changed (idempotent: 0 the second time)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanUpsample

    changed = 0
    for module in vae.modules():
        if (type(module) is WanUpsample and _integer_scale(module)
                and module.__dict__.get("forward") is None):
            module.forward = _native_forward.__get__(module)
            changed += 1
    return changed


# -- causal convolution: spatial padding inside the convolution ------------------------------------

_CHANNELS_LAST = contextvars.ContextVar("dvd_vfx_vae_channels_last", default=False)
# The same choice for compiled code (--compile): dynamo cannot trace ContextVar.get (a graph break at
# every convolution: 107 graphs for a one-frame window instead of 4), so a compiled forward reads this
# module global instead, which dynamo guards on (set and restored by `channels_last_3d` with the variable).
_channels_last_compiled = False


def _wants_channels_last() -> bool:
    if torch.compiler.is_compiling():
        return _channels_last_compiled
    return _CHANNELS_LAST.get()


def _padded_conv_forward(self, x: torch.Tensor, cache_x: torch.Tensor | None = None) -> torch.Tensor:
    time_pad = self._padding[4]
    if cache_x is not None and time_pad > 0:  # (as the stock: the cache supplies frames in front)
        x = torch.cat([cache_x.to(x.device), x], dim=2)
        time_pad -= cache_x.shape[2]
    if time_pad:
        x = F.pad(x, (0, 0, 0, 0, time_pad, 0))
    if _wants_channels_last():
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return F.conv3d(x, self.weight, self.bias, self.stride, self._dvd_spatial_padding, self.dilation, self.groups)


def _pads_symmetrically(conv: torch.nn.Conv3d) -> bool:
    left, right, top, bottom, front, back = conv._padding
    return (left == right and top == bottom and back == 0 and front >= 0 and tuple(conv.padding) == (0, 0, 0)
            and conv.padding_mode == "zeros")


def conv_padding(vae: torch.nn.Module) -> int:
    """Make every WanCausalConv3d of `vae` pad height and width inside the convolution (no padded copy).
    Returns how many layers were changed (idempotent: 0 the second time)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    changed = 0
    for module in vae.modules():
        if (type(module) is WanCausalConv3d and _pads_symmetrically(module)
                and module.__dict__.get("forward") is None):
            module._dvd_spatial_padding = (0, module._padding[2], module._padding[0])
            module.forward = _padded_conv_forward.__get__(module)
            changed += 1
    return changed


@contextlib.contextmanager
def channels_last_3d(on: bool = True):
    """Inside: the causal convolutions installed by `conv_padding` run in channels_last_3d (this
    thread/context only; the shared networks are not changed). Not bit-identical: an option."""
    global _channels_last_compiled
    token, before = _CHANNELS_LAST.set(bool(on)), _channels_last_compiled
    _channels_last_compiled = bool(on)
    try:
        yield
    finally:
        _CHANNELS_LAST.reset(token)
        _channels_last_compiled = before


@contextlib.contextmanager
def cudnn_benchmark(on: bool, device: torch.device):
    """Inside: torch.backends.cudnn.benchmark on, for a CUDA device; on any other device nothing changes
    (the flag is left as it is). The previous value comes back after."""
    if not on or device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


# -- RMS norm + SiLU in one function ------------------------------------------------------------


class NormDidSiLU(torch.nn.Identity):
    """Stands for a block's SiLU after `fused_norm_silu`: the norm before it applied the SiLU already."""


def rms_norm_silu(x: torch.Tensor, gamma: torch.Tensor, scale: float, bias, dim: int = 1) -> torch.Tensor:
    """SiLU(WanRMS_norm(x)) with the stock's op order and dtypes and no intermediates but the output
    (and, for bf16/fp16, the float32 copy the stock normalises)."""
    xf = x if x.dtype == torch.float32 else x.float()
    if torch.compiler.is_compiling():  # (--compile: the stock expression; inductor fuses it, and dynamo
        # cannot trace an out= into a non-contiguous tensor)
        return F.silu(F.normalize(xf, dim=dim).to(x.dtype) * scale * gamma + bias)
    norm = torch.linalg.vector_norm(xf, 2, dim=dim, keepdim=True).clamp_min_(1e-12)  # = F.normalize's
    y = torch.empty_like(x)
    torch.div(xf, norm, out=y)  # float32 quotient rounded once to x.dtype, as .to(x.dtype)
    y.mul_(scale)
    y.mul_(gamma)
    if isinstance(bias, torch.Tensor) or bias != 0.0:  # (the stock's float 0.0 changes no value)
        y.add_(bias)
    return F.silu(y, inplace=True)


def _fused_norm_forward(self, x: torch.Tensor) -> torch.Tensor:
    if x.dtype not in (torch.float32, torch.bfloat16, torch.float16) or (
            torch.is_grad_enabled() and (x.requires_grad or self.gamma.requires_grad)):
        return F.silu(type(self).forward(self, x))  # (training, other dtypes: the stock ops)
    return rms_norm_silu(x, self.gamma, self.scale, self.bias, 1 if self.channel_first else -1)


_SOURCE_OK: dict[type, bool] = {}


def _norms_before_silu(cls: type) -> tuple[str, ...] | None:
    """The norm attributes whose output `cls.forward` passes to self.nonlinearity and nothing else,
    read from the installed diffusers' source; None when any SiLU call is not right after a norm."""
    try:
        lines = [line.strip() for line in inspect.getsource(cls.forward).splitlines() if line.strip()]
    except (OSError, TypeError):
        return None
    norms = []
    for i, line in enumerate(lines):
        if "self.nonlinearity" not in line:
            continue
        before = re.fullmatch(r"x = self\.(norm\w*)\(x\)", lines[i - 1]) if i else None
        if line != "x = self.nonlinearity(x)" or before is None:
            return None
        norms.append(before.group(1))
    return tuple(norms) or None


def _normalises_in_float32(cls: type) -> bool:
    """Whether `cls.forward` (diffusers' WanRMS_norm) normalises bf16/fp16 inputs in float32 and rounds the
    quotient back, as `rms_norm_silu` does. diffusers releases before that change normalised in the input's
    dtype: there the fused op would give other bits, so it is not installed."""
    try:
        source = inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return False
    compact = "".join(source.split())
    return "F.normalize(x.float()" in compact and ".to(x.dtype)" in compact


def fused_norm_silu(vae: torch.nn.Module) -> int:
    """Make every RMS norm that feeds a SiLU in `vae` (residual blocks, encoder and decoder heads) apply
    the SiLU itself, fused (`rms_norm_silu`), and the SiLU module an identity. Only where the installed
    diffusers' forward calls the SiLU right after the norm and nowhere else. Returns how many norms were
    changed (idempotent: 0 the second time)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import (WanDecoder3d, WanEncoder3d, WanResidualBlock,
                                                                  WanRMS_norm)

    if WanRMS_norm not in _SOURCE_OK:
        _SOURCE_OK[WanRMS_norm] = _normalises_in_float32(WanRMS_norm)
    if not _SOURCE_OK[WanRMS_norm]:
        return 0
    changed = 0
    for module in vae.modules():
        cls = type(module)
        if cls not in (WanResidualBlock, WanEncoder3d, WanDecoder3d):
            continue
        if cls not in _SOURCE_OK:
            _SOURCE_OK[cls] = _norms_before_silu(cls)
        names = _SOURCE_OK[cls]
        if (not names or type(getattr(module, "nonlinearity", None)) is not torch.nn.SiLU
                or any(type(getattr(module, n, None)) is not WanRMS_norm or "forward" in getattr(module, n).__dict__
                       for n in names)):
            continue
        for name in dict.fromkeys(names):
            norm = getattr(module, name)
            norm.forward = _fused_norm_forward.__get__(norm)
            changed += 1
        module.nonlinearity = NormDidSiLU()
    return changed


def lean_vae(vae: torch.nn.Module) -> dict[str, int]:
    """All the bit-identical ops above, installed on `vae`: how many layers each changed."""
    return {"upsample": native_upsample(vae), "conv_padding": conv_padding(vae),
            "norm_silu": fused_norm_silu(vae)}
