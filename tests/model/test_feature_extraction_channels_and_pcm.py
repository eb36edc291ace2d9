"""The feature extractor: multi-channel and integer PCM (seeded signals, files under tmp_path)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from modeling_mtqnet.model.feature_extraction_mtqnet import (
    MTQNetFeatureExtractor,
    to_mono_float,
)
from tests.model.feature_extraction_helpers import (
    RATE,
    noise,
    peak_normalised,
)


def stereo_channels(n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    # very different peaks, so that normalising before the downmix would give another result
    return noise(n, seed=30, scale=0.6), noise(n, seed=31, scale=0.05)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_multichannel_is_mono_mean(fe, layout):
    left, right = stereo_channels()
    stacked = np.stack([left, right]) if layout == "channels_first" else np.stack([left, right], axis=1)
    out = fe(stacked, sampling_rate=RATE)["input_values"]
    expected = peak_normalised((left + right) / 2)
    assert out.shape == (1, left.size)
    np.testing.assert_allclose(out[0], expected, rtol=1e-5, atol=1e-6)
    wrong = (peak_normalised(left) + peak_normalised(right)) / 2  # per-channel normalisation first
    assert not np.allclose(out[0], wrong, atol=1e-3)


def test_multichannel_layouts_agree(fe):
    left, right = stereo_channels()
    first = fe(np.stack([left, right]), sampling_rate=RATE)["input_values"]
    last = fe(np.stack([left, right], axis=1), sampling_rate=RATE)["input_values"]
    np.testing.assert_array_equal(first, last)


def test_stereo_wav_file_is_downmixed(fe, tmp_path):
    left, right = stereo_channels()
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), RATE, subtype="FLOAT")
    assert soundfile.info(str(path)).channels == 2
    out = fe(str(path))["input_values"]
    assert out.shape == (1, left.size)
    np.testing.assert_allclose(out[0], peak_normalised((left + right) / 2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("peak_normalize", [True, False])
def test_int16_array_equals_scaled_float(peak_normalize):
    fe = MTQNetFeatureExtractor(peak_normalize=peak_normalize)
    rng = np.random.default_rng(32)
    pcm = rng.integers(-20000, 20000, size=2000, dtype=np.int16)
    from_int = fe(pcm, sampling_rate=RATE)["input_values"]
    from_float = fe(pcm.astype(np.float32) / 32768.0, sampling_rate=RATE)["input_values"]
    np.testing.assert_allclose(from_int, from_float, rtol=1e-6, atol=1e-7)
    if not peak_normalize:
        assert np.max(np.abs(from_int)) < 20000 / 32768 + 1e-6


def test_to_mono_float_int16():
    out = to_mono_float(np.array([-32768, 0, 16384, 32767], dtype=np.int16))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([-1.0, 0.0, 0.5, 32767 / 32768], dtype=np.float32))


def test_to_mono_float_int32():
    out = to_mono_float(np.array([-(2**31), 0, 2**30, 2**31 - 1], dtype=np.int32))
    np.testing.assert_allclose(out, [-1.0, 0.0, 0.5, (2**31 - 1) / 2**31], rtol=1e-7)
    assert out[0] == -1.0 and out[1] == 0.0


def test_to_mono_float_uint8():
    out = to_mono_float(np.array([0, 64, 128, 192, 255], dtype=np.uint8))
    np.testing.assert_array_equal(out, np.array([-1.0, -0.5, 0.0, 0.5, 127 / 128], dtype=np.float32))


def test_to_mono_float_int8_and_uint16():
    np.testing.assert_array_equal(to_mono_float(np.array([-128, 0, 64], dtype=np.int8)), [-1.0, 0.0, 0.5])
    np.testing.assert_array_equal(to_mono_float(np.array([0, 32768, 49152], dtype=np.uint16)), [-1.0, 0.0, 0.5])


def test_to_mono_float_keeps_float_values_and_casts_to_float32():
    x64 = np.random.default_rng(33).uniform(-1, 1, 100)
    out = to_mono_float(x64)
    assert out.dtype == np.float32 and out.ndim == 1
    np.testing.assert_array_equal(out, x64.astype(np.float32))


def test_to_mono_float_torch_and_list():
    x = noise(50, seed=34)
    np.testing.assert_array_equal(to_mono_float(torch.from_numpy(x)), x)
    np.testing.assert_allclose(to_mono_float([float(v) for v in x]), x, rtol=1e-7)


def test_to_mono_float_int16_stereo_scaled_then_averaged():
    pcm = np.array([[32767, -32768], [16384, 16384], [0, -16384]], dtype=np.int16)  # (N=3, C=2)
    out = to_mono_float(pcm)
    expected = (pcm.astype(np.float64) / 32768).mean(axis=1)
    assert out.shape == (3,)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_to_mono_float_shorter_axis_is_channels():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)  # 3 channels x 4 samples
    np.testing.assert_array_equal(to_mono_float(x), x.mean(axis=0))
    np.testing.assert_array_equal(to_mono_float(x.T), x.mean(axis=0))


def test_to_mono_float_rejects_3d():
    with pytest.raises(ValueError, match="shape"):
        to_mono_float(np.zeros((2, 3, 4), dtype=np.float32), name="clip")


def test_to_mono_float_rejects_non_numeric():
    with pytest.raises(ValueError, match="numeric"):
        to_mono_float(np.array(["a", "b"]))
    with pytest.raises(ValueError, match="numeric"):
        to_mono_float(np.array([0.1, None], dtype=object))
