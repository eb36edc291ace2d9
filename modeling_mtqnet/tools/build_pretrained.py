"""Rebuild a model the package ships, from nothing: data, corpus, labels, training, evaluation, card.

```bash
mtqnet build-pretrained teacher-pesq-stoi-sdi --work_dir work/teacher            # the shipped teacher (about 1 h)
mtqnet build-pretrained teacher-pesq-stoi-sdi --work_dir work/t --install        # ... and replace the shipped one
mtqnet build-pretrained teacher-pesq-stoi-sdi --work_dir work/small \
    --clean_dir speech/ --count 300 --epochs 1                                    # a scaled-down run (the tests)
mtqnet build-pretrained small-p835 --work_dir work/small-p835                    # the S/N/G model (build_student.py)
```

Stages, each resumed when its output is there (`work_dir/state.json` records the finished ones and the settings;
other settings in the same folder are refused):

1. `packages`  the Debian packages of real speech and noise (`speech_pool.fetch_packages`: apt-get download and
               dpkg -x, no root install); skipped with `--clean_dir` or an existing `--packages_dir`;
2. `pool`      the clean-speech and noise pools (`mtqnet speech-pool`);
3. `corpus`    `mtqnet corpus`: noises (recordings + procedural), SNRs -5..30 dB and clean clips, every system
               (enhancers, codecs, reverberation, band limiting, clipping, packet loss); a test part with speakers,
               noise recordings and systems never used in training, beside seen conditions;
4. `labels`    intrusive PESQ / STOI / SDI of every clip (`mtqnet annotate --teacher intrusive`);
5. `train`     `mtqnet train --method scratch --target_columns pesq stoi sdi` (the MOSA-Net teacher);
6. `evaluate`  LCC / SRCC / MSE / bias on the test part, overall and per unseen factor (speaker, noise, system,
               language);
7. `ship`      the model folder (`work_dir/model`, or the package's shipped folder with `--install`): weights,
               configs, model card with model-index, `build_info.json` (recipe, data, timings, results).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..pretrained import PRETRAINED_DIR, SHIPPED
from ..tables import atomic_write_text, columns_of, read_table, to_float, write_table
from ..training.arguments import RECIPE_LEARNING_RATE
from ..training.reporting import REPORTED_METRIC_KEYS
from ..vocabulary import PSEUDO_LABEL_TARGETS

STAGES = ("packages", "pool", "corpus", "labels", "train", "evaluate", "ship")
SHIPPED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
BUILD_INFO = "build_info.json"


@dataclasses.dataclass(frozen=True)
class TeacherRecipe:
    """What the shipped teacher is built with (every field is recorded in its build_info.json).

    Attributes:
        count: corpus clips (train + test).
        max_duration_s: clean clips longer than this are cropped (random segment); the pool's are 2-8 s.
        snrs: SNRs in dB, `inf` = no noise (clean or system-only clips).
        test_noises / test_systems: held out: only in the test part, never in training.
        test_fraction: share of clips (and of speakers) in the test part.
        level_jitter_db: active speech level -26 dB +- this.
        preset: model size: `small-distillmos`, the `small` CNN and BLSTM with the pretrained Distill-MOS encoder
            (frozen) as SSL branch.
        ssl_model: `mtqnet train --ssl_model`: `distillmos`, the encoder folder `mtqnet build-encoder` makes.
        train_clips: at most this many training clips drawn (seeded) from the corpus's train part, the only ones
            labelled and trained on; None: all. The frozen encoder's features of every clip are computed once (whole clips: no random
            crops), about 0.2 s a clip on 2 cores.
        dropout: dropout after the trunk's dense layer. 0: with the reference's 0.3 the heads' multiplicative
            attention saw other activations in training than at inference and the shipped SDI read +0.30 high
            (studies/teacher_diagnosis.md, "Dropout").
        epochs, batch_size, learning_rate: training schedule (cosine decay, 5% warm-up).
        select_best_epoch: keep the epoch with the best validation LCC instead of the last one. Off: validation
            holds a few whole speakers and its LCC swings by 0.1 between epochs, so it picked early, worse epochs.
        max_train_duration_s: training clips are randomly cropped to this (evaluation uses whole clips); None: whole
            clips (a cached frozen encoder needs them).
        validation_split: share of training speakers held out whole for model selection.
        seed: one seed for pool order, corpus, split and training.
    """

    count: int = 10000
    max_duration_s: float = 6.0
    snrs: tuple[float, ...] = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, math.inf)
    noises: tuple[str, ...] = ("files", "procedural")
    test_noises: tuple[str, ...] = ("music/*", "city/*Sport*", "ambience/*rain*", "brown")
    systems: tuple[str, ...] = ("all",)
    test_systems: tuple[str, ...] = ("ffmpeg_afftdn", "mp3", "clipping")
    test_fraction: float = 0.2
    level_jitter_db: float = 6.0
    preset: str = "small-distillmos"
    ssl_model: str = "distillmos"
    train_clips: int | None = 4000
    dropout: float = 0.0
    epochs: float = 4.0
    batch_size: int = 16
    learning_rate: float = RECIPE_LEARNING_RATE
    max_train_duration_s: float | None = None
    select_best_epoch: bool = False
    validation_split: float = 0.1
    seed: int = 0

    def as_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["snrs"] = [("inf" if math.isinf(v) else v) for v in self.snrs]
        return values


# ----------------------------------------------------------------------------------------------------------------
# Run state
# ----------------------------------------------------------------------------------------------------------------


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """The keys whose values differ, nested dicts as `outer.inner`."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(prefix + key)
    return changed


class BuildState:
    """`work_dir/state.json`: the settings and the finished stages with their durations."""

    def __init__(self, work_dir: Path, settings: dict[str, Any]):
        self.path = work_dir / "state.json"
        settings = json.loads(json.dumps(settings))  # tuples as lists, as read back
        work_dir.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            state = json.loads(self.path.read_text())
            if state["settings"] != settings:
                changed = _differences(state["settings"], settings)
                raise ValueError(f"{work_dir} holds a build with other settings ({', '.join(changed)}); use another "
                                 "--work_dir or the same settings to resume it")
            self.state = state
        elif any(work_dir.iterdir()):
            raise ValueError(f"{work_dir} is not empty and holds no build (no state.json); give a new --work_dir")
        else:
            self.state = {"settings": settings, "done": {}}
            self.save()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.state, indent=2))

    def done(self, stage: str) -> bool:
        return stage in self.state["done"]

    def record(self, stage: str, seconds: float) -> None:
        self.state["done"][stage] = round(seconds, 1)
        self.save()

    def run(self, stage: str, work: Callable[[], Any]) -> None:
        """Run one stage unless it finished earlier; record its duration."""
        if self.done(stage):
            print(f"[build-pretrained] {stage}: done earlier ({self.state['done'][stage] / 60:.1f} min)")
            return
        print(f"[build-pretrained] {stage} ...", flush=True)
        start = time.perf_counter()
        work()
        self.record(stage, time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------------------------


def corpus_settings(recipe: TeacherRecipe, noise_dir: Path | None):
    from ..corpus.builder import CorpusSettings

    noises = recipe.noises if noise_dir is not None else ("procedural",)
    return CorpusSettings(
        noise_dir=noise_dir, noises=noises, snrs=recipe.snrs, count=recipe.count, seed=recipe.seed,
        systems=recipe.systems, test_noises=recipe.test_noises, test_systems=recipe.test_systems,
        test_fraction=recipe.test_fraction, test_seen_conditions=True, level_jitter_db=recipe.level_jitter_db,
        max_duration_s=recipe.max_duration_s, skip_bad_files=True)


def speaker_languages(pool_dir: Path | None) -> dict[str, str]:
    """speaker -> language(s) from the pool's speakers.csv (empty without a pool)."""
    path = pool_dir / "speakers.csv" if pool_dir else None
    if not path or not path.is_file():
        return {}
    return {row["speaker"]: row["language"] for row in read_table(path)}


def located_row(row: dict[str, Any], base: Path, languages: dict[str, str]) -> dict[str, Any]:
    """A corpus row with absolute `path` / `clean_path` (relative ones are under `base`) and a `language` column."""
    row = dict(row)
    for column in ("path", "clean_path"):
        row[column] = str((base / row[column]).resolve()) if not os.path.isabs(row[column]) else row[column]
    row["language"] = languages.get(row["speaker"], "unknown")
    return row


def corpus_rows(manifest: Path, languages: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """The corpus manifest's rows by split ("train", "test"), located (`located_row`), in manifest order."""
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    for row in read_table(manifest):
        rows[row["split"]].append(located_row(row, manifest.parent, languages))
    return rows


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


def train_arguments(recipe: TeacherRecipe, labels_dir: Path, output_dir: Path) -> list[str]:
    from ..training.recipe import KEEP_BEST_VALIDATION_LCC

    crop = [] if recipe.max_train_duration_s is None else ["--max_train_duration_s", str(recipe.max_train_duration_s)]
    return [
        "--train_file", str(labels_dir / "train.csv"), "--test_file", str(labels_dir / "test.csv"),
        "--output_dir", str(output_dir), "--preset", recipe.preset, "--method", "scratch",
        "--target_columns", *PSEUDO_LABEL_TARGETS, "--ssl_model", recipe.ssl_model,
        "--group_column", "speaker", "--validation_split", str(recipe.validation_split), *crop,
        "--num_train_epochs", str(recipe.epochs), "--per_device_train_batch_size", str(recipe.batch_size),
        "--per_device_eval_batch_size", "16", "--learning_rate", str(recipe.learning_rate),
        "--seed", str(recipe.seed),  # the schedule's decay and warm-up: mtqnet train's defaults (the recipe's)
        "--data_seed", str(recipe.seed), "--eval_strategy", "epoch", "--save_strategy", "epoch",
        "--save_total_limit", "1", "--dropout", str(recipe.dropout), "--logging_steps", "50", "--report_to", "none",
        "--skip_bad_files", "--dataloader_pin_memory", "false", "--disable_tqdm", "false",
        # Without selection no best checkpoint is tracked either: the Trainer would keep that one instead of the
        # latest, and a cut-off build would resume epochs back.
        *(KEEP_BEST_VALIDATION_LCC if recipe.select_best_epoch else ()),
    ]


# ----------------------------------------------------------------------------------------------------------------
# Evaluation by factor
# ----------------------------------------------------------------------------------------------------------------


def factor_groups(row: dict[str, Any], held_out_noises: set[str], held_out_systems: set[str]) -> list[str]:
    """The groups a test clip counts in: overall, seen / unseen noise and system, its system, language, speaker."""
    noise = row["noise_type"]
    groups = ["all"]
    if noise != "none":
        groups.append("noise: unseen recording or type" if noise in held_out_noises else "noise: seen in training")
    else:
        groups.append("noise: none (clean or system only)")
    groups.append("system: unseen" if row["system"] in held_out_systems else "system: seen in training")
    groups += [f"system={row['system']}", f"language={row.get('language', 'unknown')}", f"speaker={row['speaker']}"]
    return groups


def evaluate_by_factor(predictions_csv: Path, test_csv: Path, corpus_config: dict[str, Any],
                       min_clips: int = 10, targets: Sequence[str] = PSEUDO_LABEL_TARGETS) -> dict[str, dict[str, Any]]:
    """LCC / SRCC / MSE / bias per target for every factor group with at least `min_clips` clips (all test speakers
    are unseen; noises and systems are unseen when held out from training)."""
    from ..training.trainer import load_speech_quality_metric

    metric = load_speech_quality_metric()
    test_rows = {Path(row["path"]).name: row for row in read_table(test_csv)}
    held_out_noises = set(corpus_config["test_noises"]) - set(corpus_config["train_noises"])
    held_out_systems = set(corpus_config["test_systems"]) - set(corpus_config["train_systems"])
    groups: dict[str, list[dict[str, str]]] = {}
    for prediction in read_table(predictions_csv):
        row = test_rows.get(Path(prediction["audio_id"]).name)
        if row is None:
            continue
        for group in factor_groups(row, held_out_noises, held_out_systems):
            groups.setdefault(group, []).append(prediction)
    results: dict[str, dict[str, Any]] = {}
    for group in sorted(groups, key=lambda g: (g != "all", g)):
        rows = groups[group]
        if len(rows) < min_clips:
            continue
        entry: dict[str, Any] = {"clips": len(rows)}
        for target in targets:
            true = np.array([to_float(r[target]) for r in rows])
            predicted = np.array([to_float(r[f"{target}_pred"]) for r in rows])
            keep = np.isfinite(true) & np.isfinite(predicted)
            scores = metric.compute(predictions=predicted[keep], references=true[keep]) if keep.sum() > 2 else {}
            entry[target] = {k: round(float(v), 4) for k, v in scores.items() if k in REPORTED_METRIC_KEYS}
        results[group] = entry
    return results


def factor_table(results: dict[str, dict[str, Any]], prefixes: Sequence[str] = ("all", "noise:", "system:",
                                                                                  "language=", "system="),
                 targets: Sequence[str] = PSEUDO_LABEL_TARGETS) -> str:
    """A markdown table (LCC / SRCC / MSE / bias per target) of the groups starting with `prefixes`, in that order.
    Results recorded before the bias was kept show three values."""
    lines = ["| group | clips | " + " | ".join(t.upper().replace("_", "-") for t in targets) + " |",
             "|---|---:|" + "---|" * len(targets)]
    for prefix in prefixes:
        for group, entry in results.items():
            if group.startswith(prefix):
                cells = []
                for target in targets:
                    m = entry.get(target, {})
                    cells.append(" / ".join(f"{m[k]:+.3f}" if k == "bias" else f"{m[k]:.3f}"
                                            for k in REPORTED_METRIC_KEYS if k in m) if m else "-")
                lines.append(f"| {group} | {entry['clips']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# The card
# ----------------------------------------------------------------------------------------------------------------


#: What every shipped model's card says of its SSL branch (the teacher's and the S/N/G model's).
ENCODER_CREDIT = """### The encoder
The SSL branch is the pretrained trunk of **Distill-MOS** (B. Stahl and H. Gamper, "Distillation and Pruning for
Scalable Self-Supervised Representation-Based Speech Quality Assessment", ICASSP 2025; weights by Microsoft under the
MIT licence, credited in the package's NOTICE), frozen: its weights come unchanged from the `distillmos==0.9.1` wheel
on PyPI through `mtqnet build-encoder` (SHA-256 checked, read as data). The spectral and sinc branches, the CNN,
BLSTM, the encoder's projection and the heads were trained here (preset `small-distillmos`)."""


def write_card(model_dir: Path, train_dir: Path, info: dict[str, Any], short_name: str) -> None:
    """README.md: the package's model card (model-index from the test part) plus the data, per-factor results,
    limits and the rebuild command."""
    from ..sharing.model_card import CardOptions, render_card

    card = render_card(train_dir, CardOptions(
        repo_id=short_name, license="other", method="scratch",
        labels_description="intrusive PESQ (ITU-T P.862.2 wide-band), STOI and SDI computed against the clean "
                           "reference of every corpus clip",
        pseudo_label_targets=[], dataset_name="MTQ-Net real-speech corpus, held-out test part (unseen speakers)"))
    pool = info.get("pool") or {}
    sources = "\n".join(f"- `{s['package']}` {s['version']} ({s['kind']}), licence {s['licence']}"
                        for s in pool.get("sources", [])) or "- the clean speech given with --clean_dir"
    timings = ", ".join(f"{stage} {seconds / 60:.1f} min" for stage, seconds in info["timings_s"].items())
    extra = f"""

## The shipped teacher: data, results by factor, limits

This folder ships inside the `mtqnet` package as `{short_name}` and is used offline by short name:
`pipeline("speech-quality-assessment", model="{short_name}")` (the package's `pipeline`),
`mtqnet annotate --teacher {short_name}`, `mtqnet train --teacher {short_name}`, `mtqnet score --model {short_name}`.
Its outputs are estimates of **PESQ** (wide-band MOS-LQO, 1.04-4.64), **STOI** (0-1) and **SDI** (0 = no distortion,
larger is worse), the intrusive measures the MPL recipe's teacher predicts, without a clean reference. The PESQ and
SDI heads are linear and their outputs are not clipped: a very noisy clip can score a little under 1.04 (PESQ), a
clean one a little under 0 (SDI); clip them if you need the scales' bounds.

### Data
Clean speech: {pool.get('clips', '?')} clips, {pool.get('hours', '?')} h, {len(pool.get('speakers', []))} speakers,
{len(pool.get('languages', []))} languages, from Debian packages (real recorded voices; telephony prompts are
narrow-band, 8 kHz):
{sources}

Corpus: {info['corpus']['utterances']} clips ({info['corpus'].get('hours', '?')} h), train {info['labels']['train']} /
test {info['labels']['test']}; SNR -5..30 dB and clean; noise recordings and procedural noises; systems
{', '.join(info['corpus']['systems_used'])}. Held out from training: {info['corpus']['test_units']} speakers, the
noises {', '.join(info['corpus']['held_out_noises']) or 'none'} and the systems
{', '.join(info['corpus']['held_out_systems']) or 'none'}. Labelled: {info['labels']['train']} training clips drawn
from the corpus's train part (`train_clips` in the recipe), a tenth of their speakers kept for validation.

{ENCODER_CREDIT}

### Results on the test part (LCC / SRCC / MSE / bias)
Every test speaker is unseen. Bias: mean prediction minus mean label (> 0: scores too high on average). "unseen"
noise and system rows are conditions never used in training.

{factor_table(info['evaluation'])}

### What it has never heard, and other limits
- Only the voices above: read sentences, game dialogue, telephony prompts, letters and words; no spontaneous or
  conversational speech, no children apart from one KLettres voice, no singing.
- Degradations are simulated: additive noise, four enhancers, three codecs, simulated reverberation, band limiting,
  clipping and packet loss, one per clip. No real rooms, microphones, networks or combinations of them.
- Labels are intrusive measures of each clip against its clean reference, not listener opinions; PESQ and STOI
  themselves are known to misjudge some enhancement artefacts.
- Scores on clips longer than the 2-6 s it was trained on rely on the pooling; the pipeline windows long audio.

### Licence
The weights were trained here. The recordings they were trained on are CC-BY-SA-3.0, CC-BY-3.0, GPL-2(+) and CC0
(listed above); whether those licences reach trained weights is not settled, hence `license: other`. Check them for
your use.

### Rebuild
`mtqnet build-pretrained {short_name.split('/')[-1]} --work_dir work/teacher` rebuilds this folder from nothing
(recipe below; {timings}; total {sum(info['timings_s'].values()) / 60:.0f} min on {info['cpus']} CPU cores).
Recipe: `{json.dumps(info['recipe'])}`
"""
    (model_dir / "README.md").write_text(str(card) + extra)


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CorpusFolders:
    """Where the data stages put their output: the corpus, and the pool it came from (None with --clean_dir)."""

    corpus_dir: Path
    pool_dir: Path | None


def data_stages(state: BuildState, work_dir: Path, recipe: TeacherRecipe, *, packages_dir: Path | None,
                clean_dir: Path | None, noise_dir: Path | None, workers: int) -> CorpusFolders:
    """The stages every shipped model starts from: `packages`, `pool` (both skipped with --clean_dir) and `corpus`.
    The same recipe gives the same corpus, byte for byte."""
    from ..corpus import speech_pool
    from ..corpus.builder import build_corpus

    # A pool made by `mtqnet speech-pool` given as --clean_dir (its speech/ folder) still names the languages.
    pool_dir = work_dir / "pool" if clean_dir is None else \
        clean_dir.parent if (clean_dir.parent / "pool_info.json").is_file() else None
    packages_dir = packages_dir or work_dir / "packages"
    corpus_dir = work_dir / "corpus"
    if clean_dir is None:
        assert pool_dir is not None
        if not state.done("pool") and pool_dir.exists() and not (pool_dir / "pool_info.json").is_file():
            shutil.rmtree(pool_dir)  # a pool stage killed halfway, inside this build's own folder: start it again
        state.run("packages", lambda: speech_pool.fetch_packages(packages_dir, with_noise=True))
        state.run("pool", lambda: print(speech_pool.summary(speech_pool.make_speech_pool(
            packages_dir, pool_dir, seed=recipe.seed, workers=workers))))
        clean_dir, noise_dir = pool_dir / "speech", pool_dir / "noise"
    state.run("corpus", lambda: build_corpus(clean_dir, corpus_dir, corpus_settings(recipe, noise_dir),
                                             workers=workers))
    return CorpusFolders(corpus_dir, pool_dir)


def check_model_dir(model_dir: Path, overwrite: bool) -> None:
    """Refuse a model folder this command did not write (no build_info.json), unless `overwrite`."""
    if model_dir.exists() and not (model_dir / BUILD_INFO).is_file() and any(model_dir.iterdir()) and not overwrite:
        raise ValueError(f"{model_dir} holds files this command did not write (no {BUILD_INFO}); pass --overwrite "
                         "or choose another folder")


def pool_summary(pool_dir: Path | None) -> dict[str, Any] | None:
    """The pool facts a card reports (clips, hours, speakers, languages, sources), or None without a pool."""
    if not pool_dir:
        return None
    pool_info = json.loads((pool_dir / "pool_info.json").read_text())
    return {k: pool_info[k] for k in ("clips", "hours", "speakers", "languages", "sources")}


def evaluate_stage(state: BuildState, work_dir: Path, predictions_csv: Path, test_csv: Path,
                   corpus_config: dict[str, Any], targets: Sequence[str] = PSEUDO_LABEL_TARGETS) -> None:
    """`evaluate`: LCC / SRCC / MSE / bias by factor into work_dir/evaluation.json and evaluation.md."""
    def evaluate() -> None:
        results = evaluate_by_factor(predictions_csv, test_csv, corpus_config, targets=targets)
        (work_dir / "evaluation.json").write_text(json.dumps(results, indent=2))
        (work_dir / "evaluation.md").write_text(factor_table(results, targets=targets) + "\n")
        print(factor_table(results, targets=targets))

    state.run("evaluate", evaluate)


def ship_stage(state: BuildState, model_dir: Path, train_dir: Path, record: Callable[[], dict[str, Any]],
               card: Callable[[Path, Path, dict[str, Any]], None]) -> None:
    """`ship`: the trained folder's files, the card (`card(model_dir, train_dir, info)`) and build_info.json
    (`record()`). Run again when the folder lost its build_info.json, or when it goes to another folder than last
    time (a finished build shipped again with --install)."""
    def ship() -> None:
        info = record()
        model_dir.mkdir(parents=True, exist_ok=True)
        for name in SHIPPED_FILES:
            shutil.copyfile(train_dir / name, model_dir / name)
        card(model_dir, train_dir, info)
        (model_dir / BUILD_INFO).write_text(json.dumps(info, indent=2))
        state.state["shipped_to"] = str(model_dir)
        print(f"[build-pretrained] model folder: {model_dir}")

    shipped_here = state.state.get("shipped_to") == str(model_dir)
    if not state.done("ship") or not (model_dir / BUILD_INFO).is_file() or not shipped_here:
        state.state["done"].pop("ship", None)
        state.run("ship", ship)


def build_teacher(work_dir: Path, recipe: TeacherRecipe, *, packages_dir: Path | None = None,
                  clean_dir: Path | None = None, noise_dir: Path | None = None, install: bool = False,
                  overwrite: bool = False, workers: int | None = None,
                  short_name: str = "mtqnet/teacher-pesq-stoi-sdi") -> Path:
    """Run the stages (see the module docstring); returns the model folder."""
    from ..labels.annotate import IntrusiveTeacher, annotate_file
    from ..training.recipe import train_resuming

    work_dir = work_dir.resolve()
    settings = {"recipe": recipe.as_json(), "clean_dir": str(clean_dir) if clean_dir else None,
                "noise_dir": str(noise_dir) if noise_dir else None}
    state = BuildState(work_dir, settings)
    workers = workers or min(2, os.cpu_count() or 1)
    labels_dir, train_dir = work_dir / "labels", work_dir / "train"
    model_dir = PRETRAINED_DIR / short_name.split("/")[-1] if install else work_dir / "model"
    check_model_dir(model_dir, overwrite)
    folders = data_stages(state, work_dir, recipe, packages_dir=packages_dir, clean_dir=clean_dir,
                          noise_dir=noise_dir, workers=workers)
    corpus_dir, pool_dir = folders.corpus_dir, folders.pool_dir
    languages = speaker_languages(pool_dir)

    def labels() -> None:
        to_label = clips_to_label(recipe, corpus_dir / "manifest.csv", labels_dir)
        annotate_file(str(to_label), str(labels_dir / "intrusive.csv"),
                      IntrusiveTeacher("path", "clean_path"), shard_size=1000, batch_size=16, num_proc=workers)
        counts = label_tables(to_label, labels_dir / "intrusive.csv", languages, labels_dir)
        (labels_dir / "counts.json").write_text(json.dumps(counts))

    state.run("labels", labels)
    state.run("train", lambda: train_resuming(train_arguments(recipe, labels_dir, train_dir),
                                          prog="mtqnet build-pretrained (train)"))

    corpus_info = json.loads((corpus_dir / "corpus_info.json").read_text())
    config = corpus_info["config"]

    evaluate_stage(state, work_dir, train_dir / "predictions.csv", labels_dir / "test.csv", config)

    def record() -> dict[str, Any]:
        manifest = read_table(corpus_dir / "manifest.csv")
        return {
            "name": short_name, "recipe": recipe.as_json(), "cpus": os.cpu_count(),
            "timings_s": dict(state.state["done"]),
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

    ship_stage(state, model_dir, train_dir, record,
               lambda folder, trained, info: write_card(folder, trained, info, short_name))
    return model_dir


def parse_args(argv: Sequence[str] | None = None, prog: str = "mtqnet build-pretrained") -> argparse.Namespace:
    from .build_student import StudentRecipe

    defaults, student = TeacherRecipe(), StudentRecipe()
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     epilog="Stages: " + ", ".join(STAGES) + " (teacher); see docs/pretrained.md")
    parser.add_argument("name", choices=[name.split("/")[-1] for name in SHIPPED], help="the model to rebuild")
    parser.add_argument("--work_dir", type=Path, required=True, help="new folder, or an earlier run's to resume it")
    parser.add_argument("--packages_dir", type=Path, help="already unpacked packages (default: fetched into work_dir)")
    parser.add_argument("--clean_dir", type=Path, help="use this clean speech instead of the packages' pool")
    parser.add_argument("--noise_dir", type=Path, help="noise recordings to use with --clean_dir")
    corpus = parser.add_argument_group("corpus (both models)")
    corpus.add_argument("--count", type=int, default=defaults.count, help="corpus clips (default %(default)s)")
    corpus.add_argument("--test_noises", nargs="+", default=list(defaults.test_noises),
                        help="noises held out of training (default: %(default)s)")
    corpus.add_argument("--test_systems", nargs="+", default=list(defaults.test_systems),
                        help="systems held out of training (default: %(default)s)")
    corpus.add_argument("--systems", nargs="+", default=list(defaults.systems), help="corpus systems (default all)")
    teacher = parser.add_argument_group("teacher-pesq-stoi-sdi")
    teacher.add_argument("--epochs", type=float, default=defaults.epochs, help="training epochs (default %(default)s)")
    teacher.add_argument("--preset", default=defaults.preset, help="model size (default %(default)s)")
    teacher.add_argument("--train_clips", type=int, default=defaults.train_clips,
                         help="training clips drawn from the corpus's train part (default %(default)s)")
    small = parser.add_argument_group("small-p835")
    small.add_argument("--pool", type=int, default=student.pool, help="training clips drawn (default %(default)s)")
    small.add_argument("--labelled", type=int, default=student.labelled,
                       help="of them, clips with DNSMOS stand-in labels (default %(default)s)")
    small.add_argument("--validation", type=int, default=student.validation,
                       help="of them, validation clips (default %(default)s)")
    small.add_argument("--test", type=int, default=student.test, help="held-out test clips (default %(default)s)")
    small.add_argument("--steps", type=int, default=student.steps, help="training steps (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workers", type=int, help="processes for the pool, corpus and labels (default 2)")
    parser.add_argument("--install", action="store_true",
                        help="write the result into the package's shipped folder (replacing the shipped model)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model folder this command did not write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, prog: str = "mtqnet build-pretrained") -> int:
    from .build_student import StudentRecipe, build_student

    args = parse_args(argv, prog)
    recipe = dataclasses.replace(TeacherRecipe(), count=args.count, epochs=args.epochs, preset=args.preset,
                                 train_clips=args.train_clips,
                                 test_noises=tuple(args.test_noises), test_systems=tuple(args.test_systems),
                                 systems=tuple(args.systems), seed=args.seed)
    where = dict(packages_dir=args.packages_dir, clean_dir=args.clean_dir, noise_dir=args.noise_dir,
                 install=args.install, overwrite=args.overwrite, workers=args.workers,
                 short_name=f"mtqnet/{args.name}")
    if args.name == "small-p835":
        # The student's corpus is the teacher's (its training settings do not matter here).
        corpus = dataclasses.replace(recipe, epochs=TeacherRecipe.epochs, preset=TeacherRecipe.preset,
                                     train_clips=TeacherRecipe.train_clips)
        build_student(args.work_dir, StudentRecipe(corpus=corpus, pool=args.pool, labelled=args.labelled,
                                                   validation=args.validation, test=args.test, steps=args.steps,
                                                   seed=args.seed), **where)
    else:
        build_teacher(args.work_dir, recipe, **where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
