"""Phoneme error rate: edit distance to the closest reference pronunciation, over its length."""

import re

import datasets
import evaluate
import jiwer

_DESCRIPTION = """\
Phoneme error rate for grapheme-to-phoneme conversion. For each word, the Levenshtein distance
(substitutions + deletions + insertions, over space-separated phonemes, computed with jiwer) is
taken to the closest of the word's reference pronunciations (ties: the first reference listed);
PER = sum of those distances / sum of the chosen references' lengths in phonemes.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): one predicted phoneme string per word, e.g. "K AE1 T".
    references (list of list of str, or list of str): every acceptable pronunciation of each word.
    ignore_stress (bool): strip ARPAbet stress digits (AH0 -> AH) first. Default False.
Returns:
    per (float): total edits / total reference phonemes.
    edits (int), reference_phonemes (int)
Examples:
    >>> load_metric("per").compute(predictions=["K AE1 T S"], references=[["K AE1 T", "K AH0 T"]])
    {'per': 0.3333333333333333, 'edits': 1, 'reference_phonemes': 3}
"""

_STRESS = re.compile(r"(?<=[A-Za-z])[012](?=\s|$)")


def _phones(text, ignore_stress):
    text = " ".join(str(text).split())
    if ignore_stress:
        text = _STRESS.sub("", text)
    return text


def _edit_distance(reference, hypothesis):
    """Levenshtein distance between two space-separated phoneme strings (jiwer)."""
    if not reference:
        return len(hypothesis.split())
    if not hypothesis:
        return len(reference.split())
    out = jiwer.process_words(reference, hypothesis)
    return out.substitutions + out.deletions + out.insertions


class Per(evaluate.Metric):
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
            codebase_urls=["https://github.com/jitsi/jiwer"],
        )

    def _compute(self, predictions, references, ignore_stress=False):
        if len(predictions) == 0:
            raise ValueError("per: no predictions")
        edits = 0
        length = 0
        for prediction, refs in zip(predictions, references):
            refs = [refs] if isinstance(refs, str) else list(refs)
            if not refs:
                raise ValueError(f"per: prediction {prediction!r} has no reference")
            hyp = _phones(prediction, ignore_stress)
            best = None
            for ref in refs:
                ref = _phones(ref, ignore_stress)
                d = _edit_distance(ref, hyp)
                if best is None or d < best[0]:
                    best = (d, len(ref.split()))
            edits += best[0]
            length += best[1]
        return {"per": edits / length if length else float(edits > 0), "edits": edits,
                "reference_phonemes": length}
