"""What the registry service's API and its web pages share: one app's settings, refusals with their
HTTP status, the token rule, the upload size rule and the path parameter of a SHA-256."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from zoo.errors import (
    ArtifactTooLargeError,
    CatalogError,
    UnknownArtifactError,
    UnknownNameError,
    ZooError,
    excerpt,
)
from zoo.fetch import FULL_HASH
from zoo.catalog.tokens import READ_SCOPES
from zoo.context import current
from zoo.store import ArtifactStore

SHA256_PATTERN = f"^{FULL_HASH.pattern}$"
Sha256 = Annotated[str, Path(pattern=SHA256_PATTERN, description="64 lowercase hex digits")]
_bearer = HTTPBearer(auto_error=False, description="a token from `zoo token create`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


@dataclass(frozen=True)
class Settings:
    """What one app serves and allows; the catalog itself is ``$ZOO_REGISTRY_URL``'s."""

    store: ArtifactStore
    read_token_required: bool
    allowed_hosts: frozenset[str]
    max_upload_bytes: int


class ApiError(Exception):
    """A refusal with its HTTP status; the message is the one line the client reads."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 kind: str | None = None) -> None:
        super().__init__(message)
        self.status, self.headers, self.kind = status, headers, kind


def status_of(exc: ZooError) -> int:
    """The HTTP status of a zoo error: whose fault it is, and whether trying again can help."""
    if isinstance(exc, CatalogError):
        return 503
    if isinstance(exc, (UnknownNameError, UnknownArtifactError)):
        return 404
    if isinstance(exc, ArtifactTooLargeError):
        return 413
    return 400


def require(credentials: HTTPAuthorizationCredentials | None, scopes: frozenset[str], what: str) -> None:
    """Refuse (401) a request without a live token, and (403) one whose token has none of `scopes`."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiError(401, f"{what} needs a token: send 'Authorization: Bearer <token>' "
                            "(made by `zoo token create NAME`)", challenge)
    granted = current().catalog.token_scopes(credentials.credentials)
    if granted is None:
        raise ApiError(401, "the token is unknown or revoked", challenge)
    if not granted & scopes:
        raise ApiError(403, f"{what} needs a token with the scope {' or '.join(sorted(scopes))}; "
                            f"this one has {', '.join(sorted(granted))}")


def reader(settings: Settings) -> Callable[[Credentials], None]:
    """The dependency of every read, API or page: a token (scope read or publish) only if the server asks for one."""

    def check(credentials: Credentials) -> None:
        if settings.read_token_required:
            require(credentials, READ_SCOPES, "reading")

    return check


def declared_length(request: Request, limit: int) -> int:
    """The upload's declared Content-Length: needed (411), a number (400), at most `limit` (413)."""
    declared = request.headers.get("content-length")
    if declared is None:
        raise ApiError(411, "an upload needs a Content-Length header (the file's size in bytes)")
    if not declared.isdigit():
        raise ApiError(400, f"Content-Length {excerpt(declared)} is not a number of bytes")
    if int(declared) > limit:
        raise ApiError(413, f"the file is {int(declared)} bytes; this server accepts at most {limit} "
                            "(zoo serve --max-upload)")
    return int(declared)
