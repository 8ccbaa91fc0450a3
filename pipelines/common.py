"""Pieces shared by the training pipelines: recipe parsing, output folders, time budgets, plots."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

from transformers import HfArgumentParser, TrainerCallback

__all__ = [
    "RECIPES_DIR",
    "RunArguments",
    "TimeBudgetCallback",
    "list_recipes",
    "load_recipe",
    "parse_args",
    "prepare_output_dir",
    "resolve_recipe",
    "save_loss_curve",
    "write_results",
]

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
        default=False, metadata={"help": "Allow writing into a non-empty output_dir (its files may be replaced)."}
    )
    max_train_minutes: float | None = dataclasses.field(
        default=None, metadata={"help": "Stop training after this many minutes of wall-clock time."}
    )
    num_samples: int = dataclasses.field(default=3, metadata={"help": "Generations or predictions to print at the end."})
    write_model_card: bool = dataclasses.field(default=True, metadata={"help": "Write README.md (model card)."})


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
    override them. Unknown recipe keys are an error that names them.
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
    return parser.parse_args_into_dataclasses(args=argv)


def prepare_output_dir(path: str | os.PathLike, overwrite: bool = False, resume: bool = False) -> Path:
    """Creates ``path``; refuses a non-empty folder unless overwriting or resuming was asked for."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output_dir {path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise FileExistsError(
            f"output_dir {path} already exists and is not empty; choose another output_dir, pass "
            "--overwrite_output_dir true to write into it, or --resume_from_checkpoint to continue a run."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


class TimeBudgetCallback(TrainerCallback):
    """Stops training once ``minutes`` of wall-clock time have passed since training began."""

    def __init__(self, minutes: float | None):
        self.seconds = None if minutes is None else 60.0 * minutes
        self.start = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds is not None and time.monotonic() - self.start >= self.seconds:
            control.should_training_stop = True
            control.should_evaluate = True
        return control


def save_loss_curve(log_history: list[dict], out_dir: str | os.PathLike, title: str = "training") -> Path | None:
    """Plots training and evaluation loss against the step; returns the PNG path (None if nothing was logged)."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), marker="o", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(out_dir) / "loss_curve.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
