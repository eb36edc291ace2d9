"""Tests for `MTQNetFeatureExtractor` and the audio helpers in `modeling_mtqnet.feature_extraction_mtqnet`.

Everything is built in memory or under `tmp_path`; nothing is downloaded. Random signals come from seeded
`numpy.random.default_rng` generators.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import modeling_mtqnet  # noqa: E402,F401  (registers MTQNetFeatureExtractor with AutoFeatureExtractor)
from modeling_mtqnet import MTQNetConfig  # noqa: E402
from modeling_mtqnet.feature_extraction_mtqnet import (  # noqa: E402
    MTQNetFeatureExtractor,
    check_waveform,
    load_audio,
    read_audio_file,
    to_mono_float,
)

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


@pytest.fixture()
def fe() -> MTQNetFeatureExtractor:
    return MTQNetFeatureExtractor()


# --------------------------------------------------------------------------------------------------------------
# Input kinds
# --------------------------------------------------------------------------------------------------------------


def test_numpy_float_array(fe):
    x = noise(1000, seed=1)
    out = fe(x, sampling_rate=RATE)
    assert set(out.keys()) == {"input_values", "attention_mask"}
    values, mask = out["input_values"], out["attention_mask"]
    assert isinstance(values, np.ndarray) and values.dtype == np.float32
    assert values.shape == (1, 1000) and mask.shape == (1, 1000)
    assert np.all(mask == 1)
    np.testing.assert_allclose(values[0], peak_normalised(x), rtol=1e-6, atol=0)


def test_python_list_of_floats_equals_array(fe):
    x = noise(800, seed=2)
    from_list = fe([float(v) for v in x], sampling_rate=RATE)["input_values"]
    from_array = fe(x, sampling_rate=RATE)["input_values"]
    assert from_list.shape == (1, 800)
    np.testing.assert_allclose(from_list, from_array, rtol=1e-6, atol=1e-7)


def test_tuple_of_floats_is_one_clip(fe):
    x = noise(600, seed=22)
    out = fe(tuple(float(v) for v in x), sampling_rate=RATE)["input_values"]
    assert out.shape == (1, 600)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_torch_tensor_equals_array(fe, requires_grad):
    x = noise(900, seed=3)
    tensor = torch.tensor(x, requires_grad=requires_grad)
    from_tensor = fe(tensor, sampling_rate=RATE)["input_values"]
    np.testing.assert_array_equal(from_tensor, fe(x, sampling_rate=RATE)["input_values"])


@pytest.mark.parametrize("key", ["array", "raw"])
def test_dict_input_equals_array(fe, key):
    x = noise(700, seed=4)
    out = fe({key: x, "sampling_rate": RATE})["input_values"]
    np.testing.assert_array_equal(out, fe(x, sampling_rate=RATE)["input_values"])


def test_dict_input_uses_its_own_sampling_rate(fe):
    x = noise(8000, seed=5)  # one second at 8 kHz
    out = fe({"array": x, "sampling_rate": 8000})["input_values"]
    assert abs(out.shape[1] - 16000) <= 2


def test_dict_without_sampling_rate_raises(fe):
    with pytest.raises(ValueError, match="sampling_rate"):
        fe({"array": noise(500)})


def test_dict_without_array_raises(fe):
    with pytest.raises(ValueError, match="array"):
        fe({"sampling_rate": RATE})


@pytest.mark.parametrize("subtype, atol", [("PCM_16", 2e-4), ("FLOAT", 1e-7)])
@pytest.mark.parametrize("as_path", [False, True])
def test_file_path_equals_array(fe, tmp_path, subtype, atol, as_path):
    x = noise(4000, seed=6)
    path = tmp_path / f"clip_{subtype}.wav"
    soundfile.write(path, x, RATE, subtype=subtype)
    source = path if as_path else str(path)
    from_file = fe(source)["input_values"]  # no sampling_rate: it comes from the file
    from_array = fe(x, sampling_rate=RATE)["input_values"]
    assert from_file.shape == from_array.shape == (1, 4000)
    assert from_file.dtype == np.float32
    # PCM_16 quantisation: |error| <= 0.5/32768 before normalising by a peak of ~0.99 (plus the peak's own error).
    np.testing.assert_allclose(from_file, from_array, rtol=0, atol=atol)


def test_file_rate_is_read_from_the_file(fe, tmp_path):
    path = tmp_path / "eight_k.wav"
    soundfile.write(path, sine(1000, 1.0, 8000), 8000, subtype="FLOAT")
    out = fe(str(path))["input_values"]
    assert abs(out.shape[1] - 16000) <= 2
    assert abs(peak_bin(out[0]) - 1000) <= 1  # 1 s at 16 kHz: 1 Hz per bin


def test_dict_with_path_only_reads_the_file(fe, tmp_path):
    x = noise(3000, seed=7)
    path = tmp_path / "dataset_item.wav"
    soundfile.write(path, x, RATE, subtype="FLOAT")
    out = fe({"path": str(path), "array": None})["input_values"]
    np.testing.assert_allclose(out, fe(x, sampling_rate=RATE)["input_values"], atol=1e-7)


def test_batch_of_different_lengths_is_zero_padded(fe):
    lengths = [500, 1200, 800]
    clips = [noise(n, seed=10 + i) for i, n in enumerate(lengths)]
    out = fe(clips, sampling_rate=RATE)
    values, mask = out["input_values"], out["attention_mask"]
    assert values.dtype == np.float32
    assert values.shape == (3, max(lengths)) and mask.shape == (3, max(lengths))
    for row, (clip, n) in enumerate(zip(clips, lengths)):
        np.testing.assert_array_equal(mask[row, :n], 1)
        np.testing.assert_array_equal(mask[row, n:], 0)
        assert mask[row].sum() == n
        np.testing.assert_array_equal(values[row, n:], 0.0)
        # each row is exactly what the clip gives on its own
        np.testing.assert_array_equal(values[row, :n], fe(clip, sampling_rate=RATE)["input_values"][0])


def test_batch_of_lists_and_tensors(fe):
    a, b = noise(500, seed=12), noise(650, seed=13)
    out = fe([[float(v) for v in a], torch.from_numpy(b)], sampling_rate=RATE)
    assert out["input_values"].shape == (2, 650)
    np.testing.assert_array_equal(out["attention_mask"].sum(axis=1), [500, 650])


def test_batch_of_mixed_kinds(fe, tmp_path):
    a, b, c = noise(500, seed=14), noise(900, seed=15), noise(700, seed=16)
    path = tmp_path / "c.wav"
    soundfile.write(path, c, RATE, subtype="FLOAT")
    out = fe([a, {"array": b, "sampling_rate": RATE}, path], sampling_rate=RATE)
    np.testing.assert_array_equal(out["attention_mask"].sum(axis=1), [500, 900, 700])
    np.testing.assert_allclose(out["input_values"][2, :700], peak_normalised(c), atol=1e-7)


def test_batch_of_str_paths(fe, tmp_path):
    paths = []
    for i, n in enumerate([500, 700]):
        path = tmp_path / f"clip{i}.wav"
        soundfile.write(path, noise(n, seed=20 + i), RATE, subtype="FLOAT")
        paths.append(str(path))
    out = fe(paths)
    assert out["input_values"].shape == (2, 700)


def test_batch_of_pathlib_paths(fe, tmp_path):
    paths = []
    for i, n in enumerate([500, 700]):
        path = tmp_path / f"clip{i}.wav"
        soundfile.write(path, noise(n, seed=20 + i), RATE, subtype="FLOAT")
        paths.append(path)
    out = fe(paths)
    assert out["input_values"].shape == (2, 700)
    np.testing.assert_array_equal(out["attention_mask"].sum(axis=1), [500, 700])


def test_return_tensors_pt(fe):
    out = fe([noise(500, seed=17), noise(600, seed=18)], sampling_rate=RATE, return_tensors="pt")
    assert isinstance(out["input_values"], torch.Tensor) and isinstance(out["attention_mask"], torch.Tensor)
    assert out["input_values"].dtype == torch.float32
    assert out["attention_mask"].dtype == torch.int64
    assert tuple(out["input_values"].shape) == (2, 600)
    assert out["attention_mask"].sum().item() == 1100


def test_return_attention_mask_false(fe):
    out = fe(noise(500, seed=19), sampling_rate=RATE, return_attention_mask=False)
    assert "attention_mask" not in out
    assert out["input_values"].shape == (1, 500)


def test_pad_to_multiple_of_and_max_length(fe):
    out = fe(noise(500, seed=23), sampling_rate=RATE, pad_to_multiple_of=64)
    assert out["input_values"].shape == (1, 512)
    assert out["attention_mask"].sum() == 500
    np.testing.assert_array_equal(out["input_values"][0, 500:], 0.0)
    out = fe([noise(500, seed=24), noise(450, seed=25)], sampling_rate=RATE, padding="max_length", max_length=600)
    assert out["input_values"].shape == (2, 600)
    np.testing.assert_array_equal(out["attention_mask"].sum(axis=1), [500, 450])


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x,
        lambda x: [float(v) for v in x],
        lambda x: torch.from_numpy(x),
        lambda x: [x, x],
    ],
    ids=["numpy", "list", "tensor", "batch"],
)
def test_array_without_sampling_rate_raises(fe, make):
    with pytest.raises(ValueError, match="sampling_rate"):
        fe(make(noise(600, seed=26)))


# --------------------------------------------------------------------------------------------------------------
# Multi-channel and integer PCM
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# Peak normalisation
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# Config and serialisation
# --------------------------------------------------------------------------------------------------------------


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
