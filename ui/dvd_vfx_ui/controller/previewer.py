"""What the preview pane shows: plate + depth of one frame of a row, and defocus / fog of it, made on
a thread of their own (the newest request of each kind wins) and answered with events."""

from __future__ import annotations

import threading
from collections.abc import Callable

from dvd_vfx.errors import DvdError

from ..events import EventBus
from .context import one_line


class Previewer:
    """shot: shot id -> the row's snapshot (KeyError when it is gone)."""

    def __init__(self, events: EventBus, shot: Callable[[str], dict]):
        self.events = events
        self._shot = shot
        self._lock = threading.Condition()
        self._preview_request = None
        self._comp_request = None
        self._last_preview = None
        self._thread: threading.Thread | None = None

    def request_preview(self, shot_id: str, frame: int | None = None) -> None:
        """Load plate + depth of a frame; answers with "preview.changed"."""
        with self._lock:
            self._preview_request = (shot_id, frame)
            self._wake()

    def request_comp(self, shot_id: str, params: dict) -> None:
        """Defocus + fog of the last previewed frame (dvd_vfx.comp); answers with "preview.comp.changed".

        params: focus_t (0..1, far..near), fstop, fog_t (0..1), fog_colour (r, g, b in 0..1).
        """
        with self._lock:
            self._comp_request = (shot_id, dict(params))
            self._wake()

    def _wake(self) -> None:
        self._lock.notify()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="dvd-vfx-panel-preview", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._preview_request is None and self._comp_request is None:
                    self._lock.wait(timeout=5.0)
                    if self._preview_request is None and self._comp_request is None:
                        self._thread = None
                        return
                frame_request, self._preview_request = self._preview_request, None
                comp_request = None
                if frame_request is None:
                    comp_request, self._comp_request = self._comp_request, None
            if frame_request is not None:
                self._load_preview(*frame_request)
            elif comp_request is not None:
                self._make_comp(*comp_request)

    def _load_preview(self, shot_id: str, frame: int | None) -> None:
        from .. import preview

        try:
            snapshot = self._shot(shot_id)
        except KeyError:
            return
        info = snapshot["info"]
        if info is None:
            self.events.emit("preview.changed", shot_id=shot_id, frame=frame, images={},
                             info={"note": snapshot["error"] or "probing the footage\u2026"})
            return
        frame = info["first_frame"] if frame is None else max(info["first_frame"], min(info["last_frame"], frame))
        try:
            result = preview.load_preview(snapshot, frame)
        except DvdError as exc:
            result = {"note": one_line(exc)}
        except Exception as exc:
            result = {"note": one_line(f"preview failed: {type(exc).__name__}: {exc}")}
        images = {k: result.pop(k) for k in ("plate", "depth", "depth_rgb") if result.get(k) is not None}
        for k in ("plate", "depth", "depth_rgb"):
            result.pop(k, None)
        result["plate_width"] = info["width"]
        self._last_preview = (shot_id, frame, images, result)
        self.events.emit("preview.changed", shot_id=shot_id, frame=frame, images=images, info=result)

    def _make_comp(self, shot_id: str, params: dict) -> None:
        from .. import preview

        last = self._last_preview
        if last is None or last[0] != shot_id:
            return
        _, frame, images, info = last
        if images.get("depth") is None or images.get("plate") is None:
            self.events.emit("preview.comp.changed", shot_id=shot_id, frame=frame, image=None,
                             note="defocus / fog: render the shot first")
            return
        mode, near, far = info.get("mode"), info.get("near"), info.get("far")
        try:
            image = preview.comp_preview(
                images["plate"], images["depth"], mode=mode, near=near, far=far,
                focus=preview.focus_from_slider(params.get("focus_t", 0.5), mode, near, far),
                fstop=float(params.get("fstop", 2.8)),
                fog_density=preview.fog_density_from_slider(params.get("fog_t", 0.0), mode, near, far),
                fog_colour=params.get("fog_colour", (0.75, 0.78, 0.84)), plate_width=info.get("plate_width"))
            note = ""
        except DvdError as exc:
            image, note = None, one_line(exc)
        except Exception as exc:
            image, note = None, one_line(f"defocus / fog failed: {type(exc).__name__}: {exc}")
        self.events.emit("preview.comp.changed", shot_id=shot_id, frame=frame, image=image, note=note)
