"""Parameter counts of timm's models, precomputed once per timm version.

Counting needs the model built, which a sync must not do (1,371 architectures).
``python -m zoo_timm.params`` builds every architecture and every pretrained tag
(a tag may change the head or the input size, hence the count) on torch's ``meta``
device, where no memory is allocated, and writes ``params-<timm version>.json`` beside
this module: ``{"resnet50": 25557032, "resnet50.a1_in1k": 25557032, ...}``.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent


def params_file(timm_version: str) -> Path:
    """Where the counts for `timm_version` are shipped."""
    return HERE / f"params-{timm_version}.json"


@cache
def load_counts(timm_version: str) -> dict[str, int]:
    """The shipped counts for `timm_version`; empty for a version none were made for."""
    path = params_file(timm_version)
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def count(name: str) -> int:
    """Parameters of ``timm.create_model(name)``, built on the meta device (no memory, no init)."""
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    return sum(p.numel() for p in model.parameters())


def main() -> int:
    """Count every architecture and pretrained tag of the installed timm; write the JSON file."""
    import timm

    names = timm.list_models() + timm.list_models(pretrained=True)
    counts: dict[str, int] = {}
    failed = 0
    for i, name in enumerate(names, 1):
        try:
            counts[name] = count(name)
        except Exception as exc:  # one model's failure is reported, the rest are counted
            failed += 1
            print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if i % 200 == 0:
            print(f"{i}/{len(names)}", file=sys.stderr)
    path = params_file(timm.__version__)
    path.write_text(json.dumps(counts, indent=0, sort_keys=True) + "\n")
    print(f"{path.name}: {len(counts)} counts, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
