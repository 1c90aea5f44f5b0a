"""Finding and loading plugins: the one place where plugin code runs.

Plugins are entry points in the group ``zoo``. Each is imported and asked for its
models on its own, so a plugin that raises (on import, on registration or in its
hook, even by calling ``sys.exit``) is recorded as failed and the others still
load; so is a plugin that breaks the contract (a misspelled hook name, no hook at
all) and one whose entry-point name another distribution already uses.
``ZOO_LOAD_PLUGINS`` picks which plugins load; strict mode turns any failure into an
error, for CI.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points

import pluggy

from zoo import hookspecs
from zoo.errors import PluginError, UsageError, first_line
from zoo.specs import ModelSpec

LOAD_PLUGINS_ENV = "ZOO_LOAD_PLUGINS"
STRICT_ENV = "ZOO_STRICT_PLUGINS"
#: What a sync child writes on stderr, then a plugin's name, before and after that
#: plugin's code runs: its parent names a plugin that hangs or ends the child by these.
LOADING_PREFIX = "zoo-sync: loading plugin "
LOADED_PREFIX = "zoo-sync: loaded plugin "
#: zoo's own plugin distributions: an entry-point name one of them uses stays theirs.
BUNDLED = frozenset({"zoo-digits", "zoo-torchvision"})


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
    found.sort(key=_precedence)
    if selection is None:
        selection = os.environ.get(LOAD_PLUGINS_ENV)
    if selection is None:
        return found
    wanted = {s.strip().lower() for s in selection.split(",") if s.strip()}
    known = {p.name.lower() for p in found} | {(p.distribution or "").lower() for p in found}
    unknown = sorted(wanted - known)
    if unknown:
        names = ", ".join(dict.fromkeys(p.name for p in found)) or "none"
        raise UsageError(
            f"{LOAD_PLUGINS_ENV} names plugins that are not installed: {', '.join(unknown)}; "
            f"installed plugins: {names}"
        )
    return [p for p in found if p.name.lower() in wanted or (p.distribution or "").lower() in wanted]


def _precedence(plugin: PluginInfo) -> tuple[str, bool, str]:
    """Sort key: by entry-point name; of two with one name, a bundled one, then by distribution."""
    distribution = re.sub(r"[-_.]+", "-", plugin.distribution or "").lower()
    return plugin.name, distribution not in BUNDLED, distribution


def fingerprint(plugins: list[PluginInfo]) -> str:
    """A digest that changes when the set, targets or versions of `plugins` change."""
    data = [(p.name, p.target, p.distribution, p.version) for p in plugins]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


def strict_from_env() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def load_plugins(
    plugins: list[PluginInfo],
    *,
    strict: bool = False,
    skip: Mapping[str, str] | None = None,
    watch: Callable[[PluginInfo], AbstractContextManager[object]] | None = None,
) -> list[LoadedPlugin]:
    """Import each plugin and collect its models, one plugin at a time.

    A model name may belong to one plugin only: the plugin that claims a name already
    taken (plugins load in name order) fails as a whole, with both distributions named.
    So does a plugin whose entry-point name an earlier one in `plugins` has (see
    `installed_plugins` for the order). Plugins named in `skip` are recorded as failed
    with the reason given there, without running their code; each other plugin's code
    runs inside ``watch(info)``. With `strict`, any failure raises `PluginError` after
    all plugins were tried.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    owners: dict[str, PluginInfo] = {}
    taken: dict[str, PluginInfo] = {}
    results = []
    for info in plugins:
        if info.name in taken:
            results.append(_name_clash(taken[info.name], info))
            continue
        taken[info.name] = info
        if skip and info.name in skip:
            results.append(LoadedPlugin(info, error=skip[info.name]))
            continue
        with watch(info) if watch else contextlib.nullcontext():
            results.append(_load_safely(manager, owners, info))
    failed = [r for r in results if not r.ok]
    if strict and failed:
        details = "; ".join(f"{r.info.name}: {r.error}" for r in failed)
        raise PluginError(f"{len(failed)} plugin(s) failed to load (strict mode): {details}")
    return results


def _load_safely(manager: pluggy.PluginManager, owners: dict[str, PluginInfo], info: PluginInfo) -> LoadedPlugin:
    """Load one plugin; whatever it raises (even ``sys.exit``) is its failure, not ours."""
    try:
        models = _load_one(manager, info)
        _claim_names(owners, info, models)
        return LoadedPlugin(info, models)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return LoadedPlugin(info, error=_describe(exc))


def _name_clash(winner: PluginInfo, loser: PluginInfo) -> LoadedPlugin:
    """The failed record of `loser`, whose entry-point name `winner` keeps.

    The record gets a name of its own (the entry-point name and the distribution), so
    both plugins can be listed side by side.
    """
    error = (f"entry-point name {loser.name!r} of {loser.distribution or '?'} {loser.version or '?'} "
             f"is also used by {winner.distribution or '?'} {winner.version or '?'}, which keeps it "
             f"(a bundled plugin first, then by distribution name); rename one of the entry points")
    return LoadedPlugin(replace(loser, name=f"{loser.name} ({loser.distribution or '?'})"), error=error)


def _load_one(manager: pluggy.PluginManager, info: PluginInfo) -> tuple[ModelSpec, ...]:
    module = info.entry_point.load()
    manager.register(module, name=info.name)
    _check_contract(manager, module)
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


def _check_contract(manager: pluggy.PluginManager, module: object) -> None:
    """Fail a plugin that implements no hook or one the contract does not know.

    pluggy's ``check_pending`` does this for all plugins at once; this names the one
    plugin, so only it fails (a misspelled hook would otherwise load with no models).
    """
    known = sorted(name for name, caller in vars(manager.hook).items() if caller.has_spec())
    callers = manager.get_hookcallers(module) or []
    unknown = sorted(
        caller.name for caller in callers
        if not caller.has_spec()
        and any(impl.plugin is module and not impl.optionalhook for impl in caller.get_hookimpls())
    )
    if unknown:
        raise PluginError(f"implements unknown hook {', '.join(unknown)}; known hooks: {', '.join(known)}")
    if not callers:
        raise PluginError(f"implements no hook (mark functions with @zoo.hookimpl); known hooks: {', '.join(known)}")


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


def _describe(exc: BaseException) -> str:
    """One line saying what went wrong: the message alone for our own errors."""
    if isinstance(exc, SystemExit):
        code = "" if exc.code is None else repr(exc.code)[:60]
        return f"called sys.exit({code})"
    if isinstance(exc, PluginError) or not str(exc).strip():
        return first_line(exc)
    return f"{type(exc).__name__}: {first_line(exc)}"
