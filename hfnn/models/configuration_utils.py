"""What the hfnn configurations share: the ``@strict`` dataclass base, the model-type guard and the field checks.

Each configuration is a ``@strict`` dataclass like transformers' own (``GPT2Config``, ``LlamaConfig``):
typed fields checked on assignment, value checks in ``validate_*`` methods run after ``__init__``. Every
failure is a ``ValueError`` whose message names the configuration class and the field. The module imports
only ``transformers`` and ``huggingface_hub``, so ``save_pretrained`` can copy it beside the configuration
files for remote code.
"""

import functools

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassError
from transformers import PreTrainedConfig

__all__ = ["HfnnConfig", "hfnn_config"]


def hfnn_config(cls):
    """``@strict`` whose failures are ``ValueError``s naming the class and the field."""
    cls = strict(cls)
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except StrictDataclassError as err:
            cause = err.__cause__ if isinstance(err.__cause__, (TypeError, ValueError)) else err
            message = str(cause)
            prefix = f"{type(self).__name__}: "
            raise ValueError(message if message.startswith(prefix) else prefix + message) from None

    cls.__init__ = __init__
    return cls


@hfnn_config
class HfnnConfig(PreTrainedConfig):
    """Base of the hfnn configurations: refuses a ``config.json`` of another model type, and checks fields."""

    def __post_init__(self, **kwargs):
        if kwargs.get("model_type", self.model_type) != self.model_type:  # a config.json of another model
            raise ValueError(
                f"{type(self).__name__}: this configuration is for model type {kwargs['model_type']!r}, not "
                f"{self.model_type!r}; load the folder with its own class or with the Auto classes (AutoConfig, "
                "AutoModel...)"
            )
        kwargs.pop("model_type", None)
        for name, value in list(vars(self).items()):  # tuples become lists, as config.json stores them
            if isinstance(value, tuple):
                setattr(self, name, list(value))
        super().__post_init__(**kwargs)

    def _fail(self, field, expected):
        raise ValueError(f"{type(self).__name__}: {field} must be {expected}, got {getattr(self, field)!r}")

    def check_positive_int(self, *fields, allow_none=False, minimum=1):
        for field in fields:
            value = getattr(self, field)
            if value is None and allow_none:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                self._fail(field, "a positive integer" if minimum == 1 else f"an integer >= {minimum}")

    def check_positive_number(self, *fields):
        for field in fields:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                self._fail(field, "a positive number")

    def check_probability(self, *fields):
        for field in fields:
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value < 1):
                self._fail(field, "a number in [0, 1)")

    def check_choice(self, field, choices):
        if getattr(self, field) not in choices:
            self._fail(field, f"one of {tuple(choices)}")

    def check_token_ids(self, *fields, vocab_size=None, size_field="vocab_size"):
        vocab_size = getattr(self, size_field) if vocab_size is None else vocab_size
        for field in fields:
            value = getattr(self, field)
            for token_id in value if isinstance(value, (list, tuple)) else [value]:
                if token_id is not None and (isinstance(token_id, bool) or not isinstance(token_id, int)
                                             or not 0 <= token_id < vocab_size):
                    self._fail(field, f"None or an id in [0, {size_field}={vocab_size})")
