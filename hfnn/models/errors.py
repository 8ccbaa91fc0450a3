"""What tells a user's mistake from a bug: :class:`HfnnError` and its kinds, the one-line message, plain tables.

A user's mistake (a bad option, recipe, data file, folder, a missing optional package, an unreachable Hub) is an
:class:`HfnnError`: the command line and the training pipelines print it as one line on stderr and exit with status
2 (:func:`report_error`), as they do for an OS error about a file or folder (:data:`USER_ERRORS`). Any other exception
is a bug in hfnn or in a library it uses: its traceback is printed, with a line saying how to report it, and the
exit status is 1. ``HfnnError`` is a ``ValueError``, so code that catches ``ValueError`` keeps working.
"""

from __future__ import annotations

import errno
import sys
import traceback

__all__ = ["BUG_REPORT", "ColumnError", "DataError", "DemoError", "FileError", "HfnnError", "HubError",
           "MissingPackageError", "OptionError", "OutputDirError", "USER_ERRORS", "UserError", "first_line",
           "format_table", "is_user_error", "report_error"]


class HfnnError(ValueError):
    """A user's mistake, not a bug: printed as one line on stderr, exit status 2."""


UserError = HfnnError  # the former name of the base


class OptionError(HfnnError):
    """A command-line option, recipe entry or configuration value is wrong or missing."""


class DataError(HfnnError):
    """A corpus or data file cannot be used as given (unreadable, empty, a bad row, column or label)."""


class ColumnError(DataError, KeyError):
    """A column the user named is not in the data (also a ``KeyError``, as a missing column was before)."""

    __str__ = BaseException.__str__  # the message as it is, not quoted as a KeyError's key


class FileError(HfnnError):
    """A file or folder the user named is not what the command needs (not a saved model, a checkpoint, a recipe)."""


class HubError(HfnnError, ConnectionError):
    """The Hugging Face Hub could not be reached or refused a request (an upload, a dataset); one line says why."""


class OutputDirError(HfnnError, OSError):
    """The output folder cannot be used or written."""


class DemoError(HfnnError):
    """The demo cannot show this folder or input (bad folder, bad input)."""


class MissingPackageError(HfnnError, ImportError):
    """An optional package (or part of hfnn) is not installed; the message gives the ``pip install`` command."""

    def __init__(self, *args, name: str | None = None, path: str | None = None):
        ImportError.__init__(self, *args, name=name, path=path)  # the package's name, as ImportError keeps it


# OS errors about a file or folder: the user named a path that is missing, taken or not theirs to write.
USER_ERRORS = (HfnnError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)

BUG_REPORT = ("this is a bug in hfnn or in a library it uses, not a mistake in the input: please report it with the "
              "command, the traceback above and the versions of hfnn, transformers, torch and datasets")


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is the user's mistake (an :class:`HfnnError`, or an OS error about a path: missing, in the
    way, not permitted, on a read-only file system) rather than a bug."""
    return isinstance(err, USER_ERRORS) or (isinstance(err, OSError) and err.errno == errno.EROFS)


def report_error(prog: str, err: BaseException) -> int:
    """Prints ``err`` for the command ``prog`` on stderr and returns the exit status: a user's mistake is one line
    ``prog: error: MESSAGE`` and 2; anything else is a bug: the traceback, a line saying how to report it, and 1."""
    if is_user_error(err):
        print(f"{prog}: error: {first_line(err)}", file=sys.stderr)
        return 2
    traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    print(f"{prog}: {BUG_REPORT}", file=sys.stderr)
    return 1


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
