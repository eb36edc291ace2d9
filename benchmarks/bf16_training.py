"""bf16 training on CPU against fp32: `mtqnet train` twice on the same data and seed, once with `--bf16` (autocast;
the STFT, sinc filters, heads and loss stay float32), and the steps per second and test LCC / SRCC / MSE of each.

Give it the tables of a finished `mtqnet build-pretrained small-p835` (its `tables/` folder: pooled.csv,
validation.csv, test.csv) or any train / validation / test manifests with s_mos / n_mos / g_mos (and pesq / stoi / sdi
pseudo labels for MPL). Each run: `--steps` optimiser steps of batch 16 on 3 s crops, `small` preset, MPL, the best
of 3 validation passes kept, then the test part scored. Run it with nothing else on the machine.

    .venv/bin/python benchmarks/bf16_training.py --tables work/small-p835/tables --steps 300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from modeling_mtqnet.builds.student import student_training_values
from modeling_mtqnet.training.recipe import train_resuming, training_arguments
from modeling_mtqnet.vocabulary import PRIMARY_TARGETS


def run(tables: Path, output: Path, steps: int, seed: int, bf16: bool) -> dict[str, float]:
    values = student_training_values(
        "mpl", tables / "pooled.csv", {"validation": tables / "validation.csv", "test": tables / "test.csv"}, output,
        preset="small", steps=steps, batch_size=16, learning_rate=1e-3, crop_s=3.0, seed=seed, evaluations=3)
    values.update(disable_tqdm=True, save_strategy="no", load_best_model_at_end=False)
    if bf16:
        values["bf16"] = True
    start = time.perf_counter()
    train_resuming(training_arguments(values))
    seconds = time.perf_counter() - start
    results = json.loads((output / "eval_results.json").read_text())
    return {"seconds": seconds, **{k: v for k, v in results.items() if k.startswith("test_")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=Path, required=True, help="folder with pooled.csv, validation.csv, test.csv")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("MTQNET_THREADS", "all")
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, bf16 in (("fp32", False), ("bf16 autocast", True)):
            rows[name] = run(args.tables, Path(scratch) / name.split()[0], args.steps, args.seed, bf16)
    print(f"\n{args.steps} steps of batch 16 (3 s crops), small preset, MPL, seed {args.seed}, torch threads "
          f"{torch.get_num_threads()}; wall seconds include the validation passes and scoring the test part.\n")
    header = " | ".join(f"{t} LCC / SRCC / MSE" for t in PRIMARY_TARGETS)
    print(f"| training | wall s | steps/s (wall) | {header} |\n|---|---|---|" + "---|" * len(PRIMARY_TARGETS))
    for name, row in rows.items():
        cells = [" / ".join(f"{row[f'test_{t}_{m}']:.3f}" for m in ("lcc", "srcc", "mse")) for t in PRIMARY_TARGETS]
        print(f"| {name} | {row['seconds']:.0f} | {args.steps / row['seconds']:.2f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
