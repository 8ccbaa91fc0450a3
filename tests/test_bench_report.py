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
    assert ("| 1–2 | 80.0 % | 70.0 % | 60.0 % | 70.0 % |" in text
            and "| 1–3 | 70.0 % | 75.0 % | 50.0 % | 65.0 % |" in text)
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


PRECISION = {
    "name": "precision", "mode": "full", "command": "python -m bench --only precision",
    "started": "2026-11-29T11:00:00", "wall_s": 90.0, "memory": [],
    "result": {
        "size": {"batch": 128, "lengths": [8, 10, 12], "steps": 5, "repeats": 7}, "clock": "process CPU time",
        "hardware": {"mkldnn": True, "amx_tile": True, "avx512_bf16": None, "cpu_capability": "AVX512"},
        "rows": [
            {"model": "Transformer encoder-decoder", "parameters": 1412345, "fp32_ms": 210.04, "bf16_ms": 150.0,
             "speedup": {"median": 1.4, "q1": 1.35, "q3": 1.452, "min": 1.3, "max": 1.5, "rounds": 7}},
            {"model": "Transformer, no dropout", "parameters": 3456789, "fp32_ms": 300.0, "bf16_ms": 200.0,
             "speedup": {"median": 1.5, "q1": 1.45, "q3": 1.55, "min": 1.4, "max": 1.6, "rounds": 7},
             "bf16_flash_ms": 410.0,
             "kernel_speedup": {"median": 2.05, "q1": 2.0, "q3": 2.1, "min": 1.9, "max": 2.2, "rounds": 7}},
            {"model": "GRU encoder-decoder, Luong attention", "parameters": 987654, "fp32_ms": 95.5, "bf16_ms": 120.2,
             "speedup": {"median": 0.79, "q1": 0.774, "q3": 0.81, "min": 0.7, "max": 0.9, "rounds": 7}},
        ],
    },
}


def test_precision_section_table_headline_and_place(tmp_path):
    (tmp_path / "RESULTS.md").write_text(OLD, encoding="utf-8")
    run = {**RUN, "command": PRECISION["command"], "selected": ["precision"]}
    text = report.write(tmp_path, {"precision": PRECISION}, run).read_text(encoding="utf-8")
    section = text.split("## 12. Reduced precision on the CPU")[1].split("\n## ")[0]
    assert "| Transformer encoder-decoder | 1,412,345 | 210.0 | 150.0 | 1.40x [1.35–1.45] | — | — |" in section
    assert ("| Transformer, no dropout | 3,456,789 | 300.0 | 200.0 | 1.50x [1.45–1.55] | 410.0 | 2.05x [2.00–2.10] |"
            in section)
    assert "| GRU encoder-decoder, Luong attention | 987,654 | 95.5 | 120.2 | 0.79x [0.77–0.81] | — | — |" in section
    assert "--bf16 true --use_cpu true" in section
    assert "AMX tiles yes, AVX-512 BF16 not known, oneDNN yes" in section
    assert ("- bfloat16 autocast vs float32 training steps on this CPU (AMX yes): Transformer encoder-decoder 1.40x, "
            "Transformer, no dropout 1.50x, GRU encoder-decoder, Luong attention 0.79x (> 1 = bf16 faster); the plain "
            "attention kernel vs the flash one in bf16, Transformer, no dropout: 2.05x. <!-- precision -->") in text
    # after the memory table, before the sections other tools write
    titles = [line for line in text.splitlines() if line.startswith("## ")]
    assert titles.index("## 11. Peak memory of the training runs") + 1 == titles.index(
        "## 12. Reduced precision on the CPU")
    between = titles[titles.index("## 12. Reduced precision on the CPU") + 1:titles.index("## 10. Mutation testing")]
    assert [title.split(".")[0] for title in between] == ["## 13"]  # the later benchmarks' sections, then the others
    # the other sections stay; a rewrite from the same records changes nothing
    assert "The LM table, kept." in text and "| lm | lm_budget gru | 749 | 445 | 305 | 207 |" in text
    assert report.write(tmp_path, {"precision": PRECISION}, run).read_text(encoding="utf-8") == text
