"""Configuration of the feed-forward (MLP) text classifier.

Seed note, ideas 1-3: a neuron computes f(w . x + b); a layer is many neurons side by side,
h = f(W x + b); a deeper network stacks layers, and without a non-linear f the stack collapses into a
single matrix product. `num_hidden_layers`, `hidden_size` and `activation` are those three knobs.
"""

from numbers import Real

from transformers import PreTrainedConfig

__all__ = ["MlpConfig", "ACTIVATIONS"]

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "gelu")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(cls_name, field, value):
    if not _is_int(value) or value <= 0:
        raise ValueError(f"{cls_name}: {field} must be a positive integer, got {value!r}")


class MlpConfig(PreTrainedConfig):
    r"""Configuration of [`MlpModel`] and [`MlpForSequenceClassification`].

    Args:
        vocab_size (`int`, defaults to 20000): number of token ids the embedding accepts.
        embedding_size (`int`, defaults to 128): width of the token (and n-gram) embeddings.
        num_hidden_layers (`int`, defaults to 1): hidden layers between the bag of embeddings and the output
            layer; 0 gives a linear model of the averaged embeddings.
        hidden_size (`int`, defaults to 256): neurons per hidden layer.
        activation (`str`, defaults to `"relu"`): f in h = f(W x + b); one of identity, sigmoid, tanh, relu,
            gelu. With "identity" every depth computes a linear function of the bag.
        ngram_range (`list[int]` of two, defaults to `[1, 1]`): (min_n, max_n) of the n-grams in the bag, as in
            scikit-learn; `[1, 2]` adds bigrams to the words. n-grams with n >= 2 are hashed into
            `ngram_buckets` extra embeddings (fastText's hashing trick).
        ngram_buckets (`int`, defaults to 65536): hash buckets for n >= 2 grams (unused when max_n == 1).
        dropout (`float`, defaults to 0.1): dropout after each hidden layer, in [0, 1).
        pad_token_id (`int` or `None`, defaults to 0): padding id; padded positions are left out of the bag.
        initializer_range (`float`, defaults to 0.02): std of the normal init of the embeddings.
        num_labels / id2label / label2id / problem_type: the usual `PreTrainedConfig` fields.
    """

    model_type = "hfnn-mlp"

    def __init__(
        self,
        vocab_size=20000,
        embedding_size=128,
        num_hidden_layers=1,
        hidden_size=256,
        activation="relu",
        ngram_range=(1, 1),
        ngram_buckets=65536,
        dropout=0.1,
        pad_token_id=0,
        initializer_range=0.02,
        **kwargs,
    ):
        name = type(self).__name__
        if kwargs.get("model_type", self.model_type) != self.model_type:  # a config.json of another model
            raise ValueError(
                f"{name}: this configuration is for model type {kwargs['model_type']!r}, not {self.model_type!r}; "
                "load the folder with its own class or with the Auto classes (AutoConfig, AutoModel...)"
            )
        _positive_int(name, "vocab_size", vocab_size)
        _positive_int(name, "embedding_size", embedding_size)
        if not _is_int(num_hidden_layers) or num_hidden_layers < 0:
            raise ValueError(f"{name}: num_hidden_layers must be a non-negative integer, got {num_hidden_layers!r}")
        _positive_int(name, "hidden_size", hidden_size)
        if activation not in ACTIVATIONS:
            raise ValueError(f"{name}: activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
        if isinstance(ngram_range, (str, bytes)) or not hasattr(ngram_range, "__iter__"):
            raise ValueError(f"{name}: ngram_range must be two integers [min_n, max_n], got {ngram_range!r}")
        ngram_range = list(ngram_range)
        if len(ngram_range) != 2 or not all(_is_int(n) for n in ngram_range) or not 1 <= ngram_range[0] <= ngram_range[1]:
            raise ValueError(
                f"{name}: ngram_range must be two integers [min_n, max_n] with 1 <= min_n <= max_n, got {ngram_range!r}"
            )
        _positive_int(name, "ngram_buckets", ngram_buckets)
        if ngram_buckets >= 2**31:
            raise ValueError(f"{name}: ngram_buckets must be below 2**31, got {ngram_buckets!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, Real) or not 0 <= dropout < 1:
            raise ValueError(f"{name}: dropout must be a number in [0, 1), got {dropout!r}")
        if pad_token_id is not None and (not _is_int(pad_token_id) or not 0 <= pad_token_id < vocab_size):
            raise ValueError(
                f"{name}: pad_token_id must be None or an integer in [0, vocab_size={vocab_size}), got {pad_token_id!r}"
            )
        if isinstance(initializer_range, bool) or not isinstance(initializer_range, Real) or initializer_range <= 0:
            raise ValueError(f"{name}: initializer_range must be a positive number, got {initializer_range!r}")

        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.num_hidden_layers = num_hidden_layers
        self.hidden_size = hidden_size
        self.activation = activation
        self.ngram_range = ngram_range
        self.ngram_buckets = ngram_buckets
        self.dropout = float(dropout)
        self.pad_token_id = pad_token_id
        self.initializer_range = float(initializer_range)
        super().__init__(**kwargs)
