"""A fresh peft LoRA on the DVD transformer, addressed by the official (original Wan) target names.

DVD's training wraps modules whose ORIGINAL Wan name ends in q, k, v, o, ffn.0 or ffn.2 (self-
and cross-attention, both FFN layers). diffusers names the same modules attn1/attn2.to_q, to_k,
to_v, to_out.0, ffn.net.0.proj and ffn.net.2; the name mapping is
:func:`dvd_vfx.model.keys.dit_to_original`, checked against diffusers' own converter before a
checkpoint is written.

The transformer arrives from the production loader with the checkpoint's own LoRA already merged
(W' = W + B @ A); the new adapter starts with lora_B = 0, so step 0 IS the loaded model.
"""

from __future__ import annotations

import torch

from dvd_vfx.errors import InputError
from dvd_vfx.model.keys import (ADAPTER, LORA_TARGETS, checked_original_names, dit_to_original, is_lora_target,
                                plain_name)

OFFICIAL_TARGETS = LORA_TARGETS  # q, k, v, o, ffn.0, ffn.2


def parse_targets(text: str | None) -> tuple[str, ...]:
    """'q,k,v,o,ffn.0,ffn.2' -> a tuple of official target names (validated)."""
    if text is None or not text.strip():
        return OFFICIAL_TARGETS
    targets = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    bad = [t for t in targets if t not in OFFICIAL_TARGETS]
    if bad or not targets:
        raise InputError(f"--targets {text!r}: unknown LoRA target {', '.join(bad) or '(none)'}; use a comma list of "
                         f"{','.join(OFFICIAL_TARGETS)} (the official DVD targets, original Wan names)")
    return targets


def original_names(dit: torch.nn.Module) -> dict[str, str]:
    """diffusers parameter name (unwrapped) -> original Wan name, for every base parameter of the DiT.

    Built with ``dit_to_original`` and verified by running diffusers' converter (the loader's key
    map) on the result: if a diffusers upgrade renames a module, this fails loudly instead of
    writing a checkpoint that nothing can load.
    """
    return checked_original_names([p for p in (plain_name(n) for n, _ in dit.named_parameters()) if p is not None])


def target_modules(dit: torch.nn.Module, targets: tuple[str, ...]) -> dict[str, str]:
    """diffusers module name -> original module name, for every Linear the targets select."""
    found = {}
    for name, module in dit.named_modules():
        if isinstance(module, torch.nn.Linear):
            orig = dit_to_original(name + ".weight").removesuffix(".weight")
            if is_lora_target(orig, targets):
                found[name] = orig
    if not found:
        raise InputError(f"LoRA targets {','.join(targets)} select no Linear layer of the transformer")
    return found


def add_lora(dit: torch.nn.Module, *, rank: int, alpha: float | None = None,
             targets: tuple[str, ...] = OFFICIAL_TARGETS) -> dict[str, str]:
    """Inject a fresh LoRA (adapter "default", lora_B = 0) in place; freeze everything else.

    Returns the wrapped modules (diffusers name -> original name). Adapter weights are float32
    even when the frozen base is bf16 (the optimizer needs full precision). lora_A's random
    initialisation draws from torch's global generator: seed it first for reproducible runs.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if rank < 1:
        raise InputError(f"--rank {rank}: the LoRA rank must be 1 or more")
    alpha = float(rank if alpha is None else alpha)
    if alpha <= 0:
        raise InputError(f"--alpha {alpha:g}: the LoRA alpha must be positive (default: the rank)")
    modules = target_modules(dit, targets)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=sorted(modules), lora_dropout=0.0,
                        init_lora_weights=True, bias="none")
    dit.requires_grad_(False)
    inject_adapter_in_model(config, dit, adapter_name=ADAPTER)
    for name, p in dit.named_parameters():
        is_lora = ".lora_A." in name or ".lora_B." in name
        if is_lora and p.dtype != torch.float32:
            p.data = p.data.float()
        p.requires_grad_(is_lora)
    return modules


def lora_parameters(dit: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The trainable adapter parameters by name (the only ones the optimizer sees)."""
    params = {n: p for n, p in dit.named_parameters() if ".lora_A." in n or ".lora_B." in n}
    if not params:
        raise RuntimeError("the transformer has no LoRA parameters; call add_lora() first")
    return params


def lora_state(dit: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the adapter weights (for trainer checkpoints; exact, float32)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in lora_parameters(dit).items()}


def load_lora_state(dit: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = lora_parameters(dit)
    if set(params) != set(state):
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise InputError(f"the checkpoint's LoRA does not fit this run (missing {missing[:2]}, unexpected "
                         f"{extra[:2]}); resume with the same --rank and --targets")
    with torch.no_grad():
        for n, p in params.items():
            if tuple(state[n].shape) != tuple(p.shape):
                raise InputError(f"the checkpoint's LoRA {n} has shape {list(state[n].shape)}, this run needs "
                                 f"{list(p.shape)}; resume with the same --rank")
            p.copy_(state[n])
