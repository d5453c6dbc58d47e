"""Other libraries' private names: all listed in one table, reached through one function, present in the
installed versions (an upgrade that removes one fails here, naming it)."""

import ast
from pathlib import Path

import pytest
import transformers

from banglasenti.runtime.private_api import PRIVATE, TRAINER, missing_private_api, private, require_private

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_UNDERSCORED = {"_asdict", "_replace", "_fields", "_make"}  # namedtuple's public API


@pytest.mark.component
def test_the_installed_libraries_have_every_private_name_used():
    assert missing_private_api() == []


def test_a_removed_name_is_named_with_its_library_and_use(monkeypatch):
    monkeypatch.delattr(transformers.Trainer, "_run_epoch")
    (problem,) = missing_private_api(("transformers",))
    assert problem.startswith(f"transformers {transformers.__version__} has no transformers.trainer.Trainer._run_epoch")
    assert "a loader rebuilt for a mid-epoch resume is sharded again" in problem
    with pytest.raises(AttributeError, match="has no transformers.trainer.Trainer._run_epoch"):
        require_private(transformers.Trainer, "_run_epoch")


def test_an_instance_attribute_is_looked_for_in_its_source(monkeypatch):
    import inspect

    source = inspect.getsource(transformers.trainer)
    monkeypatch.setattr(inspect, "getsource", lambda obj: source.replace("._globalstep_last_logged", "._other"))
    assert any("_globalstep_last_logged" in p for p in missing_private_api(("transformers",)))


def test_only_listed_names_are_reached():
    with pytest.raises(KeyError, match="not in banglasenti.runtime.private_api.PRIVATE"):
        private(transformers.Trainer, "_inner_training_loop")
    with pytest.raises(KeyError, match="not in banglasenti.runtime.private_api.PRIVATE"):
        private(object(), "_tr_loss", "transformers.trainer:Other")
    assert private(transformers.Trainer, "_save_checkpoint") is transformers.Trainer._save_checkpoint
    assert {u.owner for u in PRIVATE if u.name == "_tr_loss"} == {TRAINER}


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in PUBLIC_UNDERSCORED


def private_accesses(path: Path) -> list[str]:
    """Private names of other code reached directly in `path`: `x._name` (x not self/cls), `self._name` of a name
    in PRIVATE outside its own override, `super()._name` of a name not in PRIVATE, getattr/setattr/hasattr with a
    private name, and imports from a private module."""
    listed = {u.name for u in PRIVATE}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    overrides = {
        id(child): fn.name for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) for child in ast.walk(fn)
    }  # innermost function wins: ast.walk visits outer ones first
    found = []
    for node in ast.walk(tree):
        where = f"{path.parent.name}/{path.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and any(is_private(part) for part in (node.module or "").split(".")):
            found.append(f"{where}: from {node.module} import")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "setattr", "hasattr"):
            name = node.args[1] if len(node.args) > 1 else None
            if isinstance(name, ast.Constant) and isinstance(name.value, str) and is_private(name.value):
                found.append(f"{where}: {node.func.id}(..., {name.value!r})")
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                if node.attr in listed and overrides.get(id(node)) != node.attr:
                    found.append(f"{where}: self.{node.attr}")
                continue
            if isinstance(base, ast.Call) and getattr(base.func, "id", "") == "super" and node.attr in listed:
                continue
            found.append(f"{where}: .{node.attr}")
    return found


def test_the_check_finds_each_kind_of_direct_access(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text(
        "from torch_xla._internal import tpu\n"
        "x = getattr(config, '_attn_implementation', None)\n"
        "y = loader._parallel_loader_kwargs\n"
        "class T(Trainer):\n"
        "    def _save_checkpoint(self):\n"
        "        super()._save_checkpoint()\n"
        "        return self._tr_loss\n",
        encoding="utf-8",
    )
    found = {hit.split(": ", 1)[1] for hit in private_accesses(source)}
    assert found == {
        "from torch_xla._internal import",
        "getattr(..., '_attn_implementation')",
        "._parallel_loader_kwargs",
        "self._tr_loss",
    }


def test_no_private_name_is_reached_directly():
    files = [*ROOT.glob("components/*.py"), *ROOT.glob("pipelines/*.py"), *ROOT.glob("benchmarks/*.py")]
    assert [hit for path in files for hit in private_accesses(path)] == []


@pytest.mark.xla
def test_torch_xla_has_every_private_name_used():
    """In the XLA environment (make test-xla): torch_xla's entries, the device loader's included."""
    import torch_xla  # noqa: F401 - this test belongs to the XLA environment, where torch_xla is installed

    assert missing_private_api(("torch_xla", "transformers")) == []
