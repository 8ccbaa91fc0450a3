"""The text-classification pipeline: a short real training run on Rotten Tomatoes, local files with
string / float labels, fine-tuning a saved folder, and the shipped recipes."""

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainingArguments, pipeline

import hfnn
from hfnn.pipelines.common import RunArguments, build_config
from hfnn.pipelines.run_classification import DataArguments, ModelArguments, main
from hfnn.training.recipes import parse_args

LOGGING = ["--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0"]
QUIET = LOGGING + ["--write_model_card", "false"]


def test_cnn_on_a_slice_of_rotten_tomatoes_beats_the_majority_class(tmp_path):
    out = tmp_path / "cnn"
    results = main([
        "cnn_rotten_tomatoes",
        "--output_dir", str(out),
        "--config_overrides", json.dumps({"embedding_size": 48, "num_filters": 24, "window_sizes": [2, 3, 4]}),
        "--max_train_samples", "2000",
        "--max_eval_samples", "400",
        "--num_train_epochs", "4",
        "--per_device_train_batch_size", "32",
        "--learning_rate", "0.005",
        "--eval_strategy", "no",
        "--save_strategy", "no",
        "--load_best_model_at_end", "false",
        "--logging_steps", "10",
        "--num_samples", "2",
        *LOGGING,
    ])
    assert results["train_examples"] == 2000
    assert results["test_accuracy"] > results["test_majority_class_accuracy"] + 0.02, results
    assert 0.0 < results["test_f1"] <= 1.0 and 0.0 < results["validation_accuracy"] <= 1.0
    for name in ("model.safetensors", "config.json", "tokenizer.json", "results.json", "loss_curve.png",
                 "confusion_matrix.png", "modeling_cnn.py", "README.md"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert len(saved["samples"]) == 2 and saved["samples"][0]["predicted"] in ("rotten", "fresh")
    # the saved folder is a working text classifier with the corpus' label names
    classifier = pipeline("text-classification", model=str(out))
    assert {r["label"] for r in classifier("a dull , lifeless mess", top_k=None)} == {"rotten", "fresh"}


def write_csv(path, rows):
    path.write_text("review,sentiment\n" + "".join(f'"{t}",{y}\n' for t, y in rows), encoding="utf-8")
    return str(path)


GOOD = ["a great film", "wonderful acting", "great fun", "truly wonderful", "a fine great story", "fun and fine"]
BAD = ["a dull film", "boring acting", "dull mess", "truly boring", "a bad dull story", "bad and boring"]


def test_local_csv_with_string_labels_then_fine_tune_the_saved_folder(tmp_path, caplog):
    rows = [(t, "pos") for t in GOOD] + [(t, "neg") for t in BAD]
    train = write_csv(tmp_path / "train.csv", rows * 3)
    dev = write_csv(tmp_path / "dev.csv", rows)
    common = ["--train_file", train, "--validation_file", dev, "--test_file", dev, "--text_column", "review",
              "--label_column", "sentiment", "--per_device_train_batch_size", "8", "--learning_rate", "0.02",
              "--save_strategy", "no", "--logging_steps", "5", "--num_samples", "1", *QUIET]
    first = main(["mlp_rotten_tomatoes", "--output_dir", str(tmp_path / "a"), "--max_steps", "40",
                  "--config_overrides", json.dumps({"embedding_size": 16, "hidden_size": 16, "dropout": 0.0}),
                  "--eval_strategy", "no", "--load_best_model_at_end", "false", *common])
    assert first["labels"] == ["neg", "pos"] and first["problem_type"] == "single_label_classification"
    assert first["test_accuracy"] == 1.0  # a separable toy set
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["model_type"] == "hfnn-mlp"

    second = main(["mlp_rotten_tomatoes", "--model_name_or_path", str(tmp_path / "a"),
                   "--output_dir", str(tmp_path / "b"), "--max_steps", "2", "--eval_strategy", "no",
                   "--load_best_model_at_end", "false", *common])
    assert second["architecture"] == "hfnn-mlp" and second["tokenizer_kind"] == "loaded"
    # the recipe's sizes shape new models only: the saved model keeps its config, and the run says so
    assert "config_overrides not applied to the saved model" in caplog.text and "(saved: 16)" in caplog.text
    assert json.loads((tmp_path / "b" / "config.json").read_text())["hidden_size"] == 16
    assert second["test_accuracy"] == 1.0  # it started from the trained weights
    # learning rate 0: the run starts from the saved tensors and leaves them unchanged
    from tests.reliability_utils import assert_same_weights, load_weights

    main(["mlp_rotten_tomatoes", "--model_name_or_path", str(tmp_path / "a"), "--output_dir", str(tmp_path / "c"),
          "--max_steps", "1", "--eval_strategy", "no", "--load_best_model_at_end", "false", *common,
          "--learning_rate", "0", "--warmup_steps", "0", "--num_samples", "0"])  # the last value of a flag counts
    assert_same_weights(load_weights(tmp_path / "c"), load_weights(tmp_path / "a"), "fine-tuned with learning rate 0")


def test_ngram_tables_of_a_new_mlp_are_read_off_the_run_data_and_kept_when_fine_tuned(tmp_path):
    """With char_ngram_range, the run fills the new model's character n-gram table from the tokenizer it trains,
    and with ngram_vocabulary its n-gram vocabulary from the training texts, so both take part in training; a
    fine-tuned saved model keeps its own tables."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hfnn.models.modeling_mlp import char_ngrams

    rows = [(t, "pos") for t in GOOD] + [(t, "neg") for t in BAD]
    train = write_csv(tmp_path / "train.csv", rows * 3)
    dev = write_csv(tmp_path / "dev.csv", rows)
    common = ["--train_file", train, "--validation_file", dev, "--test_file", dev, "--text_column", "review",
              "--label_column", "sentiment", "--eval_strategy", "no", "--save_strategy", "no",
              "--load_best_model_at_end", "false", "--num_samples", "0", *QUIET]  # every row of train.csv trains
    overrides = {"embedding_size": 8, "hidden_size": 8, "ngram_range": [1, 2], "ngram_vocabulary": True,
                 "ngram_buckets": 64, "char_ngram_range": [3, 4], "char_ngram_buckets": 512,
                 "char_ngrams_per_token": 12}
    main(["mlp_rotten_tomatoes", "--output_dir", str(tmp_path / "a"), "--max_steps", "3",
          "--config_overrides", json.dumps(overrides), *common])
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "a")
    table = model.base_model.embeddings.char_ngram_ids
    word = tokenizer.convert_ids_to_tokens(tokenizer("wonderful", add_special_tokens=False)["input_ids"])
    assert word == ["wonderful"]
    row = table[tokenizer.convert_tokens_to_ids("wonderful")]
    assert int((row >= 0).sum()) == min(12, len(char_ngrams("wonderful", 3, 4)))
    assert (table[tokenizer.pad_token_id] == -1).all()  # special tokens have no character n-grams
    # the vocabulary holds exactly the bigrams of the training texts
    from hfnn.models.modeling_mlp import ngram_keys

    bigrams = {int(k) for t in GOOD + BAD
               for k in ngram_keys(torch.tensor([tokenizer(t)["input_ids"]]), 2, len(tokenizer))[0]}
    vocabulary = model.base_model.embeddings.ngram_vocabulary
    assert set(vocabulary[: len(bigrams)].tolist()) == bigrams and (vocabulary[len(bigrams) :] == 2**63 - 1).all()

    main(["mlp_rotten_tomatoes", "--model_name_or_path", str(tmp_path / "a"), "--output_dir", str(tmp_path / "b"),
          "--max_steps", "1", *common])
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "b").base_model.embeddings
    assert torch.equal(again.char_ngram_ids, table) and torch.equal(again.ngram_vocabulary, vocabulary)


def test_shipped_recipe_as_configured_ends_with_its_best_checkpoint(tmp_path):
    """mlp_rotten_tomatoes unchanged but for the data: per-epoch evaluation and saving, load_best_model_at_end
    on accuracy. The saved model is the best evaluated checkpoint's, and the reported validation accuracy
    is that best one."""
    from tests.reliability_utils import assert_same_weights, load_weights

    rows = [(t, "pos") for t in GOOD] + [(t, "neg") for t in BAD]
    train = write_csv(tmp_path / "train.csv", rows * 3)
    dev = write_csv(tmp_path / "dev.csv", rows)
    out = tmp_path / "out"
    results = main(["mlp_rotten_tomatoes", "--output_dir", str(out), "--train_file", train, "--validation_file", dev,
                    "--test_file", dev, "--text_column", "review", "--label_column", "sentiment",
                    "--per_device_train_batch_size", "4", "--num_samples", "0", *QUIET])
    (checkpoint,) = out.glob("checkpoint-*")  # save_total_limit: 1 keeps the best one
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] and Path(state["best_model_checkpoint"]).name == checkpoint.name
    # the toy set is learnt after the first epoch (accuracy 1.0 ties, the first best stays), so the best
    # checkpoint is not the last step and keeping the last weights would differ
    assert state["best_global_step"] < results["train_steps"] == 27, (state["best_global_step"], results["train_steps"])
    (best_eval,) = [h for h in state["log_history"] if h.get("step") == state["best_global_step"] and "eval_loss" in h]
    assert state["best_metric"] == best_eval["eval_accuracy"] == results["validation_accuracy"]
    assert results["validation_loss"] == pytest.approx(best_eval["eval_loss"], rel=1e-5)
    best_folder = checkpoint
    assert_same_weights(load_weights(out), load_weights(best_folder), "saved model vs best checkpoint")


def test_float_labels_train_a_regression_head(tmp_path):
    rows = [(t, 0.9) for t in GOOD] + [(t, 0.1) for t in BAD]
    train = write_csv(tmp_path / "train.csv", rows * 2)
    argv = ["mlp_rotten_tomatoes", "--train_file", train, "--text_column", "review", "--label_column", "sentiment",
            "--max_steps", "3", "--config_overrides", json.dumps({"embedding_size": 8, "hidden_size": 8}),
            "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
            "--num_samples", "0", *QUIET]
    # fractional labels are not classes: without --problem_type regression the error names the file row
    with pytest.raises(ValueError, match=r"train\.csv row \d+: the label 0\.9 is not a class.*regression"):
        main([*argv, "--output_dir", str(tmp_path / "c")])
    results = main([*argv, "--output_dir", str(tmp_path / "r"), "--problem_type", "regression"])
    assert results["problem_type"] == "regression"
    assert "test_mse" in results and "test_accuracy" not in results
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1


def test_unknown_architecture_and_missing_columns_are_explained(tmp_path):
    rows = [(t, "pos") for t in GOOD] + [(t, "neg") for t in BAD]
    train = write_csv(tmp_path / "train.csv", rows)
    with pytest.raises(ValueError, match="'text' column"):
        main(["--architecture", "mlp", "--train_file", train, "--output_dir", str(tmp_path / "x"), *QUIET])
    with pytest.raises(ValueError, match="Unknown architecture 'lstm'"):
        main(["--architecture", "lstm", "--train_file", train, "--text_column", "review", "--label_column",
              "sentiment", "--output_dir", str(tmp_path / "y"), *QUIET])


@pytest.mark.parametrize(
    "recipe, config_name, expected",
    [
        ("cnn_rotten_tomatoes", "CnnConfig", {"window_sizes": [3, 4, 5], "num_filters": 100, "dropout": 0.5,
                                              "max_norm": 3.0, "embedding_mode": "rand", "embedding_size": 128}),
        ("mlp_rotten_tomatoes", "MlpConfig", {"activation": "relu", "ngram_range": [1, 2], "ngram_vocabulary": True}),
        ("mlp_ngrams_rotten_tomatoes", "MlpConfig", {"num_hidden_layers": 0, "ngram_range": [1, 2],
                                                     "ngram_vocabulary": True}),
        ("rnn_rotten_tomatoes", "RnnConfig", {"rnn_type": "gru", "bidirectional": True}),
    ],
)
def test_shipped_recipes_parse_and_build_their_model(tmp_path, recipe, config_name, expected):
    from hfnn.data.tokenization import train_tokenizer

    model_args, data_args, run_args, training_args = parse_args(
        (ModelArguments, DataArguments, RunArguments, TrainingArguments), [recipe, "--output_dir", str(tmp_path)]
    )
    assert run_args.task == "text-classification" and data_args.corpus == "rotten_tomatoes"
    assert model_args.tokenizer_kind == "word" and model_args.lowercase
    tokenizer = train_tokenizer(["a good film", "a bad film"], kind="word", lowercase=True)
    config = build_config(model_args.architecture, "text-classification",
                          {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                           "id2label": {0: "rotten", 1: "fresh"}, "label2id": {"rotten": 0, "fresh": 1},
                           "problem_type": "single_label_classification"}, model_args.config_overrides)
    assert type(config).__name__ == config_name
    assert {k: getattr(config, k) for k in expected} == expected
    assert config.id2label == {0: "rotten", 1: "fresh"} and config.vocab_size == len(tokenizer)
    if recipe.startswith("cnn"):
        assert training_args.per_device_train_batch_size == 50
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_config(config)
    logits = model(**tokenizer(["a good film"], return_tensors="pt")).logits
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()
    assert model_args.architecture in hfnn.ARCHITECTURES


def test_command_line_user_error_is_one_line_with_exit_status_2(tmp_path, monkeypatch, capsys):
    from tests.test_run_lm import run_as_command

    (tmp_path / "keep.txt").write_text("user data")
    code = run_as_command("hfnn.pipelines.run_classification", ["cnn_rotten_tomatoes", "--output_dir", str(tmp_path)],
                          monkeypatch)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"run_classification: error: output_dir {tmp_path} already exists and is not empty")
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_only_the_main_process_writes_the_output_folder(tmp_path, monkeypatch):
    from transformers import Trainer

    rows = [(t, "pos") for t in GOOD] + [(t, "neg") for t in BAD]
    train, dev = write_csv(tmp_path / "train.csv", rows), write_csv(tmp_path / "dev.csv", rows)
    monkeypatch.setattr(Trainer, "is_world_process_zero", lambda self: False)  # as on process 1 of 2
    out = tmp_path / "out"
    results = main(["mlp_rotten_tomatoes", "--output_dir", str(out), "--train_file", train, "--validation_file", dev,
                    "--test_file", dev, "--text_column", "review", "--label_column", "sentiment", "--max_steps", "1",
                    "--config_overrides", json.dumps({"embedding_size": 8, "hidden_size": 8}),
                    "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
                    "--num_samples", "2", "--write_model_card", "true", *LOGGING])
    assert results["samples"] == [] and "test_accuracy" in results
    assert sorted(p.name for p in out.iterdir()) == [], "only the main process may write the output folder"
