"""The base classes and mixins of the hfnn model families. Like every module of this folder it imports only
``torch``, ``transformers`` and its siblings (with a single dot): ``save_pretrained`` copies the sibling modules a
modeling file imports beside it for remote code, so saved models load where hfnn is not installed."""

from transformers import PreTrainedModel

__all__ = ["EncoderDecoderMixin", "TextClassifierPreTrainedModel"]


class TextClassifierPreTrainedModel(PreTrainedModel):
    """Base of the bag-of-embeddings and convolutional classifiers: the embedding table sits at
    ``model.embeddings.word_embeddings``; the losses are per-example means that ignore the Trainer's
    ``num_items_in_batch``, so the Trainer scales them for gradient accumulation itself."""

    base_model_prefix = "model"
    _input_embed_layer = "word_embeddings"
    accepts_loss_kwargs = False
    supports_gradient_checkpointing = True


class EncoderDecoderMixin:
    """The encoder, the decoder and the input (encoder) embedding of an encoder-decoder whose base model has
    ``encoder`` and ``decoder`` modules."""

    def get_encoder(self, modality=None):
        return self.base_model.encoder

    def get_decoder(self):
        return self.base_model.decoder

    def get_input_embeddings(self):
        return self.base_model.encoder.embed_tokens

    def set_input_embeddings(self, value):
        self.base_model.encoder.embed_tokens = value
