"""Cost of starting a language-model run against the size of its corpus: map-style against ``--streaming true``.

For each corpus size and shape (many short lines, or one line), ``python -m hfnn.pipelines.run_lm
rnn_shakespeare_char --train_file FILE --max_steps 5 ...`` runs in a fresh process with a fresh datasets cache; a
small driver around it records the moment each training step starts (``Trainer.training_step``), and ``wait4``
gives the process's peak resident memory. Time to the first step includes the interpreter's start and the imports.
The corpora are random words (8 MiB of them, written over and over) under the system's temporary folder, deleted
after each size. Preprocessing speed: ``tokenize_and_group`` of a many-line file with 1 and 2 worker processes,
alternated, wall-clock tokens per second (on a machine shared with other jobs).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["bench_streaming", "render", "size_job", "workers_job"]

REPO = Path(__file__).resolve().parent.parent

DRIVER = """\
import json, sys, time
from transformers import Trainer
marks, step = [], Trainer.training_step
def timed(self, *args, **kwargs):
    marks.append(time.monotonic())
    return step(self, *args, **kwargs)
Trainer.training_step = timed
from hfnn.pipelines import run_lm
run_lm.main(json.loads(sys.argv[1]))
json.dump(marks, open(sys.argv[2], "w"))
"""

RUN = ["rnn_shakespeare_char", "--max_steps", "5", "--eval_strategy", "no", "--save_strategy", "no",
       "--num_samples", "0", "--max_eval_samples", "64", "--write_model_card", "false", "--report_to", "none",
       "--disable_tqdm", "true", "--logging_steps", "5"]


def _base_text(seed: int = 0, size: int = 8 << 20) -> str:
    """About ``size`` characters of lines of 8 to 16 random words (a vocabulary of 20,000 made-up words)."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(20_000)]
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choices(vocab, k=rng.randint(8, 16))) + "\n"
        lines.append(line)
        total += len(line)
    return "".join(lines)


def write_corpus(path: Path, megabytes: float, one_line: bool) -> int:
    """A corpus of ``megabytes`` MiB: the base text written over and over, its newlines spaces if ``one_line``."""
    base = _base_text()
    if one_line:
        base = base.replace("\n", " ")
    target, written = int(megabytes * 2**20), 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            part = base[: target - written]
            f.write(part)
            written += len(part)
        f.write("\n")
    return written + 1


def _run(path: Path, streaming: bool, work: Path, timeout: float) -> dict:
    """One run_lm start in a fresh process: seconds to steps 1 and 5 from the launch, peak RSS in MB."""
    cache, marks, out = work / "cache", work / "marks.json", work / "run"
    shutil.rmtree(cache, ignore_errors=True)
    argv = [*RUN, "--train_file", str(path), "--output_dir", str(out), "--overwrite_output_dir", "true",
            *(["--streaming", "true"] if streaming else [])]
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    log = open(work / "log.txt", "w")
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(argv), str(marks)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=str(work))
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            log.close()
            return {"error": f"killed after {timeout:.0f} s", "peak_mb": usage.ru_maxrss / 1024}
        time.sleep(0.05)
    log.close()
    wall = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0 or not marks.exists():
        return {"error": (work / "log.txt").read_text(errors="replace")[-1500:], "peak_mb": usage.ru_maxrss / 1024}
    steps = json.loads(marks.read_text())
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    return {"first_step_s": steps[0] - start, "fifth_step_s": steps[4] - start if len(steps) >= 5 else None,
            "wall_s": wall, "peak_mb": usage.ru_maxrss / 1024}


def size_job(megabytes: float, modes: list[str], timeout: float) -> dict:
    """Both shapes of a corpus of ``megabytes`` MiB, each run in the ``modes`` given (map, stream)."""
    work = Path(tempfile.mkdtemp(prefix="hfnn-bench-stream-"))
    try:
        rows = []
        for shape in ("many lines", "one line"):
            path = work / "corpus.txt"
            size = write_corpus(path, megabytes, shape == "one line")
            for mode in modes:
                rows.append({"megabytes": megabytes, "bytes": size, "shape": shape, "mode": mode,
                             **_run(path, mode == "stream", work, timeout)})
            path.unlink()
        return {"rows": rows}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def workers_job(megabytes: float, rounds: int) -> dict:
    """Tokens per second of ``tokenize_and_group`` (character tokenizer, blocks of 128) with 1 and 2 workers."""
    import datasets

    from hfnn.data.corpora import open_corpus
    from hfnn.data.tokenization import train_tokenizer
    from hfnn.pipelines.run_lm import tokenize_and_group

    work = Path(tempfile.mkdtemp(prefix="hfnn-bench-workers-"))
    try:
        path = work / "corpus.txt"
        write_corpus(path, megabytes, one_line=False)
        corpus = open_corpus(str(path), cache_dir=str(work / "cache"))
        tok = train_tokenizer(corpus.splits["train"]["text"][:2000])
        datasets.disable_caching()  # every round tokenises again
        times = {1: [], 2: []}
        tokens = None
        for _ in range(rounds):
            for workers in (1, 2):
                start = time.monotonic()
                blocks = tokenize_and_group(corpus, tok, 128, num_proc=workers)
                times[workers].append(time.monotonic() - start)
                tokens = sum(len(blocks[s]) for s in blocks) * 128
        datasets.enable_caching()
        median = {w: sorted(t)[len(t) // 2] for w, t in times.items()}
        return {"megabytes": megabytes, "tokens": tokens, "rounds": rounds, "cpus": os.cpu_count(),
                "tokens_per_s": {str(w): tokens / median[w] for w in median}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_streaming(runner) -> dict:
    quick = runner.quick
    sizes = [1] if quick else [10, 100, 1000]
    timeout = 240.0 if quick else 800.0
    result = {"rows": [], "skipped": []}
    for megabytes in sizes:
        modes = ["map", "stream"]
        if megabytes >= 1000:  # map-style start-up grows with the corpus: estimated from the 100 MB runs
            done = [r for r in result["rows"] if r["mode"] == "map" and r["megabytes"] == 100 and "wall_s" in r]
            slowest = max((r["wall_s"] for r in done), default=None)
            if slowest is None or slowest * megabytes / 100 > timeout:
                modes = ["stream"]
                result["skipped"].append({"megabytes": megabytes, "mode": "map", "estimate_s": None if slowest is None
                                          else slowest * megabytes / 100, "limit_s": timeout})
        job = runner.run("streaming", f"{megabytes} MB corpora", size_job, megabytes=megabytes, modes=modes,
                         timeout=timeout)
        result["rows"] += job.get("rows", [])
    if not quick:
        job = runner.run("streaming", "400 MB streaming", size_job, megabytes=400, modes=["stream"], timeout=timeout)
        result["bar"] = job.get("rows", [])
    result["workers"] = runner.run("streaming", "preprocessing workers", workers_job, megabytes=2 if quick else 20,
                                   rounds=1 if quick else 3)
    return result


# ---------------------------------------------------------------------------------------------- the report


def _seconds(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def render(r: dict, out: Path, headline: list[str]) -> list[str]:
    """The section of RESULTS.md: the table of runs, the plot, the bar's run and the preprocessing speed."""
    from bench.report import _mb, _plt, _save, _table

    lines = [
        "What it costs to start a language-model run as the corpus grows: `python -m hfnn.pipelines.run_lm "
        "rnn_shakespeare_char --train_file FILE --max_steps 5` (GRU, character tokenizer, blocks of 128, no "
        "evaluation until the end, 64 validation blocks), map-style and with `--streaming true`, each in a fresh "
        "process with an empty datasets cache. *First step* and *fifth step*: seconds from the launch of the "
        "command (imports included) to the start of that training step; *peak RSS*: the process's, over the whole "
        "run. The corpora are random words, lines of 8 to 16 words (*many lines*) or the same text as one line.", ""]
    rows = [[f"{x['megabytes']:g}", x["shape"], "streaming" if x["mode"] == "stream" else "map-style",
             _seconds(x.get("first_step_s")), _seconds(x.get("fifth_step_s")), _mb(x.get("peak_mb")),
             "failed: " + x["error"].strip().splitlines()[-1][:80] if "error" in x else ""]
            for x in r["rows"] + r.get("bar", [])]
    lines += _table(["corpus MB", "shape", "data", "first step s", "fifth step s", "peak RSS MB", ""], rows,
                    align="lllrrrl")
    for skip in r.get("skipped", []):
        estimate = skip["estimate_s"]
        lines += [f"Map-style {skip['megabytes']:g} MB not run: its slowest 100 MB run, scaled by size, would take "
                  f"{estimate:.0f} s, over this benchmark's limit of {skip['limit_s']:.0f} s per run."
                  if estimate is not None else f"Map-style {skip['megabytes']:g} MB not run (no 100 MB run to "
                  "estimate it from).", ""]
    ok = [x for x in r["rows"] if "error" not in x]
    if ok:
        plt = _plt()
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for mode, shape, style in (("map", "many lines", "o-"), ("map", "one line", "o--"),
                                   ("stream", "many lines", "s-"), ("stream", "one line", "s--")):
            got = sorted((x["megabytes"], x) for x in ok if x["mode"] == mode and x["shape"] == shape)
            if not got:
                continue
            label = f"{'streaming' if mode == 'stream' else 'map-style'}, {shape}"
            axes[0].plot([m for m, _ in got], [x["peak_mb"] for _, x in got], style, label=label)
            axes[1].plot([m for m, _ in got], [x["first_step_s"] for _, x in got], style, label=label)
        for ax, title in ((axes[0], "peak RSS (MB)"), (axes[1], "seconds to the first training step")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("corpus size (MB)")
            ax.set_title(title)
            ax.grid(alpha=0.3, which="both")
        axes[0].legend(fontsize=8)
        lines += [f"![start-up cost against corpus size]({_save(fig, out, 'streaming.png')})", ""]
    streamed = sorted((x["megabytes"], x) for x in ok if x["mode"] == "stream" and x["shape"] == "many lines"
                      and x["megabytes"] >= 100)
    if len(streamed) >= 2:
        (low, a), (high, b) = streamed[0], streamed[-1]
        headline.append(f"Streaming start-up memory, {low:g} MB → {high:g} MB corpus: peak RSS {_mb(a['peak_mb'])} → "
                        f"{_mb(b['peak_mb'])} MB, first step after {a['first_step_s']:.0f} s → "
                        f"{b['first_step_s']:.0f} s.")
    one = [x for x in ok if x["mode"] == "map" and x["shape"] == "one line"]
    if one:
        x = max(one, key=lambda x: x["megabytes"])
        headline.append(f"Map-style, a one-line {x['megabytes']:g} MB file: peak RSS {_mb(x['peak_mb'])} MB, first "
                        f"step after {x['first_step_s']:.0f} s.")
    for x in r.get("bar", []):
        if "error" not in x and x["shape"] == "many lines":
            headline.append(f"{x['megabytes']:g} MB with `--streaming true`: fifth training step after "
                            f"{x['fifth_step_s']:.0f} s, peak RSS {_mb(x['peak_mb'])} MB.")
    w = r.get("workers", {})
    if "tokens_per_s" in w:
        speed = w["tokens_per_s"]
        lines += [f"Preprocessing (`tokenize_and_group`, `--preprocessing_num_workers`) of a {w['megabytes']:g} MB "
                  f"many-line corpus, {w['tokens']:,} tokens, median of {w['rounds']} alternating rounds, wall clock "
                  f"on {w['cpus']} CPUs shared with other jobs: 1 worker {speed['1']:,.0f} tokens/s, 2 workers "
                  f"{speed['2']:,.0f} tokens/s ({speed['2'] / speed['1']:.2f}x).", ""]
        headline.append(f"Tokenising with 2 workers vs 1: {speed['2'] / speed['1']:.2f}x tokens/s "
                        f"({w['cpus']} CPUs).")
    elif "error" in w:
        lines += ["Preprocessing workers: **failed**:", "", "```", w["error"][-800:], "```", ""]
    return lines
