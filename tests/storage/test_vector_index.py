"""Indexed top-k: candidates from a Lance index, re-ranked exactly; equal to the exact scan when
every list is probed, and a clear fallback to the scan below the size threshold."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from storage import GradientStore
from storage.vector_index import IndexArguments, VectorIndexError, build_index, default_sub_vectors, kmeans, topk
from valuation import ProjectedFisher, influence_scores, self_influence

DIM = 32
LAYOUT = [("a", 4, 8)]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    topics = rng.standard_normal((12, DIM))
    n = 3000
    g = (topics[rng.integers(0, 12, n)] + 0.5 * rng.standard_normal((n, DIM))) * rng.lognormal(0, 0.5, (n, 1))
    g = g.astype(np.float16)
    table = GradientStore(root / "g").table("c" * 32, "cfg", LAYOUT, "float16")
    for shard in range(2):
        lo, hi = shard * 1500, (shard + 1) * 1500
        ids = [f"e{i}" for i in range(lo, hi)]
        with table.writer(shard, batch_rows=4096) as w:
            w.add(
                ids,
                [f"d{i // 2}" for i in range(lo, hi)],
                [f"p{i % 7}" for i in range(lo, hi)],
                [i % 7 for i in range(lo, hi)],
                g[lo:hi],
            )
    G = torch.from_numpy(g.astype(np.float64))
    fisher = ProjectedFisher(LAYOUT)
    fisher.update(G)
    pre = fisher.preconditioner(0.1)  # the index is built in its whitened metric
    self_inf = self_influence(G, pre)
    table.write_self_influence([f"e{i}" for i in range(n)], [i // 1500 for i in range(n)], self_inf.numpy())
    table.optimize()
    q = torch.from_numpy(topics[:5] + 0.3 * rng.standard_normal((5, DIM)))
    return table, G, self_inf, q, pre


def exact(G, self_inf, q, mode, k):
    scores = influence_scores(q, G, mode, self_inf, (q * q).sum(1))
    top = scores.topk(k, dim=1)
    return top.values, [[f"e{i}" for i in row] for row in top.indices.tolist()]


@pytest.mark.parametrize("mode", ["if", "relatif", "cosine"])
def test_ivf_flat_probing_every_list_equals_the_exact_scan(indexed, mode):
    table, G, self_inf, q, pre = indexed
    args = IndexArguments(
        index_type="IVF_FLAT", num_partitions=8, nprobes=8, refine_factor=4, min_rows=100, max_candidate_fraction=1.0
    )
    built = build_index(table, pre, args, modes=(mode,))
    assert next(iter(built.values()))["num_partitions"] == 8
    res = topk(table, q, 6, mode, (q * q).sum(1), args, pre=pre)
    want_scores, want_ids = exact(G, self_inf, q, mode, 6)
    assert res.method == "index:IVF_FLAT(p=8,nprobes=8,refine=4)"
    assert res.example_ids == want_ids
    torch.testing.assert_close(res.scores, want_scores, rtol=1e-12, atol=0.0)
    assert res.provider_ids[0][0] == f"p{int(res.example_ids[0][0][1:]) % 7}"
    scan = topk(table, q, 6, mode, (q * q).sum(1), args, exact=True)
    assert scan.method == "exact" and scan.example_ids == want_ids
    torch.testing.assert_close(scan.scores, want_scores, rtol=1e-12, atol=0.0)


def test_ivf_pq_recall_with_exact_rerank(indexed):
    table, G, self_inf, q, pre = indexed
    args = IndexArguments(
        index_type="IVF_PQ",
        num_partitions=8,
        num_sub_vectors=8,
        nprobes=4,
        refine_factor=10,
        min_rows=100,
        max_candidate_fraction=1.0,
    )
    info = build_index(table, pre, args, modes=("if",))["white"]
    # Equal-norm centroids: the dot metric spreads rows over the lists instead of piling them up.
    assert info["list_sizes"]["max"] < 4 * info["list_sizes"]["median"]
    res = topk(table, q, 10, "if", None, args, pre=pre)
    assert res.method == "index:IVF_PQ(p=8,sv=8,nprobes=4,refine=10)"
    _, want_ids = exact(G, self_inf, q, "if", 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res.example_ids, want_ids, strict=True)])
    assert recall >= 0.9
    # Whatever was found is scored exactly.
    for qi, row in enumerate(res.example_ids):
        rows = [int(e[1:]) for e in row]
        torch.testing.assert_close(res.scores[qi, : len(rows)], q[qi] @ G[rows].T, rtol=1e-12, atol=0.0)
    # A batch whose candidates outnumber the break-even share of the rows is scanned: exact.
    n_rows = G.shape[0]
    assert args.index_pays(5, 10, n_rows) and not args.index_pays(n_rows, 10, n_rows)
    scanned = topk(table, q, 10, "if", None, replace(args, max_candidate_fraction=1e-6), pre=pre)
    assert scanned.method == "exact" and scanned.example_ids == want_ids


def test_small_tables_are_scanned(tmp_path):
    table = GradientStore(tmp_path / "g").table("c" * 32, "cfg", LAYOUT, "float32")
    with table.writer(0) as w:
        w.add(["a", "b"], ["a", "b"], ["p", "p"], [0, 0], np.eye(2, DIM, dtype=np.float32))
    fisher = ProjectedFisher(LAYOUT)
    fisher.update(torch.eye(2, DIM, dtype=torch.float64))
    built = build_index(table, fisher.preconditioner(0.1), IndexArguments(min_rows=10))
    assert "skipped" in built["white"]
    res = topk(table, torch.ones(1, DIM, dtype=torch.float64), 3)
    assert res.method == "exact" and res.example_ids == [["a", "b"]] and torch.isinf(res.scores[0, 2])
    with pytest.raises(VectorIndexError, match="cosine"):
        topk(table, torch.ones(1, DIM), 3, "cosine")


def test_kmeans_recovers_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=gen) * 10
    x = centres.repeat_interleave(50, 0) + 0.01 * torch.randn(200, 8, generator=gen)
    got = kmeans(x, 4, 10, seed=1)
    dist = torch.cdist(got, centres).min(1).values
    assert float(dist.max()) < 0.1


def test_an_index_serves_only_the_version_it_was_built_from(tmp_path):
    # Its entries name rows by position in that version: after a deletion the scan answers (never a
    # deleted row); a run pinned at the indexed version still gets the index. Probing every list of
    # a flat index, the indexed result is the exact one.
    rng = np.random.default_rng(5)
    g = rng.standard_normal((600, DIM)).astype(np.float32)
    table = GradientStore(tmp_path / "g").table("d" * 32, "cfg", LAYOUT, "float32")
    with table.writer(0) as w:
        w.add([f"e{i}" for i in range(600)], [f"d{i}" for i in range(600)], ["p"] * 600, [0] * 600, g)
    fisher = ProjectedFisher(LAYOUT)
    fisher.update(torch.from_numpy(g.astype(np.float64)))
    pre = fisher.preconditioner(0.1)
    args = IndexArguments("IVF_FLAT", num_partitions=4, nprobes=4, refine_factor=2, min_rows=100)
    args = replace(args, max_candidate_fraction=1.0)
    indexed_version = table.version
    build_index(table, pre, args)
    q = torch.from_numpy(g[:3].astype(np.float64))
    scores = q @ torch.from_numpy(g.astype(np.float64)).T
    pinned = topk(table, q, 5, "if", None, args, version=indexed_version, pre=pre)
    assert pinned.method.startswith("index:IVF_FLAT")
    assert pinned.example_ids == [[f"e{i}" for i in row] for row in scores.topk(5, dim=1).indices.tolist()]
    torch.testing.assert_close(pinned.scores, scores.topk(5, dim=1).values, rtol=1e-12, atol=0.0)
    table.tbl.delete("example_id = 'e0' OR example_id = 'e1'")
    res = topk(table, q, 5, "if", None, args, pre=pre)
    scores[:, :2] = float("-inf")
    want = scores.topk(5, dim=1)
    assert res.method == "exact"
    assert res.example_ids == [[f"e{i}" for i in row] for row in want.indices.tolist()]
    torch.testing.assert_close(res.scores, want.values, rtol=1e-12, atol=0.0)
    # Without the checkpoint's preconditioner there is no whitened query: the scan answers.
    assert topk(table, q, 5, "if", None, args, version=indexed_version).method == "exact"


def test_default_codes_and_probes_scale_with_the_table():
    assert default_sub_vectors(4096) == 512 and default_sub_vectors(672) == 84
    assert default_sub_vectors(15) == 1 and 60 % default_sub_vectors(60) == 0 and 60 // default_sub_vectors(60) >= 8
    args = IndexArguments()
    assert [args.probes(n) for n in (1, 3, 73, 244)] == [1, 1, 25, 82]
    assert IndexArguments(nprobes=40).probes(244) == 40 and IndexArguments(nprobes=40).probes(10) == 10
    assert args.partitions(1_000_000) == 244 and args.partitions(300_000) == 73
