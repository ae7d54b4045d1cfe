"""Settings declared once (minigpt.settings): a field's range checks the config and the flag."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import pytest

from minigpt.settings import Allowed, add_flags, check_fields, flag, flag_changes, setting


@dataclass(frozen=True)
class Knobs:
    steps: int = flag(10, Allowed(int, low=1), "how many steps")
    rate: float = flag(0.5, Allowed(float, above=0, below=1), "how fast")
    mode: str = flag("a", Allowed(str, choices=("a", "b")), "which way")
    loud: bool = flag(False, Allowed(bool), "say more", resumable=True)
    width: int | None = setting(None, Allowed(int, low=1, none=True), "not a flag")

    def __post_init__(self):
        check_fields(self)


@pytest.mark.parametrize(
    ("allowed", "text"),
    [
        (Allowed(int, low=1), "a positive integer"),
        (Allowed(int, low=0, high=2**64 - 1), f"an integer >= 0 and <= {2**64 - 1}"),
        (Allowed(float, above=0, below=1), "a finite number > 0 and < 1"),
        (Allowed(float, low=0), "a finite number >= 0"),
        (Allowed(int, low=1, none=True), "None or a positive integer"),
        (Allowed(str, choices=("a", "b")), "one of a, b"),
        (Allowed(bool), "True or False"),
    ],
)
def test_allowed_describes_its_range(allowed, text):
    assert allowed.describe() == text


@pytest.mark.parametrize(
    ("allowed", "good", "bad"),
    [
        (Allowed(int, low=1), [1, 10**30], [0, -1, 1.0, True, None, "1"]),
        (Allowed(int, low=0, high=7), [0, 7], [-1, 8]),
        (Allowed(float, above=0, below=1), [0.5, 1e-9], [0, 1, math.nan, math.inf, False]),
        (Allowed(float, low=0), [0, 0.0, 3], [-1e-9, math.nan]),
        (Allowed(int, low=1, none=True), [None, 2], [0, 2.5]),
        (Allowed(str, choices=("a", "b")), ["a"], ["c", None]),
        (Allowed(bool), [True, False], [0, 1, None]),
    ],
)
def test_allowed_admits_exactly_its_range(allowed, good, bad):
    assert all(allowed.admits(v) for v in good)
    assert not any(allowed.admits(v) for v in bad)


def test_the_config_checks_its_fields_naming_the_field_and_range():
    assert Knobs().steps == 10
    with pytest.raises(ValueError, match=r"^Knobs\.steps=0 must be a positive integer$"):
        Knobs(steps=0)
    with pytest.raises(ValueError, match=r"^Knobs\.rate=1\.5 must be a finite number > 0 and < 1$"):
        Knobs(rate=1.5)


def test_flags_are_made_from_the_flag_fields_and_checked_naming_the_option():
    parser = argparse.ArgumentParser()
    add_flags(parser, Knobs, " (default: the config's)")
    options = {a.dest: a for a in parser._actions if a.dest != "help"}
    assert sorted(options) == ["loud", "mode", "rate", "steps"]  # width is not a flag
    assert options["steps"].help == "how many steps (default: the config's)"
    assert options["mode"].choices == ("a", "b")
    assert flag_changes(parser.parse_args([]), Knobs) == {}  # nothing given: nothing changed
    args = parser.parse_args(["--steps", "3", "--rate", "0.25", "--mode", "b", "--no-loud"])
    assert flag_changes(args, Knobs) == {"steps": 3, "rate": 0.25, "mode": "b", "loud": False}
    with pytest.raises(ValueError, match=r"^--steps=0 must be a positive integer$"):
        flag_changes(parser.parse_args(["--steps", "0"]), Knobs)
