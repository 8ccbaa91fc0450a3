"""The shipped training recipes, found by architecture, task and corpus, and the training module of a task."""

from __future__ import annotations

import importlib

from hfnn import registry
from hfnn.console import UserError

__all__ = ["find_recipe", "pipeline_module", "shipped_recipes", "task_name"]


def shipped_recipes() -> list[tuple[str, dict]]:
    """(name, values) of every shipped recipe; a recipe that cannot be read has empty values."""
    from hfnn.pipelines.common import list_recipes, load_recipe

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


def find_recipe(architecture: str, task: str, corpus: str | None = None, names: tuple[str, ...] | None = None) -> str | None:
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
            raise UserError(f"the {task} pipeline ({module_name}) is not available in this installation") from None
        raise
