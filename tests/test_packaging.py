"""environment.yml must give conda users the same environment as pyproject.toml, and the
lock (constraints.txt) must pin, within pyproject's ranges, every package the extras bring."""

import json
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


# -- the layout: what the README's chapter table promises -------------------------------

PACKAGE = ROOT / "minigpt"
SUPPORT = {"notebook", "exercises", "zoo", "device", "assets", "files"}
# Looks ahead that a chapter takes on purpose: chapter 00 runs the finished model once, to
# show the comparison tool catching a dropped bias before the reader builds anything.
PREVIEWS = {"00": {"model", "formats/hf_model"}}
# The model and the tokenizer the book teaches: none of them reaches the formats room.
CORE = ("config", "embed", "attention", "kv_cache", "mlp", "layernorm", "block", "model",
        "decode_step", "bpe", "tokenizer")  # fmt: skip


def _chapter_table() -> dict[str, list[str]]:
    """``{"00": ["reference", "compare"], ...}`` from the README's chapter table."""
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        match = re.match(r"\| (\d\d) \| `book/[^`]+` \| (.*?) \|", line)
        if match:
            rows[match[1]] = re.findall(r"`([a-z0-9_/]+)\.py`", match[2])
    return rows


def _minigpt_imports(source: str) -> set[str]:
    """The minigpt modules a piece of code imports, anywhere in it, named as in the README's
    table: ``model`` for ``minigpt.model``, ``formats/hf_model`` for a module of the room."""
    import ast

    def named(module: str) -> str:
        parts = module.split(".")[1:]
        return "/".join(parts[:2]) if parts[0] in ROOMS else parts[0]

    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("minigpt"):
            if "." in node.module:
                found.add(named(node.module))
            else:
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(named(a.name) for a in node.names if a.name.startswith("minigpt."))
    return found


ROOMS = ("formats",)  # subpackages whose modules the chapter table lists one by one


def _modules() -> set[str]:
    """Every module of the package, named as in the README's table."""
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "generate"}  # a -m shim
    rooms = {f"{r}/{p.stem}" for r in ROOMS for p in (PACKAGE / r).glob("*.py")}
    return top | {m for m in rooms if not m.endswith("__init__")}


def test_each_module_is_in_the_table_and_has_its_test_file():
    table = _chapter_table()
    assert sorted(table) == [f"{i:02d}" for i in range(9)]
    listed = [m for mods in table.values() for m in mods]
    assert len(listed) == len(set(listed)), "a module is listed under two chapters"
    modules = _modules()
    assert modules - SUPPORT == set(listed), "README's chapter table and minigpt/ disagree"
    for module in sorted(modules):
        test = f"test_{module.replace('/', '_')}.py"
        assert (ROOT / "tests" / test).is_file(), f"tests/{test} is missing"


def test_the_core_never_reaches_the_formats_room():
    """No core module imports the formats room, at the top or inside a function, directly or
    through another module: the model and tokenizer a reader studies stand on their own."""
    graph = {m: _minigpt_imports((PACKAGE / f"{m}.py").read_text()) for m in _modules()}
    for start in CORE:
        seen, todo = set(), [start]
        while todo:
            module = todo.pop()
            for dep in graph.get(module, ()):
                assert not dep.startswith("formats"), f"{start} reaches {dep} through {module}"
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        source = (PACKAGE / f"{start}.py").read_text()
        for dynamic in ("import_module", "__import__"):  # an import the AST walk cannot see
            assert dynamic not in source, f"minigpt/{start}.py imports through {dynamic}"


def test_each_chapter_imports_only_its_own_and_earlier_modules():
    table = _chapter_table()
    allowed: set[str] = set(SUPPORT)
    for number, modules in sorted(table.items()):
        allowed |= set(modules)
        (notebook,) = (ROOT / "book").glob(f"{number}_*.ipynb")
        cells = json.loads(notebook.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        later = _minigpt_imports(code) - allowed - PREVIEWS.get(number, set())
        assert not later, f"{notebook.name} imports {sorted(later)}, from later chapters"


def test_no_import_circle_between_modules():
    """Module-level imports (not those inside ``if __name__ == "__main__"``) form no circle."""
    import ast

    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("minigpt.")
            ):
                deps.add(node.module)
        graph[name] = deps
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError("import circle: " + " -> ".join([*trail, node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            visit(dep, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        visit(node, [])


def test_public_names_are_defined_where_they_are_listed():
    """A name in a module's ``__all__`` is defined there, not imported (one name, one address)."""
    import ast

    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = set()
        listed: list[str] = []
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                imported.update(a.asname or a.name for a in node.names)
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                listed = [e.value for e in node.value.elts]
        reexported = sorted(set(listed) & imported)
        assert not reexported, f"{path.name} re-exports {reexported}"
