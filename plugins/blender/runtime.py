"""One depth render of one scene: start the engine, replay its events on the main thread, load the result.

A DepthRun is driven by whoever owns Blender's main thread: the modal operator's timer, or a
blocking loop for scripts and background mode. The engine runs in its own Python and speaks the
JSON-lines job protocol (utils/job.py, this add-on's own code: nothing of dvd_vfx is imported
here); its reader threads only fill a queue, and every event (and so every bpy access) is
replayed inside ``tick()`` on the main thread.
"""

from __future__ import annotations

import os
import time

import bpy

from . import compositor, preferences, tracking
from .utils import exr
from .utils import job as job_utils
from .utils import shot as shot_utils
from .utils import solve as solve_utils

_RUNS: dict[str, "DepthRun"] = {}  # scene name -> the run in flight


def active_run(scene) -> "DepthRun | None":
    run = _RUNS.get(scene.name)
    return run if run is not None and run.running else None


class DepthRun:
    def __init__(self, scene, request: shot_utils.RenderRequest, *, python: str, clip=None, image=None,
                 source_first: int = 1, wiring: dict | None = None, solve_info=None):
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
        self.solve_info = solve_info
        self.job = job_utils.EngineJob(python, request.args(), on_progress=self.on_progress, on_log=self._on_log)
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
        if not python:
            raise RuntimeError("no engine Python: set it in the add-on preferences (the python where dvd-vfx is "
                               "installed) or run `dvd-vfx install blender` there")
        image = None
        if settings.source == "IMAGE":
            image = settings.image
            if image is None:
                raise ValueError("choose an image sequence in the dvd-vfx panel")
            if image.source != "SEQUENCE":
                raise ValueError(f"image {image.name} is not an image sequence (source {image.source}); choose a "
                                 f"numbered sequence such as plate.1001.exr")
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
        anchors_file, solve_info = None, None
        if image is None and settings.mode == "depth" and settings.use_solve and tracking.has_solve(clip):
            anchors, solve_info = tracking.solve_anchors(scene, clip, source_first=source_first,
                                                         frames=(settings.frame_first, settings.frame_last)
                                                         if settings.use_frame_range else None)
            if len(anchors) < 3:
                raise ValueError(f"the camera solve of {clip.name} gives {len(anchors)} bundle positions in the "
                                 f"rendered frames; at least 3 are needed (turn off Scene Scale from Solve to use "
                                 f"Near/Far)")
            anchors_file = solve_utils.write_anchors_csv(
                os.path.join(os.path.dirname(out_dir), f"{shot}.anchors.csv"), anchors)
        request = shot_utils.RenderRequest(
            source=source, out_dir=out_dir, shot=shot, preset=settings.preset or prefs.default_preset,
            mode=settings.mode, near=settings.near, far=settings.far,
            frames=(settings.frame_first, settings.frame_last) if settings.use_frame_range else None,
            start_frame=start_frame, weights=bpy.path.abspath(prefs.weights_dir) if prefs.weights_dir else "",
            cache_dir=bpy.path.abspath(prefs.cache_dir) if prefs.cache_dir else "", extra_args=prefs.extra_args,
            anchors=anchors_file or "")
        wiring = dict(mode=settings.mode, max_blur=settings.max_blur, focus_disparity=settings.focus_disparity,
                      fog=settings.use_fog, fog_start=settings.fog_start,
                      fog_end=settings.fog_end, fog_density=settings.fog_density,
                      fog_colour=tuple(settings.fog_colour))
        return cls(scene, request, python=python, clip=clip if image is None else None, image=image,
                   source_first=source_first, wiring=wiring, solve_info=solve_info)

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

    def _on_log(self, level: str, message: str) -> None:
        if level in ("warning", "error", "critical"):
            self.warnings.append(message)

    def _finish(self, context) -> None:
        self.running = False
        _RUNS.pop(self.scene_name, None)
        scene = self._scene()
        error = self.job.error
        if error is not None or self.job.result is None:
            cancelled = self.cancel_requested or (error is not None and error.cancelled)
            self.error = "cancelled" if cancelled else (str(error) if error else "the engine stopped without an answer")
            self._status("dvd-vfx: cancelled (finished windows are cached)" if cancelled else
                         f"dvd-vfx: failed: {self.error}", progress=0.0)
            return
        self.result = self.job.result
        if scene is None:
            self.error = f"scene {self.scene_name!r} was removed during the render"
            return
        try:
            self._load(scene)
        except (RuntimeError, KeyError, ValueError) as exc:
            self.error = f"the depth pass was written to {self.result.out_dir} but could not be loaded: {exc}"
            self._status(f"dvd-vfx: {self.error}", progress=0.0)
            return
        fit = self.result.anchors
        if not fit and self.request.anchors:  # an engine whose JSON result predates the field: the EXR header
            fit = exr.read_anchors_header(compositor.first_file(self.result.pattern, self.result.first_frame))
        scene.dvd_vfx.solve_status = (solve_utils.describe_fit(fit, self.solve_info.bundles)
                                      if fit and self.solve_info is not None else
                                      f"Near/Far {self.result.near:g}..{self.result.far:g}" if self.result.mode == "depth"
                                      else "")
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
