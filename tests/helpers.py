"""Shared test utilities."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

_BLOCK_HFNN = """
import sys
class _BlockHfnn:
    def find_spec(self, name, path=None, target=None):
        if name == "hfnn" or name.startswith("hfnn."):
            raise ImportError("hfnn is deliberately not importable in this process")
        return None
sys.meta_path.insert(0, _BlockHfnn())
"""


def run_without_hfnn(code: str, cwd: str | os.PathLike, timeout: int = 300) -> str:
    """Runs ``code`` in a fresh Python process in which ``import hfnn`` fails; returns its stdout.

    This is how a Hub user who never installed hfnn loads a model with ``trust_remote_code=True``.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_MODULES_CACHE"] = str(Path(cwd) / "hf_modules")
    script = _BLOCK_HFNN + "\ntry:\n    import hfnn\n    raise SystemExit('hfnn importable')\nexcept ImportError:\n    pass\n" + textwrap.dedent(code)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def randomize_(model: torch.nn.Module, std: float = 0.5, seed: int = 0) -> torch.nn.Module:
    """Gives every parameter (biases included) non-zero values, like a trained model's."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model
