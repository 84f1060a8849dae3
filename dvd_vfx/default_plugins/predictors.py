"""The built-in "dvd" predictor: DVD on Wan2.1-T2V-1.3B (torch and weights needed only when built)."""

from __future__ import annotations

from dvd_vfx.hookspecs import hookimpl
from dvd_vfx.plugins import MODEL_SWITCHES, ModelSettings, PredictorFactory


def create_dvd(settings: ModelSettings):
    from dvd_vfx.model.predictor import DVDPredictor

    return DVDPredictor(settings.weights, device=settings.device, dtype=settings.dtype,
                        vae_tiling=settings.vae_tiling, offload=settings.offload,
                        attention=getattr(settings, "attention", "auto"),
                        **{name: getattr(settings, name, False) for name in MODEL_SWITCHES})


@hookimpl(trylast=True)
def dvd_vfx_register_predictors():
    return [PredictorFactory(name="dvd", create=create_dvd,
                             description="DVD video depth (Wan2.1-T2V-1.3B, one forward pass per window)")]
