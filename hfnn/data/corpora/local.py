"""Local files: ``.txt`` (one row per line), ``.csv``/``.tsv`` and ``.json``/``.jsonl``, optionally compressed;
their type from the name, their encoding checked (UTF-8 only, a file in another encoding is an error naming the
command that converts it), their rows read with ``datasets`` and the file each row comes from recorded.
"""

from __future__ import annotations

import bz2
import codecs
import io
import json
import os
import re
from typing import Any, Mapping

import datasets
from datasets import Dataset, Features, Value

from hfnn.models.errors import DataError, OptionError

from .documents import FileOrigin
from .splits import SPLITS, canonical_split

__all__ = ["LINE_PIECE_CHARS", "separator_hint", "shard_cut", "text_pieces"]

LINE_PIECE_CHARS = 1 << 16
"""The longest row a ``.txt`` line becomes: a longer line (a one-line dump) is read as consecutive pieces of it,
so that no row, and no step after reading, holds a whole long document."""


_LOCAL_EXTENSIONS = {".txt": "text", ".text": "text", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}


def _file_kind(path: str | os.PathLike) -> str | None:
    name = str(path).lower()
    for compression in (".gz", ".bz2", ".xz", ".zst"):
        if name.endswith(compression):
            name = name[: -len(compression)]
    return _LOCAL_EXTENSIONS.get(os.path.splitext(name)[1])


_UNCOMPRESS = {".gz": "zcat", ".bz2": "bzcat", ".xz": "xzcat"}


def _convert_command(path: str, encoding: str) -> str:
    """The shell command that writes ``path`` (decompressed) as UTF-8 into ``converted.EXT``."""
    base, name = os.path.basename(path), str(path).lower()
    stem, compression = os.path.splitext(name)
    if compression in _UNCOMPRESS:
        return (f"{_UNCOMPRESS[compression]} {base} | iconv -f {encoding} -t UTF-8 "
                f"> converted{os.path.splitext(stem)[1]}")
    return f"iconv -f {encoding} -t UTF-8 {base} > converted{compression}"


def _open_bytes(path: str):
    """``path`` opened for reading bytes, through its decompressor (.gz, .bz2, .xz); None for .zst, which the
    standard library cannot read (the corpus reader then reports on the file itself)."""
    import gzip
    import lzma

    name = str(path).lower()
    if name.endswith(".zst"):
        return None
    opener = gzip.open if name.endswith(".gz") else bz2.open if name.endswith(".bz2") else \
        lzma.open if name.endswith(".xz") else open
    return opener(path, "rb")


def _check_encoding(path: str) -> None:
    """A UTF-16/32 file (byte-order mark, or NUL bytes in its first kilobyte) is a ValueError naming it, and
    so is a byte that is not UTF-8 (its position counted in the decompressed text of a compressed file)."""
    name = str(path).lower()
    compressed = name.endswith((".gz", ".bz2", ".xz", ".zst"))
    try:
        f = _open_bytes(path)
        if f is None:
            return
        with f:
            head = f.read(1024)
    except (OSError, EOFError, ValueError):  # unreadable or damaged: the reader says so
        return
    kind = _wide_encoding(head)
    if kind is not None:
        raise DataError(f"load_corpus: {path} is {kind} text, not UTF-8; convert it first, e.g. "
                        f"`{_convert_command(path, kind)}`")
    # every byte, whatever the format: some readers (pyarrow's JSON) keep invalid UTF-8 and fail much later
    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    where = "decompressed byte" if compressed else "byte"
    with _open_bytes(path) as f:
        while True:
            try:
                chunk = f.read(1 << 20)
            except (OSError, EOFError, ValueError):  # damaged past its head: the reader says so
                return
            pending = decoder.getstate()[0]
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                bad = (pending + chunk)[err.start:err.start + 1]
                raise DataError(_not_utf8(path, f" ({where} {offset - len(pending) + err.start}: {bad!r}); convert "
                                                f"it first, e.g. `{_convert_command(path, 'latin1')}`")) from None
            if b"\x00" in chunk:  # valid UTF-8 so far, but a NUL is no character of a text
                at = offset + chunk.index(b"\x00")
                raise DataError(f"load_corpus: {path} holds a NUL byte ({where} {at}): UTF-8 text does not hold NUL "
                                "characters (a binary file, or text padded with NULs); remove them, e.g. "
                                f"`{_strip_nul_command(path)}`")
            if not chunk:
                return
            offset += len(chunk)


def _wide_encoding(head: bytes) -> str | None:
    """"UTF-16" or "UTF-32" when ``head`` (a file's first bytes) starts with their byte-order mark, their ``LE`` or
    ``BE`` form when it holds NUL bytes in their pattern: text mostly of ASCII, whose code units then hold NULs at
    one parity of byte positions (UTF-16) or three bytes out of four (UTF-32). None otherwise (a NUL elsewhere is
    not an encoding's)."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "UTF-32"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16"
    units = len(head) // 4 * 4
    if units < 4 or b"\x00" not in head:
        return None
    zeros = [i for i in range(units) if head[i] == 0]
    if len(zeros) >= 0.6 * units and len({i % 4 for i in zeros}) <= 3:  # no byte-order mark: say which order
        return "UTF-32BE" if 3 not in {i % 4 for i in zeros} else "UTF-32LE"
    even, odd = sum(1 for i in zeros if i % 2 == 0), sum(1 for i in zeros if i % 2)
    if len(zeros) >= 0.3 * units and max(even, odd) >= 0.95 * len(zeros):
        return "UTF-16LE" if odd > even else "UTF-16BE"
    return None


def _strip_nul_command(path: str) -> str:
    """The shell command that writes ``path`` (decompressed) without its NUL bytes into ``cleaned.EXT``."""
    base, name = os.path.basename(path), str(path).lower()
    stem, compression = os.path.splitext(name)
    if compression in _UNCOMPRESS:
        return f"{_UNCOMPRESS[compression]} {base} | tr -d '\\000' > cleaned{os.path.splitext(stem)[1]}"
    return f"tr -d '\\000' < {base} > cleaned{compression}"


def _bad_json_line(path: str) -> str | None:
    """The first line of a JSON Lines file that is not a JSON object: 'line N: why', or None."""
    import gzip

    def kind(value) -> str:
        return {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}.get(
            type(value), "null")

    opener = gzip.open if str(path).lower().endswith(".gz") else open
    seen: dict[str, tuple[str, int]] = {}  # column -> (JSON type, first line with it)
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as err:
                    return f"line {number} is not valid JSON ({err.msg} at column {err.colno}): {line.strip()[:80]!r}"
                if not isinstance(value, dict):
                    return (f"line {number} is a JSON {type(value).__name__}, not an object of columns: "
                            f"{line.strip()[:80]!r}")
                for column, cell in value.items():
                    this = kind(cell)
                    if this == "null":
                        continue
                    first = seen.setdefault(column, (this, number))
                    if first[0] != this and {first[0], this} != {"number"}:
                        return (f"line {number}: the {column!r} value {cell!r} is a {this}, but line {first[1]} has a "
                                f"{first[0]} there (one type per column)")
    except (OSError, UnicodeDecodeError):
        return None
    return None


def separator_hint(columns) -> str:
    """' (...)' telling that a CSV was read as one column because its values are not comma-separated, when a
    column name holds a semicolon, tab or bar; else ''."""
    for name, sep in (("semicolon", ";"), ("tab", "\t"), ("bar", "|")):
        if any(sep in str(column) for column in columns):
            return (f" (the file looks {name}-separated; a .csv file is read as comma-separated: save it with commas, "
                    "or as .tsv for tabs, or as JSON Lines)")
    return ""


def _not_utf8(path, where: str = "") -> str:
    return f"load_corpus: {path} is not UTF-8 text{where}"


def _reader_options(path: str, kind: str, keep_linebreaks: bool) -> dict[str, Any]:
    """The options of ``datasets.load_dataset`` for the file; an empty csv/json file, or a csv file with a header
    and no rows, is a ValueError naming it."""
    kwargs: dict[str, Any] = {}
    if kind == "text":
        # one row per line (universal newlines); a byte-order mark is not text
        kwargs.update(sample_by="line", keep_linebreaks=keep_linebreaks, encoding="utf-8-sig")
    if kind == "csv":
        # cells are read as written: "NA", "None" or "null" are texts (or class names), an empty cell is empty
        kwargs["keep_default_na"] = False
        if str(path).lower().split(".gz")[0].endswith(".tsv"):
            kwargs["sep"] = "\t"
    if os.path.getsize(path) == 0 and kind != "text":
        raise DataError(f"load_corpus: {path} is empty (no header, no rows)")
    if kind == "csv" and not str(path).lower().endswith((".gz", ".bz2", ".xz", ".zst")):
        with open(path, "rb") as f:
            lines = [line for line in f.read(1 << 16).splitlines() if line.strip()]
        if len(lines) <= 1 and os.path.getsize(path) < (1 << 16):
            raise DataError(f"load_corpus: {path} has a header but no rows" if lines else
                             f"load_corpus: {path} is empty")
    return kwargs


def _load_file(path: str, kind: str, cache_dir, kwargs: dict) -> Dataset:
    """The rows ``datasets`` reads from the file; a file it cannot parse is a ValueError naming the file (and the
    bad line of a JSON Lines file)."""
    try:
        return datasets.load_dataset(kind, data_files=[path], split="train", cache_dir=cache_dir, **kwargs)
    except UnicodeDecodeError:
        raise DataError(_not_utf8(path)) from None
    except Exception as exc:  # datasets wraps parse errors in DatasetGenerationError
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, UnicodeDecodeError):
            raise DataError(_not_utf8(path)) from None
        if kind == "json":
            bad = _bad_json_line(path)
            if bad:
                raise DataError(f"load_corpus: {path}: {bad}") from None
        detail = str(cause or exc).strip().splitlines()
        raise DataError(f"load_corpus: could not read {path} as {kind}: "
                         f"{detail[0] if detail else type(exc).__name__}") from None


def _longest_line(path: str) -> int:
    """The length in bytes of the longest line of ``path`` (decompressed), read 1 MiB at a time; -1 when the
    standard library cannot read the file (.zst)."""
    f = _open_bytes(path)
    if f is None:
        return -1
    longest = run = 0
    with f:
        while chunk := f.read(1 << 20):
            first = chunk.find(b"\n")
            if first < 0:
                run += len(chunk)
                continue
            longest = max(longest, run + first, *(len(line) for line in chunk[first + 1:].split(b"\n")[:-1]))
            run = len(chunk) - chunk.rfind(b"\n") - 1
    return max(longest, run)


def _cut_point(text: str, limit: int) -> int:
    """Where to cut ``text`` (longer than ``limit``) into a first piece of at most ``limit`` characters: before the
    last run of white space that starts inside it (so no word, and no run of spaces, is cut in two, and a tokenizer
    that splits at white space reads the pieces as it reads the whole), else at ``limit``."""
    cut = max(text.rfind(space, 1, limit + 1) for space in " \t\n\r\f\v")
    while cut > 0 and text[cut - 1].isspace():
        cut -= 1
    return cut if cut > 0 else limit


class _Window(io.RawIOBase):
    """The bytes ``[start, stop)`` of an open binary file, as a file of their own."""

    def __init__(self, f, start: int, stop: int):
        self.f, self.left = f, stop - start
        f.seek(start)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.f.read(min(len(buffer), self.left))
        buffer[:len(data)] = data
        self.left -= len(data)
        return len(data)

    def close(self):
        self.f.close()
        super().close()


def text_pieces(path: str, keep_linebreaks: bool = True, limit: int | None = None, start: int = 0,
                stop: int | None = None):
    """The rows of a ``.txt`` file as ``datasets`` reads them (one per line, universal newlines, a byte-order mark
    dropped, each line with its line break when ``keep_linebreaks``), except that a line longer than ``limit``
    characters comes as consecutive pieces of it (:func:`_cut_point`): the file is read ``limit`` characters at a
    time and never held whole. ``start``/``stop``: only the bytes ``[start, stop)`` of an uncompressed file (a
    shard of it, cut where :func:`shard_cut` says). ``limit`` None: :data:`LINE_PIECE_CHARS`."""
    limit = limit or LINE_PIECE_CHARS
    if start or stop is not None:
        raw = io.BufferedReader(_Window(open(path, "rb"), start, os.path.getsize(path) if stop is None else stop))
    else:
        raw = _open_bytes(path)
    if raw is None:
        raise DataError(f"load_corpus: {path}: .zst files cannot be read in pieces; decompress it first "
                        f"(`zstd -d {os.path.basename(path)}`)")
    with io.TextIOWrapper(raw, encoding="utf-8-sig" if not start else "utf-8") as f:
        pending = ""
        while True:
            chunk = f.read(limit)
            pending += chunk
            lines = pending.splitlines(keepends=True)
            pending = "" if not chunk or not lines or lines[-1] != lines[-1].splitlines()[0] else lines.pop()
            for line in lines:
                if not keep_linebreaks:
                    line = line.splitlines()[0] if line.splitlines() else ""
                while len(line) > limit:
                    cut = _cut_point(line, limit)
                    yield line[:cut]
                    line = line[cut:]
                yield line
            while len(pending) > limit:
                cut = _cut_point(pending, limit)
                yield pending[:cut]
                pending = pending[cut:]
            if not chunk:
                return


_SPACE_RUN = re.compile(rb"[^ \t\n\r\f\v][ \t\n\r\f\v]")  # a byte that is not white space, then one that is


def shard_cut(path: str, offset: int) -> int:
    """The byte where a shard of the uncompressed ``path`` that is to start near ``offset`` starts: the first
    byte at or after ``offset`` that starts a run of ASCII white space (never inside a UTF-8 character, a word or
    a ``\\r\\n``), or the file's size. Neighbouring shards agree on it, so together they read every byte once."""
    size = os.path.getsize(path)
    if offset <= 0 or offset >= size:
        return min(max(offset, 0), size)
    with open(path, "rb") as f:
        f.seek(offset - 1)
        position, carry = offset - 1, b""
        while chunk := f.read(1 << 16):
            found = _SPACE_RUN.search(carry + chunk)
            if found:
                return position - len(carry) + found.start() + 1
            position, carry = position + len(chunk), chunk[-1:]
    return size


def _pieces_of(path: str, keep_linebreaks: bool, version: str):
    """:func:`text_pieces` of ``path``; ``version`` (its size and time) only keys the datasets cache."""
    for piece in text_pieces(path, keep_linebreaks):
        yield {"text": piece}


def _read_pieces(path: str, keep_linebreaks: bool, cache_dir) -> Dataset:
    """The rows of :func:`text_pieces` as a ``Dataset`` (written to the datasets cache, keyed by the file's path,
    size and modification time)."""
    stat = os.stat(path)
    return Dataset.from_generator(_pieces_of, features=Features({"text": Value("string")}),
                                  cache_dir=None if cache_dir is None else str(cache_dir),
                                  gen_kwargs={"path": path, "keep_linebreaks": keep_linebreaks,
                                              "version": f"{stat.st_size}-{stat.st_mtime_ns}"})


def _read_one_local(path: str, kind: str, keep_linebreaks: bool, cache_dir) -> Dataset:
    _check_encoding(path)
    if kind == "text" and os.path.getsize(path) == 0:
        return Dataset.from_dict({"text": []}, features=Features({"text": Value("string")}))
    if kind == "text" and _longest_line(path) > LINE_PIECE_CHARS:  # a long line: read in pieces
        ds = _read_pieces(path, keep_linebreaks, cache_dir)
    else:
        ds = _load_file(path, kind, cache_dir, _reader_options(path, kind, keep_linebreaks))
    if kind == "text" and not keep_linebreaks:  # blank lines go with the line breaks
        ds = ds.filter(lambda row: bool(row["text"].strip()), keep_in_memory=True)
    elif len(ds) == 0:
        what = "has a header but no rows" if kind == "csv" else "has no rows"
        raise DataError(f"load_corpus: {path} {what}")
    return ds


def _read_local(paths: list[str], keep_linebreaks: bool, cache_dir, origins: list | None = None) -> Dataset:
    """The rows of ``paths`` (one split), in order; ``origins`` gets one :class:`FileOrigin` per file."""
    kinds = set()
    for p in paths:
        if os.path.isdir(p):
            raise DataError(f"load_corpus: {p} is a folder; give the data files in it "
                             "(.txt, .csv, .tsv, .json, .jsonl)")
        if not os.path.exists(p):
            raise FileNotFoundError(f"load_corpus: no such file: {p}")
        kind = _file_kind(p)
        if kind is None:
            raise DataError(
                f"load_corpus: cannot read {p}: unknown file type; use one of "
                + ", ".join(sorted(_LOCAL_EXTENSIONS))
            )
        kinds.add(kind)
    if len(kinds) > 1:
        raise DataError(f"load_corpus: files of one split must share one type, got {sorted(kinds)} in {paths}")
    kind = kinds.pop()
    parts = [_read_one_local(p, kind, keep_linebreaks, cache_dir) for p in paths]
    if origins is not None:
        origins.extend(FileOrigin(p, kind, len(ds)) for p, ds in zip(paths, parts, strict=True))
    if len(parts) == 1:
        return parts[0]
    try:
        return datasets.concatenate_datasets(parts)
    except ValueError as exc:
        raise DataError(f"load_corpus: the files {', '.join(paths)} do not have the same columns: {exc}") from None


def _load_local(data_files, keep_linebreaks: bool, cache_dir) -> tuple[datasets.DatasetDict, dict[str, list]]:
    """The splits of ``data_files`` (a path, a list of paths or a dict split -> path(s); a split named by an alias
    of :data:`SPLIT_ALIASES` is that split) and, per split, the :class:`FileOrigin` of each of its files."""
    if isinstance(data_files, (str, os.PathLike)):
        data_files = {"train": [data_files]}
    elif isinstance(data_files, (list, tuple)):
        data_files = {"train": list(data_files)}
    elif not isinstance(data_files, Mapping):
        raise TypeError("load_corpus: data_files must be a path, a list of paths or a dict split -> path(s), "
                        f"got {type(data_files).__name__}")
    out = {}
    origins: dict[str, list] = {}
    for split, files in data_files.items():
        split = canonical_split(split)
        if split not in SPLITS:
            raise OptionError(f"load_corpus: data_files split {split!r} is not one of {SPLITS}")
        files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        origins[split] = []
        out[split] = _read_local([os.fspath(os.path.expanduser(f)) for f in files], keep_linebreaks, cache_dir,
                                 origins[split])
    if "train" not in out:
        raise OptionError("load_corpus: data_files needs a 'train' entry")
    return datasets.DatasetDict(out), origins


def _files_of(data_files, split: str | None = None) -> list:
    """The paths in ``data_files`` (a path, a list of paths or a dict split -> path(s)); with ``split``,
    only that split's (a bare path or list counts as train)."""
    if isinstance(data_files, (str, os.PathLike)):
        groups = {"train": [data_files]}
    elif isinstance(data_files, Mapping):
        groups = {k: [v] if isinstance(v, (str, os.PathLike)) else list(v) for k, v in data_files.items()}
    else:
        groups = {"train": list(data_files)}
    return [f for k, v in groups.items() if split is None or k == split for f in v]


def _all_text_files(data_files) -> bool:
    return all(_file_kind(f) == "text" for f in _files_of(data_files))

