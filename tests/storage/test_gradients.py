"""The LanceDB gradient store: exact round trips, shard commits, crashes, versions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from storage import GradientStore

LAYOUT = [("a", 2, 3), ("b", 1, 2)]  # dim 8
DIM = 8


def rows(n: int, start: int = 0, seed: int = 0, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    ids = [f"doc{i // 2}#{i % 2}" for i in range(start, start + n)]
    return (
        ids,
        [e.split("#")[0] for e in ids],
        [f"p{i % 3}" for i in range(start, start + n)],
        [i % 3 for i in range(start, start + n)],
        (rng.standard_normal((n, DIM)) * scale).astype(np.float32),
    )


def read_all(table, **kw):
    chunks = list(table.read(**kw))
    if not chunks:
        return [], np.zeros((0, DIM), np.float32)
    ids = [e for c in chunks for e in c.example_ids]
    return ids, torch.cat([c.vectors for c in chunks]).numpy()


def test_float32_round_trip_is_bit_exact(tmp_path):
    table = GradientStore(tmp_path / "g").table("ckpt" * 8, "cfg1", LAYOUT, "float32", {"k": 1})
    ids, docs, provs, codes, vec = rows(50)
    with table.writer(0, batch_rows=16) as w:
        for s in range(0, 50, 7):
            w.add(ids[s : s + 7], docs[s : s + 7], provs[s : s + 7], codes[s : s + 7], vec[s : s + 7])
    got_ids, got = read_all(table, chunk_rows=9)
    order = np.argsort(got_ids)
    want_order = np.argsort(ids)
    assert [got_ids[i] for i in order] == [ids[i] for i in want_order]
    assert np.array_equal(got[order].view(np.uint32), vec[want_order].view(np.uint32))
    assert table.layout == [tuple(e) for e in LAYOUT] and table.config == {"k": 1}
    # Chunks hold at most chunk_rows rows, all rows once, in a stable order.
    sizes = [len(c) for c in table.read(chunk_rows=9)]
    assert max(sizes) <= 9 and sum(sizes) == 50
    assert [e for c in table.read(chunk_rows=9) for e in c.example_ids] == got_ids


def test_float16_within_rounding_and_overflow_refused(tmp_path):
    table = GradientStore(tmp_path / "g").table("c" * 32, "cfg16", LAYOUT, "float16")
    ids, docs, provs, codes, vec = rows(20)
    with table.writer(0) as w:
        w.add(ids, docs, provs, codes, vec)
    got_ids, got = read_all(table)
    assert got.dtype == np.float16
    want = {e: v for e, v in zip(ids, vec, strict=True)}
    for e, v in zip(got_ids, got, strict=True):
        np.testing.assert_allclose(v.astype(np.float32), want[e], rtol=1e-3, atol=1e-4)
    big = rows(3, start=100, scale=1e5)
    with pytest.raises(OverflowError, match="float16"), table.writer(1) as w:
        w.add(*big)
    assert table.committed_shards() == [0]  # the failed shard never became visible
    assert np.isfinite(read_all(table)[1].astype(np.float32)).all()


def test_shard_rerun_replaces_rows(tmp_path):
    table = GradientStore(tmp_path / "g").table("c" * 32, "cfg", LAYOUT)
    first = rows(10, seed=1)
    second = rows(10, seed=2)
    with table.writer(3) as w:
        w.add(*first)
    with table.writer(3) as w:
        w.add(*second)
    got_ids, got = read_all(table)
    assert sorted(got_ids) == sorted(first[0]) and len(got_ids) == 10
    want = dict(zip(second[0], second[4], strict=True))
    assert all(np.array_equal(v, want[e]) for e, v in zip(got_ids, got, strict=True))


WRITER = textwrap.dedent(
    """
    import sys, time, numpy as np
    sys.path.insert(0, {root!r})
    from storage import GradientStore
    table = GradientStore({uri!r}).table("k" * 32, "cfg", {layout!r})
    w = table.writer(0, batch_rows=10)
    rng = np.random.default_rng(0)
    for i in range(10_000):
        ids = [f"d{{j}}#0" for j in range(i * 10, i * 10 + 10)]
        vec = rng.standard_normal((10, 8)).astype(np.float32)
        w.add(ids, [e[:-2] for e in ids], ["p"] * 10, [0] * 10, vec)
        if i == 5:
            print("writing", flush=True)
        time.sleep(0.01)
    """
)


def test_writer_killed_mid_shard_then_redone_leaves_one_row_per_example(tmp_path):
    uri = str(tmp_path / "g")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = WRITER.format(root=root, uri=uri, layout=LAYOUT)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    table = GradientStore(uri).table("k" * 32, "cfg")
    deadline = time.time() + 60
    while table.tbl.count_rows() < 30 and time.time() < deadline:  # rows are on disk...
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert table.tbl.count_rows() >= 30
    assert table.committed_shards() == [] and read_all(table)[0] == []  # ...but not visible
    ids, docs, provs, codes, vec = rows(40)
    with table.writer(0) as w:
        w.add(ids, docs, provs, codes, vec)
    got_ids, _ = read_all(table)
    assert sorted(got_ids) == sorted(ids)
    assert table.tbl.count_rows() == 40  # the partial rows are gone, not just hidden


def test_two_checkpoints_never_share_rows(tmp_path):
    store = GradientStore(tmp_path / "g")
    a = store.table("a" * 32, "cfg", LAYOUT)
    b = store.table("b" * 32, "cfg", LAYOUT)
    with a.writer(0) as w:
        w.add(*rows(5, seed=1))
    with b.writer(0) as w:
        w.add(*rows(7, seed=2))
    assert a.name != b.name
    assert len(read_all(a)[0]) == 5 and len(read_all(b)[0]) == 7
    assert sorted(store.tables()) == sorted([a.name, b.name])


def test_pinned_reader_does_not_see_later_writes(tmp_path):
    table = GradientStore(tmp_path / "g").table("c" * 32, "cfg", LAYOUT)
    with table.writer(0) as w:
        w.add(*rows(6))
    pinned = table.version
    with table.writer(1) as w:
        w.add(*rows(4, start=6))
    with table.writer(0) as w:  # a redo after the pin
        w.add(*rows(6, seed=9))
    assert len(read_all(table, version=pinned)[0]) == 6
    pinned_ids, pinned_vec = read_all(table, version=pinned)
    original = dict(zip(rows(6)[0], rows(6)[4], strict=True))
    assert all(np.array_equal(v, original[e]) for e, v in zip(pinned_ids, pinned_vec, strict=True))
    assert len(read_all(table)[0]) == 10
    assert table.count_rows(pinned) == 6


def test_filters_by_provider_and_shard_and_self_influence(tmp_path):
    table = GradientStore(tmp_path / "g").table("c" * 32, "cfg", LAYOUT)
    ids, docs, provs, codes, vec = rows(12)
    with table.writer(0) as w:
        w.add(ids[:6], docs[:6], provs[:6], codes[:6], vec[:6])
    with table.writer(1) as w:
        w.add(ids[6:], docs[6:], provs[6:], codes[6:], vec[6:])
    assert sorted(read_all(table, shards=[1])[0]) == sorted(ids[6:])
    got = [c for c in table.read(providers=["p1"])]
    assert {p for c in got for p in c.provider_ids} == {"p1"}
    assert sum(len(c.example_ids) for c in got) == 4
    table.write_self_influence(ids[:6], [0] * 6, np.arange(6.0))
    assert table.self_influence(0) == {e: float(i) for i, e in enumerate(ids[:6])}
    with pytest.raises(ValueError, match="NaN"):
        table.write_self_influence(ids[:1], [0], np.array([np.nan]))


def test_bad_vectors_are_refused(tmp_path):
    table = GradientStore(tmp_path / "g").table("c" * 32, "cfg", LAYOUT)
    ids, docs, provs, codes, vec = rows(2)
    with table.writer(0) as w:
        with pytest.raises(ValueError, match=r"\(n, 8\)"):
            w.add(ids, docs, provs, codes, vec[:, :5])
        vec[0, 0] = np.inf
        with pytest.raises(ValueError, match="NaN or inf"):
            w.add(ids, docs, provs, codes, vec)
    assert read_all(table)[0] == []


def test_a_superseded_writer_leaves_no_rows(tmp_path, monkeypatch):
    """A worker presumed dead (its shard handed to another) wakes up and keeps writing: its rows
    never end up beside the new attempt's, and it cannot commit."""
    from storage.gradients import ShardSupersededError

    table = GradientStore(tmp_path / "g").table("c" * 32, "cfg", LAYOUT)
    ids, docs, provs, codes, vec = rows(8)
    monkeypatch.setenv("DATAWORTH_WORKER", "stale")
    stale = table.writer(0, batch_rows=2)
    stale.add(ids[:4], docs[:4], provs[:4], codes[:4], vec[:4])  # appended in the background
    monkeypatch.setenv("DATAWORTH_WORKER", "fresh")
    with table.writer(0, batch_rows=2) as fresh:  # the retry elsewhere
        fresh.add(ids, docs, provs, codes, vec)
        stale.add(ids[4:], docs[4:], provs[4:], codes[4:], vec[4:])  # the stale one wakes up mid-way
    with pytest.raises(RuntimeError, match="writer failed") as info:
        stale.commit()
    assert isinstance(info.value.__cause__, ShardSupersededError)
    got_ids, got_vec = read_all(table)
    assert sorted(got_ids) == sorted(ids)  # exactly one row per example, the fresh attempt's
    by_id = dict(zip(got_ids, got_vec, strict=True))
    assert all(np.array_equal(by_id[e], v) for e, v in zip(ids, vec, strict=True))
    assert table.shard_states() == {0: "committed"} and table.shard_workers() == {0: "fresh"}


def test_a_uniform_sample_is_seeded_distinct_and_waits_for_open_shards(tmp_path):
    table = GradientStore(tmp_path / "g").table("ckpt" * 8, "cfg1", LAYOUT, "float32", {"k": 1})
    ids, docs, provs, codes, vec = rows(300)
    for shard in range(3):
        with table.writer(shard) as w:
            s = slice(shard * 100, (shard + 1) * 100)
            w.add(ids[s], docs[s], provs[s], codes[s], vec[s])
    every, total = table.sample(1000)
    assert total == 300 and sorted(every.example_ids) == sorted(ids)
    part, total = table.sample(50, seed=7)
    assert total == 300 and len(set(part.example_ids)) == 50
    by_id = dict(zip(ids, vec, strict=True))
    for e, v in zip(part.example_ids, part.vectors.numpy(), strict=True):
        assert np.array_equal(v, by_id[e])  # each sampled row is the stored row, not a neighbour's
    assert table.sample(50, seed=7)[0].example_ids == part.example_ids
    assert table.sample(50, seed=8)[0].example_ids != part.example_ids
    # An open shard's rows may be in the dataset but no reader sees them: no positions to draw from.
    with pytest.raises(RuntimeError, match="killed"), table.writer(3) as w:
        w.add(*rows(5, start=300))
        assert table.sample(50) is None
        raise RuntimeError("killed")
