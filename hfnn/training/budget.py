"""The time budget of a training run: a callback that stops training when the clock runs out (running the
learning-rate warm-up in time and optionally annealing over the budget) and the progress bar of such a run."""

from __future__ import annotations

import logging
import math
import time

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState, ProgressCallback

__all__ = ["BudgetProgressCallback", "TimeBudgetCallback"]

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
        scaled = self.anneal or self.warmup > 0
        if logs is not None and isinstance(logs.get("learning_rate"), (int, float)) and scaled:
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
