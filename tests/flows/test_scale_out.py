"""Scale-out on real engines (``make test-integration``; CI runs it too).

A real ``prefect server`` on loopback with its database on a real PostgreSQL, a process work pool
and two ``prefect worker`` processes; ``dataworth deploy``, ``ingest``, ``checkpoint add`` (whose
event triggers ``on_new_checkpoint``) and ``valuation_cycle`` run as a user runs them, through the
CLI, with the ledger on PostgreSQL. Each cluster run is compared with a single-process run of the
same steps: the same vector per example, the same Fisher (to rounding), the same ledger entries:
once with the stores on an S3-compatible object store (moto's standalone server), where the store
URI is all that changes, and once on local disk with a worker killed mid-run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from flows.app import App
from flows.checkpoint.context import CheckpointContext
from flows.checkpoint.log import fisher_name
from flows.checkpoint.register import register
from flows.config import load_settings
from flows.ingest import ingest
from flows.pipeline import build_checkpoint, valuation_cycle
from infra.local_services import wait_for
from valuation import ProjectedFisher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
POOL = "dataworth-it"
NUM_SHARDS = 6
VALUATION = {"k_in": 4, "k_out": 4, "batch_size": 8, "max_length": 48, "fit_examples": 32}


@pytest.fixture(scope="module")
def cluster():
    from infra.local_services import PrefectServer
    from infra.localpg import LocalPostgres

    with LocalPostgres() as pg:
        pg.create_database("prefect")
        with PrefectServer(pg.url("prefect", driver="asyncpg")) as server:
            yield {"pg": pg, "server": server}


def dataworth(env: dict, *args: str, timeout: float = 600) -> str:
    """Run the CLI as a user does, in its own process; its output (raises on failure)."""
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise AssertionError(f"dataworth {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return " ".join(out.stdout.split())  # rich wraps lines at the terminal width


def write_config(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    lines = [f"{k} = {v}" for k, v in VALUATION.items()] + [f"num_shards = {NUM_SHARDS}"]
    (home / "dataworth.toml").write_text("\n".join(lines) + "\n")


def snapshot(settings, checkpoint_id: str) -> dict:
    """Vectors by example id, the merged shard Fishers, the ledger entries."""
    from sqlalchemy import text

    ctx = CheckpointContext(App.of(settings), checkpoint_id)
    table = ctx.table()
    vectors: dict[str, np.ndarray] = {}
    for chunk in table.read():
        for e, v in zip(chunk.example_ids, chunk.vectors.float().numpy(), strict=True):
            assert e not in vectors, f"example {e} stored twice"
            vectors[e] = v.copy()
    fisher = ProjectedFisher(table.layout)
    for shard in range(settings.num_shards):
        state, _ = ctx.load(fisher_name(shard, settings.num_shards))
        fisher.merge(ProjectedFisher.from_state_dict(table.layout, state))
    with ctx.app.ledger.connect() as c:
        entries = c.execute(
            text("SELECT provider_id, query_id, amount_micros, kind FROM ledger_entry ORDER BY provider_id, query_id")
        ).all()
    return {
        "rows": table.count_rows(),
        "vectors": vectors,
        "fisher": {name: fisher.matrix(name) for name, *_ in table.layout},
        "entries": [tuple(r) for r in entries],
        "workers": table.shard_workers(),
    }


@pytest.fixture(scope="module")
def single_process(world, tmp_path_factory) -> dict:
    """The reference: the same steps one after another in this process (SQLite ledger, local store)."""
    home = tmp_path_factory.mktemp("single")
    s = load_settings(home=str(home), num_shards=NUM_SHARDS, **VALUATION)
    app = App.of(s)
    ingest(app, world["corpus"])
    ck = register(app, world["checkpoints"][-1], "default", 1).checkpoint_id
    build_checkpoint(CheckpointContext(app, ck))
    app.queries.add_file(world["queries"], "default")
    valuation_cycle(app)
    return {"checkpoint": ck, **snapshot(s, ck)}


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def descendants(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        for kid in children(todo.pop()):
            if kid not in out:
                out.add(kid)
                todo.append(kid)
    return out


def flow_run_pids(env: dict, flow_name: str) -> list[int]:
    """Process ids of the running flow runs of ``flow_name`` (their ``infrastructure_pid``)."""
    code = (
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.filters import FlowFilter, FlowFilterName\n"
        "with get_client(sync_client=True) as c:\n"
        f"    runs = c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[{flow_name!r}])))\n"
        "    print(' '.join(str(r.infrastructure_pid).rsplit(':', 1)[-1] for r in runs"
        " if r.infrastructure_pid and r.state and r.state.is_running()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return [int(p) for p in out.stdout.split() if p.isdigit()]


def run_on_cluster(cluster, world, tmp_path: Path, db: str, store_env: dict, kill_one: bool = False) -> dict:
    from infra.local_services import ProcessWorker

    server, pg = cluster["server"], cluster["pg"]
    home = tmp_path / "home"
    write_config(home)
    env = {
        **os.environ,
        **server.env(),
        **store_env,
        "DATAWORTH_HOME": str(home),
        "DATAWORTH_DB_URL": pg.create_database(db),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PYTHONPATH": str(REPO),
    }
    pool = f"{POOL}-{db}"
    dataworth(env, "ingest", str(world["corpus"]))
    dataworth(env, "deploy", "--pool", pool, "--gpu-slots", "4", "--heartbeat-timeout", "60")
    assert deployed_objects(env, pool) == {"gpu_limit": 4, "pool_type": "process", "zombie_automation": 1}
    # Each worker takes at most 2 runs at once, so both get shards.
    workers = [ProcessWorker(pool, f"worker-{i}", env, REPO, limit=2) for i in (1, 2)]
    for w in workers:
        w.__enter__()
    try:
        started = time.time()
        out = dataworth(env, "checkpoint", "add", str(world["checkpoints"][-1]), "--step", "1")
        assert "started by event dataworth.checkpoint.registered" in out, out
        with environ(env):
            settings = load_settings()
        killed = None
        if kill_one:
            killed = kill_a_shard_worker(workers, env)
            # As an operator (or an autoscaler) would: a new worker replaces the dead one. Without it
            # the survivor, one of whose slots holds the parent run, logs the remaining shards one
            # at a time, each a fresh process: that, not a stuck run, is what overran 600 s here.
            replacement = ProcessWorker(pool, "worker-3", env, REPO, limit=2)
            replacement.__enter__()
            workers.append(replacement)
        with environ(env):
            wait_while_progressing(settings, "on_new_checkpoint (event-triggered) to finalize the checkpoint")
        checkpoint_seconds = time.time() - started
        dataworth(env, "query", "add", str(world["queries"]))
        cycle = ["deployment", "run", "valuation_cycle/dataworth-valuation-cycle", "--watch"]
        out = subprocess.run(
            [sys.executable, "-m", "prefect", *cycle], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
        )
        assert out.returncode == 0, out.stdout + out.stderr
        with environ(env):
            ck = App.of(settings).checkpoints()[-1].checkpoint_id
            snap = {"checkpoint": ck, "seconds": checkpoint_seconds, "killed": killed, **snapshot(settings, ck)}
        snap["shard_runs"] = shard_run_states(env, pool)
        print(f"\n{db}: checkpoint add → finalized in {checkpoint_seconds:.1f} s; shard runs {snap['shard_runs']}")
        return snap
    finally:
        for w in workers:
            w.__exit__(None, None, None)


@contextlib.contextmanager
def environ(env: dict):
    """This process's environment as the CLI's (the object store's credentials, the ledger URL)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _progress(settings) -> tuple[bool, int]:
    """(finalized, committed shards) of the home's checkpoint, as far as can be read now."""
    try:
        app = App.of(settings)
        for c in app.checkpoints():
            ctx = CheckpointContext(app, c.checkpoint_id)
            if ctx.finalized:
                return True, NUM_SHARDS
            return False, len(ctx.table().committed_shards()) if ctx.has_table() else 0
    except Exception:
        pass
    return False, 0


def wait_while_progressing(settings, what: str, stall: float = 420, cap: float = 1500) -> None:
    """Wait for the checkpoint to finalize; fail when no shard committed for ``stall`` seconds
    (a stuck run), not after a fixed time (a busy machine makes every shard process slower)."""
    start = last_change = time.time()
    seen = -1
    while time.time() - start < cap:
        done, shards = _progress(settings)
        if done:
            return
        if shards != seen:
            seen, last_change = shards, time.time()
        if time.time() - last_change > stall:
            raise AssertionError(f"waited for {what}: no shard committed for {stall:.0f} s ({seen} committed)")
        time.sleep(2)
    raise AssertionError(f"waited {cap:.0f} s for {what} ({seen} shards committed)")


def kill_a_shard_worker(workers, env: dict) -> str:
    """SIGKILL a worker that runs a shard and not the parent flow run.

    The parent (on_new_checkpoint, which resubmits crashed shards) is found by its process id as
    the server reports it, not guessed from which worker has children first: a worker killed
    with the parent takes the resubmitter with it, and no shard is ever retried (this test then
    waited until its time-out). Killing the parent is a different failure (re-run the flow).
    """
    holder: list = []

    def parent_found() -> bool:
        for pid in flow_run_pids(env, "on_new_checkpoint"):
            holder[:] = [w for w in workers if pid in descendants(w.proc.pid)]
            if holder:
                return True
        return False

    wait_for(parent_found, 300, "a worker to start on_new_checkpoint")
    victim = next(w for w in workers if w is not holder[0])

    def runs_a_shard() -> bool:
        shard_pids = set(flow_run_pids(env, "log_shard"))
        return bool(shard_pids & descendants(victim.proc.pid))

    wait_for(runs_a_shard, 300, f"{victim.name} to start a shard run")
    time.sleep(3)  # inside the shard run: imports, model load, logging
    victim.kill()
    return victim.name


def deployed_objects(env: dict, pool: str) -> dict:
    """What ``dataworth deploy`` left on the server besides the deployments."""
    code = (
        "import json\n"
        "from prefect.client.orchestration import get_client\n"
        "from flows.deploy import ZOMBIE_AUTOMATION\n"
        "with get_client(sync_client=True) as c:\n"
        f"    pool = c.read_work_pool({pool!r})\n"
        "    print(json.dumps({'gpu_limit': c.read_concurrency_limit_by_tag('gpu').concurrency_limit,\n"
        "                      'pool_type': pool.type,\n"
        "                      'zombie_automation': len(c.read_automations_by_name(ZOMBIE_AUTOMATION))}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def shard_run_states(env: dict, pool: str) -> list[str]:
    """Final state of every shard run on ``pool`` (read from the server's API)."""
    code = (
        "from prefect.client.orchestration import get_client\n"
        "with get_client(sync_client=True) as c:\n"
        "    runs = c.read_flow_runs(limit=200)\n"
        f"    runs = [r for r in runs if r.work_pool_name == {pool!r}"
        " and any(t.startswith('shard-') for t in r.tags)]\n"
        "    print(' '.join(r.state.type.value for r in runs))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def assert_same_as_single_process(got: dict, ref: dict) -> None:
    assert got["checkpoint"] == ref["checkpoint"]  # content fingerprint: the same model
    assert got["rows"] == ref["rows"] == len(ref["vectors"])
    assert sorted(got["vectors"]) == sorted(ref["vectors"])  # exactly one row per example
    for e, v in ref["vectors"].items():
        np.testing.assert_array_equal(got["vectors"][e], v, err_msg=e)
    for name, m in ref["fisher"].items():
        torch.testing.assert_close(got["fisher"][name], m, rtol=1e-9, atol=1e-12)
    assert got["entries"] == ref["entries"] and len(ref["entries"]) > 0
    assert sorted(got["workers"]) == list(range(NUM_SHARDS))  # every shard ran on some worker


def test_a_worker_killed_mid_run(cluster, world, single_process, tmp_path):
    got = run_on_cluster(cluster, world, tmp_path, "ledger_kill", {}, kill_one=True)
    assert_same_as_single_process(got, single_process)
    assert got["killed"] in ("worker-1", "worker-2")
    # the zombie automation crashed the dead worker's run(s); each was resubmitted and completed
    crashed = got["shard_runs"].count("CRASHED")
    assert crashed >= 1 and got["shard_runs"].count("COMPLETED") == NUM_SHARDS, got["shard_runs"]


def test_cluster_run_on_s3_equals_single_process(cluster, world, single_process, tmp_path):
    """Two workers, stores on S3, ledger on PostgreSQL: the same rows, Fisher and credits as one
    process on local disk and SQLite (the local-store cluster run is the killed-worker test's)."""
    from infra.local_services import S3Server

    with S3Server() as s3:
        store = {**s3.env(), "DATAWORTH_STORE_URI": f"s3://{s3.bucket}/store"}
        got = run_on_cluster(cluster, world, tmp_path, "ledger_s3", store)
        assert_same_as_single_process(got, single_process)
        assert set(got["workers"].values()) == {"worker-1", "worker-2"}  # both workers ran shards
        assert got["shard_runs"] == ["COMPLETED"] * NUM_SHARDS
        import pyarrow.fs as pafs

        from storage.objectstore import filesystem

        with environ(s3.env()):
            fs, base = filesystem(f"s3://{s3.bucket}/store")
            keys = [i.path for i in fs.get_file_info(pafs.FileSelector(base, recursive=True))]
        assert any("/lance/gradients/" in k for k in keys) and any("/artifacts/" in k for k in keys)
        assert not (tmp_path / "home" / "lance").exists()  # nothing of the store on local disk


def test_prefect_yaml_deploys_the_same_deployments(cluster):
    """``prefect deploy --all`` with the repository's prefect.yaml (the declarative route)."""
    env = {**os.environ, **cluster["server"].env(), "DATAWORTH_SOURCE": str(REPO)}

    def prefect(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "prefect", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    prefect("work-pool", "create", "dataworth", "--type", "process", "--overwrite")
    prefect("automation", "create", "--from-file", "infra/automations.yaml")
    prefect("--no-prompt", "deploy", "--all")
    code = (
        "from prefect.client.orchestration import get_client\n"
        "from flows.deploy import DEPLOYMENTS, deployment_is_event_triggered\n"
        "with get_client(sync_client=True) as c:\n"
        "    for flow, name in DEPLOYMENTS.items():\n"
        "        d = c.read_deployment_by_name(f'{flow}/{name}')\n"
        "        print(flow, d.work_pool_name, d.path, len(d.schedules))\n"
        "    print('event-triggered', deployment_is_event_triggered())\n"
        "    print('automations', sorted(a.name for a in c.read_automations()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:3] == [
        "valuation_cycle dataworth None 1",
        "on_new_checkpoint dataworth None 0",
        "log_shard dataworth None 0",
    ], out.stdout
    assert "event-triggered True" in lines
    assert any("dataworth: crash flow runs without heartbeats" in line for line in lines)
    assert any("on checkpoint registered" in line or "dataworth-on-new-checkpoint" in line for line in lines)
