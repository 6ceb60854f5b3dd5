"""The import direction the README and DESIGN promise, checked on every import statement (also the
ones inside functions): serving never reaches training code, models never reach serving."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hyperrec"
# package -> packages it must never import
FORBIDDEN = {
    "data": {"models", "train", "eval", "bundle", "export", "serve", "bench"},
    "models": {"train", "eval", "bundle", "export", "serve", "bench"},
    "bundle": {"train", "eval", "export", "serve", "bench"},
    "serve": {"train", "eval", "export", "bench"},
    "eval": {"export", "serve", "bench"},
    "train": {"export", "serve", "bench"},
    "experiment": {"train", "export", "serve", "bench", "models", "bundle"},  # it reads logs only
    "sim": {"train", "export", "models", "bundle", "bench"},  # it shops through serving, like a shop's site
}


def imported_packages(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        out |= {name.split(".")[1] for name in names if name.startswith("hyperrec.") and name.count(".") >= 1}
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_downstream(package):
    wrong = {
        f"{path.relative_to(PACKAGE.parent)} imports hyperrec.{target}"
        for path in (PACKAGE / package).rglob("*.py")
        for target in imported_packages(path) & FORBIDDEN[package]
    }
    assert not wrong, sorted(wrong)
