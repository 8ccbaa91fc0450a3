"""Pieces shared by the training pipelines: recipe parsing, output folders, time budgets, plots."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

from transformers import HfArgumentParser, TrainerCallback
from transformers.trainer_callback import ExportableState

__all__ = [
    "BaseDataArguments",
    "BaseModelArguments",
    "CHECKPOINT_MARKER",
    "CheckpointCommitCallback",
    "NonFiniteGuardCallback",
    "NonFiniteTrainingError",
    "RECIPES_DIR",
    "RunArguments",
    "SplitDataArguments",
    "TimeBudgetCallback",
    "BudgetProgressCallback",
    "budget_callbacks",
    "use_budget_progress",
    "TokenizerModelArguments",
    "USER_ERRORS",
    "check_config_overrides",
    "check_finite_model",
    "check_resume_architecture",
    "check_run_options",
    "check_tokenizer",
    "checkpoint_problem",
    "last_valid_checkpoint",
    "list_recipes",
    "load_recipe",
    "merge_mapping",
    "parse_args",
    "parse_config_overrides",
    "prepare_output_dir",
    "resolve_recipe",
    "finish_secondary_process",
    "resolve_resume_checkpoint",
    "run_command",
    "save_loss_curve",
    "save_model",
    "save_trained",
    "pyplot",
    "save_figure",
    "PipelineCallbacks",
    "check_eval_split",
    "print_summary",
    "report",
    "run_pipeline",
    "split_metrics",
    "load_split_corpus",
    "config_class",
    "subset",
    "log_thread_choice",
    "cap_model_max_length",
    "write_checkpoint_marker",
    "write_results",
]

_logger = logging.getLogger(__name__)

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
_RECIPE_SUFFIXES = (".yaml", ".yml", ".json")


@dataclasses.dataclass
class RunArguments:
    """Options of a pipeline run that are not model, data or Trainer arguments."""

    task: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Pipeline the recipe is for (language-modeling, text-classification, seq2seq); used by `hfnn train`."},
    )
    overwrite_output_dir: bool = dataclasses.field(
        default=False,
        metadata={"help": "Replace the whole content of a non-empty output_dir: the run writes beside it and the "
                          "new folder takes its place at the end (the old one stays as it was if the run fails)."},
    )
    max_train_minutes: float | None = dataclasses.field(
        default=None, metadata={"help": "Stop training after this many minutes of wall-clock time."}
    )
    anneal_by_time: bool = dataclasses.field(
        default=False,
        metadata={"help": "Cosine-decay the learning rate over max_train_minutes instead of over max_steps."},
    )
    num_samples: int = dataclasses.field(
        default=3, metadata={"help": "Generations or predictions to print at the end (0: none)."}
    )
    write_model_card: bool = dataclasses.field(default=True, metadata={"help": "Write README.md (model card)."})

    def __post_init__(self):
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int) or self.num_samples < 0:
            raise ValueError(f"num_samples must be an integer >= 0 (0: print none), got {self.num_samples!r}")


# Argument dataclasses shared by the pipelines. A pipeline subclasses them and re-declares a field whose
# default or help is its own; a re-declared field keeps its place, so every pipeline lists its flags in the
# same order. `architecture` and `corpus` have no default here: each pipeline gives its own.


@dataclasses.dataclass
class BaseModelArguments:
    """Model arguments of every pipeline: what to build or load, and config fields for a new model."""

    architecture: str = dataclasses.field(metadata={"help": "hfnn architecture to build."})
    model_name_or_path: str | None = dataclasses.field(
        default=None, metadata={"help": "Start from a saved model folder (or Hub id) instead of building a new model."}
    )
    config_overrides: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Config fields for a new model: a mapping in the recipe or a JSON string on the command line."},
    )


@dataclasses.dataclass
class TokenizerModelArguments(BaseModelArguments):
    """Model arguments of the pipelines with one tokenizer (language modelling, text classification)."""

    tokenizer_name: str | None = dataclasses.field(
        default=None, metadata={"help": "Load this tokenizer instead of training one (defaults to model_name_or_path)."}
    )


@dataclasses.dataclass
class BaseDataArguments:
    """Data arguments of every pipeline: a corpus, or local files for the train and validation splits."""

    corpus: str | None = dataclasses.field(metadata={"help": "Built-in corpus name, local file, or Hub dataset name."})
    train_file: str | None = dataclasses.field(default=None, metadata={"help": "Local training data (csv/json/jsonl)."})
    validation_file: str | None = dataclasses.field(default=None, metadata={"help": "Local validation data."})


@dataclasses.dataclass
class SplitDataArguments(BaseDataArguments):
    """Data arguments of the pipelines that also take a local test file (text classification, seq2seq)."""

    test_file: str | None = dataclasses.field(default=None, metadata={"help": "Local test data."})


def parse_config_overrides(value) -> dict:
    """``config_overrides`` as a dict: None -> {}, a mapping (from a recipe) copied, a string (from the command
    line) parsed as JSON, which must give a mapping (ValueError otherwise). The keys are checked against the
    config once it is built (:func:`check_config_overrides`)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if not isinstance(value, str):
        raise ValueError(f"config_overrides must be a mapping of config fields, got {type(value).__name__} {value!r}")
    return _json_mapping(value, "config_overrides")


def _json_mapping(value: str, name: str, purpose: str = "") -> dict:
    """``value`` parsed as a JSON object; a ValueError naming ``name`` otherwise."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(f"{name} must be a JSON mapping, got {value!r}: {err}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{name} must be a JSON mapping{purpose}, got {value!r}")
    return parsed


def list_recipes() -> list[str]:
    """Names of the recipes shipped with hfnn (usable wherever a recipe path is expected)."""
    return sorted(p.stem for p in RECIPES_DIR.iterdir() if p.suffix in _RECIPE_SUFFIXES)


def resolve_recipe(name_or_path: str) -> Path:
    """A recipe file path, or the name of a shipped recipe (``rnn_shakespeare_char``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for suffix in ("",) + _RECIPE_SUFFIXES:
        candidate = RECIPES_DIR / f"{name_or_path}{suffix}"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Recipe {name_or_path!r} is neither a file nor a shipped recipe. Shipped recipes: {', '.join(list_recipes())}"
    )


def load_recipe(name_or_path: str) -> dict:
    """Reads a JSON or YAML recipe into a dict of argument values."""
    path = resolve_recipe(name_or_path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            recipe = json.loads(text)
        else:
            import yaml

            recipe = yaml.safe_load(text)
    except Exception as err:  # both parsers raise their own error types
        raise ValueError(f"Recipe {path} is not valid {path.suffix[1:].upper()}: {err}") from None
    if recipe is None:
        recipe = {}
    if not isinstance(recipe, dict):
        raise ValueError(f"Recipe {path} must be a mapping of argument names to values, got {type(recipe).__name__}")
    return recipe


def parse_args(dataclass_types, argv=None):
    """Parses ``[recipe] [--name value ...]`` into one instance per dataclass.

    The recipe (a JSON/YAML file or a shipped recipe's name) gives the defaults; command-line flags
    override them. Unknown recipe keys are an error that names them. ``--resume_from_checkpoint``
    ``true``/``latest``/``last`` becomes the newest complete checkpoint of ``output_dir`` and a
    given checkpoint path is checked (:func:`resolve_resume_checkpoint`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types)
    if argv and not argv[0].startswith("-"):
        recipe_name = argv.pop(0)
        recipe = load_recipe(recipe_name)
        known = {f.name for cls in dataclass_types for f in dataclasses.fields(cls)}
        unknown = sorted(set(recipe) - known)
        if unknown:
            raise ValueError(f"Recipe {recipe_name} has unknown keys: {', '.join(unknown)}")
        # Flags that are required on the command line become optional once the recipe sets them.
        for action in parser._actions:
            if action.dest in recipe:
                action.required = False
        parser.set_defaults(**recipe)
    else:
        recipe = {}
    parsed = parser.parse_args_into_dataclasses(args=argv)
    _merge_mapping_fields(parsed, recipe)
    for args in parsed:
        for field in _MODEL_PATH_FIELDS:
            _check_model_path(field, getattr(args, field, None))
        # TrainingArguments: "--resume_from_checkpoint latest" -> the newest valid checkpoint
        if hasattr(args, "resume_from_checkpoint") and hasattr(args, "output_dir"):
            args.resume_from_checkpoint = resolve_resume_checkpoint(args.resume_from_checkpoint, args.output_dir)
    return parsed


def merge_mapping(base: dict, update: dict) -> dict:
    """``base`` updated key by key with ``update`` (nested mappings merge the same way); a key whose new
    value is None (JSON ``null``) is removed, so the field falls back to its default."""
    merged = dict(base)
    for key, value in update.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_mapping(merged[key], value)
        else:
            merged[key] = value
    return merged


def _merge_mapping_fields(parsed, recipe: dict) -> None:
    """A field the recipe gives as a mapping (``config_overrides``...) and the command line as a JSON string
    is the recipe's mapping updated key by key with the command line's, not replaced by it."""
    for key, base in recipe.items():
        if isinstance(base, str) and key == "config_overrides":  # a recipe may give it as a JSON string too
            try:
                base = json.loads(base)
            except json.JSONDecodeError:
                continue
        if not isinstance(base, dict):
            continue
        for args in parsed:
            if not hasattr(args, key):
                continue
            value = getattr(args, key)
            if key == "config_overrides" and recipe.get("architecture", getattr(args, "architecture", None)) != \
                    getattr(args, "architecture", recipe.get("architecture")):
                # the recipe's config fields are for its architecture; another one on the command line starts
                # from its own defaults (plus the command line's fields)
                _logger.warning("--architecture %s: the recipe's config_overrides (for %s) are not used",
                                args.architecture, recipe["architecture"])
                setattr(args, key, value if not isinstance(value, dict) or value is not base else None)
                continue
            if isinstance(value, str):
                update = _json_mapping(value, f"--{key}", f" (it updates the recipe's {key})")
                setattr(args, key, merge_mapping(base, update))
            elif isinstance(value, dict) and value is not base:
                setattr(args, key, merge_mapping(base, value))


_MODEL_PATH_FIELDS = ("model_name_or_path", "tokenizer_name")


def _check_model_path(field: str, value) -> None:
    """A model/tokenizer argument that is meant as a local folder (absolute, ./ or ~ prefixed, more
    than one '/', or in a folder that exists here) must exist: otherwise transformers takes it for a
    Hub id and, offline, retries for half a minute before an error about the network."""
    if not isinstance(value, str) or not value or os.path.isdir(os.path.expanduser(value)):
        return
    path = Path(os.path.expanduser(value))
    local = (
        value.startswith(("/", "./", "../", "~", ".\\"))
        or value.count("/") > 1
        or "\\" in value
        or (len(path.parts) > 1 and path.parent.is_dir())
    )
    if local:
        what = "a file, not a folder" if path.exists() else "no such folder"
        raise FileNotFoundError(f"--{field} {value}: {what} (a saved model folder or a Hub id is expected)")


# Errors that mean the user asked for something wrong (a flag, a recipe, a file, a folder), not a bug:
# the same ones `hfnn train` reports in one line.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, KeyError, ImportError,
               ConnectionError)


def _one_line(err: BaseException, limit: int = 400) -> str:
    """An error's message on one line (whitespace runs, newlines included, become one space), without the
    quotes a KeyError adds, cut at ``limit`` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, KeyError) and len(text) > 1 and text[0] == text[-1] == "'":
        text = text[1:-1]
    return text if len(text) <= limit else text[:limit] + "..."


def run_command(main, argv=None) -> int:
    """Runs a pipeline's ``main(argv)`` as a command (``python -m hfnn.pipelines.run_x ...``) and returns
    its exit status, like ``hfnn train``: 0 when it finished; for a user error (:data:`USER_ERRORS`)
    one line ``run_x: error: MESSAGE`` on stderr and 2, without a traceback (``HFNN_DEBUG=1`` raises it
    instead); 130 on Ctrl-C. Other exceptions are bugs and propagate with their traceback. Use as
    ``raise SystemExit(run_command(main))``."""
    spec = getattr(main, "__globals__", {}).get("__spec__")
    prog = (spec.name if spec is not None else getattr(main, "__module__", "pipeline")).rsplit(".", 1)[-1]
    try:
        main(argv)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if os.environ.get("HFNN_DEBUG", "") not in ("", "0"):
            raise
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    return 0


def finish_secondary_process(trainer, out_dir) -> bool:
    """Under several processes (accelerate / DDP) only the main one writes the output folder and prints the
    summary; the others say in one line that they are done. Returns True on a process other than the main one."""
    if trainer.is_world_process_zero():
        return False
    args = trainer.args
    print(f"process {args.process_index} of {args.world_size}: finished; process 0 writes {out_dir}")
    return True


def _is_checkpoint_of(checkpoint, folder: Path) -> bool:
    try:
        return Path(checkpoint).resolve().parent == Path(folder).resolve()
    except OSError:
        return False


def prepare_output_dir(path: str | os.PathLike, overwrite: bool = False, resume: bool = False) -> Path:
    """Creates ``path``; refuses a non-empty folder unless overwriting or resuming was asked for."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output_dir {path} exists and is not a folder")
    if isinstance(resume, (str, os.PathLike)):  # a checkpoint elsewhere does not open this folder
        resume = _is_checkpoint_of(resume, path)
    if path.is_dir() and any(p.name != ".hfnn-run.lock" for p in path.iterdir()) and not (overwrite or resume):
        raise FileExistsError(
            f"output_dir {path} already exists and is not empty; choose another output_dir, pass "
            "--overwrite_output_dir true to write into it, or --resume_from_checkpoint to continue a run."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


class TimeBudgetCallback(TrainerCallback, ExportableState):
    """Stops training once ``minutes`` of wall-clock time have passed since training began, and runs the
    learning-rate warm-up of a time-budgeted run in time.

    Warm-up: a step-based warm-up does not scale with a time budget (200 warm-up steps are most of a
    1.5-minute run on a slow machine and a sliver of it on a fast one). In a budgeted run the callback
    takes it over (:meth:`take_over_warmup` moves ``warmup_steps`` from the Trainer's scheduler to here)
    when it is a fraction, or when the learning rate is annealed by time (a warm-up given in steps
    with a step-based schedule stays with the scheduler, so that such a run stays reproducible):
    the learning rate rises linearly with the time spent and reaches its scheduled value once
    ``warmup`` of the expected training time has passed, given as a fraction (``warmup_steps`` < 1,
    transformers' ratio form). The expected time is the budget, or less when ``max_steps`` (or the
    epochs) will end the run first, estimated from the mean step time so far. A warm-up given as a
    number of steps (>= 1) lasts that many steps at the measured speed, but at most
    ``max_step_warmup_fraction`` of the expected time.

    With ``anneal=True`` the learning rate also follows a cosine from its scheduled value down to
    ``final_fraction`` of it over the time budget rather than over ``max_steps``, so that a run
    cut by the clock ends at a low learning rate on any machine (slow or fast). This makes the
    number of steps, and so the result, depend on the machine's speed: for a reproducible run
    use ``max_steps`` with a step-based schedule instead.

    The time spent is saved in each checkpoint (``trainer_state.json``, ``stateful_callbacks``), so
    a resumed run continues the budget, the warm-up and the annealing where the checkpoint left them
    instead of starting them again. ``clock`` (seconds, monotonic) is for tests.
    """

    def __init__(self, minutes: float | None, anneal: bool = False, final_fraction: float = 0.05,
                 warmup: float = 0.0, max_step_warmup_fraction: float = 0.1, clock=None):
        self.seconds = None if minutes is None else 60.0 * minutes
        self.anneal = anneal and self.seconds is not None
        self.final_fraction = final_fraction
        self.warmup = float(warmup or 0.0) if self.seconds is not None else 0.0
        self.max_step_warmup_fraction = max_step_warmup_fraction
        self.clock = clock or time.monotonic
        self.start = None
        self.elapsed_before = 0.0  # seconds spent before a resume
        self.lr_factor = 1.0  # the factor applied to the scheduled learning rate at the last step

    def take_over_warmup(self, training_args) -> None:
        """In a budgeted run, moves the warm-up of ``training_args`` (``warmup_steps``, a count or a fraction)
        from the Trainer's step-based scheduler to this callback, which runs it in time."""
        if self.seconds is None:
            return
        warmup = float(getattr(training_args, "warmup_steps", 0) or 0)
        if warmup >= 1 and not self.anneal:
            return  # a step count with a step-based schedule: the Trainer's scheduler, reproducibly
        if warmup > 0:
            self.warmup = warmup
            training_args.warmup_steps = 0
            kind = f"{warmup:g} of the training time" if warmup < 1 else f"{warmup:g} steps at the measured speed"
            _logger.info("time budget: the learning-rate warm-up runs in time (%s)", kind)

    def elapsed(self) -> float:
        return self.elapsed_before + (0.0 if self.start is None else self.clock() - self.start)

    def elapsed_fraction(self) -> float:
        return min(1.0, self.elapsed() / self.seconds)

    def expected_seconds(self, state=None) -> float:
        """The wall-clock time training is expected to take: the budget, or less when the step limit comes
        first (estimated from the mean step time so far)."""
        elapsed = self.elapsed()
        step, max_steps = getattr(state, "global_step", 0) or 0, getattr(state, "max_steps", 0) or 0
        if step > 0 and max_steps > 0 and elapsed > 0:
            by_steps = elapsed + (max_steps - step) * elapsed / step
            return min(self.seconds, max(by_steps, elapsed))
        return self.seconds

    def warmup_seconds(self, state=None) -> float:
        """How long the warm-up lasts, in seconds of training time (0: none)."""
        if self.seconds is None or self.warmup <= 0:
            return 0.0
        expected = self.expected_seconds(state)
        if self.warmup < 1:
            return self.warmup * expected
        step = getattr(state, "global_step", 0) or 0
        if step == 0:
            return self.max_step_warmup_fraction * expected  # no step time measured yet
        return min(self.warmup * self.elapsed() / step, self.max_step_warmup_fraction * expected)

    def factor(self, state=None) -> float:
        """The factor on the scheduled learning rate now: warm-up times the cosine anneal."""
        factor = 1.0
        warm = self.warmup_seconds(state)
        if warm > 0:
            factor = min(1.0, self.elapsed() / warm)
        if self.anneal:
            factor *= self.final_fraction + (1 - self.final_fraction) * 0.5 * (1 + math.cos(math.pi * self.elapsed_fraction()))
        return factor

    def state(self) -> dict:
        return {
            "args": {"minutes": None if self.seconds is None else self.seconds / 60.0, "anneal": self.anneal,
                     "final_fraction": self.final_fraction, "warmup": self.warmup,
                     "max_step_warmup_fraction": self.max_step_warmup_fraction},
            "attributes": {"elapsed_before": self.elapsed()},
        }

    def on_train_begin(self, args, state, control, **kwargs):
        saved = state.stateful_callbacks.get(type(self).__name__) if state.global_step > 0 else None
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        self.elapsed_before = float(saved.get("attributes", {}).get("elapsed_before", 0.0)) if isinstance(saved, dict) else 0.0
        self.start = self.clock()

    def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        if not (self.anneal or self.warmup > 0) or optimizer is None or lr_scheduler is None:
            return
        self.lr_factor = self.factor(state)
        for group, scheduled in zip(optimizer.param_groups, lr_scheduler.get_last_lr()):
            group["lr"] = scheduled * self.lr_factor

    def on_log(self, args, state, control, logs=None, **kwargs):
        # the Trainer logs the scheduler's value; the optimizer ran at this factor of it
        if logs is not None and isinstance(logs.get("learning_rate"), (int, float)) and (self.anneal or self.warmup > 0):
            logs["learning_rate"] = logs["learning_rate"] * self.lr_factor
            if state.log_history and state.log_history[-1].get("learning_rate") is not None \
                    and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1]["learning_rate"] = logs["learning_rate"]

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds is not None and self.elapsed() >= self.seconds:
            control.should_training_stop = True
            control.should_evaluate = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        # the run's settings as given (model card, results), not the scheduler's
        if self.seconds is not None and self.warmup > 0 and not getattr(args, "warmup_steps", 0):
            args.warmup_steps = self.warmup


class BudgetProgressCallback(TrainerCallback):
    """The training progress bar of a time-budgeted run: the share of the budget spent, the steps done and the
    time left (to the budget, or to ``max_steps`` if that comes first), instead of a bar that counts to a
    ``max_steps`` the clock will never let the run reach. It replaces transformers' ``ProgressCallback``
    (:func:`use_budget_progress`); evaluation bars and logs are shown as that one shows them."""

    def __init__(self, minutes: float, clock=None):
        from transformers.trainer_callback import ProgressCallback

        self.seconds = 60.0 * minutes
        self.clock = clock or time.monotonic
        self._inner = ProgressCallback()  # evaluation bars and log lines
        self.bar = None
        self.start = None
        self.elapsed_before = 0.0

    def _elapsed(self) -> float:
        return self.elapsed_before + (0.0 if self.start is None else self.clock() - self.start)

    def on_train_begin(self, args, state, control, **kwargs):
        saved = state.stateful_callbacks.get(TimeBudgetCallback.__name__) if state.global_step > 0 else None
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        self.elapsed_before = float(saved.get("attributes", {}).get("elapsed_before", 0.0)) if isinstance(saved, dict) else 0.0
        self.start = self.clock()
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            minutes = self.seconds / 60.0
            self.bar = tqdm(total=100.0, dynamic_ncols=True, unit="%",
                            bar_format="{l_bar}{bar}| {n:.0f}% of " + f"{minutes:g} min" + " {postfix}")
            self._inner.training_bar = self.bar
            self._update(state)

    def _update(self, state):
        if self.bar is None:
            return
        elapsed = self._elapsed()
        done = min(100.0, 100.0 * elapsed / self.seconds)
        left = max(0.0, self.seconds - elapsed)
        step, max_steps = state.global_step, state.max_steps or 0
        if step > 0 and max_steps > 0 and elapsed > 0:
            left = min(left, (max_steps - step) * elapsed / step)
        self.bar.n = done
        self.bar.set_postfix_str(f"step {step}, {_clock_time(elapsed)} elapsed, ~{_clock_time(left)} left",
                                 refresh=False)
        self.bar.refresh()

    def on_step_end(self, args, state, control, **kwargs):
        self._update(state)

    def on_prediction_step(self, args, state, control, **kwargs):
        self._inner.on_prediction_step(args, state, control, **kwargs)

    def on_evaluate(self, args, state, control, **kwargs):
        self._inner.on_evaluate(args, state, control, **kwargs)

    def on_predict(self, args, state, control, **kwargs):
        self._inner.on_predict(args, state, control, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._inner.on_log(args, state, control, logs=logs, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self._update(state)
            self.bar.close()
            self.bar = None
            self._inner.training_bar = None


def _clock_time(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def budget_callbacks(run_args, training_args) -> list:
    """The time-budget callbacks of a pipeline run: :class:`TimeBudgetCallback` (which takes the warm-up over in
    a budgeted run) and, for a budgeted run with progress bars, :class:`BudgetProgressCallback`. Call before the
    Trainer is built (it reads ``training_args``), then :func:`use_budget_progress` on the Trainer."""
    budget = TimeBudgetCallback(run_args.max_train_minutes, anneal=getattr(run_args, "anneal_by_time", False))
    budget.take_over_warmup(training_args)
    callbacks = [budget]
    if run_args.max_train_minutes is not None and not training_args.disable_tqdm:
        callbacks.append(BudgetProgressCallback(run_args.max_train_minutes))
    return callbacks


def use_budget_progress(trainer) -> None:
    """Removes transformers' ``ProgressCallback`` from ``trainer`` when a :class:`BudgetProgressCallback` shows
    the progress instead."""
    from transformers.trainer_callback import ProgressCallback

    if any(isinstance(cb, BudgetProgressCallback) for cb in trainer.callback_handler.callbacks):
        trainer.remove_callback(ProgressCallback)


class NonFiniteTrainingError(ValueError):
    """Training produced a NaN or infinite loss, gradient or weight: the run stops and nothing is saved."""


def non_finite_parameters(model) -> list[str]:
    """Names of the parameters (and floating-point buffers) of ``model`` holding a NaN or an infinity."""
    import torch

    tensors = [(n, t) for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_floating_point()]
    if not tensors:
        return []
    with torch.no_grad():  # a NaN or an infinity anywhere makes its tensor's (float64) sum non-finite
        finite = torch.isfinite(torch.stack([t.sum(dtype=torch.float64) for _, t in tensors])).tolist()
    return [name for (name, _), ok in zip(tensors, finite) if not ok]


def check_finite_model(model) -> None:
    """Raises :class:`NonFiniteTrainingError` naming the parameters of ``model`` that are not finite."""
    bad = non_finite_parameters(model)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteTrainingError(
            f"the trained model has non-finite weights ({shown}); it is not saved. Training diverged: lower "
            "--learning_rate, keep --max_grad_norm above 0, or check the data"
        )


class NonFiniteGuardCallback(TrainerCallback):
    """Stops training at the first NaN or infinite loss (as logged), gradient (before the optimizer step)
    or weight (after it), without saving a checkpoint of that step. ``problem`` says what happened;
    the pipeline then raises :class:`NonFiniteTrainingError` instead of saving the model."""

    def __init__(self):
        self.problem: str | None = None

    def _trip(self, control, problem: str):
        if self.problem is None:
            self.problem = problem
        control.should_training_stop = True
        control.should_save = False
        control.should_evaluate = False
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                return self._trip(control, f"the training {key.replace('_', ' ')} is {value} at step {state.global_step}")
        return control

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is None or getattr(args, "fp16", False):  # fp16 loss scaling skips steps with inf gradients
            return control
        import torch

        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if grads and not bool(torch.isfinite(torch.stack([g.detach().sum(dtype=torch.float64) for g in grads])).all()):
            return self._trip(control, f"a gradient is NaN or infinite at step {state.global_step + 1}")
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            bad = non_finite_parameters(model)
            if bad:
                return self._trip(control, f"weights became NaN or infinite at step {state.global_step} ({bad[0]}...)")
        if self.problem is not None:
            return self._trip(control, self.problem)
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.problem is not None:
            return self._trip(control, self.problem)
        return control

    def check(self) -> None:
        """Raises :class:`NonFiniteTrainingError` if training was stopped for a non-finite value."""
        if self.problem is not None:
            raise NonFiniteTrainingError(
                f"training stopped: {self.problem}; the model is not saved. Lower --learning_rate, keep "
                "--max_grad_norm above 0 (gradient clipping), or check the data"
            )


def check_run_options(training_args, run_args=None, data_args=None) -> None:
    """Options that the Trainer would take without a word and then fail on (or loop on) late: ValueError
    naming the option."""
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = getattr(training_args, name, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"--{name} must be a whole number >= 1, got {value!r}")
    for name in ("learning_rate",):
        value = getattr(training_args, name, None)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"--{name} must be a finite number >= 0, got {value!r}")
    max_steps, epochs = getattr(training_args, "max_steps", -1), getattr(training_args, "num_train_epochs", 1)
    if (max_steps is None or max_steps <= 0) and epochs is not None and not (math.isfinite(epochs) and epochs > 0):
        raise ValueError(f"--num_train_epochs must be > 0 (or give --max_steps), got {epochs!r}: nothing would be trained")
    if run_args is not None and run_args.max_train_minutes is not None:
        minutes = run_args.max_train_minutes
        if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
            raise ValueError(f"--max_train_minutes must be a number of minutes > 0 (leave it unset for no limit), got {minutes!r}")
    if data_args is not None:
        for name in ("max_train_samples", "max_eval_samples", "max_test_samples"):
            value = getattr(data_args, name, None)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"--{name} must be a whole number >= 1 (leave it unset to use every example), got {value!r}"
                )


def check_resume_architecture(checkpoint, model) -> None:
    """A ``--resume_from_checkpoint`` folder must hold a model of the same type and shape as the one built
    for this run; ValueError naming the checkpoint and the first difference otherwise."""
    if not checkpoint:
        return
    path = Path(checkpoint) / "config.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # the checkpoint checks say what is wrong with an unreadable folder
    ours = model.config.to_dict()
    saved_classes = saved.get("architectures") or []
    if saved_classes and type(model).__name__ not in saved_classes:
        raise ValueError(
            f"--resume_from_checkpoint {checkpoint}: it holds a {', '.join(saved_classes)}, this run trains a "
            f"{type(model).__name__}; resume with the pipeline and recipe of that run"
        )
    fields = ["model_type", "vocab_size", "source_vocab_size", "hidden_size", "embedding_size",
              "num_hidden_layers", "num_encoder_layers", "num_decoder_layers", "rnn_type", "attention",
              "num_labels", "intermediate_size", "num_attention_heads", "window_sizes", "num_filters",
              "bidirectional_encoder", "bidirectional"]
    for field in fields:
        if saved.get(field) is not None and ours.get(field) is not None and saved[field] != ours[field]:
            raise ValueError(
                f"--resume_from_checkpoint {checkpoint}: it holds another model ({field} {saved[field]!r}, this run "
                f"builds {ours[field]!r}); resume with the recipe and config_overrides of that run"
            )
    if "num_labels" not in saved and "id2label" in saved and "id2label" in ours and len(saved["id2label"]) != len(ours["id2label"]):
        raise ValueError(
            f"--resume_from_checkpoint {checkpoint}: it has {len(saved['id2label'])} labels, this run "
            f"{len(ours['id2label'])}"
        )


def save_model(trainer, out_dir: str | os.PathLike) -> None:
    """Saves the trained model into ``out_dir`` on the main process with ``save_pretrained``:
    safetensors weights, config and model code, and no pickled ``training_args.bin`` (which
    ``Trainer.save_model`` would add), so the folder is exactly what a Hub upload commits.
    A model with a NaN or infinite weight is never saved (:class:`NonFiniteTrainingError`)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    check_finite_model(model)
    if trainer.is_world_process_zero():
        model.save_pretrained(str(out_dir))


def cap_model_max_length(tokenizer, config) -> None:
    """Lowers ``tokenizer.model_max_length`` to the model's ``max_position_embeddings`` when the config has one
    and the tokenizer allows longer inputs (a tokenizer's default is a huge number), so that truncation to the
    tokenizer's length never gives the model more positions than it has."""
    limit = getattr(config, "max_position_embeddings", None)
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        current = getattr(tokenizer, "model_max_length", None)
        if current is None or current > limit:
            tokenizer.model_max_length = limit
            if hasattr(tokenizer, "init_kwargs"):
                tokenizer.init_kwargs["model_max_length"] = limit


def save_trained(trainer, out_dir: str | os.PathLike, tokenizers: dict) -> None:
    """The pipelines' save step: the model (with the entry that lets ``pipeline(model=folder,
    trust_remote_code=True)`` infer its task), its tokenizers (``{subfolder: tokenizer}``, ``""`` for the
    folder itself) with ``model_max_length`` capped to the model's positions, and the files that make the
    folder a Hugging Face Space (``app.py``, ``requirements.txt``, ``hfnn_demo.py``)."""
    from hfnn.demo import write_space_files
    from hfnn.pipeline_seq2seq import mark_for_pipeline

    model = trainer.accelerator.unwrap_model(trainer.model)
    is_main = trainer.is_world_process_zero()
    mark_for_pipeline(model, out_dir if is_main else None)
    save_model(trainer, out_dir)
    if not is_main:
        return
    for subfolder, tokenizer in tokenizers.items():
        cap_model_max_length(tokenizer, model.config)
        tokenizer.save_pretrained(str(Path(out_dir) / subfolder) if subfolder else str(out_dir))
    write_space_files(out_dir)


# ---------------------------------------------------------------------------------------------
# The run skeleton every pipeline shares: prepare the output folder -> (task: data, tokenizer, model)
# -> train -> save -> (task: evaluate) -> report
# ---------------------------------------------------------------------------------------------


def run_pipeline(argv, dataclass_types, body, check=None, extra_inputs=None):
    """Parses ``argv`` into (model, data, run, training) arguments, checks them (the common options, then
    ``check(model_args, data_args)``), claims the output folder (refusing one that holds an input: the
    data files, corpus and ``extra_inputs(model_args)``), seeds, and calls ``body(folder, model_args,
    data_args, run_args, training_args)`` with the Trainer's ``output_dir`` set to the folder's work dir.
    Returns what ``body`` returns (the results dict)."""
    model_args, data_args, run_args, training_args = parse_args(dataclass_types, argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    check_run_options(training_args, run_args, data_args)
    if check is not None:
        check(model_args, data_args)
    from hfnn.pipelines.output_dir import claim_output_dir
    from transformers import set_seed

    inputs = [getattr(data_args, name, None) for name in ("train_file", "validation_file", "test_file", "corpus")]
    folder = claim_output_dir(
        training_args.output_dir, run_args.overwrite_output_dir, training_args.resume_from_checkpoint,
        inputs=inputs + list(extra_inputs(model_args) if extra_inputs else []),
    )
    with folder:
        training_args.output_dir = str(folder.work_dir)
        set_seed(training_args.seed)
        return body(folder, model_args, data_args, run_args, training_args)


def check_eval_split(eval_ds, training_args, what: str = "is empty",
                     advice: str = "give a --validation_file, more data") -> None:
    """An evaluation strategy needs validation examples: ValueError naming the option otherwise."""
    strategy = getattr(training_args.eval_strategy, "value", training_args.eval_strategy)
    if (eval_ds is None or not len(eval_ds)) and (strategy != "no" or training_args.eval_on_start):
        raise ValueError(
            f"The validation split {what}, but --eval_strategy is {strategy}: {advice}, or set --eval_strategy no"
        )


def config_class(architecture: str, task: str):
    """The configuration class of ``architecture`` (a name or alias in :mod:`hfnn.registry`) for a new model of
    ``task``; ValueError naming the architectures for an unknown name, or the missing head."""
    import importlib

    from hfnn import registry

    entry = registry.architecture_for(architecture, task)
    return getattr(importlib.import_module(f"hfnn.{entry.config_module}"), entry.config_class)


def load_split_corpus(data_args, seed: int, **options):
    """The run's data through :func:`hfnn.corpora.load_corpus`: the local ``train_file`` (with the
    ``validation_file`` and ``test_file`` that are given; the missing splits are cut from the training data),
    else the ``corpus``. ``options`` go to ``load_corpus`` (columns, empty-cell handling)."""
    from hfnn.corpora import load_corpus

    if data_args.train_file:
        files = {"train": data_args.train_file}
        for split in ("validation", "test"):
            path = getattr(data_args, f"{split}_file", None)
            if path:
                files[split] = path
        return load_corpus(data_files=files, seed=seed, **options)
    if data_args.corpus:
        return load_corpus(data_args.corpus, seed=seed, **options)
    raise ValueError("Give a corpus (built-in name, file or Hub dataset) or a train_file.")


def subset(ds, n: int | None, seed: int):
    """``n`` examples of ``ds`` drawn at random (with ``seed``), or all of them when ``n`` is None or too many."""
    if n is None or n >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(n))


class PipelineCallbacks:
    """The callbacks of every pipeline's Trainer: the time budget (and its progress bar), checkpoint commit
    markers, the non-finite guard and the CPU thread tuner. Build it before the Trainer (the budget reads
    ``training_args``), pass ``.callbacks``, then :meth:`train`."""

    def __init__(self, run_args, training_args):
        from hfnn.cpu_threads import ThreadTuner

        self.guard = NonFiniteGuardCallback()
        self.tuner = ThreadTuner()
        self.callbacks = [*budget_callbacks(run_args, training_args), CheckpointCommitCallback(), self.guard,
                          self.tuner]

    def train(self, trainer, folder, tokenizers: dict) -> dict:
        """Trains, stops on a non-finite value, then saves (:func:`save_trained`) before anything else can fail
        (evaluation, plots, samples). Returns the run facts every pipeline reports."""
        use_budget_progress(trainer)
        start = time.monotonic()
        train_result = trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
        seconds = time.monotonic() - start
        self.guard.check()
        folder.save(lambda path: save_trained(trainer, path, tokenizers))
        log_thread_choice(self.tuner)
        model = trainer.accelerator.unwrap_model(trainer.model)
        return {
            "architecture": model.config.model_type,
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_seconds": round(seconds, 1),
            "train_steps": trainer.state.global_step,
            "train_loss": train_result.training_loss,
            "cpu_threads": self.tuner.history,
        }


def split_metrics(metrics: dict) -> dict:
    """A Trainer's evaluation metrics without the timing entries."""
    return {k: v for k, v in metrics.items() if not k.endswith(("_runtime", "_per_second"))}


def report(out_dir, results: dict, run_args, training_args, task: str, dataset=None) -> None:
    """Writes results.json and, unless switched off, the model card."""
    write_results(out_dir, results)
    if run_args.write_model_card:
        from hfnn.cards import write_model_card

        write_model_card(out_dir, task=task, results=results, training_args=training_args, dataset=dataset)


def print_summary(title: str, results: dict, skip=()) -> None:
    """The run's headline and its validation and test metrics, on the console."""
    print(f"\n=== {title}: {results['parameters'] / 1e6:.2f}M parameters, {results['train_steps']} steps in "
          f"{results['train_seconds'] / 60:.1f} min ===")
    for split in ("validation", "test"):
        shown = {k[len(split) + 1:]: v for k, v in results.items()
                 if k.startswith(split + "_") and isinstance(v, float) and not k.endswith(tuple(skip))}
        if shown:
            print(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))


def log_thread_choice(tuner) -> None:
    """Logs the CPU thread count a :class:`hfnn.cpu_threads.ThreadTuner` settled on (or that it was not tuned)."""
    if tuner.history:
        last = tuner.history[-1]
        _logger.info("cpu threads: trained with %d (%d measurement%s)", last["threads"], len(tuner.history),
                     "" if len(tuner.history) == 1 else "s")
    else:
        _logger.info("cpu threads: not tuned (the thread count was fixed, training ran on an accelerator or "
                     "was too short to measure)")


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_dir, name: str) -> Path:
    """Saves ``fig`` as ``out_dir/name`` (110 dpi) and closes it; returns the path."""
    fig.tight_layout()
    path = Path(out_dir) / name
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def save_loss_curve(log_history: list[dict], out_dir: str | os.PathLike, title: str = "training") -> Path | None:
    """Plots training and evaluation loss against the step; returns the PNG path (None if nothing was logged)."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    if not train and not evals:
        return None
    fig, ax = pyplot().subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), marker="o", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out_dir, "loss_curve.png")


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_results(out_dir: str | os.PathLike, results: dict) -> Path:
    """Writes ``results.json`` (metrics and run facts) into ``out_dir``."""
    path = Path(out_dir) / "results.json"
    path.write_text(json.dumps(_json_safe(results), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


# Checkpoint integrity lives in its own module; its names stay importable from here. The commit callback
# stays here: it calls write_checkpoint_marker through this module's namespace.
from hfnn.pipelines.checkpoints import (  # noqa: E402
    CHECKPOINT_MARKER,
    checkpoint_problem,
    last_valid_checkpoint,
    resolve_resume_checkpoint,
    write_checkpoint_marker,
)


class CheckpointCommitCallback(TrainerCallback):
    """Writes the commit marker of each checkpoint after the Trainer has saved it (see
    :func:`last_valid_checkpoint`). Every process waits for the others first, since each one writes
    its own RNG state into the folder."""

    def on_save(self, args, state, control, **kwargs):
        from accelerate import PartialState

        PartialState().wait_for_everyone()
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if args.should_save and folder.is_dir():
            write_checkpoint_marker(folder, state.global_step)
        return control


def check_tokenizer(model_or_config, tokenizer, vocab_size_field: str = "vocab_size") -> None:
    """Raises ValueError when ``tokenizer`` cannot be the one ``model_or_config`` was trained with: it
    has more tokens than the model's vocabulary (its ids would fall outside the embedding table), or
    its pad/bos/eos ids differ from the config's. A tokenizer of the same size with other tokens is
    beyond any check: keep the tokenizer saved beside the model (save_pretrained does)."""
    config = getattr(model_or_config, "config", model_or_config)
    vocab_size = getattr(config, vocab_size_field)
    if len(tokenizer) > vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's {vocab_size_field} is {vocab_size}: they do not "
            "belong together (ids >= vocab_size are outside the model's embedding table)"
        )
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        ours, theirs = getattr(config, name, None), getattr(tokenizer, name, None)
        if ours is not None and theirs is not None and not isinstance(ours, list) and ours != theirs:
            raise ValueError(
                f"The tokenizer's {name} is {theirs} but the model config's is {ours}: they do not belong together"
            )


def check_config_overrides(config, overrides: dict) -> None:
    """Raises ValueError naming the keys of ``overrides`` that ``config`` does not know.

    ``PreTrainedConfig`` keeps any unknown keyword as an attribute, so a misspelt override
    (``hiden_size``) would otherwise leave the field it meant at its default without a word.
    """
    import difflib
    import inspect

    cls = type(config)
    known = set(getattr(cls, "attribute_map", {}))
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            known |= {name for name, p in inspect.signature(init).parameters.items() if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD}
        if dataclasses.is_dataclass(klass):
            known |= {f.name for f in dataclasses.fields(klass)}
        known |= {name for name, value in vars(klass).items() if isinstance(value, property)}
    # keys the config consumed as aliases (e.g. num_encoder_layers) are not left on the instance
    unknown = sorted(k for k in overrides if k not in known and k in vars(config))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(known - {"self"}), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"config_overrides: {cls.__name__} has no field {', '.join(hints)}")
