"""Text classification: train any hfnn classifier (CNN, MLP, RNN, Transformer) on a corpus with ``Trainer``.

In the style of transformers' ``run_classification.py``: arguments are dataclasses parsed by
``HfArgumentParser`` from a recipe file plus command-line overrides::

    python -m hfnn.pipelines.run_classification cnn_rotten_tomatoes --output_dir runs/cnn-rt
    python -m hfnn.pipelines.run_classification mlp_rotten_tomatoes --num_train_epochs 2
    python -m hfnn.pipelines.run_classification cnn_rotten_tomatoes --train_file my.csv --validation_file dev.csv \\
        --text_column review --label_column sentiment

The run: load the corpus (built-in name, local csv/json files, or a Hub dataset), train a tokenizer on
the training split (or load one), tokenise with ``datasets.map``, pad per batch with
``DataCollatorWithPadding``, train, evaluate accuracy and macro-F1 on the validation and test splits, and
save model + tokenizer (safetensors) + loss curve + confusion matrix + results.json + model card, then
print a few predictions. Switching architecture is a recipe change (``architecture: cnn`` / ``mlp`` /
``rnn`` / ``transformer`` plus ``config_overrides``); ``model_name_or_path`` fine-tunes a saved folder.

Labels are read as a set of named classes (``load_corpus``): strings stripped (" pos" and "pos" are one
class), numbers named by their value (labels 5 and 100 are two classes, star ratings 1-5 five, never an
index), a blank label cell an error naming the file row. One label per row trains a single-label
classifier (cross-entropy), a column of label lists a multi-label classifier (BCE with logits); a
regression head (MSE) only with ``problem_type: regression`` in the recipe (or ``--problem_type regression``).
An empty or whitespace-only text cell is an error naming the file row.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Sequence, Value
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from hfnn.metrics import load_metric
from hfnn.pipelines.common import (
    PipelineCallbacks,
    RunArguments,
    SplitDataArguments,
    TokenizerModelArguments,
    check_config_overrides,
    check_eval_split,
    check_resume_architecture,
    config_class,
    load_split_corpus,
    finish_secondary_process,
    parse_config_overrides,
    print_summary,
    pyplot,
    report,
    run_command,
    run_pipeline,
    save_figure,
    save_loss_curve,
    split_metrics,
    subset,
)
from hfnn.tokenization import text_only, train_tokenizer

__all__ = ["ModelArguments", "DataArguments", "build_config", "main"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ModelArguments(TokenizerModelArguments):
    architecture: str = dataclasses.field(
        default="cnn", metadata={"help": "hfnn architecture to build: cnn, mlp, rnn or transformer."}
    )
    model_name_or_path: str | None = dataclasses.field(
        default=None, metadata={"help": "Fine-tune a saved model folder (or Hub id) instead of building a new model."}
    )
    tokenizer_kind: str = dataclasses.field(default="word", metadata={"help": "word, bpe or char."})
    vocab_size: int | None = dataclasses.field(
        default=None, metadata={"help": "Largest vocabulary of a trained tokenizer (None: every token seen)."}
    )
    min_frequency: int = dataclasses.field(default=1, metadata={"help": "Drop tokens seen fewer times in training."})
    lowercase: bool = dataclasses.field(default=True, metadata={"help": "Lower-case text in the trained tokenizer."})
    max_length: int = dataclasses.field(default=256, metadata={"help": "Truncate texts to this many tokens."})
    ignore_mismatched_sizes: bool = dataclasses.field(
        default=False, metadata={"help": "With model_name_or_path: replace a classifier head of another label count."}
    )
    embeddings_file: str | None = dataclasses.field(
        default=None,
        metadata={"help": "word2vec/GloVe text file to initialise the embeddings of a new model (CNN: "
                          "embedding_mode static / non-static / multichannel)."},
    )


@dataclasses.dataclass
class DataArguments(SplitDataArguments):
    corpus: str | None = dataclasses.field(
        default="rotten_tomatoes", metadata={"help": "Built-in corpus name, local file, or Hub dataset name."}
    )
    text_column: str | None = dataclasses.field(default=None, metadata={"help": "Column holding the text (default: text)."})
    label_column: str | None = dataclasses.field(
        default=None, metadata={"help": "Column holding the label (default: label)."}
    )
    max_train_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Train on a random subset of this many examples."}
    )
    max_eval_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Evaluate on a random subset of this many validation and test examples."}
    )
    problem_type: str = dataclasses.field(
        default="auto",
        metadata={"help": "auto (labels are named classes; a column of label lists: multi-label), "
                          "single_label_classification, multi_label_classification, or regression (numeric labels)."},
    )


def load_classification_corpus(data_args: DataArguments, seed: int):
    """A DatasetDict with train/validation/test and the canonical ``text`` and ``label`` columns."""
    columns = {"text_column": data_args.text_column, "label_column": data_args.label_column}
    columns = {k: v for k, v in columns.items() if v}
    if data_args.problem_type not in _PROBLEM_TYPES:
        raise ValueError(f"--problem_type must be one of {', '.join(_PROBLEM_TYPES)}, got {data_args.problem_type!r}")
    # labels are named classes unless the recipe asks for regression; an empty text or label is an error
    options = dict(columns, empty_text="error",
                   label_type="regression" if data_args.problem_type == "regression" else "classes")
    raw = load_split_corpus(data_args, seed, **options)
    for column in ("text", "label"):
        if column not in raw["train"].column_names:
            raise ValueError(
                f"The corpus has no {column!r} column (columns: {raw['train'].column_names}); set {column}_column."
            )
    return raw


_PROBLEM_TYPES = ("auto", "single_label_classification", "multi_label_classification", "regression")


def label_info(raw, problem_type: str = "auto") -> tuple[str, list[str]]:
    """(problem_type, label names) read off the training split's ``label`` feature, as ``load_corpus`` gives
    it: ``ClassLabel`` (named classes) -> single-label, a sequence of ``ClassLabel`` -> multi-label, a
    float column (``problem_type="regression"``) -> regression."""
    feature = raw["train"].features["label"]
    if isinstance(feature, ClassLabel):
        found = "single_label_classification", list(feature.names)
    elif isinstance(feature, (Sequence, list)) and isinstance(
            feature.feature if isinstance(feature, Sequence) else feature[0], ClassLabel):
        inner = feature.feature if isinstance(feature, Sequence) else feature[0]
        found = "multi_label_classification", list(inner.names)
    elif isinstance(feature, Value) and feature.dtype.startswith("float") and problem_type == "regression":
        found = "regression", ["score"]
    else:
        raise ValueError(
            f"Unsupported label column type {feature}; use class names or whole numbers, lists of them (multi-label), "
            "or numbers with --problem_type regression."
        )
    if problem_type not in ("auto", found[0]):
        raise ValueError(f"--problem_type {problem_type}, but the label column holds "
                         f"{'lists of classes' if found[0].startswith('multi') else 'one class per row'}")
    return found


def build_config(architecture: str, tokenizer, labels: list[str], problem_type: str, overrides: dict):
    """A new config of an hfnn architecture, sized to ``tokenizer`` and labelled like the corpus.

    The architecture name maps to its registered model type (``cnn`` -> ``hfnn-cnn``) and the config is
    built through ``AutoConfig.for_model``, so any architecture in ``hfnn.ARCHITECTURES`` works.
    """
    config_cls = config_class(architecture, "text-classification")
    fields = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
        "problem_type": problem_type,
    }
    fields.update(overrides)
    config = AutoConfig.for_model(config_cls.model_type, **fields)
    check_config_overrides(config, overrides)
    return config


def make_compute_metrics(problem_type: str):
    if problem_type == "regression":

        def compute_regression(eval_pred):
            preds = np.asarray(eval_pred.predictions).reshape(-1)
            refs = np.asarray(eval_pred.label_ids).reshape(-1)
            return {"mse": float(np.mean((preds - refs) ** 2)), "mae": float(np.mean(np.abs(preds - refs)))}

        return compute_regression

    if problem_type == "multi_label_classification":
        from sklearn.metrics import f1_score

        def compute_multi_label(eval_pred):
            preds = (np.asarray(eval_pred.predictions) > 0).astype(int)
            refs = np.asarray(eval_pred.label_ids).astype(int)
            return {
                "accuracy": float((preds == refs).all(axis=1).mean()),  # exact match
                "f1": float(f1_score(refs, preds, average="macro", zero_division=0)),
            }

        return compute_multi_label

    accuracy, f1 = load_metric("accuracy"), load_metric("f1")

    def compute_single_label(eval_pred):
        preds = np.asarray(eval_pred.predictions).argmax(-1)
        refs = np.asarray(eval_pred.label_ids)
        return {
            "accuracy": accuracy.compute(predictions=preds, references=refs)["accuracy"],
            "f1": f1.compute(predictions=preds, references=refs, average="macro")["f1"],
        }

    return compute_single_label


def save_confusion_matrix(predictions, references, labels: list[str], out_dir, title: str) -> Path:
    """Plots the test confusion matrix (rows: true label, columns: prediction) as confusion_matrix.png."""
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(references, predictions, labels=list(range(len(labels))))
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = pyplot().subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    return save_figure(fig, out_dir, "confusion_matrix.png")


def main(argv=None) -> dict:
    """Runs the pipeline; returns the results dict (``test_accuracy``, ``validation_f1``, ...)."""
    return run_pipeline(argv, (ModelArguments, DataArguments, RunArguments, TrainingArguments), _run,
                        extra_inputs=lambda model_args: [model_args.embeddings_file])


def _run(folder, model_args, data_args, run_args, training_args) -> dict:
    out_dir = folder.work_dir

    # ---- data and labels
    raw = load_classification_corpus(data_args, training_args.seed)
    problem_type, labels = label_info(raw, data_args.problem_type)
    raw["train"] = subset(raw["train"], data_args.max_train_samples, training_args.seed)
    for split in ("validation", "test"):
        if split in raw:
            raw[split] = subset(raw[split], data_args.max_eval_samples, training_args.seed)

    # ---- tokenizer
    tokenizer_source = model_args.tokenizer_name or model_args.model_name_or_path
    if tokenizer_source:
        tokenizer = text_only(AutoTokenizer.from_pretrained(tokenizer_source))
    else:
        tokenizer = train_tokenizer(
            raw["train"]["text"], kind=model_args.tokenizer_kind, vocab_size=model_args.vocab_size,
            min_frequency=model_args.min_frequency, lowercase=model_args.lowercase, padding_side="right",
            model_max_length=model_args.max_length,
        )
    tokenizer.padding_side = "right"

    # ---- model
    overrides = {}
    if model_args.model_name_or_path:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_args.model_name_or_path,
            id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}, problem_type=problem_type,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        )
        if model.config.vocab_size < len(tokenizer):
            raise ValueError(
                f"The tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {model.config.vocab_size}."
            )
    else:
        overrides = parse_config_overrides(model_args.config_overrides)
        config = build_config(model_args.architecture, tokenizer, labels, problem_type, overrides)
        mode = getattr(config, "embedding_mode", None)
        if mode in ("static", "multichannel") and not model_args.embeddings_file:
            raise ValueError(
                f"config_overrides embedding_mode={mode!r} freezes the word vectors, but no --embeddings_file was "
                "given: the frozen vectors would be random. Give --embeddings_file (word2vec/GloVe text) or use "
                "embedding_mode 'rand' / 'non-static'"
            )
        model = AutoModelForSequenceClassification.from_config(config)
        if model_args.embeddings_file:
            if not hasattr(model, "load_embeddings"):
                raise ValueError(f"{type(model).__name__} cannot load pretrained word vectors (no load_embeddings)")
            from hfnn.embeddings import load_word_vectors

            model.load_embeddings(load_word_vectors(model_args.embeddings_file, tokenizer, vocab_size=config.vocab_size,
                                                    lowercase=model_args.lowercase))
    check_resume_architecture(training_args.resume_from_checkpoint, model)
    max_length = model_args.max_length
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions is not None:
        max_length = min(max_length, max_positions)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("model %s: %.2fM parameters (%.2fM trainable)", type(model).__name__, n_params / 1e6, n_trainable / 1e6)

    # ---- tokenise
    def preprocess(batch):
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_length)
        if problem_type == "multi_label_classification":
            encoded["labels"] = [[float(i in set(row)) for i in range(len(labels))] for row in batch["label"]]
        elif problem_type == "regression":
            encoded["labels"] = [float(x) for x in batch["label"]]
        else:
            encoded["labels"] = batch["label"]
        return {k: encoded[k] for k in ("input_ids", "attention_mask", "labels")}

    # the main process fills the datasets cache first; the others (multi-process training) read it
    with training_args.main_process_first(desc="dataset preprocessing"):
        tokenized = raw.map(preprocess, batched=True, remove_columns=raw["train"].column_names, desc="tokenizing")
    train_ds = tokenized["train"]
    eval_ds = tokenized["validation"] if "validation" in tokenized else None
    test_ds = tokenized["test"] if "test" in tokenized else None

    check_eval_split(eval_ds, training_args, "is empty (after the split of "
                     f"{data_args.validation_file or data_args.train_file or data_args.corpus})")
    callbacks = PipelineCallbacks(run_args, training_args)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=eval_ds if eval_ds is not None and len(eval_ds) else None,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=make_compute_metrics(problem_type),
        callbacks=callbacks.callbacks,
    )
    results = callbacks.train(trainer, folder, {"": tokenizer})
    corpus = data_args.train_file or data_args.corpus
    results.update({
        "trainable_parameters": n_trainable,
        "train_examples": len(train_ds),
        "tokenizer_kind": model_args.tokenizer_kind if not tokenizer_source else "loaded",
        "vocab_size": len(tokenizer),
        "corpus": corpus,
        "problem_type": problem_type,
        "labels": labels,
        "config_overrides": overrides,
    })
    if eval_ds is not None and len(eval_ds):
        metrics = trainer.evaluate(eval_ds, metric_key_prefix="validation")
        results.update(split_metrics(metrics))
    curve_title = f"{model.config.model_type} on {corpus}"
    confusion = None
    if test_ds is not None and len(test_ds):
        prediction = trainer.predict(test_ds, metric_key_prefix="test")
        results.update(split_metrics(prediction.metrics))
        refs = np.asarray(prediction.label_ids)
        if problem_type == "single_label_classification":
            counts = np.bincount(refs, minlength=len(labels))
            results["test_majority_class_accuracy"] = float(counts.max() / counts.sum())
            if trainer.is_world_process_zero():
                confusion = save_confusion_matrix(
                    np.asarray(prediction.predictions).argmax(-1), refs, labels, out_dir, f"{curve_title}: test"
                )

    if finish_secondary_process(trainer, folder.path):
        results["samples"] = []
        return results
    curve = save_loss_curve(trainer.state.log_history, out_dir, title=curve_title)

    # A few predictions through the text-classification pipeline, as a user would call the saved model.
    samples = []
    sample_split = raw["test"] if "test" in raw else raw["train"]
    if run_args.num_samples and len(sample_split):
        from transformers import pipeline

        model.eval()
        classifier = pipeline("text-classification", model=model, tokenizer=tokenizer, device=model.device)
        rows = sample_split.select(range(min(run_args.num_samples, len(sample_split))))
        for row, pred in zip(rows, classifier(list(rows["text"]), truncation=True, max_length=max_length)):
            truth = row["label"]
            if problem_type == "single_label_classification":
                truth = labels[truth]
            samples.append({"text": row["text"], "label": truth, "predicted": pred["label"], "score": round(pred["score"], 4)})
    results["samples"] = samples
    report(out_dir, results, run_args, training_args, "text-classification", dataset=corpus)
    print_summary(model.config.model_type, results)
    for sample in samples:
        print(f"- [{sample['predicted']} {sample['score']:.2f} | true {sample['label']}] {sample['text'][:100]}")
    training_args.output_dir = str(folder.path)
    print(f"saved to {folder.path} (loss curve: {folder.path / curve.name if curve else None}, confusion matrix: "
          f"{folder.path / confusion.name if confusion else None})")
    return results


if __name__ == "__main__":
    raise SystemExit(run_command(main))
