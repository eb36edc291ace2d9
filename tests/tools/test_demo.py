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

import numpy as np
import pytest
import soundfile

from modeling_mtqnet.corpus.signals import synthetic_speech
from modeling_mtqnet.tools.demo import DEFAULT_METHODS as METHODS
from modeling_mtqnet.labels.stand_in import stand_in_mos
from modeling_mtqnet.tools.demo import DEFAULT_POOL_DIR, SHIPPED_TEACHER, STAGES
from modeling_mtqnet.training.reporting import parse_results_table
from modeling_mtqnet.vocabulary import METHOD_DISPLAY_NAMES as METHOD_NAMES

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
RATE = 16000
TARGETS = ("s_mos", "n_mos", "g_mos")


def readme_command_one() -> str:
    """README's command 1, continuation lines joined."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    lines = [line for line in block.replace("\\\n", " ").splitlines() if not line.startswith("#")]
    return next(line for line in lines if "mtqnet demo" in line)


def readme_demo_command(pool_dir: Path) -> list[str]:
    """README's command 1 after its set-up parts, with this interpreter and a small pool: the demo as users start it."""
    parts = [part.strip() for part in readme_command_one().split("&&")]
    assert parts[0] == "bash scripts/setup_env.sh" and parts[1].startswith(".venv/bin/mtqnet speech-pool --fetch")
    command = shlex.split(parts[2])
    assert command[:2] == [".venv/bin/mtqnet", "demo"]
    return [str(Path(sys.executable).parent / "mtqnet")] + command[1:] + ["--pool_dir", str(pool_dir)]


def test_readme_makes_the_pool_where_the_demo_looks_for_it():
    pool = shlex.split(readme_command_one().split("&&")[1])
    assert Path(pool[pool.index("--output_dir") + 1]) == DEFAULT_POOL_DIR
    assert "--pool_dir" not in readme_command_one()


def run_demo(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(arguments, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def small_pool(tmp_path_factory) -> Path:
    """A pool laid out as `mtqnet speech-pool` makes it: ten speakers (one the real fixture voice, nine synthetic)
    under speech/, and noise recordings under noise/ named so that the shipped teacher's held-out patterns (music,
    sports crowds, rain) select some of them."""
    pool = tmp_path_factory.mktemp("pool")
    real = soundfile.read(FIXTURES / "real_speech_en_allison.wav", dtype="float32")[0]
    for speaker in range(10):
        folder = pool / "speech" / f"spk{speaker}"
        folder.mkdir(parents=True)
        for clip in range(3):
            rng = np.random.default_rng([speaker, clip])
            audio = real if speaker == 0 else synthetic_speech(2.0 + clip / 2, rng) * 0.3
            soundfile.write(folder / f"{clip}.wav", audio, RATE)
    for name in ("music/tune", "city/SportsCrowd", "ambience/rain", "ambience/wind", "machines/engine"):
        path = pool / "noise" / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(len(name))
        soundfile.write(path, np.cumsum(rng.standard_normal(3 * RATE)).astype("float32") * 1e-3, RATE)
    return pool


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, small_pool):
    """README's command 1 with --quick, from another working directory, with its relative --output_dir."""
    cwd = tmp_path_factory.mktemp("demo")
    command = readme_demo_command(small_pool) + ["--quick"]
    completed = run_demo(command, cwd)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    output = cwd / command[command.index("--output_dir") + 1]
    return command, cwd, output, completed


def test_a_missing_pool_is_named_with_the_command_that_makes_it(tmp_path):
    completed = run_demo(readme_demo_command(tmp_path / "nowhere") + ["--quick"], tmp_path)
    assert completed.returncode == 2
    assert "No speech pool in" in completed.stderr and "mtqnet speech-pool --fetch" in completed.stderr
    assert not list((tmp_path / "outputs" / "demo").glob("corpus"))


def test_artefacts_exist(quick_run):
    _, _, output, completed = quick_run
    for name in ("results.md", "results.json", "frame_scores.png", "scores.json", "model/config.json",
                 "model/model.safetensors", "model/preprocessor_config.json", "model/modeling_mtqnet.py"):
        assert (output / name).is_file(), name
    assert not (output / "teacher").exists()  # the shipped teacher is used, not trained
    assert f"Teacher: the shipped {SHIPPED_TEACHER}" in completed.stdout
    assert sorted(p.relative_to(output / "runs").as_posix() for p in (output / "runs").glob("*/*")) == [
        f"{method}/seed{seed}" for method in sorted(METHODS) for seed in (0, 1)]  # --quick: two seeds per method
    plots = sorted(p.name for p in (output / "plots").glob("*.png"))
    assert plots == sorted(f"{method}_scatter_{target}.png" for method in METHODS for target in TARGETS)
    assert all(path.stat().st_size > 5000 for path in (output / "plots").glob("*.png"))
    assert not list(output.glob("runs/*/*/checkpoint-*"))  # finished runs keep the model, not the checkpoints
    assert "DNSMOS P.835" in completed.stdout  # the stand-in labels are named in the output


def test_results_are_means_over_seeds_with_intervals(quick_run):
    _, _, output, completed = quick_run
    text = (output / "results.md").read_text()
    table = parse_results_table(text)
    assert list(table) == [METHOD_NAMES[method] for method in METHODS]
    # The set-up names the encoder the students were built with (the preset's, frozen), not only a given --ssl_model.
    assert "- SSL encoder: a frozen pretrained Distill-MOS encoder (distillmos)." in text
    for values in table.values():
        assert len(values) == 9 and all(math.isfinite(v) for v in values.values())
        for name in ("S-MOS", "N-MOS", "G-MOS"):
            assert -1 <= values[f"{name}_lcc"] <= 1 and -1 <= values[f"{name}_srcc"] <= 1
            assert values[f"{name}_mse"] >= 0
    # A cell is the mean over the seeds of what each run wrote for the test part.
    for method in METHODS:
        per_seed = [json.loads((output / "runs" / method / f"seed{seed}" / "eval_results.json").read_text())
                    for seed in (0, 1)]
        assert table[METHOD_NAMES[method]]["G-MOS_lcc"] == pytest.approx(
            np.mean([run["test_g_mos_lcc"] for run in per_seed]), abs=6e-4)
    # Intervals contain their means; MPL's difference to scratch is its mean LCC minus scratch's.
    results = json.loads((output / "results.json").read_text())
    assert set(results) == set(METHODS) and "minus_scratch" not in results["scratch"]
    for entry in results.values():
        for mean, low, high in [*entry["metrics"].values(), *entry.get("minus_scratch", {}).values()]:
            assert low <= mean + 1e-9 and mean <= high + 1e-9 and low < high
    for target in TARGETS:
        assert results["mpl"]["minus_scratch"][f"{target}_lcc"][0] == pytest.approx(
            results["mpl"]["metrics"][f"{target}_lcc"][0] - results["scratch"]["metrics"][f"{target}_lcc"][0],
            abs=2e-4)
    assert "stand-ins" in text and "3QUEST" in text and "Mean over 2 training seeds (0, 1)" in text
    assert re.search(r"\| MTQ-Net, MPL \| [-0-9.]+ \[[-0-9.]+, [-0-9.]+\]", text)
    assert re.search(r"MTQ-Net, MPL \(mean of 2 seeds\): .*(higher|lower|no measurable)", text)
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
    # The frame demo: a noise burst and a dropout inside clean speech, each measured against the untouched frames.
    windows = scores["frame_demo"]["windows_s"]
    assert set(windows) == {"noise burst", "dropout"} and all(0 <= a < b for a, b in windows.values())
    contrast = scores["frame_demo"]["inside_minus_outside"]
    assert all(set(contrast[name]) == set(TARGETS) and all(math.isfinite(v) for v in contrast[name].values())
               for name in windows)
    config = json.loads((output / "model" / "config.json").read_text())
    assert config["target_names"] == list(TARGETS)
    assert config["auxiliary_target_names"] == [] and config["trained_auxiliary_target_names"] == ["pesq", "stoi",
                                                                                                    "sdi"]
    card = (output / "model" / "README.md").read_text()
    assert "**The training labels are stand-ins, not 3QUEST scores.**" in card and "DNSMOS P.835" in card


def test_data_splits_and_labels(quick_run, small_pool):
    _, _, output, _ = quick_run
    labels = output / "labels"
    student, test = rows(labels / "student.csv"), rows(labels / "test.csv")
    assert student and test and not (labels / "teacher.csv").exists()
    # The test part holds the speakers the shipped teacher's recipe holds out (same seed, same split), never heard in
    # training; the held-out noise recordings and systems appear in the test part only.
    config = json.loads((output / "corpus" / "corpus_info.json").read_text())["config"]
    assert {r["speaker"] for r in test} <= set(config["test_units"])
    assert {r["speaker"] for r in test}.isdisjoint(r["speaker"] for r in student)
    held_out = {"music/tune", "city/SportsCrowd", "ambience/rain", "brown"}
    assert not held_out & {r["noise_type"] for r in student}
    assert not {"ffmpeg_afftdn", "mp3", "clipping"} & {r["system"] for r in student}
    # Stand-in primary labels are DNSMOS P.835, for the labelled student clips and the test part only.
    labelled = [r for r in student if r["role"] != "unlabelled"]
    assert 0 < len(labelled) < len(student) and {r["role"] for r in labelled} == {"train", "validation"}
    for row in labelled + test:  # clipped into the MOS heads' 1-5 (DNSMOS SIG can fall below 1)
        assert (row["s_mos"], row["n_mos"], row["g_mos"]) == tuple(
            stand_in_mos(row[column]) for column in ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"))
        assert all(1.0 <= float(row[t]) <= 5.0 for t in TARGETS)
    assert all(r["s_mos"] == "" for r in student if r["role"] == "unlabelled")
    # The student's pseudo labels are the shipped teacher's predictions (never intrusive scores), for every clip.
    predictions = rows(labels / "student_teacher.csv")
    assert [r["pesq"] for r in student] == [r["pesq"] for r in predictions]
    assert all(0.0 < float(r["stoi"]) < 1.0 for r in student)  # the teacher's sigmoid head
    assert all(math.isfinite(float(r["pesq"])) for r in test)  # intrusive labels score the teacher
    assert len(rows(labels / "test_teacher.csv")) == len(test)
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
    refused = run_demo(command + ["--seeds", "0", "1", "2"], cwd)
    assert refused.returncode == 2 and "other settings (seeds)" in refused.stderr


def test_more_methods_train_only_the_new_ones(quick_run):
    command, cwd, output, _ = quick_run
    scratch_model = (output / "runs" / "scratch" / "seed0" / "model.safetensors").read_bytes()
    more = run_demo(command + ["--methods", *METHODS, "kt"], cwd)
    assert more.returncode == 0, more.stderr[-3000:]
    assert more.stdout.count("done in an earlier run") == len(STAGES) - 3
    assert "Student: MTQ-Net, KT, seed 0" in more.stdout and "Student: MTQ-Net, KT, seed 1" in more.stdout
    assert "Student: MTQ-Net, scratch" not in more.stdout and "Student: MTQ-Net, MPL" not in more.stdout
    assert "Saved the mpl_kt model of seed 0" in more.stdout  # the final model: MPL + KT when it was trained
    assert (output / "runs" / "scratch" / "seed0" / "model.safetensors").read_bytes() == scratch_model
    assert list(parse_results_table((output / "results.md").read_text())) == [
        METHOD_NAMES[method] for method in (*METHODS, "kt")]


def test_an_interrupted_stage_is_redone_and_later_stages_follow(quick_run):
    """As if the run had been killed while training MPL's second seed: the finished runs are kept."""
    command, cwd, output, _ = quick_run
    state_path = output / "demo_state.json"
    state = json.loads(state_path.read_text())
    for stage in ("students", "report", "final"):
        del state["stages"][stage]
    state_path.write_text(json.dumps(state))
    scratch_model = (output / "runs" / "scratch" / "seed0" / "model.safetensors").read_bytes()
    (output / "runs" / "mpl" / "seed1" / "eval_results.json").unlink()
    (output / "results.md").unlink()
    resumed = run_demo(command, cwd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("done in an earlier run") == len(STAGES) - 3
    assert "Student: MTQ-Net, MPL, seed 1" in resumed.stdout
    assert "Student: MTQ-Net, MPL, seed 0" not in resumed.stdout and "Student: MTQ-Net, scratch" not in resumed.stdout
    assert "Student: MTQ-Net, MPL + KT" not in resumed.stdout
    assert (output / "runs" / "scratch" / "seed0" / "model.safetensors").read_bytes() == scratch_model
    assert parse_results_table((output / "results.md").read_text())


def test_trunk_methods_with_another_trunk_need_a_teacher_trained_here(tmp_path, capsys):
    from modeling_mtqnet.tools.demo import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--methods", "scratch", "kt", "--preset", "base"])
    assert "add --train_teacher" in capsys.readouterr().err
    assert parse_args(["--methods", "kt", "--preset", "base", "--train_teacher"]).train_teacher
    with pytest.raises(SystemExit):  # the default methods include MPL + KT
        parse_args(["--ssl_model", "microsoft/wavlm-base-plus"])
    assert parse_args(["--ssl_model", "x", "--methods", "scratch", "mpl"]).methods == ["scratch", "mpl"]
    with pytest.raises(SystemExit):
        parse_args(["--seeds", "1", "1"])


def test_train_teacher_trains_one_on_a_part_of_its_own(tmp_path, small_pool):
    """--train_teacher: a teacher part split off the training recordings, intrusive labels, a teacher trained here
    whose trunk MPL + KT starts from."""
    command = readme_demo_command(small_pool) + ["--quick", "--train_teacher", "--methods", "scratch", "mpl_kt",
                                                 "--seeds", "0"]
    completed = run_demo(command, tmp_path)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    output = tmp_path / "outputs" / "demo"
    assert (output / "teacher" / "model.safetensors").is_file()
    assert json.loads((output / "teacher" / "config.json").read_text())["dropout"] == 0.0  # the shipped teacher's
    teacher, student = rows(output / "labels" / "teacher.csv"), rows(output / "labels" / "student.csv")
    assert teacher and student and all(math.isfinite(float(r["pesq"])) for r in teacher)
    assert {r["source_file"] for r in teacher}.isdisjoint(r["source_file"] for r in student)
    assert "teacher trained here" in (output / "results.md").read_text()
    assert "Saved the mpl_kt model of seed 0" in completed.stdout
