"""The documentation site as a reader gets it: `mkdocs build --strict` of the repository,
served over HTTP by a real server, opened in headless Chromium. Screenshots of the home page,
the settings reference and the architecture page go to test-output/; no page asks any host
but the site's own for anything (no CDN, no web font)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.browser import SCREENSHOTS, headless_chromium
from tests.support.environment import BIN, REPO

BUILD_TIMEOUT = 300  # the first build also fetches Mermaid with npm (tens of MB)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(folder)],
        cwd=REPO,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WARNING" not in done.stderr, done.stderr[-3000:]
    print(f"\nmkdocs build --strict: {seconds:.1f} s")
    return folder


@pytest.fixture(scope="module")
def served(site) -> Iterator[str]:
    """The built site over HTTP on 127.0.0.1 (a real server, as `mkdocs serve` would be)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def requested(browser) -> list[str]:
    """Every URL the page asked for since the last call (the performance log drains)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def foreign(urls: list[str], site: str) -> list[str]:
    own = urlsplit(site).netloc
    return [
        url
        for url in urls
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).netloc != own
    ]


def wait_for(condition, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def shadow_svgs(browser) -> list[dict]:
    """The <svg> elements inside shadow roots (Material draws each diagram in a closed one,
    which only the DevTools protocol sees into)."""
    document = browser.execute_cdp_cmd("DOM.getDocument", {"depth": -1, "pierce": True})
    found: list[dict] = []

    def walk(node: dict, in_shadow: bool) -> None:
        if in_shadow and node.get("nodeName") == "svg":
            found.append(node)
        for child in node.get("children", []):
            walk(child, in_shadow)
        for root in node.get("shadowRoots", []):
            walk(root, True)

    walk(document["root"], False)
    return found


def text_of(node: dict) -> str:
    own = node.get("nodeValue", "") if node.get("nodeType") == 3 else ""
    return own + " ".join(text_of(c) for c in node.get("children", []))


def errors_in_console(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_home_page_and_settings_reference_render_with_nothing_from_another_host(served, tmp_path):
    from selenium.webdriver.common.by import By

    SCREENSHOTS.mkdir(exist_ok=True)
    with headless_chromium(tmp_path, record=True) as browser:
        browser.get(served + "/")
        wait_for(lambda: "Where to find what" in browser.find_element(By.TAG_NAME, "body").text)
        assert browser.title.startswith("covertype")
        nav = browser.find_element(By.CSS_SELECTOR, "nav.md-nav--primary").text
        for section in ("Getting started", "Concepts", "Guides", "Reference", "Benchmarks"):
            assert section in nav
        home = SCREENSHOTS / "docs-home.png"
        browser.save_screenshot(str(home))
        assert not foreign(requested(browser), served)

        browser.get(served + "/reference/settings/")
        wait_for(lambda: browser.find_elements(By.ID, "COVERTYPE_SERVE_PORT"), what="the table")
        row = browser.find_element(By.ID, "COVERTYPE_SERVE_PORT").find_element(By.XPATH, "../..")
        assert row.text.split()[:4] == ["COVERTYPE_SERVE_PORT", "integer", "(1–65535)", "8085"]
        settings = SCREENSHOTS / "docs-settings.png"
        browser.save_screenshot(str(settings))
        assert not foreign(requested(browser), served)
        assert not errors_in_console(browser)
    for shot in (home, settings):
        assert shot.stat().st_size > 20_000
        print(f"\nscreenshot: {shot}")


def test_the_architecture_diagram_is_drawn_as_svg_from_the_sites_own_mermaid(served, tmp_path):
    from selenium.webdriver.common.by import By

    SCREENSHOTS.mkdir(exist_ok=True)
    with headless_chromium(tmp_path, record=True) as browser:
        browser.get(served + "/concepts/architecture/")
        wait_for(lambda: shadow_svgs(browser), timeout=60, what="the Mermaid diagram's SVG")
        [diagram] = shadow_svgs(browser)
        drawn = text_of(diagram)
        for label in ("source API", "data DB", "MLflow", "inference API", "Streamlit UI"):
            assert label in drawn, f"{label!r} not in the diagram"
        urls = requested(browser)
        assert served + "/assets/javascripts/mermaid.min.js" in urls
        assert not foreign(urls, served), foreign(urls, served)
        assert not errors_in_console(browser)
        host = browser.find_element(By.CSS_SELECTOR, "div.mermaid")
        assert host.size["height"] > 300  # drawn, not an empty box
        shot = SCREENSHOTS / "docs-architecture.png"
        browser.save_screenshot(str(shot))
    print(f"\nscreenshot: {shot}")


def test_search_works_offline(served, tmp_path):
    from selenium.webdriver.common.by import By

    with headless_chromium(tmp_path, record=True) as browser:
        browser.get(served + "/")
        browser.find_element(By.CSS_SELECTOR, "label.md-search__icon, .md-search__input").click()
        field = browser.find_element(By.CSS_SELECTOR, "input.md-search__input")
        field.send_keys("champion gate")
        wait_for(
            lambda: browser.find_elements(By.CSS_SELECTOR, "li.md-search-result__item"),
            what="search results",
        )
        results = browser.find_element(By.CSS_SELECTOR, ".md-search-result").text
        assert "champion" in results.lower()
        assert not foreign(requested(browser), served)
