"""Recurrent neural networks as ``transformers`` models: a language model and a sequence classifier.

The seed note's language model (section 5): h_i = tanh(W_x x_i + W_h h_{i-1} + b) (``rnn_tanh``; ``rnn_relu``, and
the gated ``gru`` / ``lstm`` cells), y_i = softmax(U h_i + b_2), on PyTorch's fused ``nn.RNN`` / ``GRU`` / ``LSTM``.
Generation carries h_i as the cache (:class:`RnnStateCache`): O(1) work per token. Padding never enters the state,
so a left-padded prompt in a batch continues as the prompt alone does."""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast, SequenceClassifierOutput
from transformers.modeling_utils import slice_logits_to_keep
from transformers.utils import can_return_tuple

from .caches import RecurrentCache, pop_legacy_cache
from .configuration_rnn import RnnConfig
from .decoding import DirectDecodingMixin
from .gradient_checkpointing import CheckpointedCall, checkpointed, checkpointing
from .initialization import init_recurrent_, zero_padding_row_
from .input_checks import check_input_ids, check_token_labels
from .masks import final_states, masked_max, masked_mean, real_token_mask
from .outputs import classifier_dropout, classifier_output
from .recurrence import batch_first, layer_runner, make_rnn, run_recurrence, torch_layout
from .recurrent_cells import run_masked_scan, traced_over_time

__all__ = ["RnnStateCache", "RnnPreTrainedModel", "RnnModel", "RnnForCausalLM", "RnnForSequenceClassification"]


class RnnStateCache(RecurrentCache):
    """The recurrent state of every layer as the generation cache: ``states`` holds h (and c for an LSTM), each
    ``(batch, num_layers * num_directions, hidden_size)``. Its size is fixed whatever the number of tokens read."""


class RnnPreTrainedModel(PreTrainedModel):
    config_class = RnnConfig
    base_model_prefix = "model"
    _no_split_modules = ["RnnModel"]
    _is_stateful = True
    supports_gradient_checkpointing = True  # layer by layer (RnnModel.encode)

    def _init_weights(self, module):
        """Recurrent layers as :func:`init_recurrent_` does; embeddings N(0, embedding_init_std)."""
        if isinstance(module, (nn.RNN, nn.GRU, nn.LSTM)):
            init_recurrent_(module)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=self.config.embedding_init_std)
            zero_padding_row_(module)
        else:
            super()._init_weights(module)


def _mask_layout(mask: torch.Tensor | None):
    """``(kind, lengths, starts)`` of a (batch, time) mask: "full" (no padding), "contiguous" (one run of tokens
    per row) or "holes"."""
    if mask is None or bool(mask.all()):
        return "full", None, None
    mask = mask.bool()
    lengths = mask.sum(dim=1)
    starts = torch.where(lengths > 0, mask.int().argmax(dim=1), torch.zeros_like(lengths))
    positions = torch.arange(mask.shape[1], device=mask.device)
    expected = (positions >= starts[:, None]) & (positions < (starts + lengths)[:, None])
    return ("contiguous" if bool((expected == mask).all()) else "holes"), lengths, starts


class RnnModel(RnnPreTrainedModel):
    """Embeddings followed by a stack of recurrent layers: ``forward`` returns the top layer's outputs ``(batch,
    time, hidden_size * num_directions)`` and, with ``use_cache``, the state after each row's last real token."""

    def __init__(self, config: RnnConfig):
        super().__init__(config)
        self.checkpointed_call = CheckpointedCall()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = make_rnn(config.rnn_type, config.embedding_size, config.hidden_size, config.num_hidden_layers,
                            config.dropout, config.bidirectional)
        self.post_init()

    def _zero_state(self, batch_size: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        layers = self.config.num_hidden_layers * (2 if self.config.bidirectional else 1)
        zeros = like.new_zeros(batch_size, layers, self.config.hidden_size)
        return (zeros, zeros.clone()) if self.config.rnn_type == "lstm" else (zeros,)

    def _run(self, inputs, state, rnn=None):  # fused recurrence over a packed or dense batch, batch-first state
        outputs, new_state = (rnn or (lambda x, s: run_recurrence(self.rnn, x, s)))(inputs, torch_layout(state))
        return outputs, batch_first(new_state)

    def recur(self, embeds: torch.Tensor, mask: torch.Tensor | None, state: tuple[torch.Tensor, ...], rnn=None):
        """The stack (or the one layer ``rnn``) over ``embeds`` (batch, time, width) from the batch-first ``state``.

        Positions where ``mask`` is 0 neither change the state nor produce an output (0). Rows with one run of
        tokens are shifted to the front and packed, in one fused call; masks with holes run step by step."""
        kind, lengths, starts = _mask_layout(mask)
        if kind == "full":
            return self._run(embeds, state, rnn)
        batch, time = mask.shape
        if kind == "holes":
            if self.config.bidirectional:
                raise ValueError("attention_mask has padding in the middle of a sequence; a bidirectional RNN needs "
                                 "each row's tokens to be contiguous (left or right padding).")
            outputs = []
            for t in range(time):
                out_t, new = self._run(embeds[:, t : t + 1], state, rnn)
                keep = mask[:, t].bool()
                state = tuple(torch.where(keep[:, None, None], n, s) for n, s in zip(new, state))
                outputs.append(out_t * keep[:, None, None])
            return torch.cat(outputs, dim=1), state
        positions = torch.arange(time, device=mask.device)  # rotate each row's tokens to the front, pack, run, back
        compact = embeds.gather(1, ((positions + starts[:, None]) % time)[..., None].expand_as(embeds))
        packed = pack_padded_sequence(compact, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        packed_out, new_state = self._run(packed, state, rnn)
        out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=time)
        out = (out.gather(1, ((positions - starts[:, None]) % time)[..., None].expand_as(out))
               * mask[..., None].to(out.dtype))
        empty = lengths == 0  # rows of pure padding keep their state
        if bool(empty.any()):
            new_state = tuple(torch.where(empty[:, None, None], s, n) for n, s in zip(new_state, state))
        return out, new_state

    def encode(self, inputs_embeds, attention_mask, state, output_hidden_states=False):
        """The stack over ``inputs_embeds`` from ``state``: (top outputs, new state, per-layer outputs or None). One
        fused call; one call per layer when every layer's output is asked for or the layers are checkpointed; when
        exported, :func:`run_masked_scan`: a loop over a dynamic time axis, exact for any mask."""
        embeds = self.dropout(inputs_embeds)
        layers = self.config.num_hidden_layers
        if traced_over_time(embeds):
            mask = torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device) if attention_mask is None \
                else attention_mask.bool()
            hidden, new_state, below = run_masked_scan(self.rnn, embeds, mask, torch_layout(state))
            new_state = batch_first(new_state)
        elif not (output_hidden_states or checkpointing(self)) or layers == 1:
            hidden, new_state = checkpointed(self, self.recur, embeds, attention_mask, state)
            below = []
        else:
            width = 2 if self.config.bidirectional else 1
            below, states = [], []
            for index in range(layers):
                chunk = tuple(s[:, index * width : (index + 1) * width] for s in state)
                embeds, layer_state = checkpointed(self, self.recur, embeds, attention_mask, chunk,
                                                   layer_runner(self.rnn, index))
                states.append(layer_state)
                if index < layers - 1:
                    below.append(embeds)
                    embeds = nn.functional.dropout(embeds, self.config.dropout, self.training)
            hidden, new_state = embeds, tuple(torch.cat(parts, dim=1) for parts in zip(*states))
        hidden = self.dropout(hidden)
        return hidden, new_state, (inputs_embeds, *below, hidden) if output_hidden_states else None

    @can_return_tuple
    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, cache: RnnStateCache | None = None,
                use_cache: bool | None = None, output_hidden_states: bool | None = None,
                **kwargs) -> BaseModelOutputWithPast:
        """``input_ids (batch, time)`` or ``inputs_embeds (batch, time, embedding_size)``; ``attention_mask`` ``(batch,
        time)`` or, during cached generation, ``(batch, past + time)``, 0 for padding. ``cache`` is the state to
        continue from, returned updated with ``use_cache`` (default ``config.use_cache`` in eval mode);
        ``output_hidden_states`` also returns the embeddings and every layer's output."""
        cache = pop_legacy_cache(kwargs, cache)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Give exactly one of input_ids or inputs_embeds.")
        if input_ids is not None:
            check_input_ids(input_ids, self.config.vocab_size)
            inputs_embeds = self.embed_tokens(input_ids)
        batch, time = inputs_embeds.shape[:2]
        if time == 0:
            raise ValueError("The input sequence is empty: give at least one token.")
        use_cache = ((cache is not None or self.config.use_cache and not self.training) if use_cache is None
                     else use_cache)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        state = cache.states if cache is not None else None  # batch first, stacked over the layers
        if self.config.bidirectional and state is not None:
            raise ValueError("A bidirectional RNN cannot continue from a cache: it reads the whole sequence at once.")
        if attention_mask is not None:
            if attention_mask.dim() != 2 or attention_mask.shape[0] != batch or attention_mask.shape[1] < time:
                raise ValueError(
                    f"attention_mask must have shape (batch, time) = ({batch}, {time}) (or cover past tokens too), "
                    f"got {tuple(attention_mask.shape)}"
                )
            # the new tokens' part, selected by index: a slice would tie a traced graph to past lengths 0 or not 0
            new = torch.arange(time, device=attention_mask.device) + (attention_mask.shape[1] - time)
            attention_mask = attention_mask.index_select(1, new)
        hidden, new_state, hidden_states = self.encode(
            inputs_embeds, attention_mask, self._zero_state(batch, inputs_embeds) if state is None else state,
            output_hidden_states)
        if use_cache:
            cache = RnnStateCache() if cache is None else cache
            cache.store(new_state, time)
        return BaseModelOutputWithPast(hidden, cache=cache if use_cache else None, hidden_states=hidden_states)


class RnnForCausalLM(DirectDecodingMixin, RnnPreTrainedModel, GenerationMixin):
    """RNN language model: y_i = softmax(U h_i + b_2), the distribution of token i + 1 (``labels`` are the input ids,
    shifted inside; -100 is ignored)."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: RnnConfig):
        super().__init__(config)
        if config.bidirectional:
            raise ValueError("RnnConfig: bidirectional must be False for a language model (it would see the future).")
        self.model = RnnModel(config)
        out_size = config.embedding_size if config.tie_word_embeddings else config.hidden_size
        self.proj = nn.Linear(config.hidden_size, out_size, bias=False) if out_size != config.hidden_size else None
        self.lm_head = nn.Linear(out_size, config.vocab_size, bias=True)
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:  # the state cache is built in forward, not a DynamicCache
        return False

    @can_return_tuple
    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, cache: RnnStateCache | None = None,
                use_cache: bool | None = None, labels: torch.LongTensor | None = None,
                logits_to_keep: int | torch.Tensor = 0, output_hidden_states: bool | None = None,
                **kwargs) -> CausalLMOutputWithPast:
        """Logits ``(batch, time, vocab_size)`` (the last ``logits_to_keep``), the loss for ``labels``, the state."""
        outputs = self.model(input_ids, attention_mask, inputs_embeds, pop_legacy_cache(kwargs, cache), use_cache,
                             output_hidden_states, return_dict=True)
        hidden = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden if self.proj is None else self.proj(hidden))
        loss = None
        if labels is not None:
            check_token_labels(labels, self.config.vocab_size)
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss, logits, outputs.cache, outputs.hidden_states)

    # The direct decoding loop: each new token through embedding, recurrence and output layer, state in torch's layout
    _FAST_DECODE_KWARGS = frozenset({"attention_mask", "logits_to_keep", "use_cache", "cache"})

    def _decode_allowed(self, model_kwargs) -> bool:
        cache = model_kwargs.get("cache")
        return cache is None or (isinstance(cache, RnnStateCache) and cache.states is None)

    def _decode_start(self, input_ids, model_kwargs):
        cache = model_kwargs.get("cache")
        if cache is None:
            cache = RnnStateCache()
        # the prompt: the ordinary forward (it handles padded rows); the state then stays in torch's layout
        outputs = self(input_ids, attention_mask=model_kwargs.get("attention_mask"), cache=cache, use_cache=True,
                       logits_to_keep=1)
        return outputs.logits[:, -1], (cache, torch_layout(cache.states))

    def _decode_step(self, tokens, state):
        cache, state = state
        backbone = self.model
        embeds = backbone.embed_tokens(tokens)
        if self.training:
            embeds = backbone.dropout(embeds)
        hidden, state = run_recurrence(backbone.rnn, embeds, state)
        hidden = hidden[:, -1]
        if self.training:
            hidden = backbone.dropout(hidden)
        if self.proj is not None:
            hidden = self.proj(hidden)
        return self.lm_head(hidden), (cache, state)

    def _decode_end(self, state, steps):
        cache, state = state
        cache.store(batch_first(state), steps)


class RnnForSequenceClassification(RnnPreTrainedModel):
    """RNN text classifier: the pooled outputs (``config.pooling``) mapped to ``num_labels`` logits."""

    accepts_loss_kwargs = False  # a per-example mean loss: the Trainer must not rescale it by num_items_in_batch

    def __init__(self, config: RnnConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = RnnModel(config)
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size * (2 if config.bidirectional else 1), config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, **kwargs) -> SequenceClassifierOutput:
        """Logits ``(batch, num_labels)`` of the pooled outputs (``config.pooling``: the final state of each
        direction, or the mean or max over the real tokens); ``labels`` as :func:`classification_loss` takes them."""
        source = input_ids if input_ids is not None else inputs_embeds
        shape = source.shape[:2] if source is not None else None
        outputs = self.model(input_ids, attention_mask, inputs_embeds, use_cache=False,
                             output_hidden_states=output_hidden_states, return_dict=True)
        hidden = outputs.last_hidden_state
        keep = real_token_mask(attention_mask, None, None, shape, hidden.device, type(self).__name__)
        if self.config.pooling == "last":
            pooled = final_states(hidden, keep, self.config.bidirectional)
        else:
            pooled = (masked_mean if self.config.pooling == "mean" else masked_max)(hidden, keep[..., None], dim=1)
        return classifier_output(self, self.classifier, self.dropout(pooled), labels, outputs, **kwargs)
