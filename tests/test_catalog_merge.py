"""Catalogs that merge: namespaces, who answers a bare name, per-plugin syncs, prune, and
machines with different plugins sharing one PostgreSQL catalog.

Plugins are real distributions pip-installed into folders of their own; commands run
as a user runs them (the ``zoo`` command line in a child process). Expected model
sets come from torchvision's own API and from the fixtures' sources.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torchvision.models as tvm
from sqlalchemy import select

import zoo
from zoo.catalog import tables
from zoo.catalog.engine import open_engine
from conftest import FIXTURES, pip_install, run_zoo
from test_plugins import install_good_v2

TORCHVISION = set(tvm.list_models())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The newcomer and the good fixture plugins, installed into one folder."""
    target = tmp_path_factory.mktemp("merge-site")
    for name in ("zoo-fixture-newcomer", "zoo-fixture-good"):
        pip_install(FIXTURES / name, target)
    return target


def zoo_on(url: str, site: Path, plugins: str, *args: str, check: bool = True):
    """Run ``zoo ARGS`` on the catalog at `url`, as a machine with the plugins `plugins` (from `site` and bundled)."""
    env = {"PYTHONPATH": str(site), "ZOO_REGISTRY_URL": url, "ZOO_LOAD_PLUGINS": plugins, "ZOO_STRICT_PLUGINS": ""}
    return run_zoo(*args, env=env, check=check)


def listed(url: str, site: Path, plugins: str) -> list[str]:
    return [m["name"] for m in json.loads(zoo_on(url, site, plugins, "list", "--json").stdout)]


def plugins_of(url: str, site: Path, plugins: str) -> dict[str, dict]:
    return {p["namespace"]: p for p in json.loads(zoo_on(url, site, plugins, "plugins", "--json").stdout)}


def shown(url: str, site: Path, plugins: str, name: str) -> dict:
    return json.loads(zoo_on(url, site, plugins, "show", name, "--json").stdout)


def providers(url: str, name: str) -> dict[str, bool]:
    """Which namespaces provide model `name` in the catalog, and whether each answers the bare name."""
    m, p = tables.models, tables.plugins
    with open_engine(url).connect() as conn:
        rows = conn.execute(select(p.c.namespace, m.c.preferred).join(p).where(m.c.name == name)).all()
    return dict(rows)


def plugin_rows(url: str) -> dict[str, tuple]:
    """Each plugin row's id, version, fingerprint and sync time, by namespace."""
    p = tables.plugins
    with open_engine(url).connect() as conn:
        rows = conn.execute(select(p.c.namespace, p.c.id, p.c.version, p.c.fingerprint, p.c.synced_at)).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def assert_torchvision_whole(url: str, site: Path, plugins: str) -> None:
    record = plugins_of(url, site, plugins)["torchvision"]
    assert (record["status"], record["models"], record["error"]) == ("loaded", len(TORCHVISION), None)
    assert TORCHVISION <= set(listed(url, site, plugins))


def test_a_newcomer_claiming_resnet50_changes_nothing_of_torchvision(sqlite_url: str, site: Path) -> None:
    assert set(listed(sqlite_url, site, "torchvision")) == TORCHVISION
    both = "torchvision,newcomer"
    names = listed(sqlite_url, site, both)
    assert set(names) == TORCHVISION | {"newcomer/resnet50", "newcomer_net"}
    assert_torchvision_whole(sqlite_url, site, both)
    assert providers(sqlite_url, "resnet50") == {"torchvision": True, "newcomer": False}
    assert shown(sqlite_url, site, both, "resnet50")["plugin"]["distribution"] == "zoo-torchvision"
    assert shown(sqlite_url, site, both, "torchvision/resnet50")["num_params"] == 25_557_032
    newcomer = shown(sqlite_url, site, both, "newcomer/resnet50")
    assert (newcomer["plugin"]["distribution"], newcomer["num_params"]) == ("zoo-fixture-newcomer", 8)
    synced = zoo_on(sqlite_url, site, both, "sync")
    assert synced.returncode == 0 and "warning" not in synced.stderr
    assert providers(sqlite_url, "resnet50") == {"torchvision": True, "newcomer": False}  # a re-sync keeps it


def test_a_name_keeps_the_meaning_it_had_when_torchvision_comes_later(sqlite_url: str, site: Path) -> None:
    assert listed(sqlite_url, site, "newcomer") == ["newcomer_net", "resnet50"]
    both = "torchvision,newcomer"
    assert "resnet50" in listed(sqlite_url, site, both) and "torchvision/resnet50" in listed(sqlite_url, site, both)
    assert_torchvision_whole(sqlite_url, site, both)
    # installing a plugin never changes what an existing name means: resnet50 stays the newcomer's
    assert providers(sqlite_url, "resnet50") == {"torchvision": False, "newcomer": True}
    assert shown(sqlite_url, site, both, "resnet50")["plugin"]["distribution"] == "zoo-fixture-newcomer"
    assert shown(sqlite_url, site, both, "torchvision/resnet50")["plugin"]["distribution"] == "zoo-torchvision"
    zoo_on(sqlite_url, site, both, "sync")
    assert providers(sqlite_url, "resnet50") == {"torchvision": False, "newcomer": True}
    # when the newcomer leaves, the next provider answers the name
    assert "resnet50" in listed(sqlite_url, site, "torchvision")
    assert providers(sqlite_url, "resnet50") == {"torchvision": True}


def test_a_name_new_to_the_catalog_goes_to_the_bundled_plugin_first(sqlite_url: str, site: Path) -> None:
    # both arrive in one sync; by load order the newcomer would not come first anyway, but bundled wins regardless
    both = "torchvision,newcomer"
    zoo_on(sqlite_url, site, both, "sync")
    assert providers(sqlite_url, "resnet50") == {"torchvision": True, "newcomer": False}
    assert_torchvision_whole(sqlite_url, site, both)


def category_lists(url: str) -> set[str]:
    with open_engine(url).connect() as conn:
        return {json.dumps(row.categories) for row in conn.execute(select(tables.category_lists))}


def test_category_lists_are_stored_once_and_dropped_when_unused(sqlite_url: str, site: Path) -> None:
    zoo_on(sqlite_url, site, "digits,torchvision", "sync")
    digits = json.dumps([str(digit) for digit in range(10)])  # zoo-digits' categories
    expected = {json.dumps(w.meta["categories"]) for name in TORCHVISION for w in tvm.get_model_weights(name)
                if w.meta.get("categories") is not None}
    assert category_lists(sqlite_url) == expected | {digits}
    w = tables.weights
    with open_engine(sqlite_url).connect() as conn:
        metas = conn.execute(select(w.c.meta, w.c.categories_id)).all()
    # stored apart from the metadata; a value that is not a list (vgg16's features-only weights: None) stays in it
    assert all(not isinstance(meta.get("categories"), list) for meta, _ in metas)
    assert sum(categories_id is not None for _, categories_id in metas) > 2 * len(expected)  # shared by many
    zoo_on(sqlite_url, site, "digits", "sync")  # SQLite prunes torchvision: its lists go with it
    assert category_lists(sqlite_url) == {digits}


def test_a_private_sqlite_catalog_prunes_what_is_not_installed(sqlite_url: str, site: Path) -> None:
    assert listed(sqlite_url, site, "digits,fixture-good") == ["digits_cnn", "tiny_mlp"]
    synced = zoo_on(sqlite_url, site, "digits", "sync", "--no-prune")
    assert "removed" not in synced.stdout
    assert set(plugin_rows(sqlite_url)) == {"digits", "fixture-good"}
    # a lookup prunes by itself on SQLite, as `zoo sync` does
    assert listed(sqlite_url, site, "digits") == ["digits_cnn"]
    assert set(plugin_rows(sqlite_url)) == {"digits"}
    assert listed(sqlite_url, site, "digits,fixture-good") == ["digits_cnn", "tiny_mlp"]
    synced = zoo_on(sqlite_url, site, "digits", "sync")
    assert synced.stdout.strip().endswith("removed 1 plugin(s) not installed here: fixture-good")


def test_two_machines_share_one_postgresql_catalog(postgresql_url: str, site: Path, tmp_path: Path) -> None:
    own_site = tmp_path / "site"
    shutil.copytree(site, own_site)
    a, b = "digits,fixture-good", "torchvision"  # machine A's plugins, machine B's
    union = TORCHVISION | {"digits_cnn", "tiny_mlp"}
    assert listed(postgresql_url, own_site, a) == ["digits_cnn", "tiny_mlp"]
    assert set(listed(postgresql_url, own_site, b)) == union
    first = plugin_rows(postgresql_url)
    assert set(first) == {"digits", "fixture-good", "torchvision"}
    for _ in range(5):
        for machine in (a, b):
            assert set(listed(postgresql_url, own_site, machine)) == union
    assert plugin_rows(postgresql_url) == first  # nobody re-synced

    here = plugins_of(postgresql_url, own_site, a)
    assert {ns: p["installed_here"] for ns, p in here.items()} == {
        "digits": True, "fixture-good": True, "torchvision": False}

    # A upgrades fixture-good: only its rows are written again, and B sees the new model without syncing
    install_good_v2(own_site, tmp_path)
    assert set(listed(postgresql_url, own_site, a)) == TORCHVISION | {"digits_cnn", "tiny_mlp_v2"}
    after = plugin_rows(postgresql_url)
    assert {ns: after[ns] for ns in ("digits", "torchvision")} == {ns: first[ns] for ns in ("digits", "torchvision")}
    assert after["fixture-good"][:2] == (first["fixture-good"][0], "2.0.0")  # same row, new version
    assert after["fixture-good"][2] != first["fixture-good"][2] and after["fixture-good"][3] > first["fixture-good"][3]
    assert set(listed(postgresql_url, own_site, b)) == TORCHVISION | {"digits_cnn", "tiny_mlp_v2"}
    assert plugin_rows(postgresql_url) == after

    # a sync from A leaves B's plugin alone unless told to prune
    assert "removed" not in zoo_on(postgresql_url, own_site, a, "sync").stdout
    assert set(plugin_rows(postgresql_url)) == {"digits", "fixture-good", "torchvision"}
    pruned = zoo_on(postgresql_url, own_site, a, "sync", "--prune")
    assert pruned.stdout.strip().endswith("removed 1 plugin(s) not installed here: torchvision")
    assert set(plugin_rows(postgresql_url)) == {"digits", "fixture-good"}
    assert listed(postgresql_url, own_site, a) == ["digits_cnn", "tiny_mlp_v2"]  # A sees only its own now


def write_distribution(root: Path, name: str, version: str, *, requires: tuple[str, ...] = (),
                       plugin: str | None = None) -> Path:
    """A distribution's source in `root`: a module, optionally a plugin (entry point `plugin`) with one model."""
    module = name.replace("-", "_")
    source = root / f"{name}-{version}"
    (source / module).mkdir(parents=True)
    entry_point = f'[project.entry-points.zoo]\n{plugin} = "{module}"\n' if plugin else ""
    (source / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name}"
        version = "{version}"
        dependencies = {json.dumps(list(requires))}

        [tool.setuptools]
        packages = ["{module}"]
        """) + entry_point)
    code = "" if not plugin else textwrap.dedent(f"""\
        import zoo

        @zoo.hookimpl
        def zoo_register_models():
            return [zoo.ModelSpec(name="needs_lib", builder="{module}:build", task="classification")]
        """)
    (source / module / "__init__.py").write_text(code)
    return source


def test_upgrading_what_a_plugin_requires_resyncs_that_plugin_only(sqlite_url: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    pip_install(write_distribution(tmp_path, "zoo-fixture-lib", "1.0"), site)
    pip_install(write_distribution(tmp_path, "zoo-fixture-needs", "1.0", requires=("zoo-fixture-lib>=1", "zoo"),
                                   plugin="needs"), site)
    plugins = "digits,needs"
    assert listed(sqlite_url, site, plugins) == ["digits_cnn", "needs_lib"]
    before = plugin_rows(sqlite_url)
    assert listed(sqlite_url, site, plugins) == ["digits_cnn", "needs_lib"]
    assert plugin_rows(sqlite_url) == before
    for old in site.glob("zoo_fixture_lib*"):
        shutil.rmtree(old)
    pip_install(write_distribution(tmp_path / "2", "zoo-fixture-lib", "2.0"), site)
    assert listed(sqlite_url, site, plugins) == ["digits_cnn", "needs_lib"]
    after = plugin_rows(sqlite_url)
    assert after["digits"] == before["digits"]
    assert after["needs"][:2] == before["needs"][:2] and after["needs"][2] != before["needs"][2]  # same version


def test_a_lookup_checks_the_catalog_at_most_once_per_interval(sqlite_url: str, use_catalog,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    use_catalog(sqlite_url, plugins="digits")
    monkeypatch.setenv("ZOO_CATALOG_CHECK_INTERVAL", "3600")
    zoo.sync(sqlite_url)
    assert zoo.list_models() == ["digits_cnn"]
    with open_engine(sqlite_url).begin() as conn:  # behind zoo's back: the catalog is stale now
        conn.execute(tables.plugins.delete())
        conn.execute(tables.catalog_state.update().values(value="another"))  # a new generation: read it again
    assert zoo.list_models() == []  # not checked again within the interval
    monkeypatch.setenv("ZOO_CATALOG_CHECK_INTERVAL", "0")
    assert zoo.list_models() == ["digits_cnn"]  # checked, found stale, re-synced
    monkeypatch.setenv("ZOO_CATALOG_CHECK_INTERVAL", "soon")
    with pytest.raises(zoo.UsageError, match=r"ZOO_CATALOG_CHECK_INTERVAL must be a number of seconds, 0 or more"):
        zoo.list_models()
