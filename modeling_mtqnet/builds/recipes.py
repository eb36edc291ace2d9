"""The recipes of the shipped models' builds (`mtqnet build-pretrained`): every field is recorded in the model's
build_info.json and in its work folder's state.json, so these values are what a rebuild must reproduce."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..pretrained import SHIPPED_TEACHER
from ..training.arguments import RECIPE_LEARNING_RATE
from ..training.trainer import DEFAULT_LABELLED_BATCH_SHARE


@dataclasses.dataclass(frozen=True)
class TeacherRecipe:
    """What the shipped teacher is built with (every field is recorded in its build_info.json).

    Attributes:
        count: corpus clips (train + test).
        max_duration_s: clean clips longer than this are cropped (random segment); the pool's are 2-8 s.
        snrs: SNRs in dB, `inf` = no noise (clean or system-only clips).
        test_noises / test_systems: held out: only in the test part, never in training.
        test_fraction: share of clips (and of speakers) in the test part.
        level_jitter_db: active speech level -26 dB +- this.
        preset: model size: `small-distillmos`, the `small` CNN and BLSTM with the pretrained Distill-MOS encoder
            (frozen) as SSL branch.
        ssl_model: `mtqnet train --ssl_model`: `distillmos`, the encoder folder `mtqnet build-encoder` makes.
        train_clips: at most this many training clips drawn (seeded) from the corpus's train part, the only ones
            labelled and trained on; None: all. The frozen encoder's features of every clip are computed once (whole clips: no random
            crops), about 0.2 s a clip on 2 cores.
        dropout: dropout after the trunk's dense layer. 0: with the reference's 0.3 the heads' multiplicative
            attention saw other activations in training than at inference and the shipped SDI read +0.30 high
            (studies/teacher_diagnosis.md, "Dropout").
        epochs, batch_size, learning_rate: training schedule (cosine decay, 5% warm-up).
        select_best_epoch: keep the epoch with the best validation LCC instead of the last one. Off: validation
            holds a few whole speakers and its LCC swings by 0.1 between epochs, so it picked early, worse epochs.
        max_train_duration_s: training clips are randomly cropped to this (evaluation uses whole clips); None: whole
            clips (a cached frozen encoder needs them).
        validation_split: share of training speakers held out whole for model selection.
        seed: one seed for pool order, corpus, split and training.
    """

    count: int = 10000
    max_duration_s: float = 6.0
    snrs: tuple[float, ...] = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, math.inf)
    noises: tuple[str, ...] = ("files", "procedural")
    test_noises: tuple[str, ...] = ("music/*", "city/*Sport*", "ambience/*rain*", "brown")
    systems: tuple[str, ...] = ("all",)
    test_systems: tuple[str, ...] = ("ffmpeg_afftdn", "mp3", "clipping")
    test_fraction: float = 0.2
    level_jitter_db: float = 6.0
    preset: str = "small-distillmos"
    ssl_model: str = "distillmos"
    train_clips: int | None = 4000
    dropout: float = 0.0
    epochs: float = 4.0
    batch_size: int = 16
    learning_rate: float = RECIPE_LEARNING_RATE
    max_train_duration_s: float | None = None
    select_best_epoch: bool = False
    validation_split: float = 0.1
    seed: int = 0

    def as_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["snrs"] = [("inf" if math.isinf(v) else v) for v in self.snrs]
        return values


@dataclasses.dataclass(frozen=True)
class StudentRecipe:
    """What `mtqnet/small-p835` is built with (every field is recorded in its build_info.json).

    Attributes:
        corpus: the corpus recipe (the teacher's: same clips).
        pool: training clips drawn for the student (labelled + validation + pseudo-labelled only).
        labelled: clips of the pool with DNSMOS stand-in labels for training (all of them here; the study varies it).
        validation: clips of the pool with stand-in labels for model selection (not trained on).
        test: clips of the held-out part with stand-in labels (the card's numbers).
        teacher: the pseudo-labelling teacher (a shipped short name).
        method: `mtqnet train --method`: `mpl_kt`, the trunk started from the teacher's and its pseudo labels on the
            pool, as the label-efficiency study recommends (the first shipped weights were `mpl`, natural mix).
        labelled_batch_share: `mtqnet train --labelled_batch_share` (its default: at least half of each epoch's
            draws are labelled clips; 600 of the 1,900 training clips are).
        preset, ssl_model: `small-distillmos` with the frozen pretrained Distill-MOS encoder, as the teacher.
        steps, batch_size, learning_rate: training schedule (cosine, 5% warm-up).
        max_train_duration_s: random crops of the training clips; None: whole clips (a cached frozen encoder's
            features belong to whole clips).
        evaluations: validation passes during training (the best mean LCC is kept).
        seed: parts, training.
    """

    corpus: TeacherRecipe = TeacherRecipe()
    pool: int = 2000
    labelled: int = 600
    validation: int = 100
    test: int = 300
    teacher: str = SHIPPED_TEACHER
    method: str = "mpl_kt"
    labelled_batch_share: float = DEFAULT_LABELLED_BATCH_SHARE
    preset: str = "small-distillmos"
    ssl_model: str = "distillmos"
    steps: int = 300
    batch_size: int = 16
    learning_rate: float = RECIPE_LEARNING_RATE
    max_train_duration_s: float | None = None
    evaluations: int = 3
    seed: int = 0

    def as_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["corpus"] = self.corpus.as_json()
        return values


__all__ = ["StudentRecipe", "TeacherRecipe"]
