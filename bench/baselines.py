"""What a user would pick instead of hfnn, measured on hfnn's own splits.

- Rotten Tomatoes: scikit-learn TF-IDF n-grams + logistic regression, the inverse regularisation
  strength C chosen on the validation split, accuracy on the test split (the same rows the
  classification recipes are scored on).
- CMUdict grapheme-to-phoneme: Phonetisaurus (a joint-sequence WFST model; ``pip install
  phonetisaurus`` ships its OpenFst/MITLM binaries) trained on every training pronunciation and
  scored on the test words with hfnn's own WER and PER metric modules (a word is right when it
  matches any of its reference pronunciations).

Both run on one thread and report their training time, so that they sit beside hfnn's models in
one report; hfnn's best Rotten Tomatoes recipe (``BEST_CLASSIFIER``) is trained and scored in the same
run. The recipe's n-gram range is chosen without the validation and test splits: ``ngram_cv`` trains the
recipe with each range of ``CV_NGRAMS`` on k folds of the training split and scores it on the held-out
fold. The ``*_job`` functions run in a child process (see :mod:`bench.run_all`).
"""

from __future__ import annotations

import csv
import os
import random
import tempfile
import time
from pathlib import Path

__all__ = ["BEST_CLASSIFIER", "CV_NGRAMS", "bench_baselines", "best_classifier", "ngram_cv", "phonetisaurus_job",
           "tfidf_job"]

C_GRID = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
NGRAMS = ((1, 2), (1, 3))
QUICK_C_GRID = (1.0, 8.0)
QUICK_ROWS = {"train": 2000, "validation": 300, "test": 300}
QUICK_WORDS = {"train": 3000, "test": 200}
BEST_CLASSIFIER = "mlp_ngrams_rotten_tomatoes"  # hfnn's recipe set beside the logistic regression
CV_NGRAMS = ((1, 2), (1, 3))  # the n-gram ranges the recipe's is chosen among
CV_FOLDS = {"full": (5, None), "quick": (2, 400)}  # folds, training rows used (None: all)


def _rows(split, quick: bool, name: str, sizes: dict):
    return split.select(range(min(len(split), sizes[name]))) if quick else split


def tfidf_job(quick: bool = False) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from hfnn.data.corpora import load_corpus

    data = load_corpus("rotten_tomatoes")
    splits = {name: _rows(data[name], quick, name, QUICK_ROWS) for name in ("train", "validation", "test")}
    text = {name: list(split["text"]) for name, split in splits.items()}
    label = {name: list(split["label"]) for name, split in splits.items()}
    runs = []
    for ngram_range in NGRAMS[:1] if quick else NGRAMS:
        start = time.process_time()
        vectorizer = TfidfVectorizer(ngram_range=ngram_range, sublinear_tf=True, min_df=1)
        train = vectorizer.fit_transform(text["train"])
        validation, test = vectorizer.transform(text["validation"]), vectorizer.transform(text["test"])
        best = None
        for c in QUICK_C_GRID if quick else C_GRID:
            model = LogisticRegression(C=c, max_iter=2000).fit(train, label["train"])
            score = float((model.predict(validation) == label["validation"]).mean())
            if best is None or score > best[0]:
                best = (score, c, model)
        score, c, model = best
        runs.append({
            "ngram_range": list(ngram_range), "C": c, "validation_accuracy": score,
            "test_accuracy": float((model.predict(test) == label["test"]).mean()),
            "features": len(vectorizer.vocabulary_), "cpu_s": time.process_time() - start,
        })
    return {"runs": runs, "rows": {name: len(split) for name, split in splits.items()}}


def phonetisaurus_guesses(phonetisaurus, train, words: list[str]) -> tuple[dict, dict, float, float]:
    """Phonetisaurus trained on the ``word``/``phonemes`` rows of ``train``, then asked for ``words``: its
    lexicon, ``{word: phonemes}`` of the words it answered, and the training and prediction seconds."""
    lexicon: dict[str, list[list[str]]] = {}
    for word, phonemes in zip(train["word"], train["phonemes"]):
        lexicon.setdefault(word, []).append(phonemes.split())
    env = {**os.environ, **phonetisaurus.guess_environment()}
    with tempfile.TemporaryDirectory() as folder:
        model_path = os.path.join(folder, "g2p.fst")
        start = time.monotonic()
        phonetisaurus.train(lexicon, model_path, env=env)
        train_s = time.monotonic() - start
        start = time.monotonic()
        guesses = dict(phonetisaurus.predict(words, model_path, nbest=1, env=env))
        predict_s = time.monotonic() - start
    return lexicon, guesses, train_s, predict_s


def phonetisaurus_job(quick: bool = False) -> dict:
    try:
        import phonetisaurus
    except ImportError:
        return {"skipped": "phonetisaurus is not installed: pip install phonetisaurus (or pip install -e '.[bench]')"}
    from hfnn.data.corpora import load_corpus
    from hfnn.metrics import load_metric

    data = load_corpus("cmudict")
    train = _rows(data["train"], quick, "train", QUICK_WORDS)
    test = _rows(data["test"], quick, "test", QUICK_WORDS)
    lexicon, guesses, train_s, predict_s = phonetisaurus_guesses(phonetisaurus, train, list(test["word"]))
    # a word the model gives no pronunciation for counts as wrong (an empty prediction)
    predictions = [" ".join(guesses.get(word, [])) for word in test["word"]]
    references = [list(refs) for refs in test["references"]]
    return {
        "wer": load_metric("wer").compute(predictions=predictions, references=references)["wer"],
        "per": load_metric("per").compute(predictions=predictions, references=references)["per"],
        "train_s": train_s, "predict_s": predict_s, "train_words": len(lexicon),
        "train_pronunciations": len(train), "test_words": len(test),
        "unanswered": sum(word not in guesses for word in test["word"]),
        "version": getattr(phonetisaurus, "__version__", None) or _version("phonetisaurus"),
    }


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def best_classifier(runner) -> dict:
    """hfnn's best Rotten Tomatoes recipe as shipped (its own time budget), on the rows the baseline is scored on."""
    from .seed_claims import QUICK_CLASSIFICATION, classification_job, command_line, pipeline_options

    options = pipeline_options(runner.scratch / "runs" / BEST_CLASSIFIER, _recipe_minutes(), runner.quick,
                               extra={"num_samples": 0}, quick_extra=QUICK_CLASSIFICATION)
    result = runner.run("baselines", BEST_CLASSIFIER, classification_job, training=True, recipe=BEST_CLASSIFIER,
                        options=options)
    return {**result, "recipe": BEST_CLASSIFIER,
            "command": command_line("hfnn.pipelines.run_classification", BEST_CLASSIFIER, options)}


def _write_folds(folder: Path, folds: int, rows: int | None) -> list[tuple[Path, Path, int]]:
    """The training split in ``folds`` shuffled folds (fixed seed), as (train, held-out) CSV files and the number
    of held-out rows."""
    from hfnn.data.corpora import load_corpus

    train = load_corpus("rotten_tomatoes")["train"]
    names = train.features["label"].names
    order = list(range(len(train)))
    random.Random(0).shuffle(order)
    order = order[:rows] if rows else order
    texts, labels = train["text"], train["label"]
    pairs = []
    for k in range(folds):
        held = set(order[k::folds])
        files = (folder / f"fold{k + 1}_train.csv", folder / f"fold{k + 1}_held_out.csv")
        for path, part in zip(files, ([i for i in order if i not in held], [i for i in order if i in held])):
            with open(path, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["text", "label"])
                writer.writerows([texts[i], names[labels[i]]] for i in part)
        pairs.append((*files, len(held)))
    return pairs


def ngram_cv(runner) -> dict:
    """The recipe with each n-gram range of ``CV_NGRAMS``, k-fold cross-validated on the training split: held-out
    accuracy per fold (the validation and test splits are not read)."""
    from .seed_claims import QUICK_CLASSIFICATION, classification_job, pipeline_options

    folds, rows = CV_FOLDS["quick" if runner.quick else "full"]
    folder = runner.scratch / "ngram_cv"
    folder.mkdir(parents=True, exist_ok=True)
    pairs = _write_folds(folder, folds, rows)
    minutes = _recipe_minutes()
    runs = []
    for low, high in CV_NGRAMS:
        accuracies = []
        for k, (train, held, _) in enumerate(pairs, 1):
            extra = {"num_samples": 0, "train_file": str(train), "validation_file": str(held), "test_file": str(held),
                     "config_overrides": {"ngram_range": [low, high]}, "save_strategy": "no"}
            options = pipeline_options(folder / "run", minutes, runner.quick, extra=extra,
                                       quick_extra=QUICK_CLASSIFICATION)
            result = runner.run("baselines", f"{BEST_CLASSIFIER} n-grams {low}-{high}, fold {k}/{folds}",
                                classification_job, training=True, recipe=BEST_CLASSIFIER, options=options)
            accuracies.append(result.get("test_accuracy"))
        runs.append({"ngram_range": [low, high], "fold_accuracy": accuracies})
    return {"recipe": BEST_CLASSIFIER, "folds": folds, "held_out": [n for _, _, n in pairs], "runs": runs}


def _recipe_minutes() -> float:
    from hfnn.training.recipes import load_recipe

    return load_recipe(BEST_CLASSIFIER)["max_train_minutes"]


def bench_baselines(runner) -> dict:
    return {
        "tfidf": runner.run("baselines", "TF-IDF logistic regression (Rotten Tomatoes)", tfidf_job, quick=runner.quick),
        "hfnn_classifier": best_classifier(runner),
        "ngram_cv": ngram_cv(runner),
        "phonetisaurus": runner.run("baselines", "Phonetisaurus (CMUdict)", phonetisaurus_job, quick=runner.quick),
    }
