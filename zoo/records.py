"""Published weights and exports as typed records, and the names that pick them; no SQL, no torch.

Published weights are named ``NAMESPACE/NAME`` (each part lowercase letters, digits,
``-`` and ``_``, starting with a letter or digit, at most 100 characters); a spec
picks a version: ``NAMESPACE/NAME`` the latest, ``NAMESPACE/NAME:2`` version 2,
``NAMESPACE/NAME@production`` the version the alias points at. A name never holds a
``.``, so it never reads as a plugin's weights name (``PLUGIN/Enum.MEMBER``).

The catalog (`zoo.catalog.published`) and a registry service's client (`zoo.service.client`)
both answer with these records: a deployment host reads them without SQLAlchemy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
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
    #: The run record that made them (lineage: base weights, data, recipe, versions, metrics per epoch, wall
    #: time, device; ``zoo finetune`` writes it as run.json): a JSON object of any shape, None when not given.
    run: dict[str, Any] | None = None

    @property
    def full_name(self) -> str:
        """``NAMESPACE/NAME``."""
        return f"{self.namespace}/{self.name}"

    def run_part(self, key: str) -> dict[str, Any]:
        """The object `key` of the run record (``"base_weights"``, ``"data"``, ``"best"``...); empty when the
        record has none (or something else there: a record is read as it was given)."""
        part = (self.run or {}).get(key)
        return part if isinstance(part, dict) else {}

    def run_epochs(self) -> list[dict[str, float]]:
        """The run record's metrics per epoch (``zoo finetune``'s: epoch, train_loss, val_loss, acc@1, ...),
        each epoch's finite numbers only; the entries that are not objects left out."""
        epochs = (self.run or {}).get("epochs")
        return [{k: v for k, v in e.items() if _finite(v)} for e in epochs if isinstance(e, dict)
                ] if isinstance(epochs, list) else []

    @property
    def spec(self) -> str:
        """``NAMESPACE/NAME:VERSION``: this version, whatever is published later."""
        return f"{self.full_name}:{self.version}"

    @property
    def builder_args(self) -> dict[str, Any]:
        """What the model's builder needs to fit these weights: a head of one output per category."""
        return {"num_classes": len(self.categories)} if self.categories else {}

    @property
    def base_sha256(self) -> str | None:
        """The SHA-256 of the weights these were fine-tuned from, as the run record gives it."""
        sha256 = self.run_part("base_weights").get("sha256")
        return sha256 if isinstance(sha256, str) else None

    def lineage(self) -> dict[str, str]:
        """The run record in words, for people (``zoo show``, the model card): ``data`` (manifest hash, classes,
        images), ``training`` (epochs, device, wall time), ``final`` and ``best`` (an epoch's metrics); only
        those the record has."""
        words = {}
        data = self.run_part("data")
        if data:
            classes = data.get("classes")
            images = ", ".join(f"{data[key]} {word}" for key, word in (
                ("train", "training"), ("val", "validation"), ("skipped", "unreadable skipped"))
                if _finite(data.get(key)))
            words["data"] = (f"manifest {data.get('manifest_sha256') or 'not given'}"
                             + (f", {len(classes)} classes" if isinstance(classes, list) else "")
                             + (f"; images: {images}" if images else ""))
        epochs, run = self.run_epochs(), self.run or {}
        if epochs or run.get("device") or _finite(run.get("wall_s")):
            words["training"] = ", ".join([f"{len(epochs)} epoch{'s' * (len(epochs) != 1)}",
                                           *([f"on {run['device']}"] if run.get("device") else []),
                                           *([f"{run['wall_s']:.0f} s"] if _finite(run.get("wall_s")) else [])])
        best = {k: v for k, v in self.run_part("best").items() if _finite(v)}
        for key, epoch in (("final", epochs[-1] if epochs else {}), ("best", best)):
            shown = [f"{label} {epoch[name]:{spec}}{unit}" for name, label, spec, unit in _EPOCH_WORDS if name in epoch]
            if shown:
                words[key] = ", ".join(shown)
        return words

    def to_json(self) -> dict[str, Any]:
        return {"name": self.full_name, "version": self.version, "spec": self.spec, "model": self.model,
                "sha256": self.sha256, "size": self.size, "categories": self.categories, "metrics": self.metrics,
                "preprocessing": self.preprocessing, "description": self.description,
                "from_weights": self.from_weights, "aliases": list(self.aliases),
                "created_at": self.created_at.isoformat(), "run": self.run}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PublishedWeights:
        """The inverse of `to_json` (a registry service's answer; one without ``run``, from a service older than
        the field, has none)."""
        namespace, _, name = data["name"].partition("/")
        return cls(namespace, name, data["version"], data["model"], data["sha256"], data["size"],
                   data["categories"], data["metrics"], data["preprocessing"], data["description"],
                   data["from_weights"], datetime.fromisoformat(data["created_at"]), tuple(data["aliases"]),
                   data.get("run"))


#: How `PublishedWeights.lineage` says an epoch's metrics: run record key, words, format, unit.
_EPOCH_WORDS = (("epoch", "epoch", "g", ""), ("acc@1", "val acc@1", ".2f", "%"), ("acc@5", "acc@5", ".2f", "%"),
                ("val_loss", "val loss", ".4g", ""), ("train_loss", "train loss", ".4g", ""))


def _finite(value: Any) -> bool:
    """Whether `value` is a finite number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: `PublishedExport.verified_by`: the registry ran the export's verification against PyTorch again when it was
#: published (and it passed), or it could not (`zoo.publish_export` says why) and the file's own record, its
#: publisher's claim, is all there is.
VERIFIED_BY_REGISTRY = "registry"
CLAIMED = "claimed"


@dataclass(frozen=True)
class PublishedExport:
    """A verified ONNX export in the artifact store, found by the model and weights it was made from."""

    sha256: str
    size: int
    model: str
    weights: str | None
    metadata: dict[str, Any]  # the file's zoo metadata (zoo.export.read_metadata)
    created_at: datetime
    verified_by: str = CLAIMED  # VERIFIED_BY_REGISTRY or CLAIMED

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "model": self.model, "weights": self.weights,
                "metadata": self.metadata, "created_at": self.created_at.isoformat(),
                "verified_by": self.verified_by}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PublishedExport:
        """The inverse of `to_json` (a registry service's answer; one without ``verified_by``, from a service
        older than the field, is `CLAIMED`)."""
        verified_by = data.get("verified_by", CLAIMED)
        if verified_by not in (VERIFIED_BY_REGISTRY, CLAIMED):
            raise ValueError(f"verified_by is {excerpt(verified_by)}, not {VERIFIED_BY_REGISTRY!r} or {CLAIMED!r}")
        return cls(data["sha256"], data["size"], data["model"], data["weights"], data["metadata"],
                   datetime.fromisoformat(data["created_at"]), verified_by)


@dataclass(frozen=True)
class Measurement:
    """A classifier's acc@1 and acc@5 measured by ``zoo eval --record`` (`zoo.record_evaluation`): figures the
    catalog measured, as opposed to those its plugins or publishers claim.

    `model` is ``PLUGIN/NAME`` and `weights` the weights' name (a plugin's, or a published spec
    ``NS/NAME:VERSION``) as the catalog names them; `kind` says what ran, ``"model"`` (PyTorch) or ``"export"``
    (ONNX Runtime), and `sha256` is that file's (the weights file, or the export). `dataset` is the name the
    metrics go under (``zoo finetune``'s: `zoo.datasets.dataset_name`), `manifest_sha256` which images under
    which labels (`zoo.datasets.ImageData.manifest_sha256`), `split` the part measured (``val`` or ``all``).
    Accuracies are percentages.
    """

    model: str
    weights: str
    kind: str
    sha256: str
    dataset: str
    split: str
    images: int
    acc1: float
    acc5: float
    manifest_sha256: str
    measured_at: datetime
    zoo_version: str

    @property
    def metrics(self) -> dict[str, float]:
        """``{"DATASET:acc@1": ..., "DATASET:acc@5": ...}``: the keys claimed metrics use."""
        return {f"{self.dataset}:acc@1": self.acc1, f"{self.dataset}:acc@5": self.acc5}

    def summary(self) -> str:
        """The figures in one line, for people: ``digits:acc@1 97.5%, digits:acc@5 100% on 360 validation images
        (data sha256 abcd1234…, 2026-12-06)``, and the export's hash when an export was measured."""
        figures = ", ".join(f"{key} {value:.4g}%" for key, value in self.metrics.items())
        images = f"{self.images} {'validation ' if self.split == 'val' else ''}image{'s' * (self.images != 1)}"
        export = f"; export sha256 {self.sha256[:8]}\u2026" if self.kind == "export" else ""
        return (f"{figures} on {images} (data sha256 {self.manifest_sha256[:8]}\u2026, "
                f"{self.measured_at.date().isoformat()}{export})")

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "weights": self.weights, "kind": self.kind, "sha256": self.sha256,
                "dataset": self.dataset, "split": self.split, "images": self.images, "metrics": self.metrics,
                "manifest_sha256": self.manifest_sha256, "measured_at": self.measured_at.isoformat(),
                "zoo_version": self.zoo_version}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        """The inverse of `to_json` (a registry service's answer, or a body it is sent: `KeyError`, `TypeError`
        or `ValueError` for one of another shape; the values are checked by `zoo.measurements`)."""
        metrics, dataset = data["metrics"], data["dataset"]
        return cls(data["model"], data["weights"], data["kind"], data["sha256"], dataset, data["split"],
                   data["images"], metrics[f"{dataset}:acc@1"], metrics[f"{dataset}:acc@5"],
                   data["manifest_sha256"], datetime.fromisoformat(data["measured_at"]), data["zoo_version"])


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


#: timm's prefix of a Hugging Face repository as a model or weights name (``hf-hub:timm/resnet18.a1_in1k``):
#: the weights whose file is in that repository.
HF_HUB = "hf-hub:"
#: Where the files of a Hugging Face repository are, as weights URLs name them (`HF_HUB`).
HF_FILES = "https://huggingface.co/{repo}/resolve/"


def is_spec(text: object) -> bool:
    """Whether `text` is written as a published weights spec (it need not exist)."""
    return isinstance(text, str) and _SPEC.fullmatch(text) is not None


def check_alias(alias: object) -> str:
    """`alias` if it is a valid alias name (as a name part); else a `UsageError`."""
    if not isinstance(alias, str) or not re.fullmatch(_PART, alias):
        raise UsageError(f"alias {excerpt(alias)} must be lowercase letters, digits, '-' and '_', starting with "
                         f"a letter or digit, at most 100 characters")
    return alias


# -- the catalog's models ------------------------------------------------------------


@dataclass(frozen=True)
class PluginRef:
    """The plugin a model comes from: entry-point name, namespace, distribution and its version."""

    name: str
    namespace: str
    distribution: str | None
    version: str | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "distribution": self.distribution,
                "version": self.version}


@dataclass(frozen=True)
class WeightsSource:
    """Weights as what they pass on to what is made from them (an export, a fine-tuned or published version, an
    evaluation), alike for a plugin's weights and published weights (`zoo.catalog.api.weights_source`)."""

    name: str  # canonical: the plugin's weights name (Enum.MEMBER, MODEL.TAG), or published NS/NAME:VERSION
    sha256: str | None  # the file's, when known
    categories: list[str] | None  # the head's class names; None: it names none
    preprocessing: dict[str, Any] | None  # a `zoo.preprocessing.PreprocessSpec`'s JSON; None: none declared
    meta: dict[str, Any]  # the plugin's other metadata (min_size...); empty for published weights
    published: PublishedWeights | None  # the published version, for published weights


@dataclass(frozen=True)
class WeightsRecord:
    """One weights entry of a model, as its plugin declared it (with the file's hash when known)."""

    name: str  # Enum.MEMBER, or MODEL.TAG for weights without an enum
    enum: str | None
    member: str
    is_default: bool
    task: str
    url: str
    sha256: str | None
    file_size: int | None
    transforms: dict[str, Any] | None
    builder_args: dict[str, Any]
    meta: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "enum": self.enum, "member": self.member, "is_default": self.is_default,
                "task": self.task, "url": self.url, "sha256": self.sha256, "file_size": self.file_size,
                "transforms": self.transforms, "builder_args": self.builder_args, "meta": self.meta}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WeightsRecord:
        return cls(data["name"], data["enum"], data["member"], data["is_default"], data["task"], data["url"],
                   data["sha256"], data["file_size"], data["transforms"], data["builder_args"], data["meta"])


@dataclass(frozen=True)
class ModelRecord:
    """The catalog record of a model and its weights (what `zoo.describe` answers, as JSON).

    `name` is the name that reaches the model, `qualified_name` its ``PLUGIN/NAME``,
    `providers` the qualified names of every model with the same bare name, and
    `published` the weights published for it, every version.
    """

    name: str
    qualified_name: str
    task: str
    plugin: PluginRef
    providers: tuple[str, ...]
    builder: str
    builder_args: dict[str, Any]
    weights_enum: str | None
    num_params: int | None
    tags: list[str]
    metadata: dict[str, Any]
    classifier: list[str]
    first_conv: str | None
    input_size: list[int] | None
    default_weights: str | None
    weights: tuple[WeightsRecord, ...]
    published: tuple[PublishedWeights, ...]

    def weights_named(self, member: str) -> WeightsRecord | None:
        """The entry of enum member (tag) `member`, exactly as spelled; None when the model has none."""
        return next((w for w in self.weights if w.member == member), None)

    @property
    def hashes(self) -> dict[str, str]:
        """URL -> full SHA-256 of the weights files listed (declared, or learned by the catalog)."""
        return {w.url: w.sha256 for w in self.weights if w.sha256}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "qualified_name": self.qualified_name, "task": self.task,
                "plugin": self.plugin.to_json(), "providers": list(self.providers), "builder": self.builder,
                "builder_args": self.builder_args, "weights_enum": self.weights_enum, "num_params": self.num_params,
                "tags": self.tags, "metadata": self.metadata, "classifier": self.classifier,
                "first_conv": self.first_conv, "input_size": self.input_size,
                "default_weights": self.default_weights, "weights": [w.to_json() for w in self.weights],
                "published": [p.to_json() for p in self.published]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelRecord:
        """The inverse of `to_json` (a registry service's answer: `zoo.service.client` refuses one of another
        shape)."""
        return cls(data["name"], data["qualified_name"], data["task"], PluginRef(**data["plugin"]),
                   tuple(data["providers"]), data["builder"], data["builder_args"], data["weights_enum"],
                   data["num_params"], data["tags"], data["metadata"], data["classifier"], data["first_conv"],
                   data["input_size"], data["default_weights"],
                   tuple([WeightsRecord.from_json(w) for w in data["weights"]]),
                   tuple([PublishedWeights.from_json(p) for p in data["published"]]))


@dataclass(frozen=True)
class ModelSummary:
    """One line of a listing (`zoo.summarize_models`): a model's names, task, builder, size, weights, the
    GFLOPS of its default weights (else its first) and its metrics, each ``DATASET:METRIC`` the best value of
    any of its weights (`zoo.catalog.ranking.better`)."""

    name: str
    qualified_name: str
    task: str
    plugin: str  # namespace
    builder: str
    num_params: int | None
    weights: tuple[str, ...]
    default_weights: str | None
    gflops: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "qualified_name": self.qualified_name, "task": self.task, "plugin": self.plugin,
                "builder": self.builder, "num_params": self.num_params, "weights": list(self.weights),
                "default_weights": self.default_weights, "gflops": self.gflops, "metrics": dict(self.metrics)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSummary:
        """The inverse of `to_json` (a registry service's answer; one without ``gflops`` and ``metrics``, from a
        service older than the fields, has none)."""
        return cls(data["name"], data["qualified_name"], data["task"], data["plugin"], data["builder"],
                   data["num_params"], tuple(data["weights"]), data["default_weights"], data.get("gflops"),
                   data.get("metrics", {}))
