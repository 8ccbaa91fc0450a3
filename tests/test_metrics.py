"""Metric modules: loaded by path through evaluate, checked against hand-computed values."""

import math
import pathlib

import evaluate
import pytest

from hfnn.metrics import METRICS, load_metric, metric_path


@pytest.fixture(scope="module")
def m():
    return {name: load_metric(name) for name in METRICS}


def test_every_metric_loads_by_path_offline(m):
    for name in METRICS:
        folder = pathlib.Path(metric_path(name))
        assert (folder / f"{name}.py").is_file()
        assert isinstance(m[name], evaluate.Metric)
    with pytest.raises(ValueError, match="perplexity"):
        load_metric("rouge")
    # the plain evaluate entry point works on the folder too (what users without hfnn do)
    assert evaluate.load(metric_path("accuracy")).compute(predictions=[1], references=[1]) == {"accuracy": 1.0}


def test_perplexity(m):
    out = m["perplexity"].compute(predictions=[math.log(2), math.log(8)])
    assert out["perplexity"] == pytest.approx(4.0)  # exp(mean(ln 2, ln 8)) = exp(ln 4)
    assert out["mean_nll"] == pytest.approx(math.log(4))
    assert out["bits_per_token"] == pytest.approx(2.0)
    # per-batch mean losses weighted by token counts: (1*ln2*3 + ln8*1) / 4 = ln(2^(6/4))
    out = m["perplexity"].compute(predictions=[math.log(2), math.log(8)], weights=[3, 1])
    assert out["perplexity"] == pytest.approx(2 ** 1.5)
    assert m["perplexity"].compute(predictions=[0.0, 0.0])["perplexity"] == 1.0
    with pytest.raises(ValueError, match=">= 0"):
        m["perplexity"].compute(predictions=[-1.0])


def test_perplexity_add_batch(m):
    metric = m["perplexity"]
    metric.add_batch(predictions=[math.log(3)] * 5)
    metric.add_batch(predictions=[math.log(3)] * 2)
    out = metric.compute()
    assert out["perplexity"] == pytest.approx(3.0) and out["num_tokens"] == 7


def test_accuracy_and_f1(m):
    preds, refs = [0, 1, 1, 0, 2, 2], [0, 1, 0, 0, 2, 1]
    assert m["accuracy"].compute(predictions=preds, references=refs)["accuracy"] == pytest.approx(4 / 6)
    # per class F1: class 0: P=2/2, R=2/3 -> 0.8; class 1: P=1/2, R=1/2 -> 0.5; class 2: P=1/2, R=1 -> 2/3
    f1 = m["f1"].compute(predictions=preds, references=refs)["f1"]
    assert f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    per_class = m["f1"].compute(predictions=preds, references=refs, average=None)["f1"]
    assert per_class == pytest.approx([0.8, 0.5, 2 / 3])
    assert m["f1"].compute(predictions=preds, references=refs, average="micro")["f1"] == pytest.approx(4 / 6)
    binary = m["f1"].compute(predictions=[1, 1, 0, 0], references=[1, 0, 1, 0], average="binary")["f1"]
    assert binary == pytest.approx(0.5)


def test_g2p_wer_any_reference_counts(m):
    out = m["wer"].compute(
        predictions=["K AE1 T", "D AA1 G", "T AH0 M EY1 T OW2", "  HH AH0   L OW1 "],
        references=[["K AE1 T"], ["D AO1 G"], ["T AH0 M EY1 T OW2", "T AH0 M AA1 T OW2"], ["HH AH0 L OW1"]],
    )
    assert out["wer"] == pytest.approx(0.25) and out["num_words"] == 4
    # the second pronunciation of a word counts as correct
    assert m["wer"].compute(predictions=["T AH0 M AA1 T OW2"],
                            references=[["T AH0 M EY1 T OW2", "T AH0 M AA1 T OW2"]])["wer"] == 0.0
    # a plain string reference is one reference
    assert m["wer"].compute(predictions=["A B"], references=["A C"])["wer"] == 1.0
    assert m["wer"].compute(predictions=["D AA1 G"], references=[["D AA0 G"]], ignore_stress=True)["wer"] == 0.0


def test_per_closest_reference_edit_distance(m):
    # "K AE1 T S" vs "K AE1 T": 1 insertion over 3 phonemes
    out = m["per"].compute(predictions=["K AE1 T S"], references=[["K AH0 T", "K AE1 T"]])
    assert out == {"per": pytest.approx(1 / 3), "edits": 1, "reference_phonemes": 3}
    # kitten/sitting at phoneme level: K IH T AH N -> S IH T IH NG: 3 substitutions (distance 3, ref length 5)
    # plus an exact match of length 2 and an empty prediction of a length-3 reference (3 deletions)
    out = m["per"].compute(
        predictions=["S IH T IH NG", "AH0 B", ""],
        references=[["K IH T AH N"], ["AH0 B"], ["Z Y X"]],
    )
    assert out["edits"] == 3 + 0 + 3 and out["reference_phonemes"] == 5 + 2 + 3
    assert out["per"] == pytest.approx(6 / 10)
    # deletion + substitution: ref "A B C D" hyp "A X D" -> distance 2
    assert m["per"].compute(predictions=["A X D"], references=[["A B C D"]])["edits"] == 2


def test_bleu(m):
    perfect = m["bleu"].compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]])
    assert perfect["bleu"] == pytest.approx(100.0)
    # hand computation: hyp "the cat sat on a mat" vs ref "the cat sat on the mat" (6 tokens each, bp=1)
    # p1 = 5/6, p2 = 3/5, p3 = 2/4, p4 = 1/3 -> BLEU = (5/6 * 3/5 * 1/2 * 1/3) ** (1/4)
    out = m["bleu"].compute(predictions=["the cat sat on a mat"], references=[["the cat sat on the mat"]])
    assert out["bleu"] == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 2 * 1 / 3) ** 0.25, abs=1e-6)
    assert out["brevity_penalty"] == 1.0
    # several references, not equally many per prediction; the second reference rescues the second line
    multi = m["bleu"].compute(
        predictions=["the cat sat on the mat", "a dog ran in the park"],
        references=[["the cat sat on the mat"], ["one dog walked", "a dog ran in the park"]],
    )
    assert multi["bleu"] == pytest.approx(100.0)


def test_chrf(m):
    assert m["chrf"].compute(predictions=["le chat noir"],
                             references=[["le chat noir"]])["chrf"] == pytest.approx(100.0)
    worse = m["chrf"].compute(predictions=["le chien noir"], references=[["le chat noir"]])["chrf"]
    better = m["chrf"].compute(predictions=["le chat noire"], references=[["le chat noir"]])["chrf"]
    assert 0 < worse < better < 100
    import sacrebleu

    expected = sacrebleu.corpus_chrf(["le chien noir"], [["le chat noir"]]).score
    assert worse == pytest.approx(expected)
    plusplus = m["chrf"].compute(predictions=["le chien noir"], references=[["le chat noir"]], word_order=2)
    assert plusplus["chrf"] != worse and plusplus["word_order"] == 2
