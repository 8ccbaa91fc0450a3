"""Causal language modelling: train any hfnn language model on a corpus with ``Trainer``.

In the style of transformers' ``run_clm.py``: arguments are dataclasses parsed by
``HfArgumentParser`` from a recipe file plus command-line overrides::

    python -m hfnn.pipelines.run_lm rnn_shakespeare_char --output_dir runs/rnn-char
    python -m hfnn.pipelines.run_lm my_recipe.yaml --max_steps 200
    hfnn train rnn_shakespeare_char

The run: load the corpus (built-in name, local text files, or a Hub dataset), build the tokenizer
(or load one), tokenise and group the text into blocks with ``datasets.map``, train, evaluate loss
and perplexity on the validation and test splits, save model + tokenizer (safetensors) + loss curve
+ results.json + model card, and print a few generated passages. Switching architecture is a recipe
change (``architecture: rnn`` or ``architecture: transformer`` plus ``config_overrides``).

The text is a stream: a ``.txt`` file's lines keep their newlines and end-of-sequence separates
documents only (files; the works of a built-in corpus such as Shakespeare's plays; the books of the
KJV, whose verses are its lines). Each cell of a csv/json text column is a document of its own; an
empty cell is an empty document and is dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from itertools import chain

import numpy as np
import torch
from datasets import DatasetDict
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from hfnn.metrics import load_metric
from hfnn.tokenization import text_only, train_tokenizer
from hfnn.pipelines.common import (
    BaseDataArguments,
    PipelineCallbacks,
    RunArguments,
    TokenizerModelArguments,
    check_config_overrides,
    check_eval_split,
    check_resume_architecture,
    config_class,
    load_split_corpus,
    finish_secondary_process,
    parse_config_overrides,
    print_summary,
    report,
    run_command,
    run_pipeline,
    save_loss_curve,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ModelArguments(TokenizerModelArguments):
    architecture: str = dataclasses.field(
        default="rnn", metadata={"help": "hfnn architecture to build: rnn or transformer."}
    )
    model_name_or_path: str | None = dataclasses.field(
        default=None, metadata={"help": "Continue from a saved model folder (or Hub id) instead of a new model."}
    )
    config_overrides: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Config fields for a new model, a mapping in the recipe or a JSON string on the command line."},
    )
    tokenizer_kind: str = dataclasses.field(default="char", metadata={"help": "char, bpe or word."})
    vocab_size: int | None = dataclasses.field(default=None, metadata={"help": "Vocabulary size for bpe/word tokenizers."})


@dataclasses.dataclass
class DataArguments(BaseDataArguments):
    corpus: str | None = dataclasses.field(
        default="shakespeare", metadata={"help": "Built-in corpus name, local file, or Hub dataset name."}
    )
    train_file: str | None = dataclasses.field(default=None, metadata={"help": "Local training text (txt/csv/json/jsonl)."})
    validation_file: str | None = dataclasses.field(default=None, metadata={"help": "Local validation text."})
    text_column: str | None = dataclasses.field(default=None, metadata={"help": "Column holding the text."})
    block_size: int = dataclasses.field(default=128, metadata={"help": "Tokens per training example."})
    max_train_samples: int | None = dataclasses.field(default=None, metadata={"help": "Keep this many training blocks."})
    max_eval_samples: int | None = dataclasses.field(default=None, metadata={"help": "Keep this many evaluation blocks."})
    sample_prompts: str = dataclasses.field(
        default="Romeo.\n|Hamlet.\n|Juliet.\n", metadata={"help": "Prompts for the printed samples, separated by |."}
    )
    sample_max_new_tokens: int = dataclasses.field(default=200)
    sample_top_k: int = dataclasses.field(default=20)
    sample_temperature: float = dataclasses.field(default=0.8)


def build_config(architecture: str, tokenizer, overrides: dict):
    """A new config of an hfnn architecture sized to ``tokenizer``."""
    config_cls = config_class(architecture, "language-modeling")
    fields = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    fields.update(overrides)
    config = config_cls(**fields)
    check_config_overrides(config, overrides)
    return config


def load_text_corpus(data_args: DataArguments, seed: int):
    # an empty csv/json text cell is an empty document: dropped (it would only add an end-of-sequence)
    options = {"text_column": data_args.text_column} if data_args.text_column else {}
    return load_split_corpus(data_args, seed, empty_text="drop", **options)


def tokenize_and_group(raw, tokenizer, block_size: int, num_proc: int | None = None, document_ends=None):
    """Tokenises the text as one stream per split and cuts it into ``block_size`` blocks.

    End-of-sequence closes documents, not rows. ``document_ends`` (default: ``raw.document_ends``, which
    ``load_corpus`` sets for ``.txt`` files, whose rows are lines that keep their newline, and for ``kjv``,
    whose rows are verses, each a line of its book) lists, per split, the rows that end a document (the
    last line of each file, the last verse of each book); without it every row is a document (a csv/json
    text cell, a row of a built-in corpus that is a whole work, such as one Shakespeare play).
    """
    if "text" not in raw["train"].column_names:
        raise ValueError(f"The corpus has no 'text' column (columns: {raw['train'].column_names}); set text_column.")
    eos = tokenizer.eos_token_id
    separator = ""
    if document_ends is None:
        document_ends = getattr(raw, "document_ends", None)
        separator = getattr(raw, "line_separator", "") or ""

    def tokenizer_for(split):
        ends = None if document_ends is None else set(document_ends.get(split, []))

        def tokenize(batch, indices):
            texts = batch["text"] if not separator or ends is None else [t + separator for t in batch["text"]]
            ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
            return {"input_ids": [x + [eos] if ends is None or i in ends else x for x, i in zip(ids, indices)]}

        return tokenize

    def group(batch):
        stream = list(chain.from_iterable(batch["input_ids"]))
        usable = (len(stream) // block_size) * block_size
        blocks = [stream[i : i + block_size] for i in range(0, usable, block_size)]
        return {"input_ids": blocks, "labels": [b[:] for b in blocks]}

    tokenized = DatasetDict({
        split: ds.map(tokenizer_for(split), batched=True, with_indices=True, remove_columns=ds.column_names,
                      desc="tokenizing")
        for split, ds in raw.items()
    })
    return tokenized.map(group, batched=True, batch_size=1000, desc=f"grouping into blocks of {block_size}")


def make_compute_metrics():
    metric = load_metric("perplexity")

    def preprocess_logits_for_metrics(logits, labels):
        # Per-token negative log-likelihood of the next token; the full logits never leave the device.
        logits = logits[:, :-1].float()
        targets = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).clamp(min=0), reduction="none"
        ).view_as(targets)
        return nll.masked_fill(targets == -100, float("nan"))

    def compute_metrics(eval_pred):
        nll = np.asarray(eval_pred.predictions, dtype=np.float64).reshape(-1)
        nll = nll[~np.isnan(nll)]
        return metric.compute(predictions=nll.tolist())

    return compute_metrics, preprocess_logits_for_metrics


def generate_samples(model, tokenizer, prompts, max_new_tokens, top_k, temperature, seed=0):
    model.eval()
    set_seed(seed)
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.no_grad():
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=True,
            top_k=top_k,
            temperature=temperature,
            pad_token_id=tokenizer.pad_token_id,
        )
    prompt_len = enc["input_ids"].shape[1]
    return [p + tokenizer.decode(o[prompt_len:], skip_special_tokens=True) for p, o in zip(prompts, out)]


def main(argv=None) -> dict:
    return run_pipeline(argv, (ModelArguments, DataArguments, RunArguments, TrainingArguments), _run,
                        check=_check_block_size)


def _check_block_size(model_args, data_args) -> None:
    if isinstance(data_args.block_size, bool) or not isinstance(data_args.block_size, int) or data_args.block_size < 2:
        raise ValueError(
            f"--block_size must be a whole number of tokens >= 2 (each block predicts its tokens 2..n from the "
            f"ones before), got {data_args.block_size!r}"
        )


def _run(folder, model_args, data_args, run_args, training_args) -> dict:
    out_dir = folder.work_dir

    raw = load_text_corpus(data_args, training_args.seed)
    tokenizer_source = model_args.tokenizer_name or model_args.model_name_or_path
    if tokenizer_source:
        tokenizer = text_only(AutoTokenizer.from_pretrained(tokenizer_source))
    else:
        tokenizer = train_tokenizer(
            raw["train"]["text"], kind=model_args.tokenizer_kind, vocab_size=model_args.vocab_size, padding_side="left"
        )
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge

    overrides = {}
    if model_args.model_name_or_path:
        model = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path)
        if model.config.vocab_size < len(tokenizer):
            raise ValueError(
                f"The tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {model.config.vocab_size}."
            )
    else:
        overrides = parse_config_overrides(model_args.config_overrides)
        config = build_config(model_args.architecture, tokenizer, overrides)
        model = AutoModelForCausalLM.from_config(config)
    check_resume_architecture(training_args.resume_from_checkpoint, model)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions is not None and data_args.block_size > max_positions:
        raise ValueError(f"block_size={data_args.block_size} exceeds the model's max_position_embeddings={max_positions}")
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("model %s: %.2fM parameters", type(model).__name__, n_params / 1e6)

    # the main process fills the datasets cache first; the others (multi-process training) read it
    with training_args.main_process_first(desc="dataset preprocessing"):
        lm = tokenize_and_group(raw, tokenizer, data_args.block_size)
    train_ds, eval_ds = lm["train"], lm["validation"]
    if data_args.max_train_samples:
        train_ds = train_ds.select(range(min(data_args.max_train_samples, len(train_ds))))
    if data_args.max_eval_samples:
        eval_ds = eval_ds.select(range(min(data_args.max_eval_samples, len(eval_ds))))
    if len(train_ds) == 0:
        raise ValueError(
            f"No training example: the training text is shorter than block_size={data_args.block_size} tokens; "
            "lower --block_size or give more text"
        )
    check_eval_split(eval_ds, training_args, f"has no block of block_size={data_args.block_size} tokens",
                     "give more validation text, lower --block_size")
    test_ds = lm["test"] if "test" in lm else None
    if test_ds is not None and data_args.max_eval_samples:
        test_ds = test_ds.select(range(min(data_args.max_eval_samples, len(test_ds))))

    compute_metrics, preprocess = make_compute_metrics()
    callbacks = PipelineCallbacks(run_args, training_args)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=eval_ds if len(eval_ds) else None,
        data_collator=default_data_collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=preprocess,
        callbacks=callbacks.callbacks,
    )
    results = callbacks.train(trainer, folder, {"": tokenizer})
    results.update({
        "tokenizer_kind": model_args.tokenizer_kind if not tokenizer_source else "loaded",
        "corpus": data_args.train_file or data_args.corpus,
        "block_size": data_args.block_size,
        "config_overrides": overrides,
        "eval_history": [
            [h["step"], h["eval_loss"]] for h in trainer.state.log_history if "eval_loss" in h and "step" in h
        ],
    })
    for split, ds in (("validation", eval_ds), ("test", test_ds)):
        if ds is None or len(ds) == 0:
            continue
        metrics = trainer.evaluate(ds, metric_key_prefix=split)
        results[f"{split}_loss"] = metrics[f"{split}_loss"]
        results[f"{split}_perplexity"] = metrics.get(f"{split}_perplexity", _perplexity(metrics[f"{split}_loss"]))

    if finish_secondary_process(trainer, folder.path):
        results["samples"] = []
        return results
    curve = save_loss_curve(trainer.state.log_history, out_dir, title=f"{model.config.model_type} on {results['corpus']}")
    prompts = [p for p in data_args.sample_prompts.split("|") if p][: run_args.num_samples]
    samples = generate_samples(
        model, tokenizer, prompts, data_args.sample_max_new_tokens, data_args.sample_top_k, data_args.sample_temperature
    ) if prompts else []
    results["samples"] = samples
    report(out_dir, results, run_args, training_args, "text-generation")
    training_args.output_dir = str(folder.path)
    print_summary(model.config.model_type, results)
    for sample in samples:
        print("-" * 60)
        print(sample)
    print("-" * 60)
    print(f"saved to {folder.path} (loss curve: {folder.path / curve.name if curve else None})")
    return results


def _perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


if __name__ == "__main__":
    raise SystemExit(run_command(main))
