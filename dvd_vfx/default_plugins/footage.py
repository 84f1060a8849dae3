"""Built-in footage: paths (movie files, image sequence patterns, folders) read by dvd_vfx.footage.

The engine always reads through dvd_vfx.footage.open_footage; the reader list is what it accepts,
for `dvd-vfx plugins` and hosts' file filters. A host maps its own objects (a Blender movie clip,
a Nuke Read node) to a path with dvd_vfx_resolve_footage.
"""

from __future__ import annotations

import os

from dvd_vfx.hookspecs import hookimpl
from dvd_vfx.plugins import ReaderInfo

MOVIE_EXTENSIONS = ("mov", "mp4", "m4v", "mxf", "mkv", "avi", "webm", "mpg", "mpeg", "mts", "y4m")
SEQUENCE_EXTENSIONS = ("exr", "png", "jpg", "jpeg", "tif", "tiff", "dpx", "tga", "bmp")


@hookimpl(trylast=True)
def dvd_vfx_register_readers():
    return [
        ReaderInfo(name="video", extensions=MOVIE_EXTENSIONS,
                   description="movie files through ffmpeg (any format ffmpeg decodes)"),
        ReaderInfo(name="sequence", extensions=SEQUENCE_EXTENSIONS,
                   description="image sequences: shot.####.exr, shot.%04d.png, shot.1001-1100#.exr or a folder"),
    ]


@hookimpl(trylast=True)
def dvd_vfx_resolve_footage(source):
    if isinstance(source, (str, os.PathLike)):
        return source
    return None
