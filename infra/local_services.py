"""Real services on loopback for tests and local trials: a Prefect server, process workers, and an
S3-compatible object store (moto's standalone server).

    with PrefectServer(database_url=pg.url("prefect", driver="asyncpg")) as server:
        env = server.env()                       # PREFECT_API_URL=http://127.0.0.1:PORT/api ...
        with ProcessWorker("dataworth", "w1", env) as w1: ...
        w1.kill()                                # SIGKILL the worker and every flow run it started
    with S3Server() as s3: s3.env()              # AWS_ENDPOINT_URL=http://127.0.0.1:PORT ...

Each logs to a file under its own temporary directory (``.log``), shown when it fails to start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from infra.localpg import free_port

PREFECT = [sys.executable, "-m", "prefect"]


def _quiet_env(home: Path) -> dict[str, str]:
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }


def wait_for(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    """Poll ``predicate`` until true; a TimeoutError naming ``what`` (and the log's tail) after ``timeout`` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"waited {timeout:.0f} s for {what}\n{tail}")


class PrefectServer:
    """``prefect server start`` on 127.0.0.1 (database: a PostgreSQL URL, or SQLite by default)."""

    def __init__(self, database_url: str | None = None, startup_timeout: float = 180) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dataworth-prefect-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.database_url = database_url
        self.startup_timeout = startup_timeout
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        """What a client or worker needs to talk to this server."""
        return {**_quiet_env(self.dir / "client"), "PREFECT_API_URL": self.url}

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def __enter__(self) -> PrefectServer:
        env = {**os.environ, **_quiet_env(self.dir / "server")}
        env.pop("PREFECT_API_URL", None)
        if self.database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database_url
        cmd = [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_for(
            lambda: self.healthy() or self.proc.poll() is not None, self.startup_timeout, "prefect server", self.log
        )
        if self.proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {self.proc.returncode}\n{self.log.read_text()[-3000:]}")
        return self

    def __exit__(self, *exc) -> None:
        _stop(self.proc)


class ProcessWorker:
    """``prefect worker start --pool POOL --type process`` named ``name``; flow runs it starts get
    ``DATAWORTH_WORKER=name`` (recorded with each shard they commit)."""

    def __init__(
        self, pool: str, name: str, env: dict[str, str], cwd: Path | None = None, limit: int | None = None
    ) -> None:
        self.pool, self.name, self.limit = pool, name, limit
        self.env = {**os.environ, **env, "DATAWORTH_WORKER": name}
        self.cwd = cwd
        self.log = Path(tempfile.mkdtemp(prefix=f"dataworth-worker-{name}-")) / "worker.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ProcessWorker:
        cmd = [*PREFECT, "worker", "start", "--pool", self.pool, "--type", "process", "--name", self.name]
        if self.limit:
            cmd += ["--limit", str(self.limit)]
        self.proc = subprocess.Popen(
            cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes its flow runs with it
        )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """What a machine dying does: SIGKILL to the worker and every flow-run process it started."""
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __exit__(self, *exc) -> None:
        _stop(self.proc)


class S3Server:
    """moto's standalone S3 on 127.0.0.1 with one bucket; ``env()`` gives the standard AWS variables."""

    def __init__(self, bucket: str = "dataworth") -> None:
        self.bucket = bucket
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkdtemp(prefix="dataworth-s3-")) / "moto.log"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def __enter__(self) -> S3Server:
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            try:
                urllib.request.urlopen(self.endpoint, timeout=2).close()
                return True
            except OSError:
                return False

        wait_for(up, 60, "moto S3 server", self.log)
        req = urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="PUT")
        urllib.request.urlopen(req, timeout=10).close()  # moto accepts unsigned requests
        return self

    def __exit__(self, *exc) -> None:
        _stop(self.proc)


def _stop(proc: subprocess.Popen | None, grace: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
