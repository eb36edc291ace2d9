"""`mtqnet train`'s Trainer arguments: the recipe's schedule is the default, and what the user gives wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeling_mtqnet.training import recipe
from modeling_mtqnet.training.arguments import (
    RECIPE_LEARNING_RATE,
    RECIPE_LR_SCHEDULER_TYPE,
    RECIPE_WARMUP_STEPS,
    MTQNetTrainingArguments,
)

REQUIRED = ["--train_file", "x.csv", "--output_dir", "o"]


def schedule(training_args) -> tuple[float, str, float]:
    return training_args.learning_rate, str(training_args.lr_scheduler_type.value), training_args.warmup_steps


def test_mtqnet_train_with_only_the_required_arguments_gets_the_recipes_schedule():
    _, _, training_args = recipe.parse_arguments(REQUIRED)
    assert isinstance(training_args, MTQNetTrainingArguments)
    assert schedule(training_args) == (1e-3, "cosine", 0.05)
    assert schedule(training_args) == (RECIPE_LEARNING_RATE, RECIPE_LR_SCHEDULER_TYPE, RECIPE_WARMUP_STEPS)
    assert training_args.get_warmup_steps(200) == 10  # below 1, warmup_steps is a share of the optimiser steps


def test_the_users_schedule_wins_on_the_command_line_and_in_an_arguments_file(tmp_path: Path):
    _, _, given = recipe.parse_arguments([*REQUIRED, "--learning_rate", "5e-5", "--lr_scheduler_type", "linear",
                                          "--warmup_steps", "0"])
    assert schedule(given) == (5e-5, "linear", 0)
    json_file = tmp_path / "args.json"
    json_file.write_text(json.dumps({"train_file": "x.csv", "output_dir": "o", "learning_rate": 2e-4}))
    _, _, from_json = recipe.parse_arguments([str(json_file)])
    assert schedule(from_json) == (2e-4, "cosine", 0.05)  # the file's value, and the recipe's for the rest
    yaml_file = tmp_path / "args.yaml"
    yaml_file.write_text("train_file: x.csv\noutput_dir: o\nlr_scheduler_type: constant\nwarmup_steps: 0\n")
    _, _, from_yaml = recipe.parse_arguments([str(yaml_file)])
    assert schedule(from_yaml) == (1e-3, "constant", 0)


@pytest.mark.parametrize("build", ["teacher", "student", "demo"])
def test_the_shipped_builds_and_the_demo_train_on_the_same_schedule(build: str, tmp_path: Path):
    """The builds still spell the schedule out (they record it in their build_info); it must be the default's."""
    if build == "teacher":
        from modeling_mtqnet.builds.recipes import TeacherRecipe
        from modeling_mtqnet.builds.teacher import teacher_training_values

        values = teacher_training_values(TeacherRecipe(), tmp_path, tmp_path / "out")
    elif build == "student":
        from modeling_mtqnet.builds.recipes import StudentRecipe
        from modeling_mtqnet.builds.student import student_training_values

        student = StudentRecipe()
        tables = {"validation": tmp_path / "validation.csv", "test": tmp_path / "test.csv"}
        values = student_training_values("scratch", tmp_path / "train.csv", tables, tmp_path / "out",
                                         preset=student.preset, steps=student.steps, batch_size=student.batch_size,
                                         learning_rate=student.learning_rate, crop_s=student.max_train_duration_s,
                                         seed=student.seed, evaluations=student.evaluations)
    else:
        import argparse

        from modeling_mtqnet.tools.demo import SIZES, training_values

        options = argparse.Namespace(preset="small", ssl_model=None, freeze_ssl=False)
        values = training_values(options, SIZES["full"], tmp_path / "out", tmp_path / "train.csv", "scratch",
                                 ["s_mos"], {"max_steps": 10, "eval_strategy": "steps", "eval_steps": 5,
                                             "save_strategy": "steps", "save_steps": 5},
                                 tmp_path / "test.csv", 0)
        assert "learning_rate" not in values  # the demo takes the default, the recipe's, from one place
    _, _, training_args = recipe.training_arguments(values)
    assert schedule(training_args) == (RECIPE_LEARNING_RATE, RECIPE_LR_SCHEDULER_TYPE, RECIPE_WARMUP_STEPS)


def test_values_and_the_command_line_give_the_same_arguments(tmp_path: Path):
    """`training_arguments` (typed values, as the builds give them) and `mtqnet train`'s command line are one parser:
    the same run comes out of either, checks and completed defaults included."""
    values = {"train_file": "x.csv", "output_dir": str(tmp_path / "o"), "target_columns": ["pesq", "stoi", "sdi"],
              "method": "scratch", "num_train_epochs": 2.0, "eval_strategy": "steps", "eval_steps": 5,
              "load_best_model_at_end": True, "metric_for_best_model": "lcc", "save_strategy": "steps",
              "save_steps": 5, "dropout": 0.0, "report_to": "none", "skip_bad_files": True,
              "dataloader_pin_memory": False}
    argv = ["--train_file", "x.csv", "--output_dir", str(tmp_path / "o"), "--target_columns", "pesq", "stoi", "sdi",
            "--method", "scratch", "--num_train_epochs", "2", "--eval_strategy", "steps", "--eval_steps", "5",
            "--load_best_model_at_end", "true", "--metric_for_best_model", "lcc", "--save_strategy", "steps",
            "--save_steps", "5", "--dropout", "0", "--report_to", "none", "--skip_bad_files",
            "--dataloader_pin_memory", "false"]
    from_values, from_argv = recipe.training_arguments(values), recipe.parse_arguments(argv)
    assert from_values[:2] == from_argv[:2]
    assert from_values[2].to_dict() == from_argv[2].to_dict()
    with pytest.raises(ValueError, match="dropout"):
        recipe.training_arguments({**values, "dropout": 1.5})
