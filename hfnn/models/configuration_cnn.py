"""Configuration of the CNN sentence classifier of Kim (2014) (see :mod:`hfnn.models.modeling_cnn`)."""

from .configuration_utils import HfnnConfig, hfnn_config

__all__ = ["CnnConfig", "EMBEDDING_MODES"]

# Kim 2014, section 3.1: CNN-rand, CNN-static, CNN-non-static, CNN-multichannel.
EMBEDDING_MODES = ("rand", "static", "non-static", "multichannel")


@hfnn_config
class CnnConfig(HfnnConfig):
    """Configuration of [`CnnModel`] and [`CnnForSequenceClassification`] (types and defaults: the fields below).

    Defaults follow Kim (2014): windows of 3, 4 and 5 tokens with 100 feature maps each, dropout 0.5 on the pooled
    features and an l2 max-norm of 3 on the rows of the output layer.

    Args:
        vocab_size: number of token ids the embedding accepts.
        embedding_size: word-vector width (300 = word2vec GoogleNews).
        window_sizes: convolution widths, one filter bank each; num_filters: feature maps per window width.
        dropout: dropout on the concatenated pooled features, in [0, 1).
        max_norm: if set, every row of the output layer's weight is rescaled to l2 norm `max_norm` whenever it is
            larger (Kim's constraint); `None` disables it.
        embedding_mode: `"rand"` (random, trained), `"static"` (frozen), `"non-static"` (trained; meant to be
            initialised from pretrained vectors) or `"multichannel"` (a frozen and a trained copy of the vectors,
            whose convolutions are summed).
        pad_token_id: id of the padding token; padded positions never reach the pooling.
        initializer_range: std of the normal init of convolutions and the output layer (embeddings: U(-0.25, 0.25))."""

    model_type = "hfnn-cnn"

    vocab_size: int = 20000
    embedding_size: int = 300
    window_sizes: list[int] | tuple[int, ...] = (3, 4, 5)
    num_filters: int = 100
    dropout: float | int = 0.5
    max_norm: float | int | None = 3.0
    embedding_mode: str = "rand"
    pad_token_id: int | None = 0
    initializer_range: float | int = 0.02

    def validate_fields(self):
        self.check_positive_int("vocab_size", "embedding_size", "num_filters")
        if not self.window_sizes or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0
                                            for w in self.window_sizes):
            self._fail("window_sizes", "a non-empty list of positive integers")
        self.check_probability("dropout")
        if self.max_norm is not None:
            self.check_positive_number("max_norm")
        self.check_choice("embedding_mode", EMBEDDING_MODES)
        self.check_token_ids("pad_token_id")
        self.check_positive_number("initializer_range")

    @property
    def hidden_size(self):
        """Width of the pooled sentence vector: `len(window_sizes) * num_filters`."""
        return len(self.window_sizes) * self.num_filters
