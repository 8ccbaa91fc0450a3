"""Pipeline runs that must not give a silently wrong result nor lose a finished training: the recipe's
config mapping merged with command-line overrides, the output folder claimed before training and replaced
as a whole, the trained model saved before evaluation (or beside the folder when the folder fails), and no
model with NaN/infinite weights ever saved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

from hfnn import training
from hfnn.pipelines import common, run_classification, run_lm, run_seq2seq
from hfnn.pipelines.output_dir import LOCK_NAME, OutputDirError, claim_output_dir
from hfnn.training import recipes
from tests.reliability_utils import shakespeare_text

REPO = Path(__file__).resolve().parents[1]
TINY_RNN = '{"hidden_size": 12, "embedding_size": 8, "num_hidden_layers": 1}'


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "play.txt"
    path.write_text(shakespeare_text(4000), encoding="utf-8")
    return path


def lm_argv(out: Path, text: Path, *extra: str) -> list[str]:
    return ["rnn_shakespeare_char", "--output_dir", str(out), "--train_file", str(text),
            "--config_overrides", TINY_RNN, "--max_steps", "2", "--block_size", "16",
            "--per_device_train_batch_size", "4", "--num_samples", "0", "--eval_strategy", "no",
            "--logging_steps", "1", "--report_to", "none", "--save_strategy", "no", *extra]


def lm_parse(*argv: str):
    return recipes.parse_args((run_lm.ModelArguments, run_lm.DataArguments, common.RunArguments,
                               run_lm.TrainingArguments), list(argv))


def seq2seq_parse(*argv: str):
    return recipes.parse_args((run_seq2seq.ModelArguments, run_seq2seq.DataArguments, common.RunArguments,
                               run_seq2seq.Seq2SeqTrainingArguments), list(argv))


# ----------------------------------------------------------------------------------------- config merge


def test_command_line_config_overrides_merge_into_the_recipe_mapping():
    model_args, *_ = seq2seq_parse("rnn_seq2seq_cmudict", "--config_overrides",
                                   '{"attention": "luong", "input_feeding": false}')
    overrides = recipes.parse_config_overrides(model_args.config_overrides)
    assert overrides["attention"] == "luong" and overrides["input_feeding"] is False
    # the recipe's other fields stay: 384 / 128, not the config defaults
    assert overrides["hidden_size"] == 384 and overrides["embedding_size"] == 128
    assert overrides["bidirectional_encoder"] is True and overrides["rnn_type"] == "gru"

    model_args, *_ = lm_parse("rnn_shakespeare_char", "--config_overrides", '{"hidden_size": 32}')
    overrides = recipes.parse_config_overrides(model_args.config_overrides)
    assert overrides == {"rnn_type": "gru", "embedding_size": 64, "hidden_size": 32, "num_hidden_layers": 2,
                         "dropout": 0.0}


def test_a_null_override_removes_the_recipe_key_and_a_bad_one_names_the_option():
    model_args, *_ = lm_parse("rnn_shakespeare_char", "--config_overrides", '{"rnn_type": null}')
    assert "rnn_type" not in recipes.parse_config_overrides(model_args.config_overrides)
    with pytest.raises(ValueError, match="--config_overrides must be a JSON mapping"):
        lm_parse("rnn_shakespeare_char", "--config_overrides", "[1, 2]")


def test_another_architecture_on_the_command_line_does_not_inherit_the_recipe_config():
    model_args, *_ = lm_parse("rnn_shakespeare_char", "--architecture", "transformer", "--config_overrides",
                              '{"hidden_size": 16}')
    assert recipes.parse_config_overrides(model_args.config_overrides) == {"hidden_size": 16}


def test_a_recipe_giving_config_overrides_as_a_json_string_is_merged_too(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("architecture: rnn\nconfig_overrides: '{\"rnn_type\": \"gru\", \"hidden_size\": 64}'\n")
    model_args, *_ = lm_parse(str(recipe), "--config_overrides", '{"hidden_size": 32}')
    assert recipes.parse_config_overrides(model_args.config_overrides) == {"rnn_type": "gru", "hidden_size": 32}


def test_the_saved_config_and_results_state_the_effective_config(tmp_path, text_file):
    out = tmp_path / "run"
    run_lm.main(lm_argv(out, text_file, "--write_model_card", "true"))
    config = json.loads((out / "config.json").read_text())
    # the recipe says GRU, two layers; the command line changed the sizes and one layer
    assert config["rnn_type"] == "gru" and config["hidden_size"] == 12 and config["num_hidden_layers"] == 1
    results = json.loads((out / "results.json").read_text())
    assert results["config_overrides"] == {"rnn_type": "gru", "embedding_size": 8, "hidden_size": 12,
                                           "num_hidden_layers": 1, "dropout": 0.0}
    card = (out / "README.md").read_text()
    assert "gru" in card.lower()
    assert not (out / LOCK_NAME).exists()


# ----------------------------------------------------------------------------------------- output folder


def test_overwriting_replaces_the_whole_folder(tmp_path, text_file):
    out = tmp_path / "run"
    (out / "checkpoint-7").mkdir(parents=True)
    (out / "checkpoint-7" / "model.safetensors").write_bytes(b"old")
    (out / "source_tokenizer").mkdir()
    (out / "modeling_old.py").write_text("# an old run's code")
    (out / "attention_heatmap.png").write_bytes(b"png")
    run_lm.main(lm_argv(out, text_file, "--overwrite_output_dir", "true"))
    names = sorted(p.name for p in out.iterdir())
    assert "checkpoint-7" not in names and "source_tokenizer" not in names
    assert "modeling_old.py" not in names and "attention_heatmap.png" not in names
    assert "model.safetensors" in names and "results.json" in names
    # no staging folder left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_ctrl_c_stops_training_after_the_step_and_keeps_the_run(tmp_path, text_file, monkeypatch):
    """The first Ctrl-C ends training after the current step: that step's checkpoint, the model, its scores and
    results.json are written as after any other stop; the second Ctrl-C interrupts at once. The handler that
    was there before training is put back."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    real_step = transformers.Trainer.training_step
    presses = {3: 1}  # global step (0-based) -> Ctrl-C presses during it

    def pressing(self, *args, **kwargs):
        for _ in range(presses.get(self.state.global_step, 0)):
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "training_step", pressing)
    out = tmp_path / "run"
    results = run_lm.main(lm_argv(out, text_file, "--max_steps", "50", "--save_strategy", "steps",
                                  "--save_steps", "100", "--eval_strategy", "steps", "--eval_steps", "100"))
    assert results["train_steps"] == 4 and results["interrupted_at_step"] == 4
    assert (out / "model.safetensors").is_file() and (out / "checkpoint-4").is_dir() and "validation_loss" in results
    assert json.loads((out / "results.json").read_text())["interrupted_at_step"] == 4
    assert signal.getsignal(signal.SIGINT) is before
    # twice: the run stops at once, as Ctrl-C always did, and nothing replaces the folder
    presses[3] = 2
    with pytest.raises(KeyboardInterrupt):
        run_lm.main(lm_argv(out, text_file, "--max_steps", "50", "--overwrite_output_dir", "true"))
    assert json.loads((out / "results.json").read_text())["interrupted_at_step"] == 4
    assert signal.getsignal(signal.SIGINT) is before


def test_a_failed_overwrite_leaves_the_old_folder_as_it_was(tmp_path, text_file, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"the user's model")
    real_step = transformers.Trainer.training_step
    count = {"n": 0}

    def crash_at_step_3(self, *args, **kwargs):
        count["n"] += 1
        if count["n"] == 3:
            raise RuntimeError("the machine broke")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "training_step", crash_at_step_3)
    with pytest.raises(RuntimeError, match="the machine broke"):
        run_lm.main(lm_argv(out, text_file, "--overwrite_output_dir", "true", "--max_steps", "4",
                            "--save_strategy", "steps", "--save_steps", "1"))
    # no checkpoint of the failed run mixed into the user's folder
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == b"the user's model"
    # the failed run's checkpoints are kept beside it, for --resume_from_checkpoint latest
    staged = tmp_path / ".run.hfnn-new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [staged.name, "run"]
    assert sorted(p.name for p in staged.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    # a new overwriting run starts afresh: it removes them, and replaces the folder only when it ends
    run_lm.main(lm_argv(out, text_file, "--overwrite_output_dir", "true", "--max_steps", "1"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and (out / "config.json").is_file()


def test_resuming_from_a_checkpoint_elsewhere_does_not_open_a_non_empty_folder(tmp_path, text_file):
    first = tmp_path / "first"
    run_lm.main(lm_argv(first, text_file, "--save_strategy", "steps", "--save_steps", "2"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"another model")
    with pytest.raises(FileExistsError, match="not empty.*not inside it"):
        run_lm.main(lm_argv(other, text_file, "--max_steps", "4", "--resume_from_checkpoint",
                            str(first / "checkpoint-2")))
    assert (other / "model.safetensors").read_bytes() == b"another model"
    # into an empty folder it resumes
    results = run_lm.main(lm_argv(tmp_path / "new", text_file, "--max_steps", "4", "--resume_from_checkpoint",
                                  str(first / "checkpoint-2")))
    assert results["train_steps"] == 4


def test_a_second_run_into_a_claimed_folder_is_refused(tmp_path, text_file):
    out = tmp_path / "run"
    with claim_output_dir(out):
        assert (out / LOCK_NAME).exists()
        with pytest.raises(FileExistsError, match="in use by another run"):
            run_lm.main(lm_argv(out, text_file))
        with pytest.raises(FileExistsError, match="in use by another run"):
            run_lm.main(lm_argv(out, text_file, "--overwrite_output_dir", "true"))
    assert not (out / LOCK_NAME).exists()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path, text_file):
    out = tmp_path / "run"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (out / LOCK_NAME).write_text(json.dumps({"pid": int(proc.stdout), "host": socket.gethostname()}))
    run_lm.main(lm_argv(out, text_file))
    assert (out / "model.safetensors").exists() and not (out / LOCK_NAME).exists()


def _read_only(folder: Path):
    """A ``setup`` for ``run_forked`` that makes ``folder`` unwritable for the child alone, whoever runs the
    tests: a user other than root gets a folder of mode 555; root, whom no mode stops, gets a read-only bind
    mount of it in a mount namespace of the child's own. Nothing else changes for the child: it keeps reading
    the checkout, the interpreter and the caches wherever they live and whatever their parents' modes."""
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    for cmd in (["mount", "--make-rprivate", "/"], ["mount", "--bind", str(folder), str(folder)],
                ["mount", "-o", "remount,bind,ro", str(folder), str(folder)]):
        subprocess.run(cmd, check=True, capture_output=True)


def _can_make_read_only(tmp_path: Path) -> str | None:
    """Why ``_read_only`` cannot work here, or None when it can (tried in a throwaway child)."""
    if os.geteuid() != 0:
        return None
    probe = tmp_path / "probe"
    probe.mkdir()
    code = os.fork()
    if code == 0:  # child: try, then report through the exit status
        try:
            _read_only(probe)
            (probe / "x").write_text("x")
        except OSError:
            os._exit(0)  # the write was refused: the mechanism works
        os._exit(1)
    _, status = os.waitpid(code, 0)
    return (None if os.waitstatus_to_exitcode(status) == 0
            else "root without mount namespaces cannot make a folder read-only")


def test_an_unwritable_output_dir_fails_before_training(tmp_path, text_file):
    from tests.reliability_utils import run_forked

    why_not = _can_make_read_only(tmp_path)
    if why_not:
        pytest.skip(why_not)
    out = tmp_path / "out"
    out.mkdir()
    log = tmp_path / "log.txt"
    try:
        code = run_forked(lambda argv: sys.exit(common.run_command(run_lm.main, argv)), lm_argv(out, text_file), log,
                          setup=lambda: _read_only(out))
    finally:
        os.chmod(out, 0o755)
    output = log.read_text()
    assert code != 0
    assert "not writable" in output and str(out) in output, output[-2000:]
    assert "Traceback" not in output and "train_runtime" not in output, output[-2000:]
    assert not any(out.iterdir())  # the refused run wrote nothing there


def test_a_model_that_cannot_be_saved_in_output_dir_is_saved_beside_it(tmp_path, text_file, monkeypatch):
    out = tmp_path / "run"
    real = common.save_trained
    calls = []

    def failing_once(trainer, folder, tokenizers):
        calls.append(Path(folder))
        if len(calls) == 1:
            raise PermissionError(13, "Permission denied", str(folder))
        real(trainer, folder, tokenizers)

    monkeypatch.setattr(common, "save_trained", failing_once)  # the save step of every pipeline
    with pytest.raises(OutputDirError, match="saved to") as err:
        run_lm.main(lm_argv(out, text_file))
    fallback = calls[1]
    assert str(fallback) in str(err.value) and fallback != out
    assert (fallback / "model.safetensors").exists() and (fallback / "tokenizer.json").exists()
    assert common.run_command(lambda argv: run_lm.main(argv), lm_argv(tmp_path / "again", text_file)) == 0


def test_evaluation_failing_after_training_keeps_the_saved_model(tmp_path, text_file, monkeypatch):
    out = tmp_path / "run"

    def broken_evaluate(*args, **kwargs):
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr(transformers.Trainer, "evaluate", broken_evaluate)
    with pytest.raises(RuntimeError, match="evaluation broke"):
        run_lm.main(lm_argv(out, text_file))
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert not (out / LOCK_NAME).exists()


# ----------------------------------------------------------------------------------------- non-finite training


def test_a_diverging_run_stops_and_saves_nothing(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    code = common.run_command(run_lm.main, lm_argv(out, text_file, "--learning_rate", "3e38", "--max_grad_norm", "0",
                                                    "--warmup_steps", "0", "--max_steps", "6"))
    assert code != 0
    assert "training stopped" in capsys.readouterr().err
    assert not (out / "model.safetensors").exists()


def test_a_huge_finite_loss_is_saved_first_and_reported_without_overflow(tmp_path, text_file):
    out = tmp_path / "run"
    argv = lm_argv(out, text_file, "--learning_rate", "1e6", "--max_grad_norm", "0", "--warmup_steps", "1",
                   "--max_steps", "4", "--eval_strategy", "steps", "--eval_steps", "4")
    code = common.run_command(run_lm.main, argv)
    if code == 0:  # finite weights: saved, and a perplexity that overflows a float is reported as inf
        weights = load_file(out / "model.safetensors")
        assert all(torch.isfinite(t).all() for t in weights.values())
        assert json.loads((out / "results.json").read_text())["validation_loss"] > 0
    else:
        assert not (out / "model.safetensors").exists()


def test_the_guard_stops_at_a_nan_gradient_without_a_checkpoint(tmp_path, text_file, monkeypatch):
    out = tmp_path / "run"
    real_step = transformers.Trainer.training_step
    count = {"n": 0}

    def poisoned(self, model, inputs, num_items_in_batch=None):
        count["n"] += 1
        loss = real_step(self, model, inputs, num_items_in_batch)
        if count["n"] == 2:
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.fill_(float("nan"))
        return loss

    monkeypatch.setattr(transformers.Trainer, "training_step", poisoned)
    with pytest.raises(training.NonFiniteTrainingError, match="step 2"):
        run_lm.main(lm_argv(out, text_file, "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "1"))
    assert not (out / "model.safetensors").exists()
    assert (out / "checkpoint-1").exists() and not (out / "checkpoint-2").exists()
    for folder in out.glob("checkpoint-*"):
        assert all(torch.isfinite(t).all() for t in load_file(folder / "model.safetensors").values())


def test_save_model_refuses_non_finite_weights():
    from tests.reliability_utils import build_model

    model = build_model("rnn", "AutoModelForCausalLM")
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    with pytest.raises(training.NonFiniteTrainingError, match="non-finite"):
        training.check_finite_model(model)


# ----------------------------------------------------------------------------------------- seq2seq: save, then score


def _g2p_files(tmp_path: Path) -> tuple[Path, Path]:
    words = ["cat", "bat", "tab", "act", "cab", "bag", "gab", "tag"]
    phones = {"c": "K", "a": "AE1", "t": "T", "b": "B", "g": "G"}
    train = tmp_path / "train.csv"
    train.write_text("word,phonemes\n" + "".join(f"{w},{' '.join(phones[c] for c in w)}\n" for w in words * 4))
    dev = tmp_path / "dev.csv"
    # ZH and OY never occur in training (unk); the last target is longer than --max_target_length
    dev.write_text("word,phonemes\ncat,K AE1 T\nzat,ZH AE1 T\nboy,B OY1\n"
                   "tattattat,T AE1 T T AE1 T T AE1 T T AE1 T\n")
    return train, dev


def test_seq2seq_targets_with_unseen_symbols_or_cut_are_scored_as_errors_after_the_save(tmp_path, caplog):
    train, dev = _g2p_files(tmp_path)
    out = tmp_path / "run"
    results = run_seq2seq.main([
        "rnn_seq2seq_cmudict", "--output_dir", str(out), "--train_file", str(train), "--validation_file", str(dev),
        "--test_file", str(dev), "--config_overrides", '{"hidden_size": 8, "embedding_size": 8}',
        "--max_target_length", "6", "--max_steps", "2", "--per_device_train_batch_size", "8",
        "--eval_strategy", "steps", "--eval_steps", "2", "--generation_num_beams", "1", "--num_samples", "0",
        "--num_attention_examples", "0", "--report_to", "none", "--save_strategy", "no", "--write_model_card", "false",
        "--max_train_minutes", "1",
    ])
    # every example is scored; the unseen and the cut targets cannot be matched, so they count as errors
    assert 0.5 <= results["test_wer"] <= 1.0 and 0.5 <= results["validation_wer"] <= 1.0
    assert (out / "model.safetensors").exists() and (out / "source_tokenizer" / "tokenizer.json").exists()
    # the cut is reported, per split, with the option that lifts it (the training targets all fit)
    assert "validation: 1 of 4 targets (25.0 %) are longer than --max_target_length 6 tokens and were cut (the " \
           "longest: 13 tokens); raise --max_target_length" in caplog.text
    assert not any(r.getMessage().startswith("train:") for r in caplog.records)
    # the CMUdict recipes lower-case the source: a capitalised word reads as the lower-case one, not as <unk>
    from transformers import AutoTokenizer

    source = AutoTokenizer.from_pretrained(out / "source_tokenizer")
    assert (source("Cat")["input_ids"] == source("cat")["input_ids"]
            and source.unk_token_id not in source("TAB")["input_ids"])


def test_seq2seq_model_is_saved_before_the_final_evaluation(tmp_path, monkeypatch):
    train, dev = _g2p_files(tmp_path)
    out = tmp_path / "run"

    def broken(*args, **kwargs):
        assert (out / "model.safetensors").exists() or any(tmp_path.glob(".run.hfnn-new/model.safetensors"))
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr(run_seq2seq.OrderedEvalSeq2SeqTrainer, "evaluate", broken)
    with pytest.raises(RuntimeError, match="evaluation broke"):
        run_seq2seq.main([
            "rnn_seq2seq_cmudict", "--output_dir", str(out), "--train_file", str(train), "--validation_file", str(dev),
            "--config_overrides", '{"hidden_size": 8, "embedding_size": 8}', "--max_steps", "1",
            "--per_device_train_batch_size", "8", "--num_samples", "0", "--report_to", "none", "--save_strategy", "no",
            "--max_train_minutes", "1",
        ])
    assert (out / "model.safetensors").exists() and (out / "source_tokenizer").is_dir()


def test_resuming_a_checkpoint_of_another_architecture_is_an_error_naming_it(tmp_path, text_file):
    out = tmp_path / "run"
    run_lm.main(lm_argv(out, text_file, "--save_strategy", "steps", "--save_steps", "2"))
    argv = lm_argv(out, text_file, "--max_steps", "4", "--resume_from_checkpoint", "latest")
    argv[argv.index("--config_overrides") + 1] = '{"hidden_size": 16, "embedding_size": 8, "num_hidden_layers": 1}'
    with pytest.raises(ValueError,
                       match=r"checkpoint-2: it holds another model \(hidden_size 12, this run builds 16\)"):
        run_lm.main(argv)
    argv[argv.index("--config_overrides") + 1] = '{"rnn_type": "lstm", "hidden_size": 12, "embedding_size": 8, ' \
                                                 '"num_hidden_layers": 1}'
    with pytest.raises(ValueError, match=r"another model \(rnn_type 'gru', this run builds 'lstm'\)"):
        run_lm.main(argv)
    assert not (out / LOCK_NAME).exists()


def test_a_run_in_another_process_holds_the_folder_until_it_ends(tmp_path, text_file):
    out = tmp_path / "run"
    out.mkdir()
    # a live process holding the lock, as a run does (written without importing hfnn: quick to start)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, json, os, socket, sys\n"
         f"lock = os.path.join({str(out)!r}, {LOCK_NAME!r})\n"
         "fd = os.open(lock, os.O_CREAT | os.O_RDWR)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.write(fd, json.dumps({'pid': os.getpid(), 'host': socket.gethostname()}).encode())\n"
         "print('claimed', flush=True)\nsys.stdin.readline()\nos.unlink(lock)\nos.close(fd)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        with pytest.raises(FileExistsError, match=rf"in use by another run \(process {holder.pid}"):
            run_lm.main(lm_argv(out, text_file))
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0 and not (out / LOCK_NAME).exists()
    run_lm.main(lm_argv(out, text_file))
    assert (out / "model.safetensors").exists()


def test_a_lock_file_nobody_holds_is_taken_over_even_if_its_pid_lives(tmp_path, text_file):
    import socket

    out = tmp_path / "run"
    out.mkdir()
    # a live pid (a killed run's pid reused by another process), but nobody holds the lock
    (out / LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "process_start": "1"}))
    run_lm.main(lm_argv(out, text_file))
    assert (out / "model.safetensors").exists() and not (out / LOCK_NAME).exists()


def test_resuming_a_checkpoint_of_another_head_is_an_error_naming_it(tmp_path, text_file):
    out = tmp_path / "run"
    run_lm.main(lm_argv(out, text_file, "--save_strategy", "steps", "--save_steps", "2"))
    config = json.loads((out / "checkpoint-2" / "config.json").read_text())
    assert config["architectures"] == ["RnnForCausalLM"]
    train = tmp_path / "d.csv"
    train.write_text("text,label\n" + "".join(f"review {i},{i % 2}\n" for i in range(40)))
    with pytest.raises(ValueError, match=r"checkpoint-2: it holds a RnnForCausalLM, this run trains a "
                                         r"RnnForSequenceClassification"):
        run_classification.main(["rnn_rotten_tomatoes", "--output_dir", str(out), "--train_file", str(train),
                                 "--config_overrides", TINY_RNN, "--max_steps", "4", "--eval_strategy", "no",
                                 "--save_strategy", "no", "--load_best_model_at_end", "false", "--report_to", "none",
                                 "--num_samples", "0", "--resume_from_checkpoint", str(out / "checkpoint-2")])


def test_overwriting_a_folder_that_holds_the_training_data_is_refused(tmp_path, text_file):
    out = tmp_path / "run"
    out.mkdir()
    data = out / "play.txt"
    data.write_text(text_file.read_text())
    with pytest.raises(ValueError, match=r"play.txt is inside output_dir .* move it out"):
        run_lm.main(lm_argv(out, data, "--overwrite_output_dir", "true"))
    assert data.exists() and sorted(p.name for p in out.iterdir()) == ["play.txt"]


def test_fine_tuning_a_model_in_its_own_folder_with_overwrite_replaces_it(tmp_path, text_file):
    out = tmp_path / "run"
    run_lm.main(lm_argv(out, text_file, "--save_strategy", "steps", "--save_steps", "1"))
    before = load_file(out / "model.safetensors")
    results = run_lm.main(lm_argv(out, text_file, "--model_name_or_path", str(out), "--overwrite_output_dir", "true"))
    after = load_file(out / "model.safetensors")
    assert results["train_steps"] == 2 and not list(out.glob("checkpoint-*"))
    assert any(not torch.equal(before[k], after[k]) for k in before)


# ---- a user's own recipe: the shipped recipes set every option, so only a minimal one meets the defaults

MINIMAL_RUNS = [("language-modeling", "rnn"), ("language-modeling", "transformer"),
                ("text-classification", "rnn"), ("text-classification", "cnn"), ("text-classification", "mlp"),
                ("text-classification", "transformer"), ("seq2seq", "rnn_seq2seq"), ("seq2seq", "transformer")]


@pytest.mark.parametrize("task,architecture", MINIMAL_RUNS)
def test_a_recipe_of_only_task_and_architecture_runs_to_the_end(tmp_path, text_file, task, architecture):
    """A recipe that names only a task and an architecture leaves every other option at its default. A default
    that breaks a run (a seq2seq run once crashed after training, generating its samples with num_beams=None)
    shows only there: each pair trains, evaluates, prints samples and saves a folder that loads and runs."""
    from tests.test_hub import TINY

    recipe = tmp_path / "mine.yaml"
    recipe.write_text(f"task: {task}\narchitecture: {architecture}\n")
    tiny = {k: v for k, v in TINY[architecture].items() if k != "max_position_embeddings"}
    if task == "language-modeling":
        data, pipeline_module = ["--train_file", str(text_file), "--block_size", "16"], run_lm
    elif task == "text-classification":
        rows = "".join(f'"review number {i} was {"great" if i % 2 else "dull"}",{"pos" if i % 2 else "neg"}\n'
                       for i in range(60))
        (tmp_path / "reviews.csv").write_text("text,label\n" + rows)
        data, pipeline_module = ["--train_file", str(tmp_path / "reviews.csv")], run_classification
    else:
        pairs = [(f"the cat {i}", f"le chat {i}") if i % 2 else (f"a dog {i}", f"un chien {i}") for i in range(60)]
        (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"source": s, "target": t}) + "\n" for s, t in pairs))
        data, pipeline_module = ["--train_file", str(tmp_path / "pairs.jsonl")], run_seq2seq
    out = tmp_path / "out"
    results = pipeline_module.main([str(recipe), "--output_dir", str(out), *data, "--config_overrides",
                                    json.dumps(tiny), "--max_steps", "2", "--report_to", "none",
                                    "--disable_tqdm", "true"])
    assert results["train_steps"] == 2 and (out / "config.json").is_file() and (out / "results.json").is_file()
    assert any(key.startswith("test_") for key in results), sorted(results)
    if task == "seq2seq":  # scored by what it generates without being asked, not by its loss alone
        assert {"test_wer", "test_per"} <= set(results) and results["generation_num_beams"] == 1, sorted(results)
    from hfnn.apps.cli import main as cli_main

    assert cli_main(["predict", str(out), "the cat"]) == 0


def test_a_recipe_behind_a_folder_the_process_cannot_enter_is_a_one_line_error(monkeypatch, capsys):
    real_is_file = Path.is_file

    def refused_inside_recipes(path):  # what Path.is_file raises under a folder of mode 700 owned by another user
        if recipes.RECIPES_DIR in (path, *path.parents):
            raise PermissionError(13, "Permission denied", str(path))
        return real_is_file(path)

    monkeypatch.setattr(Path, "is_file", refused_inside_recipes)
    assert common.run_command(run_lm.main, ["rnn_shakespeare_char", "--max_steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot be read" in err and "rnn_shakespeare_char" in err and "Permission denied" in err, err
    assert "Traceback" not in err
