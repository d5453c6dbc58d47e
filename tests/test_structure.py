"""The code's shape: steps depend on the library modules, never on each other."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ROOT / "components"


def imported_modules(path: Path) -> set[str]:
    """Every `components.X` module that `path` imports, at the top or inside a function (`import components.X`,
    `from components.X import ...`, `from components import X`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("components."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "components":
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("components.")}
    return found


def step_modules() -> set[str]:
    """The modules that define a KFP component (a pipeline step)."""
    return {p.stem for p in COMPONENTS.glob("*.py") if "@lightweight_component" in p.read_text(encoding="utf-8")}


def test_the_steps_are_found():
    assert {
        "prepare",
        "base_model",
        "tokenization",
        "train",
        "evaluate",
        "export",
        "registry",
        "smoke",
        "sweep",
    } <= step_modules()


def test_no_module_imports_a_step_other_than_itself():
    steps = step_modules()
    offenders = {p.stem: sorted((imported_modules(p) & steps) - {p.stem}) for p in COMPONENTS.glob("*.py")}
    assert {name: steps for name, steps in offenders.items() if steps} == {}


def test_every_form_of_import_is_seen(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import components.a\nfrom components.b import x\nfrom components import c, d as e\n"
        "def f():\n    from components.g.h import y\n",
        encoding="utf-8",
    )
    assert imported_modules(source) == {"a", "b", "c", "d", "g"}
