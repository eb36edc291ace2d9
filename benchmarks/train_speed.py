"""CPU training speed of MTQ-Net: samples per second per preset, and what the frozen-SSL feature cache buys.

Each case runs in a fresh Python process (so that peak memory is its own): it builds the model (random weights;
speed does not depend on them), makes `--clips` random clips of `--duration_s` seconds with labels and pseudo labels,
and times `--steps` optimiser steps (AdamW, batch `--batch_size`, forward + MPL objective + backward) after one
warm-up step. With the cache, the SSL features are computed once (`cache_ssl_features`, timed separately as a
one-off cost) and the steps feed them to the model instead of running the encoder.

Cases: "small" without SSL; "small" and "mosa-net" with a frozen WavLM-base-sized encoder (768-d, 12 layers), each
without and with the cache; each in float32 and under bfloat16 autocast (what `train.py --bf16` does on a CPU: the
STFT, sinc filters, heads and loss stay float32). Aim: the cache makes an epoch at least 3x faster at WavLM-base
size; the speed-up column compares each case with the uncached float32 case of its preset.

Run from the repository root:
    .venv/bin/python benchmarks/train_speed.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLING_RATE = 16000
CASES: list[dict[str, Any]] = [
    {"preset": preset, "ssl": ssl, "cache": cache, "bf16": bf16}
    for preset, ssl, cache in [("small", False, False), ("small", True, False), ("small", True, True),
                               ("mosa-net", True, False), ("mosa-net", True, True)]
    for bf16 in (False, True)
]


def run_case(case: dict[str, Any], clips: int, duration_s: float, batch_size: int, steps: int, threads: int) -> dict:
    """Worker: time training steps for one case; returns the measurements."""
    import numpy as np
    import torch

    from modeling_mtqnet import MTQNetConfig, MTQNetForSpeechQualityAssessment
    from modeling_mtqnet.training.data import SpeechQualityCollator
    from modeling_mtqnet.training.features_cache import cache_ssl_features

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    overrides: dict[str, Any] = {"ssl_config": {"model_type": "wavlm"} if case["ssl"] else None, "freeze_ssl": True}
    model = MTQNetForSpeechQualityAssessment(MTQNetConfig.from_preset(case["preset"], **overrides)).train()
    rng = np.random.default_rng(0)
    rows = [
        {
            "input_values": (0.1 * rng.standard_normal(int(duration_s * SAMPLING_RATE))).astype(np.float32),
            "labels": rng.uniform(1, 5, 3).tolist(),
            "pseudo_labels": [float(rng.uniform(1, 4.5)), float(rng.uniform(0, 1)), float(rng.uniform(0, 2))],
        }
        for _ in range(clips)
    ]
    cache_seconds = 0.0
    if case["cache"]:
        import datasets

        start = time.perf_counter()
        rows = list(cache_ssl_features(datasets.Dataset.from_list(rows), model, desc="cache"))
        cache_seconds = time.perf_counter() - start
    collate = SpeechQualityCollator()
    batches = [collate(rows[i : i + batch_size]) for i in range(0, clips, batch_size)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(batch: dict) -> None:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case["bf16"]):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()

    step(batches[0])  # warm-up
    start = time.perf_counter()
    for index in range(steps):
        step(batches[index % len(batches)])
    seconds = time.perf_counter() - start
    samples_per_s = steps * batch_size / seconds
    return {
        **case,
        "samples_per_s": samples_per_s,
        "epoch_s": clips / samples_per_s,
        "cache_build_s": cache_seconds,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(case: dict[str, Any], args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", json.dumps(case)] + [
        f"--{name}={getattr(args, name)}" for name in ("clips", "duration_s", "batch_size", "steps", "threads")
    ]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def table(results: list[dict], clips: int) -> str:
    lines = [
        "| preset | SSL (frozen) | cache | dtype | samples/s | epoch s | cache build s (once) | epoch speed-up | "
        "peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    # The reference of each case: its preset (and SSL choice) uncached in float32.
    reference = {(r["preset"], r["ssl"]): r["epoch_s"] for r in results if not r["cache"] and not r["bf16"]}
    for r in results:
        base = reference.get((r["preset"], r["ssl"]))
        speedup = f"{base / r['epoch_s']:.1f}x" if base and (r["cache"] or r["bf16"]) else ""
        lines.append(
            f"| {r['preset']} | {'WavLM-base' if r['ssl'] else 'none'} | {'yes' if r['cache'] else 'no'} | "
            f"{'bf16 autocast' if r['bf16'] else 'fp32'} | {r['samples_per_s']:.2f} | {r['epoch_s']:.1f} | "
            f"{r['cache_build_s']:.1f} | {speedup} | {r['peak_mb']:.0f} |"
        )
    return "\n".join(lines) + f"\n\nEpoch = {clips} clips."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16, help="clips in the benchmark's epoch")
    parser.add_argument("--duration_s", type=float, default=3.0, help="seconds per clip")
    parser.add_argument("--batch_size", type=int, default=4, help="clips per optimiser step")
    parser.add_argument("--steps", type=int, default=4, help="timed optimiser steps per case")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--presets", nargs="+", default=["small", "mosa-net"], help="presets to measure")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        result = run_case(json.loads(args.worker), args.clips, args.duration_s, args.batch_size, args.steps,
                          args.threads)
        print(json.dumps(result))
        return
    results = []
    for case in (c for c in CASES if c["preset"] in args.presets):
        results.append(measure(case, args))
        print(f"measured {case}: {results[-1]['samples_per_s']:.2f} samples/s", file=sys.stderr)
    print(table(results, args.clips))


if __name__ == "__main__":
    main()
