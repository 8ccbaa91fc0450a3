"""Configuration of the small Transformer family: decoder-only LM, sequence classifier, encoder-decoder."""

from transformers.activations import ACT2FN

from .configuration_utils import HfnnConfig, hfnn_config

__all__ = ["TransformerConfig", "POSITION_EMBEDDING_TYPES"]

POSITION_EMBEDDING_TYPES = ("learned", "sinusoidal", "rotary")


@hfnn_config
class TransformerConfig(HfnnConfig):
    """Configuration of the Transformer models of :mod:`hfnn.models.modeling_transformer`: the decoder-only backbone
    with its heads, and the encoder-decoder (``is_encoder_decoder=True``), whose stacks share width, heads and
    feed-forward size.

    Args:
        vocab_size: number of token ids (the target vocabulary of the encoder-decoder).
        hidden_size: width of the residual stream (d_model).
        num_hidden_layers: blocks of the decoder-only model; the default depth of the encoder and decoder.
        num_attention_heads: attention heads per layer; must divide ``hidden_size``.
        intermediate_size: width of the feed-forward layer (default ``4 * hidden_size``).
        max_position_embeddings: longest sequence accepted (prompt plus generated tokens), for every position
            type, rotary included: longer inputs raise ``ValueError``.
        position_embedding_type: ``"learned"`` (GPT-2), ``"sinusoidal"`` (Vaswani et al. 2017, fixed) or
            ``"rotary"`` (RoPE, Su et al. 2021, applied to queries and keys); ``rope_theta``: its frequency base.
        hidden_act: activation of the feed-forward layer, any key of ``transformers.activations.ACT2FN``.
        dropout / attention_dropout: dropout on the embeddings and each residual branch's output / on the
            attention probabilities; ``classifier_dropout`` before the classification layer (default ``dropout``).
        layer_norm_eps: epsilon of the LayerNorms.
        initializer_range: std of the normal init; each residual branch's output projection uses
            ``initializer_range / sqrt(2 * num_layers)`` (GPT-2).
        tie_word_embeddings: share the token embedding with the output layer (and, in the encoder-decoder with a
            shared vocabulary, with the encoder's embedding).
        pad_token_id, bos_token_id, eos_token_id: special token ids (hfnn tokenizers: 0, 2, 3).
        is_encoder_decoder: build the encoder-decoder (sequence-to-sequence) model.
        encoder_layers, decoder_layers: depth of the encoder and decoder (default ``num_hidden_layers``);
            ``num_encoder_layers`` / ``num_decoder_layers`` are accepted as aliases.
        decoder_start_token_id: first token fed to the decoder (default ``bos_token_id``).
        source_vocab_size: vocabulary size of the encoder input when source and target use different
            tokenizers; ``None``: they share ``vocab_size``."""

    model_type = "hfnn-transformer"
    attribute_map = {"num_encoder_layers": "encoder_layers", "num_decoder_layers": "decoder_layers"}

    vocab_size: int = 256
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int | None = None
    max_position_embeddings: int = 256
    position_embedding_type: str = "learned"
    rope_theta: float | int = 10000.0
    hidden_act: str = "gelu"
    dropout: float | int = 0.1
    attention_dropout: float | int = 0.1
    layer_norm_eps: float = 1e-5
    initializer_range: float | int = 0.02
    tie_word_embeddings: bool = True
    use_cache: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 2
    eos_token_id: int | list[int] | None = 3
    classifier_dropout: float | int | None = None
    is_encoder_decoder: bool = False
    encoder_layers: int | None = None
    decoder_layers: int | None = None
    decoder_start_token_id: int | None = None
    source_vocab_size: int | None = None

    def __post_init__(self, **kwargs):
        for alias, field in self.attribute_map.items():  # aliases given as keywords
            if alias in kwargs:
                setattr(self, field, kwargs.pop(alias))
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        if self.encoder_layers is None:
            self.encoder_layers = self.num_hidden_layers
        if self.decoder_layers is None:
            self.decoder_layers = self.num_hidden_layers
        if self.decoder_start_token_id is None:
            self.decoder_start_token_id = self.bos_token_id
        super().__post_init__(**kwargs)

    def validate_fields(self):
        self.check_positive_int("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                "intermediate_size", "max_position_embeddings", "encoder_layers", "decoder_layers")
        self.check_positive_int("source_vocab_size", allow_none=True)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"TransformerConfig: hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        self.check_choice("position_embedding_type", POSITION_EMBEDDING_TYPES)
        if self.position_embedding_type == "rotary" and self.head_dim % 2:
            self._fail("hidden_size", f"such that the head size (hidden_size // num_attention_heads = {self.head_dim}) "
                                      "is even for rotary positions")
        self.check_choice("hidden_act", sorted(ACT2FN))
        self.check_probability("dropout", "attention_dropout", "classifier_dropout")
        self.check_positive_number("rope_theta", "layer_norm_eps", "initializer_range")
        self.check_token_ids("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")
        if self.is_encoder_decoder and self.decoder_start_token_id is None:
            self._fail("decoder_start_token_id", "set (or bos_token_id) for an encoder-decoder")
        if self.source_vocab_size is not None and not self.is_encoder_decoder:
            self._fail("source_vocab_size", "None unless is_encoder_decoder=True")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // max(self.num_attention_heads, 1)  # validate_fields rejects 0 heads

    @property
    def encoder_vocab_size(self) -> int:
        """Vocabulary size of the encoder input (``source_vocab_size`` or the shared ``vocab_size``)."""
        return self.source_vocab_size if self.source_vocab_size is not None else self.vocab_size
