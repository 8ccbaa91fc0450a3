"""What hfnn holds: its architectures and its tasks, in one place.

Everything that needs the list of architectures or tasks reads it from here: ``hfnn/__init__`` (which
registers the Auto classes), the command line, the model cards and the training pipelines. Adding an
architecture is one :class:`Architecture` entry plus its ``configuration_*.py`` and ``modeling_*.py``;
adding a task is one :class:`Task` entry plus its training module. Nothing here imports torch or
transformers, so reading the registry is cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "ARCHITECTURES",
    "AUTO_CLASSES",
    "Architecture",
    "TASKS",
    "Task",
    "architecture",
    "architecture_for",
    "hub_pipeline_tag",
    "task",
    "task_aliases",
    "task_of_config",
]

# The transformers Auto classes hfnn registers models with (``AutoModel``: the bare encoder, no head).
AUTO_CLASSES = ("AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification", "AutoModelForSeq2SeqLM")


@dataclasses.dataclass(frozen=True)
class Task:
    """A task of hfnn: how a model of it is loaded, run, trained and scored."""

    name: str  # canonical name, the ``task`` of a recipe
    kind: str  # short name of the head, as ``task_of_config`` reads it from a config's ``architectures``
    words: str  # the kind in words, for messages ("a language model")
    head: str  # the head in words ("language-model": "Architecture 'cnn' has no language-model head")
    auto_class: str  # transformers Auto class that loads a model with this head
    pipeline_task: str  # ``transformers.pipeline`` task name the command line runs it with
    hub_tag: str  # Hub ``pipeline_tag`` of a model card
    training_module: str  # module whose ``main(argv)`` trains it (``python -m`` runnable)
    command: str  # the ``hfnn`` command that runs a saved model of this task
    metrics: tuple[str, ...]  # headline metrics, best first
    model_suffixes: tuple[str, ...]  # model class name endings of this head
    aliases: tuple[str, ...] = ()  # other names accepted for the task (recipes, --task, model cards)
    alias_tags: tuple[tuple[str, str], ...] = ()  # (alias, Hub tag) where an alias has its own tag

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A model family: its configuration class and one model class per Auto class it supports."""

    name: str  # the ``architecture`` of a recipe and a key of ``hfnn.ARCHITECTURES``
    config_module: str  # module of hfnn holding the configuration class
    config_class: str
    modeling_module: str  # module of hfnn holding the model classes
    models: tuple[tuple[str, str], ...]  # (Auto class, model class)
    aliases: tuple[str, ...] = ()  # other names recipes use for it

    @property
    def model_classes(self) -> Mapping[str, str]:
        """Auto class name -> model class name."""
        return MappingProxyType(dict(self.models))

    def supports(self, task_name: str) -> bool:
        """Whether the architecture has a model for ``task_name`` (a task name or alias)."""
        return task(task_name).auto_class in self.model_classes


def _tasks(*entries: Task) -> Mapping[str, Task]:
    return MappingProxyType({t.name: t for t in entries})


def _architectures(*entries: Architecture) -> Mapping[str, Architecture]:
    return MappingProxyType({a.name: a for a in entries})


TASKS: Mapping[str, Task] = _tasks(
    Task(
        name="language-modeling", kind="causal-lm", words="a language model", head="language-model",
        auto_class="AutoModelForCausalLM", pipeline_task="text-generation", hub_tag="text-generation",
        training_module="hfnn.pipelines.run_lm", command="generate", metrics=("perplexity",),
        model_suffixes=("ForCausalLM",), aliases=("lm", "causal-lm", "text-generation"),
    ),
    Task(
        name="text-classification", kind="classification", words="a text classifier", head="sequence-classification",
        auto_class="AutoModelForSequenceClassification", pipeline_task="text-classification",
        hub_tag="text-classification", training_module="hfnn.pipelines.run_classification", command="classify",
        metrics=("accuracy", "f1"), model_suffixes=("ForSequenceClassification",),
        aliases=("classification", "sequence-classification"),
    ),
    Task(
        name="seq2seq", kind="seq2seq", words="a sequence-to-sequence model", head="sequence-to-sequence",
        auto_class="AutoModelForSeq2SeqLM", pipeline_task="seq2seq-generation", hub_tag="text2text-generation",
        training_module="hfnn.pipelines.run_seq2seq", command="transduce", metrics=("per", "wer", "bleu", "chrf"),
        model_suffixes=("ForConditionalGeneration", "ForSeq2SeqLM"),
        aliases=("seq2seq-generation", "text2text-generation", "translation", "grapheme-to-phoneme", "g2p"),
        alias_tags=(("translation", "translation"),),
    ),
)

ARCHITECTURES: Mapping[str, Architecture] = _architectures(
    Architecture(
        "rnn", "configuration_rnn", "RnnConfig", "modeling_rnn",
        (("AutoModel", "RnnModel"), ("AutoModelForCausalLM", "RnnForCausalLM"),
         ("AutoModelForSequenceClassification", "RnnForSequenceClassification")),
    ),
    Architecture(
        "cnn", "configuration_cnn", "CnnConfig", "modeling_cnn",
        (("AutoModel", "CnnModel"), ("AutoModelForSequenceClassification", "CnnForSequenceClassification")),
    ),
    Architecture(
        "mlp", "configuration_mlp", "MlpConfig", "modeling_mlp",
        (("AutoModel", "MlpModel"), ("AutoModelForSequenceClassification", "MlpForSequenceClassification")),
    ),
    Architecture(
        "rnn_seq2seq", "configuration_rnn_seq2seq", "RnnSeq2SeqConfig", "modeling_rnn_seq2seq",
        (("AutoModel", "RnnSeq2SeqModel"), ("AutoModelForSeq2SeqLM", "RnnSeq2SeqForConditionalGeneration")),
        aliases=("rnn-seq2seq",),
    ),
    Architecture(
        "transformer", "configuration_transformer", "TransformerConfig", "modeling_transformer",
        (("AutoModel", "TransformerModel"), ("AutoModelForCausalLM", "TransformerForCausalLM"),
         ("AutoModelForSequenceClassification", "TransformerForSequenceClassification"),
         ("AutoModelForSeq2SeqLM", "TransformerForConditionalGeneration")),
        aliases=("transformer_seq2seq",),
    ),
)


def _key(name: Any) -> str:
    return str(name).strip().lower().replace("_", "-")


def task_aliases() -> Mapping[str, str]:
    """Every accepted task name (canonical names and aliases, lower case with ``-``) -> canonical name."""
    return MappingProxyType({_key(n): t.name for t in TASKS.values() for n in t.names})


def task(name: Any) -> Task:
    """The task called ``name`` (a canonical name or an alias, any case, ``_`` or ``-``).

    Raises ``ValueError`` naming the accepted names for an unknown one.
    """
    found = task_aliases().get(_key(name)) if name is not None else None
    if found is None:
        raise ValueError(f"unknown task {name!r}; use {', '.join(TASKS)} (or an alias: "
                         f"{', '.join(a for t in TASKS.values() for a in t.aliases)})")
    return TASKS[found]


def hub_pipeline_tag(name: Any) -> str:
    """The Hub ``pipeline_tag`` for a task name or alias (``language-modeling`` -> ``text-generation``)."""
    entry = task(name)
    return dict(entry.alias_tags).get(_key(name), entry.hub_tag)


def architecture(name: Any) -> Architecture:
    """The architecture called ``name`` or one of its aliases; ``ValueError`` naming the choices otherwise."""
    key = str(name).strip()
    for entry in ARCHITECTURES.values():
        if key == entry.name or key in entry.aliases:
            return entry
    raise ValueError(f"Unknown architecture {name!r}; choose one of {', '.join(sorted(ARCHITECTURES))}")


def architecture_for(name: Any, task_name: Any) -> Architecture:
    """The architecture ``name`` (or an alias) checked to have a model for ``task_name``.

    Raises ``ValueError`` naming the architectures for an unknown name, and the missing head otherwise.
    """
    entry, found = task(task_name), architecture(name)
    if not found.supports(entry.name):
        raise ValueError(f"Architecture {name!r} has no {entry.head} head")
    return found


def task_of_config(config: Mapping[str, Any]) -> Task | None:
    """The task of a saved model from its config dict (``architectures``, else ``is_encoder_decoder``)."""
    for model_name in config.get("architectures") or []:
        for entry in TASKS.values():
            if str(model_name).endswith(entry.model_suffixes):
                return entry
    if config.get("is_encoder_decoder"):
        return TASKS["seq2seq"]
    return None
