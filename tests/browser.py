"""The browser the dashboard's test drives: Debian's ``chromium`` through its
``chromedriver`` (``$GATEWAYD_TEST_CHROMIUM`` and ``$GATEWAYD_TEST_CHROMEDRIVER``
name others). Nothing is ever downloaded. Without them the browser test is
skipped, and the run's last lines say so; with ``CI`` set, a missing browser
fails the run.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = os.environ.get("GATEWAYD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("GATEWAYD_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
HOW = "install Debian's browser: apt-get update && apt-get install -y chromium chromium-driver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
)


@functools.cache
def missing() -> str | None:
    """Why the browser cannot be driven, or ``None`` if it can."""
    for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if shutil.which(path) is None:
            return f"no {name} at {path}"
    return None


@contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium on a fresh profile directory, driven by its chromedriver."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
