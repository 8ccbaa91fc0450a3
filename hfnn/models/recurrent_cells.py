"""The recurrence written out cell by cell on a recurrent module's own weights, where torch's fused kernels cannot
run: the traceable scan of an exported or traced graph (:func:`run_masked_scan`), and one time step of the whole
stack for a loop written around it (:func:`recurrent_step`)."""

import torch
from torch import nn
from transformers.utils.import_utils import is_tracing

from .recurrence import check_own_weights, dropout_between_layers

__all__ = ["recurrent_step", "run_masked_scan", "traced_over_time"]


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


def _check_scannable(rnn: nn.RNNBase) -> None:
    check_own_weights(rnn, "exporting or tracing the model runs it as a scan")
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
            x = dropout_between_layers(rnn, x)
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
