"""`mtqnet build-pretrained small-p835`: a scaled-down rebuild of the shipped S/N/G model runs end to end (corpus,
parts, DNSMOS stand-in labels, the shipped teacher's pseudo labels, MPL training, evaluation by factor, a card with
the stand-in wording) and resumes; its parts keep test speakers out of training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from modeling_mtqnet import MTQNetForSpeechQualityAssessment
from modeling_mtqnet.tables import read_table, to_float
from modeling_mtqnet.builds.student import read_parts
from modeling_mtqnet.tools.build_pretrained import main
from modeling_mtqnet.vocabulary import PRIMARY_TARGETS, PSEUDO_LABEL_TARGETS
from tests.tools.conftest import build_arguments

SIZES = {"--pool": 60, "--labelled": 20, "--validation": 8, "--test": 16, "--steps": 4}


def student_arguments(work_dir: Path, speech: Path) -> list[str]:
    arguments = build_arguments(work_dir, speech)
    arguments[0] = "small-p835"
    for option, value in SIZES.items():
        arguments += [option, str(value)]
    return arguments


@pytest.fixture(scope="module")
def student_build(tmp_path_factory, build_speech) -> Path:
    work_dir = tmp_path_factory.mktemp("build") / "student"
    assert main(student_arguments(work_dir, build_speech)) == 0
    return work_dir


def test_scaled_down_student_rebuild_makes_an_s_n_g_model_with_a_stand_in_card(student_build):
    model_dir = student_build / "model"
    model = MTQNetForSpeechQualityAssessment.from_pretrained(model_dir)
    assert model.config.target_names == list(PRIMARY_TARGETS)
    assert model.config.auxiliary_target_names == []  # pseudo-label heads dropped for inference
    assert model.config.trained_auxiliary_target_names == list(PSEUDO_LABEL_TARGETS)
    info = json.loads((model_dir / "build_info.json").read_text())
    labels = info["labels"]
    assert labels["labelled_training_clips"] == SIZES["--labelled"]
    assert labels["pseudo_labelled_training_clips"] == SIZES["--pool"] - SIZES["--validation"]
    assert labels["validation_clips"] == SIZES["--validation"] and labels["test_clips"] == SIZES["--test"]
    assert info["recipe"]["method"] == "mpl_kt" and info["recipe"]["corpus"]["count"] == 200
    assert {"corpus", "parts", "labels", "train", "evaluate"} <= set(info["timings_s"])
    card = ModelCard.load(model_dir / "README.md")
    metrics = {(r.metric_config, r.metric_type): r.metric_value for r in card.data.eval_results}
    overall = info["evaluation"]["all"]
    assert overall["clips"] == SIZES["--test"]
    assert math.isclose(metrics[("s_mos", "pearsonr")], overall["s_mos"]["lcc"], abs_tol=1e-3)
    assert "not 3QUEST" in card.text and "DNSMOS P.835" in card.text
    assert card.data.license == "other"


def test_parts_keep_test_speakers_out_and_labels_where_they_belong(student_build):
    parts = read_parts(student_build / "parts")
    pool = {row["path"] for row in parts["pool"]}
    candidates = {row["path"] for row in parts["candidates"]}
    validation = {row["path"] for row in parts["validation"]}
    assert candidates <= pool and validation <= pool and not candidates & validation
    assert {row["split"] for row in parts["pool"]} == {"train"} and {row["split"] for row in parts["test"]} == {"test"}
    assert not {row["speaker"] for row in parts["test"]} & {row["speaker"] for row in parts["pool"]}
    pooled = read_table(student_build / "tables" / "pooled.csv")
    assert {row["path"] for row in pooled} == pool - validation
    for row in pooled:
        has_primary = all(math.isfinite(to_float(row[t])) for t in PRIMARY_TARGETS)
        assert has_primary == (row["path"] in candidates)
        assert 1.0 <= to_float(row["s_mos"]) <= 5.0 if has_primary else row["s_mos"] == ""
        assert all(math.isfinite(to_float(row[t])) for t in PSEUDO_LABEL_TARGETS)
    test = read_table(student_build / "tables" / "test.csv")
    assert all(1.0 <= to_float(row[t]) <= 5.0 for row in test for t in PRIMARY_TARGETS)


def test_a_second_student_run_resumes_without_redoing_anything(student_build, build_speech, capsys):
    before = (student_build / "model" / "model.safetensors").stat().st_mtime_ns
    assert main(student_arguments(student_build, build_speech)) == 0
    assert capsys.readouterr().out.count("done earlier") == 5  # corpus, parts, labels, train, evaluate
    assert (student_build / "model" / "model.safetensors").stat().st_mtime_ns == before


def test_student_sizes_that_do_not_fit_are_refused(tmp_path, build_speech):
    arguments = student_arguments(tmp_path / "w", build_speech)
    arguments[arguments.index("--labelled") + 1] = "59"  # 59 labelled + 8 validation > a pool of 60
    with pytest.raises(ValueError, match="Sizes do not fit"):
        main(arguments)
