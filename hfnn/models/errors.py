"""What tells a user's mistake from a bug: :class:`HfnnError` and its kinds, the one-line message, plain tables.

A user's mistake (a bad option, recipe, data file, folder, a missing optional package, an unreachable Hub) is an
:class:`HfnnError`: the command line and the training pipelines print it as one line on stderr and exit with status
2 (:func:`report_error`), as they do for an OS error about a file or folder (:data:`USER_ERRORS`). Any other exception
is a bug in hfnn or in a library it uses: its traceback is printed, with a line saying how to report it, and the
exit status is 1. ``HfnnError`` is a ``ValueError``, so code that catches ``ValueError`` keeps working.

A library error caused by the user's path or name is the user's too (:func:`user_error`): an OS error about a file
(missing, not permitted, read-only, no space) anywhere in the chain of causes (``raise ... from``), or a failed
Hub lookup (huggingface_hub's errors, and transformers' ``OSError`` that wraps them). :func:`path_errors` and
:func:`hub_lookup` turn them into one line naming the option and the path or name where the code knows them.
"""

from __future__ import annotations

import contextlib
import errno
import sys
import traceback

__all__ = ["BUG_REPORT", "ColumnError", "DataError", "DemoError", "FileError", "HfnnError", "HubError",
           "MissingPackageError", "OptionError", "OutputDirError", "USER_ERRORS", "UserError", "first_line",
           "format_table", "hub_lookup", "is_user_error", "path_errors", "report_error", "user_error"]


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


# errno values of an OS error about the path itself (not a bug of the code that used it)
_PATH_ERRNOS = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EEXIST, errno.ENOTDIR,
                          errno.EISDIR, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.ELOOP, errno.ETXTBSY})
# huggingface_hub's errors for a name that cannot be looked up (by class name: huggingface_hub is not imported)
_HUB_ERRORS = frozenset({"LocalEntryNotFoundError", "RepositoryNotFoundError", "RevisionNotFoundError",
                         "EntryNotFoundError", "GatedRepoError", "OfflineModeIsEnabled", "HFValidationError",
                         "HfHubHTTPError"})
_HUB_HINT = ("offline, give a saved local folder instead (or set HF_HUB_OFFLINE=0 and check the connection); "
             "online, check the spelling and that the repository is public or you are logged in")


def _is_path_error(err: BaseException) -> bool:
    return isinstance(err, OSError) and not isinstance(err, HfnnError) and err.errno in _PATH_ERRNOS


def _is_hub_error(err: BaseException) -> bool:
    if {c.__name__ for c in type(err).__mro__} & _HUB_ERRORS:
        return True
    # transformers' cached_file wraps huggingface_hub's error in a bare OSError
    return type(err) is OSError and err.errno is None and any(map(_is_hub_error, _causes(err)[1:]))


def _causes(err: BaseException) -> list[BaseException]:
    """``err`` and its explicit causes (``raise ... from cause``), outermost first."""
    chain = [err]
    while chain[-1].__cause__ is not None and chain[-1].__cause__ not in chain and len(chain) < 20:
        chain.append(chain[-1].__cause__)
    return chain


def _path_message(err: OSError, what: str = "") -> str:
    path = err.filename if err.filename is not None else ""
    reason = (err.strerror or str(err)).rstrip(".").lower() if err.strerror else first_line(err)
    fix = {errno.EACCES: "choose a path this user may use, or change its permissions",
           errno.EPERM: "choose a path this user may use, or change its permissions",
           errno.EROFS: "choose a path on a writable file system", errno.ENOSPC: "free some space or choose another "
           "disk", errno.EDQUOT: "free some space or choose another disk", errno.ENOENT: "check the path"}
    where = f"{what} {path}" if what else str(path)
    return f"{where}: {reason}" + (f"; {fix[err.errno]}" if err.errno in fix else "")


def user_error(err: BaseException) -> BaseException | None:
    """The user's mistake behind ``err``, or None when ``err`` is a bug: ``err`` itself when it is an
    :class:`HfnnError` or an OS error about a path (:data:`USER_ERRORS`, a read-only file system); else the first
    explicit cause that is one, as a :class:`FileError` naming the path; or a failed Hub lookup, as a
    :class:`HubError`."""
    if isinstance(err, USER_ERRORS) or _is_path_error(err):
        return err
    for cause in _causes(err):
        if isinstance(cause, HfnnError):
            return cause
        if _is_path_error(cause):
            return FileError(_path_message(cause))
        if _is_hub_error(cause):
            return HubError(f"the Hugging Face Hub lookup failed: {first_line(cause)}")
    return None


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is the user's mistake (an :class:`HfnnError`, an OS error about a path: missing, in the
    way, not permitted, on a read-only file system; or caused by one, or by a failed Hub lookup) rather than a
    bug (:func:`user_error`)."""
    return user_error(err) is not None


@contextlib.contextmanager
def path_errors(what: str):
    """Inside, an OS error about a path (missing, not permitted, read-only, no space) becomes a :class:`FileError`
    ``WHAT PATH: reason; fix``, e.g. ``with path_errors("--output"):``."""
    try:
        yield
    except HfnnError:
        raise
    except OSError as err:
        if not _is_path_error(err):
            raise
        raise FileError(_path_message(err, what)) from err


@contextlib.contextmanager
def hub_lookup(option: str, name):
    """Inside, a failed lookup of ``name`` (a local folder or a Hub id the user gave as ``option``) is one line
    naming both: a :class:`HubError` when the Hub cannot be reached or has no such repository, a
    :class:`FileError` for an OS error about the path."""
    try:
        yield
    except HfnnError:
        raise
    except Exception as err:
        if any(map(_is_path_error, _causes(err))):
            cause = next(c for c in _causes(err) if _is_path_error(c))
            raise FileError(_path_message(cause, option)) from err
        if not any(map(_is_hub_error, _causes(err))):
            raise
        reason = first_line(err).split(". ")[0]
        raise HubError(f"{option} {name}: not a local folder, and the Hugging Face Hub lookup failed ({reason}); "
                       f"{_HUB_HINT}") from err


def report_error(prog: str, err: BaseException) -> int:
    """Prints ``err`` for the command ``prog`` on stderr and returns the exit status: a user's mistake
    (:func:`user_error`) is one line ``prog: error: MESSAGE`` and 2; anything else is a bug: the traceback, a line
    saying how to report it, and 1."""
    mistake = user_error(err)
    if mistake is not None:
        print(f"{prog}: error: {first_line(mistake)}", file=sys.stderr)
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
