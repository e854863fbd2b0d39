"""LM batch construction: padding, response-only query labels, truncation."""

from __future__ import annotations

import pytest
import torch

from tests.valuation.conftest import tiny_gpt2
from valuation import lm_loss, pad_batch, query_batch


def test_pad_batch_masks_padding_in_labels():
    b = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]


def test_query_loss_covers_only_response_tokens():
    b = query_batch([[1, 2, 3], [4]], [[9, 10], [11, 12, 13]], pad_id=0)
    assert b["labels"].tolist() == [[-100, -100, -100, 9, 10], [-100, 11, 12, 13, -100]]
    model = tiny_gpt2()
    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    lp = torch.log_softmax(logits, -1)
    # Sum of -log p(response token | everything before it), by hand.
    want = -(lp[0, 2, 9] + lp[0, 3, 10] + lp[1, 0, 11] + lp[1, 1, 12] + lp[1, 2, 13])
    torch.testing.assert_close(lm_loss(logits, b["labels"]), want)


def test_query_truncation_drops_prompt_from_the_left():
    b = query_batch([[1, 2, 3, 4]], [[7, 8]], pad_id=0, max_length=4)
    assert b["input_ids"].tolist() == [[3, 4, 7, 8]]
    assert b["labels"].tolist() == [[-100, -100, 7, 8]]


def test_bad_queries_are_refused():
    with pytest.raises(ValueError, match="response"):
        query_batch([[1]], [[]], pad_id=0)
    with pytest.raises(ValueError, match="prompts"):
        query_batch([[1]], [[2], [3]], pad_id=0)
