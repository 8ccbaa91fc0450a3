"""Activation checkpointing of code that is not a layer of its own: a model holds a :class:`CheckpointedCall` as
``checkpointed_call``, which transformers' ``gradient_checkpointing_enable`` switches on."""

from torch.utils._pytree import tree_flatten, tree_unflatten
from transformers.modeling_layers import GradientCheckpointingLayer

__all__ = ["CheckpointedCall", "checkpointed", "checkpointing"]


class CheckpointedCall(GradientCheckpointingLayer):
    """``call(function, *args)`` runs ``function(*args)``, recomputed in the backward pass once transformers enables
    activation checkpointing; models hold one as ``checkpointed_call`` (see :func:`checkpointed`)."""

    def forward(self, function, *args):
        return function(*args)


def checkpointing(owner) -> bool:  # whether owner's CheckpointedCall checkpoints (enabled, in training)
    return bool(getattr(getattr(owner, "checkpointed_call", None), "gradient_checkpointing", False) and owner.training)


def checkpointed(owner, function, *args):
    """``function(*args)`` through ``owner.checkpointed_call`` if there is one, nested tensors (LSTM states, packed
    sequences) passed flat as re-entrant checkpointing needs."""
    call = getattr(owner, "checkpointed_call", None)
    if call is None:
        return function(*args)
    leaves, spec = tree_flatten(args)
    result_spec = []

    def flat(*leaves):
        leaves, found = tree_flatten(function(*tree_unflatten(list(leaves), spec)))
        result_spec[:] = [found]
        return tuple(leaves)

    return tree_unflatten(list(call(flat, *leaves)), result_spec[0])
