"""--compile (dvd_vfx.model.compile): compiled vs eager within a stated tolerance, no recompile on the
next window of a shot, the identity, and a clear refusal where torch.compile cannot work.

The tolerance test compiles for real (TorchInductor's CPU backend, gcc): `pytest -m compile` finds it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dvd_vfx.cli import main
from dvd_vfx.errors import InputError
from dvd_vfx.model import compile as compile_mod
from dvd_vfx.model.predictor import DVDPredictor

from footage_helpers import make_testsrc

pytestmark = pytest.mark.compile

# Measured on the tiny model in fp32 on CPU: compiled vs eager disparity differ by at most ~1.5e-6
# (inductor fuses and reorders float operations); the test allows 1e-5 (docs/cli.md states it).
TOLERANCE = 1e-5
# The tolerance test's window: one frame, the smallest real compile of the DiT blocks, the encoder and the
# decoder (TorchInductor compiles every kernel with gcc: minutes cold on a loaded 2-core box, seconds with
# its kernel cache warm); how the chunks of longer windows share graphs is the next test's (dynamo alone).
T, H, W = 1, 32, 48


def _no_cpp_compiler():
    """TorchInductor configured as on a machine without g++ (what $CXX set to a missing program does)."""
    return torch._inductor.config.patch({"cpp.cxx": (None, "/nonexistent/g++")})


def _window(seed):
    return np.random.default_rng(seed).random((T, H, W, 3), dtype=np.float32)


@pytest.mark.slow
def test_compiled_matches_eager_within_tolerance_and_the_next_window_does_not_recompile(tiny_weights_master):
    eager = DVDPredictor(str(tiny_weights_master), device="cpu")
    compiled = DVDPredictor(str(tiny_weights_master), device="cpu", compile=True)  # (the same shared networks)
    first, second = _window(0), _window(1)
    expected = [eager.predict(first), eager.predict(second)]

    before = compile_mod.graphs_compiled()
    got_first = compiled.predict(first)
    graphs = compile_mod.graphs_compiled() - before
    # DiT block: 2 graphs for all blocks (before / after the eager folded cross-attention); encoder and
    # decoder: 1 each (a one-frame window is one chunk)
    assert graphs == 4, f"{graphs} graphs compiled for one window (recompiles per block?)"
    got_second = compiled.predict(second)
    assert compile_mod.graphs_compiled() - before == graphs, "the second window of the shot recompiled"

    for got, want in zip((got_first, got_second), expected):
        assert got.shape == (T, H, W) and got.dtype == np.float32
        assert np.abs(got - want).max() <= TOLERANCE
    # outside a compiled predictor's window the shared networks are stock again: eager output, bit for bit
    np.testing.assert_array_equal(eager.predict(first), expected[0])
    blocks = eager.load().transformer.blocks
    assert all("forward" not in b.__dict__ and "forward" not in b.attn2.__dict__ for b in blocks)


@pytest.mark.slow
def test_one_graph_serves_every_block_and_every_later_chunk_and_the_next_window_reuses_them(tiny_weights_master,
                                                                                         monkeypatch):
    """The graph structure, traced by dynamo alone (backend "eager": no code generation; ~20 s). Its window size
    differs from the tolerance test's, so neither reuses the other's entries."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(compile_mod, "_OPTIONS", {"backend": "eager", "dynamic": False})
    monkeypatch.setattr(compile_mod, "_COMPILED", {})
    from torch._C._dynamo.eval_frame import _debug_get_cache_entry_list

    predictor = DVDPredictor(str(tiny_weights_master), device="cpu", compile=True)
    nets = predictor.load()
    modules = (nets.transformer.blocks[0], nets.vae.encoder, nets.vae.decoder)

    def entries():  # dynamo's compiled entries per forward (other tests' windows included)
        return [len(_debug_get_cache_entry_list(type(m).forward.__code__)) for m in modules]

    entries_before = entries()
    breaks = dict(counters["graph_break"])
    before = compile_mod.graphs_compiled()
    predictor.predict(np.random.default_rng(2).random((17, 32, 64, 3), dtype=np.float32))
    # 5 encoder chunks, 5 decoder chunks, 2 blocks: DiT 2 graphs (before / after the eager cross-attention),
    # encoder 3 and decoder 3 (first chunk, second, every later one); 81-frame windows compile the same 8
    assert compile_mod.graphs_compiled() - before == 8
    predictor.predict(np.random.default_rng(3).random((17, 32, 64, 3), dtype=np.float32))
    assert compile_mod.graphs_compiled() - before == 8  # the next window of the shot: no recompile
    assert [n - b for n, b in zip(entries(), entries_before)] == [1, 3, 3]
    new_breaks = {k: v - breaks.get(k, 0) for k, v in counters["graph_break"].items() if v != breaks.get(k, 0)}
    assert new_breaks and all("torch.compiler.disable" in k for k in new_breaks), new_breaks  # the fold alone


def test_identity_records_compile_and_leaves_the_default_unchanged(tiny_weights_master):
    plain = DVDPredictor(str(tiny_weights_master), device="cpu").identity()
    compiled = DVDPredictor(str(tiny_weights_master), device="cpu", compile=True).identity()
    assert "compile" not in plain  # cache keys of renders before the option stay valid
    assert compiled == {**plain, "compile": "inductor"}


def test_compile_is_refused_where_it_cannot_work(tiny_weights_master, monkeypatch):
    with pytest.raises(InputError, match=r"--compile: torch.compile does not support the Metal \(mps\)"):
        compile_mod.check_compile(torch.device("mps"))
    monkeypatch.setattr(compile_mod, "_torch_version", lambda: (2, 3))
    with pytest.raises(InputError, match=r"--compile needs PyTorch 2.4 or newer .*upgrade PyTorch or render without"):
        DVDPredictor(str(tiny_weights_master), device="cpu", compile=True)
    monkeypatch.undo()
    with _no_cpp_compiler(), pytest.raises(InputError, match=r"--compile on the CPU needs a C\+\+ compiler"):
        DVDPredictor(str(tiny_weights_master), device="cpu", compile=True)


def test_cli_without_a_cpp_compiler_exits_2_with_one_line_and_writes_nothing(tiny_weights_master, tmp_path, capsys):
    movie = make_testsrc(tmp_path / "plate.mp4", frames=5)
    out = tmp_path / "out"
    with _no_cpp_compiler(), pytest.raises(SystemExit) as exit_:
        main(["render", str(movie), "-o", str(out), "--weights", str(tiny_weights_master), "--device", "cpu",
                     "--no-cache", "--resolution", "16", "--window", "5", "--overlap", "1", "--compile"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "--compile on the CPU needs a C++ compiler" in err and "render without --compile" in err
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_a_compile_failure_becomes_an_input_error_naming_compile(tiny_weights_master, monkeypatch):
    """torch.compile failing inside a window (here: its backend raising) is said as --compile's failure."""
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no kernels today")

    monkeypatch.setattr(compile_mod, "_OPTIONS", {"backend": broken_backend, "dynamic": False})
    monkeypatch.setattr(compile_mod, "_COMPILED", {})
    predictor = DVDPredictor(str(tiny_weights_master), device="cpu", compile=True)
    with pytest.raises(InputError, match=r"--compile: torch.compile failed on a 5-frame 32x16 window on cpu "
                                         r"\(BackendCompilerFailed.*render without --compile"):
        predictor.predict(np.random.default_rng(0).random((5, 16, 32, 3), dtype=np.float32))
    blocks = predictor.load().transformer.blocks
    assert all("forward" not in b.__dict__ for b in blocks)  # the stock methods are back after the failure
