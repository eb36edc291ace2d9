"""Frozen-SSL feature cache: a frozen encoder's features never change, so compute them once per clip.

Within a run they become an `ssl_hidden_states` column of the dataset. Across runs (the demo's methods and seeds,
a study's arms, a rebuild) they are also kept on disk, one file per clip, under a folder named by a hash of the
encoder's weights and chosen layer: a clip already encoded by the same encoder is read back instead of encoded again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..model.modeling_mtqnet import MTQNetForSpeechQualityAssessment

#: Where features are kept across runs unless `--ssl_cache_dir` (or MTQNET_SSL_CACHE) says otherwise; "none" turns
#: the disk cache off.
DEFAULT_SSL_CACHE_DIR = Path(os.environ.get("MTQNET_SSL_CACHE", Path.home() / ".cache" / "mtqnet" / "ssl_features"))


#: Config entries that say where a config came from, not what the encoder computes.
PROVENANCE_KEYS = ("architectures", "transformers_version", "dtype", "torch_dtype", "_name_or_path")


def encoder_fingerprint(model: MTQNetForSpeechQualityAssessment) -> str:
    """A hash of the SSL encoder's weights, its config and the chosen layer: features of one encoder share a folder,
    whether its config came from the encoder's folder, a teacher's or a student's."""
    trunk = model.mtqnet
    config = {k: v for k, v in trunk.config.ssl_config.to_dict().items() if k not in PROVENANCE_KEYS}
    digest = hashlib.sha1(f"{json.dumps(config, sort_keys=True, default=str)}|{trunk.config.ssl_layer}".encode())
    for name, tensor in sorted(trunk.ssl_encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_ssl_features(dataset, model: MTQNetForSpeechQualityAssessment, desc: str = "caching SSL features",
                       cache_dir: Path | None = DEFAULT_SSL_CACHE_DIR):
    """Add an `ssl_hidden_states` column (T_ssl x hidden float32 per clip), computed once with the frozen encoder.

    The collator pads it and the model then skips the encoder (`ssl_hidden_states=`), so later epochs cost only the
    trunk. Clips are encoded at their own length, exactly as the uncached model does. With `cache_dir` (None: off),
    each clip's features are also stored there (float32 .npy, named by a hash of the clip's samples) and reused.
    """
    trunk = model.mtqnet
    if not trunk.can_cache_ssl_features:
        raise ValueError("Only a frozen SSL encoder with a fixed layer (not 'weighted') can be cached")
    was_training = trunk.training
    trunk.eval()
    device = next(trunk.parameters()).device
    folder = Path(cache_dir) / encoder_fingerprint(model) if cache_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)

    def encode(example: dict) -> dict:
        samples = np.asarray(example["input_values"], dtype=np.float32)
        stored = folder / f"{hashlib.sha1(samples.tobytes()).hexdigest()}.npy" if folder is not None else None
        if stored is not None and stored.is_file():
            return {"ssl_hidden_states": np.load(stored)}
        waveform = torch.as_tensor(samples, device=device)[None]
        with torch.no_grad():
            hidden = trunk.ssl_hidden_states(waveform, torch.tensor([waveform.shape[1]], device=device))
        features = hidden[0].float().cpu().numpy()
        if stored is not None:
            partial = stored.with_name(f"{stored.stem}.{os.getpid()}.tmp.npy")
            np.save(partial, features)
            os.replace(partial, stored)  # atomic: a reader never sees half a file
        return {"ssl_hidden_states": features}

    try:
        return dataset.map(encode, desc=desc)
    finally:
        trunk.train(was_training)


__all__ = ["DEFAULT_SSL_CACHE_DIR", "cache_ssl_features", "encoder_fingerprint"]
