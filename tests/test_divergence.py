"""A run that diverged is never saved as if it trained: non-finite scores stop it, a rising loss is flagged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hfnn.pipelines import common, run_lm
from hfnn.training import non_finite
from tests.reliability_utils import shakespeare_text

TINY_RNN = '{"hidden_size": 8, "embedding_size": 8, "num_hidden_layers": 1}'


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text(shakespeare_text(3000), encoding="utf-8")
    return path


def lm_argv(out: Path, text: Path, *extra: str) -> list[str]:
    return ["rnn_shakespeare_char", "--output_dir", str(out), "--train_file", str(text), "--config_overrides",
            TINY_RNN, "--max_steps", "3", "--block_size", "16", "--per_device_train_batch_size", "4",
            "--num_samples", "0", "--logging_steps", "1", "--report_to", "none", "--save_strategy", "no",
            "--write_model_card", "false", "--disable_tqdm", "true", *extra]


@pytest.mark.parametrize("evaluation", [["--eval_strategy", "no"], ["--eval_strategy", "steps", "--eval_steps", "3"]])
def test_a_huge_finite_loss_with_an_infinite_perplexity_stops_the_run(tmp_path, text_file, capsys, evaluation):
    out = tmp_path / "run"
    code = common.run_command(run_lm.main, lm_argv(out, text_file, "--learning_rate", "1e30", "--max_grad_norm", "0",
                                                    "--optim", "sgd", "--warmup_steps", "0", *evaluation))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "perplexity inf" in err and "not saved" in err and "--learning_rate" in err
    assert not (out / "model.safetensors").exists() and not (out / "results.json").exists()


def test_the_guard_trips_on_a_non_finite_evaluation_score():
    from transformers import TrainerControl, TrainerState

    guard = non_finite.NonFiniteGuardCallback()
    state, control = TrainerState(), TrainerControl()
    state.global_step = 4
    guard.on_evaluate(None, state, control, metrics={"eval_loss": 2.0, "eval_accuracy": 0.5})
    assert guard.problem is None and not control.should_training_stop
    guard.on_evaluate(None, state, control, metrics={"eval_loss": float("nan"), "epoch": 1.0})
    assert control.should_training_stop and not control.should_save
    with pytest.raises(non_finite.NonFiniteTrainingError, match="evaluation at step 4 gives eval_loss nan"):
        guard.check()


def test_check_finite_metrics_names_the_scores():
    non_finite.check_finite_metrics({"validation_loss": 1.5, "validation_accuracy": 0.7, "flag": True})
    with pytest.raises(non_finite.NonFiniteTrainingError, match="validation_mse inf"):
        non_finite.check_finite_metrics({"validation_mse": math.inf, "validation_loss": 1.0})


def test_loss_rise_compares_the_end_with_the_start_or_a_uniform_guess():
    falling = [{"step": 1, "loss": 4.0}, {"step": 2, "loss": 3.0}]
    assert non_finite.loss_rise(falling, chance_loss=math.log(60)) is None
    rising = [{"step": 1, "loss": 4.0}, {"step": 2, "loss": 9.0}]
    rise = non_finite.loss_rise(rising, chance_loss=math.log(60))
    assert rise["what"] == "training loss" and rise["end"] == 9.0 and rise["factor"] == non_finite.LOSS_RISE_FACTOR
    # a single logged loss far above a uniform guess's (ln 2 for two classes)
    assert non_finite.loss_rise([{"step": 1, "loss": 50.0}], chance_loss=math.log(2))["reference"] == math.log(2)
    # no reference: one loss and no chance level (a regression)
    assert non_finite.loss_rise([{"step": 1, "loss": 50.0}], chance_loss=None) is None
    evals = [{"step": 1, "loss": 1.0}, {"step": 1, "eval_loss": 1.0}, {"step": 2, "eval_loss": 5.0},
             {"step": 2, "loss": 0.9}]
    assert non_finite.loss_rise(evals)["what"] == "evaluation loss"


def test_chance_loss_of_each_kind_of_model():
    from hfnn import RnnConfig

    assert non_finite.chance_loss(RnnConfig(vocab_size=50), classifier=False) == pytest.approx(math.log(50))
    assert non_finite.chance_loss(RnnConfig(vocab_size=50, num_labels=3), classifier=True) == pytest.approx(
        math.log(3))
    assert non_finite.chance_loss(RnnConfig(vocab_size=50, num_labels=1, problem_type="regression"),
                                  classifier=True) is None


def test_a_rising_loss_is_flagged_in_the_closing_lines_and_results(tmp_path, text_file, capsys, monkeypatch):
    monkeypatch.setattr(non_finite, "LOSS_RISE_FACTOR", 1e-3)  # any loss counts as risen: the report is tested
    out = tmp_path / "run"
    assert common.run_command(run_lm.main, lm_argv(out, text_file, "--eval_strategy", "no")) == 0
    printed = capsys.readouterr().out
    closing = printed[printed.rindex("=== "):]
    assert "warning: the training loss ended at" in closing and "training diverged" in closing
    rise = json.loads((out / "results.json").read_text())["loss_rise"]
    assert rise["what"] == "training loss" and rise["factor"] == 1e-3


def test_a_normal_run_is_not_flagged(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    assert common.run_command(run_lm.main, lm_argv(out, text_file, "--eval_strategy", "no")) == 0
    assert "loss_rise" not in json.loads((out / "results.json").read_text())
    assert "training diverged" not in capsys.readouterr().out


def test_a_finite_loss_a_thousand_times_its_start_counts_as_diverged(tmp_path, text_file, capsys, monkeypatch):
    # a classifier at learning rate 1e30 can end with finite weights and a loss of 1e29: no trained model's
    monkeypatch.setattr(non_finite, "LOSS_DIVERGED_FACTOR", 1e-3)  # any loss counts: the refusal is tested
    out = tmp_path / "run"
    code = common.run_command(run_lm.main, lm_argv(out, text_file, "--eval_strategy", "no"))
    err = capsys.readouterr().err
    assert code == 2 and "training diverged: the training loss ended at" in err and "not saved" in err, err
    assert not (out / "model.safetensors").exists() and not (out / "results.json").exists()
    monkeypatch.setattr(non_finite, "LOSS_DIVERGED_FACTOR", 1000.0)
    non_finite.check_loss_rise([{"step": 1, "loss": 4.0}, {"step": 2, "loss": 3999.0}])  # flagged only
    with pytest.raises(non_finite.NonFiniteTrainingError, match="more than 1000 times its start"):
        non_finite.check_loss_rise([{"step": 1, "loss": 4.0}, {"step": 2, "loss": 4001.0}])
