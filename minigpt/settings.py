"""Settings that describe themselves: a dataclass field carrying its allowed values and help.

A config declares each field once, ``max_steps: int = flag(1000, POSITIVE, "optimizer
steps")``, and everything else is read from that line: the config's ``__post_init__``
checks the value (:func:`check_fields`), and a command line makes an option of each
:func:`flag` field (:func:`add_flags`) and hands back what was typed (:func:`flag_changes`),
checked against the same range but naming the option (``--max-steps=0 must be ...``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Allowed:
    """The values a setting may take: an int or float in a range, a bool, or one of choices.

    ``low``/``high`` are inclusive ends, ``above``/``below`` exclusive ones; floats must be
    finite. ``Allowed(int, low=1).describe() == "a positive integer"``.
    """

    kind: type  # int, float, bool or str
    low: float | None = None
    high: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple[str, ...] = ()
    none: bool = False  # None is allowed too (it means "decided elsewhere")

    def admits(self, value) -> bool:
        if value is None:
            return self.none
        if self.kind is bool or isinstance(value, bool):
            return self.kind is bool and isinstance(value, bool)
        if self.kind is str:
            return value in self.choices
        kinds = int if self.kind is int else int | float
        if not isinstance(value, kinds) or (self.kind is float and not math.isfinite(value)):
            return False
        return not (
            (self.low is not None and value < self.low)
            or (self.high is not None and value > self.high)
            or (self.above is not None and value <= self.above)
            or (self.below is not None and value >= self.below)
        )

    def describe(self) -> str:
        if self.kind in (bool, str):
            text = "True or False" if self.kind is bool else "one of " + ", ".join(self.choices)
        elif (self.kind, self.low, self.high, self.below) == (int, 1, None, None):
            text = "a positive integer"
        else:
            ends = zip((">=", ">", "<=", "<"), (self.low, self.above, self.high, self.below))
            bounds = " and ".join(f"{sign} {end}" for sign, end in ends if end is not None)
            text = f"{'an integer' if self.kind is int else 'a finite number'} {bounds}"
        return f"None or {text}" if self.none else text


def setting(default, allowed: Allowed, help: str, *, flag=False, resumable=False):
    """A dataclass field with its allowed values and what it does. ``flag``: the command line
    has an option for it (:func:`add_flags`); ``resumable``: it may change when a run is
    resumed without changing its results (see :meth:`minigpt.train.TrainConfig.differences`)."""
    meta = {"allowed": allowed, "help": help, "flag": flag, "resumable": resumable}
    return field(default=default, metadata=meta)


def flag(default, allowed: Allowed, help: str, *, resumable=False):
    """A :func:`setting` that is also a ``minigpt-train`` option."""
    return setting(default, allowed, help, flag=True, resumable=resumable)


def check_fields(config) -> None:
    """Raise ValueError naming the first field of a dataclass whose value is not allowed."""
    for f in dataclasses.fields(config):
        value, allowed = getattr(config, f.name), f.metadata["allowed"]
        if not allowed.admits(value):
            name = f"{type(config).__name__}.{f.name}"
            raise ValueError(f"{name}={value!r} must be {allowed.describe()}")


def option(name: str) -> str:
    """The command-line option of a field: ``--max-steps`` for ``max_steps``."""
    return "--" + name.replace("_", "-")


def add_flags(parser: argparse._ActionsContainer, config_class, note: str = "") -> None:
    """An option for every :func:`flag` field of ``config_class``; each defaults to None
    (not given), and ``note`` ends every help line. A bool becomes ``--x/--no-x``.
    ``parser`` is an ``ArgumentParser`` or one of its argument groups."""
    for f in dataclasses.fields(config_class):
        if not f.metadata["flag"]:
            continue
        allowed, kind = f.metadata["allowed"], f.metadata["allowed"].kind
        metavar = "N" if kind is int else "X"
        kwargs = {"choices": allowed.choices} if kind is str else {"type": kind, "metavar": metavar}
        if kind is bool:
            kwargs = {"action": argparse.BooleanOptionalAction}
        parser.add_argument(option(f.name), default=None, help=f.metadata["help"] + note, **kwargs)


def flag_changes(args: argparse.Namespace, config_class) -> dict:
    """The :func:`flag` fields given on the command line, each checked against its range."""
    changes = {}
    for f in dataclasses.fields(config_class):
        value = getattr(args, f.name, None) if f.metadata["flag"] else None
        if value is None:
            continue
        allowed = f.metadata["allowed"]
        if not allowed.admits(value):
            raise ValueError(f"{option(f.name)}={value} must be {allowed.describe()}")
        changes[f.name] = value
    return changes
