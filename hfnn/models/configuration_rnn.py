"""Configuration of the recurrent (RNN) model family: language model and sequence classifier."""

from .configuration_utils import HfnnConfig, hfnn_config

__all__ = ["RnnConfig", "RNN_TYPES", "POOLING_TYPES"]

RNN_TYPES = ("rnn_tanh", "rnn_relu", "gru", "lstm")
POOLING_TYPES = ("last", "mean", "max")


@hfnn_config
class RnnConfig(HfnnConfig):
    r"""Configuration of :class:`RnnModel`, :class:`RnnForCausalLM` and :class:`RnnForSequenceClassification`.

    Args:
        vocab_size: number of token ids.
        embedding_size: width of the token embeddings (the seed's x_i); defaults to ``hidden_size``.
        hidden_size: width of the hidden state h_i.
        num_hidden_layers: number of stacked recurrent layers.
        rnn_type: ``"rnn_tanh"`` (the seed's cell), ``"rnn_relu"``, ``"gru"`` or ``"lstm"``.
        dropout: dropout on the embeddings, between recurrent layers and on the last hidden states.
        bidirectional: read the sequence both ways (classification only; a language model must be causal).
        pooling: the classifier's ``"last"`` (final state of each direction), ``"mean"`` or ``"max"`` pooling.
        classifier_dropout: dropout before the classification layer (defaults to ``dropout``).
        tie_word_embeddings: share the input embedding with the output layer U (through a projection when
            ``embedding_size != hidden_size``).
        initializer_range: standard deviation of the normal init of the linear layers.
        embedding_init_std: standard deviation of the normal init of the token embeddings. The
            default, 1.0 (PyTorch's own), feeds the recurrent cells inputs of unit scale; the 0.02
            that suits Transformers leaves gated cells nearly blind to their input early in training.
    """

    model_type = "hfnn-rnn"

    vocab_size: int = 256
    embedding_size: int | None = None
    hidden_size: int = 256
    num_hidden_layers: int = 2
    rnn_type: str = "lstm"
    dropout: float | int = 0.1
    bidirectional: bool = False
    pooling: str = "last"
    classifier_dropout: float | int | None = None
    tie_word_embeddings: bool = False
    initializer_range: float | int = 0.02
    embedding_init_std: float | int = 1.0
    use_cache: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 2
    eos_token_id: int | None = 3

    def __post_init__(self, **kwargs):
        if self.embedding_size is None:
            self.embedding_size = self.hidden_size
        super().__post_init__(**kwargs)

    def validate_fields(self):
        self.check_positive_int("vocab_size", "hidden_size", "embedding_size", "num_hidden_layers")
        self.check_choice("rnn_type", RNN_TYPES)
        self.check_choice("pooling", POOLING_TYPES)
        self.check_probability("dropout", "classifier_dropout")
        self.check_positive_number("initializer_range", "embedding_init_std")
        self.check_token_ids("pad_token_id", "bos_token_id", "eos_token_id")
