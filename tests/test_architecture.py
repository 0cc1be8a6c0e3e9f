"""docs/architecture.md's folder table is the rule for imports, and the code keeps it: every ``diffact`` import
(module level or inside a function) of a library module is one its folder may make; only the command-line layer
(``cli.py``, ``*/commands.py``, ``diffact/commands.py``) imports command modules; notebooks never import the
workflow package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "diffact"
PACKAGE_ROOTS = ("diffact", "diffact.tasks")  # package __init__ files that only group their folders
ROW = re.compile(r"^\| `src/diffact/(?P<area>[a-z_/]+?)(?:/|\.py)` \| .*? \| (?P<allowed>[^|]*) \|$", re.M)


def area_of(module: str) -> str:
    """``diffact.tasks.scarce.pixels`` → ``tasks/scarce``; ``diffact.extract.hooks`` → ``extract``; ``diffact.api`` → ``api``."""
    parts = module.split(".")[1:]
    if parts and parts[0] == "tasks" and len(parts) > 1:
        return f"tasks/{parts[1]}"
    return parts[0] if parts else ""


def is_command_layer(module: str) -> bool:
    return module == "diffact.cli" or module.endswith(".commands") or module == "diffact.commands"


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(path: Path, known: set[str]) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("diffact"):
            for alias in node.names:  # `from diffact.workflow import scarce` imports the submodule, not the package
                sub = f"{node.module}.{alias.name}"
                names.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name in known)
    return (names & known) - {"diffact"}


def allowed_imports() -> dict[str, set[str]]:
    """Area → the areas it may import, from the table (``tasks`` allows every ``tasks/<x>``)."""
    table = {}
    for match in ROW.finditer((ROOT / "docs" / "architecture.md").read_text()):
        table[match["area"]] = {a.replace(".", "/") for a in re.findall(r"`([a-z_.]+)`", match["allowed"])}
    return table


def violations(mods: dict[str, Path], table: dict[str, set[str]]) -> list[str]:
    found = []
    for module, path in sorted(mods.items()):
        if is_command_layer(module) or module in PACKAGE_ROOTS:
            continue
        source = area_of(module)
        for target in sorted(imported(path, set(mods))):
            dest = area_of(target)
            if is_command_layer(target):
                found.append(f"{module} imports the command module {target}")
            elif dest != source and dest not in table.get(source, set()) and not (
                    dest.startswith("tasks/") and "tasks" in table.get(source, set())):
                found.append(f"{module} imports {target}: {source} may import {sorted(table.get(source, set()))}")
    return found


def test_the_table_covers_every_library_folder():
    table = allowed_imports()
    areas = {area_of(m) for m in modules() if not is_command_layer(m) and m not in PACKAGE_ROOTS}
    assert areas - set(table) == set(), "folders missing from docs/architecture.md's table"
    assert table["utils"] == set() and table["families"] == {"utils"}


def test_every_import_is_one_the_table_allows():
    assert violations(modules(), allowed_imports()) == []


def test_a_forbidden_import_is_found(tmp_path):
    """The checker itself: a models module importing extract, or a library module importing a command module."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from diffact.extract.hooks import ActivationCapture\n"
                   "    from diffact.data.commands import register\n")
    mods = {**modules(), "diffact.models.bad": bad}
    found = violations(mods, allowed_imports())
    assert found == ["diffact.models.bad imports the command module diffact.data.commands",
                     "diffact.models.bad imports diffact.extract.hooks: models may import ['data', 'families', 'utils']"]


def test_notebooks_do_not_import_the_workflow_package():
    offenders = [p.name for p in (ROOT / "notebooks").rglob("*.py")
                 if re.search(r"^\s*(from diffact\.workflow|from diffact import workflow|import diffact\.workflow)",
                              p.read_text(), re.M)]
    assert offenders == []
