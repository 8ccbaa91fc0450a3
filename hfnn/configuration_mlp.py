"""Configuration of the feed-forward (MLP) text classifier (see :mod:`hfnn.modeling_mlp`)."""

from .configuration_utils import HfnnConfig, hfnn_config

__all__ = ["MlpConfig", "ACTIVATIONS"]

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "gelu")


@hfnn_config
class MlpConfig(HfnnConfig):
    """Configuration of [`MlpModel`] and [`MlpForSequenceClassification`] (types and defaults: the fields below).

    Args:
        vocab_size: number of token ids the embedding accepts.
        embedding_size: width of the token (and n-gram) embeddings.
        num_hidden_layers: hidden layers between the bag of embeddings and the output layer; 0 gives a linear
            model of the averaged embeddings.
        hidden_size: neurons per hidden layer.
        activation: f in h = f(W x + b), one of `ACTIVATIONS`; with "identity" every depth computes a linear
            function of the bag (without a non-linear f the stack collapses into one matrix product).
        ngram_range: (min_n, max_n) of the n-grams in the bag, as in scikit-learn; `[1, 2]` adds bigrams to the
            words. n-grams with n >= 2 are hashed into `ngram_buckets` extra embeddings (fastText's hashing trick;
            unused when max_n == 1).
        dropout: dropout after each hidden layer, in [0, 1).
        pad_token_id: padding id; padded positions are left out of the bag.
        initializer_range: std of the normal init of the embeddings."""

    model_type = "hfnn-mlp"

    vocab_size: int = 20000
    embedding_size: int = 128
    num_hidden_layers: int = 1
    hidden_size: int = 256
    activation: str = "relu"
    ngram_range: list[int] | tuple[int, int] = (1, 1)
    ngram_buckets: int = 65536
    dropout: float | int = 0.1
    pad_token_id: int | None = 0
    initializer_range: float | int = 0.02

    def validate_fields(self):
        self.check_positive_int("vocab_size", "embedding_size", "hidden_size", "ngram_buckets")
        self.check_positive_int("num_hidden_layers", minimum=0)
        self.check_choice("activation", ACTIVATIONS)
        low_high = self.ngram_range
        if len(low_high) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) for n in low_high) or not (
            1 <= low_high[0] <= low_high[1]
        ):
            self._fail("ngram_range", "two integers [min_n, max_n] with 1 <= min_n <= max_n")
        if self.ngram_buckets >= 2**31:
            self._fail("ngram_buckets", "below 2**31")
        self.check_probability("dropout")
        self.check_token_ids("pad_token_id")
        self.check_positive_number("initializer_range")
