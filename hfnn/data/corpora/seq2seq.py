"""The columns of a sequence-to-sequence corpus and how its predictions are scored: one decision, for training
(``hfnn.pipelines.run_seq2seq``) and for ``hfnn evaluate``.

The source and target columns default to the first of :data:`SEQ2SEQ_COLUMN_DEFAULTS` that the corpus has
(``word``/``phonemes`` of ``cmudict``, then ``source``/``target``). Predictions are scored as grapheme-to-phoneme
(``"g2p"``: WER and PER against any reference pronunciation) or as translation (BLEU and chrF).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Sequence

from hfnn.models.errors import DataError, OptionError

from .local import separator_hint

__all__ = ["SEQ2SEQ_COLUMN_DEFAULTS", "SEQ2SEQ_METRICS", "Seq2SeqColumns", "resolve_seq2seq_columns"]

# default (source, target) columns of the built-in corpora, tried in this order
SEQ2SEQ_COLUMN_DEFAULTS = (("word", "phonemes"), ("source", "target"))
# the metrics of each kind of seq2seq task
SEQ2SEQ_METRICS: Mapping[str, tuple[str, ...]] = {"g2p": ("wer", "per"), "translation": ("bleu", "chrf")}
_G2P_TASKS = ("grapheme-to-phoneme", "g2p")


@dataclasses.dataclass(frozen=True)
class Seq2SeqColumns:
    """The resolved columns of a seq2seq corpus: ``source`` and ``target``, ``references`` (a column listing every
    acceptable target of a row; None: the target is the only one) and ``kind`` (``"g2p"`` or ``"translation"``)."""

    source: str
    target: str
    references: str | None
    kind: str

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics predictions are scored with: WER and PER for g2p, BLEU and chrF for translation."""
        return SEQ2SEQ_METRICS[self.kind]

    def references_of(self, ds) -> list[list[str]]:
        """Every acceptable target of each row of ``ds``: its references (a single string counts as one), else
        its target."""
        if self.references is None:
            return [[t] for t in ds[self.target]]
        return [[r] if isinstance(r, str) else list(r) for r in ds[self.references]]


def resolve_seq2seq_columns(columns: Iterable[str], *, source: str | None = None, target: str | None = None,
                            references: str | None = None, metrics: str | None = "auto", phoneme_target: bool = False,
                            task: str | None = None,
                            options: Sequence[str] = ("source_column", "target_column", "references_column"),
                            ) -> Seq2SeqColumns:
    """The source, target and references columns among ``columns`` and the kind of scoring.

    ``source``/``target``: the columns given (None: the first pair of :data:`SEQ2SEQ_COLUMN_DEFAULTS` the corpus
    has fills the missing one). ``references``: the column given, else ``references`` when the corpus has it.
    ``metrics``: ``"g2p"``, ``"translation"`` or ``"auto"`` (None counts as auto): g2p when the target tokenizer
    is phoneme-level (``phoneme_target``), the ``task`` recorded is grapheme-to-phoneme, or the corpus has a
    references column or a ``phonemes`` target; else translation. ``options`` name the three column options in
    the messages. A missing column, or another ``metrics``, is a ValueError naming it and the option that sets it.
    """
    columns = list(columns)
    if source is None or target is None:
        for default_source, default_target in SEQ2SEQ_COLUMN_DEFAULTS:
            if default_source in columns and default_target in columns:
                source, target = source or default_source, target or default_target
                break
    for option, role, column in zip(options[:2], ("source", "target"), (source, target), strict=True):
        if column is None or column not in columns:
            what = f"no {column!r} column" if column else "no source/target (or word/phonemes) columns"
            raise DataError(f"The corpus has {what} (columns: {columns}){separator_hint(columns)}; set {option} "
                             f"(the column of {role} texts)")
    references = references or ("references" if "references" in columns else None)
    if references is not None and references not in columns:
        raise OptionError(f"{options[2]} {references!r} is not a column of the corpus (columns: {columns})")
    metrics = metrics or "auto"
    if metrics not in ("auto", *SEQ2SEQ_METRICS):
        raise OptionError(f"metrics must be auto, {' or '.join(SEQ2SEQ_METRICS)}, got {metrics!r}")
    if metrics == "auto":
        g2p = phoneme_target or task in _G2P_TASKS or references is not None or target == "phonemes"
        metrics = "g2p" if g2p else "translation"
    return Seq2SeqColumns(source, target, references, metrics)
