"""The feature extractor: config and serialisation (seeded signals, files under tmp_path)."""

from __future__ import annotations

import numpy as np
import pytest

from modeling_mtqnet import MTQNetConfig
from modeling_mtqnet.model.feature_extraction_mtqnet import (
    MTQNetFeatureExtractor,
)
from tests.model.feature_extraction_helpers import (
    RATE,
    noise,
)


def test_defaults():
    fe = MTQNetFeatureExtractor()
    assert fe.sampling_rate == 16000
    assert fe.peak_normalize is True
    assert fe.min_samples == 400
    assert fe.max_duration_s == 600.0
    assert fe.padding_value == 0.0
    assert fe.feature_size == 1
    assert fe.model_input_names == ["input_values", "attention_mask"]


def test_from_model_config():
    config = MTQNetConfig.from_preset("tiny", max_duration_s=12.5)
    fe = MTQNetFeatureExtractor.from_model_config(config)
    assert fe.sampling_rate == config.sampling_rate
    assert fe.min_samples == config.min_input_samples
    assert fe.max_duration_s == 12.5 == config.max_duration_s
    assert fe.peak_normalize is True
    with pytest.raises(ValueError, match="too short"):
        fe(noise(config.min_input_samples - 1, seed=80), sampling_rate=config.sampling_rate)


def test_from_model_config_passes_kwargs():
    config = MTQNetConfig.from_preset("tiny")
    fe = MTQNetFeatureExtractor.from_model_config(config, peak_normalize=False)
    assert fe.peak_normalize is False
    assert fe.min_samples == config.min_input_samples


def test_save_and_load_round_trip(tmp_path):
    fe = MTQNetFeatureExtractor(peak_normalize=False, min_samples=321, max_duration_s=7.5)
    fe.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").is_file()
    loaded = MTQNetFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, MTQNetFeatureExtractor)
    assert loaded.peak_normalize is False
    assert loaded.min_samples == 321
    assert loaded.max_duration_s == 7.5
    assert loaded.sampling_rate == 16000 and loaded.feature_size == 1
    x = noise(1000, seed=81)
    np.testing.assert_array_equal(loaded(x, sampling_rate=RATE)["input_values"], fe(x, sampling_rate=RATE)["input_values"])


def test_save_and_load_max_duration_none(tmp_path):
    MTQNetFeatureExtractor(max_duration_s=None).save_pretrained(tmp_path)
    assert MTQNetFeatureExtractor.from_pretrained(tmp_path).max_duration_s is None


def test_auto_feature_extractor(tmp_path):
    from transformers import AutoFeatureExtractor

    fe = MTQNetFeatureExtractor(min_samples=257, max_duration_s=30.0)
    fe.save_pretrained(tmp_path)
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, MTQNetFeatureExtractor)  # the registered class, not a remote-code copy
    assert loaded.min_samples == 257 and loaded.max_duration_s == 30.0 and loaded.peak_normalize is True
    x = noise(600, seed=82)
    np.testing.assert_array_equal(loaded(x, sampling_rate=RATE)["input_values"], fe(x, sampling_rate=RATE)["input_values"])
