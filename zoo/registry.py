"""The public lookups: torchvision's model API, answered from the catalog.

`list_models`, `summarize_models`, `describe` and `list_plugins` only read the
database (SQLAlchemy Core, to keep a cold ``zoo list`` light); the others also
import the model's builder or weights enum, and so torch and the plugin.
Names are case-insensitive.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import Connection, Row, Select, exists, func, select

from zoo.catalog.fingerprint import ensure_current
from zoo.catalog.tables import metrics, models, plugins, weights
from zoo.errors import UnknownModelError, UnknownWeightsError, UsageError
from zoo.targets import load_target, target_of

Patterns = str | Iterable[str] | None


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
        "default_weights": _full_name(default) if default else None,
        "weights": [
            {
                "name": _full_name(w),
                "enum": w.enum_name,
                "member": w.member_name,
                "is_default": w.is_default,
                "url": w.url,
                "sha256": w.sha256,
                "file_size": w.file_size,
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
    """The function that builds model `name` (imports its plugin)."""
    with ensure_current().connect() as conn:
        target = _model(conn, name).builder
    return load_target(target)


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
    owner, _, member = name.rpartition(".")
    with ensure_current().connect() as conn:
        if owner:
            row, enum_target = _weights_by_owner(conn, owner, member)
        elif model is not None:
            found = _model(conn, model)
            row, enum_target = _member_of_model(conn, found, member), found.weights_enum
        else:
            raise UsageError(f"weights {name!r} needs a model: write 'MODEL.{name}' or pass model=")
    return load_target(enum_target)[row.member_name]


def get_model(name: str, *, weights: str | enum.Enum | None = None, **config: Any) -> Any:
    """Build model `name`, with `weights` (any form `get_weight` accepts) and builder `config`."""
    member = get_weight(weights, model=name)
    return get_model_builder(name)(weights=member, **config)


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
            raise UsageError(f"unknown task {task!r}; tasks in the catalog: {', '.join(sorted(tasks))}")
        query = query.where(models.c.task == task.lower())
    if plugin is not None:
        names = conn.execute(select(plugins.c.name, plugins.c.distribution)).all()
        if plugin.lower() not in {n.lower() for row in names for n in row if n}:
            raise UsageError(f"unknown plugin {plugin!r}; plugins: {', '.join(sorted(n for n, _ in names))}")
        owned = select(plugins.c.id).where(
            (func.lower(plugins.c.name) == plugin.lower()) | (func.lower(plugins.c.distribution) == plugin.lower())
        )
        query = query.where(models.c.plugin_id.in_(owned))
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
    return query


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
