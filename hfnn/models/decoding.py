"""The direct decoding loop that greedy decoding and sampling of the generative models run in place of transformers'
``_sample`` when nothing needs its generality."""

import torch
from torch import nn
from transformers.generation.stopping_criteria import EosTokenCriteria, MaxLengthCriteria

__all__ = ["DirectDecodingMixin"]


class DirectDecodingMixin:
    """A direct loop for greedy decoding and sampling in place of transformers' ``_sample`` (which rebuilds inputs,
    masks and outputs at every token: for small models about the cost of the forward) when nothing needs its
    generality; same processors, token choice, padding of finished rows and stopping rules: the same tokens.

    A model gives ``_FAST_DECODE_KWARGS`` (the keywords the loop understands), ``_decode_allowed(model_kwargs)``,
    ``_decode_start(input_ids, model_kwargs)`` -> ``(last logits, state)``, ``_decode_step(tokens, state)`` ->
    ``(logits, state)`` and optionally ``_decode_end(state, steps)``."""

    _FAST_DECODE_KWARGS = frozenset()

    def _decode_end(self, state, steps):
        pass

    def _can_decode_fast(self, stopping_criteria, generation_config, synced_gpus, streamer, model_kwargs) -> bool:
        return (
            not synced_gpus
            and streamer is None
            and not generation_config.return_dict_in_generate
            and not getattr(generation_config, "is_assistant", False)
            and bool(model_kwargs.get("use_cache", True))
            and set(model_kwargs) <= self._FAST_DECODE_KWARGS
            and all(isinstance(c, (MaxLengthCriteria, EosTokenCriteria)) for c in stopping_criteria)
            and sum(isinstance(c, MaxLengthCriteria) for c in stopping_criteria) == 1
            and (generation_config._pad_token_tensor is not None
                 or not any(isinstance(c, EosTokenCriteria) for c in stopping_criteria))
            and self._decode_allowed(model_kwargs)
        )

    @staticmethod
    def _choose_tokens(scores: torch.Tensor, do_sample: bool) -> torch.Tensor:
        """The next token of each row: drawn from ``softmax(scores)`` when sampling, else the most likely one."""
        if do_sample:
            return torch.multinomial(nn.functional.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        return torch.argmax(scores, dim=-1)

    def _sample(self, input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus=False,
                streamer=None, **model_kwargs):
        if not self._can_decode_fast(stopping_criteria, generation_config, synced_gpus, streamer, model_kwargs):
            return super()._sample(input_ids, logits_processor, stopping_criteria, generation_config,
                                   synced_gpus=synced_gpus, streamer=streamer, **model_kwargs)
        max_length = next(c.max_length for c in stopping_criteria if isinstance(c, MaxLengthCriteria))
        eos = [c.eos_token_id.reshape(-1) for c in stopping_criteria if isinstance(c, EosTokenCriteria)]
        eos = torch.cat(eos).to(input_ids.device) if eos else None
        pad = generation_config._pad_token_tensor
        logits, state = self._decode_start(input_ids, model_kwargs)
        unfinished = (torch.ones(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
                      if eos is not None else None)
        keep_ids = len(logits_processor) > 0  # processors read the text so far
        pieces, length, steps = [input_ids], input_ids.shape[1], 0
        while True:
            scores = (logits_processor(input_ids, logits.to(dtype=torch.float32, copy=True)) if keep_ids
                      else logits.float())
            next_tokens = self._choose_tokens(scores, generation_config.do_sample)
            if unfinished is not None:  # finished rows get padding
                next_tokens = next_tokens * unfinished + pad * (1 - unfinished)
            length += 1
            if keep_ids:
                input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)
            else:
                pieces.append(next_tokens[:, None])
            if length >= max_length:
                break
            if unfinished is not None:
                unfinished = unfinished & ~torch.isin(next_tokens, eos)
                if unfinished.max() == 0:
                    break
            logits, state = self._decode_step(next_tokens[:, None], state)
            steps += 1
        self._decode_end(state, steps)
        return input_ids if keep_ids else torch.cat(pieces, dim=-1)
