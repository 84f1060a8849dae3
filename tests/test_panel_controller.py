"""The panel's Qt-free core: no Qt import, queue/sources/output patterns, overrides, settings, queue files,
pause, preview images. Renders use the luma plugin predictor (instant); test_panel.py drives the window."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from footage_helpers import make_testsrc, write_exr_sequence as write_sequence
from plugin_helpers import LUMA_PLUGIN, write_plugin
from dvd_vfx.errors import InputError
from dvd_vfx.progress import progress_fraction
from dvd_vfx_ui import preview, shots
from dvd_vfx_ui.controller import BatchController
from dvd_vfx_ui.settings import Settings, default_settings_path

FAST = {"resolution": 48, "window": 5, "overlap": 2}


def movie(path: Path, frames: int = 5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_testsrc(path, frames=frames)


@pytest.fixture
def luma_controller(tmp_path):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "luma", LUMA_PLUGIN)
    settings = Settings(cache_dir=str(tmp_path / "cache"), plugins_dir=str(plugins))
    c = BatchController(settings=settings, settings_path=tmp_path / "panel.json")
    c.set_batch_defaults(predictor="luma", **FAST)
    yield c
    c.shutdown()


def test_controller_and_core_modules_import_no_qt():
    code = ("import sys, dvd_vfx_ui, dvd_vfx_ui.controller, dvd_vfx_ui.shots, dvd_vfx_ui.settings, "
            "dvd_vfx_ui.preview, dvd_vfx_ui.events\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PyQt6', 'PyQt5', 'PySide6', 'PySide2', 'sip'))\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_sources_expand_to_one_row_per_shot_and_skip_depth_passes(tmp_path):
    plate = movie(tmp_path / "shots" / "sh010.mp4")
    write_sequence(tmp_path / "shots" / "sh020", name="sh020_plate")
    write_sequence(tmp_path / "shots" / "sh020" / "depth", name="sh020_plate.depth", count=2)
    (tmp_path / "shots" / "notes.txt").write_text("hi")
    found, skipped = shots.expand_sources([tmp_path / "shots"])
    assert found == [str(plate), str(tmp_path / "shots" / "sh020" / "sh020_plate.####.exr")]
    assert any("depth pass" in s for s in skipped) and any("notes.txt" in s for s in skipped)
    # one frame of a sequence adds the whole sequence
    found, _ = shots.expand_sources([tmp_path / "shots" / "sh020" / "sh020_plate.1003.exr"])
    assert found == [str(tmp_path / "shots" / "sh020" / "sh020_plate.####.exr")]


def test_rows_show_sequences_with_their_frame_range_and_default_output(luma_controller, tmp_path):
    c = luma_controller
    pattern = write_sequence(tmp_path / "sh030", name="sh030")
    [shot_id] = c.add_sources([pattern.parent], probe_async=False)
    row = c.shot(shot_id)
    assert row["label"] == "sh030.####.exr [1001-1006]"
    assert (row["info"]["width"], row["info"]["height"], row["info"]["frame_count"]) == (40, 24, 6)
    assert row["status"] == "queued"
    assert row["out_dir"] == str(tmp_path / "sh030" / "depth" / "sh030")
    c.set_batch_defaults(output_pattern="{source_dir}/../renders/{preset}/{shot}")
    assert c.shot(shot_id)["out_dir"] == str(tmp_path / "renders" / "standard" / "sh030")
    with pytest.raises(InputError, match=r"\{sequence\}"):
        c.set_batch_defaults(output_pattern="{sequence}/{shot}")


def test_per_shot_overrides_win_over_batch_and_preset(luma_controller, tmp_path):
    c = luma_controller
    a, b = c.add_sources([make_testsrc(tmp_path / "a.mp4", frames=5), make_testsrc(tmp_path / "b.mp4", frames=5)],
                         probe_async=False)
    c.set_batch_defaults(preset="final", near=2.0, far=50.0)
    c.set_overrides([b], near=0.5, far=10.0, mode="disparity", output=str(tmp_path / "elsewhere"), shot="bee")
    va, vb = c.shot(a)["values"], c.shot(b)["values"]
    assert (va["near"], va["far"], va["mode"]) == (2.0, 50.0, "depth")
    assert (vb["near"], vb["far"], vb["mode"]) == (0.5, 10.0, "disparity")
    assert c.shot(a)["preset"] == c.shot(b)["preset"] == "final"
    assert c.shot(b)["out_dir"] == str(tmp_path / "elsewhere") and c.shot(b)["shot_name"] == "bee"
    with pytest.raises(InputError, match="near"):
        c.set_overrides([a], near=5.0, far=1.0)
    with pytest.raises(InputError, match="cannot override 'colour'"):
        c.set_overrides([a], colour="red")
    c.clear_overrides([b])
    assert c.shot(b)["overrides"] == {} and c.shot(b)["values"]["near"] == 2.0


def test_queue_saves_and_loads_as_json(luma_controller, tmp_path):
    c = luma_controller
    ids = c.add_sources([make_testsrc(tmp_path / "a.mp4", frames=5), write_sequence(tmp_path / "seq")],
                        probe_async=False)
    c.set_batch_defaults(preset="preview", output_pattern="/renders/{shot}")
    c.set_overrides(ids[1:], near=3.0, far=30.0)
    path = c.save_queue(tmp_path / "batch.json")
    data = json.loads(path.read_text())
    assert data["schema"] == shots.QUEUE_SCHEMA and data["preset"] == "preview"
    assert [s["source"] for s in data["shots"]] == [str(tmp_path / "a.mp4"), str(tmp_path / "seq" / "plate.####.exr")]

    other = BatchController(settings=Settings(plugins_dir=c.settings.plugins_dir), settings_path=tmp_path / "o.json")
    other.load_queue(path, probe_async=False)
    rows = other.shots()
    assert [r["source"] for r in rows] == [s["source"] for s in data["shots"]]
    assert rows[1]["overrides"] == {"near": 3.0, "far": 30.0}
    assert other.preset == "preview" and other.defaults == c.defaults and other.output_pattern == "/renders/{shot}"
    assert all(r["status"] == "queued" and r["info"] for r in rows)
    (tmp_path / "bad.json").write_text('{"schema": "something else"}')
    with pytest.raises(InputError, match="not a dvd-vfx panel queue"):
        other.load_queue(tmp_path / "bad.json")


def test_settings_persist_in_the_user_config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert default_settings_path() == tmp_path / "config" / "dvd-vfx" / "panel.json"
    c = BatchController()
    (tmp_path / "w").mkdir()
    c.update_settings(engine_python=sys.executable, weights=str(tmp_path / "w"), cache_dir=str(tmp_path / "c"),
                      last_add_folder="/plates")
    c.set_batch_defaults(mode="depth", near=2.5, far=80.0, start_frame=1001, hold_missing=True)
    again = Settings.load()
    assert (again.engine_python, again.weights, again.cache_dir, again.last_add_folder) == \
        (sys.executable, str(tmp_path / "w"), str(tmp_path / "c"), "/plates")
    # the batch values come back at the next launch
    assert BatchController().defaults == {"mode": "depth", "near": 2.5, "far": 80.0, "start_frame": 1001,
                                          "hold_missing": True}


def test_wrong_paths_are_refused_when_entered(tmp_path):
    """A mistyped plugins folder, a missing engine Python or an unwritable output folder: refused as they are
    entered, naming the path, and the settings stay as they were."""
    c = BatchController(settings=Settings(), settings_path=tmp_path / "panel.json")
    with pytest.raises(InputError, match=r"plugins folder .*/plugns does not exist"):
        c.update_settings(plugins_dir=str(tmp_path / "plugns"))
    with pytest.raises(InputError, match=r"engine Python .*/nope/python: no such executable"):
        c.update_settings(engine_python=str(tmp_path / "nope" / "python"))
    broken = tmp_path / "python-without-dvd"
    broken.write_text("#!/bin/sh\nexec /usr/bin/env python3 -c 'import dvd_vfx_not_here' \"$@\"\n")
    broken.chmod(0o755)
    with pytest.raises(InputError, match="cannot import dvd_vfx"):
        c.update_settings(engine_python=str(broken))
    assert c.settings.plugins_dir == "" and c.settings.engine_python == ""
    # an output folder that cannot be made: under a file (any user), or read-only (not as root)
    blocker = tmp_path / "renders"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(InputError, match=r"output folder .*renders/out: .*renders is a file"):
        c.set_batch_defaults(output_pattern=str(blocker / "out"))
    [shot_id] = c.add_sources([make_testsrc(tmp_path / "a.mp4", frames=5)], probe_async=False)
    with pytest.raises(InputError, match="is a file, not a folder"):
        c.set_overrides([shot_id], output=str(blocker / "x"))
    # a pattern with fields resolves per shot: the row says so before Start, and Start skips it
    c.set_batch_defaults(output_pattern=str(blocker) + "/{shot}")
    row = c.shot(shot_id)
    assert row["status"] == "failed" and "is a file" in row["error"] and str(blocker) in row["error"]
    assert not c.start()
    c.set_batch_defaults(output_pattern=str(tmp_path / "out" / "{shot}"))
    assert c.shot(shot_id)["status"] == "queued" and c.shot(shot_id)["error"] == ""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root may write anywhere
            with pytest.raises(InputError, match=r"output folder .*locked/out.*not writable"):
                c.set_batch_defaults(output_pattern=str(locked / "out"))
    finally:
        locked.chmod(0o700)


def test_pause_after_current_shot_leaves_the_rest_queued(luma_controller, tmp_path, monkeypatch):
    monkeypatch.setenv("DVD_TEST_PREDICT_SLEEP", "0.2")
    c = luma_controller
    a, b = c.add_sources([make_testsrc(tmp_path / "a.mp4", frames=9), make_testsrc(tmp_path / "b.mp4", frames=9)],
                         probe_async=False)
    states = []
    c.events.subscribe("batch.state.changed", lambda topic, p: states.append(p["state"]))
    assert c.start()
    c.pause_after_current()
    assert c.wait(60)
    assert [c.shot(a)["status"], c.shot(b)["status"]] == ["done", "queued"]
    assert states == ["running", "pausing", "idle"]
    assert c.start() and c.wait(60)
    assert c.shot(b)["status"] == "done"


def test_rows_know_the_pass_on_disk_and_rerender_what_changed_from_the_cache(luma_controller, tmp_path):
    """Tweak and re-export: a finished row whose near/far (per shot or batch-wide) no longer match its pass on
    disk is marked outdated with what differs; Re-render writes the pass again from the cached windows."""
    from dvd_vfx.passes.exr import read_pass_attributes

    c = luma_controller
    plate = make_testsrc(tmp_path / "a.mp4", frames=5)
    [shot_id] = c.add_sources([plate], probe_async=False)
    assert c.start() and c.wait(60) and c.shot(shot_id)["status"] == "done"
    first = tmp_path / "depth" / "a" / "a.depth.0001.exr"
    assert read_pass_attributes(first)["near"] == 1.0
    # a new row (say, next day) for the same plate finds its pass on disk: done, with its pattern
    c.remove([shot_id])
    [shot_id] = c.add_sources([plate], probe_async=False)
    row = c.shot(shot_id)
    assert row["status"] == "done" and row["pattern"] == str(tmp_path / "depth" / "a" / "a.depth.####.exr")
    assert (row["on_disk"]["first"], row["on_disk"]["last"], row["on_disk"]["count"]) == (1, 5, 5)

    c.set_overrides([shot_id], near=2.0, far=40.0)
    row = c.shot(shot_id)
    assert row["status"] == "outdated" and row["differences"] == ["near 1 \u2192 2", "far 100 \u2192 40"]
    c.set_overrides([shot_id], near=None, far=None)  # back to what is on disk
    assert c.shot(shot_id)["status"] == "done"
    c.set_batch_defaults(near=3.0, far=30.0)  # batch-wide: the same
    assert c.shot(shot_id)["status"] == "outdated"
    before = first.stat().st_mtime_ns
    assert c.rerender() == [shot_id] and c.wait(60)
    row = c.shot(shot_id)
    assert row["status"] == "done" and row["cache"] == "hit", row["log"]  # no model run
    attributes = read_pass_attributes(first)
    assert (attributes["near"], attributes["far"]) == (3.0, 30.0) and first.stat().st_mtime_ns != before
    assert c.batch_counts()["from_cache"] == 1

    # another output folder: nothing there yet, every window in the cache
    c.set_batch_defaults(output_pattern=str(tmp_path / "elsewhere" / "{shot}"))
    assert c.shot(shot_id)["status"] == "cached"
    c.set_batch_defaults(window=9)  # other windows: the cache does not hold them
    assert c.shot(shot_id)["status"] == "queued"


def test_preview_images_colour_map_and_depth(luma_controller, tmp_path):
    c = luma_controller
    [shot_id] = c.add_sources([make_testsrc(tmp_path / "a.mp4", frames=5)], probe_async=False)
    assert c.start() and c.wait(60)
    result = preview.load_preview(c.shot(shot_id), 3)
    assert result["plate"].shape == (48, 64, 3) and result["depth"].shape == (48, 64)
    assert result["mode"] == "depth" and (result["near"], result["far"]) == (1.0, 100.0)
    assert result["depth_rgb"].dtype == np.uint8 and result["depth_rgb"].shape == (48, 64, 3)
    legend = preview.legend_bar(64, 4)
    assert legend[0, 0, 2] > legend[0, 0, 0] and legend[0, -1, 0] > legend[0, -1, 2]  # far blue, near red
    unit = preview.depth_to_unit(np.array([1.0, 10.0, 100.0]), "depth", 1.0, 100.0)
    assert np.allclose(unit[[0, 2]], [1.0, 0.0]) and 0 < unit[1] < 1


def test_engine_python_renders_out_of_process_with_the_same_events(tmp_path):
    """Settings.engine_python set: each shot is `dvd-vfx render --json-progress` in that Python."""
    engine_python = tmp_path / "engine-python"
    engine_python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    engine_python.chmod(0o755)
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "luma", LUMA_PLUGIN)
    c = BatchController(settings=Settings(engine_python=str(engine_python), cache_dir=str(tmp_path / "cache"),
                                          plugins_dir=str(plugins)), settings_path=tmp_path / "panel.json")
    c.set_batch_defaults(predictor="luma", output_pattern=str(tmp_path / "out" / "{shot}"), **FAST)
    [shot_id] = c.add_sources([movie(tmp_path / "a.mp4")], probe_async=False)
    progress = []
    c.events.subscribe("job.progress.changed", lambda t, p: progress.append(p))
    assert c.start() and c.wait(120)
    row = c.shot(shot_id)
    assert row["status"] == "done", row["log"]
    assert row["pattern"] == str(tmp_path / "out" / "a" / "a.depth.####.exr")
    assert {"predict", "write"} <= {p["stage"] for p in progress}
    # the row's bar is the one every host shows (dvd_vfx.progress.progress_fraction)
    assert all(p["fraction"] == progress_fraction(p["stage"], p["done"], p["total"]) for p in progress)
    assert len(list((tmp_path / "out" / "a").glob("a.depth.*.exr"))) == 5


def test_start_while_probing_renders_the_rows_once_probed(luma_controller, tmp_path):
    c = luma_controller
    ids = c.add_sources([make_testsrc(tmp_path / "a.mp4", frames=5), make_testsrc(tmp_path / "b.mp4", frames=5)])
    assert c.start()  # right after adding: the rows are still being probed
    assert c.wait(60)
    assert [c.shot(i)["status"] for i in ids] == ["done", "done"]


def test_add_edit_makes_one_row_per_clip_with_its_frames_and_name(luma_controller, tmp_path):
    """Add edit: an OTIO cut with two clips of one movie and a clip past the movie's end: two rows (their
    source frames plus handles, the clip names), the third reported; the batch renders them with those."""
    otio = pytest.importorskip("opentimelineio")
    c = luma_controller
    plate = movie(tmp_path / "media" / "a.mp4", frames=24)  # frames 1-24 at 24000/1001
    messages = []
    c.events.subscribe("message", lambda topic, p: messages.append(p))

    def clip(name, start, count):
        rate = 24000 / 1001
        return otio.schema.Clip(name=name, source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(start, rate), otio.opentime.RationalTime(count, rate)),
            media_reference=otio.schema.ExternalReference(target_url=plate.as_uri()))

    timeline = otio.schema.Timeline(name="cut")
    track = otio.schema.Track(name="V1")
    timeline.tracks.append(track)
    for item in (clip("sh010", 4, 5), clip("sh020", 14, 4), clip("sh030", 30, 4)):
        track.append(item)
    otio.adapters.write_to_file(timeline, str(tmp_path / "cut.otio"))
    ids = c.add_edit(tmp_path / "cut.otio", handles=1, probe_async=False)
    rows = [c.shot(i) for i in ids]
    assert [(r["overrides"]["shot"], r["overrides"]["frames"]) for r in rows] == [("sh010", "4-10"),
                                                                                  ("sh020", "14-19")]
    assert any("sh030" in str(m) for m in messages)
    assert c.add_edit(tmp_path / "cut.otio", handles=1, probe_async=False) == []  # the same clips again
    assert c.start() and c.wait(60)
    for r in rows:
        done = c.shot(r["id"])
        first, last = map(int, r["overrides"]["frames"].split("-"))
        names = sorted(p.name for p in Path(done["out_dir"]).glob("*.exr"))
        assert done["status"] == "done" and names == [f"{r['overrides']['shot']}.depth.{n:04d}.exr"
                                                       for n in range(first, last + 1)]


def test_frame_ranges_read_as_the_cli_reads_them():
    """A frames value in the panel (batch value, shot override, queue file, an edit's clip) takes what
    `dvd-vfx render --frames` takes: one frame, A:B, negative frame numbers; it is stored as A-B."""
    assert shots.validate_options({"frames": "1001:1003"}, "shot override") == {"frames": "1001-1003"}
    assert shots.validate_options({"frames": "12"}, "shot override") == {"frames": "12-12"}
    assert shots.validate_options({"frames": "-2-3"}, "shot override") == {"frames": "-2-3"}
    assert shots.parse_frames("-5--3") == (-5, -3)
    with pytest.raises(InputError, match=r"shot override: frames: frame range '10-5' is empty"):
        shots.validate_options({"frames": "10-5"}, "shot override")
    with pytest.raises(InputError, match=r"queue\.json: frames: frame range 'ten' is not understood"):
        shots.parse_frames("ten", "queue.json: frames")


def test_add_edit_reads_an_edl_at_its_frame_rate(luma_controller, tmp_path):
    """A CMX 3600 EDL's timecodes carry no rate: the same cut read at 25 fps (Add edit asks) starts on
    another frame than at the default 24."""
    pytest.importorskip("opentimelineio")
    c = luma_controller
    plate = movie(tmp_path / "media" / "a.mp4", frames=40)
    edl = tmp_path / "cut.edl"
    edl.write_text("TITLE: cut\nFCM: NON-DROP FRAME\n\n"
                   "001  AX       V     C        00:00:01:00 00:00:01:05 01:00:00:00 01:00:00:05\n"
                   f"* FROM CLIP NAME: sh010\n* FROM CLIP: {plate.as_uri()}\n")
    [at24] = c.add_edit(edl, probe_async=False)
    assert c.shot(at24)["overrides"]["frames"] == "25-29"  # 00:00:01:00 at 24 fps = frame 24 (0-based)
    c.clear()
    [at25] = c.add_edit(edl, rate=25, probe_async=False)
    assert c.shot(at25)["overrides"]["frames"] == "26-30"  # at 25 fps = frame 25
