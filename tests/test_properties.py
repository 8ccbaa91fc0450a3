"""Property-based tests (hypothesis) over every task head of every registered architecture, on small
random configurations and random batches, with every weight (biases included) randomised:

* batch invariance: an example's output does not depend on the other examples of its batch;
* padding invariance: left or right padding (masked) leaves the outputs at real positions unchanged;
* cache consistency: greedy generation with and without the cache gives the same tokens;
* save/load round trip: ``save_pretrained`` + the Auto class give the same config, bitwise the same
  weights and the same outputs.

Settings keep CI stable and quick: a fixed (derandomized) set of examples, no example database.
"""

from __future__ import annotations

import tempfile

import pytest
import torch
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoConfig

import hfnn  # noqa: F401  (registers the hfnn classes with the Auto classes)
from tests.helpers import randomize_, tolerance
from tests.reliability_utils import VOCAB, heads, model_classes, tiny_config

pytestmark = pytest.mark.numerics

HEADS = heads()
IDS = [f"{a}-{h.removeprefix('AutoModelFor')}" for a, h in HEADS]
GENERATIVE = [(a, h) for a, h in HEADS if h in ("AutoModelForCausalLM", "AutoModelForSeq2SeqLM")]
FAST = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEWER = settings(FAST, max_examples=8)

sizes = st.integers(4, 16)
layers = st.integers(1, 2)


@st.composite
def transformer_fields(draw, head):
    heads_ = draw(st.integers(1, 2))
    head_dim = draw(st.sampled_from([2, 4, 6, 8]))
    fields = dict(
        hidden_size=heads_ * head_dim, num_attention_heads=heads_, num_hidden_layers=draw(layers),
        intermediate_size=draw(st.integers(4, 32)), max_position_embeddings=32,
        position_embedding_type=draw(st.sampled_from(["learned", "sinusoidal", "rotary"])),
        hidden_act=draw(st.sampled_from(["gelu", "relu", "tanh"])), tie_word_embeddings=draw(st.booleans()),
    )
    if head == "AutoModelForSeq2SeqLM":
        fields.update(encoder_layers=draw(layers), decoder_layers=draw(layers))
    return fields


@st.composite
def rnn_seq2seq_fields(draw, head):
    attention = draw(st.sampled_from(["none", "bahdanau", "luong"]))
    bidirectional = draw(st.booleans())
    return dict(
        hidden_size=2 * draw(st.integers(2, 8)), embedding_size=draw(sizes),
        rnn_type=draw(st.sampled_from(["gru", "lstm", "rnn_tanh"])),
        num_encoder_layers=draw(layers), num_decoder_layers=draw(layers), bidirectional_encoder=bidirectional,
        attention=attention, luong_score=draw(st.sampled_from(["dot", "general"])),
        input_feeding=draw(st.booleans()) if attention == "luong" else False, tie_word_embeddings=draw(st.booleans()),
    )


def config_fields(arch: str, head: str):
    """A strategy for the config fields of ``arch`` that matter (all dropout off)."""
    if arch == "rnn":
        classifier = head == "AutoModelForSequenceClassification"
        return st.fixed_dictionaries(dict(
            hidden_size=sizes, embedding_size=sizes, num_hidden_layers=layers,
            rnn_type=st.sampled_from(["rnn_tanh", "rnn_relu", "gru", "lstm"]), tie_word_embeddings=st.booleans(),
            bidirectional=st.booleans() if classifier else st.just(False),
            pooling=st.sampled_from(["last", "mean", "max"]),
        ))
    if arch == "cnn":
        return st.fixed_dictionaries(dict(
            embedding_size=sizes, window_sizes=st.lists(st.integers(1, 4), min_size=1, max_size=3),
            num_filters=st.integers(1, 6), max_norm=st.sampled_from([None, 3.0]),
            embedding_mode=st.sampled_from(["rand", "static", "non-static", "multichannel"]),
        ))
    if arch == "mlp":
        return st.fixed_dictionaries(dict(
            embedding_size=sizes, hidden_size=sizes, num_hidden_layers=st.integers(0, 2),
            activation=st.sampled_from(["identity", "sigmoid", "tanh", "relu", "gelu"]),
            ngram_range=st.sampled_from([[1, 1], [1, 2], [2, 3]]), ngram_buckets=st.just(64),
        ))
    if arch == "rnn_seq2seq":
        return rnn_seq2seq_fields(head)
    if arch == "transformer":
        return transformer_fields(head)
    return st.just({})  # a new architecture: its tiny defaults


def build(arch, head, fields, seed):
    from tests.reliability_utils import no_dropout

    torch.manual_seed(seed)
    model = model_classes(arch)[head](tiny_config(arch, head, **fields, **no_dropout(arch)))
    return randomize_(model, std=0.5, seed=seed).eval()


@st.composite
def texts(draw, min_size=1, max_size=3, max_len=7):
    """Token-id lists (ordinary ids >= 4, so no pad/bos/eos inside a text)."""
    return draw(st.lists(st.lists(st.integers(4, VOCAB - 1), min_size=1, max_size=max_len),
                         min_size=min_size, max_size=max_size))


def pad(rows, side, extra=0, pad_id=0):
    width = max(len(r) for r in rows) + extra
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        span = slice(0, len(r)) if side == "right" else slice(width - len(r), width)
        ids[i, span] = torch.tensor(r)
        mask[i, span] = 1
    return ids, mask


def outputs(model, head, ids, mask, target):
    """Per-example outputs: LM logits at every position, class logits, or decoder logits."""
    with torch.no_grad():
        if head == "AutoModelForSeq2SeqLM":
            return model(input_ids=ids, attention_mask=mask, decoder_input_ids=target.expand(ids.shape[0], -1)).logits
        if head == "AutoModelForCausalLM":
            return model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        return model(input_ids=ids, attention_mask=mask).logits


def real_positions(out, head, mask, i):
    if head == "AutoModelForCausalLM":
        return out[i][mask[i].bool()]
    return out[i]


CLOSE = dict(rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch, head", HEADS, ids=IDS)
@FAST
@given(data=st.data())
def test_batch_and_padding_invariance(arch, head, data):
    model = build(arch, head, data.draw(config_fields(arch, head), label="config"),
                  data.draw(st.integers(0, 99), label="seed"))
    rows = data.draw(texts(min_size=2), label="texts")
    side = data.draw(st.sampled_from(["right", "left"]), label="padding side")
    extra = data.draw(st.integers(0, 3), label="extra padding")
    target = torch.tensor([data.draw(texts(1, 1, 5), label="target")[0]])
    alone = [outputs(model, head, *pad([r], side), target) for r in rows]
    # Batch invariance: the same examples, all cut to one length, alone and together.
    short = min(len(r) for r in rows)
    same = [r[:short] for r in rows]
    together = outputs(model, head, *pad(same, side), target)
    for i, r in enumerate(same):
        torch.testing.assert_close(together[i], outputs(model, head, *pad([r], side), target)[0], **CLOSE,
                                   msg=lambda m, i=i: f"example {i} changes with the rest of its batch: {m}")
    # Padding invariance: different lengths, padded on `side` with `extra` more pad tokens.
    ids, mask = pad(rows, side, extra)
    batch = outputs(model, head, ids, mask, target)
    for i in range(len(rows)):
        single_ids, single_mask = pad([rows[i]], side)
        torch.testing.assert_close(real_positions(batch, head, mask, i), real_positions(alone[i], head, single_mask, 0),
                                   **CLOSE, msg=lambda m, i=i: f"{side} padding changes example {i}: {m}")


@pytest.mark.parametrize("arch, head", GENERATIVE, ids=[f"{a}-{h.removeprefix('AutoModelFor')}" for a, h in GENERATIVE])
@FAST
@given(data=st.data())
def test_cached_and_uncached_generation_agree(arch, head, data):
    model = build(arch, head, data.draw(config_fields(arch, head), label="config"),
                  data.draw(st.integers(0, 99), label="seed"))
    rows = data.draw(texts(min_size=1, max_size=3, max_len=6), label="prompts")
    side = "left" if head == "AutoModelForCausalLM" else data.draw(st.sampled_from(["right", "left"]), label="side")
    ids, mask = pad(rows, side)
    beams = data.draw(st.sampled_from([1, 2]), label="beams")
    kwargs = dict(max_new_tokens=5, do_sample=False, num_beams=beams, pad_token_id=0, eos_token_id=3)
    with torch.no_grad():
        cached = model.generate(input_ids=ids, attention_mask=mask, use_cache=True, **kwargs)
        uncached = model.generate(input_ids=ids, attention_mask=mask, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached), (cached, uncached)


@pytest.mark.parametrize("arch, head", HEADS, ids=IDS)
@FEWER
@given(data=st.data())
def test_save_and_load_round_trip(arch, head, data):
    model = build(arch, head, data.draw(config_fields(arch, head), label="config"),
                  data.draw(st.integers(0, 99), label="seed"))
    rows = data.draw(texts(min_size=1), label="texts")
    ids, mask = pad(rows, "right")
    target = torch.tensor([[5, 6, 7]])
    auto = getattr(transformers, head)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        loaded = auto.from_pretrained(folder).eval()
        assert type(loaded) is type(model)
        reloaded_config = AutoConfig.from_pretrained(folder).to_dict()
        assert {k: v for k, v in reloaded_config.items() if k != "_name_or_path"} == {
            k: v for k, v in model.config.to_dict().items() if k != "_name_or_path"
        }
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    # Bitwise-equal weights, but from_pretrained leaves them in the memory-mapped file at offsets that
    # are not 64-byte aligned, and the fused RNN kernels may round differently on unaligned data.
    torch.testing.assert_close(outputs(loaded, head, ids, mask, target), outputs(model, head, ids, mask, target),
                               **tolerance(depth=2))
