"""Runs transformers' own common model tests (``ModelTesterMixin``, and ``GenerationTesterMixin`` where
the test sources have it) against every hfnn architecture.

    python tests/hf_common/run.py [pytest arguments, e.g. -k rnn -x]

The transformers test sources are not part of this repository. They are taken from the folder named by
``HFNN_TRANSFORMERS_TESTS`` (the ``tests`` folder of a transformers checkout of the installed version),
or else from the source distribution of the installed transformers, downloaded once with pip into
``~/.cache/hfnn/transformers-tests-<version>``. The source distribution ships
``tests/test_modeling_common.py`` but not ``tests/generation/test_utils.py`` nor
``tests/exporters/test_export.py``: a missing one is replaced by an empty mixin, and the run says so.
The suite (``suite.py`` beside this file) is not collected by the default ``pytest`` run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers

HERE = Path(__file__).resolve().parent
PACKAGE = "hf_common_tests"  # the name the transformers test folder is imported under
STUBS = {
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
}


def _sdist_tests(version: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hfnn" / f"transformers-tests-{version}"
    if (cache / "test_modeling_common.py").is_file():
        return cache
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", f"transformers=={version}",
             "-d", tmp], check=True, stdout=subprocess.DEVNULL,
        )
        (archive,) = Path(tmp).glob("transformers-*.tar.gz")
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.split("/")[1:2] == ["tests"] and m.isfile()]
            tar.extractall(tmp, members=members, filter="data")
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(Path(tmp) / f"transformers-{version}" / "tests", cache, dirs_exist_ok=True)
    return cache


def prepare() -> tuple[Path, list[str]]:
    """Returns a folder holding the package ``hf_common_tests`` and the list of stubbed files."""
    source = os.environ.get("HFNN_TRANSFORMERS_TESTS")
    source = Path(source) if source else _sdist_tests(transformers.__version__)
    if not (source / "test_modeling_common.py").is_file():
        raise SystemExit(f"{source} has no test_modeling_common.py (HFNN_TRANSFORMERS_TESTS must name a tests folder)")
    root = Path(tempfile.mkdtemp(prefix="hfnn-hf-common-"))
    package = root / PACKAGE
    shutil.copytree(source, package, ignore=shutil.ignore_patterns("models", "fixtures", "__pycache__"))
    stubbed = []
    for relative, text in STUBS.items():
        target = package / relative
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            stubbed.append(relative)
        for folder in (target.parent, package):
            (folder / "__init__.py").touch()
    return root, stubbed


def main(argv: list[str]) -> int:
    root, stubbed = prepare()
    for relative in stubbed:
        print(f"note: {relative} is missing from the transformers test sources; its mixin is empty")
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([str(root), str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "pytest", str(HERE / "suite.py"), "-p", "no:cacheprovider", "-q", *argv]
    return subprocess.call(cmd, env=env, cwd=str(HERE.parents[1]))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
