"""PEFT adapters for hfnn models: sensible default target modules for every architecture, and
:func:`add_adapter` for the training pipelines (``--lora_r N``).

The default targets are the registry's (:attr:`hfnn.models.registry.Architecture.peft_targets`), and
:func:`add_adapter` passes them to peft explicitly. Importing this module (or hfnn) changes nothing in peft; to
let ``get_peft_model(model, LoraConfig(task_type=...))`` without ``target_modules`` work for hfnn models as it
does for transformers' own, call :func:`register_peft_defaults` once, which puts hfnn's model types in peft's
tables of default target modules.

Default targets, by architecture:

* RNN: the token embeddings and the projection before the output layer (when there is one), and, with LoRA
  through :func:`add_adapter`, the recurrent weight matrices W_x and W_h of every layer (``nn.RNN`` / ``nn.GRU`` /
  ``nn.LSTM`` keep them as parameters, not ``nn.Linear`` layers: LoRA reaches them with ``target_parameters``);
* CNN: the convolutions (LoRA; OFT, which cannot adapt a ``Conv1d``, rotates the word embeddings instead);
* MLP: the hidden layers;
* RNN encoder-decoder: both embeddings, the bridge, the attention projections and the output projection, plus
  the recurrent weights (through :func:`add_adapter`);
* Transformer: the attention projections (query/key/value, output, cross-attention) and the feed-forward layers.

The task head (``lm_head``; ``classifier`` / ``score``, which peft trains in full for ``SEQ_CLS``) is never a
target. Two methods: LoRA (``method="lora"``, low-rank updates W + B A) and OFT (``method="oft"``, orthogonal
fine-tuning: W R with R block-diagonal orthogonal, ``r`` blocks), which both adapt every architecture and merge
into the base weights.
"""

from __future__ import annotations

from hfnn.models import registry
from hfnn.models.errors import MissingPackageError, OptionError

__all__ = ["METHODS", "add_adapter", "default_targets", "register_peft_defaults", "task_type"]

METHODS = registry.PEFT_METHODS
_PEFT_TABLES = {"lora": "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING",
                "oft": "TRANSFORMERS_MODELS_TO_OFT_TARGET_MODULES_MAPPING"}
_HEADS = ("lm_head", "classifier", "score")


def _import_peft():
    try:
        import peft
    except ImportError:
        raise MissingPackageError('adapters need peft: pip install "peft>=0.17"') from None
    return peft


def register_peft_defaults() -> None:
    """Puts hfnn's model types in peft's default target tables (LoRA, OFT), so that a peft config without
    ``target_modules`` adapts an hfnn model as :func:`add_adapter` does (without the recurrent weights, which
    peft's tables cannot name). Imports peft; an entry peft already has for a model type is kept, so calling it
    again does nothing more. hfnn never calls it: the user who wants peft's tables filled does."""
    _import_peft()
    from peft.utils import constants

    for entry in registry.ARCHITECTURES.values():
        for method, table in _PEFT_TABLES.items():
            getattr(constants, table).setdefault(entry.model_type, list(entry.default_targets(method)))


def _supported(module, method: str) -> bool:
    from torch import nn

    kinds = (nn.Linear, nn.Embedding, nn.Conv1d) if method == "lora" else (nn.Linear, nn.Embedding)
    return isinstance(module, kinds)


def _architecture(model) -> registry.Architecture:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    arch = registry.architecture_of_model_type(model_type)
    if arch is None:
        raise ValueError(f"{type(model).__name__} is not an hfnn model (model_type {model_type!r})")
    return arch


def default_targets(model, method: str = "lora") -> tuple[list[str], list[str]]:
    """``(module names, parameter names)`` that ``method`` adapts by default in ``model``: the modules of
    registry's ``peft_targets`` present in it, and for LoRA the weight matrices of its recurrent layers."""
    from torch import nn

    if method not in METHODS:
        raise OptionError(f"unknown adapter method {method!r}; use {', '.join(METHODS)}")
    names = _architecture(model).default_targets(method)
    modules, parameters = [], []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in _HEADS:
            continue
        if any(name == n or name.endswith("." + n) for n in names) and _supported(module, method):
            modules.append(name)
        if method == "lora" and isinstance(module, nn.RNNBase):
            parameters += [f"{name}.{p}" for p, _ in module.named_parameters(recurse=False) if p.startswith("weight_")]
    return modules, parameters


def task_type(model) -> str:
    """peft's ``task_type`` for an hfnn model's head (``CAUSAL_LM``, ``SEQ_CLS``, ``SEQ_2_SEQ_LM``)."""
    name = type(model).__name__
    for entry in registry.TASKS.values():
        if name.endswith(entry.model_suffixes):
            return entry.peft_task_type
    raise ValueError(f"{name} has no task head to adapt (a language model, classifier or seq2seq model)")


def add_adapter(model, method: str = "lora", r: int = 8, alpha: float | None = None, dropout: float = 0.0,
                target_modules=None):
    """Wrap ``model`` (an hfnn model with a task head) in a ``peft.PeftModel`` with a fresh adapter.

    Args:
        method: ``"lora"`` (rank-``r`` updates scaled by ``alpha / r``; ``alpha`` defaults to ``r``) or ``"oft"``
            (``r`` orthogonal blocks per layer; no ``alpha``).
        dropout: dropout on the adapter's input (LoRA; OFT drops whole adapted modules with this probability).
            LoRA on recurrent weights takes no dropout: give 0, or ``target_modules`` without them.
        target_modules: module names (or a regular expression) instead of :func:`default_targets`; then no
            recurrent weight is adapted.

    Only the adapter (and a classifier's head, which peft trains in full) is trainable. Save it with
    ``peft_model.save_pretrained(dir)``, load it on the base model with ``PeftModel.from_pretrained(base, dir)``,
    or fold it into the weights with ``peft_model.merge_and_unload()``.
    """
    peft = _import_peft()
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise OptionError(f"adapter rank r must be a positive integer, got {r!r}")
    if not 0.0 <= dropout < 1.0:
        raise OptionError(f"adapter dropout must be in [0, 1), got {dropout!r}")
    modules, parameters = default_targets(model, method)
    if target_modules is not None:
        modules, parameters = target_modules, []
    elif not modules and not parameters:
        names = ", ".join(_architecture(model).default_targets(method))
        raise OptionError(f"{type(model).__name__} has none of the modules {method} adapts by default ({names}); an "
                          "MLP with num_hidden_layers=0 has no dense layer: give target_modules (e.g. "
                          "['word_embeddings']) or train every weight (no --lora_r)")
    kind = task_type(model)
    if method == "lora":
        if parameters and dropout:
            raise OptionError(f"LoRA dropout cannot apply to the recurrent weights of {type(model).__name__} "
                              "(peft adapts them as parameters): use dropout=0, or target_modules without them")
        config = peft.LoraConfig(task_type=kind, r=r, lora_alpha=r if alpha is None else alpha, lora_dropout=dropout,
                                 target_modules=modules, target_parameters=parameters or None)
    else:
        if alpha is not None:
            raise OptionError("OFT has no alpha (its update is a rotation); leave alpha unset")
        config = peft.OFTConfig(task_type=kind, r=r, oft_block_size=0, module_dropout=dropout,
                                target_modules=modules)
    return peft.get_peft_model(model, config)
