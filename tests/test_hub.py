"""Sharing saved models: the upload manifest, push_folder's checks up to the network boundary, and
every architecture's saved folder loading and running in a process that cannot import hfnn."""

import inspect
import json
import shutil
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

import hfnn
from hfnn.data.tokenization import train_tokenizer
from hfnn.sharing.hub import HubAuthError, HubConnectionError, ManifestError, push_folder, upload_manifest
from tests.helpers import randomize_, run_without_hfnn

TEXTS = ["hello world", "to be or not to be", "a neural network", "Romeo. what light"]
WORDS = ["hello", "world", "neural", "network", "light"]
PHONES = ["HH AH0 L OW1", "W ER1 L D", "N UH1 R AH0 L", "N EH1 T W ER2 K", "L AY1 T"]
LABELS = {0: "rotten", 1: "fresh"}
AUTO = {
    "AutoModelForCausalLM": AutoModelForCausalLM,
    "AutoModelForSequenceClassification": AutoModelForSequenceClassification,
    "AutoModelForSeq2SeqLM": AutoModelForSeq2SeqLM,
}
# Small settings for the architectures known today; an architecture added later gets generic ones.
TINY = {
    "rnn": dict(hidden_size=16, embedding_size=8, num_hidden_layers=1, rnn_type="gru", dropout=0.0),
    "cnn": dict(embedding_size=8, window_sizes=[2, 3], num_filters=4, dropout=0.0),
    "mlp": dict(embedding_size=8, hidden_size=16, num_hidden_layers=1, dropout=0.0),
    "rnn_seq2seq": dict(hidden_size=16, embedding_size=8, attention="bahdanau", dropout=0.0),
    "transformer": dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=64, dropout=0.0, attention_dropout=0.0),
}
GENERIC = dict(hidden_size=16, embedding_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
               max_position_embeddings=64, dropout=0.0)


def heads():
    """(architecture, auto class name) for every task head registered in hfnn.ARCHITECTURES."""
    return [(arch, auto) for arch, entry in hfnn.ARCHITECTURES.items() for auto, _ in entry.models if auto in AUTO]


def save_tiny_model(arch, auto_name, folder, seed=0, **overrides):
    """Saves a tiny randomised model of ``arch`` with head ``auto_name`` and its tokenizer(s) into ``folder``
    (``overrides``: config fields to change).

    Language models and classifiers get a char tokenizer; seq2seq models a phoneme target tokenizer at the
    root and a char source tokenizer in ``source_tokenizer/``. Returns (model, tokenizer, source_tokenizer).
    """
    config_cls = getattr(hfnn, hfnn.ARCHITECTURES[arch].config_class)
    params = inspect.signature(config_cls.__init__).parameters
    seq2seq = auto_name == "AutoModelForSeq2SeqLM"
    source_tok = train_tokenizer(WORDS, kind="char") if seq2seq else None
    tok = train_tokenizer(PHONES if seq2seq else TEXTS, kind="phoneme" if seq2seq else "char", padding_side="left")
    kwargs = dict(TINY.get(arch) or {k: v for k, v in GENERIC.items() if k in params})
    kwargs["vocab_size"] = len(tok)
    if seq2seq:
        if "source_vocab_size" in params:
            kwargs["source_vocab_size"] = len(source_tok)
        if "is_encoder_decoder" in params:
            kwargs["is_encoder_decoder"] = True
    kwargs.update(overrides)
    if auto_name == "AutoModelForSequenceClassification" and "num_labels" not in overrides:
        kwargs["id2label"] = dict(LABELS)
        kwargs["label2id"] = {v: k for k, v in LABELS.items()}
    config = config_cls(**kwargs)
    torch.manual_seed(seed)
    model = AUTO[auto_name].from_config(config)
    randomize_(model, std=0.5, seed=seed)
    model.eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    if source_tok is not None:
        source_tok.save_pretrained(folder / "source_tokenizer")
    return model, tok, source_tok


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hub") / "rnn-lm"
    save_tiny_model("rnn", "AutoModelForCausalLM", folder)
    (folder / "README.md").write_text("# card\n")
    (folder / "results.json").write_text(json.dumps({"validation_loss": 1.0}))
    (folder / "loss_curve.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / "notes.txt").write_text("not part of the model")
    (folder / "train_script.py").write_text("import hfnn\n")  # not imported by the model code
    for junk in ("checkpoint-2/optimizer.pt", "checkpoint-2/model.safetensors", "checkpoint-2/tokenizer.json",
                 "runs/events.out.tfevents"):
        (folder / junk).parent.mkdir(parents=True, exist_ok=True)
        (folder / junk).write_bytes(b"x")
    return folder


def copy_folder(src, dst):
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------- manifest


def test_manifest_of_a_saved_rnn_lm_is_exactly_what_loading_needs(lm_folder):
    assert upload_manifest(lm_folder) == sorted([
        "README.md", "config.json", "configuration_rnn.py", "configuration_utils.py", "generation_config.json",
        "loss_curve.png", "model.safetensors", "modeling_rnn.py", "results.json", "tokenizer.json",
        "tokenizer_config.json",
        # the sibling modules modeling_rnn.py imports (and they import)
        "caches.py", "decoding.py", "gradient_checkpointing.py", "initialization.py", "input_checks.py", "masks.py",
        "outputs.py", "recurrence.py", "recurrent_cells.py",
    ])


def test_manifest_includes_the_source_tokenizer_of_a_seq2seq_model(tmp_path):
    save_tiny_model("rnn_seq2seq", "AutoModelForSeq2SeqLM", tmp_path / "g2p")
    files = upload_manifest(tmp_path / "g2p")
    assert "source_tokenizer/tokenizer.json" in files and "source_tokenizer/tokenizer_config.json" in files
    assert {"configuration_rnn_seq2seq.py", "modeling_rnn_seq2seq.py", "model.safetensors"} <= set(files)


def test_manifest_follows_sibling_imports_recursively(lm_folder, tmp_path):
    folder = copy_folder(lm_folder, tmp_path / "m")
    modeling = folder / "modeling_rnn.py"
    modeling.write_text("from .rnn_layers import Layer\n" + modeling.read_text())
    (folder / "rnn_layers.py").write_text("from . import rnn_utils\nLayer = 1\n")
    (folder / "rnn_utils.py").write_text("import torch\n")
    files = upload_manifest(folder)
    assert {"rnn_layers.py", "rnn_utils.py"} <= set(files)
    assert "train_script.py" not in files


def test_missing_sibling_module_is_named(lm_folder, tmp_path):
    folder = copy_folder(lm_folder, tmp_path / "m")
    (folder / "configuration_rnn.py").unlink()
    with pytest.raises(ManifestError, match=r"configuration_rnn\.py is missing \(needed by config\.json auto_map\)"):
        upload_manifest(folder)
    folder2 = copy_folder(lm_folder, tmp_path / "m2")
    modeling = folder2 / "modeling_rnn.py"
    modeling.write_text("from .rnn_layers import Layer\n" + modeling.read_text())
    with pytest.raises(ManifestError, match=r"rnn_layers\.py is missing \(needed by modeling_rnn\.py\)"):
        upload_manifest(folder2)


def test_folder_checks(lm_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        upload_manifest(tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ManifestError, match="no config.json"):
        upload_manifest(empty)
    no_map = copy_folder(lm_folder, tmp_path / "no_map")
    config = json.loads((no_map / "config.json").read_text())
    del config["auto_map"]
    (no_map / "config.json").write_text(json.dumps(config))
    with pytest.raises(ManifestError, match="no auto_map"):
        upload_manifest(no_map)


def test_pickle_weights_are_refused(lm_folder, tmp_path):
    folder = copy_folder(lm_folder, tmp_path / "pickled")
    (folder / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(ManifestError, match=r"only as pickle \(pytorch_model\.bin\)"):
        upload_manifest(folder)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(ManifestError, match="no model.safetensors"):
        upload_manifest(folder)


# ---------------------------------------------------------------- push_folder


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf_home" / "stored_tokens"))


def test_dry_run_returns_the_manifest_without_a_token(lm_folder, no_token):
    assert push_folder(lm_folder, "me/rnn", dry_run=True) == upload_manifest(lm_folder)


def test_no_token_is_a_clear_error(lm_folder, no_token):
    with pytest.raises(HubAuthError) as err:
        push_folder(lm_folder, "me/rnn")
    assert str(err.value) == "no Hugging Face token: run `hf auth login` or set HF_TOKEN"


def test_folder_is_checked_before_the_token(tmp_path, no_token):
    with pytest.raises(FileNotFoundError):
        push_folder(tmp_path / "missing", "me/rnn")


def test_bad_repo_id(lm_folder, no_token):
    with pytest.raises(ValueError, match="invalid repo id"):
        push_folder(lm_folder, "not a/valid/id", dry_run=True)


def test_unreachable_hub_fails_fast_with_one_line(lm_folder, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "3")
    start = time.monotonic()
    with pytest.raises(HubConnectionError) as err:
        push_folder(lm_folder, "me/rnn", token="hf_fake_token")
    assert time.monotonic() - start < 30
    message = str(err.value)
    assert "could not reach the Hugging Face Hub at http://127.0.0.1:9" in message
    assert "\n" not in message and "nothing was committed" in message


# ---------------------------------------------------------------- remote code, every architecture


@pytest.fixture(scope="module")
def remote_outputs(tmp_path_factory):
    """Saves a tiny model of every head, copies only its upload manifest into a fresh folder, and runs
    each in one subprocess that cannot import hfnn; returns (in-process outputs, subprocess outputs)."""
    root = tmp_path_factory.mktemp("remote")
    expected, specs = {}, {}
    for arch, auto in heads():
        key = f"{arch}-{auto}"
        saved = root / "saved" / key
        model, tok, source_tok = save_tiny_model(arch, auto, saved)
        alone = root / "upload" / key
        for name in upload_manifest(saved):
            (alone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(saved / name, alone / name)
        if auto == "AutoModelForCausalLM":
            ids = tok("to be", add_special_tokens=False, return_tensors="pt")
            out = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
            expected[key] = out[0].tolist()
        elif auto == "AutoModelForSequenceClassification":
            ids = tok(["a neural network", "hello"], padding=True, return_tensors="pt")
            with torch.no_grad():
                expected[key] = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits.tolist()
        else:
            ids = source_tok(["neural", "light"], padding=True, return_tensors="pt")
            out = model.generate(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], max_new_tokens=6,
                                 do_sample=False)
            expected[key] = out.tolist()
        specs[key] = (str(alone), auto)
    code = f"""
import json, torch
from transformers import AutoTokenizer, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification
specs = {json.dumps(specs)}
out = {{}}
for key, (path, auto) in specs.items():
    try:
        model = globals()[auto].from_pretrained(path, trust_remote_code=True).eval()
        assert not type(model).__module__.startswith("hfnn"), type(model).__module__
        if auto == "AutoModelForSeq2SeqLM":
            tok = AutoTokenizer.from_pretrained(path + "/source_tokenizer", trust_remote_code=True)
            ids = tok(["neural", "light"], padding=True, return_tensors="pt")
            res = model.generate(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], max_new_tokens=6,
                                 do_sample=False).tolist()
        else:
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
            if auto == "AutoModelForCausalLM":
                ids = tok("to be", add_special_tokens=False, return_tensors="pt")
                res = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=0)[0].tolist()
            else:
                ids = tok(["a neural network", "hello"], padding=True, return_tensors="pt")
                with torch.no_grad():
                    res = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits.tolist()
        out[key] = {{"result": res, "module": type(model).__module__}}
    except Exception as err:
        out[key] = {{"error": type(err).__name__ + ": " + str(err)[:500]}}
print("RESULT" + json.dumps(out))
"""
    stdout = run_without_hfnn(code, cwd=root, timeout=600)
    got = json.loads(stdout.split("RESULT", 1)[1])
    return expected, got


@pytest.mark.parametrize("arch,auto", heads(), ids=[f"{a}-{h.replace('AutoModelFor', '')}" for a, h in heads()])
def test_upload_manifest_alone_loads_and_runs_without_hfnn(remote_outputs, arch, auto):
    expected, got = remote_outputs
    key = f"{arch}-{auto}"
    assert "error" not in got[key], got[key]
    assert got[key]["module"].startswith("transformers_modules")
    if auto == "AutoModelForSequenceClassification":
        assert torch.allclose(torch.tensor(got[key]["result"]), torch.tensor(expected[key]), atol=1e-5)
    else:
        assert got[key]["result"] == expected[key]
