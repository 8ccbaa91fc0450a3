"""The output folder of a pipeline run: claimed before training, replaced as a whole, never lost.

:func:`claim_output_dir` runs before any data is loaded: a path that is a file, or a folder that cannot be
created or written, is an error at once; an ``flock`` on ``.hfnn-run.lock`` (naming the process, host and
start) keeps a second run out for the whole run, and the kernel drops it however the process ends; a
non-empty folder is refused unless ``--overwrite_output_dir`` is given or the run resumes from a checkpoint
*inside* it. Overwriting never writes into the old folder: the run writes into ``.NAME.hfnn-new`` and
:meth:`OutputDir.commit` swaps it in at the end, so a run that fails leaves the old folder as it was. A run
killed before it ends leaves that staged folder; resuming from one of its checkpoints goes on writing there
and swaps it in at the end in the same way.
:meth:`OutputDir.save` saves into a sibling folder when the folder cannot be written after all, and raises
:class:`OutputDirError` naming it: a finished training is never thrown away, and the run does not exit 0.
"""

from __future__ import annotations

import datetime
import errno
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Callable

from hfnn.models.errors import OutputDirError

__all__ = ["LOCK_NAME", "OutputDir", "OutputDirError", "claim_output_dir", "process_rank", "staged_dir"]

_logger = logging.getLogger(__name__)


def _refused(err: OSError) -> bool:
    """Whether ``err`` says the folder may not be written (its mode, or a read-only file system)."""
    return isinstance(err, PermissionError) or err.errno == errno.EROFS


LOCK_NAME = ".hfnn-run.lock"


def process_rank() -> int:
    """This process' rank under torchrun / accelerate (0 without them)."""
    for name in ("RANK", "LOCAL_RANK"):
        if os.environ.get(name, "").strip().lstrip("-").isdigit():
            return int(os.environ[name])
    return 0


def staged_dir(path) -> Path:
    """The sibling an ``--overwrite_output_dir`` run writes into until it ends: ``.NAME.hfnn-new`` beside ``path``."""
    path = Path(path)
    return path.parent / f".{path.name}.hfnn-new"


def _within(child, folder: Path, directly: bool = False) -> bool:
    """Whether ``child`` is in ``folder`` (``directly``: right inside it; else anywhere below it, or it)."""
    try:
        child, folder = Path(child).expanduser().resolve(), folder.resolve()
    except OSError:
        return False
    return child.parent == folder if directly else (child == folder or folder in child.parents)


class OutputDir:
    """A claimed output folder. ``work_dir`` is where the run writes (the folder itself, or the sibling
    that replaces it when overwriting); ``path`` is the folder the user named."""

    def __init__(self, path: Path, work_dir: Path, main: bool):
        self.path, self.work_dir, self.main = path, work_dir, main
        self.saved_to: Path | None = None
        self.closed, self._fd = False, None
        self._before_save: set[str] | None = None

    @property
    def staged(self) -> bool:
        return self.work_dir != self.path

    def _lock(self) -> None:
        """Takes the folder's lock, held open for the whole run (a lock file nobody holds is simply taken).
        Where ``fcntl`` is missing (Windows) the run goes without a lock."""
        try:
            import fcntl
        except ImportError:
            _logger.warning("no fcntl on this system: output_dir %s is not locked against a second run", self.path)
            return
        lock = self.path / LOCK_NAME
        for _ in range(5):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
            except OSError as err:
                why = f"is not writable ({err.strerror})" if _refused(err) else f"cannot be written ({err})"
                raise OutputDirError(f"output_dir {self.path} {why}; choose another output_dir") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                try:
                    held = json.loads(lock.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    held = {}
                raise FileExistsError(
                    f"output_dir {self.path} is in use by another run (process {held.get('pid', '?')} on "
                    f"{held.get('host', '?')}, started {held.get('started', '?')}; lock file {lock}): choose another "
                    "output_dir, or wait for that run to end") from None
            try:  # the file may have been removed by the run that just ended: lock the one in place
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                         "started": started}).encode())
                self._fd = fd
                return
            os.close(fd)
        raise FileExistsError(f"output_dir {self.path}: could not take its lock file {lock}")

    def _unlock(self, remove: bool = True) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            if remove:
                (self.path / LOCK_NAME).unlink(missing_ok=True)
            os.close(fd)

    def save(self, write: Callable[[Path], None]) -> Path:
        """Calls ``write(folder)`` to save the trained model into ``work_dir``. When that fails with an
        OSError, saves into a fresh sibling folder (or a temporary folder) instead and raises
        :class:`OutputDirError` saying where the model is."""
        try:
            self._before_save = {p.name for p in self.work_dir.iterdir()} if self.work_dir.is_dir() else set()
            write(self.work_dir)
            self.saved_to = self.work_dir
            return self.work_dir
        except OSError as err:
            failure = err
        name = f"{self.path.name}.saved-{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
        for candidate in (self.path.parent / name, Path(tempfile.gettempdir()) / name):
            try:
                candidate.mkdir(parents=True, exist_ok=False)
                write(candidate)
            except OSError:
                shutil.rmtree(candidate, ignore_errors=True)
                continue
            self.saved_to = candidate
            _logger.error("could not save into %s (%s); the trained model was saved to %s", self.work_dir, failure,
                          candidate)
            print(f"could not save into {self.path} ({failure}); the trained model was saved to {candidate}")
            raise OutputDirError(f"could not save into output_dir {self.path} ({failure}); the trained model was "
                                 f"saved to {candidate} instead") from failure
        raise OutputDirError(f"could not save the trained model into {self.work_dir} ({failure}) nor into a "
                             "fallback folder") from failure

    def discard_saved(self) -> None:
        """Takes back the saved model (it turned out unusable, e.g. its evaluation is not finite): what
        :meth:`save` wrote into ``work_dir`` is removed (checkpoints written during training stay), a fallback
        folder is deleted, and the run's end no longer commits it."""
        saved, self.saved_to = self.saved_to, None
        if saved is None:
            return
        if saved != self.work_dir:
            shutil.rmtree(saved, ignore_errors=True)
            return
        for item in saved.iterdir():
            if item.name not in (self._before_save or set()) and item.name != LOCK_NAME:
                shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)

    def commit(self) -> None:
        """Ends the run: a staged folder replaces the old one; the lock is released."""
        if self.closed:
            return
        self.closed = True
        if self.main and self.staged:
            old = self.path.parent / f".{self.path.name}.hfnn-old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.path, old)
            os.replace(self.work_dir, self.path)
            self._unlock(remove=False)  # the lock file went with the old folder
            shutil.rmtree(old, ignore_errors=True)
        elif self.main:
            self._unlock()

    def abort(self) -> None:
        """Ends a failed run: a staged folder is deleted unless the model was saved in it (then it is
        committed, so the trained model is where the user asked) or it holds a complete checkpoint (then it
        is kept for ``--resume_from_checkpoint``); the lock is released."""
        if self.closed:
            return
        if self.saved_to is not None and self.saved_to == self.work_dir:
            try:
                return self.commit()
            except OSError:
                pass
        self.closed = True
        if self.main and self.staged:
            from hfnn.pipelines.checkpoints import last_valid_checkpoint

            checkpoint = last_valid_checkpoint(self.work_dir)
            if checkpoint is None:
                shutil.rmtree(self.work_dir, ignore_errors=True)
            else:  # the run can be continued: keep it beside the old folder, which stays as it was
                _logger.warning("the run did not end; %s keeps its %s: --resume_from_checkpoint latest continues it "
                                "(and then replaces %s), --overwrite_output_dir true starts afresh", self.work_dir,
                                Path(checkpoint).name, self.path)
        if self.main:
            self._unlock()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.commit() if exc_type is None else self.abort()
        return False


def claim_output_dir(path, overwrite: bool = False, resume_from=None, inputs=()) -> OutputDir:
    """Checks and claims ``path`` for a run (see the module docstring); returns the :class:`OutputDir`.
    ``inputs`` are the files and folders the run reads (data, a model to start from): overwriting a folder
    that holds one of them is refused, since replacing the folder would delete it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output_dir {path} exists and is not a folder")
    resume_inside = bool(resume_from) and (resume_from is True or _within(resume_from, path, directly=True))
    # a checkpoint of an overwriting run that was killed: that run goes on in its staged folder
    resume_staged = bool(resume_from) and resume_from is not True and _within(resume_from, staged_dir(path),
                                                                             directly=True)
    busy = path.is_dir() and any(p.name != LOCK_NAME for p in path.iterdir())
    replace = resume_staged or (busy and overwrite and not resume_inside)
    for item in inputs if replace else ():
        if item and os.path.exists(os.path.expanduser(str(item))) and _within(item, path):
            raise OutputDirError(f"--overwrite_output_dir: {item} is inside output_dir {path}, whose content the run "
                                 "replaces; move it out or choose another output_dir")
    if busy and not (overwrite or resume_inside or resume_staged):
        where = "" if not resume_from or resume_inside else (
            f" (--resume_from_checkpoint {resume_from} is not inside it, so resuming does not open it)")
        raise FileExistsError(
            f"output_dir {path} already exists and is not empty{where}; choose another output_dir, pass "
            "--overwrite_output_dir true to replace its content, or --resume_from_checkpoint with one of its "
            "checkpoints to continue that run.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        why = err.strerror if _refused(err) else err
        raise OutputDirError(f"output_dir {path} cannot be created ({why}); choose another output_dir") from None
    folder = OutputDir(path, staged_dir(path) if replace else path, process_rank() == 0)
    if not folder.main:
        return folder
    folder._lock()
    try:
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputDirError(f"output_dir {path} is not writable; choose another output_dir")
        if folder.staged and not resume_staged:
            if folder.work_dir.exists():  # left by a run that was killed (we hold the lock)
                _logger.warning("removing %s, left by an --overwrite_output_dir run that did not end (resume it with "
                                "--resume_from_checkpoint latest instead)", folder.work_dir)
            shutil.rmtree(folder.work_dir, ignore_errors=True)
            try:
                folder.work_dir.mkdir()
            except OSError as err:
                raise OutputDirError(
                    f"--overwrite_output_dir: cannot create {folder.work_dir} beside {path} to write the new run "
                    f"into ({err}); the folder that holds output_dir must be writable") from None
    except BaseException:
        folder._unlock()
        raise
    return folder
