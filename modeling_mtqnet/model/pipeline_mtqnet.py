"""The `speech-quality-assessment` pipeline: named utterance scores, frame-level curves, and windowed long audio."""

from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from transformers.pipelines.base import ChunkPipeline

from .feature_extraction_mtqnet import AudioScan, active_level_db, audio_file_duration, load_audio, stream_audio

SECTION_SPECTRAL = 0
# Without `chunk_length_s`, audio longer than AUTO_CHUNK_ABOVE_S (or than the model's one-pass limit) is scored in
# windows of AUTO_CHUNK_LENGTH_S: memory then stays that of one window, however long the audio (the result's `chunks`
# says it was windowed). A file path is also read in blocks, never whole.
AUTO_CHUNK_ABOVE_S = 30.0
AUTO_CHUNK_LENGTH_S = 10.0
# Files longer than this are read in blocks (twice: checks, then windows); shorter ones are read once, whole.
STREAM_ABOVE_S = 60.0


def frame_score_curve(
    frame_scores: np.ndarray, frame_mask: np.ndarray, frame_times: np.ndarray, frame_sections: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One clip's frame scores as a single curve over time: (times (T,), scores (T, K)).

    With "aligned" fusion that is just the valid frames. With "time" fusion the frames form up to three sections
    (spectral, sinc, SSL) that each span the whole clip; every section is interpolated onto the spectral frame times
    and the sections are averaged, so the curve reads left to right like the audio.
    """
    frame_mask = frame_mask.astype(bool)
    scores, times, sections = frame_scores[frame_mask], frame_times[frame_mask], frame_sections[frame_mask]
    grid = times[sections == SECTION_SPECTRAL]
    section_ids = np.unique(sections)
    if len(section_ids) == 1:
        return grid, scores
    curves = []
    for section in section_ids:
        in_section = sections == section
        curves.append(
            np.stack([np.interp(grid, times[in_section], scores[in_section, k]) for k in range(scores.shape[1])], -1)
        )
    return grid, np.mean(curves, axis=0)


def window_has_signal(samples: np.ndarray, min_level_db: float | None, sampling_rate: int) -> bool:
    """Whether a window holds something to rate: not all zeros, and (with a floor) an active level above it."""
    if not np.any(samples):
        return False
    return min_level_db is None or active_level_db(samples, sampling_rate) >= min_level_db


def stream_windows(path: str | os.PathLike, sampling_rate: int, starts: Sequence[int],
                   window: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, samples) of each window of a file, reading it block by block (`stream_audio`): at most one window
    and one block are held, however long the file. `starts` must ascend."""
    blocks = stream_audio(path, sampling_rate)
    buffer, offset, exhausted = np.zeros(0, np.float32), 0, False
    for start in starts:
        if start > offset:  # nothing before this window is needed again
            buffer, offset = buffer[min(start - offset, buffer.size):], start
        while offset + buffer.size < start + window and not exhausted:
            block = next(blocks, None)
            if block is None:
                exhausted = True
            else:
                buffer = np.concatenate([buffer, block])
        yield start, buffer[start - offset : start + window - offset]


def window_starts(num_samples: int, window: int, step: int) -> list[int]:
    """Start samples of overlapping windows covering the clip; the last window ends exactly at the clip's end."""
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window, step))
    last = num_samples - window
    # A regular window that starts just before the final one would count the end twice: move it instead, as long
    # as the windows still touch.
    if len(starts) > 1 and last - starts[-1] < step / 2 and last - starts[-2] <= window:
        starts[-1] = last
        return starts
    return starts + [last]


class SpeechQualityAssessmentPipeline(ChunkPipeline):
    """Scores speech quality without a reference.

    Inputs: file paths (read with soundfile; no ffmpeg needed), arrays or tensors with `sampling_rate=`, dicts with
    `"array"` (or `"raw"`) and `"sampling_rate"`, or a list of these (use `batch_size=` to batch).

    Returns per input a dict: each primary target's utterance score by name (e.g. `s_mos`, `n_mos`, `g_mos`),
    `frame_scores` (name -> list of per-frame scores), `frame_times` (seconds), and `chunks` (one dict per window with
    `start_s`, `end_s` and its scores) when `chunk_length_s` is set.

    Args (call time):
        chunk_length_s: score long audio in windows of this many seconds, one window (or one batch of windows) in
            memory at a time. The file's score is the mean of the window scores; frame curves are averaged where
            windows overlap. Default (None): audio longer than 30 s is windowed at 10 s, shorter audio is scored in
            one pass; 0: always one pass (up to the feature extractor's `max_duration_s`).
        stride_length_s: overlap between consecutive windows, in seconds (default: a sixth of `chunk_length_s`).
        sampling_rate: rate of array inputs.
    """

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any):
        # A flat list of numbers is one clip (with `sampling_rate=`), not a batch of numbers.
        if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], (int, float, np.number)) \
                and not isinstance(inputs[0], bool):
            inputs = np.asarray(inputs, dtype=np.float32)
        return super().__call__(inputs, *args, **kwargs)

    # Audio only: no tokenizer to look for (looking would prompt about remote code for a saved folder).
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def _sanitize_parameters(
        self, chunk_length_s: float | None = None, stride_length_s: float | None = None,
        sampling_rate: int | None = None, **kwargs: Any,
    ):
        preprocess_params: dict[str, Any] = {"sampling_rate": sampling_rate}
        if chunk_length_s == 0:
            preprocess_params["chunk_length_s"] = 0.0
        elif chunk_length_s is not None:
            if chunk_length_s < 0:
                raise ValueError(f"chunk_length_s must be positive (or 0 for one pass), got {chunk_length_s}")
            stride_length_s = chunk_length_s / 6 if stride_length_s is None else stride_length_s
            if not 0 <= stride_length_s < chunk_length_s:
                raise ValueError(f"stride_length_s must be in [0, chunk_length_s), got {stride_length_s}")
            preprocess_params.update(chunk_length_s=chunk_length_s, stride_length_s=stride_length_s)
        return preprocess_params, {}, {}

    def one_pass_limit_s(self) -> float:
        """Longest audio scored in one pass: the model's bounded-memory limit, or the feature extractor's if lower."""
        limit = getattr(self.model.config, "one_pass_limit_s", None) or float("inf")
        if self.feature_extractor.max_duration_s is not None:
            limit = min(limit, float(self.feature_extractor.max_duration_s))
        return limit

    def preprocess(
        self, inputs: Any, sampling_rate: int | None = None, chunk_length_s: float | None = None,
        stride_length_s: float = 0.0,
    ):
        extractor = self.feature_extractor
        rate = extractor.sampling_rate
        name = os.fspath(inputs) if isinstance(inputs, (str, os.PathLike)) else "audio"
        duration = audio_file_duration(inputs) if isinstance(inputs, (str, os.PathLike)) else None
        is_file = duration is not None and duration > STREAM_ABOVE_S
        scan = AudioScan(rate)
        if is_file:  # a long file: read twice in blocks (checks and length, then windows) rather than once whole
            for block in stream_audio(inputs, rate):
                scan.add(block)
        else:
            samples = load_audio(inputs, sampling_rate, rate, name=name)
            scan.add(samples)
        limit = self.one_pass_limit_s()
        if chunk_length_s and chunk_length_s > limit:
            raise ValueError(f"chunk_length_s {chunk_length_s:g} is longer than this model scores in one pass in "
                             f"bounded memory ({limit:g} s); choose a shorter window")
        if chunk_length_s is None and scan.size > min(AUTO_CHUNK_ABOVE_S, limit) * rate:
            chunk_length_s = min(AUTO_CHUNK_LENGTH_S, limit)
            stride_length_s = chunk_length_s / 6
        if not chunk_length_s:
            starts, window, max_samples = [0], scan.size, int(limit * rate) if limit != float("inf") else None
        else:
            window = int(round(chunk_length_s * rate))
            starts = window_starts(scan.size, window, max(1, window - int(round(stride_length_s * rate))))
            max_samples = None
        floor = getattr(extractor, "min_level_db", None)
        scan.check(extractor.min_samples, max_samples, name=name, min_level_db=floor)
        windows = stream_windows(inputs, rate, starts, window) if is_file else \
            ((start, samples[start : start + window]) for start in starts)
        # A silent window (a pause in a long recording) has nothing to rate: skip it rather than fail the file. The
        # window before is yielded once the next one is known, so that the last one can say so.
        pending = None
        for start, chunk in windows:
            if not window_has_signal(chunk, floor, rate):
                continue
            if pending is not None:
                yield self._window_inputs(*pending, total=scan.size, is_last=False)
            pending = (start, chunk)
        if pending is None:
            raise ValueError(f"{name}: every window is silent or below the level floor ({floor} dBFS)")
        yield self._window_inputs(*pending, total=scan.size, is_last=True)

    def _window_inputs(self, start: int, chunk: np.ndarray, total: int, is_last: bool) -> dict[str, Any]:
        features = self.feature_extractor(chunk, sampling_rate=self.feature_extractor.sampling_rate,
                                          return_tensors="pt")
        return {**features, "is_last": is_last, "chunk_start": start, "chunk_samples": chunk.size,
                "total_samples": total}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        metadata = {key: model_inputs.pop(key) for key in ("is_last", "chunk_start", "chunk_samples", "total_samples")}
        outputs = self.model(input_values=model_inputs["input_values"], attention_mask=model_inputs["attention_mask"])
        return {
            "logits": outputs.logits,
            "frame_scores": outputs.frame_scores,
            "frame_mask": outputs.frame_mask,
            "frame_times": outputs.frame_times,
            "frame_sections": outputs.frame_sections,
            **metadata,
        }

    def postprocess(self, model_outputs: list[dict[str, Any]]) -> dict[str, Any]:
        names = list(self.model.config.target_names)
        rate = self.feature_extractor.sampling_rate
        hop = self.model.config.hop_length
        total = int(_scalar(model_outputs[0]["total_samples"]))
        grid = np.arange(1 + total // hop) * hop / rate
        curve_sum, curve_count = np.zeros((grid.size, len(names))), np.zeros(grid.size)
        chunks, chunk_scores = [], []
        for output in model_outputs:
            start_s = _scalar(output["chunk_start"]) / rate
            end_s = start_s + _scalar(output["chunk_samples"]) / rate
            times, curve = frame_score_curve(*(_numpy(output[key])[0] for key in
                                               ("frame_scores", "frame_mask", "frame_times", "frame_sections")))
            inside = (grid >= start_s + times[0] - 1e-9) & (grid <= start_s + times[-1] + 1e-9)
            for k in range(len(names)):
                curve_sum[inside, k] += np.interp(grid[inside], start_s + times, curve[:, k])
            curve_count[inside] += 1
            scores = _numpy(output["logits"])[0]
            chunk_scores.append(scores)
            chunks.append({"start_s": start_s, "end_s": end_s, **dict(zip(names, scores.tolist()))})
        covered = curve_count > 0
        curve = curve_sum[covered] / curve_count[covered, None]
        result: dict[str, Any] = dict(zip(names, np.mean(chunk_scores, axis=0).tolist()))
        result["frame_scores"] = {name: curve[:, k].tolist() for k, name in enumerate(names)}
        result["frame_times"] = grid[covered].tolist()
        if len(chunks) > 1 or chunks[0]["end_s"] * rate < total:
            result["chunks"] = chunks
        return result


def _numpy(value: Any) -> np.ndarray:
    return value.detach().float().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _scalar(value: Any) -> float:
    while isinstance(value, (list, tuple)):
        value = value[0]
    return float(value.item() if hasattr(value, "item") else value)


__all__ = ["SpeechQualityAssessmentPipeline", "frame_score_curve", "window_starts"]
