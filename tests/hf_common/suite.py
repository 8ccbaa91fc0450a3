"""transformers' common model tests for every hfnn architecture (run through ``run.py`` beside this file).

One ``ModelTester`` per architecture builds a tiny config and inputs; one test class per architecture
mixes in ``ModelTesterMixin`` (and ``GenerationTesterMixin`` for the generating heads), with the flags
transformers sets for its own comparable models: Mamba for the recurrent language model (no attention
outputs), ResNet for the attention-free classifiers, Bart for the encoder-decoders.
"""

import unittest

import torch
from hf_common_tests.generation.test_utils import GenerationTesterMixin
from hf_common_tests.test_modeling_common import ModelTesterMixin, ids_tensor
from transformers.models.auto import modeling_auto

import hfnn
from hfnn import (
    CnnConfig,
    CnnForSequenceClassification,
    CnnModel,
    MlpConfig,
    MlpForSequenceClassification,
    MlpModel,
    RnnConfig,
    RnnForCausalLM,
    RnnForSequenceClassification,
    RnnModel,
    RnnSeq2SeqConfig,
    RnnSeq2SeqForConditionalGeneration,
    RnnSeq2SeqModel,
    TransformerConfig,
    TransformerForCausalLM,
    TransformerForConditionalGeneration,
    TransformerForSequenceClassification,
    TransformerModel,
)

# A model inside transformers is listed in the Auto mappings by class name; the common tests read these
# lists (e.g. to give a classifier class-id labels and a language model token labels in test_training).
_MAPPINGS = {
    "AutoModel": modeling_auto.MODEL_MAPPING_NAMES,
    "AutoModelForCausalLM": modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    "AutoModelForSeq2SeqLM": modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    "AutoModelForSequenceClassification": modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
}
for _arch, _entry in hfnn.ARCHITECTURES.items():
    for _auto, _class_name in _entry.models:
        _MAPPINGS[_auto].setdefault(f"hfnn-{_arch}-{_auto}", _class_name)


class Tester:
    """Tiny config + inputs, the attributes ``ModelTesterMixin`` reads."""

    batch_size = 3
    seq_length = 7
    vocab_size = 40
    hidden_size = 16
    num_hidden_layers = 2
    num_attention_heads = 2
    is_training = True

    def __init__(self, parent, config_class, config_kwargs, seq2seq=False, **attributes):
        self.parent = parent
        self.config_class = config_class
        self.config_kwargs = config_kwargs
        self.seq2seq = seq2seq
        for name, value in attributes.items():
            setattr(self, name, value)

    def get_config(self):
        return self.config_class(vocab_size=self.vocab_size, **self.config_kwargs)

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 4) + 4  # no special ids
        mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": mask}
        if self.seq2seq:
            decoder_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 4) + 4
            inputs["decoder_input_ids"] = decoder_ids
            inputs["decoder_attention_mask"] = torch.ones_like(decoder_ids)
        return config, inputs

    def prepare_config_and_inputs_for_model_class(self, model_class):
        return self.prepare_config_and_inputs_for_common()


class _Common(ModelTesterMixin):
    test_resize_embeddings = True
    test_missing_keys = True
    test_torch_exportable = False
    test_mismatched_shapes = False  # hfnn heads have fixed names; the test builds a 42-label head by name


# --- RNN: flags of Mamba (recurrent, no attention) -------------------------------------------------
class RnnCommonTest(_Common, GenerationTesterMixin, unittest.TestCase):
    all_model_classes = (RnnModel, RnnForCausalLM, RnnForSequenceClassification)
    has_attentions = False

    def setUp(self):
        self.model_tester = Tester(self, RnnConfig, dict(hidden_size=16, embedding_size=16, num_hidden_layers=2,
                                                         rnn_type="lstm", dropout=0.0))


# --- CNN and MLP: flags of ResNet (attention-free, no sequence of per-layer states) -----------------
class CnnCommonTest(_Common, unittest.TestCase):
    all_model_classes = (CnnModel, CnnForSequenceClassification)
    has_attentions = False

    def setUp(self):
        self.model_tester = Tester(self, CnnConfig, dict(embedding_size=16, window_sizes=(2, 3), num_filters=8,
                                                         dropout=0.0), hidden_size=16, num_hidden_layers=1)


class MlpCommonTest(_Common, unittest.TestCase):
    all_model_classes = (MlpModel, MlpForSequenceClassification)
    has_attentions = False

    def setUp(self):
        self.model_tester = Tester(self, MlpConfig, dict(embedding_size=16, hidden_size=16, num_hidden_layers=2,
                                                         dropout=0.0))

    def test_hidden_states_output(self):
        # As ResNet's own test does for its (batch, channels, height, width) states: an MLP's hidden states
        # are one vector per text, (batch, hidden_size), not one per token; count and shape are checked,
        # set by the call and by the config.
        for model_class in self.all_model_classes:
            for by_config in (False, True):
                config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
                if by_config:
                    config.output_hidden_states = True
                else:
                    inputs["output_hidden_states"] = True
                model = model_class(config).eval()
                with torch.no_grad():
                    states = model(**inputs).hidden_states
                self.assertEqual(len(states), self.model_tester.num_hidden_layers + 1)
                for state in states:
                    self.assertEqual(tuple(state.shape), (self.model_tester.batch_size, self.model_tester.hidden_size))


class MlpNgramCommonTest(MlpCommonTest):
    """The MLP with an exact n-gram vocabulary and character n-grams, whose tables are buffers saved with the
    weights (empty here, as in a new model before `index_ngrams` / `index_vocabulary`)."""

    def setUp(self):
        self.model_tester = Tester(self, MlpConfig, dict(embedding_size=16, hidden_size=16, num_hidden_layers=2,
                                                         dropout=0.0, ngram_range=(1, 3), ngram_vocabulary=True,
                                                         ngram_buckets=64, char_ngram_range=(1, 2),
                                                         char_ngram_buckets=32, char_ngrams_per_token=4))


# --- encoder-decoders: flags of Bart --------------------------------------------------------------
class RnnSeq2SeqCommonTest(_Common, GenerationTesterMixin, unittest.TestCase):
    all_model_classes = (RnnSeq2SeqModel, RnnSeq2SeqForConditionalGeneration)
    is_encoder_decoder = True
    has_attentions = False

    def setUp(self):
        self.model_tester = Tester(self, RnnSeq2SeqConfig, dict(source_vocab_size=40, hidden_size=16,
                                                                embedding_size=16, num_encoder_layers=2,
                                                                num_decoder_layers=2, dropout=0.0),
                                   seq2seq=True, encoder_seq_length=7, decoder_seq_length=7)

    def test_inputs_embeds_matches_input_ids(self):
        # The common test embeds the decoder ids with the encoder's table (Bart shares one); source and target
        # have tables of their own here, so each side is embedded with its own.
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config).eval()
            with torch.no_grad():
                by_ids = model(**inputs)[0]
                embeds = dict(inputs, inputs_embeds=model.get_input_embeddings()(inputs["input_ids"]),
                              decoder_inputs_embeds=model.get_decoder().get_input_embeddings()(inputs["decoder_input_ids"]))
                del embeds["input_ids"], embeds["decoder_input_ids"]
                torch.testing.assert_close(model(**embeds)[0], by_ids)


class TransformerCommonTest(_Common, GenerationTesterMixin, unittest.TestCase):
    all_model_classes = (TransformerModel, TransformerForCausalLM, TransformerForSequenceClassification)

    def setUp(self):
        self.model_tester = Tester(self, TransformerConfig, dict(hidden_size=16, num_hidden_layers=2,
                                                                 num_attention_heads=2, intermediate_size=32,
                                                                 max_position_embeddings=64, dropout=0.0,
                                                                 attention_dropout=0.0))


class TransformerSeq2SeqCommonTest(_Common, GenerationTesterMixin, unittest.TestCase):
    all_model_classes = (TransformerForConditionalGeneration,)
    is_encoder_decoder = True

    @unittest.skip("encoder and decoder sit at the top of the model (no base model under a prefix), so that saved "
                   "checkpoints keep their weight names; the test's docstring allows the skip for such layouts")
    def test_model_base_model_prefix(self):
        pass

    def setUp(self):
        self.model_tester = Tester(self, TransformerConfig, dict(hidden_size=16, num_hidden_layers=2,
                                                                 num_attention_heads=2, intermediate_size=32,
                                                                 max_position_embeddings=64, dropout=0.0,
                                                                 attention_dropout=0.0, is_encoder_decoder=True,
                                                                 decoder_start_token_id=2),
                                   seq2seq=True, encoder_seq_length=7, decoder_seq_length=7)
