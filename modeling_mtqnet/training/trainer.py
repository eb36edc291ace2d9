"""MPL stage 2: a `Trainer` for MTQ-Net with the paper's objective, per-component logging and speech-quality metrics."""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from transformers import EvalPrediction, Trainer, TrainerCallback

from ..model.modeling_mtqnet import speech_quality_objective
from ..threads import REVISIT_EVERY_S, FreeCoreWatch
from .data import has_primary_labels
from .reporting import METRIC_KEYS, REPORTED_METRIC_KEYS

logger = logging.getLogger("mtqnet.train")

SPEECH_QUALITY_METRIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics", "speech_quality")
LABEL_KEYS = ("labels", "pseudo_labels")


def load_speech_quality_metric():
    """The LCC / SRCC / MSE `evaluate` module shipped in this package (loads offline)."""
    import evaluate

    return evaluate.load(SPEECH_QUALITY_METRIC)


def make_compute_metrics(target_names: list[str], auxiliary_target_names: list[str] = ()) -> Callable:
    """`compute_metrics` for the Trainer: `<target>_lcc`, `<target>_srcc`, `<target>_mse`, `<target>_bias` for every
    target, primary and auxiliary, plus the means of LCC, SRCC and MSE over the primary targets (`lcc`, `srcc`, `mse`;
    biases of differently scaled targets are not averaged)."""
    metric = load_speech_quality_metric()

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        predictions = _as_tuple(prediction.predictions)
        references = _as_tuple(prediction.label_ids)
        results: dict[str, float] = {}
        for names, predicted, true in zip((target_names, auxiliary_target_names), predictions, references):
            for k, name in enumerate(names):
                scores = metric.compute(predictions=np.asarray(predicted)[:, k], references=np.asarray(true)[:, k])
                results.update({f"{name}_{key}": scores[key] for key in REPORTED_METRIC_KEYS})
        for key in METRIC_KEYS:
            values = [results[f"{name}_{key}"] for name in target_names if not math.isnan(results[f"{name}_{key}"])]
            results[key] = float(np.mean(values)) if values else math.nan
        return results

    return compute_metrics


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


# `mtqnet train --method mpl / mpl_kt` draws at least half of its training clips from the labelled ones. Measured
# (studies/label_efficiency.md): with 200 labelled clips among 2,900 pseudo-labelled ones, the natural mix
# (7% labelled per batch) was worse than scratch on every target (about -0.08 LCC), half-labelled batches level with it.
DEFAULT_LABELLED_BATCH_SHARE = 0.5


def labelled_share_weights(labelled: np.ndarray, share: float) -> torch.Tensor | None:
    """Sampling weights giving labelled rows `share` of the draws, or None when there is no reweighting to do: every
    row or none is labelled, or labelled rows already make up at least `share` of the data (their natural share is
    kept; `share` is a floor, so 0 always keeps the natural mix)."""
    count = int(labelled.sum())
    if count in (0, labelled.size) or count >= share * labelled.size:
        return None
    weights = np.where(labelled, share / count, (1.0 - share) / (labelled.size - count))
    return torch.as_tensor(weights, dtype=torch.double)


class FreeCoreThreadsCallback(TrainerCallback):
    """Makes the free-core thread choice again while training and evaluating (`threads.FreeCoreWatch`), at most every
    `every_s` seconds. A command chooses once at start: a job started while its launcher was busy for a moment ran
    its whole 10 minutes on one thread of two. Where the user chose the count (`MTQNET_THREADS`, `OMP_NUM_THREADS`)
    it does nothing."""

    def __init__(self, every_s: float = REVISIT_EVERY_S) -> None:
        self.every_s = every_s
        self.watch: FreeCoreWatch | None = None

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self.watch = FreeCoreWatch(self.every_s)  # the first window starts with training, not with data loading

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.revisit()

    def on_prediction_step(self, args, state, control, **kwargs) -> None:
        self.revisit()

    def revisit(self) -> None:
        if self.watch is None:  # evaluating or predicting without training first
            self.watch = FreeCoreWatch(self.every_s)
        threads = self.watch.revisit()
        if threads is not None:
            logger.info("Other processes kept %.1f cores busy since the last look: now %d intra-op thread%s "
                        "(MTQNET_THREADS=N or all fixes the count)", self.watch.busy, threads,
                        "" if threads == 1 else "s")


class MTQNetTrainer(Trainer):
    """Trainer for [`MTQNetForSpeechQualityAssessment`].

    - The loss is `speech_quality_objective` (paper eq. 1-3: per target utterance + alpha x frame Huber/MSE/MAE over
      valid frames; L_superv + w x L_semi; NaN labels masked).
    - Gradient accumulation: each target's term is normalised by its number of labelled utterances over all
      micro-batches of the optimiser step, so accumulating k batches of n equals one batch of k x n.
    - Logs `loss_superv`, `loss_semi` and `loss_<target>` beside `loss`.
    - `ssl_learning_rate`: a separate learning rate for a fine-tuned SSL encoder (default: the main one).
    - `labelled_batch_share`: with pseudo labels, when labelled clips are less than this share of the data, draw
      training clips (with replacement, seeded) so that this share of each epoch carries primary labels. With few
      labelled clips among many pseudo-labelled ones, the primary heads otherwise see a labelled clip only now and
      then. None or 0 keeps the natural mix (the plain `Trainer` sampler); `mtqnet train` passes
      `DEFAULT_LABELLED_BATCH_SHARE` unless told otherwise.
    """

    loss_is_scaled_for_ga = True  # compute_loss normalises by counts over the whole accumulation window

    def __init__(self, *args: Any, ssl_learning_rate: float | None = None,
                 labelled_batch_share: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.ssl_learning_rate = ssl_learning_rate
        if labelled_batch_share is not None and not 0.0 <= labelled_batch_share < 1.0:
            raise ValueError(f"labelled_batch_share must be at least 0 and below 1, got {labelled_batch_share}")
        self.labelled_batch_share = labelled_batch_share
        self._component_sums: dict[str, float] = defaultdict(float)
        self._component_steps = 0

    # -- loss --------------------------------------------------------------------------------------------------------

    def _target_count(self) -> int:
        config = self.accelerator.unwrap_model(self.model).config
        return len(config.target_names) + len(config.auxiliary_target_names)

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | None:
        """Labelled utterances per target (primary then auxiliary) over the micro-batches of one optimiser step."""
        if not batch_samples:
            return None
        config = self.accelerator.unwrap_model(self.model).config
        counts = torch.zeros(self._target_count(), dtype=torch.long)
        sizes = (len(config.target_names), len(config.auxiliary_target_names))
        for batch in batch_samples:
            offset = 0
            for key, size in zip(LABEL_KEYS, sizes):
                if key in batch and batch[key] is not None:
                    counts[offset : offset + size] += (~torch.isnan(batch[key].float())).sum(0).cpu()
                offset += size
        counts = counts.to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            counts = self.accelerator.gather(counts).view(self.args.world_size, -1).sum(0)
        return counts

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        labels = inputs.pop("labels", None)
        pseudo_labels = inputs.pop("pseudo_labels", None)
        outputs = model(**inputs)
        config = self.accelerator.unwrap_model(model).config
        if not config.auxiliary_target_names:
            pseudo_labels = None  # e.g. scoring a set that has pseudo-label columns after the heads were dropped
        if labels is None and pseudo_labels is None:
            return (None, outputs) if return_outputs else None
        counts = num_items_in_batch if torch.is_tensor(num_items_in_batch) and num_items_in_batch.dim() == 1 else None
        loss, components = speech_quality_objective(outputs, labels, pseudo_labels, config, counts=counts)
        if counts is not None and self.args.average_tokens_across_devices and self.args.world_size > 1:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients; counts already span all ranks
        if model.training:
            for name, value in components.items():
                self._component_sums[name] += float(value)
            self._component_steps += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._component_steps:
            # Each micro-batch's component is normalised by the whole step's counts: their sum is the step's value.
            steps = max(1, self._component_steps / max(1, self.args.gradient_accumulation_steps))
            for name, total in self._component_sums.items():
                logs[name] = round(total / steps, 6)
            self._component_sums.clear()
            self._component_steps = 0
        super().log(logs, start_time)

    # -- sampling -----------------------------------------------------------------------------------------------------

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.labelled_batch_share is None or dataset is None:
            return super()._get_train_sampler(train_dataset)
        weights = labelled_share_weights(has_primary_labels(dataset), self.labelled_batch_share)
        if weights is None:
            return super()._get_train_sampler(train_dataset)
        generator = torch.Generator().manual_seed(int(self.args.data_seed if self.args.data_seed is not None
                                                      else self.args.seed))
        return torch.utils.data.WeightedRandomSampler(weights, num_samples=len(weights), replacement=True,
                                                      generator=generator)

    # -- evaluation ---------------------------------------------------------------------------------------------------

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ):
        inputs = self._prepare_inputs(inputs)
        keys = LABEL_KEYS if self.accelerator.unwrap_model(model).config.auxiliary_target_names else LABEL_KEYS[:1]
        label_tensors = tuple(inputs[key] for key in keys if inputs.get(key) is not None)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, outputs = self.compute_loss(model, dict(inputs), return_outputs=True)
        loss = loss.detach() if loss is not None else None
        if prediction_loss_only:
            return loss, None, None
        predictions = (outputs.logits,) + (
            (outputs.auxiliary_logits,) if outputs.auxiliary_logits is not None and len(label_tensors) > 1 else ()
        )
        return loss, tuple(p.float() for p in predictions), (label_tensors or None)

    # -- optimiser ----------------------------------------------------------------------------------------------------

    def create_optimizer(self, model: nn.Module | None = None):
        """AdamW (TrainingArguments' choice) with the SSL encoder in its own parameter group when
        `ssl_learning_rate` is set."""
        if self.optimizer is not None or self.ssl_learning_rate is None:
            return super().create_optimizer(model) if model is not None else super().create_optimizer()
        model = self.model
        ssl_params = [p for n, p in model.named_parameters() if ".ssl_encoder." in f".{n}" and p.requires_grad]
        ssl_ids = {id(p) for p in ssl_params}
        other_params = [p for p in model.parameters() if p.requires_grad and id(p) not in ssl_ids]
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        groups = [{"params": other_params, "weight_decay": self.args.weight_decay}]
        if ssl_params:
            groups.append({"params": ssl_params, "weight_decay": self.args.weight_decay, "lr": self.ssl_learning_rate})
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer


__all__ = ["FreeCoreThreadsCallback", "MTQNetTrainer", "make_compute_metrics",
           "labelled_share_weights", "DEFAULT_LABELLED_BATCH_SHARE",
           "load_speech_quality_metric", "SPEECH_QUALITY_METRIC"]
