"""Configuration of the recurrent (RNN) model family: language model and sequence classifier."""

from transformers import PreTrainedConfig

__all__ = ["RnnConfig", "RNN_TYPES", "POOLING_TYPES"]

RNN_TYPES = ("rnn_tanh", "rnn_relu", "gru", "lstm")
POOLING_TYPES = ("last", "mean", "max")


def _check_positive_int(cls_name, field, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{cls_name}: {field} must be a positive integer, got {value!r}")


def _check_probability(cls_name, field, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{cls_name}: {field} must be a number in [0, 1), got {value!r}")


class RnnConfig(PreTrainedConfig):
    r"""Configuration of :class:`RnnModel`, :class:`RnnForCausalLM` and :class:`RnnForSequenceClassification`.

    Args:
        vocab_size: number of token ids.
        embedding_size: width of the token embeddings (the seed's x_i); defaults to ``hidden_size``.
        hidden_size: width of the hidden state h_i.
        num_hidden_layers: number of stacked recurrent layers.
        rnn_type: ``"rnn_tanh"`` (the seed's h_i = tanh(W_x x_i + W_h h_{i-1} + b)), ``"rnn_relu"``,
            ``"gru"`` or ``"lstm"``.
        dropout: dropout on the embeddings, between recurrent layers and on the last hidden states.
        bidirectional: read the sequence both ways (classification only; a language model must be causal).
        pooling: how the classifier turns the hidden states into one vector: ``"last"`` (final state of
            each direction), ``"mean"`` or ``"max"`` over the non-padding positions.
        classifier_dropout: dropout before the classification layer (defaults to ``dropout``).
        tie_word_embeddings: share the input embedding matrix with the output layer (U in the seed's
            y = softmax(U h + b_2)); when ``embedding_size != hidden_size`` a projection is inserted.
        initializer_range: standard deviation of the normal init of the linear layers.
        embedding_init_std: standard deviation of the normal init of the token embeddings. The
            default, 1.0 (PyTorch's own), feeds the recurrent cells inputs of unit scale; the 0.02
            that suits Transformers leaves gated cells nearly blind to their input early in training.
    """

    model_type = "hfnn-rnn"

    def __init__(
        self,
        vocab_size: int = 256,
        embedding_size: int | None = None,
        hidden_size: int = 256,
        num_hidden_layers: int = 2,
        rnn_type: str = "lstm",
        dropout: float = 0.1,
        bidirectional: bool = False,
        pooling: str = "last",
        classifier_dropout: float | None = None,
        tie_word_embeddings: bool = False,
        initializer_range: float = 0.02,
        embedding_init_std: float = 1.0,
        use_cache: bool = True,
        pad_token_id: int | None = 0,
        bos_token_id: int | None = 2,
        eos_token_id: int | None = 3,
        **kwargs,
    ):
        name = type(self).__name__
        if kwargs.get("model_type", self.model_type) != self.model_type:  # a config.json of another model
            raise ValueError(
                f"{name}: this configuration is for model type {kwargs['model_type']!r}, not {self.model_type!r}; "
                "load the folder with its own class or with the Auto classes (AutoConfig, AutoModel...)"
            )
        _check_positive_int(name, "vocab_size", vocab_size)
        _check_positive_int(name, "embedding_size", embedding_size, allow_none=True)
        _check_positive_int(name, "hidden_size", hidden_size)
        _check_positive_int(name, "num_hidden_layers", num_hidden_layers)
        if rnn_type not in RNN_TYPES:
            raise ValueError(f"{name}: rnn_type must be one of {RNN_TYPES}, got {rnn_type!r}")
        if pooling not in POOLING_TYPES:
            raise ValueError(f"{name}: pooling must be one of {POOLING_TYPES}, got {pooling!r}")
        _check_probability(name, "dropout", dropout)
        if classifier_dropout is not None:
            _check_probability(name, "classifier_dropout", classifier_dropout)
        if not isinstance(initializer_range, (int, float)) or initializer_range <= 0:
            raise ValueError(f"{name}: initializer_range must be a positive number, got {initializer_range!r}")
        if not isinstance(embedding_init_std, (int, float)) or embedding_init_std <= 0:
            raise ValueError(f"{name}: embedding_init_std must be a positive number, got {embedding_init_std!r}")
        for field, value in (("pad_token_id", pad_token_id), ("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < vocab_size):
                raise ValueError(f"{name}: {field} must be an id in [0, vocab_size={vocab_size}), got {value!r}")

        self.vocab_size = vocab_size
        self.embedding_size = embedding_size if embedding_size is not None else hidden_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.rnn_type = rnn_type
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        self.tie_word_embeddings = tie_word_embeddings
        self.initializer_range = float(initializer_range)
        self.embedding_init_std = float(embedding_init_std)
        self.use_cache = use_cache
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        super().__init__(**kwargs)
