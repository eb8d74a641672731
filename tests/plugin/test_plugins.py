"""Plugin discovery: built-ins and third-party packages both come in through the
``serbench`` entry-point group, and broken or conflicting plugins are bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from conftest import assert_one_line_error as one_line_error
from conftest import run_serbench
import yaml

from serbench.errors import PluginError
from serbench.plugin import hookspecs
from serbench.plugin.kinds import KINDS, PLUGIN_KINDS, plugin_kind
from serbench.plugin.registry import load_plugins, registry

REPO = Path(__file__).resolve().parents[2]
BUILT_INS = {"engine": "random", "dataset": "emodb", "backbone": "whisper", "backend": "local", "pruner": "median"}  # one per kind
ENTRY_POINTS = {**BUILT_INS, "pruner": "pruner-median"}  # each one's entry-point name (unique in the group)

ACME_ENGINE = '''
import serbench
from serbench.engines.base import Engine
from serbench.spec import ChoiceParam


class AcmeEngine(Engine):
    """Always asks for the low bound, or the first choice."""

    name = "{engine}"

    def ask(self, number):
        return {{
            key: param.values[0] if isinstance(param, ChoiceParam) else param.low
            for key, param in self.space.items()
        }}

    def tell(self, number, outcome):
        pass


@serbench.hookimpl
def serbench_engines():
    return [AcmeEngine]
'''


def install_plugin(
    site: Path, module: str, source: str, entry_point: str, dist: str, version: str = "1.2.3"
) -> None:
    """Put ``module`` and a dist-info declaring it under the ``serbench`` group in ``site``."""
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[serbench]\n{entry_point} = {module}\n", encoding="utf-8")


def acme(site: Path, engine: str = "acme-const", module: str = "acme_serbench", entry_point: str = "acme",
         dist: str = "acme-serbench") -> None:
    install_plugin(site, module, ACME_ENGINE.format(engine=engine), entry_point, dist)


def serbench(site: Path, *args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter that also sees the packages in ``site`` (from
    ``cwd``, which ``python -m`` puts first on the path)."""
    return run_serbench(*args, site=site, cwd=cwd, **env)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    return one_line_error(proc.returncode, proc.stderr, *needles)


def by_name(entries: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {entry["name"]: entry for entry in entries}


def test_plugins_json_lists_the_built_ins(cli):
    """``plugins --json`` gives name, version, package and plugin of every entry, built-ins from serbench."""
    code, out, err = cli("plugins", "--json")
    assert code == 0, err
    listing = json.loads(out)
    assert list(listing) == [kind.key for kind in PLUGIN_KINDS]
    assert set(BUILT_INS) == set(KINDS)
    for kind, name in BUILT_INS.items():
        for entry in listing[plugin_kind(kind).key]:
            assert {"name", "version", "package", "plugin"} <= set(entry)
        entry = by_name(listing[plugin_kind(kind).key])[name]
        assert entry["package"] == "serbench"
        assert entry["plugin"] == ENTRY_POINTS[kind]
        assert entry["version"] not in ("", "unknown")


def test_plugins_table_names_the_built_ins(cli):
    """``plugins`` prints a table with each built-in and its package."""
    code, out, err = cli("plugins")
    assert code == 0, err
    for kind, name in BUILT_INS.items():
        assert name in out
        assert kind in out
    assert "serbench" in out


def test_built_ins_come_through_the_entry_point_group():
    """The built-ins are registered as ``serbench`` entry points, like any third-party plugin."""
    points = {ep.name: ep.value for ep in entry_points(group="serbench")}
    assert set(ENTRY_POINTS.values()) <= set(points)
    # Each built-in lives in its kind's axis package.
    listing = registry().as_json()
    for kind in PLUGIN_KINDS:
        built_in = [entry["plugin"] for entry in listing[kind.key] if entry["package"] == "serbench"]
        assert built_in, kind.name
        for name in built_in:
            assert points[name].startswith(kind.axis + "."), (name, points[name])


def test_third_party_engine_is_discovered(tmp_path):
    """An installed package's engine appears with that package's name and version."""
    acme(tmp_path)
    proc = serbench(tmp_path, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    engines = by_name(json.loads(proc.stdout)["engines"])
    assert engines["acme-const"] == {
        "name": "acme-const",
        "plugin": "acme",
        "package": "acme-serbench",
        "version": "1.2.3",
    }
    assert engines["random"]["package"] == "serbench"


def test_third_party_engine_is_usable_in_a_job(tmp_path, job_dict):
    """A job can name the third-party engine, and it proposes in-bounds configurations."""
    acme(tmp_path)
    job_dict["engine"]["name"] = "acme-const"
    job = tmp_path / "acme_job.yaml"
    job.write_text(yaml.safe_dump(job_dict), encoding="utf-8")
    proc = serbench(tmp_path, "validate", str(job))
    assert proc.returncode == 0, proc.stderr
    assert "engine acme-const" in proc.stdout

    sys.path.insert(0, str(tmp_path))
    try:
        import acme_serbench
        from serbench.spec import parse_job

        spec = parse_job(job_dict)
        params = acme_serbench.AcmeEngine(spec.search_space, spec.seed).ask(0)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("acme_serbench", None)
    assert params == {"lr": 1e-4, "epochs": 1, "unfreeze": 2, "maxlen": 16000}
    spec.train_params(params)


def test_disabled_plugin_is_hidden(tmp_path):
    """``SERBENCH_DISABLE_PLUGINS`` drops a plugin by entry-point name."""
    acme(tmp_path)
    proc = serbench(tmp_path, "plugins", "--json", SERBENCH_DISABLE_PLUGINS="acme")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert "acme-const" not in by_name(listing["engines"])
    assert "random" in by_name(listing["engines"])


def test_plugin_allow_list_restricts_loading(tmp_path):
    """``SERBENCH_PLUGINS`` loads only the named entry points."""
    acme(tmp_path)
    proc = serbench(tmp_path, "plugins", "--json", SERBENCH_PLUGINS="acme,emodb")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert set(by_name(listing["engines"])) == {"acme-const"}
    assert set(by_name(listing["datasets"])) == {"emodb"}
    assert listing["backbones"] == []


BROKEN = "import serbench\n\nraise RuntimeError('acme is broken')\n"


def test_plugin_failing_on_import_is_named(tmp_path):
    """A plugin that raises on import exits 2 naming the plugin and its module."""
    install_plugin(tmp_path, "broken_serbench", BROKEN, "broken", "broken-serbench")
    proc = serbench(tmp_path, "plugins")
    assert_one_line_error(proc, "'broken'", "broken_serbench", "failed to load", "acme is broken")


def test_plugin_failing_on_import_can_be_disabled(tmp_path):
    """Disabling a broken plugin lets every command run again."""
    install_plugin(tmp_path, "broken_serbench", BROKEN, "broken", "broken-serbench")
    proc = serbench(tmp_path, "plugins", "--json", SERBENCH_DISABLE_PLUGINS="broken")
    assert proc.returncode == 0, proc.stderr


def test_misspelled_hook_is_rejected_at_start_up(tmp_path):
    """A hook implementation matching no hookspec (``serbench_engine``) fails every command."""
    source = ACME_ENGINE.format(engine="acme-const").replace("def serbench_engines", "def serbench_engine")
    install_plugin(tmp_path, "typo_serbench", source, "typo", "typo-serbench")
    proc = serbench(tmp_path, "plugins", "--json")
    assert_one_line_error(proc, "serbench_engine", "typo_serbench")


def test_two_plugins_providing_one_engine_are_both_named(tmp_path):
    """Two packages providing the same engine name exit 2 naming both plugins."""
    acme(tmp_path)
    acme(tmp_path, module="rival_serbench", entry_point="rival", dist="rival-serbench")
    proc = serbench(tmp_path, "plugins", "--json")
    assert_one_line_error(proc, "'acme-const'", "acme", "rival")


def test_plugin_shadowing_a_built_in_is_rejected(tmp_path):
    """A third-party engine reusing a built-in's name is a conflict, not a silent override."""
    acme(tmp_path, engine="random")
    proc = serbench(tmp_path, "plugins", "--json")
    assert_one_line_error(proc, "'random'", "acme")


def test_registry_get_unknown_name_lists_the_available_ones():
    """``Registry.get`` of an unknown name raises ``PluginError`` listing what is installed."""
    reg = registry()
    for kind, name in BUILT_INS.items():
        with pytest.raises(PluginError, match=f"unknown {kind} 'nope'.*available: .*{name}"):
            reg.get(kind, "nope")
        assert reg.get(kind, name).package == "serbench"


def test_each_kind_has_its_hook_and_base_class():
    """The table of kinds makes the hook specifications: one per kind, named and documented
    from its row, and each provided class must subclass the row's base class."""
    assert list(hookspecs.HOOKS) == [kind.hook for kind in PLUGIN_KINDS]
    pm, _ = load_plugins()
    for kind in PLUGIN_KINDS:
        spec = getattr(hookspecs, kind.hook)
        assert getattr(pm.hook, kind.hook).spec.function is spec
        assert kind.base_name in spec.__doc__ and kind.base_name in hookspecs.__doc__
        base = kind.base_class()
        assert f"{base.__module__}.{base.__qualname__}" == kind.base_name
        assert all(issubclass(entry.cls, base) for entry in registry().entries(kind.name))
    with pytest.raises(KeyError, match="the kinds are engine, dataset, backbone"):
        plugin_kind("engines")


WIDGET_ROW = """    PluginKind(
        "widget", "widgets", "serbench_widgets", "collections:OrderedDict", "serbench.widgets",
        "widget", "the ``widget.name`` nobody uses",
    ),
"""

ACME_WIDGET = '''
from collections import OrderedDict

import serbench


class AcmeWidget(OrderedDict):
    name = "acme-widget"


@serbench.hookimpl
def serbench_widgets():
    return [AcmeWidget]
'''


def test_a_new_kind_is_one_row_of_the_table(tmp_path):
    """A copy of serbench whose table has a fourth row: its hook exists, a plugin providing
    it is listed under the row's key, and the other kinds' listings do not change."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "serbench", site / "serbench", ignore=shutil.ignore_patterns("__pycache__"))
    kinds = site / "serbench" / "plugin" / "kinds.py"
    source = kinds.read_text(encoding="utf-8")
    end = '    ),\n)\n"""Every kind'
    assert source.count(end) == 1
    kinds.write_text(source.replace(end, '    ),\n' + WIDGET_ROW + ')\n"""Every kind'), encoding="utf-8")
    install_plugin(site, "acme_widgets", ACME_WIDGET, "acme-widgets", "acme-widgets")
    proc = serbench(site, "plugins", "--json", cwd=site)  # the copy, not the checkout
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert list(listing) == [kind.key for kind in PLUGIN_KINDS] + ["widgets"]
    assert listing["widgets"] == [
        {"name": "acme-widget", "plugin": "acme-widgets", "package": "acme-widgets", "version": "1.2.3"}
    ]
    assert {key: value for key, value in listing.items() if key != "widgets"} == registry().as_json()
    table = serbench(site, "plugins", cwd=site)
    assert table.returncode == 0, table.stderr
    assert "widget" in table.stdout and "acme-widget" in table.stdout
