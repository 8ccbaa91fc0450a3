"""Checks before training: the training arguments, the tokenizer against the model, a checkpoint to resume
against the model this run builds. Each is a ValueError naming the problem."""

from __future__ import annotations

import math
from pathlib import Path

from hfnn.models.errors import FileError, OptionError

__all__ = ["check_resume_architecture", "check_tokenizer", "check_training_arguments"]


def check_training_arguments(args) -> None:
    """``TrainingArguments`` that the Trainer would take without a word and then fail on (or loop on) late: a batch
    size or accumulation below 1, a negative or non-finite learning rate, no step to train; or ignore: ``fp16`` on
    the CPU, where accelerate trains in float32 without autocast. ValueError naming the option."""
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OptionError(f"--{name} must be an integer >= 1, got {value!r}")
    if not (math.isfinite(args.learning_rate) and args.learning_rate >= 0):
        raise OptionError(f"--learning_rate must be a finite number >= 0, got {args.learning_rate!r}")
    epochs = args.num_train_epochs
    if (args.max_steps is None or args.max_steps <= 0) and not (math.isfinite(epochs) and epochs > 0):
        raise OptionError(
            f"--num_train_epochs must be > 0 (or give --max_steps), got {epochs!r}: nothing would be trained")
    if args.fp16 and args.device.type == "cpu":
        raise OptionError("--fp16 true needs a GPU: on the CPU the Trainer would train in float32 without saying so. "
                          "Use --bf16 true --use_cpu true (bfloat16 autocast on the CPU), or leave --fp16 out")


def check_tokenizer(model_or_config, tokenizer, vocab_size_field: str = "vocab_size") -> None:
    """Raises ValueError when ``tokenizer`` cannot be the one ``model_or_config`` was trained with: it has more
    tokens than the model's vocabulary (its ids would fall outside the embedding table), or its pad/bos/eos ids
    differ from the config's. A tokenizer of the same size with other tokens is beyond any check: keep the
    tokenizer saved beside the model (save_pretrained does)."""
    config = getattr(model_or_config, "config", model_or_config)
    vocab_size = getattr(config, vocab_size_field)
    if len(tokenizer) > vocab_size:
        raise OptionError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's {vocab_size_field} is {vocab_size}: they do "
            "not belong together (ids >= vocab_size are outside the model's embedding table)"
        )
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        ours, theirs = getattr(config, name, None), getattr(tokenizer, name, None)
        if ours is not None and theirs is not None and not isinstance(ours, list) and ours != theirs:
            raise OptionError(
                f"The tokenizer's {name} is {theirs} but the model config's is {ours}: they do not belong together"
            )


_RESUME_FIELDS = ("model_type", "vocab_size", "source_vocab_size", "hidden_size", "embedding_size",
                  "num_hidden_layers", "num_encoder_layers", "num_decoder_layers", "rnn_type", "attention",
                  "num_labels", "intermediate_size", "num_attention_heads", "window_sizes", "num_filters",
                  "bidirectional_encoder", "bidirectional")


def check_resume_architecture(checkpoint, model) -> None:
    """A ``--resume_from_checkpoint`` folder must hold a model of the same type and shape as the one built
    for this run; ValueError naming the checkpoint and the first difference otherwise."""
    import json

    try:
        saved = json.loads((Path(checkpoint) / "config.json").read_text(encoding="utf-8")) if checkpoint else None
    except (OSError, ValueError):
        return  # the checkpoint checks say what is wrong with an unreadable folder
    if saved is None:
        return
    ours, where = model.config.to_dict(), f"--resume_from_checkpoint {checkpoint}: it"
    classes = saved.get("architectures") or []
    if classes and type(model).__name__ not in classes:
        raise FileError(f"{where} holds a {', '.join(classes)}, this run trains a {type(model).__name__}; resume "
                        "with the pipeline and recipe of that run")
    for field in _RESUME_FIELDS:
        if saved.get(field) is not None and ours.get(field) is not None and saved[field] != ours[field]:
            raise FileError(f"{where} holds another model ({field} {saved[field]!r}, this run builds "
                            f"{ours[field]!r}); resume with the recipe and config_overrides of that run")
    labels = saved.get("id2label"), ours.get("id2label")
    if "num_labels" not in saved and None not in labels and len(labels[0]) != len(labels[1]):
        raise FileError(f"{where} has {len(saved['id2label'])} labels, this run {len(ours['id2label'])}")
