"""Several processes (torchrun / accelerate launch) for the batch jobs: which share of the work is this process's."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch


class ProcessState:
    """Rank, process count and device: from accelerate under `accelerate launch` / torchrun, else one process.

    A single process leaves accelerate's global state alone (so that callers can still build a Trainer after).
    """

    def __init__(self, cpu: bool = False):
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        accelerator = getattr(torch, "accelerator", None)
        if accelerator is not None:
            default = accelerator.current_accelerator() if accelerator.is_available() else None
        else:  # torch < 2.6
            default = torch.device("cuda") if torch.cuda.is_available() else None
        if launched <= 1:
            self.state, self.rank, self.world = None, 0, 1
            self.device = torch.device("cpu") if cpu or default is None else default
            return
        try:
            from accelerate import PartialState
        except ImportError:
            raise ImportError("Scoring in several processes needs accelerate: pip install accelerate") from None
        # PartialState only forms a CPU process group when asked to (accelerate launch --cpu sets this variable).
        cpu = cpu or default is None or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
        self.state = PartialState(cpu=cpu)
        self.rank, self.world, self.device = self.state.process_index, self.state.num_processes, self.state.device
        if self.world != launched:  # every process would score everything
            raise RuntimeError(f"Launched as {launched} processes, but accelerate sees {self.world}")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


def wait_for_markers(markers: list[Path], poll_s: float = 0.5) -> None:
    """Wait (without a collective timeout: shares may take hours) until every process has written its marker."""
    while not all(marker.exists() for marker in markers):
        time.sleep(poll_s)


__all__ = ["ProcessState", "wait_for_markers"]
