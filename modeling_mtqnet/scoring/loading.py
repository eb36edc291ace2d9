"""A saved MTQ-Net folder loaded for scoring, with the feature extractor that goes with it (`mtqnet score`, the web
app)."""

from __future__ import annotations

import torch

from ..model.feature_extraction_mtqnet import MTQNetFeatureExtractor


# `--dtype` names -> torch dtypes. bf16 runs the CNN, BLSTM and SSL encoder in bfloat16 (the STFT, sinc filters and
# score heads stay float32, see `_keep_in_fp32_modules_strict`); fp16 is for GPUs.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def load_model(model: str, device: str | torch.device = "cpu", dtype: str = "fp32"):
    """(model in eval mode on `device` at `dtype` (a `DTYPES` name), its feature extractor): the folder's saved
    extractor, else the config's."""
    from ..model.modeling_mtqnet import MTQNetForSpeechQualityAssessment

    loaded = MTQNetForSpeechQualityAssessment.from_pretrained(model, dtype=DTYPES[dtype]).to(device).eval()
    try:
        extractor = MTQNetFeatureExtractor.from_pretrained(model)
    except (OSError, ValueError):
        extractor = MTQNetFeatureExtractor.from_model_config(loaded.config)
    # A folder saved before the one-pass limit existed says 600 s; the model's bounded-memory limit wins.
    if extractor.max_duration_s is None or extractor.max_duration_s > loaded.config.one_pass_limit_s:
        extractor.max_duration_s = loaded.config.one_pass_limit_s
    return loaded, extractor

