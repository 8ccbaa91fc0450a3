"""What the heads return: the classifiers' losses and outputs, the seq2seq language-model output, and the decoder
inputs that teacher forcing builds from the labels."""

import torch
from torch import nn
from transformers.modeling_outputs import Seq2SeqLMOutput, SequenceClassifierOutput
from transformers.utils.import_utils import is_tracing

__all__ = [
    "classification_loss", "classifier_dropout", "classifier_output", "seq2seq_lm_output", "shift_tokens_right",
]


def classification_loss(model, labels: torch.Tensor, logits: torch.Tensor, **kwargs) -> torch.Tensor:
    """``model.loss_function`` of a classifier, ``problem_type`` inferred as transformers does (-100 skips an
    example)."""
    config = model.config
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type != "single_label_classification":
        labels = labels.to(logits.dtype)
    elif labels.is_floating_point():
        raise ValueError(
            f"labels must be integer class ids for single_label_classification, got dtype {labels.dtype}; for "
            "regression or multi-label targets set config.problem_type"
        )
    elif not is_tracing(labels):
        bad = labels[(labels != -100) & ((labels < 0) | (labels >= config.num_labels))]
        if bad.numel():
            raise ValueError(
                f"labels contains class id {int(bad[0])}, outside the model's classes [0, num_labels="
                f"{config.num_labels}); use -100 to skip an example"
            )
    return model.loss_function(labels.to(logits.device), logits, config, **kwargs)


def classifier_dropout(config) -> nn.Dropout:
    return nn.Dropout(config.classifier_dropout if config.classifier_dropout is not None else config.dropout)


def classifier_output(model, head: nn.Module, pooled: torch.Tensor, labels, outputs,
                      output_class=SequenceClassifierOutput, **kwargs):
    """A classifier's output: ``logits = head(pooled)``, the loss for ``labels``, the backbone's states and weights."""
    logits = head(pooled)
    loss = classification_loss(model, labels, logits, **kwargs) if labels is not None else None
    return output_class(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                        attentions=getattr(outputs, "attentions", None))


def seq2seq_lm_output(model, logits: torch.Tensor, labels, num_items_in_batch=None, **outputs) -> Seq2SeqLMOutput:
    """``Seq2SeqLMOutput`` with the mean token cross-entropy over ``labels != -100`` (``logits[:, t]`` predicts
    ``labels[:, t]``: the decoder input is already shifted)."""
    loss = None
    if labels is not None:
        loss = model.loss_function(logits, labels, vocab_size=model.config.vocab_size, shift_labels=labels,
                                   num_items_in_batch=num_items_in_batch)
    return Seq2SeqLMOutput(loss=loss, logits=logits, **outputs)


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None):
    """Decoder inputs for teacher forcing: ``[start, y_1, ..., y_{T-1}]``, with -100 replaced by the pad id."""
    if decoder_start_token_id is None:
        raise ValueError("config.decoder_start_token_id must be set to build decoder_input_ids from labels")
    shifted = labels.new_zeros(labels.shape)
    shifted[:, 1:] = labels[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    if pad_token_id is None and bool((shifted == -100).any()):
        raise ValueError("labels contain -100 but config.pad_token_id is None: cannot build decoder_input_ids")
    return shifted.masked_fill(shifted == -100, 0 if pad_token_id is None else pad_token_id)
