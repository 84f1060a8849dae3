"""`dvd-vfx batch`: shots from an edit (OTIO, CMX 3600 EDL, FCP 7 XML through OpenTimelineIO's
adapters) and from shot lists (CSV, JSON, the panel's saved queue), rendered one after another with
the brightness predictor and tiny windows (seconds per shot)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from footage_helpers import write_exr_sequence
from plugin_helpers import FAST, LUMA_PLUGIN, make_plate, write_plugin

otio = pytest.importorskip("opentimelineio")


def run_cli(capsys, tmp_path, *argv):
    from dvd_vfx.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--plugins-dir", str(tmp_path / "plugins"), *map(str, argv)])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def passes(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def frames_of(folder: Path, shot: str) -> list[int]:
    return [int(name.split(".")[-2]) for name in passes(folder) if name.startswith(f"{shot}.depth.")]


@pytest.fixture
def media(tmp_path):
    write_plugin(tmp_path / "plugins", "luma", LUMA_PLUGIN)
    a = make_plate(tmp_path / "media" / "a.mov", 24)  # frames 1-24
    b = make_plate(tmp_path / "media" / "b.mov", 16)  # frames 1-16
    c = write_exr_sequence(tmp_path / "media" / "c", name="c", first=1001, count=12, size=(32, 24))  # 1001-1012
    return {"a": a, "b": b, "c": c, "missing": tmp_path / "media" / "gone.mov"}


def _range(start, count, rate=24):
    return otio.opentime.TimeRange(otio.opentime.RationalTime(start, rate), otio.opentime.RationalTime(count, rate))


def write_timeline(path: Path, media) -> Path:
    """sh010: a.mov source frames 5-12 (0-based 4..11); a gap; sh020: a file that is not there;
    sh030: the EXR sequence's 3rd-8th frames (1003-1008); sh040: b.mov from its first frame."""
    tl = otio.schema.Timeline(name="cut")
    track = otio.schema.Track(name="V1")
    tl.tracks.append(track)
    track.append(otio.schema.Clip(
        name="sh010", source_range=_range(4, 8),
        media_reference=otio.schema.ExternalReference(target_url="media/a.mov", available_range=_range(0, 24))))
    track.append(otio.schema.Gap(source_range=_range(0, 5)))
    track.append(otio.schema.Clip(
        name="sh020", source_range=_range(0, 8),
        media_reference=otio.schema.ExternalReference(target_url=media["missing"].as_uri())))
    seq = otio.schema.ImageSequenceReference(
        target_url_base=media["c"].parent.as_uri() + "/", name_prefix="c.", name_suffix=".exr", start_frame=1001,
        frame_zero_padding=4, rate=24, available_range=_range(0, 12))
    track.append(otio.schema.Clip(name="sh030", media_reference=seq, source_range=_range(2, 6)))
    track.append(otio.schema.Clip(
        name="sh040", source_range=_range(0, 6),
        media_reference=otio.schema.ExternalReference(target_url=media["b"].as_uri(), available_range=_range(0, 16))))
    otio.adapters.write_to_file(tl, str(path))
    return path


def test_otio_edit_renders_every_clip_with_handles_and_goes_past_missing_media(tmp_path, media, capsys, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    edit = write_timeline(tmp_path / "cut.otio", media)
    out = tmp_path / "renders"
    cache = tmp_path / "cache"
    code, stdout, err = run_cli(capsys, tmp_path, "batch", edit, "-o", f"{out}/{{shot}}", "--handles", "2",
                                "--predictor", "luma", *FAST, "--cache-dir", cache)
    assert code == 2, err  # the missing media is an input error; the others rendered
    lines = stdout.splitlines()
    # one progress line per shot, in the edit's order
    progress = [line for line in lines if line.startswith("[")]
    assert [line.split(":")[0] for line in progress] == ["[1/4] sh010", "[2/4] sh020", "[3/4] sh030", "[4/4] sh040"]
    assert "done 3-14" in progress[0]  # a.mov frames 5-12 plus 2 handles each side
    assert "failed" in progress[1] and str(media["missing"]) in progress[1] and "not found" in progress[1]
    assert "done 1001-1010" in progress[2]  # 1003-1008 plus handles
    assert "done 1-8" in progress[3] and "handles clamped" in progress[3]  # no frame before b.mov's first
    assert lines[-1] == "4 shots: 3 done, 0 cached, 1 failed"
    table = "\n".join(lines[lines.index("") + 1:])
    assert "sh020  failed" in table and "sh030  done" in table
    assert "1 of 4 shots failed; first: sh020: footage not found" in err
    assert frames_of(out / "sh010", "sh010") == list(range(3, 15))
    assert frames_of(out / "sh030", "sh030") == list(range(1001, 1011))
    assert frames_of(out / "sh040", "sh040") == list(range(1, 9))
    assert not (out / "sh020").exists()
    # a shot is exactly a render of the clip's range: same files, byte for byte
    code, _, err = run_cli(capsys, tmp_path, "render", media["a"], "-o", tmp_path / "single", "--shot", "sh010",
                           "--frames", "3-14", "--predictor", "luma", *FAST, "--cache-dir", cache)
    assert code == 0, err
    for name in passes(out / "sh010"):
        assert (out / "sh010" / name).read_bytes() == (tmp_path / "single" / name).read_bytes()
    # again: every shot's windows come from the cache
    (tmp_path / "media" / "gone.mov").write_bytes(media["b"].read_bytes())
    code, stdout, _ = run_cli(capsys, tmp_path, "batch", edit, "-o", f"{out}/{{shot}}", "--handles", "2",
                              "--predictor", "luma", *FAST, "--cache-dir", cache)
    assert code == 0
    assert stdout.splitlines()[-1] == "4 shots: 1 done, 3 cached, 0 failed"


def test_plan_prints_the_shot_list_and_renders_nothing(tmp_path, media, capsys):
    edit = write_timeline(tmp_path / "cut.otio", media)
    code, stdout, err = run_cli(capsys, tmp_path, "batch", edit, "-o", tmp_path / "out" / "{shot}", "--handles", "3",
                                "--plan")
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0] == f"{edit}: 4 shots"
    assert lines[1].split() == ["#", "shot", "frames", "handles", "source", "output"]
    row = {line.split()[1]: line for line in lines[2:]}
    assert row["sh010"].split()[2:4] == ["2-15", "(14)"]
    assert str(media["a"]) in row["sh010"] and str(tmp_path / "out" / "sh010") in row["sh010"]
    assert "WILL FAIL: footage not found" in row["sh020"]
    assert row["sh030"].split()[2] == "1001-1011" and str(media["c"].parent / "c.%04d.exr") in row["sh030"]
    assert "handles clamped to the media: 1001-1011 instead of 1000-1011" in row["sh030"]
    assert row["sh040"].split()[2] == "1-9"
    assert not (tmp_path / "out").exists()
    # the same list for a queue (the panel's "Add edit"): plain rows with frames, or the reason
    from dvd_vfx.batch import load_shots, resolved

    rows = resolved(load_shots(edit, handles=3))
    assert [(s.shot, s.frames) for s in rows] == [("sh010", (2, 15)), ("sh020", None), ("sh030", (1001, 1011)),
                                                  ("sh040", (1, 9))]
    assert rows[1].error.startswith("clip 2 of track V1 (sh020): footage not found")
    assert rows[0].source == str(media["a"]) and all(s.media_range is None for s in rows if s.frames)


EDL = """TITLE: reel_cut
FCM: NON-DROP FRAME

001  AX       V     C        00:00:00:04 00:00:00:12 01:00:00:00 01:00:00:08
* FROM CLIP NAME: sh010
* FROM CLIP: {a}

002  AX       V     C        00:00:00:00 00:00:00:06 01:00:00:08 01:00:00:14
* FROM CLIP NAME: sh020
* FROM CLIP: {b}

003  AX       V     C        00:00:00:10 00:00:00:14 01:00:00:14 01:00:00:18
* FROM CLIP NAME: sh030
* FROM CLIP: {b}
"""


def test_edl_through_the_cmx_3600_adapter(tmp_path, media, capsys):
    edit = tmp_path / "reel.edl"
    edit.write_text(EDL.format(a=media["a"].as_uri(), b=media["b"].as_uri()))
    code, stdout, err = run_cli(capsys, tmp_path, "batch", edit, "-o", tmp_path / "out", "--handles", "1",
                                "--predictor", "luma", *FAST, "--no-cache")
    assert code == 0, err
    assert stdout.splitlines()[-1] == "3 shots: 3 done, 0 cached, 0 failed"
    out = tmp_path / "out"  # no {shot}: one folder, the shots apart by name
    assert frames_of(out, "sh010") == list(range(4, 14))  # source TC 4-12 (exclusive) = frames 5-12, +-1
    assert frames_of(out, "sh020") == list(range(1, 8))  # handle before frame 1 clamped
    assert frames_of(out, "sh030") == list(range(10, 16))  # frames 11-14, +-1


def test_fcp_xml_through_the_fcp_adapter(tmp_path, media, capsys):
    timeline = otio.adapters.read_from_file(str(write_timeline(tmp_path / "cut.otio", media)))
    for clip in timeline.find_clips():  # FCP XML holds file URLs of movies
        if isinstance(clip.media_reference, otio.schema.ImageSequenceReference):
            clip.media_reference = otio.schema.ExternalReference(target_url=media["b"].as_uri(),
                                                                 available_range=_range(0, 16))
        elif not clip.media_reference.target_url.startswith("file:"):
            clip.media_reference.target_url = media["a"].as_uri()
        clip.media_reference.available_range = clip.media_reference.available_range or _range(0, 24)
    edit = tmp_path / "cut.xml"
    otio.adapters.write_to_file(timeline, str(edit), adapter_name="fcp_xml")
    code, stdout, err = run_cli(capsys, tmp_path, "batch", edit, "-o", tmp_path / "out" / "{shot}", "--plan")
    assert code == 0, err
    row = {line.split()[1]: line for line in stdout.splitlines()[2:]}
    assert list(row) == ["sh010", "sh020", "sh030", "sh040"]
    assert row["sh010"].split()[2] == "5-12" and row["sh030"].split()[2] == "3-8"
    assert "WILL FAIL" in row["sh020"]


def test_shot_list_csv_with_overrides_per_row(tmp_path, media, capsys):
    from dvd_vfx.passes.exr import read_pass_attributes

    shots = tmp_path / "shots.csv"
    shots.write_text(
        "# shot list for the depth pass\n"
        "source,frames,shot,resolution,mode\n"
        f"{media['a']},3-9,hero,32,disparity\n"
        f"{media['b']},5-10,,,\n")
    code, stdout, err = run_cli(capsys, tmp_path, "batch", shots, "-o", tmp_path / "out" / "{shot}",
                                "--predictor", "luma", *FAST, "--no-cache")
    assert code == 0, err
    assert "[1/2] hero: done 3-9" in stdout and "[2/2] b: done 5-10" in stdout
    hero = read_pass_attributes(tmp_path / "out" / "hero" / "hero.depth.0003.exr")
    assert hero["mode"] == "disparity" and hero["workingSize"] == "48x32"  # the row's values
    plain = read_pass_attributes(tmp_path / "out" / "b" / "b.depth.0005.exr")
    assert plain["mode"] == "depth" and plain["workingSize"] == "64x48"  # the command line's
    assert frames_of(tmp_path / "out" / "b", "b") == list(range(5, 11))


def test_panel_queue_json_renders_with_its_own_output_pattern(tmp_path, media, capsys):
    from dvd_vfx_ui.shots import Shot, queue_to_json

    queue = tmp_path / "queue.json"
    queue.write_text(queue_to_json(
        [Shot(source=str(media["c"]), overrides={"shot": "plate", "window": 9, "overlap": 4}),
         Shot(source=str(media["b"]), overrides={"output": str(tmp_path / "elsewhere")})],
        preset="preview", defaults={"resolution": 48}, output_pattern=str(tmp_path / "q") + "/{shot}_{preset}/"))
    code, stdout, err = run_cli(capsys, tmp_path, "batch", queue, "--predictor", "luma", "--no-cache")
    assert code == 0, err
    assert frames_of(tmp_path / "q" / "plate_preview", "plate") == list(range(1001, 1013))
    assert frames_of(tmp_path / "elsewhere", "b") == list(range(1, 17))
    from dvd_vfx.passes.exr import read_pass_attributes

    attrs = read_pass_attributes(tmp_path / "q" / "plate_preview" / "plate.depth.1001.exr")
    assert (attrs["window"], attrs["overlap"], attrs["workingSize"]) == (9, 4, "48x32")  # row, row, queue default
    attrs = read_pass_attributes(tmp_path / "elsewhere" / "b.depth.0001.exr")
    assert (attrs["window"], attrs["overlap"], attrs["workingSize"]) == (33, 8, "64x48")  # the queue's preset


def test_panel_queue_render_options_reach_the_render(tmp_path, media, capsys):
    """The panel's queue also carries render options (start frame, colourspace, hold missing, anchors):
    `dvd-vfx batch` renders the shot with them, as the panel would."""
    from dvd_vfx_ui.shots import Shot, queue_to_json

    anchors = tmp_path / "b.anchors.csv"
    anchors.write_text("frame,x,y,depth\n1001,10.5,10.5,4\n1005,30.5,20.5,9\n1010,50.5,40.5,20\n")
    queue = tmp_path / "queue.json"
    queue.write_text(queue_to_json(
        [Shot(source=str(media["b"]), overrides={"hold_missing": True, "colorspace": "display"})],
        preset="preview", defaults={"resolution": 48, "start_frame": 1001, "window": 9, "overlap": 4},
        output_pattern=str(tmp_path / "q") + "/{shot}/"))
    code, _, err = run_cli(capsys, tmp_path, "batch", queue, "--predictor", "luma", "--no-cache", "--plan")
    assert code == 0, err
    code, _, err = run_cli(capsys, tmp_path, "batch", queue, "--predictor", "luma", "--no-cache")
    assert code == 0, err
    assert frames_of(tmp_path / "q" / "b", "b") == list(range(1001, 1017))  # the queue's start frame
    from dvd_vfx.batch import load_shots

    (shot,) = load_shots(queue)
    assert shot.overrides["hold_missing"] is True and shot.overrides["start_frame"] == 1001
    queue.write_text(queue_to_json([Shot(source=str(media["b"]), overrides={"anchors": str(anchors)})],
                                   preset="preview", defaults={"start_frame": "1001", "colorspace": "raw"},
                                   output_pattern=""))
    code, _, err = run_cli(capsys, tmp_path, "batch", queue, "-o", tmp_path / "o", "--plan")
    assert code == 2 and "colorspace 'raw' is not one of auto, display, linear" in err
    queue.write_text(queue_to_json([Shot(source=str(media["b"]), overrides={"anchors": str(anchors)})],
                                   preset="preview", defaults={"start_frame": "1001", "resolution": 48,
                                                               "window": 9, "overlap": 4}, output_pattern=""))
    code, _, err = run_cli(capsys, tmp_path, "batch", queue, "-o", tmp_path / "anch", "--predictor", "luma",
                           "--no-cache")
    # the row's anchors reached the fit (made-up distances do not fit the brightness predictor: exit 2, named)
    assert code == 2 and f"b: --anchors {anchors}: the fit" in err and not list(tmp_path.glob("anch/**/*.exr"))


def test_shot_list_json_rows_and_errors(tmp_path, media, capsys):
    from dvd_vfx.batch import load_shots

    rows = tmp_path / "shots.json"
    rows.write_text(json.dumps({"shots": [{"source": str(media["a"]), "frames": "10-12", "shot": "sh 010"},
                                          {"source": str(media["a"]), "frames": "1-4", "shot": "sh 010"}]}))
    shots = load_shots(rows, handles=2)
    assert [(s.shot, s.frames) for s in shots] == [("sh_010", (8, 14)), ("sh_010_2", (-1, 6))]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"source,frames,resolutoin\n{media['a']},1-4,32\n")
    code, _, err = run_cli(capsys, tmp_path, "batch", bad, "-o", tmp_path / "out", "--plan")
    assert code == 2 and "bad.csv: row 2" in err and "'resolutoin'" in err and err.count("\n") == 1
    bad.write_text(f"source,frames\n{media['a']},12-4\n")
    code, _, err = run_cli(capsys, tmp_path, "batch", bad, "-o", tmp_path / "out")
    assert code == 2 and "row 2" in err and "12-4" in err
    code, _, err = run_cli(capsys, tmp_path, "batch", tmp_path / "cut.aaf", "-o", tmp_path / "out")
    assert code == 2 and "cut.aaf does not exist" in err
    (tmp_path / "cut.txt").write_text("x")
    code, _, err = run_cli(capsys, tmp_path, "batch", tmp_path / "cut.txt", "-o", tmp_path / "out")
    assert code == 2 and "neither an edit" in err
    code, _, err = run_cli(capsys, tmp_path, "batch", rows)
    assert code == 2 and "-o OUT_PATTERN is needed" in err
    (tmp_path / "cut.edl").write_text(EDL.format(a=media["a"].as_uri(), b=media["b"].as_uri()))
    code, _, err = run_cli(capsys, tmp_path, "batch", tmp_path / "cut.edl", "-o", tmp_path / "out", "--edit-rate", "fast")
    assert code == 2 and "--edit-rate 'fast'" in err
    code, _, err = run_cli(capsys, tmp_path, "batch", rows, "-o", tmp_path / "out" / "{take}", "--plan")
    assert code == 0  # the plan marks the shots that will fail
    code, _, err = run_cli(capsys, tmp_path, "batch", rows, "-o", tmp_path / "out", "--frames", "1-4")
    assert code == 2 and "per clip or row" in err


def test_farm_openjd_gives_each_batch_row_its_own_model_settings(tmp_path, media, capsys):
    """A row's preset or model columns reach its OpenJD tasks, as `dvd-vfx batch` and `farm ray --batch` use
    them (the template used to give every row the command's model settings); a row the farm refuses is named."""
    import yaml

    shots = tmp_path / "shots.csv"
    shots.write_text(f"source,shot,dtype\n{media['a']},hero,fp32\n{media['c']},plain,\n")
    job = tmp_path / "job.yaml"
    code, _, err = run_cli(capsys, tmp_path, "farm", "openjd", "--batch", shots, "--output-dir", tmp_path / "{shot}",
                           "--cache-dir", tmp_path / "cache", "--predictor", "luma", *FAST, "--dtype", "bf16", "-o", job)
    assert code == 0, err
    steps = {s["name"]: s["script"]["actions"]["onRun"]["args"] for s in yaml.safe_load(job.read_text())["steps"]}
    for name, dtype in (("hero windows", "fp32"), ("hero assemble", "fp32"), ("plain windows", "bf16"),
                        ("plain assemble", "bf16")):
        args = steps[name]
        assert args[args.index("--dtype") + 1] == dtype, name
        assert args[args.index("--predictor") + 1] == "luma" and args[args.index("--device") + 1] == "cpu"
    shots.write_text(f"source,shot,device\n{media['a']},hero,cuda\n")
    code, _, err = run_cli(capsys, tmp_path, "farm", "openjd", "--batch", shots, "--output-dir", tmp_path / "{shot}",
                           "--cache-dir", tmp_path / "cache", "--predictor", "luma", *FAST, "-o", tmp_path / "job2.yaml")
    assert code == 2 and "shot hero: --device cuda needs --gpus-per-task" in err
    assert not (tmp_path / "job2.yaml").exists()


def test_farm_openjd_takes_the_batch_shots(tmp_path, media, capsys, monkeypatch):
    """`farm openjd --batch` plans the same shots (own output folder, frames with handles, row values);
    `openjd run` of the job writes what `dvd-vfx batch` writes."""
    import shutil
    import subprocess
    import sys

    import yaml

    from dvd_vfx.passes.exr import read_pass_attributes

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    shots = tmp_path / "shots.csv"
    shots.write_text(f"source,frames,shot,window\n{media['a']},3-9,hero,9\n{media['c']},1003-1008,,\n")
    flags = ["--predictor", "luma", *FAST, "--device", "cpu", "--threads", "1"]
    job = tmp_path / "job.yaml"
    code, out, err = run_cli(capsys, tmp_path, "farm", "openjd", "--batch", shots, "--handles", "1",
                             "--output-dir", tmp_path / "farm" / "{shot}", "--cache-dir", tmp_path / "c1", *flags,
                             "-o", job)
    assert code == 0, err
    template = yaml.safe_load(job.read_text())
    assert [s["name"] for s in template["steps"]] == ["hero windows", "hero assemble", "c windows", "c assemble"]
    values = yaml.safe_load((tmp_path / "job.params.yaml").read_text())
    assert values["Shot1Output"] == str(tmp_path / "farm" / "hero") and values["Shot2Output"] == str(tmp_path / "farm" / "c")
    assert "OutputDir" not in values
    args = template["steps"][1]["script"]["actions"]["onRun"]["args"]
    assert args[args.index("--frames") + 1] == "2-10" and args[args.index("--window") + 1] == "9"
    assert args[args.index("-o") + 1] == "{{Param.Shot1Output}}" and args[args.index("--shot") + 1] == "hero"
    openjd = shutil.which("openjd") or str(Path(sys.executable).with_name("openjd"))
    proc = subprocess.run([openjd, "run", str(job), "-p", f"file://{tmp_path / 'job.params.yaml'}"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # in a process of its own, as the tasks are (dvd/threads records torch's count only where torch is loaded)
    local = subprocess.run([sys.executable, "-m", "dvd_vfx.cli", "--plugins-dir", str(tmp_path / "plugins"), "batch",
                            str(shots), "--handles", "1", "-o", str(tmp_path / "local" / "{shot}"), "--cache-dir",
                            str(tmp_path / "c2"), *flags], capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr
    for shot, numbers in (("hero", range(2, 11)), ("c", range(1002, 1010))):
        assert frames_of(tmp_path / "farm" / shot, shot) == list(numbers)
        for name in passes(tmp_path / "local" / shot):
            farm, local = tmp_path / "farm" / shot / name, tmp_path / "local" / shot / name
            fa, lo = read_pass_attributes(farm), read_pass_attributes(local)
            assert farm.read_bytes() == local.read_bytes(), {k: (fa.get(k), lo.get(k)) for k in set(fa) | set(lo) if fa.get(k) != lo.get(k)}
    # a shot that cannot be planned stops the submission, naming it
    edit = write_timeline(tmp_path / "cut.otio", media)
    code, _, err = run_cli(capsys, tmp_path, "farm", "openjd", "--batch", edit, "--output-dir", tmp_path / "x",
                           *flags, "-o", tmp_path / "job2.yaml")
    assert code == 2 and "clip 2 of track V1 (sh020)" in err and "footage not found" in err
    assert not (tmp_path / "job2.yaml").exists()
    code, _, err = run_cli(capsys, tmp_path, "farm", "openjd", media["a"], "--batch", edit, "--output-dir",
                           tmp_path / "x", "-o", tmp_path / "job2.yaml")
    assert code == 2 and "drop the SOURCEs" in err
    # an EDL's timecode rate reaches the farm's plan as it reaches `dvd-vfx batch`
    (tmp_path / "cut.edl").write_text(EDL.format(a=media["a"].as_uri(), b=media["b"].as_uri()))
    code, _, err = run_cli(capsys, tmp_path, "farm", "openjd", "--batch", tmp_path / "cut.edl", "--edit-rate", "fast",
                           "--output-dir", tmp_path / "x", *flags, "-o", tmp_path / "job3.yaml")
    assert code == 2 and "--edit-rate 'fast'" in err
    assert not (tmp_path / "job3.yaml").exists()
