"""Configuration of the feed-forward (MLP) text classifier (see :mod:`hfnn.models.modeling_mlp`)."""

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
        ngram_vocabulary: False hashes the n-grams (n >= 2) into `ngram_buckets` embeddings, so an n-gram never seen
            in training takes the embedding of whichever trained n-grams share its bucket, noise that grows as the
            buckets fill. True gives each n-gram of the training texts its own embedding (the `ngram_buckets` most
            frequent ones), recorded once by `index_ngrams` and kept in the model's weights; an n-gram not among
            them is left out of the bag, as scikit-learn's CountVectorizer leaves out what it did not see in
            `fit`. Needs vocab_size**max_n below 2**62 (each n-gram is keyed exactly by its token ids).
        char_ngram_range: (min_n, max_n) of the character n-grams of each token, the token written between two
            spaces (" film " gives " fi", "fil", ..., "lm " for [3, 3]), as scikit-learn's `char_wb` analyzer and
            fastText's subwords; `None` (the default) leaves them out. They are hashed into `char_ngram_buckets`
            embeddings whose mean over the text is added to the bag. Which n-grams a token has is read off the
            tokenizer's vocabulary once (`index_vocabulary`) and kept in the model's weights.
        char_ngram_buckets: embeddings the character n-grams are hashed into.
        char_ngrams_per_token: character n-grams kept per token (a longer token keeps its shortest n-grams first).
        ngram_dropout: in training, each word, n-gram and character n-gram of a text is left out of the bag with
            this probability (the means are taken over the ones kept), in [0, 1).
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
    ngram_vocabulary: bool = False
    char_ngram_range: list[int] | tuple[int, int] | None = None
    char_ngram_buckets: int = 262144
    char_ngrams_per_token: int = 64
    ngram_dropout: float | int = 0.0
    dropout: float | int = 0.1
    pad_token_id: int | None = 0
    initializer_range: float | int = 0.02

    def validate_fields(self):
        self.check_positive_int("vocab_size", "embedding_size", "hidden_size", "ngram_buckets", "char_ngram_buckets",
                                "char_ngrams_per_token")
        self.check_positive_int("num_hidden_layers", minimum=0)
        self.check_choice("activation", ACTIVATIONS)
        self._check_range("ngram_range")
        if self.char_ngram_range is not None:
            self._check_range("char_ngram_range")
        for field in ("ngram_buckets", "char_ngram_buckets"):
            if getattr(self, field) >= 2**31:
                self._fail(field, "below 2**31")
        self.check_probability("dropout", "ngram_dropout")
        if self.ngram_vocabulary and self.vocab_size ** self.ngram_range[1] >= 2**62:
            self._fail("ngram_vocabulary", f"false when vocab_size**max_n reaches 2**62, since each n-gram is keyed "
                       f"exactly by its token ids (vocab_size={self.vocab_size}, ngram_range={list(self.ngram_range)}; "
                       "or lower max_n)")
        self.check_token_ids("pad_token_id")
        self.check_positive_number("initializer_range")

    def _check_range(self, field):
        low_high = getattr(self, field)
        if not isinstance(low_high, (list, tuple)) or len(low_high) != 2 or not all(
            isinstance(n, int) and not isinstance(n, bool) for n in low_high
        ) or not 1 <= low_high[0] <= low_high[1]:
            self._fail(field, "two integers [min_n, max_n] with 1 <= min_n <= max_n")
