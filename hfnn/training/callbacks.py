"""The callbacks of one Trainer as a bundle: :meth:`TrainingCallbacks.attach` adds them in the order they must run,
:meth:`TrainingCallbacks.check` reports after training."""

from __future__ import annotations

import dataclasses
import logging

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from hfnn.training.averaging import WeightAveragingCallback
from hfnn.training.budget import BudgetProgressCallback, TimeBudgetCallback
from hfnn.training.interrupt import InterruptCallback
from hfnn.training.non_finite import NonFiniteGuardCallback

__all__ = ["MaxNormCallback", "TrainingCallbacks"]

_logger = logging.getLogger(__name__)


class MaxNormCallback(TrainerCallback):
    """Right after every optimizer step, rescales the weights a model holds to a maximum norm: each module of the
    trained model (a peft wrapper included) with an ``apply_max_norm_`` method calls it (the CNN classifier's rows,
    ``CnnConfig.max_norm``). A model without such a module is left alone. :meth:`TrainingCallbacks.attach` adds it;
    with a plain ``Trainer``, pass ``callbacks=[MaxNormCallback()]``."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        for module in model.modules() if model is not None else ():
            if callable(getattr(module, "apply_max_norm_", None)):
                module.apply_max_norm_()
        return control


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
        :class:`BudgetProgressCallback` in place of the step-counting bar; a :class:`MaxNormCallback`; an
        :class:`InterruptCallback`; a
        :class:`NonFiniteGuardCallback`; with ``tune_threads``, a :class:`hfnn.training.cpu_threads.ThreadTuner`; and
        with ``average_weights`` (a fraction of training, 0: off) a :class:`WeightAveragingCallback`."""
        from hfnn.training.cpu_threads import ThreadTuner

        budget = TimeBudgetCallback(max_train_minutes, anneal=anneal_by_time)
        budget.take_over_warmup(trainer.args)
        averaging = WeightAveragingCallback(average_weights, budget) if average_weights else None
        extras = cls(budget, NonFiniteGuardCallback(), ThreadTuner() if tune_threads else None, averaging=averaging)
        # the guard after the stop: it cancels the checkpoint of a step with non-finite values (and the run
        # then saves nothing, averaged or not)
        for callback in (MaxNormCallback(), budget, extras.interrupt, extras.guard, extras.tuner, averaging):
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
