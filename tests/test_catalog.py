"""The catalog store on SQLite and on PostgreSQL: migrations, sync, SQL filters, lookups.

Expected answers come from torchvision's own API, not from the catalog.
"""

from __future__ import annotations

import pytest
import torchvision.models as tvm
from torchvision.transforms._presets import ImageClassification
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.config import Config
from sqlalchemy import text

import zoo
from zoo.catalog.engine import open_engine
from zoo.catalog.fingerprint import SCHEMA_REVISION, stored_fingerprint
from zoo.catalog.sync import MIGRATIONS
from zoo.catalog.tables import metadata


@pytest.fixture
def synced(catalog_url: str, use_catalog) -> str:
    use_catalog(catalog_url)
    report = zoo.sync(catalog_url, strict=True)
    assert report.rewritten
    return catalog_url


def test_migrations_create_exactly_the_orm_schema(synced: str) -> None:
    with open_engine(synced).connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
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
    # without a dataset the metric may come from any: digits_cnn reports acc@1 on its own data
    got = zoo.list_models(task="classification", max_params=10_000_000, min_metric={"acc@1": 75})
    assert set(got) == expected | {"digits_cnn"}

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


def test_sync_is_skipped_when_current_and_redone_when_forced(synced: str) -> None:
    engine = open_engine(synced)
    before = stored_fingerprint(engine)
    assert zoo.sync(synced, force=False).rewritten is False
    assert zoo.sync(synced, force=True).rewritten is True
    assert stored_fingerprint(engine) == before


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
