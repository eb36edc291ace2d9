"""A build's evaluation by factor: LCC / SRCC / MSE / bias on its test part overall and per group of clips (seen or
unseen noise and system, each system, language, speaker), so that a card says where a model holds and where not."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..tables import read_table, to_float
from ..training.reporting import REPORTED_METRIC_KEYS
from ..vocabulary import PSEUDO_LABEL_TARGETS


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


__all__ = ["evaluate_by_factor", "factor_groups"]
