"""What every hfnn model owes a transformers user, in the spirit of transformers' ``ModelTesterMixin``,
parametrised over every task head of every architecture in ``hfnn.ARCHITECTURES`` (the registry's entries):

* ``return_dict=False`` (argument or config) returns ``to_tuple()`` of the dataclass output;
* ``output_hidden_states`` works from the call and from the config, one entry per layer plus the embeddings;
* ``resize_token_embeddings`` leaves a usable model: the new ids are accepted everywhere;
* the pre-v5 cache keyword ``past_key_values`` is honoured (with a FutureWarning), never silently dropped;
* a row of pure padding gives finite logits and gradients, the same alone and in a batch, for every pooling;
* encoder-decoders accept ``decoder_inputs_embeds``;
* classifier losses follow ``problem_type`` as transformers' heads do;
* the files of hfnn/models/ import only what travels with remote code;
* torch.export with dynamic batch and lengths (the RNN family too) matches eager on new padded shapes, longer and
  shorter; gradient checkpointing changes no gradient.

Generation is checked in ``tests/test_generation_contract.py``.

The full transformers suite runs with ``python tests/hf_common/run.py``.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import hfnn
from tests.helpers import randomize_, tolerance
from tests.reliability_utils import VOCAB, heads, model_classes, tiny_config

pytestmark = pytest.mark.numerics

HEADS = heads()
IDS = [f"{a}-{h.removeprefix('AutoModelFor')}" for a, h in HEADS]
GENERATIVE = [(a, h) for a, h in HEADS if h in ("AutoModelForCausalLM", "AutoModelForSeq2SeqLM")]
CLASSIFIERS = [(a, h) for a, h in HEADS if h == "AutoModelForSequenceClassification"]
DEEP = {"rnn": dict(num_hidden_layers=2), "transformer": dict(num_hidden_layers=2), "mlp": dict(num_hidden_layers=2),
        "rnn_seq2seq": dict(num_encoder_layers=2, num_decoder_layers=2), "cnn": {}}
NO_DROPOUT = {"rnn": dict(dropout=0.0), "cnn": dict(dropout=0.0), "mlp": dict(dropout=0.0),
              "rnn_seq2seq": dict(dropout=0.0), "transformer": dict(dropout=0.0, attention_dropout=0.0)}


def build(arch, head, **overrides):
    torch.manual_seed(0)
    config = tiny_config(arch, head, **{**NO_DROPOUT[arch], **DEEP[arch], **overrides})
    return model_classes(arch)[head](config).eval()


def inputs(head, batch=2, length=5, high=VOCAB):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(4, high, (batch, length), generator=generator)
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if head == "AutoModelForSeq2SeqLM":
        kwargs["decoder_input_ids"] = torch.randint(4, high, (batch, 3), generator=generator)
    return kwargs


def test_every_architecture_is_covered():
    assert {a for a, _ in HEADS} == set(hfnn.ARCHITECTURES)


@pytest.mark.parametrize("arch,head", HEADS, ids=IDS)
@pytest.mark.parametrize("where", ["argument", "config"])
def test_return_dict_false_gives_the_tuple_of_the_output(arch, head, where):
    model = build(arch, head)
    kwargs = inputs(head)
    with torch.no_grad():
        expected = model(**kwargs).to_tuple()
        if where == "config":
            model.config.return_dict = False
            got = model(**kwargs)
        else:
            got = model(**kwargs, return_dict=False)
    assert isinstance(got, tuple) and len(got) == len(expected)
    for a, b in zip(got, expected):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a, b)


def _hidden_states(out, head):
    if head == "AutoModelForSeq2SeqLM":
        return out.encoder_hidden_states, out.decoder_hidden_states
    return (out.hidden_states,)


def _layers(model, arch):
    config = model.config
    if arch == "rnn_seq2seq":
        return [config.num_encoder_layers, config.num_decoder_layers]
    if arch == "transformer" and config.is_encoder_decoder:
        return [config.encoder_layers, config.decoder_layers]
    if arch == "cnn":
        return [1]  # embeddings, then the feature maps
    return [config.num_hidden_layers]


@pytest.mark.parametrize("arch,head", HEADS, ids=IDS)
def test_output_hidden_states_from_the_call_and_from_the_config(arch, head):
    model = build(arch, head)
    kwargs = inputs(head)
    with torch.no_grad():
        assert all(h is None for h in _hidden_states(model(**kwargs), head))
        by_call = _hidden_states(model(**kwargs, output_hidden_states=True), head)
        model.config.output_hidden_states = True
        by_config = _hidden_states(model(**kwargs), head)
    for states, again, layers in zip(by_call, by_config, _layers(model, arch)):
        assert states is not None and len(states) == layers + 1  # the embeddings, then one entry per layer
        for a, b in zip(states, again):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("arch,head", HEADS, ids=IDS)
def test_resize_token_embeddings_accepts_the_new_ids(arch, head):
    model = build(arch, head)
    model.resize_token_embeddings(VOCAB + 6)
    assert model.config.vocab_size == VOCAB + 6
    kwargs = inputs(head)
    for key in ("input_ids", "decoder_input_ids"):
        if key in kwargs:
            kwargs[key][:, -1] = VOCAB + 5  # a new token
    with torch.no_grad():
        out = model(**kwargs)
    assert torch.isfinite(out.logits).all()
    if head != "AutoModelForSequenceClassification":
        assert out.logits.shape[-1] == VOCAB + 6
    model.resize_token_embeddings(VOCAB - 2)
    kwargs[next(iter(kwargs))][:, -1] = VOCAB + 1  # beyond the smaller vocabulary: a clear error
    with pytest.raises(ValueError, match=f"token id {VOCAB + 1}"):
        model(**kwargs)


@pytest.mark.parametrize("arch,head", GENERATIVE, ids=lambda x: x if isinstance(x, str) else None)
def test_past_key_values_is_honoured_with_a_deprecation_warning(arch, head):
    model = build(arch, head)
    kwargs = inputs(head)
    with torch.no_grad():
        first = model(**kwargs, use_cache=True)
        step = {"input_ids": torch.tensor([[5], [6]])} if head == "AutoModelForCausalLM" else {
            "decoder_input_ids": torch.tensor([[5], [6]]), "encoder_outputs": (first.encoder_last_hidden_state,),
            "attention_mask": kwargs["attention_mask"]}
        if head == "AutoModelForCausalLM":
            step["attention_mask"] = torch.ones(2, kwargs["input_ids"].shape[1] + 1, dtype=torch.long)
        cache_copy = __import__("copy").deepcopy(first.cache)
        expected = model(**step, cache=first.cache, use_cache=True).logits
        without_cache = model(**{k: v for k, v in step.items()
                                 if k != "attention_mask" or head != "AutoModelForCausalLM"},
                              use_cache=False).logits if head == "AutoModelForCausalLM" else None
        with pytest.warns(FutureWarning, match="past_key_values"):
            got = model(**step, past_key_values=cache_copy, use_cache=True).logits
    torch.testing.assert_close(got, expected)
    if without_cache is not None:  # the cache matters: dropping it would change the logits
        assert not torch.allclose(without_cache, expected)


@pytest.mark.parametrize("arch,head", GENERATIVE, ids=lambda x: x if isinstance(x, str) else None)
def test_cache_given_twice_is_an_error(arch, head):
    model = build(arch, head)
    kwargs = inputs(head)
    with torch.no_grad():
        cache = model(**kwargs, use_cache=True).cache
        other = __import__("copy").deepcopy(cache)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            with pytest.raises(ValueError, match="past_key_values"):
                model(**kwargs, cache=cache, past_key_values=other)


@pytest.mark.parametrize("arch", ["rnn", "rnn_seq2seq"])
def test_recurrent_caches_have_one_layer_per_recurrent_layer(arch):
    from transformers.cache_utils import CacheLayerMixin

    head = "AutoModelForCausalLM" if arch == "rnn" else "AutoModelForSeq2SeqLM"
    model = build(arch, head)
    kwargs = inputs(head, batch=3)
    with torch.no_grad():
        cache = model(**kwargs, use_cache=True).cache
    layers = model.config.num_hidden_layers
    assert len(cache) == len(cache.layers) == layers and all(isinstance(x, CacheLayerMixin) for x in cache.layers)
    assert cache.get_seq_length() == kwargs.get("decoder_input_ids", kwargs["input_ids"]).shape[1]
    assert cache.get_mask_sizes(1, 0) == (1, 0)
    # transformers' generic helpers walk cache.layers: reorder (beam search), repeat and select rows, reset
    first = [layer.states[0].clone() for layer in cache.layers]
    cache.reorder_cache(torch.tensor([2, 0, 1]))
    assert all(torch.equal(layer.states[0], f[[2, 0, 1]]) for layer, f in zip(cache.layers, first))
    cache.batch_repeat_interleave(2)
    assert cache.batch_size == 6
    cache.batch_select_indices(torch.tensor([0, 1]))
    assert cache.batch_size == 2
    cache.reset()
    assert cache.get_seq_length() == 0


POOLINGS = [("rnn", dict(pooling=p, bidirectional=b)) for p in ("last", "mean", "max") for b in (False, True)]
POOLINGS += [(a, {}) for a, _ in CLASSIFIERS if a != "rnn"]


@pytest.mark.parametrize("arch,fields", POOLINGS, ids=[f"{a}-{'-'.join(map(str, f.values())) or 'default'}"
                                                       for a, f in POOLINGS])
def test_an_all_padding_row_is_finite_and_the_same_alone_and_in_a_batch(arch, fields):
    head = "AutoModelForSequenceClassification"
    model = randomize_(build(arch, head, **fields), std=1.0)  # weights of a trained model's scale
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]])  # the second text has no token left (e.g. blank)
    batch = model(input_ids=ids, attention_mask=mask).logits
    alone = model(input_ids=ids[1:], attention_mask=mask[1:]).logits
    assert torch.isfinite(batch).all() and torch.isfinite(alone).all()
    torch.testing.assert_close(batch[1:], alone)
    if arch == "rnn":  # pooling over nothing gives the zero vector: the logits are the bias
        torch.testing.assert_close(alone[0], model.classifier.bias)
    model.train()
    loss = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1])).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_cnn_mask_with_gaps_and_no_full_window_pools_to_zeros():
    model = build("cnn", "AutoModelForSequenceClassification", window_sizes=(3,))
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    mask = torch.tensor([[1, 1, 0, 1, 1, 0]])  # no three real tokens in a row, yet the text is not short
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert torch.isfinite(out.logits).all()
    pooled = model.model(input_ids=ids, attention_mask=mask).pooler_output
    assert torch.equal(pooled, torch.zeros_like(pooled))


def test_rnn_seq2seq_accepts_decoder_inputs_embeds():
    model = build("rnn_seq2seq", "AutoModelForSeq2SeqLM")
    kwargs = inputs("AutoModelForSeq2SeqLM")
    with torch.no_grad():
        expected = model(**kwargs).logits
        embeds = model.get_decoder().get_input_embeddings()(kwargs.pop("decoder_input_ids"))
        got = model(**kwargs, decoder_inputs_embeds=embeds).logits
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="decoder_inputs_embeds"):
        model(**kwargs, decoder_inputs_embeds=embeds, decoder_input_ids=torch.tensor([[4, 5, 6]] * 2))


def test_rnn_classifier_reads_through_its_backbone(monkeypatch):
    model = build("rnn", "AutoModelForSequenceClassification")
    calls = []
    forward = type(model.model).forward
    monkeypatch.setattr(type(model.model), "forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    model(**inputs("AutoModelForSequenceClassification"))
    assert calls == [1]


@pytest.mark.parametrize("arch,head", CLASSIFIERS, ids=[a for a, _ in CLASSIFIERS])
def test_classifier_losses_follow_problem_type(arch, head):
    F = torch.nn.functional
    kwargs = inputs(head, batch=3)
    single = build(arch, head, num_labels=3)
    labels = torch.tensor([0, 2, 1])
    out = single(**kwargs, labels=labels)
    assert single.config.problem_type == "single_label_classification"  # inferred from integer labels
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))
    multi = build(arch, head, num_labels=3)
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    out = multi(**kwargs, labels=targets)
    assert multi.config.problem_type == "multi_label_classification"
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, targets))
    regression = build(arch, head, num_labels=1)
    values = torch.tensor([0.5, -1.0, 2.0])
    out = regression(**kwargs, labels=values)
    assert regression.config.problem_type == "regression"
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits[:, 0], values))


def test_modeling_and_configuration_files_import_only_what_travels_with_remote_code(tmp_path):
    """Every file of hfnn/models/ (what travels with a saved model: remote code, the demo of a Space, the seq2seq
    pipeline) imports only torch, transformers, huggingface_hub, the standard library and its sibling files (the
    demo also what its Space's requirements install), and every architecture's modules are among them."""
    import ast
    import re
    import sys
    from pathlib import Path

    from hfnn.models.demo import write_space_files

    folder = Path(hfnn.__file__).parent / "models"
    names = {path.name for path in folder.glob("*.py")}
    assert {f"{m}.py" for entry in hfnn.ARCHITECTURES.values() for m in (entry.config_module, entry.modeling_module)
            } <= names
    write_space_files(tmp_path)
    space = {re.split(r"[<>=!~\[ ]", line)[0] for line in (tmp_path / "requirements.txt").read_text().split()}
    siblings = {name.removesuffix(".py") for name in names}
    for name in sorted(names):
        allowed = {"torch", "transformers", "huggingface_hub"} | set(sys.stdlib_module_names)
        if name == "demo.py":  # at a Space's top level, the demo imports the registry beside it by its name
            allowed |= space | {hfnn.registry.REGISTRY_FILE.removesuffix(".py")}
        for node in ast.walk(ast.parse((folder / name).read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    assert node.level == 1, f"{name}: only single-dot sibling imports travel with remote code"
                    imported = [node.module] if node.module else [a.name for a in node.names]
                    assert set(imported) <= siblings, f"{name}: {imported} is not a sibling file"
                else:
                    assert node.module.split(".")[0] in allowed, f"{name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] in allowed for a in node.names), name


def _padded(head, batch, length, decoder_length, seed):
    """Inputs of a padded batch: row 0 left-padded by 2, row 1 right-padded by 1, the rest full."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    mask[1, -1:] = 0
    kwargs = {"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask}
    if head == "AutoModelForSeq2SeqLM":
        kwargs["decoder_input_ids"] = torch.randint(4, VOCAB, (batch, decoder_length), generator=generator)
    if head != "AutoModelForSequenceClassification":
        kwargs["use_cache"] = False
    return kwargs


def _logits(out):
    return out["logits"] if isinstance(out, dict) or hasattr(out, "keys") else out[0]


# The RNN family exports like the rest: traced, its recurrence runs as torch's scan over a dynamic time axis. Each
# case is exported under no_grad (for inference, as hfnn.sharing.export does: half the time of the recurrent models'
# export) but the last, a stacked LSTM decoder with input feeding, exported with autograd on as a plain call is.
EXPORT_CASES = [(a, h, {}) for a, h in HEADS] + [
    ("rnn", "AutoModelForSequenceClassification", dict(bidirectional=True, rnn_type="gru", num_hidden_layers=1)),
    ("rnn", "AutoModelForSequenceClassification", dict(rnn_type="rnn_relu", num_hidden_layers=1, pooling="max")),
    ("rnn_seq2seq", "AutoModelForSeq2SeqLM", dict(attention="luong", input_feeding=False, rnn_type="rnn_tanh",
                                                  num_encoder_layers=1, num_decoder_layers=1)),
    ("rnn_seq2seq", "AutoModelForSeq2SeqLM", dict(attention="none", bidirectional_encoder=False, num_encoder_layers=1,
                                                  num_decoder_layers=1)),
    ("transformer", "AutoModelForCausalLM", dict(position_embedding_type="rotary")),
    ("rnn_seq2seq", "AutoModelForSeq2SeqLM", dict(attention="luong", rnn_type="lstm", num_encoder_layers=1)),
]


def _padding_elsewhere(kwargs, arch, fields):
    """A third row padded where the example had no padding: in the middle for a unidirectional recurrent model (a
    step it skips), on the left otherwise; a recurrent decoder's targets padded too (steps that keep its state)."""
    mask = kwargs["attention_mask"]
    recurrent = arch in ("rnn", "rnn_seq2seq")
    mask[2, 1 if recurrent and not fields.get("bidirectional") else 0] = 0
    if arch == "rnn_seq2seq":
        target_mask = torch.ones_like(kwargs["decoder_input_ids"])
        target_mask[0, 0] = target_mask[1, -1] = target_mask[3, target_mask.shape[1] // 2] = 0
        kwargs["decoder_attention_mask"] = target_mask
    return kwargs


@pytest.mark.parametrize("arch,head,fields", EXPORT_CASES,
                         ids=[f"{a}-{h.removeprefix('AutoModelFor')}-{'-'.join(map(str, f.values())) or 'default'}"
                              for a, h, f in EXPORT_CASES])
def test_torch_export_with_dynamic_batch_and_length_matches_eager_on_new_padded_shapes(arch, head, fields):
    """Exported with batch and lengths dynamic, the program gives eager's logits on batches of other sizes and on
    texts longer and shorter than the example, padded otherwise (for an RNN encoder-decoder, the targets too)."""
    from torch.export import Dim

    model = build(arch, head, **fields)
    batch, length, target = Dim("batch", min=2, max=16), Dim("length", min=3, max=24), Dim("target", max=24)
    example = _padded(head, 2, 5, 3, seed=0)
    if arch == "rnn_seq2seq":
        example["decoder_attention_mask"] = torch.ones_like(example["decoder_input_ids"])
        example["decoder_attention_mask"][0, 0] = 0
    shapes = {key: None if key == "use_cache" else {0: batch, 1: target if key.startswith("decoder") else length}
              for key in example}
    with torch.set_grad_enabled((arch, head, fields) == EXPORT_CASES[-1]):
        program = torch.export.export(model, (), kwargs=example, dynamic_shapes=shapes)
    for new_length, new_target in ((9, 6), (3, 2)):  # longer and shorter than the example
        new = _padding_elsewhere(_padded(head, 4, new_length, new_target, seed=new_length), arch, fields)
        with torch.no_grad():
            expected = model(**new).logits
        got = _logits(program.module()(**new))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    unpadded = _logits(program.module()(**{**new, "attention_mask": torch.ones_like(new["attention_mask"])}))
    assert not torch.allclose(unpadded, got)  # the graph reads the mask: padding is not a traced-away fast path


GC_CASES = [(a, h, {}) for a, h in HEADS] + [
    ("rnn", "AutoModelForSequenceClassification", dict(bidirectional=True, rnn_type="gru", pooling="max")),
    ("rnn_seq2seq", "AutoModelForSeq2SeqLM", dict(attention="luong", rnn_type="lstm")),
    ("rnn_seq2seq", "AutoModelForSeq2SeqLM", dict(attention="luong", input_feeding=False)),
]


def _loss_and_grads(model, head, checkpoints):
    kwargs = _padded(head, 3, 6, 4, seed=2)
    kwargs.pop("use_cache", None)
    labels = kwargs.get("decoder_input_ids", kwargs["input_ids"])
    kwargs["labels"] = torch.tensor([0, 2, 1]) if head == "AutoModelForSequenceClassification" else labels
    model.zero_grad()
    loss = model(**kwargs).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch,head,fields", GC_CASES,
                         ids=[f"{a}-{h.removeprefix('AutoModelFor')}-{'-'.join(map(str, f.values())) or 'default'}"
                              for a, h, f in GC_CASES])
@pytest.mark.parametrize("reentrant", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(arch, head, fields, reentrant):
    model = build(arch, head, **fields).train()
    assert model.supports_gradient_checkpointing
    loss, grads = _loss_and_grads(model, head, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the v5 alias of activation_checkpointing_enable
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    assert model.is_activation_checkpointing
    calls = []
    for module in model.modules():
        if getattr(module, "gradient_checkpointing", False):
            function = module._gradient_checkpointing_func
            module._gradient_checkpointing_func = lambda *a, f=function, **k: calls.append(1) or f(*a, **k)
    checkpointed_loss, checkpointed_grads = _loss_and_grads(model, head, calls)
    assert calls, "nothing was checkpointed"
    torch.testing.assert_close(checkpointed_loss, loss, **tolerance(depth=2))
    assert checkpointed_grads.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, **tolerance(depth=4), msg=name)
    model.activation_checkpointing_disable()
    with torch.no_grad():  # evaluation and generation are untouched
        model.eval()(**inputs(head))


@pytest.mark.parametrize("arch,head", HEADS, ids=IDS)
def test_trainer_trains_with_gradient_checkpointing(arch, head, tmp_path):
    from transformers import Trainer, TrainingArguments

    model = build(arch, head)
    rows = []
    for i in range(4):
        row = {key: value[0] for key, value in _padded(head, 2, 6, 4, seed=i).items() if key != "use_cache"}
        row["labels"] = torch.tensor(i % 3) if head == "AutoModelForSequenceClassification" else row.get(
            "decoder_input_ids", row["input_ids"])
        rows.append(row)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the v5 name of activation_checkpointing
        args = TrainingArguments(str(tmp_path), max_steps=2, per_device_train_batch_size=2, gradient_checkpointing=True,
                                 report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    Trainer(model=model, args=args, train_dataset=rows).train()
    assert model.is_activation_checkpointing
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())


SHARED_BACKBONE = [a for a, h in HEADS
                   if h == "AutoModelForCausalLM" and (a, "AutoModelForSequenceClassification") in HEADS]


@pytest.mark.parametrize("arch", SHARED_BACKBONE)
def test_a_classifier_loads_the_backbone_of_a_saved_language_model(arch, tmp_path):
    classes = model_classes(arch)
    lm = build(arch, "AutoModelForCausalLM")
    lm.save_pretrained(tmp_path)
    classifier, info = classes["AutoModelForSequenceClassification"].from_pretrained(
        tmp_path, num_labels=3, output_loading_info=True)
    backbone = {name: p for name, p in lm.named_parameters() if name.startswith(f"{lm.base_model_prefix}.")}
    loaded = dict(classifier.named_parameters())
    assert backbone and all(torch.equal(loaded[name], p) for name, p in backbone.items())
    head = {name for name in loaded if name not in backbone}
    assert head and set(info["missing_keys"]) == head  # a new head, initialised; nothing else missing
    assert classifier(**inputs("AutoModelForSequenceClassification")).logits.shape == (2, 3)


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_torch_compile_runs_a_training_step_on_a_padded_batch(arch):
    model = build(arch, "AutoModelForCausalLM").train()
    kwargs = _padded("AutoModelForCausalLM", 3, 6, 0, seed=3)
    kwargs["labels"] = kwargs["input_ids"].masked_fill(kwargs["attention_mask"] == 0, -100)
    expected = model(**kwargs).loss
    compiled = torch.compile(model, backend="aot_eager", fullgraph=False)
    loss = compiled(**kwargs).loss
    loss.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_only_an_exported_graph_runs_the_recurrence_as_a_scan():
    """torch.compile keeps the fused recurrent kernels (inductor cannot lower a scan in training unless told to
    capture scalar outputs, and a scan trains slower); torch.export, which would fix their time axis, scans."""
    from hfnn.models.recurrent_cells import traced_over_time

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(traced_over_time(x))
            return x + 1

    x = torch.ones(2, 3)
    Probe()(x)
    torch.compile(Probe(), backend="eager")(x)
    torch.export.export(Probe(), (x,))
    assert seen == [False, False, True]


def test_an_exported_lstm_language_model_continues_from_its_state_as_eager_does():
    """The language model exported with its state in and out and a dynamic number of new tokens (how an ONNX runtime
    serves it: the prompt in one call, then a token per call): eager's logits and final h and c on chunks longer and
    shorter than the example, one token included, with rows padded on the left, the right, in the middle, wholly (that
    row keeps its state) or not at all."""
    from torch.export import Dim

    from hfnn.models.modeling_rnn import RnnStateCache

    class Chunk(torch.nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, ids, mask, h, c):
            cache = RnnStateCache()
            cache.store((h, c), 0)
            out = self.lm(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True)
            return (out.logits, *out.cache.states)

    def example(batch, past, new, seed):
        generator = torch.Generator().manual_seed(seed)
        mask = torch.ones(batch, past + new, dtype=torch.long)
        mask[0, past : past + (new + 1) // 2] = 0  # row 0: its new tokens padded on the left
        mask[1, -1] = 0  # row 1: on the right
        if batch > 3:
            mask[2, past + new // 2] = 0  # row 2: in the middle
            mask[3, past:] = 0  # row 3: nothing new; row 4 has no padding
        state = torch.randn(2, batch, 2, 8, generator=generator)
        return torch.randint(4, VOCAB, (batch, new), generator=generator), mask, state[0], state[1]

    chunk = Chunk(build("rnn", "AutoModelForCausalLM"))  # an LSTM of two layers of 8
    batch = Dim("batch", min=2, max=16)
    program = torch.export.export(chunk, example(2, 3, 5, 0), dynamic_shapes=(
        {0: batch, 1: Dim("new", min=1, max=64)}, {0: batch, 1: Dim("past_and_new", min=1, max=128)}, {0: batch},
        {0: batch}))
    for rows, past, new in ((5, 6, 9), (5, 0, 3), (5, 2, 1)):
        inputs = example(rows, past, new, seed=new)
        with torch.no_grad():
            expected = chunk(*inputs)
        got = program.module()(*inputs)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[1][3], inputs[2][3])  # the row without new tokens keeps h and c
        torch.testing.assert_close(got[2][3], inputs[3][3])
        assert not torch.allclose(got[2][4], inputs[3][4])
