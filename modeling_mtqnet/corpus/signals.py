"""Signal measures and generators of the corpus builder: active speech level, frame powers and SNR; synthetic
speech; procedural noises (shaped, power-law, LTASS, average speech spectrum, mains hum); simulated room impulse
responses; looped segments and cross-correlation lag.

Numpy, and the model wing's active-level measure (`frame_powers`, `active_speech_power`: one definition for the
corpus's SNRs and the feature extractor's near-silence floor); imports nothing from the rest of the corpus wing. `CorpusError`, the error every corpus module raises,
lives here because this module is the bottom of their import chain.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np

from ..model.feature_extraction_mtqnet import ACTIVE_RANGE_DB, active_speech_power, frame_powers

SAMPLING_RATE = 16000
FRAME_SAMPLES = 320  # 20 ms frames for the active-speech measure (the default of `active_speech_power`)
PEAK_LIMIT = 0.99  # the corpus's peak ceiling: mixtures are scaled, and distortions' outputs kept, below it

# Long-term average speech spectrum, one-third-octave band levels (dB) for an overall level of 70 dB SPL, speech of
# male and female talkers combined; approximately Byrne et al. (1994), J. Acoust. Soc. Am. 96(4) 2108-2120.
LTASS_BANDS_HZ = (63, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630, 800, 1000, 1250, 1600, 2000, 2500, 3150,
                  4000, 5000, 6300, 8000)
LTASS_LEVELS_DB = (38.6, 43.5, 54.4, 57.7, 56.8, 58.2, 59.7, 60.0, 62.1, 62.1, 60.5, 56.8, 53.7, 53.0, 52.0, 48.7,
                   48.1, 46.8, 45.6, 44.5, 44.3, 43.7)


class CorpusError(ValueError):
    """A problem with the inputs or the output folder, worded for the user."""


# -- measures ------------------------------------------------------------------------------------------------------


def speech_power(signal: np.ndarray, snr_mode: str) -> float:
    """The speech power the SNR refers to: over active frames (`active`) or the whole file (`whole`)."""
    if snr_mode == "active":
        return active_speech_power(signal)
    return float(np.mean(np.asarray(signal, dtype=np.float64) ** 2))


def measure_snr(clean: np.ndarray, noise: np.ndarray, snr_mode: str = "active") -> float:
    """SNR in dB as the builder defines it (noise power always over the whole file)."""
    return 10 * math.log10(speech_power(clean, snr_mode) / float(np.mean(np.asarray(noise, np.float64) ** 2)))


def cross_correlation_lag(signal: np.ndarray, reference: np.ndarray, max_lag: int) -> int:
    """The lag (samples, positive = `signal` late) in [-max_lag, max_lag] that maximises the cross-correlation."""
    signal = np.asarray(signal, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    size = 1 << int(np.ceil(np.log2(signal.size + reference.size + 1)))
    correlation = np.fft.irfft(np.fft.rfft(signal, size) * np.conj(np.fft.rfft(reference, size)), size)
    lags = np.arange(-max_lag, max_lag + 1)
    return int(lags[np.argmax(correlation[lags % size])])


# -- synthetic speech ----------------------------------------------------------------------------------------------


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


# -- procedural noises ---------------------------------------------------------------------------------------------


def shaped_noise(rng: np.random.Generator, length: int, amplitude: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """White Gaussian noise (16 kHz) filtered in the frequency domain by `amplitude(frequencies_hz)`."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.fft.rfftfreq(length, 1 / SAMPLING_RATE)
    spectrum *= amplitude(frequencies)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n=length)


def power_law(exponent: float) -> Callable[[np.ndarray], np.ndarray]:
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


def mains_hum(length: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Mains hum (16 kHz): 50 or 60 Hz (drawn) with its harmonics up to 2 kHz, odd ones stronger, random amplitudes
    and phases, plus a little white noise; returns (hum, mains frequency in Hz)."""
    mains = 50 if rng.random() < 0.5 else 60
    t = np.arange(length) / SAMPLING_RATE
    hum = np.zeros(length)
    for harmonic in range(1, int(2000 // mains) + 1):
        amplitude = (1.5 if harmonic % 2 else 1.0) / harmonic * rng.uniform(0.5, 1.5)
        hum += amplitude * np.sin(2 * np.pi * harmonic * mains * t + rng.uniform(0, 2 * np.pi))
    hum += 0.003 * rng.standard_normal(length)
    return hum, mains


# -- room acoustics -----------------------------------------------------------------------------------------------

RIR_GAP_MS = (2.0, 5.0)  # range of the silent gap between the direct path and the first reflection
RIR_REFLECTIONS = 5  # discrete early reflections within 20 ms of the gap's end


def simulated_rir(rt60: float, drr_db: float, seed: int | Iterable[int], rate: int = SAMPLING_RATE) -> np.ndarray:
    """A room impulse response after Polack's statistical model, to convolve speech with (`rate` Hz).

    Sample 0 is the direct path (1.0), so a signal convolved with it keeps its alignment. After a silent gap of 2 to
    5 ms (drawn) come `RIR_REFLECTIONS` discrete early reflections (random signs, within 20 ms) and a tail of Gaussian
    noise whose energy decays exponentially by 60 dB in `rt60` seconds; the response ends where the decay reaches
    80 dB. Reflections and tail together (everything after sample 0) are scaled so that the direct-to-reverberant
    energy ratio is `drr_db`. The same (rt60, drr_db, seed) give the same response; `seed` seeds a numpy Generator
    (the gap, the reflections and the noise of one seed are the same whatever rt60 and drr_db: one "room").
    """
    if not rt60 > 0:
        raise CorpusError(f"rt60 must be positive, got {rt60}")
    rng = np.random.default_rng(seed)
    gap = max(1, round(rng.uniform(*RIR_GAP_MS) * 1e-3 * rate))
    length = gap + math.ceil(rt60 * 80 / 60 * rate)
    reflection_at = gap + rng.integers(0, int(0.02 * rate), size=RIR_REFLECTIONS)
    reflection_gain = rng.uniform(1.0, 3.0, size=RIR_REFLECTIONS) * rng.choice([-1.0, 1.0], size=RIR_REFLECTIONS)
    envelope = np.exp(-3 * math.log(10) * np.arange(length) / (rt60 * rate))  # amplitude: 60 dB energy in rt60
    response = rng.standard_normal(length) * envelope
    response[:gap] = 0.0
    np.add.at(response, reflection_at, reflection_gain * envelope[reflection_at])
    response *= math.sqrt(10 ** (-drr_db / 10) / float(np.sum(response**2)))  # the reverberant part
    response[0] = 1.0  # the direct path
    return response


def loop_segment(signal: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random `length`-sample segment of `signal`, looped (from a random start) when the signal is shorter."""
    if signal.size >= length:
        start = int(rng.integers(0, signal.size - length + 1))
        return signal[start:start + length]
    start = int(rng.integers(0, signal.size))
    return np.resize(np.roll(signal, -start), length)


__all__ = [
    "SAMPLING_RATE", "FRAME_SAMPLES", "ACTIVE_RANGE_DB", "LTASS_BANDS_HZ", "LTASS_LEVELS_DB", "CorpusError",
    "frame_powers", "active_speech_power", "speech_power", "measure_snr", "cross_correlation_lag",
    "synthetic_speech", "shaped_noise", "power_law", "ltass_density", "average_speech_spectrum", "mains_hum",
    "PEAK_LIMIT", "RIR_GAP_MS", "RIR_REFLECTIONS", "simulated_rir", "loop_segment",
]
