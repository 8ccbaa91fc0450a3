"""The skeleton every training pipeline shares, and its arguments, checks, saving and reports.

A pipeline is a :class:`Pipeline` subclass that says what differs (data, tokenizers, config fields,
tokenisation, evaluation, samples); :meth:`Pipeline.main` does the rest: parse the recipe and the command
line (:mod:`hfnn.training.recipes`), claim the output folder, build or load the model (optionally with a PEFT
adapter), train with the callbacks of :mod:`hfnn.training`, save, evaluate, plot and report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

from transformers import Trainer, TrainingArguments

import hfnn
from hfnn.models import registry
from hfnn.models.errors import first_line
from hfnn.training.cpu_threads import env_threads
from hfnn.pipelines.checkpoints import CheckpointCommitCallback, resolve_resume_checkpoint
from hfnn.training.recipes import USER_ERRORS, parse_args, parse_config_overrides
from hfnn.training import (TrainingCallbacks, check_finite_model, check_resume_architecture, check_training_arguments,
                           plot_loss_curve)

__all__ = ["DataArguments", "ModelArguments", "Pipeline", "RunArguments", "TextDataArguments", "TokenizerModelArguments",
           "arg", "build_config", "check_config_overrides", "check_count", "config_class",
           "load_split_corpus", "load_tokenizer", "report_cut", "run_command", "save_trained", "split_metrics",
           "subset", "write_results"]

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
    adapter_method: str = arg("lora", "PEFT method of the adapter (with --lora_r): lora or oft (hfnn.sharing.adapters).")

    def __post_init__(self):
        check_count("num_samples", self.num_samples, 0, " (0: print none)")
        check_count("lora_r", self.lora_r, 0, " (0: off)")
        env_threads()  # a bad HFNN_THREADS is an error now, not after the data has loaded
        fraction = self.average_weights
        if not (isinstance(fraction, (int, float)) and math.isfinite(fraction) and 0 <= fraction <= 1):
            raise ValueError("--average_weights must be the fraction of training to average the weights over, "
                             f"between 0 (off) and 1, got {fraction!r}")
        if fraction and self.lora_r:
            raise ValueError("--average_weights and --lora_r cannot be used together: the average is of the full "
                             "weights, and an adapter's factors do not average to the average of their product")
        minutes = self.max_train_minutes
        if minutes is not None and not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
            raise ValueError("--max_train_minutes must be a number of minutes > 0 (leave it unset for no limit), "
                             f"got {minutes!r}")


def run_command(main, argv=None, name: str | None = None) -> int:
    """Runs a pipeline's ``main(argv)`` as a command and returns its exit status, like ``hfnn train``: 0 when
    it finished; for a user error (:data:`hfnn.training.recipes.USER_ERRORS`) one line ``run_x: error: MESSAGE`` on stderr and 2,
    without a traceback (``HFNN_DEBUG=1`` raises it instead); 130 on Ctrl-C. Other exceptions are bugs and
    propagate with their traceback. ``name`` (default: the module of ``main``) names the command: a pipeline module
    ends with ``raise SystemExit(run_command(main, name=__spec__.name))``."""
    module = getattr(getattr(main, "__self__", main), "__module__", None)  # a function, or a Pipeline's main
    prog = (name or module or "pipeline").rsplit(".", 1)[-1]
    try:
        main(argv)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if os.environ.get("HFNN_DEBUG", "") not in ("", "0"):
            raise
        print(f"{prog}: error: {first_line(err)}", file=sys.stderr)
        return 2
    return 0


# ---------------------------------------------------------------------------------------------- checks


def check_count(name: str, value, minimum: int, note: str = "") -> None:
    """``value`` must be an int >= ``minimum``: a ValueError naming the option ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{note}, got {value!r}")


def config_class(architecture: str, task: str):
    """The configuration class of ``architecture`` (a name or alias in :mod:`hfnn.models.registry`) for a new model of
    ``task``; ValueError naming the architectures for an unknown name, or the missing head."""
    return getattr(hfnn, registry.architecture_for(architecture, task).config_class)


def build_config(architecture: str, task: str, fields: dict, overrides: dict):
    """A new config of ``architecture`` for ``task``: ``fields`` (sizes, special ids, labels) updated with the
    user's ``overrides``, whose keys must be fields of the config (:func:`check_config_overrides`)."""
    config = config_class(architecture, task)(**{**fields, **overrides})
    check_config_overrides(config, overrides)
    return config


def check_config_overrides(config, overrides: dict) -> None:
    """Raises ValueError naming the keys of ``overrides`` that ``config`` does not know.

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
        raise ValueError(f"config_overrides: {cls.__name__} has no field {', '.join(hints)}")


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
    raise ValueError("Give a corpus (built-in name, file or Hub dataset) or a train_file.")


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


def load_tokenizer(name: str | None, texts, padding_side: str, **train_options):
    """The tokenizer saved at ``name`` (read as text only, :func:`hfnn.data.tokenization.text_only`), or one trained on
    ``texts`` with ``train_options`` (:func:`hfnn.data.tokenization.train_tokenizer`); padding on ``padding_side``."""
    from transformers import AutoTokenizer

    from hfnn.data.tokenization import text_only, train_tokenizer

    if name:
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


class Pipeline:
    """One training pipeline. :meth:`main` runs it: parse (each argument class checks its values) -> claim the
    output folder -> data -> tokenizers -> model (+ adapter) -> tokenise (main process first) -> train -> save
    -> evaluate -> plots, samples, results.json, model card, summary. A subclass sets the class attributes and
    overrides the hooks: ``inputs`` (files it reads besides the data), ``load_data`` (the raw DatasetDict),
    ``load_tokenizers`` ({subfolder: tokenizer}; ``""`` is the processing class, saved at the root; by default
    the one of :class:`TokenizerModelArguments`), ``config_fields`` (a new config's sizes, ids, labels),
    ``load_kwargs`` (of ``from_pretrained``), ``prepare_model``, ``preprocess`` (the tokenised DatasetDict),
    ``index_new_model`` (what a new model records from its training data), ``trainer_kwargs`` (collator, metrics), ``facts`` (its results.json entries), ``evaluate``, ``finish``
    ((samples, figures)), ``print_sample`` and ``title``."""

    task, card_task = "language-modeling", "text-generation"  # the hfnn.models.registry task, the model card's task
    arguments = (TokenizerModelArguments, TextDataArguments, RunArguments, TrainingArguments)
    argument_defaults = {}  # this pipeline's defaults for options of the argument classes (a recipe overrides them)
    trainer_class = Trainer
    plots = ("loss curve",)  # names of the figures (the loss curve, then those ``finish`` returns)
    summary_skip = ()  # metric name endings left out of the printed summary
    empty_eval = ("is empty", "give a --validation_file, more data")  # (what, advice) for an empty validation split
    padding_side = "right"  # of the tokenizer of load_tokenizers

    @classmethod
    def inputs(cls, model_args) -> list:
        return []

    def load_kwargs(self) -> dict:
        return {}

    def index_new_model(self, model, train_ds) -> None:
        """Fills what a new model records from its tokenizer and training data before training (nothing by
        default)."""

    def prepare_model(self, model) -> None:
        pass

    def load_tokenizers(self, raw) -> dict:
        """``tokenizer_name`` (else ``model_name_or_path``) loaded, or a tokenizer trained on the training text."""
        m = self.model_args
        self.loaded_tokenizer = m.tokenizer_name or m.model_name_or_path
        return {"": load_tokenizer(self.loaded_tokenizer, raw["train"]["text"], self.padding_side, kind=m.tokenizer_kind,
                                   vocab_size=m.vocab_size, min_frequency=m.min_frequency, lowercase=m.lowercase,
                                   model_max_length=getattr(m, "max_length", None))}

    def facts(self) -> dict:
        return {"tokenizer_kind": "loaded" if self.loaded_tokenizer else self.model_args.tokenizer_kind}

    def evaluate(self, trainer, splits: dict) -> dict:
        return {k: v for split, ds in splits.items()
                for k, v in split_metrics(trainer.evaluate(ds, metric_key_prefix=split)).items()}

    def finish(self, trainer, results: dict) -> tuple[list, list]:
        return [], []

    def title(self) -> str:
        return f"{self.model.config.model_type} on {self.corpus}"

    def __init__(self, model_args, data_args, run_args, training_args, folder):
        self.model_args, self.data_args, self.run_args, self.training_args = model_args, data_args, run_args, training_args
        self.folder, self.out_dir = folder, folder.work_dir
        self.corpus, self.seed = data_args.train_file or data_args.corpus, training_args.seed

    @classmethod
    def parse_args(cls, argv=None) -> tuple:
        """The run's arguments, one per class of :attr:`arguments`, from the recipe and the command line
        (:func:`hfnn.training.recipes.parse_args`); ``--resume_from_checkpoint`` ``true``/``latest``/``last`` becomes the
        newest complete checkpoint of ``output_dir``, and a given checkpoint path is checked."""
        parsed = parse_args(cls.arguments, argv, cls.argument_defaults)
        parsed[-1].resume_from_checkpoint = resolve_resume_checkpoint(parsed[-1].resume_from_checkpoint,
                                                                      parsed[-1].output_dir)
        return parsed

    @classmethod
    def main(cls, argv=None) -> dict:
        """Runs the pipeline on ``argv`` (recipe and flags); returns the results dict."""
        from transformers import set_seed

        from hfnn.pipelines.output_dir import claim_output_dir

        model_args, data_args, run_args, training_args = cls.parse_args(argv)
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
        check_training_arguments(training_args)  # options the Trainer would take and then fail (or loop) on late
        inputs = [getattr(data_args, n, None) for n in ("train_file", "validation_file", "test_file", "corpus")]
        with claim_output_dir(training_args.output_dir, run_args.overwrite_output_dir,
                              training_args.resume_from_checkpoint, inputs=inputs + cls.inputs(model_args)) as folder:
            training_args.output_dir = str(folder.work_dir)
            set_seed(training_args.seed)
            return cls(model_args, data_args, run_args, training_args, folder).run()

    def build_model(self):
        import transformers

        auto, self.overrides = getattr(transformers, registry.task(self.task).auto_class), {}
        overrides = parse_config_overrides(self.model_args.config_overrides)
        if self.model_args.model_name_or_path:
            self.model = auto.from_pretrained(self.model_args.model_name_or_path, **self.load_kwargs())
            unused = {k: v for k, v in overrides.items() if getattr(self.model.config, k, None) != v}
            if unused:  # config_overrides shape a new model; the saved one keeps its own config
                _logger.warning("config_overrides not applied to the saved model %s: %s", self.model_args.model_name_or_path,
                               ", ".join(f"{k}={v!r} (saved: {getattr(self.model.config, k, None)!r})" for k, v in unused.items()))
        else:
            self.overrides = overrides
            self.model = auto.from_config(build_config(self.model_args.architecture, self.task, self.config_fields(),
                                                       self.overrides))
        self.prepare_model(self.model)
        check_resume_architecture(self.training_args.resume_from_checkpoint, self.model)
        return self.model

    def run(self) -> dict:
        args, run_args = self.training_args, self.run_args
        raw = self.load_data()
        self.tokenizers = self.load_tokenizers(raw)
        model = self.build_model()
        parameters = sum(p.numel() for p in model.parameters())
        if run_args.lora_r:
            from hfnn.sharing.adapters import add_adapter

            model = add_adapter(model, method=run_args.adapter_method, r=run_args.lora_r)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        _logger.info("model %s: %.2fM parameters (%.2fM trainable)", type(self.model).__name__, parameters / 1e6,
                     trainable / 1e6)
        with args.main_process_first(desc="dataset preprocessing"):  # the others read the datasets cache it fills
            data = self.preprocess(raw)
        train_ds, eval_ds = data["train"], data["validation"] if "validation" in data else []
        self.index_new_model(self.model, train_ds)
        strategy = getattr(args.eval_strategy, "value", args.eval_strategy)
        if not len(eval_ds) and (strategy != "no" or args.eval_on_start):
            raise ValueError(f"The validation split {self.empty_eval[0]}, but --eval_strategy is {strategy}: "
                             f"{self.empty_eval[1]}, or set --eval_strategy no")
        trainer = self.trainer_class(
            model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds if len(eval_ds) else None,
            processing_class=self.tokenizers[""], callbacks=[CheckpointCommitCallback()], **self.trainer_kwargs(eval_ds))
        extras = TrainingCallbacks.attach(trainer, run_args.max_train_minutes, run_args.anneal_by_time,
                                          average_weights=run_args.average_weights)
        start = time.monotonic()
        try:
            train_result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
        finally:
            extras.interrupt.restore()
        seconds = time.monotonic() - start
        extras.check()
        self.folder.save(lambda path: self._save(trainer, path))  # before anything else can fail
        history = trainer.state.log_history
        results = {
            "architecture": self.model.config.model_type, "parameters": parameters, "trainable_parameters": trainable,
            "train_seconds": round(seconds, 1), "train_steps": trainer.state.global_step,
            "train_epochs": trainer.state.epoch, "train_loss": train_result.training_loss,
            "train_examples": len(train_ds), "cpu_threads": extras.thread_history, "corpus": self.corpus,
            "config_overrides": self.overrides,
            "train_loss_curve": [[h["step"], h["loss"]] for h in history if "loss" in h and "step" in h],
            "eval_history": [[h["step"], h["eval_loss"]] for h in history if "eval_loss" in h and "step" in h],
            **({"adapter": {"method": run_args.adapter_method, "r": run_args.lora_r}} if run_args.lora_r else {}),
            **({"interrupted_at_step": extras.interrupt.interrupted_at}
               if extras.interrupt.interrupted_at is not None else {}),
            **self.facts(),
        }
        start = time.monotonic()
        results.update(self.evaluate(trainer, {s: data[s] for s in ("validation", "test") if s in data and len(data[s])}))
        results["eval_seconds"] = round(time.monotonic() - start, 1)
        averaging = extras.averaging
        if averaging is not None:
            results["weight_averaging"] = {"fraction": averaging.fraction, "steps": averaging.steps,
                                           "from_step": averaging.first_step}
            if averaging.final_weights is not None and "validation" in data and len(data["validation"]):
                trained = trainer.accelerator.unwrap_model(trainer.model)
                averaging.swap_final_weights(trained)  # the last step's weights, scored beside the mean
                try:
                    last = self.evaluate(trainer, {"validation": data["validation"]})
                finally:
                    averaging.swap_final_weights(trained)
                results["weight_averaging"]["last_step_weights"] = last
        if not trainer.is_world_process_zero():
            print(f"process {args.process_index} of {args.world_size}: finished; process 0 writes {self.folder.path}")
            return {**results, "samples": []}
        figures = [plot_loss_curve(history, self.out_dir, title=self.title())]
        results["samples"], more = self.finish(trainer, results)
        write_results(self.out_dir, results)
        if run_args.write_model_card:
            from hfnn.sharing.cards import write_model_card

            write_model_card(self.out_dir, task=self.card_task, results=results, training_args=args, dataset=self.corpus)
        self._print(results, figures + more)
        args.output_dir = str(self.folder.path)
        return results

    def _save(self, trainer, path: Path) -> None:
        """Saves the trained model into ``path``. A PEFT adapter is saved into ``path/adapter`` first, then merged
        into the model, so the folder holds the full model and the adapter (a fallback folder gets a copy)."""
        model = trainer.accelerator.unwrap_model(trainer.model)
        if hasattr(model, "merge_and_unload"):
            model.save_pretrained(str(path / "adapter"), is_main_process=trainer.is_world_process_zero())
            trainer.model = trainer.model_wrapped = self.model = model.merge_and_unload()
            self.adapter_dir = path / "adapter"
        elif getattr(self, "adapter_dir", None) and trainer.is_world_process_zero():
            shutil.copytree(self.adapter_dir, path / "adapter", dirs_exist_ok=True)
        save_trained(trainer, path, self.tokenizers)

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
                    if k.startswith("validation_") and isinstance(v, float) and not k.endswith(tuple(self.summary_skip))}
            print(f"the saved weights are the mean of {averaging['steps']} steps' (from step {averaging['from_step']})"
                  + ("; the last step's: validation " + ", ".join(f"{k} {v:.4f}" for k, v in last.items()) if last else ""))
        for sample in results["samples"]:
            self.print_sample(sample)
        shown = [f"{name}: {self.folder.path / f.name}" if f else f"no {name}" for name, f in zip(self.plots, figures)]
        print(f"saved to {self.folder.path} ({', '.join(shown)})")
