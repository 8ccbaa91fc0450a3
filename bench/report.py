"""RESULTS.md and its PNG plots, from the JSON records of the benchmarks (``OUT/out/results``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from bench import deployment, onnx_speed, streaming

__all__ = ["write"]

PUBLISHED = {
    "kim": "Kim (2014) CNN-rand on MR (a different set of the same kind of review snippets): 76.1 %",
    "g2p": "Yao & Zweig (2015) bi-LSTM 23.55 % WER / 5.45 % PER; cmusphinx g2p-seq2seq Transformer "
           "20.2 % WER (standard split), ~31 % on the latest dictionary; Phonetisaurus 24.4 % WER",
    "nanogpt": "nanoGPT's CPU recipe (4 layers, 128 wide, ~3 min on a laptop, the 1 MB extract): "
               "validation loss 1.88 nats/char; on an A100, 6 x 384, ~3 min: 1.4697",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=80)
    _plt().close(fig)
    return name


def _log_axes(ax, xs) -> None:
    """Log-log axes with plain numbers on the ticks (powers of two on the y axis)."""
    import math

    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.xaxis.set_minor_formatter(NullFormatter())
    low, high = ax.get_ylim()
    ticks = [2.0**k for k in range(math.floor(math.log2(low)), math.ceil(math.log2(high)) + 1)]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(low, high)
    ax.grid(alpha=0.3, which="both")


def _x(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}x"


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _table(header: list[str], rows: list[list], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _stamp(record: dict, run: dict) -> str:
    parts = [f"ran {record['started'][:16].replace('T', ' ')}", f"{record['mode']} mode",
             f"{record['wall_s'] / 60:.1f} min"]
    if record["command"].strip() != run["command"]:
        parts.append(f"by `{record['command']}`")
    machine = record.get("machine")
    if run.get("describe_machine") and machine:
        parts.append(f"on {machine['cpu']} ({machine['usable_cpus']} usable CPUs, load average "
                     f"{machine['load_average_start'][0]} at start, "
                     f"{record.get('load_average_end', ['?'])[0]} at the end)")
    return "_" + ", ".join(parts) + "._"


# ---------------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------------


def _cnn_rnn(r: dict, out: Path, headline: list[str]) -> list[str]:
    timing = r["timing"]
    accuracy = {k: v for k, v in r["accuracy"].items() if "error" not in v}
    if "error" in timing:
        return ["**The timing job failed**; see the log named below.", ""] + _accuracy_lines(r, accuracy, headline)
    size = timing["size"]
    lines = [
        f"Models of the same width {size['width']} (vocabulary {size['vocab']:,}): the Kim-style CNN with "
        f"windows 3, 4, 5 and {size['width']} filters each, a one-layer GRU with {size['width']} units, "
        f"and the same GRU bidirectional. Forward + backward of a batch of {size['batch']} random sequences "
        f"(no padding), {timing['clock']}, median of {size['repeats']} alternating rounds.",
        "",
    ]
    names = {"cnn": "CNN (3/4/5 x W)", "gru": "GRU (W)", "bigru": "bi-GRU (W)"}
    lines += _table(["model", "parameters", "of which embedding", "non-embedding"],
                    [[names[k], f"{v['total']:,}", f"{v['embedding']:,}", f"{v['non_embedding']:,}"]
                     for k, v in timing["parameters"].items()])
    lengths = list(timing["seconds"])
    base = timing["seconds"][lengths[0]]["cnn"]
    rows = []
    for length in lengths:
        s = timing["seconds"][length]
        rows.append([length, _x(s["cnn"] / base, 1), _x(s["gru"] / base, 1), _x(s["bigru"] / base, 1),
                     _x(s["ratios"]["gru"]), _x(s["ratios"]["bigru"])])
    lines += [f"Time relative to the CNN at length {lengths[0]}, and the RNN/CNN ratio at each length "
              "(> 1: the CNN is faster):", ""]
    lines += _table(["sequence length", "CNN", "GRU", "bi-GRU", "GRU / CNN", "bi-GRU / CNN"], rows)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    xs = [int(n) for n in lengths]
    for key, label in names.items():
        ax.plot(xs, [timing["seconds"][n][key] / base for n in lengths], marker="o", label=label)
    _log_axes(ax, xs)
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel(f"forward+backward time\n(relative to CNN at {lengths[0]})")
    ax.legend()
    lines += [f"![CNN vs RNN time against sequence length]({_save(fig, out, 'cnn_rnn_time.png')})", ""]
    gru = [timing["seconds"][n]["ratios"]["gru"] for n in lengths]
    bigru = [timing["seconds"][n]["ratios"]["bigru"] for n in lengths]
    p = timing["parameters"]
    lines += [
        f"On {'one CPU thread' if timing['clock'].startswith('process') else 'this machine'} the GRU / CNN time "
        f"ratio runs from {min(gru):.2f} to {max(gru):.2f} and the bi-GRU / CNN ratio from {min(bigru):.2f} to "
        f"{max(bigru):.2f} over lengths {lengths[0]}–{lengths[-1]}: "
        + ("the ratios hardly move with length, so both costs grow linearly with it and the RNN's step-by-step "
           "recurrence costs nothing extra here; the CNN's advantage in the seed's table is parallelism within a "
           "sentence, which needs parallel hardware (several cores or a GPU) to show. "
           if max(gru) / min(gru) < 1.5 else "")
        + f"At the same width the three-window CNN has the more parameters ({p['cnn']['non_embedding']:,} against "
        f"{p['gru']['non_embedding']:,} outside the embeddings: 12 W² weights per token position against the GRU's "
        "6 W²); \"fewer parameters\" holds for one window size (3 W²), not for Kim's three.", ""]
    first, last = timing["seconds"][lengths[0]]["ratios"], timing["seconds"][lengths[-1]]["ratios"]
    headline.append(f"CNN vs GRU (width {size['width']}): the GRU's forward+backward takes {_x(first['gru'], 1)} the "
                    f"CNN's at {lengths[0]} tokens and {_x(last['gru'], 1)} at {lengths[-1]} tokens; non-embedding "
                    f"parameters CNN {timing['parameters']['cnn']['non_embedding']:,} vs GRU "
                    f"{timing['parameters']['gru']['non_embedding']:,}.")
    return lines + _accuracy_lines(r, accuracy, headline)


def _accuracy_lines(r: dict, accuracy: dict, headline: list[str]) -> list[str]:
    lines = [f"Accuracy on the built-in Rotten Tomatoes snippets: the shipped recipes `cnn_rotten_tomatoes` and "
              f"`rnn_rotten_tomatoes` (bidirectional GRU) through `run_classification.main`, with a "
              f"{r['minutes']}-minute training budget each (the recipes are sized for several minutes).", ""]
    rows = []
    for arch, label in (("cnn", "CNN-rand (recipe)"), ("rnn", "bi-GRU (recipe)")):
        a = accuracy.get(arch)
        if not a:
            rows.append([label] + ["–"] * 6)
            continue
        rows.append([label, f"{a['parameters']:,}", a["train_steps"], f"{a['train_seconds']:.0f}",
                     _pct(a.get("validation_accuracy")), _pct(a.get("test_accuracy")),
                     _pct(a.get("test_majority_class_accuracy"))])
    lines += _table(["model", "parameters", "steps", "train s", "validation acc.", "test acc.", "majority class"],
                    rows)
    lines += [f"Published context (not like-for-like): {PUBLISHED['kim']}.", ""]
    if "cnn" in accuracy and "rnn" in accuracy:
        headline.append(f"Rotten Tomatoes test accuracy with {r['minutes']} min of training: CNN "
                        f"{_pct(accuracy['cnn'].get('test_accuracy'))}, "
                        f"bi-GRU {_pct(accuracy['rnn'].get('test_accuracy'))}.")
    return lines


def _activations(r: dict, out: Path, headline: list[str]) -> list[str]:
    runs = [x for x in r["runs"] if "error" not in x]
    o = r["overrides"]
    lines = [
        f"`MlpForSequenceClassification` on Rotten Tomatoes through `run_classification.main` with the "
        f"`mlp_rotten_tomatoes` recipe and `config_overrides` {o['embedding_size']}-d word vectors, "
        f"{o['hidden_size']} hidden units, unigrams only (`ngram_range` [1, 1]: a plain bag of words), dropout "
        f"{o['dropout']}; {r['minutes']} minutes of training each. With the identity the network is one affine map "
        "of the mean word vector at any depth, so depth 4 can only match depth 1.", "",
    ]
    rows = [[x["activation"], x["depth"], f"{x['parameters']:,}", x["train_steps"], _pct(x.get("validation_accuracy")),
             _pct(x.get("test_accuracy"))] for x in runs]
    lines += _table(["activation", "depth", "parameters", "steps", "validation acc.", "test acc."], rows)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    labels = [f"{x['activation']}\ndepth {x['depth']}" for x in runs]
    ax.bar(labels, [100 * x.get("test_accuracy", 0) for x in runs], color=["#999", "#bbb", "#4a7", "#47a"])
    low = min(100 * x.get("test_accuracy", 0) for x in runs)
    ax.set_ylim(max(0, low - 5), None)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, axis="y")
    lines += [f"![MLP accuracy by activation and depth]({_save(fig, out, 'activations.png')})", ""]
    by = {(x["activation"], x["depth"]): x.get("test_accuracy") for x in runs}
    if all(k in by and by[k] is not None for k in ACT_KEYS):
        lines += [f"Depth with the identity: {100 * (by[('identity', 4)] - by[('identity', 1)]):+.1f} points "
                  f"(depth 4 − depth 1). Non-linearity at depth 4 against the identity at depth 4: tanh "
                  f"{100 * (by[('tanh', 4)] - by[('identity', 4)]):+.1f}, relu "
                  f"{100 * (by[('relu', 4)] - by[('identity', 4)]):+.1f} points. One seed each: differences of "
                  "about a point are within run-to-run noise on 1,320 test snippets (one standard error ≈ 1.2 points).",
                  ""]
        headline.append("MLP test accuracy (identity d1 / identity d4 / tanh d4 / relu d4): " + " / ".join(
            _pct(by[k]) for k in ACT_KEYS) + ".")
    return lines


ACT_KEYS = [("identity", 1), ("identity", 4), ("tanh", 4), ("relu", 4)]
S2S_LABELS = {"none": "RNN, no attention", "bahdanau": "RNN + Bahdanau", "luong": "RNN + Luong",
              "transformer": "Transformer"}


def _attention(r: dict, out: Path, headline: list[str]) -> list[str]:
    runs = {k: v for k, v in r["runs"].items() if "error" not in v}
    samples = r["samples"]
    lines = [
        f"Grapheme-to-phoneme on CMUdict with the shipped recipes through `run_seq2seq.main`, "
        f"{r['minutes']} minutes of training each (the recipes are sized for {_recipe_minutes(runs)}), warm-up "
        f"steps scaled by the same factor, greedy decoding for all four (`--generation_num_beams 1`"
        f"{'; the RNN recipes score with beam search by default' if _beams(runs) else ''}). The pipeline scores "
        f"{samples['validation']} validation and {samples['test']} test words; it writes no per-word outputs, so "
        "the benchmark loads each saved model and generates for the same test words again (greedy, batched, up "
        "to 32 phonemes) to score them by word length. A word is right when the output equals any of its "
        "pronunciations.", "",
    ]
    rows = []
    for name, label in S2S_LABELS.items():
        x = runs.get(name)
        if not x:
            rows.append([label] + ["–"] * 7)
            continue
        rows.append([label, f"{x['parameters']:,}", x["train_steps"], f"{x['train_seconds']:.0f}",
                     _pct(x.get("validation_wer")), _pct(x.get("test_wer")), _pct(x.get("test_per")),
                     f"{_pct(x['regenerated']['wer'])} / {_pct(x['regenerated']['per'])}"])
    lines += _table(["model", "parameters", "steps", "train s", "validation WER", "test WER", "test PER",
                     "regenerated WER / PER"], rows)
    notes = []
    for name, x in runs.items():
        if x.get("test_wer") is not None and abs(x["test_wer"] - x["regenerated"]["wer"]) > 1e-9:
            notes.append(f"{S2S_LABELS[name]}: the pipeline's test WER ({_pct(x['test_wer'], 2)}) and the "
                         f"regenerated one ({_pct(x['regenerated']['wer'], 2)}) differ; the saved generation "
                         f"config's max_length is {x.get('saved_generation_max_length')} and "
                         f"{x.get('words_with_more_than_19_phonemes')} test words have more than 19 phonemes.")
    if notes:
        lines += ["Notes: " + " ".join(notes), ""]
    if runs and max(x["regenerated"]["wer"] for x in runs.values()) > 0.9:
        steps = sorted(x["train_steps"] for x in runs.values())
        epochs = sorted(x.get("train_epochs") or 0 for x in runs.values())
        lines += [f"**Under-trained:** with {r['minutes']} minutes the models took {steps[0]}–{steps[-1]} optimizer "
                  f"steps ({epochs[0]:.2f}–{epochs[-1]:.2f} epochs) and most words are still wrong, so these numbers "
                  "show the first minutes of training, not what each kind of attention can do; the recipes are sized "
                  "for about 24 minutes each (`python -m bench --only attention --seq2seq-minutes 24`, about two "
                  "hours on this machine). The phoneme error rate already separates the models.", ""]
    buckets = r["buckets"]
    rows = []
    for bucket in buckets:
        row, count = [bucket], None
        for name in S2S_LABELS:
            cell = next((b for b in runs.get(name, {}).get("by_length", []) if b["letters"] == bucket), None)
            if cell:
                count = cell["words"]
            row.append("–" if cell is None else f"{_pct(cell['wer'], 0)} / {_pct(cell['per'], 0)}")
        rows.append([row[0], count if count is not None else "–"] + row[1:])
    lines += ["WER / PER by word length (letters), same test words:", ""]
    lines += _table(["letters", "words"] + list(S2S_LABELS.values()), rows)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, label in S2S_LABELS.items():
        cells = runs.get(name, {}).get("by_length", [])
        if not cells:
            continue
        xs = [buckets.index(c["letters"]) for c in cells]
        axes[0].plot(xs, [100 * c["wer"] for c in cells], marker="o", label=label)
        axes[1].plot(xs, [100 * c["per"] for c in cells], marker="o", label=label)
    for ax, what in zip(axes, ("WER (%)", "PER (%)")):
        ax.set_xticks(range(len(buckets)), buckets)
        ax.set_xlabel("word length (letters)")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    lines += [f"![WER and PER by word length]({_save(fig, out, 'attention_by_length.png')})", ""]
    lines += [f"Published context (full training, full test sets): {PUBLISHED['g2p']}.", ""]
    if all(n in runs for n in S2S_LABELS):
        headline.append("CMUdict test WER after " + f"{r['minutes']} min each: " + ", ".join(
            f"{label} {_pct(runs[n]['regenerated']['wer'])}" for n, label in S2S_LABELS.items()) + ".")
    return lines


def _recipe_minutes(runs: dict) -> str:
    values = sorted({x.get("recipe_minutes") for x in runs.values() if x.get("recipe_minutes")})
    if not values:
        return "about 24"
    return f"{values[0]:g}" if values[0] == values[-1] else f"{values[0]:g} to {values[-1]:g}"


def _beams(runs: dict) -> bool:
    return any((x.get("recipe_num_beams") or 1) > 1 for x in runs.values())


def _threads_of(runs: dict) -> str:
    """'one thread' / 'N threads', from the --threads flag of the runs' lm_budget commands."""
    import re

    found = {m.group(1) for run in runs.values() if (m := re.search(r"--threads (\d+)", run.get("command", "")))}
    count = int(found.pop()) if len(found) == 1 else 1
    return "one thread" if count == 1 else f"{count} threads"


def _lm(r: dict, out: Path, headline: list[str]) -> list[str]:
    runs = {k: v for k, v in r["runs"].items() if "error" not in v}
    lines = [
        f"`bench/lm_budget.py` (its `main`, one model per call so that each has its own peak memory): "
        f"character-level Shakespeare with held-out plays, {r['minutes']} min of training per model, the same "
        "data order, AdamW with warm-up and cosine decay over the time budget, validation loss on the same "
        "blocks (evaluation time is not counted in the budget).", "",
    ]
    rows = [[name, f"{x['parameters']:,}", x["steps"], f"{x['tokens']:,}", f"{x['final_val_loss']:.3f}"]
            for name, x in runs.items()]
    lines += _table(["model", "parameters", "steps", "characters seen", "validation loss (nats/char)"], rows)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, x in runs.items():
        ax.plot([c[0] for c in x["curve"]], [c[2] for c in x["curve"]], marker=".", label=name)
    ax.set_xlabel("training seconds")
    ax.set_ylabel("validation loss (nats/char)")
    top = min(3.5, max(c[2] for x in runs.values() for c in x["curve"]))
    ax.set_ylim(top=top)
    ax.grid(alpha=0.3)
    ax.legend()
    lines += [f"![validation loss against training time]({_save(fig, out, 'lm_budget.png')})", ""]
    steps = sorted(x["steps"] for x in runs.values())
    if steps and steps[0] < 500:
        lines += [f"**Few steps:** in {r['minutes']} minutes on {_threads_of(runs)} the models took "
                  f"{steps[0]}–{steps[-1]} optimizer steps (the gated RNNs, with the most parameters, are the slowest "
                  "per step), so the ranking says how fast each one starts, per second of CPU, more than where it "
                  "ends; `lm_budget.py` is sized for 4 minutes per model "
                  "(`python -m bench --only lm --lm-minutes 4`).", ""]
    lines += [f"Published context (longer training, other data): {PUBLISHED['nanogpt']}.", ""]
    best = min(runs.items(), key=lambda kv: kv[1]["final_val_loss"])
    headline.append(f"Language models, {r['minutes']} min each: " + ", ".join(
        f"{n} {x['final_val_loss']:.2f}" for n, x in runs.items()) + f" nats/char (best: {best[0]}).")
    return lines


def _transformer_speed(r: dict, out: Path, headline: list[str]) -> list[str]:
    lines = [
        "The functions of `bench/bench_transformer_speed.py`: the hfnn `TransformerForCausalLM` and "
        "`transformers.GPT2LMHeadModel` built with the same vocabulary, width, depth, heads, feed-forward "
        f"size, context, GELU and no dropout; greedy generation from a {r['prompt_len']}-token prompt; "
        f"{r['clock']}; medians of alternating rounds. Ratio = hfnn speed / GPT-2 speed (> 1: hfnn is faster).",
        "",
    ]
    rows = [[x["size"], x["measurement"].replace(" tokens/s", ""), _x(x["hfnn"] / x["gpt2"])] for x in r["rows"]]
    lines += _table(["model size", "measurement (tokens/s)", "hfnn / GPT-2"], rows)
    lines += _table(["model size", "hfnn parameters", "GPT-2 parameters"],
                    [[p["size"], f"{p['hfnn']:,}", f"{p['gpt2']:,}"] for p in r["params"]])
    if r["cache_rows"]:
        lines += ["hfnn generation with the key/value cache against without it:", ""]
        lines += _table(["model size", "new tokens", "cached / uncached speed"],
                        [[c["size"], c["new_tokens"], _x(c["cached"] / c["uncached"], 1)] for c in r["cache_rows"]])
    train = [x for x in r["rows"] if x["measurement"].startswith("train")]
    gen = [x for x in r["rows"] if "cached" in x["measurement"]]
    headline.append("hfnn Transformer vs GPT2LMHeadModel: training speed " + ", ".join(
        _x(x["hfnn"] / x["gpt2"]) for x in train) + "; cached generation " + ", ".join(
        _x(x["hfnn"] / x["gpt2"]) for x in gen) + " (hfnn / GPT-2, > 1 = hfnn faster).")
    return lines


def _rnn_overhead(r: dict, out: Path, headline: list[str]) -> list[str]:
    s = r["size"]
    lines = [
        f"`RnnForCausalLM` against a plain `nn.Embedding` + `nn.LSTM`/`nn.GRU` + `nn.Linear` holding the same "
        f"weights (vocabulary {s['vocab']:,}, {s['embedding']}-d embeddings, {s['hidden']} units, "
        f"{s['layers']} layer(s)"
        + ("" if s["vocab"] != 10000 else ": pytorch/examples' word_language_model defaults")
        + "). Training step: forward, "
        f"cross-entropy, backward and AdamW on a batch of {s['batch']} x {s['bptt']} tokens "
        f"({s['steps']} steps per measurement, {s['repeats']} alternating rounds). Generation: {s['new_tokens']} "
        "greedy tokens from a 16-token prompt, hfnn's `generate` with its state cache against a hand-written "
        f"loop carrying (h, c) ({s['gen_repeats']} rounds). {r['clock']}. Ratio = hfnn time / plain time, "
        "median of the per-round ratios [quartiles].", "",
    ]
    rows = []
    for x in r["rows"]:
        c = x["check"]
        same = ("identical" if c["logits_equal"] else f"max diff {c['max_abs_logit_diff']:.1e}")
        rows.append([x["rnn_type"], f"{x['parameters']:,}", same, "yes" if c["greedy_tokens_equal"] else "NO",
                     f"{_x(x['train']['median'], 3)} [{x['train']['q1']:.3f}–{x['train']['q3']:.3f}]",
                     f"{_x(x['generate']['median'], 2)} [{x['generate']['q1']:.2f}–{x['generate']['q3']:.2f}]"])
    lines += _table(["cell", "parameters", "logits vs plain", "same greedy tokens", "train step time ratio",
                     "generation time ratio"], rows)
    target = r["target"]
    for x in r["rows"]:
        verdicts = []
        for what in ("train", "generate"):
            q = x[what]
            over = q["median"] - 1
            if over <= target:
                verdict = f"within the {100 * target:.0f} % target"
            elif q["q1"] - 1 > target:
                verdict = f"over the {100 * target:.0f} % target, beyond the run-to-run spread"
            else:
                verdict = (f"the median is over the {100 * target:.0f} % target but the quartiles of the rounds "
                           f"({q['q1']:.2f}–{q['q3']:.2f}) include it: not distinguishable here")
            verdicts.append(f"{'training' if what == 'train' else 'generation'} {100 * over:+.1f} % ({verdict})")
        lines.append(f"- {x['rnn_type']}: " + "; ".join(verdicts) + ".")
        if "per_token" in x:
            t = {k: v["median"] for k, v in x["per_token"].items()}
            lines.append(
                f"  Per generated token, relative to the plain loop (1.00): hfnn's `generate` {t['hfnn']:.2f}; one "
                f"call of the plain module alone {t['plain_step']:.2f}; one call of hfnn's full forward (one token, "
                f"cache, mask, last logits) {t['hfnn_step']:.2f}. Greedy decoding and sampling do not call that "
                "forward per token: `RnnForCausalLM._sample` feeds each new token through embedding -> recurrence "
                "-> output layer directly (transformers' generic loop remains for what it does not cover).")
        if x.get("forward_parts"):
            lines.append("  Pieces of hfnn's forward, timed alone, as a share of the plain loop's time per token: "
                         + "; ".join(f"{p['piece']} {100 * p['relative']:.1f} %" if "relative" in p
                                     else f"{p['piece']}: not measured ({p['error']})" for p in x["forward_parts"])
                         + ".")
    lines.append("- Before the direct decoding loop (the same benchmark at commit 887bf4e, this machine): generation "
                 "+33.5 % (lstm) and +61.0 % (gru), of which 17 and 51 points were the per-token work of "
                 "`generate`'s generic loop (rebuilding inputs, masks and output objects) and the rest hfnn's full "
                 "forward per token.")
    lines.append("")
    for x in r["rows"]:
        for what, profile in x.get("profiles", {}).items():
            h, p = profile["hfnn"], profile["plain"]
            per = s["new_tokens"] if what == "generate" else 1
            unit = "per generated token" if what == "generate" else "per training step"
            lines += [f"Profile of {x['rnn_type']} {'generation' if what == 'generate' else 'training step'} "
                      f"(torch.profiler for aten ops, cProfile for Python), {unit}; op counts are exact, the times "
                      "are wall-clock times of single runs on a shared machine:", ""]
            lines += _table(
                ["", "aten op calls", "time in aten ops (ms)", "wall under torch.profiler (ms)",
                 "of which outside aten ops (ms)", "wall under cProfile (ms)"],
                [[name, f"{q['aten_calls'] / per:.0f}", f"{q['aten_self_ms'] / per:.3f}",
                  f"{q['profiled_wall_ms'] / per:.3f}", f"{(q['profiled_wall_ms'] - q['aten_self_ms']) / per:.3f}",
                  f"{q['cprofile_wall_ms'] / per:.3f}"] for name, q in (("hfnn", h), ("plain", p))])
            if profile.get("extra_ops"):
                lines += [f"aten ops that hfnn calls more often than the plain model ({unit}):", ""]
                lines += _table(["op", "hfnn", "plain"], [[f"`{o['op']}`", f"{o['hfnn']:.0f}", f"{o['plain']:.0f}"]
                                                          for o in profile["extra_ops"]])
            lines += [f"hfnn's most expensive aten ops ({'whole generation' if per > 1 else 'one step'}):", ""]
            lines += _table(["op", "calls", "self ms"],
                            [[f"`{o['op']}`", o["calls"], f"{o['self_ms']:.2f}"] for o in h["top_ops"]])
            lines += ["hfnn's Python functions by own time (cProfile):", ""]
            lines += _table(["function", "calls", "own ms"],
                            [[f"`{f['function']}`", f["calls"], f"{f['tottime_ms']:.2f}"] for f in h["top_python"]])
    gens = ", ".join(f"{x['rnn_type']} {100 * (x['generate']['median'] - 1):+.0f} %" for x in r["rows"])
    trains = ", ".join(f"{x['rnn_type']} {100 * (x['train']['median'] - 1):+.1f} %" for x in r["rows"])
    headline.append(f"HF wrapping of the RNN LM vs plain PyTorch (target ≤ {100 * target:.0f} %): training step "
                    f"{trains}; greedy generation {gens}.")
    return lines


def _generation(r: dict, out: Path, headline: list[str]) -> list[str]:
    s = r["size"]
    lengths = [str(n) for n in s["lengths"]]
    lines = [
        f"Greedy generation from a 16-token prompt, `generate(use_cache=True/False)`: an LSTM LM "
        f"({s['layers']} x {s['width']}, {r['parameters']['rnn']:,} parameters) whose cache is its recurrent "
        f"state, and a Transformer LM ({s['layers']} layer(s), {s['width']} wide, {r['parameters']['transformer']:,} "
        f"parameters) with a key/value cache. Time per new token relative to the same model's cached "
        f"{lengths[0]}-token run ({r['clock']}, medians of {s['repeats']} interleaved rounds"
        + (f"; uncached {', '.join(k for k in r['uncached_repeats'])}-token runs: "
           f"{', '.join(str(v) for v in r['uncached_repeats'].values())} round(s)" if r["uncached_repeats"] else "")
        + ").", "",
    ]
    rows = []
    labels = {"rnn|cached": "LSTM, state cache", "rnn|uncached": "LSTM, no cache",
              "transformer|cached": "Transformer, KV cache", "transformer|uncached": "Transformer, no cache"}
    for key, label in labels.items():
        model = key.split("|")[0]
        base = r["per_token_s"][f"{model}|cached"][lengths[0]]
        values = r["per_token_s"][key]
        rows.append([label] + [_x(values[n] / base) for n in lengths] + [_x(values[lengths[-1]] / values[lengths[0]])])
    lines += _table(["model"] + [f"{n} new tokens" for n in lengths] + [f"growth {lengths[0]} → {lengths[-1]}"], rows)
    checks = r["cached_equals_uncached"]
    lines += ["Cached and uncached generation give the same tokens: " + ", ".join(
        f"{k} {'yes' if v else 'NO'}" for k, v in checks.items()) + ".", ""]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    xs = [int(n) for n in lengths]
    for key, label in labels.items():
        base = r["per_token_s"][f"{key.split('|')[0]}|cached"][lengths[0]]
        ax.plot(xs, [r["per_token_s"][key][n] / base for n in lengths], marker="o",
                linestyle="-" if "uncached" not in key else "--", label=label)
    _log_axes(ax, xs)
    ax.set_xlabel("new tokens")
    ax.set_ylabel(f"time per token\n(relative to cached, {lengths[0]} tokens)")
    ax.legend(fontsize=8)
    lines += [f"![time per generated token]({_save(fig, out, 'generation_per_token.png')})", ""]
    growth = {k: r["per_token_s"][k][lengths[-1]] / r["per_token_s"][k][lengths[0]] for k in labels}
    headline.append(f"Per-token generation time from {lengths[0]} to {lengths[-1]} new tokens: LSTM with state cache "
                    f"{_x(growth['rnn|cached'])}, without {_x(growth['rnn|uncached'])}; Transformer with KV cache "
                    f"{_x(growth['transformer|cached'])}, without {_x(growth['transformer|uncached'])}.")
    return lines


def _memory(saved: dict, kept_rows: list[str] = ()) -> list[str]:
    rows = []
    for name, record in saved.items():
        for m in record.get("memory", []):
            rows.append([name, m["run"], _mb(m["peak_mb"]), _mb(m["start_mb"]),
                         _mb(m["peak_mb"] - m["start_mb"]) if m["start_mb"] is not None else "–", f"{m['wall_s']:.0f}"])
    rows += [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in kept_rows]
    if not rows:
        return ["_No training run recorded._", ""]
    base = next((r.get("preload", {}) for r in saved.values()), {})
    lines = [
        "Peak resident memory (`ru_maxrss`) of each training run, each in its own child process. The children "
        "are forked from the benchmark process after it has imported torch, transformers, datasets and hfnn "
        f"and loaded the corpora ({', '.join(base.get('corpora', [])) or 'none'}), so every run starts from "
        "that resident set; *growth* is what the run added on top of it. A standalone `python -m "
        "hfnn.pipelines.run_x` imports the same libraries, so its peak is close to the peak here (minus the "
        "corpora it does not use).", "",
    ]
    return lines + _table(["benchmark", "run", "peak RSS (MB)", "at start (MB)", "growth (MB)", "wall s"], rows,
                          align="llrrrr")


def _baselines(r: dict, out: Path, headline: list[str]) -> list[str]:
    lines = ["The models a user would otherwise pick, trained and scored on the same rows as hfnn's recipes "
             "(`bench/baselines.py`), one thread.", ""]
    tfidf = r.get("tfidf", {})
    if "error" in tfidf:
        lines += ["**TF-IDF baseline failed**:", "", "```", tfidf["error"][-800:], "```", ""]
    elif tfidf:
        rows = tfidf["rows"]
        lines += [f"Rotten Tomatoes ({rows['train']:,} train / {rows['validation']:,} validation / "
                  f"{rows['test']:,} test snippets): scikit-learn `TfidfVectorizer(sublinear_tf=True)` + "
                  "`LogisticRegression`, C chosen on validation.", ""]
        lines += _table(["n-grams", "C", "features", "validation", "test", "CPU s (all C values)"], [
            [f"{run['ngram_range'][0]}–{run['ngram_range'][1]}", f"{run['C']:g}", f"{run['features']:,}",
             _pct(run["validation_accuracy"]), _pct(run["test_accuracy"]), f"{run['cpu_s']:.1f}"]
            for run in tfidf["runs"]])
        best = max(tfidf["runs"], key=lambda run: run["validation_accuracy"])
        headline.append(f"TF-IDF logistic regression on Rotten Tomatoes (n-grams {best['ngram_range'][0]}–"
                        f"{best['ngram_range'][1]}, chosen on validation): {_pct(best['test_accuracy'])} test accuracy "
                        f"in {best['cpu_s']:.0f} CPU s.")
    lines += _best_classifier(r.get("hfnn_classifier"), headline)
    lines += _ngram_cv(r.get("ngram_cv"), headline)
    g2p = r.get("phonetisaurus", {})
    if "error" in g2p:
        lines += ["**Phonetisaurus baseline failed**:", "", "```", g2p["error"][-800:], "```", ""]
    elif "skipped" in g2p:
        lines += [f"Phonetisaurus: not run ({g2p['skipped']}).", ""]
    elif g2p:
        lines += [f"CMUdict G2P: Phonetisaurus {g2p.get('version') or ''} trained on {g2p['train_pronunciations']:,} "
                  f"training pronunciations ({g2p['train_words']:,} words), scored on {g2p['test_words']:,} test "
                  "words with hfnn's `wer` / `per` metrics (right when any reference matches).", ""]
        lines += _table(["model", "test WER", "test PER", "training s", "prediction s", "words without answer"], [
            ["Phonetisaurus", _pct(g2p["wer"]), _pct(g2p["per"]), f"{g2p['train_s']:.0f}", f"{g2p['predict_s']:.0f}",
             g2p["unanswered"]]])
        headline.append(f"Phonetisaurus on CMUdict: {_pct(g2p['wer'])} WER / {_pct(g2p['per'])} PER after "
                        f"{g2p['train_s'] / 60:.1f} min of training.")
    return lines


def _best_classifier(run: dict | None, headline: list[str]) -> list[str]:
    """hfnn's best Rotten Tomatoes recipe, trained in the same run as the logistic regression."""
    if not run:
        return []
    if "error" in run:
        return [f"**hfnn's `{run.get('recipe')}` failed**:", "", "```", run["error"][-800:], "```", ""]
    test = _pct(run["test_accuracy"])
    headline.append(f"hfnn's `{run['recipe']}` on Rotten Tomatoes: {test} test accuracy after "
                    f"{run['train_seconds']:.0f} s of training.")
    return [f"Beside them, hfnn's best recipe, `{run['recipe']}`, trained in the same run (its command is under "
            "Commands):", "",
            *_table(["recipe", "parameters", "epochs", "validation", "test", "training s"], [
                [f"`{run['recipe']}`", f"{run['parameters']:,}", f"{run['train_epochs']:.1f}",
                 _pct(run["validation_accuracy"]), test, f"{run['train_seconds']:.0f}"]])]


def _ngram_cv(cv: dict | None, headline: list[str]) -> list[str]:
    """The recipe's n-gram ranges compared by k-fold cross-validation on the training split."""
    if not cv or not cv.get("runs"):
        return []
    folds, held = cv["folds"], cv["held_out"]
    lines = [f"How the recipe's n-gram range is chosen without the validation and test splits: {folds}-fold "
             f"cross-validation on the training split (held-out folds of {min(held):,}–{max(held):,} snippets), "
             f"`{cv['recipe']}` trained with each range on the other folds and scored on the held-out one.", ""]
    rows, means = [], {}
    for run in cv["runs"]:
        name = f"{run['ngram_range'][0]}–{run['ngram_range'][1]}"
        scores = run["fold_accuracy"]
        done = [a for a in scores if a is not None]
        means[name] = sum(done) / len(done) if len(done) == len(scores) else None
        rows.append([name, *(_pct(a) if a is not None else "failed" for a in scores),
                     _pct(means[name]) if means[name] is not None else "–"])
    lines += _table(["n-grams", *(f"fold {k}" for k in range(1, folds + 1)), "mean"], rows)
    if len(cv["runs"]) == 2 and None not in means.values():
        (a, first), (b, second) = [(n, r["fold_accuracy"]) for n, r in zip(means, cv["runs"])]
        wins = sum(x > y for x, y in zip(first, second))
        headline.append(f"`{cv['recipe']}` n-grams by {folds}-fold cross-validation on the training split: {a} "
                        f"{_pct(means[a])}, {b} {_pct(means[b])} ({a} ahead on {wins} of {folds} folds).")
    return lines


def _windows(r: dict) -> str:
    """'tuned 75 s, 1 thread 35 s, ...' from the bench's record (older records have one window length)."""
    if "windows_s" not in r:
        return f"{r['window_s']:.0f} s each"
    return ", ".join(f"{name} {w:.0f} s" for name, w in r["windows_s"].items())


def _threads(r: dict, out: Path, headline: list[str]) -> list[str]:
    res = r["results"]
    ref = r["quiet_reference"]
    lines = [f"The README's main-job model ({r.get('model', 'GRU 2 x 256')}, batch {r['batch'][0]} x {r['batch'][1]} "
             f"characters), training steps per second, settings alternated, median of {r['rounds']} rounds of windows "
             f"({_windows(r)}); the tuned setting is one training run per machine load, cut into its windows. "
             "'one busy core' runs beside a process spinning on one core. *vs quiet best* is against the faster "
             "fixed setting on the quiet machine. The tuner (`hfnn.training.cpu_threads.ThreadTuner`, used by the "
             "training pipelines) reads the CPU time other programs use, never times a thread count they leave no "
             "room for, and pays here for its start and any timing steps.", ""]
    rows = []
    for load, settings in res.items():
        for setting, v in settings.items():
            chosen = ", ".join(str(c) for c in v.get("chosen", [])) if setting == "tuned" else ""
            rows.append([load, setting, f"{v['steps_per_s']:.2f}", _pct(v["steps_per_s"] / ref, 0),
                         chosen or "–"])
    lines += _table(["machine", "threads", "steps/s", "vs quiet best", "tuner's choice"], rows, align="llrrl")
    busy, quiet = res["one busy core"], res["quiet"]
    headline.append(
        f"Main-job GRU beside one busy core: tuned threads keep {_pct(busy['tuned']['steps_per_s'] / ref, 0)} of the "
        f"quiet speed (2 fixed threads {_pct(busy['2 threads']['steps_per_s'] / ref, 0)}); quiet, tuned "
        f"{_pct(quiet['tuned']['steps_per_s'] / ref, 0)}.")
    return lines


def _yes(value: bool | None) -> str:
    return "not known" if value is None else ("yes" if value else "no")


def _precision(r: dict, out: Path, headline: list[str]) -> list[str]:
    s, hw = r["size"], r["hardware"]
    lengths = "/".join(str(n) for n in s["lengths"])
    lines = [
        "What `--bf16 true` buys on the CPU: `python -m hfnn.pipelines.run_seq2seq RECIPE --bf16 true --use_cpu true` "
        "runs each training step's forward (and the loss computed in it) under `torch.autocast(\"cpu\", "
        "dtype=torch.bfloat16)`, the backward and the optimizer step outside it, the weights staying float32 "
        "(transformers accepts `--bf16` without a GPU only with `--use_cpu true`). Measured here: that training "
        "step (forward with labels, backward, AdamW, `zero_grad`) of the G2P recipes' models — the Transformer "
        "encoder-decoders of `transformer_seq2seq_cmudict_long` (dropout 0.1) and `transformer_seq2seq_cmudict` (no "
        "dropout) and the GRU encoder-decoder of `rnn_seq2seq_cmudict` with Luong attention (no input feeding) — on "
        "a batch of "
        f"{s['batch']} random words of {lengths} letters and phonemes (CMUdict's vocabularies), float32 and bfloat16 "
        f"each on its own copy of the same initial weights, {s['steps']} steps per measurement, {s['repeats']} "
        f"alternating rounds, {r['clock']}. Speed-up = bf16 steps/s / float32 steps/s, median of the per-round ratios "
        "[quartiles] (> 1: bf16 faster).", "",
        "Any speed-up comes from the CPU's bfloat16 instructions (AMX tiles, AVX-512 BF16), used through oneDNN; on "
        "a CPU without them, measure before training with `--bf16`. This CPU: "
        f"AMX tiles {_yes(hw.get('amx_tile'))}, AVX-512 BF16 {_yes(hw.get('avx512_bf16'))}, oneDNN "
        f"{_yes(hw.get('mkldnn'))}"
        + (f", vector capability {hw['cpu_capability']}" if hw.get("cpu_capability") else "") + ".", "",
        "Attention kernel: without attention dropout PyTorch runs `scaled_dot_product_attention` on the CPU with "
        "its flash-attention kernel, which in bfloat16 is several times slower than its plain (math) kernel at "
        "these sizes; with dropout it takes the plain one. hfnn's Transformer asks for the plain kernel in half "
        "precision on the CPU. The dropout-free model's bf16 copy is also run a third time with the flash kernel "
        "(\"bf16, flash kernel\"); \"plain vs flash\" = steps/s with the plain kernel / steps/s with the flash one, "
        "per round.", "",
    ]

    def ratio(x):
        return f"{_x(x['median'])} [{x['q1']:.2f}–{x['q3']:.2f}]"

    rows = [[x["model"], f"{x['parameters']:,}", f"{x['fp32_ms']:.1f}", f"{x['bf16_ms']:.1f}", ratio(x["speedup"]),
             f"{x['bf16_flash_ms']:.1f}" if "bf16_flash_ms" in x else "—",
             ratio(x["kernel_speedup"]) if "kernel_speedup" in x else "—"] for x in r["rows"]]
    lines += _table(["model", "parameters", "float32 ms/step", "bf16 ms/step", "bf16 speed-up",
                     "bf16, flash kernel ms/step", "plain vs flash"], rows)
    headline.append(f"bfloat16 autocast vs float32 training steps on this CPU (AMX {_yes(hw.get('amx_tile'))}): "
                    + ", ".join(f"{x['model']} {_x(x['speedup']['median'])}" for x in r["rows"])
                    + " (> 1 = bf16 faster)"
                    + "".join(f"; the plain attention kernel vs the flash one in bf16, {x['model']}: "
                              f"{_x(x['kernel_speedup']['median'])}" for x in r["rows"] if "kernel_speedup" in x)
                    + ".")
    return lines


SECTIONS = [
    ("cnn_rnn", "1. Seed claim: CNN vs RNN", _cnn_rnn),
    ("activations", "2. Activation functions and depth", _activations),
    ("attention", "3. Attention in seq2seq (CMUdict grapheme-to-phoneme)", _attention),
    ("lm", "4. Language models under the same time budget", _lm),
    ("transformer_speed", "5. Transformer LM vs GPT2LMHeadModel: speed", _transformer_speed),
    ("rnn_overhead", "6. RNN LM vs plain PyTorch: the cost of the Hugging Face wrapping", _rnn_overhead),
    ("generation", "7. Generation cost against the number of new tokens", _generation),
    ("baselines", "8. Baselines a user would pick instead", _baselines),
    ("threads", "9. Training speed beside a busy core", _threads),
    ("onnx", "10. ONNX Runtime vs PyTorch inference", onnx_speed.render),
    ("precision", "12. Reduced precision on the CPU", _precision),
    ("streaming", "13. Start-up cost against corpus size: map-style vs streaming", streaming.render),
    ("deployment", "14. Deployment: int8 and ONNX on the CPU", deployment.render),
]
MEMORY_TITLE = "11. Peak memory of the training runs"  # among the sections, in number order


def write(out: Path, saved: dict, run: dict) -> Path:
    """Writes OUT/RESULTS.md (and the PNGs beside it) from the saved benchmark records."""
    if saved:  # describe the run that produced most of the records (sections from other runs say so)
        records = sorted(saved.values(), key=lambda r: r["started"])
        counts = {}
        for r in records:
            counts[r["command"]] = counts.get(r["command"], 0) + 1
        main_command = max(counts, key=lambda c: (counts[c], c == run["command"])).strip()
        mine = [r for r in records if r["command"].strip() == main_command]
        run = {**run, "command": main_command, "started": mine[0]["started"],
               "wall_s": sum(r["wall_s"] for r in mine) + mine[0].get("preload", {}).get("seconds", 0),
               "load_average_end": mine[-1].get("load_average_end", run.get("load_average_end"))}
    machine = next((r["machine"] for r in saved.values() if "machine" in r), {})
    minutes = next((r["minutes"] for r in saved.values() if "minutes" in r), {})
    quick = run["quick"] if run["selected"] else any(r.get("mode") == "quick" for r in saved.values())
    head = [
        "# hfnn benchmarks",
        "",
        f"Generated by `{run['command']}` (from the repository root), started {run['started'][:16].replace('T', ' ')}, "
        f"{run['wall_s'] / 60:.1f} min." + (" **Quick mode: tiny models and data, a few steps; the numbers only show "
                                             "that the benchmarks run.**" if quick else ""),
        "",
        "Speeds are ratios against a reference measured in the same process (alternating A B A B, medians of "
        "several rounds), never absolute times; with one thread the clock is the process's CPU time, which other "
        "jobs on a shared machine barely disturb. Accuracies come from short time budgets "
        + (f"({', '.join(f'{k} {v} min' for k, v in minutes.items())} per run) " if minutes else "")
        + "on a shared CPU: they show how the models compare after equal training time, not what they reach "
        "when trained to convergence. Nothing here asserts anything about time.",
        "",
        "## Machine",
        "",
    ]
    if machine:
        load_end = run.get("load_average_end")
        head += _table(["", ""], [
            ["CPU", f"{machine['cpu']}, {machine['logical_cpus']} logical CPUs ({machine['usable_cpus']} usable), "
                    f"{machine.get('memory_gb', '?')} GB RAM"],
            ["torch threads per job", machine["torch_threads"]],
            ["load average (1, 5, 15 min)", f"{machine['load_average_start']} at start, {load_end} at the end"],
            ["software", f"Python {machine['python']}, torch {machine['torch']}, "
                         f"transformers {machine['transformers']}, datasets {machine['datasets']}, "
                         f"tokenizers {machine['tokenizers']}"],
            ["platform", machine["platform"]],
            ["hfnn commit", f"{machine['commit']}{' + uncommitted changes' if machine['dirty'] else ''}"],
        ], align="ll")
    previous = _previous_report(out / "RESULTS.md")
    fresh = [name for name, _, _ in SECTIONS if name in saved]
    kept = [name for name, title, _ in SECTIONS
            if name not in saved and previous["sections"].get(_section_key(title))]
    if len(kept) > len(fresh) and previous["sections"].get("machine"):
        # most sections stay from the last full run: so do its header and machine table; the rerun
        # sections say in their stamp which command, machine and load produced them
        head = previous["preamble"] + ["## Machine", ""] + previous["sections"]["machine"]
        run = {**run, "command": previous["command"] or run["command"], "describe_machine": True}
    headline: list[tuple[str, str]] = []  # (benchmark, line)
    body: list[str] = []
    kept_memory = [row for row in previous["memory"] if row.strip().strip("|").split("|")[0].strip() not in saved]
    memory = [f"## {MEMORY_TITLE}", ""] + _memory(saved, kept_memory)
    for name, title, render in SECTIONS:
        if memory and _number(title) > _number(MEMORY_TITLE):
            body += memory
            memory = []
        body += [f"## {title}", ""]
        record = saved.get(name)
        if record is None:
            kept = previous["sections"].get(_section_key(title))
            if kept:  # not run this time: the last report's section stays as it was
                body += kept
                headline += [(name, line) for line in previous["headline"].get(name, [])]
            else:
                body += ["_Not run (run `python -m bench --only " + name + "`)._", ""]
            continue
        body += [_stamp(record, run), ""]
        if "error" in record and "result" not in record:
            body += ["**Failed**:", "", "```", record["error"][-1500:], "```", ""]
            continue
        if "error" in record.get("result", {}):
            body += ["**Failed**:", "", "```", record["result"]["error"][-1500:], "```", ""]
            continue
        lines: list[str] = []
        try:
            body += render(record["result"], out, lines)
        except Exception as err:  # a partial record: say so rather than fail the whole report
            body += [f"**Could not render** ({type(err).__name__}: {err}).", ""]
        headline += [(name, line) for line in lines]
        if "error" in record:
            body += ["**Partly failed**:", "", "```", record["error"][-1500:], "```", ""]
    body += memory
    known = {_section_key(title) for _, title, _ in SECTIONS} | {_section_key(MEMORY_TITLE)}
    for key, lines in previous["sections"].items():  # sections written by other tools (e.g. mutation testing)
        if key not in known and key not in ("machine", "headline numbers", "commands"):
            body += [f"## {previous['titles'][key]}", ""] + lines
    commands = ["## Commands", "", "The whole run, from the repository root:", "", "```", run["command"], "```", "",
                "One benchmark: `python -m bench --only NAME` with NAME in " + ", ".join(
                    f"`{n}`" for n, _, _ in SECTIONS) + " (add `--quick` for the tiny version)."]
    repo = str(Path(__file__).resolve().parent.parent) + os.sep
    pipeline_commands = [x["command"].replace(repo, "") for name, record in saved.items()
                         for x in _training_runs(name, record.get("result", {})) if "command" in x]
    if run.get("describe_machine"):  # the kept sections' training commands stay listed
        old = previous["sections"].get("commands", [])
        pipeline_commands = [line for line in old if line.startswith("python ") and "python -m bench" not in line
                             and line not in pipeline_commands] + pipeline_commands
    if pipeline_commands:
        commands += ["Each training run is the same as this command (the benchmark calls the pipeline's or "
                     "`lm_budget.py`'s `main` with these arguments):", "", "```"] + pipeline_commands + ["```"]
    commands += ["", "Logs, saved models and JSON results of the last run: `" + _shown_path(out / "out")
                 + "/` (not committed).", ""]
    summary = ["## Headline numbers", ""] + [f"- {h} <!-- {name} -->" for name, h in headline] + [""]
    path = out / "RESULTS.md"
    path.write_text("\n".join(head + summary + body + commands))
    return path


def _number(title: str) -> int:
    """A section's number (``"11. Peak memory ..."`` -> 11)."""
    return int(re.match(r"\d+", title).group())


def _section_key(title: str) -> str:
    """A section's identity across renumbering: its title without the leading number."""
    return re.sub(r"^\d+\.\s*", "", title).strip().lower()


def _previous_report(path: Path) -> dict:
    """The sections, tagged headline lines and memory rows of an existing RESULTS.md, so that a run of
    some benchmarks keeps the others' last results (their JSON records are not kept in the repository)."""
    found = {"sections": {}, "titles": {}, "headline": {}, "memory": [], "preamble": [], "command": None}
    if not path.is_file():
        return found
    key = None
    for line in path.read_text(encoding="utf-8").splitlines():
        generated = re.match(r"Generated by `([^`]+)`", line)
        if key is None and generated:
            found["command"] = generated.group(1).strip()
        if line.startswith("## "):
            key = _section_key(line[3:])
            found["titles"][key] = line[3:].strip()
            found["sections"][key] = []
            continue
        if key is None:
            found["preamble"].append(line)
            continue
        found["sections"][key].append(line)
        tagged = re.fullmatch(r"- (.*) <!-- (\w+) -->", line)
        if key == "headline numbers" and tagged:
            found["headline"].setdefault(tagged.group(2), []).append(tagged.group(1))
        if key == _section_key(MEMORY_TITLE) and line.startswith("| ") and not re.match(r"\| (benchmark|-)", line):
            found["memory"].append(line)
    for key, lines in list(found["sections"].items()):
        while lines and not lines[0].strip():
            lines.pop(0)
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines or (len(lines) == 1 and lines[0].startswith("_Not run")):
            del found["sections"][key]  # nothing measured there to keep
            continue
        lines.append("")
    return found


def _shown_path(path: Path) -> str:
    repo = Path(__file__).resolve().parent.parent
    try:
        return str(path.resolve().relative_to(repo))
    except ValueError:
        return str(path)


def _training_runs(name: str, result: dict):
    if name == "cnn_rnn":
        yield from result.get("accuracy", {}).values()
    elif name == "activations":
        yield from result.get("runs", [])
    elif name in ("attention", "lm"):
        yield from result.get("runs", {}).values()
    elif name == "baselines" and result.get("hfnn_classifier"):
        yield result["hfnn_classifier"]
