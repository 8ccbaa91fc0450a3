"""Configuration of the RNN encoder-decoder with or without attention (see :mod:`hfnn.models.modeling_rnn_seq2seq`)."""

from .configuration_utils import HfnnConfig, hfnn_config

__all__ = ["RnnSeq2SeqConfig", "RNN_TYPES", "ATTENTION_TYPES", "LUONG_SCORES"]

RNN_TYPES = ("gru", "lstm", "rnn_tanh")
ATTENTION_TYPES = ("none", "bahdanau", "luong")
LUONG_SCORES = ("dot", "general")


@hfnn_config
class RnnSeq2SeqConfig(HfnnConfig):
    """Configuration of :class:`RnnSeq2SeqModel` and :class:`RnnSeq2SeqForConditionalGeneration`.

    Args:
        source_vocab_size / vocab_size: number of source token ids (encoder input) / of target token ids (decoder
            input and output distribution), e.g. letters / phonemes for grapheme-to-phoneme.
        embedding_size: width of the source and target embeddings; defaults to ``hidden_size``.
        hidden_size: width of the decoder state s_t and of the encoder states h_j. With ``bidirectional_encoder``
            each direction has ``hidden_size // 2`` units, concatenated (as in OpenNMT), so it must then be even;
            every attention type compares vectors of the same width.
        num_encoder_layers / num_decoder_layers: stacked recurrent layers in the encoder / in the decoder (the
            latter also readable as ``num_hidden_layers``).
        rnn_type: ``"gru"``, ``"lstm"`` or ``"rnn_tanh"`` (the seed's h_i = tanh(W_x x_i + W_h h_{i-1} + b)).
        bidirectional_encoder: read the source both ways.
        attention: ``"none"`` (fixed context vector: the final encoder state initialises the decoder and is fed to
            every step), ``"bahdanau"`` (additive, e_tj = v^T tanh(W_s s_{t-1} + W_h h_j), from the previous decoder
            state, before the recurrent step) or ``"luong"`` (multiplicative, from the current decoder state).
        luong_score: ``"dot"`` (s_t^T h_j) or ``"general"`` (s_t^T W_a h_j); read only when ``attention="luong"``.
        input_feeding: Luong's input feeding (the previous attentional vector joins the decoder input); defaults to
            True for ``attention="luong"``, the only type it is defined for.
        dropout: dropout on the embeddings, between stacked recurrent layers and before the output layer.
        tie_word_embeddings: share the decoder input embedding with the output layer (with a projection from
            ``hidden_size`` to ``embedding_size`` when they differ).
        initializer_range: std of the normal init of embeddings and linear layers (recurrent weight matrices are
            orthogonal).
        pad_token_id / bos_token_id / eos_token_id: special target ids (the source uses the same pad id).
        decoder_start_token_id: first decoder input; defaults to ``bos_token_id``.
        max_length: default maximum length (start token included) of generated sequences."""

    model_type = "hfnn-rnn-seq2seq"
    attribute_map = {"num_hidden_layers": "num_decoder_layers"}
    keys_to_ignore_at_inference = ["cache", "encoder_last_hidden_state"]
    source_vocab_size: int = 64
    vocab_size: int = 64
    embedding_size: int | None = None
    hidden_size: int = 256
    num_encoder_layers: int = 1
    num_decoder_layers: int = 1
    rnn_type: str = "gru"
    bidirectional_encoder: bool = True
    attention: str = "bahdanau"
    luong_score: str = "general"
    input_feeding: bool | None = None
    dropout: float | int = 0.1
    tie_word_embeddings: bool = False
    initializer_range: float | int = 0.02
    use_cache: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 2
    eos_token_id: int | None = 3
    decoder_start_token_id: int | None = None
    # A field, so that `max_length` is a model default rather than a stray generation parameter.
    max_length: int = 64
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs):
        if "num_hidden_layers" in kwargs:  # alias of num_decoder_layers
            self.num_decoder_layers = kwargs.pop("num_hidden_layers")
        if self.embedding_size is None:
            self.embedding_size = self.hidden_size
        if self.input_feeding is None:
            self.input_feeding = self.attention == "luong"
        if self.decoder_start_token_id is None:
            self.decoder_start_token_id = self.bos_token_id
        super().__post_init__(**kwargs)

    def validate_fields(self):
        self.check_positive_int("source_vocab_size", "vocab_size", "hidden_size", "embedding_size",
                                "num_encoder_layers", "num_decoder_layers", "max_length")
        self.check_choice("rnn_type", RNN_TYPES)
        self.check_choice("attention", ATTENTION_TYPES)
        self.check_choice("luong_score", LUONG_SCORES)
        if self.bidirectional_encoder and self.hidden_size % 2:
            self._fail("hidden_size",
                       "even when bidirectional_encoder=True (each direction has hidden_size // 2 units)")
        if self.input_feeding and self.attention != "luong":
            self._fail("input_feeding", f"False unless attention='luong' (attention={self.attention!r})")
        self.check_probability("dropout")
        self.check_positive_number("initializer_range")
        self.check_token_ids("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")
        self.check_token_ids("pad_token_id", size_field="source_vocab_size")  # the source shares the pad id
        if self.decoder_start_token_id is None:
            self._fail("decoder_start_token_id", "set (or bos_token_id)")
        if self.is_encoder_decoder is not True:
            self._fail("is_encoder_decoder", "True for this encoder-decoder model")
