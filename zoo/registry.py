"""The public lookups: torchvision's model API, answered from the catalog.

`list_models`, `summarize_models`, `describe` and `list_plugins` only read the
database (SQLAlchemy Core, to keep a cold ``zoo list`` light); the others also
import the model's builder or weights enum, and so torch and the plugin.
Names are case-insensitive.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from functools import partial, wraps
from typing import Any, TypeVar

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, Row, Select, delete, exists, func, select

from zoo.catalog.engine import remember
from zoo.catalog.fingerprint import ensure_current
from zoo.catalog.tables import metrics, models, plugins, weight_files, weights
from zoo.errors import HashMismatchError, UnknownModelError, UnknownWeightsError, UsageError, excerpt
from zoo.fetch import Fetched, WeightsFile, cached_path, fetch, read_verified, verify
from zoo.targets import load_target, target_of

Patterns = str | Iterable[str] | None
FetchedT = TypeVar("FetchedT", bound=Fetched)
_UNKNOWN = (None, None)  # sha256 and size of a file never verified
_MAX_COUNT = 2**63 - 1  # the largest number a BIGINT column compares with


def list_models(
    include: Patterns = None,
    exclude: Patterns = None,
    *,
    task: str | None = None,
    plugin: str | None = None,
    pretrained: bool | None = None,
    max_params: int | None = None,
    min_metric: Mapping[str, float] | None = None,
) -> list[str]:
    """Sorted names of the registered models that match.

    `include` and `exclude` are fnmatch patterns (a string or a list), as in
    torchvision. The filters run as SQL: `task`; `plugin` (plugin or distribution
    name); `pretrained` (has weights or not); `max_params`; `min_metric`, e.g.
    ``{"acc@1": 75}`` or ``{"ImageNet-1K:acc@1": 75}`` (metric on one dataset), met
    by at least one of the model's weights.
    """
    with ensure_current().connect() as conn:
        query = _filtered(conn, select(models.c.name), task, plugin, pretrained, max_params, min_metric)
        names = conn.scalars(query).all()
    return sorted(_matching(names, include, exclude))


def summarize_models(
    include: Patterns = None,
    exclude: Patterns = None,
    **filters: Any,
) -> list[dict[str, Any]]:
    """Like `list_models` (same arguments), but one summary per model, as plain data:
    name, task, plugin, num_params, weights (full names) and default_weights."""
    with ensure_current().connect() as conn:
        query = select(models.c.id, models.c.name, models.c.task, models.c.num_params,
                       plugins.c.name.label("plugin")).join(plugins)
        rows = conn.execute(_filtered(conn, query, **filters)).all()
        by_model: dict[int, list[Row]] = {}
        names = select(weights.c.model_id, weights.c.enum_name, weights.c.member_name, weights.c.is_default)
        for w in conn.execute(names.order_by(weights.c.id)):
            by_model.setdefault(w.model_id, []).append(w)
    by_name = {row.name: row for row in rows}
    return [
        {
            "name": row.name,
            "task": row.task,
            "plugin": row.plugin,
            "num_params": row.num_params,
            "weights": [_full_name(w) for w in by_model.get(row.id, [])],
            "default_weights": next((_full_name(w) for w in by_model.get(row.id, []) if w.is_default), None),
        }
        for row in (by_name[name] for name in sorted(_matching(by_name, include, exclude)))
    ]


def describe(name: str) -> dict[str, Any]:
    """The catalog record of a model and its weights, as plain data."""
    with ensure_current().connect() as conn:
        model = _model(conn, name)
        plugin = conn.execute(select(plugins).where(plugins.c.id == model.plugin_id)).one()
        rows = _weights_of(conn, model)
        learned = _learned_files(conn, [w.url for w in rows])
    default = next((w for w in rows if w.is_default), None)
    return {
        "name": model.name,
        "task": model.task,
        "plugin": {"name": plugin.name, "distribution": plugin.distribution, "version": plugin.version},
        "builder": model.builder,
        "weights_enum": model.weights_enum,
        "num_params": model.num_params,
        "tags": model.tags,
        "metadata": model.meta,
        "classifier": model.classifier,
        "first_conv": model.first_conv,
        "default_weights": _full_name(default) if default else None,
        "weights": [
            {
                "name": _full_name(w),
                "enum": w.enum_name,
                "member": w.member_name,
                "is_default": w.is_default,
                "url": w.url,
                "sha256": w.sha256 or learned.get(w.url, _UNKNOWN)[0],
                "file_size": w.file_size or learned.get(w.url, _UNKNOWN)[1],
                "transforms": w.transforms,
                "meta": w.meta,
            }
            for w in rows
        ],
    }


def list_plugins() -> list[dict[str, Any]]:
    """Every plugin the catalog was synced from: name, distribution, version, status, error, model count."""
    with ensure_current().connect() as conn:
        counts = dict(conn.execute(select(models.c.plugin_id, func.count()).group_by(models.c.plugin_id)).all())
        rows = conn.execute(select(plugins)).all()
    return [
        {
            "name": p.name,
            "distribution": p.distribution,
            "version": p.version,
            "status": p.status,
            "models": counts.get(p.id, 0),
            "error": p.error,
        }
        for p in sorted(rows, key=lambda p: p.name)
    ]


def get_model_builder(name: str) -> Callable[..., Any]:
    """The function that builds model `name` (imports its plugin); the weights it loads go through the zoo."""
    engine = ensure_current()
    with engine.connect() as conn:
        target = _model(conn, name).builder
    return _through_zoo(load_target(target), engine)


def _through_zoo(builder: Callable[..., Any], engine: Engine) -> Callable[..., Any]:
    """`builder`, except that every state dict it asks for (its weights, torchvision's backbone
    weights) is read and verified by the zoo: torchvision's own loader never sees a file."""

    @wraps(builder)
    def build(*args: Any, **kwargs: Any) -> Any:
        from zoo.weights import loading_through

        with loading_through(partial(_verified_state_dict, engine)):
            return builder(*args, **kwargs)

    return build


def get_model_weights(name: str | Callable[..., Any]) -> type[enum.Enum]:
    """The weights enum class of a model, given its name or its builder."""
    with ensure_current().connect() as conn:
        if callable(name):
            model = conn.execute(select(models).where(models.c.builder == target_of(name))).first()
            if model is None:
                raise UsageError(f"{target_of(name)} is not the builder of any registered model")
        else:
            model = _model(conn, name)
    if model.weights_enum is None:
        raise UnknownWeightsError(f"{model.name}.DEFAULT", [])
    return load_target(model.weights_enum)


def get_weight(name: str | enum.Enum | None, *, model: str | None = None) -> enum.Enum | None:
    """A weights enum member from any of the names torchvision users write.

    Accepts ``"ResNet50_Weights.IMAGENET1K_V2"``, ``"resnet50.IMAGENET1K_V2"``,
    ``"resnet50.DEFAULT"``, a bare member name or ``"DEFAULT"`` together with
    `model`, an enum member (returned as is) and None.
    """
    if name is None or isinstance(name, enum.Enum):
        return name
    if not isinstance(name, str):
        raise UsageError(f"weights must be a name, an enum member or None, not {type(name).__name__}")
    with ensure_current().connect() as conn:
        row, enum_target = _resolve_weights(conn, name, model)
    return load_target(enum_target)[row.member_name]


@dataclass(frozen=True)
class BuiltModel:
    """A model from `build_model`, and what happened to the pretrained tensors (None without weights)."""

    model: Any
    report: Any  # zoo.surgery.LoadReport | None


def get_model(name: str, *, weights: str | enum.Enum | None = None, **config: Any) -> Any:
    """Build model `name`, with `weights` (any form `get_weight` accepts) and builder `config`.

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
    report of `zoo.surgery.load_partial` accounts for every pretrained tensor.
    """
    from zoo import surgery

    member = get_weight(weights, model=name)
    engine = ensure_current()
    with engine.connect() as conn:
        row = _model(conn, name)
    builder = _through_zoo(load_target(row.builder), engine)
    _check_surgery(row, num_classes=num_classes, in_channels=in_channels, pretrained=member is not None)

    if member is None:
        model = builder(weights=None, **config, **({} if num_classes is None else {"num_classes": num_classes}))
        if in_channels is not None:
            surgery.replace_first_conv(model, row.first_conv, in_channels)
        return BuiltModel(model, None)

    model = builder(weights=member, **config)
    pretrained = model.state_dict()  # holds the pretrained tensors after the modules are swapped
    if num_classes is not None and num_classes != len(member.meta.get("categories") or ()):
        surgery.replace_head(model, row.classifier[0], num_classes)
        for path in row.classifier[1:]:  # auxiliary heads, which some builders drop with weights
            if surgery.has_submodule(model, path):
                surgery.replace_head(model, path, num_classes)
    adapters = {}
    if in_channels is not None:
        surgery.replace_first_conv(model, row.first_conv, in_channels)
        adapters[f"{row.first_conv}.weight"] = surgery.adapt_conv_weight
    return BuiltModel(model, surgery.load_partial(model, pretrained, adapters))


def _check_surgery(row: Row, *, num_classes: int | None, in_channels: int | None, pretrained: bool) -> None:
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise UsageError(f"num_classes must be a positive integer, not {num_classes!r}")
    if in_channels is not None and (not isinstance(in_channels, int) or in_channels < 1):
        raise UsageError(f"in_channels must be a positive integer, not {in_channels!r}")
    if num_classes is not None and pretrained and not row.classifier:
        raise UsageError(f"model {row.name} declares no classifier, so num_classes cannot change "
                         f"its pretrained head; build it with weights=None or set the head with zoo.surgery")
    if in_channels is not None and not row.first_conv:
        raise UsageError(f"model {row.name} declares no first convolution, so in_channels cannot adapt it")


def fetch_weights(
    weights: str | enum.Enum, *, model: str | None = None, offline: bool | None = None, progress: bool = True
) -> Path:
    """Fetch the file of `weights` (a `get_weight` name, or a model name for its default) and verify it.

    Sources in order: the file itself (``file://``), the cache, ``$ZOO_WEIGHTS_MIRROR``,
    the URL; `offline` (default ``$ZOO_OFFLINE``) never uses the network. Returns the
    verified file's path. The first verified download of a file whose full hash was
    not known records it in the catalog.
    """
    engine = ensure_current()
    with engine.connect() as conn:
        url = _url_of(conn, weights, model)
    return _fetch_url(engine, url, offline=offline, progress=progress).path


def weights_path(weights: str | enum.Enum, *, model: str | None = None) -> Path:
    """Where the file of `weights` is used from (it may not have been fetched yet)."""
    with ensure_current().connect() as conn:
        url = _url_of(conn, weights, model)
        return cached_path(WeightsFile(url, _known_sha256(conn, url)))


def verify_weights(names: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Re-hash weights files: those of `names`, or every cached file of the catalog's weights.

    One record per file: weights, path, status ("ok", "mismatch" or "missing"),
    sha256 (actual) and expected; never raises for a bad file, it reports it.
    """
    with ensure_current().connect() as conn:
        if names:
            rows = [_resolve_weights(conn, *_as_weights_name(n, None))[0] for n in names]
        else:
            rows = list(conn.execute(select(weights).order_by(weights.c.id)))
        learned = _learned_files(conn, [w.url for w in rows])
    report = []
    for w in rows:
        file = WeightsFile(w.url, w.sha256 or learned.get(w.url, _UNKNOWN)[0])
        path = cached_path(file)
        record = {"weights": _full_name(w), "path": str(path), "expected": file.sha256 or file.hash_prefix}
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


def _resolve_weights(conn: Connection, name: str, model: str | None) -> tuple[Row, str]:
    """The weights row of a `get_weight` name, and its enum's import target."""
    owner, _, member = name.rpartition(".")
    if owner:
        return _weights_by_owner(conn, owner, member)
    if model is None:
        raise UsageError(f"weights {name!r} needs a model: write 'MODEL.{name}' or pass model=")
    found = _model(conn, model)
    return _member_of_model(conn, found, member), found.weights_enum


def _as_weights_name(name: str, model: str | None) -> tuple[str, str | None]:
    """A bare model name stands for its default weights."""
    return (name, model) if "." in name or model is not None else ("DEFAULT", name)


def _url_of(conn: Connection, weights_name: str | enum.Enum, model: str | None) -> str:
    if isinstance(weights_name, enum.Enum):
        return weights_name.url
    return _resolve_weights(conn, *_as_weights_name(weights_name, model))[0].url


def _known_sha256(conn: Connection, url: str) -> str | None:
    """The full SHA-256 of the file at `url`: declared by its plugin, or learned by verifying it."""
    declared = conn.scalar(select(weights.c.sha256).where(weights.c.url == url, weights.c.sha256.is_not(None)))
    return declared or _learned_files(conn, [url]).get(url, _UNKNOWN)[0]


def _learned_files(conn: Connection, urls: list[str]) -> dict[str, tuple[str, int]]:
    rows = conn.execute(select(weight_files).where(weight_files.c.url.in_(urls))) if urls else []
    return {row.url: (row.sha256, row.file_size) for row in rows}


def _fetch_url(engine: Engine, url: str, *, offline: bool | None, progress: bool,
               get: Callable[..., FetchedT] = fetch) -> FetchedT:
    """The file at `url` by `get` (`fetch`, or `read_verified` for its bytes), checked against the
    hash the catalog knows; the first verified copy of a file without one teaches it the catalog."""
    with engine.connect() as conn:
        known = _known_sha256(conn, url)
    fetched = get(WeightsFile(url, known), offline=offline, progress=progress)
    if known is None:
        def learn(conn: Connection) -> None:
            conn.execute(delete(weight_files).where(weight_files.c.url == url))
            conn.execute(weight_files.insert().values(url=url, sha256=fetched.sha256, file_size=fetched.size))

        remember(engine, f"the hash learned for {url}", learn)
    return fetched


def _verified_state_dict(engine: Engine, member: enum.Enum, progress: bool) -> dict[str, Any]:
    """The state dict of weights `member`, read from the very bytes whose hash was checked."""
    from zoo.weights import state_dict_from

    return state_dict_from(_fetch_url(engine, member.url, offline=None, progress=progress, get=read_verified))


def _model(conn: Connection, name: str) -> Row:
    model = conn.execute(select(models).where(models.c.name == name.lower())).first()
    if model is None:
        raise UnknownModelError(name, conn.scalars(select(models.c.name)).all())
    return model


def _weights_of(conn: Connection, model: Row) -> list[Row]:
    return list(conn.execute(select(weights).where(weights.c.model_id == model.id).order_by(weights.c.id)))


def _member_of_model(conn: Connection, model: Row, member: str) -> Row:
    rows = _weights_of(conn, model)
    found = _member(rows, member)
    if found is None:
        raise UnknownWeightsError(f"{model.name}.{member}", [f"{model.name}.{w.member_name}" for w in rows])
    return found


def _weights_by_owner(conn: Connection, owner: str, member: str) -> tuple[Row, str]:
    """Weights named ``<model>.<member>`` or ``<enum>.<member>``, and their enum's import target."""
    model = conn.execute(select(models).where(models.c.name == owner.lower())).first()
    if model is not None:
        return _member_of_model(conn, model, member), model.weights_enum
    rows = conn.execute(
        select(weights, models.c.weights_enum.label("enum_target"))
        .join(models)
        .where(func.lower(weights.c.enum_name) == owner.lower())
    ).all()
    found = _member(rows, member)
    if found is None:
        known = conn.execute(select(weights.c.enum_name, weights.c.member_name)).all()
        raise UnknownWeightsError(f"{owner}.{member}", [f"{e}.{m}" for e, m in known])
    return found, found.enum_target


def _member(rows: Iterable[Row], member: str) -> Row | None:
    """The row of enum member `member` (any case), or of the default for ``DEFAULT``."""
    member = member.lower()
    return next((w for w in rows if w.member_name.lower() == member or (member == "default" and w.is_default)), None)


def _full_name(row: Row) -> str:
    return f"{row.enum_name}.{row.member_name}"


def _filtered(
    conn: Connection,
    query: Select,
    task: str | None = None,
    plugin: str | None = None,
    pretrained: bool | None = None,
    max_params: int | None = None,
    min_metric: Mapping[str, float] | None = None,
) -> Select:
    """`query` (over the models table) narrowed by the metadata filters, as SQL."""
    if task is not None:
        tasks = conn.scalars(select(models.c.task).distinct()).all()
        if task.lower() not in tasks:
            raise UsageError(f"unknown task {excerpt(task)}; tasks in the catalog: {', '.join(sorted(tasks))}")
        query = query.where(models.c.task == task.lower())
    if plugin is not None:
        names = conn.execute(select(plugins.c.name, plugins.c.distribution)).all()
        if plugin.lower() not in {n.lower() for row in names for n in row if n}:
            raise UsageError(f"unknown plugin {excerpt(plugin)}; plugins: {', '.join(sorted(n for n, _ in names))}")
        owned = select(plugins.c.id).where(
            (func.lower(plugins.c.name) == plugin.lower()) | (func.lower(plugins.c.distribution) == plugin.lower())
        )
        query = query.where(models.c.plugin_id.in_(owned))
    if pretrained is not None:
        has_weights = exists().where(weights.c.model_id == models.c.id)
        query = query.where(has_weights if pretrained else ~has_weights)
    if max_params is not None:
        if not isinstance(max_params, int) or isinstance(max_params, bool) or not 0 <= max_params <= _MAX_COUNT:
            raise UsageError(f"max_params must be a whole number from 0 to {_MAX_COUNT}, not {excerpt(max_params)}")
        query = query.where(models.c.num_params <= max_params)
    if min_metric:
        _check_metrics(conn, min_metric)
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
    return query


def _check_metrics(conn: Connection, min_metric: Mapping[str, float]) -> None:
    """Refuse a `min_metric` filter that could only ever match nothing by mistake."""
    known = conn.execute(select(metrics.c.dataset, metrics.c.name).distinct()).all()
    for metric, minimum in min_metric.items():
        if not isinstance(minimum, (int, float)) or isinstance(minimum, bool) or not math.isfinite(minimum):
            raise UsageError(f"minimum of metric {excerpt(metric)} must be a finite number, not {excerpt(minimum)}")
        dataset, _, name = metric.lower().rpartition(":")
        datasets = sorted(d for d, n in known if n.lower() == name)
        if not datasets:
            names = sorted({n for _, n in known})
            raise UsageError(f"unknown metric {excerpt(metric)}; metrics in the catalog: {', '.join(names) or 'none'}")
        if dataset and dataset not in {d.lower() for d in datasets}:
            raise UsageError(f"no dataset of metric {excerpt(metric)}; datasets with {name}: {', '.join(datasets)}")


def _matching(names: Iterable[str], include: Patterns, exclude: Patterns) -> list[str]:
    """The names that match an `include` pattern (all, without one) and no `exclude` pattern."""
    includes, excludes = _patterns(include), _patterns(exclude)
    return [
        name for name in names
        if (not includes or any(fnmatchcase(name, p) for p in includes))
        and not any(fnmatchcase(name, p) for p in excludes)
    ]


def _patterns(patterns: Patterns) -> list[str]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    return [p.lower() for p in patterns]
