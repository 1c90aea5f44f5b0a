"""ONNX export: one verified ``.onnx`` file per model, with its provenance inside.

`export_onnx` builds a catalog model (or takes an ``nn.Module``), exports it with
PyTorch's ``torch.export``-based exporter (``dynamo=True``) and falls back to the
TorchScript exporter when that fails, then, before the file appears at its path:

- runs ONNX shape inference and stores the result, so that every intermediate
  tensor carries its shape (``value_info``), and runs the full ONNX checker;
- runs the file in ONNX Runtime (CPU) and compares every output with eager PyTorch
  (eval mode, inference mode) at the export batch size and, with a dynamic batch,
  at another one; a mismatch raises `ExportVerificationError` and leaves no file;
- writes the provenance (model, weights and their SHA-256, preprocessing spec,
  categories, task, input/output names and layouts, library versions, exporter,
  opset, verification) into the model's ``metadata_props``.

The steps live in this package: `zoo.export.plan` (what to export, resolved once),
`zoo.export.exporters` (dynamo and TorchScript), `zoo.export.verify` (the numpy
comparisons) and `zoo.export.records` (the catalog's exports table, `read_metadata`).
Whatever differs between tasks (wrapping, default shape, verification inputs,
comparison, tolerances, layouts) comes from the task's adapter in `zoo.export.tasks`.
Importing this package does not import torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import metadata
from zoo.errors import UsageError, first_line
from zoo.export.exporters import (default_opset, dynamic_axes_of, export_model, flat_module, flatten_output,
                                  onnxruntime_limits, opset_of, output_structure)
from zoo.export.plan import ExportPlan, ExportRequest, check_arguments, make_plan
from zoo.export.records import ExportResult, list_exports, read_metadata, record_export, reusable_export
from zoo.fetch import sha256_of
from zoo.outputs import staged_output
from zoo.shapes import dims_text
from zoo.export.verify import ExportVerificationError, OutputCheck

if TYPE_CHECKING:
    import torch

__all__ = ["ExportResult", "ExportVerificationError", "OutputCheck", "export_onnx", "read_metadata",
           "list_exports", "default_opset"]

#: Above this many bytes of parameters and buffers, tensors go to external data
#: (``<name>.data`` next to the file): protobuf cannot serialise 2 GiB.
_EXTERNAL_DATA_BYTES = 1_800_000_000


def export_onnx(
    model_or_name: str | torch.nn.Module,
    path: str | os.PathLike[str],
    *,
    weights: Any = None,
    input_shape: Sequence[int] | None = None,
    dynamic_batch: bool | None = None,
    dynamic_image_size: bool | None = None,
    opset: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    builder_kwargs: Mapping[str, Any] | None = None,
    record: bool = True,
    overwrite: bool = False,
) -> ExportResult:
    """Export a catalog model (by name, with `weights`) or an ``nn.Module`` to ONNX at `path`, verified.

    `input_shape` (N, C, H, W; of each input, for a model of several such as optical
    flow) defaults to what the model's task adapter (`zoo.export.tasks`) derives: for most, the
    one size its architecture takes (``image_size``, as ViT declares it), else the
    preprocessing of its weights (or of its default weights when `weights` is None): the
    crop size, else the resize size, else the weights' ``min_size``, batch 1; a detection
    model defaults to a square of its own ``min_size``. `dynamic_batch` (default: yes,
    except for tasks that take one image, such as detection) makes the batch dimension
    symbolic, and `dynamic_image_size` (default: the task's, yes for detection) height
    and width. `opset` defaults to `default_opset`. `rtol`/`atol` default to the task's
    tolerance. `builder_kwargs` go to the model's builder (e.g. ``min_size`` of a
    detection model). Without weights the random initialisation is seeded, so the
    same request exports the same model. `record=False` keeps a throwaway export (a
    benchmark's temporary file) out of the catalog's exports table.

    The file appears at `path` only once it is checked and verified; on any failure
    nothing is left there. It is written as `zoo.outputs.staged_output` writes: only a
    regular file, replacing an existing file only if it is an earlier zoo export (or
    `overwrite`) and not write-protected (unless `overwrite`). The opset recorded is
    the one the file holds; an explicit `opset` the exporters cannot write is an error.
    Raises `UsageError` for bad arguments or unsupported models
    and `ExportVerificationError` (a `ZooError`) when ONNX Runtime's outputs differ
    from PyTorch's beyond the tolerances.
    """
    path = Path(path)
    shape = check_arguments(input_shape=input_shape, opset=opset, rtol=rtol, atol=atol, builder_kwargs=builder_kwargs)
    options = dict(input_shape=shape, dynamic_batch=dynamic_batch, dynamic_image_size=dynamic_image_size, opset=opset,
                   rtol=rtol, atol=atol, builder_kwargs=builder_kwargs)
    with staged_output(path, overwrite=overwrite, what="export path") as work:
        request = None
        if isinstance(model_or_name, str) and record:
            request = ExportRequest.resolve(model_or_name, weights, **options).to_json()
            earlier = reusable_export(path, request)
            if earlier is not None:
                return earlier
        plan = make_plan(model_or_name, weights=weights, **options)
        result = _export_staged(plan, work, path)
    if request is not None:
        record_export(result, request)
    return result


def _export_staged(plan: ExportPlan, work: Path, path: Path) -> ExportResult:
    """Export, check and verify `plan` into the folder `work`, as ``work / path.name``, to be moved to `path`."""
    import onnx
    import torch

    runs = plan.adapter.verification_inputs(plan.input_shape, dynamic_batch=plan.dynamic_batch,
                                            dynamic_image_size=plan.dynamic_image_size)
    example = runs[0]
    with torch.inference_mode():
        try:
            eager = plan.module(*example)
        except Exception as exc:
            raise UsageError(f"{plan.name} cannot run on an input of shape {dims_text(plan.input_shape)}: "
                             f"{first_line(exc)}") from exc
    output_names, flatten = output_structure(eager)
    large = _tensor_bytes(plan.module) > _EXTERNAL_DATA_BYTES

    raw = work / "exported.onnx"
    exporter, reason = export_model(flat_module(plan.module, flatten), example, raw, adapter=plan.adapter,
                                    input_names=plan.input_names, output_names=output_names,
                                    dynamic_batch=plan.dynamic_batch, dynamic_image_size=plan.dynamic_image_size,
                                    opset=plan.opset)
    inferred = work / "inferred.onnx"
    onnx.shape_inference.infer_shapes_path(str(raw), str(inferred), check_type=True, data_prop=True)
    proto = onnx.load(str(inferred), load_external_data=True)
    used_opset = opset_of(proto)  # what the file holds is what is recorded
    ir_version = min(proto.ir_version, onnxruntime_limits()[1])
    proto.ir_version = ir_version
    intermediate, missing = _shape_coverage(proto)

    meta = _provenance(plan, output_names, exporter, used_opset, reason)
    staged = work / path.name
    _save(proto, staged, large, meta)
    onnx.checker.check_model(str(staged), full_check=True)

    checks = _verify(plan, staged, runs, output_names, flatten)
    if not all(c.passed for c in checks):
        detail = "; ".join(
            f"{c.name} at {dims_text(c.input_shape)}: max abs error {c.max_abs_error:.3g}, "
            f"max rel error {c.max_rel_error:.3g}"
            + (f", {c.unmatched} of {c.detections} detections unmatched" if c.unmatched else "")
            for c in checks if not c.passed)
        raise ExportVerificationError(
            f"exported {plan.name} does not match PyTorch (rtol={plan.rtol:g}, atol={plan.atol:g}): {detail}; "
            f"no file written", checks)

    meta.update(metadata.encode({"verification": [c.to_json() for c in checks]}))
    _save(proto, staged, large, meta)
    data_file = staged.with_name(staged.name + ".data")
    return ExportResult(
        path=path,
        sha256=sha256_of(staged),
        size=staged.stat().st_size + (data_file.stat().st_size if data_file.exists() else 0),
        external_data=path.with_name(data_file.name) if data_file.exists() else None,
        model=plan.name,
        task=plan.task,
        weights=plan.weights,
        opset=used_opset,
        ir_version=ir_version,
        exporter=exporter,
        fallback_reason=reason,
        input_names=list(plan.input_names),
        output_names=output_names,
        input_shape=plan.input_shape,
        dynamic_axes=dynamic_axes_of(proto),
        shape_inference_complete=not missing,
        intermediate_tensors=intermediate,
        tensors_without_shape=missing,
        verification=checks,
        metadata=read_metadata(staged),
    )


def _verify(plan: ExportPlan, onnx_path: Path, runs: list[tuple[torch.Tensor, ...]], output_names: list[str],
            flatten: Any) -> list[OutputCheck]:
    """Every output of ONNX Runtime (CPU) against eager PyTorch, on each run's inputs, compared by the task."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    checks: list[OutputCheck] = []
    for inputs in runs:
        with torch.inference_mode():
            expected = [t.detach().numpy() for t in flatten_output(plan.module(*inputs), flatten)]
        got = session.run(output_names, {name: x.numpy() for name, x in zip(plan.input_names, inputs)})
        checks += plan.adapter.compare(output_names, expected, got, tuple(inputs[0].shape), plan.rtol, plan.atol)
    return checks


def _shape_coverage(proto: Any) -> tuple[int, list[str]]:
    """How many intermediate tensors there are, and which lack a full (static or symbolic) shape."""
    graph = proto.graph
    graph_io = {v.name for v in graph.input} | {v.name for v in graph.output} | {t.name for t in graph.initializer}
    shaped = set()
    for value in graph.value_info:
        t = value.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") or d.HasField("dim_param") for d in t.shape.dim):
            shaped.add(value.name)
    intermediate = [o for node in graph.node for o in node.output if o and o not in graph_io]
    return len(intermediate), [name for name in intermediate if name not in shaped]


def _provenance(plan: ExportPlan, output_names: list[str], exporter: str, opset: int,
                reason: str | None) -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import torchvision

    values: dict[str, Any] = {
        "model": plan.name,
        "weights": plan.weights,
        "weights_sha256": plan.weights_sha256,
        "task": plan.task,
        "preprocessing": plan.preprocessing,
        "categories": plan.categories,
        "inputs": [{"name": name, "layout": plan.input_layout, "export_shape": list(plan.input_shape)}
                   for name in plan.input_names],
        "outputs": [{"name": n, "layout": plan.output_layout(n)} for n in output_names],
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "exporter": exporter,
        "fallback_reason": reason,
        "opset": opset,
    }
    return metadata.encode(values)


def _save(proto: Any, target: Path, large: bool, meta: Mapping[str, str]) -> None:
    import onnx

    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    if large:
        onnx.save_model(proto, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=target.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(proto, str(target))


def _tensor_bytes(model: Any) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
