"""Real recorded speech and noise from Debian packages, made into the clean-speech and noise pools of `mtqnet corpus`.

```bash
mtqnet speech-pool --fetch --packages_dir data/packages --output_dir data/pool [--workers 2]
mtqnet corpus --clean_dir data/pool/speech --noise_dir data/pool/noise ...
```

`--fetch` downloads the packages first (`fetch_packages`: `apt-get download` of the pinned versions and
`dpkg -x`, so nothing is installed and no root is needed once `apt-get update` has run; about 760 MB). Every source
is listed in `SPEECH_SOURCES` / `NOISE_SOURCES` with its package, version, licence and, for speech,
how a file's path names its speaker, language and sex (docs/data_sources.md says where each fact comes from). What
the pool maker does, per speech file (all deterministic):

1. decode with libsndfile, downmix, resample to 16 kHz (soxr); drop exact duplicates (same samples: tuxpaint reuses
   a description for stamp variants, ktuberling's four Serbian folders are one);
2. trim leading and trailing silence (20 ms frames more than 40 dB below the loudest, keeping 50 ms of margin);
3. screen: drop files whose speech is shorter than 0.3 s or whose estimated SNR (active level against the 1st
   percentile of frame powers) is below `min_snr_db` (tuxpaint's volunteers recorded on consumer microphones);
4. per speaker, in a seeded order, concatenate files with 0.25 s pauses into clips of 2-8 s (a target length drawn
   per clip); longer files are cut into pieces of at most 8 s;
5. scale each clip to an active speech level of -26 dB re full scale (P.56-style: power over active 20 ms frames).

Output: `speech/<speaker>/<speaker>_<n>.wav` (16 kHz PCM, so the corpus's default speaker rule, the top
sub-folder, finds the speakers), `noise/<category>/<package>_<name>.wav`, `speakers.csv`, `clips.csv`,
`noises.csv`, and `pool_info.json` (totals, sources, settings). A finished pool with the same inputs and settings
is reused; a folder holding anything else is refused.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..model.feature_extraction_mtqnet import active_power_of_frames
from ..tables import atomic_write_text, columns_of, write_table
from ..vocabulary import audio_suffixes
from .builder import atomic_write_audio
from .signals import SAMPLING_RATE, CorpusError, active_speech_power, frame_powers

FRAME = 320  # 20 ms at 16 kHz
TRIM_RANGE_DB = 40.0
TRIM_MARGIN_S = 0.05
MIN_SPEECH_S = 0.3
PAUSE_S = 0.25
MIN_CLIP_S, MAX_CLIP_S = 2.0, 8.0
TARGET_LEVEL_DB = -26.0
POOL_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class SpeechSource:
    """One package of recorded speech.

    Attributes:
        package, version, licence: the Debian package (as `fetch_packages` fetches it) and the licence
            its copyright file gives.
        root: folder inside the unpacked package.
        kind: what is said: `sentences`, `dialogue`, `prompts`, `letters` or `words`.
        label: relative path (posix, under `root`) -> (speaker, language, sex) for a speech file, None to skip it.
        narrowband: recorded at 8 kHz (telephone band), so it carries nothing above 4 kHz.
    """

    package: str
    version: str
    licence: str
    root: str
    kind: str
    label: Callable[[str], tuple[str, str, str] | None]
    narrowband: bool = False


# Sex as credited, or estimated from first names and median F0 where the package names nobody ("?" = unknown).
TUXPAINT_SEX = {"ro": "F", "es": "F", "ru": "M", "el": "F", "fr": "M", "bg": "M", "be": "F", "ca": "M", "da": "M"}
KLETTRES_SEX = {"cs": "F", "da": "M", "en": "M", "fr": "M", "de": "M", "he": "M", "nds": "M", "es": "mixed",
                "pt_BR": "mixed", "hu": "M", "lt": "M", "ml": "M", "ar": "F", "en_GB": "F", "nb": "F", "ru": "F",
                "tn": "F", "uk": "F"}
KTUBERLING_SEX = {"de": "M", "el": "M", "es": "M", "ga": "M", "nds": "M", "wa": "M", "ca": "F", "da": "F", "fi": "F",
                  "gl": "F", "nn": "F", "ru": "F", "uk": "F", "sv": "F"}


def _tuxpaint(relative: str) -> tuple[str, str, str] | None:
    match = re.search(r"_desc(?:_([a-z]{2,3}(?:_[A-Z]{2})?))?\.ogg$", relative)
    if not match:
        return None  # sound effects and stamp names
    language = match.group(1) or "en"
    return f"tuxpaint-{language}", language, TUXPAINT_SEX.get(language, "?")


def _fillets(language: str) -> Callable[[str], tuple[str, str, str] | None]:
    # <level>/<lang>/<level>-<character>-<line>.ogg: `m` the small fish (female voice), `v` the big fish (male).
    # Other characters are left out: some are voiced through effects (robots, parrots).
    def label(relative: str) -> tuple[str, str, str] | None:
        match = re.search(rf"/{language}/[^/]+?-([a-z]+)-[^/]+\.ogg$", "/" + relative)
        if not match or match.group(1) not in ("m", "v"):
            return None
        small = match.group(1) == "m"
        return f"fillets-{language}-{'small' if small else 'big'}-fish", language, "F" if small else "M"
    return label


def _asterisk(speaker: str, language: str, sex: str) -> Callable[[str], tuple[str, str, str] | None]:
    return lambda relative: (speaker, language, sex) if relative.endswith(".wav") else None


def _language_folder(prefix: str, sexes: dict[str, str]) -> Callable[[str], tuple[str, str, str] | None]:
    def label(relative: str) -> tuple[str, str, str] | None:
        language = relative.split("/", 1)[0]
        if "/" not in relative or language.startswith("sr@") or language in ("sr_Latn", "sr_Latn_ijekavian"):
            return None  # the four Serbian folders hold the same files: keep `sr` only
        return f"{prefix}-{language}", language, sexes.get(language, "?")
    return label


ASTERISK_VERSION = "1.6.1-1"
SPEECH_SOURCES: tuple[SpeechSource, ...] = (
    SpeechSource("tuxpaint-stamps-default", "2022.06.04-1", "GPL-2+", "usr/share/tuxpaint/stamps", "sentences",
                 _tuxpaint),
    SpeechSource("fillets-ng-data-cs", "1.0.1-1.1", "GPL-2", "usr/share/games/fillets-ng/sound", "dialogue",
                 _fillets("cs")),
    SpeechSource("fillets-ng-data-nl", "1.0.1-1.1", "GPL-2", "usr/share/games/fillets-ng/sound", "dialogue",
                 _fillets("nl")),
    SpeechSource("asterisk-core-sounds-en-wav", ASTERISK_VERSION, "CC-BY-SA-3.0", "usr/share/asterisk/sounds",
                 "prompts", _asterisk("asterisk-allison", "en", "F"), narrowband=True),
    SpeechSource("asterisk-core-sounds-es-wav", ASTERISK_VERSION, "CC-BY-SA-3.0", "usr/share/asterisk/sounds",
                 "prompts", _asterisk("asterisk-allison", "es", "F"), narrowband=True),
    SpeechSource("asterisk-core-sounds-fr-wav", ASTERISK_VERSION, "CC-BY-SA-3.0", "usr/share/asterisk/sounds",
                 "prompts", _asterisk("asterisk-june", "fr", "F"), narrowband=True),
    SpeechSource("asterisk-core-sounds-it-wav", ASTERISK_VERSION, "CC-BY-SA-3.0 (package set; see data_sources.md)",
                 "usr/share/asterisk/sounds", "prompts", _asterisk("asterisk-carlo", "it", "M"), narrowband=True),
    SpeechSource("asterisk-core-sounds-ru-wav", ASTERISK_VERSION, "CC-BY-3.0", "usr/share/asterisk/sounds",
                 "prompts", _asterisk("asterisk-ru", "ru", "F"), narrowband=True),
    SpeechSource("asterisk-prompt-it-menardi-wav", "1:1.4.22+mm20110907-3.1", "CC-BY-SA-3.0-IT",
                 "usr/share/asterisk/sounds", "prompts", _asterisk("asterisk-menardi", "it", "F"), narrowband=True),
    SpeechSource("klettres-data", "4:22.12.3-1", "GPL-2+", "usr/share/klettres", "letters",
                 _language_folder("klettres", KLETTRES_SEX)),
    SpeechSource("ktuberling-data", "4:22.12.3-1", "GPL-2+", "usr/share/ktuberling/sounds", "words",
                 _language_folder("ktuberling", KTUBERLING_SEX)),
)


@dataclasses.dataclass(frozen=True)
class NoiseSource:
    """One package of noise recordings: files under `root` whose relative path matches `pattern` (a regex), written
    to the noise pool's `category` folder."""

    package: str
    version: str
    licence: str
    root: str
    pattern: str
    category: str


NOISE_SOURCES: tuple[NoiseSource, ...] = (
    NoiseSource("megaglest-data", "3.13.0-3", "CC-BY-SA-3.0", "usr/share/games/megaglest/tilesets",
                r"^[^/]+/sounds/.*\.(ogg|wav)$", "ambience"),
    NoiseSource("megaglest-data", "3.13.0-3", "CC-BY-SA-3.0", "usr/share/games/megaglest/techs/megapack/commondata",
                r"sounds/.*\.(ogg|wav)$", "machines"),
    NoiseSource("lincity-ng-data", "2.9~git20150314-5", "GPL-2+", "usr/share/games/lincity-ng/sounds",
                r"\.wav$", "city"),
    NoiseSource("sonic-pi-samples", "3.2.2~repack-8", "CC0-1.0", "usr/share/sonic-pi/samples",
                r"^(ambi_|vinyl_|loop_)[^/]*\.flac$", "ambience_music"),
    NoiseSource("asterisk-moh-opsound-wav", "2.03-1.1", "CC-BY-SA-3.0", "usr/share/asterisk/moh", r"\.wav$",
                "music"),
)
MIN_NOISE_S = 1.0


def package_versions(speech_sources: Sequence[SpeechSource] = SPEECH_SOURCES,
                     noise_sources: Sequence[NoiseSource] = NOISE_SOURCES) -> dict[str, str]:
    """package -> pinned version, for the speech and noise sources."""
    return {source.package: source.version for source in (*speech_sources, *noise_sources)}


def fetch_packages(packages_dir: str | os.PathLike, with_noise: bool = True) -> Path:
    """Download the pinned source packages (`apt-get download`) into `packages_dir/debs` and unpack each with
    `dpkg -x` into `packages_dir/<package>`; packages already unpacked are skipped. Returns `packages_dir`."""
    import subprocess

    packages_dir = Path(packages_dir).resolve()
    wanted = package_versions(SPEECH_SOURCES, NOISE_SOURCES if with_noise else ())
    missing = {name: version for name, version in wanted.items() if not (packages_dir / name / "usr").is_dir()}
    if not missing:
        return packages_dir
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise CorpusError("Fetching the speech packages needs apt-get and dpkg (a Debian or Ubuntu machine); or "
                          "unpack them elsewhere and pass --packages_dir")
    debs = packages_dir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    command = ["apt-get", "download", *(f"{name}={version}" for name, version in missing.items())]
    result = subprocess.run(command, cwd=debs, capture_output=True, text=True)
    if result.returncode != 0:
        raise CorpusError(f"apt-get download failed ({result.stderr.strip().splitlines()[-1:]}); run `apt-get "
                          "update` first, or check that Debian 12 (bookworm) sources are configured")
    for name in missing:
        found = sorted(debs.glob(f"{name}_*.deb"))
        if not found:
            raise CorpusError(f"apt-get download left no .deb for {name} in {debs}")
        target = packages_dir / name
        partial = packages_dir / f".{name}.part"
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(partial)], check=True)
        os.replace(partial, target)  # whole or not at all
    return packages_dir


# ----------------------------------------------------------------------------------------------------------------
# Signals
# ----------------------------------------------------------------------------------------------------------------


def trim_silence(signal: np.ndarray, range_db: float = TRIM_RANGE_DB, margin_s: float = TRIM_MARGIN_S) -> np.ndarray:
    """`signal` without its leading and trailing 20 ms frames more than `range_db` below the loudest, keeping
    `margin_s` of context on each side; empty for an all-zero signal."""
    powers = frame_powers(signal, FRAME)
    peak = float(powers.max())
    if peak <= 0:
        return signal[:0]
    active = np.flatnonzero(powers >= peak * 10 ** (-range_db / 10))
    margin = int(margin_s * SAMPLING_RATE)
    start = max(0, int(active[0]) * FRAME - margin)
    end = min(signal.size, (int(active[-1]) + 1) * FRAME + margin)
    return signal[start:end]


def estimated_snr_db(signal: np.ndarray) -> float:
    """Active speech power against the noise floor (1st percentile of the 20 ms frame powers: in a short
    file the quietest frames are its only pauses), in dB; inf when the floor is digital silence."""
    powers = frame_powers(signal, FRAME)
    speech = active_power_of_frames(powers)
    floor = float(np.percentile(powers, 1))
    if speech <= 0:
        return -math.inf
    return math.inf if floor <= 0 else 10 * math.log10(speech / floor)


def level_normalised(signal: np.ndarray, level_db: float = TARGET_LEVEL_DB) -> np.ndarray:
    """`signal` scaled to an active speech level of `level_db` (dB re full-scale RMS), peaks kept below 0.99."""
    power = active_speech_power(signal, FRAME)
    scaled = signal * math.sqrt(10 ** (level_db / 10) / power)
    peak = float(np.max(np.abs(scaled)))
    return scaled * (0.99 / peak) if peak > 0.99 else scaled


# ----------------------------------------------------------------------------------------------------------------
# Scanning and decoding
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SpeechFile:
    path: str
    package: str
    relative: str
    speaker: str
    language: str
    sex: str


def _package_root(packages_dir: Path, source: SpeechSource | NoiseSource) -> Path:
    """The folder of `source` inside its unpacked package; a CorpusError naming the fetch command when missing."""
    root = packages_dir / source.package / source.root
    if not root.is_dir():
        raise CorpusError(f"{packages_dir / source.package} is missing or not unpacked (no {source.root}): run "
                          "`mtqnet speech-pool --fetch` first")
    return root


def scan_speech(packages_dir: Path, sources: Sequence[SpeechSource] = SPEECH_SOURCES) -> list[SpeechFile]:
    """Every speech file of the unpacked packages (`packages_dir/<package>/...`), sorted; a missing package is an
    error naming the fetch script."""
    suffixes = audio_suffixes()
    files = []
    for source in sources:
        root = _package_root(packages_dir, source)
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.suffix.lower() not in suffixes:
                continue
            relative = path.relative_to(root).as_posix()
            label = source.label(relative)
            if label is not None:
                files.append(SpeechFile(str(path), source.package, relative, *label))
    return files


def scan_noise(packages_dir: Path, sources: Sequence[NoiseSource] = NOISE_SOURCES) -> list[tuple[NoiseSource, Path]]:
    """Every noise file of the unpacked packages, sorted."""
    found = []
    for source in sources:
        root = _package_root(packages_dir, source)
        found += [(source, path) for path in sorted(root.rglob("*"))
                  if path.is_file() and re.search(source.pattern, path.relative_to(root).as_posix())]
    return found


def _decode(path: str) -> np.ndarray:
    """16 kHz mono float64, or an empty array for a file libsndfile cannot read."""
    import warnings

    from ..model.feature_extraction_mtqnet import load_audio

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a file without channels warns before it fails
            return load_audio(path, None, SAMPLING_RATE, name="pool file").astype(np.float64)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the caller, never fatal
        return np.zeros(0)


def _prepare_speech(path: str, min_snr_db: float) -> tuple[np.ndarray | None, str]:
    """(trimmed 16 kHz speech, "") or (None, why it was dropped)."""
    signal = _decode(path)
    if signal.size == 0:
        return None, "unreadable or empty"
    if not np.all(np.isfinite(signal)):
        return None, "NaN or Inf samples"
    snr = estimated_snr_db(signal)
    trimmed = trim_silence(signal)
    if trimmed.size < MIN_SPEECH_S * SAMPLING_RATE:
        return None, f"under {MIN_SPEECH_S} s of speech"
    if snr < min_snr_db:
        return None, f"estimated SNR {snr:.1f} dB < {min_snr_db:g} dB"
    return trimmed.astype(np.float32), ""


# ----------------------------------------------------------------------------------------------------------------
# Clips
# ----------------------------------------------------------------------------------------------------------------


def plan_clips(lengths: Sequence[int], rng: np.random.Generator) -> list[list[tuple[int, int, int]]]:
    """Group one speaker's files (their lengths in samples, in the order to use) into clips of MIN..MAX_CLIP_S: each
    clip is a list of (file index, start, end) pieces, joined with PAUSE_S pauses. A target length is drawn per clip;
    a file longer than MAX_CLIP_S is cut into pieces; a last group shorter than MIN_CLIP_S is dropped."""
    pause = int(PAUSE_S * SAMPLING_RATE)
    low, high = int(MIN_CLIP_S * SAMPLING_RATE), int(MAX_CLIP_S * SAMPLING_RATE)
    pieces = []
    for index, length in enumerate(lengths):
        for start in range(0, length, high):
            end = min(length, start + high)
            if end - start >= MIN_SPEECH_S * SAMPLING_RATE:
                pieces.append((index, start, end))
    clips, current, size = [], [], 0
    target = int(rng.uniform(low, high))
    for piece in pieces:
        piece_size = piece[2] - piece[1]
        if current and size + pause + piece_size > high:  # would overflow: close the clip first
            if size >= low:
                clips.append(current)
            current, size, target = [], 0, int(rng.uniform(low, high))
        size += (pause if current else 0) + piece_size
        current.append(piece)
        if size >= target:
            clips.append(current)
            current, size, target = [], 0, int(rng.uniform(low, high))
    if current and size >= low:
        clips.append(current)
    return clips


# ----------------------------------------------------------------------------------------------------------------
# The pool
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class PoolReport:
    """What `make_speech_pool` did."""

    output_dir: Path
    speakers: list[dict[str, Any]]
    clips: int
    hours: float
    noises: int
    dropped: dict[str, int]  # reason -> files
    reused: bool


def _map(function: Callable, items: Sequence, workers: int, desc: str, progress: bool) -> list:
    from tqdm.auto import tqdm

    if workers <= 1:
        return [function(item) for item in tqdm(items, desc=desc, disable=not progress)]
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as executor:
        return list(tqdm(executor.map(function, items, chunksize=32), total=len(items), desc=desc,
                         disable=not progress))


def _speech_job(arguments: tuple[str, float]) -> tuple[np.ndarray | None, str]:
    return _prepare_speech(*arguments)


def _noise_job(path: str) -> np.ndarray:
    return _decode(path).astype(np.float32)


def _fingerprint(paths: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path}\t{os.path.getsize(path)}\n".encode())
    return digest.hexdigest()


def make_speech_pool(packages_dir: str | os.PathLike, output_dir: str | os.PathLike, *, seed: int = 0,
                     min_snr_db: float = 25.0, workers: int | None = None, progress: bool = True,
                     speech_sources: Sequence[SpeechSource] = SPEECH_SOURCES,
                     noise_sources: Sequence[NoiseSource] = NOISE_SOURCES) -> PoolReport:
    """Build the clean-speech and noise pools from the unpacked packages in `packages_dir` (see the module docstring);
    returns a `PoolReport`. Deterministic for a seed whatever `workers` (default: 2 or the CPU count if fewer)."""
    packages_dir, output_dir = Path(packages_dir), Path(output_dir)
    workers = workers or min(2, os.cpu_count() or 1)
    speech_files = scan_speech(packages_dir, speech_sources)
    noise_files = scan_noise(packages_dir, noise_sources) if noise_sources else []
    settings = {"format": POOL_FORMAT, "seed": seed, "min_snr_db": min_snr_db, "target_level_db": TARGET_LEVEL_DB,
                "clip_s": [MIN_CLIP_S, MAX_CLIP_S], "pause_s": PAUSE_S,
                "inputs": _fingerprint([f.path for f in speech_files] + [str(p) for _, p in noise_files])}
    finished = finished_pool(output_dir, settings)
    if finished is not None:
        return finished
    by_speaker, dropped = read_speech(speech_files, min_snr_db, workers, progress)
    speakers, clip_rows = write_speech_clips(by_speaker, output_dir, seed, speech_sources)
    noise_rows = write_noises(noise_files, packages_dir, output_dir, workers, progress)
    return write_pool_record(output_dir, settings, speakers, clip_rows, noise_rows, dropped, speech_sources,
                             noise_sources)


def finished_pool(output_dir: Path, settings: dict[str, Any]) -> PoolReport | None:
    """The report of a pool already finished in `output_dir` with these settings (its pool_info.json), or None for an
    empty or new folder. Anything else there (another pool, other files) is refused: a pool is never written over."""
    info_path = output_dir / "pool_info.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("settings") == settings:
            return PoolReport(output_dir, info["speakers"], info["clips"], info["hours"], info["noises"],
                              info["dropped"], reused=True)
        raise CorpusError(f"{output_dir} holds a pool made with other settings or packages; use a new --output_dir")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise CorpusError(f"{output_dir} is not empty and holds no pool (no pool_info.json): refusing to write "
                          "into it; give a new or empty --output_dir")
    return None


def read_speech(speech_files: Sequence[SpeechFile], min_snr_db: float, workers: int, progress: bool
                ) -> tuple[dict[str, list[tuple[SpeechFile, np.ndarray]]], dict[str, int]]:
    """(speaker -> [(file, trimmed signal)] in scan order, {reason: files dropped}): every file decoded and checked
    (`_prepare_speech`); too noisy, too short, undecodable files and byte-identical duplicates are dropped."""
    prepared = _map(_speech_job, [(f.path, min_snr_db) for f in speech_files], workers, "Reading speech", progress)
    dropped: dict[str, int] = {}
    seen: set[bytes] = set()
    by_speaker: dict[str, list[tuple[SpeechFile, np.ndarray]]] = {}
    for file, (signal, reason) in zip(speech_files, prepared):
        if signal is not None:
            digest = hashlib.sha1(signal.tobytes()).digest()
            if digest in seen:
                signal, reason = None, "duplicate of another file"
            seen.add(digest)
        if signal is None:
            key = re.sub(r"[-\d.]+ dB <", "<", reason)  # one count per kind of reason
            dropped[key] = dropped.get(key, 0) + 1
            continue
        by_speaker.setdefault(file.speaker, []).append((file, signal))
    return by_speaker, dropped


def write_speech_clips(by_speaker: dict[str, list[tuple[SpeechFile, np.ndarray]]], output_dir: Path, seed: int,
                       speech_sources: Sequence[SpeechSource]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each speaker's files, in a seeded order, joined into clips of MIN_CLIP_S..MAX_CLIP_S with short pauses at the
    target level (`plan_clips`), written under speech/<speaker>/: (one row per speaker, one row per clip)."""
    sources = {source.package: source for source in speech_sources}
    speakers, clip_rows = [], []
    pause = np.zeros(int(PAUSE_S * SAMPLING_RATE), dtype=np.float32)
    for number, speaker in enumerate(sorted(by_speaker)):
        items = by_speaker[speaker]
        rng = np.random.default_rng([seed, number])
        order = rng.permutation(len(items))
        items = [items[i] for i in order]
        clips = plan_clips([signal.size for _, signal in items], rng)
        seconds = 0.0
        for index, clip in enumerate(clips):
            parts = []
            for piece_number, (item, start, end) in enumerate(clip):
                if piece_number:
                    parts.append(pause)
                parts.append(items[item][1][start:end])
            samples = level_normalised(np.concatenate(parts).astype(np.float64))
            relative = f"speech/{speaker}/{speaker}_{index:05d}.wav"
            atomic_write_audio(output_dir / relative, samples)
            seconds += samples.size / SAMPLING_RATE
            clip_rows.append({"path": relative, "speaker": speaker,
                              "language": ";".join(sorted({items[item][0].language for item, _, _ in clip})),
                              "duration_s": round(samples.size / SAMPLING_RATE, 3),
                              "sources": ";".join(items[item][0].relative for item, _, _ in clip)})
        first = items[0][0]
        source = sources[first.package]
        packages = sorted({file.package for file, _ in items})
        speakers.append({"speaker": speaker, "language": ";".join(sorted({f.language for f, _ in items})),
                         "sex": first.sex, "kind": source.kind, "narrowband": source.narrowband,
                         "packages": ";".join(packages),
                         "licence": ";".join(sorted({sources[p].licence for p in packages})),
                         "files": len(items), "clips": len(clips), "hours": round(seconds / 3600, 4)})
    return speakers, clip_rows


def write_noises(noise_files: Sequence[tuple[NoiseSource, Path]], packages_dir: Path, output_dir: Path, workers: int,
                 progress: bool) -> list[dict[str, Any]]:
    """The noise recordings written under noise/<category>/, peak-limited: one row each. Too short, silent and
    byte-identical recordings are left out."""
    noise_rows = []
    decoded = _map(_noise_job, [str(path) for _, path in noise_files], workers, "Reading noise", progress)
    noise_seen: set[bytes] = set()
    for (source, path), signal in zip(noise_files, decoded):
        digest = hashlib.sha1(signal.tobytes()).digest()
        power = float(np.mean(signal.astype(np.float64) ** 2)) if signal.size else 0.0
        if signal.size < MIN_NOISE_S * SAMPLING_RATE or power < 1e-7 or digest in noise_seen:
            continue  # too short for a noise bed, silent, or the same recording under another name
        noise_seen.add(digest)
        name = re.sub(r"[^A-Za-z0-9.+-]+", "-", path.relative_to(packages_dir / source.package / source.root)
                      .with_suffix("").as_posix()).strip("-")
        relative = f"noise/{source.category}/{source.package}_{name}.wav"
        atomic_write_audio(output_dir / relative, signal / max(1.0, float(np.max(np.abs(signal))) / 0.99))
        noise_rows.append({"path": relative, "category": source.category, "package": source.package,
                           "version": source.version, "licence": source.licence,
                           "duration_s": round(signal.size / SAMPLING_RATE, 3)})
    return noise_rows


def write_pool_record(output_dir: Path, settings: dict[str, Any], speakers: list[dict[str, Any]],
                      clip_rows: list[dict[str, Any]], noise_rows: list[dict[str, Any]], dropped: dict[str, int],
                      speech_sources: Sequence[SpeechSource], noise_sources: Sequence[NoiseSource]) -> PoolReport:
    """speakers.csv, clips.csv, noises.csv and, last, pool_info.json, which marks the pool complete."""
    for name, rows in (("speakers", speakers), ("clips", clip_rows), ("noises", noise_rows)):
        write_table(output_dir / f"{name}.csv", rows, columns_of(rows) or ["path"])
    hours = round(sum(row["duration_s"] for row in clip_rows) / 3600, 3)
    info = {"settings": settings, "speakers": speakers, "clips": len(clip_rows), "hours": hours,
            "noises": len(noise_rows), "dropped": dropped,
            "languages": sorted({language for row in speakers for language in row["language"].split(";")}),
            "sources": [{"package": s.package, "version": s.version, "licence": s.licence, "kind": s.kind}
                        for s in speech_sources]
            + [{"package": s.package, "version": s.version, "licence": s.licence, "kind": f"noise: {s.category}"}
               for s in noise_sources]}
    atomic_write_text(output_dir / "pool_info.json", json.dumps(info, indent=2))  # last: marks the pool complete
    return PoolReport(output_dir, speakers, len(clip_rows), hours, len(noise_rows), dropped, reused=False)


def summary(report: PoolReport) -> str:
    """A few lines on the pool: clips, hours, speakers by sex and kind, languages, noises, what was dropped."""
    speakers = report.speakers
    sexes = {sex: sum(row["sex"] == sex for row in speakers) for sex in sorted({row["sex"] for row in speakers})}
    languages = sorted({language for row in speakers for language in str(row["language"]).split(";")})
    running = [row for row in speakers if row["kind"] in ("sentences", "dialogue", "prompts")]
    lines = [f"{'Reused' if report.reused else 'Made'} pool {report.output_dir}: {report.clips} clips, "
             f"{report.hours:.2f} h, {len(speakers)} speakers ({len(running)} of running speech; sex "
             + ", ".join(f"{k} {v}" for k, v in sexes.items()) + f"), {len(languages)} languages; "
             f"{report.noises} noise recordings"]
    if report.dropped:
        lines.append("Dropped files: " + ", ".join(f"{reason}: {count}" for reason, count in report.dropped.items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "mtqnet speech-pool") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Make the clean-speech and noise pools of `mtqnet corpus` "
                                     "from real recordings in Debian packages (docs/data_sources.md).")
    parser.add_argument("--packages_dir", required=True, help="where the packages are (or go, with --fetch) unpacked")
    parser.add_argument("--fetch", action="store_true",
                        help="download and unpack the pinned packages first (apt-get download, dpkg -x; no root)")
    parser.add_argument("--output_dir", required=True, help="new or empty folder (a finished pool is reused)")
    parser.add_argument("--seed", type=int, default=0, help="order in which a speaker's files fill clips")
    parser.add_argument("--min_snr_db", type=float, default=25.0,
                        help="drop recordings whose estimated SNR is lower (default 25)")
    parser.add_argument("--workers", type=int, default=None, help="processes that decode (default 2)")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    if args.fetch:
        fetch_packages(args.packages_dir, with_noise=True)
    report = make_speech_pool(args.packages_dir, args.output_dir, seed=args.seed, min_snr_db=args.min_snr_db,
                              workers=args.workers, progress=not args.no_progress)
    print(summary(report))
    return 0


__all__ = ["SpeechSource", "NoiseSource", "package_versions", "fetch_packages", "SPEECH_SOURCES", "NOISE_SOURCES",
           "trim_silence", "estimated_snr_db",
           "level_normalised", "scan_speech", "scan_noise", "plan_clips", "make_speech_pool", "PoolReport", "summary",
           "main"]

if __name__ == "__main__":
    sys.exit(main())
