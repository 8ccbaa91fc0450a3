"""Configuration of the RNN encoder–decoder (seq2seq) model, with or without attention.

Seed note, items 8 and 9: an encoder reads the source into hidden states, a decoder generates the target from
them; ``attention="none"`` is the note's fixed-size context vector (the decoder sees only the encoder's final
state), ``"bahdanau"`` (additive) and ``"luong"`` (multiplicative) let every output step weight the source
positions differently.
"""

from transformers import PreTrainedConfig

__all__ = ["RnnSeq2SeqConfig", "RNN_TYPES", "ATTENTION_TYPES", "LUONG_SCORES"]

RNN_TYPES = ("gru", "lstm", "rnn_tanh")
ATTENTION_TYPES = ("none", "bahdanau", "luong")
LUONG_SCORES = ("dot", "general")


def _check_positive_int(cls_name, field, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{cls_name}: {field} must be a positive integer, got {value!r}")


def _check_probability(cls_name, field, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{cls_name}: {field} must be a number in [0, 1), got {value!r}")


def _check_bool(cls_name, field, value):
    if not isinstance(value, bool):
        raise ValueError(f"{cls_name}: {field} must be True or False, got {value!r}")


class RnnSeq2SeqConfig(PreTrainedConfig):
    r"""Configuration of :class:`RnnSeq2SeqModel` and :class:`RnnSeq2SeqForConditionalGeneration`.

    Source and target have their own vocabularies (e.g. letters -> ARPAbet phonemes for grapheme-to-phoneme),
    hence ``source_vocab_size`` (encoder embedding) next to ``vocab_size`` (decoder embedding and output layer).

    Args:
        source_vocab_size: number of source token ids (encoder input).
        vocab_size: number of target token ids (decoder input and output distribution).
        embedding_size: width of the source and target embeddings; defaults to ``hidden_size``.
        hidden_size: width of the decoder state s_t and of the encoder states h_j. With
            ``bidirectional_encoder`` each direction has ``hidden_size // 2`` units and the two are concatenated
            (as in OpenNMT), so ``hidden_size`` must then be even; every attention type then compares vectors of
            the same width.
        num_encoder_layers: stacked recurrent layers in the encoder.
        num_decoder_layers: stacked recurrent layers in the decoder (also readable as ``num_hidden_layers``).
        rnn_type: ``"gru"``, ``"lstm"`` or ``"rnn_tanh"`` (the seed's h_i = tanh(W_x x_i + W_h h_{i-1} + b)).
        bidirectional_encoder: read the source both ways.
        attention: ``"none"`` (fixed context vector: the final encoder state initialises the decoder and is fed
            to every step), ``"bahdanau"`` (additive, e_tj = v^T tanh(W_s s_{t-1} + W_h h_j), computed from the
            previous decoder state before the recurrent step) or ``"luong"`` (multiplicative, scores from the
            current decoder state after the recurrent step).
        luong_score: ``"dot"`` (s_t^T h_j) or ``"general"`` (s_t^T W_a h_j); only read when ``attention="luong"``.
        input_feeding: Luong's input feeding (the previous attentional vector is concatenated to the decoder
            input). Defaults to True for ``attention="luong"``; it is only defined for that attention type.
        dropout: dropout on the embeddings, between stacked recurrent layers and before the output layer.
        tie_word_embeddings: share the decoder input embedding with the output layer (a projection from
            ``hidden_size`` to ``embedding_size`` is inserted when they differ).
        initializer_range: standard deviation of the normal init of embeddings and linear layers (recurrent
            weight matrices are initialised orthogonally).
        pad_token_id / bos_token_id / eos_token_id: special target ids (the source uses the same pad id).
        decoder_start_token_id: first decoder input; defaults to ``bos_token_id``.
        max_length: default maximum length (start token included) of generated sequences.
    """

    model_type = "hfnn-rnn-seq2seq"
    attribute_map = {"num_hidden_layers": "num_decoder_layers"}
    keys_to_ignore_at_inference = ["cache", "encoder_last_hidden_state"]
    # Declared as a field so that `max_length` is a model default rather than a stray generation parameter.
    max_length: int = 64

    def __init__(
        self,
        source_vocab_size: int = 64,
        vocab_size: int = 64,
        embedding_size: int | None = None,
        hidden_size: int = 256,
        num_encoder_layers: int = 1,
        num_decoder_layers: int = 1,
        rnn_type: str = "gru",
        bidirectional_encoder: bool = True,
        attention: str = "bahdanau",
        luong_score: str = "general",
        input_feeding: bool | None = None,
        dropout: float = 0.1,
        tie_word_embeddings: bool = False,
        initializer_range: float = 0.02,
        use_cache: bool = True,
        pad_token_id: int | None = 0,
        bos_token_id: int | None = 2,
        eos_token_id: int | None = 3,
        decoder_start_token_id: int | None = None,
        max_length: int = 64,
        is_encoder_decoder: bool = True,
        **kwargs,
    ):
        name = type(self).__name__
        if kwargs.get("model_type", self.model_type) != self.model_type:  # a config.json of another model
            raise ValueError(
                f"{name}: this configuration is for model type {kwargs['model_type']!r}, not {self.model_type!r}; "
                "load the folder with its own class or with the Auto classes (AutoConfig, AutoModel...)"
            )
        if "num_hidden_layers" in kwargs:  # alias of num_decoder_layers
            num_decoder_layers = kwargs.pop("num_hidden_layers")
        _check_positive_int(name, "source_vocab_size", source_vocab_size)
        _check_positive_int(name, "vocab_size", vocab_size)
        _check_positive_int(name, "embedding_size", embedding_size, allow_none=True)
        _check_positive_int(name, "hidden_size", hidden_size)
        _check_positive_int(name, "num_encoder_layers", num_encoder_layers)
        _check_positive_int(name, "num_decoder_layers", num_decoder_layers)
        _check_positive_int(name, "max_length", max_length)
        if rnn_type not in RNN_TYPES:
            raise ValueError(f"{name}: rnn_type must be one of {RNN_TYPES}, got {rnn_type!r}")
        if attention not in ATTENTION_TYPES:
            raise ValueError(f"{name}: attention must be one of {ATTENTION_TYPES}, got {attention!r}")
        if luong_score not in LUONG_SCORES:
            raise ValueError(f"{name}: luong_score must be one of {LUONG_SCORES}, got {luong_score!r}")
        _check_bool(name, "bidirectional_encoder", bidirectional_encoder)
        _check_bool(name, "tie_word_embeddings", tie_word_embeddings)
        if bidirectional_encoder and hidden_size % 2:
            raise ValueError(
                f"{name}: hidden_size must be even when bidirectional_encoder=True (each direction has "
                f"hidden_size // 2 units), got {hidden_size}"
            )
        if input_feeding is None:
            input_feeding = attention == "luong"
        _check_bool(name, "input_feeding", input_feeding)
        if input_feeding and attention != "luong":
            raise ValueError(f"{name}: input_feeding is only defined for attention='luong', got attention={attention!r}")
        _check_probability(name, "dropout", dropout)
        if isinstance(initializer_range, bool) or not isinstance(initializer_range, (int, float)) or initializer_range <= 0:
            raise ValueError(f"{name}: initializer_range must be a positive number, got {initializer_range!r}")
        for field, value in (("pad_token_id", pad_token_id), ("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_size):
                raise ValueError(f"{name}: {field} must be an id in [0, vocab_size={vocab_size}), got {value!r}")
        if pad_token_id is not None and pad_token_id >= source_vocab_size:
            raise ValueError(
                f"{name}: pad_token_id must also be a source id in [0, source_vocab_size={source_vocab_size}), "
                f"got {pad_token_id!r}"
            )
        if decoder_start_token_id is None:
            decoder_start_token_id = bos_token_id
        if decoder_start_token_id is None:
            raise ValueError(f"{name}: decoder_start_token_id (or bos_token_id) must be set")
        if isinstance(decoder_start_token_id, bool) or not isinstance(decoder_start_token_id, int) or not 0 <= decoder_start_token_id < vocab_size:
            raise ValueError(
                f"{name}: decoder_start_token_id must be an id in [0, vocab_size={vocab_size}), got {decoder_start_token_id!r}"
            )
        if is_encoder_decoder is not True:
            raise ValueError(f"{name}: is_encoder_decoder must be True for this encoder–decoder model, got {is_encoder_decoder!r}")

        self.source_vocab_size = source_vocab_size
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size if embedding_size is not None else hidden_size
        self.hidden_size = hidden_size
        self.num_encoder_layers = num_encoder_layers
        self.num_decoder_layers = num_decoder_layers
        self.rnn_type = rnn_type
        self.bidirectional_encoder = bidirectional_encoder
        self.attention = attention
        self.luong_score = luong_score
        self.input_feeding = input_feeding
        self.dropout = float(dropout)
        self.tie_word_embeddings = tie_word_embeddings
        self.initializer_range = float(initializer_range)
        self.use_cache = use_cache
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.decoder_start_token_id = decoder_start_token_id
        self.max_length = max_length
        super().__init__(is_encoder_decoder=is_encoder_decoder, **kwargs)
