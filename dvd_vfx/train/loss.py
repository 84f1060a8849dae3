"""The DVD training loss: L2 on the depth latent + Latent Manifold Rectification (LMR).

Regressing the latent with L2 alone pulls predictions toward the mean: edges wash out and
depth flickers from frame to frame. LMR adds L1 terms that align the finite differences of
the predicted latent with those of the target, along height and width (spatial, L_sp) and
along time (temporal, L_temp):

    L      = mean((pred - target)^2) + lambda * (L_sp + L_temp)
    L_sp   = mean|dH pred - dH target| + mean|dW pred - dW target|
    L_temp = mean|dT pred - dT target|       (0 for one-frame samples: t = 1 latent frame)

Each term is a mean over its own difference tensor, summed as in the official training
(``GradientLoss3DSeparate``, grad_co = 0.5). Latents are [B, C, t, h, w].

Masking (ours; the official training has none): invalid ground truth (holes, or depth beyond a
source's ``max_depth``) has target disparity 0, which would teach "far" where the truth is
unknown. A latent cell covers 8x8 pixels and 4 frames (1 for the first), so a pixel mask cannot be
applied exactly in latent space; ``latent_mask`` keeps a cell only when EVERY pixel under it is
valid, and the terms become means over kept cells (a difference is kept when both its cells are).
With everything valid the mask is None and the loss is the official one, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULT_LAMBDA = 0.5  # the official grad_co


@dataclass
class LossParts:
    total: torch.Tensor  # what is back-propagated
    l2: torch.Tensor
    sp: torch.Tensor  # L_sp = height term + width term
    temp: torch.Tensor  # L_temp (zero tensor for t == 1)
    has_temporal: bool

    def floats(self) -> dict[str, float]:
        return {"loss": float(self.total.detach()), "l2": float(self.l2.detach()), "sp": float(self.sp.detach()),
                "temp": float(self.temp.detach())}


def _diff(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x.narrow(dim, 1, x.shape[dim] - 1) - x.narrow(dim, 0, x.shape[dim] - 1)


def _pair(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """A difference along `dim` counts when both of its cells count."""
    return mask.narrow(dim, 1, mask.shape[dim] - 1) * mask.narrow(dim, 0, mask.shape[dim] - 1)


def _mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.mean()
    weight = mask.expand_as(values)
    total = weight.sum()
    return (values * weight).sum() / total.clamp_min(1.0)  # no kept cell: 0, not NaN


def latent_mask(valid: torch.Tensor, *, spatial: int = 8, temporal: int = 4) -> torch.Tensor:
    """bool/float [B, T, H, W] pixel validity -> float [B, 1, t, h, w] latent-cell mask (1 = all valid).

    Wan's causal VAE maps frame 0 to latent frame 0 and frames 4k-3..4k to latent frame k.
    """
    v = valid.float()
    b, t, h, w = v.shape
    if (t - 1) % temporal or h % spatial or w % spatial:
        raise ValueError(f"valid mask {tuple(v.shape)} does not fit the VAE grid (T = 4n+1, H and W multiples of 8)")
    first, rest = v[:, :1], v[:, 1:]
    if rest.shape[1]:
        rest = rest.reshape(b, (t - 1) // temporal, temporal, h, w).amin(dim=2)
        v = torch.cat([first, rest], dim=1)
    v = v.reshape(b, v.shape[1], h // spatial, spatial, w // spatial, spatial).amin(dim=(3, 5))
    return v.unsqueeze(1)


def lmr_terms(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(L_h, L_w, L_t): mean absolute difference of the finite differences along h, w and t.

    L_t is None when there is a single latent frame (no temporal neighbour to compare).
    `mask` ([B, 1, t, h, w], 1 = keep) restricts every mean to kept cells.
    """
    if pred.shape != target.shape or pred.ndim != 5:
        raise ValueError(f"LMR needs two latents of the same shape [B,C,t,h,w], got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    m = (lambda dim: None) if mask is None else (lambda dim: _pair(mask, dim))
    l_h = _mean((_diff(pred, 3) - _diff(target, 3)).abs(), m(3))
    l_w = _mean((_diff(pred, 4) - _diff(target, 4)).abs(), m(4))
    l_t = _mean((_diff(pred, 2) - _diff(target, 2)).abs(), m(2)) if pred.shape[2] > 1 else None
    return l_h, l_w, l_t


def dvd_loss(pred: torch.Tensor, target: torch.Tensor, lam: float = DEFAULT_LAMBDA,
             mask: torch.Tensor | None = None) -> LossParts:
    """L2 + lambda * (L_sp + L_temp), computed in float32 whatever the autocast dtype."""
    pred, target = pred.float(), target.float()
    if mask is not None:
        mask = mask.to(device=pred.device, dtype=torch.float32)
    l2 = _mean((pred - target).square(), mask) if mask is not None else torch.nn.functional.mse_loss(pred, target)
    l_h, l_w, l_t = lmr_terms(pred, target, mask)
    sp = l_h + l_w
    temp = l_t if l_t is not None else torch.zeros((), device=pred.device)
    total = l2 + lam * (sp + temp) if lam else l2
    return LossParts(total=total, l2=l2, sp=sp, temp=temp, has_temporal=l_t is not None)
