"""Corpus builder: SNRs measured back, alignment, systems and codecs, determinism, parallel workers, resume, errors,
held-out splits, settings (`CorpusSettings`) and compatibility with corpora of the pre-settings builder."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from modeling_mtqnet.corpus import builder, signals, systems
from modeling_mtqnet.corpus.builder import CorpusError, CorpusSettings, build_corpus
from modeling_mtqnet.corpus.systems import CODECS, DISTORTIONS, ENHANCERS, system_status

RATE = 16000
SENTENCES = ("The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.")
VOICES = ("en-us", "en-gb", "en-gb-scotland")


def _available(names) -> list[str]:
    return [name for name in names if system_status(name).available]


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory) -> Path:
    """Three speakers x two utterances: espeak-ng at 22.05 kHz when installed, else synthetic speech; one file is
    a stereo FLAC (any format libsndfile reads is accepted)."""
    folder = tmp_path_factory.mktemp("clean")
    espeak = shutil.which("espeak-ng")
    for speaker, voice in enumerate(VOICES):
        (folder / f"spk{speaker}").mkdir()
        for number, sentence in enumerate(SENTENCES):
            path = folder / f"spk{speaker}" / f"utt{number}.wav"
            if espeak:
                subprocess.run([espeak, "-v", voice, "-w", str(path), sentence], check=True, capture_output=True)
            else:
                speech = signals.synthetic_speech(2.0, np.random.default_rng([speaker, number]), rate=22050)
                soundfile.write(path, speech, 22050)
    samples, rate = soundfile.read(folder / "spk2" / "utt1.wav")
    stereo = np.stack([samples, 0.5 * samples], axis=1)
    soundfile.write(folder / "spk2" / "utt1.flac", stereo, rate)
    (folder / "spk2" / "utt1.wav").unlink()
    (folder / "README.txt").write_text("not audio: ignored")
    return folder


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory) -> Path:
    """One recorded-noise stand-in: 1 s of low-passed noise at 8 kHz (shorter than the speech: it gets looped)."""
    folder = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(5)
    hiss = np.convolve(rng.standard_normal(8000), np.ones(4) / 4, mode="same") * 0.1
    soundfile.write(folder / "fan.wav", hiss, 8000)
    return folder


def _rows(report) -> list[dict[str, str]]:
    with open(report.manifest, newline="") as handle:
        return list(csv.DictReader(handle))


def _read(root: Path, relative: str) -> np.ndarray:
    samples, rate = soundfile.read(root / relative, dtype="float64")
    assert rate == RATE and samples.ndim == 1
    return samples


def _active_power(speech: np.ndarray) -> float:
    """The documented definition, re-implemented: 20 ms frames within 40 dB of the loudest frame."""
    frames = speech[: speech.size // 320 * 320].reshape(-1, 320)
    power = np.mean(frames**2, axis=1)
    return float(power[power >= power.max() * 1e-4].mean())


def _lag(signal: np.ndarray, reference: np.ndarray, max_lag: int = 80) -> int:
    """Lag (samples) of the cross-correlation peak, by direct dot products."""
    core = reference[max_lag:-max_lag]
    scores = [np.dot(signal[max_lag + lag: max_lag + lag + core.size], core) for lag in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


@pytest.mark.parametrize("snr_mode", ["active", "whole"])
def test_snr_measured_back_for_every_noise_type(tmp_path, clean_dir, noise_dir, snr_mode):
    snrs = [-5, 0, 10, 20]
    report = build_corpus(clean_dir, tmp_path, noise_dir=noise_dir, noises=["procedural", "files"], snrs=snrs,
                          count=14, seed=3, snr_mode=snr_mode, save_noise=True, progress=False)
    rows = _rows(report)
    assert len(rows) == 14
    assert {row["noise_type"] for row in rows} == {*builder.PROCEDURAL_NOISES, "fan"}
    assert {float(row["snr_db"]) for row in rows} == set(snrs)
    for row in rows:
        mix, noise, clean = (_read(tmp_path, row[key]) for key in ("path", "noise_path", "clean_path"))
        assert mix.size == noise.size == clean.size == round(float(row["duration_s"]) * RATE)
        speech = mix - noise  # measured back from the mix and the scaled noise
        speech_power = _active_power(speech) if snr_mode == "active" else np.mean(speech**2)
        measured = 10 * np.log10(speech_power / np.mean(noise**2))
        assert abs(measured - float(row["snr_db"])) < 0.5, (row, measured)
        # The clean reference is the speech in the mix, sample for sample (16-bit rounding aside).
        np.testing.assert_allclose(speech, clean, atol=1e-4)
    babble = next(row for row in rows if row["noise_type"] == "babble")
    assert babble["speaker"] not in {Path(talker).parts[0] for talker in babble["noise_source"].split(";")}


def test_every_available_system_gives_aligned_output_of_the_right_length(tmp_path, clean_dir):
    systems = _available(ENHANCERS + CODECS)
    if not systems:
        pytest.skip("no enhancement system or codec is installed")
    report = build_corpus(clean_dir, tmp_path, noises=["white"], snrs=[10], systems=systems, count=len(systems),
                          seed=0, save_noise=True, progress=False)
    rows = _rows(report)
    assert sorted(row["system"] for row in rows) == sorted(systems)  # balanced: each system once
    assert set(report.systems_used) == set(systems)
    info = json.loads((tmp_path / "corpus_info.json").read_text())
    assert set(info["systems_used"]) == set(systems)
    for row in rows:
        degraded, clean, noise = (_read(tmp_path, row[key]) for key in ("path", "clean_path", "noise_path"))
        assert degraded.size == clean.size, row
        assert row["system_kind"] == ("enhancement" if row["system"] in ENHANCERS else "codec")
        assert np.max(np.abs(degraded - (clean + noise))) > 1e-3, f"{row['system']} left the mix unchanged"
        # Aligned with the clean reference: enhancers to +-1 sample, codecs to +-2 (low-rate codecs smear phase).
        tolerance = 1 if row["system"] in ENHANCERS else 2
        assert abs(_lag(degraded, clean)) <= tolerance, (row["system"], _lag(degraded, clean))


def test_rnnoise_lag_is_compensated():
    if not system_status("rnnoise").available:
        pytest.skip(system_status("rnnoise").backend)
    rng = np.random.default_rng(1)
    speech = signals.synthetic_speech(2.0, rng).astype(np.float64) * 0.3
    noise = 0.003 * rng.standard_normal(speech.size)
    raw = systems._rnnoise(np.concatenate([speech + noise, np.zeros(systems.TAIL_PADDING)]))
    assert abs(_lag(raw[: speech.size], speech)) <= 1
    # Without removing RNNoise's 20 ms the output would lag by 320 samples at 16 kHz.
    assert systems.RNNOISE_DELAY / systems.RNNOISE_RATE == pytest.approx(0.020)


def test_unavailable_system_is_skipped_and_reported(tmp_path, clean_dir, monkeypatch):
    real = systems.system_status

    def fake(name):
        return systems.SystemStatus(name, "codec", False, "lame missing (test)") if name == "mp3" else real(name)

    monkeypatch.setattr(builder, "system_status", fake)  # where the builder looks it up
    report = build_corpus(clean_dir, tmp_path, noises=["white"], systems=["none", "mp3"], count=3, progress=False)
    assert report.systems_unavailable == {"mp3": "lame missing (test)"}
    assert {row["system"] for row in _rows(report)} == {"none"}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path, clean_dir):
    systems = ["none"] + _available(["gsm", "rnnoise"])
    kwargs = dict(noises=["white", "pink", "hum", "babble", "speech_shaped"], systems=systems, count=6,
                  progress=False)
    first = build_corpus(clean_dir, tmp_path / "a", seed=7, **kwargs)
    build_corpus(clean_dir, tmp_path / "b", seed=7, **kwargs)
    build_corpus(clean_dir, tmp_path / "c", seed=8, **kwargs)
    a, b, c = (_snapshot(tmp_path / name) for name in "abc")
    assert len([name for name in a if name.endswith(".wav")]) == 12
    assert a == b
    noisy_a = {k: v for k, v in a.items() if "/noisy/" in k}
    noisy_c = {k: v for k, v in c.items() if "/noisy/" in k}
    assert noisy_a != noisy_c and a["manifest.csv"] != c["manifest.csv"]
    assert first.written == 6


def _recording_pids(monkeypatch, record: Path) -> None:
    """Each utterance written appends the id of the process that wrote it to `record` (workers inherit the patch)."""
    real = builder._write_utterance

    def recording(item, context, output_dir):
        with open(record, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return real(item, context, output_dir)

    monkeypatch.setattr(builder, "_write_utterance", recording)


def test_files_do_not_depend_on_the_number_of_workers(tmp_path, clean_dir, monkeypatch):
    kwargs = dict(noises=["white", "pink", "babble", "speech_shaped", "hum"], snrs=[0, 10, float("inf")],
                  systems=["none", "distortions"], count=12, seed=2, save_noise=True, level_jitter_db=3.0,
                  progress=False)
    _recording_pids(monkeypatch, tmp_path / "pids")
    reports = {}
    for workers in (1, 2):
        reports[workers] = build_corpus(clean_dir, tmp_path / f"w{workers}", workers=workers, **kwargs)
        pids = set((tmp_path / "pids").read_text().split())
        (tmp_path / "pids").unlink()
        # One worker: this process; two: two other processes.
        assert pids == {str(os.getpid())} if workers == 1 else (len(pids) == 2 and str(os.getpid()) not in pids)
    one, two = (_snapshot(tmp_path / f"w{workers}") for workers in (1, 2))
    assert len([name for name in one if name.endswith(".wav")]) == 36
    assert one == two  # every file, the manifest and corpus_info.json included
    assert reports[1].rows == reports[2].rows and reports[1].written == reports[2].written == 12
    assert reports[1].systems_used == reports[2].systems_used and reports[1].delays == reports[2].delays
    rows = _rows(reports[2])
    assert {row["system"] for row in rows} == {"none", *DISTORTIONS}
    for row in rows:
        assert row["system_kind"] == ("none" if row["system"] == "none" else "distortion")
        degraded, clean = _read(tmp_path / "w2", row["path"]), _read(tmp_path / "w2", row["clean_path"])
        assert degraded.size == clean.size
        if row["system"] in ("reverb", "bandlimit"):
            assert _lag(degraded, clean) == 0, row

    # Resumed by two workers: only the missing utterances are written, the same bytes again.
    removed = sorted(p for p in (tmp_path / "w2").rglob("*.wav") if "/noisy/" in p.as_posix())[::4]
    for path in removed:
        path.unlink()
    (tmp_path / "w2" / "manifest.csv").unlink()
    resumed = build_corpus(clean_dir, tmp_path / "w2", workers=2, **kwargs)
    assert (resumed.written, resumed.reused) == (len(removed), 12 - len(removed))
    assert _snapshot(tmp_path / "w2") == one


def test_workers_report_and_raise_bad_utterances_as_one_process_does(tmp_path, clean_dir, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(clean_dir, broken)
    soundfile.write(broken / "spk0" / "short.wav", np.full(500, 0.1), RATE)  # readable, but under 0.1 s
    kwargs = dict(noises=["white"], systems=["none", "clipping"], seed=1, progress=False)
    report = build_corpus(broken, tmp_path / "skip", skip_bad_files=True, workers=2, **kwargs)
    assert len(report.bad_files) == 1 and "short.wav is too short" in report.bad_files[0]
    assert len(report.rows) == 6 and report.written == 6  # one utterance per clean file, the short one left out
    serial = build_corpus(broken, tmp_path / "skip1", skip_bad_files=True, workers=1, **kwargs)
    assert serial.bad_files == report.bad_files and serial.rows == report.rows
    with pytest.raises(CorpusError, match=r"short\.wav is too short"):
        build_corpus(broken, tmp_path / "stop", workers=2, **kwargs)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(CorpusError, match="workers must be"):
            build_corpus(clean_dir, tmp_path / "never", workers=bad, **kwargs)
    assert not (tmp_path / "never").exists()

    with pytest.raises(SystemExit):
        builder.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--workers WORKERS processes generating utterances" in help_text and "distortions" in help_text
    output = tmp_path / "cli"
    assert builder.main(["--clean_dir", str(clean_dir), "--output_dir", str(output), "--count", "3", "--noises",
                         "pink", "--systems", "distortions", "--workers", "2", "--no_progress"]) == 0
    assert builder.main(["--clean_dir", str(clean_dir), "--output_dir", str(output), "--workers", "0",
                         "--no_progress"]) == 2
    assert "workers must be" in capsys.readouterr().err
    assert builder.corpus_workers(None, 1) == builder.corpus_workers(8, 1) == 1
    assert builder.corpus_workers(8, 3) == 3 and builder.corpus_workers(2, 10) == 2
    assert 1 <= builder.corpus_workers(None, 100) <= (os.cpu_count() or 1)


def test_resume_writes_nothing_new_and_restores_missing_files(tmp_path, clean_dir):
    kwargs = dict(noises=["white", "babble"], count=5, seed=1, progress=False)
    build_corpus(clean_dir, tmp_path, **kwargs)
    audio = sorted(p for p in tmp_path.rglob("*.wav"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in audio}
    manifest = (tmp_path / "manifest.csv").read_text()

    again = build_corpus(clean_dir, tmp_path, **kwargs)
    assert (again.written, again.reused) == (0, 5)
    assert {p: p.stat().st_mtime_ns for p in audio} == {p: m for p, (m, _) in before.items()}
    assert (tmp_path / "manifest.csv").read_text() == manifest

    lost = next(p for p in audio if "/noisy/" in p.as_posix())
    lost.unlink()
    repaired = build_corpus(clean_dir, tmp_path, **kwargs)
    assert repaired.written == 1 and lost.read_bytes() == before[lost][1]

    extended = build_corpus(clean_dir, tmp_path, **{**kwargs, "count": 7})
    assert (extended.written, extended.reused) == (2, 5)
    assert (tmp_path / "manifest.csv").read_text().startswith(manifest)

    with pytest.raises(CorpusError, match="seed"):
        build_corpus(clean_dir, tmp_path, **{**kwargs, "seed": 2})


def test_empty_folder_and_unreadable_file_are_refused_by_name(tmp_path, clean_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    with pytest.raises(CorpusError, match=f"clean speech folder {empty}.* holds no audio files"):
        build_corpus(empty, tmp_path / "out0", progress=False)
    with pytest.raises(CorpusError, match="does not exist"):
        build_corpus(tmp_path / "missing", tmp_path / "out1", progress=False)
    with pytest.raises(CorpusError, match=f"noise folder {empty}"):
        build_corpus(clean_dir, tmp_path / "out2", noise_dir=empty, progress=False)

    broken = tmp_path / "broken"
    shutil.copytree(clean_dir, broken)
    (broken / "spk0" / "bad.wav").write_bytes(b"RIFF0000WAVEthis is not audio")
    with pytest.raises(CorpusError, match=r"Unreadable clean speech file .*spk0/bad\.wav"):
        build_corpus(broken, tmp_path / "out3", progress=False)
    report = build_corpus(broken, tmp_path / "out4", noises=["white"], count=2, skip_bad_files=True,
                          progress=False)
    assert len(report.bad_files) == 1 and "bad.wav" in report.bad_files[0]
    assert all("bad" not in row["source_file"] for row in _rows(report))


def test_held_out_conditions_appear_only_in_the_test_split(tmp_path, clean_dir):
    held_out_system = (_available(["gsm", "rnnoise", "noisereduce"]) or [None])[0]
    report = build_corpus(clean_dir, tmp_path, noises=["white", "pink", "hum"], test_noises=["babble"],
                          systems=["none"], test_systems=[held_out_system] if held_out_system else [],
                          test_fraction=0.3, count=10, progress=False)
    rows = _rows(report)
    train = [row for row in rows if row["split"] == "train"]
    test = [row for row in rows if row["split"] == "test"]
    assert len(test) == 3 and len(train) == 7
    assert all(row["noise_type"] == "babble" for row in test)
    assert all(row["noise_type"] != "babble" for row in train)
    assert {row["speaker"] for row in train}.isdisjoint(row["speaker"] for row in test)
    if held_out_system:
        assert {row["system"] for row in test} == {held_out_system}
        assert {row["system"] for row in train} == {"none"}
    assert all(row["path"].startswith(row["split"] + "/") for row in rows)


def test_test_split_can_mix_seen_and_held_out_conditions(tmp_path, clean_dir):
    report = build_corpus(clean_dir, tmp_path, noises=["white", "pink"], test_noises=["babble"], systems=["none"],
                          test_fraction=0.5, test_seen_conditions=True, count=24, progress=False)
    rows = _rows(report)
    test_noises = {row["noise_type"] for row in rows if row["split"] == "test"}
    assert test_noises == {"white", "pink", "babble"}
    assert "babble" not in {row["noise_type"] for row in rows if row["split"] == "train"}


def test_command_line(tmp_path, clean_dir, capsys):
    output = tmp_path / "cli"
    assert builder.main(["--clean_dir", str(clean_dir), "--output_dir", str(output), "--count", "4", "--snrs", "5",
                        "inf", "--noises", "pink", "--no_progress"]) == 0
    with open(output / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["snr_db"] for row in rows) == ["5.0", "5.0", "inf", "inf"]
    assert set(rows[0]) == set(builder.MANIFEST_COLUMNS) and {row["system"] for row in rows} == {"none"}
    for row in rows:  # SNR inf: no noise, so the degraded file is the clean reference
        same = (output / row["path"]).read_bytes() == (output / row["clean_path"]).read_bytes()
        assert same == (row["snr_db"] == "inf") and (row["noise_type"] == "none") == same

    empty = tmp_path / "empty"
    empty.mkdir()
    assert builder.main(["--clean_dir", str(empty), "--output_dir", str(tmp_path / "x"), "--no_progress"]) == 2
    assert str(empty) in capsys.readouterr().err

    assert builder.main(["--list_systems"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ENHANCERS + CODECS)

    for prog in ("mtqnet corpus", "other name"):
        with pytest.raises(SystemExit) as stopped:
            builder.main(["--help"], **({} if prog == "mtqnet corpus" else {"prog": prog}))
        assert stopped.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: {prog} ")


# -- settings -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values, message", [
    ({"snr_mode": "loud"}, "snr_mode must be 'active' or 'whole', got 'loud'"),
    ({"speech_spectrum": "pink"}, "speech_spectrum must be 'clean' or 'ltass', got 'pink'"),
    ({"snrs": []}, "Give one or more SNRs in dB (finite, or inf for no noise), got []"),
    ({"snrs": [0, float("-inf")]}, "Give one or more SNRs in dB (finite, or inf for no noise), got [0.0, -inf]"),
    ({"babble_talkers": 0}, "babble_talkers must be at least 1"),
    ({"test_fraction": 1.0}, "test_fraction must be in [0, 1), got 1.0"),
    ({"test_noises": ["babble"], "test_fraction": 0}, "Held-out test noises/systems need a test split: "
                                                      "test_fraction > 0"),
    ({"count": 0}, "count must be at least 1, got 0"),
])
def test_settings_reject_bad_values_with_the_same_messages(tmp_path, values, message):
    with pytest.raises(CorpusError, match=f"^{re.escape(message)}$"):
        CorpusSettings(**values)
    # The same through build_corpus's keyword overrides, before any folder is looked at.
    with pytest.raises(CorpusError, match=f"^{re.escape(message)}$"):
        build_corpus(tmp_path / "missing", tmp_path / "out", progress=False, **values)
    assert not (tmp_path / "out").exists()


def test_settings_normalise_and_default():
    settings = CorpusSettings(snrs=[0, 10], systems="none", noises=["white"], count="3")
    assert settings.snrs == (0.0, 10.0) and settings.systems == ("none",) and settings.noises == ("white",)
    assert settings.count == 3 and settings.effective_test_fraction == 0.0
    assert CorpusSettings(test_noises=["babble"]).effective_test_fraction == 0.2
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 1
    with pytest.raises(TypeError, match="nosies"):
        build_corpus("clean", "out", nosies=["white"])
    with pytest.raises(TypeError, match="CorpusSettings"):
        build_corpus("clean", "out", "noises/")  # the third positional argument is no longer noise_dir


def test_keyword_overrides_and_a_settings_object_give_the_same_corpus(tmp_path, clean_dir):
    values = dict(noises=["white", "hum", "pink"], snrs=[0, 10], count=3, seed=4, level_jitter_db=1.0)
    by_keywords = build_corpus(clean_dir, tmp_path / "keywords", progress=False, **values)
    by_settings = build_corpus(clean_dir, tmp_path / "settings", CorpusSettings(**values), progress=False)
    # A settings object with overrides on top: the overrides win.
    mixed = build_corpus(clean_dir, tmp_path / "mixed", CorpusSettings(**{**values, "seed": 9, "count": 1}),
                         seed=4, count=3, progress=False)
    rows = _rows(by_keywords)
    assert len(rows) == 3 and rows == _rows(by_settings) == _rows(mixed)
    assert by_keywords.rows == by_settings.rows == mixed.rows
    snapshots = [_snapshot(tmp_path / name) for name in ("keywords", "settings", "mixed")]
    assert snapshots[0] == snapshots[1] == snapshots[2]


# The corpus_config.json and manifest.csv the builder wrote for `_PINNED_SETTINGS` before `build_corpus` took a
# `CorpusSettings` (and before the module was split): a corpus started then must still be resumed, not refused as
# built "with other settings", and its files must be the same.
_PINNED_SETTINGS = dict(noises=["white", "hum", "files"], test_noises=["babble"], test_fraction=0.34, count=6,
                        seed=5, snrs=[0, 10, float("inf")], level_jitter_db=2.0, max_duration_s=0.8, save_noise=True,
                        babble_talkers=2)
_PINNED_CONFIG = {
    "format": 1, "input_fingerprint": "97833e430a98b03ab37f44a2dea323e69ea6a5e7aa24709a7922409e69bc656e", "seed": 5,
    "snrs": [0.0, 10.0, float("inf")], "snr_mode": "active", "train_noises": ["white", "hum", "fan"],
    "test_noises": ["babble"], "train_systems": ["none"], "test_systems": ["none"], "test_fraction": 0.34,
    "test_units": ["spk0"], "target_level_db": -26.0, "level_jitter_db": 2.0, "babble_talkers": 2,
    "speech_spectrum": "clean", "max_duration_s": 0.8, "save_noise": True, "sampling_rate": 16000,
}
_PINNED_MANIFEST = """\
path,clean_path,noise_path,split,snr_db,noise_type,noise_source,system,system_kind,system_params,speaker,source_file,speech_level_db,duration_s
train/noisy/000000_spk2_white_snr0_none.wav,train/clean/000000_spk2_white_snr0_none.wav,train/noise/000000_spk2_white_snr0_none.wav,train,0.0,white,procedural,none,none,,spk2,spk2/utt1.wav,-26.12,0.8
train/noisy/000001_spk1_none_snrinf_none.wav,train/clean/000001_spk1_none_snrinf_none.wav,train/noise/000001_spk1_none_snrinf_none.wav,train,inf,none,,none,none,,spk1,spk1/utt1.wav,-25.78,0.8
test/noisy/000002_spk0_babble_snr10_none.wav,test/clean/000002_spk0_babble_snr10_none.wav,test/noise/000002_spk0_babble_snr10_none.wav,test,10.0,babble,spk0/utt1.wav;spk0/utt1.wav,none,none,,spk0,spk0/utt0.wav,-24.02,0.8
train/noisy/000003_spk2_fan_snr10_none.wav,train/clean/000003_spk2_fan_snr10_none.wav,train/noise/000003_spk2_fan_snr10_none.wav,train,10.0,fan,fan.wav,none,none,,spk2,spk2/utt0.wav,-25.07,0.8
train/noisy/000004_spk1_none_snrinf_none.wav,train/clean/000004_spk1_none_snrinf_none.wav,train/noise/000004_spk1_none_snrinf_none.wav,train,inf,none,,none,none,,spk1,spk1/utt0.wav,-26.12,0.8
test/noisy/000005_spk0_none_snrinf_none.wav,test/clean/000005_spk0_none_snrinf_none.wav,test/noise/000005_spk0_none_snrinf_none.wav,test,inf,none,,none,none,,spk0,spk0/utt1.wav,-24.85,0.8
"""


def _pinned_inputs(root: Path) -> tuple[Path, Path]:
    """Synthetic clean speech (three speakers x two 1 s files at 22.05 kHz) and one noise file, of fixed sizes."""
    clean, noise = root / "clean", root / "noise"
    for speaker in range(3):
        (clean / f"spk{speaker}").mkdir(parents=True)
        for number in range(2):
            speech = signals.synthetic_speech(1.0, np.random.default_rng([speaker, number]), rate=22050)
            soundfile.write(clean / f"spk{speaker}" / f"utt{number}.wav", speech, 22050)
    noise.mkdir()
    soundfile.write(noise / "fan.wav", 0.1 * np.random.default_rng(5).standard_normal(8000), 8000)
    return clean, noise


def test_config_and_manifest_match_the_pre_settings_builder(tmp_path):
    clean, noise = _pinned_inputs(tmp_path / "in")
    output = tmp_path / "out"
    report = build_corpus(clean, output, noise_dir=noise, progress=False, **_PINNED_SETTINGS)
    config = json.loads((output / "corpus_config.json").read_text())
    assert list(config) == list(_PINNED_CONFIG) and config == _PINNED_CONFIG
    assert json.loads((output / "corpus_info.json").read_text())["config"] == _PINNED_CONFIG
    manifest = (output / "manifest.csv").read_bytes()
    assert manifest == _PINNED_MANIFEST.replace("\n", "\r\n").encode()  # the csv module's line ends
    assert _rows(report) == list(csv.DictReader(io.StringIO(_PINNED_MANIFEST)))

    # A corpus whose config was written by the old builder resumes (nothing rewritten) with the same settings.
    (output / "corpus_config.json").write_text(json.dumps(_PINNED_CONFIG, indent=2))
    again = build_corpus(clean, output, CorpusSettings(noise_dir=noise, **_PINNED_SETTINGS), progress=False)
    assert (again.written, again.reused) == (0, 6)
    assert (output / "manifest.csv").read_bytes() == manifest
