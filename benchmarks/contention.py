"""Slow-down under CPU contention: a fixed training and inference workload on an idle machine, beside a busy
competitor, and after a competitor that was busy only while the workload started.

Each measurement runs in a fresh process. The workload: the `small` preset (random weights), 20 training steps of
batch 8 x 2.5 s (forward, the MPL objective, backward, AdamW) and 20 inference forwards of one 10 s clip. The
competitor is another Python process that keeps one core busy: a numpy matrix product in a loop (`--competitor
numpy`) or a one-thread PyTorch BLSTM training loop (`--competitor torch`). Three loads:

  idle      nothing else runs
  crowded   the competitor runs for the whole measurement
  start     the competitor runs while the workload starts (and chooses its threads), and stops as training begins:
            the issue-31 case, a job launched while its launcher was busy for a moment

Printed, for each setting of `--settings` (THREADS:POLICY): seconds under each load and their ratio to idle, and the
thread count each run ended with. THREADS is a number (torch intra-op threads, fixed), `auto` (the cores other
processes leave free, measured once at start from /proc/stat, as every `mtqnet` command does) or `revisit` (`auto`,
then chosen again while the workload runs, as `mtqnet train` does between steps with `threads.FreeCoreWatch`; here
every `--revisit_s` seconds, since the workload lasts seconds rather than the 30 s window of a training run). POLICY is
the OpenMP wait policy (default, passive or active).

Run from the repository root, with nothing else running:
    .venv/bin/python benchmarks/contention.py [--settings 2:default 1:default auto:default revisit:default]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

LOADS = ("idle", "crowded", "start")

WORKLOAD = r"""
import json, sys, time
import torch
from modeling_mtqnet import MTQNetConfig, MTQNetForSpeechQualityAssessment
from modeling_mtqnet.threads import FreeCoreWatch, set_threads_from_free_cores
setting, revisit_s = sys.argv[1], float(sys.argv[2])
if setting in ("auto", "revisit"):
    set_threads_from_free_cores()  # what every `mtqnet` command does at start
else:
    torch.set_num_threads(int(setting))
threads_at_start = torch.get_num_threads()
torch.manual_seed(0)
model = MTQNetForSpeechQualityAssessment(MTQNetConfig.from_preset("small"))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
batch = torch.randn(8, 40000) * 0.1
labels, pseudo = torch.full((8, 3), 3.0), torch.tensor([[2.5, 0.8, 1.0]] * 8)
print("ready", flush=True)  # threads chosen: a start-only competitor stops now
watch = FreeCoreWatch(every_s=revisit_s) if setting == "revisit" else None  # what `mtqnet train` adds
model.train(); model(batch[:1], labels=labels[:1], pseudo_labels=pseudo[:1]).loss.backward()  # warm-up
start = time.perf_counter()
for _ in range(20):
    optimizer.zero_grad()
    model(batch, labels=labels, pseudo_labels=pseudo).loss.backward()
    optimizer.step()
    if watch is not None:
        watch.revisit()
train = time.perf_counter() - start
model.eval(); clip = torch.randn(1, 160000) * 0.1
with torch.no_grad():
    model(clip)
    start = time.perf_counter()
    for _ in range(20):
        model(clip)
        if watch is not None:
            watch.revisit()
infer = time.perf_counter() - start
print(json.dumps({"train_s": train, "infer_s": infer, "threads_at_start": threads_at_start,
                  "threads_at_end": torch.get_num_threads()}))
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


def stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


def run(threads: str, policy: str, load: str, competitor_code: str, revisit_s: float) -> dict:
    """One workload process under `load` (see LOADS); its timings and thread counts."""
    env = dict(os.environ)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy.upper()
    env.pop("MTQNET_THREADS", None)  # the free-core choice is what is measured: no user choice in the way
    env.pop("OMP_NUM_THREADS", None)
    competitor = None
    try:
        if load != "idle":
            competitor = subprocess.Popen([sys.executable, "-c", competitor_code])
            time.sleep(1.0)  # let it reach its loop
        workload = subprocess.Popen([sys.executable, "-c", WORKLOAD, threads, str(revisit_s)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env)
        if load == "start":
            workload.stdout.readline()  # "ready": the workload has chosen its threads
            stop(competitor)
        stdout, stderr = workload.communicate()
    finally:
        stop(competitor)
    if workload.returncode != 0:
        raise RuntimeError(stderr[-2000:])
    return json.loads(stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["2:default", "1:default", "auto:default", "revisit:default"],
                        help="THREADS:POLICY pairs; THREADS a number, auto (the free cores at start, as `mtqnet` "
                             "commands choose) or revisit (auto, chosen again while running, as `mtqnet train` "
                             "does); POLICY default, passive or active (OMP_WAIT_POLICY)")
    parser.add_argument("--competitor", choices=["numpy", "torch"], default="numpy",
                        help="what keeps one core busy: a numpy matrix loop, or a one-thread PyTorch BLSTM training loop")
    parser.add_argument("--revisit_s", type=float, default=1.0,
                        help="with THREADS revisit: how often the workload looks again (mtqnet train: every 30 s)")
    args = parser.parse_args()
    competitor_code = TORCH_COMPETITOR if args.competitor == "torch" else COMPETITOR
    print(f"{os.cpu_count()} CPUs; workload: small preset, 20 training steps (8 x 2.5 s) + 20 inferences (10 s); "
          f"competitor: {args.competitor}; loads: idle, crowded (competitor throughout), busy at start (competitor "
          "until the workload has chosen its threads)")
    print("| threads | OMP wait policy | train idle | train crowded | ratio | train busy at start | ratio | "
          "infer idle | infer crowded | ratio | threads at end (idle / crowded / busy at start) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for setting in args.settings:
        threads, policy = setting.split(":")
        measured = {load: run(threads, policy, load, competitor_code, args.revisit_s) for load in LOADS}
        idle, crowded, start = (measured[load] for load in LOADS)
        ends = " / ".join(f"{measured[load]['threads_at_start']}->{measured[load]['threads_at_end']}" for load in LOADS)
        print(f"| {threads} | {policy} | {idle['train_s']:.1f} s | {crowded['train_s']:.1f} s | "
              f"{crowded['train_s'] / idle['train_s']:.1f}x | {start['train_s']:.1f} s | "
              f"{start['train_s'] / idle['train_s']:.1f}x | {idle['infer_s']:.1f} s | {crowded['infer_s']:.1f} s | "
              f"{crowded['infer_s'] / idle['infer_s']:.1f}x | {ends} |", flush=True)


if __name__ == "__main__":
    main()
