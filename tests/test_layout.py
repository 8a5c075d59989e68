"""The layout's one rule, checked on the code itself: each package imports only the packages below
it (README, "Layout"), so there is no import circle and no arrow running back up."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# package → the packages it may import (besides itself and third-party modules)
ALLOWED = {
    "base": set(),
    "stages": {"base"},
    "prednet": {"base", "stages"},  # skipfit.py: stages._lsfit's least-squares fitter
    "frames": {"base"},
    "archive": {"base", "frames"},
    "sequence": {"base", "stages", "prednet"},
    "compress": {"base", "stages", "prednet", "frames", "archive", "sequence"},
    "decompress": {"base", "stages", "prednet", "frames", "archive", "sequence"},
    "cluster": {"base", "stages", "prednet", "frames", "archive", "sequence", "compress", "decompress"},
}


def imported_packages(path):
    """Top-level names of every import in a file, module level and inside functions alike."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_package_imports_only_packages_below_it():
    ours = set(ALLOWED) | {"tezip", "train_data_create"}
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for name in imported_packages(path) & ours - {package} - allowed:
                wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_packages_are_all_listed():
    """A new package gets its place in the layout (and in the wheel) when it is added."""
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert packages == set(ALLOWED)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert all(f'"{p}"' in pyproject for p in ALLOWED)
