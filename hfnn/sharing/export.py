"""ONNX export of hfnn models: ``export_onnx(folder)`` writes ``model.onnx`` beside the saved tokenizer.

One graph per model, traced by ``torch.onnx.export`` (the dynamo exporter) with dynamic batch and sequence axes.
Ids and masks are int64, masks 1 for a token and 0 for padding (left or right); logits are float32. The graph's
interface depends on the head:

* **text classifiers** (every architecture's sequence-classification head)::

      inputs   input_ids (batch, sequence), attention_mask (batch, sequence)
      outputs  logits (batch, num_labels)

* **language models**: one call reads a chunk of new tokens (the prompt, then one token per step) and carries the
  past explicitly, so decoding costs one short call per token; a chunk may continue from any past::

      inputs   input_ids (batch, sequence)
               attention_mask (batch, past_sequence + sequence)   the mask of everything read so far
               the past (below), empty before the first chunk
      outputs  logits (batch, sequence, vocab_size), the present (the past for the next call)

  - RNN: ``past_state.h`` (batch, layers, hidden_size), and ``past_state.c`` for an LSTM, zeros before the first
    call; outputs ``present_state.h`` (and ``present_state.c``), the state after each row's last real token (a
    padded position, anywhere, leaves the state unchanged; a row of padding keeps its past).
  - Transformer: ``past_key_values.{i}.key`` / ``past_key_values.{i}.value`` (batch, heads, past_sequence,
    head_dim) for each layer i, with past_sequence 0 before the first chunk; outputs ``present.{i}.key`` /
    ``present.{i}.value`` (batch, heads, past_sequence + sequence, head_dim). Positions are counted from the mask,
    so a left-padded prompt continues as it would alone.

  A present output feeds the past input of the same name with ``present`` read as ``past`` (``present.0.key`` ->
  ``past_key_values.0.key``, ``present_state.h`` -> ``past_state.h``); :func:`empty_past` builds the first one
  and :func:`greedy_generate` runs the whole loop with ONNX Runtime.

* **sequence-to-sequence** (RNN encoder-decoder, Transformer encoder-decoder), teacher-forced::

      inputs   input_ids, attention_mask (batch, source_sequence),
               decoder_input_ids, decoder_attention_mask (batch, target_sequence)
      outputs  logits (batch, target_sequence, vocab_size)

  :func:`greedy_generate` decodes by calling it with the target grown by one token per step (no cache). In the RNN
  encoder-decoder a 0 in ``decoder_attention_mask`` marks a step that leaves the decoder's state unchanged.

Every axis named above is dynamic, in the RNN family too: traced, its recurrence (``nn.RNN`` / ``GRU`` / ``LSTM``,
and the encoder-decoder's loop over target steps with its attention) runs as ``torch``'s ``scan``, which becomes an
ONNX ``Scan`` over the time axis, on the modules' own weights (eager PyTorch keeps the fused kernels).

The graph records what it is in the ONNX metadata (``hfnn.kind``: ``text-classification``, ``causal-lm``,
``seq2seq``; ``hfnn.model_type``; ``hfnn.past_inputs``; the special token ids), so a runtime needs nothing else.
``export_onnx`` checks the file with ONNX Runtime against PyTorch on a padded batch of another batch size and length
than the example it traced. Needs the ``export`` extra:
``pip install "onnx>=1.16" "onnxruntime>=1.18" "onnxscript>=0.2"``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from hfnn.models import registry
from hfnn.models.errors import FileError, MissingPackageError, OptionError, path_errors

__all__ = ["ExportCheck", "PIP_INSTALL", "check_opset", "empty_past", "export_onnx", "greedy_generate", "graph_inputs",
           "past_name", "require_onnx"]

PIP_INSTALL = 'pip install "onnx>=1.16" "onnxruntime>=1.18" "onnxscript>=0.2"'
# batch, sequence and past length of the traced example: sizes 0 and 1 would be specialised by torch.export
_TRACE_SHAPE = (2, 5, 3)
_CHECK_SHAPE = (3, 7)  # batch and sequence of the check after export: other sizes than the traced ones


def require_onnx() -> None:
    """Raises :class:`MissingPackageError` with the pip command when onnx, onnxruntime or onnxscript is missing."""
    missing = []
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingPackageError(f"ONNX export needs {', '.join(missing)}: {PIP_INSTALL}")


def past_name(present: str) -> str:
    """The past input a present output feeds (``present.0.key`` -> ``past_key_values.0.key``)."""
    if present.startswith("present_state."):
        return "past_state." + present.removeprefix("present_state.")
    return "past_key_values." + present.removeprefix("present.")


# ---------------------------------------------------------------------------------------------- traced graphs


class _Classifier(nn.Module):
    """``(input_ids, attention_mask) -> logits`` of a sequence classifier."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).logits


class _Seq2Seq(_Classifier):
    """Teacher-forced logits of an encoder-decoder."""

    def forward(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                          decoder_attention_mask=decoder_attention_mask, use_cache=False, return_dict=True).logits


class _RnnLm(_Classifier):
    """A chunk of tokens of an RNN language model from an explicit state: ``(ids, mask, h[, c]) -> (logits, h[,
    c])``."""

    def forward(self, input_ids, attention_mask, past):
        from hfnn.models.modeling_rnn import RnnStateCache

        cache = RnnStateCache()
        cache.store(tuple(past), 0)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, cache=cache, use_cache=True,
                         return_dict=True)
        return (out.logits, *out.cache.states)


class _TransformerLm(_Classifier):
    """A chunk of a Transformer language model from explicit keys and values:
    ``(ids, mask, [k_0, v_0, k_1, ...]) -> (logits, k_0, v_0, ...)`` with the new keys and values appended."""

    def forward(self, input_ids, attention_mask, past):
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for layer in range(len(past) // 2):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, cache=cache, use_cache=True,
                         return_dict=True)
        return (out.logits, *(t for layer in out.cache.layers for t in (layer.keys, layer.values)))


@dataclasses.dataclass
class _Graph:
    module: nn.Module
    kind: str  # text-classification, causal-lm, seq2seq
    inputs: list[str]
    outputs: list[str]
    past_shapes: list[tuple]  # (batch, ...) shapes of the past inputs, with "past" where the past length goes


def _head(model) -> registry.Head | None:
    """The registry's head of ``model``'s class (or of the hfnn class it derives from)."""
    for cls in type(model).__mro__:
        found = registry.head_of_model_class(cls.__name__)
        if found is not None:
            return found[1]
    return None


def _graph(model) -> _Graph:
    """What to trace for ``model``, and its interface (the registry's export signature of its head)."""
    config, name = model.config, type(model).__name__
    head = _head(model)
    signature = head.export if head is not None else None
    if signature == "seq2seq":
        return _Graph(_Seq2Seq(model), "seq2seq",
                      ["input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask"], ["logits"], [])
    if signature == "classifier":
        return _Graph(_Classifier(model), "text-classification", ["input_ids", "attention_mask"], ["logits"], [])
    if signature == "lm-state":
        parts = ["h", "c"] if config.rnn_type == "lstm" else ["h"]
        past = [f"past_state.{p}" for p in parts]
        shapes = [(config.num_hidden_layers, config.hidden_size)] * len(parts)
        module = _RnnLm(model)
    elif signature == "lm-cache":
        past = [f"past_key_values.{i}.{kv}" for i in range(config.num_hidden_layers) for kv in ("key", "value")]
        shapes = [(config.num_attention_heads, "past", config.head_dim)] * len(past)
        module = _TransformerLm(model)
    else:
        raise FileError(f"{name} has no task head to export: export a classifier, language model or seq2seq model")
    present = [p.replace("past_state.", "present_state.").replace("past_key_values.", "present.") for p in past]
    return _Graph(module, "causal-lm", ["input_ids", "attention_mask", *past], ["logits", *present], shapes)


def _example(model, graph: _Graph, batch: int, seq: int, past: int, padded: bool, seed: int = 0):
    """Inputs of ``graph``'s forward: random ids, a mask with row 0 left-padded and row 1 right-padded (when
    ``padded``; an LM's past is all tokens), a random past of length ``past``."""
    generator = torch.Generator().manual_seed(seed)
    config = model.config

    def ids(vocab, length):
        return torch.randint(0, vocab, (batch, length), generator=generator)

    def mask(length, total=None):
        total = total or length
        m = torch.ones(batch, total, dtype=torch.long)
        if padded and length >= 2:
            m[0, total - length : total - length + length // 2] = 0  # left padding of the new tokens
            if batch > 1 and graph.kind != "causal-lm":
                m[1, total - (length - 1) // 2 :] = 0  # right padding
        return m

    if graph.kind == "seq2seq":
        source_vocab = model.get_input_embeddings().num_embeddings
        target = max(2, seq - 1)
        return ids(source_vocab, seq), mask(seq), ids(config.vocab_size, target), mask(target)
    if graph.kind == "text-classification":
        return ids(config.vocab_size, seq), mask(seq)
    states = [torch.randn(batch, *(past if d == "past" else d for d in shape), generator=generator) * 0.5
              for shape in graph.past_shapes]
    return ids(config.vocab_size, seq), mask(seq, past + seq), states


def _dynamic_shapes(graph: _Graph):
    def axes(sequence):
        return {0: "batch", 1: sequence}

    token = axes("sequence")
    if graph.kind == "text-classification":
        return {"input_ids": token, "attention_mask": token}
    if graph.kind == "seq2seq":
        source, target = axes("source_sequence"), axes("target_sequence")
        return {"input_ids": source, "attention_mask": source, "decoder_input_ids": target,
                "decoder_attention_mask": target}
    past = [{0: "batch", **({i + 1: "past_sequence" for i, d in enumerate(s) if d == "past"})}
            for s in graph.past_shapes]
    return {"input_ids": token, "attention_mask": {0: "batch", 1: "total_sequence"}, "past": past}


def _flat(args) -> list[torch.Tensor]:
    return [t for a in args for t in (a if isinstance(a, (list, tuple)) else [a])]


# ---------------------------------------------------------------------------------------------- export


@dataclasses.dataclass
class ExportCheck:
    """What :func:`export_onnx` wrote and how closely ONNX Runtime matched PyTorch."""

    path: Path
    kind: str
    inputs: list[str]
    outputs: list[str]
    max_abs_diff: float | None  # over every output of the check batch (None: not checked)
    check_shape: tuple[int, int]  # batch and sequence of that batch (the graph was traced on another shape)
    quantized: object = None  # the int8 graph's hfnn.sharing.quantize.QuantizeCheck (quantize="int8")

    @property
    def carries_past(self) -> bool:
        """Whether the graph takes and returns a past (a language model's state or keys and values)."""
        return len(self.outputs) > 1

    @property
    def size_mb(self) -> float:
        return self.path.stat().st_size / 2**20


def _load(folder_or_model):
    """``(model, folder or None)``: a saved folder through :mod:`hfnn.sharing.saved`'s checked loading, or a model."""
    if isinstance(folder_or_model, nn.Module):
        return folder_or_model, None
    from hfnn.sharing.saved import load_saved, open_model_dir

    saved = open_model_dir(str(folder_or_model))
    model, _ = load_saved(saved, torch.device("cpu"))
    return model, saved.path


def export_onnx(folder_or_model, output_path=None, opset: int | None = None, *, check: bool = True,
                atol: float = 1e-4, quantize: str | None = None) -> ExportCheck:
    """Export a saved hfnn model folder (or a model object) to ONNX; see the module docstring for the graphs.

    Args:
        folder_or_model: a saved model folder (checked like every ``hfnn`` command: a :class:`UserError` says
            what is wrong with it) or an hfnn ``PreTrainedModel`` with a task head.
        output_path: the ``.onnx`` file; default ``model.onnx`` in the folder (required for a model object).
        opset: ONNX opset version (default: the exporter's).
        check: run the file with ONNX Runtime on a padded batch of another batch size and length than the traced
            one and compare every output with PyTorch's; a difference above ``atol`` raises ``RuntimeError``.
        quantize: ``"int8"``: also write the dynamic int8 graph beside the float one (``model.int8.onnx``) and
            check its agreement with PyTorch (:mod:`hfnn.sharing.quantize`).

    Returns an :class:`ExportCheck`.
    """
    require_onnx()
    check_opset(opset)
    model, folder = _load(folder_or_model)
    if output_path is None:
        if folder is None:
            raise ValueError("export_onnx: give output_path when exporting a model object")
        output_path = folder / "model.onnx"
    output_path = Path(output_path)
    with path_errors("the ONNX output"):
        output_path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        graph = _graph(model)
        graph.module.eval()  # the wrapper too: a new module is in training mode
        batch, seq, past = _TRACE_SHAPE
        example = _example(model, graph, batch, seq, past, padded=True)
        try:
            with torch.no_grad(), _quiet_exporter():
                program = torch.onnx.export(
                    graph.module, example, None, input_names=graph.inputs, output_names=graph.outputs,
                    dynamic_shapes=_dynamic_shapes(graph), opset_version=opset, dynamo=True, optimize=True,
                    verbose=False,
                )
        except Exception as err:  # the exporter's own message spans pages: its cause, on one line
            from hfnn.models.errors import first_line

            cause = err.__cause__ or err
            raise RuntimeError(f"torch.onnx.export could not export {type(model).__name__}: {type(cause).__name__}: "
                               f"{first_line(cause)}") from err
        written = _default_opset(program.model)
        if opset is not None and written != opset:  # the version converter failed and left the exporter's opset
            raise OptionError(f"--opset {opset}: the ONNX version converter could not convert this graph (it stays "
                              f"at opset {written}); leave --opset out (opset {written}) or choose another")
        config = model.config
        meta = {"hfnn.kind": graph.kind, "hfnn.model_type": config.model_type,
                "hfnn.architecture": type(model).__name__, "hfnn.past_inputs": ",".join(graph.inputs[2:])
                if graph.kind == "causal-lm" else ""}
        for key in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(config, key, None)
            if isinstance(value, int):
                meta[f"hfnn.{key}"] = str(value)
        program.model.metadata_props.update(meta)
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        with warnings.catch_warnings(), path_errors("the ONNX output"):
            # axes sharing a name ("batch" of ids and mask) are one axis: as meant
            warnings.filterwarnings("ignore", message=".*will not be used, since it shares the same shape")
            program.save(output_path, external_data=size > 1_800_000_000)  # one file below protobuf's 2 GB
        diff = _check(graph, model, output_path) if check else None
    finally:
        model.train(was_training)
    if diff is not None and not diff <= atol:
        raise RuntimeError(f"{output_path}: ONNX Runtime differs from PyTorch by {diff:.3g} (> {atol:g}) on a padded "
                           f"batch of {_CHECK_SHAPE[0]} x {_CHECK_SHAPE[1]}")
    quantized = None
    if quantize is not None:
        from hfnn.sharing.quantize import quantize_onnx

        quantized = quantize_onnx(output_path, model=model, check=check, precision=quantize)
    return ExportCheck(output_path, graph.kind, graph.inputs, graph.outputs, diff, _CHECK_SHAPE, quantized)


def check_opset(opset: int | None) -> None:
    """Raises :class:`OptionError` for an opset the exporter cannot write: below 18 (its oldest) or above the newest
    the installed ``onnx`` knows."""
    if opset is None:
        return
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not 18 <= opset <= newest:
        raise OptionError(f"--opset {opset}: the ONNX exporter writes opsets 18 to {newest} (the installed onnx's "
                          "newest); choose one of them or leave --opset out")


def _default_opset(model) -> int | None:
    """The opset of the default ONNX domain that an exported ``onnx_ir`` model imports."""
    return model.opset_imports.get("")


# what torch.onnx and onnxscript print while exporting: the torchvision operators they skip, deprecations, the
# version converter's failure (checked and reported as an error instead)
_EXPORT_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def _quiet_exporter():
    """Silences the exporter's warnings and log lines: what matters is raised (a failed export, a wrong opset) or
    checked after it (ONNX Runtime against PyTorch)."""
    loggers = [logging.getLogger(name) for name in _EXPORT_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.CRITICAL + 1)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _check(graph: _Graph, model, path: Path) -> float:
    """Largest difference between ONNX Runtime and the eager graph over every output, on a padded batch of another
    batch size and length than the traced example (an LM: a prompt from an empty past, then one token from the
    present)."""
    session = _session(path)
    batch, seq = _CHECK_SHAPE
    example = _example(model, graph, batch, seq, 0, padded=True, seed=1)
    worst = 0.0
    for _ in range(2 if graph.kind == "causal-lm" else 1):
        with torch.no_grad():
            expected = graph.module(*example)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(None, {n: t.numpy() for n, t in zip(graph.inputs, _flat(example))})
        worst = max([worst] + [float((torch.from_numpy(g) - e).abs().max()) for g, e in zip(got, expected)])
        if graph.kind == "causal-lm":  # one more token from the state just computed
            ids, mask, _ = example
            example = (ids[:, -1:], torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype)], 1), list(expected[1:]))
    return worst


# ---------------------------------------------------------------------------------------------- running


def graph_inputs(session) -> dict[str, str]:
    """The ``hfnn.*`` metadata of an exported graph (``kind``, ``past_inputs``, token ids), keys without prefix."""
    meta = session.get_modelmeta().custom_metadata_map
    return {k.removeprefix("hfnn."): v for k, v in meta.items() if k.startswith("hfnn.")}


def empty_past(session, batch: int) -> dict:
    """Zeros for every past input of a language-model graph: zero states (RNN), zero-length keys and values
    (Transformer). ``{input name: numpy array}``."""
    import numpy as np

    past = {}
    for node in session.get_inputs():
        if node.name.startswith(("past_state.", "past_key_values.")):
            shape = [batch if i == 0 else (d if isinstance(d, int) else 0) for i, d in enumerate(node.shape)]
            past[node.name] = np.zeros(shape, dtype=np.float32)
    return past


def greedy_generate(session, input_ids, attention_mask=None, max_new_tokens: int = 20, eos_token_id=None,
                    pad_token_id=None):
    """Greedy decoding with an exported graph in ONNX Runtime (``onnxruntime.InferenceSession``).

    Language models read the (left-padded) prompt in one call and then one token per call, carrying the past;
    seq2seq models re-run the graph on the target grown by one token. Rows that produced ``eos_token_id`` (default:
    the model's) continue with ``pad_token_id``, and decoding stops when every row has; the same tokens as
    ``model.generate(do_sample=False)``. Returns int64 ids: the prompt followed by the new tokens (the decoder ids,
    start token first, for seq2seq)."""
    import numpy as np

    meta = graph_inputs(session)
    input_ids = np.asarray(input_ids, dtype=np.int64)
    batch = input_ids.shape[0]
    mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask, dtype=np.int64)
    if eos_token_id is None and "eos_token_id" in meta:
        eos_token_id = int(meta["eos_token_id"])
    if pad_token_id is None:
        pad_token_id = int(meta.get("pad_token_id", eos_token_id if eos_token_id is not None else 0))
    names = [o.name for o in session.get_outputs()]
    unfinished = np.ones(batch, dtype=bool)
    kind = meta.get("kind")
    if "sequence_length" in meta:
        raise FileError(f"greedy_generate: this graph has sequence axes fixed at {meta['sequence_length']} (an older "
                        "hfnn's export of a recurrent model): export the model again, its axes are now dynamic")
    if kind == "seq2seq":
        out = np.full((batch, 1), int(meta["decoder_start_token_id"]), dtype=np.int64)
    elif kind == "causal-lm":  # the prompt in one call
        results = session.run(None, {"input_ids": input_ids, "attention_mask": mask, **empty_past(session, batch)})
        out, past = input_ids, {past_name(n): v for n, v in zip(names[1:], results[1:])}
    else:
        raise FileError(f"greedy_generate: the graph is a {kind or 'non-hfnn graph'}, not a generating model")
    for step in range(max_new_tokens):
        if kind == "seq2seq":
            results = session.run(None, {"input_ids": input_ids, "attention_mask": mask, "decoder_input_ids": out,
                                         "decoder_attention_mask": np.ones_like(out)})
        elif step:
            mask = np.concatenate([mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
            results = session.run(None, {"input_ids": out[:, -1:], "attention_mask": mask, **past})
            past = {past_name(n): v for n, v in zip(names[1:], results[1:])}
        tokens = np.where(unfinished, results[0][:, -1].argmax(-1), pad_token_id).astype(np.int64)
        out = np.concatenate([out, tokens[:, None]], axis=1)
        if eos_token_id is not None:
            unfinished &= tokens != eos_token_id
            if not unfinished.any():
                break
    return out
