"""hfnn.models.registry: the one list of architectures and tasks, and what is derived from it."""

import dataclasses
import importlib

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


def test_legacy_architectures_table_is_derived_from_the_registry():
    assert set(hfnn.ARCHITECTURES) == set(registry.ARCHITECTURES)
    for name, entry in registry.ARCHITECTURES.items():
        config_module, config_class, modeling_module, models = hfnn.ARCHITECTURES[name]
        assert (config_module, config_class, modeling_module) == (
            entry.config_module, entry.config_class, entry.modeling_module)
        assert models == dict(entry.models)
        assert getattr(hfnn, config_class) is getattr(importlib.import_module(f"hfnn.models.{config_module}"), config_class)


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
