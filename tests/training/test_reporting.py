"""Reporting helpers shared by the demo and the label-efficiency study: predictions read back, seed bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from modeling_mtqnet.training.reporting import (
    parse_results_table,
    read_predictions,
    results_table,
    seed_bootstrap,
    weak_target_note,
    weak_targets,
    write_predictions_csv,
)

TARGETS = ("s_mos", "n_mos", "g_mos")


def test_bootstrap_of_perfect_and_identical_predictions():
    rng = np.random.default_rng(0)
    true = rng.normal(3, 0.5, (40, 3))
    perfect = {0: true.copy(), 1: true.copy()}
    result = seed_bootstrap(perfect, None, true, TARGETS, 30, rng)
    assert result["s_mos_lcc"] == [1.0, 1.0, 1.0] and result["g_mos_mse"] == [0.0, 0.0, 0.0]
    noisy = {seed: true + rng.normal(0, 0.5, true.shape) for seed in (0, 1)}
    same = seed_bootstrap(noisy, noisy, true, TARGETS, 30, rng)
    assert all(values == [0.0, 0.0, 0.0] for values in same.values())
    better = seed_bootstrap(perfect, noisy, true, TARGETS, 30, rng)
    mean, low, high = better["n_mos_lcc"]
    assert 0 < low <= mean <= high  # perfect beats noisy on every resample


def test_predictions_are_read_back_in_the_order_asked_and_a_missing_clip_is_named(tmp_path):
    predicted = np.arange(6, dtype=float).reshape(2, 3)
    write_predictions_csv(tmp_path / "predictions.csv", ["/a/x.wav", "/a/y.wav"], TARGETS, predicted)
    read = read_predictions(tmp_path, ["/elsewhere/y.wav", "/a/x.wav"], TARGETS)
    assert read.tolist() == [predicted[1].tolist(), predicted[0].tolist()]
    with pytest.raises(ValueError, match="no prediction for 1 clip"):
        read_predictions(tmp_path, ["/a/x.wav", "/a/z.wav"], TARGETS)


def test_targets_that_did_not_learn_are_named_with_the_likely_causes():
    """The issue's case (G-MOS anti-correlated with its labels), a weak one, an undefined LCC although labels were
    scored (constant predictions), and targets that learned or were not scored at all."""
    systems = {
        "mpl_kt (validation)": {"eval_s_mos_lcc": 0.91, "eval_s_mos_mse": 0.2, "eval_n_mos_lcc": 0.15,
                                "eval_n_mos_mse": 0.5, "eval_g_mos_lcc": -0.62, "eval_g_mos_mse": 1.1},
        "mpl_kt (test)": {"test_s_mos_lcc": float("nan"), "test_s_mos_mse": 0.4, "test_n_mos_lcc": 0.5,
                          "test_n_mos_mse": 0.3, "test_g_mos_lcc": float("nan"), "test_g_mos_mse": float("nan")},
    }
    found = weak_targets(systems, TARGETS)
    assert [(system, target) for system, target, _ in found] == [
        ("mpl_kt (validation)", "n_mos"), ("mpl_kt (validation)", "g_mos"), ("mpl_kt (test)", "s_mos")]
    note = weak_target_note(found)
    assert note.startswith("Warning: N-MOS, G-MOS and S-MOS did not learn (N-MOS LCC 0.150 in mpl_kt (validation); "
                           "G-MOS LCC -0.620 in mpl_kt (validation); S-MOS LCC undefined in mpl_kt (test)")
    for cause in ("too few labels", "a schedule that did not train", "a label column on another scale"):
        assert cause in note
    assert weak_target_note(weak_targets({"run": {"s_mos_lcc": 0.2, "s_mos_mse": 0.1}}, ["s_mos"])) == ""
    # A note under the table leaves the table readable by parse_results_table.
    report = results_table(systems, TARGETS) + "\n\n" + note + "\n"
    assert set(parse_results_table(report)) == set(systems)
