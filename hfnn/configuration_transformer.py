"""Configuration of the small Transformer family: decoder-only LM, sequence classifier, encoder-decoder."""

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

__all__ = ["TransformerConfig", "POSITION_EMBEDDING_TYPES"]

POSITION_EMBEDDING_TYPES = ("learned", "sinusoidal", "rotary")


def _check_positive_int(cls_name, field, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{cls_name}: {field} must be a positive integer, got {value!r}")


def _check_positive_number(cls_name, field, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{cls_name}: {field} must be a positive number, got {value!r}")


def _check_probability(cls_name, field, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{cls_name}: {field} must be a number in [0, 1), got {value!r}")


def _check_token_id(cls_name, field, value, vocab_size):
    if value is None:
        return
    ids = value if isinstance(value, (list, tuple)) and field == "eos_token_id" else [value]
    for token_id in ids:
        if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id < vocab_size:
            raise ValueError(f"{cls_name}: {field} must be an id in [0, vocab_size={vocab_size}), got {value!r}")


class TransformerConfig(PreTrainedConfig):
    r"""Configuration of the Transformer models of :mod:`hfnn.modeling_transformer`.

    One configuration describes the three members of the family: the decoder-only backbone
    (:class:`TransformerModel`) with its language-model and classification heads, and the
    encoder-decoder (:class:`TransformerForConditionalGeneration`, ``is_encoder_decoder=True``).
    Encoder and decoder share the width, number of heads and feed-forward size.

    Args:
        vocab_size: number of token ids (the target vocabulary of the encoder-decoder).
        hidden_size: width of the residual stream (d_model).
        num_hidden_layers: number of blocks of the decoder-only model; the default depth of the
            encoder and decoder stacks.
        num_attention_heads: attention heads per layer; must divide ``hidden_size``.
        intermediate_size: width of the feed-forward layer (default ``4 * hidden_size``).
        max_position_embeddings: longest sequence the model accepts (prompt plus generated tokens).
            Applies to every position type, rotary included: longer inputs raise ``ValueError``.
        position_embedding_type: ``"learned"`` (GPT-2), ``"sinusoidal"`` (Vaswani et al. 2017, fixed)
            or ``"rotary"`` (RoPE, Su et al. 2021, applied to queries and keys).
        rope_theta: base of the rotary frequencies.
        hidden_act: activation of the feed-forward layer, any key of ``transformers.activations.ACT2FN``.
        dropout: dropout on the embeddings and on the output of each residual branch.
        attention_dropout: dropout on the attention probabilities.
        layer_norm_eps: epsilon of the LayerNorms.
        initializer_range: standard deviation of the normal init; the output projections of each
            residual branch use ``initializer_range / sqrt(2 * num_layers)`` (GPT-2).
        tie_word_embeddings: share the token embedding matrix with the output layer (and, in the
            encoder-decoder with a shared vocabulary, with the encoder's embedding).
        use_cache: return a key/value cache from the forward pass (generation).
        pad_token_id, bos_token_id, eos_token_id: special token ids (hfnn tokenizers: 0, 2, 3).
        classifier_dropout: dropout before the classification layer (defaults to ``dropout``).
        is_encoder_decoder: build the encoder-decoder (sequence-to-sequence) model.
        encoder_layers, decoder_layers: depth of the encoder and decoder (default
            ``num_hidden_layers``); ``num_encoder_layers`` / ``num_decoder_layers`` are accepted as
            aliases.
        decoder_start_token_id: first token fed to the decoder (defaults to ``bos_token_id``).
        source_vocab_size: vocabulary size of the encoder input when source and target use different
            tokenizers; ``None`` means source and target share ``vocab_size``.
    """

    model_type = "hfnn-transformer"
    attribute_map = {"num_encoder_layers": "encoder_layers", "num_decoder_layers": "decoder_layers"}

    def __init__(
        self,
        vocab_size: int = 256,
        hidden_size: int = 128,
        num_hidden_layers: int = 4,
        num_attention_heads: int = 4,
        intermediate_size: int | None = None,
        max_position_embeddings: int = 256,
        position_embedding_type: str = "learned",
        rope_theta: float = 10000.0,
        hidden_act: str = "gelu",
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        layer_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = True,
        use_cache: bool = True,
        pad_token_id: int | None = 0,
        bos_token_id: int | None = 2,
        eos_token_id: int | list[int] | None = 3,
        classifier_dropout: float | None = None,
        is_encoder_decoder: bool = False,
        encoder_layers: int | None = None,
        decoder_layers: int | None = None,
        decoder_start_token_id: int | None = None,
        source_vocab_size: int | None = None,
        **kwargs,
    ):
        name = type(self).__name__
        if kwargs.get("model_type", self.model_type) != self.model_type:  # a config.json of another model
            raise ValueError(
                f"{name}: this configuration is for model type {kwargs['model_type']!r}, not {self.model_type!r}; "
                "load the folder with its own class or with the Auto classes (AutoConfig, AutoModel...)"
            )
        encoder_layers = kwargs.pop("num_encoder_layers", encoder_layers)
        decoder_layers = kwargs.pop("num_decoder_layers", decoder_layers)

        _check_positive_int(name, "vocab_size", vocab_size)
        _check_positive_int(name, "hidden_size", hidden_size)
        _check_positive_int(name, "num_hidden_layers", num_hidden_layers)
        _check_positive_int(name, "num_attention_heads", num_attention_heads)
        if hidden_size % num_attention_heads != 0:
            raise ValueError(
                f"{name}: hidden_size ({hidden_size}) must be divisible by num_attention_heads "
                f"({num_attention_heads})"
            )
        _check_positive_int(name, "intermediate_size", intermediate_size, allow_none=True)
        _check_positive_int(name, "max_position_embeddings", max_position_embeddings)
        if position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"{name}: position_embedding_type must be one of {POSITION_EMBEDDING_TYPES}, "
                f"got {position_embedding_type!r}"
            )
        if position_embedding_type == "rotary" and (hidden_size // num_attention_heads) % 2 != 0:
            raise ValueError(
                f"{name}: rotary positions need an even head size, got hidden_size // num_attention_heads = "
                f"{hidden_size // num_attention_heads}"
            )
        _check_positive_number(name, "rope_theta", rope_theta)
        if hidden_act not in ACT2FN:
            raise ValueError(f"{name}: hidden_act must be one of {sorted(ACT2FN)}, got {hidden_act!r}")
        _check_probability(name, "dropout", dropout)
        _check_probability(name, "attention_dropout", attention_dropout)
        if classifier_dropout is not None:
            _check_probability(name, "classifier_dropout", classifier_dropout)
        _check_positive_number(name, "layer_norm_eps", layer_norm_eps)
        _check_positive_number(name, "initializer_range", initializer_range)
        _check_positive_int(name, "encoder_layers", encoder_layers, allow_none=True)
        _check_positive_int(name, "decoder_layers", decoder_layers, allow_none=True)
        _check_positive_int(name, "source_vocab_size", source_vocab_size, allow_none=True)
        for field, value in (
            ("pad_token_id", pad_token_id),
            ("bos_token_id", bos_token_id),
            ("eos_token_id", eos_token_id),
            ("decoder_start_token_id", decoder_start_token_id),
        ):
            _check_token_id(name, field, value, vocab_size)
        if decoder_start_token_id is None:
            decoder_start_token_id = bos_token_id
        if is_encoder_decoder and decoder_start_token_id is None:
            raise ValueError(f"{name}: an encoder-decoder needs decoder_start_token_id (or bos_token_id), got None")
        if source_vocab_size is not None and not is_encoder_decoder:
            raise ValueError(f"{name}: source_vocab_size is only used with is_encoder_decoder=True")

        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size if intermediate_size is not None else 4 * hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.position_embedding_type = position_embedding_type
        self.rope_theta = float(rope_theta)
        self.hidden_act = hidden_act
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.layer_norm_eps = float(layer_norm_eps)
        self.initializer_range = float(initializer_range)
        self.tie_word_embeddings = bool(tie_word_embeddings)
        self.use_cache = bool(use_cache)
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.classifier_dropout = classifier_dropout
        self.encoder_layers = encoder_layers if encoder_layers is not None else num_hidden_layers
        self.decoder_layers = decoder_layers if decoder_layers is not None else num_hidden_layers
        self.decoder_start_token_id = decoder_start_token_id
        self.source_vocab_size = source_vocab_size
        super().__init__(is_encoder_decoder=bool(is_encoder_decoder), **kwargs)

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_attention_heads

    @property
    def encoder_vocab_size(self) -> int:
        """Vocabulary size of the encoder input (``source_vocab_size`` or the shared ``vocab_size``)."""
        return self.source_vocab_size if self.source_vocab_size is not None else self.vocab_size
