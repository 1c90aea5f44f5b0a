"""Import targets: the ``"package.module:attribute"`` strings the catalog stores
in place of builders and weights enums."""

from __future__ import annotations

import importlib
from typing import Any

from zoo.errors import PluginError


def target_of(obj: Any) -> str:
    """The import target that `load_target` turns back into `obj`."""
    return f"{obj.__module__}:{obj.__qualname__}"


def load_target(target: str) -> Any:
    """Import ``module:attribute`` (the attribute may be dotted) and return the attribute."""
    module_name, _, attribute = target.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"cannot import {target!r}: {type(exc).__name__}: {exc}") from None
    return value
