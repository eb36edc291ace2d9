"""How much of the demo's scratch-versus-MPL difference is the training seed? Re-train its students with other seeds.

On a finished demo folder (python -m modeling_mtqnet.tools.demo --output_dir DIR), this trains each method again with
every seed of --seeds on the same data, labels, budget and validation clips (the demo's own train.py arguments), and
prints per method and target the mean and [min-max] of test LCC, SRCC and MSE over the demo's run (seed 0) and
these. Runs go to DIR/seed_runs/<method>_seed<k> and are reused when there.

    .venv/bin/python benchmarks/demo_seeds.py --demo_dir outputs/demo --seeds 1 2     # about 5 minutes per seed
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from modeling_mtqnet.tools import demo
from modeling_mtqnet.vocabulary import METHOD_DISPLAY_NAMES, PRIMARY_TARGETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo_dir", type=Path, default=Path("outputs/demo"), help="a finished demo folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="training seeds besides the demo's")
    parser.add_argument("--methods", nargs="+", default=["scratch", "mpl"], choices=list(METHOD_DISPLAY_NAMES))
    args = parser.parse_args()
    folder = args.demo_dir.resolve()
    state = demo.RunState.load(folder)
    size = demo.DemoSize(**state["settings"]["size"])
    paths = {"labels": folder / "labels", "teacher": folder / "teacher", "runs": folder / "runs"}
    runs: dict[str, list[Path]] = {method: [paths["runs"] / method] for method in args.methods}
    for seed in args.seeds:
        options = argparse.Namespace(**{**state["settings"], "seed": seed})
        for method in args.methods:
            output = folder / "seed_runs" / f"{method}_seed{seed}"
            if not (output / "eval_results.json").exists():
                demo.train_student(options, size, paths, method, output)
            runs[method].append(output)
    seeds = [state["settings"]["seed"], *args.seeds]
    print(f"\nTest part, seeds {seeds}: mean [min-max] over {len(seeds)} training runs per method\n")
    print("| method | target | LCC | SRCC | MSE |\n|---|---|---|---|---|")
    for method, folders in runs.items():
        metrics = [demo.test_metrics(run) for run in folders]
        for target in PRIMARY_TARGETS:
            cells = []
            for key in ("lcc", "srcc", "mse"):
                values = np.array([m[f"test_{target}_{key}"] for m in metrics], dtype=float)
                cells.append(f"{values.mean():.3f} [{values.min():.3f}-{values.max():.3f}]"
                             if not np.isnan(values).any() else "n/a")
            print(f"| {METHOD_DISPLAY_NAMES[method]} | {target} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
