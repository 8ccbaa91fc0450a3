"""Data loading that must not give a silently wrong model: labels read as a set of named classes, text
files read as streams (end-of-sequence between documents, not lines), empty cells and unreadable files
named by file and row, and the options that would train on nothing or on random frozen vectors refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hfnn.data.corpora import Corpus, load_corpus, open_corpus
from hfnn.data.tokenization import train_tokenizer
from hfnn.pipelines import common, run_classification, run_lm
from tests.reliability_utils import shakespeare_text


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def csv_rows(rows) -> str:
    return "text,label\n" + "".join(f'"{t}",{l}\n' for t, l in rows)


TEXTS = [f"review number {i} says {'good' if i % 2 else 'bad'} things" for i in range(60)]


def cls_argv(out: Path, train: Path, *extra: str) -> list[str]:
    return ["cnn_rotten_tomatoes", "--output_dir", str(out), "--train_file", str(train),
            "--config_overrides", '{"embedding_size": 8, "window_sizes": [2], "num_filters": 2}',
            "--max_steps", "1", "--num_samples", "0", "--write_model_card", "false", "--eval_strategy", "no",
            "--save_strategy", "no", "--report_to", "none", *extra]


# ----------------------------------------------------------------------------------------- labels


def label_names(dd) -> list[str]:
    return list(dd["train"].features["label"].names)


def test_string_labels_are_stripped_into_one_class(tmp_path):
    path = write(tmp_path / "d.csv", csv_rows((t, " pos" if i % 3 == 0 else ("pos" if i % 3 == 1 else "neg"))
                                              for i, t in enumerate(TEXTS)))
    assert label_names(load_corpus(str(path))) == ["neg", "pos"]


def test_integer_labels_are_classes_named_by_their_value(tmp_path):
    sparse = write(tmp_path / "sparse.csv", csv_rows((t, 5 if i % 2 else 100) for i, t in enumerate(TEXTS)))
    assert label_names(load_corpus(str(sparse))) == ["5", "100"]
    stars = write(tmp_path / "stars.csv", csv_rows((t, i % 5 + 1) for i, t in enumerate(TEXTS)))
    assert label_names(load_corpus(str(stars))) == ["1", "2", "3", "4", "5"]
    negative = write(tmp_path / "neg.csv", csv_rows((t, i % 3 - 1) for i, t in enumerate(TEXTS)))
    assert label_names(load_corpus(str(negative))) == ["-1", "0", "1"]


def test_float_and_bool_labels_do_not_switch_the_problem(tmp_path):
    whole = write(tmp_path / "f.jsonl", "".join(json.dumps({"text": t, "label": float(i % 2)}) + "\n"
                                                for i, t in enumerate(TEXTS)))
    assert label_names(load_corpus(str(whole))) == ["0", "1"]
    flags = write(tmp_path / "b.jsonl", "".join(json.dumps({"text": t, "label": bool(i % 2)}) + "\n"
                                                for i, t in enumerate(TEXTS)))
    assert label_names(load_corpus(str(flags))) == ["False", "True"]
    scores = write(tmp_path / "s.jsonl", "".join(json.dumps({"text": t, "label": i / 7}) + "\n"
                                                 for i, t in enumerate(TEXTS)))
    with pytest.raises(ValueError, match=r"s.jsonl row 2: the label 0.142.*regression"):
        load_corpus(str(scores))
    dd = load_corpus(str(scores), label_type="regression")
    assert dd["train"].features["label"].dtype == "float32"


def test_a_blank_label_is_an_error_naming_the_file_row(tmp_path):
    rows = [(t, "pos" if i % 2 else "neg") for i, t in enumerate(TEXTS)]
    rows[6] = (rows[6][0], "")
    path = write(tmp_path / "d.csv", csv_rows(rows))
    with pytest.raises(ValueError, match=r"d.csv row 8: the label cell is empty"):
        load_corpus(str(path))
    rows[6] = (rows[6][0], "  ")
    write(path, csv_rows(rows))
    with pytest.raises(ValueError, match=r"d.csv row 8: the label cell is empty"):
        load_corpus(str(path))
    ints = [(t, i % 2) for i, t in enumerate(TEXTS)]
    path = write(tmp_path / "i.csv", csv_rows(ints).replace(f'"{TEXTS[3]}",1', f'"{TEXTS[3]}",'))
    with pytest.raises(ValueError, match=r"i.csv row 5: the label cell is empty"):
        load_corpus(str(path))


def test_a_class_missing_from_the_training_split_is_an_error_naming_the_row(tmp_path):
    """The classes are the training split's: a label only the test (or validation) file has used to become an
    extra output the model never trained, and its rows were scored against it."""
    rows = [(t, "pos" if i % 2 else "neg") for i, t in enumerate(TEXTS)]
    train = write(tmp_path / "train.csv", csv_rows(rows[:40]))
    test = write(tmp_path / "test.csv", csv_rows(rows[40:45] + [(TEXTS[45], "Pos")] + rows[46:]))
    with pytest.raises(ValueError, match=r"test.csv row 7: the label 'Pos' \(test split\) does not occur in the "
                                         r"training split, whose classes are: neg, pos"):
        load_corpus(data_files={"train": str(train), "test": str(test)})
    with pytest.raises(ValueError, match=r"test.csv row 7: the label 'Pos'"):
        run_classification.main(cls_argv(tmp_path / "out", train, "--test_file", str(test)))
    assert not (tmp_path / "out" / "config.json").exists()
    # a class the training split has and the others lack is fine, and numbered classes are matched by value
    numbers = write(tmp_path / "n.csv", csv_rows((t, i % 3) for i, t in enumerate(TEXTS[:30])))
    few = write(tmp_path / "few.csv", csv_rows((t, i % 2) for i, t in enumerate(TEXTS[30:])))
    loaded = load_corpus(data_files={"train": str(numbers), "test": str(few)})
    assert loaded["train"].features["label"].names == ["0", "1", "2"] and set(loaded["test"]["label"]) == {0, 1}


def held_out_texts(n: int, split: str = "test") -> list[str]:
    """``n`` texts that load_corpus's default carving (5 % validation, 5 % test, seed 0) puts in ``split``."""
    from hfnn.data.corpora.splits import _normalise_text, split_of

    found = (f"a rare remark {i}" for i in range(10_000))
    return [t for t in found if split_of(_normalise_text(t), 0.05, 0.05, 0) == split][:n]


def test_a_class_carved_wholly_out_of_training_moves_into_it(tmp_path, caplog):
    """Carving validation and test out of one file by the hash of each text once put every row of a rare class
    in a held-out split: the class became an output the model never trained, its rows scored against it."""
    rare, twin, other = held_out_texts(3)  # in the order of the file: the first held-out row is rare's
    rows = [(t, "pos" if i % 2 else "neg") for i, t in enumerate(TEXTS)]
    path = write(tmp_path / "d.csv", csv_rows(rows + [(rare, "neutral"), (twin, "neutral"), (rare.upper(), "neutral")]))
    with caplog.at_level("WARNING"):
        dd = load_corpus(str(path))
    names = dd["train"].features["label"].names
    assert names == ["neg", "neutral", "pos"]
    train_texts = [t for t, label in zip(dd["train"]["text"], dd["train"]["label"]) if names[label] == "neutral"]
    # the first held-out row of the class moves, with its equal text; the class's other row may stay held out
    assert rare in train_texts and rare.upper() in train_texts and twin not in train_texts
    assert sum(len(ds) for ds in dd.values()) == len(rows) + 3
    warned = [r.getMessage() for r in caplog.records if "moved from the carved" in r.getMessage()]
    assert len(warned) == 1 and "2 row(s) of " in warned[0] and "'neutral'" in warned[0], warned
    # multi-label: a label that only held-out lists carry moves its row as well
    lists = write(tmp_path / "m.jsonl", "".join(json.dumps({"text": t, "label": [i % 2]}) + "\n"
                                                for i, t in enumerate(TEXTS))
                                        + json.dumps({"text": other, "label": [0, 9]}))
    dd = load_corpus(str(lists))
    nine = dd["train"].features["label"].feature.names.index("9")
    assert any(nine in row for row in dd["train"]["label"])


def test_a_label_column_of_texts_is_an_error_naming_the_column(tmp_path):
    """Swapped --text_column / --label_column made a classifier with one class per review, every held-out row a
    class never trained."""
    rows = [(t, "pos" if i % 2 else "neg") for i, t in enumerate(TEXTS)]
    path = write(tmp_path / "d.csv", "review,sentiment\n" + "".join(f'"{t}",{l}\n' for t, l in rows))
    with pytest.raises(ValueError, match=r"the label column 'review' holds 60 distinct values in 60 rows "
                                         r"\('review number 0 says bad th\.\.\.', .*Is it the text column\?"):
        load_corpus(str(path), text_column="sentiment", label_column="review")
    with pytest.raises(ValueError, match=r"label column 'review' holds 60 distinct values"):
        run_classification.main(cls_argv(tmp_path / "out", path, "--text_column", "sentiment",
                                         "--label_column", "review"))
    assert label_names(load_corpus(str(path), text_column="review", label_column="sentiment")) == ["neg", "pos"]
    # many classes with several examples each are classes
    many = write(tmp_path / "many.csv", csv_rows((t, i % 25) for i, t in enumerate(TEXTS)))
    assert len(label_names(load_corpus(str(many)))) == 25


def test_texts_cut_by_max_length_are_counted_per_split(tmp_path, caplog):
    rows = [(t, "pos" if i % 2 else "neg") for i, t in enumerate(TEXTS)]
    train = write(tmp_path / "train.csv", csv_rows(rows[:40] + [("short", "pos"), ("tiny", "neg")]))
    with caplog.at_level("WARNING"):
        run_classification.main(cls_argv(tmp_path / "out", train, "--validation_file", str(train), "--max_length", "4"))
    # the reviews are 6 words long, so every split that holds one has cut rows; the two short rows fit
    cut = [r.getMessage() for r in caplog.records if "were cut" in r.getMessage()]
    assert any(m.startswith("train: ") for m in cut) and any(m.startswith("validation: ") for m in cut)
    assert all("longer than --max_length 4 tokens" in m and "raise --max_length" in m for m in cut), cut


def test_a_csv_with_another_separator_is_named_as_such(tmp_path):
    rows = [(t, "pos" if i % 2 else "neg") for i, t in enumerate(TEXTS)]
    semi = write(tmp_path / "semi.csv", "text;label\n" + "".join(f"{t};{l}\n" for t, l in rows))
    with pytest.raises(ValueError, match=r"no 'text' column \(columns: \['text;label'\]\) \(the file looks "
                                         r"semicolon-separated; a .csv file is read as comma-separated"):
        run_classification.main(cls_argv(tmp_path / "out", semi))
    from hfnn.data.corpora import separator_hint

    assert "tab-separated" in separator_hint(["text\tlabel"]) and separator_hint(["text", "label"]) == ""


def test_classification_run_builds_one_output_per_named_class(tmp_path):
    train = write(tmp_path / "stars.csv", csv_rows((t, i % 5 + 1) for i, t in enumerate(TEXTS)))
    results = run_classification.main(cls_argv(tmp_path / "out", train))
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert results["labels"] == ["1", "2", "3", "4", "5"] and results["problem_type"] == "single_label_classification"
    assert len(config["id2label"]) == 5 and config["id2label"]["0"] == "1"


def test_multi_label_lists_are_read_as_named_classes(tmp_path):
    path = write(tmp_path / "m.jsonl", "".join(json.dumps({"text": t, "label": [i % 3, 7] if i % 2 else [7]}) + "\n"
                                               for i, t in enumerate(TEXTS)))
    dd = load_corpus(str(path))
    assert list(dd["train"].features["label"].feature.names) == ["0", "1", "2", "7"]
    problem, names = run_classification.label_info(dd)
    assert problem == "multi_label_classification" and names == ["0", "1", "2", "7"]


# ----------------------------------------------------------------------------------------- empty / numeric text


def test_an_empty_text_cell_is_an_error_naming_the_file_row_in_classification(tmp_path):
    rows = [(t, i % 2) for i, t in enumerate(TEXTS)]
    rows[10] = ("   ", 1)
    train = write(tmp_path / "d.csv", csv_rows(rows))
    with pytest.raises(ValueError, match=r"d.csv row 12: the text cell is empty"):
        run_classification.main(cls_argv(tmp_path / "out", train))
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_numeric_text_column_is_an_error_naming_the_file(tmp_path):
    train = write(tmp_path / "n.csv", "text,label\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    with pytest.raises(ValueError, match=r"n.csv row 2: the text column holds int64"):
        run_classification.main(cls_argv(tmp_path / "out", train))


def test_a_number_among_json_texts_is_an_error_naming_its_row(tmp_path):
    path = write(tmp_path / "j.jsonl", "".join(json.dumps({"text": t if i != 7 else 5, "label": i % 2}) + "\n"
                                               for i, t in enumerate(TEXTS)))
    with pytest.raises(ValueError, match=r"j.jsonl row 8: the text cell is a int, not a string \(5\)"):
        run_classification.main(cls_argv(tmp_path / "out", path))


def test_language_model_drops_empty_text_cells_the_same_in_a_batch_as_alone(tmp_path):
    rows = [shakespeare_text(200, offset=300 * i) for i in range(20)]
    with_empty = rows[:5] + ["", "  "] + rows[5:]
    a = write(tmp_path / "a.csv", "text\n" + "".join(json.dumps(t) + "\n" for t in rows))
    b = write(tmp_path / "b.csv", "text\n" + "".join(json.dumps(t) + "\n" for t in with_empty))
    da = run_lm.load_text_corpus(run_lm.DataArguments(train_file=str(a)), seed=0).splits
    db = run_lm.load_text_corpus(run_lm.DataArguments(train_file=str(b)), seed=0).splits
    assert sum(len(ds) for ds in da.values()) == sum(len(ds) for ds in db.values()) == 20
    assert all(t.strip() for ds in db.values() for t in ds["text"])


# ----------------------------------------------------------------------------------------- text streams


def test_a_text_file_is_a_stream_with_end_of_sequence_between_files_only(tmp_path):
    first = write(tmp_path / "a.txt", "".join(f"To be or not {i}\n" for i in range(30)))
    second = write(tmp_path / "b.txt", "".join(f"that is the question {i}\n" for i in range(10)))
    raw = open_corpus(data_files={"train": [str(first), str(second)]}, validation_fraction=0.1, test_fraction=0.1)
    tok = train_tokenizer(raw.splits["train"]["text"], kind="char")
    blocks = run_lm.tokenize_and_group(raw, tok, block_size=8)
    train_ids = [i for block in blocks["train"]["input_ids"] for i in block]
    assert train_ids.count(tok.eos_token_id) <= 1  # only the end of a.txt; never one per line
    newline = tok.convert_tokens_to_ids("\n")
    assert train_ids.count(newline) >= 25  # lines keep their newlines
    # every row of a csv text column is a document of its own
    csv = write(tmp_path / "docs.csv", "text\n" + "".join(f"document {i}\n" for i in range(30)))
    raw = load_corpus(str(csv), validation_fraction=0.1, test_fraction=0.1)
    blocks = run_lm.tokenize_and_group(raw, tok, block_size=4)
    ids = [i for block in blocks["train"]["input_ids"] for i in block]
    assert ids.count(tok.eos_token_id) >= 15


def test_a_model_trained_on_a_text_file_does_not_learn_to_stop_at_newlines(tmp_path):
    text = write(tmp_path / "t.txt", shakespeare_text(3000))
    raw = open_corpus(str(text))
    tok = train_tokenizer(raw.splits["train"]["text"], kind="char")
    blocks = run_lm.tokenize_and_group(raw, tok, block_size=16)
    ids = [i for split in blocks.values() for block in split["input_ids"] for i in block]
    assert tok.eos_token_id not in ids  # one file: one document that the splits cut, no end inside


# ----------------------------------------------------------------------------------------- options


def lm_argv(out: Path, text: Path, *extra: str) -> list[str]:
    return ["rnn_shakespeare_char", "--output_dir", str(out), "--train_file", str(text),
            "--config_overrides", '{"hidden_size": 8, "embedding_size": 8, "num_hidden_layers": 1}',
            "--max_steps", "1", "--num_samples", "0", "--write_model_card", "false", "--eval_strategy", "no",
            "--report_to", "none", "--block_size", "16"]+list(extra)


@pytest.mark.parametrize("option, value, message", [
    ("--block_size", "0", "--block_size must be"), ("--block_size", "1", "--block_size must be"),
    ("--block_size", "-4", "--block_size must be"), ("--max_train_minutes", "0", "--max_train_minutes must be"),
    ("--max_train_minutes", "-1", "--max_train_minutes must be"),
    ("--per_device_train_batch_size", "0", "--per_device_train_batch_size must be"),
    ("--per_device_train_batch_size", "-2", "--per_device_train_batch_size must be"),
    ("--per_device_eval_batch_size", "0", "--per_device_eval_batch_size must be"),
    ("--max_train_samples", "0", "--max_train_samples must be"),
    ("--num_train_epochs", "0", "--num_train_epochs must be"),
])
def test_options_that_would_train_on_nothing_are_errors_naming_them(tmp_path, option, value, message):
    text = write(tmp_path / "t.txt", shakespeare_text(2000))
    start = time.monotonic()
    extra = ("--max_steps", "-1") if option == "--num_train_epochs" else ()
    with pytest.raises(ValueError, match=message):
        run_lm.main(lm_argv(tmp_path / "out", text, option, value, *extra))
    assert time.monotonic() - start < 20
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_max_train_samples_zero_is_the_same_error_in_classification(tmp_path):
    train = write(tmp_path / "d.csv", csv_rows((t, i % 2) for i, t in enumerate(TEXTS)))
    with pytest.raises(ValueError, match="--max_train_samples must be"):
        run_classification.main(cls_argv(tmp_path / "out", train, "--max_train_samples", "0"))


def test_static_cnn_embeddings_without_a_file_are_an_error(tmp_path):
    train = write(tmp_path / "d.csv", csv_rows((t, i % 2) for i, t in enumerate(TEXTS)))
    argv = cls_argv(tmp_path / "out", train)
    argv[argv.index("--config_overrides") + 1] = '{"embedding_size": 8, "window_sizes": [2], "num_filters": 2, ' \
                                                 '"embedding_mode": "static"}'
    with pytest.raises(ValueError, match="embedding_mode='static'.*--embeddings_file"):
        run_classification.main(argv)


def test_an_empty_validation_split_with_evaluation_on_is_an_error(tmp_path):
    # every row is the same text: de-duplication by hash keeps them all in one split
    train = write(tmp_path / "d.csv", csv_rows(("the same text", i % 2) for i in range(40)))
    with pytest.raises(ValueError, match="validation split is empty.*--eval_strategy"):
        run_classification.main(cls_argv(tmp_path / "out", train, "--eval_strategy", "epoch",
                                            "--load_best_model_at_end", "false"))


# ----------------------------------------------------------------------------------------- files


def test_unreadable_files_are_named_with_their_line_or_problem(tmp_path):
    empty = write(tmp_path / "empty.csv", "")
    with pytest.raises(ValueError, match="empty.csv is empty"):
        load_corpus(str(empty))
    header = write(tmp_path / "header.csv", "text,label\n")
    with pytest.raises(ValueError, match="header.csv has a header but no rows"):
        load_corpus(str(header))
    jsonl = write(tmp_path / "bad.jsonl", json.dumps({"text": "a", "label": 1}) + "\n" + '{"text": "b", "label": 2\n')
    with pytest.raises(ValueError, match="bad.jsonl: line 2 is not valid JSON"):
        load_corpus(str(jsonl))
    utf16 = tmp_path / "u.txt"
    utf16.write_bytes("hello\nworld\n".encode("utf-16"))
    with pytest.raises(ValueError, match="u.txt is UTF-16"):
        load_corpus(str(utf16))


def test_a_folder_is_not_taken_for_a_hub_dataset(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    write(folder / "train.csv", csv_rows((t, i % 2) for i, t in enumerate(TEXTS)))
    with pytest.raises(ValueError, match="is a folder.*train.csv"):
        load_corpus(str(folder))


def test_an_unreachable_hub_fails_fast_in_one_line(tmp_path, monkeypatch, capsys):
    from hfnn.data.corpora import hub

    probes = []  # the probe is replaced where it is looked up: the loader must ask it
    monkeypatch.setattr(hub, "_hub_reachable", lambda timeout=3.0: probes.append(timeout) or False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    start = time.monotonic()
    code = common.run_command(run_lm.main, ["rnn_shakespeare_char", "--output_dir", str(tmp_path / "out"),
                                            "--corpus", "someone/dataset", "--max_steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - start < 10
    assert "Hub cannot be reached" in err and "someone/dataset" in err and "Traceback" not in err
    assert probes == [3.0]


def test_kjv_verses_are_lines_of_their_book():
    try:
        raw = open_corpus("kjv")
    except ImportError:
        pytest.skip("the kjv corpus package is not installed")
    for split, ds in raw.splits.items():
        assert len(raw.document_ends[split]) == len(set(ds["book"][:]))
    assert raw.line_separator == "\n"
    # the stream of a split: verses joined by newlines, one end-of-sequence per book
    small = raw.splits["test"].select(range(40))
    from datasets import DatasetDict

    part = Corpus(DatasetDict({"train": small}), {"train": [i for i in raw.document_ends["test"] if i < 40] + [39]},
                  "\n")
    tok = train_tokenizer(small["text"], kind="char")
    ids = [i for b in run_lm.tokenize_and_group(part, tok, block_size=8)["train"]["input_ids"] for i in b]
    assert ids.count(tok.eos_token_id) <= 1 and ids.count(tok.convert_tokens_to_ids("\n")) >= 35


def test_an_empty_seq2seq_target_is_an_error_naming_the_file_row(tmp_path):
    from hfnn.pipelines import run_seq2seq

    train = write(tmp_path / "t.csv", "word,phonemes\n" + "".join(f"w{i},W {i % 3}\n" for i in range(30)) + "w99,\n")
    with pytest.raises(ValueError, match=r"t.csv row 32: the phonemes cell is empty"):
        run_seq2seq.main(["rnn_seq2seq_cmudict", "--output_dir", str(tmp_path / "out"), "--train_file", str(train),
                          "--max_steps", "1", "--report_to", "none"])


def test_csv_cells_are_read_as_written(tmp_path):
    rows = [("NA" if i == 0 else t, ["None", "NA", "neutral"][i % 3]) for i, t in enumerate(TEXTS)]
    dd = load_corpus(str(write(tmp_path / "d.csv", csv_rows(rows))), validation_fraction=0.0, test_fraction=0.0)
    assert label_names(dd) == ["NA", "None", "neutral"]
    assert "NA" in dd["train"]["text"]
    # whole numbers written as strings still sort by value
    path = write(tmp_path / "n.jsonl", "".join(json.dumps({"text": t, "label": ["2", "10", "1"][i % 3]}) + "\n"
                                               for i, t in enumerate(TEXTS)))
    assert label_names(load_corpus(str(path))) == ["1", "2", "10"]


def test_evaluating_a_text_file_scores_the_stream_the_pipeline_trains_on(tmp_path):
    """``hfnn evaluate --file x.txt``: the file is one document (end-of-sequence at its end only), as in training."""
    from argparse import Namespace

    from hfnn.apps.inference import evaluate_lm, load_eval_split

    content = "".join(f"To be or not {i}\n" for i in range(30))
    path = write(tmp_path / "a.txt", content)
    args = Namespace(file=str(path), corpus=None, split=None, text_column=None, label_column=None, source_column=None,
                     target_column=None)
    _, ds = load_eval_split(args, {})
    assert ds["text"][:] == [content]  # train, validation and test tails joined back into the file
    tok = train_tokenizer([content], kind="char")
    raw = open_corpus(str(path))
    trained = [i for split in run_lm.tokenize_and_group(raw, tok, block_size=4).values()
               for b in split["input_ids"] for i in b]
    assert tok.eos_token_id not in trained  # the pipeline: no end inside a file...

    seen = []

    class Recorder:  # a stand-in model that records the blocks it is given
        device = "cpu"

        def __call__(self, input_ids):
            import torch

            seen.append(input_ids)
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, len(tok))})()

    metrics = evaluate_lm(Recorder(), tok, ds["text"], block_size=4)
    scored = [i for batch in seen for row in batch.tolist() for i in row]
    assert scored.count(tok.eos_token_id) <= 1 and scored.count(tok.convert_tokens_to_ids("\n")) >= 25
    assert metrics["blocks"] == (len(content) + 1) // 4  # ...and one at its end in evaluation: never one per line
    # a split of the file is its own part of the one document
    _, valid = load_eval_split(Namespace(**{**vars(args), "split": "validation"}), {})
    assert len(valid) == 1 and valid["text"][0]
    assert content.endswith(valid["text"][0] + "".join(raw.splits["test"]["text"]))
    # it ends inside the document, so no end-of-sequence follows it: the stream the pipeline scores for it
    assert valid["ends_document"] == [False]
    seen.clear()
    evaluate_lm(Recorder(), tok, valid["text"], block_size=4, ends_document=valid["ends_document"])
    scored = [i for batch in seen for row in batch.tolist() for i in row]
    pipeline = [i for b in run_lm.tokenize_and_group(raw, tok, block_size=4)["validation"]["input_ids"] for i in b]
    assert tok.eos_token_id not in scored and scored == pipeline
