"""MPL stage 1: intrusive labels (PESQ, STOI, SDI), knowledge transfer, and pseudo labels added to datasets."""

from __future__ import annotations

import csv
import math
import shutil

import numpy as np
import pytest
import soundfile
import torch

from modeling_mtqnet import MTQNetFeatureExtractor
from modeling_mtqnet.labels.annotate import DNSMOS_COLUMNS, annotate_dataset, main, make_teacher
from modeling_mtqnet.vocabulary import ERROR_COLUMN
from modeling_mtqnet.training.data import load_speech_dataset
from modeling_mtqnet.labels.intrusive import add_intrusive_labels, estimate_delay, intrusive_scores, sdi
from tests.helpers import build_model, noisy_tone

RATE = 16000


@pytest.fixture(scope="module")
def clean():
    return noisy_tone(3.0, snr_db=45, seed=11)


def with_noise(signal: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(signal.size)
    return signal + noise * np.sqrt(np.mean(signal**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))


def test_a_file_against_itself(clean):
    scores = intrusive_scores(clean, clean, RATE)
    assert scores.pesq == pytest.approx(4.64, abs=0.01)
    assert scores.stoi == pytest.approx(1.0, abs=1e-6)
    assert scores.sdi == pytest.approx(0.0, abs=1e-9) and scores.error == ""


def test_sdi_is_invariant_to_gain_and_delay(clean):
    degraded = with_noise(clean, 10)
    reference = intrusive_scores(degraded, clean, RATE)
    shifted = intrusive_scores(np.concatenate([np.zeros(1234), 0.25 * degraded]), clean, RATE)
    assert shifted.sdi == pytest.approx(reference.sdi, rel=1e-3)
    assert shifted.stoi == pytest.approx(reference.stoi, abs=0.01)
    assert estimate_delay(np.concatenate([np.zeros(1234), clean]), clean, 8000) == 1234
    assert estimate_delay(clean[500:], clean, 8000) == -500
    x = np.random.default_rng(1).standard_normal(1000)
    assert sdi(-x, x) == pytest.approx(4.0) and sdi(3 * x + 1, x) == pytest.approx(0.0, abs=1e-12)


def test_more_noise_is_worse_on_every_metric(clean):
    scores = [intrusive_scores(with_noise(clean, snr, seed=snr + 10), clean, RATE) for snr in (20, 5, -5)]
    assert scores[0].pesq > scores[1].pesq > scores[2].pesq
    assert scores[0].stoi > scores[1].stoi > scores[2].stoi
    assert scores[0].sdi < scores[1].sdi < scores[2].sdi


def test_rates_lengths_and_silence_are_handled(clean):
    mismatched_length = intrusive_scores(clean[: RATE * 2], clean, RATE)
    assert mismatched_length.stoi == pytest.approx(1.0, abs=1e-3) and mismatched_length.error == ""
    resampled = intrusive_scores({"array": clean, "sampling_rate": RATE},
                                 {"array": clean[::2].copy(), "sampling_rate": 8000})
    assert math.isfinite(resampled.pesq) and resampled.stoi > 0.9
    narrow = intrusive_scores(clean[::2].copy(), clean[::2].copy(), 8000)
    assert narrow.pesq == pytest.approx(4.55, abs=0.05)  # P.862 narrow-band maximum
    silent = intrusive_scores(np.zeros(RATE), clean, RATE)
    assert math.isnan(silent.pesq) and math.isnan(silent.sdi) and "silent" in silent.error
    missing = intrusive_scores("/nonexistent/file.wav", clean, RATE)
    assert math.isnan(missing.stoi) and "not found" in missing.error


def test_pesq_no_utterance_gives_nan_with_reason(clean, monkeypatch):
    """PESQ's own refusal (it raises NoUtterancesError on references its VAD finds empty) costs only PESQ."""
    import pesq

    def refuse(*args, **kwargs):
        raise pesq.NoUtterancesError(b"No utterances detected")

    monkeypatch.setattr(pesq, "pesq", refuse)
    scores = intrusive_scores(with_noise(clean, 10), clean, RATE)
    assert math.isnan(scores.pesq) and "PESQ: NoUtterancesError" in scores.error
    assert math.isfinite(scores.stoi) and math.isfinite(scores.sdi)  # the other metrics still come out


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, clean):
    """A manifest of (degraded, clean) pairs at several SNRs, plus one broken row."""
    folder = tmp_path_factory.mktemp("pairs")
    soundfile.write(folder / "clean.wav", clean, RATE)
    rows = []
    for index, snr in enumerate((25, 15, 5, -5)):
        soundfile.write(folder / f"noisy{index}.wav", with_noise(clean, snr, seed=index), RATE)
        rows.append({"path": f"noisy{index}.wav", "clean_path": "clean.wav", "snr": snr})
    (folder / "broken.wav").write_bytes(b"RIFF nonsense")
    rows.append({"path": "broken.wav", "clean_path": "clean.wav", "snr": 0})
    with open(folder / "pairs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder / "pairs.csv"


def read_rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_intrusive_columns_on_a_dataset(pairs):
    dataset = add_intrusive_labels(load_speech_dataset(pairs, "path", path_columns=["clean_path"]), "path",
                                   "clean_path", num_proc=2)
    assert {"pesq", "stoi", "sdi", "error"} <= set(dataset.column_names) and len(dataset) == 5
    stoi = list(dataset["stoi"])
    assert stoi[0] > stoi[1] > stoi[2] > stoi[3]
    assert math.isnan(dataset["pesq"][4]) and "broken.wav" in dataset["error"][4]


def test_annotate_cli_intrusive_keeps_columns_and_resumes(pairs, tmp_path):
    output = tmp_path / "out.csv"
    main(["--input", str(pairs), "--output", str(output), "--teacher", "intrusive", "--clean_column", "clean_path",
          "--shard_size", "2"])
    rows = read_rows(output)
    assert len(rows) == 5 and set(rows[0]) >= {"path", "clean_path", "snr", "pesq", "stoi", "sdi", ERROR_COLUMN}
    assert [r["snr"] for r in rows] == ["25", "15", "5", "-5", "0"]
    assert all(0 <= float(r["stoi"]) <= 1 and 0 <= float(r["sdi"]) <= 4 for r in rows[:4])
    assert rows[4]["pesq"] in ("", "nan") and "broken.wav" in rows[4][ERROR_COLUMN]
    # Resume: a finished shard is not recomputed; a removed one is.
    shards = sorted((tmp_path / "out.csv.shards").iterdir())
    assert len(shards) == 3
    marker = shards[0] / "kept"
    marker.write_text("x")
    shutil.rmtree(shards[1])
    main(["--input", str(pairs), "--output", str(output), "--teacher", "intrusive", "--clean_column", "clean_path",
          "--shard_size", "2"])
    assert marker.exists() and shards[1].exists() and read_rows(output) == rows


def test_intrusive_teacher_needs_a_clean_column():
    with pytest.raises(ValueError, match="clean_column"):
        make_teacher("intrusive", "path")
    with pytest.raises(ValueError, match="neither"):
        make_teacher("/no/such/teacher", "path")


def test_model_teacher_adds_its_target_columns(pairs, tmp_path):
    """A saved MOSA-Net teacher (targets pesq, stoi, sdi): columns by name, one value per row, in range."""
    teacher_model = build_model(target_names=["pesq", "stoi", "sdi"], auxiliary_target_names=[])
    teacher_model.save_pretrained(tmp_path / "teacher")
    output = tmp_path / "pseudo.jsonl"
    main(["--input", str(pairs), "--output", str(output), "--teacher", str(tmp_path / "teacher"),
          "--batch_size", "3"])
    import json

    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == 5
    for row in rows[:4]:
        assert 0 <= row["stoi"] <= 1 and math.isfinite(row["pesq"]) and math.isfinite(row["sdi"])
    assert rows[4]["stoi"] is None or math.isnan(rows[4]["stoi"])
    extractor = MTQNetFeatureExtractor.from_model_config(teacher_model.config)
    with torch.no_grad():
        expected = teacher_model(**extractor(str(pairs.parent / "noisy1.wav"), return_tensors="pt")).logits[0]
    assert rows[1]["pesq"] == pytest.approx(float(expected[0]), abs=1e-4)


def test_model_teacher_clips_its_predictions_to_the_label_ranges(pairs, tmp_path):
    """A linear head can overshoot (SDI below 0): the pseudo label is clipped, else the student refuses it."""
    teacher_model = build_model(target_names=["pesq", "stoi", "sdi"], auxiliary_target_names=[])
    with torch.no_grad():
        teacher_model.heads["pesq"].score.bias.fill_(100.0)
        teacher_model.heads["sdi"].score.bias.fill_(-100.0)
    teacher_model.save_pretrained(tmp_path / "teacher")
    dataset = annotate_dataset(load_speech_dataset(pairs, "path"), make_teacher(str(tmp_path / "teacher"), "path"))
    rows = [row for row in dataset if not row["error"]]
    assert rows and all(row["pesq"] == pytest.approx(4.644) and row["sdi"] == 0.0 for row in rows)


def test_dnsmos_teacher(pairs):
    teacher = make_teacher("dnsmos", "path")
    dataset = annotate_dataset(load_speech_dataset(pairs, "path"), teacher, batch_size=2)
    assert set(DNSMOS_COLUMNS) <= set(dataset.column_names)
    ovrl = list(dataset["dnsmos_ovrl"])
    assert all(1 <= value <= 5 for value in ovrl[:4]) and math.isnan(ovrl[4])
    assert ovrl[0] > ovrl[3]  # 25 dB SNR sounds better than -5 dB
    assert "broken.wav" in dataset[ERROR_COLUMN][4]


def test_knowledge_transfer_copies_the_trunk_only():
    teacher = build_model(seed=1, target_names=["pesq", "stoi", "sdi"], auxiliary_target_names=[])
    student = build_model(seed=2)
    student_heads = {k: v.clone() for k, v in student.heads.state_dict().items()}
    student.load_trunk_from(teacher)
    for name, value in teacher.mtqnet.state_dict().items():
        assert torch.equal(student.mtqnet.state_dict()[name], value), name
    for name, value in student.heads.state_dict().items():
        assert torch.equal(value, student_heads[name])  # heads are the student's own
    other = build_model(cnn_channels=[2, 4, 4, 8])
    with pytest.raises(ValueError, match="does not match"):
        other.load_trunk_from(teacher)


def test_annotate_never_overwrites_a_file_it_did_not_write(pairs, tmp_path):
    arguments = ["--teacher", "intrusive", "--clean_column", "clean_path"]
    foreign = tmp_path / "notes.csv"
    foreign.write_text("name,grade\nalice,5\n")
    with pytest.raises(ValueError, match="not an earlier output of this teacher.*--overwrite"):
        main(["--input", str(pairs), "--output", str(foreign), *arguments])
    assert foreign.read_text() == "name,grade\nalice,5\n" and not (tmp_path / "notes.csv.shards").exists()
    before = pairs.read_text()
    for extra in ([], ["--overwrite"]):
        with pytest.raises(ValueError, match="is the input"):
            main(["--input", str(pairs), "--output", str(pairs), *arguments, *extra])
    assert pairs.read_text() == before
    main(["--input", str(pairs), "--output", str(foreign), *arguments, "--overwrite"])  # on purpose
    assert len(read_rows(foreign)) == 5 and "grade" not in read_rows(foreign)[0]


def test_annotating_again_keeps_an_earlier_teachers_error(pairs, tmp_path):
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    main(["--input", str(pairs), "--output", str(first), "--teacher", "intrusive", "--clean_column", "clean_path"])
    main(["--input", str(first), "--output", str(second), "--teacher", "intrusive", "--clean_column", "clean_path"])
    rows = read_rows(second)
    assert "broken.wav" in rows[4][ERROR_COLUMN] and rows[4][ERROR_COLUMN].count("Cannot decode") == 1
    assert [row[ERROR_COLUMN] for row in rows[:4]] == [""] * 4
