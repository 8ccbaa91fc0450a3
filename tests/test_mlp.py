"""The feed-forward (MLP) classifier: configuration, the seed's neuron formula, the bag of embeddings and
n-grams, padding, losses, saving, the Auto classes, pipelines and remote code."""

import json
import math
import zlib

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, pipeline

import hfnn
from hfnn import MlpConfig, MlpForSequenceClassification, MlpModel
from hfnn.models.modeling_mlp import char_ngrams, hash_ngrams
from tests.helpers import randomize_, run_without_hfnn

pytestmark = pytest.mark.numerics

VOCAB = 30


def tiny_config(**overrides):
    fields = dict(vocab_size=VOCAB, embedding_size=6, hidden_size=8, num_hidden_layers=2, dropout=0.0, num_labels=3)
    if "id2label" in overrides:
        fields.pop("num_labels")
    fields.update(overrides)
    return MlpConfig(**fields)


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    model = MlpForSequenceClassification(tiny_config(**overrides))
    return randomize_(model, std=0.5, seed=seed).eval()


def right_pad(texts, junk=0):
    width = max(len(t) for t in texts)
    ids = torch.full((len(texts), width), junk, dtype=torch.long)
    mask = torch.zeros(len(texts), width, dtype=torch.long)
    for i, t in enumerate(texts):
        ids[i, : len(t)] = torch.tensor(t)
        mask[i, : len(t)] = 1
    return ids, mask


def assert_padding_changes_nothing(model, texts, junk, padding_side="right"):
    """Each text in a padded batch (junk ids under the mask) gives the logits it gives alone."""
    ids, mask = right_pad(texts, junk=junk)
    if padding_side == "left":
        lengths = mask.sum(1)
        ids = torch.stack([torch.roll(r, int(r.numel() - n)) for r, n in zip(ids, lengths)])
        mask = torch.stack([torch.roll(r, int(r.numel() - n)) for r, n in zip(mask, lengths)])
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).logits
        for i, text in enumerate(texts):
            torch.testing.assert_close(batched[i], model(torch.tensor([text])).logits[0], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "field, value",
    [
        ("vocab_size", 0),
        ("embedding_size", 0),
        ("num_hidden_layers", -1),
        ("hidden_size", 0),
        ("activation", "softplus"),
        ("ngram_range", [2, 1]),
        ("ngram_range", [0, 2]),
        ("ngram_range", 2),
        ("ngram_buckets", 0),
        ("char_ngram_range", [0, 3]),
        ("char_ngram_range", [4, 3]),
        ("char_ngram_buckets", 0),
        ("char_ngram_buckets", 2**31),
        ("char_ngrams_per_token", 0),
        ("ngram_dropout", 1.0),
        ("dropout", 1.0),
        ("pad_token_id", VOCAB),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_config_round_trips_through_auto_config(tmp_path):
    tiny_config(activation="tanh", ngram_range=(1, 2), num_hidden_layers=0, char_ngram_range=(2, 4),
                char_ngram_buckets=99, char_ngrams_per_token=7, ngram_dropout=0.25).save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, MlpConfig)
    assert (loaded.activation, loaded.ngram_range, loaded.num_hidden_layers) == ("tanh", [1, 2], 0)
    assert (loaded.char_ngram_range, loaded.char_ngram_buckets, loaded.char_ngrams_per_token, loaded.ngram_dropout) == (
        [2, 4], 99, 7, 0.25)


# ---------------------------------------------------------------- the seed's formula


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu", "gelu"])
def test_forward_is_the_seed_formula(activation):
    """x = mean of the token embeddings; h = f(W h + b) per layer; logits = W_out h + b_out."""
    model = tiny_model(activation=activation)
    f = {"identity": lambda z: z, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "gelu": F.gelu}[
        activation
    ]
    text = [3, 7, 7, 12]
    with torch.no_grad():
        h = model.model.embeddings.word_embeddings.weight[text].mean(0)
        for layer in model.model.layers:
            h = f(layer.dense.weight @ h + layer.dense.bias)
        expected = model.classifier.weight @ h + model.classifier.bias
        torch.testing.assert_close(model(torch.tensor([text])).logits[0], expected)


def test_zero_hidden_layers_is_a_linear_model_of_the_bag():
    model = tiny_model(num_hidden_layers=0)
    assert len(model.model.layers) == 0 and model.classifier.in_features == 6
    text = [4, 5, 6]
    with torch.no_grad():
        bag = model.model.embeddings.word_embeddings.weight[text].mean(0)
        torch.testing.assert_close(model(torch.tensor([text])).logits[0],
                                   model.classifier.weight @ bag + model.classifier.bias)


def test_identity_activation_collapses_depth_to_one_affine_map():
    """Seed note, idea 2: without an activation the stack is a single matrix product (plus bias)."""
    x1, x2, a = torch.randn(6), torch.randn(6), 0.3

    def head(model, x):
        h = x
        for layer in model.model.layers:
            h = layer(h)
        return model.classifier(h)

    with torch.no_grad():
        linear = tiny_model(activation="identity", num_hidden_layers=4)
        torch.testing.assert_close(head(linear, a * x1 + (1 - a) * x2),
                                   a * head(linear, x1) + (1 - a) * head(linear, x2))
        nonlinear = tiny_model(activation="tanh", num_hidden_layers=4)
        mixed = a * head(nonlinear, x1) + (1 - a) * head(nonlinear, x2)
        assert not torch.allclose(head(nonlinear, a * x1 + (1 - a) * x2), mixed, atol=1e-3)


# ---------------------------------------------------------------- bag of words and n-grams, padding


def test_word_order_matters_only_with_ngrams():
    text, shuffled = [3, 4, 5, 6, 7], [7, 5, 3, 6, 4]
    with torch.no_grad():
        words = tiny_model()
        torch.testing.assert_close(words(torch.tensor([text])).logits, words(torch.tensor([shuffled])).logits)
        bigrams = tiny_model(ngram_range=[1, 2], ngram_buckets=64)
        assert not torch.allclose(bigrams(torch.tensor([text])).logits, bigrams(torch.tensor([shuffled])).logits)


def test_ngram_bag_averages_words_and_hashed_ngrams():
    model = tiny_model(num_hidden_layers=0, ngram_range=[1, 3], ngram_buckets=97)
    text = torch.tensor([[3, 4, 5, 6]])
    emb = model.model.embeddings
    with torch.no_grad():
        vectors = [emb.word_embeddings.weight[text[0]]]
        vectors += [emb.ngram_embeddings.weight[hash_ngrams(text, n, 97)[0]] for n in (2, 3)]
        expected = torch.cat(vectors).mean(0)  # 4 words + 3 bigrams + 2 trigrams
        torch.testing.assert_close(model.model(text).pooler_output[0], expected)
    buckets = hash_ngrams(torch.tensor([[3, 4, 3, 4]]), 2, 97)[0]
    assert buckets[0] == buckets[2] and buckets[0] != buckets[1]  # deterministic, order-sensitive


@pytest.mark.parametrize("ngram_range", [[1, 1], [1, 3], [2, 2]])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_padded_and_unpadded_texts_give_the_same_logits(ngram_range, padding_side):
    model = tiny_model(seed=1, ngram_range=ngram_range, ngram_buckets=50)
    assert_padding_changes_nothing(model, [[3, 4], [5, 6, 7, 8, 9], [10], [11, 12, 13, 14, 15, 16, 17]], 19,
                                   padding_side)


def test_missing_mask_uses_pad_token_and_empty_text_is_finite():
    model = tiny_model(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(model(torch.tensor([[5, 6, 0, 0]])).logits, model(torch.tensor([[5, 6]])).logits)
        assert torch.isfinite(model(torch.zeros(1, 0, dtype=torch.long)).logits).all()


def test_token_ids_outside_the_vocabulary_are_rejected_by_name():
    with pytest.raises(ValueError, match=rf"token id {VOCAB}.*vocab_size={VOCAB}"):
        tiny_model()(torch.tensor([[1, VOCAB]]))


def test_hidden_states_are_returned_per_layer():
    out = tiny_model(num_hidden_layers=3).model(torch.tensor([[3, 4, 5]]), output_hidden_states=True)
    assert [tuple(h.shape) for h in out.hidden_states] == [(1, 6), (1, 8), (1, 8), (1, 8)]
    assert torch.equal(out.pooler_output, out.hidden_states[-1])


# ---------------------------------------------------------------- losses and training


def test_loss_falls_when_training_a_few_steps():
    torch.manual_seed(0)
    model = MlpForSequenceClassification(tiny_config(num_labels=2, ngram_range=[1, 2], ngram_buckets=32)).train()
    ids, mask = right_pad([[5, 6, 7], [8, 9, 10, 11], [5, 7, 6, 3], [12, 13]])
    labels = torch.tensor([1, 0, 1, 0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model(ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ---------------------------------------------------------------- saving, Auto classes, pipelines, remote code


def test_save_and_load_round_trip_through_auto_classes(tmp_path):
    model = tiny_model(seed=3, ngram_range=[1, 2], ngram_buckets=40)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert type(loaded) is MlpForSequenceClassification
    ids, mask = right_pad([[5, 6, 7, 8], [9, 10]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits)
        backbone = AutoModel.from_pretrained(tmp_path)
        assert type(backbone) is MlpModel
        torch.testing.assert_close(backbone(ids, attention_mask=mask).pooler_output,
                                   model.model(ids, attention_mask=mask).pooler_output)
    assert "mlp" in hfnn.ARCHITECTURES


def saved_classifier(tmp_path):
    from hfnn.data.tokenization import train_tokenizer

    texts = ["a truly great film", "dull and boring", "great acting", "boring plot , bad film"]
    tokenizer = train_tokenizer(texts, kind="word", lowercase=True)
    config = MlpConfig(
        vocab_size=len(tokenizer), embedding_size=8, hidden_size=8, ngram_range=[1, 2], ngram_buckets=16,
        ngram_vocabulary=True, char_ngram_range=[3, 5], char_ngram_buckets=64, pad_token_id=tokenizer.pad_token_id,
        id2label={0: "rotten", 1: "fresh"}, label2id={"rotten": 0, "fresh": 1},
    )
    torch.manual_seed(0)
    model = randomize_(MlpForSequenceClassification(config), std=0.5).index_vocabulary(tokenizer)
    model.index_ngrams(tokenizer(texts)["input_ids"]).eval()  # both tables travel in the weights
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return model, tokenizer


def test_text_classification_pipeline_returns_label_names(tmp_path):
    model, tokenizer = saved_classifier(tmp_path)
    classifier = pipeline("text-classification", model=str(tmp_path))
    texts = ["a great film", "boring", "film , dull"]
    with torch.no_grad():
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        probs = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.softmax(-1)
    for result, p in zip(classifier(texts), probs):
        assert result["label"] == model.config.id2label[int(p.argmax())]
        assert result["score"] == pytest.approx(float(p.max()), abs=1e-5)
    everything = classifier("a great film", top_k=None)
    assert sorted(r["label"] for r in everything) == ["fresh", "rotten"]
    assert sum(r["score"] for r in everything) == pytest.approx(1.0, abs=1e-5)


def test_remote_code_load_without_hfnn(tmp_path):
    model, tokenizer = saved_classifier(tmp_path / "model")
    ids = tokenizer(["a great film , truly boring"], return_tensors="pt")["input_ids"]  # seen and unseen bigrams
    assert 0 < int((model.model.embeddings.ngram_vocabulary != torch.iinfo(torch.int64).max).sum()) <= 16
    with torch.no_grad():
        expected = model(ids).logits[0].tolist()
    out = run_without_hfnn(
        f"""
        import json, torch
        from transformers import AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained("model", trust_remote_code=True)
        print(json.dumps([type(model).__name__, model(torch.tensor({ids.tolist()})).logits[0].tolist()]))
        """,
        cwd=tmp_path,
    )
    name, logits = json.loads(out.strip().splitlines()[-1])
    assert name == "MlpForSequenceClassification"
    assert logits == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("activation, gain", [
    ("identity", 1.0), ("sigmoid", 1.0), ("tanh", 5.0 / 3.0), ("relu", math.sqrt(2.0)), ("gelu", math.sqrt(2.0)),
])
def test_linear_layers_start_at_xavier_scale_with_the_activation_gain(activation, gain):
    """Each linear layer's initial weights are uniform with std = gain * sqrt(2 / (fan_in + fan_out))."""
    torch.manual_seed(0)
    model = MlpForSequenceClassification(tiny_config(activation=activation, embedding_size=200, hidden_size=300))
    layer = model.model.layers[1].dense  # 300 -> 300: 90,000 weights, a tight estimate of the std
    fan_in, fan_out = layer.weight.shape[1], layer.weight.shape[0]
    expected = gain * math.sqrt(2.0 / (fan_in + fan_out))
    assert layer.weight.std().item() == pytest.approx(expected, rel=0.02)
    assert torch.count_nonzero(layer.bias) == 0


# ---------------------------------------------------------------- character n-grams, n-gram dropout

WORDS = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, "film": 4, "films": 5, "dull": 6, ",": 7, "a": 8, "filmic": 9}


def char_model(seed=0, **overrides):
    fields = dict(num_hidden_layers=0, ngram_range=[1, 2], ngram_buckets=31, char_ngram_range=[3, 4],
                  char_ngram_buckets=53, char_ngrams_per_token=16)
    model = tiny_model(seed, **{**fields, **overrides})
    special = {i for t, i in WORDS.items() if t.startswith("<")}
    return model.index_vocabulary({t: i for t, i in WORDS.items() if i not in special})


def test_char_ngrams_are_those_of_the_token_between_spaces():
    assert char_ngrams("film", 3, 4) == [" fi", "fil", "ilm", "lm ", " fil", "film", "ilm "]
    assert char_ngrams("a", 3, 5) == [" a "]  # shorter than an n: only the n-grams that fit
    assert char_ngrams("aaaa", 3, 3) == [" aa", "aaa", "aa "]  # each distinct n-gram once


def test_index_vocabulary_records_hashed_char_ngrams_per_token_and_none_for_special_tokens():
    from hfnn.data.tokenization import train_tokenizer

    tokenizer = train_tokenizer(["a dull film , films"], kind="word", lowercase=True)
    model = tiny_model(vocab_size=len(tokenizer), char_ngram_range=[3, 4], char_ngram_buckets=53,
                       char_ngrams_per_token=5)
    model.index_vocabulary(tokenizer)
    table = model.model.embeddings.char_ngram_ids
    assert table.shape == (len(tokenizer), 5)
    for token, token_id in tokenizer.get_vocab().items():
        if token_id in tokenizer.all_special_ids:
            assert (table[token_id] == -1).all(), token
        else:
            expected = [zlib.crc32(g.encode()) % 53 for g in char_ngrams(token, 3, 4)][:5]  # shortest first, 5 kept
            assert table[token_id].tolist() == expected + [-1] * (5 - len(expected)), token


def test_index_vocabulary_rejects_a_token_outside_the_vocabulary_and_is_a_no_op_without_char_ngrams():
    with pytest.raises(ValueError, match=rf"token 'late' has id {VOCAB}.*vocab_size={VOCAB}"):
        char_model().index_vocabulary({"film": 4, "late": VOCAB})
    words_only = tiny_model()
    assert words_only.index_vocabulary(WORDS) is words_only
    assert not any("char" in name for name, _ in words_only.named_buffers())


def test_char_ngram_mean_over_the_text_is_added_to_the_bag():
    model = char_model()
    emb = model.model.embeddings
    text = [8, 4, 7, 6]  # a film , dull
    with torch.no_grad():
        words = torch.cat([emb.word_embeddings.weight[text],
                           emb.ngram_embeddings.weight[hash_ngrams(torch.tensor([text]), 2, 31)[0]]]).mean(0)
        grams = [zlib.crc32(g.encode()) % 53 for t in ("a", "film", ",", "dull") for g in char_ngrams(t, 3, 4)]
        expected = words + emb.char_ngram_embeddings.weight[grams].mean(0)
        torch.testing.assert_close(model.model(torch.tensor([text])).pooler_output[0], expected)


def test_tokens_that_share_char_ngrams_share_weights():
    """'film' and 'films' have different word vectors but most of their character n-grams in common."""
    model = char_model(embedding_size=256)  # wide enough for random vectors to be near orthogonal
    with torch.no_grad():
        model.model.embeddings.word_embeddings.weight.zero_()
        film, films, dull = (model.model(torch.tensor([[t]])).pooler_output[0] for t in (4, 5, 6))
    assert F.cosine_similarity(film, films, dim=0) > F.cosine_similarity(film, dull, dim=0) + 0.3


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_char_ngrams_keep_padded_and_unpadded_texts_equal(padding_side):
    model = char_model(seed=4)
    assert_padding_changes_nothing(model, [[4, 5], [8, 9, 7, 6, 4], [6]], 9, padding_side)
    with torch.no_grad():
        assert torch.isfinite(model(torch.zeros(1, 0, dtype=torch.long)).logits).all()


def test_training_before_index_vocabulary_warns_naming_it(caplog):
    from hfnn.models.modeling_mlp import logger

    model = tiny_model(char_ngram_range=[3, 4], char_ngram_buckets=53).train()
    logger.warning_once.cache_clear()
    with caplog.at_level("WARNING"):
        model(torch.tensor([[4, 5]]), labels=torch.tensor([0]))
    assert "table is empty" in caplog.text and "index_vocabulary(tokenizer)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        model.index_vocabulary(WORDS)(torch.tensor([[4, 5]]), labels=torch.tensor([0])).loss.backward()
    assert "char_ngram_ids" in model.model.embeddings.seen_filled and not caplog.text


def test_ngram_dropout_drops_entries_in_training_only():
    model = char_model(ngram_dropout=0.5)
    ids = torch.tensor([[8, 4, 7, 6, 5, 9]])
    with torch.no_grad():
        reference = char_model(ngram_dropout=0.0)
        torch.testing.assert_close(model(ids).logits, reference(ids).logits)  # same seed and weights: eval is exact
        model.train()
        torch.manual_seed(0)
        draws = torch.stack([model.model(ids).pooler_output[0] for _ in range(200)])
    assert len({tuple(d.tolist()) for d in draws}) > 50
    assert not torch.allclose(draws[0], reference.model(ids).pooler_output[0])


def test_char_ngram_table_is_saved_loaded_and_resized(tmp_path):
    model = char_model(seed=5)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    table = model.model.embeddings.char_ngram_ids
    assert torch.equal(loaded.model.embeddings.char_ngram_ids, table)
    ids, mask = right_pad([[8, 4, 7], [9, 5, 6, 6]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits)
    loaded.resize_token_embeddings(VOCAB + 3)
    grown = loaded.model.embeddings.char_ngram_ids
    assert grown.shape == (VOCAB + 3, 16) and torch.equal(grown[:VOCAB], table) and (grown[VOCAB:] == -1).all()
    loaded.resize_token_embeddings(8)
    assert torch.equal(loaded.model.embeddings.char_ngram_ids, table[:8])
    loaded.save_pretrained(tmp_path / "small")
    assert (AutoModelForSequenceClassification.from_pretrained(tmp_path / "small").model.embeddings.char_ngram_ids.shape
            == (8, 16))


def test_char_ngram_model_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    from hfnn.sharing.export import export_onnx

    model = char_model(seed=6, vocab_size=VOCAB)
    result = export_onnx(model, tmp_path / "model.onnx")  # checked against PyTorch on a padded batch of another shape
    assert result.max_abs_diff <= 1e-4
    exported = torch.export.export(model, (torch.tensor([[8, 4, 7, 6]]),))
    ids = torch.tensor([[9, 5, 6, 4]])
    torch.testing.assert_close(exported.module()(ids).logits, model(ids).logits)


# ------------------------------------------------------------- n-gram vocabulary (exact n-grams, unseen ones left out)


def vocab_model(seed=0, texts=((8, 4, 7), (8, 4, 6), (9, 5, 6, 4), (8, 4, 7)), **overrides):
    fields = dict(num_hidden_layers=0, ngram_range=[1, 3], ngram_buckets=16, ngram_vocabulary=True)
    return tiny_model(seed, **{**fields, **overrides}).index_ngrams(texts)


def manual_bag(model, ids):
    """Mean of the word embeddings and of the embeddings of the n-grams that are in the vocabulary."""
    from hfnn.models.modeling_mlp import ngram_keys

    bag = model.model.embeddings
    table = bag.ngram_vocabulary.tolist()
    vectors = [bag.word_embeddings.weight[i] for i in ids]
    for n in range(2, bag.max_n + 1):
        for start in range(len(ids) - n + 1):
            key = int(ngram_keys(torch.tensor([ids[start : start + n]]), n, VOCAB)[0, 0])
            if key in table:
                vectors.append(bag.ngram_embeddings.weight[table.index(key)])
    return torch.stack(vectors).mean(0)


def test_ngram_keys_are_exact_distinct_across_lengths_and_invertible():
    from hfnn.models.modeling_mlp import _ngram_of_key, ngram_keys

    ids = torch.tensor([[0, 1, 29, 29, 2]])
    keys = {n: ngram_keys(ids, n, VOCAB)[0].tolist() for n in (2, 3, 4)}
    assert keys[2][0] == 0 * VOCAB + 1 and keys[3][0] == VOCAB**2 + (0 * VOCAB + 1) * VOCAB + 29
    every = [k for n in keys for k in keys[n]]
    assert len(set(every)) == len(every)  # (0, 1) as a bigram and (0, 0, 1) as a trigram would differ too
    for n, row in keys.items():
        for start, key in enumerate(row):
            assert _ngram_of_key(key, VOCAB, 4) == tuple(ids[0, start : start + n].tolist())


def test_index_ngrams_keeps_the_most_frequent_ngrams_sorted_and_leaves_unseen_ones_out_of_the_bag():
    from hfnn.models.modeling_mlp import _NO_NGRAM, ngram_keys

    model = vocab_model(seed=1, ngram_buckets=4)  # (8, 4) x3, (4, 7) x2, (8, 4, 7) x2, then a tie of seven x1
    table = model.model.embeddings.ngram_vocabulary.tolist()
    key = lambda *ids: int(ngram_keys(torch.tensor([ids]), len(ids), VOCAB)[0, 0])
    tied = sorted([key(4, 6), key(9, 5), key(5, 6), key(6, 4), key(8, 4, 6), key(9, 5, 6), key(5, 6, 4)])
    assert table == sorted([key(8, 4), key(4, 7), key(8, 4, 7), tied[0]])  # ties go to the lower key
    roomy = vocab_model(seed=1, ngram_buckets=16).model.embeddings.ngram_vocabulary.tolist()
    assert roomy[:11] == sorted(roomy[:11]) and roomy[11:] == [_NO_NGRAM] * 5  # 11 distinct 2..3-grams
    model = vocab_model(seed=2)
    for ids in ([8, 4, 7], [7, 4, 8], [9, 5, 6, 4, 8, 4], [3]):  # seen, unseen, mixed n-grams, a single word
        with torch.no_grad():
            torch.testing.assert_close(model.model.embeddings(torch.tensor([ids]), torch.ones(1, len(ids)))[0],
                                       manual_bag(model, ids))
    unseen = model.model.embeddings(torch.tensor([[7, 4, 8]]), torch.ones(1, 3))[0]  # no n-gram of it is known
    words = model.model.embeddings.word_embeddings.weight[[7, 4, 8]].mean(0)
    torch.testing.assert_close(unseen, words)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_ngram_vocabulary_keeps_padded_and_unpadded_texts_equal(padding_side):
    assert_padding_changes_nothing(vocab_model(seed=3), [[8, 4, 7], [9, 5, 6, 4, 8], [4]], 4, padding_side)


def test_ngram_vocabulary_config_and_index_errors_name_the_problem(caplog):
    with pytest.raises(ValueError, match="'ngram_vocabulary' expected bool"):
        tiny_config(ngram_range=[1, 2], ngram_vocabulary="yes")
    with pytest.raises(ValueError, match=r"ngram_vocabulary must be false when vocab_size\*\*max_n reaches 2\*\*62.*"
                                         r"vocab_size=50000, ngram_range=\[1, 4\]"):
        tiny_config(vocab_size=50000, ngram_range=[1, 4], ngram_vocabulary=True)
    with pytest.raises(ValueError, match=rf"index_ngrams: token id {VOCAB} is outside.*vocab_size={VOCAB}"):
        vocab_model(texts=[[1, 2, VOCAB]])
    tiny_model(ngram_range=[1, 2], ngram_vocabulary=False).index_ngrams([[1, 2]])  # hashed n-grams: nothing to do
    empty = tiny_model(ngram_range=[1, 2], ngram_buckets=8, ngram_vocabulary=True).train()
    with caplog.at_level("WARNING"):
        empty(torch.tensor([[1, 2, 3]]), labels=torch.tensor([0]))
    assert "call model.index_ngrams" in caplog.text


def test_ngram_vocabulary_is_saved_loaded_and_rekeyed_on_resize(tmp_path):
    model = vocab_model(seed=4)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert torch.equal(loaded.model.embeddings.ngram_vocabulary, model.model.embeddings.ngram_vocabulary)
    ids, mask = right_pad([[8, 4, 7], [9, 5, 6, 4]])
    with torch.no_grad():
        before = model(ids, attention_mask=mask).logits
        torch.testing.assert_close(loaded(ids, attention_mask=mask).logits, before)
        loaded.resize_token_embeddings(VOCAB + 7)  # a new base for the keys: the same n-grams keep their vectors
        torch.testing.assert_close(loaded(ids, attention_mask=mask).logits, before)
        loaded.resize_token_embeddings(9)  # drops the n-grams with token 9
        torch.testing.assert_close(loaded(ids[:1], attention_mask=mask[:1]).logits, before[:1])
        assert torch.equal(loaded.model.embeddings.ngram_vocabulary[:7],
                           vocab_model(seed=4, vocab_size=9, texts=[[8, 4, 7], [8, 4, 6], [8, 4, 7], [5, 6, 4]])
                           .model.embeddings.ngram_vocabulary[:7])
    loaded.save_pretrained(tmp_path / "small")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "small")
    with torch.no_grad():
        torch.testing.assert_close(again(ids[:1], attention_mask=mask[:1]).logits, before[:1])


def test_ngram_vocabulary_model_exports(tmp_path):
    pytest.importorskip("onnxruntime")
    from hfnn.sharing.export import export_onnx

    model = vocab_model(seed=6)
    result = export_onnx(model, tmp_path / "model.onnx")  # checked against PyTorch on a padded batch of another shape
    assert result.max_abs_diff <= 1e-4
    exported = torch.export.export(model, (torch.tensor([[8, 4, 7, 6]]),))
    for ids in ([[9, 5, 6, 4]], [[7, 4, 8, 1]]):
        torch.testing.assert_close(exported.module()(torch.tensor(ids)).logits, model(torch.tensor(ids)).logits)


def test_sorted_position_traced_equals_searchsorted(monkeypatch):
    import hfnn.models.modeling_mlp as modeling

    torch.manual_seed(0)
    for size in (1, 2, 7, 64, 100):
        table = torch.sort(torch.randint(0, 50, (size,))).values
        keys = torch.randint(-3, 55, (4, 9))
        expected = torch.searchsorted(table, keys)
        monkeypatch.setattr(modeling, "is_tracing", lambda *_: True)
        assert torch.equal(modeling.sorted_position(table, keys), expected), size
        monkeypatch.undo()
