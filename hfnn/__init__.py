"""hfnn: the classic neural architectures as Hugging Face ``transformers`` models.

``import hfnn`` exports every configuration and model class (the lines below name each one) and registers
them with the ``transformers`` Auto classes as :mod:`hfnn.models.registry` lists them (and for remote code, so
``save_pretrained`` writes ``auto_map``), with every pipeline task of the package, so that
``AutoModelForCausalLM.from_pretrained(path)`` and ``pipeline(task, model=path)`` work on saved hfnn folders.
Nothing else is changed in another library: peft's default target tables are filled only on request
(:func:`hfnn.sharing.adapters.register_peft_defaults`).
"""

import transformers
from transformers import AutoConfig, AutoModelForSeq2SeqLM
from transformers.pipelines import PIPELINE_REGISTRY as _PIPELINE_REGISTRY

from .models import registry
from .models.configuration_cnn import CnnConfig
from .models.configuration_mlp import MlpConfig
from .models.configuration_rnn import RnnConfig
from .models.configuration_rnn_seq2seq import RnnSeq2SeqConfig
from .models.configuration_transformer import TransformerConfig
from .models.modeling_cnn import CnnForSequenceClassification, CnnModel
from .models.modeling_mlp import MlpForSequenceClassification, MlpModel
from .models.modeling_rnn import RnnForCausalLM, RnnForSequenceClassification, RnnModel
from .models.modeling_rnn_seq2seq import RnnSeq2SeqForConditionalGeneration, RnnSeq2SeqModel
from .models.modeling_transformer import (
    TransformerForCausalLM,
    TransformerForConditionalGeneration,
    TransformerForSequenceClassification,
    TransformerModel,
)
from .models.pipeline_seq2seq import Seq2SeqGenerationPipeline

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES",
    "CnnConfig",
    "CnnForSequenceClassification",
    "CnnModel",
    "MlpConfig",
    "MlpForSequenceClassification",
    "MlpModel",
    "RnnConfig",
    "RnnForCausalLM",
    "RnnForSequenceClassification",
    "RnnModel",
    "RnnSeq2SeqConfig",
    "RnnSeq2SeqForConditionalGeneration",
    "RnnSeq2SeqModel",
    "Seq2SeqGenerationPipeline",
    "TransformerConfig",
    "TransformerForCausalLM",
    "TransformerForConditionalGeneration",
    "TransformerForSequenceClassification",
    "TransformerModel",
]

# architecture name -> hfnn.models.registry.Architecture (named fields: model_type, config_class, heads, ...)
ARCHITECTURES = registry.ARCHITECTURES


def _register(entry: registry.Architecture) -> None:
    config_cls = globals()[entry.config_class]
    AutoConfig.register(entry.model_type, config_cls, exist_ok=True)  # refuses a config of another model_type
    config_cls.register_for_auto_class()
    for head in entry.heads:
        model_cls = globals()[head.model_class]
        getattr(transformers, head.auto_class).register(config_cls, model_cls, exist_ok=True)
        model_cls.register_for_auto_class(head.auto_class)


for _entry in registry.ARCHITECTURES.values():
    _register(_entry)
del _entry

# pipeline task: seq2seq-generation (encoder-decoder models; see hfnn/models/pipeline_seq2seq.py)
_PIPELINE_REGISTRY.register_pipeline(
    registry.TASKS["seq2seq"].pipeline_task, pipeline_class=Seq2SeqGenerationPipeline, pt_model=AutoModelForSeq2SeqLM,
    type="text",
)
