"""The seq2seq training pipeline: a short real run on a CMUdict slice, local files, and the shipped recipes."""

import json

import pytest
from transformers import Seq2SeqTrainingArguments, pipeline

from hfnn.pipelines.common import RunArguments, load_recipe, parse_args
from hfnn.pipelines.run_seq2seq import DataArguments, ModelArguments, main

QUIET = [
    "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--write_model_card", "false",
    "--save_strategy", "no", "--max_train_minutes", "1",
]
SMALL_RNN = {"hidden_size": 64, "embedding_size": 32, "attention": "bahdanau", "dropout": 0.0}


def test_short_g2p_run_on_cmudict_lowers_the_loss_and_saves_a_working_folder(tmp_path):
    out = tmp_path / "g2p"
    results = main([
        "rnn_seq2seq_cmudict",
        "--output_dir", str(out),
        "--config_overrides", json.dumps(SMALL_RNN),
        "--max_train_samples", "1500",
        "--max_eval_samples", "60",
        "--max_test_samples", "60",
        "--num_train_epochs", "4",
        "--per_device_train_batch_size", "16",
        "--learning_rate", "0.01",
        "--warmup_steps", "10",
        "--logging_steps", "25",
        "--num_samples", "2",
        "--num_attention_examples", "2",
        *QUIET,
    ])
    assert results["train_examples"] == 1500 and results["metrics_kind"] == "g2p" and results["train_seconds"] < 60
    assert 0.0 <= results["test_wer"] <= 1.0 and 0.0 <= results["test_per"] and "validation_wer" in results
    for name in ("model.safetensors", "config.json", "tokenizer.json", "source_tokenizer/tokenizer.json",
                 "results.json", "loss_curve.png", "attention_heatmap.png", "modeling_rnn_seq2seq.py",
                 "pipeline_seq2seq.py"):
        assert (out / name).is_file(), name
    history = json.loads((out / "results.json").read_text())
    assert history["test_wer"] == pytest.approx(results["test_wer"]) and len(history["samples"]) == 2
    # the loss falls over the run (first logged training loss vs last)
    curve = [loss for _, loss in results["train_loss_curve"]]
    assert len(curve) >= 5 and curve[-1] < 0.75 * curve[0], curve
    # the saved folder is a working seq2seq-generation pipeline, and transformers can infer its task
    g2p = pipeline("seq2seq-generation", model=str(out))
    (record,) = g2p("cat", return_attentions=True)
    assert record["source_tokens"] == ["c", "a", "t"] and len(record["attentions"]) == len(record["generated_tokens"])
    assert pipeline(model=str(out), trust_remote_code=True)("cat") == g2p("cat")


def test_local_files_with_translation_metrics(tmp_path):
    pairs = [
        ("the cat is here now", "le chat est ici maintenant"),
        ("the dog is there now", "le chien est là maintenant"),
        ("a cat was here today", "un chat était ici aujourd'hui"),
        ("a dog was there today", "un chien était là aujourd'hui"),
    ]
    for split, rows in (("train", pairs * 10), ("dev", pairs)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps({"en": s, "fr": t}) + "\n" for s, t in rows))
    out = tmp_path / "mt"
    results = main([
        "rnn_seq2seq_cmudict",
        "--output_dir", str(out),
        "--train_file", str(tmp_path / "train.jsonl"),
        "--validation_file", str(tmp_path / "dev.jsonl"),
        "--test_file", str(tmp_path / "dev.jsonl"),
        "--source_column", "en",
        "--target_column", "fr",
        "--source_tokenizer_kind", "word",
        "--target_tokenizer_kind", "word",
        "--max_eval_samples", "4",
        "--config_overrides", json.dumps({**SMALL_RNN, "attention": "luong"}),
        "--num_train_epochs", "30",
        "--per_device_train_batch_size", "8",
        "--learning_rate", "0.01",
        "--warmup_steps", "0",
        "--logging_steps", "20",
        "--num_samples", "1",
        *QUIET,
    ])
    assert results["metrics_kind"] == "translation"
    assert results["test_bleu"] > 50 and results["test_chrf"] > 50, results
    translate = pipeline("seq2seq-generation", model=str(out))
    assert translate("the dog is there now") == [{"generated_text": "le chien est là maintenant"}]


def test_transformer_architecture_trains_through_the_same_pipeline(tmp_path):
    out = tmp_path / "tf"
    results = main([
        "transformer_seq2seq_cmudict",
        "--output_dir", str(out),
        "--config_overrides", json.dumps({"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
                                          "encoder_layers": 1, "decoder_layers": 1, "dropout": 0.0}),
        "--max_train_samples", "300",
        "--max_eval_samples", "20",
        "--max_test_samples", "20",
        "--num_train_epochs", "1",
        "--per_device_train_batch_size", "32",
        "--num_attention_examples", "1",
        *QUIET,
    ])
    assert results["architecture"] == "hfnn-transformer" and "test_per" in results
    assert (out / "attention_heatmap.png").is_file() or results["samples"][0]["predicted"] == ""


@pytest.mark.parametrize(
    "recipe",
    ["rnn_seq2seq_cmudict", "rnn_seq2seq_none_cmudict", "rnn_seq2seq_luong_cmudict", "transformer_seq2seq_cmudict",
     "rnn_seq2seq_kjv_french"],
)
def test_shipped_recipes_parse_and_build_their_models(recipe, tmp_path):
    from hfnn.pipelines.run_seq2seq import ARCHITECTURES, build_config, _overrides
    from hfnn.tokenization import train_tokenizer

    model_args, data_args, run_args, training_args = parse_args(
        (ModelArguments, DataArguments, RunArguments, Seq2SeqTrainingArguments),
        [recipe, "--output_dir", str(tmp_path)],
    )
    assert load_recipe(recipe)["task"] == "seq2seq" and model_args.architecture in ARCHITECTURES
    assert training_args.predict_with_generate and run_args.max_train_minutes <= 30
    source = train_tokenizer(["abc"], kind="char")
    target = train_tokenizer(["A B C"], kind="phoneme")
    config = build_config(model_args.architecture, source, target, _overrides(model_args.config_overrides),
                          model_args.max_source_length, model_args.max_target_length)
    assert config.is_encoder_decoder and config.vocab_size == len(target)
