"""A throwaway PostgreSQL server on 127.0.0.1 for tests and benchmarks.

    with LocalPostgres() as pg:
        url = pg.url("dataworth")   # postgresql+psycopg://postgres@127.0.0.1:PORT/dataworth

Installs Debian's ``postgresql`` with apt only when ``initdb``/``pg_ctl`` are missing; runs them
as the ``postgres`` user when root (initdb refuses root), in a temporary directory, with fsync off.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _find(binary: str) -> str | None:
    found = shutil.which(binary)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{binary}"))
    return candidates[-1] if candidates else None


def ensure_installed() -> tuple[str, str]:
    initdb, pg_ctl = _find("initdb"), _find("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env, capture_output=True)
    initdb, pg_ctl = _find("initdb"), _find("pg_ctl")
    if not (initdb and pg_ctl):
        raise RuntimeError("PostgreSQL installed but initdb/pg_ctl not found")
    return initdb, pg_ctl


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """Start on enter, stop and delete on exit."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = ensure_installed()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dataworth-pg-"))
        self.data = self.dir / "data"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True)

    def start(self) -> LocalPostgres:
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off -c max_connections=200"
        self._run(self.pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not start: {(self.dir / 'log').read_text()[-2000:]}")

    def stop(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, name: str, driver: str = "psycopg") -> str:
        """SQLAlchemy URL of database ``name`` (``driver="asyncpg"`` for the Prefect server)."""
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
