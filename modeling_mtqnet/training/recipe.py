"""Train MTQ-Net (MPL stage 2) or a MOSA-Net teacher on a manifest, an audiofolder or a datasets folder.

Methods (the paper's four set-ups):
  scratch  primary labels only, random trunk (or --model_name_or_path's: a saved model continued)
  kt       primary labels only, trunk initialised from --teacher (knowledge transfer)
  mpl      primary labels + pseudo-label heads trained on --pseudo_label_columns (at least half of the draws are
           labelled clips: --labelled_batch_share)
  mpl_kt   both
The default follows the label-efficiency study on the encoder (studies/label_efficiency.md): kt from the shipped
teacher's trunk (mtqnet/teacher-pesq-stoi-sdi, unless --teacher names another) when the student is built like it
(--preset small-distillmos, the default, with its Distill-MOS encoder and fusion); scratch otherwise, and when
continuing a saved model (--model_name_or_path). Methods without pseudo labels leave out training clips that have no
primary label (a warning counts them).

Example (`mtqnet train` and `python train.py` are the same command):
  mtqnet train --train_file data/train.csv --test_file data/test.csv --output_dir out/mtqnet \\
      --preset small-distillmos --method mpl_kt --target_columns s_mos n_mos g_mos --pseudo_label_columns pesq stoi sdi \\
      --num_train_epochs 30 --per_device_train_batch_size 8 --bf16

The schedule defaults to the recipe every shipped model was trained with: learning rate 1e-3, cosine decay, 5%
warm-up (training/arguments.py); --learning_rate, --lr_scheduler_type and --warmup_steps change it. A target whose
validation or test LCC ends below 0.2 is named in a warning, in the log and under the table in results.md.
A teacher (MOSA-Net) is this command with --method scratch, --target_columns pesq stoi sdi and no pseudo labels.
Arguments may also come from a .json or .yaml file given as the only argument. Every TrainingArguments option
(--max_steps, --eval_strategy, --gradient_accumulation_steps, --resume_from_checkpoint, ...) is accepted.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np
import torch
import transformers
from transformers import (
    AutoConfig,
    EarlyStoppingCallback,
    HfArgumentParser,
    TrainingArguments,
    set_seed,
)

from ..model.configuration_mtqnet import PRESETS, MTQNetConfig
from ..model.feature_extraction_mtqnet import MTQNetFeatureExtractor
from ..model.modeling_mtqnet import MTQNetForSpeechQualityAssessment
from ..pretrained import (
    ENCODER_NAMES,
    PRESET_SSL_MODELS,
    SHIPPED_TEACHER,
    SHIPPED_TEACHER_PRESET,
    resolve_model,
    resolve_ssl_model,
    shipped_teacher_fits,
)
from ..vocabulary import (
    AUDIO_COLUMN,
    CONTINUED_FROM_LINE,
    METHODS,
    PRIMARY_TARGETS,
    PSEUDO_LABEL_METHODS,
    PSEUDO_LABEL_TARGETS,
    TEACHER_TRUNK_METHODS,
)
from .arguments import DefaultsHelpFormatter, MTQNetTrainingArguments
from .data import (
    AUDIO_ID_COLUMN,
    RandomCrop,
    SpeechQualityCollator,
    duplicate_clips,
    load_speech_dataset,
    prepare_dataset,
    run_datasets_cache,
    split_train_validation,
    without_unlabelled,
)
from .features_cache import DEFAULT_SSL_CACHE_DIR, cache_ssl_features
from .reporting import results_table, scatter_plots, weak_target_note, weak_targets, write_predictions_csv
from .trainer import DEFAULT_LABELLED_BATCH_SHARE, FreeCoreThreadsCallback, MTQNetTrainer, make_compute_metrics

logger = logging.getLogger("mtqnet.train")


#: `mtqnet train` arguments (as `training_arguments` takes them) that keep the checkpoint with the best validation
#: LCC (mean over the primary targets).
KEEP_BEST_VALIDATION_LCC: Mapping[str, Any] = MappingProxyType(
    {"load_best_model_at_end": True, "metric_for_best_model": "lcc", "greater_is_better": True})


@dataclass
class DataArguments:
    """Where the data is and which columns hold what."""

    train_file: str = field(metadata={"help": "CSV/JSONL manifest, audiofolder, save_to_disk folder or Hub dataset"})
    validation_file: str | None = field(default=None, metadata={"help": "as train_file; default: 10%% of train"})
    test_file: str | None = field(default=None, metadata={"help": "as train_file; scored into predictions.csv"})
    audio_column: str = field(default=AUDIO_COLUMN, metadata={"help": "audio path (relative to the manifest) or Audio"})
    target_columns: list[str] = field(default_factory=lambda: list(PRIMARY_TARGETS),
                                      metadata={"help": "primary label columns"})
    pseudo_label_columns: list[str] = field(default_factory=lambda: list(PSEUDO_LABEL_TARGETS),
                                            metadata={"help": "pseudo-label columns (methods mpl, mpl_kt)"})
    validation_split: float = field(default=0.1, metadata={"help": "fraction held out when no validation_file"})
    group_column: str | None = field(default=None, metadata={
        "help": "column whose values are held out whole by the validation split, e.g. a speaker or source "
                "recording (default: the clip, so duplicated rows stay on one side)"})
    max_train_duration_s: float | None = field(default=None,
                                               metadata={"help": "randomly crop longer training clips (seeded)"})
    skip_bad_files: bool = field(default=False, metadata={"help": "skip and report unusable clips instead of failing"})
    labelled_batch_share: float = field(default=DEFAULT_LABELLED_BATCH_SHARE, metadata={
        "help": "mpl / mpl_kt: when fewer training clips than this share carry primary labels, draw clips (with "
                "replacement, seeded) so that this share of each epoch does; 0 keeps the natural mix. The default "
                "0.5 is measured: with few labelled clips the natural mix trains the primary heads too rarely"})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "processes for decoding audio"})
    cache_ssl_features: bool = field(default=True,
                                     metadata={"help": "with --freeze_ssl, compute SSL features once and reuse them"})
    ssl_cache_dir: str = field(default=str(DEFAULT_SSL_CACHE_DIR), metadata={
        "help": "where cached SSL features are also kept across runs, one file per clip under a hash of the encoder "
                "(MTQNET_SSL_CACHE sets the default); 'none' keeps them for this run only"})


@dataclass
class ModelArguments:
    """Which model, which method, which objective."""

    preset: str = field(default=SHIPPED_TEACHER_PRESET, metadata={
        "help": f"model size: {', '.join(PRESETS)} (the default is the shipped models' trunk, with the pretrained "
                "Distill-MOS encoder)"})
    method: str | None = field(default=None, metadata={
        "help": f"training set-up: {', '.join(METHODS)}. Default: kt when the student can take the teacher's "
                f"trunk (--teacher, or the shipped {SHIPPED_TEACHER} for --preset {SHIPPED_TEACHER_PRESET} with its "
                "own encoder), else scratch (studies/label_efficiency.md: pseudo labels did not pay on the encoder)"})
    teacher: str | None = field(default=None, metadata={
        "help": f"teacher folder or shipped short name for kt / mpl_kt (default: {SHIPPED_TEACHER}, whose trunk is "
                f"the {SHIPPED_TEACHER_PRESET} preset)"})
    model_name_or_path: str | None = field(default=None, metadata={"help": "continue from a saved MTQ-Net"})
    ssl_model: str | None = field(default=None, metadata={
        "help": "SSL encoder: 'distillmos' (the pretrained Distill-MOS encoder shipped with the package), a Hub name or "
                "a local folder; 'none' for no SSL branch (default: the preset's; small-distillmos loads distillmos)"})
    freeze_ssl: bool | None = field(default=None, metadata={
        "help": "keep the SSL encoder fixed (default: frozen for distillmos, else the preset's: fine-tuned)"})
    ssl_learning_rate: float | None = field(default=None, metadata={"help": "learning rate of a fine-tuned SSL"})
    ssl_layer: str = field(default="last", metadata={"help": "'last', 'weighted' or a layer index"})
    fusion_mode: str | None = field(default=None, metadata={"help": "'time' or 'aligned' (default: the preset's)"})
    loss_type: str = field(default="huber", metadata={"help": "huber, mse or mae"})
    huber_delta: float = field(default=1.0, metadata={"help": "Huber threshold delta"})
    dropout: float | None = field(default=None, metadata={
        "help": "dropout after the trunk's dense layer (default: the preset's, the teacher's or the saved model's); "
                "0 keeps training- and inference-time scores on one scale (see docs/pretrained.md)"})
    alpha: float = field(default=1.0, metadata={"help": "weight of the frame-level loss"})
    pseudo_label_loss_weight: float = field(default=1.0, metadata={"help": "weight of L_semi"})
    keep_auxiliary_heads: bool = field(default=False, metadata={"help": "keep pseudo-label heads in the saved model"})
    early_stopping_patience: int | None = field(default=None, metadata={"help": "evaluations without improvement"})


#: One run of `mtqnet train`: its arguments, as the recipe's three argument dataclasses hold them.
TrainingRun = tuple[ModelArguments, DataArguments, MTQNetTrainingArguments]


def argument_parser(prog: str | None = None) -> HfArgumentParser:
    # The recipe's schedule is the Trainer arguments' default (MTQNetTrainingArguments), and --help shows defaults.
    return HfArgumentParser((ModelArguments, DataArguments, MTQNetTrainingArguments), description=__doc__,
                            prog=prog, formatter_class=DefaultsHelpFormatter)


def parse_arguments(argv: list[str] | None = None, prog: str | None = None) -> TrainingRun:
    parser = argument_parser(prog)
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--bf16" in argv and "--use_cpu" not in argv and not torch.cuda.is_available():
        argv += ["--use_cpu", "true"]  # bf16 autocast on a CPU machine (TrainingArguments insists on use_cpu)
    if len(argv) == 1 and argv[0].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(argv[0])
    elif len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        model_args, data_args, training_args = parser.parse_yaml_file(argv[0])
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(argv)
    return checked_arguments(model_args, data_args, training_args)


def training_arguments(values: Mapping[str, Any]) -> TrainingRun:
    """`mtqnet train`'s arguments from field values of `ModelArguments`, `DataArguments` and
    `MTQNetTrainingArguments` (as a .json arguments file holds them), with the command line's defaults and checks.

    The one way the shipped models' builds, the demo and the benchmarks set up a training run: typed values into the
    recipe's own dataclasses, not a command line to be parsed back."""
    values = dict(values)
    if values.get("bf16") and "use_cpu" not in values and not torch.cuda.is_available():
        values["use_cpu"] = True  # as on the command line: bf16 autocast on a CPU machine
    return checked_arguments(*argument_parser().parse_dict(values))


def checked_arguments(model_args: ModelArguments, data_args: DataArguments,
                      training_args: MTQNetTrainingArguments) -> TrainingRun:
    """The parsed arguments checked, and completed where the defaults depend on each other (method, teacher)."""
    if model_args.preset not in PRESETS:
        raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {model_args.preset!r}")
    choose_method_and_teacher(model_args)
    # Shipped models by short name (`mtqnet/teacher-pesq-stoi-sdi`), offline.
    model_args.teacher = resolve_model(model_args.teacher) if model_args.teacher else model_args.teacher
    if model_args.model_name_or_path:
        model_args.model_name_or_path = resolve_model(model_args.model_name_or_path)
    if model_args.dropout is not None and not 0.0 <= model_args.dropout < 1.0:
        raise ValueError(f"--dropout must be at least 0 and below 1, got {model_args.dropout}")
    if not 0.0 <= data_args.labelled_batch_share < 1.0:  # before the data is read, not after
        raise ValueError(f"--labelled_batch_share must be at least 0 and below 1, got {data_args.labelled_batch_share}")
    # Extra label columns must reach the collator, and evaluation needs to know which inputs are labels.
    training_args.remove_unused_columns = False
    training_args.label_names = ["labels", "pseudo_labels"]
    if training_args.fp16 and not torch.cuda.is_available():
        raise ValueError("--fp16 needs a GPU; use --bf16 on a CPU")
    return model_args, data_args, training_args


def choose_method_and_teacher(model_args: ModelArguments) -> None:
    """Fill in the default `--method` and `--teacher` (in place). The default follows the label-efficiency study on the
    encoder (studies/label_efficiency.md, two draws, 50 to 800 labelled clips): starting from the shipped teacher's trunk
    (KT) was as good as or better than MPL + KT at every size, and in the demo (128 labelled clips) neither MPL nor MPL
    + KT beat scratch; the teacher's pseudo labels did not pay. So a student that can take that trunk gets `kt` with it;
    any other student, and a saved model continued, trains on its primary labels (`scratch`: on 0.1.0's trunk without
    SSL, MPL from a random trunk never beat it either)."""
    fits = shipped_teacher_fits(model_args.preset, model_args.ssl_model, model_args.fusion_mode)
    if model_args.method is None:
        if model_args.model_name_or_path:  # continuing a saved model: its own trunk, not a teacher's
            model_args.method = "scratch"
        else:
            model_args.method = "kt" if model_args.teacher or fits else "scratch"
    if model_args.method not in METHODS:
        raise ValueError(f"--method must be one of {METHODS}, got {model_args.method!r}")
    if model_args.method in TEACHER_TRUNK_METHODS and model_args.model_name_or_path:
        # Otherwise the saved model's weights would silently stand in for the teacher's trunk.
        raise ValueError(f"--method {model_args.method} starts from a teacher's trunk and --model_name_or_path "
                         "continues a saved model: give one of them (a continued model trains with --method scratch "
                         "or mpl)")
    if model_args.method in TEACHER_TRUNK_METHODS and not model_args.teacher:
        if not fits:
            raise ValueError(f"--method {model_args.method} needs --teacher TEACHER_DIR (the shipped "
                             f"{SHIPPED_TEACHER} fits only --preset {SHIPPED_TEACHER_PRESET} with its own encoder)")
        model_args.teacher = SHIPPED_TEACHER


def uses_pseudo_labels(model_args: ModelArguments) -> bool:
    return model_args.method in PSEUDO_LABEL_METHODS


def build_model(model_args: ModelArguments, data_args: DataArguments) -> MTQNetForSpeechQualityAssessment:
    """The student for the chosen method: targets from the data arguments, trunk from the preset or the teacher."""
    auxiliary = data_args.pseudo_label_columns if uses_pseudo_labels(model_args) else []
    objective = {
        "target_names": data_args.target_columns,
        "target_activations": None,
        "target_ranges": None,
        "auxiliary_target_names": auxiliary,
        "auxiliary_target_activations": None,
        "auxiliary_target_ranges": None,
        "loss_type": model_args.loss_type,
        "huber_delta": model_args.huber_delta,
        "frame_loss_weight": model_args.alpha,
        "pseudo_label_loss_weight": model_args.pseudo_label_loss_weight,
    }
    # Given, it overrides whatever the trunk comes with (preset, teacher or saved model); not given, that stands.
    chosen_dropout = {} if model_args.dropout is None else {"dropout": model_args.dropout}
    objective.update(chosen_dropout)
    if model_args.freeze_ssl is not None:
        objective["freeze_ssl"] = model_args.freeze_ssl
    if model_args.model_name_or_path:
        return MTQNetForSpeechQualityAssessment.from_pretrained(model_args.model_name_or_path, **chosen_dropout)
    ssl_layer = int(model_args.ssl_layer) if model_args.ssl_layer.lstrip("-").isdigit() else model_args.ssl_layer
    if model_args.teacher:
        trunk = MTQNetConfig.from_pretrained(model_args.teacher).to_dict()
        trunk.pop("id2label", None), trunk.pop("label2id", None), trunk.pop("auto_map", None)
        config = MTQNetConfig(**{**trunk, **objective, "ssl_layer": trunk.get("ssl_layer", ssl_layer)})
        model = MTQNetForSpeechQualityAssessment(config)
        model.load_trunk_from(model_args.teacher)
        logger.info("Trunk initialised from teacher %s (knowledge transfer)", model_args.teacher)
        return model
    overrides = {**objective, "ssl_layer": ssl_layer}
    if model_args.fusion_mode:
        overrides["fusion_mode"] = model_args.fusion_mode
    ssl_model = model_args.ssl_model or PRESET_SSL_MODELS.get(model_args.preset)
    pretrained_ssl = ssl_model not in (None, "none")
    if ssl_model in ENCODER_NAMES:
        # Distill-MOS is frozen unless asked otherwise: its pretrained features are the point (fine-tuning allowed).
        overrides.setdefault("freeze_ssl", True)
    if ssl_model == "none":
        overrides["ssl_config"] = None
    elif pretrained_ssl:
        named = ssl_model
        ssl_model = resolve_ssl_model(ssl_model)
        overrides["ssl_config"] = AutoConfig.from_pretrained(ssl_model)
        if named in ENCODER_NAMES:  # the config records the name, not this machine's folder of the package
            overrides["ssl_config"]._name_or_path = named
    model = MTQNetForSpeechQualityAssessment(MTQNetConfig.from_preset(model_args.preset, **overrides))
    if pretrained_ssl:
        model.load_ssl_weights(ssl_model)
    return model


def load_split(source: str, name: str, data_args: DataArguments, extractor: MTQNetFeatureExtractor,
               config: MTQNetConfig, pseudo_columns: list[str], keep_columns: list[str] = (),
               cache_dir: str | None = None):
    ranges = dict(zip(config.target_names, config.target_ranges))
    ranges.update(zip(config.auxiliary_target_names, config.auxiliary_target_ranges))
    prepared = prepare_dataset(
        load_speech_dataset(source, data_args.audio_column, cache_dir=cache_dir),
        extractor,
        audio_column=data_args.audio_column,
        target_columns=data_args.target_columns,
        pseudo_label_columns=pseudo_columns,
        ranges=ranges,
        skip_bad_files=data_args.skip_bad_files,
        num_proc=data_args.preprocessing_num_workers,
        source=f"{name} ({source})",
        keep_columns=keep_columns,
    )
    for audio_id, reason in prepared.skipped:
        logger.warning("Skipped %s: %s", audio_id, reason)
    if prepared.skipped:
        logger.warning("%s: skipped %d unusable clip(s), kept %d", name, len(prepared.skipped), len(prepared.dataset))
    duplicates = duplicate_clips(prepared.dataset)
    if duplicates:
        example, count = next(iter(duplicates.items()))
        logger.warning("%s: %d clip(s) appear more than once (e.g. %s, %d times): each copy counts in training, and "
                       "the validation split keeps the copies of a clip together", name, len(duplicates), example, count)
    return prepared


def load_datasets(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
                  model: MTQNetForSpeechQualityAssessment, extractor: MTQNetFeatureExtractor,
                  cache_dir: str | None = None):
    """(train, validation, test or None), checked, decoded, optionally cached (frozen SSL) or cropped (train); the
    datasets files of manifests and audiofolders in `cache_dir` (`run_datasets_cache()`)."""
    config = model.config
    pseudo_columns = data_args.pseudo_label_columns if uses_pseudo_labels(model_args) else []
    groups = [data_args.group_column] if data_args.group_column and not data_args.validation_file else []
    train = load_split(data_args.train_file, "train", data_args, extractor, config, pseudo_columns, groups,
                       cache_dir=cache_dir).dataset
    if not uses_pseudo_labels(model_args):
        train, unlabelled = without_unlabelled(train)
        if unlabelled:
            logger.warning("train: %d clip(s) have no primary label; --method %s learns from primary labels only, so "
                           "they are left out (--method mpl or mpl_kt learns from their pseudo labels)",
                           unlabelled, model_args.method)
    if data_args.validation_file:
        validation = load_split(data_args.validation_file, "validation", data_args, extractor, config,
                                pseudo_columns, cache_dir=cache_dir).dataset
    else:
        train, validation = split_train_validation(train, data_args.validation_split, training_args.seed,
                                                   data_args.group_column)
    test = load_split(data_args.test_file, "test", data_args, extractor, config, [], cache_dir=cache_dir).dataset \
        if data_args.test_file else None
    if model.mtqnet.can_cache_ssl_features and data_args.cache_ssl_features:
        ssl_cache_dir = None if data_args.ssl_cache_dir == "none" else Path(data_args.ssl_cache_dir)
        train = cache_ssl_features(train, model, cache_dir=ssl_cache_dir)
        validation = cache_ssl_features(validation, model, cache_dir=ssl_cache_dir)
        test = cache_ssl_features(test, model, cache_dir=ssl_cache_dir) if test is not None else None
        if data_args.max_train_duration_s:
            logger.warning("Random cropping is off: cached SSL features belong to whole clips")
    elif data_args.max_train_duration_s:
        crop = int(data_args.max_train_duration_s * config.sampling_rate)
        train = train.with_transform(RandomCrop(crop, seed=training_args.seed))
    return train, validation, test


def write_outputs(trainer: MTQNetTrainer, output_dir: Path, method: str, eval_metrics: dict[str, float],
                  scored_name: str, scored, continued_from: str | None = None) -> dict[str, float]:
    """predictions.csv and scatter plots for the scored set, eval_results.json and results.md (whose title names the
    method and, for a saved model continued, a `Continued from:` line its source: what a model card reads)."""
    config = trainer.accelerator.unwrap_model(trainer.model).config
    prediction = trainer.predict(scored, metric_key_prefix=scored_name)
    results, tables = dict(eval_metrics), {"validation": eval_metrics}
    if scored_name == "test":
        results.update(prediction.metrics)
        tables["test"] = prediction.metrics
    if not trainer.is_world_process_zero():
        return results
    predicted, true = np.asarray(_first(prediction.predictions)), np.asarray(_first(prediction.label_ids))
    write_predictions_csv(output_dir / "predictions.csv", list(scored[AUDIO_ID_COLUMN]), config.target_names,
                          predicted, true)
    scatter_plots(output_dir, config.target_names, predicted, true, prediction.metrics)
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in results.items()}
    (output_dir / "eval_results.json").write_text(json.dumps(clean, indent=2))
    systems = {f"{method} ({split})": metrics for split, metrics in tables.items()}
    table = results_table(systems, config.target_names)
    # Said plainly, in the log and under the table, rather than left to be spotted in the numbers.
    note = weak_target_note(weak_targets(systems, config.target_names))
    title = (f"# MTQ-Net results ({method}, {config.loss_type} delta={config.huber_delta}, "
             f"alpha={config.frame_loss_weight})\n\n"
             + (f"{CONTINUED_FROM_LINE}{continued_from}\n\n" if continued_from else "")
             + "Cells: LCC / SRCC / MSE.\n\n")
    (output_dir / "results.md").write_text(title + table + "\n" + (f"\n{note}\n" if note else ""))
    logger.info("Results:\n%s", table)
    if note:
        logger.warning(note)
    return results


def _first(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def main(argv: list[str] | None = None, prog: str | None = "mtqnet train") -> dict[str, float]:
    """`mtqnet train` (and the top-level `train.py`): train one model; returns its evaluation results."""
    return train(parse_arguments(argv, prog))


def train(run: TrainingRun) -> dict[str, float]:
    """Train one model (`mtqnet train` once its arguments are parsed); returns its evaluation results."""
    model_args, data_args, training_args = run
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)

    model = build_model(model_args, data_args)
    extractor = MTQNetFeatureExtractor.from_model_config(model.config)
    # The run's decoded clips and encoder features (GBs for a few thousand clips), removed when it ends.
    with run_datasets_cache() as cache_dir:
        train_dataset, eval_dataset, test_dataset = load_datasets(
            model_args, data_args, training_args, model, extractor, cache_dir)
        callbacks = [FreeCoreThreadsCallback()]  # a long run looks again at the cores other processes leave free
        if model_args.early_stopping_patience:
            callbacks.append(EarlyStoppingCallback(model_args.early_stopping_patience))
        trainer = MTQNetTrainer(
            model=model,
            args=training_args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=SpeechQualityCollator(),
            processing_class=extractor,  # saved (and pushed with --push_to_hub) with every checkpoint
            compute_metrics=make_compute_metrics(model.config.target_names, model.config.auxiliary_target_names),
            callbacks=callbacks,
            ssl_learning_rate=model_args.ssl_learning_rate,
            labelled_batch_share=data_args.labelled_batch_share if uses_pseudo_labels(model_args) else None,
        )
        logger.info("Method %s%s, targets %s, pseudo labels %s", model_args.method,
                    f" (continuing {model_args.model_name_or_path})" if model_args.model_name_or_path else "",
                    model.config.target_names, model.config.auxiliary_target_names)
        logger.info("Training on %d process(es), %d train / %d validation clips", training_args.world_size,
                    len(train_dataset), len(eval_dataset))
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

        eval_metrics = trainer.evaluate()
        if not model_args.keep_auxiliary_heads:
            trainer.accelerator.unwrap_model(trainer.model).drop_auxiliary_heads()
        output_dir = Path(training_args.output_dir)
        if trainer.is_world_process_zero():
            trainer.save_model(str(output_dir))
            extractor.save_pretrained(output_dir)
        # predictions.csv and the scatter plots describe the test set, or the validation set when there is none.
        scored = ("test", test_dataset) if test_dataset is not None else ("validation", eval_dataset)
        return write_outputs(trainer, output_dir, model_args.method, eval_metrics, *scored,
                             continued_from=model_args.model_name_or_path)


def train_resuming(run: TrainingRun) -> dict[str, float]:
    """`train(run)`, resumed from the last checkpoint in its output_dir when an earlier run was cut off."""
    from transformers.trainer_utils import get_last_checkpoint

    training_args = run[2]
    output_dir = Path(training_args.output_dir)
    if output_dir.is_dir() and (last := get_last_checkpoint(str(output_dir))):
        print(f"Resuming {output_dir.name} from {Path(last).name}")
        training_args.resume_from_checkpoint = last
    return train(run)


if __name__ == "__main__":
    main()
