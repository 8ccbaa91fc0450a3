"""hfnn.training on its own: the callbacks and metrics with a plain ``Trainer``, no pipeline involved."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from transformers import EvalPrediction, Trainer, TrainingArguments, default_data_collator
from transformers.trainer_callback import ProgressCallback

from hfnn import RnnConfig, RnnForCausalLM
from hfnn.training import (
    BudgetProgressCallback,
    NonFiniteTrainingError,
    TimeBudgetCallback,
    TrainingCallbacks,
    causal_lm_metrics,
    check_training_arguments,
    classification_metrics,
)


def tiny_lm():
    torch.manual_seed(0)
    return RnnForCausalLM(RnnConfig(vocab_size=12, hidden_size=8, embedding_size=8, num_hidden_layers=1))


def blocks(n=16, length=8):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 12, (n, length), generator=generator)
    return [{"input_ids": row, "labels": row.clone()} for row in ids]


def args(tmp_path, **kw):
    return TrainingArguments(str(tmp_path), per_device_train_batch_size=4, report_to="none", save_strategy="no",
                             logging_steps=1, use_cpu=True, **kw)


def test_callbacks_attach_to_a_plain_trainer_and_take_over_a_budgeted_warmup(tmp_path):
    training_args = args(tmp_path, max_steps=6, warmup_steps=0.5, learning_rate=0.01)
    trainer = Trainer(model=tiny_lm(), args=training_args, train_dataset=blocks(), data_collator=default_data_collator)
    extras = TrainingCallbacks.attach(trainer, max_train_minutes=5, anneal_by_time=True)
    kinds = [type(cb) for cb in trainer.callback_handler.callbacks]
    assert BudgetProgressCallback in kinds and ProgressCallback not in kinds
    assert TimeBudgetCallback in kinds and type(extras.guard) in kinds and type(extras.tuner) in kinds
    assert extras.budget.warmup == 0.5 and training_args.warmup_steps == 0  # the clock warms up, not the scheduler
    trainer.train()
    extras.check()
    assert trainer.state.global_step == 6 and training_args.warmup_steps == 0.5  # restored for the record
    lrs = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert lrs[0] < 0.01 and all(lr > 0 for lr in lrs)  # logged as the optimizer ran them: warming up


@pytest.mark.parametrize("disable_tqdm", [True, False])
def test_the_printed_learning_rate_is_the_one_the_optimizer_used(tmp_path, capsys, disable_tqdm):
    # the scheduler's value is constant; the budget warms up and anneals it, and the console must say so
    training_args = args(tmp_path, max_steps=4, warmup_steps=0.5, learning_rate=0.01, disable_tqdm=disable_tqdm)
    trainer = Trainer(model=tiny_lm(), args=training_args, train_dataset=blocks(), data_collator=default_data_collator)
    TrainingCallbacks.attach(trainer, max_train_minutes=5, anneal_by_time=True, tune_threads=False)
    trainer.train()
    logged = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    printed = [float(v) for v in re.findall(r"'learning_rate': '?([0-9.e+-]+)'?", capsys.readouterr().out)]
    assert len(printed) == len(logged) == 4 and max(logged) < 0.01
    assert printed == pytest.approx(logged, rel=1e-3)


def test_without_a_budget_the_trainer_keeps_its_own_bar_and_schedule(tmp_path):
    training_args = args(tmp_path, max_steps=2, warmup_steps=1)
    trainer = Trainer(model=tiny_lm(), args=training_args, train_dataset=blocks(), data_collator=default_data_collator)
    extras = TrainingCallbacks.attach(trainer, tune_threads=False)
    kinds = [type(cb) for cb in trainer.callback_handler.callbacks]
    assert ProgressCallback in kinds and BudgetProgressCallback not in kinds and extras.tuner is None
    assert training_args.warmup_steps == 1
    trainer.train()
    extras.check()
    assert extras.thread_history == []


def test_the_guard_stops_a_diverging_plain_trainer_and_check_raises(tmp_path):
    training_args = args(tmp_path, max_steps=20, learning_rate=3e38, max_grad_norm=0.0)
    trainer = Trainer(model=tiny_lm(), args=training_args, train_dataset=blocks(), data_collator=default_data_collator)
    extras = TrainingCallbacks.attach(trainer, tune_threads=False)
    trainer.train()
    assert trainer.state.global_step < 20
    with pytest.raises(NonFiniteTrainingError, match="training stopped: .*(NaN|nan|inf)"):
        extras.check()


def test_causal_lm_metrics_give_the_perplexity_of_the_trainer_loss(tmp_path):
    compute_metrics, preprocess = causal_lm_metrics()
    trainer = Trainer(model=tiny_lm(), args=args(tmp_path, per_device_eval_batch_size=4), eval_dataset=blocks(),
                      data_collator=default_data_collator, compute_metrics=compute_metrics,
                      preprocess_logits_for_metrics=preprocess)
    metrics = trainer.evaluate()
    assert metrics["eval_num_tokens"] == 16 * 7  # every next token of every block
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]), rel=1e-4)


def test_classification_metrics_by_hand():
    single = classification_metrics()(EvalPrediction(predictions=np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]),
                                                     label_ids=np.array([0, 1, 1])))
    assert single["accuracy"] == pytest.approx(2 / 3) and single["f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    multi = classification_metrics("multi_label_classification")(
        EvalPrediction(predictions=np.array([[1.0, -1.0], [1.0, 1.0]]), label_ids=np.array([[1, 0], [0, 1]])))
    assert multi["accuracy"] == 0.5
    regression = classification_metrics("regression")(
        EvalPrediction(predictions=np.array([[1.0], [3.0]]), label_ids=np.array([2.0, 3.0])))
    assert regression == {"mse": 0.5, "mae": 0.5}


@pytest.mark.parametrize("option, value", [("per_device_train_batch_size", 0), ("gradient_accumulation_steps", -1),
                                           ("learning_rate", float("nan")), ("num_train_epochs", 0)])
def test_training_arguments_the_trainer_would_accept_are_errors_naming_them(tmp_path, option, value):
    with pytest.raises(ValueError, match=f"--{option} must be"):
        check_training_arguments(TrainingArguments(str(tmp_path), report_to="none", **{option: value}))


def test_fp16_on_the_cpu_is_an_error_rather_than_float32_without_a_word(tmp_path):
    with pytest.raises(ValueError, match=r"--fp16 true needs a GPU.*--bf16 true --use_cpu true"):
        check_training_arguments(TrainingArguments(str(tmp_path), report_to="none", fp16=True, use_cpu=True))
    check_training_arguments(TrainingArguments(str(tmp_path), report_to="none", bf16=True, use_cpu=True))
