"""Preview of the selected shot: frame slider, plate, depth colour map with a near/far legend,
and defocus / fog controls (live only when dvd_vfx.comp exists). Thin: the controller loads
the images on its preview thread; this widget shows what "preview.changed" brings."""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QColor, QImage, QPixmap
from PyQt6.QtWidgets import (QColorDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy,
                             QSlider, QSpinBox, QVBoxLayout, QWidget)

from . import preview


def to_qimage(rgb: np.ndarray) -> QImage:
    """uint8 or float [H,W,3] -> a QImage that owns its pixels."""
    if rgb.dtype != np.uint8:
        rgb = preview.to_uint8(rgb)
    rgb = np.ascontiguousarray(rgb[..., :3])
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class ImageView(QLabel):
    """An image label that keeps its aspect ratio when resized."""

    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        self.title = title
        self._pixmap: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(160, 90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setStyleSheet("QLabel { background: #1e1e1e; color: #8a8a8a; }")
        self.set_note(title)

    def set_image(self, image: QImage | None, note: str = "") -> None:
        if image is None:
            self.set_note(note or self.title)
            return
        self._pixmap = QPixmap.fromImage(image)
        self._rescale()

    def set_note(self, text: str) -> None:
        self._pixmap = None
        self.setPixmap(QPixmap())
        self.setText(text)
        self.setWordWrap(True)

    def has_image(self) -> bool:
        return self._pixmap is not None

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is not None:
            self.setPixmap(self._pixmap.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                               Qt.TransformationMode.SmoothTransformation))


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
        self.legend = DepthLegend()
        images = QHBoxLayout()
        for view in (self.plate_view, self.depth_view, self.comp_view):
            images.addWidget(view, 1)

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
        layout.addWidget(self.title)
        layout.addLayout(frame_row)
        layout.addLayout(images, 1)
        layout.addWidget(self.legend)
        layout.addWidget(self.note)
        layout.addWidget(controls)

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
        state = (shot["id"], shot["info"] is not None, shot["status"], shot["out_dir"], shot["pattern"])
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
        self.plate_view.set_image(to_qimage(plate) if plate is not None else None, info.get("note", ""))
        depth_rgb = images.get("depth_rgb")
        self.depth_view.set_image(to_qimage(depth_rgb) if depth_rgb is not None else None,
                                  info.get("note") or "no depth pass yet")
        self.legend.set_range(info.get("mode"), info.get("near"), info.get("far"))
        self.note.setText(info.get("note", "") if plate is not None else "")
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
