"""Loader memory: does loading a FULL-SIZE official checkpoint stay near one copy of the model?

    python benchmarks/bench_loader.py [--rank 512] [--keep DIR]

Writes a random full-size DVD release in the official format (Wan2.1-T2V-1.3B DiT, bf16, peft
LoRA rank 512 on q/k/v/o/ffn.0/ffn.2 like DVD, ~4 GB) and the full Wan VAE .pth, then loads it
in a fresh process with the production loader (bf16) while sampling anonymous memory
(RssAnon: what the process really allocated; mapped file pages are page cache, not counted).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def write_full_release(folder: Path, rank: int) -> None:
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from safetensors.torch import save_file

    from dvd_vfx.model.keys import dit_to_original, is_lora_target, vae_to_original
    from dvd_vfx.model.loader import shipped_config

    folder.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        dit = WanTransformer3DModel(**shipped_config("transformer"))
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, meta in dit.state_dict().items():
        orig = dit_to_original(name)
        module, _, param = orig.rpartition(".")
        rnd = lambda *shape: (0.02 * torch.randn(*shape, generator=gen)).to(torch.bfloat16)  # noqa: E731
        if is_lora_target(module):
            out[f"pipe.dit.{module}.base_layer.{param}"] = rnd(*meta.shape)
            if param == "weight":
                out[f"pipe.dit.{module}.lora_A.default.weight"] = rnd(rank, meta.shape[1])
                out[f"pipe.dit.{module}.lora_B.default.weight"] = rnd(meta.shape[0], rank)
        else:
            out[f"pipe.dit.{orig}"] = rnd(*meta.shape)
    save_file(out, str(folder / "dvd_1.1.safetensors"))
    del out
    vae = AutoencoderKLWan(**shipped_config("vae"))
    torch.save({vae_to_original(k): v for k, v in vae.state_dict().items()}, folder / "Wan2.1_VAE.pth")


def _rss_anon_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def child(folder: str) -> None:
    import torch

    from dvd_vfx.model.predictor import DVDPredictor

    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_anon_kib())
            time.sleep(0.02)

    base = _rss_anon_kib()
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    nets = DVDPredictor(folder, device="cpu", dtype="bf16").load()
    seconds = time.perf_counter() - t0
    stop.set()
    t.join()
    model_bytes = sum(p.numel() * p.element_size() for m in (nets.transformer, nets.vae) for p in m.parameters())
    print(json.dumps({"load_s": round(seconds, 1), "model_gib": round(model_bytes / 2**30, 2),
                      "peak_anon_gib_during_load": round((peak[0] - base) / 2**20, 2),
                      "anon_gib_after_load": round((_rss_anon_kib() - base) / 2**20, 2),
                      "torch": torch.__version__}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rank", type=int, default=512)
    ap.add_argument("--keep", help="folder for the generated release (default: a temp folder)")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="dvd-full-release-"))
    if not (folder / "Wan2.1_VAE.pth").is_file():
        t0 = time.perf_counter()
        write_full_release(folder, args.rank)
        print(f"wrote {folder} in {time.perf_counter() - t0:.0f}s "
              f"({(folder / 'dvd_1.1.safetensors').stat().st_size / 1e9:.2f} GB DiT)", file=sys.stderr)
    res = subprocess.run([sys.executable, __file__, "--child", str(folder)], capture_output=True, text=True)
    print(res.stdout.strip() or res.stderr[-2000:])


if __name__ == "__main__":
    main()
