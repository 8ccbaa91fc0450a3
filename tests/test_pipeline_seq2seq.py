"""The ``seq2seq-generation`` pipeline: saved folders, batching, generate arguments, attention, task inference."""

import json
import os

import pytest
import torch
from transformers import pipeline

import hfnn  # noqa: F401  (registers the task and the Auto classes)
from hfnn.data.tokenization import train_tokenizer
from hfnn.models.configuration_rnn_seq2seq import RnnSeq2SeqConfig
from hfnn.models.modeling_rnn_seq2seq import RnnSeq2SeqForConditionalGeneration
from hfnn.models.pipeline_seq2seq import (
    INFERRED_TASK,
    SOURCE_TOKENIZER_SUBFOLDER,
    TASK,
    Seq2SeqGenerationPipeline,
    mark_for_pipeline,
)
from tests.helpers import run_without_hfnn, tolerance

PAIRS = [
    ("knight", "N AY1 T"),
    ("night", "N AY1 T"),
    ("cat", "K AE1 T"),
    ("act", "AE1 K T"),
    ("tack", "T AE1 K"),
    ("kit", "K IH1 T"),
    ("thick", "TH IH1 K"),
    ("tin", "T IH1 N"),
]
WORDS = [word for word, _ in PAIRS]


def tokenizers():
    source = train_tokenizer(WORDS, kind="char")
    target = train_tokenizer([phones for _, phones in PAIRS], kind="phoneme")
    return source, target


def train_tiny_g2p(source, target, steps=150):
    """Memorise PAIRS (a few seconds): enough for the pipeline to give the real pronunciations."""
    torch.manual_seed(0)
    config = RnnSeq2SeqConfig(
        source_vocab_size=len(source), vocab_size=len(target), hidden_size=32, embedding_size=16, dropout=0.0,
        attention="bahdanau", max_length=12,
    )
    model = RnnSeq2SeqForConditionalGeneration(config)
    inputs = source(WORDS, padding=True, return_tensors="pt")
    rows = [target(phones).input_ids + [target.eos_token_id] for _, phones in PAIRS]
    width = max(map(len, rows))
    labels = torch.tensor([row + [-100] * (width - len(row)) for row in rows])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(steps):
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained folder the way the training pipeline writes it: model, target tokenizer at the root, source
    tokenizer in source_tokenizer/, marked for task inference."""
    folder = tmp_path_factory.mktemp("g2p") / "model"
    source, target = tokenizers()
    model = train_tiny_g2p(source, target)
    mark_for_pipeline(model.config, folder)
    model.save_pretrained(folder)
    target.save_pretrained(folder)
    source.save_pretrained(folder / SOURCE_TOKENIZER_SUBFOLDER)
    return folder, model, source, target


def test_pipeline_gives_pronunciations_from_a_saved_folder(saved):
    folder, *_ = saved
    g2p = pipeline(TASK, model=str(folder))
    assert isinstance(g2p, Seq2SeqGenerationPipeline)
    assert g2p("knight") == [{"generated_text": "N AY1 T"}]
    assert [g2p(word)[0]["generated_text"] for word in WORDS] == [phones for _, phones in PAIRS]


def test_batched_lists_give_the_same_as_one_by_one(saved):
    folder, *_ = saved
    g2p = pipeline(TASK, model=str(folder))
    one_by_one = [g2p(word)[0] for word in WORDS]
    assert g2p(WORDS) == one_by_one
    assert g2p(WORDS, batch_size=3) == one_by_one  # padded batches of different lengths
    assert g2p(WORDS, batch_size=4, num_beams=3) == [g2p(word, num_beams=3)[0] for word in WORDS]


def test_generate_arguments_pass_through(saved):
    folder, model, source, target = saved
    g2p = pipeline(TASK, model=str(folder))
    assert g2p("knight", max_new_tokens=1) == [{"generated_text": "N"}]
    beams = g2p("knight", num_beams=4, num_return_sequences=3, return_tensors=True)
    assert len(beams) == 3 and len({b["generated_text"] for b in beams}) == 3
    ids = source("knight", return_tensors="pt")
    direct = model.generate(**ids, num_beams=4, num_return_sequences=3)
    assert [b["generated_token_ids"] for b in beams] == direct.tolist()
    batched = g2p(["knight", "cat"], num_beams=2, num_return_sequences=2)
    assert [len(r) for r in batched] == [2, 2]  # one list per input when several sequences are returned
    # init-time generation parameters apply to every call
    short = pipeline(TASK, model=str(folder), max_new_tokens=2)
    assert short("knight") == [{"generated_text": "N AY1"}]


@pytest.mark.parametrize("num_beams", [1, 3])
def test_attention_weights_rows_are_output_symbols_columns_source_symbols(saved, num_beams):
    folder, model, source, target = saved
    g2p = pipeline(TASK, model=str(folder))
    (record,) = g2p("knight", return_attentions=True, num_beams=num_beams)
    assert record["generated_text"] == "N AY1 T"
    assert record["source_tokens"] == list("knight")
    assert record["generated_tokens"] == ["N", "AY1", "T"]
    weights = torch.tensor(record["attentions"])
    assert weights.shape == (3, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    # the same weights as the model's own forward pass over its output
    ids = source("knight", return_tensors="pt")
    decoder_input_ids = torch.tensor([[model.config.decoder_start_token_id] + target("N AY1 T").input_ids])
    out = model(**ids, decoder_input_ids=decoder_input_ids, output_attentions=True)
    torch.testing.assert_close(weights, out.cross_attentions[0][0, 0, :3], atol=1e-5, rtol=1e-4)


def test_attention_with_padded_batches_drops_padding(saved):
    folder, *_ = saved
    g2p = pipeline(TASK, model=str(folder))
    records = g2p(["knight", "cat"], batch_size=2, return_attentions=True)
    assert [len(r["attentions"][0]) for r in records] == [6, 3]
    for record, word in zip(records, ["knight", "cat"]):
        (alone,) = g2p(word, return_attentions=True)
        assert ({k: v for k, v in record.items() if k != "attentions"}
                == {k: v for k, v in alone.items() if k != "attentions"})
        torch.testing.assert_close(torch.tensor(record["attentions"]), torch.tensor(alone["attentions"]),
                                   **tolerance(depth=2))


def test_marked_folder_lets_transformers_infer_the_task(saved):
    folder, *_ = saved
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"][INFERRED_TASK]["impl"] == "pipeline_seq2seq.Seq2SeqGenerationPipeline"
    assert (folder / "pipeline_seq2seq.py").is_file()
    inferred = pipeline(model=str(folder), trust_remote_code=True)
    assert inferred.task == INFERRED_TASK
    assert inferred(WORDS) == pipeline(TASK, model=str(folder))(WORDS)
    # transformers runs a config's custom pipeline only as trusted remote code
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline(model=str(folder))


def test_mark_for_pipeline_keeps_other_entries_and_returns_the_config(tmp_path):
    config = RnnSeq2SeqConfig(source_vocab_size=10, vocab_size=10, hidden_size=8)
    config.custom_pipelines = {"other": {"impl": "x.Y"}}
    assert mark_for_pipeline(config) is config
    assert set(config.custom_pipelines) == {"other", INFERRED_TASK}
    assert not os.listdir(tmp_path)
    mark_for_pipeline(config, tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["errors.py", "pipeline_seq2seq.py",
                                                    "registry.py"]  # what it imports


def test_pipeline_save_pretrained_writes_everything_needed(saved, tmp_path):
    folder, *_ = saved
    g2p = pipeline(TASK, model=str(folder))
    g2p.save_pretrained(tmp_path)
    assert (tmp_path / SOURCE_TOKENIZER_SUBFOLDER / "tokenizer.json").is_file()
    assert (tmp_path / "pipeline_seq2seq.py").is_file() and (tmp_path / "registry.py").is_file()
    assert pipeline(TASK, model=str(tmp_path))(WORDS) == g2p(WORDS)


def test_model_object_with_explicit_tokenizers(saved):
    _, model, source, target = saved
    g2p = pipeline(TASK, model=model, tokenizer=target, source_tokenizer=source)
    assert g2p("knight") == [{"generated_text": "N AY1 T"}]


def test_pipeline_runs_without_hfnn_installed(saved):
    folder, *_ = saved
    expected = pipeline(TASK, model=str(folder))(WORDS, num_beams=2)
    out = run_without_hfnn(
        f"""
        import json, torch
        from transformers import pipeline
        torch.set_num_threads(1)
        g2p = pipeline(model={str(folder)!r}, trust_remote_code=True)
        print(json.dumps(g2p({WORDS!r}, num_beams=2)))
        """,
        cwd=folder.parent,
    )
    assert json.loads(out.strip().splitlines()[-1]) == expected


def test_pipeline_is_model_agnostic_transformer_seq2seq(tmp_path):
    from hfnn import TransformerConfig
    from hfnn.models.modeling_transformer import TransformerForConditionalGeneration

    source, target = tokenizers()
    torch.manual_seed(0)
    config = TransformerConfig(
        is_encoder_decoder=True, source_vocab_size=len(source), vocab_size=len(target), hidden_size=16,
        num_attention_heads=2, num_hidden_layers=1, max_position_embeddings=32, dropout=0.0, attention_dropout=0.0,
    )
    model = TransformerForConditionalGeneration(config).eval()
    for param in model.parameters():
        torch.nn.init.normal_(param, std=0.5)
    mark_for_pipeline(model.config, tmp_path)
    model.save_pretrained(tmp_path)
    target.save_pretrained(tmp_path)
    source.save_pretrained(tmp_path / SOURCE_TOKENIZER_SUBFOLDER)

    translate = pipeline(TASK, model=str(tmp_path))
    ids = source(["knight", "cat"], padding=True, return_tensors="pt")
    direct = model.generate(**ids, max_new_tokens=5, num_beams=2)
    expected = [{"generated_text": text} for text in target.batch_decode(direct, skip_special_tokens=True)]
    assert translate(["knight", "cat"], max_new_tokens=5, num_beams=2) == expected
    # a random model may end at once or emit only special symbols: suppress them so that there are rows to check
    (record,) = translate("knight", max_new_tokens=4, suppress_tokens=list(target.all_special_ids),
                          return_attentions=True)
    weights = torch.tensor(record["attentions"])
    assert len(record["generated_tokens"]) == 4
    assert weights.shape == (len(record["generated_tokens"]), 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[0]))
    assert (pipeline(model=str(tmp_path), trust_remote_code=True)("knight", max_new_tokens=5)
            == translate("knight", max_new_tokens=5))


def test_decoder_only_models_are_rejected():
    from hfnn import RnnConfig, RnnForCausalLM

    _, target = tokenizers()
    model = RnnForCausalLM(RnnConfig(vocab_size=len(target), hidden_size=8, num_hidden_layers=1))
    with pytest.raises(ValueError, match="encoder–decoder"):
        pipeline(TASK, model=model, tokenizer=target)
