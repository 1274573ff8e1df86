"""The package's shape: stages as layers with no import cycles, and no module over 600 lines."""

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "llm_streamscope"


def test_the_import_contracts_hold(monkeypatch):
    importlinter = pytest.importorskip("importlinter.cli")
    monkeypatch.chdir(ROOT)  # the contracts are in pyproject.toml
    assert importlinter.lint_imports(no_cache=True) == importlinter.EXIT_STATUS_SUCCESS


def test_no_module_is_over_600_lines():
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 600} == {}
