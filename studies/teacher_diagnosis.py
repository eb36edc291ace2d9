"""What limits the shipped teacher (`mtqnet/teacher-pesq-stoi-sdi`)? Six checks on its build folder.

`mtqnet build-pretrained teacher-pesq-stoi-sdi --work_dir BUILD` leaves the corpus, the intrusive labels
(BUILD/labels/{train,test}.csv) and the trained folder (BUILD/train, with predictions.csv on the test part). From them:

  lookup    test LCC of a predictor that knows only each clip's condition: the mean training label of its SNR, and of
            its SNR and system (test clips of held-out systems have no such mean and are left out of that row). If
            this beats the teacher, the teacher has not learnt to hear the condition.
  features  log-mel statistics (per band mean / std / 5-50-95th percentiles) of each clip + gradient boosting
            (scikit-learn), trained on a subset of the training clips: a feature-engineering baseline.
  dropout   the build's trained teacher's (BUILD/train) mean prediction on training clips (first 3 s, as trained)
            with dropout off (eval mode, what users get) and on (train mode, mean of 4 passes), against the labels:
            dropout feeds the heads' multiplicative attention, so a shift between the two is a train / eval mismatch
            (the first shipped teacher had 0.3; today's has none, so its two columns agree).
  saturation  activation sizes in a trained teacher (default the shipped one; `--model_dir` another) on training
            clips: the spectral and sinc images, the BLSTM's input, and the share of its gate pre-activations beyond
            +-4 (saturated: the sigmoid's gradient under 2% of its peak).
  fit       a trained teacher (default the shipped one; `--model_dir` another) on `--clips` training clips and as many
            test clips, whole clips both: LCC / SRCC / MSE per split. Training LCC no better than test LCC means the
            trunk underfits what it was trained on.
  arms      short training runs of the teacher recipe on a subset (default 3,000 training clips, 4 epochs, the last
            model, 600 test clips, seed 0), one change per arm: `base` (the recipe as it was on 2026-11-30:
            dropout 0.3, the last model), `nodrop` (dropout 0: today's recipe), `nosinc`
            (no sinc branch), `wide` (CNN 16-32-64-64, BLSTM 128, dense 128), `std` (each target's loss on
            labels divided by its training standard deviation), `log` (log1p(1000 x) of the spectral and sinc
            images), `snr` (an auxiliary SNR head via the MPL machinery: the corpus's SNR clipped to -5..40 dB
            and divided by its training standard deviation, so that its loss is on the scale of the others; in dB
            it swamped them), `whole` (whole training clips, up to 6 s, instead of random 3 s crops), `gain` /
            `gain_small` (today's recipe with the spectral and sinc images times 0.1 / 0.03 before the CNN, so
            that the BLSTM is driven less into saturation; read them against `nodrop`), `batch8` (batch 8 instead
            of 16: twice the steps for about the same compute), `lr_high` (learning rate 3e-3 instead of 1e-3),
            `noframe` (the utterance loss alone, alpha 0); these three read against `nodrop` too.
            `std`, `log` and the gains are changes this script patches in for the run; the package has no such
            options. `shipped` trains nothing: the shipped teacher (8,000 training clips, 8 epochs) on the same test
            clips, for scale.

    .venv/bin/python studies/teacher_diagnosis.py lookup --build_dir work/teacher
    .venv/bin/python studies/teacher_diagnosis.py features --build_dir work/teacher
    .venv/bin/python studies/teacher_diagnosis.py dropout --build_dir work/teacher
    .venv/bin/python studies/teacher_diagnosis.py saturation --build_dir work/teacher [--model_dir DIR --gain G]
    .venv/bin/python studies/teacher_diagnosis.py fit --build_dir work/teacher --clips 600 [--model_dir DIR]
    .venv/bin/python studies/teacher_diagnosis.py arms --build_dir work/teacher --output_dir outputs/teacher_arms \\
        --arms base nodrop nosinc wide std log snr whole gain gain_small batch8 lr_high noframe shipped

Run alone on the machine (2 intra-op threads); each arm prints its test LCC / MSE / bias and its wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from modeling_mtqnet.tables import read_table, to_float
from modeling_mtqnet.training.reporting import lcc_srcc_mse
from modeling_mtqnet.vocabulary import PSEUDO_LABEL_TARGETS


def lcc(predicted: np.ndarray, true: np.ndarray) -> float:
    return lcc_srcc_mse(predicted, true)[0]  # the package's LCC (scipy's pearsonr)


ARMS = ("base", "nodrop", "nosinc", "wide", "std", "log", "snr", "whole", "gain", "gain_small", "batch8", "lr_high",
        "noframe", "shipped")
# The arms' base is the teacher recipe as the arms were first run (2026-11-30): the `small` preset's dropout 0.3
# and the last model. The recipe has trained without dropout since (`TeacherRecipe.dropout`): that is the `nodrop` arm.
ARMS_BASE_DROPOUT = 0.3
# Arms that change something else on top of today's recipe (dropout 0), to be read against `nodrop`.
ARMS_WITHOUT_DROPOUT = ("nodrop", "gain", "gain_small", "batch8", "lr_high", "noframe")
# `gain` / `gain_small`: the spectral and sinc images times this before the CNN (after the `saturation` part found
# the BLSTM's gates mostly saturated).
ARM_GAINS = {"gain": 0.1, "gain_small": 0.03}
SNR_CEILING_DB = 40.0  # clean clips (SNR inf) count as 40 dB for the auxiliary SNR target


def labels(build_dir: Path, split: str) -> list[dict]:
    return read_table(build_dir / "labels" / f"{split}.csv")


def sample_rows(table: list[dict], clips: int, rng: np.random.Generator) -> list[dict]:
    """`clips` rows of `table` (all of them if it has fewer), drawn without replacement."""
    return [table[i] for i in rng.choice(len(table), min(clips, len(table)), replace=False)]


def teacher_folder(model_dir: Path | None = None) -> Path:
    """`model_dir`, or the shipped teacher's folder."""
    from modeling_mtqnet.pretrained import resolve_model

    return model_dir or Path(resolve_model("mtqnet/teacher-pesq-stoi-sdi"))


def load_teacher(folder: Path):
    """A trained folder's model (in eval mode) and feature extractor."""
    from modeling_mtqnet import MTQNetFeatureExtractor, MTQNetForSpeechQualityAssessment

    return (MTQNetForSpeechQualityAssessment.from_pretrained(folder).eval(),
            MTQNetFeatureExtractor.from_pretrained(folder))


def target_metrics(predicted: np.ndarray, rows: list[dict]) -> dict[str, tuple[float, float, float, float]]:
    """LCC, SRCC, MSE and bias (mean of prediction - label) per teacher target; `predicted` has one column each."""
    metrics = {}
    for k, target in enumerate(PSEUDO_LABEL_TARGETS):
        true = np.array([to_float(r[target]) for r in rows])
        metrics[target] = (*lcc_srcc_mse(predicted[:, k], true), float(np.mean(predicted[:, k] - true)))
    return metrics


def lookup(build_dir: Path) -> None:
    train, test = labels(build_dir, "train"), labels(build_dir, "test")
    predictions = {Path(r["audio_id"]).name: r for r in read_table(build_dir / "train" / "predictions.csv")}

    def row(name: str, clips: list[dict], predict) -> None:
        cells = [f"{lcc(np.array([predict(r, t) for r in clips]), np.array([to_float(r[t]) for r in clips])):.3f}"
                 for t in PSEUDO_LABEL_TARGETS]
        print(f"| {name} | {len(clips)} | " + " | ".join(cells) + " |")

    print("| predictor | clips | " + " | ".join(t.upper() for t in PSEUDO_LABEL_TARGETS) + " |\n|---|---:|---|---|---|")

    def teacher(r: dict, t: str) -> float:
        return to_float(predictions[Path(r["path"]).name][f"{t}_pred"])

    for keys in (("snr_db",), ("snr_db", "system")):
        groups: dict[tuple, list[dict]] = {}
        for r in train:
            groups.setdefault(tuple(r[k] for k in keys), []).append(r)
        means = {key: {t: float(np.mean([to_float(r[t]) for r in rows])) for t in PSEUDO_LABEL_TARGETS}
                 for key, rows in groups.items()}
        known = [r for r in test if tuple(r[k] for k in keys) in means]
        row(f"mean training label of its {' and '.join(keys)}", known,
            lambda r, t: means[tuple(r[k] for k in keys)][t])
        row("the teacher, same clips", known, teacher)


def log_mel_statistics(path: str) -> np.ndarray:
    import librosa
    import soundfile as sf

    samples, rate = sf.read(path, dtype="float32")
    samples = samples / (np.abs(samples).max() + 1e-9)  # peak-normalised, as the model sees it
    log_mel = np.log(librosa.feature.melspectrogram(y=samples, sr=rate, n_fft=512, hop_length=256, n_mels=40) + 1e-8)
    energy = log_mel.mean(0)
    return np.concatenate([log_mel.mean(1), log_mel.std(1), np.percentile(log_mel, [5, 50, 95], axis=1).ravel(),
                           [energy.std(), np.percentile(energy, 95) - np.percentile(energy, 5)]])


def features(build_dir: Path, train_clips: int, test_clips: int, seed: int) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(seed)
    train, test = labels(build_dir, "train"), labels(build_dir, "test")
    train = [train[i] for i in rng.choice(len(train), min(train_clips, len(train)), replace=False)]
    test = [test[i] for i in rng.choice(len(test), min(test_clips, len(test)), replace=False)]
    x_train = np.stack([log_mel_statistics(r["path"]) for r in train])
    x_test = np.stack([log_mel_statistics(r["path"]) for r in test])
    for target in PSEUDO_LABEL_TARGETS:
        y_train = np.array([to_float(r[target]) for r in train])
        y_test = np.array([to_float(r[target]) for r in test])
        model = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=seed).fit(x_train, y_train)
        print(f"{target}: test LCC {lcc(model.predict(x_test), y_test):.3f}, training LCC "
              f"{lcc(model.predict(x_train), y_train):.3f} ({len(train)} training / {len(test)} test clips)")


def dropout(build_dir: Path, clips: int, seed: int) -> None:
    import soundfile as sf
    import torch

    torch.manual_seed(seed)
    model, extractor = load_teacher(build_dir / "train")
    rows = sample_rows(labels(build_dir, "train"), clips, np.random.default_rng(seed))
    true, off, on = [], [], []
    for row in rows:
        samples, rate = sf.read(row["path"], dtype="float32")
        inputs = extractor(samples[: 3 * rate], sampling_rate=rate, return_tensors="pt")
        with torch.no_grad():
            off.append(model.eval()(**inputs).logits[0].numpy())
            on.append(np.mean([model.train()(**inputs).logits[0].numpy() for _ in range(4)], axis=0))
        true.append([to_float(row[t]) for t in model.config.target_names])
    true, off, on = np.array(true), np.array(off), np.array(on)
    print(f"{clips} training clips, first 3 s | label mean | dropout off (eval): mean, LCC | dropout on: mean, LCC")
    for k, target in enumerate(model.config.target_names):
        print(f"{target} | {true[:, k].mean():.3f} | {off[:, k].mean():.3f}, {lcc(off[:, k], true[:, k]):.3f} | "
              f"{on[:, k].mean():.3f}, {lcc(on[:, k], true[:, k]):.3f}")


def saturation(build_dir: Path, clips: int, seed: int, model_dir: Path | None = None, gain: float = 1.0) -> None:
    """How large the trunk's activations are on training clips (first 3 s, as trained), and how many of the BLSTM's
    gate pre-activations (input part, forward direction) are saturated (|x| > 4: sigmoid below 0.018 or above 0.982,
    where its gradient is under 2% of its peak). `model_dir`: another trained folder (default the shipped teacher);
    `gain`: the image gain it was trained with (an arm's `ARM_GAINS` entry)."""
    if gain != 1.0:
        scale_images(gain)
    import soundfile as sf
    import torch

    folder = teacher_folder(model_dir)
    model, extractor = load_teacher(folder)
    rows = sample_rows(labels(build_dir, "train"), clips, np.random.default_rng(seed))
    audio = [sf.read(r["path"], dtype="float32")[0][: 3 * 16000] for r in rows]
    batch = extractor(audio, sampling_rate=16000, return_tensors="pt", padding=True)
    trunk, seen = model.mtqnet, {}
    trunk.blstm.register_forward_hook(lambda module, inputs, output: seen.update(blstm=inputs[0]))
    with torch.no_grad():
        waveforms, lengths = batch["input_values"], batch["attention_mask"].sum(-1)
        spectral = trunk.spectral(waveforms, lengths)
        sinc = trunk.sinc(waveforms, spectral.shape[1]) if trunk.sinc is not None else None
        model(**batch)
        packed = seen["blstm"]
        sequence = packed.data if hasattr(packed, "data") else packed  # the valid frames only
        lstm = trunk.blstm
        gates = sequence @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + lstm.bias_hh_l0
    print(f"{folder}: {len(rows)} training clips (first 3 s) | mean | RMS | 99th percentile of |x|")
    for name, values in (("spectral image", spectral), ("sinc image", sinc), ("BLSTM input", sequence),
                         ("BLSTM gate pre-activations", gates)):
        if values is None:
            continue
        values = values.flatten().float()
        sample = values[torch.randperm(values.numel(), generator=torch.Generator().manual_seed(seed))[: 2**20]]
        print(f"{name} | {values.mean():.3g} | {values.pow(2).mean().sqrt():.3g} | {sample.abs().quantile(0.99):.3g}")
    print(f"gate pre-activations with |x| > 4: {(gates.abs() > 4).float().mean():.1%}")


def subset_labels(build_dir: Path, out_dir: Path, train_clips: int, test_clips: int, seed: int) -> Path:
    """The arms' data: a seeded sample (pandas, in sampled order) of the build's training and test tables, with the
    auxiliary `snr` column (clipped SNR in units of the training sample's standard deviation)."""
    import pandas as pd

    labels_dir = out_dir / "labels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    tables = {}
    for split, count in (("train", train_clips), ("test", test_clips)):
        table = pd.read_csv(build_dir / "labels" / f"{split}.csv")
        tables[split] = table.sample(min(count, len(table)), random_state=seed)
    clipped = {split: t["snr_db"].replace(math.inf, SNR_CEILING_DB).clip(-5.0, SNR_CEILING_DB)
               for split, t in tables.items()}
    for split, table in tables.items():
        table["snr"] = clipped[split] / clipped["train"].std()
        table.to_csv(labels_dir / f"{split}.csv", index=False)
    return labels_dir


def transform_images(spectral_image, sinc_image) -> None:
    """Patch this process's model code: the spectral and sinc images pass through these functions before the CNN."""
    import modeling_mtqnet.model.modeling_mtqnet as modeling

    spectral, sinc = modeling.SpectralBranch.forward, modeling.SincFilterbank.forward
    modeling.SpectralBranch.forward = lambda self, w, n: spectral_image(spectral(self, w, n))
    modeling.SincFilterbank.forward = lambda self, w, t: sinc_image(sinc(self, w, t))


def scale_images(gain: float) -> None:
    """The spectral and sinc images times `gain` before the CNN."""
    transform_images(lambda x: gain * x, lambda x: gain * x)


def patch_for(arm: str, labels_dir: Path) -> None:
    """The arm's one change, applied to this process before its model is built."""
    import torch

    import modeling_mtqnet.model.configuration_mtqnet as configuration
    import modeling_mtqnet.model.modeling_mtqnet as modeling

    preset = configuration.PRESETS["small"]
    if arm == "nosinc":
        preset["use_sinc"] = False
    elif arm == "wide":
        preset.update(cnn_channels=[16, 32, 64, 64], lstm_hidden_size=128, dense_size=128)
    elif arm == "std":
        rows = read_table(labels_dir / "train.csv")
        scales = torch.tensor([float(np.std([to_float(r[t]) for r in rows])) for t in PSEUDO_LABEL_TARGETS])
        original = modeling.target_loss_sums

        def standardised(utterance, frames, mask, targets, loss_type="huber", delta=1.0):
            s = scales.to(utterance.device, utterance.dtype)
            return original(utterance / s, frames / s, mask, targets / s.to(targets.dtype), loss_type, delta)

        modeling.target_loss_sums = standardised
    elif arm in ARM_GAINS:
        scale_images(ARM_GAINS[arm])
    elif arm == "log":
        transform_images(lambda x: torch.log1p(1000.0 * x), lambda x: torch.sign(x) * torch.log1p(1000.0 * x.abs()))


def predict_clips(folder: Path, rows: list[dict]) -> np.ndarray:
    """A trained folder's predictions on whole clips, one at a time (as the Trainer's test metrics)."""
    import soundfile as sf
    import torch

    model, extractor = load_teacher(folder)
    with torch.no_grad():
        return np.array([model(**extractor(sf.read(r["path"], dtype="float32")[0], sampling_rate=16000,
                                           return_tensors="pt")).logits[0].numpy() for r in rows])


def evaluate_shipped(labels_dir: Path, out_dir: Path) -> None:
    """The `shipped` row: the shipped teacher, not trained again, on the arms' test clips, written as a run's
    eval_results.json."""
    rows = read_table(labels_dir / "test.csv")
    results = {}
    for target, (correlation, _, mse, bias) in target_metrics(predict_clips(teacher_folder(), rows), rows).items():
        results.update({f"test_{target}_lcc": correlation, f"test_{target}_mse": mse, f"test_{target}_bias": bias})
    (out_dir / "shipped").mkdir(parents=True, exist_ok=True)
    (out_dir / "shipped" / "eval_results.json").write_text(json.dumps(results, indent=2))


def fit(build_dir: Path, clips: int, seed: int, model_dir: Path | None = None) -> None:
    """Underfitting or a generalisation gap? A trained folder (default the shipped teacher) on `clips` training clips
    and as many test clips, whole clips both. If its training LCC is no better than its test LCC, the trunk does not
    fit what it was trained on, and more data or held-out conditions are not what holds it back."""
    folder = teacher_folder(model_dir)
    rng = np.random.default_rng(seed)
    print(f"{folder}: {clips} clips per split, whole clips | " + " | ".join(f"{t} LCC / SRCC / MSE"
                                                                        for t in PSEUDO_LABEL_TARGETS))
    for split in ("train", "test"):
        rows = sample_rows(labels(build_dir, split), clips, rng)
        metrics = target_metrics(predict_clips(folder, rows), rows)
        print(f"{split} | " + " | ".join(" / ".join(f"{v:.3f}" for v in metrics[t][:3]) for t in PSEUDO_LABEL_TARGETS))


def run_arm(arm: str, labels_dir: Path, out_dir: Path, epochs: float, seed: int) -> None:
    """One arm in this process (`arms` starts a fresh process per arm, so patches never leak)."""
    if arm == "shipped":
        evaluate_shipped(labels_dir, out_dir)
        return
    from modeling_mtqnet.builds.recipes import TeacherRecipe
    from modeling_mtqnet.builds.teacher import teacher_training_values
    from modeling_mtqnet.training.recipe import train_resuming, training_arguments

    patch_for(arm, labels_dir)
    # The last model (no noisy selection), at the base's dropout unless the arm changes it.
    recipe = dataclasses.replace(TeacherRecipe(), epochs=epochs, seed=seed, select_best_epoch=False,
                                 dropout=0.0 if arm in ARMS_WITHOUT_DROPOUT else ARMS_BASE_DROPOUT)
    if arm == "whole":  # whole clips (the corpus's are at most max_duration_s) instead of random crops
        recipe = dataclasses.replace(recipe, max_train_duration_s=recipe.max_duration_s)
    elif arm == "batch8":  # twice the steps for about the same compute (a CPU's cost is per clip, not per step)
        recipe = dataclasses.replace(recipe, batch_size=recipe.batch_size // 2)
    elif arm == "lr_high":
        recipe = dataclasses.replace(recipe, learning_rate=3 * recipe.learning_rate)
    values = teacher_training_values(recipe, labels_dir, out_dir / arm)
    if arm == "snr":
        values.update(method="mpl", pseudo_label_columns=["snr"])
    elif arm == "noframe":  # the utterance loss alone: no frame is asked to carry the clip's label by itself
        values["alpha"] = 0.0
    train_resuming(training_arguments(values))


def arm_row(arm: str, out_dir: Path, seconds: float) -> str:
    results = json.loads((out_dir / arm / "eval_results.json").read_text())
    cells = [f"{results[f'test_{t}_lcc']:.3f} / {results[f'test_{t}_mse']:.3f} / {results[f'test_{t}_bias']:+.3f}"
             for t in PSEUDO_LABEL_TARGETS]
    return f"| {arm} | " + " | ".join(cells) + f" | {seconds:.0f} |"


def arms(build_dir: Path, out_dir: Path, names: Sequence[str], train_clips: int, test_clips: int, epochs: float,
         seed: int) -> None:
    import subprocess

    labels_dir = subset_labels(build_dir, out_dir, train_clips, test_clips, seed)
    rows = []
    for arm in names:
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "_arm", arm, "--labels_dir", str(labels_dir), "--output_dir",
                        str(out_dir), "--epochs", str(epochs), "--seed", str(seed)], check=True)
        rows.append(arm_row(arm, out_dir, time.perf_counter() - start))
    header = " | ".join(f"{t.upper()} LCC / MSE / bias" for t in PSEUDO_LABEL_TARGETS)
    table = "\n".join([f"| arm | {header} | wall s |", "|---|---|---|---|---:|", *rows])
    (out_dir / "arms.md").write_text(table + "\n")
    print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["lookup", "features", "dropout", "saturation", "fit", "arms", "_arm"])
    parser.add_argument("arm_name", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--build_dir", type=Path, help="a teacher build's --work_dir")
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/teacher_arms"))
    parser.add_argument("--labels_dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--train_clips", type=int, default=3000)
    parser.add_argument("--test_clips", type=int, default=600)
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--clips", type=int, default=100, help="dropout, saturation, fit: clips to predict")
    parser.add_argument("--model_dir", type=Path, help="saturation, fit: a trained folder (default the shipped "
                                                       "teacher)")
    parser.add_argument("--gain", type=float, default=1.0, help="saturation: the image gain --model_dir was trained "
                                                                "with (the gain arms: 0.1, 0.03)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.part == "_arm":
        run_arm(args.arm_name, args.labels_dir, args.output_dir, args.epochs, args.seed)
        return 0
    if args.build_dir is None:
        parser.error("--build_dir is required")
    if args.part == "lookup":
        lookup(args.build_dir)
    elif args.part == "features":
        features(args.build_dir, args.train_clips, args.test_clips, args.seed)
    elif args.part == "dropout":
        dropout(args.build_dir, args.clips, args.seed)
    elif args.part == "saturation":
        saturation(args.build_dir, args.clips, args.seed, args.model_dir, args.gain)
    elif args.part == "fit":
        fit(args.build_dir, args.clips, args.seed, args.model_dir)
    else:
        arms(args.build_dir, args.output_dir, args.arms, args.train_clips, args.test_clips, args.epochs, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
