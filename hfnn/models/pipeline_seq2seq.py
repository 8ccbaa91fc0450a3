"""The ``seq2seq-generation`` pipeline: source text in, generated target text out.

transformers v5 removed its ``text2text-generation``/``translation`` pipelines (and refuses to re-register those
names), so hfnn registers its own task, ``"seq2seq-generation"``, for any encoder–decoder model that
``AutoModelForSeq2SeqLM`` loads (``RnnSeq2SeqForConditionalGeneration``, ``TransformerForConditionalGeneration``,
or a Hub model)::

    import hfnn
    from transformers import pipeline

    g2p = pipeline("seq2seq-generation", model="path/to/saved_model")
    g2p("knight")                          # [{"generated_text": "N AY1 T"}]
    g2p(["knight", "night"], num_beams=4)  # [{"generated_text": ...}, {"generated_text": ...}]
    g2p("knight", return_attentions=True)  # + "attentions" (output x source), "source_tokens", "generated_tokens"
    g2p("zyxtrel", num_beams=3, num_return_sequences=3, return_scores=True)  # + "score" per output
    g2p(["knight", "zyxtrel"], lexicon={"knight": ["N AY1 T"]})  # + "source": "lexicon" or "model"

Scores and lexicons. ``return_scores=True`` adds ``"score"``, the sequence log-probability of each output (natural
log, the sum over its tokens up to end-of-sequence; the model's distribution after generate's logits processors);
beam search returns its beams in its own order (length-normalised scores, ``length_penalty``). ``lexicon=`` (a
``{word: [pronunciation, ...]}`` mapping; with hfnn installed, ``hfnn.data.lexicon.load_lexicon("cmudict")`` or
``load_lexicon(PATH)`` of a CMUdict-format file gives one) is consulted first: a word it has gets its
pronunciations from it (at most ``num_return_sequences``, ``"source": "lexicon"``, score None) and only the other
words reach the model (``"source": "model"``).

Tokenizers. Source and target vocabularies may differ (letters -> phonemes). A model folder holds the *target*
tokenizer at its root (what ``AutoTokenizer.from_pretrained(folder)`` and therefore ``pipeline`` load; it decodes
the output) and the *source* tokenizer in the subfolder ``source_tokenizer/``. A ``source_tokenizer=`` argument
(object or path) overrides the folder's. Without either, the target tokenizer reads the sources only when the
model's config declares one shared vocabulary (``source_vocab_size`` None); any other model is refused with a
message naming the missing ``source_tokenizer/`` (reading letters with a phoneme vocabulary gives wrong output).
Both tokenizers read their input as plain text (``split_special_tokens``): ``"<s>"`` in a source is three
characters, never the special token.

Inputs. An empty source (no token) gives an empty output without running the model. A source longer than the
model's ``max_position_embeddings`` is an error naming its length and the limit, unless ``truncation=True``, which
cuts it there; a tokenizer's ``model_max_length`` larger than that limit is lowered to it.

Task inference. transformers infers the task of a local folder only from ``custom_pipelines`` in its
``config.json`` (otherwise it asks the Hub, which fails for a folder), and always loads such a pipeline as remote
code. :func:`mark_for_pipeline` writes that entry and copies this file into the folder, so that
``pipeline(model=folder, trust_remote_code=True)`` builds the right pipeline, with or without hfnn installed;
without ``trust_remote_code=True`` transformers says that it is needed. The entry depends on the head the config
names: an encoder–decoder gets this pipeline (task :data:`INFERRED_TASK`, its own name so that
``pipeline("seq2seq-generation", model=folder)`` keeps resolving, without remote code, to the class hfnn registers);
a language model gets transformers' text-generation pipeline and a classifier its text-classification pipeline
(tasks in :data:`INFERRED_TASKS`, re-exported by this file for that purpose).

This file imports only ``torch``, ``transformers``, the standard library and its sibling ``registry.py`` (the
tasks and the folder names), so that it can travel with a model: :func:`mark_for_pipeline` copies both.
"""

import os

import torch

# the text pipelines are imported for the custom_pipelines entries that name them in this file
from transformers import AutoTokenizer, Pipeline, TextClassificationPipeline, TextGenerationPipeline  # noqa: F401
from transformers.utils import ModelOutput

from .registry import SOURCE_TOKENIZER_SUBFOLDER, TASKS, write_copy

__all__ = [
    "TASK",
    "INFERRED_TASK",
    "INFERRED_TASKS",
    "SOURCE_TOKENIZER_SUBFOLDER",
    "Seq2SeqGenerationPipeline",
    "load_source_tokenizer",
    "mark_for_pipeline",
]

TASK = TASKS["seq2seq"].pipeline_task
INFERRED_TASK = TASKS["seq2seq"].inferred_task
# head (architecture name suffix) -> (task name in custom_pipelines, pipeline class name in this file, Auto class),
# for the heads of the registry's other tasks
INFERRED_TASKS = {
    suffix: (entry.inferred_task, entry.pipeline_class, entry.auto_class)
    for entry in TASKS.values() if entry.name != "seq2seq" for suffix in entry.model_suffixes
}


def _text_only(tokenizer):
    """Special-token strings in the input are plain text (same as ``hfnn.data.tokenization.text_only``)."""
    if tokenizer is not None and hasattr(tokenizer, "split_special_tokens"):
        tokenizer.split_special_tokens = True
        if hasattr(tokenizer, "init_kwargs"):
            tokenizer.init_kwargs["split_special_tokens"] = True
    return tokenizer


def _position_limit(config):
    """The longest source the encoder takes (``max_position_embeddings``), or None when unbounded."""
    limit = getattr(config, "max_position_embeddings", None)
    return limit if isinstance(limit, int) and limit > 0 else None


def _is_tokenizer_folder(path):
    return any(os.path.isfile(os.path.join(path, name)) for name in ("tokenizer.json", "tokenizer_config.json"))


def load_source_tokenizer(name_or_path, **kwargs):
    """The source tokenizer saved in ``<name_or_path>/source_tokenizer``, or None when there is none.

    ``name_or_path`` may also be that tokenizer folder itself (no ``source_tokenizer/`` inside, no ``config.json``).
    """
    if not name_or_path:
        return None
    name_or_path = str(name_or_path)
    if os.path.isdir(name_or_path):
        if not os.path.isdir(os.path.join(name_or_path, SOURCE_TOKENIZER_SUBFOLDER)):
            is_model_folder = os.path.isfile(os.path.join(name_or_path, "config.json"))
            if not is_model_folder and _is_tokenizer_folder(name_or_path):
                return AutoTokenizer.from_pretrained(name_or_path, **kwargs)
            return None
        return AutoTokenizer.from_pretrained(os.path.join(name_or_path, SOURCE_TOKENIZER_SUBFOLDER), **kwargs)
    try:  # a Hub repository
        return AutoTokenizer.from_pretrained(name_or_path, subfolder=SOURCE_TOKENIZER_SUBFOLDER, **kwargs)
    except (OSError, ValueError):
        return None


def mark_for_pipeline(config, save_directory=None):
    """Let ``pipeline(model=folder, trust_remote_code=True)`` infer the right pipeline for a saved model.

    ``config`` is the model's config or the model itself (then its class names the head). Adds a
    ``custom_pipelines`` entry to the config (call it before ``model.save_pretrained``) and, given the folder,
    copies this module and the registry it reads there (the entry names a class of ``pipeline_seq2seq`` inside the
    folder). The head is read
    from ``is_encoder_decoder``, the model's class or ``config.architectures``; a config that names none of an
    encoder–decoder, a language model or a classifier is an error. Returns the config.
    """
    names = []
    if hasattr(config, "config") and not isinstance(config, type):  # a model
        names.append(type(config).__name__)
        config = config.config
    names.extend(getattr(config, "architectures", None) or [])
    module = __name__.rsplit(".", 1)[-1]
    task, entry = INFERRED_TASK, {
        "impl": f"{module}.{Seq2SeqGenerationPipeline.__name__}",
        "pt": ["AutoModelForSeq2SeqLM"],
        "type": "text",
    }
    if not getattr(config, "is_encoder_decoder", False):
        heads = [h for name in names for h in INFERRED_TASKS if name.endswith(h)]
        if not heads:
            raise ValueError(
                f"mark_for_pipeline: cannot tell the head of this {type(config).__name__} (architectures "
                f"{names or None}, not an encoder–decoder); pass the model, or a config whose architectures name it"
            )
        task, class_name, auto = INFERRED_TASKS[heads[0]]
        entry = {"impl": f"{module}.{class_name}", "pt": [auto], "type": "text"}
    custom = dict(getattr(config, "custom_pipelines", None) or {})
    for other, _, _ in INFERRED_TASKS.values():  # one inferred task per folder (a config may change head)
        custom.pop(other, None)
    custom.pop(INFERRED_TASK, None)
    custom[task] = entry
    config.custom_pipelines = custom
    if save_directory is not None:
        os.makedirs(save_directory, exist_ok=True)
        write_copy(save_directory, __file__, os.path.basename(__file__))
        write_copy(save_directory)
    return config


def _as_lexicon(lexicon):
    """``lexicon`` when it is a ``{word: [pronunciation, ...]}`` mapping; anything else is an error saying how to
    read a dictionary into one (this module travels with saved models, where hfnn may not be installed)."""
    if hasattr(lexicon, "get"):
        return lexicon
    raise ValueError(
        f"lexicon: expected a {{word: [pronunciation, ...]}} mapping, got {type(lexicon).__name__} {lexicon!r}; "
        "read a dictionary into one with hfnn.data.lexicon.load_lexicon('cmudict') or load_lexicon(PATH)"
    )


def _lookup(lexicon, word):
    """The pronunciations ``lexicon`` gives ``word`` (as written, else lower-cased), as a list."""
    if hasattr(lexicon, "lookup"):
        return list(lexicon.lookup(word))
    found = lexicon.get(word) or lexicon.get(word.strip().lower()) or []
    return [found] if isinstance(found, str) else list(found)


def _cross_attention_matrix(outputs, batch_size, num_sequences):
    """Attention weights of each returned sequence: ``(batch, num_sequences, steps, src_len)``.

    Model-agnostic: every step's ``cross_attentions`` is a tuple over layers of ``(rows, heads, q_len, src_len)``;
    the last layer, averaged over heads, at the newest query position, is kept. Beam search rows are followed
    through ``beam_indices``.
    """
    steps = outputs.cross_attentions
    if not steps or steps[0] is None:
        raise ValueError("this model returns no cross-attention weights (e.g. an RNN seq2seq with attention='none')")
    per_step = torch.stack([layers[-1].float().mean(dim=1)[:, -1] for layers in steps], dim=1)  # (rows, steps, src)
    beam_indices = getattr(outputs, "beam_indices", None)
    if beam_indices is not None:
        beam_indices = beam_indices[:, : per_step.shape[1]]
        rows = beam_indices.clamp(min=0).long()
        gathered = per_step[rows, torch.arange(rows.shape[1], device=rows.device)[None, :]]
        per_step = gathered * (beam_indices >= 0)[..., None]
    return per_step.reshape(batch_size, num_sequences, *per_step.shape[1:])


class Seq2SeqGenerationPipeline(Pipeline):
    """Generate target text from source text with an encoder–decoder model (greedy, beam search, sampling).

    Call arguments: ``return_attentions`` (add the attention weights, one row per output symbol, one column per
    source symbol), ``return_tensors`` (add ``generated_token_ids``), ``skip_special_tokens``,
    ``clean_up_tokenization_spaces``, ``truncation``, and any ``generate`` argument (``num_beams``,
    ``max_new_tokens``, ``num_return_sequences``, ``do_sample``, ...).

    Returns, per input, a list of ``{"generated_text": str, ...}`` (one per returned sequence); a list of inputs
    with one sequence each gives a flat list of dicts.
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True
    _pipeline_calls_generate = True

    def __init__(self, *args, source_tokenizer=None, **kwargs):
        super().__init__(*args, **kwargs)
        if not getattr(self.model.config, "is_encoder_decoder", False):
            raise ValueError(
                f"The {TASK!r} pipeline needs an encoder–decoder model, got {type(self.model).__name__}"
            )
        if self.tokenizer is None:
            raise ValueError(f"The {TASK!r} pipeline needs a (target) tokenizer")
        config = self.model.config
        if source_tokenizer is None or isinstance(source_tokenizer, (str, os.PathLike)):
            where = source_tokenizer or self.model.name_or_path
            source_tokenizer = load_source_tokenizer(where)
            if source_tokenizer is None:
                if getattr(config, "source_vocab_size", None) is not None:
                    raise ValueError(
                        f"{where or 'the model'} has no {SOURCE_TOKENIZER_SUBFOLDER}/ folder: this "
                        f"{type(self.model).__name__} reads its sources with its own tokenizer (source_vocab_size="
                        f"{config.source_vocab_size}), and the target tokenizer would give wrong ids; save the "
                        f"source tokenizer to <folder>/{SOURCE_TOKENIZER_SUBFOLDER} or pass source_tokenizer="
                    )
                source_tokenizer = self.tokenizer  # the config declares one vocabulary for both sides
        self.source_tokenizer = _text_only(source_tokenizer)
        _text_only(self.tokenizer)
        source_vocab = getattr(config, "source_vocab_size", None) or getattr(config, "vocab_size", None)
        if source_vocab is not None and len(self.source_tokenizer) > source_vocab:
            raise ValueError(
                f"the source tokenizer has {len(self.source_tokenizer)} tokens but the model's encoder takes "
                f"{source_vocab} (source_vocab_size); this tokenizer does not belong to this model"
            )
        self.max_source_length = _position_limit(config)
        if self.max_source_length is not None:
            for tokenizer in {id(t): t for t in (self.source_tokenizer, self.tokenizer)}.values():
                if (tokenizer.model_max_length or 0) > self.max_source_length:
                    tokenizer.model_max_length = self.max_source_length

    def _sanitize_parameters(
        self,
        return_attentions=None,
        return_scores=None,
        return_tensors=None,
        skip_special_tokens=None,
        clean_up_tokenization_spaces=None,
        truncation=None,
        **generate_kwargs,
    ):
        # a generation parameter given as None means the model's own setting (GenerationConfig leaves unset
        # fields None in transformers v5, and generate() reads a None num_beams as a value, not as unset)
        forward_params = {key: value for key, value in generate_kwargs.items() if value is not None}
        preprocess_params, postprocess_params = {}, {}
        if truncation is not None:
            preprocess_params["truncation"] = truncation
        if return_attentions is not None:
            forward_params["return_attentions"] = return_attentions
            postprocess_params["return_attentions"] = return_attentions
        if return_scores is not None:
            forward_params["return_scores"] = return_scores
        if return_tensors is not None:
            postprocess_params["return_tensors"] = return_tensors
        if skip_special_tokens is not None:
            postprocess_params["skip_special_tokens"] = skip_special_tokens
        if clean_up_tokenization_spaces is not None:
            postprocess_params["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return preprocess_params, forward_params, postprocess_params

    def __call__(self, inputs, lexicon=None, **kwargs):
        """Generate for one source string or a list of them (see the class docstring)."""
        if lexicon is None:
            result = super().__call__(inputs, **kwargs)
        else:
            result = self._with_lexicon(inputs, _as_lexicon(lexicon), **kwargs)
        if isinstance(inputs, (list, tuple)) and all(isinstance(r, list) and len(r) == 1 for r in result):
            return [r[0] for r in result]
        return result

    def _with_lexicon(self, inputs, lexicon, **kwargs):
        """Records of the lexicon's pronunciations for the words it has, of the model for the others."""
        words = [inputs] if isinstance(inputs, str) else list(inputs)
        limit = int(kwargs.get("num_return_sequences") or 1)
        found = [_lookup(lexicon, word) if isinstance(word, str) else [] for word in words]
        unknown = [word for word, prons in zip(words, found) if not prons]
        generated = iter(super().__call__(unknown, **kwargs) if unknown else [])
        extra = {"score": None} if kwargs.get("return_scores") else {}
        result = []
        for prons in found:
            if prons:
                result.append([{"generated_text": p, "source": "lexicon", **extra} for p in prons[:limit]])
            else:
                result.append([{**record, "source": "model"} for record in next(generated)])
        return result[0] if isinstance(inputs, str) else result

    def preprocess(self, text, truncation=False):
        if not isinstance(text, str):
            raise TypeError(f"{TASK!r} takes a string or a list of strings, got {type(text).__name__}")
        encoded = self.source_tokenizer(text, return_tensors="pt", truncation=truncation)
        input_ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]
        if input_ids.shape[1] == 0:  # an empty source: one masked pad keeps batching (padding) working
            pad = self.source_tokenizer.pad_token_id if self.source_tokenizer.pad_token_id is not None else 0
            input_ids = torch.full((1, 1), pad, dtype=torch.long)
            attention_mask = torch.zeros((1, 1), dtype=torch.long)
        limit = self.max_source_length
        if limit is not None and input_ids.shape[1] > limit:
            if not truncation:
                shown = text if len(text) <= 40 else text[:37] + "..."
                raise ValueError(
                    f"source {shown!r} is {input_ids.shape[1]} tokens long; this model reads at most {limit} "
                    f"(max_position_embeddings); shorten it or pass truncation=True"
                )
            keep = limit
            if self.source_tokenizer.truncation_side == "left":
                input_ids, attention_mask = input_ids[:, -keep:], attention_mask[:, -keep:]
            else:
                input_ids, attention_mask = input_ids[:, :keep], attention_mask[:, :keep]
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def _forward(self, model_inputs, return_attentions=False, return_scores=False, **generate_kwargs):
        input_ids, attention_mask = model_inputs["input_ids"], model_inputs["attention_mask"]
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        if return_attentions:
            generate_kwargs.update(output_attentions=True, return_dict_in_generate=True)
        if return_scores:
            generate_kwargs.update(output_scores=True, return_dict_in_generate=True)
        batch_size = input_ids.shape[0]
        num_sequences = int(generate_kwargs.get("num_return_sequences") or 1)
        # An empty source has nothing to read: its output is empty, the other sources are generated as usual.
        filled = attention_mask.bool().any(dim=1)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        if not bool(filled.any()):
            output_ids = torch.full((batch_size, num_sequences, 1), pad, dtype=torch.long, device=input_ids.device)
            model_outputs = {"output_ids": output_ids, "input_ids": input_ids, "attention_mask": attention_mask}
            if return_attentions:
                model_outputs["cross_attentions"] = torch.zeros(batch_size, num_sequences, 0, input_ids.shape[1])
            if return_scores:
                model_outputs["sequence_scores"] = torch.full((batch_size, num_sequences), float("nan"))
            return model_outputs
        rows = filled.nonzero().flatten()
        output = self.model.generate(input_ids=input_ids[rows], attention_mask=attention_mask[rows], **generate_kwargs)
        sequences = output.sequences if isinstance(output, ModelOutput) else output
        num_sequences = sequences.shape[0] // len(rows)
        generated = sequences.reshape(len(rows), num_sequences, -1)
        output_ids = torch.full((batch_size, *generated.shape[1:]), pad, dtype=generated.dtype, device=generated.device)
        output_ids[rows] = generated
        model_outputs = {"output_ids": output_ids, "input_ids": input_ids, "attention_mask": attention_mask}
        if return_scores:
            scores = torch.full((batch_size, num_sequences), float("nan"), device=sequences.device)
            scores[rows] = self._sequence_log_probs(output).reshape(len(rows), num_sequences)
            model_outputs["sequence_scores"] = scores
        if return_attentions:
            weights = _cross_attention_matrix(output, len(rows), num_sequences)
            full = weights.new_zeros((batch_size, *weights.shape[1:]))
            full[rows] = weights
            model_outputs["cross_attentions"] = full
        return model_outputs

    def postprocess(
        self, model_outputs, return_attentions=False, return_tensors=False, skip_special_tokens=True,
        clean_up_tokenization_spaces=None,
    ):
        output_ids = model_outputs["output_ids"][0]
        records = []
        for index, sequence in enumerate(output_ids.tolist()):
            record = {
                "generated_text": self.tokenizer.decode(
                    sequence, skip_special_tokens=skip_special_tokens,
                    clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                )
            }
            if "sequence_scores" in model_outputs:
                score = float(model_outputs["sequence_scores"][0][index])
                record["score"] = None if score != score else score  # nan: an empty source, nothing generated
            if return_tensors:
                record["generated_token_ids"] = sequence
            if return_attentions:
                record.update(self._attention_record(model_outputs, index, sequence))
            records.append(record)
        return records

    def _sequence_log_probs(self, output):
        """Log-probability of each returned sequence: its tokens' log-probabilities summed up to the first
        end-of-sequence (beam search: along each beam's own path)."""
        beams = getattr(output, "beam_indices", None)
        steps = self.model.compute_transition_scores(output.sequences, output.scores, beams,
                                                     normalize_logits=beams is None)
        tokens = output.sequences[:, -steps.shape[1]:]
        eos = self.model.generation_config.eos_token_id
        if eos is not None:
            is_eos = torch.isin(tokens, torch.tensor(eos if isinstance(eos, list) else [eos], device=tokens.device))
            after = (is_eos.long().cumsum(1) - is_eos.long()) > 0  # the steps after the first end-of-sequence
            steps = steps.masked_fill(after, 0.0)
        return steps.float().sum(1)

    def _attention_record(self, model_outputs, index, sequence):
        """Attention rows for the output symbols (specials dropped) over the source symbols (padding dropped)."""
        source_positions = model_outputs["attention_mask"][0].bool()
        source_ids = model_outputs["input_ids"][0][source_positions].tolist()
        weights = model_outputs["cross_attentions"][0, index][:, source_positions]  # (steps, src_len)
        special = set(self.tokenizer.all_special_ids)
        rows, tokens = [], []
        # The token produced at step t is sequence[t + 1] (sequence[0] is the decoder start token).
        for step, token_id in enumerate(sequence[1 : 1 + weights.shape[0]]):
            if token_id in special:
                if token_id == self.tokenizer.eos_token_id or token_id == self.tokenizer.pad_token_id:
                    break
                continue
            rows.append(weights[step].tolist())
            tokens.append(self.tokenizer.convert_ids_to_tokens(token_id))
        return {
            "attentions": rows,
            "source_tokens": self.source_tokenizer.convert_ids_to_tokens(source_ids),
            "generated_tokens": tokens,
        }

    def save_pretrained(self, save_directory, **kwargs):
        """Save model, target tokenizer, source tokenizer (subfolder) and this pipeline's code for inference."""
        os.makedirs(save_directory, exist_ok=True)
        mark_for_pipeline(self.model.config, save_directory)
        self.model.save_pretrained(save_directory, **kwargs)
        self.tokenizer.save_pretrained(save_directory, **kwargs)
        if self.source_tokenizer is not self.tokenizer:
            self.source_tokenizer.save_pretrained(os.path.join(save_directory, SOURCE_TOKENIZER_SUBFOLDER), **kwargs)
