"""The feature extractor: errors (seeded signals, files under tmp_path)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from modeling_mtqnet.model.feature_extraction_mtqnet import (
    MTQNetFeatureExtractor,
    check_waveform,
    read_audio_file,
)
from tests.model.feature_extraction_helpers import (
    RATE,
    noise,
)


def test_empty_array_raises(fe):
    with pytest.raises(ValueError, match="empty"):
        fe(np.zeros(0, dtype=np.float32), sampling_rate=RATE)


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_non_finite_sample_raises(fe, bad, word):
    x = noise(1000, seed=60)
    x[123] = bad
    with pytest.raises(ValueError, match=word):
        fe(x, sampling_rate=RATE)


def test_too_short_raises_and_boundary_is_accepted(fe):
    with pytest.raises(ValueError, match="too short"):
        fe(noise(fe.min_samples - 1, seed=61), sampling_rate=RATE)
    out = fe(noise(fe.min_samples, seed=61), sampling_rate=RATE)
    assert out["input_values"].shape == (1, fe.min_samples)


def test_too_short_is_checked_after_resampling():
    fe = MTQNetFeatureExtractor(min_samples=400)
    # 300 samples at 8 kHz become ~600 at 16 kHz: accepted; 150 at 8 kHz become ~300: rejected
    assert fe(noise(300, seed=62), sampling_rate=8000)["input_values"].shape[1] >= 598
    with pytest.raises(ValueError, match="too short"):
        fe(noise(150, seed=62), sampling_rate=8000)


def test_too_long_raises_and_boundary_is_accepted():
    fe = MTQNetFeatureExtractor(max_duration_s=0.5)
    with pytest.raises(ValueError, match="too long"):
        fe(noise(8001, seed=63), sampling_rate=RATE)
    assert fe(noise(8000, seed=63), sampling_rate=RATE)["input_values"].shape == (1, 8000)


def test_no_max_duration_accepts_long_clips():
    fe = MTQNetFeatureExtractor(max_duration_s=None)
    assert fe(noise(20000, seed=64), sampling_rate=RATE)["input_values"].shape == (1, 20000)


def test_silent_clip_raises(fe):
    with pytest.raises(ValueError, match="silent"):
        fe(np.zeros(1000, dtype=np.float32), sampling_rate=RATE)


def test_silent_after_downmix_raises(fe):
    x = noise(1000, seed=65)
    with pytest.raises(ValueError, match="silent"):
        fe(np.stack([x, -x]), sampling_rate=RATE)  # channels in antiphase cancel


def test_corrupt_file_raises(fe, tmp_path):
    path = tmp_path / "x.wav"
    path.write_bytes(np.random.default_rng(66).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="Cannot decode") as info:
        fe(str(path))
    assert "x.wav" in str(info.value)


def test_missing_file_raises(fe, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        fe(str(tmp_path / "missing.wav"))
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        read_audio_file(tmp_path / "missing.wav")


def test_directory_path_raises_file_not_found(fe, tmp_path):
    with pytest.raises(FileNotFoundError):
        fe(str(tmp_path))


def test_empty_list_raises(fe):
    # `[]` with a rate is rejected as an empty clip
    with pytest.raises(ValueError, match="(?i)empty|no audio"):
        fe([], sampling_rate=RATE)


def test_empty_batch_message_names_the_problem(fe):
    with pytest.raises(ValueError, match="(?i)empty|no audio"):
        fe([])


def test_different_lengths_without_padding_are_refused(fe):
    with pytest.raises(ValueError, match="padding=True"):
        fe([noise(500), noise(700, seed=1)], sampling_rate=RATE, padding=False)


def test_3d_array_raises(fe):
    with pytest.raises(ValueError, match="shape"):
        fe(noise(2 * 3 * 500).reshape(2, 3, 500), sampling_rate=RATE)


@pytest.mark.parametrize(
    "bad, word",
    [
        (np.zeros(1000, dtype=np.float32), "silent"),
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.full(1000, np.nan, dtype=np.float32), "NaN"),
        (np.ones(10, dtype=np.float32), "too short"),
    ],
    ids=["silent", "empty", "nan", "short"],
)
def test_batch_error_names_the_clip_index(fe, bad, word):
    with pytest.raises(ValueError, match=rf"audio #1\b.*{word}|{word}.*audio #1\b") as info:
        fe([noise(1000, seed=67), bad, noise(900, seed=68)], sampling_rate=RATE)
    assert "audio #0" not in str(info.value) and "audio #2" not in str(info.value)


def test_single_clip_error_has_no_index(fe):
    with pytest.raises(ValueError, match="silent") as info:
        fe(np.zeros(1000, dtype=np.float32), sampling_rate=RATE)
    assert "#" not in str(info.value)


def test_batch_file_error_names_index_and_file(fe, tmp_path):
    good = tmp_path / "good.wav"
    soundfile.write(good, noise(1000, seed=69), RATE, subtype="FLOAT")
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(1000, dtype=np.float32), RATE, subtype="FLOAT")
    with pytest.raises(ValueError, match="audio #1") as info:
        fe([good, silent])
    assert "silent" in str(info.value)


def test_check_waveform_helper():
    x = noise(500, seed=70)
    assert check_waveform(x, 400, 1000) is None
    assert check_waveform(x, 500, 500) is None  # both bounds inclusive
    with pytest.raises(ValueError, match="clip A is too short"):
        check_waveform(x, 501, None, name="clip A")
    with pytest.raises(ValueError, match="clip B is too long"):
        check_waveform(x, 1, 499, name="clip B")
    with pytest.raises(ValueError, match="empty"):
        check_waveform(np.zeros(0, dtype=np.float32), 1, None)
    with pytest.raises(ValueError, match="2 NaN or Inf"):
        check_waveform(np.array([np.nan, 0.1, np.inf], dtype=np.float32), 1, None)
    with pytest.raises(ValueError, match="silent"):
        check_waveform(np.zeros(600, dtype=np.float32), 400, None)


def test_check_waveform_order_non_finite_before_length():
    # a short clip with a NaN is reported for the NaN (the more fundamental problem)
    with pytest.raises(ValueError, match="NaN"):
        check_waveform(np.array([np.nan], dtype=np.float32), 400, None)
