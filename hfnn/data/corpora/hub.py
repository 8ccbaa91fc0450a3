"""Hugging Face Hub datasets: any name that is not a built-in corpus nor a local file, loaded with
``datasets.load_dataset`` after a fast check that the Hub can be reached, its splits named canonically.
"""

from __future__ import annotations

import difflib
import os

import datasets
from datasets import Dataset, DatasetDict

from hfnn.models.errors import DataError, HubError, OptionError

from .builtin import BUILTIN_CORPORA
from .splits import canonical_split

__all__ = []


def _check_not_misspelt(name: str) -> None:
    """A name close to a built-in corpus that is not a Hub id (no '/') nor a local folder is taken for
    a typo: ValueError at once, instead of an attempt on the Hub that hangs while offline."""
    if "/" in name or os.path.exists(name):
        return
    close = difflib.get_close_matches(name.casefold(), list(BUILTIN_CORPORA), n=1)
    if close:
        raise OptionError(
            f"load_corpus: unknown corpus {name!r}: did you mean the built-in corpus {close[0]!r}? "
            f"(built-in corpora: {', '.join(BUILTIN_CORPORA)}; a Hugging Face Hub dataset is named "
            "'owner/name')"
        )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub (``HF_ENDPOINT``, default huggingface.co:443) opens within
    ``timeout`` seconds; name resolution included, so an offline machine answers at once."""
    import socket
    import threading
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _offline_mode() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _load_hub(name: str, cache_dir, kwargs: dict):
    description = f"the Hugging Face Hub dataset {name!r}"
    # Without a network the Hub client retries for about half a minute and ends in a long traceback: check
    # once, fast. (A replaced loader, e.g. an offline mirror or a test double, is called as it is; with
    # HF_HUB_OFFLINE=1 datasets reads its cache.)
    real_loader = getattr(datasets.load_dataset, "__module__", "").startswith("datasets")
    if real_loader and not _offline_mode() and not _hub_reachable():
        raise HubError(
            f"load_corpus: {name!r} is not a built-in corpus ({', '.join(BUILTIN_CORPORA)}) nor a local file, and the "
            "Hugging Face Hub cannot be reached from this machine (no network?); give a local file, or set "
            "HF_HUB_OFFLINE=1 to use a copy already in the datasets cache"
        )
    try:
        loaded = datasets.load_dataset(name, cache_dir=None if cache_dir is None else str(cache_dir), **kwargs)
    except Exception as exc:
        raise HubError(
            f"load_corpus: could not load {description}: the Hub could not be reached or the dataset "
            f"does not exist ({type(exc).__name__}: {str(exc)[:300]}). It is not a built-in corpus "
            f"({', '.join(BUILTIN_CORPORA)}) nor a local file (.txt, .csv, .tsv, .json, .jsonl)."
        ) from exc
    if isinstance(loaded, Dataset):
        loaded = DatasetDict({"train": loaded})
    if isinstance(loaded, DatasetDict):
        renamed = {canonical_split(split): ds for split, ds in loaded.items()}
        if "train" not in renamed:
            raise DataError(f"load_corpus: {name!r} has no train split (splits: {list(loaded)})")
        loaded = DatasetDict(renamed)
    return loaded
