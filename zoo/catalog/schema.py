"""Typed ORM classes over the catalog's tables (`zoo.catalog.tables`), used to write it.

A sync builds one object graph per plugin (plugin -> models -> weights -> metrics)
and lets the ORM insert it with its foreign keys.
"""

from __future__ import annotations

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
    target: Mapped[str]
    distribution: Mapped[str | None]
    version: Mapped[str | None]
    status: Mapped[str]
    error: Mapped[str | None]
    models: Mapped[list[ModelRow]] = relationship(back_populates="plugin", cascade="all, delete-orphan")


class ModelRow(Base):
    """A registered model: its builder, weights enum, task and metadata."""

    __table__ = tables.models

    id: Mapped[int]
    name: Mapped[str]
    plugin_id: Mapped[int]
    task: Mapped[str]
    builder: Mapped[str]
    weights_enum: Mapped[str | None]
    num_params: Mapped[int | None]
    tags: Mapped[list[str]]
    meta: Mapped[dict[str, Any]]
    classifier: Mapped[list[str]]
    first_conv: Mapped[str | None]
    plugin: Mapped[PluginRow] = relationship(back_populates="models")
    weights: Mapped[list[WeightsRow]] = relationship(back_populates="model", cascade="all, delete-orphan")


class WeightsRow(Base):
    """One member of a model's weights enum."""

    __table__ = tables.weights

    id: Mapped[int]
    model_id: Mapped[int]
    enum_name: Mapped[str]
    member_name: Mapped[str]
    url: Mapped[str]
    sha256: Mapped[str | None]
    file_size: Mapped[int | None]
    transforms: Mapped[dict[str, Any] | None]
    meta: Mapped[dict[str, Any]]
    is_default: Mapped[bool]
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
