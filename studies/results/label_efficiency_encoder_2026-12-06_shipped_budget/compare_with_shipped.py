"""KT at the shipped budget against the shipped S/N/G model (MPL + KT) on the same test clips: LCC and its difference,
with the study's paired bootstrap (`training.reporting.seed_bootstrap`; one seed each, so over test clips only)."""
import sys
from pathlib import Path

import numpy as np

from modeling_mtqnet.tables import read_table
from modeling_mtqnet.training.reporting import seed_bootstrap

TARGETS = ("s_mos", "n_mos", "g_mos")
here = Path(__file__).parent
kt = read_table(Path(sys.argv[1]) if len(sys.argv) > 1 else here / "runs" / "kt_n600_seed0" / "predictions.csv")
shipped = {row["path"]: row for row in read_table(here / "shipped_small-p835_predictions.csv")}
true = np.array([[float(row[t]) for t in TARGETS] for row in kt])
values = {0: np.array([[float(row[f"{t}_pred"]) for t in TARGETS] for row in kt])}
reference = {0: np.array([[float(shipped[row["audio_id"]][f"{t}_pred"]) for t in TARGETS] for row in kt])}
own = seed_bootstrap(values, None, true, TARGETS, 2000, np.random.default_rng(0))
theirs = seed_bootstrap(reference, None, true, TARGETS, 2000, np.random.default_rng(0))
difference = seed_bootstrap(values, reference, true, TARGETS, 2000, np.random.default_rng(0))
for t in TARGETS:
    mean, low, high = difference[f"{t}_lcc"]
    print(f"{t}: KT {own[f'{t}_lcc'][0]:.3f}  shipped {theirs[f'{t}_lcc'][0]:.3f}  KT - shipped {mean:+.3f} "
          f"[{low:+.3f}, {high:+.3f}]")
