"""Weight averaging (``--average_weights F``): the saved model is the mean of the weights of every step in the
last fraction F of training, and the last step's weights are scored beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerControl, TrainerState

from hfnn import training
from hfnn.pipelines import run_classification
from tests.test_resume import checkpointing_classifier_argv


def step_through(callback, model, steps: int, max_steps: int) -> list[torch.Tensor]:
    """Sets the model's weight to the step number at each step and runs the callback's step end; returns the
    weights each step left."""
    state = TrainerState(max_steps=max_steps)
    seen = []
    for step in range(1, steps + 1):
        state.global_step = step
        with torch.no_grad():
            model.weight.fill_(float(step))
            model.bias.fill_(-float(step))
        seen.append(model.weight.detach().clone())
        callback.on_step_end(None, state, TrainerControl(), model=model)
    callback.on_train_end(None, state, TrainerControl(), model=model)
    return seen


def test_the_model_ends_with_the_mean_of_the_last_fraction_of_steps():
    model = torch.nn.Linear(3, 2)
    callback = training.WeightAveragingCallback(0.4)
    step_through(callback, model, 10, max_steps=10)
    # steps 6-10 are the last 40 %: their mean is 8
    assert callback.steps == 5 and callback.first_step == 6
    assert torch.equal(model.weight, torch.full((2, 3), 8.0)) and torch.equal(model.bias, torch.full((2,), -8.0))
    callback.swap_final_weights(model)
    assert torch.equal(model.weight, torch.full((2, 3), 10.0)) and torch.equal(model.bias, torch.full((2,), -10.0))
    callback.swap_final_weights(model)
    assert torch.equal(model.weight, torch.full((2, 3), 8.0))


def test_a_time_budget_sets_where_the_average_starts():
    now = [0.0]
    budget = training.TimeBudgetCallback(minutes=1.0, clock=lambda: now[0])
    budget.on_train_begin(None, TrainerState(), TrainerControl())
    callback = training.WeightAveragingCallback(0.25, budget)
    model = torch.nn.Linear(1, 1)
    state = TrainerState(max_steps=10_000)
    for step, seconds in enumerate((10.0, 30.0, 44.0, 46.0, 50.0, 60.0), start=1):
        now[0], state.global_step = seconds, step
        with torch.no_grad():
            model.weight.fill_(seconds)
        callback.on_step_end(None, state, TrainerControl(), model=model)
    callback.on_train_end(None, state, TrainerControl(), model=model)
    # the last quarter of the minute starts at 45 s: the steps at 46, 50 and 60 s
    assert callback.first_step == 4 and callback.steps == 3
    assert model.weight.item() == pytest.approx(52.0)


def test_a_run_that_ends_before_the_tail_keeps_its_weights():
    model = torch.nn.Linear(2, 2)
    callback = training.WeightAveragingCallback(0.1)
    seen = step_through(callback, model, 5, max_steps=100)
    assert callback.steps == 0 and callback.final_weights is None
    assert torch.equal(model.weight, seen[-1])


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5, float("nan"), "half"])
def test_the_fraction_must_be_in_zero_one(fraction):
    with pytest.raises(ValueError, match="--average_weights must be a fraction"):
        training.WeightAveragingCallback(fraction)


def test_the_pipeline_saves_the_average_and_scores_the_last_step_beside_it(tmp_path):
    out = tmp_path / "run"
    argv = checkpointing_classifier_argv(tmp_path, out, "--max_steps", "8", "--save_total_limit", "8",
                                         "--learning_rate", "0.05", "--average_weights", "0.45")
    results = run_classification.main(argv)
    averaging = results["weight_averaging"]
    # the recipe's time budget is far off: the run's end is its 8th step, and the last 45 % are steps 5-8
    assert averaging["fraction"] == 0.45 and averaging["steps"] == 4 and averaging["from_step"] == 5
    saved = load_file(out / "model.safetensors")
    steps = [load_file(out / f"checkpoint-{i}" / "model.safetensors") for i in range(5, 9)]
    for name, tensor in saved.items():
        if not tensor.is_floating_point():  # an index buffer, the same in every step
            assert all(torch.equal(tensor, s[name]) for s in steps), name
            continue
        mean = torch.stack([s[name] for s in steps]).mean(0)
        torch.testing.assert_close(tensor, mean, rtol=1e-5, atol=1e-6, msg=name)
    assert not all(torch.equal(saved[n], steps[-1][n]) for n in saved), "the saved weights are the last step's"
    last = averaging["last_step_weights"]
    assert set(last) >= {"validation_loss", "validation_accuracy"}
    assert last["validation_loss"] != results["validation_loss"]
    assert json.loads((out / "results.json").read_text())["weight_averaging"] == averaging


def test_the_pipeline_checks_the_fraction_before_loading_data(tmp_path):
    argv = checkpointing_classifier_argv(tmp_path, tmp_path / "run", "--average_weights", "2")
    with pytest.raises(ValueError, match="--average_weights must be the fraction of training"):
        run_classification.main(argv)
    with pytest.raises(ValueError, match="--average_weights and --lora_r cannot be used together"):
        run_classification.main(checkpointing_classifier_argv(tmp_path, tmp_path / "run", "--average_weights",
                                                              "0.5", "--lora_r", "2"))
    assert not Path(tmp_path / "run").exists()


def test_a_resumed_run_goes_on_with_the_average_its_checkpoint_holds(tmp_path, caplog):
    import shutil

    from hfnn.pipelines.checkpoints import CHECKPOINT_MARKER, checkpoint_problem

    first = tmp_path / "first"
    argv = ["--max_steps", "8", "--save_total_limit", "8", "--learning_rate", "0.05", "--num_samples", "0"]
    whole = run_classification.main(checkpointing_classifier_argv(tmp_path, first, *argv, "--average_weights", "0.45"))
    # the tail is steps 5-8: only its checkpoints hold the running mean, inside their commit marker
    for step in range(1, 9):
        assert (first / f"checkpoint-{step}" / training.AVERAGE_FILE).is_file() == (step >= 5), step
    assert checkpoint_problem(first / "checkpoint-6") is None
    marker = json.loads((first / "checkpoint-6" / CHECKPOINT_MARKER).read_text())
    assert training.AVERAGE_FILE in json.dumps(marker)

    def resume(name: str, fraction: str) -> tuple[dict, Path]:
        out = tmp_path / name
        out.mkdir()
        shutil.copytree(first / "checkpoint-6", out / "checkpoint-6")
        results = run_classification.main(checkpointing_classifier_argv(
            tmp_path, out, *argv, "--average_weights", fraction, "--resume_from_checkpoint", "true"))
        return results, out

    resumed, out = resume("resumed", "0.45")
    assert resumed["weight_averaging"]["steps"] == 4 and resumed["weight_averaging"]["from_step"] == 5
    expected, got = load_file(first / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    assert resumed["validation_loss"] == pytest.approx(whole["validation_loss"], rel=1e-5)

    # another fraction: the saved mean is of other steps, so the average starts afresh (steps 7-8 of 8)
    with caplog.at_level("WARNING", logger="hfnn.training.averaging"):
        other, _ = resume("other", "0.2")
    assert other["weight_averaging"]["steps"] == 2 and other["weight_averaging"]["from_step"] == 7
    assert "the average starts afresh" in caplog.text
