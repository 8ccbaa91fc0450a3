"""Streaming language-model data: a corpus read as it trains, in bounded memory, never loaded whole.

The text comes as ``datasets.IterableDataset`` rows of at most :data:`~hfnn.data.corpora.local.LINE_PIECE_CHARS`
characters (consecutive lines of a ``.txt`` file joined, a long line cut before a run of white space), each with
``ends_document`` (the last row of a file; every row of a csv/json/Hub corpus). They are tokenised and packed into
blocks on the fly by the same rule as the map-style data (:func:`~hfnn.data.corpora.lm_blocks`: end-of-sequence
after each document, never inside one), a few rows at a time, the rest of each batch's stream dropped.

Sharding: an uncompressed local ``.txt`` file is read as byte ranges of about ``shard_bytes`` (cut where
:func:`~hfnn.data.corpora.local.shard_cut` says, so the shards read every byte once), a compressed or csv/json
file as one shard, a Hub dataset as its own shards. Under ``accelerate launch`` each process reads its own shards
(``IterableDataset.shard``, as ``datasets.distributed.split_dataset_by_node`` does when the shards divide among
the processes): the number of shards of local files is rounded up to a multiple of the number of processes.

Held out, bounded: the validation blocks come from ``validation_file`` if given, else from the tail of the last
training file (a byte range that the training shards then leave out; for a Hub dataset, its validation split, else
its first rows, which training skips), at most ``eval_blocks`` of them, read once into memory. A tokenizer is trained
on the first ``sample_chars`` characters of the training stream.
"""

from __future__ import annotations

import dataclasses
import math
import os

import datasets
from datasets import Dataset, IterableDataset

from hfnn.models.errors import DataError, OptionError

from .corpora import local as local_files
from .corpora.documents import lm_blocks
from .corpora.local import _file_kind, shard_cut, text_pieces

__all__ = ["LmStream", "local_shards", "open_lm_stream", "pack_blocks", "refuse_streaming", "shard_rows",
           "stream_text", "take_text"]

SHARD_BYTES = 1 << 25
"""About how many bytes of an uncompressed local ``.txt`` file one shard reads."""

PACK_ROWS = 2
"""Rows of text (each at most LINE_PIECE_CHARS characters) tokenised and packed together. Few: a shuffled stream
reads its shards interleaved, each with a batch of its own in flight, so memory grows with rows x shards."""

_COMPRESSED = (".gz", ".bz2", ".xz", ".zst")


def refuse_streaming(streaming: bool, pipeline: str) -> None:
    """``--streaming true`` for a pipeline that reads its data whole: an OptionError saying where it applies."""
    if streaming:
        raise OptionError(f"--streaming true applies to language modelling (run_lm), not to {pipeline}: its corpus "
                          "is loaded whole (a csv/json of a few million rows fits in memory); leave --streaming unset")


def local_shards(paths, shard_bytes: int = SHARD_BYTES, multiple: int = 1, hold_out_bytes: int = 0):
    """The shards of the local ``.txt`` files ``paths`` (read in this order) as ``(shards, held_out)``: dicts
    ``{"path", "start", "stop", "ends_document"}`` (byte ranges; ``stop`` None: to the end; ``ends_document``: the
    shard ends its file). Each uncompressed file is cut into ranges of about ``shard_bytes``, and more ranges
    are cut from the largest files until the count is a multiple of ``multiple`` (the processes that share them).
    ``hold_out_bytes``: about that many bytes at the end of the last file become the held-out shard (None when 0)."""
    sizes = {}
    for path in paths:
        if os.path.isdir(path):
            raise DataError(f"streaming: {path} is a folder; give the .txt files in it")
        if not os.path.exists(path):
            raise FileNotFoundError(f"streaming: no such file: {path}")
        if _file_kind(path) != "text":
            raise DataError(f"streaming: {path} is not a .txt file; --streaming true reads local .txt files (or a "
                            "Hub dataset name); convert it, or train without --streaming")
        sizes[path] = None if str(path).lower().endswith(_COMPRESSED) else os.path.getsize(path)
    last, held_out = paths[-1], None
    ends = {path: sizes[path] for path in paths}
    if hold_out_bytes:
        if sizes[last] is None:
            raise OptionError(f"streaming: {last} is compressed, so its tail cannot be held out for validation; "
                              "give --validation_file")
        cut = shard_cut(last, max(1, sizes[last] - hold_out_bytes))
        if cut <= 0 or cut >= sizes[last]:
            raise DataError(f"streaming: {last} is too short to hold out a validation tail; give --validation_file")
        held_out, ends[last] = {"path": last, "start": cut, "stop": None, "ends_document": True}, cut
    counts = {p: 1 if ends[p] is None else max(1, math.ceil(ends[p] / shard_bytes)) for p in paths}
    while sum(counts.values()) % max(1, multiple):  # more shards from the largest file until they divide evenly
        largest = max((p for p in paths if ends[p] is not None), key=lambda p: ends[p] / counts[p], default=None)
        if largest is None:
            break
        counts[largest] += 1
    shards = []
    for path in paths:
        if ends[path] is None:
            shards.append({"path": path, "start": 0, "stop": None, "ends_document": True})
            continue
        cuts = sorted({0, *(shard_cut(path, ends[path] * i // counts[path]) for i in range(1, counts[path]))})
        cuts = [c for c in cuts if c < ends[path]] + [ends[path]]
        for start, stop in zip(cuts, cuts[1:]):
            # the last training shard of a file ends its document, unless the held-out tail follows it
            shards.append({"path": path, "start": start, "stop": stop,
                           "ends_document": stop == ends[path] and not (held_out is not None and path == last)})
    return shards, held_out


def shard_rows(shards, limit: int | None = None):
    """The rows ``{"text", "ends_document"}`` of ``shards`` (:func:`local_shards`): consecutive pieces of each shard
    (:func:`~hfnn.data.corpora.local.text_pieces`) joined up to ``limit`` characters; ``ends_document`` on the last
    row of a shard that ends its file. ``limit`` None: LINE_PIECE_CHARS."""
    limit = limit or local_files.LINE_PIECE_CHARS
    for shard in shards:
        start, stop = shard["start"], shard["stop"]
        buffer, size = [], 0
        pieces = text_pieces(shard["path"], True, limit, start, stop)
        while True:
            try:
                piece = next(pieces)
            except StopIteration:
                break
            except UnicodeDecodeError:  # found as it is read: the file is never checked whole beforehand
                path = shard["path"]
                raise DataError(f"streaming: {path} is not UTF-8 text (in the bytes from {start}); convert it "
                                f"first, e.g. `{local_files._convert_command(path, 'latin1')}`") from None
            if size + len(piece) > limit and buffer:
                yield {"text": "".join(buffer), "ends_document": False}
                buffer, size = [], 0
            buffer.append(piece)
            size += len(piece)
        if buffer:
            yield {"text": "".join(buffer), "ends_document": shard["ends_document"]}
        elif shard["ends_document"]:
            yield {"text": "", "ends_document": True}


_ROW_FEATURES = datasets.Features({"text": datasets.Value("string"), "ends_document": datasets.Value("bool")})


def stream_text(shards) -> IterableDataset:
    """The rows of :func:`shard_rows` as an ``IterableDataset`` with one shard per entry of ``shards``."""
    return IterableDataset.from_generator(shard_rows, features=_ROW_FEATURES, gen_kwargs={"shards": list(shards)})


def pack_blocks(rows: IterableDataset, tokenizer, block_size: int, batch_rows: int = PACK_ROWS) -> IterableDataset:
    """Blocks ``{"input_ids", "labels"}`` of ``block_size`` tokens of ``rows`` (``text``, and ``ends_document``
    when the rows are not each a document), ``batch_rows`` rows at a time (:func:`lm_blocks`)."""

    def blocks(batch):
        ids = lm_blocks(tokenizer, batch["text"], block_size, ends_document=batch.get("ends_document"))
        return {"input_ids": ids, "labels": [b[:] for b in ids]}

    columns = list(rows.column_names or ["text", "ends_document"])
    return rows.map(blocks, batched=True, batch_size=batch_rows, remove_columns=columns)


def take_text(rows, chars: int) -> list[str]:
    """The texts of the first rows of ``rows`` up to about ``chars`` characters (the last one cut there)."""
    out, total = [], 0
    for row in rows:
        text = row["text"][: chars - total]
        out.append(text)
        total += len(text)
        if total >= chars:
            break
    if not any(out):
        raise DataError("streaming: the training stream has no text to train a tokenizer on")
    return out


@dataclasses.dataclass
class LmStream:
    """A language model's streamed data: the training rows (``text``/``ends_document``, sharded), the held-out
    rows per split, and the facts results.json records about them."""

    train: IterableDataset
    held_out: dict
    facts: dict

    def blocks(self, tokenizer, block_size: int, eval_blocks: int, shuffle_buffer: int, seed: int) -> dict:
        """``{"train": IterableDataset of blocks, shuffled within a buffer of shuffle_buffer blocks,
        "validation"/"test": Dataset of at most eval_blocks blocks}``."""
        out = {}
        for split, rows in self.held_out.items():
            taken = list(pack_blocks(rows, tokenizer, block_size).take(eval_blocks))
            out[split] = Dataset.from_list(taken) if taken else Dataset.from_dict({"input_ids": [], "labels": []})
        train = pack_blocks(self.train, tokenizer, block_size)
        out["train"] = train.shuffle(seed=seed, buffer_size=shuffle_buffer) if shuffle_buffer > 1 else train
        return out


def _hold_out_bytes(eval_blocks: int, block_size: int) -> int:
    """Bytes of the tail of a file held out for at most ``eval_blocks`` blocks (4 bytes per token, twice over)."""
    return eval_blocks * block_size * 8


def open_lm_stream(*, corpus=None, train_file=None, validation_file=None, test_file=None, text_column=None,
                   eval_blocks: int = 256, block_size: int = 128, processes: int = 1, seed: int = 0,
                   shard_bytes: int = SHARD_BYTES, cache_dir=None) -> LmStream:
    """The streamed data of a language model: local ``.txt`` files (``train_file``, or ``corpus`` when it is a file)
    or a Hub dataset name (``corpus``, read with ``streaming=True``; its ``text_column`` renamed ``text``).
    ``processes``: how many processes share the training shards. Nothing is read but the held-out tails' places."""
    local = train_file or (corpus if corpus and (os.path.isfile(corpus) or _file_kind(corpus)) else None)
    if local:
        train_files = [local] if isinstance(local, (str, os.PathLike)) else list(local)
        train_files = [os.fspath(os.path.expanduser(f)) for f in train_files]
        hold = 0 if validation_file else _hold_out_bytes(eval_blocks, block_size)
        shards, tail = local_shards(train_files, shard_bytes, processes, hold)
        held_out = {}
        if validation_file:
            held_out["validation"] = stream_text(local_shards([os.fspath(validation_file)])[0])
        elif tail is not None:
            held_out["validation"] = stream_text([tail])
        if test_file:
            held_out["test"] = stream_text(local_shards([os.fspath(test_file)])[0])
        facts = {"streaming_shards": len(shards), "streaming_validation": os.fspath(validation_file) if
                 validation_file else f"the last {os.path.getsize(tail['path']) - tail['start']} bytes of "
                                      f"{tail['path']}"}
        return LmStream(stream_text(shards), held_out, facts)
    if not corpus:
        raise OptionError("--streaming true needs a train_file (.txt) or a corpus (a .txt file or a Hub dataset name)")
    if validation_file or test_file:
        raise OptionError("--streaming true with a Hub dataset takes its validation split from the dataset; leave "
                          "--validation_file and --test_file unset")
    from .corpora import BUILTIN_CORPORA
    from .corpora.hub import _load_hub

    if corpus in BUILTIN_CORPORA:
        raise OptionError(f"--streaming true: {corpus!r} is a built-in corpus, small enough to load; train without "
                          "--streaming, or give a .txt file or a Hub dataset name")
    loaded = _load_hub(corpus, cache_dir, {"streaming": True})
    if not isinstance(loaded, (datasets.IterableDatasetDict, dict)) or "train" not in {
            k if k != "valid" else "validation" for k in loaded}:
        raise DataError(f"streaming: the Hub dataset {corpus!r} has no train split")
    splits = {("validation" if k in ("valid", "dev") else k): v for k, v in loaded.items()}

    def texts(ds):
        column = text_column or "text"
        if ds.features is None:  # a dataset that does not say its columns: read off its first row
            ds = ds._resolve_features()
        if column not in (ds.column_names or [column]):
            raise DataError(f"streaming: the Hub dataset {corpus!r} has no {column!r} column (columns: "
                            f"{ds.column_names}); set --text_column")
        ds = ds.select_columns([column])
        return ds.rename_column(column, "text") if column != "text" else ds

    train = texts(splits["train"])
    if "validation" in splits:
        held_out = {"validation": texts(splits["validation"])}
        source = f"the validation split of {corpus}"
    else:  # its first rows: as many as the held-out blocks could need, skipped by training
        rows = max(1, eval_blocks)
        held_out, train = {"validation": train.take(rows)}, train.skip(rows)
        source = f"the first {rows} rows of {corpus}"
    return LmStream(train, held_out, {"streaming_shards": train.n_shards, "streaming_validation": source})
