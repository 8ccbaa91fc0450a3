"""Documents: the typed :class:`Corpus` (splits, document boundaries, line separator, file origins) and the
language-model stream built from it.

A language model is trained on, and scored on, one stream per split: the rows' texts in order, end-of-sequence
after each row that ends a document and never after a line inside one. For a ``.txt`` file a row is a line
(keeping its newline) and the file is the document; for ``kjv`` a row is a verse (followed by a newline in the
stream) and the book is the document; for every other corpus each row is a document. :func:`lm_blocks` is that
rule, for training (``hfnn.pipelines.run_lm``) and for ``hfnn evaluate`` alike.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Mapping, NamedTuple, Sequence

import datasets
from datasets import Dataset, DatasetDict, Features, Value

from .splits import SPLITS

__all__ = ["TOKENIZE_CHARS", "Corpus", "FileOrigin", "join_documents", "lm_blocks"]

TOKENIZE_CHARS = 1 << 20
"""At most this many characters of text go to one tokenizer call of :func:`lm_blocks` (a longer text goes alone)."""


class FileOrigin(NamedTuple):
    """One local file of a split: its path, its kind (``"text"``, ``"csv"`` or ``"json"``) and how many rows it
    gave, in the order the split's rows come."""

    path: str
    kind: str
    rows: int


def _frozen(table: Mapping | None):
    """A read-only copy of ``{split: sequence}`` with tuples for values (None stays None)."""
    return None if table is None else types.MappingProxyType({k: tuple(v) for k, v in table.items()})


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A loaded corpus: its ``splits`` and what the rows alone do not say, beside them (never attributes of the
    ``DatasetDict``, which any of its operations would drop).

    * ``document_ends``: per split, the rows that end a document (the last line of each ``.txt`` file, the last
      verse of each KJV book), in order; ``None`` when every row is a document (csv/json cells, Hub rows, a whole
      Shakespeare work). A split that ends inside a document (the tail of a file carved into validation and test)
      does not list its last row.
    * ``line_separator``: what follows each row inside a document in the stream: ``""`` for ``.txt`` lines, which
      keep their newline, ``"\\n"`` for KJV verses.
    * ``origins``: per split given as files, those files (:class:`FileOrigin`) in the order their rows were read,
      before any split was carved out of train; empty for built-in and Hub corpora.

    The row numbers are those of ``splits``: :meth:`with_splits` takes new splits of the same rows (the result of
    ``.map``, a cast, a renamed column) and refuses splits whose row counts changed (``.filter``, ``.select``).
    """

    splits: DatasetDict
    document_ends: Mapping[str, tuple[int, ...]] | None = None
    line_separator: str = ""
    origins: Mapping[str, tuple[FileOrigin, ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "document_ends", _frozen(self.document_ends))
        object.__setattr__(self, "origins", _frozen(self.origins))

    def ends_of(self, split: str) -> frozenset[int] | None:
        """The rows of ``split`` that end a document; None when every row is a document."""
        return None if self.document_ends is None else frozenset(self.document_ends.get(split, ()))

    def with_splits(self, splits: DatasetDict) -> Corpus:
        """This corpus with ``splits`` in place of its own: the same splits with the same number of rows each (a
        ``.map`` of them), else a ValueError, as the document ends and origins number the rows."""
        if self.document_ends is not None or self.origins:
            for name, ds in self.splits.items():
                if name not in splits or len(splits[name]) != len(ds):
                    got = f"{len(splits[name])} rows" if name in splits else "no such split"
                    raise ValueError(f"Corpus.with_splits: split {name!r} had {len(ds)} rows, the new one has {got}; "
                                     "the document ends and file origins number the rows as loaded")
        return dataclasses.replace(self, splits=splits)

    def concatenated(self, names: Sequence[str], name: str) -> Corpus:
        """A corpus of one split ``name``: the rows of the splits ``names``, in that order, with their document
        ends (a split's last row, if it ends inside a document, stays inside it) and origins."""
        parts = [self.splits[s] for s in names]
        ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
        ends = None
        if self.document_ends is not None:
            ends, offset = [], 0
            for split in names:
                ends += [offset + i for i in self.document_ends.get(split, ())]
                offset += len(self.splits[split])
        origins = [origin for split in names for origin in self.origins.get(split, ())]
        return Corpus(DatasetDict({name: ds}), {name: ends} if ends is not None else None, self.line_separator,
                      {name: origins} if origins else {})


def join_documents(corpus: Corpus | DatasetDict) -> DatasetDict:
    """One ``text`` row per document of each split: the rows of a corpus whose ``document_ends`` are set (the
    lines of ``.txt`` files, the verses of ``kjv``) joined up to each document end, each followed by
    ``line_separator``; a split that ends inside a document (the tail of a file carved into validation and
    test) ends with that part of it, marked ``False`` in the ``ends_document`` column the joined splits get.
    Other corpora, where every row is a document (and a plain ``DatasetDict``), come back as their splits. A
    language model closes each row that ends a document with end-of-sequence (:func:`lm_blocks`)."""
    if not isinstance(corpus, Corpus):
        return corpus
    if corpus.document_ends is None:
        return corpus.splits
    out = {}
    for split, ds in corpus.splits.items():
        stops, documents, current = corpus.ends_of(split), [], []
        for i, text in enumerate(ds["text"][:]):
            current.append(text + corpus.line_separator)
            if i in stops:
                documents.append("".join(current))
                current = []
        tail = ["".join(current)] if current else []
        out[split] = Dataset.from_dict(
            {"text": documents + tail, "ends_document": [True] * len(documents) + [False] * len(tail)},
            features=Features({"text": Value("string"), "ends_document": Value("bool")}))
    return DatasetDict(out)


def lm_blocks(tokenizer, texts: Sequence[str], block_size: int, *, ends_document: Sequence[bool] | None = None,
              separator: str = "", max_blocks: int | None = None, keep_short: bool = False) -> list[list[int]]:
    """The language-model stream of ``texts`` in blocks of ``block_size`` tokens.

    Each text, followed by ``separator``, is tokenised without special tokens; end-of-sequence follows each text
    that ends a document (``ends_document[i]``; every text when it is None; none when the tokenizer has no
    end-of-sequence token), never a line inside one. The stream is cut into whole blocks; the rest is dropped.
    ``max_blocks``: read texts only until that many blocks are filled, and give at most that many.
    ``keep_short``: a stream shorter than one block is one (short) block instead of none.
    """
    texts = list(texts)
    closes = [True] * len(texts) if ends_document is None else list(ends_document)
    eos, stream = tokenizer.eos_token_id, []
    limit = None if max_blocks is None else max_blocks * block_size
    start = 0
    while start < len(texts):
        # one tokenizer call per TOKENIZE_CHARS characters of text (one text when max_blocks is set): its
        # encodings, which keep offsets and masks per token, stay small beside the ids
        stop, size = start, 0
        while stop < len(texts) and (stop == start or (limit is None and size + len(texts[stop]) <= TOKENIZE_CHARS)):
            size += len(texts[stop])
            stop += 1
        chunk = [text + separator for text in texts[start:stop]]
        ids_of = tokenizer(chunk, add_special_tokens=False)["input_ids"]
        for ids, closed in zip(ids_of, closes[start:stop], strict=True):
            stream += ids + ([eos] if closed and eos is not None else [])
        start = stop
        if limit is not None and len(stream) >= limit:
            break
    blocks = [stream[i:i + block_size] for i in range(0, len(stream) - block_size + 1, block_size)]
    if keep_short and not blocks:
        blocks = [stream]
    return blocks if max_blocks is None else blocks[:max_blocks]


def _file_ends(dd: DatasetDict, origins: Mapping[str, Sequence[FileOrigin]]) -> dict[str, list[int]]:
    """For corpora of ``.txt`` files (one row per line): the rows of each split that end a document (the
    last line of a file), so that a language model closes documents, not lines, with end-of-sequence.
    A split carved out of train (its contiguous tail) gets the file ends that fall inside it."""
    ends = {}
    for split, files in origins.items():
        total, ends[split] = 0, []
        for _, _, n in files:
            total += n
            if n:
                ends[split].append(total - 1)
    carved = [s for s in SPLITS if s in dd and s not in origins or s == "train"]
    offset = 0
    train_ends = ends.get("train", [])
    for split in carved:
        n = len(dd[split])
        ends[split] = [e - offset for e in train_ends if offset <= e < offset + n]
        offset += n
    return ends


def _group_ends(dd: DatasetDict, column: str) -> dict[str, list[int]]:
    """The rows of each split after which ``column`` changes value (and each split's last row): the ends of the
    documents whose rows share a value there (the verses of a KJV book)."""
    ends = {}
    for split, ds in dd.items():
        values = ds[column][:]
        ends[split] = [i for i in range(len(values)) if i + 1 == len(values) or values[i + 1] != values[i]]
    return ends
