"""Smoke test of the benchmark suite: ``python -m bench --quick`` runs every benchmark on tiny models
and writes RESULTS.md with its plots. Nothing about time is asserted (the machine is shared); what is
checked is that every benchmark ran, every plot exists, and the correctness checks the benchmarks
make along the way (the plain PyTorch RNN computes the same logits and tokens as hfnn's, cached
generation equals uncached) came out right.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTIONS = [
    "1. Seed claim: CNN vs RNN",
    "2. Activation functions and depth",
    "3. Attention in seq2seq",
    "4. Language models under the same time budget",
    "5. Transformer LM vs GPT2LMHeadModel",
    "6. RNN LM vs plain PyTorch",
    "7. Generation cost against the number of new tokens",
    "8. Baselines a user would pick instead",
    "9. Training speed beside a busy core",
    "10. ONNX Runtime vs PyTorch inference",
    "11. Peak memory of the training runs",
    "12. Reduced precision on the CPU",
    "13. Start-up cost against corpus size",
    "14. Deployment: int8 and ONNX on the CPU",
]
PLOTS = {"cnn_rnn_time.png", "activations.png", "attention_by_length.png", "lm_budget.png",
         "generation_per_token.png", "streaming.png"}
TRAINING_RUNS = 2 + 4 + 4 + 4 + 1 + 4 + 1  # cnn/rnn, four MLPs, four seq2seq models, four language models, the
# n-gram classifier beside the baselines and its two n-gram ranges cross-validated on two folds, the deployment
# section's four models (one job)


def _bench(*args, cwd=REPO, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = _bench("--quick", "--threads", "1", "--out", str(out))
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    return out, proc.stdout


def test_quick_run_writes_every_section_and_plot(quick_run):
    out, _ = quick_run
    text = (out / "RESULTS.md").read_text()
    for title in SECTIONS:
        assert f"## {title}" in text, title
    for marker in ("**Failed**", "Partly failed", "Could not render", "_Not run"):
        assert marker not in text, marker
    assert "python -m bench --quick" in text
    assert "torch 2" in text and "transformers 5" in text and "CPU" in text
    images = set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text))
    assert images == PLOTS
    for name in images:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, name
    # scratch files stay out of the results folder
    assert {p.name for p in out.iterdir()} == PLOTS | {"RESULTS.md", "out"}


def test_quick_run_checks_and_memory_table(quick_run):
    out, _ = quick_run
    text = (out / "RESULTS.md").read_text()
    # the plain nn.LSTM model holds hfnn's weights: same logits, same greedy tokens
    section = text.split("## 6. RNN LM vs plain PyTorch")[1].split("## 7.")[0]
    row = next(line for line in section.splitlines() if line.startswith("| lstm |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "identical" and cells[3] == "yes", row
    assert "Cached and uncached generation give the same tokens: rnn yes, transformer yes." in text
    baselines = text.split("## 8. Baselines")[1].split("## 9.")[0]
    assert "| `mlp_ngrams_rotten_tomatoes` |" in baselines
    assert "2-fold cross-validation on the training split" in baselines and "| 1–3 |" in baselines
    memory = text.split("## 11. Peak memory of the training runs")[1].split("\n## ")[0]
    rows = [line for line in memory.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == TRAINING_RUNS, rows
    for line in rows:
        peak = float(line.split("|")[3].replace(",", ""))
        assert peak > 50, line  # megabytes: torch alone is more


def test_report_only_rewrites_from_saved_results(quick_run):
    out, _ = quick_run
    (out / "RESULTS.md").unlink()
    proc = _bench("--only", "report", "--out", str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "RESULTS.md").read_text()
    assert all(f"## {title}" in text for title in SECTIONS)
    assert "_Not run" not in text


def test_precision_job_times_each_g2p_model_in_each_precision():
    import math

    import torch

    from bench import report, run_all, speed

    assert run_all.BENCHMARKS["precision"][:2] == ("bench.speed", "bench_precision")
    assert "precision" in [name for name, _, _ in report.SECTIONS]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = speed.precision_job(quick=True, threads=1)
    finally:
        torch.set_num_threads(threads)
    models = [row["model"] for row in result["rows"]]
    assert len(models) == 3 and all(m.startswith("Transformer encoder-decoder") for m in models[:2]), models
    assert "dropout 0.1" in models[0] and "no dropout" in models[1] and "GRU" in models[2], models
    size = speed.PRECISION_SIZES["quick"]
    for row in result["rows"]:
        assert row["parameters"] > 0
        # the bf16 copies really ran under autocast, the float32 one did not; only the Transformer without
        # attention dropout (the one PyTorch gives the flash kernel) is also measured with that kernel
        expected = {"fp32": "float32", "bf16": "bfloat16"}
        if "no dropout" in row["model"]:
            expected["bf16_flash"] = "bfloat16"
        assert row["logits_dtype"] == expected, row["logits_dtype"]
        assert set(row["seconds"]) == set(expected)
        for precision in expected:
            assert len(row["seconds"][precision]) == size["repeats"]
            assert row[f"{precision}_ms"] > 0
        ratios = [row["speedup"]] + ([row["kernel_speedup"]] if "bf16_flash" in expected else [])
        assert ("kernel_speedup" in row) == ("bf16_flash" in expected)
        for speedup in ratios:
            assert speedup["rounds"] == size["repeats"]
            assert math.isfinite(speedup["median"]) and speedup["median"] > 0
            assert speedup["q1"] <= speedup["median"] <= speedup["q3"]
    assert set(result["hardware"]) >= {"mkldnn", "amx_tile", "avx512_bf16"}
    assert isinstance(result["hardware"]["mkldnn"], bool)
