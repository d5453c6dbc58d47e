"""The code's shape: components/ holds the steps, banglasenti/ the library by role, pipelines/ the definitions and
commands; steps never import each other, the library never imports a step or a pipeline, and no import cycles."""

import ast
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("banglasenti", "components", "pipelines")
COMMANDS = {"compile", "submit", "preflight", "run_local", "sweep"}
# Named so by their role: sitecustomize is what Python looks for, conftest what pytest looks for.
FIXED_NAMES = {"__init__", "sitecustomize", "conftest"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every importable module of the project's packages, by dotted name."""
    return {
        module_name(p, root): p
        for package in PACKAGES
        for p in sorted((root / package).rglob("*.py"))
        if p.stem != "sitecustomize"
    }


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports, at the top or inside a function: `import a.b`, `from a.b import x` (x a
    module of a.b or a name in it), `from a import b`; relative imports are not used in this project."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in known:
                    found.add(sub)
                elif node.module in known:
                    found.add(node.module)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = project_modules(root)
    known = set(modules)
    return {name: imported_modules(path, known) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def component_functions() -> dict[str, list[str]]:
    """The KFP components (functions decorated with @lightweight_component) of each module, wherever they are."""
    found: dict[str, list[str]] = {}
    for name, path in project_modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Name) and d.id == "lightweight_component" for d in node.decorator_list
            ):
                found.setdefault(name, []).append(node.name)
    return found


def test_components_holds_the_steps_and_only_them():
    steps = component_functions()
    assert set(steps) == {module_name(p) for p in (ROOT / "components").glob("*.py") if p.stem != "__init__"}
    assert {f for fs in steps.values() for f in fs} >= {
        "prepare",
        "base_model",
        "tokenize",
        "train_lora",
        "train_baseline",
        "evaluate",
        "export_model",
        "select_best_trial",
        "smoke",
        "selected_macro_f1",
        "upload_model",
    }


def test_a_task_name_finds_its_module():
    """The console's task name (the function's name, dashed) and the module's name start alike: export-model is in
    components/export_model.py, train-lora and train-baseline in components/train.py, tokenize in tokenization.py."""
    for module, functions in component_functions().items():
        stem = module.rsplit(".", 1)[1]
        for function in functions:
            shadowed = function in sys.stdlib_module_names  # tokenize would shadow Python's own: tokenization.py
            assert (
                function == stem or function.startswith(f"{stem}_") or (shadowed and stem.startswith(function[:-1]))
            ), (module, function)


def test_steps_never_import_each_other():
    graph = import_graph()
    steps = {name for name in graph if name.startswith("components.")}
    assert {name: sorted(graph[name] & steps) for name in steps if graph[name] & steps} == {}


def test_the_library_never_imports_a_step_or_a_pipeline():
    graph = import_graph()
    library = {name: deps for name, deps in graph.items() if name.split(".")[0] == "banglasenti"}
    offenders = {
        name: sorted(d for d in deps if d.split(".")[0] in ("components", "pipelines"))
        for name, deps in library.items()
    }
    assert {name: deps for name, deps in offenders.items() if deps} == {}


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_module_name_appears_twice():
    seen: dict[str, list[str]] = {}
    for folder in (*PACKAGES, "benchmarks", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.stem not in FIXED_NAMES:
                seen.setdefault(path.stem, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}


def test_no_module_shadows_the_standard_library():
    names = {p.stem for package in PACKAGES for p in (ROOT / package).rglob("*.py")} - FIXED_NAMES
    names |= {p.name for package in PACKAGES for p in (ROOT / package).rglob("*") if p.is_dir()}
    assert sorted(names & set(sys.stdlib_module_names)) == []


def test_every_package_says_what_lives_there():
    for init in (ROOT / package / "__init__.py" for package in PACKAGES):
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), init
    for init in (ROOT / "banglasenti").rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "\n" not in doc, f"{init.relative_to(ROOT)}: a one-line docstring"


def test_pipelines_holds_definitions_and_the_commands():
    """The commands are the modules of pipelines/ that run as scripts; each says in its first line what it does."""
    commands = set()
    for path in (ROOT / "pipelines").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body):
            commands.add(path.stem)
            first = (ast.get_docstring(tree) or "").split("\n", 1)[0]
            assert first.endswith((".", ":")) and first.split()[0][0].isupper(), (path.name, first)
    assert commands == COMMANDS


def test_pyproject_lists_every_package():
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    on_disk = {module_name(init) for package in PACKAGES for init in (ROOT / package).rglob("__init__.py")}
    assert set(listed) == on_disk | {"banglasenti.local.gcsfuse_site"}


def test_every_form_of_import_and_a_cycle_are_seen(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "banglasenti" / "a.py").write_text("import components.s\n")
    (tmp_path / "banglasenti" / "b.py").write_text("from banglasenti import a\n")
    (tmp_path / "components" / "s.py").write_text("def f():\n    from banglasenti.b import x\n")
    (tmp_path / "pipelines" / "p.py").write_text("from banglasenti.a import y\nimport banglasenti.b\n")
    graph = import_graph(tmp_path)
    assert graph["banglasenti.a"] == {"components.s"}
    assert graph["banglasenti.b"] == {"banglasenti.a"}
    assert graph["components.s"] == {"banglasenti.b"}
    assert graph["pipelines.p"] == {"banglasenti.a", "banglasenti.b"}
    assert cycles(graph) == [["banglasenti.a", "banglasenti.b", "components.s"]]
