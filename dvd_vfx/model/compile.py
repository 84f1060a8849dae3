"""``--compile``: torch.compile (TorchInductor) of the DVD predictor's repeated work (issue 21, item 2).

What is compiled, and why there:
- the DiT's transformer block: ``WanTransformerBlock.forward`` is compiled ONCE for the class and
  bound to every block, so the 30 identical blocks share one graph (their weights are graph inputs:
  torch inlines nn.Modules), instead of 30 compiles or one huge graph of the whole network.
  With the cross-attention fold on (the default, dvd_vfx.model.attention), ``attn2`` runs eagerly
  (the fold's check reads tensor values, which a graph cannot): each block is two graphs, before and
  after the cross-attention, still shared by all blocks;
- the VAE: ``WanEncoder3d.forward`` and ``WanDecoder3d.forward``, the work of ONE chunk (the causal
  VAE runs a window chunk by chunk through a feature cache: 1 frame, then 4 frames a chunk in the
  encoder, 1 latent frame a chunk in the decoder). Each compiles without graph breaks, into a few
  graphs per window size while the cache fills: 3 each (the first chunk: empty caches, the second:
  1-frame caches, every later chunk), so an 81-frame window compiles 8 graphs in all with the DiT's
  two, and its later chunks reuse them (tests/test_compile.py counts them).
Shapes are static per shot (dynamic=False): the first window of a shot compiles (minutes on a CPU;
not measured on a GPU; said in the log), the next windows of the shot reuse the graphs. A new
window size (another shot) compiles its own graphs; up to RECOMPILE_LIMIT variants per function are
kept (torch's own default of 8 would send a batch of differently sized shots back to eager code).

The networks are shared by every predictor of a process (dvd_vfx.model.predictor._LOADED), so the
compiled forwards are switched on only inside ``compiled(...)``, around one window, and the stock
methods are back after it: a predictor without --compile in the same process runs eagerly.

Compiled kernels fuse and reorder float operations, so outputs differ from eager ones by rounding
(fp32 on CPU: within 1e-5 of the eager disparity, tests/test_compile.py; measured ~1.4e-6); the predictor records
``compile`` in its identity so cache entries of compiled and eager renders do not mix.
"""

from __future__ import annotations

import contextlib
import logging
import types
import weakref

import torch

from dvd_vfx.errors import InputError

log = logging.getLogger("dvd_vfx.model")

MIN_TORCH = (2, 4)
RECOMPILE_LIMIT = 64
_OPTIONS = {"backend": "inductor", "dynamic": False}

_COMPILED: dict = {}  # a class's forward function -> its torch.compile'd version (one per process)
_EAGER_ATTN2: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # attn2 module -> its eager forward


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def cpp_compiler() -> str | None:
    """The C++ compiler TorchInductor would use for CPU kernels, or None when there is none."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # an older inductor (PyTorch before 2.5): look for the compiler it would run
        import os
        import shutil

        return next((found for name in (os.environ.get("CXX"), "g++", "c++", "clang++")
                     if name and (found := shutil.which(name))), None)
    try:
        return get_cpp_compiler()
    except Exception:  # InvalidCxxCompiler
        return None


def _recompile_limit() -> dict:
    """The dynamo setting that bounds graphs per function: `recompile_limit` (PyTorch 2.7 on), before
    that `cache_size_limit`."""
    config = torch._dynamo.config
    key = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    return {key: RECOMPILE_LIMIT}


def check_compile(device: torch.device) -> None:
    """Refuse --compile where torch.compile cannot work, before a render starts (InputError: exit 2)."""
    if device.type == "mps":
        raise InputError("--compile: torch.compile does not support the Metal (mps) device; render without "
                         "--compile on mps (or on a CUDA GPU with it)")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"--compile: torch.compile is not supported on {device.type}; render without --compile")
    if _torch_version() < MIN_TORCH or not hasattr(torch, "compile"):
        raise InputError(f"--compile needs PyTorch {'.'.join(map(str, MIN_TORCH))} or newer (this is "
                         f"{torch.__version__}); upgrade PyTorch or render without --compile")
    if device.type == "cpu" and cpp_compiler() is None:
        raise InputError("--compile on the CPU needs a C++ compiler for TorchInductor's kernels and none was "
                         "found (g++ or $CXX): install one (e.g. apt install g++, or set CXX) or render "
                         "without --compile")
    if device.type == "cuda":
        try:
            from torch.utils._triton import has_triton
        except ImportError:  # pragma: no cover - very old torch, refused above
            has_triton = lambda: False  # noqa: E731
        if not has_triton():
            raise InputError("--compile on CUDA needs Triton (the 'triton' package matching this PyTorch) for "
                             "TorchInductor's GPU kernels and it is not importable: install it or render without "
                             "--compile")


def _compiled(forward):
    fn = _COMPILED.get(forward)
    if fn is None:
        fn = _COMPILED[forward] = torch.compile(forward, **_OPTIONS)
    return fn


def _eager_attn2(attn2: torch.nn.Module):
    """attn2's forward, run eagerly from inside a compiled block (the fold checks tensor values). Its output
    is made contiguous: the fold returns its row broadcast (stride 0) once it is known and the full output
    before, and the graph after the cross-attention would be compiled again for the other strides."""
    fn = _EAGER_ATTN2.get(attn2)
    if fn is None:  # one object per module: a compiled block's guards see the same function every window
        forward = type(attn2).forward.__get__(attn2)
        fn = _EAGER_ATTN2[attn2] = torch.compiler.disable(lambda *a, **k: forward(*a, **k).contiguous())
    return fn


def _targets(transformer: torch.nn.Module, vae: torch.nn.Module) -> list[torch.nn.Module]:
    blocks = list(getattr(transformer, "blocks", []))
    return blocks + [m for m in (getattr(vae, "encoder", None), getattr(vae, "decoder", None)) if m is not None]


@contextlib.contextmanager
def compiled(transformer: torch.nn.Module, vae: torch.nn.Module):
    """Inside: every DiT block and the VAE's encoder/decoder (one chunk a call) run compiled; outside,
    the stock methods. The first call of a shape compiles; later ones reuse the graphs."""
    from dvd_vfx.model.attention import FoldedCrossAttention

    patched = []
    try:
        for module in _targets(transformer, vae):
            if "forward" in module.__dict__:  # already compiled by an enclosing call
                continue
            module.forward = types.MethodType(_compiled(type(module).forward), module)
            patched.append(module)
            attn2 = getattr(module, "attn2", None)
            if isinstance(getattr(attn2, "processor", None), FoldedCrossAttention) and "forward" not in attn2.__dict__:
                attn2.forward = _eager_attn2(attn2)
                patched.append(attn2)
        with torch._dynamo.config.patch(**_recompile_limit()):
            yield
    finally:
        for module in patched:
            module.__dict__.pop("forward", None)


def graphs_compiled() -> int:
    """How many graphs torch.compile has compiled in this process (a recompile adds to it)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def compile_failed(exc: BaseException) -> bool:
    """Whether `exc` came from torch.compile itself (tracing or code generation), not from the model."""
    try:
        from torch._dynamo.exc import TorchDynamoException
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, TorchDynamoException) or type(exc).__module__.startswith("torch._inductor")
