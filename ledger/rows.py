"""Writing rows: batched inserts, insert-or-ignore, and the lock every writer takes first."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

CHUNK = 5000  # rows per executemany: bounded memory, few round trips


def dialect_insert(conn: Connection | Session, model):
    """``INSERT`` of the connection's dialect (for ``ON CONFLICT`` clauses)."""
    dialect = conn.dialect if isinstance(conn, Connection) else conn.get_bind().dialect
    return (postgresql if dialect.name == "postgresql" else sqlite).insert(model.__table__)


def insert_ignore(conn: Connection | Session, model, rows: list[dict], keys: Sequence[str]) -> None:
    """Insert ``rows``, skipping those whose ``keys`` already exist."""
    if rows:
        stmt = dialect_insert(conn, model).on_conflict_do_nothing(index_elements=list(keys))
        for start in range(0, len(rows), CHUNK):
            conn.execute(stmt, rows[start : start + CHUNK])


def append(conn: Connection, model, rows: list[dict]) -> None:
    for start in range(0, len(rows), CHUNK):
        conn.execute(insert(model.__table__), rows[start : start + CHUNK])


def lock(conn: Connection) -> None:
    """Serialise writers: the first statement of the transaction takes the ledger's lock row
    (a row lock on PostgreSQL; on SQLite the write lock, as ``BEGIN IMMEDIATE`` would)."""
    conn.execute(text("UPDATE ledger_lock SET n = n + 1 WHERE lock_id = 1"))
