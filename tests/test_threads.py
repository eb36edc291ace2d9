"""Intra-op threads from the cores other processes leave free (`modeling_mtqnet.threads`, used by every command)."""

from __future__ import annotations

import torch

from modeling_mtqnet import cli, threads


def test_free_cores_rule():
    assert threads.free_core_threads(2, None) == 2  # no measurement: every core
    assert threads.free_core_threads(2, 0.2) == 2
    assert threads.free_core_threads(2, 0.6) == 1  # one core mostly busy
    assert threads.free_core_threads(2, 2.0) == 1  # never below one
    assert threads.free_core_threads(8, 3.4) == 5


def test_busy_cores_reads_proc_stat(monkeypatch):
    samples = iter([(100.0, 1000.0), (150.0, 1100.0)])  # half of all CPU time busy over the sample
    monkeypatch.setattr(threads, "cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads, "own_cpu_seconds", lambda: 7.0)  # this process slept meanwhile
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert threads.busy_cores() == 2.0


def test_busy_cores_between_leaves_out_this_processs_own_use(monkeypatch):
    """During training the job itself keeps cores busy: only the rest counts as other processes' load."""
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    before = threads.CpuSample(busy=0.0, total=0.0, own_s=0.0, wall_s=0.0)
    # 10 s: both cores busy all the time, 1 core's worth of it this process (one thread): another process had 1.
    assert threads.busy_cores_between(before, threads.CpuSample(2000.0, 2000.0, 10.0, 10.0)) == 1.0
    # This process's two threads kept both cores busy: nobody else.
    assert threads.busy_cores_between(before, threads.CpuSample(2000.0, 2000.0, 20.0, 10.0)) == 0.0
    assert threads.busy_cores_between(before, before) is None  # no time passed


def test_a_long_job_looks_again_and_takes_back_cores_freed_after_its_start(monkeypatch):
    """The issue's case: started while another process was busy for a moment (one thread of two), the job goes back
    to two threads once a window of `every_s` shows the machine free, and to one when the other process returns."""
    before = torch.get_num_threads()
    monkeypatch.delenv("MTQNET_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "free_core_threads", lambda cores=None, busy=None: max(1, 2 - int((busy or 0) + 0.5)))
    clock = {"now": 0.0}
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock["now"])
    # (busy, total) jiffies of 2 cores at 100 per second, and this process's CPU seconds, at each moment asked.
    machine = {0.0: ((0.0, 0.0), 0.0), 30.0: ((3000.0, 6000.0), 30.0), 60.0: ((9000.0, 12000.0), 90.0),
               90.0: ((15000.0, 18000.0), 120.0)}
    monkeypatch.setattr(threads, "cpu_times", lambda: machine[clock["now"]][0])
    monkeypatch.setattr(threads, "own_cpu_seconds", lambda: machine[clock["now"]][1])
    try:
        torch.set_num_threads(1)  # what the start-up choice picked beside the momentary load
        watch = threads.FreeCoreWatch(every_s=30.0)
        clock["now"] = 10.0
        assert watch.revisit() is None  # too soon to look again
        clock["now"] = 30.0  # 30 s: this process used 1 core, the machine 1 core: nobody else
        assert watch.revisit() == 2 and torch.get_num_threads() == 2 and watch.busy == 0.0
        clock["now"] = 60.0  # 30 s: both cores busy, this process 2 threads used 2 cores: still nobody else
        assert watch.revisit() is None and torch.get_num_threads() == 2
        clock["now"] = 90.0  # 30 s: both cores busy, this process got 1 core's worth: another process is back
        assert watch.revisit() == 1 and torch.get_num_threads() == 1 and watch.busy == 1.0
        monkeypatch.setenv("MTQNET_THREADS", "2")  # the user chose: the watch never changes the count
        assert threads.FreeCoreWatch(every_s=0.0).revisit() is None
    finally:
        torch.set_num_threads(before)


def test_the_user_chooses_first(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(threads, "busy_cores", lambda sample_s=threads.SAMPLE_S: 1.0)
        monkeypatch.setenv("MTQNET_THREADS", "3")
        assert threads.set_threads_from_free_cores() == 3 and torch.get_num_threads() == 3
        monkeypatch.setenv("MTQNET_THREADS", "all")
        assert threads.set_threads_from_free_cores() is None
        monkeypatch.delenv("MTQNET_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert threads.set_threads_from_free_cores() is None
        monkeypatch.delenv("OMP_NUM_THREADS")
        expected = max(1, threads.free_core_threads() - 1)
        assert threads.set_threads_from_free_cores() == expected and torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)


def test_commands_say_when_they_leave_busy_cores_alone(monkeypatch, capsys):
    before = torch.get_num_threads()
    monkeypatch.delenv("MTQNET_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "busy_cores", lambda sample_s=threads.SAMPLE_S: 1.0)
    monkeypatch.setattr(cli, "free_core_threads", lambda cores=None, busy=None: threads.free_core_threads(2, busy))
    monkeypatch.setattr(threads, "free_core_threads",
                        lambda cores=None, busy=None: max(1, 2 - int((busy or 0) + 0.5)) if busy is not None else 2)
    try:
        assert cli.main(["annotate", "--input", "missing.csv", "--output", "out.csv", "--teacher", "nobody"]) == 2
        error = capsys.readouterr().err
        assert "other processes keep 1 of 2 cores busy: using 1 thread" in error
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("MTQNET_THREADS", "1")  # the user's own count: no claim about other processes
        assert cli.main(["annotate", "--input", "missing.csv", "--output", "out.csv", "--teacher", "nobody"]) == 2
        assert "other processes" not in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
