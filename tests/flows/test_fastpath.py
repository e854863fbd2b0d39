"""The aggregate path of ``value`` (provider sums from aggregate vectors, top-k from the index or an
exact re-ranked scan) equals the streamed scan, on real stores."""

from __future__ import annotations

import json

import pytest
import torch

from flows.app import App
from flows.checkpoint.context import CheckpointContext
from flows.checkpoint.register import register
from flows.ingest import ingest
from flows.pipeline import build_checkpoint
from flows.valuate import checkpoint_set, value_lineage


@pytest.mark.parametrize("mode", ["if", "relatif", "cosine"])
def test_aggregate_sums_and_topk_equal_the_scan(settings, world, mode):
    base = settings.replace(mode=mode, checkpoint_combine="sum", index_min_rows=1_000_000)
    app = App.of(base)
    ingest(app, world["corpus"])
    ck = register(app, world["checkpoints"][0], "tiny", 0).checkpoint_id
    build_checkpoint(CheckpointContext(app, ck))
    qs = [json.loads(line) for line in world["queries"].read_text().splitlines()]
    fast = value_lineage(app, "tiny", checkpoint_set(app, "tiny"), qs).per_checkpoint[0]
    scan_app = App.of(base.replace(policy="positive_share"))  # needs every score: the streamed scan
    scan = value_lineage(scan_app, "tiny", checkpoint_set(scan_app, "tiny"), qs).per_checkpoint[0]
    assert fast.topk_method.startswith("aggregates+") and scan.topk_method == "exact"
    # The scan multiplies in float32 (its sums accumulate in float64); the aggregates are float64 all
    # through: they agree to float32 rounding here, and to 1e-9 in float64 (tests/valuation/test_aggregate.py).
    # A float32 sum's rounding scales with its terms, not its result: a provider whose scores cancel
    # is held to the scale of the whole table of sums.
    scale = float(scan.group_sums.abs().max())
    torch.testing.assert_close(fast.group_sums, scan.group_sums, rtol=1e-5, atol=1e-5 * scale)
    assert fast.examples == scan.examples
    for a, b in zip(fast.topk, scan.topk, strict=True):
        assert [e for e, *_ in a] == [e for e, *_ in b]
        assert [s for *_, s in a] == pytest.approx([s for *_, s in b], rel=1e-6, abs=1e-9)
    assert fast.group_positive.isnan().all()  # unknown on this path, never made up
