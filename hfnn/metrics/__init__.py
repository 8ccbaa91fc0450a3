"""Evaluation metrics shipped inside hfnn as ``evaluate`` modules, loaded by path (no Hub needed).

Each metric is an ``evaluate.Metric`` subclass in ``hfnn/metrics/<name>/<name>.py``, built on the
library that already does the work:

============ ==============================================================================
perplexity   mean per-token negative log-likelihood (nats) and its exponential
accuracy     scikit-learn ``accuracy_score``
f1           scikit-learn ``f1_score`` (``average="macro"`` by default)
wer          grapheme-to-phoneme word error rate: share of predictions matching none of their
             reference pronunciations
per          phoneme error rate: edit distance (jiwer) to the closest reference / its length
bleu         sacrebleu corpus BLEU (several references per prediction allowed)
chrf         sacrebleu corpus chrF (chrF++ with ``word_order=2``)
============ ==============================================================================

Usage::

    from hfnn.metrics import load_metric
    per = load_metric("per")
    per.compute(predictions=["K AE1 T"], references=[["K AE1 T", "K AH0 T"]])  # {"per": 0.0}

Outside hfnn, ``evaluate.load("/path/to/hfnn/metrics/per")`` loads the same module.
"""

from __future__ import annotations

import pathlib

__all__ = ["METRICS", "METRICS_DIR", "metric_path", "load_metric"]

METRICS = ["perplexity", "accuracy", "f1", "wer", "per", "bleu", "chrf"]
METRICS_DIR = pathlib.Path(__file__).resolve().parent


def metric_path(name: str) -> str:
    """The folder of metric ``name`` (what ``evaluate.load`` takes)."""
    if name not in METRICS:
        raise ValueError(f"Unknown metric {name!r}; hfnn metrics: {', '.join(METRICS)}")
    return str(METRICS_DIR / name)


def load_metric(name: str, **kwargs):
    """``evaluate.load`` of hfnn's own module for metric ``name`` (kwargs go to ``evaluate.load``)."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)
