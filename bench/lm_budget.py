"""Language models under the same wall-clock budget: validation loss against time.

The seed note's RNN language model (tanh, GRU, LSTM) against the small Transformer, character-level
on Shakespeare with held-out plays. Every model gets the same budget, the same data order, the same
optimiser (AdamW, warm-up then cosine decay over the time budget) and the same evaluation blocks;
the curve of validation loss against elapsed seconds shows which learns fastest per second of CPU.

    python bench/lm_budget.py --minutes 4 --models lstm gru transformer --out bench/out/lm_budget
    python bench/lm_budget.py --quick          # seconds; a smoke test

Writes ``lm_budget.json``, ``lm_budget.md`` and ``lm_budget.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

import hfnn
from hfnn.data.corpora import load_corpus
from hfnn.data.tokenization import train_tokenizer

# name -> (architecture, config fields); sizes chosen to train well in minutes on 2 CPU cores.
MODELS = {
    "rnn_tanh": ("rnn", dict(rnn_type="rnn_tanh", hidden_size=384, embedding_size=64, num_hidden_layers=2,
                             dropout=0.0)),
    "gru": ("rnn", dict(rnn_type="gru", hidden_size=384, embedding_size=64, num_hidden_layers=2, dropout=0.0)),
    "lstm": ("rnn", dict(rnn_type="lstm", hidden_size=384, embedding_size=64, num_hidden_layers=2, dropout=0.0)),
    "lstm512x1": ("rnn", dict(rnn_type="lstm", hidden_size=512, embedding_size=64, num_hidden_layers=1, dropout=0.0)),
    "gru512x1": ("rnn", dict(rnn_type="gru", hidden_size=512, embedding_size=64, num_hidden_layers=1, dropout=0.0)),
    "gru256": ("rnn", dict(rnn_type="gru", hidden_size=256, embedding_size=64, num_hidden_layers=2, dropout=0.0)),
    "lstm256": ("rnn", dict(rnn_type="lstm", hidden_size=256, embedding_size=64, num_hidden_layers=2, dropout=0.0)),
    "transformer": ("transformer", dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                                        max_position_embeddings=256, dropout=0.0, attention_dropout=0.0)),
    "transformer192": ("transformer", dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=6,
                                           max_position_embeddings=256, dropout=0.0, attention_dropout=0.0)),
}


def encode_splits(block_size: int):
    corpus = load_corpus("shakespeare")
    tok = train_tokenizer(corpus["train"]["text"][:], kind="char")
    streams = {}
    for split in ("train", "validation"):
        ids = []
        for text in corpus[split]["text"][:]:
            ids.extend(tok(text, add_special_tokens=False)["input_ids"])
            ids.append(tok.eos_token_id)
        streams[split] = torch.tensor(ids, dtype=torch.long)
    return tok, streams


def eval_loss(model, blocks: torch.Tensor, batch_size: int = 64) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(blocks), batch_size):
            chunk = blocks[i : i + batch_size]
            out = model(chunk, labels=chunk, use_cache=False)
            n = chunk.numel() - chunk.shape[0]
            total += out.loss.item() * n
            count += n
    model.train()
    return total / count


def train_one(name, tok, streams, minutes, block_size, batch_size, lr, eval_every, eval_blocks, seed=0):
    arch, fields = MODELS[name]
    config_cls = getattr(hfnn, hfnn.ARCHITECTURES[arch].config_class)
    config = config_cls(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, **fields)
    torch.manual_seed(seed)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    train = streams["train"]
    usable = (len(streams["validation"]) // block_size) * block_size
    val_blocks = streams["validation"][:usable].view(-1, block_size)
    step_gen = torch.Generator().manual_seed(seed)
    val_idx = torch.randperm(len(val_blocks), generator=step_gen)[:eval_blocks]
    val_blocks = val_blocks[val_idx]
    budget = 60.0 * minutes
    warmup = 50
    curve, step, eval_time = [], 0, 0.0
    start = time.monotonic()
    next_eval = 0.0
    while True:
        elapsed = time.monotonic() - start - eval_time
        if elapsed >= next_eval or elapsed >= budget:
            t0 = time.monotonic()
            curve.append((round(elapsed, 1), step, eval_loss(model, val_blocks)))
            eval_time += time.monotonic() - t0
            next_eval += eval_every
            print(f"{name:>14} t={elapsed:6.1f}s step={step:5d} val_loss={curve[-1][2]:.4f}", flush=True)
        if elapsed >= budget:
            break
        frac = min(1.0, elapsed / budget)
        scale = min(1.0, (step + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        starts = torch.randint(0, len(train) - block_size - 1, (batch_size,), generator=step_gen)
        batch = torch.stack([train[s : s + block_size] for s in starts])
        loss = model(batch, labels=batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
    return {"model": name, "parameters": params, "steps": step, "tokens": step * batch_size * block_size,
            "final_val_loss": curve[-1][2], "curve": curve, "config": fields, "lr": lr}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["rnn_tanh", "gru", "lstm", "transformer"],
                        choices=sorted(MODELS))
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="default: 3e-3 for RNNs, 1e-3 for Transformers")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--eval-every", type=float, default=30.0, help="seconds")
    parser.add_argument("--eval-blocks", type=int, default=200)
    parser.add_argument("--out", default="bench/out/lm_budget")
    parser.add_argument("--quick", action="store_true", help="a few seconds per model (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.eval_every, args.eval_blocks, args.block_size = 0.05, 1.0, 8, 32
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tok, streams = encode_splits(args.block_size)
    runs = []
    for name in args.models:
        lr = args.lr or (1e-3 if MODELS[name][0] == "transformer" else 3e-3)
        runs.append(train_one(name, tok, streams, args.minutes, args.block_size, args.batch_size, lr,
                              args.eval_every, args.eval_blocks))
    meta = {"python": sys.version.split()[0], "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "minutes": args.minutes,
            "block_size": args.block_size, "batch_size": args.batch_size}
    (out / "lm_budget.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    lines = [f"Character-level Shakespeare (held-out plays), {args.minutes} min per model, "
             f"{meta['threads']} threads, batch {args.batch_size} x {args.block_size} chars.", "",
             "| model | parameters | steps | tokens seen | validation loss (nats/char) |", "|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['steps']} | {r['tokens']:,} | "
                     f"{r['final_val_loss']:.3f} |")
    (out / "lm_budget.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4))
        for r in runs:
            ax.plot([c[0] for c in r["curve"]], [c[2] for c in r["curve"]], marker=".", label=r["model"])
        ax.set_xlabel("training seconds")
        ax.set_ylabel("validation loss (nats/char)")
        ax.set_ylim(top=min(3.5, max(c[2] for r in runs for c in r["curve"])))
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "lm_budget.png", dpi=110)
    except ImportError:
        pass
    return runs


if __name__ == "__main__":
    main()
