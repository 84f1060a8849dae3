"""The panel's main window: queue table, run controls, batch settings, shot settings, preview.

Thin by design: every action calls the controller; every update arrives as a controller event
through the EventBridge (on the UI thread). No engine call happens here.
"""

from __future__ import annotations

import os
import subprocess

from PyQt6.QtCore import QByteArray, QItemSelectionModel, Qt, QTimer, QUrl
from PyQt6.QtGui import QAction, QDesktopServices, QKeySequence
from PyQt6.QtWidgets import (QAbstractItemView, QApplication, QCheckBox, QComboBox, QDialog, QDialogButtonBox,
                             QDoubleSpinBox, QFileDialog, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout,
                             QHeaderView, QLabel, QLineEdit, QMainWindow, QMessageBox, QPlainTextEdit, QProgressBar,
                             QInputDialog, QPushButton, QScrollArea, QSpinBox, QSplitter, QTabWidget, QToolBar, QVBoxLayout,
                             QWidget)

from dvd_vfx.errors import DvdError

from . import handoff
from .bridge import EventBridge
from .preview_pane import PreviewPane
from .queue_model import PROGRESS, ProgressDelegate, QueueModel, QueueView, format_duration

BATCH = "(batch)"
MOVIE_FILTER = "Footage (*.mov *.mp4 *.m4v *.mxf *.avi *.mkv *.webm *.exr *.png *.jpg *.jpeg *.tif *.tiff *.dpx);;All files (*)"
BASE_POINT_SIZE = 10.0
# the summary bar's colour: all done, some cancelled / left, some failed
SUMMARY_COLOURS = {"ok": "#3d8b3d", "partial": "#b07d2b", "failed": "#b83b32", "running": "#3a78b5"}


def format_eta(seconds) -> str:
    return "ETA \u2014" if seconds is None else f"ETA {format_duration(seconds)}"


def no_dialogs() -> bool:
    return bool(os.environ.get("DVD_VFX_PANEL_NO_DIALOGS"))


def batch_summary(p: dict) -> tuple[str, str]:
    """(text, colour key) of the batch bar from batch.progress.changed / batch.finished counts."""
    parts = [f"{p['done']} of {p['total']} done"]
    if p.get("from_cache"):
        parts[0] += f" ({p['from_cache']} from the cache)"
    if p.get("failed"):
        parts.append(f"{p['failed']} failed")
    if p.get("cancelled"):
        parts.append(f"{p['cancelled']} cancelled")
    if p.get("left") and p.get("state", "idle") == "idle":
        parts.append(f"{p['left']} not started")
    if p.get("failed_before_start"):
        parts.append(f"{p['failed_before_start']} failed before Start")
    failed = p.get("failed") or p.get("failed_before_start")
    stopped = p.get("cancelled") or (p.get("left") and p.get("state") == "idle")
    key = "failed" if failed else "partial" if stopped else "ok"
    if p.get("state", "idle") != "idle":
        key = "failed" if failed else "running"
    return " \u00b7 ".join(parts), key


class LogDialog(QDialog):
    def __init__(self, shot: dict, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Log \u2014 {shot['shot_name']}")
        self.resize(820, 460)
        text = QPlainTextEdit()
        text.setReadOnly(True)
        text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        lines = [f"source: {shot['source']}", f"status: {shot['status']}"]
        if shot["error"]:
            lines.append(f"error:  {shot['error']}")
        text.setPlainText("\n".join(lines + [""] + shot["log"]))
        self.text = text
        self.copy_button = QPushButton("Copy log")
        self.copy_button.clicked.connect(lambda: QApplication.clipboard().setText(text.toPlainText()))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(buttons)


class SettingsDialog(QDialog):
    """Engine Python, weights, cache and plugins folders, Blender (saved in the user config dir).
    Checked on OK: a wrong path is reported here, not when a shot renders."""

    FIELDS = (("engine_python", "Engine Python", "empty: render in this process"),
              ("weights", "Weights folder", "empty: $DVD_VFX_WEIGHTS, else the user data dir"),
              ("cache_dir", "Cache folder", "empty: $DVD_VFX_CACHE_DIR, else the user cache dir"),
              ("plugins_dir", "Plugins folder", "optional: *.py plugins (dvd-vfx --plugins-dir)"),
              ("blender", "Blender", "empty: blender on PATH (Open in Blender)"))

    def __init__(self, settings, parent=None, check=None):
        super().__init__(parent)
        self.check = check
        self.setWindowTitle("dvd-vfx panel settings")
        self.resize(660, 240)
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
        self.reopen = QCheckBox("Reopen the last queue at launch")
        self.reopen.setChecked(settings.reopen_last_queue)
        form.addRow("", self.reopen)
        self.problem = QLabel("")
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #e05a4f")
        form.addRow(self.problem)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self, key, edit) -> None:
        if key in ("engine_python", "blender"):
            path, _ = QFileDialog.getOpenFileName(self, self.windowTitle(), edit.text())
        else:
            path = QFileDialog.getExistingDirectory(self, "Folder", edit.text())
        if path:
            edit.setText(path)

    def values(self) -> dict:
        return {**{k: e.text().strip() for k, e in self.edits.items()}, "use_cache": self.use_cache.isChecked(),
                "reopen_last_queue": self.reopen.isChecked()}

    def accept(self) -> None:
        """Check the paths first; the dialog stays open on a problem and says which path and why."""
        if self.check is not None:
            try:
                self.check(self.values())
            except DvdError as exc:
                self.problem.setText(str(exc))
                return
        super().accept()


class OverridesBox(QWidget):
    """Per-shot settings for the selected rows; empty fields follow the batch."""

    def __init__(self, window: "MainWindow"):
        super().__init__()
        self.window = window
        self.preset = QComboBox()
        self.predictor = QComboBox()
        self.mode = QComboBox()
        self.mode.addItems([BATCH, "depth", "disparity"])
        self.near, self.far = QLineEdit(), QLineEdit()
        for edit in (self.near, self.far):
            edit.setPlaceholderText(BATCH)
        self.anchors = QLineEdit()
        self.anchors.setPlaceholderText("(none) CSV/JSON: frame,x,y,depth")
        self.anchors.setToolTip("known distances for depth in scene units (render --anchors FILE)")
        anchors_browse = QPushButton("\u2026")
        anchors_browse.setFixedWidth(28)
        anchors_browse.clicked.connect(self._browse_anchors)
        self.start_frame = QLineEdit()
        self.start_frame.setPlaceholderText(BATCH)
        self.start_frame.setToolTip("first frame number of a movie's pass (e.g. 1001); sequences keep theirs")
        self.frames = QLineEdit()
        self.frames.setPlaceholderText("(all) e.g. 1001-1100")
        self.colorspace = QComboBox()
        self.colorspace.addItems([BATCH, "auto", "display", "linear"])
        self.ocio = QLineEdit()
        self.ocio.setPlaceholderText("(none) OCIO colourspace of linear plates")
        self.hold_missing = QComboBox()
        self.hold_missing.addItems([BATCH, "yes", "no"])
        self.hold_missing.setToolTip("repeat the previous frame over missing or damaged frames of a sequence")
        self.output = QLineEdit()
        self.output.setPlaceholderText("(output pattern)")
        self.shot_name = QLineEdit()
        self.shot_name.setPlaceholderText("(source name)")
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("set these values on the selected shots (Enter in a field does the same)")
        self.clear_button = QPushButton("Clear overrides")
        form = QFormLayout(self)
        near_far = QHBoxLayout()
        near_far.addWidget(self.near)
        near_far.addWidget(QLabel("/"))
        near_far.addWidget(self.far)
        anchors_row = QHBoxLayout()
        anchors_row.addWidget(self.anchors, 1)
        anchors_row.addWidget(anchors_browse)
        form.addRow("Preset", self.preset)
        form.addRow("Predictor", self.predictor)
        form.addRow("Mode", self.mode)
        form.addRow("Near / far", near_far)
        form.addRow("Anchors", anchors_row)
        form.addRow("Start frame", self.start_frame)
        form.addRow("Frame range", self.frames)
        form.addRow("Colourspace", self.colorspace)
        form.addRow("OCIO colourspace", self.ocio)
        form.addRow("Hold missing", self.hold_missing)
        form.addRow("Output folder", self.output)
        form.addRow("Shot name", self.shot_name)
        buttons = QHBoxLayout()
        buttons.addWidget(self.apply_button)
        buttons.addWidget(self.clear_button)
        form.addRow(buttons)
        self.apply_button.clicked.connect(self.apply)
        for edit in (self.near, self.far, self.anchors, self.start_frame, self.frames, self.ocio, self.output,
                     self.shot_name):
            edit.returnPressed.connect(self.apply)
        self.clear_button.clicked.connect(lambda: window.controller.clear_overrides(window.selected_ids()))
        self.setEnabled(False)

    def _browse_anchors(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Anchors", self.anchors.text(), "Anchors (*.csv *.json);;All (*)")
        if path:
            self.anchors.setText(path)

    def set_presets(self, names, predictors=()) -> None:
        self.preset.clear()
        self.preset.addItems([BATCH, *names])
        self.predictor.clear()
        self.predictor.addItems([BATCH, *predictors])

    def show_shot(self, shot: dict | None) -> None:
        self.setEnabled(shot is not None)
        o = shot["overrides"] if shot else {}
        self.preset.setCurrentText(o.get("preset", BATCH))
        self.predictor.setCurrentText(o.get("predictor", BATCH))
        self.mode.setCurrentText(o.get("mode", BATCH))
        self.near.setText(f"{o['near']:g}" if "near" in o else "")
        self.far.setText(f"{o['far']:g}" if "far" in o else "")
        self.anchors.setText(o.get("anchors", ""))
        self.start_frame.setText(str(o["start_frame"]) if "start_frame" in o else "")
        self.frames.setText(o.get("frames", ""))
        self.colorspace.setCurrentText(o.get("colorspace", BATCH))
        self.ocio.setText(o.get("ocio_colorspace", ""))
        self.hold_missing.setCurrentText({True: "yes", False: "no"}.get(o.get("hold_missing"), BATCH))
        self.output.setText(o.get("output", ""))
        self.shot_name.setText(o.get("shot", ""))

    def values(self) -> dict:
        def number(edit, what, kind=float):
            text = edit.text().strip()
            if not text:
                return None
            try:
                return kind(text)
            except ValueError:
                raise DvdError(f"{what} {text!r} is not {'a whole number' if kind is int else 'a number'}") from None

        pick = lambda combo: None if combo.currentText() == BATCH else combo.currentText()  # noqa: E731
        text = lambda edit: edit.text().strip() or None  # noqa: E731
        return {"preset": pick(self.preset), "predictor": pick(self.predictor), "mode": pick(self.mode),
                "near": number(self.near, "near"), "far": number(self.far, "far"), "anchors": text(self.anchors),
                "start_frame": number(self.start_frame, "start frame", int), "frames": text(self.frames),
                "colorspace": pick(self.colorspace), "ocio_colorspace": text(self.ocio),
                "hold_missing": {"yes": True, "no": False}.get(self.hold_missing.currentText()),
                "output": text(self.output), "shot": text(self.shot_name)}

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
        self._last_finished: dict | None = None
        self._failed_ids: list[str] = []  # the last batch's failed rows (Show failed)

        self.bridge = EventBridge(controller, self)
        self.model = QueueModel(self)
        self.model.on_move = lambda ids, row: controller.move_to(ids, row)
        self.model.on_files = self.add_paths
        self.table = QueueView()
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(PROGRESS, ProgressDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(34)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)  # errors read from the start
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)  # Output, last: long paths take what is left
        self._size_columns(1.0)
        self.table.doubleClicked.connect(lambda index: self.show_log(self.model.shot_at(index.row())))
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)

        # the batch's state, progress and outcome, in colour and words
        self.overall = QProgressBar()
        self.overall.setRange(0, 1000)
        self.overall.setFormat("batch %p%")
        self.overall.setTextVisible(True)
        self.eta_label = QLabel(format_eta(None))
        self.state_label = QLabel("idle")
        self.summary_label = QLabel("")
        self.show_failed_button = QPushButton("Show failed")
        self.show_failed_button.setToolTip("select the failed shots (their errors show below the table)")
        self.show_failed_button.clicked.connect(self.select_failed)
        self.show_failed_button.setVisible(False)
        # the selected row in full: its error, never cut
        self.detail = QLabel("")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setVisible(False)

        self._build_actions()
        self._build_batch_bar()
        self._build_menus()
        self.overrides = OverridesBox(self)
        self.preview = PreviewPane(controller)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.batch_bar)
        left_layout.addWidget(self.table, 1)
        left_layout.addWidget(self.detail)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.state_label)
        progress_row.addWidget(self.overall, 1)
        progress_row.addWidget(self.eta_label)
        progress_row.addWidget(self.show_failed_button)
        left_layout.addLayout(progress_row)
        left_layout.addWidget(self.summary_label)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.preview, "Preview")
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.overrides)
        self.tabs.addTab(scroll, "Shot settings")
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        self.setCentralWidget(self.splitter)

        self._ticker = QTimer(self)
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self.model.tick)
        self._ticker.start()
        self.bridge.event.connect(self._on_event)  # worker events queued; the model drops stale snapshots
        self._load_presets()
        self.model.on_event("queue.changed", {"shots": controller.shots()})
        self._update_buttons()
        self._refresh_recent()
        if controller.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromHex(controller.settings.window_geometry.encode()))

    # -- building -------------------------------------------------------------------------------
    def _action(self, text, slot, shortcut=None, tip="") -> QAction:
        action = QAction(text, self)
        action.triggered.connect(slot)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(f"{tip or text} ({shortcut})" if shortcut else (tip or text))
        return action

    def _build_actions(self) -> None:
        c = self.controller
        a = self._action
        self.add_files_action = a("Add files\u2026", self.add_files, "Ctrl+O", "add movies or frames of image sequences")
        self.add_folder_action = a("Add folder\u2026", self.add_folder, "Ctrl+Shift+O",
                                   "add every sequence and movie in a folder")
        self.add_edit_action = a("Add edit\u2026", self.add_edit, "Ctrl+Shift+E",
                                 "one shot per clip of an edit (OTIO, EDL, FCP XML) or row of a shot list (CSV)")
        self.start_action = a("Start", lambda: c.start(), "Ctrl+Return",
                              "render the queued, cached and outdated shots")
        self.resume_action = a("Resume", c.resume, "Ctrl+Shift+Return",
                               "go on with the paused or cancelled batch (the cancelled shot resumes from its "
                               "cached windows)")
        self.pause_action = a("Pause after current", c.pause_after_current, None,
                              "finish the shot that renders, then stop")
        self.skip_action = a("Skip shot", self.skip_shot, None,
                             "stop the shot that renders now (its windows stay cached) and go on with the next")
        self.cancel_action = a("Cancel batch\u2026", self.cancel_batch, None,
                               "stop the shot that renders now and the rest of the batch (asks first; "
                               "finished windows stay cached)")
        self.retry_action = a("Retry failed", lambda: c.retry_failed(), "Ctrl+R",
                              "queue failed and cancelled shots again and render them")
        self.rerender_action = a("Re-render changed", lambda: c.rerender(), "Ctrl+Shift+R",
                                 "render again the shots whose settings differ from their pass on disk "
                                 "(from the cache: seconds)")
        self.rerender_selected_action = a("Re-render selected", lambda: c.rerender(self.selected_ids()), None,
                                          "render the selected shots again")
        self.remove_action = a("Remove", self.remove_selected, "Del", "remove the selected shots (Ctrl+Z brings them back)")
        self.undo_action = a("Undo remove", self.undo_remove, "Ctrl+Z", "bring back the shots removed last")
        self.move_up_action = a("Move up", lambda: self.move_selected(-1), "Ctrl+Up", "render the selected shot earlier")
        self.move_down_action = a("Move down", lambda: self.move_selected(1), "Ctrl+Down", "render it later")
        self.log_action = a("Show log", lambda: self.show_log(self.current_shot()), "Ctrl+L",
                            "the full log of the selected shot")
        self.open_output_action = a("Open output folder", self.open_output, "Ctrl+Shift+E",
                                    "the selected shot's output folder in the file browser")
        self.copy_pattern_action = a("Copy output pattern", self.copy_pattern, "Ctrl+Shift+C",
                                     "the pass as /out/shot.depth.####.exr")
        self.copy_nuke_action = a("Copy Nuke Read node", self.copy_nuke_read, "Ctrl+Shift+N",
                                  "a Read node of the pass: paste it into Nuke's Node Graph")
        self.blender_action = a("Open in Blender", self.open_in_blender, None,
                                "a new Blender with the pass in the compositor")
        self.open_queue_action = a("Open queue\u2026", self.open_queue, "Ctrl+Shift+L", "load a saved queue (JSON)")
        self.save_queue_action = a("Save queue\u2026", self.save_queue, "Ctrl+S",
                                   "save the queue as JSON to re-run it later")
        self.settings_action = a("Settings\u2026", self.edit_settings, "Ctrl+,",
                                 "engine Python, weights, cache and plugins folders, Blender")
        self.quit_action = a("Quit", self.close, "Ctrl+Q", "quit (asks while a batch renders)")
        self.larger_action = a("Larger text", lambda: self.set_font_scale(self.font_scale() * 1.1), "Ctrl+=")
        self.smaller_action = a("Smaller text", lambda: self.set_font_scale(self.font_scale() / 1.1), "Ctrl+-")
        self.reset_text_action = a("Reset text size", lambda: self.set_font_scale(1.0), "Ctrl+0")
        bar = QToolBar("Batch")
        bar.setObjectName("batch-toolbar")
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for item in (self.add_files_action, self.add_folder_action, None, self.start_action, self.resume_action,
                     self.pause_action, self.skip_action, self.cancel_action, self.retry_action,
                     self.rerender_action, None, self.open_output_action, self.copy_nuke_action, self.log_action):
            bar.addSeparator() if item is None else bar.addAction(item)
        self.addToolBar(bar)
        self.toolbar = bar
        for action in (self.remove_action, self.log_action, self.move_up_action, self.move_down_action):
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.table.addAction(action)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        for action in (self.add_files_action, self.add_folder_action, self.add_edit_action, None,
                       self.open_queue_action):
            file_menu.addSeparator() if action is None else file_menu.addAction(action)
        self.recent_menu = file_menu.addMenu("Open recent")
        for action in (self.save_queue_action, None, self.settings_action, None, self.quit_action):
            file_menu.addSeparator() if action is None else file_menu.addAction(action)
        batch_menu = bar.addMenu("&Batch")
        for action in (self.start_action, self.resume_action, self.pause_action, self.skip_action, self.cancel_action,
                       None, self.retry_action, self.rerender_action):
            batch_menu.addSeparator() if action is None else batch_menu.addAction(action)
        shot_menu = bar.addMenu("&Shot")
        for action in (self.log_action, self.rerender_selected_action, None, self.open_output_action,
                       self.copy_pattern_action, self.copy_nuke_action, self.blender_action, None,
                       self.move_up_action, self.move_down_action, self.remove_action, self.undo_action):
            shot_menu.addSeparator() if action is None else shot_menu.addAction(action)
        view_menu = bar.addMenu("&View")
        for action in (self.larger_action, self.smaller_action, self.reset_text_action):
            view_menu.addAction(action)
        self.shot_menu = shot_menu

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        recent = [p for p in self.controller.settings.recent_queues if os.path.isfile(p)]
        for path in recent:
            self.recent_menu.addAction(path, lambda p=path: self.load_queue(p))
        self.recent_menu.setEnabled(bool(recent))

    def _build_batch_bar(self) -> None:
        self.batch_bar = QGroupBox("Batch")
        grid = QGridLayout(self.batch_bar)
        grid.setContentsMargins(6, 4, 6, 4)
        self.preset_combo = QComboBox()
        self.predictor_combo = QComboBox()
        self.predictor_combo.setToolTip("the depth model: dvd, or a plugin's predictor")
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(["depth", "disparity"])
        self.near_box, self.far_box = QDoubleSpinBox(), QDoubleSpinBox()
        for box, value in ((self.near_box, 1.0), (self.far_box, 100.0)):
            box.setRange(0.001, 1e6)
            box.setDecimals(3)
            box.setValue(value)
            box.setKeyboardTracking(False)
        self.start_frame_box = QSpinBox()
        self.start_frame_box.setRange(0, 10_000_000)
        self.start_frame_box.setSpecialValueText("1 (movie)")
        self.start_frame_box.setToolTip("first frame number of movies' passes (plates often start at 1001); "
                                        "sequences keep their own numbers")
        self.start_frame_box.setKeyboardTracking(False)
        self.colorspace_combo = QComboBox()
        self.colorspace_combo.addItems(["auto", "display", "linear"])
        self.colorspace_combo.setToolTip("plate colour (linear EXRs are shown to the model through sRGB, or OCIO "
                                         "per shot)")
        self.hold_missing_box = QCheckBox("Hold missing")
        self.hold_missing_box.setToolTip("repeat the previous frame over missing or damaged frames of a sequence")
        self.pattern_edit = QLineEdit(self.controller.output_pattern)
        self.pattern_edit.setMinimumWidth(160)
        self.pattern_edit.setToolTip("output folder per shot; fields: {source_dir} {source_name} {shot} {preset}")
        row0 = (("Preset", self.preset_combo), ("Mode", self.mode_combo), ("Near", self.near_box),
                ("Far", self.far_box))
        row1 = (("Predictor", self.predictor_combo), ("Start frame", self.start_frame_box),
                ("Colour", self.colorspace_combo))
        for r, items in enumerate((row0, row1)):
            for i, (label, widget) in enumerate(items):
                grid.addWidget(QLabel(label), r, 2 * i)
                grid.addWidget(widget, r, 2 * i + 1)
        grid.addWidget(self.hold_missing_box, 1, 6, 1, 2)
        grid.addWidget(QLabel("Output"), 2, 0)
        grid.addWidget(self.pattern_edit, 2, 1, 1, 7)
        for col in (1, 3, 5, 7):
            grid.setColumnStretch(col, 1)
        self.preset_combo.currentTextChanged.connect(lambda text: self._batch_changed(preset=text or None))
        self.predictor_combo.currentTextChanged.connect(lambda text: self._batch_changed(predictor=text or None))
        self.mode_combo.currentTextChanged.connect(lambda text: self._batch_changed(mode=text))
        self.near_box.valueChanged.connect(lambda value: self._batch_changed(near=value))
        self.far_box.valueChanged.connect(lambda value: self._batch_changed(far=value))
        self.start_frame_box.valueChanged.connect(lambda value: self._batch_changed(start_frame=value or None))
        self.colorspace_combo.currentTextChanged.connect(lambda text: self._batch_changed(colorspace=text))
        self.hold_missing_box.toggled.connect(lambda on: self._batch_changed(hold_missing=on))
        self.pattern_edit.editingFinished.connect(
            lambda: self._batch_changed(output_pattern=self.pattern_edit.text().strip() or None))

    def _predictor_names(self) -> list[str]:
        try:
            return sorted(self.controller.engine.predictors())
        except Exception as exc:  # a broken plugin: the panel still opens
            self.statusBar().showMessage(f"cannot list predictors: {exc}", 15000)
            return ["dvd"]

    def _load_presets(self) -> None:
        try:
            names = sorted(self.controller.presets())
        except DvdError as exc:
            names = []
            self.show_error(str(exc))
        predictors = self._predictor_names()
        self.preset_combo.blockSignals(True)
        self.preset_combo.clear()
        self.preset_combo.addItems(names)
        self.preset_combo.setCurrentText(self.controller.preset)
        for name in names:
            description = self.controller.presets()[name].description
            self.preset_combo.setItemData(names.index(name), description, Qt.ItemDataRole.ToolTipRole)
        self.preset_combo.blockSignals(False)
        self.predictor_combo.blockSignals(True)
        self.predictor_combo.clear()
        self.predictor_combo.addItems(predictors)
        self.predictor_combo.blockSignals(False)
        if hasattr(self, "overrides"):
            self.overrides.set_presets(names, predictors)
        self._sync_batch_bar()

    def _sync_batch_bar(self) -> None:
        """Show the batch values (the controller's defaults over the preset's)."""
        from dvd_vfx import presets as P

        c = self.controller
        preset = c.presets().get(c.preset)
        values = P.merge(preset, {k: v for k, v in c.defaults.items() if k in P.KEYS}) if preset else dict(P.DEFAULTS)
        d = c.defaults
        for widget, setter, value in (
                (self.preset_combo, self.preset_combo.setCurrentText, c.preset),
                (self.predictor_combo, self.predictor_combo.setCurrentText, values["predictor"]),
                (self.mode_combo, self.mode_combo.setCurrentText, values["mode"]),
                (self.near_box, self.near_box.setValue, values["near"]),
                (self.far_box, self.far_box.setValue, values["far"]),
                (self.start_frame_box, self.start_frame_box.setValue, d.get("start_frame") or 0),
                (self.colorspace_combo, self.colorspace_combo.setCurrentText, d.get("colorspace", "auto")),
                (self.hold_missing_box, self.hold_missing_box.setChecked, bool(d.get("hold_missing"))),
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

    # -- text size --------------------------------------------------------------------------------
    def font_scale(self) -> float:
        return self.controller.settings.font_scale or 1.0

    def set_font_scale(self, scale: float) -> None:
        """Text size for the whole panel (View menu, remembered); 1.0 = 10 pt."""
        scale = min(2.5, max(0.7, float(scale)))
        self.controller.settings.font_scale = scale
        app = QApplication.instance()
        font = app.font()
        font.setPointSizeF(BASE_POINT_SIZE * scale)
        app.setFont(font)
        for widget in [self, *self.findChildren(QWidget)]:
            widget.setFont(font)
        self.table.verticalHeader().setDefaultSectionSize(int(34 * max(1.0, scale)))
        self._size_columns(scale)

    def _size_columns(self, scale: float) -> None:
        """Column widths for the text size: Shot and Status first and wide, the rest fit their headers."""
        header = self.table.horizontalHeader()
        metrics = self.table.fontMetrics()
        for col, text in enumerate(self.model.COLUMN_SAMPLES):
            header.resizeSection(col, max(metrics.horizontalAdvance(text), metrics.horizontalAdvance(
                self.model.headerData(col, Qt.Orientation.Horizontal))) + 24)

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
        self.select_shots([shot_id])

    def select_shots(self, shot_ids) -> None:
        selection = self.table.selectionModel()
        flags = QItemSelectionModel.SelectionFlag
        rows = [r for r in (self.model.row_of(i) for i in shot_ids) if r is not None]
        if not rows:
            return
        selection.blockSignals(True)
        selection.clearSelection()
        for row in rows:
            selection.select(self.model.index(row, 0), flags.Select | flags.Rows)
        selection.setCurrentIndex(self.model.index(rows[0], 0), flags.NoUpdate)
        selection.blockSignals(False)
        self.table.scrollTo(self.model.index(rows[0], 0))
        self._selection_changed()

    def select_failed(self) -> None:
        """One click to the failures: the failed rows selected, the first one's error and log below."""
        failed = [s["id"] for s in self.model.shots() if s["status"] == "failed"]
        of_batch = [i for i in self._failed_ids if i in failed]
        self.select_shots(of_batch or failed)

    def _selection_changed(self, *_):
        shot = self.current_shot()
        self.preview.show_shot(shot)
        self.overrides.show_shot(shot)
        self._show_detail(shot)
        self._update_buttons()

    def _show_detail(self, shot: dict | None) -> None:
        if shot is None or not (shot["error"] or shot["status"] == "outdated"):
            self.detail.setVisible(False)
            return
        if shot["status"] == "outdated":
            text = (f"<b>{shot['shot_name']}</b>: the pass on disk differs \u2014 "
                    + "; ".join(shot["differences"]) + ". Re-render changed (Ctrl+Shift+R).")
            colour = "#e0c04f"
        else:
            text = f"<b>{shot['shot_name']}</b> {shot['status']}: {shot['error']}  (Show log: Ctrl+L)"
            colour = "#e05a4f"
        self.detail.setText(text)
        self.detail.setStyleSheet(f"color: {colour}; padding: 2px 4px")
        self.detail.setVisible(True)

    # -- events (UI thread) ---------------------------------------------------------------------
    def _on_event(self, topic: str, payload: dict) -> None:
        selected = self.selected_ids() if topic in ("queue.changed", "shot.changed") else []
        current = self.current_shot() if topic == "queue.changed" else None
        self.model.on_event(topic, payload)
        if topic == "queue.changed":
            self._restore_selection(selected, current["id"] if current else None)
            self.table.viewport().update()
        elif topic == "shot.changed":
            shot = payload["shot"]
            current = self.current_shot()
            if shot["status"] == "rendering" and self.preview.follow.isChecked() and \
                    (current is None or current["id"] != shot["id"]) and len(self.selected_ids()) <= 1:
                self.select_shot(shot["id"])  # follow the shot being rendered
            elif current is not None and shot["id"] == current["id"]:
                self.preview.show_shot(shot)
                self.overrides.show_shot(shot)
                self._show_detail(shot)
        elif topic == "batch.progress.changed":
            self._show_batch(payload)
        elif topic == "batch.state.changed":
            self.state_label.setText(payload["state"])
            if payload["state"] == "running":
                self._last_finished = None
        elif topic == "batch.finished":
            self._last_finished = payload
            text, _ = batch_summary({**payload, "state": "idle"})
            self.statusBar().showMessage(f"batch finished: {text}", 30000)
        elif topic == "preview.changed":
            self.preview.on_event(topic, payload)
        elif topic == "preview.comp.changed":
            self.preview.show_comp(payload)
        elif topic == "message":
            self.statusBar().showMessage(payload["text"], 10000)
        elif topic == "settings.changed":
            self._refresh_recent()
        self._update_buttons()

    def _show_batch(self, p: dict) -> None:
        self.overall.setValue(int(round(p["fraction"] * 1000)))
        text, key = batch_summary(p)
        self.overall.setFormat(f"%p% \u2014 {text}")
        self.overall.setStyleSheet(f"QProgressBar::chunk {{ background: {SUMMARY_COLOURS[key]}; }}"
                                   "QProgressBar { text-align: center; }")
        self.eta_label.setText(format_eta(p["eta_s"]))
        failed = p.get("failed", 0)
        self._failed_ids = list(p.get("failed_ids") or [])
        self.show_failed_button.setVisible(bool(failed))
        self.show_failed_button.setText(f"Show failed ({failed})")
        if p.get("state", "idle") == "idle" and p.get("total"):
            word = {"ok": "Batch finished", "partial": "Batch stopped", "failed": "Batch finished with failures"}[key]
            self.summary_label.setText(f"{word}: {text}")
            self.summary_label.setStyleSheet(f"color: white; background: {SUMMARY_COLOURS[key]}; padding: 3px 6px;"
                                             " font-weight: bold")
            self.summary_label.setVisible(True)
        else:
            self.summary_label.setVisible(False)

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
        c = self.controller
        state = c.state
        shots = self.model.shots()
        statuses = {s["status"] for s in shots}
        shot = self.current_shot()
        has_pass = bool(shot and (shot.get("on_disk") or shot.get("pattern")))
        self.start_action.setEnabled(state == "idle" and bool(statuses & {"queued", "cached", "outdated"}))
        self.resume_action.setEnabled(c.resumable)
        self.pause_action.setEnabled(state == "running")
        self.skip_action.setEnabled(state in ("running", "pausing"))
        self.cancel_action.setEnabled(state in ("running", "pausing"))
        self.retry_action.setEnabled(bool(statuses & {"failed", "cancelled"}) and state != "cancelling")
        self.rerender_action.setEnabled("outdated" in statuses and state != "cancelling")
        self.rerender_selected_action.setEnabled(bool(self.selected_ids()) and state != "cancelling")
        self.remove_action.setEnabled(bool(self.selected_ids()))
        self.undo_action.setEnabled(c.can_undo_remove())
        self.log_action.setEnabled(bool(self.selected_ids()))
        self.move_up_action.setEnabled(bool(self.selected_ids()))
        self.move_down_action.setEnabled(bool(self.selected_ids()))
        self.open_output_action.setEnabled(bool(shot and shot["out_dir"] and os.path.isdir(shot["out_dir"])))
        for action in (self.copy_pattern_action, self.copy_nuke_action, self.blender_action):
            action.setEnabled(has_pass)
        self.open_queue_action.setEnabled(state == "idle")

    def _context_menu(self, pos) -> None:
        if self.current_shot() is None:
            return
        self.shot_menu.popup(self.table.viewport().mapToGlobal(pos))

    # -- commands -------------------------------------------------------------------------------
    def add_paths(self, paths) -> list[str]:
        try:
            ids = self.controller.add_sources(paths)
        except DvdError as exc:
            self.show_error(str(exc))
            return []
        if any(str(p).lower().endswith(".json") for p in paths):
            self._sync_batch_bar()
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

    def add_edit(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add edit", self.controller.settings.last_add_folder,
                                              "Edits and shot lists (*.otio *.edl *.xml *.csv);;All files (*)")
        if not path:
            return
        handles, rate = 0, None
        if not no_dialogs():
            handles, ok = QInputDialog.getInt(self, "Add edit", "Handles (frames before and after each clip):",
                                              0, 0, 1000)
            if not ok:
                return
            if path.lower().endswith(".edl"):  # CMX 3600 timecodes carry no frame rate
                rate, ok = QInputDialog.getDouble(self, "Add edit", "Frame rate of the EDL's timecodes:",
                                                  24.0, 1.0, 240.0, 3)
                if not ok:
                    return
        self.add_edit_file(path, handles=handles, rate=rate)

    def add_edit_file(self, path, *, handles: int = 0, rate=None) -> list[str]:
        try:
            ids = self.controller.add_edit(path, handles=handles, rate=rate)
        except DvdError as exc:
            self.show_error(str(exc))
            return []
        if ids:
            self.select_shots(ids)
            self.statusBar().showMessage(f"added {len(ids)} shot(s) from {os.path.basename(path)}", 10000)
        return ids

    def remove_selected(self) -> None:
        ids = self.selected_ids()
        if ids:
            self.controller.remove(ids)
            self.statusBar().showMessage(f"removed {len(ids)} shot(s); Ctrl+Z brings them back", 10000)

    def undo_remove(self) -> None:
        ids = self.controller.undo_remove()
        if ids:
            self.select_shots(ids)

    def move_selected(self, offset: int) -> None:
        ids = self.selected_ids()
        rows = [self.model.row_of(i) for i in ids]
        if not rows:
            return
        target = min(rows) - 1 if offset < 0 else max(rows) + 2
        self.controller.move_to(ids, max(0, target))
        self.select_shots(ids)

    def skip_shot(self) -> None:
        shot_id = self.controller.skip_current()
        if shot_id:
            self.statusBar().showMessage("skipping the current shot; the batch goes on", 10000)

    def cancel_batch(self) -> None:
        """Deliberate: asks first (the shot's finished windows stay cached either way)."""
        if self.controller.state == "idle":
            return
        if not no_dialogs():
            answer = QMessageBox.question(
                self, "dvd-vfx", "Cancel the batch? The shot that renders stops now (its finished windows stay "
                "cached; Resume goes on from them) and no further shot starts.\n\nTo stop only this shot, use "
                "Skip shot.")
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.controller.cancel_batch()

    def open_output(self) -> None:
        shot = self.current_shot()
        if shot and shot["out_dir"] and os.path.isdir(shot["out_dir"]):
            QDesktopServices.openUrl(QUrl.fromLocalFile(shot["out_dir"]))

    def copy_pattern(self) -> None:
        shot = self.current_shot()
        pattern = shot and ((shot.get("on_disk") or {}).get("pattern") or shot["pattern"])
        if pattern:
            QApplication.clipboard().setText(pattern)
            self.statusBar().showMessage(f"copied {pattern}", 8000)

    def copy_nuke_read(self) -> None:
        shot = self.current_shot()
        if shot is None:
            return
        try:
            QApplication.clipboard().setText(handoff.nuke_read_node(shot))
        except DvdError as exc:
            self.show_error(str(exc))
            return
        self.statusBar().showMessage(f"Read node of {shot['shot_name']} copied: paste it into Nuke's Node Graph", 10000)

    def open_in_blender(self) -> None:
        shot = self.current_shot()
        if shot is None:
            return
        try:
            command = handoff.blender_command(shot, self.controller.settings.blender)
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except (DvdError, OSError) as exc:
            self.show_error(str(exc))
            return
        self.statusBar().showMessage(f"starting Blender with {shot['shot_name']}'s pass", 10000)

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
        self._refresh_recent()

    def save_queue(self) -> None:
        start = self.controller.queue_path or os.path.join(self.controller.settings.last_queue_folder, "queue.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save queue", start, "dvd-vfx queue (*.json)")
        if path:
            self.controller.save_queue(path if path.endswith(".json") else path + ".json")
            self._refresh_recent()

    def edit_settings(self) -> None:
        from .controller import check_settings

        dialog = SettingsDialog(self.controller.settings, self, check=check_settings)
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
        if not no_dialogs():
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
                if not no_dialogs() else QMessageBox.StandardButton.Yes
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
