"""Intrusive labels for the teacher: PESQ, STOI and SDI of (degraded, clean) pairs.

- PESQ: ITU-T P.862.2 wide-band at 16 kHz, P.862 narrow-band at 8 kHz (the `pesq` package). Other rates are
  resampled to 16 kHz first.
- STOI: Taal et al. 2011 (the `pystoi` package).
- SDI (Chen, Benesty, Huang, Doclo 2006): E[(x - x̂)^2] / E[x^2] with x the clean and x̂ the degraded signal, computed
  after delay alignment (cross-correlation) with both scaled to zero mean and unit variance, so it is invariant to gain
  and delay: 0 = no distortion, 2 = uncorrelated, 4 = inverted.

Every pair gets a result: a problem (silence, PESQ's "no utterance detected", unreadable files...) gives NaN for the
affected metrics and a reason in the `error` column, never a crash halfway through a corpus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import signal

from ..model.feature_extraction_mtqnet import load_audio
from ..vocabulary import ERROR_COLUMN, PSEUDO_LABEL_TARGETS

#: The intrusive measures, named as the teacher's (MOSA-Net's) targets.
INTRUSIVE_COLUMNS = PSEUDO_LABEL_TARGETS
MAX_DELAY_S = 0.5


@dataclass
class IntrusiveScores:
    pesq: float = math.nan
    stoi: float = math.nan
    sdi: float = math.nan
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"pesq": self.pesq, "stoi": self.stoi, "sdi": self.sdi, ERROR_COLUMN: self.error}


def estimate_delay(degraded: np.ndarray, clean: np.ndarray, max_delay: int) -> int:
    """Samples by which `degraded` lags `clean` (negative: it leads), from the cross-correlation peak."""
    correlation = signal.correlate(degraded, clean, mode="full", method="fft")
    lags = signal.correlation_lags(degraded.size, clean.size, mode="full")
    window = np.abs(lags) <= max_delay
    return int(lags[window][np.argmax(correlation[window])])


def align(degraded: np.ndarray, clean: np.ndarray, max_delay: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove the delay between the two signals and trim both to their common length."""
    delay = estimate_delay(degraded, clean, max_delay)
    if delay > 0:
        degraded = degraded[delay:]
    elif delay < 0:
        clean = clean[-delay:]
    length = min(degraded.size, clean.size)
    return degraded[:length], clean[:length]


def sdi(degraded: np.ndarray, clean: np.ndarray) -> float:
    """Speech distortion index of already aligned signals, each scaled to zero mean and unit variance."""
    reference = (clean - clean.mean()) / clean.std()
    estimate = (degraded - degraded.mean()) / degraded.std()
    return float(np.mean((reference - estimate) ** 2) / np.mean(reference**2))


def intrusive_scores(degraded: Any, clean: Any, sampling_rate: int | None = None,
                     clean_sampling_rate: int | None = None) -> IntrusiveScores:
    """PESQ, STOI and SDI of one pair. Inputs: file paths, {"array", "sampling_rate"} dicts, or arrays with rates.

    Rates other than 8 or 16 kHz are resampled to 16 kHz; differing rates are brought to the same one; a delay of
    up to 0.5 s is removed; lengths are trimmed to the overlap.
    """
    try:
        native = (_native_rate(degraded, sampling_rate), _native_rate(clean, clean_sampling_rate or sampling_rate))
        rate = 8000 if native == (8000, 8000) else 16000  # narrow-band PESQ only when both are telephone-band
        degraded_wave = load_audio(degraded, sampling_rate, rate, name="degraded").astype(np.float64)
        clean_wave = load_audio(clean, clean_sampling_rate or sampling_rate, rate, name="clean").astype(np.float64)
    except Exception as problem:  # noqa: BLE001 - reported, not raised
        return IntrusiveScores(error=f"{type(problem).__name__}: {problem}")
    for name, wave in (("degraded", degraded_wave), ("clean", clean_wave)):
        if wave.size == 0 or not np.all(np.isfinite(wave)):
            return IntrusiveScores(error=f"{name} signal is empty or has NaN/Inf samples")
        if not np.any(wave):
            return IntrusiveScores(error=f"{name} signal is silent")
    degraded_wave, clean_wave = align(degraded_wave, clean_wave, int(MAX_DELAY_S * rate))
    if degraded_wave.size < rate // 4:
        return IntrusiveScores(error=f"overlap of the aligned signals is too short ({degraded_wave.size} samples)")
    scores, problems = IntrusiveScores(), []
    scores.sdi = sdi(degraded_wave, clean_wave)
    try:
        from pystoi import stoi

        scores.stoi = float(stoi(clean_wave, degraded_wave, rate, extended=False))
    except Exception as problem:  # noqa: BLE001
        problems.append(f"STOI: {problem}")
    try:
        from pesq import pesq

        scores.pesq = float(pesq(rate, clean_wave, degraded_wave, "wb" if rate == 16000 else "nb"))
    except Exception as problem:  # noqa: BLE001 - e.g. pesq.NoUtterancesError
        problems.append(f"PESQ: {type(problem).__name__}: {problem}")
    scores.error = "; ".join(problems)
    return scores


def _native_rate(value: Any, given: int | None) -> int | None:
    if isinstance(value, dict):
        return value.get("sampling_rate", given)
    if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
        import soundfile

        try:
            return int(soundfile.info(value).samplerate)
        except Exception:  # noqa: BLE001 - reading reports it properly
            return given
    return given


def add_intrusive_labels(dataset, audio_column: str, clean_column: str, num_proc: int | None = None):
    """Add `pesq`, `stoi`, `sdi` and `error` columns to a `datasets.Dataset` of (degraded, clean) pairs."""
    import datasets

    for column in (audio_column, clean_column):
        if column not in dataset.column_names:
            raise ValueError(f"Column {column!r} not found; the columns are {dataset.column_names}")
        if isinstance(dataset.features[column], datasets.Audio):
            dataset = dataset.cast_column(column, datasets.Audio(decode=False))

    def score(example: dict) -> dict:
        degraded, clean = (decodable_audio(example[audio_column]), decodable_audio(example[clean_column]))
        return intrusive_scores(degraded, clean).as_dict()

    return dataset.map(score, num_proc=num_proc, desc="PESQ / STOI / SDI")


def decodable_audio(value: Any) -> Any:
    """A path string, or an undecoded `Audio` value ({"path", "bytes"}) turned into something `load_audio` reads."""
    if isinstance(value, dict) and value.get("bytes") is not None:
        import io

        import soundfile

        samples, rate = soundfile.read(io.BytesIO(value["bytes"]), dtype="float32")
        return {"array": samples, "sampling_rate": rate}
    if isinstance(value, dict) and value.get("path"):
        return value["path"]
    return value


__all__ = ["intrusive_scores", "add_intrusive_labels", "sdi", "align", "estimate_delay", "decodable_audio",
           "INTRUSIVE_COLUMNS"]
