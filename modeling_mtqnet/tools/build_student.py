"""Rebuild the shipped S/N/G model `mtqnet/small-p835` from nothing (`mtqnet build-pretrained small-p835`).

It starts from the teacher's corpus (the same recipe gives the same clips, byte for byte) and adds:

1. `packages`, `pool`, `corpus`  as for the teacher (`build_pretrained.data_stages`);
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

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..pretrained import PRETRAINED_DIR, SHIPPED_TEACHER, resolve_model
from ..tables import columns_of, read_table, write_table
from ..training.arguments import RECIPE_LEARNING_RATE
from ..training.recipe import KEEP_BEST_VALIDATION_LCC
from ..training.trainer import DEFAULT_LABELLED_BATCH_SHARE
from ..vocabulary import PRIMARY_TARGETS, PSEUDO_LABEL_TARGETS
from .build_pretrained import (
    ENCODER_CREDIT,
    BuildState, TeacherRecipe, check_model_dir, corpus_rows, data_stages, evaluate_stage, factor_table, pool_summary,
    ship_stage, speaker_languages,
)

STAND_IN_WORDING = ("DNSMOS P.835 (speechmos) SIG, BAK and OVRL used as stand-ins for S-MOS, N-MOS and G-MOS: "
                    "the model predicts DNSMOS P.835, not listening-test or 3QUEST scores")
# Columns the parts keep from the corpus rows (what training, evaluation by factor and the card need).
PART_COLUMNS = ("path", "clean_path", "speaker", "language", "noise_type", "system", "snr_db", "split")


@dataclasses.dataclass(frozen=True)
class StudentRecipe:
    """What `mtqnet/small-p835` is built with (every field is recorded in its build_info.json).

    Attributes:
        corpus: the corpus recipe (the teacher's: same clips).
        pool: training clips drawn for the student (labelled + validation + pseudo-labelled only).
        labelled: clips of the pool with DNSMOS stand-in labels for training (all of them here; the study varies it).
        validation: clips of the pool with stand-in labels for model selection (not trained on).
        test: clips of the held-out part with stand-in labels (the card's numbers).
        teacher: the pseudo-labelling teacher (a shipped short name).
        method: `mtqnet train --method`: `mpl_kt`, the trunk started from the teacher's and its pseudo labels on the
            pool, as the label-efficiency study recommends (the first shipped weights were `mpl`, natural mix).
        labelled_batch_share: `mtqnet train --labelled_batch_share` (its default: at least half of each epoch's
            draws are labelled clips; 600 of the 1,900 training clips are).
        preset, ssl_model: `small-distillmos` with the frozen pretrained Distill-MOS encoder, as the teacher.
        steps, batch_size, learning_rate: training schedule (cosine, 5% warm-up).
        max_train_duration_s: random crops of the training clips; None: whole clips (a cached frozen encoder's
            features belong to whole clips).
        evaluations: validation passes during training (the best mean LCC is kept).
        seed: parts, training.
    """

    corpus: TeacherRecipe = TeacherRecipe()
    pool: int = 2000
    labelled: int = 600
    validation: int = 100
    test: int = 300
    teacher: str = SHIPPED_TEACHER
    method: str = "mpl_kt"
    labelled_batch_share: float = DEFAULT_LABELLED_BATCH_SHARE
    preset: str = "small-distillmos"
    ssl_model: str = "distillmos"
    steps: int = 300
    batch_size: int = 16
    learning_rate: float = RECIPE_LEARNING_RATE
    max_train_duration_s: float | None = None
    evaluations: int = 3
    seed: int = 0

    def as_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["corpus"] = self.corpus.as_json()
        return values


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
    from .demo import add_stand_in_labels, annotate

    labels: dict[str, dict[str, dict[str, str]]] = {}
    for part in ("candidates", "validation", "test"):
        rows = add_stand_in_labels(annotate(out / f"{part}.csv", out / f"{part}_dnsmos.csv", "dnsmos",
                                            num_proc=workers))
        labels[part] = {row["path"]: {target: row[target] for target in PRIMARY_TARGETS} for row in rows}
    rows = annotate(out / "pool.csv", out / "pool_teacher.csv", resolve_model(teacher))
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


def student_arguments(method: str, train_file: Path, tables: dict[str, Path], output: Path, *, preset: str,
                      steps: int, batch_size: int, learning_rate: float, crop_s: float | None, seed: int,
                      evaluations: int, ssl_model: str = "none",
                      teacher: str = SHIPPED_TEACHER, labelled_batch_share: float | None = None,
                      extra: Sequence[str] = ()) -> list[str]:
    """`mtqnet train`'s command line for an S/N/G student (`method`: scratch, kt, mpl, mpl_kt)."""
    evaluate_every = max(1, steps // evaluations)
    arguments = [
        "--train_file", str(train_file), "--validation_file", str(tables["validation"]),
        "--test_file", str(tables["test"]), "--output_dir", str(output), "--preset", preset, "--method", method,
        "--target_columns", *PRIMARY_TARGETS, "--pseudo_label_columns", *PSEUDO_LABEL_TARGETS, "--ssl_model", ssl_model,
        *([] if crop_s is None else ["--max_train_duration_s", str(crop_s)]), "--max_steps", str(steps),
        "--per_device_train_batch_size", str(batch_size), "--per_device_eval_batch_size", "16",
        "--learning_rate", str(learning_rate),  # decay and warm-up: mtqnet train's defaults (the recipe's)
        "--seed", str(seed), "--data_seed", str(seed), "--eval_strategy", "steps", "--eval_steps",
        str(evaluate_every), "--save_strategy", "steps", "--save_steps", str(evaluate_every), "--save_total_limit",
        "1", *KEEP_BEST_VALIDATION_LCC, "--logging_steps", "25", "--report_to", "none", "--skip_bad_files", "--dataloader_pin_memory", "false",
        *extra,
    ]
    if method in ("kt", "mpl_kt"):
        arguments += ["--teacher", resolve_model(teacher)]
    if labelled_batch_share is not None:
        arguments += ["--labelled_batch_share", str(labelled_batch_share)]
    return arguments


# ----------------------------------------------------------------------------------------------------------------
# The build
# ----------------------------------------------------------------------------------------------------------------


def build_student(work_dir: Path, recipe: StudentRecipe, *, packages_dir: Path | None = None,
                  clean_dir: Path | None = None, noise_dir: Path | None = None, install: bool = False,
                  overwrite: bool = False, workers: int | None = None,
                  short_name: str = "mtqnet/small-p835") -> Path:
    """Run the stages (see the module docstring); returns the model folder."""
    from ..training.recipe import train_resuming

    if recipe.labelled + recipe.validation > recipe.pool:  # checked before hours of corpus work, not after
        raise ValueError(f"Sizes do not fit: {recipe.labelled} labelled + {recipe.validation} validation clips "
                         f"exceed the pool of {recipe.pool}")
    work_dir = work_dir.resolve()
    settings = {"recipe": recipe.corpus.as_json(), "student": recipe.as_json(),
                "clean_dir": str(clean_dir) if clean_dir else None, "noise_dir": str(noise_dir) if noise_dir else None}
    state = BuildState(work_dir, settings)
    workers = workers or min(2, os.cpu_count() or 1)
    parts_dir, tables_dir, train_dir = work_dir / "parts", work_dir / "tables", work_dir / "train"
    model_dir = PRETRAINED_DIR / short_name.split("/")[-1] if install else work_dir / "model"
    check_model_dir(model_dir, overwrite)
    folders = data_stages(state, work_dir, recipe.corpus, packages_dir=packages_dir, clean_dir=clean_dir,
                          noise_dir=noise_dir, workers=workers)
    corpus_dir = folders.corpus_dir

    def parts() -> None:
        rows = corpus_rows(corpus_dir / "manifest.csv", speaker_languages(folders.pool_dir))
        draw_parts(rows["train"], rows["test"], parts_dir, pool=recipe.pool, candidates=recipe.labelled,
                   validation=recipe.validation, test=recipe.test, seed=recipe.seed)

    state.run("parts", parts)

    def labels() -> None:
        drawn = read_parts(parts_dir)
        labelled = label_parts(parts_dir, workers, recipe.teacher)
        training_tables(tables_dir, drawn, labelled, recipe.labelled, recipe.seed)
        evaluation_tables(tables_dir, drawn, labelled)

    state.run("labels", labels)
    train_file = tables_dir / ("pooled.csv" if recipe.method.startswith("mpl") else "labelled.csv")
    state.run("train", lambda: train_resuming(student_arguments(
        recipe.method, train_file, {"validation": tables_dir / "validation.csv", "test": tables_dir / "test.csv"},
        train_dir, preset=recipe.preset, steps=recipe.steps, batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate, crop_s=recipe.max_train_duration_s, seed=recipe.seed,
        evaluations=recipe.evaluations, ssl_model=recipe.ssl_model, teacher=recipe.teacher, labelled_batch_share=recipe.labelled_batch_share),
        prog="mtqnet build-pretrained (train)"))

    corpus_config = json.loads((corpus_dir / "corpus_info.json").read_text())["config"]
    evaluate_stage(state, work_dir, train_dir / "predictions.csv", tables_dir / "test.csv", corpus_config,
                   targets=PRIMARY_TARGETS)

    def record() -> dict[str, Any]:
        tables = {name: read_table(tables_dir / f"{name}.csv") for name in ("pooled", "validation", "test")}
        return {
            "name": short_name, "recipe": recipe.as_json(), "cpus": os.cpu_count(),
            "timings_s": dict(state.state["done"]), "pool": pool_summary(folders.pool_dir),
            "labels": {"primary": STAND_IN_WORDING, "pseudo": f"{recipe.teacher} (PESQ, STOI, SDI)",
                       "labelled_training_clips": sum(bool(r["s_mos"]) for r in tables["pooled"]),
                       "pseudo_labelled_training_clips": len(tables["pooled"]),
                       "validation_clips": len(tables["validation"]), "test_clips": len(tables["test"]),
                       "test_speakers": len({r["speaker"] for r in tables["test"]})},
            "evaluation": json.loads((work_dir / "evaluation.json").read_text()),
        }

    ship_stage(state, model_dir, train_dir, record,
               lambda folder, trained, info: write_student_card(folder, trained, info, short_name))
    return model_dir


def write_student_card(model_dir: Path, train_dir: Path, info: dict[str, Any], short_name: str) -> None:
    """README.md: the package's model card (model-index on the test part, stand-in wording) plus data, results by
    factor, limits and the rebuild command."""
    from ..sharing.model_card import CardOptions, render_card

    card = render_card(train_dir, CardOptions(
        repo_id=short_name, license="other", method=info["recipe"]["method"],
        labels_description=STAND_IN_WORDING, stand_in_labels=True, pseudo_label_targets=list(PSEUDO_LABEL_TARGETS),
        dataset_name="MTQ-Net real-speech corpus, held-out test part (unseen speakers)"))
    pool = info.get("pool") or {}
    labels = info["labels"]
    timings = ", ".join(f"{stage} {seconds / 60:.1f} min" for stage, seconds in info["timings_s"].items())
    extra = f"""

## The shipped S/N/G model: what its scores are, data, results by factor, limits

This folder ships inside the `mtqnet` package as `{short_name}` and is used offline by short name:
`pipeline("speech-quality-assessment", model="{short_name}")` (the package's `pipeline`) or
`mtqnet score DIR --model {short_name} --output scores.csv`.

**What the scores are.** `s_mos`, `n_mos` and `g_mos` (1-5) are predictions of **DNSMOS P.835** SIG, BAK and OVRL
(Microsoft's non-intrusive P.835 estimator, via speechmos), which stood in for S-MOS, N-MOS and G-MOS because no
3QUEST or listening-test labels can be had here. They are not 3QUEST scores. Fine-tune on your own labels
(`mtqnet train --model_name_or_path {short_name} --method scratch --train_file yours.csv ...`) to predict those.

### Data
Clips of the teacher's corpus ({len(pool.get('speakers', []))} real speakers, {len(pool.get('languages', []))}
languages, Debian packages; noise recordings and procedural noises; enhancers, codecs, reverberation, band limiting,
clipping, packet loss; SNR -5..30 dB and clean). Training: {labels['labelled_training_clips']} clips with stand-in
labels and {labels['pseudo_labelled_training_clips']} with the teacher's pseudo labels (`{info['recipe']['teacher']}`,
multi-task pseudo-label learning); {labels['validation_clips']} validation clips; test: {labels['test_clips']} clips
of the held-out part ({labels['test_speakers']} speakers never heard in training, with held-out noises and systems
beside seen ones).

{ENCODER_CREDIT}

### Results on the test part (LCC / SRCC / MSE / bias against DNSMOS P.835)
Bias: mean prediction minus mean label (> 0: scores too high on average).

{factor_table(info['evaluation'], targets=PRIMARY_TARGETS)}

### Limits
- It has learnt DNSMOS P.835, with DNSMOS's own errors, on read and prompted speech, game dialogue and spoken letters
  in the corpus's languages; no conversational speech, real rooms or real networks.
- One seed; the test part is {labels['test_clips']} clips, so the figures above carry sampling error of a few
  hundredths of LCC.

### Licence
The weights were trained here; the recordings they were trained on are CC-BY-SA-3.0, CC-BY-3.0, GPL-2(+) and CC0
(see the teacher's card); whether those licences reach trained weights is not settled, hence `license: other`.

### Rebuild
`mtqnet build-pretrained {short_name.split('/')[-1]} --work_dir work/small-p835` rebuilds this folder from nothing
(recipe below; {timings}; total {sum(info['timings_s'].values()) / 60:.0f} min on {info['cpus']} CPU cores).
Recipe: `{json.dumps(info['recipe'])}`
"""
    (model_dir / "README.md").write_text(str(card) + extra)
