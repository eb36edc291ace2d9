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

from modeling_mtqnet import MTQNetConfig, MTQNetForSpeechQualityAssessment  # noqa: E402  (registers Auto classes)
from modeling_mtqnet.model.configuration_mtqnet import tiny_ssl_config  # noqa: E402,F401

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



def quality_labels(snr_db: float) -> dict[str, float]:
    """Labels that depend on the signal (its SNR), so that a model can learn them."""
    quality = 1 + 4 / (1 + np.exp(-(snr_db - 10) / 5))
    return {
        "s_mos": round(float(quality), 4),
        "n_mos": round(float(min(5.0, 0.8 * quality + 1.0)), 4),
        "g_mos": round(float(0.9 * quality + 0.3), 4),
        "pesq": round(float(1 + 3.5 / (1 + np.exp(-(snr_db - 8) / 5))), 4),
        "stoi": round(float(1 / (1 + np.exp(-snr_db / 5))), 4),
        "sdi": round(float(2 / (1 + np.exp((snr_db - 5) / 5))), 4),
    }


def write_corpus(folder: Path, count: int, seed: int = 0, seconds: tuple[float, float] = (0.4, 0.8),
                 name: str = "train.csv") -> Path:
    """`count` noisy clips at random SNRs in folder/wav, and a CSV manifest (relative paths) with their labels."""
    import csv

    import soundfile

    rng = np.random.default_rng(seed)
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        snr = float(rng.uniform(-5, 25))
        path = f"wav/{seed}_{index}.wav"
        soundfile.write(folder / path, noisy_tone(float(rng.uniform(*seconds)), snr, seed=seed * 1000 + index),
                        SAMPLING_RATE)
        rows.append({"path": path, **quality_labels(snr)})
    manifest = folder / name
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest
