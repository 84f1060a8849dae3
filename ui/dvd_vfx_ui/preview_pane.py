"""Preview of the selected shot: frame slider, plate, depth colour map with a near/far legend,
and defocus / fog controls (live only when dvd_vfx.comp exists). Thin: the controller loads
the images on its preview thread; this widget shows what "preview.changed" brings."""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QPointF, QRectF, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QColor, QImage, QPainter, QPixmap
from PyQt6.QtWidgets import (QCheckBox, QColorDialog, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                             QPushButton, QSizePolicy, QSlider, QSpinBox, QVBoxLayout, QWidget)

from . import preview


def to_qimage(rgb: np.ndarray) -> QImage:
    """uint8 or float [H,W,3] -> a QImage that owns its pixels."""
    if rgb.dtype != np.uint8:
        rgb = preview.to_uint8(rgb)
    rgb = np.ascontiguousarray(rgb[..., :3])
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class ImageView:
    """One picture of the preview (plate, depth, defocus / fog): an image or a note; the Viewer draws it."""

    def __init__(self, title: str, viewer: "Viewer | None" = None):
        self.title = title
        self.image: QImage | None = None
        self.note = title
        self.viewer = viewer

    def set_image(self, image: QImage | None, note: str = "") -> None:
        if image is None:
            self.set_note(note or self.title)
            return
        self.image, self.note = image, ""
        self._changed()

    def set_note(self, text: str) -> None:
        self.image, self.note = None, text
        self._changed()

    def has_image(self) -> bool:
        return self.image is not None

    def _changed(self) -> None:
        if self.viewer is not None:
            self.viewer.update()


VIEW_MODES = ("Side by side", "Plate", "Depth", "Defocus / fog", "Wipe plate | depth")
SIDE, PLATE, DEPTH, COMP, WIPE = VIEW_MODES


class Viewer(QWidget):
    """Draws the preview's pictures as large as the space allows, sharp on high-DPI screens (images are
    painted at device resolution): side by side (a row, a column or a grid, whichever is largest), one
    picture, or an A/B wipe of plate and depth (drag the line). Double-click a picture to enlarge it;
    double-click again for all."""

    mode_changed = pyqtSignal(str)

    def __init__(self, views: list[ImageView], parent=None):
        super().__init__(parent)
        self.views = views
        for view in views:
            view.viewer = self
        self.mode = SIDE
        self.wipe = 0.5
        self.setMinimumSize(240, 140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(False)

    def set_mode(self, mode: str) -> None:
        if mode in VIEW_MODES and mode != self.mode:
            self.mode = mode
            self.mode_changed.emit(mode)
            self.update()

    def _shown(self) -> list[ImageView]:
        if self.mode == SIDE:
            return self.views
        return [self.views[{PLATE: 0, DEPTH: 1, COMP: 2}.get(self.mode, 0)]]

    def _aspect(self) -> float:
        for view in self.views:
            if view.image is not None and view.image.height():
                return view.image.width() / view.image.height()
        return 16 / 9

    def cells(self) -> list[tuple[ImageView, QRectF]]:
        """Where each shown picture goes: the arrangement with the largest pictures."""
        shown = self._shown()
        if self.mode == WIPE:
            return [(self.views[0], QRectF(self.rect()))]
        n, w, h, aspect = len(shown), self.width(), self.height(), self._aspect()
        best = None
        for cols in range(1, n + 1):
            rows = -(-n // cols)
            cw, ch = w / cols, h / rows
            scale = min(cw / aspect, ch)  # picture height that fits a cell
            if best is None or scale > best[0]:
                best = (scale, cols, rows)
        _, cols, rows = best
        cw, ch = w / cols, h / rows
        return [(view, QRectF((i % cols) * cw, (i // cols) * ch, cw, ch)) for i, view in enumerate(shown)]

    @staticmethod
    def _fit(image: QImage, cell: QRectF) -> QRectF:
        aspect = image.width() / max(1, image.height())
        w = min(cell.width() - 4, (cell.height() - 4) * aspect)
        h = w / aspect
        return QRectF(cell.center().x() - w / 2, cell.center().y() - h / 2, w, h)

    def paintEvent(self, event):
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.fillRect(self.rect(), QColor("#1b1b1b"))
        if self.mode == WIPE:
            self._paint_wipe(painter)
        else:
            for view, cell in self.cells():
                self._paint_cell(painter, view, cell)
        painter.end()

    def _paint_cell(self, painter, view: ImageView, cell: QRectF) -> None:
        if view.image is not None:
            target = self._fit(view.image, cell)
            painter.drawImage(target, view.image)
            self._label(painter, target.topLeft(), view.title)
        else:
            painter.setPen(QColor("#d0d0d0") if view.note.startswith("failed") else QColor("#8a8a8a"))
            painter.drawText(cell.adjusted(12, 12, -12, -12),
                             int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), view.note)

    @staticmethod
    def _label(painter, where, text: str) -> None:
        metrics = painter.fontMetrics()
        box = QRectF(where.x() + 4, where.y() + 4, metrics.horizontalAdvance(text) + 10, metrics.height() + 4)
        painter.fillRect(box, QColor(0, 0, 0, 150))
        painter.setPen(QColor("#e8e8e8"))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

    def _paint_wipe(self, painter) -> None:
        a, b = self.views[0], self.views[1]
        if a.image is None or b.image is None:
            self._paint_cell(painter, b if a.image is not None else a, QRectF(self.rect()))
            return
        target = self._fit(a.image, QRectF(self.rect()))
        painter.drawImage(target, a.image)
        split = target.x() + target.width() * self.wipe
        painter.save()
        painter.setClipRect(QRectF(split, target.y(), target.right() - split, target.height()))
        painter.drawImage(target, b.image)
        painter.restore()
        painter.setPen(QColor("#ffffff"))
        painter.drawLine(QPointF(split, target.top()), QPointF(split, target.bottom()))
        self._label(painter, target.topLeft(), a.title)
        metrics = painter.fontMetrics()
        self._label(painter, QPointF(target.right() - metrics.horizontalAdvance(b.title) - 18, target.top()), b.title)

    def mousePressEvent(self, event):
        self._drag(event)

    def mouseMoveEvent(self, event):
        self._drag(event)

    def _drag(self, event) -> None:
        if self.mode != WIPE or self.views[0].image is None:
            return
        target = self._fit(self.views[0].image, QRectF(self.rect()))
        self.wipe = min(1.0, max(0.0, (event.position().x() - target.x()) / max(1.0, target.width())))
        self.update()

    def mouseDoubleClickEvent(self, event):
        if self.mode != SIDE:
            self.set_mode(SIDE)
            return
        for view, cell in self.cells():
            if cell.contains(event.position()):
                self.set_mode({0: PLATE, 1: DEPTH, 2: COMP}[self.views.index(view)])
                return


class DepthLegend(QWidget):
    """far ---gradient--- near, with the pass's numbers."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.far_label, self.near_label = QLabel("far"), QLabel("near")
        self.bar = QLabel()
        self.bar.setPixmap(QPixmap.fromImage(to_qimage(preview.legend_bar(200, 10))))
        self.bar.setScaledContents(True)
        self.bar.setFixedHeight(10)
        layout.addWidget(self.far_label)
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.near_label)

    def set_range(self, mode: str | None, near, far) -> None:
        if mode == "depth" and near is not None and far is not None:
            self.far_label.setText(f"far {far:g}")
            self.near_label.setText(f"near {near:g}")
        elif mode == "disparity":
            self.far_label.setText("far (0)")
            self.near_label.setText("near (1)")
        else:
            self.far_label.setText("far")
            self.near_label.setText("near")


class PreviewPane(QWidget):
    frame_requested = pyqtSignal(str, int)

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.shot_id: str | None = None
        self.shown: tuple[str, int] | None = None  # (shot id, frame) of the pictures on screen
        self._shot_state = None
        self._info: dict = {}
        self._images: dict = {}
        self.comp = preview.comp_module()

        self.title = QLabel("No shot selected")
        self.title.setStyleSheet("font-weight: bold")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setEnabled(False)
        self.frame_box = QSpinBox()
        self.frame_box.setEnabled(False)
        self.frame_box.setKeyboardTracking(False)
        frame_row = QHBoxLayout()
        frame_row.addWidget(QLabel("Frame"))
        frame_row.addWidget(self.slider, 1)
        frame_row.addWidget(self.frame_box)

        self.plate_view = ImageView("plate")
        self.depth_view = ImageView("depth")
        self.comp_view = ImageView("defocus / fog")
        self.viewer = Viewer([self.plate_view, self.depth_view, self.comp_view])
        self.legend = DepthLegend()
        self.view_mode = QComboBox()
        self.view_mode.addItems(VIEW_MODES)
        self.view_mode.setToolTip("one picture, all side by side, or a wipe between plate and depth "
                                  "(double-click a picture to enlarge it)")
        self.view_mode.currentTextChanged.connect(self.viewer.set_mode)
        self.viewer.mode_changed.connect(self.view_mode.setCurrentText)
        self.follow = QCheckBox("Follow render")
        self.follow.setChecked(True)
        self.follow.setToolTip("show the shot that renders now, and its pass when it is written")
        view_row = QHBoxLayout()
        view_row.addWidget(QLabel("View"))
        view_row.addWidget(self.view_mode)
        view_row.addStretch(1)
        view_row.addWidget(self.follow)

        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #b0b0b0")

        controls = QGroupBox("Defocus and fog")
        form = QFormLayout(controls)
        self.focus = self._slider(0, 1000, 700)  # far (0) .. near (1000), even in 1/z
        self.fstop = self._slider(10, 220, 28)  # f/1.0 .. f/22, tenths
        self.fog_density = self._slider(0, 1000, 0)
        self.focus_label, self.fstop_label, self.fog_label = QLabel(), QLabel(), QLabel()
        for label in (self.focus_label, self.fstop_label, self.fog_label):
            label.setMinimumWidth(70)
        self.fog_colour = QColor(190, 200, 215)
        self.fog_colour_button = QPushButton("fog colour")
        self.fog_colour_button.clicked.connect(self._pick_fog_colour)
        for title, slider, label in (("Focus distance", self.focus, self.focus_label),
                                     ("f-stop (blur)", self.fstop, self.fstop_label),
                                     ("Fog density", self.fog_density, self.fog_label)):
            row = QHBoxLayout()
            row.addWidget(slider, 1)
            row.addWidget(label)
            form.addRow(title, row)
        form.addRow("Fog colour", self.fog_colour_button)
        self.comp_controls = [self.focus, self.fstop, self.fog_density, self.fog_colour_button]
        self._update_labels()
        if self.comp is None:
            for w in [*self.comp_controls, controls]:
                w.setEnabled(False)
                w.setToolTip(preview.COMP_MISSING)
            self.comp_view.set_note(f"defocus / fog preview {preview.COMP_MISSING}")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addLayout(view_row)
        layout.addLayout(frame_row)
        layout.addWidget(self.viewer, 1)
        layout.addWidget(self.legend)
        layout.addWidget(self.note)
        layout.addWidget(controls)
        self.controls = controls

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(60)
        self._debounce.timeout.connect(self._request)
        self.slider.valueChanged.connect(self._frame_moved)
        self.frame_box.valueChanged.connect(self.slider.setValue)

    def _slider(self, lo, hi, value) -> QSlider:
        s = QSlider(Qt.Orientation.Horizontal)
        s.setRange(lo, hi)
        s.setValue(value)
        s.valueChanged.connect(self._update_comp)
        return s

    # -- selection / requests ---------------------------------------------------------------
    def show_shot(self, shot: dict | None) -> None:
        if shot is None:
            self.shot_id = self._shot_state = None
            self.title.setText("No shot selected")
            self.slider.setEnabled(False)
            self.frame_box.setEnabled(False)
            for view in (self.plate_view, self.depth_view):
                view.set_note(view.title)
            return
        changed = shot["id"] != self.shot_id
        state = (shot["id"], shot["info"] is not None, shot["status"], shot["out_dir"], shot["pattern"],
                 shot["error"])
        if not changed and state == self._shot_state:
            return  # progress of the same shot: the pictures have not changed
        self._shot_state = state
        self.shot_id = shot["id"]
        if changed:  # never show another shot's pictures under this title
            self.shown = None
            self._images, self._info = {}, {}
            for view in (self.plate_view, self.depth_view):
                view.set_note("loading\u2026")
            if self.comp is not None:
                self.comp_view.set_note("defocus / fog")
            self.legend.set_range(None, None, None)
            self.note.setText("")
        self.title.setText(f"{shot['shot_name']} \u2014 {shot['label']}")
        self._shot = shot
        info = shot["info"]
        if info:
            for w in (self.slider, self.frame_box):
                w.blockSignals(True)
                w.setRange(info["first_frame"], info["last_frame"])
                if changed:
                    w.setValue(info["first_frame"])
                w.setEnabled(True)
                w.blockSignals(False)
        self._request()

    def refresh(self) -> None:
        if self.shot_id is not None:
            self._request()

    def _frame_moved(self, value: int) -> None:
        self.frame_box.blockSignals(True)
        self.frame_box.setValue(value)
        self.frame_box.blockSignals(False)
        self._debounce.start()

    def _request(self) -> None:
        if self.shot_id is not None:
            self.controller.request_preview(self.shot_id, self.slider.value() if self.slider.isEnabled() else None)

    # -- results (preview.changed, on the UI thread) ---------------------------------------------
    def on_event(self, topic: str, payload: dict) -> None:
        if topic != "preview.changed" or payload["shot_id"] != self.shot_id:
            return
        images, info = payload["images"], payload["info"]
        self._images, self._info = images, info
        self.shown = (payload["shot_id"], payload["frame"])
        plate = images.get("plate")
        shot = getattr(self, "_shot", None) or {}
        failed = shot.get("status") == "failed" and shot.get("id") == payload["shot_id"]
        note = f"failed: {shot.get('error')}" if failed else info.get("note", "")
        self.plate_view.set_image(to_qimage(plate) if plate is not None else None, note)
        depth_rgb = images.get("depth_rgb")
        if failed and depth_rgb is None:
            depth_note = note + "\n\n(Show log: Ctrl+L)"
        elif shot.get("status") == "rendering" and depth_rgb is None:
            depth_note = "rendering\u2026 the pass appears here when it is written"
        else:
            depth_note = info.get("note") or "no depth pass yet"
        self.depth_view.set_image(to_qimage(depth_rgb) if depth_rgb is not None else None, depth_note)
        self.legend.set_range(info.get("mode"), info.get("near"), info.get("far"))
        self.note.setText(note if failed else (info.get("note", "") if plate is not None else ""))
        self.note.setStyleSheet("color: #e05a4f" if failed else "color: #b0b0b0")
        self._update_comp()

    def _pick_fog_colour(self) -> None:
        colour = QColorDialog.getColor(self.fog_colour, self, "Fog colour")
        if colour.isValid():
            self.fog_colour = colour
            self._update_comp()

    def comp_params(self) -> dict:
        return {"focus_t": self.focus.value() / 1000.0, "fstop": self.fstop.value() / 10.0,
                "fog_t": self.fog_density.value() / 1000.0,
                "fog_colour": (self.fog_colour.redF(), self.fog_colour.greenF(), self.fog_colour.blueF())}

    def _update_labels(self) -> None:
        mode, near, far = self._info.get("mode"), self._info.get("near"), self._info.get("far")
        p = self.comp_params()
        focus = preview.focus_from_slider(p["focus_t"], mode, near, far)
        self.focus_label.setText(f"{focus:.3g}" + (" (disp.)" if mode == "disparity" else ""))
        self.fstop_label.setText(f"f/{p['fstop']:.1f}")
        self.fog_label.setText(f"{preview.fog_density_from_slider(p['fog_t'], mode, near, far):.3g}")
        self.fog_colour_button.setStyleSheet(f"background: {self.fog_colour.name()}")

    def _update_comp(self) -> None:
        self._update_labels()
        if self.comp is None:
            return
        plate, depth = self._images.get("plate"), self._images.get("depth")
        if plate is None or depth is None:
            self.comp_view.set_note("defocus / fog: needs a rendered depth pass")
            return
        self.controller.request_comp(self.shot_id, self.comp_params())

    def show_comp(self, payload: dict) -> None:
        if payload.get("shot_id") != self.shot_id:
            return
        image = payload.get("image")
        self.comp_view.set_image(to_qimage(image) if image is not None else None, payload.get("note", ""))
