"""Labels and splits: deterministic train/validation/test assignment, carving missing splits out of train,
canonical column names, and the checks and encoding of text and label cells.

Splits never depend on Python's salted ``hash()`` or on the order rows are read in: an item goes by a
``hashlib.blake2b`` hash of its key, so the same item lands in the same split on every call and every machine,
and duplicates (equal keys) never straddle two splits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from typing import Mapping

from datasets import ClassLabel, Dataset, DatasetDict, Sequence, Value

from hfnn.models.errors import ColumnError, DataError, OptionError

__all__ = ["SPLITS", "SPLIT_ALIASES", "canonical_split", "label_feature", "split_of"]

logger = logging.getLogger("hfnn.data.corpora")

SPLITS = ("train", "validation", "test")
# other names of the validation split, in data_files keys, Hub datasets and `hfnn evaluate --split`
SPLIT_ALIASES: Mapping[str, str] = {"dev": "validation", "valid": "validation", "val": "validation",
                                    "eval": "validation"}


def canonical_split(name: str) -> str:
    """The canonical name of split ``name``: ``validation`` for an alias of :data:`SPLIT_ALIASES`, else ``name``."""
    return SPLIT_ALIASES.get(name, name)


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


def _contiguous_index(n: int, fractions: dict, source: str) -> dict:
    """Rows of each split when the tail of ``n`` lines becomes validation then test: each held-out split with a
    non-zero fraction gets at least one line; too few lines for that is a ValueError naming ``source``."""
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
    return {"train": range(0, n_train), "validation": range(n_train, n_train + n_val),
            "test": range(n_train + n_val, n)}


def _hashed_index(train: Dataset, fractions: dict, seed: int, missing: list[str], source: str) -> dict:
    """Rows of each split by a hash of their (normalised) text, every class of the data kept in train; a train
    split left empty is a ValueError naming ``source``."""
    index = {s: [] for s in SPLITS}
    keys = _row_keys(train)
    for i, key in enumerate(keys):
        index[split_of(key, fractions["validation"], fractions["test"], seed)].append(i)
    n = len(train)
    if n and not index["train"]:
        raise DataError(
            f"load_corpus: {source} has {n} row{'' if n == 1 else 's'}, too few to hold out "
            f"{' and '.join(missing)} split{'s' if len(missing) > 1 else ''} from it: none was left for "
            "train; give more data, or give the held-out splits as files of their own "
            "(data_files={'train': ..., 'validation': ..., 'test': ...})"
        )
    _train_every_class(train, index, keys, source)
    return index


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
    index = _contiguous_index(len(train), fractions, source) if contiguous else \
        _hashed_index(train, fractions, seed, missing, source)

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


def _check_holds_text(ds: Dataset, column: str, origins, split: str) -> None:
    """A text column of numbers (or of other non-strings) is a ValueError naming its first such row."""
    feature = ds.features[column]
    if _is_string(feature) or not len(ds):
        return
    values = ds[column][:]
    first = next((i for i, v in enumerate(values) if v is not None and not isinstance(v, str)), None)
    if first is not None:
        what = f"the {column} column holds {feature.dtype} values" if isinstance(feature, Value) else \
            f"the {column} cell is a {type(values[first]).__name__}, not a string"
        raise DataError(
            f"load_corpus: {_where(origins, split, first)}: {what} ({values[first]!r}); give the "
            "column of texts (text_column / source_column / target_column), or quote the text"
        )


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
            _check_holds_text(ds, column, origins, split)
            if kinds == {"text"} or empty_text == "keep":
                continue
            for i, value in enumerate(ds[column][:]):
                if _is_blank(value):
                    if empty_text == "error":
                        raise DataError(
                            f"load_corpus: {_where(origins, split, i)}: the {column} cell is empty; fill it or "
                            "remove the row"
                        )
                    drop.add(i)
        if drop:
            logger.warning("load_corpus: dropped %d row(s) of split %r with an empty text", len(drop), split)
            ds = ds.select([i for i in range(len(ds)) if i not in drop])
        out[split] = ds
    return DatasetDict(out)


def _class_name(value) -> str:
    if isinstance(value, str):  # NFC, as the texts are: a label typed decomposed is the same class
        return unicodedata.normalize("NFC", value.strip())
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


def _cells(row, is_list: bool) -> list:
    return row if is_list else [row]


def _regression_labels(dd: DatasetDict, columns: dict, origins) -> DatasetDict:
    """The ``label`` column as float32 numbers; a label that is not a number is a ValueError naming its row."""
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


def _class_values(columns: dict, is_list: bool, origins) -> list:
    """The label values the classes are named from: the training split's when there are other splits (a label of
    another split that training lacks is a ValueError naming its row), else every split's. A fraction is a
    ValueError naming its row: not a class."""
    for split, values in columns.items():
        for i, row in enumerate(values):
            for value in _cells(row, is_list):
                if isinstance(value, float) and not value.is_integer():
                    raise DataError(
                        f"load_corpus: {_where(origins, split, i)}: the label {value!r} is not a class (a whole number "
                        "or a name); for a numeric target train a regression (problem_type regression)"
                    )
    if not ("train" in columns and len(columns) > 1):
        return [v for values in columns.values() for row in values for v in _cells(row, is_list)]
    # the classes are the training split's: a class the model never sees in training is a typo or a
    # mismatched file, never a silent extra output of the model
    seen = [v for row in columns["train"] for v in _cells(row, is_list)]
    known = {_class_name(v) for v in seen}
    for split, values in columns.items():
        for i, row in enumerate(values):
            for value in _cells(row, is_list):
                if _class_name(value) not in known:
                    shown = ", ".join(_class_order(known, seen)[:10]) + (", ..." if len(known) > 10 else "")
                    cased = sorted(k for k in known if k.casefold() == _class_name(value).casefold())
                    near = f" ({cased[0]!r} differs from it only by case)" if cased else ""
                    raise DataError(
                        f"load_corpus: {_where(origins, split, i)}: the label {value!r} ({split} split) does not "
                        f"occur in the training split, whose classes are: {shown}{near}; a class needs training "
                        "examples: correct the label, or add training rows with it")
    return seen


def _note_case_variants(names: list[str]) -> list[list[str]]:
    """Warns about class names that differ only by case (``Pos``, ``pos``, ``POS``): they stay separate classes, as
    written, but that is seldom meant. Returns the groups."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.casefold(), []).append(name)
    variants = [g for g in groups.values() if len(g) > 1]
    if variants:
        shown = "; ".join(", ".join(repr(n) for n in g) for g in variants[:5])
        logger.warning("load_corpus: labels that differ only by case are separate classes: %s (%d group%s); to make "
                       "each one class, write its labels alike (e.g. lowercase the label column)", shown,
                       len(variants), "" if len(variants) == 1 else "s")
    return variants


def _class_labels(dd: DatasetDict, columns: dict, is_list: bool, origins, label_name: str | None) -> DatasetDict:
    """The ``label`` column as class ids of one ``ClassLabel`` shared by every split (lists of ids for lists)."""
    flat = _class_values(columns, is_list, origins)
    names = _class_order({_class_name(v) for v in flat}, flat)
    rows = len(flat)  # the training split's rows, when there is one
    if not is_list and rows >= 20 and len(names) > 0.9 * rows:
        # most classes would have one example: a column of texts or ids (swapped columns), not of classes
        shown = ", ".join(repr(n if len(n) <= 30 else n[:27] + "...") for n in names[:3])
        raise DataError(
            f"load_corpus: the label column{f' {label_name!r}' if label_name else ''} holds {len(names)} distinct "
            f"values in {rows} rows ({shown}, ...): most would be a class with a single example. Is it the text "
            "column? Check --text_column and --label_column; for a numeric target use --problem_type regression")
    _note_case_variants(names)
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


def _encode_labels(dd: DatasetDict, origins: dict | None = None, label_type: str = "classes",
                   label_name: str | None = None) -> DatasetDict:
    """Reads the ``label`` column as a set of named classes shared by every split (``label_type="classes"``):
    strings are stripped (" pos" and "pos" are one class), numbers are classes named by their value (labels 5
    and 100 are two classes, star ratings 1-5 five), booleans are "False"/"True". A column of lists becomes
    lists of class ids (``Sequence(ClassLabel)``, multi-label). ``label_type="regression"``: numbers, as
    float32. An empty label cell is a ValueError naming its row; a ``ClassLabel`` column is kept as it is. A column
    of classes with more distinct values than 90 % of its rows (20 rows or more) is a ValueError: texts or ids."""
    if label_type not in ("classes", "regression", "keep"):
        raise OptionError(f"load_corpus: label_type must be 'classes', 'regression' or 'keep', got {label_type!r}")
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
                raise DataError(f"load_corpus: {_where(origins, split, i)}: the label cell is empty; every row "
                                 "needs a label")
    if label_type == "regression":
        if is_list:
            raise DataError("load_corpus: label_type 'regression' needs one number per row, the label column "
                             "holds lists")
        return _regression_labels(dd, columns, origins)
    return _class_labels(dd, columns, is_list, origins, label_name)
