"""Looking the catalog up: ``zoo list``, ``zoo show``, ``zoo plugins``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from zoo.cli.common import Commands, add_json, argument, count_argument, emit, metric_argument, table
from zoo.text import count_text


def register(commands: Commands) -> None:
    p = commands.add_parser("list", help="list registered models", description=(
        "List registered models. PATTERNs are fnmatch patterns (quote them), as in "
        "torchvision.models.list_models(include=...). With --sort or --min-metric the table has a column for "
        "each metric (a model's best value over its weights; - for none)."))
    p.add_argument("patterns", nargs="*", metavar="PATTERN")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="leave out matching names")
    p.add_argument("--task", help="e.g. classification, detection, segmentation, video, optical_flow")
    p.add_argument("--plugin", help="plugin or distribution name")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="only models with (--pretrained) or without (--no-pretrained) weights")
    p.add_argument("--max-params", type=count_argument, metavar="N",
                   help="at most N parameters, e.g. 10M, 500k, 25557032")
    p.add_argument("--min-metric", type=metric_argument, action="append", default=[], metavar="NAME=VALUE",
                   help="some weights reach at least VALUE on metric NAME, e.g. ImageNet-1K:acc@1=75, or acc@1=75 "
                        "where one dataset alone has acc@1 (repeatable)")
    p.add_argument("--search", metavar="TEXT", help=(
        "only models that have every word of TEXT (each as a prefix) in their name, tags, task, plugin, weights "
        "names or docs (paper names, notes), e.g. 'vision transformer'; most relevant first unless --sort"))
    p.add_argument("--sort", metavar="KEY", help=(
        "rank by name, params, gflops or a metric [DATASET:]METRIC (e.g. ImageNet-1K:acc@1): metrics best first, "
        "the others ascending; --sort=-KEY descending, --sort=+KEY ascending; models without a value last"))
    p.add_argument("--limit", type=_limit, metavar="N", help="only the first N models")
    add_json(p)
    p.set_defaults(run=_list)

    p = commands.add_parser("show", help="show a model, its weights, metadata and transforms")
    p.add_argument("name", metavar="NAME")
    add_json(p)
    p.set_defaults(run=_show)

    p = commands.add_parser("plugins", help="list the catalog's plugins, whether they loaded and are installed here")
    p.add_argument("--verbose", action="store_true",
                   help="also list the names shared with other plugins, and each model that failed, with its traceback")
    add_json(p)
    p.set_defaults(run=_plugins)


def _list(args: argparse.Namespace) -> int:
    from zoo.registry import summarize_models

    columns = _metric_columns(args.sort, [metric for metric, _ in args.min_metric])
    records = summarize_models(
        args.patterns or None,
        args.exclude,
        task=args.task,
        plugin=args.plugin,
        pretrained=args.pretrained,
        max_params=args.max_params,
        min_metric=dict(args.min_metric),
        search=args.search,
        sort=args.sort,
        limit=args.limit,
    )
    emit(args, records, lambda: table(
        ["NAME", "TASK", "PARAMS", "GFLOPS", *columns, "WEIGHTS", "PLUGIN"],
        [[r["name"], r["task"], count_text(r["num_params"]), _number(r["gflops"]),
          *(_number(r["metrics"].get(c)) for c in columns), len(r["weights"]), r["plugin"]] for r in records],
    ) + f"\n{len(records)} model(s)")
    return 0


def _metric_columns(sort: str | None, filtered: list[str]) -> list[str]:
    """The ``DATASET:METRIC`` of the metrics `sort` and the ``--min-metric`` filters name, in that order, once
    each; a bare metric resolved to the one dataset that has it is said on stderr (several: refused)."""
    if sort is None and not filtered:
        return []
    from zoo.catalog.ranking import resolve_metric, sort_key
    from zoo.registry import metric_names

    known = metric_names()
    key = sort_key(sort, known) if sort is not None else None
    named = [(key.given, key.column)] if key is not None and key.is_metric else []
    columns: list[str] = []
    for given, column in [*named, *((metric, resolve_metric(metric, known)) for metric in filtered)]:
        if ":" not in given and column not in columns:
            print(f"zoo: {given} is measured on {column.rpartition(':')[0]} only in this catalog; "
                  f"reading it as {column}", file=sys.stderr)
        columns += [] if column in columns else [column]
    return columns


def _limit(text: str) -> int:
    """A ``--limit`` argument: a whole number, 1 or more."""
    from zoo.catalog.ranking import check_limit

    return argument(lambda t: check_limit(int(t) if t.strip().isdigit() else t), text)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _show(args: argparse.Namespace) -> int:
    from zoo.measurements import list_measurements
    from zoo.registry import describe

    record = describe(args.name)
    record["measurements"] = [m.to_json() for m in list_measurements(record["qualified_name"])]
    emit(args, record, lambda: _show_text(record))
    return 0


def _show_text(r: dict[str, Any]) -> str:
    plugin = r["plugin"]
    others = [p for p in r["providers"] if p != r["qualified_name"]]
    lines = [
        f"{r['name']}  [{r['task']}]",
        f"  qualified:    {r['qualified_name']}",
        *([f"  also:         {', '.join(others)} (same name, other plugins; "
           f"{'this one answers it' if r['name'] == r['qualified_name'].partition('/')[2] else 'use the qualified name'})"]
          if others else []),
        f"  plugin:       {plugin['namespace']} ({plugin['distribution']} {plugin['version']})",
        f"  builder:      {r['builder']}" + (f" {json.dumps(r['builder_args'])}" if r["builder_args"] else ""),
        f"  weights enum: {r['weights_enum'] or '-'}",
        f"  parameters:   {r['num_params']:,}" if r["num_params"] is not None else "  parameters:   -",
        f"  tags:         {', '.join(r['tags']) or '-'}",
    ]
    if not r["weights"]:
        return "\n".join([*lines, "  no pretrained weights", *_published_text(r["published"]),
                          *_measured_text(r["measurements"])])
    rows = []
    for w in r["weights"]:
        metrics = " ".join(
            f"{dataset} {name}={value}"
            for dataset, values in (w["meta"].get("_metrics") or {}).items()
            for name, value in values.items()
        )
        size = f"{w['file_size'] / 1e6:.1f} MB" if w["file_size"] else (
            f"{w['meta']['_file_size']:.1f} MB" if "_file_size" in w["meta"] else "-")
        rows.append([w["name"], "*" if w["is_default"] else "", metrics or "-", size,
                     (w["sha256"] or "")[:16] or "-"])
    lines += ["", table(["WEIGHTS", "DEFAULT", "METRICS", "FILE", "SHA256"], rows)]
    for w in r["weights"]:
        spec = w["transforms"]
        if spec:
            settings = " ".join(f"{k}={v}" for k, v in spec.items() if k != "kind" and v is not None)
            lines.append(f"\n  {w['member']} transforms: {spec['kind']} {settings}")
    return "\n".join([*lines, *_published_text(r["published"]), *_measured_text(r["measurements"])])


def _measured_text(measurements: list[dict[str, Any]]) -> list[str]:
    """The figures ``zoo eval --record`` measured, per weights (the metrics above are what plugins and
    publishers claim)."""
    from zoo.records import Measurement

    by_weights: dict[str, list[str]] = {}
    for m in map(Measurement.from_json, measurements):
        by_weights.setdefault(m.weights, []).append(f"      measured: {m.summary()}")
    lines = [line for weights, said in by_weights.items() for line in (f"    {weights}", *said)]
    return ["", "  measured (zoo eval --record; the metrics above are claimed):", *lines] if lines else []


def _published_text(published: list[dict[str, Any]]) -> list[str]:
    """The published versions of a model, each with its lineage: what it was fine-tuned from (name and
    SHA-256), its data and training (`zoo.records.PublishedWeights.lineage`)."""
    from zoo.records import PublishedWeights

    lines = []
    for p in map(PublishedWeights.from_json, published):
        aliases = "".join(f" @{a}" for a in p.aliases)
        metrics = ", ".join(f"{k}={v:g}" for k, v in p.metrics.items())
        lines.append(f"  {p.spec}{aliases}  {metrics or 'no metrics'}  ({p.created_at.isoformat()[:10]})")
        if p.from_weights or p.run is not None:
            sha = f" (sha256 {p.base_sha256})" if p.base_sha256 else ""
            lines.append(f"    fine-tuned from: {p.from_weights or 'random initialisation'}{sha}")
        lines += [f"    {key + ':':16} {text}" for key, text in p.lineage().items()]
    return ["", "  published:", *lines] if lines else []


def _plugins(args: argparse.Namespace) -> int:
    from zoo.registry import list_plugins

    records = list_plugins()
    emit(args, records, lambda: _plugins_text(records, verbose=args.verbose))
    return 0


def _plugins_text(records: list[dict[str, Any]], *, verbose: bool) -> str:
    """The plugins table; with `verbose`, the names each shares with other plugins (and which plugin
    answers each), then each failed model and its traceback."""
    listing = table(
        ["NAMESPACE", "NAME", "DISTRIBUTION", "VERSION", "STATUS", "MODELS", "SHARED", "HERE", "ERROR"],
        [[p["namespace"], p["name"], p["distribution"], p["version"], p["status"], p["models"],
          _shared_text(p), "yes" if p["installed_here"] else "no",
          p["error"] or (f"{len(p['failures'])} model(s) failed" + ("" if verbose else " (--verbose)")
                         if p["failures"] else "")] for p in records],
    )
    if not verbose:
        return listing
    shared = [
        f"\nplugin {p['namespace']} shares {len(p['shared'])} name(s) with other plugins; the bare name means:\n"
        + _indented(", ".join(f"{n['name']} -> {n['answered_by']}/{n['name']}" for n in p["shared"]))
        for p in records if p["shared"]
    ]
    failed = [
        f"\nplugin {p['namespace']}, model {f['name']}: {f['error']}\n" + _indented(f["traceback"] or "")
        for p in records for f in p["failures"]
    ]
    return "\n".join([listing, *shared, *failed])


def _shared_text(record: dict[str, Any]) -> str:
    """How many of a plugin's names other plugins also have, and how many of those it does not answer."""
    if not record["shared"]:
        return "-"
    elsewhere = sum(n["answered_by"] != record["namespace"] for n in record["shared"])
    return f"{len(record['shared'])} ({elsewhere} qualified only)"


def _indented(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.rstrip().splitlines())
