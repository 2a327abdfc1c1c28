"""report.html in a real browser: Debian's headless Chromium, driven through chromedriver.

Asserts that the page loads with no console error and that every image renders with a non-zero
size, and saves a full-page screenshot (to $TRAINWISE_SCREENSHOT_DIR too, when set). Without
chromium/chromedriver the test is skipped, except in CI (CI set), where .ci/run installs them
and their absence is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")  # fmt: skip
WIDTH = 1200

IMAGES_JS = """
return Array.from(document.images).map(img => {
  const box = img.getBoundingClientRect();
  return {alt: img.alt, complete: img.complete, natural: img.naturalWidth * img.naturalHeight,
          width: box.width, height: box.height};
});
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        missing = "chromium" if not CHROMIUM else "chromedriver (Debian: chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"{missing} is not installed; .ci/run should have installed it")
        pytest.skip(f"{missing} is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument(f"--window-size={WIDTH},900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def open_page(driver, path: Path) -> tuple[list[dict], list[dict]]:
    """Load a file; return (console errors, images with their rendered sizes)."""
    driver.get(path.resolve().as_uri())
    driver.execute_script("return document.readyState")  # waits for the load event
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return errors, driver.execute_script(IMAGES_JS)


def test_report_loads_without_errors_and_every_image_renders(browser, sample_run, tmp_path):
    errors, images = open_page(browser, sample_run / "report.html")
    assert errors == []
    assert len(images) >= 8
    for img in images:
        assert img["complete"] and img["natural"] > 0, f"image {img['alt']!r} did not decode"
        assert img["width"] > 0 and img["height"] > 0, f"image {img['alt']!r} has no size"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(WIDTH, height)
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 50_000
    if os.environ.get("TRAINWISE_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["TRAINWISE_SCREENSHOT_DIR"]) / "report.png")
    browser.set_window_size(WIDTH, 900)


def test_the_harness_sees_console_errors_and_broken_images(browser, tmp_path):
    # The checks above must be able to fail: a page with both faults is caught.
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><html><head><link rel='icon' href='data:,'></head><body>"
        "<img alt='broken' src='data:image/png;base64,AAAA'>"
        "<script>console.error('boom')</script></body></html>"
    )
    errors, images = open_page(browser, page)
    assert any("boom" in e["message"] for e in errors)
    assert images[0]["natural"] == 0
