"""Fault injection with real processes: ``dataworth value`` and ``dataworth checkpoint add`` are
SIGKILLed at named failpoints and at random moments, new queries and a new checkpoint arrive in
between; afterwards every query is credited exactly once and every table holds one row per example."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from flows.app import App
from flows.checkpoint.context import CheckpointContext
from flows.checkpoint.register import register
from flows.config import load_settings
from flows.pipeline import build_checkpoint

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
VALUE_POINTS = ["scoring", "before-post", "after-post", "after-mark", None]
# Every failpoint once and a random kill or two per run in CI (a trial is one `dataworth value`
# process, ~10 s); DATAWORTH_FAULT_TRIALS=20 (or more) for a deeper run.
TRIALS = int(os.environ.get("DATAWORTH_FAULT_TRIALS", "6"))


def spawn(home: Path, db_url: str | None, *args: str, failpoint: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "DATAWORTH_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    env.pop("DATAWORTH_FAILPOINT", None)
    if db_url:
        env["DATAWORTH_DB_URL"] = db_url
    if failpoint:
        env["DATAWORTH_FAILPOINT"] = failpoint
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, kill_after: float | None = None, timeout: float = 600) -> int:
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.kill()
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode in (0, -9), err  # completed, or killed: never a failure of its own
    return proc.returncode


def make_home(tmp_path: Path, world: dict, db_url: str | None):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dataworth.toml").write_text(
        "k_in = 4\nk_out = 4\nnum_shards = 2\nbatch_size = 8\nmax_length = 48\nfit_examples = 32\n"
    )
    overrides = {"db_url": db_url} if db_url else {}
    os.environ["DATAWORTH_HOME"] = str(home)
    try:
        settings = load_settings(**overrides)
    finally:
        os.environ.pop("DATAWORTH_HOME")
    return home, App.of(settings)


def add_queries(app: App, tmp_path: Path, world: dict, n: int) -> list[dict]:
    base = [json.loads(line) for line in world["queries"].read_text().splitlines()]
    rows = []
    for i in range(n):
        q = dict(base[i % len(base)])
        q["query_id"] = f"q-{uuid.uuid4().hex[:8]}"
        q["value"] = str(1 + (i % 3))
        rows.append(q)
    path = tmp_path / f"{rows[0]['query_id']}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    app.queries.add_file(path, "tiny")
    return rows


def credited_exactly_once(app: App, expected: dict[str, str]) -> None:
    with app.ledger.connect() as conn:
        per_query = dict(
            conn.execute(text("SELECT query_id, SUM(amount_micros) FROM ledger_entry GROUP BY query_id")).all()
        )
        runs_per_query = dict(
            conn.execute(
                text(
                    "SELECT query_id, COUNT(DISTINCT run_id) FROM ledger_entry WHERE kind = 'credit' GROUP BY query_id"
                )
            ).all()
        )
    doubled = [q for q, n in runs_per_query.items() if n > 1]
    lost = [q for q in expected if q not in per_query]
    wrong = {q: per_query[q] for q in expected if q in per_query and per_query[q] != int(expected[q]) * 1_000_000}
    assert (doubled, lost, wrong) == ([], [], {})
    assert set(per_query) == set(expected)
    statuses = {r["query_id"]: r["status"] for r in app.queries.with_status(None).to_pylist()}
    assert set(statuses.values()) == {"valued"}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_value_killed_anywhere_credits_every_query_exactly_once(tmp_path, world, backend, request):
    db_url = None
    if backend == "postgresql":
        db_url = request.getfixturevalue("postgres").create_database(f"faults_{uuid.uuid4().hex[:8]}")
    home, app = make_home(tmp_path, world, db_url)
    from flows.ingest import ingest

    ingest(app, world["corpus"])
    ck = register(app, world["checkpoints"][0], "tiny", 0)
    build_checkpoint(CheckpointContext(app, ck.checkpoint_id))
    rng = random.Random(7)
    expected: dict[str, str] = {}
    outcomes = {"killed": 0, "completed": 0}
    for trial in range(TRIALS):
        for q in add_queries(app, tmp_path, world, rng.randint(1, 3)):
            expected[q["query_id"]] = q["value"]
        if trial == TRIALS // 2:  # a new checkpoint of the lineage arrives mid-way
            ck2 = register(app, world["checkpoints"][1], "tiny", 1)
            build_checkpoint(CheckpointContext(app, ck2.checkpoint_id))
        point = VALUE_POINTS[trial % len(VALUE_POINTS)]
        proc = spawn(home, db_url, "value", failpoint=point)
        kill_after = None if point else rng.uniform(1.0, 12.0)  # a random moment: imports, scoring, posting
        code = finish(proc, kill_after)
        outcomes["killed" if code == -9 else "completed"] += 1
    assert finish(spawn(home, db_url, "value")) == 0
    assert outcomes["killed"] >= TRIALS // 2
    credited_exactly_once(app, expected)


def test_checkpoint_add_killed_anywhere_leaves_one_row_per_example(tmp_path, world):
    home, app = make_home(tmp_path, world, None)
    from flows.ingest import ingest

    ingest(app, world["corpus"])
    rng = random.Random(11)
    directory = str(world["checkpoints"][0])
    for trial in range(max(8, TRIALS // 2)):
        point = ["logging:1", "logging:3", "logging:5", None][trial % 4]
        proc = spawn(home, None, "checkpoint", "add", directory, "--lineage", "tiny", "--step", "0", failpoint=point)
        finish(proc, None if point else rng.uniform(1.0, 15.0))
        if trial == 5:  # new documents arrive: the pinned corpus version of the checkpoint stays
            extra = tmp_path / "extra.jsonl"
            extra.write_text(json.dumps({"doc_id": "late-1", "provider_id": "late", "text": "a late document"}) + "\n")
            ingest(app, extra)
    assert finish(spawn(home, None, "checkpoint", "add", directory, "--lineage", "tiny", "--step", "0")) == 0
    [row] = app.checkpoints()
    ctx = CheckpointContext(app, row.checkpoint_id)
    expected = sorted(
        e
        for b in app.corpus.iter_examples(ctx.tokenizer_key, ctx.corpus_version, columns=["example_id"])
        for e in b.column("example_id").to_pylist()
    )
    got = sorted(e for c in ctx.table().read() for e in c.example_ids)
    assert got == expected and ctx.finalized
    assert not any(e.startswith("late-1") for e in got) or ctx.corpus_version > 1
