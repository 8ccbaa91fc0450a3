"""Reliability of the `hfnn` command line: every numeric option is checked in one place, a folder is checked to be
what the command needs before anything runs (its head's weights, its source tokenizer), awkward inputs give an
answer or a one-line error naming the input, and a closed output pipe ends the command quietly."""

import json
import os
import shutil
import subprocess
import sys

import pytest

import hfnn.apps.cli as cli
from hfnn.apps.cli import main
from tests.reliability_utils import REPO
from tests.test_hub import save_tiny_model

SPECIAL_IDS = {0, 2, 3}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel_cli")
    save_tiny_model("rnn", "AutoModelForCausalLM", root / "lm")
    save_tiny_model("rnn", "AutoModelForSequenceClassification", root / "rnn_cls")
    save_tiny_model("cnn", "AutoModelForSequenceClassification", root / "cnn")
    save_tiny_model("rnn_seq2seq", "AutoModelForSeq2SeqLM", root / "g2p")
    save_tiny_model("transformer", "AutoModelForSeq2SeqLM", root / "tf")  # max_position_embeddings=64
    return root


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _copy(models, name, tmp_path):
    shutil.copytree(models / name, tmp_path / name)
    return tmp_path / name


def _edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------- options: one place, every command


@pytest.mark.parametrize("argv,message", [
    (["classify", "{cnn}", "hi", "--batch-size", "-3"], "--batch-size must be at least 1, got -3"),
    (["classify", "{cnn}", "hi", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["classify", "{cnn}", "hi", "--top-k", "-1"], "--top-k must be 0 or positive, got -1"),
    (["transduce", "{g2p}", "hello", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["generate", "{lm}", "hi", "--do-sample", "--top-p", "1.5"], "--top-p must be in (0, 1], got 1.5"),
    (["generate", "{lm}", "hi", "--do-sample", "--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
    (["generate", "{lm}", "hi", "--do-sample", "--temperature", "0"], "--temperature must be a positive finite number"),
    (["generate", "{lm}", "hi", "--do-sample", "--temperature", "nan"],
     "--temperature must be a positive finite number, got nan"),
    (["generate", "{lm}", "hi", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1, got 0"),
    (["generate", "{lm}", "hi", "--num-return-sequences", "0"], "--num-return-sequences must be at least 1"),
    (["generate", "{lm}", "hi", "--seed", "-1"], "--seed must be in [0, 2**32), got -1"),
    (["transduce", "{g2p}", "hello", "--top-p", "2"], "--top-p must be in (0, 1], got 2.0"),
    (["predict", "{lm}", "hi", "--num-beams", "0"], "--num-beams must be at least 1, got 0"),
    (["evaluate", "{lm}", "--file", "{lm}/config.json", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["evaluate", "{lm}", "--file", "{lm}/config.json", "--block-size", "1"], "--block-size must be at least 2"),
    (["evaluate", "{lm}", "--file", "{lm}/config.json", "--max-samples", "0"], "--max-samples must be at least 1"),
    (["quickstart", "--minutes-per-model", "-1", "--output-dir", "{root}/qs"],
     "--minutes-per-model must be a positive"),
    (["quickstart", "--max-eval-samples", "0", "--output-dir", "{root}/qs"], "--max-eval-samples must be at least 1"),
])
def test_out_of_range_options_are_one_line_errors_naming_the_option(capsys, models, argv, message):
    names = {name: models / name for name in ("lm", "cnn", "g2p")}
    code, out, err = run(capsys, *[a.format(root=models, **names) for a in argv])
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err and out == ""
    assert not (models / "qs").exists()


def test_unknown_quickstart_name_is_refused_before_anything_is_created(capsys, tmp_path):
    out_dir = tmp_path / "runs" / "quickstart"
    code, out, err = run(capsys, "quickstart", "--only", "nosuch", "rnn", "--output-dir", out_dir)
    assert code == 2
    assert "--only nosuch: no quickstart model has that name" in err and "rnn" in err.split("use one of")[1]
    assert not out_dir.exists() and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- the folder is what the command needs


@pytest.mark.parametrize("source,command,head,other", [
    ("lm", "classify", "RnnForSequenceClassification", "lm_head"),
    ("rnn_cls", "generate", "RnnForCausalLM", "classifier"),
])
def test_config_naming_another_head_than_the_weights_is_refused(capsys, models, tmp_path, source, command, head, other):
    folder = _copy(models, source, tmp_path)
    _edit_json(folder / "config.json", architectures=[head])
    code, out, err = run(capsys, command, folder, "hello", "--max-new-tokens", "2") if command == "generate" else \
        run(capsys, command, folder, "hello")
    assert code == 2, (out, err)
    assert f"config.json names {head}" in err and other in err and "randomly initialised head" in err
    assert out == "" and "Traceback" not in err


def test_seq2seq_folder_without_source_tokenizer_is_refused(capsys, models, tmp_path):
    folder = _copy(models, "g2p", tmp_path)
    shutil.rmtree(folder / "source_tokenizer")
    code, out, err = run(capsys, "transduce", folder, "hello")
    assert code == 2
    assert "has no source_tokenizer/ folder" in err and "source_vocab_size" in err
    assert out == ""


def test_tokenizers_loaded_by_the_cli_read_special_token_strings_as_text(models, tmp_path):
    folder = _copy(models, "g2p", tmp_path)
    for sub in (folder, folder / "source_tokenizer"):  # as saved before the tokenizers carried the flag
        config = json.loads((sub / "tokenizer_config.json").read_text())
        config.pop("split_special_tokens", None)
        (sub / "tokenizer_config.json").write_text(json.dumps(config))
    saved = cli.open_model_dir(str(folder))
    model, target = cli.load_saved(saved, cli.resolve_device("cpu"))
    source = cli.load_source_tokenizer(saved, model, target)
    for tok in (target, source):
        assert not SPECIAL_IDS & set(tok("<s>hello</s><pad>")["input_ids"])


def test_saved_model_max_length_beyond_the_positions_is_lowered(models, tmp_path):
    folder = _copy(models, "tf", tmp_path)
    _edit_json(folder / "tokenizer_config.json", model_max_length=1000)
    _edit_json(folder / "source_tokenizer" / "tokenizer_config.json", model_max_length=1000)
    saved = cli.open_model_dir(str(folder))
    model, target = cli.load_saved(saved, cli.resolve_device("cpu"))
    assert target.model_max_length == 64
    assert cli.load_source_tokenizer(saved, model, target).model_max_length == 64


# ---------------------------------------------------------------- inputs


def test_one_empty_source_does_not_fail_the_batch(capsys, models):
    code, alone, _ = run(capsys, "transduce", models / "g2p", "hello", "light", "--max-new-tokens", "4")
    assert code == 0
    code, out, err = run(capsys, "transduce", models / "g2p", "hello", "", "light", "--max-new-tokens", "4")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1] == "\t" and [lines[0], lines[2]] == alone.splitlines()
    assert "source 2 is empty" in err


def test_overlong_source_names_its_row_and_the_limit(capsys, models):
    code, out, err = run(capsys, "transduce", models / "tf", "hello", "hello" * 15, "--max-new-tokens", "2")
    assert code == 2
    assert "source 2" in err and "is 75 tokens long; this model reads at most 64" in err
    assert out == "" and "Traceback" not in err


def test_closed_output_pipe_is_not_an_error(capsys, models, monkeypatch):
    def closed(text=""):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_out", closed)
    code, out, err = run(capsys, "generate", models / "lm", "hello", "--max-new-tokens", "2")
    assert code == 141 and err == ""


def test_closed_output_pipe_in_a_real_process(models):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hfnn.apps.cli", "generate", str(models / "lm"), *["hello"] * 20,
         "--max-new-tokens", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(models),
    )
    proc.stdout.close()  # `| head -c 0`: the reader is gone before anything is written
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert "BrokenPipeError" not in err and "Traceback" not in err, err
    assert proc.returncode == 141


def test_push_refuses_a_seq2seq_folder_without_its_source_tokenizer(capsys, models, tmp_path):
    folder = _copy(models, "g2p", tmp_path)
    shutil.rmtree(folder / "source_tokenizer")
    code, out, err = run(capsys, "push", folder, "me/g2p", "--dry-run")
    assert code == 2 and "has no source_tokenizer/ folder" in err and out == ""


def test_too_many_new_tokens_for_the_decoder_positions_names_the_option(capsys, models):
    code, out, err = run(capsys, "transduce", models / "tf", "hello", "--max-new-tokens", "100")
    assert code == 2 and "--max-new-tokens 100 is more than this model's decoder can take: at most 64" in err
    assert out == ""


# ---------------------------------------------------------------- one registry, the library composed

@pytest.mark.parametrize("alias", [a for t in __import__("hfnn.models.registry").registry.TASKS.values()
                                   for a in t.names])
def test_every_task_name_of_the_registry_is_accepted_by_train(capsys, monkeypatch, alias):
    from hfnn.models import registry

    seen = {}
    monkeypatch.setattr(cli, "_pipeline_module", lambda task: type("M", (), {"run_pipeline": staticmethod(
        lambda task, recipe, argv=(), **overrides: seen.update(task=task))}))
    monkeypatch.setattr(cli, "find_recipe", lambda arch, task, corpus=None, names=None: "rnn_shakespeare_char")
    code, _, err = run(capsys, "train", "--architecture", "rnn", "--task", alias)
    assert code == 0, err
    assert seen["task"] == registry.task(alias).name


def test_batched_prompts_and_texts_give_what_each_gives_alone(capsys, models):
    prompts = ["to be", "hello world, what light", "a"]
    code, batched, _ = run(capsys, "generate", models / "lm", *prompts, "--max-new-tokens", "6")
    assert code == 0
    alone = []
    for prompt in prompts:
        code, out, _ = run(capsys, "generate", models / "lm", prompt, "--max-new-tokens", "6")
        alone.append(out.rstrip("\n"))
    assert batched.rstrip("\n").split("\n" + "-" * 40 + "\n") == alone
    texts = ["hello", "a much longer review than the first one, padded in a batch", "x"]
    code, batched, _ = run(capsys, "classify", models / "cnn", *texts, "--batch-size", "3")
    single = [run(capsys, "classify", models / "cnn", t)[1] for t in texts]
    assert batched == "".join(single)


def test_cli_imports_no_private_name_and_keeps_no_task_table():
    import ast

    tree = ast.parse((REPO / "hfnn" / "apps" / "cli.py").read_text())
    private = [(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert private == []
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not {"causal-lm", "g2p", "text2text-generation", "AutoModelForCausalLM"} & strings


def test_an_empty_prompt_among_others_starts_from_bos(capsys, models):
    code, out, err = run(capsys, "generate", models / "lm", "", "to be", "--max-new-tokens", "3")
    assert code == 0, err
    empty, prompt = out.rstrip("\n").split("\n" + "-" * 40 + "\n")
    assert prompt.startswith("to be") and len(prompt) > len("to be")
    assert empty == run(capsys, "generate", models / "lm", "", "--max-new-tokens", "3")[1].rstrip("\n")


def test_demo_command_hands_over_to_the_demo(capsys, tmp_path):
    code, out, err = run(capsys, "demo", str(tmp_path / "nowhere"))
    assert code == 2 and err.count("\n") == 1 and "no such model folder" in err and "Traceback" not in err
    code, out, err = run(capsys, "demo", "--help")
    assert code == 0 and "FOLDER_OR_HUB_ID" in out
    code, out, err = run(capsys, "--help")
    assert "demo" in out
