"""Typed ORM classes over the catalog's tables (`zoo.catalog.tables`), used to write it.

A sync builds one object graph per plugin (plugin -> models -> weights -> metrics,
and its failed models) and lets the ORM insert it with its foreign keys.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import DeclarativeBase, Mapped, relationship

from zoo.catalog import tables


class Base(DeclarativeBase):
    metadata = tables.metadata


class PluginRow(Base):
    """An installed plugin and how loading it went."""

    __table__ = tables.plugins

    id: Mapped[int]
    name: Mapped[str]
    namespace: Mapped[str]
    target: Mapped[str]
    distribution: Mapped[str | None]
    version: Mapped[str | None]
    status: Mapped[str]
    error: Mapped[str | None]
    fingerprint: Mapped[str]
    synced_at: Mapped[datetime]
    models: Mapped[list[ModelRow]] = relationship(back_populates="plugin", cascade="all, delete-orphan")
    failures: Mapped[list[ModelFailureRow]] = relationship(cascade="all, delete-orphan")


class ModelRow(Base):
    """A registered model: its builder, weights enum, task and metadata."""

    __table__ = tables.models

    id: Mapped[int]
    name: Mapped[str]
    plugin_id: Mapped[int]
    preferred: Mapped[bool]
    task: Mapped[str]
    builder: Mapped[str]
    weights_enum: Mapped[str | None]
    num_params: Mapped[int | None]
    tags: Mapped[list[str]]
    meta: Mapped[dict[str, Any]]
    classifier: Mapped[list[str]]
    first_conv: Mapped[str | None]
    builder_args: Mapped[dict[str, Any]]
    input_size: Mapped[list[int] | None]
    plugin: Mapped[PluginRow] = relationship(back_populates="models")
    weights: Mapped[list[WeightsRow]] = relationship(back_populates="model", cascade="all, delete-orphan")


class WeightsRow(Base):
    """One pretrained weights entry of a model (a member of its weights enum, or a tag)."""

    __table__ = tables.weights

    id: Mapped[int]
    model_id: Mapped[int]
    enum_name: Mapped[str | None]
    member_name: Mapped[str]
    url: Mapped[str]
    sha256: Mapped[str | None]
    file_size: Mapped[int | None]
    transforms: Mapped[dict[str, Any] | None]
    meta: Mapped[dict[str, Any]]
    is_default: Mapped[bool]
    builder_args: Mapped[dict[str, Any]]
    task: Mapped[str | None]
    categories_id: Mapped[int | None]
    model: Mapped[ModelRow] = relationship(back_populates="weights")
    metrics: Mapped[list[MetricRow]] = relationship(back_populates="weights", cascade="all, delete-orphan")


class MetricRow(Base):
    """One reported metric of a weights entry, e.g. ImageNet-1K acc@1."""

    __table__ = tables.metrics

    id: Mapped[int]
    weights_id: Mapped[int]
    dataset: Mapped[str]
    name: Mapped[str]
    value: Mapped[float]
    weights: Mapped[WeightsRow] = relationship(back_populates="metrics")


class ModelFailureRow(Base):
    """A model of a loaded plugin that failed on its own: its name, the error and the traceback."""

    __table__ = tables.model_failures

    id: Mapped[int]
    plugin_id: Mapped[int]
    name: Mapped[str]
    error: Mapped[str]
    traceback: Mapped[str | None]
