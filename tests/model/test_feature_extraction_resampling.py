"""The feature extractor: resampling (seeded signals, files under tmp_path)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from modeling_mtqnet.model.feature_extraction_mtqnet import (
    MTQNetFeatureExtractor,
    load_audio,
    read_audio_file,
)
from tests.model.feature_extraction_helpers import (
    RATE,
    noise,
    peak_bin,
    sine,
)


@pytest.mark.parametrize("rate, frequency", [(8000, 1000.0), (44100, 3000.0), (22050, 440.0)])
def test_resampling_length_and_frequency(fe, rate, frequency):
    x = sine(frequency, 1.0, rate)
    out = fe(x, sampling_rate=rate)["input_values"][0]
    assert abs(out.size - 16000) <= 2
    # 1 s at 16 kHz: bin k is k Hz
    assert abs(peak_bin(out[:16000]) - frequency) <= 1


def test_resampling_fractional_length(fe):
    x = noise(10001, seed=40)
    out = fe(x, sampling_rate=44100)["input_values"]
    assert abs(out.shape[1] - 10001 * 16000 / 44100) <= 2


def test_resampling_removes_content_above_the_new_nyquist(fe):
    # a 12 kHz tone cannot exist at 16 kHz; it must be filtered out, not folded to 16 - 12 = 4 kHz
    x = sine(1000, 1.0, 44100, 0.4) + sine(12000, 1.0, 44100, 0.4)
    out = fe(x, sampling_rate=44100)["input_values"][0][:16000]
    spectrum = np.abs(np.fft.rfft(out))
    assert spectrum[4000] < 0.01 * spectrum[1000]


def test_same_rate_is_not_resampled(fe):
    x = noise(777, seed=41)
    out = MTQNetFeatureExtractor(peak_normalize=False)(x, sampling_rate=RATE)["input_values"][0]
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("bad_rate", [0, -8000])
def test_invalid_sampling_rate_raises(fe, bad_rate):
    with pytest.raises(ValueError, match="(?i)sampling rate"):
        fe(noise(500), sampling_rate=bad_rate)


def test_load_audio_helper(tmp_path):
    x = sine(1000, 0.5, 8000)
    out = load_audio(x, 8000, 16000)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size - 8000) <= 2
    np.testing.assert_array_equal(load_audio(x, 16000, 16000), x)  # no resampling, no normalisation
    np.testing.assert_array_equal(load_audio({"raw": x, "sampling_rate": 16000}, None, 16000), x)
    path = tmp_path / "load.wav"
    soundfile.write(path, x, 8000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path, None, 16000), out, atol=1e-6)
    with pytest.raises(ValueError, match="sampling_rate"):
        load_audio(x, None, 16000)


def test_read_audio_file_helper(tmp_path):
    pcm = np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)
    path = tmp_path / "pcm.wav"
    soundfile.write(path, pcm, 22050, subtype="PCM_16")
    samples, rate = read_audio_file(path)
    assert rate == 22050 and isinstance(rate, int)
    np.testing.assert_array_equal(samples, pcm / np.float32(32768))
