"""The dashboard in a real headless Chromium (Debian's, driven by its chromedriver),
against a real daemon; and its pages read with a real HTTP client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gatewayd.testing import DaemonProcess
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests import browser
from tests.test_http import LOOPBACK, url_of


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    with DaemonProcess(tmp_path / "state", config=LOOPBACK) as d:
        d.add_job("--name", "report", "--every", "1h", "--command", "true")
        d.add_job("--name", "nightly", "--cron", "0 3 * * *", "--command", "true", "--disabled")
        for _ in range(2):
            assert d.cli("cron", "run", "report", "--wait").code == 0
        yield d


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    missing = browser.missing()
    if missing is not None:
        pytest.skip(f"no browser: {missing}")
    with browser.chromium(tmp_path / "profile") as driver:
        yield driver


class TestInABrowser:
    def test_jobs_a_timeline_and_a_run_that_appears_live(
        self, daemon: DaemonProcess, chromium: webdriver.Chrome, tmp_path: Path
    ) -> None:
        """The dashboard lists the jobs; a job's page draws one bar per run; a run started
        from the CLI appears within 2 s, without a reload (the page keeps its identity)."""
        chromium.get(url_of(daemon))
        names = [
            row.find_element(By.TAG_NAME, "a").text
            for row in chromium.find_elements(By.CSS_SELECTOR, "tr.job")
        ]
        assert names == ["nightly", "report"]
        assert "disabled" in chromium.find_element(By.ID, "jobs").text
        chromium.find_element(By.LINK_TEXT, "report").click()
        WebDriverWait(chromium, 5).until(lambda d: d.find_elements(By.ID, "timeline"))
        bars = chromium.find_elements(By.CSS_SELECTOR, "#timeline rect.run")
        assert len(bars) == 2
        assert {bar.get_attribute("class") for bar in bars} == {"run succeeded"}
        chromium.execute_script("window.gatewaydPage = 'the same page';")
        assert daemon.cli("cron", "run", "report", "--wait").code == 0
        WebDriverWait(chromium, 2).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#timeline rect.run")) == 3
        )
        assert chromium.execute_script("return window.gatewaydPage;") == "the same page"
        shot = tmp_path / "dashboard.png"
        assert chromium.save_screenshot(str(shot))
        assert shot.stat().st_size > 1000


class TestPages:
    def test_a_run_page_shows_its_record_and_output(self, daemon: DaemonProcess) -> None:
        run = daemon.cli("cron", "runs", "--id", "report", "--json").json()[0]
        page = httpx.get(url_of(daemon) + f"runs/{run['run_id']}")
        assert page.status_code == 200
        assert run["run_id"] in page.text and "succeeded" in page.text

    def test_an_unknown_job_is_404(self, daemon: DaemonProcess) -> None:
        page = httpx.get(url_of(daemon) + "jobs/nope")
        assert page.status_code == 404 and "nope" in page.text
