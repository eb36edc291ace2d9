"""`mtqnet score` never loses a row or a file it did not write, and never scores bad input silently."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import soundfile

from modeling_mtqnet.tools import score
from tests.helpers import noisy_tone
from tests.tools.test_score import by_name, run_score


@pytest.fixture()
def audio(tmp_path) -> Path:
    folder = tmp_path / "audio"
    folder.mkdir()
    for index in range(2):
        soundfile.write(folder / f"clip{index}.wav", noisy_tone(0.6, seed=index), 16000)
    return folder


def foreign_table(path: Path) -> str:
    path.write_text("name,grade\nalice,5\nbob,4\n")
    return path.read_text()


def test_a_file_it_did_not_write_is_refused_before_scoring_and_kept(audio, saved_model_dir, tmp_path):
    output = tmp_path / "grades.csv"
    before = foreign_table(output)
    with mock.patch.object(score, "load_model", side_effect=AssertionError("scored before refusing")):
        with pytest.raises(ValueError, match="not an earlier `mtqnet score` output.*--overwrite"):
            run_score(saved_model_dir, output, audio)
    assert output.read_text() == before
    rows = run_score(saved_model_dir, output, audio, extra=["--overwrite"])  # on purpose
    assert len(rows) == 2 and "grade" not in rows[0]


def test_its_own_earlier_output_is_resumed(audio, saved_model_dir, tmp_path):
    output = tmp_path / "scores.csv"
    first = run_score(saved_model_dir, output, audio / "clip0.wav")
    rows = run_score(saved_model_dir, output, audio)
    assert len(rows) == 2 and by_name(rows)["clip0.wav"]["s_mos"] == first[0]["s_mos"]


def test_an_input_manifest_is_never_the_output(audio, saved_model_dir, tmp_path):
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,s_mos\naudio/clip0.wav,3.1\naudio/clip1.wav,4.2\n")
    before = manifest.read_text()
    for extra in ([], ["--overwrite"]):
        with pytest.raises(ValueError, match="one of the inputs"):
            run_score(saved_model_dir, manifest, manifest, extra=extra)
    assert manifest.read_text() == before
    wav = (audio / "clip0.wav").read_bytes()
    with pytest.raises(SystemExit):  # an audio file is not a table: refused by its suffix
        run_score(saved_model_dir, audio / "clip0.wav", audio / "clip0.wav", extra=["--overwrite"])
    assert (audio / "clip0.wav").read_bytes() == wav


def test_a_read_only_output_is_refused_before_scoring(audio, saved_model_dir, tmp_path):
    output = tmp_path / "scores.csv"
    run_score(saved_model_dir, output, audio / "clip0.wav")
    before = output.read_text()
    output.chmod(0o444)
    try:
        with mock.patch.object(score, "load_model", side_effect=AssertionError("scored before refusing")):
            with pytest.raises(ValueError, match="read-only"):
                run_score(saved_model_dir, output, audio)
    finally:
        output.chmod(0o644)
    assert output.read_text() == before


@pytest.mark.skipif(shutil.which("chattr") is None or os.geteuid() != 0, reason="needs chattr and root")
def test_an_immutable_output_is_refused_before_scoring(audio, saved_model_dir, tmp_path):
    output = tmp_path / "scores.csv"
    run_score(saved_model_dir, output, audio / "clip0.wav")
    if subprocess.run(["chattr", "+i", str(output)], capture_output=True).returncode != 0:
        pytest.skip("this file system does not support the immutable attribute")
    try:
        with pytest.raises(ValueError, match="cannot be written"):
            run_score(saved_model_dir, output, audio)
    finally:
        subprocess.run(["chattr", "-i", str(output)], check=True)


def test_scores_survive_a_failed_final_write(audio, saved_model_dir, tmp_path):
    output = tmp_path / "scores.csv"
    with mock.patch.object(score, "write_table", side_effect=OSError(28, "No space left on device")):
        with pytest.raises(OSError, match=r"every row scored so far is kept in .*scores\.csv\.partial"):
            run_score(saved_model_dir, output, audio)
    assert not output.exists()
    assert len(score.read_jsonl(Path(str(output) + ".partial"), required="path")) == 2
    rows = run_score(saved_model_dir, output, audio)  # the rerun merges them without scoring again
    assert len(rows) == 2 and all(row["s_mos"] for row in rows)


def test_near_silent_files_are_reported_not_scored(saved_model_dir, tmp_path):
    folder = tmp_path / "quiet"
    folder.mkdir()
    one_sample = np.zeros(16000, np.int16)
    one_sample[8000] = 1
    dither = np.random.default_rng(0).choice(np.array([-1, 1], np.int16), 16000)
    soundfile.write(folder / "one_lsb.wav", one_sample, 16000, subtype="PCM_16")
    soundfile.write(folder / "dither.wav", dither, 16000, subtype="PCM_16")
    soundfile.write(folder / "quiet_speech.wav", noisy_tone(1.0, seed=4) * 10 ** (-40 / 20), 16000)
    rows = by_name(run_score(saved_model_dir, tmp_path / "out.csv", folder))
    for name in ("one_lsb.wav", "dither.wav"):
        assert "near-silent" in rows[name]["error"] and rows[name]["s_mos"] == ""
    assert rows["quiet_speech.wav"]["error"] == "" and rows["quiet_speech.wav"]["s_mos"]


def test_a_wav_cut_short_is_scored_with_a_warning(saved_model_dir, tmp_path):
    whole, cut = tmp_path / "whole.wav", tmp_path / "cut.wav"
    soundfile.write(whole, noisy_tone(1.0, seed=5), 16000, subtype="PCM_16")
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) - 8000])
    rows = by_name(run_score(saved_model_dir, tmp_path / "out.csv", whole, cut))
    assert rows["whole.wav"]["warning"] == ""
    assert "cut short" in rows["cut.wav"]["warning"] and "8000 more bytes" in rows["cut.wav"]["warning"]
    assert rows["cut.wav"]["error"] == "" and float(rows["cut.wav"]["duration_s"]) == pytest.approx(0.75)


def test_output_columns_are_recognised_in_every_format(tmp_path):
    for suffix in (".csv", ".tsv", ".jsonl"):
        path = tmp_path / f"out{suffix}"
        score.write_table(path, [{"path": "a.wav"}], [*score.OWN_COLUMNS, "s_mos"])
        assert score.is_own_output(path)
    other = tmp_path / "other.csv"
    with open(other, "w", newline="") as handle:
        csv.writer(handle).writerows([["path", "s_mos"], ["a.wav", "3"]])
    assert not score.is_own_output(other)


def test_long_files_are_read_by_the_pipeline_in_blocks(saved_model_dir, tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    soundfile.write(path, noisy_tone(5.0, seed=9), 16000)
    whole = by_name(run_score(saved_model_dir, tmp_path / "whole.csv", path, extra=["--chunk_length_s", "2"]))
    monkeypatch.setattr(score, "STREAM_ABOVE_S", 1.0)
    settings = score.DecodeSettings(16000, 400, None, -70.0, score.STREAM_ABOVE_S)
    assert score.decode_file(str(path), settings)[1] == str(path)  # not decoded by the worker
    streamed = by_name(run_score(saved_model_dir, tmp_path / "streamed.csv", path, extra=["--chunk_length_s", "2"]))
    row, reference = streamed["long.wav"], whole["long.wav"]
    assert row["error"] == "" and float(row["duration_s"]) == pytest.approx(5.0)
    for name in ("s_mos", "n_mos", "g_mos"):
        assert float(row[name]) == pytest.approx(float(reference[name]), abs=1e-4)
