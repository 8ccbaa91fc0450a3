"""RNN encoder-decoder (seq2seq) with optional attention, as a ``transformers`` model.

Seed note, items 8 and 9: an encoder RNN reads the source x_1..x_S into states h_1..h_S; a decoder RNN generates
y_1..y_T from its state s_t. ``config.attention`` chooses how the decoder sees the source:

* ``"none"``: the seed's fixed-size context vector c (last forward, first backward encoder state) initialises
  the decoder and is concatenated to every decoder input and output (Cho et al. 2014);
* ``"bahdanau"`` (additive, 2015): before step t, e_tj = v^T tanh(W_s s_{t-1} + W_h h_j), a_t = softmax_j(e_t),
  c_t = sum_j a_tj h_j; the decoder reads [y_{t-1}; c_t];
* ``"luong"`` (multiplicative, 2015): after step t, e_tj = s_t^T h_j (``"dot"``) or s_t^T W_a h_j
  (``"general"``); input feeding concatenates the previous attentional vector to the decoder input.

The output is o_t = tanh(W_o [s_t; c_t]) and p(y_t | y_<t, x) = softmax(U o_t + b). Padding never enters the
encoder states and is masked out of every attention softmax. Generation carries the decoder state (and Luong's feed
vector) in :class:`RnnSeq2SeqCache`: one recurrent step per token.

Source and target vocabularies differ (letters -> phonemes): a saved folder holds the target tokenizer at its
root and the source one in ``source_tokenizer/`` (``AutoTokenizer.from_pretrained(folder,
subfolder="source_tokenizer")``); without it one tokenizer serves both sides. Both share ``config.pad_token_id``."""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.utils import can_return_tuple

from .caches import RecurrentCache, pop_legacy_cache
from .configuration_rnn_seq2seq import RnnSeq2SeqConfig
from .gradient_checkpointing import CheckpointedCall, checkpointed
from .initialization import init_recurrent_
from .input_checks import check_attention_mask, check_input_ids
from .masks import final_states, tokens_first
from .modeling_utils import EncoderDecoderMixin
from .outputs import seq2seq_lm_output, shift_tokens_right
from .recurrence import batch_first, make_rnn, run_stack, torch_layout
from .recurrent_cells import recurrent_step, run_masked_scan, traced_over_time

__all__ = [
    "RnnSeq2SeqCache", "RnnSeq2SeqEncoder", "RnnSeq2SeqDecoder", "RnnSeq2SeqPreTrainedModel", "RnnSeq2SeqModel",
    "RnnSeq2SeqForConditionalGeneration", "shift_tokens_right",
]


class RnnSeq2SeqCache(RecurrentCache):
    """The decoder's recurrent state between generation steps, batch first (see :class:`RecurrentCache`): ``hidden``
    / ``cell`` ``(batch, num_decoder_layers, hidden_size)`` (``cell`` None but for an LSTM), and ``feed`` ``(batch,
    hidden_size)`` the last attentional vector o_{t-1} (Luong input feeding) or None."""

    def __init__(self, hidden=None, cell=None, feed=None, seq_length=0):
        super().__init__()
        self.feed = feed
        if hidden is not None:
            self.store((hidden,) if cell is None else (hidden, cell), seq_length)

    hidden = property(lambda self: None if self.states is None else self.states[0])
    cell = property(lambda self: None if self.states is None or len(self.states) < 2 else self.states[1])

    def _map_feed(self, fn):
        if self.feed is not None:
            self.feed = fn(self.feed)

    def reorder_cache(self, beam_idx):
        super().reorder_cache(beam_idx)
        self._map_feed(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats):
        super().batch_repeat_interleave(repeats)
        self._map_feed(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices):
        super().batch_select_indices(indices)
        self._map_feed(lambda t: t[indices])

    def reset(self):
        super().reset()
        self.feed = None


class _TokenInput(nn.Module):  # a module whose input embedding is ``embed_tokens``

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value


class RnnSeq2SeqEncoder(_TokenInput):
    """Source embedding + (bi-directional) multi-layer RNN: ``forward(input_ids (batch, src_len), attention_mask)``
    returns a ``BaseModelOutput`` whose ``last_hidden_state`` ``(batch, src_len, hidden_size)`` holds h_j at every
    source position (zeros at padding). Each row's tokens are packed before the RNN and put back after, whatever the
    padding, so padding never enters a state."""

    def __init__(self, config):
        super().__init__()
        self.config, self.checkpointed_call = config, CheckpointedCall()
        self.bidirectional = config.bidirectional_encoder
        direction_size = config.hidden_size // 2 if self.bidirectional else config.hidden_size
        self.embed_tokens = nn.Embedding(config.source_vocab_size, config.embedding_size,
                                         padding_idx=config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = make_rnn(config.rnn_type, config.embedding_size, direction_size, config.num_encoder_layers,
                            config.dropout, self.bidirectional)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, **kwargs):
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("RnnSeq2SeqEncoder needs input_ids or inputs_embeds")
            check_input_ids(input_ids, self.embed_tokens.weight.shape[0], "input_ids", "source_vocab_size")
            inputs_embeds = self.embed_tokens(input_ids)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        batch, src_len, _ = inputs_embeds.shape
        if attention_mask is None:
            attention_mask = torch.ones(batch, src_len, dtype=torch.long, device=inputs_embeds.device)
        check_attention_mask(attention_mask, (batch, src_len))
        mask = attention_mask.bool()
        embeds = self.dropout(inputs_embeds)
        if traced_over_time(embeds):
            states, _, below = run_masked_scan(self.rnn, embeds, mask)
        else:
            lengths = mask.sum(1)
            if bool((lengths == 0).any()):
                row = int((lengths == 0).nonzero()[0])
                raise ValueError(f"every source sequence needs at least one token; "
                                 f"attention_mask row {row} is all zeros")
            order = tokens_first(mask)
            embeds = embeds.gather(1, order[..., None].expand_as(embeds))
            packed = pack_padded_sequence(embeds, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_out, _, below = run_stack(self.rnn, packed, None, bool(output_hidden_states), owner=self)

            def unpack(packed_states):
                out, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=src_len)
                return torch.zeros_like(out).scatter(1, order[..., None].expand_as(out), out)

            states, below = unpack(packed_out), list(map(unpack, below or []))
        output = BaseModelOutput(states,
                                 hidden_states=(inputs_embeds, *below, states) if output_hidden_states else None)
        return output.to_tuple() if return_dict is False else output


def _keep_rows(keep, new, old):  # state ``new`` where ``keep`` (batch,) is True, ``old`` elsewhere (torch's layout)
    if isinstance(new, tuple):
        return tuple(torch.where(keep[None, :, None], n, o) for n, o in zip(new, old))
    return torch.where(keep[None, :, None], new, old)


class RnnSeq2SeqDecoder(_TokenInput):
    """Target embedding, decoder RNN and attention: ``forward(input_ids (batch, tgt_len), encoder_states (batch,
    src_len, hidden), encoder_mask (batch, src_len), state, feed, decoder_attention_mask)`` -> ``(outputs o_t (batch,
    tgt_len, hidden), state, feed, weights (batch, tgt_len, src_len) or None, hidden states)``. ``state`` is torch's
    ``(num_layers, batch, hidden)`` (a pair for an LSTM), ``feed`` the last o_t (Luong input feeding) or None.
    Positions where ``decoder_attention_mask`` is 0 leave the state unchanged (left-padded decoder prompts)."""

    def __init__(self, config):
        super().__init__()
        hidden = config.hidden_size
        self.config, self.checkpointed_call = config, CheckpointedCall()
        self.attention = config.attention
        self.input_feeding = config.input_feeding
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        # The decoder input is [y_{t-1}; c_t] (none, bahdanau), [y_{t-1}; o_{t-1}] (luong + input feeding) or y_{t-1}.
        extra = hidden if (self.attention in ("none", "bahdanau") or self.input_feeding) else 0
        self.rnn = make_rnn(config.rnn_type, config.embedding_size + extra, hidden, config.num_decoder_layers,
                            config.dropout)
        if self.attention == "bahdanau":
            self.query_proj = nn.Linear(hidden, hidden, bias=False)  # W_s
            self.key_proj = nn.Linear(hidden, hidden, bias=True)  # W_h (with the bias of the additive score)
            self.energy = nn.Linear(hidden, 1, bias=False)  # v
        elif self.attention == "luong" and config.luong_score == "general":
            self.key_proj = nn.Linear(hidden, hidden, bias=False)  # W_a, applied to h_j once per call
        self.output_proj = nn.Linear(2 * hidden, hidden)  # W_o in o_t = tanh(W_o [s_t; c_t])
        # Without a dependency between steps other than the RNN, the whole sequence runs in one RNN call.
        self.parallel = self.attention == "none" or (self.attention == "luong" and not self.input_feeding)

    def attend(self, query, keys, values, mask):
        """``query (batch, q_len, hidden)``, ``keys``/``values`` ``(batch, src_len, hidden)``, ``mask (batch,
        src_len)`` bool -> ``context (batch, q_len, hidden)``, ``weights (batch, q_len, src_len)``."""
        if self.attention == "bahdanau":
            scores = self.energy(torch.tanh(self.query_proj(query)[:, :, None] + keys[:, None])).squeeze(-1)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))
        scores = scores.masked_fill(~mask[:, None, :], torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights, values), weights

    def forward(self, input_ids, encoder_states, encoder_mask, state, feed=None, decoder_attention_mask=None,
                inputs_embeds=None, output_hidden_states=False):
        if inputs_embeds is None:
            check_input_ids(input_ids, self.embed_tokens.weight.shape[0], "decoder_input_ids", "vocab_size")
            inputs_embeds = self.embed_tokens(input_ids)
        batch, tgt_len = inputs_embeds.shape[:2]
        embeds = self.dropout(inputs_embeds)
        mask = encoder_mask.bool()
        keys = fixed_context = None
        if self.attention == "none":
            fixed_context = final_states(encoder_states, mask, self.config.bidirectional_encoder)
        else:  # W_h h_j (bahdanau) or W_a h_j (luong "general"), once per call
            keys = self.key_proj(encoder_states) if hasattr(self, "key_proj") else encoder_states
        step_mask = None if decoder_attention_mask is None else decoder_attention_mask[:, -tgt_len:].bool()
        traced = traced_over_time(embeds)  # exported: the loops over time run as scans, whatever tgt_len
        if traced and step_mask is None:
            step_mask = torch.ones(batch, tgt_len, dtype=torch.bool, device=embeds.device)
        if step_mask is not None and not traced and bool(step_mask.all()):
            step_mask = None

        if self.parallel and (step_mask is None or traced):
            rnn_in = embeds if fixed_context is None else torch.cat(
                [embeds, fixed_context[:, None].expand(batch, tgt_len, -1)], dim=-1)
            if traced:  # a padded step keeps the state, its output is the step's (as the loop below gives)
                rnn_out, state, below = run_masked_scan(self.rnn, rnn_in, step_mask, state, zero_padding=False)
            else:
                rnn_out, state, below = run_stack(self.rnn, rnn_in, state, output_hidden_states, owner=self)
            if fixed_context is not None:
                context, weights = fixed_context[:, None].expand(batch, tgt_len, -1), None
            else:
                context, weights = self.attend(rnn_out, keys, encoder_states, mask)
            outputs = torch.tanh(self.output_proj(torch.cat([rnn_out, context], dim=-1)))
            return outputs, state, feed, weights, (inputs_embeds, *below, outputs) if output_hidden_states else None

        if traced:
            recur = recurrent_step(self.rnn)
        else:
            def recur(rnn_in, state):
                rnn_out, state, below = run_stack(self.rnn, rnn_in[:, None], state, output_hidden_states)
                return rnn_out[:, 0], state, [b[:, 0] for b in below or ()]

        # one step, on (batch, width) tensors; tensors as arguments, for checkpointing
        def step(x, state, feed, keep, keys, encoder_states, fixed_context):
            weights = None
            if self.attention == "bahdanau":
                top = state[0][-1] if isinstance(state, tuple) else state[-1]  # s_{t-1}, top layer
                context, weights = (a[:, 0] for a in self.attend(top[:, None], keys, encoder_states, mask))
                rnn_in = torch.cat([x, context], dim=-1)
            elif self.attention == "none":
                context, rnn_in = fixed_context, torch.cat([x, fixed_context], dim=-1)
            else:
                rnn_in = torch.cat([x, feed], dim=-1) if self.input_feeding else x
            rnn_out, new_state, below = recur(rnn_in, state)
            if self.attention == "luong":
                context, weights = (a[:, 0] for a in self.attend(rnn_out[:, None], keys, encoder_states, mask))
            out = torch.tanh(self.output_proj(torch.cat([rnn_out, context], dim=-1)))
            if self.input_feeding:  # o_t is the next step's input
                feed = out if keep is None else torch.where(keep[:, None], out, feed)
            return out, new_state if keep is None else _keep_rows(keep, new_state, state), feed, weights, below

        if self.input_feeding and feed is None:
            feed = embeds.new_zeros(batch, self.config.hidden_size)
        if traced:
            return self._scan(step, embeds, state, feed, step_mask, keys, encoder_states, fixed_context,
                              inputs_embeds if output_hidden_states else None)
        outputs, all_weights, below_steps = [], [], []
        for t in range(tgt_len):  # each step checkpointed when the decoder is (attention is most of its memory)
            keep = None if step_mask is None else step_mask[:, t]
            out, state, feed, weights, below = checkpointed(self, step, embeds[:, t], state, feed, keep, keys,
                                                            encoder_states, fixed_context)
            outputs.append(out)
            below_steps.append(below)
            if weights is not None:
                all_weights.append(weights)
        outputs = torch.stack(outputs, dim=1)
        weights = torch.stack(all_weights, dim=1) if all_weights else None
        if not output_hidden_states:
            return outputs, state, feed, weights, None
        return outputs, state, feed, weights, (inputs_embeds, *(torch.stack(layer, 1) for layer in zip(*below_steps)),
                                               outputs)

    def _scan(self, step, embeds, state, feed, step_mask, keys, encoder_states, fixed_context, inputs_embeds):
        """The loop over time of :meth:`forward` (attention before or fed into each step) as one ``scan``, for traced
        graphs with a dynamic target length. The carry is flat: each layer's h (and c), then Luong's feed vector,
        each ``(batch, hidden)`` (a stacked state's batch stride would tie the graph to the example's batch size).
        ``inputs_embeds`` (for the hidden states) or None."""
        from torch._higher_order_ops.scan import scan

        parts = state if isinstance(state, tuple) else (state,)
        layers = parts[0].shape[0]

        def flat(parts, feed):  # fresh tensors, as scan wants
            return (*(layer.clone() for part in parts for layer in part.unbind(0)),
                    *((feed.clone(),) if self.input_feeding else ()))

        def unflat(carry):
            state = tuple(torch.stack(carry[i * layers : (i + 1) * layers]) for i in range(len(parts)))
            return state if len(state) == 2 else state[0], carry[-1] if self.input_feeding else None

        def body(carry, slices):
            x, keep = slices
            out, state, feed, weights, below = step(x, *unflat(carry), keep, keys, encoder_states, fixed_context)
            return flat(state if isinstance(state, tuple) else (state,), feed), tuple(
                y.clone() for y in (out, weights, *below))

        carry, ys = scan(body, flat(parts, feed), (embeds.transpose(0, 1), step_mask.transpose(0, 1)))
        outputs, weights, *below = (y.transpose(0, 1) for y in ys)
        state, feed = unflat(carry)
        return outputs, state, feed, weights, None if inputs_embeds is None else (inputs_embeds, *below, outputs)


class RnnSeq2SeqPreTrainedModel(PreTrainedModel):
    config_class = RnnSeq2SeqConfig
    config: RnnSeq2SeqConfig
    base_model_prefix = "model"
    _no_split_modules = ["RnnSeq2SeqEncoder", "RnnSeq2SeqDecoder"]
    supports_gradient_checkpointing = True  # encoder layers, decoder layers (or steps)

    @torch.no_grad()
    def _init_weights(self, module):  # recurrent layers as init_recurrent_ does, the rest as transformers does
        if isinstance(module, (nn.GRU, nn.LSTM, nn.RNN)):
            init_recurrent_(module, forget_gate_bias="bias_hh")
        else:
            super()._init_weights(module)

    def _resize_token_embeddings(self, new_num_tokens, pad_to_multiple_of=None, mean_resizing=True):
        """Resizes the target side (decoder embeddings, output layer, ``vocab_size``), and the source side too when both
        share one vocabulary; returns the encoder embeddings when shared, else the decoder's."""
        config, model = self.config, self.base_model
        shared = config.source_vocab_size == config.vocab_size
        decoder = self._get_resized_embeddings(model.decoder.embed_tokens, new_num_tokens, pad_to_multiple_of,
                                               mean_resizing)
        model.decoder.embed_tokens = decoder
        size = decoder.num_embeddings
        head = self.get_output_embeddings()
        if head is not None:
            self.set_output_embeddings(self._get_resized_lm_head(head, size, mean_resizing=mean_resizing))
        if shared:
            model.encoder.embed_tokens = self._get_resized_embeddings(model.encoder.embed_tokens, size,
                                                                      mean_resizing=mean_resizing)
            config.source_vocab_size = size
        return model.encoder.embed_tokens if shared else decoder


class RnnSeq2SeqModel(EncoderDecoderMixin, RnnSeq2SeqPreTrainedModel):
    """Encoder, bridge and decoder; returns the decoder's attentional vectors o_t. The bridge maps the encoder's final
    state c (:func:`final_states`) to the decoder's s_0 = tanh(W_b c + b_b), a block per decoder layer (and LSTM
    part)."""

    def __init__(self, config):
        super().__init__(config)
        state_parts = 2 if config.rnn_type == "lstm" else 1
        self.encoder = RnnSeq2SeqEncoder(config)
        self.bridge = nn.Linear(config.hidden_size, state_parts * config.num_decoder_layers * config.hidden_size)
        self.decoder = RnnSeq2SeqDecoder(config)
        self.post_init()

    def initial_state(self, encoder_states, attention_mask):
        """Decoder initial state in torch's layout ``(num_decoder_layers, batch, hidden_size)`` (pair for LSTM)."""
        config = self.config
        summary = final_states(encoder_states, attention_mask.bool(), config.bidirectional_encoder)
        batch = summary.shape[0]
        state = torch.tanh(self.bridge(summary)).view(batch, -1, config.num_decoder_layers, config.hidden_size)
        state = state.permute(1, 2, 0, 3).contiguous()  # (parts, layers, batch, hidden)
        return (state[0], state[1]) if config.rnn_type == "lstm" else state[0]

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, cache=None, inputs_embeds=None, decoder_inputs_embeds=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, **kwargs) -> Seq2SeqModelOutput:
        """Source ``input_ids``/``attention_mask`` ``(batch, src_len)``; ``decoder_input_ids (batch, tgt_len)`` (the new
        ones with a ``cache``); ``decoder_attention_mask`` 0 marks padding that leaves the decoder state unchanged;
        ``encoder_outputs`` skips the encoder. ``output_attentions`` returns the weights as ``cross_attentions`` (a
        1-tuple of ``(batch, 1, tgt_len, src_len)``; None with ``attention="none"``)."""
        cache = pop_legacy_cache(kwargs, cache)
        config = self.config
        use_cache = config.use_cache if use_cache is None else use_cache
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states

        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids, attention_mask, inputs_embeds,
                                           output_hidden_states=output_hidden_states, return_dict=True)
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(last_hidden_state=encoder_outputs[0])
        encoder_states = encoder_outputs.last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(encoder_states.shape[:2], dtype=torch.long, device=encoder_states.device)
        check_attention_mask(attention_mask, encoder_states.shape[:2])
        if (decoder_input_ids is None) == (decoder_inputs_embeds is None):
            raise ValueError("RnnSeq2SeqModel needs exactly one of decoder_input_ids or decoder_inputs_embeds "
                             "(or labels, for the model with a LM head)")

        if cache is not None and not isinstance(cache, RnnSeq2SeqCache):
            if isinstance(cache, Cache) and cache.get_seq_length() == 0:
                cache = None  # an empty cache built by a generic caller: start from the bridge
            else:
                raise TypeError(f"RnnSeq2SeqModel keeps its decoder state in RnnSeq2SeqCache, "
                                f"got {type(cache).__name__}")
        if cache is not None and cache.hidden is not None:
            state, feed = torch_layout(cache.states), cache.feed
        else:
            state, feed = self.initial_state(encoder_states, attention_mask), None

        outputs, state, feed, weights, decoder_states = self.decoder(
            decoder_input_ids, encoder_states, attention_mask, state, feed, decoder_attention_mask,
            inputs_embeds=decoder_inputs_embeds, output_hidden_states=output_hidden_states,
        )
        if use_cache:
            cache = RnnSeq2SeqCache() if cache is None else cache
            cache.store(batch_first(state), outputs.shape[1])
            cache.feed = feed
        else:
            cache = None
        return Seq2SeqModelOutput(
            last_hidden_state=outputs,
            cache=cache,
            decoder_hidden_states=decoder_states,
            cross_attentions=(weights[:, None],) if output_attentions and weights is not None else None,
            encoder_last_hidden_state=encoder_states,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class RnnSeq2SeqForConditionalGeneration(EncoderDecoderMixin, RnnSeq2SeqPreTrainedModel,
                                         GenerationMixin):
    """:class:`RnnSeq2SeqModel` + output layer p(y_t | y_<t, x) = softmax(U o_t + b). Without ``decoder_input_ids`` the
    decoder reads ``labels`` shifted right behind ``config.decoder_start_token_id`` (teacher forcing)."""

    _tied_weights_keys = {"lm_head.weight": "model.decoder.embed_tokens.weight"}
    _is_stateful = True

    def __init__(self, config):
        super().__init__(config)
        self.model = RnnSeq2SeqModel(config)
        self.dropout = nn.Dropout(config.dropout)
        head_input = config.hidden_size
        if config.tie_word_embeddings and config.embedding_size != config.hidden_size:
            self.output_projection = nn.Linear(config.hidden_size, config.embedding_size, bias=False)
            head_input = config.embedding_size
        else:
            self.output_projection = None
        self.lm_head = nn.Linear(head_input, config.vocab_size)
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls):
        # The decoder state lives in RnnSeq2SeqCache, built inside forward; generate must not wrap a DynamicCache.
        return False

    def get_decoder_input_embeddings(self):
        return self.model.decoder.embed_tokens

    def prepare_decoder_input_ids_from_labels(self, labels):
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, cache=None, inputs_embeds=None, decoder_inputs_embeds=None, labels=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, **kwargs) -> Seq2SeqLMOutput:
        """:meth:`RnnSeq2SeqModel.forward` plus ``labels (batch, tgt_len)`` -> ``logits (batch, tgt_len, vocab_size)``,
        the mean token cross-entropy over labels != -100, ``cache`` and ``cross_attentions``."""
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)

        outputs = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                             pop_legacy_cache(kwargs, cache), inputs_embeds, decoder_inputs_embeds, use_cache,
                             output_attentions, output_hidden_states, return_dict=True)
        hidden = self.dropout(outputs.last_hidden_state)
        if self.output_projection is not None:
            hidden = self.output_projection(hidden)
        return seq2seq_lm_output(self, self.lm_head(hidden), labels, kwargs.get("num_items_in_batch"),
                                 **{key: value for key, value in outputs.items() if key != "last_hidden_state"})
