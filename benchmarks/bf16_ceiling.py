"""What bfloat16 can buy on this CPU at most: the fp32 and bf16 throughput of the operations a WavLM-base-sized encoder
spends its time in (matrix products and the waveform CNN's 1-D convolutions), at the shapes of a 10 s clip.

A WavLM-base encoder on 10 s spends about 50% of its time in `addmm` (the attention and feed-forward projections: 499
frames x 768 -> 768 / 3072) and about 30% in the feature encoder's convolutions (torch.profiler; benchmarks/README.md,
"bfloat16 ceiling of this CPU"), so the ratio of these kernels' bf16 and fp32 speeds bounds the encoder's bf16 speed-up.
CPUs with AMX tiles (Intel Sapphire Rapids and later) run bf16 products several times faster than fp32; CPUs with only
AVX512-BF16 (AMD Zen 4, this machine) about twice as fast.

    .venv/bin/python benchmarks/bf16_ceiling.py [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

FRAMES_10S = 499  # WavLM frames of a 10 s clip at 16 kHz (stride 320)


def cpu_flags() -> str:
    """The bf16-relevant flags of /proc/cpuinfo (amx_bf16, avx512_bf16, ...), or 'unknown'."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = sorted(set(re.findall(r"\b(amx\w*|avx512_bf16|avx512f)\b", text)))
    return " ".join(flags) or "none of amx / avx512_bf16"


def best_seconds(work: Callable[[], object], repeats: int) -> float:
    work()  # warm-up (oneDNN primitive creation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def cases() -> list[tuple[str, float, Callable[[torch.dtype], Callable[[], object]]]]:
    """(name, GFLOP per call, factory: dtype -> the call)."""
    def matmul(m: int, k: int, n: int):
        def make(dtype):
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            return lambda: a @ b
        return 2 * m * k * n / 1e9, make

    def conv(length: int, channels_in: int, channels_out: int, kernel: int, stride: int):
        def make(dtype):
            x = torch.randn(1, channels_in, length, dtype=dtype)
            w = torch.randn(channels_out, channels_in, kernel, dtype=dtype)
            return lambda: F.conv1d(x, w, stride=stride)
        out = (length - kernel) // stride + 1
        return 2 * out * channels_out * channels_in * kernel / 1e9, make

    table = [
        ("matmul 2048 x 2048 x 2048", *matmul(2048, 2048, 2048)),
        (f"attention projection {FRAMES_10S} x 768 x 768", *matmul(FRAMES_10S, 768, 768)),
        (f"feed-forward {FRAMES_10S} x 768 x 3072", *matmul(FRAMES_10S, 768, 3072)),
        (f"feed-forward {FRAMES_10S} x 3072 x 768", *matmul(FRAMES_10S, 3072, 768)),
        ("waveform conv 2 (512 -> 512, k 3, s 2, 10 s)", *conv(31999, 512, 512, 3, 2)),
        ("waveform conv 6 (512 -> 512, k 2, s 2, 10 s)", *conv(999, 512, 512, 2, 2)),
    ]
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, CPU flags: {cpu_flags()}\n")
    print("| operation | fp32 GFLOP/s | bf16 GFLOP/s | bf16 / fp32 |\n|---|---:|---:|---:|")
    with torch.inference_mode():
        for name, gflop, make in cases():
            fp32 = gflop / best_seconds(make(torch.float32), args.repeats)
            bf16 = gflop / best_seconds(make(torch.bfloat16), args.repeats)
            print(f"| {name} | {fp32:.0f} | {bf16:.0f} | {bf16 / fp32:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
