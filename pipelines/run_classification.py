"""Text classification with ``Trainer`` (in the style of transformers' ``run_classification.py``)::

    python -m hfnn.pipelines.run_classification cnn_rotten_tomatoes --output_dir runs/cnn-rt
    python -m hfnn.pipelines.run_classification cnn_rotten_tomatoes --train_file my.csv --validation_file dev.csv \\
        --text_column review --label_column sentiment

Corpus -> tokenizer -> ``DataCollatorWithPadding`` batches -> training (CNN, MLP, RNN or Transformer; a saved
folder is fine-tuned with ``model_name_or_path``) -> accuracy and macro-F1 -> model, tokenizer, loss curve,
confusion matrix, results.json, model card -> a few predictions. Labels are named classes (``load_corpus``:
strings stripped, numbers named by their value); a column of label lists is multi-label, and a regression head
needs ``--problem_type regression``. An empty text or label cell is an error naming the file row.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Sequence, Value
from transformers import DataCollatorWithPadding, TrainingArguments

from hfnn.data.corpora import separator_hint
from hfnn.data.streaming import refuse_streaming
from hfnn.models.errors import DataError, OptionError
from hfnn.pipelines.common import (
    Pipeline,
    RunArguments,
    RunData,
    TextDataArguments,
    TokenizerModelArguments,
    arg,
    load_split_corpus,
    report_cut,
    run_command,
    run_pipeline,
    split_metrics,
    subset,
)
from hfnn.training import check_tokenizer, classification_metrics, pyplot, save_figure

__all__ = ["ClassificationData", "ClassificationPipeline", "DataArguments", "ModelArguments", "label_info", "main",
           "run_pipeline"]

_PROBLEM_TYPES = ("auto", "single_label_classification", "multi_label_classification", "regression")


@dataclasses.dataclass
class ModelArguments(TokenizerModelArguments):
    architecture: str = arg("cnn", "hfnn architecture to build: cnn, mlp, rnn or transformer.")
    tokenizer_kind: str = arg("word", "Tokenizer to train: word, bpe or char.")
    lowercase: bool = arg(True, "Lower-case text in a trained tokenizer.")
    max_length: int = arg(256, "Truncate texts to this many tokens.")
    ignore_mismatched_sizes: bool = arg(False, "With model_name_or_path: replace a classifier head of another "
                                               "label count.")
    embeddings_file: str | None = arg(None, "word2vec/GloVe text file to initialise the embeddings of a new model "
                                            "(CNN: embedding_mode static / non-static / multichannel).")


@dataclasses.dataclass
class DataArguments(TextDataArguments):
    corpus: str | None = arg("rotten_tomatoes", "Built-in corpus name, local file, or Hub dataset name.")
    label_column: str | None = arg(None, "Column holding the label (default: label).")
    problem_type: str = arg("auto", "auto (labels are named classes; a column of label lists: multi-label), "
                                    "single_label_classification, multi_label_classification, or regression (numbers).")
    streaming: bool = arg(False, "Not for this pipeline: streaming applies to run_lm (an error if true).")

    def __post_init__(self):
        super().__post_init__()
        refuse_streaming(self.streaming, "text classification (run_classification)")


def label_info(raw, problem_type: str = "auto") -> tuple[str, list[str]]:
    """(problem_type, label names) read off the training split's ``label`` feature, as ``load_corpus`` gives
    it: ``ClassLabel`` (named classes) -> single-label, a sequence of ``ClassLabel`` -> multi-label, a
    float column (``problem_type="regression"``) -> regression."""
    feature = raw["train"].features["label"]
    inner = feature.feature if isinstance(feature, Sequence) else feature[0] if isinstance(feature, list) else None
    if isinstance(feature, ClassLabel):
        found = "single_label_classification", list(feature.names)
    elif isinstance(inner, ClassLabel):
        found = "multi_label_classification", list(inner.names)
    elif isinstance(feature, Value) and feature.dtype.startswith("float") and problem_type == "regression":
        found = "regression", ["score"]
    else:
        raise DataError(f"Unsupported label column type {feature}; use class names or whole numbers, lists of them "
                        "(multi-label), or numbers with --problem_type regression.")
    if problem_type not in ("auto", found[0]):
        raise OptionError(f"--problem_type {problem_type}, but the label column holds "
                          f"{'lists of classes' if found[0].startswith('multi') else 'one class per row'}")
    if found[0] == "single_label_classification" and len(found[1]) < 2:
        raise DataError(f"the training data has a single class ({', '.join(map(repr, found[1])) or 'none'}): a "
                        "classifier needs examples of two or more; for a numeric target use --problem_type regression")
    return found


def save_confusion_matrix(predictions, references, labels: list[str], out_dir, title: str):
    """Plots the test confusion matrix (rows: true label, columns: prediction) as confusion_matrix.png."""
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(references, predictions, labels=list(range(len(labels))))
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = pyplot().subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    return save_figure(fig, out_dir, "confusion_matrix.png")


@dataclasses.dataclass(kw_only=True)
class ClassificationData(RunData):
    problem_type: str  # of label_info
    labels: list[str]  # the class names (regression: ["score"])
    max_length: int | None = None  # tokens a text keeps: --max_length, or less for the model (prepare_model)
    confusion: Path | None = None  # the test confusion matrix (evaluate)


class ClassificationPipeline(Pipeline):
    task, card_task = "text-classification", "text-classification"
    arguments = (ModelArguments, DataArguments, RunArguments, TrainingArguments)
    plots = ("loss curve", "confusion matrix")

    @classmethod
    def inputs(cls, model_args):
        return [model_args.embeddings_file]

    def load_data(self):
        d, m = self.data_args, self.model_args
        if m.model_name_or_path and m.embeddings_file:
            raise OptionError(f"--embeddings_file {m.embeddings_file} loads word vectors into a new model, but "
                              f"--model_name_or_path {m.model_name_or_path} brings its own trained embeddings: leave "
                              "one of them out")
        if d.problem_type not in _PROBLEM_TYPES:
            raise OptionError(f"--problem_type must be one of {', '.join(_PROBLEM_TYPES)}, got {d.problem_type!r}")
        columns = {k: v for k, v in {"text_column": d.text_column, "label_column": d.label_column}.items() if v}
        # labels are named classes unless the recipe asks for regression; an empty text or label is an error
        raw = load_split_corpus(d, self.seed, empty_text="error", **columns,
                                label_type="regression" if d.problem_type == "regression" else "classes")
        for column in ("text", "label"):
            if column not in raw["train"].column_names:
                raise DataError(f"The corpus has no {column!r} column (columns: {raw['train'].column_names})"
                                f"{separator_hint(raw['train'].column_names)}; set {column}_column.")
        problem_type, labels = label_info(raw, d.problem_type)
        empty_eval = (f"is empty (after the split of {d.validation_file or self.corpus})",
                      "give a --validation_file, more data")
        for split, limit in (("train", d.max_train_samples), ("validation", d.max_eval_samples),
                             ("test", d.max_eval_samples)):
            if split in raw:
                raw[split] = subset(raw[split], limit, self.seed)
        return ClassificationData(raw=raw, empty_eval=empty_eval, problem_type=problem_type, labels=labels)

    def _label_fields(self, data):
        return {"id2label": dict(enumerate(data.labels)), "label2id": {n: i for i, n in enumerate(data.labels)},
                "problem_type": data.problem_type}

    def config_fields(self, data):
        return {"vocab_size": len(data.tokenizer), "pad_token_id": data.tokenizer.pad_token_id,
                **self._label_fields(data)}

    def load_kwargs(self, data):
        return {**self._label_fields(data), "ignore_mismatched_sizes": self.model_args.ignore_mismatched_sizes}

    def prepare_model(self, data, model):
        m, mode = self.model_args, getattr(model.config, "embedding_mode", None)
        if m.model_name_or_path:
            check_tokenizer(model.config, data.tokenizer)
        elif mode in ("static", "multichannel") and not m.embeddings_file:
            raise OptionError(
                f"config_overrides embedding_mode={mode!r} freezes the word vectors, but no --embeddings_file was "
                "given: the frozen vectors would be random. Give --embeddings_file (word2vec/GloVe text) or use "
                "embedding_mode 'rand' / 'non-static'")
        elif m.embeddings_file:
            if not hasattr(model, "load_embeddings"):
                raise OptionError(f"{type(model).__name__} cannot load pretrained word vectors (no load_embeddings)")
            from hfnn.data.embeddings import load_word_vectors

            model.load_embeddings(load_word_vectors(m.embeddings_file, data.tokenizer,
                                                    vocab_size=model.config.vocab_size, lowercase=m.lowercase))
        data.max_length = min(m.max_length, getattr(model.config, "max_position_embeddings", None) or m.max_length)

    def index_new_model(self, data, model, train_ds):
        """A new MLP reads its character n-grams off the tokenizer's vocabulary and its n-gram vocabulary off the
        training texts (a loaded model keeps its own)."""
        if not self.model_args.model_name_or_path and hasattr(model, "index_vocabulary"):
            model.index_vocabulary(data.tokenizer)
            model.index_ngrams(train_ds["input_ids"])

    def preprocess(self, data):
        raw, tokenizer, problem, n = data.raw, data.tokenizer, data.problem_type, len(data.labels)

        def encode(batch):
            encoded = tokenizer(batch["text"], truncation=True, max_length=data.max_length)
            labels = batch["label"]
            if problem == "multi_label_classification":
                labels = [[float(i in set(row)) for i in range(n)] for row in labels]
            elif problem == "regression":
                labels = [float(x) for x in labels]
            return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}

        encoded = raw.map(encode, batched=True, remove_columns=raw["train"].column_names, desc="tokenizing")
        report_cut(encoded, raw, "input_ids", "text", tokenizer, data.max_length, "texts", "--max_length")
        return encoded

    def trainer_kwargs(self, data, eval_ds):
        return {"data_collator": DataCollatorWithPadding(data.tokenizer),
                "compute_metrics": classification_metrics(data.problem_type)}

    def facts(self, data):
        return {**super().facts(data), "vocab_size": len(data.tokenizer), "problem_type": data.problem_type,
                "labels": data.labels}

    def evaluate(self, data, trainer, splits):
        results = super().evaluate(data, trainer, {k: v for k, v in splits.items() if k != "test"})
        if "test" in splits:
            prediction = trainer.predict(splits["test"], metric_key_prefix="test")
            results.update(split_metrics(prediction.metrics))
            refs = np.asarray(prediction.label_ids)
            if data.problem_type == "single_label_classification":
                counts = np.bincount(refs, minlength=len(data.labels))
                results["test_majority_class_accuracy"] = float(counts.max() / counts.sum())
                if trainer.is_world_process_zero():
                    data.confusion = save_confusion_matrix(np.asarray(prediction.predictions).argmax(-1), refs,
                                                           data.labels, self.out_dir, f"{self.title()}: test")
        return results

    def finish(self, data, trainer, results):
        """A few predictions through the text-classification pipeline, as a user would call the saved model."""
        from transformers import pipeline

        split = data.raw["test"] if "test" in data.raw else data.raw["train"]
        rows = split.select(range(min(self.run_args.num_samples, len(split))))
        if not len(rows):
            return [], [data.confusion]
        self.model.eval()
        classifier = pipeline("text-classification", model=self.model, tokenizer=data.tokenizer,
                              device=self.model.device)
        samples = []
        for row, pred in zip(rows, classifier(list(rows["text"]), truncation=True, max_length=data.max_length)):
            truth = data.labels[row["label"]] if data.problem_type == "single_label_classification" else row["label"]
            samples.append({"text": row["text"], "label": truth, "predicted": pred["label"],
                            "score": round(pred["score"], 4)})
        return samples, [data.confusion]

    def print_sample(self, s):
        print(f"- [{s['predicted']} {s['score']:.2f} | true {s['label']}] {s['text'][:100]}")


main = ClassificationPipeline.main  # main(argv) runs the pipeline and returns the results dict

if __name__ == "__main__":
    raise SystemExit(run_command(main, name=__spec__.name))
