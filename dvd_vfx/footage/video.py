"""Movie files (mov, mp4, mkv, mxf, ...) read through ffmpeg."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from dvd_vfx.errors import InputError

from .base import Footage, FootageInfo, format_fps, log
from .colour import OcioConversion, to_display
from .ffmpeg_tools import (
    Conversion,
    RawStream,
    ffmpeg_reason,
    add_conversion,
    count_readable_frames,
    ffmpeg_input_name,
    find_ffmpeg,
    passthrough_args,
    probe_media,
    stream_frames,
)

# A decoder may legitimately hand back a frame or two fewer than the container's sample
# count (e.g. undecodable leading frames of an open GOP). Up to this many are filled by
# repeating the last frame, with a warning; more is treated as a damaged file.
SHORT_TOLERANCE = 2


class VideoFootage(Footage):
    """A movie file. Frame n of the file (0-based) is source frame start_frame + n."""

    def __init__(
        self,
        source: str,
        path: str,
        *,
        start_frame: int | None = None,
        fps: Fraction | None = None,
        colorspace: str = "auto",
        ocio: OcioConversion | None = None,
    ):
        probe = probe_media(path)
        if probe.frame_count <= 0:
            raise InputError(f"{path} contains no video frames; re-export the file")
        if probe.width <= 0 or probe.height <= 0:
            raise InputError(f"{path}: ffmpeg reports no picture size for the video; re-export the file")
        rate = fps or probe.fps
        if rate is None:
            rate = Fraction(24)
            log.warning("%s has no usable frame rate; assuming 24 fps (pass fps to set it)", path)
        elif fps is not None and probe.fps is not None and fps != probe.fps:
            log.info("%s: using %s fps instead of the file's %s", path, format_fps(fps), format_fps(probe.fps))
        start = 1 if start_frame is None else int(start_frame)
        width, height = probe.display_size
        self._probe = probe
        self._ocio = ocio
        self.info = FootageInfo(
            source=source,
            path=path,
            kind="video",
            width=width,
            height=height,
            frame_numbers=tuple(range(start, start + probe.frame_count)),
            fps=rate,
            pixel_format=probe.pix_fmt,
            bit_depth=probe.bit_depth,
            pixel_aspect=probe.sar,
            rotation=probe.rotation,
            colorspace="linear" if colorspace == "linear" else "display",
            codec=probe.codec,
            ocio_colorspace=ocio.colorspace if ocio else None,
            color_matrix=probe.color_matrix,
            color_matrix_note=probe.color_matrix_note,
            color_range=None if probe.is_rgb else ("pc" if probe.full_range else "tv"),
        )

    def check_length(self) -> FootageInfo:
        """Check that the frames the container announces are in the file (cheap; `dvd-vfx info`).

        A truncated file gets info.readable_frames: the frames whose data is there.
        """
        readable = count_readable_frames(self._probe)
        if readable is not None:
            self.info = dataclasses.replace(self.info, readable_frames=readable)
        return self.info

    def ffmpeg_args(self, width: int, height: int, first: int, last: int) -> tuple[list[str], Conversion]:
        """The ffmpeg command line that streams frames first..last at width x height."""
        import ffmpeg

        info = self.info
        exe = find_ffmpeg()
        i0 = first - info.first_frame
        i1 = last - info.first_frame
        stream = ffmpeg.input(ffmpeg_input_name(info.path))[str(self._probe.stream_index)]
        if i0 > 0 or i1 < info.frame_count - 1:
            # frame-index trim: exact (counts decoded frames), never keyframe-approximate
            stream = stream.filter("trim", start_frame=i0, end_frame=i1 + 1)
        stream, conv = add_conversion(stream, self._probe, (info.width, info.height), (width, height), exe)
        sync = passthrough_args(exe)
        out = ffmpeg.output(
            stream, "pipe:", format="rawvideo", **{"frames:v": i1 - i0 + 1, sync[0][1:]: sync[1]}
        )
        return out.global_args("-hide_banner", "-nostdin", "-loglevel", "error").compile(cmd=exe), conv

    def _read(self, width: int, height: int, first: int, last: int) -> Iterator[tuple[int, np.ndarray]]:
        info = self.info
        expected = last - first + 1
        status = RawStream()
        frame = None
        number = first - 1
        args, conv = self.ffmpeg_args(width, height, first, last)
        for raw in stream_frames(args, conv, expected, status):
            number += 1
            frame = to_display(raw, info.colorspace, self._ocio)
            yield number, frame
        if status.frames == expected:
            return
        reason = ffmpeg_reason(status.stderr, info.path) if status.stderr else f"ffmpeg exit status {status.returncode}"
        if frame is None:
            raise InputError(
                f"{info.path}: ffmpeg decoded no frames for {first}-{last} ({reason}); "
                "check the file or re-export it"
            )
        missing = expected - status.frames
        if missing > SHORT_TOLERANCE:
            raise InputError(
                f"{info.path}: video ended after frame {number} but frames up to {last} were expected "
                f"({reason}); the file may be truncated or damaged: re-export it, or read only up to frame {number}"
            )
        log.warning(
            "%s: the decoder returned %d frame%s fewer than the file reports; repeating frame %d for %s",
            info.path, missing, "s" if missing > 1 else "", number,
            f"{number + 1}-{last}" if missing > 1 else str(last),
        )
        for n in range(number + 1, last + 1):
            yield n, frame.copy()

