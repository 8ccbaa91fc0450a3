"""Weight averaging over the last part of training (``--average_weights``), carried through checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import TrainerCallback

from hfnn.models.errors import FileError, OptionError
from hfnn.training.budget import TimeBudgetCallback

__all__ = ["AVERAGE_FILE", "WeightAveragingCallback"]

_logger = logging.getLogger(__name__)


# the running mean of the weights in a checkpoint of a run with ``--average_weights``
AVERAGE_FILE = "weight_average.safetensors"


class WeightAveragingCallback(TrainerCallback):
    """Averages the weights over the last ``fraction`` of training (the uniform running mean of every step's
    weights there, ``torch.optim.swa_utils.AveragedModel``), and puts that average into the model when training
    ends: checkpoint averaging without the checkpoints. The tail is measured in time when ``budget`` holds a
    time budget (to the end it expects: the budget, or ``max_steps`` if that comes first), else in steps
    against ``max_steps``. The weights the last step left are kept in :attr:`final_weights` so a run can score
    them beside the average. Each checkpoint saved during the tail holds the running mean
    (:data:`AVERAGE_FILE`), so a run resumed from it goes on with the same average."""

    def __init__(self, fraction: float, budget: TimeBudgetCallback | None = None):
        if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
            raise OptionError(f"--average_weights must be a fraction of training in (0, 1] (0: off), got {fraction!r}")
        self.fraction, self.budget = float(fraction), budget
        self.averaged = None  # the AveragedModel, from the first step of the tail to the end of training
        self.first_step: int | None = None
        self.steps = 0  # how many steps' weights the average holds
        self.final_weights: dict | None = None

    def progress(self, state) -> float:
        """The share of training done: of the expected time in a budgeted run, else of ``max_steps``."""
        if self.budget is not None and self.budget.seconds is not None:
            return self.budget.elapsed() / max(self.budget.expected_seconds(state), 1e-9)
        return state.global_step / state.max_steps if state.max_steps else 0.0

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        checkpoint = getattr(args, "resume_from_checkpoint", None) if state.global_step > 0 else None
        path = Path(checkpoint) / AVERAGE_FILE if checkpoint else None
        if model is None or path is None or not path.is_file():
            return control
        import torch
        from safetensors import safe_open
        from torch.optim.swa_utils import AveragedModel

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if float(meta.get("fraction", "nan")) != self.fraction:
                _logger.warning("weight averaging: %s averaged the last %s of training, this run the last %g: the "
                                "average starts afresh", path, meta.get("fraction"), self.fraction)
                return control
            averaged = AveragedModel(model)
            params = dict(averaged.module.named_parameters())
            if set(f.keys()) != set(params):
                raise FileError(f"{path} does not hold this model's weights (it has {len(f.keys())} tensors, the "
                                f"model {len(params)} parameters): resume from a checkpoint of the same model")
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(f.get_tensor(name))
        self.steps, self.first_step = int(meta["steps"]), int(meta["first_step"])
        averaged.n_averaged.fill_(self.steps)
        self.averaged = averaged
        _logger.info("weight averaging: resumed the mean of %d steps (from step %d)", self.steps, self.first_step)
        return control

    def on_save(self, args, state, control, **kwargs):
        """Writes the running mean into the checkpoint the Trainer has just saved (before the checkpoint is
        sealed: :meth:`TrainingCallbacks.attach` runs sealing callbacks last)."""
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.averaged is None or not args.should_save or not folder.is_dir():
            return control
        from safetensors.torch import save_file

        tensors = {name: p.detach().contiguous() for name, p in self.averaged.module.named_parameters()}
        save_file(tensors, str(folder / AVERAGE_FILE), metadata={
            "fraction": repr(self.fraction), "steps": str(self.steps), "first_step": str(self.first_step)})
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is None or self.progress(state) < 1.0 - self.fraction:
            return control
        if self.averaged is None:
            from torch.optim.swa_utils import AveragedModel

            self.averaged, self.first_step = AveragedModel(model), state.global_step
            _logger.info("weight averaging: from step %d", state.global_step)
        self.averaged.update_parameters(model)
        self.steps += 1
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is None or self.averaged is None or self.final_weights is not None:
            return
        import torch

        params = list(model.parameters())
        with torch.no_grad():
            self.final_weights = {id(p): p.detach().clone() for p in params}
            for p, mean in zip(params, self.averaged.module.parameters(), strict=True):
                p.copy_(mean)
        self.averaged = None
        _logger.info("weight averaging: the model holds the mean of the weights of %d steps (%d-%d)", self.steps,
                     self.first_step, state.global_step)

    def swap_final_weights(self, model) -> None:
        """Exchanges the model's weights with the kept final ones (call twice to restore the average)."""
        import torch

        with torch.no_grad():
            for p in model.parameters():
                kept = self.final_weights[id(p)]
                held = p.detach().clone()
                p.copy_(kept)
                kept.copy_(held)
