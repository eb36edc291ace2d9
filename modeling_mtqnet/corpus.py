"""Corpus builder: noisy, enhanced and coded speech with aligned clean references and a manifest CSV.

```bash
python -m modeling_mtqnet.corpus --clean_dir speech/ --output_dir corpus/ \
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
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fnmatch
import functools
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .feature_extraction_mtqnet import load_audio

logger = logging.getLogger(__name__)

SAMPLING_RATE = 16000
FRAME_SAMPLES = 320  # 20 ms frames for the active-speech measure
ACTIVE_RANGE_DB = 40.0  # a frame is active when its power is within this many dB of the loudest frame
MIN_SAMPLES = 1600  # 0.1 s: shorter clean files are unusable
PEAK_LIMIT = 0.99
DEFAULT_SNRS = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0)

# Extensions of the formats libsndfile reads; other files in the folders (transcripts, ...) are ignored.
AUDIO_EXTENSIONS = (
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd", ".caf",
    ".w64", ".rf64", ".sph", ".nist", ".voc", ".sf", ".ircam", ".paf", ".pvf", ".htk", ".mat", ".xi", ".avr",
    ".sds", ".svx", ".8svx", ".wve", ".sd2", ".mpc",
)

PROCEDURAL_NOISES = ("white", "pink", "brown", "speech_shaped", "hum", "babble")
ENHANCERS = ("noisereduce", "sox_noisered", "ffmpeg_afftdn", "rnnoise")
CODECS = ("opus", "gsm", "mp3")
SYSTEMS = ("none",) + ENHANCERS + CODECS

# Parameter choices, one drawn per utterance (seeded).
SYSTEM_PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "none": [{}],
    "noisereduce": [{"prop_decrease": 0.7}, {"prop_decrease": 1.0}],
    "sox_noisered": [{"amount": 0.1}, {"amount": 0.2}, {"amount": 0.3}],
    "ffmpeg_afftdn": [{"nr": 12}, {"nr": 24}],
    "rnnoise": [{}],
    "opus": [{"kbps": 6}, {"kbps": 8}, {"kbps": 12}, {"kbps": 16}, {"kbps": 24}],
    "gsm": [{}],
    "mp3": [{"kbps": 16}, {"kbps": 24}, {"kbps": 32}, {"kbps": 48}],
}

MANIFEST_COLUMNS = (
    "path", "clean_path", "noise_path", "split", "snr_db", "noise_type", "noise_source", "system", "system_kind",
    "system_params", "speaker", "source_file", "speech_level_db", "duration_s",
)

# Long-term average speech spectrum, one-third-octave band levels (dB) for an overall level of 70 dB SPL, speech of
# male and female talkers combined; approximately Byrne et al. (1994), J. Acoust. Soc. Am. 96(4) 2108-2120.
LTASS_BANDS_HZ = (63, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630, 800, 1000, 1250, 1600, 2000, 2500, 3150,
                  4000, 5000, 6300, 8000)
LTASS_LEVELS_DB = (38.6, 43.5, 54.4, 57.7, 56.8, 58.2, 59.7, 60.0, 62.1, 62.1, 60.5, 56.8, 53.7, 53.0, 52.0, 48.7,
                   48.1, 46.8, 45.6, 44.5, 44.3, 43.7)


class CorpusError(ValueError):
    """A problem with the inputs or the output folder, worded for the user."""


# ----------------------------------------------------------------------------------------------------------------
# Signals
# ----------------------------------------------------------------------------------------------------------------


def frame_powers(signal: np.ndarray, frame: int = FRAME_SAMPLES) -> np.ndarray:
    """Mean square of each full frame (one frame for a signal shorter than `frame`)."""
    signal = np.asarray(signal, dtype=np.float64)
    count = max(1, signal.size // frame)
    if signal.size < frame:
        return np.array([np.mean(signal**2)])
    return np.mean(signal[: count * frame].reshape(count, frame) ** 2, axis=1)


def active_speech_power(signal: np.ndarray) -> float:
    """Mean square over the active 20 ms frames: those whose power is within 40 dB of the loudest frame."""
    powers = frame_powers(signal)
    peak = float(powers.max())
    if peak <= 0.0:
        return 0.0
    return float(powers[powers >= peak * 10 ** (-ACTIVE_RANGE_DB / 10)].mean())


def speech_power(signal: np.ndarray, snr_mode: str) -> float:
    """The speech power the SNR refers to: over active frames (`active`) or the whole file (`whole`)."""
    if snr_mode == "active":
        return active_speech_power(signal)
    return float(np.mean(np.asarray(signal, dtype=np.float64) ** 2))


def measure_snr(clean: np.ndarray, noise: np.ndarray, snr_mode: str = "active") -> float:
    """SNR in dB as the builder defines it (noise power always over the whole file)."""
    return 10 * math.log10(speech_power(clean, snr_mode) / float(np.mean(np.asarray(noise, np.float64) ** 2)))


def _resonator(signal: np.ndarray, centre: float, bandwidth: float, rate: int) -> np.ndarray:
    """A two-pole resonance (formant) applied in the frequency domain (numpy only; the tail is cut)."""
    size = 1 << int(np.ceil(np.log2(signal.size + 2048)))
    radius = np.exp(-np.pi * bandwidth / rate)
    z = np.exp(-2j * np.pi * np.fft.rfftfreq(size))
    response = (1 - radius) / (1 - 2 * radius * np.cos(2 * np.pi * centre / rate) * z + radius**2 * z**2)
    return np.fft.irfft(np.fft.rfft(signal, size) * response, size)[: signal.size]


def synthetic_speech(seconds: float, rng: np.random.Generator, rate: int = SAMPLING_RATE) -> np.ndarray:
    """A speech-like test signal: syllables of formant-filtered harmonics with gliding pitch, fricative bursts and
    pauses (non-periodic, so cross-correlation has one clear peak). Peak 0.5."""
    total = int(seconds * rate)
    out = np.zeros(total)
    position = int(0.1 * rate)
    while position < total - int(0.1 * rate):
        length = min(int(rng.uniform(0.08, 0.3) * rate), total - position)
        if rng.random() < 0.75:
            f0 = rng.uniform(90, 220) * np.linspace(1.0, rng.uniform(0.8, 1.25), length)
            phase = 2 * np.pi * np.cumsum(f0) / rate
            source = sum(np.sin(k * phase) / k for k in range(1, int(3800 / f0.max())))
            for centre, bandwidth in ((rng.uniform(300, 900), 80), (rng.uniform(900, 2500), 120),
                                      (rng.uniform(2500, 3500), 200)):
                source = source + 0.5 * _resonator(source, centre, bandwidth, rate)
        else:
            source = 0.3 * rng.standard_normal(length)
        out[position:position + length] += source * np.hanning(length) ** 0.5
        position += length + int(rng.uniform(0.02, 0.25) * rate)
    peak = np.max(np.abs(out))
    return (0.5 * out / peak if peak > 0 else out).astype(np.float32)


def _shaped_noise(rng: np.random.Generator, length: int, amplitude: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """White Gaussian noise filtered in the frequency domain by `amplitude(frequencies_hz)`."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.fft.rfftfreq(length, 1 / SAMPLING_RATE)
    spectrum *= amplitude(frequencies)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n=length)


def _power_law(exponent: float) -> Callable[[np.ndarray], np.ndarray]:
    """Amplitude f^(-exponent/2) (power spectral density 1/f^exponent), flat below 20 Hz."""
    return lambda frequencies: np.maximum(frequencies, 20.0) ** (-exponent / 2)


def ltass_density(frequencies: np.ndarray) -> np.ndarray:
    """Power spectral density (linear, arbitrary scale) of the standard LTASS curve at `frequencies` Hz."""
    bands = np.asarray(LTASS_BANDS_HZ, dtype=np.float64)
    density_db = np.asarray(LTASS_LEVELS_DB) - 10 * np.log10(0.2316 * bands)  # band level -> level per Hz
    log_f = np.log10(np.clip(frequencies, bands[0], bands[-1]))
    return 10 ** (np.interp(log_f, np.log10(bands), density_db) / 10)


def average_speech_spectrum(signals: Iterable[np.ndarray], n_fft: int = 1024) -> np.ndarray:
    """Average power spectrum (n_fft // 2 + 1 bins) of the active frames of `signals`, each signal weighted equally."""
    window = np.hanning(n_fft)
    total = np.zeros(n_fft // 2 + 1)
    used = 0
    for signal in signals:
        signal = np.asarray(signal, dtype=np.float64)
        if signal.size < n_fft:
            signal = np.pad(signal, (0, n_fft - signal.size))
        starts = np.arange(0, signal.size - n_fft + 1, n_fft // 2)
        frames = np.stack([signal[s:s + n_fft] for s in starts]) * window
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        energy = power.sum(axis=1)
        active = energy >= energy.max() * 10 ** (-ACTIVE_RANGE_DB / 10) if energy.max() > 0 else energy > 0
        if not active.any():
            continue
        spectrum = power[active].mean(axis=0)
        total += spectrum / spectrum.sum()
        used += 1
    if used == 0:
        raise CorpusError("Cannot compute the average speech spectrum: every clean file sampled is silent")
    return total / used


def _loop_segment(signal: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random `length`-sample segment of `signal`, looped (from a random start) when the signal is shorter."""
    if signal.size >= length:
        start = int(rng.integers(0, signal.size - length + 1))
        return signal[start:start + length]
    start = int(rng.integers(0, signal.size))
    return np.resize(np.roll(signal, -start), length)


def cross_correlation_lag(signal: np.ndarray, reference: np.ndarray, max_lag: int) -> int:
    """The lag (samples, positive = `signal` late) in [-max_lag, max_lag] that maximises the cross-correlation."""
    signal = np.asarray(signal, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    size = 1 << int(np.ceil(np.log2(signal.size + reference.size + 1)))
    correlation = np.fft.irfft(np.fft.rfft(signal, size) * np.conj(np.fft.rfft(reference, size)), size)
    lags = np.arange(-max_lag, max_lag + 1)
    return int(lags[np.argmax(correlation[lags % size])])


# ----------------------------------------------------------------------------------------------------------------
# Enhancement systems and codecs
# ----------------------------------------------------------------------------------------------------------------


def _run(command: Sequence[str], what: str) -> str:
    completed = subprocess.run(list(command), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if completed.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(command)}): {completed.stderr.strip()[-1500:]}")
    return completed.stdout


def _tool_output(command: Sequence[str]) -> str:
    try:
        completed = subprocess.run(list(command), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    return completed.stdout + completed.stderr


@functools.lru_cache(maxsize=None)
def _sox_info() -> tuple[str, str]:
    """(version line, `sox -h` text), or ("", "") without sox."""
    if not shutil.which("sox"):
        return "", ""
    match = re.search(r"v(\d[\w.+-]*)", _tool_output(["sox", "--version"]))
    return (match.group(1) if match else "(unknown version)"), _tool_output(["sox", "-h"])


@functools.lru_cache(maxsize=None)
def _ffmpeg_info() -> tuple[str, str, str]:
    """(version line, filter list, encoder list), or empty strings without ffmpeg."""
    if not shutil.which("ffmpeg"):
        return "", "", ""
    version = _tool_output(["ffmpeg", "-hide_banner", "-version"]).splitlines()
    match = re.match(r"ffmpeg version (\S+)", version[0]) if version else None
    return ("ffmpeg " + (match.group(1) if match else "(unknown version)"),
            _tool_output(["ffmpeg", "-hide_banner", "-filters"]), _tool_output(["ffmpeg", "-hide_banner", "-encoders"]))


def _has_encoder(name: str) -> bool:
    return re.search(rf"\s{re.escape(name)}\s", _ffmpeg_info()[2]) is not None


def _sox_formats() -> list[str]:
    match = re.search(r"AUDIO FILE FORMATS:(.*)", _sox_info()[1])
    return match.group(1).split() if match else []


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=None)
def _rnnoise_library():
    """pyrnnoise's bundled librnnoise, loaded directly with ctypes (pyrnnoise's own reader pulls in PyAV)."""
    import ctypes

    spec = importlib.util.find_spec("pyrnnoise")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pyrnnoise is not installed (pip install pyrnnoise)")
    folder = Path(list(spec.submodule_search_locations)[0])
    names = {"darwin": "librnnoise.dylib", "win32": "rnnoise.dll"}
    path = folder / names.get(sys.platform, "librnnoise.so")
    if not path.is_file():
        raise ImportError(f"pyrnnoise has no RNNoise library at {path}")
    library = ctypes.CDLL(str(path))
    library.rnnoise_create.argtypes = [ctypes.c_void_p]
    library.rnnoise_create.restype = ctypes.c_void_p
    library.rnnoise_destroy.argtypes = [ctypes.c_void_p]
    library.rnnoise_get_frame_size.restype = ctypes.c_int
    library.rnnoise_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                              ctypes.POINTER(ctypes.c_float)]
    library.rnnoise_process_frame.restype = ctypes.c_float
    if library.rnnoise_get_frame_size() != 480:
        raise ImportError(f"unexpected RNNoise frame size {library.rnnoise_get_frame_size()} (480 expected)")
    return library


@dataclasses.dataclass(frozen=True)
class SystemStatus:
    name: str
    kind: str  # none / enhancement / codec
    available: bool
    backend: str  # the tool or package that runs it, with its version; or why it is unavailable


@functools.lru_cache(maxsize=None)
def system_status(name: str) -> SystemStatus:
    """Whether `name` can run here, with which backend (and version) or why not."""
    kind = "none" if name == "none" else "enhancement" if name in ENHANCERS else "codec"

    def status(available: bool, backend: str) -> SystemStatus:
        return SystemStatus(name, kind, available, backend)

    if name == "none":
        return status(True, "")
    if name == "noisereduce":
        if importlib.util.find_spec("noisereduce") is None:
            return status(False, "the noisereduce package is not installed (pip install noisereduce)")
        try:
            import noisereduce  # noqa: F401
        except Exception as error:  # pragma: no cover - depends on the environment
            return status(False, f"noisereduce fails to import: {error}")
        return status(True, f"noisereduce {_package_version('noisereduce')}")
    if name == "rnnoise":
        try:
            _rnnoise_library()
        except (ImportError, OSError) as error:
            return status(False, f"RNNoise unavailable: {error}")
        return status(True, f"pyrnnoise {_package_version('pyrnnoise')} (librnnoise via ctypes)")
    if name == "sox_noisered":
        version, help_text = _sox_info()
        if not version:
            return status(False, "the sox command is missing (apt-get install sox)")
        if "noisered" not in help_text:
            return status(False, f"sox {version} has no noisered effect")
        return status(True, f"sox {version}")
    if name == "ffmpeg_afftdn":
        version, filters, _ = _ffmpeg_info()
        if not version:
            return status(False, "the ffmpeg command is missing (apt-get install ffmpeg)")
        if not re.search(r"\safftdn\s", filters):
            return status(False, f"{version} has no afftdn filter")
        return status(True, version)
    if name == "opus":
        if _ffmpeg_info()[0] and _has_encoder("libopus"):
            return status(True, f"{_ffmpeg_info()[0]} (libopus)")
        if shutil.which("opusenc") and shutil.which("opusdec"):
            return status(True, "opus-tools " + _tool_output(["opusenc", "--version"]).splitlines()[0])
        return status(False, "neither ffmpeg with libopus nor opus-tools (apt-get install opus-tools)")
    if name == "mp3":
        if _ffmpeg_info()[0] and _has_encoder("libmp3lame"):
            return status(True, f"{_ffmpeg_info()[0]} (libmp3lame)")
        if shutil.which("lame"):
            return status(True, _tool_output(["lame", "--version"]).splitlines()[0])
        return status(False, "neither ffmpeg with libmp3lame nor lame (apt-get install lame)")
    if name == "gsm":
        if "gsm" in _sox_formats():
            return status(True, f"sox {_sox_info()[0]} (gsm)")
        if _ffmpeg_info()[0] and _has_encoder("libgsm"):
            return status(True, f"{_ffmpeg_info()[0]} (libgsm)")
        return status(False, "neither sox with GSM support (apt-get install sox libsox-fmt-all) nor ffmpeg with libgsm")
    raise CorpusError(f"Unknown system {name!r}; known: {', '.join(SYSTEMS)}")


def _write_pcm16(path: Path, samples: np.ndarray, rate: int = SAMPLING_RATE) -> None:
    import soundfile

    soundfile.write(str(path), np.clip(samples, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")


def _read_mono16k(path: Path) -> np.ndarray:
    return load_audio(str(path), None, SAMPLING_RATE, name="system output").astype(np.float64)


def _ffmpeg(*arguments: str) -> list[str]:
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *arguments]


def _ffmpeg_round_trip(source: Path, coded: Path, decoded: Path, codec: str, kbps: int) -> None:
    """Encode `source` with an FFmpeg audio codec at `kbps`, then decode to 16 kHz mono float WAV."""
    _run(_ffmpeg("-i", str(source), "-c:a", codec, "-b:a", f"{kbps}k", str(coded)), f"ffmpeg {codec}")
    _run(_ffmpeg("-i", str(coded), "-ar", str(SAMPLING_RATE), "-ac", "1", "-c:a", "pcm_f32le", str(decoded)),
         f"ffmpeg {codec} decoding")


def _sox(*arguments: str) -> list[str]:
    return ["sox", "-V1", "-D", "-R", *arguments]  # no dither, repeatable


def _tool_system(name: str, mix: np.ndarray, noise: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Run a command-line system on `mix` (16 kHz) in a temporary folder; returns its raw output at 16 kHz."""
    backend = system_status(name).backend
    with tempfile.TemporaryDirectory(prefix="mtqnet_corpus_") as folder:
        folder = Path(folder)
        source, decoded = folder / "in.wav", folder / "out.wav"
        _write_pcm16(source, mix)
        if name == "sox_noisered":
            # Oracle noise profile: SoX's profile is taken from the added noise itself.
            _write_pcm16(folder / "noise.wav", noise)
            _run(_sox(str(folder / "noise.wav"), "-n", "noiseprof", str(folder / "noise.prof")), "sox noiseprof")
            _run(_sox(str(source), "-e", "floating-point", "-b", "32", str(decoded), "noisered",
                      str(folder / "noise.prof"), str(params["amount"])), "sox noisered")
        elif name == "ffmpeg_afftdn":
            _run(_ffmpeg("-i", str(source), "-af", f"afftdn=nr={params['nr']}", "-c:a", "pcm_f32le", str(decoded)),
                 "ffmpeg afftdn")
        elif name == "opus":
            coded = folder / "coded.opus"
            if backend.startswith("opus-tools"):
                _run(["opusenc", "--quiet", "--bitrate", str(params["kbps"]), str(source), str(coded)], "opusenc")
                _run(["opusdec", "--quiet", "--rate", str(SAMPLING_RATE), str(coded), str(decoded)], "opusdec")
            else:
                _ffmpeg_round_trip(source, coded, decoded, "libopus", params["kbps"])
        elif name == "mp3":
            coded = folder / "coded.mp3"
            if backend.startswith("LAME"):
                _run(["lame", "--quiet", "-b", str(params["kbps"]), str(source), str(coded)], "lame")
                _run(["lame", "--quiet", "--decode", str(coded), str(decoded)], "lame --decode")
            else:
                _ffmpeg_round_trip(source, coded, decoded, "libmp3lame", params["kbps"])
        elif name == "gsm":
            coded = folder / "coded.gsm"
            if backend.startswith("sox"):
                _run(_sox(str(source), "-r", "8000", str(coded)), "sox gsm encoding")
                _run(_sox(str(coded), "-e", "floating-point", "-b", "32", "-r", str(SAMPLING_RATE), str(decoded)),
                     "sox gsm decoding")
            else:
                _run(_ffmpeg("-i", str(source), "-ar", "8000", "-c:a", "libgsm", "-f", "gsm", str(coded)),
                     "ffmpeg libgsm")
                _run(_ffmpeg("-f", "gsm", "-i", str(coded), "-ar", str(SAMPLING_RATE), "-c:a", "pcm_f32le",
                             str(decoded)), "ffmpeg gsm decoding")
        else:  # pragma: no cover - guarded by the callers
            raise CorpusError(f"{name} is not a command-line system")
        return _read_mono16k(decoded)


def _noisereduce(mix: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    import noisereduce

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(noisereduce.reduce_noise(y=mix.astype(np.float32), sr=SAMPLING_RATE, stationary=False,
                                                   prop_decrease=params["prop_decrease"], n_jobs=1,
                                                   use_tqdm=False), dtype=np.float64)


RNNOISE_RATE = 48000
RNNOISE_FRAME = 480
RNNOISE_DELAY = 960  # samples at 48 kHz (20 ms): RNNoise's output lags its input by this much


def _rnnoise(mix: np.ndarray) -> np.ndarray:
    """RNNoise at 48 kHz (int16 scale), resampled back to 16 kHz, its 20 ms lag removed."""
    import ctypes

    import soxr

    library = _rnnoise_library()
    upsampled = soxr.resample(mix.astype(np.float32), SAMPLING_RATE, RNNOISE_RATE, quality="HQ")
    length = upsampled.size
    padded = np.zeros(int(math.ceil((length + RNNOISE_DELAY) / RNNOISE_FRAME)) * RNNOISE_FRAME, dtype=np.float32)
    padded[:length] = upsampled * 32768.0
    output = np.empty_like(padded)
    state = library.rnnoise_create(None)
    try:
        frame = np.empty(RNNOISE_FRAME, dtype=np.float32)
        pointer = frame.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        for start in range(0, padded.size, RNNOISE_FRAME):
            frame[:] = padded[start:start + RNNOISE_FRAME]
            library.rnnoise_process_frame(state, pointer, pointer)
            output[start:start + RNNOISE_FRAME] = frame
    finally:
        library.rnnoise_destroy(state)
    aligned = output[RNNOISE_DELAY:RNNOISE_DELAY + length] / 32768.0
    return soxr.resample(aligned, RNNOISE_RATE, SAMPLING_RATE, quality="HQ").astype(np.float64)


TAIL_PADDING = 4000  # 0.25 s of silence appended before processing, so no system's delay or block size cuts the end
IN_PROCESS_DELAYS = {"none": 0, "noisereduce": 0, "rnnoise": 0}  # exact (zero-phase STFT; RNNoise lag removed)


def _raw_system_output(name: str, mix: np.ndarray, noise: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    padded = np.concatenate([mix, np.zeros(TAIL_PADDING)])
    if name == "none":
        return padded
    if name == "noisereduce":
        return _noisereduce(padded, params)
    if name == "rnnoise":
        return _rnnoise(padded)
    return _tool_system(name, padded, noise, params)


def _shift_and_fit(signal: np.ndarray, delay: int, length: int) -> np.ndarray:
    """Remove `delay` samples of lag (negative: lead) and cut or zero-pad to `length`."""
    if delay >= 0:
        signal = signal[delay:]
    else:
        signal = np.concatenate([np.zeros(-delay), signal])
    if signal.size < length:
        signal = np.pad(signal, (0, length - signal.size))
    return signal[:length]


def _params_key(params: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in sorted(params.items()))


@functools.lru_cache(maxsize=None)
def calibrate_delay(name: str, params_key: str) -> int:
    """A command-line system's delay at 16 kHz, measured on a synthetic speech probe (+ noise at 30 dB SNR) as the
    cross-correlation peak within +-0.1 s. Tools and versions differ (lame --decode keeps the encoder delay, FFmpeg's
    afftdn lags 25 ms in FFmpeg 5.1), so it is measured rather than assumed."""
    if name in IN_PROCESS_DELAYS:
        return IN_PROCESS_DELAYS[name]
    params = dict(item.split("=", 1) for item in params_key.split()) if params_key else {}
    params = {key: (float(value) if "." in value else int(value)) for key, value in params.items()}
    rng = np.random.default_rng(20240611)
    probe = synthetic_speech(4.0, rng).astype(np.float64) * 0.3
    noise = rng.standard_normal(probe.size) * math.sqrt(active_speech_power(probe) / 1000.0)
    output = _raw_system_output(name, probe + noise, noise, params)
    return cross_correlation_lag(output[: probe.size + 1600], probe, max_lag=1600)


def apply_system(name: str, mix: np.ndarray, noise: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
    """Pass a 16 kHz mixture through a system; the output is aligned with the input and of the same length.

    `noise` is the additive noise in `mix` (SoX noisered builds its profile from it); `params` default to the
    first choice of `SYSTEM_PARAMETERS[name]`.
    """
    status = system_status(name)
    if not status.available:
        raise CorpusError(f"System {name} is unavailable: {status.backend}")
    params = dict(SYSTEM_PARAMETERS[name][0] if params is None else params)
    mix = np.asarray(mix, dtype=np.float64)
    delay = calibrate_delay(name, _params_key(params))
    return _shift_and_fit(_raw_system_output(name, mix, np.asarray(noise, np.float64), params), delay, mix.size)


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AudioSource:
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
        if not path.is_file() or path.suffix.lower() not in AUDIO_EXTENSIONS or path.name.startswith("."):
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
                          f"{', '.join(AUDIO_EXTENSIONS[:8])}, ... files)")
    return sources


@functools.lru_cache(maxsize=64)
def _load(path: str, role: str) -> np.ndarray:
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


@functools.lru_cache(maxsize=4096)
def _permutation(seed: int, split: int, field: int, cycle: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, split, field, cycle]).permutation(size)


def _cycled(seed: int, split: int, field: int, position: int, size: int) -> int:
    """Balanced draw: positions cycle through fresh seeded permutations of range(size)."""
    return int(_permutation(seed, split, field, position // size, size)[position % size])


@dataclasses.dataclass
class _Pools:
    files: list[AudioSource]
    noises: list[tuple[str, AudioSource | None]]  # (noise name, file or None for procedural)
    systems: list[str]


def _safe(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-")[:limit] or "x"


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


def build_corpus(
    clean_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    noise_dir: str | os.PathLike | None = None,
    noises: Sequence[str] | None = None,
    snrs: Sequence[float] = DEFAULT_SNRS,
    count: int | None = None,
    seed: int = 0,
    systems: Sequence[str] = ("none",),
    test_noises: Sequence[str] = (),
    test_systems: Sequence[str] = (),
    test_fraction: float | None = None,
    test_seen_conditions: bool = False,
    snr_mode: str = "active",
    target_level_db: float = -26.0,
    level_jitter_db: float = 0.0,
    babble_talkers: int = 5,
    speech_spectrum: str = "clean",
    max_duration_s: float | None = None,
    speaker_pattern: str | None = None,
    save_noise: bool = False,
    skip_bad_files: bool = False,
    progress: bool = True,
) -> CorpusReport:
    """Build (or finish) a corpus in `output_dir`; returns a `CorpusReport`. See the module docstring.

    Args:
        clean_dir: folder of clean speech (searched recursively; any format libsndfile reads).
        output_dir: where `manifest.csv`, `corpus_info.json`, `corpus_config.json` and `SPLIT/{noisy,clean,noise}/`
            go. A folder started with other settings is refused; one started with the same settings is resumed
            (utterances whose files exist are not rewritten). Raising `count` extends a corpus.
        noise_dir: folder of noise recordings; each file is one noise named by its relative path without extension.
        noises: noise names: procedural types (`white pink brown speech_shaped hum babble`), `procedural` (all of
            them), `files` (every file of `noise_dir`), or patterns matching noise-file names. Default: `files` with
            a `noise_dir`, else every procedural type.
        snrs: SNRs in dB, used in turn (balanced, seeded order); `inf` adds no noise (noise_type `none`).
        count: number of utterances (default: one per clean file).
        seed: the seed; the same seed, inputs and available systems give byte-identical files.
        systems: `none`, system names (`SYSTEMS`) or `all` / `enhancers` / `codecs`; unavailable ones are skipped
            and reported. Each utterance gets one, in turn.
        test_noises / test_systems: held-out conditions (names or patterns): used only in the test split, which then
            uses only them. Noises or systems named here need not be in `noises` / `systems`.
        test_seen_conditions: the test split also uses the training noises and systems, beside the held-out ones
            (a test set of seen and unseen conditions, as in TMHINT-QI v2), instead of the held-out ones alone.
        test_fraction: share of utterances (and of speakers, held out from training) in the test split; default 0.2
            when held-out conditions are given, else 0 (no test split).
        snr_mode: `active` (speech power over active frames) or `whole` (whole-file power); noise power is always
            whole-file.
        target_level_db / level_jitter_db: active speech level (dB re full-scale RMS), +- a uniform jitter.
        babble_talkers: talkers summed for babble (other utterances of the same split, other speakers first).
        speech_spectrum: `clean` (average spectrum of up to 32 clean files of the training split) or `ltass` (the
            standard long-term average speech spectrum) for the speech-shaped noise.
        max_duration_s: crop longer clean files (random segment).
        speaker_pattern: regex whose first group, searched in a clean file's relative path, is its speaker.
        save_noise: also write the scaled additive noise (`noise_path`); mix = clean + noise.
        skip_bad_files: skip (and report) unreadable, silent or too short clean files instead of stopping.
        progress: show a tqdm progress bar.
    """
    from tqdm.auto import tqdm

    if snr_mode not in ("active", "whole"):
        raise CorpusError(f"snr_mode must be 'active' or 'whole', got {snr_mode!r}")
    if speech_spectrum not in ("clean", "ltass"):
        raise CorpusError(f"speech_spectrum must be 'clean' or 'ltass', got {speech_spectrum!r}")
    snrs = [float(value) for value in snrs]
    if not snrs or any(math.isnan(value) or value == -math.inf for value in snrs):
        raise CorpusError(f"Give one or more SNRs in dB (finite, or inf for no noise), got {snrs}")
    if babble_talkers < 1:
        raise CorpusError("babble_talkers must be at least 1")
    held_out = bool(test_noises) or bool(test_systems)
    test_fraction = (0.2 if held_out else 0.0) if test_fraction is None else float(test_fraction)
    if not 0.0 <= test_fraction < 1.0:
        raise CorpusError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if held_out and test_fraction == 0.0:
        raise CorpusError("Held-out test noises/systems need a test split: test_fraction > 0")
    output_dir = Path(output_dir)

    bad_files: list[str] = []
    clean_files = scan_audio_folder(clean_dir, "clean speech", speaker_pattern, skip_bad_files, bad_files)
    noise_files = scan_audio_folder(noise_dir, "noise") if noise_dir is not None else []

    # Noises: every candidate name, then train / test pools.
    noise_by_name: dict[str, AudioSource | None] = {name: None for name in PROCEDURAL_NOISES}
    for source in noise_files:
        noise_by_name[str(PurePosixPath(source.relative).with_suffix(""))] = source

    def select_noises(patterns: Sequence[str], what: str) -> list[str]:
        chosen: list[str] = []
        for pattern in patterns:
            if pattern == "procedural":
                names = list(PROCEDURAL_NOISES)
            elif pattern == "files":
                if not noise_files:
                    raise CorpusError(f"{what}: 'files' needs --noise_dir")
                names = [name for name, source in noise_by_name.items() if source is not None]
            else:
                names = [name for name in noise_by_name if _matches(name, [pattern])]
                if not names:
                    raise CorpusError(f"{what}: no noise matches {pattern!r} (procedural noises: "
                                      f"{', '.join(PROCEDURAL_NOISES)}; noise files: {len(noise_files)})")
            chosen += [name for name in names if name not in chosen]
        return chosen

    all_noises = select_noises(noises if noises else (["files"] if noise_files else ["procedural"]), "noises")
    test_noise_names = select_noises(test_noises, "test_noises") if test_noises else []
    train_noises = [name for name in all_noises if name not in test_noise_names]
    if not train_noises:
        raise CorpusError("Every noise is held out for testing; the training split would have none")

    unavailable: dict[str, str] = {}
    all_systems = _resolve_systems(systems, unavailable)
    test_system_names = _resolve_systems(test_systems, unavailable) if test_systems else []
    if test_systems and not test_system_names:
        warnings.warn(f"None of the held-out test systems is available ({unavailable}); the test split uses the "
                      "training systems", stacklevel=2)
    train_systems = [name for name in all_systems if name not in test_system_names]
    if not train_systems:
        raise CorpusError("No system left for the training split (requested: "
                          f"{list(systems)}; unavailable: {unavailable or 'none'})")

    # Speakers -> splits (speakers of the test split never appear in training).
    speakers = sorted({source.speaker for source in clean_files})
    units = speakers if len(speakers) > 1 else [source.relative for source in clean_files]
    test_units: set[str] = set()
    if test_fraction > 0:
        if len(units) < 2:
            raise CorpusError("A test split needs at least two clean files (or two speakers)")
        order = np.random.default_rng([seed, 99]).permutation(len(units))
        n_test = min(len(units) - 1, max(1, round(test_fraction * len(units))))
        test_units = {units[i] for i in order[:n_test]}
    unit_of = (lambda s: s.speaker) if len(speakers) > 1 else (lambda s: s.relative)
    test_noise_pool = all_noises + [n for n in test_noise_names if n not in all_noises] \
        if test_seen_conditions or not test_noise_names else test_noise_names
    test_system_pool = all_systems + [n for n in test_system_names if n not in all_systems] \
        if test_seen_conditions or not test_system_names else test_system_names
    pools = {
        "train": _Pools([s for s in clean_files if unit_of(s) not in test_units],
                        [(name, noise_by_name[name]) for name in train_noises], train_systems),
        "test": _Pools([s for s in clean_files if unit_of(s) in test_units],
                       [(name, noise_by_name[name]) for name in test_noise_pool], test_system_pool),
    }

    count = len(clean_files) if count is None else int(count)
    if count < 1:
        raise CorpusError(f"count must be at least 1, got {count}")

    fingerprint = hashlib.sha256("\n".join(f"{s.relative}\t{s.size}" for s in clean_files + noise_files).encode())
    config = {
        "format": 1, "input_fingerprint": fingerprint.hexdigest(), "seed": int(seed), "snrs": snrs,
        "snr_mode": snr_mode,
        "train_noises": train_noises, "test_noises": [name for name, _ in pools["test"].noises],
        "train_systems": train_systems, "test_systems": pools["test"].systems, "test_fraction": test_fraction,
        "test_units": sorted(test_units), "target_level_db": target_level_db, "level_jitter_db": level_jitter_db,
        "babble_talkers": babble_talkers, "speech_spectrum": speech_spectrum, "max_duration_s": max_duration_s,
        "save_noise": save_noise, "sampling_rate": SAMPLING_RATE,
    }
    if test_fraction == 0:
        config["test_noises"] = config["test_systems"] = []
    _check_or_write_config(output_dir, config)
    folders = {"clean_dir": str(Path(clean_dir).resolve()),
               "noise_dir": str(Path(noise_dir).resolve()) if noise_dir is not None else None}

    # The plan: split and balanced conditions per utterance, independent of `count`.
    fraction = Fraction(str(test_fraction)).limit_denominator(1_000_000)
    plan = []
    for index in range(count):
        n_test_before = math.floor(index * fraction)
        is_test = math.floor((index + 1) * fraction) > n_test_before
        split = "test" if is_test else "train"
        position = n_test_before if is_test else index - n_test_before
        pool = pools[split]
        code = int(is_test)
        plan.append({
            "index": index, "split": split,
            "clean": pool.files[_cycled(seed, code, _FILE, position, len(pool.files))],
            "noise": pool.noises[_cycled(seed, code, _NOISE, position, len(pool.noises))],
            "snr_db": snrs[_cycled(seed, code, _SNR, position, len(snrs))],
            "system": pool.systems[_cycled(seed, code, _SYSTEM, position, len(pool.systems))],
        })

    spectrum_cache: dict[str, np.ndarray] = {}

    def speech_shape() -> Callable[[np.ndarray], np.ndarray]:
        if speech_spectrum == "ltass":
            return lambda frequencies: np.sqrt(ltass_density(frequencies))
        if "clean" not in spectrum_cache:
            files = pools["train"].files
            chosen = [files[_cycled(seed, 0, 9, i, len(files))] for i in range(min(32, len(files)))]
            signals = []
            for source in chosen:
                try:
                    signals.append(_load(str(source.path), "clean speech"))
                except CorpusError:
                    if not skip_bad_files:
                        raise
            spectrum_cache["clean"] = average_speech_spectrum(signals)
        spectrum = spectrum_cache["clean"]
        grid = np.fft.rfftfreq(2 * (spectrum.size - 1), 1 / SAMPLING_RATE)
        return lambda frequencies: np.sqrt(np.interp(frequencies, grid, spectrum))

    context = dict(seed=seed, pools=pools, snr_mode=snr_mode, target_level_db=target_level_db,
                   level_jitter_db=level_jitter_db, babble_talkers=babble_talkers, max_duration_s=max_duration_s,
                   speech_shape=speech_shape, speech_spectrum=speech_spectrum)
    rows, written, reused = [], 0, 0
    used_systems: dict[str, str] = {}
    delays: dict[str, int] = {}
    for item in tqdm(plan, desc="Building corpus", unit="utt", disable=not progress):
        noise_type = "none" if math.isinf(item["snr_db"]) else item["noise"][0]
        item_id = (f"{item['index']:06d}_{_safe(item['clean'].speaker, 24)}_{_safe(noise_type)}"
                   f"_snr{item['snr_db']:g}_{item['system']}")
        folder = Path(item["split"])
        paths = {"path": folder / "noisy" / f"{item_id}.wav", "clean_path": folder / "clean" / f"{item_id}.wav",
                 "noise_path": folder / "noise" / f"{item_id}.wav" if save_noise else None}
        meta_path = output_dir / folder / "meta" / f"{item_id}.json"
        needed = [p for p in paths.values() if p is not None] + [meta_path.relative_to(output_dir)]
        if all((output_dir / p).is_file() for p in needed):
            meta = json.loads(meta_path.read_text())
            reused += 1
        else:
            try:
                audio, meta = _make_utterance(item, context)
            except CorpusError as error:
                if not skip_bad_files:
                    raise
                logger.warning("Skipped utterance %s: %s", item_id, error)
                bad_files.append(f"utterance {item_id}: {error}")
                continue
            for key, signal in audio.items():
                if paths[key] is not None:
                    _atomic_write_audio(output_dir / paths[key], signal)
            _atomic_write_text(meta_path, json.dumps(meta, sort_keys=True))  # last: marks the utterance complete
            written += 1
        if item["system"] != "none":
            used_systems[item["system"]] = system_status(item["system"]).backend
            key = f"{item['system']} {meta['system_params']}".strip()
            delays[key] = calibrate_delay(item["system"], meta["system_params"])
        rows.append({
            "path": paths["path"].as_posix(), "clean_path": paths["clean_path"].as_posix(),
            "noise_path": paths["noise_path"].as_posix() if save_noise else "", "split": item["split"],
            "snr_db": item["snr_db"], "noise_type": noise_type, "noise_source": meta["noise_source"],
            "system": item["system"], "system_kind": system_status(item["system"]).kind,
            "system_params": meta["system_params"], "speaker": item["clean"].speaker,
            "source_file": item["clean"].relative, "speech_level_db": meta["speech_level_db"],
            "duration_s": meta["duration_s"],
        })

    manifest = output_dir / "manifest.csv"
    _atomic_write_csv(manifest, rows)
    info = {
        "manifest": manifest.name, "utterances": len(rows),
        "splits": {split: sum(row["split"] == split for row in rows) for split in ("train", "test")},
        "systems_used": dict(sorted(used_systems.items())), "systems_unavailable": unavailable,
        "delays_removed_samples_16k": dict(sorted(delays.items())), "bad_files": bad_files,
        "snr_definition": ("active speech power (20 ms frames within 40 dB of the loudest) / whole-file noise power"
                           if snr_mode == "active" else "whole-file speech power / whole-file noise power"),
        "inputs": folders, "config": config,
    }
    _atomic_write_text(output_dir / "corpus_info.json", json.dumps(info, indent=2))
    return CorpusReport(manifest, rows, written, reused, dict(sorted(used_systems.items())), unavailable,
                        dict(sorted(delays.items())), bad_files)


def _check_or_write_config(output_dir: Path, config: dict[str, Any]) -> None:
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


def _make_utterance(item: dict[str, Any], context: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Generate one utterance: returns {"path": degraded, "clean_path": clean, "noise_path": noise} and metadata."""
    rng = np.random.default_rng([context["seed"], 1, item["index"]])
    source: AudioSource = item["clean"]
    clean = _load(str(source.path), "clean speech")
    if context["max_duration_s"] is not None:
        limit = int(context["max_duration_s"] * SAMPLING_RATE)
        if clean.size > limit:
            start = int(rng.integers(0, clean.size - limit + 1))
            clean = clean[start:start + limit]
    if clean.size < MIN_SAMPLES:
        raise CorpusError(f"The clean speech file {source.path} is too short ({clean.size / SAMPLING_RATE:.3f} s "
                          f"at 16 kHz; at least {MIN_SAMPLES / SAMPLING_RATE} s)")
    level_power = active_speech_power(clean)
    if level_power <= 0:
        raise CorpusError(f"The clean speech file {source.path} is silent")
    level_db = context["target_level_db"] + (rng.uniform(-1, 1) * context["level_jitter_db"]
                                             if context["level_jitter_db"] else 0.0)
    clean = clean * math.sqrt(10 ** (level_db / 10) / level_power)

    noise_name, noise_file = item["noise"]
    if math.isinf(item["snr_db"]):  # SNR inf: no noise (e.g. codec-only conditions, clean anchors)
        noise, noise_source = np.zeros(clean.size), ""
    else:
        noise, noise_source = _make_noise(noise_name, noise_file, clean.size, rng, item, context)
        noise_power = float(np.mean(noise**2))
        if noise_power <= 0:
            raise CorpusError(f"The noise {noise_source or noise_name} is silent")
        noise = noise * math.sqrt(speech_power(clean, context["snr_mode"])
                                  / (noise_power * 10 ** (item["snr_db"] / 10)))
    mix = clean + noise
    peak = max(np.max(np.abs(mix)), np.max(np.abs(clean)), np.max(np.abs(noise)))
    if peak > PEAK_LIMIT:  # one gain for all three keeps mix = clean + noise and the SNR
        gain = PEAK_LIMIT / peak
        clean, noise, mix = clean * gain, noise * gain, mix * gain
        level_db += 20 * math.log10(gain)

    system = item["system"]
    choices = SYSTEM_PARAMETERS[system]
    params = choices[int(rng.integers(0, len(choices)))]
    degraded = mix if system == "none" else apply_system(system, mix, noise, params)
    meta = {"noise_source": noise_source, "system_params": _params_key(params),
            "speech_level_db": round(level_db, 2), "duration_s": round(clean.size / SAMPLING_RATE, 6)}
    return {"path": degraded, "clean_path": clean, "noise_path": noise}, meta


def _make_noise(name: str, source: AudioSource | None, length: int, rng: np.random.Generator, item: dict[str, Any],
                context: dict[str, Any]) -> tuple[np.ndarray, str]:
    if source is not None:
        return _loop_segment(_load(str(source.path), "noise"), length, rng), source.relative
    if name == "white":
        return rng.standard_normal(length), "procedural"
    if name == "pink":
        return _shaped_noise(rng, length, _power_law(1.0)), "procedural"
    if name == "brown":
        return _shaped_noise(rng, length, _power_law(2.0)), "procedural"
    if name == "speech_shaped":
        spectrum = "LTASS" if context["speech_spectrum"] == "ltass" else "average clean spectrum"
        return _shaped_noise(rng, length, context["speech_shape"]()), f"procedural, {spectrum}"
    if name == "hum":
        mains = 50 if rng.random() < 0.5 else 60
        t = np.arange(length) / SAMPLING_RATE
        hum = np.zeros(length)
        for harmonic in range(1, int(2000 // mains) + 1):
            amplitude = (1.5 if harmonic % 2 else 1.0) / harmonic * rng.uniform(0.5, 1.5)
            hum += amplitude * np.sin(2 * np.pi * harmonic * mains * t + rng.uniform(0, 2 * np.pi))
        hum += 0.003 * rng.standard_normal(length)
        return hum, f"procedural {mains} Hz"
    if name == "babble":
        return _babble(length, rng, item, context)
    raise CorpusError(f"Unknown noise {name!r}")  # pragma: no cover


def _babble(length: int, rng: np.random.Generator, item: dict[str, Any],
            context: dict[str, Any]) -> tuple[np.ndarray, str]:
    """Sum of `babble_talkers` other utterances of the same split (other speakers first), each at unit active power."""
    target: AudioSource = item["clean"]
    files = context["pools"][item["split"]].files
    others = [s for s in files if s.speaker != target.speaker] or [s for s in files if s != target] or [target]
    chosen = [others[i] for i in rng.choice(len(others), size=context["babble_talkers"],
                                            replace=len(others) < context["babble_talkers"])]
    babble = np.zeros(length)
    for talker in chosen:
        segment = _loop_segment(_load(str(talker.path), "clean speech"), length, rng)
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


def _atomic_write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modeling_mtqnet.corpus",
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
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
        report = build_corpus(
            args.clean_dir, args.output_dir, noise_dir=args.noise_dir, noises=args.noises, snrs=args.snrs,
            count=args.count, seed=args.seed, systems=args.systems, test_noises=args.test_noises,
            test_systems=args.test_systems, test_fraction=args.test_fraction,
            test_seen_conditions=args.test_seen_conditions, snr_mode=args.snr_mode,
            target_level_db=args.target_level_db, level_jitter_db=args.level_jitter_db,
            babble_talkers=args.babble_talkers, speech_spectrum=args.speech_spectrum,
            max_duration_s=args.max_duration_s, speaker_pattern=args.speaker_pattern, save_noise=args.save_noise,
            skip_bad_files=args.skip_bad_files, progress=not args.no_progress)
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


if __name__ == "__main__":
    sys.exit(main())
