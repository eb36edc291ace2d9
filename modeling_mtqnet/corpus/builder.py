"""Corpus builder: noisy, enhanced and coded speech with aligned clean references and a manifest CSV.

```bash
mtqnet corpus --clean_dir speech/ --output_dir corpus/ \
    [--noise_dir noises/] [--noises white pink brown speech_shaped hum babble] \
    [--snrs -5 0 5 10 15 20] [--systems none noisereduce rnnoise opus mp3] [--count 1000] [--seed 0] \
    [--test_noises babble] [--test_systems rnnoise] [--test_fraction 0.2]
```

Every degraded file `SPLIT/noisy/ID.wav` has a clean reference `SPLIT/clean/ID.wav` of the same length and alignment
(16 kHz mono), and `manifest.csv` lists both, relative to the manifest, with the condition of each utterance.

What it does, per utterance (deterministic for a seed; see `build_corpus`):
1. a clean file (read with libsndfile, downmixed, resampled to 16 kHz with soxr), optionally cropped, scaled to an
   active speech level (`target_level_db`, dB relative to full scale RMS);
2. a noise: a file of `noise_dir` (random segment, looped when short) or a procedural noise (white, pink, brown,
   speech-shaped, mains hum with harmonics, babble summed from other clean utterances of the same split);
3. the noise scaled to the SNR: `snr_mode="active"` (default) compares the clean speech power over its active 20 ms
   frames (frames whose power is within 40 dB of the loudest frame) with the noise power over the whole file;
   `snr_mode="whole"` compares whole-file powers. Clean, noise and mix share one gain that keeps peaks below 0.99,
   so the SNR is exact: mix = clean + noise sample by sample;
4. optionally one system: an enhancement (noisereduce, SoX noisered, FFmpeg afftdn, RNNoise) or a codec (Opus,
   GSM, MP3), whichever is installed; its delay is removed (known for in-process systems, measured once per build
   on a synthetic probe for command-line tools) and its output cut/padded to the clean reference's length.

Only numpy, soundfile and soxr are needed for unprocessed mixtures; every system is optional and skipped (and
reported) when its package or tool is missing.

The signal measures and noise generators live in `signals`, the systems and codecs in `systems`; this module holds
the inputs, the settings (`CorpusSettings`), the plan and its steps, and the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import functools
import hashlib
import json
import logging
import math
import os
import re
import sys
import warnings
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Sequence

import numpy as np

from ..model.feature_extraction_mtqnet import load_audio
from ..tables import write_table
from ..vocabulary import AUDIO_EXTENSIONS, audio_suffixes
from .signals import (
    SAMPLING_RATE, CorpusError, active_speech_power, average_speech_spectrum, loop_segment, ltass_density, mains_hum,
    power_law, shaped_noise, speech_power,
)
from .systems import (
    CODECS, ENHANCERS, SYSTEM_PARAMETERS, SYSTEMS, apply_system, calibrate_delay, params_key, system_status,
)

logger = logging.getLogger(__name__)

MIN_SAMPLES = 1600  # 0.1 s: shorter clean files are unusable
PEAK_LIMIT = 0.99
DEFAULT_SNRS = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0)

# Suffixes of the formats libsndfile reads; other files in the folders (transcripts, ...) are ignored.
_AUDIO_SUFFIXES = audio_suffixes()

PROCEDURAL_NOISES = ("white", "pink", "brown", "speech_shaped", "hum", "babble")

MANIFEST_COLUMNS = (
    "path", "clean_path", "noise_path", "split", "snr_db", "noise_type", "noise_source", "system", "system_kind",
    "system_params", "speaker", "source_file", "speech_level_db", "duration_s",
)


# ----------------------------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------------------------


def _names(value: str | Sequence[str]) -> tuple[str, ...]:
    """Names as a tuple; a single string is one name."""
    return (value,) if isinstance(value, str) else tuple(value)


@dataclasses.dataclass(frozen=True)
class CorpusSettings:
    """What a corpus is built with, besides its clean speech and output folders; the values are checked on creation
    (`CorpusError`). Sequences are kept as tuples (a single string is one name).

    Attributes:
        noise_dir: folder of noise recordings; each file is one noise named by its relative path without extension.
        noises: noise names: procedural types (`white pink brown speech_shaped hum babble`), `procedural` (all of
            them), `files` (every file of `noise_dir`), or patterns matching noise-file names. Default (None):
            `files` with a `noise_dir`, else every procedural type.
        snrs: SNRs in dB, used in turn (balanced, seeded order); `inf` adds no noise (noise_type `none`).
        count: number of utterances (default, None: one per clean file). Raising it extends a corpus.
        seed: the seed; the same seed, inputs and available systems give byte-identical files.
        systems: `none`, system names (`SYSTEMS`) or `all` / `enhancers` / `codecs`; unavailable ones are skipped
            and reported. Each utterance gets one, in turn.
        test_noises: held-out noises (names or patterns): used only in the test split, which then uses only them.
            They need not be in `noises`.
        test_systems: held-out systems, likewise; they need not be in `systems`.
        test_fraction: share of utterances (and of speakers, held out from training) in the test split; default
            (None) 0.2 when held-out conditions are given, else 0 (no test split). See `effective_test_fraction`.
        test_seen_conditions: the test split also uses the training noises and systems, beside the held-out ones
            (a test set of seen and unseen conditions, as in TMHINT-QI v2), instead of the held-out ones alone.
        snr_mode: `active` (speech power over active frames) or `whole` (whole-file power); noise power is always
            whole-file.
        target_level_db: active speech level, dB re full-scale RMS.
        level_jitter_db: the level varies by +- a uniform jitter of this many dB.
        babble_talkers: talkers summed for babble (other utterances of the same split, other speakers first).
        speech_spectrum: `clean` (average spectrum of up to 32 clean files of the training split) or `ltass` (the
            standard long-term average speech spectrum) for the speech-shaped noise.
        max_duration_s: crop longer clean files (random segment); None keeps them whole.
        speaker_pattern: regex whose first group, searched in a clean file's relative path, is its speaker; default:
            the top sub-folder, else the file stem.
        save_noise: also write the scaled additive noise (`noise_path`); mix = clean + noise.
        skip_bad_files: skip (and report) unreadable, silent or too short clean files instead of stopping.
    """

    noise_dir: str | os.PathLike | None = None
    noises: Sequence[str] | None = None
    snrs: Sequence[float] = DEFAULT_SNRS
    count: int | None = None
    seed: int = 0
    systems: Sequence[str] = ("none",)
    test_noises: Sequence[str] = ()
    test_systems: Sequence[str] = ()
    test_fraction: float | None = None
    test_seen_conditions: bool = False
    snr_mode: str = "active"
    target_level_db: float = -26.0
    level_jitter_db: float = 0.0
    babble_talkers: int = 5
    speech_spectrum: str = "clean"
    max_duration_s: float | None = None
    speaker_pattern: str | None = None
    save_noise: bool = False
    skip_bad_files: bool = False

    def __post_init__(self) -> None:
        assign = functools.partial(object.__setattr__, self)
        if self.noises is not None:
            assign("noises", _names(self.noises))
        for name in ("systems", "test_noises", "test_systems"):
            assign(name, _names(getattr(self, name)))
        if self.snr_mode not in ("active", "whole"):
            raise CorpusError(f"snr_mode must be 'active' or 'whole', got {self.snr_mode!r}")
        if self.speech_spectrum not in ("clean", "ltass"):
            raise CorpusError(f"speech_spectrum must be 'clean' or 'ltass', got {self.speech_spectrum!r}")
        snrs = [float(value) for value in self.snrs]
        if not snrs or any(math.isnan(value) or value == -math.inf for value in snrs):
            raise CorpusError(f"Give one or more SNRs in dB (finite, or inf for no noise), got {snrs}")
        assign("snrs", tuple(snrs))
        if self.babble_talkers < 1:
            raise CorpusError("babble_talkers must be at least 1")
        test_fraction = self.effective_test_fraction
        if not 0.0 <= test_fraction < 1.0:
            raise CorpusError(f"test_fraction must be in [0, 1), got {test_fraction}")
        if self.held_out and test_fraction == 0.0:
            raise CorpusError("Held-out test noises/systems need a test split: test_fraction > 0")
        if self.count is not None:
            assign("count", int(self.count))
            if self.count < 1:
                raise CorpusError(f"count must be at least 1, got {self.count}")

    @property
    def held_out(self) -> bool:
        """Whether test noises or systems are held out."""
        return bool(self.test_noises) or bool(self.test_systems)

    @property
    def effective_test_fraction(self) -> float:
        """`test_fraction`, or its default when None: 0.2 with held-out conditions, else 0."""
        return (0.2 if self.held_out else 0.0) if self.test_fraction is None else float(self.test_fraction)


def resolve_settings(settings: CorpusSettings | None, overrides: dict[str, Any]) -> CorpusSettings:
    """`settings` (default: `CorpusSettings()`) with the keyword `overrides` (CorpusSettings fields) applied."""
    if settings is not None and not isinstance(settings, CorpusSettings):
        raise TypeError(f"build_corpus: settings must be a CorpusSettings, got {type(settings).__name__} (give "
                        "noise_dir and the other settings by keyword)")
    fields = [field.name for field in dataclasses.fields(CorpusSettings)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise TypeError(f"build_corpus() got unexpected keyword arguments: {', '.join(unknown)} (settings: "
                        f"{', '.join(fields)}, progress)")
    if settings is None:
        return CorpusSettings(**overrides)
    return dataclasses.replace(settings, **overrides) if overrides else settings


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AudioSource:
    """One audio file of an input folder."""

    path: Path  # absolute
    relative: str  # posix path relative to its folder
    speaker: str
    size: int


def _speaker_of(relative: str, pattern: str | None) -> str:
    """Speaker = the first group (or whole match) of `pattern` in the relative path; else the top sub-folder
    (VCTK `p225/...`, LibriSpeech `19/198/...`); else the file stem."""
    if pattern:
        match = re.search(pattern, relative)
        if match:
            return match.group(1) if match.groups() else match.group(0)
    parts = PurePosixPath(relative).parts
    return parts[0] if len(parts) > 1 else PurePosixPath(relative).stem


def scan_audio_folder(folder: str | os.PathLike, role: str, speaker_pattern: str | None = None,
                      skip_bad_files: bool = False, skipped: list[str] | None = None) -> list[AudioSource]:
    """Audio files (by extension, recursively, sorted) of `folder`, each header checked with libsndfile."""
    import soundfile

    folder = Path(folder)
    if not folder.exists():
        raise CorpusError(f"The {role} folder does not exist: {folder}")
    if not folder.is_dir():
        raise CorpusError(f"The {role} folder is not a folder: {folder}")
    sources = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in _AUDIO_SUFFIXES or path.name.startswith("."):
            continue
        relative = path.relative_to(folder).as_posix()
        try:
            info = soundfile.info(str(path))
            problem = None if info.frames > 0 and info.samplerate > 0 else "it holds no samples"
        except Exception as error:  # LibsndfileError, RuntimeError, ...
            problem = f"libsndfile cannot read it ({error})"
        if problem is not None:
            message = f"Unreadable {role} file {path}: {problem}"
            if not skip_bad_files:
                raise CorpusError(message + " (remove it, or pass --skip_bad_files to skip such files)")
            logger.warning(message)
            if skipped is not None:
                skipped.append(message)
            continue
        sources.append(AudioSource(path.resolve(), relative, _speaker_of(relative, speaker_pattern),
                                   path.stat().st_size))
    if not sources:
        raise CorpusError(f"The {role} folder {folder} holds no audio files (looked recursively for "
                          f"{', '.join('.' + extension for extension in AUDIO_EXTENSIONS[:8])}, ... files)")
    return sources


@functools.lru_cache(maxsize=64)
def _load(path: str, role: str) -> np.ndarray:
    """A file as 16 kHz mono float64 (cached), or a CorpusError naming it."""
    try:
        samples = load_audio(path, None, SAMPLING_RATE, name=f"{role} file").astype(np.float64)
    except (ValueError, FileNotFoundError) as error:
        raise CorpusError(f"Cannot read {role} file {path}: {error}") from error
    if not np.all(np.isfinite(samples)):
        raise CorpusError(f"The {role} file {path} contains NaN or Inf samples")
    return samples


# ----------------------------------------------------------------------------------------------------------------
# Plan
# ----------------------------------------------------------------------------------------------------------------

_FILE, _NOISE, _SNR, _SYSTEM = range(4)
_SPECTRUM_FILES = 9  # the field of the draw of the clean files averaged for speech-shaped noise


@functools.lru_cache(maxsize=4096)
def _permutation(seed: int, split: int, field: int, cycle: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, split, field, cycle]).permutation(size)


def _cycled(seed: int, split: int, field: int, position: int, size: int) -> int:
    """Balanced draw: positions cycle through fresh seeded permutations of range(size)."""
    return int(_permutation(seed, split, field, position // size, size)[position % size])


@dataclasses.dataclass(frozen=True)
class Conditions:
    """The noises or the systems of a corpus: every one asked for, those held out for the test split, and those of
    the training split."""

    requested: list[str]
    held_out: list[str]
    train: list[str]

    def test_pool(self, seen: bool) -> list[str]:
        """The test split's: the held-out ones; every requested and held-out one when `seen` or none is held out."""
        if seen or not self.held_out:
            return self.requested + [name for name in self.held_out if name not in self.requested]
        return self.held_out


@dataclasses.dataclass
class Pools:
    """What the utterances of one split are drawn from."""

    files: list[AudioSource]
    noises: list[tuple[str, AudioSource | None]]  # (noise name, file or None for procedural)
    systems: list[str]


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One planned utterance: its split and condition."""

    index: int
    split: str
    clean: AudioSource
    noise: tuple[str, AudioSource | None]  # (noise name, file or None for procedural)
    snr_db: float
    system: str

    @property
    def noise_type(self) -> str:
        """The manifest's noise_type: the noise's name, or `none` at SNR inf."""
        return "none" if math.isinf(self.snr_db) else self.noise[0]

    @property
    def name(self) -> str:
        """The file name (without suffix) of its audio and metadata files."""
        return (f"{self.index:06d}_{_safe(self.clean.speaker, 24)}_{_safe(self.noise_type)}"
                f"_snr{self.snr_db:g}_{self.system}")


def _safe(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-")[:limit] or "x"


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(PurePosixPath(name).name, pattern)
               for pattern in patterns)


@dataclasses.dataclass
class CorpusReport:
    """What `build_corpus` did."""

    manifest: Path
    rows: list[dict[str, Any]]
    written: int
    reused: int
    systems_used: dict[str, str]  # system -> backend (tool / package and version)
    systems_unavailable: dict[str, str]  # requested system -> why it was skipped
    delays: dict[str, int]  # "system params" -> samples removed at 16 kHz
    bad_files: list[str]


def build_corpus(clean_dir: str | os.PathLike, output_dir: str | os.PathLike, settings: CorpusSettings | None = None,
                 *, progress: bool = True, **overrides: Any) -> CorpusReport:
    """Build (or finish) a corpus in `output_dir`; returns a `CorpusReport`. See the module docstring.

    Args:
        clean_dir: folder of clean speech (searched recursively; any format libsndfile reads).
        output_dir: where `manifest.csv`, `corpus_info.json`, `corpus_config.json` and `SPLIT/{noisy,clean,noise}/`
            go. A folder started with other settings is refused; one started with the same settings is resumed
            (utterances whose files exist are not rewritten). Raising `count` extends a corpus.
        settings: a `CorpusSettings` (default: its defaults).
        progress: show a tqdm progress bar.
        **overrides: `CorpusSettings` fields by keyword (`noises=..., snrs=..., seed=...`), applied to `settings`.
    """
    settings = resolve_settings(settings, overrides)
    output_dir = Path(output_dir)
    bad_files: list[str] = []
    clean_files, noise_files = scan_inputs(clean_dir, settings, bad_files)
    catalogue = noise_catalogue(noise_files)
    noises = select_noises(settings, catalogue, noise_files)
    unavailable: dict[str, str] = {}
    systems = select_systems(settings, unavailable)
    files, test_units = split_speakers(clean_files, settings)
    pools = make_pools(files, catalogue, noises, systems, settings.test_seen_conditions)
    count = len(clean_files) if settings.count is None else settings.count
    config = corpus_config(settings, clean_files + noise_files, pools, test_units)
    check_or_write_config(output_dir, config)
    plan = plan_utterances(pools, count, settings)
    report = write_utterances(plan, output_dir, UtteranceContext(settings, pools), unavailable, bad_files,
                              progress)
    folders = {"clean_dir": str(Path(clean_dir).resolve()),
               "noise_dir": str(Path(settings.noise_dir).resolve()) if settings.noise_dir is not None else None}
    write_manifest(report, settings, config, folders)
    return report


def scan_inputs(clean_dir: str | os.PathLike, settings: CorpusSettings,
                bad_files: list[str]) -> tuple[list[AudioSource], list[AudioSource]]:
    """The clean files (unreadable ones reported in `bad_files` when skipped) and the noise files."""
    clean_files = scan_audio_folder(clean_dir, "clean speech", settings.speaker_pattern, settings.skip_bad_files,
                                    bad_files)
    noise_files = scan_audio_folder(settings.noise_dir, "noise") if settings.noise_dir is not None else []
    return clean_files, noise_files


def noise_catalogue(noise_files: Sequence[AudioSource]) -> dict[str, AudioSource | None]:
    """Every noise name: the procedural ones (None), then the noise files by relative path without extension."""
    catalogue: dict[str, AudioSource | None] = {name: None for name in PROCEDURAL_NOISES}
    for source in noise_files:
        catalogue[str(PurePosixPath(source.relative).with_suffix(""))] = source
    return catalogue


def match_noises(patterns: Sequence[str], what: str, catalogue: dict[str, AudioSource | None],
                 noise_files: Sequence[AudioSource]) -> list[str]:
    """The noise names `patterns` select (`procedural`, `files`, names or patterns), in order, once each."""
    chosen: list[str] = []
    for pattern in patterns:
        if pattern == "procedural":
            names = list(PROCEDURAL_NOISES)
        elif pattern == "files":
            if not noise_files:
                raise CorpusError(f"{what}: 'files' needs --noise_dir")
            names = [name for name, source in catalogue.items() if source is not None]
        else:
            names = [name for name in catalogue if _matches(name, [pattern])]
            if not names:
                raise CorpusError(f"{what}: no noise matches {pattern!r} (procedural noises: "
                                  f"{', '.join(PROCEDURAL_NOISES)}; noise files: {len(noise_files)})")
        chosen += [name for name in names if name not in chosen]
    return chosen


def select_noises(settings: CorpusSettings, catalogue: dict[str, AudioSource | None],
                  noise_files: Sequence[AudioSource]) -> Conditions:
    """The noises asked for (default: the files with a noise folder, else every procedural type), the held-out
    ones, and those left for training (at least one)."""
    requested = match_noises(settings.noises if settings.noises else (["files"] if noise_files else ["procedural"]),
                             "noises", catalogue, noise_files)
    held_out = match_noises(settings.test_noises, "test_noises", catalogue, noise_files) if settings.test_noises \
        else []
    train = [name for name in requested if name not in held_out]
    if not train:
        raise CorpusError("Every noise is held out for testing; the training split would have none")
    return Conditions(requested, held_out, train)


def _resolve_systems(names: Sequence[str], report: dict[str, str]) -> list[str]:
    """Expand `all` / `enhancers` / `codecs`, keep the available systems (in SYSTEMS order) and report the rest."""
    wanted: list[str] = []
    for name in names:
        name = name.strip().lower()
        expanded = {"all": list(SYSTEMS), "enhancers": list(ENHANCERS), "codecs": list(CODECS)}.get(name, [name])
        for item in expanded:
            if item not in SYSTEMS:
                raise CorpusError(f"Unknown system {item!r}; known: {', '.join(SYSTEMS)} (or all, enhancers, codecs)")
            if item not in wanted:
                wanted.append(item)
    available = []
    for name in wanted:
        status = system_status(name)
        if status.available:
            available.append(name)
        else:
            report[name] = status.backend
    return [name for name in SYSTEMS if name in available]


def select_systems(settings: CorpusSettings, unavailable: dict[str, str]) -> Conditions:
    """The available systems asked for, the held-out ones and those left for training (at least one); the
    unavailable ones go to `unavailable` with the reason. Warns when no held-out system is available."""
    requested = _resolve_systems(settings.systems, unavailable)
    held_out = _resolve_systems(settings.test_systems, unavailable) if settings.test_systems else []
    if settings.test_systems and not held_out:
        warnings.warn(f"None of the held-out test systems is available ({unavailable}); the test split uses the "
                      "training systems", stacklevel=3)
    train = [name for name in requested if name not in held_out]
    if not train:
        raise CorpusError("No system left for the training split (requested: "
                          f"{list(settings.systems)}; unavailable: {unavailable or 'none'})")
    return Conditions(requested, held_out, train)


def split_speakers(clean_files: Sequence[AudioSource],
                   settings: CorpusSettings) -> tuple[dict[str, list[AudioSource]], set[str]]:
    """The clean files of each split, and the units (speakers, or files when there is one speaker) of the test
    split: a seeded share `effective_test_fraction` of them; speakers of the test split never appear in training."""
    speakers = sorted({source.speaker for source in clean_files})
    units = speakers if len(speakers) > 1 else [source.relative for source in clean_files]
    test_fraction = settings.effective_test_fraction
    test_units: set[str] = set()
    if test_fraction > 0:
        if len(units) < 2:
            raise CorpusError("A test split needs at least two clean files (or two speakers)")
        order = np.random.default_rng([settings.seed, 99]).permutation(len(units))
        n_test = min(len(units) - 1, max(1, round(test_fraction * len(units))))
        test_units = {units[i] for i in order[:n_test]}

    def unit_of(source: AudioSource) -> str:
        return source.speaker if len(speakers) > 1 else source.relative

    files = {"train": [s for s in clean_files if unit_of(s) not in test_units],
             "test": [s for s in clean_files if unit_of(s) in test_units]}
    return files, test_units


def make_pools(files: dict[str, list[AudioSource]], catalogue: dict[str, AudioSource | None], noises: Conditions,
               systems: Conditions, test_seen_conditions: bool) -> dict[str, Pools]:
    """The pools of each split: its files; training noises and systems, or the test split's (`Conditions.test_pool`)."""
    return {
        "train": Pools(files["train"], [(name, catalogue[name]) for name in noises.train], systems.train),
        "test": Pools(files["test"], [(name, catalogue[name]) for name in noises.test_pool(test_seen_conditions)],
                      systems.test_pool(test_seen_conditions)),
    }


def corpus_config(settings: CorpusSettings, inputs: Sequence[AudioSource], pools: dict[str, Pools],
                  test_units: set[str]) -> dict[str, Any]:
    """What decides the corpus's files, written to `corpus_config.json`: a corpus is resumed only with the same.

    Its keys and values must not change from one version to the next, or older corpora could not be resumed."""
    fingerprint = hashlib.sha256("\n".join(f"{s.relative}\t{s.size}" for s in inputs).encode())
    test_fraction = settings.effective_test_fraction
    config = {
        "format": 1, "input_fingerprint": fingerprint.hexdigest(), "seed": int(settings.seed),
        "snrs": list(settings.snrs), "snr_mode": settings.snr_mode,
        "train_noises": [name for name, _ in pools["train"].noises],
        "test_noises": [name for name, _ in pools["test"].noises],
        "train_systems": list(pools["train"].systems), "test_systems": list(pools["test"].systems),
        "test_fraction": test_fraction, "test_units": sorted(test_units),
        "target_level_db": settings.target_level_db, "level_jitter_db": settings.level_jitter_db,
        "babble_talkers": settings.babble_talkers, "speech_spectrum": settings.speech_spectrum,
        "max_duration_s": settings.max_duration_s, "save_noise": settings.save_noise, "sampling_rate": SAMPLING_RATE,
    }
    if test_fraction == 0:
        config["test_noises"] = config["test_systems"] = []
    return config


def check_or_write_config(output_dir: Path, config: dict[str, Any]) -> None:
    """Write `corpus_config.json`, or refuse (naming the differences) a folder whose corpus has another config."""
    path = output_dir / "corpus_config.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != json.loads(json.dumps(config)):
            current = json.loads(json.dumps(config))
            changed = sorted(key for key in set(previous) | set(current) if previous.get(key) != current.get(key))
            hints = []
            if "input_fingerprint" in changed:
                hints.append("input_fingerprint: files were added to, removed from or changed in the input folders")
            if any(key.endswith("_systems") for key in changed):
                hints.append("systems: a requested system's tool or package was installed or removed")
            raise CorpusError(
                f"{output_dir} holds a corpus built with other settings or inputs (differences: {', '.join(changed)}"
                + (f"; {'; '.join(hints)}" if hints else "") + "). Use a new --output_dir, or rerun with the same "
                "settings to resume it."
            )
        return
    _atomic_write_text(path, json.dumps(config, indent=2))


def plan_utterances(pools: dict[str, Pools], count: int, settings: CorpusSettings) -> list[Utterance]:
    """The split and balanced condition of each utterance; utterance i is the same whatever `count`."""
    fraction = Fraction(str(settings.effective_test_fraction)).limit_denominator(1_000_000)
    seed, snrs = settings.seed, settings.snrs
    plan = []
    for index in range(count):
        n_test_before = math.floor(index * fraction)
        is_test = math.floor((index + 1) * fraction) > n_test_before
        split = "test" if is_test else "train"
        position = n_test_before if is_test else index - n_test_before
        pool = pools[split]
        code = int(is_test)
        plan.append(Utterance(
            index=index, split=split,
            clean=pool.files[_cycled(seed, code, _FILE, position, len(pool.files))],
            noise=pool.noises[_cycled(seed, code, _NOISE, position, len(pool.noises))],
            snr_db=snrs[_cycled(seed, code, _SNR, position, len(snrs))],
            system=pool.systems[_cycled(seed, code, _SYSTEM, position, len(pool.systems))],
        ))
    return plan


@dataclasses.dataclass
class UtteranceContext:
    """What generating an utterance needs besides its plan entry: the settings, the pools and the speech spectrum
    (computed on first use)."""

    settings: CorpusSettings
    pools: dict[str, Pools]
    clean_spectrum: np.ndarray | None = None

    def speech_shape(self) -> Callable[[np.ndarray], np.ndarray]:
        """The amplitude response of speech-shaped noise: LTASS, or the average spectrum of up to 32 clean files of
        the training split (a seeded choice)."""
        if self.settings.speech_spectrum == "ltass":
            return lambda frequencies: np.sqrt(ltass_density(frequencies))
        if self.clean_spectrum is None:
            files, seed = self.pools["train"].files, self.settings.seed
            chosen = [files[_cycled(seed, 0, _SPECTRUM_FILES, i, len(files))] for i in range(min(32, len(files)))]
            signals = []
            for source in chosen:
                try:
                    signals.append(_load(str(source.path), "clean speech"))
                except CorpusError:
                    if not self.settings.skip_bad_files:
                        raise
            self.clean_spectrum = average_speech_spectrum(signals)
        spectrum = self.clean_spectrum
        grid = np.fft.rfftfreq(2 * (spectrum.size - 1), 1 / SAMPLING_RATE)
        return lambda frequencies: np.sqrt(np.interp(frequencies, grid, spectrum))


def utterance_paths(item: Utterance, save_noise: bool) -> dict[str, Path | None]:
    """The audio files of an utterance by manifest column, relative to the output folder (`noise_path` None unless
    the noise is saved)."""
    folder = Path(item.split)
    return {"path": folder / "noisy" / f"{item.name}.wav", "clean_path": folder / "clean" / f"{item.name}.wav",
            "noise_path": folder / "noise" / f"{item.name}.wav" if save_noise else None}


def write_utterances(plan: Sequence[Utterance], output_dir: Path, context: UtteranceContext,
                     unavailable: dict[str, str], bad_files: list[str], progress: bool = True) -> CorpusReport:
    """Generate and write every planned utterance whose files are not all there yet (its metadata file, written
    last, marks it complete); returns the report with a manifest row per utterance (the manifest not yet written).
    With `skip_bad_files`, an utterance that fails is left out and reported in `bad_files`."""
    from tqdm.auto import tqdm

    save_noise = context.settings.save_noise
    rows, written, reused = [], 0, 0
    used_systems: dict[str, str] = {}
    delays: dict[str, int] = {}
    for item in tqdm(plan, desc="Building corpus", unit="utt", disable=not progress):
        paths = utterance_paths(item, save_noise)
        meta_path = output_dir / item.split / "meta" / f"{item.name}.json"
        needed = [p for p in paths.values() if p is not None] + [meta_path.relative_to(output_dir)]
        if all((output_dir / p).is_file() for p in needed):
            meta = json.loads(meta_path.read_text())
            reused += 1
        else:
            try:
                audio, meta = _make_utterance(item, context)
            except CorpusError as error:
                if not context.settings.skip_bad_files:
                    raise
                logger.warning("Skipped utterance %s: %s", item.name, error)
                bad_files.append(f"utterance {item.name}: {error}")
                continue
            for key, signal in audio.items():
                if paths[key] is not None:
                    _atomic_write_audio(output_dir / paths[key], signal)
            _atomic_write_text(meta_path, json.dumps(meta, sort_keys=True))  # last: marks the utterance complete
            written += 1
        if item.system != "none":
            used_systems[item.system] = system_status(item.system).backend
            key = f"{item.system} {meta['system_params']}".strip()
            delays[key] = calibrate_delay(item.system, meta["system_params"])
        rows.append({
            "path": paths["path"].as_posix(), "clean_path": paths["clean_path"].as_posix(),
            "noise_path": paths["noise_path"].as_posix() if save_noise else "", "split": item.split,
            "snr_db": item.snr_db, "noise_type": item.noise_type, "noise_source": meta["noise_source"],
            "system": item.system, "system_kind": system_status(item.system).kind,
            "system_params": meta["system_params"], "speaker": item.clean.speaker,
            "source_file": item.clean.relative, "speech_level_db": meta["speech_level_db"],
            "duration_s": meta["duration_s"],
        })
    return CorpusReport(output_dir / "manifest.csv", rows, written, reused, dict(sorted(used_systems.items())),
                        unavailable, dict(sorted(delays.items())), bad_files)


def write_manifest(report: CorpusReport, settings: CorpusSettings, config: dict[str, Any],
                   folders: dict[str, str | None]) -> None:
    """Write the report's rows to `manifest.csv` and a summary (counts, systems, delays, problems, inputs, config)
    to `corpus_info.json` beside it."""
    write_table(report.manifest, report.rows, MANIFEST_COLUMNS)
    rows = report.rows
    info = {
        "manifest": report.manifest.name, "utterances": len(rows),
        "splits": {split: sum(row["split"] == split for row in rows) for split in ("train", "test")},
        "systems_used": report.systems_used, "systems_unavailable": report.systems_unavailable,
        "delays_removed_samples_16k": report.delays, "bad_files": report.bad_files,
        "snr_definition": ("active speech power (20 ms frames within 40 dB of the loudest) / whole-file noise power"
                           if settings.snr_mode == "active" else "whole-file speech power / whole-file noise power"),
        "inputs": folders, "config": config,
    }
    _atomic_write_text(report.manifest.parent / "corpus_info.json", json.dumps(info, indent=2))


# ----------------------------------------------------------------------------------------------------------------
# One utterance
# ----------------------------------------------------------------------------------------------------------------


def _make_utterance(item: Utterance, context: UtteranceContext) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Generate one utterance: returns {"path": degraded, "clean_path": clean, "noise_path": noise} and metadata."""
    settings = context.settings
    rng = np.random.default_rng([settings.seed, 1, item.index])
    source = item.clean
    clean = _load(str(source.path), "clean speech")
    if settings.max_duration_s is not None:
        limit = int(settings.max_duration_s * SAMPLING_RATE)
        if clean.size > limit:
            start = int(rng.integers(0, clean.size - limit + 1))
            clean = clean[start:start + limit]
    if clean.size < MIN_SAMPLES:
        raise CorpusError(f"The clean speech file {source.path} is too short ({clean.size / SAMPLING_RATE:.3f} s "
                          f"at 16 kHz; at least {MIN_SAMPLES / SAMPLING_RATE} s)")
    level_power = active_speech_power(clean)
    if level_power <= 0:
        raise CorpusError(f"The clean speech file {source.path} is silent")
    level_db = settings.target_level_db + (rng.uniform(-1, 1) * settings.level_jitter_db
                                           if settings.level_jitter_db else 0.0)
    clean = clean * math.sqrt(10 ** (level_db / 10) / level_power)

    noise_name, noise_file = item.noise
    if math.isinf(item.snr_db):  # SNR inf: no noise (e.g. codec-only conditions, clean anchors)
        noise, noise_source = np.zeros(clean.size), ""
    else:
        noise, noise_source = _make_noise(noise_name, noise_file, clean.size, rng, item, context)
        noise_power = float(np.mean(noise**2))
        if noise_power <= 0:
            raise CorpusError(f"The noise {noise_source or noise_name} is silent")
        noise = noise * math.sqrt(speech_power(clean, settings.snr_mode) / (noise_power * 10 ** (item.snr_db / 10)))
    mix = clean + noise
    peak = max(np.max(np.abs(mix)), np.max(np.abs(clean)), np.max(np.abs(noise)))
    if peak > PEAK_LIMIT:  # one gain for all three keeps mix = clean + noise and the SNR
        gain = PEAK_LIMIT / peak
        clean, noise, mix = clean * gain, noise * gain, mix * gain
        level_db += 20 * math.log10(gain)

    system = item.system
    choices = SYSTEM_PARAMETERS[system]
    params = choices[int(rng.integers(0, len(choices)))]
    degraded = mix if system == "none" else apply_system(system, mix, noise, params)
    meta = {"noise_source": noise_source, "system_params": params_key(params),
            "speech_level_db": round(level_db, 2), "duration_s": round(clean.size / SAMPLING_RATE, 6)}
    return {"path": degraded, "clean_path": clean, "noise_path": noise}, meta


def _make_noise(name: str, source: AudioSource | None, length: int, rng: np.random.Generator, item: Utterance,
                context: UtteranceContext) -> tuple[np.ndarray, str]:
    """`length` samples of the noise `name` (a file's random segment, or procedural) and its manifest source."""
    if source is not None:
        return loop_segment(_load(str(source.path), "noise"), length, rng), source.relative
    if name == "white":
        return rng.standard_normal(length), "procedural"
    if name == "pink":
        return shaped_noise(rng, length, power_law(1.0)), "procedural"
    if name == "brown":
        return shaped_noise(rng, length, power_law(2.0)), "procedural"
    if name == "speech_shaped":
        spectrum = "LTASS" if context.settings.speech_spectrum == "ltass" else "average clean spectrum"
        return shaped_noise(rng, length, context.speech_shape()), f"procedural, {spectrum}"
    if name == "hum":
        hum, mains = mains_hum(length, rng)
        return hum, f"procedural {mains} Hz"
    if name == "babble":
        return _babble(length, rng, item, context)
    raise CorpusError(f"Unknown noise {name!r}")  # pragma: no cover


def _babble(length: int, rng: np.random.Generator, item: Utterance,
            context: UtteranceContext) -> tuple[np.ndarray, str]:
    """Sum of `babble_talkers` other utterances of the same split (other speakers first), each at unit active power."""
    target = item.clean
    talkers = context.settings.babble_talkers
    files = context.pools[item.split].files
    others = [s for s in files if s.speaker != target.speaker] or [s for s in files if s != target] or [target]
    chosen = [others[i] for i in rng.choice(len(others), size=talkers, replace=len(others) < talkers)]
    babble = np.zeros(length)
    for talker in chosen:
        segment = loop_segment(_load(str(talker.path), "clean speech"), length, rng)
        power = active_speech_power(segment)
        if power > 0:
            babble += segment / math.sqrt(power)
    return babble, ";".join(talker.relative for talker in chosen)


def _atomic_write_audio(path: Path, samples: np.ndarray) -> None:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    soundfile.write(str(partial), np.clip(samples, -1.0, 1.0).astype(np.float32), SAMPLING_RATE, subtype="PCM_16",
                    format="WAV")
    os.replace(partial, path)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(text)
    os.replace(partial, path)


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def _parser(prog: str = "mtqnet corpus") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Build noisy / enhanced / coded speech with aligned clean references and a manifest CSV.")
    parser.add_argument("--clean_dir", help="folder of clean speech (recursive; any format libsndfile reads)")
    parser.add_argument("--noise_dir", help="folder of noise recordings (optional)")
    parser.add_argument("--output_dir", help="output folder (resumed when it holds a corpus with the same settings)")
    parser.add_argument("--noises", nargs="+", help="procedural types (" + " ".join(PROCEDURAL_NOISES) +
                        "), 'procedural', 'files' or noise-file patterns; default: files with --noise_dir, else "
                        "every procedural type")
    parser.add_argument("--snrs", nargs="+", type=float, default=list(DEFAULT_SNRS),
                        help="SNRs in dB; inf = no noise (codec-only conditions, clean anchors)")
    parser.add_argument("--snr_mode", choices=["active", "whole"], default="active",
                        help="speech power over active 20 ms frames (default) or the whole file")
    parser.add_argument("--count", type=int, help="number of utterances (default: one per clean file)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--systems", nargs="+", default=["none"],
                        help="none, " + ", ".join(ENHANCERS + CODECS) + ", or all / enhancers / codecs")
    parser.add_argument("--test_noises", nargs="+", default=[], help="noises held out for the test split")
    parser.add_argument("--test_systems", nargs="+", default=[], help="systems held out for the test split")
    parser.add_argument("--test_seen_conditions", action="store_true",
                        help="the test split also uses the training noises and systems, beside the held-out ones")
    parser.add_argument("--test_fraction", type=float,
                        help="share of utterances and speakers in the test split (default 0.2 with held-out "
                             "conditions, else 0)")
    parser.add_argument("--target_level_db", type=float, default=-26.0, help="active speech level, dB re full scale")
    parser.add_argument("--level_jitter_db", type=float, default=0.0)
    parser.add_argument("--babble_talkers", type=int, default=5)
    parser.add_argument("--speech_spectrum", choices=["clean", "ltass"], default="clean",
                        help="speech-shaped noise follows the clean files' average spectrum or the standard LTASS")
    parser.add_argument("--max_duration_s", type=float, help="crop longer clean files (random segment)")
    parser.add_argument("--speaker_pattern", help="regex; its first group in a file's relative path is the speaker")
    parser.add_argument("--save_noise", action="store_true", help="also write the scaled noise of each utterance")
    parser.add_argument("--skip_bad_files", action="store_true",
                        help="skip unreadable / silent / too short clean files instead of stopping")
    parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--list_systems", action="store_true", help="print which systems can run here and exit")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "mtqnet corpus") -> int:
    """The command line (`prog` is the name its help and errors show); returns the exit status."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.list_systems:
        for name in SYSTEMS[1:]:
            status = system_status(name)
            print(f"{name:14s} {status.kind:12s} {'yes' if status.available else 'no ':3s}  {status.backend}")
        return 0
    if not args.clean_dir or not args.output_dir:
        parser.error("--clean_dir and --output_dir are required")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        settings = CorpusSettings(
            noise_dir=args.noise_dir, noises=args.noises, snrs=args.snrs, count=args.count, seed=args.seed,
            systems=args.systems, test_noises=args.test_noises, test_systems=args.test_systems,
            test_fraction=args.test_fraction, test_seen_conditions=args.test_seen_conditions, snr_mode=args.snr_mode,
            target_level_db=args.target_level_db, level_jitter_db=args.level_jitter_db,
            babble_talkers=args.babble_talkers, speech_spectrum=args.speech_spectrum,
            max_duration_s=args.max_duration_s, speaker_pattern=args.speaker_pattern, save_noise=args.save_noise,
            skip_bad_files=args.skip_bad_files)
        report = build_corpus(args.clean_dir, args.output_dir, settings, progress=not args.no_progress)
    except CorpusError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {report.written} utterances ({report.reused} already there); manifest: {report.manifest}")
    print("Systems used: " + (", ".join(f"{k} [{v}]" for k, v in report.systems_used.items()) or "none"))
    for name, reason in report.systems_unavailable.items():
        print(f"Skipped {name}: {reason}")
    for problem in report.bad_files:
        print(f"Skipped: {problem}")
    return 0


__all__ = [
    "MIN_SAMPLES", "PEAK_LIMIT", "DEFAULT_SNRS", "PROCEDURAL_NOISES", "MANIFEST_COLUMNS", "CorpusError",
    "CorpusSettings", "resolve_settings", "AudioSource", "scan_audio_folder", "Conditions", "Pools", "Utterance",
    "CorpusReport", "build_corpus", "scan_inputs", "noise_catalogue", "match_noises", "select_noises",
    "select_systems", "split_speakers", "make_pools", "corpus_config", "check_or_write_config", "plan_utterances",
    "UtteranceContext", "utterance_paths", "write_utterances", "write_manifest", "main",
]


if __name__ == "__main__":
    sys.exit(main())
