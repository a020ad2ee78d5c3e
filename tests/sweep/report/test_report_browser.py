"""The generated report in a real browser: headless Chromium loads it from a file URL, logs no
JavaScript error, and every plot container holds a rendered SVG. A screenshot is kept under
``test-artifacts/`` (git-ignored) for a human to look at.

Needs Debian's ``chromium`` and ``chromium-driver`` packages and the ``selenium`` package;
skipped with the reason when any is missing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweep.report import build_report
from tests.sweep.synthetic_study import write_synthetic_study

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        return "chromium is not installed (apt-get install chromium chromium-driver)"
    if not Path(CHROMEDRIVER).exists() and shutil.which("chromedriver") is None:
        return "chromedriver is not installed (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--window-size=1400,1000", f"--user-data-dir={profile}",
        # Parallel coordinates draw with WebGL; without a GPU, Chromium needs this to use its
        # software renderer instead of refusing (the page is a local, trusted file).
        "--enable-unsafe-swiftshader",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never goes looking for (or downloads) one.
    path = CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver")
    browser = webdriver.Chrome(service=Service(executable_path=path), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def _load(driver: object, page: Path) -> None:
    driver.get(page.resolve().as_uri())  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    script = (
        "const divs = Array.from(document.querySelectorAll('.plotly-graph-div'));"
        "return document.readyState === 'complete' && divs.every("
        "  d => d.querySelector('svg.main-svg') !== null);"
    )
    while time.monotonic() < deadline:
        if driver.execute_script(script):  # type: ignore[attr-defined]
            return
        time.sleep(0.25)


def _errors(driver: object) -> list[dict[str, object]]:
    return [entry for entry in driver.get_log("browser")  # type: ignore[attr-defined]
            if entry.get("level") == "SEVERE"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_synthetic_study(tmp_path_factory.mktemp("browser") / "study", optuna_db=True)
    return build_report(folder, partial=True)


def test_report_loads_without_javascript_errors(driver: object, report: Path) -> None:
    _load(driver, report)
    assert _errors(driver) == []


def test_every_plot_container_holds_a_rendered_svg(driver: object, report: Path) -> None:
    _load(driver, report)
    counts = driver.execute_script(  # type: ignore[attr-defined]
        "const divs = Array.from(document.querySelectorAll('.plotly-graph-div'));"
        "return [divs.length, divs.filter(d => d.querySelector('svg.main-svg')).map(d => d.id),"
        "        divs.filter(d => !d.querySelector('svg.main-svg')).map(d => d.id)];"
    )
    total, rendered, missing = counts
    assert total >= 10
    assert missing == []
    assert len(rendered) == total


def test_screenshot_of_the_whole_report_is_kept(driver: object, report: Path) -> None:
    _load(driver, report)
    height = driver.execute_script("return document.body.scrollHeight")  # type: ignore[attr-defined]
    driver.set_window_size(1400, min(int(height), 16000))  # type: ignore[attr-defined]
    time.sleep(0.5)  # let Plotly's responsive resize settle
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    assert driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
    assert shot.stat().st_size > 10_000


_VERDICT_GEOMETRY = """
const table = document.getElementById('verdict-table');
const last = table.querySelector('thead th:last-child');
const box = table.parentElement;
const claims = document.getElementById('claims');
const r = last.getBoundingClientRect(), b = box.getBoundingClientRect();
return {last: last.textContent, right: r.right, boxRight: b.right,
        scrolls: box.scrollWidth > box.clientWidth,
        viewport: document.documentElement.clientWidth,
        tableBottom: table.getBoundingClientRect().bottom,
        claimsTop: claims.getBoundingClientRect().top};
"""


@pytest.mark.parametrize("width", [1024, 1400, 1920])
def test_no_verdict_column_is_hidden_under_the_claims(
    driver: object, report: Path, width: int
) -> None:
    driver.set_window_size(width, 1000)  # type: ignore[attr-defined]
    try:
        _load(driver, report)
        found = driver.execute_script(_VERDICT_GEOMETRY)  # type: ignore[attr-defined]
    finally:
        driver.set_window_size(1400, 1000)  # type: ignore[attr-defined]
    assert found["last"] == "better arm"
    assert found["claimsTop"] >= found["tableBottom"]  # the claims follow the table
    if width >= 1400:  # common desktop widths: the whole table is in view
        assert found["right"] <= min(found["viewport"], found["boxRight"] + 1)
    else:  # narrower: the table scrolls inside its own box, never under another element
        assert found["right"] <= found["boxRight"] + 1 or found["scrolls"]


def test_empty_study_report_loads_without_errors(driver: object, tmp_path: Path) -> None:
    (tmp_path / "study.yaml").write_text("name: empty\n")
    page = build_report(tmp_path)
    _load(driver, page)
    assert _errors(driver) == []
    title = driver.find_element("css selector", "h1").text  # type: ignore[attr-defined]
    assert "empty" in title


def test_the_error_check_catches_a_broken_page(driver: object, tmp_path: Path) -> None:
    # Guards the checks above: a page that throws must be reported as an error.
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>notDefined();</script></body></html>")
    _load(driver, page)
    assert any("notDefined" in str(e.get("message")) for e in _errors(driver))
