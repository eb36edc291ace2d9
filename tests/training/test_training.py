"""MPL stage 2: the Trainer (accumulation, resume, bf16, metrics, SSL cache), train.py's methods, and DDP."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from transformers import EvalPrediction, TrainerCallback, TrainingArguments

from modeling_mtqnet.training import recipe as train
from modeling_mtqnet import MTQNetConfig, MTQNetFeatureExtractor, MTQNetForSpeechQualityAssessment
from modeling_mtqnet.pretrained import SHIPPED_TEACHER, pretrained_path
from modeling_mtqnet.training.data import SpeechQualityCollator, load_speech_dataset, prepare_dataset
from modeling_mtqnet.training.features_cache import cache_ssl_features
from modeling_mtqnet.training.reporting import parse_results_table
from modeling_mtqnet.training.trainer import MTQNetTrainer, make_compute_metrics
from tests.helpers import build_model, write_corpus

REPO = Path(__file__).resolve().parents[2]
TARGETS = ["s_mos", "n_mos", "g_mos"]
PSEUDO = ["pesq", "stoi", "sdi"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("training_corpus")
    return {"train": write_corpus(folder, 16, seed=1), "test": write_corpus(folder, 6, seed=2, name="test.csv")}


def prepared(manifest, config, pseudo=True):
    extractor = MTQNetFeatureExtractor.from_model_config(config)
    ranges = {**dict(zip(config.target_names, config.target_ranges)),
              **dict(zip(config.auxiliary_target_names, config.auxiliary_target_ranges))}
    return prepare_dataset(load_speech_dataset(manifest, "path"), extractor, audio_column="path",
                           target_columns=TARGETS, pseudo_label_columns=PSEUDO if pseudo else [],
                           ranges=ranges).dataset


def arguments(output_dir, **overrides) -> TrainingArguments:
    values = dict(output_dir=str(output_dir), per_device_train_batch_size=4, learning_rate=3e-3, max_steps=4,
                  lr_scheduler_type="constant", report_to="none", save_strategy="no", logging_steps=1, use_cpu=True,
                  seed=0, data_seed=0, remove_unused_columns=False, label_names=["labels", "pseudo_labels"],
                  disable_tqdm=True, dataloader_num_workers=0)
    values.update(overrides)
    return TrainingArguments(**values)


def make_trainer(model, dataset, output_dir, labelled_batch_share=None, **overrides) -> MTQNetTrainer:
    return MTQNetTrainer(model=model, args=arguments(output_dir, **overrides), train_dataset=dataset,
                         eval_dataset=dataset, data_collator=SpeechQualityCollator(),
                         compute_metrics=make_compute_metrics(model.config.target_names),
                         labelled_batch_share=labelled_batch_share)


def run_train(tmp_path, name, *extra, corpus) -> Path:
    output_dir = tmp_path / name
    train.main([
        "--train_file", str(corpus["train"]), "--test_file", str(corpus["test"]), "--output_dir", str(output_dir),
        "--preset", "tiny", "--ssl_model", "none", "--max_steps", "2", "--per_device_train_batch_size", "4",
        "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true", *extra,
    ])
    return output_dir


def test_metrics_match_scipy():
    rng = np.random.default_rng(0)
    true = rng.uniform(1, 5, size=(20, 3))
    predicted = true + rng.normal(0, 0.5, size=(20, 3)) + np.array([1.0, 0.0, -1.0])  # biased on two targets
    true[3, 1] = np.nan  # a missing label is left out
    metrics = make_compute_metrics(TARGETS)(EvalPrediction(predictions=(predicted,), label_ids=(true,)))
    for k, name in enumerate(TARGETS):
        keep = ~np.isnan(true[:, k])
        assert metrics[f"{name}_lcc"] == pytest.approx(stats.pearsonr(predicted[keep, k], true[keep, k])[0])
        assert metrics[f"{name}_srcc"] == pytest.approx(stats.spearmanr(predicted[keep, k], true[keep, k])[0])
        assert metrics[f"{name}_mse"] == pytest.approx(np.mean((predicted[keep, k] - true[keep, k]) ** 2))
        assert metrics[f"{name}_bias"] == pytest.approx(np.mean(predicted[keep, k] - true[keep, k]))
    assert metrics["s_mos_bias"] > 0.5 and metrics["g_mos_bias"] < -0.5  # the sign says which way it is off
    assert "bias" not in metrics  # differently scaled targets' biases are not averaged
    assert metrics["lcc"] == pytest.approx(np.mean([metrics[f"{n}_lcc"] for n in TARGETS]))


def test_gradient_accumulation_equals_one_large_batch(corpus, tmp_path):
    """2 micro-batches of 2 == 1 batch of 4, even when the micro-batches hold different numbers of labels."""
    config = build_model(ssl_config=None).config
    dataset = prepared(corpus["train"], config).select(range(4))
    labels = [list(row) for row in dataset["labels"]]
    labels[0] = [math.nan, labels[0][1], math.nan]  # uneven label counts across the two micro-batches
    labels[1] = [math.nan, labels[1][1], labels[1][2]]
    dataset = dataset.remove_columns("labels").add_column("labels", labels)

    def after_one_step(batch_size, accumulation):
        model = build_model(seed=0, ssl_config=None, dropout=0.0)
        trainer = make_trainer(model, dataset, tmp_path / f"ga{accumulation}", per_device_train_batch_size=batch_size,
                               gradient_accumulation_steps=accumulation, max_steps=1, optim="sgd", learning_rate=0.5,
                               max_grad_norm=0.0)
        trainer.train()
        loss = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
        return {n: p.detach().clone() for n, p in model.named_parameters()}, loss

    large, large_loss = after_one_step(4, 1)
    accumulated, accumulated_loss = after_one_step(2, 2)
    assert accumulated_loss == pytest.approx(large_loss, rel=1e-4)
    initial = dict(build_model(seed=0, ssl_config=None, dropout=0.0).named_parameters())
    moved = 0
    for name, value in large.items():
        assert torch.allclose(accumulated[name], value, atol=1e-6, rtol=1e-4), name
        moved += int(not torch.equal(value, initial[name]))
    assert moved > 10  # the step really changed the weights


def test_loss_decreases_and_a_tiny_model_overfits_eight_clips(corpus, tmp_path):
    config = build_model(ssl_config=None).config
    dataset = prepared(corpus["train"], config).select(range(8))
    torch.manual_seed(0)
    model = MTQNetForSpeechQualityAssessment(
        MTQNetConfig.from_preset("tiny", ssl_config=None, dropout=0.0, cnn_channels=[4, 8, 8, 8],
                                 lstm_hidden_size=16, dense_size=16))
    trainer = make_trainer(model, dataset, tmp_path / "overfit", max_steps=120, per_device_train_batch_size=8,
                           learning_rate=1e-2, logging_steps=10)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < 0.3 * losses[0]
    assert after["eval_loss"] < 0.3 * before["eval_loss"]
    assert after["eval_s_mos_lcc"] > 0.9 and after["eval_mse"] < 0.2, after
    assert {"loss_superv", "loss_semi", "loss_s_mos", "loss_pesq"} <= set(trainer.state.log_history[0])


def test_resume_continues_steps_and_optimizer_state(corpus, tmp_path):
    config = build_model(ssl_config=None).config
    dataset = prepared(corpus["train"], config)

    class KillAfterTwoSteps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                control.should_training_stop = True  # as if the process died right after its step-2 checkpoint

    def trained(resume=None, folder="run", kill=False):
        model = build_model(seed=0, ssl_config=None, dropout=0.0)
        trainer = make_trainer(model, dataset, tmp_path / folder, max_steps=4, save_strategy="steps",
                               save_steps=2, learning_rate=1e-3, lr_scheduler_type="linear")
        if kill:
            trainer.add_callback(KillAfterTwoSteps())
        trainer.train(resume_from_checkpoint=resume)
        return trainer, model

    straight, straight_model = trained(folder="straight")
    killed, _ = trained(folder="killed", kill=True)
    assert killed.state.global_step == 2 and not (tmp_path / "killed" / "checkpoint-4").exists()
    checkpoint = tmp_path / "killed" / "checkpoint-2"
    assert (checkpoint / "optimizer.pt").exists() and (checkpoint / "model.safetensors").exists()
    resumed, resumed_model = trained(resume=str(checkpoint), folder="killed")
    assert resumed.state.global_step == 4
    step_counts = {float(state["step"]) for state in resumed.optimizer.state.values()}
    assert step_counts == {4.0}  # Adam's step count continued from the checkpoint's 2
    for (name, value), other in zip(straight_model.named_parameters(), resumed_model.parameters()):
        assert torch.allclose(value, other, atol=1e-5), name


def test_bf16_steps_on_cpu(corpus, tmp_path):
    config = build_model(ssl_config=None).config
    dataset = prepared(corpus["train"], config).select(range(8))
    torch.manual_seed(0)
    model = MTQNetForSpeechQualityAssessment(MTQNetConfig.from_preset("tiny", ssl_config=None, dropout=0.0))
    trainer = make_trainer(model, dataset, tmp_path / "bf16", bf16=True, max_steps=30, per_device_train_batch_size=8,
                           learning_rate=1e-2, logging_steps=5)
    assert trainer.accelerator.mixed_precision == "bf16"
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0]


def test_frozen_ssl_features_are_cached_and_give_the_same_scores(corpus):
    model = build_model(freeze_ssl=True)
    dataset = prepared(corpus["train"], model.config).select(range(3))
    cached = cache_ssl_features(dataset, model)
    batch = SpeechQualityCollator()([cached[i] for i in range(3)])
    assert batch["ssl_hidden_states"].shape[-1] == model.config.ssl_config.hidden_size
    calls = []
    hook = model.mtqnet.ssl_encoder.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        from_cache = model(**batch).logits
        assert calls == []  # the encoder did not run
        without = model(input_values=batch["input_values"], attention_mask=batch["attention_mask"]).logits
    hook.remove()
    assert torch.allclose(from_cache, without, atol=1e-5)
    with pytest.raises(ValueError, match="frozen"):
        cache_ssl_features(dataset, build_model())


def test_ssl_learning_rate_gets_its_own_parameter_group(corpus, tmp_path):
    model = build_model()
    dataset = prepared(corpus["train"], model.config).select(range(4))
    trainer = MTQNetTrainer(model=model, args=arguments(tmp_path / "lr"), train_dataset=dataset,
                            data_collator=SpeechQualityCollator(), ssl_learning_rate=1e-5)
    optimizer = trainer.create_optimizer()
    rates = sorted(group["lr"] for group in optimizer.param_groups)
    assert rates == [1e-5, 3e-3]
    ssl_group = next(g for g in optimizer.param_groups if g["lr"] == 1e-5)
    ssl_ids = {id(p) for p in model.mtqnet.ssl_encoder.parameters() if p.requires_grad}
    assert {id(p) for p in ssl_group["params"]} == ssl_ids


def test_early_stopping_stops_when_the_metric_does_not_improve(corpus, tmp_path):
    output_dir = run_train(tmp_path, "early", "--method", "scratch", "--max_steps", "40", "--learning_rate", "0",
                           "--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "steps",
                           "--save_steps", "1", "--load_best_model_at_end", "true", "--metric_for_best_model", "loss",
                           "--early_stopping_patience", "2", corpus=corpus)
    state = json.loads(next(output_dir.glob("checkpoint-*/trainer_state.json")).read_text())
    assert state["global_step"] <= 4


def check_outputs(output_dir: Path, expect_auxiliary: bool = False) -> dict:
    names = {p.name for p in output_dir.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "eval_results.json", "predictions.csv",
            "results.md", "scatter_s_mos.png", "modeling_mtqnet.py"} <= names
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert {"eval_loss", "eval_s_mos_lcc", "test_g_mos_mse", "test_n_mos_srcc"} <= set(results)
    table = parse_results_table((output_dir / "results.md").read_text())
    assert len(table) == 2 and all(set(row) >= {"S-MOS_lcc", "G-MOS_mse"} for row in table.values())
    with open(output_dir / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and all(math.isfinite(float(r["s_mos_pred"])) for r in rows)
    config = json.loads((output_dir / "config.json").read_text())
    assert bool(config["auxiliary_target_names"]) == expect_auxiliary
    return results


def test_methods_end_to_end(corpus, tmp_path):
    """The paper's four set-ups: scratch, MPL, and a teacher for KT and MPL+KT."""
    check_outputs(run_train(tmp_path, "scratch", "--method", "scratch", corpus=corpus))
    check_outputs(run_train(tmp_path, "mpl", "--method", "mpl", "--keep_auxiliary_heads", "true", corpus=corpus),
                  expect_auxiliary=True)
    teacher = run_train(tmp_path, "teacher", "--method", "scratch", "--target_columns", "pesq", "stoi", "sdi",
                        "--max_steps", "3", corpus=corpus)
    assert json.loads((teacher / "config.json").read_text())["target_names"] == ["pesq", "stoi", "sdi"]
    kt = run_train(tmp_path, "kt", "--method", "kt", "--teacher", str(teacher), "--learning_rate", "0",
                   corpus=corpus)
    check_outputs(kt)
    student = MTQNetForSpeechQualityAssessment.from_pretrained(kt)
    teacher_model = MTQNetForSpeechQualityAssessment.from_pretrained(teacher)
    assert student.config.target_names == TARGETS
    for name, value in teacher_model.mtqnet.state_dict().items():  # lr 0: the trunk is exactly the teacher's
        assert torch.equal(student.mtqnet.state_dict()[name], value), name
    check_outputs(run_train(tmp_path, "mpl_kt", "--method", "mpl_kt", "--teacher", str(teacher), corpus=corpus))


def test_a_method_without_pseudo_labels_leaves_out_clips_without_primary_labels(corpus, tmp_path, caplog):
    rows = list(csv.DictReader(open(corpus["train"])))
    for row in rows:
        row["path"] = str(Path(corpus["train"]).parent / row["path"])
    for row in rows[:6]:  # pseudo labels only, as in a pooled MPL table
        row.update(s_mos="", n_mos="", g_mos="")
    pooled = tmp_path / "pooled.csv"
    with open(pooled, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with caplog.at_level(logging.INFO, logger="mtqnet.train"):
        run_train(tmp_path, "scratch_pooled", "--method", "scratch", "--validation_split", "0.2",
                  corpus={**corpus, "train": pooled})
    assert "train: 6 clip(s) have no primary label; --method scratch learns from primary labels only" in caplog.text
    assert "8 train / 2 validation clips" in caplog.text  # the 10 labelled clips, split 80 / 20
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mtqnet.train"):  # MPL keeps them: their pseudo labels train it
        run_train(tmp_path, "mpl_pooled", "--method", "mpl", "--validation_split", "0.2",
                  corpus={**corpus, "train": pooled})
    assert "no primary label" not in caplog.text and "12 train / 4 validation clips" in caplog.text


def test_train_with_frozen_ssl_uses_the_cache(corpus, tmp_path):
    output_dir = tmp_path / "frozen"
    train.main(["--train_file", str(corpus["train"]), "--output_dir", str(output_dir), "--preset", "tiny",
                "--freeze_ssl", "true", "--max_steps", "2", "--report_to", "none", "--use_cpu", "true",
                "--disable_tqdm", "true", "--save_strategy", "no", "--method", "scratch"])
    assert MTQNetForSpeechQualityAssessment.from_pretrained(output_dir).config.freeze_ssl


def test_arguments_from_a_json_file_and_bad_choices(corpus, tmp_path):
    config_file = tmp_path / "args.json"
    config_file.write_text(json.dumps({"train_file": str(corpus["train"]), "output_dir": str(tmp_path / "o"),
                                       "method": "kt", "preset": "tiny"}))
    with pytest.raises(ValueError, match="needs --teacher"):
        train.parse_arguments([str(config_file)])
    with pytest.raises(ValueError, match="--method must be one of"):
        train.parse_arguments(["--train_file", "x.csv", "--output_dir", "o", "--method", "semi"])
    model_args, data_args, training_args = train.parse_arguments(
        ["--train_file", "x.csv", "--output_dir", "o", "--bf16", "true"])
    assert training_args.use_cpu == (not torch.cuda.is_available())
    assert training_args.remove_unused_columns is False and data_args.pseudo_label_columns == PSEUDO
    assert data_args.labelled_batch_share == 0.5  # MPL's measured default: at least half of the draws labelled
    for bad in ("1", "-0.1"):
        with pytest.raises(ValueError, match="--labelled_batch_share must be at least 0 and below 1"):
            train.parse_arguments(["--train_file", "x.csv", "--output_dir", "o", "--labelled_batch_share", bad])


def test_default_method_starts_from_the_shipped_teacher_when_the_student_can_take_its_trunk(tmp_path):
    def chosen(*extra):
        model_args, _, _ = train.parse_arguments(["--train_file", "x.csv", "--output_dir", "o", *extra])
        return model_args.method, model_args.teacher

    shipped = str(pretrained_path(SHIPPED_TEACHER))
    # The study on the encoder: the teacher's trunk pays, its pseudo labels did not (KT >= MPL + KT at every size).
    assert chosen() == ("kt", shipped)
    assert chosen("--ssl_model", "distillmos") == ("kt", shipped)  # the preset's own encoder, named
    assert chosen("--method", "mpl_kt") == ("mpl_kt", shipped)
    assert chosen("--teacher", str(tmp_path)) == ("kt", str(tmp_path))
    # Students built unlike the shipped trunk, or continuing a saved model, train on their primary labels.
    assert chosen("--ssl_model", "none") == ("scratch", None)
    assert chosen("--preset", "small") == ("scratch", None)
    assert chosen("--preset", "tiny") == ("scratch", None)
    assert chosen("--ssl_model", "microsoft/wavlm-base-plus") == ("scratch", None)
    assert chosen("--fusion_mode", "time") == ("scratch", None)
    assert chosen("--model_name_or_path", "mtqnet/small-p835") == ("scratch", None)
    assert chosen("--method", "mpl", "--preset", "tiny") == ("mpl", None)
    with pytest.raises(ValueError, match="needs --teacher TEACHER_DIR"):
        chosen("--method", "mpl_kt", "--preset", "tiny")
    # A saved model continued has its own trunk: a teacher's would be silently ignored, so asking for both is refused.
    for method in ("kt", "mpl_kt"):
        for extra in ([], ["--teacher", str(tmp_path)]):
            with pytest.raises(ValueError, match=f"--method {method} starts from a teacher's trunk and "
                                                 "--model_name_or_path continues a saved model"):
                chosen("--method", method, "--model_name_or_path", "mtqnet/small-p835", *extra)


def test_dropout_option_overrides_the_trunks_own(tmp_path):
    def dropout_of(*extra):
        model_args, data_args, _ = train.parse_arguments(["--train_file", "x.csv", "--output_dir", "o", *extra])
        return train.build_model(model_args, data_args).config.dropout

    assert dropout_of("--preset", "tiny") == MTQNetConfig.from_preset("tiny").dropout == 0.3  # not given: the preset's
    assert dropout_of("--preset", "tiny", "--dropout", "0.1") == 0.1
    teacher = pretrained_path(SHIPPED_TEACHER)
    assert dropout_of("--method", "kt", "--dropout", "0.2") == 0.2  # over the teacher's trunk
    assert dropout_of("--method", "kt") == MTQNetConfig.from_pretrained(teacher).dropout
    build_model(dropout=0.3).save_pretrained(tmp_path / "saved")
    assert dropout_of("--model_name_or_path", str(tmp_path / "saved"), "--dropout", "0.0") == 0.0
    for bad in ("1", "-0.1"):
        with pytest.raises(ValueError, match="--dropout must be at least 0 and below 1"):
            train.parse_arguments(["--train_file", "x.csv", "--output_dir", "o", "--dropout", bad])


def test_default_training_takes_the_shipped_teachers_trunk(corpus, tmp_path):
    output_dir = tmp_path / "default"
    train.main(["--train_file", str(corpus["train"]), "--output_dir", str(output_dir), "--max_steps", "1",
                "--learning_rate", "0", "--per_device_train_batch_size", "4", "--report_to", "none",
                "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true"])
    student = MTQNetForSpeechQualityAssessment.from_pretrained(output_dir)
    teacher = MTQNetForSpeechQualityAssessment.from_pretrained(pretrained_path(SHIPPED_TEACHER))
    assert student.config.target_names == TARGETS and not student.config.auxiliary_target_names
    assert not student.config.trained_auxiliary_target_names  # KT: no pseudo-label heads were trained
    assert "# MTQ-Net results (kt," in (output_dir / "results.md").read_text()
    for name, value in teacher.mtqnet.state_dict().items():  # learning rate 0: exactly the teacher's trunk
        torch.testing.assert_close(student.mtqnet.state_dict()[name], value, rtol=0, atol=0)


def test_a_continued_model_says_so_in_results_and_card(corpus, tmp_path):
    from modeling_mtqnet.sharing.model_card import CardOptions, render_card

    saved = tmp_path / "saved"
    build_model(ssl_config=None).save_pretrained(saved)
    output_dir = tmp_path / "continued"
    train.main(["--train_file", str(corpus["train"]), "--output_dir", str(output_dir), "--model_name_or_path",
                str(saved), "--max_steps", "1", "--per_device_train_batch_size", "4", "--report_to", "none",
                "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true"])
    results = (output_dir / "results.md").read_text()
    assert results.startswith("# MTQ-Net results (scratch,") and f"Continued from: {saved}\n" in results
    card = render_card(output_dir, CardOptions(repo_id="tester/continued")).text
    assert f"`scratch`: trained on the primary labels only, continuing the saved MTQ-Net `{saved}`" in card
    assert "from scratch" not in card


def test_a_run_leaves_no_datasets_files_behind(corpus, tmp_path, monkeypatch):
    import datasets

    # Every run's maps get new fingerprints, so files left in the datasets cache would only pile up (1.6 GB a run for
    # a 2,000-clip pool on the encoder): the run keeps them in a folder of its own and removes it at its end.
    cache_root = tmp_path / "datasets_cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache_root)
    seen = []
    load = train.load_datasets

    def load_and_look(*args, **kwargs):
        loaded = load(*args, **kwargs)
        seen.extend(Path(f["filename"]) for split in loaded if split is not None for f in split.cache_files)
        return loaded

    monkeypatch.setattr(train, "load_datasets", load_and_look)
    for run in ("first", "second"):
        train.main(["--train_file", str(corpus["train"]), "--test_file", str(corpus["test"]), "--output_dir",
                    str(tmp_path / run), "--preset", "tiny", "--ssl_model", "none", "--max_steps", "1",
                    "--per_device_train_batch_size", "4", "--report_to", "none", "--save_strategy", "no",
                    "--disable_tqdm", "true", "--use_cpu", "true"])
        assert (tmp_path / run / "model.safetensors").is_file()
    assert seen and all(path.is_relative_to(cache_root) and path.parent != cache_root for path in seen)
    assert not any(path.exists() for path in seen)  # the decoded clips of both runs are gone
    assert not list(cache_root.rglob("*.arrow")) and not list(cache_root.glob("mtqnet-run-*"))


def test_help_documents_the_options():
    completed = subprocess.run([sys.executable, str(REPO / "train.py"), "--help"], capture_output=True, text=True,
                               cwd=REPO, timeout=120)
    assert completed.returncode == 0
    for option in ("--train_file", "--method", "--teacher", "--pseudo_label_columns", "--huber_delta", "--alpha",
                   "--freeze_ssl", "--ssl_model", "--skip_bad_files", "--max_steps", "--bf16", "--dropout"):
        assert option in completed.stdout
    # The defaults shown are the real ones: the recipe's schedule, not TrainingArguments' 5e-05 / linear / 0.
    text = " ".join(completed.stdout.split())
    for shown in ("(default: 0.001)", "(default: cosine)", "(the recipe's: 5%) (default: 0.05)"):
        assert shown in text
    assert "(default: None)" not in text  # options chosen later (--method, --teacher) say how in their own help


def test_two_process_ddp_on_cpu(corpus, tmp_path):
    output_dir = tmp_path / "ddp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         str(REPO / "train.py"), "--train_file", str(corpus["train"]), "--output_dir", str(output_dir),
         "--preset", "tiny", "--ssl_model", "none", "--method", "mpl", "--max_steps", "2", "--report_to", "none",
         "--use_cpu", "true", "--save_strategy", "no", "--disable_tqdm", "true", "--ddp_backend", "gloo"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=400,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert (output_dir / "model.safetensors").exists()
    state = MTQNetForSpeechQualityAssessment.from_pretrained(output_dir)
    assert state.config.target_names == TARGETS
    assert "Training on 2 process(es)" in completed.stderr


def test_labelled_batch_share_draws_labelled_clips_at_the_asked_share(corpus, tmp_path):
    """MPL with few labelled clips: `labelled_batch_share` makes the sampler draw them at that share (seeded); it is a
    floor, so data already labelled at that share or more, or a share of 0, keeps the natural mix."""
    from modeling_mtqnet.training.data import has_primary_labels
    from modeling_mtqnet.training.trainer import labelled_share_weights

    config = MTQNetConfig.from_preset("tiny", ssl_config=None, auxiliary_target_names=PSEUDO)
    dataset = prepared(corpus["train"], config)
    labels = np.asarray(dataset["labels"], dtype=np.float64)
    labels[4:] = np.nan  # 4 of 16 clips keep their primary labels
    dataset = dataset.remove_columns("labels").add_column("labels", labels.tolist())
    labelled = has_primary_labels(dataset)
    assert labelled.tolist() == [True] * 4 + [False] * 12
    weights = labelled_share_weights(labelled, 0.5)
    assert math.isclose(float(weights[labelled].sum()), 0.5) and math.isclose(float(weights.sum()), 1.0)
    assert labelled_share_weights(np.ones(5, bool), 0.5) is None  # nothing to rebalance
    assert labelled_share_weights(labelled, 0.25) is None  # 4 of 16 already labelled: the natural mix is kept
    assert labelled_share_weights(labelled, 0.0) is None
    assert labelled_share_weights(labelled, 0.3) is not None
    model = MTQNetForSpeechQualityAssessment(config)
    trainer = make_trainer(model, dataset, tmp_path / "share", labelled_batch_share=0.5)
    draws = [list(trainer._get_train_sampler()) for _ in range(2)]
    assert draws[0] == draws[1]  # seeded
    assert len(draws[0]) == len(dataset)
    sampler = torch.utils.data.WeightedRandomSampler(weights, num_samples=4000, replacement=True,
                                                     generator=torch.Generator().manual_seed(0))
    assert abs(np.mean(labelled[np.fromiter(sampler, int)]) - 0.5) < 0.03
    for plain in (make_trainer(model, dataset, tmp_path / "plain"),
                  make_trainer(model, dataset, tmp_path / "natural", labelled_batch_share=0.0)):
        assert not isinstance(plain._get_train_sampler(), torch.utils.data.WeightedRandomSampler)
    with pytest.raises(ValueError, match="at least 0 and below 1"):
        make_trainer(model, dataset, tmp_path / "bad", labelled_batch_share=1.0)


def shuffle_column(manifest: Path, column: str, seed: int) -> None:
    """Permute one label column of a manifest across its clips (seeded): labels unrelated to the audio."""
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row, value in zip(rows, np.random.default_rng(seed).permutation([row[column] for row in rows])):
        row[column] = value
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_small_preset_with_only_the_required_arguments_learns(tmp_path, caplog):
    """`mtqnet train` defaults to the recipe's schedule: a `small` student given only --train_file and --output_dir
    learns labels that follow each clip's noise level (validation LCC 0.995-0.997 when written). With TrainingArguments'
    own defaults (5e-5, linear decay, no warm-up) the same run ended at S-MOS 0.20 and G-MOS -0.23."""
    manifest = write_corpus(tmp_path, 240, seed=3)
    with caplog.at_level(logging.WARNING, logger="mtqnet.train"):
        results = train.main(["--train_file", str(manifest), "--output_dir", str(tmp_path / "run")])
    for target in TARGETS:
        assert results[f"eval_{target}_lcc"] > 0.8, results
    assert "did not learn" not in caplog.text
    assert "did not learn" not in (tmp_path / "run" / "results.md").read_text()


def test_a_target_with_unrelated_labels_is_named_in_a_warning(tmp_path, caplog):
    """G-MOS labels shuffled across clips (in training and validation) cannot be learned: the run says so in its log
    and under its results table, with the likely causes. 200 validation clips keep a chance correlation small."""
    train_file = write_corpus(tmp_path, 24, seed=4)
    validation_file = write_corpus(tmp_path, 200, seed=5, name="validation.csv")
    for manifest, seed in ((train_file, 0), (validation_file, 1)):
        shuffle_column(manifest, "g_mos", seed)
    with caplog.at_level(logging.WARNING, logger="mtqnet.train"):
        results = train.main([
            "--train_file", str(train_file), "--validation_file", str(validation_file),
            "--output_dir", str(tmp_path / "run"), "--preset", "tiny", "--ssl_model", "none", "--method", "scratch",
            "--max_steps", "10", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "50",
            "--disable_tqdm", "true"])
    assert results["eval_g_mos_lcc"] < 0.2, results
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING and "did not learn" in record.getMessage()]
    assert len(warnings) == 1 and re.search(r"G-MOS did not learn \(G-MOS LCC -?\d\.\d{3} in scratch \(validation\)",
                                            warnings[0]), warnings
    assert "too few labels" in warnings[0] and "schedule" in warnings[0] and "another scale" in warnings[0]
    report = (tmp_path / "run" / "results.md").read_text()
    assert warnings[0] in report  # the same words under the table
    assert set(parse_results_table(report)) == {"scratch (validation)"}  # the table still reads back


def test_training_looks_again_at_the_free_cores_between_steps(corpus, tmp_path, monkeypatch, caplog):
    """`FreeCoreThreadsCallback` (which `mtqnet train` adds) starts a `threads.FreeCoreWatch` with training and asks
    it after every step and evaluation batch; a changed count is logged. (The watch itself: tests/test_threads.py.)"""
    from modeling_mtqnet.training import trainer as trainer_module

    looks: list[str] = []

    class RecordingWatch:
        busy = 1.0

        def __init__(self, every_s: float) -> None:
            looks.append(f"start every {every_s:g} s")

        def revisit(self) -> int | None:
            looks.append("look")
            return 1 if looks.count("look") == 1 else None

    monkeypatch.setattr(trainer_module, "FreeCoreWatch", RecordingWatch)
    config = build_model(ssl_config=None).config
    trainer = make_trainer(build_model(ssl_config=None), prepared(corpus["train"], config), tmp_path / "watch")
    trainer.add_callback(trainer_module.FreeCoreThreadsCallback(every_s=12.0))
    with caplog.at_level(logging.INFO, logger="mtqnet.train"):
        trainer.train()
    assert looks[0] == "start every 12 s" and looks.count("look") >= 4  # one per step (max_steps 4), at least
    assert "Other processes kept 1.0 cores busy since the last look: now 1 intra-op thread" in caplog.text
