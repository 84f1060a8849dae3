"""Plate-resolution upsampling: bilinear (half-pixel centres) and guided (edge-aware)."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dvd_vfx.errors import InputError
from dvd_vfx.passes.upsample import resize_bilinear, upsample, upsample_guided


def _pil_bilinear(a, size):
    img = Image.fromarray(np.ascontiguousarray(a, np.float32))
    return np.asarray(img.resize(size, Image.BILINEAR))


# --------------------------------------------------------------------------- bilinear


def test_hand_computed_example():
    # source coordinates of 4 outputs from 2 inputs: -0.25, 0.25, 0.75, 1.25 (edge-clamped)
    out = resize_bilinear(np.array([[0.0, 1.0]]), (4, 1))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.25, 0.75, 1.0]], atol=1e-7)
    out = resize_bilinear(np.array([[0.0], [4.0]]), (1, 4))
    np.testing.assert_allclose(out[:, 0], [0.0, 1.0, 3.0, 4.0], atol=1e-6)


@pytest.mark.parametrize(
    "src,size", [((5, 7), (13, 17)), ((48, 64), (200, 150)), ((9, 4), (4, 27))]
)
def test_matches_pil_bilinear_when_enlarging(src, size):
    a = np.random.default_rng(0).random(src, dtype=np.float32)
    np.testing.assert_allclose(resize_bilinear(a, size), _pil_bilinear(a, size), atol=2e-6)


def test_channels_are_resized_independently():
    a = np.random.default_rng(1).random((6, 10, 3), dtype=np.float32)
    out = resize_bilinear(a, (25, 14))
    assert out.shape == (14, 25, 3) and out.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(out[:, :, c], _pil_bilinear(a[:, :, c], (25, 14)), atol=2e-6)


@pytest.mark.parametrize("shape", [(12, 20), (12, 20, 3)])
@pytest.mark.parametrize("size", [(64, 36), (5, 3), (20, 40), (20, 12)])
def test_constant_stays_constant_and_shapes(shape, size):
    a = np.full(shape, 3.25, dtype=np.float64)
    out = resize_bilinear(a, size)
    assert out.shape == (size[1], size[0]) + shape[2:]
    assert out.dtype == np.float32
    assert np.all(out == np.float32(3.25))


def test_same_size_is_a_copy_and_input_untouched():
    a = np.random.default_rng(2).random((8, 8), dtype=np.float32)
    before = a.copy()
    out = resize_bilinear(a, (8, 8))
    assert out is not a and np.array_equal(out, a)
    resize_bilinear(a, (31, 17))
    assert np.array_equal(a, before)


def test_bad_shapes_rejected():
    with pytest.raises(ValueError):
        resize_bilinear(np.zeros((2, 3, 4, 5), np.float32), (4, 4))
    with pytest.raises(ValueError):
        resize_bilinear(np.zeros((4, 4), np.float32), (0, 4))


# --------------------------------------------------------------------------- guided


def _step_scene(noise=0.0):
    """Plate (160x96) with a sharp vertical edge at x=83; depth 40x24 with a step there too."""
    H, W, x_edge = 96, 160, 83
    plate = np.full((H, W, 3), 0.2, dtype=np.float32)
    plate[:, x_edge:] = 0.8
    if noise:
        plate += np.random.default_rng(3).normal(0, noise, plate.shape).astype(np.float32)
    h, w = 24, 40
    centres = (np.arange(w) + 0.5) * (W / w) - 0.5  # low-res pixel centres in plate pixels
    small = np.where(centres < x_edge, 1.0, 5.0).astype(np.float32)[None].repeat(h, axis=0)
    return small, plate, (W, H), x_edge


def _transition_width(d, lo=1.0, hi=5.0):
    """Mean number of pixels per row between 10% and 90% of the step."""
    t = (d - lo) / (hi - lo)
    return float(((t > 0.1) & (t < 0.9)).sum(axis=1).mean())


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_guided_sharpens_a_step_edge_that_the_plate_shows(noise):
    small, plate, size, x_edge = _step_scene(noise)
    bilinear = resize_bilinear(small, size)
    guided = upsample_guided(small, plate)
    assert guided.shape == (size[1], size[0]) and guided.dtype == np.float32
    assert guided.min() >= 1.0 and guided.max() <= 5.0  # within the input's range
    assert _transition_width(bilinear) >= 3
    assert _transition_width(guided) <= _transition_width(bilinear) / 2
    # the edge lands where the plate's edge is
    assert np.all(guided[:, : x_edge - 1] < 1.5) and np.all(guided[:, x_edge + 4 :] > 4.5)
    assert np.all(guided[:, x_edge] > 3.0)


def test_guided_accepts_gray_and_integer_plates():
    small, plate, size, _ = _step_scene()
    as_float = upsample_guided(small, plate)
    as_uint8 = upsample_guided(small, np.round(plate * 255).astype(np.uint8))
    as_gray = upsample_guided(small, plate[:, :, 0])
    np.testing.assert_allclose(as_uint8, as_float, atol=1e-3)
    np.testing.assert_allclose(as_gray, as_float, atol=1e-3)


def test_guided_constant_depth_stays_constant():
    rng = np.random.default_rng(4)
    plate = rng.random((90, 120, 3), dtype=np.float32)
    out = upsample_guided(np.full((9, 12), 7.5, np.float32), plate, radius=4)
    np.testing.assert_allclose(out, 7.5, rtol=1e-6)


def test_guided_flat_plate_is_smooth_and_in_range():
    depth = np.random.default_rng(5).random((10, 16), dtype=np.float32)
    out = upsample_guided(depth, np.full((40, 64, 3), 0.5, np.float32))
    assert out.shape == (40, 64)
    assert depth.min() <= out.min() and out.max() <= depth.max()


# --------------------------------------------------------------------------- dispatcher


def test_upsample_dispatch_and_errors():
    small, plate, size, _ = _step_scene()
    assert np.array_equal(upsample(small, size), resize_bilinear(small, size))
    guided = upsample(small, size, method="guided", guide=plate)
    assert np.array_equal(guided, upsample_guided(small, plate))
    with pytest.raises(InputError, match="unknown upsampling method 'bicubic'") as info:
        upsample(small, size, method="bicubic")
    assert info.value.exit_code == 2
    with pytest.raises(InputError, match="guide"):
        upsample(small, size, method="guided")
    with pytest.raises(InputError, match="output size"):
        upsample(small, (80, 48), method="guided", guide=plate)


def test_upsample_module_imports_only_numpy():
    code = (
        "import sys, dvd_vfx.passes.upsample, dvd_vfx.passes; "
        "bad = [m for m in ('OpenEXR', 'torch', 'PIL') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
