"""Opening the ledger: URL from the environment, SQLite pragmas, schema upgrades."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD = "0004"


def dataworth_home() -> Path:
    return Path(os.environ.get("DATAWORTH_HOME", ".dataworth"))


def database_url() -> str:
    """``DATAWORTH_DB_URL``, else a SQLite file ``$DATAWORTH_HOME/ledger.db``."""
    url = os.environ.get("DATAWORTH_DB_URL")
    if url:
        return url
    home = dataworth_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(home / 'ledger.db').resolve()}"


def make_engine(url: str | None = None) -> Engine:
    url = url or database_url()
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_pre_ping=True)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; data is kept (migrations only add)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def open_ledger(url: str | None = None) -> Engine:
    """An engine on an up-to-date ledger (created or upgraded as needed)."""
    engine = make_engine(url)
    if current_revision(engine) != HEAD:
        upgrade(engine)
    return engine
