"""The shot queue as a Qt table model, fed only by controller events (snapshots), plus its delegates."""

from __future__ import annotations

from PyQt6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PyQt6.QtGui import QBrush, QColor, QFont
from PyQt6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionProgressBar

COLUMNS = ("Shot", "Frames", "Resolution", "Preset", "Mode", "Near / far", "Output", "Status", "Progress")
SHOT, FRAMES, RESOLUTION, PRESET, MODE, NEARFAR, OUTPUT, STATUS, PROGRESS = range(len(COLUMNS))

STATUS_COLOURS = {
    "queued": "#9aa0a6", "cached": "#4fa3e0", "rendering": "#e0a84f", "done": "#5cb85c",
    "failed": "#e05a4f", "cancelled": "#b08de0",
}
SHOT_ID_ROLE = Qt.ItemDataRole.UserRole + 1
FRACTION_ROLE = Qt.ItemDataRole.UserRole + 2


class QueueModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._rows: list[dict] = []
        self._index: dict[str, int] = {}

    # -- fed by events ----------------------------------------------------------------------
    def on_event(self, topic: str, payload: dict) -> None:
        if topic == "queue.changed":
            self.beginResetModel()
            self._rows = list(payload["shots"])
            self._index = {row["id"]: i for i, row in enumerate(self._rows)}
            self.endResetModel()
        elif topic == "shot.changed":
            row = self._index.get(payload["shot"]["id"])
            if row is not None:
                self._rows[row] = payload["shot"]
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
        elif topic == "job.progress.changed":
            row = self._index.get(payload["shot_id"])
            if row is not None:
                self._rows[row] = {**self._rows[row], "fraction": payload["fraction"], "stage": payload["stage"],
                                   "status": "rendering"}
                self.dataChanged.emit(self.index(row, STATUS), self.index(row, PROGRESS))

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
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(shot, col)
        if role == Qt.ItemDataRole.ForegroundRole and col == STATUS:
            return QBrush(QColor(STATUS_COLOURS.get(shot["status"], "#cccccc")))
        if role == Qt.ItemDataRole.FontRole and self._overridden(shot, col):
            font = QFont()
            font.setItalic(True)
            font.setBold(True)
            return font
        return None

    @staticmethod
    def _overridden(shot: dict, col: int) -> bool:
        keys = {PRESET: ("preset",), MODE: ("mode",), NEARFAR: ("near", "far"), OUTPUT: ("output",),
                SHOT: ("shot",)}.get(col, ())
        return any(k in shot["overrides"] for k in keys)

    @staticmethod
    def _text(shot: dict, col: int) -> str:
        info, values = shot["info"], shot.get("values") or {}
        if col == SHOT:
            name = shot["label"]
            return name if shot["shot_name"] in name else f"{name} \u2192 {shot['shot_name']}"
        if col == FRAMES:
            return f"{info['first_frame']}-{info['last_frame']} ({info['frame_count']})" if info else \
                ("probing\u2026" if shot["probing"] else "?")
        if col == RESOLUTION:
            return f"{info['width']}x{info['height']}" if info else ""
        if col == PRESET:
            return shot.get("preset", "")
        if col == MODE:
            return values.get("mode", "")
        if col == NEARFAR:
            if values.get("mode") == "depth":
                return f"{values['near']:g} / {values['far']:g}"
            return "0..1" if values else ""
        if col == OUTPUT:
            return shot["out_dir"]
        if col == STATUS:
            status = shot["status"]
            if status == "rendering" and shot["stage"]:
                return f"rendering ({shot['stage']})"
            return f"{status}: {shot['error']}" if shot["error"] else status
        if col == PROGRESS:
            return f"{round(shot['fraction'] * 100)}%"
        return ""

    @staticmethod
    def _tooltip(shot: dict, col: int) -> str | None:
        if col == STATUS and shot["error"]:
            return f"{shot['error']}\n\n(double-click for the full log)"
        if col == SHOT:
            return shot["info"]["describe"] if shot["info"] else shot["source"]
        if col == OUTPUT and shot["out_dir"]:
            return shot["pattern"] or shot["out_dir"]
        if shot["overrides"] and col in (PRESET, MODE, NEARFAR, OUTPUT):
            return "overridden for this shot: " + ", ".join(f"{k}={v}" for k, v in shot["overrides"].items())
        return None


class ProgressDelegate(QStyledItemDelegate):
    """Draws the Progress column as a progress bar."""

    def paint(self, painter, option, index):
        fraction = index.data(FRACTION_ROLE) or 0.0
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 3, -2, -3)
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = int(round(fraction * 1000))
        bar.text = f"{round(fraction * 100)}%"
        bar.textVisible = True
        bar.state = option.state
        style = option.widget.style() if option.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)
