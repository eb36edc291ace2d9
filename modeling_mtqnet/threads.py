"""How many intra-op threads a job should use: the cores that other processes leave free.

With two intra-op threads on two cores, a second busy process makes every parallel op wait for a descheduled thread:
the demo's training ran 2.7x slower beside one busy core, inference 3.3x (benchmarks/contention.py), and up to
20-40x beside another PyTorch job. One thread per free core avoids the waiting: beside one busy core, one thread ran
the same workload 1.0x (no slow-down), at the price of 1.45x when the machine is otherwise idle, which is why the
count is measured rather than fixed.

Every command measures once at start (`set_threads_from_free_cores`); a long job looks again as it runs
(`FreeCoreWatch`, which training calls between steps), so a load that was there only at start, or that comes later,
does not set the count for the whole job.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

SAMPLE_S = 0.25  # how long /proc/stat is watched at start to see what the other processes use
# How often a long job looks again. Each look costs nothing (no pause: this process's own CPU time is subtracted from
# the machine's), and the window is long enough that a few seconds of someone else's work do not flip the count.
REVISIT_EVERY_S = 30.0


def cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where there is no /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [float(value) for value in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def own_cpu_seconds() -> float:
    """CPU seconds this process has used so far, all its threads together."""
    return time.process_time()


@dataclass(frozen=True)
class CpuSample:
    """What the machine and this process had used at one moment."""

    busy: float  # jiffies all CPUs spent busy (/proc/stat)
    total: float  # jiffies all CPUs spent in all
    own_s: float  # CPU seconds of this process
    wall_s: float  # time.monotonic()


def cpu_sample() -> CpuSample | None:
    """The machine's and this process's CPU use now, or None where there is no /proc/stat."""
    times = cpu_times()
    if times is None:
        return None
    return CpuSample(busy=times[0], total=times[1], own_s=own_cpu_seconds(), wall_s=time.monotonic())


def busy_cores_between(before: CpuSample, after: CpuSample) -> float | None:
    """Cores kept busy by other processes between two samples, on average: the busy share of all CPUs, less what
    this process used itself (its threads, busy or spin-waiting). None when no time passed between them."""
    if after.total <= before.total or after.wall_s <= before.wall_s:
        return None
    cores = os.cpu_count() or 1
    everyone = cores * (after.busy - before.busy) / (after.total - before.total)
    own = (after.own_s - before.own_s) / (after.wall_s - before.wall_s)
    return max(0.0, everyone - own)


def busy_cores(sample_s: float = SAMPLE_S) -> float | None:
    """Cores kept busy by other processes over a short sample (this process sleeps meanwhile), or None."""
    before = cpu_sample()
    if before is None:
        return None
    time.sleep(sample_s)
    after = cpu_sample()
    return None if after is None else busy_cores_between(before, after)


def free_core_threads(cores: int | None = None, busy: float | None = None) -> int:
    """Intra-op threads for a job: the cores left free by other processes (busy cores rounded, a core counted busy
    from 0.5), at least one. Without a measurement: every core."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if busy is None:
        return cores
    return max(1, min(cores, cores - int(busy + 0.5)))


def forced_threads() -> int | None:
    """The count the user forces with `MTQNET_THREADS=N`, or None."""
    chosen = os.environ.get("MTQNET_THREADS", "").strip()
    return int(chosen) if chosen.isdigit() and int(chosen) > 0 else None


def free_core_choice_applies() -> bool:
    """Whether the count is ours to choose from the free cores: not when the user chose, by `MTQNET_THREADS=N`,
    `MTQNET_THREADS=all` (torch's default) or `OMP_NUM_THREADS` (without `MTQNET_THREADS`)."""
    chosen = os.environ.get("MTQNET_THREADS", "").strip().lower()
    if forced_threads() is not None or chosen == "all":
        return False
    return bool(chosen) or not os.environ.get("OMP_NUM_THREADS")


def set_threads_from_free_cores() -> int | None:
    """Set torch's intra-op threads to the free cores, unless the user chose (`MTQNET_THREADS`, `OMP_NUM_THREADS`):
    `MTQNET_THREADS=N` forces N, `MTQNET_THREADS=all` keeps torch's default. Returns the count set, or None."""
    import torch

    threads = forced_threads()
    if threads is None:
        if not free_core_choice_applies():
            return None
        threads = free_core_threads(busy=busy_cores())
    torch.set_num_threads(threads)
    return threads


class FreeCoreWatch:
    """Makes the free-core choice again during a long job, from what other processes used since the last look.

    Call `revisit()` often (e.g. after every training step): it looks only once `every_s` seconds have passed, and
    then costs two reads, no pause. It does nothing where the user chose the count (see `free_core_choice_applies`)
    or where there is no /proc/stat."""

    def __init__(self, every_s: float = REVISIT_EVERY_S) -> None:
        self.every_s = every_s
        self.last = cpu_sample() if free_core_choice_applies() else None
        self.busy: float | None = None  # other processes' busy cores over the last window looked at

    def revisit(self) -> int | None:
        """Set torch's intra-op threads to the cores left free over the window since the last look, when that
        window is at least `every_s` long; returns the new count when it changed, else None."""
        if self.last is None or time.monotonic() - self.last.wall_s < self.every_s:
            return None
        import torch

        sample = cpu_sample()
        if sample is None:
            return None
        self.busy, self.last = busy_cores_between(self.last, sample), sample
        if self.busy is None:
            return None
        threads = free_core_threads(busy=self.busy)
        if threads == torch.get_num_threads():
            return None
        torch.set_num_threads(threads)
        return threads


__all__ = ["FreeCoreWatch", "busy_cores", "busy_cores_between", "cpu_sample", "forced_threads",
           "free_core_choice_applies", "free_core_threads", "set_threads_from_free_cores"]
