"""The HTML report in a real headless browser (Debian's chromium + chromedriver, driven by Selenium).

The page must render, every embedded image must decode (naturalWidth > 0), the console must stay free of
errors, and a full-page screenshot is taken and checked. .ci/run installs chromium before the tests.
"""

import io
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run does it)",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
]
IMAGES_JS = "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def report_page(tmp_path_factory, trained, base_dir, tokenized_dir, prepared_dir, fast_cfg) -> Path:
    from banglasenti.evaluation.comparison import run_evaluate

    out = tmp_path_factory.mktemp("html")
    dirs = {mode: str(path) for mode, (path, _) in trained.items()}
    splits = {s: str(prepared_dir / f"{s}.parquet") for s in ("train", "val", "test")}
    run_evaluate(
        fast_cfg,
        dirs,
        str(base_dir),
        str(tokenized_dir),
        str(out / "report.md"),
        splits,
        str(out / "report.html"),
        str(prepared_dir / "report.md"),
    )
    return out / "report.html"


def load(driver, page: Path) -> tuple[list, list]:
    """Open `page`; return its images' [alt, complete, naturalWidth, naturalHeight] and console errors."""
    driver.get(page.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    images = driver.execute_script(IMAGES_JS)
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return images, errors


def test_report_renders_with_every_image_and_no_console_error(browser, report_page):
    images, errors = load(browser, report_page)
    assert errors == []
    assert [alt for alt, *_ in images] == ["confusion matrices", "per-class F1", "training curves"]
    for alt, complete, width, height in images:
        assert complete and width > 200 and height > 100, alt
    assert browser.title == "LoRA vs full fine-tuning"
    headings = browser.execute_script("return Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
    assert headings[:2] == ["Headline", "Is the difference real?"] and "Data quality" in headings
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('table')[0].rows).map(r => r.cells[0].textContent)"
    )
    assert rows == ["model", "lora", "baseline", "reference", "majority class"]


def test_the_checks_catch_a_broken_image_and_a_console_error(browser, report_page, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(
        report_page.read_text(encoding="utf-8").replace(
            "</body>",
            '<img src="data:image/png;base64,iVBORw0KGgoAAAA=" alt="broken">'
            '<script>throw new Error("report script failed")</script></body>',
        ),
        encoding="utf-8",
    )
    images, errors = load(browser, broken)
    assert images[-1][0] == "broken" and images[-1][2] == 0
    assert any("report script failed" in e["message"] for e in errors)


def test_full_page_screenshot(browser, report_page, tmp_path):
    from PIL import Image

    load(browser, report_page)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, height)
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert image.height >= 1500  # three plots and six tables, not an empty or clipped page
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 100  # plots and text, not a blank page
    print(f"screenshot: {shot}")
