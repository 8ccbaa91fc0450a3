"""The `hfnn` command line, called in-process through hfnn.apps.cli.main (one real subprocess checks the exit
status)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

import hfnn.apps.cli as cli
from hfnn.apps.cli import main, phoneme_scores
from tests.test_hub import save_tiny_model

SUBCOMMANDS = ["train", "generate", "classify", "transduce", "predict", "evaluate", "corpora", "recipes", "push",
               "quickstart", "export"]
LM_TEXT = "Romeo. what light through yonder window breaks\nJuliet. it is the east\n" * 30


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    save_tiny_model("rnn", "AutoModelForCausalLM", root / "lm")
    save_tiny_model("cnn", "AutoModelForSequenceClassification", root / "cnn")
    save_tiny_model("rnn_seq2seq", "AutoModelForSeq2SeqLM", root / "g2p")
    return root


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- help and misuse


@pytest.mark.parametrize("command", SUBCOMMANDS + [["corpora", "list"], ["corpora", "show"]])
def test_every_subcommand_has_help(capsys, command):
    argv = command if isinstance(command, list) else [command]
    code, out, _ = run(capsys, *argv, "--help")
    assert code == 0
    assert out.startswith("usage: hfnn " + " ".join(argv))


def test_top_level_help_and_no_command(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and all(c in out for c in SUBCOMMANDS)
    code, out, _ = run(capsys)
    assert code == 2 and "usage: hfnn" in out


@pytest.mark.parametrize("argv,message", [
    (["bogus"], "invalid choice: 'bogus'"),
    (["generate"], "the following arguments are required: model, PROMPT"),
    (["generate", "{root}/missing", "hi"], "no such model folder: {root}/missing"),
    (["generate", "{root}/lm/config.json", "hi"], "is a file, not a saved model folder"),
    (["generate", "{root}", "hi"], "is not a saved model folder (no config.json)"),
    (["generate", "{root}/bert", "hi"], "is not an hfnn model folder (model_type 'bert'"),
    (["classify", "{root}/lm", "hi"],
     "holds a language model (RnnForCausalLM), not a text classifier; use `hfnn generate`"),
    (["generate", "{root}/cnn", "hi"],
     "holds a text classifier (CnnForSequenceClassification), not a language model; use `hfnn classify`"),
    (["transduce", "{root}/lm", "hi"], "not a sequence-to-sequence model; use `hfnn generate`"),
    (["generate", "{root}/lm", "hi", "--num-beams", "0"], "--num-beams must be at least 1"),
    (["train", "no_such_recipe"], "is neither a file nor a shipped recipe"),
    (["train", "--max_steps", "3"], "give a recipe (see `hfnn recipes`) or both --architecture and --task"),
    (["train", "--architecture", "cnn", "--task", "painting"], "unknown task 'painting'"),
    (["corpora", "show", "nope"], "Unknown corpus 'nope'"),
    (["recipes", "nope"], "is neither a file nor a shipped recipe"),
    (["push", "{root}/missing", "me/x", "--dry-run"], "no such model folder"),
    (["push", "{root}/bert", "me/x", "--dry-run"], "has no auto_map"),
    (["evaluate", "{root}/lm", "--file", "{root}/missing.txt"], "no such file"),
])
def test_misuse_is_one_line_on_stderr_and_exit_code_2(capsys, models, argv, message):
    (models / "bert").mkdir(exist_ok=True)
    (models / "bert" / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    code, out, err = run(capsys, *[a.format(root=models) for a in argv])
    assert code == 2
    assert message.format(root=models) in err
    assert "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    if argv in (["bogus"], ["generate"]):  # argparse: usage, then the error
        assert message in lines[-1] and lines[0].startswith("usage: hfnn")
    else:
        assert len(lines) == 1 and lines[0].startswith(f"hfnn {argv[0]}: error: ")


def test_real_process_exit_status_and_stderr(models):
    proc = subprocess.run([sys.executable, "-m", "hfnn.apps.cli", "classify", str(models / "lm"), "hi"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"hfnn classify: error: {models / 'lm'} holds a language model (RnnForCausalLM), not a text classifier; "
        "use `hfnn generate` (or `hfnn predict`)"
    ]


# ---------------------------------------------------------------- using saved models


def test_generate_matches_model_generate(capsys, models):
    code, out, _ = run(capsys, "generate", models / "lm", "to be", "--max-new-tokens", 8)
    assert code == 0
    model = AutoModelForCausalLM.from_pretrained(models / "lm")
    tok = AutoTokenizer.from_pretrained(models / "lm")
    ids = tok("to be", add_special_tokens=False, return_tensors="pt")
    generated = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=0)[0, ids["input_ids"].shape[1]:]
    assert len(generated) > 0
    expected = "to be" + tok.decode(generated, skip_special_tokens=True)
    assert out == expected + "\n"


def test_generate_batch_sampling_and_beams(capsys, models):
    code, out, _ = run(capsys, "generate", models / "lm", "to", "hello world", "--max-new-tokens", 5, "--do-sample",
                       "--top-k", 5, "--seed", 0, "--num-return-sequences", 2)
    assert code == 0
    texts = out.strip().split("\n" + "-" * 40 + "\n")
    assert len(texts) == 4 and texts[0].startswith("to") and texts[2].startswith("hello world")
    assert all(len(t) > len("to") for t in texts[:2]) and all(len(t) > len("hello world") for t in texts[2:])
    code, out, _ = run(capsys, "generate", models / "lm", "to", "--max-new-tokens", 5, "--num-beams", 3)
    assert code == 0
    model = AutoModelForCausalLM.from_pretrained(models / "lm")
    tok = AutoTokenizer.from_pretrained(models / "lm")
    ids = tok("to", add_special_tokens=False, return_tensors="pt")
    beams = model.generate(**ids, max_new_tokens=5, num_beams=3, do_sample=False, pad_token_id=0)
    beams = beams[0, ids["input_ids"].shape[1]:]
    assert len(beams) > 0 and out == "to" + tok.decode(beams, skip_special_tokens=True) + "\n"
    code, _, err = run(capsys, "generate", models / "lm", "to", "--max-new-tokens", 2, "--top-k", 3)
    assert code == 0 and "--top-k only apply with --do-sample" in err


def test_classify_and_top_k(capsys, models):
    import torch
    from transformers import AutoModelForSequenceClassification

    texts = ["a neural network", "hello", "what light through yonder window breaks", "it is the east"]
    code, out, _ = run(capsys, "classify", models / "cnn", *texts)
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == len(texts)
    # each printed label is the argmax of the model's own logits, and its score that class's probability
    model = AutoModelForSequenceClassification.from_pretrained(models / "cnn").eval()
    tok = AutoTokenizer.from_pretrained(models / "cnn")
    for line, text in zip(lines, texts):
        label, score, printed = line.split("\t")
        with torch.no_grad():
            probs = model(**tok([text], return_tensors="pt")).logits[0].softmax(-1)
        assert printed == text
        assert label == model.config.id2label[int(probs.argmax())], (text, probs)
        assert float(score) == pytest.approx(float(probs.max()), abs=1e-4)
    assert len({line.split("\t")[0] for line in lines}) == 2, "the texts should not all get one label"
    code, out, _ = run(capsys, "classify", models / "cnn", "hello", "--top-k", 0)
    lines = out.strip().splitlines()
    assert lines[0] == "hello" and {line.split()[0] for line in lines[1:]} == {"rotten", "fresh"}
    assert sum(float(line.split()[1]) for line in lines[1:]) == pytest.approx(1.0, abs=1e-3)
    # an empty text is an error naming its row, before any model runs (it used to get the class prior, or a
    # RuntimeError from transformers' padding when batched with a left-padding tokenizer)
    code, out, err = run(capsys, "classify", models / "cnn", "hello", "")
    assert code != 0 and out == "" and "text 2 ('') is empty" in err and "Traceback" not in err


def test_transduce_takes_the_output_length_from_the_model(capsys, tmp_path):
    """Without --max-new-tokens, transduce and predict leave the output length to the model's generation config:
    a fixed default of 64 new tokens used to refuse every Transformer seq2seq model with fewer positions (the
    shipped G2P recipe's has 33)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    folder = tmp_path / "tg2p"
    model, target, source = save_tiny_model("transformer", "AutoModelForSeq2SeqLM", folder,
                                            max_position_embeddings=24)
    model.generation_config.max_length = 12
    model.generation_config.save_pretrained(folder)
    for command in ("transduce", "predict"):
        code, out, err = run(capsys, command, folder, "neural")
        assert code == 0, err
        with torch.no_grad():
            ids = AutoModelForSeq2SeqLM.from_pretrained(folder).eval().generate(
                **source(["neural"], return_tensors="pt"), do_sample=False, num_beams=1)
        assert ids.shape[1] <= 12 and out == f"neural\t{target.decode(ids[0], skip_special_tokens=True)}\n"
    # asking for more than the decoder takes is still a one-line error naming the limit
    code, _, err = run(capsys, "transduce", folder, "neural", "--max-new-tokens", 30)
    assert code == 2 and "at most 24 (max_position_embeddings)" in err


def test_characters_the_model_never_saw_are_named_on_stderr(capsys, models):
    """A character-level model reads an unseen character (an upper-case letter for a model trained on lower-case
    words) as <unk> and answers anyway; the commands say so, naming the row and the characters."""
    from hfnn.apps.inference import unknown_characters
    from hfnn.data.tokenization import train_tokenizer

    code, out, err = run(capsys, "transduce", models / "g2p", "neural", "NEU#ral", "--max-new-tokens", 4)
    assert code == 0 and len(out.splitlines()) == 2
    assert "source 2 ('NEU#ral') has characters the model never saw in training: 'N', 'E', 'U', '#'" in err
    assert "source 1" not in err
    code, _, err = run(capsys, "classify", models / "cnn", "a neural network", "a neural network\u2603")
    assert code == 0 and "text 2 ('a neural network\u2603') has characters" in err and "'\u2603'" in err
    lower = train_tokenizer(["hello there"], kind="char", lowercase=True)
    assert unknown_characters(lower, "Hello") == [] and unknown_characters(lower, "Hellq!") == ["q", "!"]
    words = train_tokenizer(["hello there"], kind="word")
    assert unknown_characters(words, "goodbye there") == []  # an unknown word is no character-level surprise


def test_transduce_and_predict_dispatch(capsys, models, monkeypatch):
    import torch
    from transformers import AutoModelForSeq2SeqLM

    code, out, _ = run(capsys, "transduce", models / "g2p", "neural", "light", "--max-new-tokens", 6)
    assert code == 0
    lines = out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["neural", "light"]
    # the targets are the model's own greedy outputs, decoded with the target tokenizer
    model = AutoModelForSeq2SeqLM.from_pretrained(models / "g2p").eval()
    target = AutoTokenizer.from_pretrained(models / "g2p")
    source = AutoTokenizer.from_pretrained(models / "g2p" / "source_tokenizer")
    for line, word in zip(lines, ["neural", "light"]):
        with torch.no_grad():
            ids = model.generate(**source([word], return_tensors="pt"), max_new_tokens=6, do_sample=False, num_beams=1)
        assert line == f"{word}\t{target.decode(ids[0], skip_special_tokens=True)}", line
    code, out2, _ = run(capsys, "predict", models / "g2p", "neural", "light", "--max-new-tokens", 6)
    assert code == 0 and out2 == out
    # hfnn's seq2seq-generation pipeline and the direct generate fallback give the same targets
    monkeypatch.setattr(cli, "_seq2seq_pipeline", lambda path, device: None)
    code, out3, _ = run(capsys, "transduce", models / "g2p", "neural", "light", "--max-new-tokens", 6)
    assert code == 0 and out3 == out
    code, out, _ = run(capsys, "predict", models / "cnn", "hello")
    assert code == 0 and out.split("\t")[0] in ("rotten", "fresh")
    code, out, _ = run(capsys, "predict", models / "lm", "to be", "--max-new-tokens", 3)
    assert code == 0 and out.startswith("to be") and len(out) > len("to be\n")


# ---------------------------------------------------------------- evaluate


def test_evaluate_language_model_on_a_file(capsys, models, tmp_path):
    import torch

    line = "Romeo. what light through yonder window breaks"
    text = tmp_path / "text.txt"
    text.write_text((line + "\n") * 40)  # identical lines: the blocks do not depend on how the file is split
    code, out, _ = run(capsys, "evaluate", models / "lm", "--file", text, "--block-size", 16, "--max-samples", 5,
                       "--json")
    assert code == 0
    metrics = json.loads(out)
    assert metrics["split"] == "all" and metrics["blocks"] == 5 and metrics["tokens"] == 5 * 15
    # the same number computed here: the file is one document, as in training (its lines keep their newlines,
    # one </s> at its end), cut into 5 blocks of 16, and the mean cross-entropy of each token given the ones before it
    model = AutoModelForCausalLM.from_pretrained(models / "lm").eval()
    tok = AutoTokenizer.from_pretrained(models / "lm")
    stream = tok(line + "\n", add_special_tokens=False)["input_ids"] * 40 + [tok.eos_token_id]
    blocks = torch.tensor(stream[: 5 * 16]).view(5, 16)
    with torch.no_grad():
        log_probs = model(input_ids=blocks).logits.float().log_softmax(-1)
    expected = -log_probs[:, :-1].gather(-1, blocks[:, 1:, None]).mean().item()
    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)


def test_evaluate_classifier_with_string_labels(capsys, models, tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "".join(f"review number {i},{'fresh' if i % 3 else 'rotten'}\n"
                                             for i in range(30)))
    code, out, _ = run(capsys, "evaluate", models / "cnn", "--file", data, "--json")
    assert code == 0
    metrics = json.loads(out)
    assert metrics["examples"] == 30
    code, pred, _ = run(capsys, "classify", models / "cnn", *[f"review number {i}" for i in range(30)])
    gold = ["fresh" if i % 3 else "rotten" for i in range(30)]
    predicted = [line.split("\t")[0] for line in pred.strip().splitlines()]
    assert metrics["accuracy"] == pytest.approx(sum(p == g for p, g in zip(predicted, gold)) / 30)
    f1s = []
    for label in ("rotten", "fresh"):
        tp = sum(p == g == label for p, g in zip(predicted, gold))
        fp = sum(p == label != g for p, g in zip(predicted, gold))
        fn = sum(g == label != p for p, g in zip(predicted, gold))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    assert metrics["f1"] == pytest.approx(sum(f1s) / 2)  # macro F1


def test_evaluate_multi_label_and_regression_classifiers(capsys, tmp_path):
    """`hfnn evaluate` scored every classifier as single-label: a multi-label one stopped with a TypeError from
    deep inside, a regression one refused its numeric labels."""
    from transformers import pipeline

    from hfnn.apps.inference import classify_texts

    texts = [f"review number {i}" for i in range(24)]
    save_tiny_model("cnn", "AutoModelForSequenceClassification", tmp_path / "multi",
                    problem_type="multi_label_classification")
    tags = [["rotten"], ["fresh"], ["rotten", "fresh"], ["fresh"]]
    data = tmp_path / "tags.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": tags[i % 4]}) + "\n" for i, t in enumerate(texts)))
    code, out, err = run(capsys, "evaluate", tmp_path / "multi", "--file", data, "--json")
    assert code == 0, err
    scored = classify_texts(pipeline("text-classification", model=str(tmp_path / "multi")), texts, top_k=0)
    predicted = [{label for label, score in labels if score > 0.5} for labels in scored]
    exact = sum(p == set(tags[i % 4]) for i, p in enumerate(predicted)) / len(texts)
    assert json.loads(out)["accuracy"] == pytest.approx(exact) and json.loads(out)["examples"] == 24
    # `classify` shows a multi-label model's labels: those scored above 0.5 (it showed the top one, always one)
    code, out, _ = run(capsys, "classify", tmp_path / "multi", *texts)
    shown = [line.split("\t") for line in out.strip().splitlines()]
    assert code == 0 and [row[2] for row in shown] == texts
    assert [set(row[0].split(",")) - {"(none)"} for row in shown] == predicted
    assert {len(p) for p in predicted} != {1}, "the tiny model should give some texts no label or two"
    # one label per row is not what a multi-label model is scored on
    single = tmp_path / "single.csv"
    single.write_text("text,label\n" + "".join(f"{t},{'fresh' if i % 2 else 'rotten'}\n" for i, t in enumerate(texts)))
    code, _, err = run(capsys, "evaluate", tmp_path / "multi", "--file", single)
    assert code == 2 and "multi-label classifier, but the label column holds one label per row" in err
    save_tiny_model("cnn", "AutoModelForSequenceClassification", tmp_path / "reg", num_labels=1,
                    problem_type="regression")
    scores = tmp_path / "scores.csv"
    scores.write_text("text,label\n" + "".join(f"{t},{i / 7:.4f}\n" for i, t in enumerate(texts)))
    code, out, err = run(capsys, "evaluate", tmp_path / "reg", "--file", scores, "--json")
    assert code == 0, err
    values = [labels[0][1] for labels in classify_texts(pipeline("text-classification", model=str(tmp_path / "reg")),
                                                        texts)]
    mse = sum((v - float(f"{i / 7:.4f}")) ** 2 for i, v in enumerate(values)) / len(texts)
    assert json.loads(out)["mse"] == pytest.approx(mse, rel=1e-4)


def test_evaluate_seq2seq_on_a_file(capsys, models, tmp_path):
    import sacrebleu
    import torch
    from transformers import AutoModelForSeq2SeqLM

    words = ["neural", "light", "hello", "night", "cat", "window"]
    model = AutoModelForSeq2SeqLM.from_pretrained(models / "g2p").eval()
    target = AutoTokenizer.from_pretrained(models / "g2p")
    source = AutoTokenizer.from_pretrained(models / "g2p" / "source_tokenizer")
    predicted = []
    for word in words:  # greedy, one word at a time, decoded with the target tokenizer
        with torch.no_grad():
            ids = model.generate(**source([word], return_tensors="pt"), max_new_tokens=4, do_sample=False, num_beams=1)
        predicted.append(target.decode(ids[0], skip_special_tokens=True))
    # references: the model's own output for half the words, a fixed pronunciation for the rest
    references = [p if i % 2 == 0 else "HH AH0 L OW1" for i, p in enumerate(predicted)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"source": w, "target": r}) + "\n" for w, r in zip(words, references)))
    code, out, _ = run(capsys, "evaluate", models / "g2p", "--file", data, "--max-new-tokens", 4, "--num-beams", 1,
                       "--json")
    assert code == 0
    metrics = json.loads(out)
    assert metrics["examples"] == len(words)
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(predicted, [references]).score, abs=1e-6)
    assert metrics["chrf"] == pytest.approx(sacrebleu.corpus_chrf(predicted, [references]).score, abs=1e-6)
    assert 0 < metrics["chrf"] < 100


def test_evaluate_scores_seq2seq_as_the_pipeline_decides(capsys, models, tmp_path):
    """`hfnn evaluate` takes its columns and metrics from the rule the seq2seq pipeline trains with: the kind the
    run recorded (results.json metrics_kind), else g2p for word/phonemes data, else translation."""
    import shutil

    words = ["neural", "light", "hello", "night"]
    pairs, g2p = tmp_path / "pairs.jsonl", tmp_path / "g2p.jsonl"
    pairs.write_text("".join(json.dumps({"source": w, "target": "HH AH0"}) + "\n" for w in words))
    g2p.write_text("".join(json.dumps({"word": w, "phonemes": "HH AH0", "source": "x"}) + "\n" for w in words))
    options = ("--max-new-tokens", 4, "--num-beams", 1, "--json")

    def scored(folder, data):
        code, out, err = run(capsys, "evaluate", folder, "--file", data, *options)
        assert code == 0, err
        return set(json.loads(out)) - {"model", "data", "split", "examples"}

    assert scored(models / "g2p", pairs) == {"bleu", "chrf"}
    assert scored(models / "g2p", g2p) == {"wer", "per"}  # word/phonemes first, as the pipeline picks them
    recorded = tmp_path / "recorded"
    shutil.copytree(models / "g2p", recorded)
    (recorded / "results.json").write_text(json.dumps({"metrics_kind": "g2p"}))
    assert scored(recorded, pairs) == {"wer", "per"}
    (tmp_path / "texts.csv").write_text("text,label\n" + "".join(f"{w},1\n" for w in words))
    code, _, err = run(capsys, "evaluate", recorded, "--file", tmp_path / "texts.csv", *options)
    assert code == 2 and "texts.csv: The corpus has no source/target (or word/phonemes) columns" in err
    assert "--source-column" in err


def test_phoneme_scores_use_the_closest_reference():
    scores = phoneme_scores(["K AE1 T", "D AO1 G", "B ER1 D"], [["K AE1 T"], ["D AA1 G", "D AO1 G"], ["B ER1 D Z"]])
    assert scores["wer"] == pytest.approx(1 / 3)
    assert scores["per"] == pytest.approx(1 / 10)


# ---------------------------------------------------------------- corpora, recipes, push


def test_corpora_list_and_show(capsys):
    code, out, _ = run(capsys, "corpora", "list")
    assert code == 0
    names = [line.split()[0] for line in out.strip().splitlines()[2:]]
    assert names == ["shakespeare", "kjv", "rotten_tomatoes", "cmudict", "kjv_french"]
    code, out, _ = run(capsys, "corpora", "show", "shakespeare")
    assert code == 0 and out.startswith("shakespeare (language-modeling)") and "columns:  text, title" in out


def test_recipes_list_show_and_lookup(capsys):
    code, out, _ = run(capsys, "recipes")
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.strip().splitlines()[2:]
            if line.strip() and not line.startswith("train")}
    assert rows["rnn_shakespeare_char"] == ["language-modeling", "rnn", "shakespeare"]
    code, out, _ = run(capsys, "recipes", "rnn_shakespeare_char")
    assert code == 0 and "task: language-modeling" in out
    assert cli.find_recipe("rnn", "language-modeling", "shakespeare") == "rnn_shakespeare_char"
    assert cli.find_recipe("rnn", "lm") == "rnn_shakespeare_char"
    assert cli.find_recipe("cnn", "language-modeling") is None


def test_push_dry_run_lists_the_files(capsys, models):
    code, out, _ = run(capsys, "push", models / "lm", "me/tiny-rnn", "--dry-run")
    assert code == 0
    lines = out.strip().splitlines()
    files = sorted(p.name for p in (models / "lm").iterdir() if p.is_file())  # everything the folder holds
    assert lines[0] == f"would upload {len(files)} files from {models / 'lm'} to me/tiny-rnn:"
    assert [line.strip() for line in lines[1:]] == files
    assert {"config.json", "configuration_rnn.py", "generation_config.json", "model.safetensors", "modeling_rnn.py",
            "tokenizer.json", "tokenizer_config.json"} <= set(files)


def test_push_without_token_fails_cleanly(capsys, models, monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    code, out, err = run(capsys, "push", models / "lm", "me/tiny-rnn")
    assert code == 2 and out == ""
    assert err == "hfnn push: error: no Hugging Face token: run `hf auth login` or set HF_TOKEN\n"


# ---------------------------------------------------------------- train and quickstart


def tiny_lm_args(tmp_path):
    text = tmp_path / "play.txt"
    text.write_text(LM_TEXT)
    return ["--train_file", str(text), "--max_steps", "3", "--block_size", "16", "--per_device_train_batch_size", "4",
            "--max_eval_samples", "4", "--sample_max_new_tokens", "3", "--num_samples", "1", "--logging_steps", "1",
            "--config_overrides", '{"hidden_size": 16, "embedding_size": 8, "num_hidden_layers": 1, "rnn_type": "gru"}']


def test_train_with_a_shipped_recipe_and_overrides(capsys, tmp_path):
    pytest.importorskip("hfnn.pipelines.run_lm")
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "rnn_shakespeare_char", "--output_dir", out_dir, *tiny_lm_args(tmp_path))
    assert code == 0, err
    results = json.loads((out_dir / "results.json").read_text())
    assert results["train_steps"] == 3 and results["corpus"].endswith("play.txt")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert (out_dir / name).is_file(), name
    assert json.loads((out_dir / "config.json").read_text())["hidden_size"] == 16
    # the trained folder works with the other commands
    code, out, _ = run(capsys, "generate", out_dir, "Romeo.", "--max-new-tokens", 4)
    assert code == 0 and out.startswith("Romeo.") and len(out) > len("Romeo.\n")  # new tokens after the prompt


def test_train_by_architecture_and_task(capsys, tmp_path, monkeypatch):
    pytest.importorskip("hfnn.pipelines.run_lm")
    seen = {}
    monkeypatch.setattr(cli, "_pipeline_module", lambda task: type("M", (), {"run_pipeline": staticmethod(
        lambda task, recipe, argv=(), **overrides: seen.update(task=task, recipe=recipe, argv=argv, **overrides))}))
    code, _, err = run(capsys, "train", "--architecture", "rnn", "--task", "lm", "--corpus", "kjv", "--max_steps", "3")
    assert code == 0
    assert seen["task"] == "language-modeling"
    assert Path(seen["recipe"]).name == "rnn_shakespeare_char.yaml"
    assert seen["corpus"] == "kjv"  # a different corpus becomes an override
    assert seen["argv"] == ["--max_steps", "3"]  # the command line's own flags, as typed
    assert "using the recipe rnn_shakespeare_char" in err


def test_quickstart_trains_what_exists_and_skips_the_rest(capsys, tmp_path, monkeypatch):
    pytest.importorskip("hfnn.pipelines.run_lm")
    recipe = tmp_path / "tiny.json"
    args = tiny_lm_args(tmp_path)
    values = dict(zip(args[::2], args[1::2]))
    recipe.write_text(json.dumps({"task": "language-modeling", "architecture": "rnn",
                                  **{k[2:]: v for k, v in values.items()}}))
    import dataclasses

    from hfnn.apps import quickstart
    from hfnn.models import registry

    rnn = registry.ARCHITECTURES["rnn"]
    monkeypatch.setattr(quickstart, "QUICKSTART_MODELS", (
        (rnn, registry.QuickstartModel("RNN LM", "language-modeling", "shakespeare")),
        (dataclasses.replace(rnn, name="nothing"), registry.QuickstartModel("Imaginary LM", "language-modeling",
                                                                            "shakespeare")),
    ))
    real_find = quickstart.find_recipe
    monkeypatch.setattr(quickstart, "find_recipe",
                        lambda arch, *a, **k: str(recipe) if arch == "rnn" else real_find(arch, *a, **k))
    out_dir = tmp_path / "qs"
    code, out, err = run(capsys, "quickstart", "--output-dir", out_dir, "--minutes-per-model", 0.5)
    summary = json.loads((out_dir / "summary.json").read_text())
    # the unigram baseline sits beside the metric; a model that does not beat it is flagged and fails the run
    assert isinstance(summary[0]["baseline"], float) and summary[0]["baseline"] > 1
    assert code == (0 if summary[0]["beats_baseline"] else 1), err
    assert ("NOT BETTER THAN BASELINE" in out) == (not summary[0]["beats_baseline"])
    assert "skipping Imaginary LM: no shipped language-modeling recipe for architecture nothing" in err
    lines = out.strip().splitlines()
    assert lines[0].split() == ["architecture", "task", "params", "metric", "value", "baseline", "train", "time"]
    row = next(line for line in lines if line.startswith("RNN LM"))
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary[0]["model"] == "RNN LM" and summary[0]["metric"] == "test perplexity"
    assert f"{summary[0]['parameters']:,}" in row
    assert (out_dir / "summary.png").is_file() and (out_dir / "summary.md").is_file()
    assert (out_dir / "rnn-lm" / "model.safetensors").is_file() and (out_dir / "logs" / "rnn-lm.log").is_file()
