"""The DVD model: torch and diffusers are imported here and only here, lazily.

``dvd_vfx.model.weights``, ``dvd_vfx.model.checkpoint`` and ``dvd_vfx.model.keys`` (tensor
names) work without torch (weights checks from a host's Python); ``predictor``, ``loader`` and
``tiny`` need torch. Layers, bottom up: keys <- checkpoint <- weights <- loader <- predictor.

The modules of this package import each other by full module name (``import
dvd_vfx.model.checkpoint as ck``, ``from dvd_vfx.model.weights import ...``), never through the
package (``from dvd_vfx.model import ...``): the package's lazy ``DVDPredictor`` points at the
top layer, so a module below going through the package would close an import cycle.
"""

from __future__ import annotations

__all__ = ["DVDPredictor"]


def __getattr__(name: str):
    if name == "DVDPredictor":
        from dvd_vfx.model.predictor import DVDPredictor

        return DVDPredictor
    raise AttributeError(name)
