"""README's first command: the demo runs from any working directory with a relative output folder."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys


def test_demo_with_a_relative_output_dir(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "modeling_mtqnet.demo", "--output_dir", "outputs/demo", "--preset", "tiny"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    scores = json.loads((tmp_path / "outputs" / "demo" / "scores.json").read_text())
    assert len(scores) == 3
    assert all(set(s) == {"s_mos", "n_mos", "g_mos"} and all(math.isfinite(v) for v in s.values())
               for s in scores.values())
    difference = float(completed.stdout.split("max difference")[1].split()[0])
    assert difference < 1e-5
    assert (tmp_path / "outputs" / "demo" / "model" / "modeling_mtqnet.py").exists()
