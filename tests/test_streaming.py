"""Bounded memory and streaming for language modelling: long lines read in pieces, the sharded stream of
``--streaming true``, its held-out tail, and the refusals of the pipelines it does not apply to."""

from __future__ import annotations

import json
import random

import datasets
import pytest
import torch

from hfnn.data import streaming
from hfnn.data.corpora import lm_blocks, open_corpus
from hfnn.data.corpora import local as local_files
from hfnn.data.streaming import local_shards, pack_blocks, shard_rows, stream_text
from hfnn.data.tokenization import train_tokenizer
from hfnn.models.errors import OptionError
from hfnn.pipelines import run_classification, run_lm, run_seq2seq

WORDS = ["alpha", "beta", "γάμμα", "delta", "été", "x" * 12, "  ", "\t"]


def write_text(path, n_words: int, seed: int = 0, one_line: bool = False, bom: bool = False) -> str:
    """A file of random words (some not ASCII, some runs of white space), one line or lines of 1 to 20 words."""
    rng = random.Random(seed)
    parts = []
    for _ in range(n_words):
        parts.append(rng.choice(WORDS))
        parts.append(" " if one_line or rng.random() > 0.1 else rng.choice(["\n", "\r\n"]))
    text = "".join(parts) + "\n"
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return text.replace("\r\n", "\n")


def datasets_rows(path, keep_linebreaks: bool = True) -> list[str]:
    return datasets.load_dataset("text", data_files=[str(path)], split="train", sample_by="line",
                                 keep_linebreaks=keep_linebreaks, encoding="utf-8-sig",
                                 cache_dir=str(path.parent / "cache"))["text"]


@pytest.mark.parametrize("keep_linebreaks", [True, False])
def test_pieces_are_the_rows_datasets_reads_when_no_line_is_long(tmp_path, keep_linebreaks):
    path = tmp_path / "lines.txt"
    write_text(path, 3000, bom=True)
    assert list(local_files.text_pieces(str(path), keep_linebreaks, limit=10**6)) == \
        datasets_rows(path, keep_linebreaks)


def test_a_long_line_comes_in_pieces_cut_before_white_space(tmp_path):
    path = tmp_path / "one.txt"
    text = write_text(path, 5000, one_line=True)
    pieces = list(local_files.text_pieces(str(path), True, limit=500))
    assert "".join(pieces) == text
    assert len(pieces) > 20 and max(map(len, pieces)) <= 500
    for before, after in zip(pieces, pieces[1:]):
        assert after[0].isspace() and not before[-1].isspace()  # a word or a run of spaces is never cut


def test_a_one_line_file_is_rows_of_pieces_and_one_document(tmp_path, monkeypatch):
    monkeypatch.setattr(local_files, "LINE_PIECE_CHARS", 400)
    path = tmp_path / "one.txt"
    text = write_text(path, 4000, one_line=True)
    corpus = open_corpus(str(path), cache_dir=str(tmp_path / "cache"))
    rows = [r for split in ("train", "validation", "test") for r in corpus.splits[split]["text"]]
    assert "".join(rows) == text and max(map(len, rows)) <= 400
    assert len(corpus.splits["validation"]) >= 1 and len(corpus.splits["test"]) >= 1  # a tail can be held out
    assert corpus.ends_of("train") == frozenset() and corpus.ends_of("test") == {len(corpus.splits["test"]) - 1}


def test_blocks_of_a_long_line_are_those_of_the_whole_text(tmp_path, monkeypatch):
    """Tokenised in bounded pieces and batches, a long line gives the blocks of the text tokenised whole (but the
    rests that each batch drops)."""
    monkeypatch.setattr(local_files, "LINE_PIECE_CHARS", 300)
    monkeypatch.setattr(run_lm, "_rows_per_batch", lambda ds, most=1000: 10**6)  # one batch: no rest dropped
    path = tmp_path / "one.txt"
    text = write_text(path, 2000, one_line=True)
    corpus = open_corpus(str(path), validation_fraction=0.0, test_fraction=0.0, cache_dir=str(tmp_path / "c"))
    for kind in ("char", "bpe", "word"):
        tok = train_tokenizer([text], kind=kind, vocab_size=300 if kind == "bpe" else None)
        got = run_lm.tokenize_and_group(corpus, tok, 16)["train"]["input_ids"]
        assert len(corpus.splits["train"]) > 20
        assert got == lm_blocks(tok, [text], 16), kind


def test_long_rows_are_tokenised_a_few_at_a_time(tmp_path):
    ds = datasets.Dataset.from_dict({"text": ["ab" * 40_000] * 30})
    assert run_lm._rows_per_batch(ds) == (1 << 20) // 80_000
    assert run_lm._rows_per_batch(datasets.Dataset.from_dict({"text": ["a line\n"] * 5})) == 1000


def test_preprocessing_workers_give_the_same_blocks(tmp_path):
    path = tmp_path / "lines.txt"
    text = write_text(path, 6000)
    corpus = open_corpus(str(path), cache_dir=str(tmp_path / "cache"))
    tok = train_tokenizer([text])
    one = run_lm.tokenize_and_group(corpus, tok, 32)
    two = run_lm.tokenize_and_group(corpus, tok, 32, num_proc=2)
    assert all(one[s]["input_ids"] == two[s]["input_ids"] for s in one)
    with pytest.raises(OptionError, match="--preprocessing_num_workers"):
        run_lm.DataArguments(preprocessing_num_workers=0)


# ---------------------------------------------------------------------------------------------- the stream


def files(tmp_path, sizes=(3000, 500, 2000)):
    paths, texts = [], []
    for i, n in enumerate(sizes):
        path = tmp_path / f"part{i}.txt"
        texts.append(write_text(path, n, seed=i, one_line=(i == 1)))
        paths.append(str(path))
    return paths, texts


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_shards_read_every_byte_once_and_close_files_only(tmp_path, processes):
    paths, texts = files(tmp_path)
    shards, tail = local_shards(paths, shard_bytes=4000, multiple=processes, hold_out_bytes=1500)
    assert len(shards) % processes == 0 and len(shards) > len(paths)
    rows = list(shard_rows(shards, limit=300))
    held = list(shard_rows([tail], limit=300))
    assert "".join(r["text"] for r in rows + held) == "".join(texts)
    assert max(len(r["text"]) for r in rows) <= 300
    closing = ["".join(r["text"] for r in rows[:i + 1]) for i, r in enumerate(rows) if r["ends_document"]]
    assert closing == [texts[0], texts[0] + texts[1]]  # the last file ends in the held-out tail
    assert [r["ends_document"] for r in held][-1] and sum(r["ends_document"] for r in held) == 1
    assert 1000 <= len("".join(r["text"] for r in held).encode()) <= 1600


def test_processes_read_disjoint_shards_that_cover_the_stream(tmp_path):
    """What accelerate does with each process' share of a datasets IterableDataset (``shard``): every row once."""
    paths, _ = files(tmp_path)
    shards, _ = local_shards(paths, shard_bytes=3000, multiple=2)
    whole = stream_text(shards).shuffle(seed=3, buffer_size=8)
    every = sorted(r["text"] for r in whole)
    parts = [[r["text"] for r in whole.shard(num_shards=2, index=rank)] for rank in (0, 1)]
    assert parts[0] and parts[1] and sorted(parts[0] + parts[1]) == every
    assert not set(parts[0]) & set(parts[1])
    from datasets.distributed import split_dataset_by_node

    nodes = [[r["text"] for r in split_dataset_by_node(whole, rank, 2)] for rank in (0, 1)]
    assert sorted(nodes[0] + nodes[1]) == every


def test_packed_stream_follows_the_document_rule(tmp_path):
    paths, texts = files(tmp_path)
    shards, _ = local_shards(paths, shard_bytes=10**9)
    tok = train_tokenizer(texts)
    blocks = [b["input_ids"] for b in pack_blocks(stream_text(shards), tok, 24, batch_rows=10**6)]
    assert blocks == lm_blocks(tok, texts, 24)  # end-of-sequence after each file, none between its lines
    tokens = [b["input_ids"][0] for b in pack_blocks(stream_text(shards), tok, 1, batch_rows=10**6)]
    assert tokens.count(tok.eos_token_id) == 3 and tokens[-1] == tok.eos_token_id


def test_a_csv_or_compressed_tail_is_refused_with_the_way_out(tmp_path):
    (tmp_path / "a.csv").write_text("text\nhello\n")
    with pytest.raises(ValueError, match=r"not a \.txt file.*without --streaming"):
        local_shards([str(tmp_path / "a.csv")])
    import gzip

    with gzip.open(tmp_path / "b.txt.gz", "wt") as f:
        f.write("some text\n" * 100)
    with pytest.raises(OptionError, match="--validation_file"):
        local_shards([str(tmp_path / "b.txt.gz")], hold_out_bytes=100)
    assert list(shard_rows(local_shards([str(tmp_path / "b.txt.gz")])[0]))[-1]["ends_document"]


STREAM_RUN = ["--streaming", "true", "--max_steps", "4", "--block_size", "32", "--per_device_train_batch_size", "4",
              "--max_eval_samples", "8", "--eval_strategy", "no", "--num_samples", "0", "--shuffle_buffer", "16",
              "--config_overrides", '{"hidden_size": 16, "embedding_size": 8, "num_hidden_layers": 1}',
              "--report_to", "none", "--save_strategy", "no", "--write_model_card", "false"]


def test_streaming_run_trains_the_steps_on_a_stated_sample(tmp_path):
    paths, texts = files(tmp_path)
    out = tmp_path / "run"
    results = run_lm.main(["--train_file", paths[0], "--output_dir", str(out), "--tokenizer_sample_chars", "5000",
                           *STREAM_RUN])
    saved = json.loads((out / "results.json").read_text())
    assert saved["train_steps"] == 4 and saved["streaming"] is True and saved["train_examples"] == 16
    assert saved["tokenizer_sample_chars"] == 5000
    assert saved["streaming_validation"].startswith("the last ") and paths[0] in saved["streaming_validation"]
    assert results["validation_loss"] > 0


def test_streaming_needs_steps_and_applies_to_language_models(tmp_path):
    paths, _ = files(tmp_path)
    base = ["--train_file", paths[0], "--output_dir", str(tmp_path / "r"), "--streaming", "true"]
    with pytest.raises(OptionError, match="--max_steps"):
        run_lm.main(base)
    assert not (tmp_path / "r").exists()  # refused before the output folder is made
    for module in (run_classification, run_seq2seq):
        with pytest.raises(OptionError, match="applies to language modelling"):
            module.DataArguments(streaming=True)
    with pytest.raises(OptionError, match="built-in corpus"):
        streaming.open_lm_stream(corpus="shakespeare")


# ---------------------------------------------------------------------------------------------- two processes

# Each process reads its share of the training rows the way the pipeline's Trainer does (accelerate's prepare of a
# DataLoader over the datasets IterableDataset, dispatch_batches off) and writes the texts it got.
SHARE_WORKER = """\
import json, sys
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from torch.utils.data import DataLoader
from hfnn.data.streaming import open_lm_stream

paths, out = json.loads(sys.argv[1]), sys.argv[2]
accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(dispatch_batches=False))
stream = open_lm_stream(train_file=paths, eval_blocks=4, block_size=16, processes=accelerator.num_processes,
                        shard_bytes=2500)
rows = stream.train.shuffle(seed=0, buffer_size=4)
loader = accelerator.prepare(DataLoader(rows, batch_size=2, collate_fn=lambda batch: batch))
seen = [[row["text"], row["ends_document"]] for batch in loader for row in batch]
with open(f"{out}/rank{accelerator.process_index}.json", "w") as f:
    json.dump({"world": accelerator.num_processes, "rows": seen}, f)
"""


def launch(tmp_path, argv: list[str], machines: int = 1):
    """``accelerate launch`` of 2 processes on this machine: one launch, or one per simulated machine (each a
    launch of its own on the loopback interface, as on two hosts)."""
    import subprocess

    from tests.reliability_utils import REPO, run_cli
    from tests.test_multiprocess import free_port

    base = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    if machines == 1:
        proc = run_cli([*base, "--num_machines", "1", *argv], cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        return
    import os
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    procs = [subprocess.Popen([sys.executable, *base, "--num_machines", "2", "--machine_rank", str(rank),
                               "--main_process_ip", "127.0.0.1", *argv], cwd=str(tmp_path), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-2000:] + err[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("machines", [1, 2])
def test_two_processes_read_disjoint_shards_and_every_row_once(tmp_path, machines):
    paths, _ = files(tmp_path)
    (tmp_path / "worker.py").write_text(SHARE_WORKER)
    launch(tmp_path, [str(tmp_path / "worker.py"), json.dumps(paths), str(tmp_path)], machines)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    shards, _ = local_shards(paths, shard_bytes=2500, multiple=2,
                             hold_out_bytes=streaming._hold_out_bytes(4, 16))
    every = [[row["text"], row["ends_document"]] for row in shard_rows(shards)]
    got = [tuple(row) for r in ranks for row in r["rows"]]
    assert ranks[0]["rows"] and ranks[1]["rows"]
    assert sorted(got) == sorted(map(tuple, every))  # every row once, on one process only
    assert not {tuple(x) for x in ranks[0]["rows"]} & {tuple(x) for x in ranks[1]["rows"]}
    assert sum(ends for _, ends in got) == len(paths) - 1  # the last file ends in the held-out tail


@pytest.mark.slow
def test_a_streaming_run_trains_on_two_processes(tmp_path):
    paths, _ = files(tmp_path, sizes=(6000, 6000))
    out = tmp_path / "run"
    launch(tmp_path, ["-m", "hfnn.pipelines.run_lm", "--train_file", paths[0], "--output_dir", str(out),
                      "--use_cpu", "true", "--ddp_find_unused_parameters", "false", *STREAM_RUN])
    saved = json.loads((out / "results.json").read_text())
    assert saved["train_steps"] == 4 and saved["train_examples"] == 4 * 4 * 2  # the global batch: 2 x 4
    assert saved["streaming_shards"] % 2 == 0


# ---------------------------------------------------------------------------------------------- resume


def stream_resume_argv(path: str, out, *extra: str) -> list[str]:
    return ["rnn_shakespeare_char", "--train_file", path, "--output_dir", str(out), *STREAM_RUN,
            "--config_overrides", '{"hidden_size": 8, "embedding_size": 8, "num_hidden_layers": 1, "dropout": 0.2}',
            "--disable_tqdm", "true", "--anneal_by_time", "false", "--warmup_steps", "0", "--seed", "5", *extra]


def test_a_streaming_run_resumed_from_a_checkpoint_equals_the_uninterrupted_one(tmp_path, monkeypatch):
    from tests.test_resume import resume_matches_uninterrupted

    paths, _ = files(tmp_path)
    resume_matches_uninterrupted(run_lm.main, lambda out: stream_resume_argv(paths[0], out), tmp_path, monkeypatch)


@pytest.mark.slow
def test_a_killed_streaming_run_resumes_to_the_uninterrupted_weights(tmp_path):
    """SIGKILL once checkpoint-3 of 6 steps is committed, then ``--resume_from_checkpoint latest``: the resumed run
    trains on the batches the uninterrupted one trained on after step 3 (same weights, bit for bit)."""
    from hfnn.pipelines import checkpoints
    from tests.reliability_utils import assert_same_weights, load_weights, run_forked
    from tests.test_resume import KILLED, slow_steps

    paths, _ = files(tmp_path, sizes=(8000,))
    steps = ["--max_steps", "6", "--save_strategy", "steps", "--save_steps", "3"]
    full, out = tmp_path / "full", tmp_path / "killed"
    run_lm.main(stream_resume_argv(paths[0], full, *steps))
    log = tmp_path / "log.txt"
    code = run_forked(run_lm.main, stream_resume_argv(paths[0], out, *steps), log, setup=slow_steps,
                      kill_when=lambda: (out / "checkpoint-3" / checkpoints.CHECKPOINT_MARKER).exists())
    assert code == KILLED, log.read_text()[-3000:]
    assert not (out / "checkpoint-6").exists()
    import shutil

    control = tmp_path / "control"
    shutil.copytree(out, control)
    run_lm.main(stream_resume_argv(paths[0], out, *steps, "--resume_from_checkpoint", "latest"))
    assert_same_weights(load_weights(out), load_weights(full), "killed + resumed vs uninterrupted streaming run")
    assert json.loads((out / "results.json").read_text())["train_steps"] == 6
    # the control: resumed on the stream's first batches again (no skipping), it ends elsewhere
    run_lm.main(stream_resume_argv(paths[0], control, *steps, "--resume_from_checkpoint", "latest",
                                   "--ignore_data_skip", "true"))
    assert load_weights(control).keys() == load_weights(full).keys()
    assert any(not torch.equal(v, load_weights(full)[k]) for k, v in load_weights(control).items())


def test_a_file_that_is_not_utf8_is_an_error_naming_it_and_the_fix(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\u00e9 au lait\n".encode("latin-1") * 50)
    with pytest.raises(ValueError, match=r"latin\.txt is not UTF-8.*iconv -f latin1"):
        list(shard_rows(local_shards([str(path)])[0]))


def test_a_hub_dataset_streams_with_its_validation_split_or_its_first_rows(monkeypatch):
    def rows(start, n):
        def gen():
            for i in range(start, start + n):
                yield {"content": f"document {i} " * 5, "id": i}
        return datasets.IterableDataset.from_generator(gen)

    def fake_load(name, cache_dir=None, streaming=False, **kwargs):
        assert streaming and name == "someone/corpus"
        held_out = {"validation": rows(100, 5)} if with_val else {}
        return datasets.IterableDatasetDict({"train": rows(0, 40), **held_out})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    with_val = True
    stream = streaming.open_lm_stream(corpus="someone/corpus", text_column="content", eval_blocks=3)
    assert [r["text"] for r in stream.held_out["validation"]][0] == "document 100 " * 5
    assert len(list(stream.train)) == 40 and stream.train.column_names == ["text"]
    with_val = False
    stream = streaming.open_lm_stream(corpus="someone/corpus", text_column="content", eval_blocks=3)
    held = [r["text"] for r in stream.held_out["validation"]]
    train = [r["text"] for r in stream.train]
    assert held == [f"document {i} " * 5 for i in range(3)] and len(train) == 37 and not set(held) & set(train)
    tok = train_tokenizer(train)
    blocks = [b["input_ids"] for b in pack_blocks(stream.train, tok, 8, batch_rows=10**6)]
    assert blocks == lm_blocks(tok, train, 8)  # every Hub row is a document
    with pytest.raises(ValueError, match="no 'body' column"):
        streaming.open_lm_stream(corpus="someone/corpus", text_column="body")
