"""Pretrained weights that are checked by their full SHA-256 before they are loaded.

`Weights` and `WeightsEnum` extend torchvision's with the file's full hash and size;
plugins that ship or publish weights declare their enums with them. Every state dict
that reaches a model through the zoo is read by `state_dict_from`: from the bytes
whose hash `zoo.fetch.read_verified` checked, with ``torch.load(weights_only=True)``
or safetensors, so no weights file runs code.

torchvision's builders load their weights themselves (``WeightsEnum.get_state_dict``,
a pickle load through torch.hub). That call of any weights enum, torchvision's included,
is answered by the zoo's loader instead: within `loading_through`, which `zoo.build_model`
wraps around a build, by the block's loader; elsewhere by the process's loader once one is
set by `load_through_everywhere`, which `zoo.get_model_builder` does when it hands out a
plugin's own builder function (torchvision's ``resnet50`` itself, as torchvision's
``get_model_builder`` returns it, so the zoo cannot wrap it). Until then torchvision
behaves as it always does. The loaders come from `zoo.registry` (the zoo's verified
loading, with the catalog), which imports this module, not the other way round.
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torchvision.models

from zoo.errors import WeightsError, excerpt
from zoo.fetch import Loaded, WeightsFile, read_verified

#: Loads the state dict of a weights enum member (the member, then whether to show progress).
StateDictLoader = Callable[[torchvision.models.WeightsEnum, bool], dict[str, Any]]

_LOADER: ContextVar[StateDictLoader | None] = ContextVar("zoo_state_dict_loader", default=None)
_EVERYWHERE: StateDictLoader | None = None  # `load_through_everywhere`'s
_TORCHVISION_GET_STATE_DICT = torchvision.models.WeightsEnum.get_state_dict
_SNIFFED = 9  # bytes of a file that tell safetensors (`_is_safetensors`)


@dataclass(eq=False)  # keep torchvision's __eq__, which compares transforms sensibly
class Weights(torchvision.models.Weights):
    """torchvision's weights record plus the file's full SHA-256 and size in bytes."""

    sha256: str | None = None
    file_size: int | None = None


class WeightsEnum(torchvision.models.WeightsEnum):
    """A torchvision weights enum whose state dicts the zoo loads (verified, no code run)."""

    def get_state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        loader = _loader() or _load_member
        return loader(self, kwargs.get("progress", True))


@contextlib.contextmanager
def loading_through(loader: StateDictLoader) -> Iterator[None]:
    """Within this block (this thread or task only), every ``get_state_dict`` call is `loader`'s."""
    token = _LOADER.set(loader)
    try:
        yield
    finally:
        _LOADER.reset(token)


def load_through_everywhere(loader: StateDictLoader) -> None:
    """From now on, in every thread of this process, every ``get_state_dict`` call outside a `loading_through`
    block is `loader`'s (torchvision's builders called directly included): for builders the zoo hands out
    unwrapped. `loader` is expected to find its catalog when it is called (`zoo.context.current`)."""
    global _EVERYWHERE
    _EVERYWHERE = loader


def _loader() -> StateDictLoader | None:
    """Who answers a ``get_state_dict`` call here: `loading_through`'s loader, else `load_through_everywhere`'s."""
    return _LOADER.get() or _EVERYWHERE


def _get_state_dict(self: torchvision.models.WeightsEnum, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """torchvision's ``get_state_dict``: the zoo's loader (`_loader`) when there is one, else torchvision's own."""
    loader = _loader()
    if loader is None:
        return _TORCHVISION_GET_STATE_DICT(self, *args, **kwargs)
    return loader(self, kwargs.get("progress", True))


torchvision.models.WeightsEnum.get_state_dict = _get_state_dict


def catalog_enum(name: str, entries: list[dict[str, Any]]) -> type[WeightsEnum]:
    """A weights enum made from catalog records, for a model whose plugin lists weights
    without an enum class: ``transforms()`` builds the entry's `PreprocessSpec` on
    torchvision's transforms, ``meta`` is its metadata, ``DEFAULT`` the default entry.

    Each entry has member, url, transforms (spec JSON or None), meta, sha256,
    file_size and is_default.
    """
    from zoo.modeling.transforms import to_torchvision
    from zoo.preprocessing import PreprocessSpec

    members = []
    for entry in entries:
        spec = entry["transforms"]
        transforms = partial(to_torchvision, PreprocessSpec.from_json(spec)) if spec else None
        value = Weights(url=entry["url"], transforms=transforms, meta=entry["meta"], sha256=entry["sha256"],
                        file_size=entry["file_size"])
        members.append((entry["member"], value))
        if entry["is_default"]:
            members.append(("DEFAULT", value))  # the same value: an alias, as torchvision's DEFAULT is
    return WeightsEnum(name, members)


def load_state_dict(
    weights: torchvision.models.WeightsEnum, *, offline: bool | None = None, progress: bool = True
) -> dict[str, Any]:
    """The state dict of `weights`, from a file verified by its SHA-256 (see `zoo.fetch`)."""
    file = WeightsFile(weights.url, getattr(weights.value, "sha256", None))
    return state_dict_from(read_verified(file, offline=offline, progress=progress))


def _load_member(weights: torchvision.models.WeightsEnum, progress: bool) -> dict[str, Any]:
    return load_state_dict(weights, progress=progress)


def state_dict_from(loaded: Loaded) -> dict[str, Any]:
    """The state dict in verified bytes: safetensors for ``.safetensors`` files (and files without a
    suffix, such as the artifact store's, that are safetensors), else a ``torch.save`` file read with
    ``weights_only=True`` (tensors and plain containers, no code)."""
    try:
        if _is_safetensors(loaded.path, loaded.data[:_SNIFFED], len(loaded.data)):
            from safetensors.torch import load

            state = load(loaded.data)
        else:
            state = torch.load(io.BytesIO(loaded.data), map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to decode untrusted bytes is the file's fault
        raise _undecodable(loaded.path, exc) from None
    return _checked_state(loaded.path, state)  # as saved: an OrderedDict keeps the module versions (`_metadata`)


def shapes_in(path: Path) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor in the weights file at `path`, read as `state_dict_from` reads its bytes
    (tensors only, no code) but without reading the tensors' data: a safetensors file's header, or a ``torch.save``
    file mapped into memory (``mmap=True``), whose tensors' pages are never touched. So checking a file of
    gigabytes costs megabytes (`zoo.publish`)."""
    try:
        with path.open("rb") as f:
            safetensors = _is_safetensors(path, f.read(_SNIFFED), os.fstat(f.fileno()).st_size)
        if safetensors:
            from safetensors import safe_open

            with safe_open(str(path), "pt") as tensors:
                return {key: tuple(tensors.get_slice(key).get_shape()) for key in tensors.keys()}
        if not zipfile.is_zipfile(path):  # the format before torch 1.6 cannot be mapped, only read whole
            raise ValueError("neither safetensors nor the zip file torch.save writes (torch 1.6 and later); "
                             "save it again")
        state = torch.load(path, mmap=True, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to decode untrusted bytes is the file's fault
        raise _undecodable(path, exc) from None
    state = _checked_state(path, state)
    odd = next((key for key, value in state.items() if not isinstance(value, torch.Tensor)), None)
    if odd is not None:
        raise WeightsError(f"weights file {path} holds a {type(state[odd]).__name__} as {excerpt(odd)}, "
                           f"not a tensor")
    return {key: tuple(tensor.shape) for key, tensor in state.items()}


def _undecodable(path: Path, exc: Exception) -> WeightsError:
    return WeightsError(f"weights file {path} cannot be loaded as tensors only ({_reason(exc)}); "
                        f"nothing was loaded from it")


def _checked_state(path: Path, state: Any) -> dict[str, Any]:
    """`state` if it is a state dict (names to values); a `WeightsError` otherwise."""
    if not isinstance(state, dict) or [k for k in state if not isinstance(k, str)]:
        raise WeightsError(f"weights file {path} holds a {type(state).__name__}, not a state dict "
                           f"(a mapping of names to tensors)")
    return state


def _is_safetensors(path: Path, head: bytes, size: int) -> bool:
    """Whether the file at `path`, of `size` bytes starting with `head`, is read as safetensors: by its suffix,
    else (a file without one, such as the artifact store's) by how it starts: an 8-byte little-endian header
    length that fits, then the header's JSON object (a ``torch.save`` file starts with a zip or pickle header)."""
    if path.suffix:
        return path.suffix == ".safetensors"
    header = int.from_bytes(head[:8], "little")
    return size >= 10 and 0 < header <= size - 8 and head[8:9] == b"{"


def _reason(exc: Exception) -> str:
    """Why decoding failed, in one short line: for a weights-only refusal, the global it names,
    not torch's preamble (which suggests ``weights_only=False``) or its pointer to the docs."""
    boilerplate = ("Weights only load failed", "Check the documentation of torch.load")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = next((line for line in lines if not line.startswith(boilerplate)), None)
    return (reason or type(exc).__name__)[:200]
