"""The quality cost of int8 on trained models, on the full test splits: short training runs of the shipped recipes
(the CNN classifier on Rotten Tomatoes, the GRU character LM on Shakespeare, both G2P encoder-decoders on CMUdict),
then test accuracy, perplexity and greedy WER/PER (with and without stress marks) of PyTorch float32, ONNX Runtime
int8 and PyTorch int8, and Phonetisaurus trained on the same training pronunciations, scored on the same test words
with the same metrics. The models are far from the recipes' full training (a minute or so each): the numbers are the
int8 *cost*, int8 against float32 of the same weights, not the recipes' quality (bench section "Recipe runs")."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

__all__ = ["QUALITY_MINUTES", "quality_job", "render_quality"]

# training budget (minutes) of each run in full mode
QUALITY_MINUTES = {"cnn_rotten_tomatoes": 0.75, "rnn_shakespeare_char": 0.5, "rnn_seq2seq_cmudict": 3.0,
                   "transformer_seq2seq_cmudict": 3.0}
G2P_METRICS = ("wer", "per", "wer_nostress", "per_nostress")


def _session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _train(task: str, recipe: str, out_dir: Path, minutes: float, quick: bool) -> dict:
    from bench.seed_claims import _keep, pipeline_options
    from hfnn.pipelines.common import run_pipeline

    extra = {"save_strategy": "no", "max_eval_samples": 200, "eval_strategy": "no", "load_best_model_at_end": False}
    if task == "seq2seq":
        extra.update({"num_samples": 1, "num_attention_examples": 0, "max_test_samples": 50,
                      "generation_num_beams": 1})
    quick_extra = {"max_train_samples": 300, "per_device_train_batch_size": 16}
    start = time.monotonic()
    run = run_pipeline(task, recipe, **pipeline_options(out_dir, minutes, quick, extra=extra, quick_extra=quick_extra))
    results = _keep(run.results)
    return {"train_seconds_wall": time.monotonic() - start, "train_steps": results.get("train_steps"),
            "parameters": results.get("parameters"), "minutes": minutes}


def _variants(folder: Path, model):
    """(PyTorch int8 model, ONNX int8 session, ONNX fp32 session) of a saved, trained model."""
    from hfnn.sharing import export, quantize

    result = export.export_onnx(model, folder / "model.onnx", quantize="int8")
    return quantize.quantize_torch(model).model, _session(result.quantized.path), result.quantized


def _classifier(folder: Path, quick: bool) -> dict:
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hfnn.data.corpora import load_corpus

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    test = load_corpus("rotten_tomatoes")["test"]
    texts, labels = list(test["text"]), np.asarray(test["label"])
    if quick:
        texts, labels = texts[:64], labels[:64]
    torch_int8, session, check = _variants(folder, model)
    predicted = {"torch_fp32": [], "onnx_int8": [], "torch_int8": []}
    for i in range(0, len(texts), 64):
        batch = tokenizer(texts[i : i + 64], truncation=True, max_length=128, padding=True, return_tensors="pt")
        with torch.inference_mode():
            predicted["torch_fp32"].append(model(**batch).logits.argmax(-1).numpy())
            predicted["torch_int8"].append(torch_int8(**batch).logits.argmax(-1).numpy())
        feeds = {"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()}
        predicted["onnx_int8"].append(session.run(None, feeds)[0].argmax(-1))
    predicted = {k: np.concatenate(v) for k, v in predicted.items()}
    return {"accuracy": {k: float((v == labels).mean()) for k, v in predicted.items()},
            "int8_agreement": {k: float((v == predicted["torch_fp32"]).mean()) for k, v in predicted.items()},
            "examples": len(labels), "export_check": check.summary()}


def _lm(folder: Path, quick: bool, block_size: int = 128) -> dict:
    import math

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hfnn.data.corpora import join_documents, lm_blocks, open_corpus
    from hfnn.sharing import export

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ds = join_documents(open_corpus("shakespeare").concatenated(["test"], "eval"))["eval"]
    ends = list(ds["ends_document"]) if "ends_document" in ds.column_names else None
    blocks = lm_blocks(tokenizer, list(ds["text"]), block_size, ends_document=ends, keep_short=True)
    blocks = [b for b in blocks if len(b) == block_size] or blocks
    if quick:
        blocks = blocks[:8]
    torch_int8, session, check = _variants(folder, model)
    nll = {"torch_fp32": 0.0, "onnx_int8": 0.0, "torch_int8": 0.0}
    tokens = 0
    for i in range(0, len(blocks), 32):
        ids = torch.tensor(blocks[i : i + 32])
        target = ids[:, 1:]

        def total(logits):
            logits = torch.as_tensor(logits)[:, :-1]
            return float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                           reduction="sum"))

        with torch.inference_mode():
            nll["torch_fp32"] += total(model(input_ids=ids).logits)
            nll["torch_int8"] += total(torch_int8(input_ids=ids).logits)
        feeds = {"input_ids": ids.numpy(), "attention_mask": np.ones_like(ids.numpy()),
                 **export.empty_past(session, len(ids))}
        nll["onnx_int8"] += total(session.run(None, feeds)[0])
        tokens += target.numel()
    return {"perplexity": {k: math.exp(v / tokens) for k, v in nll.items()}, "tokens": tokens,
            "blocks": len(blocks), "export_check": check.summary()}


def _g2p(folder: Path, quick: bool, max_length: int = 32) -> dict:
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from hfnn.apps.inference import seq2seq_scores
    from hfnn.data.corpora import load_corpus
    from hfnn.models.pipeline_seq2seq import SOURCE_TOKENIZER_SUBFOLDER
    from hfnn.sharing import export

    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    source = AutoTokenizer.from_pretrained(folder / SOURCE_TOKENIZER_SUBFOLDER)
    target = AutoTokenizer.from_pretrained(folder)
    test = load_corpus("cmudict")["test"]
    words, references = list(test["word"]), [list(r) for r in test["references"]]
    if quick:
        words, references = words[:32], references[:32]
    order = sorted(range(len(words)), key=lambda i: len(words[i]))  # batches of similar lengths
    torch_int8, session, check = _variants(folder, model)
    predicted = {"torch_fp32": [None] * len(words), "onnx_int8": [None] * len(words),
                 "torch_int8": [None] * len(words)}

    def decode(ids):
        return [" ".join(p.split()) for p in target.batch_decode(ids, skip_special_tokens=True)]

    for i in range(0, len(order), 256):
        rows = order[i : i + 256]
        batch = source([words[r] for r in rows], truncation=True, padding=True, return_tensors="pt",
                       max_length=max_length)
        kwargs = dict(num_beams=1, do_sample=False, max_new_tokens=max_length)
        with torch.inference_mode():
            outputs = {"torch_fp32": decode(model.generate(**batch, **kwargs)),
                       "torch_int8": decode(torch_int8.generate(**batch, **kwargs))}
        outputs["onnx_int8"] = decode(export.greedy_generate(session, batch["input_ids"].numpy(),
                                                             batch["attention_mask"].numpy(),
                                                             max_new_tokens=max_length))
        for name, texts in outputs.items():
            for r, text in zip(rows, texts):
                predicted[name][r] = text
    scores = {k: seq2seq_scores(v, references, G2P_METRICS) for k, v in predicted.items()}
    same = {k: sum(a == b for a, b in zip(v, predicted["torch_fp32"])) / len(words) for k, v in predicted.items()}
    return {"scores": scores, "int8_agreement": same, "test_words": len(words), "export_check": check.summary()}


def _phonetisaurus(quick: bool) -> dict:
    try:
        import phonetisaurus
    except ImportError:
        return {"skipped": "phonetisaurus is not installed: pip install phonetisaurus"}
    from bench.baselines import phonetisaurus_guesses
    from hfnn.apps.inference import seq2seq_scores
    from hfnn.data.corpora import load_corpus

    data = load_corpus("cmudict")
    train, test = data["train"], data["test"]
    words, references = list(test["word"]), [list(r) for r in test["references"]]
    if quick:
        train, words, references = train.select(range(min(300, len(train)))), words[:32], references[:32]
    lexicon, guesses, train_s, _ = phonetisaurus_guesses(phonetisaurus, train, words)
    predictions = [" ".join(guesses.get(word, [])) for word in words]  # no answer counts as wrong
    return {"scores": seq2seq_scores(predictions, references, G2P_METRICS), "train_seconds": train_s,
            "train_words": len(lexicon), "test_words": len(words)}


def quality_job(quick: bool = False) -> dict:
    import torch

    out = {"threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        runs = [("text-classification", "cnn_rotten_tomatoes", _classifier),
                ("language-modeling", "rnn_shakespeare_char", _lm),
                ("seq2seq", "rnn_seq2seq_cmudict", _g2p),
                ("seq2seq", "transformer_seq2seq_cmudict", _g2p)]
        for task, recipe, evaluate in runs:
            folder = root / recipe
            try:
                train = _train(task, recipe, folder, QUALITY_MINUTES[recipe], quick)
                out[recipe] = {"train": train, **evaluate(folder, quick)}
            except Exception as err:  # one failing model: the others are still measured
                out[recipe] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
    out["phonetisaurus"] = _phonetisaurus(quick)
    return out


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def render_quality(q: dict, headline: list[str]) -> list[str]:
    if "error" in q:
        return [f"**quality: failed** ({q['error'][:300]})", ""]
    lines = ["Quality cost of int8 on the full test splits (short training runs of the shipped recipes: "
             + ", ".join(f"{r} {v['train']['minutes']} min ({v['train']['train_steps']} steps)"
                         for r, v in q.items() if isinstance(v, dict) and "train" in v)
             + "; far from the recipes' full quality, the comparison is int8 against float32 of the same weights). "
             "Agreement: share of test items whose prediction (greedy output for G2P) equals PyTorch float32's.", ""]
    lines += ["| model | metric | PyTorch fp32 | ONNX int8 | PyTorch int8 | agreement ONNX / PyTorch int8 |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    cnn = q.get("cnn_rotten_tomatoes", {})
    if "accuracy" in cnn:
        a, g = cnn["accuracy"], cnn["int8_agreement"]
        lines.append(f"| CNN classifier ({cnn['examples']:,} test texts) | accuracy | {_pct(a['torch_fp32'])} | "
                     f"{_pct(a['onnx_int8'])} | {_pct(a['torch_int8'])} | {_pct(g['onnx_int8'])} / "
                     f"{_pct(g['torch_int8'])} |")
    lm = q.get("rnn_shakespeare_char", {})
    if "perplexity" in lm:
        p = lm["perplexity"]
        lines.append(f"| GRU character LM ({lm['tokens']:,} test tokens) | perplexity | {p['torch_fp32']:.3f} | "
                     f"{p['onnx_int8']:.3f} ({100 * (p['onnx_int8'] / p['torch_fp32'] - 1):+.2f} %) | "
                     f"{p['torch_int8']:.3f} ({100 * (p['torch_int8'] / p['torch_fp32'] - 1):+.2f} %) | |")
    for recipe, label in (("rnn_seq2seq_cmudict", "GRU G2P"), ("transformer_seq2seq_cmudict", "Transformer G2P")):
        g = q.get(recipe, {})
        if "scores" not in g:
            continue
        s, agree = g["scores"], g["int8_agreement"]
        for metric in G2P_METRICS:
            tail = f"{_pct(agree['onnx_int8'])} / {_pct(agree['torch_int8'])}" if metric == "wer" else ""
            lines.append(f"| {label} ({g['test_words']:,} test words) | {metric} | {_pct(s['torch_fp32'][metric])} | "
                         f"{_pct(s['onnx_int8'][metric])} | {_pct(s['torch_int8'][metric])} | {tail} |")
    lines.append("")
    failed = [f"**{r}: failed** ({v['error']})" for r, v in q.items() if isinstance(v, dict) and "error" in v]
    lines += failed + ([""] if failed else [])
    ph = q.get("phonetisaurus", {})
    if "scores" in ph:
        lines += [f"G2P with and without stress marks on the same {ph['test_words']:,} CMUdict test words, greedy "
                  "decoding, scored with hfnn's `wer`/`per` (right when any reference matches; `_nostress`: stress "
                  "digits removed from prediction and references):", "",
                  "| model | WER | PER | WER, no stress | PER, no stress |", "| --- | ---: | ---: | ---: | ---: |"]
        rows = [(label, q[r]["scores"]["torch_fp32"]) for r, label in
                (("rnn_seq2seq_cmudict", "hfnn GRU G2P (short run)"),
                 ("transformer_seq2seq_cmudict", "hfnn Transformer G2P (short run)")) if "scores" in q.get(r, {})]
        rows.append((f"Phonetisaurus ({ph['train_words']:,} training words, {ph['train_seconds']:.0f} s)",
                     ph["scores"]))
        lines += [f"| {label} | " + " | ".join(_pct(s[m]) for m in G2P_METRICS) + " |" for label, s in rows] + [""]
    elif "skipped" in ph:
        lines += [f"Phonetisaurus: skipped ({ph['skipped']})", ""]
    if "accuracy" in cnn and "perplexity" in lm:
        headline.append(f"int8 quality cost: CNN accuracy {_pct(cnn['accuracy']['torch_fp32'])} -> ONNX int8 "
                        f"{_pct(cnn['accuracy']['onnx_int8'])}; GRU LM perplexity {lm['perplexity']['torch_fp32']:.3f}"
                        f" -> {lm['perplexity']['onnx_int8']:.3f}.")
    return lines
