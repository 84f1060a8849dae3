"""The PyQt6 panel end to end (pytest-qt, offscreen): a batch of three shots with the tiny DVD model,
cancel + resume, a corrupt shot that fails in its row without stopping the others, event-loop
latency while rendering, and a screenshot of a finished batch with its preview."""

from __future__ import annotations

import os
import shutil
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
from dvd_vfx_ui.main_window import LogDialog, MainWindow  # noqa: E402
from dvd_vfx_ui.queue_model import STATUS  # noqa: E402
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

    assert finished == [{"done": 3, "failed": 0, "cancelled": 0}]
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
    assert status_texts(window) == ["done"] * 3
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
    if os.environ.get("DVD_VFX_UPDATE_DOCS"):  # refresh the README's screenshot
        shutil.copy(shot, Path(__file__).resolve().parent.parent / "docs" / "panel.png")


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
    window.start_action.trigger()  # Start resumes cancelled shots
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
