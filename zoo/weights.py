"""Pretrained weights that are checked by their full SHA-256 before they are loaded.

`Weights` and `WeightsEnum` extend torchvision's with the file's full hash and size;
plugins that ship or publish weights declare their enums with them, and their
builders get the state dict through `load_state_dict`: fetched and verified by
`zoo.fetch`, read with ``torch.load(weights_only=True)`` or safetensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision.models

from zoo.fetch import WeightsFile, fetch


@dataclass(eq=False)  # keep torchvision's __eq__, which compares transforms sensibly
class Weights(torchvision.models.Weights):
    """torchvision's weights record plus the file's full SHA-256 and size in bytes."""

    sha256: str | None = None
    file_size: int | None = None


class WeightsEnum(torchvision.models.WeightsEnum):
    """A torchvision weights enum whose state dicts are loaded through `load_state_dict`."""

    def get_state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return load_state_dict(self, progress=kwargs.get("progress", True))


def load_state_dict(
    weights: torchvision.models.WeightsEnum, *, offline: bool | None = None, progress: bool = True
) -> dict[str, Any]:
    """The state dict of `weights`, from a file verified by its SHA-256 (see `zoo.fetch`)."""
    file = WeightsFile(weights.url, getattr(weights.value, "sha256", None))
    return read_state_dict(fetch(file, offline=offline, progress=progress).path)


def read_state_dict(path: Path) -> dict[str, Any]:
    """A state dict from a ``.safetensors`` file or a ``torch.save`` file (tensors only, no code)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)
