"""Pass writers: the EXR depth pass (``passes.exr``) and plate-resolution upsampling
(``passes.upsample``; its dispatcher is ``passes.upsample.upsample``, the package attribute
``upsample`` is that submodule).

The EXR names are imported lazily, so importing the package or ``passes.upsample``
(numpy only) does not load the OpenEXR binding.
"""

from __future__ import annotations

import importlib

from dvd_vfx.passes import upsample
from dvd_vfx.passes.upsample import resize_bilinear, upsample_guided

_EXR_EXPORTS = (
    "COMPRESSIONS",
    "DEPTH_CHANNEL",
    "DepthPassWriter",
    "exr_attribute",
    "pass_filename",
    "read_pass_attributes",
)

__all__ = ["resize_bilinear", "upsample", "upsample_guided", *_EXR_EXPORTS]


def __getattr__(name: str):
    if name in _EXR_EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.exr"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXR_EXPORTS))
