"""PEFT adapters on every hfnn head (hfnn/sharing/adapters.py): LoRA and OFT train through the Trainer with only the
adapter changing, save and load back on the base model with the same outputs, and merge into the weights
without changing them; peft's own defaults work for hfnn model types once ``register_peft_defaults()`` is called, and
only then (``import hfnn`` patches nothing in peft)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.numerics

peft = pytest.importorskip("peft", reason="peft is not installed (pip install peft)")

import transformers  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

from hfnn.sharing import adapters  # noqa: E402
from tests.helpers import tolerance  # noqa: E402
from tests.reliability_utils import REPO, VOCAB, heads, model_classes, no_dropout, tiny_config  # noqa: E402

HEADS = heads()
IDS = [f"{a}-{h.removeprefix('AutoModelFor')}" for a, h in HEADS]


def build(arch, head, **overrides):
    torch.manual_seed(0)
    return model_classes(arch)[head](tiny_config(arch, head, **{**no_dropout(arch), **overrides}))


def batch(head, rows=4, length=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # a left-padded row
    if head == "AutoModelForSequenceClassification":
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 3, (rows,), generator=generator)}
    if head == "AutoModelForSeq2SeqLM":
        return {"input_ids": ids, "attention_mask": mask,
                "labels": torch.randint(4, VOCAB, (rows, 4), generator=generator)}
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


class _Rows(torch.utils.data.Dataset):
    def __init__(self, head):
        self.data = batch(head, rows=16, seed=1)

    def __len__(self):
        return 16

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.data.items()}


def logits(model, head):
    inputs = {k: v for k, v in batch(head, seed=2).items() if k != "labels" or head == "AutoModelForSeq2SeqLM"}
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


def _adapter_param(name: str) -> bool:
    return any(key in name for key in ("lora_", "oft_", "modules_to_save"))


@pytest.mark.parametrize("method", adapters.METHODS)
@pytest.mark.parametrize("arch,head", HEADS, ids=IDS)
def test_adapter_trains_saves_loads_and_merges(arch, head, method, tmp_path):
    model = build(arch, head)
    model.save_pretrained(tmp_path / "base")
    peft_model = adapters.add_adapter(model, method=method, r=2)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all(_adapter_param(n) for n in trainable), trainable
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=3, per_device_train_batch_size=4,
                             learning_rate=0.05, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
                             disable_tqdm=True)
    trainer = Trainer(model=peft_model, args=args, train_dataset=_Rows(head))
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    changed = {n for n, p in peft_model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and changed <= trainable, changed - trainable
    assert any("lora_" in n or "oft_" in n for n in changed)

    expected = logits(peft_model, head)
    peft_model.save_pretrained(tmp_path / "adapter")
    base = getattr(transformers, head).from_pretrained(tmp_path / "base")
    # the trained adapter changes what the model computes (else the equalities below would hold trivially)
    # (relative to the logits' scale: a tiny model's logits can be ~1e-5)
    assert (logits(base, head) - expected).abs().max() > 1e-3 * expected.abs().max()
    loaded = peft.PeftModel.from_pretrained(base, tmp_path / "adapter")
    torch.testing.assert_close(logits(loaded, head), expected, **tolerance(depth=2))

    merged = peft_model.merge_and_unload()
    assert not any(_adapter_param(n) for n, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged, head), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch,head", HEADS, ids=IDS)
def test_default_targets_cover_each_architecture(arch, head):
    model = build(arch, head)
    modules, parameters = adapters.default_targets(model, "lora")
    assert modules and not any(m.rsplit(".", 1)[-1] in ("lm_head", "classifier", "score") for m in modules)
    recurrent = [n for n, m in model.named_modules() if isinstance(m, torch.nn.RNNBase)]
    assert bool(parameters) == bool(recurrent)  # W_x and W_h of each recurrent layer, through target_parameters
    assert all(any(p.startswith(r + ".weight_") for r in recurrent) for p in parameters)
    assert adapters.default_targets(model, "oft")[0]


@pytest.mark.parametrize("arch,head", HEADS, ids=IDS)
def test_plain_peft_config_without_target_modules(arch, head):
    adapters.register_peft_defaults()
    model = build(arch, head)
    config = peft.LoraConfig(task_type=adapters.task_type(model), r=2, init_lora_weights=False)
    peft_model = peft.get_peft_model(model, config)
    assert peft_model.peft_config["default"].target_modules  # filled from hfnn's defaults
    assert any("lora_" in n for n, _ in peft_model.named_parameters())
    logits(peft_model, head)


def test_lora_dropout_on_recurrent_weights_is_a_clear_error():
    model = build("rnn", "AutoModelForCausalLM")
    with pytest.raises(ValueError, match="recurrent weights"):
        adapters.add_adapter(model, r=2, dropout=0.1)
    peft_model = adapters.add_adapter(model, r=2, dropout=0.1, target_modules=["model.embed_tokens"])
    assert any("lora_" in n for n, _ in peft_model.named_parameters())


@pytest.mark.parametrize("method", ["lora", "oft"])
def test_a_model_without_default_target_modules_is_a_clear_error(method):
    """An MLP with no hidden layer has no dense layer: the error names the default targets and the way out,
    and naming target modules works."""
    from hfnn import MlpConfig, MlpForSequenceClassification

    model = MlpForSequenceClassification(MlpConfig(vocab_size=VOCAB, embedding_size=8, num_hidden_layers=0,
                                                   num_labels=2))
    with pytest.raises(ValueError, match=r"has none of the modules .* by default \(dense\).*num_hidden_layers=0"):
        adapters.add_adapter(model, method=method, r=2)
    peft_model = adapters.add_adapter(model, method=method, r=2, target_modules=["word_embeddings"])
    assert any(f"{method}_" in n for n, _ in peft_model.named_parameters())


def test_bad_arguments_name_the_field():
    model = build("mlp", "AutoModelForSequenceClassification")
    with pytest.raises(ValueError, match="unknown adapter method 'ia3'"):
        adapters.add_adapter(model, method="ia3")
    with pytest.raises(ValueError, match="rank r"):
        adapters.add_adapter(model, r=0)
    with pytest.raises(ValueError, match="OFT has no alpha"):
        adapters.add_adapter(model, method="oft", alpha=4)
    with pytest.raises(ValueError, match="not an hfnn model"):
        adapters.add_adapter(transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2)))


def test_importing_hfnn_patches_nothing_in_peft_until_asked():
    """``import hfnn`` neither imports the adapters nor adds an import hook of its own (transformers, imported
    first, adds one); peft's tables keep only peft's own entries until ``register_peft_defaults()`` fills them."""
    code = (
        "import sys, torch, transformers, transformers.pipelines; finders = list(sys.meta_path); import hfnn\n"
        "assert sys.meta_path == finders, sys.meta_path\n"
        "assert 'hfnn.sharing.adapters' not in sys.modules and 'peft' not in sys.modules\n"
        "import peft.utils.constants as c\n"
        "tables = (c.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING,\n"
        "          c.TRANSFORMERS_MODELS_TO_OFT_TARGET_MODULES_MAPPING)\n"
        "assert not any(k.startswith('hfnn-') for t in tables for k in t), 'peft tables patched on import'\n"
        "from hfnn.sharing import adapters\n"
        "assert sys.meta_path == finders and not any(k.startswith('hfnn-') for t in tables for k in t)\n"
        "adapters.register_peft_defaults(); adapters.register_peft_defaults()\n"
        "print(tables[0]['hfnn-cnn'][:2], tables[1]['hfnn-cnn'], tables[0]['hfnn-mlp'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "['convs.0', 'convs.1'] ['word_embeddings'] ['dense']", out.stderr[-2000:]


@pytest.mark.parametrize("method", adapters.METHODS)
def test_add_adapter_passes_the_registry_targets_to_peft(method, monkeypatch):
    """add_adapter needs nothing in peft's tables: the config it gives peft names the registry's targets."""
    from hfnn.models import registry

    seen = []
    monkeypatch.setattr(peft, "get_peft_model", lambda model, config: seen.append(config) or model)
    model = build("cnn", "AutoModelForSequenceClassification")
    adapters.add_adapter(model, method=method, r=2)
    targets = registry.ARCHITECTURES["cnn"].default_targets(method)
    found = {name for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] in targets or
             any(name.endswith("." + t) for t in targets)}
    assert found and set(seen[0].target_modules) == found


def test_a_lora_wrapped_lstm_still_recurs_in_float32_under_cpu_autocast():
    """peft wraps an adapted nn.LSTM in a ParamWrapper; the LSTM under it must still run in float32 under CPU
    autocast (oneDNN has no bfloat16 LSTM on CPUs without native bfloat16), as an unwrapped one does: its outputs
    are float32 and exactly those of the run without autocast."""
    from hfnn import RnnConfig, RnnForCausalLM

    torch.manual_seed(0)
    model = RnnForCausalLM(RnnConfig(vocab_size=VOCAB, hidden_size=12, embedding_size=8, num_hidden_layers=2,
                                     rnn_type="lstm", dropout=0.0))
    wrapped = adapters.add_adapter(model, "lora", r=2).eval()
    recurrent = wrapped.base_model.model.model.rnn
    assert not isinstance(recurrent, torch.nn.LSTM)  # the wrapper this test is about
    seen = []
    recurrent.register_forward_hook(lambda module, args, output: seen.append(output[0]))
    ids = batch("AutoModelForCausalLM")["input_ids"]
    with torch.no_grad():
        wrapped(input_ids=ids)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            wrapped(input_ids=ids)
    full, half = seen
    assert half.dtype == torch.float32 and torch.equal(full, half)


def test_layer_by_layer_runs_of_lora_adapted_recurrent_weights_are_a_clear_error():
    """output_hidden_states=True (and gradient checkpointing) run a recurrent stack layer by layer on its raw
    weights, which a LoRA adapter on them would not reach: a ValueError saying so, not an AttributeError from
    deep inside, and the whole-stack forward still works."""
    from hfnn import RnnConfig, RnnForCausalLM

    torch.manual_seed(0)
    model = RnnForCausalLM(RnnConfig(vocab_size=VOCAB, hidden_size=12, embedding_size=8, num_hidden_layers=2,
                                     rnn_type="gru", dropout=0.0))
    wrapped = adapters.add_adapter(model, "lora", r=2).eval()
    ids = batch("AutoModelForCausalLM")["input_ids"]
    with torch.no_grad():
        assert wrapped(input_ids=ids).logits.shape[:2] == ids.shape
        with pytest.raises(ValueError, match=r"LoRA adapter.*output_hidden_states=True.*merge_and_unload"):
            wrapped(input_ids=ids, output_hidden_states=True)
        # the traceable scan that export runs reads the weights itself too
        from hfnn.models.recurrent_cells import run_masked_scan

        with pytest.raises(ValueError, match=r"LoRA adapter.*exporting or tracing.*merge_and_unload"):
            run_masked_scan(wrapped.base_model.model.model.rnn, torch.randn(2, 6, 8),
                            torch.ones(2, 6, dtype=torch.bool))
    wrapped.base_model.model.gradient_checkpointing_enable()
    with pytest.raises(ValueError, match=r"LoRA adapter.*gradient checkpointing"):
        wrapped.train()(input_ids=ids, labels=ids)
