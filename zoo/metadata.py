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

from zoo.errors import UsageError

PREFIX = "zoo."
#: Longest value `decode` reads, in characters: a model file is untrusted input. Ample
#: for the largest real value, 100,000 class names.
MAX_VALUE_CHARS = 1 << 22


def encode(values: Mapping[str, Any]) -> dict[str, str]:
    """``metadata_props`` entries for `values`: prefixed keys, JSON values (strings as they are)."""
    return {PREFIX + key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def decode(props: Iterable[tuple[str, str]], source: str = "model") -> dict[str, Any]:
    """The inverse of `encode` over (key, value) pairs; keys without the prefix are not the zoo's.

    A value longer than `MAX_VALUE_CHARS`, or JSON nested deeper than Python decodes,
    raises a one-line `UsageError` naming `source` (the model file) and the key.
    """
    out: dict[str, Any] = {}
    for key, value in props:
        if not key.startswith(PREFIX):
            continue
        if len(value) > MAX_VALUE_CHARS:
            raise UsageError(f"{source}: metadata {key[:60]} is {len(value)} characters long; "
                             f"zoo reads at most {MAX_VALUE_CHARS}")
        try:
            out[key[len(PREFIX):]] = json.loads(value)
        except RecursionError:
            raise UsageError(f"{source}: metadata {key[:60]} is JSON nested too deeply to read") from None
        except ValueError:  # a plain string
            out[key[len(PREFIX):]] = value
    return out
