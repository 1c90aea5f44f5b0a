"""FP16 exports: converted after the float32 export is verified, verified again on ONNX Runtime's CPU provider, the
precision recorded in the file and the catalog; and the Predictor's CUDA options, refused on a machine without CUDA.
Real torch, real ONNX Runtime; tolerances are the task's, never timings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import run_zoo
from zoo.context import current
from zoo.errors import UsageError
from zoo.export import export_onnx, list_exports, read_metadata, verify_file
from zoo.export.tasks import adapter
from zoo.runtime import Predictor, create_session
from zoo.runtime.predictor import CUDA_OPTIONS, _with_options, file_metadata, file_precision, float16_model
from zoo_digits.data import load_heldout

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


@pytest.fixture(scope="module")
def digits(synced_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx("digits_cnn", tmp_path_factory.mktemp("fp32") / "digits.onnx", weights="DEFAULT").path


@pytest.fixture(scope="module")
def half(synced_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx("digits_cnn", tmp_path_factory.mktemp("fp16") / "digits16.onnx", weights="DEFAULT",
                       precision="fp16").path


def _elem_types(path: Path) -> set[int]:
    graph = onnx.load(str(path)).graph
    return {t.data_type for t in graph.initializer}


def test_fp16_export_is_float16_inside_float32_outside_and_says_so(half: Path) -> None:
    assert onnx.TensorProto.FLOAT16 in _elem_types(half)
    meta = read_metadata(half)
    precision = meta["precision"]
    rtol, atol = adapter("classification").float16_tolerance
    assert precision["compute"] == "fp16" and precision["io"] == "fp32"
    assert precision["reference"] == "eager PyTorch in float32"
    assert (precision["rtol"], precision["atol"]) == (rtol, atol)
    assert precision["verified"].startswith("on CPUExecutionProvider")
    assert all(c["passed"] and c["rtol"] == rtol for c in meta["verification"])
    # the runtime reads the same record without onnx or a session, and picks float16 for it
    assert file_metadata(half) == meta and file_precision(half) == "fp16"
    session = create_session(half, providers="cpu")
    assert [i.type for i in session.get_inputs()] == ["tensor(float)"]


def test_fp16_export_predicts_as_the_float32_one(digits: Path, half: Path) -> None:
    images, _ = load_heldout()
    full, low = Predictor(digits, providers="cpu"), Predictor(half, providers="cpu")
    x = np.stack([full._preprocess(image) for image in images[:200]])
    a, b = full.run(x)["output"], low.run(x)["output"]
    assert b.dtype == np.float32
    rtol, atol = adapter("classification").float16_tolerance
    scale = max(1.0, float(np.abs(a).max()))
    assert np.all(np.abs(a - b) <= atol * scale + rtol * np.abs(a))
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.99


def test_fp16_inputs_and_outputs_on_request(synced_catalog: str, tmp_path: Path) -> None:
    path = export_onnx("digits_cnn", tmp_path / "io16.onnx", precision="fp16", io_precision="fp16").path
    session = create_session(path, providers="cpu")
    assert [i.type for i in session.get_inputs()] == ["tensor(float16)"]
    assert [o.type for o in session.get_outputs()] == ["tensor(float16)"]
    assert read_metadata(path)["precision"]["io"] == "fp16"
    # a Predictor still takes float32 and gives float32
    out = Predictor(path, providers="cpu").run(np.zeros((3, 1, 8, 8), np.float32))["output"]
    assert out.dtype == np.float32 and out.shape == (3, 10)


def test_the_catalog_records_the_precision_and_reexports_on_change(synced_catalog: str, tmp_path: Path,
                                                                  use_catalog) -> None:
    use_catalog(f"sqlite:///{tmp_path / 'registry.db'}")
    path = tmp_path / "digits.onnx"
    first = export_onnx("digits_cnn", path, precision="fp16")
    (listed,) = list_exports()
    options, result, sha256 = current().catalog.local_export(str(path.resolve()))
    assert listed["sha256"] == sha256 == first.sha256
    assert options["precision"] == "fp16" and options["io_precision"] == "fp32"
    assert result["metadata"]["precision"]["compute"] == "fp16"
    assert export_onnx("digits_cnn", path, precision="fp16", overwrite=True).reused
    again = export_onnx("digits_cnn", path, overwrite=True)  # fp32 now: another request, another file
    assert not again.reused and again.sha256 != first.sha256 and "precision" not in again.metadata


def test_verify_file_checks_an_fp16_export_at_its_tolerance(half: Path) -> None:
    checks = verify_file(half)
    assert checks and all(c.passed and c.rtol == adapter("classification").float16_tolerance[0] for c in checks)


@pytest.mark.parametrize(("options", "message"), [
    (dict(precision="bf16"), "precision bf16 is not offered: ONNX Runtime ships no bfloat16 converter"),
    (dict(precision="fp8"), "unknown precision 'fp8'; use fp32 or fp16"),
    (dict(io_precision="fp16"), "io_precision 'fp16' is not accepted with precision fp32"),
    (dict(precision="fp16", io_precision="int8"), "io_precision 'int8' is not accepted with precision fp16"),
])
def test_bad_precisions_are_one_line_and_write_nothing(synced_catalog: str, tmp_path: Path, options: dict,
                                                      message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        export_onnx("digits_cnn", tmp_path / "x.onnx", **options)
    assert "\n" not in str(caught.value) and not (tmp_path / "x.onnx").exists()


def test_cli_precision(synced_catalog: str, tmp_path: Path) -> None:
    done = run_zoo("export", "digits_cnn", "-o", str(tmp_path / "d.onnx"), "--precision", "fp16")
    assert "precision: fp16 (inputs and outputs fp32), against eager PyTorch in float32; verified on " \
           "CPUExecutionProvider" in done.stdout
    data = json.loads(run_zoo("export", "digits_cnn", "-o", str(tmp_path / "d.onnx"), "--precision", "fp16",
                              "--json").stdout)
    assert data["metadata"]["precision"]["compute"] == "fp16"
    refused = run_zoo("export", "digits_cnn", "-o", str(tmp_path / "b.onnx"), "--precision", "bf16", check=False)
    assert refused.returncode != 0 and "precision bf16 is not offered" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "b.onnx").exists()


def test_float16_model_repairs_the_converters_duplicate_casts() -> None:
    """A tensor read by two nodes the converter keeps in float32 (TopK here) gets two casts of one name from
    ONNX Runtime's converter; the helper keeps one, in an order the ONNX checker accepts."""
    from onnx import TensorProto, helper

    k = helper.make_tensor("k", TensorProto.INT64, [1], [2])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("TopK", ["r", "k"], ["v1", "i1"], axis=-1),
         helper.make_node("TopK", ["r", "k"], ["v2", "i2"], axis=-1),
         helper.make_node("Add", ["v1", "v2"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], initializer=[k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    converted = float16_model(model)
    onnx.checker.check_model(converted, full_check=True)
    names = [n.name for n in converted.graph.node if n.name]
    assert len(names) == len(set(names))
    x = np.array([[1.0, -2.0, 3.0, 0.5]], np.float32)
    (y,) = create_session_from(converted).run(None, {"x": x})
    np.testing.assert_allclose(y, [[6.0, 2.0]])


def create_session_from(model: onnx.ModelProto):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=[CPU])


# -- the Predictor's CUDA options -------------------------------------------------------


def test_cuda_options_reach_the_provider_list() -> None:
    # what create_session hands ONNX Runtime: the float16 default under what was asked, a CUDA graph on top
    assert _with_options([CUDA, CPU], False, {"prefer_nhwc": "1", "cudnn_conv_algo_search": "HEURISTIC"}) == [
        (CUDA, {"prefer_nhwc": "1", "cudnn_conv_algo_search": "HEURISTIC"}), CPU]
    assert _with_options([CUDA, CPU], True, {"do_copy_in_default_stream": "0"}) == [
        (CUDA, {"do_copy_in_default_stream": "0", "enable_cuda_graph": "1"}), CPU]
    assert _with_options([CPU], False, {}) == [CPU]
    assert {"prefer_nhwc", "cudnn_conv_algo_search", "enable_cuda_graph", "do_copy_in_default_stream"} <= set(
        CUDA_OPTIONS)


def test_a_cpu_session_gets_no_cuda_options(half: Path) -> None:
    session = create_session(half, providers="cpu")
    assert session.get_providers() == [CPU] and set(session.get_provider_options()) == {CPU}


@pytest.mark.parametrize(("options", "message"), [
    ({"prefer_nhwc": True}, "provider options prefer_nhwc are CUDAExecutionProvider options and this session runs "
                            "on CPUExecutionProvider"),
    ({"enable_cuda_graph": "1"}, "provider options enable_cuda_graph are CUDAExecutionProvider options"),
    ({"prefer_nchw": "1"}, "unknown provider option 'prefer_nchw'; CUDA options: prefer_nhwc, "),
    ({"cudnn_conv_algo_search": "FAST"}, "provider option cudnn_conv_algo_search takes EXHAUSTIVE, HEURISTIC, "
                                         "DEFAULT, not 'FAST'"),
    (["prefer_nhwc"], "provider_options is a mapping of CUDA options"),
])
def test_cuda_options_are_refused_in_one_line_on_the_cpu(digits: Path, options: object, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        Predictor(digits, providers="cpu", provider_options=options)
    assert "\n" not in str(caught.value)


def test_io_binding_follows_the_device(digits: Path) -> None:
    assert Predictor(digits, providers="cpu")._binding is None  # CPU: plain runs
    assert Predictor(digits, providers="cpu", io_binding=True)._binding is not None


def test_file_metadata_of_files_that_are_not_models(tmp_path: Path) -> None:
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "text.onnx").write_bytes(b"\xff" * 64)
    assert file_metadata(tmp_path / "empty.onnx") == {} and file_precision(tmp_path / "text.onnx") == "fp32"
