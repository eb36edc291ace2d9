"""The main job on the embedded default: the paper's MPL pipeline end to end, offline, on a corpus it builds itself.

    mtqnet demo --output_dir outputs/demo [--quick] [--ssl_model NAME_OR_DIR] [--tts auto]

Stages (each shows progress; a rerun skips the stages already done and resumes an interrupted one):
 1. speech   synthesise clean sentences offline (piper with the CC0 joe voice from .venv-tts, else espeak-ng);
 2. corpus   noisy, enhanced and coded versions with aligned clean references (`mtqnet corpus`); the test
             split has voices, noises (babble, hum) and systems (RNNoise, FFmpeg afftdn, GSM) unseen in training,
             beside seen ones;
 3. labels   split the training part into a teacher part and a student part (by recording); intrusive PESQ / STOI /
             SDI for the teacher part and the test part; DNSMOS P.835 stand-in labels for the test part and for a
             limited number of student clips (the labelled ones, some kept for validation);
 4. teacher  train the teacher (MOSA-Net trunk, `small` preset) on the intrusive labels (`mtqnet train`, scratch);
 5. pseudo   annotate every student clip with the teacher's PESQ / STOI / SDI predictions (MPL stage 1);
 6. students train MTQ-Net with each method (default: scratch and MPL; also kt, mpl_kt) on one budget (optimiser
             steps), seed and validation set: scratch / KT on the labelled clips, MPL on every student clip, with
             pseudo labels for all and primary labels where they exist, at least half of each epoch's draws
             labelled clips (MPL stage 2);
 7. report   the paper-layout table (LCC / SRCC / MSE per target per method) on the test part: results.md, and
             scatter plots;
 8. final    save the MPL model (auxiliary heads dropped) to OUTPUT/model, score a few test files through
             `pipeline("speech-quality-assessment")` and through `AutoModel.from_pretrained(...,
             trust_remote_code=True)` in a fresh process, and plot one file's frame-level S/N/G curves.

Labels, plainly: 3QUEST (the paper's S-MOS / N-MOS / G-MOS) is a paid tool and cannot run here. The primary
labels are DNSMOS P.835 stand-ins: SIG as s_mos, BAK as n_mos, OVRL as g_mos. The scores the final model gives are
therefore predictions of DNSMOS P.835 on this synthetic corpus, not of 3QUEST.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..tables import read_table, to_float, write_table
from ..vocabulary import (
    ERROR_COLUMN,
    METHOD_DISPLAY_NAMES,
    PRIMARY_TARGETS,
    PSEUDO_LABEL_METHODS,
    PSEUDO_LABEL_TARGETS,
    TEACHER_TRUNK_METHODS,
)

STAND_IN_COLUMNS = {"s_mos": "dnsmos_sig", "n_mos": "dnsmos_bak", "g_mos": "dnsmos_ovrl"}
STAGES = ("speech", "corpus", "labels", "teacher", "pseudo", "students", "report", "final")
STAND_IN_LABELS = ("DNSMOS P.835 (speechmos) SIG, BAK and OVRL of the demo's synthetic corpus, as S-MOS, N-MOS and "
                   "G-MOS")
STAND_IN_NOTE = ("Primary labels are stand-ins: DNSMOS P.835 SIG, BAK and OVRL (speechmos) as S-MOS, N-MOS and "
                 "G-MOS. 3QUEST, the paper's labeller, is a paid tool that cannot run here, so these numbers say how "
                 "well each method learns DNSMOS P.835 on a synthetic corpus, not 3QUEST.")


@dataclasses.dataclass(frozen=True)
class DemoSize:
    """How much data and training one run uses."""

    recordings: int  # synthesised files of two sentences each
    voices: int
    utterances: int
    test_fraction: float
    teacher_fraction: float  # of the training split's sentence recordings
    labelled_clips: int  # student clips with primary labels; the rest of the student part has pseudo labels only
    validation_fraction: float  # of the labelled clips, shared by every student for model selection
    teacher_epochs: int
    student_epochs: int  # epochs over the whole student part; every method gets the same number of steps
    batch_size: int = 8
    learning_rate: float = 1e-3
    scored_files: int = 4


SIZES = {
    # About 17 minutes on 2 CPU cores (README): a few hundred labelled clips, as in a small listening test.
    "full": DemoSize(recordings=200, voices=8, utterances=1200, test_fraction=0.2, teacher_fraction=0.55,
                     labelled_clips=150, validation_fraction=0.15, teacher_epochs=10, student_epochs=15),
    # A smoke run of the same pipeline in under 2 minutes (the tests use it): numbers mean nothing.
    "quick": DemoSize(recordings=24, voices=4, utterances=120, test_fraction=0.25, teacher_fraction=0.55,
                      labelled_clips=16, validation_fraction=0.25, teacher_epochs=2, student_epochs=2,
                      scored_files=2),
}

# Conditions: the test split adds noises and systems never seen in training to the seen ones.
TRAIN_NOISES = ("white", "pink", "brown", "speech_shaped")
TEST_NOISES = ("babble", "hum")
TRAIN_SYSTEMS = ("none", "noisereduce", "sox_noisered", "opus", "mp3")
TEST_SYSTEMS = ("rnnoise", "ffmpeg_afftdn", "gsm")
SNRS = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0)
# Every clip is a random 2.5 s segment of a two-sentence recording. DNSMOS tiles a clip to at least 9.01 s and
# scores 9.01 s windows at 1 s hops: 2.5 s tiles to exactly 10 s, one window, the cheapest length (a 3.5 s clip
# tiles to 14 s and costs five windows).
CLIP_SECONDS = 2.5
SAMPLING_RATE = 16000  # the corpus's and the model's rate


class DemoError(RuntimeError):
    """A demo run that cannot go on, with what to do about it."""


# --------------------------------------------------------------------------------------------------- run state


class RunState:
    """`OUTPUT/demo_state.json`: the run's settings, its student methods and the stages done (with their seconds).

    Other settings in the same folder are refused; other `--methods` are not: the students stage then trains just
    the methods without results, and report and final are redone.
    """

    RESTARTED_BY_METHODS = ("students", "report", "final")

    def __init__(self, output_dir: Path, settings: dict[str, Any], methods: list[str]):
        self.path = output_dir / "demo_state.json"
        self.settings, self.methods = settings, methods
        self.stages: dict[str, float] = {}
        if self.path.exists():
            state = self.load(output_dir)
            if state["settings"] != settings:
                changed = sorted(k for k in settings if state["settings"].get(k) != settings[k])
                raise DemoError(f"{output_dir} holds a demo run with other settings ({', '.join(changed)}); use "
                                "another --output_dir, or --overwrite to start this one again")
            self.stages = state["stages"]
            if state.get("methods") != methods:
                for stage in self.RESTARTED_BY_METHODS:
                    self.stages.pop(stage, None)

    @staticmethod
    def load(output_dir: Path) -> dict[str, Any]:
        """The recorded state of a demo folder: {"settings": ..., "methods": ..., "stages": ...}."""
        path = output_dir / "demo_state.json"
        if not path.is_file():
            raise DemoError(f"{output_dir} holds no demo run (no demo_state.json)")
        return json.loads(path.read_text())

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def record(self, stage: str, seconds: float) -> None:
        self.stages[stage] = round(seconds, 1)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"settings": self.settings, "methods": self.methods, "stages": self.stages},
                                        indent=2))
        temporary.replace(self.path)


# ------------------------------------------------------------------------------------------------ label tables


def read_rows(path: Path) -> list[dict[str, str]]:
    return read_table(path, required="path")


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """`tables.write_table` with the rows' own columns; an empty table means the corpus is too small."""
    if not rows:
        raise DemoError(f"No rows for {path}: the corpus is too small for this split")
    write_table(path, rows, list(rows[0]))


def split_training_part(rows: list[dict[str, str]], teacher_fraction: float, seed: int
                        ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(teacher rows, student rows) of the training split, by sentence recording: no recording is in both."""
    recordings = sorted({row["source_file"] for row in rows})
    order = np.random.default_rng([seed, 2024]).permutation(len(recordings))
    cut = min(len(recordings) - 1, max(1, round(teacher_fraction * len(recordings))))
    teacher_recordings = {recordings[i] for i in order[:cut]}
    teacher = [row for row in rows if row["source_file"] in teacher_recordings]
    student = [row for row in rows if row["source_file"] not in teacher_recordings]
    return teacher, student


def stand_in_mos(value: str) -> str:
    """A DNSMOS value as a stand-in MOS: clipped into 1-5, the MOS heads' range (DNSMOS P.835 SIG gave 0.89 on real
    speech); values inside it and empty cells (a clip DNSMOS could not score) are kept as they are."""
    number = to_float(value)
    if number != number or 1.0 <= number <= 5.0:
        return "" if number != number else value
    return f"{min(5.0, max(1.0, number)):g}"


def add_stand_in_labels(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Copy DNSMOS P.835 SIG / BAK / OVRL into the primary label columns s_mos / n_mos / g_mos (`stand_in_mos`)."""
    return [{**row, **{target: stand_in_mos(row[column]) for target, column in STAND_IN_COLUMNS.items()}}
            for row in rows]


def merge_label_columns(rows: list[dict[str, str]], annotated: list[dict[str, str]], columns: Sequence[str]
                        ) -> list[dict[str, str]]:
    """Add `columns` of `annotated` (same clips, same order) to `rows`."""
    if len(rows) != len(annotated) or any(os.path.normpath(row["path"]) != os.path.normpath(other["path"])
                                          for row, other in zip(rows, annotated)):
        raise DemoError(f"Annotation returned {len(annotated)} rows for {len(rows)} clips, or other clips")
    return [{**row, **{column: other[column] for column in columns}} for row, other in zip(rows, annotated)]


def annotate(manifest: Path, output: Path, teacher_name: str, clean_column: str | None = None,
             num_proc: int | None = None) -> list[dict[str, str]]:
    """Run `mtqnet annotate`'s `annotate_file` (resumable shards) and return the annotated rows."""
    from tqdm.auto import tqdm

    from ..labels.annotate import annotate_file, make_teacher

    teacher = make_teacher(teacher_name, "path", clean_column)
    label = Path(teacher_name).name if Path(teacher_name).exists() else teacher_name
    annotate_file(str(manifest), str(output), teacher, shard_size=200, batch_size=8, num_proc=num_proc,
                  progress=lambda shards: tqdm(shards, desc=f"{label} labels for {manifest.stem}", unit="shard"))
    annotated = read_rows(output)
    failed = [row for row in annotated if row.get(ERROR_COLUMN)]
    if failed:
        print(f"warning: {len(failed)} clip(s) of {manifest.name} got no {label} labels, e.g. "
              f"{failed[0]['path']}: {failed[0][ERROR_COLUMN]}", file=sys.stderr)
    return annotated


# -------------------------------------------------------------------------------------------------- training


def train_arguments(args: argparse.Namespace, size: DemoSize, output_dir: Path, train_file: Path, method: str,
                    targets: Sequence[str], schedule: Sequence[str], test_file: Path,
                    validation_file: Path | None = None, teacher: Path | None = None) -> list[str]:
    """`mtqnet train`'s command line for one model of the demo; `schedule` sets the budget (epochs or steps)."""
    arguments = [
        "--train_file", str(train_file), "--test_file", str(test_file), "--output_dir", str(output_dir),
        "--preset", args.preset, "--method", method, "--target_columns", *targets,
        "--pseudo_label_columns", *PSEUDO_LABEL_TARGETS, *schedule,
        "--per_device_train_batch_size", str(size.batch_size), "--per_device_eval_batch_size", str(size.batch_size),
        "--learning_rate", str(size.learning_rate), "--lr_scheduler_type", "cosine", "--warmup_steps", "0.05",
        "--seed", str(args.seed), "--data_seed", str(args.seed), "--save_total_limit", "1",
        # The checkpoint with the best mean LCC over the primary targets on the validation clips is kept.
        "--load_best_model_at_end", "true", "--metric_for_best_model", "lcc", "--greater_is_better", "true",
        "--logging_steps", "10", "--report_to", "none", "--skip_bad_files", "--dataloader_pin_memory", "false",
        "--ssl_model", args.ssl_model or "none",
    ]
    if validation_file is not None:
        arguments += ["--validation_file", str(validation_file)]
    if args.freeze_ssl:
        arguments.append("--freeze_ssl")
    if teacher is not None:
        arguments += ["--teacher", str(teacher)]
    return arguments


def run_training(arguments: list[str]) -> dict[str, float]:
    """`mtqnet train` in this process, resuming from the run's last checkpoint when an earlier run was cut off."""
    from ..training import recipe

    output_dir = Path(arguments[arguments.index("--output_dir") + 1])
    results = recipe.train_resuming(arguments)
    for checkpoint in output_dir.glob("checkpoint-*"):
        shutil.rmtree(checkpoint)  # the finished model is saved beside them; keep the demo folder small
    return results


# ---------------------------------------------------------------------------------------------------- stages


def stage_speech(args, size, paths) -> None:
    from ..corpus.tts import synthesise_speech

    info = synthesise_speech(paths["speech"], size.recordings, size.voices, args.tts, args.seed, sentences_per_file=2)
    print(f"Synthesised {info['count']} recordings with {info['engine']}")


def stage_corpus(args, size, paths) -> None:
    from ..corpus.builder import build_corpus
    from ..corpus.tts import SPEAKER_PATTERN

    report = build_corpus(
        paths["speech"], paths["corpus"], noises=list(TRAIN_NOISES), snrs=SNRS, count=size.utterances,
        seed=args.seed, systems=list(TRAIN_SYSTEMS), test_noises=list(TEST_NOISES), test_systems=list(TEST_SYSTEMS),
        test_fraction=size.test_fraction, test_seen_conditions=True, speaker_pattern=SPEAKER_PATTERN,
        level_jitter_db=6.0, max_duration_s=CLIP_SECONDS,
    )
    for name, reason in report.systems_unavailable.items():
        print(f"warning: system {name} is not available here and was skipped: {reason}", file=sys.stderr)


def stage_labels(args, size, paths) -> None:
    """Teacher / student / test parts; intrusive labels for teacher and test; stand-in labels for the labelled clips."""
    # Absolute audio paths from here on: the label tables live in another folder than the corpus manifest.
    rows = [{**row, **{column: str(paths["corpus"] / row[column]) for column in ("path", "clean_path")}}
            for row in read_rows(paths["corpus"] / "manifest.csv")]
    train_rows = [row for row in rows if row["split"] == "train"]
    test_rows = [row for row in rows if row["split"] == "test"]
    teacher_rows, student_rows = split_training_part(train_rows, size.teacher_fraction, args.seed)
    roles = student_roles(len(student_rows), size, args.seed)
    corpus, labels = paths["corpus"], paths["labels"]
    labelled_rows = [row for row, role in zip(student_rows, roles) if role != "unlabelled"]
    for name, part in (("teacher_part", teacher_rows), ("labelled_part", labelled_rows), ("test_part", test_rows)):
        write_rows(corpus / f"{name}.csv", part)
    labels.mkdir(parents=True, exist_ok=True)
    teacher = annotate(corpus / "teacher_part.csv", labels / "teacher_intrusive.csv", "intrusive", "clean_path")
    intrusive_test = annotate(corpus / "test_part.csv", labels / "test_intrusive.csv", "intrusive", "clean_path")
    dnsmos_labelled = annotate(corpus / "labelled_part.csv", labels / "labelled_dnsmos.csv", "dnsmos")
    dnsmos_test = annotate(corpus / "test_part.csv", labels / "test_dnsmos.csv", "dnsmos")
    write_rows(labels / "teacher.csv", teacher)
    write_rows(labels / "test.csv", merge_label_columns(add_stand_in_labels(dnsmos_test), intrusive_test,
                                                        PSEUDO_LABEL_TARGETS))
    stand_in = {row["path"]: row for row in add_stand_in_labels(merge_label_columns(labelled_rows, dnsmos_labelled,
                                                                                    STAND_IN_COLUMNS.values()))}
    empty = dict.fromkeys([*STAND_IN_COLUMNS.values(), *PRIMARY_TARGETS], "")
    write_rows(labels / "student_primary.csv", [
        {**row, "role": role, **({key: stand_in[row["path"]][key] for key in empty} if role != "unlabelled" else empty)}
        for row, role in zip(student_rows, roles)
    ])


def student_roles(count: int, size: DemoSize, seed: int) -> list[str]:
    """Per student clip: `train` or `validation` (both with primary labels) or `unlabelled` (pseudo labels only)."""
    labelled = min(count, size.labelled_clips)
    validation = max(1, round(size.validation_fraction * labelled))
    if labelled - validation < 2:
        raise DemoError(f"The student part has {count} clips: too few to label {validation + 2} of them")
    roles = ["train"] * (labelled - validation) + ["validation"] * validation + ["unlabelled"] * (count - labelled)
    order = np.random.default_rng([seed, 835]).permutation(count)
    return [roles[position] for position in np.argsort(order)]


def stage_teacher(args, size, paths) -> None:
    run_training(train_arguments(args, size, paths["teacher"], paths["labels"] / "teacher.csv", "scratch",
                                 PSEUDO_LABEL_TARGETS, ["--num_train_epochs", str(size.teacher_epochs),
                                                  "--eval_strategy", "epoch", "--save_strategy", "epoch"],
                                 paths["labels"] / "test.csv"))


def stage_pseudo(args, size, paths) -> None:
    """The teacher's PESQ / STOI / SDI predictions for every student clip, and the students' data files."""
    labels = paths["labels"]
    annotated = annotate(labels / "student_primary.csv", labels / "student_teacher.csv", str(paths["teacher"]))
    # Only the teacher's predictions become pseudo labels: the student part never sees intrusive scores.
    student = merge_label_columns(read_rows(labels / "student_primary.csv"), annotated, PSEUDO_LABEL_TARGETS)
    write_rows(labels / "student.csv", student)
    write_rows(labels / "validation.csv", [row for row in student if row["role"] == "validation"])
    write_rows(labels / "student_labelled.csv", [row for row in student if row["role"] == "train"])
    write_rows(labels / "student_all.csv", [row for row in student if row["role"] != "validation"])


def student_train_file(paths, method: str) -> Path:
    """MPL trains on every student clip (pseudo labels for all, primary labels for the labelled ones); scratch and
    KT have nothing to learn from a clip without primary labels, so they train on the labelled clips alone."""
    return paths["labels"] / ("student_all.csv" if method in PSEUDO_LABEL_METHODS else "student_labelled.csv")


def student_steps_per_epoch(size: DemoSize, paths: dict[str, Path]) -> int:
    """Optimiser steps of one epoch over MPL's data (every student clip but the validation ones)."""
    return math.ceil(len(read_rows(paths["labels"] / "student_all.csv")) / size.batch_size)


def train_student(args, size: DemoSize, paths: dict[str, Path], method: str, output: Path) -> None:
    """One student. One budget for every method: the optimiser steps of `student_epochs` epochs over the whole
    student part (MPL's data), evaluated and saved once per such epoch."""
    steps_per_epoch = student_steps_per_epoch(size, paths)
    schedule = ["--max_steps", str(steps_per_epoch * size.student_epochs), "--eval_strategy", "steps",
                "--eval_steps", str(steps_per_epoch), "--save_strategy", "steps", "--save_steps", str(steps_per_epoch)]
    teacher = paths["teacher"] if method in TEACHER_TRUNK_METHODS else None
    run_training(train_arguments(args, size, output, student_train_file(paths, method), method, PRIMARY_TARGETS,
                                 schedule, paths["labels"] / "test.csv", paths["labels"] / "validation.csv", teacher))


def stage_students(args, size, paths) -> None:
    for method in args.methods:
        output = paths["runs"] / method
        if (output / "eval_results.json").exists():
            continue  # trained by an earlier run of this stage
        print(f"\n=== Student: {METHOD_DISPLAY_NAMES[method]} ===")
        train_student(args, size, paths, method, output)


def test_metrics(run_dir: Path) -> dict[str, float]:
    results = json.loads((run_dir / "eval_results.json").read_text())
    return {key: (math.nan if value is None else value) for key, value in results.items() if key.startswith("test_")}


def reading(metrics: dict[str, dict[str, float]]) -> str:
    """A plain-words comparison of MPL (and KT) against scratch on every target, from the numbers themselves."""
    from ..vocabulary import display_name

    if "scratch" not in metrics or len(metrics) < 2:
        return "Only one method was trained: nothing to compare."
    lines = []
    for method in (m for m in metrics if m != "scratch"):
        parts = []
        for target in PRIMARY_TARGETS:
            lcc = metrics[method][f"test_{target}_lcc"] - metrics["scratch"][f"test_{target}_lcc"]
            mse = metrics[method][f"test_{target}_mse"] - metrics["scratch"][f"test_{target}_mse"]
            parts.append(f"{display_name(target)} LCC {lcc:+.3f}, MSE {mse:+.3f}")
        better = sum(metrics[method][f"test_{t}_lcc"] > metrics["scratch"][f"test_{t}_lcc"] for t in PRIMARY_TARGETS)
        lines.append(f"- {METHOD_DISPLAY_NAMES[method]} against scratch: {'; '.join(parts)} "
                     f"(higher LCC on {better} of {len(PRIMARY_TARGETS)} targets).")
    return "\n".join(lines)


def stage_report(args, size, paths) -> None:
    from ..training.reporting import results_table

    metrics = {method: test_metrics(paths["runs"] / method) for method in args.methods}
    table = results_table({METHOD_DISPLAY_NAMES[m]: values for m, values in metrics.items()}, PRIMARY_TARGETS)
    teacher_table = results_table({"teacher (MOSA-Net trunk, intrusive labels)": test_metrics(paths["teacher"])},
                                  PSEUDO_LABEL_TARGETS)
    info = json.loads((paths["corpus"] / "corpus_info.json").read_text())
    counts = {name: len(read_rows(paths["labels"] / f"{name}.csv"))
              for name in ("teacher", "student", "student_labelled", "validation", "test")}
    steps = student_steps_per_epoch(size, paths) * size.student_epochs
    comparison = reading(metrics)
    tts = json.loads((paths["speech"] / "tts_settings.json").read_text())
    text = "\n".join([
        "# MTQ-Net demo results (test part)", "",
        table, "",
        "Cells: LCC / SRCC / MSE against the stand-in labels of the test part.", "",
        f"**{STAND_IN_NOTE}**", "",
        "## Reading", "", comparison, "",
        "## Set-up", "",
        f"- Corpus: {info['utterances']} clips of {CLIP_SECONDS:g} s cut from {size.recordings} two-sentence "
        f"recordings synthesised with {tts['engine']} ({size.voices} voices); noises "
        f"{', '.join(info['config']['train_noises'])} and systems {', '.join(info['config']['train_systems'])} in "
        f"training; the test part ({counts['test']} clips, voices unseen in training) adds "
        f"{', '.join(TEST_NOISES)} and {', '.join(TEST_SYSTEMS)}; SNR {', '.join(f'{s:g}' for s in SNRS)} dB.",
        f"- Teacher: `{args.preset}` MOSA-Net trunk trained from scratch on intrusive PESQ / STOI / SDI of "
        f"{counts['teacher']} clips for {size.teacher_epochs} epochs.",
        f"- Students: `{args.preset}` MTQ-Net. The student part has {counts['student']} other clips, of which "
        f"{counts['student_labelled'] + counts['validation']} have (stand-in) primary labels: "
        f"{counts['student_labelled']} for training, {counts['validation']} for validation (model selection, "
        "shared by every method). Scratch and KT train on the labelled clips; MPL trains on every student clip but "
        "the validation ones, with the teacher's pseudo labels for all of them and primary labels where they exist, "
        "drawn so that at least half of each epoch's clips are labelled ones (`--labelled_batch_share 0.5`, the "
        "default). "
        f"Same budget for all: {steps} optimiser steps of batch {size.batch_size} ({size.student_epochs} epochs of "
        f"MPL's data), learning rate {size.learning_rate:g} (cosine), seed {args.seed}, Huber delta 1, alpha 1; "
        "the checkpoint with the best validation LCC (mean over the primary targets) is kept.",
        f"- SSL encoder: {args.ssl_model or 'none (the offline default)'}.", "",
        "## Teacher on the test part (intrusive targets)", "",
        teacher_table, "",
        "Scatter plots: `plots/`. Per-clip predictions: `runs/<method>/predictions.csv`.", "",
    ])
    (paths["output"] / "results.md").write_text(text)
    plots = paths["output"] / "plots"
    plots.mkdir(exist_ok=True)
    for method in args.methods:
        for png in (paths["runs"] / method).glob("scatter_*.png"):
            shutil.copyfile(png, plots / f"{method}_{png.name}")
    print("\n" + table + "\n\n" + STAND_IN_NOTE + "\n\n" + comparison)


def frame_demo_file(paths, test_rows: list[dict[str, str]], count: int = 3
                    ) -> tuple[Path, np.ndarray, list[tuple[float, str]]]:
    """One file of `count` test clips of falling stand-in G-MOS, back to back (its frame curves should fall too):
    (path, waveform at 16 kHz, segment starts with their conditions)."""
    import soundfile

    from ..model.feature_extraction_mtqnet import load_audio

    rate = SAMPLING_RATE
    scored = sorted((row for row in test_rows if _number(row["g_mos"]) is not None),
                    key=lambda row: -float(row["g_mos"]))
    picks = [scored[round(i * (len(scored) - 1) / max(1, count - 1))] for i in range(count)]
    pieces, segments, position = [], [], 0.0
    for row in picks:
        audio = load_audio(row["path"], None, rate)
        pieces.append(audio / max(1e-9, float(np.max(np.abs(audio)))) * 0.5)
        segments.append((position, f"{row['noise_type']} {float(row['snr_db']):g} dB, {row['system']}"))
        position += audio.size / rate
    path, waveform = paths["output"] / "frame_demo.wav", np.concatenate(pieces)
    soundfile.write(path, waveform, rate)
    return path, waveform, segments


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def stage_final(args, size, paths) -> None:
    from transformers import pipeline

    from .. import MTQNetFeatureExtractor, MTQNetForSpeechQualityAssessment
    from ..sharing.model_card import CardOptions, render_card
    from .score import plot_frame_curve

    source = paths["runs"] / ("mpl" if "mpl" in args.methods else args.methods[-1])  # the paper's method
    model = MTQNetForSpeechQualityAssessment.from_pretrained(source).drop_auxiliary_heads()
    model.save_pretrained(paths["model"])
    MTQNetFeatureExtractor.from_model_config(model.config).save_pretrained(paths["model"])
    # Its card says plainly what the labels were (the web app shows that paragraph beside the scores).
    card = render_card(source, CardOptions(repo_id="local/mtqnet-demo", method=source.name, stand_in_labels=True,
                                           labels_description=STAND_IN_LABELS, dataset_name="demo test part"))
    (paths["model"] / "README.md").write_text(str(card), encoding="utf-8")
    print(f"Saved the {source.name} model (auxiliary heads dropped) and its card to {paths['model']}")

    test_rows = read_rows(paths["labels"] / "test.csv")
    chosen = test_rows[:: max(1, len(test_rows) // size.scored_files)][: size.scored_files]
    files = [row["path"] for row in chosen]
    scorer = pipeline("speech-quality-assessment", model=str(paths["model"]))
    scores = {}
    for row, path in zip(chosen, files):
        result = scorer(path)
        scores[Path(path).name] = {
            "mtqnet": {t: result[t] for t in PRIMARY_TARGETS},
            "stand_in_labels": {t: _number(row[t]) for t in PRIMARY_TARGETS},
        }
    remote = remote_code_scores(paths["model"], files, paths["output"])
    difference = max(abs(remote[i][k] - scores[Path(f).name]["mtqnet"][t])
                     for i, f in enumerate(files) for k, t in enumerate(PRIMARY_TARGETS))

    demo_path, waveform, segments = frame_demo_file(paths, test_rows)
    result = scorer(str(demo_path))
    plot_frame_curve(paths["output"] / "frame_scores.png", "Frame-level scores of three test clips back to back "
                     "(stand-in G-MOS high to low)", result, waveform, SAMPLING_RATE, PRIMARY_TARGETS, spectrogram=True,
                     segments=segments)
    summary = {"model": str(paths["model"]), "files": scores, "remote_code_max_difference": difference,
               "frame_demo": {"file": demo_path.name, **{t: result[t] for t in PRIMARY_TARGETS}}}
    (paths["output"] / "scores.json").write_text(json.dumps(summary, indent=2))
    print("\nScores from pipeline('speech-quality-assessment'), beside the stand-in labels:")
    print("| file | " + " | ".join(f"{t} (label)" for t in PRIMARY_TARGETS) + " |")
    print("|---|" + "---|" * len(PRIMARY_TARGETS))
    for name, values in scores.items():
        cells = [f"{values['mtqnet'][t]:.2f} ({_format(values['stand_in_labels'][t])})" for t in PRIMARY_TARGETS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"AutoModel.from_pretrained(trust_remote_code=True) in a fresh process: max difference {difference:.2e}")


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def remote_code_scores(model_dir: Path, files: list[str], cwd: Path) -> list[list[float]]:
    """Scores of `files` from a fresh process that loads the folder's own code (trust_remote_code)."""
    check = (
        "import json, sys; from transformers import AutoModel, AutoFeatureExtractor;"
        f"m = AutoModel.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval();"
        f"fe = AutoFeatureExtractor.from_pretrained({str(model_dir)!r}, trust_remote_code=True);"
        f"print(json.dumps([m(**fe(f, return_tensors='pt')).logits[0].tolist() for f in {files!r}]))"
    )
    completed = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=cwd)
    if completed.returncode != 0:
        raise DemoError(f"Loading {model_dir} with trust_remote_code failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


STAGE_FUNCTIONS: dict[str, Callable] = {
    "speech": stage_speech, "corpus": stage_corpus, "labels": stage_labels, "teacher": stage_teacher,
    "pseudo": stage_pseudo, "students": stage_students, "report": stage_report, "final": stage_final,
}


# ------------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None, prog: str | None = "mtqnet demo") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/demo"),
                        help="where everything goes (default outputs/demo); a rerun skips the stages done")
    parser.add_argument("--quick", action="store_true", help="a 2-minute smoke run of every stage (tiny corpus)")
    parser.add_argument("--methods", nargs="+", choices=list(METHOD_DISPLAY_NAMES), default=["scratch", "mpl"],
                        help="student methods to train and compare (default: scratch mpl); a rerun with more "
                             "methods trains just the new ones")
    parser.add_argument("--ssl_model", default=None,
                        help="SSL encoder for teacher and students: a Hub name (microsoft/wavlm-base-plus) or a local "
                             "folder; default none (offline)")
    parser.add_argument("--freeze_ssl", action="store_true", help="keep the SSL encoder fixed")
    parser.add_argument("--preset", default="small", help="model size for teacher and students (default small)")
    parser.add_argument("--tts", choices=("auto", "piper", "espeak-ng"), default="auto",
                        help="speech synthesiser (auto: piper when .venv-tts has it, else espeak-ng)")
    parser.add_argument("--seed", type=int, default=0, help="one seed for corpus, splits, training")
    parser.add_argument("--overwrite", action="store_true", help="delete an earlier demo run in --output_dir first")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, prog: str | None = "mtqnet demo") -> int:
    args = parse_args(argv)
    args.output_dir = args.output_dir.resolve()  # the remote-code check runs in another working directory
    size = SIZES["quick" if args.quick else "full"]
    output = args.output_dir
    if args.overwrite and (output / "demo_state.json").exists():
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    paths = {"output": output, "speech": output / "speech", "corpus": output / "corpus", "labels": output / "labels",
             "teacher": output / "teacher", "runs": output / "runs", "model": output / "model"}
    settings = {"size": dataclasses.asdict(size), "ssl_model": args.ssl_model, "freeze_ssl": args.freeze_ssl,
                "preset": args.preset, "tts": args.tts, "seed": args.seed}
    try:
        state = RunState(output, settings, args.methods)
        started = time.perf_counter()
        for number, stage in enumerate(STAGES, 1):
            if state.done(stage):
                print(f"[{number}/{len(STAGES)}] {stage}: done in an earlier run ({state.stages[stage]:.0f} s), skipped")
                continue
            print(f"\n[{number}/{len(STAGES)}] {stage}")
            stage_started = time.perf_counter()
            STAGE_FUNCTIONS[stage](args, size, paths)
            state.record(stage, time.perf_counter() - stage_started)
    except DemoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    total = sum(state.stages.values())
    print(f"\nDone: {output}/results.md, {output}/model, {output}/plots, {output}/frame_scores.png "
          f"(stages took {total / 60:.1f} min in all; this run {(time.perf_counter() - started) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
