"""The skeleton every training pipeline shares, and its arguments, checks, saving and reports.

A pipeline is a :class:`Pipeline` subclass that says what differs (data, tokenizers, config fields,
tokenisation, evaluation, samples); :meth:`Pipeline.main` does the rest: parse the recipe and the command
line (:mod:`hfnn.training.recipes`), claim the output folder, build or load the model (optionally with a PEFT
adapter), train with the callbacks of :mod:`hfnn.training`, save, evaluate, plot and report.
:func:`run_pipeline` starts a run from Python with typed option values instead of command-line flags.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import NamedTuple

from datasets import DatasetDict
from transformers import Trainer, TrainingArguments

import hfnn
from hfnn.models import registry
from hfnn.models.errors import DataError, OptionError, first_line, hub_lookup, report_error
from hfnn.pipelines.checkpoints import CheckpointCommitCallback, resolve_resume_checkpoint
from hfnn.training import (
    TrainingCallbacks,
    check_finite_model,
    check_resume_architecture,
    check_training_arguments,
    plot_loss_curve,
)
from hfnn.training.cpu_threads import env_threads
from hfnn.training.non_finite import (
    NonFiniteTrainingError,
    chance_loss,
    check_finite_metrics,
    check_loss_rise,
    loss_rise,
    loss_rise_line,
)
from hfnn.training.recipes import parse_args, parse_config_overrides, pipeline_module

__all__ = ["DataArguments", "ModelArguments", "Pipeline", "PipelineRun", "RunArguments", "RunData", "TextDataArguments",
           "TokenizerModelArguments", "TrainedRun", "arg", "build_config", "check_config_overrides", "check_count",
           "check_overrides", "config_class", "load_split_corpus", "load_tokenizer", "pipeline_class", "report_cut",
           "run_command", "run_pipeline", "save_trained", "split_metrics", "subset", "write_results"]

_logger = logging.getLogger(__name__)


def arg(default=None, help: str = ""):
    """A dataclass field with its command-line help."""
    return dataclasses.field(default=default, metadata={"help": help})


# One family of argument dataclasses: every pipeline's arguments extend these, adding its own fields and
# re-declaring a shared field only to give it another default (a re-declared field keeps its place).


@dataclasses.dataclass
class ModelArguments:
    """What to build or load, for every pipeline."""

    architecture: str | None = arg(None, "hfnn architecture to build (hfnn.models.registry).")
    model_name_or_path: str | None = arg(None, "Start from a saved model folder (or Hub id) instead of a new model.")
    config_overrides: str | None = arg(None, "Config fields for a new model: a mapping in the recipe or a JSON "
                                             "string on the command line.")
    min_frequency: int = arg(1, "Drop tokens seen fewer times in training (trained tokenizers).")


@dataclasses.dataclass
class TokenizerModelArguments(ModelArguments):
    """The model arguments of a pipeline with one tokenizer."""

    tokenizer_name: str | None = arg(None, "Load this tokenizer instead of training one (default: model_name_or_path).")
    tokenizer_kind: str = arg("char", "Tokenizer to train: char, bpe or word.")
    vocab_size: int | None = arg(None, "Largest vocabulary of a trained tokenizer (None: every token seen; bpe: 8000).")
    lowercase: bool = arg(False, "Lower-case text in a trained tokenizer.")


@dataclasses.dataclass
class DataArguments:
    """A corpus, or local files for the splits, and how many examples to use."""

    corpus: str | None = arg(None, "Built-in corpus name, local file, or Hub dataset name.")
    train_file: str | None = arg(None, "Local training data (txt/csv/json/jsonl).")
    validation_file: str | None = arg(None, "Local validation data (default: held out of the training data).")
    test_file: str | None = arg(None, "Local test data (default: held out of the training data).")
    max_train_samples: int | None = arg(None, "Train on this many examples.")
    max_eval_samples: int | None = arg(None, "Evaluate on this many validation (and test) examples.")

    def __post_init__(self):
        for name in ("max_train_samples", "max_eval_samples", "max_test_samples"):
            if getattr(self, name, None) is not None:
                check_count(f"--{name}", getattr(self, name), 1, " (leave it unset to use every example)")


@dataclasses.dataclass
class TextDataArguments(DataArguments):
    text_column: str | None = arg(None, "Column holding the text (default: text).")


@dataclasses.dataclass
class RunArguments:
    """Options of a pipeline run that are not model, data or Trainer arguments."""

    task: str | None = arg(None, "Pipeline the recipe is for (language-modeling, text-classification, seq2seq); "
                                 "used by `hfnn train`.")
    overwrite_output_dir: bool = arg(False, "Replace the whole content of a non-empty output_dir: the run writes "
                                            "beside it and the new folder takes its place at the end (the old one "
                                            "stays as it was if the run fails).")
    max_train_minutes: float | None = arg(None, "Stop training after this many minutes of wall-clock time.")
    anneal_by_time: bool = arg(False, "Cosine-decay the learning rate over max_train_minutes instead of max_steps.")
    average_weights: float = arg(0.0, "Save the mean of the weights over this last fraction of training (0 < f <= "
                                      "1; of the time budget when there is one, else of the steps) instead of the "
                                      "last step's; the last step's are scored on the validation split beside it "
                                      "(results.json: weight_averaging). 0: off.")
    num_samples: int = arg(3, "Generations or predictions to print at the end (0: none).")
    write_model_card: bool = arg(True, "Write README.md (model card).")
    lora_r: int = arg(0, "Train a PEFT adapter of this rank instead of every weight (0: off); the folder holds the "
                         "merged model and the adapter in adapter/.")
    adapter_method: str | None = arg(None, "PEFT method of the adapter (with --lora_r): lora (the default) or oft "
                                           "(hfnn.sharing.adapters).")

    def __post_init__(self):
        check_count("num_samples", self.num_samples, 0, " (0: print none)")
        check_count("lora_r", self.lora_r, 0, " (0: off)")
        env_threads()  # a bad HFNN_THREADS is an error now, not after the data has loaded
        fraction = self.average_weights
        if not (isinstance(fraction, (int, float)) and math.isfinite(fraction) and 0 <= fraction <= 1):
            raise OptionError("--average_weights must be the fraction of training to average the weights over, "
                              f"between 0 (off) and 1, got {fraction!r}")
        if self.adapter_method is not None and not self.lora_r:
            raise OptionError(f"--adapter_method {self.adapter_method} needs --lora_r (the adapter's rank, e.g. "
                              "--lora_r 8): without it every weight is trained and no adapter is saved")
        if fraction and self.lora_r:
            raise OptionError("--average_weights and --lora_r cannot be used together: the average is of the full "
                              "weights, and an adapter's factors do not average to the average of their product")
        minutes = self.max_train_minutes
        if minutes is not None and not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
            raise OptionError("--max_train_minutes must be a number of minutes > 0 (leave it unset for no limit), "
                              f"got {minutes!r}")


def run_command(main, argv=None, name: str | None = None) -> int:
    """Runs a pipeline's ``main(argv)`` as a command and returns its exit status, like ``hfnn train``: 0 when
    it finished; for a user error (:func:`hfnn.models.errors.is_user_error`) one line ``run_x: error: MESSAGE`` on
    stderr and 2; for any other exception, a bug, its traceback, a line saying how to report it, and 1
    (``HFNN_DEBUG=1`` raises either instead); 130 on Ctrl-C. ``name`` (default: the module of ``main``) names the
    command: a pipeline module ends with ``raise SystemExit(run_command(main, name=__spec__.name))``."""
    module = getattr(getattr(main, "__self__", main), "__module__", None)  # a function, or a Pipeline's main
    prog = (name or module or "pipeline").rsplit(".", 1)[-1]
    try:
        main(argv)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get("HFNN_DEBUG", "") not in ("", "0"):
            raise
        return report_error(prog, err)
    return 0


# ---------------------------------------------------------------------------------------------- checks


def check_count(name: str, value, minimum: int, note: str = "") -> None:
    """``value`` must be an int >= ``minimum``: an OptionError naming the option ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise OptionError(f"{name} must be an integer >= {minimum}{note}, got {value!r}")


def config_class(architecture: str, task: str):
    """The configuration class of ``architecture`` (a name or alias in :mod:`hfnn.models.registry`) for a new model of
    ``task``; an OptionError naming the architectures for an unknown name, or the missing head."""
    try:
        spec = registry.architecture_for(architecture, task)
    except ValueError as err:  # the registry's own check of the name the user gave
        raise OptionError(first_line(err)) from err
    return getattr(hfnn, spec.config_class)


def build_config(architecture: str, task: str, fields: dict, overrides: dict):
    """A new config of ``architecture`` for ``task``: ``fields`` (sizes, special ids, labels) updated with the
    user's ``overrides``, whose keys must be fields of the config (:func:`check_config_overrides`). The config's
    own checks of those values (hfnn's and transformers' strict field types) raise an :class:`OptionError`."""
    from huggingface_hub.errors import StrictDataclassError

    cls = config_class(architecture, task)
    try:
        config = cls(**{**fields, **overrides})
    except (ValueError, StrictDataclassError) as err:
        raise OptionError(first_line(err)) from err
    check_config_overrides(config, overrides)
    return config


# config fields a pipeline sets from the data and the tokenizers (its ``config_fields``), and what sets each
_LABELS = "the classes of the label column (--label_column, and --problem_type)"
_TOKENIZER = "the tokenizer (--tokenizer_kind, --vocab_size, --tokenizer_name)"
DATA_FIELDS = {"problem_type": "--problem_type", "id2label": _LABELS, "label2id": _LABELS, "num_labels": _LABELS,
               "vocab_size": _TOKENIZER, "pad_token_id": _TOKENIZER, "bos_token_id": _TOKENIZER,
               "eos_token_id": _TOKENIZER, "decoder_start_token_id": _TOKENIZER,
               "source_vocab_size": "the source tokenizer (--source_tokenizer_kind, --source_vocab_size)",
               "is_encoder_decoder": "the pipeline (run_seq2seq trains encoder-decoders)"}


def check_model_for_task(name: str, task: str) -> None:
    """A saved hfnn model folder whose architecture has no head for ``task`` is an :class:`OptionError` naming the
    pipeline that trains what it holds (transformers would say "Unrecognized configuration class")."""
    config_path = Path(os.path.expanduser(str(name))) / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # not a local folder, or no readable config: from_pretrained says why
        return
    if not isinstance(config, dict):
        return
    entry, wanted = registry.architecture_of_model_type(config.get("model_type")), registry.task(task)
    if entry is None:
        return
    held = registry.task_of_config(config)
    has_head = any(h.auto_class == wanted.auto_class for h in entry.heads)
    # an encoder-decoder is no language model or classifier, nor the other way round (a language model's
    # encoder becomes a classifier's: that fine-tuning is meant)
    other_kind = held is not None and (held.name == "seq2seq") != (wanted.name == "seq2seq")
    if has_head and not other_kind:
        return
    what = f"a {entry.name} {held.noun}" if held is not None else f"a {entry.name} model"
    why = f"{entry.name} has no {wanted.head} head" if not has_head else "its weights are of another kind of model"
    reader = (f"; it is read by {held.training_module} (`hfnn train` with a {held.name} recipe)"
              if held is not None else "")
    raise OptionError(f"--model_name_or_path {name} holds {what}, which this {wanted.name} pipeline cannot read "
                      f"({why}){reader}; give a folder of a {wanted.noun} or leave --model_name_or_path out to train "
                      "a new model")


def check_data_fields(fields: dict, overrides: dict) -> None:
    """A ``config_overrides`` entry that contradicts a field the pipeline sets from the data (``fields``: its
    :meth:`Pipeline.config_fields`) is an :class:`OptionError` naming the option that sets it (:data:`DATA_FIELDS`):
    the model would be built for other labels or tokens than the data it is trained on."""
    derived = dict(fields)
    if isinstance(fields.get("id2label"), dict):
        derived["num_labels"] = len(fields["id2label"])

    def same(key, a, b):
        if key in ("id2label", "label2id") and isinstance(a, dict) and isinstance(b, dict):
            return {str(k): str(v) for k, v in a.items()} == {str(k): str(v) for k, v in b.items()}
        return a == b

    for key, value in overrides.items():
        if key in derived and key in DATA_FIELDS and not same(key, value, derived[key]):
            how = DATA_FIELDS[key]
            fix = (f"use {how} {value}" if how.startswith("--") and isinstance(value, str) else f"it follows {how}")
            raise OptionError(f"config_overrides {key}={value!r} contradicts how the data is read ({key} is "
                              f"{derived[key]!r} here): {fix}, and drop {key} from config_overrides")


def check_config_overrides(config, overrides: dict) -> None:
    """Raises OptionError naming the keys of ``overrides`` that ``config`` does not know.

    ``PreTrainedConfig`` keeps any unknown keyword as an attribute, so a misspelt override (``hiden_size``)
    would otherwise leave the field it meant at its default without a word.
    """
    import difflib
    import inspect

    cls = type(config)
    known = set(getattr(cls, "attribute_map", {}))
    for klass in cls.__mro__:
        if "__init__" in klass.__dict__:
            known |= {name for name, p in inspect.signature(klass.__dict__["__init__"]).parameters.items()
                      if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        known |= {f.name for f in dataclasses.fields(klass)} if dataclasses.is_dataclass(klass) else set()
        known |= {name for name, value in vars(klass).items() if isinstance(value, property)}
    # keys the config consumed as aliases (e.g. num_encoder_layers) are not left on the instance
    unknown = sorted(k for k in overrides if k not in known and k in vars(config))
    if unknown:
        hints = [f"{key!r}" + "".join(f" (did you mean {c!r}?)" for c in
                                      difflib.get_close_matches(key, sorted(known - {"self"}), n=1)) for key in unknown]
        raise OptionError(f"config_overrides: {cls.__name__} has no field {', '.join(hints)}")


_MAPPING_OPTIONS = ("config_overrides",)  # options of text type that take a mapping too (a recipe's, or typed)


def check_overrides(arguments, overrides: dict, where: str = "the pipeline") -> dict:
    """Typed option values (``{name: value}``) for the argument dataclasses ``arguments``: an unknown name, or a
    value not of the option's type, is a ValueError naming the option. Returns them as the command line would
    give them: an int for a float option as a float, a path for a text option as a str."""
    import difflib
    import typing

    hints = {}
    for cls in reversed(arguments):
        try:
            hints.update(typing.get_type_hints(cls))
        except Exception:  # an annotation that does not resolve here: its fields take any value
            hints.update(dict.fromkeys((f.name for f in dataclasses.fields(cls)), typing.Any))
    known = {f.name for cls in arguments for f in dataclasses.fields(cls) if f.init}
    unknown = [name for name in overrides if name not in known]
    if unknown:
        raise OptionError(f"{where} has no option " + ", ".join(
            f"{name!r}" + "".join(f" (did you mean {c!r}?)" for c in difflib.get_close_matches(name, known, n=1))
            for name in unknown))
    checked = {}
    for name, value in overrides.items():
        hint = hints.get(name, typing.Any)
        if isinstance(value, os.PathLike) and _fits("", hint):
            value = os.fspath(value)
        if not (_fits(value, hint) or (name in _MAPPING_OPTIONS and isinstance(value, dict))):
            raise OptionError(f"option {name} of {where} must be {_type_name(hint)}, got {type(value).__name__} "
                             f"{value!r}")
        is_float = isinstance(value, int) and not isinstance(value, bool) and not _fits(value, hint, exact_int=True)
        checked[name] = float(value) if is_float else value
    return checked


def _fits(value, hint, exact_int: bool = False) -> bool:
    """Whether ``value`` is of the type ``hint`` (an int is a float too, unless ``exact_int``; a bool is no number;
    a str names a member of an Enum)."""
    import enum
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a, exact_int) for a in args)
    if origin is typing.Literal:
        return value in args
    if hint is typing.Any or not isinstance(origin or hint, type):
        return True
    if hint is type(None):
        return value is None
    if hint in (int, float):
        numbers = int if hint is int else float if exact_int else (int, float)
        return isinstance(value, numbers) and not isinstance(value, bool)
    cls = origin or hint
    return isinstance(value, (cls, str) if issubclass(cls, enum.Enum) else cls)


def _type_name(hint) -> str:
    import types
    import typing

    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    return "None" if hint is type(None) else getattr(typing.get_origin(hint) or hint, "__name__", str(hint))


# ---------------------------------------------------------------------------------------------- data helpers


def load_split_corpus(data_args, seed: int, opener=None, **options):
    """The run's data through :func:`hfnn.data.corpora.load_corpus` (or ``opener``, such as
    :func:`~hfnn.data.corpora.open_corpus`, which gives the typed corpus): the local ``train_file`` (with the
    ``validation_file`` and ``test_file`` that are given; the missing splits are cut from the training data),
    else the ``corpus``. ``options`` go to ``load_corpus`` (columns, empty-cell handling)."""
    from hfnn.data.corpora import load_corpus

    load_corpus = opener or load_corpus
    if data_args.train_file:
        files = {split: getattr(data_args, f"{split}_file") for split in ("train", "validation", "test")}
        return load_corpus(data_files={k: v for k, v in files.items() if v}, seed=seed, **options)
    if data_args.corpus:
        return load_corpus(data_args.corpus, seed=seed, **options)
    raise OptionError("Give a corpus (built-in name, file or Hub dataset) or a train_file.")


def subset(ds, n: int | None, seed: int):
    """``n`` examples of ``ds`` drawn at random (with ``seed``), or all of them when ``n`` is None or too many."""
    return ds if n is None or n >= len(ds) else ds.shuffle(seed=seed).select(range(n))


def report_cut(data, raw, column: str, text_column: str, tokenizer, limit: int, what: str, option: str,
               room: int = 0) -> dict:
    """Warns, per split, how many rows truncation cut (``column`` of the tokenised ``data`` holds ``limit`` tokens
    and the untruncated ``text_column`` of ``raw`` is longer): such a model trains on, or is scored with, the cut
    versions. Only rows that reached the limit are read again. ``room``: tokens the row holds beside the text,
    counted in the limit (a target's end-of-sequence). Returns {split: rows cut}."""
    counts = {}
    for split, ds in data.items():
        if not len(ds) or column not in ds.column_names:
            continue
        at_limit = [i for i, ids in enumerate(ds[column]) if len(ids) >= limit]
        if not at_limit:
            continue
        texts = list(raw[split].select(at_limit)[text_column])
        lengths = [len(ids) + room for ids in tokenizer(texts, verbose=False)["input_ids"]]
        cut = sum(length > limit for length in lengths)
        if cut:
            counts[split] = cut
            _logger.warning("%s: %d of %d %s (%.1f %%) are longer than %s %d tokens and were cut (the longest: %d "
                            "tokens); raise %s to keep them whole", split, cut, len(ds), what, 100 * cut / len(ds),
                            option, limit, max(lengths), option)
    return counts


def load_tokenizer(name: str | None, texts, padding_side: str, option: str = "the tokenizer", **train_options):
    """The tokenizer saved at ``name`` (read as text only, :func:`hfnn.data.tokenization.text_only`), or one trained on
    ``texts`` with ``train_options`` (:func:`hfnn.data.tokenization.train_tokenizer`); padding on ``padding_side``.
    A ``name`` that cannot be found is one line naming ``option`` and ``name``."""
    from transformers import AutoTokenizer

    from hfnn.data.tokenization import text_only, train_tokenizer

    if name:
        with hub_lookup(option, name):
            tokenizer = text_only(AutoTokenizer.from_pretrained(name))
    else:
        tokenizer = train_tokenizer(texts, padding_side=padding_side, **train_options)
    tokenizer.padding_side = padding_side
    return tokenizer


# ---------------------------------------------------------------------------------------------- saving, reports


def save_trained(trainer, out_dir, tokenizers: dict) -> None:
    """The pipelines' save step: the model with ``save_pretrained`` on the main process (safetensors, config and
    model code, no pickled ``training_args.bin``; a model with a NaN or infinite weight is never saved), with the
    entry that lets ``pipeline(model=folder, trust_remote_code=True)`` infer its task; its tokenizers
    (``{subfolder: tokenizer}``, ``""`` for the folder itself) with ``model_max_length`` capped to the model's
    positions; and the files that make the folder a Hugging Face Space."""
    from hfnn.models.demo import write_space_files
    from hfnn.models.pipeline_seq2seq import mark_for_pipeline

    model = trainer.accelerator.unwrap_model(trainer.model)
    is_main = trainer.is_world_process_zero()
    mark_for_pipeline(model, out_dir if is_main else None)
    check_finite_model(model)
    if not is_main:
        return
    model.save_pretrained(str(out_dir))
    limit = getattr(model.config, "max_position_embeddings", None)
    for subfolder, tokenizer in tokenizers.items():
        if isinstance(limit, int) and limit > 0 and (tokenizer.model_max_length or limit + 1) > limit:
            tokenizer.model_max_length = tokenizer.init_kwargs["model_max_length"] = limit
        tokenizer.save_pretrained(str(Path(out_dir) / subfolder))
    write_space_files(out_dir)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return [_json_safe(v) for v in value] if isinstance(value, (list, tuple)) else value


def write_results(out_dir, results: dict) -> Path:
    """Writes ``results.json`` (metrics and run facts) into ``out_dir``."""
    path = Path(out_dir) / "results.json"
    path.write_text(json.dumps(_json_safe(results), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def split_metrics(metrics: dict) -> dict:
    """A Trainer's evaluation metrics without the timing entries."""
    return {k: v for k, v in metrics.items() if not k.endswith(("_runtime", "_per_second"))}


# ---------------------------------------------------------------------------------------------- the skeleton


@dataclasses.dataclass(kw_only=True)
class RunData:
    """What :meth:`Pipeline.load_data` reads, handed to every later hook: the raw splits, the tokenizers
    (``{subfolder: tokenizer}``, filled from :meth:`Pipeline.load_tokenizers`) and how to word an empty
    validation split; a pipeline's subclass adds the facts of its task."""

    raw: DatasetDict
    tokenizers: dict = dataclasses.field(default_factory=dict)
    empty_eval: tuple[str, str] = ("is empty", "give a --validation_file, more data")  # (what, advice)

    @property
    def tokenizer(self):
        """The processing class: the tokenizer saved at the root of the folder."""
        return self.tokenizers[""]


@dataclasses.dataclass(kw_only=True)
class TrainedRun:
    """What :meth:`Pipeline.train` leaves for scoring and reporting."""

    trainer: Trainer
    datasets: DatasetDict  # the tokenised splits
    outcome: object  # the TrainOutput of Trainer.train
    seconds: float
    callbacks: TrainingCallbacks
    parameters: int
    trainable: int


def _examples_seen(train_ds, trainer) -> int:
    """The training examples: the split's length, or for a stream (no length) the examples its steps took."""
    if hasattr(train_ds, "__len__"):
        return len(train_ds)
    args = trainer.args
    return trainer.state.global_step * args.per_device_train_batch_size * args.gradient_accumulation_steps * \
        max(1, args.world_size)


class PipelineRun(NamedTuple):
    """What a run produced: its results dict (as in results.json) and the output folder."""

    results: dict
    output_dir: Path


class Pipeline(abc.ABC):
    """One training pipeline. :meth:`main` (command-line flags) and :func:`run_pipeline` (typed values) run it:
    parse (each argument class checks its values) -> claim the output folder -> :meth:`run`: the data and
    tokenizers (:class:`RunData`) -> :meth:`train` -> :meth:`score` -> :meth:`report`. A subclass sets the
    class attributes and implements the abstract hooks; every hook after :meth:`load_data` receives its
    :class:`RunData` first."""

    task, card_task = "language-modeling", "text-generation"  # the hfnn.models.registry task, the model card's task
    arguments = (TokenizerModelArguments, TextDataArguments, RunArguments, TrainingArguments)
    argument_defaults = {}  # this pipeline's defaults for options of the argument classes (a recipe overrides them)
    trainer_class = Trainer
    plots = ("loss curve",)  # names of the figures (the loss curve, then those ``finish`` returns)
    summary_skip = ()  # metric name endings left out of the printed summary
    padding_side = "right"  # of the tokenizer of load_tokenizers

    # ------------------------------------------------------------------------------------------ hooks

    @classmethod
    def inputs(cls, model_args) -> list:
        """Files the run reads besides the data (the output folder must not be one of them)."""
        return []

    @classmethod
    def check_arguments(cls, model_args, data_args, run_args, training_args) -> None:
        """Refuses options that contradict each other, before the output folder is claimed (nothing by default)."""
        return None

    @abc.abstractmethod
    def load_data(self) -> RunData:
        """The raw splits (subsets drawn) and the facts of the task that later hooks need, tokenizers not yet."""

    def load_tokenizers(self, data: RunData) -> dict:
        """{subfolder: tokenizer}; ``""`` is the processing class, saved at the root. By default ``tokenizer_name``
        (else ``model_name_or_path``) loaded, or a tokenizer trained on the training text."""
        m = self.model_args
        return {"": load_tokenizer(m.tokenizer_name or m.model_name_or_path, data.raw["train"]["text"],
                                   self.padding_side, "--tokenizer_name" if m.tokenizer_name else
                                   "--model_name_or_path", kind=m.tokenizer_kind, vocab_size=m.vocab_size,
                                   min_frequency=m.min_frequency, lowercase=m.lowercase,
                                   model_max_length=getattr(m, "max_length", None))}

    @abc.abstractmethod
    def config_fields(self, data: RunData) -> dict:
        """The fields of a new model's config read off the data and tokenizers (sizes, special ids, labels)."""

    def load_kwargs(self, data: RunData) -> dict:
        """Keyword arguments of ``from_pretrained`` for a saved model."""
        return {}

    def prepare_model(self, data: RunData, model) -> None:
        """Checks and fills the built or loaded model before training (nothing by default)."""
        return None

    @abc.abstractmethod
    def preprocess(self, data: RunData) -> DatasetDict:
        """The tokenised splits the Trainer reads (run on the main process first)."""

    def index_new_model(self, data: RunData, model, train_ds) -> None:
        """Fills what a new model records from its tokenizer and training data before training (nothing by
        default)."""
        return None

    @abc.abstractmethod
    def trainer_kwargs(self, data: RunData, eval_ds) -> dict:
        """Keyword arguments of the Trainer beside the model, datasets and arguments (collator, metrics)."""

    def facts(self, data: RunData) -> dict:
        """This pipeline's entries of results.json beside the training facts and the scores."""
        m = self.model_args
        return {"tokenizer_kind": "loaded" if m.tokenizer_name or m.model_name_or_path else m.tokenizer_kind}

    def evaluate(self, data: RunData, trainer, splits: dict) -> dict:
        """The metrics of the trained model on each of ``splits`` ({name: tokenised split}), prefixed by name."""
        return {k: v for split, ds in splits.items()
                for k, v in split_metrics(trainer.evaluate(ds, metric_key_prefix=split)).items()}

    def finish(self, data: RunData, trainer, results: dict) -> tuple[list, list]:
        """(samples, figures) once the model is saved: the samples to print and results.json's "samples", and
        the figures beside the loss curve (one per name of :attr:`plots` after the first; None: not made)."""
        return [], []

    @abc.abstractmethod
    def print_sample(self, sample) -> None:
        """Prints one of the samples of :meth:`finish`."""

    def title(self) -> str:
        """The run in a few words: the title of the plots and the summary."""
        return f"{self.model.config.model_type} on {self.corpus}"

    # ------------------------------------------------------------------------------------------ the run

    def __init__(self, model_args, data_args, run_args, training_args, folder):
        self.model_args, self.data_args, self.run_args, self.training_args = (model_args, data_args, run_args,
                                                                              training_args)
        self.folder, self.out_dir = folder, folder.work_dir
        self.corpus, self.seed = data_args.train_file or data_args.corpus, training_args.seed

    @classmethod
    def parse_args(cls, argv=None, overrides: dict | None = None) -> tuple:
        """The run's arguments, one per class of :attr:`arguments`, from the recipe, the typed ``overrides``
        ({option: value}, :func:`check_overrides`) and the command line (:func:`hfnn.training.recipes.parse_args`);
        ``--resume_from_checkpoint`` ``true``/``latest``/``last`` becomes the newest complete checkpoint of
        ``output_dir``, and a given checkpoint path is checked."""
        overrides = check_overrides(cls.arguments, overrides or {}, f"the {cls.task} pipeline")
        parsed = parse_args(cls.arguments, argv, cls.argument_defaults, overrides=overrides)
        parsed[-1].resume_from_checkpoint = resolve_resume_checkpoint(parsed[-1].resume_from_checkpoint,
                                                                      parsed[-1].output_dir)
        return parsed

    @classmethod
    def main(cls, argv=None) -> dict:
        """Runs the pipeline on ``argv`` (recipe and flags); returns the results dict."""
        return cls.execute(argv).results

    @classmethod
    def execute(cls, argv=None, overrides: dict | None = None) -> PipelineRun:
        """Runs the pipeline on ``argv`` (recipe and flags) and the typed ``overrides`` (see :meth:`parse_args`);
        returns the results dict and the output folder."""
        from transformers import set_seed

        from hfnn.pipelines.output_dir import claim_output_dir

        model_args, data_args, run_args, training_args = cls.parse_args(argv, overrides)
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
        check_training_arguments(training_args)  # options the Trainer would take and then fail (or loop) on late
        cls.check_arguments(model_args, data_args, run_args, training_args)  # before the output folder is claimed
        if run_args.lora_r and not getattr(model_args, "model_name_or_path", None):
            raise OptionError(f"--lora_r {run_args.lora_r} trains an adapter on top of a trained model: give it with "
                              "--model_name_or_path (a saved model folder); without one the base would be randomly "
                              "initialised and the adapter would have no base model (leave --lora_r 0 to train a "
                              "new model)")
        if getattr(model_args, "model_name_or_path", None):  # before its tokenizer is read
            check_model_for_task(model_args.model_name_or_path, cls.task)
        inputs = [getattr(data_args, n, None) for n in ("train_file", "validation_file", "test_file", "corpus")]
        with claim_output_dir(training_args.output_dir, run_args.overwrite_output_dir,
                              training_args.resume_from_checkpoint, inputs=inputs + cls.inputs(model_args)) as folder:
            training_args.output_dir = str(folder.work_dir)
            set_seed(training_args.seed)
            results = cls(model_args, data_args, run_args, training_args, folder).run()
        return PipelineRun(results, folder.path)

    def build_model(self, data: RunData):
        import transformers

        auto, self.overrides = getattr(transformers, registry.task(self.task).auto_class), {}
        overrides = parse_config_overrides(self.model_args.config_overrides)
        if self.model_args.model_name_or_path:
            with hub_lookup("--model_name_or_path", self.model_args.model_name_or_path):
                self.model = auto.from_pretrained(self.model_args.model_name_or_path, **self.load_kwargs(data))
            unused = {k: v for k, v in overrides.items() if getattr(self.model.config, k, None) != v}
            if unused:  # config_overrides shape a new model; the saved one keeps its own config
                _logger.warning("config_overrides not applied to the saved model %s: %s",
                                self.model_args.model_name_or_path,
                                ", ".join(f"{k}={v!r} (saved: {getattr(self.model.config, k, None)!r})"
                                          for k, v in unused.items()))
        else:
            self.overrides = overrides
            fields = self.config_fields(data)
            check_data_fields(fields, overrides)
            self.model = auto.from_config(build_config(self.model_args.architecture, self.task, fields, self.overrides))
        self.prepare_model(data, self.model)
        check_resume_architecture(self.training_args.resume_from_checkpoint, self.model)
        return self.model

    def run(self) -> dict:
        """The data and tokenizers, then :meth:`train`, :meth:`score` and :meth:`report`; returns the results."""
        data = self.load_data()
        data.tokenizers = self.load_tokenizers(data)
        trained = self.train(data)
        return self.report(data, trained, self.score(data, trained))

    def train(self, data: RunData) -> TrainedRun:
        """Builds the model (+ adapter), tokenises, trains and saves the trained model into the folder."""
        args, run_args = self.training_args, self.run_args
        model = self.build_model(data)
        parameters = sum(p.numel() for p in model.parameters())
        if run_args.lora_r:
            from hfnn.sharing.adapters import add_adapter

            model = add_adapter(model, method=run_args.adapter_method or "lora", r=run_args.lora_r)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        _logger.info("model %s: %.2fM parameters (%.2fM trainable)", type(self.model).__name__, parameters / 1e6,
                     trainable / 1e6)
        with args.main_process_first(desc="dataset preprocessing"):  # the others read the datasets cache it fills
            datasets = self.preprocess(data)
        train_ds, eval_ds = datasets["train"], datasets["validation"] if "validation" in datasets else []
        self.index_new_model(data, self.model, train_ds)
        strategy = getattr(args.eval_strategy, "value", args.eval_strategy)
        if not len(eval_ds) and (strategy != "no" or args.eval_on_start):
            raise DataError(f"The validation split {data.empty_eval[0]}, but --eval_strategy is {strategy}: "
                            f"{data.empty_eval[1]}, or set --eval_strategy no")
        trainer = self.trainer_class(
            model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds if len(eval_ds) else None,
            processing_class=data.tokenizer, callbacks=[CheckpointCommitCallback()],
            **self.trainer_kwargs(data, eval_ds))
        extras = TrainingCallbacks.attach(trainer, run_args.max_train_minutes, run_args.anneal_by_time,
                                          average_weights=run_args.average_weights)
        start = time.monotonic()
        try:
            train_result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
        finally:
            extras.interrupt.restore()
        seconds = time.monotonic() - start
        extras.check()
        self.folder.save(lambda path: self._save(trainer, path, data.tokenizers))  # before anything else can fail
        return TrainedRun(trainer=trainer, datasets=datasets, outcome=train_result, seconds=seconds, callbacks=extras,
                          parameters=parameters, trainable=trainable)

    def score(self, data: RunData, trained: TrainedRun) -> dict:
        """The results: the facts of the training, the scores on the validation and test splits, and with weight
        averaging the last step's weights scored on the validation split beside the mean's."""
        trainer, datasets, extras, run_args = trained.trainer, trained.datasets, trained.callbacks, self.run_args
        history = trainer.state.log_history
        results = {
            "architecture": self.model.config.model_type, "parameters": trained.parameters,
            "trainable_parameters": trained.trainable,
            "train_seconds": round(trained.seconds, 1), "train_steps": trainer.state.global_step,
            "train_epochs": trainer.state.epoch, "train_loss": trained.outcome.training_loss,
            "train_examples": _examples_seen(datasets["train"], trainer),
            "cpu_threads": extras.thread_history, "corpus": self.corpus,
            "config_overrides": self.overrides,
            "train_loss_curve": [[h["step"], h["loss"]] for h in history if "loss" in h and "step" in h],
            "eval_history": [[h["step"], h["eval_loss"]] for h in history if "eval_loss" in h and "step" in h],
            **({"adapter": {"method": run_args.adapter_method or "lora", "r": run_args.lora_r}}
               if run_args.lora_r else {}),
            **({"interrupted_at_step": extras.interrupt.interrupted_at}
               if extras.interrupt.interrupted_at is not None else {}),
            **self.facts(data),
        }
        start = time.monotonic()
        scores = self.evaluate(data, trainer, {s: datasets[s] for s in ("validation", "test")
                                               if s in datasets and len(datasets[s])})
        final = ([{"step": trainer.state.global_step, "eval_loss": scores["validation_loss"]}]
                 if isinstance(scores.get("validation_loss"), float) else [])
        chance = chance_loss(self.model.config, self.task == "text-classification")
        rise = loss_rise(history + final, chance)
        try:  # a model whose scores are not finite diverged: it is taken back, as one with NaN weights is never saved
            check_finite_metrics(scores)
            check_loss_rise(history + final, chance)
        except NonFiniteTrainingError:
            self.folder.discard_saved()
            raise
        results.update(scores)
        results["eval_seconds"] = round(time.monotonic() - start, 1)
        if rise is not None:
            results["loss_rise"] = rise
            _logger.warning("%s", loss_rise_line(rise))
        averaging = extras.averaging
        if averaging is not None:
            results["weight_averaging"] = {"fraction": averaging.fraction, "steps": averaging.steps,
                                           "from_step": averaging.first_step}
            if averaging.final_weights is not None and "validation" in datasets and len(datasets["validation"]):
                trained_model = trainer.accelerator.unwrap_model(trainer.model)
                averaging.swap_final_weights(trained_model)  # the last step's weights, scored beside the mean
                try:
                    last = self.evaluate(data, trainer, {"validation": datasets["validation"]})
                finally:
                    averaging.swap_final_weights(trained_model)
                results["weight_averaging"]["last_step_weights"] = last
        return results

    def report(self, data: RunData, trained: TrainedRun, results: dict) -> dict:
        """On the main process: the loss curve, the samples and figures of :meth:`finish`, results.json, the model
        card and the printed summary. Returns the results."""
        trainer, args = trained.trainer, self.training_args
        if not trainer.is_world_process_zero():
            print(f"process {args.process_index} of {args.world_size}: finished; process 0 writes {self.folder.path}")
            return {**results, "samples": []}
        figures = [plot_loss_curve(trainer.state.log_history, self.out_dir, title=self.title())]
        results["samples"], more = self.finish(data, trainer, results)
        write_results(self.out_dir, results)
        if self.run_args.write_model_card:
            from hfnn.sharing.cards import write_model_card

            write_model_card(self.out_dir, task=self.card_task, results=results, training_args=args,
                             dataset=self.corpus)
        self._print(results, figures + more)
        args.output_dir = str(self.folder.path)
        return results

    def _save(self, trainer, path: Path, tokenizers: dict) -> None:
        """Saves the trained model into ``path``. A PEFT adapter is saved into ``path/adapter`` first, then merged
        into the model, so the folder holds the full model and the adapter (a fallback folder gets a copy)."""
        model = trainer.accelerator.unwrap_model(trainer.model)
        if hasattr(model, "merge_and_unload"):
            model.save_pretrained(str(path / "adapter"), is_main_process=trainer.is_world_process_zero())
            trainer.model = trainer.model_wrapped = self.model = model.merge_and_unload()
            self.adapter_dir = path / "adapter"
        elif getattr(self, "adapter_dir", None) and trainer.is_world_process_zero():
            shutil.copytree(self.adapter_dir, path / "adapter", dirs_exist_ok=True)
        save_trained(trainer, path, tokenizers)

    def _print(self, results: dict, figures: list) -> None:
        stopped = " (stopped by Ctrl-C)" if "interrupted_at_step" in results else ""
        print(f"\n=== {self.title()}: {results['parameters'] / 1e6:.2f}M parameters, {results['train_steps']} steps in "
              f"{results['train_seconds'] / 60:.1f} min{stopped} ===")
        for split in ("validation", "test"):
            shown = {k[len(split) + 1:]: v for k, v in results.items() if k.startswith(split + "_")
                     and isinstance(v, float) and not k.endswith(tuple(self.summary_skip))}
            if shown:
                print(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        averaging = results.get("weight_averaging")
        if averaging and not averaging["steps"]:
            print(f"training stopped before its last {averaging['fraction']:g} began: the saved weights are the last "
                  "step's, not an average")
        elif averaging:
            last = {k[len("validation_"):]: v for k, v in averaging.get("last_step_weights", {}).items()
                    if k.startswith("validation_") and isinstance(v, float)
                    and not k.endswith(tuple(self.summary_skip))}
            print(f"the saved weights are the mean of {averaging['steps']} steps' (from step {averaging['from_step']})"
                  + ("; the last step's: validation " + ", ".join(f"{k} {v:.4f}" for k, v in last.items())
                     if last else ""))
        if results.get("loss_rise"):
            print(loss_rise_line(results["loss_rise"]))
        for sample in results["samples"]:
            self.print_sample(sample)
        shown = [f"{name}: {self.folder.path / f.name}" if f else f"no {name}" for name, f in zip(self.plots, figures)]
        print(f"saved to {self.folder.path} ({', '.join(shown)})")


# ---------------------------------------------------------------------------------------------- the typed entry


def pipeline_class(task: str) -> type[Pipeline]:
    """The :class:`Pipeline` of ``task`` (a task name or alias of :mod:`hfnn.models.registry`): the one that its
    training module defines."""
    module = pipeline_module(task)
    found = [obj for obj in vars(module).values() if isinstance(obj, type) and issubclass(obj, Pipeline)
             and obj.__module__ == module.__name__ and not inspect.isabstract(obj)]
    if len(found) != 1:
        raise ImportError(f"{module.__name__} defines {len(found)} training pipelines, not one")
    return found[0]


def run_pipeline(task: str, recipe: str | os.PathLike | None = None, /, argv=(), **overrides) -> PipelineRun:
    """Runs the training pipeline of ``task`` (a task name or alias of :mod:`hfnn.models.registry`) on ``recipe``
    (a shipped recipe's name or a recipe file; None: the pipeline's own defaults) with ``overrides``, the
    pipeline's options (model, data, run or Trainer arguments, as a recipe names them) with typed values: ints,
    floats, bools, strings (or paths), a mapping for ``config_overrides`` (it updates the recipe's mapping, as
    ``--config_overrides`` does). ``argv``: further ``--name value`` flags, parsed as on the command line, last.

    An unknown option, or a value not of the option's type, is a ValueError naming it. Returns the run's
    results dict (as in results.json) and its output folder: ``results, output_dir = run_pipeline(...)``.
    """
    pipeline = pipeline_class(task)
    return pipeline.execute(([os.fspath(recipe)] if recipe is not None else []) + list(argv), overrides)
