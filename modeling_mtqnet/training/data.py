"""Datasets for MTQ-Net training: loading, label checks, audio decoding, splitting, cropping and collation.

Pseudo labels are ordinary extra columns of a `datasets.Dataset`; a missing value (empty cell, None, NaN) becomes NaN
and masks just its own term of the loss. Everything is checked before the first training step.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from ..model.feature_extraction_mtqnet import MTQNetFeatureExtractor
from ..tables import table_format, to_float
from ..vocabulary import ERROR_COLUMN, TABLE_SUFFIXES

AUDIO_ID_COLUMN = "audio_id"
MODEL_COLUMNS = ("input_values", "length", "labels", "pseudo_labels", AUDIO_ID_COLUMN)


class DatasetValidationError(ValueError):
    """A dataset that cannot be trained on as it is; the message says what and where."""


@contextlib.contextmanager
def run_datasets_cache() -> Iterator[str]:
    """A folder for one run's datasets files (a manifest's Arrow copy, the decoded clips, the encoder's features),
    removed when the run ends.

    The maps that decode clips and cache encoder features get a new fingerprint in every process (datasets hashes the
    extractor and model they close over differently each time), so their files in the shared datasets cache were never
    reused, only left behind: on the shipped encoder a 2,000-clip pool left about 1.6 GB per `mtqnet train` run. The
    folder is made inside the datasets cache (`HF_DATASETS_CACHE`), on the disk chosen for such files; a run killed
    before its end leaves it there, named `mtqnet-run-*`.
    """
    import datasets

    root = Path(datasets.config.HF_DATASETS_CACHE)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mtqnet-run-", dir=root, ignore_cleanup_errors=True) as folder:
        yield folder


def load_speech_dataset(source: str | os.PathLike, audio_column: str, split: str | None = None,
                        path_columns: Iterable[str] = (), cache_dir: str | None = None):
    """Load a CSV/JSONL manifest, an audiofolder, a `save_to_disk` folder, or a Hub dataset with an `Audio` column.

    Manifest paths (the audio column and any `path_columns`, e.g. a clean reference) are relative to the manifest.
    `cache_dir` (e.g. `run_datasets_cache()`'s) holds a manifest's or audiofolder's Arrow copy and the files of every
    map applied to it later; a `save_to_disk` folder keeps them beside its own files, a Hub dataset in the datasets
    cache, as datasets does.
    """
    import datasets

    source_path = Path(source)
    if source_path.is_file():
        if source_path.suffix.lower() not in TABLE_SUFFIXES:
            raise DatasetValidationError(
                f"{source}: unknown manifest type; use .csv, .tsv, .jsonl or .json (or a folder / Hub dataset)"
            )
        kind = table_format(source_path)
        builder = "json" if kind == "jsonl" else "csv"
        kwargs = {"delimiter": "\t"} if kind == "tsv" else {}
        text = source_path.read_text(encoding="utf-8", errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            raise DatasetValidationError(f"{source} is an empty file: a manifest needs a header and one row per clip")
        if kind != "jsonl" and len(lines) == 1:
            header = ", ".join(lines[0].split("\t" if kind == "tsv" else ","))
            raise DatasetValidationError(f"{source} has a header ({header}) but no rows")
        try:
            dataset = datasets.load_dataset(builder, data_files=str(source_path), split="train", cache_dir=cache_dir,
                                            **kwargs)
        except Exception as error:  # pandas / pyarrow parse errors, worded for the user
            reason = " ".join(str(error).split())[:300]
            raise DatasetValidationError(f"{source} cannot be read as a {kind.upper()} manifest: {reason}") from error
        if len(dataset) == 0:
            raise DatasetValidationError(f"{source} has no rows")
        base_dir = source_path.resolve().parent
        for column in [audio_column, *path_columns]:
            if column in dataset.column_names:
                dataset = dataset.map(
                    lambda batch, c=column: {c: [_resolve(base_dir, p) for p in batch[c]]},
                    batched=True, desc=f"resolving {column}",
                )
        return dataset
    if source_path.is_dir():
        if (source_path / "dataset_info.json").exists() or (source_path / "dataset_dict.json").exists():
            dataset = datasets.load_from_disk(str(source_path))
        else:
            dataset = datasets.load_dataset("audiofolder", data_dir=str(source_path), cache_dir=cache_dir)
    elif source_path.suffix.lower() in TABLE_SUFFIXES or os.sep in str(source):
        raise DatasetValidationError(f"Dataset not found: {source}")
    else:
        dataset = datasets.load_dataset(str(source))
    if isinstance(dataset, datasets.DatasetDict):
        chosen = split or ("train" if "train" in dataset else next(iter(dataset)))
        if chosen not in dataset:
            raise DatasetValidationError(f"{source} has no split {chosen!r}; it has {list(dataset)}")
        dataset = dataset[chosen]
    return dataset


def _resolve(base_dir: Path, path: Any) -> Any:
    if path is None or (isinstance(path, float) and math.isnan(path)) or path == "":
        return path
    return str(path) if os.path.isabs(str(path)) else str(base_dir / str(path))


def check_columns(dataset, needed: Iterable[str], source: str = "dataset") -> None:
    missing = [column for column in needed if column not in dataset.column_names]
    if missing:
        raise DatasetValidationError(
            f"{source}: column(s) {missing} not found; the columns are {dataset.column_names}"
        )


def label_matrix(dataset, columns: list[str], ranges: dict[str, list[float] | None],
                 source: str = "dataset") -> np.ndarray:
    """(rows, len(columns)) float labels with NaN for missing; non-numeric or out-of-range values are errors."""
    matrix = np.full((len(dataset), len(columns)), np.nan)
    for k, column in enumerate(columns):
        bad = []
        for row, value in enumerate(dataset[column]):
            number = to_float(value)
            if number is None:
                bad.append((row, value))
            else:
                matrix[row, k] = number
        if bad:
            shown = ", ".join(f"row {row}: {value!r}" for row, value in bad[:5])
            raise DatasetValidationError(f"{source}: column {column!r} has non-numeric labels ({len(bad)}): {shown}")
        values = matrix[:, k]
        if len(values) and np.all(np.isnan(values)):
            raise DatasetValidationError(f"{source}: column {column!r} has no label at all (every value is missing)")
        value_range = ranges.get(column)
        if value_range is not None:
            # Compared in float32, the model's precision: a teacher's label at its range's end, written out in full
            # (4.644000053405762 for 4.644), is inside.
            low, high, single = np.float32(value_range[0]), np.float32(value_range[1]), values.astype(np.float32)
            outside = np.flatnonzero((single < low) | (single > high))
            if outside.size:
                shown = ", ".join(f"row {row}: {values[row]:g}" for row in outside[:5])
                raise DatasetValidationError(
                    f"{source}: column {column!r} has {outside.size} label(s) outside its range {value_range}: {shown}"
                )
        if np.any(np.isinf(values)):
            raise DatasetValidationError(f"{source}: column {column!r} has infinite labels")
    return matrix


@dataclass
class PreparedDataset:
    """A dataset ready for the model, and the files that were skipped (path, reason)."""

    dataset: Any
    skipped: list[tuple[str, str]] = field(default_factory=list)


def prepare_dataset(
    dataset,
    feature_extractor: MTQNetFeatureExtractor,
    audio_column: str,
    target_columns: list[str],
    pseudo_label_columns: list[str] | None = None,
    ranges: dict[str, list[float] | None] | None = None,
    skip_bad_files: bool = False,
    num_proc: int | None = None,
    source: str = "dataset",
    require_labels: bool = True,
    keep_columns: Iterable[str] = (),
) -> PreparedDataset:
    """Check labels, decode audio (soundfile + soxr for path columns, datasets/torchcodec for `Audio` columns) in
    `map`, and build `input_values`, `length`, `labels`, `pseudo_labels` and `audio_id` columns; `keep_columns`
    (e.g. a speaker column for a grouped validation split) are kept as they are.

    Raises DatasetValidationError naming every problem, unless `skip_bad_files`, in which case unreadable, missing,
    too short or otherwise unusable clips are dropped and listed in `skipped`.
    """
    import datasets

    pseudo_label_columns = list(pseudo_label_columns or [])
    ranges = ranges or {}
    label_columns = list(target_columns) if require_labels else [c for c in target_columns if c in dataset.column_names]
    keep_columns = [column for column in keep_columns if column != audio_column]
    check_columns(dataset, [audio_column, *label_columns, *pseudo_label_columns, *keep_columns], source)
    if len(dataset) == 0:
        raise DatasetValidationError(f"{source} is empty")
    labels = label_matrix(dataset, label_columns, ranges, source) if label_columns else None
    pseudo = label_matrix(dataset, pseudo_label_columns, ranges, source) if pseudo_label_columns else None

    is_audio_feature = isinstance(dataset.features[audio_column], datasets.Audio)
    if is_audio_feature:  # decode ourselves, inside a try, so that one corrupt file is reported, not fatal
        dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))

    def decode(example: dict[str, Any], index: int) -> dict[str, Any]:
        value = example[audio_column]
        audio_id = _audio_id(value, index)
        try:
            if value is None or value == "":
                raise ValueError("no audio path given")
            if is_audio_feature:
                value = datasets.Audio().decode_example(value)
            waveform = feature_extractor.prepare_waveform(value, name=audio_id)
            error = ""
        except Exception as problem:  # noqa: BLE001 - every decoding failure is reported with its file
            waveform, error = np.zeros(0, np.float32), f"{type(problem).__name__}: {problem}"
        return {"input_values": waveform, "length": int(waveform.size), AUDIO_ID_COLUMN: audio_id,
                ERROR_COLUMN: error}

    keep = [c for c in dataset.column_names
            if c not in MODEL_COLUMNS and c != ERROR_COLUMN and c not in keep_columns]
    decoded = dataset.map(decode, with_indices=True, remove_columns=keep, num_proc=num_proc,
                          desc=f"decoding audio ({source})")
    if labels is not None:
        decoded = decoded.add_column("labels", labels.tolist())
    if pseudo is not None:
        decoded = decoded.add_column("pseudo_labels", pseudo.tolist())
    errors = decoded[ERROR_COLUMN]
    bad = [(audio_id, error) for audio_id, error in zip(decoded[AUDIO_ID_COLUMN], errors) if error]
    if bad and not skip_bad_files:
        shown = "\n".join(f"  {audio_id}: {error}" for audio_id, error in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise DatasetValidationError(
            f"{source}: {len(bad)} of {len(decoded)} clip(s) cannot be used (pass --skip_bad_files to skip them):\n"
            f"{shown}{more}"
        )
    if bad:
        decoded = decoded.filter(lambda error: not error, input_columns=ERROR_COLUMN, desc="dropping bad files")
        if len(decoded) == 0:
            raise DatasetValidationError(f"{source}: every clip was unusable, e.g. {bad[0][0]}: {bad[0][1]}")
    return PreparedDataset(dataset=decoded.remove_columns(ERROR_COLUMN), skipped=bad)


def _audio_id(value: Any, index: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("path"):
        return str(value["path"])
    return f"row {index}"


def duplicate_clips(dataset) -> dict[str, int]:
    """Clips (audio ids) that appear more than once, with their counts."""
    counts: dict[str, int] = {}
    for audio_id in dataset[AUDIO_ID_COLUMN]:
        counts[audio_id] = counts.get(audio_id, 0) + 1
    return {audio_id: count for audio_id, count in counts.items() if count > 1}


def has_primary_labels(dataset) -> np.ndarray:
    """Per row of a prepared dataset: whether any primary label is given (not NaN)."""
    if "labels" not in dataset.column_names or len(dataset) == 0:
        return np.zeros(len(dataset), dtype=bool)
    labels = np.asarray(dataset.with_format(None).select_columns(["labels"])["labels"], dtype=np.float64)
    return np.isfinite(labels).any(axis=1)


def without_unlabelled(dataset):
    """(the rows with at least one primary label, how many rows had none). A method without pseudo labels learns
    nothing from a clip without a primary label: left in, it would only take places in the batches."""
    if len(dataset) == 0:
        return dataset, 0
    labelled = has_primary_labels(dataset)
    dropped = int((~labelled).sum())
    if dropped == len(dataset):
        raise DatasetValidationError("No training clip has a primary label: give labels, or train with pseudo labels "
                                     "(--method mpl or mpl_kt)")
    return (dataset.select(np.flatnonzero(labelled).tolist()) if dropped else dataset), dropped


def split_train_validation(dataset, validation_fraction: float = 0.1, seed: int = 0, group_column: str | None = None):
    """The paper's 90/10 train/validation split, seeded, by group: all rows of a group land on the same side.

    A group is one clip (its `audio_id`: a duplicated row never sits on both sides), or with `group_column` one value
    of that column (a speaker, a source recording), so that validation holds speakers or recordings never trained on.
    The validation part holds ceil(fraction x groups) groups (at least one, and one group is always left to train).
    Returns (train, validation).
    """
    if len(dataset) < 2:
        raise DatasetValidationError("Need at least 2 clips to split off a validation set; give --validation_file")
    column = group_column or AUDIO_ID_COLUMN
    check_columns(dataset, [column], "the training set")
    keys = [str(key) for key in dataset[column]]
    groups = list(dict.fromkeys(keys))
    if len(groups) < 2:
        raise DatasetValidationError(f"Need at least 2 distinct values of {column!r} to split off a validation set; "
                                     "give --validation_file")
    size = min(len(groups) - 1, max(1, math.ceil(validation_fraction * len(groups))))
    order = np.random.default_rng(seed).permutation(len(groups))
    held_out = {groups[index] for index in order[:size]}
    in_validation = [key in held_out for key in keys]
    train = dataset.select([row for row, chosen in enumerate(in_validation) if not chosen])
    validation = dataset.select([row for row, chosen in enumerate(in_validation) if chosen])
    return train, validation


class RandomCrop:
    """A `with_transform` for training sets: crop clips longer than `max_samples` at a random (seeded) offset."""

    def __init__(self, max_samples: int, seed: int = 0):
        self.max_samples = max_samples
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        cropped = []
        for values in batch["input_values"]:
            values = np.asarray(values, dtype=np.float32)
            if values.size > self.max_samples:
                start = int(self.rng.integers(0, values.size - self.max_samples + 1))
                values = values[start : start + self.max_samples]
            cropped.append(values)
        batch["input_values"] = cropped
        batch["length"] = [v.size for v in cropped]
        return batch


@dataclass
class SpeechQualityCollator:
    """Pads waveforms (and cached SSL features) to the longest in the batch, builds `attention_mask`, and stacks
    `labels` / `pseudo_labels` as float tensors with NaN for missing values."""

    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        waveforms = [torch.as_tensor(np.asarray(f["input_values"], dtype=np.float32)) for f in features]
        lengths = torch.tensor([w.numel() for w in waveforms])
        longest = int(lengths.max())
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_values = torch.zeros(len(waveforms), longest)
        for row, waveform in enumerate(waveforms):
            input_values[row, : waveform.numel()] = waveform
        batch = {
            "input_values": input_values,
            "attention_mask": (torch.arange(longest)[None, :] < lengths[:, None]).long(),
        }
        for key in ("labels", "pseudo_labels"):
            if key in features[0] and features[0][key] is not None:
                batch[key] = torch.tensor(
                    [[math.nan if v is None else float(v) for v in f[key]] for f in features], dtype=torch.float32
                )
        if "ssl_hidden_states" in features[0]:
            states = [torch.as_tensor(np.asarray(f["ssl_hidden_states"], dtype=np.float32)) for f in features]
            batch["ssl_hidden_states"] = torch.nn.utils.rnn.pad_sequence(states, batch_first=True)
        return batch


__all__ = [
    "DatasetValidationError",
    "run_datasets_cache",
    "load_speech_dataset",
    "prepare_dataset",
    "label_matrix",
    "split_train_validation",
    "has_primary_labels",
    "without_unlabelled",
    "duplicate_clips",
    "RandomCrop",
    "SpeechQualityCollator",
    "PreparedDataset",
]
