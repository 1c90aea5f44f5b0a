"""Full-text search of the catalog (`zoo.catalog.search`): ``zoo.list_models(search=...)``, ``zoo list --search``,
the service's ``search`` parameter and the web catalog's box, on a catalog synced with the digits, torchvision
and timm plugins, on SQLite and PostgreSQL; hostile text; a catalog made before the index, upgraded.

What the catalog holds, searched here: timm tags its MetaFormer models (poolformer, convformer, caformer)
``metaformer``; torchvision's and timm's ViTs are tagged ``vision_transformer``, torchvision's Swin models
``swin_transformer``; torchvision's vit_b_16 weights docs name DeIT, timm's ConvNeXt V2 models their paper
("... with Masked Autoencoders").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import pytest

import zoo
from tests.conftest import catalog_at, postgresql_database, run_zoo
from tests.test_serve import API, one_line_error, running_service
from zoo.catalog import search, tables
from zoo.catalog.engine import open_engine
from zoo.cli import main
from zoo.errors import UsageError
from zoo.service.web.query import Filters, catalog_rows

PLUGINS = "digits,torchvision,timm"
METAFORMERS = {"poolformer_s12", "poolformerv2_s12", "convformer_s18", "caformer_s18"}
HOSTILE = ['"', "*", "NEAR(", "-", "vit*", "-vit", '"vit" OR "resnet"', "vit:* | resnet", "'; DROP TABLE models; --",
           "(", "^vit", "AND", "NOT vit", "\\", "vit\x00b", "ré", "x" * search.MAX_SEARCH, " ", ""]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A catalog synced with the digits, torchvision and timm plugins, for the module: its environment."""
    folder = tmp_path_factory.mktemp(f"search-{request.param}")
    with (postgresql_database() if request.param == "postgresql"
          else nullcontext(f"sqlite:///{folder / 'registry.db'}")) as url:
        env = {"ZOO_REGISTRY_URL": url, "ZOO_LOAD_PLUGINS": PLUGINS, "ZOO_ARTIFACTS": str(folder / "artifacts")}
        run_zoo("sync", env=env)
        try:
            yield env
        finally:
            open_engine(url).dispose()


@pytest.fixture
def catalog(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_search_finds_words_in_names_tags_and_docs(catalog: dict[str, str]) -> None:
    torchvision = set(zoo.list_models(plugin="torchvision"))
    assert METAFORMERS <= set(zoo.list_models(search="metaformer")) == set(zoo.list_models(search="MetaFormer"))
    transformers = set(zoo.list_models(search="transformer"))
    assert {"vit_b_16", "swin_t", "vit_base_patch16_224"} <= transformers
    assert {"vit_b_16", "vit_base_patch16_224"} <= set(zoo.list_models(search="vision"))
    assert "resnet50" not in transformers | set(zoo.list_models(search="vision"))  # no URL (pytorch/vision) counts
    both = set(zoo.list_models(search="vision transformer"))  # words are ANDed
    assert both == set(zoo.list_models(search="vision")) & transformers and "swin_t" not in both
    assert "vit_b_16" in zoo.list_models(search="deit", plugin="torchvision")  # its weights' docs
    assert "convnextv2_atto" in zoo.list_models(search="masked autoencoders")  # its paper's name
    assert "resnet50" in zoo.list_models(search="resnet5")  # words are prefixes
    assert zoo.list_models(search="transformer", plugin="torchvision") == sorted(
        transformers & torchvision, key=zoo.list_models(search="transformer").index)
    assert zoo.list_models(search="detection", task="detection") and zoo.list_models(search="zzqqxx") == []


def test_an_exact_name_comes_first_and_sort_wins(catalog: dict[str, str]) -> None:
    assert zoo.list_models(search="resnet50")[0] == "resnet50"
    assert zoo.list_models(search="timm/resnet50")[0] == "timm/resnet50"
    assert zoo.summarize_models(search="ResNet50", limit=1)[0]["name"] == "resnet50"
    found = zoo.list_models(search="metaformer")
    assert zoo.list_models(search="metaformer", sort="name") == sorted(found)
    by_params = zoo.summarize_models(search="metaformer", sort="params")
    assert [m["num_params"] for m in by_params] == sorted(m["num_params"] for m in by_params)
    assert zoo.list_models(search="metaformer", limit=3) == found[:3]


def test_hostile_text_finds_or_is_refused_in_one_line(catalog: dict[str, str]) -> None:
    for text in [*HOSTILE, "x" * (search.MAX_SEARCH + 1), 5, b"vit"]:
        try:
            found = zoo.list_models(search=text)
        except UsageError as exc:
            assert "\n" not in str(exc) and "search" in str(exc), text
        else:
            assert isinstance(found, list), text
    with pytest.raises(UsageError, match="has no words"):
        zoo.list_models(search='"')
    with pytest.raises(UsageError, match=f"at most {search.MAX_SEARCH} characters"):
        zoo.summarize_models(search="x" * (search.MAX_SEARCH + 1))
    assert "vit_b_16" in zoo.list_models(search="-vit") and "vit_b_16" in zoo.list_models(search='"vit" OR')
    assert "resnet50" in zoo.list_models()  # nothing was dropped


def test_zoo_list_search(catalog: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--search", "metaformer", "--json"]) == 0
    import json

    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == zoo.list_models(search="metaformer")
    assert main(["list", "--search", "*"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("zoo: error: search text '*' has no words") and err.count("\n") == 1


def test_client_mode_answers_as_local(env: dict[str, str], catalog: dict[str, str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    local = {text: zoo.summarize_models(search=text) for text in ("metaformer", "vision transformer", "resnet50")}
    with running_service(env, log=tmp_path / "serve.log") as served:
        with served.client() as client:
            for text in HOSTILE:
                response = client.get(f"{API}/models", params={"search": text})
                assert response.status_code in (200, 400), (text, response.text)
                if response.status_code == 400:
                    one_line_error(response)
            too_long = client.get(f"{API}/models", params={"search": "x" * (search.MAX_SEARCH + 1)})
            assert too_long.status_code == 400 and "search" in one_line_error(too_long)
        monkeypatch.setenv("ZOO_REGISTRY_URL", served.url)
        for text, expected in local.items():
            assert zoo.summarize_models(search=text) == expected
        assert zoo.list_models(search="metaformer", limit=2) == [m["name"] for m in local["metaformer"][:2]]
        with pytest.raises(zoo.ZooError, match="has no words") as caught:
            zoo.list_models(search="\"( *")
        assert "\n" not in str(caught.value)


def test_the_web_box_searches_and_still_finds_names_containing_the_text(catalog: dict[str, str]) -> None:
    def names(q: str) -> set[str]:
        return {row.name for row in catalog_rows(Filters.from_query({"q": q}))}

    assert METAFORMERS <= names("metaformer")
    assert {"resnet50", "wide_resnet50_2"} <= names("resnet50") and "wide_resnet50_2" in names("net50")
    assert names("resnet5?") == set(zoo.list_models("resnet5?"))  # wildcards: fnmatch, as before
    assert names('"') == set() and names("vision transformer") == set(zoo.list_models(search="vision transformer"))


def test_a_catalog_made_before_the_index_is_upgraded_and_searchable(catalog_url: str, use_catalog) -> None:
    use_catalog(catalog_url, plugins="digits")
    with catalog_at(catalog_url, "0009") as conn:  # a model of a plugin not installed here, as the zoo left it
        plugin = conn.execute(tables.plugins.insert().values(
            name="ghost", namespace="ghost", target="ghost_plugin", distribution="ghost-plugin", version="1",
            status="loaded", fingerprint="0" * 64, synced_at=datetime.now(timezone.utc))).inserted_primary_key[0]
        conn.execute(tables.models.insert().values(
            name="ghostformer_s1", plugin_id=plugin, preferred=True, task="classification", builder="ghost:build",
            tags=["metaformer"], meta={"paper_name": "Spectral Ghosts"}, classifier=[], builder_args={}))
    with catalog_at(catalog_url, "0010") as conn:  # the migration fills the index from the rows there
        ghost = conn.scalar(tables.models.select().with_only_columns(tables.models.c.id))
        assert list(search.relevance(conn, ("spectral", "ghost"))) == [ghost]
    report = zoo.sync(catalog_url, prune=False)  # the ghost plugin stays (a lookup on SQLite would prune it)
    assert report.rewritten and report.repairs == ()
    with open_engine(catalog_url).connect() as conn:
        assert list(search.relevance(conn, ("metaformer",))) == [ghost]
    assert zoo.list_models(search="digits") == ["digits_cnn"]
