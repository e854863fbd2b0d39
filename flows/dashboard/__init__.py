"""The analyst's dashboard (Dash + Plotly) over the ledger's SQL views.

- :func:`create_app` (a ``dash.Dash`` over an engine), :func:`serve` with :class:`DashboardArguments`:
  ``dataworth dashboard``. Pages: providers (ranked, credit over day/week/month), a provider (trend,
  paying queries, top documents, by checkpoint, statement + CSV export), a query receipt, runs, a run.
- :mod:`flows.dashboard.queries`: the paginated reads of the views (shared with :mod:`flows.report`).
"""

from __future__ import annotations

__all__ = ["DashboardArguments", "create_app", "serve"]


def __getattr__(name: str):
    # Dash loads only for the app: the report and the benchmarks import the queries without it.
    if name in __all__:
        from flows.dashboard import app

        return getattr(app, name)
    raise AttributeError(f"module 'flows.dashboard' has no attribute {name!r}")
