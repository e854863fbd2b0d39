"""A real ledger (SQLite file or the session's PostgreSQL), `dataworth dashboard` serving it in a
subprocess, and Debian's headless Chromium driven by selenium through chromium-driver."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import open_ledger
from tests.dashboard.browser import CHROMEDRIVER, CHROMIUM, REPO, dashboard_server, make_driver
from tests.dashboard.ledger_data import fill


def ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver when missing; skip (saying why) only if apt fails."""
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
            check=True,
            env=env,
            capture_output=True,
            timeout=900,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"chromium could not be installed with apt-get: {exc} {detail.decode(errors='replace')[-300:]}")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("apt-get installed chromium but /usr/bin/chromium or /usr/bin/chromedriver is missing")


@pytest.fixture(scope="session")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Every page's screenshot of this run (``DATAWORTH_SCREENSHOTS=dir`` copies them there too)."""
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="session")
def browser(tmp_path_factory, downloads):
    ensure_chromium()
    driver = make_driver(tmp_path_factory.mktemp("chromium-profile"), downloads)
    yield driver
    driver.quit()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path_factory) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"dash_{request.module.__name__.split('.')[-1]}")
    engine = open_ledger(url)
    fill(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def engine(ledger_url):
    engine = open_ledger(ledger_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A dataworth home for CLI calls (settings only: the ledger comes from DATAWORTH_DB_URL)."""
    home = tmp_path_factory.mktemp("home")
    (home / "dataworth.toml").write_text("# test home\n")
    return home


def cli(home: Path, db_url: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATAWORTH_HOME": str(home), "DATAWORTH_DB_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, capture_output=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def dashboard(ledger_url, home):
    """``dataworth dashboard --db-url URL`` serving the module's ledger; yields its base URL."""
    with dashboard_server(ledger_url, home) as base:
        yield base


def save_screenshot(driver, screenshots: Path, name: str) -> Path:
    """Full-page screenshot (the window grown to the page's height) into the run's dir."""
    height = driver.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    driver.set_window_size(1400, min(max(height + 160, 800), 6000))  # + the window's own bars
    time.sleep(0.3)  # the page reflows to the new size
    path = screenshots / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    extra = os.environ.get("DATAWORTH_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)
    return path
