"""Tokens of the registry service: who may publish (and, with ``--require-read-token``, read); `SqlCatalog`'s.

A token is a random secret shown once, when it is made (`create_token`); the catalog
keeps only its SHA-256 (table ``tokens``), so a copy of the catalog gives nobody a
usable token. A request presents it as ``Authorization: Bearer <secret>``; the
service hashes it and looks the hash up (`token_scopes`), so every process on one
catalog knows every token, and a revoked one is refused by all of them at once.

Scopes: ``publish`` (POST: publish weights and exports; it reads too) and ``read``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, select, update

from zoo.catalog.engine import write_transaction
from zoo.catalog.tables import tokens
from zoo.errors import UsageError, excerpt

SCOPES = ("publish", "read")
DEFAULT_SCOPES = ("publish",)
#: What a read needs when reads need a token: either scope (publishing includes reading).
READ_SCOPES = frozenset(SCOPES)
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_PREFIX = "zoo_"  # so that a leaked secret is recognisable in logs and by secret scanners


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name: object) -> str:
    """`name` if it names a token (lowercase letters, digits, ``.``, ``_``, ``-``; up to 100); else one line."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(f"a token name is 1 to 100 lowercase letters, digits, '.', '_' or '-' (starting with a "
                         f"letter or digit), not {excerpt(name)}")
    return name


def create_token(engine: Engine, name: str, scopes: list[str] | tuple[str, ...] = DEFAULT_SCOPES) -> str:
    """Make token `name` with `scopes` and return its secret (the only time it is seen)."""
    check_name(name)
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise UsageError(f"unknown token scope {excerpt(unknown[0]) if unknown else 'none'}; "
                         f"scopes: {', '.join(SCOPES)}")
    secret = _PREFIX + secrets.token_urlsafe(32)
    with write_transaction(engine) as conn:
        if conn.scalar(select(tokens.c.id).where(tokens.c.name == name)) is not None:
            raise UsageError(f"a token named {name!r} exists already; revoke it first or choose another name")
        conn.execute(tokens.insert().values(name=name, hash=_hash(secret), scopes=sorted(set(scopes)),
                                            created_at=datetime.now(timezone.utc)))
    return secret


def list_tokens(engine: Engine) -> list[dict[str, Any]]:
    """Every token, by name: its scopes, when it was made and (if so) revoked. Never a secret."""
    with engine.connect() as conn:
        rows = conn.execute(select(tokens.c.name, tokens.c.scopes, tokens.c.created_at, tokens.c.revoked_at)
                            .order_by(tokens.c.name)).all()
    return [{"name": r.name, "scopes": r.scopes, "created_at": r.created_at.isoformat(),
             "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None} for r in rows]


def revoke_token(engine: Engine, name: str) -> None:
    """Revoke token `name`: every service process refuses it from its next request on."""
    check_name(name)
    with write_transaction(engine) as conn:
        done = conn.execute(update(tokens).where(tokens.c.name == name, tokens.c.revoked_at.is_(None))
                            .values(revoked_at=datetime.now(timezone.utc)))
        if done.rowcount == 0:
            known = conn.scalar(select(tokens.c.id).where(tokens.c.name == name)) is not None
            raise UsageError(f"token {name!r} is revoked already" if known else
                             f"no token named {name!r}; `zoo token list` shows them")


def token_scopes(engine: Engine, secret: str) -> frozenset[str] | None:
    """The scopes of the live token whose secret is `secret`; None for an unknown or revoked one."""
    found = live_token(engine, secret=secret)
    return found[1] if found is not None else None


def live_token(engine: Engine, *, secret: str | None = None, name: str | None = None
               ) -> tuple[str, frozenset[str]] | None:
    """The name and scopes of the live token whose secret is `secret` (or, without one, named `name`: a web
    session's token, `zoo.service.sessions`); None for an unknown or revoked one."""
    match = tokens.c.hash == _hash(secret) if secret is not None else tokens.c.name == name
    with engine.connect() as conn:
        row = conn.execute(select(tokens.c.name, tokens.c.scopes).where(match, tokens.c.revoked_at.is_(None))).first()
    return (row.name, frozenset(row.scopes)) if row is not None else None
