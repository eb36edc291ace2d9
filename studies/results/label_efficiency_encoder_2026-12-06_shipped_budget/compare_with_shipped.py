"""KT at the shipped recipe's budget against the shipped S/N/G model (MPL + KT), paired bootstrap over the 300 test clips."""
import numpy as np
from modeling_mtqnet.tables import read_table
kt = {r["audio_id"]: r for r in read_table("/work/build/le_shipped_budget/runs/kt_n600_seed0/predictions.csv")}
shipped = {r["path"]: r for r in read_table("/work/build/le_shipped_budget/shipped_small_p835.csv")}
paths = list(kt)
rng = np.random.default_rng(0)
for t in ("s_mos", "n_mos", "g_mos"):
    y = np.array([float(kt[p][t]) for p in paths])
    a = np.array([float(kt[p][f"{t}_pred"]) for p in paths])
    b = np.array([float(shipped[p][t]) for p in paths])
    lcc = lambda x, idx: np.corrcoef(x[idx], y[idx])[0, 1]
    full = np.arange(len(y))
    diffs = []
    for _ in range(2000):
        idx = rng.integers(0, len(y), len(y))
        diffs.append(lcc(a, idx) - lcc(b, idx))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    print(f"{t}: kt {lcc(a, full):.3f}  shipped {lcc(b, full):.3f}  diff {lcc(a, full)-lcc(b, full):+.3f} [{lo:+.3f}, {hi:+.3f}]")
