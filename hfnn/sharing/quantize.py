"""Dynamic int8 quantization of exported hfnn graphs with ONNX Runtime's quantization tools, and of PyTorch models
(:func:`quantize_torch`, :func:`quantized_pipeline`).

``quantize_onnx(float_path, output_path)`` rewrites a float32 graph written by :func:`hfnn.sharing.export.export_onnx`
so that every ``MatMul`` against a weight (and every ``Conv``, ``LSTM`` and ``Attention`` ONNX Runtime's dynamic
quantizer supports) runs in int8: the weights are stored as int8 with a scale per output channel, the activations
are quantized on the fly with one scale per tensor and call (``onnxruntime.quantization.quantize_dynamic``). The
quantizer also descends into the ``Scan`` bodies that run the RNN family's recurrences, so the per-step products
with a cell's weights are quantized too. The interface (inputs, outputs, dynamic axes, ``hfnn.*`` metadata) is the
float graph's, so :func:`hfnn.sharing.export.greedy_generate` and anything else that runs the float graph runs the
int8 one.

What stays in float32, and is named by :attr:`QuantizeCheck.kept_float`: products of two activations (attention
scores and the attention-weighted sum of a Transformer, Luong/Bahdanau attention of the RNN encoder-decoder),
``Gemm`` (dynamic quantization has no integer kernel for it), and everything that is not a product (softmax,
normalisation, activations, embeddings' lookups where the quantizer leaves them).

int8 changes the numbers, so the check after quantization is not a bound on the difference but the agreement that
matters to a user, against float32 PyTorch on a padded batch (:data:`CHECK_SHAPE`, rows padded on the left and
the right as in the float check): the share of rows (a classifier) or of real positions (a language model, the
prompt and one step with the carried past) whose top-1 class or token is the same; for a seq2seq model the share of
rows whose greedy output, decoded by :func:`greedy_generate` through the int8 graph, equals PyTorch's ``generate``
token for token. The int8 tolerance is an agreement of at least :data:`INT8_MIN_AGREEMENT`
(:attr:`QuantizeCheck.within_tolerance`); ``min_agreement=`` makes a lower agreement an error. The largest
difference of the logits, relative to their largest magnitude, is reported too. The check batch is random ids, so
a trained model's agreement on its own test split (``bench/deployment.py``) is the number to quote.
"""

from __future__ import annotations

import collections
import dataclasses
import tempfile
from pathlib import Path

import torch
from torch import nn

from hfnn.models.errors import FileError, OptionError

__all__ = ["CHECK_SHAPE", "INT8_MIN_AGREEMENT", "QUANTIZABLE_OPS", "QuantizeCheck", "quantize_onnx", "quantized_path",
           "TorchQuantized", "quantize_torch", "quantized_pipeline", "report_lines"]

# op types handed to ONNX Runtime's dynamic quantizer (its integer-op registry; Gemm and GRU have no entry there)
QUANTIZABLE_OPS = ["MatMul", "Conv", "LSTM", "Attention"]
# products whose float form is reported when it survives quantization
_PRODUCTS = ("MatMul", "Gemm", "Conv", "LSTM", "GRU", "RNN", "Attention", "Einsum")
# the int8 tolerance: share of top-1 predictions (whole greedy outputs for seq2seq) equal to float32's
INT8_MIN_AGREEMENT = 0.9
CHECK_SHAPE = (16, 7)  # batch and sequence of the agreement check


def quantized_path(float_path) -> Path:
    """Where the int8 graph goes beside its float32 one: ``model.onnx`` -> ``model.int8.onnx``."""
    float_path = Path(float_path)
    return float_path.with_name(float_path.stem + ".int8" + float_path.suffix)


@dataclasses.dataclass
class QuantizeCheck:
    """What :func:`quantize_onnx` wrote and how the int8 graph agrees with float32 PyTorch."""

    path: Path
    kind: str
    quantized: dict[str, int]  # integer op type -> count over the graph and its Scan bodies
    kept_float: dict[str, int]  # products left in float32 (see the module docstring) -> count
    agreement: float | None  # share of top-1 (classifier, LM) or whole greedy outputs (seq2seq) equal to float32
    agreement_of: str  # what agreement counts ("rows", "positions", "greedy outputs")
    compared: int  # how many rows/positions/outputs
    max_rel_diff: float | None  # largest |int8 - float32| of the logits / largest |float32|
    check_shape: tuple[int, int]
    float_size_mb: float = 0.0

    @property
    def size_mb(self) -> float:
        return self.path.stat().st_size / 2**20

    @property
    def within_tolerance(self) -> bool | None:
        """Whether the agreement reaches :data:`INT8_MIN_AGREEMENT` (None: not checked)."""
        return None if self.agreement is None else self.agreement >= INT8_MIN_AGREEMENT

    def summary(self) -> str:
        """One line: the agreement and the tolerance, for the command line."""
        if self.agreement is None:
            return "agreement not checked"
        batch, seq = self.check_shape
        what = "greedy outputs equal to" if self.kind == "seq2seq" else "top-1 agreement with"
        return (f"{what} float32 PyTorch: {self.agreement:.1%} of {self.compared} {self.agreement_of} on a padded "
                f"batch of {batch} x {seq} (int8 tolerance: at least {INT8_MIN_AGREEMENT:.0%}); largest logit "
                f"difference {self.max_rel_diff:.1%} of the largest logit")


def report_lines(result: QuantizeCheck) -> list[str]:
    """What ``hfnn export --quantize int8`` prints about the int8 graph."""
    def ops(counts):
        return ", ".join(f"{op} x{n}" for op, n in counts.items()) or "none"

    lines = [f"wrote {result.path} (int8 dynamic, {result.size_mb:.1f} MB, float32 {result.float_size_mb:.1f} MB)",
             f"  int8 ops: {ops(result.quantized)}",
             f"  kept in float32: {ops(result.kept_float)}" + (" (products of two activations, or Gemm, which "
                                                               "dynamic int8 does not cover)" if result.kept_float
                                                               else ""),
             f"  {result.summary()}"]
    if result.within_tolerance is False:
        lines.append("  note: below the int8 tolerance on this random batch; measure on your test split before "
                     "deploying the int8 graph")
    return lines


def _op_counts(graph) -> collections.Counter:
    """Op types of ``graph`` and of every subgraph (Scan/Loop/If bodies) in it."""
    counts = collections.Counter()
    for node in graph.node:
        counts[node.op_type] += 1
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                counts.update(_op_counts(attr.g))
            for sub in attr.graphs:
                counts.update(_op_counts(sub))
    return counts


def quantize_onnx(float_path, output_path=None, model=None, *, check: bool = True,
                  min_agreement: float | None = None, precision: str = "int8",
                  ops=QUANTIZABLE_OPS) -> QuantizeCheck:
    """Dynamic int8 quantization of the exported graph ``float_path`` (see the module docstring).

    Args:
        float_path: a float32 graph written by :func:`hfnn.sharing.export.export_onnx`.
        output_path: the int8 ``.onnx`` file; default :func:`quantized_path` of ``float_path``.
        model: the PyTorch model the graph was exported from, for the agreement check (None: no check).
        check: compare the int8 graph with ``model`` on a padded batch and report the agreement.
        min_agreement: an agreement below it raises ``RuntimeError`` (default: reported only, see
            :attr:`QuantizeCheck.within_tolerance`).
        precision: ``"int8"``, the one precision there is.
        ops: the op types to quantize (default :data:`QUANTIZABLE_OPS`); e.g. without ``"Conv"`` a CNN keeps its
            convolutions in float32, which ONNX Runtime runs faster than its ``ConvInteger`` (bench section 13).

    Returns a :class:`QuantizeCheck`.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from hfnn.sharing.export import require_onnx

    require_onnx()
    if precision != "int8":
        raise OptionError(f"quantize: unknown precision {precision!r}; the one there is: int8")
    float_path = Path(float_path)
    if not float_path.is_file():
        raise FileError(f"quantize: no such ONNX file: {float_path} (write it with hfnn export first)")
    output_path = Path(output_path) if output_path is not None else quantized_path(float_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    float_graph = onnx.load(str(float_path))
    with tempfile.TemporaryDirectory() as scratch:
        # shape inference and constant folding first, as ONNX Runtime recommends before quantizing
        prepared = Path(scratch) / "prepared.onnx"
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        except Exception:  # a graph the pre-processing cannot read is quantized as exported
            prepared = float_path
        quantize_dynamic(str(prepared), str(output_path), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=list(ops), extra_options={"EnableSubgraph": True})
    graph = onnx.load(str(output_path))
    graph.metadata_props.clear()  # the float graph's metadata, which the quantizer drops, plus the precision
    graph.metadata_props.extend(float_graph.metadata_props)
    graph.metadata_props.add(key="hfnn.precision", value="int8-dynamic")
    onnx.save(graph, str(output_path))
    counts = _op_counts(graph.graph)
    quantized = {op: n for op, n in sorted(counts.items()) if "Integer" in op or op.startswith(("DynamicQuantize",
                                                                                                 "QAttention"))}
    kept = {op: n for op, n in sorted(counts.items()) if op in _PRODUCTS}
    meta = {p.key: p.value for p in float_graph.metadata_props}
    kind = meta.get("hfnn.kind", "")
    result = QuantizeCheck(output_path, kind, quantized, kept, None, "", 0, None, (0, 0),
                           float_path.stat().st_size / 2**20)
    if check and model is not None:
        _agreement(result, model)
        if min_agreement is not None and not result.agreement >= min_agreement:
            raise RuntimeError(f"{output_path}: int8 agrees with float32 on {result.agreement:.1%} of the "
                               f"{result.agreement_of} (< {min_agreement:.0%}); keep the float32 graph {float_path}")
    return result


def _agreement(result: QuantizeCheck, model) -> None:
    """Fills in the agreement of ``result``'s graph with ``model`` on export's padded check batch."""
    from hfnn.sharing import export

    graph = export._graph(model)
    session = export._session(result.path)
    batch, seq = CHECK_SHAPE
    example = export._example(model, graph, batch, seq, 0, padded=True, seed=1)
    was_training = model.training
    model.eval()
    same, total, worst, scale = 0, 0, 0.0, 0.0
    try:
        for _ in range(2 if graph.kind == "causal-lm" else 1):
            with torch.no_grad():
                expected = graph.module(*example)
            expected = expected if isinstance(expected, tuple) else (expected,)
            got = session.run(None, {n: t.numpy() for n, t in zip(graph.inputs, export._flat(example))})
            logits, reference = torch.from_numpy(got[0]), expected[0]
            worst = max(worst, float((logits - reference).abs().max()))
            scale = max(scale, float(reference.abs().max()))
            if graph.kind == "text-classification":
                agree = logits.argmax(-1) == reference.argmax(-1)
            elif graph.kind == "causal-lm":
                real = example[1][:, -logits.shape[1]:].bool()
                agree = (logits.argmax(-1) == reference.argmax(-1))[real]
            else:
                agree = None
            if agree is not None:
                same, total = same + int(agree.sum()), total + agree.numel()
            if graph.kind == "causal-lm":
                ids, mask, _ = example
                example = (ids[:, -1:], torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype)], 1),
                           list(expected[1:]))
        if graph.kind == "seq2seq":
            ids, mask = example[0], example[1]
            with torch.no_grad():
                reference = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=seq, do_sample=False,
                                           num_beams=1).numpy()
            decoded = export.greedy_generate(session, ids.numpy(), mask.numpy(), max_new_tokens=seq)
            pad = int(getattr(model.config, "pad_token_id", 0) or 0)
            for row_int8, row_float in zip(decoded, reference):
                same += int(_trim(row_int8, pad) == _trim(row_float, pad))
            total = len(reference)
    finally:
        model.train(was_training)
    result.agreement = same / total if total else None
    result.agreement_of = {"text-classification": "rows", "causal-lm": "positions"}.get(graph.kind, "greedy outputs")
    result.compared = total
    result.max_rel_diff = worst / scale if scale else worst
    result.check_shape = (batch, seq)


def _trim(row, pad) -> list[int]:
    """The ids of a decoded row without the trailing padding."""
    row = list(int(t) for t in row)
    while row and row[-1] == pad:
        row.pop()
    return row


# ---------------------------------------------------------------------------------------------- PyTorch int8

# float module type -> what dynamic quantization makes of it (torch.ao's default dynamic mappings)
_TORCH_QUANTIZED = (nn.Linear, nn.LSTM, nn.GRU)
# float modules with weights that dynamic quantization leaves in float32, reported by quantize_torch
_TORCH_KEPT = (nn.RNN, nn.Conv1d, nn.Embedding, nn.EmbeddingBag)


@dataclasses.dataclass
class TorchQuantized:
    """What :func:`quantize_torch` replaced (module type -> count) and what it kept in float32."""

    model: nn.Module
    quantized: dict[str, int]
    kept_float: dict[str, int]


def quantize_torch(model: nn.Module) -> TorchQuantized:
    """PyTorch dynamic int8 of ``model``'s ``nn.Linear``, ``nn.LSTM`` and ``nn.GRU`` layers (int8 weights, activations
    quantized per call), on a copy; the copy is an ordinary model of the same class in eval mode, for ``generate``
    and ``pipeline(...)`` (:func:`quantized_pipeline`).

    It uses ``torch.ao.quantization.quantize_dynamic``, which torch 2.13 still ships but marks deprecated (its
    successor, torchao's ``quantize_``, covers Linear layers only); the deprecation warning is silenced here.
    ``nn.RNN`` (``rnn_tanh``/``rnn_relu``), convolutions and embeddings have no dynamic int8 kernel and stay in float32
    (:attr:`TorchQuantized.kept_float`). The weights are quantized at load time from the saved float32 ones (dynamic
    quantization needs no calibration data), so a folder keeps one set of weights.
    """
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(torch\.ao\.quantization|quantize_per_tensor|quantized).*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from torch.ao.quantization import quantize_dynamic

        float_model = copy.deepcopy(model).eval()
        quantized = quantize_dynamic(float_model, set(_TORCH_QUANTIZED), dtype=torch.qint8)
    done = collections.Counter(type(m).__name__ for m in quantized.modules()
                               if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")
                               and "Packed" not in type(m).__name__)
    floats = _TORCH_QUANTIZED + _TORCH_KEPT
    kept = collections.Counter(type(m).__name__ for m in quantized.modules() if type(m) in floats)
    return TorchQuantized(quantized.eval(), dict(sorted(done.items())), dict(sorted(kept.items())))


def quantized_pipeline(folder, device: str = "cpu"):
    """The ``transformers.pipeline`` of a saved model folder (its task's, as ``hfnn`` commands build it) around the
    PyTorch int8 model of :func:`quantize_torch`; CPU only (PyTorch's int8 kernels are CPU kernels)."""
    from hfnn.sharing.saved import open_model_dir, saved_pipeline

    if str(device) != "cpu":
        raise OptionError(f"quantized_pipeline: PyTorch dynamic int8 runs on the CPU only, got device {device!r}")
    pipe = saved_pipeline(open_model_dir(str(folder)), torch.device("cpu"))
    pipe.model = quantize_torch(pipe.model).model
    return pipe
