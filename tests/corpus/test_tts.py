"""Offline speech synthesis for the demo corpus (modeling_mtqnet.tts)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile

from modeling_mtqnet.corpus import tts

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_sentences_are_distinct_and_seeded():
    first = tts.make_sentences(300, seed=1)
    assert len(set(first)) == 300
    assert first == tts.make_sentences(300, seed=1)
    assert first != tts.make_sentences(300, seed=2)
    assert all(sentence[-1] in ".?" and sentence[0].isupper() for sentence in first)
    with pytest.raises(ValueError, match="distinct sentences"):
        tts.make_sentences(10**7)


def test_voices_differ():
    for engine in tts.ENGINES:
        voices = tts.make_voices(engine, 6, seed=0)
        assert len({voice.name for voice in voices}) == 6
        settings = {(v.length_scale, v.noise_scale, v.noise_w, v.variant, v.words_per_minute, v.pitch)
                    for v in voices}
        assert len(settings) == 6


@needs_espeak
def test_espeak_layout_resume_and_refusal(tmp_path):
    info = tts.synthesise_speech(tmp_path, count=4, voices=2, engine="espeak-ng", seed=3, sentences_per_file=2,
                                 progress=False)
    assert info["engine"] == "espeak-ng"
    rows = [json.loads(line) for line in (tmp_path / "sentences.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and len({row["name"] for row in rows}) == 2
    for row in rows:
        assert row["path"].startswith(row["name"] + "/")  # the voice folder is the corpus builder's speaker
        assert row["text"].count(".") + row["text"].count("?") == 2
        samples, rate = soundfile.read(tmp_path / row["path"])
        assert samples.size / rate > 1.0 and np.sqrt(np.mean(samples**2)) > 1e-3  # speech, not silence
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.wav")}
    removed = tmp_path / rows[0]["path"]
    removed.unlink()
    tts.synthesise_speech(tmp_path, count=4, voices=2, engine="espeak-ng", seed=3, sentences_per_file=2,
                          progress=False)
    assert removed.exists()
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items() if p != removed)
    with pytest.raises(ValueError, match="use another folder"):
        tts.synthesise_speech(tmp_path, count=4, voices=2, engine="espeak-ng", seed=4, progress=False)


def test_missing_piper_is_named(monkeypatch):
    monkeypatch.setattr(tts, "find_piper", lambda: None)
    with pytest.raises(RuntimeError, match="piper is not available.*venv-tts"):
        tts.available_engine("piper")
    monkeypatch.setattr(tts.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="No speech synthesiser.*espeak-ng"):
        tts.available_engine("auto")
    with pytest.raises(ValueError, match="engine must be"):
        tts.available_engine("festival")


@pytest.mark.skipif(tts.find_piper() is None, reason="piper (.venv-tts) is not set up")
def test_piper_speech_is_reproducible_for_a_seed(tmp_path):
    """piper's own graph draws unseeded noise; the seeded copy makes the same seed give the same bytes."""
    runs = [tts.synthesise_speech(tmp_path / name, count=2, voices=1, engine="piper", seed=seed, progress=False)
            for name, seed in (("a", 5), ("b", 5), ("c", 6))]
    assert all(run["engine"] == "piper" for run in runs)
    audio = {name: [(tmp_path / name / "piper_joe_00" / f"piper_joe_00_{i:05d}.wav").read_bytes() for i in range(2)]
             for name in "abc"}
    assert audio["a"] == audio["b"]
    assert audio["a"] != audio["c"]  # another seed: other sentences and other noise


@pytest.mark.skipif(tts.find_piper() is None, reason="piper (.venv-tts) is not set up")
def test_piper_writes_one_file_per_line_in_order(tmp_path):
    """One piper process per voice names files by timestamp; the mapping back to sentences must keep line order:
    a longer text gives a longer file."""
    engine, piper, model = tts.available_engine("piper")
    voice = tts.make_voices("piper", 1)[0]
    texts = ["Yes.", "The old farmer carried a heavy wooden box across the river before dinner on a cold morning.",
             "No."]
    paths = [tmp_path / f"{i}.wav" for i in range(3)]

    class Counter:
        count = 0

        def update(self, n):
            self.count += n

    counter = Counter()
    tts._synthesise_piper(piper, voice, texts, paths, model, counter)
    durations = [soundfile.info(path).duration for path in paths]
    assert counter.count == 3
    assert durations[1] > 3 * max(durations[0], durations[2])
