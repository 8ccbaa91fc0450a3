"""``hfnn demo``: a Gradio app that shows the inside of a saved hfnn model.

::

    hfnn demo runs/rnn-shakespeare-char               # or: python -m hfnn.models.demo runs/rnn-shakespeare-char
    hfnn demo runs/cnn-rt --port 7861
    hfnn demo me/g2p-transformer --share false        # a Hub repository id (downloaded to the cache)

The page depends on what the folder holds:

- a language model: a prompt box, sampling controls and the continuation streamed as it is generated; then
  the probability the model gave each generated token, the most likely alternatives at a chosen position (a
  bar chart) and, for the RNN, the norm of the hidden state after each token (its memory over the text);
- a classifier: the label scores as bars; for the CNN, the n-gram windows that won max-over-time pooling for
  the predicted class, highlighted; for the other classifiers, each token's leave-one-out contribution;
- a sequence-to-sequence model: the output and the cross-attention weights as a heatmap (output x source),
  per layer and head for the Transformer; an RNN encoder-decoder without attention has none to show.

The data behind each view comes from pure functions (:func:`token_probabilities`, :func:`hidden_state_norms`,
:func:`label_scores`, :func:`cnn_winning_windows`, :func:`token_contributions`, :func:`attention_matrix`) that
take a model and its tokenizer and need no Gradio; :func:`build_app` lays them out. Gradio (``pip install
'hfnn[demo]'``) is imported only when an app is built.

This module imports only ``torch``, ``transformers``, the standard library and the registry of the models wing
at the top (hfnn itself is optional; its sibling ``errors`` module has a fallback), so that
:func:`write_space_files` can copy it into a saved model folder next to an ``app.py``, with the registry beside
it: pushed to a Hugging Face Space, the folder runs this same demo, loading the model as remote code.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import os
import sys
import threading
from pathlib import Path

import torch

try:  # inside hfnn
    from . import registry
except ImportError:  # the copy in a Space folder, at its top level beside the copy of the registry
    import registry
try:
    from .errors import DemoError
    from .errors import first_line as _one_line
except ImportError:  # the copy a Space runs as hfnn_demo.py, without hfnn: the same error, the same one line
    class DemoError(ValueError):
        """A user error (bad folder, bad input): shown as one line, never as a traceback."""

    def _one_line(err: BaseException) -> str:
        return " ".join(str(err).split())[:400] or type(err).__name__


__all__ = [
    "DemoError",
    "DemoModel",
    "SPACE_MODULE",
    "attention_matrix",
    "build_app",
    "build_parser",
    "cnn_winning_windows",
    "generate_seq2seq",
    "hidden_state_norms",
    "label_scores",
    "load_demo_model",
    "main",
    "resolve_model_folder",
    "token_contributions",
    "token_probabilities",
    "write_space_files",
]

SPACE_MODULE = "hfnn_demo.py"  # the copy of this module that write_space_files puts in a model folder
SOURCE_TOKENIZER_SUBFOLDER = registry.SOURCE_TOKENIZER_SUBFOLDER
GRADIO_REQUIREMENT = "gradio>=6,<7"


# ---------------------------------------------------------------------------------------------
# Loading a saved model
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DemoModel:
    """A loaded model with what the views need: its kind and architecture, the (target) tokenizer and, for
    seq2seq folders that have one, the source tokenizer (else the target tokenizer serves both sides)."""

    path: Path
    kind: str  # "causal-lm", "classification" or "seq2seq"
    model_type: str  # e.g. "hfnn-rnn"
    model: torch.nn.Module
    tokenizer: object
    source_tokenizer: object = None

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)

    @property
    def architecture(self) -> str:
        """The registry's name of the architecture (``rnn``, ``rnn_seq2seq``...); for a model type the registry does
        not know, the model type without its ``hfnn-`` prefix."""
        entry = registry.architecture_of_model_type(self.model_type)
        return entry.name if entry is not None else self.model_type.removeprefix("hfnn-")


def resolve_model_folder(name: str, error: type[Exception] = DemoError) -> Path:
    """A local folder, or a Hub repository id downloaded to the cache; ``error`` (one line) for anything else."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise error(f"{name} is a file, not a saved model folder")
        return path
    looks_like_repo = not name.startswith((".", "/", "~")) and name.count("/") == 1 and not os.path.splitext(name)[1]
    if not looks_like_repo:
        raise error(f"no such model folder: {name}")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, repo_type="model"))
    except Exception as err:  # offline, no such repository, gated...
        raise error(
            f"no such model folder: {name} (and it could not be downloaded from the Hub: {type(err).__name__})"
        ) from None


def load_demo_model(name: str | os.PathLike, device: str = "cpu") -> DemoModel:
    """Checks that ``name`` (a folder or a Hub repository id) holds a saved hfnn model with a task head and
    loads it with its tokenizer(s). Raises :class:`DemoError` with a one-line reason otherwise."""
    name = str(name)
    path = resolve_model_folder(name)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise DemoError(
            f"{name} is not a saved hfnn model folder (no config.json); "
            "save models with save_pretrained or `hfnn train`"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DemoError(f"{config_path} cannot be read: {_one_line(err)}") from None
    if not isinstance(config, dict):
        raise DemoError(f"{config_path} does not hold a JSON object")
    try:
        _, task = registry.saved_model(config, name)
    except ValueError as err:
        raise DemoError(f"{err}; nothing to show") from None
    model_type, kind = config["model_type"], task.kind

    import transformers
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    auto = getattr(transformers, task.auto_class)
    remote = "hfnn" not in sys.modules  # without hfnn, the folder's own code (auto_map) defines the model
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = auto.from_pretrained(path, trust_remote_code=remote)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DemoError(f"cannot load the model in {path}: {_one_line(err)}") from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=remote)
    except (OSError, ValueError, TypeError) as err:
        raise DemoError(f"no usable tokenizer saved in {path}: {_one_line(err)}") from None
    source_tokenizer = None
    if kind == "seq2seq" and (path / SOURCE_TOKENIZER_SUBFOLDER).is_dir():
        try:
            source_tokenizer = AutoTokenizer.from_pretrained(path / SOURCE_TOKENIZER_SUBFOLDER,
                                                             trust_remote_code=remote)
        except (OSError, ValueError, TypeError) as err:
            raise DemoError(f"no usable source tokenizer in {path / SOURCE_TOKENIZER_SUBFOLDER}: "
                            f"{_one_line(err)}") from None
    model.to(device).eval()
    return DemoModel(path, kind, model_type, model, tokenizer, source_tokenizer or tokenizer)


# ---------------------------------------------------------------------------------------------
# The data behind each view (pure functions: model + tokenizer in, plain Python values out)
# ---------------------------------------------------------------------------------------------


def _token_text(tokenizer, token_id: int) -> str:
    """How a token reads in the text (its decoded string; the token itself when that is empty)."""
    text = tokenizer.decode([int(token_id)])
    return text if text else str(tokenizer.convert_ids_to_tokens(int(token_id)))


def _ids_of(tokenizer, text_or_ids, add_special_tokens: bool = False) -> list[int]:
    if isinstance(text_or_ids, str):
        return list(tokenizer(text_or_ids, add_special_tokens=add_special_tokens)["input_ids"])
    return [int(i) for i in text_or_ids]


def _check_ids(ids: list[int], vocab_size: int, what: str = "the tokenizer") -> None:
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise DemoError(f"{what} produced token id {bad[0]} but the model's vocab_size is {vocab_size}")


@torch.no_grad()
def token_probabilities(model, tokenizer, text_or_ids, start: int = 1, top_k: int = 5) -> list[dict]:
    """The probability a causal language model gives each token of a text, from position ``start`` on.

    ``text_or_ids``: a string (tokenized without special tokens) or the token ids themselves (e.g. a prompt
    followed by what ``generate`` produced). Returns one dict per position ``i >= max(start, 1)``: ``index``,
    ``id``, ``token`` (its text), ``probability`` (softmax of the logits at ``i - 1``, at temperature 1, taken
    at the id actually there) and ``alternatives``: the ``top_k`` most likely ``(token, probability)`` at that
    position, best first.
    """
    ids = _ids_of(tokenizer, text_or_ids)
    _check_ids(ids, model.config.vocab_size)
    if len(ids) < 2:
        return []
    input_ids = torch.tensor([ids], device=model.device)
    logits = model(input_ids=input_ids).logits[0].float()
    probs = logits.softmax(-1)
    k = min(top_k, probs.shape[-1])
    rows = []
    for i in range(max(start, 1), len(ids)):
        dist = probs[i - 1]
        values, indices = dist.topk(k)
        rows.append({
            "index": i,
            "id": ids[i],
            "token": _token_text(tokenizer, ids[i]),
            "probability": float(dist[ids[i]]),
            "alternatives": [(_token_text(tokenizer, j), float(v)) for j, v in zip(indices.tolist(), values.tolist())],
        })
    return rows


@torch.no_grad()
def hidden_state_norms(model, tokenizer, text_or_ids) -> list[tuple[str, float]]:
    """``(token, ||h_t||)`` for each token: the L2 norm of the top layer's hidden state after reading it
    (for the RNN, the memory it carries forward)."""
    ids = _ids_of(tokenizer, text_or_ids)
    _check_ids(ids, model.config.vocab_size)
    if not ids:
        return []
    out = model(input_ids=torch.tensor([ids], device=model.device), output_hidden_states=True)
    if not getattr(out, "hidden_states", None):
        raise DemoError(f"{type(model).__name__} returns no hidden states")
    norms = out.hidden_states[-1][0].float().norm(dim=-1).tolist()
    return [(_token_text(tokenizer, i), float(n)) for i, n in zip(ids, norms)]


def _encode_for_classifier(model, tokenizer, text: str) -> list[int]:
    max_length = getattr(model.config, "max_position_embeddings", None)
    ids = list(tokenizer(text, truncation=max_length is not None, max_length=max_length)["input_ids"])
    _check_ids(ids, model.config.vocab_size)
    return ids


def _scores(config, logits: torch.Tensor) -> torch.Tensor:
    """Class scores from logits ``(..., num_labels)``: softmax, sigmoid for multi-label, the value for regression."""
    problem = getattr(config, "problem_type", None)
    if problem == "regression" or (logits.shape[-1] == 1 and config.num_labels == 1):
        return logits
    if problem == "multi_label_classification":
        return torch.sigmoid(logits)
    return logits.softmax(-1)


def _label_names(config) -> dict[int, str]:
    return {int(k): str(v) for k, v in (config.id2label or {}).items()}


@torch.no_grad()
def label_scores(model, tokenizer, text: str) -> list[tuple[str, float]]:
    """Every ``(label, score)`` of a classifier for ``text``, best first (softmax probabilities; sigmoid for
    multi-label models; the predicted value, labelled ``score``, for regression)."""
    ids = _encode_for_classifier(model, tokenizer, text)
    logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0].float()
    scores = _scores(model.config, logits)
    if (scores.shape[-1] == 1 and getattr(model.config, "problem_type", None) != "multi_label_classification"
            and model.config.num_labels == 1):
        return [("score", float(scores[0]))]
    names = _label_names(model.config)
    order = scores.argsort(descending=True).tolist()
    return [(names.get(i, str(i)), float(scores[i])) for i in order]


@torch.no_grad()
def cnn_winning_windows(model, tokenizer, text: str, label: int | None = None) -> dict:
    """The n-gram windows of a CNN classifier that won max-over-time pooling, and what each adds to a class.

    For every feature map j (a filter of width h), pooling keeps its largest activation c_j over the windows of
    the text; the window where that happens is the one that "fired". Its share of the logit of class ``label``
    (default: the predicted class) is ``W[label, j] * c_j`` (the logit is the sum of these shares plus the
    bias). Returns ``tokens`` (their text), ``label`` (name), ``label_id``, ``bias``, ``logit``, ``windows``:
    one dict per feature map with a positive activation (``width``, ``filter``, ``start``, ``end`` (exclusive),
    ``text``, ``activation``, ``weight``, ``contribution``), largest contribution first, and ``token_scores``:
    per token, the sum of the contributions of the winning windows that cover it.
    """
    ids = _encode_for_classifier(model, tokenizer, text)
    input_ids = torch.tensor([ids], device=model.device)
    base = model.base_model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), return_dict=True)
    feature_map = base.last_hidden_state[0].float()  # (seq_len, n_widths * n_filters): 0 where a window is not counted
    pooled = base.pooler_output[0].float()
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, torch.nn.Linear) or classifier.in_features != pooled.shape[-1]:
        raise DemoError(f"{type(model).__name__} has no linear classifier over its pooled features")
    logits = classifier(pooled.to(classifier.weight.dtype)).float()
    if label is None:
        label = int(logits.argmax())
    if not 0 <= label < logits.shape[-1]:
        raise DemoError(f"label {label} is outside the model's classes [0, {logits.shape[-1]})")
    weight = classifier.weight[label].float()
    widths = list(model.config.window_sizes)
    num_filters = int(model.config.num_filters)
    n = len(ids)
    windows = []
    for j in range(pooled.shape[-1]):
        activation = float(pooled[j])
        if activation <= 0:  # a filter that never fired adds nothing (ReLU output 0 everywhere)
            continue
        width = widths[j // num_filters]
        start = int(feature_map[:, j].argmax())  # counted windows only: the others are 0 < activation
        end = min(start + width, n)
        windows.append({
            "width": width,
            "filter": j % num_filters,
            "feature": j,
            "start": start,
            "end": end,
            "text": tokenizer.decode(ids[start:end]),
            "activation": activation,
            "weight": float(weight[j]),
            "contribution": float(weight[j]) * activation,
        })
    windows.sort(key=lambda w: -w["contribution"])
    token_scores = [0.0] * n
    for w in windows:
        for t in range(w["start"], w["end"]):
            token_scores[t] += w["contribution"]
    names = _label_names(model.config)
    return {
        "tokens": [_token_text(tokenizer, i) for i in ids],
        "label": names.get(label, str(label)),
        "label_id": label,
        "logit": float(logits[label]),
        "bias": float(classifier.bias[label]) if classifier.bias is not None else 0.0,
        "windows": windows,
        "token_scores": token_scores,
    }


@torch.no_grad()
def token_contributions(model, tokenizer, text: str, label: int | None = None) -> dict:
    """Leave-one-out contribution of each token to a classifier's score for ``label`` (default: the predicted
    class): the score of the whole text minus the score with that one token deleted (positive: the token
    pushes towards the label). Scores as in :func:`label_scores`. Returns ``tokens``, ``label``, ``label_id``,
    ``score`` (of the whole text) and ``contributions`` (one per token; a one-token text has nothing to leave
    out and gets ``[0.0]``)."""
    ids = _encode_for_classifier(model, tokenizer, text)
    if not ids:
        raise DemoError("the text has no tokens")
    scores = _scores(model.config, model(input_ids=torch.tensor([ids], device=model.device)).logits[0].float())
    if label is None:
        label = int(scores.argmax())
    if not 0 <= label < scores.shape[-1]:
        raise DemoError(f"label {label} is outside the model's classes [0, {scores.shape[-1]})")
    full = float(scores[label])
    if len(ids) == 1:
        contributions = [0.0]
    else:
        without = torch.tensor([ids[:i] + ids[i + 1:] for i in range(len(ids))], device=model.device)
        reduced = _scores(model.config, model(input_ids=without).logits.float())[:, label]
        contributions = [full - float(s) for s in reduced]
    names = _label_names(model.config)
    return {
        "tokens": [_token_text(tokenizer, i) for i in ids],
        "label": names.get(label, str(label)) if scores.shape[-1] > 1 or model.config.num_labels > 1 else "score",
        "label_id": label,
        "score": full,
        "contributions": contributions,
    }


def _source_inputs(model, source_tokenizer, text: str):
    encoded = source_tokenizer(text, return_tensors="pt")
    ids = encoded["input_ids"]
    vocab = getattr(model.config, "source_vocab_size", None) or model.config.vocab_size
    _check_ids(ids[0].tolist(), vocab, "the source tokenizer")
    if ids.shape[1] == 0:
        raise DemoError("the source text has no tokens")
    return ids.to(model.device), encoded["attention_mask"].to(model.device)


@torch.no_grad()
def generate_seq2seq(model, source_tokenizer, text: str, **generate_kwargs) -> list[int]:
    """The output ids (decoder start token first) that ``model.generate`` gives for ``text``."""
    input_ids, mask = _source_inputs(model, source_tokenizer, text)
    return model.generate(input_ids=input_ids, attention_mask=mask, **generate_kwargs)[0].tolist()


@torch.no_grad()
def attention_matrix(model, source_tokenizer, target_tokenizer, text: str, output_ids: list[int] | None = None,
                     layer: int = -1, head: int | None = None, **generate_kwargs) -> dict:
    """Cross-attention weights of a seq2seq model: one row per output token, one column per source token.

    ``output_ids``: the decoder sequence (start token first), e.g. from :func:`generate_seq2seq`; None:
    generated here with ``generate_kwargs``. The weights come from one forward pass over that sequence with
    ``output_attentions=True``: row t is the query that produced output token t + 1. ``layer`` picks the
    decoder layer (negative: from the end), ``head`` one attention head (None: the mean over heads).
    Returns ``source_tokens``, ``output_tokens`` (special tokens left out; rows stop at end-of-sequence),
    ``output_ids``, ``text`` (the decoded output), ``weights`` (rows; None when the model has no attention,
    e.g. an RNN encoder-decoder with ``attention="none"``), ``num_layers``, ``num_heads``, ``layer``, ``head``.
    """
    input_ids, mask = _source_inputs(model, source_tokenizer, text)
    if output_ids is None:
        output_ids = model.generate(input_ids=input_ids, attention_mask=mask, **generate_kwargs)[0].tolist()
    output_ids = [int(i) for i in output_ids]
    result = {
        "source_tokens": [str(t) for t in source_tokenizer.convert_ids_to_tokens(input_ids[0].tolist())],
        "output_ids": output_ids,
        "text": target_tokenizer.decode(output_ids, skip_special_tokens=True),
        "weights": None, "output_tokens": [], "num_layers": 0, "num_heads": 0, "layer": None, "head": None,
    }
    decoder_input_ids = torch.tensor([output_ids], device=model.device)
    out = model(input_ids=input_ids, attention_mask=mask, decoder_input_ids=decoder_input_ids, output_attentions=True,
                return_dict=True)
    layers = getattr(out, "cross_attentions", None)
    if not layers or layers[0] is None:
        result["output_tokens"] = [_token_text(target_tokenizer, i) for i in output_ids[1:]
                                   if i not in set(target_tokenizer.all_special_ids)]
        return result
    num_layers, num_heads = len(layers), layers[0].shape[1]
    if not -num_layers <= layer < num_layers:
        raise DemoError(f"layer {layer} does not exist: the decoder has {num_layers} layer(s)")
    if head is not None and not 0 <= head < num_heads:
        raise DemoError(f"head {head} does not exist: each layer has {num_heads} head(s)")
    chosen = layers[layer][0].float()  # (heads, tgt_len, src_len)
    chosen = chosen.mean(0) if head is None else chosen[head]
    special = set(target_tokenizer.all_special_ids)
    stop = {target_tokenizer.eos_token_id, target_tokenizer.pad_token_id} - {None}
    rows, tokens = [], []
    for step, token_id in enumerate(output_ids[1:]):
        if token_id in special:
            if token_id in stop:
                break
            continue
        rows.append(chosen[step].tolist())
        tokens.append(str(target_tokenizer.convert_ids_to_tokens(token_id)))
    result.update(weights=rows, output_tokens=tokens, num_layers=num_layers, num_heads=num_heads,
                  layer=layer % num_layers, head=head)
    return result


# ---------------------------------------------------------------------------------------------
# Rendering helpers (plain HTML / tables; no Gradio needed)
# ---------------------------------------------------------------------------------------------


def heatmap_html(source_tokens: list[str], output_tokens: list[str], weights: list[list[float]],
                 caption: str = "") -> str:
    """An HTML table: one row per output token, one column per source token, cell shade = weight."""
    esc = html.escape
    head = "".join(f'<th style="padding:2px 6px;font-weight:600">{esc(t)}</th>' for t in source_tokens)
    body = []
    top = max((float(w) for row in weights for w in row), default=0.0)
    for token, row in zip(output_tokens, weights):
        cells = []
        for w in row:
            shade = max(0.0, min(1.0, float(w) / top)) if top > 0 else 0.0  # relative to the largest weight
            color = "#fff" if shade > 0.55 else "#111"
            cells.append(
                f'<td title="{w:.3f}" style="background:rgba(37,99,235,{shade:.3f});color:{color};'
                f'text-align:center;padding:4px 6px;min-width:2.2em">{w:.2f}</td>'
            )
        body.append(f'<tr><th style="padding:2px 6px;text-align:right;font-weight:600">{esc(token)}</th>'
                    f'{"".join(cells)}</tr>')
    cap = f'<caption style="caption-side:top;text-align:left;padding:4px 0">{esc(caption)}</caption>' if caption else ""
    return (
        '<div style="overflow-x:auto">'
        '<table class="hfnn-heatmap" style="border-collapse:collapse;font-family:monospace">'
        f'{cap}<thead><tr><th style="padding:2px 6px;text-align:right">output \\ source</th>{head}</tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table></div>'
    )


def _signed(values: list[float]) -> list[float]:
    """Values scaled into [-1, 1] by the largest magnitude (for highlighted text)."""
    top = max((abs(v) for v in values), default=0.0)
    return [v / top if top > 0 else 0.0 for v in values]


# ---------------------------------------------------------------------------------------------
# The Gradio app
# ---------------------------------------------------------------------------------------------


def _import_gradio():
    try:
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        import gradio as gr
    except ImportError:
        raise DemoError("the demo needs Gradio: pip install 'hfnn[demo]' (or pip install gradio)") from None
    return gr


def build_app(model_or_folder):
    """The Gradio ``Blocks`` app for a :class:`DemoModel` (or a folder / Hub id, loaded first)."""
    gr = _import_gradio()
    demo_model = model_or_folder if isinstance(model_or_folder, DemoModel) else load_demo_model(model_or_folder)
    title = f"hfnn demo: {demo_model.name}"
    entry = registry.architecture_of_model_type(demo_model.model_type)
    display_name = entry.display_name if entry is not None else f"A {demo_model.architecture}"
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(
            f"# {html.escape(demo_model.name)}\n"
            f"{display_name} {registry.task(demo_model.kind).noun} "
            f"(`{type(demo_model.model).__name__}`, "
            f"{sum(p.numel() for p in demo_model.model.parameters()):,} parameters"
            + (f", attention: {demo_model.model.config.attention}"
               if demo_model.architecture == "rnn_seq2seq" else "")
            + ")."
        )
        {"causal-lm": _lm_view, "classification": _classifier_view,
         "seq2seq": _seq2seq_view}[demo_model.kind](gr, demo_model)
    return app


def _gr_error(gr, err: Exception):
    return gr.Error(_one_line(err))


def _alternatives_frame(rows: list[dict], position: int):
    import pandas as pd

    if not rows:
        return pd.DataFrame({"token": [], "probability": []})
    row = rows[max(0, min(int(position or 0), len(rows) - 1))]
    bars = list(row["alternatives"])
    if all(t != row["token"] for t, _ in bars):  # a sampled token outside the top k: shown after them
        bars.append((row["token"], row["probability"]))
    return pd.DataFrame({
        "token": [_visible(t) for t, _ in bars],
        "probability": [p for _, p in bars],
        "chosen": ["chosen" if t == row["token"] else "alternative" for t, _ in bars],
    })


def _visible(token: str) -> str:
    """A token as a readable label: spaces and line breaks made visible."""
    return token.replace(" ", "\u2423").replace("\n", "\\n").replace("\t", "\\t") or "(empty)"


def _lm_view(gr, dm: DemoModel) -> None:
    from transformers import TextIteratorStreamer

    model, tok = dm.model, dm.tokenizer
    is_rnn = dm.architecture == "rnn"
    max_positions = getattr(model.config, "max_position_embeddings", None)
    learned = getattr(model.config, "position_embedding_type", "learned") in (None, "learned")
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt", value="", lines=3, elem_id="prompt",
                                placeholder="Type the start of a text")
            button = gr.Button("Generate", variant="primary", elem_id="submit")
        with gr.Column(scale=1):
            limit = max_positions - 1 if max_positions and learned else 500  # room for at least a one-token prompt
            max_new = gr.Slider(1, max(limit, 2), value=min(80, max(limit // 2, 1)), step=1, label="New tokens")
            do_sample = gr.Checkbox(value=True, label="Sample (off: greedy)")
            temperature = gr.Slider(0.05, 2.0, value=0.8, step=0.05, label="Temperature")
            top_k = gr.Slider(0, 100, value=0, step=1, label="Top-k (0: off)")
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p")
            seed = gr.Number(value=0, precision=0, label="Seed")
    output = gr.Textbox(label="Generated text", lines=6, elem_id="output", interactive=False)
    gr.Markdown("### Probability of each generated token\nDarker red: the model was surer of the token it "
                "produced (probabilities at temperature 1). Pick a position to see the alternatives it weighed.")
    probs_view = gr.HighlightedText(label="Token probabilities", elem_id="token-probs", show_legend=False,
                                    combine_adjacent=False)
    position = gr.Slider(0, 1, value=0, step=1, label="Generated token to inspect (0 = first)", elem_id="position")
    alternatives = gr.BarPlot(x="token", y="probability", color="chosen", sort="-y",
                              label="Top alternatives at that position", elem_id="alternatives",
                              color_map={"chosen": "#2563eb", "alternative": "#9ca3af"})
    norms_plot = None
    if is_rnn:
        gr.Markdown("### The RNN's memory\nNorm of the top layer's hidden state after each token of the text.")
        norms_plot = gr.LinePlot(x="position", y="norm", tooltip=["position", "token", "norm"],
                                 label="Hidden-state norm per token", elem_id="hidden-norms")
    state = gr.State([])

    def run(prompt_text, n_new, sample, temp, k, p, seed_value):
        import pandas as pd

        ids = list(tok(prompt_text or "", add_special_tokens=False)["input_ids"])
        if not ids:
            start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            if start is None:
                raise gr.Error("type a prompt: this tokenizer has no start token to begin an empty text")
            ids = [start]
        try:
            _check_ids(ids, model.config.vocab_size)
        except DemoError as err:
            raise _gr_error(gr, err) from None
        n_new = int(n_new)
        if max_positions and learned and len(ids) + n_new > max_positions:
            raise gr.Error(f"the prompt ({len(ids)} tokens) plus {n_new} new tokens exceeds the model's "
                           f"max_position_embeddings={max_positions}")
        kwargs = dict(max_new_tokens=n_new, do_sample=bool(sample),
                      pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else 0)
        if sample:
            kwargs.update(temperature=float(temp), top_k=int(k) if k else None, top_p=float(p))
        torch.manual_seed(int(seed_value or 0))
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        input_ids = torch.tensor([ids], device=model.device)
        result, failure = {}, {}

        def work():
            try:
                with torch.no_grad():
                    result["ids"] = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                                   streamer=streamer, **kwargs)[0].tolist()
            except Exception as err:  # shown in the page
                failure["error"] = err
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        text = prompt_text or ""
        for piece in streamer:
            text += piece
            yield text, gr.update(), gr.update(), gr.update(), *( [gr.update()] if is_rnn else []), gr.update()
        thread.join()
        if "error" in failure:
            raise _gr_error(gr, failure["error"])
        full = result["ids"]
        rows = token_probabilities(model, tok, full, start=len(ids))
        highlighted = [(_visible(r["token"]), r["probability"]) for r in rows]
        outs = [text, highlighted, gr.update(maximum=max(len(rows) - 1, 1), value=0), _alternatives_frame(rows, 0)]
        if is_rnn:
            norms = hidden_state_norms(model, tok, full)
            outs.append(pd.DataFrame({"position": list(range(len(norms))), "token": [t for t, _ in norms],
                                      "norm": [v for _, v in norms]}))
        outs.append(rows)
        yield tuple(outs)

    outputs = [output, probs_view, position, alternatives] + ([norms_plot] if is_rnn else []) + [state]
    inputs = [prompt, max_new, do_sample, temperature, top_k, top_p, seed]
    button.click(run, inputs, outputs)
    prompt.submit(run, inputs, outputs)
    position.change(lambda rows, pos: _alternatives_frame(rows, pos), [state, position], alternatives)


def _classifier_view(gr, dm: DemoModel) -> None:
    model, tok = dm.model, dm.tokenizer
    is_cnn = dm.architecture == "cnn"
    regression = getattr(model.config, "problem_type", None) == "regression" or model.config.num_labels == 1
    with gr.Row():
        with gr.Column(scale=2):
            text = gr.Textbox(label="Text", lines=3, elem_id="prompt", placeholder="Type a sentence to classify")
            button = gr.Button("Classify", variant="primary", elem_id="submit")
        scores = gr.Label(label="Label scores", elem_id="scores", num_top_classes=10)
    if is_cnn:
        gr.Markdown("### The n-gram detectors that fired\nFor each filter, max-over-time pooling keeps its strongest "
                    "window. Highlighted: the tokens of the winning windows, by what they add to the predicted "
                    "class's logit (red: for it, blue: against; the table lists the windows).")
    else:
        gr.Markdown("### What each token contributes\nLeave-one-out: the predicted class's score minus the score "
                    "with that token deleted (red: the token pushes towards the class, blue: away from it).")
    highlight = gr.HighlightedText(label="Highlighted tokens", elem_id="highlight", show_legend=False,
                                   combine_adjacent=False)
    details = gr.Dataframe(label="Winning windows" if is_cnn else "Contributions", elem_id="details",
                           interactive=False, wrap=True)

    def run(sentence):
        import pandas as pd

        if not (sentence or "").strip():
            raise gr.Error("type a text to classify")
        try:
            ranked = label_scores(model, tok, sentence)
            if is_cnn and not regression:
                data = cnn_winning_windows(model, tok, sentence)
                values = data["token_scores"]
                table = pd.DataFrame([{
                    "window": f"width {w['width']}, filter {w['filter']}", "tokens": repr(w["text"]),
                    "position": f"{w['start']}-{w['end'] - 1}", "activation": round(w["activation"], 4),
                    f"adds to logit of {data['label']}": round(w["contribution"], 4)} for w in data["windows"][:20]])
            else:
                data = token_contributions(model, tok, sentence)
                values = data["contributions"]
                table = pd.DataFrame({"token": [repr(t) for t in data["tokens"]],
                                      f"contribution to {data['label']}": [round(v, 4) for v in values]})
        except DemoError as err:
            raise _gr_error(gr, err) from None
        label_value = {"label": f"{ranked[0][1]:.4f}"} if regression else dict(ranked)
        return label_value, list(zip(data["tokens"], _signed(values))), table

    button.click(run, [text], [scores, highlight, details])
    text.submit(run, [text], [scores, highlight, details])


def _seq2seq_view(gr, dm: DemoModel) -> None:
    model, tok, src_tok = dm.model, dm.tokenizer, dm.source_tokenizer
    has_attention = not (dm.architecture == "rnn_seq2seq" and getattr(model.config, "attention", None) == "none")
    num_layers = int(getattr(model.config, "num_decoder_layers", None)
                     or getattr(model.config, "num_hidden_layers", 1) or 1)
    num_heads = int(getattr(model.config, "num_attention_heads", 1) or 1) if dm.architecture == "transformer" else 1
    with gr.Row():
        with gr.Column(scale=2):
            text = gr.Textbox(label="Source", lines=2, elem_id="prompt", placeholder="Type a source text")
            button = gr.Button("Generate", variant="primary", elem_id="submit")
        with gr.Column(scale=1):
            # a Transformer decoder takes at most max_position_embeddings tokens, its start token first
            positions = getattr(model.config, "max_position_embeddings", None) if dm.architecture == "transformer" \
                else None
            limit = positions if positions else 200
            max_new = gr.Slider(1, max(limit, 2), value=min(40, limit), step=1, label="Max new tokens")
            beams = gr.Slider(1, 8, value=1, step=1, label="Beams")
            layer = gr.Slider(0, max(num_layers - 1, 1), value=num_layers - 1, step=1, label="Decoder layer",
                              visible=has_attention and num_layers > 1)
            head = gr.Dropdown(["mean"] + [str(h) for h in range(num_heads)], value="mean", label="Attention head",
                               visible=has_attention and num_heads > 1)
    output = gr.Textbox(label="Output", elem_id="output", interactive=False)
    gr.Markdown("### Cross-attention\nEach row is an output token, each column a source token; a cell holds the "
                "weight of that source token in the output token's attention (rows sum to 1; darkest: the largest "
                "weight of the matrix).")
    heatmap = gr.HTML(elem_id="heatmap")
    state = gr.State(None)

    def draw(source, ids, layer_value, head_value):
        data = attention_matrix(model, src_tok, tok, source, output_ids=ids, layer=int(layer_value),
                                head=None if head_value in (None, "mean") else int(head_value))
        if data["weights"] is None:
            return ('<p class="hfnn-no-attention">This model has no attention to show: an RNN encoder-decoder with '
                    'attention="none" passes the source through one fixed-size context vector (the final encoder '
                    'state).</p>')
        which = f"layer {data['layer']}"
        if data["num_heads"] > 1:
            which += ", " + ("mean over heads" if data["head"] is None else f"head {data['head']}")
        return heatmap_html(data["source_tokens"], data["output_tokens"], data["weights"], which)

    def run(source, n_new, n_beams, layer_value, head_value):
        if not (source or "").strip():
            raise gr.Error("type a source text")
        try:
            ids = generate_seq2seq(model, src_tok, source, max_new_tokens=int(n_new), num_beams=int(n_beams))
            page = draw(source, ids, layer_value, head_value)
        except DemoError as err:
            raise _gr_error(gr, err) from None
        return tok.decode(ids, skip_special_tokens=True), page, (source, ids)

    def redraw(saved, layer_value, head_value):
        if not saved:
            return gr.update()
        return draw(saved[0], saved[1], layer_value, head_value)

    inputs = [text, max_new, beams, layer, head]
    button.click(run, inputs, [output, heatmap, state])
    text.submit(run, inputs, [output, heatmap, state])
    layer.change(redraw, [state, layer, head], heatmap)
    head.change(redraw, [state, layer, head], heatmap)


# ---------------------------------------------------------------------------------------------
# Space files and the command line
# ---------------------------------------------------------------------------------------------

_APP_PY = '''"""A Gradio app showing this model's inside (generated by hfnn; push this folder to a Space to run it)."""
import os

try:  # hfnn installed: its own demo
    from hfnn.models.demo import build_app
except ImportError:  # a Space without hfnn: the copy of the demo saved with the model (loads the model as remote code)
    from hfnn_demo import build_app

app = build_app(os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
    app.launch()
'''


def write_space_files(folder: str | os.PathLike) -> list[Path]:
    """Writes ``app.py``, ``requirements.txt``, ``hfnn_demo.py`` (a copy of this module) and ``registry.py`` (a copy
    of the registry it reads) into a saved model folder, so that the folder pushed to a Hugging Face Space (Gradio
    SDK) serves this demo. Returns the paths."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DemoError(f"no such model folder: {folder}")
    import transformers

    app = folder / "app.py"
    app.write_text(_APP_PY, encoding="utf-8")
    requirements = folder / "requirements.txt"
    major = transformers.__version__.split(".")[0]
    requirements.write_text(
        "\n".join([f"torch>={torch.__version__.split('+')[0].rsplit('.', 1)[0]}", f"transformers>={major}",
                   "tokenizers", "safetensors", GRADIO_REQUIREMENT, "pandas"]) + "\n",
        encoding="utf-8",
    )
    module = Path(registry.write_copy(folder, __file__, SPACE_MODULE))
    return [app, requirements, module, Path(registry.write_copy(folder))]


def _boolean(value: str) -> bool:
    words = {"true": True, "yes": True, "1": True, "on": True, "false": False, "no": False, "0": False, "off": False}
    if value.lower() not in words:
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return words[value.lower()]


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 1 and 65535, got {port}")
    return port


def build_parser(prog: str = "hfnn demo") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a Gradio page that shows the inside of a saved hfnn model: token probabilities and the "
                    "RNN's memory for language models, label scores with the CNN's winning n-grams or per-token "
                    "contributions for classifiers, attention heatmaps for seq2seq models.",
    )
    parser.add_argument("model", metavar="FOLDER_OR_HUB_ID", help="a saved model folder or a Hub repository id")
    parser.add_argument("--port", type=_port, default=None,
                        help="port to serve on (default: Gradio's, 7860 or the next free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument("--share", type=_boolean, default=False, metavar="BOOL",
                        help="also open a public gradio.live link (true/false; default false)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``hfnn demo FOLDER_OR_HUB_ID [--port N] [--share BOOL] [--host H]``: serves the app until interrupted.
    User errors print one line on stderr and return 2."""
    args = build_parser().parse_args(argv)
    try:
        _import_gradio()
        demo_model = load_demo_model(args.model)
        app = build_app(demo_model)
    except DemoError as err:
        print(f"hfnn demo: error: {err}", file=sys.stderr)
        return 2
    try:
        app.launch(server_name=args.host, server_port=args.port, share=args.share)
    except OSError as err:  # the port is taken, the address cannot be bound
        print(f"hfnn demo: error: cannot serve on {args.host}:{args.port}: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
