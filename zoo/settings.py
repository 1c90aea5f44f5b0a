"""The zoo's configuration: the environment, read in this one module into a typed `Settings`.

Every ``ZOO_*`` variable (and ``TORCH_HOME``, ``XDG_CACHE_HOME``, and the ``AWS_*`` ones an
``s3://`` artifact store connects with) is read here and nowhere else; nothing in the zoo
writes the environment. `Settings.from_environ` reads it once per top-level call (so a
changed variable takes effect at the next call, as a user who exports one expects); the
result is passed down, and whatever is built from it (a catalog, a store, a weights cache)
is kept per settings value by `zoo.context`. Values that can be wrong are checked where
they are used, with a one-line `UsageError` naming the variable, so a bad
``ZOO_SYNC_TIMEOUT`` does not break a command that never syncs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from zoo.errors import UsageError

REGISTRY_URL = "ZOO_REGISTRY_URL"  # a catalog database's SQLAlchemy URL, or a registry service's http(s) URL
DEFAULT_REGISTRY_URL = "sqlite:///registry.db"
TOKEN = "ZOO_TOKEN"
LOAD_PLUGINS = "ZOO_LOAD_PLUGINS"
STRICT_PLUGINS = "ZOO_STRICT_PLUGINS"
PREFER = "ZOO_PREFER"
ARTIFACTS = "ZOO_ARTIFACTS"
OFFLINE = "ZOO_OFFLINE"
MIRROR = "ZOO_WEIGHTS_MIRROR"
FETCH_RETRIES = "ZOO_FETCH_RETRIES"
CHECK_INTERVAL = "ZOO_CATALOG_CHECK_INTERVAL"
SYNC_TIMEOUT = "ZOO_SYNC_TIMEOUT"
SERVICE_TIMEOUT = "ZOO_SERVICE_TIMEOUT"
DEFAULT_CHECK_INTERVAL = 2.0
DEFAULT_SYNC_TIMEOUT = 300.0
DEFAULT_SERVICE_TIMEOUT = 60.0
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """What the environment configures; every field has the default a user gets with nothing set."""

    registry_url: str = DEFAULT_REGISTRY_URL
    token: str | None = None
    load_plugins: str | None = None  # comma-separated plugin names; "" loads none; None loads all
    strict_plugins: bool = False
    prefer: tuple[str, ...] = ()  # namespaces whose models answer bare names first
    artifacts: str | None = None  # the artifact store's location; None: the default (`zoo.store`)
    torch_home: Path = Path("~/.cache/torch").expanduser()
    cache_home: Path = Path("~/.cache").expanduser()
    offline: bool = False
    mirror: Path | None = None
    fetch_retries: str = ""  # ATTEMPTS[,BASE_SECONDS]; checked by `zoo.fetch`
    check_interval_text: str = ""
    sync_timeout_text: str = ""
    service_timeout_text: str = ""
    # every AWS_* variable, sorted: what `zoo.s3store` connects with (kept out of the repr: it holds secrets)
    aws: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings `environ` (default: this process's environment) gives."""
        env = os.environ if environ is None else environ
        cache_home = Path(os.path.expanduser(env.get("XDG_CACHE_HOME") or "~/.cache"))
        mirror = env.get(MIRROR)
        return cls(
            registry_url=env.get(REGISTRY_URL) or DEFAULT_REGISTRY_URL,
            token=env.get(TOKEN) or None,
            load_plugins=env.get(LOAD_PLUGINS),
            strict_plugins=_flag(env.get(STRICT_PLUGINS)),
            prefer=tuple(p.strip().lower() for p in env.get(PREFER, "").split(",") if p.strip()),
            artifacts=env.get(ARTIFACTS, "").strip() or None,
            torch_home=Path(os.path.expanduser(env.get("TORCH_HOME") or cache_home / "torch")),
            cache_home=cache_home,
            offline=_flag(env.get(OFFLINE)),
            mirror=Path(mirror).expanduser() if mirror else None,
            fetch_retries=env.get(FETCH_RETRIES, "").strip(),
            check_interval_text=env.get(CHECK_INTERVAL, "").strip(),
            sync_timeout_text=env.get(SYNC_TIMEOUT, "").strip(),
            service_timeout_text=env.get(SERVICE_TIMEOUT, "").strip(),
            aws=tuple(sorted((name, value) for name, value in env.items() if name.startswith("AWS_"))),
        )

    def with_catalog(self, registry_url: str) -> Settings:
        """These settings for another catalog: what an app given a catalog URL and a sync child use."""
        return replace(self, registry_url=registry_url)

    @property
    def check_interval(self) -> float:
        """``$ZOO_CATALOG_CHECK_INTERVAL`` in seconds (default 2; 0 checks the catalog on every lookup)."""
        return _seconds(CHECK_INTERVAL, self.check_interval_text, DEFAULT_CHECK_INTERVAL,
                        "a number of seconds, 0 or more, e.g. 2", allow_zero=True)

    @property
    def sync_timeout(self) -> float:
        """``$ZOO_SYNC_TIMEOUT`` in seconds (default 300): how long one sync child may run."""
        return _seconds(SYNC_TIMEOUT, self.sync_timeout_text, DEFAULT_SYNC_TIMEOUT,
                        "a positive number of seconds, e.g. 300", allow_zero=False)

    @property
    def service_timeout(self) -> float:
        """``$ZOO_SERVICE_TIMEOUT`` in seconds (default 60): how long a command (or one call of a catalog method)
        waits for a registry service's answers in all, and a download from it for its next byte."""
        return _seconds(SERVICE_TIMEOUT, self.service_timeout_text, DEFAULT_SERVICE_TIMEOUT,
                        "a positive number of seconds, e.g. 60", allow_zero=False)

    @property
    def sqlite_file(self) -> Path | None:
        """The database file of a SQLite catalog URL (``sqlite:///PATH``, as SQLAlchemy reads it); else None."""
        scheme, sep, rest = self.registry_url.strip().partition("://")
        if not sep or scheme.lower().partition("+")[0] != "sqlite":
            return None
        return Path(rest.removeprefix("/").partition("?")[0])

    @property
    def weights_cache(self) -> Path:
        """``$TORCH_HOME/hub/checkpoints``, the directory torch.hub caches weights in."""
        return self.torch_home / "hub" / "checkpoints"


def environment_with(changes: Mapping[str, str | None]) -> dict[str, str]:
    """This process's environment, for a child process, with `changes` (None removes a variable)."""
    merged = {**os.environ, **changes}
    return {name: value for name, value in merged.items() if value is not None}


def child_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a child process of the zoo: this process's, with `settings`' catalog and `extra`."""
    return environment_with({REGISTRY_URL: settings.registry_url, LOAD_PLUGINS: settings.load_plugins, **extra})


def _flag(text: str | None) -> bool:
    return (text or "").strip().lower() in _TRUE


def _seconds(variable: str, text: str, default: float, expected: str, *, allow_zero: bool) -> float:
    """The number of seconds in `text` (`default` when empty); a `UsageError` naming `variable` otherwise."""
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
        raise UsageError(f"{variable} must be {expected}; got {text[:40]!r}")
    return value
