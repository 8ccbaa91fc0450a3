"""Speed of the hfnn Transformer LM against ``transformers.GPT2LMHeadModel`` of identical size.

Measured in the same process, alternating hfnn / GPT-2 (A B A B ...), medians over repeats:

* training tokens/s: forward + backward + AdamW step on random token batches;
* cached generation tokens/s: greedy ``generate`` of 256 and 1024 new tokens from a 16-token prompt;
* hfnn generation with the key/value cache against without it (512 new tokens).

Both models get the same vocabulary, width, depth, heads, feed-forward size, context, GELU
activation and no dropout; both use PyTorch's scaled-dot-product-attention kernel. Two sizes: the
nanoGPT CPU recipe (4 layers, 4 heads, 128 wide, vocabulary 65, context 64, batch 12) and the
nanoGPT Shakespeare-char size (6 layers, 6 heads, 384 wide, context 256) with a smaller batch.
Times are machine-dependent and these machines are shared: read the ratios. With one CPU thread
the default clock is the process's CPU time, which other jobs on the machine barely disturb.
Nothing is asserted.

    python bench/bench_transformer_speed.py --quick      # a few minutes
    python bench/bench_transformer_speed.py              # several times longer (1024 tokens, uncached large model)

Writes ``bench/out/transformer_speed.md``.
"""

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hfnn.models.configuration_transformer import TransformerConfig  # noqa: E402
from hfnn.models.modeling_transformer import TransformerForCausalLM  # noqa: E402

PROMPT_LEN = 16
# time.process_time counts only this process's CPU time: with one thread it measures the work done and
# is far steadier than the wall clock on a machine shared with other jobs (set by --clock)
TIMER = time.perf_counter
SIZES = {
    "small (4L/4H/128, ctx 64, batch 12)": dict(
        layers=4, heads=4, width=128, vocab=65, context=64, batch=12, train_steps=10, quick_train_steps=4,
        nocache_rounds=3,
    ),
    "large (6L/6H/384, ctx 256, batch 4)": dict(
        layers=6, heads=6, width=384, vocab=65, context=256, batch=4, train_steps=3, quick_train_steps=2,
        nocache_rounds=1,  # uncached generation of this size is slow on a CPU
    ),
}


def build_models(size: dict, max_positions: int):
    """The two models with the same shape; dropout off, eos off (generation runs to the end)."""
    torch.manual_seed(0)
    hfnn_model = TransformerForCausalLM(
        TransformerConfig(
            vocab_size=size["vocab"], hidden_size=size["width"], num_hidden_layers=size["layers"],
            num_attention_heads=size["heads"], max_position_embeddings=max_positions,
            position_embedding_type="learned", hidden_act="gelu", dropout=0.0, attention_dropout=0.0,
            pad_token_id=None, bos_token_id=None, eos_token_id=None,
        )
    )
    gpt2_model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=size["vocab"], n_embd=size["width"], n_layer=size["layers"], n_head=size["heads"],
            n_positions=max_positions, activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0, bos_token_id=None, eos_token_id=None, pad_token_id=None,
        ),
    )
    for model in (hfnn_model, gpt2_model):
        model.generation_config.eos_token_id = None
        model.generation_config.pad_token_id = None
        model.generation_config.bos_token_id = None
    return {"hfnn": hfnn_model, "gpt2": gpt2_model}


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_training(model, size, steps: int, device: str = "cpu") -> float:
    """Training tokens/s over ``steps`` optimizer steps (after one warm-up step)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    batches = [
        torch.randint(0, size["vocab"], (size["batch"], size["context"]), generator=generator).to(device)
        for _ in range(steps + 1)
    ]

    def step(ids):
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(batches[0])
    synchronize(device)
    start = TIMER()
    for ids in batches[1:]:
        step(ids)
    synchronize(device)
    elapsed = TIMER() - start
    return steps * size["batch"] * size["context"] / elapsed


@torch.no_grad()
def time_generation(model, size, new_tokens: int, use_cache: bool = True, device: str = "cpu") -> float:
    """Greedy generation tokens/s for one 16-token prompt and exactly ``new_tokens`` new tokens."""
    model.eval()
    prompt = torch.randint(0, size["vocab"], (1, PROMPT_LEN), generator=torch.Generator().manual_seed(1)).to(device)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=use_cache)
    synchronize(device)
    start = TIMER()
    output = model.generate(prompt, **kwargs)
    synchronize(device)
    elapsed = TIMER() - start
    assert output.shape[1] == PROMPT_LEN + new_tokens
    return new_tokens / elapsed


def alternate(measure, names, repeats: int, warm_up=None) -> dict:
    """Run ``measure(name)`` for each name in turn (A B A B ...), ``repeats`` rounds; medians.
    ``warm_up(name)`` (default: ``measure``) runs once per name first, unrecorded."""
    results = {name: [] for name in names}
    for name in names:
        (warm_up or measure)(name)
    for _ in range(repeats):
        for name in names:
            results[name].append(measure(name))
    return {name: statistics.median(values) for name, values in results.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and only 256 new tokens")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per measurement (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = steadier on a shared machine)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--clock", choices=["cpu", "wall"], default=None,
        help="cpu: process CPU time (default on cpu with 1 thread); wall: elapsed time (default otherwise)",
    )
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "transformer_speed.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    global TIMER
    clock = args.clock or ("cpu" if args.device == "cpu" and args.threads == 1 else "wall")
    TIMER = time.process_time if clock == "cpu" else time.perf_counter
    repeats = args.repeats or (3 if args.quick else 5)
    device = args.device
    gen_lengths = (256,) if args.quick else (256, 1024)
    nocache_tokens = 512

    rows = []  # (size, measurement, hfnn, gpt2)
    cache_rows = []  # (size, cached tok/s, uncached tok/s, speed-up)
    param_rows = []
    for label, size in SIZES.items():
        max_positions = max(size["context"], PROMPT_LEN + max(max(gen_lengths), nocache_tokens))
        models = {name: model.to(device) for name, model in build_models(size, max_positions).items()}
        param_rows.append((label, n_params(models["hfnn"]), n_params(models["gpt2"])))
        names = ["hfnn", "gpt2"]

        steps = size["quick_train_steps" if args.quick else "train_steps"]
        result = alternate(lambda name: time_training(models[name], size, steps, device), names, repeats)
        rows.append((label, "train tokens/s", result["hfnn"], result["gpt2"]))
        print(rows[-1], flush=True)
        for new_tokens in gen_lengths:
            result = alternate(
                lambda name: time_generation(models[name], size, new_tokens, device=device),
                names,
                repeats,
                warm_up=lambda name: time_generation(models[name], size, 32, device=device),
            )
            rows.append((label, f"generate tokens/s ({new_tokens} new, cached)", result["hfnn"], result["gpt2"]))
            print(rows[-1], flush=True)

        if not args.quick or "small" in label:
            model = models["hfnn"]
            result = alternate(
                lambda use_cache: time_generation(model, size, nocache_tokens, use_cache=use_cache, device=device),
                [True, False],
                min(size["nocache_rounds"], repeats),
                warm_up=lambda use_cache: time_generation(model, size, 32, use_cache=use_cache, device=device),
            )
            cache_rows.append((label, result[True], result[False]))
            print(cache_rows[-1], flush=True)

    lines = [
        "# hfnn Transformer LM vs transformers.GPT2LMHeadModel",
        "",
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.cuda.get_device_name() if device.startswith('cuda') else platform.machine() + ' CPU'}, "
        f"{args.threads} CPU thread(s), {clock} clock, {'quick' if args.quick else 'full'} mode, "
        f"medians of {repeats} alternating rounds. "
        "Same vocabulary, width, depth, heads, feed-forward size, context, GELU, no dropout; greedy generation "
        f"from a {PROMPT_LEN}-token prompt. Ratio = hfnn / GPT-2 (> 1: hfnn is faster).",
        "",
        "| model size | measurement | hfnn | GPT-2 | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for label, what, ours, theirs in rows:
        lines.append(f"| {label} | {what} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f}x |")
    lines += ["", "| model size | hfnn parameters | GPT-2 parameters |", "|---|---:|---:|"]
    lines += [f"| {label} | {ours:,} | {theirs:,} |" for label, ours, theirs in param_rows]
    lines += [
        "",
        f"## hfnn generation with and without the key/value cache ({nocache_tokens} new tokens)",
        "",
        "| model size | cached tokens/s | uncached tokens/s | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for label, cached, uncached in cache_rows:
        lines.append(f"| {label} | {cached:,.0f} | {uncached:,.0f} | {cached / uncached:.1f}x |")
    table = "\n".join(lines) + "\n"
    print()
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
