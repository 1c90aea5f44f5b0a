"""The catalog's tables, in SQLAlchemy Core: the one definition of the schema.

Lookups query these tables directly, so a process that only lists models never
imports the ORM (about a third of a cold ``zoo list``); the sync writes through the
typed ORM classes in `zoo.catalog.schema`, which map these same tables. Changing a
table needs a migration in ``migrations/versions``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()
GENERATION_KEY = "generation"
CHANGES_KEY = "changes"
#: The full-text search index of the models (`zoo.catalog.search`): an FTS5 virtual table (with its shadow
#: tables, named after it) on SQLite, a table of tsvectors on PostgreSQL; made and filled outside this metadata.
SEARCH_INDEX = "model_search"


def in_metadata(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's ``include_name``: schema comparisons leave out the search index, which `metadata` lacks."""
    return not (type_ == "table" and name is not None and name.startswith(SEARCH_INDEX))


plugins = Table(
    "plugins",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),  # the entry-point name
    # PLUGIN in PLUGIN/NAME: the entry-point name, or the distribution's when another plugin has that name
    Column("namespace", String(200), nullable=False, unique=True),
    Column("target", String(400), nullable=False),
    Column("distribution", String(200)),
    Column("version", String(100)),
    Column("status", String(20), nullable=False),  # "loaded" or "failed"
    Column("error", Text),
    # what the plugin's rows were made from (zoo.catalog.fingerprint.plugin_fingerprint)
    Column("fingerprint", String(64), nullable=False),
    Column("synced_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("name", "distribution"),
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, index=True),  # stored lowercase; PLUGIN/NAME qualifies it
    Column("plugin_id", ForeignKey("plugins.id", ondelete="CASCADE"), nullable=False, index=True),
    # this row answers the bare name (one per name; see zoo.catalog.sync for who gets it)
    Column("preferred", Boolean, nullable=False),
    Column("task", String(100), nullable=False, index=True),
    Column("builder", String(400), nullable=False),
    Column("weights_enum", String(400)),
    Column("num_params", BigInteger),
    Column("tags", JSON, nullable=False),
    # "metadata" is reserved on ORM classes, hence the key
    Column("metadata", JSON, nullable=False, key="meta"),
    Column("classifier", JSON, nullable=False),  # module paths of the output layers
    Column("first_conv", String(200)),
    Column("builder_args", JSON, nullable=False),  # builder(**builder_args, **config)
    Column("input_size", JSON),  # [C, H, W] of an architecture that takes one size only
    UniqueConstraint("plugin_id", "name"),
)

weights = Table(
    "weights",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", ForeignKey("models.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("enum_name", String(200), index=True),  # None: data-only weights, named MODEL.TAG
    Column("member_name", String(200), nullable=False),
    Column("url", Text, nullable=False),
    Column("sha256", String(64)),
    Column("file_size", BigInteger),
    Column("transforms", JSON),
    Column("metadata", JSON, nullable=False, key="meta"),
    Column("is_default", Boolean, nullable=False),
    Column("builder_args", JSON, nullable=False),  # what the model needs to fit these weights
    Column("task", String(100), index=True),  # when not the model's, e.g. "embedding"
    # the categories, stored once for every entry that has the same list (meta then lacks them)
    Column("categories_id", ForeignKey("category_lists.id"), index=True),
    UniqueConstraint("model_id", "member_name"),
)

# A category list shared by many weights entries (ImageNet's 1,000 names), stored once.
category_lists = Table(
    "category_lists",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),  # of the list's JSON
    Column("categories", JSON, nullable=False),
)

metrics = Table(
    "metrics",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("weights_id", ForeignKey("weights.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("dataset", String(200), nullable=False),
    Column("name", String(100), nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_metrics_name_value", "name", "value"),
)

# A model of a loaded plugin whose spec was bad or could not be made; the others loaded.
model_failures = Table(
    "model_failures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("plugin_id", ForeignKey("plugins.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("error", Text, nullable=False),
    Column("traceback", Text),
)

# Facts about the catalog as a whole: its generation (GENERATION_KEY), a new value at every
# sync that changed it, and CHANGES_KEY, a new value whenever what a model's record shows
# beyond the sync changes (published weights, aliases, learned hashes): a process keeps
# what it read until either changes.
catalog_state = Table(
    "catalog_state",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

# Facts learned about weights files by verifying them, kept across syncs: the full
# SHA-256 of a file whose plugin declared only a hash prefix (torchvision's do).
weight_files = Table(
    "weight_files",
    metadata,
    Column("url", String(1000), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("file_size", BigInteger, nullable=False),
)

# Every verified ONNX export of a catalog model, by file path, so that the same
# export asked for again reuses a file that is still there and unchanged.
exports = Table(
    "exports",
    metadata,
    Column("path", String(1000), primary_key=True),  # absolute
    Column("model", String(200), nullable=False, index=True),
    Column("weights", String(400)),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("opset", Integer, nullable=False),
    Column("exporter", String(20), nullable=False),
    Column("dynamic_axes", JSON, nullable=False),
    Column("verification", JSON, nullable=False),
    Column("options", JSON, nullable=False),  # what was asked for: shape, batch, opset, tolerances
    Column("result", JSON, nullable=False),  # ExportResult.to_json()
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# -- published artifacts: rows no plugin gives, so syncs and prunes never touch them (zoo.publish) --

# A version of fine-tuned weights published as NAMESPACE/NAME; its file is in the artifact store.
published_weights = Table(
    "published_weights",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("namespace", String(100), nullable=False),
    Column("name", String(100), nullable=False),
    Column("version", Integer, nullable=False),  # 1, 2, ... per (namespace, name)
    Column("model", String(200), nullable=False, index=True),  # the catalog model name it is for
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("categories", JSON),  # None: the model's own head
    Column("metrics", JSON, nullable=False),  # {"DATASET:METRIC": value}
    Column("preprocessing", JSON),  # a PreprocessSpec's JSON
    Column("description", Text),
    Column("from_weights", String(400)),  # the weights it was fine-tuned from
    Column("created_at", DateTime(timezone=True), nullable=False),
    # the run record that made it (zoo finetune's run.json: base weights, data, recipe, epochs), a JSON object
    Column("run", JSON),
    UniqueConstraint("namespace", "name", "version"),
)

# A movable name for one version: NAMESPACE/NAME@ALIAS.
weight_aliases = Table(
    "weight_aliases",
    metadata,
    Column("namespace", String(100), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("alias", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
)

# A verified ONNX export published into the artifact store, found by model and weights.
published_exports = Table(
    "published_exports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("model", String(200), nullable=False, index=True),
    Column("weights", String(400)),
    Column("metadata", JSON, nullable=False, key="meta"),  # the export's zoo metadata
    Column("created_at", DateTime(timezone=True), nullable=False),
    # "registry": verified again when published; "claimed": only its publisher's record (zoo.records.CLAIMED)
    Column("verified_by", String(20), nullable=False, server_default="claimed"),
)

# A classifier measured by `zoo eval --record` (zoo.measurements): figures measured, not claimed; rows no plugin
# gives, so syncs and prunes keep them. One row per file, data and split: measuring them again replaces it.
measurements = Table(
    "measurements",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model", String(200), nullable=False, index=True),  # PLUGIN/NAME
    Column("weights", String(400), nullable=False),  # a plugin's weights name, or a published NS/NAME:VERSION
    Column("kind", String(20), nullable=False),  # what ran: "model" (PyTorch) or "export" (ONNX Runtime)
    Column("sha256", String(64), nullable=False),  # of the weights file or of the export
    Column("dataset", String(200), nullable=False),  # the name the metrics go under (DATASET:acc@1)
    Column("split", String(20), nullable=False),  # "val" or "all"
    Column("images", Integer, nullable=False),
    Column("acc1", Float, nullable=False),
    Column("acc5", Float, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),  # the data's (zoo.datasets.ImageData.manifest_sha256)
    Column("measured_at", DateTime(timezone=True), nullable=False),
    Column("zoo_version", String(100), nullable=False),
)

# Tokens of the registry service (zoo serve): the secret itself is never stored, only its SHA-256.
tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("hash", String(64), nullable=False, unique=True),
    Column("scopes", JSON, nullable=False),  # e.g. ["read", "publish"]
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)
