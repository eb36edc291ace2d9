"""Signals shared by the feature-extraction tests (test_feature_extraction_*)."""

from __future__ import annotations

import numpy as np

RATE = 16000


def noise(n: int, seed: int = 0, scale: float = 0.5) -> np.ndarray:
    """`n` float32 samples of seeded Gaussian noise, clipped to (-1, 1) so that files can hold them."""
    rng = np.random.default_rng(seed)
    return np.clip(scale * rng.standard_normal(n), -0.99, 0.99).astype(np.float32)


def sine(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def peak_normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.max(np.abs(x))


def peak_bin(x: np.ndarray) -> int:
    return int(np.argmax(np.abs(np.fft.rfft(x))))
