"""Dependencies point one way: cli -> pipeline -> stages -> errors/config/types. Only the CLI prints or exits."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "keepfit"
STAGES = ["data", "train", "evaluation", "gate", "registry"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _library_files():
    return [p for p in SRC.rglob("*.py") if "cli" not in p.relative_to(SRC).parts]


@pytest.mark.parametrize("path", _library_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_library_code_never_imports_cli_or_pipeline_from_a_stage(path: Path):
    imports = _imports(path)
    assert not any(name.startswith("keepfit.cli") for name in imports), f"{path} imports the CLI"
    rel = path.relative_to(SRC).parts
    if rel[0] in STAGES:
        assert "keepfit.pipeline" not in imports, f"stage module {path} imports the pipeline"


@pytest.mark.parametrize("path", _library_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_library_code_neither_prints_nor_exits(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            owner = getattr(getattr(func, "value", None), "id", "")
            assert name != "print", f"{path}:{node.lineno} prints; return values or log instead"
            assert not (owner == "sys" and name == "exit"), f"{path}:{node.lineno} exits; raise a KeepfitError"
