"""Downloads tried again with backoff: a real HTTP server on 127.0.0.1 (conftest's `WeightsServer`)
answers with the failures a test queues for a file, then with the file.

Covers: 5xx and 429 (its numeric Retry-After honoured), a connection closed mid-body are
tried again until the file arrives; a 404 and a wrong file are not; a server that keeps
failing ends in one line saying how many attempts were made; ``$ZOO_FETCH_RETRIES``
sets the attempts and the base delay (small here, so the tests wait little), and a bad
value is a one-line error. No attempt leaves a file behind.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

import zoo
from zoo.fetch import WeightsFile, fetch

from conftest import WeightsServer

ATTEMPTS = 3


@pytest.fixture(autouse=True)
def quick_retries(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three attempts, 10 ms apart at first: the tests wait for no real backoff."""
    monkeypatch.setenv("ZOO_FETCH_RETRIES", f"{ATTEMPTS},0.01")


def publish(server: WeightsServer, *failures: int | str, mode: str = "ok") -> WeightsFile:
    """Random bytes on the server, answered first with `failures` (one request each); what to fetch."""
    data = os.urandom(100_000)
    name = f"w{len(server.files)}.safetensors"
    server.files[name], server.modes[name], server.failures[name] = data, mode, list(failures)
    return WeightsFile(server.url(name), hashlib.sha256(data).hexdigest())


def cached_files(cache: Path) -> list[Path]:
    """Every file in the cache but lock files: a failed download must leave none."""
    return [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")] if cache.exists() else []


def test_server_errors_are_tried_again_until_the_file_arrives(server: WeightsServer, isolated_cache: Path) -> None:
    file = publish(server, 503, 503)
    fetched = fetch(file, progress=False)
    assert fetched.sha256 == file.sha256
    assert len(server.requests) == 3
    assert cached_files(isolated_cache) == [fetched.path]  # no .part of the failed attempts


def test_connection_closed_mid_body_is_tried_again(server: WeightsServer, isolated_cache: Path) -> None:
    file = publish(server, "drop")
    fetched = fetch(file, progress=False)
    assert fetched.sha256 == file.sha256
    assert len(server.requests) == 2
    assert cached_files(isolated_cache) == [fetched.path]


def test_too_many_requests_waits_as_long_as_the_server_asks(server: WeightsServer) -> None:
    file = publish(server, 429)
    server.failure_headers["Retry-After"] = "1"
    started = time.monotonic()
    assert fetch(file, progress=False).sha256 == file.sha256
    assert time.monotonic() - started >= 1  # the server's second, not the 10 ms of the backoff
    assert len(server.requests) == 2


def test_not_found_is_not_tried_again(server: WeightsServer, isolated_cache: Path) -> None:
    file = WeightsFile(server.url("missing.safetensors"), "0" * 64)
    with pytest.raises(zoo.WeightsError) as caught:
        fetch(file, progress=False)
    message = str(caught.value)
    assert "404" in message and "after 1 attempt;" in message and "\n" not in message
    assert server.requests == ["missing.safetensors"]
    assert cached_files(isolated_cache) == []


def test_wrong_file_is_not_tried_again(server: WeightsServer, isolated_cache: Path) -> None:
    file = publish(server, mode="corrupt")
    with pytest.raises(zoo.HashMismatchError, match="nothing was cached"):
        fetch(file, progress=False)
    assert len(server.requests) == 1
    assert cached_files(isolated_cache) == []


def test_server_that_keeps_failing_ends_in_one_line(server: WeightsServer, isolated_cache: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    file = publish(server, *[503] * 10)
    with pytest.raises(zoo.WeightsError) as caught:
        fetch(file, progress=True)
    message = str(caught.value)
    assert f"failed (HTTP Error 503: Service Unavailable) after {ATTEMPTS} attempts;" in message
    assert "\n" not in message and not isinstance(caught.value, zoo.HashMismatchError)
    assert len(server.requests) == ATTEMPTS
    assert cached_files(isolated_cache) == []
    announced = [line for line in capsys.readouterr().err.splitlines() if line.startswith("zoo: download attempt")]
    assert len(announced) == ATTEMPTS - 1 and all("503" in line for line in announced)


@pytest.mark.parametrize("value", ["0", "x", "3,-1", "3,nan", "100", "3,1e9"])
def test_bad_retry_setting_is_a_one_line_error(value: str, server: WeightsServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_FETCH_RETRIES", value)
    file = publish(server)
    with pytest.raises(zoo.UsageError, match=r"\$ZOO_FETCH_RETRIES is .*ATTEMPTS\[,BASE_SECONDS\]") as caught:
        fetch(file, progress=False)
    assert "\n" not in str(caught.value)
    assert server.requests == []
