"""The web page, driven in headless Chromium against a live `imdb-sentiment serve` process.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package; skipped with a
reason when any is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _serving import free_port, wait_ready

CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = (
    os.environ.get("CHROMEDRIVER_BIN") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
)
API_KEY = "web-test-key"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
    pytest.skip(
        "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def server_url(trained_run: Path) -> Iterator[str]:
    """`imdb-sentiment serve` in a subprocess on a free loopback port, with an API key."""
    port = free_port()
    env = {**os.environ, "IMDB_SENTIMENT_API_KEY": API_KEY}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imdb_sentiment",
            "serve",
            str(trained_run),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        with httpx.Client(base_url=base, timeout=5) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"serve exited: {proc.stdout.read() if proc.stdout else ''}")
                try:
                    wait_ready(client, timeout=deadline - time.monotonic())
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1000,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def classify(driver: Any, base: str, review: str, key: str | None) -> None:
    d = driver  # selenium's WebDriver; typed loosely to keep the import optional
    d.get(base + "/")
    box = d.find_element(By.ID, "review")
    box.send_keys(review)
    if key:
        d.find_element(By.ID, "apikey").send_keys(key)
    d.find_element(By.ID, "submit").click()


def test_page_shows_label_probability_and_read_share(
    browser: Any, server_url: str, tmp_path: Path
) -> None:
    classify(browser, server_url, "A wonderful, moving film. Brilliant and superb.", API_KEY)
    wait = WebDriverWait(browser, 20)
    wait.until(ec.visibility_of_element_located((By.ID, "result")))
    label = browser.find_element(By.ID, "label").text.lower()
    assert label in ("positive", "negative")
    prob = float(browser.find_element(By.ID, "prob").text)
    assert 0.0 <= prob <= 1.0
    assert browser.find_element(By.ID, "read").text == "100.0%"
    assert "tokens" in browser.find_element(By.ID, "tokens").text
    assert browser.find_element(By.ID, "version").text.startswith("model tiny:")
    browser.save_screenshot(str(tmp_path / "page.png"))


def test_page_reports_a_cut_review(browser: Any, server_url: str) -> None:
    classify(browser, server_url, "dull boring film " * 60, API_KEY)
    WebDriverWait(browser, 20).until(ec.visibility_of_element_located((By.ID, "result")))
    read = browser.find_element(By.ID, "read").text
    assert read.endswith("%") and float(read[:-1]) < 100
    assert "cut" in browser.find_element(By.ID, "tokens").text


def test_page_says_why_without_the_key(browser: Any, server_url: str) -> None:
    classify(browser, server_url, "great film", None)
    WebDriverWait(browser, 20).until(ec.text_to_be_present_in_element((By.ID, "error"), "API key"))
    assert not browser.find_element(By.ID, "result").is_displayed()
