"""Building blocks of the dashboard's pages: labelled figures, the credit trend with its window
selector (and the callback that redraws it), a not-found message, links with query strings."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from dash import MATCH, Input, Output, State, callback, dcc, html

from flows.dashboard import queries
from flows.dashboard.cells import cell
from flows.dashboard.charts import credit_figure
from flows.dashboard.tables import engine


def figures(pairs: list[tuple[str, object]]) -> html.Div:
    """A row of labelled figures (label, value)."""
    return html.Div(
        [
            html.Div([html.Div(label, className="fig-label"), html.Div(str(cell(v)), className="fig-value")])
            for label, v in pairs
        ],
        className="figures",
    )


def trend(scope: dict) -> html.Div:
    """Credit over time with a day/week/month selector; ``scope``: ``{"provider_id"}`` or ``{"provider_ids"}``."""
    key = json.dumps(scope, sort_keys=True)
    return html.Div(
        [
            dcc.RadioItems(
                id={"type": "window", "scope": key},
                options=[{"label": w, "value": w} for w in queries.WINDOWS],
                value="day",
                inline=True,
                className="windows",
            ),
            dcc.Graph(id={"type": "trend", "scope": key}, figure=_figure(scope, "day"), config={"displaylogo": False}),
        ]
    )


@callback(
    Output({"type": "trend", "scope": MATCH}, "figure"),
    Input({"type": "window", "scope": MATCH}, "value"),
    State({"type": "window", "scope": MATCH}, "id"),
    prevent_initial_call=True,  # the layout draws the daily chart
)
def _trend_figure(window: str, radio_id: dict):
    return _figure(json.loads(radio_id["scope"]), window)


def _figure(scope: dict, window: str):
    ids = scope["provider_ids"] if "provider_ids" in scope else [scope["provider_id"]]
    return credit_figure(queries.credit_series(engine(), window, ids), window)


def problem(message: str) -> html.Div:
    return html.Div([html.H2("Not found"), html.P(message, className="problem")])


def href(path: str, **params: str) -> str:
    return f"{path}?{urlencode(params)}"
