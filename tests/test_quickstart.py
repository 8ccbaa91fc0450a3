"""The quickstart's trivial baselines, against values computed by hand."""

from __future__ import annotations

import math

import pytest

from hfnn.apps.quickstart import beats, letter_baseline_per, majority_accuracy, unigram_perplexity
from hfnn.data.tokenization import train_tokenizer


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


def test_recipe_changes_name_real_models_and_options():
    """Every quickstart change of a recipe is for a listed model and an option of its pipeline (a misspelt
    name would otherwise fail only at the end of a long run), and its config fields exist in the config."""
    import importlib

    from hfnn.apps.quickstart import QUICKSTART_MODELS, QUICKSTART_OVERRIDES, _pipeline_fields
    from hfnn.training.recipes import pipeline_module

    models = {row.label: (entry, row) for entry, row in QUICKSTART_MODELS}
    for label, changes in QUICKSTART_OVERRIDES.items():
        assert label in models, label
        entry, row = models[label]
        fields = _pipeline_fields(pipeline_module(row.task))
        assert set(changes) <= fields, (label, set(changes) - fields)
        config = getattr(importlib.import_module(f"hfnn.models.{entry.config_module}"), entry.config_class)()
        missing = [k for k in changes.get("config_overrides", {}) if not hasattr(config, k)]
        assert not missing, (label, missing)


def test_the_g2p_row_trains_the_changed_recipe(tmp_path, monkeypatch):
    """The RNN attention G2P row runs its shipped recipe with the quickstart's changes as typed options: the
    config fields as a mapping (it updates the recipe's), the batch, learning rate and greedy decoding, beside
    the time budget."""
    import json
    from types import SimpleNamespace

    from hfnn.apps import quickstart
    from hfnn.training.recipes import pipeline_module

    seen = []

    def fake_run_pipeline(task, recipe, **options):
        seen.append((task, recipe, options))
        return SimpleNamespace(results={"test_per": 0.2, "parameters": 10, "train_seconds": 1.0},
                               output_dir=options["output_dir"])

    monkeypatch.setattr(pipeline_module("seq2seq"), "run_pipeline", fake_run_pipeline)
    monkeypatch.setattr(quickstart, "baseline", lambda task, corpus, run_dir: ("test per", 0.5))
    monkeypatch.setattr(quickstart, "_summary_plot", lambda done, path: False)
    code = quickstart.run_quickstart(tmp_path / "qs", minutes_per_model=0.25, only=["rnn_seq2seq"])
    assert code == 0 and len(seen) == 1
    task, recipe, options = seen[0]
    assert task == "seq2seq" and recipe == "rnn_seq2seq_cmudict"
    assert options["max_train_minutes"] == 0.25 and options["overwrite_output_dir"] is True
    assert options["config_overrides"] == {"hidden_size": 192, "embedding_size": 64}
    assert options["per_device_train_batch_size"] == 64 and options["generation_num_beams"] == 1
    assert options["learning_rate"] == 0.005 and options["max_eval_samples"] == 200 and options["num_samples"] == 1
    summary = json.loads((tmp_path / "qs" / "summary.json").read_text())
    assert summary[0]["recipe_changes"]["per_device_train_batch_size"] == 64 and summary[0]["beats_baseline"]


def test_every_run_starts_with_the_process_thread_count(tmp_path, monkeypatch):
    """A run whose thread tuner chose one thread does not leave the next run a count it would take for a
    user's fixed choice."""
    from types import SimpleNamespace

    import torch

    from hfnn.apps import quickstart
    from hfnn.training.recipes import pipeline_module

    seen = []

    def fake_run_pipeline(task, recipe, **options):
        seen.append(torch.get_num_threads())
        torch.set_num_threads(1)  # what a tuner beside a busy core leaves
        return SimpleNamespace(results={"test_per": 0.2, "parameters": 10, "train_seconds": 1.0},
                               output_dir=options["output_dir"])

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(pipeline_module("seq2seq"), "run_pipeline", fake_run_pipeline)
        monkeypatch.setattr(quickstart, "baseline", lambda task, corpus, run_dir: ("test per", 0.5))
        monkeypatch.setattr(quickstart, "_summary_plot", lambda done, path: False)
        assert quickstart.run_quickstart(tmp_path / "qs", minutes_per_model=0.25, only=["seq2seq"]) == 0
        assert seen == [2, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
