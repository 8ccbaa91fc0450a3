"""Feed-forward (MLP) text classifier as a `transformers` model (seed note, ideas 1-3): a neuron computes
y = f(w . x + b), a layer h = f(W x + b), and the network stacks layers over the mean of the text's token (and
hashed n-gram) embeddings: h^(0) = x, h^(l) = dropout(f(W^(l) h^(l-1) + b^(l))), logits = W^(out) h^(L) + b^(out).
With f = identity the stack is one affine map, whatever its depth. Padding never enters the mean."""

import math

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.utils import can_return_tuple

from .configuration_mlp import MlpConfig
from .modeling_utils import TextClassifierPreTrainedModel, check_input_ids, classifier_output, real_token_mask

__all__ = ["MlpPreTrainedModel", "MlpModel", "MlpForSequenceClassification"]

ACTIVATION_FUNCTIONS = {"identity": nn.Identity, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}
# Gain of the Xavier init per activation (torch.nn.init.calculate_gain; gelu treated like relu).
INIT_GAINS = {"identity": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0), "gelu": math.sqrt(2.0)}

_HASH_PRIME = 2_147_483_647  # 2**31 - 1: keeps h * _HASH_MULTIPLIER + id inside int64
_HASH_MULTIPLIER = 1_000_003


def hash_ngrams(input_ids: torch.Tensor, n: int, num_buckets: int) -> torch.Tensor:
    """Bucket of the n-gram at each position, (batch, seq_len) -> (batch, seq_len - n + 1): a polynomial hash modulo
    2**31 - 1 seeded with n, deterministic on every device."""
    windows = input_ids.long().unfold(1, n, 1)  # (batch, seq_len - n + 1, n)
    h = torch.full(windows.shape[:2], n, dtype=torch.long, device=input_ids.device)
    for k in range(n):
        h = (h * _HASH_MULTIPLIER + windows[..., k] + 1) % _HASH_PRIME
    return h % num_buckets


class MlpBagOfEmbeddings(nn.Module):
    """Masked mean of token (and hashed n-gram) embeddings: (batch, seq_len) -> (batch, embedding_size). An n-gram
    counts when all its tokens are real; a text with nothing to average gives the zero vector."""

    def __init__(self, config: MlpConfig):
        super().__init__()
        self.min_n, self.max_n = config.ngram_range
        self.num_buckets = config.ngram_buckets
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.ngram_embeddings = nn.Embedding(config.ngram_buckets, config.embedding_size) if self.max_n > 1 else None

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_input_ids(input_ids, self.word_embeddings.weight.shape[0], allow_empty=True)
        weights = mask.to(self.word_embeddings.weight.dtype)  # (batch, seq_len)
        total = weights.new_zeros(input_ids.shape[0], self.word_embeddings.embedding_dim)
        count = weights.new_zeros(input_ids.shape[0])
        for n in range(self.min_n, self.max_n + 1):
            if input_ids.shape[1] < n:
                continue
            if n == 1:
                vectors, valid = self.word_embeddings(input_ids), weights
            else:
                vectors = self.ngram_embeddings(hash_ngrams(input_ids, n, self.num_buckets))
                valid = weights.unfold(1, n, 1).prod(-1)  # 1 only if every token of the n-gram is real
            total = total + (vectors * valid.unsqueeze(-1)).sum(1)
            count = count + valid.sum(1)
        return total / count.clamp_min(1.0).unsqueeze(-1)


class MlpLayer(GradientCheckpointingLayer):
    """One layer of neurons: h = dropout(f(W x + b)); shapes (batch, in_features) -> (batch, hidden_size)."""

    def __init__(self, in_features: int, config: MlpConfig):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.activation = ACTIVATION_FUNCTIONS[config.activation]()
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.activation(self.dense(x)))


class MlpPreTrainedModel(TextClassifierPreTrainedModel):
    config_class = MlpConfig
    _no_split_modules = ["MlpLayer"]

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            # Xavier with the activation's gain keeps the signal's scale through deep stacks.
            init.xavier_uniform_(module.weight, gain=INIT_GAINS[self.config.activation])
            init.zeros_(module.bias)
        else:
            super()._init_weights(module)


class MlpModel(MlpPreTrainedModel):
    """Bag of embeddings -> `num_hidden_layers` x `MlpLayer`: `last_hidden_state` = `pooler_output` = h^(L), and
    `hidden_states` (h^(0), ..., h^(L)) when asked for."""

    def __init__(self, config: MlpConfig):
        super().__init__(config)
        self.embeddings = MlpBagOfEmbeddings(config)
        sizes = [config.embedding_size] + [config.hidden_size] * config.num_hidden_layers
        self.layers = nn.ModuleList(MlpLayer(sizes[i], config) for i in range(config.num_hidden_layers))
        self.output_size = sizes[-1]
        self.post_init()

    @can_return_tuple
    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, **kwargs) -> BaseModelOutputWithPooling:
        """input_ids, attention_mask (batch, seq_len), 0 for padding (without a mask, `pad_token_id` is)."""
        if input_ids is None:
            raise ValueError("MlpModel: input_ids is required")
        mask = real_token_mask(attention_mask, input_ids, self.config.pad_token_id, input_ids.shape, input_ids.device,
                               "MlpModel")
        hidden_states = [self.embeddings(input_ids, mask)]
        for layer in self.layers:
            hidden_states.append(layer(hidden_states[-1]))
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        return BaseModelOutputWithPooling(last_hidden_state=hidden_states[-1], pooler_output=hidden_states[-1],
                                          hidden_states=tuple(hidden_states) if output_hidden_states else None)


class MlpForSequenceClassification(MlpPreTrainedModel):
    """`MlpModel` -> output layer W^(out) h^(L) + b^(out), shape (batch, num_labels); the loss as
    :func:`classification_loss` computes it (MSE, cross-entropy or BCE by `problem_type`)."""

    def __init__(self, config: MlpConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = MlpModel(config)
        self.classifier = nn.Linear(self.model.output_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                **kwargs) -> SequenceClassifierOutput:
        outputs = self.model(input_ids, attention_mask, output_hidden_states=output_hidden_states, return_dict=True)
        return classifier_output(self, self.classifier, outputs.pooler_output, labels, outputs, **kwargs)
