"""environment.yml must give conda users the same environment as pyproject.toml, and the
lock (constraints.txt) must pin, within pyproject's ranges, every package the extras bring."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _pip_section() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    return [
        line.strip()[2:].strip() for line in lines[start + 1 :] if line.strip().startswith("- ")
    ]


def test_environment_yml_matches_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip = _pip_section()
    runtime = [dep for dep in pip if not dep.startswith("-")]
    assert sorted(runtime) == sorted(project["dependencies"])
    assert pip[-2:] == ["-c constraints.txt", "-e .[dev]"]
    assert set(project["optional-dependencies"]) >= {"book", "test", "dev"}


def test_environment_yml_pins_python_311():
    assert "  - python=3.11" in (ROOT / "environment.yml").read_text().splitlines()


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
        assert match, f"constraints.txt: {line!r} is not an exact pin name==version"
        name = canonicalize_name(match[1])
        assert name not in pins, f"constraints.txt pins {name} twice"
        pins[name] = match[2]
    return pins


def test_lock_pins_every_dependency_inside_pyproject_ranges():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _lock()
    assert canonicalize_name(project["name"]) not in pins, "the lock must not pin the project"
    requirements = list(project["dependencies"])
    for deps in project["optional-dependencies"].values():
        requirements += [d for d in deps if not d.startswith(project["name"])]
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (pyproject.toml) is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}"
        )
