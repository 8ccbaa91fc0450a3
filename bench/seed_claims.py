"""The seed note's claims, measured: CNN vs RNN, activation functions and depth, attention in
seq2seq, and language models under one time budget.

Accuracy numbers come from the training pipelines exactly as a user runs them
(``hfnn.pipelines.run_classification.main`` / ``run_seq2seq.main`` with the shipped recipes) with a
shorter time budget, and from ``bench/lm_budget.py``'s ``main``. Each training run is one child
process (see :mod:`bench.run_all`), so that each has its own peak memory.

The ``*_job`` functions run in the child; the ``bench_*`` functions run in the parent.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from bench.speed import alternate, clock

__all__ = [
    "bench_activations",
    "bench_attention",
    "bench_cnn_rnn",
    "bench_lm",
    "classification_job",
    "cnn_rnn_timing_job",
    "lm_job",
    "seq2seq_job",
]

SEED = 42

# ---------------------------------------------------------------------------------------------
# shared: a pipeline run
# ---------------------------------------------------------------------------------------------


def _flag_list(options: dict) -> list[str]:
    argv = []
    for key, value in options.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        elif isinstance(value, bool):
            value = str(value).lower()
        argv += [f"--{key}", str(value)]
    return argv


def pipeline_options(out_dir: Path, minutes: float, quick: bool, extra: dict | None = None,
                     quick_extra: dict | None = None) -> dict:
    """Options of a pipeline run (``run_pipeline(task, recipe, **options)``): a time budget, no model card, no
    sample printout."""
    options = {
        "output_dir": str(out_dir), "overwrite_output_dir": True, "max_train_minutes": minutes,
        "disable_tqdm": True, "write_model_card": False, "report_to": "none", "seed": SEED,
    }
    options.update(extra or {})
    if quick:  # a few optimizer steps on a few hundred examples, no checkpoints
        options.update({"max_steps": 3, "logging_steps": 1, "save_strategy": "no"})
        options.update(quick_extra or {})
    return options


def command_line(module: str, recipe: str, options: dict) -> str:
    """The shell command equivalent to ``run_pipeline(task, recipe, **options)`` with the pipeline module."""
    quoted = [a if a and all(c.isalnum() or c in "-_./:=," for c in a) else "'" + a.replace("'", "'\\''") + "'"
              for a in [recipe] + _flag_list(options)]
    return f"python -m {module} " + " ".join(quoted)


def _keep(results: dict, prefixes=("test_", "validation_")) -> dict:
    keep = {"parameters", "train_steps", "train_seconds", "train_loss", "train_examples", "vocab_size",
            "source_vocab_size", "target_vocab_size", "train_epochs", "architecture", "attention",
            "generation_num_beams"}
    return {k: v for k, v in results.items()
            if k in keep or (k.startswith(prefixes) and isinstance(v, (int, float)))}


def classification_job(recipe: str, options: dict) -> dict:
    from hfnn.pipelines.common import run_pipeline

    return _keep(run_pipeline("text-classification", recipe, **options).results)


# ---------------------------------------------------------------------------------------------
# 1. CNN vs RNN: parameters, forward+backward time against sequence length, accuracy
# ---------------------------------------------------------------------------------------------

TIMING = {
    "full": dict(width=128, vocab=20000, batch=32, lengths=(16, 32, 64, 128, 256, 512, 1024), repeats=5,
                 min_seconds=0.05),
    "quick": dict(width=32, vocab=1000, batch=4, lengths=(16, 32, 64, 128), repeats=3, min_seconds=0.005),
}
# the recipe models, shrunk for --quick
QUICK_CLASSIFIER_OVERRIDES = {
    "cnn": {"embedding_size": 16, "window_sizes": [3, 4, 5], "num_filters": 8, "dropout": 0.5, "max_norm": 3.0},
    "rnn": {"rnn_type": "gru", "bidirectional": True, "pooling": "last", "embedding_size": 16, "hidden_size": 16,
            "num_hidden_layers": 1, "dropout": 0.3},
}
QUICK_CLASSIFICATION = {"max_train_samples": 200, "max_eval_samples": 100, "eval_strategy": "no",
                        "load_best_model_at_end": False}


def _timing_models(size: dict):
    import torch

    from hfnn import CnnConfig, CnnForSequenceClassification, RnnConfig, RnnForSequenceClassification

    torch.manual_seed(0)
    width, vocab = size["width"], size["vocab"]
    rnn = dict(vocab_size=vocab, embedding_size=width, hidden_size=width, num_hidden_layers=1, rnn_type="gru",
               dropout=0.0, use_cache=False, num_labels=2)
    return {
        "cnn": CnnForSequenceClassification(CnnConfig(
            vocab_size=vocab, embedding_size=width, window_sizes=[3, 4, 5], num_filters=width, dropout=0.0,
            num_labels=2)),
        "gru": RnnForSequenceClassification(RnnConfig(**rnn)),
        "bigru": RnnForSequenceClassification(RnnConfig(**rnn, bidirectional=True)),
    }


def cnn_rnn_timing_job(quick: bool, threads: int) -> dict:
    """Forward + backward time of a CNN and a GRU classifier of the same width, per sequence length."""
    import torch

    timer = clock(threads)
    size = TIMING["quick" if quick else "full"]
    models = _timing_models(size)
    params = {}
    for name, model in models.items():
        total = sum(p.numel() for p in model.parameters())
        embedding = model.get_input_embeddings().weight.numel()
        params[name] = {"total": total, "embedding": embedding, "non_embedding": total - embedding}
    generator = torch.Generator().manual_seed(0)
    times = {}
    for length in size["lengths"]:
        ids = torch.randint(1, size["vocab"], (size["batch"], length), generator=generator)
        labels = torch.randint(0, 2, (size["batch"],), generator=generator)

        def step(name):
            model = models[name]
            model(input_ids=ids, labels=labels).loss.backward()
            model.zero_grad(set_to_none=True)

        calls = {}
        for name in models:  # warm-up, and how many calls make one measurement of at least min_seconds
            step(name)
            start = timer()
            step(name)
            calls[name] = max(1, math.ceil(size["min_seconds"] / max(timer() - start, 1e-6)))

        def measure(name):
            start = timer()
            for _ in range(calls[name]):
                step(name)
            return (timer() - start) / calls[name]

        values = alternate(measure, list(models), size["repeats"], warm_up=False)
        times[str(length)] = {name: statistics.median(v) for name, v in values.items()}
        times[str(length)]["ratios"] = {
            name: statistics.median(a / b for a, b in zip(values[name], values["cnn"])) for name in ("gru", "bigru")
        }
    return {"size": {k: list(v) if isinstance(v, tuple) else v for k, v in size.items()}, "parameters": params,
            "seconds": times, "clock": "process CPU time" if threads == 1 else "wall clock"}


def bench_cnn_rnn(runner) -> dict:
    timing = runner.run("cnn_rnn", "CNN vs GRU forward+backward timing", cnn_rnn_timing_job,
                        quick=runner.quick, threads=runner.threads)
    accuracy = {}
    for arch in ("cnn", "rnn"):
        recipe = f"{arch}_rotten_tomatoes"
        options = pipeline_options(
            runner.scratch / "runs" / recipe, runner.minutes["classification"], runner.quick,
            extra={"num_samples": 0},
            quick_extra={**QUICK_CLASSIFICATION, "config_overrides": QUICK_CLASSIFIER_OVERRIDES[arch]},
        )
        result = runner.run("cnn_rnn", recipe, classification_job, training=True, recipe=recipe, options=options)
        result["command"] = command_line("hfnn.pipelines.run_classification", recipe, options)
        accuracy[arch] = result
    return {"timing": timing, "accuracy": accuracy, "minutes": runner.minutes["classification"]}


# ---------------------------------------------------------------------------------------------
# 2. Activations: identity at depth 1 and 4, tanh and relu at depth 4
# ---------------------------------------------------------------------------------------------

ACTIVATION_RUNS = [("identity", 1), ("identity", 4), ("tanh", 4), ("relu", 4)]
# the mlp_rotten_tomatoes recipe's model, but a plain bag of words (unigrams only): a linear model of the
# mean word vector is then all that the identity network can be, at any depth
MLP_OVERRIDES = {"embedding_size": 128, "hidden_size": 128, "ngram_range": [1, 1], "dropout": 0.3}
QUICK_MLP_OVERRIDES = {"embedding_size": 16, "hidden_size": 16, "ngram_range": [1, 1], "dropout": 0.3}


def bench_activations(runner) -> dict:
    runs = []
    base = QUICK_MLP_OVERRIDES if runner.quick else MLP_OVERRIDES
    for activation, depth in ACTIVATION_RUNS:
        overrides = {**base, "activation": activation, "num_hidden_layers": depth}
        label = f"mlp_{activation}_depth{depth}"
        options = pipeline_options(
            runner.scratch / "runs" / label, runner.minutes["mlp"], runner.quick,
            extra={"num_samples": 0, "config_overrides": overrides}, quick_extra=QUICK_CLASSIFICATION,
        )
        result = runner.run("activations", label, classification_job, training=True, recipe="mlp_rotten_tomatoes",
                            options=options)
        result.update(activation=activation, depth=depth,
                      command=command_line("hfnn.pipelines.run_classification", "mlp_rotten_tomatoes", options))
        runs.append(result)
    return {"runs": runs, "minutes": runner.minutes["mlp"], "overrides": base}


# ---------------------------------------------------------------------------------------------
# 3. Attention: none / bahdanau / luong / Transformer on CMUdict, overall and by word length
# ---------------------------------------------------------------------------------------------

SEQ2SEQ_RECIPES = {
    "none": "rnn_seq2seq_none_cmudict",
    "bahdanau": "rnn_seq2seq_cmudict",
    "luong": "rnn_seq2seq_luong_cmudict",
    "transformer": "transformer_seq2seq_cmudict",
}
QUICK_SEQ2SEQ_OVERRIDES = {
    "none": {"attention": "none", "hidden_size": 16, "embedding_size": 8},
    "bahdanau": {"attention": "bahdanau", "hidden_size": 16, "embedding_size": 8},
    "luong": {"attention": "luong", "luong_score": "general", "input_feeding": True, "hidden_size": 16,
              "embedding_size": 8},
    "transformer": {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32, "encoder_layers": 1,
                    "decoder_layers": 1, "position_embedding_type": "learned"},
}
LENGTH_BUCKETS = [(1, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 99)]
SEQ2SEQ_SAMPLES = {"full": {"validation": 300, "test": 2000}, "quick": {"validation": 20, "test": 60}}


def _bucket_label(low: int, high: int) -> str:
    return f"{low}-{high}" if high < 99 else f"{low}+"


def seq2seq_job(recipe: str, options: dict, max_source_length: int, max_target_length: int,
                batch_size: int = 256) -> dict:
    """Trains with the seq2seq pipeline (``run_pipeline``), then loads the saved folder and generates (greedy,
    batched) for the pipeline's test subset itself: the pipeline reports overall WER/PER only, not per-example
    outputs."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from hfnn.data.corpora import load_corpus
    from hfnn.metrics import load_metric
    from hfnn.models.pipeline_seq2seq import SOURCE_TOKENIZER_SUBFOLDER
    from hfnn.pipelines import run_seq2seq
    from hfnn.pipelines.common import run_pipeline, subset

    run = run_pipeline("seq2seq", recipe, **options)
    results, out_dir, test_samples = _keep(run.results), run.output_dir, options["max_test_samples"]

    # the pipeline's test subset, in the pipeline's order
    raw = load_corpus("cmudict", seed=SEED)
    test = run_seq2seq.sorted_by_length(subset(raw["test"], test_samples, SEED), "word")
    words, references = list(test["word"]), [list(r) for r in test["references"]]
    model = AutoModelForSeq2SeqLM.from_pretrained(out_dir).eval()
    source_tokenizer = AutoTokenizer.from_pretrained(out_dir / SOURCE_TOKENIZER_SUBFOLDER)
    target_tokenizer = AutoTokenizer.from_pretrained(out_dir)
    predictions = []
    with torch.no_grad():
        for i in range(0, len(words), batch_size):
            batch = source_tokenizer(words[i : i + batch_size], truncation=True, padding=True, return_tensors="pt",
                                     max_length=max_source_length)
            ids = model.generate(**batch, num_beams=1, do_sample=False, max_new_tokens=max_target_length)
            predictions += [" ".join(p.split()) for p in target_tokenizer.batch_decode(ids, skip_special_tokens=True)]
    wer, per = load_metric("wer"), load_metric("per")
    overall = {"wer": wer.compute(predictions=predictions, references=references)["wer"],
               "per": per.compute(predictions=predictions, references=references)["per"], "words": len(words)}
    by_length = []
    for low, high in LENGTH_BUCKETS:
        picks = [i for i, w in enumerate(words) if low <= len(w) <= high]
        if not picks:
            continue
        preds, refs = [predictions[i] for i in picks], [references[i] for i in picks]
        by_length.append({"letters": _bucket_label(low, high), "words": len(picks),
                          "wer": wer.compute(predictions=preds, references=refs)["wer"],
                          "per": per.compute(predictions=preds, references=refs)["per"]})
    long_references = sum(1 for refs in references if min(len(r.split()) for r in refs) > 19)
    (out_dir / "test_predictions.jsonl").write_text("".join(
        json.dumps({"word": w, "prediction": p, "references": r}) + "\n"
        for w, p, r in zip(words, predictions, references)))
    generation_max_length = getattr(model.generation_config, "max_length", None)
    return {**results, "regenerated": overall, "by_length": by_length,
            "words_with_more_than_19_phonemes": long_references,
            "saved_generation_max_length": generation_max_length,
            "examples": [{"word": w, "prediction": p, "reference": r[0]}
                         for w, p, r in list(zip(words, predictions, references))[:: max(1, len(words) // 4)][:4]]}


def bench_attention(runner) -> dict:
    mode = "quick" if runner.quick else "full"
    samples = SEQ2SEQ_SAMPLES[mode]
    recipe_minutes = 24.0  # what the shipped recipes are sized for, if one does not say
    runs = {}
    for name, recipe in SEQ2SEQ_RECIPES.items():
        from hfnn.training.recipes import load_recipe

        shipped = load_recipe(recipe)
        budget = runner.minutes["seq2seq"]
        # the warm-up takes the same share of the (shorter) budget as in the shipped recipe: a fraction (the
        # budget callback runs it in time) as it is, a step count scaled with the budget
        warmup = shipped.get("warmup_steps", 0)
        if warmup >= 1:
            warmup = max(10, round(warmup * budget / shipped.get("max_train_minutes", recipe_minutes)))
        # greedy decoding for all four (the RNN recipes score with beam search by default), so that the
        # pipeline's scores and the benchmark's own regeneration are the same decoding, like for like
        extra = {"max_eval_samples": samples["validation"], "max_test_samples": samples["test"],
                 "save_strategy": "no", "num_samples": 1, "num_attention_examples": 0, "warmup_steps": warmup,
                 "generation_num_beams": 1}
        quick_extra = {"max_train_samples": 300, "per_device_train_batch_size": 32,
                       "config_overrides": QUICK_SEQ2SEQ_OVERRIDES[name], "warmup_steps": 1}
        options = pipeline_options(runner.scratch / "runs" / recipe, budget, runner.quick, extra=extra,
                                   quick_extra=quick_extra)
        result = runner.run("attention", recipe, seq2seq_job, training=True, recipe=recipe, options=options,
                            max_source_length=int(shipped.get("max_source_length", 64)),
                            max_target_length=int(shipped.get("max_target_length", 64)))
        result["command"] = command_line("hfnn.pipelines.run_seq2seq", recipe, options)
        result["warmup_steps"] = warmup
        result["recipe_warmup_steps"] = shipped.get("warmup_steps")
        result["recipe_minutes"] = shipped.get("max_train_minutes")
        result["recipe_num_beams"] = shipped.get("generation_num_beams")
        runs[name] = result
    return {"runs": runs, "minutes": runner.minutes["seq2seq"], "samples": samples,
            "buckets": [_bucket_label(*b) for b in LENGTH_BUCKETS]}


# ---------------------------------------------------------------------------------------------
# 4. Language models under one budget: bench/lm_budget.py
# ---------------------------------------------------------------------------------------------

LM_MODELS = ["rnn_tanh", "gru", "lstm", "transformer"]
QUICK_LM_MODELS = {  # the same four names, tiny
    "rnn_tanh": ("rnn", dict(rnn_type="rnn_tanh", hidden_size=16, embedding_size=8, num_hidden_layers=1, dropout=0.0)),
    "gru": ("rnn", dict(rnn_type="gru", hidden_size=16, embedding_size=8, num_hidden_layers=1, dropout=0.0)),
    "lstm": ("rnn", dict(rnn_type="lstm", hidden_size=16, embedding_size=8, num_hidden_layers=1, dropout=0.0)),
    "transformer": ("transformer", dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        max_position_embeddings=64, dropout=0.0, attention_dropout=0.0)),
}
QUICK_LM_CHARS = 20000  # characters kept from each play in --quick


def prepare_lm(quick: bool, block_size: int) -> None:
    """In the parent, before any job: encode the corpus once (every child inherits it) and, in --quick,
    shrink ``lm_budget``'s models and corpus."""
    import functools

    from bench import lm_budget

    if quick:
        lm_budget.MODELS.update(QUICK_LM_MODELS)
        original = lm_budget.encode_splits

        def small_encode_splits(block_size):
            import torch

            corpus = lm_budget.load_corpus("shakespeare")
            tok = lm_budget.train_tokenizer([t[:QUICK_LM_CHARS] for t in corpus["train"]["text"]], kind="char")
            streams = {}
            for split in ("train", "validation"):
                ids = []
                for text in corpus[split]["text"]:
                    ids.extend(tok(text[:QUICK_LM_CHARS], add_special_tokens=False)["input_ids"])
                    ids.append(tok.eos_token_id)
                streams[split] = torch.tensor(ids, dtype=torch.long)
            return tok, streams

        small_encode_splits.original = original
        lm_budget.encode_splits = small_encode_splits
    lm_budget.encode_splits = functools.lru_cache(maxsize=None)(lm_budget.encode_splits)
    lm_budget.encode_splits(block_size)


def lm_job(argv: list[str]) -> dict:
    from bench import lm_budget

    (run,) = lm_budget.main(argv)
    return run


def lm_argv(name: str, out_dir: Path, minutes: float, quick: bool, threads: int) -> list[str]:
    if quick:
        return ["--models", name, "--minutes", "0.01", "--eval-every", "0.2", "--eval-blocks", "4", "--block-size",
                "32", "--batch-size", "8", "--threads", str(threads), "--out", str(out_dir)]
    return ["--models", name, "--minutes", str(minutes), "--eval-every", "10", "--threads", str(threads),
            "--out", str(out_dir)]


def bench_lm(runner) -> dict:
    runs = {}
    for name in LM_MODELS:
        argv = lm_argv(name, runner.scratch / "runs" / f"lm_{name}", runner.minutes["lm"], runner.quick,
                       runner.threads)
        result = runner.run("lm", f"lm_budget {name}", lm_job, training=True, argv=argv)
        result["command"] = "python bench/lm_budget.py " + " ".join(argv)
        runs[name] = result
    return {"runs": runs, "minutes": 0.01 if runner.quick else runner.minutes["lm"]}
