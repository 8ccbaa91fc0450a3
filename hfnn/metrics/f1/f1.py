"""F1 score (scikit-learn), macro-averaged over classes by default."""

import datasets
import evaluate
from sklearn.metrics import f1_score

_DESCRIPTION = """\
F1 = 2 * precision * recall / (precision + recall) (scikit-learn f1_score). The default
average="macro" gives the unweighted mean of the per-class F1 scores, so a classifier that always
predicts the majority class scores low on an imbalanced corpus.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    average (str or None): "macro" (default), "micro", "weighted", "binary" (then pos_label
        counts), or None for one score per class (returned as a list).
    labels (list of int, optional): the classes to include.
    pos_label (int): the positive class when average="binary" (default 1).
    sample_weight (list of float, optional).
Returns:
    f1 (float, or list of float when average=None)
Examples:
    >>> load_metric("f1").compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])["f1"]  # (0.8 + 0.667) / 2
    0.7333333333333334
"""


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, 2011.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
        )

    def _compute(self, predictions, references, average="macro", labels=None, pos_label=1, sample_weight=None):
        if len(predictions) == 0:
            raise ValueError("f1: no predictions")
        score = f1_score(references, predictions, average=average, labels=labels, pos_label=pos_label,
                         sample_weight=sample_weight, zero_division=0)
        return {"f1": score.tolist() if average is None else float(score)}
