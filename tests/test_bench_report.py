"""bench/report.py: a run of some benchmarks rewrites their sections and keeps every other section of
the last RESULTS.md (its headline lines, memory rows and sections written by other tools included)."""

from __future__ import annotations

from bench import report

RUN = {"command": "python -m bench --only baselines", "started": "2026-11-29T10:00:00", "wall_s": 60.0,
       "selected": ["baselines"], "quick": False}
RECORD = {
    "name": "baselines", "mode": "full", "command": RUN["command"], "started": "2026-11-29T10:00:00", "wall_s": 60.0,
    "memory": [],
    "result": {
        "tfidf": {"rows": {"train": 100, "validation": 10, "test": 10}, "runs": [
            {"ngram_range": [1, 2], "C": 4.0, "features": 1000, "validation_accuracy": 0.8, "test_accuracy": 0.75,
             "cpu_s": 2.0},
            {"ngram_range": [1, 3], "C": 8.0, "features": 2000, "validation_accuracy": 0.7, "test_accuracy": 0.9,
             "cpu_s": 3.0},
        ]},
        "hfnn_classifier": {"recipe": "mlp_ngrams_rotten_tomatoes", "command": "python -m x mlp_ngrams_rotten_tomatoes",
                            "parameters": 4180342, "train_epochs": 5.0, "validation_accuracy": 0.805,
                            "test_accuracy": 0.801, "train_seconds": 91.6},
        "ngram_cv": {"recipe": "mlp_ngrams_rotten_tomatoes", "folds": 3, "held_out": [33, 34, 33], "runs": [
            {"ngram_range": [1, 2], "fold_accuracy": [0.8, 0.7, 0.6]},
            {"ngram_range": [1, 3], "fold_accuracy": [0.7, 0.75, 0.5]},
        ]},
        "phonetisaurus": {"wer": 0.339, "per": 0.088, "train_s": 180.0, "predict_s": 5.0, "train_words": 50,
                          "train_pronunciations": 60, "test_words": 10, "unanswered": 0, "version": "0.3.0"},
    },
}

OLD = """# hfnn benchmarks

## Headline numbers

- LM line. <!-- lm -->
- Old baseline line. <!-- baselines -->

## 4. Language models under the same time budget

_ran 2026-11-01 10:00, full mode, 3.0 min._

The LM table, kept.

## 8. Baselines a user would pick instead

Old baseline text.

## 9. Peak memory of the training runs

| benchmark | run | peak RSS (MB) | at start (MB) | growth (MB) | wall s |
| --- | --- | ---: | ---: | ---: | ---: |
| lm | lm_budget gru | 749 | 445 | 305 | 207 |
| baselines | old row | 1 | 1 | 0 | 1 |

## 10. Mutation testing

Score 90 %.

## Commands

old commands
"""


def test_rerun_replaces_its_section_and_keeps_the_others(tmp_path):
    (tmp_path / "RESULTS.md").write_text(OLD, encoding="utf-8")
    text = report.write(tmp_path, {"baselines": RECORD}, RUN).read_text(encoding="utf-8")
    # the rerun benchmark: new numbers (the 1-2-gram run wins on validation), old text and headline gone
    assert "TF-IDF logistic regression on Rotten Tomatoes (n-grams 1–2, chosen on validation): 75.0 %" in text
    assert "Phonetisaurus on CMUdict: 33.9 % WER / 8.8 % PER" in text
    assert "Old baseline" not in text and "old row" not in text
    # the others: kept as they were
    assert "- LM line. <!-- lm -->" in text
    assert "The LM table, kept." in text and "_ran 2026-11-01 10:00, full mode, 3.0 min._" in text
    assert "| lm | lm_budget gru | 749 | 445 | 305 | 207 |" in text
    assert "## 10. Mutation testing" in text and "Score 90 %." in text
    # benchmarks never run and absent from the old report say how to run them
    assert "_Not run (run `python -m bench --only cnn_rnn`)._" in text
    # a second write from the same records gives the same report (nothing accumulates)
    assert report.write(tmp_path, {"baselines": RECORD}, RUN).read_text(encoding="utf-8") == text


def test_report_without_previous_file(tmp_path):
    text = report.write(tmp_path, {"baselines": RECORD}, RUN).read_text(encoding="utf-8")
    assert text.count("## ") >= 10
    assert "| Phonetisaurus | 33.9 % | 8.8 % | 180 | 5 | 0 |" in text
    # hfnn's recipe sits beside the logistic regression, in the section and the headline
    assert "| `mlp_ngrams_rotten_tomatoes` | 4,180,342 | 5.0 | 80.5 % | 80.1 % | 92 |" in text
    assert "hfnn's `mlp_ngrams_rotten_tomatoes` on Rotten Tomatoes: 80.1 % test accuracy after 92 s" in text
    assert "python -m x mlp_ngrams_rotten_tomatoes" in text.split("## Commands")[1]  # listed with the other runs
    # the n-gram ranges compared by cross-validation on the training split: a row per range, mean and wins
    assert "| 1–2 | 80.0 % | 70.0 % | 60.0 % | 70.0 % |" in text and "| 1–3 | 70.0 % | 75.0 % | 50.0 % | 65.0 % |" in text
    assert "held-out folds of 33–34 snippets" in text
    assert "3-fold cross-validation on the training split: 1–2 70.0 %, 1–3 65.0 % (1–2 ahead on 2 of 3 folds)" in text


def test_report_says_when_a_cross_validation_run_failed(tmp_path):
    cv = {**RECORD["result"]["ngram_cv"], "runs": [{"ngram_range": [1, 2], "fold_accuracy": [0.8, None, 0.6]},
                                                   {"ngram_range": [1, 3], "fold_accuracy": [0.7, 0.75, 0.5]}]}
    record = {**RECORD, "result": {**RECORD["result"], "ngram_cv": cv}}
    text = report.write(tmp_path, {"baselines": record}, RUN).read_text(encoding="utf-8")
    assert "| 1–2 | 80.0 % | failed | 60.0 % | – |" in text and "ahead on" not in text


def test_report_says_when_the_recipe_beside_the_baselines_failed(tmp_path):
    failed = {**RECORD, "result": {**RECORD["result"], "hfnn_classifier": {"recipe": "r", "error": "Boom"}}}
    text = report.write(tmp_path, {"baselines": failed}, RUN).read_text(encoding="utf-8")
    assert "**hfnn's `r` failed**" in text and "Boom" in text
