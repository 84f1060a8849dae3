"""The first GPU run: a whole shot end to end at the full-size architecture (issue 21).

    python benchmarks/gpu_run.py                       # 1000-frame 1080p H.264 shot, 480p working size, bf16
    python benchmarks/gpu_run.py --resolution 720      # the 720p memory case
    python benchmarks/gpu_run.py --compile             # torch.compile: compile_s apart from the steady-state fps
    python benchmarks/gpu_run.py --size tiny --frames 45 --device cpu --resolution 64 --window 9 --overlap 4
                                                       # a CPU check that the script runs (seconds, tiny model)

What it does, all from this repository (no weights are downloaded; nothing leaves the machine):
  1. makes the test clip with ffmpeg (testsrc2, H.264 yuv420p) unless --clip is given
  2. builds the full Wan2.1-T2V-1.3B DiT + Wan VAE with random weights in --dtype on --device
     (the architecture and the work of the real model; the depth is meaningless)
  3. predicts one warm-up window (kernel selection, allocator), untimed
  4. renders the shot with render_shot (decode, windows, predictor, store, stitch, EXR writes),
     with the per-stage times of every window (VAE encode, DiT, VAE decode; synchronised)
and prints one JSON object (also written to --json): fps end to end, the render's stage timings
(predict_s = host + model, stitch_s, write_s), the model's split per window, the host time not
hidden behind the model, peak VRAM (allocated and reserved), the card, torch and the settings.
`--compare-inline` renders the shot a second time with the host overlap off (render.OVERLAP).
Staging (DVDPredictor.stage: the next window's frames copied into a pinned host buffer and uploaded
non-blocking on a side CUDA stream by the prefetch thread) is on; `--no-stage` renders without it and
`--compare-no-stage` renders the shot a second time without it. On CUDA the result also says whether
one window predicted from its staged frames has the same bytes as from the frames ("stage_identical").
The per-stage timings synchronise the whole device, so an upload in flight on the side stream
(tens of ms) lands in the stage that waits for it.
`--vae-tiling-auto` lets the render decide VAE tiling from free memory; each render records the
resolved choice ("vae_tiling_resolved").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench_predictor import _time_stages, full_networks

from dvd_vfx import render as render_mod
from dvd_vfx.cache import ShotCache
from dvd_vfx.model.predictor import DVDPredictor, resolve_device, resolve_dtype
from dvd_vfx.render import RenderOptions, render_shot, shot_layout


def make_clip(path: Path, frames: int, size: str) -> Path:
    from dvd_vfx.footage.ffmpeg_tools import find_ffmpeg

    if not path.is_file():
        subprocess.run([find_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=24",
                        "-frames:v", str(frames), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                        str(path)], check=True)
    return path


def build_predictor(args, device: torch.device) -> DVDPredictor:
    if args.size == "tiny":
        from dvd_vfx.model.tiny import write_tiny_weights

        folder = tempfile.mkdtemp(prefix="dvd-gpu-run-tiny-")
        write_tiny_weights(folder)
        return DVDPredictor(folder, device=str(device), dtype=args.dtype, attention=args.attention,
                            vae_tiling=args.vae_tiling, fold_cross_attention=not args.no_fold,
                            fp32_decoder_head=args.fp32_decoder_head, vae_tiling_auto=args.vae_tiling_auto,
                            vae_channels_last=args.vae_channels_last, cudnn_benchmark=args.cudnn_benchmark,
                            compile=args.compile)
    dtype = resolve_dtype(args.dtype, device)
    return DVDPredictor(networks=full_networks(dtype, device), device=str(device), dtype=args.dtype,
                        attention=args.attention, vae_tiling=args.vae_tiling, fold_cross_attention=not args.no_fold,
                        fp32_decoder_head=args.fp32_decoder_head, vae_tiling_auto=args.vae_tiling_auto,
                        vae_channels_last=args.vae_channels_last, cudnn_benchmark=args.cudnn_benchmark,
                        compile=args.compile)


def one_render(clip: Path, args, predictor, stages: dict, device: torch.device, work: Path, overlap: bool,
               stage: bool = True) -> dict:
    out, cache = work / "out", work / "cache"
    for d in (out, cache):
        shutil.rmtree(d, ignore_errors=True)
    stages.clear()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    if args.vae_tiling_auto:  # decided again by this render (plan_window), from the memory free now
        predictor.vae_tiling = None
    render_mod.OVERLAP, render_mod.STAGE = overlap, stage
    try:
        t0 = time.perf_counter()
        result = render_shot(clip, RenderOptions(out_dir=out, resolution=args.resolution, window=args.window,
                                                 overlap=args.overlap), predictor, cache=ShotCache(cache))
        seconds = time.perf_counter() - t0
    finally:
        render_mod.OVERLAP, render_mod.STAGE = True, True
    model_s = sum(sum(v) for v in stages.values())
    row = {
        "overlap": overlap, "staged": stage and device.type == "cuda", "frames": result.frame_count,
        "vae_tiling_resolved": {None: "auto", True: "on", False: "off"}[predictor.vae_tiling], "windows": result.windows,
        "working_size": "x".join(map(str, result.working_size)), "seconds": round(seconds, 2),
        "fps": round(result.frame_count / seconds, 2),
        "stages_s": {k: round(v, 2) for k, v in result.timings.items()},
        "model_s": round(model_s, 2),
        "host_not_hidden_s": round(result.timings["predict_s"] - model_s, 2),
        "model_split_median_s_per_window": {k: round(statistics.median(v), 3) for k, v in stages.items()},
    }
    if device.type == "cuda":
        row["peak_vram_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        row["peak_vram_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("full", "tiny"), default="full", help="network size (tiny: a CPU check)")
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--source-size", default="1920x1080", help="the clip's size (default 1920x1080)")
    ap.add_argument("--clip", help="render this movie instead of a generated clip")
    ap.add_argument("--resolution", type=int, default=480)
    ap.add_argument("--window", type=int, default=81)
    ap.add_argument("--overlap", type=int, default=21)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--attention", default="auto", choices=("auto", "flash", "cudnn", "math"))
    ap.add_argument("--vae-tiling", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--vae-tiling-auto", action="store_true",
                    help="decide VAE tiling at render start from the GPU's free memory (dvd-vfx --vae-tiling-auto)")
    ap.add_argument("--no-stage", action="store_true",
                    help="render without staging (the window's upload happens inside predict, as before)")
    ap.add_argument("--compare-no-stage", action="store_true", help="also render with staging off")
    ap.add_argument("--no-fold", action="store_true", help="run the stock cross-attention (no fold)")
    ap.add_argument("--fp32-decoder-head", action="store_true", help="the decoder's last layer in float32")
    ap.add_argument("--vae-channels-last", action="store_true",
                    help="the VAE's causal convolutions in channels_last_3d (dvd-vfx --vae-channels-last)")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="cuDNN picks its convolution algorithms by timing (dvd-vfx --cudnn-benchmark)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the DiT blocks and VAE chunks (compile_s: the warm-up window minus a steady one)")
    ap.add_argument("--compare-inline", action="store_true", help="also render with the host overlap off")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "dvd-gpu-run"))
    ap.add_argument("--keep", action="store_true", help="keep the pass and the cache in --work")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    clip = Path(args.clip) if args.clip else make_clip(work / f"clip{args.frames}_{args.source_size}.mp4",
                                                       args.frames, args.source_size)
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    predictor = build_predictor(args, device)
    nets = predictor.load()
    build_s = time.perf_counter() - t0
    stages = _time_stages(nets, device)

    # warm-up: one window of the shot's size, untimed
    from dvd_vfx.footage import open_footage

    layout = shot_layout(open_footage(clip).info, RenderOptions(out_dir=work, resolution=args.resolution,
                                                                window=args.window, overlap=args.overlap))
    w, h = layout.working_size
    import numpy as np

    t0 = time.perf_counter()
    window = np.random.default_rng(0).random((args.window, h, w, 3), dtype=np.float32)
    plain = predictor.predict(window)
    warmup_s = time.perf_counter() - t0
    # a staged window must give the same bytes (the same frames, the same ops on the GPU): checked here
    stage_identical = None
    if device.type == "cuda":
        stage_identical = bool(predictor.predict(predictor.stage(window)).tobytes() == plain.tobytes())
    del plain
    compiled = {}
    if args.compile:  # the warm-up window compiled the graphs: two more windows of the same size, the last steady
        after = []
        for seed in (1, 2):
            t0 = time.perf_counter()
            predictor.predict(np.random.default_rng(seed).random((args.window, h, w, 3), dtype=np.float32))
            after.append(time.perf_counter() - t0)
        compiled = {"compile": True, "next_windows_s": [round(x, 2) for x in after],
                    "compile_s": round(warmup_s - after[-1], 1)}

    result = {
        "size": args.size, "device": str(device), "dtype": str(predictor.dtype).removeprefix("torch."),
        "attention": args.attention, "cross_attention_fold": not args.no_fold,
        "fp32_decoder_head": args.fp32_decoder_head, "vae_channels_last": args.vae_channels_last,
        "cudnn_benchmark": args.cudnn_benchmark,
        "vae_tiling": "auto-memory" if args.vae_tiling_auto else {None: "auto", True: "on", False: "off"}[args.vae_tiling],
        "stage_identical": stage_identical,
        "clip": f"{args.frames} frames {args.source_size} H.264" if not args.clip else str(clip),
        "build_s": round(build_s, 1), "warmup_window_s": round(warmup_s, 2), **compiled,
        "torch": torch.__version__, "python": platform.python_version(), "torch_threads": torch.get_num_threads(),
        "renders": [one_render(clip, args, predictor, stages, device, work, overlap=True, stage=not args.no_stage)],
    }
    if args.compare_inline:
        result["renders"].append(one_render(clip, args, predictor, stages, device, work, overlap=False,
                                            stage=not args.no_stage))
    if args.compare_no_stage and not args.no_stage:
        result["renders"].append(one_render(clip, args, predictor, stages, device, work, overlap=True, stage=False))
    if device.type == "cuda":
        result["card"] = torch.cuda.get_device_name()
        result["cuda"] = torch.version.cuda
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
