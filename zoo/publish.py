"""Publishing fine-tuned weights and verified exports into the catalog and the artifact store.

``publish_weights("resnet18", "defects.pt", name="acme/defects", categories=[...])``
checks the file before anything is kept: it must load, as tensors only (safetensors,
or ``torch.load(weights_only=True)``), into the model built with the head its
categories imply, with no tensor missing, unexpected or of another shape (the load
report says which, in one line). Its bytes go into the artifact store (`zoo.store`),
and the catalog records the next version of the name (1, 2, ...; safe when many
publish one name at once, see `zoo.catalog.published`). Categories and preprocessing
not given are inherited from `from_weights`, the weights it was fine-tuned from (a
catalog weights name or a published spec). Aliases (``acme/defects@production``)
point at a version and move with `set_alias`.

``zoo.get_model("resnet18", weights="acme/defects:2")`` then builds that head and loads
the stored file, verified by its SHA-256 (`zoo.registry`). `publish_export` records an
ONNX export whose zoo metadata says it was verified, so that deployment finds it by
model and weights (`find_export`).

In client mode (``ZOO_REGISTRY_URL=http://...``, `zoo.client`) each function asks the
registry service instead: files are uploaded (``$ZOO_TOKEN`` must have the publish
scope) and checked there, as they would be here.

The module imports no torch: building and loading happen inside `publish_weights`.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.catalog.fingerprint import ensure_current
from zoo.client import service
from zoo.catalog.published import (
    PublishedExport,
    PublishedWeights,
    add_export,
    add_version,
    exports_of,
    is_spec,
    listing,
    parse_spec,
    point_alias,
    resolve,
)
from zoo.errors import UnknownWeightsError, UsageError, excerpt
from zoo.outputs import open_regular
from zoo.store import ArtifactStore

if TYPE_CHECKING:
    from zoo.preprocessing import PreprocessSpec

__all__ = ["PublishedExport", "PublishedWeights", "find_export", "list_published", "publish_export",
           "publish_weights", "resolve_published", "set_alias"]

#: Most categories a published head may have, and longest name of one.
MAX_CATEGORIES = 100_000
MAX_TEXT = 10_000  # characters of a description or a category name


def publish_weights(
    model: str,
    file: str | os.PathLike[str],
    *,
    name: str,
    metrics: Mapping[str, float] | None = None,
    categories: Iterable[str] | None = None,
    from_weights: str | None = None,
    description: str | None = None,
    preprocessing: PreprocessSpec | Mapping[str, Any] | None = None,
) -> PublishedWeights:
    """Publish the weights in `file` for catalog model `model` as the next version of `name` (``NAMESPACE/NAME``).

    `metrics` maps ``"DATASET:METRIC"`` to a number; `categories` (one per output of
    the head) and `preprocessing` (a `zoo.PreprocessSpec` or its JSON) default to those of
    `from_weights`. Refused in one line, with nothing stored, when an argument is
    wrong or the file does not fit the model.
    """
    spec = parse_spec(name, bare=True)
    metrics = _checked_metrics(metrics)
    description = _checked_text(description, "description")
    if (remote := service()) is not None:
        return remote.publish_weights(model, file, name=name, **_query(metrics, categories, from_weights,
                                                                        description, preprocessing))
    engine = ensure_current()
    from zoo.registry import describe

    record = describe(model)
    source, inherited_categories, inherited_preprocessing = _source(record, from_weights)
    categories = _checked_categories(categories) if categories is not None else inherited_categories
    preprocessing = inherited_preprocessing if preprocessing is None else _checked_preprocessing(preprocessing)
    data = _read(Path(file))
    sha256 = hashlib.sha256(data).hexdigest()
    _check_fit(record["name"], Path(file), data, sha256, categories)
    stored = ArtifactStore.default().put_stream([data], sha256=sha256, max_bytes=len(data))
    return add_version(engine, spec, model=record["qualified_name"], sha256=stored.sha256, size=stored.size,
                       categories=categories, metrics=metrics, preprocessing=preprocessing,
                       description=description, from_weights=source)


def resolve_published(spec: str) -> PublishedWeights:
    """The published weights `spec` picks: ``NS/NAME`` (latest), ``NS/NAME:2`` or ``NS/NAME@ALIAS``."""
    if (remote := service()) is not None:
        return remote.resolve(spec)
    with ensure_current().connect() as conn:
        return resolve(conn, spec)


def list_published(name: str | None = None) -> list[PublishedWeights]:
    """Every published version, or those of `name` (``NAMESPACE/NAME``), by name and version."""
    if (remote := service()) is not None:
        return remote.published(name)
    with ensure_current().connect() as conn:
        return listing(conn, name)


def set_alias(name: str, alias: str, version: int) -> PublishedWeights:
    """Point ``NAME@ALIAS`` at `version` of `name` (moving it if it pointed elsewhere); that version's record."""
    if (remote := service()) is not None:
        return remote.set_alias(name, alias, version)
    return point_alias(ensure_current(), name, alias, version)


def publish_export(path: str | os.PathLike[str]) -> PublishedExport:
    """Store and record the ONNX export at `path`, refused unless its zoo metadata names the model and
    weights and says that every verification against PyTorch passed. Publishing one file twice
    returns its first record."""
    if (remote := service()) is not None:
        return remote.publish_export(path)
    from zoo.export import read_metadata
    from zoo.outputs import COMPANIONS

    path = Path(path)
    meta = read_metadata(path)
    if any(path.with_name(path.name + suffix).exists() for suffix in COMPANIONS):
        raise UsageError(f"{path} keeps its tensors in a separate file; only single-file exports are published")
    missing = [key for key in ("model", "weights", "verification") if not meta.get(key)]
    if missing:
        raise UsageError(f"{path} lacks the zoo metadata {', '.join(missing)}: publish an export made by "
                         f"zoo export (zoo.export_onnx) of a model with pretrained weights")
    checks = meta["verification"]
    if not isinstance(checks, list) or not all(isinstance(c, dict) and c.get("passed") is True for c in checks):
        raise UsageError(f"{path}'s verification against PyTorch did not pass; export it again")
    engine = ensure_current()
    model = _qualified(meta["model"])
    stored = ArtifactStore.default().put_file(path)
    return add_export(engine, sha256=stored.sha256, size=stored.size, model=model,
                      weights=_weights_key(meta["weights"]), metadata=meta)


def find_export(model: str, weights: str | None) -> PublishedExport | None:
    """The newest published export of `model` with `weights` (as the export names them, or a published
    spec such as ``acme/defects@production``); None when there is none."""
    if (remote := service()) is not None:
        return remote.find_export(model, weights) if weights is not None else None
    model = _qualified(model)
    with ensure_current().connect() as conn:
        found = exports_of(conn, model, _weights_key(weights))
    return found[0] if found else None


def _query(metrics: dict[str, float], categories: Iterable[str] | None, from_weights: str | None,
           description: str | None, preprocessing: Any) -> dict[str, Any]:
    """`publish_weights`' arguments as the query of the service's publishing request."""
    import json

    names = _checked_categories(categories) if categories is not None else None
    if names is not None and any("," in c for c in names):
        raise UsageError("a registry service takes categories comma-separated, so a category name with ',' "
                         "cannot be sent; inherit the categories with from_weights (--from) instead")
    preprocessing = _checked_preprocessing(preprocessing) if preprocessing is not None else None
    return {"metric": [f"{k}={v}" for k, v in metrics.items()], "categories": ",".join(names) if names else None,
            "from": from_weights, "description": description,
            "preprocessing": json.dumps(preprocessing) if preprocessing is not None else None}


def export_file(model: str, weights: str) -> Path | None:
    """The stored file of `find_export`'s export (in the local artifact store); None when there is none."""
    found = find_export(model, weights)
    return ArtifactStore.default().path(found.sha256) if found is not None else None


def _qualified(model: str) -> str:
    """``PLUGIN/NAME`` of a catalog model name."""
    from zoo.registry import describe

    return describe(model)["qualified_name"]


def _weights_key(weights: str | None) -> str | None:
    """How exports record weights: a published spec as the exact version it picks, other names as they are."""
    if weights is not None and is_spec(weights):
        return resolve_published(weights).spec
    return weights


def _source(record: dict[str, Any], from_weights: str | None) -> tuple[str | None, list[str] | None, Any]:
    """The canonical name of `from_weights`, and the categories and preprocessing it passes on."""
    if from_weights is None:
        return None, None, None
    if is_spec(from_weights):
        published = resolve_published(from_weights)
        return published.spec, published.categories, published.preprocessing
    from zoo.registry import get_weight

    member = get_weight(from_weights, model=record["name"])
    entry = next((w for w in record["weights"] if w["member"] == member.name), None)
    if entry is None:
        raise UnknownWeightsError(from_weights, [w["name"] for w in record["weights"]])
    return entry["name"], entry["meta"].get("categories"), entry["transforms"]


def _check_fit(model: str, path: Path, data: bytes, sha256: str, categories: list[str] | None) -> None:
    """Refuse, in one line with the load report, a state dict that does not fit `model`'s head for `categories`."""
    from zoo import surgery
    from zoo.fetch import Loaded
    from zoo.registry import build_model
    from zoo.weights import state_dict_from

    state = state_dict_from(Loaded(path, sha256, len(data), data))
    built = build_model(model, num_classes=len(categories) if categories else None).model
    report = surgery.load_partial(built, state)
    shapes = [f"{key} {list(a)} vs model {list(b)}" for key, (a, b) in report.mismatched.items()]
    problems = [f"{len(items)} {what} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})"
                for what, items in (("of another shape", shapes), ("missing", report.missing),
                                    ("unexpected", report.unexpected)) if items]
    if problems:
        head = f"a head of {len(categories)} categories" if categories else "its own head"
        raise UsageError(f"{path} does not fit {model} with {head}: tensors {'; '.join(problems)}; "
                         f"nothing was published")


def _read(path: Path) -> bytes:
    """The bytes of the regular file at `path`, read once (they are what is checked, hashed and stored)."""
    with open_regular(path, only="only regular files are published") as f:
        return f.read()


def _checked_metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    """`metrics` as ``{"DATASET:METRIC": float}``; a `UsageError` for a key or value of another form."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise UsageError(f"metrics must map 'DATASET:METRIC' to a number, not {excerpt(metrics)}")
    checked = {}
    for key, value in metrics.items():
        dataset, _, metric = key.partition(":") if isinstance(key, str) else ("", "", "")
        if not (dataset.strip() and metric.strip()) or len(key) > 300:
            raise UsageError(f"metric {excerpt(key)} must be written DATASET:METRIC, e.g. 'defects-val:acc@1'")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UsageError(f"metric {excerpt(key)} must be a finite number, not {excerpt(value)}")
        checked[key] = float(value)
    return checked


def _checked_categories(categories: Iterable[str]) -> list[str]:
    """`categories` as a list of distinct non-empty names; a `UsageError` otherwise."""
    if isinstance(categories, str):
        raise UsageError(f"categories must be a list of names, not the string {excerpt(categories)}")
    names = list(categories)
    if not names or len(names) > MAX_CATEGORIES:
        raise UsageError(f"categories must name 1 to {MAX_CATEGORIES} classes, not {len(names)}")
    bad = next((c for c in names if not isinstance(c, str) or not c.strip() or len(c) > MAX_TEXT), None)
    if bad is not None:
        raise UsageError(f"category {excerpt(bad)} is not a name (a non-empty string)")
    twice = next((c for c, n in Counter(names).items() if n > 1), None)
    if twice is not None:
        raise UsageError(f"category {excerpt(twice)} is given twice; each output needs its own name")
    return names


def _checked_preprocessing(preprocessing: Any) -> dict[str, Any]:
    """A `PreprocessSpec` (or its JSON, checked: a one-line `UsageError`) as JSON."""
    from zoo.preprocessing import PreprocessSpec

    spec = preprocessing if isinstance(preprocessing, PreprocessSpec) else PreprocessSpec.from_json(preprocessing)
    return spec.to_json()


def _checked_text(text: str | None, what: str) -> str | None:
    if text is not None and (not isinstance(text, str) or len(text) > MAX_TEXT):
        raise UsageError(f"{what} must be text of at most {MAX_TEXT} characters, not {excerpt(text)}")
    return text
