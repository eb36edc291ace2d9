"""How many labelled clips does MTQ-Net need, and how much do the teacher's pseudo labels buy? A label-efficiency study.

On the corpus of `mtqnet build-pretrained teacher-pesq-stoi-sdi` (its work folder) and with the shipped teacher:

1. parts (seeded): a student pool of `--pool` clips of the corpus's training split; its first `max(--sizes)` clips
   are the labelled candidates, the next `--validation` clips a validation set shared by every run (model
   selection); a test set of `--test` clips of the held-out part (speakers, and some noises and systems, never used
   in training, by the teacher either);
2. labels: DNSMOS P.835 SIG / BAK / OVRL (speechmos) as the primary targets S-MOS / N-MOS / G-MOS, for the candidates,
   validation and test clips: **stand-ins**, not 3QUEST; the shipped teacher's PESQ / STOI / SDI predictions for every
   pool clip (the pseudo labels);
3. runs: for each size n, seed k and method: the labelled set is the first n candidates of a seed-k permutation (the
   same for every method, so runs pair up, and nested: a larger size adds clips); scratch and KT train on it alone,
   MPL and MPL+KT on it plus every other pool clip with pseudo labels only; one step budget for every method and size
   (`--steps`), evaluation every `--steps / 4` steps on the validation set, the best checkpoint scored on the test set;
4. report: per size, method and target, the mean LCC / SRCC / MSE over seeds with a 95% interval from a paired
   bootstrap (test clips and seeds resampled together), the difference to scratch with its interval, a learning
   curve PNG, and the reading in plain words (`report.md`, `results.json`, `learning_curve.png`).

5. the objective study (`--objectives`): the same runs with another loss (`huber`, `mse`, `mae`), Huber delta or
   frame-loss weight alpha; each (method, objective) is an arm named `METHOD~LOSS_dDELTA_aALPHA` (the package's
   default objective, Huber delta 1 alpha 1, keeps the plain method name, so its runs are shared), compared with
   `--reference` (default scratch; `mpl` for the objective study) paired by seed.

Runs are resumed one by one (a run with its predictions.csv is not trained again). The methods are the package's
(`scratch kt mpl mpl_kt`, MPL with `mtqnet train`'s default `--labelled_batch_share 0.5`: at least half of every
epoch's draws carry primary labels) plus `mpl_natural` / `mpl_kt_natural`: the same with `--labelled_batch_share 0`,
the natural mix (labelled clips drawn at their share of the pool), and `mpl_oracle`: MPL whose pseudo labels are the
pool's intrusive PESQ / STOI / SDI (computed against the clean reference, what a perfect teacher would give), to tell
the teacher's errors apart from how much PESQ / STOI / SDI say about the primary targets at all; and `readout`: no
MTQ-Net at all, a ridge regression (a linear read-out) on the mean and standard deviation over time of the preset's
frozen pretrained encoder's frames (`--preset small-distillmos`), fitted on the labelled clips, its ridge strength per
target chosen on the validation set.

The defaults are the study on the shipped encoder (0.3.0): `small-distillmos` students on whole clips, a pool of
2,000 clips, 50 / 200 / 800 labelled ones (the first 800 pool clips the candidates, the next 100 the validation
clips), 300 test clips.

    .venv/bin/python studies/label_efficiency.py --build_dir work/teacher --output_dir outputs/label_efficiency
    .venv/bin/python studies/label_efficiency.py ... --methods scratch kt mpl_kt readout --steps 100 --batch_size 8
    .venv/bin/python studies/label_efficiency.py ... --preset small --crop_s 3.0 --pool 3000 --sizes 50 200 800 \
        --methods scratch mpl                                    # 0.1.0's trunk without SSL
    .venv/bin/python studies/label_efficiency.py ... --sizes 200 --methods mpl --reference mpl \
        --objectives huber/1/1 mse/1/1 mae/1/1 huber/0.5/1 huber/2/1 huber/1/0
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from modeling_mtqnet.pretrained import PRESET_SSL_MODELS, SHIPPED_TEACHER, SHIPPED_TEACHER_PRESET
from modeling_mtqnet.tables import columns_of, read_table, to_float, write_table
from modeling_mtqnet.training.reporting import read_predictions, seed_bootstrap
from modeling_mtqnet.builds.student import (
    draw_parts, evaluation_tables, label_parts, read_parts, student_training_values, training_tables,
)
from modeling_mtqnet.vocabulary import PRIMARY_TARGETS, PSEUDO_LABEL_TARGETS

METHODS = ("scratch", "kt", "mpl", "mpl_kt", "mpl_natural", "mpl_kt_natural", "mpl_oracle", "readout")
#: Not an MTQ-Net: a ridge regression on the mean and standard deviation over time of the frozen encoder's frames (the
#: baseline MTQ-Net's trunk must beat to earn its place); its ridge strength per target is chosen on the validation set.
READOUT = "readout"
READOUT_RIDGES = tuple(10.0 ** k for k in range(-3, 5))
VARIANT_SUFFIXES = ("_natural", "_oracle")
LOSSES = ("huber", "mse", "mae")
DEFAULT_OBJECTIVE = ("huber", 1.0, 1.0)  # `mtqnet train`'s: the paper's best (Table 2)


def parse_objective(spec: str) -> tuple[str, float, float]:
    """`LOSS/DELTA/ALPHA` (e.g. `huber/0.5/1`, `mse/1/0`) -> (loss, Huber delta, frame-loss weight alpha)."""
    parts = spec.split("/")
    try:
        loss, delta, alpha = parts[0], float(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        raise argparse.ArgumentTypeError(f"an objective is LOSS/DELTA/ALPHA, e.g. huber/1/1, got {spec!r}") from None
    if len(parts) != 3 or loss not in LOSSES or delta <= 0 or alpha < 0:
        raise argparse.ArgumentTypeError(f"an objective is LOSS/DELTA/ALPHA with LOSS in {LOSSES}, DELTA > 0 and "
                                         f"ALPHA >= 0, got {spec!r}")
    return loss, delta, alpha


def arm_name(method: str, objective: tuple[str, float, float]) -> str:
    """A run family's name: the method, plus the objective unless it is the default."""
    if objective == DEFAULT_OBJECTIVE:
        return method
    loss, delta, alpha = objective
    return f"{method}~{loss}_d{delta:g}_a{alpha:g}"


def base_method(method: str) -> str:
    """The `mtqnet train --method` of a study method (`mpl_natural` -> `mpl`)."""
    for suffix in VARIANT_SUFFIXES:
        method = method.removesuffix(suffix)
    return method


def uses_pool(method: str) -> bool:
    return base_method(method) in ("mpl", "mpl_kt")


# ----------------------------------------------------------------------------------------------------------------
# Parts and labels
# ----------------------------------------------------------------------------------------------------------------


def make_parts(build_dir: Path, out: Path, pool: int, validation: int, test: int, candidates: int,
               seed: int) -> dict[str, list[dict[str, Any]]]:
    """pool / candidates / validation / test rows (absolute paths) from the teacher build's label tables."""
    try:
        return draw_parts(read_table(build_dir / "labels" / "train.csv"), read_table(build_dir / "labels" / "test.csv"),
                          out, pool=pool, candidates=candidates, validation=validation, test=test, seed=seed)
    except ValueError as problem:
        raise SystemExit(str(problem)) from problem


def oracle_table(build_dir: Path, pooled: Path) -> Path:
    """`pooled.csv` with its pseudo-label columns replaced by the intrusive labels of the teacher build (the clean
    reference's PESQ / STOI / SDI of every pool clip): `pooled_oracle.csv` beside it."""
    output = pooled.with_name("pooled_oracle.csv")
    if output.is_file():
        return output
    intrusive = {row["path"]: row for row in read_table(build_dir / "labels" / "train.csv")}
    rows = read_table(pooled)
    missing = [row["path"] for row in rows if row["path"] not in intrusive]
    if missing:
        raise SystemExit(f"{len(missing)} pool clips have no intrusive label in {build_dir / 'labels'}, e.g. "
                         f"{missing[0]}")
    oracle = [{**row, **{target: intrusive[row["path"]][target] for target in PSEUDO_LABEL_TARGETS}} for row in rows]
    write_table(output, oracle, columns_of(oracle))
    return output


# ----------------------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def encoder_student(preset: str):
    """A `--method scratch` student of the preset, built as `mtqnet train` builds it (for its frozen encoder)."""
    from modeling_mtqnet.training.recipe import build_model, parse_arguments

    model_args, data_args, _ = parse_arguments(["--train_file", "unused.csv", "--output_dir", "unused",
                                                "--preset", preset, "--method", "scratch"])
    model = build_model(model_args, data_args)
    if not model.mtqnet.can_cache_ssl_features:
        raise SystemExit(f"--preset {preset} has no frozen pretrained encoder to read out")
    return model


_POOLED: dict[tuple[str, str], np.ndarray] = {}


def pooled_encoder_features(paths: Sequence[str], preset: str) -> np.ndarray:
    """(clips, 2 x hidden): the mean and standard deviation over time of the preset's frozen encoder frames of each
    clip (its own frames only), decoded as `mtqnet train` decodes it (so the disk feature cache of earlier runs is
    reused; kept in memory across runs)."""
    import datasets

    from modeling_mtqnet.model.feature_extraction_mtqnet import MTQNetFeatureExtractor
    from modeling_mtqnet.training.features_cache import DEFAULT_SSL_CACHE_DIR, cache_ssl_features

    missing = [path for path in dict.fromkeys(paths) if (preset, path) not in _POOLED]
    if missing:
        model = encoder_student(preset)
        extractor = MTQNetFeatureExtractor.from_model_config(model.config)
        clips = datasets.Dataset.from_dict({"input_values": [extractor.prepare_waveform(path) for path in missing]})
        cache_dir = None if str(DEFAULT_SSL_CACHE_DIR) == "none" else DEFAULT_SSL_CACHE_DIR
        encoded = cache_ssl_features(clips, model, desc="encoder features", cache_dir=cache_dir)
        for path, frames in zip(missing, encoded["ssl_hidden_states"]):
            frames = np.asarray(frames, dtype=np.float64)
            _POOLED[preset, path] = np.concatenate([frames.mean(axis=0), frames.std(axis=0)])
    return np.stack([_POOLED[preset, path] for path in paths])


def fit_readout(features: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                ridges: Sequence[float] = READOUT_RIDGES) -> tuple[np.ndarray, list[float]]:
    """Ridge regression per target column: fitted on `train` (features standardised by the training clips', the
    intercept not shrunk), its strength the one of `ridges` with the best `validation` LCC; returns the `test`
    predictions (clips, targets) and the chosen strengths."""
    from modeling_mtqnet.training.reporting import lcc_srcc_mse

    mean, scale = features["train"].mean(axis=0), features["train"].std(axis=0) + 1e-8
    standard = {name: (values - mean) / scale for name, values in features.items()}
    train_x = np.hstack([standard["train"], np.ones((len(standard["train"]), 1))])
    predictions = np.zeros((len(standard["test"]), labels["train"].shape[1]))
    chosen = []
    for k in range(labels["train"].shape[1]):
        best = None
        for ridge in ridges:
            penalty = ridge * np.eye(train_x.shape[1])
            penalty[-1, -1] = 0.0  # the intercept is not shrunk
            weights = np.linalg.solve(train_x.T @ train_x + penalty, train_x.T @ labels["train"][:, k])
            predict = {name: standard[name] @ weights[:-1] + weights[-1] for name in ("validation", "test")}
            lcc = lcc_srcc_mse(predict["validation"], labels["validation"][:, k])[0]
            if best is None or lcc > best[0]:
                best = (lcc, ridge, predict["test"])
        chosen.append(best[1])
        predictions[:, k] = best[2]
    return predictions, chosen


def readout_run(files: dict[str, Path], shared: dict[str, Path], output: Path, preset: str) -> None:
    """The read-out arm: `fit_readout` on pooled encoder features (mean and standard deviation) of the labelled,
    validation and test clips; the test clips' predictions written as a training run writes them."""
    from modeling_mtqnet.training.reporting import write_predictions_csv

    tables = {"train": read_table(files["labelled"]), "validation": read_table(shared["validation"]),
              "test": read_table(shared["test"])}
    features = {name: pooled_encoder_features([row["path"] for row in rows], preset) for name, rows in tables.items()}
    labels = {name: np.array([[to_float(row[t]) for t in PRIMARY_TARGETS] for row in rows])
              for name, rows in tables.items()}
    predictions, chosen = fit_readout(features, labels)
    output.mkdir(parents=True, exist_ok=True)
    (output / "readout.json").write_text(json.dumps({"ridge": dict(zip(PRIMARY_TARGETS, chosen)),
                                                     "features": features["train"].shape[1]}, indent=2))
    write_predictions_csv(output / "predictions.csv", [row["path"] for row in tables["test"]], PRIMARY_TARGETS,
                          predictions, labels["test"])


def train_run(method: str, objective: tuple[str, float, float], size: int, seed: int, files: dict[str, Path],
              shared: dict[str, Path], output: Path, args: argparse.Namespace) -> None:
    from modeling_mtqnet.training.recipe import train_resuming, training_arguments

    loss, delta, alpha = objective
    train_file = files["labelled"]
    if uses_pool(method):
        train_file = oracle_table(args.build_dir, files["pooled"]) if method.endswith("_oracle") else files["pooled"]
    values = student_training_values(
        base_method(method), train_file, shared, output,
        preset=args.preset, steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        crop_s=args.crop_s, seed=seed, evaluations=4, teacher=SHIPPED_TEACHER,
        ssl_model=PRESET_SSL_MODELS.get(args.preset) or "none",
        labelled_batch_share=0.0 if method.endswith("_natural") else None)
    values.update(disable_tqdm=True, loss_type=loss, huber_delta=float(delta), alpha=float(alpha))
    train_resuming(training_arguments(values))


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------


def report(out: Path, sizes: list[int], seeds: list[int], methods: list[str], rounds: int,
           reference: str = "scratch") -> dict[str, Any]:
    """`methods` are arm names (see `arm_name`); differences are taken to the `reference` arm, paired by seed."""
    test = read_table(out / "tables" / "test.csv")
    paths = [row["path"] for row in test]
    true = np.array([[to_float(row[t]) for t in PRIMARY_TARGETS] for row in test])
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}
    for size in sizes:
        predictions = {method: {seed: read_predictions(out / "runs" / f"{method}_n{size}_seed{seed}", paths,
                                                       PRIMARY_TARGETS)
                                for seed in seeds
                                if (out / "runs" / f"{method}_n{size}_seed{seed}" / "predictions.csv").is_file()}
                       for method in methods}
        for method, by_seed in predictions.items():
            if not by_seed:
                continue
            entry = {"seeds": sorted(by_seed),
                     "metrics": seed_bootstrap(by_seed, None, true, PRIMARY_TARGETS, rounds, rng)}
            baseline = predictions.get(reference, {})
            paired = sorted(set(by_seed) & set(baseline))
            if method != reference and paired:
                entry["reference"] = reference
                entry["minus_reference"] = seed_bootstrap({s: by_seed[s] for s in paired}, baseline, true,
                                                         PRIMARY_TARGETS, rounds, rng)
            results[f"{method}@{size}"] = entry
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(out, results, sizes, methods, len(paths), reference)
    plot(out, results, sizes, methods)
    return results


def write_report(out: Path, results: dict[str, Any], sizes: list[int], methods: list[str], test_clips: int,
                 reference: str = "scratch") -> None:
    lines = ["# Label efficiency (DNSMOS P.835 stand-in labels, shipped teacher)", "",
             f"Test: {test_clips} clips of the held-out part. Cells: mean over seeds [95% paired-bootstrap interval]. "
             "Primary labels are DNSMOS P.835 SIG / BAK / OVRL (speechmos) as S-MOS / N-MOS / G-MOS: stand-ins, "
             "not 3QUEST. Arms: the method, and `~LOSS_dDELTA_aALPHA` where the objective is not the default "
             "(Huber, delta 1, alpha 1).", ""]
    for metric in ("lcc", "srcc", "mse"):
        lines += [f"## {metric.upper()}", "", "| method | labelled | seeds | " + " | ".join(PRIMARY_TARGETS) + " |",
                  "|---|---:|---:|" + "---|" * len(PRIMARY_TARGETS)]
        for size in sizes:
            for method in methods:
                entry = results.get(f"{method}@{size}")
                if entry:
                    cells = [_cell(entry["metrics"][f"{t}_{metric}"]) for t in PRIMARY_TARGETS]
                    lines.append(f"| {method} | {size} | {len(entry['seeds'])} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"## Difference to {reference} (LCC), paired by seed", "",
              "| method | labelled | " + " | ".join(PRIMARY_TARGETS) + " |", "|---|---:|" + "---|" * 3]
    reading = []
    for size in sizes:
        for method in methods:
            entry = results.get(f"{method}@{size}")
            if not entry or "minus_reference" not in entry:
                continue
            diffs = [entry["minus_reference"][f"{t}_lcc"] for t in PRIMARY_TARGETS]
            lines.append(f"| {method} | {size} | " + " | ".join(_cell(d, signed=True) for d in diffs) + " |")
            for target, (mean, low, high) in zip(PRIMARY_TARGETS, diffs):
                verdict = "better than" if low > 0 else "worse than" if high < 0 else "not distinguishable from"
                reading.append(f"- {method} with {size} labelled clips, {target}: {verdict} {reference} "
                               f"(LCC {mean:+.3f}, 95% interval {low:+.3f} to {high:+.3f}).")
    lines += ["", "## Reading", "", *reading, ""]
    (out / "report.md").write_text("\n".join(lines))


def _cell(values: list[float], signed: bool = False) -> str:
    mean, low, high = values
    pattern = "{:+.3f}" if signed else "{:.3f}"
    return f"{pattern.format(mean)} [{pattern.format(low)}, {pattern.format(high)}]"


def plot(out: Path, results: dict[str, Any], sizes: list[int], methods: list[str]) -> None:
    from modeling_mtqnet.training.reporting import agg_pyplot

    plt = agg_pyplot()
    figure, axes = plt.subplots(1, len(PRIMARY_TARGETS), figsize=(4 * len(PRIMARY_TARGETS), 3.4), sharey=True)
    for axis, target in zip(axes, PRIMARY_TARGETS):
        for method in methods:
            points = [(size, results[f"{method}@{size}"]["metrics"][f"{target}_lcc"]) for size in sizes
                      if f"{method}@{size}" in results]
            if not points:
                continue
            x = [p[0] for p in points]
            mean = [p[1][0] for p in points]
            axis.errorbar(x, mean, yerr=[[m - p[1][1] for m, p in zip(mean, points)],
                                         [p[1][2] - m for m, p in zip(mean, points)]], marker="o", capsize=3,
                          label=method)
        axis.set_xscale("log")
        axis.set_xticks(sizes, [str(size) for size in sizes])  # the sizes run, not log-scale minor ticks
        axis.minorticks_off()
        axis.set_xlabel("labelled clips")
        axis.set_title(target)
    axes[0].set_ylabel("test LCC (95% interval)")
    axes[-1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "learning_curve.png", dpi=110)
    plt.close(figure)


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build_dir", type=Path, required=True, help="work folder of `mtqnet build-pretrained`")
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/label_efficiency"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 800])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["scratch", "kt", "mpl", "mpl_kt", READOUT], choices=METHODS)
    parser.add_argument("--objectives", nargs="+", type=parse_objective, default=[DEFAULT_OBJECTIVE],
                        help="LOSS/DELTA/ALPHA per arm (loss huber, mse or mae; Huber delta; frame-loss weight); "
                             "every method is trained with each (default: huber/1/1)")
    parser.add_argument("--reference", default="scratch",
                        help="the arm differences are taken to (an arm name: a method, or METHOD~LOSS_dD_aA)")
    parser.add_argument("--pool", type=int, default=2000, help="student pool clips (training split)")
    parser.add_argument("--validation", type=int, default=100, help="labelled validation clips shared by every run")
    parser.add_argument("--test", type=int, default=300, help="test clips (held-out part)")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps of every run")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--crop_s", type=lambda text: None if text == "none" else float(text), default=None,
                        help="training clips are randomly cropped to this; `none`: whole clips (a frozen encoder's "
                             "cached features belong to whole clips)")
    parser.add_argument("--preset", default=SHIPPED_TEACHER_PRESET,
                        help="the students' preset (the shipped teacher's: the small trunk on the frozen encoder)")
    parser.add_argument("--bootstrap", type=int, default=500, help="bootstrap rounds")
    parser.add_argument("--workers", type=int, default=2, help="processes for the DNSMOS labels")
    parser.add_argument("--report_only", action="store_true", help="only (re)write the report from finished runs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    arms = list(dict.fromkeys((method, objective) for method in args.methods for objective in args.objectives))
    names = [arm_name(*arm) for arm in arms]
    if args.reference not in names:
        raise SystemExit(f"--reference {args.reference} is not one of the arms: {', '.join(names)}")
    out = args.output_dir.resolve()
    settings = {k: v for k, v in vars(args).items() if k in ("pool", "validation", "test", "steps", "batch_size",
                                                             "learning_rate", "crop_s", "preset")}
    settings["build_dir"] = str(args.build_dir.resolve())
    settings_path = out / "settings.json"
    if settings_path.is_file() and json.loads(settings_path.read_text()) != settings:
        raise SystemExit(f"{out} holds a study with other settings ({settings_path}); use another --output_dir")
    out.mkdir(parents=True, exist_ok=True)
    settings_path.write_text(json.dumps(settings, indent=2))
    if not args.report_only:
        if not (out / "parts" / "test.csv").is_file():
            make_parts(args.build_dir, out / "parts", args.pool, args.validation, args.test, max(args.sizes), 0)
        parts = read_parts(out / "parts")
        if len(parts["candidates"]) < max(args.sizes):
            raise SystemExit(f"The study was set up with {len(parts['candidates'])} labelled candidates; "
                             f"--sizes goes up to {max(args.sizes)}")
        labels = label_parts(out / "parts", args.workers)
        shared = evaluation_tables(out / "tables", parts, labels)
        timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").is_file() else {}
        for size in args.sizes:
            for seed in args.seeds:
                files = training_tables(out / "tables" / f"n{size}_seed{seed}", parts, labels, size, seed)
                for (method, objective), arm in zip(arms, names):
                    name = f"{arm}_n{size}_seed{seed}"
                    output = out / "runs" / name
                    if (output / "predictions.csv").is_file():
                        continue
                    print(f"[label_efficiency] {name}", flush=True)
                    start = time.perf_counter()
                    if method == READOUT:
                        readout_run(files, shared, output, args.preset)
                    else:
                        train_run(method, objective, size, seed, files, shared, output, args)
                    timings[name] = round(time.perf_counter() - start, 1)
                    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    report(out, args.sizes, args.seeds, names, args.bootstrap, args.reference)
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
