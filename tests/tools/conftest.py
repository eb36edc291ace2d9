"""Shared fixtures of the tools tests: one scaled-down teacher build (`mtqnet build-pretrained`), made once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from modeling_mtqnet.corpus.signals import synthetic_speech
from modeling_mtqnet.corpus.systems import system_status

RATE = 16000


def build_arguments(work_dir: Path, speech: Path) -> list[str]:
    """A 200-clip, one-epoch `mtqnet build-pretrained` on `speech`, holding out clipping and brown / white noise."""
    systems = ["none", "clipping"] + (["opus"] if system_status("opus").available else ["packet_loss"])
    return ["teacher-pesq-stoi-sdi", "--work_dir", str(work_dir), "--clean_dir", str(speech), "--count", "200",
            "--epochs", "1", "--systems", *systems, "--test_systems", "clipping", "--test_noises", "brown", "white",
            "--workers", "2"]


@pytest.fixture(scope="session")
def build_speech(tmp_path_factory) -> Path:
    """Six speakers x three clips of 2-3 s of synthetic speech."""
    folder = tmp_path_factory.mktemp("speech")
    for speaker in range(6):
        (folder / f"spk{speaker}").mkdir()
        for clip in range(3):
            rng = np.random.default_rng([speaker, clip])
            soundfile.write(folder / f"spk{speaker}" / f"{clip}.wav",
                            synthetic_speech(2.0 + clip / 2, rng) * 0.5, RATE)
    return folder


@pytest.fixture(scope="session")
def teacher_build(tmp_path_factory, build_speech) -> Path:
    """The work folder of a finished scaled-down build."""
    from modeling_mtqnet.tools.build_pretrained import main

    work_dir = tmp_path_factory.mktemp("build") / "teacher"
    assert main(build_arguments(work_dir, build_speech)) == 0
    return work_dir
