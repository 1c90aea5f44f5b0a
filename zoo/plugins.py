"""Finding and loading plugins: the one place where plugin code runs.

Plugins are entry points in the group ``zoo``. Each is imported and asked for its
models on its own, so a plugin that raises (on import, on registration or in its
hook) is recorded as failed and the others still load. ``ZOO_LOAD_PLUGINS`` picks
which plugins load; strict mode turns any failure into an error, for CI.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import pluggy

from zoo import hookspecs
from zoo.errors import PluginError, UsageError, first_line
from zoo.specs import ModelSpec

LOAD_PLUGINS_ENV = "ZOO_LOAD_PLUGINS"
STRICT_ENV = "ZOO_STRICT_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    """An installed plugin, known from its entry point without importing it."""

    name: str
    target: str
    distribution: str | None
    version: str | None
    entry_point: EntryPoint = field(compare=False, repr=False)

    @property
    def label(self) -> str:
        """How error messages name the plugin: its distribution and version."""
        return f"{self.distribution or '?'} {self.version or '?'} (plugin {self.name!r})"


@dataclass(frozen=True)
class LoadedPlugin:
    """The outcome of loading one plugin: its models, or the error that stopped it."""

    info: PluginInfo
    models: tuple[ModelSpec, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def installed_plugins(selection: str | None = None) -> list[PluginInfo]:
    """The plugins to load, sorted by name: all installed ones, or those `selection` names.

    `selection` defaults to ``$ZOO_LOAD_PLUGINS``: a comma-separated list of plugin or
    distribution names; empty loads none; unset loads all.
    """
    found = []
    for ep in entry_points(group=hookspecs.PROJECT):
        dist = ep.dist
        found.append(
            PluginInfo(
                name=ep.name,
                target=ep.value,
                distribution=dist.metadata["Name"] if dist else None,
                version=dist.version if dist else None,
                entry_point=ep,
            )
        )
    found.sort(key=lambda p: (p.name, p.distribution or ""))
    if selection is None:
        selection = os.environ.get(LOAD_PLUGINS_ENV)
    if selection is None:
        return found
    wanted = {s.strip().lower() for s in selection.split(",") if s.strip()}
    known = {p.name.lower() for p in found} | {(p.distribution or "").lower() for p in found}
    unknown = sorted(wanted - known)
    if unknown:
        names = ", ".join(p.name for p in found) or "none"
        raise UsageError(
            f"{LOAD_PLUGINS_ENV} names plugins that are not installed: {', '.join(unknown)}; "
            f"installed plugins: {names}"
        )
    return [p for p in found if p.name.lower() in wanted or (p.distribution or "").lower() in wanted]


def fingerprint(plugins: list[PluginInfo]) -> str:
    """A digest that changes when the set, targets or versions of `plugins` change."""
    data = [(p.name, p.target, p.distribution, p.version) for p in plugins]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


def strict_from_env() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def load_plugins(plugins: list[PluginInfo], *, strict: bool = False) -> list[LoadedPlugin]:
    """Import each plugin and collect its models, one plugin at a time.

    A model name may belong to one plugin only: the plugin that claims a name already
    taken (plugins load in name order) fails as a whole, with both distributions named.
    With `strict`, any failure raises `PluginError` after all plugins were tried.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    owners: dict[str, PluginInfo] = {}
    results = []
    for info in plugins:
        try:
            models = _load_one(manager, info)
            _claim_names(owners, info, models)
            results.append(LoadedPlugin(info, models))
        except Exception as exc:  # a plugin's failure is data, not a crash
            results.append(LoadedPlugin(info, error=_describe(exc)))
    failed = [r for r in results if not r.ok]
    if strict and failed:
        details = "; ".join(f"{r.info.name}: {r.error}" for r in failed)
        raise PluginError(f"{len(failed)} plugin(s) failed to load (strict mode): {details}")
    return results


def _load_one(manager: pluggy.PluginManager, info: PluginInfo) -> tuple[ModelSpec, ...]:
    if manager.has_plugin(info.name):
        raise PluginError(f"plugin name {info.name!r} is already used by another distribution")
    module = info.entry_point.load()
    manager.register(module, name=info.name)
    models: list[ModelSpec] = []
    for impl in manager.hook.zoo_register_models.get_hookimpls():
        if impl.plugin_name != info.name:
            continue
        for spec in impl.function() or ():
            if not isinstance(spec, ModelSpec):
                raise PluginError(
                    f"zoo_register_models returned {type(spec).__name__}; expected zoo.ModelSpec"
                )
            models.append(spec)
    return tuple(models)


def _claim_names(owners: dict[str, PluginInfo], info: PluginInfo, models: tuple[ModelSpec, ...]) -> None:
    """Check that `models` claim no name twice; record them as `info`'s on success."""
    mine: set[str] = set()
    for spec in models:
        if spec.name in mine:
            raise PluginError(f"model name {spec.name!r} is registered twice by {info.label}")
        if spec.name in owners:
            raise PluginError(
                f"model name {spec.name!r} is claimed by both {owners[spec.name].label} "
                f"and {info.label}"
            )
        mine.add(spec.name)
    owners.update(dict.fromkeys(mine, info))


def _describe(exc: Exception) -> str:
    """One line saying what went wrong: the message alone for our own errors."""
    if isinstance(exc, PluginError) or not str(exc).strip():
        return first_line(exc)
    return f"{type(exc).__name__}: {first_line(exc)}"
