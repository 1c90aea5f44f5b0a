"""The public lookups: torchvision's model API, answered from the catalog.

`list_models`, `summarize_models`, `describe` and `list_plugins` only read the
catalog; the others also import the model's builder or weights enum, and so torch and
the plugin.
Names are case-insensitive.

Names. Every model is ``PLUGIN/NAME`` (PLUGIN: its plugin's namespace); a bare
``NAME`` means the model that answers it: the one named first in ``$ZOO_PREFER``
(comma-separated namespaces), else the one the catalog gave the name to (its first
provider: installing a plugin never changes what a name means; see
`zoo.catalog.sync`). Listings show each model under the name that reaches it: the
bare name where it answers it, else the qualified one. Weights are named
``Enum.MEMBER`` (an enum's class name, within the plugin that answers for it),
``NAME.TAG`` (any model name, bare or qualified, and the tag as the plugin spells
it, e.g. timm's ``resnet50.a1_in1k``), ``PLUGIN/Enum.MEMBER``, or ``NAME.DEFAULT``;
`build_model` also takes published weights, ``NAMESPACE/NAME[:VERSION|@ALIAS]``
(`zoo.publish`), when no plugin's weights have that name: plugin names win a clash.

Every function asks the catalog of the current context (`zoo.context.current`): a SQL
catalog (`zoo.catalog.sql`), or with ``ZOO_REGISTRY_URL=http://HOST:PORT`` a registry
service's (`zoo.service.client.HttpCatalog`); both answer with the records of `zoo.records`,
and everything built from them (builders, weights enums, `build_model`) works alike,
given the model's plugin is installed here; files come into the weights cache, verified.
"""

from __future__ import annotations

import copy
import enum
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache, partial, wraps
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from zoo.catalog.api import Catalog, Patterns
from zoo.catalog.ranking import check_limit
from zoo.context import current
from zoo.errors import (
    HashMismatchError,
    PluginError,
    UnknownNameError,
    UnknownWeightsError,
    UsageError,
    WeightsError,
    excerpt,
)
from zoo.records import HF_HUB, ModelRecord, PublishedWeights, is_spec
from zoo.specs import ADAPTS_WEIGHTS
from zoo.targets import load_target, target_of

if TYPE_CHECKING:  # zoo.fetch (urllib, http.client) is imported only by the lookups that touch files
    from zoo.fetch import Fetched, WeightsFile

FetchedT = TypeVar("FetchedT", bound="Fetched")


def list_models(
    module: ModuleType | Patterns = None,
    include: Patterns = None,
    exclude: Patterns = None,
    *,
    task: str | None = None,
    plugin: str | None = None,
    pretrained: bool | None = None,
    max_params: int | None = None,
    min_metric: Mapping[str, float] | None = None,
    search: str | None = None,
    sort: str | None = None,
    limit: int | None = None,
) -> list[str]:
    """Sorted names (with `search`, most relevant first) of the registered models that match, as torchvision's
    ``list_models`` takes them.

    `module` (optional, as in torchvision) keeps the models whose builder is defined
    in a module directly inside it, e.g. ``torchvision.models.detection``; a pattern
    in its place is taken as `include`. `include` and `exclude` are fnmatch patterns
    (a string or a list), matched against the bare name, or the qualified
    ``PLUGIN/NAME`` for a pattern with a ``/``; as in torchvision, an empty one (``""``,
    ``[]``) filters nothing, and a non-empty list keeps the models that any of its
    patterns match (so ``[""]`` keeps none). The filters run as SQL: `task` (the
    model's, or one of its weights'); `plugin` (namespace, plugin or distribution
    name); `pretrained` (has weights or not); `max_params`; `min_metric`, e.g.
    ``{"ImageNet-1K:acc@1": 75}``, met by at least one of the model's weights (a bare
    ``{"acc@1": 75}`` is taken on the one dataset with acc@1, refused when several have it);
    `search`, words that every model listed has (each as a prefix) in its name, tags, task,
    plugin, weights names, paper names, notes or docs, e.g. ``"vision transformer"``: the
    names come most relevant first, a model named exactly `search` first (`zoo.catalog.search`).
    `sort` ranks the names instead: ``"name"``, ``"params"``, ``"gflops"`` or a metric
    (``"ImageNet-1K:acc@1"``), each in its natural order (metrics best first, the others
    ascending), ``"-KEY"`` descending, ``"+KEY"`` ascending, models without a value last;
    `limit` keeps the first N (`zoo.catalog.ranking`). A model is listed under the name that
    reaches it (see the module docstring). torchvision's own answer, its
    ``list_models(module, include, exclude)``, is ``list_models(module, include, exclude)`` here,
    and its bare ``list_models()`` is ``list_models(plugin="torchvision")``, while torchvision
    answers its bare names (the default: ``$ZOO_PREFER`` may give them to another plugin).
    """
    module, include = _module_or_include(module, include)
    catalog, limit = current().catalog, check_limit(limit)
    filters = {"task": task, "plugin": plugin, "pretrained": pretrained, "max_params": max_params,
               "min_metric": min_metric, "search": search}
    found = (catalog.names(include or None, exclude or None, **filters) if sort is None else
             [(m.name, m.builder) for m in catalog.models(include or None, exclude or None, sort=sort,
                                                          limit=limit if module is None else None, **filters)])
    return [name for name, builder in found if module is None or _in_module(builder, module)][:limit]


def summarize_models(include: Patterns = None, exclude: Patterns = None, *, sort: str | None = None,
                     limit: int | None = None, **filters: Any) -> list[dict[str, Any]]:
    """Like `list_models` (same arguments, `search` among the filters), but one summary per model, as plain data:
    name, qualified_name, task, plugin (namespace), builder, num_params, weights (full
    names), default_weights, gflops (of the default weights) and metrics (each
    ``DATASET:METRIC``, the best value of any of the model's weights)."""
    return [summary.to_json() for summary in
            current().catalog.models(include, exclude, sort=sort, limit=check_limit(limit), **filters)]


def metric_names() -> list[str]:
    """Every ``DATASET:METRIC`` some weights of the catalog have, sorted: what `sort` and `min_metric` name."""
    return current().catalog.metric_names()


def describe(name: str) -> dict[str, Any]:
    """The catalog record of a model and its weights, as plain data (`zoo.records.ModelRecord`'s JSON).

    `name` is the name that reaches the model, `qualified_name` its ``PLUGIN/NAME``,
    `providers` the qualified names of every model with the same bare name, and
    `published` the weights published for it (`zoo.publish`), every version.
    """
    return copy.deepcopy(current().catalog.describe(name).to_json())  # the catalog keeps the record: a copy


def list_plugins() -> list[dict[str, Any]]:
    """Every plugin in the catalog: name, namespace, distribution, version, status, error, model
    count, the models that failed, whether this machine has it installed (can build its models),
    and `shared`: its model names that other plugins also provide, with the namespace that
    answers each bare name."""
    return current().catalog.plugins()


def get_model_builder(name: str) -> Callable[..., Any]:
    """The function that builds model `name` (imports its plugin); the weights it loads go through the zoo.

    A plugin's builder function, for a model without builder arguments, is returned as it is, as
    torchvision's ``get_model_builder`` returns it (``get_model_builder("resnet50") is
    torchvision.models.resnet50``). Its weights still go through the zoo: from then on, every
    ``get_state_dict`` call of a weights enum in this process is answered by the zoo's verified loading,
    with the catalog current at that moment (`zoo.modeling.weights.load_through_everywhere`), so also
    torchvision's builders called directly. Any other builder (builder arguments bound, a class) comes
    wrapped, so that the state dicts it asks for are loaded by the zoo (`_through_zoo`).
    """
    catalog = current().catalog
    record = catalog.describe(name)
    builder = _builder(record)
    if record.builder_args or not inspect.isfunction(builder):
        return _through_zoo(builder, catalog, record.hashes)
    from zoo.modeling.weights import load_through_everywhere

    load_through_everywhere(_verified_with_current_catalog)
    return builder


def _builder(record: ModelRecord) -> Callable[..., Any]:
    """The builder of the model `record` describes, its builder arguments bound."""
    builder = _from_plugin(record.builder, record)
    return partial(builder, **record.builder_args) if record.builder_args else builder


def _from_plugin(target: str, record: ModelRecord) -> Any:
    """Import `target` of the model `record` describes; one line naming the plugin to install when it fails."""
    try:
        return load_target(target)
    except PluginError as exc:
        plugin = record.plugin
        raise PluginError(f"{record.qualified_name} needs its plugin {plugin.namespace} installed here: "
                          f"pip install '{plugin.distribution}=={plugin.version}' ({exc})") from None


def _through_zoo(builder: Callable[..., Any], catalog: Catalog, hashes: Mapping[str, str]) -> Callable[..., Any]:
    """`builder`, except that every state dict it asks for (its weights, torchvision's backbone
    weights) is read and verified by the zoo, from `catalog`: torchvision's own loader never sees a file.
    `hashes` are full hashes already known (the record of the model being built)."""

    @wraps(builder)
    def build(*args: Any, **kwargs: Any) -> Any:
        from zoo.modeling.weights import loading_through

        with loading_through(partial(_verified_state_dict, catalog, hashes)):
            return builder(*args, **kwargs)

    return build


def _verified_with_current_catalog(member: enum.Enum, progress: bool) -> dict[str, Any]:
    """The state dict of weights `member`, verified by the full hash its enum declares (the zoo's
    `zoo.modeling.weights.Weights`), else the one the catalog of the context current when it is loaded
    knows (the loader `get_model_builder` sets for builders it hands out unwrapped)."""
    declared = getattr(member.value, "sha256", None)
    return _verified_state_dict(current().catalog, {member.url: declared} if declared else {}, member, progress)


def get_model_weights(name: str | Callable[..., Any]) -> type[enum.Enum]:
    """The weights enum class of a model, given its name or its builder.

    For a model whose plugin lists weights without an enum class, the zoo makes one
    from the catalog (`zoo.modeling.weights.catalog_enum`), so ``transforms()`` and ``meta``
    work as in torchvision.
    """
    catalog = current().catalog
    if callable(name):
        name = _built_by(target_of(name), [(m.qualified_name, m.builder) for m in catalog.models()])
    return _enum_of(catalog.describe(name))


def _built_by(target: str, named: Iterable[tuple[str, str]]) -> str:
    """The name of the one model (of (name, builder) pairs) that `target` builds."""
    found = [name for name, builder in named if builder == target]
    if len(found) != 1:
        raise UsageError(f"{target} builds {len(found)} registered models; pass a model name instead" if found
                         else f"{target} is not the builder of any registered model")
    return found[0]


def _enum_of(record: ModelRecord) -> type[enum.Enum]:
    """The weights enum of the model `record` describes: its plugin's, or one the zoo makes for it."""
    if record.weights_enum is not None:
        return _from_plugin(record.weights_enum, record)
    if not record.weights:
        raise UnknownWeightsError(f"{record.name}.DEFAULT", [])
    entries = [{"member": w.member, "url": w.url, "transforms": w.transforms, "meta": w.meta,
                "sha256": w.sha256, "file_size": w.file_size, "is_default": w.is_default}
               for w in record.weights]
    return _catalog_enum(f"{record.qualified_name.partition('/')[2]}_weights", json.dumps(entries, sort_keys=True))


@lru_cache(maxsize=256)
def _catalog_enum(name: str, entries: str) -> type[enum.Enum]:
    """One enum class per model and catalog content, so that its members compare (and are) the same
    from call to call, as torchvision's are."""
    from zoo.modeling.weights import catalog_enum

    return catalog_enum(name, json.loads(entries))


def get_weight(name: str | enum.Enum | None, *, model: str | None = None) -> enum.Enum | None:
    """A weights enum member from any of the names torchvision users write, and the zoo's.

    Accepts ``"ResNet50_Weights.IMAGENET1K_V2"``, ``"resnet50.IMAGENET1K_V2"``,
    ``"resnet50.DEFAULT"``, ``"timm/resnet50.a1_in1k"``,
    ``"torchvision/ResNet50_Weights.DEFAULT"``, a bare tag or ``"DEFAULT"`` together
    with `model`, an enum member (returned as is) and None.
    """
    return _member(current().catalog, name, model, None)


def _member(catalog: Catalog, name: str | enum.Enum | None, model: str | None,
            record: ModelRecord | None) -> enum.Enum | None:
    """`get_weight`; `record`, when given, is the record of `model`, used if the weights are its own."""
    if name is None or isinstance(name, enum.Enum):
        return name
    if not isinstance(name, str):
        raise UsageError(f"weights must be a name, an enum member or None, not {type(name).__name__}")
    own = _own_member(record, name) if record is not None else None
    if own is not None:  # the model's own weights, named as its record names them: no lookup needed
        return _enum_of(record)[own]
    owner, member = catalog.weights_owner(name, model)
    owner_record = record if record is not None and record.qualified_name == owner else catalog.describe(owner)
    return _enum_of(owner_record)[member]


def _own_member(record: ModelRecord, name: str) -> str | None:
    """The member of `record`'s weights that `name` names exactly (``DEFAULT``, or a full name the record
    lists); None for any other name, which the catalog resolves."""
    if name.upper() == "DEFAULT":
        return next((w.member for w in record.weights if w.is_default), None)
    return next((w.member for w in record.weights if w.name == name), None)


def weights_owner(name: str, *, model: str | None = None) -> tuple[str, str]:
    """The model (``PLUGIN/NAME``) whose weights enum holds the weights `name` names (read as `get_weight`
    reads it), and the member's name."""
    return current().catalog.weights_owner(name, model)


@dataclass(frozen=True)
class BuiltModel:
    """A model from `build_model`, and what happened to the pretrained tensors (None without weights)."""

    model: Any
    report: Any  # zoo.modeling.surgery.LoadReport | None


def get_model(name: str, *, weights: str | enum.Enum | None = None, pretrained: bool | None = None,
              **config: Any) -> Any:
    """Build model `name`, with `weights` (any form `get_weight` accepts, or published weights
    ``NAMESPACE/NAME[:VERSION|@ALIAS]``) and builder `config`.

    Unlike torchvision, ``num_classes`` works with pretrained weights (a fresh head)
    and ``in_channels`` adapts the first convolution; `build_model` also says which
    tensors were loaded, adapted or left new. A weights name in place of `name`
    (timm's ``resnet18.a1_in1k``, ``hf-hub:timm/resnet18.a1_in1k``) means its model with
    those weights; ``pretrained=True`` means the default weights (see `build_model`).
    """
    return build_model(name, weights=weights, pretrained=pretrained, **config).model


def build_model(
    name: str,
    *,
    weights: str | enum.Enum | None = None,
    pretrained: bool | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    **config: Any,
) -> BuiltModel:
    """Build model `name` with pretrained `weights`, a head of `num_classes` and a stem for `in_channels`.

    `name` is a model name, or a weights name that is none (``ARCH.TAG``, timm's
    ``hf-hub:ORG/REPO``): the model of those weights, with them, or with
    ``pretrained=False`` built as for them but with random tensors (timm's
    ``create_model("ARCH.TAG")``). ``pretrained=True`` with no `weights` means the
    model's default weights.

    With weights, the pretrained model is built first (as its builder knows how), then
    the heads the catalog lists for it are replaced by fresh ones of `num_classes`
    outputs and its first convolution adapted to `in_channels` (`zoo.modeling.surgery`); the
    report of `zoo.modeling.surgery.load_partial` accounts for every pretrained tensor. Weights
    listed without an enum build the model with the weights' builder arguments (and
    `num_classes`, so the builder makes the new head, also for embedding weights that
    have none), then the verified state dict is loaded: strictly, unless the head is new.
    A builder that adapts pretrained tensors itself (`zoo.specs.ADAPTS_WEIGHTS`: timm's) gets
    the verified state dict and every keyword (``num_classes=0``, ``features_only``,
    ``in_chans``/`in_channels`, ``img_size``), and loads it as its library loads its own
    downloads; its report compares the checkpoint with the built model (`surgery.builder_report`).
    """
    catalog = current().catalog
    record, implied = _model_or_weights(catalog, name)
    weights, random_as = _chosen_weights(record, weights, implied, pretrained)
    member, published = _weights_or_published(catalog, weights, record.qualified_name, record)
    # weights listed without an enum: the zoo builds the model for them and loads them
    entry = record.weights_named(member.name) if member is not None and record.weights_enum is None else None
    if published is not None and published.model != record.qualified_name:
        raise UsageError(f"published weights {published.spec} are for {published.model}, not {name}")
    builder = _through_zoo(_builder(record), catalog, record.hashes)
    # published weights fit their own head and stem: the zoo's surgery, not the builder's adapting, fits them
    adapts = published is None and ADAPTS_WEIGHTS in inspect.signature(builder).parameters
    _check_surgery(record, num_classes=num_classes, in_channels=in_channels,
                   pretrained=member is not None or published is not None, adapts=adapts)
    if adapts:  # the builder makes the head and the stem, and adapts the tensors it gets
        config = {**config, **_given(num_classes=num_classes, in_channels=in_channels)}
        num_classes = in_channels = None
    if member is None and published is None:
        no_weights = {"weights": None} if record.weights_enum else {}  # torchvision's convention
        model = builder(**no_weights, **random_as, **config, **_given(num_classes=num_classes))
        return _with_stem(BuiltModel(model, None), record, in_channels, None)

    categories = published.categories if published is not None else member.meta.get("categories")
    new_head = num_classes is not None and num_classes != len(categories or ())
    if entry is None and published is None:  # torchvision's convention: the builder loads its weights
        model = builder(weights=member, **config)
        pretrained_tensors = model.state_dict()  # holds the pretrained tensors after the modules are swapped
        if new_head:
            replace_heads(model, record.classifier, num_classes)
    elif adapts:  # the builder loads and adapts the verified tensors (timm's load_pretrained)
        from zoo.modeling.surgery import builder_report

        tensors = _verified_state_dict(catalog, record.hashes, member, progress=True)
        model = builder(**{**entry.builder_args, **config, ADAPTS_WEIGHTS: tensors})
        return BuiltModel(model, builder_report(model, tensors, record.classifier))
    else:  # the builder makes the head (also where the weights have none: embeddings); the rest must load
        if published is not None:  # the head its categories imply, the file from the artifact store
            pretrained_tensors = _published_state_dict(catalog, published)
            args, what = published.builder_args, published.spec
        else:
            pretrained_tensors = _verified_state_dict(catalog, record.hashes, member, progress=True)
            args, what = entry.builder_args, str(member)
        model = builder(**{**args, **config, **_given(num_classes=num_classes if new_head else None)})
        if not new_head:
            _load_strictly(model, pretrained_tensors, what)
    return _with_stem(BuiltModel(model, None), record, in_channels, pretrained_tensors)


def _given(**values: Any) -> dict[str, Any]:
    """The keyword arguments among `values` that are not None."""
    return {key: value for key, value in values.items() if value is not None}


def _model_or_weights(catalog: Catalog, name: str) -> tuple[ModelRecord, str | None]:
    """The record of the model `name` names, and the member of its weights that `name` names when it is a
    weights name instead (``resnet18.a1_in1k``, ``timm/resnet18.a1_in1k``, ``hf-hub:timm/resnet18.a1_in1k``);
    the model's own error when it is neither."""
    try:
        return catalog.describe(name), None
    except UnknownNameError as not_a_model:
        if "." not in name and not name.startswith(HF_HUB):
            raise
        try:
            owner, member = catalog.weights_owner(name, None)
        except (UnknownNameError, UsageError):
            raise not_a_model from None
    return catalog.describe(owner), member


def _chosen_weights(record: ModelRecord, weights: str | enum.Enum | None, implied: str | None,
                    pretrained: bool | None) -> tuple[str | enum.Enum | None, dict[str, Any]]:
    """The weights to build with, given `weights`, the member `implied` by a weights name given as the model's
    name, and `pretrained` (None: as the names say); and the builder arguments of a random model built as for
    the implied weights (``pretrained=False``)."""
    if pretrained is not None and not isinstance(pretrained, bool):
        raise UsageError(f"pretrained must be True, False or None, not {excerpt(pretrained)}")
    if implied is not None and weights is not None:
        raise UsageError(f"{record.qualified_name}.{implied} names its weights already; pass weights=None, "
                         f"or the model's name {record.qualified_name} with weights=")
    if weights is not None and pretrained is False:
        raise UsageError(f"pretrained=False contradicts weights={excerpt(str(weights))}; pass one of them")
    if implied is not None:
        entry = record.weights_named(implied)
        if pretrained is False:
            return None, dict(entry.builder_args) if entry is not None else {}
        return entry.name, {}
    return ("DEFAULT" if pretrained and weights is None else weights), {}


def replace_heads(model: Any, classifier: list[str], num_classes: int) -> None:
    """Fresh heads of `num_classes` outputs at the `classifier` paths (the first always; auxiliary heads,
    which some builders drop with weights, where the model has them)."""
    from zoo.modeling import surgery

    surgery.replace_head(model, classifier[0], num_classes)
    for path in classifier[1:]:
        if surgery.has_submodule(model, path):
            surgery.replace_head(model, path, num_classes)


def _with_stem(built: BuiltModel, record: ModelRecord, in_channels: int | None,
               pretrained: dict[str, Any] | None) -> BuiltModel:
    """`built` with its first convolution adapted to `in_channels`, and the pretrained tensors loaded
    (adapted where the stem changed) with their report; as it is without either."""
    from zoo.modeling import surgery

    adapters = {}
    if in_channels is not None:
        surgery.replace_first_conv(built.model, record.first_conv, in_channels)
        adapters[f"{record.first_conv}.weight"] = surgery.adapt_conv_weight
    if pretrained is None:
        return built
    return BuiltModel(built.model, surgery.load_partial(built.model, pretrained, adapters))


def weights_or_published(weights: str | enum.Enum | None,
                         model: str) -> tuple[enum.Enum | None, PublishedWeights | None]:
    """The weights enum member `weights` names for `model`, or else the published weights it names
    (`zoo.publish`): plugin names win, and a published spec (``NS/NAME[:VERSION|@ALIAS]``, never
    with a ``.``) is looked up only when no plugin's weights have that name."""
    return _weights_or_published(current().catalog, weights, model, None)


def _weights_or_published(catalog: Catalog, weights: str | enum.Enum | None, model: str,
                          record: ModelRecord | None) -> tuple[enum.Enum | None, PublishedWeights | None]:
    try:
        return _member(catalog, weights, model, record), None
    except UnknownWeightsError:
        if not is_spec(weights):
            raise
    return None, catalog.resolve_published(weights)


def _published_state_dict(catalog: Catalog, published: PublishedWeights) -> dict[str, Any]:
    """The state dict of published weights: the stored file's bytes (in client mode, the service's, fetched
    into the weights cache), read once and checked by SHA-256."""
    from zoo.modeling.weights import state_dict_from

    return state_dict_from(catalog.published_bytes(published))


def _load_strictly(model: Any, state: dict[str, Any], what: str) -> None:
    """Load `state` into `model`, refusing (in one line) a file that does not fit it exactly."""
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"weights {what} do not fit the model built for them: {len(result.missing_keys)} tensor(s) missing "
            f"(e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:3]})")


def _check_surgery(record: ModelRecord, *, num_classes: int | None, in_channels: int | None,
                   pretrained: bool, adapts: bool) -> None:
    """Refuse a `num_classes` or `in_channels` the zoo cannot give the model; a builder that adapts pretrained
    tensors itself (`adapts`) takes ``num_classes=0`` (no head: pooled features, timm's convention) and does
    its own surgery."""
    if num_classes is not None and (not isinstance(num_classes, int) or isinstance(num_classes, bool)
                                    or num_classes < (0 if adapts else 1)):
        raise UsageError(f"num_classes must be 0 (no head: pooled features) or a positive integer, not {num_classes!r}"
                         if adapts else f"num_classes must be a positive integer, not {num_classes!r}"
                         + (" (0, pooled features without a head, is for timm's models)" if num_classes == 0 else ""))
    if in_channels is not None and (not isinstance(in_channels, int) or in_channels < 1):
        raise UsageError(f"in_channels must be a positive integer, not {in_channels!r}")
    if adapts:
        return
    name = record.qualified_name.partition("/")[2]
    if num_classes is not None and pretrained and not record.classifier:
        raise UsageError(f"model {name} declares no classifier, so num_classes cannot change "
                         f"its pretrained head; build it with weights=None or set the head with zoo.modeling.surgery")
    if in_channels is not None and not record.first_conv:
        raise UsageError(f"model {name} declares no first convolution, so in_channels cannot adapt it")


def fetch_weights(
    weights: str | enum.Enum, *, model: str | None = None, offline: bool | None = None, progress: bool = True
) -> Path:
    """Fetch the file of `weights` (a `get_weight` name, or a model name for its default) and verify it.

    Sources in order: the file itself (``file://``), the cache, ``$ZOO_WEIGHTS_MIRROR``,
    the URL; `offline` (default ``$ZOO_OFFLINE``) never uses the network. Returns the
    verified file's path. The first verified download of a file whose full hash was
    not known records it in the catalog. Published weights (``NS/NAME[:VERSION|@ALIAS]``,
    looked up when no plugin's weights or model has that name) come from the artifact
    store, or the registry service, into the weights cache (`Catalog.published_file`).
    """
    catalog = current().catalog
    try:
        file = _weights_file(catalog, weights, model)
    except UnknownNameError:
        if model is not None or not is_spec(weights):
            raise
        return catalog.published_file(catalog.resolve_published(weights), progress=progress).path
    return _fetch(catalog, file, offline=offline, progress=progress).path


def weights_path(weights: str | enum.Enum, *, model: str | None = None) -> Path:
    """Where the file of `weights` is used from (it may not have been fetched yet)."""
    from zoo.fetch import cached_path

    catalog = current().catalog
    return cached_path(_weights_file(catalog, weights, model), cache=catalog.cache)


def verify_weights(names: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Re-hash weights files: those of `names`, or every cached file of the catalog's weights.

    One record per file: weights, path, status ("ok", "mismatch" or "missing"),
    sha256 (actual) and expected; never raises for a bad file, it reports it. In client
    mode only named weights are verified (the service's catalog is not walked).
    """
    from zoo.fetch import WeightsFile, cached_path, verify

    catalog = current().catalog
    if names:
        files = [(name, _weights_file(catalog, name, None)) for name in names]
    else:
        files = [(name, WeightsFile(url, sha256)) for name, url, sha256 in catalog.weights_files()]
    report = []
    for name, file in files:
        path = cached_path(file, cache=catalog.cache)
        record = {"weights": name, "path": str(path), "expected": file.sha256 or file.hash_prefix}
        if not path.is_file():
            if names:
                report.append({**record, "status": "missing", "sha256": None})
            continue
        try:
            fetched = verify(path, file)
            report.append({**record, "status": "ok", "sha256": fetched.sha256})
        except HashMismatchError as exc:
            report.append({**record, "status": "mismatch", "sha256": exc.actual})
    return report


# -- names ---------------------------------------------------------------------------


def _module_or_include(module: ModuleType | Patterns, include: Patterns) -> tuple[ModuleType | None, Patterns]:
    """torchvision's ``list_models(module, include, exclude)``, and the zoo's ``list_models(include)``."""
    if module is None or isinstance(module, ModuleType):
        return module, include
    if include is not None:
        raise UsageError(f"list_models takes a module first, not {excerpt(module)}; pass patterns as include=")
    return None, module


def _in_module(builder: str, module: ModuleType) -> bool:
    """Whether `builder` is defined in a module directly inside `module` (torchvision's rule)."""
    return builder.partition(":")[0].rpartition(".")[0] == module.__name__


def _as_weights_name(name: str, model: str | None) -> tuple[str, str | None]:
    """A bare model name stands for its default weights."""
    return (name, model) if "." in name or model is not None else ("DEFAULT", name)


# -- weights files -------------------------------------------------------------------


def _weights_file(catalog: Catalog, name: str | enum.Enum, model: str | None) -> WeightsFile:
    """The file of weights `name` (a `get_weight` name, a model name for its default, or a member) and its
    full hash, when the catalog knows it."""
    from zoo.fetch import WeightsFile

    if isinstance(name, enum.Enum):
        return WeightsFile(name.url, catalog.known_sha256(name.url))
    owner, member = catalog.weights_owner(*_as_weights_name(name, model))
    entry = next(w for w in catalog.describe(owner).weights if w.member == member)  # the owner lists it
    return WeightsFile(entry.url, entry.sha256)


def _fetch(catalog: Catalog, file: WeightsFile, *, offline: bool | None, progress: bool,
           get: Callable[..., FetchedT] | None = None) -> FetchedT:
    """`file` by `get` (`fetch`, or `read_verified` for its bytes), checked against its hash; the first
    verified copy of a file without a known hash teaches it the catalog."""
    from zoo.fetch import fetch

    fetched = (get or fetch)(file, offline=offline, progress=progress, cache=catalog.cache)
    if file.sha256 is None:
        catalog.learn_sha256(file.url, fetched.sha256, fetched.size)
    return fetched


def _verified_state_dict(catalog: Catalog, hashes: Mapping[str, str], member: enum.Enum,
                         progress: bool) -> dict[str, Any]:
    """The state dict of weights `member`, read from the very bytes whose hash was checked."""
    from zoo.fetch import WeightsFile, read_verified
    from zoo.modeling.weights import state_dict_from

    file = WeightsFile(member.url, hashes.get(member.url) or catalog.known_sha256(member.url))
    return state_dict_from(_fetch(catalog, file, offline=None, progress=progress, get=read_verified))
