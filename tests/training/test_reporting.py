"""Reporting helpers shared by the demo and the label-efficiency study: predictions read back, seed bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from modeling_mtqnet.training.reporting import read_predictions, seed_bootstrap, write_predictions_csv

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
