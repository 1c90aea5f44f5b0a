"""Signing in to a private registry from a browser (`zoo.service.web.login`, `zoo.service.sessions`): a real
``zoo serve --require-read-token --workers 2`` on 127.0.0.1, asked with httpx, and once with Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.browser import axe_violations, chromium, offline_page
from tests.conftest import run_zoo
from zoo.service.sessions import COOKIE
from zoo.testing import serving


@dataclass(frozen=True)
class Private:
    url: str
    env: dict[str, str]
    token: str


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    folder = tmp_path_factory.mktemp("private")
    env = {"ZOO_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}", "ZOO_LOAD_PLUGINS": "",
           "ZOO_ARTIFACTS": str(folder / "store")}
    token = run_zoo("token", "create", "reader", "--scope", "read", env=env).stdout.strip()
    with serving("--require-read-token", "--workers", "2", env=env) as served:
        yield Private(served.url, env, token)


def client(url: str) -> httpx.Client:
    """A client that asks for pages as a browser does (Accept: text/html)."""
    return httpx.Client(base_url=url, follow_redirects=False, timeout=30, headers={"Accept": BROWSER_ACCEPT})


BROWSER_ACCEPT = "text/html,application/xhtml+xml,*/*;q=0.8"


def sign_in(web: httpx.Client, token: str, next_page: str = "/", **headers: str) -> httpx.Response:
    """The answer to a sign-in, its cookie not kept by `web`: each request below says which it sends."""
    answer = web.post("/login", data={"token": token, "next": next_page}, headers=headers)
    web.cookies.clear()
    return answer


def cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


def session_of(web: httpx.Client, token: str) -> dict[str, str]:
    """The headers that send the session cookie of signing in with `token`."""
    answer = sign_in(web, token)
    assert answer.status_code == 303, answer.text
    return cookie(answer.cookies[COOKIE])


def test_without_a_session_pages_send_to_the_login_and_the_api_answers_401(private: Private) -> None:
    with client(private.url) as web:
        page = web.get("/compare?metric=a b")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fcompare%3Fmetric%3Da%2520b"
        api = web.get("/api/v1/models")
        assert api.status_code == 401 and "needs a token" in api.json()["error"]
        script = web.get("/compare", headers={"Accept": "*/*"})  # not a browser: the API's answer
        assert script.status_code == 401 and "needs a token" in script.json()["error"]
        login = web.get(page.headers["location"])
        assert login.status_code == 200 and 'type="password"' in login.text and '<label for="token">' in login.text
        assert 'value="/compare?metric=a%20b"' in login.text


def test_a_wrong_token_gets_the_page_again_with_401(private: Private) -> None:
    with client(private.url) as web:
        assert web.post("/login", content=b"token=" + b"x" * (64 << 10),
                        headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 413
        for wrong in ("zoo_not-a-token", ""):
            answer = sign_in(web, wrong)
            assert answer.status_code == 401 and answer.headers["content-type"].startswith("text/html")
            assert 'id="error"' in answer.text and COOKIE not in answer.headers.get("set-cookie", "")


def test_the_right_token_gives_a_session_cookie_that_reads(private: Private) -> None:
    with client(private.url) as web:
        answer = sign_in(web, private.token, "/compare")
        assert (answer.status_code, answer.headers["location"]) == (303, "/compare")
        said = answer.headers["set-cookie"]
        attributes = {part.strip().split("=")[0].lower() for part in said.split(";")}
        assert {"httponly", "path", "max-age"} <= attributes and "secure" not in attributes
        assert "samesite=strict" in said.lower() and "Path=/" in said
        assert private.token not in said and private.token.removeprefix("zoo_") not in said
        session = cookie(answer.cookies[COOKIE])
        page = web.get("/", headers=session)
        assert page.status_code == 200 and 'action="/logout"' in page.text
        assert web.head("/compare", headers=session).status_code == 200
        assert web.get("/api/v1/models", headers=session).status_code == 200
        forged = answer.cookies[COOKIE].rsplit(":", 1)[0] + ":" + "A" * 43
        for bad in (forged, "reader:99999999999", "::", "reader:\u00b2:\u00e9"):
            sent = {"Cookie": f"{COOKIE}={bad}".encode("latin-1")}
            assert web.get("/", headers=sent).status_code == 303, bad


def test_the_cookie_is_secure_behind_a_tls_proxy(private: Private) -> None:
    """uvicorn takes the scheme from X-Forwarded-Proto of a proxy on 127.0.0.1 (nginx in front)."""
    with client(private.url) as web:
        answer = sign_in(web, private.token, **{"X-Forwarded-Proto": "https"})
        assert answer.status_code == 303 and "secure" in answer.headers["set-cookie"].lower()


def test_writes_need_the_bearer_token_not_the_cookie_nor_posts_from_elsewhere(private: Private) -> None:
    with client(private.url) as web:
        session = session_of(web, private.token)
        refused = web.post("/api/v1/measurements", content=b"{}", headers=session)
        assert refused.status_code == 401
        alias = web.put("/api/v1/published/acme/x/aliases/prod?version=1", headers=session)
        assert alias.status_code == 401
        tried = f"/try/{'0' * 64}"  # "try it" reads: its post passes with the cookie from this server's page
        assert web.post(tried, content=b"x", headers={**session, "Origin": private.url}).status_code == 404
        for elsewhere in ({}, {"Origin": "http://evil.example"}):
            assert web.post(tried, content=b"x", headers={**session, **elsewhere}).status_code == 401


def test_a_revoked_tokens_session_ends_at_once(private: Private) -> None:
    token = run_zoo("token", "create", "short-lived", "--scope", "read", env=private.env).stdout.strip()
    with client(private.url) as web:
        session = session_of(web, token)
        assert web.get("/", headers=session).status_code == 200
        run_zoo("token", "revoke", "short-lived", env=private.env)
        for _ in range(4):  # whichever worker answers
            assert web.get("/", headers=session).status_code == 303
            assert web.get("/api/v1/models", headers=session).status_code == 401


@pytest.mark.parametrize("path", ["/login", "/logout"])
@pytest.mark.parametrize("header, origin", [("Origin", "http://evil.example"), ("Origin", "null"),
                                            ("Referer", "http://evil.example/x")])
def test_a_post_from_another_origin_is_refused(private: Private, path: str, header: str, origin: str) -> None:
    with client(private.url) as web:
        answer = web.post(path, data={"token": private.token}, headers={header: origin})
        assert answer.status_code == 403 and COOKIE not in answer.headers.get("set-cookie", "")
        same = web.post(path, data={"token": private.token}, headers={header: private.url})
        assert same.status_code == 303


@pytest.mark.parametrize("next_page", ["//evil.example", "http://evil.example", "/\\evil.example",
                                       "https:/evil.example", "evil.example", "/\tevil"])
def test_next_is_followed_only_to_a_local_path(private: Private, next_page: str) -> None:
    with client(private.url) as web:
        answer = sign_in(web, private.token, next_page)
        assert (answer.status_code, answer.headers["location"]) == (303, "/")


def test_logout_clears_the_cookie(private: Private) -> None:
    with client(private.url) as web:
        session = session_of(web, private.token)
        answer = web.post("/logout", headers=session)
        assert (answer.status_code, answer.headers["location"]) == (303, "/login")
        assert f'{COOKIE}=""' in answer.headers["set-cookie"] and "Max-Age=0" in answer.headers["set-cookie"]


def test_a_public_registry_has_nothing_to_sign_in_to(sqlite_url: str, tmp_path: Path) -> None:
    env = {"ZOO_REGISTRY_URL": sqlite_url, "ZOO_LOAD_PLUGINS": "", "ZOO_ARTIFACTS": str(tmp_path / "store")}
    with serving(env=env) as served, client(served.url) as web:
        assert "is public" in web.get("/login").text
        page = web.get("/")
        assert page.status_code == 200 and "/logout" not in page.text and "/login" not in page.text


def test_a_browser_signs_in_and_out(private: Private) -> None:
    with chromium() as browser:
        page, elsewhere = offline_page(browser, private.url, width=390)
        page.goto(f"{private.url}/compare")
        assert page.url.startswith(f"{private.url}/login?next=")
        assert axe_violations(page) == []
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than a phone
        page.get_by_label("Token").fill(private.token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{private.url}/compare")
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{private.url}/login")
        assert page.context.cookies() == [] and elsewhere == []
