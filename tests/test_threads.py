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
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert threads.busy_cores() == 2.0


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
    finally:
        torch.set_num_threads(before)
