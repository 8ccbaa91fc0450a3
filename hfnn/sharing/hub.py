"""Sharing saved hfnn models on the Hugging Face Hub.

:func:`upload_manifest` lists exactly what an upload of a saved model folder commits, after checking
that the folder can be loaded by someone who does not have hfnn (``config.json`` with ``auto_map``,
every module it names and every sibling module those import, safetensors weights).
:func:`push_folder` checks the folder, the token and that the Hub answers, then creates the
repository and uploads those files with ``HfApi.create_repo`` + ``HfApi.upload_folder``::

    from hfnn.sharing.hub import push_folder
    push_folder("runs/rnn-char", "me/rnn-shakespeare-char")            # needs `hf auth login` or HF_TOKEN
    push_folder("runs/rnn-char", "me/rnn-shakespeare-char", dry_run=True)  # what would be uploaded

Never uploaded: training checkpoints (``checkpoint-*/``), optimizer/scheduler/RNG state,
``training_args.bin`` and any other pickle file; a folder whose weights exist only as pickles
(``pytorch_model.bin``, ``*.pt``...) is refused.
"""

from __future__ import annotations

import ast
import glob
import json
import os
from pathlib import Path

from hfnn.models.errors import FileError, HubError, OptionError, first_line
from hfnn.models.registry import REGISTRY_FILE, SOURCE_TOKENIZER_SUBFOLDER

__all__ = [
    "HubError",
    "HubAuthError",
    "HubConnectionError",
    "ManifestError",
    "TOKENIZER_FILES",
    "push_folder",
    "upload_manifest",
]

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "chat_template.json",
)
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_PICKLE_WEIGHT_NAMES = ("pytorch_model", "model", "tf_model", "flax_model")
_SKIPPED_DIRS = ("checkpoint-", "runs", "logs", "__pycache__", ".git", "hf_modules", ".cache", "wandb")


class HubAuthError(HubError):
    """No usable Hugging Face token."""


class HubConnectionError(HubError):
    """The Hub could not be reached or refused the request."""


class ManifestError(FileError):
    """The folder is not a complete, safely shareable saved model."""


# ---------------------------------------------------------------------------------------------
# The manifest
# ---------------------------------------------------------------------------------------------


def _auto_map_modules(auto_map: dict) -> list[str]:
    """Module names (``modeling_rnn``) named by an ``auto_map`` (``"modeling_rnn.RnnForCausalLM"``)."""
    modules = []
    for value in auto_map.values():
        for ref in value if isinstance(value, (list, tuple)) else [value]:
            if not ref:
                continue
            ref = ref.split("--", 1)[-1]  # "repo--module.Class" points into another repository
            module = ref.rsplit(".", 1)[0]
            if module and module not in modules:
                modules.append(module)
    return modules


def _sibling_imports(path: Path) -> list[str]:
    """Modules a file imports with single-dot relative imports (``from .x import y``, ``from . import x``)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as err:
        raise ManifestError(f"{path.name} is not valid Python: {err}") from None
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        if node.level > 1:
            raise ManifestError(
                f"{path.name} imports from a parent package (`from {'.' * node.level}{node.module or ''} import ...`), "
                "which remote code cannot follow; import sibling files with a single dot"
            )
        if node.module:
            found.append(node.module.split(".")[0])
        else:
            found.extend(alias.name for alias in node.names)
    return found


def _code_closure(folder: Path, modules: list[str], origin: str) -> list[str]:
    """Every ``.py`` file the ``modules`` need, following sibling imports; raises naming a missing one."""
    needed, queue, importer = [], list(modules), {m: origin for m in modules}
    while queue:
        module = queue.pop(0)
        filename = f"{module}.py"
        if filename in needed:
            continue
        path = folder / filename
        if not path.is_file():
            raise ManifestError(
                f"{folder}: {filename} is missing (needed by {importer[module]}); a user without hfnn cannot load "
                "this model — save it again with save_pretrained after `import hfnn`"
            )
        needed.append(filename)
        for sibling in _sibling_imports(path):
            if f"{sibling}.py" not in needed and sibling not in queue:
                importer.setdefault(sibling, filename)
                queue.append(sibling)
    return needed


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path} must hold a JSON object")
    return data


def _is_skipped_dir(name: str) -> bool:
    return any(name == d or (d.endswith("-") and name.startswith(d)) for d in _SKIPPED_DIRS)


# written by hfnn.models.demo.write_space_files: the folder pushed to a Space serves the demo (which reads the registry)
SPACE_FILES = ("app.py", "requirements.txt", "hfnn_demo.py", REGISTRY_FILE)


def upload_manifest(folder: str | os.PathLike) -> list[str]:
    """The exact, sorted list of files (relative POSIX paths) an upload of ``folder`` commits.

    Included: ``config.json`` (must carry ``auto_map``), the modules ``auto_map`` and ``custom_pipelines``
    name and every sibling module they import (recursively), the safetensors weights (with the shard index when
    sharded), ``generation_config.json``, tokenizer files (also those in a sub-folder such as
    ``source_tokenizer/``), ``README.md``, ``results.json``, the PNG plots at the top level and the demo a Space
    runs (``app.py``, ``requirements.txt``, ``hfnn_demo.py``, ``registry.py``; see
    :func:`hfnn.models.demo.write_space_files`).
    Left out: checkpoints, optimizer/scheduler/RNG state, ``training_args.bin``, logs, other files.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ManifestError (a ValueError): no ``config.json``, no ``auto_map``, a missing sibling module (of
            ``auto_map`` or of a ``custom_pipelines`` entry), no safetensors weights, weights only as pickle
            files, no tokenizer, or a seq2seq model with its own source vocabulary but no ``source_tokenizer/``.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"no such folder: {folder}")
    if not folder.is_dir():
        raise ManifestError(f"{folder} is a file, not a saved model folder")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ManifestError(f"{folder} has no config.json: it is not a saved model folder "
                            "(save it with save_pretrained)")
    config = _read_json(config_path)
    auto_map = config.get("auto_map")
    if not isinstance(auto_map, dict) or not auto_map:
        raise ManifestError(
            f"{config_path} has no auto_map, so the model cannot be loaded without hfnn; "
            "save it with save_pretrained after `import hfnn`"
        )

    files = {"config.json"}
    files.update(_code_closure(folder, _auto_map_modules(auto_map), "config.json auto_map"))
    custom_pipelines = config.get("custom_pipelines")
    if isinstance(custom_pipelines, dict):  # pipeline(model=repo, trust_remote_code=True) imports these
        impls = {task: entry.get("impl") for task, entry in custom_pipelines.items() if isinstance(entry, dict)}
        files.update(_code_closure(folder, _auto_map_modules(impls), "config.json custom_pipelines"))

    top = {p.name for p in folder.iterdir() if p.is_file()}
    safetensors = sorted(n for n in top if n.endswith(".safetensors"))
    pickled = sorted(
        n for n in top if n.endswith(_PICKLE_SUFFIXES) and n.split(".")[0].split("-")[0] in _PICKLE_WEIGHT_NAMES
    )
    if not safetensors:
        if pickled:
            raise ManifestError(
                f"{folder} holds its weights only as pickle ({', '.join(pickled)}), which hfnn does not upload "
                "(loading a pickle can run arbitrary code); save the model with save_pretrained, which writes "
                "model.safetensors"
            )
        raise ManifestError(f"{folder} has no model.safetensors: save the model with save_pretrained first")
    files.update(safetensors)
    if "model.safetensors.index.json" in top:
        index = _read_json(folder / "model.safetensors.index.json")
        shards = sorted(set((index.get("weight_map") or {}).values()))
        missing = [s for s in shards if s not in top]
        if missing:
            raise ManifestError(f"{folder}: weight shards missing: {', '.join(missing)}")
        files.add("model.safetensors.index.json")

    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.is_file():
        tok_map = _read_json(tokenizer_config).get("auto_map")
        if isinstance(tok_map, dict):
            files.update(_code_closure(folder, _auto_map_modules(tok_map), "tokenizer_config.json auto_map"))

    for name in top:
        if name in TOKENIZER_FILES or name in ("generation_config.json", "README.md", "results.json") + SPACE_FILES:
            files.add(name)
        elif name.lower().endswith(".png"):
            files.add(name)

    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not _is_skipped_dir(p.name)):
        for path in sorted(sub.iterdir()):
            if path.is_file() and path.name in TOKENIZER_FILES:
                files.add(f"{sub.name}/{path.name}")
    _check_tokenizers(folder, config, files)
    return sorted(files)


def _check_tokenizers(folder: Path, config: dict, files: set[str]) -> None:
    """A shared model must be able to read text: a tokenizer at the top, and a seq2seq model with its own source
    vocabulary (``source_vocab_size``) its source tokenizer in ``source_tokenizer/``."""
    if "tokenizer_config.json" not in files and "tokenizer.json" not in files:
        raise ManifestError(
            f"{folder} has no tokenizer (tokenizer.json / tokenizer_config.json): the uploaded model could not read "
            "text; save it there with tokenizer.save_pretrained"
        )
    sub = SOURCE_TOKENIZER_SUBFOLDER
    if config.get("source_vocab_size") is not None and not any(f.startswith(f"{sub}/") for f in files):
        raise ManifestError(
            f"{folder} has no {sub}/ folder, but this seq2seq model reads its sources with its own "
            f"tokenizer (source_vocab_size={config['source_vocab_size']}); save it to {folder}/{sub}"
        )


# ---------------------------------------------------------------------------------------------
# Pushing
# ---------------------------------------------------------------------------------------------


def _connection_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name, attr in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            module = __import__(module_name)
            types.append(getattr(module, attr))
        except (ImportError, AttributeError):
            pass
    from huggingface_hub.errors import OfflineModeIsEnabled

    types.append(OfflineModeIsEnabled)
    return tuple(types)


def _timeout() -> float:
    for name in ("HFNN_HUB_TIMEOUT", "HF_HUB_ETAG_TIMEOUT"):
        value = os.environ.get(name)
        if value:
            try:
                return float(value)
            except ValueError:
                pass
    return 10.0


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Uploads a saved model folder to the Hub repository ``repo_id``; returns the committed files.

    Everything is checked before any network call: the folder (:func:`upload_manifest`), the repo id,
    and the token (``token``, else ``HF_TOKEN``/the ``hf auth login`` token). The Hub is then asked
    who the token belongs to, with a short timeout (``HF_HUB_ETAG_TIMEOUT``, 10 s by default), so an
    unreachable Hub or a rejected token fails fast with a one-line :class:`HubConnectionError`
    instead of hanging; then ``create_repo(exist_ok=True)`` and ``upload_folder`` restricted to the
    manifest. ``HF_ENDPOINT`` selects another Hub endpoint. ``dry_run=True`` returns the manifest and
    touches nothing.
    """
    manifest = upload_manifest(folder)
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise OptionError(f"invalid repo id {repo_id!r}: {first_line(err)}") from None
    if dry_run:
        return manifest

    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    token = token or get_token()
    if not token:
        raise HubAuthError("no Hugging Face token: run `hf auth login` or set HF_TOKEN")
    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    api = HfApi(endpoint=endpoint, token=token)
    network_errors = _connection_error_types()
    stage = "checking the token"
    try:
        # Preflight with a timeout: the library's own calls have none, and would hang on a dead link.
        response = get_session().get(
            f"{endpoint}/api/whoami-v2", headers=build_hf_headers(token=token), timeout=_timeout()
        )
        hf_raise_for_status(response)
        stage = f"creating the repository {repo_id}"
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        stage = f"uploading to {repo_id}"
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            allow_patterns=[glob.escape(name) for name in manifest],
            commit_message=commit_message or f"Upload {Path(folder).name} with hfnn",
        )
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise HubConnectionError(
                f"the Hub at {endpoint} rejected the token (HTTP {status}) while {stage}: "
                f"run `hf auth login` with a token that can write to {repo_id}"
            ) from None
        raise HubConnectionError(
            f"the Hub at {endpoint} answered HTTP {status} while {stage}; nothing was committed "
            f"(check HF_ENDPOINT and the repo id): {first_line(err)}"
        ) from None
    except network_errors as err:
        raise HubConnectionError(
            f"could not reach the Hugging Face Hub at {endpoint} while {stage} "
            f"({type(err).__name__}: {first_line(err)}); nothing was committed"
        ) from None
    return manifest
