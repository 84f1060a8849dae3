"""Issue 21, item 4: the VAE memory estimate is checked against a replay on the meta device.

The full-size Wan VAE (shipped config) runs on meta tensors under dvd_vfx.model.memory.LiveBytes: no
memory is used and no GPU is needed; the peak of the bytes alive is what a GPU allocator must hold.
Small windows keep it to seconds; the estimate's terms (per pixel, per pixel-frame) are the same at
every size, so a size that fits here checks the formula the predictor uses at 720p.
"""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from dvd_vfx.model.memory import meta_vae, replay_vae  # noqa: E402
from dvd_vfx.model.predictor import untiled_bytes, vae_decode_bytes, vae_encode_bytes  # noqa: E402


@pytest.fixture(scope="module")
def vae():
    return meta_vae(torch.bfloat16)


@pytest.mark.parametrize("t,h,w", [(9, 64, 64), (17, 96, 160), (33, 64, 64)])
def test_untiled_vae_peak_stays_within_the_estimate(vae, t, h, w):
    peak = replay_vae(vae, t, h, w)
    dec, enc = vae_decode_bytes(t, h, w), vae_encode_bytes(t, h, w)
    # within the estimate, and the estimate no more than 1 % above it (a budget that can fail both ways:
    # a VAE change that raises the peak, or an estimate that drifts into slack)
    assert peak["decode_bytes"] <= dec <= 1.01 * peak["decode_bytes"]
    assert peak["encode_bytes"] <= enc <= 1.01 * peak["encode_bytes"]
    assert untiled_bytes(t, h, w, offload=True) == max(dec, enc) == dec


def test_float32_doubles_the_estimate_and_stays_above_the_peak():
    peak = replay_vae(meta_vae(torch.float32), 9, 64, 64, dtype=torch.float32)
    dec = vae_decode_bytes(9, 64, 64, torch.float32)
    assert dec == 2 * vae_decode_bytes(9, 64, 64)
    # bf16 already keeps a few intermediates (norms) in float32, so float32 is a little under twice
    # bf16's peak (replayed: 3.2 % under): the doubled estimate stays an upper bound within 5 %
    assert peak["decode_bytes"] <= dec <= 1.05 * peak["decode_bytes"]


def test_tiling_lowers_the_peak_to_about_one_tile(vae):
    tiles = dict(tile_sample_min_height=64, tile_sample_min_width=64,
                 tile_sample_stride_height=48, tile_sample_stride_width=48)
    untiled = replay_vae(vae, 9, 96, 160)
    tiled = replay_vae(vae, 9, 96, 160, tiling=tiles)
    vae.disable_tiling()
    # six 64x64 tiles decoded one after the other: the peak is one tile's working set (+ the blended output)
    assert tiled["decode_bytes"] < untiled["decode_bytes"] / 3
    assert tiled["decode_bytes"] <= vae_decode_bytes(9, 64, 64) + 4 * 6 * 9 * 96 * 160
    assert tiled["encode_bytes"] < untiled["encode_bytes"] / 3


# -- --vae-tiling-auto: the choice from free GPU memory ------------------------------------------------

from dvd_vfx.errors import InputError  # noqa: E402
from dvd_vfx.model.predictor import DVDPredictor, choose_vae_tiling  # noqa: E402

GiB = 2**30


@pytest.fixture(scope="module")
def h264(tmp_path_factory):
    import subprocess

    from dvd_vfx.footage.ffmpeg_tools import find_ffmpeg

    path = tmp_path_factory.mktemp("media") / "plate.mp4"
    subprocess.run([find_ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24",
                    "-frames:v", "9", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def test_auto_tiling_is_decided_from_the_free_memory_and_said():
    need = untiled_bytes(81, 480, 848)  # bf16, weights on the GPU: 7.2 GiB
    assert round(need / GiB, 1) == 7.2
    tiling, line = choose_vae_tiling(81, 480, 848, torch.bfloat16, "cuda", 24 * GiB)
    assert not tiling and line == ("VAE tiling: off (estimate 7.2 GiB + 1 GiB slack, free 24.0 GiB; "
                                   "81x848x480 windows)")
    tiling, line = choose_vae_tiling(81, 720, 1280, torch.bfloat16, "cuda", 12 * GiB)  # 12.7 GiB: 720p in 12 GB
    assert tiling and line.startswith("VAE tiling: on (estimate 12.7 GiB + 1 GiB slack, free 12.0 GiB")
    # the boundary: exactly enough stays untiled, one byte less tiles
    assert choose_vae_tiling(81, 480, 848, torch.bfloat16, "cuda", need + GiB)[0] is False
    assert choose_vae_tiling(81, 480, 848, torch.bfloat16, "cuda", need + GiB - 1)[0] is True
    # a shorter window needs a little less (the causal cache is per frame, only the output grows):
    # 21 frames at 720p (12.3 GiB) fit 13.5 GiB free where 81 (12.7 GiB) do not
    assert choose_vae_tiling(21, 720, 1280, torch.bfloat16, "cuda", int(13.5 * GiB))[0] is False
    assert choose_vae_tiling(81, 720, 1280, torch.bfloat16, "cuda", int(13.5 * GiB))[0] is True
    # float32 doubles, offload drops the weights
    assert choose_vae_tiling(81, 480, 848, torch.float32, "cuda", 12 * GiB)[0] is True
    assert choose_vae_tiling(81, 720, 1280, torch.bfloat16, "cuda", 12 * GiB, offload=True)[0] is False
    # no GPU: off, whatever the size
    tiling, line = choose_vae_tiling(81, 2160, 3840, torch.float32, "cpu", None)
    assert not tiling and line.startswith("VAE tiling: off (--vae-tiling-auto on cpu")


def test_auto_tiling_resolves_to_off_on_cpu_in_a_render_and_is_recorded_as_off(h264, tiny_weights_master,
                                                                                  tmp_path, caplog):
    from dvd_vfx.render import RenderOptions, render_shot

    predictor = DVDPredictor(str(tiny_weights_master), device="cpu", vae_tiling_auto=True)
    assert predictor.identity()["vae_tiling"] == "auto-memory"  # unresolved: not a key of any render
    with caplog.at_level("INFO", logger="dvd_vfx"):
        render_shot(h264, RenderOptions(out_dir=tmp_path / "a", resolution=48, window=5, overlap=2), predictor)
    assert any(r.getMessage().startswith("VAE tiling: off (--vae-tiling-auto on cpu") and "5x64x48 windows"
               in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    # recorded exactly as --no-vae-tiling: the same output, so the same cache key and header
    assert predictor.identity() == DVDPredictor(str(tiny_weights_master), device="cpu",
                                                vae_tiling=False).identity()


def test_auto_tiling_is_refused_with_a_fixed_choice_and_in_split_renders(tiny_weights_master):
    with pytest.raises(InputError, match="--vae-tiling-auto decides tiling itself"):
        DVDPredictor(str(tiny_weights_master), device="cpu", vae_tiling=True, vae_tiling_auto=True)
    predictor = DVDPredictor(str(tiny_weights_master), device="cpu", vae_tiling_auto=True)
    with pytest.raises(InputError, match="parts of a split render"):
        predictor.plan_window(81, 480, 848, split=True)
    DVDPredictor(str(tiny_weights_master), device="cpu").plan_window(81, 480, 848, split=True)  # nothing to decide
