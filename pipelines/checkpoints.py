"""Checkpoints that are either complete or ignored: a commit marker per checkpoint, and the checks that
decide which ``checkpoint-N`` folder a run may resume from."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zipfile
from pathlib import Path

from transformers import TrainerCallback

from hfnn.models.errors import FileError

__all__ = [
    "CHECKPOINT_MARKER",
    "CheckpointCommitCallback",
    "checkpoint_problem",
    "last_valid_checkpoint",
    "resolve_resume_checkpoint",
    "write_checkpoint_marker",
]

_logger = logging.getLogger(__name__)

# Trainer._save_checkpoint writes straight into ``checkpoint-N`` (weights, optimizer, scheduler, RNG
# states, then trainer_state.json) and ``transformers.trainer_utils.get_last_checkpoint`` returns the
# highest-numbered ``checkpoint-N`` folder without looking inside it. A run killed while saving
# leaves a half-written folder that ``--resume_from_checkpoint True`` would pick; and a folder
# re-saved by a resumed run can mix new files with an old trainer_state.json. Here every checkpoint
# gets a commit marker, written atomically after all of its files (by every process) are on disk,
# listing each file's size and SHA-256; a checkpoint counts only if its marker matches its files.

CHECKPOINT_MARKER = "hfnn_checkpoint.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_RESUME_LATEST = {"true", "latest", "last", "yes", "1"}
_RESUME_NONE = {"", "false", "none", "no", "0"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checkpoint_files(folder: Path) -> dict[str, Path]:
    return {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(CHECKPOINT_MARKER)
    }


def write_checkpoint_marker(folder: str | os.PathLike, step: int) -> Path:
    """Commits ``folder``: writes the marker (file sizes + SHA-256) to a temp file, fsyncs, renames."""
    folder = Path(folder)
    files = {name: {"size": p.stat().st_size, "sha256": _sha256(p)} for name, p in _checkpoint_files(folder).items()}
    marker, tmp = folder / CHECKPOINT_MARKER, folder / f"{CHECKPOINT_MARKER}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"global_step": step, "files": files}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, marker)  # the commit point: the marker is there, whole, or not at all
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # some file systems cannot fsync a folder
        pass
    return marker


def _structural_problem(folder: Path, step: int | None) -> str | None:
    """For checkpoints without a marker (written without CheckpointCommitCallback): Trainer writes
    trainer_state.json last, so it must parse and name this step; weights and pickled states must be whole."""
    try:
        trainer_state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "has no trainer_state.json (interrupted while saving?)"
    except (ValueError, UnicodeDecodeError):
        return "has a truncated or corrupt trainer_state.json (interrupted while saving?)"
    if step is not None and trainer_state.get("global_step") != step:
        return f"trainer_state.json says global_step={trainer_state.get('global_step')}, not {step}"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "has no model.safetensors"
    for path in weights:
        with open(path, "rb") as f:
            head = f.read(8)
            try:
                header_len = int.from_bytes(head, "little")
                header = json.loads(f.read(header_len)) if len(head) == 8 else None
            except (ValueError, UnicodeDecodeError, MemoryError, OverflowError):
                header = None
        if not isinstance(header, dict):
            return f"{path.name} is not a readable safetensors file"
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if path.stat().st_size != 8 + header_len + end:
            return f"{path.name} is truncated ({path.stat().st_size} bytes, its header needs {8 + header_len + end})"
    for path in sorted(list(folder.glob("*.pt")) + list(folder.glob("*.pth")) + list(folder.glob("*.bin"))):
        if not zipfile.is_zipfile(path):
            return f"{path.name} is truncated or corrupt"
    return None


def checkpoint_problem(folder: str | os.PathLike, require_marker: bool = True) -> str | None:
    """Why ``folder`` (a ``checkpoint-N`` folder) cannot be resumed from, or None if it can.

    With a marker, every file it lists must be there with the same size and SHA-256 (and no other
    file may have appeared). Without one: an error if ``require_marker``, else the structural checks
    of checkpoints written by a plain ``Trainer``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return "does not exist or is not a folder"
    match = _CHECKPOINT_RE.match(folder.name)
    step = int(match.group(1)) if match else None  # a renamed folder: no step to check against
    marker = folder / CHECKPOINT_MARKER
    if not marker.is_file():
        if require_marker:
            return f"has no {CHECKPOINT_MARKER}: it was never completed (interrupted while saving?)"
        return _structural_problem(folder, step)
    try:
        manifest = json.loads(marker.read_text(encoding="utf-8"))
        listed = manifest["files"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return f"has an unreadable {CHECKPOINT_MARKER}"
    if step is not None and manifest.get("global_step") != step:
        return f"{CHECKPOINT_MARKER} is for step {manifest.get('global_step')}, not {step}"
    present = _checkpoint_files(folder)
    for name in sorted(set(listed) | set(present)):
        if name not in present:
            return f"{name} is missing"
        if name not in listed:
            return f"{name} was written after the checkpoint was completed"
        path, want = present[name], listed[name]
        if path.stat().st_size != want["size"] or _sha256(path) != want["sha256"]:
            return f"{name} differs from the completed checkpoint (changed or partly rewritten)"
    return None


def last_valid_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` in ``output_dir`` that is complete and unchanged, or None.

    Once any checkpoint there has a commit marker (the pipelines write one), checkpoints without
    one are incomplete and skipped; in a folder of unmarked checkpoints (a plain ``Trainer`` run)
    the structural checks of :func:`checkpoint_problem` decide. Skipped folders are logged.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))),
        reverse=True,
    )
    marked = any((p / CHECKPOINT_MARKER).is_file() for _, p in found)
    for _, path in found:
        problem = checkpoint_problem(path, require_marker=marked)
        if problem is None:
            return str(path)
        _logger.warning("Skipping checkpoint %s: it %s", path, problem)
    return None


def resolve_resume_checkpoint(value, output_dir: str | os.PathLike) -> str | None:
    """``--resume_from_checkpoint`` as a checkpoint path: None for false/none; for true/latest/last the
    newest valid checkpoint in ``output_dir`` (error if there is none); a given path must be valid."""
    if value is None or value is False:
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in _RESUME_LATEST):
        from hfnn.pipelines.output_dir import staged_dir

        # the newer of the folder's own checkpoint and one that a killed --overwrite_output_dir run left staged
        found = max((c for c in (last_valid_checkpoint(output_dir), last_valid_checkpoint(staged_dir(output_dir)))
                     if c), key=lambda c: Path(c).stat().st_mtime, default=None)
        if found is not None and Path(found).parent != Path(output_dir):
            _logger.warning("--resume_from_checkpoint %s: continuing the --overwrite_output_dir run that did not end, "
                            "from %s; it replaces %s when it ends", value, found, output_dir)
        if found is None:
            raise FileNotFoundError(
                f"--resume_from_checkpoint {value}: no complete checkpoint-<step> folder in {output_dir} "
                "(an interrupted save leaves an incomplete one, which is never resumed from)"
            )
        return found
    if isinstance(value, str) and value.strip().lower() in _RESUME_NONE:
        return None
    path = Path(value)
    marked = path.parent.is_dir() and any(
        (p / CHECKPOINT_MARKER).is_file() for p in path.parent.iterdir() if _CHECKPOINT_RE.match(p.name)
    )
    problem = checkpoint_problem(path, require_marker=marked)
    if problem is not None:
        raise FileError(f"--resume_from_checkpoint {value}: cannot resume from it: it {problem}")
    return str(path)


class CheckpointCommitCallback(TrainerCallback):
    """Writes the commit marker of each checkpoint after the Trainer has saved it (see
    :func:`last_valid_checkpoint`). Every process waits for the others first, since each one writes
    its own RNG state into the folder."""

    # hfnn.training.TrainingCallbacks.attach runs it after the callbacks that write into a checkpoint
    seals_checkpoint = True

    def on_save(self, args, state, control, **kwargs):
        from accelerate import PartialState

        PartialState().wait_for_everyone()
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if args.should_save and folder.is_dir():
            write_checkpoint_marker(folder, state.global_step)
        return control
