"""The service's answers from memory (`zoo.service.answers`): ETags that change when, and only when, an answer
changes (across a publish and a sync), 304 for a client that has the answer, gzip for a client that takes it."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ROOT, postgresql_database, run_zoo
from zoo.testing import Served, serving

API = "/api/v1"
DIGITS_WEIGHTS = ROOT / "plugins" / "zoo-digits" / "zoo_digits" / "digits_cnn-fb1204b6.pth"
#: The answers the tests follow: a page of models, two models' records, the published versions.
FOLLOWED = (f"{API}/models", f"{API}/models/digits_cnn", f"{API}/plugins", f"{API}/published")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A PostgreSQL catalog synced with the digits plugin, a folder store and a publishing token: the
    environment of the service and of the commands that change the catalog beside it."""
    folder = tmp_path_factory.mktemp("answers")
    with postgresql_database() as url:
        env = {"ZOO_REGISTRY_URL": url, "ZOO_LOAD_PLUGINS": "digits", "ZOO_ARTIFACTS": str(folder / "store")}
        run_zoo("sync", env=env)
        env["TOKEN"] = run_zoo("token", "create", "publisher", env=env).stdout.strip()
        yield env


@pytest.fixture(scope="module")
def served(catalog: dict[str, str]) -> Iterator[Served]:
    """The catalog served, reading the catalog's state at every request (so that a change made by another
    process shows at once, not within the check interval)."""
    with serving(env={**catalog, "ZOO_CATALOG_CHECK_INTERVAL": "0"}) as running:
        yield running


def etags(client: httpx.Client) -> dict[str, str]:
    """The ETag of each followed answer, asked for as it is (no gzip)."""
    found = {}
    for path in FOLLOWED:
        answer = client.get(path, headers={"Accept-Encoding": "identity"})
        assert answer.status_code == 200, answer.text
        found[path] = answer.headers["etag"]
    return found


def test_an_answer_has_a_strong_etag_and_is_304_for_a_client_that_has_it(served: Served) -> None:
    with httpx.Client(base_url=served.url) as client:
        first = client.get(f"{API}/models/digits_cnn", headers={"Accept-Encoding": "identity"})
        etag = first.headers["etag"]
        assert first.status_code == 200 and etag.startswith('"') and not etag.startswith("W/")
        assert first.headers["cache-control"] == "no-cache" and first.headers["content-type"] == "application/json"
        assert first.json()["qualified_name"] == "digits/digits_cnn"
        again = client.get(f"{API}/models/digits_cnn", headers={"Accept-Encoding": "identity"})
        assert (again.content, again.headers["etag"]) == (first.content, etag)
        kept = client.get(f"{API}/models/digits_cnn", headers={"If-None-Match": etag, "Accept-Encoding": "identity"})
        assert (kept.status_code, kept.content, kept.headers["etag"]) == (304, b"", etag)
        other = client.get(f"{API}/models/digits_cnn", headers={"If-None-Match": '"0123"'})
        assert other.status_code == 200 and other.json() == first.json()
        head = client.head(f"{API}/models/digits_cnn", headers={"Accept-Encoding": "identity"})
        assert (head.status_code, head.headers["etag"], head.content) == (200, etag, b"")
        assert head.headers["content-length"] == str(len(first.content))


def test_a_large_answer_is_gzipped_for_a_client_that_takes_it(served: Served) -> None:
    with httpx.Client(base_url=served.url) as client:
        plain = client.get(f"{API}/models/digits_cnn", headers={"Accept-Encoding": "identity"})
        with client.stream("GET", f"{API}/models/digits_cnn", headers={"Accept-Encoding": "gzip"}) as raw:
            compressed = b"".join(raw.iter_raw())
        assert raw.headers["content-encoding"] == "gzip" and raw.headers["vary"] == "Accept-Encoding"
        assert gzip.decompress(compressed) == plain.content
        assert int(raw.headers["content-length"]) == len(compressed) < len(plain.content)
        assert raw.headers["etag"] != plain.headers["etag"]  # one strong validator per representation
        for tag in (raw.headers["etag"], plain.headers["etag"]):  # either says the client has the answer
            assert client.get(f"{API}/models/digits_cnn", headers={"If-None-Match": tag}).status_code == 304
        refused = client.get(f"{API}/models/digits_cnn", headers={"Accept-Encoding": "gzip;q=0"})
        assert "content-encoding" not in refused.headers and refused.content == plain.content
        small = client.get(f"{API}/weights", params={"name": "DigitsCNN_Weights.DEFAULT"},
                           headers={"Accept-Encoding": "gzip"})
        assert small.json() == {"model": "digits/digits_cnn", "member": "SKLEARN_DIGITS_V1"}
        assert "content-encoding" not in small.headers  # too small to gain from it


def test_etags_change_with_a_publish_only_where_the_answer_changes(served: Served, catalog: dict[str, str]) -> None:
    with httpx.Client(base_url=served.url) as client:
        before = etags(client)
        body = DIGITS_WEIGHTS.read_bytes()
        done = client.post(f"{API}/published/team/digits", params={"model": "digits_cnn"}, content=body,
                           headers={"X-Zoo-SHA256": hashlib.sha256(body).hexdigest(),
                                    "Authorization": f"Bearer {catalog['TOKEN']}"})
        assert done.status_code == 201, done.text
        after = etags(client)
        # the model's record lists its published versions, and the list of versions has one more
        assert after[f"{API}/models/digits_cnn"] != before[f"{API}/models/digits_cnn"]
        assert after[f"{API}/published"] != before[f"{API}/published"]
        assert [v["spec"] for v in client.get(f"{API}/models/digits_cnn").json()["published"]] == ["team/digits:1"]
        # a page of models and the plugins do not show published versions: the same answer, the same ETag
        assert after[f"{API}/models"] == before[f"{API}/models"]
        assert after[f"{API}/plugins"] == before[f"{API}/plugins"]


def test_etags_change_with_a_sync_only_where_the_answer_changes(served: Served, catalog: dict[str, str]) -> None:
    with httpx.Client(base_url=served.url) as client:
        before = etags(client)
        run_zoo("sync", env={**catalog, "ZOO_LOAD_PLUGINS": "digits,torchvision"})  # another process adds a plugin
        grown = etags(client)
        assert client.get(f"{API}/models").json()["total"] > 1
        assert grown[f"{API}/models"] != before[f"{API}/models"]
        assert grown[f"{API}/plugins"] != before[f"{API}/plugins"]
        assert grown[f"{API}/models/digits_cnn"] == before[f"{API}/models/digits_cnn"]
        run_zoo("sync", "--prune", env=catalog)  # and takes it away again: the answers are those of before
        assert etags(client) == before
        assert client.get(f"{API}/models").json()["total"] == 1


def test_an_unknown_name_stays_404_until_the_catalog_has_it(served: Served, catalog: dict[str, str]) -> None:
    with httpx.Client(base_url=served.url) as client:
        assert client.get(f"{API}/models/resnet18").status_code == 404
        assert client.get(f"{API}/models/resnet18").status_code == 404  # kept: the same one line
        run_zoo("sync", env={**catalog, "ZOO_LOAD_PLUGINS": "digits,torchvision"})
        found = client.get(f"{API}/models/resnet18")
        assert found.status_code == 200 and found.json()["qualified_name"] == "torchvision/resnet18"
        run_zoo("sync", "--prune", env=catalog)
        assert client.get(f"{API}/models/resnet18").status_code == 404


def test_answers_stay_right_under_concurrent_clients(served: Served) -> None:
    """Many clients asking the same new questions at once (single flight) all get the full, same answer."""
    import concurrent.futures

    paths = [f"{API}/models?limit=1&offset=0", f"{API}/models/digits_cnn", f"{API}/plugins",
             f"{API}/weights?name=DigitsCNN_Weights.DEFAULT", f"{API}/models/no_such_model"]

    def ask(path: str) -> tuple[int, bytes]:
        with httpx.Client(base_url=served.url) as client:
            answer = client.get(path)
            return answer.status_code, answer.content

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, paths * 16))
    for index, path in enumerate(paths):
        got = {answers[i] for i in range(index, len(answers), len(paths))}
        assert len(got) == 1, path
    statuses = [answers[i][0] for i in range(len(paths))]
    assert statuses == [200, 200, 200, 200, 404]
