"""ONNX export (hfnn/sharing/export.py, ``hfnn export``): for every task head of every architecture, ONNX Runtime gives
PyTorch's outputs on padded and unpadded batches of other batch sizes and lengths (shorter and longer) than the
traced one, the RNN family included (every cell type, bidirectional and multi-layer, any padding); language models
read a prompt in one call, then decode step by step through the graph (state or keys/values in and out) to the tokens
of ``generate``; the command line writes model.onnx and fails in one line on bad input."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.numerics

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'hfnn[export]')")

from hfnn.apps.cli import main  # noqa: E402
from hfnn.sharing import export  # noqa: E402
from tests.reliability_utils import VOCAB, heads, model_classes, no_dropout, tiny_config  # noqa: E402
from tests.test_hub import save_tiny_model  # noqa: E402

HEADS = heads()
IDS = [f"{a}-{h.removeprefix('AutoModelFor')}" for a, h in HEADS]
LMS = [(a, h) for a, h in HEADS if h == "AutoModelForCausalLM"]
GENERATIVE = [(a, h) for a, h in HEADS if h != "AutoModelForSequenceClassification"]
RECURRENT = ("rnn", "rnn_seq2seq")
# other LM state layouts than the tiny defaults (an LSTM; learned positions, one layer)
VARIANTS = {"rnn-gru": ("rnn", dict(rnn_type="gru")),
            "transformer-rotary": ("transformer", dict(position_embedding_type="rotary", num_hidden_layers=2))}
# the RNN family beyond the tiny defaults (a one-layer unidirectional LSTM classifier, a bidirectional GRU encoder with
# a Bahdanau decoder): every cell type, bidirectional and stacked layers, every decoder loop
RNN_VARIANTS = {
    "classifier-rnn_tanh-bidirectional-2-layers": ("rnn", "AutoModelForSequenceClassification",
                                                   dict(rnn_type="rnn_tanh", bidirectional=True, num_hidden_layers=2)),
    "classifier-rnn_relu-bidirectional-mean": ("rnn", "AutoModelForSequenceClassification",
                                               dict(rnn_type="rnn_relu", bidirectional=True, pooling="mean")),
    "seq2seq-lstm-luong-input-feeding-2-layers": ("rnn_seq2seq", "AutoModelForSeq2SeqLM", dict(
        rnn_type="lstm", attention="luong", num_encoder_layers=2, num_decoder_layers=2)),
    "seq2seq-rnn_tanh-none-unidirectional": ("rnn_seq2seq", "AutoModelForSeq2SeqLM",
                                             dict(rnn_type="rnn_tanh", attention="none", bidirectional_encoder=False)),
}


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
            result = export.export_onnx(model, root / f"{arch}-{head}-{len(cache)}.onnx")
            cache[key] = model, ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]), result
        return cache[key]

    return get


def batch(rows, length, padded, seed=3, vocab=VOCAB, right=True, holes=False):
    """Random ids; ``padded``: row 0 left-padded and, with ``right``, row 1 right-padded (a third of the row, at least
    one position); with ``holes`` row 2 misses a token in the middle."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    if padded:
        pad = max(1, length // 3)
        mask[0, :pad] = 0
        if right:
            mask[1, length - pad :] = 0
        if holes:
            mask[2, length // 2] = 0
        ids = ids.masked_fill(mask == 0, 0)
    return ids, mask


def run(session, **feeds):
    return session.run(None, {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in feeds.items()})


def close(got, expected, atol=1e-4):
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=0, atol=atol)


def check_on_new_shapes(model, session, head, length, padded, holes):
    """ONNX Runtime against PyTorch on a batch of 4 rows of ``length`` (the graph was traced on 2 x 5); ``holes``: a
    recurrent model, whose padding may be anywhere (:func:`batch`)."""
    ids, mask = batch(4, length, padded, holes=holes)
    with torch.no_grad():
        if head == "AutoModelForSequenceClassification":
            close(run(session, input_ids=ids, attention_mask=mask)[0], model(input_ids=ids, attention_mask=mask).logits)
        elif head == "AutoModelForSeq2SeqLM":
            # padded targets (their steps keep the decoder state) for the recurrent decoder only
            target, target_mask = batch(4, length + 1, padded and holes, seed=4, holes=holes)
            expected = model(input_ids=ids, attention_mask=mask, decoder_input_ids=target,
                             decoder_attention_mask=target_mask, use_cache=False).logits
            close(run(session, input_ids=ids, attention_mask=mask, decoder_input_ids=target,
                      decoder_attention_mask=target_mask)[0], expected)
        else:  # the whole text in one call, from an empty past
            out = model(input_ids=ids, attention_mask=mask, use_cache=True)
            got = run(session, input_ids=ids, attention_mask=mask, **export.empty_past(session, 4))
            close(got[0], out.logits)
            if model.config.model_type == "hfnn-rnn":  # the state after each row's last token, as the cache holds it
                assert len(got) == 1 + len(out.cache.states)
                for g, e in zip(got[1:], out.cache.states):
                    close(g, e)
            else:
                assert len(got) == 1 + 2 * model.config.num_hidden_layers and got[1].shape[2] == length


@pytest.mark.parametrize("length", [3, 9], ids=["shorter", "longer"])
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("arch,head", HEADS, ids=IDS)
def test_onnx_runtime_matches_pytorch_on_new_shapes(exported, arch, head, padded, length):
    model, session, result = exported(arch, head)
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    assert result.check_shape == export._CHECK_SHAPE and result.check_shape[1] != export._TRACE_SHAPE[1]
    check_on_new_shapes(model, session, head, length, padded, holes=arch in RECURRENT)


@pytest.mark.parametrize("name", list(RNN_VARIANTS))
def test_every_recurrent_layout_exports_with_dynamic_axes(exported, name):
    arch, head, overrides = RNN_VARIANTS[name]
    model, session, result = exported(arch, head, **overrides)
    assert result.max_abs_diff <= 1e-4
    holes = not overrides.get("bidirectional")  # a bidirectional classifier needs contiguous tokens
    for length, padded in ((3, True), (11, True), (11, False)):
        check_on_new_shapes(model, session, head, length, padded, holes)


@pytest.mark.parametrize("arch,head", GENERATIVE, ids=[i for i, (a, h) in zip(IDS, HEADS) if (a, h) in GENERATIVE])
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_step_by_step_greedy_decoding_equals_generate(exported, arch, head, padded):
    model, session, _ = exported(arch, head)
    ids, mask = batch(3, 6, padded, seed=5, right=False)  # prompts padded on the left, as generate wants
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
    ids, mask = batch(2, 7, padded=True, seed=6, right=False)
    expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False,
                              eos_token_id=None, pad_token_id=0)
    np.testing.assert_array_equal(export.greedy_generate(session, ids, mask, 4, eos_token_id=None), expected.numpy())


@pytest.mark.parametrize("arch", [a for a, _ in LMS])
def test_cached_chunks_equal_one_pass(exported, arch):
    """Feeding the present back as the past: a chunk of 5 tokens then one of 3 give the logits of the whole text at
    once (an RNN: an LSTM of two layers, rows padded on the left, the right and in the middle)."""
    model, session, _ = exported(arch, "AutoModelForCausalLM")
    for ids, mask in (batch(3, 8, padded=True, seed=7, holes=arch == "rnn"), batch(3, 8, padded=False, seed=8)):
        with torch.no_grad():
            whole = model(input_ids=ids, attention_mask=mask, use_cache=True)
        names = [o.name for o in session.get_outputs()]
        first = run(session, input_ids=ids[:, :5], attention_mask=mask[:, :5], **export.empty_past(session, len(ids)))
        past = {export.past_name(n): v for n, v in zip(names[1:], first[1:])}
        second = run(session, input_ids=ids[:, 5:], attention_mask=mask, **past)
        close(np.concatenate([first[0], second[0]], axis=1)[mask.bool().numpy()], whole.logits[mask.bool()])
        if arch == "rnn":
            for got, expected in zip(second[1:], whole.cache.states):
                close(got, expected)


def test_graph_metadata_names_the_interface(exported):
    _, session, result = exported("transformer", "AutoModelForCausalLM")
    meta = export.graph_inputs(session)
    assert meta["kind"] == "causal-lm" and meta["model_type"] == "hfnn-transformer"
    assert meta["past_inputs"].split(",") == result.inputs[2:] == ["past_key_values.0.key", "past_key_values.0.value"]
    assert [o.name for o in session.get_outputs()] == ["logits", "present.0.key", "present.0.value"]
    assert [i.name for i in session.get_inputs()] == result.inputs
    assert export.past_name("present_state.c") == "past_state.c"
    _, session, result = exported("rnn", "AutoModelForCausalLM")
    meta = export.graph_inputs(session)
    assert meta["past_inputs"].split(",") == result.inputs[2:] == ["past_state.h", "past_state.c"]
    assert [o.name for o in session.get_outputs()] == ["logits", "present_state.h", "present_state.c"]
    shapes = {i.name: i.shape for i in session.get_inputs()}
    assert all(isinstance(d, str) for d in shapes["input_ids"])  # batch and sequence are dynamic
    assert isinstance(shapes["past_state.h"][0], str) and shapes["past_state.h"][1:] == [2, 8]


def test_greedy_generate_names_a_graph_with_fixed_axes(exported, tmp_path):
    """A recurrent model's graph exported with fixed sequence axes (as hfnn once did) is named, not run."""
    import onnx

    _, _, result = exported("rnn", "AutoModelForCausalLM")
    graph = onnx.load(str(result.path))
    graph.metadata_props.add(key="hfnn.sequence_length", value="64")
    onnx.save(graph, str(tmp_path / "old.onnx"))
    session = ort.InferenceSession(str(tmp_path / "old.onnx"), providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="fixed at 64 .*export the model again"):
        export.greedy_generate(session, np.ones((1, 3), dtype=np.int64), max_new_tokens=2)


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


def test_the_interface_is_the_registry_export_signature_of_the_head(tmp_path):
    """The graph follows the registry's export signature of the model's class (a subclass keeps its parent's);
    a bare encoder has none and is refused before anything is traced."""
    from hfnn import CnnConfig, CnnModel, RnnConfig, RnnForCausalLM

    class MyRnn(RnnForCausalLM):
        pass

    graph = export._graph(MyRnn(RnnConfig(vocab_size=12, hidden_size=8, embedding_size=4, num_hidden_layers=1,
                                   rnn_type="lstm")))
    assert graph.kind == "causal-lm" and graph.inputs[2:] == ["past_state.h", "past_state.c"]
    with pytest.raises(ValueError, match="CnnModel has no task head to export"):
        export.export_onnx(CnnModel(CnnConfig(vocab_size=12, embedding_size=4, num_filters=2, window_sizes=[2])),
                           tmp_path / "model.onnx")


def test_the_traced_module_is_in_eval_mode_and_the_opset_is_checked(tmp_path, monkeypatch):
    model = model_classes("rnn")["AutoModelForSequenceClassification"](
        tiny_config("rnn", "AutoModelForSequenceClassification")).train()
    seen = []

    def record(module, *args, **kwargs):
        seen.append([m.training for m in module.modules()])
        raise RuntimeError("recorded")

    monkeypatch.setattr(torch.onnx, "export", record)
    with pytest.raises(RuntimeError, match="recorded"):
        export.export_onnx(model, tmp_path / "m.onnx")
    assert seen and not any(seen[0]), "a module was traced in training mode"
    assert model.training, "the model's own mode is restored after the export"
    for opset in (17, 999, True):
        with pytest.raises(ValueError, match=f"--opset {opset}: the ONNX exporter writes opsets 18 to"):
            export.export_onnx(model, tmp_path / "m.onnx", opset=opset)
