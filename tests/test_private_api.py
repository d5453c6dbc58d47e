"""Other libraries' private names: all listed in one table, reached through one function, present in the
installed versions (an upgrade that removes one fails here, naming it)."""

import ast
from pathlib import Path

import pytest
import transformers

from components.private_api import PRIVATE, TRAINER, missing_private_api, private, require_private

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_UNDERSCORED = {"_asdict", "_replace", "_fields", "_make"}  # namedtuple's public API


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
    with pytest.raises(KeyError, match="not in components.private_api.PRIVATE"):
        private(transformers.Trainer, "_inner_training_loop")
    with pytest.raises(KeyError, match="not in components.private_api.PRIVATE"):
        private(object(), "_tr_loss", "transformers.trainer:Other")
    assert private(transformers.Trainer, "_save_checkpoint") is transformers.Trainer._save_checkpoint
    assert {u.owner for u in PRIVATE if u.name == "_tr_loss"} == {TRAINER}


def private_accesses(path: Path) -> list[str]:
    """`x._name` in `path` where x is not self/cls, and `super()._name` of a name not in PRIVATE."""
    listed = {u.name for u in PRIVATE}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        if node.attr in PUBLIC_UNDERSCORED:
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in ("self", "cls"):
            continue
        if isinstance(base, ast.Call) and getattr(base.func, "id", "") == "super" and node.attr in listed:
            continue
        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    return found


def test_no_private_name_is_reached_directly():
    files = [*ROOT.glob("components/*.py"), *ROOT.glob("pipelines/*.py"), *ROOT.glob("benchmarks/*.py")]
    assert [hit for path in files for hit in private_accesses(path)] == []


@pytest.mark.xla
def test_torch_xla_has_every_private_name_used():
    """In the XLA environment (make test-xla): torch_xla's entries, the device loader's included."""
    assert missing_private_api(("torch_xla", "transformers")) == []
