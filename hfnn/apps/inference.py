"""Running saved models on texts and scoring them on corpus splits, through transformers' pipelines and the
metric code the training pipelines use (:mod:`hfnn.training`): what ``hfnn generate / classify / transduce / evaluate``
do, as functions. Inputs a model cannot take (a prompt past its positions, an over-long source) are a
:class:`hfnn.models.errors.UserError` naming the row and the limit."""

from __future__ import annotations

import sys
from pathlib import Path

from hfnn.models.errors import USER_ERRORS, UserError, first_line

__all__ = ["classify_texts", "evaluate_classifier", "evaluate_lm", "generate_texts", "load_eval_split",
           "phoneme_scores", "require_columns", "seq2seq_scores", "transduce_records", "transduce_texts",
           "unknown_characters"]


def generate_texts(pipe, prompts: list[str], batch_size: int = 32, **gen_kwargs) -> list[list[str]]:
    """Continuations of ``prompts`` by a text-generation pipeline (each prefixed with its prompt); one list per
    prompt."""
    tokenizer, config = pipe.tokenizer, pipe.model.config
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    _note_unknown("prompt", prompts, tokenizer)
    if 0 in lengths and pipe.model.generation_config.bos_token_id is None:
        raise UserError("an empty prompt needs a model with a bos_token_id to start from")
    width, positions = max(max(lengths), 1), getattr(config, "max_position_embeddings", None)
    new_tokens = gen_kwargs.get("max_new_tokens") or 0
    if positions and width + new_tokens > positions:
        raise UserError(f"the prompt ({width} tokens) plus --max-new-tokens {new_tokens} exceeds the model's "
                       f"max_position_embeddings={positions}")
    if 0 in lengths:  # the pipeline starts an empty prompt from bos, one prompt at a time
        batch_size = 1
    outputs = pipe(prompts, batch_size=batch_size, return_full_text=False, add_special_tokens=False, **gen_kwargs)
    return [[prompt + o["generated_text"] for o in out] for prompt, out in zip(prompts, outputs)]


def classify_texts(pipe, texts: list[str], top_k: int = 1, batch_size: int = 32) -> list[list[tuple[str, float]]]:
    """For each text, its ``top_k`` (label, score) pairs by a text-classification pipeline, best first (0: every
    label)."""
    config = pipe.model.config
    k = config.num_labels if top_k in (0, None) else min(top_k, config.num_labels)
    for row, text in enumerate(texts, 1):
        if not pipe.tokenizer(text, add_special_tokens=False)["input_ids"]:
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise UserError(f"text {row} ({shown!r}) is empty: it has no tokens, so there is nothing to classify")
    _note_unknown("text", texts, pipe.tokenizer)
    outputs = pipe(texts, top_k=k, batch_size=batch_size, truncation=True)
    if getattr(config, "problem_type", None) == "regression":
        return [[("score", out[0]["score"])] for out in outputs]
    return [[(o["label"], o["score"]) for o in out] for out in outputs]


def _unknown_finder(tokenizer):
    """For a character-level tokenizer, a function giving the characters of a text that it reads as its unknown
    token (after its normaliser: a lower-casing tokenizer knows "H" when it knows "h"), in order of appearance;
    None when the tokenizer's tokens are not single characters (a word or subword vocabulary) or it has no
    unknown token. The vocabulary is read once, not per text."""
    unk = tokenizer.unk_token_id
    specials = set(tokenizer.all_special_tokens)
    vocab = tokenizer.get_vocab()
    if unk is None or not all(len(token) == 1 for token in vocab if token not in specials):
        return None
    normalizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)

    def find(text: str) -> list[str]:
        if unk not in tokenizer(text, add_special_tokens=False)["input_ids"]:
            return []
        normalized = normalizer.normalize_str(text) if normalizer is not None else text
        return list(dict.fromkeys(c for c in normalized if c not in vocab))

    return find


def unknown_characters(tokenizer, text: str) -> list[str]:
    """The characters of ``text`` that a character-level tokenizer reads as its unknown token ([] for none, or
    for a tokenizer that is not character-level)."""
    find = _unknown_finder(tokenizer)
    return find(text) if find is not None else []


def _note_unknown(kind: str, texts: list[str], tokenizer, rows: list[int] | None = None) -> None:
    """A note on stderr for each text with characters the (character-level) model never saw in training."""
    find = _unknown_finder(tokenizer)
    for row, text in zip(rows or range(1, len(texts) + 1), texts if find is not None else []):
        unknown = find(text)
        if unknown:
            shown = text if len(text) <= 40 else text[:37] + "..."
            print(f"hfnn: note: {kind} {row} ({shown!r}) has characters the model never saw in training: "
                  f"{', '.join(map(repr, unknown))}; each is read as {tokenizer.unk_token}, so its output is a guess",
                  file=sys.stderr)


def transduce_texts(pipe, sources: list[str], batch_size: int = 32, **gen_kwargs) -> list[list[str]]:
    """Targets generated for ``sources`` by hfnn's seq2seq pipeline: one list (num_return_sequences) per source."""
    _check_sources(pipe, sources, gen_kwargs)
    outputs = pipe(sources, batch_size=batch_size, **gen_kwargs)
    return [[o["generated_text"] for o in (out if isinstance(out, list) else [out])] for out in outputs]


def transduce_records(pipe, sources: list[str], batch_size: int = 32, lexicon=None, nbest: int | None = None,
                      **gen_kwargs) -> list[list[dict]]:
    """G2P as a tool: for each source, its records ``{"generated_text", "source": "lexicon" | "model", "score"}``.

    ``lexicon`` (``"cmudict"``, a CMUdict-format file or a :class:`hfnn.data.lexicon.Lexicon`) is consulted first;
    the model reads only the sources it lacks. ``nbest``: that many outputs of a beam search of at least as many
    beams (sampling: that many samples), each with its sequence log-probability (``score``; None for the
    lexicon's)."""
    from hfnn.data.lexicon import load_lexicon

    lexicon = load_lexicon(lexicon) if lexicon is not None else None
    if nbest:
        gen_kwargs["num_return_sequences"] = nbest
        if not gen_kwargs.get("do_sample"):
            gen_kwargs["num_beams"] = max(nbest, gen_kwargs.get("num_beams") or 1)
    rows = [row for row, s in enumerate(sources, 1) if lexicon is None or not lexicon.lookup(s)]
    _check_sources(pipe, [sources[row - 1] for row in rows], gen_kwargs, rows)
    if lexicon is not None:
        gen_kwargs["lexicon"] = lexicon
    outputs = pipe(sources, batch_size=batch_size, return_scores=True, **gen_kwargs)
    outputs = [outputs] if isinstance(sources, str) else outputs
    return [[{"source": "model", **o} for o in (out if isinstance(out, list) else [out])] for out in outputs]


def _check_sources(pipe, sources: list[str], gen_kwargs: dict, rows: list[int] | None = None) -> None:
    """The limits of the model's positions (a UserError naming the source), notes on empty sources and characters
    the model never saw; ``rows``: the sources' numbers in the input (default 1, 2, ...)."""
    source_tok, limit = pipe.source_tokenizer, getattr(pipe.model.config, "max_position_embeddings", None)
    new_tokens = gen_kwargs.get("max_new_tokens")
    if isinstance(limit, int) and new_tokens and new_tokens > limit:
        raise UserError(f"--max-new-tokens {new_tokens} is more than this model's decoder can take: at most {limit} "
                       "(max_position_embeddings)")
    for row, source in zip(rows or range(1, len(sources) + 1), sources):
        length = len(source_tok(source, add_special_tokens=True)["input_ids"])
        if isinstance(limit, int) and length > limit:
            shown = source if len(source) <= 40 else source[:37] + "..."
            raise UserError(f"source {row} ({shown!r}) is {length} tokens long; this model reads at most {limit} "
                           "(max_position_embeddings); shorten it")
        if not source_tok(source, add_special_tokens=False)["input_ids"]:
            print(f"hfnn: note: source {row} is empty; its output is empty", file=sys.stderr)
    _note_unknown("source", sources, source_tok, rows)


STRESSLESS = ("wer", "per")  # the metrics with a ``_nostress`` variant (ARPAbet stress digits removed first)


def seq2seq_scores(predictions: list[str], references: list[list[str]], metrics=("wer", "per")) -> dict:
    """``metrics`` (:attr:`hfnn.data.corpora.Seq2SeqColumns.metrics`) of the predictions, each against every
    acceptable target of its row, with hfnn's metric modules; ``wer_nostress`` / ``per_nostress`` score without
    stress marks (``AH0`` and ``AH1`` are one phoneme), as published CMUdict results often are."""
    from hfnn.metrics import METRICS, load_metric

    known = [*METRICS, *(f"{m}_nostress" for m in STRESSLESS)]
    scores = {}
    for name in metrics:
        if name not in known:
            raise UserError(f"--metrics: unknown metric {name!r}; known: {', '.join(known)}")
        base = name.removesuffix("_nostress")
        options = {"ignore_stress": True} if name != base else {}
        scores[name] = load_metric(base).compute(predictions=predictions, references=references, **options)[base]
    return scores


def phoneme_scores(predictions: list[str], references: list[list[str]]) -> dict:
    """G2P scores with hfnn's metric modules: ``wer`` = share of words matching none of their
    pronunciations, ``per`` = phoneme edits to the closest pronunciation / its length."""
    from hfnn.data.corpora import SEQ2SEQ_METRICS

    return seq2seq_scores(predictions, references, SEQ2SEQ_METRICS["g2p"])


def load_eval_split(args, info: dict, label_type: str = "classes"):
    """(name, dataset) of the ``--split`` (``all``: every split, in order; ``dev``, ``val``... name the validation
    split, :data:`hfnn.data.corpora.SPLIT_ALIASES`) of ``--file`` or ``--corpus``. The lines of a text file (the
    verses of a KJV book) come as one text per document (:func:`hfnn.data.corpora.join_documents`), so that
    :func:`evaluate_lm` scores the stream the language-modeling pipeline trains on. ``label_type``: how a label
    column is read (``"regression"``: numbers, for a regression head)."""
    from hfnn.data.corpora import canonical_split, join_documents, open_corpus

    columns = {f"{c}_column": getattr(args, f"{c}_column") for c in ("text", "label", "source", "target")}
    name = args.file or args.corpus or info.get("corpus")
    if not name:
        raise UserError("which data? give --corpus NAME or --file PATH (the folder's results.json names no corpus)")
    if args.file and not Path(args.file).is_file():
        raise UserError(f"no such file: {args.file}")
    try:
        corpus = open_corpus(name, label_type=label_type, **{k: v for k, v in columns.items() if v})
    except USER_ERRORS as err:
        raise UserError(f"cannot load {name}: {first_line(err)}") from None
    data = corpus.splits
    args.split = canonical_split(args.split) if args.split else ("all" if args.file else "test")
    if args.split != "all" and args.split not in data:
        raise UserError(f"{name} has no split {args.split!r} (splits: {', '.join(data)}, or all)")
    splits = ([s for s in data if len(data[s])] or list(data)[:1]) if args.split == "all" else [args.split]
    return name, join_documents(corpus.concatenated(splits, "eval"))["eval"]


def require_columns(ds, needed, problem: str, options: str) -> None:
    if not set(needed) <= set(ds.column_names):
        from hfnn.data.corpora import separator_hint

        raise UserError(f"{problem} (columns: {', '.join(ds.column_names)}){separator_hint(ds.column_names)}; "
                        f"use {options}")


def evaluate_lm(model, tokenizer, texts: list[str], block_size: int, max_blocks: int | None = None,
                batch_size: int = 16, ends_document: list[bool] | None = None) -> dict:
    """Mean next-token loss (nats) and perplexity over ``block_size`` blocks of the concatenated texts, scored
    with :func:`hfnn.training.causal_lm_metrics` as in training. The blocks are those of
    :func:`hfnn.data.corpora.lm_blocks`, the stream rule of the language-modeling pipeline: each text is a
    document, closed by end-of-sequence; :func:`load_eval_split` gives the lines of a ``.txt`` file (or the verses
    of a KJV book) as one text, so the stream is the one the pipeline trains on. ``ends_document``: per text,
    whether it ends its document (False for the part of a document a split ends with: no end-of-sequence follows
    it). A text shorter than one block is scored as one short block."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm
    from transformers import EvalPrediction

    from hfnn.data.corpora import lm_blocks
    from hfnn.training import causal_lm_metrics

    blocks = lm_blocks(tokenizer, texts, block_size, ends_document=ends_document, max_blocks=max_blocks,
                       keep_short=True)
    if len(blocks) == 1 and len(blocks[0]) < 2:
        raise UserError("the evaluation text is empty")
    compute_metrics, token_nll = causal_lm_metrics()
    nll = []
    for start in tqdm(range(0, len(blocks), batch_size), desc="evaluating", unit="batch", file=sys.stderr):
        batch = torch.tensor(blocks[start:start + batch_size], device=model.device)
        with torch.no_grad():
            nll.append(token_nll(model(input_ids=batch).logits, batch).double().cpu().numpy().reshape(-1))
    scores = compute_metrics(EvalPrediction(predictions=np.concatenate(nll), label_ids=None))
    return {"loss": scores["mean_nll"], "perplexity": scores["perplexity"], "tokens": int(scores["num_tokens"]),
            "blocks": len(blocks)}


def evaluate_classifier(pipe, name, ds, batch_size) -> dict:
    import numpy as np
    from transformers import EvalPrediction

    from hfnn.data.corpora import label_feature
    from hfnn.training import classification_metrics

    config = pipe.model.config
    problem = getattr(config, "problem_type", None) or "single_label_classification"
    texts = list(ds["text"])
    if problem == "regression":  # the head's number against the label's
        predicted = [labels[0][1] for labels in classify_texts(pipe, texts, top_k=1, batch_size=batch_size)]
        metrics = classification_metrics(problem)(
            EvalPrediction(predictions=np.asarray(predicted), label_ids=np.asarray(ds["label"], dtype=float)))
        return {**metrics, "examples": len(predicted)}
    label2id = {v: int(k) for k, v in (config.id2label or {}).items()}
    inner, lists = label_feature(ds.features["label"])
    multi = problem == "multi_label_classification"
    if multi != lists:
        raise UserError(f"{name}: the model is a {'multi' if multi else 'single'}-label classifier, but the label "
                        f"column holds {'one label' if multi else 'a list of labels'} per row")
    names = getattr(inner, "names", None)
    gold = [[names[y] if names else y for y in (row if multi else [row])] for row in ds["label"]]
    gold_ids = [[label2id.get(g, g) if isinstance(g, str) else int(g) for g in row] for row in gold]
    unknown = sorted({str(g) for row in gold_ids for g in row if isinstance(g, str)})
    if unknown:
        raise UserError(f"labels of {name} ({', '.join(unknown[:5])}) are not the model's ({', '.join(label2id)})")
    scores = np.zeros((len(gold_ids), config.num_labels))
    for row, labels in enumerate(classify_texts(pipe, texts, top_k=0, batch_size=batch_size)):
        for label, score in labels:
            scores[row, label2id[label]] = score
    if multi:  # each label is on when its sigmoid score passes 0.5 (its logit passes 0), as in training
        refs = np.zeros_like(scores)
        for row, ids in enumerate(gold_ids):
            refs[row, ids] = 1
        metrics = classification_metrics(problem)(EvalPrediction(predictions=scores - 0.5, label_ids=refs))
    else:  # one label per text, as `classify` shows
        metrics = classification_metrics(problem)(
            EvalPrediction(predictions=scores, label_ids=np.asarray([ids[0] for ids in gold_ids])))
    return {**metrics, "examples": len(gold_ids)}
