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

With ``precision="fp16"`` the verified float32 file is then converted to float16
(`zoo.runtime.float16_model`, inputs and outputs float32 unless ``io_precision="fp16"``)
and verified again against the same float32 PyTorch at the task's `float16_tolerance`;
``precision`` in the metadata says what it computes in, what it was compared with and
on what (ONNX Runtime's CPU provider runs float16 nodes it has no float16 kernel for in
float32, so there the float16 weights are verified, not float16 arithmetic).

`verify_file` runs that verification again on an existing export, from what its metadata
says (not from the file's own verification record): the registry's check of a published
export (`zoo.publish_export`).

The steps live in this package: `zoo.export.plan` (what to export, resolved once),
`zoo.export.exporters` (dynamo and TorchScript), `zoo.export.verify` (the numpy
comparisons) and `zoo.export.records` (the catalog's exports table, `read_metadata`).
Whatever differs between tasks (wrapping, default shape, verification inputs,
comparison, tolerances, layouts) comes from the task's adapter in `zoo.export.tasks`.
Importing this package does not import torch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import metadata
from zoo.errors import PluginError, UsageError, WeightsError, excerpt, first_line
from zoo.export.exporters import (default_opset, dynamic_axes_of, export_model, flat_module, flatten_output,
                                  onnxruntime_limits, opset_of, output_structure)
from zoo.export.plan import ExportPlan, ExportRequest, check_arguments, make_plan
from zoo.export.records import ExportResult, list_exports, read_metadata, record_export, reusable_export
from zoo.fetch import sha256_of
from zoo.outputs import staged_output
from zoo.progress import status
from zoo.shapes import dims_text, parse_shape
from zoo.export.verify import CannotVerifyError, ExportVerificationError, OutputCheck

if TYPE_CHECKING:
    import torch

__all__ = ["ExportResult", "ExportVerificationError", "CannotVerifyError", "OutputCheck", "export_onnx",
           "verify_file", "read_metadata", "list_exports", "default_opset"]

#: Above this many bytes of parameters and buffers, tensors go to external data
#: (``<name>.data`` next to the file): protobuf cannot serialise 2 GiB.
_EXTERNAL_DATA_BYTES = 1_800_000_000
#: Above this many parameters (the catalog's count) `verify_file` does not build the model: the work that
#: verifying a published export may cause is bounded (about 1.2 GB of float32 weights).
MAX_VERIFY_PARAMETERS = 300_000_000
#: Most values of an input that `verify_file` runs the model on (e.g. 1x3x1182x1182); the export's second
#: run, at another batch, has up to `zoo.export.tasks.SECOND_BATCH` times as many.
MAX_VERIFY_INPUT_ELEMENTS = 1 << 22
#: What `verify_file` compares of the metadata that the model, weights and input shape determine (`_determined`).
_COMPARED = ("weights", "task", "preprocessing", "categories", "inputs", "outputs")


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
    precision: str = "fp32",
    io_precision: str = "fp32",
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
    detection model). `precision` is what the file computes in: ``"fp32"``, or ``"fp16"``
    (verified at the task's `float16_tolerance` unless `rtol`/`atol`; ``"bf16"`` is refused
    in one line), with inputs and outputs in `io_precision` (``"fp32"``, what users feed,
    or ``"fp16"``). Without weights the random initialisation is seeded, so the
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
    shape = check_arguments(input_shape=input_shape, opset=opset, rtol=rtol, atol=atol, builder_kwargs=builder_kwargs,
                            precision=precision, io_precision=io_precision)
    options = dict(input_shape=shape, dynamic_batch=dynamic_batch, dynamic_image_size=dynamic_image_size, opset=opset,
                   rtol=rtol, atol=atol, builder_kwargs=builder_kwargs, precision=precision, io_precision=io_precision)
    with staged_output(path, overwrite=overwrite, what="export path") as work:
        request = None
        if isinstance(model_or_name, str) and record:
            request = ExportRequest.resolve(model_or_name, weights, **options).to_json()
            earlier = reusable_export(path, request)
            if earlier is not None:
                return earlier
        with status(f"building {model_or_name if isinstance(model_or_name, str) else 'the model'}"):
            plan = make_plan(model_or_name, weights=weights, **options)
        result = _export_staged(plan, work, path)
    if request is not None:
        record_export(result, request)
    return result


def _export_staged(plan: ExportPlan, work: Path, path: Path) -> ExportResult:
    """Export, check and verify `plan` into the folder `work`, as ``work / path.name``, to be moved to `path`."""
    import onnx

    with status(f"exporting {plan.name} to ONNX"):
        runs, output_names, flatten = _verification_runs(plan)
        example = runs[0]
        large = _tensor_bytes(plan.module) > _EXTERNAL_DATA_BYTES

        raw = work / "exported.onnx"
        exporter, reason = export_model(flat_module(plan.module, flatten), example, raw, adapter=plan.adapter,
                                        input_names=plan.input_names, output_names=output_names,
                                        dynamic_batch=plan.dynamic_batch, dynamic_image_size=plan.dynamic_image_size,
                                        opset=plan.opset)
    with status("inferring shapes and checking the ONNX graph"):
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

    # a float16 file is converted from a float32 one verified first at float32's tolerance
    full = plan if plan.precision == "fp32" else replace(plan, precision="fp32", io_precision="fp32",
                                                         rtol=plan.adapter.tolerance[0], atol=plan.adapter.tolerance[1])
    checks = _verify(full, staged, runs, output_names, flatten)
    _check_passed(full, checks, "no file written")
    if plan.precision == "fp16":
        proto, checks = _float16(plan, staged, runs, output_names, flatten, large, meta, checks)

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


def _float16(plan: ExportPlan, staged: Path, runs: list[tuple[torch.Tensor, ...]], output_names: list[str],
             flatten: Any, large: bool, meta: dict[str, str],
             float32_checks: list[OutputCheck]) -> tuple[Any, list[OutputCheck]]:
    """The verified float32 file at `staged` converted to float16 in place, verified at `plan`'s tolerance; its proto
    and checks (none where this machine's ONNX Runtime has no kernel to run it with), `meta` given ``precision``."""
    import onnx

    from zoo.runtime.predictor import float16_model

    with status(f"converting {plan.name} to float16"):
        proto = float16_model(staged, keep_io_types=plan.io_precision == "fp32")
        _save(proto, staged, large, meta)
        try:
            onnx.checker.check_model(str(staged), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise ExportVerificationError(f"the float16 conversion of {plan.name} is not a valid ONNX graph "
                                          f"({first_line(exc)}); export it with precision fp32", []) from None
    record: dict[str, Any] = {
        "compute": "fp16", "io": plan.io_precision, "reference": "eager PyTorch in float32",
        "rtol": plan.rtol, "atol": plan.atol,
        "float32_max_abs_error": max((c.max_abs_error for c in float32_checks), default=0.0),
    }
    try:
        checks = _verify(plan, staged, runs, output_names, flatten)
    except Exception as exc:  # noqa: BLE001 - a graph ONNX Runtime cannot load (UsageError) or run (its own types)
        if "Could not find an implementation" not in str(exc):
            raise ExportVerificationError(f"the float16 conversion of {plan.name} does not run in ONNX Runtime "
                                          f"({first_line(exc)}); export it with precision fp32", []) from None
        checks = []
        record["verified"] = ("not on this machine (no fp16 kernels on CPUExecutionProvider: "
                              f"{first_line(exc)[:200]})")
    else:
        _check_passed(plan, checks, "no file written")
        record["verified"] = ("on CPUExecutionProvider, which runs float16 nodes it has no float16 kernel for "
                              "(convolutions among them) in float32: the float16 weights and graph are verified, "
                              "float16 arithmetic is not")
    meta.update(metadata.encode({"precision": record}))
    return proto, checks


def verify_file(path: str | os.PathLike[str]) -> list[OutputCheck]:
    """Verify the single-file export at `path` again, from what its zoo metadata says it is; its checks, all passed.

    The file's own verification record is not read. The model it names is built with the
    weights it names (catalog weights, or published weights ``NAMESPACE/NAME:VERSION``), as
    `export_onnx` builds it; what those determine (weights, task, preprocessing,
    categories, input and output names and layouts) must be what the metadata says, and
    its ``weights_sha256``, when it records one, the hash of the weights the catalog
    resolves. The task's adapter makes the verification inputs at the recorded input shape
    (and, for each symbolic axis of the file's input, at another size), and ONNX Runtime's
    outputs must match eager PyTorch's within the task's tolerances.

    Raises `ExportVerificationError` when the file is not what its metadata says, a `UsageError`
    when the metadata does not say what to build, and `CannotVerifyError` when this machine
    cannot tell: torch or the model's plugin is not importable here, its weights cannot be
    fetched, the catalog counts the model above `MAX_VERIFY_PARAMETERS` parameters (or not
    at all), an input is above `MAX_VERIFY_INPUT_ELEMENTS` values, or the file was not made
    by `export_onnx` alone (int8 quantized, or built with builder arguments, which are not
    built on another's behalf).
    """
    path = Path(path)
    meta = read_metadata(path)
    model, weights = meta.get("model"), meta.get("weights")
    if not isinstance(model, str) or not isinstance(weights, str):
        raise UsageError(f"{path}'s metadata names no model and weights (zoo.model, zoo.weights) to verify it with")
    name, shape = _recorded_input(path, meta)
    _check_reproducible(path, meta, model, shape)
    symbolic = dynamic_axes_of(path).get(name, {}).keys()  # the file's symbolic axes are verified at another size
    precision = meta.get("precision") if isinstance(meta.get("precision"), dict) else {}
    try:
        with status(f"building {model} with {weights}"):
            plan = make_plan(model, weights=weights, input_shape=shape, dynamic_batch=0 in symbolic,
                             dynamic_image_size=bool({len(shape) - 2, len(shape) - 1} & symbolic), opset=None,
                             rtol=None, atol=None, builder_kwargs=None, precision=precision.get("compute", "fp32"),
                             io_precision=precision.get("io", "fp32"))
    except (ImportError, PluginError, WeightsError) as exc:  # torch, the plugin or the weights are not here
        raise CannotVerifyError(f"{model} with {weights} cannot be built here: {first_line(exc)}") from exc
    runs, output_names, flatten = _verification_runs(plan)
    _check_determined(path, meta, plan, output_names)
    try:
        checks = _verify(plan, path, runs, output_names, flatten)
    except Exception as exc:  # onnxruntime's errors derive from Exception alone: the graph does not load or run
        raise ExportVerificationError(f"{path} does not run in ONNX Runtime as {plan.name}: {first_line(exc)}",
                                      []) from None
    _check_passed(plan, checks, f"{path} is not the export it says it is")
    return checks


def _recorded_input(path: Path, meta: Mapping[str, Any]) -> tuple[str, tuple[int, ...]]:
    """The name and shape of the first input that `path`'s metadata records (``inputs[0]``), the shape checked."""
    inputs = meta.get("inputs")
    first = inputs[0] if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict) else {}
    return str(first.get("name")), parse_shape(first.get("export_shape"), what=f"{path}'s recorded input shape",
                                               min_rank=2)


def _check_reproducible(path: Path, meta: Mapping[str, Any], model: str, shape: tuple[int, ...]) -> None:
    """A `CannotVerifyError` for a file that `verify_file` does not build and run the model of: too large,
    or not made by `export_onnx` alone from a catalog model and weights."""
    from zoo.registry import describe

    if "quantization" in meta:
        raise CannotVerifyError(f"{path} is quantized to int8: it is not compared with PyTorch at float32 "
                                "tolerances")
    if meta.get("builder_kwargs"):
        raise CannotVerifyError(f"{path} was exported with the builder arguments {excerpt(meta['builder_kwargs'])}: "
                                "models are built on a publisher's behalf only as the catalog describes them")
    count = describe(model)["num_params"]
    if count is None or count > MAX_VERIFY_PARAMETERS:
        raise CannotVerifyError(f"{model} has {f'{count:,}' if count else 'an unknown number of'} parameters; "
                                f"exports of models of at most {MAX_VERIFY_PARAMETERS:,} are verified again")
    if math.prod(shape) > MAX_VERIFY_INPUT_ELEMENTS:
        raise CannotVerifyError(f"{path}'s input shape {dims_text(shape)} has {math.prod(shape):,} values; exports "
                                f"are verified again at inputs of at most {MAX_VERIFY_INPUT_ELEMENTS:,}")


def _check_determined(path: Path, meta: Mapping[str, Any], plan: ExportPlan, output_names: list[str]) -> None:
    """An `ExportVerificationError` naming each entry of `path`'s metadata that is not what `plan` determines
    (``weights_sha256`` only where the file records one)."""
    expected = metadata.decode(metadata.encode(_determined(plan, output_names)).items())
    differ = [key for key in _COMPARED if meta.get(key) != expected[key]]
    if meta.get("weights_sha256") not in (None, plan.weights_sha256):
        differ.append("weights_sha256")
    if differ:
        raise ExportVerificationError(
            f"{path}'s metadata does not match {plan.name} with {plan.weights} in this catalog: "
            f"{', '.join(differ)} differ{'s' if len(differ) == 1 else ''}", [])


def _verification_runs(plan: ExportPlan) -> tuple[list[tuple[torch.Tensor, ...]], list[str], Any]:
    """The inputs both runtimes see (the task's), and the names and flattening of the model's outputs."""
    import torch

    runs = plan.adapter.verification_inputs(plan.input_shape, dynamic_batch=plan.dynamic_batch,
                                            dynamic_image_size=plan.dynamic_image_size)
    with torch.inference_mode():
        try:
            eager = plan.module(*runs[0])
        except Exception as exc:
            raise UsageError(f"{plan.name} cannot run on an input of shape {dims_text(plan.input_shape)}: "
                             f"{first_line(exc)}") from exc
    output_names, flatten = output_structure(eager)
    return runs, output_names, flatten


def _check_passed(plan: ExportPlan, checks: list[OutputCheck], outcome: str) -> None:
    """An `ExportVerificationError` (its message ending in `outcome`) unless every check passed."""
    if all(c.passed for c in checks):
        return
    detail = "; ".join(
        f"{c.name} at {dims_text(c.input_shape)}: max abs error {c.max_abs_error:.3g}, "
        f"max rel error {c.max_rel_error:.3g}"
        + (f", {c.unmatched} of {c.detections} detections unmatched" if c.unmatched else "")
        for c in checks if not c.passed)
    raise ExportVerificationError(
        f"exported {plan.name} does not match PyTorch (rtol={plan.rtol:g}, atol={plan.atol:g}): {detail}; "
        f"{outcome}", checks)


def _verify(plan: ExportPlan, onnx_path: Path, runs: list[tuple[torch.Tensor, ...]], output_names: list[str],
            flatten: Any) -> list[OutputCheck]:
    """Every output of ONNX Runtime (CPU) against eager PyTorch, on each run's inputs, compared by the task."""
    import torch

    from zoo.runtime import create_session

    checks: list[OutputCheck] = []
    with status(f"verifying {onnx_path.name} in ONNX Runtime against {plan.name} in PyTorch"):
        session = create_session(onnx_path, providers="cpu")
        half = {i.name for i in session.get_inputs() if i.type == "tensor(float16)"}
        for inputs in runs:
            with torch.inference_mode():
                expected = [t.detach().numpy() for t in flatten_output(plan.module(*inputs), flatten)]
            got = session.run(output_names, {name: x.numpy().astype("float16" if name in half else "float32")
                                             for name, x in zip(plan.input_names, inputs)})
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
        **_determined(plan, output_names),
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "exporter": exporter,
        "fallback_reason": reason,
        "opset": opset,
    }
    return metadata.encode(values)


def _determined(plan: ExportPlan, output_names: list[str]) -> dict[str, Any]:
    """The provenance that the model, its weights, builder arguments and input shape determine."""
    return {
        "model": plan.name,
        "weights": plan.weights,
        "weights_sha256": plan.weights_sha256,
        "task": plan.task,
        "preprocessing": plan.preprocessing,
        "categories": plan.categories,
        "inputs": [{"name": name, "layout": plan.input_layout, "export_shape": list(plan.input_shape)}
                   for name in plan.input_names],
        "outputs": [{"name": n, "layout": plan.output_layout(n)} for n in output_names],
        "builder_kwargs": json.loads(json.dumps(dict(plan.builder_kwargs), default=repr)),  # JSON, else as written
    }


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
