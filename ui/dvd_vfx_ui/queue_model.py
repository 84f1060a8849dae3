"""The shot queue as a Qt table model, fed only by controller events (snapshots), plus its delegate
and the table view (empty-queue hint inside it, drag-and-drop reordering and dropping files)."""

from __future__ import annotations

import time

import numpy as np
from PyQt6.QtCore import QAbstractTableModel, QMimeData, QModelIndex, QRectF, Qt
from PyQt6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPixmap
from PyQt6.QtWidgets import QAbstractItemView, QStyle, QStyledItemDelegate, QTableView

# Status and progress come right after the shot: they must stay visible in a narrow window.
COLUMNS = ("Shot", "Status", "Progress", "Time", "Frames", "Resolution", "Preset", "Mode", "Near / far", "Output")
SHOT, STATUS, PROGRESS, TIME, FRAMES, RESOLUTION, PRESET, MODE, NEARFAR, OUTPUT = range(len(COLUMNS))

STATUS_COLOURS = {
    "queued": "#9aa0a6", "cached": "#4fa3e0", "outdated": "#e0c04f", "rendering": "#e0a84f", "done": "#5cb85c",
    "failed": "#e05a4f", "cancelled": "#b08de0",
}
SHOT_ID_ROLE = Qt.ItemDataRole.UserRole + 1
FRACTION_ROLE = Qt.ItemDataRole.UserRole + 2
STATUS_ROLE = Qt.ItemDataRole.UserRole + 3
MIME_IDS = "application/x-dvd-vfx-shot-ids"

STAGE_WORDS = {"probe": "probing", "predict": "predicting window", "stitch": "stitching", "write": "writing frame",
               "start": "starting", "cache": "reading the cache", "load": "loading the model"}


def format_duration(seconds) -> str:
    if seconds is None:
        return "\u2014"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def stage_text(shot: dict) -> str:
    """"predicting window 3/10" / "writing frame 4/6" from a snapshot's stage, done and total."""
    stage = shot.get("stage") or ""
    word = STAGE_WORDS.get(stage, stage)
    if shot.get("total"):
        return f"{word} {shot.get('done', 0)}/{shot['total']}"
    return word


def status_text(shot: dict, now: float | None = None) -> str:
    status = shot["status"]
    if status == "rendering":
        now = time.time() if now is None else now
        elapsed = now - shot["started"] if shot.get("started") else 0.0
        fraction = shot.get("fraction") or 0.0
        eta = elapsed * (1 - fraction) / fraction if fraction >= 0.02 else None
        parts = ["rendering", stage_text(shot) or "starting", format_duration(elapsed)]
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return " \u00b7 ".join(parts)
    if status == "outdated":
        return "outdated: " + "; ".join(shot.get("differences") or []) + " \u2014 Re-render"
    if status == "done":
        if shot.get("cache") == "hit":
            return "done (from the cache)"
        if not shot.get("seconds") and shot.get("on_disk"):
            return f"done (on disk, {shot['on_disk']['count']} frames)"
        return "done"
    if status == "cancelled" and shot.get("error", "").startswith("skipped"):
        return "skipped"
    return f"{status}: {shot['error']}" if shot["error"] else status


class QueueModel(QAbstractTableModel):
    # text each column is sized for (Output takes what is left)
    COLUMN_SAMPLES = ("███ sh010_plate.####.exr [1001", "rendering · predicting window 10/10 · 0",
                      "100%  ", "0:00:00", "1001-1100 (100)", "1920x1080", "standard", "disparity", "0.5 / 100",
                      "/renders/sh010")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._rows: list[dict] = []
        self._index: dict[str, int] = {}
        self._thumbs: dict[str, QPixmap] = {}
        self.on_move = None  # callable(ids, row): reorder (the window wires it to the controller)
        self.on_files = None  # callable(paths): files dropped onto the table

    # -- fed by events ----------------------------------------------------------------------
    def on_event(self, topic: str, payload: dict) -> None:
        if topic == "queue.changed":
            self.beginResetModel()
            self._rows = list(payload["shots"])
            self._index = {row["id"]: i for i, row in enumerate(self._rows)}
            self._thumbs = {k: v for k, v in self._thumbs.items() if k in self._index}
            self.endResetModel()
        elif topic == "shot.changed":
            row = self._index.get(payload["shot"]["id"])
            if row is not None and payload["shot"].get("version", 0) >= self._rows[row].get("version", 0):
                self._rows[row] = payload["shot"]
                self._thumbs.pop(payload["shot"]["id"], None)
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
        elif topic == "job.progress.changed":
            row = self._index.get(payload["shot_id"])
            if row is not None and payload.get("version", 0) >= self._rows[row].get("version", 0):
                self._rows[row] = {**self._rows[row], "fraction": payload["fraction"], "stage": payload["stage"],
                                   "done": payload["done"], "total": payload["total"], "status": "rendering",
                                   "version": payload.get("version", 0)}
                self.dataChanged.emit(self.index(row, STATUS), self.index(row, TIME))

    def tick(self) -> None:
        """Elapsed times of rendering rows move on (a 1 s timer calls this)."""
        for i, shot in enumerate(self._rows):
            if shot["status"] == "rendering":
                self.dataChanged.emit(self.index(i, STATUS), self.index(i, TIME))

    def shot_at(self, row: int) -> dict | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def row_of(self, shot_id: str) -> int | None:
        return self._index.get(shot_id)

    def shots(self) -> list[dict]:
        return list(self._rows)

    # -- Qt model -------------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def flags(self, index):
        base = super().flags(index) | Qt.ItemFlag.ItemIsDropEnabled
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base

    def supportedDropActions(self):
        return Qt.DropAction.MoveAction | Qt.DropAction.CopyAction

    def mimeTypes(self):
        return [MIME_IDS, "text/uri-list"]

    def mimeData(self, indexes):
        ids = []
        for index in indexes:
            shot_id = self._rows[index.row()]["id"]
            if shot_id not in ids:
                ids.append(shot_id)
        data = QMimeData()
        data.setData(MIME_IDS, "\n".join(ids).encode())
        return data

    def canDropMimeData(self, data, action, row, column, parent):
        return data.hasFormat(MIME_IDS) or data.hasUrls()

    def dropMimeData(self, data, action, row, column, parent):
        target = row if row >= 0 else (parent.row() if parent.isValid() else len(self._rows))
        if data.hasFormat(MIME_IDS) and self.on_move is not None:
            ids = bytes(data.data(MIME_IDS)).decode().split("\n")
            self.on_move([i for i in ids if i in self._index], target)
            return False  # the controller reorders; the view must not remove the dragged rows itself
        if data.hasUrls() and self.on_files is not None:
            self.on_files([u.toLocalFile() for u in data.urls() if u.isLocalFile()])
            return False
        return False

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        shot = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(shot, col)
        if role == SHOT_ID_ROLE:
            return shot["id"]
        if role == FRACTION_ROLE:
            return shot["fraction"]
        if role == STATUS_ROLE:
            return shot["status"]
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(shot, col)
        if role == Qt.ItemDataRole.ForegroundRole and col == STATUS:
            return QBrush(QColor(STATUS_COLOURS.get(shot["status"], "#cccccc")))
        if role == Qt.ItemDataRole.DecorationRole and col == SHOT:
            return self._thumbnail(shot)
        if role == Qt.ItemDataRole.FontRole and (self._overridden(shot, col) or
                                                 (col == STATUS and shot["status"] in ("failed", "outdated"))):
            font = QFont()
            font.setBold(True)
            font.setItalic(col != STATUS)
            return font
        return None

    def _thumbnail(self, shot: dict):
        thumb = shot.get("thumbnail")
        if thumb is None:
            return None
        pixmap = self._thumbs.get(shot["id"])
        if pixmap is None:
            rgb = np.ascontiguousarray(thumb[..., :3], dtype=np.uint8)
            h, w = rgb.shape[:2]
            image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
            pixmap = QPixmap.fromImage(image.scaledToHeight(28, Qt.TransformationMode.SmoothTransformation))
            self._thumbs[shot["id"]] = pixmap
        return pixmap

    @staticmethod
    def _overridden(shot: dict, col: int) -> bool:
        keys = {PRESET: ("preset",), MODE: ("mode",), NEARFAR: ("near", "far", "anchors"), OUTPUT: ("output",),
                SHOT: ("shot",), FRAMES: ("frames", "start_frame", "hold_missing")}.get(col, ())
        return any(k in shot["overrides"] for k in keys)

    @staticmethod
    def _text(shot: dict, col: int) -> str:
        info, values = shot["info"], shot.get("values") or {}
        if col == SHOT:
            name = shot["label"]
            return name if shot["shot_name"] in name else f"{name} \u2192 {shot['shot_name']}"
        if col == FRAMES:
            if not info:
                return "probing\u2026" if shot["probing"] else "?"
            text = f"{info['first_frame']}-{info['last_frame']} ({info['frame_count']})"
            return f"{values['frames']} of {text}" if values.get("frames") else text
        if col == RESOLUTION:
            return f"{info['width']}x{info['height']}" if info else ""
        if col == PRESET:
            return shot.get("preset", "")
        if col == MODE:
            return values.get("mode", "")
        if col == NEARFAR:
            if values.get("anchors"):
                return "anchors"
            if values.get("mode") == "depth":
                return f"{values['near']:g} / {values['far']:g}"
            return "0..1" if values else ""
        if col == OUTPUT:
            return shot["out_dir"]
        if col == STATUS:
            return status_text(shot)
        if col == PROGRESS:
            return f"{round(shot['fraction'] * 100)}%"
        if col == TIME:
            if shot["status"] == "rendering" and shot.get("started"):
                return format_duration(time.time() - shot["started"])
            return format_duration(shot["seconds"]) if shot.get("seconds") else ""
        return ""

    @staticmethod
    def _tooltip(shot: dict, col: int) -> str | None:
        if col == STATUS and shot["error"]:
            return f"{shot['error']}\n\n(double-click for the full log)"
        if col == STATUS and shot["status"] == "outdated":
            return ("the pass on disk was rendered with other settings:\n" + "\n".join(shot["differences"])
                    + "\n\nRe-render changed (Ctrl+Shift+R) writes it again, from the cache when it holds the windows")
        if col == SHOT:
            return shot["info"]["describe"] if shot["info"] else shot["source"]
        if col == OUTPUT and shot["out_dir"]:
            return shot["pattern"] or shot["out_dir"]
        if shot["overrides"] and col in (PRESET, MODE, NEARFAR, OUTPUT, FRAMES):
            return "overridden for this shot: " + ", ".join(f"{k}={v}" for k, v in shot["overrides"].items())
        return None


class ProgressDelegate(QStyledItemDelegate):
    """The Progress column: a horizontal bar filling left to right in the status colour, the percentage
    drawn over it in a colour that reads on both the filled and the empty part."""

    def paint(self, painter, option, index):
        fraction = min(1.0, max(0.0, float(index.data(FRACTION_ROLE) or 0.0)))
        status = index.data(STATUS_ROLE) or "queued"
        painter.save()
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, option.palette.highlight())
        rect = QRectF(option.rect.adjusted(3, 4, -3, -4))
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QColor("#555a60"))
        painter.setBrush(QColor("#2b2e33"))
        painter.drawRoundedRect(rect, 3, 3)
        if fraction > 0:
            filled = QRectF(rect.x(), rect.y(), rect.width() * fraction, rect.height())
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(STATUS_COLOURS.get(status, "#4fa3e0")))
            painter.drawRoundedRect(filled, 3, 3)
        painter.setPen(QColor("#ffffff"))
        font = painter.font()
        font.setBold(True)
        painter.setFont(font)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, f"{round(fraction * 100)}%")
        painter.restore()


class QueueView(QTableView):
    """The table: an empty-queue hint drawn inside it, rows reordered by dragging, files dropped onto it."""

    HINT = "Drop movies, image sequences, folders or a saved queue (.json) here\nor use Add files / Add folder (Ctrl+O)"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setDragDropOverwriteMode(False)

    def paintEvent(self, event):
        super().paintEvent(event)
        if self.model() is not None and self.model().rowCount() == 0:
            painter = QPainter(self.viewport())
            painter.setPen(QColor("#8a8a8a"))
            font = painter.font()
            font.setPointSizeF(font.pointSizeF() * 1.15)
            painter.setFont(font)
            painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter, self.HINT)
            painter.end()
