"""`dataworth report`: a self-contained HTML statement from the views, escaped, for a run or a period."""

from __future__ import annotations

import html
import re
from datetime import date

import pytest

from flows.demo.run import write_demo_report
from flows.errors import ConfigurationError
from flows.report import ReportArguments, ReportSection, render_report
from ledger import UnknownProviderError, UnknownRunError, read_view, statement
from tests.dashboard.conftest import cli
from tests.dashboard.ledger_data import ALL_PROVIDERS, EVIL


def cells(page: str, title: str) -> list[list[str]]:
    """The body rows of the table under heading ``title`` (unescaped)."""
    section = page.split(f"<h2>{html.escape(title)}</h2>", 1)[1].split("<h2>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", section.split("<tbody>", 1)[1], re.S)
    return [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", r, re.S)] for r in rows]


def test_report_of_all_days_lists_every_provider_with_the_views_credit(engine):
    page = render_report(engine, ReportArguments())
    total: dict[str, str] = {
        r["provider_id"]: f"{r['credit_total']:.6f}" for r in read_view(engine, "v_provider_summary")
    }
    assert {row[0]: row[2] for row in cells(page, "Credit per provider")} == total
    assert len(total) == len(ALL_PROVIDERS)
    assert "<b>evil" not in page and "<i>Evil" not in page  # ids and names escaped
    assert 'src="http' not in page and "<link" not in page  # self-contained: plotly.js is inline
    assert "Plotly.newPlot" in page


def test_report_of_one_run_and_one_provider(engine):
    (reversed_run,) = read_view(engine, "v_run_health", "status = 'reversed'")
    page = render_report(engine, ReportArguments(run_id=reversed_run["run_id"], provider_id="alpha"))
    lines = [line for line in statement(engine, "alpha").lines if line.run_id == reversed_run["run_id"]]
    assert [row[0] for row in cells(page, "Statement of alpha")] == [str(line.entry_id) for line in lines]
    assert {line.kind for line in lines} == {"credit", "reversal"}
    assert cells(page, "Credit per provider") == [["alpha", "Alpha Press", "0.000000"]]
    assert "analyst: bad checkpoint" in page
    assert "Plotly.newPlot" not in page  # a run posts on one day: no chart


def test_report_of_a_period(engine):
    args = ReportArguments.parse(provider_id=EVIL, start="2026-11-05", end="2026-11-30")
    page = render_report(engine, args)
    credited = cells(page, "Credits by query")
    assert credited and all(row[4] == EVIL and "2026-11-05" <= row[0] <= "2026-11-30" for row in credited)
    assert {row[1] for row in cells(page, "Statement of " + EVIL)} == {"2026-11-09", "2026-11-20"}


def test_arguments_are_checked_by_name():
    assert ReportArguments.parse(start="2026-11-01").start == date(2026, 11, 1)
    with pytest.raises(ConfigurationError, match="--start: '2026-13-01' is not a day"):
        ReportArguments.parse(start="2026-13-01")
    with pytest.raises(ConfigurationError, match="one run or one period"):
        ReportArguments.parse(run_id="r", end="2026-11-01")
    with pytest.raises(ConfigurationError, match="after --end"):
        ReportArguments.parse(start="2026-11-02", end="2026-11-01")


def test_unknown_run_or_provider_is_named(engine):
    with pytest.raises(UnknownRunError, match="run-nope"):
        render_report(engine, ReportArguments(run_id="run-nope"))
    with pytest.raises(UnknownProviderError, match="nobody"):
        render_report(engine, ReportArguments(provider_id="nobody"))


def test_extra_sections_are_escaped_data(engine, tmp_path):
    extra = ReportSection("Planted <accuracy>", ["a", "b"], [["<script>x</script>", 0.5]], note="n & m")
    page = render_report(engine, ReportArguments(), [extra])
    assert "<script>x</script>" not in page and cells(page, "Planted <accuracy>") == [["<script>x</script>", "0.5"]]
    out = write_demo_report(
        engine, tmp_path / "demo" / "report.html", {"d0-q1": "alpha"}, {"d0-q1": (0.6, "alpha")}, 1.0, 0.5, 3
    )
    demo = out.read_text()
    assert cells(demo, "Planted-fact accuracy (the demo only)")[1] == ["checkpoint set (3 of the lineage)", "1.000"]
    assert cells(demo, "Planted against credited, per query") == [["d0-q1", "alpha", "alpha", "yes"]]


def test_cli_writes_the_report(ledger_url, home, tmp_path):
    out = tmp_path / "r.html"
    done = cli(home, ledger_url, "report", "--provider", EVIL, "--out", str(out), "--db-url", ledger_url)
    assert done.returncode == 0, done.stderr
    assert html.escape(EVIL) in out.read_text()
    bad = cli(home, ledger_url, "report", "--start", "yesterday")
    assert bad.returncode == 2 and b"--start: 'yesterday' is not a day" in bad.stderr
