"""What an export leaves behind: its `ExportResult`, the catalog's ``exports`` table, the file's provenance.

Every verified export of a catalog model is recorded (`record`) with the request it
answered; the same request at the same path returns the recorded result while the
file is unchanged (`reusable`). `read_metadata` reads the provenance back from a file
with the ``onnx`` package alone. Importing this module imports neither torch nor
SQLAlchemy (the catalog is imported inside the functions that use it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from zoo import metadata
from zoo.context import current
from zoo.errors import UsageError, first_line
from zoo.export.verify import OutputCheck
from zoo.fetch import sha256_of

__all__ = ["ExportResult", "list_exports", "read_metadata", "reusable_export", "record_export"]


@dataclass(frozen=True)
class ExportResult:
    """Everything about one export: the file, how it was made, and how it was checked."""

    path: Path
    sha256: str  # of the .onnx file
    size: int  # bytes, .onnx plus external data
    external_data: Path | None
    model: str
    task: str | None
    weights: str | None
    opset: int
    ir_version: int
    exporter: str  # "dynamo" or "torchscript"
    fallback_reason: str | None  # why the dynamo exporter was not used
    input_names: list[str]
    output_names: list[str]
    input_shape: tuple[int, ...]  # of each input (the inputs of a model with several share it)
    dynamic_axes: dict[str, dict[int, str]]
    shape_inference_complete: bool
    intermediate_tensors: int
    tensors_without_shape: list[str]
    verification: list[OutputCheck] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    reused: bool = False  # an earlier export with the same request, still valid, was returned

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportResult:
        """The inverse of `to_json`."""
        return cls(**{
            **data,
            "path": Path(data["path"]),
            "external_data": Path(data["external_data"]) if data["external_data"] else None,
            "input_shape": tuple(data["input_shape"]),
            "dynamic_axes": {k: {int(a): n for a, n in v.items()} for k, v in data["dynamic_axes"].items()},
            "verification": [OutputCheck(**{**c, "input_shape": tuple(c["input_shape"]),
                                            "output_shape": tuple(c["output_shape"])})
                             for c in data["verification"]],
        })

    @property
    def max_abs_error(self) -> float:
        return max((c.max_abs_error for c in self.verification), default=0.0)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            path=str(self.path),
            external_data=str(self.external_data) if self.external_data else None,
            input_shape=list(self.input_shape),
            dynamic_axes={k: {str(a): n for a, n in v.items()} for k, v in self.dynamic_axes.items()},
            verification=[c.to_json() for c in self.verification],
        )
        return data


def list_exports() -> list[dict[str, Any]]:
    """The catalog's record of every verified export of a catalog model, newest first, as plain data."""
    return current().catalog.local_exports()


def reusable_export(path: Path, request: Mapping[str, Any]) -> ExportResult | None:
    """The recorded export at `path` if it was made for the same request (`ExportRequest.to_json`)
    and its files are unchanged. In client mode there is no local record (None)."""
    found = current().catalog.local_export(str(path.resolve()))
    if found is None:
        return None
    options, result, sha256 = found
    if options != request or not path.is_file() or sha256_of(path) != sha256:
        return None
    earlier = ExportResult.from_json(result)
    if earlier.external_data is not None and not earlier.external_data.is_file():
        return None
    return replace(earlier, reused=True)


def record_export(result: ExportResult, request: Mapping[str, Any]) -> None:
    """`result` into the catalog's exports table, replacing an earlier record at its path. In client mode
    (``ZOO_REGISTRY_URL=http://...``) nothing is recorded: the file carries its provenance, and publishing
    it (`zoo.publish_export`) records it in the service's catalog."""
    current().catalog.record_local_export(str(result.path.resolve()), {
        "model": result.model, "weights": result.weights, "sha256": result.sha256, "size": result.size,
        "opset": result.opset, "exporter": result.exporter, "dynamic_axes": result.to_json()["dynamic_axes"],
        "verification": [c.to_json() for c in result.verification], "options": dict(request),
        "result": result.to_json()})


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The zoo provenance in an exported model's ``metadata_props``, JSON values decoded.

    Keys without the ``zoo.`` prefix: model, weights, weights_sha256, task,
    preprocessing, categories, inputs, outputs, versions, exporter, opset, verification.
    Needs only the ``onnx`` package; external data is not read.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no ONNX file at {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UsageError(f"{path} is not an ONNX model: {first_line(exc)}") from exc
    return metadata.decode((prop.key, prop.value) for prop in proto.metadata_props)
