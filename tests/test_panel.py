"""The PyQt6 panel end to end (pytest-qt, offscreen): a batch of three shots with the tiny DVD model,
cancel + resume, a corrupt shot that fails in its row without stopping the others, event-loop
latency while rendering, and a screenshot of a finished batch with its preview."""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("DVD_VFX_PANEL_NO_DIALOGS", "1")

import pytest  # noqa: E402

pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pytestqt")

from PyQt6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl  # noqa: E402
from PyQt6.QtGui import QDropEvent  # noqa: E402

from footage_helpers import make_testsrc, write_exr_sequence as write_sequence  # noqa: E402
from plugin_helpers import LUMA_PLUGIN, write_plugin  # noqa: E402
from dvd_vfx.cache import ShotCache  # noqa: E402
from dvd_vfx_ui.controller import BatchController  # noqa: E402
from dvd_vfx_ui.main_window import LogDialog, MainWindow, batch_summary  # noqa: E402
from dvd_vfx_ui.queue_model import PROGRESS, STATUS, TIME  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402
from dvd_vfx_ui.settings import Settings  # noqa: E402

FAST = {"resolution": 48, "window": 5, "overlap": 2, "device": "cpu"}
ARTIFACTS = Path(os.environ.get("DVD_VFX_TEST_ARTIFACTS",
                                Path(__file__).resolve().parent.parent / ".pytest_cache" / "artifacts"))


@pytest.fixture(scope="module")
def plates(tmp_path_factory) -> dict[str, Path]:
    """Three small shots: two movies and an EXR sequence (1001-1006)."""
    root = tmp_path_factory.mktemp("plates")
    (root / "sh020").mkdir()
    return {"sh010": make_testsrc(root / "sh010.mp4", frames=9),
            "sh020": make_testsrc(root / "sh020" / "sh020_v2.mp4", size="80x48", frames=5),
            "sh030": write_sequence(root / "sh030", name="sh030_plate")}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("panel-cache")


def make_window(qtbot, settings: Settings, tmp_path: Path, **defaults) -> tuple[MainWindow, BatchController]:
    controller = BatchController(settings=settings, settings_path=tmp_path / "panel.json")
    controller.set_batch_defaults(output_pattern=str(tmp_path / "out" / "{shot}"), **defaults)
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.resize(1500, 820)
    window.show()
    return window, controller


def drop(window: MainWindow, paths) -> None:
    """What dragging files from a file browser onto the window does."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)


def status_texts(window: MainWindow) -> list[str]:
    model = window.model
    return [model.data(model.index(r, STATUS)) for r in range(model.rowCount())]


def wait_idle(qtbot, controller, timeout_ms=120_000) -> None:
    qtbot.waitUntil(lambda: controller.state == "idle" and controller.wait(0), timeout=timeout_ms)
    qtbot.wait(50)  # let the queued events reach the widgets


class LatencyProbe:
    """Largest gap between ticks of a 10 ms QTimer: how long the UI thread was ever busy."""

    def __init__(self):
        self.gaps: list[float] = []
        self._last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)

    def _tick(self):
        now = time.perf_counter()
        self.gaps.append(now - self._last)
        self._last = now

    def start(self):
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self):
        self.timer.stop()


def test_batch_of_three_shots_renders_with_the_tiny_model_and_never_blocks_the_ui(
        qtbot, plates, cache_dir, tiny_weights_master, tmp_path):
    settings = Settings(weights=str(tiny_weights_master), cache_dir=str(cache_dir))
    window, controller = make_window(qtbot, settings, tmp_path, **FAST)
    window.add_paths([plates["sh010"]])
    drop(window, [plates["sh020"].parent, plates["sh030"].parent / "sh030_plate.1003.exr"])
    assert controller.wait_probed(30)
    qtbot.waitUntil(lambda: window.model.rowCount() == 3 and all(s["info"] for s in window.model.shots()))
    labels = [s["label"] for s in window.model.shots()]
    assert labels == ["sh010.mp4", "sh020_v2.mp4", "sh030_plate.####.exr [1001-1006]"]
    assert status_texts(window) == ["queued"] * 3

    probe = LatencyProbe()
    finished = []
    controller.events.subscribe("batch.finished", lambda topic, payload: finished.append(payload))
    probe.start()
    window.start_action.trigger()
    qtbot.waitUntil(lambda: controller.state == "running", timeout=5000)
    wait_idle(qtbot, controller)
    probe.stop()

    assert finished == [{"done": 3, "from_cache": 0, "failed": 0, "cancelled": 0, "left": 0, "total": 3,
                         "failed_ids": [], "failed_before_start": 0}]
    assert status_texts(window) == ["done"] * 3
    assert window.overall.value() == 1000
    expected = {"sh010": [f"sh010.depth.{n:04d}.exr" for n in range(1, 10)],
                "sh020_v2": [f"sh020_v2.depth.{n:04d}.exr" for n in range(1, 6)],
                "sh030_plate": [f"sh030_plate.depth.{n:04d}.exr" for n in range(1001, 1007)]}
    for shot, names in expected.items():
        assert sorted(p.name for p in (tmp_path / "out" / shot).iterdir()) == names
    # the UI thread kept serving its event loop while three shots rendered on the worker
    assert len(probe.gaps) > 20
    worst = max(probe.gaps)
    print(f"worst event-loop gap while rendering: {worst * 1000:.0f} ms over {len(probe.gaps)} ticks")
    assert worst < 0.5, f"event loop blocked for {worst * 1000:.0f} ms"


def test_finished_batch_with_preview_screenshot(qtbot, plates, cache_dir, tiny_weights_master, tmp_path):
    """Same shots again (all windows cached, so it is quick); the preview shows plate, depth, defocus/fog."""
    settings = Settings(weights=str(tiny_weights_master), cache_dir=str(cache_dir))
    window, controller = make_window(qtbot, settings, tmp_path, **FAST)
    window.add_paths([plates["sh010"], plates["sh020"], plates["sh030"]])
    assert controller.wait_probed(30)
    controller.set_overrides([controller.shots()[2]["id"]], near=2.0, far=40.0)
    window.start_action.trigger()
    wait_idle(qtbot, controller)
    # every window was cached by the first test: the rows say the passes came from the cache
    assert status_texts(window) == ["done (from the cache)"] * 3
    assert window.summary_label.text() == "Batch finished: 3 of 3 done (3 from the cache)"
    seq_id = controller.shots()[2]["id"]
    window.select_shot(seq_id)
    window.preview.slider.setValue(1004)
    qtbot.waitUntil(lambda: window.preview.shown == (seq_id, 1004), timeout=20_000)
    assert window.preview.depth_view.has_image() and window.preview.plate_view.has_image()
    assert window.preview.legend.near_label.text() == "near 2" and window.preview.legend.far_label.text() == "far 40"
    if window.preview.comp is not None:
        window.preview.fog_density.setValue(500)
        qtbot.waitUntil(window.preview.comp_view.has_image, timeout=20_000)
    else:
        assert not window.preview.focus.isEnabled() and window.preview.focus.toolTip() == "needs dvd_vfx.comp"
    qtbot.wait(200)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "panel.png"
    assert window.grab().save(str(shot))
    assert shot.stat().st_size > 10_000


def test_cancel_mid_run_keeps_windows_cached_and_resume_finishes(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("DVD_TEST_PREDICT_SLEEP", "0.15")
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "luma", LUMA_PLUGIN)
    settings = Settings(cache_dir=str(tmp_path / "cache"), plugins_dir=str(plugins))
    window, controller = make_window(qtbot, settings, tmp_path, predictor="luma", **FAST)
    movie = make_testsrc(tmp_path / "long.mp4", frames=30)  # 10 windows of 5 frames, overlap 2
    window.add_paths([movie])
    assert controller.wait_probed(30)
    shot_id = controller.shots()[0]["id"]
    predicted = []
    controller.events.subscribe("job.progress.changed",
                                lambda t, p: predicted.append(p["done"]) if p["stage"] == "predict" else None)

    window.start_action.trigger()
    qtbot.waitUntil(lambda: bool(predicted) and predicted[-1] >= 3, timeout=30_000)
    assert window.cancel_action.isEnabled()
    window.cancel_action.trigger()
    wait_idle(qtbot, controller)
    row = controller.shot(shot_id)
    assert row["status"] == "cancelled" and "cancel" in row["error"]
    assert status_texts(window)[0].startswith("cancelled")
    [entry] = ShotCache(settings.cache_dir).entries()
    assert 3 <= entry.windows_done < entry.windows_total == 10
    assert not (tmp_path / "out" / "long").exists()  # no partial output

    monkeypatch.setenv("DVD_TEST_PREDICT_SLEEP", "0")
    predicted.clear()
    assert not window.start_action.isEnabled()  # Start never picks up a cancelled shot by itself ...
    assert window.resume_action.isEnabled()  # ... Resume does, from its cached windows
    window.resume_action.trigger()
    wait_idle(qtbot, controller)
    row = controller.shot(shot_id)
    assert row["status"] == "done", row["log"]
    assert predicted[0] == entry.windows_done  # resumed from the cached windows
    assert any("cache partial" in line for line in row["log"])
    assert len(list((tmp_path / "out" / "long").glob("long.depth.*.exr"))) == 30


def test_corrupt_shots_fail_in_their_rows_and_the_others_render(qtbot, tmp_path):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "luma", LUMA_PLUGIN)
    settings = Settings(cache_dir=str(tmp_path / "cache"), plugins_dir=str(plugins))
    window, controller = make_window(qtbot, settings, tmp_path, predictor="luma", **FAST)
    corrupt = tmp_path / "corrupt.mov"
    corrupt.write_bytes(os.urandom(4096))
    seq = write_sequence(tmp_path / "seq", name="broken")
    good = make_testsrc(tmp_path / "good.mp4", frames=5)
    window.add_paths([corrupt, seq, good])
    assert controller.wait_probed(30)
    qtbot.wait(50)
    ids = [s["id"] for s in controller.shots()]
    # the corrupt movie is caught when it is probed; its row says why in one line
    first = status_texts(window)[0]
    assert first.startswith("failed: ") and "corrupt.mov" in first and "\n" not in first
    # a frame of the sequence breaks after it was added: it fails while rendering, mid-batch
    frame = tmp_path / "seq" / "broken.1003.exr"
    frame.write_bytes(frame.read_bytes()[: frame.stat().st_size // 3])

    window.start_action.trigger()
    wait_idle(qtbot, controller)
    rows = {s["id"]: s for s in controller.shots()}
    assert [rows[i]["status"] for i in ids] == ["failed", "failed", "done"]
    assert "broken.1003.exr" in rows[ids[1]]["error"] and "\n" not in rows[ids[1]]["error"]
    assert len(list((tmp_path / "out" / "good").glob("good.depth.*.exr"))) == 5
    # the full log on demand
    window.select_shot(ids[1])
    dialog = window.show_log(window.current_shot())
    assert isinstance(dialog, LogDialog)
    assert "broken.1003.exr" in dialog.text.toPlainText() and "render" in dialog.text.toPlainText()
    dialog.close()

    # fix the frame, Retry failed: the sequence renders, the corrupt movie fails again
    write_sequence(tmp_path / "seq", name="broken")
    assert window.retry_action.isEnabled()
    window.retry_action.trigger()
    wait_idle(qtbot, controller)
    rows = {s["id"]: s for s in controller.shots()}
    assert [rows[i]["status"] for i in ids] == ["failed", "done", "done"]


def test_queue_save_and_load_through_the_window(qtbot, tmp_path, plates):
    window, controller = make_window(qtbot, Settings(cache_dir=str(tmp_path / "cache")), tmp_path)
    window.add_paths([plates["sh010"], plates["sh030"]])
    assert controller.wait_probed(30)
    window.preset_combo.setCurrentText("preview")
    window.select_shot(controller.shots()[1]["id"])
    window.overrides.near.setText("2")
    window.overrides.far.setText("20")
    window.overrides.apply_button.click()
    assert controller.shots()[1]["overrides"] == {"near": 2.0, "far": 20.0}
    path = controller.save_queue(tmp_path / "batch.json")

    window2, controller2 = make_window(qtbot, Settings(cache_dir=str(tmp_path / "cache")), tmp_path / "2")
    window2.load_queue(path)
    assert controller2.wait_probed(30)
    qtbot.waitUntil(lambda: all(s["info"] for s in window2.model.shots()))
    assert [s["label"] for s in window2.model.shots()] == ["sh010.mp4", "sh030_plate.####.exr [1001-1006]"]
    assert window2.preset_combo.currentText() == "preview"
    assert window2.model.shots()[1]["overrides"] == {"near": 2.0, "far": 20.0}


# -- issue 22: the panel for daily use ----------------------------------------------------------------------


def luma_window(qtbot, tmp_path, size=(1280, 720), **defaults):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "luma", LUMA_PLUGIN)
    settings = Settings(cache_dir=str(tmp_path / "cache"), plugins_dir=str(plugins))
    window, controller = make_window(qtbot, settings, tmp_path, predictor="luma", **{**FAST, **defaults})
    window.resize(*size)
    qtbot.wait(20)
    return window, controller


def column_visible(window, col) -> bool:
    header = window.table.horizontalHeader()
    left = header.sectionViewportPosition(col)
    return left >= 0 and left + header.sectionSize(col) <= window.table.viewport().width()


def test_batch_summary_never_hides_a_shot_that_failed_before_start():
    """Every batch shot rendered, but a 4th queued shot failed its probe before Start: the outcome says so in
    words and in red, not "3 of 3 done" in green."""
    counts = {"done": 3, "from_cache": 0, "failed": 0, "cancelled": 0, "left": 0, "total": 3, "failed_ids": []}
    assert batch_summary({**counts, "state": "idle"}) == ("3 of 3 done", "ok")
    assert batch_summary({**counts, "failed_before_start": 1, "state": "idle"}) == \
        ("3 of 3 done \u00b7 1 failed before Start", "failed")
    assert batch_summary({**counts, "done": 1, "left": 2, "failed_before_start": 1, "state": "running"}) == \
        ("1 of 3 done \u00b7 1 failed before Start", "failed")


def test_small_window_keeps_status_visible_and_a_failed_batch_says_so(qtbot, tmp_path):
    """1280x720: Status and Progress on screen without scrolling; 2 of 3 shots fail -> the batch says so in
    colour and words, and the failures are one click away."""
    window, controller = luma_window(qtbot, tmp_path)
    corrupt = tmp_path / "corrupt.mov"
    corrupt.write_bytes(os.urandom(4096))
    seq = write_sequence(tmp_path / "seq", name="broken")
    good = make_testsrc(tmp_path / "good.mp4", frames=5)
    window.add_paths([corrupt, seq, good])
    assert controller.wait_probed(30)
    qtbot.wait(50)
    assert window.table.horizontalHeader().length() > 0
    for col in (STATUS, PROGRESS):
        assert column_visible(window, col), f"column {col} is off-screen at 1280x720"
    assert window.pattern_edit.width() >= 150  # the output pattern stays readable
    frame = tmp_path / "seq" / "broken.1003.exr"
    frame.write_bytes(frame.read_bytes()[: frame.stat().st_size // 3])
    window.start_action.trigger()
    wait_idle(qtbot, controller)
    assert window.summary_label.isVisible()
    # the corrupt movie failed its probe, so it was never in the batch: the outcome still counts it
    assert window.summary_label.text() == ("Batch finished with failures: 1 of 2 done \u00b7 1 failed \u00b7 "
                                           "1 failed before Start")
    assert "#b83b32" in window.summary_label.styleSheet()  # red
    assert window.overall.value() == round(1000 * 5 / 11)  # 5 of the batch's 11 frames were rendered, not "100%"
    assert window.show_failed_button.isVisible() and window.show_failed_button.text() == "Show failed (1)"
    window.show_failed_button.click()
    ids = [s["id"] for s in controller.shots()]
    assert window.selected_ids() == [ids[1]]  # the batch's failure (the corrupt movie was never in it)
    assert window.detail.isVisible() and "broken.1003.exr" in window.detail.text()  # the whole error, not cut
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert window.grab().save(str(ARTIFACTS / "panel-1280x720-failed.png"))


def test_rerender_after_an_override_changes_the_files_on_disk(qtbot, tmp_path):
    from dvd_vfx.passes.exr import read_pass_attributes

    window, controller = luma_window(qtbot, tmp_path)
    movie = make_testsrc(tmp_path / "sh010.mp4", frames=5)
    window.add_paths([movie])
    assert controller.wait_probed(30)
    window.start_action.trigger()
    wait_idle(qtbot, controller)
    first = tmp_path / "out" / "sh010" / "sh010.depth.0001.exr"
    assert read_pass_attributes(first)["far"] == 100.0
    assert not window.start_action.isEnabled() and not window.rerender_action.isEnabled()
    window.select_shot(controller.shots()[0]["id"])
    window.overrides.near.setText("0.5")
    window.overrides.far.setText("25")
    window.overrides.apply_button.click()
    qtbot.wait(50)
    assert status_texts(window) == ["outdated: near 1 \u2192 0.5; far 100 \u2192 25 \u2014 Re-render"]
    assert window.rerender_action.isEnabled() and window.start_action.isEnabled()
    window.rerender_action.trigger()
    wait_idle(qtbot, controller)
    attributes = read_pass_attributes(first)
    assert (attributes["near"], attributes["far"]) == (0.5, 25.0)
    assert status_texts(window) == ["done (from the cache)"]
    qtbot.waitUntil(lambda: window.preview.legend.near_label.text() == "near 0.5", timeout=20_000)  # the legend too


def test_esc_in_a_field_does_not_cancel_skip_goes_on_and_progress_counts_what_is_done(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("DVD_TEST_PREDICT_SLEEP", "0.15")
    window, controller = luma_window(qtbot, tmp_path)
    a = make_testsrc(tmp_path / "a.mp4", frames=17)
    b = make_testsrc(tmp_path / "b.mp4", frames=5)
    window.add_paths([a, b])
    assert controller.wait_probed(30)
    predicted = []
    controller.events.subscribe("job.progress.changed",
                                lambda t, p: predicted.append(p) if p["stage"] == "predict" else None)
    window.start_action.trigger()
    qtbot.waitUntil(lambda: len(predicted) >= 2, timeout=30_000)
    window.pattern_edit.setFocus()
    qtbot.keyClick(window.pattern_edit, Qt.Key.Key_Escape)
    qtbot.keyClick(window.table, Qt.Key.Key_Escape)
    qtbot.wait(300)
    assert controller.state == "running"  # Esc never cancels
    # the row tells the stage, the window, elapsed time and ETA
    text = status_texts(window)[0]
    assert text.startswith("rendering \u00b7 predicting window ") and "/5" in text, text
    assert window.cancel_action.toolTip().startswith("stop the shot that renders now and the rest of the batch")
    window.skip_action.trigger()
    wait_idle(qtbot, controller)
    rows = controller.shots()
    assert [r["status"] for r in rows] == ["cancelled", "done"]  # skipped, and the batch went on
    assert status_texts(window)[0] == "skipped"
    p = controller.batch_progress()
    assert (p["done"], p["cancelled"], p["total"]) == (1, 1, 2)
    assert abs(p["fraction"] - 5 / 22) < 1e-6  # only b's 5 of 22 frames are done
    assert window.summary_label.text() == "Batch stopped: 1 of 2 done \u00b7 1 cancelled"
    assert not window.start_action.isEnabled() and window.resume_action.isEnabled()
    assert rows[0]["seconds"] > 0 and window.model.data(window.model.index(1, TIME))  # render time column


def test_progress_bar_fills_left_to_right(qtbot):
    from PyQt6.QtGui import QImage, QPainter
    from PyQt6.QtWidgets import QStyleOptionViewItem

    from dvd_vfx_ui.queue_model import ProgressDelegate, QueueModel

    model = QueueModel()
    snapshot = {"id": "x", "status": "rendering", "fraction": 0.5, "error": "", "overrides": {}, "info": None,
                "label": "x", "shot_name": "x", "probing": False, "out_dir": "", "stage": "predict", "done": 1,
                "total": 2, "started": 0.0, "seconds": 0.0, "pattern": "", "thumbnail": None}
    model.on_event("queue.changed", {"shots": [snapshot]})
    image = QImage(200, 30, QImage.Format.Format_RGB32)
    image.fill(0)
    painter = QPainter(image)
    option = QStyleOptionViewItem()
    option.rect = image.rect()
    ProgressDelegate().paint(painter, option, model.index(0, PROGRESS))
    painter.end()
    left, right = image.pixelColor(30, 15), image.pixelColor(170, 15)
    assert left.red() > 150 and right.red() < 80  # orange on the left half, dark on the right: horizontal


def test_render_options_reach_the_engine(qtbot, tmp_path):
    """Start frame, frame range, colourspace/OCIO, hold missing, predictor and anchors go into the render,
    in process and as `dvd-vfx render` flags."""
    from dvd_vfx.cli_args import render_options
    from dvd_vfx.cli import build_parser
    from dvd_vfx.plugins import ModelSettings
    from dvd_vfx_ui.controller.runner import render_args, render_options as row_options

    window, controller = luma_window(qtbot, tmp_path)
    movie = make_testsrc(tmp_path / "sh010.mp4", frames=9)
    anchors = tmp_path / "anchors.csv"
    anchors.write_text("frame,x,y,depth\n1001,10,10,5\n")
    window.add_paths([movie])
    assert controller.wait_probed(30)
    window.start_frame_box.setValue(1001)  # batch-wide: movies' passes numbered like the plates
    qtbot.waitUntil(lambda: controller.shots()[0]["info"] and controller.shots()[0]["info"]["first_frame"] == 1001)
    shot_id = controller.shots()[0]["id"]
    window.select_shot(shot_id)
    box = window.overrides
    box.frames.setText("1002-1006")
    box.colorspace.setCurrentText("display")
    box.hold_missing.setCurrentText("yes")
    box.predictor.setCurrentText("luma")
    box.apply_button.click()
    row = controller.shot(shot_id)
    assert {k: row["overrides"][k] for k in ("frames", "colorspace", "hold_missing", "predictor")} == \
        {"frames": "1002-1006", "colorspace": "display", "hold_missing": True, "predictor": "luma"}
    values = dict(row["values"], anchors=str(anchors), ocio_colorspace="ACES - ACEScg")
    options = row_options(tmp_path / "out", "sh010", values)
    args = render_args(str(movie), options, values, ModelSettings(), use_cache=True, cache_dir="")
    parsed = build_parser().parse_args(["render", *args])
    back = render_options(parsed)
    assert (back.start_frame, back.frames, back.colorspace, back.hold_missing, back.anchors, back.ocio_colorspace) \
        == (1001, (1002, 1006), "display", True, str(anchors), "ACES - ACEScg")
    assert args[args.index("--predictor") + 1] == "luma"
    assert controller.wait_probed(30)  # hold missing changed how the footage reads: probed again
    qtbot.wait(50)
    window.start_action.trigger()
    wait_idle(qtbot, controller)
    assert controller.shot(shot_id)["status"] == "done", controller.shot(shot_id)["log"]
    names = sorted(p.name for p in (tmp_path / "out" / "sh010").iterdir())
    assert names == [f"sh010.depth.{n}.exr" for n in range(1002, 1007)], controller.shot(shot_id)["log"]


def test_preview_views_and_a_failed_shot_shows_its_error(qtbot, tmp_path):
    window, controller = luma_window(qtbot, tmp_path, size=(1920, 1080))
    good = make_testsrc(tmp_path / "good.mp4", frames=5)
    seq = write_sequence(tmp_path / "seq", name="broken")
    window.add_paths([good, seq])
    assert controller.wait_probed(30)
    frame = tmp_path / "seq" / "broken.1002.exr"
    frame.write_bytes(frame.read_bytes()[:200])
    window.start_action.trigger()
    wait_idle(qtbot, controller)
    good_id, bad_id = [s["id"] for s in controller.shots()]
    window.select_shot(bad_id)
    qtbot.waitUntil(lambda: window.preview.shown is not None and window.preview.shown[0] == bad_id, timeout=20_000)
    assert window.preview.depth_view.note.startswith("failed: ") and "broken.1002.exr" in window.preview.depth_view.note
    window.select_shot(good_id)
    qtbot.waitUntil(lambda: window.preview.shown == (good_id, 1) and window.preview.depth_view.has_image(),
                    timeout=20_000)
    viewer = window.preview.viewer
    cells = viewer.cells()
    assert len(cells) == 3
    image = window.preview.depth_view.image
    side = viewer._fit(image, cells[1][1]).width()
    window.preview.view_mode.setCurrentText("Depth")
    [(view, cell)] = viewer.cells()
    assert view is window.preview.depth_view and viewer._fit(image, cell).width() >= side  # one view, as large
    assert side >= 200  # never the 160 px pictures of old
    window.preview.view_mode.setCurrentText("Wipe plate | depth")
    assert viewer.mode == "Wipe plate | depth"
    assert window.preview.depth_view.image.width() >= 64  # loaded at the plate's size, up to 960 px


def test_results_go_to_the_hosts_and_the_log_wraps_and_copies(qtbot, tmp_path):
    window, controller = luma_window(qtbot, tmp_path)
    movie = make_testsrc(tmp_path / "sh010.mp4", frames=5)
    window.add_paths([movie])
    assert controller.wait_probed(30)
    window.start_action.trigger()
    wait_idle(qtbot, controller)
    window.select_shot(controller.shots()[0]["id"])
    assert window.copy_nuke_action.isEnabled() and window.open_output_action.isEnabled()
    window.copy_nuke_action.trigger()
    text = QApplication.clipboard().text()
    pattern = str(tmp_path / "out" / "sh010" / "sh010.depth.####.exr")
    assert f'file "{pattern}"' in text and " first 1\n" in text and " last 5\n" in text and text.startswith(
        "set cut_paste_input")
    window.copy_pattern_action.trigger()
    assert QApplication.clipboard().text() == pattern
    # Open in Blender runs the configured Blender with a script that loads the sequence
    calls = tmp_path / "blender-args.txt"
    blender = tmp_path / "blender"
    blender.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{calls}"\n')
    blender.chmod(0o755)
    controller.settings.blender = str(blender)
    window.blender_action.trigger()
    qtbot.waitUntil(calls.exists, timeout=10_000)
    qtbot.wait(100)
    args = calls.read_text()
    assert args.startswith("--python-expr") and "sh010.depth.0001.exr" in args and "SEQUENCE" in args
    # a new panel (tomorrow) finds the pass on disk: copying works without rendering again
    window2, controller2 = luma_window(qtbot, tmp_path)
    window2.add_paths([movie])
    assert controller2.wait_probed(30)
    qtbot.wait(50)
    window2.select_shot(controller2.shots()[0]["id"])
    assert window2.copy_pattern_action.isEnabled()
    dialog = window.show_log(window.current_shot())
    assert dialog.text.lineWrapMode() == dialog.text.LineWrapMode.WidgetWidth
    dialog.copy_button.click()
    assert QApplication.clipboard().text() == dialog.text.toPlainText()
    dialog.close()


def test_settings_and_recent_queues_are_remembered(qtbot, tmp_path):
    from dvd_vfx_ui.app import last_queue

    window, controller = luma_window(qtbot, tmp_path)
    window.mode_combo.setCurrentText("depth")
    window.near_box.setValue(0.5)
    window.far_box.setValue(250.0)
    window.add_paths([make_testsrc(tmp_path / "a.mp4", frames=5)])
    assert controller.wait_probed(30)
    saved = controller.save_queue(tmp_path / "q.json")
    window._refresh_recent()
    assert [a.text() for a in window.recent_menu.actions()] == [str(saved.resolve())]
    window.close()
    settings = Settings.load(tmp_path / "panel.json")
    assert (settings.batch_defaults["near"], settings.batch_defaults["far"]) == (0.5, 250.0)
    assert last_queue(settings) == str(saved.resolve())
    again = MainWindow(BatchController(settings=settings, settings_path=tmp_path / "panel.json"))
    qtbot.addWidget(again)
    assert (again.near_box.value(), again.far_box.value()) == (0.5, 250.0)
    assert window.quit_action.shortcut().toString() == "Ctrl+Q"
    menus = [a.text() for a in window.menuBar().actions()]
    assert menus == ["&File", "&Batch", "&Shot", "&View"]


def test_drops_and_keys(qtbot, tmp_path):
    window, controller = luma_window(qtbot, tmp_path)
    a, b, c = (make_testsrc(tmp_path / f"{n}.mp4", frames=5) for n in "abc")
    drop(window, [a, b, c])
    assert controller.wait_probed(30)
    messages = []
    controller.events.subscribe("message", lambda t, p: messages.append(p["text"]))
    drop(window, [a])  # a duplicate is not silently ignored
    assert messages and "already in the queue" in messages[-1] and "a.mp4" in messages[-1]
    names = lambda: [s["shot_name"] for s in controller.shots()]  # noqa: E731
    window.select_shot(controller.shots()[2]["id"])
    window.move_up_action.trigger()
    assert names() == ["a", "c", "b"]
    controller.move_to([controller.shots()[0]["id"]], 3)  # what dragging a row to the end does
    assert names() == ["c", "b", "a"]
    window.select_shot(controller.shots()[1]["id"])
    window.table.setFocus()
    qtbot.keyClick(window.table, Qt.Key.Key_Delete)
    assert names() == ["c", "a"]
    window.undo_action.trigger()
    assert names() == ["c", "b", "a"]
    assert window.retry_action.shortcut().toString() == "Ctrl+R"
    assert window.open_queue_action.shortcut().toString() == "Ctrl+Shift+L"
    # a queue file dropped onto the window opens the queue instead of becoming a failing "shot"
    saved = controller.save_queue(tmp_path / "q.json")
    controller.clear()
    drop(window, [saved])
    assert controller.wait_probed(30)
    assert names() == ["c", "b", "a"] and all(s["status"] != "failed" for s in controller.shots())


def test_text_scales_start_is_not_resume_and_the_empty_hint_is_in_the_table(qtbot, tmp_path):
    window, controller = luma_window(qtbot, tmp_path)
    assert window.model.rowCount() == 0
    image = window.table.viewport().grab().toImage()
    grey = sum(1 for x in range(0, image.width(), 3) for y in range(0, image.height(), 3)
               if 0x70 <= image.pixelColor(x, y).red() <= 0x9a and image.pixelColor(x, y).red() ==
               image.pixelColor(x, y).blue())
    assert grey > 20  # the hint is painted inside the empty table
    window.set_font_scale(1.35)
    assert abs(window.table.font().pointSizeF() - 13.5) < 0.01 and controller.settings.font_scale == 1.35
    assert window.start_action.text() == "Start" and window.resume_action.text() == "Resume"


def test_a_late_event_from_the_worker_never_overwrites_a_newer_row():
    """The worker's "done" snapshot may reach the UI after a newer one made on the UI thread (an override
    that made the row outdated): the table keeps the newest."""
    from dvd_vfx_ui.queue_model import QueueModel

    model = QueueModel()
    row = {"id": "x", "status": "outdated", "version": 7}
    model.on_event("queue.changed", {"shots": [row]})
    model.on_event("shot.changed", {"shot": {"id": "x", "status": "done", "version": 5}})
    model.on_event("job.progress.changed", {"shot_id": "x", "stage": "write", "done": 1, "total": 2,
                                            "fraction": 0.95, "version": 6})
    assert model.shots()[0]["status"] == "outdated"
    model.on_event("shot.changed", {"shot": {"id": "x", "status": "queued", "version": 8}})
    assert model.shots()[0]["status"] == "queued"


def test_add_edit_from_the_file_menu(qtbot, tmp_path, monkeypatch):
    """File > Add edit… (Ctrl+Shift+E): a shot list's rows become rows named after its shots; a bad file is
    an error dialog's text, not a row."""
    window, controller = luma_window(qtbot, tmp_path)
    plate = make_testsrc(tmp_path / "a.mp4", frames=12)
    listing = tmp_path / "shots.csv"
    listing.write_text(f"source,frames,shot\n{plate},2-5,sh010\n{plate},7-11,sh020\n")
    file_menu = window.menuBar().actions()[0].menu()
    assert window.add_edit_action in file_menu.actions()
    assert window.add_edit_action.shortcut().toString() == "Ctrl+Shift+E"
    monkeypatch.setattr("dvd_vfx_ui.main_window.QFileDialog.getOpenFileName", lambda *a, **k: (str(listing), ""))
    window.add_edit_action.trigger()
    assert controller.wait_probed(30)
    assert [(s["shot_name"], s["overrides"]["frames"]) for s in controller.shots()] == [("sh010", "2-5"),
                                                                                       ("sh020", "7-11")]
    errors = []
    monkeypatch.setattr(window, "show_error", errors.append)
    (tmp_path / "cut.aaf").write_text("not an edit we read")
    assert window.add_edit_file(tmp_path / "cut.aaf") == [] and "neither an edit" in errors[-1]
