"""Attention for the DVD predictor: the cross-attention fold and the attention backend choice.

The cross-attention fold. DVD runs the DiT with an all-zero text context, so every block's
cross-attention (``attn2``) sees 512 identical context rows: its keys are identical rows (no RoPE,
no mask), the softmax of every query is uniform, and the output is ``to_out(v)`` for every token,
whatever the query — a constant row per layer. ``FoldedCrossAttention`` computes that row ONCE
per layer and window shape through the stock processor (the stock shapes, so the stock kernels
and their rounding), checks that every token's output row is bit-for-bit that row, and from then
on returns the row broadcast, skipping the query projection, the attention and the output
projection (2.3-5.3 % of the DiT's FLOPs). Whenever the check does not hold, or the context is
not the one the row was computed for, the stock processor runs: the fold never changes a bit.

The backend: ``--attention auto|flash|cudnn|math`` picks PyTorch's scaled-dot-product kernel
(torch.nn.attention.sdpa_kernel) for the whole window (DiT and VAE). ``auto`` leaves the choice
to PyTorch (the fastest available). The kernels round differently, so a chosen backend is part
of the predictor's identity (cache key, EXR header); ``auto`` is not recorded, so the cache keys
of renders before the option stay valid.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from dvd_vfx.errors import InputError

log = logging.getLogger("dvd_vfx.model")

ATTENTION_BACKENDS = ("auto", "flash", "cudnn", "math")


class FoldedCrossAttention:
    """A Wan block's attn2 processor for a constant context: one output row per layer and shape."""

    def __init__(self, stock):
        self.stock = stock
        self._rows: dict[tuple, tuple[torch.Tensor, torch.Tensor] | None] = {}  # key -> (context row, output row)
        self.folded_calls = 0

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None,
                 **kwargs):
        if (encoder_hidden_states is None or attention_mask is not None or rotary_emb is not None or kwargs
                or getattr(attn, "add_k_proj", None) is not None or torch.is_grad_enabled()):
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kwargs)
        ctx = encoder_hidden_states
        ctx_row = ctx[:, :1]
        if not torch.equal(ctx, ctx_row.expand_as(ctx)):  # a real text context: nothing to fold
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        key = (tuple(hidden_states.shape), hidden_states.dtype, str(hidden_states.device), tuple(ctx.shape), ctx.dtype,
               _weights_state(attn))  # weights changed in place (training between predictions): computed again
        known = self._rows.get(key, ())
        if known and torch.equal(known[0], ctx_row):
            self.folded_calls += 1
            return known[1].expand(hidden_states.shape[0], hidden_states.shape[1], known[1].shape[-1])
        out = self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        if known is None:  # this shape did not fold before: the stock path, always
            return out
        out_row = out[:, :1]
        if torch.equal(out, out_row.expand_as(out)):
            self._rows[key] = (ctx_row.clone(), out_row.clone())
        else:
            log.debug("cross-attention rows differ for %s: this layer runs unfolded", key)
            self._rows[key] = None
        return out


def _weights_state(module: torch.nn.Module) -> tuple:
    """Which tensors the module's weights are and how often each was changed in place."""
    state = []
    for p in module.parameters():
        try:
            version = p._version
        except RuntimeError:  # an inference tensor has no version counter (it cannot change in place either)
            version = -1
        state.append((p.data_ptr(), version))
    return tuple(state)


def fold_cross_attention(transformer: torch.nn.Module) -> int:
    """Give every block's attn2 a FoldedCrossAttention (once); the number of layers folded."""
    folded = 0
    for block in getattr(transformer, "blocks", []):
        attn2 = getattr(block, "attn2", None)
        if attn2 is None or not hasattr(attn2, "processor"):
            continue
        if not isinstance(attn2.processor, FoldedCrossAttention):
            attn2.processor = FoldedCrossAttention(attn2.processor)
        folded += 1
    return folded


def check_attention(name: str, device: torch.device) -> None:
    if name not in ATTENTION_BACKENDS:
        raise InputError(f"unknown --attention {name!r}; use {', '.join(ATTENTION_BACKENDS)}")
    if name == "cudnn" and device.type != "cuda":
        raise InputError(f"--attention cudnn needs a CUDA device (this render runs on {device.type}); "
                         "use --attention auto, flash or math")


def attention_backend(name: str):
    """The context that makes every scaled-dot-product attention inside it use backend `name`."""
    if name == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel({"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                        "math": SDPBackend.MATH}[name])
