"""The catalog's tables. Changes here need a migration in ``migrations/versions``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class PluginRow(Base):
    """An installed plugin and how loading it went."""

    __tablename__ = "plugins"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    target: Mapped[str] = mapped_column(String(400))
    distribution: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))  # "loaded" or "failed"
    error: Mapped[str | None] = mapped_column(Text)

    models: Mapped[list[ModelRow]] = relationship(back_populates="plugin", cascade="all, delete-orphan")


class ModelRow(Base):
    """A registered model: its builder, weights enum, task and metadata."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)  # stored lowercase
    plugin_id: Mapped[int] = mapped_column(ForeignKey("plugins.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(100), index=True)
    builder: Mapped[str] = mapped_column(String(400))
    weights_enum: Mapped[str | None] = mapped_column(String(400))
    num_params: Mapped[int | None] = mapped_column(BigInteger)
    tags: Mapped[list[str]]
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)

    plugin: Mapped[PluginRow] = relationship(back_populates="models")
    weights: Mapped[list[WeightsRow]] = relationship(
        back_populates="model", cascade="all, delete-orphan", order_by="WeightsRow.id"
    )


class WeightsRow(Base):
    """One member of a model's weights enum."""

    __tablename__ = "weights"
    __table_args__ = (UniqueConstraint("model_id", "member_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    enum_name: Mapped[str] = mapped_column(String(200), index=True)
    member_name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    transforms: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    is_default: Mapped[bool]

    model: Mapped[ModelRow] = relationship(back_populates="weights")
    metrics: Mapped[list[MetricRow]] = relationship(
        back_populates="weights", cascade="all, delete-orphan", order_by="MetricRow.id"
    )

    @property
    def full_name(self) -> str:
        return f"{self.enum_name}.{self.member_name}"


class MetricRow(Base):
    """One reported metric of a weights entry, e.g. ImageNet-1K acc@1, so filters run as SQL."""

    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_name_value", "name", "value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    weights_id: Mapped[int] = mapped_column(ForeignKey("weights.id", ondelete="CASCADE"), index=True)
    dataset: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)

    weights: Mapped[WeightsRow] = relationship(back_populates="metrics")


class CatalogState(Base):
    """Key-value facts about the catalog itself, such as the fingerprint of the last sync."""

    __tablename__ = "catalog_state"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
