"""infra/bi: datasette + datasette-dashboards serving a real SQLite ledger with the shipped definition;
each chart's data is read back exactly as the plugin's page fetches it and checked against the views."""

from __future__ import annotations

import html
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from infra.localpg import free_port
from ledger import open_ledger, read_view
from tests.dashboard.conftest import REPO, save_screenshot
from tests.dashboard.ledger_data import EVIL, fill

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
METADATA = REPO / "infra" / "bi" / "datasette" / "metadata.yml"
pytest.importorskip("datasette_dashboards", reason="the test extra installs datasette-dashboards")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = tmp_path_factory.mktemp("bi") / "ledger.db"  # datasette names the database "ledger" after the file
    engine = open_ledger(f"sqlite:///{path}")
    fill(engine)
    port = free_port()
    log = path.with_suffix(".log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "datasette",
            "serve",
            str(path),
            "-m",
            str(METADATA),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/-/versions.json", timeout=5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"datasette did not start: {path.with_suffix('.log').read_text()[-2000:]}")
            time.sleep(0.3)
    yield base, engine
    proc.terminate()
    proc.wait(timeout=10)
    log.close()
    engine.dispose()


def charts() -> dict:
    return yaml.safe_load(METADATA.read_text())["plugins"]["datasette-dashboards"]["credit"]["charts"]


def chart_rows(base: str, name: str, **filters: str) -> list[dict]:
    """The rows the plugin's page fetches for chart ``name`` (same query rewriting, same JSON URL)."""
    from datasette_dashboards import replace_opts_in_query

    chart = charts()[name]
    sql = replace_opts_in_query(chart["query"], filters)
    qs = urllib.parse.urlencode({"sql": sql, **filters, "_shape": "objects"})
    with urllib.request.urlopen(f"{base}/{chart['db']}.json?{qs}", timeout=30) as r:
        return json.loads(r.read())["rows"]


def micros(x) -> Decimal:
    return Decimal(str(x)).quantize(Decimal("0.000001"))


def test_the_dashboard_page_serves_every_chart(served):
    base, _ = served
    with urllib.request.urlopen(base + "/-/dashboards/credit", timeout=30) as r:
        page = r.read().decode()
    for chart in charts().values():
        assert html.escape(chart["title"], quote=False) in page


def test_chart_data_equals_the_views(served):
    base, engine = served
    daily = read_view(engine, "v_provider_credit_daily", order_by="day, provider_id")
    assert [(r["day"], r["provider_id"], micros(r["credit"])) for r in chart_rows(base, "credit-over-time")] == [
        (r["day"].isoformat(), r["provider_id"], r["credit"]) for r in daily
    ]
    summary = read_view(engine, "v_provider_summary", order_by="credit_total DESC, provider_id")
    table = chart_rows(base, "providers")
    assert [(html.unescape(r["provider_id"]), micros(r["credit_total"])) for r in table] == [
        (r["provider_id"], r["credit_total"]) for r in summary
    ]
    assert html.escape(EVIL, quote=False) in [r["provider_id"] for r in table]  # the plugin writes cells as HTML
    (total,) = chart_rows(base, "total-credit")
    assert micros(total["credit"]) == sum((r["credit"] for r in daily), Decimal(0))
    assert chart_rows(base, "runs-count") == [{"runs": len(read_view(engine, "v_run_health"))}]


def test_filters_narrow_the_charts(served):
    base, engine = served
    rows = chart_rows(base, "credit-over-time", provider=EVIL, date_start="2026-11-05", date_end="2026-11-30")
    view = read_view(engine, "v_provider_credit_daily", "provider_id = :p", {"p": EVIL}, order_by="day")
    expected = [r for r in view if "2026-11-05" <= r["day"].isoformat() <= "2026-11-30"]
    assert [(r["day"], micros(r["credit"])) for r in rows] == [(r["day"].isoformat(), r["credit"]) for r in expected]
    assert len(expected) == 2
    by_ck = chart_rows(base, "credit-by-checkpoint", provider="alpha")
    view = read_view(engine, "v_provider_credit_by_checkpoint", "provider_id = 'alpha'", order_by="checkpoint_id")
    assert [(r["checkpoint_id"], micros(r["credit"])) for r in by_ck] == [
        (r["checkpoint_id"], r["credit"]) for r in view
    ]


def test_the_dashboard_draws_in_a_browser(served, browser, screenshots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, _ = served
    browser.get(base + "/-/dashboards/credit")
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-credit-over-time svg, #chart-credit-over-time canvas")
    )
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-providers td"))
    cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#chart-providers td")]
    assert EVIL in cells  # escaped in SQL, so the browser shows the id's characters
    save_screenshot(browser, screenshots, "bi-datasette")


def test_metadata_is_valid_yaml_with_a_db_for_every_query():
    for name, chart in charts().items():
        assert chart.get("db") == "ledger" and chart.get("query"), name
    assert Path(METADATA).read_text().count("v_") >= 7
