"""studies/label_efficiency.py: a scaled-down study runs end to end on a scaled-down teacher build (DNSMOS stand-in
labels, the shipped teacher's pseudo labels, paired runs, bootstrap intervals, report and curve) and resumes; the
bootstrap is checked on cases whose answer is known."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from modeling_mtqnet.tables import read_table, to_float
from modeling_mtqnet.labels.stand_in import stand_in_mos

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("label_efficiency", REPO / "studies" / "label_efficiency.py")
study = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(study)

SIZES = ["8", "16"]


def _arguments(build: Path, out: Path) -> list[str]:
    return ["--build_dir", str(build), "--output_dir", str(out), "--sizes", *SIZES, "--seeds", "0", "1",
            "--methods", "scratch", "mpl", "--pool", "60", "--validation", "8", "--test", "24",
            "--steps", "3", "--batch_size", "4", "--bootstrap", "50", "--workers", "1", "--preset", "small",
            "--crop_s", "2.5"]


@pytest.fixture(scope="module")
def finished(teacher_build, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study") / "label_efficiency"
    assert study.main(_arguments(teacher_build, out)) == 0
    return out


def test_study_reports_every_method_and_size_with_intervals(finished):
    results = json.loads((finished / "results.json").read_text())
    assert set(results) == {f"{m}@{n}" for m in ("scratch", "mpl") for n in SIZES}
    for entry in results.values():
        assert entry["seeds"] == [0, 1]
        for mean, low, high in entry["metrics"].values():
            assert low - 1e-9 <= high
        assert -1.0 <= entry["metrics"]["g_mos_lcc"][0] <= 1.0
    assert results["mpl@8"]["reference"] == "scratch" and "minus_reference" not in results["scratch@8"]
    assert set(results["mpl@8"]["minus_reference"]) == set(results["mpl@8"]["metrics"])
    report = (finished / "report.md").read_text()
    assert "stand-ins" in report and "## Reading" in report and "mpl with 8 labelled clips" in report
    assert (finished / "learning_curve.png").stat().st_size > 5000


def test_training_tables_hold_n_labelled_clips_nested_and_pseudo_labels_for_all(finished):
    small = read_table(finished / "tables" / "n8_seed0" / "pooled.csv")
    large = read_table(finished / "tables" / "n16_seed0" / "pooled.csv")

    def labelled(rows):
        return {row["path"] for row in rows if row["s_mos"] != ""}

    assert len(labelled(small)) == 8 and len(labelled(large)) == 16 and labelled(small) < labelled(large)
    assert all(np.isfinite(to_float(row["pesq"])) for row in small)  # every pool clip has a pseudo label
    validation = {row["path"] for row in read_table(finished / "tables" / "validation.csv")}
    assert not validation & {row["path"] for row in small}
    alone = read_table(finished / "tables" / "n8_seed0" / "labelled.csv")
    assert {row["path"] for row in alone} == labelled(small)


def test_a_second_run_trains_nothing_again(finished, teacher_build):
    before = json.loads((finished / "timings.json").read_text())
    assert len(before) == 8
    assert study.main(_arguments(teacher_build, finished)) == 0
    assert json.loads((finished / "timings.json").read_text()) == before


def test_objective_arms_train_with_their_loss_and_compare_with_the_reference(finished, teacher_build, tmp_path):
    """The objective study: `--objectives` adds arms trained with another loss / delta / alpha; the default objective's
    arm is the plain method (its runs are reused, not trained again); differences go to `--reference`."""
    out = tmp_path / "objectives"
    shutil.copytree(finished, out)
    arguments = _arguments(teacher_build, out)
    arguments[arguments.index("--sizes") + 1: arguments.index("--seeds")] = ["8"]
    arguments[arguments.index("--seeds") + 1: arguments.index("--methods")] = ["0"]
    arguments[arguments.index("--methods") + 1: arguments.index("--pool")] = [
        "mpl", "--objectives", "huber/1/1", "mse/1/0", "--reference", "mpl"]
    assert study.main(arguments) == 0
    timings = json.loads((out / "timings.json").read_text())
    assert len(timings) == 9 and "mpl~mse_d1_a0_n8_seed0" in timings  # one new run, the default arm reused
    config = json.loads((out / "runs" / "mpl~mse_d1_a0_n8_seed0" / "config.json").read_text())
    assert config["loss_type"] == "mse" and config["frame_loss_weight"] == 0.0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"mpl@8", "mpl~mse_d1_a0@8"} and results["mpl~mse_d1_a0@8"]["reference"] == "mpl"
    assert "mpl~mse_d1_a0 with 8 labelled clips, s_mos:" in (out / "report.md").read_text()
    at = arguments.index("--reference")
    with pytest.raises(SystemExit, match="--reference scratch is not one of the arms"):
        study.main(arguments[:at] + arguments[at + 2:])
    for bad in ("huber", "l1/1/1", "huber/0/1", "mse/1/x"):
        with pytest.raises(Exception, match="LOSS/DELTA/ALPHA"):
            study.parse_objective(bad)


def test_stand_in_labels_are_clipped_to_the_mos_range():
    # DNSMOS P.835 SIG gave 0.89 on a real-speech clip; the MOS heads (and their label check) span 1-5.
    assert stand_in_mos("0.886801") == "1" and stand_in_mos("5.2") == "5" and stand_in_mos("3.25") == "3.25"
    assert stand_in_mos("") == "" and stand_in_mos("nan") == ""


def test_oracle_arm_trains_on_the_intrusive_labels_in_place_of_the_teachers(finished, teacher_build, tmp_path):
    """`mpl_oracle`: MPL whose pseudo labels are the pool's intrusive PESQ / STOI / SDI (a perfect teacher's)."""
    out = tmp_path / "oracle"
    shutil.copytree(finished, out)
    arguments = _arguments(teacher_build, out)
    arguments[arguments.index("--sizes") + 1: arguments.index("--seeds")] = ["8"]
    arguments[arguments.index("--seeds") + 1: arguments.index("--methods")] = ["0"]
    arguments[arguments.index("--methods") + 1: arguments.index("--pool")] = ["mpl", "mpl_oracle", "--reference", "mpl"]
    assert study.main(arguments) == 0
    assert study.base_method("mpl_oracle") == "mpl" and study.base_method("mpl_kt_natural") == "mpl_kt"
    intrusive = {row["path"]: row for row in read_table(teacher_build / "labels" / "train.csv")}
    pooled = read_table(out / "tables" / "n8_seed0" / "pooled.csv")
    oracle = read_table(out / "tables" / "n8_seed0" / "pooled_oracle.csv")
    assert [row["path"] for row in oracle] == [row["path"] for row in pooled]
    for teacher_row, oracle_row in zip(pooled, oracle):
        for target in ("pesq", "stoi", "sdi"):
            assert oracle_row[target] == intrusive[oracle_row["path"]][target]
        assert oracle_row["s_mos"] == teacher_row["s_mos"]  # primary labels untouched
    assert any(a["pesq"] != b["pesq"] for a, b in zip(pooled, oracle))  # the teacher's were predictions
    assert (out / "runs" / "mpl_oracle_n8_seed0" / "predictions.csv").is_file()
    assert json.loads((out / "results.json").read_text())["mpl_oracle@8"]["reference"] == "mpl"


def test_readout_fits_a_linear_signal_and_does_not_shrink_the_intercept():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(12, 2))
    features = {name: rng.normal(size=(n, 12)) * 5 + 10 for name, n in (("train", 200), ("validation", 60),
                                                                       ("test", 80))}
    labels = {name: x @ weights / 5 + 3 + rng.normal(scale=0.3, size=(len(x), 2)) for name, x in features.items()}
    predictions, chosen = study.fit_readout(features, labels)
    for k in range(2):
        assert np.corrcoef(predictions[:, k], labels["test"][:, k])[0, 1] > 0.9
        assert chosen[k] in study.READOUT_RIDGES
    # An enormous ridge flattens the slopes, not the level: every prediction is the training labels' mean.
    flat, _ = study.fit_readout(features, labels, ridges=(1e9,))
    np.testing.assert_allclose(flat, np.broadcast_to(labels["train"].mean(axis=0), flat.shape), atol=1e-3)


def test_readout_arm_scores_the_test_clips_from_the_encoders_pooled_frames(teacher_build, tmp_path):
    out = tmp_path / "readout"
    arguments = _arguments(teacher_build, out)
    arguments[arguments.index("--methods") + 1: arguments.index("--methods") + 3] = ["readout"]
    arguments[arguments.index("--preset") + 1] = "small-distillmos"
    assert study.main([*arguments, "--reference", "readout"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {f"readout@{size}" for size in SIZES} <= set(results)
    run = out / "runs" / "readout_n16_seed0"
    record = json.loads((run / "readout.json").read_text())
    hidden = study.encoder_student("small-distillmos").config.ssl_config.hidden_size
    assert record["features"] == 2 * hidden  # mean and standard deviation of each frame dimension
    test = read_table(out / "tables" / "test.csv")
    predicted = {Path(row["audio_id"]).name for row in read_table(run / "predictions.csv")}
    assert predicted == {Path(row["path"]).name for row in test}
    # Each clip gets its own statistics, in the order asked, whatever else is asked beside it.
    path = test[0]["path"]
    alone = study.pooled_encoder_features([path], "small-distillmos")
    study._POOLED.clear()
    together = study.pooled_encoder_features([test[1]["path"], path], "small-distillmos")[1]
    np.testing.assert_allclose(alone[0], together, atol=1e-5)


RELATEDNESS_SPEC = importlib.util.spec_from_file_location("pseudo_label_relatedness",
                                                          REPO / "studies" / "pseudo_label_relatedness.py")
relatedness = importlib.util.module_from_spec(RELATEDNESS_SPEC)
RELATEDNESS_SPEC.loader.exec_module(relatedness)


def test_linear_relatedness_recovers_a_known_correlation_and_is_not_fooled_by_noise():
    rng = np.random.default_rng(0)
    signal, noise = rng.normal(size=4000), rng.normal(size=4000)
    target = signal + noise  # corr(target, signal) = 1 / sqrt(2)
    within, crossed = relatedness.linear_relatedness(np.column_stack([signal, rng.normal(size=4000)]), target)
    assert abs(within - 2 ** -0.5) < 0.03 and abs(crossed - 2 ** -0.5) < 0.03
    # Many unrelated features on few clips: the in-sample fit finds structure, cross-validation does not.
    within, crossed = relatedness.linear_relatedness(rng.normal(size=(30, 20)), rng.normal(size=30))
    assert within > 0.6 and crossed < 0.2


def test_relatedness_reports_teacher_and_intrusive_rows_for_every_primary_target(finished, teacher_build, capsys):
    assert relatedness.main(["--study_dir", str(finished), "--build_dir", str(teacher_build)]) == 0
    output = capsys.readouterr().out
    assert "shipped teacher's predictions" in output and "intrusive labels" in output
    rows = [line for line in output.splitlines() if line.startswith(("| s_mos", "| n_mos", "| g_mos"))]
    assert len(rows) == 6
    for row in rows:
        values = [float(cell) for cell in row.strip("|").split("|")[1:]]
        assert len(values) == 5 and all(-1.0 <= value <= 1.0 for value in values)
