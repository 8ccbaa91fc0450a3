"""Training recipes: the shipped ones (found by name, or by architecture, task and corpus), reading a recipe,
parsing ``[recipe] [--name value ...]`` into argument dataclasses (the command line merged onto the recipe),
and the training module of a task."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path

from hfnn.models import registry
from hfnn.models.errors import USER_ERRORS, HfnnError, MissingPackageError, OptionError, first_line, path_errors

__all__ = ["RECIPES_DIR", "USER_ERRORS", "find_recipe", "list_recipes", "load_recipe", "merge_mapping", "parse_args",
           "parse_config_overrides", "pipeline_module", "resolve_recipe", "shipped_recipes", "task_name"]

_logger = logging.getLogger(__name__)

# The recipes ship as package data of hfnn.pipelines (None in an installation without the pipelines).
_PIPELINES = importlib.util.find_spec("hfnn.pipelines")
RECIPES_DIR = Path(next(iter(_PIPELINES.submodule_search_locations))) / "recipes" if _PIPELINES else None
_RECIPE_SUFFIXES = (".yaml", ".yml", ".json")

def list_recipes() -> list[str]:
    """Names of the recipes shipped with hfnn (usable wherever a recipe path is expected)."""
    found = RECIPES_DIR.iterdir() if RECIPES_DIR and RECIPES_DIR.is_dir() else ()
    return sorted(p.stem for p in found if p.suffix in _RECIPE_SUFFIXES)


def resolve_recipe(name_or_path: str) -> Path:
    """A recipe file path, or the name of a shipped recipe (``rnn_shakespeare_char``)."""
    candidates = [Path(name_or_path)]
    if RECIPES_DIR:
        candidates += [RECIPES_DIR / f"{name_or_path}{suffix}" for suffix in ("",) + _RECIPE_SUFFIXES]
    for path in candidates:
        try:
            found = path.is_file()
        except OSError as err:  # a folder on the way that this process may not enter
            raise OptionError(f"Recipe {path} cannot be read: {err.strerror or err}") from None
        if found:
            return path
    raise FileNotFoundError(
        f"Recipe {name_or_path!r} is neither a file nor a shipped recipe. Shipped recipes: {', '.join(list_recipes())}"
    )


def load_recipe(name_or_path: str) -> dict:
    """Reads a JSON or YAML recipe into a dict of argument values."""
    path = resolve_recipe(name_or_path)
    with path_errors("recipe"):
        text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            recipe = json.loads(text)
        else:
            import yaml

            recipe = yaml.safe_load(text)
    except Exception as err:  # both parsers raise their own error types
        raise OptionError(f"Recipe {path} is not valid {path.suffix[1:].upper()}: {err}") from None
    if not isinstance(recipe, (dict, type(None))):
        raise OptionError(f"Recipe {path} must be a mapping of argument names to values, got {type(recipe).__name__}")
    return recipe or {}


def _json_mapping(value, name: str, purpose: str = "") -> dict:
    """``value`` (a JSON string) parsed into a mapping; a ValueError naming ``name`` otherwise."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise OptionError(f"{name} must be a JSON mapping, got {value!r}: {err}") from None
    if not isinstance(parsed, dict):
        raise OptionError(f"{name} must be a JSON mapping{purpose}, got {value!r}")
    return parsed


def parse_config_overrides(value) -> dict:
    """``config_overrides`` as a dict: None -> {}, a mapping (from a recipe) copied, a string (from the command
    line) parsed as JSON, which must give a mapping. The keys are checked once the config is built."""
    if value is None or isinstance(value, dict):
        return dict(value or {})
    if not isinstance(value, str):
        raise OptionError(f"config_overrides must be a mapping of config fields, got {type(value).__name__} {value!r}")
    return _json_mapping(value, "config_overrides")


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


def parse_args(dataclass_types, argv=None, defaults=None, overrides=None):
    """Parses ``[recipe] [--name value ...]`` into one instance per dataclass.

    ``defaults`` (a mapping: a pipeline's own defaults, where the library-wide ones do not suit it) replace the
    dataclasses' defaults; the recipe (a JSON/YAML file or a shipped recipe's name) replaces those, ``overrides``
    (a mapping of field names to values, from Python) replace the recipe's values, and command-line flags
    override them all; a mapping override or flag (``--config_overrides '{...}'``) merges key by key into
    the recipe's mapping (:func:`merge_mapping`), unless ``--architecture`` names another architecture than
    the recipe's. Unknown recipe keys are an error that names them, and so is a ``model_name_or_path`` /
    ``tokenizer_name`` meant as a local folder that is not one.
    """
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types)
    if defaults:
        parser.set_defaults(**defaults)
    recipe = {}
    if argv and not argv[0].startswith("-"):
        recipe_name = argv.pop(0)
        recipe = load_recipe(recipe_name)
        unknown = sorted(set(recipe) - {f.name for cls in dataclass_types for f in dataclasses.fields(cls)})
        if unknown:
            raise OptionError(f"Recipe {recipe_name} has unknown keys: {', '.join(unknown)}")
        for action in parser._actions:  # flags required on the command line are optional once the recipe sets them
            action.required = action.required and action.dest not in recipe
        parser.set_defaults(**recipe)
    if overrides:
        unknown = sorted(set(overrides) - {f.name for cls in dataclass_types for f in dataclasses.fields(cls)})
        if unknown:
            raise OptionError(f"Unknown options: {', '.join(unknown)}")
        for action in parser._actions:
            action.required = action.required and action.dest not in overrides
        parser.set_defaults(**overrides)
    try:  # the argument classes (TrainingArguments too) check the user's values as they are built
        *parsed, unused = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    except ValueError as err:
        if isinstance(err, HfnnError):
            raise
        raise OptionError(first_line(err)) from err
    if unused:
        raise OptionError(f"not an option of this pipeline: {' '.join(unused)} (see --help)")
    for args in parsed:
        _merge_mapping_fields(args, recipe)
        for field in ("model_name_or_path", "tokenizer_name"):
            _check_model_path(field, getattr(args, field, None))
    return parsed


def _merge_mapping_fields(args, recipe: dict) -> None:
    for key, base in recipe.items():
        if isinstance(base, str) and key == "config_overrides":  # a recipe may give it as a JSON string too
            try:
                base = json.loads(base)
            except json.JSONDecodeError:
                continue
        if not isinstance(base, dict) or not hasattr(args, key):
            continue
        value = getattr(args, key)
        if key == "config_overrides" and recipe.get("architecture", args.architecture) != args.architecture:
            # the recipe's config fields are for its architecture; another one starts from its own defaults
            _logger.warning("--architecture %s: the recipe's config_overrides (for %s) are not used",
                            args.architecture, recipe["architecture"])
            setattr(args, key, None if value is base or value == recipe[key] else value)
        elif isinstance(value, str):
            setattr(args, key, merge_mapping(base, _json_mapping(value, f"--{key}",
                                                                 f" (it updates the recipe's {key})")))
        elif isinstance(value, dict) and value is not base:
            setattr(args, key, merge_mapping(base, value))


def _check_model_path(field: str, value) -> None:
    """A model/tokenizer argument meant as a local folder (absolute, ./ or ~ prefixed, more than one '/', or in
    a folder that exists here) must exist: otherwise transformers takes it for a Hub id and, offline, retries
    for half a minute before an error about the network."""
    if not isinstance(value, str) or not value or os.path.isdir(os.path.expanduser(value)):
        return
    path = Path(os.path.expanduser(value))
    if (value.startswith(("/", "./", "../", "~", ".\\")) or value.count("/") > 1 or "\\" in value
            or (len(path.parts) > 1 and path.parent.is_dir())):
        what = "a file, not a folder" if path.exists() else "no such folder"
        raise FileNotFoundError(f"--{field} {value}: {what} (a saved model folder or a Hub id is expected)")


def shipped_recipes() -> list[tuple[str, dict]]:
    """(name, values) of every shipped recipe; a recipe that cannot be read has empty values."""
    out = []
    for name in list_recipes():
        try:
            out.append((name, load_recipe(name)))
        except ValueError:
            out.append((name, {}))
    return out


def task_name(value) -> str | None:
    """The registry's name of a task or alias, or None."""
    try:
        return registry.task(value).name
    except ValueError:
        return None


def find_recipe(architecture: str, task: str, corpus: str | None = None,
                names: tuple[str, ...] | None = None) -> str | None:
    """The shipped recipe for ``architecture`` + ``task`` (preferring ``corpus``), or None."""
    task, names = task_name(task) or task, names or (architecture,)
    matches = sorted((n, r) for n, r in shipped_recipes()
                     if task_name(r.get("task")) == task and str(r.get("architecture", "")) in names)
    return next((n for n, r in matches if corpus and r.get("corpus") == corpus), matches[0][0] if matches else None)


def pipeline_module(task: str):
    """The training module of ``task`` (its ``main(argv)`` parses the recipe and every override)."""
    module_name = registry.task(task).training_module
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name in (module_name, "hfnn.pipelines"):
            raise MissingPackageError(f"the {task} pipeline ({module_name}) is not available in this "
                                      "installation") from None
        raise
