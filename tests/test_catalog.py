"""The catalog store on SQLite and on PostgreSQL: migrations, sync, SQL filters, lookups.

Expected answers come from torchvision's own API, not from the catalog.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torchvision.models as tvm
from torchvision.transforms._presets import ImageClassification
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.config import Config
from sqlalchemy import create_engine, select, text

import zoo
from zoo.catalog.engine import open_engine
from zoo.catalog.fingerprint import SCHEMA_REVISION
from zoo.catalog.sync import MIGRATIONS
from zoo.catalog import tables
from zoo.catalog.tables import metadata
from conftest import run_zoo


@pytest.fixture
def synced(catalog_url: str, use_catalog) -> str:
    use_catalog(catalog_url)
    report = zoo.sync(catalog_url, strict=True)
    assert report.rewritten
    return catalog_url


def test_migrations_create_exactly_the_orm_schema(synced: str) -> None:
    with open_engine(synced).connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"include_name": tables.in_metadata}), metadata)
        revision = conn.scalar(text("SELECT version_num FROM alembic_version"))
    assert diffs == []
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert revision == SCHEMA_REVISION == ScriptDirectory.from_config(config).get_current_head()


def test_catalog_lists_every_torchvision_model_and_digits(synced: str) -> None:
    assert zoo.list_models() == sorted([*tvm.list_models(), "digits_cnn"])
    assert zoo.list_models("resnet*") == tvm.list_models(include="resnet*")
    assert zoo.list_models(["*resnet*"], exclude=["quantized_*", "*101*"]) == tvm.list_models(
        include="*resnet*", exclude=["quantized_*", "*101*"])
    assert zoo.list_models("ResNet5?") == ["resnet50"]  # case-insensitive


def test_filters_run_as_sql_and_match_torchvision_metadata(synced: str) -> None:
    detection = set(tvm.list_models(module=tvm.detection))
    found = set(zoo.list_models(task="detection")) | set(zoo.list_models(task="keypoints")) | set(
        zoo.list_models(task="instance_segmentation"))
    assert found == detection
    assert set(zoo.list_models(task="segmentation")) == set(tvm.list_models(module=tvm.segmentation))
    assert set(zoo.list_models(task="video")) == set(tvm.list_models(module=tvm.video))
    assert set(zoo.list_models(task="optical_flow")) == set(tvm.list_models(module=tvm.optical_flow))
    assert set(zoo.list_models(plugin="digits")) == {"digits_cnn"}
    assert set(zoo.list_models(plugin="zoo-torchvision")) == set(tvm.list_models())

    # "classification models under 10M parameters with top-1 above 75%"
    expected = set()
    for name in tvm.list_models():
        if name in detection or name in tvm.list_models(module=tvm.segmentation) + tvm.list_models(
                module=tvm.video) + tvm.list_models(module=tvm.optical_flow):
            continue
        enum = tvm.get_model_weights(name)
        top1 = [w.meta["_metrics"]["ImageNet-1K"]["acc@1"] for w in enum]
        if enum.DEFAULT.meta["num_params"] <= 10_000_000 and max(top1) >= 75:
            expected.add(name)
    got = zoo.list_models(task="classification", max_params=10_000_000, min_metric={"ImageNet-1K:acc@1": 75})
    assert set(got) == expected and len(expected) >= 5
    # without a dataset a metric must be on one dataset only: digits_cnn reports acc@1 on its own data
    with pytest.raises(zoo.UsageError, match=r"^acc@1 is measured on several datasets: ImageNet-1K, "):
        zoo.list_models(task="classification", max_params=10_000_000, min_metric={"acc@1": 75})

    assert zoo.list_models(pretrained=False) == []
    assert zoo.list_models(pretrained=True) == zoo.list_models()


def test_bad_filters_say_what_is_accepted(synced: str) -> None:
    with pytest.raises(zoo.UsageError, match=r"unknown task 'clasification'; tasks in the catalog: classification"):
        zoo.list_models(task="clasification")
    with pytest.raises(zoo.UsageError, match=r"unknown plugin 'nope'; plugins: digits, torchvision"):
        zoo.list_models(plugin="nope")


def test_describe_resnet50(synced: str) -> None:
    record = zoo.describe("ResNet50")
    enum = tvm.ResNet50_Weights
    assert record["name"] == "resnet50" and record["task"] == "classification"
    assert record["builder"] == "torchvision.models.resnet:resnet50"
    assert record["num_params"] == enum.DEFAULT.meta["num_params"]
    assert record["default_weights"] == "ResNet50_Weights.IMAGENET1K_V2"
    assert [w["name"] for w in record["weights"]] == [f"ResNet50_Weights.{m.name}" for m in enum]
    for w, member in zip(record["weights"], enum):
        assert w["url"] == member.url
        assert w["meta"]["categories"] == member.meta["categories"]
        assert w["meta"]["_metrics"] == member.meta["_metrics"]
        assert w["meta"]["min_size"] == list(member.meta["min_size"])
        preset, spec = member.transforms(), w["transforms"]
        assert isinstance(preset, ImageClassification) and spec["kind"] == "classification"
        assert spec["resize_size"] == preset.resize_size and spec["resize_mode"] == "shorter_side"
        assert spec["crop_size"] == preset.crop_size * 2  # [n] is an n x n crop
        assert spec["mean"] == preset.mean and spec["std"] == preset.std
        assert spec["interpolation"] == preset.interpolation.value and spec["antialias"] is preset.antialias
        assert (spec["channel_order"], spec["value_range"], spec["layout"]) == ("RGB", [0.0, 1.0], "CHW")


def test_get_weight_accepts_every_torchvision_spelling(synced: str) -> None:
    v2 = tvm.ResNet50_Weights.IMAGENET1K_V2
    assert zoo.get_weight("ResNet50_Weights.IMAGENET1K_V2") is v2
    assert zoo.get_weight("resnet50_weights.imagenet1k_v2") is v2
    assert zoo.get_weight("resnet50.IMAGENET1K_V2") is v2
    assert zoo.get_weight("resnet50.DEFAULT") is v2
    assert zoo.get_weight("ResNet50_Weights.DEFAULT") is v2
    assert zoo.get_weight("DEFAULT", model="resnet50") is v2
    assert zoo.get_weight("IMAGENET1K_V1", model="resnet50") is tvm.ResNet50_Weights.IMAGENET1K_V1
    assert zoo.get_weight(v2) is v2
    assert zoo.get_weight(None) is None
    assert zoo.get_model_weights("resnet50") is tvm.ResNet50_Weights
    assert zoo.get_model_weights(tvm.resnet50) is tvm.ResNet50_Weights
    # the builder is torchvision's own (the weights it loads go through the zoo: tests/test_torchvision_registry.py)
    assert zoo.get_model_builder("RESNET50") is tvm.resnet50
    with pytest.raises(zoo.UsageError, match="needs a model"):
        zoo.get_weight("DEFAULT")


def test_unknown_names_list_the_closest(synced: str) -> None:
    with pytest.raises(zoo.UnknownModelError) as caught:
        zoo.describe("resnet05")
    assert "resnet50" in caught.value.suggestions
    assert isinstance(caught.value, ValueError)  # as torchvision raises
    with pytest.raises(zoo.UnknownWeightsError, match=r"unknown weights 'resnet50.IMAGENET1K_V3'; did you mean: ") as caught:
        zoo.get_weight("resnet50.IMAGENET1K_V3")
    assert sorted(caught.value.suggestions) == ["resnet50.IMAGENET1K_V1", "resnet50.IMAGENET1K_V2"]
    with pytest.raises(zoo.UnknownWeightsError, match="ResNet50_Weights.IMAGENET1K_V2"):
        zoo.get_weight("ResNet50_Weight.IMAGENET1K_V2")


def test_get_model_builds_with_config(synced: str) -> None:
    model = zoo.get_model("resnet18", weights=None, num_classes=7)
    assert model.fc.out_features == 7
    # torchvision refuses num_classes with pretrained weights; the zoo gives a fresh head
    assert zoo.get_model("digits_cnn", weights="DEFAULT", num_classes=7).classifier.out_features == 7


def _plugin_rows(url: str) -> dict[str, tuple]:
    with open_engine(url).connect() as conn:
        rows = conn.execute(select(tables.plugins.c.namespace, tables.plugins.c.id, tables.plugins.c.fingerprint,
                                   tables.plugins.c.synced_at)).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def test_sync_is_skipped_when_current_and_redone_when_forced(synced: str) -> None:
    before = _plugin_rows(synced)
    assert zoo.sync(synced, force=False).rewritten is False
    assert _plugin_rows(synced) == before
    assert zoo.sync(synced, force=True).rewritten is True
    after = _plugin_rows(synced)
    # the same rows (ids and fingerprints kept), written again
    assert {ns: row[:2] for ns, row in after.items()} == {ns: row[:2] for ns, row in before.items()}
    assert all(after[ns][2] > before[ns][2] for ns in before)


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(sqlite_url: str, use_catalog) -> None:
    use_catalog(sqlite_url, plugins="digits")
    zoo.sync(sqlite_url)
    with open_engine(sqlite_url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000


def test_bad_catalog_url_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_REGISTRY_URL", "not a url")
    with pytest.raises(zoo.CatalogError, match="is not a database URL; expected for example sqlite:///registry.db"):
        zoo.list_models()
    monkeypatch.setenv("ZOO_REGISTRY_URL", "mysql://root@127.0.0.1/test")
    with pytest.raises(zoo.CatalogError, match="uses 'mysql'; supported: sqlite, postgresql"):
        zoo.list_models()
    monkeypatch.setenv("ZOO_REGISTRY_URL", "postgresql://postgres@127.0.0.1:5432/no_such_database_zoo")
    with pytest.raises(zoo.CatalogError, match="cannot use the catalog at postgresql"):
        zoo.list_models()


# --- a damaged, foreign, read-only or unreachable catalog ---------------------------------

LEARNED = {"url": "https://example.org/learned.pth", "sha256": "ab" * 32, "file_size": 1234}
EXPORTED = {
    "path": "/exports/digits.onnx", "model": "digits_cnn", "weights": None, "sha256": "cd" * 32, "size": 99,
    "opset": 18, "exporter": "dynamo", "dynamic_axes": {}, "verification": {}, "options": {}, "result": {},
    "created_at": datetime(2026, 1, 2, tzinfo=timezone.utc),
}


@pytest.fixture
def kept_rows(catalog_url: str, use_catalog) -> str:
    """A catalog of the digits plugin holding one learned hash and one export record."""
    return _with_kept_rows(catalog_url, use_catalog)


def _with_kept_rows(url: str, use_catalog) -> str:
    use_catalog(url, plugins="digits")
    zoo.sync(url, strict=True)
    with open_engine(url).begin() as conn:
        conn.execute(tables.weight_files.insert().values(**LEARNED))
        conn.execute(tables.exports.insert().values(**EXPORTED))
    return url


def _execute(url: str, *statements: str) -> None:
    """Damage the catalog behind zoo's back, on a connection of our own."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()


def _drop(url: str, table: str) -> str:
    return f"DROP TABLE {table}" + (" CASCADE" if url.startswith("postgresql") else "")


def _schema_diffs(url: str) -> list:
    with open_engine(url).connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"include_name": tables.in_metadata}), metadata)


@pytest.mark.parametrize("table", ["models", "metrics", "catalog_state", "weight_files", "exports", "alembic_version"])
def test_sync_rebuilds_a_dropped_table_and_keeps_what_must_survive(kept_rows: str, table: str) -> None:
    _execute(kept_rows, _drop(kept_rows, table))
    report = zoo.sync(kept_rows)
    assert report.rewritten and report.repairs
    assert _schema_diffs(kept_rows) == []
    assert zoo.list_models(min_metric={"acc@1": 50}) == ["digits_cnn"]
    with open_engine(kept_rows).connect() as conn:
        learned = conn.execute(select(tables.weight_files)).mappings().all()
        exported = conn.execute(select(tables.exports.c.path, tables.exports.c.sha256)).all()
    assert [dict(row) for row in learned] == ([] if table == "weight_files" else [LEARNED])
    assert exported == ([] if table == "exports" else [(EXPORTED["path"], EXPORTED["sha256"])])
    assert zoo.sync(kept_rows).repairs == ()  # repaired for good


def test_a_0004_catalog_is_migrated_keeping_what_must_survive(catalog_url: str, use_catalog) -> None:
    from alembic import command

    use_catalog(catalog_url, plugins="digits")
    with open_engine(catalog_url).begin() as conn:  # a catalog as the zoo before namespaces left it
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")
        conn.execute(text("INSERT INTO plugins (id, name, target, distribution, version, status) "
                          "VALUES (1, 'digits', 'zoo_digits', 'zoo-digits', '0.0.1', 'loaded')"))
        conn.execute(text("INSERT INTO models (name, plugin_id, task, builder, tags, metadata, classifier) "
                          "VALUES ('old_name', 1, 'classification', 'zoo_digits:build', '[]', '{}', '[]')"))
        conn.execute(tables.weight_files.insert().values(**LEARNED))
        conn.execute(tables.exports.insert().values(**EXPORTED))
    report = zoo.sync(catalog_url)
    assert report.rewritten and report.repairs == ()
    assert _schema_diffs(catalog_url) == []
    assert zoo.list_models() == ["digits_cnn"]
    with open_engine(catalog_url).connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == SCHEMA_REVISION
        assert conn.execute(select(tables.weight_files)).mappings().one() == LEARNED
        assert conn.execute(select(tables.exports.c.path, tables.exports.c.sha256)).all() == [
            (EXPORTED["path"], EXPORTED["sha256"])]


@pytest.mark.parametrize("damage", ["ALTER TABLE alembic_version RENAME COLUMN version_num TO v",
                                    "INSERT INTO alembic_version VALUES ('0003')"])
def test_sync_replaces_an_unreadable_schema_revision_record(kept_rows: str, damage: str) -> None:
    _execute(kept_rows, damage)
    assert zoo.sync(kept_rows).repairs
    assert _schema_diffs(kept_rows) == []
    with open_engine(kept_rows).connect() as conn:
        assert conn.scalars(text("SELECT version_num FROM alembic_version")).all() == [SCHEMA_REVISION]
        assert conn.execute(select(tables.weight_files)).mappings().one() == LEARNED


def test_sync_rebuilds_a_table_that_lost_columns_keeping_its_rows(kept_rows: str) -> None:
    _execute(kept_rows, "ALTER TABLE exports DROP COLUMN weights", "ALTER TABLE models DROP COLUMN first_conv")
    with pytest.raises(zoo.CatalogError, match=r"is damaged \(.*first_conv.*\); run `zoo sync` to rebuild it"):
        zoo.describe("digits_cnn")
    zoo.sync(kept_rows)
    assert _schema_diffs(kept_rows) == []
    assert zoo.describe("digits_cnn")["first_conv"] is not None
    with open_engine(kept_rows).connect() as conn:
        assert conn.execute(select(tables.exports.c.path, tables.exports.c.weights)).all() == [
            (EXPORTED["path"], None)]


def test_lookups_on_a_damaged_catalog_name_it_and_say_what_to_do(kept_rows: str) -> None:
    _execute(kept_rows, _drop(kept_rows, "models"))
    shown = kept_rows.split("://")[1].split("@")[-1] if kept_rows.startswith("postgresql") else kept_rows[10:]
    for lookup in (zoo.list_models, zoo.list_plugins, lambda: zoo.describe("digits_cnn")):
        with pytest.raises(zoo.CatalogError, match=r"is damaged \(.*models.*\); run `zoo sync` to rebuild it") as caught:
            lookup()
        assert shown in str(caught.value)


def test_values_that_cannot_be_read_are_one_line_and_dropped_or_rebuilt_by_sync(sqlite_url: str, use_catalog) -> None:
    # SQLite only: PostgreSQL checks JSON and column types itself, so such values cannot be stored there
    kept_rows = _with_kept_rows(sqlite_url, use_catalog)
    bad_export = {**EXPORTED, "path": "/exports/bad.onnx"}
    with open_engine(kept_rows).begin() as conn:
        conn.execute(tables.exports.insert().values(**bad_export))
    _execute(kept_rows, "UPDATE models SET tags = '{{not json'",
             "UPDATE exports SET result = '[1, 2' WHERE path = '/exports/bad.onnx'",
             f"INSERT INTO weight_files VALUES ('https://example.org/x.pth', '{'ef' * 32}', 'big')")
    damaged = r"is damaged \(a JSON value '\{\{not json' does not parse: .*\); run `zoo sync`"
    with pytest.raises(zoo.CatalogError, match=damaged):
        zoo.describe("digits_cnn")
    repairs = zoo.sync(kept_rows).repairs
    assert any("weight_files" in r for r in repairs) and any("exports" in r for r in repairs)
    assert zoo.describe("digits_cnn")["tags"] is not None
    with open_engine(kept_rows).connect() as conn:
        assert [dict(r) for r in conn.execute(select(tables.weight_files)).mappings()] == [LEARNED]
        assert conn.scalars(select(tables.exports.c.path)).all() == [EXPORTED["path"]]


def test_a_schema_revision_from_a_newer_zoo_is_refused_not_downgraded(kept_rows: str) -> None:
    _execute(kept_rows, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(zoo.CatalogError, match=r"schema revision '9999', which this zoo does not know.*newer zoo"):
        zoo.sync(kept_rows)
    with open_engine(kept_rows).connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "9999"


def test_a_file_that_is_not_a_database_is_never_overwritten(tmp_path: Path, use_catalog) -> None:
    path = tmp_path / "registry.db"
    path.write_text("my notes, not a database\n" * 100)
    before = path.read_bytes()
    url = use_catalog(f"sqlite:///{path}", plugins="digits")
    for action in (zoo.list_models, lambda: zoo.sync(url)):
        foreign = rf"{path} is not a SQLite database.*move it away, or point ZOO_REGISTRY_URL"
        with pytest.raises(zoo.CatalogError, match=foreign):
            action()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["registry.db"]


def test_a_truncated_catalog_is_reported_and_left_alone(sqlite_url: str, use_catalog) -> None:
    use_catalog(sqlite_url, plugins="digits,torchvision")
    zoo.sync(sqlite_url)
    open_engine(sqlite_url).dispose()
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    before = path.read_bytes()
    for action in (zoo.list_models, lambda: zoo.sync(sqlite_url)):
        with pytest.raises(zoo.CatalogError, match=rf"{path} is corrupt .*move it away and run `zoo sync`"):
            action()
    assert path.read_bytes() == before


def _unprivileged(*args: str) -> list[str]:
    """`args` as a command that runs without root's power to write anything (setpriv to nobody)."""
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *args] if os.geteuid() == 0 else list(args)


@pytest.fixture
def read_only_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A synced catalog (digits only) in a folder that neither it nor its folder can be written."""
    folder = Path(tempfile.mkdtemp(prefix="zoo-read-only-"))  # not under pytest's 0700 folder: nobody must reach it
    path = folder / "registry.db"
    run_zoo("sync", env={"ZOO_REGISTRY_URL": f"sqlite:///{path}", "ZOO_LOAD_PLUGINS": "digits"})
    path.chmod(0o444)
    folder.chmod(0o555)
    yield path
    folder.chmod(0o755)
    shutil.rmtree(folder)


def test_a_catalog_in_a_read_only_folder_is_read_without_writing(read_only_catalog: Path) -> None:
    before = sorted(p.name for p in read_only_catalog.parent.iterdir()), read_only_catalog.read_bytes()
    env = {**os.environ, "ZOO_REGISTRY_URL": f"sqlite:///{read_only_catalog}", "ZOO_LOAD_PLUGINS": "digits"}
    zoo_script = str(Path(sys.executable).with_name("zoo"))
    listed = subprocess.run(_unprivileged(zoo_script, "list", "--json"), env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    assert [m["name"] for m in json.loads(listed.stdout)] == ["digits_cnn"]
    # stale (another plugin selection) but not writable: served as it is, with one warning line
    stale = subprocess.run(_unprivileged(zoo_script, "list"), env={**env, "ZOO_LOAD_PLUGINS": ""},
                           capture_output=True, text=True)
    assert stale.returncode == 0 and "digits_cnn" in stale.stdout
    assert re.fullmatch(r"zoo: warning: .*registry\.db is read-only and out of date.*\n", stale.stderr)
    synced = subprocess.run(_unprivileged(zoo_script, "sync"), env=env, capture_output=True, text=True)
    assert synced.returncode == 1
    assert re.fullmatch(r"zoo: error: .*registry\.db is read-only here .*\n", synced.stderr)
    assert (sorted(p.name for p in read_only_catalog.parent.iterdir()), read_only_catalog.read_bytes()) == before


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://me:s3cret@localhost:fivefour/db",
         r"'postgresql://me:\*\*\*@localhost:fivefour/db' has a port that is not a number"),
        ("postgresql+psycopg2://me:s3cret@localhost/db",
         r"needs the database driver 'psycopg2', which is not installed"),
        ("postgresql+asyncpg://me:s3cret@localhost/db", r"driver 'asyncpg'"),
        ("sqlite://", r"'sqlite://' is an in-memory database, which vanishes when the command ends; use a file"),
        ("sqlite:///:memory:", r"is an in-memory database"),
        ("sqlite:////nonexistent/dir/registry.db",
         r"cannot open the catalog file /nonexistent/dir/registry.db: the folder /nonexistent/dir does not exist"),
        ("sqlite:////dev/null",
         r"the catalog file /dev/null is not a regular file; zoo keeps a catalog only in a regular file"),
        ("postgresql://postgres:s3cret@127.0.0.1:1/test",
         r"cannot use the catalog at postgresql\+psycopg://postgres:\*\*\*@127.0.0.1:1/test: connection failed"),
    ],
)
def test_catalog_url_problems_are_one_line_without_the_password(
        monkeypatch: pytest.MonkeyPatch, url: str, message: str) -> None:
    monkeypatch.setenv("ZOO_REGISTRY_URL", url)
    for action in (zoo.list_models, lambda: zoo.sync(url)):
        with pytest.raises(zoo.CatalogError, match=message) as caught:
            action()
        assert "s3cret" not in str(caught.value) and "\n" not in str(caught.value)
    assert not Path("/dev/null-journal").exists()  # SQLite writes its journal beside the file it is given


def test_a_read_only_catalog_is_not_a_reason_to_fail_when_learning_a_hash(read_only_catalog: Path) -> None:
    program = (
        "import warnings\n"
        "from zoo.catalog.engine import CatalogWarning, open_engine, remember\n"
        "from zoo.catalog.tables import weight_files\n"
        "row = dict(url='https://example.org/w.pth', sha256='ab' * 32, file_size=1)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    kept = remember(open_engine(), 'the hash', lambda conn: conn.execute(weight_files.insert().values(**row)))\n"
        "print(kept, [str(w.message) for w in caught if issubclass(w.category, CatalogWarning)])\n"
    )
    before = read_only_catalog.read_bytes()
    env = {**os.environ, "ZOO_REGISTRY_URL": f"sqlite:///{read_only_catalog}"}
    done = subprocess.run(_unprivileged(sys.executable, "-c", program), env=env, capture_output=True, text=True,
                          cwd=read_only_catalog.parent)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"False \[.*registry\.db is read-only here, so the hash is not kept.\]\n", done.stdout)
    assert read_only_catalog.read_bytes() == before
