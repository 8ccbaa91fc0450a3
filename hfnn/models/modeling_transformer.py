"""A small Transformer (Vaswani et al., 2017) as ``transformers`` models: attention alone, softmax(Q K^T / sqrt(d)
+ M) V with M = -inf where attending is not allowed (future tokens, padding). One pre-norm block (GPT-2) serves
:class:`TransformerForCausalLM`, :class:`TransformerForSequenceClassification` (on the last real token) and
:class:`TransformerForConditionalGeneration` (encoder-decoder with cross-attention).

Positions are ``learned``, ``sinusoidal`` or ``rotary`` (RoPE), numbered from the attention mask so a left-padded
prompt gets the positions of the prompt alone. One boolean mask per forward serves every layer (none without
padding in eager mode: the causal fast path; always when traced). Residual output projections start with std
``initializer_range / sqrt(2 * num_layers)``. References: nanoGPT (Karpathy), GPT-2, RoFormer (Su et al., 2021)."""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithPast,
    Seq2SeqLMOutput,
    SequenceClassifierOutputWithPast,
)
from transformers.modeling_utils import slice_logits_to_keep
from transformers.utils import can_return_tuple, logging
from transformers.utils.import_utils import is_tracing

from .caches import pop_legacy_cache
from .configuration_transformer import TransformerConfig
from .decoding import DirectDecodingMixin
from .input_checks import check_input_ids
from .masks import real_token_mask
from .modeling_utils import EncoderDecoderMixin
from .outputs import classifier_dropout, classifier_output, seq2seq_lm_output, shift_tokens_right

logger = logging.get_logger(__name__)

__all__ = [
    "TransformerPreTrainedModel", "TransformerModel", "TransformerForCausalLM", "TransformerForSequenceClassification",
    "TransformerForConditionalGeneration", "shift_tokens_right",
]


# -- Positions -------------------------------------------------------------------------------------


class SinusoidalPositions(nn.Module):
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...): ``(batch|1, seq)`` ids -> ``(batch|1, seq, dim)``.
    The table is a non-persistent buffer, recomputed rather than saved."""

    def __init__(self, num_positions: int, dim: int):
        super().__init__()
        self.num_positions, self.dim = num_positions, dim
        self.register_buffer("table", self.compute_table(), persistent=False)

    def compute_table(self) -> torch.Tensor:
        position = torch.arange(self.num_positions, dtype=torch.float32)[:, None]
        inv_freq = torch.exp(torch.arange(0, self.dim, 2, dtype=torch.float32) * (-math.log(10000.0) / self.dim))
        table = torch.zeros(self.num_positions, self.dim)
        table[:, 0::2] = torch.sin(position * inv_freq)
        table[:, 1::2] = torch.cos(position * inv_freq)[:, : self.dim // 2]
        return table

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(position_ids, self.table)


class RotaryPositions(nn.Module):
    """RoPE: dimension pair (j, j + head_dim/2) at position p is rotated by p * theta^(-2j / head_dim).
    ``forward(position_ids (batch|1, seq))`` -> ``(cos, sin)``, each ``(batch|1, 1, seq, head_dim)``."""

    def __init__(self, num_positions: int, head_dim: int, theta: float):
        super().__init__()
        self.num_positions, self.head_dim, self.theta = num_positions, head_dim, theta
        cos, sin = self.compute_tables()
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def compute_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        angles = torch.outer(torch.arange(self.num_positions, dtype=torch.float32), inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.embedding(position_ids, self.cos)[:, None], F.embedding(position_ids, self.sin)[:, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x (batch, heads, seq, head_dim)``: x * cos + rotate_half(x) * sin."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


# -- Attention -------------------------------------------------------------------------------------


def flash_kernel_is_slow(query: torch.Tensor) -> bool:
    """Whether attention runs on the CPU in bfloat16 or float16 (the tensors' dtype, or the one CPU autocast
    computes in). There PyTorch's flash-attention kernel, its pick whenever there is no attention dropout, is
    several times slower than its plain one at these models' sizes (measured in bench/RESULTS.md, section
    "Reduced precision on the CPU": ``python -m bench --only precision``)."""
    if query.device.type != "cpu":
        return False
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else query.dtype
    return dtype in (torch.bfloat16, torch.float16)


def attend(query, key, value, mask=None, is_causal=False, dropout_p=0.0, need_weights=False):
    """softmax(Q K^T / sqrt(d) + M) V over ``(batch, heads, len, head_dim)`` tensors; ``mask`` None or boolean
    (True: may attend), or ``is_causal``. Returns ``(output, weights or None)``: PyTorch's fused attention unless
    the weights are asked for, with its plain (math) kernel in half precision on the CPU
    (:func:`flash_kernel_is_slow`)."""
    if not need_weights:
        if flash_kernel_is_slow(query) and not is_tracing(query):
            with sdpa_kernel(SDPBackend.MATH):
                return F.scaled_dot_product_attention(query, key, value, mask, dropout_p, is_causal), None
        return F.scaled_dot_product_attention(query, key, value, mask, dropout_p, is_causal), None
    scores = (query @ key.transpose(-2, -1)) / math.sqrt(query.size(-1))
    if is_causal:
        q_len, kv_len = scores.shape[-2:]
        mask = torch.ones(q_len, kv_len, dtype=torch.bool, device=scores.device).tril(kv_len - q_len)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    output = F.dropout(weights, p=dropout_p) @ value if dropout_p > 0 else weights @ value
    return output, weights


class TransformerAttention(nn.Module):
    """What self- and cross-attention share: the heads, the attention dropout and the output projection."""

    def __init__(self, config: TransformerConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_dropout = config.attention_dropout

    def split_heads(self, projected: torch.Tensor, parts: int):
        """``(batch, seq, parts * hidden)`` -> ``parts`` tensors ``(batch, heads, seq, head_dim)``."""
        batch, seq = projected.shape[:2]
        return projected.view(batch, seq, parts, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def attend_and_project(self, query, key, value, mask, is_causal, output_attentions):
        """:func:`attend` over the heads, then the heads concatenated and projected: ``(batch, seq, hidden)``."""
        dropout_p = self.attention_dropout if self.training else 0.0
        output, weights = attend(query, key, value, mask, is_causal, dropout_p, output_attentions)
        return self.out_proj(output.transpose(1, 2).flatten(2)), weights


class TransformerSelfAttention(TransformerAttention):
    """Multi-head self-attention with one fused Q/K/V projection (hidden -> 3 * hidden)."""

    def __init__(self, config: TransformerConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.qkv_proj = nn.Linear(config.hidden_size, 3 * config.hidden_size)

    def forward(self, hidden_states, mask=None, is_causal=False, rotary=None, cache=None, output_attentions=False):
        """``(batch, seq, hidden)`` -> ``(batch, seq, hidden)``, weights or None; ``rotary``: ``(cos, sin)``."""
        query, key, value = self.split_heads(self.qkv_proj(hidden_states), 3)  # one matrix product for all
        if rotary is not None:
            query, key = apply_rotary(query, *rotary), apply_rotary(key, *rotary)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        return self.attend_and_project(query, key, value, mask, is_causal, output_attentions)


class TransformerCrossAttention(TransformerAttention):
    """Attention from the decoder (queries) to the encoder output, whose keys and values are computed once per
    generation and kept in the cross-attention half of an ``EncoderDecoderCache``."""

    def __init__(self, config: TransformerConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.kv_proj = nn.Linear(config.hidden_size, 2 * config.hidden_size)

    def forward(self, hidden_states, encoder_hidden_states, mask=None, cache=None, output_attentions=False):
        (query,) = self.split_heads(self.q_proj(hidden_states), 1)
        if cache is not None and cache.is_updated.get(self.layer_idx):
            stored = cache.cross_attention_cache.layers[self.layer_idx]
            key, value = stored.keys, stored.values
        else:
            key, value = self.split_heads(self.kv_proj(encoder_hidden_states), 2)
            if cache is not None:
                key, value = cache.cross_attention_cache.update(key, value, self.layer_idx)
                cache.is_updated[self.layer_idx] = True
        return self.attend_and_project(query, key, value, mask, False, output_attentions)


# -- Block -----------------------------------------------------------------------------------------


class TransformerMLP(nn.Module):  # position-wise feed-forward: hidden -> intermediate -> activation -> hidden

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.fc_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.fc_out = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states):
        return self.fc_out(self.act(self.fc_in(hidden_states)))


class TransformerBlock(GradientCheckpointingLayer):
    """Pre-norm block: x += Dropout(SelfAttention(LN(x))); x += Dropout(CrossAttention(LN(x), encoder_output)) (the
    encoder-decoder's decoder only); x += Dropout(MLP(LN(x))). ``num_layers``: depth of its stack (scaled init)."""

    def __init__(self, config: TransformerConfig, layer_idx: int, num_layers: int, add_cross_attention: bool):
        super().__init__()
        self.self_attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = TransformerSelfAttention(config, layer_idx)
        if add_cross_attention:
            self.cross_attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
            self.cross_attn = TransformerCrossAttention(config, layer_idx)
        else:
            self.cross_attn = None
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = TransformerMLP(config)
        self.dropout = config.dropout
        # GPT-2: what writes into the residual stream starts with std / sqrt(2 * layers) (_init_weights)
        for projection in (self.self_attn.out_proj, self.mlp.fc_out, getattr(self.cross_attn, "out_proj", None)):
            if projection is not None:
                projection.init_std_scale = 1 / math.sqrt(2 * num_layers)

    def forward(self, hidden_states, encoder_hidden_states=None, mask=None, is_causal=False, rotary=None,
                encoder_mask=None, cache=None, output_attentions=False):
        """-> ``(hidden_states, self-attention weights, cross-attention weights)`` (weights None unless asked for).
        The tensors are positional arguments for activation checkpointing."""
        self_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
        attn_output, self_weights = self.self_attn(
            self.self_attn_norm(hidden_states), mask, is_causal, rotary, self_cache, output_attentions
        )
        hidden_states = hidden_states + F.dropout(attn_output, self.dropout, self.training)

        cross_weights = None
        if self.cross_attn is not None:
            cross_output, cross_weights = self.cross_attn(
                self.cross_attn_norm(hidden_states), encoder_hidden_states, encoder_mask,
                cache if isinstance(cache, EncoderDecoderCache) else None, output_attentions,
            )
            hidden_states = hidden_states + F.dropout(cross_output, self.dropout, self.training)

        mlp_output = self.mlp(self.mlp_norm(hidden_states))
        hidden_states = hidden_states + F.dropout(mlp_output, self.dropout, self.training)
        return hidden_states, self_weights, cross_weights


# -- Models ----------------------------------------------------------------------------------------


class TransformerPreTrainedModel(PreTrainedModel):
    config_class = TransformerConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["TransformerBlock"]
    _supports_sdpa = True

    def _init_weights(self, module):
        super()._init_weights(module)  # N(0, initializer_range), biases 0, LayerNorm 1 and 0
        if isinstance(module, nn.Linear) and hasattr(module, "init_std_scale"):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range * module.init_std_scale)
        elif isinstance(module, SinusoidalPositions):
            init.copy_(module.table, module.compute_table())
        elif isinstance(module, RotaryPositions):
            cos, sin = module.compute_tables()
            init.copy_(module.cos, cos)
            init.copy_(module.sin, sin)

    def _validate_generated_length(self, generation_config, input_ids_length, has_default_max_length):
        """A generation length past the decoder's positions is lowered to them, with a warning, before the first
        step (transformers lowers only a default length), so that generation ends there with its output instead
        of failing when it gets there. The tokens fed to the decoder are all but the last one, so ``max_length``
        may be one more than the positions."""
        super()._validate_generated_length(generation_config, input_ids_length, has_default_max_length)
        positions = self.config.max_position_embeddings
        if generation_config.max_length - 1 > positions:
            name = "decoder_input_ids" if self.config.is_encoder_decoder else "input_ids"
            logger.warning(
                f"generation asked for length {generation_config.max_length} ({name} of {input_ids_length} tokens "
                f"plus new ones), past max_position_embeddings={positions}: it stops at {positions + 1}, "
                f"{max(positions + 1 - input_ids_length, 0)} new tokens at most")
            generation_config.max_length = positions + 1


class TransformerModel(TransformerPreTrainedModel):
    """Token and position embeddings, a stack of blocks and a final LayerNorm: the decoder-only backbone, or the
    encoder (``is_causal=False``) or decoder (``add_cross_attention=True``) of the encoder-decoder."""

    def __init__(self, config: TransformerConfig, is_causal: bool = True, add_cross_attention: bool = False,
                 num_layers: int | None = None, vocab_size: int | None = None):
        super().__init__(config)
        if config.is_encoder_decoder and num_layers is None:
            raise ValueError(
                "TransformerModel is the decoder-only backbone; this config has is_encoder_decoder=True: "
                "use TransformerForConditionalGeneration (AutoModelForSeq2SeqLM)"
            )
        self.is_causal = is_causal
        self.add_cross_attention = add_cross_attention
        self.num_layers = num_layers if num_layers is not None else config.num_hidden_layers
        self.max_positions = config.max_position_embeddings

        self.embed_tokens = nn.Embedding(vocab_size or config.vocab_size, config.hidden_size)
        kind, positions = config.position_embedding_type, config.max_position_embeddings
        self.embed_positions = (nn.Embedding(positions, config.hidden_size) if kind == "learned"
                                else SinusoidalPositions(positions, config.hidden_size) if kind == "sinusoidal"
                                else None)
        self.rotary = RotaryPositions(positions, config.head_dim, config.rope_theta) if kind == "rotary" else None
        self.dropout = config.dropout
        self.layers = nn.ModuleList(
            TransformerBlock(config, i, self.num_layers, add_cross_attention) for i in range(self.num_layers)
        )
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def _self_attention_mask(self, padding_mask, q_len, past_len, device):
        """``(mask, is_causal)`` for ``attend``, shared by every layer; ``padding_mask`` ``(batch, past + q_len)`` or
        None (then no mask: a causal prefill uses the kernel's ``is_causal``, one new token sees the whole cache)."""
        if padding_mask is None:
            if not self.is_causal or q_len == 1:
                return None, False
            if past_len == 0:
                return None, True
        kv_len = past_len + q_len
        mask = None
        if self.is_causal:
            query_pos = torch.arange(past_len, kv_len, device=device)[:, None]
            key_pos = torch.arange(kv_len, device=device)[None, :]
            mask = (key_pos <= query_pos)[None, None]  # (1, 1, q_len, kv_len)
        if padding_mask is not None:
            keys = padding_mask.bool()[:, None, None, :]  # (batch, 1, 1, kv_len)
            mask = keys if mask is None else mask & keys
            if self.is_causal:
                # a padding query (left padding) would see no key at all: let it see itself so the
                # softmax stays finite; its output is never used
                mask = mask | (key_pos == query_pos)
        return mask, False

    @can_return_tuple
    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.LongTensor | None = None, inputs_embeds: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None, encoder_attention_mask: torch.Tensor | None = None,
                cache: Cache | None = None, use_cache: bool | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, **kwargs):
        """``input_ids (batch, seq)`` (new ones with a cache) or ``inputs_embeds``; ``attention_mask (batch, past +
        seq)``; ``position_ids`` default to the count of real tokens; ``encoder_hidden_states`` / ``_attention_mask``
        for a decoder's cross-attention; ``cache`` returned with ``use_cache`` (default ``config.use_cache`` in eval
        mode). Returns ``BaseModelOutputWithPastAndCrossAttentions`` (``BaseModelOutput`` for the encoder)."""
        config = self.config
        cache = pop_legacy_cache(kwargs, cache)
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if use_cache is None:
            use_cache = cache is not None or (config.use_cache and not self.training)
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            use_cache = False
        if not self.is_causal:
            use_cache = False  # the encoder reads its input once
        if use_cache and cache is None:
            cache = DynamicCache(config=config)
            if self.add_cross_attention:
                cache = EncoderDecoderCache(cache, DynamicCache(config=config))
        if not use_cache:
            cache = None

        # 1. token embeddings
        if inputs_embeds is None:
            check_input_ids(input_ids, self.embed_tokens.weight.shape[0])
            inputs_embeds = self.embed_tokens(input_ids)
        batch, seq, _ = inputs_embeds.shape
        device = inputs_embeds.device
        past_len = cache.get_seq_length() if cache is not None else 0
        traced = is_tracing(inputs_embeds)
        if past_len + seq > self.max_positions and not traced:
            raise ValueError(
                f"input of length {past_len + seq} is longer than max_position_embeddings={self.max_positions}"
            )

        # 2. padding: masks are built only when some position is padded (always when traced: the graph reads the mask)
        padding_mask = encoder_mask = None
        if attention_mask is not None:
            if attention_mask.shape != (batch, past_len + seq):
                raise ValueError(
                    f"attention_mask must have shape (batch, past + seq) = {(batch, past_len + seq)}, "
                    f"got {tuple(attention_mask.shape)}"
                )
            if traced or not bool(attention_mask.all()):
                padding_mask = attention_mask
        if encoder_attention_mask is not None and (traced or not bool(encoder_attention_mask.all())):
            encoder_mask = encoder_attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, src)
        mask, is_causal = self._self_attention_mask(padding_mask, seq, past_len, device)

        # 3. positions: real tokens are numbered 0, 1, 2, ... whatever padding precedes them
        if position_ids is None:
            if padding_mask is not None:
                position_ids = (padding_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past_len:]
            else:
                position_ids = torch.arange(past_len, past_len + seq, device=device)[None]
        hidden_states = inputs_embeds
        rotary = None
        if self.rotary is not None:
            rotary = tuple(t.to(hidden_states.dtype) for t in self.rotary(position_ids))
        else:
            hidden_states = hidden_states + self.embed_positions(position_ids).to(hidden_states.dtype)
        hidden_states = F.dropout(hidden_states, self.dropout, self.training)

        # 4. the blocks
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross_attentions = () if output_attentions and self.add_cross_attention else None
        for block in self.layers:
            hidden_states, self_weights, cross_weights = block(
                hidden_states, encoder_hidden_states, mask, is_causal, rotary, encoder_mask, cache, output_attentions
            )
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (self_weights,)
                if all_cross_attentions is not None:
                    all_cross_attentions += (cross_weights,)
        hidden_states = self.norm(hidden_states)

        if not self.is_causal:
            return BaseModelOutput(hidden_states, hidden_states=all_hidden_states, attentions=all_attentions)
        return BaseModelOutputWithPastAndCrossAttentions(
            hidden_states, cache, all_hidden_states, all_attentions, cross_attentions=all_cross_attentions
        )


class TransformerForCausalLM(DirectDecodingMixin, TransformerPreTrainedModel, GenerationMixin):
    """Decoder-only language model: ``p(x_t | x_<t) = softmax(W h_t)``, with W tied to the token
    embedding by default (``tie_word_embeddings``)."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        self.model = TransformerModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @can_return_tuple
    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.LongTensor | None = None, cache: Cache | None = None,
                inputs_embeds: torch.Tensor | None = None, labels: torch.LongTensor | None = None,
                use_cache: bool | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, logits_to_keep: int | torch.Tensor = 0,
                **kwargs) -> CausalLMOutputWithPast:
        """``input_ids (batch, seq)`` -> ``logits (batch, seq, vocab_size)`` (the last ``logits_to_keep`` only);
        ``labels`` are the input ids (shifted inside), -100 for no loss."""
        outputs = self.model(input_ids, attention_mask, position_ids, inputs_embeds,
                             cache=pop_legacy_cache(kwargs, cache), use_cache=use_cache,
                             output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                             return_dict=True)
        logits = self.lm_head(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep))
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss, logits, outputs.cache, outputs.hidden_states, outputs.attentions)

    # The direct decoding loop (DirectDecodingMixin): the new token, the cache and (if padded) the growing mask.
    _FAST_DECODE_KWARGS = frozenset({"attention_mask", "position_ids", "logits_to_keep", "use_cache", "cache"})

    @staticmethod
    def _default_positions(position_ids, attention_mask) -> bool:
        """Whether ``position_ids`` number the real tokens 0, 1, 2, ... as forward does by default."""
        if position_ids is None:
            return True
        if attention_mask is None:
            expected = torch.arange(position_ids.shape[-1], device=position_ids.device)
            return torch.equal(position_ids, expected.expand_as(position_ids))
        if (position_ids.dim() != 2 or position_ids.shape[1:] != attention_mask.shape[1:]
                or position_ids.shape[0] not in (1, attention_mask.shape[0])):
            return False
        real = attention_mask.bool()
        return torch.equal(position_ids.expand(real.shape)[real], (attention_mask.long().cumsum(-1) - 1)[real])

    def _decode_allowed(self, model_kwargs) -> bool:
        cache = model_kwargs.get("cache")
        return ((cache is None or (type(cache) is DynamicCache and cache.get_seq_length() == 0))
                and self._default_positions(model_kwargs.get("position_ids"), model_kwargs.get("attention_mask")))

    def _decode_start(self, input_ids, model_kwargs):
        cache = model_kwargs.get("cache")
        if cache is None:
            cache = DynamicCache(config=self.config)
        mask = model_kwargs.get("attention_mask")
        if mask is not None and bool(mask.all()):
            mask = None  # without padding, positions and visibility follow from the cache length
        logits = self(input_ids, attention_mask=mask, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        return logits, (cache, mask)

    def _decode_step(self, tokens, state):
        cache, mask = state
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
        return (self(tokens, attention_mask=mask, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1],
                (cache, mask))


class TransformerForSequenceClassification(TransformerPreTrainedModel):
    """The decoder-only backbone with a linear classifier on the last real token (from ``attention_mask``, else
    ``pad_token_id``), the one that has read the whole text (GPT-2): padding on either side changes nothing."""

    accepts_loss_kwargs = False

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = TransformerModel(config)
        self.dropout = classifier_dropout(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.LongTensor | None = None, inputs_embeds: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, **kwargs) -> SequenceClassifierOutputWithPast:
        """``input_ids (batch, seq)`` -> ``logits (batch, num_labels)``; ``labels`` as :func:`classification_loss`."""
        outputs = self.model(input_ids, attention_mask, position_ids, inputs_embeds, use_cache=False,
                             output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                             return_dict=True)
        hidden_states = outputs.last_hidden_state
        batch, seq = hidden_states.shape[:2]
        real = real_token_mask(attention_mask, input_ids, self.config.pad_token_id, (batch, seq), hidden_states.device,
                               type(self).__name__)
        last = (torch.arange(seq, device=hidden_states.device) * real).argmax(-1)
        pooled = hidden_states[torch.arange(batch, device=hidden_states.device), last]
        return classifier_output(self, self.score, self.dropout(pooled), labels, outputs,
                                 SequenceClassifierOutputWithPast)


class TransformerForConditionalGeneration(EncoderDecoderMixin, TransformerPreTrainedModel,
                                          GenerationMixin):
    """Encoder-decoder (Vaswani et al., 2017): a bidirectional encoder and a causal decoder whose blocks attend to
    the encoder output. With a shared vocabulary and ``tie_word_embeddings`` both embeddings and the output layer are
    one matrix."""

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        if not config.is_encoder_decoder:
            raise ValueError("TransformerForConditionalGeneration needs a config with is_encoder_decoder=True")
        self._tied_weights_keys = {"lm_head.weight": "decoder.embed_tokens.weight"}
        if config.source_vocab_size is None:
            self._tied_weights_keys["encoder.embed_tokens.weight"] = "decoder.embed_tokens.weight"
        self.encoder = TransformerModel(
            config, is_causal=False, num_layers=config.encoder_layers, vocab_size=config.encoder_vocab_size
        )
        self.decoder = TransformerModel(config, add_cross_attention=True, num_layers=config.decoder_layers)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def set_input_embeddings(self, value):
        super().set_input_embeddings(value)
        if self.config.source_vocab_size is None:
            self.decoder.embed_tokens = value

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    @can_return_tuple
    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.LongTensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                encoder_outputs: BaseModelOutput | tuple | None = None, cache: Cache | None = None,
                labels: torch.LongTensor | None = None, use_cache: bool | None = None,
                output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                inputs_embeds: torch.Tensor | None = None, decoder_inputs_embeds: torch.Tensor | None = None,
                decoder_position_ids: torch.LongTensor | None = None, logits_to_keep: int | torch.Tensor = 0,
                **kwargs) -> Seq2SeqLMOutput:
        """Source ``input_ids (batch, src)``, target ``decoder_input_ids (batch, tgt)`` (else ``labels`` shifted
        right) -> ``logits (batch, tgt, vocab_size)``; ``encoder_outputs`` skips the encoder."""
        config = self.config
        cache = pop_legacy_cache(kwargs, cache)
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids, attention_mask, inputs_embeds=inputs_embeds,
                                           output_attentions=output_attentions,
                                           output_hidden_states=output_hidden_states, return_dict=True)
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)

        decoder_outputs = self.decoder(
            decoder_input_ids, decoder_attention_mask, decoder_position_ids, decoder_inputs_embeds,
            encoder_outputs.last_hidden_state, attention_mask, cache, use_cache, output_attentions,
            output_hidden_states, return_dict=True,
        )
        logits = self.lm_head(slice_logits_to_keep(decoder_outputs.last_hidden_state, logits_to_keep))
        return seq2seq_lm_output(
            self, logits, labels, kwargs.get("num_items_in_batch"), cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states, decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states, encoder_attentions=encoder_outputs.attentions,
        )
