"""dataworth ledger: the provider credit ledger (SQLModel over SQLite or PostgreSQL).

- :func:`open_ledger` (``DATAWORTH_DB_URL`` or ``$DATAWORTH_HOME/ledger.db``; Alembic upgrades).
- :func:`ensure_providers`, :func:`withdraw_provider`, :func:`register_checkpoint`.
- :func:`post_run` (:class:`RunRecord` of :class:`QueryResult` with :class:`TopKEntry` lists) —
  one transaction, idempotent; :func:`reverse_run`; :func:`statement`.
- Policies (:mod:`ledger.policies`): ``topk_share`` (default), ``positive_share``,
  ``fallback_pro_rata``; exact micro-unit amounts, largest-remainder rounding.
- One live credit per query (``query_credit``, database-enforced): :func:`credited_queries`;
  :class:`QueryAlreadyCreditedError`. Every table behind a credit is append-only (triggers) and
  hash-chained: :func:`verify_ledger`.
- Receipts: prompts, responses, document excerpts, per-checkpoint ranks and scores, lexical
  evidence, measured per-checkpoint splits, run metrics; :func:`set_provider` (names, metadata).
- Views (:data:`VIEWS`, typed reads with :func:`read_view`): ``v_provider``,
  ``v_provider_credit_daily``, ``v_provider_credit_by_checkpoint``, ``v_query_provider_credit``,
  ``v_provider_top_documents``, ``v_run_summary``, ``v_query_receipt``, ``v_query_evidence``,
  ``v_provider_summary``, ``v_run_health``. Read side for the CLI/dashboard: :mod:`ledger.read`.

Names load lazily (PEP 562): ``import ledger.policies`` does not load SQLAlchemy or SQLModel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from valuation.lazy import lazy_names

_EXPORTS: dict[str, str] = {
    "attributions": "ledger.read",
    "Checkpoint": "ledger.models",
    "credited_queries": "ledger.query_credit",
    "credits": "ledger.read",
    "current_revision": "ledger.db",
    "database_url": "ledger.db",
    "ensure_providers": "ledger.registry",
    "HEAD": "ledger.db",
    "largest_remainder": "ledger.policies",
    "LedgerEntry": "ledger.models",
    "LedgerError": "ledger.errors",
    "live_credits": "ledger.query_credit",
    "make_engine": "ledger.db",
    "MICROS": "ledger.units",
    "open_ledger": "ledger.db",
    "POLICIES": "ledger.policies",
    "PolicyInputError": "ledger.errors",
    "post_run": "ledger.posting",
    "PostReport": "ledger.posting",
    "Provider": "ledger.models",
    "ProviderScore": "ledger.models",
    "query_receipt": "ledger.read",
    "QueryAlreadyCreditedError": "ledger.errors",
    "QueryAttribution": "ledger.models",
    "QueryBatch": "ledger.models",
    "QueryProviderScore": "ledger.models",
    "QueryResult": "ledger.policies",
    "read_view": "ledger.views",
    "register_checkpoint": "ledger.registry",
    "reverse_run": "ledger.posting",
    "RunCheckpoint": "ledger.models",
    "RunCheckpointRef": "ledger.posting",
    "RunRecord": "ledger.posting",
    "RunReversedError": "ledger.errors",
    "runs": "ledger.read",
    "set_provider": "ledger.registry",
    "split_by_checkpoint": "ledger.policies",
    "split_query": "ledger.policies",
    "Statement": "ledger.statement",
    "statement": "ledger.statement",
    "to_micros": "ledger.policies",
    "TopKEntry": "ledger.policies",
    "UnknownProviderError": "ledger.errors",
    "UnknownQueryError": "ledger.errors",
    "UnknownRunError": "ledger.errors",
    "UnknownViewError": "ledger.errors",
    "upgrade": "ledger.db",
    "ValuationRun": "ledger.models",
    "verify_ledger": "ledger.chain",
    "VerifyReport": "ledger.chain",
    "VIEW_TYPES": "ledger.views",
    "VIEWS": "ledger.views",
    "withdraw_provider": "ledger.registry",
}

__all__ = [
    "HEAD",
    "MICROS",
    "POLICIES",
    "VIEWS",
    "VIEW_TYPES",
    "Checkpoint",
    "LedgerEntry",
    "LedgerError",
    "PolicyInputError",
    "PostReport",
    "Provider",
    "ProviderScore",
    "QueryAlreadyCreditedError",
    "QueryAttribution",
    "QueryBatch",
    "QueryProviderScore",
    "QueryResult",
    "RunCheckpoint",
    "RunCheckpointRef",
    "RunRecord",
    "RunReversedError",
    "Statement",
    "TopKEntry",
    "UnknownProviderError",
    "UnknownQueryError",
    "UnknownRunError",
    "UnknownViewError",
    "ValuationRun",
    "VerifyReport",
    "attributions",
    "credited_queries",
    "credits",
    "current_revision",
    "database_url",
    "ensure_providers",
    "largest_remainder",
    "live_credits",
    "make_engine",
    "open_ledger",
    "post_run",
    "query_receipt",
    "read_view",
    "register_checkpoint",
    "reverse_run",
    "runs",
    "set_provider",
    "split_by_checkpoint",
    "split_query",
    "statement",
    "to_micros",
    "upgrade",
    "verify_ledger",
    "withdraw_provider",
]
__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # names for type checkers and IDEs
    from ledger.chain import VerifyReport, verify_ledger
    from ledger.db import HEAD, current_revision, database_url, make_engine, open_ledger, upgrade
    from ledger.errors import (
        LedgerError,
        PolicyInputError,
        QueryAlreadyCreditedError,
        RunReversedError,
        UnknownProviderError,
        UnknownQueryError,
        UnknownRunError,
        UnknownViewError,
    )
    from ledger.models import (
        Checkpoint,
        LedgerEntry,
        Provider,
        ProviderScore,
        QueryAttribution,
        QueryBatch,
        QueryProviderScore,
        RunCheckpoint,
        ValuationRun,
    )
    from ledger.policies import (
        POLICIES,
        QueryResult,
        TopKEntry,
        largest_remainder,
        split_by_checkpoint,
        split_query,
        to_micros,
    )
    from ledger.posting import PostReport, RunCheckpointRef, RunRecord, post_run, reverse_run
    from ledger.query_credit import credited_queries, live_credits
    from ledger.read import attributions, credits, query_receipt, runs
    from ledger.registry import ensure_providers, register_checkpoint, set_provider, withdraw_provider
    from ledger.statement import Statement, statement
    from ledger.units import MICROS
    from ledger.views import VIEW_TYPES, VIEWS, read_view
