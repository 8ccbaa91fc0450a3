"""Model cards for saved hfnn models, filled from the real results of a training run.

:func:`write_model_card` reads ``config.json`` in a saved model folder to learn the architecture and
head, and renders the template ``model_cards/model_card.md`` with ``huggingface_hub.ModelCard`` /
``ModelCardData`` into ``README.md``: metadata for the Hub (license, ``library_name``, tags,
``pipeline_tag``, datasets, ``model-index`` evaluation results built from the run's results dict),
then the seed concept the architecture implements, training data, hyper-parameters, evaluation
results, intended use, limitations, and how to load the model with and without hfnn installed::

    from hfnn.sharing.cards import write_model_card
    write_model_card("runs/rnn-char", task="text-generation", results=results, training_args=training_args)

The pipelines call it at the end of every run; ``ModelCard.load(folder / "README.md")`` reads it back.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hfnn.models import registry

__all__ = [
    "TEMPLATE_NAME",
    "find_template",
    "model_kind",
    "normalize_task",
    "seed_concept",
    "templates_dir",
    "write_model_card",
]

TEMPLATE_NAME = "model_card.md"

_SPLIT_PREFIXES = {"validation": "validation", "eval": "validation", "test": "test"}
_NOT_METRICS = (
    "runtime", "samples_per_second", "steps_per_second", "epoch", "samples", "steps", "seconds", "gen_len",
    "examples", "tokens", "blocks", "model_preparation_time", "history",
)
_BASELINE_MARKERS = ("majority", "baseline", "random", "chance")
_METRIC_NAMES = {
    "perplexity": "perplexity",
    "accuracy": "accuracy",
    "f1": "F1",
    "macro_f1": "macro F1",
    "wer": "word error rate",
    "per": "phoneme error rate",
    "cer": "character error rate",
    "bleu": "BLEU",
    "chrf": "chrF",
    "exact_match": "exact match",
}
_LANGUAGES = {
    "shakespeare": "en",
    "kjv": "en",
    "rotten_tomatoes": "en",
    "cmudict": "en",
    "kjv_french": ["en", "fr"],
}
_EXAMPLE_INPUTS = {
    "shakespeare": "Romeo.",
    "kjv": "In the beginning",
    "rotten_tomatoes": "a gorgeous, witty, seductive movie.",
    "cmudict": "neural",
    "kjv_french": "In the beginning God created the heaven and the earth.",
}
_CONFIG_NOISE = {
    "architectures", "auto_map", "transformers_version", "model_type", "dtype", "torch_dtype", "id2label",
    "label2id", "output_hidden_states", "output_attentions", "return_dict", "use_cache", "chunk_size_feed_forward",
    "is_decoder", "add_cross_attention", "tie_encoder_decoder", "problem_type", "tokenizer_class",
}
_TRAINING_FIELDS = (
    "learning_rate", "lr_scheduler_type", "warmup_steps", "warmup_ratio", "weight_decay", "max_grad_norm",
    "optim", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
    "label_smoothing_factor", "seed", "bf16", "fp16",
)
_RUN_FACTS = (
    ("parameters", "parameters"),
    ("train_steps", "training steps"),
    ("train_seconds", "training time (s)"),
    ("train_loss", "final training loss"),
    ("tokenizer_kind", "tokenizer"),
    ("block_size", "block size (tokens)"),
    ("max_source_length", "max source length"),
    ("max_target_length", "max target length"),
)


# ---------------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------------


def templates_dir() -> Path:
    """The folder of the model card templates.

    Installed, the templates are the package data ``hfnn/model_cards/``; in a source checkout they
    are ``<repo>/model_cards/`` next to the ``hfnn/`` package folder.
    """
    here = Path(__file__).resolve().parent
    candidates = [here.parent / "model_cards", here.parents[1] / "model_cards"]  # installed; a checkout
    try:
        spec = importlib.util.find_spec("hfnn.model_cards")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates[1:1] = [Path(p) for p in spec.submodule_search_locations]
    for candidate in candidates:
        if (candidate / TEMPLATE_NAME).is_file():
            return candidate
    raise FileNotFoundError(
        f"hfnn model card templates not found (looked for {TEMPLATE_NAME} in "
        + ", ".join(str(c) for c in candidates)
        + ")"
    )


def find_template(name: str = TEMPLATE_NAME) -> Path:
    """Path of a template shipped in ``model_cards/`` (``name`` may omit ``.md``)."""
    if not name.endswith(".md"):
        name += ".md"
    path = templates_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"no model card template {name!r} in {templates_dir()}")
    return path


# ---------------------------------------------------------------------------------------------
# What the saved model is
# ---------------------------------------------------------------------------------------------


def normalize_task(task: str | None) -> str | None:
    """The Hub ``pipeline_tag`` for a task name used in hfnn (``language-modeling`` -> ``text-generation``), as
    :mod:`hfnn.models.registry` lists the tasks and their aliases."""
    if task is None:
        return None
    try:
        return registry.hub_pipeline_tag(task)
    except ValueError as err:
        raise ValueError(f"write_model_card: {err}") from None


def model_kind(config: Mapping[str, Any]) -> str | None:
    """``causal-lm``, ``classification`` or ``seq2seq`` from a config dict's ``architectures`` (or
    ``is_encoder_decoder``)."""
    found = registry.task_of_config(config)
    return found.kind if found is not None else None


def _kind_of_pipeline_tag(tag: str | None) -> str | None:
    try:
        return registry.task(tag).kind if tag else None
    except ValueError:
        return None


def _auto_class_of_kind(kind: str | None) -> str:
    return next((t.auto_class for t in registry.TASKS.values() if t.kind == kind), "AutoModel")


def seed_concept(config: Mapping[str, Any]) -> str:
    """One sentence tying the saved model to the idea of the seed note it implements."""
    model_type = config.get("model_type", "")
    entry = registry.architecture_of_model_type(model_type)
    if entry is None:
        return f"a {model_type or 'custom'} model"
    text = entry.concept_note
    kind = model_kind(config)
    if entry.name == "rnn":
        rnn_type = config.get("rnn_type", "rnn_tanh")
        if rnn_type == "rnn_relu":
            text += "; here with ReLU in place of tanh"
        elif rnn_type in ("gru", "lstm"):
            text += f"; here with the gated {rnn_type.upper()} cell in place of the plain tanh cell"
        if kind == "classification":
            text += ", the hidden states pooled into one vector for the classifier"
    elif entry.name == "mlp":
        text += (f"; activation here: {config.get('activation', 'relu')}, "
                 f"{config.get('num_hidden_layers', '?')} hidden layer(s)")
    elif entry.name == "cnn":
        widths = config.get("window_sizes")
        if widths:
            text += f"; window widths (the n of the n-grams) {', '.join(str(w) for w in widths)}"
    elif entry.name == "rnn_seq2seq":
        attention = config.get("attention", "none")
        if attention == "none":
            text += " through the seed's fixed-size context vector (no attention)"
        elif attention == "bahdanau":
            text += (", with the seed's attention: the decoder re-weights the encoder states at every output step "
                     "(additive, Bahdanau)")
        else:
            text += (", with the seed's attention: the decoder re-weights the encoder states at every output step "
                     "(multiplicative, Luong)")
    elif entry.name == "transformer":
        text += {
            "causal-lm": " (decoder-only language model)",
            "classification": " (encoder used as a sequence classifier)",
            "seq2seq": " (encoder-decoder, in place of the RNN Seq2Seq)",
        }.get(kind, "")
    return text


def _concept_tags(config: Mapping[str, Any]) -> list[str]:
    model_type = config.get("model_type", "")
    entry = registry.architecture_of_model_type(model_type)
    tags = ["hfnn"]
    if entry is not None:
        tags += [entry.tag, entry.concept]
    elif model_type:
        tags.append(model_type)
    name = entry.name if entry is not None else None
    if name in ("rnn", "rnn_seq2seq") and config.get("rnn_type"):
        tags.append(str(config["rnn_type"]).replace("_", "-"))
    if name == "rnn_seq2seq" and config.get("attention", "none") != "none":
        tags += ["attention", f"{config['attention']}-attention"]
    tags.append("custom_code")  # the Hub's tag for models loaded with trust_remote_code
    seen, unique = set(), []
    for tag in tags:
        if tag not in seen:
            seen.add(tag)
            unique.append(tag)
    return unique


# ---------------------------------------------------------------------------------------------
# Results -> model-index
# ---------------------------------------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_model_metric(metric: str) -> bool:
    """A score of the model (not a timing, a count, or a baseline such as the majority-class accuracy)."""
    return not metric.endswith(_NOT_METRICS) and not any(m in metric for m in _BASELINE_MARKERS)


def _baselines(results: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key, value in results.items():
        if _is_number(value) and any(m in key for m in _BASELINE_MARKERS):
            out.append((key.replace("_", " ") + " (baseline)", _fmt(value)))
    return out


def _sample_text(sample) -> str | None:
    if isinstance(sample, str):
        return sample
    if isinstance(sample, Mapping):
        return "\n".join(f"{k}: {v}" for k, v in sample.items())
    return None


def _metric_entries(results: Mapping[str, Any]) -> list[tuple[str, str, float]]:
    """(split, metric, value) for every evaluation number in ``results``.

    Flat keys ``<split>_<metric>`` (``validation_loss``, ``eval_accuracy``, ``test_bleu``) and nested
    ``{"validation": {"loss": ...}}`` are both understood; timings are not metrics.
    """
    entries = []
    for key, value in results.items():
        if isinstance(value, Mapping) and key in _SPLIT_PREFIXES:
            for metric, v in value.items():
                if _is_number(v) and _is_model_metric(str(metric)):
                    entries.append((_SPLIT_PREFIXES[key], str(metric), v))
            continue
        if not _is_number(value):
            continue
        for prefix, split in _SPLIT_PREFIXES.items():
            if key.startswith(prefix + "_"):
                metric = key[len(prefix) + 1 :]
                if metric and _is_model_metric(metric):
                    entries.append((split, metric, value))
                break
    order = {"validation": 0, "test": 1}
    return sorted(entries, key=lambda e: order[e[0]])


def _metric_label(metric: str, kind: str | None = None) -> str:
    if metric == "loss":
        return "loss (nats/token)" if kind in ("causal-lm", "seq2seq") else "loss (cross-entropy)"
    return _METRIC_NAMES.get(metric, metric.replace("_", " "))


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _training_args_dict(training_args) -> dict:
    if training_args is None:
        return {}
    if isinstance(training_args, Mapping):
        return dict(training_args)
    if hasattr(training_args, "to_dict"):
        return training_args.to_dict()
    if dataclasses.is_dataclass(training_args):
        return dataclasses.asdict(training_args)
    raise TypeError(f"write_model_card: training_args must be TrainingArguments, a dataclass or a dict, "
                    f"got {type(training_args).__name__}")


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _looks_like_path(name: str) -> bool:
    return os.path.exists(name) or Path(name).suffix in (".txt", ".csv", ".tsv", ".json", ".jsonl", ".gz", ".bz2")


def _dataset_info(dataset: str | None) -> dict:
    """Name, Hub metadata id, and description of the training corpus."""
    if not dataset:
        return {"name": None, "metadata": None, "description": None, "license": None}
    dataset = str(dataset)
    description = corpus_license = None
    try:
        from hfnn.data.corpora import BUILTIN_CORPORA
    except Exception:  # the corpora module is optional for cards
        BUILTIN_CORPORA = {}
    if dataset in BUILTIN_CORPORA:
        info = BUILTIN_CORPORA[dataset]
        description = (f"{info.description} Splits: {info.splits}. "
                       f"Loaded with `hfnn.data.corpora.load_corpus({dataset!r})` (package `{info.package}`).")
        corpus_license = info.license
    if _looks_like_path(dataset):
        name = Path(dataset).name
        return {"name": name, "metadata": None, "description": description or f"the local file `{name}`",
                "license": None}
    return {"name": dataset, "metadata": dataset, "description": description, "license": corpus_license}


def _example_input(task_kind: str, dataset: str | None, extra: Mapping) -> str:
    if extra.get("example_input"):
        return str(extra["example_input"])
    if dataset in _EXAMPLE_INPUTS:
        return _EXAMPLE_INPUTS[dataset]
    return {"causal-lm": "Once upon a time", "classification": "a fine film",
            "seq2seq": "hello"}.get(task_kind, "hello")


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def write_model_card(
    out_dir: str | os.PathLike,
    task: str | None,
    results: Mapping[str, Any] | None,
    training_args=None,
    dataset: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Renders ``README.md`` (the model card) into the saved model folder ``out_dir``.

    Args:
        out_dir: folder written by ``save_pretrained``; its ``config.json`` tells the architecture.
        task: the Hub pipeline task (``text-generation``, ``text-classification``,
            ``text2text-generation``, ``translation``) or an hfnn name (``language-modeling``,
            ``seq2seq``...); None infers it from the saved config.
        results: the run's results dict (``validation_loss``, ``test_accuracy``, ``parameters``...);
            every ``<validation|eval|test>_<metric>`` number goes to the model-index. None reads
            ``results.json`` from ``out_dir``.
        training_args: ``TrainingArguments`` (or a dict) of the run, for the hyper-parameter table.
        dataset: the corpus name or file; defaults to ``results["corpus"]``.
        extra: optional overrides: ``license``, ``repo_id`` (used in the loading snippets),
            ``model_name``, ``example_input``, ``language``, ``intended_use``, ``limitations``
            (extra text), ``template`` (another template name in ``model_cards/``), ``tags``
            (added to the defaults).

    Returns:
        the path of the written ``README.md``.
    """
    out_dir = Path(out_dir)
    extra = dict(extra or {})
    config_path = out_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"write_model_card: {out_dir} has no config.json; save the model there first")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if results is None:
        results = _read_json(out_dir / "results.json") or {}
    results = dict(results)

    kind = model_kind(config)
    pipeline_tag = normalize_task(task)
    if pipeline_tag is None:
        pipeline_tag = next((t.hub_tag for t in registry.TASKS.values() if t.kind == kind), None)
    if kind is None:
        kind = _kind_of_pipeline_tag(pipeline_tag)
    auto_class = _auto_class_of_kind(kind)

    dataset = dataset or results.get("corpus") or results.get("dataset")
    data = _dataset_info(dataset)
    model_name = str(extra.get("model_name") or out_dir.resolve().name)
    repo_id = str(extra.get("repo_id") or f"your-username/{model_name}")

    entries = _metric_entries(results)
    eval_results = [
        EvalResult(
            task_type=pipeline_tag or "other",
            dataset_type=data["name"] or "unknown",
            dataset_name=data["name"] or "unknown",
            dataset_split=split,
            metric_type=metric,
            metric_name=f"{split} {_metric_label(metric, kind)}",
            metric_value=value,
        )
        for split, metric, value in entries
    ]
    tags = _concept_tags(config) + [t for t in extra.get("tags", []) if t]
    language = extra.get("language", _LANGUAGES.get(dataset))
    card_data = ModelCardData(
        license=extra.get("license", "apache-2.0"),
        library_name="transformers",
        tags=list(dict.fromkeys(tags)),
        pipeline_tag=pipeline_tag,
        datasets=[data["metadata"]] if data["metadata"] else None,
        language=language,
        metrics=sorted({metric for _, metric, _ in entries}) or None,
        model_name=model_name,
        eval_results=eval_results or None,
    )

    hyper = {k: v for k, v in config.items() if k not in _CONFIG_NOISE and v is not None and not k.startswith("_")}
    targs = _training_args_dict(training_args)
    training = {k: targs[k] for k in _TRAINING_FIELDS if k in targs and targs[k] not in (None, False, -1)}
    facts = [(label, _fmt(results[key])) for key, label in _RUN_FACTS if key in results and results[key] is not None]
    facts += _baselines(results)
    labels = None
    if kind == "classification" and isinstance(config.get("id2label"), Mapping):
        labels = [config["id2label"][k] for k in sorted(config["id2label"], key=lambda x: int(x))]
    has_source_tokenizer = (out_dir / registry.SOURCE_TOKENIZER_SUBFOLDER).is_dir()
    plots = sorted(p.name for p in out_dir.glob("*.png"))
    samples = results.get("samples") if isinstance(results.get("samples"), list) else []
    samples = [t for t in (_sample_text(s) for s in samples) if t]

    template = find_template(extra.get("template", TEMPLATE_NAME))
    card = ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=model_name,
        repo_id=repo_id,
        model_type=config.get("model_type", "unknown"),
        architecture_class=(config.get("architectures") or ["?"])[0],
        auto_class=auto_class,
        task_kind=kind,
        pipeline_tag=pipeline_tag,
        seed_concept=seed_concept(config),
        dataset_name=data["name"],
        dataset_description=data["description"],
        dataset_license=data["license"],
        eval_rows=[(split, _metric_label(metric, kind), _fmt(value)) for split, metric, value in entries],
        hyperparameters=[(k, _fmt(v)) for k, v in sorted(hyper.items())],
        training_hyperparameters=[(k, _fmt(v)) for k, v in training.items()],
        run_facts=facts,
        labels=labels,
        has_source_tokenizer=has_source_tokenizer,
        source_tokenizer_folder=registry.SOURCE_TOKENIZER_SUBFOLDER,
        example_input=_example_input(kind, dataset, extra),
        plots=plots,
        samples=samples[:3],
        extra_intended_use=extra.get("intended_use"),
        extra_limitations=extra.get("limitations"),
    )
    if (out_dir / "app.py").is_file() and (out_dir / "requirements.txt").is_file():
        card.text = card.text.rstrip("\n") + "\n\n" + _demo_section(model_name) + "\n"
    path = out_dir / "README.md"
    card.save(str(path))
    return path


def _demo_section(model_name: str) -> str:
    """The card's paragraph on the folder's demo. It stays in the body: front-matter keys of a Space
    (``sdk``, ``app_file``) would make the Hub read the model card as a Space card."""
    return (
        "## Demo\n\n"
        f"Run `hfnn demo {model_name}` to try the model in a local web page, or push this folder to a Hugging Face "
        "Space with the Gradio SDK (for instance `huggingface_hub.create_repo(..., repo_type=\"space\", "
        "space_sdk=\"gradio\")`): it already holds the Space's `app.py`, `requirements.txt`, `hfnn_demo.py` and the "
        "`registry.py` the demo reads."
    )
