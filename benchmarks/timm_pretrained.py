"""timm's pretrained loading through the zoo, compared with timm itself on every architecture.

For each architecture, its default pretrained tag's model is made with seeded random
weights and saved as safetensors into a local weights mirror, at the place of the URL
the catalog lists for that tag (these machines reach no model hub). Then, for each
keyword set of `VARIANTS`, it is loaded as "pretrained" twice, under the same seed:
through the zoo (`zoo.build_model("timm/ARCH.TAG", **keywords)`: fetched from the mirror,
verified, handed to timm's `load_pretrained`) and through timm alone
(``timm.create_model("ARCH.TAG", pretrained=True, pretrained_cfg_overlay=dict(file=...))``).
The two must agree: both refuse the keywords, or both give the same class, the same
state dict (names, shapes, values) and the same outputs on one seeded input. The
test module ``tests/test_timm_pretrained.py`` runs `check_architecture` on a seeded
sample of families; this script runs every architecture.

    .venv/bin/python benchmarks/timm_pretrained.py [ARCH...] [--jobs N] [--chunk N]

It makes its own SQLite catalog (timm plugin only), weights cache and mirror in a
temporary folder; rows go to ``benchmarks/results/timm_pretrained.jsonl``, the summary
to ``benchmarks/results/timm_pretrained.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

RESULTS = Path(__file__).resolve().parent / "results"
#: The keyword sets each architecture is loaded with; `img_size` only where the model has position embeddings.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "features_only": {"features_only": True},
    "num_classes=0": {"num_classes": 0},
    "num_classes=0, global_pool=''": {"num_classes": 0, "global_pool": ""},
    "num_classes=7": {"num_classes": 7},
    "in_chans=1": {"in_chans": 1},
    "img_size": {},  # the tag's side less 64 (a multiple of 32 and of the usual patch sizes), see `_variants`
}
SEED = 0
#: The side of the input image, where the model takes any size (timm's ``fixed_input_size`` is not set): the
#: outputs compare the loaded weights, and a small image keeps the check fast.
SIDE = 96
CHILD_TIMEOUT_S = 3600


def environment(work: Path) -> dict[str, str]:
    """The variables that point the zoo at a catalog, cache and mirror of its own in `work`, offline."""
    return {"ZOO_REGISTRY_URL": f"sqlite:///{work / 'registry.db'}", "ZOO_LOAD_PLUGINS": "timm",
            "TORCH_HOME": str(work / "torch"), "ZOO_WEIGHTS_MIRROR": str(work / "mirror"), "ZOO_OFFLINE": "1"}


def default_tag(arch: str) -> str | None:
    """``ARCH.TAG`` of the architecture's first tag (the default first) with a weights file that random weights
    can stand in for: not a torch.hub-style name carrying the start of its hash, which the zoo checks. None when
    it has none."""
    from timm.models import get_arch_pretrained_cfgs

    from zoo.fetch import WeightsFile
    from zoo_timm import weights_url

    for cfg in get_arch_pretrained_cfgs(arch).values():
        url = weights_url(vars(cfg))
        if cfg.tag and url and WeightsFile(url, None).hash_prefix is None:
            return f"{arch}.{cfg.tag}"
    return None


def mirror_file(mirror: Path, tag: str) -> Path:
    """Where the zoo's mirror holds the file of ``ARCH.TAG`` (by host and path, as ``wget -x`` lays it out)."""
    from timm.models import get_pretrained_cfg

    from zoo_timm import weights_url

    url = urlsplit(weights_url(vars(get_pretrained_cfg(tag))))
    return mirror / url.netloc / url.path.lstrip("/")


def check_architecture(arch: str, mirror: Path, work: Path) -> dict[str, Any]:
    """Save random weights for `arch`'s default tag in `mirror`, load them through the zoo and through timm with
    every keyword set of `VARIANTS`; one row: the outcome of each (``same``, ``both refuse``, or what differs)."""
    import timm
    import torch
    from safetensors.torch import save_file

    started = time.perf_counter()
    tag = default_tag(arch)
    row: dict[str, Any] = {"arch": arch, "tag": tag, "variants": {}}
    if tag is None:
        row["skipped"] = "no pretrained tag with a file that random weights can stand in for"
        return row
    torch.manual_seed(SEED)
    try:
        source = timm.create_model(tag)
    except Exception as exc:  # noqa: BLE001 (timm itself cannot build it: recorded, as timm's failure)
        row["error"] = f"timm cannot build it: {type(exc).__name__}: {exc}"[:300]
        return row
    tensors = {key: value.detach().clone() for key, value in source.state_dict().items()}  # shared ones apart
    has_pos_embed = any(key.endswith("pos_embed") for key in tensors)
    cfg = source.pretrained_cfg
    input_size = tuple(cfg["input_size"]) if cfg.get("fixed_input_size") else (cfg["input_size"][0], SIDE, SIDE)
    del source
    local = work / f"{tag}.safetensors"
    save_file(tensors, str(local))
    del tensors
    target = mirror_file(mirror, tag)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(local.read_bytes())
    for label, keywords in _variants(input_size, has_pos_embed):
        row["variants"][label] = compare(tag, local, keywords, input_size)
    local.unlink()
    row["seconds"] = round(time.perf_counter() - started, 2)
    return row


def _variants(input_size: tuple[int, ...], has_pos_embed: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    for label, keywords in VARIANTS.items():
        if label == "img_size":
            if has_pos_embed and min(input_size[1:]) > SIDE:
                side = min(input_size[1:]) - 64
                yield f"img_size={side}", {"img_size": side}
        else:
            yield label, keywords


def compare(tag: str, file: Path, keywords: dict[str, Any], input_size: tuple[int, ...]) -> str:
    """``same``, ``both refuse``, or one line saying how the zoo's model differs from timm's."""
    import timm
    import torch

    import zoo

    def through_zoo() -> Any:
        return zoo.build_model(f"timm/{tag}", **keywords).model

    def through_timm() -> Any:
        return timm.create_model(tag, pretrained=True, pretrained_cfg_overlay={"file": str(file)}, **keywords)

    built = {}
    for who, build in (("zoo", through_zoo), ("timm", through_timm)):
        torch.manual_seed(SEED)  # a new head is random: the same seed gives both the same
        try:
            built[who] = build().eval()
        except Exception as exc:  # noqa: BLE001 (an outcome to compare)
            built[who] = exc
    ours, theirs = built["zoo"], built["timm"]
    if isinstance(ours, Exception) or isinstance(theirs, Exception):
        if isinstance(ours, Exception) and isinstance(theirs, Exception):
            return "both refuse"
        failed, exc = ("zoo", ours) if isinstance(ours, Exception) else ("timm", theirs)
        return f"only {failed} refuses: {type(exc).__name__}: {exc}"[:300]
    if type(ours) is not type(theirs):
        return f"class {type(ours).__name__} != {type(theirs).__name__}"
    a, b = ours.state_dict(), theirs.state_dict()
    if list(a) != list(b):
        return f"state dict names differ: {sorted(set(a) ^ set(b))[:4]}"
    differ = [key for key in a if a[key].shape != b[key].shape or not torch.equal(a[key], b[key])]
    if differ:
        return f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    channels = keywords.get("in_chans", input_size[0])
    side = keywords.get("img_size")
    sizes = [(side, side)] if side else [tuple(input_size[1:])]
    if not side and sizes[0] != tuple(ours.pretrained_cfg["input_size"][1:]):
        sizes.append(tuple(ours.pretrained_cfg["input_size"][1:]))  # the small image first, then the tag's own
    for height, width in sizes:
        torch.manual_seed(SEED)
        image = torch.randn(1, channels, height, width)
        with torch.no_grad():
            outputs = [_forward(model, image) for model in (ours, theirs)]
        if not any(isinstance(out, str) for out in outputs):
            break
    out_a, out_b = outputs
    if isinstance(out_a, str) or isinstance(out_b, str):
        if isinstance(out_a, str) and out_a == out_b:  # the same model, the same failure (timm's own)
            return "both refuse"
        return f"forward: zoo's {out_a if isinstance(out_a, str) else 'ran'}, timm's {out_b if isinstance(out_b, str) else 'ran'}"[:300]
    if len(out_a) != len(out_b) or any(x.shape != y.shape or not torch.allclose(x, y, rtol=1e-5, atol=1e-6)
                                       for x, y in zip(out_a, out_b)):
        return "outputs differ"
    return "same"


def _forward(model: Any, image: Any) -> list[Any] | str:
    """The output tensors of `model` on `image`, or one line saying why it failed."""
    try:
        return _tensors(model(image))
    except Exception as exc:  # noqa: BLE001 (a failure to compare)
        return f"failed: {type(exc).__name__}: {exc}"[:200]


def _tensors(output: Any) -> list[Any]:
    """The tensors of a model's output (a tensor, or a list, tuple or dict of them), in order."""
    if isinstance(output, dict):
        return [t for value in output.values() for t in _tensors(value)]
    if isinstance(output, (list, tuple)):
        return [t for value in output for t in _tensors(value)]
    return [output]


def passed(row: dict[str, Any]) -> bool:
    """Whether every variant of the row agrees with timm (and the row has any)."""
    return bool(row["variants"]) and all(v in ("same", "both refuse") for v in row["variants"].values())


def run_chunk(archs: Sequence[str], work: Path) -> list[dict[str, Any]]:
    """`check_architecture` for `archs` in a child process (memory returned after each chunk)."""
    done = subprocess.run([sys.executable, "-I", __file__, "--child", str(work), *archs],
                          capture_output=True, text=True, env={**os.environ, **environment(work)},
                          timeout=CHILD_TIMEOUT_S, check=False)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    seen = {r["arch"] for r in rows}
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
    return rows + [{"arch": a, "tag": None, "variants": {}, "error": f"child exited {done.returncode}: {tail}"}
                   for a in archs if a not in seen]


def render(rows: Sequence[dict[str, Any]], seconds: float) -> str:
    """The summary: how many architectures agree, the outcomes per keyword set, and every disagreement."""
    outcomes: dict[str, Counter[str]] = {}
    for row in rows:
        for label, outcome in row["variants"].items():
            key = "img_size" if label.startswith("img_size") else label
            outcomes.setdefault(key, Counter())[outcome if outcome in ("same", "both refuse") else "differs"] += 1
    checked = [row for row in rows if "skipped" not in row]
    lines = ["# timm's pretrained loading: the zoo against timm, every architecture\n",
             f"{sum(map(passed, checked))} of {len(checked)} architectures checked agree with timm in every keyword "
             f"set; {len(rows) - len(checked)} not checked (no pretrained file that random weights can stand in "
             f"for); {seconds / 60:.0f} min.\n", "| keywords | same | both refuse | differs |", "|---|---|---|---|"]
    for label, counts in outcomes.items():
        lines.append(f"| {label} | {counts['same']} | {counts['both refuse']} | {counts['differs']} |")
    lines += ["", "## Disagreements and failures", ""]
    for row in checked:
        bad = {k: v for k, v in row["variants"].items() if v not in ("same", "both refuse")}
        if bad or row.get("error"):
            lines.append(f"- {row['arch']}: {row.get('error') or bad}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archs", nargs="*", help="timm architectures (default: every one)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # a child: check archs, print rows
    parser.add_argument("--jobs", type=int, default=1, help="children at a time")
    parser.add_argument("--chunk", type=int, default=20, help="architectures per child process")
    parser.add_argument("--results", type=Path, default=RESULTS / "timm_pretrained.jsonl")
    parser.add_argument("--table", type=Path, default=RESULTS / "timm_pretrained.md")
    args = parser.parse_args(argv)
    if args.child:
        for arch in args.archs:
            with tempfile.TemporaryDirectory(dir=args.child) as work:
                print(json.dumps(check_architecture(arch, args.child / "mirror", Path(work))), flush=True)
        return 0
    import timm

    archs = args.archs or timm.list_models()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zoo-timm-pretrained-") as work:
        subprocess.run([sys.executable, "-I", "-m", "zoo", "sync"], env={**os.environ, **environment(Path(work))},
                       check=True, capture_output=True)
        chunks = [archs[i:i + args.chunk] for i in range(0, len(archs), args.chunk)]
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for done in pool.map(lambda c: run_chunk(c, Path(work)), chunks):
                rows += done  # written as the chunks finish: a long run cut short keeps what it checked
                args.results.write_text("".join(json.dumps(r) + "\n" for r in rows))
                args.table.write_text(render(rows, time.perf_counter() - started))
    checked = [row for row in rows if "skipped" not in row]
    print(f"{sum(map(passed, checked))} of {len(checked)} checked agree; table: {args.table}")
    return 0 if all(map(passed, checked)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
