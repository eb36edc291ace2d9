"""Frame-level score curves over a clip's waveform and spectrogram (`mtqnet score --plot_dir`, the web app, the
demo's frame demo), drawn from a `SignalSketch` gathered block by block, so that neither memory nor time grows with
the clip's length beyond one pass."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..model.feature_extraction_mtqnet import stream_audio
from ..training.reporting import agg_pyplot
from ..vocabulary import display_name

# What a plot can show, however long the clip: the figure is about 800 pixels wide, so the spectrogram and the frame
# curves are drawn in at most 2 * PLOT_COLUMNS columns, the waveform's envelope in 4 * PLOT_COLUMNS (a 2-hour clip at
# 16 kHz has 115 million samples and 450,000 spectrogram frames: drawn whole, its spectrogram alone took gigabytes).
PLOT_COLUMNS = 1024
SPECTROGRAM_FFT = 512  # 32 ms frames at 16 kHz, half overlapping: what the plots always drew (matplotlib's specgram)
SKETCH_BLOCK_S = 10.0  # an in-memory waveform is sketched in blocks of this length, as a file is read
WINDOW_LINES_DRAWN = 60  # a windowed file's window starts are marked when there are at most this many


class BinnedColumns:
    """Rows (samples, frames, points) folded into at most 2 * `columns` columns of `span` consecutive rows each.

    `fold` reduces an array (groups, rows, *feature) over its rows axis (min, max, sum: associative). When the
    columns fill up, neighbours merge and `span` doubles, so memory stays that of 2 * `columns` rows however many
    are added, and the total need not be known in advance (a file's header can be wrong; a stream has none).
    """

    def __init__(self, columns: int, fold: Callable[[np.ndarray], np.ndarray]):
        self.columns, self.fold, self.span, self.rows = columns, fold, 1, 0
        self.closed: np.ndarray | None = None  # (n, *feature): columns of exactly `span` rows
        self.open: np.ndarray | None = None  # the fold of the last column's rows so far (fewer than `span`)
        self.open_rows = 0

    def _join(self, first: np.ndarray | None, second: np.ndarray) -> np.ndarray:
        return second if first is None else self.fold(np.stack([first, second])[None])[0]

    def add(self, rows: np.ndarray) -> None:
        """Append rows (shape (count, *feature)), in order."""
        self.rows += len(rows)
        if self.open_rows:  # first fill the open column
            take = min(self.span - self.open_rows, len(rows))
            if take:
                self.open = self._join(self.open, self.fold(rows[None, :take])[0])
                self.open_rows, rows = self.open_rows + take, rows[take:]
            if self.open_rows < self.span:
                return
            full, self.open, self.open_rows = self.open, None, 0
            self._close(full[None])
        whole = len(rows) // self.span * self.span
        if whole:
            self._close(self.fold(rows[:whole].reshape(-1, self.span, *rows.shape[1:])))
        if whole < len(rows):
            self.open = self._join(self.open, self.fold(rows[None, whole:])[0])
            self.open_rows += len(rows) - whole

    def _close(self, columns: np.ndarray) -> None:
        self.closed = columns if self.closed is None else np.concatenate([self.closed, columns])
        while len(self.closed) >= 2 * self.columns:
            if len(self.closed) % 2:  # the odd last column opens the next, wider one (before any open rows)
                last, self.closed = self.closed[-1], self.closed[:-1]
                self.open = last if self.open is None else self._join(last, self.open)
                self.open_rows += self.span
            self.closed = self.fold(self.closed.reshape(-1, 2, *self.closed.shape[1:]))
            self.span *= 2

    def values(self) -> np.ndarray:
        """Every column's fold, the open one last: (columns, *feature)."""
        parts = ([] if self.closed is None else [self.closed]) + ([] if self.open is None else [self.open[None]])
        return np.concatenate(parts) if parts else np.zeros((0,))

    def counts(self) -> np.ndarray:
        """Rows per column (`span`, the open one fewer), to turn sums into means."""
        closed = 0 if self.closed is None else len(self.closed)
        return np.array([self.span] * closed + ([self.open_rows] if self.open is not None else []), np.float64)


def _min_max(groups: np.ndarray) -> np.ndarray:
    return np.stack([groups[..., 0].min(axis=1), groups[..., 1].max(axis=1)], axis=-1)


def _sum(groups: np.ndarray) -> np.ndarray:
    return groups.sum(axis=1)


class SignalSketch:
    """What the plots draw of a signal, gathered block by block in bounded memory: its min / max envelope and its
    power spectrogram (Hann-windowed `SPECTROGRAM_FFT`-sample frames, half overlapping), in at most 4 * `columns`
    and 2 * `columns` columns whatever the length (a column of a long clip holds the mean power of its frames)."""

    def __init__(self, rate: int, columns: int = PLOT_COLUMNS, fft: int = SPECTROGRAM_FFT):
        self.rate, self.fft, self.hop = rate, fft, fft // 2
        self.window = np.hanning(fft)
        self.envelope = BinnedColumns(2 * columns, _min_max)  # rows: (sample, sample) -> (lowest, highest)
        self.spectrum = BinnedColumns(columns, _sum)  # rows: one frame's power per frequency bin
        self.samples = 0
        self._rest = np.zeros(0, np.float32)  # samples not yet in a whole frame (the next frame starts there)

    @classmethod
    def of(cls, waveform: np.ndarray, rate: int, **kwargs: Any) -> "SignalSketch":
        """The sketch of an in-memory waveform, added in blocks (its frames never all in memory at once)."""
        sketch, block = cls(rate, **kwargs), max(1, int(SKETCH_BLOCK_S * rate))
        for start in range(0, max(1, waveform.size), block):
            sketch.add(waveform[start : start + block])
        return sketch

    @classmethod
    def of_file(cls, path: str | os.PathLike, rate: int, **kwargs: Any) -> "SignalSketch":
        """The sketch of an audio file at `rate`, read block by block (`stream_audio`), never whole."""
        sketch = cls(rate, **kwargs)
        for block in stream_audio(path, rate):
            sketch.add(block)
        return sketch

    @property
    def duration_s(self) -> float:
        return self.samples / self.rate

    def add(self, block: np.ndarray) -> None:
        """Append a block of mono samples."""
        block = np.asarray(block, np.float32).reshape(-1)
        self.samples += block.size
        self.envelope.add(np.stack([block, block], axis=1))
        joined = np.concatenate([self._rest, block])
        frames = (joined.size - self.fft) // self.hop + 1 if joined.size >= self.fft else 0
        if frames:
            windows = np.lib.stride_tricks.sliding_window_view(joined, self.fft)[:: self.hop][:frames]
            self.spectrum.add(np.abs(np.fft.rfft(windows * self.window, axis=1)) ** 2)
        self._rest = joined[frames * self.hop :]

    def envelope_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start time of each column in seconds, lowest sample, highest sample)."""
        values = self.envelope.values().reshape(-1, 2)
        return np.arange(len(values)) * self.envelope.span / self.rate, values[:, 0], values[:, 1]

    def spectrogram_db(self) -> np.ndarray | None:
        """(frequency bins, columns): mean power spectral density per column in dB (zero power: 200 dB below the
        loudest column), None for a clip shorter than one frame."""
        sums = self.spectrum.values()
        if not self.spectrum.rows:
            return None
        density = sums / self.spectrum.counts()[:, None] / (self.rate * float(np.sum(self.window**2)))
        density[:, 1:-1] *= 2  # one-sided: each bin but DC and Nyquist holds its negative frequency too
        peak = float(density.max())
        return 10 * np.log10(np.maximum(density, peak * 1e-20 if peak > 0 else 1e-30)).T


def mean_columns(times: np.ndarray, values: np.ndarray, columns: int = PLOT_COLUMNS) -> tuple[np.ndarray, np.ndarray]:
    """A curve of many points, `values` (points, K) over `times`, as at most 2 * `columns` column means."""
    if len(times) < 2 * columns:
        return times, values
    binned = BinnedColumns(columns, _sum)
    binned.add(np.column_stack([times, values]))
    means = binned.values() / binned.counts()[:, None]
    return means[:, 0], means[:, 1:]


def plot_frame_curve(png: Path, title: str, result: dict[str, Any], waveform: np.ndarray | SignalSketch, rate: int,
                     names: Sequence[str], spectrogram: bool = False,
                     segments: Sequence[tuple[float, str]] = ()) -> Path:
    """Frame-level score curves over time (the pipeline's `frame_scores` / `frame_times`), the waveform beneath,
    optionally its spectrogram, and optional labelled segment starts `(seconds, label)` drawn on every panel.

    `waveform` is the signal at `rate`, or its `SignalSketch` (a long file, read block by block): either way the
    picture is drawn from a sketch, so its memory and time do not grow with the clip's length beyond one pass."""
    sketch = waveform if isinstance(waveform, SignalSketch) else SignalSketch.of(np.asarray(waveform), rate)
    plt = agg_pyplot()
    rows = 3 if spectrogram else 2
    figure, axes = plt.subplots(rows, 1, figsize=(9, 2.2 + 1.6 * rows), dpi=90, sharex=True,
                                gridspec_kw={"height_ratios": [2, 1, 1.5][:rows]})
    curves, wave = axes[0], axes[1]
    times, scores = mean_columns(np.asarray(result["frame_times"], np.float64),
                                 np.column_stack([np.asarray(result["frame_scores"][name], np.float64)
                                                  for name in names]))
    for k, name in enumerate(names):
        curves.plot(times, scores[:, k], linewidth=1, label=f"{display_name(name)} {result[name]:.2f}")
    starts = [chunk["start_s"] for chunk in result.get("chunks") or []]
    if 0 < len(starts) <= WINDOW_LINES_DRAWN:  # more would grey the panel over (a 2-hour file has 864 windows)
        curves.vlines(starts, 0, 1, transform=curves.get_xaxis_transform(), color="grey", linewidth=0.5, alpha=0.5)
    curves.set_ylabel("frame score")
    curves.legend(loc="upper right", fontsize=8, ncol=len(names))
    curves.set_title(title if len(title) <= 100 else "..." + title[-97:], fontsize=9)
    columns, lowest, highest = sketch.envelope_columns()
    wave.fill_between(columns, lowest, highest, step="post", color="black", linewidth=0.4)
    wave.set_ylabel("waveform")
    if spectrogram:
        power_db = sketch.spectrogram_db()
        if power_db is not None:
            floor = max(float(power_db.min()), float(power_db.max()) - 120.0)  # silence is drawn as the floor
            axes[2].imshow(power_db, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                           vmin=floor, extent=(0.0, sketch.duration_s, 0.0, rate / 2))
        axes[2].set_ylabel("Hz")
    for start, label in segments:
        for axis in axes:
            axis.axvline(start, color="tab:red", linewidth=0.8, alpha=0.7)
        curves.text(start, curves.get_ylim()[0], f" {label}", fontsize=7, va="bottom", color="tab:red")
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0.0, max(sketch.duration_s, float(times[-1]) if len(times) else 0.0) or 1.0)
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png)
    plt.close(figure)
    return png

