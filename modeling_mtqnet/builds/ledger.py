"""The resumable stage ledger of a long job: its settings and the stages it finished, with their seconds, in one JSON
file. A rerun skips the finished stages; other settings in the same folder are refused.

The shipped models' builds keep `WORK_DIR/state.json` (`{"settings": ..., "done": {stage: seconds}, "shipped_to":
...}`), the demo `OUTPUT/demo_state.json` (`{"settings": ..., "methods": ..., "stages": {stage: seconds}}`). Both
layouts stay as they were written, so that folders of earlier runs resume: the key of the stages and the entries
beside them are the file's own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from ..tables import atomic_write_text


class SettingsChanged(ValueError):
    """A ledger found with other settings than the run's: `recorded` (the file's) and `given` (this run's)."""

    def __init__(self, path: Path, recorded: dict[str, Any], given: dict[str, Any]):
        self.path, self.recorded, self.given = path, recorded, given
        super().__init__(f"{path} records other settings ({', '.join(changed_settings(recorded, given))})")


def changed_settings(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """The keys whose values differ, nested dicts as `outer.inner`."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += changed_settings(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(prefix + key)
    return changed


class StageLedger:
    """One run's record: `settings`, finished stages (`seconds`: stage -> seconds) and any entries the job keeps beside
    them (`state`, the file's whole content).

    Args:
        path: the JSON file; read when it exists (its settings must be `settings`, else `SettingsChanged`).
        settings: what the run depends on; compared as JSON gives them back (tuples as lists).
        stages_key: the file's key of the finished stages (`done` for the builds, `stages` for the demo).
        entries: what a new ledger keeps between the settings and the stages (the demo: its methods).
        log_prefix: how `run` announces a stage (`[build-pretrained]`).

    Nothing is written until `save` or `record`: a job that fails before its first stage leaves no ledger behind.
    """

    def __init__(self, path: Path, settings: dict[str, Any], *, stages_key: str = "done",
                 entries: dict[str, Any] | None = None, log_prefix: str = ""):
        self.path, self.stages_key, self.log_prefix = path, stages_key, log_prefix
        settings = json.loads(json.dumps(settings))  # tuples as lists, as read back
        if path.is_file():
            state = json.loads(path.read_text())
            if state["settings"] != settings:
                raise SettingsChanged(path, state["settings"], settings)
            self.state: dict[str, Any] = state
        else:
            self.state = {"settings": settings, **(entries or {}), stages_key: {}}
        self.seconds: dict[str, float] = self.state[stages_key]

    @property
    def recorded(self) -> bool:
        """Whether the file exists (an earlier run of this job, or this run's first `save`)."""
        return self.path.is_file()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.state, indent=2))

    def done(self, stage: str) -> bool:
        return stage in self.seconds

    def record(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = round(seconds, 1)
        self.save()

    def forget(self, *stages: str) -> None:
        """Have `stages` run again (kept in memory until the next `record`)."""
        for stage in stages:
            self.seconds.pop(stage, None)

    def run(self, stage: str, work: Callable[[], Any]) -> None:
        """Run one stage unless it finished earlier; record its duration."""
        if self.done(stage):
            print(f"{self.log_prefix} {stage}: done earlier ({self.seconds[stage] / 60:.1f} min)")
            return
        print(f"{self.log_prefix} {stage} ...", flush=True)
        start = time.perf_counter()
        work()
        self.record(stage, time.perf_counter() - start)


__all__ = ["SettingsChanged", "StageLedger", "changed_settings"]
