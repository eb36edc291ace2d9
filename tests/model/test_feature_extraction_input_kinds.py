"""The feature extractor: input kinds (seeded signals, files under tmp_path)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from tests.model.feature_extraction_helpers import (
    RATE,
    noise,
    peak_bin,
    peak_normalised,
    sine,
)


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
