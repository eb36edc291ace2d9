"""Enhancement systems, codecs and distortions of the corpus builder: which can run here (`system_status`), and
`apply_system`, which passes a 16 kHz mixture through one and returns output aligned with its input and of the same
length.

In process: noisereduce, RNNoise (pyrnnoise's library through ctypes), and the distortions (numpy / scipy): reverb
(a simulated room impulse response, `signals.simulated_rir`), bandlimit (zero-phase Butterworth filters), clipping
and packet_loss (20 ms frames dropped by a two-state Gilbert model). Command line: SoX noisered, FFmpeg afftdn, Opus,
GSM and MP3 round trips (FFmpeg, SoX, opus-tools or LAME, whichever is installed). A command-line system's delay is
measured once per process on a synthetic probe (`calibrate_delay`); in-process systems have none. Every system but
the distortions is optional; the distortions are deterministic for their parameters (`room` and `pattern` seed
their randomness).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..model.feature_extraction_mtqnet import load_audio
from .signals import (
    PEAK_LIMIT, SAMPLING_RATE, CorpusError, active_speech_power, cross_correlation_lag, simulated_rir, synthetic_speech,
)

ENHANCERS = ("noisereduce", "sox_noisered", "ffmpeg_afftdn", "rnnoise")
CODECS = ("opus", "gsm", "mp3")
DISTORTIONS = ("reverb", "bandlimit", "clipping", "packet_loss")
# New systems go at the end: the builder's pools keep this order, and corpora drawn from them must not change.
SYSTEMS = ("none",) + ENHANCERS + CODECS + DISTORTIONS

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
    # Distortions: `room` seeds the simulated room response, `pattern` the packet-loss pattern.
    "reverb": [{"rt60": rt60, "drr_db": drr_db, "room": room}
               for rt60 in (0.3, 0.5, 0.8, 1.2) for drr_db in (0, 6) for room in range(4)],
    "bandlimit": [{"low_hz": 300, "high_hz": 3400}, {"high_hz": 4000}, {"high_hz": 5500}, {"high_hz": 7000}],
    "clipping": [{"clip_db": 3}, {"clip_db": 6}, {"clip_db": 10}, {"clip_db": 15}],
    "packet_loss": [{"loss_rate": loss_rate, "pattern": pattern}
                    for loss_rate in (0.02, 0.05, 0.1, 0.2) for pattern in range(4)],
}

# ----------------------------------------------------------------------------------------------------------------
# Tools and packages
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
    """Whether a system can run here (see `system_status`)."""

    name: str
    kind: str  # none / enhancement / codec / distortion
    available: bool
    backend: str  # the tool or package that runs it, with its version; or why it is unavailable


@functools.lru_cache(maxsize=None)
def system_status(name: str) -> SystemStatus:
    """Whether `name` can run here, with which backend (and version) or why not."""
    kind = ("none" if name == "none" else "enhancement" if name in ENHANCERS else
            "distortion" if name in DISTORTIONS else "codec")

    def status(available: bool, backend: str) -> SystemStatus:
        return SystemStatus(name, kind, available, backend)

    if name == "none":
        return status(True, "")
    if name in ("reverb", "bandlimit"):
        if importlib.util.find_spec("scipy") is None:
            return status(False, "the scipy package is not installed (pip install scipy)")
        return status(True, f"scipy {_package_version('scipy')} (in process)")
    if name in ("clipping", "packet_loss"):
        return status(True, f"numpy {np.__version__} (in process)")
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


# -- distortions ---------------------------------------------------------------------------------------------------

BANDLIMIT_ORDER = 8  # Butterworth order of the low-pass (the band-pass: 4, i.e. 8 poles), applied forward and back
PACKET_SAMPLES = 320  # 20 ms frames
PACKET_FADE = 32  # 2 ms linear fades inside a gap, at each edge that touches kept audio
PACKET_BURST_FRAMES = 2.0  # mean length of a loss burst (frames) of the Gilbert model
_PACKET_SEED = 0x5041434B  # with `pattern`, the seed of a loss pattern


def _reverb(mix: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Convolution with `simulated_rir(rt60, drr_db, seed=room)`, cut to the input's length (the direct path is
    sample 0: no delay)."""
    from scipy.signal import fftconvolve

    return fftconvolve(mix, simulated_rir(params["rt60"], params["drr_db"], params["room"]))[: mix.size]


def _bandlimit(mix: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Zero-phase Butterworth filtering (`sosfiltfilt`): a low-pass at `high_hz`, or a band-pass `low_hz`-`high_hz`."""
    from scipy.signal import butter, sosfiltfilt

    if params.get("low_hz"):
        sos = butter(BANDLIMIT_ORDER // 2, [params["low_hz"], params["high_hz"]], btype="bandpass", fs=SAMPLING_RATE,
                     output="sos")
    else:
        sos = butter(BANDLIMIT_ORDER, params["high_hz"], btype="lowpass", fs=SAMPLING_RATE, output="sos")
    return sosfiltfilt(sos, mix)


def _clipping(mix: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Hard clipping `clip_db` dB below the signal's peak; no gain change (samples below the threshold are kept)."""
    threshold = float(np.max(np.abs(mix), initial=0.0)) * 10 ** (-params["clip_db"] / 20)
    return np.clip(mix, -threshold, threshold)


def lost_frames(frames: int, loss_rate: float, pattern: int) -> np.ndarray:
    """Which of `frames` packets a two-state Gilbert model loses (bool per frame): every frame of the bad state is
    lost, bursts last `PACKET_BURST_FRAMES` frames on average and the long-run loss rate is `loss_rate`. The first
    state is drawn from the stationary distribution; `pattern` seeds the draws (the same pattern at another rate
    gives nested losses)."""
    leave_bad = 1.0 / PACKET_BURST_FRAMES
    enter_bad = loss_rate * leave_bad / (1.0 - loss_rate) if loss_rate < 1 else math.inf
    if not 0.0 <= enter_bad <= 1.0:
        raise CorpusError(f"loss_rate must be in [0, {1 / (1 + leave_bad):.3g}], got {loss_rate}")
    draws = np.random.default_rng([_PACKET_SEED, pattern]).random(frames)
    lost = np.zeros(frames, dtype=bool)
    bad = False
    for index, draw in enumerate(draws):
        bad = (draw < loss_rate) if index == 0 else (draw >= leave_bad) if bad else (draw < enter_bad)
        lost[index] = bad
    return lost


def _packet_loss(mix: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Lost 20 ms frames (`lost_frames`) zero-filled; a gap fades the signal out over its first 2 ms and in over its
    last 2 ms where it touches kept audio, so the kept frames are untouched and the gaps do not click."""
    lost = lost_frames(-(-mix.size // PACKET_SAMPLES), params["loss_rate"], params["pattern"])
    edges = np.diff(np.concatenate([[0], lost.astype(np.int8), [0]]))
    output = mix.copy()
    fade_in = (np.arange(PACKET_FADE) + 0.5) / PACKET_FADE
    for start, end in zip(np.flatnonzero(edges == 1) * PACKET_SAMPLES, np.flatnonzero(edges == -1) * PACKET_SAMPLES):
        end = min(end, mix.size)
        output[start:end] = 0.0
        fade = min(PACKET_FADE, end - start)
        if start > 0:
            output[start:start + fade] = mix[start:start + fade] * fade_in[::-1][:fade]
        if end < mix.size:
            output[end - fade:end] = mix[end - fade:end] * fade_in[PACKET_FADE - fade:]
    return output


def _distortion(name: str, mix: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """A distortion's output, of the input's length and aligned with it. Reverb and filters can raise the peak: their
    output is scaled down (one gain) when its peak would pass `PEAK_LIMIT`, so no 16-bit file clips unasked."""
    if name == "clipping":
        return _clipping(mix, params)
    if name == "packet_loss":
        return _packet_loss(mix, params)
    output = _reverb(mix, params) if name == "reverb" else _bandlimit(mix, params)
    peak = float(np.max(np.abs(output), initial=0.0))
    return output * (PEAK_LIMIT / peak) if peak > PEAK_LIMIT else output


TAIL_PADDING = 4000  # 0.25 s of silence appended before processing, so no system's delay or block size cuts the end
# Exact: zero-phase STFT (noisereduce), RNNoise's lag removed, distortions aligned by construction.
IN_PROCESS_DELAYS = {"none": 0, "noisereduce": 0, "rnnoise": 0, **{name: 0 for name in DISTORTIONS}}


def _raw_system_output(name: str, mix: np.ndarray, noise: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    if name in DISTORTIONS:  # no delay and no block size: nothing to pad
        return _distortion(name, mix, params)
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


def params_key(params: dict[str, Any]) -> str:
    """Parameters as the manifest's `system_params` cell: `key=value` pairs sorted by key, space-separated."""
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
    delay = calibrate_delay(name, params_key(params))
    return _shift_and_fit(_raw_system_output(name, mix, np.asarray(noise, np.float64), params), delay, mix.size)


__all__ = [
    "ENHANCERS", "CODECS", "DISTORTIONS", "SYSTEMS", "SYSTEM_PARAMETERS", "SystemStatus", "system_status",
    "RNNOISE_RATE", "RNNOISE_FRAME", "RNNOISE_DELAY", "BANDLIMIT_ORDER", "PACKET_SAMPLES", "PACKET_FADE",
    "PACKET_BURST_FRAMES", "lost_frames", "TAIL_PADDING", "IN_PROCESS_DELAYS", "params_key", "calibrate_delay",
    "apply_system",
]
