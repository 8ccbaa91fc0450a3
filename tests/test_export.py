"""ONNX export (hfnn/export.py, ``hfnn export``): for every task head of every architecture, ONNX Runtime gives
PyTorch's outputs on padded and unpadded batches of other shapes than the traced one; language models decode
step by step through the graph (state or keys/values in and out) to the tokens of ``generate``; the command
line writes model.onnx and fails in one line on bad input."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'hfnn[export]')")

from hfnn import export  # noqa: E402
from hfnn.cli import main  # noqa: E402
from tests.reliability_utils import VOCAB, heads, model_classes, no_dropout, tiny_config  # noqa: E402
from tests.test_hub import save_tiny_model  # noqa: E402

HEADS = heads()
IDS = [f"{a}-{h.removeprefix('AutoModelFor')}" for a, h in HEADS]
LMS = [(a, h) for a, h in HEADS if h == "AutoModelForCausalLM"]
GENERATIVE = [(a, h) for a, h in HEADS if h != "AutoModelForSequenceClassification"]
# other LM state layouts than the tiny defaults (an LSTM; learned positions, one layer)
VARIANTS = {"rnn-gru": ("rnn", dict(rnn_type="gru")),
            "transformer-rotary": ("transformer", dict(position_embedding_type="rotary", num_hidden_layers=2))}


def build(arch, head, **overrides):
    torch.manual_seed(0)
    model = model_classes(arch)[head](tiny_config(arch, head, **{**no_dropout(arch), **overrides})).eval()
    with torch.no_grad():  # trained-looking weights: every parameter, biases included, away from its init
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, ONNX Runtime session, ExportCheck) per head, exported once."""
    root = tmp_path_factory.mktemp("onnx")
    cache = {}

    def get(arch, head, **overrides):
        key = (arch, head, tuple(sorted(overrides.items())))
        if key not in cache:
            model = build(arch, head, **overrides)
            result = export.export_onnx(model, root / f"{arch}-{head}-{len(cache)}.onnx", sequence_length=9)
            cache[key] = model, ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]), result
        return cache[key]

    return get


def batch(rows, length, padded, seed=3, vocab=VOCAB):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    if padded:
        mask[0, :3] = 0  # left padding
        ids[0, :3] = 0
    return ids, mask


def run(session, **feeds):
    return session.run(None, {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in feeds.items()})


def close(got, expected, atol=1e-4):
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=0, atol=atol)


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("arch,head", HEADS, ids=IDS)
def test_onnx_runtime_matches_pytorch_on_new_shapes(exported, arch, head, padded):
    model, session, result = exported(arch, head)
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    ids, mask = batch(4, 9, padded)  # the graph was traced on 2 x 5 (a recurrent model's: on 2 x 9)
    assert result.sequence_length == (9 if "rnn" in arch and head != "AutoModelForCausalLM" else
                                      1 if "rnn" in arch else None)
    with torch.no_grad():
        if head == "AutoModelForSequenceClassification":
            close(run(session, input_ids=ids, attention_mask=mask)[0], model(input_ids=ids, attention_mask=mask).logits)
        elif head == "AutoModelForSeq2SeqLM":
            target, target_mask = batch(4, 9 if result.sequence_length else 6, padded=False, seed=4)
            expected = model(input_ids=ids, attention_mask=mask, decoder_input_ids=target,
                             decoder_attention_mask=target_mask, use_cache=False).logits
            close(run(session, input_ids=ids, attention_mask=mask, decoder_input_ids=target,
                      decoder_attention_mask=target_mask)[0], expected)
        else:
            out = model(input_ids=ids, attention_mask=mask, use_cache=True)
            past, names = export.empty_past(session, 4), [o.name for o in session.get_outputs()]
            # the whole text in one call, or one token per call (a recurrent model's graph)
            chunks = [(0, 9)] if result.sequence_length is None else [(t, t + 1) for t in range(9)]
            logits = []
            for start, end in chunks:
                got = run(session, input_ids=ids[:, start:end], attention_mask=mask[:, :end], **past)
                logits.append(got[0])
                past = {export.past_name(n): v for n, v in zip(names[1:], got[1:])}
            close(np.concatenate(logits, axis=1), out.logits)
            if arch == "rnn":  # the state after the text, as the cache holds it
                for g, e in zip(got[1:], out.cache.states):
                    close(g, e)
            else:
                assert len(got) == 1 + 2 * model.config.num_hidden_layers and got[1].shape[2] == 9


@pytest.mark.parametrize("arch,head", GENERATIVE, ids=[i for i, (a, h) in zip(IDS, HEADS) if (a, h) in GENERATIVE])
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_step_by_step_greedy_decoding_equals_generate(exported, arch, head, padded):
    model, session, _ = exported(arch, head)
    ids, mask = batch(3, 6, padded, seed=5)
    expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False,
                              eos_token_id=None, pad_token_id=0)
    got = export.greedy_generate(session, ids, mask, max_new_tokens=5, eos_token_id=None)
    np.testing.assert_array_equal(got, expected.numpy())


@pytest.mark.parametrize("name", list(VARIANTS))
def test_state_and_cache_variants_decode_like_generate(exported, name):
    arch, overrides = VARIANTS[name]
    model, session, result = exported(arch, "AutoModelForCausalLM", **overrides)
    if arch == "rnn":
        assert [n for n in result.inputs if n.startswith("past")] == ["past_state.h"]
    ids, mask = batch(2, 7, padded=True, seed=6)
    expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False,
                              eos_token_id=None, pad_token_id=0)
    np.testing.assert_array_equal(export.greedy_generate(session, ids, mask, 4, eos_token_id=None), expected.numpy())


def test_cached_chunks_equal_one_pass(exported):
    """Feeding the present back as the past: two chunks give the logits of the whole text at once."""
    model, session, _ = exported("transformer", "AutoModelForCausalLM")
    for ids, mask in (batch(2, 8, padded=True, seed=7), batch(3, 8, padded=False, seed=8)):
        with torch.no_grad():
            whole = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        names = [o.name for o in session.get_outputs()]
        first = run(session, input_ids=ids[:, :5], attention_mask=mask[:, :5], **export.empty_past(session, len(ids)))
        past = {export.past_name(n): v for n, v in zip(names[1:], first[1:])}
        second = run(session, input_ids=ids[:, 5:], attention_mask=mask, **past)
        close(np.concatenate([first[0], second[0]], axis=1)[mask.bool().numpy()], whole[mask.bool()])


def test_graph_metadata_names_the_interface(exported):
    _, session, result = exported("transformer", "AutoModelForCausalLM")
    meta = export.graph_inputs(session)
    assert meta["kind"] == "causal-lm" and meta["model_type"] == "hfnn-transformer"
    assert meta["past_inputs"].split(",") == result.inputs[2:] == ["past_key_values.0.key", "past_key_values.0.value"]
    assert [o.name for o in session.get_outputs()] == ["logits", "present.0.key", "present.0.value"]
    assert [i.name for i in session.get_inputs()] == result.inputs
    assert export.past_name("present_state.c") == "past_state.c"


def test_export_of_a_model_object_needs_an_output_path():
    with pytest.raises(ValueError, match="give output_path"):
        export.export_onnx(build("mlp", "AutoModelForSequenceClassification"))


# ---------------------------------------------------------------- the command line


def test_cli_exports_a_saved_folder(tmp_path, capsys):
    folder = tmp_path / "cnn"
    save_tiny_model("cnn", "AutoModelForSequenceClassification", folder)
    assert main(["export", str(folder), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {folder / 'model.onnx'} (text-classification" in out
    assert "inputs:  input_ids, attention_mask" in out and "largest difference" in out
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits"]
    assert main(["export", str(folder), "--output", str(tmp_path / "x" / "cnn.onnx"), "--opset", "18"]) == 0
    assert (tmp_path / "x" / "cnn.onnx").is_file()


@pytest.mark.parametrize("argv,message", [
    (["export", "{tmp}/missing"], "no such model folder: {tmp}/missing"),
    (["export", "{tmp}"], "is not a saved model folder (no config.json)"),
    (["export", "{tmp}/bert"], "is not an hfnn model folder (model_type 'bert'"),
    (["export", "{tmp}/bert", "--opset", "9"], "--opset must be at least 18"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message.format(tmp=tmp_path) in err, err


def test_cli_without_onnxruntime_names_the_pip_command(tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"hfnn export: error: ONNX export needs onnxruntime: {export.PIP_INSTALL}"
