"""The shipped S/N/G model's own stages (`mtqnet build-pretrained small-p835`).

It starts from the teacher's corpus (the same recipe gives the same clips; see `data_stages` on bit-exactness) and
adds:

1. `packages`, `pool`, `corpus`  as for the teacher (`builds/stages.py`: `data_stages`);
2. `parts`       clips drawn from the corpus: a pool of training clips (the labelled ones and the validation clips
                 are among them) and a test part from the held-out part (unseen speakers, noises and systems);
3. `labels`      DNSMOS P.835 SIG / BAK / OVRL (speechmos) of the labelled, validation and test clips, as stand-ins for
                 S-MOS / N-MOS / G-MOS, and the shipped teacher's PESQ / STOI / SDI pseudo labels of the whole pool;
4. `train`       `mtqnet train --method mpl_kt`: the trunk starts from the teacher's, primary heads train on the
                 labelled clips, pseudo-label heads on the pool;
5. `evaluate`    LCC / SRCC / MSE / bias on the test part, overall and per factor (noise, system, language);
6. `ship`        the model folder with its card (model-index with the stand-in wording) and build_info.json.

The same parts, labels and training tables serve `studies/label_efficiency.py` (one definition of each).
Primary labels are DNSMOS P.835 predictions, not listening tests and not 3QUEST: the model learns to predict DNSMOS
P.835 from fewer computations and with frame curves, on the kinds of speech and degradations of the corpus.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..labels.stand_in import add_stand_in_labels
from ..pretrained import SHIPPED_TEACHER, resolve_model
from ..sharing.model_card import CardOptions
from ..tables import columns_of, read_table, write_table
from ..training.recipe import KEEP_BEST_VALIDATION_LCC
from ..vocabulary import PRIMARY_TARGETS, PSEUDO_LABEL_TARGETS
from .recipes import StudentRecipe
from .stages import (
    build_ledger,
    check_model_dir,
    corpus_rows,
    data_stages,
    evaluate_stage,
    pool_summary,
    ship_stage,
    speaker_languages,
)

STAND_IN_WORDING = ("DNSMOS P.835 (speechmos) SIG, BAK and OVRL used as stand-ins for S-MOS, N-MOS and G-MOS: "
                    "the model predicts DNSMOS P.835, not listening-test or 3QUEST scores")
# Columns the parts keep from the corpus rows (what training, evaluation by factor and the card need).
PART_COLUMNS = ("path", "clean_path", "speaker", "language", "noise_type", "system", "snr_db", "split")


# ----------------------------------------------------------------------------------------------------------------
# Parts, labels, tables (shared with studies/label_efficiency.py)
# ----------------------------------------------------------------------------------------------------------------


def draw_parts(train: list[dict[str, Any]], held_out: list[dict[str, Any]], out: Path, *, pool: int,
               candidates: int, validation: int, test: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """pool / candidates / validation / test rows, written to `out/<part>.csv`. The pool is drawn from the training
    split; the candidates (clips that may get primary labels) are its first `candidates` rows, the validation clips
    the next `validation`; the test clips are drawn from the held-out split."""
    rng = np.random.default_rng([seed, 2024])
    if candidates + validation > pool or pool > len(train) or test > len(held_out):
        raise ValueError(f"Sizes do not fit: pool {pool} (train split {len(train)}), candidates {candidates} + "
                         f"validation {validation}, test {test} (held-out part {len(held_out)})")
    pool_rows = [{k: row.get(k, "") for k in PART_COLUMNS} for row in
                 (train[i] for i in rng.permutation(len(train))[:pool])]
    test_rows = [{k: row.get(k, "") for k in PART_COLUMNS} for row in
                 (held_out[i] for i in rng.permutation(len(held_out))[:test])]
    parts = {"pool": pool_rows, "candidates": pool_rows[:candidates],
             "validation": pool_rows[candidates:candidates + validation], "test": test_rows}
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in parts.items():
        write_table(out / f"{name}.csv", rows, columns_of(rows))
    return parts


def read_parts(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {name: read_table(out / f"{name}.csv") for name in ("pool", "candidates", "validation", "test")}


def label_parts(out: Path, workers: int, teacher: str = SHIPPED_TEACHER) -> dict[str, dict[str, dict[str, str]]]:
    """path -> labels: DNSMOS stand-ins (as s_mos / n_mos / g_mos) for candidates, validation and test; the teacher's
    pseudo labels for the pool. Resumable (annotation shards)."""
    from ..labels.annotate import annotated_rows  # it needs scipy, an extra: imported when labels are made

    labels: dict[str, dict[str, dict[str, str]]] = {}
    for part in ("candidates", "validation", "test"):
        rows = add_stand_in_labels(annotated_rows(out / f"{part}.csv", out / f"{part}_dnsmos.csv", "dnsmos",
                                                  num_proc=workers))
        labels[part] = {row["path"]: {target: row[target] for target in PRIMARY_TARGETS} for row in rows}
    rows = annotated_rows(out / "pool.csv", out / "pool_teacher.csv", resolve_model(teacher))
    labels["pool"] = {row["path"]: {target: row[target] for target in PSEUDO_LABEL_TARGETS} for row in rows}
    return labels


def training_tables(folder: Path, parts: dict, labels: dict, size: int, seed: int) -> dict[str, Path]:
    """`labelled.csv` (the `size` labelled clips alone) and `pooled.csv` (the whole pool but the validation clips:
    primary labels where labelled, pseudo labels everywhere) for one labelled-set size and seed."""
    files = {"labelled": folder / "labelled.csv", "pooled": folder / "pooled.csv"}
    if all(path.is_file() for path in files.values()):
        return files
    candidates = parts["candidates"]
    chosen = {candidates[i]["path"] for i in np.random.default_rng([seed, 7]).permutation(len(candidates))[:size]}
    validation = {row["path"] for row in parts["validation"]}
    empty = dict.fromkeys(PRIMARY_TARGETS, "")
    pooled = []
    for row in parts["pool"]:
        if row["path"] in validation:
            continue
        primary = labels["candidates"][row["path"]] if row["path"] in chosen else empty
        pooled.append({**row, **primary, **labels["pool"][row["path"]]})
    labelled = [row for row in pooled if row["path"] in chosen]
    folder.mkdir(parents=True, exist_ok=True)
    write_table(files["labelled"], labelled, columns_of(labelled))
    write_table(files["pooled"], pooled, columns_of(pooled))
    return files


def evaluation_tables(folder: Path, parts: dict, labels: dict) -> dict[str, Path]:
    """validation.csv and test.csv with their primary labels; validation also with the teacher's (MPL's evaluation
    reads every label column of its training set)."""
    files = {"validation": folder / "validation.csv", "test": folder / "test.csv"}
    for name, path in files.items():
        if not path.is_file():
            rows = [{**row, **labels[name][row["path"]], **labels["pool"].get(row["path"], {})} for row in parts[name]]
            path.parent.mkdir(parents=True, exist_ok=True)
            write_table(path, rows, columns_of(rows))
    return files


def student_training_values(method: str, train_file: Path, tables: dict[str, Path], output: Path, *, preset: str,
                            steps: int, batch_size: int, learning_rate: float, crop_s: float | None, seed: int,
                            evaluations: int, ssl_model: str = "none", teacher: str = SHIPPED_TEACHER,
                            labelled_batch_share: float | None = None) -> dict[str, Any]:
    """An S/N/G student's `mtqnet train` arguments (`training.recipe.training_arguments` takes them; `method`:
    scratch, kt, mpl, mpl_kt): one step budget, evaluated and saved `evaluations` times, the best validation LCC
    kept."""
    # A float, as TrainingArguments types it (below 1: a share of the steps), and as a command line gives it.
    evaluate_every = float(max(1, steps // evaluations))
    values = {
        "train_file": str(train_file), "validation_file": str(tables["validation"]),
        "test_file": str(tables["test"]), "output_dir": str(output), "preset": preset, "method": method,
        "target_columns": list(PRIMARY_TARGETS), "pseudo_label_columns": list(PSEUDO_LABEL_TARGETS),
        "ssl_model": ssl_model, "max_train_duration_s": None if crop_s is None else float(crop_s),
        "max_steps": steps, "per_device_train_batch_size": batch_size, "per_device_eval_batch_size": 16,
        "learning_rate": float(learning_rate),  # decay and warm-up: mtqnet train's defaults (the recipe's)
        "seed": seed, "data_seed": seed, "eval_strategy": "steps", "eval_steps": evaluate_every,
        "save_strategy": "steps", "save_steps": evaluate_every, "save_total_limit": 1, **KEEP_BEST_VALIDATION_LCC,
        "logging_steps": 25, "report_to": "none", "skip_bad_files": True, "dataloader_pin_memory": False,
    }
    if method in ("kt", "mpl_kt"):
        values["teacher"] = resolve_model(teacher)
    if labelled_batch_share is not None:
        values["labelled_batch_share"] = float(labelled_batch_share)
    return values


def student_card_options(short_name: str, method: str) -> CardOptions:
    """The S/N/G model's card: the package's card with the stand-in wording and the shipped student's section."""
    return CardOptions(repo_id=short_name, license="other", method=method,
                       labels_description=STAND_IN_WORDING, stand_in_labels=True,
                       pseudo_label_targets=list(PSEUDO_LABEL_TARGETS), shipped_section="student",
                       dataset_name="MTQ-Net real-speech corpus, held-out test part (unseen speakers)")


# ----------------------------------------------------------------------------------------------------------------
# The build
# ----------------------------------------------------------------------------------------------------------------


def build_student(work_dir: Path, recipe: StudentRecipe, model_dir: Path | None = None, *,
                  packages_dir: Path | None = None, clean_dir: Path | None = None, noise_dir: Path | None = None,
                  overwrite: bool = False, workers: int | None = None, short_name: str = "mtqnet/small-p835") -> Path:
    """Run the stages (see the module docstring) in `work_dir` and ship the model to `model_dir` (default
    `work_dir/model`); returns the model folder."""
    from ..training.recipe import train_resuming, training_arguments

    if recipe.labelled + recipe.validation > recipe.pool:  # checked before hours of corpus work, not after
        raise ValueError(f"Sizes do not fit: {recipe.labelled} labelled + {recipe.validation} validation clips "
                         f"exceed the pool of {recipe.pool}")
    work_dir = work_dir.resolve()
    settings = {"recipe": recipe.corpus.as_json(), "student": recipe.as_json(),
                "clean_dir": str(clean_dir) if clean_dir else None, "noise_dir": str(noise_dir) if noise_dir else None}
    ledger = build_ledger(work_dir, settings)
    workers = workers or min(2, os.cpu_count() or 1)
    parts_dir, tables_dir, train_dir = work_dir / "parts", work_dir / "tables", work_dir / "train"
    model_dir = model_dir or work_dir / "model"
    check_model_dir(model_dir, overwrite)
    folders = data_stages(ledger, work_dir, recipe.corpus, packages_dir=packages_dir, clean_dir=clean_dir,
                          noise_dir=noise_dir, workers=workers)
    corpus_dir = folders.corpus_dir

    def parts() -> None:
        rows = corpus_rows(corpus_dir / "manifest.csv", speaker_languages(folders.pool_dir))
        draw_parts(rows["train"], rows["test"], parts_dir, pool=recipe.pool, candidates=recipe.labelled,
                   validation=recipe.validation, test=recipe.test, seed=recipe.seed)

    ledger.run("parts", parts)

    def labels() -> None:
        drawn = read_parts(parts_dir)
        labelled = label_parts(parts_dir, workers, recipe.teacher)
        training_tables(tables_dir, drawn, labelled, recipe.labelled, recipe.seed)
        evaluation_tables(tables_dir, drawn, labelled)

    ledger.run("labels", labels)
    train_file = tables_dir / ("pooled.csv" if recipe.method.startswith("mpl") else "labelled.csv")
    ledger.run("train", lambda: train_resuming(training_arguments(student_training_values(
        recipe.method, train_file, {"validation": tables_dir / "validation.csv", "test": tables_dir / "test.csv"},
        train_dir, preset=recipe.preset, steps=recipe.steps, batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate, crop_s=recipe.max_train_duration_s, seed=recipe.seed,
        evaluations=recipe.evaluations, ssl_model=recipe.ssl_model, teacher=recipe.teacher,
        labelled_batch_share=recipe.labelled_batch_share))))

    corpus_config = json.loads((corpus_dir / "corpus_info.json").read_text())["config"]
    evaluate_stage(ledger, work_dir, train_dir / "predictions.csv", tables_dir / "test.csv", corpus_config,
                   targets=PRIMARY_TARGETS)

    def record() -> dict[str, Any]:
        tables = {name: read_table(tables_dir / f"{name}.csv") for name in ("pooled", "validation", "test")}
        return {
            "name": short_name, "recipe": recipe.as_json(), "cpus": os.cpu_count(),
            "timings_s": dict(ledger.seconds), "pool": pool_summary(folders.pool_dir),
            "labels": {"primary": STAND_IN_WORDING, "pseudo": f"{recipe.teacher} (PESQ, STOI, SDI)",
                       "labelled_training_clips": sum(bool(r["s_mos"]) for r in tables["pooled"]),
                       "pseudo_labelled_training_clips": len(tables["pooled"]),
                       "validation_clips": len(tables["validation"]), "test_clips": len(tables["test"]),
                       "test_speakers": len({r["speaker"] for r in tables["test"]})},
            "evaluation": json.loads((work_dir / "evaluation.json").read_text()),
        }

    ship_stage(ledger, model_dir, train_dir, record, student_card_options(short_name, recipe.method))
    return model_dir


__all__ = ["PART_COLUMNS", "STAND_IN_WORDING", "build_student", "draw_parts", "evaluation_tables", "label_parts",
           "read_parts", "student_card_options", "student_training_values", "training_tables"]
