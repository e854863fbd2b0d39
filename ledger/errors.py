"""The ledger's expected failures: one base, named subclasses (the CLI prints them in one line)."""

from __future__ import annotations

from valuation.errors import DataworthError


class LedgerError(DataworthError):
    """Base of every expected ledger failure: nothing was written."""


class PolicyInputError(LedgerError, ValueError):
    """Inputs a policy or the poster refuses (NaN scores, negative values, unknown providers ...).

    ``query_id``: the one query at fault (a caller may set it aside and post the others), or None
    when the whole run is at fault (unknown policy or checkpoint, ...).
    """

    def __init__(self, message: str, query_id: str | None = None) -> None:
        super().__init__(message)
        self.query_id = query_id


class UnknownRunError(LedgerError):
    """A run id the ledger does not hold."""


class UnknownQueryError(LedgerError):
    """A query id no run of the ledger valued."""


class UnknownViewError(LedgerError, ValueError):
    """A view name that is not one of ``ledger.VIEWS``."""


class UnknownProviderError(PolicyInputError):
    """A provider id the ledger does not hold."""


class RunReversedError(LedgerError):
    """The run was posted then reversed: value the batch again with a new ``RunRecord.revaluation``."""


class QueryAlreadyCreditedError(LedgerError):
    """Queries already credited by another live run; ``credited`` maps query id → that run."""

    def __init__(self, run_id: str, credited: dict[str, str]) -> None:
        self.run_id = run_id
        self.credited = dict(sorted(credited.items()))
        shown = ", ".join(f"{q} (run {r})" for q, r in list(self.credited.items())[:10])
        more = f" and {len(credited) - 10} more" if len(credited) > 10 else ""
        super().__init__(
            f"run {run_id}: {len(credited)} quer{'y' if len(credited) == 1 else 'ies'} already credited by a live run: "
            f"{shown}{more}; reverse that run first or leave these queries out"
        )
