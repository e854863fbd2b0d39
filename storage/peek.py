"""Read-only peeks through pylance alone: LanceDB's import (~1.5 s, its REST namespace client) is
what a command with nothing to do would otherwise spend most of its start-up on."""

from __future__ import annotations

from pathlib import Path

from storage.objectstore import lance_storage_options


def pending_query_count(uri: str | Path) -> int:
    """Queries with status ``pending`` in the query store at ``uri`` (0 when it has none yet)."""
    import lance

    uri = str(uri).rstrip("/")
    try:
        dataset = lance.dataset(f"{uri}/queries.lance", storage_options=lance_storage_options(uri))
    except ValueError as exc:  # pylance's "Dataset at path ... was not found"
        if "not found" in str(exc).lower():
            return 0
        raise
    return dataset.count_rows(filter="status = 'pending'")
