"""Real Prefect flow runs over real LanceDB and SQLite: the cycle, crashes, idempotency."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from sqlalchemy import text

from flows import flows
from flows.app import App
from flows.checkpoint.context import CheckpointContext
from flows.checkpoint.fit import gradient_loss, load_logra
from flows.checkpoint.log import pending_shards
from flows.config import Settings
from flows.credit import post_credits
from flows.errors import NotReadyError
from flows.scores import Valuation
from flows.valuate import checkpoint_set, value_lineage
from storage import QueryValidationError

pytestmark = pytest.mark.usefixtures("prefect_server")


def ledger_rows(settings, sql):
    with App.of(settings).ledger.connect() as c:
        return c.execute(text(sql)).all()


def ingest_and_add(settings, world) -> list[str]:
    sd = settings.to_params()
    flows.ingest_corpus(sd, str(world["corpus"]))
    return [flows.on_new_checkpoint(sd, str(p), "tiny", i) for i, p in enumerate(world["checkpoints"])]


def ctx_of(settings, checkpoint_id) -> CheckpointContext:
    return CheckpointContext(App.of(settings), checkpoint_id)


def example_ids(settings, checkpoint_id) -> list[str]:
    ctx = ctx_of(settings, checkpoint_id)
    return [
        e
        for b in ctx.app.corpus.iter_examples(ctx.tokenizer_key, ctx.corpus_version, columns=["example_id"])
        for e in b.column("example_id").to_pylist()
    ]


def table_ids(settings, checkpoint_id) -> list[str]:
    return [e for c in ctx_of(settings, checkpoint_id).table().read() for e in c.example_ids]


def queries_of(world) -> list[dict]:
    return [json.loads(line) for line in world["queries"].read_text().splitlines()]


def test_the_whole_cycle_posts_exact_credits(settings, world):
    ids = ingest_and_add(settings, world)
    assert len(set(ids)) == 2
    expected = sorted(example_ids(settings, ids[0]))
    for ck in ids:  # one row per example in each table; the two tables never share rows
        assert sorted(table_ids(settings, ck)) == expected
    tables = {ctx_of(settings, ck).table().name for ck in ids}
    assert len(tables) == 2
    App.of(settings).queries.add_file(world["queries"], "tiny")
    [result] = flows.valuation_cycle(settings.to_params())
    assert result["queries"] == 6 and result["entries"] > 0 and sorted(result["checkpoints"]) == sorted(ids)
    per_query = ledger_rows(settings, "SELECT query_id, SUM(amount_micros) FROM ledger_entry GROUP BY query_id")
    assert {q: m for q, m in per_query} == {q: 1_000_000 for q, _ in per_query} and len(per_query) == 6
    run = ledger_rows(settings, "SELECT checkpoints, queries, status FROM v_run_summary")
    assert run == [(2, 6, "posted")]
    # Value twice: nothing pending; re-posting the same valuation is a no-op.
    assert flows.valuation_cycle(settings.to_params()) == []
    val = Valuation.load(next((settings.home / "valuations").glob("*.json")))
    again = post_credits(App.of(settings), val)
    assert again.already_posted and again.entries_written == 0
    assert ledger_rows(settings, "SELECT COUNT(*) FROM ledger_entry")[0][0] == result["entries"]


def test_multi_checkpoint_scores_are_the_sum_of_single_checkpoint_scores(settings, world):
    ids = ingest_and_add(settings, world)
    qs, app = queries_of(world), App.of(settings)
    both = value_lineage(app, "tiny", checkpoint_set(app, "tiny", "all"), qs)
    singles = [value_lineage(app, "tiny", checkpoint_set(app, "tiny", [ck]), qs) for ck in ids]
    combined = both.combined()
    for qi, res in enumerate(combined):
        for provider, total in res.provider_scores.items():
            parts = sum(s.combined()[qi].provider_scores[provider] for s in singles)
            assert total == pytest.approx(parts, rel=1e-9, abs=1e-12)
    torch.testing.assert_close(
        both.per_checkpoint[0].group_sums + both.per_checkpoint[1].group_sums,
        singles[0].per_checkpoint[0].group_sums + singles[1].per_checkpoint[0].group_sums,
    )
    weighted = both.combined({ids[0]: 2.0, ids[1]: 0.5})
    p = combined[0].topk[0].provider_id
    want = 2.0 * singles[0].combined()[0].provider_scores[p] + 0.5 * singles[1].combined()[0].provider_scores[p]
    assert weighted[0].provider_scores[p] == pytest.approx(want, rel=1e-9)


def explicit_scores(settings, checkpoint_id: str, qs: list[dict]) -> tuple[torch.Tensor, list[str]]:
    """``(n_query, n_examples)`` float64 scores (mode ``if``) from the stored vectors, and each
    example's provider: the brute-force reference of one checkpoint's pass."""
    from valuation import Preconditioner, query_batch

    ctx = ctx_of(settings, checkpoint_id)
    logra, (_, tok) = load_logra(ctx), ctx.model()
    state, _ = ctx.load("preconditioner")
    pre = Preconditioner.from_state_dict(logra.layout, state).with_damping_ratio(settings.damping_ratio)
    batch = query_batch(
        [tok(q["prompt"], add_special_tokens=False)["input_ids"] for q in qs],
        [tok(q["response"], add_special_tokens=False)["input_ids"] for q in qs],
        tok.pad_token_id,
        settings.max_length,
    )
    q = pre(logra.gradients(batch, loss_fn=gradient_loss(settings)).double())  # the table's loss
    chunks = list(ctx.table().read())
    g = torch.cat([c.vectors.double() for c in chunks])
    return q @ g.T, [p for c in chunks for p in c.provider_ids]


def test_normalised_checkpoint_set_gives_each_checkpoint_an_equal_say(settings, world):
    ids = ingest_and_add(settings, world)
    qs, app = queries_of(world), App.of(settings)
    both = value_lineage(app, "tiny", checkpoint_set(app, "tiny", "all"), qs)
    want: dict[tuple[int, str], float] = {}
    for ck, cs in zip(ids, both.per_checkpoint, strict=True):
        scores, providers = explicit_scores(settings, ck, qs)
        assert cs.examples == scores.shape[1]
        for qi in range(len(qs)):
            mean_abs = float(scores[qi].abs().mean())
            assert cs.mean_abs(qi) == pytest.approx(mean_abs, rel=1e-4)
            for j, p in enumerate(providers):
                want[qi, p] = want.get((qi, p), 0.0) + float(scores[qi, j]) / mean_abs
    got = both.combined(normalise=True)
    # Scores are float32 dot products (summed in float64): a provider sum that cancels to near
    # zero is exact only to float32 rounding of the largest sums, hence the absolute term.
    scale = max(abs(v) for v in want.values())
    for (qi, p), value in want.items():
        assert got[qi].provider_scores[p] == pytest.approx(value, rel=1e-4, abs=1e-6 * scale)
    # invariant to a checkpoint's overall scale; the raw sum is not
    cs = both.per_checkpoint[1]
    cs.group_sums, cs.group_positive = cs.group_sums * 10, cs.group_positive * 10
    cs.topk = [[(e, d, p, sc * 10) for e, d, p, sc in q] for q in cs.topk]
    rescaled = both.combined(normalise=True)
    p = got[0].topk[0].provider_id
    assert rescaled[0].provider_scores[p] == pytest.approx(got[0].provider_scores[p], rel=1e-9)
    assert both.combined()[0].provider_scores[p] != pytest.approx(got[0].provider_scores[p], rel=1e-3)
    assert round_trip(both).per_checkpoint[1].examples == cs.examples


def round_trip(val: Valuation) -> Valuation:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        return Valuation.load(val.save(Path(tmp) / "v.json"))


KILLER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    import storage.gradients as g
    from flows.app import App
    from flows.checkpoint.context import CheckpointContext
    from flows.checkpoint.log import log_shard
    from flows.config import Settings
    original = g.GradientTable.writer
    g.GradientTable.writer = lambda self, shard, batch_rows=8192: original(self, shard, batch_rows=4)
    add = g.ShardWriter.add
    def slow_add(self, *a, **k):
        add(self, *a, **k)
        time.sleep(0.3)
    g.ShardWriter.add = slow_add
    s = Settings.from_dict({settings!r})
    print("logging", flush=True)
    log_shard(CheckpointContext(App.of(s), {ck!r}), 1)
    """
)


def test_log_gradients_killed_midway_then_rerun_leaves_one_row_per_example(settings, world):
    sd = settings.to_params()
    flows.ingest_corpus(sd, str(world["corpus"]))
    ck = flows.register_checkpoint(sd, str(world["checkpoints"][0]), "tiny", 0)
    flows.fit_checkpoint(sd, ck)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLER.format(root=root, settings=sd, ck=ck)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "logging"
    deadline = time.time() + 120
    table = None
    while time.time() < deadline:
        try:
            table = ctx_of(settings, ck).table()
            if table.tbl.count_rows() >= 8:
                break
        except NotReadyError:
            pass
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert table is not None and table.tbl.count_rows() >= 8  # partial rows of shard 1 are on disk
    assert table.committed_shards() == []
    assert pending_shards(ctx_of(settings, ck)) == [0, 1]
    flows.log_gradients(sd, ck)
    ids = table_ids(settings, ck)
    assert sorted(ids) == sorted(example_ids(settings, ck)) and len(ids) == len(set(ids))
    assert flows.log_gradients(sd, ck) == 0  # nothing left to do


def test_a_malformed_query_file_is_rejected_and_nothing_is_posted(settings, world, tmp_path):
    ingest_and_add(settings, world)
    bad = tmp_path / "bad.jsonl"
    lines = world["queries"].read_text().splitlines()
    bad.write_text(lines[0] + "\n" + '{"query_id": "x", "prompt": "p"}\n')
    with pytest.raises(QueryValidationError, match="row 2, field 'response': missing"):
        App.of(settings).queries.add_file(bad, "tiny")
    assert flows.valuation_cycle(settings.to_params()) == []
    assert ledger_rows(settings, "SELECT COUNT(*) FROM ledger_entry")[0][0] == 0
    # The CLI says it in one line and exits non-zero, without a traceback.
    env = {**os.environ, "DATAWORTH_HOME": str(settings.home)}
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "query", "add", str(bad), "--lineage", "tiny"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2
    assert "row 2, field 'response': missing" in out.stderr and "Traceback" not in out.stderr


def test_no_password_reaches_prefect(settings, world):
    """Flow runs carry settings without credentials; the ledger URL is resolved where they run."""
    from prefect.client.orchestration import get_client

    secret = "s3cret-pw"
    url = f"sqlite:///{settings.home / 'ledger.db'}?password={secret}"  # a credential-bearing URL
    s = settings.replace(db_url=url)
    App.of(s)  # this process knows the URL; the run's parameters do not
    flows.ingest_corpus(s.to_params(), str(world["corpus"]))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
    assert runs and all(secret not in json.dumps(r.parameters, default=str) for r in runs)
    assert App.of(App.resolve_params(s.to_params())).settings.db_url == url


def test_two_lineages_never_credit_each_others_queries(settings, world):
    ids = ingest_and_add(settings, world)  # lineage "tiny"
    app = App.of(settings)
    other = [dict(q, query_id=f"other-{q['query_id']}") for q in queries_of(world)]
    path = world["queries"].parent / "other.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in other))
    app.queries.add_file(path, "other-model")  # a lineage with no checkpoint
    app.queries.add_file(world["queries"], "tiny")
    [run] = flows.valuation_cycle(settings.to_params())
    assert run["lineage"] == "tiny" and sorted(run["checkpoints"]) == sorted(ids)
    credited = {q for (q,) in ledger_rows(settings, "SELECT DISTINCT query_id FROM ledger_entry")}
    assert credited == {q["query_id"] for q in queries_of(world)}
    assert {r["query_id"] for r in app.queries.pending().to_pylist()} == {q["query_id"] for q in other}


def test_a_document_ingested_later_is_valued_by_later_checkpoints_only(settings, world, tmp_path):
    from flows.checkpoint.register import register
    from flows.ingest import ingest
    from flows.pipeline import build_checkpoint

    app = App.of(settings)
    ingest(app, world["corpus"])
    first = register(app, world["checkpoints"][0], "tiny", 0).checkpoint_id
    build_checkpoint(ctx_of(settings, first))
    late = tmp_path / "late.jsonl"
    late.write_text(json.dumps({"doc_id": "late-doc", "provider_id": "late-provider", "text": "the harbour"}) + "\n")
    assert ingest(app, late).version == 2
    second = register(app, world["checkpoints"][1], "tiny", 1).checkpoint_id
    build_checkpoint(ctx_of(settings, second))
    assert (ctx_of(settings, first).corpus_version, ctx_of(settings, second).corpus_version) == (1, 2)
    assert not any(e.startswith("late-doc") for e in table_ids(settings, first))
    assert any(e.startswith("late-doc") for e in table_ids(settings, second))
    assert sorted(table_ids(settings, second)) == sorted(example_ids(settings, second))


def test_changing_num_shards_is_refused_and_never_doubles_rows(settings, world):
    from flows.errors import ConfigurationError

    ids = ingest_and_add(settings, world)  # num_shards = 2
    before = table_ids(settings, ids[0])
    wider = settings.replace(num_shards=4)
    with pytest.raises(ConfigurationError, match="num_shards = 2; this run asks for num_shards = 4"):
        flows.log_gradients(wider.to_params(), ids[0])
    assert sorted(table_ids(settings, ids[0])) == sorted(before) and len(before) == len(set(before))


def test_a_changed_setting_names_what_the_checkpoint_was_logged_with(settings, world):
    from flows.errors import NotReadyError

    ids = ingest_and_add(settings, world)
    other = "float32" if settings.dtype == "float16" else "float16"
    changed = ctx_of(settings.replace(dtype=other), ids[0])
    assert not changed.has_table()
    with pytest.raises(NotReadyError, match=f"logged with dtype = '{settings.dtype}' \\(now '{other}'\\)"):
        changed.table()
    # value under the changed setting keeps the queries pending and says why
    from flows.pipeline import valuation_cycle

    app = App.of(settings.replace(dtype=other))
    app.queries.add_file(world["queries"], "tiny")
    result = valuation_cycle(app)
    assert not result.runs and f"dtype = '{settings.dtype}'" in result.waiting["tiny"]
    # A home logged at temperature 1 (the key leaves it out) upgraded to the default of 2.
    cold = ctx_of(settings.replace(temperature=1.0), ids[0])
    with pytest.raises(NotReadyError, match=f"temperature = {settings.temperature!r} \\(now 1.0\\)"):
        cold.table()


def test_a_run_reads_a_pinned_version_that_survives_optimize(settings, world):
    from datetime import timedelta

    ids = ingest_and_add(settings, world)
    app = App.of(settings)
    app.queries.add_file(world["queries"], "tiny")
    [run] = flows.valuation_cycle(settings.to_params())
    val = Valuation.load(next((settings.home / "valuations").glob("*.json")))
    cs = val.per_checkpoint[0]
    table = ctx_of(settings, cs.checkpoint_id).table()
    table.optimize(keep_versions_newer_than=timedelta(0))  # compaction + cleanup of every untagged version
    rows = sum(len(c) for c in table.read(version=cs.version))
    assert rows == cs.examples and cs.tag and run["run_id"] and ids


def test_runs_are_named_and_publish_artifacts(settings, world):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    ids = ingest_and_add(settings, world)
    App.of(settings).queries.add_file(world["queries"], "tiny")
    [run] = flows.valuation_cycle(settings.to_params())
    slug = "".join(c if c.isalnum() else "-" for c in run["run_id"].lower())
    with get_client(sync_client=True) as client:
        names = {r.name for r in client.read_flow_runs(limit=200)}
        keys = {
            a.key
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(
                        any_=[f"credits-{slug}", f"run-{slug}", f"coverage-{ids[0][:16]}", f"coverage-{ids[1][:16]}"]
                    )
                )
            )
        }
    assert {"on-new-checkpoint/tiny@0", "on-new-checkpoint/tiny@1"} <= names
    assert any(n.startswith("valuation-cycle/") for n in names)
    assert keys == {f"credits-{slug}", f"run-{slug}", f"coverage-{ids[0][:16]}", f"coverage-{ids[1][:16]}"}


def test_the_ledger_url_can_come_from_a_prefect_secret_block(settings):
    from prefect.blocks.system import Secret

    url = f"sqlite:///{settings.home / 'secret-ledger.db'}"
    Secret(value=url).save("dataworth-ledger-test", overwrite=True)
    s = Settings.build(**{**settings.to_params(), "db_secret_block": "dataworth-ledger-test"})
    assert s.ledger_url() == url and "db_url" not in s.to_params()
