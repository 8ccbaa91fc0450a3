"""``hfnn quickstart``: a small model of every architecture trained on its built-in corpus through the
shipped recipes, each scored beside the trivial baseline of its task, in one table.

The baselines (computed on the same corpus splits the runs are scored on):

- language modelling: the perplexity of a unigram model of the training text (add-one smoothed),
  in the run's own tokens;
- classification: the accuracy of always answering the training split's most frequent label;
- grapheme-to-phoneme: the phoneme error rate of reading each letter as its most frequent phoneme
  (counted over the training words spelled with as many letters as they have phonemes).

A model that does not beat its baseline is flagged in the table instead of shown as a result, and
the command exits with status 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import sys
import time
from collections import Counter
from pathlib import Path

from hfnn.models import registry
from hfnn.models.errors import MissingPackageError, OptionError, UserError, first_line, format_table
from hfnn.training.recipes import find_recipe, pipeline_module

__all__ = ["QUICKSTART_MODELS", "QUICKSTART_OVERRIDES", "baseline", "letter_baseline_per", "majority_accuracy",
           "quickstart_plan", "run_quickstart", "unigram_perplexity"]

# (architecture, row) of every model the quickstart trains, in the table's order: the registry's quickstart rows
QUICKSTART_MODELS: tuple[tuple[registry.Architecture, registry.QuickstartModel], ...] = registry.quickstart_models()
# What a quickstart run changes in a model's shipped recipe, beside the time budget. The G2P recipes are sized
# for 30 minutes and barely leave the letter baseline in a quickstart's budget; half the width (the
# Transformer's feed-forward too), batches of 64 and a higher learning rate train enough steps, and greedy
# decoding scores the test split quickly (measured in bench/RESULTS.md, section "Recipe runs", "Quickstart's
# grapheme-to-phoneme rows").
QUICKSTART_OVERRIDES = {
    "RNN attention seq2seq": {"config_overrides": {"hidden_size": 192, "embedding_size": 64},
                              "per_device_train_batch_size": 64, "learning_rate": 0.005, "generation_num_beams": 1},
    "Transformer seq2seq": {"config_overrides": {"hidden_size": 128, "intermediate_size": 512},
                            "per_device_train_batch_size": 64, "learning_rate": 0.0015},
}
HEADER = ("architecture", "task", "params", "metric", "value", "baseline", "train time")
LOWER_IS_BETTER = {"perplexity", "loss", "per", "wer"}
_MAX_CHARS = 2_000_000  # of training text counted for the unigram baseline


# --------------------------------------------------------------------------------------------- baselines


def _texts(column, max_chars: int):
    total = 0
    for text in column:
        if total >= max_chars:
            break
        text = text[: max_chars - total]
        total += len(text)
        yield text


def unigram_perplexity(tokenizer, train_texts, test_texts, max_chars: int = _MAX_CHARS) -> float:
    """Perplexity on ``test_texts`` of the add-one smoothed unigram distribution of ``train_texts``' tokens."""
    counts: Counter = Counter()
    for ids in tokenizer(list(_texts(train_texts, max_chars)), add_special_tokens=False)["input_ids"]:
        counts.update(ids)
    total, vocab = sum(counts.values()), len(tokenizer)
    nll, n = 0.0, 0
    for ids in tokenizer(list(_texts(test_texts, max_chars // 4)), add_special_tokens=False)["input_ids"]:
        nll -= sum(math.log((counts[i] + 1) / (total + vocab)) for i in ids)
        n += len(ids)
    if n == 0:
        raise ValueError("unigram_perplexity: the test texts have no tokens")
    return math.exp(nll / n)


def majority_accuracy(train_labels, test_labels) -> float:
    """Accuracy of always predicting the most frequent training label."""
    majority = Counter(train_labels).most_common(1)[0][0]
    test_labels = list(test_labels)
    return sum(label == majority for label in test_labels) / len(test_labels)


def letter_baseline_per(train_words, train_phonemes, test_words, test_references) -> float:
    """PER of reading each letter as its most frequent phoneme (from training words whose letters and
    phonemes pair up one to one); letters never paired are read as nothing."""
    from hfnn.metrics import load_metric

    pairs: dict[str, Counter] = {}
    for word, phonemes in zip(train_words, train_phonemes):
        phonemes = phonemes.split()
        if len(word) == len(phonemes):
            for letter, phoneme in zip(word, phonemes):
                pairs.setdefault(letter, Counter())[phoneme] += 1
    reading = {letter: counts.most_common(1)[0][0] for letter, counts in pairs.items()}
    predictions = [" ".join(reading[c] for c in word if c in reading) for word in test_words]
    return float(load_metric("per").compute(predictions=predictions,
                                            references=[list(r) for r in test_references])["per"])


def baseline(task: str, corpus: str, run_dir: Path) -> tuple[str, float] | None:
    """(metric, value) of the trivial baseline of ``task`` on ``corpus``'s test split, named like the run's
    headline metric; None where the task has none here."""
    from hfnn.data.corpora import load_corpus

    data = load_corpus(corpus)
    train, test = data["train"], data["test"]
    if task == "language-modeling":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(run_dir)
        return "test perplexity", unigram_perplexity(tokenizer, train["text"], test["text"])
    if task == "text-classification":
        return "test accuracy", majority_accuracy(train["label"], test["label"])
    if task == "seq2seq" and {"word", "phonemes", "references"} <= set(test.column_names):
        return "test per", letter_baseline_per(train["word"], train["phonemes"], test["word"], test["references"])
    return None


def beats(metric: str, value: float, reference: float) -> bool:
    name = metric.split()[-1]
    return value < reference if name in LOWER_IS_BETTER else value > reference


# --------------------------------------------------------------------------------------------- the run


def _pipeline_fields(module) -> set[str]:
    """Every option a training module's parser takes (its argument dataclasses and Seq2SeqTrainingArguments)."""
    from transformers import Seq2SeqTrainingArguments

    fields = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    for obj in vars(module).values():
        if isinstance(obj, type) and dataclasses.is_dataclass(obj):
            fields.update(f.name for f in dataclasses.fields(obj))
    return fields


def _headline(task: str, results: dict) -> tuple[str, float | None]:
    """The task's first headline metric (registry order) found in a run's results, test split first."""
    for metric in registry.task(task).metrics:
        for split in ("test", "validation", "eval"):
            value = results.get(f"{split}_{metric}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return f"{split} {metric}", float(value)
    return "-", None


@contextlib.contextmanager
def _captured(log_path: Path):
    """Sends stdout, stderr and log records of a pipeline run into ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    root, before = logging.getLogger(), list(logging.getLogger().handlers)
    with open(log_path, "w", encoding="utf-8") as log:
        root.addHandler(logging.StreamHandler(log))
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            for h in [h for h in root.handlers if h not in before]:
                root.removeHandler(h)


@contextlib.contextmanager
def _own_threads():
    """Gives torch's thread count back after a run: each run starts as in a process of its own (the thread
    tuner of a run leaves a count that the next run's tuner would take for a user's fixed choice)."""
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def quickstart_plan(only):
    """(plan, skipped): the models to train (label, arch, task, corpus, recipe, module) and (label, reason)."""
    def names(model):
        arch, row = model
        return {arch.name, row.task, registry.task(row.task).kind, row.label.lower()}

    def selected(model, wanted):
        return bool(names(model) & wanted or any(o in model[1].label.lower() for o in wanted))

    unknown = sorted(o for o in only or () if not any(selected(m, {o}) for m in QUICKSTART_MODELS))
    if unknown:
        choices = sorted(set().union(*(names(m) - {m[1].label.lower()} for m in QUICKSTART_MODELS)))
        raise OptionError(f"--only {' '.join(unknown)}: no quickstart model has that name; "
                          f"use one of {', '.join(choices)}")
    plan, skipped = [], []
    for entry, row in QUICKSTART_MODELS:
        if only and not selected((entry, row), only):
            continue
        label, arch, task, corpus, arch_names = row.label, entry.name, row.task, row.corpus, entry.names
        try:
            module = pipeline_module(task)
        except UserError as err:
            skipped.append((label, str(err)))
            continue
        recipe = find_recipe(arch, task, corpus, arch_names)
        if recipe is None:
            skipped.append((label, f"no shipped {task} recipe for architecture {arch}"))
        else:
            plan.append((label, arch, task, corpus, recipe, module))
    return plan, skipped


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def run_quickstart(output_dir, minutes_per_model: float = 1.5, only=None, max_eval_samples: int = 200) -> int:
    """Trains the plan, prints the table, writes summary.md / .json / .png; returns the exit status
    (1 when a model failed or did not beat its baseline)."""
    from tqdm.auto import tqdm

    out_dir = Path(output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OptionError(f"--output-dir {out_dir} is a file, not a folder")
    plan, skipped = quickstart_plan({o.lower() for o in only} if only else None)
    for label, reason in skipped:
        print(f"hfnn quickstart: skipping {label}: {reason}", file=sys.stderr)
    if not plan:
        raise MissingPackageError("nothing to train: no architecture has both a pipeline and a shipped recipe")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, summary = [], []
    overrides = {"overwrite_output_dir": True, "max_train_minutes": minutes_per_model, "disable_tqdm": True,
                 "report_to": "none", "max_eval_samples": max_eval_samples, "num_samples": 1}
    for label, arch, task, corpus, recipe, module in tqdm(plan, desc="quickstart", unit="model", file=sys.stderr):
        slug = label.lower().replace(" ", "-")
        run_dir = out_dir / slug
        # the common options where the pipeline has them; the model's own changes always (a wrong name fails)
        known, values = _pipeline_fields(module), {"output_dir": str(run_dir), **overrides}
        values = {k: v for k, v in values.items() if k in known}
        values.update(QUICKSTART_OVERRIDES.get(label, {}))  # a mapping updates the recipe's
        start = time.monotonic()
        try:
            with _captured(out_dir / "logs" / f"{slug}.log"), _own_threads():
                results = module.run_pipeline(task, recipe, **values).results
        except Exception as err:  # one failed model does not stop the others
            rows.append((label, task, "-", "failed", first_line(err)[:60], "-", "-"))
            summary.append({"model": label, "task": task, "recipe": recipe, "error": first_line(err)})
            continue
        seconds, params = results.get("train_seconds") or (time.monotonic() - start), results.get("parameters")
        metric, value = _headline(task, results)
        try:
            reference = baseline(task, corpus, run_dir)
        except Exception as err:  # a baseline that cannot be computed is said, not fatal
            print(f"hfnn quickstart: no baseline for {label}: {first_line(err)}", file=sys.stderr)
            reference = None
        base_value = reference[1] if reference and reference[0] == metric else None
        better = None if value is None or base_value is None else beats(metric, value, base_value)
        shown = _fmt(value) if better is not False else f"NOT BETTER THAN BASELINE ({_fmt(value)})"
        rows.append((label, task, f"{params:,}" if params else "?", metric, shown, _fmt(base_value),
                     f"{seconds:.0f} s"))
        summary.append({"model": label, "architecture": arch, "task": task, "corpus": corpus, "recipe": recipe,
                        "recipe_changes": QUICKSTART_OVERRIDES.get(label, {}), "output_dir": str(run_dir),
                        "parameters": params, "metric": metric, "value": value,
                        "baseline": base_value, "beats_baseline": better, "train_seconds": seconds})
    print()
    print("\n".join(format_table(HEADER, rows)), flush=True)
    for label, reason in skipped:
        print(f"(skipped {label}: {reason})")
    print("baseline: unigram perplexity (language models), majority class (classifiers), each letter read as its "
          "most frequent phoneme (grapheme-to-phoneme)")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    md = ["| " + " | ".join(r) + " |" for r in [HEADER, ("---",) * len(HEADER), *rows]]
    (out_dir / "summary.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    plot = _summary_plot([s for s in summary if "error" not in s], out_dir / "summary.png")
    print(f"\nmodels, logs and loss curves in {out_dir}/ (summary.md, summary.json{', summary.png' if plot else ''})",
          flush=True)
    return 0 if all("error" not in s and s.get("beats_baseline") is not False for s in summary) else 1


def _summary_plot(done: list[dict], path: Path) -> bool:
    """Parameters (log scale) and training time of each trained model, side by side."""
    if not done:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 0.5 * len(done) + 2), sharey=True)
    labels = [s["model"] for s in done]
    for ax, key, color, xlabel in ((axes[0], "parameters", "tab:blue", "parameters (log scale)"),
                                   (axes[1], "train_seconds", "tab:orange", "training time (s)")):
        values = [s[key] or 1 for s in done]
        ax.barh(labels, values, color=color)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, axis="x")
        for i, (v, s) in enumerate(zip(values, done)):
            note = f"{v:,}" if key == "parameters" else f"{v:.0f} s; " + (
                "-" if s["value"] is None else f"{s['metric']} {s['value']:.3g}")
            ax.text(v, i, " " + note, va="center", fontsize=8)
    axes[0].set_xscale("log")
    axes[0].invert_yaxis()
    fig.suptitle("hfnn quickstart")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
