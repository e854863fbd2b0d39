"""dataworth ledger: the provider credit ledger (SQLModel over SQLite or PostgreSQL).

- :func:`open_ledger` (``DATAWORTH_DB_URL`` or ``$DATAWORTH_HOME/ledger.db``; Alembic upgrades).
- :func:`ensure_providers`, :func:`withdraw_provider`, :func:`register_checkpoint`.
- :func:`post_run` (:class:`RunRecord` of :class:`QueryResult` with :class:`TopKEntry` lists) —
  one transaction, idempotent; :func:`reverse_run`; :func:`statement`.
- Policies (:mod:`ledger.policies`): ``topk_share`` (default), ``positive_share``,
  ``fallback_pro_rata``; exact micro-unit amounts, largest-remainder rounding.
- Views: ``v_provider_credit_daily``, ``v_provider_credit_by_checkpoint``,
  ``v_query_provider_credit``, ``v_provider_top_documents``, ``v_run_summary``.
"""

from ledger.db import HEAD, current_revision, database_url, make_engine, open_ledger, upgrade
from ledger.models import (
    MICROS,
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
    PolicyInputError,
    QueryResult,
    TopKEntry,
    largest_remainder,
    split_query,
    to_micros,
)
from ledger.posting import (
    PostReport,
    RunCheckpointRef,
    RunRecord,
    ensure_providers,
    post_run,
    register_checkpoint,
    reverse_run,
    withdraw_provider,
)
from ledger.statement import Statement, statement
from ledger.views import VIEWS

__all__ = [
    "HEAD",
    "MICROS",
    "POLICIES",
    "VIEWS",
    "Checkpoint",
    "LedgerEntry",
    "PolicyInputError",
    "PostReport",
    "Provider",
    "ProviderScore",
    "QueryAttribution",
    "QueryBatch",
    "QueryProviderScore",
    "QueryResult",
    "RunCheckpoint",
    "RunCheckpointRef",
    "RunRecord",
    "Statement",
    "TopKEntry",
    "ValuationRun",
    "current_revision",
    "database_url",
    "ensure_providers",
    "largest_remainder",
    "make_engine",
    "open_ledger",
    "post_run",
    "register_checkpoint",
    "reverse_run",
    "split_query",
    "statement",
    "to_micros",
    "upgrade",
    "withdraw_provider",
]
