"""How much do the pseudo-label targets (PESQ / STOI / SDI) say about the primary targets (the DNSMOS P.835 stand-ins)?

MPL trains the trunk on the pseudo-label targets beside the primary ones; that can only help if the two are related.
On the labelled candidates of a label-efficiency study (`studies/label_efficiency.py --output_dir STUDY`), this
prints, for each primary target, the Pearson correlation (LCC) of each pseudo-label target with it and the multiple
correlation R of a least-squares linear fit of the primary target on all three, in sample and 5-fold cross-validated:
once for the shipped teacher's predictions (the pseudo labels MPL trains on) and once for the intrusive labels of the
teacher build (what a perfect teacher would give).

    .venv/bin/python studies/pseudo_label_relatedness.py --study_dir outputs/le_full --build_dir work/teacher
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from modeling_mtqnet.tables import read_table, to_float
from modeling_mtqnet.labels.stand_in import add_stand_in_labels
from modeling_mtqnet.vocabulary import PRIMARY_TARGETS, PSEUDO_LABEL_TARGETS


def linear_relatedness(features: np.ndarray, target: np.ndarray, folds: int = 5,
                       seed: int = 0) -> tuple[float, float]:
    """(in-sample R, cross-validated R) of a least-squares fit of `target` (N,) on `features` (N, K) with an
    intercept; the cross-validated R correlates each clip's target with the prediction of a fit that did not see it."""
    design = np.column_stack([features, np.ones(len(target))])
    fitted = design @ np.linalg.lstsq(design, target, rcond=None)[0]
    held_out = np.empty_like(target, dtype=float)
    for fold in np.array_split(np.random.default_rng(seed).permutation(len(target)), folds):
        train = np.setdiff1d(np.arange(len(target)), fold)
        held_out[fold] = design[fold] @ np.linalg.lstsq(design[train], target[train], rcond=None)[0]
    return float(np.corrcoef(fitted, target)[0, 1]), float(np.corrcoef(held_out, target)[0, 1])


def relatedness_table(primary: dict[str, np.ndarray], pseudo: dict[str, np.ndarray]) -> list[str]:
    """Markdown rows: per primary target, the LCC of each pseudo target and the linear fit's R (in / cross-validated)."""
    rows = []
    features = np.column_stack([pseudo[name] for name in PSEUDO_LABEL_TARGETS])
    for target in PRIMARY_TARGETS:
        lccs = [float(np.corrcoef(pseudo[name], primary[target])[0, 1]) for name in PSEUDO_LABEL_TARGETS]
        within, crossed = linear_relatedness(features, primary[target])
        cells = [f"{value:+.2f}" for value in lccs] + [f"{within:.2f}", f"{crossed:.2f}"]
        rows.append(f"| {target} | " + " | ".join(cells) + " |")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study_dir", type=Path, required=True, help="a label-efficiency study's --output_dir")
    parser.add_argument("--build_dir", type=Path, required=True, help="the teacher build (its labels/train.csv)")
    args = parser.parse_args(argv)
    stand_ins = {row["path"]: row
                 for row in add_stand_in_labels(read_table(args.study_dir / "parts" / "candidates_dnsmos.csv"))}
    teacher = {row["path"]: row for row in read_table(args.study_dir / "parts" / "pool_teacher.csv")}
    intrusive = {row["path"]: row for row in read_table(args.build_dir / "labels" / "train.csv")}
    paths = [path for path in stand_ins if path in teacher and path in intrusive]
    if not paths:
        raise SystemExit(f"No clip of {args.study_dir} has stand-in, teacher and intrusive labels")
    primary = {target: np.array([to_float(stand_ins[p][target]) for p in paths]) for target in PRIMARY_TARGETS}
    print(f"{len(paths)} labelled candidates; primary targets are DNSMOS P.835 stand-ins (SIG, BAK, OVRL, clipped to "
          "1-5 as in training)\n")
    header = ("| primary | " + " | ".join(f"LCC {name}" for name in PSEUDO_LABEL_TARGETS)
              + " | linear R | linear R (5-fold) |")
    for title, source in (("the shipped teacher's predictions (MPL's pseudo labels)", teacher),
                          ("intrusive labels (a perfect teacher)", intrusive)):
        pseudo = {name: np.array([to_float(source[p][name]) for p in paths]) for name in PSEUDO_LABEL_TARGETS}
        print(f"Pseudo-label targets: {title}\n\n{header}\n|---|" + "---:|" * (len(PSEUDO_LABEL_TARGETS) + 2))
        print("\n".join(relatedness_table(primary, pseudo)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
