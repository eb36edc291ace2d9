"""The feature extractor: peak normalisation (seeded signals, files under tmp_path)."""

from __future__ import annotations

import numpy as np

from modeling_mtqnet.model.feature_extraction_mtqnet import (
    MTQNetFeatureExtractor,
)
from tests.model.feature_extraction_helpers import (
    RATE,
    noise,
)


def test_peak_normalisation_per_clip(fe):
    clips = [noise(500, seed=50, scale=0.01), noise(900, seed=51, scale=0.3), 5.0 * noise(700, seed=52)]
    out = fe(clips, sampling_rate=RATE)
    for row, clip in enumerate(clips):
        valid = out["attention_mask"][row].astype(bool)
        assert np.max(np.abs(out["input_values"][row][valid])) == 1.0
        # a pure gain: the shape of the waveform is kept
        np.testing.assert_allclose(out["input_values"][row][valid], clip / np.max(np.abs(clip)), rtol=1e-5, atol=1e-7)


def test_peak_normalisation_makes_gain_irrelevant(fe):
    x = noise(1000, seed=53)
    np.testing.assert_allclose(
        fe(x, sampling_rate=RATE)["input_values"], fe(0.01 * x, sampling_rate=RATE)["input_values"], atol=1e-6
    )


def test_no_peak_normalisation_keeps_values():
    fe = MTQNetFeatureExtractor(peak_normalize=False)
    x = noise(1000, seed=54, scale=0.1)
    out = fe(x, sampling_rate=RATE)["input_values"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], x)
    x64 = x.astype(np.float64) * 0.5
    np.testing.assert_array_equal(fe(x64, sampling_rate=RATE)["input_values"][0], x64.astype(np.float32))
