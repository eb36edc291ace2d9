"""MPL stage 1: add a teacher's pseudo labels to a dataset or manifest, one column per teacher output.

    mtqnet annotate --input IN.csv --output OUT.csv --teacher TEACHER_DIR
    mtqnet annotate --input IN.csv --output OUT.csv --teacher intrusive --clean_column clean_path
    mtqnet annotate --input IN.csv --output OUT.csv --teacher dnsmos

Teachers: a saved MTQ-Net / MOSA-Net folder (its `target_names`, e.g. pesq stoi sdi), `intrusive` (PESQ, STOI and
SDI against a clean reference column), or `dnsmos` (DNSMOS P.835 through the optional `speechmos` package:
dnsmos_sig, dnsmos_bak, dnsmos_ovrl). Every input column is kept; a clip that cannot be scored gets NaN and a reason
in the `error` column, and the run carries on. Work is written in shards under OUT.shards/, so a killed run resumes
where it stopped; under `torchrun` / `accelerate launch` each process takes its share of the shards (and its own
GPU), and the main process merges them.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..distributed import ProcessState, wait_for_markers
from ..model.feature_extraction_mtqnet import MTQNetFeatureExtractor, load_audio
from ..pretrained import SHIPPED, resolve_model
from ..tables import read_table, table_columns, write_dataset
from ..training.data import load_speech_dataset
from ..vocabulary import AUDIO_COLUMN, ERROR_COLUMN, TABLE_SUFFIXES
from .intrusive import INTRUSIVE_COLUMNS, decodable_audio, intrusive_scores

DNSMOS_COLUMNS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")


class Teacher:
    """Something with named outputs: `columns`, and `__call__(batch) -> {column: list, error: list}`."""

    columns: tuple[str, ...] = ()

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        raise NotImplementedError


class ModelTeacher(Teacher):
    """A saved MTQ-Net / MOSA-Net: its utterance scores, one column per target name, clipped to each target's range."""

    def __init__(self, folder: str | os.PathLike, audio_column: str, device: str | torch.device = "cpu"):
        from ..model.modeling_mtqnet import MTQNetForSpeechQualityAssessment

        self.model = MTQNetForSpeechQualityAssessment.from_pretrained(folder).to(device).eval()
        self.extractor = MTQNetFeatureExtractor.from_model_config(self.model.config)
        self.columns = tuple(self.model.config.target_names)
        self.audio_column, self.device = audio_column, torch.device(device)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        count = len(batch[self.audio_column])
        outputs = {column: [math.nan] * count for column in self.columns}
        errors, waveforms, rows = [""] * count, [], []
        for row, value in enumerate(batch[self.audio_column]):
            try:
                waveforms.append(self.extractor.prepare_waveform(decodable_audio(value), name=str(value)[:200]))
                rows.append(row)
            except Exception as problem:  # noqa: BLE001 - reported per clip
                errors[row] = f"{type(problem).__name__}: {problem}"
        if waveforms:
            features = self.extractor(waveforms, sampling_rate=self.extractor.sampling_rate, return_tensors="pt")
            with torch.no_grad():
                scores = self.model(**{k: v.to(self.device) for k, v in features.items()}).logits.float().cpu()
            # A linear head can overshoot its target's range (an SDI of -0.01): pseudo labels are clipped into the
            # range, which is also what a student's label check accepts.
            for k, value_range in enumerate(self.model.config.target_ranges):
                if value_range is not None:
                    scores[:, k] = scores[:, k].clamp(*value_range)
            for position, row in enumerate(rows):
                for k, column in enumerate(self.columns):
                    outputs[column][row] = float(scores[position, k])
        return {**outputs, ERROR_COLUMN: errors}


class IntrusiveTeacher(Teacher):
    """PESQ, STOI and SDI against a clean reference column (see `modeling_mtqnet.intrusive`)."""

    columns = INTRUSIVE_COLUMNS

    def __init__(self, audio_column: str, clean_column: str):
        self.audio_column, self.clean_column = audio_column, clean_column

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        results = [
            intrusive_scores(decodable_audio(degraded), decodable_audio(clean)).as_dict()
            for degraded, clean in zip(batch[self.audio_column], batch[self.clean_column])
        ]
        outputs = {column: [r[column] for r in results] for column in self.columns}
        return {**outputs, ERROR_COLUMN: [r[ERROR_COLUMN] for r in results]}


class DNSMOSTeacher(Teacher):
    """DNSMOS P.835 (SIG, BAK, OVRL) from the `speechmos` package (ONNX weights inside the wheel)."""

    columns = DNSMOS_COLUMNS

    def __init__(self, audio_column: str):
        try:
            from speechmos import dnsmos
        except ImportError as error:
            raise ImportError(
                "The dnsmos teacher needs: pip install speechmos onnxruntime librosa"
            ) from error
        self.dnsmos, self.audio_column = dnsmos, audio_column

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        count = len(batch[self.audio_column])
        outputs = {column: [math.nan] * count for column in self.columns}
        errors = [""] * count
        for row, value in enumerate(batch[self.audio_column]):
            try:
                audio = load_audio(decodable_audio(value), None, 16000, name=str(value)[:200]).astype(np.float32)
                if audio.size == 0 or not np.all(np.isfinite(audio)) or not np.any(audio):
                    raise ValueError("empty, silent or non-finite audio")
                scores = self.dnsmos.run(np.clip(audio, -1.0, 1.0), 16000)
                for column, key in zip(self.columns, ("sig_mos", "bak_mos", "ovrl_mos")):
                    outputs[column][row] = float(scores[key])
            except Exception as problem:  # noqa: BLE001 - reported per clip
                errors[row] = f"{type(problem).__name__}: {problem}"
        return {**outputs, ERROR_COLUMN: errors}


def make_teacher(name: str, audio_column: str, clean_column: str | None = None,
                 device: str | torch.device = "cpu") -> Teacher:
    """`intrusive`, `dnsmos`, a shipped model's short name (`mtqnet/teacher-pesq-stoi-sdi`) or the path of a saved
    MTQ-Net / MOSA-Net folder."""
    if name == "intrusive":
        if not clean_column:
            raise ValueError("The intrusive teacher needs --clean_column (the clean reference's path column)")
        return IntrusiveTeacher(audio_column, clean_column)
    if name == "dnsmos":
        return DNSMOSTeacher(audio_column)
    name = resolve_model(name)
    if not Path(name, "config.json").exists():
        raise ValueError(f"Teacher {name!r} is neither 'intrusive', 'dnsmos', a shipped model ({', '.join(SHIPPED)}) "
                         "nor a saved model folder")
    return ModelTeacher(name, audio_column, device)


def annotate_dataset(dataset, teacher: Teacher, batch_size: int = 8, num_proc: int | None = None,
                     desc: str = "annotating"):
    """`Dataset.map(batched=True)` adding one column per teacher output plus the `error` column.

    Re-annotating replaces the teacher's own columns. An `error` column already there (an earlier teacher's) is
    kept and joined with this teacher's reasons ("earlier; this"), so no reason is lost.
    """
    import datasets

    for column in _needed_columns(teacher):
        if column not in dataset.column_names:
            raise ValueError(f"Column {column!r} not found; the columns are {dataset.column_names}")
        if isinstance(dataset.features[column], datasets.Audio):
            dataset = dataset.cast_column(column, datasets.Audio(decode=False))
    clash = [c for c in teacher.columns if c in dataset.column_names]
    if clash:
        dataset = dataset.remove_columns(clash)  # re-annotating replaces the teacher's old columns
    earlier = f"__earlier_{ERROR_COLUMN}"
    if ERROR_COLUMN in dataset.column_names:
        dataset = dataset.rename_column(ERROR_COLUMN, earlier)
    annotated = dataset.map(teacher, batched=True, batch_size=batch_size, num_proc=num_proc, desc=desc)
    if earlier not in annotated.column_names:
        return annotated

    def join(batch: dict[str, list]) -> dict[str, list]:
        joined = []
        for old, new in zip(batch[earlier], batch[ERROR_COLUMN]):
            reasons = [str(reason) for reason in (old, new) if reason not in (None, "")]
            joined.append("; ".join(dict.fromkeys(reasons)))
        return {ERROR_COLUMN: joined}

    return annotated.map(join, batched=True, remove_columns=[earlier], desc="joining error reasons")


def _needed_columns(teacher: Teacher) -> list[str]:
    return [c for c in (getattr(teacher, "audio_column", None), getattr(teacher, "clean_column", None)) if c]


def check_output(input_path: str, output: Path, teacher: Teacher, overwrite: bool = False) -> None:
    """Refuse an output that would cost data: the input itself, or an existing file that is not an earlier output of
    this teacher (its columns hold the teacher's and `error`) unless `overwrite`."""
    if os.path.exists(input_path) and os.path.realpath(input_path) == os.path.realpath(output):
        raise ValueError(f"--output {output} is the input; annotate never writes over its input: give another --output")
    if not os.path.lexists(output) or overwrite:
        return
    if output.suffix.lower() in TABLE_SUFFIXES and output.is_file():
        if output.stat().st_size == 0 or {*teacher.columns, ERROR_COLUMN} <= set(table_columns(output)):
            return
    elif output.is_dir() and (output / "dataset_info.json").exists():
        return
    raise ValueError(f"--output {output} exists and is not an earlier output of this teacher (no columns "
                     f"{[*teacher.columns, ERROR_COLUMN]}); give another --output, or --overwrite to replace it")


def annotate_file(input_path: str, output_path: str, teacher: Teacher, shard_size: int = 500, batch_size: int = 8,
                  num_proc: int | None = None, audio_column: str = AUDIO_COLUMN,
                  progress: Callable[[Any], Any] | None = None,
                  state: ProcessState | None = None, overwrite: bool = False) -> Path:
    """Annotate a manifest / dataset folder into `output_path`, shard by shard (resumable, several processes).
    An existing output is replaced only when it is an earlier output of this teacher (or with `overwrite`)."""
    import datasets

    state = state or ProcessState()
    output = Path(output_path)
    check_output(input_path, output, teacher, overwrite)
    dataset = load_speech_dataset(input_path, audio_column, path_columns=_needed_columns(teacher))
    shard_dir = output.with_name(output.name + ".shards")
    shard_dir.mkdir(parents=True, exist_ok=True)
    shard_count = max(1, math.ceil(len(dataset) / shard_size))
    mine = [i for i in range(shard_count) if i % state.world == state.rank]
    iterator = progress(mine) if progress else mine
    for index in iterator:
        shard_path = shard_dir / f"shard-{index:05d}"
        if shard_path.exists():
            continue  # done by an earlier (killed) run
        shard = dataset.select(range(index * shard_size, min(len(dataset), (index + 1) * shard_size)))
        annotated = annotate_dataset(shard, teacher, batch_size, num_proc, desc=f"shard {index + 1}/{shard_count}")
        write_dataset(annotated, shard_path)
    # Shares may take hours: wait on the shard folders rather than a collective with a timeout.
    wait_for_markers([shard_dir / f"shard-{i:05d}" for i in range(shard_count)])
    if state.is_main:
        shards = [datasets.load_from_disk(str(shard_dir / f"shard-{i:05d}")) for i in range(shard_count)]
        write_dataset(datasets.concatenate_datasets(shards), output)
    return output


def annotated_rows(manifest: Path, output: Path, teacher_name: str, clean_column: str | None = None,
                   num_proc: int | None = None) -> list[dict[str, str]]:
    """The rows of `manifest` with `teacher_name`'s labels (`make_teacher`): `annotate_file` (resumable shards, a
    progress bar) into `output`, read back. Clips without labels stay, with their reason in the error column, and are
    counted in a warning on stderr."""
    from tqdm.auto import tqdm

    teacher = make_teacher(teacher_name, "path", clean_column)
    label = Path(teacher_name).name if Path(teacher_name).exists() else teacher_name
    annotate_file(str(manifest), str(output), teacher, shard_size=200, batch_size=8, num_proc=num_proc,
                  progress=lambda shards: tqdm(shards, desc=f"{label} labels for {manifest.stem}", unit="shard"))
    annotated = read_table(output, required="path")
    failed = [row for row in annotated if row.get(ERROR_COLUMN)]
    if failed:
        print(f"warning: {len(failed)} clip(s) of {manifest.name} got no {label} labels, e.g. "
              f"{failed[0]['path']}: {failed[0][ERROR_COLUMN]}", file=sys.stderr)
    return annotated


def parse_args(argv: list[str] | None = None, prog: str | None = "mtqnet annotate") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="CSV/JSONL manifest, audiofolder or save_to_disk folder")
    parser.add_argument("--output", required=True, help="OUT.csv / OUT.jsonl, or a folder (save_to_disk)")
    parser.add_argument("--teacher", required=True, help="a saved MTQ-Net/MOSA-Net folder, 'intrusive' or 'dnsmos'")
    parser.add_argument("--audio_column", default=AUDIO_COLUMN, help="audio path (relative to the manifest) or Audio")
    parser.add_argument("--clean_column", default=None, help="clean reference column (the intrusive teacher)")
    parser.add_argument("--batch_size", type=int, default=8, help="clips per model call")
    parser.add_argument("--num_proc", type=int, default=None, help="worker processes for Dataset.map")
    parser.add_argument("--shard_size", type=int, default=500, help="rows per resumable shard")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the process's device)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an --output that is not an earlier output of this teacher (never done otherwise)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, prog: str | None = "mtqnet annotate") -> None:
    from tqdm.auto import tqdm

    args = parse_args(argv, prog)
    state = ProcessState(cpu=args.device == "cpu")
    teacher = make_teacher(args.teacher, args.audio_column, args.clean_column, args.device or state.device)
    output = annotate_file(args.input, args.output, teacher, args.shard_size, args.batch_size, args.num_proc,
                           args.audio_column, progress=lambda shards: tqdm(shards, desc="shards", unit="shard"),
                           state=state, overwrite=args.overwrite)
    if state.is_main:
        print(f"Wrote {output} with teacher columns {list(teacher.columns)}")


if __name__ == "__main__":
    main()
