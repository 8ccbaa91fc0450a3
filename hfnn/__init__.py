"""hfnn: the classic neural architectures as Hugging Face ``transformers`` models.

``import hfnn`` registers every configuration and model with the ``transformers`` Auto classes
(and for remote code, so ``save_pretrained`` writes ``auto_map``), and every pipeline task of the
package, so that ``AutoModelForCausalLM.from_pretrained(path)`` and ``pipeline(task, model=path)``
work on saved hfnn folders.
"""

from importlib import import_module

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
)

__version__ = "0.1.0"

_AUTO_CLASSES = {
    "AutoModel": AutoModel,
    "AutoModelForCausalLM": AutoModelForCausalLM,
    "AutoModelForSeq2SeqLM": AutoModelForSeq2SeqLM,
    "AutoModelForSequenceClassification": AutoModelForSequenceClassification,
}

# architecture -> (configuration module, config class, modeling module, {auto class: model class})
ARCHITECTURES = {
    "rnn": (
        "configuration_rnn", "RnnConfig", "modeling_rnn",
        {
            "AutoModel": "RnnModel",
            "AutoModelForCausalLM": "RnnForCausalLM",
            "AutoModelForSequenceClassification": "RnnForSequenceClassification",
        },
    ),
    "cnn": (
        "configuration_cnn", "CnnConfig", "modeling_cnn",
        {"AutoModel": "CnnModel", "AutoModelForSequenceClassification": "CnnForSequenceClassification"},
    ),
    "mlp": (
        "configuration_mlp", "MlpConfig", "modeling_mlp",
        {"AutoModel": "MlpModel", "AutoModelForSequenceClassification": "MlpForSequenceClassification"},
    ),
    "rnn_seq2seq": (
        "configuration_rnn_seq2seq", "RnnSeq2SeqConfig", "modeling_rnn_seq2seq",
        {"AutoModel": "RnnSeq2SeqModel", "AutoModelForSeq2SeqLM": "RnnSeq2SeqForConditionalGeneration"},
    ),
    "transformer": (
        "configuration_transformer", "TransformerConfig", "modeling_transformer",
        {
            "AutoModel": "TransformerModel",
            "AutoModelForCausalLM": "TransformerForCausalLM",
            "AutoModelForSequenceClassification": "TransformerForSequenceClassification",
            "AutoModelForSeq2SeqLM": "TransformerForConditionalGeneration",
        },
    ),
    # --- more architectures are listed below this line ---
}


def _register(name, spec):
    config_module, config_name, modeling_module, models = spec
    config_cls = getattr(import_module(f".{config_module}", __name__), config_name)
    modeling = import_module(f".{modeling_module}", __name__)
    AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
    config_cls.register_for_auto_class()
    exported = {config_name: config_cls}
    for auto_name, model_name in models.items():
        model_cls = getattr(modeling, model_name)
        _AUTO_CLASSES[auto_name].register(config_cls, model_cls, exist_ok=True)
        model_cls.register_for_auto_class(auto_name)
        exported[model_name] = model_cls
    return exported


for _name, _spec in ARCHITECTURES.items():
    globals().update(_register(_name, _spec))


# --- pipeline task: seq2seq-generation (encoder–decoder models; see hfnn/pipeline_seq2seq.py) ---
from transformers.pipelines import PIPELINE_REGISTRY as _PIPELINE_REGISTRY  # noqa: E402

from .pipeline_seq2seq import TASK as _SEQ2SEQ_TASK, Seq2SeqGenerationPipeline  # noqa: E402

_PIPELINE_REGISTRY.register_pipeline(
    _SEQ2SEQ_TASK, pipeline_class=Seq2SeqGenerationPipeline, pt_model=AutoModelForSeq2SeqLM, type="text"
)
