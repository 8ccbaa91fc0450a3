"""Saved model folders as the command line runs them: a local folder or a Hub id, checked to be an hfnn
model whose config names a task head that its weights really hold, with tokenizers that read text as
text and stay within the model's positions. Every problem is a :class:`hfnn.models.errors.UserError` naming
the folder and what is wrong."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

from hfnn.models import registry
from hfnn.models.demo import resolve_model_folder
from hfnn.models.errors import UserError, first_line

__all__ = ["SavedModel", "load_saved", "load_source_tokenizer", "open_model_dir", "quiet_loading", "require_task",
           "resolve_device", "saved_pipeline"]


def resolve_device(name: str):
    """The torch device of a ``--device`` value (``auto``: cuda when available, else cpu)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"bad --device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available here")
    return device


@dataclasses.dataclass
class SavedModel:
    path: Path
    config: dict
    model_type: str
    architecture: str
    task: registry.Task


def open_model_dir(name: str) -> SavedModel:
    """Checks that ``name`` is a saved hfnn model folder and says which task its head does."""
    path = resolve_model_folder(name, UserError)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise UserError(f"{name} is not a saved model folder (no config.json); "
                        "save models with save_pretrained or `hfnn train`")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{config_path} cannot be read: {err}") from None
    try:
        arch, task = registry.saved_model(config, name)
    except ValueError as err:
        raise UserError(f"{err}; nothing to run") from None
    return SavedModel(path, config, config["model_type"], arch.name, task)


def require_task(saved: SavedModel, task: str, name: str) -> None:
    if saved.task.name != task:
        raise UserError(f"{name} holds {saved.task.words} ({(saved.config.get('architectures') or ['?'])[0]}), not "
                       f"{registry.TASKS[task].words}; use `hfnn {saved.task.command}` (or `hfnn predict`)")


@contextlib.contextmanager
def quiet_loading():
    """No "Loading weights" progress bar nor table of missing weights (checked here, in one line)."""
    from transformers.utils import logging as hf_logging

    enabled, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if enabled:
            hf_logging.enable_progress_bar()


def _tokenizer(folder: Path, config, check_vocab: bool = True):
    """The tokenizer saved in ``folder``, reading special-token strings as text, fitted to the model."""
    from transformers import AutoTokenizer

    from hfnn.data.tokenization import text_only

    try:
        tokenizer = text_only(AutoTokenizer.from_pretrained(folder))
    except (OSError, ValueError, TypeError) as err:
        raise UserError(f"no usable tokenizer saved in {folder}: {first_line(err)}") from None
    vocab = getattr(config, "vocab_size", None)
    if check_vocab and vocab and getattr(config, "source_vocab_size", None) is None and len(tokenizer) > vocab:
        raise UserError(f"the tokenizer in {folder} has {len(tokenizer)} tokens but the model's vocab_size is {vocab}; "
                       "it does not belong to this model")
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and (tokenizer.model_max_length or 0) > positions:
        tokenizer.model_max_length = positions  # a saved model_max_length beyond the positions would overflow them
    return tokenizer


def load_saved(saved: SavedModel, device):
    """The model and tokenizer of a checked folder: the head config.json names must have all its weights."""
    import transformers

    import hfnn  # noqa: F401  (registers the Auto classes)

    try:
        with quiet_loading():
            model, info = getattr(transformers, saved.task.auto_class).from_pretrained(saved.path,
                                                                                       output_loading_info=True)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load the model in {saved.path}: {first_line(err)}") from None
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in (info.get("mismatched_keys") or []))
    head = (saved.config.get("architectures") or ["?"])[0]
    if missing:
        unexpected = sorted(info.get("unexpected_keys") or [])
        other = f"; it holds weights of another head instead ({', '.join(unexpected[:3])})" if unexpected else ""
        raise UserError(f"{saved.path}: config.json names {head} ({saved.task.words}) but the weights file has no "
                       f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}{other}; refusing to run a "
                       "randomly initialised head (fix `architectures` in config.json or use the right folder)")
    if mismatched:
        raise UserError(f"{saved.path}: weights of the wrong shape for {head}: {', '.join(mismatched[:3])} "
                       "(config.json does not match the weights file)")
    tokenizer = _tokenizer(saved.path, model.config)
    return model.to(device).eval(), tokenizer


def load_source_tokenizer(saved: SavedModel, model, target_tokenizer):
    """The source tokenizer of a seq2seq folder (``source_tokenizer/``); the target one only for a shared vocabulary."""
    sub = registry.SOURCE_TOKENIZER_SUBFOLDER
    folder = saved.path / sub
    encoder_vocab = getattr(model.config, "source_vocab_size", None)
    if not folder.is_dir():
        if encoder_vocab is not None:
            raise UserError(f"{saved.path} has no {sub}/ folder: this {type(model).__name__} reads its sources with "
                           f"its own tokenizer (source_vocab_size={encoder_vocab}); save it there "
                           f"(source_tokenizer.save_pretrained('{saved.path}/{sub}'))")
        return target_tokenizer
    source = _tokenizer(folder, model.config, check_vocab=False)  # checked against the encoder's vocabulary here
    if len(source) > (encoder_vocab or model.config.vocab_size):
        raise UserError(f"{folder} has {len(source)} tokens but the model's encoder takes "
                       f"{encoder_vocab or model.config.vocab_size} "
                       "(source_vocab_size); the folder's source tokenizer does not belong to its model")
    return source


def saved_pipeline(saved: SavedModel, device):
    """``transformers.pipeline`` of the folder's task around its checked model and tokenizer(s)."""
    from transformers import pipeline

    model, tokenizer = load_saved(saved, device)
    extra = {}
    if saved.task.name == "seq2seq":
        extra["source_tokenizer"] = load_source_tokenizer(saved, model, tokenizer)
    elif saved.task.name == "language-modeling":
        tokenizer.padding_side = "left"  # a batch of prompts continues at its right edge
    with quiet_loading():
        return pipeline(saved.task.pipeline_task, model=model, tokenizer=tokenizer, device=device, **extra)
