"""The leaner VAE ops (dvd_vfx.model.vae_ops), stock vs lean, per op: time (median of --repeat) and
whether the bits are the same. Issue 21, item 2.

    python benchmarks/bench_vae_ops.py                      # CPU, decoder-sized layers at 1/16 of the area
    python benchmarks/bench_vae_ops.py --device cuda --size 480x848   # a GPU: full-size layers, bf16 too

Layers: the decoder's last stage at the working size scaled by --scale (96 channels, a chunk of 4
frames with the causal cache's 2 in front): WanCausalConv3d 3x3x3 (stock: F.pad copy then conv;
lean: padding inside the conv; and lean in channels_last_3d), the F.pad copy alone, RMS norm +
SiLU (stock: norm, then SiLU; lean: rms_norm_silu). Also the decode's peak live bytes of one full
window, replayed on the meta device (dvd_vfx.model.memory), stock vs lean. Prints JSON.
On CUDA, cudnn.benchmark off and on.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanRMS_norm

from dvd_vfx.model import vae_ops


def median_ms(fns: dict, device: torch.device, repeat: int) -> dict:
    """Median ms of each function, run in turn (stock, lean, stock, lean, ...) so that a shared box's
    load swings reach all of them alike."""
    times: dict = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeat):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(t) * 1000, 2) for name, t in times.items()}


def lean_cl(lean, x, cache):
    with vae_ops.channels_last_3d():
        return lean(x, cache)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> dict:
    return {"bitwise": bool(torch.equal(a, b)), "max_abs": float((a.float() - b.float()).abs().max()),
            "max_rel": float((a.float() - b.float()).abs().max() / a.float().abs().max())}


def bench_dtype(dtype, device, h, w, channels, repeat) -> dict:
    torch.manual_seed(0)
    stock = WanCausalConv3d(channels, channels, 3, padding=1).to(device, dtype)
    lean = copy.deepcopy(stock)
    vae_ops.conv_padding(torch.nn.Sequential(lean))
    x = torch.randn(1, channels, 4, h, w, device=device).to(dtype)
    cache = torch.randn(1, channels, 2, h, w, device=device).to(dtype)
    out: dict = {}
    with torch.inference_mode():
        a, b = stock(x, cache), lean(x, cache)
        with vae_ops.channels_last_3d():
            c = lean(x, cache)
        ms = median_ms({"stock": lambda: stock(x, cache), "lean": lambda: lean(x, cache),
                        "channels_last_3d": lambda: lean_cl(lean, x, cache)}, device, repeat)
        out["conv"] = {**{f"{k}_ms": v for k, v in ms.items()}, "lean": max_diff(a, b),
                       "channels_last_3d": max_diff(a, c)}
        if device.type == "cuda":
            with vae_ops.cudnn_benchmark(True, device):
                d = lean(x, cache)
                out["conv"]["cudnn_benchmark_ms"] = median_ms({"b": lambda: lean(x, cache)}, device, repeat)["b"]
            out["conv"]["cudnn_benchmark"] = max_diff(a, d)
        xc = torch.cat([cache, x], dim=2)
        out["pad_copy_ms"] = median_ms({"pad": lambda: F.pad(xc, (1, 1, 1, 1, 0, 0))}, device, repeat)["pad"]

        norm = WanRMS_norm(channels, images=False).to(device, dtype)
        norm.gamma.copy_(torch.rand_like(norm.gamma) + 0.5)
        y = x * 3
        a = F.silu(norm(y))
        b = vae_ops.rms_norm_silu(y, norm.gamma, norm.scale, norm.bias)
        ms = median_ms({"stock": lambda: F.silu(norm(y)),
                        "lean": lambda: vae_ops.rms_norm_silu(y, norm.gamma, norm.scale, norm.bias)}, device, repeat)
        out["norm_silu"] = {**{f"{k}_ms": v for k, v in ms.items()}, "lean": max_diff(a, b)}
    return out


def replay_peak(h: int, w: int, frames: int) -> dict:
    from dvd_vfx.model.memory import meta_vae, replay_vae

    out = {}
    for name in ("stock", "lean"):
        vae = meta_vae(torch.bfloat16)
        if name == "lean":
            vae_ops.lean_vae(vae)
        r = replay_vae(vae, frames, h, w, tiling=False, dtype=torch.bfloat16)
        out[name] = {"encode_gib": round(r["encode_bytes"] / 2**30, 3),
                     "decode_gib": round(r["decode_bytes"] / 2**30, 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", default="480x848", help="working size HxW (the decoder's last stage)")
    ap.add_argument("--scale", type=int, default=None, help="divide H and W by this (default 4 on CPU, 1 on CUDA)")
    ap.add_argument("--channels", type=int, default=96)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dtypes", nargs="+", default=None, help="default: fp32 on CPU (bf16 3D conv is not "
                    "oneDNN's there), bf16 and fp32 on CUDA")
    ap.add_argument("--replay-frames", type=int, default=81, help="frames of the meta-device replay (0: skip)")
    args = ap.parse_args()
    device = torch.device(args.device)
    h, w = (int(v) for v in args.size.split("x"))
    scale = args.scale or (1 if device.type == "cuda" else 4)
    h, w = h // scale, w // scale
    names = args.dtypes or (["bf16", "fp32"] if device.type == "cuda" else ["fp32"])
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "threads": torch.get_num_threads(), "torch": torch.__version__, "layer": [args.channels, 4 + 2, h, w],
              "repeat": args.repeat}
    for name in names:
        result[name] = bench_dtype(dtypes[name], device, h, w, args.channels, args.repeat)
    if args.replay_frames:
        H, W = (int(v) for v in args.size.split("x"))
        result["replay_bf16"] = {"size": f"{args.replay_frames}x{W}x{H}", **replay_peak(H, W, args.replay_frames)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
