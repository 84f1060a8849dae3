"""Controller events -> one Qt signal, so listeners run on the UI thread (queued across threads)."""

from __future__ import annotations

from PyQt6.QtCore import QObject, pyqtSignal


class EventBridge(QObject):
    """Subscribes to every controller event and re-emits it as ``event(topic, payload)``.

    The bridge lives on the UI thread; an event emitted by the batch worker thread is queued
    and delivered there, so widgets never run on the worker thread.
    """

    event = pyqtSignal(str, object)

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self._controller = controller
        controller.events.subscribe("*", self._forward)

    def _forward(self, topic: str, payload: dict) -> None:
        self.event.emit(topic, payload)

    def detach(self) -> None:
        self._controller.events.unsubscribe("*", self._forward)
