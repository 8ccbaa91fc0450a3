"""Pretrained word vectors (word2vec / GloVe text format) as an embedding matrix for a tokenizer.

    vectors = load_word_vectors("glove.6B.300d.txt", tokenizer)         # (len(tokenizer), 300)
    model = CnnForSequenceClassification.from_config_with_embeddings(config, vectors)

The text format is one word per line followed by its vector components separated by spaces, optionally
preceded by a header line "<number of words> <dimension>" (word2vec's `binary=False` output has it,
GloVe files do not). `.gz` files are read transparently. As in Kim (2014), tokens missing from the file get
vectors drawn from U[-0.25, 0.25]; the padding token gets the zero vector.
"""

import gzip
import logging
import math
from pathlib import Path

import torch

from hfnn.models.errors import DataError, OptionError

__all__ = ["load_word_vectors"]

logger = logging.getLogger(__name__)

UNKNOWN_INIT_RANGE = 0.25


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def load_word_vectors(
    path,
    tokenizer,
    vocab_size: int | None = None,
    lowercase: bool = False,
    init_range: float = UNKNOWN_INIT_RANGE,
    seed: int = 0,
) -> torch.Tensor:
    """Read a word2vec/GloVe text file into a (vocab_size, dim) float tensor whose row i is token id i's vector.

    Args:
        path: the vector file (`.txt`, `.vec`, or gzip-compressed `.gz`).
        tokenizer: a tokenizer with `get_vocab()` (token -> id), or a plain `dict` token -> id.
        vocab_size: rows of the result (default: 1 + the largest id, i.e. `len(tokenizer)`); use the model's
            `config.vocab_size` when it is larger.
        lowercase: match lowercased file words to the vocabulary (first occurrence wins), for lowercasing
            tokenizers and cased vector files such as word2vec GoogleNews.
        init_range: tokens absent from the file get U[-init_range, init_range] (Kim 2014: 0.25).
        seed: seed of that random init, so the result is reproducible.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a malformed line (wrong number of components, a component that is not a number), naming
            the file and the line number; a binary word2vec file; a file with no vectors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_word_vectors: no such file: {path}")
    vocab = tokenizer if isinstance(tokenizer, dict) else tokenizer.get_vocab()
    if not vocab:
        raise OptionError("load_word_vectors: the tokenizer's vocabulary is empty")
    if vocab_size is None:
        vocab_size = max(vocab.values()) + 1
    elif vocab_size <= max(vocab.values()):
        raise OptionError(f"load_word_vectors: vocab_size={vocab_size} is too small for the tokenizer (largest id "
                          f"{max(vocab.values())})")
    dim, found = _read_vectors(path, vocab, lowercase)

    generator = torch.Generator().manual_seed(seed)
    matrix = torch.empty(vocab_size, dim).uniform_(-init_range, init_range, generator=generator)
    if found:
        ids = torch.tensor(list(found.keys()))
        matrix[ids] = torch.tensor(list(found.values()), dtype=matrix.dtype)
    pad_id = getattr(tokenizer, "pad_token_id", None) if not isinstance(tokenizer, dict) else None
    if pad_id is not None and pad_id < vocab_size:
        matrix[pad_id] = 0.0
    logger.info("load_word_vectors: %d of %d tokens found in %s (dim %d)", len(found), len(vocab), path, dim)
    return matrix


def _read_vectors(path: Path, vocab: dict, lowercase: bool) -> tuple[int, dict[int, list[float]]]:
    """The dimension of the file's vectors and the vector of each token id of ``vocab`` found there (the first
    occurrence of its word); a malformed line, a binary file or a file with no vectors is a ValueError."""
    dim = None
    found: dict[int, list[float]] = {}
    try:
        with _open_text(path) as handle:
            for lineno, line in enumerate(handle, start=1):
                parts = line.rstrip("\r\n").rstrip(" ").split(" ")
                if not line.strip():
                    continue
                if lineno == 1 and len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                    dim = int(parts[1])  # word2vec header "<count> <dim>"
                    if dim <= 0:
                        raise DataError(f"{path}, line 1: header gives dimension {dim}, expected a positive integer")
                    continue
                if dim is None:
                    dim = len(parts) - 1
                    if dim <= 0:
                        raise DataError(f"{path}, line {lineno}: expected a word followed by its vector, got "
                                        f"{line.strip()!r}")
                word, values = _parse_vector(path, lineno, parts, dim)
                token_id = vocab.get(word.lower() if lowercase else word)
                if token_id is not None and token_id not in found:
                    found[token_id] = values
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start}); binary word2vec files must be "
            "converted to the text format first (gensim: KeyedVectors.save_word2vec_format(..., binary=False))"
        ) from None
    if dim is None:
        raise DataError(f"{path}: the file holds no vectors")
    return dim, found


def _parse_vector(path: Path, lineno: int, parts: list[str], dim: int) -> tuple[str, list[float]]:
    """The word and the ``dim`` numbers of one line split at spaces; a ValueError naming the line otherwise."""
    if len(parts) < dim + 1:
        raise DataError(
            f"{path}, line {lineno}: expected a word and {dim} numbers, got {len(parts) - 1} field(s) "
            "after the first"
        )
    # Words may contain spaces (some GloVe files): the vector is always the last `dim` fields.
    word = " ".join(parts[:-dim])
    try:
        values = [float(x) for x in parts[-dim:]]
    except ValueError:
        bad = next(x for x in parts[-dim:] if not _is_float(x))
        raise DataError(f"{path}, line {lineno}: {bad!r} is not a number (word {word!r})") from None
    if not all(math.isfinite(v) for v in values):
        raise DataError(f"{path}, line {lineno}: the vector of {word!r} contains NaN or inf")
    return word, values


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
