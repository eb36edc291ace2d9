"""Test helpers: tiny models built from configs (nothing is downloaded), test audio, a package-free subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import modeling_mtqnet  # noqa: E402,F401  (registers the Auto classes and the pipeline)
from modeling_mtqnet import MTQNetConfig, MTQNetFeatureExtractor, MTQNetForSpeechQualityAssessment  # noqa: E402
from modeling_mtqnet.configuration_mtqnet import tiny_ssl_config  # noqa: E402,F401

SAMPLING_RATE = 16000

# Run code in a fresh interpreter in which `modeling_mtqnet` cannot be imported (as on a machine without this
# package): a meta-path finder refuses it before the editable install's finder is consulted.
BLOCK_PACKAGE = textwrap.dedent(
    """
    import sys
    class _BlockPackage:
        def find_spec(self, name, path=None, target=None):
            if name == "modeling_mtqnet" or name.startswith("modeling_mtqnet."):
                raise ImportError("modeling_mtqnet is blocked in this process")
            return None
    sys.meta_path.insert(0, _BlockPackage())
    """
)


def run_without_package(code: str, cwd: Path) -> str:
    """Run `code` in a fresh Python process that cannot import this package; return its stdout."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    completed = subprocess.run(
        [sys.executable, "-c", BLOCK_PACKAGE + textwrap.dedent(code)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def noisy_tone(seconds: float, snr_db: float = 10.0, seed: int = 0, rate: int = SAMPLING_RATE) -> np.ndarray:
    """A harmonic tone with an on/off envelope plus white noise at `snr_db`."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = rng.uniform(100, 200)
    clean = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8)) * (np.sin(2 * np.pi * 3 * t) > -0.3)
    noise = rng.standard_normal(t.size)
    noise *= np.sqrt(np.mean(clean**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return (0.2 * (clean + noise)).astype(np.float32)


def tiny_config(**overrides) -> MTQNetConfig:
    """The tiny preset (2-layer WavLM); `fusion="time"` needs the SSL projection as wide as the CNN output."""
    if overrides.get("fusion_mode") == "time" and overrides.get("ssl_config", True) is not None:
        overrides.setdefault("ssl_projection_size", 16)
    return MTQNetConfig.from_preset("tiny", **overrides)


def build_model(seed: int = 0, **overrides) -> MTQNetForSpeechQualityAssessment:
    torch.manual_seed(seed)
    return MTQNetForSpeechQualityAssessment(tiny_config(**overrides)).eval()



