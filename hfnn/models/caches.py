"""The generation cache of the recurrent models (a fixed-size state per layer, not keys and values that grow with the
text) and the v4 ``past_key_values`` keyword every model still accepts."""

import warnings

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

__all__ = ["RecurrentCache", "RecurrentStateLayer", "pop_legacy_cache"]


def pop_legacy_cache(kwargs: dict, cache):
    """transformers v5 calls the cache ``cache``; the v4 keyword ``past_key_values`` is still accepted, with
    a deprecation warning, instead of vanishing into ``**kwargs`` (which would silently drop the cache)."""
    if "past_key_values" not in kwargs:
        return cache
    legacy = kwargs.pop("past_key_values")
    warnings.warn("`past_key_values` is deprecated, pass the cache as `cache=`", FutureWarning, stacklevel=3)
    if cache is not None and legacy is not None and legacy is not cache:
        raise ValueError("Give the cache once: both `cache` and `past_key_values` were passed.")
    return cache if cache is not None else legacy


class RecurrentStateLayer(CacheLayerMixin):
    """The state of one recurrent layer as a cache layer: ``states`` holds one ``(batch, hidden)`` tensor per part
    (h, and c for an LSTM). It does not grow with the text and cannot be rolled back."""

    is_compileable = is_croppable = False

    def __init__(self):
        super().__init__()
        self.states: tuple[torch.Tensor, ...] | None = None
        self.seen_tokens = 0

    def __repr__(self):
        return f"{type(self).__name__}(parts={[tuple(s.shape) for s in self.states or ()]})"

    def lazy_initialization(self, key_states, value_states):
        raise NotImplementedError("a recurrent layer keeps a state, not keys and values")

    def update(self, key_states, value_states, *args, **kwargs):
        raise NotImplementedError("a recurrent layer keeps a state, not keys and values: use the cache's own update")

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return query_length, 0  # nothing to attend to: the past lives in the state

    def get_seq_length(self) -> int:
        return self.seen_tokens

    def get_max_length(self) -> int:
        return -1

    def _map(self, fn):
        if self.states is not None:
            self.states = tuple(fn(s) for s in self.states)

    def offload(self):
        self._map(lambda s: s.to("cpu", non_blocking=True))

    def prefetch(self):  # nothing is offloaded but to the CPU
        pass

    def reset(self) -> None:
        self.states, self.seen_tokens, self.is_initialized = None, 0, False

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._map(lambda s: s.index_select(0, beam_idx.to(s.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map(lambda s: s.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map(lambda s: s[indices])

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove:
            raise NotImplementedError(f"{type(self).__name__} cannot be cropped: a recurrent state has no per-token "
                                      "entries")


class RecurrentCache(Cache):
    """A cache of recurrent states with one :class:`RecurrentStateLayer` per recurrent layer (and direction), so
    transformers' generic cache helpers (reorder, repeat, select, reset, offload) work on it. ``states`` / ``store``
    read and write all layers at once, as ``(batch, layers, hidden)`` tensors (batch first, as beam search wants)."""

    is_compileable = is_croppable = False
    crop = RecurrentStateLayer.crop
    get_max_length = RecurrentStateLayer.get_max_length

    def __init__(self):
        super().__init__(layers=[])

    @property
    def batch_size(self) -> int:
        return -1 if not self.layers or self.layers[0].states is None else self.layers[0].states[0].shape[0]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.layers[0].get_seq_length() if self.layers else 0

    @property
    def states(self) -> tuple[torch.Tensor, ...] | None:
        if not self.layers or self.layers[0].states is None:
            return None
        return tuple(torch.stack(parts, dim=1) for parts in zip(*(layer.states for layer in self.layers)))

    def store(self, states: tuple[torch.Tensor, ...], num_new_tokens: int) -> None:
        while len(self.layers) < states[0].shape[1]:
            self.layers.append(RecurrentStateLayer())
        for index, layer in enumerate(self.layers):
            layer.states = tuple(s[:, index] for s in states)
            layer.seen_tokens += num_new_tokens
            layer.is_initialized = True

    def activate_past_recording(self) -> None:
        pass
