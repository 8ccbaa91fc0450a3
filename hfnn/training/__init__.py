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
* :class:`MaxNormCallback` holds a model's max-norm constraint (the CNN's ``max_norm``) after every optimizer step.
* :class:`hfnn.training.cpu_threads.ThreadTuner` picks torch's CPU thread count from other programs' CPU load
  and measured step times.
* :func:`causal_lm_metrics` (perplexity without keeping the logits), :func:`classification_metrics` and
  :func:`seq2seq_metrics` (WER/PER or BLEU/chrF of generated outputs, with :class:`OrderedEvalSeq2SeqTrainer`).
* :func:`check_training_arguments`, :func:`check_tokenizer`, :func:`check_resume_architecture` before training;
  :func:`plot_loss_curve` after it.

Each lives in a module of its topic (``budget``, ``non_finite``, ``interrupt``, ``averaging``, ``callbacks``,
``metrics``, ``checks``, ``plots``); the names above are imported from here.
"""

from __future__ import annotations

from hfnn.training.averaging import AVERAGE_FILE, WeightAveragingCallback
from hfnn.training.budget import BudgetProgressCallback, TimeBudgetCallback
from hfnn.training.callbacks import MaxNormCallback, TrainingCallbacks
from hfnn.training.checks import check_resume_architecture, check_tokenizer, check_training_arguments
from hfnn.training.interrupt import InterruptCallback
from hfnn.training.metrics import OrderedEvalSeq2SeqTrainer, causal_lm_metrics, classification_metrics, seq2seq_metrics
from hfnn.training.non_finite import (
    NonFiniteGuardCallback,
    NonFiniteTrainingError,
    check_finite_model,
    non_finite_parameters,
)
from hfnn.training.plots import plot_loss_curve, pyplot, save_figure

__all__ = ["AVERAGE_FILE", "BudgetProgressCallback", "InterruptCallback", "MaxNormCallback", "NonFiniteGuardCallback",
           "NonFiniteTrainingError", "OrderedEvalSeq2SeqTrainer", "TimeBudgetCallback", "TrainingCallbacks",
           "WeightAveragingCallback", "causal_lm_metrics", "check_finite_model", "check_resume_architecture",
           "check_tokenizer", "check_training_arguments", "classification_metrics", "non_finite_parameters",
           "plot_loss_curve", "pyplot", "save_figure", "seq2seq_metrics"]
