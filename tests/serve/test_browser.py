"""One real browser: headless Chromium (Selenium) opens the models page, uploads an image
and reads the report's score and probability."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.serve.conftest import ServedRun, make_app


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def server(served_run: ServedRun) -> Iterator[str]:
    """The app on a free local port, served by uvicorn in a thread."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(make_app(served_run), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
def test_browser_uploads_and_reads_the_report(server: str, served_run: ServedRun) -> None:
    found = _chromium()
    if found is None:
        pytest.skip(
            "no browser: Debian's chromium and chromium-driver are not installed here "
            "(`apt-get install -y chromium chromium-driver`; .ci/run installs them)"
        )
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    try:
        driver.get(server + "/")
        link = driver.find_element(By.LINK_TEXT, served_run.folder.name)
        link.click()
        upload = served_run.data / "train" / "0000.png"
        driver.find_element(By.ID, "images").send_keys(str(upload))
        driver.find_element(By.ID, "submit").click()
        # the click returns before the report arrives when the answer is slow (the model
        # loads on its first audit): wait until the upload form is gone (a report or an
        # error page), not for a fixed time
        try:
            WebDriverWait(driver, 120).until(lambda d: not d.find_elements(By.ID, "audit"))
        except TimeoutException:
            pytest.fail(f"no report within 120 s: {driver.page_source[:2000]}")
        assert driver.find_elements(By.CLASS_NAME, "score"), driver.page_source[:2000]
        score = float(driver.find_element(By.CLASS_NAME, "score").text)
        probability = float(driver.find_element(By.CLASS_NAME, "probability").text)
        assert driver.find_element(By.CLASS_NAME, "filename").text == "0000.png"
        assert score <= 0.0  # the reconstruction score is a negated error
        assert 0.0 <= probability <= 1.0
        # the calibration histograms, inline SVG, the image's score marked on both panels
        histogram = driver.find_element(By.CSS_SELECTOR, "svg.histograms")
        markers = histogram.find_elements(By.CSS_SELECTOR, "line.marker")
        assert [float(m.get_attribute("data-score")) for m in markers] == pytest.approx(
            [score, score], rel=1e-5
        )
    finally:
        driver.quit()
