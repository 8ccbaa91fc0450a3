"""The non-finite guard: training stops at the first NaN or infinite loss, gradient, weight, evaluation loss or
evaluation metric, and a model holding one is not saved. A run whose loss ends far above where it started is flagged
(:func:`loss_rise`)."""

from __future__ import annotations

import math

from transformers import TrainerCallback

from hfnn.models.errors import HfnnError

__all__ = ["LOSS_DIVERGED_FACTOR", "LOSS_RISE_FACTOR", "NonFiniteGuardCallback", "NonFiniteTrainingError",
           "chance_loss", "check_finite_metrics", "check_finite_model", "check_loss_rise", "loss_rise",
           "loss_rise_line", "non_finite_metrics", "non_finite_parameters"]

# A loss "far above its start": the last logged training loss is more than this many times the first logged one,
# or, when lower, the loss of a uniform guess (ln of the number of classes or tokens); or the last evaluation loss
# more than this many times the first. Training lowers the loss; one that ends at twice where it started diverged.
LOSS_RISE_FACTOR = 2.0
# A loss this many times its start (or a uniform guess's) is no model's: the run counts as diverged, like a NaN
LOSS_DIVERGED_FACTOR = 1000.0


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


# timings of an evaluation, not scores of the model
_SPEED_KEYS = ("_runtime", "_per_second", "_seconds")


def non_finite_metrics(metrics: dict) -> list[str]:
    """The keys of ``metrics`` (an evaluation's or results.json's scores) whose number is NaN or infinite (its
    timings aside)."""
    return [k for k, v in (metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isfinite(v)
            and not str(k).endswith(_SPEED_KEYS)]


def check_finite_metrics(metrics: dict, when: str = "after training") -> None:
    """Raises :class:`NonFiniteTrainingError` naming the scores of ``metrics`` that are NaN or infinite: a model
    whose evaluation loss, perplexity or any other score is not finite diverged, whatever its weights hold."""
    bad = non_finite_metrics(metrics)
    if bad:
        shown = ", ".join(f"{k} {metrics[k]}" for k in bad[:4])
        raise NonFiniteTrainingError(
            f"training diverged: the evaluation {when} gives {shown}; the model is not saved. Lower --learning_rate, "
            "keep --max_grad_norm above 0 (gradient clipping), or check the data")


def chance_loss(config, classifier: bool) -> float | None:
    """The loss of a uniform guess for a model of ``config``: ln(num_labels) for a single-label classifier, ln 2 per
    label for a multi-label one, ln(vocab_size) for a language or sequence-to-sequence model; None for a
    regression (no such loss)."""
    problem = getattr(config, "problem_type", None)
    if classifier:
        if problem == "regression":
            return None
        if problem == "multi_label_classification":
            return math.log(2)
        count = getattr(config, "num_labels", None)
    else:
        count = getattr(config, "target_vocab_size", None) or getattr(config, "vocab_size", None)
    return math.log(count) if isinstance(count, int) and count > 1 else None


def loss_rise(log_history, chance_loss: float | None = None, factor: float | None = None) -> dict | None:
    """Whether a loss ended far above where it started: the last logged training loss above ``factor`` times the
    first (or the loss of a uniform guess, ``chance_loss``, when lower), or the last evaluation loss above ``factor``
    times the first evaluation loss (a validation loss may rise above a guess's when a model overfits, so it is
    compared with its own start only). None when neither did, else ``{"what", "start", "end", "reference",
    "factor"}`` (``what``: "training loss" or "evaluation loss"). ``log_history`` is the Trainer's
    (``trainer.state.log_history``); ``chance_loss`` None: unknown (a regression); ``factor`` None:
    :data:`LOSS_RISE_FACTOR`."""
    factor = LOSS_RISE_FACTOR if factor is None else factor
    for what, key, chance in (("training loss", "loss", chance_loss), ("evaluation loss", "eval_loss", None)):
        values = [h[key] for h in log_history if isinstance(h.get(key), (int, float)) and "step" in h]
        if not values or (len(values) < 2 and chance is None):
            continue
        start = values[0]
        reference = min(start, chance) if chance is not None and chance > 0 else start
        if math.isfinite(reference) and reference > 0 and not values[-1] <= factor * reference:
            return {"what": what, "start": start, "end": values[-1], "reference": reference, "factor": factor}
    return None


def check_loss_rise(log_history, chance_loss: float | None = None) -> None:
    """Raises :class:`NonFiniteTrainingError` when a loss rose past :data:`LOSS_DIVERGED_FACTOR` times its start
    (:func:`loss_rise` with that factor): finite, but no trained model's."""
    rise = loss_rise(log_history, chance_loss, factor=LOSS_DIVERGED_FACTOR)
    if rise is not None:
        raise NonFiniteTrainingError(
            f"training diverged: the {rise['what']} ended at {rise['end']:.4g}, more than {rise['factor']:g} "
            f"times its start ({rise['reference']:.4g}); the model is not saved. Lower --learning_rate, keep "
            "--max_grad_norm above 0 (gradient clipping), or check the data")


def loss_rise_line(rise: dict) -> str:
    """The closing line of a run whose loss ended far above its start (:func:`loss_rise`)."""
    return (f"warning: the {rise['what']} ended at {rise['end']:.4g}, more than {rise['factor']:g} times its start "
            f"({rise['reference']:.4g}): training diverged, the saved model is likely useless; lower "
            "--learning_rate or keep --max_grad_norm above 0 (results.json: loss_rise)")


class NonFiniteGuardCallback(TrainerCallback):
    """Stops training at the first NaN or infinite loss (as logged), gradient (before the optimizer step),
    weight (after it) or evaluation score (an evaluation loss, a perplexity), without saving a checkpoint of that
    step. ``problem`` says what happened and
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

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        bad = non_finite_metrics(metrics)
        if bad:
            return self._trip(control, f"the evaluation at step {state.global_step} gives {bad[0]} {metrics[bad[0]]}")
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
