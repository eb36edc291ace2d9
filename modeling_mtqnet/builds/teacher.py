"""The shipped teacher's own stages (`mtqnet build-pretrained teacher-pesq-stoi-sdi`): after the data stages,
`labels` (intrusive PESQ / STOI / SDI of the clips it trains and is tested on) and `train` (`mtqnet train --method
scratch --target_columns pesq stoi sdi`, the MOSA-Net teacher), then `evaluate` and `ship` (`builds/stages.py`)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..sharing.model_card import CardOptions
from ..tables import columns_of, read_table, to_float, write_table
from ..training.recipe import KEEP_BEST_VALIDATION_LCC
from ..vocabulary import PSEUDO_LABEL_TARGETS
from .recipes import TeacherRecipe
from .stages import (
    build_ledger,
    check_model_dir,
    data_stages,
    evaluate_stage,
    located_row,
    pool_summary,
    ship_stage,
    speaker_languages,
)

#: The stages of the teacher's build, in order (the S/N/G model's: `builds/student.py`).
STAGES = ("packages", "pool", "corpus", "labels", "train", "evaluate", "ship")
#: What the teacher's labels are, in its card.
TEACHER_LABELS = ("intrusive PESQ (ITU-T P.862.2 wide-band), STOI and SDI computed against the clean reference of "
                  "every corpus clip")


def label_tables(manifest: Path, labelled: Path, languages: dict[str, str], out_dir: Path) -> dict[str, int]:
    """train.csv and test.csv (paths absolute, a `language` column) from the labelled manifest; clips whose labels
    failed (an `error`) are left out and counted."""
    rows = read_table(labelled)
    kept: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    failed = 0
    for row in rows:
        if row.get("error") or any(math.isnan(to_float(row.get(t))) for t in PSEUDO_LABEL_TARGETS):
            failed += 1
            continue
        row = located_row(row, manifest.parent, languages)
        kept[row["split"]].append(row)
    for split, split_rows in kept.items():
        write_table(out_dir / f"{split}.csv", split_rows, columns_of(split_rows) or ["path"])
    return {"train": len(kept["train"]), "test": len(kept["test"]), "failed": failed}


def clips_to_label(recipe: TeacherRecipe, manifest: Path, labels_dir: Path) -> Path:
    """The clips the teacher's labels stage annotates: the whole corpus manifest, or with `recipe.train_clips` a table
    (labels/to_label.csv, paths absolute) of at most that many train rows drawn with the recipe's seed and every test
    row, in manifest order. Labelling only what is trained on saves most of the intrusive labels' time."""
    if recipe.train_clips is None:
        return manifest
    table = labels_dir / "to_label.csv"
    if not table.is_file():
        rows = read_table(manifest)
        train = [index for index, row in enumerate(rows) if row["split"] == "train"]
        drawn = {train[i] for i in np.random.default_rng([recipe.seed, 11]).permutation(len(train))[:recipe.train_clips]}
        kept = [located_row(row, manifest.parent, {}) for index, row in enumerate(rows)
                if row["split"] != "train" or index in drawn]
        labels_dir.mkdir(parents=True, exist_ok=True)
        write_table(table, kept, columns_of(kept))
    return table


def teacher_training_values(recipe: TeacherRecipe, labels_dir: Path, output_dir: Path) -> dict[str, Any]:
    """The teacher's `mtqnet train` arguments (`training.recipe.training_arguments` takes them): `scratch` on the
    intrusive labels, whole speakers held out for validation, epoch-wise evaluation."""
    return {
        "train_file": str(labels_dir / "train.csv"), "test_file": str(labels_dir / "test.csv"),
        "output_dir": str(output_dir), "preset": recipe.preset, "method": "scratch",
        "target_columns": list(PSEUDO_LABEL_TARGETS), "ssl_model": recipe.ssl_model,
        "group_column": "speaker", "validation_split": float(recipe.validation_split),
        "max_train_duration_s": None if recipe.max_train_duration_s is None else float(recipe.max_train_duration_s),
        "num_train_epochs": float(recipe.epochs), "per_device_train_batch_size": recipe.batch_size,
        "per_device_eval_batch_size": 16, "learning_rate": float(recipe.learning_rate),
        "seed": recipe.seed,  # the schedule's decay and warm-up: mtqnet train's defaults (the recipe's)
        "data_seed": recipe.seed, "eval_strategy": "epoch", "save_strategy": "epoch", "save_total_limit": 1,
        "dropout": float(recipe.dropout), "logging_steps": 50, "report_to": "none", "skip_bad_files": True,
        "dataloader_pin_memory": False, "disable_tqdm": False,
        # Without selection no best checkpoint is tracked either: the Trainer would keep that one instead of the
        # latest, and a cut-off build would resume epochs back.
        **(KEEP_BEST_VALIDATION_LCC if recipe.select_best_epoch else {}),
    }


def teacher_card_options(short_name: str) -> CardOptions:
    """The teacher's card: the package's card with the shipped teacher's section."""
    return CardOptions(repo_id=short_name, license="other", method="scratch", labels_description=TEACHER_LABELS,
                       pseudo_label_targets=[], shipped_section="teacher",
                       dataset_name="MTQ-Net real-speech corpus, held-out test part (unseen speakers)")


def build_teacher(work_dir: Path, recipe: TeacherRecipe, model_dir: Path | None = None, *,
                  packages_dir: Path | None = None, clean_dir: Path | None = None, noise_dir: Path | None = None,
                  overwrite: bool = False, workers: int | None = None,
                  short_name: str = "mtqnet/teacher-pesq-stoi-sdi") -> Path:
    """Run the stages (`tools/build_pretrained.py` lists them) in `work_dir` and ship the model to `model_dir`
    (default `work_dir/model`); returns the model folder."""
    from ..labels.annotate import IntrusiveTeacher, annotate_file
    from ..training.recipe import train_resuming, training_arguments

    work_dir = work_dir.resolve()
    settings = {"recipe": recipe.as_json(), "clean_dir": str(clean_dir) if clean_dir else None,
                "noise_dir": str(noise_dir) if noise_dir else None}
    ledger = build_ledger(work_dir, settings)
    workers = workers or min(2, os.cpu_count() or 1)
    labels_dir, train_dir = work_dir / "labels", work_dir / "train"
    model_dir = model_dir or work_dir / "model"
    check_model_dir(model_dir, overwrite)
    folders = data_stages(ledger, work_dir, recipe, packages_dir=packages_dir, clean_dir=clean_dir,
                          noise_dir=noise_dir, workers=workers)
    corpus_dir, pool_dir = folders.corpus_dir, folders.pool_dir
    languages = speaker_languages(pool_dir)

    def labels() -> None:
        to_label = clips_to_label(recipe, corpus_dir / "manifest.csv", labels_dir)
        annotate_file(str(to_label), str(labels_dir / "intrusive.csv"),
                      IntrusiveTeacher("path", "clean_path"), shard_size=1000, batch_size=16, num_proc=workers)
        counts = label_tables(to_label, labels_dir / "intrusive.csv", languages, labels_dir)
        (labels_dir / "counts.json").write_text(json.dumps(counts))

    ledger.run("labels", labels)
    ledger.run("train", lambda: train_resuming(training_arguments(
        teacher_training_values(recipe, labels_dir, train_dir))))

    corpus_info = json.loads((corpus_dir / "corpus_info.json").read_text())
    config = corpus_info["config"]

    evaluate_stage(ledger, work_dir, train_dir / "predictions.csv", labels_dir / "test.csv", config)

    def record() -> dict[str, Any]:
        manifest = read_table(corpus_dir / "manifest.csv")
        return {
            "name": short_name, "recipe": recipe.as_json(), "cpus": os.cpu_count(),
            "timings_s": dict(ledger.seconds),
            "pool": pool_summary(pool_dir),
            "corpus": {"utterances": corpus_info["utterances"],
                       "hours": round(sum(to_float(r["duration_s"]) for r in manifest) / 3600, 2),
                       "systems_used": sorted(corpus_info["systems_used"]),
                       "test_units": len(config["test_units"]),
                       "held_out_noises": sorted(set(config["test_noises"]) - set(config["train_noises"])),
                       "held_out_systems": sorted(set(config["test_systems"]) - set(config["train_systems"]))},
            "labels": json.loads((labels_dir / "counts.json").read_text()),
            "evaluation": json.loads((work_dir / "evaluation.json").read_text()),
        }

    ship_stage(ledger, model_dir, train_dir, record, teacher_card_options(short_name))
    return model_dir


__all__ = ["STAGES", "TEACHER_LABELS", "build_teacher", "clips_to_label", "label_tables", "teacher_card_options",
           "teacher_training_values"]
