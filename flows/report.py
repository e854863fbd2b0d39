"""``dataworth report``: a self-contained HTML statement of a run or a period, for one provider or all.

It reads the same views as the dashboard (:mod:`flows.dashboard.queries`) and the provider statement
of ``dataworth statement``. The page is one file: styles inline, the Plotly chart with plotly.js
embedded, every ledger text escaped by Jinja2's autoescape. Callers add their own sections
(:class:`ReportSection`, e.g. the demo's planted-fact accuracy) as data, escaped like the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from jinja2 import Environment
from markupsafe import Markup
from sqlalchemy import Engine

from flows.dashboard import queries
from flows.dashboard.cells import cell
from flows.dashboard.charts import credit_figure
from flows.errors import ConfigurationError
from ledger import read_view, statement

MAX_QUERY_ROWS = 500  # the report lists at most this many (query, provider) credits; the dashboard pages the rest


@dataclass(frozen=True)
class ReportArguments:
    """What the report covers: one run, or the days ``start``..``end`` (both optional); one provider or all."""

    run_id: str | None = None
    provider_id: str | None = None
    start: date | None = None
    end: date | None = None

    @classmethod
    def parse(
        cls, run_id: str | None = None, provider_id: str | None = None, start: str | None = None, end: str | None = None
    ) -> ReportArguments:
        """From the command line's strings; a bad day or a run combined with a period is refused by name."""
        days = {}
        for name, value in (("start", start), ("end", end)):
            try:
                days[name] = date.fromisoformat(value) if value else None
            except ValueError as exc:
                raise ConfigurationError(f"--{name}: {value!r} is not a day (YYYY-MM-DD)") from exc
        if run_id and (start or end):
            raise ConfigurationError("--run and --start/--end: a report covers one run or one period, not both")
        if days["start"] and days["end"] and days["start"] > days["end"]:
            raise ConfigurationError(f"--start {start} is after --end {end}")
        return cls(run_id=run_id or None, provider_id=provider_id or None, **days)

    def scope(self) -> str:
        what = f"run {self.run_id}" if self.run_id else _period(self.start, self.end)
        return f"{what}, {'provider ' + self.provider_id if self.provider_id else 'all providers'}"


@dataclass
class ReportSection:
    """A caller's extra section: a title, a note and a table (all shown as text)."""

    title: str
    columns: list[str]
    rows: list[list]
    note: str = ""


@dataclass
class _Table:
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    note: str = ""


def _period(start: date | None, end: date | None) -> str:
    if start is None and end is None:
        return "all days"
    return f"days {start or '…'} to {end or '…'}"


def _table(title: str, rows: list[dict], columns: list[str], note: str = "") -> _Table:
    return _Table(title, columns, [[cell(r.get(c)) for c in columns] for r in rows], note)


def _filters(args: ReportArguments, day_column: str = "day") -> tuple[str, dict]:
    where, params = [], {}
    if args.run_id:
        where.append("run_id = :run")
        params["run"] = args.run_id
    if args.provider_id:
        where.append("provider_id = :provider")
        params["provider"] = args.provider_id
    if args.start:
        where.append(f"{day_column} >= :start")
        params["start"] = args.start
    if args.end:
        where.append(f"{day_column} <= :end")
        params["end"] = args.end
    return " AND ".join(where), params


def _credits(engine: Engine, args: ReportArguments) -> list[dict]:
    names = {r["provider_id"]: r["name"] for r in read_view(engine, "v_provider")}
    if args.run_id:
        rows = queries.run_credits(engine, args.run_id)
    else:
        totals: dict[str, Decimal] = {}
        where, params = _filters(args)
        for r in read_view(engine, "v_provider_credit_daily", where, params):
            totals[r["provider_id"]] = totals.get(r["provider_id"], Decimal(0)) + r["credit"]
        rows = [{"provider_id": p, "credit": c} for p, c in sorted(totals.items(), key=lambda t: (-t[1], t[0]))]
    if args.provider_id:
        rows = [r for r in rows if r["provider_id"] == args.provider_id]
    return [r | {"name": names.get(r["provider_id"])} for r in rows]


def _chart(engine: Engine, args: ReportArguments) -> Markup | None:
    if args.run_id:
        return None  # a run posts on one day: its credit table says it all
    ids = [args.provider_id] if args.provider_id else [r["provider_id"] for r in queries.providers(engine, 0, 10)]
    series = queries.credit_series(engine, "day", ids, args.start, args.end)
    if not series:
        return None
    fig = credit_figure(series, "day")
    return Markup(fig.to_html(full_html=False, include_plotlyjs=True, config={"displaylogo": False}))


def build_report(engine: Engine, args: ReportArguments, extra: list[ReportSection] | tuple = ()) -> dict:
    """Everything the page shows (tables of strings), for :func:`render_report`."""
    if args.run_id:
        queries.run(engine, args.run_id)  # an unknown run is named, not reported empty
    if args.provider_id:
        queries.provider(engine, args.provider_id)
    credits = _credits(engine, args)
    tables = [
        _table(
            "Credit per provider",
            credits,
            ["provider_id", "name", "credit"],
            f"total {cell(sum((r['credit'] for r in credits), Decimal(0)))}",
        )
    ]
    run_where, run_params = _filters(ReportArguments(run_id=args.run_id, start=args.start, end=args.end))
    runs = queries.run_health(engine, limit=None, where=run_where, params=run_params)
    columns = ["run_id", "day", "status", "policy", "mode", "topk_method", "checkpoints", "queries"]
    tables.append(
        _table("Runs", runs, [*columns, "queries_credited", "coverage", "total_credit", "reversed_by", "metrics"])
    )
    if args.provider_id:
        st = statement(engine, args.provider_id, cell(args.start) or None, cell(args.end) or None)
        lines = [line.__dict__ for line in st.lines if not args.run_id or line.run_id == args.run_id]
        kinds: dict[str, Decimal] = {}
        for line in lines:
            kinds[line["kind"]] = kinds.get(line["kind"], Decimal(0)) + line["amount"]
        note = ", ".join(f"{k} {cell(v)}" for k, v in sorted(kinds.items()))
        tables.append(
            _table(
                f"Statement of {args.provider_id}",
                lines,
                ["entry_id", "day", "run_id", "query_id", "kind", "basis", "amount", "top_documents"],
                note,
            )
        )
    where, params = _filters(args)
    n = queries.count(engine, "v_query_receipt", where, params)
    rows = read_view(
        engine,
        "v_query_receipt",
        where,
        params,
        order_by="day, run_id, query_id, credit DESC, provider_id",
        limit=MAX_QUERY_ROWS,
    )
    for r in rows:
        r["prompt"] = (r["prompt"] or "")[:200]
    more = f"; the first {MAX_QUERY_ROWS} of {n} are listed (the dashboard pages them all)" if n > len(rows) else ""
    tables.append(
        _table(
            "Credits by query",
            rows,
            ["day", "run_id", "query_id", "prompt", "provider_id", "score", "credit", "basis", "confidence"],
            f"{n} credits{more}",
        )
    )
    tables += [_Table(s.title, s.columns, [[cell(v) for v in row] for row in s.rows], s.note) for s in extra]
    return {
        "scope": args.scope(),
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "chart": _chart(engine, args),
        "tables": tables,
    }


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dataworth statement: {{ scope }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #0f172a; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #e2e8f0; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f1f5f9; } p.note { color: #475569; margin: 0.2em 0; }
</style></head><body>
<h1>dataworth statement</h1>
<p><b>{{ scope }}</b>; generated {{ generated }} from the ledger's SQL views.</p>
{% if chart %}<h2>Credit per day</h2>{{ chart }}{% endif %}
{% for t in tables %}
<h2>{{ t.title }}</h2>{% if t.note %}<p class="note">{{ t.note }}</p>{% endif %}
{% if t.rows %}<table><thead><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>
{% for row in t.rows %}<tr>{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>{% else %}<p class="note">nothing in this scope</p>{% endif %}
{% endfor %}
</body></html>
"""


def render_report(engine: Engine, args: ReportArguments, extra: list[ReportSection] | tuple = ()) -> str:
    """The report's HTML (one self-contained page)."""
    template = Environment(autoescape=True).from_string(_TEMPLATE)
    return template.render(**build_report(engine, args, extra))


def write_report(
    engine: Engine, out: Path, args: ReportArguments = ReportArguments(), extra: list[ReportSection] | tuple = ()
) -> Path:
    """Write :func:`render_report` to ``out`` (parents created); returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(engine, args, extra), encoding="utf-8")
    return out
