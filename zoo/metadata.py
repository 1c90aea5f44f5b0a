"""The provenance an exported model carries: ``zoo.*`` keys in its ONNX ``metadata_props``.

One encoding, shared by the exporter that writes it, the quantiser that copies it and
the runtime that reads it (through ONNX Runtime, without the ``onnx`` package): every
value is JSON, except plain strings, which are stored as they are so that tools such as
netron show them readably.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

PREFIX = "zoo."


def encode(values: Mapping[str, Any]) -> dict[str, str]:
    """``metadata_props`` entries for `values`: prefixed keys, JSON values (strings as they are)."""
    return {PREFIX + key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def decode(props: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The inverse of `encode` over (key, value) pairs; keys without the prefix are not the zoo's."""
    out: dict[str, Any] = {}
    for key, value in props:
        if key.startswith(PREFIX):
            try:
                out[key[len(PREFIX):]] = json.loads(value)
            except ValueError:  # a plain string
                out[key[len(PREFIX):]] = value
    return out
