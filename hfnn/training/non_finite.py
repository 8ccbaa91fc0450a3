"""The non-finite guard: training stops at the first NaN or infinite loss, gradient or weight, and a model holding
one is not saved."""

from __future__ import annotations

import math

from transformers import TrainerCallback

from hfnn.models.errors import HfnnError

__all__ = ["NonFiniteGuardCallback", "NonFiniteTrainingError", "check_finite_model", "non_finite_parameters"]


class NonFiniteTrainingError(HfnnError):
    """Training produced a NaN or infinite loss, gradient or weight (too high a learning rate): the run stops and
    nothing is saved."""


def non_finite_parameters(model) -> list[str]:
    """Names of the parameters (and floating-point buffers) of ``model`` holding a NaN or an infinity."""
    tensors = [(n, t) for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_floating_point()]
    finite = _all_finite_each([t for _, t in tensors])
    return [name for (name, _), ok in zip(tensors, finite) if not ok]


def _all_finite_each(tensors) -> list[bool]:
    """Whether each tensor holds only finite values. A NaN or an infinity makes a tensor's sum non-finite; a
    sum of finite values can overflow too, so a tensor whose sum is not finite is then checked element by
    element. A sum in the tensor's own precision costs a third of one in float64, and this runs every step."""
    import torch

    if not tensors:
        return []
    with torch.no_grad():
        finite = torch.isfinite(torch.stack([t.sum().float() for t in tensors])).tolist()
        return [ok or bool(torch.isfinite(t).all()) for t, ok in zip(tensors, finite)]


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
    or weight (after it), without saving a checkpoint of that step. ``problem`` says what happened and
    :meth:`check` raises :class:`NonFiniteTrainingError` with it."""

    def __init__(self):
        self.problem: str | None = None

    def _trip(self, control, problem: str | None = None):
        self.problem = self.problem or problem
        control.should_training_stop, control.should_save, control.should_evaluate = True, False, False
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                what = key.replace("_", " ")
                return self._trip(control, f"the training {what} is {value} at step {state.global_step}")
        return control

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is None or getattr(args, "fp16", False):  # fp16 loss scaling skips steps with inf gradients
            return control
        if not all(_all_finite_each([p.grad.detach() for p in model.parameters() if p.grad is not None])):
            return self._trip(control, f"a gradient is NaN or infinite at step {state.global_step + 1}")
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        bad = non_finite_parameters(model) if model is not None else []
        if bad:
            return self._trip(control, f"weights became NaN or infinite at step {state.global_step} ({bad[0]}...)")
        return self._trip(control) if self.problem is not None else control

    def on_epoch_end(self, args, state, control, **kwargs):
        return self._trip(control) if self.problem is not None else control

    def check(self) -> None:
        """Raises :class:`NonFiniteTrainingError` if training was stopped for a non-finite value."""
        if self.problem is not None:
            raise NonFiniteTrainingError(
                f"training stopped: {self.problem}; the model is not saved. Lower --learning_rate, keep "
                "--max_grad_norm above 0 (gradient clipping), or check the data"
            )
