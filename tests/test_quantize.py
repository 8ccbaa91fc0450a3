"""Dynamic int8 export (hfnn/sharing/quantize.py, ``hfnn export --quantize int8``): every task head of every
architecture quantizes, keeps the float graph's interface and metadata, names what stays in float32 and reports its
agreement with float32 PyTorch; the recurrences' Scan bodies are quantized too; ``greedy_generate`` decodes with the
int8 graphs unchanged; the command line prints the agreement and bad input fails in one line."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.numerics

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'hfnn[export]')")
onnx = pytest.importorskip("onnx")

from hfnn.apps.cli import main  # noqa: E402
from hfnn.sharing import export, quantize  # noqa: E402
from tests.test_export import GENERATIVE, HEADS, IDS, batch, build  # noqa: E402
from tests.test_hub import save_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """(model, float session, int8 session, ExportCheck) per head, exported and quantized once."""
    root = tmp_path_factory.mktemp("int8")
    cache = {}

    def get(arch, head):
        if (arch, head) not in cache:
            model = build(arch, head)
            result = export.export_onnx(model, root / f"{arch}-{head}.onnx", quantize="int8")
            sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                        for p in (result.path, result.quantized.path)]
            cache[arch, head] = model, *sessions, result
        return cache[arch, head]

    return get


def scan_bodies(graph):
    return [attr.g for node in graph.node if node.op_type == "Scan" for attr in node.attribute if attr.name == "body"]


@pytest.mark.parametrize("arch,head", HEADS, ids=IDS)
def test_every_head_quantizes_with_the_float_interface(quantized, arch, head):
    model, float_session, int8_session, result = quantized(arch, head)
    q = result.quantized
    assert q.path == quantize.quantized_path(result.path) and q.path.name.endswith(".int8.onnx")
    assert q.size_mb < q.float_size_mb
    assert [i.name for i in int8_session.get_inputs()] == [i.name for i in float_session.get_inputs()]
    assert [o.name for o in int8_session.get_outputs()] == [o.name for o in float_session.get_outputs()]
    meta = export.graph_inputs(int8_session)
    assert {k: v for k, v in meta.items() if k != "precision"} == export.graph_inputs(float_session)
    assert meta["precision"] == "int8-dynamic"
    assert q.quantized.get("MatMulInteger", 0) + q.quantized.get("ConvInteger", 0) > 0
    assert "MatMul" not in q.quantized and all("Integer" in op or "Quantize" in op for op in q.quantized)
    # what stays float is counted from the graph: a Transformer's attention products are two activations
    if arch.startswith("transformer"):
        assert q.kept_float.get("MatMul", 0) >= 2
    assert 0 <= q.agreement <= 1 and q.check_shape == quantize.CHECK_SHAPE
    rows, seq = quantize.CHECK_SHAPE
    if q.kind == "causal-lm":  # the real positions of the prompt (row 0 half padding), then one step per row
        assert q.agreement_of == "positions" and q.compared == rows * seq - seq // 2 + rows
    else:
        assert q.compared == rows
    assert q.max_rel_diff > 0  # int8 does change the numbers


def test_the_recurrences_in_scan_bodies_are_quantized(quantized):
    for arch, head in (("rnn", "AutoModelForCausalLM"), ("rnn_seq2seq", "AutoModelForSeq2SeqLM")):
        _, _, _, result = quantized(arch, head)
        graph = onnx.load(str(result.quantized.path)).graph
        bodies = scan_bodies(graph)
        assert bodies, "the recurrence is exported as a Scan"
        assert any(n.op_type == "MatMulInteger" for body in bodies for n in body.node), arch


def test_a_convolutional_classifier_is_within_the_int8_tolerance(quantized):
    _, _, _, result = quantized("cnn", "AutoModelForSequenceClassification")
    assert result.quantized.within_tolerance and result.quantized.agreement >= quantize.INT8_MIN_AGREEMENT


@pytest.mark.parametrize("arch,head", GENERATIVE, ids=[i for i, (a, h) in zip(IDS, HEADS) if (a, h) in GENERATIVE])
def test_greedy_generate_decodes_with_the_int8_graph(quantized, arch, head):
    """The loop of greedy_generate (the past carried call to call, or the target regrown) runs the int8 graph as it
    is: every new token is the int8 graph's own argmax when it reads the whole output at once."""
    model, float_session, int8_session, _ = quantized(arch, head)
    ids, mask = batch(3, 6, padded=True, seed=5, right=False)
    expected = export.greedy_generate(float_session, ids, mask, max_new_tokens=5, eos_token_id=None)
    got = export.greedy_generate(int8_session, ids, mask, max_new_tokens=5, eos_token_id=None)
    assert got.shape == expected.shape and got.dtype == np.int64
    if head == "AutoModelForCausalLM":
        start = ids.shape[1]
        np.testing.assert_array_equal(got[:, :start], ids.numpy())
        whole_mask = np.concatenate([mask.numpy(), np.ones((3, got.shape[1] - start), dtype=np.int64)], axis=1)
        logits = int8_session.run(None, {"input_ids": got, "attention_mask": whole_mask,
                                         **export.empty_past(int8_session, 3)})[0]
        predicted = logits[:, start - 1 : -1].argmax(-1)
    else:
        start = 1
        logits = int8_session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                                         "decoder_input_ids": got[:, :-1],
                                         "decoder_attention_mask": np.ones_like(got[:, :-1])})[0]
        predicted = logits.argmax(-1)
    assert ((0 <= got) & (got < model.config.vocab_size)).all()
    # one call over everything quantizes the activations with other scales than step by step: near ties may flip
    assert (predicted == got[:, start:]).mean() >= 0.8


def test_cli_writes_and_reports_the_int8_graph(tmp_path, capsys):
    folder = tmp_path / "cnn"
    save_tiny_model("cnn", "AutoModelForSequenceClassification", folder)
    assert main(["export", str(folder), "--format", "onnx", "--quantize", "int8"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {folder / 'model.onnx'} (text-classification" in out
    assert f"wrote {folder / 'model.int8.onnx'} (int8 dynamic" in out
    assert "int8 ops: ConvInteger x" in out and "kept in float32:" in out
    assert "top-1 agreement with float32 PyTorch:" in out and "int8 tolerance: at least 90%" in out
    assert (folder / "model.int8.onnx").is_file()


def test_cli_refuses_an_unknown_precision_in_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--quantize", "int4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("hfnn export: error: argument --quantize: invalid choice: 'int4'")  # after the usage


def test_quantize_names_a_missing_file_and_an_unknown_precision(tmp_path):
    with pytest.raises(ValueError, match=r"no such ONNX file: .*missing.onnx \(write it with hfnn export first\)"):
        quantize.quantize_onnx(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="unknown precision 'int4'; the one there is: int8"):
        quantize.quantize_onnx(tmp_path / "missing.onnx", precision="int4")


# ---------------------------------------------------------------- PyTorch int8


@pytest.mark.parametrize("arch,head", HEADS, ids=IDS)
def test_pytorch_int8_replaces_linear_and_recurrent_layers(arch, head):
    import torch

    model = build(arch, head)
    result = quantize.quantize_torch(model)
    assert result.model is not model and type(result.model) is type(model) and not result.model.training
    assert result.quantized.get("Linear", 0) >= 1
    assert not any(isinstance(m, torch.nn.Linear) for m in result.model.modules())  # every Linear became int8
    assert any(isinstance(m, torch.nn.Linear) for m in model.modules())  # on a copy: the float model is untouched
    if arch in ("rnn", "rnn_seq2seq"):
        assert set(result.quantized) & {"LSTM", "GRU"} and not set(result.kept_float) & {"LSTM", "GRU"}
    ids, mask = batch(4, 7, padded=True, holes=False)
    with torch.no_grad():
        if head == "AutoModelForSeq2SeqLM":
            kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, num_beams=1)
            assert result.model.generate(**kwargs).shape[0] == 4
        else:
            expected = model(input_ids=ids, attention_mask=mask).logits
            got = result.model(input_ids=ids, attention_mask=mask).logits
            assert got.shape == expected.shape and not torch.equal(got, expected)  # int8 changes the numbers
            assert (got.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.5


def test_pytorch_int8_names_what_stays_float():
    result = quantize.quantize_torch(build("rnn", "AutoModelForCausalLM", rnn_type="rnn_tanh"))
    assert result.kept_float.get("RNN") == 1 and "RNN" not in result.quantized  # no dynamic int8 kernel
    result = quantize.quantize_torch(build("cnn", "AutoModelForSequenceClassification"))
    assert result.kept_float.get("Conv1d", 0) >= 1


@pytest.mark.parametrize("arch,head,inputs", [
    ("rnn_seq2seq", "AutoModelForSeq2SeqLM", ["hello", "light"]),
    ("cnn", "AutoModelForSequenceClassification", ["a fine film", "dull"]),
    ("rnn", "AutoModelForCausalLM", ["the "]),
])
def test_pytorch_int8_runs_through_the_pipeline(tmp_path, arch, head, inputs):
    folder = tmp_path / arch
    save_tiny_model(arch, head, folder)
    pipe = quantize.quantized_pipeline(folder)
    import torch

    assert not any(isinstance(m, torch.nn.Linear) for m in pipe.model.modules())  # the pipeline's model is int8
    if head == "AutoModelForSeq2SeqLM":
        out = pipe(inputs, max_new_tokens=4, num_beams=2, num_return_sequences=2, return_scores=True)
        assert len(out) == 2 and all(len(o) == 2 and o[0]["score"] <= 0 for o in out)
    elif head == "AutoModelForCausalLM":
        out = pipe(inputs, max_new_tokens=5, do_sample=False)
        assert out[0][0]["generated_text"].startswith("the ")
    else:
        out = pipe(inputs)
        assert [o["label"] in ("rotten", "fresh") for o in out] == [True, True]
    with pytest.raises(ValueError, match="runs on the CPU only"):
        quantize.quantized_pipeline(folder, device="cuda")


def test_the_ops_to_quantize_can_be_chosen(quantized, tmp_path):
    """A CNN quantized without Conv keeps its convolutions in float32, and says so."""
    _, _, _, result = quantized("cnn", "AutoModelForSequenceClassification")
    q = quantize.quantize_onnx(result.path, tmp_path / "cnn.int8.onnx", ops=["MatMul"])
    assert "ConvInteger" not in q.quantized and q.kept_float.get("Conv", 0) >= 1 and q.quantized["MatMulInteger"] >= 1
    assert result.quantized.quantized.get("ConvInteger", 0) >= 1 and "Conv" not in result.quantized.kept_float
