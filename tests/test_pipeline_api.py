"""The declared pipeline API: the abstract hooks of ``Pipeline``, the data they pass on, and the typed entry
``run_pipeline`` that ``hfnn train``, the quickstart and the benchmarks start runs with."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hfnn.pipelines import common, run_classification, run_lm, run_seq2seq
from hfnn.pipelines.common import Pipeline, RunData, check_overrides, pipeline_class, run_pipeline
from tests.reliability_utils import shakespeare_text

HOOKS = ("load_data", "config_fields", "preprocess", "trainer_kwargs", "print_sample")
PIPELINES = (run_lm.LanguageModelingPipeline, run_classification.ClassificationPipeline, run_seq2seq.Seq2SeqPipeline)
TINY_RNN = {"hidden_size": 8, "embedding_size": 8, "num_hidden_layers": 1, "rnn_type": "gru"}


# ------------------------------------------------------------------------------------------ the hooks


def test_the_undeclared_hooks_are_the_abstract_methods_of_pipeline():
    assert Pipeline.__abstractmethods__ == frozenset(HOOKS)


@pytest.mark.parametrize("missing", HOOKS)
def test_a_pipeline_missing_a_hook_cannot_be_instantiated(missing, tmp_path):
    from types import SimpleNamespace

    body = {name: (lambda self, *args: None) for name in HOOKS if name != missing}
    partial = type("Partial", (Pipeline,), body)
    args = [SimpleNamespace(train_file=None, corpus="c"), SimpleNamespace(seed=0)]
    with pytest.raises(TypeError, match=f"abstract method.*{missing}"):
        partial(None, args[0], None, args[1], SimpleNamespace(work_dir=tmp_path))
    complete = type("Complete", (Pipeline,), {**body, missing: lambda self, *args: None})
    assert complete(None, args[0], None, args[1], SimpleNamespace(work_dir=tmp_path)).corpus == "c"


def test_every_hook_is_documented_and_the_pipelines_implement_them():
    hooks = ("inputs", "load_tokenizers", "load_kwargs", "prepare_model", "index_new_model", "facts", "evaluate",
             "finish", "title", *HOOKS)
    for name in hooks:
        assert (getattr(Pipeline, name).__doc__ or "").strip(), name
    for cls in PIPELINES:
        assert not cls.__abstractmethods__, cls
        assert pipeline_class(cls.task) is cls
    assert pipeline_class("lm") is run_lm.LanguageModelingPipeline  # an alias of the registry


def test_the_run_is_three_steps_over_the_loaded_data(monkeypatch):
    """``run`` loads the data and tokenizers, then trains, scores and reports, each step given what the one
    before it left."""
    calls = []
    pipeline = object.__new__(run_lm.LanguageModelingPipeline)
    data = RunData(raw={"train": []})
    monkeypatch.setattr(pipeline, "load_data", lambda: calls.append("load_data") or data, raising=False)
    monkeypatch.setattr(pipeline, "load_tokenizers", lambda d: calls.append(("load_tokenizers", d)) or {"": "tok"},
                        raising=False)
    monkeypatch.setattr(pipeline, "train", lambda d: calls.append(("train", d.tokenizer)) or "trained", raising=False)
    monkeypatch.setattr(pipeline, "score", lambda d, t: calls.append(("score", t)) or {"a": 1}, raising=False)
    monkeypatch.setattr(pipeline, "report", lambda d, t, r: calls.append(("report", r)) or {**r, "b": 2},
                        raising=False)
    assert pipeline.run() == {"a": 1, "b": 2}
    assert calls == ["load_data", ("load_tokenizers", data), ("train", "tok"), ("score", "trained"),
                     ("report", {"a": 1})]


# ------------------------------------------------------------------------------------------ run_pipeline


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "play.txt"
    path.write_text(shakespeare_text(3000), encoding="utf-8")
    return path


def _tiny_options(text_file, out) -> dict:
    return {"output_dir": str(out), "train_file": str(text_file), "config_overrides": TINY_RNN, "max_steps": 3,
            "block_size": 16, "per_device_train_batch_size": 4, "max_eval_samples": 4, "learning_rate": 0.01,
            "logging_steps": 1, "eval_strategy": "no", "save_strategy": "no", "report_to": "none",
            "disable_tqdm": True, "write_model_card": False, "num_samples": 1, "sample_max_new_tokens": 3,
            "max_train_minutes": 1, "anneal_by_time": False, "warmup_steps": 0}  # no schedule by the clock


def _as_argv(options: dict) -> list[str]:
    argv = []
    for key, value in options.items():
        value = json.dumps(value) if isinstance(value, dict) else str(value).lower() if isinstance(value, bool) \
            else str(value)
        argv += [f"--{key}", value]
    return argv


_TIMING = ("train_seconds", "eval_seconds", "cpu_threads")


def test_typed_overrides_give_the_same_run_as_the_command_line(tmp_path, text_file, monkeypatch):
    monkeypatch.setenv("HFNN_THREADS", "1")  # no thread tuner: the same reductions in both runs
    by_flags = run_lm.main(["rnn_shakespeare_char", *_as_argv(_tiny_options(text_file, tmp_path / "argv"))])
    run = run_pipeline("language-modeling", "rnn_shakespeare_char", **_tiny_options(text_file, tmp_path / "typed"))
    assert run.output_dir == tmp_path / "typed" and isinstance(run.results, dict)
    typed = run.results
    assert typed["train_steps"] == 3 and typed["config_overrides"].items() >= TINY_RNN.items()  # merged
    assert {k: v for k, v in typed.items() if k not in _TIMING} == {k: v for k, v in by_flags.items()
                                                                      if k not in _TIMING}
    config = [json.loads((tmp_path / name / "config.json").read_text()) for name in ("argv", "typed")]
    assert config[0] == config[1] and config[1]["hidden_size"] == 8
    weights = [load_file(tmp_path / name / "model.safetensors") for name in ("argv", "typed")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_typed_mapping_updates_the_recipe_mapping_and_flags_come_last(tmp_path, text_file):
    """``config_overrides`` as a dict merges into the recipe's mapping, like ``--config_overrides '{...}'``; flags
    in ``argv`` override the typed values. Parsing alone: nothing is trained."""
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"task": "language-modeling", "architecture": "rnn", "max_steps": 9,
                                  "config_overrides": {"hidden_size": 32, "rnn_type": "lstm"}}))
    model_args, data_args, run_args, training_args = run_lm.LanguageModelingPipeline.parse_args(
        [str(recipe), "--output_dir", str(tmp_path / "out"), "--block_size", "8"],
        check_overrides(run_lm.LanguageModelingPipeline.arguments,
                        {"config_overrides": {"hidden_size": 8}, "max_steps": 2, "block_size": 32,
                         "max_train_minutes": 2, "overwrite_output_dir": True}))
    assert model_args.config_overrides == {"hidden_size": 8, "rnn_type": "lstm"}
    assert training_args.max_steps == 2 and data_args.block_size == 8  # the flag beats the typed value
    assert run_args.max_train_minutes == 2.0 and isinstance(run_args.max_train_minutes, float)
    assert run_args.overwrite_output_dir is True


def test_an_unknown_override_is_an_error_naming_it(tmp_path, text_file):
    with pytest.raises(ValueError, match=r"the language-modeling pipeline has no option 'max_step' "
                                         r"\(did you mean 'max_steps'\?\)"):
        run_pipeline("lm", "rnn_shakespeare_char", output_dir=str(tmp_path / "out"), max_step=3)
    assert not (tmp_path / "out").exists()  # refused before the output folder is claimed


@pytest.mark.parametrize("name, value, expected", [
    ("max_steps", 1.5, "option max_steps of the seq2seq pipeline must be int, got float 1.5"),
    ("max_steps", True, "option max_steps of the seq2seq pipeline must be int, got bool True"),
    ("lowercase_source", "yes", "must be bool, got str 'yes'"),
    ("learning_rate", "0.1", "option learning_rate of the seq2seq pipeline must be float, got str '0.1'"),
    ("config_overrides", [1], "must be str or None, got list [1]"),
])
def test_a_value_of_the_wrong_type_is_an_error_naming_the_option(tmp_path, name, value, expected):
    with pytest.raises(ValueError) as err:
        run_pipeline("g2p", "rnn_seq2seq_cmudict", output_dir=str(tmp_path / "out"), **{name: value})
    assert expected in str(err.value)
    assert not (tmp_path / "out").exists()


def test_typed_values_are_given_as_the_command_line_would_give_them(tmp_path):
    checked = check_overrides(run_seq2seq.Seq2SeqPipeline.arguments, {
        "output_dir": tmp_path, "max_train_minutes": 2, "max_steps": 3, "eval_strategy": "no",
        "config_overrides": {"hidden_size": 8}, "max_train_samples": None, "report_to": ["none"]})
    assert checked["output_dir"] == str(tmp_path) and checked["max_train_minutes"] == 2.0
    assert isinstance(checked["max_train_minutes"], float) and type(checked["max_steps"]) is int
    assert checked["config_overrides"] == {"hidden_size": 8} and checked["max_train_samples"] is None


def test_an_unknown_task_is_an_error_naming_it():
    with pytest.raises(ValueError, match="speech"):
        run_pipeline("speech", "rnn_shakespeare_char")


def test_the_pipeline_modules_offer_the_one_typed_entry():
    """``hfnn train`` and the quickstart reach the entry through the task's training module (they stand below
    the pipelines)."""
    from hfnn.training.recipes import pipeline_module

    for task in ("language-modeling", "text-classification", "seq2seq"):
        assert pipeline_module(task).run_pipeline is common.run_pipeline


def test_rescoring_the_last_step_keeps_the_test_confusion_matrix_in_the_summary(tmp_path, capsys):
    """With weight averaging the validation split is scored again after the test split: the summary still
    names the test confusion matrix (a classification run, started with typed values)."""
    words = ["great", "fine", "fun", "dull", "bad", "boring"]
    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "".join(f"{a} and {b},{'pos' if i < 3 else 'neg'}\n"
                                             for i, a in enumerate(words) for b in words), encoding="utf-8")
    run = run_pipeline("classification", "mlp_rotten_tomatoes", output_dir=tmp_path / "out", train_file=data,
                       validation_file=data, test_file=data, config_overrides={"embedding_size": 4, "hidden_size": 4},
                       per_device_train_batch_size=4, max_steps=6, average_weights=0.5, eval_strategy="no",
                       save_strategy="no", load_best_model_at_end=False, num_samples=0, write_model_card=False,
                       report_to="none", disable_tqdm=True)
    assert run.output_dir == tmp_path / "out" and run.results["train_steps"] == 6
    assert "last_step_weights" in run.results["weight_averaging"] and "test_accuracy" in run.results
    assert f"confusion matrix: {run.output_dir / 'confusion_matrix.png'}" in capsys.readouterr().out
