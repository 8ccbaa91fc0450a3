"""Tokenizers trained on a corpus with the ``tokenizers`` library, returned as transformers tokenizers.

:func:`train_tokenizer` builds one of four kinds and wraps it in a
``transformers.PreTrainedTokenizerFast`` that ``save_pretrained`` writes and
``AutoTokenizer.from_pretrained`` reads back (no hfnn needed to load it):

========= =================================================================================
kind      what a token is
========= =================================================================================
char      one character; whitespace and newlines are tokens too, ``decode`` concatenates, so
          ``tok.decode(tok(s).input_ids) == s`` for every NFC-normalised ``s`` made of known characters;
          unseen characters become ``<unk>``
bpe       byte-level BPE (GPT-2 style): every string encodes, ``decode`` gives it back exactly
word      words and single punctuation marks (split on whitespace and punctuation); rare words
          (below ``min_frequency`` or beyond ``vocab_size``) become ``<unk>``; ``decode`` joins
          with spaces and re-attaches punctuation (not an exact round trip)
phoneme   whitespace-separated symbols, e.g. ARPAbet targets ``"K AE1 T"``; ``decode`` joins
          them with single spaces
========= =================================================================================

Every kind has the special tokens ``<pad>`` = 0, ``<unk>`` = 1, ``<s>`` = 2, ``</s>`` = 3, set as
the tokenizer's pad/unk/bos/eos tokens. Encoding adds no special tokens unless
``add_bos_eos=True``, which installs a ``"<s> $A </s>"`` post-processor.

Text is text. Special tokens are only ever added by the tokenizer (padding, the post-processor),
never read out of the text: ``"<s>"`` inside HTML or code encodes as the characters/pieces
``<``, ``s``, ``>``. Every tokenizer is built with ``split_special_tokens=True``, which
``save_pretrained`` writes to ``tokenizer_config.json`` so ``AutoTokenizer.from_pretrained`` keeps
it; :func:`text_only` sets it on a tokenizer loaded from elsewhere. The phoneme kind also splits
``<`` and ``>`` off symbols, so that a whitespace-separated ``<pad>`` cannot match the vocabulary
entry of the special token.

The char, word and phoneme kinds NFC-normalise text (training text too), so a decomposed
``"e" + U+0301`` is the same token as ``"é"``. The byte-level bpe kind keeps bytes as they are
(its exact round trip).
"""

from __future__ import annotations

import collections
import collections.abc
import os
import unicodedata
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hfnn.models.errors import DataError, FileError, OptionError

__all__ = ["KINDS", "SPECIAL_TOKENS", "train_tokenizer", "load_or_train_tokenizer", "text_only"]

KINDS = ("char", "bpe", "word", "phoneme")
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")  # ids 0, 1, 2, 3
PAD, UNK, BOS, EOS = SPECIAL_TOKENS
DEFAULT_BPE_VOCAB_SIZE = 8000


def _as_text_list(texts) -> list[str]:
    """Materialise ``texts`` (list, generator, datasets column...) as a list of strings.

    A single string counts as one text; a list/tuple item (e.g. cmudict's ``references``) is
    flattened one level.
    """
    if isinstance(texts, str):
        texts = [texts]
    if texts is None:
        raise ValueError("train_tokenizer: texts is None; give an iterable of strings")
    if isinstance(texts, collections.abc.Sequence) and not isinstance(texts, (list, tuple)):
        texts = texts[:]  # a datasets Column: slicing reads Arrow in one go, iterating goes row by row
    out: list[str] = []
    for i, item in enumerate(texts):
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, (list, tuple)) and all(isinstance(x, str) for x in item):
            out.extend(item)
        else:
            raise TypeError(f"train_tokenizer: texts[{i}] is {type(item).__name__}, expected str")
    if not any(out):
        raise DataError("train_tokenizer: texts is empty (no non-empty string to learn a vocabulary from)")
    return out


def _char_vocab(texts: list[str], vocab_size: int | None, min_frequency: int, lowercase: bool) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        text = unicodedata.normalize("NFC", text)
        counts.update(text.lower() if lowercase else text)
    chars = [c for c, n in counts.items() if n >= min_frequency and c not in SPECIAL_TOKENS]
    chars.sort(key=lambda c: (-counts[c], c))  # most frequent first, ties by code point
    if vocab_size is not None:
        chars = chars[: max(vocab_size - len(SPECIAL_TOKENS), 0)]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for c in sorted(chars):  # ids in code-point order: stable and readable
        vocab[c] = len(vocab)
    return vocab


def _normalizer(lowercase: bool, nfc: bool = True):
    """NFC (composed characters) then, optionally, lower case."""
    steps = ([normalizers.NFC()] if nfc else []) + ([normalizers.Lowercase()] if lowercase else [])
    if not steps:
        return None
    return steps[0] if len(steps) == 1 else normalizers.Sequence(steps)


def _build(texts: list[str], kind: str, vocab_size: int | None, min_frequency: int, lowercase: bool) -> Tokenizer:
    specials = list(SPECIAL_TOKENS)
    if kind == "char":
        # BPE without merges: every character is one token, unknown characters map to <unk>.
        tok = Tokenizer(models.BPE(vocab=_char_vocab(texts, vocab_size, min_frequency, lowercase),
                                   merges=[], unk_token=UNK, fuse_unk=False))
        tok.normalizer = _normalizer(lowercase)
        tok.decoder = decoders.Fuse()
        tok.add_special_tokens(specials)
        return tok

    if kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        if lowercase:
            tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        size = DEFAULT_BPE_VOCAB_SIZE if vocab_size is None else vocab_size
        minimum = len(pre_tokenizers.ByteLevel.alphabet()) + len(specials)
        if size < minimum:
            raise OptionError(f"train_tokenizer: a byte-level BPE needs vocab_size >= {minimum} "
                              f"(256 bytes + 4 specials), got {size}")
        trainer = trainers.BpeTrainer(vocab_size=size, min_frequency=min_frequency, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    else:
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.normalizer = _normalizer(lowercase)
        if kind == "word":
            # punctuation (< and > included) is split off, so no word is ever spelt like a special token
            tok.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
            )
        else:  # phoneme: < and > are split off so that a symbol "<pad>" in the text is not the special <pad>
            tok.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("[<>]"), behavior="isolated")]
            )
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size if vocab_size is not None else 10**9,
                                            min_frequency=min_frequency, special_tokens=specials,
                                            show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def train_tokenizer(
    texts: Iterable[str],
    kind: str = "char",
    vocab_size: int | None = None,
    min_frequency: int = 1,
    lowercase: bool = False,
    padding_side: str = "right",
    model_max_length: int | None = None,
    add_bos_eos: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a tokenizer of the given ``kind`` on ``texts``.

    Args:
        texts: any iterable of strings (a list, a generator, a ``datasets`` column); list items
            are flattened one level (so cmudict's ``references`` column works).
        kind: ``"char"``, ``"bpe"``, ``"word"`` or ``"phoneme"`` (see the module docstring).
        vocab_size: the largest vocabulary, the 4 special tokens included. None: every
            character/word/symbol seen (char, word, phoneme), 8000 for bpe.
        min_frequency: drop characters/words/symbols (bpe: merges) seen fewer times.
        lowercase: lower-case text before tokenising (then decode cannot restore case).
        padding_side: "right" (training) or "left" (batched generation).
        model_max_length: the longest input the model takes (``truncation=True`` cuts there).
        add_bos_eos: encode as ``<s> text </s>`` (ids 2 ... 3) when ``add_special_tokens`` is on.

    Returns:
        a ``PreTrainedTokenizerFast`` with pad ``<pad>`` (0), unk ``<unk>`` (1), bos ``<s>`` (2),
        eos ``</s>`` (3).
    """
    if kind not in KINDS:
        raise OptionError(f"train_tokenizer: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if vocab_size is not None and (not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS)):
        raise OptionError(f"train_tokenizer: vocab_size must be an integer above {len(SPECIAL_TOKENS)} "
                          f"(the special tokens), got {vocab_size!r}")
    if not isinstance(min_frequency, int) or min_frequency < 1:
        raise OptionError(f"train_tokenizer: min_frequency must be a positive integer, got {min_frequency!r}")
    if padding_side not in ("right", "left"):
        raise OptionError(f"train_tokenizer: padding_side must be 'right' or 'left', got {padding_side!r}")
    if model_max_length is not None and (not isinstance(model_max_length, int) or model_max_length < 1):
        raise OptionError(f"train_tokenizer: model_max_length must be a positive integer, got {model_max_length!r}")

    tok = _build(_as_text_list(texts), kind, vocab_size, min_frequency, lowercase)
    for i, special in enumerate(SPECIAL_TOKENS):  # the contract every model config relies on
        assert tok.token_to_id(special) == i, (special, tok.token_to_id(special))
    if add_bos_eos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B:1 {EOS}:1",
            special_tokens=[(BOS, 2), (EOS, 3)],
        )

    kwargs = {}
    if model_max_length is not None:
        kwargs["model_max_length"] = model_max_length
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS,
        padding_side=padding_side,
        split_special_tokens=True,  # text is text: "<s>" in the input is three characters, not id 2
        # only word-level text reads better with " ." -> "." clean-up; every other kind round-trips
        clean_up_tokenization_spaces=(kind == "word"),
        **kwargs,
    )


def load_or_train_tokenizer(
    path_or_none: str | os.PathLike | None,
    texts: Iterable[str] | None = None,
    kind: str = "char",
    **train_kwargs,
) -> PreTrainedTokenizerFast:
    """Load a saved tokenizer from ``path_or_none`` (a folder or a Hub name), or train one.

    With ``path_or_none=None`` this is :func:`train_tokenizer` on ``texts``; otherwise
    ``AutoTokenizer.from_pretrained(path_or_none)`` and ``texts``/``kind`` are unused.
    """
    if path_or_none is not None:
        path = os.fspath(path_or_none)
        if os.path.exists(path) and not os.path.isdir(path):
            raise FileError(f"load_or_train_tokenizer: {path} is a file; give the folder save_pretrained wrote")
        return text_only(AutoTokenizer.from_pretrained(path))
    if texts is None:
        raise ValueError("load_or_train_tokenizer: give a tokenizer path or texts to train on")
    return train_tokenizer(texts, kind, **train_kwargs)


def text_only(tokenizer):
    """Makes ``tokenizer`` read special-token strings in its input as plain text; returns it.

    Sets ``split_special_tokens=True`` (kept in ``tokenizer_config.json`` by ``save_pretrained``), for a
    tokenizer saved before hfnn set it or loaded from elsewhere. Special tokens are still added by
    the tokenizer itself (post-processor, padding) and still decoded. ``None`` passes through.
    """
    if tokenizer is not None and hasattr(tokenizer, "split_special_tokens"):
        tokenizer.split_special_tokens = True
        if hasattr(tokenizer, "init_kwargs"):
            tokenizer.init_kwargs["split_special_tokens"] = True
    return tokenizer
