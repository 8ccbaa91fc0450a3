"""Sequence to sequence: train an RNN encoder–decoder or a Transformer with ``Seq2SeqTrainer``.

In the style of transformers' ``run_translation.py``: dataclass arguments parsed by ``HfArgumentParser`` from a
recipe plus command-line overrides, ``Seq2SeqTrainer`` with ``predict_with_generate``::

    python -m hfnn.pipelines.run_seq2seq rnn_seq2seq_cmudict --output_dir runs/g2p-bahdanau
    python -m hfnn.pipelines.run_seq2seq rnn_seq2seq_none_cmudict        # the seed's fixed context vector
    python -m hfnn.pipelines.run_seq2seq transformer_seq2seq_cmudict
    python -m hfnn.pipelines.run_seq2seq rnn_seq2seq_kjv_french           # English -> French verses
    python -m hfnn.pipelines.run_seq2seq rnn_seq2seq_cmudict --train_file train.csv --validation_file dev.csv \\
        --source_column word --target_column phonemes

The run: load the corpus (built-in ``cmudict`` / ``kjv_french``, local csv/json files with a source and a target
column, or a Hub dataset), train a source and a target tokenizer on the training split (or load them), tokenise
with ``datasets.map``, train, then generate for the validation and test splits and score them: word error rate
and phoneme error rate for grapheme-to-phoneme (a prediction counts as right when it matches any reference
pronunciation of the word, from the ``references`` column), BLEU and chrF for translation. The output folder
holds the model (safetensors, remote code), the target tokenizer at its root and the source tokenizer in
``source_tokenizer/`` (what the ``seq2seq-generation`` pipeline loads), the loss curve, a heatmap of the attention
weights for a few test examples (output symbols x source symbols), ``results.json`` and a model card.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import numpy as np
from torch.utils.data import SequentialSampler
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

from hfnn import registry
from hfnn.metrics import load_metric
from hfnn.pipeline_seq2seq import SOURCE_TOKENIZER_SUBFOLDER, TASK
from hfnn.pipelines.common import (
    BaseModelArguments,
    PipelineCallbacks,
    RunArguments,
    SplitDataArguments,
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

__all__ = ["ModelArguments", "DataArguments", "ARCHITECTURES", "OrderedEvalSeq2SeqTrainer", "build_config",
           "pick_sample_rows", "main"]

logger = logging.getLogger(__name__)

# architecture names and aliases this pipeline builds -> hfnn architecture (read from hfnn.registry)
ARCHITECTURES = {name: entry.name for entry in registry.ARCHITECTURES.values() if entry.supports("seq2seq")
                 for name in (entry.name, *entry.aliases)}
# default (source, target) columns of the built-in corpora, tried in this order
_COLUMN_DEFAULTS = (("word", "phonemes"), ("source", "target"))


@dataclasses.dataclass
class ModelArguments(BaseModelArguments):
    architecture: str = dataclasses.field(
        default="rnn_seq2seq", metadata={"help": "rnn_seq2seq (RNN encoder-decoder) or transformer_seq2seq."}
    )
    model_name_or_path: str | None = dataclasses.field(
        default=None, metadata={"help": "Continue training a saved seq2seq folder instead of building a new model."}
    )
    source_tokenizer_name: str | None = dataclasses.field(
        default=None, metadata={"help": "Load the source tokenizer (default: <model_name_or_path>/source_tokenizer, or train one)."}
    )
    target_tokenizer_name: str | None = dataclasses.field(
        default=None, metadata={"help": "Load the target tokenizer (default: model_name_or_path, or train one)."}
    )
    source_tokenizer_kind: str = dataclasses.field(default="char", metadata={"help": "char, bpe, word or phoneme."})
    target_tokenizer_kind: str = dataclasses.field(default="phoneme", metadata={"help": "char, bpe, word or phoneme."})
    source_vocab_size: int | None = dataclasses.field(
        default=None, metadata={"help": "Largest source vocabulary (None: every symbol seen; bpe: 8000)."}
    )
    target_vocab_size: int | None = dataclasses.field(default=None, metadata={"help": "Largest target vocabulary."})
    min_frequency: int = dataclasses.field(default=1, metadata={"help": "Drop symbols seen fewer times in training."})
    lowercase_source: bool = dataclasses.field(default=False, metadata={"help": "Lower-case the source text."})
    max_source_length: int = dataclasses.field(default=64, metadata={"help": "Truncate sources to this many tokens."})
    max_target_length: int = dataclasses.field(
        default=64, metadata={"help": "Truncate targets to this many tokens (end-of-sequence included)."}
    )


@dataclasses.dataclass
class DataArguments(SplitDataArguments):
    corpus: str | None = dataclasses.field(
        default="cmudict", metadata={"help": "Built-in corpus (cmudict, kjv_french), local file, or Hub dataset name."}
    )
    source_column: str | None = dataclasses.field(
        default=None, metadata={"help": "Column of source texts (default: word, else source)."}
    )
    target_column: str | None = dataclasses.field(
        default=None, metadata={"help": "Column of target texts (default: phonemes, else target)."}
    )
    references_column: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Column with every acceptable target (list of strings) for scoring; default: "
                          "'references' when the corpus has it, else the target column."},
    )
    metrics: str = dataclasses.field(
        default="auto",
        metadata={"help": "g2p (WER + PER against any reference), translation (BLEU + chrF), or auto: g2p when the "
                          "target tokenizer is phoneme-level, else translation."},
    )
    max_train_samples: int | None = dataclasses.field(default=None, metadata={"help": "Train on a random subset."})
    max_eval_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Evaluate on a random subset of this many validation examples."}
    )
    max_test_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Score a random subset of this many test examples."}
    )
    num_attention_examples: int = dataclasses.field(
        default=4, metadata={"help": "Test examples shown in attention_heatmap.png (0: none)."}
    )

    def __post_init__(self):
        _check_count("num_attention_examples", self.num_attention_examples)


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0 (0: none), got {value!r}")


def pick_sample_rows(num_rows: int, num_samples: int, num_attention_examples: int = 0) -> list[int]:
    """Indices of the rows generated for at the end of a run: enough for ``num_samples`` printed samples
    and ``num_attention_examples`` heatmap rows, spread evenly over the ``num_rows`` rows (the split is
    sorted by source length). Empty when both counts are 0 or there are no rows; a negative count is a
    ValueError naming it."""
    _check_count("num_samples", num_samples)
    _check_count("num_attention_examples", num_attention_examples)
    count = min(max(num_samples, num_attention_examples), num_rows)
    if count <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, num_rows - 1, count)})


class OrderedEvalSeq2SeqTrainer(Seq2SeqTrainer):
    """``Seq2SeqTrainer`` that always evaluates in dataset order.

    ``compute_metrics`` matches generated outputs to each example's references by position, but with
    ``train_sampling_strategy="group_by_length"`` the Trainer would also shuffle evaluation batches by length.
    The evaluation splits are sorted by source length beforehand instead, which gives the same short padding.
    """

    def _get_eval_sampler(self, eval_dataset):
        if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None


def _sorted_by_length(ds, column: str):
    """``ds`` sorted by the length of ``column`` (stable), for evaluation batches with little padding."""
    lengths = [len(text) for text in ds[column]]
    return ds.select(sorted(range(len(ds)), key=lengths.__getitem__))


_overrides = parse_config_overrides  # the old private name, for code that imports it


_subset = subset  # the old private name, for code that imports it


def load_seq2seq_corpus(data_args: DataArguments, seed: int):
    """(DatasetDict, source column, target column, references column or None)."""
    # an empty source or target cell is an error naming the file row (the candidate columns are checked)
    candidates = [c for c in (data_args.source_column, data_args.target_column) if c]
    candidates += [c for pair in _COLUMN_DEFAULTS for c in pair]
    options = dict(empty_text="error", text_columns=tuple(dict.fromkeys(candidates)))
    raw = load_split_corpus(data_args, seed, **options)
    columns = raw["train"].column_names
    source, target = data_args.source_column, data_args.target_column
    if source is None or target is None:
        for default_source, default_target in _COLUMN_DEFAULTS:
            if default_source in columns and default_target in columns:
                source, target = source or default_source, target or default_target
                break
    for name, column in (("source_column", source), ("target_column", target)):
        if column is None or column not in columns:
            raise ValueError(f"Set {name}: the corpus has no {column!r} column (columns: {columns})")
    references = data_args.references_column
    if references is None and "references" in columns:
        references = "references"
    if references is not None and references not in columns:
        raise ValueError(f"references_column {references!r} is not a column of the corpus (columns: {columns})")
    return raw, source, target, references


def build_config(architecture: str, source_tokenizer, target_tokenizer, overrides: dict, max_source_length: int,
                 max_target_length: int):
    """A new config of an hfnn encoder–decoder sized to both tokenizers (through ``AutoConfig.for_model``)."""
    config_cls = config_class(architecture, "seq2seq")
    name = registry.architecture(architecture).name
    fields = {
        "source_vocab_size": len(source_tokenizer),
        "vocab_size": len(target_tokenizer),
        "pad_token_id": target_tokenizer.pad_token_id,
        "bos_token_id": target_tokenizer.bos_token_id,
        "eos_token_id": target_tokenizer.eos_token_id,
        "decoder_start_token_id": target_tokenizer.bos_token_id,
        "is_encoder_decoder": True,
    }
    if name == "transformer":
        fields["max_position_embeddings"] = max(max_source_length, max_target_length + 1)
    else:
        fields["max_length"] = max_target_length + 1  # generation: start token + target
    fields.update(overrides)
    config = AutoConfig.for_model(config_cls.model_type, **fields)
    check_config_overrides(config, overrides)
    return config


def _label_rows(label_ids, pad_id) -> list[tuple[int, ...]]:
    """Label id rows without padding (-100 or ``pad_id``), as tuples, for comparing orders."""
    rows = []
    for row in np.asarray(label_ids):
        rows.append(tuple(int(x) for x in row if x >= 0 and x != pad_id))
    return rows


def make_compute_metrics(kind: str, target_tokenizer, references: list[list[str]], expected_labels=None):
    """``compute_metrics`` for ``Seq2SeqTrainer`` with ``predict_with_generate``: decodes the generated ids and
    scores them against ``references`` (every acceptable target of each example, in dataset order).

    ``expected_labels`` (the label ids of the evaluated split, in dataset order) checks that the evaluation
    came back in that order by comparing ids, so targets with symbols the tokenizer maps to unk or cut by
    ``max_target_length`` score as errors instead of stopping the evaluation. A reference symbol unseen in
    training cannot be predicted: such an example counts as wrong."""
    metrics = ("wer", "per") if kind == "g2p" else ("bleu", "chrf")
    modules = {name: load_metric(name) for name in metrics}

    def compute_metrics(eval_pred):
        ids = np.asarray(eval_pred.predictions)
        ids = np.where(ids < 0, target_tokenizer.pad_token_id, ids)
        predictions = [" ".join(p.split()) for p in target_tokenizer.batch_decode(ids, skip_special_tokens=True)]
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        if expected_labels is not None and eval_pred.label_ids is not None:
            # the references are matched by position: check the labels came back in dataset order
            pad = target_tokenizer.pad_token_id
            got, want = _label_rows(eval_pred.label_ids, pad), [tuple(x for x in row if x != pad) for row in expected_labels]
            if len(got) != len(want) or got != want:
                raise RuntimeError("the evaluation returned the examples in another order than the dataset's; "
                                   "the predictions cannot be matched to their references")
        result = {}
        for name, module in modules.items():
            result[name] = float(module.compute(predictions=predictions, references=references)[name])
        if kind == "g2p":
            result["accuracy"] = 1.0 - result["wer"]
        result["predictions_mean_length"] = float(np.mean([len(p.split()) for p in predictions]))
        return result

    return compute_metrics


def save_attention_heatmaps(records: list[dict], sources: list[str], out_dir, title: str) -> Path | None:
    """Plots each example's attention (rows: output symbols, columns: source symbols) into attention_heatmap.png."""
    records = [(s, r) for s, r in zip(sources, records) if r.get("attentions")]
    if not records:
        return None
    cols = min(2, len(records))
    rows = math.ceil(len(records) / cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(5.5 * cols, 4.5 * rows), squeeze=False)
    for ax in axes.flat[len(records):]:
        ax.axis("off")
    for ax, (source, record) in zip(axes.flat, records):
        weights = np.asarray(record["attentions"])
        ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(record["source_tokens"])), record["source_tokens"], rotation=90)
        ax.set_yticks(range(len(record["generated_tokens"])), record["generated_tokens"])
        ax.set_xlabel("source")
        ax.set_ylabel("output")
        ax.set_title(source[:40], fontsize=10)
    fig.suptitle(title)
    return save_figure(fig, out_dir, "attention_heatmap.png")


def _load_tokenizers(model_args: ModelArguments, train_split, source_column: str, target_column: str):
    source_name = model_args.source_tokenizer_name
    target_name = model_args.target_tokenizer_name or model_args.model_name_or_path
    if source_name is None and model_args.model_name_or_path:
        folder = Path(model_args.model_name_or_path) / SOURCE_TOKENIZER_SUBFOLDER
        source_name = str(folder) if folder.is_dir() else model_args.model_name_or_path
    if source_name:
        source_tokenizer = text_only(AutoTokenizer.from_pretrained(source_name))
    else:
        source_tokenizer = train_tokenizer(
            train_split[source_column], kind=model_args.source_tokenizer_kind, vocab_size=model_args.source_vocab_size,
            min_frequency=model_args.min_frequency, lowercase=model_args.lowercase_source,
            model_max_length=model_args.max_source_length,
        )
    if target_name:
        target_tokenizer = text_only(AutoTokenizer.from_pretrained(target_name))
    else:
        target_tokenizer = train_tokenizer(
            train_split[target_column], kind=model_args.target_tokenizer_kind, vocab_size=model_args.target_vocab_size,
            min_frequency=model_args.min_frequency,
        )
    source_tokenizer.padding_side = target_tokenizer.padding_side = "right"
    return source_tokenizer, target_tokenizer


def main(argv=None) -> dict:
    """Runs the pipeline; returns the results dict (``test_wer``, ``test_per`` or ``test_bleu``, ``test_chrf``...)."""
    return run_pipeline(argv, (ModelArguments, DataArguments, RunArguments, Seq2SeqTrainingArguments), _run,
                        check=_check_lengths)


def _check_lengths(model_args, data_args) -> None:
    for name in ("max_source_length", "max_target_length"):
        value = getattr(model_args, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"--{name} must be a whole number of tokens >= 2, got {value!r}")


def _run(folder, model_args, data_args, run_args, training_args) -> dict:
    out_dir = folder.work_dir

    # ---- data
    raw, source_column, target_column, references_column = load_seq2seq_corpus(data_args, training_args.seed)
    raw["train"] = subset(raw["train"], data_args.max_train_samples, training_args.seed)
    for split, limit in (("validation", data_args.max_eval_samples), ("test", data_args.max_test_samples)):
        if split in raw:
            raw[split] = _sorted_by_length(subset(raw[split], limit, training_args.seed), source_column)

    # ---- tokenizers: target at the root of the saved folder, source in source_tokenizer/
    source_tokenizer, target_tokenizer = _load_tokenizers(model_args, raw["train"], source_column, target_column)
    kind = data_args.metrics
    if kind == "auto":
        kind = "g2p" if (model_args.target_tokenizer_kind == "phoneme" or references_column) else "translation"
    if kind not in ("g2p", "translation"):
        raise ValueError(f"metrics must be auto, g2p or translation, got {data_args.metrics!r}")

    # ---- model
    overrides = {}
    if model_args.model_name_or_path:
        model = AutoModelForSeq2SeqLM.from_pretrained(model_args.model_name_or_path)
    else:
        overrides = parse_config_overrides(model_args.config_overrides)
        config = build_config(
            model_args.architecture, source_tokenizer, target_tokenizer, overrides,
            model_args.max_source_length, model_args.max_target_length,
        )
        model = AutoModelForSeq2SeqLM.from_config(config)
        model.generation_config.max_length = model_args.max_target_length + 1  # start token + target
    if not model.config.is_encoder_decoder:
        raise ValueError(f"{type(model).__name__} is not an encoder-decoder model")
    check_resume_architecture(training_args.resume_from_checkpoint, model)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("model %s: %.2fM parameters", type(model).__name__, n_params / 1e6)

    # ---- tokenise: labels = target ids + </s>
    eos = target_tokenizer.eos_token_id

    def preprocess(batch):
        encoded = source_tokenizer(batch[source_column], truncation=True, max_length=model_args.max_source_length)
        targets = target_tokenizer(batch[target_column], truncation=True, max_length=model_args.max_target_length - 1)
        return {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "labels": [ids + [eos] for ids in targets["input_ids"]],
        }

    # the main process fills the datasets cache first; the others (multi-process training) read it
    with training_args.main_process_first(desc="dataset preprocessing"):
        tokenized = raw.map(preprocess, batched=True, remove_columns=raw["train"].column_names, desc="tokenizing")
    train_ds = tokenized["train"]
    eval_ds = tokenized["validation"] if "validation" in tokenized else None
    test_ds = tokenized["test"] if "test" in tokenized else None

    def references_of(split):
        if references_column is not None:
            return [list(r) if not isinstance(r, str) else [r] for r in raw[split][references_column]]
        return [[t] for t in raw[split][target_column]]

    check_eval_split(eval_ds, training_args)
    callbacks = PipelineCallbacks(run_args, training_args)
    trainer = OrderedEvalSeq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=eval_ds if eval_ds is not None and len(eval_ds) else None,
        data_collator=DataCollatorForSeq2Seq(source_tokenizer, model=model, label_pad_token_id=-100),
        processing_class=target_tokenizer,
        compute_metrics=make_compute_metrics(kind, target_tokenizer, references_of("validation"), eval_ds["labels"])
        if eval_ds is not None and len(eval_ds) and training_args.predict_with_generate else None,
        callbacks=callbacks.callbacks,
    )
    # saved first (target tokenizer at the root, source tokenizer in its subfolder): nothing after can lose it
    results = callbacks.train(trainer, folder, {"": target_tokenizer, SOURCE_TOKENIZER_SUBFOLDER: source_tokenizer})
    corpus = data_args.train_file or data_args.corpus
    results.update({
        "attention": getattr(model.config, "attention", "scaled-dot-product"),
        "train_epochs": trainer.state.epoch,
        "train_loss_curve": [[h["step"], h["loss"]] for h in trainer.state.log_history if "loss" in h and "step" in h],
        "train_examples": len(train_ds),
        "source_vocab_size": len(source_tokenizer),
        "target_vocab_size": len(target_tokenizer),
        "corpus": corpus,
        "metrics_kind": kind,
        "generation_num_beams": training_args.generation_num_beams or model.generation_config.num_beams,
        "config_overrides": overrides,
    })
    start = time.monotonic()
    for split, dataset in (("validation", eval_ds), ("test", test_ds)):
        if dataset is None or not len(dataset):
            continue
        if training_args.predict_with_generate:
            trainer.compute_metrics = make_compute_metrics(kind, target_tokenizer, references_of(split), dataset["labels"])
        metrics = trainer.evaluate(dataset, metric_key_prefix=split)
        results.update(split_metrics(metrics))
    results["eval_seconds"] = round(time.monotonic() - start, 1)

    if finish_secondary_process(trainer, folder.path):
        results.update(samples=[], attention_heatmap=None)
        return results
    title = f"{model.config.model_type} ({results['attention']}) on {corpus}"
    curve = save_loss_curve(trainer.state.log_history, out_dir, title=title)

    # ---- a few test examples through the seq2seq-generation pipeline, as a user would call the saved folder
    from transformers import pipeline

    sample_split = raw["test"] if "test" in raw and len(raw["test"]) else raw["train"]
    with_attention = results["attention"] != "none"
    picks = pick_sample_rows(len(sample_split), run_args.num_samples,
                             data_args.num_attention_examples if with_attention else 0)
    samples, heatmap = [], None
    if picks:
        rows = sample_split.select(picks)
        model.eval()
        generator = pipeline(TASK, model=str(out_dir), device=model.device)
        outputs = generator(list(rows[source_column]), return_attentions=with_attention, truncation=True,
                            num_beams=results["generation_num_beams"])
        samples = [
            {"source": row[source_column], "target": row[target_column], "predicted": out["generated_text"]}
            for row, out in zip(rows, outputs)
        ][: run_args.num_samples]
        if with_attention and data_args.num_attention_examples:
            n = data_args.num_attention_examples
            heatmap = save_attention_heatmaps(outputs[:n], list(rows[source_column])[:n], out_dir, title)
    results["samples"] = samples
    results["attention_heatmap"] = heatmap.name if heatmap else None
    report(out_dir, results, run_args, training_args, "seq2seq", dataset=corpus)
    print_summary(title, results, skip=("_length",))
    for sample in samples:
        print(f"- {sample['source'][:60]!r} -> {sample['predicted'][:80]!r} (reference {sample['target'][:80]!r})")
    training_args.output_dir = str(folder.path)
    print(f"saved to {folder.path} (loss curve: {folder.path / curve.name if curve else None}, attention heatmap: "
          f"{folder.path / heatmap.name if heatmap else None})")
    return results


if __name__ == "__main__":
    raise SystemExit(run_command(main))
