"""`mtqnet build-pretrained`: a scaled-down rebuild of the shipped teacher runs end to end (corpus, intrusive labels,
training, evaluation by factor, card), resumes, and never writes over a folder it did not write."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from modeling_mtqnet import MTQNetForSpeechQualityAssessment
from modeling_mtqnet.builds import recipes, teacher
from modeling_mtqnet.builds.evaluation import factor_groups
from modeling_mtqnet.tools import build_pretrained
from modeling_mtqnet.tools.build_pretrained import main
from tests.tools.conftest import build_arguments

@pytest.fixture()
def built(teacher_build) -> Path:
    return teacher_build


def test_scaled_down_rebuild_makes_a_loadable_model_with_a_card(built):
    model_dir = built / "model"
    model = MTQNetForSpeechQualityAssessment.from_pretrained(model_dir)
    assert model.config.target_names == ["pesq", "stoi", "sdi"]
    assert model.config.dropout == 0.0  # the recipe's: one activation scale in training and at inference
    info = json.loads((model_dir / "build_info.json").read_text())
    assert info["corpus"]["utterances"] == 200
    assert info["labels"]["train"] + info["labels"]["test"] + info["labels"]["failed"] == 200
    assert info["corpus"]["held_out_systems"] == ["clipping"]
    assert info["corpus"]["held_out_noises"] == ["brown", "white"]
    assert set(info["timings_s"]) >= {"corpus", "labels", "train", "evaluate"}
    card = ModelCard.load(model_dir / "README.md")
    metrics = {(r.metric_config, r.metric_type): r.metric_value for r in card.data.eval_results}
    overall = info["evaluation"]["all"]
    assert math.isclose(metrics[("pesq", "pearsonr")], overall["pesq"]["lcc"], abs_tol=1e-3)
    assert "## The shipped teacher" in card.text and "system: unseen" in card.text


def test_evaluation_reports_unseen_factors(built):
    results = json.loads((built / "evaluation.json").read_text())
    assert results["all"]["clips"] >= 20
    assert "system: unseen" in results and "noise: unseen recording or type" in results
    assert all(set(results["all"][t]) == {"lcc", "srcc", "mse", "bias"} for t in ("pesq", "stoi", "sdi"))
    predictions = list(csv.DictReader((built / "train" / "predictions.csv").open()))
    for target in ("pesq", "stoi", "sdi"):  # mean prediction minus mean label over the test part
        bias = sum(float(r[f"{target}_pred"]) - float(r[target]) for r in predictions) / len(predictions)
        assert math.isclose(results["all"][target]["bias"], bias, abs_tol=1e-3)
    assert sum(entry["clips"] for group, entry in results.items() if group.startswith("system: ")) \
        == results["all"]["clips"]


def test_a_second_run_resumes_without_redoing_anything(built, build_speech, capsys):
    speech = build_speech
    before = (built / "model" / "model.safetensors").stat().st_mtime_ns
    assert main(build_arguments(built, speech)) == 0
    out = capsys.readouterr().out
    assert out.count("done earlier") == 4  # corpus, labels, train, evaluate
    assert (built / "model" / "model.safetensors").stat().st_mtime_ns == before


def test_other_settings_in_the_same_folder_are_refused(built, build_speech):
    speech = build_speech
    arguments = build_arguments(built, speech)
    arguments[arguments.index("--count") + 1] = "300"
    with pytest.raises(ValueError, match="other settings.*count"):
        main(arguments)


def test_a_foreign_model_folder_is_never_overwritten(tmp_path, build_speech, monkeypatch):
    speech = build_speech
    shipped = tmp_path / "pretrained"
    (shipped / "teacher-pesq-stoi-sdi").mkdir(parents=True)
    (shipped / "teacher-pesq-stoi-sdi" / "README.md").write_text("someone else's card")
    monkeypatch.setattr(build_pretrained, "PRETRAINED_DIR", shipped)
    with pytest.raises(ValueError, match="did not write"):
        main([*build_arguments(tmp_path / "work", speech), "--install"])
    assert (shipped / "teacher-pesq-stoi-sdi" / "README.md").read_text() == "someone else's card"


def test_recipe_reaches_the_training_arguments(tmp_path):
    from modeling_mtqnet.training.recipe import training_arguments

    def parsed(**fields):
        recipe = dataclasses.replace(recipes.TeacherRecipe(), **fields)
        return training_arguments(teacher.teacher_training_values(recipe, tmp_path, tmp_path / "out"))

    model_args, _, training_args = parsed()
    # The last epoch ships (validation holds a few whole speakers and picked early, worse epochs), and no best
    # checkpoint is kept in place of the latest one a cut-off build resumes from.
    assert model_args.dropout == 0.0 and training_args.load_best_model_at_end is False
    assert training_args.metric_for_best_model is None and training_args.save_total_limit == 1
    model_args, _, training_args = parsed(dropout=0.3, select_best_epoch=True, epochs=2.0)
    assert model_args.dropout == 0.3 and training_args.load_best_model_at_end is True
    assert training_args.num_train_epochs == 2.0 and training_args.metric_for_best_model == "lcc"


def test_factor_groups_mark_held_out_conditions():
    row = {"noise_type": "music/a", "system": "mp3", "speaker": "s", "language": "fr"}
    groups = factor_groups(row, {"music/a"}, {"mp3"})
    assert "noise: unseen recording or type" in groups and "system: unseen" in groups
    assert "language=fr" in groups and "system=mp3" in groups
    seen = factor_groups({**row, "noise_type": "none", "system": "none"}, {"music/a"}, {"mp3"})
    assert "noise: none (clean or system only)" in seen and "system: seen in training" in seen


def test_a_pool_stage_killed_halfway_starts_again(tmp_path, monkeypatch):
    """The pool folder of a build killed while making it is the build's own: the next run clears it and starts
    the stage again (make_speech_pool itself refuses a non-empty folder without a finished pool)."""
    from modeling_mtqnet.corpus import speech_pool

    seen = []

    def interrupted_pool(packages_dir, pool_dir, **options):
        seen.append(pool_dir.exists())
        (pool_dir / "speech").mkdir(parents=True)
        raise RuntimeError("killed")

    monkeypatch.setattr(speech_pool, "fetch_packages", lambda *args, **kwargs: None)
    monkeypatch.setattr(speech_pool, "make_speech_pool", interrupted_pool)
    arguments = ["teacher-pesq-stoi-sdi", "--work_dir", str(tmp_path / "work"), "--count", "10"]
    for _ in range(2):
        with pytest.raises(RuntimeError, match="killed"):
            main(arguments)
    assert seen == [False, False]
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    assert "packages" in state["done"] and "pool" not in state["done"]


def test_a_finished_build_ships_again_with_install(built, build_speech, tmp_path, monkeypatch, capsys):
    """--install after a plain build copies the finished model into the package's folder without training again,
    and a second --install resumes without copying. (Last in this file: it moves the build's `shipped_to`.)"""
    shipped = tmp_path / "pretrained"
    shipped.mkdir()
    monkeypatch.setattr(build_pretrained, "PRETRAINED_DIR", shipped)
    assert main([*build_arguments(built, build_speech), "--install"]) == 0
    target = shipped / "teacher-pesq-stoi-sdi"
    assert (target / "model.safetensors").read_bytes() == (built / "model" / "model.safetensors").read_bytes()
    assert json.loads((target / "build_info.json").read_text())["name"] == "mtqnet/teacher-pesq-stoi-sdi"
    assert capsys.readouterr().out.count("done earlier") == 4  # corpus, labels, train, evaluate: not redone
    before = (target / "model.safetensors").stat().st_mtime_ns
    assert main([*build_arguments(built, build_speech), "--install"]) == 0
    assert (target / "model.safetensors").stat().st_mtime_ns == before
