"""Corpus BLEU (sacrebleu)."""

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = """\
Corpus-level BLEU (Papineni et al. 2002) as computed by sacrebleu (Post 2018): n-gram precisions
(n = 1..4) pooled over the whole corpus, geometric mean, times the brevity penalty; 0..100.
Each prediction may have several references; they need not be equally many.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the system outputs.
    references (list of list of str, or list of str): the reference translations of each prediction.
    tokenize (str): sacrebleu tokenizer, "13a" (default), "intl", "char", "none", ...
    lowercase (bool): default False.
    smooth_method (str): "exp" (default), "floor", "add-k" or "none".
Returns:
    bleu (float, 0..100), precisions (list of 4 floats), brevity_penalty, sys_len, ref_len,
    signature (str, sacrebleu's reproducibility signature)
Examples:
    >>> load_metric("bleu").compute(predictions=["the cat sat on the mat"],
    ...                             references=[["the cat sat on the mat"]])["bleu"]
    100.0
"""

_CITATION = """\
@inproceedings{post-2018-call,
  title = "A Call for Clarity in Reporting {BLEU} Scores",
  author = "Post, Matt", booktitle = "Proceedings of the Third Conference on Machine Translation",
  year = "2018", pages = "186--191"}
"""


def transpose_references(references):
    """Per-prediction reference lists -> sacrebleu's reference streams (None pads short lists)."""
    references = [[r] if isinstance(r, str) else list(r) for r in references]
    if any(len(r) == 0 for r in references):
        raise ValueError("every prediction needs at least one reference")
    width = max(len(r) for r in references)
    return [[r[i] if i < len(r) else None for r in references] for i in range(width)]


class Bleu(evaluate.Metric):
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

    def _compute(self, predictions, references, tokenize="13a", lowercase=False, smooth_method="exp"):
        if len(predictions) == 0:
            raise ValueError("bleu: no predictions")
        metric = sacrebleu.metrics.BLEU(tokenize=tokenize, lowercase=lowercase, smooth_method=smooth_method)
        score = metric.corpus_score(list(predictions), transpose_references(references))
        return {
            "bleu": float(score.score),
            "precisions": [float(p) for p in score.precisions],
            "brevity_penalty": float(score.bp),
            "sys_len": int(score.sys_len),
            "ref_len": int(score.ref_len),
            "signature": str(metric.get_signature()),
        }
