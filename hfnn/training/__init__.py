"""Trainer machinery for scripts of your own: time budgets, a non-finite guard, CPU thread tuning, metrics.

Everything here is a plain ``transformers.TrainerCallback`` or ``compute_metrics`` function, usable with any
``Trainer``; hfnn's training pipelines are built from it::

    from hfnn.training import TrainingCallbacks, causal_lm_metrics

    compute_metrics, preprocess = causal_lm_metrics()
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=valid,
                      compute_metrics=compute_metrics, preprocess_logits_for_metrics=preprocess)
    extras = TrainingCallbacks.attach(trainer, max_train_minutes=10, anneal_by_time=True)
    trainer.train()
    extras.check()  # NonFiniteTrainingError if training stopped on a NaN/inf; logs the thread count

* :class:`TimeBudgetCallback` stops training after a wall-clock budget, runs the learning-rate warm-up in
  time and can anneal the learning rate over the budget; :class:`BudgetProgressCallback` is its progress bar.
* :class:`NonFiniteGuardCallback` stops at the first NaN or infinite loss, gradient or weight.
* :class:`hfnn.training.cpu_threads.ThreadTuner` picks torch's CPU thread count from other programs' CPU load
  and measured step times.
* :func:`causal_lm_metrics` (perplexity without keeping the logits), :func:`classification_metrics` and
  :func:`seq2seq_metrics` (WER/PER or BLEU/chrF of generated outputs, with :class:`OrderedEvalSeq2SeqTrainer`).
* :func:`check_training_arguments`, :func:`check_tokenizer`, :func:`check_resume_architecture` before training;
  :func:`plot_loss_curve` after it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

from transformers import Seq2SeqTrainer, TrainerCallback
from transformers.trainer_callback import ExportableState, PrinterCallback, ProgressCallback

__all__ = ["AVERAGE_FILE", "BudgetProgressCallback", "InterruptCallback", "NonFiniteGuardCallback",
           "NonFiniteTrainingError", "OrderedEvalSeq2SeqTrainer", "TimeBudgetCallback", "TrainingCallbacks",
           "WeightAveragingCallback", "causal_lm_metrics", "check_finite_model", "check_resume_architecture",
           "check_tokenizer", "check_training_arguments", "classification_metrics", "non_finite_parameters",
           "plot_loss_curve", "pyplot", "save_figure", "seq2seq_metrics"]

_logger = logging.getLogger(__name__)


def _saved_elapsed(state) -> float:
    """The training time a resumed run had spent (saved by :class:`TimeBudgetCallback` in the checkpoint)."""
    saved = state.stateful_callbacks.get(TimeBudgetCallback.__name__) if state.global_step > 0 else None
    if isinstance(saved, list):
        saved = saved[0] if saved else None
    return float(saved.get("attributes", {}).get("elapsed_before", 0.0)) if isinstance(saved, dict) else 0.0


class TimeBudgetCallback(TrainerCallback, ExportableState):
    """Stops training once ``minutes`` of wall-clock time have passed since training began, and runs the
    learning-rate warm-up of a time-budgeted run in time.

    Warm-up: a step-based warm-up does not scale with a time budget (200 warm-up steps are most of a
    1.5-minute run on a slow machine and a sliver of it on a fast one). :meth:`take_over_warmup` moves
    ``warmup_steps`` from the Trainer's scheduler to this callback when it is a fraction (< 1, transformers'
    ratio form: that share of the expected training time) or when the learning rate is annealed by time; a
    step count with a step-based schedule stays with the scheduler, so that such a run stays reproducible.
    The expected time is the budget, or less when ``max_steps`` (or the epochs) will end the run first,
    estimated from the mean step time so far. A warm-up given as a number of steps lasts that many steps at
    the measured speed, but at most ``max_step_warmup_fraction`` of the expected time.

    With ``anneal=True`` the learning rate also follows a cosine from its scheduled value down to
    ``final_fraction`` of it over the budget rather than over ``max_steps``, so that a run cut by the clock
    ends at a low learning rate on any machine. The number of steps, and so the result, then depends on the
    machine's speed: for a reproducible run use ``max_steps`` with a step-based schedule instead.

    The time spent is saved in each checkpoint (``trainer_state.json``, ``stateful_callbacks``), so a resumed
    run continues the budget, the warm-up and the annealing where the checkpoint left them. ``clock``
    (seconds, monotonic) is for tests.
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
        from the Trainer's step-based scheduler to this callback, which runs it in time. Call before training."""
        warmup = float(getattr(training_args, "warmup_steps", 0) or 0)
        if self.seconds is None or warmup <= 0 or (warmup >= 1 and not self.anneal):
            return
        self.warmup, training_args.warmup_steps = warmup, 0
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
            return min(self.seconds, max(elapsed + (max_steps - step) * elapsed / step, elapsed))
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
        warm = self.warmup_seconds(state)
        factor = min(1.0, self.elapsed() / warm) if warm > 0 else 1.0
        if self.anneal:
            cosine = 0.5 * (1 + math.cos(math.pi * self.elapsed_fraction()))
            factor *= self.final_fraction + (1 - self.final_fraction) * cosine
        return factor

    def state(self) -> dict:
        return {
            "args": {"minutes": None if self.seconds is None else self.seconds / 60.0, "anneal": self.anneal,
                     "final_fraction": self.final_fraction, "warmup": self.warmup,
                     "max_step_warmup_fraction": self.max_step_warmup_fraction},
            "attributes": {"elapsed_before": self.elapsed()},
        }

    def on_train_begin(self, args, state, control, **kwargs):
        self.elapsed_before = _saved_elapsed(state)
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
            last = state.log_history[-1] if state.log_history else {}
            if last.get("learning_rate") is not None and last.get("step") == state.global_step:
                last["learning_rate"] = logs["learning_rate"]

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds is not None and self.elapsed() >= self.seconds:
            control.should_training_stop = True
            control.should_evaluate = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        # the run's settings as given (model card, results), not the scheduler's
        if self.seconds is not None and self.warmup > 0 and not getattr(args, "warmup_steps", 0):
            args.warmup_steps = self.warmup


class BudgetProgressCallback(ProgressCallback):
    """The training progress bar of a time-budgeted run: the share of the budget spent, the steps done and the
    time left (to the budget, or to ``max_steps`` if that comes first), instead of a bar that counts to a
    ``max_steps`` the clock will never let the run reach. It takes the place of transformers'
    ``ProgressCallback`` (evaluation bars and log lines are that one's)."""

    def __init__(self, minutes: float, clock=None):
        super().__init__()
        self.seconds = 60.0 * minutes
        self.clock = clock or time.monotonic
        self.start, self.elapsed_before = None, 0.0

    def _elapsed(self) -> float:
        return self.elapsed_before + (0.0 if self.start is None else self.clock() - self.start)

    def on_train_begin(self, args, state, control, **kwargs):
        self.elapsed_before, self.start = _saved_elapsed(state), self.clock()
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.training_bar = tqdm(total=100.0, dynamic_ncols=True, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% "
                                     f"of {self.seconds / 60.0:g} min" + " {postfix}")
            self._update(state)

    def _update(self, state):
        if self.training_bar is None:
            return
        elapsed = self._elapsed()
        left = max(0.0, self.seconds - elapsed)
        step, max_steps = state.global_step, state.max_steps or 0
        if step > 0 and max_steps > 0 and elapsed > 0:
            left = min(left, (max_steps - step) * elapsed / step)
        self.training_bar.n = min(100.0, 100.0 * elapsed / self.seconds)
        self.training_bar.set_postfix_str(f"step {step}, {_clock_time(elapsed)} elapsed, ~{_clock_time(left)} left",
                                          refresh=False)
        self.training_bar.refresh()

    def on_step_end(self, args, state, control, **kwargs):
        self._update(state)

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            self._update(state)
            self.training_bar.close()
            self.training_bar = None


def _clock_time(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class NonFiniteTrainingError(ValueError):
    """Training produced a NaN or infinite loss, gradient or weight: the run stops and nothing is saved."""


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
                return self._trip(control, f"the training {key.replace('_', ' ')} is {value} at step {state.global_step}")
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


class InterruptCallback(TrainerCallback):
    """Ctrl-C during training stops it after the current step instead of losing the run: a checkpoint of that
    step is saved (when the run saves checkpoints) and the pipeline then saves and scores the model as after
    any other stop. A second Ctrl-C raises ``KeyboardInterrupt`` as usual. Only in a single process, from the
    main thread: processes of a distributed run must stop at the same step, which one signal cannot promise."""

    def __init__(self):
        self.interrupted_at: int | None = None
        self._requested, self._previous, self._state = False, None, None

    def _handle(self, signum, frame):
        import signal

        self._requested = True
        signal.signal(signal.SIGINT, self._previous)  # the next Ctrl-C interrupts as usual
        step = self._state.global_step if self._state is not None else 0
        print(f"\nCtrl-C: stopping after step {step + 1}; the model is then saved and scored (Ctrl-C again to "
              "stop at once)", flush=True)

    def on_train_begin(self, args, state, control, **kwargs):
        import signal
        import threading

        if args.world_size == 1 and threading.current_thread() is threading.main_thread():
            self._state, self._previous = state, signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self._requested and self.interrupted_at is None:
            self.interrupted_at = state.global_step
            control.should_training_stop = True
            control.should_save = args.save_strategy != "no"
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()
        return control

    def restore(self) -> None:
        """Puts back the Ctrl-C handler that was there before training (also after training failed)."""
        import signal

        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None


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
            raise ValueError(f"--average_weights must be a fraction of training in (0, 1] (0: off), got {fraction!r}")
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
                raise ValueError(f"{path} does not hold this model's weights (it has {len(f.keys())} tensors, the "
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


@dataclasses.dataclass
class TrainingCallbacks:
    """The time budget (and its progress bar), the Ctrl-C stop, the non-finite guard and the CPU thread tuner of
    one Trainer."""

    budget: TimeBudgetCallback
    guard: NonFiniteGuardCallback
    tuner: TrainerCallback | None
    interrupt: InterruptCallback = dataclasses.field(default_factory=InterruptCallback)
    averaging: WeightAveragingCallback | None = None

    @classmethod
    def attach(cls, trainer, max_train_minutes: float | None = None, anneal_by_time: bool = False,
               tune_threads: bool = True, average_weights: float = 0.0) -> TrainingCallbacks:
        """Adds the callbacks to ``trainer`` (before ``trainer.train()``): a :class:`TimeBudgetCallback` of
        ``max_train_minutes`` (None: no budget) that takes over the warm-up of a budgeted run, with a
        :class:`BudgetProgressCallback` in place of the step-counting bar; an :class:`InterruptCallback`; a
        :class:`NonFiniteGuardCallback`; with ``tune_threads``, a :class:`hfnn.training.cpu_threads.ThreadTuner`; and
        with ``average_weights`` (a fraction of training, 0: off) a :class:`WeightAveragingCallback`."""
        from hfnn.training.cpu_threads import ThreadTuner

        budget = TimeBudgetCallback(max_train_minutes, anneal=anneal_by_time)
        budget.take_over_warmup(trainer.args)
        averaging = WeightAveragingCallback(average_weights, budget) if average_weights else None
        extras = cls(budget, NonFiniteGuardCallback(), ThreadTuner() if tune_threads else None, averaging=averaging)
        # the guard after the stop: it cancels the checkpoint of a step with non-finite values (and the run
        # then saves nothing, averaged or not)
        for callback in (budget, extras.interrupt, extras.guard, extras.tuner, averaging):
            if callback is not None:
                trainer.add_callback(callback)
        if max_train_minutes is not None and not trainer.args.disable_tqdm:
            trainer.remove_callback(ProgressCallback)
            trainer.add_callback(BudgetProgressCallback(max_train_minutes))
        # what prints the logs runs after the budget, which writes the learning rate the optimizer used into them
        # and what seals a checkpoint (``seals_checkpoint = True``) after everything that writes into it
        for last in [cb for cb in trainer.callback_handler.callbacks
                     if isinstance(cb, (PrinterCallback, ProgressCallback)) or getattr(cb, "seals_checkpoint", False)]:
            trainer.callback_handler.remove_callback(last)
            trainer.callback_handler.add_callback(last)
        return extras

    @property
    def thread_history(self) -> list:
        return list(getattr(self.tuner, "history", []))

    def check(self) -> None:
        """After training: raises :class:`NonFiniteTrainingError` if a non-finite value stopped it, and logs the
        thread count the tuner settled on."""
        self.guard.check()
        history = self.thread_history
        if history:
            _logger.info("cpu threads: trained with %d (%d measurement%s)", history[-1]["threads"], len(history),
                         "" if len(history) == 1 else "s")
        elif self.tuner is not None:
            _logger.info("cpu threads: not tuned (the thread count was fixed, training ran on an accelerator or "
                         "was too short to measure)")


# ---------------------------------------------------------------------------------------------- plots


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_dir, name: str):
    """Saves ``fig`` as ``out_dir/name`` (110 dpi) and closes it; returns the path."""
    fig.tight_layout()
    path = Path(out_dir) / name
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def plot_loss_curve(log_history: list[dict], out_dir, title: str = "training"):
    """Plots the training and evaluation loss of ``trainer.state.log_history`` against the step into
    ``out_dir/loss_curve.png``; returns its path (None if no loss was logged)."""
    curves = {label: [(h["step"], h[key]) for h in log_history if key in h and "step" in h]
              for key, label in (("loss", "train loss"), ("eval_loss", "validation loss"))}
    if not any(curves.values()):
        return None
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for label, points in curves.items():
        if points:
            ax.plot(*zip(*points), label=label, marker="o" if label.startswith("validation") else None)
    ax.set(xlabel="step", ylabel="loss (nats)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out_dir, "loss_curve.png")


# ---------------------------------------------------------------------------------------------- checks before training


def check_training_arguments(args) -> None:
    """``TrainingArguments`` that the Trainer would take without a word and then fail on (or loop on) late: a batch
    size or accumulation below 1, a negative or non-finite learning rate, no step to train; or ignore: ``fp16`` on
    the CPU, where accelerate trains in float32 without autocast. ValueError naming the option."""
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name} must be an integer >= 1, got {value!r}")
    if not (math.isfinite(args.learning_rate) and args.learning_rate >= 0):
        raise ValueError(f"--learning_rate must be a finite number >= 0, got {args.learning_rate!r}")
    epochs = args.num_train_epochs
    if (args.max_steps is None or args.max_steps <= 0) and not (math.isfinite(epochs) and epochs > 0):
        raise ValueError(f"--num_train_epochs must be > 0 (or give --max_steps), got {epochs!r}: nothing would be trained")
    if args.fp16 and args.device.type == "cpu":
        raise ValueError("--fp16 true needs a GPU: on the CPU the Trainer would train in float32 without saying so. "
                         "Use --bf16 true --use_cpu true (bfloat16 autocast on the CPU), or leave --fp16 out")


def check_tokenizer(model_or_config, tokenizer, vocab_size_field: str = "vocab_size") -> None:
    """Raises ValueError when ``tokenizer`` cannot be the one ``model_or_config`` was trained with: it has more
    tokens than the model's vocabulary (its ids would fall outside the embedding table), or its pad/bos/eos ids
    differ from the config's. A tokenizer of the same size with other tokens is beyond any check: keep the
    tokenizer saved beside the model (save_pretrained does)."""
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


_RESUME_FIELDS = ("model_type", "vocab_size", "source_vocab_size", "hidden_size", "embedding_size", "num_hidden_layers",
                  "num_encoder_layers", "num_decoder_layers", "rnn_type", "attention", "num_labels", "intermediate_size",
                  "num_attention_heads", "window_sizes", "num_filters", "bidirectional_encoder", "bidirectional")


def check_resume_architecture(checkpoint, model) -> None:
    """A ``--resume_from_checkpoint`` folder must hold a model of the same type and shape as the one built
    for this run; ValueError naming the checkpoint and the first difference otherwise."""
    import json

    try:
        saved = json.loads((Path(checkpoint) / "config.json").read_text(encoding="utf-8")) if checkpoint else None
    except (OSError, ValueError):
        return  # the checkpoint checks say what is wrong with an unreadable folder
    if saved is None:
        return
    ours, where = model.config.to_dict(), f"--resume_from_checkpoint {checkpoint}: it"
    classes = saved.get("architectures") or []
    if classes and type(model).__name__ not in classes:
        raise ValueError(f"{where} holds a {', '.join(classes)}, this run trains a {type(model).__name__}; resume "
                         "with the pipeline and recipe of that run")
    for field in _RESUME_FIELDS:
        if saved.get(field) is not None and ours.get(field) is not None and saved[field] != ours[field]:
            raise ValueError(f"{where} holds another model ({field} {saved[field]!r}, this run builds "
                             f"{ours[field]!r}); resume with the recipe and config_overrides of that run")
    labels = saved.get("id2label"), ours.get("id2label")
    if "num_labels" not in saved and None not in labels and len(labels[0]) != len(labels[1]):
        raise ValueError(f"{where} has {len(saved['id2label'])} labels, this run {len(ours['id2label'])}")


def causal_lm_metrics():
    """``(compute_metrics, preprocess_logits_for_metrics)`` for a causal LM ``Trainer``: per-token negative
    log-likelihood of the next token is computed where the logits are (they never leave the device), and
    ``compute_metrics`` reduces it to ``mean_nll``, ``perplexity`` and ``num_tokens`` with hfnn's perplexity
    metric. Labels of -100 are not counted."""
    import numpy as np
    import torch

    from hfnn.metrics import load_metric

    metric = load_metric("perplexity")

    def preprocess_logits_for_metrics(logits, labels):
        logits, targets = logits[:, :-1].float(), labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).clamp(min=0), reduction="none"
        ).view_as(targets)
        return nll.masked_fill(targets == -100, float("nan"))

    def compute_metrics(eval_pred):
        nll = np.asarray(eval_pred.predictions, dtype=np.float64).reshape(-1)
        return metric.compute(predictions=nll[~np.isnan(nll)].tolist())

    return compute_metrics, preprocess_logits_for_metrics


def classification_metrics(problem_type: str = "single_label_classification"):
    """``compute_metrics`` for a sequence classifier: accuracy and macro-F1 (single-label), exact-match
    accuracy and macro-F1 over labels (multi-label, logits > 0), or MSE and MAE (regression)."""
    import numpy as np

    if problem_type == "regression":

        def compute_regression(eval_pred):
            diff = np.asarray(eval_pred.predictions).reshape(-1) - np.asarray(eval_pred.label_ids).reshape(-1)
            return {"mse": float(np.mean(diff ** 2)), "mae": float(np.mean(np.abs(diff)))}

        return compute_regression
    if problem_type == "multi_label_classification":
        from sklearn.metrics import f1_score

        def compute_multi_label(eval_pred):
            preds, refs = (np.asarray(eval_pred.predictions) > 0).astype(int), np.asarray(eval_pred.label_ids).astype(int)
            return {"accuracy": float((preds == refs).all(axis=1).mean()),  # exact match
                    "f1": float(f1_score(refs, preds, average="macro", zero_division=0))}

        return compute_multi_label
    from hfnn.metrics import load_metric

    accuracy, f1 = load_metric("accuracy"), load_metric("f1")

    def compute_single_label(eval_pred):
        preds, refs = np.asarray(eval_pred.predictions).argmax(-1), np.asarray(eval_pred.label_ids)
        return {"accuracy": accuracy.compute(predictions=preds, references=refs)["accuracy"],
                "f1": f1.compute(predictions=preds, references=refs, average="macro")["f1"]}

    return compute_single_label


def seq2seq_metrics(kind: str, target_tokenizer, references: list[list[str]], expected_labels=None):
    """``compute_metrics`` for ``Seq2SeqTrainer`` with ``predict_with_generate`` (and
    :class:`OrderedEvalSeq2SeqTrainer`): ``kind`` ``"g2p"`` (WER, PER) or ``"translation"`` (BLEU, chrF); decodes the generated ids and
    scores them against ``references`` (every acceptable target of each example, in dataset order).

    ``expected_labels`` (the label ids of the evaluated split, in dataset order) checks that the evaluation
    came back in that order by comparing ids, so targets with symbols the tokenizer maps to unk or cut by
    ``max_target_length`` score as errors instead of stopping the evaluation. A reference symbol unseen in
    training cannot be predicted: such an example counts as wrong."""
    import numpy as np

    from hfnn.data.corpora import SEQ2SEQ_METRICS
    from hfnn.metrics import load_metric

    modules = {name: load_metric(name) for name in SEQ2SEQ_METRICS["g2p" if kind == "g2p" else "translation"]}
    pad = target_tokenizer.pad_token_id

    def compute_metrics(eval_pred):
        ids = np.asarray(eval_pred.predictions)
        predictions = [" ".join(p.split()) for p in target_tokenizer.batch_decode(np.where(ids < 0, pad, ids),
                                                                                  skip_special_tokens=True)]
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        if expected_labels is not None and eval_pred.label_ids is not None:
            # the references are matched by position: check the labels came back in dataset order
            got = [tuple(int(x) for x in row if x >= 0 and x != pad) for row in np.asarray(eval_pred.label_ids)]
            if got != [tuple(x for x in row if x != pad) for row in expected_labels]:
                raise RuntimeError("the evaluation returned the examples in another order than the dataset's; "
                                   "the predictions cannot be matched to their references")
        result = {name: float(m.compute(predictions=predictions, references=references)[name])
                  for name, m in modules.items()}
        if kind == "g2p":
            result["accuracy"] = 1.0 - result["wer"]
        result["predictions_mean_length"] = float(np.mean([len(p.split()) for p in predictions]))
        return result

    return compute_metrics


class OrderedEvalSeq2SeqTrainer(Seq2SeqTrainer):
    """``Seq2SeqTrainer`` that always evaluates in dataset order.

    ``compute_metrics`` matches generated outputs to each example's references by position, but with
    ``train_sampling_strategy="group_by_length"`` the Trainer would also shuffle evaluation batches by length.
    The evaluation splits are sorted by source length beforehand instead, which gives the same short padding.
    """

    def _get_eval_sampler(self, eval_dataset):
        from torch.utils.data import SequentialSampler

        if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None
