"""What the hfnn modeling files share: input checks, recurrence runners, pooling, caches, the direct decoding loop.
It imports only ``torch`` and ``transformers``: ``save_pretrained`` copies it beside the modeling files for remote
code, so saved models load where hfnn is not installed."""

import warnings

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.generation.stopping_criteria import EosTokenCriteria, MaxLengthCriteria
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import Seq2SeqLMOutput, SequenceClassifierOutput
from transformers.utils.import_utils import is_tracing

__all__ = [
    "DirectDecodingMixin", "EncoderDecoderMixin", "TextClassifierPreTrainedModel", "RecurrentStateLayer", "RecurrentCache",
    "CheckpointedCall", "batch_first", "check_attention_mask", "check_input_ids", "check_token_labels", "checkpointed",
    "checkpointing", "classification_loss",
    "classifier_dropout", "classifier_output", "final_states", "init_recurrent_", "layer_runner", "make_rnn",
    "masked_max", "masked_mean", "pop_legacy_cache", "real_token_mask", "recurrent_step", "run_masked_scan",
    "run_recurrence", "run_stack", "seq2seq_lm_output", "shift_tokens_right", "tokens_first", "torch_layout",
    "traced_over_time", "zero_padding_row_",
]


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


def classification_loss(model, labels: torch.Tensor, logits: torch.Tensor, **kwargs) -> torch.Tensor:
    """``model.loss_function`` of a classifier, ``problem_type`` inferred as transformers does (-100 skips an example)."""
    config = model.config
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type != "single_label_classification":
        labels = labels.to(logits.dtype)
    elif labels.is_floating_point():
        raise ValueError(
            f"labels must be integer class ids for single_label_classification, got dtype {labels.dtype}; for "
            "regression or multi-label targets set config.problem_type"
        )
    elif not is_tracing(labels):
        bad = labels[(labels != -100) & ((labels < 0) | (labels >= config.num_labels))]
        if bad.numel():
            raise ValueError(
                f"labels contains class id {int(bad[0])}, outside the model's classes [0, num_labels="
                f"{config.num_labels}); use -100 to skip an example"
            )
    return model.loss_function(labels.to(logits.device), logits, config, **kwargs)


def classifier_dropout(config) -> nn.Dropout:
    return nn.Dropout(config.classifier_dropout if config.classifier_dropout is not None else config.dropout)


def classifier_output(model, head: nn.Module, pooled: torch.Tensor, labels, outputs,
                      output_class=SequenceClassifierOutput, **kwargs):
    """A classifier's output: ``logits = head(pooled)``, the loss for ``labels``, the backbone's states and weights."""
    logits = head(pooled)
    loss = classification_loss(model, labels, logits, **kwargs) if labels is not None else None
    return output_class(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                        attentions=getattr(outputs, "attentions", None))


def seq2seq_lm_output(model, logits: torch.Tensor, labels, num_items_in_batch=None, **outputs) -> Seq2SeqLMOutput:
    """``Seq2SeqLMOutput`` with the mean token cross-entropy over ``labels != -100`` (``logits[:, t]`` predicts
    ``labels[:, t]``: the decoder input is already shifted)."""
    loss = None
    if labels is not None:
        loss = model.loss_function(logits, labels, vocab_size=model.config.vocab_size, shift_labels=labels,
                                   num_items_in_batch=num_items_in_batch)
    return Seq2SeqLMOutput(loss=loss, logits=logits, **outputs)


def real_token_mask(attention_mask, input_ids, pad_token_id, shape, device, owner: str) -> torch.Tensor:
    """The bool ``(batch, time)`` mask of real tokens: ``attention_mask`` if given (a ValueError naming
    ``owner`` unless its shape is ``shape``), else the positions of ``input_ids`` not holding ``pad_token_id``,
    else all True."""
    if attention_mask is not None:
        if tuple(attention_mask.shape) != tuple(shape):
            shapes = f"{tuple(attention_mask.shape)}, expected {tuple(shape)}"
            raise ValueError(f"{owner}: attention_mask has shape {shapes}")
        return attention_mask.bool()
    if input_ids is not None and pad_token_id is not None:
        return input_ids != pad_token_id
    return torch.ones(shape, dtype=torch.bool, device=device)


def pop_legacy_cache(kwargs: dict, cache):
    """transformers v5 calls the cache ``cache``; the v4 keyword ``past_key_values`` is still accepted, with
    a deprecation warning, instead of vanishing into ``**kwargs`` (which would silently drop the cache)."""
    if "past_key_values" not in kwargs:
        return cache
    legacy = kwargs.pop("past_key_values")
    warnings.warn("`past_key_values` is deprecated, pass the cache as `cache=`", FutureWarning, stacklevel=3)
    if cache is not None and legacy is not None and legacy is not cache:
        raise ValueError("Give the cache once: both `cache` and `past_key_values` were passed.")
    return cache if cache is not None else legacy


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
    _check_own_weights(rnn, "output_hidden_states=True and gradient checkpointing run it layer by layer")
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


def _between_layers(rnn, x):
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
            x = _between_layers(rnn, x)
    state = tuple(map(torch.cat, zip(*pieces))) if isinstance(pieces[0], tuple) else torch.cat(pieces, 0)
    return x, state, below if keep else None


def tokens_first(mask: torch.Tensor) -> torch.Tensor:
    """Gather index putting each row's real tokens (``mask`` True) first, in order (distinct keys: ONNX has no stable
    sort)."""
    time = mask.shape[1]
    return torch.argsort((~mask).long() * time + torch.arange(time, device=mask.device), dim=1)


def traced_over_time(tensor: torch.Tensor) -> bool:
    """Whether a recurrence over ``tensor``'s time axis runs as a ``scan`` (:func:`run_masked_scan`): when a graph is
    exported (``torch.export``, the ONNX exporter) or traced by FX or fake tensors, where torch's fused recurrent
    modules would fix the time axis. ``torch.compile`` keeps the fused kernels (dynamo breaks the graph around them):
    inductor lowers a scan only with ``capture_scalar_outputs``, and a scan trains slower than the fused kernels."""
    return is_tracing(tensor) and not (torch.compiler.is_compiling() and not torch.compiler.is_exporting())


def _cell_weights(rnn: nn.RNNBase, index: int, reverse: bool = False):
    """``(weight_ih, weight_hh, bias_ih, bias_hh)`` of layer ``index`` (its backward direction when ``reverse``); the
    biases None for a module without them."""
    suffix = f"_l{index}{'_reverse' if reverse else ''}"
    return tuple(getattr(rnn, f"{name}{suffix}") if rnn.bias or name.startswith("weight") else None
                 for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def _cell_kind(rnn: nn.RNNBase) -> str:  # what _cell computes: "lstm", "gru", "tanh" or "relu"
    return "lstm" if isinstance(rnn, nn.LSTM) else "gru" if isinstance(rnn, nn.GRU) else rnn.nonlinearity


def _cell(kind: str, gates_in: torch.Tensor, state: tuple[torch.Tensor, ...], weight_hh, bias_hh):
    """One step of a recurrent cell (:func:`_cell_kind`) from ``state`` ((h,) or an LSTM's (h, c), each (batch,
    hidden)), ``gates_in`` = W_ih x_t + b_ih already computed: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) (relu
    for rnn_relu), or the GRU and LSTM gates in torch's order (r, z, n; i, f, g, o)."""
    gates_h = nn.functional.linear(state[0], weight_hh, bias_hh)
    if kind == "lstm":
        i, f, g, o = (gates_in + gates_h).chunk(4, dim=-1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if kind == "gru":
        (in_r, in_z, in_n), (h_r, h_z, h_n) = gates_in.chunk(3, dim=-1), gates_h.chunk(3, dim=-1)
        r, z = torch.sigmoid(in_r + h_r), torch.sigmoid(in_z + h_z)
        n = torch.tanh(in_n + r * h_n)
        return ((1 - z) * n + z * state[0],)
    return ((torch.tanh if kind == "tanh" else torch.relu)(gates_in + gates_h),)


def _check_own_weights(rnn: nn.RNNBase, why: str) -> None:
    """Code that runs a recurrence on ``rnn``'s weights itself (per layer, as a scan, step by step) cannot see a
    LoRA adapter on them: peft's ParamWrapper applies its update in its own forward only. ValueError saying so."""
    if hasattr(rnn, "get_base_layer"):
        raise ValueError(
            f"The recurrent weights carry a LoRA adapter, which applies only to the whole stack in one call: {why}. "
            "Merge the adapter first (merge_and_unload()), or adapt only the dense layers (add_adapter(..., "
            "target_modules=[...]))")


def _check_scannable(rnn: nn.RNNBase) -> None:
    _check_own_weights(rnn, "exporting or tracing the model runs it as a scan")
    if getattr(rnn, "proj_size", 0):
        raise ValueError(f"{type(rnn).__name__} with proj_size={rnn.proj_size} has no traceable recurrence in hfnn")


def _state_parts(rnn: nn.RNNBase, state, index: int, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Entry ``index`` of a state in torch's layout ((h,) or (h, c), each (batch, hidden)); zeros for None."""
    if state is None:
        zeros = like.new_zeros(batch, rnn.hidden_size)
        return (zeros, zeros.clone()) if isinstance(rnn, nn.LSTM) else (zeros,)
    return tuple(s[index] for s in (state if isinstance(state, tuple) else (state,)))


def _torch_state(finals: list[tuple[torch.Tensor, ...]]):  # per layer and direction -> torch's layout
    parts = tuple(torch.stack(part) for part in zip(*finals))
    return parts if len(parts) == 2 else parts[0]


def _masked_step(kind: str, recurrent_weights, zero_padding: bool):
    """The ``scan`` body of :func:`run_masked_scan` for one layer, its directions side by side: ``(state, (gates_in,
    kept) per direction) -> (state, kept where not kept; each direction's output)``, ``recurrent_weights`` the
    ``(weight_hh, bias_hh)`` of each direction. ``scan`` wants fresh tensors, in and out: no view of another (a view
    as the initial state ties the batch axis of a traced graph to the example's)."""
    parts = 2 if kind == "lstm" else 1

    def step(carry, slices):
        state, outputs = [], []
        for direction, (weight_hh, bias_hh) in enumerate(recurrent_weights):
            gates_in, kept = slices[2 * direction : 2 * direction + 2]
            old = carry[parts * direction : parts * (direction + 1)]
            new = _cell(kind, gates_in, old, weight_hh, bias_hh)
            state += [torch.where(kept, n, o) for n, o in zip(new, old)]
            outputs.append((state[-parts] if zero_padding else new[0]).clone())
        return tuple(state), tuple(outputs)

    return step


def run_masked_scan(rnn: nn.RNNBase, inputs: torch.Tensor, mask: torch.Tensor, state=None, zero_padding: bool = True):
    """The traceable form of a packed run, with a dynamic time axis: per layer, W_ih x + b_ih for every step in one
    matmul, then the recurrence of both directions in one ``torch`` ``scan`` (an ONNX Scan) on ``rnn``'s own weights.
    A step where ``mask`` (bool (batch, time)) is False leaves the state as it was (h and an LSTM's c), so each row's
    run is exactly that of its tokens alone, whatever the padding (the backward direction, reading the time axis
    reversed, starts at the row's last token). ``state`` is in torch's layout (None: zeros).

    Returns ``(output, final state in torch's layout, outputs of the lower layers)``. At padding the outputs are 0, or
    with ``zero_padding=False`` (one direction) what a step-by-step loop gives there: the stack's output for that
    input from the kept state, which is also what the next layer reads."""
    _check_scannable(rnn)
    from torch._higher_order_ops.scan import scan

    batch, kind = inputs.shape[0], _cell_kind(rnn)
    width = 2 if rnn.bidirectional else 1
    if width == 2 and not zero_padding:
        raise ValueError("run_masked_scan: zero_padding=False is for one direction")
    keep = mask.transpose(0, 1)[..., None]  # (time, batch, 1)
    keeps = (keep, keep.flip(0))[:width]  # the backward direction reads the time axis reversed
    x, below, finals = inputs, [], []
    for index in range(rnn.num_layers):
        weights = [_cell_weights(rnn, index, direction == 1) for direction in range(width)]
        gates_in = [nn.functional.linear(x, w_ih, b_ih).transpose(0, 1) for w_ih, _, b_ih, _ in weights]
        slices = [t for direction in range(width) for t in (
            gates_in[direction].flip(0) if direction else gates_in[direction], keeps[direction])]
        init = [p.clone() for direction in range(width)
                for p in _state_parts(rnn, state, index * width + direction, batch, inputs)]
        final, ys = scan(_masked_step(kind, [(w_hh, b_hh) for _, w_hh, _, b_hh in weights], zero_padding),
                         tuple(init), tuple(slices))
        ys = [(y.flip(0) if direction else y).transpose(0, 1) for direction, y in enumerate(ys)]
        x = torch.cat(ys, -1) if width == 2 else ys[0]
        if zero_padding:
            x = x * mask[..., None].to(x.dtype)
        parts = len(final) // width
        finals += [final[parts * direction : parts * (direction + 1)] for direction in range(width)]
        if index < rnn.num_layers - 1:
            below.append(x)
            x = _between_layers(rnn, x)
    return x, _torch_state(finals), below


def recurrent_step(rnn: nn.RNNBase):
    """``f(inputs, state)``: one time step of every layer of a one-direction ``rnn`` on its own weights, for a loop
    written around it (a ``scan`` body, which must not hold the module itself): ``inputs (batch, input_size)``,
    ``state`` in torch's layout -> ``(top output (batch, hidden), new state in torch's layout, outputs of the lower
    layers)``."""
    _check_scannable(rnn)
    if rnn.bidirectional:
        raise ValueError("recurrent_step runs one direction")
    kind, layers = _cell_kind(rnn), [_cell_weights(rnn, index) for index in range(rnn.num_layers)]
    dropout = rnn.dropout if rnn.training else 0.0

    def step(inputs, state):
        parts = state if isinstance(state, tuple) else (state,)
        x, below, finals = inputs, [], []
        for index, (weight_ih, weight_hh, bias_ih, bias_hh) in enumerate(layers):
            new = _cell(kind, nn.functional.linear(x, weight_ih, bias_ih), tuple(p[index] for p in parts), weight_hh,
                        bias_hh)
            finals.append(new)
            x = new[0]
            if index < len(layers) - 1:
                below.append(x)
                x = nn.functional.dropout(x, dropout, True) if dropout else x
        return x, _torch_state(finals), below

    return step


def masked_max(values: torch.Tensor, keep: torch.Tensor, dim: int) -> torch.Tensor:
    """Max of ``values`` over ``dim`` where ``keep`` (broadcastable bool) is True; 0 where nothing is kept. Finite in
    value and gradient whatever the dtype (no -inf enters), so a row of padding pools to zeros alone or in a batch."""
    keep = keep.expand_as(values)
    low = values.detach().min() if values.numel() else values.new_zeros(())
    pooled = torch.where(keep, values, low).amax(dim=dim)
    return torch.where(keep.any(dim=dim), pooled, torch.zeros_like(pooled))


def masked_mean(values: torch.Tensor, keep: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``values`` over ``dim`` where ``keep`` is True; 0 where nothing is kept."""
    weights = keep.to(values.dtype)
    return (values * weights).sum(dim) / weights.sum(dim).clamp(min=1.0)


def final_states(outputs: torch.Tensor, mask: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """The summary of recurrent ``outputs (batch, time, hidden)``: the output at each row's last real token (``mask``
    bool ``(batch, time)``), and for ``bidirectional`` outputs the backward half at the first real token (the final
    state of each direction). Rows without a token give their (zero) output at padding."""
    rows = torch.arange(outputs.shape[0], device=outputs.device)
    last = outputs[rows, outputs.shape[1] - 1 - mask.flip(1).int().argmax(1)]
    if not bidirectional:
        return last
    half = outputs.shape[-1] // 2
    return torch.cat([last[:, :half], outputs[rows, mask.int().argmax(1), half:]], dim=-1)


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None):
    """Decoder inputs for teacher forcing: ``[start, y_1, ..., y_{T-1}]``, with -100 replaced by the pad id."""
    if decoder_start_token_id is None:
        raise ValueError("config.decoder_start_token_id must be set to build decoder_input_ids from labels")
    shifted = labels.new_zeros(labels.shape)
    shifted[:, 1:] = labels[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    if pad_token_id is None and bool((shifted == -100).any()):
        raise ValueError("labels contain -100 but config.pad_token_id is None: cannot build decoder_input_ids")
    return shifted.masked_fill(shifted == -100, 0 if pad_token_id is None else pad_token_id)


class RecurrentStateLayer(CacheLayerMixin):
    """The state of one recurrent layer as a cache layer: ``states`` holds one ``(batch, hidden)`` tensor per part
    (h, and c for an LSTM). It does not grow with the text and cannot be rolled back."""

    is_compileable = is_croppable = False

    def __init__(self):
        super().__init__()
        self.states: tuple[torch.Tensor, ...] | None = None
        self.seen_tokens = 0

    def __repr__(self):
        return f"{type(self).__name__}(parts={[tuple(s.shape) for s in self.states or ()]})"

    def lazy_initialization(self, key_states, value_states):
        raise NotImplementedError("a recurrent layer keeps a state, not keys and values")

    def update(self, key_states, value_states, *args, **kwargs):
        raise NotImplementedError("a recurrent layer keeps a state, not keys and values: use the cache's own update")

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return query_length, 0  # nothing to attend to: the past lives in the state

    def get_seq_length(self) -> int:
        return self.seen_tokens

    def get_max_length(self) -> int:
        return -1

    def _map(self, fn):
        if self.states is not None:
            self.states = tuple(fn(s) for s in self.states)

    def offload(self):
        self._map(lambda s: s.to("cpu", non_blocking=True))

    def prefetch(self):  # nothing is offloaded but to the CPU
        pass

    def reset(self) -> None:
        self.states, self.seen_tokens, self.is_initialized = None, 0, False

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._map(lambda s: s.index_select(0, beam_idx.to(s.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map(lambda s: s.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map(lambda s: s[indices])

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove:
            raise NotImplementedError(f"{type(self).__name__} cannot be cropped: a recurrent state has no per-token "
                                      "entries")


class RecurrentCache(Cache):
    """A cache of recurrent states with one :class:`RecurrentStateLayer` per recurrent layer (and direction), so
    transformers' generic cache helpers (reorder, repeat, select, reset, offload) work on it. ``states`` / ``store``
    read and write all layers at once, as ``(batch, layers, hidden)`` tensors (batch first, as beam search wants)."""

    is_compileable = is_croppable = False
    crop = RecurrentStateLayer.crop
    get_max_length = RecurrentStateLayer.get_max_length

    def __init__(self):
        super().__init__(layers=[])

    @property
    def batch_size(self) -> int:
        return -1 if not self.layers or self.layers[0].states is None else self.layers[0].states[0].shape[0]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.layers[0].get_seq_length() if self.layers else 0

    @property
    def states(self) -> tuple[torch.Tensor, ...] | None:
        if not self.layers or self.layers[0].states is None:
            return None
        return tuple(torch.stack(parts, dim=1) for parts in zip(*(layer.states for layer in self.layers)))

    def store(self, states: tuple[torch.Tensor, ...], num_new_tokens: int) -> None:
        while len(self.layers) < states[0].shape[1]:
            self.layers.append(RecurrentStateLayer())
        for index, layer in enumerate(self.layers):
            layer.states = tuple(s[:, index] for s in states)
            layer.seen_tokens += num_new_tokens
            layer.is_initialized = True

    def activate_past_recording(self) -> None:
        pass


class TextClassifierPreTrainedModel(PreTrainedModel):
    """Base of the bag-of-embeddings and convolutional classifiers: the embedding table sits at
    ``model.embeddings.word_embeddings``; the losses are per-example means that ignore the Trainer's
    ``num_items_in_batch``, so the Trainer scales them for gradient accumulation itself."""

    base_model_prefix = "model"
    _input_embed_layer = "word_embeddings"
    accepts_loss_kwargs = False
    supports_gradient_checkpointing = True


def zero_padding_row_(embedding: nn.Embedding) -> None:
    """Zero the padding row of an embedding just initialised (a loaded one is left alone)."""
    if embedding.padding_idx is not None and not getattr(embedding.weight, "_is_hf_initialized", False):
        init.zeros_(embedding.weight[embedding.padding_idx])


class EncoderDecoderMixin:
    """The encoder, the decoder and the input (encoder) embedding of an encoder-decoder whose base model has
    ``encoder`` and ``decoder`` modules."""

    def get_encoder(self, modality=None):
        return self.base_model.encoder

    def get_decoder(self):
        return self.base_model.decoder

    def get_input_embeddings(self):
        return self.base_model.encoder.embed_tokens

    def set_input_embeddings(self, value):
        self.base_model.encoder.embed_tokens = value


class DirectDecodingMixin:
    """A direct loop for greedy decoding and sampling in place of transformers' ``_sample`` (which rebuilds inputs,
    masks and outputs at every token: for small models about the cost of the forward) when nothing needs its
    generality; same processors, token choice, padding of finished rows and stopping rules: the same tokens.

    A model gives ``_FAST_DECODE_KWARGS`` (the keywords the loop understands), ``_decode_allowed(model_kwargs)``,
    ``_decode_start(input_ids, model_kwargs)`` -> ``(last logits, state)``, ``_decode_step(tokens, state)`` ->
    ``(logits, state)`` and optionally ``_decode_end(state, steps)``."""

    _FAST_DECODE_KWARGS = frozenset()

    def _decode_end(self, state, steps):
        pass

    def _can_decode_fast(self, stopping_criteria, generation_config, synced_gpus, streamer, model_kwargs) -> bool:
        return (
            not synced_gpus
            and streamer is None
            and not generation_config.return_dict_in_generate
            and not getattr(generation_config, "is_assistant", False)
            and bool(model_kwargs.get("use_cache", True))
            and set(model_kwargs) <= self._FAST_DECODE_KWARGS
            and all(isinstance(c, (MaxLengthCriteria, EosTokenCriteria)) for c in stopping_criteria)
            and sum(isinstance(c, MaxLengthCriteria) for c in stopping_criteria) == 1
            and (generation_config._pad_token_tensor is not None
                 or not any(isinstance(c, EosTokenCriteria) for c in stopping_criteria))
            and self._decode_allowed(model_kwargs)
        )

    def _sample(self, input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus=False,
                streamer=None, **model_kwargs):
        if not self._can_decode_fast(stopping_criteria, generation_config, synced_gpus, streamer, model_kwargs):
            return super()._sample(input_ids, logits_processor, stopping_criteria, generation_config,
                                   synced_gpus=synced_gpus, streamer=streamer, **model_kwargs)
        max_length = next(c.max_length for c in stopping_criteria if isinstance(c, MaxLengthCriteria))
        eos = [c.eos_token_id.reshape(-1) for c in stopping_criteria if isinstance(c, EosTokenCriteria)]
        eos = torch.cat(eos).to(input_ids.device) if eos else None
        pad = generation_config._pad_token_tensor
        logits, state = self._decode_start(input_ids, model_kwargs)
        unfinished = torch.ones(input_ids.shape[0], dtype=torch.long, device=input_ids.device) if eos is not None else None
        keep_ids = len(logits_processor) > 0  # processors read the text so far
        pieces, length, steps = [input_ids], input_ids.shape[1], 0
        while True:
            scores = logits_processor(input_ids, logits.to(dtype=torch.float32, copy=True)) if keep_ids else logits.float()
            if generation_config.do_sample:
                next_tokens = torch.multinomial(nn.functional.softmax(scores, dim=-1), num_samples=1).squeeze(1)
            else:
                next_tokens = torch.argmax(scores, dim=-1)
            if unfinished is not None:  # finished rows get padding
                next_tokens = next_tokens * unfinished + pad * (1 - unfinished)
            length += 1
            if keep_ids:
                input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)
            else:
                pieces.append(next_tokens[:, None])
            if length >= max_length:
                break
            if unfinished is not None:
                unfinished = unfinished & ~torch.isin(next_tokens, eos)
                if unfinished.max() == 0:
                    break
            logits, state = self._decode_step(next_tokens[:, None], state)
            steps += 1
        self._decode_end(state, steps)
        return input_ids if keep_ids else torch.cat(pieces, dim=-1)
