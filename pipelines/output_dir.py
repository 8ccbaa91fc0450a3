"""The output folder of a pipeline run: claimed before training, replaced as a whole, never lost.

:func:`claim_output_dir` runs before any data is loaded or any step is trained:

* a path that is a file, or a folder that cannot be created or written, is an error at once (not a
  ``PermissionError`` once training has finished);
* a lock (``flock`` on ``.hfnn-run.lock``, which names the process, host and start time) is held in the
  folder for the whole run, so a second run into the same folder is refused while the first one lives;
  the kernel drops the lock of a process that ends in any way, so a killed run leaves none behind;
* a non-empty folder is refused unless ``--overwrite_output_dir`` is given or the run resumes from a
  checkpoint *inside* that folder (a checkpoint elsewhere does not open another run's folder);
* overwriting never writes into the old folder: the run writes into a sibling (``.NAME.hfnn-new``),
  and :meth:`OutputDir.commit` swaps it in at the end (the old content, checkpoints and all, goes
  away only then). A run that fails before its model is saved leaves the old folder as it was.

:meth:`OutputDir.save` writes the trained model; when the folder cannot be written after all (disk
full, permissions changed during training) it saves into a sibling folder instead and raises
:class:`OutputDirError` naming that folder, so a finished training is never thrown away and the run
does not end with status 0.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["LOCK_NAME", "OutputDir", "OutputDirError", "claim_output_dir", "process_rank"]

_logger = logging.getLogger(__name__)

LOCK_NAME = ".hfnn-run.lock"


class OutputDirError(OSError, ValueError):
    """The output folder cannot be used or written (a user-facing error: one line, non-zero exit)."""


def process_rank() -> int:
    """This process' rank under torchrun / accelerate (0 without them)."""
    for name in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(name, "")
        if value.strip().lstrip("-").isdigit():
            return int(value)
    return 0


def _contents(path: Path) -> list[Path]:
    return [p for p in path.iterdir() if p.name != LOCK_NAME] if path.is_dir() else []


def _inside(child, parent: Path) -> bool:
    try:
        return Path(child).resolve().parent == parent.resolve()
    except OSError:
        return False


class OutputDir:
    """A claimed output folder. ``work_dir`` is where the run writes (the folder itself, or the sibling
    that replaces it when overwriting); ``path`` is the folder the user named."""

    def __init__(self, path: Path, work_dir: Path, main: bool):
        self.path = path
        self.work_dir = work_dir
        self.main = main
        self.saved_to: Path | None = None
        self.closed = False
        self._fd: int | None = None

    @property
    def staged(self) -> bool:
        return self.work_dir != self.path

    # -- lock -----------------------------------------------------------------------------------
    def _lock(self) -> None:
        """Takes the folder's lock: an ``flock`` on ``.hfnn-run.lock`` held open for the whole run, which the
        kernel releases when the process ends however it ends (a killed run leaves no lock behind, and a lock
        file nobody holds is simply taken). The file names the holder (pid, host, start) for the message another
        run gets. Where ``fcntl`` is missing (Windows) the run goes without a lock."""
        try:
            import fcntl
        except ImportError:
            _logger.warning("no fcntl on this system: output_dir %s is not locked against a second run", self.path)
            return
        lock = self.path / LOCK_NAME
        for _ in range(5):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
            except PermissionError as err:
                raise OutputDirError(f"output_dir {self.path} is not writable ({err.strerror}); choose another "
                                     "output_dir") from None
            except OSError as err:
                raise OutputDirError(f"output_dir {self.path}: cannot write in it ({err})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                self._refuse(lock)
            try:  # the file may have been removed by the run that just ended: lock the one in place
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode("utf-8"))
            self._fd = fd
            return
        raise FileExistsError(f"output_dir {self.path}: could not take its lock file {lock}")

    def _refuse(self, lock: Path):
        try:
            held = json.loads(lock.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            held = {}
        raise FileExistsError(
            f"output_dir {self.path} is in use by another run (process {held.get('pid', '?')} on "
            f"{held.get('host', '?')}, started {held.get('started', '?')}; lock file {lock}): choose another "
            "output_dir, or wait for that run to end"
        ) from None

    def _unlock(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is None:
            return
        self._fd = None
        try:
            (self.path / LOCK_NAME).unlink()
        except OSError:
            pass
        os.close(fd)

    # -- saving ---------------------------------------------------------------------------------
    def save(self, write: Callable[[Path], None]) -> Path:
        """Calls ``write(folder)`` to save the trained model into ``work_dir``. When that fails with an
        OSError, saves into a fresh sibling folder (or a temporary folder) instead and raises
        :class:`OutputDirError` saying where the model is."""
        try:
            write(self.work_dir)
            self.saved_to = self.work_dir
            return self.work_dir
        except OSError as err:
            failure = err
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        fallback = None
        for make in (lambda: self.path.parent / f"{self.path.name}.saved-{stamp}-{os.getpid()}",
                     lambda: Path(tempfile.gettempdir()) / f"{self.path.name}.saved-{stamp}-{os.getpid()}"):
            candidate = make()
            try:
                candidate.mkdir(parents=True, exist_ok=False)
                write(candidate)
                fallback = candidate
                break
            except OSError:
                shutil.rmtree(candidate, ignore_errors=True)
        if fallback is None:
            raise OutputDirError(f"could not save the trained model into {self.work_dir} ({failure}) nor into a "
                                 "fallback folder") from failure
        self.saved_to = fallback
        _logger.error("could not save into %s (%s); the trained model was saved to %s", self.work_dir, failure, fallback)
        print(f"could not save into {self.path} ({failure}); the trained model was saved to {fallback}")
        raise OutputDirError(
            f"could not save into output_dir {self.path} ({failure}); the trained model was saved to {fallback} instead"
        ) from failure

    # -- the end of the run ---------------------------------------------------------------------
    def commit(self) -> None:
        """Ends the run: a staged folder replaces the old one; the lock is released."""
        if self.closed:
            return
        self.closed = True
        if not self.main:
            return
        if self.staged:
            old = self.path.parent / f".{self.path.name}.hfnn-old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.path, old)
            os.replace(self.work_dir, self.path)
            fd, self._fd = getattr(self, "_fd", None), None
            if fd is not None:
                os.close(fd)
            shutil.rmtree(old, ignore_errors=True)
        else:
            self._unlock()

    def abort(self) -> None:
        """Ends a failed run: a staged folder is deleted unless the model was saved in it (then it is
        committed, so the trained model is where the user asked); the lock is released."""
        if self.closed:
            return
        if self.saved_to is not None and self.saved_to == self.work_dir:
            try:
                self.commit()
                return
            except OSError:
                pass
        self.closed = True
        if not self.main:
            return
        if self.staged:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        self._unlock()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


def _within(child, folder: Path) -> bool:
    try:
        child, folder = Path(child).expanduser().resolve(), folder.resolve()
    except OSError:
        return False
    return child == folder or folder in child.parents


def claim_output_dir(path, overwrite: bool = False, resume_from=None, inputs=()) -> OutputDir:
    """Checks and claims ``path`` for a run (see the module docstring); returns the :class:`OutputDir`.
    ``inputs`` are the files and folders the run reads (data, a model to start from): overwriting a folder
    that holds one of them is refused, since replacing the folder would delete it."""
    path = Path(path)
    main = process_rank() == 0
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output_dir {path} exists and is not a folder")
    resume_inside = bool(resume_from) and (resume_from is True or _inside(resume_from, path))
    busy = bool(_contents(path))
    if busy and overwrite and not resume_inside:
        for item in inputs:
            if item and os.path.exists(os.path.expanduser(str(item))) and _within(item, path):
                raise ValueError(
                    f"--overwrite_output_dir: {item} is inside output_dir {path}, whose content the run replaces; "
                    "move it out or choose another output_dir"
                )
    if busy and not (overwrite or resume_inside):
        where = "" if not resume_from or resume_inside else (
            f" (--resume_from_checkpoint {resume_from} is not inside it, so resuming does not open it)")
        raise FileExistsError(
            f"output_dir {path} already exists and is not empty{where}; choose another output_dir, pass "
            "--overwrite_output_dir true to replace its content, or --resume_from_checkpoint with one of its "
            "checkpoints to continue that run."
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except PermissionError as err:
        raise OutputDirError(f"output_dir {path} cannot be created ({err.strerror}); choose another output_dir") from None
    except OSError as err:
        raise OutputDirError(f"output_dir {path} cannot be created ({err}); choose another output_dir") from None
    work_dir = path
    if busy and overwrite and not resume_inside:
        work_dir = path.parent / f".{path.name}.hfnn-new"
    folder = OutputDir(path, work_dir, main)
    if not main:
        return folder
    folder._lock()
    try:
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputDirError(f"output_dir {path} is not writable; choose another output_dir")
        if folder.staged:
            shutil.rmtree(work_dir, ignore_errors=True)  # left by a run that was killed (we hold the lock)
            try:
                work_dir.mkdir()
            except OSError as err:
                raise OutputDirError(
                    f"--overwrite_output_dir: cannot create {work_dir} beside {path} to write the new run "
                    f"into ({err}); the folder that holds output_dir must be writable") from None
    except BaseException:
        folder._unlock()
        raise
    return folder
