"""`dvd-vfx train`: LoRA fine-tuning of DVD on a studio's own clips, with LMR.

The narrative of one optimizer step (as the official DVD training):

  1. sample: pick a source by its mixing weight, a clip uniformly, a random start; video sources
     give --frames frames (4n+1), image sources one frame; resize to cover --resolution, crop
  2. targets: disparity = 1/depth, per-sample 2-98 percentile normalisation, clipped to [0,1],
     replicated to 3 channels; RGB and target both encoded by the frozen VAE (posterior mean,
     Wan statistics) under no_grad
  3. ONE DiT pass at timestep 500 with a zero text context; the output is the depth latent
  4. loss: L2 + lambda * (L_sp + L_temp) (dvd_vfx.train.loss), backward into the LoRA only
  5. AdamW step after --accum micro-batches, gradient norm clipped to 1 (as the official)

Run folder::

    RUN_DIR/run.json                        the settings (a resume must match them)
    RUN_DIR/log.csv, log.json, loss.png     per-step losses, summary, curves
    RUN_DIR/checkpoints/step-000100/        official-format weights folder + trainer_state.pt
    RUN_DIR/final/                          the last step's weights (usable as --weights)
    RUN_DIR/merged/                         with --merge: the merged model

Multi-GPU: ``accelerate launch -m dvd_vfx.cli train ...`` (each process draws its own samples;
gradients are averaged by DDP; only the main process writes files).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import random
import re
import resource
import shutil
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from dvd_vfx.errors import InputError
from dvd_vfx.fsutil import sha256_file, write_atomic
from dvd_vfx.jsonvalues import jsonable
from dvd_vfx.train import export
from dvd_vfx.train import lora as lora_mod
from dvd_vfx.train.loss import DEFAULT_LAMBDA, dvd_loss, latent_mask

log = logging.getLogger("dvd_vfx.train")

DEFAULT_RANK = 64
CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"
_STEP_DIR = re.compile(r"^step-(\d{6,})$")
LOG_FIELDS = ("step", "loss", "l2", "sp", "temp", "lr", "seconds", "kinds", "kept")


# ---------------------------------------------------------------------------------------------
# settings


def parse_resolution(text: str | int | tuple) -> tuple[int, int]:
    """'256' -> (256, 256); '448x256' -> (448, 256) (width x height); both multiples of 16."""
    if isinstance(text, tuple):
        w, h = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", str(text))
        if m is None:
            raise InputError(f"--resolution {text!r}: write N (an N x N crop) or WxH, e.g. 256 or 448x256")
        w = int(m[1])
        h = int(m[2]) if m[2] else w
    if w < 16 or h < 16 or w % 16 or h % 16:
        raise InputError(f"--resolution {text}: width and height must be multiples of 16 (DVD's VAE and patch grid), "
                         f"e.g. {max(16, w // 16 * 16)}x{max(16, h // 16 * 16)}")
    return int(w), int(h)


@dataclass
class TrainConfig:
    data: str
    run_dir: str
    weights: str | None = None
    steps: int = 1000
    lr: float = 1e-4
    rank: int = DEFAULT_RANK
    alpha: float | None = None  # None = rank (scale 1, as DVD)
    targets: tuple[str, ...] = lora_mod.OFFICIAL_TARGETS
    lam: float = DEFAULT_LAMBDA
    frames: int = 9
    resolution: tuple[int, int] = (256, 256)
    batch: int = 1
    image_batch: int | None = None  # None = batch
    accum: int = 1
    checkpoint_every: int = 100
    keep_checkpoints: int = 3  # 0 = keep all
    seed: int = 0
    device: str = "auto"
    random_crop: bool = True
    flip: bool = True
    mask_invalid: bool = True
    grad_clip: float = 1.0  # the official clip_grad_norm max_norm
    workers: int = 2
    gradient_checkpointing: bool = True
    merge: bool = False
    resume: str | bool | None = None  # True/"auto": latest checkpoint in run_dir; a path: that checkpoint
    progress: bool = True

    def check(self) -> None:
        if self.steps < 1:
            raise InputError(f"--steps {self.steps}: train at least 1 step")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr {self.lr}: the learning rate must be a positive number (default 1e-4)")
        if self.rank < 1:
            raise InputError(f"--rank {self.rank}: the LoRA rank must be 1 or more (default {DEFAULT_RANK})")
        if self.alpha is not None and not self.alpha > 0:
            raise InputError(f"--alpha {self.alpha}: must be positive (default: the rank)")
        if self.lam < 0 or not math.isfinite(self.lam):
            raise InputError(f"--lambda {self.lam}: the LMR weight must be >= 0 (default {DEFAULT_LAMBDA})")
        if self.frames < 1 or (self.frames - 1) % 4:
            lo = max(1, (self.frames - 1) // 4 * 4 + 1)
            raise InputError(f"--frames {self.frames}: DVD needs 4n+1 frames (1, 5, 9, ... 45, ... 81); "
                             f"use {lo} or {lo + 4}")
        self.resolution = parse_resolution(self.resolution)
        for name in ("batch", "accum"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name} {getattr(self, name)}: must be 1 or more")
        if self.image_batch is not None and self.image_batch < 1:
            raise InputError(f"--image-batch {self.image_batch}: must be 1 or more")
        if self.checkpoint_every < 1:
            raise InputError(f"--checkpoint-every {self.checkpoint_every}: must be 1 or more")
        if self.keep_checkpoints < 0:
            raise InputError(f"--keep-checkpoints {self.keep_checkpoints}: 0 keeps all, N keeps the last N")
        if self.workers < 0:
            raise InputError(f"--workers {self.workers}: 0 reads samples inline, N uses N reader threads")
        if not (self.grad_clip >= 0):
            raise InputError(f"--grad-clip {self.grad_clip}: 0 disables clipping, else a positive norm")
        self.targets = tuple(self.targets)

    @property
    def images_per_batch(self) -> int:
        return self.image_batch or self.batch

    def trajectory(self) -> dict:
        """The settings that decide the losses and weights step by step: a resume must match them."""
        return {"lr": self.lr, "rank": self.rank, "alpha": float(self.alpha or self.rank),
                "targets": list(self.targets),
                "lambda": self.lam, "frames": self.frames, "resolution": list(self.resolution), "batch": self.batch,
                "image_batch": self.images_per_batch, "accum": self.accum, "seed": self.seed,
                "random_crop": self.random_crop, "flip": self.flip, "mask_invalid": self.mask_invalid,
                "grad_clip": self.grad_clip}


# ---------------------------------------------------------------------------------------------
# sampling


@dataclass(frozen=True)
class ItemSpec:
    clip: int  # index into the source's usable clips
    start: int
    crop: tuple[float, float]  # x, y position of the crop window in [0, 1]
    flip: bool


@dataclass(frozen=True)
class BatchSpec:
    source: int
    items: tuple[ItemSpec, ...]


@lru_cache(maxsize=None)
def _native_size(frames: str, colorspace: str) -> tuple[int, int]:
    from dvd_vfx.train.dataset import open_clip_footage

    info = open_clip_footage(frames, colorspace).info
    return info.width, info.height


def cover_size(native: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """The smallest size with the native aspect that covers the target (then cropped to it)."""
    (w, h), (tw, th) = native, target
    scale = max(tw / w, th / h)
    return max(tw, math.ceil(w * scale - 1e-6)), max(th, math.ceil(h * scale - 1e-6))


class Sampler:
    """Draws micro-batches: source by mixing weight, clip uniformly, random start, crop and flip.

    Deterministic from its seed; its state (a numpy PCG64 state) goes into checkpoints so a
    resumed run sees the same samples in the same order.
    """

    def __init__(self, dataset, cfg: TrainConfig, seed: int):
        from dvd_vfx.train.dataset import clip_length

        self.dataset, self.cfg = dataset, cfg
        self.sources = []  # (Source, [(ClipSpec, length)], frames per sample, items per batch)
        for source in dataset.sources:
            count = 1 if source.kind == "image" else cfg.frames
            clips = [(c, clip_length(c)) for c in source.clips]
            usable = [(c, n) for c, n in clips if n >= count]
            if not usable:
                longest = max(n for _, n in clips)
                raise InputError(f"{dataset.path}: source {source.name!r}: no clip has the {count} frames --frames "
                                 f"asks for (the longest has {longest}); lower --frames (4n+1) or add longer clips")
            if len(usable) < len(clips):
                short = [c.name for c, n in clips if n < count]
                log.warning("source %r: %d clip(s) shorter than %d frames are not used: %s", source.name, len(short),
                            count, ", ".join(short[:5]) + (" ..." if len(short) > 5 else ""))
            per_batch = cfg.images_per_batch if source.kind == "image" else cfg.batch
            self.sources.append((source, usable, count, per_batch))
        weights = np.array([s.weight for s in dataset.sources], dtype=np.float64)
        self.p = weights / weights.sum()
        self.gen = np.random.Generator(np.random.PCG64(seed))

    def draw(self) -> BatchSpec:
        g = self.gen
        s = int(g.choice(len(self.sources), p=self.p))
        _source, clips, count, per_batch = self.sources[s]
        items = []
        for _ in range(per_batch):
            ci = int(g.integers(len(clips)))
            start = int(g.integers(clips[ci][1] - count + 1))
            crop = (float(g.random()), float(g.random())) if self.cfg.random_crop else (0.5, 0.5)
            flip = bool(g.random() < 0.5) if self.cfg.flip else False
            items.append(ItemSpec(ci, start, crop, flip))
        return BatchSpec(s, tuple(items))

    def get_state(self) -> str:
        return json.dumps(self.gen.bit_generator.state)

    def set_state(self, state: str) -> None:
        self.gen.bit_generator.state = json.loads(state)

    def load(self, spec: BatchSpec) -> dict:
        """Read and prepare one micro-batch: numpy arrays, ready to become tensors."""
        from dvd_vfx.train.dataset import disparity_target, read_clip

        source, clips, count, _ = self.sources[spec.source]
        w, h = self.cfg.resolution
        rgbs, targets, valids, usable = [], [], [], []
        for item in spec.items:
            clip, _n = clips[item.clip]
            cw, ch = cover_size(_native_size(clip.frames, clip.colorspace), (w, h))
            rgb, depth, valid = read_clip(clip, start=item.start, count=count, size=(cw, ch))
            x0 = round(item.crop[0] * (cw - w))
            y0 = round(item.crop[1] * (ch - h))
            rgb, depth, valid = (a[:, y0:y0 + h, x0:x0 + w] for a in (rgb, depth, valid))
            if item.flip:
                rgb, depth, valid = (a[:, :, ::-1] for a in (rgb, depth, valid))
            target = disparity_target(depth, valid)
            ok = bool(valid.any()) and float(np.ptp(target[valid])) > 0
            if not ok:
                log.warning("clip %s frames %d-%d: no usable depth (all invalid or flat); left out of the loss",
                            clip.name, item.start, item.start + count - 1)
            rgbs.append(np.ascontiguousarray(rgb))
            targets.append(target)
            valids.append(np.ascontiguousarray(valid))
            usable.append(ok)
        return {"kind": source.kind, "rgb": np.stack(rgbs), "target": np.stack(targets), "valid": np.stack(valids),
                "usable": np.array(usable)}


class Prefetcher:
    """Reads upcoming micro-batches on threads; remembers the sampler state of the next unread one.

    Specs are drawn in order on the calling thread, so threads never change which samples are
    drawn; the state saved in a checkpoint is the one before the first spec not yet consumed.
    """

    def __init__(self, sampler: Sampler, workers: int):
        self.sampler = sampler
        self.depth = max(0, workers) * 2
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dvd-train-read") if workers else None
        self.queue: deque = deque()

    def _fill(self) -> None:
        while len(self.queue) < max(1, self.depth):
            state = self.sampler.get_state()
            spec = self.sampler.draw()
            fut = self.pool.submit(self.sampler.load, spec) if self.pool else None
            self.queue.append((state, spec, fut))
            if self.pool is None:
                break

    def next(self) -> dict:
        self._fill()
        _state, spec, fut = self.queue.popleft()
        batch = fut.result() if fut is not None else self.sampler.load(spec)
        self._fill()
        return batch

    def state(self) -> str:
        return self.queue[0][0] if self.queue else self.sampler.get_state()

    def close(self) -> None:
        if self.pool is not None:
            for _state, _spec, fut in self.queue:
                fut.cancel()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.queue.clear()


# ---------------------------------------------------------------------------------------------
# RNG states (plain lists and tensors: checkpoints load with torch.load(weights_only=True))


def _rng_state() -> dict:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss], "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------
# checkpoints: saving, finding and resuming


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / STATE_FILE).is_file():
            found.append((int(m[1]), p))
    return sorted(found)


def find_resume_checkpoint(run_dir: Path, resume) -> Path | None:
    """--resume (auto): the latest checkpoint of run_dir or None; --resume PATH: that checkpoint."""
    if resume in (None, False):
        return None
    if resume is True or resume == "auto":
        found = list_checkpoints(run_dir)
        return found[-1][1] if found else None
    path = Path(resume).expanduser()
    if path.is_dir() and not (path / STATE_FILE).is_file() and (path / CHECKPOINTS).is_dir():
        found = list_checkpoints(path)  # a run folder: its latest checkpoint
        if found:
            return found[-1][1]
    if not (path / STATE_FILE).is_file():
        raise InputError(f"--resume {resume}: no {STATE_FILE} there; pass a checkpoint folder "
                         f"(RUN_DIR/{CHECKPOINTS}/step-NNNNNN) or a run folder, or --resume alone for the latest")
    return path


def load_resume_state(path: Path, trajectory: dict, steps: int) -> dict:
    """The trainer state of checkpoint `path`, checked against this run: the same trajectory
    settings (:meth:`TrainConfig.trajectory` and what the run adds), a step within --steps."""
    state = _load_state(path)
    _compare(state["config"], trajectory, path)
    if state["step"] > steps:
        raise InputError(f"--resume {path}: the checkpoint is at step {state['step']}, beyond --steps "
                         f"{steps}; raise --steps")
    return state


def restore_progress(state: dict, path: Path, sampler: Sampler, process_index: int) -> tuple[int, list[dict], float]:
    """This process's sampler and the global RNGs back where checkpoint `path` stopped; returns
    (step, loss records, seconds trained so far). The LoRA and optimizer are restored where they
    are built (:func:`_prepare_training`)."""
    rank_state = json.loads((path / f"sampler-rank{process_index}.json").read_text())
    sampler.set_state(rank_state["sampler"])
    _set_rng_state(state["rng"])
    return state["step"], list(state["records"]), float(state.get("elapsed", 0.0))


def _load_state(path: Path) -> dict:
    try:
        return torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of many kinds
        raise InputError(f"{path / STATE_FILE}: unreadable trainer state ({str(exc).splitlines()[0][:160]}); "
                         "resume from an earlier checkpoint (--resume PATH)") from None


def _compare(saved: dict, now: dict, where: Path) -> None:
    diff = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if diff:
        shown = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}" for k in diff[:4])
        raise InputError(f"cannot resume from {where}: the run was started with other settings ({shown}); "
                         "resume with the same settings, or train into a new -o folder")


class CheckpointWriter:
    """Writes RUN_DIR/checkpoints/step-NNNNNN: an official-format weights folder (the LoRA), the
    trainer state (trainer_state.pt: step, LoRA, optimizer, RNGs, loss records, trajectory) and
    one sampler state per process (sampler-rankN.json).

    A checkpoint is built under .step-NNNNNN.tmp and renamed into place, so a killed run leaves
    whole checkpoints only; the last --keep-checkpoints are kept. Every process calls
    :meth:`save` (they meet at barriers); only the main process writes the weights and the state.
    """

    def __init__(self, run_dir: Path, accelerator, *, source, rank: int, alpha: float, info: dict,
                 trajectory: dict, keep: int, last: Path | None = None):
        self.run_dir, self.folder = run_dir, run_dir / CHECKPOINTS
        self.accelerator = accelerator
        self.source, self.rank, self.alpha, self.info = source, rank, alpha, info
        self.trajectory, self.keep = trajectory, keep
        self.last = last  # the newest whole checkpoint of this run (where --resume would start), or None

    def remove_partial(self) -> None:
        """Checkpoints a killed run left half-written (main process, before training starts)."""
        for stale in self.folder.glob(".step-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)

    def save(self, step: int, model, optimizer, *, sampler_state: str, records: list[dict], elapsed: float) -> Path:
        accelerator, main = self.accelerator, self.accelerator.is_main_process
        dst = self.folder / f"step-{step:06d}"
        tmp = self.folder / f".step-{step:06d}.tmp"
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        _write_json(tmp / f"sampler-rank{accelerator.process_index}.json", {"sampler": sampler_state})
        accelerator.wait_for_everyone()
        if main:
            unwrapped = accelerator.unwrap_model(model)
            export.write_lora_files(tmp, unwrapped, source=self.source, rank=self.rank, alpha=self.alpha,
                                    info={**self.info, "kind": "lora", "step": step})
            torch.save({"step": step, "lora": lora_mod.lora_state(unwrapped), "optimizer": optimizer.state_dict(),
                        "rng": _rng_state(), "records": records, "config": self.trajectory,
                        "elapsed": elapsed}, tmp / STATE_FILE)
            if dst.exists():
                shutil.rmtree(dst)
            os.replace(tmp, dst)
            if self.keep:
                for _s, old in list_checkpoints(self.run_dir)[:-self.keep]:
                    shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        self.last = dst
        return dst


def _step_of(ckpt: Path) -> int:
    m = _STEP_DIR.match(Path(ckpt).name)
    return int(m[1]) if m else -1


def _publish_final(ckpt: Path, dst: Path) -> Path:
    """RUN_DIR/final: the last checkpoint's weights files (hard links), without the trainer state."""
    with export.atomic_folder(dst) as tmp:
        for p in sorted(ckpt.iterdir()):
            if p.name == STATE_FILE or p.name.startswith("sampler-rank"):
                continue
            if p.is_dir():
                shutil.copytree(p, tmp / p.name, copy_function=lambda s, d: export.link_or_copy(Path(s), Path(d)))
            else:
                export.link_or_copy(p, tmp / p.name)
    return dst


# ---------------------------------------------------------------------------------------------
# the loss log


class LossLog:
    def __init__(self, run_dir: Path, records: list[dict], write: bool):
        self.path = run_dir / "log.csv"
        self.records = list(records)
        self.write = write
        if write:  # rewrite: a resumed run drops the steps after its checkpoint
            with open(self.path, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
                w.writeheader()
                w.writerows(self.records)

    def add(self, record: dict) -> None:
        self.records.append(record)
        if self.write:
            with open(self.path, "a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=LOG_FIELDS).writerow(record)


def plot_losses(records: list[dict], path: Path) -> None:
    """loss.png: total, L2, L_sp and L_temp per step (log scale), with a moving average when long."""
    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in records])
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for key, colour in (("loss", "k"), ("l2", "tab:blue"), ("sp", "tab:orange"), ("temp", "tab:green")):
        values = np.array([float(r[key]) for r in records], dtype=np.float64)
        if key == "temp":  # image-only steps have no temporal term: gaps, not zeros
            values[[("video" not in str(r["kinds"])) for r in records]] = np.nan
            if not np.isfinite(values).any():
                continue
        ax.plot(steps, values, color=colour, alpha=0.35 if len(values) > 50 else 1.0, lw=1,
                marker="." if key == "temp" else None, ms=3,
                label={"loss": "total", "l2": "L2", "sp": "L_sp", "temp": "L_temp"}[key])
        if len(values) > 50:  # moving average over the finite values
            k = max(5, len(values) // 50)
            finite = np.isfinite(values)
            num = np.convolve(np.where(finite, values, 0.0), np.ones(k), mode="valid")
            den = np.convolve(finite.astype(np.float64), np.ones(k), mode="valid")
            smooth = np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)
            ax.plot(steps[k - 1:], smooth, color=colour, lw=2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("dvd-vfx train: L2 + lambda (L_sp + L_temp)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    write_atomic(path, png.getvalue())


def _write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _peak_memory(device: torch.device) -> dict:
    out = {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}
    if device.type == "cuda":
        out["peak_cuda_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return out


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    records: list[dict] = field(default_factory=list)
    final: Path | None = None
    merged: Path | None = None
    summary: dict = field(default_factory=dict)
    networks: object = None  # DVDNetworks with the trained (peft-wrapped, eval-mode) transformer


def _accelerator(cfg: TrainConfig):
    try:
        from accelerate import Accelerator
    except ImportError:
        raise InputError("dvd-vfx train needs accelerate and peft: pip install 'dvd-vfx[train]'") from None
    if cfg.device not in ("auto", "cpu", "cuda", "mps"):
        raise InputError(f"--device {cfg.device!r}: use auto, cuda, mps or cpu (pick GPUs with "
                         "CUDA_VISIBLE_DEVICES, several with accelerate launch)")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: this PyTorch has no CUDA device; use --device cpu or auto")
    if cfg.device == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps: Metal is not available in this PyTorch; use --device cpu or auto")
    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()
                                  and not torch.backends.mps.is_available())
    cuda = not cpu and torch.cuda.is_available() and cfg.device in ("auto", "cuda")
    mixed = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    from datetime import timedelta

    from accelerate.utils import InitProcessGroupKwargs

    # the other processes wait at a barrier while the main one writes a checkpoint (GBs at high
    # ranks, maybe to network storage): allow an hour, not torch's default 10 minutes
    accelerator = Accelerator(cpu=cpu, mixed_precision=mixed, gradient_accumulation_steps=cfg.accum,
                              kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(minutes=60))])
    kind = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type)).upper()
    if kind not in ("NO", "MULTI_GPU", "MULTI_CPU", "MPS"):
        raise InputError(f"dvd-vfx train supports one process or DDP, not {kind} (the LoRA export and resume need "
                         "whole parameters): launch with `accelerate launch --multi_gpu -m dvd_vfx.cli train ...` "
                         "or torchrun")
    return accelerator


# ---------------------------------------------------------------------------------------------
# the optimisation step


@dataclass
class StepLosses:
    """One optimizer step's losses: means over every micro-batch of every process, L_temp over
    the video micro-batches only (image ones have no temporal term; their zeros would hide it)."""

    loss: float
    l2: float
    sp: float
    temp: float
    kinds: list[str]  # "image", "video": the kinds of sample the step saw, on any process
    kept: int  # samples with usable depth, all processes

    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.loss, self.l2, self.sp, self.temp))


class TrainStep:
    """The optimisation step and what it needs: the transformer with its LoRA (wrapped by
    accelerate), the AdamW over the LoRA parameters and the frozen VAE.

    One :meth:`run` = --accum micro-batches (VAE encodes, ONE DiT pass, LMR loss, backward), the
    gradient norm clipped to --grad-clip, an AdamW step (accelerate steps and syncs on the last
    micro-batch only). ``model`` and ``optimizer`` are what checkpoints save.
    """

    def __init__(self, accelerator, model, optimizer, params: list, nets, *, text_dim: int, dtype: torch.dtype,
                 cfg: TrainConfig):
        from dvd_vfx.model.predictor import encode_latents, run_transformer

        self.accelerator, self.model, self.optimizer = accelerator, model, optimizer
        self.params, self.nets = params, nets
        self.text_dim, self.dtype, self.cfg = text_dim, dtype, cfg
        self._encode_latents, self._run_transformer = encode_latents, run_transformer

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def run(self, prefetch: Prefetcher, *, step: int, last_checkpoint: Path | None) -> StepLosses:
        """Optimizer step number `step`; `last_checkpoint` is named by the out-of-memory message."""
        accelerator, cfg, model = self.accelerator, self.cfg, self.model
        device = accelerator.device
        sums = torch.zeros(5, device=device)  # loss, l2, sp, temp, video micro-batches
        kinds, kept = set(), 0
        for _micro in range(cfg.accum):
            batch = prefetch.next()
            kinds.add(batch["kind"])
            with accelerator.accumulate(model):
                try:
                    parts, n_kept = _micro_step(batch, model, self.nets, self.text_dim, cfg, device, self.dtype,
                                                self._encode_latents, self._run_transformer)
                    kept += n_kept
                    accelerator.backward(parts.total)
                except torch.OutOfMemoryError:
                    raise _out_of_memory(step, last_checkpoint, cfg) from None
                if accelerator.sync_gradients and cfg.grad_clip > 0:
                    accelerator.clip_grad_norm_(self.params, cfg.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            sums += torch.stack([parts.total.detach(), parts.l2.detach(), parts.sp.detach(),
                                 parts.temp.detach(), torch.tensor(float(parts.has_temporal), device=device)]
                                ).float()
        # means over all micro-batches of all processes; L_temp over the video ones only
        totals = accelerator.reduce(sums, reduction="sum").tolist()
        n_micro = cfg.accum * accelerator.num_processes
        seen = torch.tensor([float("image" in kinds), float("video" in kinds), float(kept)], device=device)
        has_image, has_video, kept = accelerator.reduce(seen, reduction="sum").tolist()  # over all processes
        return StepLosses(loss=totals[0] / n_micro, l2=totals[1] / n_micro, sp=totals[2] / n_micro,
                          temp=totals[3] / max(totals[4], 1.0),
                          kinds=[k for k, on in (("image", has_image), ("video", has_video)) if on], kept=int(kept))


def _prepare_training(cfg: TrainConfig, files, accelerator, state: dict | None) -> TrainStep:
    """The networks from the production loader (the release's LoRA merged) plus a fresh LoRA, or
    the checkpoint's LoRA and optimizer state when `state` (a resume) is given."""
    from accelerate.utils import set_seed

    from dvd_vfx.model.loader import load_transformer, load_vae
    from dvd_vfx.model.predictor import DVDNetworks

    set_seed(cfg.seed)
    device = accelerator.device
    dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float32
    transformer, _info = load_transformer(files, dtype)
    vae = load_vae(files, dtype)
    nets = DVDNetworks.from_modules(transformer, vae)
    text_dim = transformer.config.text_dim
    torch.manual_seed(cfg.seed)
    lora_mod.add_lora(transformer, rank=cfg.rank, alpha=cfg.alpha, targets=cfg.targets)
    if state is not None:
        lora_mod.load_lora_state(transformer, state["lora"])
    if cfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    transformer.train()
    vae.to(device)
    nets.latents_mean, nets.latents_std = nets.latents_mean.to(device), nets.latents_std.to(device)
    params = list(lora_mod.lora_parameters(transformer).values())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr)
    model, optimizer = accelerator.prepare(transformer, optimizer)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    return TrainStep(accelerator, model, optimizer, params, nets, text_dim=text_dim, dtype=dtype, cfg=cfg)


def _out_of_memory(step: int, last_ckpt, cfg) -> InputError:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    where = f"resume from {last_ckpt} (--resume)" if last_ckpt else "start again"
    return InputError(f"out of GPU memory at step {step} ({cfg.frames} frames at {cfg.resolution[0]}x"
                      f"{cfg.resolution[1]}, batch {cfg.batch}, image batch {cfg.images_per_batch}, rank {cfg.rank}); "
                      f"lower --frames, --resolution, --batch/--image-batch or --rank (keep gradient checkpointing "
                      f"on) and {where}")


def _micro_step(batch, model, nets, text_dim, cfg, device, dtype, encode_latents, run_transformer):
    rgb = torch.from_numpy(batch["rgb"]).to(device)  # [B,T,H,W,3] in [0,1]
    target = torch.from_numpy(batch["target"]).to(device)  # [B,T,H,W] in [0,1]
    x = rgb.permute(0, 4, 1, 2, 3) * 2.0 - 1.0  # [B,3,T,H,W]
    d = target.unsqueeze(1).expand(-1, 3, -1, -1, -1) * 2.0 - 1.0  # disparity as RGB, like the frames
    with torch.no_grad():
        z = encode_latents(nets, x.to(dtype))  # [B,16,t,h,w] float32
        z_target = encode_latents(nets, d.to(dtype))
    out = run_transformer(model, z.to(dtype), text_dim=text_dim)
    usable = torch.from_numpy(batch["usable"]).to(device)
    mask = None
    if cfg.mask_invalid:
        valid = torch.from_numpy(batch["valid"]).to(device)
        mask = latent_mask(valid) * usable.view(-1, 1, 1, 1, 1)
    elif not bool(usable.all()):
        mask = usable.float().view(-1, 1, 1, 1, 1).expand(-1, 1, *z.shape[2:])
    if mask is not None and bool((mask == 1).all()):
        mask = None  # everything valid: exactly the official loss
    parts = dvd_loss(out, z_target, cfg.lam, mask=mask)
    return parts, int(usable.sum())


# ---------------------------------------------------------------------------------------------
# training


def train(cfg: TrainConfig, *, on_step=None) -> TrainResult:
    """Run (or resume) a training run; returns where the weights are. `on_step(step, record)` after each step."""
    from dvd_vfx.model.predictor import DVDNetworks
    from dvd_vfx.model.weights import find_weight_files, resolve_weights_dir, weights_sha256
    from dvd_vfx.train.dataset import load_dataset

    cfg.check()
    run_dir = Path(cfg.run_dir).expanduser().resolve()
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"-o {run_dir}: exists and is not a folder; pick a run folder")
    dataset = load_dataset(cfg.data)
    files = find_weight_files(resolve_weights_dir(cfg.weights))
    resume_from = find_resume_checkpoint(run_dir, cfg.resume)
    if resume_from is None and list_checkpoints(run_dir):
        last = list_checkpoints(run_dir)[-1][1]
        raise InputError(f"-o {run_dir} already holds a training run (latest checkpoint {last.name}); pass --resume "
                         "to continue it, or train into a new -o folder")

    accelerator = _accelerator(cfg)
    device, main = accelerator.device, accelerator.is_main_process
    trajectory = {**cfg.trajectory(), "mixed_precision": str(accelerator.mixed_precision),
                  "dataset_sha256": sha256_file(dataset.path), "weights_sha256": weights_sha256(files),
                  "processes": accelerator.num_processes}
    state = None
    if resume_from is not None:
        state = load_resume_state(resume_from, trajectory, cfg.steps)
    elif cfg.resume not in (None, False) and main:
        log.info("no checkpoint in %s yet: starting at step 0", run_dir)
    # Every clip is probed here, before any model is loaded: data problems fail fast.
    sampler = Sampler(dataset, cfg, seed=cfg.seed + 7919 * accelerator.process_index)

    # 1. Networks: the production loader (the release's LoRA merged), then a fresh LoRA
    train_step = _prepare_training(cfg, files, accelerator, state)

    # 2. Data: this process's sampler, restored to where the checkpoint stopped
    step, records, elapsed = 0, [], 0.0
    if state is not None:
        step, records, elapsed = restore_progress(state, resume_from, sampler, accelerator.process_index)
        if main:
            log.info("resuming %s at step %d", resume_from, step)
    # model id in EXR headers and cache identities: the base model's, plus this run's name
    info = {"trajectory": trajectory, "source_weights": str(files.folder),
            "model_id": f"{files.model_id}+{run_dir.resolve().name}"}
    checkpoints = CheckpointWriter(run_dir, accelerator, source=files, rank=cfg.rank,
                                   alpha=float(cfg.alpha or cfg.rank), info=info, trajectory=trajectory,
                                   keep=cfg.keep_checkpoints, last=resume_from)
    if main:  # nothing is written before everything has loaded
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoints.remove_partial()
        _write_json(run_dir / "run.json", {"config": jsonable(asdict(cfg)), "trajectory": trajectory,
                                           "weights_folder": str(files.folder), "dataset": str(dataset.path)})
    accelerator.wait_for_everyone()
    prefetch = Prefetcher(sampler, cfg.workers)
    losslog = LossLog(run_dir, records, write=main)

    # 3. The loop
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
               disable=not (main and cfg.progress), file=sys.stderr)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_run = time.perf_counter()
    steps_this_run = 0
    try:
        while step < cfg.steps:
            t0 = time.perf_counter()
            losses = train_step.run(prefetch, step=step + 1, last_checkpoint=checkpoints.last)
            step += 1
            steps_this_run += 1
            seconds = time.perf_counter() - t0
            elapsed += seconds
            record = {"step": step, "loss": losses.loss, "l2": losses.l2, "sp": losses.sp, "temp": losses.temp,
                      "lr": train_step.lr, "seconds": round(seconds, 4), "kinds": "+".join(losses.kinds),
                      "kept": losses.kept}
            if not losses.finite():
                raise InputError(f"the loss became {losses.loss} at step {step}; lower --lr, or resume from the last "
                                 "checkpoint (--resume) with a lower --lr")
            losslog.add(record)
            bar.update(1)
            bar.set_postfix(loss=f"{losses.loss:.4f}", l2=f"{losses.l2:.4f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                checkpoints.save(step, train_step.model, train_step.optimizer, sampler_state=prefetch.state(),
                                 records=losslog.records, elapsed=elapsed)
            if on_step is not None:
                on_step(step, record)
    except KeyboardInterrupt:
        if main:
            last = checkpoints.last
            where = f"the last checkpoint is {last}" if last else "no checkpoint was written yet"
            log.warning("stopped at step %d; %s: run the same command with --resume to continue", step, where)
        raise
    finally:
        bar.close()
        prefetch.close()

    # 4. Outputs: final weights, optional merge, summary, curves
    nets = train_step.nets
    unwrapped = accelerator.unwrap_model(train_step.model).eval()
    result = TrainResult(run_dir=run_dir, step=step, records=losslog.records,
                         networks=DVDNetworks(unwrapped, nets.vae, nets.latents_mean, nets.latents_std))
    if checkpoints.last is None or _step_of(checkpoints.last) != step:
        checkpoints.save(step, train_step.model, train_step.optimizer, sampler_state=prefetch.state(),
                         records=losslog.records, elapsed=elapsed)
    if main:
        result.final = _publish_final(checkpoints.last, run_dir / "final")
        if cfg.merge:
            result.merged = export.merge_folder(result.final, run_dir / "merged")
        result.summary = _summary(result, steps_this_run, time.perf_counter() - t_run, device, accelerator)
        _write_json(run_dir / "log.json", {"summary": result.summary, "config": jsonable(asdict(cfg)),
                                           "trajectory": trajectory})
        if result.records:
            plot_losses(result.records, run_dir / "loss.png")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result


def _summary(result: TrainResult, steps_this_run: int, wall: float, device: torch.device, accelerator) -> dict:
    """log.json's summary of a finished run."""
    recs = result.records
    return {
        "steps": result.step, "steps_this_run": steps_this_run, "seconds_this_run": round(wall, 2),
        "steps_per_second": round(steps_this_run / wall, 4) if steps_this_run and wall > 0 else None,
        "device": str(device), "processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "loss_first5": _mean([r["loss"] for r in recs[:5]]), "loss_last5": _mean([r["loss"] for r in recs[-5:]]),
        "final": str(result.final), "merged": str(result.merged) if result.merged else None,
        **_peak_memory(device)}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None
