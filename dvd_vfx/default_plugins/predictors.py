"""The built-in "dvd" predictor: DVD on Wan2.1-T2V-1.3B (torch and weights needed only when built)."""

from __future__ import annotations

from dvd_vfx.hookspecs import hookimpl
from dvd_vfx.plugins import ModelSettings, PredictorFactory


def create_dvd(settings: ModelSettings):
    from dvd_vfx.model.predictor import DVDPredictor

    return DVDPredictor(settings.weights, device=settings.device, dtype=settings.dtype,
                        vae_tiling=settings.vae_tiling, offload=settings.offload,
                        attention=getattr(settings, "attention", "auto"),
                        fp32_decoder_head=getattr(settings, "fp32_decoder_head", False),
                        vae_tiling_auto=getattr(settings, "vae_tiling_auto", False),
                        vae_channels_last=getattr(settings, "vae_channels_last", False),
                        cudnn_benchmark=getattr(settings, "cudnn_benchmark", False),
                        compile=getattr(settings, "compile", False))


@hookimpl(trylast=True)
def dvd_vfx_register_predictors():
    return [PredictorFactory(name="dvd", create=create_dvd,
                             description="DVD video depth (Wan2.1-T2V-1.3B, one forward pass per window)")]
