"""One depth render of one scene: start the engine, replay its events on the main thread, load the result.

A DepthRun is driven by whoever owns Blender's main thread: the modal operator's timer, or a
blocking loop for scripts and background mode. SubprocessJob's reader threads only fill a queue;
every hook call below (and so every bpy access) happens inside ``tick()`` on the main thread.
"""

from __future__ import annotations

import os
import tempfile
import time

import bpy

from . import compositor, preferences
from .utils import engine as engine_utils
from .utils import shot as shot_utils

_RUNS: dict[str, "DepthRun"] = {}  # scene name -> the run in flight


def active_run(scene) -> "DepthRun | None":
    run = _RUNS.get(scene.name)
    return run if run is not None and run.running else None


def _bridge_folder() -> str:
    try:
        return bpy.utils.extension_path_user(__package__, path="bridge", create=True)
    except (ValueError, AttributeError):  # not installed as an extension (tests, legacy add-on path)
        return os.path.join(tempfile.gettempdir(), f"dvd_vfx_blender_bridge_{os.getuid() if hasattr(os, 'getuid') else 0}")


def _host_events(run: "DepthRun"):
    """The add-on's side of the job's hooks, called on the main thread from DepthRun.tick().

    Built on first use: dvd_vfx may only become importable through the engine bridge.
    """
    from dvd_vfx.hookspecs import hookimpl

    class HostEvents:
        @hookimpl
        def dvd_vfx_job_progress(self, job, stage, done, total):
            run.on_progress(stage, done, total)

        @hookimpl
        def dvd_vfx_job_log(self, job, level, message):
            if level in ("warning", "error"):
                run.warnings.append(message)

        @hookimpl
        def dvd_vfx_should_cancel(self, job):
            return True if run.cancel_requested else None

    return HostEvents()


class DepthRun:
    def __init__(self, scene, request: shot_utils.RenderRequest, *, python: str, clip=None, image=None,
                 source_first: int = 1, wiring: dict | None = None):
        self.scene_name = scene.name
        self.request = request
        self.python = python
        self.clip_name = clip.name if clip is not None else None
        self.plate_image_name = image.name if image is not None else None
        self.source_first = source_first
        self.wiring = dict(wiring or {})
        self.cancel_requested = False
        self.warnings: list[str] = []
        self.stage, self.done, self.total = "start", 0, 0
        self.error: str | None = None
        self.result = None
        self.image_name: str | None = None
        self.started = time.monotonic()
        from dvd_vfx.engine import Engine

        self.engine = Engine(plugins=[_host_events(self)], entry_points=False, env=False)
        self.job = self.engine.subprocess_job(python=python, args=request.args())
        self.running = True
        _RUNS[self.scene_name] = self
        self._status(f"dvd-vfx: starting {request.shot}")

    # -- creation ----------------------------------------------------------------------------
    @classmethod
    def start(cls, context, *, clip=None) -> "DepthRun":
        """Gather the settings on the main thread and start the engine. RuntimeError/ValueError: a user message."""
        scene = context.scene
        if active_run(scene) is not None:
            raise RuntimeError("a depth render is already running for this scene; cancel it first")
        settings = scene.dvd_vfx
        prefs = preferences.get(context)
        python = prefs.resolved_python()
        engine_utils.ensure_importable(python, _bridge_folder())
        if not python:
            raise RuntimeError("no engine Python: set it in the add-on preferences (the python where dvd-vfx is "
                               "installed) or run `dvd-vfx install blender` there")
        image = None
        if settings.source == "IMAGE":
            image = settings.image
            if image is None:
                raise ValueError("choose an image sequence in the dvd-vfx panel")
            path = bpy.path.abspath(image.filepath, library=image.library)
            source, source_first = shot_utils.sequence_pattern(path)
            name, start_frame = image.name, None
        else:
            clip = clip or scene.active_clip
            if clip is None:
                raise ValueError("the scene has no active movie clip: open one in the Movie Clip editor")
            path = bpy.path.abspath(clip.filepath, library=clip.library)
            if clip.source == "SEQUENCE":
                source, source_first = shot_utils.sequence_pattern(path)
            else:
                source, source_first = path, 1
            name, start_frame = clip.name, None
        shot = shot_utils.shot_name(name)
        blend_dir = os.path.dirname(bpy.data.filepath) if bpy.data.filepath else None
        out_dir = shot_utils.resolve_output_dir(bpy.path.abspath(settings.output_dir) if not
                                                settings.output_dir.startswith("//") else settings.output_dir,
                                                blend_dir=blend_dir, shot=shot)
        request = shot_utils.RenderRequest(
            source=source, out_dir=out_dir, shot=shot, preset=settings.preset or prefs.default_preset,
            mode=settings.mode, near=settings.near, far=settings.far,
            frames=(settings.frame_first, settings.frame_last) if settings.use_frame_range else None,
            start_frame=start_frame, weights=bpy.path.abspath(prefs.weights_dir) if prefs.weights_dir else "",
            cache_dir=bpy.path.abspath(prefs.cache_dir) if prefs.cache_dir else "", extra_args=prefs.extra_args)
        wiring = dict(mode=settings.mode, f_stop=settings.f_stop, fog=settings.use_fog, fog_start=settings.fog_start,
                      fog_end=settings.fog_end, fog_density=settings.fog_density,
                      fog_colour=tuple(settings.fog_colour))
        return cls(scene, request, python=python, clip=clip if image is None else None, image=image,
                   source_first=source_first, wiring=wiring)

    # -- main-thread driving -----------------------------------------------------------------
    def tick(self, context=None) -> bool:
        """Replay pending events; on the last one, load the result. False once finished."""
        if not self.running:
            return False
        if self.job.poll():
            return True
        self._finish(context)
        return False

    def request_cancel(self) -> None:
        self.cancel_requested = True
        self.job.cancel()
        self._status("dvd-vfx: cancelling...")

    def wait(self, context=None, timeout: float | None = None) -> bool:
        """Block until done (scripts, background mode); True when it finished in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.tick(context):
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def on_progress(self, stage: str, done: int, total: int) -> None:
        self.stage, self.done, self.total = stage, done, total
        self._status(shot_utils.status_line(stage, done, total),
                     progress=shot_utils.progress_fraction(stage, done, total))

    def _scene(self):
        return bpy.data.scenes.get(self.scene_name)

    def _status(self, text: str, progress: float | None = None) -> None:
        scene = self._scene()
        if scene is not None:
            scene.dvd_vfx.status = text
            if progress is not None:
                scene.dvd_vfx.progress = progress

    def _finish(self, context) -> None:
        self.running = False
        _RUNS.pop(self.scene_name, None)
        outcome = self.job.wait(timeout=0)
        scene = self._scene()
        if outcome is None or not outcome.ok:
            error = outcome.error if outcome is not None else None
            self.error = str(error) if error is not None else "the engine stopped without an answer"
            cancelled = type(error).__name__ == "Cancelled"
            self._status("dvd-vfx: cancelled (finished windows are cached)" if cancelled else
                         f"dvd-vfx: failed: {self.error}", progress=0.0)
            if cancelled:
                self.error = "cancelled"
            return
        self.result = outcome.result
        if scene is None:
            self.error = f"scene {self.scene_name!r} was removed during the render"
            return
        try:
            self._load(scene)
        except (RuntimeError, KeyError, ValueError) as exc:
            self.error = f"the depth pass was written to {self.result.out_dir} but could not be loaded: {exc}"
            self._status(f"dvd-vfx: {self.error}", progress=0.0)
            return
        self._status(f"dvd-vfx: {self.result.shot} frames {self.result.first_frame}-{self.result.last_frame} "
                     f"done in {self.result.seconds:.1f} s (cache {self.result.cache})", progress=1.0)

    def _load(self, scene) -> None:
        r = self.result
        clip = bpy.data.movieclips.get(self.clip_name) if self.clip_name else None
        plate_image = bpy.data.images.get(self.plate_image_name) if self.plate_image_name else None
        if clip is not None:
            clip_start, clip_offset = clip.frame_start, clip.frame_offset
        else:
            clip_start, clip_offset = scene.frame_start, 0
        mapping = shot_utils.image_user_mapping(clip_start=clip_start, clip_offset=clip_offset,
                                                source_first=self.source_first, first=r.first_frame,
                                                last=r.last_frame)
        image = compositor.load_depth_image(f"{r.shot}.depth", compositor.first_file(r.pattern, r.first_frame))
        self.image_name = image.name
        plate_mapping = None
        if plate_image is not None:
            plate_mapping = shot_utils.image_user_mapping(clip_start=clip_start, clip_offset=0,
                                                          source_first=self.source_first, first=self.source_first,
                                                          last=self.source_first + max(plate_image.frame_duration, 1) - 1)
        compositor.wire(scene, image=image, mapping=mapping, plate_clip=clip, plate_image=plate_image,
                        plate_mapping=plate_mapping, **self.wiring)
