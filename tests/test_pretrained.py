"""The models shipped inside the package: short names resolve (source tree and installed wheel), the shipped teacher
loads in a fresh process, through the package's pipeline and through remote code, scores real speech within its
ranges and in the right order, and its card parses with a model-index that matches its build record.

`real_speech_en_allison.wav` (tests/fixtures) is a prompt of the Asterisk core sounds (Allison Smith, CC-BY-SA-3.0,
Debian asterisk-core-sounds-en-wav 1.6.1-1), as `mtqnet speech-pool` makes it: 16 kHz, level -26 dB."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from huggingface_hub import ModelCard

import modeling_mtqnet
from modeling_mtqnet import pretrained
from modeling_mtqnet.labels.annotate import ModelTeacher, make_teacher
from modeling_mtqnet.model.modeling_mtqnet import CODE_FILES
from modeling_mtqnet.pretrained import SHIPPED, pretrained_path, resolve_model
from modeling_mtqnet.pretrained import SHIPPED_TEACHER as TEACHER
from tests.helpers import run_without_package

REPO = Path(__file__).resolve().parents[1]
STUDENT = "mtqnet/small-p835"
REAL_CLIP = REPO / "tests" / "fixtures" / "real_speech_en_allison.wav"
RANGES = {"pesq": (1.04, 4.64), "stoi": (0.0, 1.0), "sdi": (0.0, math.inf)}


def _noisy(clean: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(clean.size)
    noise *= np.sqrt(np.mean(clean**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return (clean + noise).astype(np.float32)


def test_short_names_resolve_to_the_package_folders():
    for name in SHIPPED:
        folder = pretrained_path(name)
        assert folder.parent == pretrained.PRETRAINED_DIR and folder.name == name.split("/")[1]
        assert resolve_model(name) == str(folder)
    assert resolve_model("some/hub-repo") == "some/hub-repo"
    assert resolve_model("/a/folder") == "/a/folder"
    with pytest.raises(ValueError, match="not a model shipped"):
        pretrained_path("mtqnet/no-such-model")


def test_a_local_folder_of_the_same_name_wins(tmp_path, monkeypatch):
    (tmp_path / TEACHER).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_model(TEACHER) == TEACHER


def test_shipped_folders_are_small_safetensors_with_a_build_record():
    for name in SHIPPED:
        folder = pretrained_path(name)
        files = {p.name for p in folder.iterdir()}
        assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md",
                "build_info.json"} <= files
        assert not any(p.suffix in (".bin", ".pt", ".pkl", ".pth") for p in folder.iterdir())
        # The Distill-MOS encoder (4.1 M parameters, float32) is most of it; the aim is about 20 MB at most.
        assert sum(p.stat().st_size for p in folder.iterdir()) < 20 * 2**20


@pytest.mark.parametrize("name, targets, phrases", [
    (TEACHER, ("pesq", "stoi", "sdi"), ("never heard", "build-pretrained teacher-pesq-stoi-sdi")),
    (STUDENT, ("s_mos", "n_mos", "g_mos"), ("DNSMOS P.835", "not 3QUEST", "build-pretrained small-p835")),
])
def test_shipped_card_parses_and_matches_its_build_record(name, targets, phrases):
    folder = pretrained_path(name)
    card = ModelCard.load(folder / "README.md")
    info = json.loads((folder / "build_info.json").read_text())
    results = {(r.metric_config, r.metric_type): r.metric_value for r in card.data.eval_results}
    for target in targets:
        assert math.isclose(results[(target, "pearsonr")], info["evaluation"]["all"][target]["lcc"], abs_tol=1e-3)
    assert card.data.eval_results[0].dataset_split == "test" and card.data.license == "other"
    assert all(phrase in card.text for phrase in phrases)
    if name == STUDENT:
        assert info["recipe"]["teacher"] == TEACHER


def test_shipped_student_scores_real_speech_in_range_and_hears_noise():
    scorer = modeling_mtqnet.pipeline("speech-quality-assessment", model=STUDENT)
    clean, rate = soundfile.read(REAL_CLIP, dtype="float32")
    scores = scorer([clean, _noisy(clean, 20), _noisy(clean, 0)], sampling_rate=rate)
    for result in scores:
        assert all(1.0 <= result[t] <= 5.0 for t in ("s_mos", "n_mos", "g_mos")), result
    # Background quality (N-MOS) and overall quality (G-MOS) fall as white noise is added.
    assert scores[0]["n_mos"] > scores[1]["n_mos"] > scores[2]["n_mos"]
    assert scores[0]["g_mos"] > scores[2]["g_mos"]


def test_shipped_teacher_scores_real_speech_in_range_and_in_order():
    scorer = modeling_mtqnet.pipeline("speech-quality-assessment", model=TEACHER)
    clean, rate = soundfile.read(REAL_CLIP, dtype="float32")
    scores = scorer([clean, _noisy(clean, 20), _noisy(clean, 0)], sampling_rate=rate)
    values = [{target: result[target] for target in RANGES} for result in scores]
    # PESQ and SDI heads are linear (unclipped, as the card documents): they must stay in the model's declared label
    # ranges, but for the documented dips: PESQ a little under the MOS-LQO floor of 1.04 on very noisy clips, SDI a
    # little under 0 on clean ones (this clean clip: -0.015 with 0.2.0's teacher).
    config = modeling_mtqnet.MTQNetConfig.from_pretrained(pretrained_path(TEACHER))
    declared = dict(zip(config.target_names, config.target_ranges))
    dip = {"pesq": 0.0, "stoi": 0.0, "sdi": 0.05}
    for value in values:
        for target in RANGES:
            low, high = declared[target]
            assert low - dip[target] <= value[target] <= high, (target, value)
    assert values[0]["pesq"] >= RANGES["pesq"][0] and values[1]["pesq"] >= RANGES["pesq"][0]
    assert values[0]["pesq"] > values[1]["pesq"] > values[2]["pesq"]
    assert values[0]["stoi"] > values[2]["stoi"]
    assert values[0]["sdi"] < values[2]["sdi"]


def test_shipped_teacher_loads_in_a_fresh_process_by_path_and_by_short_name(tmp_path):
    code = f"""
    import json, soundfile
    from transformers import AutoModel, AutoFeatureExtractor
    from modeling_mtqnet import pipeline, pretrained_path
    folder = pretrained_path({TEACHER!r})
    model = AutoModel.from_pretrained(folder).eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder)
    clip, rate = soundfile.read({str(REAL_CLIP)!r}, dtype="float32")
    logits = model(**extractor([clip], sampling_rate=rate, return_tensors="pt")).logits[0].tolist()
    scores = pipeline("speech-quality-assessment", model={TEACHER!r})(clip, sampling_rate=rate)
    print(json.dumps([logits, [scores[t] for t in ("pesq", "stoi", "sdi")]]))
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    logits, scores = json.loads(completed.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(logits, scores, atol=1e-4)


def test_shipped_teacher_loads_through_remote_code(tmp_path):
    folder = tmp_path / "teacher"
    shutil.copytree(pretrained_path(TEACHER), folder)
    for name in CODE_FILES:  # what `save_pretrained` / `mtqnet push` put beside the weights
        shutil.copyfile(REPO / "modeling_mtqnet" / "model" / name, folder / name)
    code = f"""
    import soundfile
    from transformers import AutoFeatureExtractor, AutoModel
    model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained({str(folder)!r}, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    clip, rate = soundfile.read({str(REAL_CLIP)!r}, dtype="float32")
    print(model(**extractor([clip], sampling_rate=rate, return_tensors="pt")).logits[0].tolist())
    """
    remote = json.loads(run_without_package(code, cwd=tmp_path).strip().splitlines()[-1])
    scorer = modeling_mtqnet.pipeline("speech-quality-assessment", model=TEACHER)
    clip, rate = soundfile.read(REAL_CLIP, dtype="float32")
    result = scorer(clip, sampling_rate=rate)
    local = [result[t] for t in ("pesq", "stoi", "sdi")]
    np.testing.assert_allclose(remote, local, atol=1e-4)


def test_commands_take_the_short_name():
    teacher = make_teacher(TEACHER, "path")
    assert isinstance(teacher, ModelTeacher)
    from modeling_mtqnet.training.recipe import parse_arguments

    model_args, _, _ = parse_arguments(["--train_file", "x.csv", "--output_dir", "out", "--method", "kt",
                                        "--teacher", TEACHER])
    assert model_args.teacher == str(pretrained_path(TEACHER))
    with pytest.raises(ValueError, match="shipped model"):
        make_teacher("mtqnet/no-such-teacher", "path")


def test_installed_wheel_carries_the_shipped_models(tmp_path):
    """Build the wheel, unpack it, and resolve the short name from it in a process that cannot see the source."""
    wheel_dir = tmp_path / "wheel"
    completed = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                                "-w", str(wheel_dir), str(REPO)], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    wheel = next(wheel_dir.glob("mtqnet-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    for name in [*SHIPPED, pretrained.SHIPPED_ENCODER]:
        folder = f"modeling_mtqnet/pretrained/{name.split('/')[1]}/"
        assert {folder + f for f in ("config.json", "model.safetensors", "README.md")} <= set(names)
    assert "modeling_mtqnet/pretrained/distillmos/LICENSE" in names
    code = f"""
    import modeling_mtqnet
    from modeling_mtqnet import pretrained_path
    assert modeling_mtqnet.__file__.startswith({str(site)!r}), modeling_mtqnet.__file__
    print(pretrained_path({TEACHER!r}))
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(site)}
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().startswith(str(site))
