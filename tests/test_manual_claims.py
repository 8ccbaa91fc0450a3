"""What the manual says about results and adapters is what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from transformers import EvalPrediction

from hfnn.training import classification_metrics
from tests.reliability_utils import build_model

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_manual_names_the_keys_evaluate_writes():
    usage = " ".join((DOCS / "usage.md").read_text(encoding="utf-8").split())
    multi = classification_metrics("multi_label_classification")(
        EvalPrediction(predictions=np.array([[1.0, -1.0], [-1.0, 1.0]]), label_ids=np.array([[1.0, 0.0], [0.0, 1.0]])))
    regression = classification_metrics("regression")(
        EvalPrediction(predictions=np.array([0.5, 1.0]), label_ids=np.array([0.0, 1.0])))
    assert set(multi) == {"accuracy", "f1"} and set(regression) == {"mse", "mae"}
    sentence = re.search(r"`evaluate` scores it by exact match.*?\.\s", usage)
    assert sentence, "docs/usage.md no longer says how evaluate scores a multi-label classifier"
    for key in [*multi, *regression]:
        assert f"`{key}`" in sentence.group(0), f"docs/usage.md does not name the key {key!r}: {sentence.group(0)}"


def test_plain_get_peft_model_on_an_rnn_adapts_what_the_docs_say():
    peft = pytest.importorskip("peft")
    from hfnn.sharing.adapters import add_adapter, register_peft_defaults

    register_peft_defaults()
    plain = peft.get_peft_model(build_model("rnn", "AutoModelForCausalLM"), peft.LoraConfig(task_type="CAUSAL_LM"))
    adapted = {n.split(".lora_")[0] for n, p in plain.named_parameters() if "lora_" in n and p.requires_grad}
    assert adapted and all("embed" in n for n in adapted), adapted
    full = add_adapter(build_model("rnn", "AutoModelForCausalLM"), method="lora", r=4)
    reached = [n for n, p in full.named_parameters() if "lora" in n and p.requires_grad and "embed" not in n]
    assert reached, "add_adapter no longer reaches the recurrent weights"
    deployment = " ".join((DOCS / "deployment.md").read_text(encoding="utf-8").split())
    assert "plain `get_peft_model` adapts the embeddings alone" in deployment
