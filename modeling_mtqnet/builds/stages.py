"""The stages every shipped model's build shares: its ledger (`build_ledger`), the data stages it starts from
(`packages`, `pool`, `corpus`), and the `evaluate` and `ship` stages it ends with."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

from ..sharing.model_card import CardOptions, render_card
from ..tables import read_table
from ..training.reporting import factor_table
from ..vocabulary import PSEUDO_LABEL_TARGETS
from .evaluation import evaluate_by_factor
from .ledger import SettingsChanged, StageLedger, changed_settings
from .recipes import TeacherRecipe

SHIPPED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
BUILD_INFO = "build_info.json"


def build_ledger(work_dir: Path, settings: dict[str, Any]) -> StageLedger:
    """`work_dir/state.json`: the build's settings and its finished stages with their durations. Another build's
    folder (other settings) and a folder of other files are refused; a new build writes its ledger at once, so that a
    rerun knows the folder for its own."""
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        ledger = StageLedger(work_dir / "state.json", settings, log_prefix="[build-pretrained]")
    except SettingsChanged as changed:
        raise ValueError(f"{work_dir} holds a build with other settings "
                         f"({', '.join(changed_settings(changed.recorded, changed.given))}); use another --work_dir "
                         "or the same settings to resume it") from None
    if not ledger.recorded:
        if any(work_dir.iterdir()):
            raise ValueError(f"{work_dir} is not empty and holds no build (no state.json); give a new --work_dir")
        ledger.save()
    return ledger


# ----------------------------------------------------------------------------------------------------------------
# Data
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


@dataclasses.dataclass
class CorpusFolders:
    """Where the data stages put their output: the corpus, and the pool it came from (None with --clean_dir)."""

    corpus_dir: Path
    pool_dir: Path | None


def data_stages(ledger: StageLedger, work_dir: Path, recipe: TeacherRecipe, *, packages_dir: Path | None,
                clean_dir: Path | None, noise_dir: Path | None, workers: int) -> CorpusFolders:
    """The stages every shipped model starts from: `packages`, `pool` (both skipped with --clean_dir) and `corpus`.
    The same recipe gives the same clips (same names, sources, conditions and order). Their audio is not always the
    same to the bit: two builds of 2026-12-06, hours apart, differed slightly in all 29 RNNoise and 3 of 28 Opus
    clips of a 300-clip sample (their DNSMOS labels moved by up to 0.05), likely the libraries' SIMD code choosing
    another path on another CPU."""
    from ..corpus import speech_pool
    from ..corpus.builder import build_corpus

    # A pool made by `mtqnet speech-pool` given as --clean_dir (its speech/ folder) still names the languages.
    pool_dir = work_dir / "pool" if clean_dir is None else \
        clean_dir.parent if (clean_dir.parent / "pool_info.json").is_file() else None
    packages_dir = packages_dir or work_dir / "packages"
    corpus_dir = work_dir / "corpus"
    if clean_dir is None:
        assert pool_dir is not None
        if not ledger.done("pool") and pool_dir.exists() and not (pool_dir / "pool_info.json").is_file():
            shutil.rmtree(pool_dir)  # a pool stage killed halfway, inside this build's own folder: start it again
        ledger.run("packages", lambda: speech_pool.fetch_packages(packages_dir, with_noise=True))
        ledger.run("pool", lambda: print(speech_pool.summary(speech_pool.make_speech_pool(
            packages_dir, pool_dir, seed=recipe.seed, workers=workers))))
        clean_dir, noise_dir = pool_dir / "speech", pool_dir / "noise"
    ledger.run("corpus", lambda: build_corpus(clean_dir, corpus_dir, corpus_settings(recipe, noise_dir),
                                              workers=workers))
    return CorpusFolders(corpus_dir, pool_dir)


# ----------------------------------------------------------------------------------------------------------------
# Evaluation and shipping
# ----------------------------------------------------------------------------------------------------------------


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


def evaluate_stage(ledger: StageLedger, work_dir: Path, predictions_csv: Path, test_csv: Path,
                   corpus_config: dict[str, Any], targets: Sequence[str] = PSEUDO_LABEL_TARGETS) -> None:
    """`evaluate`: LCC / SRCC / MSE / bias by factor into work_dir/evaluation.json and evaluation.md."""
    def evaluate() -> None:
        results = evaluate_by_factor(predictions_csv, test_csv, corpus_config, targets=targets)
        (work_dir / "evaluation.json").write_text(json.dumps(results, indent=2))
        (work_dir / "evaluation.md").write_text(factor_table(results, targets=targets) + "\n")
        print(factor_table(results, targets=targets))

    ledger.run("evaluate", evaluate)


def write_card(model_dir: Path, train_dir: Path, options: CardOptions, info: dict[str, Any]) -> None:
    """README.md: the package's model card of the trained folder with the section of a shipped model, rendered from
    `info` (its build_info.json)."""
    card = render_card(train_dir, dataclasses.replace(options, build_info=info))
    (model_dir / "README.md").write_text(str(card))


def ship_stage(ledger: StageLedger, model_dir: Path, train_dir: Path, record: Callable[[], dict[str, Any]],
               card: CardOptions) -> None:
    """`ship`: the trained folder's files, the card (`write_card` with `card`) and build_info.json (`record()`).
    Run again when the folder lost its build_info.json, or when it goes to another folder than last time (a finished
    build shipped again with --install)."""
    def ship() -> None:
        info = record()
        model_dir.mkdir(parents=True, exist_ok=True)
        for name in SHIPPED_FILES:
            shutil.copyfile(train_dir / name, model_dir / name)
        write_card(model_dir, train_dir, card, info)
        (model_dir / BUILD_INFO).write_text(json.dumps(info, indent=2))
        ledger.state["shipped_to"] = str(model_dir)
        print(f"[build-pretrained] model folder: {model_dir}")

    shipped_here = ledger.state.get("shipped_to") == str(model_dir)
    if not ledger.done("ship") or not (model_dir / BUILD_INFO).is_file() or not shipped_here:
        ledger.forget("ship")
        ledger.run("ship", ship)


__all__ = ["BUILD_INFO", "SHIPPED_FILES", "CorpusFolders", "build_ledger", "check_model_dir",
           "corpus_rows", "corpus_settings", "data_stages", "evaluate_stage", "located_row", "pool_summary",
           "ship_stage", "speaker_languages", "write_card"]
