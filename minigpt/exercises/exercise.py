"""How every write-first exercise runs: the reader's own function is checked, never replaced.

A chapter gives a stub (``raise NotImplementedError  # your code here``), then a check cell::

    gelu = check_gelu(gelu, ref_cache)

The checker is decorated with :func:`exercise`, which ties it to the exercise's one solution
(in ``minigpt.exercises.solutions``) and decides what the check is about:

* the reader's function is written: it is checked, and a wrong one gets its diagnosis (an
  ``AssertionError`` that stops "Run All" at that cell); the check returns it;
* it is still the stub (it raised ``NotImplementedError`` itself): the check says so, runs the
  same check on the solution, and returns the solution, so that the rest of the chapter runs;
* it is the solution, left in the name by an earlier check: the check says that the reader's
  version has not been run yet, instead of passing the solution off as theirs.

The page never pastes the solution: a folded cell shows its source with :func:`show_solution`,
and :func:`report` at the end of a chapter lists what each check found.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import sys
import textwrap
from collections.abc import Callable
from types import TracebackType

NOT_WRITTEN = "not written yet"
STOOD_IN = "the reference solution stood in"

# Every exercise, by the module of its checker: {module: {exercise name: the solution}}.
EXERCISES: dict[str, dict[str, Callable]] = {}
# What the last check of each exercise found: {module: {exercise name: outcome}}.
OUTCOMES: dict[str, dict[str, str]] = {}


def _raised_by_the_stub(fn: Callable, tb: TracebackType | None) -> bool:
    """Whether the innermost frame of ``tb`` is ``fn``'s own code: the stub raising, not
    something the reader's function called."""
    code = getattr(inspect.unwrap(fn), "__code__", None)
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and last.tb_frame.f_code is code


class _StubRaised(BaseException):
    """The stub raised ``NotImplementedError`` itself. A ``BaseException``, so that no
    checker's ``except RuntimeError`` (``NotImplementedError``'s base) takes it for a bug."""


def _watching(fn: Callable) -> Callable:
    """``fn``, except that its stub's ``NotImplementedError`` becomes :class:`_StubRaised`."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            if _raised_by_the_stub(fn, sys.exc_info()[2]):
                raise _StubRaised from None
            raise

    return call


def exercise(solution: Callable, name: str | None = None) -> Callable[[Callable], Callable]:
    """Decorate ``check(fn, *args)`` so that it checks the reader's ``fn`` and returns the
    function the chapter goes on with: ``fn`` once it passes, ``solution`` while ``fn`` is
    still the stub.

    ``name`` is what the reader calls the function (the solution's name by default).
    """
    title = name or solution.__name__

    def decorate(check: Callable) -> Callable:
        module = check.__module__
        EXERCISES.setdefault(module, {})[title] = solution

        @functools.wraps(check)
        def run(fn: Callable, *args, **kwargs):
            outcomes = OUTCOMES.setdefault(module, {})
            if fn is solution:
                print(
                    f"`{title}` is still the reference solution that stood in for your stub: "
                    "run the cell with your version first, then this check."
                )
                outcomes[title] = NOT_WRITTEN
                return solution
            try:
                check(_watching(fn), *args, **kwargs)
            except _StubRaised:
                said_so = (
                    f"`{title}` is {NOT_WRITTEN}: write it in the cell above and run this check "
                    f"again. Until then {STOOD_IN}, and it passes the same check:"
                )
                print(textwrap.fill(said_so, width=79))  # a page's output shows 79 columns
                with contextlib.redirect_stdout(io.StringIO()) as said:
                    check(solution, *args, **kwargs)
                # The checker speaks to the reader ("your MLP gives ..."); here it spoke of the
                # solution.
                print(said.getvalue().replace("Correct: your ", "Correct: the solution's "), end="")
                outcomes[title] = NOT_WRITTEN
                return solution
            except Exception:
                outcomes[title] = "wrong"
                raise
            outcomes[title] = "yours, correct"
            return fn

        run.solution = solution
        run.exercise = title
        return run

    return decorate


class Solution:
    """Solutions' source, shown folded: a ``<details>`` that the reader opens by clicking it.

    The fold is in the output itself because JupyterLab unfolds a cell's outputs whenever the
    cell runs, so "Run All" would otherwise lay every solution open.
    """

    def __init__(self, source: str):
        self.source = source

    def __repr__(self) -> str:
        return self.source

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        code = highlight(
            self.source, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True)
        )
        return (
            '<details class="minigpt-solution"><summary>Solution (click to open)</summary>'
            f"{code}</details>"
        )


def show_solution(*checks: Callable) -> Solution:
    """The source of the solutions of ``checks``, folded: the page's solution cell."""
    return Solution("\n\n".join(inspect.getsource(check.solution) for check in checks))


def report(module: str) -> list[tuple[str, str]]:
    """Print and return, for each exercise of chapter module ``module``
    (``"minigpt.exercises.ch04"``), what its last check found.

    Raises ``AssertionError`` naming any exercise whose check never ran: a chapter run top to
    bottom checks every one of its exercises.
    """
    known = EXERCISES.get(module)
    if not known:
        raise ValueError(f"{module!r} has no exercises; known: {sorted(EXERCISES)}")
    found = OUTCOMES.get(module, {})
    rows = [(name, found.get(name, "not checked")) for name in known]
    width = max(len(name) for name, _ in rows)
    written = sum(outcome == "yours, correct" for _, outcome in rows)
    print(f"Your exercises in this chapter: {written} of {len(rows)} written and correct.")
    for name, outcome in rows:
        shown = f"{outcome} ({STOOD_IN})" if outcome == NOT_WRITTEN else outcome
        print(f"  {name:<{width}}  {shown}")
    unchecked = [name for name, outcome in rows if outcome == "not checked"]
    if unchecked:
        raise AssertionError(f"these exercises were never checked: {', '.join(unchecked)}")
    return rows
