"""``compute_metrics`` factories for the Trainer (language models, classifiers, seq2seq models with generated
outputs) and the seq2seq Trainer that evaluates in dataset order, as those metrics need."""

from __future__ import annotations

from transformers import Seq2SeqTrainer

__all__ = ["OrderedEvalSeq2SeqTrainer", "causal_lm_metrics", "classification_metrics", "seq2seq_metrics"]


def causal_lm_metrics():
    """``(compute_metrics, preprocess_logits_for_metrics)`` for a causal LM ``Trainer``: per-token negative
    log-likelihood of the next token is computed where the logits are (they never leave the device), and
    ``compute_metrics`` reduces it to ``mean_nll``, ``perplexity`` and ``num_tokens`` with hfnn's perplexity
    metric. Labels of -100 are not counted."""
    import numpy as np
    import torch

    from hfnn.metrics import load_metric

    metric = load_metric("perplexity")

    def preprocess_logits_for_metrics(logits, labels):
        logits, targets = logits[:, :-1].float(), labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).clamp(min=0), reduction="none"
        ).view_as(targets)
        return nll.masked_fill(targets == -100, float("nan"))

    def compute_metrics(eval_pred):
        nll = np.asarray(eval_pred.predictions, dtype=np.float64).reshape(-1)
        return metric.compute(predictions=nll[~np.isnan(nll)].tolist())

    return compute_metrics, preprocess_logits_for_metrics


def classification_metrics(problem_type: str = "single_label_classification"):
    """``compute_metrics`` for a sequence classifier: accuracy and macro-F1 (single-label), exact-match
    accuracy and macro-F1 over labels (multi-label, logits > 0), or MSE and MAE (regression)."""
    import numpy as np

    if problem_type == "regression":

        def compute_regression(eval_pred):
            diff = np.asarray(eval_pred.predictions).reshape(-1) - np.asarray(eval_pred.label_ids).reshape(-1)
            return {"mse": float(np.mean(diff ** 2)), "mae": float(np.mean(np.abs(diff)))}

        return compute_regression
    if problem_type == "multi_label_classification":
        from sklearn.metrics import f1_score

        def compute_multi_label(eval_pred):
            preds = (np.asarray(eval_pred.predictions) > 0).astype(int)
            refs = np.asarray(eval_pred.label_ids).astype(int)
            return {"accuracy": float((preds == refs).all(axis=1).mean()),  # exact match
                    "f1": float(f1_score(refs, preds, average="macro", zero_division=0))}

        return compute_multi_label
    from hfnn.metrics import load_metric

    accuracy, f1 = load_metric("accuracy"), load_metric("f1")

    def compute_single_label(eval_pred):
        preds, refs = np.asarray(eval_pred.predictions).argmax(-1), np.asarray(eval_pred.label_ids)
        return {"accuracy": accuracy.compute(predictions=preds, references=refs)["accuracy"],
                "f1": f1.compute(predictions=preds, references=refs, average="macro")["f1"]}

    return compute_single_label


def seq2seq_metrics(kind: str, target_tokenizer, references: list[list[str]], expected_labels=None):
    """``compute_metrics`` for ``Seq2SeqTrainer`` with ``predict_with_generate`` (and
    :class:`OrderedEvalSeq2SeqTrainer`): ``kind`` ``"g2p"`` (WER, PER) or ``"translation"`` (BLEU, chrF); decodes
    the generated ids and scores them against ``references`` (every acceptable target of each example, in dataset
    order).

    ``expected_labels`` (the label ids of the evaluated split, in dataset order) checks that the evaluation
    came back in that order by comparing ids, so targets with symbols the tokenizer maps to unk or cut by
    ``max_target_length`` score as errors instead of stopping the evaluation. A reference symbol unseen in
    training cannot be predicted: such an example counts as wrong."""
    import numpy as np

    from hfnn.data.corpora import SEQ2SEQ_METRICS
    from hfnn.metrics import load_metric

    modules = {name: load_metric(name) for name in SEQ2SEQ_METRICS["g2p" if kind == "g2p" else "translation"]}
    pad = target_tokenizer.pad_token_id

    def compute_metrics(eval_pred):
        ids = np.asarray(eval_pred.predictions)
        predictions = [" ".join(p.split()) for p in target_tokenizer.batch_decode(np.where(ids < 0, pad, ids),
                                                                                  skip_special_tokens=True)]
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        if expected_labels is not None and eval_pred.label_ids is not None:
            # the references are matched by position: check the labels came back in dataset order
            got = [tuple(int(x) for x in row if x >= 0 and x != pad) for row in np.asarray(eval_pred.label_ids)]
            if got != [tuple(x for x in row if x != pad) for row in expected_labels]:
                raise RuntimeError("the evaluation returned the examples in another order than the dataset's; "
                                   "the predictions cannot be matched to their references")
        result = {name: float(m.compute(predictions=predictions, references=references)[name])
                  for name, m in modules.items()}
        if kind == "g2p":
            result["accuracy"] = 1.0 - result["wer"]
        result["predictions_mean_length"] = float(np.mean([len(p.split()) for p in predictions]))
        return result

    return compute_metrics


class OrderedEvalSeq2SeqTrainer(Seq2SeqTrainer):
    """``Seq2SeqTrainer`` that always evaluates in dataset order.

    ``compute_metrics`` matches generated outputs to each example's references by position, but with
    ``train_sampling_strategy="group_by_length"`` the Trainer would also shuffle evaluation batches by length.
    The evaluation splits are sorted by source length beforehand instead, which gives the same short padding.
    """

    def _get_eval_sampler(self, eval_dataset):
        from torch.utils.data import SequentialSampler

        if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None
