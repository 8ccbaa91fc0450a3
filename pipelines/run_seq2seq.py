"""Sequence to sequence with ``Seq2SeqTrainer`` (in the style of transformers' ``run_translation.py``)::

    python -m hfnn.pipelines.run_seq2seq rnn_seq2seq_cmudict --output_dir runs/g2p-bahdanau
    python -m hfnn.pipelines.run_seq2seq rnn_seq2seq_none_cmudict        # the seed's fixed context vector
    python -m hfnn.pipelines.run_seq2seq rnn_seq2seq_kjv_french           # English -> French verses
    python -m hfnn.pipelines.run_seq2seq rnn_seq2seq_cmudict --train_file train.csv --source_column word \\
        --target_column phonemes

Corpus (source and target columns) -> a source and a target tokenizer -> training -> generation for the
validation and test splits, scored by WER and PER for grapheme-to-phoneme (right when it matches any reference
pronunciation) or BLEU and chrF for translation -> model, the target tokenizer at the root and the source one
in ``source_tokenizer/`` (what the ``seq2seq-generation`` pipeline loads), loss curve, attention heatmap of a
few test examples, results.json, model card.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainingArguments

from hfnn.data.corpora import SEQ2SEQ_COLUMN_DEFAULTS, Seq2SeqColumns, resolve_seq2seq_columns
from hfnn.data.streaming import refuse_streaming
from hfnn.models import registry
from hfnn.models.errors import OptionError
from hfnn.models.pipeline_seq2seq import SOURCE_TOKENIZER_SUBFOLDER, TASK
from hfnn.pipelines.common import DataArguments as BaseDataArguments
from hfnn.pipelines.common import ModelArguments as BaseModelArguments
from hfnn.pipelines.common import (
    Pipeline,
    RunArguments,
    RunData,
    arg,
    check_count,
    load_split_corpus,
    load_tokenizer,
    report_cut,
    run_command,
    run_pipeline,
    split_metrics,
    subset,
)
from hfnn.training import OrderedEvalSeq2SeqTrainer, pyplot, save_figure, seq2seq_metrics

__all__ = ["ARCHITECTURES", "DataArguments", "ModelArguments", "OrderedEvalSeq2SeqTrainer", "Seq2SeqData",
           "Seq2SeqPipeline", "main", "pick_sample_rows", "run_pipeline"]

# architecture names and aliases this pipeline builds -> hfnn architecture (read from hfnn.models.registry)
ARCHITECTURES = {name: entry.name for entry in registry.ARCHITECTURES.values() if entry.supports("seq2seq")
                 for name in (entry.name, *entry.aliases)}


@dataclasses.dataclass
class ModelArguments(BaseModelArguments):
    architecture: str = arg("rnn_seq2seq", "rnn_seq2seq (RNN encoder-decoder) or transformer_seq2seq.")
    source_tokenizer_name: str | None = arg(None, "Load the source tokenizer (default: <model_name_or_path>/"
                                                  "source_tokenizer, or train one).")
    target_tokenizer_name: str | None = arg(None, "Load the target tokenizer (default: model_name_or_path, "
                                                  "or train one).")
    source_tokenizer_kind: str = arg("char", "Source tokenizer to train: char, bpe, word or phoneme.")
    target_tokenizer_kind: str = arg("phoneme", "Target tokenizer to train: char, bpe, word or phoneme.")
    source_vocab_size: int | None = arg(None, "Largest source vocabulary (None: every symbol seen; bpe: 8000).")
    target_vocab_size: int | None = arg(None, "Largest target vocabulary.")
    lowercase_source: bool = arg(False, "Lower-case the source text.")
    max_source_length: int = arg(64, "Truncate sources to this many tokens.")
    max_target_length: int = arg(64, "Truncate targets to this many tokens (end-of-sequence included).")

    def __post_init__(self):
        for name in ("max_source_length", "max_target_length"):
            check_count(f"--{name}", getattr(self, name), 2, " (tokens)")


@dataclasses.dataclass
class DataArguments(BaseDataArguments):
    corpus: str | None = arg("cmudict", "Built-in corpus (cmudict, kjv_french), local file, or Hub dataset name.")
    source_column: str | None = arg(None, "Column of source texts (default: word, else source).")
    target_column: str | None = arg(None, "Column of target texts (default: phonemes, else target).")
    references_column: str | None = arg(None, "Column with every acceptable target (list of strings) for scoring; "
                                              "default: 'references' when the corpus has it, else the target column.")
    metrics: str = arg("auto", "g2p (WER + PER against any reference), translation (BLEU + chrF), or auto: g2p when "
                               "the target tokenizer is phoneme-level, else translation.")
    max_test_samples: int | None = arg(None, "Score a random subset of this many test examples.")
    num_attention_examples: int = arg(4, "Test examples shown in attention_heatmap.png (0: none).")
    streaming: bool = arg(False, "Not for this pipeline: streaming applies to run_lm (an error if true).")

    def __post_init__(self):
        super().__post_init__()
        refuse_streaming(self.streaming, "seq2seq (run_seq2seq)")
        check_count("num_attention_examples", self.num_attention_examples, 0, " (0: none)")


def pick_sample_rows(num_rows: int, num_samples: int, num_attention_examples: int = 0) -> list[int]:
    """Indices of the rows generated for at the end of a run: enough for ``num_samples`` printed samples
    and ``num_attention_examples`` heatmap rows, spread evenly over the ``num_rows`` rows (the split is
    sorted by source length). Empty when both counts are 0 or there are no rows; a negative count is a
    ValueError naming it."""
    check_count("num_samples", num_samples, 0, " (0: none)")
    check_count("num_attention_examples", num_attention_examples, 0, " (0: none)")
    count = min(max(num_samples, num_attention_examples), num_rows)
    return sorted({int(i) for i in np.linspace(0, num_rows - 1, count)}) if count > 0 else []


def sorted_by_length(ds, column: str):
    """``ds`` sorted by the length of ``column`` (stable), for evaluation batches with little padding."""
    lengths = [len(text) for text in ds[column]]
    return ds.select(sorted(range(len(ds)), key=lengths.__getitem__))


def save_attention_heatmaps(records: list[dict], sources: list[str], out_dir, title: str) -> Path | None:
    """Plots each example's attention (rows: output symbols, columns: source symbols) into attention_heatmap.png."""
    records = [(s, r) for s, r in zip(sources, records) if r.get("attentions")]
    if not records:
        return None
    cols = min(2, len(records))
    fig, axes = pyplot().subplots(math.ceil(len(records) / cols), cols, figsize=(5.5 * cols, 4.5 * math.ceil(
        len(records) / cols)), squeeze=False)
    for ax in axes.flat[len(records):]:
        ax.axis("off")
    for ax, (source, record) in zip(axes.flat, records):
        ax.imshow(np.asarray(record["attentions"]), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(record["source_tokens"])), record["source_tokens"], rotation=90)
        ax.set_yticks(range(len(record["generated_tokens"])), record["generated_tokens"])
        ax.set(xlabel="source", ylabel="output")
        ax.set_title(source[:40], fontsize=10)
    fig.suptitle(title)
    return save_figure(fig, out_dir, "attention_heatmap.png")


@dataclasses.dataclass(kw_only=True)
class Seq2SeqData(RunData):
    source: str  # the source column
    target: str  # the target column
    references: str | None = None  # the column of every acceptable target, if any
    kind: str = "translation"  # of the metrics: g2p or translation
    columns: Seq2SeqColumns | None = None  # how they were resolved (as hfnn evaluate resolves them)


class Seq2SeqPipeline(Pipeline):
    task, card_task = "seq2seq", "seq2seq"
    arguments = (ModelArguments, DataArguments, RunArguments, Seq2SeqTrainingArguments)
    # scored by what it generates (WER and PER, or BLEU and chrF), not by the loss alone as transformers' default
    # would leave it; --predict_with_generate false keeps the loss only (and skips generating)
    argument_defaults = {"predict_with_generate": True}
    trainer_class = OrderedEvalSeq2SeqTrainer
    plots = ("loss curve", "attention heatmap")
    summary_skip = ("_length",)

    def load_data(self):
        d = self.data_args
        # an empty source or target cell is an error naming the file row (the candidate columns are checked)
        candidates = [c for c in (d.source_column, d.target_column) if c] + \
            [c for p in SEQ2SEQ_COLUMN_DEFAULTS for c in p]
        raw = load_split_corpus(d, self.seed, empty_text="error", text_columns=tuple(dict.fromkeys(candidates)))
        columns = resolve_seq2seq_columns(
            raw["train"].column_names, source=d.source_column, target=d.target_column, references=d.references_column,
            metrics=d.metrics, phoneme_target=self.model_args.target_tokenizer_kind == "phoneme")
        source, target, references, kind = columns.source, columns.target, columns.references, columns.kind
        raw["train"] = subset(raw["train"], d.max_train_samples, self.seed)
        for split, limit in (("validation", d.max_eval_samples), ("test", d.max_test_samples)):
            if split in raw:
                raw[split] = sorted_by_length(subset(raw[split], limit, self.seed), source)
        return Seq2SeqData(raw=raw, source=source, target=target, references=references, kind=kind, columns=columns)

    def load_tokenizers(self, data):
        m, folder = self.model_args, Path(self.model_args.model_name_or_path or "") / SOURCE_TOKENIZER_SUBFOLDER
        source_name = m.source_tokenizer_name or (
            (str(folder) if folder.is_dir() else m.model_name_or_path) if m.model_name_or_path else None)
        source = load_tokenizer(source_name, data.raw["train"][data.source], "right",
                                "--source_tokenizer_name" if m.source_tokenizer_name else "--model_name_or_path",
                                kind=m.source_tokenizer_kind,
                                vocab_size=m.source_vocab_size, min_frequency=m.min_frequency,
                                lowercase=m.lowercase_source, model_max_length=m.max_source_length)
        target = load_tokenizer(m.target_tokenizer_name or m.model_name_or_path, data.raw["train"][data.target],
                                "right", "--target_tokenizer_name" if m.target_tokenizer_name else
                                "--model_name_or_path", kind=m.target_tokenizer_kind, vocab_size=m.target_vocab_size,
                                min_frequency=m.min_frequency)
        return {"": target, SOURCE_TOKENIZER_SUBFOLDER: source}

    def config_fields(self, data):
        m, target = self.model_args, data.tokenizer
        fields = {"source_vocab_size": len(data.tokenizers[SOURCE_TOKENIZER_SUBFOLDER]), "vocab_size": len(target),
                  "pad_token_id": target.pad_token_id, "bos_token_id": target.bos_token_id,
                  "eos_token_id": target.eos_token_id, "decoder_start_token_id": target.bos_token_id,
                  "is_encoder_decoder": True}
        if registry.architecture(m.architecture).name == "transformer":
            fields["max_position_embeddings"] = max(m.max_source_length, m.max_target_length + 1)
        else:
            fields["max_length"] = m.max_target_length + 1  # generation: start token + target
        return fields

    def prepare_model(self, data, model):
        if not model.config.is_encoder_decoder:
            raise OptionError(f"{type(model).__name__} is not an encoder-decoder model")
        if not self.model_args.model_name_or_path:
            model.generation_config.max_length = self.model_args.max_target_length + 1  # start token + target

    def preprocess(self, data):
        m, raw, source, target = self.model_args, data.raw, data.tokenizers[SOURCE_TOKENIZER_SUBFOLDER], data.tokenizer

        def encode(batch):  # labels = target ids + </s>
            encoded = source(batch[data.source], truncation=True, max_length=m.max_source_length)
            targets = target(batch[data.target], truncation=True, max_length=m.max_target_length - 1)["input_ids"]
            return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                    "labels": [ids + [target.eos_token_id] for ids in targets]}

        encoded = raw.map(encode, batched=True, remove_columns=raw["train"].column_names, desc="tokenizing")
        report_cut(encoded, raw, "input_ids", data.source, source, m.max_source_length, "sources",
                   "--max_source_length")
        report_cut(encoded, raw, "labels", data.target, target, m.max_target_length, "targets", "--max_target_length",
                   room=1)
        return encoded

    def _metrics(self, data, split, dataset):
        references = data.columns.references_of(data.raw[split])
        return seq2seq_metrics(data.kind, data.tokenizer, references, dataset["labels"])

    def trainer_kwargs(self, data, eval_ds):
        with_metrics = len(eval_ds) and self.training_args.predict_with_generate
        return {"data_collator": DataCollatorForSeq2Seq(data.tokenizers[SOURCE_TOKENIZER_SUBFOLDER], model=self.model,
                                                        label_pad_token_id=-100),
                "compute_metrics": self._metrics(data, "validation", eval_ds) if with_metrics else None}

    def facts(self, data):
        return {"attention": getattr(self.model.config, "attention", "scaled-dot-product"),
                "source_vocab_size": len(data.tokenizers[SOURCE_TOKENIZER_SUBFOLDER]),
                "target_vocab_size": len(data.tokenizer), "metrics_kind": data.kind,
                # the beams the scores were generated with: GenerationConfig leaves an unset num_beams None (one beam)
                "generation_num_beams": (self.training_args.generation_num_beams
                                         or self.model.generation_config.num_beams or 1)}

    def evaluate(self, data, trainer, splits):
        results = {}
        for split, dataset in splits.items():
            if self.training_args.predict_with_generate:
                trainer.compute_metrics = self._metrics(data, split, dataset)
            results.update(split_metrics(trainer.evaluate(dataset, metric_key_prefix=split)))
        return results

    def title(self):
        return f"{self.model.config.model_type} ({getattr(self.model.config, 'attention', 'scaled-dot-product')}) " \
               f"on {self.corpus}"

    def finish(self, data, trainer, results):
        """A few test examples through the seq2seq-generation pipeline, as a user would call the saved folder."""
        from transformers import pipeline

        split = data.raw["test"] if "test" in data.raw and len(data.raw["test"]) else data.raw["train"]
        with_attention = results["attention"] != "none"
        n = self.data_args.num_attention_examples if with_attention else 0
        picks = pick_sample_rows(len(split), self.run_args.num_samples, n)
        results["attention_heatmap"] = None
        if not picks:
            return [], [None]
        rows = split.select(picks)
        self.model.eval()
        generator = pipeline(TASK, model=str(self.out_dir), device=self.model.device)
        outputs = generator(list(rows[data.source]), return_attentions=with_attention, truncation=True,
                            num_beams=results["generation_num_beams"])
        samples = [{"source": row[data.source], "target": row[data.target], "predicted": out["generated_text"]}
                   for row, out in zip(rows, outputs)][: self.run_args.num_samples]
        heatmap = save_attention_heatmaps(outputs[:n], list(rows[data.source])[:n], self.out_dir, self.title()) \
            if n else None
        results["attention_heatmap"] = heatmap.name if heatmap else None
        return samples, [heatmap]

    def print_sample(self, s):
        print(f"- {s['source'][:60]!r} -> {s['predicted'][:80]!r} (reference {s['target'][:80]!r})")


main = Seq2SeqPipeline.main  # main(argv) runs the pipeline and returns the results dict

if __name__ == "__main__":
    raise SystemExit(run_command(main, name=__spec__.name))
