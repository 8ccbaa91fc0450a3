"""Causal language modelling with ``Trainer`` (in the style of transformers' ``run_clm.py``)::

    python -m hfnn.pipelines.run_lm rnn_shakespeare_char --output_dir runs/rnn-char
    python -m hfnn.pipelines.run_lm my_recipe.yaml --max_steps 200 --architecture transformer

Corpus -> tokenizer (trained or loaded) -> blocks of ``block_size`` tokens -> training -> loss and perplexity
on the validation and test splits -> model, tokenizer, loss curve, results.json, model card -> sampled text.
The text is a stream: a ``.txt`` file's lines keep their newlines and end-of-sequence separates documents only
(files, the works of Shakespeare, the books of the KJV); each cell of a csv/json text column is a document,
and an empty cell is dropped.
"""

from __future__ import annotations

import dataclasses

import torch
from datasets import DatasetDict
from transformers import TrainingArguments, default_data_collator, set_seed

from hfnn.data.corpora import Corpus, lm_blocks, open_corpus, separator_hint
from hfnn.models.errors import DataError, OptionError
from hfnn.pipelines.common import (
    Pipeline,
    RunArguments,
    RunData,
    TextDataArguments,
    TokenizerModelArguments,
    arg,
    check_count,
    load_split_corpus,
    run_command,
    run_pipeline,
)
from hfnn.training import causal_lm_metrics, check_tokenizer

__all__ = ["DataArguments", "LanguageModelingPipeline", "ModelArguments", "load_text_corpus", "main", "run_pipeline",
           "tokenize_and_group"]


@dataclasses.dataclass
class ModelArguments(TokenizerModelArguments):
    architecture: str = arg("rnn", "hfnn architecture to build: rnn or transformer.")


@dataclasses.dataclass
class DataArguments(TextDataArguments):
    corpus: str | None = arg("shakespeare", "Built-in corpus name, local file, or Hub dataset name.")
    block_size: int = arg(128, "Tokens per training example.")
    sample_prompts: str = arg("Romeo.\n|Hamlet.\n|Juliet.\n", "Prompts for the printed samples, separated by |.")
    sample_max_new_tokens: int = arg(200, "Tokens generated per printed sample.")
    sample_top_k: int = arg(20, "Top-k sampling of the printed samples.")
    sample_temperature: float = arg(0.8, "Sampling temperature of the printed samples.")
    preprocessing_num_workers: int | None = arg(None, "Processes that tokenise the text (default: this one).")
    streaming: bool = arg(False, "Read the corpus as it trains (a datasets IterableDataset of local .txt files or "
                                 "a Hub dataset), in bounded memory; needs --max_steps (or --max_train_minutes).")
    shuffle_buffer: int = arg(10000, "Streaming: blocks in the shuffle buffer (1: no shuffling).")
    tokenizer_sample_chars: int = arg(10_000_000, "Streaming: characters from the start of the training stream a "
                                                  "tokenizer is trained on (unless --tokenizer_name is given).")

    def __post_init__(self):
        super().__post_init__()
        check_count("--shuffle_buffer", self.shuffle_buffer, 1, " (blocks; 1: no shuffling)")
        check_count("--tokenizer_sample_chars", self.tokenizer_sample_chars, 1, " (characters)")
        if self.preprocessing_num_workers is not None:
            check_count("--preprocessing_num_workers", self.preprocessing_num_workers, 1, " (processes that "
                        "tokenise; leave it unset for one)")
        check_count("--block_size", self.block_size, 2, " (tokens per block: each predicts its tokens 2..n from the "
                                                        "ones before)")


def load_text_corpus(data_args, seed: int) -> Corpus:
    """The run's text, with its document ends (:func:`hfnn.data.corpora.open_corpus`); an empty csv/json text cell
    is an empty document: dropped (it would only add an eos)."""
    options = {"text_column": data_args.text_column} if data_args.text_column else {}
    return load_split_corpus(data_args, seed, opener=open_corpus, empty_text="drop", **options)


def _rows_per_batch(ds, most: int = 1000) -> int:
    """Rows per tokenising batch: ``most``, fewer when the rows are long (pieces of a one-line file), so that a
    batch holds about :data:`~hfnn.data.corpora.documents.TOKENIZE_CHARS` characters or less."""
    import pyarrow.compute as pc

    from hfnn.data.corpora.documents import TOKENIZE_CHARS

    if not len(ds):
        return most
    longest = pc.max(pc.utf8_length(ds.data.column("text"))).as_py() or 1
    return max(1, min(most, TOKENIZE_CHARS // longest))


def tokenize_and_group(corpus: Corpus | DatasetDict, tokenizer, block_size: int,
                       document_ends=None, num_proc: int | None = None) -> DatasetDict:
    """Tokenises the text as one stream per split and cuts it into ``block_size`` blocks
    (:func:`hfnn.data.corpora.lm_blocks`, as ``hfnn evaluate`` scores it).

    End-of-sequence closes documents, not rows. ``document_ends`` (default: the corpus' own, which
    :func:`~hfnn.data.corpora.open_corpus` gives for ``.txt`` files, whose rows are lines that keep their newline,
    and for ``kjv``, whose rows are verses, each a line of its book) lists, per split, the rows that end a document
    (the last line of each file, the last verse of each book); without it (and for a plain ``DatasetDict``) every
    row is a document (a csv/json text cell, a row of a built-in corpus that is a whole work, such as one
    Shakespeare play).

    The rows go to the tokenizer in batches of 1000, fewer when they are long (:func:`_rows_per_batch`);
    ``num_proc``: worker processes of ``datasets.map``.
    """
    corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
    raw = corpus.splits
    if "text" not in raw["train"].column_names:
        raise DataError(f"The corpus has no 'text' column (columns: {raw['train'].column_names})"
                        f"{separator_hint(raw['train'].column_names)}; set text_column.")
    if document_ends is not None:  # the caller's document ends: nothing between the rows of a document
        corpus = Corpus(raw, document_ends)

    def blocks_for(split):
        ends = corpus.ends_of(split)
        separator = corpus.line_separator if ends is not None else ""

        def blocks(batch, indices):
            flags = None if ends is None else [i in ends for i in indices]
            ids = lm_blocks(tokenizer, batch["text"], block_size, ends_document=flags, separator=separator)
            return {"input_ids": ids, "labels": [b[:] for b in ids]}

        return blocks

    # each batch's stream is cut into blocks, its rest dropped
    return DatasetDict({split: ds.map(blocks_for(split), batched=True, batch_size=_rows_per_batch(ds),
                                      with_indices=True, remove_columns=ds.column_names, desc="tokenizing",
                                      num_proc=num_proc if num_proc and num_proc > 1 and len(ds) > 1 else None)
                        for split, ds in raw.items()})


@dataclasses.dataclass(kw_only=True)
class LmData(RunData):
    """The language model's data: the splits with their document ends and line separator (``text``)."""

    text: Corpus
    stream: object = None  # the streamed data (hfnn.data.streaming.LmStream) with --streaming true


class LanguageModelingPipeline(Pipeline):
    task, card_task = "language-modeling", "text-generation"
    arguments = (ModelArguments, DataArguments, RunArguments, TrainingArguments)
    padding_side = "left"  # decoder-only generation continues from the right edge

    @classmethod
    def check_arguments(cls, model_args, data_args, run_args, training_args) -> None:
        steps = training_args.max_steps
        if data_args.streaming and (steps is None or steps <= 0) and not run_args.max_train_minutes:
            raise OptionError("--streaming true trains for a number of steps, not epochs (a stream has no length): "
                              "give --max_steps N (or --max_train_minutes)")

    def load_data(self):
        block_size = self.data_args.block_size
        if self.data_args.streaming:
            return self.load_stream()
        text = load_text_corpus(self.data_args, self.seed)  # the splits and their document ends
        return LmData(raw=text.splits, text=text,
                      empty_eval=(f"has no block of block_size={block_size} tokens",
                                  "give more validation text, lower --block_size"))

    def load_stream(self) -> LmData:
        """With --streaming true: the sharded training stream, its bounded held-out blocks' sources, and as the
        raw training split the sample a tokenizer is trained on (none when one is loaded)."""
        from datasets import Dataset

        from hfnn.data.streaming import open_lm_stream, take_text

        d, args, m = self.data_args, self.training_args, self.model_args
        if args.max_steps is None or args.max_steps <= 0:
            args.max_steps = 10**9  # the time budget stops it
        eval_blocks = d.max_eval_samples or 256
        stream = open_lm_stream(corpus=d.corpus, train_file=d.train_file, validation_file=d.validation_file,
                                test_file=d.test_file, text_column=d.text_column, eval_blocks=eval_blocks,
                                block_size=d.block_size, processes=max(1, args.world_size), seed=self.seed)
        loaded = m.tokenizer_name or m.model_name_or_path
        sample = [] if loaded else take_text(stream.train, d.tokenizer_sample_chars)
        stream.facts.update(streaming=True, tokenizer_sample_chars=None if loaded else sum(map(len, sample)),
                            shuffle_buffer=d.shuffle_buffer, eval_blocks=eval_blocks)
        raw = DatasetDict({"train": Dataset.from_dict({"text": sample})})
        return LmData(raw=raw, text=Corpus(raw), stream=stream,
                      empty_eval=(f"has no block of block_size={d.block_size} tokens",
                                  "give a longer --validation_file, lower --block_size"))

    def config_fields(self, data):
        tok = data.tokenizer
        return {"vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
                "eos_token_id": tok.eos_token_id}

    def prepare_model(self, data, model):
        tok, block_size = data.tokenizer, self.data_args.block_size
        if self.model_args.model_name_or_path:
            check_tokenizer(model, tok)
        for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
            setattr(model.generation_config, name, getattr(tok, name))
        max_positions = getattr(model.config, "max_position_embeddings", None)
        if max_positions is not None and block_size > max_positions:
            raise OptionError(f"block_size={block_size} exceeds the model's max_position_embeddings={max_positions}")

    def preprocess(self, data):
        block_size = self.data_args.block_size
        if data.stream is not None:
            d = self.data_args
            blocks = data.stream.blocks(data.tokenizer, block_size, data.stream.facts["eval_blocks"],
                                        d.shuffle_buffer, self.seed)
            # each process reads its own shards of the stream (accelerate shards a datasets IterableDataset)
            self.training_args.accelerator_config.dispatch_batches = False
            return blocks
        blocks = tokenize_and_group(data.text.with_splits(data.raw), data.tokenizer, block_size,
                                    num_proc=self.data_args.preprocessing_num_workers)
        for split, limit in (("train", self.data_args.max_train_samples),
                             ("validation", self.data_args.max_eval_samples),
                             ("test", self.data_args.max_eval_samples)):
            if split in blocks and limit:
                blocks[split] = blocks[split].select(range(min(limit, len(blocks[split]))))
        if not len(blocks["train"]):
            raise DataError(f"No training example: the training text is shorter than block_size={block_size} tokens; "
                            "lower --block_size or give more text")
        return blocks

    def trainer_kwargs(self, data, eval_ds):
        compute_metrics, preprocess = causal_lm_metrics()
        return {"data_collator": default_data_collator, "compute_metrics": compute_metrics,
                "preprocess_logits_for_metrics": preprocess}

    def facts(self, data):
        stream = data.stream.facts if data.stream is not None else {}
        return {**super().facts(data), "block_size": self.data_args.block_size, **stream}

    def evaluate(self, data, trainer, splits):
        results = {}
        for split, ds in splits.items():
            metrics = trainer.evaluate(ds, metric_key_prefix=split)
            results[f"{split}_loss"] = loss = metrics[f"{split}_loss"]
            results[f"{split}_perplexity"] = metrics.get(f"{split}_perplexity", torch.tensor(loss).exp().item())
        return results

    def finish(self, data, trainer, results):
        d, tok, model = self.data_args, data.tokenizer, self.model
        prompts = [p for p in d.sample_prompts.split("|") if p][: self.run_args.num_samples]
        if not prompts:
            return [], []
        model.eval()
        set_seed(0)
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=d.sample_max_new_tokens, do_sample=True, top_k=d.sample_top_k,
                                 temperature=d.sample_temperature, pad_token_id=tok.pad_token_id)
        width = enc["input_ids"].shape[1]
        return [p + tok.decode(o[width:], skip_special_tokens=True) for p, o in zip(prompts, out)], []

    def print_sample(self, sample):
        print("-" * 60 + "\n" + sample)


main = LanguageModelingPipeline.main  # main(argv) runs the pipeline and returns the results dict

if __name__ == "__main__":
    raise SystemExit(run_command(main, name=__spec__.name))
