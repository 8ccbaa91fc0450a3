"""Data-parallel training through ``accelerate launch``: two CPU processes (DDP over gloo) give the
same result as one process with the same global batch.

How the launch is spelled on CPU (accelerate 1.15): ``accelerate launch --cpu --num_processes 2``
starts ONE process (multi-CPU through ``--cpu`` needs ``mpirun``); ``--multi_gpu`` starts the
processes with torchrun, and the pipeline's ``--use_cpu true`` makes each one join a gloo process
group on the CPU (without it the processes do not form a DDP group on a machine without GPUs).

Why the tolerance is 1e-4 (relative, on the final validation loss): both runs draw the same data
order (the seed), cut the same global batch of 4 (1 x 4 or 2 x 2) and average the gradient over it
(DDP averages the two per-process means of equal-sized halves; every LM block has the same number
of tokens, every classification batch element counts once). What remains is floating-point
summation order (the all-reduce, batch 2 vs 4 matmuls, padding to a different length), about 1e-7
per step, compounded by a few Adam steps to well under 1e-5. A wrong setup is far outside it: the
negative control below (the same run with a global batch of 2) moves the loss by more than 1e-3.
"""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import pytest
import torch

from hfnn.pipelines import run_classification, run_lm
from tests.helpers import approx_tolerance, tolerance
from tests.reliability_utils import (
    build_model,
    heads,
    no_dropout,
    run_cli,
    run_forked,
    shakespeare_text,
    synthetic_examples,
    train_briefly,
)

RTOL = 1e-4
HEADS = heads()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Both pipelines run in one launch (two start-ups instead of four): the driver runs each module
# exactly as ``python -m MODULE ARGS`` would (runpy, run_name="__main__"), one after the other.
DRIVER = """\
import json, runpy, sys
for module, argv in json.load(open(sys.argv[1])):
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:  # each pipeline command ends with its exit status
        if done.code not in (0, None):
            raise
"""


def launch_two_processes(runs: list[tuple[str, list[str]]], cwd: Path):
    """``accelerate launch --multi_gpu --num_processes 2 ... MODULE ARGS --use_cpu true`` for each run."""
    (cwd / "driver.py").write_text(DRIVER)
    (cwd / "runs.json").write_text(json.dumps([[module, [*args, "--use_cpu", "true"]] for module, args in runs]))
    command = [
        "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(cwd / "driver.py"), str(cwd / "runs.json"),
    ]
    proc = run_cli(command, cwd=cwd, timeout=480)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    (folder / "train.txt").write_text(shakespeare_text(4000), encoding="utf-8")
    (folder / "valid.txt").write_text(shakespeare_text(1500, offset=50_000), encoding="utf-8")
    # Classification: lines of Hamlet vs lines of Macbeth.
    rows = []
    for play in ("hamlet", "macbeth"):
        lines = [ln.strip() for ln in shakespeare_text(30_000, offset=20_000, play=play).splitlines()
                 if len(ln.strip()) > 20]
        rows += [(ln, play) for ln in lines[:56]]
    rows.sort(key=lambda r: hash(r[0]) % 7)  # interleave the two plays, deterministically enough
    rows.sort(key=lambda r: (len(r[0]) * 7919) % 13)
    for name, part in (("train.csv", rows[:80]), ("valid.csv", rows[80:96]), ("test.csv", rows[96:112])):
        with open(folder / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["sentence", "play"])
            writer.writerows(part)
    return folder


def lm_args(out: Path, data: Path, per_device: int) -> list[str]:
    return [
        "rnn_shakespeare_char", "--output_dir", str(out),
        "--train_file", str(data / "train.txt"), "--validation_file", str(data / "valid.txt"),
        "--config_overrides", '{"hidden_size": 16, "embedding_size": 8, "num_hidden_layers": 1, "rnn_type": "gru", '
                              '"dropout": 0.0}',
        "--block_size", "24", "--max_train_samples", "64", "--max_eval_samples", "16",
        "--per_device_train_batch_size", str(per_device), "--per_device_eval_batch_size", "4",
        "--max_steps", "12", "--save_strategy", "no", "--eval_strategy", "no", "--logging_steps", "4",
        "--learning_rate", "0.02", "--warmup_steps", "0", "--num_samples", "0", "--write_model_card", "false",
        "--seed", "3", "--report_to", "none", "--ddp_find_unused_parameters", "false",
        "--anneal_by_time", "false", "--max_train_minutes", "30",
    ]


# The RNN classifier (bidirectional GRU, mean pooling over the unpadded positions): its loss is a
# per-example mean that DDP averages. (A classifier whose forward takes **kwargs without setting
# accepts_loss_kwargs = False gets its loss multiplied by the number of processes: the CNN's
# validation loss under 2 processes came out exactly 2x before that was fixed; the cheap
# single-process tests below guard every head against it.)
CLASSIFICATION_RECIPE = """\
task: text-classification
architecture: rnn
config_overrides: {hidden_size: 8, embedding_size: 8, num_hidden_layers: 1, rnn_type: gru, bidirectional: true,
                   pooling: mean, dropout: 0.0}
tokenizer_kind: word
lowercase: true
report_to: none
"""


def classification_args(out: Path, data: Path, per_device: int) -> list[str]:
    recipe = data / "cnn_tiny.yaml"
    recipe.write_text(CLASSIFICATION_RECIPE)
    return [
        str(recipe), "--output_dir", str(out),
        "--train_file", str(data / "train.csv"), "--validation_file", str(data / "valid.csv"),
        "--test_file", str(data / "test.csv"), "--text_column", "sentence", "--label_column", "play",
        "--max_length", "32", "--per_device_train_batch_size", str(per_device), "--per_device_eval_batch_size", "4",
        "--max_steps", "10", "--num_train_epochs", "1", "--save_strategy", "no", "--eval_strategy", "no",
        "--load_best_model_at_end", "false", "--logging_steps", "5", "--learning_rate", "0.01",
        "--num_samples", "0", "--write_model_card", "false", "--seed", "3", "--report_to", "none",
        "--ddp_find_unused_parameters", "false",
    ]


def single_process(main, args: list[str], log: Path) -> None:
    code = run_forked(main, args + ["--use_cpu", "true"], log)
    assert code == 0, log.read_text()[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data) -> Path:
    """The two-process runs (one launch) and their single-process references (forked)."""
    root = tmp_path_factory.mktemp("runs")
    single_process(run_lm.main, lm_args(root / "lm-one", data, per_device=4), root / "lm-one.log")
    single_process(run_lm.main, lm_args(root / "lm-half-batch", data, per_device=2), root / "lm-half.log")
    single_process(run_classification.main, classification_args(root / "cls-one", data, per_device=8),
                   root / "cls-one.log")
    proc = launch_two_processes(
        [("hfnn.pipelines.run_lm", lm_args(root / "lm-two", data, per_device=2)),
         ("hfnn.pipelines.run_classification", classification_args(root / "cls-two", data, per_device=4))],
        root,
    )
    (root / "launch.log").write_text(proc.stdout + proc.stderr)
    return root


def test_language_model_two_processes_match_one(runs):
    one, two, control = results(runs / "lm-one"), results(runs / "lm-two"), results(runs / "lm-half-batch")
    # Two processes really shared the work: each trained on half of every global batch.
    log = (runs / "launch.log").read_text()
    assert log.count("process 1 of 2: finished") == 2, "expected a second process in each of the 2 pipelines"
    assert log.count("=== hfnn-") == 2, "only the main process prints the summary"
    assert one["train_steps"] == two["train_steps"] == 12
    assert two["validation_loss"] == pytest.approx(one["validation_loss"], rel=RTOL)
    assert two["test_loss"] == pytest.approx(one["test_loss"], rel=RTOL)
    # Negative control: a global batch of 2 instead of 4 is well outside the tolerance.
    assert abs(control["validation_loss"] - one["validation_loss"]) > 10 * RTOL * one["validation_loss"]


def test_classifier_two_processes_match_one(runs):
    one, two = results(runs / "cls-one"), results(runs / "cls-two")
    assert one["train_steps"] == two["train_steps"] == 10
    assert two["validation_loss"] == pytest.approx(one["validation_loss"], rel=RTOL)
    assert two["test_loss"] == pytest.approx(one["test_loss"], rel=RTOL)
    assert two["test_accuracy"] == one["test_accuracy"]


# ------------------------------------------------------------------------------------------------
# The same contract inside one process. DDP and gradient accumulation both split a global batch,
# and Trainer rescales each part's loss on one assumption: a model whose forward takes **kwargs
# (and does not set accepts_loss_kwargs = False) divides its summed loss by the num_items_in_batch
# it is given; any other model returns a per-part mean, which Trainer averages.


def trainer_counts_items(model) -> bool:
    """Whether Trainer passes num_items_in_batch to this model (trainer.py, model_accepts_loss_kwargs)."""
    import inspect

    if hasattr(model, "accepts_loss_kwargs"):
        return bool(model.accepts_loss_kwargs)
    return any(p.kind == inspect.Parameter.VAR_KEYWORD for p in inspect.signature(model.forward).parameters.values())


LOSS_CASES = [(arch, head, None) for arch, head in HEADS] + [
    (arch, head, problem)
    for arch, head in HEADS
    if head == "AutoModelForSequenceClassification"
    for problem in ("multi_label_classification", "regression")
]


@pytest.mark.parametrize(
    "arch, head, problem_type",
    LOSS_CASES,
    ids=[f"{a}-{h.removeprefix('AutoModelFor')}-{p or 'default'}" for a, h, p in LOSS_CASES],
)
def test_loss_honours_the_trainer_item_count(arch, head, problem_type):
    overrides = ({"problem_type": problem_type, "num_labels": 1 if problem_type == "regression" else 3}
                 if problem_type else {})
    model = build_model(arch, head, **overrides).eval()
    batch = torch.utils.data.default_collate(synthetic_examples(head, 4, seed=2, problem_type=problem_type))
    mean_loss = model(**batch).loss
    if not trainer_counts_items(model):
        return  # Trainer averages per-part means: nothing else to check
    labels = batch["labels"][..., 1:] if head == "AutoModelForCausalLM" else batch["labels"]
    items = labels.ne(-100).sum()  # what Trainer counts (trainer.py, _get_num_items_in_batch)
    scaled = model(**batch, num_items_in_batch=2 * items).loss
    torch.testing.assert_close(scaled, mean_loss / 2, msg=(
        f"{type(model).__name__} ({problem_type or 'default'}): forward takes **kwargs, so Trainer passes "
        "num_items_in_batch and multiplies the loss by the number of processes (and skips the division by "
        "gradient_accumulation_steps), but the loss ignores num_items_in_batch; set accepts_loss_kwargs = False "
        "on the class or divide the summed loss by num_items_in_batch"))


@pytest.mark.parametrize(
    "arch, head",
    HEADS,
    ids=[f"{a}-{h.removeprefix('AutoModelFor')}" for a, h in HEADS],
)
@pytest.mark.numerics
def test_gradient_accumulation_matches_one_big_batch(arch, head, tmp_path):
    """2 micro-batches of 2 accumulated = 1 batch of 4 (same data order, dropout off); the same
    loss scaling DDP relies on, tested without starting processes.

    Plain SGD, so that a weight moves by lr times its gradient: Adam divides each gradient by its own
    running size, which turns the rounding noise of a gradient that is zero in exact arithmetic (the key
    projection's bias under softmax, which ignores a constant added to every logit of a query) into
    full-size steps of arbitrary sign, different for any two summation orders."""
    rows = synthetic_examples(head, 16, seed=3)
    losses_big, weights_big = train_briefly(build_model(arch, head, seed=4, **no_dropout(arch)), rows, tmp_path / "a",
                                            steps=3, batch=4, seed=9, lr=0.1, optim="sgd")
    losses_acc, weights_acc = train_briefly(build_model(arch, head, seed=4, **no_dropout(arch)), rows, tmp_path / "b",
                                            steps=3, batch=2, accumulation=2, seed=9, lr=0.1, optim="sgd")
    assert losses_acc == pytest.approx(losses_big, **approx_tolerance(depth=4))
    moved = 0
    for name in weights_big:
        torch.testing.assert_close(weights_acc[name], weights_big[name], **tolerance(depth=4), msg=name)
        moved += not torch.equal(weights_big[name], build_model(arch, head, seed=4).state_dict()[name])
    assert moved, "no weight moved: the comparison would hold for any two runs"


@pytest.mark.parametrize("arch", [a for a, h in HEADS if h == "AutoModelForCausalLM"])
def test_causal_lm_loss_is_the_shifted_cross_entropy_without_ignored_labels(arch):
    """Position t predicts token t + 1: the first label is never a target and -100 labels are left out.
    Changing exactly those labels leaves the loss as it was; changing a counted one does not."""
    model = build_model(arch, "AutoModelForCausalLM").eval()
    ids = torch.tensor([[5, 9, 7, 12, 6, 8], [4, 11, 10, 13, 5, 7]])
    labels = ids.clone()
    labels[0, 4:] = -100
    labels[1, 2] = -100
    out = model(input_ids=ids, labels=labels)
    logits, targets = out.logits[:, :-1].reshape(-1, out.logits.shape[-1]), labels[:, 1:].reshape(-1)
    keep = targets != -100
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(logits[keep], targets[keep]))
    ignored = labels.clone()
    ignored[:, 0] = 15  # never a target
    assert torch.equal(model(input_ids=ids, labels=ignored).loss, out.loss)
    counted = labels.clone()
    counted[0, 3] = 15 if int(labels[0, 3]) != 15 else 16
    assert not torch.equal(model(input_ids=ids, labels=counted).loss, out.loss)
