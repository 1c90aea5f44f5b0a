"""zoo: a plugin-based model zoo and registry for PyTorch vision models.

The public API is re-exported here lazily: ``import zoo`` loads nothing heavy, and
torch is imported only when a model is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "list_models": "zoo.registry",
    "summarize_models": "zoo.registry",
    "get_model": "zoo.registry",
    "build_model": "zoo.registry",
    "BuiltModel": "zoo.registry",
    "get_model_builder": "zoo.registry",
    "get_model_weights": "zoo.registry",
    "get_weight": "zoo.registry",
    "describe": "zoo.registry",
    "list_plugins": "zoo.registry",
    "sync": "zoo.catalog.sync",
    "hookimpl": "zoo.hookspecs",
    "ModelSpec": "zoo.specs",
    "WeightsSpec": "zoo.specs",
    "DeferredSpec": "zoo.specs",
    "ZooError": "zoo.errors",
    "UsageError": "zoo.errors",
    "UnknownNameError": "zoo.errors",
    "UnknownModelError": "zoo.errors",
    "UnknownWeightsError": "zoo.errors",
    "PluginError": "zoo.errors",
    "CatalogError": "zoo.errors",
    "WeightsError": "zoo.errors",
    "HashMismatchError": "zoo.errors",
    "freeze": "zoo.modeling.freezing",
    "unfreeze": "zoo.modeling.freezing",
    "FreezeReport": "zoo.modeling.freezing",
    "FrozenBatchNorm": "zoo.modeling.freezing",
    "GradualUnfreezer": "zoo.modeling.freezing",
    "param_groups": "zoo.modeling.optim",
    "finetune": "zoo.training.finetune",
    "Recipe": "zoo.training.recipe",
    "FinetuneResult": "zoo.training.recipe",
    "EpochMetrics": "zoo.training.recipe",
    "PreprocessSpec": "zoo.preprocessing",
    "Weights": "zoo.modeling.weights",
    "WeightsEnum": "zoo.modeling.weights",
    "summarize": "zoo.tools.summary",
    "export_onnx": "zoo.export",
    "read_metadata": "zoo.export",
    "list_exports": "zoo.export",
    "ExportResult": "zoo.export",
    "ExportVerificationError": "zoo.export",
    "feature_nodes": "zoo.tools.summary",
    "features_model": "zoo.tools.summary",
    "extract_features": "zoo.tools.summary",
    "Predictor": "zoo.runtime",
    "predict": "zoo.runtime",
    "evaluate": "zoo.training.evaluate",
    "Evaluation": "zoo.runtime.evaluation",
    "record_evaluation": "zoo.measurements",
    "list_measurements": "zoo.measurements",
    "Measurement": "zoo.measurements",
    "quantize_int8": "zoo.tools.quantize",
    "bench": "zoo.tools.bench",
    "TaskAdapter": "zoo.export.tasks",
    "fetch_weights": "zoo.registry",
    "weights_path": "zoo.registry",
    "verify_weights": "zoo.registry",
    "publish_weights": "zoo.publish",
    "publish_export": "zoo.publish",
    "resolve_published": "zoo.publish",
    "list_published": "zoo.publish",
    "set_alias": "zoo.publish",
    "find_export": "zoo.publish",
    "PublishedWeights": "zoo.publish",
    "PublishedExport": "zoo.publish",
    "ArtifactStore": "zoo.store",
    "Artifact": "zoo.store",
    "ArtifactError": "zoo.errors",
    "ArtifactTooLargeError": "zoo.errors",
    "UnknownArtifactError": "zoo.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from zoo.catalog.sync import sync
    from zoo.export import ExportResult, ExportVerificationError, export_onnx, list_exports, read_metadata
    from zoo.errors import (
        CatalogError,
        HashMismatchError,
        PluginError,
        UnknownModelError,
        UnknownNameError,
        UnknownWeightsError,
        UsageError,
        WeightsError,
        ZooError,
    )
    from zoo.modeling.freezing import FreezeReport, FrozenBatchNorm, GradualUnfreezer, freeze, unfreeze
    from zoo.hookspecs import hookimpl
    from zoo.modeling.optim import param_groups
    from zoo.training.finetune import finetune
    from zoo.training.recipe import EpochMetrics, FinetuneResult, Recipe
    from zoo.preprocessing import PreprocessSpec
    from zoo.modeling.weights import Weights, WeightsEnum
    from zoo.tools.summary import extract_features, feature_nodes, features_model, summarize
    from zoo.registry import (
        BuiltModel,
        build_model,
        describe,
        fetch_weights,
        get_model,
        get_model_builder,
        get_model_weights,
        get_weight,
        list_models,
        list_plugins,
        summarize_models,
        verify_weights,
        weights_path,
    )
    from zoo.tools.bench import bench
    from zoo.export.tasks import TaskAdapter
    from zoo.tools.quantize import quantize_int8
    from zoo.runtime import Predictor, predict
    from zoo.runtime.evaluation import Evaluation
    from zoo.training.evaluate import evaluate
    from zoo.measurements import Measurement, list_measurements, record_evaluation
    from zoo.specs import DeferredSpec, ModelSpec, WeightsSpec
    from zoo.errors import ArtifactError, ArtifactTooLargeError, UnknownArtifactError
    from zoo.publish import (
        PublishedExport,
        PublishedWeights,
        find_export,
        list_published,
        publish_export,
        publish_weights,
        resolve_published,
        set_alias,
    )
    from zoo.store import Artifact, ArtifactStore
