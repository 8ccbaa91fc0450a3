"""What hfnn holds: its architectures and its tasks, in one place.

Every per-architecture and per-task fact is a field of an entry here, and everything reads it from here:
``hfnn/__init__`` (which registers the Auto classes), the command line, the model cards, the demo, the
seq2seq pipeline, the ONNX export, the adapters, the quickstart and the training pipelines. Adding an
architecture is one :class:`Architecture` entry plus its ``configuration_*.py`` and ``modeling_*.py``;
adding a task is one :class:`Task` entry plus its training module.

Nothing here imports anything but the standard library, so reading the registry is cheap, and the file
travels: :func:`hfnn.models.demo.write_space_files` and :func:`hfnn.models.pipeline_seq2seq.mark_for_pipeline`
copy it (as :data:`REGISTRY_FILE`) beside the demo and the pipeline they write into a saved model folder,
which read it there without hfnn installed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

try:  # inside hfnn; a copy at a Space's top level raises plain ValueErrors (what these kinds derive from)
    from .errors import FileError, OptionError
except ImportError:
    FileError = OptionError = ValueError

__all__ = [
    "ARCHITECTURES",
    "AUTO_CLASSES",
    "Architecture",
    "EXPORT_SIGNATURES",
    "Head",
    "PEFT_METHODS",
    "QuickstartModel",
    "REGISTRY_FILE",
    "SOURCE_TOKENIZER_SUBFOLDER",
    "TASKS",
    "Task",
    "architecture",
    "architecture_for",
    "architecture_of_model_type",
    "head_of_model_class",
    "hub_pipeline_tag",
    "quickstart_models",
    "saved_model",
    "task",
    "task_aliases",
    "task_of_config",
    "write_copy",
]

# The transformers Auto classes hfnn registers models with (``AutoModel``: the bare encoder, no head).
AUTO_CLASSES = ("AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification", "AutoModelForSeq2SeqLM")
# The subfolder of a seq2seq model folder that holds its source tokenizer (the target one is at the root).
SOURCE_TOKENIZER_SUBFOLDER = "source_tokenizer"
# The name this file has where it is copied beside the demo and the seq2seq pipeline.
REGISTRY_FILE = "registry.py"
# The adapter methods hfnn sets default target modules for (peft's names).
PEFT_METHODS = ("lora", "oft")
# ONNX graph interfaces of hfnn.sharing.export, one per kind of head (see that module for the inputs and outputs):
# a classifier, a language model carrying its recurrent state, one carrying its keys and values, a teacher-forced
# encoder-decoder.
EXPORT_SIGNATURES = ("classifier", "lm-state", "lm-cache", "seq2seq")


@dataclasses.dataclass(frozen=True)
class Task:
    """A task of hfnn: how a model of it is loaded, run, trained and scored."""

    name: str  # canonical name, the ``task`` of a recipe
    kind: str  # short name of the head, as ``task_of_config`` reads it from a config's ``architectures``
    noun: str  # the kind in words, without an article ("language model")
    head: str  # the head in words ("language-model": "Architecture 'cnn' has no language-model head")
    auto_class: str  # transformers Auto class that loads a model with this head
    pipeline_task: str  # ``transformers.pipeline`` task name the command line runs it with
    pipeline_class: str  # class of that pipeline (in transformers, or hfnn.models.pipeline_seq2seq)
    inferred_task: str  # task name of the ``custom_pipelines`` entry that lets ``pipeline(model=folder)`` infer it
    hub_tag: str  # Hub ``pipeline_tag`` of a model card
    peft_task_type: str  # peft's ``task_type`` for an adapter on this head
    training_module: str  # module whose ``main(argv)`` trains it (``python -m`` runnable)
    command: str  # the ``hfnn`` command that runs a saved model of this task
    metrics: tuple[str, ...]  # headline metrics, best first
    model_suffixes: tuple[str, ...]  # model class name endings of this head
    aliases: tuple[str, ...] = ()  # other names accepted for the task (recipes, --task, model cards)
    alias_tags: tuple[tuple[str, str], ...] = ()  # (alias, Hub tag) where an alias has its own tag

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def words(self) -> str:
        """The kind in words, for messages ("a language model")."""
        return f"{'an' if self.noun[:1] in 'aeiou' else 'a'} {self.noun}"


@dataclasses.dataclass(frozen=True)
class Head:
    """One model class of an architecture: the Auto class that loads it and the ONNX graph it exports to."""

    auto_class: str
    model_class: str
    export: str | None = None  # one of EXPORT_SIGNATURES; None: not exported (the bare encoder has no head)


@dataclasses.dataclass(frozen=True)
class QuickstartModel:
    """A row of ``hfnn quickstart``: a small model of an architecture trained on a built-in corpus."""

    label: str  # the row's name in the table
    task: str
    corpus: str


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A model family: its configuration class, its heads, and what the rest of hfnn says and does about it."""

    name: str  # the ``architecture`` of a recipe and a key of ``hfnn.ARCHITECTURES``
    model_type: str  # the configuration class's ``model_type`` (``config.json``), checked by the tests
    display_name: str  # how a sentence names a model of it ("An RNN" language model)
    config_module: str  # module of hfnn.models holding the configuration class
    config_class: str
    modeling_module: str  # module of hfnn.models holding the model classes
    heads: tuple[Head, ...]  # one per Auto class it supports
    concept: str  # the seed note's concept it implements, as a Hub tag
    concept_note: str  # that concept in words, for the model card
    peft_targets: tuple[tuple[str, tuple[str, ...]], ...]  # (PEFT method, modules it adapts by default)
    quickstart: tuple[QuickstartModel, ...] = ()  # its rows of ``hfnn quickstart``
    aliases: tuple[str, ...] = ()  # other names recipes use for it

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def tag(self) -> str:
        """The architecture's Hub tag (``rnn-seq2seq``)."""
        return self.name.replace("_", "-")

    @property
    def models(self) -> tuple[tuple[str, str], ...]:
        """(Auto class, model class) of every head."""
        return tuple((h.auto_class, h.model_class) for h in self.heads)

    @property
    def model_classes(self) -> Mapping[str, str]:
        """Auto class name -> model class name."""
        return MappingProxyType(dict(self.models))

    @property
    def classes(self) -> tuple[tuple[str, str], ...]:
        """(module, class name) of the configuration class and of every model class."""
        return ((self.config_module, self.config_class), *((self.modeling_module, h.model_class) for h in self.heads))

    def supports(self, task_name: str) -> bool:
        """Whether the architecture has a model for ``task_name`` (a task name or alias)."""
        return task(task_name).auto_class in self.model_classes

    def default_targets(self, method: str) -> tuple[str, ...]:
        """Names of the modules the PEFT ``method`` adapts by default (peft matches a name or a ``.name`` suffix)."""
        targets = dict(self.peft_targets)
        if method not in targets:
            raise OptionError(f"unknown adapter method {method!r}; use {', '.join(PEFT_METHODS)}")
        return targets[method]


def _tasks(*entries: Task) -> Mapping[str, Task]:
    return MappingProxyType({t.name: t for t in entries})


def _architectures(*entries: Architecture) -> Mapping[str, Architecture]:
    for entry in entries:
        unknown = [h.export for h in entry.heads if h.export not in (None, *EXPORT_SIGNATURES)]
        methods = [m for m, _ in entry.peft_targets]
        if unknown or sorted(methods) != sorted(PEFT_METHODS):
            raise ValueError(f"registry entry {entry.name!r}: export signatures {unknown} or PEFT methods {methods}")
    return MappingProxyType({a.name: a for a in entries})


TASKS: Mapping[str, Task] = _tasks(
    Task(
        name="language-modeling", kind="causal-lm", noun="language model", head="language-model",
        auto_class="AutoModelForCausalLM", pipeline_task="text-generation", pipeline_class="TextGenerationPipeline",
        inferred_task="hfnn-text-generation", hub_tag="text-generation", peft_task_type="CAUSAL_LM",
        training_module="hfnn.pipelines.run_lm", command="generate", metrics=("perplexity",),
        model_suffixes=("ForCausalLM",), aliases=("lm", "causal-lm", "text-generation"),
    ),
    Task(
        name="text-classification", kind="classification", noun="text classifier", head="sequence-classification",
        auto_class="AutoModelForSequenceClassification", pipeline_task="text-classification",
        pipeline_class="TextClassificationPipeline", inferred_task="hfnn-text-classification",
        hub_tag="text-classification", peft_task_type="SEQ_CLS", training_module="hfnn.pipelines.run_classification",
        command="classify", metrics=("accuracy", "f1"), model_suffixes=("ForSequenceClassification",),
        aliases=("classification", "sequence-classification"),
    ),
    Task(
        name="seq2seq", kind="seq2seq", noun="sequence-to-sequence model", head="sequence-to-sequence",
        auto_class="AutoModelForSeq2SeqLM", pipeline_task="seq2seq-generation",
        pipeline_class="Seq2SeqGenerationPipeline", inferred_task="hfnn-seq2seq-generation",
        hub_tag="text2text-generation", peft_task_type="SEQ_2_SEQ_LM", training_module="hfnn.pipelines.run_seq2seq",
        command="transduce", metrics=("per", "wer", "bleu", "chrf"),
        model_suffixes=("ForConditionalGeneration", "ForSeq2SeqLM"),
        aliases=("seq2seq-generation", "text2text-generation", "translation", "grapheme-to-phoneme", "g2p"),
        alias_tags=(("translation", "translation"),),
    ),
)

ARCHITECTURES: Mapping[str, Architecture] = _architectures(
    Architecture(
        name="rnn", model_type="hfnn-rnn", display_name="An RNN", config_module="configuration_rnn",
        config_class="RnnConfig", modeling_module="modeling_rnn",
        heads=(Head("AutoModel", "RnnModel"), Head("AutoModelForCausalLM", "RnnForCausalLM", "lm-state"),
               Head("AutoModelForSequenceClassification", "RnnForSequenceClassification", "classifier")),
        # and, through hfnn.sharing.adapters.add_adapter with LoRA, the recurrent weights W_x, W_h of every layer
        peft_targets=(("lora", ("embed_tokens", "proj")), ("oft", ("embed_tokens", "proj"))),
        concept="recurrent-neural-network", concept_note="the seed's h_i = tanh(W_x x_i + W_h h_{i-1} + b) "
        "recurrence: a sequential memory updated once per token, read out by y_i = softmax(U h_i + b_2)",
        quickstart=(QuickstartModel("RNN LM", "language-modeling", "shakespeare"),
                    QuickstartModel("RNN classifier", "text-classification", "rotten_tomatoes")),
    ),
    Architecture(
        name="cnn", model_type="hfnn-cnn", display_name="A CNN", config_module="configuration_cnn",
        config_class="CnnConfig", modeling_module="modeling_cnn", heads=(
            Head("AutoModel", "CnnModel"),
            Head("AutoModelForSequenceClassification", "CnnForSequenceClassification", "classifier")),
        # LoRA adapts the convolutions; OFT, which cannot adapt a Conv1d, rotates the word embeddings instead
        peft_targets=(("lora", tuple(f"convs.{i}" for i in range(16))), ("oft", ("word_embeddings",))),
        concept="convolutional-neural-network", concept_note="the seed's sliding window over n-grams: convolutions "
        "of fixed widths extract local, position-invariant features, max-pooled over time (Kim 2014)",
        quickstart=(QuickstartModel("CNN classifier", "text-classification", "rotten_tomatoes"),),
    ),
    Architecture(
        name="mlp", model_type="hfnn-mlp", display_name="An MLP", config_module="configuration_mlp",
        config_class="MlpConfig", modeling_module="modeling_mlp",
        heads=(Head("AutoModel", "MlpModel"),
               Head("AutoModelForSequenceClassification", "MlpForSequenceClassification", "classifier")),
        peft_targets=(("lora", ("dense",)), ("oft", ("dense",))),
        concept="feed-forward-network", concept_note="the seed's neurons and layers: each unit computes f(w·x + b), "
        "units side by side form a layer, stacked layers produce hidden states; without a non-linear activation the "
        "stack collapses into one matrix product",
        quickstart=(QuickstartModel("MLP classifier", "text-classification", "rotten_tomatoes"),),
    ),
    Architecture(
        name="rnn_seq2seq", aliases=("rnn-seq2seq",), model_type="hfnn-rnn-seq2seq",
        display_name="An RNN encoder-decoder", config_module="configuration_rnn_seq2seq",
        config_class="RnnSeq2SeqConfig", modeling_module="modeling_rnn_seq2seq",
        heads=(Head("AutoModel", "RnnSeq2SeqModel"),
               Head("AutoModelForSeq2SeqLM", "RnnSeq2SeqForConditionalGeneration", "seq2seq")),
        # plus the recurrent weights, through add_adapter with LoRA
        peft_targets=(("lora", ("embed_tokens", "bridge", "query_proj", "key_proj", "output_proj")),
                      ("oft", ("embed_tokens", "bridge", "query_proj", "key_proj", "output_proj"))),
        concept="encoder-decoder", concept_note="the seed's Seq2Seq: an RNN encoder turns the source into states, an "
        "RNN decoder generates the target from them",
        quickstart=(QuickstartModel("RNN attention seq2seq", "seq2seq", "cmudict"),),
    ),
    Architecture(
        name="transformer", aliases=("transformer_seq2seq",), model_type="hfnn-transformer",
        display_name="A Transformer", config_module="configuration_transformer", config_class="TransformerConfig",
        modeling_module="modeling_transformer",
        heads=(Head("AutoModel", "TransformerModel"),
               Head("AutoModelForCausalLM", "TransformerForCausalLM", "lm-cache"),
               Head("AutoModelForSequenceClassification", "TransformerForSequenceClassification", "classifier"),
               Head("AutoModelForSeq2SeqLM", "TransformerForConditionalGeneration", "seq2seq")),
        peft_targets=(("lora", ("qkv_proj", "out_proj", "q_proj", "kv_proj", "fc_in", "fc_out")),
                      ("oft", ("qkv_proj", "out_proj", "q_proj", "kv_proj", "fc_in", "fc_out"))),
        concept="attention", concept_note="the seed's last step: the Transformer, which replaces recurrence with "
        "(scaled dot-product) attention",
        quickstart=(QuickstartModel("Transformer LM", "language-modeling", "shakespeare"),
                    QuickstartModel("Transformer seq2seq", "seq2seq", "cmudict")),
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
        raise OptionError(f"unknown task {name!r}; use {', '.join(TASKS)} (or an alias: "
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
    raise OptionError(f"Unknown architecture {name!r}; choose one of {', '.join(sorted(ARCHITECTURES))}")


def architecture_for(name: Any, task_name: Any) -> Architecture:
    """The architecture ``name`` (or an alias) checked to have a model for ``task_name``.

    Raises ``ValueError`` naming the architectures for an unknown name, and the missing head otherwise.
    """
    entry, found = task(task_name), architecture(name)
    if not found.supports(entry.name):
        raise OptionError(f"Architecture {name!r} has no {entry.head} head")
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


def architecture_of_model_type(model_type: Any) -> Architecture | None:
    """The architecture whose configs have ``model_type`` (``hfnn-rnn``), or None for a model type not of hfnn."""
    return next((a for a in ARCHITECTURES.values() if a.model_type == model_type), None)


def head_of_model_class(name: str) -> tuple[Architecture, Head] | None:
    """The architecture and head of the model class called ``name`` (``RnnForCausalLM``), or None."""
    return next(((a, h) for a in ARCHITECTURES.values() for h in a.heads if h.model_class == name), None)


def saved_model(config: Mapping[str, Any], where: Any) -> tuple[Architecture, Task]:
    """The architecture and task of the saved model ``where`` from its config dict; ``ValueError`` naming ``where``
    for a model type that is not hfnn's or a config that names no task head."""
    model_type = config.get("model_type")
    entry = architecture_of_model_type(model_type)
    if entry is None:
        types = ", ".join(sorted(a.model_type for a in ARCHITECTURES.values()))
        raise FileError(f"{where} is not an hfnn model folder (model_type {model_type!r}; hfnn models are {types})")
    found = task_of_config(config)
    if found is None:
        heads = ", ".join(config.get("architectures") or ["?"])
        raise FileError(f"{where} holds a {heads} without a task head (language model, classifier or seq2seq)")
    return entry, found


def quickstart_models() -> tuple[tuple[Architecture, QuickstartModel], ...]:
    """Every ``hfnn quickstart`` row with its architecture, in the table's order: by task, then by label."""
    order = list(TASKS)
    rows = [(a, q) for a in ARCHITECTURES.values() for q in a.quickstart]
    return tuple(sorted(rows, key=lambda row: (order.index(task(row[1].task).name), row[1].label)))


def write_copy(folder: str | os.PathLike, source: str | None = None, name: str = REGISTRY_FILE) -> str:
    """Copies ``source`` (this file by default) into ``folder`` as ``name``, for the modules that travel with a
    saved model and read the registry there; nothing is done when it is that file already. Returns the path."""
    if source is None:  # the registry, with the error kinds it raises (remote code follows its relative import)
        write_copy(folder, os.path.join(os.path.dirname(os.path.abspath(__file__)), "errors.py"), "errors.py")
    source = os.path.abspath(source or __file__)
    target = os.path.join(os.fspath(folder), name)
    if not (os.path.exists(target) and os.path.samefile(source, target)):
        shutil.copyfile(source, target)
    return target
