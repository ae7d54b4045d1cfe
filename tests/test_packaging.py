"""environment.yml must give conda users the same environment as pyproject.toml."""

import tomllib
from pathlib import Path

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
    runtime = [dep for dep in pip if not dep.startswith("-e")]
    assert sorted(runtime) == sorted(project["dependencies"])
    assert "-e .[dev]" in pip
    assert set(project["optional-dependencies"]) >= {"book", "test", "dev"}


def test_environment_yml_pins_python_311():
    assert "  - python=3.11" in (ROOT / "environment.yml").read_text().splitlines()
