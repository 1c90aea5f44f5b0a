"""Pretrained weights that are checked by their full SHA-256 before they are loaded.

`Weights` and `WeightsEnum` extend torchvision's with the file's full hash and size;
plugins that ship or publish weights declare their enums with them, and builders get
the state dict through `load_state_dict`, which refuses a file whose hash differs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import torch
import torchvision.models

from zoo.errors import WeightsError

HASH_CHUNK = 1 << 20


@dataclass(eq=False)  # keep torchvision's __eq__, which compares transforms sensibly
class Weights(torchvision.models.Weights):
    """torchvision's weights record plus the file's full SHA-256 and size in bytes."""

    sha256: str | None = None
    file_size: int | None = None


class WeightsEnum(torchvision.models.WeightsEnum):
    """A torchvision weights enum whose state dicts are loaded through `load_state_dict`."""

    def get_state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return load_state_dict(self, progress=kwargs.get("progress", True))


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_state_dict(weights: torchvision.models.WeightsEnum, *, progress: bool = True) -> dict[str, Any]:
    """The state dict of `weights`, verified by full SHA-256 when the hash is known.

    ``file://`` URLs (weights shipped inside a plugin) are read in place; other URLs go
    through torch.hub's download cache.
    """
    url = weights.url
    if urlparse(url).scheme != "file":
        return torch.hub.load_state_dict_from_url(url, progress=progress, check_hash=True, map_location="cpu")
    path = Path(url2pathname(urlparse(url).path))
    if not path.is_file():
        raise WeightsError(f"weights file of {weights} is missing: {path}; reinstall the plugin that ships it")
    expected = getattr(weights.value, "sha256", None)
    if expected is not None:
        actual = sha256_of(path)
        if actual != expected:
            raise WeightsError(
                f"weights file {path} of {weights} has SHA-256 {actual}, expected {expected}; "
                f"the file is corrupted or was replaced: reinstall the plugin that ships it"
            )
    return torch.load(path, map_location="cpu", weights_only=True)
