"""ONNX Runtime against PyTorch on the CPU, same process, same inputs: the CNN and bidirectional-GRU classifiers on a
batch of 32 texts of 64 tokens; the GRU language model reading a 64-token prompt in one call; one decoding step of
the GRU and Transformer language models (one new token per row after a 64-token past, carried as the exported graphs
carry it: state or keys/values in, new ones out); the GRU encoder-decoder with Bahdanau attention, teacher-forced.
Both run the same graph, exported by :func:`hfnn.sharing.export.export_onnx` and checked against PyTorch before timing;
the PyTorch side calls the module that was traced (eager: the fused recurrent kernels, where the graph holds an ONNX
Scan over time). Timings alternate (A B A B), medians of the rounds; with one thread the clock is the process's CPU
time. The ``*_job`` function runs in a child process (see :mod:`bench.run_all`)."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

__all__ = ["bench_onnx", "onnx_job", "render"]


def _models(quick: bool):
    """(name, model, batch, sequence, past) of each measurement."""
    import torch

    from hfnn import (
        CnnConfig,
        CnnForSequenceClassification,
        RnnConfig,
        RnnForCausalLM,
        RnnForSequenceClassification,
        RnnSeq2SeqConfig,
        RnnSeq2SeqForConditionalGeneration,
        TransformerConfig,
        TransformerForCausalLM,
    )

    torch.manual_seed(0)
    if quick:
        cnn = CnnConfig(vocab_size=200, embedding_size=16, window_sizes=[3, 4, 5], num_filters=8, num_labels=2)
        classifier = RnnConfig(vocab_size=200, hidden_size=16, embedding_size=16, num_hidden_layers=1, rnn_type="gru",
                               bidirectional=True, num_labels=2)
        rnn = RnnConfig(vocab_size=96, hidden_size=32, embedding_size=16, num_hidden_layers=2, rnn_type="gru")
        seq2seq = RnnSeq2SeqConfig(source_vocab_size=40, vocab_size=48, hidden_size=32, embedding_size=16)
        transformer = TransformerConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64, max_position_embeddings=128)
    else:  # the shipped recipes' sizes: Kim's CNN; the Rotten Tomatoes bi-GRU; the main-job GRU; the G2P GRU
        # encoder-decoder; the character Transformer
        cnn = CnnConfig(vocab_size=20000, embedding_size=300, window_sizes=[3, 4, 5], num_filters=100, num_labels=2)
        classifier = RnnConfig(vocab_size=20000, hidden_size=128, embedding_size=128, num_hidden_layers=1,
                               rnn_type="gru", bidirectional=True, num_labels=2)
        rnn = RnnConfig(vocab_size=96, hidden_size=256, embedding_size=256, num_hidden_layers=2, rnn_type="gru")
        seq2seq = RnnSeq2SeqConfig(source_vocab_size=40, vocab_size=48, hidden_size=384, embedding_size=128)
        transformer = TransformerConfig(vocab_size=96, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                        intermediate_size=1024, max_position_embeddings=512)
    lm = RnnForCausalLM(rnn).eval()
    return [
        ("CNN classifier", CnnForSequenceClassification(cnn).eval(), 32, 64, 0),
        ("bi-GRU classifier", RnnForSequenceClassification(classifier).eval(), 32, 64, 0),
        ("GRU LM, 64-token prompt", lm, 32, 64, 0),
        ("GRU LM, one decoding step", lm, 32, 1, 64),
        ("Transformer LM, one decoding step", TransformerForCausalLM(transformer).eval(), 32, 1, 64),
        ("GRU encoder-decoder, Bahdanau, 15 target tokens", RnnSeq2SeqForConditionalGeneration(seq2seq).eval(), 32,
         16, 0),
    ]


def _time(fn, clock, repeats: int) -> float:
    start = clock()
    for _ in range(repeats):
        fn()
    return (clock() - start) / repeats


def onnx_job(quick: bool = False) -> dict:
    import onnxruntime as ort
    import torch

    from hfnn.sharing import export

    threads = torch.get_num_threads()
    clock = time.process_time if threads == 1 else time.perf_counter
    rounds, repeats = (3, 5) if quick else (7, 30)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, model, batch, seq, past in _models(quick):
            try:
                result = export.export_onnx(model, Path(folder) / "model.onnx")
            except RuntimeError as err:  # a model the exporter cannot take yet: say so, measure the others
                rows.append({"name": name, "error": str(err)[:300]})
                continue
            graph = export._graph(model)
            inputs = export._example(model, graph, batch, seq, past, padded=False, seed=2)  # an LM's mask: past + new
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(result.path), options, providers=["CPUExecutionProvider"])
            feeds = {n: t.numpy() for n, t in zip(graph.inputs, export._flat(inputs))}

            def run_torch():
                with torch.inference_mode():
                    return graph.module(*inputs)

            def run_ort():
                return session.run(None, feeds)

            expected = run_torch()
            expected = expected if isinstance(expected, tuple) else (expected,)
            diff = max(float((torch.from_numpy(g) - e).abs().max()) for g, e in zip(run_ort(), expected))
            for fn in (run_torch, run_ort, run_torch, run_ort):  # first-call costs, outside the rounds
                fn()
            times = {"torch": [], "ort": []}
            for _ in range(rounds):
                times["torch"].append(_time(run_torch, clock, repeats))
                times["ort"].append(_time(run_ort, clock, repeats))
            torch_s, ort_s = statistics.median(times["torch"]), statistics.median(times["ort"])
            rows.append({"name": name, "batch": batch, "sequence": seq, "past": past, "torch_ms": 1000 * torch_s,
                         "ort_ms": 1000 * ort_s, "speedup": torch_s / ort_s, "max_abs_diff": diff,
                         "parameters": sum(p.numel() for p in model.parameters()), "rounds": times})
    return {"rows": rows, "threads": threads,
            "clock": "process CPU time" if clock is time.process_time else "wall time",
            "rounds": rounds, "repeats": repeats, "onnxruntime": ort.__version__}


def bench_onnx(runner) -> dict:
    return runner.run("onnx", "ONNX Runtime vs PyTorch inference", onnx_job, quick=runner.quick)


def render(r: dict, out, headline: list[str]) -> list[str]:
    """The RESULTS.md section (bench/report.py's signature)."""
    lines = [f"The same exported graph (`hfnn.sharing.export`) run by ONNX Runtime {r['onnxruntime']} and by PyTorch "
             f"eager (`torch.inference_mode`), same inputs, {r['threads']} thread(s), {r['clock']}, median of "
             f"{r['rounds']} alternating rounds of {r['repeats']} calls. Speed-up = PyTorch time / ONNX Runtime time "
             "(> 1: ONNX Runtime faster). A decoding step reads one new token per row after a 64-token past held as "
             "the graph's state (GRU) or keys and values (Transformer); a prompt is read in one call from an empty "
             "past. The recurrent graphs loop over time in an ONNX Scan (dynamic lengths); PyTorch runs its fused "
             "kernels.", ""]
    rows = [[x["name"], f"{x['parameters']:,}",
             f"{x['batch']} x {x['sequence']}" + (f" (+{x['past']} past)" if x["past"] else ""),
             f"{x['torch_ms']:.2f}", f"{x['ort_ms']:.2f}", f"{x['speedup']:.2f}x", f"{x['max_abs_diff']:.1e}"]
            for x in r["rows"] if "error" not in x]
    lines += ["| model | parameters | batch | PyTorch ms | ONNX Runtime ms | speed-up | largest difference |",
              "| --- | ---: | --- | ---: | ---: | ---: | ---: |"] + ["| " + " | ".join(row) + " |"
                                                                   for row in rows] + [""]
    lines += [f"**{x['name']}: not exported** ({x['error']})" for x in r["rows"] if "error" in x]
    lines += [""] if any("error" in x for x in r["rows"]) else []
    headline.append("ONNX Runtime vs PyTorch on the CPU: " + ", ".join(f"{x['name']} {x['speedup']:.2f}x"
                                                                       for x in r["rows"] if "error" not in x)
                    + " (> 1 = ONNX Runtime faster).")
    return lines
