"""The main job (README's first command) in its --quick form: every stage, its artefacts, and reruns."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from modeling_mtqnet.tools.demo import STAGES
from modeling_mtqnet.vocabulary import METHOD_DISPLAY_NAMES as METHOD_NAMES
from modeling_mtqnet.training.reporting import parse_results_table

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("s_mos", "n_mos", "g_mos")


def readme_demo_command() -> list[str]:
    """README's command 1 after its set-up part, with this interpreter: the demo as users start it."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    line = next(line for line in block.splitlines() if "mtqnet demo" in line)
    assert line.startswith("bash scripts/setup_env.sh && .venv/bin/mtqnet demo ")
    command = shlex.split(line.split("&&", 1)[1])
    return [str(Path(sys.executable).parent / "mtqnet")] + command[1:]  # the console script of this environment


def run_demo(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(arguments, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """README's command 1 with --quick, from another working directory, with its relative --output_dir."""
    cwd = tmp_path_factory.mktemp("demo")
    command = readme_demo_command() + ["--quick"]
    completed = run_demo(command, cwd)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    output = cwd / command[command.index("--output_dir") + 1]
    return command, cwd, output, completed


def test_artefacts_exist(quick_run):
    _, _, output, completed = quick_run
    for name in ("results.md", "frame_scores.png", "scores.json", "model/config.json", "model/model.safetensors",
                 "model/preprocessor_config.json", "model/modeling_mtqnet.py", "teacher/model.safetensors"):
        assert (output / name).is_file(), name
    plots = sorted(p.name for p in (output / "plots").glob("*.png"))
    assert plots == sorted(f"{method}_scatter_{target}.png" for method in ("mpl", "scratch") for target in TARGETS)
    assert all(path.stat().st_size > 5000 for path in (output / "plots").glob("*.png"))
    assert not list(output.glob("runs/*/checkpoint-*"))  # finished runs keep the model, not the checkpoints
    assert "DNSMOS P.835" in completed.stdout  # the stand-in labels are named in the output


def test_results_table_parses_and_is_plausible(quick_run):
    _, _, output, completed = quick_run
    text = (output / "results.md").read_text()
    table = parse_results_table(text)
    assert list(table) == [METHOD_NAMES["scratch"], METHOD_NAMES["mpl"]]
    for values in table.values():
        assert len(values) == 9 and all(math.isfinite(v) for v in values.values())
        for name in ("S-MOS", "N-MOS", "G-MOS"):
            assert -1 <= values[f"{name}_lcc"] <= 1 and -1 <= values[f"{name}_srcc"] <= 1
            assert values[f"{name}_mse"] >= 0
    # The table is the test part's: it equals what the runs wrote for their test set.
    scratch = json.loads((output / "runs" / "scratch" / "eval_results.json").read_text())
    assert table[METHOD_NAMES["scratch"]]["G-MOS_lcc"] == pytest.approx(scratch["test_g_mos_lcc"], abs=6e-4)
    assert "stand-ins" in text and "3QUEST" in text
    assert table[METHOD_NAMES["scratch"]]["S-MOS_lcc"] == pytest.approx(
        float(re.search(r"\| MTQ-Net, scratch \| ([-0-9.]+)", completed.stdout).group(1)), abs=1e-3)


def test_scores_are_finite_in_range_and_equal_through_remote_code(quick_run):
    _, _, output, _ = quick_run
    scores = json.loads((output / "scores.json").read_text())
    assert len(scores["files"]) >= 2
    for values in [entry["mtqnet"] for entry in scores["files"].values()] + [scores["frame_demo"]]:
        assert set(TARGETS) <= set(values)
        assert all(math.isfinite(values[t]) and 1.0 <= values[t] <= 5.0 for t in TARGETS)
    assert scores["remote_code_max_difference"] < 1e-5
    config = json.loads((output / "model" / "config.json").read_text())
    assert config["target_names"] == list(TARGETS)
    assert config["auxiliary_target_names"] == [] and config["trained_auxiliary_target_names"] == ["pesq", "stoi",
                                                                                                    "sdi"]
    card = (output / "model" / "README.md").read_text()
    assert "**The training labels are stand-ins, not 3QUEST scores.**" in card and "DNSMOS P.835" in card


def test_data_splits_and_labels(quick_run):
    _, _, output, _ = quick_run
    labels = output / "labels"
    teacher, student, test = rows(labels / "teacher.csv"), rows(labels / "student.csv"), rows(labels / "test.csv")
    assert teacher and student and test
    # No sentence recording in both teacher and student parts; test voices never in training.
    assert {r["source_file"] for r in teacher}.isdisjoint(r["source_file"] for r in student)
    assert {r["speaker"] for r in test}.isdisjoint(r["speaker"] for r in teacher + student)
    assert {"babble", "hum"} & {r["noise_type"] for r in test}
    assert not {"babble", "hum"} & {r["noise_type"] for r in teacher + student}
    # Stand-in primary labels are DNSMOS P.835, for the labelled student clips and the test part only.
    labelled = [r for r in student if r["role"] != "unlabelled"]
    assert 0 < len(labelled) < len(student) and {r["role"] for r in labelled} == {"train", "validation"}
    for row in labelled + test:
        assert (row["s_mos"], row["n_mos"], row["g_mos"]) == (row["dnsmos_sig"], row["dnsmos_bak"],
                                                              row["dnsmos_ovrl"])
        assert 1.0 <= float(row["g_mos"]) <= 5.0
    assert all(r["s_mos"] == "" for r in student if r["role"] == "unlabelled")
    # The student's pseudo labels are the teacher's predictions (never intrusive scores), for every clip.
    predictions = rows(labels / "student_teacher.csv")
    assert [r["pesq"] for r in student] == [r["pesq"] for r in predictions]
    assert all(0.0 < float(r["stoi"]) < 1.0 for r in student)  # the teacher's sigmoid head
    assert all(math.isfinite(float(r["pesq"])) for r in teacher)  # intrusive labels for the teacher
    # Scratch trains on the labelled clips, MPL on every clip but the shared validation ones.
    paths = lambda name: sorted(r["path"] for r in rows(labels / name))  # noqa: E731
    assert paths("student_labelled.csv") == sorted(r["path"] for r in student if r["role"] == "train")
    assert paths("student_all.csv") == sorted(r["path"] for r in student if r["role"] != "validation")


def test_rerun_skips_every_stage_and_other_settings_are_refused(quick_run):
    command, cwd, output, _ = quick_run
    before = (output / "results.md").read_text()
    again = run_demo(command, cwd)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done in an earlier run") == len(STAGES)
    assert (output / "results.md").read_text() == before
    refused = run_demo(command + ["--seed", "1"], cwd)
    assert refused.returncode == 2 and "other settings (seed)" in refused.stderr


def test_more_methods_train_only_the_new_ones(quick_run):
    command, cwd, output, _ = quick_run
    scratch_model = (output / "runs" / "scratch" / "model.safetensors").read_bytes()
    more = run_demo(command + ["--methods", "scratch", "mpl", "kt"], cwd)
    assert more.returncode == 0, more.stderr[-3000:]
    assert more.stdout.count("done in an earlier run") == len(STAGES) - 3
    assert "Student: MTQ-Net, KT" in more.stdout
    assert "Student: MTQ-Net, scratch" not in more.stdout and "Student: MTQ-Net, MPL" not in more.stdout
    assert (output / "runs" / "scratch" / "model.safetensors").read_bytes() == scratch_model
    assert list(parse_results_table((output / "results.md").read_text())) == [
        METHOD_NAMES["scratch"], METHOD_NAMES["mpl"], METHOD_NAMES["kt"]]


def test_an_interrupted_stage_is_redone_and_later_stages_follow(quick_run):
    """As if the run had been killed while training the MPL student: scratch is kept, MPL is trained again."""
    command, cwd, output, _ = quick_run
    state_path = output / "demo_state.json"
    state = json.loads(state_path.read_text())
    for stage in ("students", "report", "final"):
        del state["stages"][stage]
    state_path.write_text(json.dumps(state))
    scratch_model = (output / "runs" / "scratch" / "model.safetensors").read_bytes()
    (output / "runs" / "mpl" / "eval_results.json").unlink()
    (output / "results.md").unlink()
    resumed = run_demo(command, cwd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("done in an earlier run") == len(STAGES) - 3
    assert "Student: MTQ-Net, MPL" in resumed.stdout and "Student: MTQ-Net, scratch" not in resumed.stdout
    assert (output / "runs" / "scratch" / "model.safetensors").read_bytes() == scratch_model
    assert parse_results_table((output / "results.md").read_text())
