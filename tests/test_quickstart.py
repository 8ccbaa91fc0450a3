"""The quickstart's trivial baselines, against values computed by hand."""

from __future__ import annotations

import math

import pytest

from hfnn.quickstart import beats, letter_baseline_per, majority_accuracy, unigram_perplexity
from hfnn.tokenization import train_tokenizer


def test_unigram_perplexity_is_the_smoothed_unigram_of_the_training_tokens():
    tok = train_tokenizer(["abab", "aab"], kind="char")
    a, b = tok.convert_tokens_to_ids(["a", "b"])
    train, test = ["aaab"], ["ab"]
    vocab = len(tok)
    p_a, p_b = (3 + 1) / (4 + vocab), (1 + 1) / (4 + vocab)
    expected = math.exp(-(math.log(p_a) + math.log(p_b)) / 2)
    assert unigram_perplexity(tok, train, test) == pytest.approx(expected)
    with pytest.raises(ValueError, match="no tokens"):
        unigram_perplexity(tok, train, [""])


def test_majority_accuracy():
    assert majority_accuracy([1, 1, 0], [1, 0, 0, 0]) == 0.25
    assert majority_accuracy(["pos", "pos", "neg"], ["pos"]) == 1.0


def test_letter_baseline_reads_each_letter_as_its_most_frequent_phoneme():
    # "cat" -> K AE T and "cot" -> K AA T pair up letter by letter; "c" is K, "a" AE, "o" AA, "t" T
    words, phonemes = ["cat", "cot", "act"], ["K AE T", "K AA T", "AE K T"]
    assert letter_baseline_per(words, phonemes, ["tac"], [["T AE K"]]) == 0.0
    # one substitution in three phonemes
    assert letter_baseline_per(words, phonemes, ["cat"], [["K AH T"]]) == pytest.approx(1 / 3)


def test_beats_knows_which_way_is_better():
    assert beats("test perplexity", 5.0, 20.0) and not beats("test perplexity", 25.0, 20.0)
    assert beats("test accuracy", 0.8, 0.5) and not beats("test accuracy", 0.5, 0.5)
    assert beats("test per", 0.1, 0.6)
