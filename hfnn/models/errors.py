"""What the command line and the quickstart share: the user-error type, one-line messages, plain tables."""

from __future__ import annotations

__all__ = ["UserError", "first_line", "format_table"]


class UserError(Exception):
    """A user's mistake (a bad path, option or recipe): printed as one line on stderr, exit status 2."""


def first_line(err: BaseException) -> str:
    """The error message on one line (a multi-line message, e.g. an install hint, is joined), at most 400 characters."""
    line = " ".join(str(err).split()) or type(err).__name__
    if line.startswith("'") and line.endswith("'") and isinstance(err, KeyError):
        line = line[1:-1]
    return line if len(line) <= 400 else line[:400] + "..."


def format_table(header, rows) -> list[str]:
    """Left-aligned columns, a dashed rule under the header."""
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max([len(str(h))] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
            for r in [tuple(map(str, header)), tuple("-" * w for w in widths), *rows]]
