"""LM batches in the loss convention of docs/ARCHITECTURE.md, "Conventions" (pure tensors, no tokenizer)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from valuation.loss import IGNORE_INDEX


def pad_batch(
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    counted: Sequence[Sequence[bool]] | None = None,
) -> dict[str, torch.Tensor]:
    """Right-pad token id lists into ``input_ids``, ``attention_mask`` and ``labels``, ``(batch, T)``.

    ``labels`` equal ``input_ids`` except padding and tokens whose ``counted`` flag is False,
    which are ``-100`` (the loss ignores them).
    """
    if not sequences:
        raise ValueError("pad_batch needs at least one sequence")
    width = max(len(s) for s in sequences)
    if width == 0:
        raise ValueError("every sequence is empty")
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
    for row, seq in enumerate(sequences):
        n = len(seq)
        ids[row, :n] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, :n] = 1
        keep = torch.ones(n, dtype=torch.bool) if counted is None else torch.as_tensor(list(counted[row]))
        labels[row, :n] = torch.where(keep, ids[row, :n], torch.tensor(IGNORE_INDEX))
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def query_batch(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    pad_id: int,
    max_length: int | None = None,
) -> dict[str, torch.Tensor]:
    """Prompt + response sequences whose loss covers the response tokens only.

    Too long a pair loses prompt tokens from the left (the response is what is valued); a
    response longer than ``max_length`` keeps its first ``max_length`` tokens.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    sequences, counted = [], []
    for prompt, response in zip(prompts, responses, strict=True):
        prompt, response = list(prompt), list(response)
        if not response:
            raise ValueError("a query needs a non-empty response")
        if max_length is not None:
            response = response[:max_length]
            prompt = prompt[max(0, len(prompt) - (max_length - len(response))) :] if max_length > len(response) else []
        sequences.append(prompt + response)
        counted.append([False] * len(prompt) + [True] * len(response))
    return pad_batch(sequences, pad_id, counted)
