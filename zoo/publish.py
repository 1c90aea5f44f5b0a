"""Publishing fine-tuned weights and verified exports into the catalog and the artifact store.

``publish_weights("resnet18", "defects.pt", name="acme/defects", categories=[...])``
checks the file before anything is kept: read as tensors only (safetensors, or
``torch.load(weights_only=True)``), its tensors must be those of the model built with the
head its categories imply, none missing, unexpected or of another shape (the load report
says which, in one line). Names and shapes are all that is compared: the file's header
is read, not its tensors, and the model is built without parameters (on the meta
device), so a file of gigabytes is checked in megabytes; it is hashed and stored in
chunks. Its bytes go into the artifact store (`zoo.store`),
and the catalog records the next version of the name (1, 2, ...; safe when many
publish one name at once, see `zoo.catalog.published`). Categories and preprocessing
not given are inherited from `from_weights`, the weights it was fine-tuned from (a
catalog weights name or a published spec). Aliases (``acme/defects@production``)
point at a version and move with `set_alias`.

``zoo.get_model("resnet18", weights="acme/defects:2")`` then builds that head and loads
the stored file, verified by its SHA-256 (`zoo.registry`). `publish_export` records an
ONNX export whose zoo metadata says it was verified, so that deployment finds it by
model and weights (`find_export`); the registry does not take the file's word for it,
but verifies it again (`zoo.export.verify_file`) and records who did (``verified_by``).

In client mode (``ZOO_REGISTRY_URL=http://...``, `zoo.service.client`) each function asks the
registry service instead: files are uploaded (``$ZOO_TOKEN`` must have the publish
scope) and checked there, as they would be here.

The module imports no torch: building and loading happen inside `publish_weights`.
"""

from __future__ import annotations

import json
import math
import os
import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.context import current
from zoo.errors import UsageError, ZooWarning, excerpt, first_line
from zoo.records import CLAIMED, VERIFIED_BY_REGISTRY, ModelRecord, PublishedExport, PublishedWeights, parse_spec

if TYPE_CHECKING:
    from zoo.preprocessing import PreprocessSpec

__all__ = ["PublishedExport", "PublishedWeights", "find_export", "list_published", "publish_export",
           "publish_weights", "resolve_published", "set_alias"]

#: Most categories a published head may have, and longest name of one.
MAX_CATEGORIES = 100_000
MAX_TEXT = 10_000  # characters of a description or a category name
#: Bytes of a run record's JSON (`publish_weights`' ``run``): a recipe and hundreds of epochs take a few dozen KiB.
MAX_RUN_BYTES = 1 << 20
#: Exports are verified again one at a time in a process: each builds its model (`_verified_by`).
_verifying = threading.Lock()


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
    run: Mapping[str, Any] | None = None,
) -> PublishedWeights:
    """Publish the weights in `file` for catalog model `model` as the next version of `name` (``NAMESPACE/NAME``).

    `metrics` maps ``"DATASET:METRIC"`` to a number; `categories` (one per output of
    the head) and `preprocessing` (a `zoo.PreprocessSpec` or its JSON) default to those of
    `from_weights`. `run` is the run record that made the weights (``zoo finetune``'s run.json:
    base weights, data, recipe, versions, metrics per epoch), a JSON object of at most `MAX_RUN_BYTES`
    stored with the version (numbers that JSON lacks, NaN and infinities, become null); its base
    weights' name (``base_weights.name``) is `from_weights` when that is not given, and must name the
    same weights when it is. Refused in one line, with nothing stored, when an argument is
    wrong or the file does not fit the model.
    """
    parse_spec(name, bare=True)
    metrics = _checked_metrics(metrics)
    description = _checked_text(description, "description")
    categories = _checked_categories(categories) if categories is not None else None
    preprocessing = _checked_preprocessing(preprocessing) if preprocessing is not None else None
    run = _checked_run(run) if run is not None else None
    return current().catalog.publish_weights(model, Path(file), name=name, metrics=metrics, categories=categories,
                                             from_weights=from_weights, description=description,
                                             preprocessing=preprocessing, check=_check_fit, run=run)


def resolve_published(spec: str) -> PublishedWeights:
    """The published weights `spec` picks: ``NS/NAME`` (latest), ``NS/NAME:2`` or ``NS/NAME@ALIAS``."""
    return current().catalog.resolve_published(spec)


def list_published(name: str | None = None) -> list[PublishedWeights]:
    """Every published version, or those of `name` (``NAMESPACE/NAME``), by name and version."""
    return current().catalog.list_published(name)


def set_alias(name: str, alias: str, version: int) -> PublishedWeights:
    """Point ``NAME@ALIAS`` at `version` of `name` (moving it if it pointed elsewhere); that version's record."""
    return current().catalog.set_alias(name, alias, version)


def publish_export(path: str | os.PathLike[str]) -> PublishedExport:
    """Store and record the ONNX export at `path`, refused unless its zoo metadata names the model and
    weights and says that every verification against PyTorch passed.

    Where the catalog is kept (here, or in the registry service that a client uploads to), the
    verification runs again from what the metadata says (`zoo.export.verify_file`): a file that
    fails it is refused in one line, with nothing stored; one that passes is recorded with
    ``verified_by="registry"``. One it cannot run on (no torch or no plugin of the model there,
    the model or input too large, its weights out of reach) is recorded as ``"claimed"``: its
    publisher's record, not verified again (a `ZooWarning` says why). Publishing one file twice
    returns its first record."""
    from zoo.export.records import read_metadata
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
    return current().catalog.publish_export(path, meta, check=_verified_by)


def find_export(model: str, weights: str | None) -> PublishedExport | None:
    """The newest published export of `model` with `weights` (as the export names them, or a published
    spec such as ``acme/defects@production``); None when there is none."""
    return current().catalog.find_export(model, weights) if weights is not None else None


def _verified_by(path: Path) -> str:
    """Who verified the export at `path`: this registry once `zoo.export.verify_file` passes here, its publisher
    alone where it cannot run here; refused (`ExportVerificationError`) when it fails."""
    from zoo.export import CannotVerifyError, ExportVerificationError, verify_file

    with _verifying:
        try:
            verify_file(path)
        except CannotVerifyError as exc:
            warnings.warn(f"{path} is published as its publisher's claim, not verified again here: {exc}",
                          ZooWarning, stacklevel=2)
            return CLAIMED
        except ExportVerificationError as exc:
            raise ExportVerificationError(f"{exc}; nothing was published", exc.checks) from None
    return VERIFIED_BY_REGISTRY


def _check_fit(record: ModelRecord, path: Path, categories: list[str] | None) -> None:
    """Refuse, in one line with the load report, a state dict that does not fit `model`'s head for `categories`.

    Names and shapes are all it takes: the file's come from its header (`zoo.modeling.weights.shapes_in`, no
    tensor read), the model's from a build without parameter memory (`zoo.modeling.surgery.model_shapes`), so a
    file of gigabytes is checked in megabytes."""
    from zoo.modeling import surgery
    from zoo.modeling.weights import shapes_in
    from zoo.registry import build_model

    num_classes = len(categories) if categories else None
    own = surgery.model_shapes(lambda: build_model(record.qualified_name, num_classes=num_classes).model)
    report = surgery.fit_report(own, shapes_in(path))
    shapes = [f"{key} {list(a)} vs model {list(b)}" for key, (a, b) in report.mismatched.items()]
    problems = [f"{len(items)} {what} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})"
                for what, items in (("of another shape", shapes), ("missing", report.missing),
                                    ("unexpected", report.unexpected)) if items]
    if problems:
        head = f"a head of {len(categories)} categories" if categories else "its own head"
        raise UsageError(f"{path} does not fit {record.name} with {head}: tensors {'; '.join(problems)}; "
                         f"nothing was published")


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


def _checked_run(run: Any) -> dict[str, Any]:
    """`run` as the JSON object a catalog stores (a round trip through JSON text: tuples become lists, NaN and
    infinities null); a one-line `UsageError` for anything else, or for more than `MAX_RUN_BYTES` of JSON."""
    if not isinstance(run, Mapping):
        raise UsageError(f"a run record must be a JSON object, not {excerpt(run)}")
    try:
        text = json.dumps(dict(run), ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise UsageError(f"the run record is not plain JSON: {first_line(exc)}") from None
    if len(text.encode()) > MAX_RUN_BYTES:
        raise UsageError(f"the run record is {len(text.encode())} bytes of JSON; at most {MAX_RUN_BYTES} are "
                         "stored with a version")
    return json.loads(text, parse_constant=lambda _: None)


def _checked_text(text: str | None, what: str) -> str | None:
    if text is not None and (not isinstance(text, str) or len(text) > MAX_TEXT):
        raise UsageError(f"{what} must be text of at most {MAX_TEXT} characters, not {excerpt(text)}")
    return text
