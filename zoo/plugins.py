"""Finding and loading plugins: the one place where plugin code runs.

Plugins are entry points in the group ``zoo``. Each is imported and asked for its
models on its own, so a plugin that raises (on import, on registration or in its
hook, even by calling ``sys.exit``) is recorded as failed and the others still
load; so is a plugin that breaks the contract (a misspelled hook name, no hook at
all, a hook returning something that is not a spec). Within a loaded plugin each
model is checked on its own: a bad spec, a `DeferredSpec` whose ``make`` raises or
a name the plugin registers twice fails that model alone (`ModelFailure`, with its
traceback), and the plugin's other models load.

Two plugins may register the same model name, and two distributions may use the
same entry-point name: the catalog gives every plugin a namespace of its own
(`zoo.catalog.sync`). ``ZOO_LOAD_PLUGINS`` picks which plugins load; strict mode
turns any failure into an error, for CI.
"""

from __future__ import annotations

import contextlib
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import pluggy

from zoo import hookspecs
from zoo.errors import PluginError, UsageError, excerpt, first_line
from zoo.settings import LOAD_PLUGINS, Settings
from zoo.specs import DeferredSpec, ModelSpec

#: What a sync child writes on stderr, then a plugin's key, before and after that
#: plugin's code runs: its parent names a plugin that hangs or ends the child by these.
LOADING_PREFIX = "zoo-sync: loading plugin "
LOADED_PREFIX = "zoo-sync: loaded plugin "
#: zoo's own plugin distributions: they load first among plugins of one entry-point
#: name, and their models answer a bare name that is new to the catalog first.
#: In precedence order: of two bundled plugins that both have a name, the first answers it
#: (torchvision's names mean what torchvision users expect, also beside timm).
BUNDLED = ("zoo-torchvision", "zoo-digits", "zoo-timm")
#: The most of a model failure's traceback that is kept (its end, where the error is).
MAX_TRACEBACK_CHARS = 16_000


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

    @property
    def key(self) -> str:
        """What tells two plugins apart (two distributions may use one entry-point name): one line."""
        return f"{normalized(self.distribution or '')}/{self.name}"


@dataclass(frozen=True)
class ModelFailure:
    """A model of a loaded plugin that could not be registered: its name, why (one line) and the traceback."""

    name: str
    error: str
    traceback: str


@dataclass(frozen=True)
class LoadedPlugin:
    """The outcome of loading one plugin: its models and failed models, or the error that stopped it."""

    info: PluginInfo
    models: tuple[ModelSpec, ...] = ()
    error: str | None = None
    failures: tuple[ModelFailure, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


def normalized(distribution: str) -> str:
    """A distribution name as packaging compares them (PEP 503): ``Zoo_Fixture.Clash`` -> ``zoo-fixture-clash``."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def installed_plugins(selection: str | None = None) -> list[PluginInfo]:
    """The plugins to load, in load order (see `_precedence`): all installed ones, or those `selection` names.

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
        selection = Settings.from_environ().load_plugins
    if selection is None:
        return found
    wanted = {s.strip().lower() for s in selection.split(",") if s.strip()}
    known = {p.name.lower() for p in found} | {(p.distribution or "").lower() for p in found}
    unknown = sorted(wanted - known)
    if unknown:
        names = ", ".join(dict.fromkeys(p.name for p in found)) or "none"
        raise UsageError(
            f"{LOAD_PLUGINS} names plugins that are not installed: {', '.join(unknown)}; "
            f"installed plugins: {names}"
        )
    return [p for p in found if p.name.lower() in wanted or (p.distribution or "").lower() in wanted]


def installed_here(plugins: Iterable[tuple[str, str, str]]) -> list[bool]:
    """For each plugin's (name, distribution, version), whether this machine has that plugin at that version."""
    here = {(p.name, p.distribution, p.version) for p in installed_plugins()}
    return [tuple(p) in here for p in plugins]


def _precedence(plugin: PluginInfo) -> tuple[str, bool, str]:
    """Sort key: by entry-point name; of two with one name, a bundled one, then by distribution."""
    distribution = normalized(plugin.distribution or "")
    return plugin.name, distribution not in BUNDLED, distribution


def bundled_rank(distribution: str | None) -> int:
    """Where `distribution` stands in `BUNDLED` (0 first); after all of them when it is not bundled."""
    name = normalized(distribution or "")
    return BUNDLED.index(name) if name in BUNDLED else len(BUNDLED)


def strict_from_env() -> bool:
    return Settings.from_environ().strict_plugins


def load_plugins(
    plugins: list[PluginInfo],
    *,
    strict: bool = False,
    skip: Mapping[str, str] | None = None,
    watch: Callable[[PluginInfo], AbstractContextManager[object]] | None = None,
) -> list[LoadedPlugin]:
    """Import each plugin and collect its models, one plugin at a time.

    Plugins whose `PluginInfo.key` is in `skip` are recorded as failed with the reason
    given there, without running their code; each other plugin's code runs inside
    ``watch(info)``. With `strict`, any failure (of a plugin or of one model) raises
    `PluginError` after all plugins were tried.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    results = []
    for info in plugins:
        if skip and info.key in skip:
            results.append(LoadedPlugin(info, error=skip[info.key]))
            continue
        with watch(info) if watch else contextlib.nullcontext():
            results.append(_load_safely(manager, info))
    if strict:
        _refuse_failures(results)
    return results


def _refuse_failures(results: Iterable[LoadedPlugin]) -> None:
    """Raise one `PluginError` naming every plugin and model that failed (strict mode)."""
    failed = [r for r in results if not r.ok or r.failures]
    if failed:
        details = "; ".join(
            f"{r.info.name}: {r.error}" if r.error
            else "; ".join(f"{r.info.name}: model {f.name}: {f.error}" for f in r.failures)
            for r in failed
        )
        raise PluginError(f"{len(failed)} plugin(s) failed to load (strict mode): {details}")


def _load_safely(manager: pluggy.PluginManager, info: PluginInfo) -> LoadedPlugin:
    """Load one plugin; whatever it raises (even ``sys.exit``) is its failure, not ours."""
    try:
        returned = _call_hook(manager, info)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return LoadedPlugin(info, error=_describe(exc))
    models: dict[str, ModelSpec] = {}
    failures = []
    for entry in returned:
        try:
            spec = _checked(entry)
            if spec.name in models:
                raise PluginError(f"model name {spec.name!r} is registered twice by this plugin")
            models[spec.name] = spec
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            failures.append(ModelFailure(_name_of(entry), _describe(exc), _traceback_text(exc)))
    return LoadedPlugin(info, tuple(models.values()), failures=tuple(failures))


def _call_hook(manager: pluggy.PluginManager, info: PluginInfo) -> tuple[ModelSpec | DeferredSpec, ...]:
    """Import the plugin and call its hook: the specs it returns, unchecked."""
    module = info.entry_point.load()
    manager.register(module, name=info.key)
    _check_contract(manager, module)
    entries: list[ModelSpec | DeferredSpec] = []
    for impl in manager.hook.zoo_register_models.get_hookimpls():
        if impl.plugin_name != info.key:
            continue
        for spec in impl.function() or ():
            if not isinstance(spec, (ModelSpec, DeferredSpec)):
                raise PluginError(
                    f"zoo_register_models returned {type(spec).__name__}; expected zoo.ModelSpec or zoo.DeferredSpec"
                )
            entries.append(spec)
    return tuple(entries)


def _checked(entry: ModelSpec | DeferredSpec) -> ModelSpec:
    """The checked `ModelSpec` of one hook entry: a `DeferredSpec` is made first."""
    spec = entry.make() if isinstance(entry, DeferredSpec) else entry
    if not isinstance(spec, ModelSpec):
        raise PluginError(f"make() returned {type(spec).__name__}; expected zoo.ModelSpec")
    if isinstance(entry, DeferredSpec) and spec.name != entry.name:
        raise PluginError(f"make() returned the spec of {excerpt(spec.name)}, not of {excerpt(entry.name)}")
    spec.check()
    return spec


def _name_of(entry: ModelSpec | DeferredSpec) -> str:
    """How a failed model is named: its name, quoted when it is not a string."""
    return entry.name[:200] if isinstance(entry.name, str) else excerpt(entry.name)


def _traceback_text(exc: BaseException) -> str:
    """The end of `exc`'s formatted traceback, at most `MAX_TRACEBACK_CHARS` long."""
    return "".join(traceback.format_exception(exc))[-MAX_TRACEBACK_CHARS:]


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


def _describe(exc: BaseException) -> str:
    """One line saying what went wrong: the message alone for our own errors."""
    if isinstance(exc, SystemExit):
        code = "" if exc.code is None else repr(exc.code)[:60]
        return f"called sys.exit({code})"
    if isinstance(exc, PluginError) or not str(exc).strip():
        return first_line(exc)
    return f"{type(exc).__name__}: {first_line(exc)}"
