"""Per-shot cache: resume after SIGKILL bit-identically, instant re-exports, invalidation, corruption,
concurrent renders, eviction."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dvd_vfx.cache import ShotCache
from dvd_vfx.cli import main
from dvd_vfx.render import RenderOptions, render_shot
from dvd_vfx.footage.ffmpeg_tools import find_ffmpeg
from dvd_vfx.model.predictor import DVDPredictor

SLOW = ["--resolution", "96", "--window", "9", "--overlap", "4", "--device", "cpu"]


def make_clip(path, frames=25, size="128x96", pattern="testsrc2"):
    subprocess.run([find_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", f"{pattern}=size={size}:rate=24",
                    "-frames:v", str(frames), "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def cli_cmd(source, out, cache, weights, *extra):
    return [sys.executable, "-m", "dvd_vfx.cli", "render", str(source), "-o", str(out), "--cache-dir", str(cache),
            "--weights", str(weights), "--threads", "1", *SLOW, *map(str, extra)]


ENV = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}


def exr_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.exr"))}


class CountingPredictor:
    def __init__(self, inner):
        self.inner, self.calls, self.name = inner, 0, inner.name

    def identity(self):
        return self.inner.identity()

    def predict(self, frames):
        self.calls += 1
        return self.inner.predict(frames)


def windows_in_manifest(cache):
    for m in Path(cache).glob("*/*/manifest.json"):
        try:
            return len(json.loads(m.read_text())["windows"])
        except (OSError, ValueError, KeyError):
            return 0
    return 0


def test_sigkill_after_first_window_resumes_bit_identically(tiny_weights_master, tmp_path):
    clip = make_clip(tmp_path / "shot.mp4")
    clean = subprocess.run(cli_cmd(clip, tmp_path / "clean", tmp_path / "cache_clean", tiny_weights_master),
                           env=ENV, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    proc = subprocess.Popen(cli_cmd(clip, tmp_path / "killed", tmp_path / "cache", tiny_weights_master), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while windows_in_manifest(tmp_path / "cache") < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = windows_in_manifest(tmp_path / "cache")
    assert 1 <= done_before < 5  # killed mid-shot
    assert not (tmp_path / "killed").exists() or not list((tmp_path / "killed").glob("*.exr"))
    resumed = subprocess.run(cli_cmd(clip, tmp_path / "killed", tmp_path / "cache", tiny_weights_master),
                             env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "partial hit" in resumed.stdout
    a, b = exr_bytes(tmp_path / "clean"), exr_bytes(tmp_path / "killed")
    assert len(a) == 25 and a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a)  # byte for byte


def test_reexport_with_other_near_far_runs_no_predictor(tiny_weights_master, tmp_path):
    clip = make_clip(tmp_path / "shot.mp4", frames=12, size="64x48")
    cache = ShotCache(tmp_path / "cache")
    predictor = CountingPredictor(DVDPredictor(str(tiny_weights_master), device="cpu"))
    common = dict(resolution=48, window=5, overlap=2)
    first = render_shot(clip, RenderOptions(out_dir=tmp_path / "d", mode="disparity", **common), predictor,
                        cache=cache)
    assert first.cache == "miss" and predictor.calls == first.windows
    predictor.calls = 0
    t0 = time.perf_counter()
    again = render_shot(clip, RenderOptions(out_dir=tmp_path / "z", mode="depth", near=3, far=70, **common),
                        predictor, cache=cache)
    assert again.cache == "hit" and predictor.calls == 0 and again.cache_key == first.cache_key
    assert again.percentiles == first.percentiles
    import OpenImageIO as oiio

    for pd, pz in zip(first.paths, again.paths):
        d = oiio.ImageBuf(str(pd)).get_pixels(oiio.FLOAT)[..., 0]
        z = oiio.ImageBuf(str(pz)).get_pixels(oiio.FLOAT)[..., 0]
        np.testing.assert_allclose(z, 1 / (d * (1 / 3 - 1 / 70) + 1 / 70), rtol=1e-5)


def test_new_content_under_the_same_name_invalidates(tiny_weights_master, tmp_path):
    clip = make_clip(tmp_path / "shot.mp4", frames=6, size="64x48")
    cache = ShotCache(tmp_path / "cache")
    predictor = CountingPredictor(DVDPredictor(str(tiny_weights_master), device="cpu"))
    opts = dict(resolution=48, window=5, overlap=2)
    first = render_shot(clip, RenderOptions(out_dir=tmp_path / "a", **opts), predictor, cache=cache)
    stat = clip.stat()
    make_clip(clip, frames=6, size="64x48", pattern="smptebars")  # re-exported plate, same name
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime
    second = render_shot(clip, RenderOptions(out_dir=tmp_path / "b", **opts), predictor, cache=cache)
    assert second.cache == "miss" and second.cache_key != first.cache_key


def test_truncated_cache_window_is_detected_and_recomputed(tiny_weights_master, tmp_path, caplog):
    clip = make_clip(tmp_path / "shot.mp4", frames=12, size="64x48")
    cache = ShotCache(tmp_path / "cache")
    predictor = CountingPredictor(DVDPredictor(str(tiny_weights_master), device="cpu"))
    opts = dict(resolution=48, window=5, overlap=2, mode="disparity")
    first = render_shot(clip, RenderOptions(out_dir=tmp_path / "a", **opts), predictor, cache=cache)
    window = sorted(cache.folder(first.cache_key).glob("window.*.npy"))[1]
    window.write_bytes(window.read_bytes()[:100])
    predictor.calls = 0
    with caplog.at_level("WARNING", logger="dvd_vfx.cache"):
        second = render_shot(clip, RenderOptions(out_dir=tmp_path / "b", **opts), predictor, cache=cache)
    assert predictor.calls == 1 and second.cache == "partial"
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    for pa, pb in zip(first.paths, second.paths):
        assert np.array_equal(np.fromfile(pa, np.uint8)[-4096:], np.fromfile(pb, np.uint8)[-4096:])


def test_two_concurrent_renders_of_one_shot(tiny_weights_master, tmp_path):
    clip = make_clip(tmp_path / "shot.mp4", frames=13)
    procs = [subprocess.Popen(cli_cmd(clip, tmp_path / f"out{i}", tmp_path / "cache", tiny_weights_master),
                              env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1] for r in results]
    a, b = exr_bytes(tmp_path / "out0"), exr_bytes(tmp_path / "out1")
    assert len(a) == 13 and a == b
    assert sorted("hit" in r[0] for r in results) == [False, True]  # the second waited, then reused


def test_eviction_keeps_the_cache_under_its_cap(tiny_weights_master, tmp_path):
    predictor = DVDPredictor(str(tiny_weights_master), device="cpu")
    cache = ShotCache(tmp_path / "cache", max_gb=60e3 / 1e9)  # 60 kB: about two small shots
    keys = []
    for i in range(4):
        clip = make_clip(tmp_path / f"shot{i}.mp4", frames=5, size="64x48")
        keys.append(render_shot(clip, RenderOptions(out_dir=tmp_path / f"o{i}", resolution=48, window=5, overlap=2),
                                predictor, cache=cache).cache_key)
        time.sleep(0.01)
    entries = cache.entries()
    assert sum(e.size for e in entries) <= cache.max_bytes
    assert keys[-1] in {e.key for e in entries} and keys[0] not in {e.key for e in entries}  # LRU first


def test_unwritable_cache_degrades_to_no_cache(tiny_weights_master, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    clip = make_clip(tmp_path / "shot.mp4", frames=5, size="64x48")
    with caplog.at_level("WARNING", logger="dvd_vfx.cache"):
        result = render_shot(clip, RenderOptions(out_dir=tmp_path / "o", resolution=48, window=5, overlap=2),
                             DVDPredictor(str(tiny_weights_master), device="cpu"), cache=ShotCache(blocker / "c"))
    assert result.cache == "off" and len(result.paths) == 5
    assert any("not writable" in r.getMessage() and str(blocker) in r.getMessage() for r in caplog.records)


def test_cache_cli_ls_info_clear(tiny_weights_master, tmp_path, capsys):
    clip = make_clip(tmp_path / "shot.mp4", frames=5, size="64x48")
    cache_dir = tmp_path / "cache"
    with pytest.raises(SystemExit) as exc:
        main(["render", str(clip), "-o", str(tmp_path / "o"), "--cache-dir", str(cache_dir), "--weights",
              str(tiny_weights_master), "--resolution", "48", "--window", "5", "--overlap", "2", "--shot", "sh010"])
    assert exc.value.code == 0 and "cache       miss" in capsys.readouterr().out

    def run(*argv):
        with pytest.raises(SystemExit) as e:
            main(["cache", *argv, "--cache-dir", str(cache_dir)])
        return e.value.code, capsys.readouterr().out

    code, out = run("ls")
    assert code == 0 and "sh010" in out and "complete" in out and "1-5" in out
    code, out = run("info", str(clip))
    assert code == 0 and "windows    1/1 (complete)" in out
    code, out = run("clear", "--shot", "other")
    assert "removed 0 entries" in out
    code, out = run("clear", "--older-than", "7d")
    assert "removed 0 entries" in out
    code, out = run("clear")
    assert "removed 1 entry" in out and not ShotCache(cache_dir).entries()


def test_sequence_fingerprint_is_the_same_in_every_process(tmp_path):
    """The sampled files were iterated as a set: their order (and the key) changed with the hash seed."""
    for n in (1, 2, 3):
        (tmp_path / f"f.{n:04d}.png").write_bytes(bytes([n]) * 1000)
    code = ("import sys, types; from dvd_vfx.cache import source_fingerprint; "
            "info = types.SimpleNamespace(kind='sequence', path=sys.argv[1], frame_numbers=[1, 2, 3], frame_file=lambda n: sys.argv[1] % n); "
            "print(source_fingerprint(info, [1, 2, 3])['content_sha256'])")
    digests = {subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.%04d.png")], capture_output=True,
                              text=True, check=True, env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout
               for seed in range(6)}
    assert len(digests) == 1, digests


def test_split_render_matches_a_single_render(tiny_weights_master, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    clip = make_clip(tmp_path / "shot.mp4", frames=13, size="64x48")
    common = ["--weights", str(tiny_weights_master), "--resolution", "48", "--window", "5", "--overlap", "2",
              "--device", "cpu"]

    def render(*argv):
        with pytest.raises(SystemExit) as exc:
            main(["render", str(clip), *common, *map(str, argv)])
        captured = capsys.readouterr()
        return exc.value.code, captured.out + captured.err

    assert render("-o", tmp_path / "single", "--cache-dir", tmp_path / "c1")[0] == 0
    split = ["--cache-dir", str(tmp_path / "c2")]
    code, out = render("-o", tmp_path / "split", *split, "--assemble")
    assert code == 2 and "windows 0-3 of 4 are not in the cache" in out and not (tmp_path / "split").exists()
    code, out = render("-o", tmp_path / "split", *split, "--only-windows", "0-1")
    assert code == 0 and "2 predicted" in out and not (tmp_path / "split").exists()
    code, out = render("-o", tmp_path / "split", *split, "--assemble")
    assert code == 2 and "windows 2-3 of 4" in out
    assert render("-o", tmp_path / "split", *split, "--only-windows", "2-3")[0] == 0
    assert render("-o", tmp_path / "split", *split, "--assemble", "--write-frames", "8-13")[0] == 0
    assert sorted(p.name for p in (tmp_path / "split").glob("*.exr")) == [f"shot.depth.{n:04d}.exr" for n in range(8, 14)]
    assert render("-o", tmp_path / "split", *split, "--assemble", "--write-frames", "1-7")[0] == 0
    single, parts = exr_bytes(tmp_path / "single"), exr_bytes(tmp_path / "split")
    assert len(single) == 13 and single == parts  # pixels and headers, byte for byte
