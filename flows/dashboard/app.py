"""The Dash application: pages, the statement CSV export, and serving it."""

from __future__ import annotations

import re
from dataclasses import dataclass

import dash
from dash import dcc, html
from flask import Response, request
from sqlalchemy import Engine

from flows.dashboard import tables
from flows.dashboard.pages import PAGES


@dataclass(frozen=True)
class DashboardArguments:
    """Where ``dataworth dashboard`` listens (loopback by default: the ledger is not published)."""

    host: str = "127.0.0.1"
    port: int = 8050


def create_app(engine: Engine) -> dash.Dash:
    """The dashboard over ``engine``'s ledger (one per process: Dash pages are process-global)."""
    tables.bind(engine)
    # assets/dashboard.css is served by Dash itself (its assets folder).
    app = dash.Dash(__name__, use_pages=True, pages_folder="", title="dataworth", update_title=None)
    for module, path, name, layout in PAGES:
        dash.register_page(module, path=path, name=name, title=f"dataworth · {name}", layout=layout)
    app.layout = html.Div(
        [
            html.Div(
                [dcc.Link("Providers", href="/"), dcc.Link("Runs", href="/runs")],
                className="nav",
            ),
            html.Div(dash.page_container, className="page"),
        ]
    )

    @app.server.route("/export/statement.csv")
    def statement_csv():
        from ledger import statement

        provider = request.args.get("provider", "")
        st = statement(engine, provider, request.args.get("start") or None, request.args.get("end") or None)
        if not st.lines:
            return Response(f"no ledger entry for provider {provider!r}\n", status=404, mimetype="text/plain")
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", provider)[:80] or "provider"
        return Response(
            st.to_csv(),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="statement-{name}.csv"'},
        )

    return app


def serve(engine: Engine, args: DashboardArguments = DashboardArguments()) -> None:
    """Serve the dashboard until interrupted (Flask's threaded server)."""
    create_app(engine).run(host=args.host, port=args.port, debug=False)
