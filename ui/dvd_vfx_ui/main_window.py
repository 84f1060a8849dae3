"""The panel's main window: queue table, run controls, batch settings, shot overrides, preview.

Thin by design: every action calls the controller; every update arrives as a controller event
through the EventBridge (on the UI thread). No engine call happens here.
"""

from __future__ import annotations

import os

from PyQt6.QtCore import QByteArray, QItemSelectionModel, Qt, QUrl
from PyQt6.QtGui import QAction, QDesktopServices, QKeySequence
from PyQt6.QtWidgets import (QAbstractItemView, QApplication, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox,
                             QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
                             QMainWindow, QMenu, QMessageBox, QPlainTextEdit, QProgressBar, QPushButton, QSplitter,
                             QTableView, QToolBar, QVBoxLayout, QWidget)

from dvd_vfx.errors import DvdError

from .bridge import EventBridge
from .preview_pane import PreviewPane
from .queue_model import OUTPUT, PROGRESS, STATUS, ProgressDelegate, QueueModel

BATCH = "(batch)"
MOVIE_FILTER = "Footage (*.mov *.mp4 *.m4v *.mxf *.avi *.mkv *.webm *.exr *.png *.jpg *.jpeg *.tif *.tiff *.dpx);;All files (*)"


def format_eta(seconds) -> str:
    if seconds is None:
        return "ETA \u2014"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"ETA {h}:{m:02d}:{s:02d}" if h else f"ETA {m}:{s:02d}"


class LogDialog(QDialog):
    def __init__(self, shot: dict, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Log \u2014 {shot['shot_name']}")
        self.resize(760, 420)
        text = QPlainTextEdit()
        text.setReadOnly(True)
        text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        lines = [f"source: {shot['source']}", f"status: {shot['status']}"]
        if shot["error"]:
            lines.append(f"error:  {shot['error']}")
        text.setPlainText("\n".join(lines + [""] + shot["log"]))
        self.text = text
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(buttons)


class SettingsDialog(QDialog):
    """Engine Python, weights, cache and plugins folders (saved in the user config dir)."""

    FIELDS = (("engine_python", "Engine Python", "empty: render in this process"),
              ("weights", "Weights folder", "empty: $DVD_VFX_WEIGHTS, else the user data dir"),
              ("cache_dir", "Cache folder", "empty: $DVD_VFX_CACHE_DIR, else the user cache dir"),
              ("plugins_dir", "Plugins folder", "optional: *.py plugins (dvd-vfx --plugins-dir)"))

    def __init__(self, settings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("dvd-vfx panel settings")
        self.resize(620, 200)
        form = QFormLayout(self)
        self.edits = {}
        for key, label, hint in self.FIELDS:
            edit = QLineEdit(getattr(settings, key))
            edit.setPlaceholderText(hint)
            browse = QPushButton("\u2026")
            browse.setFixedWidth(28)
            browse.clicked.connect(lambda _=False, k=key, e=edit: self._browse(k, e))
            row = QHBoxLayout()
            row.addWidget(edit, 1)
            row.addWidget(browse)
            form.addRow(label, row)
            self.edits[key] = edit
        self.use_cache = QCheckBox("Keep window predictions in the cache (resume, instant re-renders)")
        self.use_cache.setChecked(settings.use_cache)
        form.addRow("", self.use_cache)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self, key, edit) -> None:
        if key == "engine_python":
            path, _ = QFileDialog.getOpenFileName(self, "Engine Python", edit.text())
        else:
            path = QFileDialog.getExistingDirectory(self, "Folder", edit.text())
        if path:
            edit.setText(path)

    def values(self) -> dict:
        return {**{k: e.text().strip() for k, e in self.edits.items()}, "use_cache": self.use_cache.isChecked()}


class OverridesBox(QGroupBox):
    """Per-shot overrides for the selected rows; empty fields follow the batch."""

    def __init__(self, window: "MainWindow"):
        super().__init__("Overrides for the selected shots")
        self.window = window
        self.preset = QComboBox()
        self.mode = QComboBox()
        self.mode.addItems([BATCH, "depth", "disparity"])
        self.near, self.far = QLineEdit(), QLineEdit()
        for edit in (self.near, self.far):
            edit.setPlaceholderText(BATCH)
        self.output = QLineEdit()
        self.output.setPlaceholderText("(output pattern)")
        self.shot_name = QLineEdit()
        self.shot_name.setPlaceholderText("(source name)")
        self.apply_button = QPushButton("Apply")
        self.clear_button = QPushButton("Clear overrides")
        form = QFormLayout(self)
        near_far = QHBoxLayout()
        near_far.addWidget(self.near)
        near_far.addWidget(QLabel("/"))
        near_far.addWidget(self.far)
        form.addRow("Preset", self.preset)
        form.addRow("Mode", self.mode)
        form.addRow("Near / far", near_far)
        form.addRow("Output folder", self.output)
        form.addRow("Shot name", self.shot_name)
        buttons = QHBoxLayout()
        buttons.addWidget(self.apply_button)
        buttons.addWidget(self.clear_button)
        form.addRow(buttons)
        self.apply_button.clicked.connect(self.apply)
        self.clear_button.clicked.connect(lambda: window.controller.clear_overrides(window.selected_ids()))
        self.setEnabled(False)

    def set_presets(self, names) -> None:
        self.preset.clear()
        self.preset.addItems([BATCH, *names])

    def show_shot(self, shot: dict | None) -> None:
        self.setEnabled(shot is not None)
        o = shot["overrides"] if shot else {}
        self.preset.setCurrentText(o.get("preset", BATCH))
        self.mode.setCurrentText(o.get("mode", BATCH))
        self.near.setText(f"{o['near']:g}" if "near" in o else "")
        self.far.setText(f"{o['far']:g}" if "far" in o else "")
        self.output.setText(o.get("output", ""))
        self.shot_name.setText(o.get("shot", ""))

    def values(self) -> dict:
        def number(edit, what):
            text = edit.text().strip()
            if not text:
                return None
            try:
                return float(text)
            except ValueError:
                raise DvdError(f"{what} {text!r} is not a number") from None

        pick = lambda combo: None if combo.currentText() == BATCH else combo.currentText()  # noqa: E731
        return {"preset": pick(self.preset), "mode": pick(self.mode), "near": number(self.near, "near"),
                "far": number(self.far, "far"), "output": self.output.text().strip() or None,
                "shot": self.shot_name.text().strip() or None}

    def apply(self) -> None:
        try:
            self.window.controller.set_overrides(self.window.selected_ids(), **self.values())
        except DvdError as exc:
            self.window.show_error(str(exc))


class MainWindow(QMainWindow):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle("dvd-vfx \u2014 depth pass batch")
        self.setAcceptDrops(True)
        self.resize(1400, 800)

        self.bridge = EventBridge(controller, self)
        self.model = QueueModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(PROGRESS, ProgressDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)  # errors read from the start
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(OUTPUT, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(STATUS, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(PROGRESS, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(PROGRESS, 110)
        header.resizeSection(OUTPUT, 220)
        self.table.doubleClicked.connect(lambda index: self.show_log(self.model.shot_at(index.row())))
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.empty_hint = QLabel("Drop movies, image sequences or folders here, or use Add files / Add folder.")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setStyleSheet("color: #888; padding: 8px")

        self.overall = QProgressBar()
        self.overall.setRange(0, 1000)
        self.overall.setFormat("batch %p%")
        self.eta_label = QLabel(format_eta(None))
        self.state_label = QLabel("idle")

        self._build_actions()
        self._build_batch_bar()
        self.overrides = OverridesBox(self)
        self.preview = PreviewPane(controller)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.batch_bar)
        left_layout.addWidget(self.table, 1)
        left_layout.addWidget(self.empty_hint)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.state_label)
        progress_row.addWidget(self.overall, 1)
        progress_row.addWidget(self.eta_label)
        left_layout.addLayout(progress_row)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.preview, 1)
        right_layout.addWidget(self.overrides)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.setCentralWidget(self.splitter)

        self.bridge.event.connect(self._on_event)
        self._load_presets()
        self.model.on_event("queue.changed", {"shots": controller.shots()})
        self._update_buttons()
        if controller.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromHex(controller.settings.window_geometry.encode()))

    # -- building -------------------------------------------------------------------------------
    def _action(self, text, slot, shortcut=None, tip="") -> QAction:
        action = QAction(text, self)
        action.triggered.connect(slot)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(tip or text)
        return action

    def _build_actions(self) -> None:
        c = self.controller
        self.add_files_action = self._action("Add files\u2026", self.add_files, "Ctrl+O",
                                             "add movies or frames of image sequences")
        self.add_folder_action = self._action("Add folder\u2026", self.add_folder, "Ctrl+Shift+O",
                                              "add every sequence and movie in a folder")
        self.start_action = self._action("Start", c.start, "Ctrl+Return", "render queued, cached and cancelled shots")
        self.pause_action = self._action("Pause after current", c.pause_after_current, None,
                                         "finish the shot that renders, then stop")
        self.cancel_action = self._action("Cancel", c.cancel_current, "Esc",
                                          "stop the current shot now; its finished windows stay cached")
        self.retry_action = self._action("Retry failed", lambda: c.retry_failed(), None,
                                         "queue failed and cancelled shots again and start")
        self.remove_action = self._action("Remove", lambda: c.remove(self.selected_ids()), "Del",
                                          "remove the selected shots from the queue")
        self.log_action = self._action("Show log", lambda: self.show_log(self.current_shot()), "Ctrl+L",
                                       "the full log of the selected shot")
        self.open_queue_action = self._action("Open queue\u2026", self.open_queue, None, "load a saved queue (JSON)")
        self.save_queue_action = self._action("Save queue\u2026", self.save_queue, "Ctrl+S",
                                              "save the queue as JSON to re-run it later")
        self.settings_action = self._action("Settings\u2026", self.edit_settings, None,
                                            "engine Python, weights, cache and plugins folders")
        bar = QToolBar("Batch")
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for item in (self.add_files_action, self.add_folder_action, None, self.start_action, self.pause_action,
                     self.cancel_action, self.retry_action, self.remove_action, self.log_action, None,
                     self.open_queue_action, self.save_queue_action, self.settings_action):
            bar.addSeparator() if item is None else bar.addAction(item)
        self.addToolBar(bar)
        for action in (self.remove_action, self.log_action):
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.table.addAction(action)

    def _build_batch_bar(self) -> None:
        self.batch_bar = QWidget()
        row = QHBoxLayout(self.batch_bar)
        row.setContentsMargins(4, 4, 4, 0)
        self.preset_combo = QComboBox()
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(["depth", "disparity"])
        self.near_box, self.far_box = QDoubleSpinBox(), QDoubleSpinBox()
        for box, value in ((self.near_box, 1.0), (self.far_box, 100.0)):
            box.setRange(0.001, 1e6)
            box.setDecimals(3)
            box.setValue(value)
            box.setKeyboardTracking(False)
        self.pattern_edit = QLineEdit(self.controller.output_pattern)
        self.pattern_edit.setToolTip("output folder per shot; fields: {source_dir} {source_name} {shot} {preset}")
        for label, widget, stretch in (("Preset", self.preset_combo, 0), ("Mode", self.mode_combo, 0),
                                       ("Near", self.near_box, 0), ("Far", self.far_box, 0),
                                       ("Output", self.pattern_edit, 1)):
            row.addWidget(QLabel(label))
            row.addWidget(widget, stretch)
        self.preset_combo.currentTextChanged.connect(lambda text: self._batch_changed(preset=text or None))
        self.mode_combo.currentTextChanged.connect(lambda text: self._batch_changed(mode=text))
        self.near_box.valueChanged.connect(lambda value: self._batch_changed(near=value))
        self.far_box.valueChanged.connect(lambda value: self._batch_changed(far=value))
        self.pattern_edit.editingFinished.connect(
            lambda: self._batch_changed(output_pattern=self.pattern_edit.text().strip() or None))

    def _load_presets(self) -> None:
        try:
            names = sorted(self.controller.presets())
        except DvdError as exc:
            names = []
            self.show_error(str(exc))
        self.preset_combo.blockSignals(True)
        self.preset_combo.clear()
        self.preset_combo.addItems(names)
        self.preset_combo.setCurrentText(self.controller.preset)
        for name in names:
            description = self.controller.presets()[name].description
            self.preset_combo.setItemData(names.index(name), description, Qt.ItemDataRole.ToolTipRole)
        self.preset_combo.blockSignals(False)
        self.overrides.set_presets(names) if hasattr(self, "overrides") else None
        self._sync_batch_bar()

    def _sync_batch_bar(self) -> None:
        """Show the batch values (the controller's defaults over the preset's)."""
        from dvd_vfx import presets as P

        c = self.controller
        preset = c.presets().get(c.preset)
        values = P.merge(preset, dict(c.defaults)) if preset else dict(P.DEFAULTS)
        for widget, setter, value in ((self.preset_combo, self.preset_combo.setCurrentText, c.preset),
                                      (self.mode_combo, self.mode_combo.setCurrentText, values["mode"]),
                                      (self.near_box, self.near_box.setValue, values["near"]),
                                      (self.far_box, self.far_box.setValue, values["far"]),
                                      (self.pattern_edit, self.pattern_edit.setText, c.output_pattern)):
            widget.blockSignals(True)
            setter(value)
            widget.blockSignals(False)
        self.near_box.setEnabled(values["mode"] == "depth")
        self.far_box.setEnabled(values["mode"] == "depth")

    def _batch_changed(self, **values):
        """One batch field changed: only that one becomes a batch value (the rest follow the preset)."""
        try:
            if "near" in values or "far" in values:  # keep near < far valid as a pair
                values = {"near": self.near_box.value(), "far": self.far_box.value()}
            self.controller.set_batch_defaults(**values)
        except DvdError as exc:
            self.show_error(str(exc))
        self._sync_batch_bar()

    # -- selection ------------------------------------------------------------------------------
    def selected_ids(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.model.shot_at(r)["id"] for r in rows if self.model.shot_at(r)]

    def current_shot(self) -> dict | None:
        """The row with the focus if it is selected, else the first selected row."""
        selection = self.table.selectionModel()
        current = selection.currentIndex()
        if current.isValid() and selection.isRowSelected(current.row()):
            return self.model.shot_at(current.row())
        ids = self.selected_ids()
        row = self.model.row_of(ids[0]) if ids else None
        return self.model.shot_at(row) if row is not None else None

    def select_shot(self, shot_id: str) -> None:
        """Make `shot_id` the only selected row (and the one the preview and overrides show)."""
        row = self.model.row_of(shot_id)
        if row is not None:
            flags = QItemSelectionModel.SelectionFlag
            self.table.selectionModel().setCurrentIndex(
                self.model.index(row, 0), flags.ClearAndSelect | flags.Rows)

    def _selection_changed(self, *_):
        shot = self.current_shot()
        self.preview.show_shot(shot)
        self.overrides.show_shot(shot)
        self._update_buttons()

    # -- events (UI thread) ---------------------------------------------------------------------
    def _on_event(self, topic: str, payload: dict) -> None:
        selected = self.selected_ids() if topic in ("queue.changed", "shot.changed") else []
        current = self.current_shot() if topic == "queue.changed" else None
        self.model.on_event(topic, payload)
        if topic == "queue.changed":
            self._restore_selection(selected, current["id"] if current else None)
            self.empty_hint.setVisible(not payload["shots"])
        elif topic == "shot.changed":
            shot = payload["shot"]
            current = self.current_shot()
            if current is not None and shot["id"] == current["id"]:
                self.preview.show_shot(shot)
                self.overrides.show_shot(shot)
        elif topic in ("job.progress.changed", "job.log"):
            pass
        elif topic == "batch.progress.changed":
            self.overall.setValue(int(round(payload["fraction"] * 1000)))
            self.overall.setFormat(f"batch %p% ({payload['done']}/{payload['total']} shots)")
            self.eta_label.setText(format_eta(payload["eta_s"]))
        elif topic == "batch.state.changed":
            self.state_label.setText(payload["state"])
        elif topic == "batch.finished":
            self.statusBar().showMessage(f"batch finished: {payload['done']} done, {payload['failed']} failed, "
                                         f"{payload['cancelled']} cancelled", 15000)
        elif topic in ("preview.changed",):
            self.preview.on_event(topic, payload)
        elif topic == "preview.comp.changed":
            self.preview.show_comp(payload)
        elif topic == "message":
            self.statusBar().showMessage(payload["text"], 10000)
        self._update_buttons()

    def _restore_selection(self, ids, current_id) -> None:
        """After a model reset: the same shots selected, the same one current."""
        selection = self.table.selectionModel()
        flags = QItemSelectionModel.SelectionFlag
        selection.blockSignals(True)
        for shot_id in ids:
            row = self.model.row_of(shot_id)
            if row is not None:
                selection.select(self.model.index(row, 0), flags.Select | flags.Rows)
        row = self.model.row_of(current_id) if current_id else None
        if row is not None:
            selection.setCurrentIndex(self.model.index(row, 0), flags.NoUpdate)
        selection.blockSignals(False)
        self._selection_changed()

    def _update_buttons(self) -> None:
        state = self.controller.state
        shots = self.model.shots()
        statuses = {s["status"] for s in shots}
        self.start_action.setEnabled(state in ("idle", "pausing") and bool(statuses & {"queued", "cached", "cancelled"}))
        self.pause_action.setEnabled(state == "running")
        self.cancel_action.setEnabled(state in ("running", "pausing"))
        self.retry_action.setEnabled(bool(statuses & {"failed", "cancelled"}) and state != "cancelling")
        self.remove_action.setEnabled(bool(self.selected_ids()))
        self.log_action.setEnabled(bool(self.selected_ids()))
        self.open_queue_action.setEnabled(state == "idle")

    def _context_menu(self, pos) -> None:
        shot = self.current_shot()
        if shot is None:
            return
        menu = QMenu(self)
        menu.addAction(self.log_action)
        open_output = menu.addAction("Open output folder")
        open_output.setEnabled(bool(shot["out_dir"]) and os.path.isdir(shot["out_dir"]))
        open_output.triggered.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(shot["out_dir"])))
        copy_pattern = menu.addAction("Copy output pattern")
        copy_pattern.setEnabled(bool(shot["pattern"]))
        copy_pattern.triggered.connect(lambda: QApplication.clipboard().setText(shot["pattern"]))
        menu.addSeparator()
        for action in (self.retry_action, self.remove_action):
            menu.addAction(action)
        menu.popup(self.table.viewport().mapToGlobal(pos))

    # -- commands -------------------------------------------------------------------------------
    def add_paths(self, paths) -> list[str]:
        try:
            ids = self.controller.add_sources(paths)
        except DvdError as exc:
            self.show_error(str(exc))
            return []
        if ids and not self.selected_ids():
            self.select_shot(ids[0])
        return ids

    def add_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add footage", self.controller.settings.last_add_folder,
                                                MOVIE_FILTER)
        if paths:
            self.add_paths(paths)

    def add_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a folder of shots", self.controller.settings.last_add_folder)
        if path:
            self.add_paths([path])

    def open_queue(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open queue", self.controller.settings.last_queue_folder,
                                              "dvd-vfx queue (*.json)")
        if path:
            self.load_queue(path)

    def load_queue(self, path) -> None:
        try:
            self.controller.load_queue(path)
        except DvdError as exc:
            self.show_error(str(exc))
        self._sync_batch_bar()

    def save_queue(self) -> None:
        start = self.controller.queue_path or os.path.join(self.controller.settings.last_queue_folder, "queue.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save queue", start, "dvd-vfx queue (*.json)")
        if path:
            self.controller.save_queue(path if path.endswith(".json") else path + ".json")

    def edit_settings(self) -> None:
        dialog = SettingsDialog(self.controller.settings, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            try:
                self.controller.update_settings(**dialog.values())
            except DvdError as exc:
                self.show_error(str(exc))
            self._load_presets()

    def show_log(self, shot: dict | None) -> LogDialog | None:
        if shot is None:
            return None
        dialog = LogDialog(shot, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def show_error(self, text: str) -> None:
        self.statusBar().showMessage(text, 15000)
        if not os.environ.get("DVD_VFX_PANEL_NO_DIALOGS"):
            box = QMessageBox(QMessageBox.Icon.Warning, "dvd-vfx", text, QMessageBox.StandardButton.Ok, self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()  # not exec(): never a nested event loop

    # -- drag and drop --------------------------------------------------------------------------
    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.add_paths(paths)
            event.acceptProposedAction()

    def closeEvent(self, event):
        if self.controller.state != "idle":
            answer = QMessageBox.question(self, "dvd-vfx", "A batch is rendering. Cancel it and quit? "
                                          "(finished windows stay cached)") \
                if not os.environ.get("DVD_VFX_PANEL_NO_DIALOGS") else QMessageBox.StandardButton.Yes
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.controller.shutdown()
        self.controller.settings.window_geometry = bytes(self.saveGeometry().toHex()).decode()
        try:
            self.controller.save_settings()
        except OSError:
            pass
        self.bridge.detach()
        super().closeEvent(event)
