"""Masks of the real tokens of a padded batch, and what is read through them: masked pooling, the final states of a
recurrence, the order that puts each row's real tokens first."""

import torch

__all__ = ["final_states", "masked_max", "masked_mean", "real_token_mask", "tokens_first"]


def real_token_mask(attention_mask, input_ids, pad_token_id, shape, device, owner: str) -> torch.Tensor:
    """The bool ``(batch, time)`` mask of real tokens: ``attention_mask`` if given (a ValueError naming
    ``owner`` unless its shape is ``shape``), else the positions of ``input_ids`` not holding ``pad_token_id``,
    else all True."""
    if attention_mask is not None:
        if tuple(attention_mask.shape) != tuple(shape):
            shapes = f"{tuple(attention_mask.shape)}, expected {tuple(shape)}"
            raise ValueError(f"{owner}: attention_mask has shape {shapes}")
        return attention_mask.bool()
    if input_ids is not None and pad_token_id is not None:
        return input_ids != pad_token_id
    return torch.ones(shape, dtype=torch.bool, device=device)


def masked_max(values: torch.Tensor, keep: torch.Tensor, dim: int) -> torch.Tensor:
    """Max of ``values`` over ``dim`` where ``keep`` (broadcastable bool) is True; 0 where nothing is kept. Finite in
    value and gradient whatever the dtype (no -inf enters), so a row of padding pools to zeros alone or in a batch."""
    keep = keep.expand_as(values)
    low = values.detach().min() if values.numel() else values.new_zeros(())
    pooled = torch.where(keep, values, low).amax(dim=dim)
    return torch.where(keep.any(dim=dim), pooled, torch.zeros_like(pooled))


def masked_mean(values: torch.Tensor, keep: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``values`` over ``dim`` where ``keep`` is True; 0 where nothing is kept."""
    weights = keep.to(values.dtype)
    return (values * weights).sum(dim) / weights.sum(dim).clamp(min=1.0)


def final_states(outputs: torch.Tensor, mask: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """The summary of recurrent ``outputs (batch, time, hidden)``: the output at each row's last real token (``mask``
    bool ``(batch, time)``), and for ``bidirectional`` outputs the backward half at the first real token (the final
    state of each direction). Rows without a token give their (zero) output at padding."""
    rows = torch.arange(outputs.shape[0], device=outputs.device)
    last = outputs[rows, outputs.shape[1] - 1 - mask.flip(1).int().argmax(1)]
    if not bidirectional:
        return last
    half = outputs.shape[-1] // 2
    return torch.cat([last[:, :half], outputs[rows, mask.int().argmax(1), half:]], dim=-1)


def tokens_first(mask: torch.Tensor) -> torch.Tensor:
    """Gather index putting each row's real tokens (``mask`` True) first, in order (distinct keys: ONNX has no stable
    sort)."""
    time = mask.shape[1]
    return torch.argsort((~mask).long() * time + torch.arange(time, device=mask.device), dim=1)
