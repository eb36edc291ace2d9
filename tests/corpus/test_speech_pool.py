"""The real-speech pool maker (`mtqnet speech-pool`): speakers and languages from package paths, trimming, the SNR
screen, duplicates, clip lengths and levels, determinism across workers, reuse and refusal of foreign folders.

The packages are imitated: synthetic speech laid out as the real packages lay out theirs."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile

from modeling_mtqnet.corpus import speech_pool
from modeling_mtqnet.corpus.signals import CorpusError, active_speech_power, synthetic_speech
from modeling_mtqnet.corpus.speech_pool import (
    MAX_CLIP_S, MIN_CLIP_S, NOISE_SOURCES, SPEECH_SOURCES, TARGET_LEVEL_DB, estimated_snr_db, make_speech_pool,
    plan_clips, trim_silence,
)

RATE = 16000
USED = ("tuxpaint-stamps-default", "fillets-ng-data-cs", "asterisk-core-sounds-fr-wav")


def _sources():
    return [source for source in SPEECH_SOURCES if source.package in USED]


def _speech(seed: int, seconds: float, rate: int = RATE) -> np.ndarray:
    """Synthetic speech with 0.4 s of silence on each side."""
    speech = synthetic_speech(seconds, np.random.default_rng(seed), rate) * 0.6
    pad = np.zeros(int(0.4 * rate))
    return np.concatenate([pad, speech, pad])


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("packages")
    tux = root / "tuxpaint-stamps-default/usr/share/tuxpaint/stamps/animals"
    tux.mkdir(parents=True)
    for n in range(6):
        soundfile.write(tux / f"cat{n}_desc_es.ogg", _speech(n, 1.5, 44100), 44100, format="OGG", subtype="VORBIS")
        soundfile.write(tux / f"dog{n}_desc.ogg", _speech(10 + n, 1.2, 44100), 44100, format="OGG",
                        subtype="VORBIS")
    soundfile.write(tux / "cat_sound.ogg", _speech(99, 1.0, 44100), 44100, format="OGG", subtype="VORBIS")  # effect
    # A noisy recording (estimated SNR ~10 dB) is screened out; an exact duplicate is dropped.
    noisy = _speech(20, 1.5) + 0.03 * np.random.default_rng(0).standard_normal(int(2.3 * RATE))
    soundfile.write(tux / "cow_desc_el.ogg", noisy, RATE, format="OGG", subtype="VORBIS")
    for name in ("dup_desc_es.ogg", "dup2_desc_es.ogg"):
        soundfile.write(tux / name, _speech(70, 1.5), RATE, format="OGG", subtype="VORBIS")
    fish = root / "fillets-ng-data-cs/usr/share/games/fillets-ng/sound/city/cs"
    fish.mkdir(parents=True)
    for n in range(4):
        soundfile.write(fish / f"city-m-line{n}.ogg", _speech(30 + n, 2.0, 22050), 22050, format="OGG",
                        subtype="VORBIS")
        soundfile.write(fish / f"city-v-line{n}.ogg", _speech(40 + n, 2.5, 22050), 22050, format="OGG",
                        subtype="VORBIS")
    soundfile.write(fish / "city-robot-line0.ogg", _speech(50, 2.0, 22050), 22050, format="OGG", subtype="VORBIS")
    long = root / "asterisk-core-sounds-fr-wav/usr/share/asterisk/sounds/fr_CA_f_June"
    long.mkdir(parents=True)
    soundfile.write(long / "long-prompt.wav", _speech(60, 19.0, 8000), 8000)  # cut into pieces of at most 8 s
    return root


@pytest.fixture(scope="module")
def pool(packages, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pool") / "pool"
    make_speech_pool(packages, out, workers=1, progress=False, speech_sources=_sources(), noise_sources=())
    return out


def test_speakers_languages_and_sex_come_from_the_package_paths(packages):
    files = speech_pool.scan_speech(packages, _sources())
    speakers = {(f.speaker, f.language, f.sex) for f in files}
    assert ("tuxpaint-es", "es", "F") in speakers
    assert ("tuxpaint-en", "en", "?") in speakers  # `_desc.ogg` is English; no credited speaker
    assert ("fillets-cs-small-fish", "cs", "F") in speakers and ("fillets-cs-big-fish", "cs", "M") in speakers
    assert ("asterisk-june", "fr", "F") in speakers
    names = {Path(f.path).name for f in files}
    assert "cat_sound.ogg" not in names  # a sound effect, not speech
    assert "city-robot-line0.ogg" not in names  # characters voiced through effects are left out


def test_a_missing_package_names_the_fetch_command(tmp_path):
    with pytest.raises(CorpusError, match="speech-pool --fetch"):
        speech_pool.scan_speech(tmp_path, _sources())


def test_trim_keeps_the_speech_and_a_short_margin():
    signal = _speech(1, 1.0)
    trimmed = trim_silence(signal)
    assert 0.5 * RATE <= trimmed.size <= 1.0 * RATE + 2 * (0.05 * RATE + 320)  # the 0.4 s pads are gone
    assert np.isclose(np.sum(trimmed**2), np.sum(signal**2), rtol=1e-6)
    assert trim_silence(np.zeros(8000)).size == 0


def test_snr_estimate_separates_clean_from_noisy_recordings():
    clean = _speech(2, 1.5) + 1e-5 * np.random.default_rng(1).standard_normal(int(2.3 * RATE))
    noisy = _speech(2, 1.5) + 0.03 * np.random.default_rng(1).standard_normal(int(2.3 * RATE))
    assert estimated_snr_db(clean) > 50
    assert estimated_snr_db(noisy) < 20
    assert math.isinf(estimated_snr_db(_speech(2, 1.5)))  # digital silence: no floor to measure


def test_clip_plan_stays_within_two_to_eight_seconds():
    rng = np.random.default_rng(0)
    lengths = [int(s * RATE) for s in rng.uniform(0.3, 11.0, 60)]
    clips = plan_clips(lengths, np.random.default_rng(1))
    pause = int(speech_pool.PAUSE_S * RATE)
    for clip in clips:
        size = sum(end - start for _, start, end in clip) + pause * (len(clip) - 1)
        assert MIN_CLIP_S * RATE <= size <= MAX_CLIP_S * RATE
    used = {(index, start) for clip in clips for index, start, _ in clip}
    assert len(used) == sum(len(clip) for clip in clips)  # no piece used twice


def test_pool_clips_are_levelled_16k_and_within_length(pool):
    info = json.loads((pool / "pool_info.json").read_text())
    assert info["clips"] > 0 and info["hours"] > 0
    for path in sorted((pool / "speech").rglob("*.wav")):
        samples, rate = soundfile.read(path)
        assert rate == RATE and samples.ndim == 1
        assert MIN_CLIP_S <= samples.size / RATE <= MAX_CLIP_S + 1e-3
        level = 10 * math.log10(active_speech_power(samples))
        assert abs(level - TARGET_LEVEL_DB) < 0.5, path
    speakers = {row["speaker"] for row in info["speakers"]}
    assert {"tuxpaint-es", "fillets-cs-big-fish", "asterisk-june"} <= speakers
    assert info["dropped"].get("duplicate of another file") == 1
    assert sum(count for reason, count in info["dropped"].items() if reason.startswith("estimated SNR")) == 1
    assert "tuxpaint-el" not in speakers  # its only file was the noisy one
    june = [row for row in info["speakers"] if row["speaker"] == "asterisk-june"][0]
    assert june["narrowband"] is True and june["clips"] >= 2  # 19 s of prompt cut into pieces


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_pool_is_the_same_with_two_workers_and_is_reused(packages, pool, tmp_path):
    other = tmp_path / "pool"
    make_speech_pool(packages, other, workers=2, progress=False, speech_sources=_sources(), noise_sources=())
    assert _digest(other) == _digest(pool)
    before = {p: p.stat().st_mtime_ns for p in other.rglob("*.wav")}
    report = make_speech_pool(packages, other, workers=2, progress=False, speech_sources=_sources(),
                              noise_sources=())
    assert report.reused and {p: p.stat().st_mtime_ns for p in other.rglob("*.wav")} == before
    with pytest.raises(CorpusError, match="other settings"):
        make_speech_pool(packages, other, seed=1, workers=1, progress=False, speech_sources=_sources(),
                         noise_sources=())


def test_a_folder_holding_other_files_is_refused_and_left_alone(packages, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CorpusError, match="not empty"):
        make_speech_pool(packages, tmp_path, workers=1, progress=False, speech_sources=_sources(), noise_sources=())
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_every_source_pins_a_version_and_names_a_licence():
    for source in (*SPEECH_SOURCES, *NOISE_SOURCES):
        assert source.version and source.licence
    versions = speech_pool.package_versions()
    assert len(versions) == len({s.package for s in (*SPEECH_SOURCES, *NOISE_SOURCES)})
