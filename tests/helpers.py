"""Shared test utilities."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

# Float tolerances. Two evaluations of one function differ by rounding alone whenever the order of a sum changes:
# another kernel or SIMD width (ATEN_CPU_CAPABILITY, oneDNN's ISA), another memory alignment (from_pretrained
# memory-maps the weights), another thread split, a batched against a one-row product, a step-by-step against a
# whole-sequence recomputation. A sum of n terms is off by at most about n * eps times the sum of the terms'
# magnitudes, and a chain of reductions adds up the errors of its links. The test models are tiny (widths and
# lengths of at most REDUCTION terms, values of order one), so `depth` chained reductions are allowed
# depth * REDUCTION * eps, relative and absolute: 7.6e-6 per reduction in float32. That is a worst case derived
# from the dtype and the computation, not a margin fitted to one CPU.
REDUCTION = 64


def tolerance(dtype: torch.dtype = torch.float32, depth: int = 1) -> dict:
    """``rtol``/``atol`` for ``torch.testing.assert_close`` of two roundings of ``depth`` chained reductions."""
    bound = depth * REDUCTION * torch.finfo(dtype).eps
    return {"rtol": bound, "atol": bound}


def approx_tolerance(dtype: torch.dtype = torch.float32, depth: int = 1) -> dict:
    """The same bound as :func:`tolerance`, spelled for ``pytest.approx``."""
    bound = tolerance(dtype, depth)["rtol"]
    return {"rel": bound, "abs": bound}


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
    script = (_BLOCK_HFNN + "\ntry:\n    import hfnn\n    raise SystemExit('hfnn importable')\n"
              "except ImportError:\n    pass\n" + textwrap.dedent(code))
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


def generation_cases(prompt_length: int) -> dict[str, dict]:
    """generate() keyword sets that exercise a decoding loop: greedy and sampling, end-of-sequence
    tokens (finished rows padded), max_length instead of max_new_tokens, logits processors."""
    return {
        "greedy": dict(do_sample=False),
        "greedy-eos": dict(do_sample=False, eos_token_id=3),
        "greedy-max-length": dict(do_sample=False, max_length=prompt_length + 5, max_new_tokens=None),
        "greedy-processors": dict(do_sample=False, repetition_penalty=1.5, min_new_tokens=4, eos_token_id=3),
        "sample": dict(do_sample=True, top_k=6, temperature=0.8),
        "sample-eos": dict(do_sample=True, top_p=0.9, eos_token_id=[3, 4]),
    }


def generic_loop_calls(monkeypatch) -> list:
    """Records each call of transformers' generic decoding loop (``GenerationMixin._sample``), which
    still runs: returns the list that receives ``"generic"`` per call."""
    from transformers import GenerationMixin

    used = []
    generic = GenerationMixin._sample

    def spy(self, *args, **kwargs):
        used.append("generic")
        return generic(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "_sample", spy)
    return used


def direct_and_generic_generate(model, ids, mask, kwargs: dict, monkeypatch):
    """``model.generate`` twice from the same seed: through the model's direct decoding loop (checked
    to be the one taken) and through transformers' generic loop. Returns ``(direct, generic)``."""
    cls = type(model)
    taken = []
    can_decode_fast = cls._can_decode_fast

    def spy(self, *args):
        taken.append(can_decode_fast(self, *args))
        return taken[-1]

    monkeypatch.setattr(cls, "_can_decode_fast", spy)
    torch.manual_seed(11)
    direct = model.generate(ids, attention_mask=mask, **kwargs)
    assert taken == [True], "generate did not take the direct decoding loop"
    monkeypatch.setattr(cls, "_can_decode_fast", lambda self, *args: False)
    torch.manual_seed(11)
    generic = model.generate(ids, attention_mask=mask, **kwargs)
    return direct, generic
