"""Security: no code path of the package unpickles (or otherwise executes) data, and what the
pipelines save as a model holds its weights as safetensors only.

Decisions:
* Final model folders (what ``save_pretrained`` writes, what ``hfnn push`` uploads) are pickle-free:
  safetensors weights plus JSON/text/PNG/Python files; no ``training_args.bin`` either.
* ``checkpoint-*`` folders are the Trainer's private resume format and keep its pickles
  (``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``, ``training_args.bin``). Trainer reads the
  first three back with ``torch.load(weights_only=True)`` and never reads ``training_args.bin``;
  they are written by the run itself, never downloaded, and never uploaded.
* A folder whose weights exist only as ``pytorch_model.bin`` (a model from elsewhere): transformers
  5 reads it with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
  containers, so a booby-trapped pickle raises instead of running (tested below, so a torch or
  transformers downgrade that loses this is caught). When ``model.safetensors`` is present the
  ``.bin`` is never opened. Pass ``use_safetensors=True`` to refuse ``.bin`` weights altogether.
"""

from __future__ import annotations

import ast
import csv
import os
import pickle  # noqa: S403  (used to build a malicious file for the tests below)
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from hfnn import RnnConfig, RnnForCausalLM
from hfnn.pipelines import run_classification, run_lm
from tests.reliability_utils import REPO, run_forked, shakespeare_text

BANNED_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")


# ------------------------------------------------------------------------------------------------ the scanner


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """``np.load`` -> ``numpy.load`` (through the file's import aliases)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def scan_source(source: str, filename: str = "<string>") -> list[str]:
    """Every unsafe construct in ``source``, as ``file:line: problem``."""
    tree = ast.parse(source, filename=filename)
    aliases: dict[str, str] = {}
    problems = []

    def report(node, message):
        problems.append(f"{filename}:{node.lineno}: {message}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[(a.asname or a.name).split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                if a.name.split(".")[0] in BANNED_MODULES:
                    report(node, f"imports {a.name} (deserialising with it can run arbitrary code)")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            if node.module.split(".")[0] in BANNED_MODULES:
                report(node, f"imports from {node.module} (deserialising with it can run arbitrary code)")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases) or ""
        if name == "torch.load" and not _is_true(_keyword(node, "weights_only")):
            report(node, "torch.load without weights_only=True unpickles arbitrary objects")
        elif name == "torch.save":
            report(node, "torch.save writes a pickle; save tensors with safetensors / save_pretrained")
        elif name in ("numpy.load",) and _keyword(node, "allow_pickle") is not None and not (
            isinstance(_keyword(node, "allow_pickle"), ast.Constant) and _keyword(node, "allow_pickle").value is False
        ):
            report(node, "numpy.load with allow_pickle")
        elif name in ("pandas.read_pickle", "joblib.load", "dill.load", "dill.loads"):
            report(node, f"{name} unpickles")
        elif name in ("yaml.load", "yaml.load_all"):
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or (_dotted(loader, aliases) or "").split(".")[-1] not in ("SafeLoader", "CSafeLoader"):
                report(node, f"{name} without SafeLoader can construct arbitrary objects; use yaml.safe_load")
        elif name in ("yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all"):
            report(node, f"{name} can construct arbitrary objects; use yaml.safe_load")
        elif name in ("eval", "exec", "os.system", "os.popen"):
            report(node, f"{name}() runs strings as code")
        elif _is_true(_keyword(node, "shell")):
            report(node, "subprocess with shell=True")
        elif _is_true(_keyword(node, "trust_remote_code")):
            report(node, "trust_remote_code=True in library code runs code downloaded with a model")
        elif (isinstance(_keyword(node, "use_safetensors"), ast.Constant)
              and _keyword(node, "use_safetensors").value is False):
            report(node, "use_safetensors=False loads pickled weights")
    return problems


def package_files() -> list[Path]:
    files = sorted((REPO / "hfnn").rglob("*.py")) + sorted((REPO / "pipelines").rglob("*.py"))
    assert len(files) > 10
    return files


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle",
        "import dill as d",
        "from joblib import load",
        "import cloudpickle",
        "import torch\ntorch.load('x')",
        "import torch as th\nth.load('x', weights_only=False)",
        "from torch import load\nload('x')",
        "import torch\ntorch.save({}, 'x.pt')",
        "import numpy as np\nnp.load('x.npy', allow_pickle=True)",
        "import pandas as pd\npd.read_pickle('x')",
        "import yaml\nyaml.load(open('r.yaml'))",
        "import yaml\nyaml.load(s, Loader=yaml.Loader)",
        "import yaml\nyaml.unsafe_load(s)",
        "eval(text)",
        "import subprocess\nsubprocess.run(cmd, shell=True)",
        "AutoModel.from_pretrained(p, trust_remote_code=True)",
        "AutoModel.from_pretrained(p, use_safetensors=False)",
    ],
)
def test_scanner_catches_unsafe_code(snippet):
    assert scan_source(snippet), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch\ntorch.load('x', weights_only=True)",
        "import numpy as np\nnp.load('x.npy')",
        "import yaml\nyaml.safe_load(s)",
        "import yaml\nyaml.load(s, Loader=yaml.SafeLoader)",
        "model.eval()",
        "import subprocess\nsubprocess.run(['pip', 'download', 'x'])",
        "AutoModel.from_pretrained(p, use_safetensors=True)",
    ],
)
def test_scanner_accepts_safe_code(snippet):
    assert scan_source(snippet) == []


def test_package_code_never_unpickles_or_evaluates_data():
    problems = []
    for path in package_files():
        problems += scan_source(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------------ saved folders


def assert_pickle_free(folder: Path) -> None:
    """Every file of a saved model folder (sub-folders such as source_tokenizer/ included, the
    Trainer's checkpoint-* folders excluded) is safetensors, JSON, text, Markdown, PNG or Python."""
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.is_file() and not p.relative_to(folder).parts[0].startswith("checkpoint-"))
    pickled = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
    assert not pickled, f"{folder} holds pickle files {pickled}"
    assert (folder / "model.safetensors").exists() or list(folder.glob("model-*.safetensors")), names
    for name in names:
        assert name.endswith((".safetensors", ".json", ".txt", ".md", ".png", ".py", ".jinja", ".model")), name


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    (folder / "train.txt").write_text(shakespeare_text(2000), encoding="utf-8")
    with open(folder / "train.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        lines = [ln for ln in shakespeare_text(6000).splitlines() if ln.strip()]
        writer.writerows((ln, "long" if len(ln) > 30 else "short") for ln in lines[:60])
    # grapheme-to-phoneme pairs: distinct words, their letters as "phonemes"
    words = sorted({w.lower() for w in shakespeare_text(8000).split() if w.isalpha() and len(w) > 2})[:80]
    with open(folder / "g2p.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["word", "phonemes"])
        writer.writerows((w, " ".join(w.upper())) for w in words)
    return folder


def test_language_model_folder_is_pickle_free(tmp_path, data):
    out = tmp_path / "lm"
    code = run_forked(run_lm.main, [
        "rnn_shakespeare_char", "--output_dir", str(out), "--train_file", str(data / "train.txt"),
        "--config_overrides", '{"hidden_size": 8, "embedding_size": 8, "num_hidden_layers": 1}',
        "--block_size", "16", "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
        "--eval_strategy", "no", "--num_samples", "0", "--per_device_train_batch_size", "4",
    ], tmp_path / "lm.log")
    assert code == 0, (tmp_path / "lm.log").read_text()[-3000:]
    assert_pickle_free(out)
    # The checkpoint is the Trainer's resume format, pickles included (see the module docstring).
    assert (out / "checkpoint-2" / "optimizer.pt").exists()


def test_classifier_folder_is_pickle_free(tmp_path, data):
    out = tmp_path / "cls"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: text-classification\narchitecture: mlp\n"
                      "config_overrides: {embedding_size: 8, hidden_size: 8}\n"
                      "tokenizer_kind: word\nreport_to: none\n")
    code = run_forked(run_classification.main, [
        str(recipe), "--output_dir", str(out), "--train_file", str(data / "train.csv"),
        "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", "--num_samples", "0",
        "--per_device_train_batch_size", "4", "--write_model_card", "false",
    ], tmp_path / "cls.log")
    assert code == 0, (tmp_path / "cls.log").read_text()[-3000:]
    assert_pickle_free(out)


def test_seq2seq_folder_is_pickle_free(tmp_path, data):
    from hfnn.pipelines import run_seq2seq

    out = tmp_path / "s2s"
    code = run_forked(run_seq2seq.main, [
        "rnn_seq2seq_cmudict", "--output_dir", str(out), "--train_file", str(data / "g2p.csv"),
        "--source_column", "word", "--target_column", "phonemes",
        "--config_overrides", '{"hidden_size": 8, "embedding_size": 8}', "--max_steps", "2",
        "--eval_strategy", "no", "--save_strategy", "no", "--num_samples", "1", "--num_attention_examples", "0",
        "--max_eval_samples", "4", "--max_test_samples", "4", "--generation_num_beams", "1",
        "--per_device_train_batch_size", "4", "--write_model_card", "false",
    ], tmp_path / "s2s.log")
    assert code == 0, (tmp_path / "s2s.log").read_text()[-3000:]
    assert_pickle_free(out)


# ------------------------------------------------------------------------------------------------ loading


class _Payload:
    """Unpickling this runs ``open(path, 'w')``: a stand-in for any code an attacker wants run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture()
def saved(tmp_path) -> Path:
    model = RnnForCausalLM(RnnConfig(vocab_size=12, hidden_size=4, embedding_size=4, num_hidden_layers=1))
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def _plant_payload(folder: Path) -> Path:
    witness = folder.parent / "payload-ran"
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"model.embed_tokens.weight": _Payload(str(witness))}, f)
    return witness


def test_a_booby_trapped_pytorch_model_bin_is_refused_without_running(saved):
    (saved / "model.safetensors").unlink()
    witness = _plant_payload(saved)
    with pytest.raises(pickle.UnpicklingError, match="[Ww]eights only load failed"):
        AutoModelForCausalLM.from_pretrained(saved)
    assert not witness.exists(), "unpickling ran the payload"


def test_pytorch_model_bin_is_never_opened_when_safetensors_exist(saved):
    witness = _plant_payload(saved)
    model = AutoModelForCausalLM.from_pretrained(saved)
    assert isinstance(model, RnnForCausalLM)
    assert not witness.exists()


def test_use_safetensors_refuses_bin_only_folders(saved):
    state = RnnForCausalLM.from_pretrained(saved).state_dict()
    (saved / "model.safetensors").unlink()
    torch.save(state, saved / "pytorch_model.bin")  # a harmless tensors-only pickle
    with pytest.raises(OSError, match="model.safetensors"):
        AutoModelForCausalLM.from_pretrained(saved, use_safetensors=True)
    os.remove(saved / "pytorch_model.bin")
