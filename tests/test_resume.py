"""Fault tolerance of training: a language-model pipeline run killed with SIGKILL (between steps,
and at every stage of writing a checkpoint) and resumed with ``--resume_from_checkpoint latest``
ends with bitwise the same weights and loss curve as an uninterrupted run with the same seed.

Why bitwise is possible on CPU: one thread, fixed seed, and the Trainer's checkpoint holds
everything the rest of the run depends on (weights, optimizer and scheduler state, the Python /
NumPy / torch RNG states for dropout and the data order, the step counter from which the data
loader skips the batches already seen).

Why the commit marker is needed: ``Trainer._save_checkpoint`` writes straight into
``checkpoint-N`` and ``transformers.trainer_utils.get_last_checkpoint`` picks the highest ``N``
without looking inside; so a kill during a save leaves a folder that the plain Trainer would resume
from. The pipelines commit each checkpoint with ``hfnn_checkpoint.json`` (sizes + SHA-256 of every
file, written atomically after everything else) and resume only from committed, unchanged ones.

The kills happen in forked children of the test process (no import cost; a real process killed by
a real SIGKILL); the faults are patched into the child only. The last resume goes through the real
command line, ``python -m hfnn.pipelines.run_lm ...``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from transformers.trainer_utils import get_last_checkpoint

from hfnn import training
from hfnn.pipelines import checkpoints, run_lm
from hfnn.training import non_finite
from tests.reliability_utils import assert_same_weights, kill_self, load_weights, run_cli, run_forked, shakespeare_text

MAX_STEPS, SAVE_STEPS = 12, 3
KILLED = -9


def pipeline_args(out: Path, data: Path) -> list[str]:
    # 20 training blocks / batch 4 = 5 steps per epoch: the 12 steps cross two epoch boundaries and
    # the checkpoints fall at the start, middle and end of epochs. Dropout is on, so the RNG state
    # of the checkpoint matters. The recipe anneals the learning rate over wall-clock time, which no
    # two runs share: a bitwise comparison needs the step-based schedule (time budget kept, unused).
    return [
        "rnn_shakespeare_char", "--output_dir", str(out),
        "--train_file", str(data / "train.txt"), "--validation_file", str(data / "valid.txt"),
        "--config_overrides", '{"hidden_size": 16, "embedding_size": 8, "num_hidden_layers": 2, '
                              '"rnn_type": "lstm", "dropout": 0.2}',
        "--block_size", "24", "--max_train_samples", "20", "--max_eval_samples", "4",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
        "--max_steps", str(MAX_STEPS), "--save_strategy", "steps", "--save_steps", str(SAVE_STEPS),
        "--logging_steps", "1", "--eval_strategy", "no", "--learning_rate", "0.01", "--warmup_steps", "2",
        "--max_train_minutes", "10", "--anneal_by_time", "false", "--num_samples", "0", "--write_model_card", "false",
        "--seed", "7",
    ]


def files_digest(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def optimizer_state(folder: Path) -> list[torch.Tensor]:
    state = torch.load(folder / "optimizer.pt", weights_only=True)
    return [t for s in state["state"].values() for t in s.values() if isinstance(t, torch.Tensor)]


def losses(folder: Path) -> list[tuple[int, float]]:
    history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
    return [(h["step"], h["loss"]) for h in history if "loss" in h]


def budget_seconds(folder: Path) -> float:
    state = json.loads((folder / "trainer_state.json").read_text())
    return state["stateful_callbacks"]["TimeBudgetCallback"]["attributes"]["elapsed_before"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    (folder / "train.txt").write_text(shakespeare_text(3000), encoding="utf-8")
    (folder / "valid.txt").write_text(shakespeare_text(600, offset=50_000), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, data) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "run"
    code = run_forked(run_lm.main, pipeline_args(out, data), out.parent / "log.txt")
    assert code == 0, (out.parent / "log.txt").read_text()[-3000:]
    return out


# ------------------------------------------------------------------------- faults patched into the child


def slow_steps():
    """0.3 s per step: lets the test process's own SIGKILL land mid-training (numerics unchanged)."""
    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(0.3)
    checkpoints.CheckpointCommitCallback.on_step_end = on_step_end


def kill_in_safetensors(step):
    """The weights file of checkpoint-<step> is half written when the process dies."""
    def setup():
        import transformers.modeling_utils as mu

        real = mu.safe_save_file

        def partial_save(tensors, filename, *args, **kwargs):
            real(tensors, filename, *args, **kwargs)
            if f"checkpoint-{step}" in str(filename):
                os.truncate(filename, os.path.getsize(filename) // 2)
                kill_self()
        mu.safe_save_file = partial_save
    return setup


def kill_in_torch_save(step, name):
    """``name`` (optimizer.pt, scheduler.pt, rng_state.pth...) of checkpoint-<step> is half written."""
    def setup():
        real = torch.save

        def partial_save(obj, f, *args, **kwargs):
            real(obj, f, *args, **kwargs)
            if isinstance(f, (str, os.PathLike)) and str(f).endswith(f"checkpoint-{step}{os.sep}{name}"):
                os.truncate(f, os.path.getsize(f) // 2)
                kill_self()
        torch.save = partial_save
    return setup


def kill_in_trainer_state(step):
    """trainer_state.json, the Trainer's last file, is half written."""
    def setup():
        from transformers.trainer_callback import TrainerState

        real = TrainerState.save_to_json

        def partial_save(self, json_path):
            real(self, json_path)
            if f"checkpoint-{step}" in str(json_path):
                os.truncate(json_path, os.path.getsize(json_path) // 2)
                kill_self()
        TrainerState.save_to_json = partial_save
    return setup


def kill_before_commit(step):
    """Every file of checkpoint-<step> is written, the commit marker is not."""
    def setup():
        real = checkpoints.write_checkpoint_marker

        def no_commit(folder, global_step):
            if global_step == step:
                kill_self()
            return real(folder, global_step)
        checkpoints.write_checkpoint_marker = no_commit
    return setup


def kill_in_commit(step):
    """The marker's temporary file is written and synced, the rename that commits it is not done."""
    def setup():
        real = os.replace

        def no_rename(src, dst, *args, **kwargs):
            if str(dst).endswith(f"checkpoint-{step}{os.sep}{checkpoints.CHECKPOINT_MARKER}"):
                kill_self()
            return real(src, dst, *args, **kwargs)
        os.replace = no_rename
    return setup


# ------------------------------------------------------------------------- the scenario


def check_checkpoints(out: Path, baseline: Path, expect_latest: int | None, stage: str) -> None:
    """Every checkpoint that counts as valid is exactly the uninterrupted run's one of that step; the
    newest valid one is checkpoint-<expect_latest>."""
    latest = checkpoints.last_valid_checkpoint(out)
    want = None if expect_latest is None else str(out / f"checkpoint-{expect_latest}")
    assert latest == want, f"{stage}: newest valid checkpoint {latest}, expected {want}"
    for folder in sorted(out.glob("checkpoint-*")):
        if checkpoints.checkpoint_problem(folder) is None:
            reference = baseline / folder.name
            assert_same_weights(load_weights(folder), load_weights(reference), f"{stage}: {folder.name}")
            for a, b in zip(optimizer_state(folder), optimizer_state(reference), strict=True):
                assert torch.equal(a, b), f"{stage}: {folder.name}/optimizer.pt differs from the uninterrupted run"


def test_uninterrupted_run_commits_every_checkpoint(baseline):
    for step in range(SAVE_STEPS, MAX_STEPS + 1, SAVE_STEPS):
        folder = baseline / f"checkpoint-{step}"
        assert checkpoints.checkpoint_problem(folder) is None
        marker = json.loads((folder / checkpoints.CHECKPOINT_MARKER).read_text())
        assert marker["global_step"] == step
        assert ({"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"}
                <= set(marker["files"]))
    assert checkpoints.last_valid_checkpoint(baseline) == str(baseline / f"checkpoint-{MAX_STEPS}")


def test_killed_anywhere_and_resumed_ends_with_identical_weights(tmp_path, data, baseline):
    out = tmp_path / "run"
    argv = pipeline_args(out, data)
    resume = argv + ["--resume_from_checkpoint", "latest"]
    log = tmp_path / "log.txt"

    def run(args, setup=None, kill_when=None, stage=""):
        code = run_forked(run_lm.main, args, log, setup=setup, kill_when=kill_when)
        assert code == KILLED, (f"{stage}: expected the run to be killed, exit code {code}; "
                                f"log:\n{log.read_text()[-3000:]}")

    # 1. SIGKILL from outside, at whatever point the run has reached once checkpoint-3 is committed.
    run(argv, setup=slow_steps, kill_when=lambda: (out / "checkpoint-3" / checkpoints.CHECKPOINT_MARKER).exists(),
        stage="external kill")
    check_checkpoints(out, baseline, 3, "external kill")
    committed_3 = files_digest(out / "checkpoint-3")

    # 2. Killed while writing the weights of checkpoint-6. The plain Trainer would resume from the
    #    broken folder; the pipeline goes back to checkpoint-3, which is untouched.
    run(resume, setup=kill_in_safetensors(6), stage="kill in model.safetensors")
    assert get_last_checkpoint(str(out)) == str(out / "checkpoint-6")
    assert "never completed" in checkpoints.checkpoint_problem(out / "checkpoint-6")
    check_checkpoints(out, baseline, 3, "kill in model.safetensors")

    # 3. Killed while writing the optimizer state, re-saving into the broken checkpoint-6 folder.
    run(resume, setup=kill_in_torch_save(6, "optimizer.pt"), stage="kill in optimizer.pt")
    check_checkpoints(out, baseline, 3, "kill in optimizer.pt")

    # 4. Every file of checkpoint-6 written, killed before the commit.
    run(resume, setup=kill_before_commit(6), stage="kill before commit")
    assert (out / "checkpoint-6" / "trainer_state.json").exists()
    check_checkpoints(out, baseline, 3, "kill before commit")
    assert files_digest(out / "checkpoint-3") == committed_3, "the previous checkpoint was modified"

    # 5. Resumes from 3, commits 6, killed in trainer_state.json of checkpoint-9.
    run(resume, setup=kill_in_trainer_state(9), stage="kill in trainer_state.json")
    check_checkpoints(out, baseline, 6, "kill in trainer_state.json")
    committed_6 = files_digest(out / "checkpoint-6")

    # 6. Killed between writing the marker's temporary file and the rename that commits it.
    run(resume, setup=kill_in_commit(9), stage="kill in the commit")
    assert (out / "checkpoint-9" / f"{checkpoints.CHECKPOINT_MARKER}.tmp").exists()
    check_checkpoints(out, baseline, 6, "kill in the commit")
    assert files_digest(out / "checkpoint-6") == committed_6, "the previous checkpoint was modified"
    assert files_digest(out / "checkpoint-3") == committed_3, "an older checkpoint was modified"

    # 7. Restarting without --resume_from_checkpoint is refused and changes nothing.
    with pytest.raises(FileExistsError, match="not empty"):
        run_lm.main(argv)
    assert files_digest(out / "checkpoint-6") == committed_6

    # 8. The real command line resumes from checkpoint-6 and finishes the run.
    proc = run_cli(["-m", "hfnn.pipelines.run_lm", *resume], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Skipping checkpoint" in proc.stderr and "checkpoint-9" in proc.stderr

    assert_same_weights(load_weights(out), load_weights(baseline), "final model after 6 kills")
    # The time budget went on from the checkpoint's clock rather than starting again.
    assert budget_seconds(out / "checkpoint-12") > budget_seconds(out / "checkpoint-6") > 0
    assert losses(out / f"checkpoint-{MAX_STEPS}") == losses(baseline / f"checkpoint-{MAX_STEPS}")
    assert [s for s, _ in losses(baseline / f"checkpoint-{MAX_STEPS}")] == list(range(1, MAX_STEPS + 1))
    assert json.loads((out / "results.json").read_text())["train_steps"] == MAX_STEPS


def test_resume_arguments_are_checked(tmp_path, data, baseline):
    # No checkpoint at all.
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        checkpoints.resolve_resume_checkpoint("latest", tmp_path / "nothing")
    # An explicit checkpoint whose weights were changed after it was committed.
    out = tmp_path / "run"
    shutil.copytree(baseline, out)
    weights = out / "checkpoint-9" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="model.safetensors differs"):
        checkpoints.resolve_resume_checkpoint(str(out / "checkpoint-9"), out)
    # An extra file in a committed checkpoint.
    (out / "checkpoint-6" / "stray.bin").write_bytes(b"x")
    assert "stray.bin was written after" in checkpoints.checkpoint_problem(out / "checkpoint-6")
    # "latest" goes past both to the newest intact one; false/none mean a fresh start.
    shutil.rmtree(out / "checkpoint-12")
    assert checkpoints.resolve_resume_checkpoint("latest", out) == str(out / "checkpoint-3")
    assert checkpoints.resolve_resume_checkpoint("false", out) is None
    assert checkpoints.resolve_resume_checkpoint(None, out) is None
    # Pipeline.parse_args resolves it for every pipeline, and claim_output_dir then accepts the non-empty folder.
    *_, training_args = run_lm.LanguageModelingPipeline.parse_args(
        ["rnn_shakespeare_char", "--output_dir", str(out), "--resume_from_checkpoint", "true"],
    )
    assert training_args.resume_from_checkpoint == str(out / "checkpoint-3")
    from hfnn.pipelines.output_dir import claim_output_dir

    with claim_output_dir(out, resume_from=training_args.resume_from_checkpoint) as folder:
        assert folder.work_dir == out


def test_checkpoints_of_a_plain_trainer_are_checked_by_structure(tmp_path, baseline):
    """Folders without markers (a pipeline or script that does not use CheckpointCommitCallback):
    the newest one whose trainer_state.json (written last) is whole and whose files are whole."""
    out = tmp_path / "run"
    shutil.copytree(baseline, out)
    for marker in out.glob(f"checkpoint-*/{checkpoints.CHECKPOINT_MARKER}"):
        marker.unlink()
    assert checkpoints.last_valid_checkpoint(out) == str(out / "checkpoint-12")
    state = out / "checkpoint-12" / "trainer_state.json"
    state.write_text(state.read_text()[:100])
    weights = out / "checkpoint-9" / "model.safetensors"
    os.truncate(weights, weights.stat().st_size - 10)
    (out / "checkpoint-6" / "optimizer.pt").write_bytes((out / "checkpoint-6" / "optimizer.pt").read_bytes()[:200])
    assert "trainer_state.json" in checkpoints.checkpoint_problem(out / "checkpoint-12", require_marker=False)
    assert "truncated" in checkpoints.checkpoint_problem(out / "checkpoint-9", require_marker=False)
    assert "optimizer.pt" in checkpoints.checkpoint_problem(out / "checkpoint-6", require_marker=False)
    assert checkpoints.last_valid_checkpoint(out) == str(out / "checkpoint-3")


def test_time_budget_counts_the_time_before_a_resume():
    from transformers import TrainerControl, TrainerState

    callback = training.TimeBudgetCallback(minutes=1.0, anneal=True)
    resumed = TrainerState(global_step=40, stateful_callbacks={
        "TimeBudgetCallback": {"args": {}, "attributes": {"elapsed_before": 45.0}}})
    callback.on_train_begin(None, resumed, TrainerControl())
    assert 45.0 <= callback.elapsed() < 50.0
    assert callback.elapsed_fraction() == pytest.approx(0.75, abs=0.05)  # annealing goes on from 3/4 of the budget
    assert not callback.on_step_end(None, resumed, TrainerControl()).should_training_stop
    callback.elapsed_before = 61.0
    assert callback.on_step_end(None, resumed, TrainerControl()).should_training_stop
    assert callback.state()["attributes"]["elapsed_before"] >= 61.0
    # A new run (step 0) starts the clock at zero even if the state holds an old value.
    fresh = TrainerState(global_step=0, stateful_callbacks={
        "TimeBudgetCallback": {"args": {}, "attributes": {"elapsed_before": 45.0}}})
    callback.on_train_begin(None, fresh, TrainerControl())
    assert callback.elapsed() < 5.0


def resume_matches_uninterrupted(main, argv, tmp_path: Path, monkeypatch) -> dict:
    """Runs ``argv(out)`` for 2 steps saving every step, then resumes a fresh output folder holding only
    that run's committed checkpoint-1. The resumed process must train exactly one step (from global
    step 1: a fresh start trains two and ends with the same step count) and end with bitwise the same
    weights as the uninterrupted run. Returns the uninterrupted run's results."""
    from transformers import Trainer

    steps = ["--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--save_total_limit", "3",
             "--anneal_by_time", "false", "--warmup_steps", "0", "--seed", "5"]
    full = tmp_path / "full"
    results = main(argv(full) + steps)
    assert results["train_steps"] == 2
    assert checkpoints.checkpoint_problem(full / "checkpoint-1") is None
    resumed_out = tmp_path / "resumed"
    resumed_out.mkdir()
    shutil.copytree(full / "checkpoint-1", resumed_out / "checkpoint-1")

    trained_from = []
    training_step = Trainer.training_step

    def counting(self, *args, **kwargs):
        trained_from.append(self.state.global_step)
        return training_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", counting)
    resumed = main(argv(resumed_out) + steps + ["--resume_from_checkpoint", "latest"])
    monkeypatch.undo()
    assert trained_from == [1], f"the resumed run trained from global steps {trained_from}, expected [1]"
    assert resumed["train_steps"] == 2
    assert_same_weights(load_weights(resumed_out), load_weights(full), "resumed vs uninterrupted run")
    before = load_weights(resumed_out / "checkpoint-1")
    assert any(not torch.equal(before[k], v) for k, v in load_weights(full).items()), "the second step changed nothing"
    return results


def test_language_model_pipeline_resumes_to_the_uninterrupted_weights(tmp_path, data, monkeypatch):
    def argv(out):
        return ["rnn_shakespeare_char", "--output_dir", str(out), "--train_file", str(data / "train.txt"),
                "--validation_file", str(data / "valid.txt"),
                "--config_overrides", '{"hidden_size": 8, "embedding_size": 8, "num_hidden_layers": 1, "dropout": 0.2}',
                "--block_size", "16", "--max_train_samples", "16", "--max_eval_samples", "2",
                "--per_device_train_batch_size", "4", "--eval_strategy", "no", "--num_samples", "0",
                "--write_model_card", "false", "--report_to", "none", "--disable_tqdm", "true"]

    resume_matches_uninterrupted(run_lm.main, argv, tmp_path, monkeypatch)


def test_classification_pipeline_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    from hfnn.pipelines import run_classification

    words = ["great", "fine", "fun", "dull", "bad", "boring"]
    (tmp_path / "train.csv").write_text(
        "text,label\n" + "".join(f"{a} and {b},{'pos' if i < 3 else 'neg'}\n"
                                 for i, a in enumerate(words) for b in words), encoding="utf-8")

    def argv(out):
        return ["mlp_rotten_tomatoes", "--output_dir", str(out), "--train_file", str(tmp_path / "train.csv"),
                "--validation_file", str(tmp_path / "train.csv"), "--test_file", str(tmp_path / "train.csv"),
                "--config_overrides", '{"embedding_size": 4, "hidden_size": 4}', "--per_device_train_batch_size", "4",
                "--eval_strategy", "no", "--load_best_model_at_end", "false", "--num_samples", "0",
                "--write_model_card", "false", "--report_to", "none", "--disable_tqdm", "true"]

    resume_matches_uninterrupted(run_classification.main, argv, tmp_path, monkeypatch)


def test_seq2seq_pipeline_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    from hfnn.pipelines import run_seq2seq

    pairs = [("the cat", "le chat"), ("a dog", "un chien"), ("the dog", "le chien"), ("a cat", "un chat")]
    for split, rows in (("train", pairs * 4), ("dev", pairs)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps({"en": s, "fr": t}) + "\n" for s, t in rows))

    def argv(out):
        return ["rnn_seq2seq_cmudict", "--output_dir", str(out), "--train_file", str(tmp_path / "train.jsonl"),
                "--validation_file", str(tmp_path / "dev.jsonl"), "--test_file", str(tmp_path / "dev.jsonl"),
                "--source_column", "en", "--target_column", "fr", "--source_tokenizer_kind", "word",
                "--target_tokenizer_kind", "word", "--per_device_train_batch_size", "4",
                "--config_overrides", json.dumps({"hidden_size": 8, "embedding_size": 8, "attention": "bahdanau",
                                                  "dropout": 0.2}),
                "--eval_strategy", "no", "--generation_num_beams", "1", "--num_samples", "0",
                "--num_attention_examples", "0", "--write_model_card", "false", "--report_to", "none",
                "--disable_tqdm", "true", "--dataloader_num_workers", "0"]

    resume_matches_uninterrupted(run_seq2seq.main, argv, tmp_path, monkeypatch)


def checkpointing_classifier_argv(tmp_path: Path, out: Path, *extra: str) -> list[str]:
    """A tiny MLP classification run on a written toy CSV that saves a checkpoint every step (3 kept)."""
    words = ["great", "fine", "fun", "dull", "bad", "boring"]
    (tmp_path / "train.csv").write_text(
        "text,label\n" + "".join(f"{a} and {b},{'pos' if i < 3 else 'neg'}\n"
                                 for i, a in enumerate(words) for b in words), encoding="utf-8")
    return ["mlp_rotten_tomatoes", "--output_dir", str(out), "--train_file", str(tmp_path / "train.csv"),
            "--validation_file", str(tmp_path / "train.csv"), "--test_file", str(tmp_path / "train.csv"),
            "--config_overrides", '{"embedding_size": 4, "hidden_size": 4}', "--per_device_train_batch_size", "4",
            "--save_strategy", "steps", "--save_steps", "1", "--save_total_limit", "3", "--eval_strategy", "no",
            "--load_best_model_at_end", "false", "--num_samples", "0", "--write_model_card", "false",
            "--report_to", "none", "--disable_tqdm", "true", *extra]


def test_classification_pipeline_commits_its_checkpoints_and_resumes_from_the_latest(tmp_path):
    from hfnn.pipelines import run_classification

    out = tmp_path / "run"
    argv = checkpointing_classifier_argv(tmp_path, out, "--max_steps", "2")
    assert run_classification.main(argv)["train_steps"] == 2
    for step in (1, 2):
        assert (out / f"checkpoint-{step}" / checkpoints.CHECKPOINT_MARKER).is_file()
        assert checkpoints.checkpoint_problem(out / f"checkpoint-{step}") is None
    # checkpoint-2 half written and never committed (a kill while saving): "latest" resumes from checkpoint-1
    (out / "checkpoint-2" / checkpoints.CHECKPOINT_MARKER).unlink()
    (out / "checkpoint-2" / "model.safetensors").write_bytes(b"half")
    assert checkpoints.resolve_resume_checkpoint("latest", out) == str(out / "checkpoint-1")
    resumed = run_classification.main(argv + ["--resume_from_checkpoint", "latest"])
    assert resumed["train_steps"] == 2
    assert checkpoints.checkpoint_problem(out / "checkpoint-2") is None  # saved again and committed


def test_an_overwriting_run_that_did_not_end_is_resumed_in_its_staged_folder(tmp_path, monkeypatch):
    """--overwrite_output_dir stages the new run beside the old folder; when it is stopped (Ctrl-C) or killed
    after a checkpoint, the old folder stays as it was and --resume_from_checkpoint latest continues the new run
    (not the old folder's own checkpoints), then swaps it in."""
    from transformers import Trainer

    from hfnn.pipelines import run_classification
    from hfnn.pipelines.output_dir import staged_dir

    out = tmp_path / "run"
    argv = checkpointing_classifier_argv(tmp_path, out, "--anneal_by_time", "false")
    assert run_classification.main(argv + ["--max_steps", "3", "--seed", "1"])["train_steps"] == 3
    old = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    training_step = Trainer.training_step
    trained_from, stop = [], [True]

    def stopped_after_two(self, *args, **kwargs):
        trained_from.append(self.state.global_step)
        if self.state.global_step == 2 and stop.pop() if stop else False:
            raise KeyboardInterrupt
        return training_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", stopped_after_two)
    new_run = argv + ["--max_steps", "4", "--seed", "2", "--overwrite_output_dir", "true"]
    with pytest.raises(KeyboardInterrupt):
        run_classification.main(new_run)
    staged = staged_dir(out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == old, "the old run was changed"
    assert checkpoints.last_valid_checkpoint(staged) == str(staged / "checkpoint-2"), "the stopped run was not kept"
    # latest = the stopped run's checkpoint-2, not the old run's newer-numbered checkpoint-3
    assert checkpoints.resolve_resume_checkpoint("latest", out) == str(staged / "checkpoint-2")

    trained_from.clear()
    resumed = run_classification.main(new_run + ["--resume_from_checkpoint", "latest"])
    assert trained_from == [2, 3] and resumed["train_steps"] == 4
    # the continued run replaced the old folder: its checkpoints are 2-4 (the old run had 1-3)
    assert (not staged.exists()
            and sorted(p.name for p in out.glob("checkpoint-*")) == [f"checkpoint-{i}" for i in (2, 3, 4)])
    assert json.loads((out / "results.json").read_text())["train_steps"] == 4


def test_time_annealing_runs_the_learning_rate_down_to_its_final_fraction():
    """The cosine over the time budget: the full scheduled rate at the start, half-way between it and
    5 % (the default final fraction) at half the budget, 5 % once the budget is spent."""
    callback = training.TimeBudgetCallback(minutes=1.0, anneal=True)
    callback.start = callback.clock()
    for spent, expected in ((0.0, 1.0), (30.0, 0.05 + 0.95 * 0.5), (60.0, 0.05)):
        callback.elapsed_before = spent
        assert callback.factor() == pytest.approx(expected, abs=2e-3), spent


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_the_finite_check_tells_overflowing_sums_from_nans_and_infinities(dtype):
    """The per-step check sums each tensor in its own precision; finite values whose sum overflows must not
    read as an infinity, and a NaN, +inf or -inf anywhere must be found."""
    big = torch.finfo(dtype).max
    huge = torch.full((4, 4), big, dtype=dtype)  # finite, but its sum overflows
    assert not torch.isfinite(huge.sum())
    tensors = [torch.ones(3, dtype=dtype), huge, torch.zeros(0, dtype=dtype)]
    assert non_finite._all_finite_each(tensors) == [True, True, True]
    for bad in (float("nan"), float("inf"), -float("inf")):
        spoiled = torch.ones(3, 3, dtype=dtype)
        spoiled[1, 2] = bad
        assert non_finite._all_finite_each([*tensors, spoiled]) == [True, True, True, False], bad
    assert non_finite._all_finite_each([]) == []


def test_the_guard_stops_at_non_finite_weights_after_a_step():
    from transformers import TrainerControl, TrainerState

    guard = training.NonFiniteGuardCallback()
    model = torch.nn.Linear(2, 2)
    state = TrainerState(global_step=3)
    assert not guard.on_step_end(None, state, TrainerControl(), model=model).should_training_stop
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    control = guard.on_step_end(None, state, TrainerControl(), model=model)
    assert control.should_training_stop and "weights became NaN or infinite at step 3" in guard.problem
