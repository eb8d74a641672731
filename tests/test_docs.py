"""The README cannot drift from the code (datasette's idea: a plugin hook, a command or an
option without its documented place is a failing test, not a stale page).

Conventions the README keeps, each checked here:

- ``## Commands`` has a table with one row per command of ``serbench.cli.main.COMMANDS``
  (for a command with actions, such as ``data``, one row per action). The row's first
  cell starts with ```serbench NAME`` (```serbench data fetch``) and names every long
  option of that command; its last cell is the command's module, ```serbench/cli/NAME.py```.
  No row names a command that does not exist.
- The same section has a table with one row per variable of ``serbench.env.VARIABLES``;
  its last cell says ``yes`` exactly for the variables ``--executor docker`` passes on.
- ``## Plugins`` has a table with one row per hook of ``serbench/plugin/hookspecs.py``:
  first cell ```serbench_engines()``` (the hook's parameters inside the parentheses),
  third cell the class the hook's docstring says the returned classes subclass, last cell
  its contract kit ``serbench.testing.<engines|datasets|...>`` where one exists. The section
  names every built-in plugin module that ``pyproject.toml`` registers (``random_search.py``).
- A fenced block right after ``<!-- docs: include PATH -->`` is the file at PATH, as it
  is; after ``<!-- docs: excerpt PATH -->`` it is a verbatim part of that file. "Write an
  engine plugin" includes the example engine, its test and its entry point this way.
- Every ``serbench.dotted.name`` in the README imports, and every repository path it
  names (``serbench/...``, ``tests/...``, ``examples/...``, ...) exists.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
from pathlib import Path

import pytest

from serbench import env
from serbench.cli.main import COMMANDS, build_parser
from serbench.plugin import hookspecs

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
EXAMPLE = "examples/serbench-engine-example"


def section(title: str) -> str:
    """The README's section under ``title`` (a heading line such as ``## Plugins``), up
    to the next heading of the same or a higher level."""
    level = len(title) - len(title.lstrip("#"))
    match = re.search(rf"^{re.escape(title)}\n(.*?)(?=^#{{1,{level}}} |\Z)", README, re.S | re.M)
    assert match, f"README.md has no section {title!r}"
    return match.group(1)


def rows(text: str) -> list[list[str]]:
    """The body rows of every markdown table in ``text``, as lists of cells (``\\|`` is
    an escaped pipe inside a cell); header and separator rows left out."""
    found = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|") or re.fullmatch(r"\|( *:?-+:? *\|)+", line):
            continue
        if i + 1 < len(lines) and re.fullmatch(r"\|( *:?-+:? *\|)+", lines[i + 1]):
            continue  # a header
        found.append([cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return found


# ---------------------------------------------------------------------------------------
# Commands


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)] or [None]
    return dict(action.choices) if action is not None else {}


def leaf_commands() -> dict[str, tuple[object, argparse.ArgumentParser]]:
    """``"validate"``, ..., ``"data fetch"``, ``"data check"``, ...: each command line the
    README must document, with its command module and parser."""
    top = subparsers_of(build_parser())
    leaves = {}
    for module in COMMANDS:
        parser = top[module.NAME]
        actions = subparsers_of(parser)
        for action, sub in actions.items() or [(None, parser)]:
            leaves[module.NAME if action is None else f"{module.NAME} {action}"] = (module, sub)
    return leaves


def command_rows() -> dict[str, list[str]]:
    """The rows of the Commands section's command table, by the command they document."""
    leaves = leaf_commands()
    found = {}
    for cells in rows(section("## Commands")):
        line = cells[0].strip("`")
        if not line.startswith("serbench "):
            continue
        words = line.removeprefix("serbench ")
        named = [leaf for leaf in leaves if words == leaf or words.startswith(leaf + " ")]
        assert named, f"README.md, Commands: row {cells[0]!r} names no serbench command"
        leaf = max(named, key=len)
        assert leaf not in found, f"README.md, Commands: two rows for `serbench {leaf}`"
        found[leaf] = cells
    return found


def test_the_command_table_is_the_parser():
    assert [module.NAME for module in COMMANDS] == list(subparsers_of(build_parser()))


@pytest.mark.parametrize("module", COMMANDS, ids=lambda m: m.NAME)
def test_every_command_module_has_the_one_shape(module):
    assert module.__name__ == f"serbench.cli.{module.NAME}"
    assert callable(module.add_parser) and callable(module.run)
    assert list(inspect.signature(module.add_parser).parameters) == ["commands"]
    assert list(inspect.signature(module.run).parameters) == ["args"]
    doc = inspect.getdoc(module) or ""
    assert doc.startswith(f"``serbench {module.NAME}"), (
        f"{module.__name__}: the docstring must open with ``serbench {module.NAME} ...``: the command's contract"
    )


@pytest.mark.parametrize("leaf", list(leaf_commands()))
def test_every_command_has_its_readme_row(leaf):
    documented = command_rows()
    assert leaf in documented, f"README.md, Commands: no row `serbench {leaf} ...`"
    module, parser = leaf_commands()[leaf]
    cells = documented[leaf]
    options = [s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"]
    missing = [o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", cells[0])]
    assert not missing, f"README.md, Commands: the row of `serbench {leaf}` does not name {', '.join(missing)}"
    code = Path(module.__file__).resolve().relative_to(REPO).as_posix()
    assert cells[-1] == f"`{code}`", f"README.md, Commands: the row of `serbench {leaf}` must end with `{code}`"


def test_every_environment_variable_has_its_readme_row():
    table = {
        cells[0].strip("`"): cells
        for cells in rows(section("## Commands"))
        if re.fullmatch(r"`[A-Z][A-Z0-9_]*`", cells[0])
    }
    names = [variable.name for variable in env.VARIABLES]
    assert sorted(table) == sorted(names), "README.md, Commands: the environment table is not serbench/env.py's"
    for variable in env.VARIABLES:
        passed_on = table[variable.name][-1] == "yes"
        assert passed_on == variable.to_containers, (
            f"README.md, Commands: {variable.name}: passed on to job containers is "
            f"{'yes' if variable.to_containers else 'not yes'} in serbench/env.py"
        )


# ---------------------------------------------------------------------------------------
# Plugins


def hooks() -> dict[str, object]:
    return {
        name: function
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, f"{hookspecs.PROJECT}_spec")
    }


def hook_rows() -> dict[str, list[str]]:
    return {
        cells[0].strip("`"): cells
        for cells in rows(section("## Plugins"))
        if re.fullmatch(r"`serbench_\w+\(.*\)`", cells[0])
    }


def test_there_are_hooks_to_document():
    assert hooks(), "no @hookspec found in serbench/plugin/hookspecs.py"


@pytest.mark.parametrize("name", sorted(hooks()))
def test_every_hook_has_its_readme_row(name):
    function = hooks()[name]
    call = f"{name}({', '.join(inspect.signature(function).parameters)})"
    documented = hook_rows()
    assert call in documented, f"README.md, Plugins: no table row for the hook `{call}`"
    stated = re.search(r":class:`([\w.]+)`", inspect.getdoc(function) or "")
    assert stated, f"serbench/plugin/hookspecs.py: {name}'s docstring names no :class: its classes subclass"
    assert resolve(documented[call][2].strip("`")) is resolve(stated.group(1)), (
        f"README.md, Plugins: the row of `{call}` must name {stated.group(1)} as the base class"
    )
    kit = f"serbench.testing.{name.removeprefix('serbench_')}"
    if (REPO / kit.replace(".", "/")).with_suffix(".py").exists():
        assert documented[call][-1].startswith(f"`{kit}`"), (
            f"README.md, Plugins: the row of `{call}` must end with its contract kit, `{kit}`"
        )


def test_no_readme_row_for_a_hook_that_does_not_exist():
    names = set(hooks())
    stale = [call for call in hook_rows() if call.split("(")[0] not in names]
    assert not stale, f"README.md, Plugins: rows for hooks serbench/plugin/hookspecs.py does not have: {stale}"


def builtin_plugin_modules() -> dict[str, str]:
    """pyproject.toml's ``[project.entry-points.serbench]``: entry-point name -> module."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    table = re.search(r"^\[project\.entry-points\.serbench\]\n(.*?)(?=^\[|\Z)", text, re.S | re.M)
    assert table, "pyproject.toml has no [project.entry-points.serbench]"
    return dict(re.findall(r'^([\w-]+)\s*=\s*"([\w.]+)"', table.group(1), re.M))


def test_the_readme_names_every_builtin_plugin_module():
    plugins = section("## Plugins")
    modules = builtin_plugin_modules()
    assert modules
    for name, module in modules.items():
        path = module.replace(".", "/")
        folder, file = path.rsplit("/", 1)
        assert f"`{folder}/`" in plugins and f"`{file}.py`" in plugins, (
            f"README.md, Plugins: the built-in plugin {name!r} ({path}.py) is not named"
        )


# ---------------------------------------------------------------------------------------
# Code that is a file's source, and references that resolve

MARKED = re.compile(r"<!-- docs: (include|excerpt) (\S+) -->\n( *)```[a-z]*\n(.*?)\n\3```", re.S)


def marked_blocks() -> list[tuple[str, str, str]]:
    """(include or excerpt, path, the block's text with its fence's indentation removed)."""
    found = []
    for how, path, indent, body in MARKED.findall(README):
        lines = [line.removeprefix(indent) for line in body.split("\n")]
        found.append((how, path, "\n".join(lines)))
    return found


def test_every_docs_marker_has_its_block():
    assert len(re.findall(r"<!-- docs: ", README)) == len(marked_blocks()), (
        "README.md: a <!-- docs: include|excerpt PATH --> marker without a fenced block right after it"
    )


@pytest.mark.parametrize(
    "how, path",
    [
        ("include", f"{EXAMPLE}/serbench_engine_example/sobol.py"),
        ("include", f"{EXAMPLE}/tests/test_sobol_engine.py"),
        ("excerpt", f"{EXAMPLE}/pyproject.toml"),
    ],
)
def test_write_an_engine_plugin_shows_the_example_package(how, path):
    steps = section("### Write an engine plugin")
    assert f"<!-- docs: {how} {path} -->" in steps, f"README.md, Write an engine plugin: no <!-- docs: {how} {path} -->"


def test_the_example_entry_point_is_the_one_shown():
    (block,) = [text for how, path, text in marked_blocks() if path.endswith(f"{EXAMPLE}/pyproject.toml")]
    assert block.startswith("[project.entry-points.serbench]\n")
    assert 'sobol = "serbench_engine_example.sobol"' in block


@pytest.mark.parametrize("how, path, text", marked_blocks(), ids=[f"{h}:{p}" for h, p, _ in marked_blocks()])
def test_marked_blocks_are_the_files_source(how, path, text):
    source = (REPO / path).read_text(encoding="utf-8")
    if how == "include":
        assert text.strip() == source.strip(), f"README.md: the block after <!-- docs: include {path} --> is not {path}; paste the file again"
    else:
        assert text.strip() in source, f"README.md: the block after <!-- docs: excerpt {path} --> is not part of {path}"


def resolve(dotted: str) -> object:
    """The module or attribute a dotted name such as ``serbench.engines.Engine`` names."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(dotted)


DOTTED = sorted(set(re.findall(r"(?<![\w./~-])serbench(?:\.[A-Za-z_]\w*)+", README)))
PATHS = sorted(
    set(re.findall(r"(?<![\w./~-])(?:serbench|tests|bench|jobs|scripts|examples|docs|\.ci|\.github)/[\w./-]*", README))
)


@pytest.mark.parametrize("dotted", DOTTED)
def test_every_dotted_name_in_the_readme_imports(dotted):
    try:
        resolve(dotted)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"README.md names {dotted}, which does not resolve: {exc}")


@pytest.mark.parametrize("path", PATHS)
def test_every_repository_path_in_the_readme_exists(path):
    assert (REPO / path.rstrip(".")).exists(), f"README.md names {path}, which is not in the repository"


def test_stale_module_names_are_gone():
    stale = ["serbench_plugins", "serbench/hookspecs.py", "serbench.hookspecs", "serbench.engine.", "report_check"]
    assert not [name for name in stale if name in README]
