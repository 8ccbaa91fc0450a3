"""Speed benchmarks: the Transformer LM against GPT-2, the RNN LM against plain PyTorch, the cost of
generation against the number of new tokens, with and without the cache, and bfloat16 autocast against
float32 for training steps on the CPU.

Every number is a ratio against a reference measured in the same process: the two candidates run
in turn (A B A B ...), several rounds, and the median is kept. With one CPU thread the clock is the
process's CPU time (``time.process_time``), which other jobs on a shared machine barely disturb;
with more threads it is the wall clock. Nothing here asserts anything about time.

The ``*_job`` functions run in a child process (see :mod:`bench.run_all`); the ``bench_*`` functions
run in the parent and only start jobs and collect their results.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import time

__all__ = [
    "alternate",
    "bench_generation",
    "bench_precision",
    "bench_rnn_overhead",
    "bench_transformer_speed",
    "generation_job",
    "precision_job",
    "rnn_overhead_job",
    "transformer_speed_job",
]

PROMPT_LEN = 16


def clock(threads: int):
    """CPU time of this process with one thread (steady on a shared machine), else the wall clock."""
    return time.process_time if threads == 1 else time.perf_counter


def alternate(measure, names, repeats: int, warm_up: bool = True) -> dict[str, list[float]]:
    """Calls ``measure(name)`` for each name in turn (A B A B ...), ``repeats`` rounds; returns every
    value per name, in round order, so that round i of A and round i of B form a pair."""
    if warm_up:
        for name in names:
            measure(name)
    values = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            values[name].append(measure(name))
    return values


def paired_ratio(numerator: list[float], denominator: list[float]) -> dict:
    """Median, quartiles, min and max of the per-round ratios numerator[i] / denominator[i]."""
    ratios = sorted(a / b for a, b in zip(numerator, denominator))
    q = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else [ratios[0]] * 3
    return {"median": statistics.median(ratios), "q1": q[0], "q3": q[2], "min": ratios[0], "max": ratios[-1],
            "rounds": len(ratios)}


def _no_special_tokens(model) -> None:
    """Generation runs to the requested length: no end-of-sequence, no padding token."""
    for field in ("eos_token_id", "pad_token_id", "bos_token_id"):
        setattr(model.generation_config, field, None)


# ---------------------------------------------------------------------------------------------
# 5. Transformer LM vs transformers.GPT2LMHeadModel (the functions of bench_transformer_speed.py)
# ---------------------------------------------------------------------------------------------

TRANSFORMER_SIZES = {
    "full": {
        "small (4L/4H/128, ctx 64, batch 12)": dict(
            layers=4, heads=4, width=128, vocab=65, context=64, batch=12, steps=10, repeats=5,
            generate={256: 5, 1024: 3}, nocache=(512, 3)),
        "large (6L/6H/384, ctx 256, batch 4)": dict(
            layers=6, heads=6, width=384, vocab=65, context=256, batch=4, steps=3, repeats=3,
            generate={256: 3}, nocache=None),
    },
    "quick": {
        "tiny (2L/2H/32, ctx 32, batch 4)": dict(
            layers=2, heads=2, width=32, vocab=65, context=32, batch=4, steps=2, repeats=3,
            generate={32: 3, 64: 3}, nocache=(32, 3)),
    },
}


def transformer_speed_job(quick: bool, threads: int) -> dict:
    from bench import bench_transformer_speed as bts

    bts.TIMER = clock(threads)
    sizes = TRANSFORMER_SIZES["quick" if quick else "full"]
    rows, params, cache_rows = [], [], []
    for label, size in sizes.items():
        longest = max(list(size["generate"]) + ([size["nocache"][0]] if size["nocache"] else []))
        models = bts.build_models(size, max(size["context"], PROMPT_LEN + longest))
        params.append({"size": label, "hfnn": bts.n_params(models["hfnn"]), "gpt2": bts.n_params(models["gpt2"])})
        names = ["hfnn", "gpt2"]
        result = bts.alternate(lambda n: bts.time_training(models[n], size, size["steps"]), names, size["repeats"])
        rows.append({"size": label, "measurement": "train tokens/s", **result})
        for new_tokens, repeats in size["generate"].items():
            result = bts.alternate(
                lambda n: bts.time_generation(models[n], size, new_tokens), names, repeats,
                warm_up=lambda n: bts.time_generation(models[n], size, 16),
            )
            rows.append({"size": label, "measurement": f"generate tokens/s ({new_tokens} new, cached)", **result})
        if size["nocache"]:
            new_tokens, repeats = size["nocache"]
            model = models["hfnn"]
            result = bts.alternate(
                lambda c: bts.time_generation(model, size, new_tokens, use_cache=c), [True, False], repeats,
                warm_up=lambda c: bts.time_generation(model, size, 16, use_cache=c),
            )
            cache_rows.append({"size": label, "new_tokens": new_tokens, "cached": result[True],
                               "uncached": result[False]})
    return {"rows": rows, "params": params, "cache_rows": cache_rows, "prompt_len": bts.PROMPT_LEN,
            "clock": "process CPU time" if threads == 1 else "wall clock"}


def bench_transformer_speed(runner) -> dict:
    result = runner.run("transformer_speed", "hfnn vs GPT-2", transformer_speed_job,
                        quick=runner.quick, threads=runner.threads)
    result["command"] = "bench.bench_transformer_speed: build_models, time_training, time_generation, alternate"
    return result


# ---------------------------------------------------------------------------------------------
# 6. RNN LM vs a plain PyTorch nn.Embedding + nn.LSTM/GRU + nn.Linear of the same size
# ---------------------------------------------------------------------------------------------

RNN_OVERHEAD_SIZES = {
    # pytorch/examples word_language_model defaults: emsize 200, nhid 200, 2 layers, batch 20, bptt 35
    "full": dict(vocab=10000, embedding=200, hidden=200, layers=2, batch=20, bptt=35, steps=5, repeats=9,
                 new_tokens=256, gen_repeats=7, rnn_types=("lstm", "gru")),
    "quick": dict(vocab=50, embedding=16, hidden=32, layers=1, batch=4, bptt=16, steps=2, repeats=3,
                  new_tokens=32, gen_repeats=3, rnn_types=("lstm",)),
}
OVERHEAD_TARGET = 0.03  # the Hugging Face wrapping should cost at most 3 %


def _plain_rnn_lm(rnn_type: str, size: dict):
    """What pytorch/examples does: nn.Embedding -> nn.LSTM/GRU -> nn.Linear, state carried by hand."""
    import torch
    from torch import nn

    class PlainRnnLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(size["vocab"], size["embedding"], padding_idx=0)
            cell = nn.LSTM if rnn_type == "lstm" else nn.GRU
            self.rnn = cell(size["embedding"], size["hidden"], num_layers=size["layers"], batch_first=True)
            self.head = nn.Linear(size["hidden"], size["vocab"])

        def forward(self, ids, state=None):
            out, state = self.rnn(self.embed(ids), state)
            return self.head(out), state

        @torch.no_grad()
        def generate(self, prompt, new_tokens: int):
            """Greedy decoding, carrying (h, c) (or h) from one step to the next."""
            logits, state = self(prompt)
            token = logits[:, -1].argmax(-1, keepdim=True)
            tokens = [prompt, token]
            for _ in range(new_tokens - 1):
                logits, state = self(token, state)
                token = logits[:, -1].argmax(-1, keepdim=True)
                tokens.append(token)
            return torch.cat(tokens, dim=1)

    return PlainRnnLM()


def _pair(rnn_type: str, size: dict):
    """An hfnn RnnForCausalLM and a plain model holding the same weights."""
    import torch

    from hfnn import RnnConfig, RnnForCausalLM

    torch.manual_seed(0)
    hf = RnnForCausalLM(RnnConfig(
        vocab_size=size["vocab"], embedding_size=size["embedding"], hidden_size=size["hidden"],
        num_hidden_layers=size["layers"], rnn_type=rnn_type, dropout=0.0, tie_word_embeddings=False,
        pad_token_id=0, bos_token_id=None, eos_token_id=None,
    ))
    _no_special_tokens(hf)
    plain = _plain_rnn_lm(rnn_type, size)
    with torch.no_grad():
        plain.embed.weight.copy_(hf.model.embed_tokens.weight)
        plain.rnn.load_state_dict(hf.model.rnn.state_dict())
        plain.head.weight.copy_(hf.lm_head.weight)
        plain.head.bias.copy_(hf.lm_head.bias)
    return hf, plain


def _train_step(kind: str, model, optimizer, ids):
    import torch.nn.functional as F

    if kind == "hfnn":
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    else:  # the same loss with the same work: every position's logits, the last one without a target
        logits, _ = model(ids)
        targets = F.pad(ids[:, 1:], (0, 1), value=-100)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def _profile_table(fn, rows: int = 8) -> dict:
    """torch.profiler (aten ops: count and self CPU time) and cProfile (Python functions) of one call."""
    import torch

    fn()  # warm-up: first-call costs are not what is being measured
    start = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    profiled_s = time.perf_counter() - start
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    ops = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
    op_self_us = sum(e.self_cpu_time_total for e in events)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    fn()
    profiler.disable()
    plain_s = time.perf_counter() - start
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    functions = []
    for (filename, line, name), (_calls, nc, tottime, _cumtime, _) in sorted(
        stats.stats.items(), key=lambda item: item[1][2], reverse=True
    )[:rows]:
        where = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        functions.append({"function": f"{where}:{line}({name})", "calls": nc, "tottime_ms": tottime * 1e3})
    return {
        "aten_calls": sum(e.count for e in events),
        "aten_self_ms": op_self_us / 1e3,
        "profiled_wall_ms": profiled_s * 1e3,
        "cprofile_wall_ms": plain_s * 1e3,
        "top_ops": [{"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3} for e in ops[:rows]],
        "op_counts": {e.key: e.count for e in events},
        "top_python": functions,
    }


def _forward_parts(hf, plain, token, mask, hf_state, plain_state, timer, plain_per_token: float, repeats: int,
                   calls: int = 2000) -> list[dict]:
    """CPU time of the pieces of work hfnn's forward does for one cached generation step besides the
    recurrence, each relative to the plain loop's time per token. Uses the modeling file's own helpers
    where they exist (they are private: a piece that is not there any more is reported as such)."""
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

    from hfnn.models import input_checks, modeling_rnn

    vocab = hf.config.vocab_size
    with torch.no_grad():
        state = hf_state.states
        out, _ = plain.rnn(plain.embed(token), plain_state)
        logits = plain.head(out)
    pieces = {
        "input-id check (`check_input_ids`: min, max, two `int()`)":
            lambda: input_checks.check_input_ids(token, vocab),
        "attention-mask check (`_mask_layout`: `mask.all()`, one `bool()`)":
            lambda: modeling_rnn._mask_layout(mask[:, -1:]),
        "recurrent state to and from batch-first (transpose + contiguous, both ways)":
            lambda: tuple(t.transpose(0, 1) for t in (s.transpose(0, 1).contiguous() for s in state)),
        "two output dataclasses (`BaseModelOutputWithPast`, `CausalLMOutputWithPast`)":
            lambda: CausalLMOutputWithPast(logits=BaseModelOutputWithPast(last_hidden_state=out, cache=hf_state)
                                           .last_hidden_state, cache=hf_state),
        "plain module: embedding + recurrence + output layer": lambda: plain(token, plain_state),
    }
    del logits
    rows = []
    for label, fn in pieces.items():
        try:
            fn()
        except (AttributeError, TypeError) as err:
            rows.append({"piece": label, "error": f"{type(err).__name__}: {err}"})
            continue

        def measure(_, fn=fn):
            with torch.no_grad():
                start = timer()
                for _ in range(calls):
                    fn()
                return (timer() - start) / calls

        times = alternate(measure, [label], repeats)[label]
        rows.append({"piece": label, "relative": statistics.median(times) / plain_per_token})
    return rows


def rnn_overhead_job(quick: bool, threads: int) -> dict:
    import torch

    timer = clock(threads)
    size = RNN_OVERHEAD_SIZES["quick" if quick else "full"]
    generator = torch.Generator().manual_seed(0)
    results = []
    for rnn_type in size["rnn_types"]:
        hf, plain = _pair(rnn_type, size)
        ids = torch.randint(1, size["vocab"], (size["batch"], size["bptt"]), generator=generator)
        prompt = torch.randint(1, size["vocab"], (1, PROMPT_LEN), generator=generator)

        # the same function: logits, loss and greedy tokens
        hf.eval(), plain.eval()
        with torch.no_grad():
            hf_out = hf(input_ids=ids, labels=ids, use_cache=False)
            plain_logits, _ = plain(ids)
        plain_loss = torch.nn.functional.cross_entropy(
            plain_logits.view(-1, size["vocab"]), torch.nn.functional.pad(ids[:, 1:], (0, 1), value=-100).view(-1),
            ignore_index=-100)
        hf_tokens = hf.generate(prompt, max_new_tokens=size["new_tokens"], min_new_tokens=size["new_tokens"],
                                do_sample=False, use_cache=True)
        plain_tokens = plain.generate(prompt, size["new_tokens"])
        check = {
            "max_abs_logit_diff": float((hf_out.logits - plain_logits).abs().max()),
            "logits_equal": bool(torch.equal(hf_out.logits, plain_logits)),
            "loss_diff": float(abs(hf_out.loss - plain_loss)),
            "greedy_tokens_equal": bool(torch.equal(hf_tokens, plain_tokens)),
        }

        # training step: forward + loss + backward + AdamW step
        hf.train(), plain.train()
        models = {"hfnn": hf, "plain": plain}
        optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}

        def train(kind):
            start = timer()
            for _ in range(size["steps"]):
                _train_step(kind, models[kind], optimizers[kind], ids)
            return (timer() - start) / size["steps"]

        train_times = alternate(train, ["hfnn", "plain"], size["repeats"])

        # greedy generation of new_tokens from a 16-token prompt; beside the two loops, one cached step
        # of each model's forward alone (as generate calls hfnn's: a one-token input, the attention mask
        # of the text so far, logits of the last position only), to split hfnn's extra time between its
        # forward and generate's loop
        hf.eval(), plain.eval()
        new = size["new_tokens"]
        with torch.no_grad():
            hf_state = hf(prompt, use_cache=True).cache
            plain_state = plain(prompt)[1]
        token = prompt[:, -1:]
        mask = torch.ones(1, PROMPT_LEN + 1, dtype=torch.long)

        def generate(kind):
            with torch.no_grad():
                start = timer()
                if kind == "hfnn":
                    hf.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False, use_cache=True)
                elif kind == "plain":
                    plain.generate(prompt, new)
                elif kind == "hfnn_step":
                    for _ in range(new):
                        hf(token, attention_mask=mask, cache=hf_state, use_cache=True, logits_to_keep=1)
                else:
                    for _ in range(new):
                        plain(token, plain_state)
                return (timer() - start) / new

        kinds = ["hfnn", "plain", "hfnn_step", "plain_step"]
        gen_times = alternate(generate, kinds, size["gen_repeats"])
        row = {
            "rnn_type": rnn_type,
            "parameters": sum(p.numel() for p in hf.parameters()),
            "plain_parameters": sum(p.numel() for p in plain.parameters()),
            "check": check,
            "train": paired_ratio(train_times["hfnn"], train_times["plain"]),
            "generate": paired_ratio(gen_times["hfnn"], gen_times["plain"]),
            # per token, relative to the plain loop's time per token
            "per_token": {kind: paired_ratio(gen_times[kind], gen_times["plain"]) for kind in kinds},
        }
        if row["generate"]["median"] > 1 + OVERHEAD_TARGET:
            row["forward_parts"] = _forward_parts(hf, plain, token, mask, hf_state, plain_state, timer,
                                                  statistics.median(gen_times["plain"]), size["gen_repeats"],
                                                  calls=200 if quick else 2000)

        # where the time goes, when the wrapping costs more than the target
        profiles = {}
        if row["train"]["median"] > 1 + OVERHEAD_TARGET:
            profiles["train"] = {kind: _profile_table(lambda: _train_step(kind, models[kind], optimizers[kind], ids))
                                 for kind in ("hfnn", "plain")}
        if row["generate"]["median"] > 1 + OVERHEAD_TARGET:
            def run(kind):
                with torch.no_grad():
                    if kind == "hfnn":
                        return hf.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                           use_cache=True)
                    return plain.generate(prompt, new)

            profiles["generate"] = {kind: _profile_table(lambda: run(kind)) for kind in ("hfnn", "plain")}
        for what, profile in profiles.items():  # the aten ops hfnn runs more often than the plain model
            per = new if what == "generate" else 1
            h, p = profile["hfnn"]["op_counts"], profile["plain"]["op_counts"]
            extra = sorted(((h.get(op, 0) - p.get(op, 0)) / per, op) for op in set(h) | set(p))
            profile["extra_ops"] = [{"op": op, "hfnn": h.get(op, 0) / per, "plain": p.get(op, 0) / per}
                                    for diff, op in reversed(extra[-10:]) if diff > 0]
        row["profiles"] = profiles
        results.append(row)
    return {"size": {k: v for k, v in size.items() if k != "rnn_types"}, "rows": results,
            "target": OVERHEAD_TARGET, "clock": "process CPU time" if threads == 1 else "wall clock"}


def bench_rnn_overhead(runner) -> dict:
    return runner.run("rnn_overhead", "hfnn RNN LM vs plain PyTorch", rnn_overhead_job,
                      quick=runner.quick, threads=runner.threads)


# ---------------------------------------------------------------------------------------------
# 7. Generation cost against the number of new tokens, with and without the cache
# ---------------------------------------------------------------------------------------------

GENERATION_SIZES = {
    "full": dict(vocab=65, width=128, layers=2, heads=4, rnn_embedding=64, lengths=(64, 256, 1024),
                 repeats=3, uncached_repeats={1024: 1}),
    "quick": dict(vocab=65, width=16, layers=1, heads=2, rnn_embedding=8, lengths=(16, 32, 64),
                  repeats=2, uncached_repeats={}),
}


def generation_job(quick: bool, threads: int) -> dict:
    import torch

    from hfnn import RnnConfig, RnnForCausalLM, TransformerConfig, TransformerForCausalLM

    timer = clock(threads)
    size = GENERATION_SIZES["quick" if quick else "full"]
    longest = max(size["lengths"])
    torch.manual_seed(0)
    models = {
        "rnn": RnnForCausalLM(RnnConfig(
            vocab_size=size["vocab"], embedding_size=size["rnn_embedding"], hidden_size=size["width"],
            num_hidden_layers=size["layers"], rnn_type="lstm", dropout=0.0, pad_token_id=0, bos_token_id=None,
            eos_token_id=None)),
        "transformer": TransformerForCausalLM(TransformerConfig(
            vocab_size=size["vocab"], hidden_size=size["width"], num_hidden_layers=size["layers"],
            num_attention_heads=size["heads"], max_position_embeddings=PROMPT_LEN + longest, dropout=0.0,
            attention_dropout=0.0, pad_token_id=0, bos_token_id=None, eos_token_id=None)),
    }
    for model in models.values():
        model.eval()
        _no_special_tokens(model)
    prompt = torch.randint(1, size["vocab"], (1, PROMPT_LEN), generator=torch.Generator().manual_seed(1))

    def generate(name, new_tokens, use_cache):
        with torch.no_grad():
            return models[name].generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                         do_sample=False, use_cache=use_cache)

    checks = {}
    for name in models:
        n = min(size["lengths"])
        checks[name] = bool(torch.equal(generate(name, n, True), generate(name, n, False)))

    per_token = {}  # (model, cache) -> {new_tokens: [seconds per token, ...]}
    configs = [(name, cache) for name in models for cache in (True, False)]
    for name, cache in configs:
        generate(name, 8, cache)  # warm-up
    # rounds over every (length, model, cache) setting in turn, so that a slow spell of the machine
    # touches all of them alike; the long uncached runs may take part in fewer rounds
    for round_ in range(size["repeats"]):
        for new_tokens in size["lengths"]:
            for name, cache in configs:
                repeats = size["repeats"] if cache else size["uncached_repeats"].get(new_tokens, size["repeats"])
                if round_ >= repeats:
                    continue
                start = timer()
                generate(name, new_tokens, cache)
                elapsed = timer() - start
                per_token.setdefault(f"{name}|{'cached' if cache else 'uncached'}", {}).setdefault(
                    str(new_tokens), []).append(elapsed / new_tokens)
    medians = {key: {n: statistics.median(v) for n, v in by_length.items()} for key, by_length in per_token.items()}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    return {"size": {k: v for k, v in size.items() if k != "uncached_repeats"},
            "uncached_repeats": {str(k): v for k, v in size["uncached_repeats"].items()},
            "per_token_s": medians, "samples": per_token, "cached_equals_uncached": checks, "parameters": params,
            "clock": "process CPU time" if threads == 1 else "wall clock"}


def bench_generation(runner) -> dict:
    return runner.run("generation", "per-token cost vs new tokens", generation_job,
                      quick=runner.quick, threads=runner.threads)


# ---------------------------------------------------------------------------------------------
# 12. Training steps under bfloat16 autocast against float32, on the CPU
# ---------------------------------------------------------------------------------------------

# the G2P recipes' models: transformer_seq2seq_cmudict_long (3 + 3 layers, 128 wide) and rnn_seq2seq_cmudict
# with Luong attention, without input feeding; CMUdict's vocabularies (29 characters and 69 ARPAbet symbols with
# stress, plus the 4 special tokens); the recipes' batch of 128; word lengths cycling 8, 10, 12
PRECISION_SIZES = {
    "full": dict(source_vocab=33, target_vocab=73, width=128, heads=4, intermediate=512, layers=3, rnn_layers=1,
                 rnn_hidden=384, rnn_embedding=128, short_width=256, short_intermediate=1024, short_layers=2,
                 batch=128, lengths=(8, 10, 12), steps=5, repeats=7),
    "quick": dict(source_vocab=33, target_vocab=73, width=16, heads=4, intermediate=64, layers=1, rnn_layers=1,
                  rnn_hidden=16, rnn_embedding=16, short_width=16, short_intermediate=32, short_layers=1,
                  batch=8, lengths=(8, 10, 12), steps=2, repeats=2),
}


def _precision_models(size: dict) -> dict:
    """The G2P recipes' encoder-decoders (float32, freshly initialised), by label: the long Transformer recipe's
    (with dropout), the 30-minute one's (without: the one PyTorch gives its flash-attention kernel) and the GRU."""
    import torch

    from hfnn import (
        RnnSeq2SeqConfig,
        RnnSeq2SeqForConditionalGeneration,
        TransformerConfig,
        TransformerForConditionalGeneration,
    )

    torch.manual_seed(0)
    def transformer(width, intermediate, layers, dropout):
        return TransformerForConditionalGeneration(TransformerConfig(
            is_encoder_decoder=True, vocab_size=size["target_vocab"], source_vocab_size=size["source_vocab"],
            hidden_size=width, num_attention_heads=size["heads"], intermediate_size=intermediate,
            encoder_layers=layers, decoder_layers=layers, dropout=dropout, attention_dropout=dropout,
            position_embedding_type="learned", tie_word_embeddings=True, max_position_embeddings=33))

    long = transformer(size["width"], size["intermediate"], size["layers"], 0.1)
    short = transformer(size["short_width"], size["short_intermediate"], size["short_layers"], 0.0)
    rnn = RnnSeq2SeqForConditionalGeneration(RnnSeq2SeqConfig(
        source_vocab_size=size["source_vocab"], vocab_size=size["target_vocab"], rnn_type="gru",
        hidden_size=size["rnn_hidden"], embedding_size=size["rnn_embedding"], num_encoder_layers=size["rnn_layers"],
        num_decoder_layers=size["rnn_layers"], bidirectional_encoder=True, attention="luong", input_feeding=False,
        dropout=0.0))
    return {f"Transformer encoder-decoder ({size['layers']} + {size['layers']} layers, "
            f"{size['width']} wide, dropout 0.1)": long,
            f"Transformer encoder-decoder ({size['short_layers']} + {size['short_layers']} layers, "
            f"{size['short_width']} wide, no dropout)": short,
            f"GRU encoder-decoder, Luong attention ({size['rnn_hidden']} units)": rnn}


def _precision_batch(size: dict, generator) -> dict:
    """A padded batch as the seq2seq collator gives it: source ids with their attention mask, labels ending in
    ``</s>`` (id 3) and padded with -100; row i has lengths[i % len(lengths)] source and target tokens."""
    import torch

    longest = max(size["lengths"])
    input_ids = torch.zeros(size["batch"], longest, dtype=torch.long)
    attention_mask = torch.zeros(size["batch"], longest, dtype=torch.long)
    labels = torch.full((size["batch"], longest), -100, dtype=torch.long)
    for i in range(size["batch"]):
        n = size["lengths"][i % len(size["lengths"])]
        input_ids[i, :n] = torch.randint(4, size["source_vocab"], (n,), generator=generator)
        attention_mask[i, :n] = 1
        labels[i, :n - 1] = torch.randint(4, size["target_vocab"], (n - 1,), generator=generator)
        labels[i, n - 1] = 3
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _bf16_hardware() -> dict:
    """What torch reports about the CPU's bfloat16 support (the private checks may be missing)."""
    import torch

    found = {"mkldnn": bool(torch.backends.mkldnn.is_available())}
    for key, name in (("amx_tile", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported")):
        check = getattr(torch.cpu, name, None)
        try:
            found[key] = bool(check()) if check is not None else None
        except Exception:  # a private API: any failure means "not known"
            found[key] = None
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    found["cpu_capability"] = capability() if capability is not None else None
    return found


def precision_job(quick: bool, threads: int) -> dict:
    """Training steps of the two G2P encoder-decoders in float32 and under ``torch.autocast("cpu",
    dtype=torch.bfloat16)``, as the Trainer runs them with ``--bf16 true`` on the CPU: the forward (and the loss
    computed in it) under autocast, the backward and the AdamW step outside it. Each precision trains its own copy
    of the same initial weights, so that neither's optimizer state touches the other's. A Transformer without
    attention dropout also runs a third copy in bfloat16 with the attention kernel PyTorch picks for it (flash
    attention), the one hfnn replaces by the plain kernel in half precision on the CPU
    (:func:`hfnn.models.modeling_transformer.flash_kernel_is_slow`)."""
    import contextlib
    import copy
    import unittest.mock

    import torch

    from hfnn.models import modeling_transformer

    timer = clock(threads)
    size = PRECISION_SIZES["quick" if quick else "full"]
    batch = _precision_batch(size, torch.Generator().manual_seed(1))
    rows = []
    # the third copy's attention takes the kernel PyTorch itself would pick
    flash_kernel = unittest.mock.patch.object(modeling_transformer, "flash_kernel_is_slow", return_value=False)
    for label, model in _precision_models(size).items():
        models = {"fp32": model.train(), "bf16": copy.deepcopy(model).train()}
        if getattr(model.config, "attention_dropout", None) == 0.0:
            models["bf16_flash"] = copy.deepcopy(model).train()
        optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in models.items()}
        logits_dtype = {}

        def step(precision):
            kernel = flash_kernel if precision == "bf16_flash" else contextlib.nullcontext()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32"), \
                    kernel:
                out = models[precision](**batch)
            logits_dtype[precision] = str(out.logits.dtype).replace("torch.", "")
            out.loss.float().backward()
            optimizers[precision].step()
            optimizers[precision].zero_grad(set_to_none=True)

        def measure(precision):
            start = timer()
            for _ in range(size["steps"]):
                step(precision)
            return (timer() - start) / size["steps"]

        times = alternate(measure, list(models), size["repeats"])
        row = {"model": label, "parameters": sum(p.numel() for p in model.parameters()),
               "fp32_ms": 1000 * statistics.median(times["fp32"]),
               "bf16_ms": 1000 * statistics.median(times["bf16"]),
               # bf16 steps/s over fp32 steps/s, round by round: > 1 = bf16 faster
               "speedup": paired_ratio(times["fp32"], times["bf16"]),
               "logits_dtype": logits_dtype, "seconds": times}
        if "bf16_flash" in times:
            row["bf16_flash_ms"] = 1000 * statistics.median(times["bf16_flash"])
            # the plain kernel's steps/s over the flash kernel's: > 1 = hfnn's choice faster
            row["kernel_speedup"] = paired_ratio(times["bf16_flash"], times["bf16"])
        rows.append(row)
    return {"size": dict(size), "rows": rows, "hardware": _bf16_hardware(),
            "torch_threads": torch.get_num_threads(), "clock": "process CPU time" if threads == 1 else "wall clock"}


def bench_precision(runner) -> dict:
    return runner.run("precision", "bf16 autocast vs float32 training steps", precision_job,
                      quick=runner.quick, threads=runner.threads)
