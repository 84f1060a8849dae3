"""EXR depth-pass writer: files read back with OpenImageIO and OpenEXR, atomicity, failures."""

import errno
import json
import os
import re
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import OpenEXR
import OpenImageIO as oiio
import pytest

from dvd_vfx.errors import InputError
from dvd_vfx.passes import exr
from dvd_vfx.passes.exr import DepthPassWriter, exr_attribute, pass_filename, read_pass_attributes

FPS = Fraction(24000, 1001)
FRAMES = (1001, 1002, 1003)
ATTRS = {
    "mode": "depth",
    "near": 0.1,
    "far": 250.0,
    "window": 33,
    "overlap": 8,
    "workingResolution": [832, 480],
    "percentiles": [0.0123456789, 0.987654321],
    "modelId": "dvd-1.1",
    "source": Path("/plates/sh010.mov"),
    "unknown": None,
}


def _depth(frame, h=48, w=64):
    rng = np.random.default_rng(frame)
    d = (rng.standard_normal((h, w)) * 100).astype(np.float32)
    # values a lossy or half-precision path would not keep
    d[0, :4] = [np.float32(1e-40), np.float32(-0.0), np.float32(3.4e38), np.float32(0.1)]
    d[1, 0] = np.nextafter(np.float32(1), np.float32(2))
    return d


def _bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def _writer(out_dir, **kw):
    kw.setdefault("fps", FPS)
    kw.setdefault("attributes", ATTRS)
    return DepthPassWriter(out_dir, "sh010", **kw)


def _oiio_spec(path):
    inp = oiio.ImageInput.open(str(path))
    assert inp, oiio.geterror()
    try:
        spec = inp.spec()
        pixels = inp.read_image(oiio.FLOAT)
        more_parts = inp.seek_subimage(1, 0)
    finally:
        inp.close()
    return spec, pixels, more_parts


# --------------------------------------------------------------------------- names


def test_pass_filename():
    assert pass_filename("sh010", 1001) == "sh010.depth.1001.exr"
    assert pass_filename("sh010", 7) == "sh010.depth.0007.exr"
    assert pass_filename("sh010", 12345) == "sh010.depth.12345.exr"
    assert pass_filename("sh010", -5) == "sh010.depth.-005.exr"  # like C's %04d
    assert pass_filename("sh010", 1, kind="disparity") == "sh010.disparity.0001.exr"


# --------------------------------------------------------------------------- format


@pytest.mark.parametrize("compression", ["zip", "piz"])
def test_pass_reads_back_exactly_in_oiio_and_openexr(tmp_path, compression):
    out = tmp_path / "out"
    depths = {f: _depth(f) for f in FRAMES}
    with _writer(out, compression=compression) as w:
        for f in (1003, 1001, 1002):  # submission order does not matter
            w.submit(f, depths[f], frame_attributes={"sourceFrame": f - 1000})
        paths = w.commit()

    assert paths == [out / f"sh010.depth.{f}.exr" for f in FRAMES]
    assert sorted(os.listdir(out)) == [f"sh010.depth.{f}.exr" for f in FRAMES]  # no staging

    for f, path in zip(FRAMES, paths):
        # --- OpenImageIO (independent reader)
        spec, pixels, more_parts = _oiio_spec(path)
        assert not more_parts  # single part
        assert spec.nchannels == 1 and list(spec.channelnames) == ["depth.Z"]
        assert spec.channelformat(0) == oiio.TypeDesc(oiio.FLOAT)
        assert spec.tile_width == 0  # scanline
        assert spec.getattribute("compression") == compression
        assert spec.getattribute("FramesPerSecond") == (24000, 1001)
        assert spec.getattribute("Copyright") == "dvd-vfx"  # OIIO's name for owner
        assert "DVD depth pass" in spec.getattribute("ImageDescription")  # comments
        assert re.fullmatch(r"\d{4}:\d\d:\d\d \d\d:\d\d:\d\d", spec.getattribute("DateTime"))
        assert spec.getattribute("dvd/mode") == "depth"
        assert spec.getattribute("dvd/near") == 0.1  # double: exact
        assert spec.getattribute("dvd/far") == 250.0
        assert spec.getattribute("dvd/window") == 33
        assert spec.getattribute("dvd/sourceFrame") == f - 1000
        assert spec.getattribute("dvd/source") == "/plates/sh010.mov"
        assert json.loads(spec.getattribute("dvd/percentiles")) == [0.0123456789, 0.987654321]
        assert json.loads(spec.getattribute("dvd/workingResolution")) == [832, 480]
        assert spec.getattribute("dvd/unknown") is None  # None is not written
        assert np.array_equal(_bits(pixels.reshape(48, 64)), _bits(depths[f]))

        # --- OpenEXR binding
        exr_file = OpenEXR.File(str(path), separate_channels=True)
        assert len(exr_file.parts) == 1
        header = exr_file.header()
        assert header["type"] == OpenEXR.scanlineimage
        assert header["compression"] == exr.COMPRESSIONS[compression]
        assert isinstance(header["framesPerSecond"], Fraction)
        assert header["framesPerSecond"] == FPS
        assert header["owner"] == "dvd-vfx"
        assert header["comments"].startswith("DVD depth pass, mode=depth near=0.1 far=250")
        assert re.fullmatch(r"\d{4}:\d\d:\d\d \d\d:\d\d:\d\d", header["capDate"])
        assert header["pixelAspectRatio"] == 1.0
        lo, hi = header["dataWindow"]
        assert lo.tolist() == [0, 0] and hi.tolist() == [63, 47]
        channels = exr_file.channels()
        assert list(channels) == ["depth.Z"]
        assert channels["depth.Z"].type() == OpenEXR.FLOAT
        assert np.array_equal(_bits(channels["depth.Z"].pixels), _bits(depths[f]))

        attrs = read_pass_attributes(path)
        assert attrs["near"] == 0.1 and attrs["mode"] == "depth"
        assert attrs["percentiles"] == [0.0123456789, 0.987654321]
        assert attrs["sourceFrame"] == f - 1000


def test_preview_channels_are_half_rgb(tmp_path):
    rgb = np.random.default_rng(1).random((48, 64, 3), dtype=np.float32)
    with _writer(tmp_path / "out", preview=True) as w:
        w.submit(1001, _depth(1001), preview_rgb=rgb)
        (path,) = w.commit()
    spec, pixels, _ = _oiio_spec(path)
    names = list(spec.channelnames)
    assert sorted(names) == ["B", "G", "R", "depth.Z"]
    for i, name in enumerate(names):
        expected = oiio.FLOAT if name == "depth.Z" else oiio.HALF
        assert spec.channelformat(i) == oiio.TypeDesc(expected)
    channels = OpenEXR.File(str(path), separate_channels=True).channels()
    for i, name in enumerate("RGB"):
        assert channels[name].type() == OpenEXR.HALF
        assert np.array_equal(channels[name].pixels, rgb[:, :, i].astype(np.float16))
    assert np.array_equal(_bits(channels["depth.Z"].pixels), _bits(_depth(1001)))

    with _writer(tmp_path / "out2", preview=True) as w:
        with pytest.raises(ValueError, match="preview_rgb"):
            w.submit(1001, _depth(1001))


def test_windows_pixel_aspect_and_fps_float(tmp_path):
    with _writer(
        tmp_path / "out",
        fps=23.976,
        pixel_aspect=2.0,
        display_window=(0, 0, 99, 79),
        data_window=(10, 5, 73, 52),
        compression="zips",
    ) as w:
        w.submit(1, _depth(1))
        with pytest.raises(ValueError, match="data window"):
            w.submit(2, _depth(2, h=80, w=100))
        (path,) = w.commit()
    assert path.name == "sh010.depth.0001.exr"
    spec, pixels, _ = _oiio_spec(path)
    assert (spec.x, spec.y, spec.width, spec.height) == (10, 5, 64, 48)
    assert (spec.full_x, spec.full_y, spec.full_width, spec.full_height) == (0, 0, 100, 80)
    assert spec.getattribute("PixelAspectRatio") == 2.0
    assert spec.getattribute("FramesPerSecond") == (24000, 1001)
    assert spec.getattribute("compression") == "zips"
    assert np.array_equal(_bits(pixels.reshape(48, 64)), _bits(_depth(1)))


def test_attribute_type_mapping():
    assert exr_attribute("x") == "x"
    assert exr_attribute(True) == 1
    assert exr_attribute(np.int64(7)) == 7
    assert exr_attribute(2**40) == "1099511627776"
    d = exr_attribute(0.1)
    assert d.dtype == np.float64 and d.tolist() == [0.1]
    assert exr_attribute(Fraction(1, 3)) == Fraction(1, 3)
    assert exr_attribute([1.5, float("nan"), {"a": np.float32(2)}]) == '[1.5,null,{"a":2.0}]'
    assert exr_attribute(np.array([[1, 2]])) == "[[1,2]]"
    assert exr_attribute(Path("/a/b")) == "/a/b"
    assert exr_attribute(None) is None


# --------------------------------------------------------------------------- rejected input


@pytest.mark.parametrize("name", ["dwaa", "DWAB", "b44", "b44a", "pxr24"])
def test_lossy_compression_rejected(tmp_path, name):
    with pytest.raises(InputError, match="lossless only"):
        _writer(tmp_path / "out", compression=name)
    assert not (tmp_path / "out").exists()


def test_unknown_compression_fps_and_shot_rejected(tmp_path):
    with pytest.raises(InputError, match="unknown EXR compression"):
        _writer(tmp_path / "out", compression="zstd-ish")
    with pytest.raises(InputError, match="frame rate"):
        _writer(tmp_path / "out", fps=0)
    with pytest.raises(InputError, match="shot name"):
        DepthPassWriter(tmp_path / "out", "../evil", fps=FPS, attributes={})
    assert os.listdir(tmp_path) == []


def test_unwritable_out_dir_rejected_up_front(tmp_path):
    # Tests run as root, so chmod cannot make a folder unwritable: use a path under a file.
    plate = tmp_path / "plate.txt"
    plate.write_text("not a folder")
    for out in (plate / "sub", plate / "sub" / "deeper", plate):
        with pytest.raises(InputError) as info:
            _writer(out)
        message = str(info.value)
        assert str(out) in message and "\n" not in message
        assert "folder" in message
    assert os.listdir(tmp_path) == ["plate.txt"]
    assert plate.read_text() == "not a folder"


# --------------------------------------------------------------------------- failures


def _failing_on_call(monkeypatch, n, exc):
    real = exr._write_exr
    calls = []
    lock = threading.Lock()

    def fake(path, header, channels):
        with lock:
            calls.append(path)
            k = len(calls)
        if k == n:
            Path(path).write_bytes(b"partial")  # a half-written temp file
            raise exc
        real(path, header, channels)

    monkeypatch.setattr(exr, "_write_exr", fake)
    return calls


def test_disk_full_leaves_nothing_and_removes_created_folder(tmp_path, monkeypatch):
    _failing_on_call(monkeypatch, 2, OSError(errno.ENOSPC, "No space left on device"))
    out = tmp_path / "renders" / "sh010"
    with pytest.raises(InputError) as info:
        with _writer(out) as w:
            for f in (1001, 1002, 1003, 1004):
                w.submit(f, _depth(f))
            w.commit()
    message = str(info.value)
    assert "No space left on device" in message and "free space" in message
    assert re.search(re.escape(str(out)) + r"/sh010\.depth\.100\d\.exr", message)
    assert info.value.exit_code == 2
    assert os.listdir(tmp_path) == []  # both created folders removed again


def test_disk_full_keeps_existing_folder_contents(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "sh010.depth.1001.exr").write_bytes(b"previous render")
    _failing_on_call(monkeypatch, 2, OSError(errno.ENOSPC, "No space left on device"))
    w = _writer(out, workers=1)
    with pytest.raises(InputError, match="No space left"):
        for f in FRAMES:
            w.submit(f, _depth(f))
        w.commit()
    assert sorted(os.listdir(out)) == ["notes.txt", "sh010.depth.1001.exr"]
    assert (out / "sh010.depth.1001.exr").read_bytes() == b"previous render"
    with pytest.raises(InputError, match="No space left"):  # the writer stays failed
        w.commit()


def test_library_error_becomes_input_error(tmp_path, monkeypatch):
    _failing_on_call(monkeypatch, 1, RuntimeError('Failed to write pixel data to "x".\nDisk'))
    out = tmp_path / "out"
    with pytest.raises(InputError, match="Failed to write pixel data") as info:
        with _writer(out) as w:
            w.submit(1001, _depth(1001))
            w.commit()
    assert "\n" not in str(info.value)
    assert not out.exists()


def test_abort_leaves_nothing(tmp_path):
    out = tmp_path / "new"
    w = _writer(out)
    for f in FRAMES:
        w.submit(f, _depth(f))
    assert out.is_dir()
    w.abort()
    w.abort()  # idempotent
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="aborted"):
        w.submit(1004, _depth(1004))

    existing = tmp_path / "existing"
    existing.mkdir()
    w = _writer(existing)
    w.submit(1001, _depth(1001))
    w.abort()
    assert existing.is_dir() and os.listdir(existing) == []


def test_context_manager_publishes_only_on_explicit_commit(tmp_path):
    out = tmp_path / "out"
    with _writer(out) as w:  # clean exit without commit: discarded
        w.submit(1001, _depth(1001))
    assert not out.exists()

    with pytest.raises(KeyError):
        with _writer(out) as w:
            w.submit(1001, _depth(1001))
            raise KeyError("cancelled")
    assert not out.exists()

    with _writer(out) as w:
        w.submit(1001, _depth(1001))
        first = w.commit()
        assert w.commit() == first  # idempotent
    assert os.listdir(out) == ["sh010.depth.1001.exr"]


def test_commit_replaces_previous_render_and_rejects_duplicates(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sh010.depth.1001.exr").write_bytes(b"old")
    with _writer(out) as w:
        w.submit(1001, _depth(1001))
        with pytest.raises(ValueError, match="already submitted"):
            w.submit(1001, _depth(1001))
        (path,) = w.commit()
    assert os.listdir(out) == ["sh010.depth.1001.exr"]
    pixels = OpenEXR.File(str(path), separate_channels=True).channels()["depth.Z"].pixels
    assert np.array_equal(_bits(pixels), _bits(_depth(1001)))


def test_submit_copies_the_array(tmp_path):
    d = _depth(1001)
    expected = d.copy()
    with _writer(tmp_path / "out") as w:
        w.submit(1001, d)
        d[:] = 0  # the caller reuses its buffer
        (path,) = w.commit()
    pixels = OpenEXR.File(str(path), separate_channels=True).channels()["depth.Z"].pixels
    assert np.array_equal(_bits(pixels), _bits(expected))


def test_submit_blocks_when_max_pending_frames_are_queued(tmp_path, monkeypatch):
    real = exr._write_exr
    gate = threading.Event()
    started = []

    def slow(path, header, channels):
        started.append(path)
        assert gate.wait(10)
        real(path, header, channels)

    monkeypatch.setattr(exr, "_write_exr", slow)
    w = _writer(tmp_path / "out", workers=1, max_pending=2)
    try:
        t0 = time.monotonic()
        w.submit(1001, _depth(1001))  # being written (blocked)
        w.submit(1002, _depth(1002))  # queued
        assert time.monotonic() - t0 < 2  # did not block

        third = threading.Thread(target=w.submit, args=(1003, _depth(1003)))
        third.start()
        third.join(0.3)
        assert third.is_alive(), "submit must block while max_pending frames are pending"
        assert len(started) == 1

        gate.set()
        third.join(10)
        assert not third.is_alive()
        paths = w.commit()
    finally:
        gate.set()
        w.abort()
    assert [p.name for p in paths] == [f"sh010.depth.{f}.exr" for f in FRAMES]


def test_failed_commit_restores_the_previous_render(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sh010.depth.1001.exr").write_bytes(b"old 1001")
    (out / "sh010.depth.1002.exr").write_bytes(b"old 1002")
    w = _writer(out)
    for f in FRAMES:
        w.submit(f, _depth(f))
    _failing_publish(monkeypatch, out, out / "sh010.depth.1003.exr", restore_fails=False)
    with pytest.raises(InputError, match=r"sh010\.depth\.1003\.exr: Input/output error"):
        w.commit()
    monkeypatch.undo()
    assert sorted(os.listdir(out)) == ["sh010.depth.1001.exr", "sh010.depth.1002.exr"]
    assert (out / "sh010.depth.1001.exr").read_bytes() == b"old 1001"
    assert (out / "sh010.depth.1002.exr").read_bytes() == b"old 1002"


def _failing_publish(monkeypatch, out, fail_dst, restore_fails=True):
    """os.replace that fails for `fail_dst` and, with restore_fails, for every move out of `.replaced`."""
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst) == fail_dst or (restore_fails and Path(src).parent.name == ".replaced"):
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(exr.os, "replace", replace)


def test_failed_restore_keeps_the_previous_render_and_names_where(tmp_path, monkeypatch):
    """A publish fails, then putting the previous render's frames back fails too: their only copies
    (the staging folder's .replaced) are kept, also through abort and cleanup, and the error names them."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "sh010.depth.1001.exr").write_bytes(b"old 1001")
    (out / "sh010.depth.1002.exr").write_bytes(b"old 1002")
    w = _writer(out)
    for f in FRAMES:
        w.submit(f, _depth(f))
    kept = w.staging_dir / ".replaced"
    _failing_publish(monkeypatch, out, out / "sh010.depth.1003.exr")
    with pytest.raises(InputError) as exc_info:
        w.commit()
    monkeypatch.undo()
    message = str(exc_info.value)
    assert len(message.splitlines()) == 1
    assert "sh010.depth.1003.exr: Input/output error" in message
    assert (f"the previous render's sh010.depth.1001.exr, sh010.depth.1002.exr could not be put back: the only "
            f"copies are in {kept}; move them back into {out}") in message
    w.abort()
    del w
    import gc

    gc.collect()  # the writer's finalizer: it must not remove them either
    assert (kept / "sh010.depth.1001.exr").read_bytes() == b"old 1001"
    assert (kept / "sh010.depth.1002.exr").read_bytes() == b"old 1002"
    assert sorted(p.name for p in kept.parent.iterdir()) == [".replaced"]  # the new frames went
    assert sorted(os.listdir(out)) == [kept.parent.name]  # nothing of the failed render in out


def test_farm_commit_keeps_unrestored_frames_and_names_them(tmp_path, monkeypatch):
    from dvd_vfx.farm import ray_runner

    out = tmp_path / "out"
    staging = out / ".dvd-vfx-ray-sh010-run"
    staging.mkdir(parents=True)
    (out / "sh010.depth.1001.exr").write_bytes(b"old 1001")
    for f in FRAMES:
        (staging / pass_filename("sh010", f)).write_bytes(b"new")
    _failing_publish(monkeypatch, out, out / "sh010.depth.1002.exr")
    with pytest.raises(InputError, match=rf"the only copies are in {re.escape(str(staging / '.replaced'))}; "
                                         rf"move them back into {re.escape(str(out))}"):
        ray_runner._commit(staging, out)
    monkeypatch.undo()
    exr.discard_staging(staging)  # what the farm does with a failed shot's staging folder
    assert (staging / ".replaced" / "sh010.depth.1001.exr").read_bytes() == b"old 1001"
    assert sorted(p.name for p in staging.iterdir()) == [".replaced"]


def test_restored_backups_leave_no_staging_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sh010.depth.1001.exr").write_bytes(b"old 1001")
    w = _writer(out)
    for f in FRAMES:
        w.submit(f, _depth(f))
    _failing_publish(monkeypatch, out, out / "sh010.depth.1003.exr", restore_fails=False)
    with pytest.raises(InputError) as exc_info:
        w.commit()
    monkeypatch.undo()
    assert "could not be put back" not in str(exc_info.value)
    assert sorted(os.listdir(out)) == ["sh010.depth.1001.exr"]
