"""Headless Debian Chromium driven by Selenium, with nothing downloaded at run time: the browser and
its driver are the system's (`chromium`, `chromium-driver`), and Selenium Manager is never asked
(a Service with an explicit driver path skips it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

INSTALL_HINT = (
    "Chromium is missing: the browser tests need Debian's chromium and chromium-driver "
    "(sudo apt-get install chromium chromium-driver; .ci/run does it), or point OMOI_CHROMIUM and "
    "OMOI_CHROMEDRIVER at a Chromium and its ChromeDriver."
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1600,1100",
)


def chromium_paths() -> tuple[str, str] | None:
    """(browser, driver), or None when either is missing."""
    browser = os.environ.get("OMOI_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    driver = os.environ.get("OMOI_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if Path(browser).is_file() and Path(driver).is_file():
        return browser, driver
    return None


def start_chromium(*, profile: Path, log_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError(INSTALL_HINT)
    browser, driver = paths
    options = Options()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=driver, log_output=str(log_path))
    return webdriver.Chrome(options=options, service=service)
