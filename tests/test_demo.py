"""The data behind each view of `hfnn demo`, checked against values computed directly from tiny models, and the
demo's loading errors, command line and Space files (no Gradio needed)."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import AutoTokenizer, pipeline

import hfnn
from hfnn.models import demo
from hfnn.models.demo import (
    DemoError,
    attention_matrix,
    cnn_winning_windows,
    generate_seq2seq,
    hidden_state_norms,
    label_scores,
    load_demo_model,
    token_contributions,
    token_probabilities,
    write_space_files,
)
from tests.helpers import approx_tolerance, run_without_hfnn, tolerance
from tests.test_hub import save_tiny_model

TEXT = "to be or not to be"
KINDS = {
    "rnn-lm": ("rnn", "AutoModelForCausalLM"),
    "transformer-lm": ("transformer", "AutoModelForCausalLM"),
    "cnn": ("cnn", "AutoModelForSequenceClassification"),
    "mlp": ("mlp", "AutoModelForSequenceClassification"),
    "rnn-cls": ("rnn", "AutoModelForSequenceClassification"),
    "rnn-g2p": ("rnn_seq2seq", "AutoModelForSeq2SeqLM"),
    "transformer-g2p": ("transformer", "AutoModelForSeq2SeqLM"),
}


def save_without_attention(src, dst):
    """A copy of the tiny RNN seq2seq folder ``src`` whose model has attention="none"."""
    config = hfnn.RnnSeq2SeqConfig.from_pretrained(src, attention="none")
    torch.manual_seed(0)
    model = hfnn.RnnSeq2SeqForConditionalGeneration(config).eval()
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    AutoTokenizer.from_pretrained(src / "source_tokenizer").save_pretrained(dst / "source_tokenizer")
    return dst


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    paths = {}
    for name, (arch, auto) in KINDS.items():
        save_tiny_model(arch, auto, root / name, seed=1)
        paths[name] = root / name
    paths["rnn-g2p-none"] = save_without_attention(paths["rnn-g2p"], root / "rnn-g2p-none")
    return paths


@pytest.fixture(scope="module")
def loaded(folders):
    return {name: load_demo_model(path) for name, path in folders.items()}


# ---------------------------------------------------------------- language models


@pytest.mark.parametrize("name", ["rnn-lm", "transformer-lm"])
def test_token_probabilities_match_the_model_on_each_prefix(loaded, name):
    dm = loaded[name]
    ids = dm.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    rows = token_probabilities(dm.model, dm.tokenizer, ids, start=3, top_k=4)
    assert [r["index"] for r in rows] == list(range(3, len(ids)))
    with torch.no_grad():
        for row in rows:
            i = row["index"]
            dist = dm.model(input_ids=torch.tensor([ids[:i]])).logits[0, -1].softmax(-1)
            assert row["id"] == ids[i]
            assert row["token"] == TEXT[i]  # a char tokenizer: one character per token
            assert row["probability"] == pytest.approx(float(dist[ids[i]]), abs=1e-5)
            values, indices = dist.topk(4)
            assert [p for _, p in row["alternatives"]] == pytest.approx(values.tolist(), abs=1e-5)
            assert [t for t, _ in row["alternatives"]] == [dm.tokenizer.decode([j]) for j in indices.tolist()]
    # the same from the text, from the second token on
    assert token_probabilities(dm.model, dm.tokenizer, TEXT, top_k=4)[2:] == rows


def test_token_probabilities_of_a_generated_continuation(loaded):
    dm = loaded["rnn-lm"]
    prompt = dm.tokenizer("to be", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = dm.model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                                output_scores=True, return_dict_in_generate=True, pad_token_id=0)
    rows = token_probabilities(dm.model, dm.tokenizer, out.sequences[0].tolist(), start=len(prompt))
    assert len(rows) == 6
    for row, scores in zip(rows, out.scores):  # greedy: the chosen token is the most likely one
        assert row["id"] == int(scores[0].argmax())
        assert row["probability"] == pytest.approx(float(scores[0].softmax(-1).max()), abs=1e-5)
        assert row["alternatives"][0][1] == pytest.approx(row["probability"], abs=1e-6)


def test_hidden_state_norms_are_the_rnn_state_after_each_prefix(loaded):
    dm = loaded["rnn-lm"]
    ids = dm.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    norms = hidden_state_norms(dm.model, dm.tokenizer, TEXT)
    assert [t for t, _ in norms] == list(TEXT)
    with torch.no_grad():
        for i, (_, norm) in enumerate(norms):
            state = dm.model.base_model(input_ids=torch.tensor([ids[: i + 1]])).last_hidden_state[0, -1]
            assert norm == pytest.approx(float(state.norm()), rel=1e-5)
    assert len({round(n, 4) for _, n in norms}) > 1


# ---------------------------------------------------------------- classifiers


@pytest.mark.parametrize("name", ["cnn", "mlp", "rnn-cls"])
def test_label_scores_are_the_softmax_of_the_logits(loaded, name):
    dm = loaded[name]
    ids = dm.tokenizer(TEXT)["input_ids"]
    with torch.no_grad():
        probs = dm.model(input_ids=torch.tensor([ids])).logits[0].softmax(-1)
    scores = dict(label_scores(dm.model, dm.tokenizer, TEXT))
    assert scores == pytest.approx({dm.model.config.id2label[i]: float(p) for i, p in enumerate(probs)}, abs=1e-6)
    assert list(scores.values()) == sorted(scores.values(), reverse=True)


def manual_feature_maps(model, ids):
    """Every filter's activation at every window start inside the text, from the model's embedding table and
    convolution weights: {(width index, filter): tensor over window starts}."""
    base = model.base_model
    embeds = base.embeddings(torch.tensor([ids]))[0]  # (n, emb)
    maps = {}
    for w_index, (h, conv) in enumerate(zip(model.config.window_sizes, base.convs)):
        starts = max(len(ids) - h + 1, 1)
        padded = torch.cat([embeds, embeds.new_zeros(max(h - len(ids), 0), embeds.shape[1])])
        for f in range(model.config.num_filters):
            maps[(w_index, f)] = torch.stack([
                torch.relu((conv.weight[f] * padded[t : t + h].T).sum() + conv.bias[f]) for t in range(starts)
            ])
    return maps


@pytest.mark.parametrize("text", [TEXT, "b"])  # "b": shorter than every window (one window, padded with zeros)
def test_cnn_winning_windows_are_the_argmax_of_each_feature_map(loaded, text):
    dm = loaded["cnn"]
    model = dm.model
    ids = dm.tokenizer(text)["input_ids"]
    data = cnn_winning_windows(model, dm.tokenizer, text)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
        maps = manual_feature_maps(model, ids)
    label = int(logits.argmax())
    assert data["label_id"] == label and data["label"] == model.config.id2label[label]
    assert data["logit"] == pytest.approx(float(logits[label]), abs=1e-5)
    fired = {(w["width"], w["filter"]): w for w in data["windows"]}
    widths = model.config.window_sizes
    for (w_index, f), acts in maps.items():
        best = float(acts.max())
        if best <= 0:
            assert (widths[w_index], f) not in fired
            continue
        window = fired[(widths[w_index], f)]
        assert window["start"] == int(acts.argmax())
        assert window["end"] == min(window["start"] + widths[w_index], len(ids))
        assert window["text"] == text[window["start"] : window["end"]]
        assert window["activation"] == pytest.approx(best, abs=1e-5)
        weight = float(model.classifier.weight.detach()[label, w_index * model.config.num_filters + f])
        assert window["contribution"] == pytest.approx(weight * best, abs=1e-5)
    # the shares add up to the logit: what the windows show is the whole of the decision
    assert (sum(w["contribution"] for w in data["windows"]) + data["bias"]
            == pytest.approx(float(logits[label]), abs=1e-4))
    assert [w["contribution"] for w in data["windows"]] == sorted((w["contribution"] for w in data["windows"]),
                                                                  reverse=True)
    for t in range(len(ids)):
        covering = sum(w["contribution"] for w in data["windows"] if w["start"] <= t < w["end"])
        assert data["token_scores"][t] == pytest.approx(covering, abs=1e-6)


def test_cnn_winning_windows_for_another_class(loaded):
    dm = loaded["cnn"]
    other = 1 - cnn_winning_windows(dm.model, dm.tokenizer, TEXT)["label_id"]
    data = cnn_winning_windows(dm.model, dm.tokenizer, TEXT, label=other)
    with torch.no_grad():
        logit = float(dm.model(input_ids=torch.tensor([dm.tokenizer(TEXT)["input_ids"]])).logits[0, other])
    assert data["label_id"] == other
    assert sum(w["contribution"] for w in data["windows"]) + data["bias"] == pytest.approx(logit, abs=1e-4)
    with pytest.raises(DemoError, match="label 5 is outside the model's classes"):
        cnn_winning_windows(dm.model, dm.tokenizer, TEXT, label=5)


@pytest.mark.parametrize("name", ["mlp", "rnn-cls", "cnn"])
def test_token_contributions_are_leave_one_out_differences(loaded, name):
    dm = loaded[name]
    ids = dm.tokenizer(TEXT)["input_ids"]
    data = token_contributions(dm.model, dm.tokenizer, TEXT)
    with torch.no_grad():
        full = dm.model(input_ids=torch.tensor([ids])).logits[0].softmax(-1)
        label = int(full.argmax())
        expected = []
        for i in range(len(ids)):
            reduced = dm.model(input_ids=torch.tensor([ids[:i] + ids[i + 1:]])).logits[0].softmax(-1)
            expected.append(float(full[label] - reduced[label]))
    assert data["label_id"] == label and data["tokens"] == list(TEXT)
    assert data["score"] == pytest.approx(float(full[label]), abs=1e-6)
    assert data["contributions"] == pytest.approx(expected, abs=1e-5)
    assert any(abs(c) > 1e-6 for c in data["contributions"])
    assert token_contributions(dm.model, dm.tokenizer, "b")["contributions"] == [0.0]


# ---------------------------------------------------------------- seq2seq


@pytest.mark.parametrize("name", ["rnn-g2p", "transformer-g2p"])
def test_attention_matrix_matches_the_weights_generate_used(loaded, folders, name):
    """The pipeline collects the weights step by step while generating; the demo recomputes them in one
    forward pass over the generated output: the two must agree."""
    dm = loaded[name]
    g2p = pipeline("seq2seq-generation", model=str(folders[name]))
    expected = g2p("hello", return_attentions=True, return_tensors=True, max_new_tokens=6)[0]
    data = attention_matrix(dm.model, dm.source_tokenizer, dm.tokenizer, "hello", max_new_tokens=6)
    assert data["output_ids"] == expected["generated_token_ids"]
    assert data["source_tokens"] == expected["source_tokens"] == list("hello")
    assert data["output_tokens"] == expected["generated_tokens"]
    assert data["text"] == expected["generated_text"]
    assert len(data["weights"]) == len(expected["attentions"]) > 0
    for row, want in zip(data["weights"], expected["attentions"]):
        assert row == pytest.approx(want, abs=1e-5)
        assert sum(row) == pytest.approx(1.0, abs=1e-5)


def test_attention_matrix_selects_layer_and_head(loaded):
    dm = loaded["transformer-g2p"]
    ids = generate_seq2seq(dm.model, dm.source_tokenizer, "network", max_new_tokens=5)
    source = torch.tensor([dm.source_tokenizer("network")["input_ids"]])
    with torch.no_grad():
        layers = dm.model(input_ids=source, decoder_input_ids=torch.tensor([ids]),
                          output_attentions=True).cross_attentions
    heads = dm.model.config.num_attention_heads
    assert heads == 2
    per_head = [attention_matrix(dm.model, dm.source_tokenizer, dm.tokenizer, "network", output_ids=ids, head=h)
                for h in range(heads)]
    mean = attention_matrix(dm.model, dm.source_tokenizer, dm.tokenizer, "network", output_ids=ids)
    n = len(mean["weights"])
    for h, data in enumerate(per_head):
        assert data["head"] == h and data["num_heads"] == heads and data["num_layers"] == len(layers) == 1
        assert torch.allclose(torch.tensor(data["weights"]), layers[-1][0, h, :n].float(), **tolerance(depth=2))
    assert per_head[0]["weights"] != per_head[1]["weights"]
    assert torch.allclose(torch.tensor(mean["weights"]), layers[-1][0, :, :n].float().mean(0), **tolerance(depth=2))
    with pytest.raises(DemoError, match="head 2 does not exist: each layer has 2 head"):
        attention_matrix(dm.model, dm.source_tokenizer, dm.tokenizer, "network", output_ids=ids, head=2)
    with pytest.raises(DemoError, match="layer 3 does not exist: the decoder has 1 layer"):
        attention_matrix(dm.model, dm.source_tokenizer, dm.tokenizer, "network", output_ids=ids, layer=3)


def test_attention_none_has_no_matrix(loaded):
    dm = loaded["rnn-g2p-none"]
    assert dm.model.config.attention == "none"
    data = attention_matrix(dm.model, dm.source_tokenizer, dm.tokenizer, "hello", max_new_tokens=4)
    assert data["weights"] is None and data["num_layers"] == 0
    assert data["text"] == dm.tokenizer.decode(data["output_ids"], skip_special_tokens=True)


def test_an_app_is_built_for_every_kind(loaded):
    gr = pytest.importorskip("gradio",
                             reason="gradio is not installed (pip install 'hfnn[demo]'): the app is not built")
    for name, dm in loaded.items():
        app = demo.build_app(dm)
        assert isinstance(app, gr.Blocks), name
        ids = {getattr(block, "elem_id", None) for block in app.blocks.values()}
        assert {"prompt", "submit"} <= ids, name
        assert {"causal-lm": "token-probs", "classification": "highlight", "seq2seq": "heatmap"}[dm.kind] in ids, name
        assert ("hidden-norms" in ids) == (name == "rnn-lm"), name


def test_heatmap_html_has_a_cell_per_weight():
    page = demo.heatmap_html(["a", "<b>"], ["X"], [[0.25, 0.75]], "layer 0")
    assert page.count("<td") == 2 and "&lt;b&gt;" in page and 'title="0.750"' in page


# ---------------------------------------------------------------- loading, bad input, command line


def test_each_kind_is_recognised(loaded):
    kinds = {name: (dm.kind, dm.model_type) for name, dm in loaded.items()}
    assert kinds["rnn-lm"] == ("causal-lm", "hfnn-rnn")
    assert kinds["cnn"] == ("classification", "hfnn-cnn")
    assert kinds["transformer-g2p"] == ("seq2seq", "hfnn-transformer")
    assert loaded["rnn-g2p"].source_tokenizer is not loaded["rnn-g2p"].tokenizer
    assert loaded["rnn-lm"].source_tokenizer is loaded["rnn-lm"].tokenizer


def test_folders_that_are_not_hfnn_models_are_refused_in_one_line(tmp_path, folders, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    (tmp_path / "file.txt").write_text("x")
    backbone = tmp_path / "backbone"
    hfnn.CnnModel(hfnn.CnnConfig(vocab_size=20, embedding_size=4, num_filters=2,
                                 window_sizes=[2])).save_pretrained(backbone)
    notok = tmp_path / "no-tokenizer"
    shutil.copytree(folders["cnn"], notok)
    for f in notok.glob("tokenizer*"):
        f.unlink()
    cases = {
        str(tmp_path / "missing"): "no such model folder",
        str(tmp_path / "empty"): "is not a saved hfnn model folder (no config.json)",
        str(tmp_path / "bert"): "is not an hfnn model folder (model_type 'bert'; hfnn models are",
        str(tmp_path / "broken"): "config.json cannot be read",
        str(tmp_path / "file.txt"): "is a file, not a saved model folder",
        str(backbone): "holds a CnnModel without a task head",
        str(notok): "no usable tokenizer saved in",
    }
    capsys.readouterr()
    for path, message in cases.items():
        with pytest.raises(DemoError, match=None) as err:
            load_demo_model(path)
        assert message in str(err.value), (path, str(err.value))
        assert demo.main([path]) == 2
        err_text = capsys.readouterr().err
        assert err_text.startswith("hfnn demo: error: ") and message in err_text and err_text.count("\n") == 1


def test_token_ids_outside_the_vocabulary_are_named(loaded):
    dm = loaded["rnn-lm"]
    vocab = dm.model.config.vocab_size
    with pytest.raises(DemoError, match=f"token id {vocab + 3} but the model's vocab_size is {vocab}"):
        token_probabilities(dm.model, dm.tokenizer, [5, vocab + 3])


@pytest.mark.parametrize("argv, message", [
    (["x", "--port", "99999"], "a port is between 1 and 65535"),
    (["x", "--port", "web"], "expected a port number"),
    (["x", "--share", "maybe"], "expected true or false"),
])
def test_bad_options_are_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_options_parse():
    args = demo.build_parser().parse_args(["runs/lm", "--port", "7870", "--share", "false", "--host", "0.0.0.0"])
    assert (args.model, args.port, args.share, args.host) == ("runs/lm", 7870, False, "0.0.0.0")
    assert demo.build_parser().parse_args(["m", "--share", "True"]).share is True
    assert demo.build_parser().parse_args(["m"]).host == "127.0.0.1"


def test_importing_the_demo_does_not_import_gradio():
    code = "import sys, hfnn.models.demo; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_space_files_run_the_demo_without_hfnn(folders, loaded, tmp_path):
    folder = shutil.copytree(folders["cnn"], tmp_path / "space")
    written = write_space_files(folder)
    assert sorted(p.name for p in written) == ["app.py", "hfnn_demo.py", "registry.py", "requirements.txt"]
    requirements = (folder / "requirements.txt").read_text().split()
    assert any(r.startswith("gradio") for r in requirements) and any(r.startswith("transformers") for r in requirements)
    compile((folder / "app.py").read_text(), "app.py", "exec")
    assert "build_app" in (folder / "app.py").read_text()
    # A Space without hfnn: the copied module loads the model as remote code and computes the same scores.
    out = run_without_hfnn(
        "import json, sys\n"
        f"sys.path.insert(0, {str(folder)!r})\n"
        "import hfnn_demo\n"
        f"dm = hfnn_demo.load_demo_model({str(folder)!r})\n"
        f"print(json.dumps(hfnn_demo.label_scores(dm.model, dm.tokenizer, {TEXT!r})))\n",
        cwd=tmp_path,
    )
    remote = json.loads(out.strip().splitlines()[-1])
    local = label_scores(loaded["cnn"].model, loaded["cnn"].tokenizer, TEXT)
    assert [label for label, _ in remote] == [label for label, _ in local]
    assert [score for _, score in remote] == pytest.approx([score for _, score in local], **approx_tolerance(depth=2))
    with pytest.raises(DemoError, match="no such model folder"):
        write_space_files(tmp_path / "nowhere")
    # an upload of the folder carries the Space's files
    from hfnn.sharing.hub import upload_manifest

    assert {"app.py", "hfnn_demo.py", "registry.py", "requirements.txt"} <= set(upload_manifest(folder))


def test_a_hub_id_that_cannot_be_downloaded_is_named(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(DemoError, match=r"no such model folder: someone/rnn-lm \(and it could not be downloaded "
                                        r"from the Hub: LocalEntryNotFoundError\)"):
        load_demo_model("someone/rnn-lm")
