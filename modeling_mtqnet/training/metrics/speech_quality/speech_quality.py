"""Speech quality prediction metrics: LCC (Pearson), SRCC (Spearman) and MSE, as in the MTQ-Net / MOSA-Net papers,
plus the bias (mean prediction minus mean reference), which correlations cannot see.

A local `evaluate` module: load it offline with `evaluate.load(<path of this folder>)`
(`modeling_mtqnet.trainer.SPEECH_QUALITY_METRIC` holds the path). Pairs whose reference is NaN (a missing label)
are left out.
"""

import datasets
import evaluate
import numpy as np
from scipy import stats

_DESCRIPTION = """LCC (linear correlation), SRCC (Spearman rank correlation), MSE and bias (mean of prediction minus
reference: > 0 when the model scores too high on average) between predicted and true scores. NaN references are
ignored. Correlations are NaN when fewer than two pairs remain or either side is constant."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): predicted scores.
    references (`list[float]`): true scores (NaN = missing label, ignored).
Returns:
    lcc (`float`), srcc (`float`), mse (`float`), bias (`float`: mean prediction - reference), count (`int`: pairs
    used).
Examples:
    >>> metric = evaluate.load("modeling_mtqnet/metrics/speech_quality")
    >>> metric.compute(predictions=[1.0, 2.0, 3.1], references=[1.0, 2.0, 3.0])["lcc"] > 0.99
    True
"""

_CITATION = """@inproceedings{zezario2024mtqnet, title={Multi-task Pseudo-Label Learning for Non-Intrusive Speech
Quality Assessment Model}, author={Zezario, Ryandhimas E. and others}, booktitle={ICASSP}, year={2024}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SpeechQuality(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("float64")}),
        )

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions, dtype=np.float64)
        references = np.asarray(references, dtype=np.float64)
        keep = ~np.isnan(references)
        predictions, references = predictions[keep], references[keep]
        count = int(keep.sum())
        if count == 0:
            return {"lcc": float("nan"), "srcc": float("nan"), "mse": float("nan"), "bias": float("nan"), "count": 0}
        errors = predictions - references
        mse, bias = float(np.mean(errors**2)), float(np.mean(errors))
        if count < 2 or np.ptp(predictions) == 0 or np.ptp(references) == 0:
            return {"lcc": float("nan"), "srcc": float("nan"), "mse": mse, "bias": bias, "count": count}
        return {
            "lcc": float(stats.pearsonr(predictions, references).statistic),
            "srcc": float(stats.spearmanr(predictions, references).statistic),
            "mse": mse,
            "bias": bias,
            "count": count,
        }
