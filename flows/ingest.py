"""Ingest: a corpus file → a new corpus version (documents and providers; no tokenizer needed)."""

from __future__ import annotations

from pathlib import Path

from flows.app import App
from flows.progress import NULL, Reporter


def ingest(app: App, path: str | Path, reporter: Reporter = NULL):
    """Validated, deduplicated, idempotent; returns the :class:`storage.IngestReport`. Providers
    are registered in the ledger as they appear."""
    from ledger import ensure_providers

    progress = reporter.task(f"ingest {Path(path).name}", unit="documents")
    report = app.corpus.ingest(path, progress=progress.advance)
    progress.finish()
    ensure_providers(app.ledger, app.corpus.providers())
    return report
