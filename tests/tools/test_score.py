"""The `mtqnet-score` corpus scorer: inputs, formats, bad files, resume, outputs, windows, plots, two processes."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from modeling_mtqnet.tools import score
from modeling_mtqnet.model.pipeline_mtqnet import window_starts
from tests.helpers import noisy_tone

NAMES = ["s_mos", "n_mos", "g_mos"]
REPO = Path(__file__).resolve().parents[2]


def direct_scores(model, extractor, audio, **kwargs) -> np.ndarray:
    with torch.no_grad():
        return model(**extractor(audio, return_tensors="pt", **kwargs)).logits[0].numpy()


def run_score(model_dir, output, *inputs, extra=()) -> list[dict]:
    score.main([*map(str, inputs), "--model", str(model_dir), "--output", str(output), "--num_workers", "0",
                "--no_progress", *extra])
    return read_rows(Path(output))


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {os.path.basename(row["path"]): row for row in rows}


def scores_of(row: dict) -> list[float]:
    return [float(row[name]) for name in NAMES]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared CPU: one intra-op thread avoids oversubscription (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """audio/{a.wav, sub/b.FLAC, sub/deeper/c.Wav, notes.txt, data.npy}."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "audio" / "sub" / "deeper").mkdir(parents=True)
    soundfile.write(root / "audio" / "a.wav", noisy_tone(0.6, seed=1), 16000)
    soundfile.write(root / "audio" / "sub" / "b.FLAC", noisy_tone(0.5, seed=2), 16000)
    soundfile.write(root / "audio" / "sub" / "deeper" / "c.Wav", noisy_tone(0.7, seed=3), 16000)
    (root / "audio" / "notes.txt").write_text("not audio")
    (root / "audio" / "data.npy").write_bytes(b"\x93NUMPY")
    return root


def test_directory_recursion_and_extensions(corpus, saved_model_dir, tmp_path):
    audio = corpus / "audio"
    found = score.collect_inputs([str(audio)])
    assert [os.path.relpath(p, audio) for p in found] == ["a.wav", "sub/b.FLAC", "sub/deeper/c.Wav"]
    assert all(os.path.isabs(p) for p in found)
    assert [os.path.basename(p) for p in score.collect_inputs([str(audio)], ["flac"])] == ["b.FLAC"]
    assert len(score.collect_inputs([str(audio)], ["WAV,.flac"])) == 3  # comma-separated, dot and case ignored
    # The same file reached twice (folder + explicit path) is scored once.
    assert len(score.collect_inputs([str(audio), str(audio / "a.wav")])) == 3
    rows = run_score(saved_model_dir, tmp_path / "out.csv", audio, extra=["--extensions", "FLAC,.wave"])
    assert [os.path.basename(row["path"]) for row in rows] == ["b.FLAC"] and rows[0]["error"] == ""


def test_glob_and_manifest_inputs(corpus, saved_model_dir, tmp_path):
    audio = corpus / "audio"
    assert [os.path.basename(p) for p in score.collect_inputs([f"{audio}/**/*.[wW][aA][vV]"])] == ["a.wav", "c.Wav"]
    assert len(score.collect_inputs([f"{audio}/su*"])) == 2  # a matched folder is searched
    warnings = []
    assert score.collect_inputs([f"{audio}/*.mp3"], log=warnings.append) == [] and "matches no file" in warnings[0]

    manifest = corpus / "lists" / "manifest.csv"
    manifest.parent.mkdir(exist_ok=True)
    manifest.write_text("wav,label\n../audio/a.wav,1\n../audio/sub/b.FLAC,2\n")
    assert score.collect_inputs([str(manifest)], audio_column="wav") == [str(audio / "a.wav"),
                                                                        str(audio / "sub" / "b.FLAC")]
    rows = run_score(saved_model_dir, tmp_path / "out.csv", manifest, f"{audio}/sub/deeper/*.Wav",
                     extra=["--audio_column", "wav"])
    assert sorted(by_name(rows)) == ["a.wav", "b.FLAC", "c.Wav"]
    assert all(row["error"] == "" and float(row["s_mos"]) > 0 for row in rows)


def test_rates_channels_and_formats_score_as_the_model_does(saved_model_dir, tiny_model, extractor, tmp_path):
    rng = np.random.default_rng(0)
    stereo = np.stack([noisy_tone(0.8, seed=4), noisy_tone(0.8, seed=5)], axis=1)
    pcm_8k = (np.stack([noisy_tone(0.9, seed=6, rate=8000), 0.5 * noisy_tone(0.9, seed=7, rate=8000)], 1) *
              32767).astype(np.int16)
    clips = {
        "stereo.wav": (stereo, 16000, {}),
        "rate44k.flac": (noisy_tone(0.7, seed=8, rate=44100), 44100, {}),
        "pcm8k.wav": (pcm_8k, 8000, {"subtype": "PCM_16"}),
        "quad48k.w64": (rng.uniform(-0.3, 0.3, (30000, 4)).astype(np.float32), 48000, {}),
    }
    for name, (array, rate, kwargs) in clips.items():
        soundfile.write(tmp_path / name, array, rate, **kwargs)
    soundfile.write(tmp_path / "lossy.ogg", noisy_tone(0.8, seed=9, rate=22050), 22050)
    rows = by_name(run_score(saved_model_dir, tmp_path / "out.csv", tmp_path, extra=["--batch_size", "3"]))
    for name, (array, rate, _) in clips.items():
        row = rows[name]
        assert row["error"] == "" and int(row["sampling_rate"]) == rate
        assert int(row["channels"]) == (1 if array.ndim == 1 else array.shape[1])
        assert float(row["duration_s"]) == pytest.approx(array.shape[0] / rate)
        np.testing.assert_allclose(scores_of(row), direct_scores(tiny_model, extractor, array, sampling_rate=rate),
                                   atol=1e-4, err_msg=name)
    assert rows["lossy.ogg"]["error"] == "" and int(rows["lossy.ogg"]["sampling_rate"]) == 22050
    np.testing.assert_allclose(scores_of(rows["lossy.ogg"]),
                               direct_scores(tiny_model, extractor, str(tmp_path / "lossy.ogg")), atol=1e-4)


def test_bad_files_are_reported_and_the_run_carries_on(saved_model_dir, tiny_model, extractor, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    soundfile.write(audio / "good1.wav", noisy_tone(0.5, seed=10), 16000)
    soundfile.write(audio / "good2.wav", noisy_tone(0.6, seed=11), 16000)
    (audio / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk" + os.urandom(200))
    (audio / "zero_bytes.flac").write_bytes(b"")
    soundfile.write(audio / "no_frames.wav", np.zeros((0, 2), np.float32), 16000)
    soundfile.write(audio / "silent.wav", np.zeros(16000, np.float32), 16000)
    nan = noisy_tone(0.5, seed=12)
    nan[100:110] = np.nan
    soundfile.write(audio / "nan.wav", nan, 16000, subtype="FLOAT")
    soundfile.write(audio / "too_short.wav", noisy_tone(0.01, seed=13), 16000)
    rows = by_name(run_score(saved_model_dir, tmp_path / "out.jsonl", audio, tmp_path / "missing.wav",
                             extra=["--batch_size", "4"]))
    expected_errors = {"corrupt.wav": "decode", "zero_bytes.flac": "decode", "no_frames.wav": "empty",
                       "silent.wav": "silent", "nan.wav": "NaN", "too_short.wav": "too short",
                       "missing.wav": "not found"}
    assert set(rows) == {"good1.wav", "good2.wav", *expected_errors}
    for name, word in expected_errors.items():
        assert word in rows[name]["error"], (name, rows[name]["error"])
        assert all(rows[name][target] is None for target in NAMES)
    assert rows["silent.wav"]["duration_s"] == 1.0 and rows["corrupt.wav"]["sampling_rate"] is None
    for name in ("good1.wav", "good2.wav"):
        assert rows[name]["error"] == ""
        np.testing.assert_allclose(scores_of(rows[name]), direct_scores(tiny_model, extractor, str(audio / name)),
                                   atol=1e-4)


def test_killed_run_resumes_without_rescoring(saved_model_dir, tmp_path, monkeypatch, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    for index in range(6):
        soundfile.write(audio / f"f{index}.wav", noisy_tone(0.4, seed=20 + index), 16000)
    output = tmp_path / "out.csv"
    reference = by_name(run_score(saved_model_dir, tmp_path / "reference.csv", audio))

    # 1. Killed after its second batch: OUT does not exist yet, the partial file holds two complete batches.
    real_score_batch = score.CorpusScorer.score_batch
    batches = []

    def dying_score_batch(self, batch, plot_dir=None):
        if len(batches) == 2:
            raise KeyboardInterrupt
        batches.append(len(batch))
        return real_score_batch(self, batch, plot_dir)

    monkeypatch.setattr(score.CorpusScorer, "score_batch", dying_score_batch)
    with pytest.raises(KeyboardInterrupt):
        run_score(saved_model_dir, output, audio, extra=["--batch_size", "2"])
    monkeypatch.setattr(score.CorpusScorer, "score_batch", real_score_batch)
    partial = score.partial_path(output)
    assert not output.exists() and [row["path"] for row in score.read_jsonl(partial)] == [
        str(audio / f"f{i}.wav") for i in range(4)]
    # A torn last line (killed mid-write) and a sentinel score that must survive, i.e. f1 is not scored again.
    lines = partial.read_text().splitlines(keepends=True)
    sentinel = json.loads(lines[1])
    sentinel["s_mos"] = 123.0
    partial.write_text(lines[0] + json.dumps(sentinel) + "\n" + "".join(lines[2:]) + lines[3][:40])

    # 2. The rerun scores only f4 and f5 (counted at the model), then writes OUT whole.
    seen = []
    real_load_model = score.load_model

    def counting_load_model(*args, **kwargs):
        model, extractor = real_load_model(*args, **kwargs)
        model.register_forward_pre_hook(lambda module, a, kw: seen.append(kw["input_values"].shape[0]),
                                        with_kwargs=True)
        return model, extractor

    monkeypatch.setattr(score, "load_model", counting_load_model)
    capsys.readouterr()
    rows = run_score(saved_model_dir, output, audio, extra=["--batch_size", "2"])
    assert sum(seen) == 2
    assert "resuming: 4 of 6 file(s) already scored" in capsys.readouterr().err
    assert [os.path.basename(row["path"]) for row in rows] == [f"f{i}.wav" for i in range(6)]
    assert float(by_name(rows)["f1.wav"]["s_mos"]) == 123.0
    for name in ("f0.wav", "f3.wav", "f4.wav", "f5.wav"):
        np.testing.assert_allclose(scores_of(by_name(rows)[name]), scores_of(reference[name]), atol=1e-5)
    assert not partial.exists() and not list(tmp_path.glob("out.csv.*"))

    # 3. A finished OUT is resumed from too: a new file is the only one scored.
    soundfile.write(audio / "f6.wav", noisy_tone(0.4, seed=30), 16000)
    seen.clear()
    rows = run_score(saved_model_dir, output, audio, extra=["--batch_size", "2"])
    assert sum(seen) == 1 and len(rows) == 7 and float(by_name(rows)["f1.wav"]["s_mos"]) == 123.0


def test_csv_and_jsonl_agree_and_long_files_get_chunks(saved_model_dir, tiny_model, extractor, tmp_path):
    long_audio = noisy_tone(2.6, seed=40)
    soundfile.write(tmp_path / "long.wav", long_audio, 16000, subtype="FLOAT")
    soundfile.write(tmp_path / "short.wav", noisy_tone(0.8, seed=41), 16000, subtype="FLOAT")
    soundfile.write(tmp_path / "silent.wav", np.zeros(8000, np.float32), 16000)
    window = ["--chunk_length_s", "1.0", "--stride_length_s", "0.25"]
    csv_rows = by_name(run_score(saved_model_dir, tmp_path / "out" / "scores.csv", tmp_path, extra=window))
    json_rows = by_name(run_score(saved_model_dir, tmp_path / "out" / "scores.jsonl", tmp_path, extra=window))
    assert set(csv_rows) == set(json_rows) == {"long.wav", "short.wav", "silent.wav"}
    for name in csv_rows:
        assert csv_rows[name]["error"] == json_rows[name]["error"]
        if not json_rows[name]["error"]:
            np.testing.assert_allclose(scores_of(csv_rows[name]), scores_of(json_rows[name]), atol=1e-9)
    assert csv_rows["silent.wav"]["s_mos"] == "" and json_rows["silent.wav"]["s_mos"] is None
    assert csv_rows["short.wav"]["chunks"] == "" and json_rows["short.wav"]["chunks"] is None
    np.testing.assert_allclose(scores_of(json_rows["short.wav"]),
                               direct_scores(tiny_model, extractor, str(tmp_path / "short.wav")), atol=1e-4)

    chunks = json_rows["long.wav"]["chunks"]
    assert json.loads(csv_rows["long.wav"]["chunks"]) == chunks
    starts = window_starts(long_audio.size, 16000, 12000)
    assert [round(c["start_s"] * 16000) for c in chunks] == starts and len(starts) == 3
    for chunk, start in zip(chunks, starts):
        np.testing.assert_allclose([chunk[name] for name in NAMES],
                                   direct_scores(tiny_model, extractor, long_audio[start:start + 16000],
                                                 sampling_rate=16000), atol=1e-4)
    np.testing.assert_allclose(scores_of(json_rows["long.wav"]),
                               np.mean([[c[name] for name in NAMES] for c in chunks], axis=0), atol=1e-6)


def test_plot_dir_has_a_curve_per_file_and_histograms(saved_model_dir, corpus, tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"garbage")
    plots = tmp_path / "plots"
    rows = run_score(saved_model_dir, tmp_path / "out.csv", corpus / "audio", tmp_path / "bad.wav",
                     extra=["--plot_dir", str(plots), "--num_workers", "2"])
    assert len(rows) == 4
    curves = sorted(p.name for p in plots.glob("*.png") if not p.name.startswith("hist_"))
    assert curves == sorted(score.plot_name(row["path"]) for row in rows if not row["error"]) and len(curves) == 3
    assert sorted(p.name for p in plots.glob("hist_*.png")) == [f"hist_{name}.png" for name in sorted(NAMES)]
    for png in plots.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_bad_output_suffix_is_refused():
    with pytest.raises(SystemExit):
        score.parse_args(["a.wav", "--model", "m", "--output", "scores.txt"])


def test_two_processes_score_each_file_once_as_one_process_does(saved_model_dir, corpus, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for index in range(5):
        soundfile.write(audio / f"p{index}.wav", noisy_tone(0.3 + 0.1 * index, seed=50 + index), 16000)
    (audio / "broken.wav").write_bytes(b"not a wav")
    single = by_name(run_score(saved_model_dir, tmp_path / "single.csv", audio, extra=["--batch_size", "1"]))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = tmp_path / "multi" / "scores.csv"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         "-m", "modeling_mtqnet.tools.score", str(audio), "--model", str(saved_model_dir), "--output", str(output),
         "--batch_size", "1", "--num_workers", "1", "--no_progress"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "[mtqnet-score 1/2] scoring 3 file(s)" in completed.stderr  # indexes 1, 3, 5 of 6
    rows = read_rows(output)
    assert sorted(row["path"] for row in rows) == sorted(single_row["path"] for single_row in single.values())
    assert len({row["path"] for row in rows}) == len(rows) == 6
    for name, row in by_name(rows).items():
        assert row["error"] == single[name]["error"]
        if not row["error"]:
            np.testing.assert_allclose(scores_of(row), scores_of(single[name]), atol=1e-5)
    assert sorted(p.name for p in output.parent.iterdir()) == ["scores.csv"]  # partials and markers cleaned up


# -- symbolic links: loops never followed, each real file once --------------------------------------------------------


def linked_tree(root: Path) -> Path:
    """root/audio/{a.wav, sub/b.wav} with two link loops (sub/up -> audio, sub/self -> sub), a link to a file and a
    linked copy of the whole folder (root/mirror -> audio)."""
    audio = root / "audio"
    (audio / "sub").mkdir(parents=True)
    for path in (audio / "a.wav", audio / "sub" / "b.wav"):
        soundfile.write(path, noisy_tone(0.5, seed=len(path.name)), 16000)
    os.symlink(audio, audio / "sub" / "up")
    os.symlink(audio / "sub", audio / "sub" / "self")
    os.symlink(audio / "a.wav", audio / "a_again.wav")
    os.symlink(audio, root / "mirror")
    return audio


def test_globs_do_not_follow_folder_links_and_find_each_file_once(tmp_path):
    audio = linked_tree(tmp_path)
    found = score.collect_inputs([str(audio / "**" / "*.wav")], log=lambda message: None)
    assert found == [str(audio / "a.wav"), str(audio / "sub" / "b.wav")]  # a_again.wav is a.wav
    both = score.collect_inputs([str(audio / "**" / "*.wav"), str(tmp_path / "mirror" / "**" / "*.wav")],
                                log=lambda message: None)
    assert both == found


def test_folders_do_not_follow_folder_links_and_find_each_file_once(tmp_path):
    audio = linked_tree(tmp_path)
    found = score.collect_inputs([str(audio), str(tmp_path / "mirror")], log=lambda message: None)
    assert found == [str(audio / "a.wav"), str(audio / "sub" / "b.wav")]


def test_glob_without_links_agrees_with_glob_on_a_tree_without_links(tmp_path):
    import glob

    for relative in ("x/1.wav", "x/y/2.WAV", "x/y/z/3.wav", "x/.hidden/4.wav", "x/y/.5.wav", "x/6.flac"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    for pattern in ("x/**/*.wav", "x/*/*.wav", "x/**", "x/y/?.WAV", "x/**/z/*", "x/[xy]/*"):
        full = str(tmp_path / pattern)
        assert score.glob_without_links(full) == sorted(glob.glob(full, recursive=True)) or pattern == "x/**", pattern
    assert set(score.glob_without_links(str(tmp_path / "x/**"))) >= {str(tmp_path / "x/1.wav"),
                                                                      str(tmp_path / "x/y/z/3.wav")}
