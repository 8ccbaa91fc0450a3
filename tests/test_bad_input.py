"""Bad input, end to end: a catalogue of wrong configurations, inputs, data, files, recipes and command
lines. Each case must fail fast (under a deadline) with an error that names the problem, and leave
every existing file as it was. Cases generated from ``hfnn.ARCHITECTURES`` cover new models as
they are registered.

The catalogue is also written out as a table, ``tests/BAD_INPUT.md``:
``python -m tests.test_bad_input`` runs every case and rewrites it with the errors actually raised.
Cases marked ``open`` are known bad errors in other modules: they are strict xfails (set at
collection, only for the catalogue's AssertionError) with the fix that closes them; a fixed case
XPASSes and fails the run until its ``open=`` is removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

import hfnn
from hfnn import training
from hfnn.data.corpora import load_corpus
from hfnn.data.tokenization import train_tokenizer
from hfnn.models.errors import FileError, HubError, is_user_error
from hfnn.pipelines import common, run_classification, run_lm
from hfnn.training import recipes
from tests.reliability_utils import VOCAB, build_model, config_class, heads, model_classes, shakespeare_text

DEADLINE_S = 60
TABLE = Path(__file__).with_name("BAD_INPUT.md")


@dataclasses.dataclass
class Case:
    id: str
    input: str  # what the user did (a table column)
    run: Callable[[Path, Path], Any]  # (fixtures, scratch folder) -> anything
    error: type | tuple | None  # None: handled without an error, by design (``check`` says how)
    match: str = ""  # regex the message must match
    open: str | None = None  # a known bad error in another module: where and how to fix it
    check: Callable[[Any], None] | None = None


CASES: list[Case] = []


def case(id, input, error, match="", open=None, check=None):
    def register(fn):
        CASES.append(Case(id, input, fn, error, match, open, check))
        return fn
    return register


# ------------------------------------------------------------------------------------------------ fixtures


def make_fixtures(root: Path) -> Path:
    """Data files, recipes and saved model folders the cases use (never modified by them)."""
    root.mkdir(parents=True, exist_ok=True)
    text = shakespeare_text(3000)
    (root / "ok.txt").write_text(text, encoding="utf-8")
    (root / "one_line.txt").write_text("To be, or not to be, that is the question.\n", encoding="utf-8")
    (root / "latin1.txt").write_bytes("Caf\xe9 au lait\n".encode("latin-1") * 30)
    (root / "latin1.csv").write_bytes("text,label\nCaf\xe9,a\nTh\xe9,b\n".encode("latin-1"))
    lines = [ln for ln in text.splitlines() if ln.strip()]
    (root / "sentences.csv").write_text("sentence,label\n" + "".join(f'"{ln}",{i % 2}\n' for i, ln in enumerate(lines)),
                                        encoding="utf-8")
    (root / "text_only.csv").write_text("text\n" + "".join(f'"{ln}"\n' for ln in lines), encoding="utf-8")
    (root / "negative.csv").write_text("text,label\n" + "".join(f'"{ln}",{i % 3 - 1}\n' for i, ln in enumerate(lines)),
                                       encoding="utf-8")
    (root / "one_class.csv").write_text("text,label\n" + "".join(f'"{ln}",x\n' for ln in lines), encoding="utf-8")
    (root / "notes.docx").write_bytes(b"PK\x03\x04 not really a document")
    (root / "unknown_key.yaml").write_text("task: language-modeling\narchitecture: rnn\nblock_sise: 32\n")
    (root / "bad.yaml").write_text("architecture: rnn\n  block_size: [32\n")
    (root / "list.yaml").write_text("- architecture\n- rnn\n")
    (root / "bad.json").write_text('{"architecture": "rnn",}')
    (root / "existing_output").mkdir()
    (root / "existing_output" / "keep.txt").write_text("user data")
    (root / "a_file").write_text("not a folder")

    tok = train_tokenizer(text, kind="char")
    tok.save_pretrained(root / "tokenizer")
    big = train_tokenizer(text + "".join(chr(c) for c in range(0x3b1, 0x3c9)), kind="char")
    big.save_pretrained(root / "bigger_tokenizer")
    saved = {
        "rnn_lm": build_model("rnn", "AutoModelForCausalLM", vocab_size=len(tok)),
        "rnn_cls": build_model("rnn", "AutoModelForSequenceClassification", vocab_size=len(tok)),
        "cnn_cls": build_model("cnn", "AutoModelForSequenceClassification", vocab_size=len(tok)),
        "transformer_lm": build_model("transformer", "AutoModelForCausalLM", vocab_size=len(tok),
                                      max_position_embeddings=16),
        "transformer_cls": build_model("transformer", "AutoModelForSequenceClassification", vocab_size=len(tok)),
    }
    for name, model in saved.items():
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    weights = (root / "rnn_lm" / "model.safetensors").read_bytes()
    for name, content in (("corrupt", os.urandom(len(weights))), ("truncated", weights[: len(weights) // 2]),
                          ("empty_weights", b"")):
        shutil.copytree(root / "rnn_lm", root / name)
        (root / name / "model.safetensors").write_bytes(content)
    shutil.copytree(root / "rnn_lm", root / "no_weights")
    (root / "no_weights" / "model.safetensors").unlink()
    shutil.copytree(root / "rnn_lm", root / "bad_config_json")
    (root / "bad_config_json" / "config.json").write_text("{not json")
    shutil.copytree(root / "rnn_lm", root / "bad_config_value")
    config = json.loads((root / "rnn_lm" / "config.json").read_text())
    (root / "bad_config_value" / "config.json").write_text(json.dumps({**config, "hidden_size": 0}))
    return root


def lm_argv(fixtures: Path, out: Path, *extra: str) -> list[str]:
    return ["rnn_shakespeare_char", "--output_dir", str(out), "--train_file", str(fixtures / "ok.txt"),
            "--config_overrides", '{"hidden_size": 8, "embedding_size": 8, "num_hidden_layers": 1}',
            "--max_steps", "1", "--num_samples", "0", "--write_model_card", "false", "--eval_strategy", "no",
            "--report_to", "none", *extra]


def cls_argv(fixtures: Path, out: Path, train: str, *extra: str) -> list[str]:
    return ["cnn_rotten_tomatoes", "--output_dir", str(out), "--train_file", str(fixtures / train),
            "--config_overrides", '{"embedding_size": 8, "window_sizes": [2], "num_filters": 2}',
            "--max_steps", "1", "--num_samples", "0", "--write_model_card", "false", "--eval_strategy", "no",
            "--save_strategy", "no", "--report_to", "none", *extra]


# ------------------------------------------------------------------------------------------------ configs

# architecture -> [(case id, what the message must name, config fields)]
CONFIG_CASES = {
    "rnn": [("hidden_size-zero", "hidden_size", {"hidden_size": 0}),
            ("rnn_type", "rnn_type", {"rnn_type": "transformer"}),
            ("dropout", "dropout", {"dropout": 1.5}), ("pooling", "pooling", {"pooling": "median"}),
            ("pad_token_id", "pad_token_id", {"vocab_size": VOCAB, "pad_token_id": VOCAB}),
            ("hidden_size-string", "hidden_size", {"hidden_size": "32"}),
            ("num_hidden_layers-bool", "num_hidden_layers", {"num_hidden_layers": True})],
    "cnn": [("window_sizes", "window_sizes", {"window_sizes": []}),
            ("embedding_mode", "embedding_mode", {"embedding_mode": "frozen"}),
            ("max_norm", "max_norm", {"max_norm": -1.0})],
    "mlp": [("activation", "activation", {"activation": "softplus"}),
            ("ngram_range", "ngram_range", {"ngram_range": [2, 1]})],
    "rnn_seq2seq": [("odd-hidden-bidirectional", "even", {"hidden_size": 7, "bidirectional_encoder": True}),
                    ("input_feeding-without-luong", "input_feeding", {"attention": "bahdanau", "input_feeding": True}),
                    ("attention", "attention", {"attention": "multihead"})],
    "transformer": [("heads-not-dividing-hidden", "divisible", {"hidden_size": 10, "num_attention_heads": 3}),
                    ("position_embedding_type", "position_embedding_type", {"position_embedding_type": "alibi"}),
                    ("rotary-odd-head-size", "rotary", {"position_embedding_type": "rotary", "hidden_size": 6,
                                                        "num_attention_heads": 2}),
                    ("source_vocab_size-decoder-only", "source_vocab_size", {"source_vocab_size": 30})],
}

for _arch in hfnn.ARCHITECTURES:
    case(f"config-{_arch}-vocab_size", f"`{hfnn.ARCHITECTURES[_arch].config_class}(vocab_size=0)`", ValueError,
         "vocab_size")(
        lambda fx, tmp, a=_arch: config_class(a)(vocab_size=0))
    for _suffix, _field, _values in CONFIG_CASES.get(_arch, []):
        _shown = ", ".join(f"{k}={v!r}" for k, v in _values.items())
        case(f"config-{_arch}-{_suffix}", f"`{hfnn.ARCHITECTURES[_arch].config_class}({_shown})`", ValueError, _field)(
            lambda fx, tmp, a=_arch, v=_values: config_class(a)(**v))

case("config-rnn-lm-bidirectional", "`RnnForCausalLM(RnnConfig(bidirectional=True))`", ValueError, "bidirectional")(
    lambda fx, tmp: hfnn.RnnForCausalLM(hfnn.RnnConfig(vocab_size=VOCAB, bidirectional=True)))


# ------------------------------------------------------------------------------------------------ model inputs


def _call(model, head, input_ids, **kwargs):
    if head == "AutoModelForSeq2SeqLM" and "labels" not in kwargs:
        kwargs.setdefault("decoder_input_ids", torch.tensor([[2, 5]] * input_ids.shape[0]) if input_ids.dim() == 2
                          else torch.tensor([[2, 5]]))
    return model(input_ids=input_ids, **kwargs)



for _arch, _head in heads():
    _name = model_classes(_arch)[_head].__name__
    _id = f"{_arch}-{_head.removeprefix('AutoModelFor')}"
    case(f"ids-too-large-{_id}", f"`{_name}` given token id {VOCAB} (vocab_size={VOCAB})", ValueError,
         rf"{VOCAB}.*vocab_size={VOCAB}|vocab_size={VOCAB}.*{VOCAB}")(
        lambda fx, tmp, a=_arch, h=_head: _call(build_model(a, h).eval(), h, torch.tensor([[5, VOCAB]])))
    case(f"ids-negative-{_id}", f"`{_name}` given token id -1", ValueError, r"-1")(
        lambda fx, tmp, a=_arch, h=_head: _call(build_model(a, h).eval(), h, torch.tensor([[5, -1]])))
    case(f"ids-1d-{_id}", f"`{_name}` given 1-D input_ids (no batch dimension)", ValueError, r"shape|batch")(
        lambda fx, tmp, a=_arch, h=_head: _call(build_model(a, h).eval(), h, torch.tensor([5, 6, 7])))
    if _head == "AutoModelForSequenceClassification":
        case(f"labels-unseen-{_id}", f"`{_name}` (3 classes) given label 7", ValueError, r"7.*num_labels=3")(
            lambda fx, tmp, a=_arch, h=_head: build_model(a, h)(input_ids=torch.tensor([[5, 6]]),
                                                                labels=torch.tensor([7])))
        case(f"labels-float-{_id}", f"`{_name}` (single_label_classification) given float labels", ValueError,
             r"integer|dtype")(
            lambda fx, tmp, a=_arch, h=_head: build_model(a, h, problem_type="single_label_classification")(
                input_ids=torch.tensor([[5, 6]]), labels=torch.tensor([1.0])))

case("labels-token-out-of-vocab-rnn-CausalLM", f"`RnnForCausalLM` given label token id {VOCAB + 3}", ValueError,
     rf"{VOCAB + 3}.*vocab_size={VOCAB}")(
    lambda fx, tmp: build_model("rnn", "AutoModelForCausalLM")(input_ids=torch.tensor([[5, 6]]),
                                                                labels=torch.tensor([[5, VOCAB + 3]])))
case("empty-ids-rnn-CausalLM", "`RnnForCausalLM` given input_ids of shape (1, 0)", ValueError, "empty")(
    lambda fx, tmp: build_model("rnn", "AutoModelForCausalLM")(input_ids=torch.zeros(1, 0, dtype=torch.long)))
case("mask-shape-rnn-CausalLM", "`RnnForCausalLM` with a (1, 2) attention_mask for 3 tokens", ValueError,
     "attention_mask")(
    lambda fx, tmp: build_model("rnn", "AutoModelForCausalLM")(input_ids=torch.tensor([[5, 6, 7]]),
                                                               attention_mask=torch.ones(1, 2, dtype=torch.long)))
case("mask-shape-rnn_seq2seq", "`RnnSeq2SeqForConditionalGeneration` with a (1, 2) mask for 3 source tokens",
     ValueError, "attention_mask")(
    lambda fx, tmp: build_model("rnn_seq2seq", "AutoModelForSeq2SeqLM")(
        input_ids=torch.tensor([[5, 6, 7]]), attention_mask=torch.ones(1, 2, dtype=torch.long),
        decoder_input_ids=torch.tensor([[2, 5]])))
def _decoder_inputs_from_labels(fx, tmp):
    from hfnn.models.outputs import shift_tokens_right

    return shift_tokens_right(torch.tensor([[5, -100, 6]]), None, 2)  # the -100 reaches the decoder inputs


case("labels-minus-100-without-pad", "decoder inputs built from labels holding -100 when `pad_token_id` is None",
     ValueError, "-100.*pad_token_id")(_decoder_inputs_from_labels)


def _decoder_inputs_without_ignored_labels(fx, tmp):
    from hfnn.models.outputs import shift_tokens_right

    return shift_tokens_right(torch.tensor([[5, 6, 7]]), None, 2)


def _shifted_right(result):
    assert result.tolist() == [[2, 5, 6]], result


case("decoder-inputs-without-pad-id", "decoder inputs built from labels without -100 when `pad_token_id` is None",
     None, "by design: no padding is needed, the labels shift right behind decoder_start_token_id",
     check=_shifted_right)(_decoder_inputs_without_ignored_labels)
case("too-long-transformer-CausalLM", "`TransformerForCausalLM` (max_position_embeddings=32) given 40 tokens",
     ValueError, "40.*max_position_embeddings=32")(
    lambda fx, tmp: build_model("transformer", "AutoModelForCausalLM")(input_ids=torch.randint(4, VOCAB, (1, 40))))
def _stops_at_the_positions(result):
    assert result.shape == (1, 33), f"expected generation to stop at 33 tokens, got {tuple(result.shape)}"


case("too-long-generate-transformer", "`generate` from 30 tokens + 10 new with max_position_embeddings=32",
     None, "by design: the length is lowered to 33 before the first step, with a warning naming the limit; the "
     "output ends there", check=_stops_at_the_positions)(
    lambda fx, tmp: build_model("transformer", "AutoModelForCausalLM").eval().generate(
        input_ids=torch.randint(4, VOCAB, (1, 30)), max_new_tokens=10, do_sample=False, eos_token_id=None))
case("too-long-transformer-Seq2SeqLM", "`TransformerForConditionalGeneration` given a 40-token source",
     ValueError, "max_position_embeddings=32")(
    lambda fx, tmp: build_model("transformer", "AutoModelForSeq2SeqLM")(
        input_ids=torch.randint(4, VOCAB, (1, 40)), decoder_input_ids=torch.tensor([[2]])))
case("empty-generate-transformer", "`TransformerForCausalLM.generate` given input_ids of shape (1, 0)", ValueError,
     "empty|at least one")(
    lambda fx, tmp: build_model("transformer", "AutoModelForCausalLM").eval().generate(
        input_ids=torch.zeros(1, 0, dtype=torch.long), max_new_tokens=2))


# ------------------------------------------------------------------------------------------------ text and tokenizers

case("tokenizer-no-text", "`train_tokenizer([])`", ValueError, "empty")(lambda fx, tmp: train_tokenizer([]))
case("tokenizer-empty-strings", "`train_tokenizer(['', ''])`", ValueError, "empty")(
    lambda fx, tmp: train_tokenizer(["", ""]))
case("tokenizer-kind", "`train_tokenizer(texts, kind='sentencepiece')`", ValueError, "kind")(
    lambda fx, tmp: train_tokenizer(["abc"], kind="sentencepiece"))
case("tokenizer-vocab_size", "`train_tokenizer(texts, kind='bpe', vocab_size=100)`", ValueError, "vocab_size")(
    lambda fx, tmp: train_tokenizer(["abc"], kind="bpe", vocab_size=100))


def _pipe(task, folder, text, **kwargs):
    from transformers import pipeline

    return pipeline(task, model=str(folder))(text, **kwargs)


case("empty-text-rnn-classifier", "`pipeline('text-classification', rnn classifier)('')`", ValueError, "empty")(
    lambda fx, tmp: _pipe("text-classification", fx / "rnn_cls", ""))
case("empty-text-transformer-classifier", "`pipeline('text-classification', transformer classifier)('')`",
     ValueError, "empty|at least one")(
    lambda fx, tmp: _pipe("text-classification", fx / "transformer_cls", ""))


def _is_prediction(result):
    assert isinstance(result, list) and 0.0 <= result[0]["score"] <= 1.0, result


def _generated_beyond(result, prompt: str):
    text = result[0]["generated_text"]
    assert isinstance(text, str) and text.startswith(prompt) and len(text) > len(prompt), result


case("empty-text-cnn-classifier", "`pipeline('text-classification', cnn classifier)('')`", None,
     "by design: a text with no tokens gets a prediction (max-over-time pooling over one zero window)",
     check=_is_prediction)(lambda fx, tmp: _pipe("text-classification", fx / "cnn_cls", ""))
case("empty-prompt-rnn-lm", "`pipeline('text-generation', rnn LM)('')`", None,
     "by design: an empty prompt starts from <s> (bos_token_id)",
     check=lambda r: _generated_beyond(r, ""))(
    lambda fx, tmp: _pipe("text-generation", fx / "rnn_lm", "", max_new_tokens=3))
case("whitespace-text-rnn-classifier", "`pipeline('text-classification', rnn classifier)('   ')` (char tokenizer)",
     None, "by design: spaces are characters (tokens) for a character-level model", check=_is_prediction)(
    lambda fx, tmp: _pipe("text-classification", fx / "rnn_cls", "   "))


def _generate_with(fx, tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    model = AutoModelForCausalLM.from_pretrained(fx / "rnn_lm")
    tok = AutoTokenizer.from_pretrained(fx / tokenizer)
    return pipeline("text-generation", model=model, tokenizer=tok)("\u03b1\u03b2\u03b3", max_new_tokens=2)


case("tokenizer-mismatch-generate", "text-generation with a tokenizer larger than the model's vocabulary", ValueError,
     r"token id \d+.*vocab_size")(lambda fx, tmp: _generate_with(fx, "bigger_tokenizer"))


def _check_tokenizer(fx):
    from transformers import AutoConfig, AutoTokenizer

    training.check_tokenizer(AutoConfig.from_pretrained(fx / "rnn_lm"),
                             AutoTokenizer.from_pretrained(fx / "bigger_tokenizer"))


case("tokenizer-mismatch-check", "`check_tokenizer(model, tokenizer)` with a larger tokenizer", ValueError,
     r"tokenizer has \d+ tokens but the model's vocab_size is \d+")(lambda fx, tmp: _check_tokenizer(fx))


# ------------------------------------------------------------------------------------------------ data

case("data-missing-text-column", "`load_corpus('x.csv', text_column='text')` (columns: sentence, label)", KeyError,
     r"'text'.*available columns")(lambda fx, tmp: load_corpus(str(fx / "sentences.csv"), text_column="text"))
case("data-misnamed-label-column", "`load_corpus('x.csv', text_column='sentence', label_column='labels')`",
     KeyError, r"'labels'.*available columns")(
    lambda fx, tmp: load_corpus(str(fx / "sentences.csv"), text_column="sentence", label_column="labels"))
case("data-not-utf8-txt", "`load_corpus('latin1.txt')`", ValueError,
     r"latin1.txt is not UTF-8 text \(byte 3: b'\\xe9'\)")(
    lambda fx, tmp: load_corpus(str(fx / "latin1.txt")))
case("data-not-utf8-csv", "`load_corpus('latin1.csv')`", ValueError, r"latin1.csv is not UTF-8 text \(byte \d+: ")(
    lambda fx, tmp: load_corpus(str(fx / "latin1.csv")))
case("data-not-utf8-jsonl", "`load_corpus('latin1.jsonl')` (pyarrow's reader keeps the bad bytes)", ValueError,
     r"latin1.jsonl is not UTF-8 text \(byte 13: b'\\xe9'\)")(
    lambda fx, tmp: (tmp / "latin1.jsonl").write_bytes('{"text": "café au lait"}\n'.encode("latin1"))
    and load_corpus(str(tmp / "latin1.jsonl")))
case("data-not-utf8-gz", "`load_corpus('latin1.csv.gz')` (a compressed CSV)", ValueError,
     r"latin1.csv.gz is not UTF-8 text \(decompressed byte 14: b'\\xe9'\); .*`zcat latin1.csv.gz \| iconv -f latin1 "
     r"-t UTF-8 > converted.csv`")(
    lambda fx, tmp: _gzip(tmp / "latin1.csv.gz", "text,label\nCaf\xe9,a\nTh\xe9,b\n".encode("latin-1"))
    and load_corpus(str(tmp / "latin1.csv.gz")))
case("data-utf16-bz2", "`load_corpus('u16.txt.bz2')` (compressed UTF-16)", ValueError,
     r"u16.txt.bz2 is UTF-16 text, not UTF-8.*`bzcat u16.txt.bz2 \| iconv -f UTF-16 -t UTF-8 > converted.txt`")(
    lambda fx, tmp: _bzip2(tmp / "u16.txt.bz2", "one line\nanother\n".encode("utf-16"))
    and load_corpus(str(tmp / "u16.txt.bz2")))


def _gzip(path: Path, data: bytes) -> Path:
    import gzip

    with gzip.open(path, "wb") as f:
        f.write(data)
    return path


def _bzip2(path: Path, data: bytes) -> Path:
    import bz2

    path.write_bytes(bz2.compress(data))
    return path


case("data-no-such-file", "`load_corpus(data_files={'train': 'missing.txt'})`", FileNotFoundError, "missing.txt")(
    lambda fx, tmp: load_corpus(data_files={"train": str(fx / "missing.txt")}))
case("data-unknown-file-type", "`load_corpus('notes.docx')`", ValueError, "unknown file type")(
    lambda fx, tmp: load_corpus(str(fx / "notes.docx")))
case("data-unknown-split", "`load_corpus(data_files={'training': ...})`", ValueError, "training")(
    lambda fx, tmp: load_corpus(data_files={"training": str(fx / "ok.txt")}))
case("data-builtin-unknown-option", "`load_corpus('kjv_french', target_language='fr')`", TypeError, "target_language")(
    lambda fx, tmp: load_corpus("kjv_french", target_language="fr"))
case("data-one-line-file", "run_lm on a one-line train_file (nothing to hold out for validation/test)",
     ValueError, r"one_line\.txt has 1 line, too few to hold out validation and test splits.*at least 3 lines")(
    lambda fx, tmp: run_lm.main(["rnn_shakespeare_char", "--output_dir", str(tmp / "out"),
                                 "--train_file", str(fx / "one_line.txt"), "--max_steps", "1"]))
case("data-misspelt-corpus", "`load_corpus('shakespear')` (a typo of a built-in name, offline)", ValueError,
     "unknown corpus 'shakespear'.*did you mean the built-in corpus 'shakespeare'")(
    lambda fx, tmp: load_corpus("shakespear"))
case("pipeline-text-shorter-than-block", "run_lm with block_size=100000 (longer than the whole text)", ValueError,
     "No training example.*block_size=100000")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--block_size", "100000")))
case("pipeline-validation-shorter-than-block", "run_lm evaluating on a validation file shorter than one block",
     ValueError, r"validation split has no block of block_size=64.*eval_strategy")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--validation_file", str(fx / "one_line.txt"),
                                        "--block_size", "64", "--eval_strategy", "steps", "--eval_steps", "1")))
case("pipeline-no-label-column", "run_classification on a CSV without a label column", ValueError,
     r"no 'label' column")(
    lambda fx, tmp: run_classification.main(cls_argv(fx, tmp / "out", "text_only.csv")))
def _three_named_classes(results):
    assert results["labels"] == ["-1", "0", "1"] and results["problem_type"] == "single_label_classification", results


case("pipeline-negative-labels", "run_classification with integer labels -1, 0, 1", None,
     "by design: labels are class names (numbers read by value), here the three classes -1, 0, 1",
     check=_three_named_classes)(
    lambda fx, tmp: run_classification.main(cls_argv(fx, tmp / "out", "negative.csv")))
case("pipeline-single-class", "run_classification on data whose labels are all 'x'", ValueError,
     r"the training data has a single class \('x'\): a classifier needs examples of two or more")(
    lambda fx, tmp: run_classification.main(cls_argv(fx, tmp / "out", "one_class.csv")))


# ------------------------------------------------------------------------------------------------ saved models


def _load(folder, cls=None):
    from transformers import AutoModelForCausalLM

    return (cls or AutoModelForCausalLM).from_pretrained(folder)


case("load-corrupt-safetensors", "`from_pretrained` on a folder whose model.safetensors is random bytes",
     Exception, "deserializing header")(lambda fx, tmp: _load(fx / "corrupt"))
case("load-truncated-safetensors", "`from_pretrained` on a half-written model.safetensors", Exception,
     "deserializing header|incomplete metadata")(lambda fx, tmp: _load(fx / "truncated"))
case("load-empty-safetensors", "`from_pretrained` on an empty model.safetensors", Exception, "header too small")(
    lambda fx, tmp: _load(fx / "empty_weights"))
case("load-no-weights", "`from_pretrained` on a folder with config.json only", OSError, "model.safetensors")(
    lambda fx, tmp: _load(fx / "no_weights"))
case("load-bad-config-json", "`from_pretrained` on a folder whose config.json is not JSON", OSError,
     "not a valid JSON")(
    lambda fx, tmp: _load(fx / "bad_config_json"))
case("load-bad-config-value", "`from_pretrained` on a config.json with hidden_size 0", ValueError, "hidden_size")(
    lambda fx, tmp: _load(fx / "bad_config_value"))
case("load-wrong-auto-class", "`AutoModelForSeq2SeqLM.from_pretrained(rnn LM folder)`", ValueError,
     "RnnConfig.*AutoModelForSeq2SeqLM")(
    lambda fx, tmp: _load(fx / "rnn_lm", __import__("transformers").AutoModelForSeq2SeqLM))
for _arch, _head in heads():
    _cls = model_classes(_arch)[_head]
    _source = "cnn_cls" if _arch == "rnn" else "rnn_cls"
    _type = "hfnn-cnn" if _arch == "rnn" else "hfnn-rnn"
    case(f"load-foreign-config-{_arch}-{_head.removeprefix('AutoModelFor')}",
         f"`{_cls.__name__}.from_pretrained(<{_source.replace('_cls', '')} classifier folder>)`", ValueError,
         f"{_type}.*{config_class(_arch).model_type}")(
        lambda fx, tmp, c=_cls, src=_source: _load(fx / src, c))
case("load-no-such-folder", "`AutoModelForCausalLM.from_pretrained('/nonexistent/model')`", OSError,
     "/nonexistent/model")(
    lambda fx, tmp: _load("/nonexistent/model"))


# --------------------------------------------------------------------------------------- recipes and pipeline arguments

case("recipe-unknown-key", "recipe with `block_sise: 32`", ValueError, "unknown keys: block_sise")(
    lambda fx, tmp: recipes.parse_args((run_lm.ModelArguments, run_lm.DataArguments, common.RunArguments),
                                       [str(fx / "unknown_key.yaml")]))
case("recipe-bad-yaml", "recipe that is not valid YAML", ValueError, "not valid YAML")(
    lambda fx, tmp: recipes.load_recipe(str(fx / "bad.yaml")))
case("recipe-bad-json", "recipe.json with a trailing comma", ValueError, "not valid JSON")(
    lambda fx, tmp: recipes.load_recipe(str(fx / "bad.json")))
case("recipe-not-a-mapping", "recipe that is a YAML list", ValueError, "mapping")(
    lambda fx, tmp: recipes.load_recipe(str(fx / "list.yaml")))
case("recipe-not-found", "`run_lm nosuchrecipe`", FileNotFoundError, "neither a file nor a shipped recipe")(
    lambda fx, tmp: recipes.load_recipe("nosuchrecipe"))
case("args-unknown-flag", "`run_lm recipe --frobnicate 1`", ValueError, "frobnicate")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--frobnicate", "1")))
case("args-negative-num-samples", "`run_lm recipe --num_samples -1`", ValueError,
     r"num_samples must be an integer >= 0 \(0: print none\), got -1")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--num_samples", "-1")))
case("args-fp16-on-cpu", "`run_lm recipe --fp16 true --use_cpu true`", ValueError,
     r"--fp16 true needs a GPU: on the CPU the Trainer would train in float32")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--fp16", "true", "--use_cpu", "true")))


class ExitStatus(Exception):
    """A command that exited (argparse or the hfnn CLI): the status and the last line of stderr."""


def _bad_float(fx, tmp):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            run_lm.main(lm_argv(fx, tmp / "out", "--learning_rate", "abc"))
        except SystemExit as exc:
            raise ExitStatus(f"exit status {exc.code}: {stderr.getvalue().strip().splitlines()[-1]}") from None


case("args-bad-value", "`run_lm recipe --learning_rate abc`", ExitStatus,
     "exit status 2.*learning_rate.*abc")(_bad_float)
case("args-bad-config-override", "`--config_overrides '{\"hidden_size\": 0}'`", ValueError, "hidden_size")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out") + ["--config_overrides", '{"hidden_size": 0}']))
case("args-misspelt-config-override", "`--config_overrides '{\"hiden_size\": 8}'`", ValueError,
     "hiden_size.*did you mean 'hidden_size'")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out") + ["--config_overrides", '{"hiden_size": 8}']))
case("args-misspelt-config-override-classifier", "`run_classification ... --config_overrides '{\"num_filter\": 2}'`",
     ValueError, "num_filter.*did you mean 'num_filters'")(
    lambda fx, tmp: run_classification.main(cls_argv(fx, tmp / "out", "sentences.csv", "--text_column", "sentence",
                                                     "--config_overrides", '{"embedding_size": 8, "num_filter": 2}')))
case("recipe-config-overrides-list", "a recipe whose `config_overrides` is a YAML list", ValueError,
     "config_overrides must be a mapping")(
    lambda fx, tmp: recipes.parse_config_overrides(["hidden_size", 8]))
case("args-config-override-not-json", "`--config_overrides '{hidden_size: 8'`", ValueError, "JSON mapping")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out") + ["--config_overrides", "{hidden_size: 8"]))
case("args-unknown-architecture", "`run_lm recipe --architecture lstm`", ValueError, "Unknown architecture 'lstm'")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--architecture", "lstm")))
case("args-architecture-without-lm-head", "`run_lm recipe --architecture cnn`", ValueError,
     "'cnn' has no language-model head")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--architecture", "cnn", "--config_overrides", "{}")))
case("args-block-size-over-max-positions", "run_lm, Transformer with max_position_embeddings=16, block_size=32",
     ValueError, "block_size=32 exceeds the model's max_position_embeddings=16")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--architecture", "transformer", "--block_size", "32",
                                        "--config_overrides", '{"hidden_size": 8, "num_attention_heads": 2, '
                                        '"num_hidden_layers": 1, "max_position_embeddings": 16}')))
case("args-no-such-model-folder", "`run_lm recipe --model_name_or_path ./no/such/model`", FileNotFoundError,
     "no such folder")(lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--model_name_or_path", "./no/such/model")))
case("args-tokenizer-mismatch", "fine-tuning the rnn LM with a larger tokenizer (`--tokenizer_name`)", ValueError,
     r"tokenizer has \d+ tokens but the model's vocab_size is \d+")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--model_name_or_path", str(fx / "rnn_lm"),
                                        "--tokenizer_name", str(fx / "bigger_tokenizer"))))
case("output-dir-not-empty", "`run_lm recipe --output_dir <folder with files>`", FileExistsError, "not empty")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, fx / "existing_output")))
case("output-dir-is-a-file", "`run_lm recipe --output_dir <a file>`", NotADirectoryError, "not a folder")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, fx / "a_file")))
case("resume-without-checkpoint", "`--resume_from_checkpoint latest` with no checkpoint", FileNotFoundError,
     "no complete checkpoint")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--resume_from_checkpoint", "latest")))
case("resume-from-non-checkpoint", "`--resume_from_checkpoint <a model folder without trainer state>`", ValueError,
     "trainer_state.json")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--resume_from_checkpoint", str(fx / "rnn_lm"))))


# ------------------------------------------------------------------------------------------------ command line


def _cli(argv, one_line=True):
    """``hfnn.apps.cli.main(argv)``; a user error must exit with status 2 and, unless argparse itself
    answers (usage + error), print exactly one line."""
    cli = pytest.importorskip("hfnn.apps.cli")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code
    lines = [ln for ln in stderr.getvalue().splitlines() if ln.strip()]
    if code == 2 and (len(lines) == 1 or not one_line):
        raise ExitStatus(f"exit status 2: {lines[-1] if lines else ''}")
    return code, lines


for _id, _argv, _match, _what in (
    ("no-such-model", ["generate", "./no/such/model", "hi"], "no such model folder",
     "`hfnn generate ./no/such/model hi`"),
    ("wrong-kind-of-model", ["classify", "{rnn_lm}", "hi"], "language model.*not a text classifier",
     "`hfnn classify <LM folder> hi`"),
    ("bad-option-value", ["generate", "{rnn_lm}", "hi", "--max-new-tokens", "0"], "max-new-tokens",
     "`hfnn generate <LM> hi --max-new-tokens 0`"),
    ("unknown-recipe", ["train", "nosuchrecipe"], "nosuchrecipe", "`hfnn train nosuchrecipe`"),
    ("bad-recipe", ["train", "{unknown_key}"], "block_sise", "`hfnn train recipe.yaml` with an unknown key"),
    ("unknown-command", ["frobnicate"], "invalid choice: 'frobnicate'", "`hfnn frobnicate`"),
):
    case(f"cli-{_id}", _what, ExitStatus, "exit status 2: hfnn.*" + _match)(
        lambda fx, tmp, a=_argv, i=_id: _cli([x.format(rnn_lm=fx / "rnn_lm", unknown_key=fx / "unknown_key.yaml")
                                              for x in a],
                                            one_line=i != "unknown-command"))


# ---------------------------------------------------------------------------- options honoured, files named, messages


def _export(fx, tmp, *extra, patches=()):
    pytest.importorskip("onnxscript")
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        return _cli(["export", str(fx / "rnn_cls"), "--output", str(tmp / "out" / "m.onnx"), *extra])


def _converter_that_fails():
    from unittest import mock

    from onnxscript import version_converter

    # what the version converter does when it cannot convert: it logs, and leaves the model as it was
    return mock.patch.object(version_converter, "convert_version", lambda model, version, fallback=None: None)


def _save_refused():
    from unittest import mock

    from torch.onnx import ONNXProgram

    def save(self, destination, **kwargs):
        raise PermissionError(13, "Permission denied", str(destination))

    return mock.patch.object(ONNXProgram, "save", save)


def _quiet_in_eval_mode(result):
    code, lines = result
    assert code == 0 and lines == [], f"exit status {code}; stderr: {lines[:3]}"


case("cli-export-opset-unsupported", "`hfnn export FOLDER --opset 999`", ExitStatus,
     r"exit status 2: hfnn export: error: --opset 999: the ONNX exporter writes opsets 18 to \d+")(
    lambda fx, tmp: _export(fx, tmp, "--opset", "999"))
case("cli-export-opset-not-converted", "`hfnn export FOLDER --opset 20` when the version converter fails",
     ExitStatus, r"--opset 20: the ONNX version converter could not convert this graph \(it stays at opset 18\)")(
    lambda fx, tmp: _export(fx, tmp, "--opset", "20", patches=[_converter_that_fails()]))
case("cli-export-output-not-permitted", "`hfnn export FOLDER --output` where writing is not permitted", ExitStatus,
     r"exit status 2: hfnn export: error: the ONNX output .*m\.onnx: permission denied; choose a path")(
    lambda fx, tmp: _export(fx, tmp, patches=[_save_refused()]))
def _export_process(fx, tmp):
    """``hfnn export`` in a process of its own: warnings and log lines reach its stderr as a user sees them."""
    import subprocess

    pytest.importorskip("onnxscript")
    done = subprocess.run([sys.executable, "-m", "hfnn.apps.cli", "export", str(fx / "rnn_cls"), "--output",
                           str(tmp / "m.onnx")], capture_output=True, text=True, timeout=DEADLINE_S - 5,
                          env={**os.environ, "PYTHONWARNINGS": "default"})
    return done.returncode, [ln for ln in done.stderr.splitlines() if ln.strip()]


case("cli-export-quiet", "`hfnn export FOLDER` (an RNN classifier), in its own process", None,
     "by design: stdout says what was written; no exporter warnings on stderr (the traced wrapper is in eval mode)",
     check=_quiet_in_eval_mode)(_export_process)


def _wrapped_user_error(fx, tmp):
    from hfnn.models.errors import report_error

    try:
        try:
            raise PermissionError(13, "Permission denied", str(tmp / "ro" / "model.onnx"))
        except PermissionError as err:
            raise RuntimeError("a library's own error about it") from err
    except RuntimeError as err:
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            code = report_error("hfnn export", err)
        raise ExitStatus(f"exit status {code}: {stderr.getvalue().strip()}") from None


case("cli-wrapped-path-error", "a library error caused (`raise ... from`) by a PermissionError on the user's path",
     ExitStatus, r"exit status 2: hfnn export: error: .*ro/model\.onnx: permission denied")(_wrapped_user_error)
case("args-adapter-method-without-lora-r", "`run_lm recipe --adapter_method oft` (no `--lora_r`)", ValueError,
     r"--adapter_method oft needs --lora_r")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--adapter_method", "oft")))
case("args-lora-r-without-model", "`run_lm recipe --lora_r 4` (no `--model_name_or_path`)", ValueError,
     r"--lora_r 4 trains an adapter on top of a trained model: give it with --model_name_or_path")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--lora_r", "4")))


def _unreadable_recipe(fx, tmp):
    from unittest import mock

    recipe, real = tmp / "r.yaml", Path.read_text
    recipe.write_text("architecture: rnn\n")

    def read_text(self, *args, **kwargs):
        if self == recipe:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    with mock.patch.object(Path, "read_text", read_text):
        return recipes.load_recipe(str(recipe))


case("recipe-unreadable", "a recipe file this process may not read", FileError,
     r"recipe .*r\.yaml: permission denied; choose a path this user may use")(_unreadable_recipe)


def _offline(fn):
    from unittest import mock

    import huggingface_hub.constants

    with mock.patch.object(huggingface_hub.constants, "HF_HUB_OFFLINE", True):
        return fn()


case("args-tokenizer-name-offline", "`run_lm recipe --tokenizer_name owner/name` offline", HubError,
     r"--tokenizer_name owner/name: not a local folder, and the Hugging Face Hub lookup failed")(
    lambda fx, tmp: _offline(lambda: run_lm.main(lm_argv(fx, tmp / "out", "--tokenizer_name", "owner/name"))))
case("args-model-name-offline", "`run_lm recipe --model_name_or_path owner/name` offline",
     HubError, r"--model_name_or_path owner/name: not a local folder")(
    lambda fx, tmp: _offline(lambda: run_lm.main(lm_argv(fx, tmp / "out", "--model_name_or_path", "owner/name",
                                                         "--config_overrides", "{}"))))
case("args-config-override-problem-type", "`run_classification ... --config_overrides '{\"problem_type\": "
     "\"regression\"}'` with labels read as classes", ValueError,
     r"config_overrides problem_type='regression' contradicts how the data is read .*use --problem_type regression")(
    lambda fx, tmp: run_classification.main(cls_argv(
        fx, tmp / "out", "sentences.csv", "--text_column", "sentence", "--config_overrides",
        '{"embedding_size": 8, "window_sizes": [2], "num_filters": 2, "problem_type": "regression"}')))
case("args-config-override-num-labels", "`run_classification ... --config_overrides '{\"num_labels\": 5}'` "
     "(the data has 2 classes)", ValueError, r"num_labels=5 contradicts how the data is read \(num_labels is 2")(
    lambda fx, tmp: run_classification.main(cls_argv(
        fx, tmp / "out", "sentences.csv", "--text_column", "sentence", "--config_overrides",
        '{"embedding_size": 8, "window_sizes": [2], "num_filters": 2, "num_labels": 5}')))
case("args-model-folder-of-other-pipeline", "`run_lm recipe --model_name_or_path <CNN classifier folder>`",
     ValueError, r"holds a cnn text classifier, which this language-modeling pipeline cannot read .*"
     r"read by hfnn.pipelines.run_classification")(
    lambda fx, tmp: run_lm.main(lm_argv(fx, tmp / "out", "--model_name_or_path", str(fx / "cnn_cls"))))


def _embeddings_with_saved_model(fx, tmp):
    (tmp / "vectors.txt").write_text("the 0.1 0.2\nof 0.3 0.4\n")
    return run_classification.main(cls_argv(fx, tmp / "out", "sentences.csv", "--text_column", "sentence",
                                            "--model_name_or_path", str(fx / "cnn_cls"), "--config_overrides", "{}",
                                            "--embeddings_file", str(tmp / "vectors.txt")))


case("args-embeddings-file-with-saved-model", "`run_classification ... --model_name_or_path F --embeddings_file V`",
     ValueError, r"--embeddings_file .*vectors.txt loads word vectors into a new model, but --model_name_or_path")(
    _embeddings_with_saved_model)


def _seq2seq_folder_to_classifier(fx, tmp):
    build_model("rnn_seq2seq", "AutoModelForSeq2SeqLM").save_pretrained(tmp / "s2s")
    return run_classification.main(cls_argv(fx, tmp / "out", "sentences.csv", "--text_column", "sentence",
                                            "--model_name_or_path", str(tmp / "s2s")))


case("args-seq2seq-folder-to-classifier", "`run_classification ... --model_name_or_path <seq2seq folder>`",
     ValueError, r"holds a rnn_seq2seq sequence-to-sequence model, which this text-classification pipeline cannot "
     r"read .*read by hfnn.pipelines.run_seq2seq")(_seq2seq_folder_to_classifier)
case("data-nul-bytes-utf8", "`load_corpus('nul.txt')`: UTF-8 text holding a NUL byte", ValueError,
     r"nul.txt holds a NUL byte \(byte 561\).*`tr -d '\\000' < nul.txt > cleaned.txt`")(
    lambda fx, tmp: (tmp / "nul.txt").write_bytes(b"caf\xc3\xa9 au lait\n" * 40 + b"a\x00b\n")
    and load_corpus(str(tmp / "nul.txt")))
case("data-utf16le-without-bom", "`load_corpus('u16.txt')`: UTF-16LE without a byte-order mark", ValueError,
     r"u16.txt is UTF-16LE text, not UTF-8.*`iconv -f UTF-16LE -t UTF-8 u16.txt > converted.txt`")(
    lambda fx, tmp: (tmp / "u16.txt").write_bytes("one line\nanother\n".encode("utf-16-le") * 20)
    and load_corpus(str(tmp / "u16.txt")))


def _label_files(tmp, train_labels, validation_labels):
    text = [ln for ln in shakespeare_text(3000).splitlines() if ln.strip()]
    for name, labels in (("train.csv", train_labels), ("validation.csv", validation_labels)):
        rows = [f'"{t}",{labels[i % len(labels)]}\n' for i, t in enumerate(text[:40] if name == "train.csv"
                                                                            else text[40:52])]
        (tmp / name).write_text("text,label\n" + "".join(rows), encoding="utf-8")


def _classify(fx, tmp, train_labels, validation_labels):
    _label_files(tmp, train_labels, validation_labels)
    argv = cls_argv(fx, tmp / "out", "ok.txt", "--validation_file", str(tmp / "validation.csv"))
    argv[argv.index("--train_file") + 1] = str(tmp / "train.csv")
    records = []

    class Keep(__import__("logging").Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logging = __import__("logging")
    logger, handler, disabled = logging.getLogger("hfnn.data.corpora"), Keep(), logging.root.manager.disable
    logger.addHandler(handler)
    logging.disable(logging.NOTSET)  # the table is written with warnings off: this case is about one
    try:
        return run_classification.main(argv), records
    finally:
        logging.disable(disabled)
        logger.removeHandler(handler)


def _one_class_per_name(result):
    results, _ = result
    assert results["labels"] == ["café", "thé"], results["labels"]


def _case_variants_noted(result):
    results, records = result
    assert results["labels"] == ["POS", "Pos", "neg", "pos"], results["labels"]
    assert any("differ only by case" in r and "'POS', 'Pos', 'pos'" in r for r in records), records


case("pipeline-label-nfd", "validation labels typed decomposed (`cafe\\u0301`) beside training's `café`", None,
     "by design: labels are NFC-normalised as the texts are, so the two are one class", check=_one_class_per_name)(
    lambda fx, tmp: _classify(fx, tmp, ["caf\u00e9", "th\u00e9"], ["cafe\u0301", "the\u0301"]))
case("pipeline-labels-differing-by-case", "labels `Pos`, `pos`, `POS` (and `neg`) in one column", None,
     "by design: separate classes, as written, with a warning naming them (write them alike to merge them)",
     check=_case_variants_noted)(
    lambda fx, tmp: _classify(fx, tmp, ["Pos", "pos", "POS", "neg"], ["Pos", "pos", "POS", "neg"]))


# ------------------------------------------------------------------------------------------------ running a case


@contextlib.contextmanager
def deadline(seconds: int):
    def hung(signum, frame):
        raise TimeoutError(f"no answer after {seconds} s: a bad input must fail fast, not hang")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_case(c: Case, fixtures: Path, scratch: Path):
    """Runs a case under the deadline; returns (exception or None, result)."""
    with deadline(DEADLINE_S):
        try:
            return None, c.run(fixtures, scratch)
        except TimeoutError:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit included: it is a finding too
            return exc, None


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    root = make_fixtures(tmp_path_factory.mktemp("bad-input") / "fixtures")
    return root


# ----------------------------------------------------------------------------------------------- cases tested elsewhere

# Cases that need a whole training run, a second process or a browser are tested in their own files; the
# catalogue lists them too (id, what the user did, what hfnn answers, test file, test function), and
# test_cases_tested_elsewhere_exist checks that each named test is there.
ELSEWHERE = [
    # training pipelines and data
    ("args-config-overrides-merge",
     "`run_seq2seq rnn_seq2seq_cmudict --config_overrides '{\"attention\": \"luong\", \"input_feeding\": false}'`",
     "merged key by key into the recipe's mapping (its 384/128 sizes kept); `null` removes a key",
     "test_reliability_runs.py", "test_command_line_config_overrides_merge_into_the_recipe_mapping"),
    ("args-other-architecture", "`--architecture` other than the recipe's",
     "the recipe's config fields are dropped, with a warning",
     "test_reliability_runs.py", "test_another_architecture_on_the_command_line_does_not_inherit_the_recipe_config"),
    ("output-dir-unwritable", "an empty output_dir without write permission",
     "OutputDirError before training: `output_dir X is not writable (Permission denied)`", "test_reliability_runs.py",
     "test_an_unwritable_output_dir_fails_before_training"),
    ("output-dir-in-use", "a second run into a folder a live run holds",
     "FileExistsError: `output_dir X is in use by another run (process N on HOST ...)`", "test_reliability_runs.py",
     "test_a_run_in_another_process_holds_the_folder_until_it_ends"),
    ("resume-elsewhere", "`--resume_from_checkpoint other/checkpoint-2` into a non-empty output_dir",
     "FileExistsError: the checkpoint is not inside it, so resuming does not open it", "test_reliability_runs.py",
     "test_resuming_from_a_checkpoint_elsewhere_does_not_open_a_non_empty_folder"),
    ("overwrite-replaces", "`--overwrite_output_dir true` over an old run", "the folder is replaced whole at the end; "
     "a failed run leaves the old one as it was", "test_reliability_runs.py",
     "test_overwriting_replaces_the_whole_folder"),
    ("overwrite-holds-data", "`--overwrite_output_dir true` with the train_file inside output_dir",
     "ValueError: the file is inside the folder the run replaces", "test_reliability_runs.py",
     "test_overwriting_a_folder_that_holds_the_training_data_is_refused"),
    ("save-fails", "the model cannot be written after training", "saved to `X.saved-STAMP-PID` instead; OutputDirError "
     "says where (exit status not 0)", "test_reliability_runs.py",
     "test_a_model_that_cannot_be_saved_in_output_dir_is_saved_beside_it"),
    ("training-diverges-finite-loss", "`run_lm --learning_rate 1e30 --max_grad_norm 0 --optim sgd` (a loss of "
     "1e30, perplexity inf)", "NonFiniteTrainingError, exit 2: `training diverged: the evaluation after training gives "
     "validation_perplexity inf ...; the model is not saved` (also when an evaluation during training gives it)",
     "test_divergence.py", "test_a_huge_finite_loss_with_an_infinite_perplexity_stops_the_run"),
    ("training-loss-rises", "a run whose last training loss is more than 2x its first (or a uniform guess's, when "
     "lower), or whose last evaluation loss is more than 2x its first", "saved, with a closing line `warning: the "
     "training loss ended at X, more than 2 times its start ...` and `loss_rise` in results.json", "test_divergence.py",
     "test_a_rising_loss_is_flagged_in_the_closing_lines_and_results"),
    ("training-loss-astronomical", "a finite training loss over 1000x its start (a classifier at `--learning_rate "
     "1e30` with finite weights)", "NonFiniteTrainingError, exit 2: `training diverged: the training loss ended at "
     "X, more than 1000 times its start ...; the model is not saved`", "test_divergence.py",
     "test_a_finite_loss_a_thousand_times_its_start_counts_as_diverged"),
    ("docs-evaluate-keys", "the manual's words for `hfnn evaluate` on multi-label and regression models",
     "name the JSON keys: exact match is `accuracy`, macro F1 is `f1`, and `mse`, `mae`", "test_manual_claims.py",
     "test_the_manual_names_the_keys_evaluate_writes"),
    ("peft-default-targets", "plain `get_peft_model(rnn_lm, LoraConfig(task_type='CAUSAL_LM'))`",
     "adapts the embeddings alone, as docs/deployment.md says; `add_adapter` reaches the recurrent weights",
     "test_manual_claims.py", "test_plain_get_peft_model_on_an_rnn_adapts_what_the_docs_say"),
    ("training-diverges", "`--learning_rate 3e38 --max_grad_norm 0`", "NonFiniteTrainingError: training stopped at the "
     "step the weights became NaN/inf; nothing saved", "test_reliability_runs.py",
     "test_a_diverging_run_stops_and_saves_nothing"),
    ("seq2seq-unseen-target", "validation targets with unseen phonemes or longer than max_target_length",
     "scored as errors; the model is saved before the final evaluation", "test_reliability_runs.py",
     "test_seq2seq_targets_with_unseen_symbols_or_cut_are_scored_as_errors_after_the_save"),
    ("resume-other-architecture", "resuming a checkpoint of other sizes or rnn_type",
     "ValueError: `it holds another model (hidden_size 12, this run builds 16)`", "test_reliability_runs.py",
     "test_resuming_a_checkpoint_of_another_architecture_is_an_error_naming_it"),
    ("lm-text-stream", "a causal LM trained on a local .txt file",
     "the file is one stream: lines keep their newlines, end-of-sequence only between files",
     "test_reliability_data.py", "test_a_text_file_is_a_stream_with_end_of_sequence_between_files_only"),
    ("labels-stripped", "labels ' pos' and 'pos' in one column", "one class 'pos'", "test_reliability_data.py",
     "test_string_labels_are_stripped_into_one_class"),
    ("labels-integer-values", "integer labels {5, 100}, star ratings 1-5", "classes named by their values (2 and 5 "
     "classes, no phantom class 0)", "test_reliability_data.py",
     "test_integer_labels_are_classes_named_by_their_value"),
    ("empty-validation", "a validation split left empty by de-duplication, with evaluation on",
     "ValueError naming the split and --eval_strategy", "test_reliability_data.py",
     "test_an_empty_validation_split_with_evaluation_on_is_an_error"),
    ("label-blank", "a CSV row with an empty label cell", "ValueError: `d.csv row 8: the label cell is empty`",
     "test_reliability_data.py", "test_a_blank_label_is_an_error_naming_the_file_row"),
    ("label-not-in-train", "a test (or validation) file with a label the training file lacks (`Pos` beside `pos`)",
     "ValueError before training: `test.csv row 7: the label 'Pos' (test split) does not occur in the training "
     "split, whose classes are: neg, pos` (it used to become an extra class the model never trained)",
     "test_reliability_data.py", "test_a_class_missing_from_the_training_split_is_an_error_naming_the_row"),
    ("label-carved-out", "one file whose rare class hashes wholly into the carved validation/test splits",
     "its first held-out row (with the rows of the same text) moves into training, with a warning naming the "
     "class (it used to be an output the model never trained)", "test_reliability_data.py",
     "test_a_class_carved_wholly_out_of_training_moves_into_it"),
    ("label-column-of-texts", "swapped `--text_column` / `--label_column`: a label column of reviews",
     "ValueError naming the column and its count of distinct values (one class per row used to be trained)",
     "test_reliability_data.py", "test_a_label_column_of_texts_is_an_error_naming_the_column"),
    ("evaluate-multi-label-regression", "`hfnn evaluate` on a multi-label or a regression classifier",
     "scored as what it is (exact-match accuracy and macro F1 over labels; MSE and MAE) instead of a TypeError or "
     "a refusal of numeric labels; one label per row for a multi-label model is an error saying so; `hfnn "
     "classify` shows a multi-label model's labels scored above 0.5 (it showed the top one only)",
     "test_cli.py", "test_evaluate_multi_label_and_regression_classifiers"),
    ("label-fractional", "labels like 0.142 without `--problem_type regression`",
     "ValueError naming the file row: not a class; train a regression", "test_reliability_data.py",
     "test_float_and_bool_labels_do_not_switch_the_problem"),
    ("text-empty", "a whitespace text cell (classification)", "ValueError: `d.csv row 12: the text cell is empty`",
     "test_reliability_data.py", "test_an_empty_text_cell_is_an_error_naming_the_file_row_in_classification"),
    ("text-numeric", "a text column of numbers", "ValueError: `n.csv row 2: the text column holds int64 values`",
     "test_reliability_data.py", "test_a_numeric_text_column_is_an_error_naming_the_file"),
    ("args-train-on-nothing", "`--block_size 0/1/-4`, `--max_train_minutes 0`, batch size 0 or -2, "
     "`--max_train_samples 0`, `--num_train_epochs 0`", "ValueError naming the option and the value",
     "test_reliability_data.py", "test_options_that_would_train_on_nothing_are_errors_naming_them"),
    ("cnn-static-no-vectors", "`embedding_mode: static` without `--embeddings_file`",
     "ValueError: static freezes the word vectors, but no --embeddings_file was given", "test_reliability_data.py",
     "test_static_cnn_embeddings_without_a_file_are_an_error"),
    ("data-files", "a 0-byte or header-only CSV, a corrupt JSONL line, a UTF-16 file",
     "ValueError naming the file (and the line of a corrupt JSONL)", "test_reliability_data.py",
     "test_unreadable_files_are_named_with_their_line_or_problem"),
    ("data-folder-as-corpus", "`--corpus some_folder/`", "ValueError: a folder, not a corpus file; give its files",
     "test_reliability_data.py", "test_a_folder_is_not_taken_for_a_hub_dataset"),
    ("data-hub-offline", "`--corpus someone/dataset` offline", "one line, exit 2, in under a second",
     "test_reliability_data.py", "test_an_unreachable_hub_fails_fast_in_one_line"),
    # tokenizers, inference pipelines, loading, command line
    ("tok-special", "`<s>`, `</s>`, `<pad>` inside text (HTML, code)", "read as characters, never as special ids "
     "(also after save/reload)", "test_reliability_inference.py",
     "test_special_token_strings_in_text_never_become_special_ids"),
    ("tok-nfd", "decomposed `é` into a char/word/phoneme tokenizer", "NFC-normalised: the same ids as `é`",
     "test_reliability_inference.py", "test_decomposed_and_composed_unicode_give_the_same_tokens"),
    ("s2s-no-src-tok", "a seq2seq folder without `source_tokenizer/`", "ValueError saying what is missing",
     "test_reliability_inference.py", "test_folder_without_source_tokenizer_is_refused"),
    ("s2s-overlong", "a source longer than max_position_embeddings", "ValueError naming the length and the limit, "
     "or cut with truncation=True", "test_reliability_inference.py",
     "test_overlong_source_names_the_limit_or_is_truncated_on_request"),
    ("tok-max-length", "a saved `model_max_length` beyond the model's positions", "lowered to the positions",
     "test_reliability_inference.py", "test_saved_model_max_length_beyond_the_positions_is_lowered"),
    ("pipe-no-task", "`pipeline(model=folder, trust_remote_code=True)` with no task",
     "the task is read from the folder", "test_reliability_inference.py",
     "test_marked_language_model_and_classifier_folders_infer_their_task"),
    ("cli-options", "`--top-p 1.5`, `--batch-size -3`, `--max-new-tokens 0`, ...",
     "exit 2: `--top-p must be in (0, 1], got 1.5`", "test_reliability_cli.py",
     "test_out_of_range_options_are_one_line_errors_naming_the_option"),
    ("cli-wrong-head", "config.json naming another head than the weights hold",
     "exit 2: refusing to run a randomly initialised head", "test_reliability_cli.py",
     "test_config_naming_another_head_than_the_weights_is_refused"),
    ("cli-empty-source", "`hfnn transduce folder hello '' world`", "an empty output for the empty source, the others "
     "unchanged", "test_reliability_cli.py", "test_one_empty_source_does_not_fail_the_batch"),
    ("cli-empty-text", "`hfnn classify folder hello ''`", "exit 2 before any model runs: `text 2 ('') is empty: it has "
     "no tokens, so there is nothing to classify` (it used to print the class prior as a label, or fail in "
     "transformers' left padding when batched)", "test_cli.py", "test_classify_and_top_k"),
    ("cli-brokenpipe", "`hfnn generate ... | head -c 0`", "no BrokenPipeError; exit 141", "test_reliability_cli.py",
     "test_closed_output_pipe_in_a_real_process"),
    ("cli-quickstart-only", "`hfnn quickstart --only nosuch`", "exit 2 naming the choices; nothing created",
     "test_reliability_cli.py", "test_unknown_quickstart_name_is_refused_before_anything_is_created"),
    # models
    ("all-padding-row", "a blank text in a classifier batch (every pooling)", "finite logits and gradients, the same "
     "alone and in a batch", "test_modeling_contract.py",
     "test_an_all_padding_row_is_finite_and_the_same_alone_and_in_a_batch"),
    # demo
    ("demo-folder", "`hfnn demo` on a folder that is not an hfnn model", "exit 2: one line naming the folder and why",
     "test_demo.py", "test_folders_that_are_not_hfnn_models_are_refused_in_one_line"),
]


# Cases a user meets through a command (a pipeline, `hfnn`, a recipe or data file they name): the error must be a
# user error, which the command prints as one line with exit status 2 (a bug gets a traceback and exit status 1).
COMMAND_CASES = ("recipe-", "args-", "output-dir-", "resume-", "pipeline-", "data-", "cli-")
PYTHON_ONLY = {"data-builtin-unknown-option"}  # load_corpus' keyword options: no command passes them


def check_case(c: Case, exc, result) -> None:
    if c.error is None:
        assert exc is None, f"{c.input}: expected no error, got {type(exc).__name__}: {exc}"
        c.check(result)
        return
    assert exc is not None, f"{c.input}: no error was raised"
    assert isinstance(exc, c.error), f"{c.input}: {type(exc).__name__}: {exc}"
    if c.id.startswith(COMMAND_CASES) and c.id not in PYTHON_ONLY and not isinstance(exc, ExitStatus):
        assert is_user_error(exc), f"{c.input}: {type(exc).__name__} would be reported as a bug: {exc}"
    message = str(exc)
    assert re.search(c.match, message, flags=re.S), f"{c.input}: the message does not name the problem: {message[:500]}"
    assert len(message) < 2000, "the message is a wall of text"


def _param(c: Case):
    """An open case is a strict xfail, decided when the tests are collected (never from the outcome):
    it fails only through the catalogue's own check (AssertionError), and once the module is fixed the
    case XPASSes, which fails the run until its ``open=`` is removed."""
    marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=c.open)] if c.open else []
    return pytest.param(c, id=c.id, marks=marks)


@pytest.mark.parametrize("c", [_param(c) for c in CASES])
def test_bad_input(c: Case, fixtures: Path, tmp_path: Path):
    before = snapshot(fixtures)
    exc, result = run_case(c, fixtures, tmp_path)
    assert snapshot(fixtures) == before, "an existing file was modified or removed"
    check_case(c, exc, result)


def test_cases_tested_elsewhere_exist():
    import ast

    ids = [row[0] for row in ELSEWHERE]
    assert len(ids) == len(set(ids)) and not set(ids) & {c.id for c in CASES}, "a case id is used twice"
    for case_id, _, _, file, function in ELSEWHERE:
        tree = ast.parse((TABLE.parent / file).read_text(encoding="utf-8"))
        assert function in {n.name for n in ast.walk(tree)
                            if isinstance(n, ast.FunctionDef)}, f"{case_id}: no {file}::{function}"
    table = TABLE.read_text(encoding="utf-8")
    missing = [i for i in ids if f"| `{i}` |" not in table]
    assert not missing, f"{TABLE.name} lacks {missing}: regenerate it with `python -m tests.test_bad_input`"


def test_catalogue_is_large_and_tabled():
    assert len(CASES) >= 30
    table = TABLE.read_text(encoding="utf-8")
    missing = [c.id for c in CASES if f"| `{c.id}` |" not in table]
    assert not missing, f"{TABLE.name} lacks {missing}: regenerate it with `python -m tests.test_bad_input`"


# ------------------------------------------------------------------------------------------------ the table


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def write_table(path: Path = TABLE) -> None:
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        fixtures = make_fixtures(Path(folder) / "fixtures")
        rows = []
        for c in CASES:
            scratch = Path(tempfile.mkdtemp(dir=folder))
            exc, result = run_case(c, fixtures, scratch)
            if exc is None:
                raised, excerpt = "none", c.match if c.error is None else "no error"
            else:
                raised, excerpt = type(exc).__name__, str(exc).replace(str(fixtures), "<fixtures>")
                excerpt = excerpt.replace(str(scratch), "<tmp>")
                if isinstance(exc, ExitStatus):
                    raised, excerpt = "exit status 2", excerpt.removeprefix("exit status 2: ")
                if len(excerpt) > 180:
                    excerpt = excerpt[:177] + "..."
            try:
                check_case(c, exc, result)
            except AssertionError:
                excerpt = f"**open** ({c.open}) — now: {excerpt}" if c.open else f"**FAILING** — {excerpt}"
            rows.append(f"| `{c.id}` | {_cell(c.input)} | {raised} | {_cell(excerpt)} |")
    header = (
        "# Bad input: what hfnn answers\n\n"
        "Every row is a test case of `tests/test_bad_input.py` (regenerate this file with "
        "`python -m tests.test_bad_input`). Each case must fail within "
        f"{DEADLINE_S} s with an error naming the problem and leave existing files untouched; rows marked "
        "**open** are known bad errors, with the fix that closes them. An error met through a command (a pipeline, "
        "`hfnn`, a recipe or data file) is a user error: the command prints it as one line and exits with status 2.\n\n"
        "| case | input | error raised | message excerpt |\n|---|---|---|---|\n"
    )
    elsewhere = (
        "\n\n## Cases tested in their own files\n\n"
        "These need a whole training run, a second process, a real pipe or a browser; each row names its test.\n\n"
        "| case | input | what hfnn answers | test |\n|---|---|---|---|\n"
        + "\n".join(f"| `{i}` | {_cell(what)} | {_cell(answer)} | `tests/{file}::{fn}` |"
                    for i, what, answer, file, fn in ELSEWHERE)
    )
    path.write_text(header + "\n".join(rows) + elsewhere + "\n", encoding="utf-8")


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)
    write_table(Path(sys.argv[1]) if len(sys.argv) > 1 else TABLE)
    print(f"wrote {TABLE}")
