"""Feed-forward (MLP) text classifier as a `transformers` model (seed note, ideas 1-3): a neuron computes
y = f(w . x + b), a layer h = f(W x + b), and the network stacks layers over the mean of the text's token (and
hashed n-gram) embeddings: h^(0) = x, h^(l) = dropout(f(W^(l) h^(l-1) + b^(l))), logits = W^(out) h^(L) + b^(out).
With f = identity the stack is one affine map, whatever its depth. Padding never enters the mean.

With `char_ngram_range`, x also holds the mean of the embeddings of the tokens' character n-grams (fastText's
subwords, scikit-learn's `char_wb` features): words that share a stem, a suffix or a misspelling share weights."""

import math
import zlib
from collections.abc import Mapping

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.utils import can_return_tuple, logging
from transformers.utils.import_utils import is_tracing

from .configuration_mlp import MlpConfig
from .input_checks import check_input_ids
from .masks import real_token_mask
from .modeling_utils import TextClassifierPreTrainedModel
from .outputs import classifier_output

__all__ = ["MlpPreTrainedModel", "MlpModel", "MlpForSequenceClassification", "char_ngrams", "hash_ngrams",
           "ngram_keys", "sorted_position"]

ACTIVATION_FUNCTIONS = {"identity": nn.Identity, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU,
                        "gelu": nn.GELU}
# Gain of the Xavier init per activation (torch.nn.init.calculate_gain; gelu treated like relu).
INIT_GAINS = {"identity": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0), "gelu": math.sqrt(2.0)}

logger = logging.get_logger(__name__)

_HASH_PRIME = 2_147_483_647  # 2**31 - 1: keeps h * _HASH_MULTIPLIER + id inside int64
_HASH_MULTIPLIER = 1_000_003


def hash_ngrams(input_ids: torch.Tensor, n: int, num_buckets: int) -> torch.Tensor:
    """Bucket of the n-gram at each position, (batch, seq_len) -> (batch, seq_len - n + 1): a polynomial hash modulo
    2**31 - 1 seeded with n, deterministic on every device."""
    windows = input_ids.long().unfold(1, n, 1)  # (batch, seq_len - n + 1, n)
    h = torch.full(windows.shape[:2], n, dtype=torch.long, device=input_ids.device)
    for k in range(n):
        h = (h * _HASH_MULTIPLIER + windows[..., k] + 1) % _HASH_PRIME
    return h % num_buckets


def ngram_keys(input_ids: torch.Tensor, n: int, vocab_size: int) -> torch.Tensor:
    """Exact key of the n-gram at each position, (batch, seq_len) -> (batch, seq_len - n + 1): its token ids read as
    the digits of a base-`vocab_size` number, offset by the count of all shorter n-grams (n >= 2), so that n-grams
    of different lengths never share a key. `MlpConfig` checks that the keys fit in int64."""
    windows = input_ids.long().unfold(1, n, 1)
    key = windows[..., 0]
    for k in range(1, n):
        key = key * vocab_size + windows[..., k]
    return key + _key_offset(n, vocab_size)


def _key_offset(n: int, vocab_size: int) -> int:
    return sum(vocab_size**m for m in range(2, n))


def _ngram_key(ids, vocab_size: int) -> int:
    """`ngram_keys` of one n-gram `ids` (a sequence of ints), in Python integers."""
    key = 0
    for token in ids:
        key = key * vocab_size + token
    return key + _key_offset(len(ids), vocab_size)


def _ngram_of_key(key: int, vocab_size: int, max_n: int) -> tuple[int, ...]:
    """The token ids of the n-gram keyed `key` (the inverse of `ngram_keys`)."""
    for n in range(max_n, 1, -1):
        if key >= _key_offset(n, vocab_size):
            rest, ids = key - _key_offset(n, vocab_size), []
            for _ in range(n):
                rest, digit = divmod(rest, vocab_size)
                ids.append(digit)
            return tuple(reversed(ids))
    raise ValueError(f"n-gram key {key} below the bigram range")


def sorted_position(table: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """For each of `keys`, the first position i of the ascending 1-d `table` with table[i] >= key
    (`torch.searchsorted`). Traced (torch.export, ONNX, which has no searchsorted), the same binary search is
    written out as a fixed number of halvings of gathers and comparisons."""
    if not is_tracing(keys):
        return torch.searchsorted(table, keys)
    size = table.shape[0]
    low, high = torch.zeros_like(keys), torch.full_like(keys, size)
    for _ in range(size.bit_length()):
        middle = (low + high) // 2
        active = low < high
        below = (table[middle.clamp_max(size - 1)] < keys) & active
        low, high = torch.where(below, middle + 1, low), torch.where(active & ~below, middle, high)
    return low


_NO_NGRAM = torch.iinfo(torch.int64).max  # the key of an unused row of the n-gram vocabulary (sorts last)


def char_ngrams(token: str, min_n: int, max_n: int) -> list[str]:
    """The distinct character n-grams (min_n <= n <= max_n) of `token` written between two spaces, shortest first:
    `char_ngrams("film", 3, 4)` = [" fi", "fil", "ilm", "lm ", " fil", "film", "ilm "]."""
    text = f" {token} "
    grams = (text[i : i + n] for n in range(min_n, max_n + 1) for i in range(len(text) - n + 1))
    return list(dict.fromkeys(grams))


class MlpBagOfEmbeddings(nn.Module):
    """Masked mean of token (and hashed n-gram) embeddings: (batch, seq_len) -> (batch, embedding_size). An n-gram
    counts when all its tokens are real; a text with nothing to average gives the zero vector. With character
    n-grams, the mean of their embeddings over the text's tokens is added: `char_ngram_ids` (vocab_size,
    char_ngrams_per_token) holds each token's buckets, -1 in unused slots (`MlpPreTrainedModel.index_vocabulary`)."""

    def __init__(self, config: MlpConfig):
        super().__init__()
        self.min_n, self.max_n = config.ngram_range
        self.num_buckets = config.ngram_buckets
        self.ngram_dropout = config.ngram_dropout
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.ngram_embeddings = nn.Embedding(config.ngram_buckets, config.embedding_size) if self.max_n > 1 else None
        self.seen_filled = set()  # the tables seen filled in training (`warn_if_empty` reads them until then)
        if config.ngram_vocabulary and self.max_n > 1:
            # the keys (`ngram_keys`) of the n-grams with an embedding, sorted; row i of ngram_embeddings is key i's
            self.register_buffer("ngram_vocabulary", torch.full((config.ngram_buckets,), _NO_NGRAM, dtype=torch.long))
        else:
            self.ngram_vocabulary = None
        self.char_ngram_embeddings = None
        if config.char_ngram_range is not None:
            self.char_ngram_embeddings = nn.Embedding(config.char_ngram_buckets, config.embedding_size)
            self.register_buffer("char_ngram_ids", torch.full((config.vocab_size, config.char_ngrams_per_token), -1,
                                                              dtype=torch.int32))

    def kept(self, valid: torch.Tensor) -> torch.Tensor:
        """`valid` (1 for the entries that count) with each entry dropped with probability `ngram_dropout` in
        training."""
        if self.training and self.ngram_dropout:
            return valid * (torch.rand_like(valid) >= self.ngram_dropout).to(valid.dtype)
        return valid

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_input_ids(input_ids, self.word_embeddings.weight.shape[0], allow_empty=True)
        weights = mask.to(self.word_embeddings.weight.dtype)  # (batch, seq_len)
        total = weights.new_zeros(input_ids.shape[0], self.word_embeddings.embedding_dim)
        count = weights.new_zeros(input_ids.shape[0])
        for n in range(self.min_n, self.max_n + 1):
            if input_ids.shape[1] < n:
                continue
            if n == 1:
                vectors, valid = self.word_embeddings(input_ids), weights
            else:
                valid = weights.unfold(1, n, 1).prod(-1)  # 1 only if every token of the n-gram is real
                if self.ngram_vocabulary is None:
                    rows = hash_ngrams(input_ids, n, self.num_buckets)
                else:
                    rows, known = self.look_up_ngrams(input_ids, n)
                    valid = valid * known.to(valid.dtype)  # an n-gram not in the vocabulary is left out
                vectors = self.ngram_embeddings(rows)
            valid = self.kept(valid)
            total = total + (vectors * valid.unsqueeze(-1)).sum(1)
            count = count + valid.sum(1)
        bag = total / count.clamp_min(1.0).unsqueeze(-1)
        if self.char_ngram_embeddings is None:
            return bag
        self.warn_if_empty(input_ids, "char_ngram_ids", lambda table: (table >= 0).any(),
                           "MlpConfig.char_ngram_range is set but the model's character n-gram table is empty, so "
                           "training uses the words alone: call model.index_vocabulary(tokenizer) once before training")
        buckets = self.char_ngram_ids[input_ids].flatten(1)  # (batch, seq_len * char_ngrams_per_token)
        slots = self.char_ngram_ids.shape[1]
        valid = self.kept((buckets >= 0).to(weights.dtype) * weights.repeat_interleave(slots, dim=1))
        vectors = self.char_ngram_embeddings(buckets.clamp_min(0))
        chars = torch.bmm(valid.unsqueeze(1), vectors).squeeze(1)
        return bag + chars / valid.sum(1).clamp_min(1.0).unsqueeze(-1)

    def look_up_ngrams(self, input_ids: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row of each n-gram in the vocabulary and whether it is there: two (batch, seq_len - n + 1) tensors."""
        self.warn_if_empty(input_ids, "ngram_vocabulary", lambda table: table[0] != _NO_NGRAM,
                           "MlpConfig.ngram_vocabulary is set but the model's n-gram vocabulary is empty, so training "
                           "leaves every n-gram out: call model.index_ngrams(training input_ids) once before training")
        keys = ngram_keys(input_ids, n, self.word_embeddings.num_embeddings)
        rows = sorted_position(self.ngram_vocabulary, keys).clamp_max(self.ngram_vocabulary.shape[0] - 1)
        return rows, self.ngram_vocabulary[rows] == keys

    def warn_if_empty(self, input_ids: torch.Tensor, name: str, filled, message: str) -> None:
        """Training with the table `name` still empty (`filled(table)` false) leaves its features out: warns once
        with `message` (read in eager training only, until the table is seen filled)."""
        if name in self.seen_filled or not self.training or is_tracing(input_ids):
            return
        if bool(filled(getattr(self, name))):
            self.seen_filled.add(name)
        else:
            logger.warning_once(message)


class MlpLayer(GradientCheckpointingLayer):
    """One layer of neurons: h = dropout(f(W x + b)); shapes (batch, in_features) -> (batch, hidden_size)."""

    def __init__(self, in_features: int, config: MlpConfig):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.activation = ACTIVATION_FUNCTIONS[config.activation]()
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.activation(self.dense(x)))


class MlpPreTrainedModel(TextClassifierPreTrainedModel):
    config_class = MlpConfig
    _no_split_modules = ["MlpLayer"]

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            # Xavier with the activation's gain keeps the signal's scale through deep stacks.
            init.xavier_uniform_(module.weight, gain=INIT_GAINS[self.config.activation])
            init.zeros_(module.bias)
        elif isinstance(module, MlpBagOfEmbeddings):
            if module.char_ngram_embeddings is not None:
                init.constant_(module.char_ngram_ids, -1)  # no character n-grams until index_vocabulary
            if module.ngram_vocabulary is not None:
                init.constant_(module.ngram_vocabulary, _NO_NGRAM)  # no n-grams until index_ngrams
        else:
            super()._init_weights(module)

    def index_vocabulary(self, tokenizer):
        """Records which character n-grams each token of `tokenizer` (a tokenizer, or a dict token -> id) has, in
        `char_ngram_ids`, saved with the weights; special tokens have none. Call it once on a new model, with the
        tokenizer it is trained with. Without `config.char_ngram_range` there is nothing to record. Returns the
        model."""
        bag = self.base_model.embeddings
        if bag.char_ngram_embeddings is None:
            return self
        vocab = tokenizer if isinstance(tokenizer, Mapping) else tokenizer.get_vocab()
        special = set() if isinstance(tokenizer, Mapping) else set(tokenizer.all_special_ids)
        table = bag.char_ngram_ids
        token, largest = max(vocab.items(), key=lambda item: item[1], default=(None, -1))
        if largest >= table.shape[0]:
            raise ValueError(f"{type(self).__name__}.index_vocabulary: token {token!r} has id {largest}, outside the "
                             f"model's vocabulary [0, vocab_size={table.shape[0]})")
        low, high = self.config.char_ngram_range
        buckets, slots = self.config.char_ngram_buckets, table.shape[1]
        rows = torch.full(table.shape, -1, dtype=table.dtype)
        for token, token_id in vocab.items():
            if token_id not in special:
                found = [zlib.crc32(g.encode("utf-8")) % buckets for g in char_ngrams(token, low, high)][:slots]
                rows[token_id, : len(found)] = torch.tensor(found, dtype=table.dtype)
        with torch.no_grad():
            table.copy_(rows.to(table.device))
        return self

    def index_ngrams(self, texts):
        """Gives each n-gram (n >= 2 in `config.ngram_range`) of `texts` (token-id sequences, as the tokenizer gives
        them: the training split's `input_ids`) its own row of `ngram_embeddings`: the `ngram_buckets` most frequent
        ones are kept (ties: the lower key), in `ngram_vocabulary`, saved with the weights. Call it once on a new
        model with `config.ngram_vocabulary`, before training; without it there is nothing to record. Returns the
        model."""
        bag = self.base_model.embeddings
        if bag.ngram_vocabulary is None:
            return self
        low, high, base = max(2, bag.min_n), bag.max_n, bag.word_embeddings.num_embeddings
        counts: dict[int, int] = {}
        for ids in texts:
            ids = [int(i) for i in ids]
            if ids and (min(ids) < 0 or max(ids) >= base):
                bad = min(ids) if min(ids) < 0 else max(ids)
                raise ValueError(f"{type(self).__name__}.index_ngrams: token id {bad} is outside the model's "
                                 f"vocabulary [0, vocab_size={base})")
            for n in range(low, min(high, len(ids)) + 1):
                for start in range(len(ids) - n + 1):
                    key = _ngram_key(ids[start : start + n], base)
                    counts[key] = counts.get(key, 0) + 1
        size = bag.ngram_vocabulary.shape[0]
        kept = sorted(sorted(counts, key=lambda k: (-counts[k], k))[:size])
        table = torch.full((size,), _NO_NGRAM, dtype=torch.long)
        table[: len(kept)] = torch.tensor(kept, dtype=torch.long)
        with torch.no_grad():
            bag.ngram_vocabulary.copy_(table.to(bag.ngram_vocabulary.device))
        logger.info("n-gram vocabulary: %d of the %d distinct %d..%d-grams (ngram_buckets=%d)", len(kept), len(counts),
                    low, high, size)
        return self

    def _rekey_ngrams(self, old_size: int, new_vocab_size: int) -> None:
        """After a vocabulary resize: the n-grams re-keyed in the new base with their embeddings (rows re-sorted);
        the ones holding a removed token id are dropped."""
        bag = self.base_model.embeddings
        table = bag.ngram_vocabulary
        if table is None or old_size == new_vocab_size:
            return
        entries = []
        for row, key in enumerate(table.tolist()):
            if key == _NO_NGRAM:
                break
            ids = _ngram_of_key(key, old_size, bag.max_n)
            if max(ids) < new_vocab_size:
                entries.append((_ngram_key(ids, new_vocab_size), row))
        entries.sort()
        keys = torch.full_like(table, _NO_NGRAM)
        order = torch.arange(table.shape[0])
        if entries:
            keys[: len(entries)] = torch.tensor([k for k, _ in entries], dtype=torch.long)
            moved = torch.tensor([r for _, r in entries])
            order = torch.cat([moved, order[~torch.isin(order, moved)]])
        with torch.no_grad():
            bag.ngram_vocabulary.copy_(keys)
            bag.ngram_embeddings.weight.copy_(bag.ngram_embeddings.weight[order.to(table.device)])

    def resize_token_embeddings(self, *args, **kwargs):
        """Resizes the character n-gram table with the embeddings (new tokens have no character n-grams) and re-keys
        the n-gram vocabulary in the new vocabulary size."""
        bag = self.base_model.embeddings
        old_size = bag.word_embeddings.num_embeddings
        result = super().resize_token_embeddings(*args, **kwargs)
        rows = bag.word_embeddings.num_embeddings
        self._rekey_ngrams(old_size, rows)
        if bag.char_ngram_embeddings is not None and bag.char_ngram_ids.shape[0] != rows:
            old = bag.char_ngram_ids
            new = old.new_full((rows, old.shape[1]), -1)
            kept = min(rows, old.shape[0])
            new[:kept] = old[:kept]
            bag.char_ngram_ids = new
        return result


class MlpModel(MlpPreTrainedModel):
    """Bag of embeddings -> `num_hidden_layers` x `MlpLayer`: `last_hidden_state` = `pooler_output` = h^(L), and
    `hidden_states` (h^(0), ..., h^(L)) when asked for."""

    def __init__(self, config: MlpConfig):
        super().__init__(config)
        self.embeddings = MlpBagOfEmbeddings(config)
        sizes = [config.embedding_size] + [config.hidden_size] * config.num_hidden_layers
        self.layers = nn.ModuleList(MlpLayer(sizes[i], config) for i in range(config.num_hidden_layers))
        self.output_size = sizes[-1]
        self.post_init()

    @can_return_tuple
    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, **kwargs) -> BaseModelOutputWithPooling:
        """input_ids, attention_mask (batch, seq_len), 0 for padding (without a mask, `pad_token_id` is)."""
        if input_ids is None:
            raise ValueError("MlpModel: input_ids is required")
        mask = real_token_mask(attention_mask, input_ids, self.config.pad_token_id, input_ids.shape, input_ids.device,
                               "MlpModel")
        hidden_states = [self.embeddings(input_ids, mask)]
        for layer in self.layers:
            hidden_states.append(layer(hidden_states[-1]))
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        return BaseModelOutputWithPooling(last_hidden_state=hidden_states[-1], pooler_output=hidden_states[-1],
                                          hidden_states=tuple(hidden_states) if output_hidden_states else None)


class MlpForSequenceClassification(MlpPreTrainedModel):
    """`MlpModel` -> output layer W^(out) h^(L) + b^(out), shape (batch, num_labels); the loss as
    :func:`classification_loss` computes it (MSE, cross-entropy or BCE by `problem_type`)."""

    def __init__(self, config: MlpConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = MlpModel(config)
        self.classifier = nn.Linear(self.model.output_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                **kwargs) -> SequenceClassifierOutput:
        outputs = self.model(input_ids, attention_mask, output_hidden_states=output_hidden_states, return_dict=True)
        return classifier_output(self, self.classifier, outputs.pooler_output, labels, outputs, **kwargs)
