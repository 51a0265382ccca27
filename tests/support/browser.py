"""Headless Chromium (Debian's chromium and chromium-driver) for the UI screenshots."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from tests.support.environment import REPO

SCREENSHOTS = REPO / "test-output"  # where the UI tests leave their screenshots

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
)  # fmt: skip


@contextlib.contextmanager
def headless_chromium(tmp: Path, width: int = 1400, height: int = 1100, record: bool = False):
    """A Selenium driver of Debian's chromium and chromium-driver, quit at the end; `record`:
    every request it makes (Chrome's performance log) and the console, for `get_log`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "Debian packages chromium and chromium-driver (scripts/test.sh)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp / 'chromium'}")
    if record:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield browser
    finally:
        browser.quit()
