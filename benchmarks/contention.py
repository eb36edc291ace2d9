"""Slow-down under CPU contention: a fixed training and inference workload alone, then beside a busy competitor.

Each measurement runs in a fresh process. The workload: the `small` preset (random weights), 20 training steps of
batch 8 x 2.5 s (forward, the MPL objective, backward, AdamW) and 20 inference forwards of one 10 s clip. The
competitor is another Python process that keeps one core busy for the whole measurement: a numpy matrix product in
a loop (`--competitor numpy`) or a one-thread PyTorch BLSTM training loop (`--competitor torch`). Printed: seconds alone, seconds beside the competitor, and their ratio, for each setting given by
`--settings` (torch intra-op threads, or `auto`: the cores other processes leave free, measured from /proc/stat as
every `mtqnet` command does; and the OpenMP wait policy).

Run from the repository root, with nothing else running:
    .venv/bin/python benchmarks/contention.py [--settings 2:default 1:default 2:passive]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WORKLOAD = r"""
import json, sys, time
import torch
from modeling_mtqnet import MTQNetConfig, MTQNetForSpeechQualityAssessment
from modeling_mtqnet.threads import set_threads_from_free_cores
if sys.argv[1] == "auto":
    set_threads_from_free_cores()  # what every `mtqnet` command does
else:
    torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
model = MTQNetForSpeechQualityAssessment(MTQNetConfig.from_preset("small"))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
batch = torch.randn(8, 40000) * 0.1
labels, pseudo = torch.full((8, 3), 3.0), torch.tensor([[2.5, 0.8, 1.0]] * 8)
model.train(); model(batch[:1], labels=labels[:1], pseudo_labels=pseudo[:1]).loss.backward()  # warm-up
start = time.perf_counter()
for _ in range(20):
    optimizer.zero_grad()
    model(batch, labels=labels, pseudo_labels=pseudo).loss.backward()
    optimizer.step()
train = time.perf_counter() - start
model.eval(); clip = torch.randn(1, 160000) * 0.1
with torch.no_grad():
    model(clip)
    start = time.perf_counter()
    for _ in range(20):
        model(clip)
infer = time.perf_counter() - start
print(json.dumps({"train_s": train, "infer_s": infer}))
"""

TORCH_COMPETITOR = r"""
import torch
torch.set_num_threads(1)
lstm = torch.nn.LSTM(64, 64, batch_first=True, bidirectional=True)
x = torch.randn(4, 400, 64)
while True:
    lstm(x)[0].sum().backward()
"""

COMPETITOR = r"""
import os
os.environ["OMP_NUM_THREADS"] = "1"; os.environ["OPENBLAS_NUM_THREADS"] = "1"; os.environ["MKL_NUM_THREADS"] = "1"
import numpy as np
a = np.random.default_rng(0).standard_normal((400, 400))
while True:
    a = np.tanh(a @ a.T / 400)
"""


def run(threads: str, policy: str) -> dict:
    env = dict(os.environ)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy.upper()
    env.pop("MTQNET_THREADS", None)
    completed = subprocess.run([sys.executable, "-c", WORKLOAD, threads], capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-2000:])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["2:default", "1:default", "auto:default"],
                        help="THREADS:POLICY pairs; THREADS a number or auto (the free cores, as `mtqnet` commands "
                             "choose); POLICY default, passive or active (OMP_WAIT_POLICY)")
    parser.add_argument("--competitor", choices=["numpy", "torch"], default="numpy",
                        help="what keeps one core busy: a numpy matrix loop, or a one-thread PyTorch BLSTM training loop")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; workload: small preset, 20 training steps (8 x 2.5 s) + 20 inferences (10 s); "
          f"competitor: {args.competitor}")
    print("| threads | OMP wait policy | train alone | train beside | ratio | infer alone | infer beside | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for setting in args.settings:
        threads, policy = setting.split(":")
        alone = run(threads, policy)
        competitor = subprocess.Popen([sys.executable, "-c",
                                       TORCH_COMPETITOR if args.competitor == "torch" else COMPETITOR])
        try:
            time.sleep(1.0)
            beside = run(threads, policy)
        finally:
            competitor.kill()
            competitor.wait()
        print(f"| {threads} | {policy} | {alone['train_s']:.1f} s | {beside['train_s']:.1f} s | "
              f"{beside['train_s'] / alone['train_s']:.1f}x | {alone['infer_s']:.1f} s | {beside['infer_s']:.1f} s | "
              f"{beside['infer_s'] / alone['infer_s']:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
