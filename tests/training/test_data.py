"""Data loading and checking for training: manifests, folders, label checks, bad files, split, crop, collator."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
import soundfile
import torch

from modeling_mtqnet import MTQNetConfig, MTQNetFeatureExtractor
from modeling_mtqnet.training.data import (
    DatasetValidationError,
    RandomCrop,
    SpeechQualityCollator,
    duplicate_clips,
    load_speech_dataset,
    prepare_dataset,
    split_train_validation,
    without_unlabelled,
)
from tests.helpers import write_corpus

TARGETS = ["s_mos", "n_mos", "g_mos"]
PSEUDO = ["pesq", "stoi", "sdi"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return write_corpus(folder, 12)


@pytest.fixture(scope="module")
def extractor():
    return MTQNetFeatureExtractor.from_model_config(MTQNetConfig.from_preset("tiny"))


def ranges():
    config = MTQNetConfig()
    return {**dict(zip(config.target_names, config.target_ranges)),
            **dict(zip(config.auxiliary_target_names, config.auxiliary_target_ranges))}


def prepare(dataset, extractor, **kwargs):
    kwargs.setdefault("target_columns", TARGETS)
    kwargs.setdefault("pseudo_label_columns", PSEUDO)
    return prepare_dataset(dataset, extractor, audio_column="path", ranges=ranges(), **kwargs)


def rewrite(manifest, folder, edit):
    """Copy the manifest into `folder` with `edit(rows)` applied; audio paths stay valid (made absolute)."""
    with open(manifest) as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["path"] = str(manifest.parent / row["path"])
    rows = edit(rows)
    target = folder / "edited.csv"
    with open(target, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


def test_manifest_paths_are_relative_to_the_manifest(corpus, extractor, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # somewhere else entirely
    dataset = load_speech_dataset(corpus, "path")
    assert all(os.path.isabs(p) and os.path.exists(p) for p in dataset["path"])
    prepared = prepare(dataset, extractor)
    assert prepared.skipped == [] and len(prepared.dataset) == 12
    row = prepared.dataset[0]
    assert set(prepared.dataset.column_names) == {"input_values", "length", "audio_id", "labels", "pseudo_labels"}
    assert row["length"] == len(row["input_values"]) and max(abs(v) for v in row["input_values"]) == pytest.approx(1)
    with open(corpus) as handle:
        first = next(csv.DictReader(handle))
    assert row["labels"] == pytest.approx([float(first[t]) for t in TARGETS])
    assert row["pseudo_labels"] == pytest.approx([float(first[t]) for t in PSEUDO])


def test_jsonl_manifest_and_saved_dataset_load_the_same(corpus, extractor, tmp_path):
    with open(corpus) as handle:
        rows = list(csv.DictReader(handle))
    jsonl = corpus.parent / "train.jsonl"
    jsonl.write_text("\n".join(json.dumps({**r, **{t: float(r[t]) for t in TARGETS + PSEUDO}}) for r in rows))
    from_jsonl = prepare(load_speech_dataset(jsonl, "path"), extractor).dataset
    from_csv = prepare(load_speech_dataset(corpus, "path"), extractor).dataset
    assert from_jsonl["labels"] == from_csv["labels"]
    load_speech_dataset(corpus, "path").save_to_disk(str(tmp_path / "saved"))
    from_disk = prepare(load_speech_dataset(tmp_path / "saved", "path"), extractor).dataset
    np.testing.assert_allclose(from_disk[3]["input_values"], from_csv[3]["input_values"])


def test_audio_column_decodes_through_datasets(corpus, extractor, tmp_path):
    """An audiofolder gives an `Audio` column (decoded by datasets / torchcodec) with the same waveforms."""
    folder = tmp_path / "audiofolder"
    folder.mkdir()
    with open(corpus) as handle:
        rows = list(csv.DictReader(handle))[:4]
    for row in rows:
        name = os.path.basename(row["path"])
        data, rate = soundfile.read(corpus.parent / row["path"])
        soundfile.write(folder / name, data, rate)
        row["file_name"] = name
    with open(folder / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file_name"] + TARGETS)
        writer.writeheader()
        writer.writerows([{k: row[k] for k in ["file_name"] + TARGETS} for row in rows])
    dataset = load_speech_dataset(folder, "audio")
    prepared = prepare_dataset(dataset, extractor, audio_column="audio", target_columns=TARGETS, ranges=ranges())
    by_name = {os.path.basename(a): v for a, v in zip(prepared.dataset["audio_id"], prepared.dataset["input_values"])}
    for row in rows:
        expected = extractor.prepare_waveform(str(corpus.parent / row["path"]))
        np.testing.assert_allclose(by_name[row["file_name"]], expected, atol=1e-4)


def test_missing_columns_are_listed(corpus, extractor):
    dataset = load_speech_dataset(corpus, "path")
    with pytest.raises(DatasetValidationError, match=r"\['quality'\] not found; the columns are \['path', 's_mos'"):
        prepare(dataset, extractor, target_columns=["quality"])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda rows: [{**r, "s_mos": "good" if i == 2 else r["s_mos"]} for i, r in enumerate(rows)],
         r"non-numeric labels \(1\): row 2: 'good'"),
        (lambda rows: [{**r, "n_mos": ""} for r in rows], "'n_mos' has no label at all"),
        (lambda rows: [{**r, "g_mos": "7.5" if i == 4 else r["g_mos"]} for i, r in enumerate(rows)],
         r"'g_mos' has 1 label\(s\) outside its range \[1.0, 5.0\]: row 4: 7.5"),
        (lambda rows: [{**r, "stoi": "1.2" if i == 0 else r["stoi"]} for i, r in enumerate(rows)],
         "'stoi' has 1 label"),
    ],
)
def test_bad_labels_are_refused(corpus, extractor, tmp_path, edit, message):
    with pytest.raises(DatasetValidationError, match=message):
        prepare(load_speech_dataset(rewrite(corpus, tmp_path, edit), "path"), extractor)


def test_a_label_at_its_range_end_in_full_float32_digits_is_inside(corpus, extractor, tmp_path):
    # A teacher saturated at PESQ's top writes float32(4.644) in full: 4.644000053405762; it is not out of range,
    # while a label a float32 step beyond the end still is.
    top = float(np.float32(4.644))
    assert top > 4.644
    (tmp_path / "inside").mkdir(), (tmp_path / "outside").mkdir()
    inside = rewrite(corpus, tmp_path / "inside", lambda rows: [{**r, "pesq": repr(top) if i == 0 else r["pesq"]}
                                                               for i, r in enumerate(rows)])
    dataset = prepare(load_speech_dataset(inside, "path"), extractor).dataset
    assert dataset[0]["pseudo_labels"][0] == pytest.approx(top)
    beyond = repr(float(np.nextafter(np.float32(4.644), np.float32(5))))
    outside = rewrite(corpus, tmp_path / "outside", lambda rows: [{**r, "pesq": beyond if i == 0 else r["pesq"]}
                                                                 for i, r in enumerate(rows)])
    with pytest.raises(DatasetValidationError, match="'pesq' has 1 label"):
        prepare(load_speech_dataset(outside, "path"), extractor)


def test_missing_labels_become_nan(corpus, extractor, tmp_path):
    def blank(rows):
        rows[1]["s_mos"] = ""
        rows[2]["pesq"] = ""
        return rows

    dataset = prepare(load_speech_dataset(rewrite(corpus, tmp_path, blank), "path"), extractor).dataset
    assert math.isnan(dataset[1]["labels"][0]) and not math.isnan(dataset[1]["labels"][1])
    assert math.isnan(dataset[2]["pseudo_labels"][0]) and not any(math.isnan(v) for v in dataset[3]["labels"])


def test_clips_without_any_primary_label_are_left_out_for_methods_without_pseudo_labels(corpus, extractor, tmp_path):
    def unlabel(rows):
        for row in rows[:4]:
            row.update(s_mos="", n_mos="", g_mos="")
        rows[4]["s_mos"] = ""  # one primary label missing of three: the clip still trains the other two heads
        return rows

    dataset = prepare(load_speech_dataset(rewrite(corpus, tmp_path, unlabel), "path"), extractor,
                      pseudo_label_columns=[]).dataset
    kept, dropped = without_unlabelled(dataset)
    assert dropped == 4 and len(kept) == len(dataset) - 4
    assert kept["audio_id"] == dataset["audio_id"][4:]  # order kept
    assert all(not all(math.isnan(v) for v in labels) for labels in kept["labels"])
    unchanged, none = without_unlabelled(kept)
    assert none == 0 and len(unchanged) == len(kept)
    with pytest.raises(DatasetValidationError, match="No training clip has a primary label"):
        without_unlabelled(dataset.select(range(4)))


def bad_file_rows(folder):
    (folder / "corrupt.wav").write_bytes(b"not a wav file" * 100)
    soundfile.write(folder / "short.wav", np.random.default_rng(0).standard_normal(100) * 0.1, 16000)
    soundfile.write(folder / "silent.wav", np.zeros(16000), 16000)

    def edit(rows):
        rows[0]["path"] = str(folder / "missing.wav")
        rows[1]["path"] = str(folder / "corrupt.wav")
        rows[2]["path"] = str(folder / "short.wav")
        rows[3]["path"] = str(folder / "silent.wav")
        return rows

    return edit


def test_bad_files_are_named(corpus, extractor, tmp_path):
    dataset = load_speech_dataset(rewrite(corpus, tmp_path, bad_file_rows(tmp_path)), "path")
    with pytest.raises(DatasetValidationError) as error:
        prepare(dataset, extractor)
    text = str(error.value)
    assert "4 of 12 clip(s) cannot be used" in text and "--skip_bad_files" in text
    assert "missing.wav: FileNotFoundError" in text and "corrupt.wav: ValueError: Cannot decode" in text
    assert "short.wav: ValueError" in text and "too short" in text and "silent" in text


def test_skip_bad_files_skips_and_reports(corpus, extractor, tmp_path):
    dataset = load_speech_dataset(rewrite(corpus, tmp_path, bad_file_rows(tmp_path)), "path")
    prepared = prepare(dataset, extractor, skip_bad_files=True)
    assert len(prepared.dataset) == 8
    assert sorted(os.path.basename(path) for path, _ in prepared.skipped) == [
        "corrupt.wav", "missing.wav", "short.wav", "silent.wav"]
    assert not any("missing.wav" in a for a in prepared.dataset["audio_id"])


def test_unknown_sources_are_refused(tmp_path):
    (tmp_path / "labels.txt").write_text("x")
    with pytest.raises(DatasetValidationError, match="unknown manifest type"):
        load_speech_dataset(tmp_path / "labels.txt", "path")
    with pytest.raises(DatasetValidationError, match="not found"):
        load_speech_dataset(tmp_path / "nothing.csv", "path")


def test_split_is_90_10_and_seeded(corpus, extractor):
    dataset = prepare(load_speech_dataset(corpus, "path"), extractor).dataset
    train, validation = split_train_validation(dataset, 0.1, seed=3)
    again_train, again_validation = split_train_validation(dataset, 0.1, seed=3)
    assert (len(train), len(validation)) == (10, 2)
    assert validation["audio_id"] == again_validation["audio_id"] and train["audio_id"] == again_train["audio_id"]
    assert set(train["audio_id"]).isdisjoint(validation["audio_id"])
    other = split_train_validation(dataset, 0.1, seed=4)[1]
    assert other["audio_id"] != validation["audio_id"] or len(dataset) < 3


def test_random_crop_is_seeded_and_bounded():
    batch = {"input_values": [np.arange(1000, dtype=np.float32), np.arange(300, dtype=np.float32)]}
    first = RandomCrop(400, seed=1)({"input_values": list(batch["input_values"])})
    second = RandomCrop(400, seed=1)({"input_values": list(batch["input_values"])})
    assert [len(v) for v in first["input_values"]] == [400, 300] and first["length"] == [400, 300]
    np.testing.assert_array_equal(first["input_values"][0], second["input_values"][0])
    start = int(first["input_values"][0][0])
    np.testing.assert_array_equal(first["input_values"][0], np.arange(start, start + 400))


def test_collator_pads_and_stacks_labels():
    features = [
        {"input_values": [0.5, -0.5, 0.25], "labels": [1.0, None, 3.0], "pseudo_labels": [2.0, 0.5, float("nan")]},
        {"input_values": [0.1], "labels": [2.0, 2.5, 3.5], "pseudo_labels": [1.0, 0.2, 1.0]},
    ]
    batch = SpeechQualityCollator()(features)
    assert batch["input_values"].shape == (2, 3) and batch["input_values"][1, 1:].abs().sum() == 0
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert torch.isnan(batch["labels"][0, 1]) and batch["labels"][1].tolist() == [2.0, 2.5, 3.5]
    assert torch.isnan(batch["pseudo_labels"][0, 2]) and batch["labels"].dtype == torch.float32
    padded = SpeechQualityCollator(pad_to_multiple_of=4)(features)
    assert padded["input_values"].shape == (2, 4)


def test_duplicated_rows_stay_on_one_side_of_the_split(corpus, extractor, tmp_path):
    edited = rewrite(corpus, tmp_path, lambda rows: rows + rows[:4])  # four clips listed twice
    dataset = prepare(load_speech_dataset(edited, "path"), extractor).dataset
    assert set(duplicate_clips(dataset).values()) == {2} and len(duplicate_clips(dataset)) == 4
    for seed in range(6):
        train, validation = split_train_validation(dataset, 0.25, seed=seed)
        assert set(train["audio_id"]).isdisjoint(validation["audio_id"])
        assert len(train) + len(validation) == 16


def test_group_column_holds_a_speaker_out_of_training(corpus, extractor, tmp_path):
    def with_speakers(rows):
        return [{**row, "speaker": f"spk{index % 3}"} for index, row in enumerate(rows)]

    dataset = prepare(load_speech_dataset(rewrite(corpus, tmp_path, with_speakers), "path"), extractor,
                      keep_columns=["speaker"]).dataset
    train, validation = split_train_validation(dataset, 0.1, seed=1, group_column="speaker")
    assert len(set(validation["speaker"])) == 1 and set(train["speaker"]).isdisjoint(validation["speaker"])
    with pytest.raises(DatasetValidationError, match=r"\['nobody'\] not found"):
        split_train_validation(dataset, 0.1, group_column="nobody")


@pytest.mark.parametrize("content, message", [
    ("", "is an empty file"), ("\n\n", "is an empty file"), ("path,s_mos\n", "has a header (path, s_mos) but no rows"),
])
def test_empty_manifests_get_a_clear_message(tmp_path, content, message):
    manifest = tmp_path / "train.csv"
    manifest.write_text(content)
    with pytest.raises(DatasetValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_speech_dataset(manifest, "path")
