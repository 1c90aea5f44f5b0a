"""Published weights and exports as typed records, and the names that pick them; no SQL, no torch.

Published weights are named ``NAMESPACE/NAME`` (each part lowercase letters, digits,
``-`` and ``_``, starting with a letter or digit, at most 100 characters); a spec
picks a version: ``NAMESPACE/NAME`` the latest, ``NAMESPACE/NAME:2`` version 2,
``NAMESPACE/NAME@production`` the version the alias points at. A name never holds a
``.``, so it never reads as a plugin's weights name (``PLUGIN/Enum.MEMBER``).

The catalog (`zoo.catalog.published`) and a registry service's client (`zoo.client`)
both answer with these records: a deployment host reads them without SQLAlchemy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zoo.errors import UsageError, excerpt

_PART = r"[a-z0-9][a-z0-9_-]{0,99}"
#: NAMESPACE/NAME, then :VERSION or @ALIAS
_SPEC = re.compile(rf"(?P<namespace>{_PART})/(?P<name>{_PART})(?::(?P<version>[0-9]{{1,9}})|@(?P<alias>{_PART}))?")
_NAME_RULE = ("NAMESPACE/NAME, each part lowercase letters, digits, '-' and '_' (starting with a letter or digit, "
              "at most 100 characters)")


@dataclass(frozen=True)
class PublishedWeights:
    """One published version of weights: what they are for, their file, and what they were measured at."""

    namespace: str
    name: str
    version: int
    model: str  # the catalog model they are for, PLUGIN/NAME
    sha256: str
    size: int
    categories: list[str] | None  # None: the model's own head
    metrics: dict[str, float]  # {"DATASET:METRIC": value}
    preprocessing: dict[str, Any] | None  # a PreprocessSpec's JSON
    description: str | None
    from_weights: str | None
    created_at: datetime
    aliases: tuple[str, ...] = ()

    @property
    def full_name(self) -> str:
        """``NAMESPACE/NAME``."""
        return f"{self.namespace}/{self.name}"

    @property
    def spec(self) -> str:
        """``NAMESPACE/NAME:VERSION``: this version, whatever is published later."""
        return f"{self.full_name}:{self.version}"

    @property
    def builder_args(self) -> dict[str, Any]:
        """What the model's builder needs to fit these weights: a head of one output per category."""
        return {"num_classes": len(self.categories)} if self.categories else {}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.full_name, "version": self.version, "spec": self.spec, "model": self.model,
                "sha256": self.sha256, "size": self.size, "categories": self.categories, "metrics": self.metrics,
                "preprocessing": self.preprocessing, "description": self.description,
                "from_weights": self.from_weights, "aliases": list(self.aliases),
                "created_at": self.created_at.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PublishedWeights:
        """The inverse of `to_json` (a registry service's answer)."""
        namespace, _, name = data["name"].partition("/")
        return cls(namespace, name, data["version"], data["model"], data["sha256"], data["size"],
                   data["categories"], data["metrics"], data["preprocessing"], data["description"],
                   data["from_weights"], datetime.fromisoformat(data["created_at"]), tuple(data["aliases"]))


@dataclass(frozen=True)
class PublishedExport:
    """A verified ONNX export in the artifact store, found by the model and weights it was made from."""

    sha256: str
    size: int
    model: str
    weights: str | None
    metadata: dict[str, Any]  # the file's zoo metadata (zoo.export.read_metadata)
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "model": self.model, "weights": self.weights,
                "metadata": self.metadata, "created_at": self.created_at.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PublishedExport:
        """The inverse of `to_json` (a registry service's answer)."""
        return cls(data["sha256"], data["size"], data["model"], data["weights"], data["metadata"],
                   datetime.fromisoformat(data["created_at"]))


@dataclass(frozen=True)
class Spec:
    """A parsed weights spec: the name, and the version or alias it picks (neither: the latest)."""

    namespace: str
    name: str
    version: int | None = None
    alias: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_spec(text: object, *, bare: bool = False) -> Spec:
    """`text` as ``NAMESPACE/NAME[:VERSION|@ALIAS]`` (only ``NAMESPACE/NAME`` with `bare`); else a `UsageError`."""
    match = _SPEC.fullmatch(text) if isinstance(text, str) else None
    if match is None or (bare and (match["version"] or match["alias"])):
        picks = "" if bare else ", then optionally :VERSION or @ALIAS"
        raise UsageError(f"published weights name {excerpt(text)} is not {_NAME_RULE}{picks}")
    version = int(match["version"]) if match["version"] else None
    if version == 0:
        raise UsageError(f"published weights {excerpt(text)}: versions start at 1")
    return Spec(match["namespace"], match["name"], version, match["alias"])


def is_spec(text: object) -> bool:
    """Whether `text` is written as a published weights spec (it need not exist)."""
    return isinstance(text, str) and _SPEC.fullmatch(text) is not None


def check_alias(alias: object) -> str:
    """`alias` if it is a valid alias name (as a name part); else a `UsageError`."""
    if not isinstance(alias, str) or not re.fullmatch(_PART, alias):
        raise UsageError(f"alias {excerpt(alias)} must be lowercase letters, digits, '-' and '_', starting with "
                         f"a letter or digit, at most 100 characters")
    return alias
