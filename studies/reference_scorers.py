"""Shipped models beside two public non-intrusive MOS predictors on the same held-out clips.

For a test table (paths with label columns, e.g. a build's `tables/test.csv` or `labels/test.csv`) this scores every
clip with DNSMOS P.808 (speechmos; its `p808_mos`) and with Distill-MOS (the published model, through this
package's conversion, `DistillMosForQualityScore`), and reads a shipped model's predictions (a build's
`train/predictions.csv`, columns `<target>_pred`). Each scorer's one MOS is correlated with every target column,
overall and by the build's factor groups (`build_pretrained.evaluate_by_factor`): LCC / SRCC of each. A general MOS
cannot match a target's scale (MSE and bias are left out); ranking is what it can share.

    .venv/bin/python studies/reference_scorers.py --test_table work/small-p835/tables/test.csv \\
        --predictions work/small-p835/train/predictions.csv --targets s_mos n_mos g_mos \\
        --corpus_info work/teacher/corpus/corpus_info.json --output results.md
    .venv/bin/python studies/reference_scorers.py --test_table work/teacher/labels/test.csv \
        --paths_from work/small-p835/tables/test.csv --predictions work/teacher/train/predictions.csv \
        --targets pesq stoi sdi --corpus_info work/teacher/corpus/corpus_info.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch
from tqdm.auto import tqdm

from modeling_mtqnet.model.modeling_distillmos import DistillMosForQualityScore
from modeling_mtqnet.pretrained import encoder_path
from modeling_mtqnet.tables import read_table, write_table
from modeling_mtqnet.builds.evaluation import evaluate_by_factor


def reference_scores(paths: list[str]) -> dict[str, list[float]]:
    """DNSMOS P.808 and Distill-MOS of every file (16 kHz mono WAVs)."""
    from speechmos import dnsmos

    distillmos = DistillMosForQualityScore.from_pretrained(encoder_path()).eval()
    scores: dict[str, list[float]] = {"DNSMOS P.808": [], "Distill-MOS": []}
    for path in tqdm(paths, desc="reference scorers"):
        audio, rate = soundfile.read(path, dtype="float32")
        if rate != 16000:
            raise ValueError(f"{path} is at {rate} Hz; the test tables hold 16 kHz clips")
        scores["DNSMOS P.808"].append(float(dnsmos.run(np.clip(audio, -1, 1), 16000)["p808_mos"]))
        with torch.no_grad():
            scores["Distill-MOS"].append(float(distillmos(torch.as_tensor(audio)[None])))
    return scores


def stored_reference_scores(paths: list[str], stored: Path | None) -> dict[str, list[float]]:
    """`reference_scores`, read from `stored` when it holds every path, else computed (and written there)."""
    if stored is not None and stored.is_file():
        by_path = {row["path"]: row for row in read_table(stored)}
        if all(path in by_path for path in paths):
            return {scorer: [float(by_path[p][scorer]) for p in paths] for scorer in ("DNSMOS P.808", "Distill-MOS")}
    scores = reference_scores(paths)
    if stored is not None:
        write_table(stored, [{"path": p, **{k: v[i] for k, v in scores.items()}} for i, p in enumerate(paths)],
                    ["path", *scores])
    return scores


def comparison_table(results: dict[str, dict], targets: list[str]) -> str:
    """Rows: group x scorer; cells: LCC / SRCC per target."""
    lines = ["| group | scorer | clips | " + " | ".join(targets) + " |",
             "|---|---|---:|" + "---|" * len(targets)]
    groups = [g for g in next(iter(results.values())) if g == "all" or g.startswith(("noise:", "system:"))]
    for group in groups:
        for scorer, by_group in results.items():
            entry = by_group.get(group)
            if entry is None:
                continue
            cells = [f"{entry[t]['lcc']:.3f} / {entry[t]['srcc']:.3f}" if entry.get(t) else "-" for t in targets]
            lines.append(f"| {group} | {scorer} | {entry['clips']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test_table", type=Path, required=True, help="paths and label columns")
    parser.add_argument("--predictions", type=Path, nargs="*", default=[],
                        help="predictions.csv of shipped models (name = the file's parent's parent folder)")
    parser.add_argument("--targets", nargs="+", required=True, help="label columns to correlate with")
    parser.add_argument("--corpus_info", type=Path, required=True, help="the corpus's corpus_info.json (factors)")
    parser.add_argument("--max_clips", type=int, default=None, help="the first N rows of the table")
    parser.add_argument("--paths_from", type=Path, help="keep only the rows whose path is in this table (e.g. the "
                                                         "S/N/G model's test part, to score the teacher's labels of "
                                                         "the same clips)")
    parser.add_argument("--output", type=Path, help="write the markdown table here too")
    parser.add_argument("--scores", type=Path,
                        help="a CSV of the reference scorers' scores per path: read when it exists (and holds every "
                             "clip), else written, so that a rerun with other predictions does not score again")
    args = parser.parse_args(argv)
    rows = read_table(args.test_table)
    if args.paths_from:
        wanted = {row["path"] for row in read_table(args.paths_from)}
        rows = [row for row in rows if row["path"] in wanted]
    rows = rows[: args.max_clips]
    config = json.loads(args.corpus_info.read_text())["config"]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        table = Path(scratch) / "test.csv"
        write_table(table, rows, list(rows[0]))
        for predictions in args.predictions:
            results[f"MTQ-Net ({predictions.parent.parent.name})"] = evaluate_by_factor(
                predictions, table, config, targets=args.targets)
        for scorer, values in stored_reference_scores([row["path"] for row in rows], args.scores).items():
            scored = Path(scratch) / "scored.csv"
            columns = ["audio_id", *args.targets, *(f"{t}_pred" for t in args.targets)]
            write_table(scored, [{"audio_id": row["path"], **{t: row[t] for t in args.targets},
                                  **{f"{t}_pred": v for t in args.targets}} for row, v in zip(rows, values)], columns)
            results[scorer] = evaluate_by_factor(scored, table, config, targets=args.targets)
    text = (f"{len(rows)} clips of {args.test_table}; cells LCC / SRCC against each label column.\n\n"
            + comparison_table(results, args.targets) + "\n")
    print(text)
    if args.output:
        args.output.write_text(text)
    return text


if __name__ == "__main__":
    main()
