"""Word error rate in the grapheme-to-phoneme sense: the share of words transcribed wrongly."""

import re

import datasets
import evaluate

_DESCRIPTION = """\
Word error rate for grapheme-to-phoneme conversion (as in the CMUdict G2P literature, e.g. Yao &
Zweig 2015): a prediction (a space-separated phoneme string such as "K AE1 T") is wrong when it
equals none of the word's reference pronunciations; WER = wrong / number of predictions.
Whitespace is normalised before comparing. This is not the speech-recognition WER (an edit
distance over words); for an edit distance over phonemes use the "per" metric.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): one predicted phoneme string per word.
    references (list of list of str, or list of str): every acceptable pronunciation of each
        word (a plain string counts as a single reference).
    ignore_stress (bool): strip ARPAbet stress digits (AH0 -> AH) before comparing. Default False.
Returns:
    wer (float): share of predictions matching none of their references.
    accuracy (float): 1 - wer.
    num_words (int)
Examples:
    >>> load_metric("wer").compute(predictions=["K AE1 T", "D AA1 G"],
    ...                            references=[["K AE1 T"], ["D AO1 G"]])
    {'wer': 0.5, 'accuracy': 0.5, 'num_words': 2}
"""

_STRESS = re.compile(r"(?<=[A-Za-z])[012](?=\s|$)")


def _normalise(text, ignore_stress):
    text = " ".join(str(text).split())
    return _STRESS.sub("", text) if ignore_stress else text


class Wer(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Sequence(datasets.Value("string"))}),
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Value("string")}),
            ],
        )

    def _compute(self, predictions, references, ignore_stress=False):
        if len(predictions) == 0:
            raise ValueError("wer: no predictions")
        wrong = 0
        for prediction, refs in zip(predictions, references):
            refs = [refs] if isinstance(refs, str) else list(refs)
            if not refs:
                raise ValueError(f"wer: prediction {prediction!r} has no reference")
            p = _normalise(prediction, ignore_stress)
            if all(_normalise(r, ignore_stress) != p for r in refs):
                wrong += 1
        n = len(predictions)
        return {"wer": wrong / n, "accuracy": 1.0 - wrong / n, "num_words": n}
