"""`dvd-vfx train`: argument parsing and the command handler (torch is imported only when it runs)."""

from __future__ import annotations

import argparse

DEFAULT_RANK = 64  # keep in step with dvd_vfx.train.trainer.DEFAULT_RANK (that module imports torch)


def add_train_parser(sub) -> argparse.ArgumentParser:
    t = sub.add_parser(
        "train", help="fine-tune DVD on your own clips (LoRA + LMR loss); writes an official-format weights folder",
        description="LoRA fine-tuning of DVD with Latent Manifold Rectification (L2 on the depth latent + "
                    "lambda * spatial/temporal gradient matching). Starts from --weights (the release, its LoRA "
                    "merged) and adds a fresh LoRA. Multi-GPU: accelerate launch -m dvd_vfx.cli train ...")
    t.add_argument("--data", required=True, metavar="DATASET.toml", help="dataset file (see docs/training.md)")
    t.add_argument("-o", "--output", required=True, metavar="RUN_DIR",
                   help="run folder: checkpoints/, final/ (usable as --weights), log.csv, log.json, loss.png")
    t.add_argument("--weights", metavar="DIR",
                   help="weights to start from (default: $DVD_VFX_WEIGHTS, else the user data dir)")
    g = t.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=1000, help="optimizer steps in total (default 1000)")
    g.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4, as the official)")
    g.add_argument("--rank", type=int, default=DEFAULT_RANK,
                   help=f"LoRA rank (default {DEFAULT_RANK}). The official training uses 512 to turn Wan into a "
                        "depth model; adapting the finished DVD to one show's look needs far less capacity: 64 "
                        "trains 8x fewer parameters (88M instead of 700M on the 1.3B model), so optimizer state, "
                        "checkpoints and over-fitting on a few shots stay small. Use 512 to reproduce the official "
                        "setup")
    g.add_argument("--alpha", type=float, help="LoRA alpha (default: the rank, i.e. scale 1 as DVD; another value is "
                                               "folded into lora_B when exporting)")
    g.add_argument("--targets", default="q,k,v,o,ffn.0,ffn.2",
                   help="LoRA target modules, original Wan names (default q,k,v,o,ffn.0,ffn.2: the official set)")
    g.add_argument("--lambda", dest="lam", type=float, default=0.5,
                   help="weight of the LMR terms L_sp + L_temp (default 0.5, the official grad_co)")
    g.add_argument("--batch", type=int, default=1, help="video samples per micro-batch (default 1)")
    g.add_argument("--image-batch", type=int,
                   help="image samples per micro-batch (default: --batch; the official training uses 8)")
    g.add_argument("--accum", type=int, default=1,
                   help="micro-batches per optimizer step (gradient accumulation; default 1, official 4)")
    g.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clip, 0 = off (default 1.0)")
    g.add_argument("--seed", type=int, default=0, help="seed of the LoRA init and the sample order (default 0)")
    g = t.add_argument_group("samples")
    g.add_argument("--frames", type=int, default=9,
                   help="frames per video sample, 4n+1 (default 9 for small GPUs/CPUs; the official uses 45)")
    g.add_argument("--resolution", default="256", metavar="N|WxH",
                   help="training crop, multiples of 16: N for N x N or WxH (default 256); each sample is resized "
                        "to cover it (aspect kept) and cropped")
    g.add_argument("--random-crop", action=argparse.BooleanOptionalAction, default=True,
                   help="crop at a random place (default) or the centre")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                   help="random horizontal flips (default on, as the official)")
    g.add_argument("--mask-invalid", action=argparse.BooleanOptionalAction, default=True,
                   help="leave latent cells over invalid depth out of the loss (default on; the official training "
                        "has no mask: --no-mask-invalid trains invalid pixels toward disparity 0)")
    g.add_argument("--workers", type=int, default=2,
                   help="reader threads that prefetch samples (default 2; 0 = inline)")
    g = t.add_argument_group("run")
    g.add_argument("--checkpoint-every", type=int, default=100, metavar="N",
                   help="write a checkpoint every N steps (default 100) and at the end")
    g.add_argument("--keep-checkpoints", type=int, default=3, metavar="N",
                   help="keep the last N checkpoints (default 3; 0 = all)")
    g.add_argument("--resume", nargs="?", const="auto", metavar="PATH",
                   help="continue the run: alone, from the latest checkpoint in RUN_DIR; or from a checkpoint folder")
    g.add_argument("--merge", action="store_true", help="also write RUN_DIR/merged: the LoRA merged into the weights")
    g.add_argument("--device", default="auto", help="auto | cuda | mps | cpu (default auto; bf16 autocast on CUDA)")
    g.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false",
                   help="faster, much more memory")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return t


def cmd_train(args) -> int:
    from dvd_vfx.train.lora import parse_targets
    from dvd_vfx.train.trainer import TrainConfig, train

    cfg = TrainConfig(
        data=args.data, run_dir=args.output, weights=args.weights, steps=args.steps, lr=args.lr, rank=args.rank,
        alpha=args.alpha, targets=parse_targets(args.targets), lam=args.lam, frames=args.frames,
        resolution=args.resolution, batch=args.batch, image_batch=args.image_batch, accum=args.accum,
        checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints, seed=args.seed,
        device=args.device, random_crop=args.random_crop, flip=args.flip, mask_invalid=args.mask_invalid,
        grad_clip=args.grad_clip, workers=args.workers, gradient_checkpointing=args.gradient_checkpointing,
        merge=args.merge, resume=args.resume, progress=args.progress)
    result = train(cfg)
    if result.summary:
        s = result.summary
        print(f"trained {s['steps']} steps (loss {s['loss_first5']:.4g} -> {s['loss_last5']:.4g}, mean of the first/"
              f"last 5); weights: {result.final}" + (f"; merged: {result.merged}" if result.merged else ""))
    return 0
