"""torchvision's own registry tests (torchvision 0.29, ``test/test_extended_models.py``), run against zoo.

Each case is torchvision's, with torchvision's lookups replaced by zoo's, for every torchvision
submodule: ``list_models`` with its module, include and exclude filters (and ``""``, which
torchvision reads as no filter), builder identity, ``get_model_weights`` by name and by builder,
``get_weight`` for every weights name. Cases that need the network are left out (the
``PYTORCH_TEST_WITH_EXTENDED`` checks of metadata against real weights), or made offline
(``test_get_model`` builds without the ImageNet backbone download). The last test shows that a
builder the zoo hands out, torchvision's own function, still loads its weights through the zoo's
verified path.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import io
import pickle
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from torchvision.models import detection, optical_flow, quantization, segmentation, video

import zoo
from zoo.context import current

MODULES = [tvm, detection, optical_flow, quantization, segmentation, video]
MODULE_IDS = ["models", "detection", "optical_flow", "quantization", "segmentation", "video"]

# torchvision's parameters of test_list_models_filters
TORCHVISION_INCLUDE = [None, [], (), {}, "*resnet*", ["*alexnet*"], "*not-existing-model-for-test?",
                       ["*resnet*", "*alexnet*"], ["*resnet*", "*alexnet*", "*not-existing-model-for-test?"],
                       ("*resnet*", "*alexnet*"), {"*resnet*", "*alexnet*"}, {"*resnet*": "test", "*alexnet*": "test"}]
TORCHVISION_EXCLUDE = [None, [], (), {}, "*resnet*", ["*alexnet*"], ["*not-existing-model-for-test?"],
                       ["resnet34", "*not-existing-model-for-test?"], ["resnet34", "*resnet1*"],
                       ("resnet34", "*resnet1*"), {"resnet34", "*resnet1*"},
                       {"resnet34": "test", "**resnet1**": "test"}]
# and the empty pattern: "" is no filter to torchvision (it is falsy), [""] a filter that matches no name
EMPTY = ["", [""], ("",)]

# torchvision's sample of one model per submodule, with its class, builder and weights enum
SAMPLES = [
    ("resnet50", tvm.ResNet, tvm.resnet50, tvm.ResNet50_Weights),
    ("retinanet_resnet50_fpn_v2", detection.RetinaNet, detection.retinanet_resnet50_fpn_v2,
     detection.RetinaNet_ResNet50_FPN_V2_Weights),
    ("raft_large", optical_flow.RAFT, optical_flow.raft_large, optical_flow.Raft_Large_Weights),
    ("quantized_resnet50", quantization.QuantizableResNet, quantization.resnet50,
     quantization.ResNet50_QuantizedWeights),
    ("lraspp_mobilenet_v3_large", segmentation.LRASPP, segmentation.lraspp_mobilenet_v3_large,
     segmentation.LRASPP_MobileNet_V3_Large_Weights),
    ("mvit_v1_b", video.MViT, video.mvit_v1_b, video.MViT_V1_B_Weights),
]
SAMPLE_NAMES = [name for name, *_ in SAMPLES]

pytestmark = pytest.mark.usefixtures("synced_catalog")


def models_in(module) -> list[str]:
    """torchvision's ``get_models_from_module``: the public builder names defined in `module`."""
    return [v.__name__ for k, v in module.__dict__.items()
            if callable(v) and k[0].islower() and k[0] != "_" and k not in tvm._api.__all__]


def every_model() -> list[str]:
    return tvm.list_models()


@pytest.mark.parametrize(("name", "model_class"), [(name, cls) for name, cls, *_ in SAMPLES], ids=SAMPLE_NAMES)
def test_get_model(name: str, model_class: type) -> None:
    # No ImageNet backbone download (these machines have no model hub): the class is what is checked.
    parameters = inspect.signature(tvm.get_model_builder(name)).parameters
    offline = {"weights_backbone": None} if "weights_backbone" in parameters else {}
    with torch.device("meta"):  # no memory, no initialisation
        assert isinstance(zoo.get_model(name, **offline), model_class)


@pytest.mark.parametrize(("name", "model_fn"), [(name, fn) for name, _, fn, _ in SAMPLES], ids=SAMPLE_NAMES)
def test_get_model_builder(name: str, model_fn) -> None:
    assert zoo.get_model_builder(name) == model_fn


def test_get_model_builder_is_torchvisions_for_every_model() -> None:
    names = every_model()
    assert len(names) > 100
    builders = {name: zoo.get_model_builder(name) for name in names}
    assert builders == {name: tvm.get_model_builder(name) for name in names}


@pytest.mark.parametrize(("name", "weight"), [(name, enum) for name, *_, enum in SAMPLES], ids=SAMPLE_NAMES)
def test_get_model_weights(name: str, weight) -> None:
    assert zoo.get_model_weights(name) == weight


def test_get_model_weights_is_torchvisions_for_every_model_by_name_and_by_builder() -> None:
    for name in every_model():
        expected = tvm.get_model_weights(name)
        assert zoo.get_model_weights(name) is expected, name
        assert zoo.get_model_weights(tvm.get_model_builder(name)) is expected, name


@pytest.mark.parametrize("copy_fn", [copy.copy, copy.deepcopy])
@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_weights_copyable(copy_fn, name: str) -> None:
    for weights in list(zoo.get_model_weights(name)):
        assert copy_fn(weights) is weights


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_weights_deserializable(name: str) -> None:
    for weights in list(zoo.get_model_weights(name)):
        assert pickle.loads(pickle.dumps(weights)) is weights


@pytest.mark.parametrize("module", MODULES, ids=MODULE_IDS)
def test_list_models(module) -> None:
    expected = set(models_in(module))
    listed = zoo.list_models(module)
    assert len(listed) > 0
    assert {name.replace("quantized_", "") for name in listed} == expected
    assert listed == tvm.list_models(module)


@pytest.mark.parametrize("module", MODULES, ids=MODULE_IDS)
def test_list_models_filters_as_torchvision_for_every_module(module) -> None:
    for include in TORCHVISION_INCLUDE + EMPTY:
        for exclude in TORCHVISION_EXCLUDE + EMPTY:
            expected = tvm.list_models(module, include=include, exclude=exclude)
            assert zoo.list_models(module, include=include, exclude=exclude) == expected, (include, exclude)
            assert zoo.list_models(module, include, exclude) == expected, (include, exclude)


@pytest.mark.parametrize("include_filters", TORCHVISION_INCLUDE)
@pytest.mark.parametrize("exclude_filters", TORCHVISION_EXCLUDE)
def test_list_models_filters(include_filters, exclude_filters) -> None:
    """torchvision's test_list_models_filters as it is written (module torchvision.models), answered by zoo."""
    module = tvm
    b = {x.replace("quantized_", "") for x in zoo.list_models(module, include=include_filters, exclude=exclude_filters)}
    if isinstance(include_filters, str):
        base = include_filters.strip("*?")
        a = {x for x in models_in(module) if base in x}
    elif not include_filters:
        a = set(models_in(module))
    else:
        a = set()
        for include_f in include_filters:
            base = include_f.strip("*?")
            a |= {x for x in models_in(module) if base in x}
    if isinstance(exclude_filters, str):
        base = exclude_filters.strip("*?")
        a -= {x for x in models_in(module) if base in x}
    elif exclude_filters is not None:
        for exclude_f in exclude_filters:
            base = exclude_f.strip("*?")
            a -= {x for x in models_in(module) if base in x}
    assert a == b


@pytest.mark.parametrize("module", MODULES, ids=MODULE_IDS)
def test_an_empty_pattern_is_read_as_torchvision_reads_it(module) -> None:
    everything = tvm.list_models(module)
    assert zoo.list_models(module, include="") == zoo.list_models(module, include=[]) == everything
    assert zoo.list_models(module, exclude="") == everything
    assert zoo.list_models(module, include=[""]) == tvm.list_models(module, include=[""]) == []


@pytest.mark.parametrize(("name", "weight"), [
    ("ResNet50_Weights.IMAGENET1K_V1", tvm.ResNet50_Weights.IMAGENET1K_V1),
    ("ResNet50_Weights.DEFAULT", tvm.ResNet50_Weights.IMAGENET1K_V2),
    ("ResNet50_QuantizedWeights.DEFAULT", quantization.ResNet50_QuantizedWeights.IMAGENET1K_FBGEMM_V2),
    ("ResNet50_QuantizedWeights.IMAGENET1K_FBGEMM_V1", quantization.ResNet50_QuantizedWeights.IMAGENET1K_FBGEMM_V1),
])
def test_get_weight(name: str, weight) -> None:
    assert zoo.get_weight(name) == weight


def test_get_weight_is_torchvisions_for_every_weights_name() -> None:
    names = sorted({f"{type(w).__name__}.{member}" for model in every_model()
                    for member, w in tvm.get_model_weights(model).__members__.items()})
    assert len(names) > 200 and "ResNet50_Weights.DEFAULT" in names
    for name in names:
        assert zoo.get_weight(name) is tvm.get_weight(name), name


@pytest.mark.parametrize("module", MODULES, ids=MODULE_IDS)
def test_naming_conventions(module) -> None:
    for model_fn in [tvm.get_model_builder(name) for name in tvm.list_models(module)]:
        weights_enum = zoo.get_model_weights(model_fn)
        assert weights_enum is not None
        assert len(weights_enum) == 0 or hasattr(weights_enum, "DEFAULT")


def _state_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_a_builder_from_the_zoo_loads_its_weights_through_the_zoo(sqlite_url: str, use_catalog, isolated_cache: Path,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's resnet18 itself, handed out by the zoo, reads its weights from the zoo's mirror (offline),
    checked against the full hash the catalog knows; a cached file with other bytes is refused, where
    torchvision's own loader would load a cached file unchecked."""
    use_catalog(sqlite_url)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("ZOO_WEIGHTS_MIRROR", str(mirror))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    builder = zoo.get_model_builder("resnet18")
    assert builder is tvm.resnet18

    torch.manual_seed(0)
    served = tvm.resnet18().state_dict()
    data = _state_bytes(served)
    member = tvm.ResNet18_Weights.DEFAULT
    (mirror / Path(member.url).name).write_bytes(data)
    current().catalog.learn_sha256(member.url, hashlib.sha256(data).hexdigest(), len(data))  # as a first download

    loaded = builder(weights="DEFAULT").state_dict()
    assert loaded.keys() == served.keys() and all(torch.equal(loaded[k], served[k]) for k in served)
    cached = isolated_cache / Path(member.url).name
    assert cached.read_bytes() == data  # the verified copy, in torch.hub's cache

    torch.manual_seed(1)
    cached.write_bytes(_state_bytes(tvm.resnet18().state_dict()))  # other bytes of the same size and name
    with pytest.raises(zoo.HashMismatchError, match=f"weights file {cached} has SHA-256"):
        builder(weights=member)
    with pytest.raises(zoo.HashMismatchError):  # torchvision's function called directly: the same path
        tvm.resnet18(weights=member)
