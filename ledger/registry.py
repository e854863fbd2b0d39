"""Providers and checkpoints: registration, withdrawal, display names and metadata (versioned)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Engine, text
from sqlmodel import Session

from ledger.errors import UnknownProviderError
from ledger.models import Checkpoint, Provider, ProviderInfo, utcnow
from ledger.rows import append, insert_ignore, lock


def ensure_providers(engine: Engine, provider_ids: Iterable[str]) -> None:
    """Create missing providers (active); existing ones are left as they are."""
    rows = [
        {"provider_id": p, "name": p, "status": "active", "created_at": utcnow()} for p in sorted(set(provider_ids))
    ]
    with Session(engine) as session:
        insert_ignore(session, Provider, rows, ["provider_id"])
        session.commit()


def withdraw_provider(engine: Engine, provider_id: str, at: datetime | None = None) -> None:
    with Session(engine) as session:
        provider = session.get(Provider, provider_id)
        if provider is None:
            raise UnknownProviderError(f"unknown provider {provider_id!r}")
        provider.status, provider.withdrawn_at = "withdrawn", at or utcnow()
        session.add(provider)
        session.commit()


def set_provider(engine: Engine, provider_id: str, name: str | None = None, metadata: dict | None = None) -> dict:
    """Append a new version of the provider's display name and metadata (created if missing).

    Fields left ``None`` keep their current value. Returns ``{"provider_id", "version", "name", "metadata"}``.
    """
    ensure_providers(engine, [provider_id])
    with engine.begin() as conn:
        lock(conn)
        last = conn.execute(
            text(
                "SELECT version, name, metadata FROM provider_info WHERE provider_id = :p ORDER BY version DESC LIMIT 1"
            ),
            {"p": provider_id},
        ).first()
        version = last[0] + 1 if last else 1
        current_name = last[1] if last else provider_id
        current_meta = json.loads(last[2]) if last else {}
        row = {
            "provider_id": provider_id,
            "version": version,
            "name": current_name if name is None else name,
            "metadata": json.dumps(current_meta if metadata is None else metadata, sort_keys=True, default=str),
            "created_at": utcnow(),
        }
        append(conn, ProviderInfo, [row])
    return {
        "provider_id": provider_id,
        "version": version,
        "name": row["name"],
        "metadata": json.loads(row["metadata"]),
    }


def register_checkpoint(
    engine: Engine, checkpoint_id: str, path: str = "", lineage: str = "default", step: int | None = None
) -> Checkpoint:
    """Idempotent: the same fingerprint registers once (first registration wins)."""
    row = {
        "checkpoint_id": checkpoint_id,
        "path": path,
        "lineage": lineage,
        "step": step,
        "registered_at": utcnow(),
    }
    with Session(engine) as session:
        insert_ignore(session, Checkpoint, [row], ["checkpoint_id"])
        session.commit()
        return session.get(Checkpoint, checkpoint_id)
