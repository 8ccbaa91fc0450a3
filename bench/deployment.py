"""Deployment on the CPU: PyTorch float32, ONNX Runtime float32, ONNX Runtime dynamic int8
(:func:`hfnn.sharing.quantize.quantize_onnx`) and PyTorch dynamic int8 (:func:`hfnn.sharing.quantize.quantize_torch`),
same process, same inputs, at the shipped recipes' sizes: Kim's CNN and the bag-of-n-grams MLP classifiers on texts
of 64 tokens, one decoding step of the GRU language model (one new token after a 64-token past, carried as state),
and both G2P encoder-decoders (GRU with Bahdanau attention, Transformer) on a word: one teacher-forced call over a
source of 10 letters and a target of 9 phonemes. Each at batch 1 (latency per item) and batch 32 (throughput), with
the thread count of the run (``python -m bench --threads 1``: one thread, the clock is the process's CPU time).
Timings alternate the four variants in every round; medians of the rounds; ratios to PyTorch float32 of the same
round set. The weights are random (speed does not depend on them); the quality cost of int8 on trained models is the
``quality`` part of the job (:func:`quality_job`). The ``*_job`` functions run in a child process
(:mod:`bench.run_all`)."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.onnx_speed import _time

__all__ = ["bench_deployment", "deployment_job", "render"]

VARIANTS = ("torch_fp32", "onnx_fp32", "onnx_int8", "torch_int8")
LABELS = {"torch_fp32": "PyTorch fp32", "onnx_fp32": "ONNX fp32", "onnx_int8": "ONNX int8",
          "torch_int8": "PyTorch int8"}


def _models(quick: bool):
    """(name, model, sequence, past) of each measurement."""
    import torch

    from hfnn import (
        CnnConfig,
        CnnForSequenceClassification,
        MlpConfig,
        MlpForSequenceClassification,
        RnnConfig,
        RnnForCausalLM,
        RnnSeq2SeqConfig,
        RnnSeq2SeqForConditionalGeneration,
        TransformerConfig,
        TransformerForConditionalGeneration,
    )

    torch.manual_seed(0)
    if quick:
        cnn = CnnConfig(vocab_size=200, embedding_size=16, window_sizes=[3, 4, 5], num_filters=8, num_labels=2)
        mlp = MlpConfig(vocab_size=200, embedding_size=16, hidden_size=16, num_hidden_layers=1, num_labels=2)
        rnn = RnnConfig(vocab_size=96, hidden_size=32, embedding_size=16, num_hidden_layers=2, rnn_type="gru")
        gru_g2p = RnnSeq2SeqConfig(source_vocab_size=40, vocab_size=48, hidden_size=32, embedding_size=16)
        transformer_g2p = TransformerConfig(is_encoder_decoder=True, source_vocab_size=40, vocab_size=48,
                                            hidden_size=32, num_attention_heads=2, intermediate_size=64,
                                            encoder_layers=1, decoder_layers=1, max_position_embeddings=32)
    else:  # the shipped recipes' sizes (pipelines/recipes: cnn_, mlp_rotten_tomatoes, rnn_shakespeare_char,
        # rnn_seq2seq_cmudict, transformer_seq2seq_cmudict); the MLP's vocabulary holds words and bigrams
        cnn = CnnConfig(vocab_size=20000, embedding_size=300, window_sizes=[3, 4, 5], num_filters=100, num_labels=2)
        mlp = MlpConfig(vocab_size=20000, embedding_size=128, hidden_size=128, num_hidden_layers=1, num_labels=2,
                        activation="relu")
        rnn = RnnConfig(vocab_size=96, hidden_size=256, embedding_size=256, num_hidden_layers=2, rnn_type="gru")
        gru_g2p = RnnSeq2SeqConfig(source_vocab_size=40, vocab_size=48, hidden_size=384, embedding_size=128,
                                   attention="bahdanau")
        transformer_g2p = TransformerConfig(is_encoder_decoder=True, source_vocab_size=40, vocab_size=48,
                                            hidden_size=256, num_attention_heads=4, intermediate_size=1024,
                                            encoder_layers=2, decoder_layers=2, max_position_embeddings=64,
                                            position_embedding_type="learned", tie_word_embeddings=True)
    return [
        ("CNN classifier (64 tokens)", CnnForSequenceClassification(cnn).eval(), 64, 0),
        ("MLP classifier (64 tokens)", MlpForSequenceClassification(mlp).eval(), 64, 0),
        ("GRU LM, one decoding step (64 past)", RnnForCausalLM(rnn).eval(), 1, 64),
        ("GRU G2P, Bahdanau (one word)", RnnSeq2SeqForConditionalGeneration(gru_g2p).eval(), 10, 0),
        ("Transformer G2P (one word)", TransformerForConditionalGeneration(transformer_g2p).eval(), 10, 0),
    ]


def deployment_job(quick: bool = False) -> dict:
    import onnxruntime as ort
    import torch

    from hfnn.sharing import export, quantize

    threads = torch.get_num_threads()
    clock = time.process_time if threads == 1 else time.perf_counter
    rounds, budget = (3, 0.02) if quick else (7, 0.25)  # seconds per variant and round
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, model, seq, past in _models(quick):
            float_path = Path(folder) / "model.onnx"
            export.export_onnx(model, float_path)
            q = quantize.quantize_onnx(float_path, check=False)
            torch_int8 = quantize.quantize_torch(model)
            graph, int8_graph = export._graph(model), export._graph(torch_int8.model)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            sessions = {v: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                        for v, p in (("onnx_fp32", float_path), ("onnx_int8", q.path))}
            row = {"name": name, "parameters": sum(p.numel() for p in model.parameters()), "sequence": seq,
                   "past": past, "onnx_int8_ops": q.quantized, "onnx_kept_float": q.kept_float,
                   "torch_int8_modules": torch_int8.quantized, "torch_kept_float": torch_int8.kept_float,
                   "onnx_mb": {"fp32": q.float_size_mb, "int8": q.size_mb}}
            for batch in (1, 32):
                inputs = export._example(model, graph, batch, seq, past, padded=False, seed=2)
                feeds = {n: t.numpy() for n, t in zip(graph.inputs, export._flat(inputs))}

                def torch_fn(module):
                    def run():
                        with torch.inference_mode():
                            return module(*inputs)
                    return run

                fns = {"torch_fp32": torch_fn(graph.module), "torch_int8": torch_fn(int8_graph.module),
                       **{v: (lambda s=s: s.run(None, feeds)) for v, s in sessions.items()}}
                for fn in fns.values():  # first-call costs, outside the rounds
                    fn()
                    fn()
                start = clock()
                fns["torch_fp32"]()
                repeats = max(3, min(2000, int(budget / max(clock() - start, 1e-5))))
                times = {v: [] for v in VARIANTS}
                for _ in range(rounds):
                    for v in VARIANTS:
                        times[v].append(_time(fns[v], clock, repeats))
                median = {v: statistics.median(t) for v, t in times.items()}
                row[f"batch{batch}"] = {
                    "ms_per_call": {v: 1000 * m for v, m in median.items()},
                    "items_per_s": {v: batch / m for v, m in median.items()},
                    "speedup": {v: median["torch_fp32"] / m for v, m in median.items()},
                    "repeats": repeats, "rounds": times,
                }
            rows.append(row)
    return {"rows": rows, "threads": threads, "rounds": rounds,
            "clock": "process CPU time" if clock is time.process_time else "wall time",
            "onnxruntime": ort.__version__, "torch": torch.__version__}


def bench_deployment(runner) -> dict:
    out = {"speed": runner.run("deployment", "int8 and ONNX on the CPU", deployment_job, quick=runner.quick)}
    from bench.deployment_quality import quality_job

    out["quality"] = runner.run("deployment", "int8 quality on the test splits", quality_job, training=True,
                                quick=runner.quick)
    return out


def _x(value: float) -> str:
    return f"{value:.2f}x"


def render(r: dict, out, headline: list[str]) -> list[str]:
    """The RESULTS.md section (bench/report.py's signature)."""
    speed = r.get("speed", r)
    lines = []
    if "error" in speed:
        lines += [f"**speed: failed** ({speed['error'][:300]})", ""]
    else:
        lines += [f"PyTorch {speed['torch']} eager (`torch.inference_mode`) and ONNX Runtime {speed['onnxruntime']} "
                  f"on the same inputs, {speed['threads']} thread(s), {speed['clock']}, median of {speed['rounds']} "
                  "rounds alternating the four variants. Each cell: speed relative to PyTorch float32 in the same run "
                  "(> 1: faster); the PyTorch float32 column is its time per call (batch 1: the latency of one item; "
                  "batch 32: the time of 32 items). int8 is dynamic quantization (int8 weights, activations "
                  "quantized per call); weights are random at the recipes' sizes (speed does not depend on them).",
                  ""]
        for batch in (1, 32):
            lines += [f"Batch {batch}:", "",
                      "| model | parameters | PyTorch fp32 ms | ONNX fp32 | ONNX int8 | PyTorch int8 |",
                      "| --- | ---: | ---: | ---: | ---: | ---: |"]
            for x in speed["rows"]:
                b = x[f"batch{batch}"]
                lines.append(f"| {x['name']} | {x['parameters']:,} | {b['ms_per_call']['torch_fp32']:.3f} | "
                             + " | ".join(_x(b["speedup"][v]) for v in VARIANTS[1:]) + " |")
            lines.append("")
        lines += ["What int8 covers (ONNX: integer ops in the graph and kept-float products; PyTorch: replaced "
                  "modules and float ones):", ""]
        for x in speed["rows"]:
            def fmt(d):
                return ", ".join(f"{k} x{v}" for k, v in d.items()) or "none"
            lines.append(f"- {x['name']}: ONNX int8 {fmt(x['onnx_int8_ops'])}; kept float {fmt(x['onnx_kept_float'])}"
                         f"; file {x['onnx_mb']['fp32']:.1f} -> {x['onnx_mb']['int8']:.1f} MB. PyTorch int8 "
                         f"{fmt(x['torch_int8_modules'])}; kept float {fmt(x['torch_kept_float'])}.")
        lines.append("")
        b1 = {x["name"]: x["batch1"]["speedup"] for x in speed["rows"]}
        headline.append("int8 at batch 1, one thread, vs PyTorch fp32: " + ", ".join(
            f"{n} ONNX {_x(s['onnx_int8'])} / PyTorch {_x(s['torch_int8'])}" for n, s in b1.items()) + ".")
    quality = r.get("quality")
    if quality:
        from bench.deployment_quality import render_quality

        lines += render_quality(quality, headline)
    return lines
