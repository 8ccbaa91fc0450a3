"""CNN sentence classifier of Kim (2014) as a `transformers` model (seed note, idea 6): a convolution of width h
computes one feature per h-gram, c_t = ReLU(w . x_{t:t+h-1} + b), and max-over-time pooling keeps the strongest match
wherever it occurs. Several widths x feature maps are pooled, concatenated, dropped out and mapped by a linear layer
whose rows are held to an l2 norm of at most `max_norm`.

Pooling sees only windows inside the real text, so a sentence gives the same logits alone or padded (a row with no
window left pools to zeros); a sentence shorter than a window is right-extended with zero vectors (one window)."""

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.utils import can_return_tuple

from .configuration_cnn import CnnConfig
from .gradient_checkpointing import CheckpointedCall, checkpointed
from .initialization import zero_padding_row_
from .input_checks import check_input_ids
from .masks import masked_max, real_token_mask
from .modeling_utils import TextClassifierPreTrainedModel
from .outputs import classifier_output

__all__ = ["CnnPreTrainedModel", "CnnModel", "CnnForSequenceClassification"]

# Kim 2014: word vectors missing from word2vec are drawn from U[-0.25, 0.25]; random embeddings likewise.
EMBEDDING_INIT_RANGE = 0.25


class CnnEmbeddings(nn.Module):
    """Token ids (batch, seq_len) -> word vectors (batch, seq_len, embedding_size): one table (trained, or frozen for
    "static") or, for "multichannel", a trained and a frozen one, summed (Kim applies each filter to both channels
    and adds the results: the convolution being linear, that is one convolution of the sum)."""

    def __init__(self, config: CnnConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.static_word_embeddings = (nn.Embedding(config.vocab_size, config.embedding_size,
                                                    padding_idx=config.pad_token_id)
                                       if config.embedding_mode == "multichannel" else None)
        self.frozen_tables = {"static": ["word_embeddings"], "multichannel": ["static_word_embeddings"]}.get(
            config.embedding_mode, [])
        self.freeze_()

    def freeze_(self):
        """requires_grad=False on the frozen tables, again at every `train()`/`eval()` and forward: loading weights
        creates fresh parameters that require grad."""
        for name in self.frozen_tables:
            weight = getattr(self, name).weight
            if weight.requires_grad:
                weight.requires_grad_(False)

    def train(self, mode: bool = True):
        self.freeze_()
        return super().train(mode)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # the tables' own size: resize_token_embeddings may have grown it since the config was read
        tables = [t for t in (self.word_embeddings, self.static_word_embeddings) if t is not None]
        check_input_ids(input_ids, min(t.weight.shape[0] for t in tables), allow_empty=True)
        self.freeze_()
        embeds = self.word_embeddings(input_ids)
        if self.static_word_embeddings is not None:
            embeds = embeds + self.static_word_embeddings(input_ids)
        return embeds


class CnnPreTrainedModel(TextClassifierPreTrainedModel):
    config_class = CnnConfig
    _no_split_modules = ["CnnEmbeddings"]

    def _init_weights(self, module):
        if isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -EMBEDDING_INIT_RANGE, EMBEDDING_INIT_RANGE)
            zero_padding_row_(module)
        else:
            super()._init_weights(module)

    def load_embeddings(self, vectors: torch.Tensor):
        """Copy word vectors (vocab_size, embedding_size), row i for token id i
        (`hfnn.data.embeddings.load_word_vectors`), into every channel; `config.embedding_mode` says whether they are
        trained."""
        embeddings = self.base_model.embeddings
        vectors = torch.as_tensor(vectors)
        expected = tuple(embeddings.word_embeddings.weight.shape)
        if vectors.dim() != 2 or tuple(vectors.shape) != expected:
            raise ValueError(
                f"{type(self).__name__}.load_embeddings: vectors must have shape (vocab_size, embedding_size) = "
                f"{expected}, got {tuple(vectors.shape)}"
            )
        if not torch.isfinite(vectors).all():
            raise ValueError(f"{type(self).__name__}.load_embeddings: vectors contain NaN or inf")
        with torch.no_grad():
            for table in (embeddings.word_embeddings, embeddings.static_word_embeddings):
                if table is not None:
                    table.weight.copy_(vectors.to(table.weight.dtype))
        return self

    def resize_token_embeddings(self, *args, **kwargs):
        """Resizes both channels: the frozen one's new rows start as copies of the trainable table's."""
        result = super().resize_token_embeddings(*args, **kwargs)
        embeddings = self.base_model.embeddings
        static = embeddings.static_word_embeddings
        words = embeddings.word_embeddings
        if static is not None and static.num_embeddings != words.num_embeddings:
            table = nn.Embedding(words.num_embeddings, words.embedding_dim, padding_idx=static.padding_idx,
                                 device=words.weight.device, dtype=words.weight.dtype)
            kept = min(static.num_embeddings, words.num_embeddings)
            with torch.no_grad():
                table.weight.copy_(words.weight)
                table.weight[:kept] = static.weight[:kept]
            embeddings.static_word_embeddings = table
            embeddings.freeze_()
        return result

    @classmethod
    def from_config_with_embeddings(cls, config: CnnConfig, vectors: torch.Tensor, **kwargs):
        """Build a model from `config` with its embeddings initialised from `vectors` (vocab_size, embedding_size)."""
        return cls(config, **kwargs).load_embeddings(vectors)


class CnnModel(CnnPreTrainedModel):
    """Embeddings -> a Conv1d + ReLU per window width -> masked max-over-time pooling -> concatenation. Returns
    `last_hidden_state` (batch, seq_len, hidden_size), c_t of the window starting at t (0 where it does not count),
    and `pooler_output` (batch, hidden_size), the max over the counted windows."""

    def __init__(self, config: CnnConfig):
        super().__init__(config)
        self.embeddings = CnnEmbeddings(config)
        self.checkpointed_call = CheckpointedCall()  # each window width's convolution and pooling
        self.window_sizes = list(config.window_sizes)
        self.convs = nn.ModuleList(
            nn.Conv1d(config.embedding_size, config.num_filters, kernel_size=h) for h in self.window_sizes
        )
        self.post_init()

    @can_return_tuple
    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                **kwargs) -> BaseModelOutputWithPooling:
        """input_ids (batch, seq_len) or inputs_embeds; attention_mask 0 for padding (else `pad_token_id` is)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("CnnModel: pass exactly one of input_ids or inputs_embeds")
        embeds = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        batch, seq_len, _ = embeds.shape
        mask = real_token_mask(attention_mask, input_ids, self.config.pad_token_id, (batch, seq_len), embeds.device,
                               "CnnModel")
        if seq_len == 0:  # an empty text: one all-padding position, so that one (zero) window exists
            embeds, mask, seq_len = embeds.new_zeros(batch, 1, embeds.shape[-1]), mask.new_zeros(batch, 1), 1
        lengths = mask.sum(dim=1)  # (batch,)
        first = mask.int().argmax(dim=1)  # first real position (0 for an empty text)
        # Padding positions become zero vectors, whatever the (trainable) pad embedding holds.
        embeds = embeds * mask.unsqueeze(-1).to(embeds.dtype)

        positions = torch.arange(seq_len, device=embeds.device)

        def window(conv, embeds, h):
            # h-1 zero vectors after the text, so that a window starts at every position t (and a text shorter than h
            # still has one); it counts when its h positions are real tokens, or is a short text's only window
            c = torch.relu(conv(nn.functional.pad(embeds, (0, 0, 0, h - 1)).transpose(1, 2)))  # (batch, filters, seq)
            full = nn.functional.pad(mask.to(embeds.dtype), (0, h - 1)).unfold(1, h, 1).sum(-1) == h
            counted = (full | (lengths < h).unsqueeze(1) & (positions.unsqueeze(0) == first.unsqueeze(1))).unsqueeze(1)
            return masked_max(c, counted, dim=2), c.masked_fill(~counted, 0.0)  # pooled: zeros when nothing counts

        pooled, feature_maps = zip(*(checkpointed(self, window, conv, embeds, h)
                                     for h, conv in zip(self.window_sizes, self.convs)))
        pooled_output = torch.cat(pooled, dim=1)
        last_hidden_state = torch.cat(feature_maps, dim=1).transpose(1, 2)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        hidden_states = (embeds, last_hidden_state) if output_hidden_states else None
        return BaseModelOutputWithPooling(last_hidden_state, pooled_output, hidden_states=hidden_states)


class CnnForSequenceClassification(CnnPreTrainedModel):
    """`CnnModel` -> dropout -> linear layer. With `config.max_norm`, rows of `classifier.weight` longer than it are
    rescaled by `apply_max_norm_`: the model does it when it is switched to eval mode, and a training loop does it
    after every optimizer step (with `Trainer`, `hfnn.training.MaxNormCallback`, which the hfnn pipelines attach;
    in a loop of one's own, a call of `model.apply_max_norm_()` after `optimizer.step()`). `forward` never modifies a
    parameter, and nothing outside the model is patched."""

    def __init__(self, config: CnnConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = CnnModel(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @torch.no_grad()
    def apply_max_norm_(self):
        """Rescale rows of `classifier.weight` to l2 norm <= `config.max_norm` in place (no-op if unset)."""
        max_norm = self.config.max_norm
        if max_norm is None:
            return
        weight = self.classifier.weight
        if not isinstance(weight, torch.Tensor):  # an int8 layer (quantize_torch): quantized after the rescaling
            return
        norms = weight.norm(dim=1, keepdim=True)
        weight.mul_(torch.clamp(max_norm / norms.clamp_min(1e-12), max=1.0))

    def train(self, mode: bool = True):
        if not mode and hasattr(self, "classifier"):
            self.apply_max_norm_()
        return super().train(mode)

    @can_return_tuple
    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, **kwargs) -> SequenceClassifierOutput:
        """Returns `logits` (batch, num_labels) and, given `labels`, the loss."""
        outputs = self.model(input_ids, attention_mask, inputs_embeds, output_hidden_states, return_dict=True)
        return classifier_output(self, self.classifier, self.dropout(outputs.pooler_output), labels, outputs, **kwargs)
