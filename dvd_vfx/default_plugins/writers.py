"""Built-in writer: the EXR depth pass (dvd_vfx.passes.exr.DepthPassWriter), the one the engine uses."""

from __future__ import annotations

from dvd_vfx.hookspecs import hookimpl
from dvd_vfx.plugins import WriterInfo


@hookimpl(trylast=True)
def dvd_vfx_register_writers():
    return [WriterInfo(name="exr-depth", pattern="{shot}.depth.####.exr", channels=("depth.Z", "R", "G", "B"),
                       description="single-part scanline OpenEXR, FLOAT depth.Z (+ optional half RGB preview), "
                                   "lossless, written atomically per shot")]
