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
"""

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
    QueryResult,
    TopKEntry,
    largest_remainder,
    split_by_checkpoint,
    split_query,
    to_micros,
)
from ledger.posting import (
    PostReport,
    RunCheckpointRef,
    RunRecord,
    post_run,
    reverse_run,
)
from ledger.query_credit import credited_queries, live_credits
from ledger.read import attributions, credits, query_receipt, runs
from ledger.registry import ensure_providers, register_checkpoint, set_provider, withdraw_provider
from ledger.statement import Statement, statement
from ledger.views import VIEW_TYPES, VIEWS, read_view

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
