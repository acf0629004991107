"""The console in a real headless Chromium (Debian's chromium + chromedriver, driven by
selenium) against the real stack (tests/console/conftest.py): the page loads, a text gets its
label with probabilities and token attributions, the registry and rollout panels show what
the registry and the decision record say, the charts draw lines from Prometheus, and the MLflow
link opens MLflow's UI. Screenshot: build/screenshots/console.png (CI artifact) and
docs/img/console.png (the README's). The page's load time (Navigation Timing) is written to
build/screenshots/console-timing.json and printed."""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from typing import Any

import httpx
import pytest

from tests.console.conftest import REPO, Stack
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

SHOTS = REPO / "build" / "screenshots"
#: Generous bound on the page's load (the target is < 1 s; the measured value is reported).
LOAD_BOUND_MS = 5000


def _wait(driver: Any, script: str, timeout: float = 30.0, what: str = "", *args: Any) -> Any:
    return wait_until(
        lambda: driver.execute_script(script, *args),
        timeout=timeout,
        interval=0.1,
        what=what or script,
    )


def test_console_in_a_browser(stack: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    timing = {"console_warm_up_s": stack.warm_up_seconds}
    for visit in ("first", "again"):  # a new browser profile, then a reload
        driver.get(stack.console_url + "/")
        t = _wait(
            driver,
            """
            const n = performance.getEntriesByType('navigation')[0];
            return n && n.loadEventEnd > 0 ? {load_ms: n.loadEventEnd,
                dom_content_loaded_ms: n.domContentLoadedEventEnd, response_end_ms: n.responseEnd,
                transfer_bytes: n.transferSize} : null;""",
            what="the load event",
        )
        t["panels_filled_ms"] = _wait(
            driver,
            "return window.sentiops && window.sentiops.readyAt",
            60,
            "all panels and charts filled",
        )
        timing[visit] = t
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "console-timing.json").write_text(json.dumps(timing, indent=2))
    for visit in ("first", "again"):
        t = timing[visit]
        print(
            f"\nconsole page ({visit} visit): load event {t['load_ms']:.0f} ms, "
            f"DOMContentLoaded {t['dom_content_loaded_ms']:.0f} ms, every panel and chart "
            f"filled at {t['panels_filled_ms']:.0f} ms"
        )
    assert timing["first"]["load_ms"] < LOAD_BOUND_MS, timing

    # registry: the champion, the previous one, the gate's decisions, links to MLflow's UI
    registry = driver.find_element(By.ID, "registry").text
    assert "champion" in registry and f"v{stack.champion}" in registry
    assert "previous" in registry and f"v{stack.previous}" in registry
    assert "approved" in registry
    link = driver.find_element(By.ID, "mlflow-link").get_attribute("href")
    assert link.startswith(stack.mlflow_url)
    assert httpx.get(link, timeout=30).status_code == 200  # MLflow's UI answers the link
    version_links = [
        a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#registry a")
    ]
    assert f"{stack.mlflow_url}/#/models/sentiops-sentiment/versions/{stack.champion}" in (
        version_links
    )
    # rollout: the last decision record
    rollout = driver.find_element(By.ID, "rollout").text
    assert "promoted" in rollout and f"canary v{stack.champion} vs stable v{stack.previous}" in (
        rollout
    )
    assert "rejected" in registry or "rejected" in driver.find_element(
        By.CSS_SELECTOR, "#registry details"
    ).get_attribute("textContent")
    # drift and live accuracy tables, traffic
    drift = driver.find_element(By.ID, "drift").text
    assert f"v{stack.champion}" in drift
    assert f"v{stack.champion}" in driver.find_element(By.ID, "live_accuracy").text
    assert f"v{stack.previous}" in driver.find_element(By.ID, "estimate").text
    assert f"v{stack.champion}" in driver.find_element(By.ID, "traffic").text

    # try a text
    box = driver.find_element(By.ID, "text")
    box.clear()
    box.send_keys("the service was great and amazing, i love it")
    driver.find_element(By.ID, "classify").click()
    label = _wait(
        driver,
        "const r = document.getElementById('result');"
        "return !r.hidden && document.getElementById('label').textContent;",
        what="a label",
    )
    assert label == "positive"
    bars = driver.find_elements(By.CSS_SELECTOR, "#probabilities .bar")
    assert sorted(b.get_attribute("data-label") for b in bars) == [
        "negative",
        "neutral",
        "positive",
    ]
    tokens = driver.find_elements(By.CSS_SELECTOR, "#attributions .token")
    assert tokens and any(t.text in ("great", "amazing", "love") for t in tokens)
    assert f"model v{stack.champion}" in driver.find_element(By.ID, "version").text
    # a person's label for it goes to the predictor's feedback API
    driver.find_element(By.CSS_SELECTOR, '#feedback-buttons button[data-label="positive"]').click()
    stored = _wait(
        driver,
        "const e = document.getElementById('feedback-ok');return e && e.textContent;",
        what="the label stored",
    )
    assert 'label "positive" stored' in stored

    # the charts: a canvas per chart with points from Prometheus
    for kind in ("drift", "accuracy", "estimate", "traffic"):
        chart = driver.find_element(By.ID, f"chart-{kind}")
        # charts refresh every 10 s; a young stack may have two points at first
        points = _wait(
            driver,
            "const n = +document.getElementById(arguments[0]).dataset.points;"
            "return n >= 3 ? n : 0;",
            45,
            f"3 points on the {kind} chart",
            f"chart-{kind}",
        )
        assert points >= 3, (kind, points, chart.text)
        assert chart.find_elements(By.CSS_SELECTOR, ".plot canvas"), kind
        drawn = driver.execute_script(
            "const u = window.sentiops.charts[arguments[0]];"
            "return u ? u.data.slice(1).map(s => s.filter(v => v !== null).length) : null;",
            kind,
        )
        assert drawn and all(n > 0 for n in drawn), (kind, drawn)

    # an empty text: the page shows the API's 4xx reason, no result
    box.clear()
    box.send_keys("   ")
    driver.find_element(By.ID, "classify").click()
    error = _wait(
        driver,
        "const e = document.getElementById('try-error');return !e.hidden && e.textContent;",
        what="an error",
    )
    assert "empty" in error

    # back to the classified text for the picture
    box.clear()
    box.send_keys("the service was great and amazing, i love it")
    driver.find_element(By.ID, "classify").click()
    _wait(driver, "return !document.getElementById('result').hidden", what="a label")
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)
    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth,"
        " Math.ceil(document.querySelector('footer').getBoundingClientRect().bottom)]"
    )
    png = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    shot = SHOTS / "console.png"
    shot.write_bytes(base64.b64decode(png["data"]))
    assert shot.stat().st_size > 10_000
    if os.environ.get("SENTIOPS_UPDATE_DOCS"):  # refresh the README's picture on request
        docs = REPO / "docs" / "img" / "console.png"
        docs.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, docs)


def test_page_assets_are_small_and_cached(stack: Stack) -> None:
    """What keeps the page fast: a few kB of HTML/JS/CSS plus uPlot, nothing from elsewhere."""
    page = httpx.get(stack.console_url + "/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "http://" not in page.text and "https://" not in page.text  # no external assets
    sizes = {}
    for asset in ("uPlot.iife.min.js", "uPlot.min.css", "console.js", "console.css"):
        r = httpx.get(f"{stack.console_url}/static/{asset}", timeout=10)
        assert r.status_code == 200, asset
        sizes[asset] = len(r.content)
    assert sum(sizes.values()) + len(page.content) < 150_000, sizes
    licence = httpx.get(f"{stack.console_url}/static/uPlot.LICENSE", timeout=10)
    assert "MIT License" in licence.text
