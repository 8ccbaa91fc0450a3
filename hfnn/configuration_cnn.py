"""Configuration of the CNN sentence classifier (Kim 2014, "Convolutional Neural Networks for Sentence
Classification").

Seed note, idea 6: a CNN computes a representation of every n-gram with a sliding window of fixed width
and keeps local, position-invariant patterns; here the window widths are the n of the n-grams and
max-over-time pooling keeps the strongest match of each feature map anywhere in the sentence.
"""

from numbers import Real

from transformers import PreTrainedConfig

__all__ = ["CnnConfig", "EMBEDDING_MODES"]

# Kim 2014, section 3.1: CNN-rand, CNN-static, CNN-non-static, CNN-multichannel.
EMBEDDING_MODES = ("rand", "static", "non-static", "multichannel")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(cls_name, field, value):
    if not _is_int(value) or value <= 0:
        raise ValueError(f"{cls_name}: {field} must be a positive integer, got {value!r}")


class CnnConfig(PreTrainedConfig):
    r"""Configuration of [`CnnModel`] and [`CnnForSequenceClassification`].

    Defaults follow Kim (2014): windows of 3, 4 and 5 tokens with 100 feature maps each, dropout 0.5 on
    the pooled features and an l2 max-norm of 3 on the rows of the output layer.

    Args:
        vocab_size (`int`, defaults to 20000): number of token ids the embedding accepts.
        embedding_size (`int`, defaults to 300): word-vector width (300 = word2vec GoogleNews).
        window_sizes (`list[int]`, defaults to `[3, 4, 5]`): convolution widths, one filter bank each.
        num_filters (`int`, defaults to 100): feature maps per window width.
        dropout (`float`, defaults to 0.5): dropout on the concatenated pooled features, in [0, 1).
        max_norm (`float` or `None`, defaults to 3.0): if set, every row of the output layer's weight is
            rescaled to l2 norm `max_norm` whenever it is larger (Kim's constraint); `None` disables it.
        embedding_mode (`str`, defaults to `"rand"`): `"rand"` (random, trained), `"static"` (frozen),
            `"non-static"` (trained; meant to be initialised from pretrained vectors) or `"multichannel"`
            (a frozen and a trained copy of the vectors, whose convolutions are summed).
        pad_token_id (`int` or `None`, defaults to 0): id of the padding token; padded positions never
            reach the pooling.
        initializer_range (`float`, defaults to 0.02): std of the normal init of convolutions and the
            output layer (embeddings use Kim's uniform(-0.25, 0.25)).
        num_labels / id2label / label2id / problem_type: the usual `PreTrainedConfig` fields.
    """

    model_type = "hfnn-cnn"

    def __init__(
        self,
        vocab_size=20000,
        embedding_size=300,
        window_sizes=(3, 4, 5),
        num_filters=100,
        dropout=0.5,
        max_norm=3.0,
        embedding_mode="rand",
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
        if isinstance(window_sizes, (str, bytes)) or not hasattr(window_sizes, "__iter__"):
            raise ValueError(f"{name}: window_sizes must be a non-empty list of positive integers, got {window_sizes!r}")
        window_sizes = list(window_sizes)
        if not window_sizes or not all(_is_int(w) and w > 0 for w in window_sizes):
            raise ValueError(f"{name}: window_sizes must be a non-empty list of positive integers, got {window_sizes!r}")
        _positive_int(name, "num_filters", num_filters)
        if isinstance(dropout, bool) or not isinstance(dropout, Real) or not 0 <= dropout < 1:
            raise ValueError(f"{name}: dropout must be a number in [0, 1), got {dropout!r}")
        if max_norm is not None and (isinstance(max_norm, bool) or not isinstance(max_norm, Real) or max_norm <= 0):
            raise ValueError(f"{name}: max_norm must be None or a positive number, got {max_norm!r}")
        if embedding_mode not in EMBEDDING_MODES:
            raise ValueError(f"{name}: embedding_mode must be one of {list(EMBEDDING_MODES)}, got {embedding_mode!r}")
        if pad_token_id is not None and (not _is_int(pad_token_id) or not 0 <= pad_token_id < vocab_size):
            raise ValueError(
                f"{name}: pad_token_id must be None or an integer in [0, vocab_size={vocab_size}), got {pad_token_id!r}"
            )
        if isinstance(initializer_range, bool) or not isinstance(initializer_range, Real) or initializer_range <= 0:
            raise ValueError(f"{name}: initializer_range must be a positive number, got {initializer_range!r}")

        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.window_sizes = window_sizes
        self.num_filters = num_filters
        self.dropout = float(dropout)
        self.max_norm = None if max_norm is None else float(max_norm)
        self.embedding_mode = embedding_mode
        self.pad_token_id = pad_token_id
        self.initializer_range = float(initializer_range)
        super().__init__(**kwargs)

    @property
    def hidden_size(self):
        """Width of the pooled sentence vector: `len(window_sizes) * num_filters`."""
        return len(self.window_sizes) * self.num_filters
