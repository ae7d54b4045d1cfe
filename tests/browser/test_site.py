"""The built site, looked at in a real browser (headless Chromium).

Every page of ``_build/html`` is opened through a local HTTP server. A page fails when:

* the browser console logs an error (SEVERE): a script that threw, a file that did not
  load, a request that tried to leave the machine;
* a plotly figure did not draw (its ``.plotly-graph-div`` has no ``.main-svg`` inside);
* a formula was not typeset by MathJax (served from the site), or MathJax reported an error;
* an executed cell left a traceback or stderr output (a stray warning) in the page;
* a link inside the site points to a file the site does not have;
* a code cell is wider than the text column, so that it scrolls sideways;
* a figure's title runs past the figure's edge.

Each page is saved as a full-page screenshot in ``$MINIGPT_SCREENSHOTS`` (default
``_build/screenshots``), to look at by eye, with ``summary.json`` beside them: per page, the
figures drawn, formulas typeset, and the passing and failing agreement checks shown (a
chapter may show a failing check on purpose, e.g. after perturbing an activation, so
those are counted for a reader to review, not failed on).

Run after building the site::

    jupyter-book build book
    pytest tests/browser -v

It skips, saying why, when the site is not built, or Chromium, chromedriver or selenium
is missing (``apt-get install chromium chromium-driver``; ``pip install selenium``), unless
``$MINIGPT_REQUIRE_BROWSER=1`` (set it in CI), which turns that skip into a failure.
Set ``$MINIGPT_SITE`` to test a site built elsewhere.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("MINIGPT_SITE", ROOT / "_build" / "html"))
SCREENSHOTS = Path(os.environ.get("MINIGPT_SCREENSHOTS", ROOT / "_build" / "screenshots"))
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", "_sphinx_design_static"}
FIGURE_TIMEOUT_S = 30.0  # plotly draws in well under a second; generous for a loaded CI box
MAX_SCREENSHOT_PX = 30_000  # Chromium refuses taller captures
FAILED_CHECK = "\u2718"  # the cross Comparison renders next to a hook that disagrees
PASSED_CHECK = "\u2714"  # and the tick next to one that agrees
MATH_TIMEOUT_S = 30.0
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


def site_pages(site: Path = SITE) -> list[str]:
    """Every HTML page of the built site, as paths relative to its root."""
    if not (site / "index.html").is_file():
        return []
    return sorted(
        path.relative_to(site).as_posix()
        for path in site.rglob("*.html")
        if not SKIP_DIRS.intersection(path.relative_to(site).parts[:-1])
    )


def _find(*names: str) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


def _skip_reason() -> str | None:
    if not (SITE / "index.html").is_file():
        return f"site not built: {SITE}/index.html is missing (run: jupyter-book build book)"
    if _find("chromium", "chromium-browser", "google-chrome") is None:
        return "Chromium not installed (apt-get install chromium chromium-driver)"
    if _find("chromedriver") is None:
        return "chromedriver not installed (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install selenium)"
    return None


SKIP = _skip_reason()
PAGES = site_pages() if SKIP is None else []
REQUIRE_ENV = "MINIGPT_REQUIRE_BROWSER"  # CI sets it to 1: then a skip would hide a broken setup
needs_browser = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass  # keep the test output free of one line per request


@contextlib.contextmanager
def _serve(directory: Path):
    """``directory`` served on a free local port; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def base_url():
    """The site served on a free local port for the duration of the module."""
    with _serve(SITE) as url:
        yield url


def test_the_checks_catch_a_broken_page(tmp_path_factory, request):
    """Each check fires on a page made to fail it; without a browser, CI fails here.

    The page logs a console error, holds a plotly div that never draws (with a title wider
    than the div), a stderr output, a link to a missing file and a code cell wider than
    its box.
    """
    if SKIP is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"${REQUIRE_ENV}=1 but the browser test cannot run: {SKIP}")
        pytest.skip(SKIP)
    browser = request.getfixturevalue("browser")
    folder = tmp_path_factory.mktemp("broken-site")
    (folder / "broken.html").write_text(
        "<html><body><script>console.error('deliberate')</script>"
        '<div class="plotly-graph-div" id="never-drawn" style="width:100px">'
        '<svg width="600" height="30"><text class="gtitle" y="20">'
        "A title far wider than its figure</text></svg></div>"
        '<div class="output stderr">a stray warning</div>'
        '<a href="missing.html">gone</a>'
        '<div class="cell_input"><pre style="width:200px;overflow:auto">'
        f"{'x' * 120}</pre></div></body></html>"
    )
    with _serve(folder) as url:
        browser.get_log("browser")
        browser.get(f"{url}/broken.html")
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        figures = browser.execute_script(FIGURES_JS)
        bad = browser.execute_script(BAD_OUTPUTS_JS)
        broken = _broken_local_links(browser, url)
        wide = browser.execute_script(WIDE_CODE_JS)
        cut = browser.execute_script(CUT_TITLES_JS)
    assert any("deliberate" in e["message"] for e in severe), severe
    assert figures["total"] == 1 and figures["drawn"] == 0 and figures["ids"] == ["never-drawn"]
    assert bad == ["output stderr: a stray warning"]
    assert broken == ["missing.html"]
    assert wide == ["x" * 80]
    assert cut == ["A title far wider than its figure"]


def open_chromium(profile: Path):
    """Headless Chromium with the fresh profile ``profile``, its console captured at every
    level (the JupyterLab test drives the same browser)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _find("chromium", "chromium-browser", "google-chrome")
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium then never tries to download one.
    driver = webdriver.Chrome(
        options=options, service=Service(executable_path=_find("chromedriver"))
    )
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a fresh profile, its console captured at every level."""
    driver = open_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


# Counts figures and how many of them plotly drew (it adds an svg.main-svg when it renders).
FIGURES_JS = """
const divs = Array.from(document.querySelectorAll('.plotly-graph-div'));
return {
  total: divs.length,
  drawn: divs.filter(d => d._fullLayout && d.querySelector('svg.main-svg')).length,
  ids: divs.filter(d => !(d._fullLayout && d.querySelector('svg.main-svg'))).map(d => d.id),
  plotly: typeof window.Plotly === 'undefined' ? null : window.Plotly.version,
};
"""

# Outputs that should never reach a reader: tracebacks and stderr (warnings, progress bars).
BAD_OUTPUTS_JS = """
return Array.from(document.querySelectorAll('.output.traceback, .output.stderr'))
  .map(e => e.className + ': ' + e.innerText.slice(0, 300));
"""


# Code cells wider than the text column (they would scroll sideways): the first line of each.
WIDE_CODE_JS = """
return Array.from(document.querySelectorAll('div.cell_input pre'))
  .filter(p => p.scrollWidth > p.clientWidth + 1)
  .map(p => p.innerText.split('\\n')[0].slice(0, 80));
"""


# Figure titles that run past the figure's edge (plotly does not wrap them): their text.
CUT_TITLES_JS = """
return Array.from(document.querySelectorAll('.plotly-graph-div')).map(div => {
  const title = div.querySelector('.gtitle');
  if (!title) return null;
  const t = title.getBoundingClientRect(), box = div.getBoundingClientRect();
  return t.right > box.right + 1 || t.left < box.left - 1 ? title.textContent.slice(0, 80) : null;
}).filter(text => text);
"""


# Sphinx marks formulas with .math; MathJax 3 puts an mjx-container inside each it typesets
# and an mjx-merror where the TeX did not parse.
MATH_JS = """
return {
  total: document.querySelectorAll('.math').length,
  typeset: document.querySelectorAll('.math mjx-container, mjx-container.MathJax').length,
  errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent.slice(0, 200)),
};
"""


# Absolute URLs of the links that stay on this site (the served origin).
LOCAL_LINKS_JS = """
return Array.from(document.querySelectorAll('a[href]'))
  .map(a => a.href)
  .filter(href => href.startsWith(window.location.origin + '/'));
"""


def _broken_local_links(driver, base_url: str) -> list[str]:
    broken = set()
    for href in driver.execute_script(LOCAL_LINKS_JS):
        path = urlsplit(href).path.removeprefix(urlsplit(base_url).path).lstrip("/")
        target = SITE / unquote(path)
        if not (target.is_file() or (target / "index.html").is_file()):
            broken.add(path)
    return sorted(broken)


def _wait_for_math(driver) -> dict:
    deadline = time.monotonic() + MATH_TIMEOUT_S
    while True:
        state = driver.execute_script(MATH_JS)
        if state["typeset"] >= state["total"] or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def _wait_for_figures(driver) -> dict:
    deadline = time.monotonic() + FIGURE_TIMEOUT_S
    while True:
        state = driver.execute_script(FIGURES_JS)
        if state["drawn"] == state["total"] or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def _screenshot(driver, page: str) -> Path:
    """Save the whole page (not just the window) as a PNG named after the page.

    The viewport is made as tall as the page for the capture (capturing beyond a normal
    viewport can leave tall pages shifted sideways), then put back.
    """
    width = driver.execute_script("return document.documentElement.clientWidth")
    height = min(
        driver.execute_script("return document.documentElement.scrollHeight"), MAX_SCREENSHOT_PX
    )
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        time.sleep(0.5)  # let responsive figures settle at the new size
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / (page.replace("/", "__").removesuffix(".html") + ".png")
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def _record_summary(page: str, facts: dict) -> None:
    """Add one page's facts to summary.json beside the screenshots."""
    path = SCREENSHOTS / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    summary[page] = facts
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


@needs_browser
@pytest.mark.parametrize("page", PAGES or ["(no pages)"])
def test_page_renders_cleanly(page, browser, base_url):
    if not PAGES:
        pytest.fail(f"{SITE} holds no HTML pages")
    browser.get_log("browser")  # drop anything left over from the previous page
    browser.get(f"{base_url}/{page}")
    figures = _wait_for_figures(browser)
    math = _wait_for_math(browser)
    bad_outputs = browser.execute_script(BAD_OUTPUTS_JS)
    broken_links = _broken_local_links(browser, base_url)
    wide_code = browser.execute_script(WIDE_CODE_JS)
    cut_titles = browser.execute_script(CUT_TITLES_JS)
    count = "return document.body.innerText.split(arguments[0]).length - 1"
    shot = _screenshot(browser, page)
    _record_summary(
        page,
        {
            "figures": figures["total"],
            "figures_drawn": figures["drawn"],
            "formulas": math["total"],
            "formulas_typeset": math["typeset"],
            "checks_passed": browser.execute_script(count, PASSED_CHECK),
            "checks_failed": browser.execute_script(count, FAILED_CHECK),
            "screenshot": shot.name,
        },
    )
    errors = [
        entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
    ]

    problems = []
    if errors:
        problems.append("console errors:\n  " + "\n  ".join(errors))
    if figures["drawn"] != figures["total"]:
        problems.append(
            f"{figures['total'] - figures['drawn']} of {figures['total']} plotly figures did not "
            f"draw within {FIGURE_TIMEOUT_S:.0f} s (ids {figures['ids']}); "
            f"Plotly on the page: {figures['plotly']}"
        )
    if math["typeset"] < math["total"]:
        problems.append(
            f"{math['total'] - math['typeset']} of {math['total']} formulas not typeset "
            f"within {MATH_TIMEOUT_S:.0f} s"
        )
    if math["errors"]:
        problems.append("MathJax errors: " + "; ".join(math["errors"]))
    if broken_links:
        problems.append(f"links to files the site does not have: {broken_links}")
    if wide_code:
        problems.append(
            f"{len(wide_code)} code cells scroll sideways at 1280 px (first lines): {wide_code}"
        )
    if cut_titles:
        problems.append(f"figure titles cut off at the figure's edge: {cut_titles}")
    if bad_outputs:
        problems.append("cell outputs with a traceback or stderr:\n  " + "\n  ".join(bad_outputs))
    assert not problems, f"{page} (screenshot: {shot}):\n" + "\n".join(problems)


@needs_browser
def test_every_chapter_page_was_built():
    """Each notebook in book/ listed in the TOC became a page (nothing silently dropped)."""
    # The site is built into <root>/_build/html, next to the _toc.yml it was built from.
    candidates = [SITE.parents[1] / "_toc.yml", SITE.parents[1] / "book" / "_toc.yml"]
    toc_path = next((path for path in candidates if path.is_file()), ROOT / "_toc.yml")
    toc = toc_path.read_text(encoding="utf-8")
    listed = [
        line.split("file:", 1)[1].strip()
        for line in toc.splitlines()
        if line.strip().startswith("- file:")
    ]
    missing = [name for name in listed if not (SITE / f"{name}.html").is_file()]
    assert listed, "_toc.yml lists no files"
    assert not missing, f"pages in _toc.yml but not in {SITE}: {missing}"


@needs_browser
def test_search_finds_the_chapters(browser, base_url):
    """The search page works offline: a word from the chapters brings back result links."""
    if not PAGES:
        pytest.fail(f"{SITE} holds no HTML pages")
    browser.get(f"{base_url}/search.html?q=attention")
    deadline = time.monotonic() + FIGURE_TIMEOUT_S
    results: list[str] = []
    while not results and time.monotonic() < deadline:
        time.sleep(0.2)
        results = browser.execute_script(
            "return Array.from(document.querySelectorAll('#search-results li a'))"
            ".map(a => a.getAttribute('href'))"
        )
    assert results, "search.html?q=attention returned no results"
    assert all(not href.startswith("http") for href in results), results


# Chapter 8's attention view (minigpt.notebook.attention_view), found by its layout.meta.
ATTENTION_VIEW_JS = """
const div = Array.from(document.querySelectorAll('.plotly-graph-div'))
  .find(d => d.layout && d.layout.meta === arguments[0]);
if (!div) return null;
const hover = div.querySelector('.hoverlayer .hovertext');
return {
  id: div.id,
  drawn: !!(div._fullLayout && div.querySelector('svg.main-svg')),
  visible: div.data.map(t => t.visible === true),
  names: div.data.map(t => t.name),
  buttons: div.querySelectorAll('.updatemenu-button').length,
  hover: hover ? hover.textContent : null,
};
"""


def _wait_for(driver, script, arg, done, timeout=FIGURE_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while True:
        state = driver.execute_script(script, arg)
        if (state and done(state)) or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


@needs_browser
def test_the_attention_view_picks_a_head_and_shows_tokens_on_hover(browser, base_url):
    """On chapter 8's page, the reader clicks a head's button and hovers over a cell."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from minigpt.notebook import ATTENTION_VIEW

    page = "08_interp.html"
    if page not in PAGES:
        pytest.fail(f"{page} is not in the built site {SITE}")
    browser.get(f"{base_url}/{page}")
    _wait_for_figures(browser)
    view = browser.execute_script(ATTENTION_VIEW_JS, ATTENTION_VIEW)
    assert view is not None, f"no figure with layout.meta {ATTENTION_VIEW!r} on {page}"
    assert view["drawn"], "the attention view did not draw"
    n = len(view["visible"])
    assert n >= 2 and view["buttons"] == n, view
    assert view["visible"] == [True] + [False] * (n - 1), view["visible"]

    div = browser.find_element(By.ID, view["id"])
    buttons = div.find_elements(By.CSS_SELECTOR, ".updatemenu-button")
    ActionChains(browser).move_to_element(buttons[-1]).click().perform()
    picked = [False] * (n - 1) + [True]
    view = _wait_for(browser, ATTENTION_VIEW_JS, ATTENTION_VIEW, lambda s: s["visible"] == picked)
    assert view["visible"] == picked, f"clicking the last head's button left {view['visible']}"

    drag = div.find_element(By.CSS_SELECTOR, ".nsewdrag")
    ActionChains(browser).move_to_element(drag).move_by_offset(3, 3).perform()
    view = _wait_for(browser, ATTENTION_VIEW_JS, ATTENTION_VIEW, lambda s: s["hover"])
    hover = view["hover"] or ""
    assert view["names"][-1] in hover, f"hover shows {hover!r}, not {view['names'][-1]}"
    assert "query" in hover and "key" in hover and "weight" in hover, hover


def _stub_count(notebook: Path) -> int:
    cells = json.loads(notebook.read_text())["cells"]
    return sum(
        "".join(c["source"]).count("raise NotImplementedError  # your code here")
        for c in cells
        if c["cell_type"] == "code"
    )


# How many checks on the page report their stub unwritten (a cell may check two); every
# solution's fold, with whether it is open.
EXERCISES_JS = """
const outputs = Array.from(document.querySelectorAll('div.cell_output'));
return {
  unwritten: outputs.map(o => o.textContent.split('is not written yet:').length - 1)
    .reduce((a, b) => a + b, 0),
  solutions: Array.from(document.querySelectorAll('details.minigpt-solution')).map(d => d.open),
  report: (outputs.map(o => o.textContent.trim()).find(t => t.startsWith('Your exercises')) || ''),
};
"""


@needs_browser
@pytest.mark.parametrize("chapter", sorted(p.stem for p in (ROOT / "book").glob("0*.ipynb")))
def test_the_site_was_built_with_every_stub_unwritten(chapter, browser, base_url):
    """The site runs each chapter as a reader first opens it: every check on the page says its
    stub is not written yet, lets the solution stand in, and the solution stays folded."""
    stubs = _stub_count(ROOT / "book" / f"{chapter}.ipynb")
    browser.get(f"{base_url}/{chapter}.html")
    deadline = time.monotonic() + FIGURE_TIMEOUT_S
    while True:  # the page can still be arriving when get() returns: wait for its end
        found = browser.execute_script(EXERCISES_JS)
        complete = browser.execute_script("return document.readyState") == "complete"
        if complete and (found["report"] or not stubs) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert found["unwritten"] == stubs, found
    assert found["solutions"] == [False] * len(found["solutions"]), "a solution is open"
    if stubs:
        assert found["report"].startswith(f"Your exercises in this chapter: 0 of {stubs} "), found
        assert len(found["solutions"]) >= 1
