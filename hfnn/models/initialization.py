"""Weight initialisation the model families share; parameters that were loaded are left alone."""

import torch
from torch import nn
from transformers import initialization as init

__all__ = ["init_recurrent_", "zero_padding_row_"]


def init_recurrent_(module: nn.RNNBase, forget_gate_bias: str = "bias_ih") -> None:
    """Orthogonal recurrent weights (a block per gate), Xavier input weights, zero biases, an LSTM forget-gate bias
    of 1 (in ``forget_gate_bias``: memory kept early in training); loaded parameters are left alone."""
    hidden = module.hidden_size
    for name, param in module.named_parameters():
        if getattr(param, "_is_hf_initialized", False):
            continue
        if name.startswith("weight_hh"):
            blocks = [nn.init.orthogonal_(torch.empty(hidden, param.shape[1])) for _ in range(param.shape[0] // hidden)]
            init.copy_(param, torch.cat(blocks).to(param.dtype))
        elif name.startswith("weight_ih"):
            init.xavier_uniform_(param)
        elif name.startswith("bias"):
            value = torch.zeros_like(param)
            if isinstance(module, nn.LSTM) and name.startswith(forget_gate_bias):
                value[hidden : 2 * hidden] = 1.0  # gate order i, f, g, o
            init.copy_(param, value)


def zero_padding_row_(embedding: nn.Embedding) -> None:
    """Zero the padding row of an embedding just initialised (a loaded one is left alone)."""
    if embedding.padding_idx is not None and not getattr(embedding.weight, "_is_hf_initialized", False):
        init.zeros_(embedding.weight[embedding.padding_idx])
