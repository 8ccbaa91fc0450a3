"""torch's fused recurrent modules (``nn.RNN``, ``nn.GRU``, ``nn.LSTM``) as the models use them: built batch first,
their states converted between the models' layout and torch's, run in one fused call or layer by layer (for the
outputs of every layer, and for activation checkpointing)."""

import torch
from torch import nn

from .gradient_checkpointing import checkpointed, checkpointing

__all__ = ["batch_first", "check_own_weights", "dropout_between_layers", "layer_runner", "make_rnn", "run_recurrence",
           "run_stack", "torch_layout"]


_RNN_CLASSES = {"rnn_tanh": nn.RNN, "rnn_relu": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def make_rnn(rnn_type: str, input_size: int, hidden_size: int, num_layers: int, dropout: float,
             bidirectional: bool = False) -> nn.RNNBase:
    """A batch-first ``nn.RNN`` (``rnn_tanh`` / ``rnn_relu``), ``nn.GRU`` or ``nn.LSTM`` stack."""
    extra = {"nonlinearity": rnn_type[4:]} if rnn_type.startswith("rnn_") else {}
    return _RNN_CLASSES[rnn_type](input_size, hidden_size, num_layers=num_layers, batch_first=True,
                                  dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional, **extra)


def torch_layout(states: tuple[torch.Tensor, ...]):
    """Batch-first states ``(batch, layers, hidden)`` (h, and c for an LSTM) in the layout torch's recurrent
    modules take: ``(layers, batch, hidden)``, a pair for an LSTM."""
    states = tuple(s.transpose(0, 1).contiguous() for s in states)
    return states if len(states) == 2 else states[0]


def batch_first(state) -> tuple[torch.Tensor, ...]:
    """The inverse of :func:`torch_layout`: always a tuple."""
    return tuple(s.transpose(0, 1) for s in (state if isinstance(state, tuple) else (state,)))


def run_recurrence(rnn: nn.RNNBase, inputs, state):
    """``rnn(inputs, state)``, except that an LSTM under CPU autocast runs in float32: oneDNN has no reduced-precision
    LSTM on CPUs without native bfloat16 ("could not create a primitive descriptor")."""
    base = rnn.get_base_layer() if hasattr(rnn, "get_base_layer") else rnn  # under a LoRA wrapper (peft)
    if isinstance(base, nn.LSTM) and base.weight_ih_l0.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            state = None if state is None else tuple(s.float() for s in state)
            return rnn(inputs.float(), state)
    return rnn(inputs, state)


def check_own_weights(rnn: nn.RNNBase, why: str) -> None:
    """Code that runs a recurrence on ``rnn``'s weights itself (per layer, as a scan, step by step) cannot see a
    LoRA adapter on them: peft's ParamWrapper applies its update in its own forward only. ValueError saying so."""
    if hasattr(rnn, "get_base_layer"):
        raise ValueError(
            f"The recurrent weights carry a LoRA adapter, which applies only to the whole stack in one call: {why}. "
            "Merge the adapter first (merge_and_unload()), or adapt only the dense layers (add_adapter(..., "
            "target_modules=[...]))")


class _OneLayer(nn.Module):
    """A one-layer recurrent module whose parameters ``torch.func.functional_call`` supplies."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, inputs, state):
        return run_recurrence(self.rnn, inputs, state)


def layer_runner(rnn: nn.RNNBase, index: int, reverse: bool | None = None):
    """``f(inputs, state)`` running layer ``index`` of ``rnn`` alone (both directions, or only the backward one when
    ``reverse`` is True, the forward one when False) on ``rnn``'s own parameters, so gradients reach them; ``state``
    in torch's layout for that layer."""
    check_own_weights(rnn, "output_hidden_states=True and gradient checkpointing run it layer by layer")
    templates = rnn.__dict__.setdefault("_hfnn_layer_templates", {})
    both = reverse is None and rnn.bidirectional
    if (index, both) not in templates:
        width = rnn.input_size if index == 0 else rnn.hidden_size * (2 if rnn.bidirectional else 1)
        extra = {"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}
        with torch.device("meta"):
            templates[index, both] = _OneLayer(type(rnn)(width, rnn.hidden_size, num_layers=1, bias=rnn.bias,
                                                         batch_first=rnn.batch_first, bidirectional=both, **extra))
    wanted = {f"_l{index}": "_l0", f"_l{index}_reverse": "_l0_reverse"} if both else {
        f"_l{index}{'_reverse' if reverse else ''}": "_l0"}
    params = {f"rnn.{base}{wanted['_l' + tail]}": p for name, p in rnn.named_parameters()
              for base, _, tail in [name.partition("_l")] if "_l" + tail in wanted}
    template = templates[index, both]
    return lambda inputs, state: torch.func.functional_call(template, params, (inputs, state))


def _layer_state(state, rows):  # rows of a state in torch's layout (a pair for an LSTM)
    return None if state is None else tuple(s[rows] for s in state) if isinstance(state, tuple) else state[rows]


def dropout_between_layers(rnn, x):
    """What the fused module does between its layers: dropout in training (on a tensor or a packed sequence)."""
    if not (rnn.dropout and rnn.training):
        return x
    if isinstance(x, torch.Tensor):
        return nn.functional.dropout(x, rnn.dropout, True)
    return x._replace(data=nn.functional.dropout(x.data, rnn.dropout, True))


def run_stack(rnn: nn.RNNBase, inputs, state, per_layer: bool = False, owner: nn.Module | None = None):
    """``rnn(inputs, state)`` (torch's state layout; ``inputs`` a tensor or a ``PackedSequence``), in one fused
    call, or layer by layer when ``per_layer`` or when ``owner`` checkpoints its layers (see :func:`checkpointed`).
    Returns ``(output, state, below)`` with ``below`` the outputs of the layers under the top one (a list; None
    unless ``per_layer``)."""
    keep = per_layer
    per_layer = per_layer or checkpointing(owner)
    if not per_layer or rnn.num_layers == 1:
        output, state = checkpointed(owner, run_recurrence, rnn, inputs, state)
        return output, state, [] if keep else None
    width = 2 if rnn.bidirectional else 1
    pieces, below, x = [], [], inputs
    for index in range(rnn.num_layers):
        chunk = _layer_state(state, slice(index * width, (index + 1) * width))
        x, layer_state = checkpointed(owner, layer_runner(rnn, index), x, chunk)
        pieces.append(layer_state)
        if index < rnn.num_layers - 1:
            below.append(x)
            x = dropout_between_layers(rnn, x)
    state = tuple(map(torch.cat, zip(*pieces))) if isinstance(pieces[0], tuple) else torch.cat(pieces, 0)
    return x, state, below if keep else None
