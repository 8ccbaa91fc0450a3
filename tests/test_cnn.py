"""The CNN sentence classifier (Kim 2014): configuration, pooling that never sees padding, embedding modes,
max-norm, losses, saving, the Auto classes, pipelines and remote code; and the word-vector loader."""

import gzip
import json

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, pipeline

import hfnn
from hfnn import CnnConfig, CnnForSequenceClassification, CnnModel
from hfnn.data.embeddings import load_word_vectors
from tests.helpers import randomize_, run_without_hfnn

pytestmark = pytest.mark.numerics

VOCAB = 30


def tiny_config(**overrides):
    fields = dict(vocab_size=VOCAB, embedding_size=6, window_sizes=[2, 3, 5], num_filters=4, dropout=0.0, num_labels=3)
    if "id2label" in overrides:
        fields.pop("num_labels")
    fields.update(overrides)
    return CnnConfig(**fields)


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    model = CnnForSequenceClassification(tiny_config(**overrides))
    randomize_(model, std=0.5, seed=seed)
    return model.eval()


def right_pad(texts, pad_id=0, junk=None):
    """Batch of right-padded ids and its mask; padding holds `junk` ids when given (they must not matter)."""
    width = max(len(t) for t in texts)
    ids = torch.full((len(texts), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(texts), width, dtype=torch.long)
    for i, t in enumerate(texts):
        ids[i, : len(t)] = torch.tensor(t)
        mask[i, : len(t)] = 1
        if junk is not None:
            ids[i, len(t):] = junk
    return ids, mask


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "field, value",
    [
        ("vocab_size", 0),
        ("embedding_size", -1),
        ("window_sizes", []),
        ("window_sizes", [3, 0]),
        ("window_sizes", "345"),
        ("num_filters", 0),
        ("dropout", 1.0),
        ("max_norm", 0.0),
        ("max_norm", -3),
        ("embedding_mode", "dynamic"),
        ("pad_token_id", VOCAB),
        ("initializer_range", 0),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_config_defaults_follow_kim_and_round_trip(tmp_path):
    config = CnnConfig()
    assert (config.window_sizes, config.num_filters, config.dropout, config.max_norm) == ([3, 4, 5], 100, 0.5, 3.0)
    assert config.hidden_size == 300
    tiny_config(embedding_mode="multichannel", max_norm=None, id2label={0: "neg", 1: "pos"}).save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, CnnConfig)
    assert (loaded.embedding_mode, loaded.max_norm, loaded.window_sizes) == ("multichannel", None, [2, 3, 5])
    assert loaded.id2label == {0: "neg", 1: "pos"} and loaded.num_labels == 2


# ---------------------------------------------------------------- pooling and padding


def reference_pooled(model, ids):
    """Kim's feature extraction written out per text: for each width h, c_t = ReLU(w . x_{t:t+h-1} + b) over
    the windows inside the text (one zero-extended window if the text is shorter than h), then max over t."""
    x = model.model.embeddings.word_embeddings.weight[torch.tensor(ids)]  # (n, emb)
    n = len(ids)
    features = []
    for h, conv in zip(model.config.window_sizes, model.model.convs):
        xs = torch.cat([x, x.new_zeros(max(h - n, 0), x.shape[1])]) if n < h else x
        starts = range(max(n - h + 1, 1))
        c = [torch.relu((conv.weight * xs[t : t + h].T).sum((1, 2)) + conv.bias) for t in starts]
        features.append(torch.stack(c).amax(0))
    return torch.cat(features)


def test_pooling_matches_a_per_text_reference():
    model = tiny_model()
    texts = [[5, 6, 7, 8, 9, 10, 11], [4, 3], [12], [7, 8, 9, 10, 11]]
    ids, mask = right_pad(texts)
    with torch.no_grad():
        pooled = model.model(ids, attention_mask=mask).pooler_output
        for i, text in enumerate(texts):
            torch.testing.assert_close(pooled[i], reference_pooled(model, text))


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_padded_and_unpadded_texts_give_the_same_logits(padding_side):
    model = tiny_model(seed=1)
    # Lengths below, at and above the widest window (5); padding filled with junk ids, not just pad.
    texts = [[3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 17, 18], [19], [20, 21, 22, 23, 24, 25]]
    ids, mask = right_pad(texts, junk=17)
    if padding_side == "left":
        lengths = mask.sum(1)
        ids = torch.stack([torch.roll(row, int(row.numel() - n)) for row, n in zip(ids, lengths)])
        mask = torch.stack([torch.roll(row, int(row.numel() - n)) for row, n in zip(mask, lengths)])
        assert mask[0, -1] == 1 and mask[0, 0] == 0
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).logits
        for i, text in enumerate(texts):
            alone = model(torch.tensor([text])).logits[0]
            torch.testing.assert_close(batched[i], alone, rtol=1e-5, atol=1e-5)


def test_ids_under_the_mask_do_not_matter():
    # Every id placed in the padding (the text is shorter than the widest window, so its one zero-extended
    # window reaches into the padding) leaves the features alone; the same ids unmasked change them.
    model = tiny_model(seed=2)
    text = [4, 5, 6, 7]
    with torch.no_grad():
        alone = model.model(torch.tensor([text])).pooler_output
        for junk in range(1, VOCAB):
            ids = torch.tensor([text + [junk] * 4])
            mask = torch.tensor([[1] * 4 + [0] * 4])
            torch.testing.assert_close(model.model(ids, attention_mask=mask).pooler_output, alone)
        # ... while the same tokens unmasked do change it
        assert not torch.allclose(model.model(torch.tensor([text + [9] * 4])).pooler_output, alone)


def test_texts_shorter_than_the_widest_window_work():
    model = tiny_model(seed=3, window_sizes=[3, 4, 5])
    with torch.no_grad():
        one = model(torch.tensor([[7]])).logits
        two = model(torch.tensor([[7, 8]])).logits
        other = model(torch.tensor([[9, 8]])).logits
        empty = model(torch.zeros(1, 0, dtype=torch.long)).logits
    for logits in (one, two, other, empty):
        assert logits.shape == (1, 3) and torch.isfinite(logits).all()
    assert not torch.allclose(two, other)  # the content of a short text still matters
    assert not torch.allclose(one, two)


def test_missing_attention_mask_treats_pad_token_as_padding():
    model = tiny_model(seed=4)
    with torch.no_grad():
        torch.testing.assert_close(model(torch.tensor([[5, 6, 7, 0, 0]])).logits,
                                   model(torch.tensor([[5, 6, 7]])).logits)


def test_inputs_embeds_match_input_ids_and_output_shapes():
    model = tiny_model(seed=5)
    ids, mask = right_pad([[5, 6, 7, 8], [9, 10]])
    with torch.no_grad():
        out = model.model(ids, attention_mask=mask, output_hidden_states=True)
        embeds = model.model.embeddings(ids)
        again = model.model(inputs_embeds=embeds, attention_mask=mask)
    assert out.pooler_output.shape == (2, 3 * 4)
    assert out.last_hidden_state.shape == (2, 4, 3 * 4)
    assert len(out.hidden_states) == 2
    torch.testing.assert_close(again.pooler_output, out.pooler_output)


def test_token_ids_outside_the_vocabulary_are_rejected_by_name():
    model = tiny_model()
    with pytest.raises(ValueError, match=rf"token id {VOCAB + 2}.*vocab_size={VOCAB}"):
        model(torch.tensor([[1, 2, VOCAB + 2]]))
    with pytest.raises(ValueError, match="token id -1"):
        model(torch.tensor([[1, -1, 2]]))


# ---------------------------------------------------------------- losses


def test_loss_falls_when_training_a_few_steps():
    torch.manual_seed(0)
    model = CnnForSequenceClassification(tiny_config(num_labels=2, dropout=0.5)).train()
    ids, mask = right_pad([[5, 6, 7], [8, 9, 10, 11], [5, 7, 6, 3], [12, 13]])
    labels = torch.tensor([1, 0, 1, 0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ---------------------------------------------------------------- embeddings


def one_step(model, ids):
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    loss = model(ids, labels=torch.tensor([1])).loss
    loss.backward()
    optimizer.step()
    return model


@pytest.mark.parametrize("mode", ["static", "non-static", "multichannel", "rand"])
def test_embedding_modes_freeze_what_they_should(mode):
    vectors = torch.randn(VOCAB, 6)
    model = CnnForSequenceClassification.from_config_with_embeddings(tiny_config(embedding_mode=mode), vectors)
    emb = model.model.embeddings
    torch.testing.assert_close(emb.word_embeddings.weight, vectors)
    if mode == "multichannel":
        torch.testing.assert_close(emb.static_word_embeddings.weight, vectors)
    else:
        assert emb.static_word_embeddings is None
    one_step(model, torch.tensor([[3, 4, 5, 6, 7]]))
    trained_changed = not torch.equal(emb.word_embeddings.weight, vectors)
    if mode == "static":
        assert emb.word_embeddings.weight.grad is None and not trained_changed
    else:
        assert emb.word_embeddings.weight.grad is not None and trained_changed
    if mode == "multichannel":
        assert emb.static_word_embeddings.weight.grad is None
        torch.testing.assert_close(emb.static_word_embeddings.weight, vectors)


@pytest.mark.parametrize("mode", ["static", "multichannel"])
def test_frozen_channel_stays_frozen_after_from_pretrained(tmp_path, mode):
    model = CnnForSequenceClassification.from_config_with_embeddings(
        tiny_config(embedding_mode=mode), torch.randn(VOCAB, 6)
    )
    model.save_pretrained(tmp_path)
    loaded = CnnForSequenceClassification.from_pretrained(tmp_path)
    table = (loaded.model.embeddings.word_embeddings if mode == "static"
             else loaded.model.embeddings.static_word_embeddings)
    assert table.weight.requires_grad is False
    before = table.weight.detach().clone()
    one_step(loaded, torch.tensor([[3, 4, 5, 6, 7]]))
    assert torch.equal(table.weight, before)


def test_multichannel_sums_the_two_channels():
    # Each filter over both channels, added (Kim): the same as one convolution of channel A + channel B.
    multi = tiny_model(seed=6, embedding_mode="multichannel")
    single = CnnForSequenceClassification(tiny_config(embedding_mode="non-static")).eval()
    state = multi.state_dict()
    summed = (state.pop("model.embeddings.word_embeddings.weight")
              + state.pop("model.embeddings.static_word_embeddings.weight"))
    state["model.embeddings.word_embeddings.weight"] = summed
    single.load_state_dict(state)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(multi(ids).logits, single(ids).logits)


def test_load_embeddings_checks_the_shape():
    model = CnnForSequenceClassification(tiny_config())
    with pytest.raises(ValueError, match=r"\(30, 6\)"):
        model.load_embeddings(torch.zeros(VOCAB, 7))


# ---------------------------------------------------------------- max-norm


def classifier_row_norms(model):
    return model.classifier.weight.detach().norm(dim=1)


def test_max_norm_is_applied_by_the_model_on_eval_and_on_request_and_nowhere_else():
    """The model projects its rows when switched to evaluation and when asked (``apply_max_norm_``); nothing
    outside it does: an optimizer step (of any optimizer) and a forward leave the weights as they are."""
    model = tiny_model(max_norm=0.5)  # randomize_ gives rows of norm ~3.9, far above 0.5
    model.train()
    with torch.no_grad():
        model.classifier.weight.mul_(10.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    before = model.classifier.weight.detach().clone()
    loss = model(ids, labels=torch.tensor([1])).loss
    assert torch.equal(model.classifier.weight, before)  # forward never changes a parameter
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert classifier_row_norms(model).max() > 0.5  # no process-wide hook projects after a step
    model.apply_max_norm_()
    assert classifier_row_norms(model).max() <= 0.5 + 1e-6
    with torch.no_grad():
        model.classifier.weight.mul_(10.0)  # set by hand: projected when switching to evaluation
    model.eval()
    assert classifier_row_norms(model).max() <= 0.5 + 1e-6
    # rows already inside the ball are left alone; without max_norm nothing is projected
    small = tiny_model(max_norm=100.0)
    before = small.classifier.weight.detach().clone()
    small.apply_max_norm_()
    small.train()(ids)
    assert torch.equal(small.classifier.weight, before)
    free = tiny_model(max_norm=None)
    before = free.classifier.weight.detach().clone()
    free.apply_max_norm_()
    assert torch.equal(free.classifier.weight, before)


def test_creating_a_cnn_registers_no_global_optimizer_hook():
    from torch.optim import optimizer

    hooks = dict(optimizer._global_optimizer_post_hooks)
    tiny_model(max_norm=0.5)
    assert dict(optimizer._global_optimizer_post_hooks) == hooks


def _train_with_trainer(tmp_path, max_norm, callbacks):
    """Norms of the classifier rows after every optimizer step of a short Trainer run (no evaluation)."""
    from datasets import Dataset
    from transformers import Trainer, TrainerCallback, TrainingArguments

    rows = [{"input_ids": [3 + i % 7, 4 + i % 5, 5, 6], "label": i % 2} for i in range(32)]
    norms = []

    class Probe(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            norms.append(classifier_row_norms(model).max().item())

    torch.manual_seed(0)
    model = CnnForSequenceClassification(tiny_config(num_labels=2, max_norm=max_norm))
    args = TrainingArguments(
        output_dir=str(tmp_path / f"{max_norm}-{len(callbacks)}"), per_device_train_batch_size=8, num_train_epochs=3,
        learning_rate=0.5, optim="sgd", report_to=[], save_strategy="no", logging_strategy="no", eval_strategy="no",
        use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows), callbacks=[*callbacks, Probe()]).train()
    return norms, classifier_row_norms(model).max().item()


def test_max_norm_holds_after_every_step_of_training_with_trainer(tmp_path):
    """With MaxNormCallback (what the pipelines attach), the rows are inside the ball after every optimizer step and
    at the end of training; without it, or without max_norm, they leave it."""
    from hfnn.training import MaxNormCallback

    limit = 0.03
    unconstrained, _ = _train_with_trainer(tmp_path, None, [MaxNormCallback()])
    assert max(unconstrained) > 1.5 * limit  # unconstrained rows end well outside the ball...
    norms, final = _train_with_trainer(tmp_path, limit, [MaxNormCallback()])
    assert len(norms) == 12 and max(norms) <= limit + 1e-6 and final <= limit + 1e-6  # ...the constraint keeps them in
    unattached, _ = _train_with_trainer(tmp_path, limit, [])
    assert max(unattached) > limit + 1e-6  # the callback does it: nothing else projects during training


def test_the_pipelines_callbacks_include_max_norm(tmp_path):
    from transformers import Trainer, TrainingArguments

    from hfnn.training import MaxNormCallback, TrainingCallbacks

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=tiny_model(max_norm=1.0), args=args)
    TrainingCallbacks.attach(trainer, tune_threads=False)
    assert any(isinstance(c, MaxNormCallback) for c in trainer.callback_handler.callbacks)


# ---------------------------------------------------------------- saving, Auto classes, pipelines, remote code


def test_save_and_load_round_trip_through_auto_classes(tmp_path):
    model = tiny_model(seed=7, id2label={0: "rotten", 1: "fresh"})
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert type(loaded) is CnnForSequenceClassification
    ids, mask = right_pad([[5, 6, 7, 8], [9, 10]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits)
        backbone = AutoModel.from_pretrained(tmp_path)
        assert type(backbone) is CnnModel
        torch.testing.assert_close(backbone(ids, attention_mask=mask).pooler_output,
                                   model.model(ids, attention_mask=mask).pooler_output)
    assert "cnn" in hfnn.ARCHITECTURES


def saved_classifier(tmp_path):
    from hfnn.data.tokenization import train_tokenizer

    texts = ["a truly great film", "dull and boring", "great acting", "boring plot , bad film", "a film"]
    tokenizer = train_tokenizer(texts, kind="word", lowercase=True)
    config = CnnConfig(
        vocab_size=len(tokenizer), embedding_size=8, window_sizes=[2, 3], num_filters=4,
        pad_token_id=tokenizer.pad_token_id, id2label={0: "rotten", 1: "fresh"}, label2id={"rotten": 0, "fresh": 1},
    )
    torch.manual_seed(0)
    model = randomize_(CnnForSequenceClassification(config), std=0.5).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return model, tokenizer


def test_text_classification_pipeline_returns_label_names(tmp_path):
    model, tokenizer = saved_classifier(tmp_path)
    classifier = pipeline("text-classification", model=str(tmp_path))
    texts = ["a great film", "boring", "film"]
    top = classifier(texts)
    with torch.no_grad():
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        probs = model(**{k: enc[k] for k in ("input_ids", "attention_mask")}).logits.softmax(-1)
    for result, p in zip(top, probs):
        assert result["label"] == model.config.id2label[int(p.argmax())]
        assert result["score"] == pytest.approx(float(p.max()), abs=1e-5)
    everything = classifier("a great film", top_k=None)
    assert sorted(r["label"] for r in everything) == ["fresh", "rotten"]
    assert sum(r["score"] for r in everything) == pytest.approx(1.0, abs=1e-5)


def test_remote_code_load_without_hfnn(tmp_path):
    model, tokenizer = saved_classifier(tmp_path / "model")
    ids = tokenizer(["a great film , truly"], return_tensors="pt")["input_ids"]
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
    assert name == "CnnForSequenceClassification"
    assert logits == pytest.approx(expected, abs=1e-5)


# ---------------------------------------------------------------- word vectors


VOCAB_MAP = {"<pad>": 0, "<unk>": 1, "good": 2, "bad": 3, "film": 4}


def test_load_word_vectors_reads_glove_and_word2vec_text(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("good 0.1 0.2 0.3\nfilm -1 0 1e-1\nunrelated 9 9 9\n", encoding="utf-8")
    vectors = load_word_vectors(glove, VOCAB_MAP)
    assert vectors.shape == (5, 3)
    torch.testing.assert_close(vectors[2], torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(vectors[4], torch.tensor([-1.0, 0.0, 0.1]))
    for missing in (0, 1, 3):  # not in the file: U[-0.25, 0.25], as Kim did
        assert vectors[missing].abs().max() <= 0.25 and vectors[missing].abs().sum() > 0
    torch.testing.assert_close(load_word_vectors(glove, VOCAB_MAP), vectors)  # seeded

    word2vec = tmp_path / "w2v.txt.gz"
    with gzip.open(word2vec, "wt", encoding="utf-8") as f:
        f.write("2 2\nGood 1 2\nbad 3 4\n")
    vectors = load_word_vectors(word2vec, VOCAB_MAP, vocab_size=8, lowercase=True)
    assert vectors.shape == (8, 2)
    torch.testing.assert_close(vectors[2:4], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_load_word_vectors_zeroes_the_pad_row(tmp_path):
    from hfnn.data.tokenization import train_tokenizer

    tokenizer = train_tokenizer(["good film", "bad film"], kind="word")
    path = tmp_path / "v.txt"
    path.write_text("good 1 1\n", encoding="utf-8")
    vectors = load_word_vectors(path, tokenizer)
    assert vectors.shape == (len(tokenizer), 2)
    assert torch.equal(vectors[tokenizer.pad_token_id], torch.zeros(2))
    torch.testing.assert_close(vectors[tokenizer.convert_tokens_to_ids("good")], torch.ones(2))


@pytest.mark.parametrize(
    "content, line, message",
    [
        ("good 1 2 3\nbad 1 2\n", 2, "expected a word and 3 numbers"),
        ("3 2\ngood 1 2\nfilm 1 x\n", 3, "'x' is not a number"),
        ("good 1 2\n\nbad 1 nan\n", 3, "NaN"),
    ],
)
def test_load_word_vectors_names_file_and_line_of_a_malformed_line(tmp_path, content, line, message):
    path = tmp_path / "vectors.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"vectors\.txt, line {line}: .*{message}"):
        load_word_vectors(path, VOCAB_MAP)


def test_load_word_vectors_rejects_binary_and_missing_files(tmp_path):
    binary = tmp_path / "vectors.bin"
    binary.write_bytes(b"2 3\ngood \x00\x80\xff\xfe\x01\x02")
    with pytest.raises(ValueError, match="binary word2vec"):
        load_word_vectors(binary, VOCAB_MAP)
    with pytest.raises(FileNotFoundError):
        load_word_vectors(tmp_path / "nope.txt", VOCAB_MAP)
