"""How a check treats the reader's function: checked when written, stood in for while a stub."""

import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

from minigpt.exercises import exercise as ex

BOOK = Path(__file__).resolve().parents[1] / "book"


def double(x):
    return 2 * x


@ex.exercise(double)
def check_double(fn):
    """A checker in the book's style: raises AssertionError with a diagnosis when wrong."""
    if fn(3) == 3 + 2:
        raise AssertionError("double is wrong: that adds 2; double multiplies by 2")
    if fn(3) != 6:
        raise AssertionError(f"double is wrong: double(3) gave {fn(3)}, expected 6")
    print("Correct: your double doubles.")


@pytest.fixture(autouse=True)
def fresh_outcomes():
    ex.OUTCOMES.pop(__name__, None)
    yield
    ex.OUTCOMES.pop(__name__, None)


def test_a_stub_is_said_to_be_unwritten_and_the_solution_stands_in(capsys):
    def double(x):
        raise NotImplementedError  # your code here

    assert check_double(double) is check_double.solution
    out = capsys.readouterr().out
    assert "`double` is not written yet" in out
    assert "Correct: the solution's double doubles." in out  # the check ran on the solution
    assert "your double" not in out
    assert ex.OUTCOMES[__name__]["double"] == ex.NOT_WRITTEN


def test_a_written_function_is_checked_and_kept(capsys):
    def mine(x):
        return x + x

    assert check_double(mine) is mine
    assert capsys.readouterr().out == "Correct: your double doubles.\n"
    assert ex.OUTCOMES[__name__]["double"] == "yours, correct"


def test_a_wrong_function_gets_its_diagnosis_not_the_solution(capsys):
    with pytest.raises(AssertionError, match="that adds 2"):
        check_double(lambda x: x + 2)
    assert "not written yet" not in capsys.readouterr().out
    assert ex.OUTCOMES[__name__]["double"] == "wrong"


def test_a_not_implemented_error_from_deeper_down_is_not_taken_for_the_stub():
    def helper(x):
        raise NotImplementedError("an operator this device lacks")

    def mine(x):
        return helper(x)

    with pytest.raises(NotImplementedError, match="this device lacks"):
        check_double(mine)


def test_a_checker_that_catches_runtime_errors_still_sees_the_stub(capsys):
    @ex.exercise(double, name="doubling")
    def check_catching(fn):
        try:
            fn(1)
        except RuntimeError as err:  # NotImplementedError is a RuntimeError
            raise AssertionError(f"your function failed: {err}") from None

    def stub(x):
        raise NotImplementedError  # your code here

    try:
        assert check_catching(stub) is double
        assert "`doubling` is not written yet" in capsys.readouterr().out
    finally:
        del ex.EXERCISES[__name__]["doubling"]  # the report test expects double alone


def test_the_solution_left_in_the_name_is_not_passed_off_as_the_readers(capsys):
    assert check_double(check_double.solution) is check_double.solution
    assert "still the reference solution" in capsys.readouterr().out
    assert ex.OUTCOMES[__name__]["double"] == ex.NOT_WRITTEN


def test_report_lists_every_exercise_and_refuses_an_unchecked_one(capsys):
    check_double(lambda x: 2 * x)
    assert ex.report(__name__) == [("double", "yours, correct")]
    assert "1 of 1 written and correct" in capsys.readouterr().out
    ex.OUTCOMES.pop(__name__)
    with pytest.raises(AssertionError, match="never checked: double"):
        ex.report(__name__)
    with pytest.raises(ValueError, match="no exercises"):
        ex.report("minigpt.exercises.nowhere")


def test_show_solution_shows_the_solutions_source():
    shown = ex.show_solution(check_double, check_double)
    assert repr(shown).count("def double(x):") == 2
    html = shown._repr_html_()
    assert html.startswith('<details class="minigpt-solution"><summary>')  # closed: no "open"
    assert html.count("double") == 2  # both sources


# The chapters themselves, read as files.


def _chapters():
    return sorted(BOOK.glob("0*.ipynb"))


def _code_cells(path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def _stub_names(path):
    names = []
    for cell in _code_cells(path):
        source = "".join(cell["source"])
        if "raise NotImplementedError  # your code here" in source:
            names += re.findall(r"^def (\w+)\(", source, re.M)
    return names


@pytest.mark.parametrize("path", _chapters(), ids=lambda p: p.stem)
def test_every_stub_is_checked_and_no_cell_redefines_it(path):
    """Each stub's name is bound again only by its check (``name = check_x(name, ...)``), whose
    checker knows the stub's solution; no other cell defines it, so "Run All" never replaces
    the reader's function with a solution."""
    module_name = f"minigpt.exercises.ch{path.name[:2]}"
    stubs = _stub_names(path)
    if not stubs:
        return
    module = importlib.import_module(module_name)
    checked = {}
    for cell in _code_cells(path):
        source = "".join(cell["source"])
        for name, check in re.findall(r"^(\w+) = (check_\w+)\(\1\b", source, re.M):
            checked[name] = getattr(module, check)
        defined = re.findall(r"^def (\w+)\(", source, re.M)
        if "raise NotImplementedError  # your code here" not in source:
            assert not set(defined) & set(stubs), f"{path.name}: a cell redefines {defined}"
    assert set(checked) == set(stubs), f"{path.name}: stubs without a check"
    for name, check in checked.items():
        assert check.exercise == name
        assert check.solution.__name__ == name
        assert check.solution.__module__ == f"minigpt.exercises.solutions.ch{path.name[:2]}"
    assert set(ex.EXERCISES[module_name]) == set(stubs)  # the report knows exactly these


@pytest.mark.parametrize("path", _chapters(), ids=lambda p: p.stem)
def test_solutions_are_folded_in_jupyterlab_and_on_the_site(path):
    for cell in _code_cells(path):
        source = "".join(cell["source"])
        if "show_solution(" in source:
            assert cell["metadata"]["jupyter"] == {"source_hidden": True}
            assert cell["metadata"]["tags"] == ["remove-input"]  # the site shows the fold alone
    if _stub_names(path):
        last = "".join(_code_cells(path)[-1]["source"])
        assert f'report("minigpt.exercises.ch{path.name[:2]}")' in last


def test_a_solution_reads_like_the_stub_it_answers():
    """The stub and its solution share a signature, so the folded solution drops in."""
    for path in _chapters():
        for cell in _code_cells(path):
            source = "".join(cell["source"])
            if "raise NotImplementedError  # your code here" not in source:
                continue
            namespace = {}
            exec(compile(source, path.name, "exec"), namespace)  # only defines functions
            module = importlib.import_module(f"minigpt.exercises.solutions.ch{path.name[:2]}")
            for name in re.findall(r"^def (\w+)\(", source, re.M):
                stub = inspect.signature(namespace[name])
                assert stub == inspect.signature(getattr(module, name)), (path.name, name)


def test_the_intro_lists_exactly_what_the_reader_writes():
    """book/intro.md's "you write" column names each chapter's exercises, no more, no less."""
    rows = re.findall(r"^\| \[[^\]]+\]\((\d\d)_\w+\.ipynb\) \| ([^|]+) \|", _intro(), re.M)
    assert [number for number, _ in rows] == [p.name[:2] for p in _chapters()]
    for number, written in rows:
        listed = set(re.findall(r"`(\w+)`", written))
        importlib.import_module(f"minigpt.exercises.ch{number}")
        assert listed == set(ex.EXERCISES.get(f"minigpt.exercises.ch{number}", {})), number


def _intro():
    return (BOOK / "intro.md").read_text()
