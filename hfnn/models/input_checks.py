"""Checks of what a model is given: ids inside the vocabulary, a mask of the ids' shape, token labels inside the
vocabulary. Each failure is a ValueError naming the input; tensor values are read in eager mode only."""

import torch
from transformers.utils.import_utils import is_tracing

__all__ = ["check_attention_mask", "check_input_ids", "check_token_labels"]


def check_input_ids(input_ids: torch.Tensor, vocab_size: int, name: str = "input_ids", field: str = "vocab_size",
                    allow_empty: bool = False) -> None:
    """A (batch, time) tensor of ids in [0, vocab_size), else a ValueError naming the shape or the bad id. The ids
    are read only in eager mode: a traced graph (export, compile) holds no check that reads tensor values."""
    if input_ids.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, time), got shape {tuple(input_ids.shape)}")
    if is_tracing(input_ids) or (allow_empty and input_ids.numel() == 0):
        return
    if input_ids.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(input_ids.shape)}): give at least one token.")
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"{name} contains token id {high if high >= vocab_size else low} outside the model's vocabulary [0, "
            f"{field}={vocab_size}). Was the text encoded with the tokenizer the model was trained with?"
        )


def check_attention_mask(mask: torch.Tensor | None, shape, name: str = "attention_mask") -> None:
    if mask is not None and tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} (that of the ids it masks), got {tuple(mask.shape)}")


def check_token_labels(labels: torch.Tensor, vocab_size: int) -> None:
    if is_tracing(labels):
        return
    bad = labels[(labels != -100) & ((labels < 0) | (labels >= vocab_size))]
    if bad.numel():
        raise ValueError(
            f"labels contains token id {int(bad[0])}, outside the model's vocabulary [0, vocab_size={vocab_size}) "
            "(use -100 for positions without a loss)"
        )
