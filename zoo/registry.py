"""The public lookups: torchvision's model API, answered from the catalog.

`list_models`, `summarize_models`, `describe` and `list_plugins` only read the
database (SQLAlchemy Core, to keep a cold ``zoo list`` light); the others also
import the model's builder or weights enum, and so torch and the plugin.
Names are case-insensitive.

Names. Every model is ``PLUGIN/NAME`` (PLUGIN: its plugin's namespace); a bare
``NAME`` means the model that answers it: the one named first in ``$ZOO_PREFER``
(comma-separated namespaces), else the one the catalog gave the name to (its first
provider: installing a plugin never changes what a name means; see
`zoo.catalog.sync`). Listings show each model under the name that reaches it: the
bare name where it answers it, else the qualified one. Weights are named
``Enum.MEMBER`` (an enum's class name, within the plugin that answers for it),
``NAME.TAG`` (any model name, bare or qualified, and the tag as the plugin spells
it, e.g. timm's ``resnet50.a1_in1k``), ``PLUGIN/Enum.MEMBER``, or ``NAME.DEFAULT``;
`build_model` also takes published weights, ``NAMESPACE/NAME[:VERSION|@ALIAS]``
(`zoo.publish`), when no plugin's weights have that name: plugin names win a clash.

Client mode. With ``ZOO_REGISTRY_URL=http://HOST:PORT`` the catalog is a registry
service's (`zoo.client`): the lookups ask it, and everything built from their answers
(builders, weights enums, `build_model`) works as with a local catalog, given the
model's plugin is installed here; files come into the weights cache, verified.
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import translate
from functools import lru_cache, partial, wraps
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from sqlalchemy import Connection, Row, Select, delete, exists, func, or_, select

from zoo.catalog.engine import remember
from zoo.catalog.fingerprint import ensure_current, installed_here
from zoo.catalog.published import PublishedWeights, for_model, is_spec, resolve
from zoo.catalog.tables import GENERATION_KEY, catalog_state, category_lists, metrics, models, plugins, weight_files, weights
from zoo.errors import (
    HashMismatchError,
    PluginError,
    UnknownModelError,
    UnknownWeightsError,
    UsageError,
    WeightsError,
    excerpt,
)
from zoo.targets import load_target, target_of

Patterns = str | Iterable[str] | None
PREFER_ENV = "ZOO_PREFER"
if TYPE_CHECKING:  # zoo.fetch (urllib, http.client) is imported only by the lookups that touch files
    from zoo.client import Service
    from zoo.fetch import Fetched, WeightsFile

FetchedT = TypeVar("FetchedT", bound="Fetched")
_UNKNOWN = (None, None)  # sha256 and size of a file never verified
_MAX_COUNT = 2**63 - 1  # the largest number a BIGINT column compares with
#: The columns that name a model: its bare name, its plugin's namespace, and whether it answers the bare name.
_NAMING = (models.c.name, plugins.c.namespace, models.c.preferred)


def _select(*columns: Any) -> Select:
    """SELECT `columns` from the models joined with their plugins."""
    return select(*columns).select_from(models.join(plugins))


def list_models(
    module: ModuleType | Patterns = None,
    include: Patterns = None,
    exclude: Patterns = None,
    *,
    task: str | None = None,
    plugin: str | None = None,
    pretrained: bool | None = None,
    max_params: int | None = None,
    min_metric: Mapping[str, float] | None = None,
) -> list[str]:
    """Sorted names of the registered models that match, as torchvision's ``list_models`` takes them.

    `module` (optional, as in torchvision) keeps the models whose builder is defined
    in a module directly inside it, e.g. ``torchvision.models.detection``; a pattern
    in its place is taken as `include`. `include` and `exclude` are fnmatch patterns
    (a string or a list), matched against the bare name, or the qualified
    ``PLUGIN/NAME`` for a pattern with a ``/``. The filters run as SQL: `task` (the
    model's, or one of its weights'); `plugin` (namespace, plugin or distribution
    name); `pretrained` (has weights or not); `max_params`; `min_metric`, e.g.
    ``{"acc@1": 75}`` or ``{"ImageNet-1K:acc@1": 75}`` (metric on one dataset), met by
    at least one of the model's weights. A model is listed under the name that
    reaches it (see the module docstring).
    """
    module, include = _module_or_include(module, include)
    filters = {"task": task, "plugin": plugin, "pretrained": pretrained, "max_params": max_params,
               "min_metric": min_metric}
    if (remote := _service()) is not None:
        return [r["name"] for r in remote.models(include, exclude, **filters)
                if module is None or _in_module(r["builder"], module)]
    with ensure_current().connect() as conn:
        naming = _naming(conn)
        ids = set(_filtered_ids(conn, naming, **filters))
    matches = _matcher(include, exclude)
    return [name for i, name in naming.ordered if i in ids and matches(naming.entries[i])
            and (module is None or _in_module(naming.entries[i].builder, module))]


def summarize_models(
    include: Patterns = None,
    exclude: Patterns = None,
    **filters: Any,
) -> list[dict[str, Any]]:
    """Like `list_models` (same arguments), but one summary per model, as plain data:
    name, qualified_name, task, plugin (namespace), builder, num_params, weights (full
    names) and default_weights."""
    if (remote := _service()) is not None:
        return remote.models(include, exclude, **filters)
    with ensure_current().connect() as conn:
        naming = _naming(conn)
        matches = _matcher(include, exclude)
        ids = {i for i in _filtered_ids(conn, naming, **filters) if matches(naming.entries[i])}
        summaries = select(models.c.id, models.c.task, models.c.num_params)
        names = select(weights.c.model_id, weights.c.enum_name, weights.c.member_name, weights.c.is_default)
        if len(ids) < 500:  # else read them all: one query beats a huge IN list
            summaries, names = summaries.where(models.c.id.in_(ids)), names.where(weights.c.model_id.in_(ids))
        rows = [row for row in conn.execute(summaries) if row[0] in ids]
        shown = naming.shown
        weights_of: dict[int, list[str]] = {}
        default_of: dict[int, str] = {}
        for model_id, enum_name, member, is_default in conn.execute(names.order_by(weights.c.id)):
            if model_id in ids:
                full = _full_name(enum_name, member, shown[model_id])
                weights_of.setdefault(model_id, []).append(full)
                if is_default:
                    default_of[model_id] = full
    records = [
        {
            "name": shown[model_id],
            "qualified_name": naming.entries[model_id].qualified,
            "task": task,
            "plugin": naming.entries[model_id].namespace,
            "builder": naming.entries[model_id].builder,
            "num_params": num_params,
            "weights": weights_of.get(model_id, []),
            "default_weights": default_of.get(model_id),
        }
        for model_id, task, num_params in rows
    ]
    return sorted(records, key=lambda r: r["name"])


def describe(name: str) -> dict[str, Any]:
    """The catalog record of a model and its weights, as plain data.

    `name` is the name that reaches the model, `qualified_name` its ``PLUGIN/NAME``,
    `providers` the qualified names of every model with the same bare name, and
    `published` the weights published for it (`zoo.publish`), every version.
    """
    if (remote := _service()) is not None:
        return remote.describe(name)
    with ensure_current().connect() as conn:
        naming = _naming(conn)
        model = _model(conn, name, naming)
        rows = _weights_of(conn, model)
        learned = _learned_files(conn, [w.url for w in rows if not (w.sha256 and w.file_size)])
        categories = _categories(conn, rows)
        published = for_model(conn, naming.entries[model.id].qualified)
    shown = naming.shown[model.id]
    default = next((w for w in rows if w.is_default), None)
    return {
        "name": shown,
        "qualified_name": naming.entries[model.id].qualified,
        "task": model.task,
        "plugin": {"name": model.plugin_name, "namespace": model.namespace, "distribution": model.distribution,
                   "version": model.version},
        "providers": sorted(naming.entries[i].qualified for i in naming.by_name[model.name]),
        "builder": model.builder,
        "builder_args": model.builder_args,
        "weights_enum": model.weights_enum,
        "num_params": model.num_params,
        "tags": model.tags,
        "metadata": model.meta,
        "classifier": model.classifier,
        "first_conv": model.first_conv,
        "input_size": model.input_size,
        "default_weights": _full_name(default.enum_name, default.member_name, shown) if default else None,
        "weights": [
            {
                "name": _full_name(w.enum_name, w.member_name, shown),
                "enum": w.enum_name,
                "member": w.member_name,
                "is_default": w.is_default,
                "task": w.task or model.task,
                "url": w.url,
                "sha256": w.sha256 or learned.get(w.url, _UNKNOWN)[0],
                "file_size": w.file_size or learned.get(w.url, _UNKNOWN)[1],
                "transforms": w.transforms,
                "builder_args": w.builder_args,
                "meta": _meta(w, categories),
            }
            for w in rows
        ],
        "published": [p.to_json() for p in published],
    }


def list_plugins() -> list[dict[str, Any]]:
    """Every plugin in the catalog: name, namespace, distribution, version, status, error, model
    count, the models that failed, whether this machine has it installed (can build its models),
    and `shared`: its model names that other plugins also provide, with the namespace that
    answers each bare name."""
    from zoo.catalog.plugin_records import plugin_records

    if (remote := _service()) is not None:  # installed here: on this machine, not the service's
        records = remote.plugins()
        here = installed_here((r["name"], r["distribution"], r["version"]) for r in records)
        return [{**record, "installed_here": mine} for record, mine in zip(records, here)]
    with ensure_current().connect() as conn:
        records, naming = plugin_records(conn), _naming(conn)
    shared: dict[str, list[dict[str, str]]] = {}
    for name, ids in sorted(naming.by_name.items()):
        if len(ids) > 1:
            answer = next(naming.entries[i].namespace for i in ids if naming.shown[i] == name)
            for i in ids:
                shared.setdefault(naming.entries[i].namespace, []).append({"name": name, "answered_by": answer})
    return [{**record, "shared": shared.get(record["namespace"], [])} for record in records]


def get_model_builder(name: str) -> Callable[..., Any]:
    """The function that builds model `name` (imports its plugin), with the model's builder
    arguments bound; the weights it loads go through the zoo."""
    record = describe(name)
    return _through_zoo(_builder(record), _hashes(record))


def _builder(record: Mapping[str, Any]) -> Callable[..., Any]:
    """The builder of the model `record` describes, its builder arguments bound."""
    builder = _from_plugin(record["builder"], record)
    return partial(builder, **record["builder_args"]) if record["builder_args"] else builder


def _from_plugin(target: str, record: Mapping[str, Any]) -> Any:
    """Import `target` of the model `record` describes; one line naming the plugin to install when it fails."""
    try:
        return load_target(target)
    except PluginError as exc:
        plugin = record["plugin"]
        raise PluginError(f"{record['qualified_name']} needs its plugin {plugin['namespace']} installed here: "
                          f"pip install '{plugin['distribution']}=={plugin['version']}' ({exc})") from None


def _hashes(record: Mapping[str, Any]) -> dict[str, str]:
    """URL -> full SHA-256 of the weights files `record` lists (declared, or learned by the catalog)."""
    return {w["url"]: w["sha256"] for w in record["weights"] if w["sha256"]}


def _through_zoo(builder: Callable[..., Any], hashes: Mapping[str, str]) -> Callable[..., Any]:
    """`builder`, except that every state dict it asks for (its weights, torchvision's backbone
    weights) is read and verified by the zoo: torchvision's own loader never sees a file.
    `hashes` are the full hashes a registry service knows (client mode)."""

    @wraps(builder)
    def build(*args: Any, **kwargs: Any) -> Any:
        from zoo.weights import loading_through

        with loading_through(partial(_verified_state_dict, hashes)):
            return builder(*args, **kwargs)

    return build


def get_model_weights(name: str | Callable[..., Any]) -> type[enum.Enum]:
    """The weights enum class of a model, given its name or its builder.

    For a model whose plugin lists weights without an enum class, the zoo makes one
    from the catalog (`zoo.weights.catalog_enum`), so ``transforms()`` and ``meta``
    work as in torchvision.
    """
    if callable(name):
        if (remote := _service()) is not None:
            named = [(r["qualified_name"], r["builder"]) for r in remote.models()]
        else:
            with ensure_current().connect() as conn:
                named = [(e.qualified, e.builder) for e in _naming(conn).entries.values()]
        name = _built_by(target_of(name), named)
    return _enum_of(describe(name))


def _built_by(target: str, named: Iterable[tuple[str, str]]) -> str:
    """The name of the one model (of (name, builder) pairs) that `target` builds."""
    found = [name for name, builder in named if builder == target]
    if len(found) != 1:
        raise UsageError(f"{target} builds {len(found)} registered models; pass a model name instead" if found
                         else f"{target} is not the builder of any registered model")
    return found[0]


def _enum_of(record: Mapping[str, Any]) -> type[enum.Enum]:
    """The weights enum of the model `record` describes: its plugin's, or one the zoo makes for it."""
    if record["weights_enum"] is not None:
        return _from_plugin(record["weights_enum"], record)
    if not record["weights"]:
        raise UnknownWeightsError(f"{record['name']}.DEFAULT", [])
    entries = [{"member": w["member"], "url": w["url"], "transforms": w["transforms"], "meta": w["meta"],
                "sha256": w["sha256"], "file_size": w["file_size"], "is_default": w["is_default"]}
               for w in record["weights"]]
    return _catalog_enum(f"{record['qualified_name'].partition('/')[2]}_weights", json.dumps(entries, sort_keys=True))


@lru_cache(maxsize=256)
def _catalog_enum(name: str, entries: str) -> type[enum.Enum]:
    """One enum class per model and catalog content, so that its members compare (and are) the same
    from call to call, as torchvision's are."""
    from zoo.weights import catalog_enum

    return catalog_enum(name, json.loads(entries))


def get_weight(name: str | enum.Enum | None, *, model: str | None = None) -> enum.Enum | None:
    """A weights enum member from any of the names torchvision users write, and the zoo's.

    Accepts ``"ResNet50_Weights.IMAGENET1K_V2"``, ``"resnet50.IMAGENET1K_V2"``,
    ``"resnet50.DEFAULT"``, ``"timm/resnet50.a1_in1k"``,
    ``"torchvision/ResNet50_Weights.DEFAULT"``, a bare tag or ``"DEFAULT"`` together
    with `model`, an enum member (returned as is) and None.
    """
    if name is None or isinstance(name, enum.Enum):
        return name
    if not isinstance(name, str):
        raise UsageError(f"weights must be a name, an enum member or None, not {type(name).__name__}")
    owner, member = weights_owner(name, model=model)
    return get_model_weights(owner)[member]


def weights_owner(name: str, *, model: str | None = None) -> tuple[str, str]:
    """The model (``PLUGIN/NAME``) whose weights enum holds the weights `name` names (read as `get_weight`
    reads it), and the member's name."""
    if (remote := _service()) is not None:
        return remote.weights_owner(name, model)
    with ensure_current().connect() as conn:
        row, owner = _resolve_weights(conn, name, model)
    return f"{owner.namespace}/{owner.name}", row.member_name


@dataclass(frozen=True)
class BuiltModel:
    """A model from `build_model`, and what happened to the pretrained tensors (None without weights)."""

    model: Any
    report: Any  # zoo.surgery.LoadReport | None


def get_model(name: str, *, weights: str | enum.Enum | None = None, **config: Any) -> Any:
    """Build model `name`, with `weights` (any form `get_weight` accepts, or published weights
    ``NAMESPACE/NAME[:VERSION|@ALIAS]``) and builder `config`.

    Unlike torchvision, ``num_classes`` works with pretrained weights (a fresh head)
    and ``in_channels`` adapts the first convolution; `build_model` also says which
    tensors were loaded, adapted or left new.
    """
    return build_model(name, weights=weights, **config).model


def build_model(
    name: str,
    *,
    weights: str | enum.Enum | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    **config: Any,
) -> BuiltModel:
    """Build model `name` with pretrained `weights`, a head of `num_classes` and a stem for `in_channels`.

    With weights, the pretrained model is built first (as its builder knows how), then
    the heads the catalog lists for it are replaced by fresh ones of `num_classes`
    outputs and its first convolution adapted to `in_channels` (`zoo.surgery`); the
    report of `zoo.surgery.load_partial` accounts for every pretrained tensor. Weights
    listed without an enum build the model with the weights' builder arguments (and
    `num_classes`, so the builder makes the new head, also for embedding weights that
    have none), then the verified state dict is loaded: strictly, unless the head is new.
    """
    from zoo import surgery

    member, published = weights_or_published(weights, name)
    record = describe(name)
    # weights listed without an enum: the zoo builds the model for them and loads them
    entry = (next(w for w in record["weights"] if w["member"] == member.name)
             if member is not None and record["weights_enum"] is None else None)
    if published is not None and published.model != record["qualified_name"]:
        raise UsageError(f"published weights {published.spec} are for {published.model}, not {name}")
    hashes = _hashes(record)
    builder = _through_zoo(_builder(record), hashes)
    _check_surgery(record, num_classes=num_classes, in_channels=in_channels,
                   pretrained=member is not None or published is not None)
    first_conv, classifier = record["first_conv"], record["classifier"]

    if member is None and published is None:
        no_weights = {"weights": None} if record["weights_enum"] else {}  # torchvision's convention
        model = builder(**no_weights, **config, **({} if num_classes is None else {"num_classes": num_classes}))
        if in_channels is not None:
            surgery.replace_first_conv(model, first_conv, in_channels)
        return BuiltModel(model, None)

    categories = published.categories if published is not None else member.meta.get("categories")
    new_head = num_classes is not None and num_classes != len(categories or ())
    if entry is None and published is None:  # torchvision's convention: the builder loads its weights
        model = builder(weights=member, **config)
        pretrained = model.state_dict()  # holds the pretrained tensors after the modules are swapped
        if new_head:
            surgery.replace_head(model, classifier[0], num_classes)
            for path in classifier[1:]:  # auxiliary heads, which some builders drop with weights
                if surgery.has_submodule(model, path):
                    surgery.replace_head(model, path, num_classes)
    else:  # the builder makes the head (also where the weights have none: embeddings); the rest must load
        if published is not None:  # the head its categories imply, the file from the artifact store
            pretrained, args, what = _published_state_dict(published), published.builder_args, published.spec
        else:
            pretrained, args, what = _verified_state_dict(hashes, member, progress=True), entry["builder_args"], str(member)
        model = builder(**{**args, **config, **({"num_classes": num_classes} if new_head else {})})
        if not new_head:
            _load_strictly(model, pretrained, what)
    adapters = {}
    if in_channels is not None:
        surgery.replace_first_conv(model, first_conv, in_channels)
        adapters[f"{first_conv}.weight"] = surgery.adapt_conv_weight
    return BuiltModel(model, surgery.load_partial(model, pretrained, adapters))


def weights_or_published(weights: str | enum.Enum | None,
                         model: str) -> tuple[enum.Enum | None, PublishedWeights | None]:
    """The weights enum member `weights` names for `model`, or else the published weights it names
    (`zoo.publish`): plugin names win, and a published spec (``NS/NAME[:VERSION|@ALIAS]``, never
    with a ``.``) is looked up only when no plugin's weights have that name."""
    try:
        return get_weight(weights, model=model), None
    except UnknownWeightsError:
        if not is_spec(weights):
            raise
    if (remote := _service()) is not None:
        return None, remote.resolve(weights)
    with ensure_current().connect() as conn:
        return None, resolve(conn, weights)


def _published_state_dict(published: PublishedWeights) -> dict[str, Any]:
    """The state dict of published weights: the stored file's bytes (in client mode, the service's, fetched
    into the weights cache), read once and checked by SHA-256."""
    from zoo.fetch import Loaded
    from zoo.store import ArtifactStore
    from zoo.weights import state_dict_from

    if (remote := _service()) is not None:
        return state_dict_from(remote.weights_file(published))
    store = ArtifactStore.default()
    data = store.read(published.sha256)
    return state_dict_from(Loaded(store.path(published.sha256), published.sha256, len(data), data))


def _load_strictly(model: Any, state: dict[str, Any], what: str) -> None:
    """Load `state` into `model`, refusing (in one line) a file that does not fit it exactly."""
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"weights {what} do not fit the model built for them: {len(result.missing_keys)} tensor(s) missing "
            f"(e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:3]})")


def _check_surgery(record: Mapping[str, Any], *, num_classes: int | None, in_channels: int | None,
                   pretrained: bool) -> None:
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise UsageError(f"num_classes must be a positive integer, not {num_classes!r}")
    if in_channels is not None and (not isinstance(in_channels, int) or in_channels < 1):
        raise UsageError(f"in_channels must be a positive integer, not {in_channels!r}")
    name = record["qualified_name"].partition("/")[2]
    if num_classes is not None and pretrained and not record["classifier"]:
        raise UsageError(f"model {name} declares no classifier, so num_classes cannot change "
                         f"its pretrained head; build it with weights=None or set the head with zoo.surgery")
    if in_channels is not None and not record["first_conv"]:
        raise UsageError(f"model {name} declares no first convolution, so in_channels cannot adapt it")


def fetch_weights(
    weights: str | enum.Enum, *, model: str | None = None, offline: bool | None = None, progress: bool = True
) -> Path:
    """Fetch the file of `weights` (a `get_weight` name, or a model name for its default) and verify it.

    Sources in order: the file itself (``file://``), the cache, ``$ZOO_WEIGHTS_MIRROR``,
    the URL; `offline` (default ``$ZOO_OFFLINE``) never uses the network. Returns the
    verified file's path. The first verified download of a file whose full hash was
    not known records it in the catalog.
    """
    return _fetch(_weights_file(weights, model), offline=offline, progress=progress).path


def weights_path(weights: str | enum.Enum, *, model: str | None = None) -> Path:
    """Where the file of `weights` is used from (it may not have been fetched yet)."""
    from zoo.fetch import cached_path

    return cached_path(_weights_file(weights, model))


def verify_weights(names: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Re-hash weights files: those of `names`, or every cached file of the catalog's weights.

    One record per file: weights, path, status ("ok", "mismatch" or "missing"),
    sha256 (actual) and expected; never raises for a bad file, it reports it. In client
    mode only named weights are verified (the service's catalog is not walked).
    """
    from zoo.fetch import WeightsFile, cached_path, verify

    if names or _service() is not None:
        if not names:
            raise UsageError("with a registry service (ZOO_REGISTRY_URL=http://...), name the weights to verify")
        files = [(name, _weights_file(name, None)) for name in names]
    else:
        with ensure_current().connect() as conn:
            rows = list(conn.execute(select(weights).order_by(weights.c.id)))
            learned = _learned_files(conn, [w.url for w in rows])
            shown = _weights_names(conn, rows)
        files = [(shown[w.id], WeightsFile(w.url, w.sha256 or learned.get(w.url, _UNKNOWN)[0])) for w in rows]

    report = []
    for name, file in files:
        path = cached_path(file)
        record = {"weights": name, "path": str(path), "expected": file.sha256 or file.hash_prefix}
        if not path.is_file():
            if names:
                report.append({**record, "status": "missing", "sha256": None})
            continue
        try:
            fetched = verify(path, file)
            report.append({**record, "status": "ok", "sha256": fetched.sha256})
        except HashMismatchError as exc:
            report.append({**record, "status": "mismatch", "sha256": exc.actual})
    return report


# -- names ---------------------------------------------------------------------------


def _module_or_include(module: ModuleType | Patterns, include: Patterns) -> tuple[ModuleType | None, Patterns]:
    """torchvision's ``list_models(module, include, exclude)``, and the zoo's ``list_models(include)``."""
    if module is None or isinstance(module, ModuleType):
        return module, include
    if include is not None:
        raise UsageError(f"list_models takes a module first, not {excerpt(module)}; pass patterns as include=")
    return None, module


def _in_module(builder: str, module: ModuleType) -> bool:
    """Whether `builder` is defined in a module directly inside `module` (torchvision's rule)."""
    return builder.partition(":")[0].rpartition(".")[0] == module.__name__


def _service() -> Service | None:
    """The registry service's client in client mode (``ZOO_REGISTRY_URL=http://...``), else None."""
    from zoo.client import service

    return service()


def _preference() -> tuple[str, ...]:
    """``$ZOO_PREFER``: namespaces whose models answer bare names first, in order."""
    return tuple(p.strip().lower() for p in os.environ.get(PREFER_ENV, "").split(",") if p.strip())


class _Entry(NamedTuple):
    """How one model is named: its bare name, its plugin's namespace, whether the catalog gave it the
    bare name, and its builder."""

    id: int
    name: str
    namespace: str
    preferred: bool
    builder: str
    qualified: str  # PLUGIN/NAME


@dataclass(frozen=True)
class _Naming:
    """Every model's names in one catalog generation: entries and the name that reaches each
    model (by id), the ids of each bare name, (id, name) sorted by name, and the answers of
    the filters asked so far (the catalog cannot change within a generation)."""

    entries: dict[int, _Entry]
    shown: dict[int, str]
    by_name: dict[str, list[int]]
    ordered: list[tuple[int, str]]
    filtered: dict[tuple[Any, ...], list[int]] = field(default_factory=dict)


#: The naming of each (catalog, generation, preference) this process read, newest last.
_NAMINGS: dict[tuple[str, str, tuple[str, ...]], _Naming] = {}
_KEPT_NAMINGS = 4
_KEPT_FILTERS = 64  # filter answers kept per naming


def _naming(conn: Connection) -> _Naming:
    """The catalog's naming: read once per catalog generation (every sync makes a new one), then kept."""
    generation = conn.scalar(select(catalog_state.c.value).where(catalog_state.c.key == GENERATION_KEY))
    key = (conn.engine.url.render_as_string(), generation, _preference())
    if generation is not None and key in _NAMINGS:
        return _NAMINGS[key]
    entries = {row[0]: _Entry(*row, f"{row[2]}/{row[1]}")
               for row in conn.execute(_select(models.c.id, *_NAMING, models.c.builder))}
    by_name: dict[str, list[int]] = {}
    for entry in entries.values():
        by_name.setdefault(entry.name, []).append(entry.id)
    shown = {}
    for ids in by_name.values():
        answer = ids[0] if len(ids) == 1 else _answer([entries[i] for i in ids]).id
        shown.update((i, entries[i].name if i == answer else entries[i].qualified) for i in ids)
    naming = _Naming(entries, shown, by_name, sorted(shown.items(), key=lambda item: item[1]))
    if generation is not None:
        while len(_NAMINGS) >= _KEPT_NAMINGS:
            del _NAMINGS[next(iter(_NAMINGS))]
        _NAMINGS[key] = naming
    return naming


def _answer(candidates: list[Any]) -> Any:
    """Of the models with one bare name (rows with namespace and preferred), the one that answers it:
    ``$ZOO_PREFER``, else the catalog's choice."""
    order = _preference()
    return min(candidates, key=lambda r: (
        order.index(r.namespace) if r.namespace in order else len(order), not r.preferred, r.namespace))


def _model(conn: Connection, name: str, naming: _Naming | None = None) -> Row:
    """The model row `name` reaches (``PLUGIN/NAME`` or a bare name, see the module docstring), with its
    plugin's name, namespace, distribution and version."""
    if not isinstance(name, str):
        raise UsageError(f"a model name must be a string, not {type(name).__name__}")
    naming = naming or _naming(conn)
    found = _candidates(naming, name)
    if not found:
        raise UnknownModelError(name, list(naming.shown.values()))
    return _row_of(conn, _answer(found))


def _candidates(naming: _Naming, name: str) -> list[_Entry]:
    """The models `name` can mean: ``PLUGIN/NAME`` one at most, a bare name each of its providers."""
    namespace, _, bare = name.lower().rpartition("/")
    return [naming.entries[i] for i in naming.by_name.get(bare, ())
            if not namespace or naming.entries[i].namespace == namespace]


def _row_of(conn: Connection, entry: _Entry) -> Row:
    """The model row of `entry`, with its plugin's name, namespace, distribution and version."""
    return conn.execute(_select(models, plugins.c.name.label("plugin_name"), plugins.c.namespace,
                                plugins.c.distribution, plugins.c.version).where(models.c.id == entry.id)).one()


def _full_name(enum_name: str | None, member: str, model_name: str) -> str:
    """How a weights entry is named: ``Enum.MEMBER``, or ``MODEL.TAG`` for weights without an enum."""
    return f"{enum_name}.{member}" if enum_name else f"{model_name}.{member}"


def _weights_names(conn: Connection, rows: list[Row]) -> dict[int, str]:
    """Weights id -> full name, for weights rows."""
    shown = _naming(conn).shown
    return {w.id: _full_name(w.enum_name, w.member_name, shown[w.model_id]) for w in rows}


def _resolve_weights(conn: Connection, name: str, model: str | None) -> tuple[Row, Row]:
    """The weights row of a `get_weight` name, and its model's row."""
    owner, _, member = name.rpartition(".")
    if owner:
        return _weights_by_owner(conn, owner, member)
    if model is None:
        raise UsageError(f"weights {name!r} needs a model: write 'MODEL.{name}' or pass model=")
    found = _model(conn, model)
    return _member_of_model(conn, found, member), found


def _as_weights_name(name: str, model: str | None) -> tuple[str, str | None]:
    """A bare model name stands for its default weights."""
    return (name, model) if "." in name or model is not None else ("DEFAULT", name)


def _weights_by_owner(conn: Connection, owner: str, member: str) -> tuple[Row, Row]:
    """Weights ``[PLUGIN/]MODEL.TAG`` or ``[PLUGIN/]Enum.MEMBER``, and their model's row.

    A bare model name whose answering model lacks the tag falls back to the one
    other provider of that name that has it (timm's ``resnet50.a1_in1k`` beside
    torchvision's resnet50). An enum's class name means the enum of the plugin that
    answers for it (its models answer their names); another plugin's enum of the same
    name is reached only by ``PLUGIN/Enum.MEMBER``.
    """
    naming = _naming(conn)
    candidates = _candidates(naming, owner)
    if candidates:
        first = _answer(candidates)
        for entry in [first, *(c for c in candidates if c != first)]:
            model = _row_of(conn, entry)
            found = _member(_weights_of(conn, model), member)
            if found is not None:
                return found, model
        first_row = _row_of(conn, first)
        return _member_of_model(conn, first_row, member), first_row  # raises, listing its tags
    namespace, _, bare = owner.lower().rpartition("/")
    in_namespace = plugins.c.namespace == namespace if namespace else True
    enums = conn.execute(
        select(weights.c.model_id, plugins.c.namespace, models.c.preferred)
        .select_from(weights.join(models).join(plugins))
        .where(func.lower(weights.c.enum_name) == bare, in_namespace)
    ).all()
    if enums:
        chosen = _answer(enums).namespace
        model_ids = {e.model_id for e in enums if e.namespace == chosen}
        rows = conn.execute(select(weights).where(weights.c.model_id.in_(model_ids))).all()
        found = _member(rows, member)
        if found is not None:
            return found, _row_of(conn, naming.entries[found.model_id])
        known = [f"{owner}.{w.member_name}" for w in rows]
    else:
        known = [f"{e}.{m}" for e, m in conn.execute(
            select(weights.c.enum_name, weights.c.member_name).where(weights.c.enum_name.is_not(None))).all()]
    raise UnknownWeightsError(f"{owner}.{member}", known)


def _member_of_model(conn: Connection, model: Row, member: str) -> Row:
    rows = _weights_of(conn, model)
    found = _member(rows, member)
    if found is None:
        raise UnknownWeightsError(f"{model.name}.{member}", [f"{model.name}.{w.member_name}" for w in rows])
    return found


def _member(rows: Iterable[Row], member: str) -> Row | None:
    """The row of tag `member` (any case), or of the default for ``DEFAULT``."""
    member = member.lower()
    return next((w for w in rows if w.member_name.lower() == member or (member == "default" and w.is_default)), None)


def _weights_of(conn: Connection, model: Row) -> list[Row]:
    return list(conn.execute(select(weights).where(weights.c.model_id == model.id).order_by(weights.c.id)))


def _categories(conn: Connection, rows: list[Row]) -> dict[int, list[str]]:
    """Category list id -> the list, for the lists `rows` (weights) use."""
    ids = {w.categories_id for w in rows if w.categories_id is not None}
    if not ids:
        return {}
    return dict(conn.execute(select(category_lists.c.id, category_lists.c.categories)
                             .where(category_lists.c.id.in_(ids))).all())


def _meta(row: Row, categories: Mapping[int, list[str]]) -> dict[str, Any]:
    """A weights entry's meta as its plugin declared it: the shared category list put back."""
    if row.categories_id is None:
        return row.meta
    return {**row.meta, "categories": categories[row.categories_id]}


# -- weights files -------------------------------------------------------------------


def _weights_file(name: str | enum.Enum, model: str | None) -> WeightsFile:
    """The file of weights `name` (a `get_weight` name, a model name for its default, or a member) and its
    full hash, when the catalog knows it."""
    from zoo.fetch import WeightsFile

    if isinstance(name, enum.Enum):
        return WeightsFile(name.url, _known(name.url, {}))
    if (remote := _service()) is not None:
        owner, member = remote.weights_owner(*_as_weights_name(name, model))
        entry = next(w for w in remote.describe(owner)["weights"] if w["member"] == member)
        return WeightsFile(entry["url"], entry["sha256"])
    with ensure_current().connect() as conn:
        url = _resolve_weights(conn, *_as_weights_name(name, model))[0].url
        return WeightsFile(url, _known_sha256(conn, url))


def _known(url: str, hashes: Mapping[str, str]) -> str | None:
    """The full SHA-256 of the file at `url`: the catalog's; in client mode, from `hashes` (the service's
    record of the model being built)."""
    if _service() is not None:
        return hashes.get(url)
    with ensure_current().connect() as conn:
        return _known_sha256(conn, url)


def _known_sha256(conn: Connection, url: str) -> str | None:
    """The full SHA-256 of the file at `url`: declared by its plugin, or learned by verifying it."""
    declared = conn.scalar(select(weights.c.sha256).where(weights.c.url == url, weights.c.sha256.is_not(None)))
    return declared or _learned_files(conn, [url]).get(url, _UNKNOWN)[0]


def _learned_files(conn: Connection, urls: list[str]) -> dict[str, tuple[str, int]]:
    rows = conn.execute(select(weight_files).where(weight_files.c.url.in_(urls))) if urls else []
    return {row.url: (row.sha256, row.file_size) for row in rows}


def _fetch(file: WeightsFile, *, offline: bool | None, progress: bool,
           get: Callable[..., FetchedT] | None = None) -> FetchedT:
    """`file` by `get` (`fetch`, or `read_verified` for its bytes), checked against its hash; the first
    verified copy of a file without a known hash teaches it the local catalog."""
    from zoo.fetch import fetch

    fetched = (get or fetch)(file, offline=offline, progress=progress)
    if file.sha256 is None and _service() is None:
        def learn(conn: Connection) -> None:
            conn.execute(delete(weight_files).where(weight_files.c.url == file.url))
            conn.execute(weight_files.insert().values(url=file.url, sha256=fetched.sha256, file_size=fetched.size))

        remember(ensure_current(), f"the hash learned for {file.url}", learn)
    return fetched


def _verified_state_dict(hashes: Mapping[str, str], member: enum.Enum, progress: bool) -> dict[str, Any]:
    """The state dict of weights `member`, read from the very bytes whose hash was checked."""
    from zoo.fetch import WeightsFile, read_verified
    from zoo.weights import state_dict_from

    file = WeightsFile(member.url, _known(member.url, hashes))
    return state_dict_from(_fetch(file, offline=None, progress=progress, get=read_verified))


# -- filters -------------------------------------------------------------------------


def _filtered_ids(
    conn: Connection,
    naming: _Naming,
    task: str | None = None,
    plugin: str | None = None,
    pretrained: bool | None = None,
    max_params: int | None = None,
    min_metric: Mapping[str, float] | None = None,
) -> list[int]:
    """The ids of the models that pass the metadata filters (as SQL); every model without filters.

    A filter naming a task, plugin, metric or dataset the catalog does not have is
    refused; that is checked only when nothing passes, so a lookup that finds
    something pays for no check. Answers are kept for the catalog's generation.
    """
    _check_values(task, plugin, max_params, min_metric)
    if task is None and plugin is None and pretrained is None and max_params is None and not min_metric:
        return list(naming.entries)
    key = (task, plugin, pretrained, max_params, tuple(sorted((min_metric or {}).items())))
    if key not in naming.filtered:
        while len(naming.filtered) >= _KEPT_FILTERS:
            del naming.filtered[next(iter(naming.filtered))]
        naming.filtered[key] = _query_ids(conn, naming, task, plugin, pretrained, max_params, min_metric)
    return naming.filtered[key]


def _query_ids(conn: Connection, naming: _Naming, task: str | None, plugin: str | None, pretrained: bool | None,
               max_params: int | None, min_metric: Mapping[str, float] | None) -> list[int]:
    """`_filtered_ids`, asked of the database."""
    query = select(models.c.id)
    if task is not None:
        task = task.lower()
        by_weights = select(weights.c.model_id).where(weights.c.task == task)
        query = query.where(or_(models.c.task == task, models.c.id.in_(by_weights)))
    if plugin is not None:
        query = query.where(models.c.plugin_id.in_(select(plugins.c.id).where(_names_plugin(plugin))))
    if pretrained is not None:
        has_weights = exists().where(weights.c.model_id == models.c.id)
        query = query.where(has_weights if pretrained else ~has_weights)
    if max_params is not None:
        query = query.where(models.c.num_params <= max_params)
    for metric, minimum in (min_metric or {}).items():
        dataset, _, name = metric.rpartition(":")
        meets = (
            select(weights.c.model_id)
            .join(metrics)
            .where(func.lower(metrics.c.name) == name.lower(), metrics.c.value >= float(minimum))
        )
        if dataset:
            meets = meets.where(func.lower(metrics.c.dataset) == dataset.lower())
        query = query.where(models.c.id.in_(meets))
    ids = [i for i in conn.scalars(query) if i in naming.entries]
    if not ids:
        _check_known(conn, task, plugin, min_metric)
    return ids


def _names_plugin(plugin: str) -> Any:
    """The condition "this plugin row is `plugin`" (its namespace, entry-point or distribution name)."""
    wanted = plugin.lower()
    return or_(*(func.lower(c) == wanted for c in (plugins.c.namespace, plugins.c.name, plugins.c.distribution)))


def _check_values(task: Any, plugin: Any, max_params: int | None, min_metric: Mapping[str, float] | None) -> None:
    """Refuse filter values a query cannot compare with."""
    for what, value in (("task", task), ("plugin", plugin)):
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{what} must be a name, not {excerpt(value)}")
    if min_metric is not None and not (isinstance(min_metric, Mapping) and all(isinstance(k, str) for k in min_metric)):
        raise UsageError(f"min_metric must map metric names to minimums, e.g. {{'acc@1': 75}}, not {excerpt(min_metric)}")
    if max_params is not None and (
            not isinstance(max_params, int) or isinstance(max_params, bool) or not 0 <= max_params <= _MAX_COUNT):
        raise UsageError(f"max_params must be a whole number from 0 to {_MAX_COUNT}, not {excerpt(max_params)}")
    for metric, minimum in (min_metric or {}).items():
        if not isinstance(minimum, (int, float)) or isinstance(minimum, bool) or not math.isfinite(minimum):
            raise UsageError(f"minimum of metric {excerpt(metric)} must be a finite number, not {excerpt(minimum)}")


def _check_known(conn: Connection, task: str | None, plugin: str | None,
                 min_metric: Mapping[str, float] | None) -> None:
    """Refuse a filter that could only ever match nothing by mistake: an unknown task, plugin,
    metric, or a dataset without that metric."""
    if task is not None:
        tasks = {*conn.scalars(select(models.c.task).distinct()),
                 *conn.scalars(select(weights.c.task).distinct().where(weights.c.task.is_not(None)))}
        if task not in tasks:
            raise UsageError(f"unknown task {excerpt(task)}; tasks in the catalog: {', '.join(sorted(tasks))}")
    if plugin is not None and not conn.scalar(select(exists().where(_names_plugin(plugin)))):
        names = conn.scalars(select(plugins.c.namespace)).all()
        raise UsageError(f"unknown plugin {excerpt(plugin)}; plugins: {', '.join(sorted(names))}")
    known = conn.execute(select(metrics.c.dataset, metrics.c.name).distinct()).all() if min_metric else []
    for metric in min_metric or {}:
        dataset, _, name = metric.lower().rpartition(":")
        datasets = sorted(d for d, n in known if n.lower() == name)
        if not datasets:
            names = sorted({n for _, n in known})
            raise UsageError(f"unknown metric {excerpt(metric)}; metrics in the catalog: {', '.join(names) or 'none'}")
        if dataset and dataset not in {d.lower() for d in datasets}:
            raise UsageError(f"no dataset of metric {excerpt(metric)}; datasets with {name}: {', '.join(datasets)}")


def _matcher(include: Patterns, exclude: Patterns) -> Callable[[_Entry], bool]:
    """Whether a model matches an `include` pattern (any, without one) and no `exclude` one.

    A pattern with a ``/`` is matched against ``PLUGIN/NAME``, others against the bare name.
    """
    includes, excludes = _compiled(include), _compiled(exclude)
    if includes is None and excludes is None:
        return lambda entry: True
    include_bare, include_qualified = includes or (None, None)
    exclude_bare, exclude_qualified = excludes or (_never, _never)
    return lambda entry: (
        (include_bare is None or include_bare(entry.name) or include_qualified(entry.qualified))
        and not (exclude_bare(entry.name) or exclude_qualified(entry.qualified)))


def _never(name: str) -> None:
    return None


def _compiled(patterns: Patterns) -> tuple[Callable[[str], Any], Callable[[str], Any]] | None:
    """`patterns` as two matchers, for bare and for qualified names; None without patterns."""
    if patterns is None:
        return None
    items = [patterns] if isinstance(patterns, str) else list(patterns)
    if not items:
        return None
    if not all(isinstance(p, str) for p in items):
        raise UsageError(f"patterns must be strings such as 'resnet*', not {excerpt(patterns)}")
    bare = tuple(p.lower() for p in items if "/" not in p)
    qualified = tuple(p.lower() for p in items if "/" in p)
    return (_regex(bare).match if bare else _never), (_regex(qualified).match if qualified else _never)


@lru_cache(maxsize=64)
def _regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regular expression matching any of the fnmatch `patterns`."""
    return re.compile("|".join(translate(p) for p in patterns))
