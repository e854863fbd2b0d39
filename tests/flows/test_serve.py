"""`dataworth serve` against a real Prefect server; `checkpoint add` then triggers a deployment run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from flows.app import App
from flows.checkpoint.context import CheckpointContext
from flows.ingest import ingest

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_serve_then_checkpoint_add_runs_the_deployment(settings, world, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    ingest(App.of(settings), world["corpus"])
    (settings.home / "dataworth.toml").write_text(
        "k_in = 4\nk_out = 4\nnum_shards = 2\nbatch_size = 8\nmax_length = 48\nfit_examples = 32\n"
    )
    env = {
        **os.environ,
        "DATAWORTH_HOME": str(settings.home),
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_HOME": str(tmp_path / "prefect-cli"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--cron", "0 0 1 1 *"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with get_client(sync_client=True) as client:
            deadline = time.time() + 120
            names = set()
            while time.time() < deadline and len(names) < 2:
                names = {d.name for d in client.read_deployments()}
                time.sleep(1)
            assert {"dataworth-valuation-cycle", "dataworth-on-new-checkpoint"} <= names
            cycle = client.read_deployment_by_name("valuation_cycle/dataworth-valuation-cycle")
            assert cycle.schedules and cycle.schedules[0].schedule.cron == "0 0 1 1 *"
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "flows.cli",
                    "checkpoint",
                    "add",
                    str(world["checkpoints"][0]),
                    "--lineage",
                    "tiny",
                    "--step",
                    "0",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert out.returncode == 0, out.stderr
            found = re.search(r"flow run: ([0-9a-f-]{36}) \(deployment run\)", " ".join(out.stdout.split()))
            assert found, out.stdout
            run_id = found.group(1)
            deadline = time.time() + 240
            while time.time() < deadline:
                state = client.read_flow_run(run_id).state
                if state is not None and state.is_final():
                    break
                time.sleep(1)
            assert state.is_completed(), state
    finally:
        server.terminate()
        server.wait(30)
    app = App.of(settings)
    [ck] = app.checkpoints()
    assert CheckpointContext(app, ck.checkpoint_id).finalized
