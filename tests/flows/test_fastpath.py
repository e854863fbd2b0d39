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


@pytest.mark.parametrize("mode", ["if", "cosine"])
def test_a_normalised_set_valued_from_the_index_equals_the_scan(settings, world, mode):
    # Every table indexed and every batch served by its index; tables smaller than the normaliser's
    # sample: its mean |score| is exact, so every credited number must equal the streamed scan's.
    base = settings.replace(mode=mode, index_min_rows=1, index_batch_fraction=1e9)
    assert base.checkpoint_combine == "normalised"
    app = App.of(base)
    ingest(app, world["corpus"])
    for step, path in enumerate(world["checkpoints"]):
        build_checkpoint(CheckpointContext(app, register(app, path, "tiny", step).checkpoint_id))
    qs = [json.loads(line) for line in world["queries"].read_text().splitlines()]
    fast = value_lineage(app, "tiny", checkpoint_set(app, "tiny"), qs)
    scan_app = App.of(base.replace(policy="positive_share"))
    scan = value_lineage(scan_app, "tiny", checkpoint_set(scan_app, "tiny"), qs)
    assert len(fast.per_checkpoint) == len(world["checkpoints"]) == 2
    for f, s in zip(fast.per_checkpoint, scan.per_checkpoint, strict=True):
        assert f.topk_method.startswith("aggregates+index:IVF_PQ") and s.topk_method == "exact"
        assert f.normaliser == "exact"
        for qi in range(len(qs)):
            assert f.mean_abs(qi) == pytest.approx(s.mean_abs(qi), rel=1e-5)
    for a, b in zip(fast.combined(normalise=True), scan.combined(normalise=True), strict=True):
        scale = max(abs(v) for v in b.provider_scores.values())
        assert a.provider_scores == pytest.approx(b.provider_scores, rel=1e-4, abs=1e-5 * scale)
        assert [t.example_id for t in a.topk] == [t.example_id for t in b.topk]
    # A batch too large for the index to pay streams the table: every number exact, nothing estimated.
    big = App.of(base.replace(index_batch_fraction=1e-9))
    streamed = value_lineage(big, "tiny", checkpoint_set(big, "tiny"), qs).per_checkpoint
    assert all(cs.topk_method == "exact" and not cs.group_positive.isnan().any() for cs in streamed)
