"""The Transformer family: configuration, attention against an explicit reference, masks, positions,
the key/value cache, padding invariance, the encoder-decoder, save/load, remote code, pipelines."""

import json
import math

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    DynamicCache,
    EncoderDecoderCache,
    GenerationConfig,
    pipeline,
)

from hfnn import (
    TransformerConfig,
    TransformerForCausalLM,
    TransformerForConditionalGeneration,
    TransformerForSequenceClassification,
    TransformerModel,
)
from tests.helpers import (
    direct_and_generic_generate,
    generation_cases,
    generic_loop_calls,
    randomize_,
    run_without_hfnn,
    tolerance,
)

pytestmark = pytest.mark.numerics

POSITIONS = ["learned", "sinusoidal", "rotary"]
VOCAB = 40


def tiny_config(**overrides):
    fields = dict(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=48, dropout=0.0, attention_dropout=0.0,
    )
    fields.update(overrides)
    return TransformerConfig(**fields)


def tiny_lm(position="learned", seed=0, std=0.5, **overrides):
    torch.manual_seed(seed)
    model = TransformerForCausalLM(tiny_config(position_embedding_type=position, **overrides)).eval()
    return randomize_(model, std=std, seed=seed)


def tiny_seq2seq(position="learned", seed=0, std=0.5, **overrides):
    fields = dict(position_embedding_type=position, is_encoder_decoder=True, encoder_layers=3, decoder_layers=2)
    fields.update(overrides)
    torch.manual_seed(seed)
    model = TransformerForConditionalGeneration(tiny_config(**fields)).eval()
    return randomize_(model, std=std, seed=seed)


def random_ids(*shape, seed=0, low=4, high=VOCAB):
    return torch.randint(low, high, shape, generator=torch.Generator().manual_seed(seed))


def left_pad(rows, pad_id=0):
    """Left-padded batch and attention mask from lists of token ids."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def greedy(model, ids, mask=None, new=6, **kwargs):
    return model.generate(
        ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False,
        output_scores=True, return_dict_in_generate=True, pad_token_id=0, **kwargs,
    )


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("vocab_size", 0),
        ("hidden_size", -8),
        ("num_hidden_layers", 0),
        ("num_attention_heads", 0),
        ("intermediate_size", 0),
        ("max_position_embeddings", 0),
        ("position_embedding_type", "alibi"),
        ("rope_theta", 0.0),
        ("hidden_act", "swishy"),
        ("dropout", 1.0),
        ("attention_dropout", -0.1),
        ("classifier_dropout", 1.5),
        ("layer_norm_eps", 0),
        ("initializer_range", -0.02),
        ("encoder_layers", 0),
        ("decoder_layers", -1),
        ("pad_token_id", VOCAB),
        ("eos_token_id", [3, VOCAB + 1]),
        ("vocab_size", "40"),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_config_head_divisibility_error_names_both_fields():
    with pytest.raises(ValueError) as error:
        tiny_config(hidden_size=30, num_attention_heads=4)
    message = str(error.value)
    assert "hidden_size (30)" in message and "num_attention_heads (4)" in message


def test_config_rules_for_the_encoder_decoder():
    with pytest.raises(ValueError, match="source_vocab_size"):
        tiny_config(source_vocab_size=50)
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        tiny_config(is_encoder_decoder=True, bos_token_id=None)
    with pytest.raises(ValueError, match="head size"):
        tiny_config(hidden_size=18, num_attention_heads=6, position_embedding_type="rotary")


def test_config_defaults_aliases_and_json_round_trip(tmp_path):
    config = tiny_config(is_encoder_decoder=True, num_encoder_layers=3, num_decoder_layers=5, source_vocab_size=70)
    assert config.intermediate_size == 4 * config.hidden_size
    assert (config.encoder_layers, config.decoder_layers) == (3, 5)
    assert (config.num_encoder_layers, config.num_decoder_layers) == (3, 5)
    assert config.decoder_start_token_id == config.bos_token_id == 2
    assert config.tie_word_embeddings and config.encoder_vocab_size == 70
    # the generation cache sizes itself from the decoder depth
    assert config.get_text_config(decoder=True).num_hidden_layers == 5
    assert len(DynamicCache(config=tiny_config(num_hidden_layers=3)).layers) == 3
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(reloaded, TransformerConfig)
    drop = lambda d: {k: v for k, v in d.items() if k != "_name_or_path"}  # noqa: E731
    assert drop(reloaded.to_dict()) == drop(config.to_dict())


# ----------------------------------------------------------------------------------------------
# attention, masks and the language model
# ----------------------------------------------------------------------------------------------


def explicit_attention(x, qkv_weight, qkv_bias, out_weight, out_bias, heads, allowed):
    """softmax(Q K^T / sqrt(d) + M) V written out with plain tensor algebra; M = -inf where not allowed."""
    batch, seq, hidden = x.shape
    d = hidden // heads
    q, k, v = (x @ qkv_weight.T + qkv_bias).split(hidden, dim=-1)
    q, k, v = (t.reshape(batch, seq, heads, d).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    scores = scores + torch.where(allowed, 0.0, float("-inf"))
    out = scores.softmax(-1) @ v
    return out.transpose(1, 2).reshape(batch, seq, hidden) @ out_weight.T + out_bias


def test_self_attention_matches_explicit_reference_with_padding_and_causal_mask():
    model = tiny_lm(std=0.3)
    backbone = model.model
    attention = backbone.layers[0].self_attn
    torch.manual_seed(1)
    x = torch.randn(2, 5, 16)
    padding = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    mask, is_causal = backbone._self_attention_mask(padding, q_len=5, past_len=0, device=x.device)
    with torch.no_grad():
        fused, _ = attention(x, mask, is_causal)
        explicit_path, weights = attention(x, mask, is_causal, output_attentions=True)
    # independent reference mask: key j visible to query i iff j <= i and j is not padding
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    allowed = (causal[None] & padding.bool()[:, None, :])[:, None]  # (batch, 1, q, k)
    reference = explicit_attention(
        x, attention.qkv_proj.weight, attention.qkv_proj.bias, attention.out_proj.weight,
        attention.out_proj.bias, heads=2, allowed=allowed,
    )
    real = padding.bool()  # padding queries have no defined output
    torch.testing.assert_close(fused[real], reference[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explicit_path[real], reference[real], atol=1e-5, rtol=1e-5)
    assert weights.shape == (2, 2, 5, 5)
    assert torch.all(weights[1, :, 2:, :2] == 0), "padding keys must get no attention"
    assert torch.all(weights[0].triu(1) == 0), "future keys must get no attention"
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 5))


@pytest.mark.parametrize("half", ["autocast", "weights"])
def test_half_precision_on_the_cpu_attends_with_the_plain_kernel(half, monkeypatch):
    """PyTorch's CPU flash-attention kernel is several times slower than its plain one in bfloat16 at these sizes,
    and it is the one it picks when there is no attention dropout: bfloat16 on the CPU (under autocast, as
    ``--bf16 true --use_cpu true`` trains, or in bfloat16 weights) attends with the plain kernel, float32 keeps
    the fused choice, and both agree with float32 logits."""
    flash_allowed = []
    fused = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        flash_allowed.append(torch.backends.cuda.flash_sdp_enabled())
        return fused(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model = tiny_lm(std=0.3).eval()
    ids = random_ids(2, 20)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.no_grad():
        reference = model(ids, attention_mask=mask).logits
        assert flash_allowed and all(flash_allowed), "float32 leaves PyTorch its choice of kernel"
        flash_allowed.clear()
        if half == "autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(ids, attention_mask=mask).logits
        else:
            logits = model.to(torch.bfloat16)(ids, attention_mask=mask).logits
    assert flash_allowed and not any(flash_allowed), "bfloat16 on the CPU must not reach the flash kernel"
    real = mask.bool()
    torch.testing.assert_close(logits.float()[real], reference[real], atol=0.1, rtol=0.05)
    assert torch.backends.cuda.flash_sdp_enabled(), "the kernel choice is restored after each call"


def test_causal_prefill_fast_path_matches_explicit_mask():
    model = tiny_lm()
    ids = random_ids(2, 7)
    no_mask = model(ids).logits
    with_mask = model(ids, attention_mask=torch.ones_like(ids)).logits
    explicit = model(ids, output_attentions=True)
    torch.testing.assert_close(no_mask, with_mask)
    torch.testing.assert_close(no_mask, explicit.logits, atol=1e-5, rtol=1e-5)
    assert len(explicit.attentions) == 2 and explicit.attentions[0].shape == (2, 2, 7, 7)


def test_causal_lm_shapes_and_loss_ignore_minus_100():
    model = tiny_lm(std=0.3)
    ids = random_ids(2, 6)
    labels = ids.clone()
    labels[0, 4:] = -100
    labels[1, 2] = -100
    out = model(ids, labels=labels, output_hidden_states=True)
    assert out.logits.shape == (2, 6, VOCAB)
    assert isinstance(out.cache, DynamicCache) and out.cache.get_seq_length() == 6
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (2, 6, 16)
    # position t predicts token t + 1; -100 targets are left out of the mean
    logits, targets = out.logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1)
    keep = targets != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(out.loss, expected)
    # the first label is never a target (nothing predicts it); a counted label is
    changed = labels.clone()
    changed[:, 0] = (labels[:, 0] + 1) % VOCAB
    assert torch.equal(model(ids, labels=changed).loss, out.loss)
    changed[1, 3] = (labels[1, 3] + 1) % VOCAB
    assert not torch.equal(model(ids, labels=changed).loss, out.loss)
    assert model(ids, logits_to_keep=1).logits.shape == (2, 1, VOCAB)
    assert model.train()(ids).cache is None, "no cache is built for a training step"


def test_tied_embeddings_and_scaled_residual_init():
    torch.manual_seed(0)
    model = TransformerForCausalLM(tiny_config(hidden_size=64, num_hidden_layers=4, num_attention_heads=4))
    assert model.lm_head.weight is model.model.embed_tokens.weight
    untied = TransformerForCausalLM(tiny_config(tie_word_embeddings=False))
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight
    block = model.model.layers[0]
    ratio = block.self_attn.out_proj.weight.std() / block.self_attn.qkv_proj.weight.std()
    assert abs(ratio - 1 / math.sqrt(2 * 4)) < 0.05
    assert abs(block.mlp.fc_out.weight.std() / block.mlp.fc_in.weight.std() - 1 / math.sqrt(8)) < 0.05
    assert torch.all(block.self_attn.qkv_proj.bias == 0) and torch.all(block.mlp_norm.weight == 1)
    model.resize_token_embeddings(VOCAB + 8, mean_resizing=False)
    assert model.lm_head.weight is model.model.embed_tokens.weight and model.config.vocab_size == VOCAB + 8
    assert model(torch.tensor([[VOCAB + 5, 4]])).logits.shape == (1, 2, VOCAB + 8)


@pytest.mark.parametrize("position", POSITIONS)
def test_cached_and_uncached_generation_agree(position):
    model = tiny_lm(position, std=0.4)
    ids = random_ids(2, 5, seed=3)
    cached = greedy(model, ids, new=10)
    uncached = greedy(model, ids, new=10, use_cache=False)
    assert torch.equal(cached.sequences, uncached.sequences)
    for a, b in zip(cached.scores, uncached.scores):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # and step by step through the forward pass with an explicit cache
    full = model(cached.sequences).logits
    cache = DynamicCache(config=model.config)
    first = model(cached.sequences[:, :5], cache=cache).logits
    steps = [first] + [model(cached.sequences[:, t : t + 1], cache=cache).logits for t in range(5, 15)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("case", sorted(generation_cases(4)))
@pytest.mark.parametrize("padded", [False, True])
def test_direct_decoding_loop_matches_the_generic_generate_loop(position, case, padded, monkeypatch):
    """generate() calls forward with the new token and the cache directly unless it needs the generic
    loop of transformers; both must give the same tokens (same processors, stopping, padding, RNG use)."""
    model = tiny_lm(position, std=0.4, seed=2)
    if padded:
        ids, mask = left_pad([random_ids(6, seed=7).tolist(), random_ids(3, seed=8).tolist()])
    else:
        ids = random_ids(2, 6, seed=7)
        mask = torch.ones_like(ids)
    kwargs = {"max_new_tokens": 12, "eos_token_id": None, "pad_token_id": 0, **generation_cases(ids.shape[1])[case]}
    direct, generic = direct_and_generic_generate(model, ids, mask, kwargs, monkeypatch)
    assert direct.shape == generic.shape
    assert torch.equal(direct, generic)


def test_generic_loop_is_used_where_the_direct_loop_does_not_apply(monkeypatch):
    """Streamers, dictionaries of outputs and a cache the caller filled go through transformers' loop."""
    model = tiny_lm(std=0.4)
    ids = random_ids(1, 4, seed=3)
    used = generic_loop_calls(monkeypatch)
    common = dict(max_new_tokens=3, do_sample=False, eos_token_id=None, pad_token_id=0)
    plain = model.generate(ids, **common)
    assert used == []
    out = model.generate(ids, return_dict_in_generate=True, output_scores=True, **common)
    assert used == ["generic"] and len(out.scores) == 3 and torch.equal(out.sequences, plain)
    cache = DynamicCache(config=model.config)
    model(ids[:, :2], cache=cache)
    continued = model.generate(ids, cache=cache, **common)
    assert used == ["generic", "generic"] and torch.equal(continued, plain)
    shifted = model.generate(ids, position_ids=torch.arange(4)[None] + 5, **common)
    assert used == ["generic"] * 3 and shifted.shape == plain.shape


@pytest.mark.parametrize("position", POSITIONS)
def test_left_padded_batch_equals_each_prompt_alone(position):
    model = tiny_lm(position, std=0.4, seed=1)
    prompts = [random_ids(7, seed=4).tolist(), random_ids(3, seed=5).tolist(), random_ids(5, seed=6).tolist()]
    ids, mask = left_pad(prompts)
    batch_logits = model(ids, attention_mask=mask).logits
    batch = greedy(model, ids, mask, new=8)
    for row, prompt in enumerate(prompts):
        alone_ids = torch.tensor([prompt])
        real = mask[row].bool()
        torch.testing.assert_close(batch_logits[row, real], model(alone_ids).logits[0], atol=1e-5, rtol=1e-5)
        alone = greedy(model, alone_ids, new=8)
        assert torch.equal(batch.sequences[row, ids.shape[1]:], alone.sequences[0, len(prompt):])
        for step_batch, step_alone in zip(batch.scores, alone.scores):
            torch.testing.assert_close(step_batch[row], step_alone[0], atol=1e-4, rtol=1e-4)
    uncached = greedy(model, ids, mask, new=8, use_cache=False)
    assert torch.equal(batch.sequences, uncached.sequences)


def test_sampling_and_beam_search():
    model = tiny_lm("rotary", std=0.3)
    prompts = [random_ids(6, seed=7).tolist(), random_ids(4, seed=8).tolist()]
    ids, mask = left_pad(prompts)
    five = dict(max_new_tokens=5, min_new_tokens=5, pad_token_id=0)
    torch.manual_seed(0)
    sampled = model.generate(ids, attention_mask=mask, do_sample=True, top_k=10, **five)
    assert sampled.shape == (2, 11)
    beams = model.generate(ids, attention_mask=mask, num_beams=3, num_return_sequences=2, **five)
    assert beams.shape == (4, 11)
    no_cache = model.generate(ids, attention_mask=mask, num_beams=3, num_return_sequences=2, use_cache=False, **five)
    assert torch.equal(beams, no_cache)
    alone = model.generate(torch.tensor([prompts[1]]), num_beams=3, num_return_sequences=2, **five)
    assert torch.equal(beams[2:, 2:], alone)


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", POSITIONS)
def test_too_long_input_raises(position):
    model = tiny_lm(position)
    with pytest.raises(ValueError, match=r"length 49 .*max_position_embeddings=48"):
        model(random_ids(1, 49))
    model(random_ids(1, 48))


def test_generation_past_the_positions_stops_there_with_a_warning(caplog):
    """A length past max_position_embeddings is lowered to it before the first step (with a warning naming it):
    generation ends at the limit with its output instead of failing there (the last token is never fed back,
    so the limit is one more than the positions)."""
    lm, seq2seq = tiny_lm(), tiny_seq2seq()
    with caplog.at_level("WARNING", logger="hfnn.models.modeling_transformer"):
        out = lm.generate(random_ids(1, 40), max_new_tokens=20, do_sample=False, eos_token_id=None)
    assert out.shape[1] == 49 and "past max_position_embeddings=48: it stops at 49, 9 new tokens at most" in caplog.text
    fits = lm.generate(random_ids(1, 40), max_new_tokens=9, do_sample=False, eos_token_id=None)
    assert torch.equal(fits, out)  # the same tokens as asking for what fits
    caplog.clear()
    with caplog.at_level("WARNING", logger="hfnn.models.modeling_transformer"):
        out = seq2seq.generate(random_ids(1, 5), max_length=60, min_length=60, do_sample=False)
    assert out.shape[1] == 49 and "decoder_input_ids of 1 tokens" in caplog.text
    # a length nobody asked for (the library's default of 20 new tokens) is lowered to the positions by transformers
    short = tiny_lm(max_position_embeddings=12)
    short.generation_config.max_length = GenerationConfig().max_length
    assert short.generate(random_ids(1, 4), do_sample=False, eos_token_id=None).shape[1] == 12


def test_out_of_range_token_ids_raise():
    model = tiny_lm()
    ids = random_ids(1, 5)
    ids[0, 3] = VOCAB + 7
    with pytest.raises(ValueError, match=f"token id {VOCAB + 7} .*vocab_size={VOCAB}"):
        model(ids)
    ids[0, 3] = -100
    with pytest.raises(ValueError, match="token id -100"):
        model(ids)
    seq2seq = tiny_seq2seq(source_vocab_size=60)
    seq2seq(random_ids(1, 4, high=60), decoder_input_ids=random_ids(1, 3))  # source ids up to 59 are fine
    with pytest.raises(ValueError, match=f"token id 50 .*vocab_size={VOCAB}"):
        seq2seq(random_ids(1, 4), decoder_input_ids=torch.tensor([[2, 50]]))


def test_bad_attention_mask_shape_raises():
    model = tiny_lm()
    with pytest.raises(ValueError, match="attention_mask"):
        model(random_ids(2, 5), attention_mask=torch.ones(2, 4, dtype=torch.long))


# ----------------------------------------------------------------------------------------------
# sequence classification
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", POSITIONS)
def test_classifier_is_padding_invariant(position):
    torch.manual_seed(0)
    config = tiny_config(position_embedding_type=position, num_labels=3)
    model = randomize_(TransformerForSequenceClassification(config).eval(), std=0.4)
    texts = [random_ids(6, seed=1).tolist(), random_ids(2, seed=2).tolist(), random_ids(1, seed=3).tolist()]
    right = torch.tensor([t + [0] * (6 - len(t)) for t in texts])
    left, left_mask = left_pad(texts)
    from_mask = model(right, attention_mask=(right != 0).long()).logits
    from_pad_id = model(right).logits  # no mask: the last token that is not pad_token_id
    from_left = model(left, attention_mask=left_mask).logits
    for row, text in enumerate(texts):
        alone = model(torch.tensor([text])).logits[0]
        for logits in (from_mask, from_pad_id, from_left):
            torch.testing.assert_close(logits[row], alone, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# encoder-decoder
# ----------------------------------------------------------------------------------------------


def test_seq2seq_forward_loss_and_cross_attention():
    model = tiny_seq2seq(std=0.3)
    assert model.get_encoder() is model.encoder and len(model.encoder.layers) == 3 and len(model.decoder.layers) == 2
    assert model.lm_head.weight is model.decoder.embed_tokens.weight is model.encoder.embed_tokens.weight
    source, source_mask = left_pad([random_ids(6, seed=1).tolist(), random_ids(4, seed=2).tolist()])
    source, source_mask = source.flip(1), source_mask.flip(1)  # right padding
    labels = random_ids(2, 5, seed=3)
    labels[1, 3:] = -100
    out = model(source, attention_mask=source_mask, labels=labels, output_attentions=True)
    assert out.logits.shape == (2, 5, VOCAB)
    assert isinstance(out.cache, EncoderDecoderCache)
    assert len(out.cross_attentions) == 2 and out.cross_attentions[0].shape == (2, 2, 5, 6)
    assert len(out.encoder_attentions) == 3
    assert torch.all(out.cross_attentions[0][1, :, :, 4:] == 0), "padded source positions get no attention"
    torch.testing.assert_close(out.cross_attentions[1].sum(-1), torch.ones(2, 2, 5))
    # decoder inputs: labels shifted right behind decoder_start_token_id, -100 -> pad
    decoder_input_ids = torch.cat([torch.full((2, 1), 2), labels[:, :-1].clamp(min=0)], 1)
    explicit = model(source, attention_mask=source_mask, decoder_input_ids=decoder_input_ids)
    torch.testing.assert_close(explicit.logits, out.logits, atol=1e-5, rtol=1e-5)
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(out.logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, expected)
    summed = model(source, attention_mask=source_mask, labels=labels, num_items_in_batch=torch.tensor(4))
    torch.testing.assert_close(summed.loss, expected * keep.sum() / 4)


@pytest.mark.parametrize("position", POSITIONS)
def test_seq2seq_padded_sources_equal_each_source_alone(position):
    model = tiny_seq2seq(position, std=0.4)
    sources = [random_ids(7, seed=1).tolist(), random_ids(3, seed=2).tolist()]
    for ids, mask in (left_pad(sources), tuple(t.flip(1) for t in left_pad([s[::-1] for s in sources]))):
        batch = greedy(model, ids, mask, new=6)
        for row, source in enumerate(sources):
            alone = greedy(model, torch.tensor([source]), new=6)
            assert torch.equal(batch.sequences[row], alone.sequences[0])
            for a, b in zip(batch.scores, alone.scores):
                torch.testing.assert_close(a[row], b[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("position", POSITIONS)
def test_seq2seq_cached_and_uncached_generation_agree(position):
    model = tiny_seq2seq(position, std=0.4, seed=2)
    ids, mask = left_pad([random_ids(6, seed=4).tolist(), random_ids(4, seed=5).tolist()])
    cached = greedy(model, ids, mask, new=8)
    uncached = greedy(model, ids, mask, new=8, use_cache=False)
    assert torch.equal(cached.sequences, uncached.sequences)
    for a, b in zip(cached.scores, uncached.scores):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    beam = dict(num_beams=3, num_return_sequences=2, max_new_tokens=6, min_new_tokens=6)
    beams = model.generate(ids, attention_mask=mask, **beam)
    assert beams.shape == (4, 7)
    assert torch.equal(beams, model.generate(ids, attention_mask=mask, use_cache=False, **beam))
    with_attention = greedy(model, ids, mask, new=3, output_attentions=True)
    assert with_attention.cross_attentions[-1][0].shape == (2, 2, 1, 6)


def test_seq2seq_separate_source_vocabulary():
    model = tiny_seq2seq(source_vocab_size=60)
    assert model.encoder.embed_tokens.num_embeddings == 60 and model.decoder.embed_tokens.num_embeddings == VOCAB
    assert model.encoder.embed_tokens.weight is not model.decoder.embed_tokens.weight
    assert model.lm_head.weight is model.decoder.embed_tokens.weight
    out = model.generate(random_ids(2, 5, high=60), max_new_tokens=4, min_new_tokens=4)
    assert out.shape == (2, 5)
    with pytest.raises(ValueError, match="is_encoder_decoder"):
        TransformerForConditionalGeneration(tiny_config())
    with pytest.raises(ValueError, match="TransformerForConditionalGeneration"):
        TransformerModel(model.config)


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------


def test_activation_checkpointing_gives_the_same_gradients():
    def gradients(checkpointing):
        torch.manual_seed(0)
        config = tiny_config(dropout=0.1, attention_dropout=0.1, position_embedding_type="rotary")
        model = TransformerForCausalLM(config)
        if checkpointing:
            model.activation_checkpointing_enable()
        model.train()
        calls = []
        model.model.layers[0].mlp.register_forward_hook(lambda *args: calls.append(1))
        torch.manual_seed(1)
        ids = random_ids(3, 9)
        model(ids, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}, len(calls)

    plain, plain_calls = gradients(False)
    checkpointed, checkpointed_calls = gradients(True)
    assert (plain_calls, checkpointed_calls) == (1, 2), "checkpointing recomputes the block in the backward pass"
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], **tolerance(depth=2), msg=name)


def test_seq2seq_trains():
    torch.manual_seed(0)
    model = TransformerForConditionalGeneration(tiny_config(is_encoder_decoder=True, hidden_size=32)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    source = random_ids(4, 6)
    labels = source.flip(1)  # learn to reverse
    losses = []
    for _ in range(40):
        loss = model(source, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]


# ----------------------------------------------------------------------------------------------
# saving, Auto classes, pipelines, remote code
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", POSITIONS)
def test_save_load_round_trip_gives_identical_outputs(position, tmp_path):
    lm = tiny_lm(position)
    lm.save_pretrained(tmp_path / "lm")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "lm").eval()
    assert type(reloaded) is TransformerForCausalLM
    assert reloaded.lm_head.weight is reloaded.model.embed_tokens.weight
    ids = random_ids(2, 9)
    # Same weights, but loaded ones may sit at another memory alignment, where kernels may round differently.
    torch.testing.assert_close(reloaded(ids).logits, lm(ids).logits, **tolerance(depth=2))
    backbone = AutoModel.from_pretrained(tmp_path / "lm")
    assert type(backbone) is TransformerModel

    seq2seq = tiny_seq2seq(position)
    seq2seq.save_pretrained(tmp_path / "s2s")
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "s2s").eval()
    assert type(reloaded) is TransformerForConditionalGeneration
    decoder_ids = random_ids(2, 4, seed=1)
    expected = seq2seq(ids, decoder_input_ids=decoder_ids).logits
    torch.testing.assert_close(reloaded(ids, decoder_input_ids=decoder_ids).logits, expected, **tolerance(depth=2))

    torch.manual_seed(0)
    classifier = randomize_(TransformerForSequenceClassification(tiny_config(position_embedding_type=position)).eval())
    classifier.save_pretrained(tmp_path / "cls")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls").eval()
    torch.testing.assert_close(reloaded(ids).logits, classifier(ids).logits, **tolerance(depth=2))


def test_remote_code_load_without_hfnn_gives_identical_outputs(tmp_path):
    lm = tiny_lm("rotary")
    seq2seq = tiny_seq2seq("sinusoidal")
    lm.save_pretrained(tmp_path / "lm")
    seq2seq.save_pretrained(tmp_path / "s2s")
    ids = random_ids(2, 6)
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    (tmp_path / "ids.json").write_text(json.dumps({"ids": ids.tolist(), "mask": mask.tolist()}))
    out = run_without_hfnn(
        """
        import json, torch
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM
        data = json.load(open("ids.json"))
        ids, mask = torch.tensor(data["ids"]), torch.tensor(data["mask"])
        lm = AutoModelForCausalLM.from_pretrained("lm", trust_remote_code=True).eval()
        s2s = AutoModelForSeq2SeqLM.from_pretrained("s2s", trust_remote_code=True).eval()
        assert type(lm).__module__.startswith("transformers_modules"), type(lm).__module__
        with torch.no_grad():
            logits = lm(ids, attention_mask=mask).logits
            s2s_logits = s2s(ids, attention_mask=mask, decoder_input_ids=ids[:, :3]).logits
        gen = lm.generate(ids, attention_mask=mask, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=0)
        s2s_gen = s2s.generate(ids, attention_mask=mask, max_new_tokens=4, min_new_tokens=4, num_beams=2)
        print(json.dumps({"logits": logits.tolist(), "s2s_logits": s2s_logits.tolist(),
                          "gen": gen.tolist(), "s2s_gen": s2s_gen.tolist()}))
        """,
        cwd=tmp_path,
    )
    result = json.loads(out.strip().splitlines()[-1])
    expected = lm(ids, attention_mask=mask).logits
    torch.testing.assert_close(torch.tensor(result["logits"]), expected, **tolerance(depth=2))
    expected = seq2seq(ids, attention_mask=mask, decoder_input_ids=ids[:, :3]).logits
    torch.testing.assert_close(torch.tensor(result["s2s_logits"]), expected, **tolerance(depth=2))
    gen = lm.generate(ids, attention_mask=mask, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=0)
    assert result["gen"] == gen.tolist()
    s2s_gen = seq2seq.generate(ids, attention_mask=mask, max_new_tokens=4, min_new_tokens=4, num_beams=2)
    assert result["s2s_gen"] == s2s_gen.tolist()


def test_text_generation_pipeline_from_a_saved_folder(tmp_path):
    from hfnn.data.tokenization import train_tokenizer

    text = "ROMEO:\nBut soft, what light through yonder window breaks?\nJULIET:\nAy me!\n"
    tokenizer = train_tokenizer([text], kind="char", padding_side="left")
    torch.manual_seed(0)
    config = tiny_config(
        vocab_size=len(tokenizer), position_embedding_type="rotary", pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    TransformerForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    generator = pipeline("text-generation", model=str(tmp_path))
    out = generator("ROMEO:", max_new_tokens=8, min_new_tokens=8, do_sample=True, top_k=5)
    assert out[0]["generated_text"].startswith("ROMEO:") and len(out[0]["generated_text"]) > len("ROMEO:")
    batch = generator(["ROMEO:", "JULIET:"], max_new_tokens=5, do_sample=False)
    alone = generator("ROMEO:", max_new_tokens=5, do_sample=False)
    assert batch[0][0]["generated_text"] == alone[0]["generated_text"]
    assert batch[1][0]["generated_text"].startswith("JULIET:")
