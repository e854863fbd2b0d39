"""The dashboard in a real browser (headless Chromium) on a SQLite and a PostgreSQL ledger."""

from __future__ import annotations

import time
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from flows.dashboard.queries import PAGE_SIZE
from ledger import read_view, statement
from tests.dashboard.browser import open_page as load
from tests.dashboard.conftest import cli, save_screenshot
from tests.dashboard.ledger_data import ALL_PROVIDERS, EVIL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def open_page(driver, base: str, path: str, **params: str) -> None:
    load(driver, base, path + (f"?{urlencode(params)}" if params else ""))


def column(driver, name: str, table: int = 0) -> list[str]:
    """The texts of a table's column, read in one script (a table re-rendering never leaves stale cells)."""
    return driver.execute_script(
        "const t = document.querySelectorAll('.dash-table-container')[arguments[0]];"
        "return t ? Array.from(t.querySelectorAll('td')).filter(c => c.dataset.dashColumn === arguments[1])"
        ".map(c => c.innerText.trim()) : [];",
        table,
        name,
    )


def page_text(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, ".page").text


def test_providers_page_lists_every_provider_with_the_views_credit(browser, dashboard, engine, screenshots, ledger_url):
    open_page(browser, dashboard, "/")
    shown = dict(zip(column(browser, "provider_id"), column(browser, "credit_total"), strict=True))
    assert len(shown) == PAGE_SIZE
    browser.find_element(By.CSS_SELECTOR, "button.next-page").click()  # the second page, read on demand
    WebDriverWait(browser, 30).until(lambda d: len(column(d, "provider_id")) == len(ALL_PROVIDERS) - PAGE_SIZE)
    shown |= dict(zip(column(browser, "provider_id"), column(browser, "credit_total"), strict=True))
    view = {r["provider_id"]: f"{r['credit_total']:.6f}" for r in read_view(engine, "v_provider_summary")}
    daily: dict[str, Decimal] = {}
    for r in read_view(engine, "v_provider_credit_daily"):
        daily[r["provider_id"]] = daily.get(r["provider_id"], Decimal(0)) + r["credit"]
    assert shown == view == {p: f"{c:.6f}" for p, c in daily.items()}
    assert list(shown) == sorted(view, key=lambda p: (-Decimal(view[p]), p))  # ranked by credit
    assert EVIL in shown  # the id shows as its characters ...
    assert not browser.find_elements(By.CSS_SELECTOR, ".page table b, .page table i")  # ... never as markup
    traces = ".js-plotly-plot .scatterlayer .trace"  # the chart drew its lines (plotly.js loads asynchronously)
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, traces)) == 10)  # the top 10
    for window in ("week", "month"):
        browser.find_element(By.CSS_SELECTOR, f"input[value='{window}']").click()
        WebDriverWait(browser, 30).until(lambda d, w=window: f"{w} starting" in page_text(d))
    save_screenshot(browser, screenshots, f"providers-{ledger_url.split(':')[0]}")


@pytest.mark.parametrize("provider", ["alpha", EVIL])
def test_provider_page_shows_the_queries_that_paid_it_and_document_excerpts(
    browser, dashboard, engine, screenshots, ledger_url, provider
):
    open_page(browser, dashboard, "/provider", id=provider)
    text = page_text(browser)
    assert f"Provider {provider}" in text
    paid = read_view(
        engine, "v_query_receipt", "provider_id = :p", {"p": provider}, order_by="credit DESC, run_id, query_id"
    )
    assert column(browser, "query_id", table=0) == [r["query_id"] for r in paid]
    assert column(browser, "prompt", table=0) == [r["prompt"] for r in paid]
    status = {r["run_id"]: r["status"] for r in read_view(engine, "v_run_health")}
    assert column(browser, "run_status", table=0) == [status[r["run_id"]] for r in paid]  # reversed credits say so
    assert f"text of {provider}-doc" in " ".join(column(browser, "excerpt", table=1))
    by_ck = {
        r["checkpoint_id"]: f"{r['credit']:.6f}"
        for r in read_view(engine, "v_provider_credit_by_checkpoint", "provider_id = :p", {"p": provider})
    }
    assert dict(zip(column(browser, "checkpoint_id", 2), column(browser, "credit", 2), strict=True)) == by_ck
    assert not browser.find_elements(By.CSS_SELECTOR, ".page h2 b, .page table b, .page table i")
    if provider == "alpha":
        assert "CC-BY" in text  # metadata from `provider set`
        save_screenshot(browser, screenshots, f"provider-{ledger_url.split(':')[0]}")


def download_statement(browser, base: str, downloads, provider: str) -> bytes:
    open_page(browser, base, "/provider", id=provider)
    for f in downloads.iterdir():
        f.unlink()
    browser.find_element(By.ID, "statement-csv").click()
    deadline = time.monotonic() + 20
    while not [f for f in downloads.iterdir() if f.suffix == ".csv"] and time.monotonic() < deadline:
        time.sleep(0.2)
    (csv_file,) = [f for f in downloads.iterdir() if f.suffix == ".csv"]
    return csv_file.read_bytes()


@pytest.mark.timeout(300)  # the CLI's start-up (torch, lancedb imports) is slow on a busy machine
def test_statement_csv_download_equals_dataworth_statement(browser, dashboard, downloads, home, ledger_url, engine):
    out = cli(home, ledger_url, "statement", EVIL, "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert download_statement(browser, dashboard, downloads, EVIL) == out.stdout  # byte for byte
    # the CLI prints Statement.to_csv(): the other provider against it in-process
    expected = statement(engine, "alpha").to_csv().encode()
    assert download_statement(browser, dashboard, downloads, "alpha") == expected


def test_query_receipt_shows_prompt_response_excerpts_split_and_lexical_evidence(
    browser, dashboard, engine, screenshots, ledger_url
):
    (row,) = read_view(engine, "v_run_health", "status = 'posted'", order_by="day DESC", limit=1)
    query_id = "d3-q1"
    open_page(browser, dashboard, "/query", id=query_id, run=row["run_id"])
    text = page_text(browser)
    assert f"Receipt of query {query_id}" in text
    assert browser.find_element(By.ID, "prompt").text == f"prompt of {query_id}"
    assert browser.find_element(By.ID, "response").text == f"response of {query_id}"
    split = read_view(
        engine,
        "v_query_receipt",
        "run_id = :r AND query_id = :q",
        {"r": row["run_id"], "q": query_id},
        order_by="credit DESC, provider_id",
    )
    assert column(browser, "provider_id", 0) == [r["provider_id"] for r in split]
    assert column(browser, "credit", 0) == [f"{r['credit']:.6f}" for r in split]
    assert column(browser, "basis", 0) == [r["basis"] for r in split]
    assert "text of alpha-doc0" in column(browser, "excerpt", 1)[0]
    assert set(column(browser, "checkpoint_id", 2)) == {"ck1", "ck2"}
    assert column(browser, "excerpt", 3) == ["lexical text"]
    assert not browser.find_elements(By.CSS_SELECTOR, ".page table b, .page table i")
    save_screenshot(browser, screenshots, f"query-{ledger_url.split(':')[0]}")


def test_runs_page_and_a_run_show_settings_checkpoints_coverage_metrics_and_reversals(
    browser, dashboard, engine, screenshots, ledger_url
):
    open_page(browser, dashboard, "/runs")
    health = read_view(engine, "v_run_health", order_by="day DESC, run_id")
    assert column(browser, "run_id") == [r["run_id"] for r in health]
    assert column(browser, "status") == [r["status"] for r in health]
    assert "analyst: bad checkpoint" in column(browser, "reversed_by")
    save_screenshot(browser, screenshots, f"runs-{ledger_url.split(':')[0]}")
    reversed_run = next(r for r in health if r["status"] == "reversed")
    open_page(browser, dashboard, "/run", id=reversed_run["run_id"])
    text = page_text(browser)
    assert "analyst: bad checkpoint" in text and "lds" in text and "planted_recall" in text
    assert column(browser, "checkpoint_id", 1) == ["ck1", "ck2"]
    assert column(browser, "setting", 2) == ["k"]
    assert f"{reversed_run['coverage']:.6g}" in text
    save_screenshot(browser, screenshots, f"run-{ledger_url.split(':')[0]}")


def test_unknown_ids_say_so(browser, dashboard):
    open_page(browser, dashboard, "/provider", id="<script>nobody</script>")
    assert "unknown provider '<script>nobody</script>'" in page_text(browser)
    open_page(browser, dashboard, "/query", id="nope")
    assert "no run valued query 'nope'" in page_text(browser)
