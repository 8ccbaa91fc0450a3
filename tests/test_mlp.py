"""The feed-forward (MLP) classifier: configuration, the seed's neuron formula, the bag of embeddings and
n-grams, padding, losses, saving, the Auto classes, pipelines and remote code."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, pipeline

import hfnn
from hfnn import MlpConfig, MlpForSequenceClassification, MlpModel
from hfnn.modeling_mlp import hash_ngrams
from tests.helpers import randomize_, run_without_hfnn

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
        ("dropout", 1.0),
        ("pad_token_id", VOCAB),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_config_round_trips_through_auto_config(tmp_path):
    tiny_config(activation="tanh", ngram_range=(1, 2), num_hidden_layers=0).save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, MlpConfig)
    assert (loaded.activation, loaded.ngram_range, loaded.num_hidden_layers) == ("tanh", [1, 2], 0)


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
        torch.testing.assert_close(model(torch.tensor([text])).logits[0], model.classifier.weight @ bag + model.classifier.bias)


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
        torch.testing.assert_close(head(linear, a * x1 + (1 - a) * x2), a * head(linear, x1) + (1 - a) * head(linear, x2))
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
    texts = [[3, 4], [5, 6, 7, 8, 9], [10], [11, 12, 13, 14, 15, 16, 17]]
    ids, mask = right_pad(texts, junk=19)  # junk ids under the mask must not matter
    if padding_side == "left":
        lengths = mask.sum(1)
        ids = torch.stack([torch.roll(r, int(r.numel() - n)) for r, n in zip(ids, lengths)])
        mask = torch.stack([torch.roll(r, int(r.numel() - n)) for r, n in zip(mask, lengths)])
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).logits
        for i, text in enumerate(texts):
            torch.testing.assert_close(batched[i], model(torch.tensor([text])).logits[0], rtol=1e-5, atol=1e-5)


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
    from hfnn.tokenization import train_tokenizer

    texts = ["a truly great film", "dull and boring", "great acting", "boring plot , bad film"]
    tokenizer = train_tokenizer(texts, kind="word", lowercase=True)
    config = MlpConfig(
        vocab_size=len(tokenizer), embedding_size=8, hidden_size=8, ngram_range=[1, 2], ngram_buckets=16,
        pad_token_id=tokenizer.pad_token_id, id2label={0: "rotten", 1: "fresh"}, label2id={"rotten": 0, "fresh": 1},
    )
    torch.manual_seed(0)
    model = randomize_(MlpForSequenceClassification(config), std=0.5).eval()
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
    ids = tokenizer(["a great film , truly boring"], return_tensors="pt")["input_ids"]
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
