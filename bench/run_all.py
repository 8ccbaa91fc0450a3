"""Runs every hfnn benchmark and writes ``RESULTS.md`` with PNG plots beside it.

    python -m bench                          # full run, writes bench/RESULTS.md and bench/*.png
    python -m bench --quick                  # tiny sizes, about a minute: bench/out/quick/RESULTS.md
    python -m bench --only attention lm      # some benchmarks; RESULTS.md keeps the others' last results
    python -m bench --only report            # rewrite RESULTS.md from the saved results, run nothing

How it runs: this process imports torch, transformers, datasets and hfnn and loads the corpora once,
then does no tensor work itself. Every training run and every speed measurement runs in a child
process forked from it (each with ``--threads`` torch threads), so the children skip the imports,
one heavy process runs at a time, and each training run has its own peak resident memory
(``ru_maxrss`` of the child). Everything but RESULTS.md and the PNGs goes under ``OUT/out/``:
run folders, logs (``OUT/out/logs``) and the JSON results (``OUT/out/results``).

Speeds are ratios against a reference measured in the same process (alternating A B A B, medians
of several rounds); with one thread the clock is the process's CPU time. Nothing asserts anything
about time.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import io
import json
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

__all__ = ["BENCHMARKS", "JobFailed", "Runner", "main"]

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent

# name -> (module, function, one-line description); run in this order
BENCHMARKS = {
    "cnn_rnn": ("bench.seed_claims", "bench_cnn_rnn", "seed claim: CNN vs RNN (parameters, time vs length, accuracy)"),
    "activations": ("bench.seed_claims", "bench_activations", "activation functions and depth (MLP)"),
    "attention": ("bench.seed_claims", "bench_attention", "seq2seq attention on CMUdict (WER/PER by word length)"),
    "lm": ("bench.seed_claims", "bench_lm", "language models under one time budget (bench/lm_budget.py)"),
    "transformer_speed": ("bench.speed", "bench_transformer_speed", "Transformer LM vs GPT2LMHeadModel speed"),
    "rnn_overhead": ("bench.speed", "bench_rnn_overhead", "RNN LM vs plain PyTorch: cost of the HF wrapping"),
    "generation": ("bench.speed", "bench_generation", "generation cost vs new tokens, with and without cache"),
    "baselines": ("bench.baselines", "bench_baselines",
                  "TF-IDF logistic regression and Phonetisaurus on hfnn's splits"),
    "threads": ("bench.threads", "bench_threads",
                "main-job training steps/s quiet and beside a busy core, by threading"),
    "onnx": ("bench.onnx_speed", "bench_onnx", "ONNX Runtime vs PyTorch inference (CNN classifier, LM decoding step)"),
    "deployment": ("bench.deployment", "bench_deployment",
                   "int8 deployment: PyTorch / ONNX fp32 / int8 speed, int8 quality, G2P with and without stress"),
    "precision": ("bench.speed", "bench_precision",
                  "bfloat16 autocast vs float32 training steps on the CPU (G2P models)"),
    "streaming": ("bench.streaming", "bench_streaming",
                  "start-up time and peak memory against corpus size, map-style vs streaming"),
}
# default training budgets per run, in minutes (full mode)
DEFAULT_MINUTES = {"classification": 1.5, "mlp": 0.5, "seq2seq": 1.25, "lm": 0.75}
QUICK_MINUTES = {"classification": 0.05, "mlp": 0.05, "seq2seq": 0.05, "lm": 0.01}


class JobFailed(RuntimeError):
    pass


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return None


def _maxrss_mb(usage) -> float:
    # ru_maxrss is in kilobytes on Linux, bytes on macOS
    return usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def _json_default(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


class Runner:
    """Runs jobs in forked children and remembers each training run's peak memory."""

    def __init__(self, scratch: Path, quick: bool, threads: int, minutes: dict, timeout_factor: float = 1.0):
        self.scratch = scratch
        self.quick = quick
        self.threads = threads
        self.minutes = minutes
        self.timeout_factor = timeout_factor
        self.memory: list[dict] = []  # one row per training run of the current benchmark
        self.failures: list[str] = []  # errors of the current benchmark's jobs
        self.jobs = 0
        for sub in ("logs", "results", "runs"):
            (scratch / sub).mkdir(parents=True, exist_ok=True)

    def _timeout(self, training: bool) -> float:
        if self.quick:
            return 300.0 * self.timeout_factor
        budget = 60.0 * max(self.minutes.values()) if training else 0.0
        return (3 * budget + 900.0) * self.timeout_factor

    def run(self, bench: str, label: str, fn, training: bool = False, **kwargs) -> dict:
        """``fn(**kwargs)`` in a forked child; returns its dict, or ``{"error": ...}`` (with the log's tail)
        if it failed or ran out of time; failures are also collected in ``self.failures``."""
        try:
            return self._run(bench, label, fn, training, **kwargs)
        except JobFailed as err:
            self.failures.append(str(err))
            return {"error": str(err)}

    def _run(self, bench: str, label: str, fn, training: bool = False, **kwargs) -> dict:
        if not hasattr(os, "fork"):
            raise RuntimeError("bench needs os.fork (Linux or macOS)")
        self.jobs += 1
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{bench}-{label}")
        log_path = self.scratch / "logs" / f"{slug}.log"
        result_path = self.scratch / "results" / f"job-{slug}.json"
        result_path.unlink(missing_ok=True)
        print(f"  [{bench}] {label} ... ", end="", flush=True)
        sys.stdout.flush()
        sys.stderr.flush()
        parent_rss = _rss_mb()
        start = time.monotonic()
        # the imported libraries' objects go to the permanent generation: the child's garbage collections
        # (transformers' Trainer calls gc.collect) neither walk them nor copy their pages
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # child: never returns
            code = 1
            try:
                fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                import torch

                torch.set_num_threads(self.threads)
                rss_start = _rss_mb()
                cpu = time.process_time()
                result = dict(fn(**kwargs) or {})
                result["_job"] = {
                    "wall_s": time.monotonic() - start,
                    "cpu_s": time.process_time() - cpu,
                    "rss_start_mb": rss_start,
                    "rss_peak_mb": _maxrss_mb(resource.getrusage(resource.RUSAGE_SELF)),
                }
                result_path.write_text(json.dumps(result, default=_json_default))
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        deadline = start + self._timeout(training)
        try:
            while True:
                done, status, usage = os.wait4(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.wait4(pid, 0)
                    raise JobFailed(f"{label}: killed after {time.monotonic() - start:.0f} s (timeout); "
                                    f"log: {log_path}")
                time.sleep(0.1)
        except BaseException:
            try:
                os.kill(pid, signal.SIGKILL)
                os.wait4(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            print("failed", flush=True)
            raise
        wall = time.monotonic() - start
        if os.waitstatus_to_exitcode(status) != 0 or not result_path.is_file():
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.is_file() else ""
            print(f"FAILED after {wall:.0f} s (log: {log_path})", flush=True)
            raise JobFailed(f"{label}: exit status {os.waitstatus_to_exitcode(status)}; log {log_path}:\n{tail}")
        result = json.loads(result_path.read_text())
        job = result["_job"]
        job["parent_rss_mb"] = parent_rss
        job["rss_peak_wait4_mb"] = _maxrss_mb(usage)
        job["log"] = str(log_path)
        print(f"{wall:.0f} s, peak RSS {job['rss_peak_mb']:.0f} MB", flush=True)
        if training:
            self.memory.append({"benchmark": bench, "run": label, "peak_mb": job["rss_peak_mb"],
                                "start_mb": job["rss_start_mb"], "wall_s": wall})
        return result


# ---------------------------------------------------------------------------------------------
# the machine
# ---------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(threads: int) -> dict:
    import datasets
    import tokenizers
    import torch
    import transformers

    info = {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "tokenizers": tokenizers.__version__,
        "load_average_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }
    try:
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


def preload(selected: list[str], quick: bool) -> dict:
    """Imports and corpora shared by the children (loaded once, here, before any fork)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no tokenizer threads before fork
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    start = time.monotonic()
    import torch

    torch.set_num_threads(1)  # the parent runs no parallel region, so forking is safe
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()  # font loading and text layout, once for every child
    ax.plot([0, 1], [0, 1], label="x")
    ax.legend()
    fig.tight_layout()
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)
    import transformers  # noqa: F401

    import hfnn  # noqa: F401
    from hfnn.data.corpora import load_corpus

    loaded = []
    if {"cnn_rnn", "activations", "attention"} & set(selected):  # the pipelines' metrics (evaluate, scipy, sklearn)
        from hfnn.metrics import load_metric

        for metric in ("accuracy", "f1") if "attention" not in selected else ("accuracy", "f1", "wer", "per"):
            load_metric(metric)
    if "baselines" in selected:
        import sklearn.linear_model  # noqa: F401

        from hfnn.metrics import load_metric

        for metric in ("wer", "per"):
            load_metric(metric)
        load_corpus("rotten_tomatoes")
        load_corpus("cmudict")
        loaded += ["rotten_tomatoes", "cmudict"]
    if {"cnn_rnn", "activations"} & set(selected):
        import hfnn.pipelines.run_classification  # noqa: F401

        load_corpus("rotten_tomatoes")
        loaded.append("rotten_tomatoes")
    if "attention" in selected:
        import hfnn.pipelines.run_seq2seq  # noqa: F401

        load_corpus("cmudict")
        loaded.append("cmudict")
        try:  # from_pretrained's table of checkpoint renamings (a thousand regular expressions), built once
            from transformers.conversion_mapping import get_checkpoint_conversion_mapping

            get_checkpoint_conversion_mapping("hfnn-rnn-seq2seq")
        except (ImportError, AttributeError):
            pass
    if "lm" in selected:
        from bench.seed_claims import prepare_lm

        prepare_lm(quick, block_size=32 if quick else 128)
        loaded.append("shakespeare (character ids" + (", 20,000 characters per play" if quick else "") + ")")
    if {"transformer_speed"} & set(selected):
        import bench.bench_transformer_speed  # noqa: F401
    return {"seconds": time.monotonic() - start, "corpora": loaded, "rss_mb": _rss_mb()}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n")[0],
        epilog="benchmarks: " + "; ".join(f"{k}: {v[2]}" for k, v in BENCHMARKS.items()),
    )
    parser.add_argument("--quick", action="store_true", help="tiny models and data, a few steps: about a minute")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=list(BENCHMARKS) + ["report"],
                        help="run only these benchmarks (report: rewrite RESULTS.md from saved results)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for RESULTS.md and the PNGs (default: bench/, or bench/out/quick with --quick); "
                             "everything else goes to OUT/out/")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job (default 1)")
    parser.add_argument("--minutes", type=float, default=None, help="training budget of every run, in minutes")
    for group, default in DEFAULT_MINUTES.items():
        parser.add_argument(f"--{group}-minutes", type=float, default=None,
                            help=f"training budget per {group} run (default {default})")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    command = " ".join(["python -m bench"] + [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)])
    out = (args.out or (BENCH_DIR / "out" / "quick" if args.quick else BENCH_DIR)).resolve()
    scratch = out / "out"
    out.mkdir(parents=True, exist_ok=True)
    minutes = dict(QUICK_MINUTES if args.quick else DEFAULT_MINUTES)
    for group in minutes:
        value = getattr(args, f"{group}_minutes") or (None if args.quick else args.minutes)
        if value is not None:
            minutes[group] = value
    selected = [name for name in BENCHMARKS if args.only is None or name in args.only]
    runner = Runner(scratch, args.quick, args.threads, minutes)

    from bench import report

    started = datetime.datetime.now().astimezone()
    t0 = time.monotonic()
    status = 0
    if selected:
        print(f"bench: {', '.join(selected)} ({'quick' if args.quick else 'full'}), results in {out}", flush=True)
        pre = preload(selected, args.quick)
        print(f"  loaded libraries and corpora in {pre['seconds']:.0f} s (RSS {pre['rss_mb']:.0f} MB)", flush=True)
        info = machine_info(args.threads)
        for name in selected:
            module, function, description = BENCHMARKS[name]
            print(f"[{name}] {description}", flush=True)
            runner.memory, runner.failures = [], []
            b0 = time.monotonic()
            record = {"name": name, "mode": "quick" if args.quick else "full", "command": command,
                      "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                      "machine": info, "preload": pre, "minutes": minutes}
            try:
                benchmark = getattr(__import__(module, fromlist=[function]), function)
                record["result"] = benchmark(runner)
            except JobFailed as err:
                record["error"] = str(err)
                status = 1
            except Exception as err:  # a bug in a benchmark: report it, go on with the others
                record["error"] = "".join(traceback.format_exception(err))[-3000:]
                status = 1
            if runner.failures:
                record["error"] = "\n\n".join(runner.failures + ([record["error"]] if "error" in record else []))
                status = 1
            record["memory"] = runner.memory
            record["wall_s"] = time.monotonic() - b0
            record["load_average_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
            if "error" in record:
                print(f"[{name}] FAILED: {record['error'].splitlines()[0]}", flush=True)
            (scratch / "results" / f"{name}.json").write_text(json.dumps(record, indent=1, default=_json_default))
    total = time.monotonic() - t0
    saved = {}
    for name in BENCHMARKS:
        path = scratch / "results" / f"{name}.json"
        if path.is_file():
            saved[name] = json.loads(path.read_text())
    run = {"command": command, "started": started.isoformat(timespec="seconds"), "wall_s": total,
           "load_average_end": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
           "selected": selected, "quick": args.quick}
    path = report.write(out, saved, run)
    print(f"wrote {path} ({total / 60:.1f} min)", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
