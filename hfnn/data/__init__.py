"""Data: corpora (:mod:`hfnn.data.corpora`), tokenizers (:mod:`hfnn.data.tokenization`) and pretrained word
embeddings (:mod:`hfnn.data.embeddings`). ``load_corpus``, ``open_corpus`` and ``train_tokenizer`` are imported
on first use, so that importing one of the modules does not load the others' libraries."""

from __future__ import annotations

import importlib

__all__ = ["load_corpus", "open_corpus", "train_tokenizer"]

_HOMES = {"load_corpus": "corpora", "open_corpus": "corpora", "train_tokenizer": "tokenization"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
