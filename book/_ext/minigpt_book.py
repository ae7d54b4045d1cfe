"""Sphinx extension for the minigpt book (loaded through ``_config.yml``).

Two jobs:

* **plotly.js, offline.** Chapter figures are emitted as an HTML ``<div>`` plus a script
  that calls the page's global ``Plotly`` (see :mod:`minigpt.notebook`). This extension
  copies ``plotly.min.js`` out of the installed ``plotly`` package into the site's
  ``_static/`` and loads it in the ``<head>`` of every page that holds a figure, before
  the figure scripts in the body run. No CDN, no network.
* **One expected warning, dropped by name.** Sphinx's myst-nb parses every MIME type of
  an output before it knows the builder, so plotly's own JSON type (kept for JupyterLab)
  draws "skipping unknown output mime type: application/vnd.plotly.v1+json" on every
  figure. Only that exact message is dropped; every other warning still fails ``-W``.
* **Execute once in CI.** ``$MINIGPT_BOOK_EXECUTE`` (``auto``, ``force``, ``cache`` or
  ``off``) overrides ``execute_notebooks`` from ``_config.yml``. CI runs the chapters with
  ``pytest --nbmake --overwrite`` (which writes the outputs back) and then builds with
  ``MINIGPT_BOOK_EXECUTE=off``; a chapter that arrives without outputs is then a warning
  (so an error under ``-W``) rather than a silently empty page.
* **Warnings fail the build**, with no flag needed (see :func:`_warnings_fail_the_build`),
  and the kernels that execute the chapters get a clean IPython profile
  (:func:`minigpt.notebook.use_book_kernel_profile`).
* **The timings appendix.** The ``minigpt-timings`` directive renders the JSON files that
  ``book/_ext/record_timings.py`` writes from a ``pytest --nbmake`` run into one table:
  one row per chapter, one column per recorded device.
"""

from __future__ import annotations

import json
import logging as stdlib_logging
import os
import shutil
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOGGER = logging.getLogger(__name__)
PLOTLY_JS = "plotly.min.js"
PLOTLY_MARKER = "plotly-graph-div"  # class of the div that plotly's HTML output draws into
TIMINGS_DIR = "_static/timings"  # relative to the book's source folder
EXECUTE_ENV = "MINIGPT_BOOK_EXECUTE"
EXECUTE_MODES = ("auto", "force", "cache", "off")
PLOTLY_MIME = "application/vnd.plotly.v1+json"
EXPECTED_WARNING = f"skipping unknown output mime type: {PLOTLY_MIME}"


class _DropPlotlyMimeWarning(stdlib_logging.Filter):
    """Drop myst-nb's warning about plotly's JSON output, and nothing else."""

    def filter(self, record: stdlib_logging.LogRecord) -> bool:
        return not str(record.msg).startswith(EXPECTED_WARNING)


def _install_warning_filter(app: Sphinx) -> None:
    # Sphinx counts a warning (and fails -W) in the first filter of its warning handler,
    # so this filter goes in front of it.
    for handler in stdlib_logging.getLogger("sphinx").handlers:
        if handler.level == stdlib_logging.WARNING and not any(
            isinstance(f, _DropPlotlyMimeWarning) for f in handler.filters
        ):
            handler.filters.insert(0, _DropPlotlyMimeWarning())


def plotly_js_source() -> Path:
    """The ``plotly.min.js`` bundled with the installed ``plotly`` Python package."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the installed plotly package ({plotly.__version__}) "
            "does not bundle plotly.js; reinstall plotly>=6"
        )
    return path


def _execution_mode_from_env(app: Sphinx, config) -> None:
    mode = os.environ.get(EXECUTE_ENV, "").strip().lower()
    if not mode:
        return
    if mode not in EXECUTE_MODES:
        raise ValueError(f"${EXECUTE_ENV}={mode!r} is not one of {', '.join(EXECUTE_MODES)}")
    config.nb_execution_mode = mode


def _check_outputs_present(app: Sphinx, env, docnames: list[str]) -> None:
    """With execution off, every notebook must bring its outputs along."""
    if getattr(app.config, "nb_execution_mode", None) != "off":
        return
    for docname in docnames:
        path = Path(env.doc2path(docname))
        if path.suffix != ".ipynb":
            continue
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        code = [cell for cell in cells if cell.get("cell_type") == "code"]
        if code and not any(cell.get("outputs") for cell in code):
            LOGGER.warning(
                f"{path.name} has no outputs and execution is off (${EXECUTE_ENV}=off): "
                "run pytest --nbmake --overwrite on it first, or build with execution on",
                location=docname,
            )


def _add_plotly_to_figure_pages(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Load plotly.js in the head of pages whose body draws a plotly figure."""
    if PLOTLY_MARKER in context.get("body", ""):
        # A plain <script> in the head (no defer/async) has run before the inline figure
        # scripts in the body execute; priority 150 puts it ahead of Sphinx's own (200).
        app.add_js_file(PLOTLY_JS, priority=150)


def _dedupe_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Drop repeated inline scripts from the page head.

    Sphinx 7.4 lists an inline script that an extension registers after the builder
    started (sphinx-thebe's ``const THEBE_JS_URL = ...``, sphinx-togglebutton's selector)
    twice, once with ``filename=None`` and once with ``""``; a repeated ``const`` is a
    SyntaxError in the browser console. Identical scripts are kept once, in order.
    """
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for js in scripts:
        key = (js.filename or "", js.priority, tuple(sorted(js.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def _copy_plotly(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / PLOTLY_JS
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plotly_js_source(), target)


def load_timings(folder: Path) -> list[dict]:
    """Every recorded run under ``folder`` (``*.json``), sorted by label."""
    runs = []
    for path in sorted(folder.glob("*.json")):
        run = json.loads(path.read_text(encoding="utf-8"))
        run.setdefault("label", path.stem)
        run["_path"] = path
        runs.append(run)
    return runs


def _notebook(entry: dict) -> str:
    """A chapter's file name: the same in every run, wherever the copy that ran lived."""
    return entry.get("notebook") or Path(entry["path"]).name


def _seconds(entry: dict | None) -> str:
    if entry is None:
        return "not run"
    text = f"{entry['seconds']:.1f}"
    return text if entry.get("outcome", "passed") == "passed" else f"{text} ({entry['outcome']})"


class TimingsDirective(SphinxDirective):
    """``{minigpt-timings}``: the per-chapter wall times of the recorded test runs."""

    has_content = False
    option_spec = {"folder": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        folder = Path(self.env.srcdir) / self.options.get("folder", TIMINGS_DIR)
        runs = load_timings(folder) if folder.is_dir() else []
        for run in runs:
            self.env.note_dependency(str(run["_path"]))
        if not runs:
            para = nodes.paragraph(
                text=f"No timings recorded yet: run the chapters with pytest --nbmake and "
                f"book/_ext/record_timings.py (they write {folder.name}/*.json)."
            )
            return [nodes.note("", para)]
        return [self._table(runs), self._details(runs)]

    def _chapter_cell(self, notebook: str) -> nodes.Node:
        docname = Path(notebook).with_suffix("").name
        para = nodes.paragraph()
        if docname in self.env.found_docs:
            ref = pending_xref(
                "",
                refdomain="std",
                reftype="doc",
                reftarget="/" + docname,
                refexplicit=False,
                refdoc=self.env.docname,
            )
            ref += nodes.literal(text=docname)
            para += ref
        else:
            para += nodes.literal(text=notebook)
        return para

    def _table(self, runs: list[dict]) -> nodes.table:
        notebooks = sorted({_notebook(nb) for run in runs for nb in run["notebooks"]})
        by_run = [{_notebook(nb): nb for nb in run["notebooks"]} for run in runs]
        header = ["Chapter"] + [f"{run['label']} (seconds)" for run in runs]
        rows = [
            [self._chapter_cell(path)]
            + [nodes.paragraph(text=_seconds(r.get(path))) for r in by_run]
            for path in notebooks
        ]
        totals = [sum(nb["seconds"] for nb in run["notebooks"]) for run in runs]
        rows.append(
            [nodes.paragraph(text="All chapters")]
            + [nodes.paragraph(text=f"{total:.1f}") for total in totals]
        )

        table = nodes.table(classes=["minigpt-timings"])
        group = nodes.tgroup(cols=len(header))
        table += group
        for _ in header:
            group += nodes.colspec(colwidth=1)
        head = nodes.thead()
        head += self._row([nodes.paragraph(text=text) for text in header])
        group += head
        body = nodes.tbody()
        for cells in rows:
            body += self._row(cells)
        group += body
        return table

    @staticmethod
    def _row(cells: list[nodes.Node]) -> nodes.row:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += cell
            row += entry
        return row

    @staticmethod
    def _details(runs: list[dict]) -> nodes.bullet_list:
        items = nodes.bullet_list()
        for run in runs:
            text = (
                f"{run['label']}: {run.get('device_name', run.get('device', '?'))}; "
                f"{run.get('cpu_count', '?')} CPU cores; torch {run.get('torch', '?')}, "
                f"Python {run.get('python', '?')}; recorded {run.get('recorded', '?')} "
                f"at commit {run.get('commit', '?')} with: "
            )
            para = nodes.paragraph(text=text)
            para += nodes.literal(text=run.get("command", "?"))
            item = nodes.list_item()
            item += para
            items += item
        return items


def _warnings_fail_the_build(app: Sphinx) -> None:
    """Make a plain ``jupyter-book build book`` as strict as ``-W --keep-going``.

    The README's command has no flags, yet a warning (a broken reference, a notebook that
    arrived without outputs, an unknown directive) must fail it, or a broken page would be
    published quietly. Sphinx then reports every warning and exits non-zero at the end.
    """
    app.keep_going = True


def setup(app: Sphinx) -> dict:
    from minigpt.notebook import use_book_kernel_profile

    _install_warning_filter(app)
    _warnings_fail_the_build(app)
    use_book_kernel_profile()  # the chapters' kernels: a clean IPython profile, no TCP notice
    app.connect("config-inited", _execution_mode_from_env)
    app.connect("env-before-read-docs", _check_outputs_present)
    app.connect("html-page-context", _add_plotly_to_figure_pages)
    app.connect("html-page-context", _dedupe_scripts)
    app.connect("build-finished", _copy_plotly)
    app.add_directive("minigpt-timings", TimingsDirective)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
