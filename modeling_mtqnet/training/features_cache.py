"""Frozen-SSL feature cache: a frozen encoder's features never change, so compute them once per clip."""

from __future__ import annotations

import numpy as np
import torch

from ..model.modeling_mtqnet import MTQNetForSpeechQualityAssessment


def cache_ssl_features(dataset, model: MTQNetForSpeechQualityAssessment, desc: str = "caching SSL features"):
    """Add an `ssl_hidden_states` column (T_ssl x hidden float32 per clip), computed once with the frozen encoder.

    The collator pads it and the model then skips the encoder (`ssl_hidden_states=`), so later epochs cost only the
    trunk. Clips are encoded at their own length, exactly as the uncached model does.
    """
    trunk = model.mtqnet
    if not trunk.can_cache_ssl_features:
        raise ValueError("Only a frozen SSL encoder with a fixed layer (not 'weighted') can be cached")
    was_training = trunk.training
    trunk.eval()
    device = next(trunk.parameters()).device

    def encode(example: dict) -> dict:
        waveform = torch.as_tensor(np.asarray(example["input_values"], dtype=np.float32), device=device)[None]
        with torch.no_grad():
            hidden = trunk.ssl_hidden_states(waveform, torch.tensor([waveform.shape[1]], device=device))
        return {"ssl_hidden_states": hidden[0].float().cpu().numpy()}

    try:
        return dataset.map(encode, desc=desc)
    finally:
        trunk.train(was_training)


__all__ = ["cache_ssl_features"]
