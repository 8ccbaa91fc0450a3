"""Perplexity from per-token negative log-likelihoods."""

import math

import datasets
import evaluate

_DESCRIPTION = """\
Perplexity of a language model from the negative log-likelihoods (NLL, natural log, in nats) it
gave the tokens of held-out text: mean_nll = sum(w_i * nll_i) / sum(w_i), perplexity = exp(mean_nll).
Each prediction is one token's NLL (all weights 1). To pass per-batch mean losses instead (e.g.
Trainer's eval loss per batch), give `weights` = the number of tokens in each batch.
This module does not run a model: compute the NLLs with the model's loss (shifted labels,
ignore_index -100 excluded), e.g. `torch.nn.functional.cross_entropy(..., reduction="none")`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of float): negative log-likelihood of each token, in nats (>= 0).
    weights (list of float, optional): a weight per prediction (token counts when the
        predictions are per-batch means). Default: all 1.
Returns:
    mean_nll (float): the weighted mean NLL (nats per token), i.e. cross-entropy.
    perplexity (float): exp(mean_nll).
    bits_per_token (float): mean_nll / ln 2.
    num_tokens (float): sum of weights.
Examples:
    >>> m = load_metric("perplexity")
    >>> m.compute(predictions=[math.log(2), math.log(8)])["perplexity"]  # exp(mean) = sqrt(16)
    4.0
"""


class Perplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64")}),
        )

    def _compute(self, predictions, weights=None):
        if len(predictions) == 0:
            raise ValueError("perplexity: no predictions")
        if weights is None:
            weights = [1.0] * len(predictions)
        if len(weights) != len(predictions):
            raise ValueError(f"perplexity: {len(weights)} weights for {len(predictions)} predictions")
        for nll in predictions:
            if not (nll >= 0.0) or math.isinf(nll):
                raise ValueError(f"perplexity: negative log-likelihoods must be finite and >= 0, got {nll}")
        total = float(sum(weights))
        if total <= 0:
            raise ValueError("perplexity: the weights sum to zero")
        mean_nll = float(sum(w * p for w, p in zip(weights, predictions)) / total)
        return {
            "mean_nll": mean_nll,
            "perplexity": math.exp(mean_nll) if mean_nll < 700 else float("inf"),
            "bits_per_token": mean_nll / math.log(2),
            "num_tokens": total,
        }
