"""A tiny publish/subscribe bus: the controller emits, widgets (through the Qt bridge) listen.

Topics are dotted names ("job.progress.changed"); subscribing to "*" receives every event.
Callbacks run on the thread that emits, so the Qt layer subscribes through a bridge that
re-emits each event as a Qt signal (queued onto the UI thread). Qt-free.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("dvd_vfx_ui.events")

# Every topic the controller emits, with what the payload holds.
TOPICS = {
    "queue.changed": "shots: list of shot snapshots (rows added, removed or reordered)",
    "shot.changed": "shot: one shot snapshot (status, info, overrides, error changed); a snapshot's 'version' "
                    "grows with time: keep the newest",
    "job.progress.changed": "shot_id, stage, done, total, fraction (0..1 of the whole shot), elapsed_s, eta_s, version",
    "job.log": "shot_id, level, message",
    "batch.state.changed": "state: idle | running | pausing | cancelling",
    "batch.progress.changed": "fraction (0..1 really done), eta_s (float or None), state, and batch.finished's counts",
    "batch.finished": "done, from_cache, failed, cancelled, left, total (shot counts of the batch), failed_ids, "
                      "failed_before_start (rows outside the batch that had failed before Start)",
    "preview.changed": "shot_id, frame, images: dict of numpy arrays, info: dict",
    "preview.comp.changed": "shot_id, frame, image (float32 [h,w,3] or None), note",
    "settings.changed": "settings: dict",
    "message": "level, text: something the user should read (status bar)",
}

Callback = Callable[[str, dict], None]


class EventBus:
    def __init__(self):
        self._subscribers: dict[str, list[Callback]] = {}
        self._lock = threading.Lock()

    def subscribe(self, topic: str, callback: Callback) -> None:
        """callback(topic, payload) for `topic`, or for every topic with "*"."""
        with self._lock:
            self._subscribers.setdefault(topic, []).append(callback)

    def unsubscribe(self, topic: str, callback: Callback) -> None:
        with self._lock:
            if callback in self._subscribers.get(topic, []):
                self._subscribers[topic].remove(callback)

    def emit(self, topic: str, **payload) -> None:
        with self._lock:
            callbacks = list(self._subscribers.get(topic, ())) + list(self._subscribers.get("*", ()))
        for callback in callbacks:
            try:
                callback(topic, payload)
            except Exception:  # a broken listener must not stop the batch
                log.exception("event listener for %s failed", topic)
