"""hfnn.models.registry: the one list of architectures and tasks, and what is derived from it."""

import ast
import dataclasses
import importlib
from pathlib import Path

import pytest

import hfnn
from hfnn.models import registry


def test_entries_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.TASKS["seq2seq"].command = "generate"
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.ARCHITECTURES["rnn"].config_class = "Other"
    with pytest.raises(TypeError):
        registry.TASKS["lm"] = registry.TASKS["seq2seq"]


def test_hfnn_architectures_is_the_registry():
    assert hfnn.ARCHITECTURES is registry.ARCHITECTURES
    for name, entry in hfnn.ARCHITECTURES.items():
        assert entry.name == name
        assert getattr(hfnn, entry.config_class) is getattr(
            importlib.import_module(f"hfnn.models.{entry.config_module}"), entry.config_class)


def test_model_type_of_each_entry_is_its_config_class_model_type():
    types = set()
    for entry in registry.ARCHITECTURES.values():
        config_cls = getattr(importlib.import_module(f"hfnn.models.{entry.config_module}"), entry.config_class)
        assert entry.model_type == config_cls.model_type, entry.name
        assert registry.architecture_of_model_type(entry.model_type) is entry
        types.add(entry.model_type)
    assert len(types) == len(registry.ARCHITECTURES)
    assert registry.architecture_of_model_type("gpt2") is None


def _static_imports() -> dict[str, str]:
    """Name -> module (``models.configuration_rnn``) of every ``from .models.x import Name`` in hfnn/__init__.py."""
    tree = ast.parse(Path(hfnn.__file__).read_text(encoding="utf-8"))
    return {alias.asname or alias.name: node.module for node in tree.body
            if isinstance(node, ast.ImportFrom) and node.level == 1 and (node.module or "").startswith("models.")
            for alias in node.names}


def test_static_exports_and_the_registry_agree():
    """Every configuration and model class of the registry is imported by name in hfnn/__init__.py from its
    module and listed in ``__all__``; hfnn exports no configuration or model class the registry lacks."""
    from transformers import PretrainedConfig, PreTrainedModel

    def config_or_model(name):
        value = getattr(hfnn, name)
        return isinstance(value, type) and issubclass(value, (PretrainedConfig, PreTrainedModel))

    wanted = {cls: f"models.{module}" for entry in registry.ARCHITECTURES.values() for module, cls in entry.classes}
    assert {name: module for name, module in _static_imports().items() if config_or_model(name)} == wanted
    assert {name for name in dir(hfnn) if config_or_model(name)} == set(wanted)
    assert set(wanted) <= set(hfnn.__all__)
    assert set(hfnn.__all__) - set(wanted) == {"ARCHITECTURES", "Seq2SeqGenerationPipeline"}
    assert all(hasattr(hfnn, name) for name in hfnn.__all__)


def test_facts_of_every_architecture():
    """The display name, the note's concept, PEFT targets of every method, an export signature of every task head
    and quickstart rows of tasks the architecture has, each named by field."""
    for entry in registry.ARCHITECTURES.values():
        assert entry.display_name.split(" ", 1)[0] in ("A", "An") and entry.concept and entry.concept_note
        assert entry.tag == entry.model_type.removeprefix("hfnn-")
        for method in registry.PEFT_METHODS:
            assert entry.default_targets(method)
        for head in entry.heads:
            assert head.auto_class in registry.AUTO_CLASSES
            assert (head.export is None) == (head.auto_class == "AutoModel"), (entry.name, head)
            assert registry.head_of_model_class(head.model_class) == (entry, head)
        for row in entry.quickstart:
            assert entry.supports(row.task), (entry.name, row)
    with pytest.raises(ValueError, match="unknown adapter method 'ia3'; use lora, oft"):
        registry.ARCHITECTURES["rnn"].default_targets("ia3")
    assert registry.ARCHITECTURES["rnn_seq2seq"].display_name == "An RNN encoder-decoder"
    assert registry.head_of_model_class("GPT2LMHeadModel") is None


def test_quickstart_rows_in_table_order():
    rows = registry.quickstart_models()
    assert [row.label for _, row in rows] == [
        "RNN LM", "Transformer LM", "CNN classifier", "MLP classifier", "RNN classifier", "RNN attention seq2seq",
        "Transformer seq2seq"]
    assert {(arch.name, row.task) for arch, row in rows} >= {("cnn", "text-classification"), ("transformer", "seq2seq")}


def test_the_registry_file_travels_alone(tmp_path):
    """registry.py imports only the standard library and its sibling errors.py (with a fallback for a copy at a
    Space's top level), so a copy of it runs anywhere; write_copy puts it there, with errors.py beside it."""
    import subprocess
    import sys

    for node in ast.walk(ast.parse(Path(registry.__file__).read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            assert node.level == 1 and node.module == "errors", node.module
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            assert all(n.split(".")[0] in sys.stdlib_module_names for n in names), names
    path = registry.write_copy(tmp_path)
    assert (tmp_path / "errors.py").is_file()
    assert path == str(tmp_path / registry.REGISTRY_FILE)
    assert registry.write_copy(tmp_path, path) == path  # the file itself: nothing to copy
    code = "import registry; print(registry.ARCHITECTURES['cnn'].model_type)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "hfnn-cnn", out.stderr


def test_every_model_class_is_registered_with_its_auto_class():
    import transformers

    for entry in registry.ARCHITECTURES.values():
        config_cls = getattr(hfnn, entry.config_class)
        for auto_name, model_name in entry.models:
            assert auto_name in registry.AUTO_CLASSES
            auto = getattr(transformers, auto_name)
            assert auto._model_mapping[config_cls] is getattr(hfnn, model_name), (entry.name, auto_name)


def test_every_task_has_its_auto_class_training_module_and_pipeline():
    from transformers.pipelines import PIPELINE_REGISTRY, SUPPORTED_TASKS

    from hfnn.models.pipeline_seq2seq import TASK

    assert registry.TASKS["seq2seq"].pipeline_task == TASK
    for entry in registry.TASKS.values():
        assert entry.auto_class in registry.AUTO_CLASSES
        assert entry.pipeline_task in SUPPORTED_TASKS or entry.pipeline_task in PIPELINE_REGISTRY.get_supported_tasks()
        assert importlib.util.find_spec(entry.training_module) is not None, entry.training_module
        assert any(a.supports(entry.name) for a in registry.ARCHITECTURES.values())
        assert entry.metrics and entry.model_suffixes
        assert entry.words == f"a {entry.noun}" and entry.inferred_task.startswith("hfnn-")
        pipelines = importlib.import_module("hfnn.models.pipeline_seq2seq")
        assert isinstance(getattr(pipelines, entry.pipeline_class), type), entry.pipeline_class


@pytest.mark.parametrize("alias, canonical", [
    ("lm", "language-modeling"), ("Causal_LM", "language-modeling"), ("text-generation", "language-modeling"),
    ("classification", "text-classification"), ("sequence_classification", "text-classification"),
    ("g2p", "seq2seq"), ("translation", "seq2seq"), ("text2text-generation", "seq2seq"),
])
def test_aliases_resolve(alias, canonical):
    assert registry.task(alias).name == canonical


def test_aliases_are_unambiguous_and_unknown_names_are_named():
    seen = {}
    for entry in registry.TASKS.values():
        for name in entry.names:
            assert seen.setdefault(name, entry.name) == entry.name, name
    with pytest.raises(ValueError, match="unknown task 'poetry'.*language-modeling"):
        registry.task("poetry")
    with pytest.raises(ValueError, match="Unknown architecture 'lstm'; choose one of cnn, mlp, rnn"):
        registry.architecture("lstm")


def test_hub_tags_and_architecture_aliases():
    assert registry.hub_pipeline_tag("lm") == "text-generation"
    assert registry.hub_pipeline_tag("g2p") == "text2text-generation"
    assert registry.hub_pipeline_tag("translation") == "translation"
    assert registry.architecture("transformer_seq2seq").name == "transformer"
    assert registry.architecture("rnn-seq2seq").name == "rnn_seq2seq"
    assert registry.ARCHITECTURES["cnn"].supports("classification")
    assert not registry.ARCHITECTURES["cnn"].supports("lm")


def test_task_of_config_reads_the_head():
    assert registry.task_of_config({"architectures": ["RnnForCausalLM"]}).name == "language-modeling"
    assert registry.task_of_config({"architectures": ["CnnForSequenceClassification"]}).kind == "classification"
    assert registry.task_of_config({"architectures": ["TransformerForConditionalGeneration"]}).command == "transduce"
    assert registry.task_of_config({"is_encoder_decoder": True}).name == "seq2seq"
    assert registry.task_of_config({"architectures": ["RnnModel"]}) is None


def test_architecture_for_a_task_names_the_missing_head():
    assert registry.architecture_for("transformer_seq2seq", "seq2seq").config_class == "TransformerConfig"
    assert registry.architecture_for("rnn", "lm").name == "rnn"
    with pytest.raises(ValueError, match="Architecture 'cnn' has no language-model head"):
        registry.architecture_for("cnn", "language-modeling")
    with pytest.raises(ValueError, match="Architecture 'mlp' has no sequence-to-sequence head"):
        registry.architecture_for("mlp", "g2p")
    with pytest.raises(ValueError, match="Unknown architecture 'lstm'"):
        registry.architecture_for("lstm", "text-classification")


def test_saved_model_names_what_a_config_lacks():
    entry, found = registry.saved_model({"model_type": "hfnn-cnn", "architectures": ["CnnForSequenceClassification"]},
                                        "runs/cnn")
    assert (entry.name, found.name) == ("cnn", "text-classification")
    with pytest.raises(ValueError, match=r"^runs/x is not an hfnn model folder \(model_type 'bert'; hfnn models are "
                                         r"hfnn-cnn, hfnn-mlp, hfnn-rnn, hfnn-rnn-seq2seq, hfnn-transformer\)$"):
        registry.saved_model({"model_type": "bert"}, "runs/x")
    with pytest.raises(ValueError, match=r"^runs/x holds a RnnModel without a task head"):
        registry.saved_model({"model_type": "hfnn-rnn", "architectures": ["RnnModel"]}, "runs/x")
