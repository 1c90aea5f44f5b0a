"""The public lookups: torchvision's model API, answered from the catalog.

`list_models` and `describe` read only the database; the others import a model's
builder or weights enum, and so torch and the plugin, when they are called.
Names are case-insensitive.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session, selectinload

from zoo.catalog.schema import MetricRow, ModelRow, PluginRow, WeightsRow
from zoo.catalog.sync import ensure_current
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
    ``{"acc@1": 75}``, met by at least one of the model's weights.
    """
    with Session(ensure_current()) as session:
        query = _filtered(session, task, plugin, pretrained, max_params, min_metric)
        names = session.scalars(query.with_only_columns(ModelRow.name)).all()
    return sorted(_matching(names, include, exclude))


def find_models(
    include: Patterns = None,
    exclude: Patterns = None,
    *,
    task: str | None = None,
    plugin: str | None = None,
    pretrained: bool | None = None,
    max_params: int | None = None,
    min_metric: Mapping[str, float] | None = None,
) -> list[ModelRow]:
    """Like `list_models`, but the catalog rows (with plugin and weights loaded), sorted by name."""
    with Session(ensure_current()) as session:
        query = _filtered(session, task, plugin, pretrained, max_params, min_metric)
        rows = session.scalars(
            query.options(selectinload(ModelRow.plugin), selectinload(ModelRow.weights))
        ).all()
    by_name = {row.name: row for row in rows}
    return [by_name[name] for name in sorted(_matching(by_name, include, exclude))]


def describe(name: str) -> dict[str, Any]:
    """The catalog record of a model and its weights, as plain data."""
    with Session(ensure_current()) as session:
        model = _model(session, name)
        default = next((w for w in model.weights if w.is_default), None)
        return {
            "name": model.name,
            "task": model.task,
            "plugin": {"name": model.plugin.name, "distribution": model.plugin.distribution,
                       "version": model.plugin.version},
            "builder": model.builder,
            "weights_enum": model.weights_enum,
            "num_params": model.num_params,
            "tags": model.tags,
            "metadata": model.meta,
            "default_weights": default.full_name if default else None,
            "weights": [
                {
                    "name": w.full_name,
                    "enum": w.enum_name,
                    "member": w.member_name,
                    "is_default": w.is_default,
                    "url": w.url,
                    "sha256": w.sha256,
                    "file_size": w.file_size,
                    "transforms": w.transforms,
                    "meta": w.meta,
                }
                for w in model.weights
            ],
        }


def get_model_builder(name: str) -> Callable[..., Any]:
    """The function that builds model `name` (imports its plugin)."""
    with Session(ensure_current()) as session:
        target = _model(session, name).builder
    return load_target(target)


def get_model_weights(name: str | Callable[..., Any]) -> type[enum.Enum]:
    """The weights enum class of a model, given its name or its builder."""
    with Session(ensure_current()) as session:
        if callable(name):
            model = session.scalars(select(ModelRow).where(ModelRow.builder == target_of(name))).first()
            if model is None:
                raise UsageError(f"{target_of(name)} is not the builder of any registered model")
        else:
            model = _model(session, name)
        if model.weights_enum is None:
            raise UnknownWeightsError(f"{model.name}.DEFAULT", [])
        target = model.weights_enum
    return load_target(target)


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
    with Session(ensure_current()) as session:
        if not owner:
            if model is None:
                raise UsageError(f"weights {name!r} needs a model: write 'MODEL.{name}' or pass model=")
            row = _weights_of_model(session, _model(session, model), member)
        else:
            row = _weights_by_owner(session, owner, member)
        enum_target, member_name = row.model.weights_enum, row.member_name
    return load_target(enum_target)[member_name]


def get_model(name: str, *, weights: str | enum.Enum | None = None, **config: Any) -> Any:
    """Build model `name`, with `weights` (any form `get_weight` accepts) and builder `config`."""
    member = get_weight(weights, model=name)
    return get_model_builder(name)(weights=member, **config)


def _model(session: Session, name: str) -> ModelRow:
    model = session.scalars(select(ModelRow).where(ModelRow.name == name.lower())).first()
    if model is None:
        raise UnknownModelError(name, session.scalars(select(ModelRow.name)).all())
    return model


def _weights_of_model(session: Session, model: ModelRow, member: str) -> WeightsRow:
    found = _member(model.weights, member)
    if found is None:
        raise UnknownWeightsError(f"{model.name}.{member}", [f"{model.name}.{w.member_name}" for w in model.weights])
    return found


def _weights_by_owner(session: Session, owner: str, member: str) -> WeightsRow:
    """Weights named ``<model>.<member>`` or ``<enum>.<member>``."""
    model = session.scalars(select(ModelRow).where(ModelRow.name == owner.lower())).first()
    if model is not None:
        return _weights_of_model(session, model, member)
    rows = session.scalars(select(WeightsRow).where(func.lower(WeightsRow.enum_name) == owner.lower())).all()
    found = _member(rows, member)
    if found is None:
        known = session.execute(select(WeightsRow.enum_name, WeightsRow.member_name)).all()
        raise UnknownWeightsError(f"{owner}.{member}", [f"{e}.{m}" for e, m in known])
    return found


def _member(rows: Iterable[WeightsRow], member: str) -> WeightsRow | None:
    """The row of enum member `member` (any case), or of the default for ``DEFAULT``."""
    member = member.lower()
    return next((w for w in rows if w.member_name.lower() == member or (member == "default" and w.is_default)), None)


def _filtered(
    session: Session,
    task: str | None,
    plugin: str | None,
    pretrained: bool | None,
    max_params: int | None,
    min_metric: Mapping[str, float] | None,
) -> Select[tuple[ModelRow]]:
    query = select(ModelRow)
    if task is not None:
        tasks = session.scalars(select(ModelRow.task).distinct()).all()
        if task.lower() not in tasks:
            raise UsageError(f"unknown task {task!r}; tasks in the catalog: {', '.join(sorted(tasks))}")
        query = query.where(ModelRow.task == task.lower())
    if plugin is not None:
        names = session.execute(select(PluginRow.name, PluginRow.distribution)).all()
        if plugin.lower() not in {n.lower() for row in names for n in row if n}:
            raise UsageError(f"unknown plugin {plugin!r}; plugins: {', '.join(sorted(n for n, _ in names))}")
        query = query.join(ModelRow.plugin).where(
            (func.lower(PluginRow.name) == plugin.lower()) | (func.lower(PluginRow.distribution) == plugin.lower())
        )
    if pretrained is not None:
        has_weights = exists().where(WeightsRow.model_id == ModelRow.id)
        query = query.where(has_weights if pretrained else ~has_weights)
    if max_params is not None:
        query = query.where(ModelRow.num_params <= max_params)
    for metric, minimum in (min_metric or {}).items():
        meets = (
            select(WeightsRow.model_id)
            .join(WeightsRow.metrics)
            .where(func.lower(MetricRow.name) == metric.lower(), MetricRow.value >= float(minimum))
        )
        query = query.where(ModelRow.id.in_(meets))
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
