"""One normalisation per shot in a folder, and what makes two renders byte-identical (thread count).

A partial re-render into a folder that holds another render of the shot must not leave two
normalisations side by side; `--replace` makes the new render the shot's only pass;
`--write-frames` updates frames under the existing pass's own numbers. Predictions depend on
torch's CPU thread count, so `--threads` pins it and the pass header records it.
"""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from dvd_vfx.cli import main
from dvd_vfx.cli_args import render_flags
from dvd_vfx.farm.plan import task_threads
from dvd_vfx.render import RenderOptions
from dvd_vfx.footage.ffmpeg_tools import find_ffmpeg
from dvd_vfx.passes.exr import read_pass_attributes

FAST = ["--resolution", "48", "--window", "5", "--overlap", "2", "--device", "cpu", "--threads", "1"]
EPOCH = "1700000000"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    subprocess.run([find_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24",
                    "-frames:v", "30", "-pix_fmt", "yuv420p", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture
def render(clip, tiny_weights_master, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)

    def run(*argv, out=None):
        with pytest.raises(SystemExit) as exc:
            main(["render", str(clip), "-o", str(out or tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
                  "--weights", str(tiny_weights_master), *FAST, *map(str, argv)])
        captured = capsys.readouterr()
        return exc.value.code, captured.out + captured.err

    return run


def folder_bytes(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_partial_rerender_with_other_numbers_is_refused_and_leaves_the_folder_untouched(render, tmp_path):
    code, out = render()
    assert code == 0, out
    assert "of frames 1-30" in out  # the summary says which frames define the normalisation
    before = folder_bytes(tmp_path / "out")
    assert len(before) == 30
    assert read_pass_attributes(tmp_path / "out" / "clip.depth.0011.exr")["normalisedFrames"] == "1-30"

    code, out = render("--frames", "1-10", "--near", "5", "--far", "50")
    assert code == 2
    assert "frames 11-30 of shot 'clip'" in out and "--write-frames" in out and "--replace" in out
    assert "depth 1..100, normalised over frames 1-30" in out and "depth 5..50, normalised over frames 1-10" in out
    assert folder_bytes(tmp_path / "out") == before  # nothing written, nothing staged left behind

    # identical flags are refused too: 10 frames give other percentiles than the whole shot
    code, out = render("--frames", "1-10")
    assert code == 2 and "frames 11-30" in out
    assert folder_bytes(tmp_path / "out") == before


def test_write_frames_updates_under_the_shots_numbers(render, tmp_path):
    assert render()[0] == 0
    before = folder_bytes(tmp_path / "out")
    (tmp_path / "out" / "clip.depth.0005.exr").unlink()
    code, out = render("--write-frames", "1-10")  # from the cache, the whole shot's numbers
    assert code == 0, out
    assert "hit" in out
    assert folder_bytes(tmp_path / "out") == before


def test_replace_makes_the_new_render_the_shots_only_pass(render, tmp_path):
    assert render()[0] == 0
    (tmp_path / "out" / "other.depth.0001.exr").write_bytes(b"another shot's file stays")
    code, out = render("--frames", "1-10", "--near", "5", "--far", "50", "--replace")
    assert code == 0, out
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"clip.depth.{n:04d}.exr" for n in range(1, 11)] + ["other.depth.0001.exr"]
    attrs = read_pass_attributes(tmp_path / "out" / "clip.depth.0010.exr")
    assert attrs["near"] == 5.0 and attrs["far"] == 50.0 and attrs["normalisedFrames"] == "1-10"


def test_a_frame_without_a_pass_id_counts_as_another_render(render, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "clip.depth.0031.exr").write_bytes(b"not a dvd-vfx pass")
    code, out = render()
    assert code == 2 and "frames 31 of shot 'clip'" in out and "without a pass id" in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["clip.depth.0031.exr"]


def test_a_plain_rerender_replaces_its_own_frames(render, tmp_path):
    assert render()[0] == 0
    code, out = render("--near", "2", "--far", "20")  # every frame is written again: one pass
    assert code == 0, out
    assert read_pass_attributes(tmp_path / "out" / "clip.depth.0030.exr")["far"] == 20.0


def test_thread_count_is_pinned_recorded_and_restored(render, tmp_path):
    before = torch.get_num_threads()
    code, out = render("--frames", "1-9", out=tmp_path / "one")
    assert code == 0, out
    assert torch.get_num_threads() == before  # a host's process keeps its own setting
    attrs = read_pass_attributes(tmp_path / "one" / "clip.depth.0001.exr")
    assert attrs["threads"] == "1"
    manifest = json.loads(next((tmp_path / "cache").glob("*/*/manifest.json")).read_text())
    assert {w["threads"] for w in manifest["windows"].values()} == {1}

    # assembled from the same cached windows, a render with another --threads is byte-identical
    # (no model call: the cache does not key on the thread count, the windows say what made them)
    code, out = render("--frames", "1-9", "--threads", "2", out=tmp_path / "two")
    assert code == 0 and "hit" in out
    assert folder_bytes(tmp_path / "one") == folder_bytes(tmp_path / "two")


def test_threads_must_be_positive(render):
    code, out = render("--threads", "0")
    assert code == 2 and "--threads 0" in out


def test_farm_tasks_share_one_thread_count():
    options = RenderOptions(out_dir=Path("/out"))
    assert task_threads(options, 4.0).threads == 4
    assert task_threads(options, 0.5).threads == 1
    pinned = RenderOptions(out_dir=Path("/out"), threads=3)
    assert task_threads(pinned, 8).threads == 3
    flags = render_flags(task_threads(options, 2))
    assert flags[flags.index("--threads") + 1] == "2"
    assert "--replace" not in flags and "--replace" in render_flags(RenderOptions(out_dir=Path("/o"), replace=True))

