"""The RNN encoder–decoder: configuration, loss, attention weights, generation with the state cache, padding."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

import hfnn  # noqa: F401  (registers the Auto classes)
from hfnn.models.configuration_rnn_seq2seq import RnnSeq2SeqConfig
from hfnn.models.modeling_rnn_seq2seq import (
    RnnSeq2SeqCache,
    RnnSeq2SeqForConditionalGeneration,
    RnnSeq2SeqModel,
    shift_tokens_right,
)
from tests.helpers import randomize_, run_without_hfnn, tolerance

pytestmark = pytest.mark.numerics

RNN_TYPES = ["gru", "lstm", "rnn_tanh"]
# (attention, luong_score, input_feeding): every decoder variant
VARIANTS = [
    ("none", "general", False),
    ("bahdanau", "general", False),
    ("luong", "general", True),
    ("luong", "dot", True),
    ("luong", "dot", False),
]
SRC_VOCAB, TGT_VOCAB = 30, 26


def tiny_config(**overrides):
    fields = dict(
        source_vocab_size=SRC_VOCAB, vocab_size=TGT_VOCAB, hidden_size=16, embedding_size=8,
        num_encoder_layers=2, num_decoder_layers=2, dropout=0.0,
    )
    fields.update(overrides)
    return RnnSeq2SeqConfig(**fields)


def tiny_model(seed=0, std=0.5, **overrides):
    torch.manual_seed(seed)
    model = RnnSeq2SeqForConditionalGeneration(tiny_config(**overrides)).eval()
    return randomize_(model, std=std, seed=seed)


def variant_kwargs(attention, luong_score, input_feeding):
    return dict(attention=attention, luong_score=luong_score, input_feeding=input_feeding)


def source_batch():
    """Three sources of lengths 7, 4 (right-padded) and 5 (left-padded); ids >= 4 are ordinary tokens."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(4, SRC_VOCAB, (3, 7), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    mask[2, :2] = 0
    ids[mask == 0] = 0
    return ids, mask


# ----------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "field, value",
    [
        ("source_vocab_size", 0),
        ("vocab_size", -1),
        ("hidden_size", 0),
        ("embedding_size", 0),
        ("num_encoder_layers", 0),
        ("num_decoder_layers", 0),
        ("rnn_type", "transformer"),
        ("attention", "dot"),
        ("luong_score", "concat"),
        ("dropout", 1.0),
        ("pad_token_id", TGT_VOCAB),
        ("eos_token_id", -1),
        ("decoder_start_token_id", TGT_VOCAB),
        ("max_length", 0),
        ("bidirectional_encoder", "yes"),
        ("is_encoder_decoder", False),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_config_rejects_odd_hidden_size_with_bidirectional_encoder_and_misplaced_input_feeding():
    with pytest.raises(ValueError, match="hidden_size"):
        tiny_config(hidden_size=15)
    tiny_config(hidden_size=15, bidirectional_encoder=False)
    with pytest.raises(ValueError, match="input_feeding"):
        tiny_config(attention="bahdanau", input_feeding=True)


def test_config_defaults_and_aliases(tmp_path):
    config = tiny_config(attention="luong")
    assert config.is_encoder_decoder and config.decoder_start_token_id == config.bos_token_id == 2
    assert config.input_feeding is True and tiny_config(attention="bahdanau").input_feeding is False
    assert config.num_hidden_layers == config.num_decoder_layers == 2
    assert tiny_config(num_hidden_layers=3).num_decoder_layers == 3
    config = tiny_config(max_length=12, rnn_type="lstm")
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, RnnSeq2SeqConfig)
    assert (loaded.rnn_type, loaded.max_length, loaded.source_vocab_size) == ("lstm", 12, SRC_VOCAB)
    # max_length is the model's default generation length
    assert RnnSeq2SeqForConditionalGeneration(config).generation_config.max_length == 12


# ------------------------------------------------------------------------------------------- forward


@pytest.mark.parametrize("rnn_type", RNN_TYPES)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v)))
def test_forward_shapes_and_loss_ignore_minus_100(variant, rnn_type):
    model = tiny_model(rnn_type=rnn_type, **variant_kwargs(*variant))
    ids, mask = source_batch()
    labels = torch.randint(4, TGT_VOCAB, (3, 5), generator=torch.Generator().manual_seed(2))
    labels[0, 3:] = -100
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (3, 5, TGT_VOCAB)
    assert out.cache is None  # training never returns a cache
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(out.logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, expected)
    # teacher forcing: the same logits as feeding the shifted labels explicitly
    decoder_input_ids = shift_tokens_right(labels, 0, 2)
    assert decoder_input_ids[0].tolist()[:1] == [2] and 0 in decoder_input_ids[0].tolist()
    explicit = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    torch.testing.assert_close(explicit, out.logits)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_trainer_style_loss_with_num_items_in_batch():
    model = tiny_model()
    ids, mask = source_batch()
    labels = torch.randint(4, TGT_VOCAB, (3, 4))
    labels[1, 2:] = -100
    mean = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    summed = model(input_ids=ids, attention_mask=mask, labels=labels, num_items_in_batch=20).loss
    torch.testing.assert_close(summed, mean * (labels != -100).sum() / 20)


def test_out_of_range_ids_raise_naming_the_vocabulary():
    model = tiny_model()
    with pytest.raises(ValueError, match=f"{SRC_VOCAB}.*source_vocab_size"):
        model(input_ids=torch.tensor([[5, SRC_VOCAB]]), decoder_input_ids=torch.tensor([[2]]))
    with pytest.raises(ValueError, match=f"{TGT_VOCAB + 3}.*vocab_size"):
        model(input_ids=torch.tensor([[5, 6]]), decoder_input_ids=torch.tensor([[2, TGT_VOCAB + 3]]))
    with pytest.raises(ValueError, match="at least one token"):
        model(input_ids=torch.tensor([[5, 6]]), attention_mask=torch.tensor([[0, 0]]),
              decoder_input_ids=torch.tensor([[2]]))


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v[0] != "none"], ids=lambda v: "-".join(map(str, v)))
def test_cross_attention_weights_are_distributions_over_real_source_tokens(variant):
    model = tiny_model(**variant_kwargs(*variant))
    ids, mask = source_batch()
    decoder_input_ids = torch.tensor([[2, 5, 6, 7]] * 3)
    out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids, output_attentions=True)
    (weights,) = out.cross_attentions
    assert weights.shape == (3, 1, 4, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 1, 4))
    padded = (mask == 0)[:, None, None, :].expand_as(weights)
    assert bool((weights[padded] == 0).all())
    assert bool((weights[~padded] > 0).all())
    # None without the flag; attention="none" has no weights to return
    assert model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).cross_attentions is None


def test_attention_none_sees_only_the_final_encoder_state():
    """Seed item 8: with the fixed context vector, changing a middle source token matters only through it."""
    model = tiny_model(attention="none", bidirectional_encoder=False, num_encoder_layers=1)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    decoder_input_ids = torch.tensor([[2, 5, 6]])
    out = model(input_ids=ids, decoder_input_ids=decoder_input_ids, output_attentions=True)
    assert out.cross_attentions is None
    # Replace the encoder states by ones that agree only at the last position: the output does not change.
    states = out.encoder_last_hidden_state.clone()
    states[:, :-1] = torch.randn_like(states[:, :-1])
    again = model(encoder_outputs=(states,), decoder_input_ids=decoder_input_ids).logits
    torch.testing.assert_close(again, out.logits)
    attentive = tiny_model(attention="bahdanau", bidirectional_encoder=False, num_encoder_layers=1)
    base = attentive(input_ids=ids, decoder_input_ids=decoder_input_ids)
    states = base.encoder_last_hidden_state.clone()
    states[:, :-1] = torch.randn_like(states[:, :-1])
    assert not torch.allclose(attentive(encoder_outputs=(states,), decoder_input_ids=decoder_input_ids).logits,
                              base.logits)


# ----------------------------------------------------------------------------------------- padding


@pytest.mark.parametrize("rnn_type", RNN_TYPES)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v)))
def test_padded_source_batch_gives_each_source_its_own_output(variant, rnn_type):
    model = tiny_model(rnn_type=rnn_type, **variant_kwargs(*variant))
    ids, mask = source_batch()
    decoder_input_ids = torch.tensor([[2, 5, 6, 7]] * 3)
    batch = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids, output_attentions=True)
    generated = model.generate(ids, attention_mask=mask, max_new_tokens=6, eos_token_id=None)
    for row in range(3):
        alone_ids = ids[row : row + 1, mask[row].bool()]
        alone = model(input_ids=alone_ids, decoder_input_ids=decoder_input_ids[:1], output_attentions=True)
        torch.testing.assert_close(batch.logits[row], alone.logits[0], atol=1e-5, rtol=1e-5)
        if batch.cross_attentions is not None:
            torch.testing.assert_close(
                batch.cross_attentions[0][row, :, :, mask[row].bool()], alone.cross_attentions[0][0],
                atol=1e-6, rtol=1e-5
            )
        assert generated[row].tolist() == model.generate(alone_ids, max_new_tokens=6, eos_token_id=None)[0].tolist()


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v)))
def test_left_padded_decoder_prompt_leaves_the_state_unchanged(variant):
    model = tiny_model(rnn_type="lstm", **variant_kwargs(*variant))
    ids = torch.tensor([[5, 6, 7, 8]])
    plain = model(input_ids=ids, decoder_input_ids=torch.tensor([[2, 9, 10]])).logits
    padded = model(
        input_ids=ids, decoder_input_ids=torch.tensor([[0, 0, 2, 9, 10]]),
        decoder_attention_mask=torch.tensor([[0, 0, 1, 1, 1]]),
    ).logits
    torch.testing.assert_close(padded[:, 2:], plain, atol=1e-6, rtol=1e-5)


# -------------------------------------------------------------------------------------- generation


@pytest.mark.parametrize("num_beams", [1, 3], ids=["greedy", "beam"])
@pytest.mark.parametrize("rnn_type", RNN_TYPES)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v)))
def test_cached_and_uncached_generation_agree(variant, rnn_type, num_beams):
    model = tiny_model(rnn_type=rnn_type, std=0.4, **variant_kwargs(*variant))
    ids, mask = source_batch()
    kwargs = dict(
        attention_mask=mask, max_new_tokens=7, num_beams=num_beams, output_scores=True,
        return_dict_in_generate=True, eos_token_id=3,
    )
    cached = model.generate(ids, use_cache=True, **kwargs)
    uncached = model.generate(ids, use_cache=False, **kwargs)
    assert isinstance(cached.cache, RnnSeq2SeqCache) and uncached.cache is None
    assert cached.sequences.tolist() == uncached.sequences.tolist()
    assert len(cached.scores) == len(uncached.scores)
    for a, b in zip(cached.scores, uncached.scores):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    if num_beams > 1:
        torch.testing.assert_close(cached.sequences_scores, uncached.sequences_scores, atol=1e-5, rtol=1e-5)
    # the cache holds one recurrent state per sequence, batch first: O(1) memory in the output length
    assert cached.cache.hidden.shape == (3 * num_beams, 2, 16)


def test_generation_steps_match_teacher_forced_forward():
    """Greedy decoding picks the argmax of the forward pass on its own output (and scores are its log-probs)."""
    model = tiny_model(std=0.4)
    ids, mask = source_batch()
    out = model.generate(ids, attention_mask=mask, max_new_tokens=5, eos_token_id=None, output_logits=True,
                         return_dict_in_generate=True)
    logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=out.sequences[:, :-1]).logits
    torch.testing.assert_close(torch.stack(out.logits, dim=1), logits, atol=1e-5, rtol=1e-5)
    assert out.sequences[:, 1:].tolist() == logits.argmax(-1).tolist()


def test_beam_search_returns_ranked_sequences_and_attention_per_step():
    model = tiny_model(std=0.4, attention="bahdanau")
    ids, mask = source_batch()
    out = model.generate(
        ids, attention_mask=mask, num_beams=4, num_return_sequences=3, max_new_tokens=6, eos_token_id=3,
        output_scores=True, output_attentions=True, return_dict_in_generate=True,
    )
    assert out.sequences.shape[0] == 9
    scores = out.sequences_scores.view(3, 3)
    assert bool((scores[:, :-1] >= scores[:, 1:]).all())
    assert len({tuple(s) for s in out.sequences[:3].tolist()}) == 3
    assert out.cross_attentions[0][0].shape == (12, 1, 1, 7)  # (batch * beams, 1, step, src_len)


def test_cache_reorder_repeat_and_select_work_batch_first():
    hidden = torch.arange(3 * 2 * 4, dtype=torch.float).view(3, 2, 4)
    cache = RnnSeq2SeqCache(hidden=hidden.clone(), cell=hidden.clone() + 100, feed=hidden[:, 0].clone(), seq_length=5)
    cache.reorder_cache(torch.tensor([2, 2, 0]))
    assert cache.hidden[:, 0, 0].tolist() == [16.0, 16.0, 0.0] and cache.cell[0, 0, 0].item() == 116.0
    cache.batch_repeat_interleave(2)
    assert cache.hidden.shape == (6, 2, 4) and cache.feed.shape == (6, 4)
    cache.batch_select_indices(torch.tensor([0, 5]))
    assert cache.hidden[:, 0, 0].tolist() == [16.0, 0.0]
    assert cache.get_seq_length() == 5 and cache.batch_size == 2
    with pytest.raises(NotImplementedError):
        cache.crop(1)


# ---------------------------------------------------------------------------------- weights, saving


def test_recurrent_weights_are_initialised_orthogonally():
    torch.manual_seed(0)
    model = RnnSeq2SeqForConditionalGeneration(tiny_config(rnn_type="gru"))
    for name, param in model.named_parameters():
        if "weight_hh" in name:
            hidden = param.shape[1]
            for block in param.detach().split(hidden):
                torch.testing.assert_close(block @ block.T, torch.eye(hidden), atol=1e-5, rtol=0)
        elif "rnn.bias" in name:
            assert bool((param == 0).all()), name
    lstm = RnnSeq2SeqForConditionalGeneration(tiny_config(rnn_type="lstm"))
    bias = lstm.model.decoder.rnn.bias_hh_l0.detach()
    assert bias[16:32].eq(1).all() and bias[:16].eq(0).all()  # forget gate


def test_tied_embeddings_share_one_matrix_and_survive_reloading(tmp_path):
    model = tiny_model(tie_word_embeddings=True)
    assert model.lm_head.weight is model.model.decoder.embed_tokens.weight
    assert model.output_projection is not None  # hidden 16 -> embedding 8
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.model.decoder.embed_tokens.weight
    untied = tiny_model(tie_word_embeddings=False)
    assert untied.lm_head.weight is not untied.model.decoder.embed_tokens.weight


@pytest.mark.parametrize("variant", VARIANTS[:3], ids=lambda v: v[0])
def test_save_and_reload_gives_identical_outputs(tmp_path, variant):
    model = tiny_model(rnn_type="lstm", **variant_kwargs(*variant))
    ids, mask = source_batch()
    decoder_input_ids = torch.tensor([[2, 5, 6]] * 3)
    expected = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is RnnSeq2SeqForConditionalGeneration
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    # Same weights; loaded tensors may sit at other memory alignments (safetensors), so kernels may round differently.
    reloaded = loaded(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    torch.testing.assert_close(reloaded, expected, **tolerance(depth=2))
    kwargs = dict(attention_mask=mask, max_new_tokens=5, num_beams=2)
    assert loaded.generate(ids, **kwargs).tolist() == model.generate(ids, **kwargs).tolist()
    backbone = AutoModel.from_pretrained(tmp_path)
    assert type(backbone) is RnnSeq2SeqModel
    hidden = backbone(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).last_hidden_state
    assert hidden.shape == (3, 3, 16)


def test_encoder_is_reachable_and_returns_base_model_output():
    model = tiny_model()
    ids, mask = source_batch()
    encoder_out = model.get_encoder()(input_ids=ids, attention_mask=mask, return_dict=True)
    assert encoder_out.last_hidden_state.shape == (3, 7, 16)
    assert bool((encoder_out.last_hidden_state[mask == 0] == 0).all())  # padding never enters a state
    full = model(input_ids=ids, attention_mask=mask, decoder_input_ids=torch.tensor([[2]] * 3)).logits
    reused = model(encoder_outputs=encoder_out, attention_mask=mask, decoder_input_ids=torch.tensor([[2]] * 3)).logits
    torch.testing.assert_close(full, reused)


def test_loss_falls_when_learning_to_reverse_short_sequences():
    torch.manual_seed(0)
    model = RnnSeq2SeqForConditionalGeneration(tiny_config(hidden_size=32, attention="bahdanau"))
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, TGT_VOCAB, (32, 5), generator=gen)
    labels = torch.cat([ids.flip(1), torch.full((32, 1), 3)], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(60):
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_remote_code_load_without_hfnn_gives_identical_logits_and_generations(tmp_path):
    model = tiny_model(rnn_type="gru", attention="luong", std=0.4)
    ids, mask = source_batch()
    decoder_input_ids = torch.tensor([[2, 5, 6]] * 3)
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "inputs.json").write_text(json.dumps({"ids": ids.tolist(), "mask": mask.tolist()}))
    out = run_without_hfnn(
        """
        import json, torch
        from transformers import AutoModelForSeq2SeqLM
        torch.set_num_threads(1)
        model = AutoModelForSeq2SeqLM.from_pretrained("model", trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        inputs = json.load(open("inputs.json"))
        ids, mask = torch.tensor(inputs["ids"]), torch.tensor(inputs["mask"])
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=torch.tensor([[2, 5, 6]] * 3)).logits
        greedy = model.generate(ids, attention_mask=mask, max_new_tokens=6)
        beam = model.generate(ids, attention_mask=mask, max_new_tokens=6, num_beams=3)
        print(json.dumps({"logits": logits.tolist(), "greedy": greedy.tolist(), "beam": beam.tolist()}))
        """,
        cwd=tmp_path,
    )
    result = json.loads(out.strip().splitlines()[-1])
    expected = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    torch.testing.assert_close(torch.tensor(result["logits"]), expected, **tolerance(depth=2))
    assert result["greedy"] == model.generate(ids, attention_mask=mask, max_new_tokens=6).tolist()
    assert result["beam"] == model.generate(ids, attention_mask=mask, max_new_tokens=6, num_beams=3).tolist()


@pytest.mark.parametrize("attention", ["bahdanau", "luong", "none"])
def test_lstm_trains_and_generates_under_cpu_bfloat16_autocast(attention):
    """``--bf16`` on a CPU with an LSTM encoder-decoder: the recurrences run in float32 under autocast
    (oneDNN has no bf16 LSTM on CPUs without native bf16); the loss stays close to float32's."""
    model = tiny_model(seed=3, std=0.3, rnn_type="lstm", attention=attention)
    ids, mask = source_batch()
    labels = torch.randint(4, TGT_VOCAB, (3, 5), generator=torch.Generator().manual_seed(2))
    reference = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, num_beams=2)
    loss.backward()
    assert abs(float(loss) - float(reference)) < 0.05 * float(reference)
    assert model.model.encoder.embed_tokens.weight.grad.abs().sum() > 0
    assert generated.shape[0] == 3
