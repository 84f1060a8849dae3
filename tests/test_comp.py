"""dvd_vfx.comp: thin-lens defocus (layered, no bleed) and fog, the EXR reader and `dvd-vfx comp`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dvd_vfx import comp
from dvd_vfx.errors import InputError
from footage_helpers import write_exr_rgb

W, H = 128, 96
EDGE = 64  # near plane: columns < EDGE; far plane: columns >= EDGE
NEAR, FAR = 1.5, 6.0  # scene units (metres)
BACKENDS = comp.available_backends()


def lens(focal_length=100.0, **kw) -> comp.DefocusSettings:
    return comp.DefocusSettings(focus=NEAR, fstop=1.4, focal_length=focal_length, sensor_width=36.0, **kw)


def thin_lens_radius(s: comp.DefocusSettings, z: float, width: int = W) -> float:
    """Reference: CoC diameter on the sensor A*f/(S-f)*|z-S|/z, A = f/N, as a radius in pixels."""
    f, S = s.focal_length / 1000.0, s.focus * s.unit_scale
    diameter = (f / s.fstop) * f / (S - f) * abs(z * s.unit_scale - S) / (z * s.unit_scale)
    return diameter / (s.sensor_width / 1000.0) * width / 2.0


def two_planes(points: bool = False):
    """Near plane (left, in focus): sharp red texture. Far plane (right): green texture, or
    black with isolated green points for measuring the point spread."""
    rng = np.random.default_rng(7)
    img = np.zeros((H, W, 3), dtype=np.float32)
    img[:, :EDGE, 0] = rng.random((H, EDGE), dtype=np.float32)
    if points:
        img[48, 100, 1] = 1.0
    else:
        img[:, EDGE:, 1] = rng.random((H, W - EDGE), dtype=np.float32)
    depth = np.full((H, W), FAR, dtype=np.float32)
    depth[:, :EDGE] = NEAR
    return img, depth


def spread_radius(plane: np.ndarray) -> float:
    """Radius of a disk with the same second moment: E[r^2] = R^2 / 2."""
    yy, xx = np.mgrid[: plane.shape[0], : plane.shape[1]]
    total = plane.sum()
    cy, cx = (plane * yy).sum() / total, (plane * xx).sum() / total
    return float(np.sqrt(2 * (plane * ((yy - cy) ** 2 + (xx - cx) ** 2)).sum() / total))


# --------------------------------------------------------------------------- defocus


def test_coc_is_the_thin_lens_formula():
    s = lens()
    z = np.array([[0.5, NEAR, 3.0, FAR, 1e9]], dtype=np.float32)
    coc = comp.circle_of_confusion(z, s, width=W)
    want = [-min(thin_lens_radius(s, 0.5), 32), 0.0, thin_lens_radius(s, 3.0),
            thin_lens_radius(s, FAR), thin_lens_radius(s, 1e9)]
    np.testing.assert_allclose(coc[0], want, rtol=1e-5, atol=1e-5)
    assert coc[0, 1] == 0.0  # exactly in focus
    rel = comp.circle_of_confusion(np.array([0.2, 0.5, 0.9], dtype=np.float32),
                                   comp.DefocusSettings(focus=0.5, relative_scale=20.0), mode="disparity")
    np.testing.assert_allclose(rel, [6.0, 0.0, -8.0], atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_in_focus_plane_is_bit_identical(backend):
    img, depth = two_planes()
    out = comp.defocus(img, depth, lens(), backend=backend)
    assert np.array_equal(out[:, :EDGE], img[:, :EDGE])
    assert not np.allclose(out[:, EDGE + 2:], img[:, EDGE + 2:], atol=1e-3)  # the far plane is blurred


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("focal_length", [100.0, 135.0])  # radius ~6.8 px (full res), ~12.7 px (half res)
def test_out_of_focus_blur_radius_matches_thin_lens(backend, focal_length):
    s = lens(focal_length)
    img, depth = two_planes(points=True)
    out = comp.defocus(img, depth, s, backend=backend)
    want = thin_lens_radius(s, FAR)
    assert 5 < want < 14
    got = spread_radius(out[:, :, 1])
    assert abs(got - want) < 1.0, (got, want)
    assert out[:, :, 1].sum() == pytest.approx(1.0, abs=1e-4)  # energy kept


@pytest.mark.parametrize("backend", BACKENDS)
def test_sharp_foreground_does_not_bleed_onto_blurred_background(backend):
    img, depth = two_planes()
    out = comp.defocus(img, depth, lens(135.0), backend=backend)
    # red exists only on the near plane; one pixel of tolerance across the depth edge
    assert out[:, EDGE + 1:, 0].max() <= 1e-6
    # and the background is not darkened next to the edge (holes are filled, not black)
    assert out[:, EDGE + 1:EDGE + 4, 1].mean() == pytest.approx(img[:, EDGE:, 1].mean(), abs=0.05)


def test_blurred_foreground_spreads_over_sharp_background():
    img, depth = two_planes()
    s = comp.DefocusSettings(focus=FAR, fstop=1.4, focal_length=100.0, sensor_width=36.0)
    out = comp.defocus(img, depth, s, backend="numpy")
    radius = thin_lens_radius(s, NEAR)
    assert out[:, EDGE + 2, 0].mean() > 0.05  # the near plane's colour reaches over the edge
    far_away = EDGE + int(np.ceil(radius)) + 2
    assert np.array_equal(out[:, far_away:], img[:, far_away:])  # beyond its reach: untouched


@pytest.mark.skipif("torch" not in BACKENDS, reason="torch is not installed")
def test_numpy_and_torch_agree():
    img, depth = two_planes()
    depth[:, EDGE:] = np.linspace(2.0, 40.0, W - EDGE, dtype=np.float32)  # a ramp through many layers
    s = lens(135.0, blades=6, blade_rotation=15.0)
    a = comp.defocus(img, depth, s, backend="numpy")
    b = comp.defocus(img, depth, s, backend="torch")
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_bands_give_the_same_result_as_one_tile():
    img, depth = two_planes()
    depth[:, EDGE:] = np.linspace(2.0, 40.0, W - EDGE, dtype=np.float32)[None, :] + np.arange(H)[:, None] * 0.1
    whole = comp.defocus(img, depth, lens(135.0), backend="numpy")
    banded = comp.defocus(img, depth, lens(135.0), backend="numpy", tile_pixels=W * 8)
    np.testing.assert_allclose(banded, whole, atol=1e-5)


def test_display_referred_plates_keep_focused_pixels_exactly():
    img, depth = two_planes()
    out = comp.defocus(img, depth, lens(), transfer="srgb", backend="numpy")
    assert np.array_equal(out[:, :EDGE], img[:, :EDGE])


def test_bokeh_kernels():
    k = comp.bokeh_kernel(5.0)
    assert k.sum() == pytest.approx(1.0) and np.array_equal(k, k[::-1]) and np.array_equal(k, k.T)
    assert spread_radius(k) == pytest.approx(5.0, abs=0.25)
    hexagon = comp.bokeh_kernel(5.0, blades=6)
    assert (hexagon > 0).sum() < (k > 0).sum()
    radii = comp.layer_radii(32)
    assert radii[0] == -32 and radii[-1] == 32 and 0.0 in radii
    assert np.all(np.diff(radii[radii >= 0]) <= np.maximum(1.0, 0.15 * radii[radii >= 0][:-1]) + 1e-9)


def test_wrong_sizes_and_bad_settings_are_input_errors():
    img, depth = two_planes()
    with pytest.raises(InputError, match="depth is 64x48 but the image is 128x96"):
        comp.defocus(img, depth[::2, ::2], lens())
    with pytest.raises(InputError, match="inside the focal length"):
        comp.defocus(img, depth, comp.DefocusSettings(focus=0.01))
    with pytest.raises(InputError, match="disparity in"):
        comp.defocus(img, depth, comp.DefocusSettings(focus=3.0), mode="disparity")


# --------------------------------------------------------------------------- fog


@pytest.mark.parametrize("transfer", ["linear", "srgb"])
def test_fog_identity_at_zero_and_fog_colour_far_away(transfer):
    img, _ = two_planes()
    s = comp.FogSettings(density=0.5, colour=(0.2, 0.4, 0.6))
    assert np.array_equal(comp.fog(img, np.zeros((H, W), np.float32), s, transfer=transfer), img)
    far = comp.fog(img, np.full((H, W), 1e4, np.float32), s, transfer=transfer)
    np.testing.assert_allclose(far, np.broadcast_to([0.2, 0.4, 0.6], far.shape), atol=1e-5)


def test_fog_formula_start_and_disparity():
    img, depth = two_planes()
    s = comp.FogSettings(density=0.3, colour=(1.0, 1.0, 1.0), start=1.0)
    out = comp.fog(img, depth, s)
    t = np.exp(-0.3 * (depth - 1.0))[:, :, None]
    np.testing.assert_allclose(out, img * t + (1 - t), rtol=1e-5, atol=1e-6)
    disparity = np.linspace(0, 1, W, dtype=np.float32)[None, :].repeat(H, 0)
    rel = comp.fog(img, disparity, comp.FogSettings(density=2.0, colour=(0, 0, 0)), mode="disparity")
    np.testing.assert_allclose(rel, img * np.exp(-2.0 * (1 - disparity))[:, :, None], rtol=1e-5, atol=1e-6)
    assert np.array_equal(rel[:, -1], img[:, -1])  # the nearest point: no fog


# --------------------------------------------------------------------------- files and CLI


def make_shot(folder: Path, frames=(1001, 1002), size=(W, H), depth_size=None, mode="depth"):
    """A linear EXR plate (with HDR values) and its depth pass written by DepthPassWriter."""
    from dvd_vfx.passes.exr import DepthPassWriter

    img, depth = two_planes()
    img[10:20, 10:20] = 4.0  # HDR highlight on the near plane
    if size != (W, H):
        img, depth = img[: size[1], : size[0]], depth[: size[1], : size[0]]
    dw, dh = depth_size or size
    plate = folder / "plate"
    plate.mkdir()
    for n in frames:
        write_exr_rgb(plate / f"sh010.{n:04d}.exr", img)
    passes = folder / "passes"
    attrs = {"mode": mode, "near": NEAR, "far": FAR}
    with DepthPassWriter(passes, "sh010", fps=24, attributes=attrs) as writer:
        for n in frames:
            d = np.resize(depth, (dh, dw)) if (dw, dh) != size else depth
            writer.submit(n, d if mode == "depth" else 1.0 / d)
        writer.commit()
    return plate / "sh010.####.exr", passes / "sh010.depth.####.exr", img


def read_rgb(path: Path) -> tuple[np.ndarray, dict]:
    import OpenEXR

    from dvd_vfx.passes.exr import read_pass_attributes

    with OpenEXR.File(str(path), separate_channels=True) as f:
        ch = f.channels()
        assert {"R", "G", "B"} <= set(ch) and ch["R"].pixels.dtype == np.float16
        rgb = np.stack([ch[c].pixels.astype(np.float32) for c in "RGB"], axis=2)
    return rgb, read_pass_attributes(path)


def run_cli(capsys, *argv):
    from dvd_vfx.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["comp", *map(str, argv)])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_depth_reader_finds_depth_z_then_z(tmp_path):
    from dvd_vfx.passes.depth_reader import read_depth
    from footage_helpers import write_exr

    _, pattern, _ = make_shot(tmp_path, frames=(1,))
    depth, attrs = read_depth(comp.frame_path(str(pattern), 1))
    assert depth.shape == (H, W) and depth[0, 0] == NEAR and attrs["mode"] == "depth"
    z = np.full((4, 5), 3.0, np.float32)
    write_exr(tmp_path / "bare.exr", {"Z": z})
    assert np.array_equal(read_depth(tmp_path / "bare.exr")[0], z)
    write_exr(tmp_path / "rgb.exr", {"R": z, "G": z})
    with pytest.raises(InputError, match="no depth channel"):
        read_depth(tmp_path / "rgb.exr")


def test_cli_defocus_end_to_end_on_an_exr_sequence(tmp_path, capsys):
    plate, depth, img = make_shot(tmp_path)
    code, out, err = run_cli(capsys, "defocus", "--plate", plate, "--depth", depth, "-o", tmp_path / "out",
                             "--focus", NEAR, "--fstop", 1.4, "--focal-length", 100, "--backend", "numpy")
    assert code == 0, err
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["sh010.defocus.1001.exr", "sh010.defocus.1002.exr"]
    rgb, header = read_rgb(files[0])
    assert rgb.shape == (H, W, 3)
    # linear plate kept linear (HDR highlight not clipped), in-focus plane untouched up to half
    np.testing.assert_array_equal(rgb[:, :EDGE], img[:, :EDGE].astype(np.float16).astype(np.float32))
    assert rgb.max() == 4.0
    assert header["comp"] == "defocus" and header["colorspace"] == "linear"
    assert header["settings"]["focal_length"] == 100.0
    assert rgb[:, EDGE + 1:, 0].max() == 0.0


def test_cli_fog_writes_png_previews_of_a_disparity_pass(tmp_path, capsys):
    from PIL import Image

    plate, depth, _ = make_shot(tmp_path, frames=(1,), mode="disparity")
    code, _, err = run_cli(capsys, "fog", "--plate", plate, "--depth", depth,
                           "-o", tmp_path / "prev" / "sh010.fog.####.png", "--density", 50, "--colour", "1,0,0")
    assert code == 0, err
    png = np.asarray(Image.open(tmp_path / "prev" / "sh010.fog.0001.png"))
    assert png.shape == (H, W, 3) and png.dtype == np.uint8
    assert tuple(png[0, -1]) == (255, 0, 0)  # far plane (disparity 1/6): fully fogged
    assert not list((tmp_path / "prev").glob(".*tmp"))  # no temp files left


def test_cli_size_mismatch_and_missing_frames_are_clear_errors(tmp_path, capsys):
    plate, depth, _ = make_shot(tmp_path, depth_size=(64, 48))
    code, _, err = run_cli(capsys, "fog", "--plate", plate, "--depth", depth, "-o", tmp_path / "out",
                           "--density", 0.1)
    assert code == 2
    assert "is 64x48 but plate frame 1001" in err and "is 128x96" in err and "sh010.depth.1001.exr" in err
    (depth.parent / "sh010.depth.1002.exr").unlink()
    code, _, err = run_cli(capsys, "defocus", "--plate", plate, "--depth", depth, "-o", tmp_path / "out",
                           "--focus", 2)
    assert code == 2 and "missing depth frames 1002" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_comp_imports_and_works_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from dvd_vfx import comp\n"
        "assert comp.available_backends() == ['numpy']\n"
        "img = np.ones((16, 16, 3), np.float32); z = np.full((16, 16), 5.0, np.float32)\n"
        "out = comp.defocus(img, z, comp.DefocusSettings(focus=2.0))\n"
        "assert np.allclose(out, 1.0, atol=1e-5)\n"
        "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)
