"""The layout stays the one DEVELOPERS.md describes: every module of ``serbench/`` is in
its layout map (and nothing else is), every module says what it does in a docstring,
imports between stages point one way only (down the map), and no module imports a
built-in plugin by name except through the entry points."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "serbench"

# Lower ranks never import higher ones; packages of one rank never import each other.
# The package root (``serbench``: ``hookimpl``, ``__version__``) is importable from anywhere.
RANKS = {
    "errors": 0, "env": 0, "atomic": 0,
    "spec": 1,
    "plugin": 2,
    "engines": 3, "pruning": 3, "data": 3,
    "backbones": 4,
    "training": 5, "results": 5,
    "execution": 6, "deploy": 6,
    "study": 7, "leaderboard": 7,
    "testing": 8,
    "cli": 9,
}
BUILT_INS = re.compile(r"^serbench\.(engines\.(?!base$|helpers$)\w+|data\.adapters\.\w+|backbones\.(whisper|speechbrain)\w*|execution\.\w+_backend|pruning\.(?!base$)\w+)$")


def modules() -> dict[str, Path]:
    return {".".join(p.relative_to(REPO).with_suffix("").parts): p for p in sorted(PACKAGE.rglob("*.py"))}


def layout_map() -> set[str]:
    text = (REPO / "DEVELOPERS.md").read_text(encoding="utf-8")
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(serbench/[\w/]+\.py)`", section))


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every serbench import, at any depth, but not under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for child in node.body for inner in ast.walk(child)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "serbench":
            found.append((node.lineno, node.module))
            if node.module == "serbench":  # from serbench import atomic, env
                found += [(node.lineno, f"serbench.{a.name}") for a in node.names if a.name in RANKS]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "serbench"]
    return found


def stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_is_in_the_layout_map_and_nothing_else():
    tree = {str(p.relative_to(REPO)) for p in modules().values()}
    listed = layout_map()
    assert not tree - listed, f"modules missing from DEVELOPERS.md's layout map: {sorted(tree - listed)}"
    assert not listed - tree, f"DEVELOPERS.md lists modules that do not exist: {sorted(listed - tree)}"


def test_every_module_states_its_job_in_a_docstring():
    missing = [name for name, path in modules().items() if not ast.get_docstring(ast.parse(path.read_text()))]
    assert not missing, f"modules without a docstring: {missing}"


def test_every_stage_has_a_rank_and_imports_point_down():
    stages = {stage(name) for name in modules()} - {None, "__init__"}
    assert stages == set(RANKS), f"stages without a rank in this test: {sorted(stages ^ set(RANKS))}"
    upward = []
    for name, path in modules().items():
        own = stage(name)
        if own is None or own == "__init__":
            continue
        for line, target in imports(path):
            other = stage(target)
            if other is None or other == own:
                continue
            if RANKS[other] >= RANKS[own]:
                upward.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not upward, "imports against the layout's direction:\n" + "\n".join(upward)


def test_built_ins_are_imported_only_through_the_entry_points():
    """Nothing in the core names a concrete engine, corpus or model: a built-in's module is
    imported by its own axis's modules (its heavy half) and by nobody else."""
    named = []
    for name, path in modules().items():
        for line, target in imports(path):
            if BUILT_INS.match(target) and not target.startswith(name.rsplit(".", 1)[0] + ".") and target != name:
                named.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not named, "core modules that import a built-in plugin:\n" + "\n".join(named)
