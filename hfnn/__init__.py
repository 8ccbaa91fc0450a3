"""hfnn: the classic neural architectures as Hugging Face ``transformers`` models.

``import hfnn`` registers every configuration and model with the ``transformers`` Auto classes
(and for remote code, so ``save_pretrained`` writes ``auto_map``), and every pipeline task of the
package, so that ``AutoModelForCausalLM.from_pretrained(path)`` and ``pipeline(task, model=path)``
work on saved hfnn folders.
"""

from importlib import import_module

import transformers
from transformers import AutoConfig, AutoModelForSeq2SeqLM

from .models import registry

__version__ = "0.1.0"

# architecture -> (configuration module, config class, modeling module, {auto class: model class}),
# derived from hfnn.models.registry (read ``hfnn.models.registry.ARCHITECTURES`` for named fields).
ARCHITECTURES = {
    a.name: (a.config_module, a.config_class, a.modeling_module, dict(a.models))
    for a in registry.ARCHITECTURES.values()
}


def _register(entry: registry.Architecture) -> dict:
    config_cls = getattr(import_module(f".models.{entry.config_module}", __name__), entry.config_class)
    modeling = import_module(f".models.{entry.modeling_module}", __name__)
    AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
    config_cls.register_for_auto_class()
    exported = {entry.config_class: config_cls}
    for auto_name, model_name in entry.models:
        model_cls = getattr(modeling, model_name)
        getattr(transformers, auto_name).register(config_cls, model_cls, exist_ok=True)
        model_cls.register_for_auto_class(auto_name)
        exported[model_name] = model_cls
    return exported


for _entry in registry.ARCHITECTURES.values():
    globals().update(_register(_entry))


# --- pipeline task: seq2seq-generation (encoder–decoder models; see hfnn/models/pipeline_seq2seq.py) ---
from transformers.pipelines import PIPELINE_REGISTRY as _PIPELINE_REGISTRY  # noqa: E402

from .models.pipeline_seq2seq import Seq2SeqGenerationPipeline  # noqa: E402

_PIPELINE_REGISTRY.register_pipeline(
    registry.TASKS["seq2seq"].pipeline_task, pipeline_class=Seq2SeqGenerationPipeline, pt_model=AutoModelForSeq2SeqLM, type="text"
)

# peft's default adapter targets for hfnn's model types, filled in when peft is imported (peft is not imported here)
from .sharing import adapters as _adapters  # noqa: E402,F401
