"""The RNN family: configuration, the seed's recurrence, generation with the state cache, padding."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, pipeline

from hfnn import RnnConfig, RnnForCausalLM, RnnForSequenceClassification, RnnModel
from hfnn.models.modeling_rnn import RnnStateCache
from tests.helpers import (
    direct_and_generic_generate,
    generation_cases,
    generic_loop_calls,
    randomize_,
    run_without_hfnn,
    tolerance,
)

pytestmark = pytest.mark.numerics

RNN_TYPES = ["rnn_tanh", "rnn_relu", "gru", "lstm"]


def tiny_config(**overrides):
    fields = dict(vocab_size=24, hidden_size=12, embedding_size=8, num_hidden_layers=2, dropout=0.0)
    fields.update(overrides)
    return RnnConfig(**fields)


def tiny_lm(rnn_type="gru", seed=0, **overrides):
    torch.manual_seed(seed)
    model = RnnForCausalLM(tiny_config(rnn_type=rnn_type, **overrides)).eval()
    # Scaled down from std 0.5 so that greedy decoding does not collapse onto one token.
    return randomize_(model, std=0.4, seed=seed)


@pytest.mark.parametrize(
    "field, value",
    [
        ("vocab_size", 0),
        ("hidden_size", -3),
        ("num_hidden_layers", 0),
        ("embedding_size", 0),
        ("rnn_type", "transformer"),
        ("pooling", "median"),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("pad_token_id", 24),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_config_round_trips_through_auto_config(tmp_path):
    config = tiny_config(rnn_type="lstm", tie_word_embeddings=True)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, RnnConfig)
    assert (loaded.rnn_type, loaded.embedding_size, loaded.tie_word_embeddings) == ("lstm", 8, True)


def test_language_model_cannot_be_bidirectional():
    with pytest.raises(ValueError, match="bidirectional"):
        RnnForCausalLM(tiny_config(bidirectional=True))


@pytest.mark.parametrize("rnn_type", RNN_TYPES)
def test_shapes_and_loss_is_next_token_cross_entropy(rnn_type):
    model = tiny_lm(rnn_type)
    ids = torch.randint(4, 24, (3, 9))
    labels = ids.clone()
    labels[0, :4] = -100
    out = model(ids, labels=labels)
    assert out.logits.shape == (3, 9, 24)
    expected = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, 24), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, expected)


def test_rnn_tanh_is_the_seed_recurrence():
    """h_i = tanh(W_x x_i + W_h h_{i-1} + b), computed by hand, equals the model's hidden states."""
    model = RnnModel(tiny_config(rnn_type="rnn_tanh", num_hidden_layers=1)).eval()
    randomize_(model, std=0.3)
    ids = torch.randint(4, 24, (2, 6))
    got = model(ids, use_cache=False).last_hidden_state
    rnn = model.rnn
    x = model.embed_tokens(ids)
    h = torch.zeros(2, 12)
    expected = []
    for i in range(6):
        h = torch.tanh(x[:, i] @ rnn.weight_ih_l0.T + h @ rnn.weight_hh_l0.T + rnn.bias_ih_l0 + rnn.bias_hh_l0)
        expected.append(h)
    torch.testing.assert_close(got, torch.stack(expected, dim=1))


@pytest.mark.parametrize("rnn_type", RNN_TYPES)
def test_incremental_state_gives_the_same_logits_as_the_full_sequence(rnn_type):
    model = tiny_lm(rnn_type)
    ids = torch.randint(4, 24, (2, 10))
    full = model(ids, use_cache=False).logits
    cache = RnnStateCache()
    first = model(ids[:, :6], cache=cache, use_cache=True)
    steps = [first.logits]
    for t in range(6, 10):
        steps.append(model(ids[:, t : t + 1], cache=first.cache, use_cache=True).logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.get_seq_length() == 10
    assert cache.states[0].shape == (2, 2, 12)  # batch first, fixed size


@pytest.mark.parametrize("rnn_type", RNN_TYPES)
@pytest.mark.parametrize("mode", ["greedy", "beam", "sample"])
def test_cached_and_uncached_generation_agree(rnn_type, mode):
    model = tiny_lm(rnn_type, seed=1)
    ids = torch.tensor([[5, 6, 7, 8], [0, 0, 9, 10]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    kwargs = dict(max_new_tokens=8, output_scores=True, return_dict_in_generate=True, eos_token_id=None, pad_token_id=0)
    if mode == "beam":
        kwargs.update(num_beams=3, do_sample=False)
    elif mode == "sample":
        kwargs.update(do_sample=True, top_k=5)
    else:
        kwargs.update(do_sample=False)
    torch.manual_seed(7)
    cached = model.generate(ids, attention_mask=mask, use_cache=True, **kwargs)
    torch.manual_seed(7)
    uncached = model.generate(ids, attention_mask=mask, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    for a, b in zip(cached.scores, uncached.scores):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("rnn_type", RNN_TYPES)
def test_left_padded_batch_generates_what_each_prompt_generates_alone(rnn_type):
    model = tiny_lm(rnn_type, seed=2)
    assert model.model.rnn.bias_hh_l0.abs().sum() > 0  # trained-like, non-zero biases
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    batch = model.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, eos_token_id=None,
                           pad_token_id=0)
    for row, prompt in enumerate(prompts):
        alone = model.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False, eos_token_id=None,
                               pad_token_id=0)
        assert batch[row, width:].tolist() == alone[0, len(prompt):].tolist()


@pytest.mark.parametrize("rnn_type", ["rnn_tanh", "gru", "lstm"])
@pytest.mark.parametrize("case", sorted(generation_cases(4)))
@pytest.mark.parametrize("tie", [False, True])
def test_direct_decoding_loop_matches_the_generic_generate_loop(rnn_type, case, tie, monkeypatch):
    """generate() feeds new tokens straight through the recurrence unless it needs the generic loop
    of transformers; both must give the same tokens (same processors, stopping, padding, RNG use)."""
    model = tiny_lm(rnn_type, seed=5, tie_word_embeddings=tie, embedding_size=6 if tie else 8)
    ids = torch.tensor([[5, 6, 7, 8], [0, 0, 9, 10], [0, 11, 12, 13]])
    mask = (ids != 0).long()
    kwargs = {"max_new_tokens": 12, "eos_token_id": None, "pad_token_id": 0, **generation_cases(ids.shape[1])[case]}
    direct, generic = direct_and_generic_generate(model, ids, mask, kwargs, monkeypatch)
    assert direct.shape == generic.shape
    assert torch.equal(direct, generic)


def test_direct_decoding_loop_stops_early_when_every_row_has_finished():
    model = tiny_lm("gru", seed=6)
    ids = torch.tensor([[5, 6, 7]])
    first = model.generate(ids, max_new_tokens=1, do_sample=False, eos_token_id=None, pad_token_id=0)
    eos = int(first[0, -1])  # the first greedy token, used as the end-of-sequence token
    out = model.generate(ids, max_new_tokens=20, do_sample=False, eos_token_id=eos, pad_token_id=0)
    assert out.tolist() == [[5, 6, 7, eos]]


def test_generic_loop_is_used_where_the_direct_loop_does_not_apply(monkeypatch):
    """Streamers, dictionaries of outputs and a cache the caller filled go through transformers' loop."""
    model = tiny_lm("lstm", seed=7)
    ids = torch.tensor([[5, 6, 7]])
    used = generic_loop_calls(monkeypatch)
    common = dict(max_new_tokens=3, do_sample=False, eos_token_id=None, pad_token_id=0)
    model.generate(ids, **common)
    assert used == []
    out = model.generate(ids, return_dict_in_generate=True, output_scores=True, **common)
    assert used == ["generic"] and len(out.scores) == 3
    cache = model(ids, use_cache=True).cache
    model.generate(torch.tensor([[5, 6, 7, 8]]), cache=cache, **common)
    assert used == ["generic", "generic"]
    empty = RnnStateCache()  # an empty cache of the caller's takes the direct loop and receives the state
    model.generate(ids, cache=empty, **common)
    assert used == ["generic", "generic"] and empty.states is not None and empty.get_seq_length() == 5


def test_mask_with_holes_skips_the_masked_tokens():
    model = tiny_lm("lstm", seed=3)
    ids = torch.tensor([[5, 6, 0, 7, 8]])
    holes = model(ids, attention_mask=torch.tensor([[1, 1, 0, 1, 1]]), use_cache=True)
    dense = model(torch.tensor([[5, 6, 7, 8]]), use_cache=True)
    torch.testing.assert_close(holes.logits[:, -1], dense.logits[:, -1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(holes.cache.states[1], dense.cache.states[1], atol=1e-5, rtol=1e-5)


SCAN_CASES = [("rnn_tanh", True, 2, True), ("rnn_relu", False, 1, False), ("gru", True, 1, True),
              ("lstm", True, 2, True), ("lstm", False, 2, False)]


@pytest.mark.parametrize("rnn_type,bidirectional,layers,with_state", SCAN_CASES,
                         ids=["-".join(map(str, case)) for case in SCAN_CASES])
def test_traced_recurrence_runs_each_row_as_its_tokens_alone(rnn_type, bidirectional, layers, with_state):
    """run_masked_scan (what export and compile run): for every cell, direction and stack, each row's outputs at its
    tokens and its final state (an LSTM's c too) are those of the torch module run on that row's tokens alone, from
    that row's initial state, whatever its padding (left, right, holes, none at all); padding outputs 0."""
    from hfnn.models.recurrence import make_rnn
    from hfnn.models.recurrent_cells import run_masked_scan

    torch.manual_seed(0)
    rnn = make_rnn(rnn_type, 5, 7, layers, 0.0, bidirectional).eval()
    randomize_(rnn, std=0.5)
    inputs = torch.randn(5, 6, 5)
    mask = torch.ones(5, 6, dtype=torch.bool)
    mask[0, :2] = mask[1, 4:] = mask[2, [1, 3]] = mask[3] = False  # left, right, holes, nothing; row 4 full
    directions = layers * (2 if bidirectional else 1)
    parts = [torch.randn(directions, 5, 7) for _ in range(2 if rnn_type == "lstm" else 1)] if with_state else None
    state = None if parts is None else tuple(parts) if rnn_type == "lstm" else parts[0]
    with torch.no_grad():
        output, final, below = run_masked_scan(rnn, inputs, mask, state)
    final = final if isinstance(final, tuple) else (final,)
    assert len(below) == layers - 1 and torch.equal(output[~mask], torch.zeros_like(output[~mask]))
    for row in range(5):
        start = None if parts is None else tuple(p[:, row : row + 1] for p in parts)
        if not mask[row].any():  # no token: the state it was given (zeros without one)
            for got, given in zip(final, start or [torch.zeros(directions, 1, 7)] * len(final)):
                torch.testing.assert_close(got[:, row : row + 1], given)
            continue
        with torch.no_grad():
            alone, alone_final = rnn(inputs[row : row + 1, mask[row]], None if start is None else
                                     start if rnn_type == "lstm" else start[0])
        torch.testing.assert_close(output[row, mask[row]], alone[0], atol=1e-5, rtol=1e-5)
        for got, expected in zip(final, alone_final if rnn_type == "lstm" else (alone_final,)):
            torch.testing.assert_close(got[:, row : row + 1], expected, atol=1e-5, rtol=1e-5)


def test_beam_search_returns_the_requested_sequences():
    model = tiny_lm("gru", seed=4)
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    out = model.generate(ids, num_beams=4, num_return_sequences=3, max_new_tokens=5, eos_token_id=None, pad_token_id=0)
    assert out.shape == (6, 8)
    assert torch.equal(out[:3, :3], ids[:1].expand(3, 3))


def test_token_id_outside_vocabulary_is_a_clear_error():
    model = tiny_lm()
    with pytest.raises(ValueError, match="token id 24.*vocab_size=24"):
        model(torch.tensor([[1, 2, 24]]))
    with pytest.raises(ValueError, match="token id -1"):
        model(torch.tensor([[1, -1]]))


def test_orthogonal_recurrent_init_and_lstm_forget_bias():
    torch.manual_seed(0)
    model = RnnForCausalLM(tiny_config(rnn_type="lstm"))
    rnn = model.model.rnn
    for block in rnn.weight_hh_l0.split(12, dim=0):
        torch.testing.assert_close(block @ block.T, torch.eye(12), atol=1e-5, rtol=0)
    assert torch.all(rnn.bias_ih_l0[12:24] == 1.0) and torch.all(rnn.bias_hh_l0 == 0.0)


@pytest.mark.parametrize("tie", [False, True])
def test_save_and_load_round_trip(tmp_path, tie):
    model = tiny_lm("lstm", tie_word_embeddings=tie)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_rnn.RnnForCausalLM"
    assert (tmp_path / "modeling_rnn.py").exists() and (tmp_path / "configuration_rnn.py").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, RnnForCausalLM)
    ids = torch.randint(4, 24, (2, 7))
    # Same weights, but loaded ones may sit at another memory alignment, where kernels may round differently.
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, **tolerance(depth=2))
    if tie:
        assert loaded.lm_head.weight is loaded.model.embed_tokens.weight


def test_remote_code_load_without_hfnn_gives_identical_logits(tmp_path):
    model = tiny_lm("lstm", tie_word_embeddings=True)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    ids = torch.randint(4, 24, (2, 6))
    expected = model(ids).logits
    (tmp_path / "ids.json").write_text(json.dumps(ids.tolist()))
    out = run_without_hfnn(
        """
        import json, torch
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained("model", trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        ids = torch.tensor(json.load(open("ids.json")))
        with torch.no_grad():
            logits = model(ids).logits
        gen = model.generate(ids, max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
        print(json.dumps({"logits": logits.tolist(), "gen": gen.tolist()}))
        """,
        cwd=tmp_path,
    )
    result = json.loads(out.strip().splitlines()[-1])
    torch.testing.assert_close(torch.tensor(result["logits"]), expected, **tolerance(depth=2))
    local = model.generate(ids, max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert result["gen"] == local.tolist()


def test_text_generation_pipeline_from_a_saved_folder(tmp_path):
    from hfnn.data.tokenization import train_tokenizer

    text = "ROMEO:\nBut soft, what light through yonder window breaks?\nJULIET:\nAy me!\n"
    tokenizer = train_tokenizer([text], kind="char", padding_side="left")
    torch.manual_seed(0)
    config = RnnConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, rnn_type="gru",
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    RnnForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    generator = pipeline("text-generation", model=str(tmp_path))
    out = generator("ROMEO:", max_new_tokens=12, do_sample=True, top_k=5)
    assert out[0]["generated_text"].startswith("ROMEO:")
    assert len(out[0]["generated_text"]) > len("ROMEO:")
    # a left-padded batch gives each prompt its own greedy continuation (the same as generating it alone)
    model, prompts = generator.model, ["ROMEO:", "JULIET:"]
    batch = generator(prompts, max_new_tokens=5, do_sample=False)
    for prompt, out in zip(prompts, batch):
        ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        alone = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                               eos_token_id=None)
        expected = prompt + tokenizer.decode(alone[0, ids.shape[1]:], skip_special_tokens=True)
        assert out[0]["generated_text"] == expected and len(expected) > len(prompt)


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_classifier_is_padding_invariant(pooling, bidirectional, rnn_type):
    torch.manual_seed(0)
    config = tiny_config(rnn_type=rnn_type, pooling=pooling, bidirectional=bidirectional, num_labels=3, use_cache=False)
    model = randomize_(RnnForSequenceClassification(config).eval(), std=0.4)
    texts = [[5, 6, 7, 8, 9, 10], [11, 12], [13]]
    width = 6
    right = torch.tensor([t + [0] * (width - len(t)) for t in texts])
    mask = (right != 0).long()
    batch = model(right, attention_mask=mask).logits
    for row, text in enumerate(texts):
        alone = model(torch.tensor([text])).logits
        torch.testing.assert_close(batch[row], alone[0], atol=1e-5, rtol=1e-5)


def test_classifier_loads_through_auto_class(tmp_path):
    model = RnnForSequenceClassification(tiny_config(num_labels=2, id2label={0: "rotten", 1: "fresh"}, use_cache=False))
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert isinstance(loaded, RnnForSequenceClassification)
    assert loaded.config.id2label == {0: "rotten", 1: "fresh"}


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_trains_and_generates_under_cpu_bfloat16_autocast(rnn_type):
    """``--bf16`` on a CPU: the loss under autocast is close to float32's and gradients flow; an LSTM
    runs its recurrence in float32 (oneDNN has no bf16 LSTM on CPUs without native bf16)."""
    model = tiny_lm(rnn_type, seed=5)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [0, 0, 11, 12, 13, 14]])
    mask = (ids != 0).long()
    reference = model(ids, attention_mask=mask, labels=ids).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(ids, attention_mask=mask, labels=ids).loss
        generated = model.generate(ids[:1], max_new_tokens=3, do_sample=False, eos_token_id=None, pad_token_id=0)
    loss.backward()
    assert abs(float(loss) - float(reference)) < 0.05 * float(reference)
    assert model.model.embed_tokens.weight.grad.abs().sum() > 0
    assert generated.shape == (1, 9)
