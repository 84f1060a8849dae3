"""The DVD model: torch and diffusers are imported here and only here, lazily.

``dvd_vfx.model.weights`` and ``dvd_vfx.model.checkpoint`` work without torch (weights
checks from a host's Python); ``predictor``, ``loader`` and ``tiny`` need torch.
"""

from __future__ import annotations

__all__ = ["DVDPredictor"]


def __getattr__(name: str):
    if name == "DVDPredictor":
        from dvd_vfx.model.predictor import DVDPredictor

        return DVDPredictor
    raise AttributeError(name)
