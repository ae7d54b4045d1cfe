"""The book's Sphinx extension and the timings recorder, on a tiny Sphinx project (~2 s).

No browser needed: these check the HTML that ``book/_ext/minigpt_book.py`` produces
(plotly.js copied and loaded only where a figure is, repeated inline scripts dropped, the
timings table) and the JSON that ``book/_ext/record_timings.py`` writes from a JUnit file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

EXT_DIR = Path(__file__).resolve().parents[2] / "book" / "_ext"
sys.path.insert(0, str(EXT_DIR))

import minigpt_book  # noqa: E402
import record_timings  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="3">
<testcase classname="book.01_tokenization.ipynb" name="01_tokenization.ipynb" time="41.5" />
<testcase classname="book.00_reference.ipynb" name="00_reference.ipynb" time="12.25">
  <failure message="cell failed">Traceback ...</failure></testcase>
<testcase classname="tests.test_x" name="test_not_a_notebook" time="1.0" />
</testsuite></testsuites>
"""


def test_parse_junit_reads_notebook_times_and_outcomes(tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text(JUNIT)
    cases = record_timings.parse_junit(xml)
    assert cases == [
        {
            "notebook": "00_reference.ipynb",
            "path": "book/00_reference.ipynb",
            "seconds": 12.25,
            "outcome": "failed",
        },
        {
            "notebook": "01_tokenization.ipynb",
            "path": "book/01_tokenization.ipynb",
            "seconds": 41.5,
            "outcome": "passed",
        },
    ]


def test_parse_junit_rejects_a_run_without_notebooks(tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text('<testsuite><testcase classname="t" name="test_a" time="1"/></testsuite>')
    with pytest.raises(ValueError, match="no notebook test cases"):
        record_timings.parse_junit(xml)


def test_record_writes_json_with_the_machine(tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text(JUNIT)
    out = tmp_path / "timings"
    assert record_timings.main([str(xml), "--label", "cpu-test", "--out", str(out)]) == 0
    record = json.loads((out / "cpu-test.json").read_text())
    assert record["label"] == "cpu-test"
    assert record["device"] in {"cpu", "cuda", "mps"}
    assert record["cpu_count"] >= 1
    assert [nb["seconds"] for nb in record["notebooks"]] == [12.25, 41.5]


def _build(tmp_path: Path, pages: dict[str, str], timings: dict | None = None) -> Path:
    """Build a small reST project with the extension; return the HTML folder."""
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace

    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(EXT_DIR)!r})\n"
        "extensions = ['minigpt_book']\nproject = 'test'\n"
        # Like sphinx-thebe: an inline script registered once the builder exists.
        "def setup(app):\n"
        "    app.connect('env-before-read-docs',\n"
        "                lambda app, env, docs: app.add_js_file(None, body='const ONCE = 1;'))\n"
    )
    toctree = "\n".join(f"   {name}" for name in pages if name != "index")
    (src / "index.rst").write_text(f"Index\n=====\n\n.. toctree::\n\n{toctree}\n")
    for name, body in pages.items():
        if name != "index":
            (src / f"{name}.rst").write_text(body)
    if timings is not None:
        folder = src / "_static" / "timings"
        folder.mkdir(parents=True)
        (folder / f"{timings['label']}.json").write_text(json.dumps(timings))
    out = tmp_path / "html"
    with docutils_namespace():  # each build registers its nodes afresh
        app = Sphinx(
            str(src), str(src), str(out), str(tmp_path / "doctrees"), "html",
            status=None, warning=None, freshenv=True, warningiserror=True,
        )  # fmt: skip
        app.build()
    assert app.statuscode == 0
    return out


def test_plotly_is_served_locally_and_loaded_only_with_figures(tmp_path):
    figure = (
        "Figure\n======\n\n.. raw:: html\n\n"
        '   <div id="f" class="plotly-graph-div"></div>\n'
        '   <script>Plotly.newPlot("f", [])</script>\n'
    )
    out = _build(tmp_path, {"figure": figure, "prose": "Prose\n=====\n\nNo figure.\n"})
    copied = (out / "_static" / "plotly.min.js").read_bytes()
    assert copied == minigpt_book.plotly_js_source().read_bytes()
    page = (out / "figure.html").read_text()
    head = page.split("</head>")[0]
    assert '<script src="_static/plotly.min.js"></script>' in head  # no defer, no async
    assert "plotly.min.js" not in (out / "prose.html").read_text()
    assert page.count("const ONCE = 1;") == 1  # Sphinx 7.4 would list it twice


def test_timings_directive_renders_a_row_per_chapter(tmp_path):
    timings = {
        "label": "cpu",
        "device": "cpu",
        "device_name": "Test CPU",
        "cpu_count": 2,
        "notebooks": [
            {"path": "book/ch.ipynb", "seconds": 3.25, "outcome": "passed"},
            {"path": "book/gone.ipynb", "seconds": 1.0, "outcome": "failed"},
        ],
    }
    page = "Timings\n=======\n\n.. minigpt-timings::\n"
    out = _build(tmp_path, {"timings": page, "ch": "Chapter\n=======\n\nText.\n"}, timings)
    html = (out / "timings.html").read_text()
    assert 'href="ch.html"' in html  # a chapter that exists is linked
    assert "gone.ipynb" in html and "1.0 (failed)" in html
    assert "3.2" in html and "4.2" in html  # the chapter and the total
    assert "Test CPU" in html


def test_timings_directive_without_data_says_so(tmp_path):
    out = _build(tmp_path, {"timings": "Timings\n=======\n\n.. minigpt-timings::\n"})
    assert "No timings recorded yet" in (out / "timings.html").read_text()


def test_execution_mode_comes_from_the_environment(monkeypatch):
    from types import SimpleNamespace

    config = SimpleNamespace(nb_execution_mode="auto")
    monkeypatch.setenv(minigpt_book.EXECUTE_ENV, "off")
    minigpt_book._execution_mode_from_env(None, config)
    assert config.nb_execution_mode == "off"
    monkeypatch.setenv(minigpt_book.EXECUTE_ENV, "sometimes")
    with pytest.raises(ValueError, match="'sometimes' is not one of auto, force, cache, off"):
        minigpt_book._execution_mode_from_env(None, config)
