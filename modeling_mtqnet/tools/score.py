"""Score a corpus with MTQ-Net: audio files, folders, globs or manifests in; one CSV / JSONL row per file out.

    mtqnet score INPUT... --model MODEL_DIR_OR_REPO --output OUT.csv
    mtqnet score recordings/ "more/**/*.flac" list.csv --model out/mtqnet --output scores.jsonl
    accelerate launch --multi_gpu --num_processes 4 -m modeling_mtqnet score INPUT... --model M --output OUT.csv
    torchrun --nproc_per_node 2 -m modeling_mtqnet score INPUT... --model M --output OUT.csv --device cpu

INPUT: an audio file, a folder (searched recursively for `--extensions`, case-insensitive), a glob (matched folders
are searched, matched files kept when their extension is listed), or a CSV/TSV/JSONL manifest whose
`--audio_column` holds paths relative to the manifest. Paths are written absolute, each file once.

Columns: path, duration_s, sampling_rate and channels (of the file as stored), one column per primary score
(the model's `target_names`, e.g. s_mos n_mos g_mos), chunks (files longer than `--chunk_length_s`: the JSON list of
per-window scores, whose mean is the file's score), error (empty when fine; a file that cannot be read or scored
honestly -- corrupt, empty, silent or near-silent, NaN, too short -- gets its reason there and the run carries on)
and warning (what was scored with a caveat: a WAV file cut short is scored as far as it goes).

OUT is never a file this command did not write: an existing OUT must be an earlier output of `mtqnet score` (its
columns say so), else the command stops before scoring (`--overwrite` replaces it); OUT is never one of the inputs;
a read-only or unwritable OUT is refused before scoring. If OUT cannot be written at the end, the scored rows stay
in the partial file(s) and the error says where.

Rows are appended to OUT.partial (JSON lines, flushed per batch); OUT is only ever written whole, to a temporary
name then renamed, so it never holds a half-written row. A rerun with the same OUT skips the files already in OUT or
in a partial file left by a killed run (`--retry_errors` re-scores those with an error). Under `accelerate launch` or
torchrun, process i (one GPU each) scores the inputs whose index modulo the number of processes N is i, into
OUT.partial-i-of-N, and the main process merges them into OUT once every process has finished. Several CPU
processes: use torchrun (accelerate launch --cpu starts several processes only through mpirun).
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import hashlib
import json
import math
import os
import stat
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from ..distributed import ProcessState, wait_for_markers
from ..model.feature_extraction_mtqnet import (
    MTQNetFeatureExtractor,
    TruncatedAudioWarning,
    check_waveform,
    load_audio,
    read_audio_file,
)
from ..model.pipeline_mtqnet import (
    STREAM_ABOVE_S,  # longer files: read by the pipeline in blocks, not by a worker
)
from ..pretrained import resolve_model
from ..scoring.frame_plots import SignalSketch, plot_frame_curve
from ..scoring.loading import DTYPES, load_model
from ..tables import (
    columns_of,
    read_jsonl,
    read_table,
    table_columns,
    to_float,
    write_table,
)
from ..training.reporting import agg_pyplot
from ..vocabulary import (
    AUDIO_COLUMN,
    AUDIO_EXTENSIONS,
    ERROR_COLUMN,
    PIPELINE_TASK,
    TABLE_SUFFIXES,
    audio_suffixes,
)

FILE_COLUMNS = ("path", "duration_s", "sampling_rate", "channels")
CHUNKS_COLUMN = "chunks"
WARNING_COLUMN = "warning"
# The columns by which a table is recognised as an earlier output of this command (which it may replace).
OWN_COLUMNS = (*FILE_COLUMNS, CHUNKS_COLUMN, ERROR_COLUMN)
LogFunction = Callable[[str], None]


# ---------------------------------------------------------------------------------------------------------------
# Inputs


def collect_inputs(inputs: Sequence[str], extensions: Iterable[str] = AUDIO_EXTENSIONS, audio_column: str = AUDIO_COLUMN,
                   log: LogFunction = print) -> list[str]:
    """Absolute paths of the audio to score, in input order, each real file once.

    A folder is searched recursively (sorted) for files whose extension is in `extensions` (case-insensitive); a
    glob's matched folders are searched the same way and its matched files kept when their extension is listed; a
    CSV/TSV/JSONL file is a manifest (`audio_column`, paths relative to it); any other existing file is audio. A
    path that does not exist is kept, so that its row says so. Symbolic links to folders are never followed (by
    folders and globs alike, so a link loop cannot hang the search), and a file reached under two names (a link to
    it, a `..` in a path) is scored once, under the first name found.
    """
    suffixes = audio_suffixes(extensions)
    found: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += _walk(path, suffixes)
        elif path.is_file():
            found += _manifest_paths(path, audio_column, log) if path.suffix.lower() in TABLE_SUFFIXES else [item]
        elif glob.has_magic(item):
            matches = glob_without_links(item)
            for match in matches:
                if os.path.isdir(match):
                    found += _walk(Path(match), suffixes)
                elif Path(match).suffix.lower() in suffixes:
                    found.append(match)
            if not matches:
                log(f"warning: {item!r} matches no file")
        else:
            log(f"warning: {item} does not exist (it gets an error row)")
            found.append(item)
    unique: dict[str, str] = {}  # real path -> the first name it was found under
    for name in found:
        unique.setdefault(os.path.realpath(name), os.path.abspath(name))
    return list(unique.values())


def glob_without_links(pattern: str) -> list[str]:
    """`glob.glob(pattern, recursive=True)`, sorted, except that symbolic links to folders are never entered: `**`
    in a tree with a link loop ends, and a linked folder's files are not found a second time under its name.
    Hidden names match only a pattern part that starts with a dot, as in `glob`."""
    parts = Path(pattern).parts
    fixed = 0
    while fixed < len(parts) and not glob.has_magic(parts[fixed]):
        fixed += 1
    base = os.path.join(*parts[:fixed]) if fixed else os.curdir
    matches: list[str] = []

    def entries(directory: str) -> list[os.DirEntry]:
        try:
            with os.scandir(directory) as listing:
                return sorted(listing, key=lambda entry: entry.name)
        except OSError:  # unreadable or vanished: glob skips it too
            return []

    def visit(directory: str, remaining: tuple[str, ...]) -> None:
        if not remaining:
            matches.append(directory)
            return
        head, rest = remaining[0], remaining[1:]
        if head == "**":
            if rest or directory != base:
                visit(directory, rest)  # `**` as zero folders
            for entry in entries(directory):
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    visit(entry.path, remaining)  # ... or one folder more (links to folders are not entered)
                elif not rest:
                    matches.append(entry.path)
            return
        for entry in entries(directory):
            if entry.name.startswith(".") and not head.startswith("."):
                continue
            if not fnmatch.fnmatchcase(entry.name, head):
                continue
            if not rest:
                matches.append(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                visit(entry.path, rest)

    if os.path.isdir(base):
        visit(base, parts[fixed:])
    return sorted(dict.fromkeys(os.path.normpath(match) for match in matches))


def _walk(folder: Path, suffixes: set[str]) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):  # does not enter links to folders (followlinks=False)
        dirs.sort()
        found += [os.path.join(root, name) for name in sorted(files) if Path(name).suffix.lower() in suffixes]
    return found


def _manifest_paths(manifest: Path, audio_column: str, log: LogFunction) -> list[str]:
    from ..training.data import check_columns, load_speech_dataset

    dataset = load_speech_dataset(manifest, audio_column)  # resolves the paths relative to the manifest
    check_columns(dataset, [audio_column], str(manifest))
    paths = []
    for row, value in enumerate(dataset[audio_column]):
        if isinstance(value, dict):  # an undecoded Audio value
            value = value.get("path")
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            log(f"warning: {manifest} row {row} has no {audio_column!r}: skipped")
        else:
            paths.append(str(value))
    return paths


# ---------------------------------------------------------------------------------------------------------------
# Decoding (in DataLoader worker processes)


@dataclass(frozen=True)
class DecodeSettings:
    """What decoding checks, from the model's feature extractor: rate, shortest clip, longest one-pass clip (None
    when files are windowed), and the level floor below which a file is near-silent."""

    target_rate: int
    min_samples: int
    max_samples: int | None
    min_level_db: float | None
    stream_above_s: float | None = None  # longer files go to the pipeline as paths (windowed runs only)

    @classmethod
    def of(cls, extractor: MTQNetFeatureExtractor, chunked: bool) -> "DecodeSettings":
        max_samples = None if chunked or extractor.max_duration_s is None else \
            int(extractor.max_duration_s * extractor.sampling_rate)
        return cls(extractor.sampling_rate, extractor.min_samples, max_samples,
                   getattr(extractor, "min_level_db", None), STREAM_ABOVE_S if chunked else None)


def decode_file(path: str, settings: DecodeSettings) -> tuple[dict[str, Any], np.ndarray | str | None]:
    """Read one file: (row with path, duration_s, sampling_rate, channels, error, warning; mono waveform at the
    model's rate).

    The waveform is None, and `error` says why, when the file cannot be scored (missing, undecodable, empty, NaN,
    too short, too long for one pass, silent, near-silent). `warning` says what was scored with a caveat (a WAV
    file cut short: the part that is there). A file longer than `settings.stream_above_s` is not decoded here: its
    path comes back instead of a waveform, for the pipeline to read in blocks (memory independent of its length).
    """
    row: dict[str, Any] = {"path": path, "duration_s": None, "sampling_rate": None, "channels": None,
                           ERROR_COLUMN: "", WARNING_COLUMN: ""}
    name = os.path.basename(path)
    if settings.stream_above_s is not None:
        import soundfile

        try:
            info = soundfile.info(path)
        except Exception:  # noqa: BLE001 - reading it below reports the problem
            info = None
        if info is not None and info.frames > settings.stream_above_s * info.samplerate:
            row.update(duration_s=info.frames / info.samplerate, sampling_rate=info.samplerate, channels=info.channels)
            return row, path
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TruncatedAudioWarning)
            samples, rate = read_audio_file(path)
        row[WARNING_COLUMN] = "; ".join(str(warning.message) for warning in caught
                                        if issubclass(warning.category, TruncatedAudioWarning))
        frames = int(samples.shape[0])
        row.update(duration_s=frames / rate, sampling_rate=rate, channels=1 if samples.ndim == 1 else samples.shape[1])
        if frames == 0:
            raise ValueError(f"{name} is empty (0 samples)")
        waveform = load_audio({"array": samples, "sampling_rate": rate}, None, settings.target_rate, name=name)
        check_waveform(waveform, settings.min_samples, settings.max_samples, name=name,
                       min_level_db=settings.min_level_db, sampling_rate=settings.target_rate)
    except Exception as problem:  # noqa: BLE001 - reported in the file's row
        row[ERROR_COLUMN] = " ".join(f"{type(problem).__name__}: {problem}".split())
        return row, None
    return row, waveform


class DecodeDataset(torch.utils.data.Dataset):
    """Paths -> (row, waveform tensor or None), for a DataLoader whose workers do the soundfile / soxr work."""

    def __init__(self, paths: Sequence[str], settings: DecodeSettings):
        self.paths, self.settings = list(paths), settings

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[dict[str, Any], torch.Tensor | str | None]:
        row, waveform = decode_file(self.paths[index], self.settings)
        if waveform is None or isinstance(waveform, str):
            return row, waveform
        return row, torch.from_numpy(np.ascontiguousarray(waveform))


def decode_loader(paths: Sequence[str], extractor: MTQNetFeatureExtractor, batch_size: int, num_workers: int,
                  chunked: bool) -> torch.utils.data.DataLoader:
    dataset = DecodeDataset(paths, DecodeSettings.of(extractor, chunked))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=list,
                                       shuffle=False)


# ---------------------------------------------------------------------------------------------------------------
# Scoring


class CorpusScorer:
    """Scores decoded waveforms through the `speech-quality-assessment` pipeline (windows, frame curves)."""

    def __init__(self, model, extractor: MTQNetFeatureExtractor, device: str | torch.device, batch_size: int = 8,
                 chunk_length_s: float | None = 10.0, stride_length_s: float | None = None):
        from transformers import pipeline

        self.pipe = pipeline(PIPELINE_TASK, model=model, feature_extractor=extractor, device=torch.device(device))
        self.names = list(model.config.target_names)
        self.rate = extractor.sampling_rate
        self.batch_size = batch_size
        self.call_kwargs: dict[str, Any] = {}
        if chunk_length_s:
            self.call_kwargs.update(chunk_length_s=chunk_length_s, stride_length_s=stride_length_s)

    def results(self, waveforms: list[np.ndarray]) -> list[dict[str, Any] | Exception]:
        """One pipeline result per waveform; when a batch fails, its clips are retried alone to find the culprit."""
        if not waveforms:
            return []
        try:
            return list(self._call(waveforms))
        except Exception as problem:  # noqa: BLE001 - isolated below
            if len(waveforms) == 1:
                return [problem]
        outcomes: list[dict[str, Any] | Exception] = []
        for waveform in waveforms:
            try:
                outcomes.append(self._call([waveform])[0])
            except Exception as problem:  # noqa: BLE001 - reported in the file's row
                outcomes.append(problem)
        return outcomes

    def _call(self, waveforms: list[np.ndarray | str]) -> list[dict[str, Any]]:
        """Score decoded waveforms, and long files by path (the pipeline reads those in blocks)."""
        clips = [waveform if isinstance(waveform, str) else {"array": waveform, "sampling_rate": self.rate}
                 for waveform in waveforms]
        return self.pipe(clips, batch_size=self.batch_size, num_workers=0, **self.call_kwargs)

    def score_batch(self, batch: list[tuple[dict[str, Any], torch.Tensor | str | None]],
                    plot_dir: Path | None = None) -> list[dict[str, Any]]:
        """Rows for one DataLoader batch, in order; scores are None where `error` is set. A long file comes as its
        path (the pipeline reads it in blocks)."""
        rows, waveforms, scored = [], [], []
        for meta, waveform in batch:
            rows.append({**meta, **{name: None for name in self.names}, CHUNKS_COLUMN: None})
            if waveform is not None:
                waveforms.append(waveform if isinstance(waveform, str) else waveform.numpy())
                scored.append(len(rows) - 1)
        for index, waveform, result in zip(scored, waveforms, self.results(waveforms)):
            row = rows[index]
            if isinstance(result, Exception):
                row[ERROR_COLUMN] = " ".join(f"{type(result).__name__}: {result}".split())
                continue
            row.update({name: float(result[name]) for name in self.names})
            row[CHUNKS_COLUMN] = result.get("chunks")
            if plot_dir is not None:
                try:
                    if isinstance(waveform, str):  # a long file: drawn from its blocks, never read whole
                        waveform = SignalSketch.of_file(waveform, self.rate)
                    plot_frame_curve(plot_dir / plot_name(row["path"]), row["path"], result, waveform, self.rate,
                                     self.names)
                except Exception as problem:  # noqa: BLE001 - a plot never costs a score
                    print(f"warning: no plot for {row['path']}: {problem}", file=sys.stderr)
        return rows


# ---------------------------------------------------------------------------------------------------------------
# Plots


def plot_name(path: str) -> str:
    """A file name for `path`'s plot: its stem plus a hash of the full path (same stems in other folders differ)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(path).stem)[:80]
    return f"{stem}_{hashlib.sha1(path.encode('utf-8')).hexdigest()[:8]}.png"


def plot_histograms(plot_dir: Path, rows: list[dict[str, Any]], names: Sequence[str]) -> list[Path]:
    """One histogram PNG per score (`hist_<name>.png`) over the rows that have it."""
    from ..vocabulary import display_name

    plt = agg_pyplot()
    paths = []
    for name in names:
        values = np.array([v for v in (to_float(row.get(name)) for row in rows) if v is not None and math.isfinite(v)])
        figure, axis = plt.subplots(figsize=(5, 3.5), dpi=90)
        if values.size:
            axis.hist(values, bins=int(np.clip(np.sqrt(values.size), 5, 50)), color="tab:blue", alpha=0.8)
        stats = f"n={values.size}" + (f", mean {values.mean():.3f}, sd {values.std():.3f}" if values.size else "")
        axis.set_title(f"{display_name(name)} ({stats})", fontsize=9)
        axis.set_xlabel(display_name(name))
        axis.set_ylabel("files")
        figure.tight_layout()
        path = plot_dir / f"hist_{name}.png"
        plot_dir.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
        plt.close(figure)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------------------------
# Output: partial files (JSON lines, appended and flushed), the atomic final table, resuming


def partial_path(output: Path, rank: int = 0, world: int = 1) -> Path:
    suffix = ".partial" if world == 1 else f".partial-{rank}-of-{world}"
    return output.with_name(output.name + suffix)


def partial_paths(output: Path) -> list[Path]:
    """Every partial file of `output`, from this run or an earlier one with another process count."""
    return sorted(output.parent.glob(glob.escape(output.name) + ".partial*"))


def done_marker(output: Path, rank: int, world: int) -> Path:
    return output.with_name(f"{output.name}.done-{rank}-of-{world}")


def drop_torn_tail(path: Path) -> int:
    """Cut a partial file after its last complete line (a killed run may have left half a row); bytes removed."""
    if not path.exists():
        return 0
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - 65536)
            handle.seek(start)
            block = handle.read(end - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        if keep < size:
            handle.truncate(keep)
        return size - keep


class PartialWriter:
    """Appends rows to a partial file as JSON lines, flushed and fsynced per batch."""

    def __init__(self, path: Path):
        drop_torn_tail(path)
        self.handle = open(path, "a", encoding="utf-8")

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.handle.write("".join(json.dumps(row) + "\n" for row in rows))
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


def is_own_output(path: Path) -> bool:
    """Whether `path` is an earlier output of this command (its columns include OWN_COLUMNS), or an empty file."""
    return path.stat().st_size == 0 or set(OWN_COLUMNS) <= set(table_columns(path))


def check_output(output: Path, inputs: Sequence[str], paths: Sequence[str], overwrite: bool) -> bool:
    """Refuse, before any scoring, an OUT that would cost data: one of the inputs, a file this command did not
    write (unless `overwrite`), a read-only or unwritable file, or a folder where nothing can be written.

    Returns whether OUT holds earlier rows of this command to resume from."""
    real = os.path.realpath(output)
    if real in {os.path.realpath(item) for item in (*inputs, *paths) if os.path.isfile(item)}:
        raise ValueError(f"--output {output} is one of the inputs; mtqnet score never writes over its inputs: give "
                         "another --output")
    own = False
    if os.path.lexists(output):
        if not output.is_file():
            raise ValueError(f"--output {output} exists and is not a file")
        if not output.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise ValueError(f"--output {output} is read-only; make it writable (chmod u+w) or give another --output")
        try:
            open(output, "r+b").close()  # an immutable file (chattr +i) refuses this even for root
        except OSError as error:
            raise ValueError(f"--output {output} cannot be written ({error.strerror}); give another --output") from None
        own = is_own_output(output)
        if not own and not overwrite:
            raise ValueError(f"--output {output} exists and is not an earlier `mtqnet score` output (its columns are "
                             f"{table_columns(output)[:8]}); give another --output, or --overwrite to replace it")
    probe = output.with_name(f".{output.name}.probe-{os.getpid()}")
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"cannot write in {output.parent} ({error.strerror}); give another --output") from None
    return own


def merge_outputs(output: Path, order: Sequence[str], columns: Sequence[str],
                  keep_earlier: bool = True) -> list[dict[str, Any]]:
    """OUT's earlier rows (when `keep_earlier`) plus every partial file, one row per path, in input order -> OUT
    (atomic).

    A partial row replaces OUT's row for its path, unless it has an error and the row it would replace has none.

    Rows of paths that are not among the current inputs (from an earlier run on other inputs) are kept, after the
    others. The partial files are removed once OUT is written.
    """
    by_path: dict[str, dict[str, Any]] = {}
    if keep_earlier and output.exists():
        by_path.update((row["path"], row) for row in read_table(output, required="path"))
    partials = partial_paths(output)
    for partial in partials:
        for row in read_jsonl(partial, required="path"):
            kept = by_path.get(row["path"])
            if kept is None or not row.get(ERROR_COLUMN) or kept.get(ERROR_COLUMN):  # a score beats an error
                by_path[row["path"]] = row
    position = {path: index for index, path in enumerate(order)}
    rows = sorted(by_path.values(), key=lambda row: position.get(row["path"], len(position)))
    extra = [c for c in columns_of(rows) if c not in columns]
    write_table(output, rows, [*columns, *extra])
    for partial in partials:
        partial.unlink()
    return rows


# ---------------------------------------------------------------------------------------------------------------
# The command


def parse_args(argv: list[str] | None = None, prog: str | None = "mtqnet score") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders, globs or manifests")
    parser.add_argument("--model", required=True,
                        help="a saved MTQ-Net folder, a shipped model (mtqnet/teacher-pesq-stoi-sdi) or a Hub repo id")
    parser.add_argument("--output", required=True, help="OUT.csv, OUT.tsv or OUT.jsonl")
    parser.add_argument("--extensions", default=",".join(AUDIO_EXTENSIONS), metavar="EXT,EXT,...",
                        help="audio extensions searched for in folders and globs, comma-separated, case-insensitive "
                             "(default: %(default)s)")
    parser.add_argument("--audio_column", default=AUDIO_COLUMN, help="manifest column with the audio paths")
    parser.add_argument("--batch_size", type=int, default=8, help="files (or windows) per model call")
    parser.add_argument("--num_workers", type=int, default=2, help="decoding worker processes (0: in this process)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the process's device)")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES),
                        help="weights' precision: bf16 is about 2x faster with an SSL encoder on CPU (scores differ "
                             "from fp32 by about 0.002 on average); fp16 for GPUs")
    parser.add_argument("--chunk_length_s", type=float, default=10.0,
                        help="files longer than this are scored in windows, reported in `chunks` (0: never)")
    parser.add_argument("--stride_length_s", type=float, default=None,
                        help="overlap between windows (default: a sixth of --chunk_length_s)")
    parser.add_argument("--plot_dir", default=None, help="write a frame-curve PNG per file and score histograms")
    parser.add_argument("--retry_errors", action="store_true", help="on resume, re-score files that had an error")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an --output that is not an earlier output of this command (by default such a "
                             "file is never touched)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    args.model = resolve_model(args.model)
    if Path(args.output).suffix.lower() not in TABLE_SUFFIXES:
        parser.error(f"--output must end with one of {', '.join(TABLE_SUFFIXES)}")
    if args.batch_size < 1 or args.num_workers < 0:
        parser.error("--batch_size must be at least 1 and --num_workers at least 0")
    if args.chunk_length_s < 0:
        parser.error("--chunk_length_s must be positive (or 0 for no windows)")
    if args.stride_length_s is not None and args.chunk_length_s and not 0 <= args.stride_length_s < args.chunk_length_s:
        parser.error("--stride_length_s must be at least 0 and less than --chunk_length_s")
    return args


def score_corpus(args: argparse.Namespace) -> Path:
    """Run the command in this process (one of several under a launcher); returns OUT."""
    state = ProcessState(cpu=args.device == "cpu")
    log = process_log(state)
    output = Path(args.output).absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    config = _load_config(args.model)
    if args.chunk_length_s and args.chunk_length_s > config.one_pass_limit_s:
        raise SystemExit(f"--chunk_length_s {args.chunk_length_s} exceeds the {config.one_pass_limit_s:g} s this model "
                         "scores in one pass in bounded memory (config.one_pass_limit_s)")
    paths = collect_inputs(args.inputs, [args.extensions], args.audio_column, log if state.is_main else _quiet)
    if not paths:
        raise SystemExit(f"No audio found in {args.inputs} (extensions: {args.extensions})")
    resume_output = check_output(output, args.inputs, paths, args.overwrite)
    done = files_done(output, paths, resume_output, args.retry_errors, state, log)
    state.barrier()  # stale markers are gone before anyone writes a new one

    mine = [path for index, path in enumerate(paths) if index % state.world == state.rank and path not in done]
    device = torch.device(args.device) if args.device else state.device
    if args.dtype == "fp16" and device.type == "cpu":
        raise SystemExit("--dtype fp16 needs a GPU (CPU kernels of this model are not all there in float16); use "
                         "--dtype bf16 on a CPU")
    plot_dir = Path(args.plot_dir) if args.plot_dir else None
    counts = score_files(mine, args, device, partial_path(output, state.rank, state.world), plot_dir, state, log)
    marker = done_marker(output, state.rank, state.world)
    marker.with_name(marker.name + ".tmp").write_text(json.dumps(counts))
    os.replace(marker.with_name(marker.name + ".tmp"), marker)  # whole, so the main process never reads half
    if not state.is_main:
        return output
    return merge_when_all_done(output, paths, list(config.target_names), resume_output, plot_dir, state, log)


def process_log(state: ProcessState) -> LogFunction:
    """A log on stderr that names the process (one of several under a launcher) and keeps the progress bars whole."""
    from tqdm.auto import tqdm

    prefix = f"[mtqnet-score {state.rank}/{state.world}] " if state.world > 1 else "[mtqnet-score] "

    def log(message: str) -> None:
        tqdm.write(prefix + message, file=sys.stderr)

    return log


def files_done(output: Path, paths: Sequence[str], resume_output: bool, retry_errors: bool, state: ProcessState,
               log: LogFunction) -> set[str]:
    """Resume: the files already in OUT or in any partial file (rows complete; a torn last line is ignored), but for
    those with an error when `retry_errors`. The main process also clears an earlier run's done markers and says
    which files it skips."""
    earlier = read_table(output, required="path") if resume_output else []
    sources = ([output] if earlier else []) + partial_paths(output)
    earlier += [row for partial in partial_paths(output) for row in read_jsonl(partial, required="path")]
    done = {row["path"] for row in earlier if not (retry_errors and row.get(ERROR_COLUMN))}
    if state.is_main:
        for marker in output.parent.glob(glob.escape(output.name) + ".done-*"):
            marker.unlink()
        skipped = [path for path in paths if path in done]
        if skipped:
            listed = ", ".join(skipped[:20]) + (f", ... and {len(skipped) - 20} more" if len(skipped) > 20 else "")
            log(f"resuming: {len(skipped)} of {len(paths)} file(s) already scored in "
                f"{', '.join(p.name for p in sources)}: skipping {listed}")
    return done


def score_files(mine: Sequence[str], args: argparse.Namespace, device: torch.device, partial: Path,
                plot_dir: Path | None, state: ProcessState, log: LogFunction) -> dict[str, int]:
    """Score this process's files into its partial file, batch by batch; {"scored": ..., "errors": ...}. The model is
    loaded only when there is something to score."""
    from tqdm.auto import tqdm

    counts = {"scored": 0, "errors": 0}
    if not mine:
        return counts
    model, extractor = load_model(args.model, device, args.dtype)
    scorer = CorpusScorer(model, extractor, device, args.batch_size, args.chunk_length_s or None,
                          args.stride_length_s)
    log(f"scoring {len(mine)} file(s) on {device} with {args.num_workers} decoding worker(s)")
    loader = decode_loader(mine, extractor, args.batch_size, args.num_workers, bool(args.chunk_length_s))
    writer = PartialWriter(partial)
    bar = tqdm(total=len(mine), unit="file", desc=f"scoring {state.rank}" if state.world > 1 else "scoring",
               position=state.rank, disable=args.no_progress, dynamic_ncols=True)
    try:
        for batch in loader:
            rows = scorer.score_batch(batch, plot_dir)
            writer.write(rows)
            errors = sum(bool(row[ERROR_COLUMN]) for row in rows)
            counts["errors"] += errors
            counts["scored"] += len(rows) - errors
            bar.update(len(rows))
            bar.set_postfix(errors=counts["errors"], refresh=False)
    finally:
        bar.close()
        writer.close()
    return counts


def merge_when_all_done(output: Path, paths: Sequence[str], names: Sequence[str], resume_output: bool,
                        plot_dir: Path | None, state: ProcessState, log: LogFunction) -> Path:
    """The main process, once every process has left its done marker: their partial files merged into OUT (with
    OUT's earlier rows when resuming), the markers removed, the histograms drawn."""
    markers = [done_marker(output, rank, state.world) for rank in range(state.world)]
    wait_for_markers(markers)
    totals = {key: sum(json.loads(m.read_text())[key] for m in markers) for key in ("scored", "errors")}
    columns = [*FILE_COLUMNS, *names, CHUNKS_COLUMN, ERROR_COLUMN, WARNING_COLUMN]
    try:
        rows = merge_outputs(output, paths, columns, keep_earlier=resume_output)
    except OSError as error:
        kept = ", ".join(str(path) for path in partial_paths(output))
        raise OSError(f"could not write {output} ({error}); every row scored so far is kept in {kept}: rerun the "
                      "same command once the output can be written, and they are merged") from error
    for marker in markers:
        marker.unlink()
    if plot_dir is not None:
        plot_histograms(plot_dir, rows, names)
    log(f"wrote {output}: {len(rows)} row(s); this run scored {totals['scored']} file(s), "
        f"{totals['errors']} with an error")
    return output


def _load_config(model: str):
    from ..model.configuration_mtqnet import MTQNetConfig

    return MTQNetConfig.from_pretrained(model)


def _quiet(message: str) -> None:
    pass


def main(argv: list[str] | None = None, prog: str | None = "mtqnet score") -> None:
    """`mtqnet score` (and its alias `mtqnet-score`); returns None so that the exit status is 0."""
    score_corpus(parse_args(argv, prog))


if __name__ == "__main__":
    main()
