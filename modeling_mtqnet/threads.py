"""How many intra-op threads a job should use: the cores that other processes leave free.

With two intra-op threads on two cores, a second busy process makes every parallel op wait for a descheduled thread:
the demo's training ran 2.7x slower beside one busy core, inference 3.3x (benchmarks/contention.py), and up to
20-40x beside another PyTorch job. One thread per free core avoids the waiting: beside one busy core, one thread ran
the same workload 1.0x (no slow-down), at the price of 1.45x when the machine is otherwise idle, which is why the
count is measured rather than fixed.
"""

from __future__ import annotations

import os
import time

SAMPLE_S = 0.25  # how long /proc/stat is watched to see what the other processes use


def cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where there is no /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [float(value) for value in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def busy_cores(sample_s: float = SAMPLE_S) -> float | None:
    """Cores kept busy by other processes over a short sample (this process sleeps meanwhile), or None."""
    before = cpu_times()
    if before is None:
        return None
    time.sleep(sample_s)
    after = cpu_times()
    if after is None or after[1] <= before[1]:
        return None
    cores = os.cpu_count() or 1
    return cores * (after[0] - before[0]) / (after[1] - before[1])


def free_core_threads(cores: int | None = None, busy: float | None = None) -> int:
    """Intra-op threads for a job: the cores left free by other processes (busy cores rounded, a core counted busy
    from 0.5), at least one. Without a measurement: every core."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if busy is None:
        return cores
    return max(1, min(cores, cores - int(busy + 0.5)))


def set_threads_from_free_cores() -> int | None:
    """Set torch's intra-op threads to the free cores, unless the user chose (`MTQNET_THREADS`, `OMP_NUM_THREADS`):
    `MTQNET_THREADS=N` forces N, `MTQNET_THREADS=all` keeps torch's default. Returns the count set, or None."""
    import torch

    chosen = os.environ.get("MTQNET_THREADS", "").strip().lower()
    if chosen == "all" or (not chosen and os.environ.get("OMP_NUM_THREADS")):
        return None
    threads = int(chosen) if chosen.isdigit() and int(chosen) > 0 else free_core_threads(busy=busy_cores())
    torch.set_num_threads(threads)
    return threads


__all__ = ["busy_cores", "free_core_threads", "set_threads_from_free_cores"]
