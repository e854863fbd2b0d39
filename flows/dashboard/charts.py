"""Plotly figures of credit over time (the dashboard and the HTML report draw the same ones).

Plotly reads a subset of HTML in trace names and titles, so every id is escaped before it is drawn.
"""

from __future__ import annotations

import html

import plotly.graph_objects as go


def credit_figure(series: list[dict], window: str, title: str = "") -> go.Figure:
    """Credit per ``window`` (rows of :func:`flows.dashboard.queries.credit_series`), one line per provider."""
    fig = go.Figure()
    by_provider: dict[str, list[dict]] = {}
    for row in series:
        by_provider.setdefault(row["provider_id"], []).append(row)
    for provider_id, rows in by_provider.items():
        fig.add_trace(
            go.Scatter(
                x=[r["period"].isoformat() for r in rows],
                y=[float(r["credit"]) for r in rows],
                name=html.escape(provider_id),  # plotly renders tags in names: show ids as text
                mode="lines+markers",
                hovertemplate="%{x}: %{y:.6f}<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_layout(
        title={"text": title} if title else None,
        template="plotly_white",
        height=360,
        margin={"l": 50, "r": 20, "t": 40 if title else 10, "b": 40},
        xaxis_title=f"{window} starting",
        yaxis_title="credit",
        legend={"title": {"text": "provider"}},
    )
    if window != "day":
        fig.update_xaxes(type="category")
    return fig
