"""Corpus chrF / chrF++ (sacrebleu)."""

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = """\
Corpus-level chrF (Popovic 2015) as computed by sacrebleu: character n-gram F-score (n = 1..6,
recall weighted by beta = 2), 0..100; with word_order=2 it is chrF++ (adds word 1- and
2-grams). Friendlier than BLEU to morphologically rich targets such as French. Several
references per prediction are allowed; they need not be equally many.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str)
    references (list of list of str, or list of str)
    char_order (int): default 6. word_order (int): default 0 (chrF); 2 gives chrF++.
    beta (int): default 2. lowercase (bool): default False.
    whitespace (bool): include whitespace in character n-grams. Default False.
Returns:
    chrf (float, 0..100), char_order, word_order, beta, signature
Examples:
    >>> load_metric("chrf").compute(predictions=["le chat"], references=[["le chat"]])["chrf"]
    100.0
"""

_CITATION = """\
@inproceedings{popovic-2015-chrf,
  title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
  author = "Popovi{\\'c}, Maja", booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
  year = "2015", pages = "392--395"}
"""


def transpose_references(references):
    """Per-prediction reference lists -> sacrebleu's reference streams (None pads short lists)."""
    references = [[r] if isinstance(r, str) else list(r) for r in references]
    if any(len(r) == 0 for r in references):
        raise ValueError("every prediction needs at least one reference")
    width = max(len(r) for r in references)
    return [[r[i] if i < len(r) else None for r in references] for i in range(width)]


class Chrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Sequence(datasets.Value("string"))}),
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Value("string")}),
            ],
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def _compute(self, predictions, references, char_order=6, word_order=0, beta=2, lowercase=False,
                 whitespace=False):
        if len(predictions) == 0:
            raise ValueError("chrf: no predictions")
        metric = sacrebleu.metrics.CHRF(char_order=char_order, word_order=word_order, beta=beta,
                                        lowercase=lowercase, whitespace=whitespace)
        score = metric.corpus_score(list(predictions), transpose_references(references))
        return {"chrf": float(score.score), "char_order": char_order, "word_order": word_order, "beta": beta,
                "signature": str(metric.get_signature())}
