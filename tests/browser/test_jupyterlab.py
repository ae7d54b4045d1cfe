"""A chapter worked as a reader works it: in a real JupyterLab, in headless Chromium.

JupyterLab runs on a copy of ``book/`` (so typing never touches the repository's chapter),
with fresh settings and workspaces. The test opens chapter 4 and checks that:

* no solution is in view: the solution cells' source is folded and, after "Run All", the
  solution they print stays folded, yet a reader can open one and read it;
* a wrong answer typed into a stub (the exact GELU where GPT-2 uses its tanh approximation)
  gets its diagnosis after "Run All", and the chapter stops there: the check ran on the
  reader's code, not on a solution.

Run with ``pytest tests/browser/test_jupyterlab.py -v``. It skips when Chromium, chromedriver,
selenium or JupyterLab is missing, unless ``$MINIGPT_REQUIRE_BROWSER=1`` (CI), which fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_site import REQUIRE_ENV, _find, open_chromium

ROOT = Path(__file__).resolve().parents[2]
CHAPTER = "04_mlp.ipynb"
WRONG_GELU = "def gelu(x): return torch.nn.functional.gelu(x)"
RIGHT_GELU = 'def gelu(x): return torch.nn.functional.gelu(x, approximate="tanh")'
DIAGNOSIS = "that is the exact GELU"
SOLUTION_LINE = "return 0.5 * x * (1 + torch.tanh(inner))"  # printed by the folded cell
LAB_START_S = 90.0
RUN_ALL_S = 240.0


def _skip_reason() -> str | None:
    if _find("chromium", "chromium-browser", "google-chrome") is None:
        return "Chromium not installed (apt-get install chromium chromium-driver)"
    if _find("chromedriver") is None:
        return "chromedriver not installed (apt-get install chromium-driver)"
    for module in ("selenium", "jupyterlab"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} not installed"
    return None


SKIP = _skip_reason()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a copy of the book on a free port; yields its base URL."""
    if SKIP is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"${REQUIRE_ENV}=1 but the JupyterLab test cannot run: {SKIP}")
        pytest.skip(SKIP)
    home = tmp_path_factory.mktemp("jupyterlab")
    book = home / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build", ".ipynb_*"))
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No news or update prompt over the notebook.
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        MINIGPT_DEVICE="cpu",
    )
    log = (home / "lab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            f"--ServerApp.root_dir={book}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + LAB_START_S
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=5)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                log.close()
                pytest.fail(f"JupyterLab did not start:\n{(home / 'lab.log').read_text()}")
            time.sleep(0.5)
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = open_chromium(tmp_path_factory.mktemp("chromium-lab-profile"))
    yield driver
    driver.quit()


# Every cell as the reader sees it: whether its source is folded (JupyterLab then puts a
# placeholder in its place and builds no editor), its source, whether the source
# is in view, its outputs' text, and whether the outputs are in view.
CELLS_JS = """
const seen = el => !!el && el.checkVisibility({visibilityProperty: true, opacityProperty: true});
return Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell')).map(cell => {
  const editor = cell.querySelector('.jp-InputArea-editor');
  const outputs = cell.querySelector('.jp-OutputArea');
  return {
    folded_source: !!cell.querySelector('.jp-InputPlaceholder'),
    source: editor ? editor.textContent : '',
    source_seen: seen(editor),
    output: outputs ? outputs.textContent : '',
    output_seen: seen(outputs) && outputs.textContent.trim() !== '',
  };
});
"""


# Whether the deepest elements holding the text arguments[0] are in view: [] when none holds it.
TEXT_SEEN_JS = """
const text = arguments[0];
const holders = Array.from(document.querySelectorAll('.jp-Notebook *')).filter(
  el => el.textContent.includes(text)
    && !Array.from(el.children).some(child => child.textContent.includes(text)));
return holders.map(el => el.checkVisibility({visibilityProperty: true, opacityProperty: true}));
"""


def _wait(predicate, timeout: float, what: str, browser):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    cells = browser.execute_script(CELLS_JS)
    shown = "\n".join(f"{c['source'][:60]!r} -> {c['output'][:200]!r}" for c in cells)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; the cells:\n{shown}")


def _click_menu(browser, menu: str, item: str):
    from selenium.webdriver.common.by import By

    for entry in browser.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item"):
        if entry.text.strip() == menu:
            entry.click()
            break
    else:
        pytest.fail(f"no {menu!r} menu in JupyterLab's menu bar")
    for entry in browser.find_elements(By.CSS_SELECTOR, ".lm-Menu-item"):
        if entry.text.strip().startswith(item) and entry.is_displayed():
            entry.click()
            return
    pytest.fail(f"no {item!r} in the {menu!r} menu")


def _type_into_stub(browser, answer: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    stub = next(
        cell
        for cell in browser.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")
        if "def gelu(x" in cell.get_attribute("textContent")
        and "check_gelu" not in cell.get_attribute("textContent")
    )
    editor = stub.find_element(By.CSS_SELECTOR, ".cm-content")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", editor)
    editor.click()
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys(answer)
    _wait(lambda: editor.text.strip() == answer, 10, f"{answer!r} in the stub", browser)


def _run_all_until(browser, text: str, what: str) -> list[dict]:
    _click_menu(browser, "Run", "Run All Cells")
    return _wait(
        lambda: (
            (c := browser.execute_script(CELLS_JS))
            and any(text in cell["output"] for cell in c)
            and c
        ),
        RUN_ALL_S,
        what,
        browser,
    )


def test_a_reader_sees_no_solution_and_gets_the_diagnosis_of_their_own_code(lab, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{lab}/lab/tree/{CHAPTER}")
    cells = _wait(
        lambda: (c := browser.execute_script(CELLS_JS)) and len(c) > 20 and c,
        LAB_START_S,
        f"{CHAPTER} to open",
        browser,
    )
    folded = [c for c in cells if c["folded_source"]]
    assert len(folded) == 2, "chapter 4 has two folded solutions"
    assert not any(c["source_seen"] or c["output"] for c in folded)
    assert not any(SOLUTION_LINE in c["source"] + c["output"] for c in cells)

    # 1. A wrong answer: the exact GELU. Run All stops at its check, with the diagnosis.
    _type_into_stub(browser, WRONG_GELU)
    cells = _run_all_until(browser, DIAGNOSIS, "the diagnosis of the typed answer")
    check = next(c for c in cells if DIAGNOSIS in c["output"])
    assert "gelu = check_gelu(gelu" in check["source"] and check["output_seen"]
    assert "not written yet" not in check["output"]  # the reader's code was the one checked
    later = cells[cells.index(check) + 1 :]
    ran = [(c["source"][:40], c["output"][:80]) for c in later if c["output"].strip()]
    assert not ran, f"Run All went past a failed check: {ran}"

    # 2. A right answer: the chapter runs to the end, the next exercise still a stub. The
    # solutions' cells ran and printed their solutions, out of view.
    _type_into_stub(browser, RIGHT_GELU)
    cells = _run_all_until(browser, "1 of 2 written and correct", "the chapter's report")
    check = next(c for c in cells if "gelu = check_gelu(gelu" in c["source"])
    assert check["output"].startswith("Correct: gelu(blocks.0.mlp.hook_pre)"), check["output"]
    mlp = next(c for c in cells if "mlp_forward = check_mlp(" in c["source"])
    assert "`mlp_forward` is not written yet" in mlp["output"]
    folded = [c for c in cells if c["folded_source"]]
    assert len(folded) == 2 and not any(c["source_seen"] for c in folded)
    assert SOLUTION_LINE in folded[0]["output"]  # printed, ...
    assert browser.execute_script(TEXT_SEEN_JS, SOLUTION_LINE) == [False]  # ... but folded

    # 3. The reader opens the GELU solution, and reads it.
    summary = browser.find_element(By.CSS_SELECTOR, ".jp-OutputArea details summary")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary)
    summary.click()
    _wait(
        lambda: browser.execute_script(TEXT_SEEN_JS, SOLUTION_LINE) == [True],
        10,
        "the unfolded solution to show",
        browser,
    )
