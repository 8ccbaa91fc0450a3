"""The CUDA path of every hfnn model: a bf16 training step and generation on the GPU.

    python bench/cuda_check.py            # needs a CUDA device; prints one line per check

For each architecture: a mixed-precision (bf16 autocast) training step must give a finite loss and
change the weights; in float32 on the GPU, greedy generation must give the same tokens as on the
CPU, cached and uncached generation must agree, and beam search must run. Exits non-zero if a
check fails.
"""

from __future__ import annotations

import sys
import time

import torch

import hfnn

V, SRC_V = 40, 30


def builders():
    yield "rnn-lstm-lm", hfnn.RnnForCausalLM(hfnn.RnnConfig(vocab_size=V, hidden_size=64, num_hidden_layers=2,
                                                            rnn_type="lstm", dropout=0.0)), "lm"
    yield "rnn-gru-cls", hfnn.RnnForSequenceClassification(hfnn.RnnConfig(vocab_size=V, hidden_size=64, rnn_type="gru",
                                                                          bidirectional=True, use_cache=False,
                                                                          num_labels=2)), "cls"
    yield "transformer-lm", hfnn.TransformerForCausalLM(hfnn.TransformerConfig(
        vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=128,
        dropout=0.0, attention_dropout=0.0, position_embedding_type="rotary")), "lm"
    yield "transformer-cls", hfnn.TransformerForSequenceClassification(hfnn.TransformerConfig(
        vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_labels=2)), "cls"
    yield "cnn-cls", hfnn.CnnForSequenceClassification(hfnn.CnnConfig(vocab_size=V, embedding_size=32, num_filters=16,
                                                                      num_labels=2)), "cls"
    yield "mlp-cls", hfnn.MlpForSequenceClassification(hfnn.MlpConfig(vocab_size=V, embedding_size=32, hidden_size=32,
                                                                      num_hidden_layers=2, activation="relu",
                                                                      num_labels=2)), "cls"
    for attention in ("bahdanau", "luong", "none"):
        yield f"rnn-seq2seq-{attention}", hfnn.RnnSeq2SeqForConditionalGeneration(hfnn.RnnSeq2SeqConfig(
            source_vocab_size=SRC_V, vocab_size=V, hidden_size=64, embedding_size=32, attention=attention,
            dropout=0.0)), "s2s"
    yield "transformer-seq2seq", hfnn.TransformerForConditionalGeneration(hfnn.TransformerConfig(
        vocab_size=V, source_vocab_size=SRC_V, hidden_size=64, num_attention_heads=4, is_encoder_decoder=True,
        encoder_layers=2, decoder_layers=2, decoder_start_token_id=2, dropout=0.0, attention_dropout=0.0)), "s2s"


def batch_for(kind, device):
    g = torch.Generator().manual_seed(0)
    if kind == "lm":
        ids = torch.randint(4, V, (8, 32), generator=g)
        return {"input_ids": ids, "labels": ids}
    if kind == "cls":
        ids = torch.randint(4, V, (8, 20), generator=g)
        mask = torch.ones_like(ids)
        mask[:4, 15:] = 0
        return {"input_ids": ids * mask, "attention_mask": mask, "labels": torch.randint(0, 2, (8,), generator=g)}
    src = torch.randint(4, SRC_V, (8, 12), generator=g)
    mask = torch.ones_like(src)
    mask[:4, 9:] = 0
    labels = torch.randint(4, V, (8, 10), generator=g)
    labels[:2, 7:] = -100
    return {"input_ids": src * mask, "attention_mask": mask, "labels": labels}


def check(name, model, kind, device, failures):
    torch.manual_seed(0)
    batch = {k: v.to(device) for k, v in batch_for(kind, device).items()}
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        loss = model(**batch).loss
    loss.backward()
    opt.step()
    changed = any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    ok = bool(torch.isfinite(loss)) and changed
    print(f"{name:>24} bf16 train step: loss {loss.item():.4f} weights changed={changed} -> {'ok' if ok else 'FAIL'}")
    if not ok:
        failures.append(f"{name} bf16 step")
    if kind == "cls":
        return
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if kind == "lm":
        inputs = {"input_ids": batch["input_ids"][:, :8], "attention_mask": torch.ones_like(batch["input_ids"][:, :8])}
        inputs["attention_mask"][1, :3] = 0  # left padding
    gen_kwargs = dict(max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        t0 = time.perf_counter()
        cached = model.generate(**inputs, use_cache=True, output_scores=True, return_dict_in_generate=True,
                                **gen_kwargs)
        t_cached = time.perf_counter() - t0
        uncached = model.generate(**inputs, use_cache=False, output_scores=True, return_dict_in_generate=True,
                                  **gen_kwargs)
        beams = model.generate(**inputs, num_beams=4, num_return_sequences=2, max_new_tokens=12, eos_token_id=None,
                               pad_token_id=0)
        cpu_model = model.to("cpu")
        cpu = cpu_model.generate(**{k: v.cpu() for k, v in inputs.items()}, **gen_kwargs)
        model.to(device)
    same_cache = torch.equal(cached.sequences, uncached.sequences)
    score_gap = max((a - b).abs().max().item() for a, b in zip(cached.scores, uncached.scores))
    same_cpu = torch.equal(cached.sequences.cpu(), cpu)
    ok = same_cache and same_cpu and score_gap < 1e-3 and beams.shape[0] == 2 * inputs["input_ids"].shape[0]
    print(f"{name:>24} generate: cached==uncached {same_cache} (max score gap {score_gap:.2e}), "
          f"cuda==cpu {same_cpu}, beams {tuple(beams.shape)}, {t_cached * 1000:.0f} ms -> {'ok' if ok else 'FAIL'}")
    if not ok:
        failures.append(f"{name} generation")


def main():
    if "--cpu" in sys.argv:  # smoke test of the script itself
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("no CUDA device (use --cpu for a smoke test)")
        return 2
    else:
        device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch", torch.__version__)
    failures = []
    for name, model, kind in builders():
        try:
            check(name, model, kind, device, failures)
        except Exception as err:  # report every architecture, then fail
            print(f"{name:>24} ERROR {type(err).__name__}: {err}")
            failures.append(name)
    print("failures:", failures or "none")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
