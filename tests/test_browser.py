"""The demo in a real browser: Debian's chromium driven by Playwright (no browser download).

Loads the page (tiny profile), checks the stand-in banner, uploads a WAV, clicks Generate and waits
for the image, then types a caption and waits for gallery results. Screenshots are saved in the
test's tmp dir; with FUSEMIX_UPDATE_SCREENSHOT=1 the audio -> image one is copied to
docs/screenshot.png (the README's picture).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from demo_server import tiny_demo

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
playwright_sync = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    # the stand-ins are built before the browser's clock starts
    with tiny_demo(tmp_path_factory.getbasetemp(), before_launch=lambda demo: demo.fusemix.models.tiny_suite()) as (
            _, url, _):
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(app_url)
        yield page
        context.close()
        browser.close()


def test_audio_to_image_in_the_browser(page, tmp_path):
    page.get_by_role("button", name="Generate image").wait_for()
    banner = page.locator(".standin-banner").first
    assert banner.is_visible()
    assert "Untrained stand-ins" in banner.inner_text()

    tab = page.locator("#tab-audio-image, [role=tabpanel]:visible").first
    tab.locator("input[type=file]").first.set_input_files(str(ROOT / "demo" / "examples" / "bell.wav"))
    page.locator("audio, .waveform-container, [data-testid=waveform-Sound]").first.wait_for(state="attached")
    page.get_by_label("Caption-bank baseline (zero training)").check()
    page.get_by_role("button", name="Generate image").click()
    img = page.locator("#audio-image-results img")
    img.wait_for(state="visible")
    page.wait_for_function("() => { const i = document.querySelector('#audio-image-results img');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    assert img.evaluate("i => i.naturalWidth") == 64
    info = page.locator("#audio-image-info").inner_text()
    assert "caption-bank baseline" in info and "Untrained stand-ins" in info
    shot = tmp_path / "audio_to_image.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert page.get_by_text("matched caption").first.is_visible()
    if os.environ.get("FUSEMIX_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, ROOT / "docs" / "screenshot.png")


def test_caption_to_images_in_the_browser(page, tmp_path):
    page.get_by_role("tab", name="Caption → Images").click()
    box = page.locator("#caption-images-query textarea")
    box.wait_for(state="visible")
    box.fill("a cat with green eyes")
    page.locator("#caption-images-run").click()
    thumbs = page.locator("#caption-images-results img")
    thumbs.first.wait_for(state="visible")
    page.wait_for_function("() => document.querySelectorAll('#caption-images-results img').length >= 6")
    assert thumbs.count() >= 6
    assert page.locator(".standin-banner:visible").count() >= 1  # the banner is on this tab too
    shot = tmp_path / "caption_to_images.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_bad_caption_shows_an_error_and_the_page_keeps_working(page):
    page.get_by_role("tab", name="Caption → Images").click()
    box = page.locator("#caption-images-query textarea")
    box.fill("x" * 400)
    page.locator("#caption-images-run").click()
    page.get_by_text("the limit is 300 characters").first.wait_for(state="visible")
    box.fill("a rocket on a launch pad")
    page.locator("#caption-images-run").click()
    page.wait_for_function("() => document.querySelectorAll('#caption-images-results img').length >= 1")


def test_every_tab_shows_the_standin_banner(page):
    for name in ["Audio → Image", "Caption → Images", "Sound → Images", "Image → Captions", "About"]:
        page.get_by_role("tab", name=name).click()
        banner = page.locator(".standin-banner:visible").first
        banner.wait_for(state="visible")
        assert "Untrained stand-ins" in banner.inner_text(), name
