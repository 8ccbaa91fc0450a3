"""The seq2seq training pipeline: a short real run on a CMUdict slice, local files, and the shipped recipes."""

import json

import pytest
import torch
from transformers import Seq2SeqTrainingArguments, pipeline

from hfnn.pipelines.common import RunArguments
from hfnn.pipelines.run_seq2seq import DataArguments, ModelArguments, main
from hfnn.training.recipes import load_recipe, parse_args

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
        "--logging_steps", "1",
        *QUIET,
        "--learning_rate", "0.003", "--warmup_steps", "0",  # the recipe warms up over 500 steps
        "--anneal_by_time", "false",
    ])
    assert results["architecture"] == "hfnn-transformer" and "test_per" in results
    assert results["train_steps"] == 10  # 300 examples, batches of 32, one epoch
    curve = [loss for _, loss in results["train_loss_curve"]]
    assert len(curve) == 10 and sum(curve[-3:]) < sum(curve[:3]) - 0.3, curve
    assert (out / "attention_heatmap.png").is_file() or results["samples"][0]["predicted"] == ""


@pytest.mark.parametrize(
    "recipe",
    ["rnn_seq2seq_cmudict", "rnn_seq2seq_none_cmudict", "rnn_seq2seq_luong_cmudict", "transformer_seq2seq_cmudict",
     "transformer_seq2seq_cmudict_long", "rnn_seq2seq_kjv_french"],
)
def test_shipped_recipes_parse_and_build_their_models(recipe, tmp_path):
    from types import SimpleNamespace

    from hfnn.data.tokenization import train_tokenizer
    from hfnn.models.pipeline_seq2seq import SOURCE_TOKENIZER_SUBFOLDER
    from hfnn.pipelines.common import build_config
    from hfnn.pipelines.run_seq2seq import ARCHITECTURES, Seq2SeqData, Seq2SeqPipeline
    from hfnn.training.recipes import parse_config_overrides

    model_args, data_args, run_args, training_args = parse_args(
        (ModelArguments, DataArguments, RunArguments, Seq2SeqTrainingArguments),
        [recipe, "--output_dir", str(tmp_path)],
    )
    assert load_recipe(recipe)["task"] == "seq2seq" and model_args.architecture in ARCHITECTURES
    assert (training_args.predict_with_generate
            and run_args.max_train_minutes <= (120 if recipe.endswith("_long") else 30))
    source = train_tokenizer(["abc"], kind="char")
    target = train_tokenizer(["A B C"], kind="phoneme")
    pipe = Seq2SeqPipeline(model_args, data_args, run_args, training_args, SimpleNamespace(work_dir=tmp_path))
    data = Seq2SeqData(raw=None, source="word", target="phonemes",
                       tokenizers={"": target, SOURCE_TOKENIZER_SUBFOLDER: source})
    config = build_config(model_args.architecture, "seq2seq", pipe.config_fields(data),
                          parse_config_overrides(model_args.config_overrides))
    assert config.is_encoder_decoder and config.vocab_size == len(target)


# ---- printed samples, the main process, and the command line


def tiny_run_argv(tmp_path, out, *extra):
    pairs = [("the cat", "le chat"), ("a dog", "un chien"), ("the dog", "le chien"), ("a cat", "un chat")]
    for split, rows in (("train", pairs * 3), ("dev", pairs)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps({"en": s, "fr": t}) + "\n" for s, t in rows))
    return [
        "rnn_seq2seq_cmudict", "--output_dir", str(out),
        "--train_file", str(tmp_path / "train.jsonl"), "--validation_file", str(tmp_path / "dev.jsonl"),
        "--test_file", str(tmp_path / "dev.jsonl"), "--source_column", "en", "--target_column", "fr",
        "--source_tokenizer_kind", "word", "--target_tokenizer_kind", "word",
        "--config_overrides", json.dumps({"hidden_size": 8, "embedding_size": 8, "attention": "bahdanau"}),
        "--max_steps", "1", "--eval_strategy", "no", "--generation_num_beams", "1", *QUIET, *extra,
    ]


def test_fine_tuning_a_saved_folder_starts_from_its_weights(tmp_path):
    from tests.reliability_utils import assert_same_weights, load_weights

    first = tmp_path / "first"
    main(tiny_run_argv(tmp_path, first, "--num_samples", "0", "--num_attention_examples", "0", "--max_steps", "3",
                       "--learning_rate", "0.05"))
    saved = load_weights(first)
    tune = ["--model_name_or_path", str(first), "--num_samples", "0", "--num_attention_examples", "0",
            "--warmup_steps", "0", "--anneal_by_time", "false"]
    # learning rate 0: the saved tensors come through the run unchanged (a model built from the config would not)
    still = main(tiny_run_argv(tmp_path, tmp_path / "lr0", *tune, "--learning_rate", "0"))
    assert still["train_steps"] == 1
    assert_same_weights(load_weights(tmp_path / "lr0"), saved, "fine-tuned with learning rate 0 vs saved")
    # a real fine-tuning run changes them, and keeps both tokenizers of the saved folder
    main(tiny_run_argv(tmp_path, tmp_path / "ft", *tune, "--learning_rate", "0.05", "--max_steps", "2"))
    tuned = load_weights(tmp_path / "ft")
    assert any(not torch.equal(tuned[k], saved[k]) for k in saved)
    for name in ("tokenizer.json", "source_tokenizer/tokenizer.json"):
        assert (tmp_path / "ft" / name).read_text() == (first / name).read_text(), name


def test_pick_sample_rows_spreads_the_picks_and_zero_means_none(tmp_path):
    from hfnn.pipelines.run_seq2seq import pick_sample_rows

    assert pick_sample_rows(10, 0, 0) == [] and pick_sample_rows(0, 3, 4) == []
    assert pick_sample_rows(10, 3, 0) == [0, 4, 9] and pick_sample_rows(10, 0, 4) == [0, 3, 6, 9]
    assert pick_sample_rows(2, 5, 1) == [0, 1]
    for args, name in (((10, -1, 0), "num_samples"), ((10, 0, -2), "num_attention_examples")):
        with pytest.raises(ValueError, match=f"{name} must be an integer >= 0"):
            pick_sample_rows(*args)
    # negative values are refused when the arguments are parsed, before anything is trained
    for flag in ("--num_samples", "--num_attention_examples"):
        with pytest.raises(ValueError, match=flag[2:] + " must be an integer >= 0"):
            parse_args((ModelArguments, DataArguments, RunArguments, Seq2SeqTrainingArguments),
                       ["rnn_seq2seq_cmudict", "--output_dir", str(tmp_path), flag, "-1"])


def test_zero_samples_prints_none(tmp_path, capsys):
    out = tmp_path / "out"
    results = main(tiny_run_argv(tmp_path, out, "--num_samples", "0", "--num_attention_examples", "0"))
    printed = capsys.readouterr().out.splitlines()
    # the closing summary prints each split's scores (and, with --num_samples 0, no sample line)
    for split in ("validation", "test"):
        line = next((ln for ln in printed if ln.startswith(f"{split}: ")), None)
        assert line is not None and f"bleu {results[f'{split}_bleu']:.4f}" in line, printed[-8:]
    assert not [ln for ln in printed if ln.startswith("- '")], printed[-8:]
    assert results["samples"] == [] and results["attention_heatmap"] is None
    assert json.loads((out / "results.json").read_text())["samples"] == []
    assert not (out / "attention_heatmap.png").exists()


def test_only_the_main_process_writes_the_output_folder(tmp_path, monkeypatch):
    from transformers import Trainer

    monkeypatch.setattr(Trainer, "is_world_process_zero", lambda self: False)  # as on process 1 of 2
    out = tmp_path / "out"
    results = main(tiny_run_argv(tmp_path, out, "--num_samples", "2", "--write_model_card", "true"))
    assert results["samples"] == [] and "test_bleu" in results
    assert sorted(p.name for p in out.iterdir()) == [], "only the main process may write the output folder"


def test_command_line_user_error_is_one_line_with_exit_status_2(tmp_path):
    from tests.reliability_utils import run_cli

    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    proc = run_cli(["-m", "hfnn.pipelines.run_seq2seq", "rnn_seq2seq_cmudict", "--output_dir", str(out)], cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith("run_seq2seq: error: output_dir ") and str(out) in lines[0] and "not empty" in lines[0]
    assert (out / "keep.txt").read_text() == "user data"


def test_a_recipe_that_leaves_the_beams_unset_generates_with_the_models_default(tmp_path):
    """transformers v5's GenerationConfig leaves an unset num_beams None; a user's recipe without
    generation_num_beams once crashed after training, when the samples were generated with num_beams=None."""
    argv = tiny_run_argv(tmp_path, tmp_path / "out", "--num_samples", "2", "--num_attention_examples", "0")
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("task: seq2seq\narchitecture: rnn_seq2seq\nsource_tokenizer_kind: word\n"
                      "target_tokenizer_kind: word\n")
    beams = argv.index("--generation_num_beams")
    argv = [str(recipe), *argv[1:beams], *argv[beams + 2:]]
    results = main(argv)
    assert results["generation_num_beams"] == 1 and len(results["samples"]) == 2
    generator = pipeline("seq2seq-generation", model=str(tmp_path / "out"))
    assert generator("the cat", num_beams=None) == generator("the cat")


def test_the_pipeline_generates_to_score_unless_told_not_to(tmp_path):
    """transformers leaves ``predict_with_generate`` off, which scores a seq2seq model by its loss alone; the
    seq2seq pipeline turns it on by default, and a recipe or the command line can still turn it off."""
    from hfnn.pipelines.run_seq2seq import Seq2SeqPipeline

    recipe = tmp_path / "mine.yaml"
    recipe.write_text("task: seq2seq\narchitecture: rnn_seq2seq\n")
    off = tmp_path / "off.yaml"
    off.write_text("task: seq2seq\narchitecture: rnn_seq2seq\npredict_with_generate: false\n")
    out = ["--output_dir", str(tmp_path / "out")]
    assert Seq2SeqPipeline.parse_args([str(recipe), *out])[-1].predict_with_generate is True
    assert Seq2SeqPipeline.parse_args([str(recipe), *out, "--predict_with_generate", "false"])[-1] \
        .predict_with_generate is False
    assert Seq2SeqPipeline.parse_args([str(off), *out])[-1].predict_with_generate is False
    assert Seq2SeqPipeline.parse_args([str(off), *out, "--predict_with_generate", "true"])[-1].predict_with_generate
    # the defaults belong to the seq2seq pipeline, not to the parser every pipeline shares
    assert parse_args((ModelArguments, DataArguments, RunArguments, Seq2SeqTrainingArguments),
                      [str(recipe), *out])[-1].predict_with_generate is False


# ---------------------------------------------------------------- the columns and metrics of a seq2seq corpus


def test_seq2seq_columns_and_metrics_are_resolved_by_one_rule():
    """The pipeline and `hfnn evaluate` call resolve_seq2seq_columns: word/phonemes before source/target, the
    references column when there is one, g2p for a phoneme target, references or a recorded g2p task."""
    from hfnn.data.corpora import resolve_seq2seq_columns

    cmudict = resolve_seq2seq_columns(["word", "phonemes", "references"])
    assert (cmudict.source, cmudict.target, cmudict.references, cmudict.kind) == ("word", "phonemes", "references",
                                                                                  "g2p")
    assert cmudict.metrics == ("wer", "per")
    both = resolve_seq2seq_columns(["source", "target", "word", "phonemes"])
    assert (both.source, both.target) == ("word", "phonemes")
    french = resolve_seq2seq_columns(["source", "target", "book"])
    assert (french.source, french.target, french.references, french.kind) == ("source", "target", None,
                                                                              "translation")
    assert french.metrics == ("bleu", "chrf")
    assert resolve_seq2seq_columns(["source", "target"], phoneme_target=True).kind == "g2p"
    assert resolve_seq2seq_columns(["source", "target"], task="grapheme-to-phoneme").kind == "g2p"
    assert resolve_seq2seq_columns(["word", "phonemes"], metrics="translation").kind == "translation"
    given = resolve_seq2seq_columns(["spelling", "phonemes", "word"], source="spelling")
    assert (given.source, given.target) == ("spelling", "phonemes")  # a given column wins over the default pair
    rows = {"target": ["a", "b"], "refs": [["a", "A"], "b"]}
    assert resolve_seq2seq_columns(["source", "target", "refs"], references="refs").references_of(rows) == \
        [["a", "A"], ["b"]]
    assert french.references_of(rows) == [["a"], ["b"]]
    with pytest.raises(ValueError, match=r"no source/target \(or word/phonemes\) columns .*set source_column"):
        resolve_seq2seq_columns(["text", "label"])
    with pytest.raises(ValueError, match=r"no 'phonemes' column .*set --target-column"):
        resolve_seq2seq_columns(["source"], source="source", target="phonemes",
                                options=("--source-column", "--target-column"))
    with pytest.raises(ValueError, match="references_column 'refs' is not a column"):
        resolve_seq2seq_columns(["source", "target"], references="refs")
    with pytest.raises(ValueError, match="metrics must be auto, g2p or translation, got 'bleu'"):
        resolve_seq2seq_columns(["source", "target"], metrics="bleu")
