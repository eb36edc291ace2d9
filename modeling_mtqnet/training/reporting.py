"""Results in the paper's layout: predictions.csv, results.md (LCC / SRCC / MSE per target, and a warning for a
target that did not learn), scatter plots, and a build's results by factor group (`factor_table`)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..tables import read_table, to_float, write_table
from ..vocabulary import PSEUDO_LABEL_TARGETS, display_name

METRIC_KEYS = ("lcc", "srcc", "mse")
#: What the speech-quality metric reports per target: the paper's three and the bias (mean prediction minus label),
#: which is never averaged across targets (their scales differ).
REPORTED_METRIC_KEYS = (*METRIC_KEYS, "bias")


#: Below this LCC on a run's validation or test part, a target is reported as not learned (negative or near zero).
WEAK_LCC = 0.2
#: What usually keeps a target from learning, in the order to check them.
WEAK_TARGET_CAUSES = (
    "too few labels for it (or too few validation / test clips for a stable correlation)",
    "a schedule that did not train (learning rate, warm-up, steps; `mtqnet train` defaults to the recipe's)",
    "a label column on another scale than the target's (another range, or higher meaning worse)",
)


def format_cell(metrics: Mapping[str, float], target: str) -> str:
    values = [metrics.get(f"{target}_{key}", math.nan) for key in METRIC_KEYS]
    return " / ".join("n/a" if v is None or math.isnan(v) else f"{v:.3f}" for v in values)


def results_table(systems: Mapping[str, Mapping[str, float]], targets: Sequence[str]) -> str:
    """A markdown table, one row per system, one column per target, cells 'LCC / SRCC / MSE' (the paper's layout).

    `systems` maps a system name to metrics keyed `<target>_lcc`, `<target>_srcc`, `<target>_mse` (an optional
    `eval_`/`test_` prefix is ignored).
    """
    header = "| system | " + " | ".join(display_name(t) for t in targets) + " |"
    lines = [header, "|---|" + "---|" * len(targets)]
    for system, metrics in systems.items():
        metrics = strip_prefix(metrics)
        lines.append(f"| {system} | " + " | ".join(format_cell(metrics, t) for t in targets) + " |")
    return "\n".join(lines)


def factor_table(results: Mapping[str, Mapping[str, Any]], prefixes: Sequence[str] = ("all", "noise:", "system:",
                                                                                    "language=", "system="),
                 targets: Sequence[str] = PSEUDO_LABEL_TARGETS) -> str:
    """A markdown table (LCC / SRCC / MSE / bias per target) of a build's results by factor group (its
    evaluation.json: group -> {"clips", target -> metrics}), the groups starting with `prefixes`, in that order.
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


def weak_targets(systems: Mapping[str, Mapping[str, float]], targets: Sequence[str],
                 threshold: float = WEAK_LCC) -> list[tuple[str, str, float]]:
    """(system, target, LCC) for each row of a results table (`systems` as for `results_table`) and target whose
    LCC is below `threshold`, or undefined (NaN) although labels were scored (a finite MSE: constant predictions,
    constant labels or a single labelled clip). A target with no metrics at all is not judged."""
    found = []
    for system, metrics in systems.items():
        metrics = strip_prefix(metrics)
        for target in targets:
            lcc, mse = metrics.get(f"{target}_lcc"), metrics.get(f"{target}_mse")
            if lcc is None:
                continue
            if math.isnan(lcc):
                if mse is not None and not math.isnan(mse):
                    found.append((system, target, lcc))
            elif lcc < threshold:
                found.append((system, target, lcc))
    return found


def weak_target_note(found: Sequence[tuple[str, str, float]], threshold: float = WEAK_LCC) -> str:
    """One plain paragraph for under a results table and for the log: which targets did not learn in which rows
    (`weak_targets`), and the likely causes; '' when every target learned."""
    if not found:
        return ""
    by_target: dict[str, list[str]] = {}
    for system, target, lcc in found:
        value = "undefined" if math.isnan(lcc) else f"{lcc:.3f}"
        by_target.setdefault(display_name(target), []).append(f"{value} in {system}")
    names = list(by_target)
    subject = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    details = "; ".join(f"{name} LCC {', '.join(values)}" for name, values in by_target.items())
    its = "its" if len(names) == 1 else "their"
    return (f"Warning: {subject} did not learn ({details}; below {threshold:g} counts as not learned): {its} scores "
            f"do not follow {its} labels, so do not use them. Likely causes: {'; '.join(WEAK_TARGET_CAUSES)}.")


def parse_results_table(text: str) -> dict[str, dict[str, float]]:
    """Read back a table written by `results_table`: {system: {"<target>_lcc": ..., ...}} (display names kept).

    The first table of `text` is read (a results file may hold more than one)."""
    rows: list[str] = []
    for line in text.splitlines():
        if line.strip().startswith("|"):
            rows.append(line.strip())
        elif rows:
            break
    if len(rows) < 2:
        raise ValueError("No markdown table found")
    targets = [cell.strip() for cell in rows[0].strip("|").split("|")][1:]
    parsed: dict[str, dict[str, float]] = {}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        values = {}
        for target, cell in zip(targets, cells[1:]):
            for key, number in zip(METRIC_KEYS, cell.split(" / ")):  # as format_cell joins them ("n/a" stays whole)
                number = number.strip()
                values[f"{target}_{key}"] = math.nan if number == "n/a" else float(number)
        parsed[cells[0]] = values
    return parsed


def strip_prefix(metrics: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        for prefix in ("eval_", "test_"):
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        out[key] = value
    return out


def write_predictions_csv(path: str | os.PathLike, audio_ids: Sequence[str], targets: Sequence[str],
                          predicted: np.ndarray, true: np.ndarray | None = None) -> None:
    """One row per utterance: audio_id, then `<target>` (true, empty if missing) and `<target>_pred` per target."""
    header = ["audio_id"]
    for target in targets:
        header += ([target] if true is not None else []) + [f"{target}_pred"]
    rows = []
    for row, audio_id in enumerate(audio_ids):
        cells = {"audio_id": audio_id}
        for k, target in enumerate(targets):
            if true is not None:
                cells[target] = "" if math.isnan(true[row, k]) else f"{true[row, k]:.6g}"
            cells[f"{target}_pred"] = f"{predicted[row, k]:.6g}"
        rows.append(cells)
    write_table(path, rows, header)


def lcc_srcc_mse(predicted: np.ndarray, true: np.ndarray) -> tuple[float, float, float]:
    """LCC, SRCC and MSE of one target's predictions."""
    from scipy.stats import pearsonr, spearmanr

    return float(pearsonr(predicted, true)[0]), float(spearmanr(predicted, true)[0]), \
        float(np.mean((predicted - true) ** 2))


def read_predictions(run_dir: str | os.PathLike, audio_paths: Sequence[str], targets: Sequence[str]) -> np.ndarray:
    """(clips, targets) predictions of a run's predictions.csv, in `audio_paths` order (matched by file name)."""
    rows = {Path(row["audio_id"]).name: row for row in read_table(Path(run_dir) / "predictions.csv")}
    missing = [path for path in audio_paths if Path(path).name not in rows]
    if missing:
        raise ValueError(f"{run_dir}/predictions.csv has no prediction for {len(missing)} clip(s), e.g. {missing[0]}")
    return np.array([[to_float(rows[Path(p).name][f"{t}_pred"]) for t in targets] for p in audio_paths])


def seed_bootstrap(values: Mapping[int, np.ndarray], reference: Mapping[int, np.ndarray] | None, true: np.ndarray,
                   targets: Sequence[str], rounds: int, rng: np.random.Generator) -> dict[str, list[float]]:
    """Per target and metric: [mean over seeds, low, high] of LCC / SRCC / MSE, or of their difference to `reference`
    paired by seed; the 95% interval from resampling test clips and seeds together (`values`: seed -> (clips,
    targets) predictions; `true`: (clips, targets) labels)."""
    seeds = sorted(values)
    result: dict[str, list[float]] = {}
    for k, target in enumerate(targets):
        def statistic(clips: np.ndarray, chosen: Sequence[int]) -> np.ndarray:
            scores = []
            for seed in chosen:
                own = np.array(lcc_srcc_mse(values[seed][clips, k], true[clips, k]))
                if reference is not None:
                    own = own - np.array(lcc_srcc_mse(reference[seed][clips, k], true[clips, k]))
                scores.append(own)
            return np.mean(scores, axis=0)

        everything = np.arange(true.shape[0])
        point = statistic(everything, seeds)
        draws = np.array([statistic(rng.integers(0, true.shape[0], true.shape[0]),
                                    [seeds[i] for i in rng.integers(0, len(seeds), len(seeds))])
                          for _ in range(rounds)])
        low, high = np.percentile(draws, [2.5, 97.5], axis=0)
        for m, name in enumerate(METRIC_KEYS):
            result[f"{target}_{name}"] = [round(float(point[m]), 4), round(float(low[m]), 4), round(float(high[m]), 4)]
    return result


def agg_pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (files only; works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter_plots(output_dir: str | os.PathLike, targets: Sequence[str], predicted: np.ndarray, true: np.ndarray,
                  metrics: Mapping[str, float] | None = None, prefix: str = "scatter") -> list[Path]:
    """One predicted-vs-true PNG per target, with the identity line and the metrics in the title."""
    plt = agg_pyplot()
    metrics = strip_prefix(metrics or {})
    paths = []
    for k, target in enumerate(targets):
        keep = ~np.isnan(true[:, k])
        figure, axis = plt.subplots(figsize=(4, 4), dpi=100)
        axis.scatter(true[keep, k], predicted[keep, k], s=8, alpha=0.6)
        low = float(np.nanmin([true[keep, k].min(initial=np.inf), predicted[keep, k].min(initial=np.inf)]))
        high = float(np.nanmax([true[keep, k].max(initial=-np.inf), predicted[keep, k].max(initial=-np.inf)]))
        if np.isfinite(low) and np.isfinite(high):
            axis.plot([low, high], [low, high], color="grey", linewidth=1)
        axis.set_xlabel(f"true {display_name(target)}")
        axis.set_ylabel(f"predicted {display_name(target)}")
        axis.set_title(f"{display_name(target)}: LCC/SRCC/MSE {format_cell(metrics, target)}", fontsize=9)
        figure.tight_layout()
        path = Path(output_dir) / f"{prefix}_{target}.png"
        figure.savefig(path)
        plt.close(figure)
        paths.append(path)
    return paths


__all__ = ["WEAK_LCC", "agg_pyplot", "factor_table", "lcc_srcc_mse", "parse_results_table", "read_predictions",
           "results_table", "scatter_plots", "seed_bootstrap", "strip_prefix", "weak_target_note", "weak_targets",
           "write_predictions_csv"]
