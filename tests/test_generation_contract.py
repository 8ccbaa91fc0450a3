"""What transformers' ``GenerationTesterMixin`` checks (its ``tests/generation/test_utils.py`` is not in the
transformers sdist, so ``tests/hf_common`` cannot run it), written here for every generative head of every
architecture in ``hfnn.ARCHITECTURES``: causal language models and encoder-decoders.

Greedy decoding is the argmax loop written by hand; the cache changes nothing; beam search returns
``num_return_sequences`` ranked hypotheses; sampling repeats under a seed; ``return_dict_in_generate`` returns one
score, logit, hidden-state and attention entry per new token, of the right shapes; a left-padded prompt gives the
unpadded prompt's next-token logits; decoder-only models generate from ``inputs_embeds``; generation continues
from the returned cache (given the whole sequence and its mask, the v5 convention) as if it had not stopped;
``max_new_tokens`` and ``min_new_tokens`` are honoured.
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers import randomize_
from tests.test_modeling_contract import GENERATIVE, VOCAB, _layers, build

pytestmark = pytest.mark.numerics

IDS = [f"{a}-{h.removeprefix('AutoModelFor')}" for a, h in GENERATIVE]
EOS = 3
ATTENTION_FREE = {"rnn": "a recurrent language model has no attention weights to return"}


def _seq2seq(head):
    return head == "AutoModelForSeq2SeqLM"


def _prompt(batch=2, length=5, seed=1):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (batch, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _new_tokens(out, prompt, head):
    sequences = out if isinstance(out, torch.Tensor) else out.sequences
    return sequences[:, 1:] if _seq2seq(head) else sequences[:, prompt["input_ids"].shape[1]:]


def _next_logits(model, head, prompt, generated):
    """Logits of the token after ``generated`` (the new tokens so far), from a forward pass over all of them."""
    if _seq2seq(head):
        start = torch.full((generated.shape[0], 1), model.config.decoder_start_token_id)
        return model(**prompt, decoder_input_ids=torch.cat([start, generated], 1), use_cache=False).logits[:, -1]
    ids = torch.cat([prompt["input_ids"], generated], 1)
    return model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits[:, -1]


@pytest.fixture(params=GENERATIVE, ids=IDS)
def case(request):
    arch, head = request.param
    return arch, head, build(arch, head)


def test_greedy_equals_the_argmax_loop_written_by_hand(case):
    arch, head, model = case
    prompt = _prompt()
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=6, do_sample=False, eos_token_id=None)
        generated = torch.empty(2, 0, dtype=torch.long)
        for _ in range(6):
            generated = torch.cat([generated, _next_logits(model, head, prompt, generated).argmax(-1, keepdim=True)], 1)
    assert torch.equal(_new_tokens(out, prompt, head), generated)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_the_cache_changes_nothing(case, num_beams):
    arch, head, model = case
    prompt = _prompt()
    kwargs = dict(max_new_tokens=6, do_sample=False, num_beams=num_beams, eos_token_id=None,
                  return_dict_in_generate=True, output_scores=True)
    cached, uncached = model.generate(**prompt, **kwargs, use_cache=True), model.generate(**prompt, **kwargs,
                                                                                           use_cache=False)
    assert torch.equal(cached.sequences, uncached.sequences)
    for a, b in zip(cached.scores, uncached.scores):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_beam_search_returns_ranked_hypotheses(case):
    arch, head, model = case
    prompt = _prompt(batch=3)
    out = model.generate(**prompt, max_new_tokens=4, min_new_tokens=4, num_beams=4, num_return_sequences=3,
                         do_sample=False, return_dict_in_generate=True, output_scores=True)
    start = 1 if _seq2seq(head) else prompt["input_ids"].shape[1]
    assert out.sequences.shape == (9, start + 4)
    assert out.sequences_scores.shape == (9,)
    scores = out.sequences_scores.view(3, 3)
    assert bool((scores[:, :-1] >= scores[:, 1:]).all())
    assert len(out.scores) == 4 and all(s.shape == (12, model.config.vocab_size) for s in out.scores)
    if not _seq2seq(head):  # every hypothesis continues its own prompt
        assert torch.equal(out.sequences[:, :start], prompt["input_ids"].repeat_interleave(3, 0))


def test_sampling_repeats_under_a_seed(case):
    arch, head, model = case
    prompt = _prompt()
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        runs.append(model.generate(**prompt, max_new_tokens=8, do_sample=True, top_k=0, temperature=5.0))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])  # the seed matters: tokens are drawn, not chosen


@pytest.mark.parametrize("num_beams", [1, 2])
def test_return_dict_in_generate_gives_one_entry_per_new_token(case, num_beams):
    arch, head, model = case
    prompt = _prompt(batch=2, length=5)
    steps = 3
    out = model.generate(**prompt, max_new_tokens=steps, min_new_tokens=steps, do_sample=False, num_beams=num_beams,
                         return_dict_in_generate=True, output_scores=True, output_logits=True,
                         output_hidden_states=True, output_attentions=True)
    rows, vocab = 2 * num_beams, model.config.vocab_size
    assert len(out.scores) == len(out.logits) == steps
    assert all(s.shape == (rows, vocab) for s in (*out.scores, *out.logits))
    config = model.config
    hidden_size = config.hidden_size
    layers = _layers(model, arch)
    states = out.decoder_hidden_states if _seq2seq(head) else out.hidden_states
    assert len(states) == steps and all(len(step) == layers[-1] + 1 for step in states)
    assert states[-1][-1].shape[0] == rows and states[-1][-1].shape[-1] == hidden_size
    if _seq2seq(head):  # the encoder runs once, before the beams are made
        assert len(out.encoder_hidden_states) == layers[0] + 1
        assert out.encoder_hidden_states[-1].shape[:2] == (2, 5)
    if arch in ATTENTION_FREE:
        assert all(step is None for step in out.attentions), ATTENTION_FREE[arch]
        return
    attentions = out.cross_attentions if _seq2seq(head) else out.attentions
    assert len(attentions) == steps
    for step, per_layer in enumerate(attentions):
        source = 5 if _seq2seq(head) else 5 + step  # the source, or the prompt plus the tokens before
        assert all(w.shape[0] == rows and w.shape[-1] == source for w in per_layer)
        assert all(torch.allclose(w.sum(-1), torch.ones(())) for w in per_layer)  # probabilities


def test_a_left_padded_prompt_gives_the_logits_of_the_prompt_alone(case):
    arch, head, model = case
    prompt = _prompt(batch=2, length=5)
    padded = {"input_ids": prompt["input_ids"].clone(), "attention_mask": prompt["attention_mask"].clone()}
    padded["input_ids"][0, :2], padded["attention_mask"][0, :2] = 0, 0
    alone = {"input_ids": prompt["input_ids"][:1, 2:], "attention_mask": prompt["attention_mask"][:1, 2:]}
    with torch.no_grad():
        empty = torch.empty(1, 0, dtype=torch.long)
        expected = _next_logits(model, head, alone, empty)
        if _seq2seq(head):
            got = _next_logits(model, head, padded, torch.empty(2, 0, dtype=torch.long))[:1]
        else:
            got = model(**padded, use_cache=False).logits[:1, -1]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    out_padded = model.generate(**padded, max_new_tokens=5, do_sample=False, eos_token_id=None)
    out_alone = model.generate(**alone, max_new_tokens=5, do_sample=False, eos_token_id=None)
    assert torch.equal(_new_tokens(out_padded, padded, head)[:1], _new_tokens(out_alone, alone, head))


def test_decoder_only_models_generate_from_inputs_embeds(case):
    arch, head, model = case
    if _seq2seq(head):
        pytest.skip("an encoder-decoder's decoder starts from decoder_start_token_id, not from embeddings")
    prompt = _prompt()
    embeds = model.get_input_embeddings()(prompt["input_ids"])
    from_ids = model.generate(**prompt, max_new_tokens=5, do_sample=False, eos_token_id=None)
    from_embeds = model.generate(inputs_embeds=embeds, attention_mask=prompt["attention_mask"], max_new_tokens=5,
                                 do_sample=False, eos_token_id=None)
    assert torch.equal(from_embeds, _new_tokens(from_ids, prompt, head))  # only the new tokens come back


def test_generation_continues_from_the_returned_cache(case):
    arch, head, model = case
    randomize_(model, std=1.0)  # a trained model's scale
    prompt = _prompt()
    kwargs = dict(do_sample=False, eos_token_id=None, return_dict_in_generate=True, output_logits=True)
    whole = model.generate(**prompt, max_new_tokens=6, **kwargs)
    first = model.generate(**prompt, max_new_tokens=3, **kwargs)
    cache, ids = first.past_key_values, first.sequences
    assert cache is not None and cache.get_seq_length() > 0
    if _seq2seq(head):
        rest = model.generate(**prompt, decoder_input_ids=ids, decoder_attention_mask=torch.ones_like(ids), cache=cache,
                              max_new_tokens=3, **kwargs)
    else:
        rest = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), cache=cache, max_new_tokens=3,
                              **kwargs)
    assert torch.equal(rest.sequences, whole.sequences)
    for got, expected in zip(rest.logits, whole.logits[3:]):  # the prefix is not read twice
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("min_new", [0, 4])
def test_max_and_min_new_tokens_are_honoured(case, min_new):
    arch, head, model = case
    prompt = _prompt()
    # the end-of-sequence token made the favourite: only min_new_tokens holds it back
    out = model.generate(**prompt, max_new_tokens=6, min_new_tokens=min_new, do_sample=False, eos_token_id=EOS,
                         pad_token_id=0, sequence_bias={(EOS,): 1e4})
    new = _new_tokens(out, prompt, head)
    assert new.shape[1] <= 6
    assert (new[:, :min_new] != EOS).all()
    assert (new[:, min_new] == EOS).all()  # ends as soon as it may
    assert model.generate(**prompt, max_new_tokens=6, do_sample=False, eos_token_id=None).shape[1] == (
        (1 if _seq2seq(head) else 5) + 6)
