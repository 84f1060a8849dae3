"""The DVD predictor: one window of frames -> disparity, in ONE transformer pass.

Official semantics (DVD's own inference):
  x = 2*frames - 1                      [1,3,T,H,W]
  z = (VAE posterior mean - mean)/std   [1,16,t,h,w]   t = (T-1)/4 + 1, h = H/8, w = W/8
  out = DiT(z, timestep 500, zero text context [1,512,text_dim])   the depth latent (target "x")
  video = VAE decode(out*std + mean), clamp [-1,1], (x+1)/2, mean over RGB -> [T,H,W] in [0,1]
No sampler loop, no scheduler step, no text encoder.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass

import numpy as np
import torch

from dvd_vfx.errors import DeviceMemoryError, InputError
from dvd_vfx.model.weights import WeightFiles, find_weight_files, resolve_weights_dir, weights_sha256

log = logging.getLogger("dvd_vfx.model")

TIMESTEP = 500.0  # = 1000 * denoise_step 0.5, DVD's "structural anchor"
TEXT_TOKENS = 512
_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
           "fp32": torch.float32, "float32": torch.float32}


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise InputError(f"unknown --device {device!r}; use auto, cuda, cuda:N, cpu or mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: this PyTorch has no CUDA device; use --device cpu or auto")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps: Metal is not available in this PyTorch; use --device cpu or auto")
    return torch.device(device)


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """bf16 on CUDA, fp32 elsewhere, unless asked."""
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise InputError(f"unknown --dtype {dtype!r}; use auto, bf16, fp16 or fp32")
    return _DTYPES[dtype]


def check_window(frames: np.ndarray) -> None:
    """The predictor's input contract; the pipeline above pads windows to satisfy it."""
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", type(frames).__name__)
        raise InputError(f"frames must be a float32 array [T,H,W,3], got {shape}")
    t, h, w, _ = frames.shape
    if t < 1 or (t - 1) % 4:
        raise InputError(f"window has {t} frames; DVD needs 4n+1 frames (1, 5, 9, ... 81): pad the window")
    if h < 16 or w < 16 or h % 16 or w % 16:
        raise InputError(f"frame size {w}x{h} is not a multiple of 16; resize or pad to multiples of 16")


@dataclass
class DVDNetworks:
    transformer: torch.nn.Module
    vae: torch.nn.Module
    latents_mean: torch.Tensor  # [1,16,1,1,1] float32
    latents_std: torch.Tensor

    @classmethod
    def from_modules(cls, transformer: torch.nn.Module, vae: torch.nn.Module) -> "DVDNetworks":
        z = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32).view(1, z, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std, dtype=torch.float32).view(1, z, 1, 1, 1)
        return cls(transformer, vae, mean, std)


def encode_latents(nets: DVDNetworks, x: torch.Tensor) -> torch.Tensor:
    """[B,3,T,H,W] in [-1,1] -> normalised latent float32 [B,16,t,h/8,w/8]: VAE posterior mean, Wan statistics.

    Shared by inference and training (RGB and the 3-channel disparity target alike).
    """
    mu = nets.vae.encode(x).latent_dist.mean
    return (mu.float() - nets.latents_mean.to(mu.device)) / nets.latents_std.to(mu.device)


def run_transformer(transformer: torch.nn.Module, z: torch.Tensor, *, text_dim: int | None = None) -> torch.Tensor:
    """ONE DiT pass at timestep 500 with a zero text context: the output IS the depth latent (target "x").

    `text_dim` is needed when `transformer` is wrapped (DDP) and has no `.config`.
    """
    text_dim = transformer.config.text_dim if text_dim is None else text_dim
    b = z.shape[0]
    context = torch.zeros(b, TEXT_TOKENS, text_dim, dtype=z.dtype, device=z.device)
    timestep = torch.full((b,), TIMESTEP, device=z.device)
    return transformer(hidden_states=z, timestep=timestep, encoder_hidden_states=context, return_dict=False)[0]


# Peak live bytes of the untiled full-size Wan VAE in bf16, replayed on the meta device
# (dvd_vfx.model.memory; tests/test_memory_plan.py checks these against replays): the causal decode
# holds a per-frame working set and cache that scale with the pixels of one frame, plus the growing
# output that scales with pixels x frames. Fitted exactly from replays (decode 10906 + 6.25 t B a
# pixel, encode 7449 + 12.25 t, input included), rounded up: 81x480x848 decodes in 4.34 GiB,
# 81x720x1280 in 9.82 GiB. float32 doubles every term. Weights in bf16: DiT 2.6 GiB + VAE 0.24 GiB.
_DECODE_BYTES_PER_PIXEL, _DECODE_BYTES_PER_PIXEL_FRAME = 10912, 6.5
_ENCODE_BYTES_PER_PIXEL, _ENCODE_BYTES_PER_PIXEL_FRAME = 7456, 12.5
_WEIGHTS_BYTES_BF16 = int(2.85 * 2**30)


def _scale(dtype: torch.dtype) -> int:
    return 2 if dtype == torch.float32 else 1


def vae_decode_bytes(t: int, h: int, w: int, dtype: torch.dtype = torch.bfloat16) -> int:
    """Estimated peak activation bytes of the untiled VAE decode of a t-frame h x w window."""
    return int(_scale(dtype) * h * w * (_DECODE_BYTES_PER_PIXEL + _DECODE_BYTES_PER_PIXEL_FRAME * t))


def vae_encode_bytes(t: int, h: int, w: int, dtype: torch.dtype = torch.bfloat16) -> int:
    """Estimated peak activation bytes of the untiled VAE encode of a t-frame h x w window (input included)."""
    return int(_scale(dtype) * h * w * (_ENCODE_BYTES_PER_PIXEL + _ENCODE_BYTES_PER_PIXEL_FRAME * t))


def untiled_bytes(t: int, h: int, w: int, dtype: torch.dtype = torch.bfloat16, *, offload: bool = False) -> int:
    """GPU memory an untiled window needs: the larger of encode and decode, plus the weights unless offloaded."""
    return (max(vae_decode_bytes(t, h, w, dtype), vae_encode_bytes(t, h, w, dtype))
            + (0 if offload else _WEIGHTS_BYTES_BF16 * _scale(dtype)))


def memory_plan(t: int, h: int, w: int, dtype: torch.dtype, tiling: bool, automatic: bool, *,
                free_bytes: int | None = None, offload: bool = False) -> tuple[str, bool]:
    """What the VAE does for a window of t frames h x w, in words, and whether it fits `free_bytes`
    (None: unknown, assumed to fit). The untiled estimate is `untiled_bytes`; tiled decodes stay
    near one tile's memory (0.85 GiB at 640x480), so they are not estimated here. The plan is said,
    not changed: tiling changes the output (and the cache key), so free memory must not pick it."""
    how = ("automatic: on above 1280x720" if automatic else "--vae-tiling" if tiling else "--no-vae-tiling")
    if tiling:
        return f"VAE tiling on for {t}x{w}x{h} windows ({how})", True
    need = untiled_bytes(t, h, w, dtype, offload=offload)
    message = (f"VAE tiling off for {t}x{w}x{h} windows ({how}); the decode needs about "
               f"{need / 2**30:.1f} GiB with the weights{' offloaded' if offload else ''}")
    if free_bytes is None or need <= free_bytes:
        return message, True
    return (message + f", {free_bytes / 2**30:.1f} GiB are free on the GPU: if it runs out of memory use "
            "--vae-tiling, --offload or a smaller --resolution or --window"), False


# What the CUDA context and the caching allocator's slack take on top of the replayed peak.
_SLACK_BYTES = 1 << 30


def choose_vae_tiling(t: int, h: int, w: int, dtype: torch.dtype, device_type: str, free_bytes: int | None, *,
                      offload: bool = False, staged: bool = False) -> tuple[bool, str]:
    """--vae-tiling-auto: tile when the untiled window (estimate + 1 GiB of context and slack) would not
    fit the GPU's free memory. On a CPU (or an unknown free amount) tiling stays off. Returns the choice
    and the line the render prints. `staged`: the next window's input is held on the GPU meanwhile
    (DVDPredictor.stage, dvd_vfx.model.staging): counted in the estimate."""
    from dvd_vfx.model.staging import staged_bytes

    need = untiled_bytes(t, h, w, dtype, offload=offload) + (staged_bytes(t, h, w) if staged else 0)
    if device_type != "cuda" or free_bytes is None:
        return False, (f"VAE tiling: off (--vae-tiling-auto on {device_type}: no GPU memory to fit; "
                       f"{t}x{w}x{h} windows)")
    tiling = need + _SLACK_BYTES > free_bytes
    what = f"estimate {need / 2**30:.1f} GiB" + (" with the next window staged" if staged else "")
    return tiling, (f"VAE tiling: {'on' if tiling else 'off'} ({what} + 1 GiB slack, "
                    f"free {free_bytes / 2**30:.1f} GiB; {t}x{w}x{h} windows)")


class _FP32Head(torch.nn.Module):
    """A causal convolution computed in float32 from its (bf16) input and cache: float32 output."""

    def __init__(self, conv: torch.nn.Module):
        super().__init__()
        import copy

        self.conv = copy.deepcopy(conv).float()

    def forward(self, x, cache_x=None):
        return self.conv(x.float(), None if cache_x is None else cache_x.float())


# Loaded networks are shared across predictors, windows and shots of one process.
_LOADED: dict[tuple, tuple[DVDNetworks, dict]] = {}
_LOAD_LOCK = threading.Lock()
# One window at a time per process: the loaded networks are shared by every predictor (_LOADED), and
# --compile (compiled forwards patched on them), --vae-channels-last (a global for compiled code) and
# --cudnn-benchmark (torch's global flag) switch process-wide state for the window they run; a second
# render in the same process must not run its window under the first one's switches. (One GPU runs
# one window at a time anyway.)
_WINDOW_LOCK = threading.Lock()


class DVDPredictor:
    """Maps a window float32 [T,H,W,3] in [0,1] to disparity float32 [T,H,W] in [0,1] (larger = nearer)."""

    name = "dvd"

    def __init__(self, weights: str | None = None, *, device: str = "auto", dtype: str | None = None,
                 vae_tiling: bool | None = None, offload: bool = False, networks: DVDNetworks | None = None,
                 attention: str = "auto", fold_cross_attention: bool = True, fp32_decoder_head: bool = False,
                 vae_tiling_auto: bool = False, vae_channels_last: bool = False, cudnn_benchmark: bool = False,
                 compile: bool = False):
        from dvd_vfx.model.attention import check_attention

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        check_attention(attention, self.device)
        self.attention = attention
        if compile:  # torch.compile of the DiT blocks and VAE chunks (dvd_vfx.model.compile)
            from dvd_vfx.model.compile import check_compile

            check_compile(self.device)
        self.compile = compile
        self.fold_cross_attention = fold_cross_attention  # bit-identical (dvd_vfx.model.attention)
        # the VAE decoder's last convolution in float32 (its output unrounded to bf16: no 1/512 steps
        # near the ends of the range); departs from the official numerics on purpose, so it is recorded
        self.fp32_decoder_head = fp32_decoder_head and self.dtype != torch.float32
        self._heads: dict[int, torch.nn.Module] = {}
        self._plans_said: set = set()  # the window sizes whose memory plan was said (memory_plan)
        # the VAE's causal convolutions in channels_last_3d: other kernels, other rounding (recorded)
        self.vae_channels_last = vae_channels_last
        # cuDNN times its convolution algorithms for the shot's shapes and may pick differently from run
        # to run (recorded, not bit-reproducible); CUDA only: elsewhere it is dropped (a no-op)
        self.cudnn_benchmark = cudnn_benchmark and self.device.type == "cuda"
        if cudnn_benchmark and not self.cudnn_benchmark:
            log.info("--cudnn-benchmark: no effect on %s (cuDNN is CUDA's)", self.device.type)
        if vae_tiling_auto and vae_tiling is not None:
            raise InputError("--vae-tiling-auto decides tiling itself; pass it without --vae-tiling/--no-vae-tiling")
        self.vae_tiling = vae_tiling
        # --vae-tiling-auto: vae_tiling is resolved per working size by plan_window (from free GPU memory)
        self.vae_tiling_auto = vae_tiling_auto
        self.offload = offload and self.device.type != "cpu"
        self._networks = networks
        self._files: WeightFiles | None = None
        self._info: dict = {}
        if networks is None:
            self._files = find_weight_files(resolve_weights_dir(weights))

    # -- identity (what goes into cache keys and EXR headers) ---------------------------------
    @property
    def model_id(self) -> str:
        return self._files.model_id if self._files else "in-memory"

    def identity(self) -> dict:
        tiling = {None: "auto", True: "on", False: "off"}[self.vae_tiling]
        if self.vae_tiling_auto and self.vae_tiling is None:  # (render_shot resolves it first: plan_window)
            tiling = "auto-memory"
        return {
            "predictor": self.name,
            "model_id": self.model_id,
            "weights_sha256": weights_sha256(self._files) if self._files else "in-memory",
            "dtype": str(self.dtype).removeprefix("torch."),
            "device_class": self.device.type,
            "vae_tiling": tiling,
            # a chosen kernel rounds its own way; "auto" is not recorded (cache keys from before stay valid)
            **({"attention": self.attention} if self.attention != "auto" else {}),
            **({"decoder_head": "fp32"} if self.fp32_decoder_head else {}),
            **({"vae_memory_format": "channels_last_3d"} if self.vae_channels_last else {}),
            **({"cudnn_benchmark": "on"} if self.cudnn_benchmark else {}),
            # compiled kernels round their own way; off is not recorded (earlier cache keys stay valid)
            **({"compile": "inductor"} if self.compile else {}),
        }

    def plan_window(self, t: int, h: int, w: int, *, split: bool = False) -> None:
        """Called by render_shot with the shot's window size before identity(): --vae-tiling-auto resolves
        to on/off here (from the GPU's free memory), said in one line and recorded in the identity as
        "on"/"off" like --vae-tiling/--no-vae-tiling (the same output, so the same cache entries).
        `split`: a part of a split render (farm task), refused: parts on other GPUs could decide otherwise."""
        if not self.vae_tiling_auto:
            return
        if split:
            raise InputError("--vae-tiling-auto: the parts of a split render (farm tasks) run on GPUs with "
                             "different free memory and could decide differently (their windows would not "
                             "assemble); pass --vae-tiling or --no-vae-tiling")
        free, resident = None, False
        if self.device.type == "cuda":
            # what this process can use: the driver's free memory, the blocks PyTorch's allocator holds unused
            # (a warm-up window, an earlier shot of a batch), and the weights when they are on the GPU already
            free = (torch.cuda.mem_get_info(self.device)[0] + torch.cuda.memory_reserved(self.device)
                    - torch.cuda.memory_allocated(self.device))
            resident = not self.offload and self._weights_on_device()
        self.vae_tiling, message = choose_vae_tiling(t, h, w, self.dtype, self.device.type, free,
                                                     offload=self.offload or resident,
                                                     staged=self.device.type == "cuda")
        log.info(message)

    # -- loading ------------------------------------------------------------------------------
    def load(self) -> DVDNetworks:
        from dvd_vfx.model.attention import fold_cross_attention
        from dvd_vfx.model.vae_ops import lean_vae

        if self._networks is None:
            self._networks = self._load()
        if self.fold_cross_attention:  # (once per network; inference only, bit-identical)
            fold_cross_attention(self._networks.transformer)
        # bit-identical: upsample without float32 copies, padding inside the causal convolutions,
        # RMS norm + SiLU fused (dvd_vfx.model.vae_ops; once per network)
        lean_vae(self._networks.vae)
        return self._networks

    def _load_key(self) -> tuple:
        stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in self._files.files())
        return (stats, self.dtype, str(self.device), self.offload)

    def _weights_on_device(self) -> bool:
        """Whether this predictor's networks are loaded on its GPU already (in-memory, or loaded by this process)."""
        nets = self._networks
        if nets is None and self._files is not None:
            with _LOAD_LOCK:
                nets = _LOADED.get(self._load_key(), (None, None))[0]
        param = None if nets is None else next(nets.transformer.parameters(), None)
        return param is not None and param.device.type == self.device.type != "cpu"

    def _load(self) -> DVDNetworks:
        key = self._load_key()
        with _LOAD_LOCK:
            if key not in _LOADED:
                from dvd_vfx.model.loader import load_transformer, load_vae

                transformer, info = load_transformer(self._files, self.dtype)
                vae = load_vae(self._files, self.dtype)
                nets = DVDNetworks.from_modules(transformer, vae)
                if not self.offload:
                    nets.transformer.to(self.device)
                    nets.vae.to(self.device)
                _LOADED[key] = (nets, info)
            nets, self._info = _LOADED[key]
        return nets

    # -- inference ----------------------------------------------------------------------------
    def stage(self, frames: np.ndarray):
        """Called by the render's prefetch thread for the NEXT window while predict runs the current one
        (docs/hooks.md, the predictor contract); predict takes what it returns. On CUDA: the frames copied
        into a reused pinned host buffer and uploaded non-blocking on a side stream
        (dvd_vfx.model.staging); elsewhere (CPU, MPS) the frames themselves: the plain path."""
        check_window(frames)
        stager = self._stager()
        if stager is None:
            return frames
        try:
            return stager.stage(frames)
        except torch.OutOfMemoryError:  # (raised again on the render's thread: the same exit code as predict's)
            raise self._out_of_memory("staging the next", frames.shape, "") from None

    def _out_of_memory(self, what: str, shape: tuple, why: str, offload: str = "") -> DeviceMemoryError:
        """The error for running out of device memory with a window of `shape` (its cached blocks freed)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        t, h, w = shape[:3]
        return DeviceMemoryError(
            f"out of {self.device.type.upper()} memory {what} {t}-frame {w}x{h} window (exit code 75: a farm "
            f"retries it{why}); if it keeps happening use {offload}--vae-tiling, a smaller --resolution or --window, "
            "or --preset low-vram")

    def _stager(self):
        """The CUDA stager, made on first use; None on CPU/MPS (tests may set self.__dict__["_staging"])."""
        if "_staging" not in self.__dict__:
            stager = None
            if self.device.type == "cuda":
                from dvd_vfx.model.staging import Stager

                stager = Stager(self.device)
            self.__dict__["_staging"] = stager
        return self.__dict__["_staging"]

    def predict(self, frames) -> np.ndarray:
        """frames: float32 [T,H,W,3] in [0,1], or what stage() returned for them."""
        from dvd_vfx.model.attention import attention_backend
        from dvd_vfx.model.vae_ops import channels_last_3d, cudnn_benchmark

        from dvd_vfx.model.staging import StagedWindow

        if not isinstance(frames, StagedWindow):  # (a staged window was checked by stage)
            check_window(frames)
        elif frames.tensor is None:
            raise InputError("predict got a staged window it has predicted already; stage the frames again")
        elif self._stager() is None or frames.tensor.device.type != self.device.type:
            raise InputError(f"predict got a window staged on {frames.tensor.device} but this predictor runs on "
                             f"{self.device} without staging: pass it the frames, or what its own stage() returned")
        try:
            with _WINDOW_LOCK, attention_backend(self.attention), channels_last_3d(self.vae_channels_last), \
                    cudnn_benchmark(self.cudnn_benchmark, self.device), self._compiled(frames.shape):
                return self._predict(frames)
        except torch.OutOfMemoryError:
            raise self._out_of_memory("for a", frames.shape, ", another process may have held the memory",
                                      "--offload, ") from None
        except Exception as exc:
            if self.compile:
                from dvd_vfx.model.compile import compile_failed

                if compile_failed(exc):
                    detail = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
                    raise InputError(f"--compile: torch.compile failed on a {frames.shape[0]}-frame "
                                     f"{frames.shape[2]}x{frames.shape[1]} window on {self.device.type} ({detail}); "
                                     "render without --compile") from None
            if not isinstance(exc, RuntimeError):
                raise
            if self.attention != "auto" and "No available kernel" in str(exc):
                raise InputError(f"--attention {self.attention}: PyTorch has no such attention kernel for this "
                                 f"window on {self.device.type} ({self.dtype}); use --attention auto") from None
            raise

    @torch.inference_mode()
    def _predict(self, frames: np.ndarray) -> np.ndarray:
        nets = self.load()
        dev, dtype = self.device, self.dtype
        t, h, w, _ = frames.shape
        if self.vae_tiling_auto and self.vae_tiling is None:  # (predict without render_shot)
            self.plan_window(t, h, w)
        tiling = self.vae_tiling if self.vae_tiling is not None else (h * w > 720 * 1280)
        self._say_memory_plan(t, h, w, tiling)
        if tiling:
            nets.vae.enable_tiling()
        else:
            nets.vae.disable_tiling()
        mean, std = nets.latents_mean.to(dev), nets.latents_std.to(dev)

        # 1. Frames -> [-1, 1]                                      [1,3,T,H,W]
        if isinstance(frames, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).to(dev)
        else:  # staged (stage): the frames, uploaded on the side stream; wait for the copy
            x = self._stager().take(frames)
        x = (x.permute(3, 0, 1, 2).unsqueeze(0) * 2.0 - 1.0).to(dtype)

        # 2. Encode: posterior mean, Wan latent normalisation       [1,16,t,h/8,w/8]
        with self._on_device(nets.vae):
            z = encode_latents(nets, x).to(dtype)

        # 3. ONE transformer pass at timestep 500, zero text context: the output IS the depth latent
        with self._on_device(nets.transformer):
            out = run_transformer(nets.transformer, z)

        # 4. Decode: de-normalise, VAE decode, clamp, [0,1], mean of RGB   [T,H,W]
        latents = (out.float() * std + mean).to(dtype)
        with self._on_device(nets.vae), self._decoder_head(nets.vae):
            video = nets.vae.decode(latents, return_dict=False)[0]
        video = (video.float().clamp(-1.0, 1.0) + 1.0) / 2.0
        disparity = video.mean(dim=1)[0]
        return disparity.cpu().numpy().astype(np.float32, copy=False)

    @contextlib.contextmanager
    def _compiled(self, shape: tuple):
        """With --compile: the DiT blocks and VAE chunks compiled around one window (dvd_vfx.model.compile);
        the first window of a size compiles (said, with the time it took), the next ones reuse the graphs."""
        if not self.compile:
            yield
            return
        import time

        from dvd_vfx.model.compile import compiled, graphs_compiled

        nets = self.load()
        said = self.__dict__.setdefault("_compiles_said", set())
        first = tuple(shape) not in said
        if first:
            said.add(tuple(shape))
            t, h, w = shape[:3]
            log.info("--compile: compiling the DiT blocks and VAE chunks for %dx%dx%d windows (once per "
                     "window size; minutes on a CPU)", t, w, h)
        graphs, start = graphs_compiled(), time.perf_counter()
        with compiled(nets.transformer, nets.vae):
            yield
        if first:
            log.info("--compile: first window took %.1f s including compiling %d graphs",
                     time.perf_counter() - start, graphs_compiled() - graphs)

    def _say_memory_plan(self, t: int, h: int, w: int, tiling: bool) -> None:
        """On CUDA, say the VAE's plan for this window size once (tiling, estimated memory) and warn when it
        will not fit the free memory (the choice itself is unchanged: it changes the output, see memory_plan)."""
        said = self._plans_said
        if (t, h, w, tiling) in said:
            return
        said.add((t, h, w, tiling))
        if self.device.type != "cuda":  # (the estimate is the full-size model's GPU memory)
            log.debug("VAE tiling %s for %dx%dx%d windows", "on" if tiling else "off", t, w, h)
            return
        free, _ = torch.cuda.mem_get_info(self.device)
        message, fits = memory_plan(t, h, w, self.dtype, tiling, self.vae_tiling is None, free_bytes=free,
                                    offload=self.offload)
        (log.info if fits else log.warning)(message)

    @contextlib.contextmanager
    def _decoder_head(self, vae: torch.nn.Module):
        """With fp32_decoder_head: the decoder's conv_out swapped for a float32 copy while decoding
        (the networks are shared by predictors of one process, so the stock layer goes back after)."""
        if not self.fp32_decoder_head:
            yield
            return
        stock = vae.decoder.conv_out
        head = self._heads.get(id(vae))
        if head is None:
            head = self._heads[id(vae)] = _FP32Head(stock)
        head.to(next(stock.parameters()).device)
        vae.decoder.conv_out = head
        try:
            yield
        finally:
            vae.decoder.conv_out = stock

    @contextlib.contextmanager
    def _on_device(self, module: torch.nn.Module):
        """Model offload: keep a network on the GPU only while it runs (small-VRAM cards)."""
        if not self.offload:
            yield
            return
        module.to(self.device)
        try:
            yield
        finally:
            module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
