"""Headless Chromium (Debian's chromium + chromium-driver) under selenium, and `dataworth dashboard`
in a subprocess: shared by the browser tests and benchmarks/bench_dashboard.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.localpg import free_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


def make_driver(profile: Path, downloads: Path):
    """A Chrome webdriver on /usr/bin/chromium with a fresh profile; downloads land in ``downloads``."""
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium never fetches a browser or a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver


@contextmanager
def dashboard_server(db_url: str, home: Path, timeout: float = 60) -> Iterator[str]:
    """``dataworth dashboard --db-url URL`` on a free loopback port; yields its base URL."""
    port = free_port()
    log_path = home / f"dashboard-{port}.log"
    env = {**os.environ, "DATAWORTH_HOME": str(home)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "dashboard", "--db-url", db_url, "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while True:
                try:
                    urllib.request.urlopen(base + "/", timeout=5).close()
                    break
                except OSError as exc:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"dashboard did not come up: {log_path.read_text()[-2000:]}") from exc
                    time.sleep(0.3)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def open_page(driver, base: str, path: str, timeout: float = 60) -> None:
    """Load ``base + path`` and wait until Dash has drawn it and no callback is still loading."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + path)
    wait = WebDriverWait(driver, timeout, poll_frequency=0.05)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".page h2"))
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-dash-is-loading='true']"))
    time.sleep(0.5)  # the last callbacks' rows reach the DOM


def page_load_ms(driver) -> float:
    """Milliseconds from navigation start to the last Dash callback response of the current page."""
    ends = driver.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('_dash-update-component') || e.name.includes('_dash-layout'))"
        ".map(e => e.responseEnd)"
    )
    return max(ends, default=0.0)
