"""Tokenizers: the four kinds, special-token contract, round trips, save/reload through AutoTokenizer."""

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hfnn.data.tokenization import KINDS, SPECIAL_TOKENS, load_or_train_tokenizer, train_tokenizer

TEXTS = [
    "Romeo.\nBut soft, what light through yonder window breaks?\n\n",
    "Juliet.\nO Romeo, Romeo! wherefore art thou Romeo?\n",
    "  Deny thy father and refuse thy name;\tOr, if thou wilt not...\n",
]
PHONEMES = ["K AE1 T", "D AO1 G", "K AE1 T S", "HH AH0 L OW1"]


def _train(kind, **kwargs):
    texts = PHONEMES if kind == "phoneme" else TEXTS
    if kind == "bpe":
        kwargs.setdefault("vocab_size", 300)
    return train_tokenizer(texts, kind, **kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_special_tokens_contract(kind):
    tok = _train(kind)
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert (tok.pad_token, tok.unk_token, tok.bos_token, tok.eos_token) == SPECIAL_TOKENS
    assert (tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2, 3)
    sample = PHONEMES[0] if kind == "phoneme" else TEXTS[0]
    ids = tok(sample).input_ids
    assert not {0, 2, 3} & set(ids)  # nothing added without add_bos_eos


def test_char_round_trip_exact_including_whitespace():
    tok = _train("char")
    vocab = tok.get_vocab()
    assert {" ", "\n", "\t", "R", "?"} <= set(vocab)
    assert len(vocab) == len(set("".join(TEXTS))) + 4
    for s in TEXTS + ["thou  \n\n art", ""]:
        ids = tok(s).input_ids
        assert len(ids) == len(s)  # one token per character
        assert tok.decode(ids) == s
    ids = tok("Zq€ Romeo").input_ids
    assert ids[:3] == [1, 1, 1] and tok.decode(ids[3:]) == " Romeo"


def test_char_vocab_size_and_min_frequency():
    tok = train_tokenizer(["aaaab", "aac", "d"], "char", min_frequency=2)
    assert set(tok.get_vocab()) == set(SPECIAL_TOKENS) | {"a"}
    tok = train_tokenizer(["aaabbc"], "char", vocab_size=6)  # 4 specials + the 2 commonest chars
    assert set(tok.get_vocab()) == set(SPECIAL_TOKENS) | {"a", "b"}
    assert tok("abc").input_ids[2] == tok.unk_token_id


def test_bpe_round_trips_any_string():
    tok = _train("bpe")
    assert len(tok) == 300
    for s in TEXTS + ["unseen words, ünïcödé and emoji 🎭\n\t", "  leading spaces"]:
        assert tok.decode(tok(s).input_ids) == s
    assert tok.unk_token_id not in tok("🎭 ünïcödé").input_ids  # byte-level: never <unk>
    assert len(tok("Romeo, Romeo").input_ids) < len("Romeo, Romeo")  # merges learned


def test_bpe_vocab_too_small():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(TEXTS, "bpe", vocab_size=100)


def test_word_level_splits_punctuation_and_honours_limits():
    tok = _train("word")
    tokens = tok.convert_ids_to_tokens(tok("O Romeo, Romeo!").input_ids)
    assert tokens == ["O", "Romeo", ",", "Romeo", "!"]
    assert tok.decode(tok("O Romeo, Romeo!").input_ids) == "O Romeo, Romeo!"
    assert tok("Tybalt").input_ids == [tok.unk_token_id]
    frequent = train_tokenizer(TEXTS, "word", min_frequency=2)
    vocab = set(frequent.get_vocab()) - set(SPECIAL_TOKENS)
    assert "Romeo" in vocab and "Juliet" not in vocab
    small = train_tokenizer(TEXTS, "word", vocab_size=7)
    assert len(small) == 7
    assert train_tokenizer(["Hello hello"], "word", lowercase=True)("HELLO").input_ids == [4]


def test_phoneme_tokens_are_symbols():
    tok = _train("phoneme")
    assert (set(tok.get_vocab()) - set(SPECIAL_TOKENS)
            == {"K", "AE1", "T", "D", "AO1", "G", "S", "HH", "AH0", "L", "OW1"})
    ids = tok("K  AE1 T\tS").input_ids
    assert tok.convert_ids_to_tokens(ids) == ["K", "AE1", "T", "S"]
    assert tok.decode(ids) == "K AE1 T S"
    assert tok("K ZH").input_ids[1] == tok.unk_token_id
    # a column of reference lists (cmudict) is flattened
    assert len(train_tokenizer([["K AE1 T", "K AH0 T"]], "phoneme")) == 4 + 4


def test_add_bos_eos_and_padding():
    tok = train_tokenizer(TEXTS, "char", add_bos_eos=True, padding_side="left", model_max_length=16)
    ids = tok("Romeo").input_ids
    assert ids[0] == 2 and ids[-1] == 3 and len(ids) == 7
    assert tok("Romeo", add_special_tokens=False).input_ids == ids[1:-1]
    assert tok.decode(ids, skip_special_tokens=True) == "Romeo"
    batch = tok(["Ro", "Romeo"], padding=True)
    assert batch.input_ids[0][:3] == [0, 0, 0] and batch.attention_mask[0][:3] == [0, 0, 0]
    assert len(tok("x" * 40, truncation=True).input_ids) == 16


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_autotokenizer_reload(kind, tmp_path):
    tok = _train(kind, add_bos_eos=(kind == "word"), padding_side="left")
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    samples = PHONEMES + ["K ZH T"] if kind == "phoneme" else TEXTS + ["Unseen Zebra 🎭!"]
    for s in samples:
        ids = tok(s).input_ids
        assert again(s).input_ids == ids
        assert again.decode(ids) == tok.decode(ids)
    assert (again.pad_token_id, again.unk_token_id, again.bos_token_id, again.eos_token_id) == (0, 1, 2, 3)
    assert again.padding_side == "left"
    assert load_or_train_tokenizer(tmp_path)(samples[0]).input_ids == tok(samples[0]).input_ids


def test_iterables_and_datasets_columns():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": TEXTS})
    from_column = train_tokenizer(ds["text"], "char")
    from_generator = train_tokenizer((t for t in TEXTS), "char")
    assert from_column.get_vocab() == from_generator.get_vocab() == train_tokenizer(TEXTS, "char").get_vocab()


def test_errors():
    with pytest.raises(ValueError, match="char, bpe, word, phoneme"):
        train_tokenizer(TEXTS, "sentencepiece")
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer([], "char")
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer(iter(["", ""]), "word")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        train_tokenizer(["ok", 3], "char")
    with pytest.raises(ValueError, match="padding_side"):
        train_tokenizer(TEXTS, "char", padding_side="middle")
    with pytest.raises(ValueError, match="texts"):
        load_or_train_tokenizer(None, None, "char")
    assert load_or_train_tokenizer(None, TEXTS, "char").decode([]) == ""
