"""Reliability of tokenizers, the seq2seq pipeline and saved-folder loading: special-token strings in text
stay text, Unicode forms agree, a folder missing what inference needs is refused with a message naming it,
and awkward inputs (empty, over-long) give a clear answer instead of a wrong one or a traceback."""

import json
import shutil
import unicodedata

import pytest
import torch
from transformers import AutoTokenizer, pipeline

import hfnn  # noqa: F401  (registers the Auto classes and the seq2seq task)
from hfnn.data.tokenization import KINDS, load_or_train_tokenizer, train_tokenizer
from hfnn.models.pipeline_seq2seq import INFERRED_TASKS, SOURCE_TOKENIZER_SUBFOLDER, TASK, mark_for_pipeline
from tests.test_hub import WORDS, save_tiny_model

SPECIAL_IDS = {0, 2, 3}  # <pad>, <s>, </s> (<unk> = 1 is what an unknown piece legitimately becomes)
HTML = "<s>bold</s> <pad> x</s><unk>"
TRAIN = ["a <s> b </s> c <pad> <unk> d", "plain text with <s> and </s>", "K AE1 T <pad> D AO1 G"]


def _vocab_size(kind):
    return 300 if kind == "bpe" else None


def _drop_split_flag(folder):
    """Makes a saved tokenizer look like one saved before hfnn set split_special_tokens."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.pop("split_special_tokens", None)
    path.write_text(json.dumps(config))


# ---------------------------------------------------------------- tokenizers: text is text


@pytest.mark.parametrize("kind", KINDS)
def test_special_token_strings_in_text_never_become_special_ids(tmp_path, kind):
    tok = train_tokenizer(TRAIN, kind=kind, vocab_size=_vocab_size(kind))
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for t in (tok, reloaded):
        assert not SPECIAL_IDS & set(t(HTML)["input_ids"]), (kind, t.tokenize(HTML))
        assert not SPECIAL_IDS & set(t.encode(HTML)), kind
        assert not {"<s>", "</s>", "<pad>"} & set(t.tokenize(HTML)), kind
        batch = t([HTML, "a"], padding=True)
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
            assert not SPECIAL_IDS & {i for i, m in zip(ids, mask) if m}, kind


@pytest.mark.parametrize("kind", KINDS)
def test_bos_eos_are_added_only_by_the_tokenizer(tmp_path, kind):
    tok = train_tokenizer(TRAIN, kind=kind, vocab_size=_vocab_size(kind), add_bos_eos=True)
    tok.save_pretrained(tmp_path)
    ids = AutoTokenizer.from_pretrained(tmp_path)(HTML)["input_ids"]
    assert ids[0] == 2 and ids[-1] == 3
    assert not SPECIAL_IDS & set(ids[1:-1])


def test_phoneme_tokenizer_trains_on_text_spelling_special_tokens():
    # a whitespace-separated "<pad>" used to take the vocabulary slot of the special token (id contract broken)
    tok = train_tokenizer(["<pad> K AE1 T", "<s> D AO1 G </s>"], kind="phoneme")
    assert [tok.convert_ids_to_tokens(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert not SPECIAL_IDS & set(tok("K <pad> T <s>")["input_ids"])


def test_tokenizer_saved_without_the_flag_reads_text_once_loaded_by_hfnn(tmp_path):
    train_tokenizer(TRAIN, kind="char").save_pretrained(tmp_path)
    _drop_split_flag(tmp_path)
    tok = load_or_train_tokenizer(tmp_path)
    assert not SPECIAL_IDS & set(tok(HTML)["input_ids"])
    tok.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "tokenizer_config.json").read_text())["split_special_tokens"] is True


@pytest.mark.parametrize("kind", ["char", "word", "phoneme"])
def test_decomposed_and_composed_unicode_give_the_same_tokens(kind):
    composed = "café naïve"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    tok = train_tokenizer([composed], kind=kind)
    assert tok(decomposed)["input_ids"] == tok(composed)["input_ids"]
    assert tok.unk_token_id not in tok(decomposed)["input_ids"]
    # training text in NFD teaches the same vocabulary
    assert train_tokenizer([decomposed], kind=kind).get_vocab() == tok.get_vocab()


# ---------------------------------------------------------------- seq2seq pipeline: folders and inputs


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel_inf")
    save_tiny_model("rnn_seq2seq", "AutoModelForSeq2SeqLM", root / "g2p")
    save_tiny_model("transformer", "AutoModelForSeq2SeqLM", root / "tf")  # max_position_embeddings=64
    save_tiny_model("rnn", "AutoModelForCausalLM", root / "lm")
    save_tiny_model("cnn", "AutoModelForSequenceClassification", root / "cnn")
    return root


def test_folder_without_source_tokenizer_is_refused(folders, tmp_path):
    folder = tmp_path / "g2p"
    shutil.copytree(folders / "g2p", folder)
    shutil.rmtree(folder / SOURCE_TOKENIZER_SUBFOLDER)
    with pytest.raises(ValueError, match=r"has no source_tokenizer/ folder.*source_vocab_size"):
        pipeline(TASK, model=str(folder))
    # naming the source tokenizer explicitly still works
    pipe = pipeline(TASK, model=str(folder), source_tokenizer=str(folders / "g2p" / SOURCE_TOKENIZER_SUBFOLDER))
    assert pipe("hello", max_new_tokens=3)


def test_shared_vocabulary_model_needs_no_source_tokenizer(tmp_path):
    from hfnn import TransformerConfig
    from hfnn.models.modeling_transformer import TransformerForConditionalGeneration

    tok = train_tokenizer(WORDS, kind="char")
    config = TransformerConfig(is_encoder_decoder=True, vocab_size=len(tok), hidden_size=16, num_attention_heads=2,
                               num_hidden_layers=1, intermediate_size=32, max_position_embeddings=32)
    TransformerForConditionalGeneration(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    pipe = pipeline(TASK, model=str(tmp_path))
    assert pipe.source_tokenizer is pipe.tokenizer


def test_seq2seq_pipeline_reads_special_token_strings_as_text(folders, tmp_path):
    folder = tmp_path / "g2p"
    shutil.copytree(folders / "g2p", folder)
    _drop_split_flag(folder / SOURCE_TOKENIZER_SUBFOLDER)
    pipe = pipeline(TASK, model=str(folder))
    ids = pipe.preprocess("<s>hello</s>")["input_ids"][0].tolist()
    assert not SPECIAL_IDS & set(ids), ids


@pytest.mark.parametrize("batch_size", [1, 3])
def test_empty_source_gives_empty_output_and_leaves_the_others_alone(folders, batch_size):
    pipe = pipeline(TASK, model=str(folders / "g2p"))
    alone = [pipe(word, max_new_tokens=4)[0] for word in ("hello", "light")]
    out = pipe(["hello", "", "light"], max_new_tokens=4, batch_size=batch_size)
    assert out == [alone[0], {"generated_text": ""}, alone[1]]
    (record,) = pipe("", max_new_tokens=4, return_attentions=True)
    assert record["generated_text"] == "" and record["attentions"] == []


def test_overlong_source_names_the_limit_or_is_truncated_on_request(folders):
    pipe = pipeline(TASK, model=str(folders / "tf"))
    long = "hello" * 15  # 75 characters, the model reads 64 positions
    with pytest.raises(ValueError, match=r"is 75 tokens long; this model reads at most 64 .*truncation=True"):
        pipe(long, max_new_tokens=2)
    assert pipe(long, max_new_tokens=2, truncation=True) == pipe(long[:64], max_new_tokens=2)


def test_saved_model_max_length_beyond_the_positions_is_lowered(folders, tmp_path):
    folder = tmp_path / "tf"
    shutil.copytree(folders / "tf", folder)
    for sub in (folder, folder / SOURCE_TOKENIZER_SUBFOLDER):
        config = json.loads((sub / "tokenizer_config.json").read_text())
        config["model_max_length"] = 1000
        (sub / "tokenizer_config.json").write_text(json.dumps(config))
    pipe = pipeline(TASK, model=str(folder))
    assert pipe.source_tokenizer.model_max_length == 64
    assert pipe("hello" * 15, max_new_tokens=2, truncation=True)


def test_source_tokenizer_larger_than_the_encoder_is_refused(folders, tmp_path):
    folder = tmp_path / "g2p"
    shutil.copytree(folders / "g2p", folder)
    shutil.rmtree(folder / SOURCE_TOKENIZER_SUBFOLDER)
    big = train_tokenizer(["abcdefghijklmnopqrstuvwxyz0123456789"], kind="char")
    big.save_pretrained(folder / SOURCE_TOKENIZER_SUBFOLDER)
    with pytest.raises(ValueError, match=r"source tokenizer has \d+ tokens but the model's encoder takes"):
        pipeline(TASK, model=str(folder))


# ---------------------------------------------------------------- pipeline(model=folder) without a task


@pytest.mark.parametrize("name,head", [("lm", "ForCausalLM"), ("cnn", "ForSequenceClassification")])
def test_marked_language_model_and_classifier_folders_infer_their_task(folders, tmp_path, name, head):
    folder = tmp_path / name
    shutil.copytree(folders / name, folder)
    config = json.loads((folder / "config.json").read_text())

    class Config:  # what mark_for_pipeline reads and writes, as on a PretrainedConfig
        architectures = config["architectures"]

    marked = mark_for_pipeline(Config(), folder)
    config["custom_pipelines"] = marked.custom_pipelines
    (folder / "config.json").write_text(json.dumps(config))
    task = INFERRED_TASKS[head][0]
    assert set(marked.custom_pipelines) == {task}
    pipe = pipeline(model=str(folder), trust_remote_code=True)
    assert pipe.task == task
    kwargs = {"max_new_tokens": 2, "do_sample": False} if name == "lm" else {}
    assert pipe("hello", **kwargs) == pipeline(task.removeprefix("hfnn-"), model=str(folder))("hello", **kwargs)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        pipeline(model=str(folder))


def test_model_object_pipeline_uses_its_positions_even_without_a_folder(folders):
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(folders / "tf")
    target = AutoTokenizer.from_pretrained(folders / "tf")
    source = AutoTokenizer.from_pretrained(folders / "tf" / SOURCE_TOKENIZER_SUBFOLDER)
    pipe = pipeline(TASK, model=model, tokenizer=target, source_tokenizer=source)
    with pytest.raises(ValueError, match="at most 64"):
        pipe("hello" * 15)
    assert torch.is_tensor(pipe.preprocess("hello")["input_ids"])


# ---------------------------------------------------------------- sharing: what the Hub copy needs to load


def test_manifest_carries_the_custom_pipeline_code(folders, tmp_path):
    from hfnn.sharing.hub import upload_manifest

    folder = tmp_path / "g2p"
    shutil.copytree(folders / "g2p", folder)
    config = json.loads((folder / "config.json").read_text())

    class Config:
        architectures = config["architectures"]
        is_encoder_decoder = True

    config["custom_pipelines"] = mark_for_pipeline(Config(), folder).custom_pipelines
    (folder / "config.json").write_text(json.dumps(config))
    assert "pipeline_seq2seq.py" in upload_manifest(folder)


@pytest.mark.parametrize("remove,message", [
    (["tokenizer.json", "tokenizer_config.json"], "has no tokenizer"),
    ([SOURCE_TOKENIZER_SUBFOLDER], "has no source_tokenizer/ folder"),
])
def test_manifest_refuses_a_folder_that_cannot_read_text(folders, tmp_path, remove, message):
    from hfnn.sharing.hub import ManifestError, upload_manifest

    folder = tmp_path / "g2p"
    shutil.copytree(folders / "g2p", folder)
    for name in remove:
        path = folder / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(ManifestError, match=message):
        upload_manifest(folder)


def test_mark_for_pipeline_reads_the_head_from_the_model_or_refuses_to_guess(tmp_path):
    from hfnn import RnnConfig, RnnForCausalLM, RnnForSequenceClassification

    lm = RnnForCausalLM(RnnConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1))
    assert set(mark_for_pipeline(lm).custom_pipelines) == {INFERRED_TASKS["ForCausalLM"][0]}
    classifier = RnnForSequenceClassification(RnnConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,
                                                        num_labels=2))
    assert set(mark_for_pipeline(classifier).custom_pipelines) == {INFERRED_TASKS["ForSequenceClassification"][0]}
    # a bare config of a decoder-only architecture does not say which head it is for: no seq2seq entry by default
    with pytest.raises(ValueError, match="cannot tell the head"):
        mark_for_pipeline(RnnConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1))
