"""The web catalog's pages as HTML strings: the layout, the catalog table, the compare plot (inline
SVG), the model card, the "try it" page and errors. Every value from the catalog is escaped here;
scripts and styles come from the package's own static folder (no CDN, no inline script: the pages'
Content-Security-Policy allows only this server)."""

from __future__ import annotations

import inspect
import json
import math
import re
import shlex
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from zoo.records import VERIFIED_BY_REGISTRY, Measurement, PublishedWeights, is_spec, parse_spec
from zoo.service.sessions import signed_in
from zoo.service.web.query import COLUMNS, PER_PAGE, X_AXES, Filters, ModelRow, Page, Point
from zoo.text import count_text

_TITLES = {"name": "Name", "task": "Task", "plugin": "Plugin", "params": "Parameters", "metric": "Best metric",
           "weights": "Weights", "published": "Published"}
_NUMERIC = {"params", "metric", "weights", "published"}


def e(value: Any) -> str:
    """`value` as HTML text (None as empty)."""
    return "" if value is None else escape(str(value))


def human(count: int | float | None) -> str:
    """A count for people, as the CLI shows it (`zoo.text.count_text`) to three digits: 25.6M, 3.5k, 1.2B."""
    return count_text(count, spec=".3g", none="")


def size_text(size: int | None) -> str:
    """A file size in bytes for people: 97.8 MB."""
    if size is None:
        return "unknown"
    for scale, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def scrolling(label: str, table: str) -> str:
    """`table` in a container that scrolls sideways where the screen is narrower than it: focusable (keyboard
    users scroll it too) and named `label` for screen readers."""
    return f'<div class="scroll" role="region" aria-label="{e(label)}" tabindex="0">{table}</div>'


def layout(title: str, body: str, *, active: str = "", scripts: Sequence[str] = ()) -> str:
    """A whole page: head, navigation, `body`, then `scripts` (files of /static)."""
    nav = "".join(f'<a href="{href}"{" class=active" if key == active else ""}>{label}</a>'
                  for key, href, label in (("catalog", "/", "Catalog"), ("compare", "/compare", "Compare"),
                                           ("try", "/try", "Try it")))
    tags = "".join(f'<script src="/static/{name}" defer></script>' for name in scripts)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(title)} · zoo</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="/static/style.css">{tags}</head>'
            f'<body><header><a class="brand" href="/">zoo</a><nav aria-label="site">{nav}</nav>'
            f'<a class="api" href="/api/v1/docs">API</a>{_sign_out()}</header><main>{body}</main></body></html>')


def _sign_out() -> str:
    """The header's "Sign out" button, on a page read with a web session (`zoo.service.sessions`)."""
    return ('<form id="logout" method="post" action="/logout"><button type="submit">Sign out</button></form>'
            if signed_in.get() else "")


def error_page(status: int, message: str) -> str:
    """The page of a refused request: its status and the one-line reason."""
    return layout(f"{status}", f'<h1>{status}</h1><p class="error" id="error">{e(message)}</p>'
                                '<p><a href="/">Back to the catalog</a></p>')


# -- the catalog ------------------------------------------------------------------------


def _filter_form(filters: Filters, tasks: Sequence[str], plugins: Sequence[str], action: str) -> str:
    """The filter form: the URL's query parameters, submitted by GET so that every view is a link."""
    def options(name: str, values: Sequence[str], chosen: str) -> str:
        items = "".join(f'<option value="{e(v)}"{" selected" if v == chosen else ""}>{e(v)}</option>' for v in values)
        return f'<select name="{name}" id="{name}"><option value="">any</option>{items}</select>'

    kept = "".join(f'<input type="hidden" name="{k}" value="{e(v)}">'
                   for k, v in (("sort", filters.sort if filters.sort != "name" else ""),
                                ("order", "desc" if filters.desc else ""), ("metric", filters.metric),
                                ("x", filters.x if filters.x != "params" else ""),
                                ("per", str(filters.per) if filters.per != PER_PAGE else "")) if v)
    max_params = "" if filters.max_params is None else str(filters.max_params)
    return (f'<form id="filters" method="get" action="{action}">'
            f'<label>Search <input name="q" id="q" value="{e(filters.q)}" placeholder="name, tag or words (resnet*, metaformer)"></label>'
            f'<label>Task {options("task", tasks, filters.task)}</label>'
            f'<label>Plugin {options("plugin", plugins, filters.plugin)}</label>'
            f'<label>Max params <input name="max_params" id="max_params" value="{e(max_params)}" '
            f'placeholder="10M" size="8"></label>'
            f'<label>Min metric <input name="min_metric" id="min_metric" value="{e(filters.min_metric)}" '
            f'placeholder="ImageNet-1K:acc@1=75" size="20"></label>'
            f'{kept}<button type="submit">Apply</button> <a href="{action}">clear</a></form>')


def _sort_link(filters: Filters, column: str) -> str:
    """A column heading that sorts by it (again: the other way), marked when it is the sort."""
    desc = not filters.desc if filters.sort == column else column in _NUMERIC
    mark = (" ▼" if filters.desc else " ▲") if filters.sort == column else ""
    query = filters.query(sort=column, desc=desc, page=1)
    return f'<a href="/{e(query)}" data-sort="{column}">{_TITLES[column]}{mark}</a>'


def catalog_page(page: Page) -> str:
    """The catalog: the filter form, the table of one page of models, and links to the other pages."""
    f = page.filters
    heads = "".join(f'<th class="{"num" if c in _NUMERIC else ""}">{_sort_link(f, c)}</th>' for c in COLUMNS)
    rows = "".join(f'<tr data-name="{e(r.name)}">{_row_cells(r)}</tr>' for r in page.rows)
    count = (f'<p id="count"><span id="total">{page.total}</span> model(s); page {f.page} of {page.pages} · '
             f'<a href="/compare{e(f.query(page=1))}">compare these</a></p>')
    table = f'<table id="catalog"><thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>'
    body = (f'<h1>Models</h1>{_filter_form(f, page.tasks, page.plugins, "/")}{count}'
            f'{scrolling("models", table)}{_pager(page)}')
    return layout("Catalog", body, active="catalog", scripts=["catalog.js"])


def _row_cells(r: ModelRow) -> str:
    """The cells of model `r`'s row in `COLUMNS` order, each labelled with its column's title (which a narrow
    screen shows beside the value, the table reflowed into one block per model)."""
    cells = {"name": ("", f'<a href="/models/{quote(r.name)}">{e(r.name)}</a>'), "task": ("", e(r.task)),
             "plugin": ("", e(r.plugin)), "params": (f' title="{e(r.params)}"', human(r.params)),
             "metric": (f' title="{e(r.metric)}"', _metric_cell(r.metric, r.metric_value)),
             "weights": ("", str(r.weights)), "published": ("", str(r.published or ""))}
    return "".join(f'<td data-label="{_TITLES[c]}"{" class=num" if c in _NUMERIC else ""}{cells[c][0]}>'
                   f'{cells[c][1]}</td>' for c in COLUMNS)


def _metric_cell(label: str | None, value: float | None) -> str:
    if value is None:
        return ""
    return f'{value:g} <small>{e(label)}</small>'


def _pager(page: Page) -> str:
    """Links to the first, previous, next and last pages."""
    f, last = page.filters, page.pages
    links = [(1, "first", "« first"), (f.page - 1, "prev", "‹ previous"), (f.page + 1, "next", "next ›"),
             (last, "last", "last »")]
    parts = [f'<a href="/{e(f.query(page=n))}" rel="{rel}">{e(label)}</a>'
             if 1 <= n <= last and n != f.page else f"<span>{e(label)}</span>" for n, rel, label in links]
    return f'<nav id="pager" aria-label="pages">{" ".join(parts)}</nav>'


# -- the compare view ---------------------------------------------------------------------

_W, _H, _LEFT, _BOTTOM, _TOP, _RIGHT = 760, 440, 64, 48, 16, 16


def compare_page(page: Page, metrics: Sequence[str], points: Sequence[Point]) -> str:
    """The compare view: the filters, the metric and axis menus, and the scatter plot of `points`."""
    f = page.filters
    choose = "".join(f'<option value="{e(m)}"{" selected" if m == f.metric else ""}>{e(m)}</option>' for m in metrics)
    axes = "".join(f'<option value="{a}"{" selected" if a == f.x else ""}>{a}</option>' for a in X_AXES)
    kept = "".join(f'<input type="hidden" name="{k}" value="{e(v)}">' for k, v in (
        ("q", f.q), ("task", f.task), ("plugin", f.plugin),
        ("max_params", "" if f.max_params is None else f.max_params), ("min_metric", f.min_metric)) if v != "")
    picker = (f'<form id="axes" method="get" action="/compare">{kept}<label>Metric <select name="metric" id="metric">'
              f'{choose}</select></label> <label>against <select name="x" id="x">{axes}</select></label> '
              f'<button type="submit">Plot</button></form>')
    front = [p for p in points if p.pareto]
    listing = "".join(f'<li><a href="/models/{quote(p.row.name)}">{e(p.row.name)}</a> '
                      f'{p.y:g} at {human(p.x)}{" params" if f.x == "params" else " GFLOPS"}</li>' for p in front)
    body = (f'<h1>Compare</h1>{_filter_form(f, page.tasks, page.plugins, "/compare")}{picker}'
            f'<p id="count">{len(points)} of {page.total} model(s) have {e(f.metric) or "a metric"}; '
            f'{len(front)} on the Pareto front (no model smaller has a higher value).</p>'
            f'{scatter_svg(points, f.metric, f.x)}<h2>Pareto front</h2><ol id="front">{listing}</ol>')
    return layout("Compare", body, active="compare", scripts=["catalog.js"])


def scatter_svg(points: Sequence[Point], metric: str, x_axis: str) -> str:
    """An SVG scatter plot of `points`, x on a log scale, the Pareto front joined and marked; it scales to its
    container's width (its viewBox; the stylesheet sets the width), and each point links to its model's card."""
    if not points:
        return '<p id="plot" class="empty">Nothing to plot: no model here has this metric.</p>'
    xs, ys = [math.log10(p.x) for p in points], [p.y for p in points]
    x0, x1 = math.floor(min(xs)), math.ceil(max(xs)) + (1 if math.ceil(max(xs)) == math.floor(min(xs)) else 0)
    pad = (max(ys) - min(ys)) * 0.05 or 1.0
    y0, y1 = min(ys) - pad, max(ys) + pad

    def sx(value: float) -> float:
        return _LEFT + (math.log10(value) - x0) / (x1 - x0) * (_W - _LEFT - _RIGHT)

    def sy(value: float) -> float:
        return _H - _BOTTOM - (value - y0) / (y1 - y0) * (_H - _BOTTOM - _TOP)

    grid = [f'<line x1="{sx(10 ** d):.1f}" x2="{sx(10 ** d):.1f}" y1="{_TOP}" y2="{_H - _BOTTOM}" class="grid"/>'
            f'<text x="{sx(10 ** d):.1f}" y="{_H - _BOTTOM + 16}" class="tick" text-anchor="middle">{human(10 ** d)}</text>'
            for d in range(x0, x1 + 1)]
    for i in range(6):
        value = y0 + (y1 - y0) * i / 5
        grid.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{sy(value):.1f}" y2="{sy(value):.1f}" class="grid"/>'
                    f'<text x="{_LEFT - 6}" y="{sy(value) + 4:.1f}" class="tick" text-anchor="end">{value:.3g}</text>')
    front = [p for p in points if p.pareto]
    line = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in front)
    dots = "".join(
        f'<a href="/models/{quote(p.row.name)}" aria-label="{e(p.row.name)}: {p.y:g} at {human(p.x)}"><circle cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="{5 if p.pareto else 3.5}" '
        f'class="{"pareto" if p.pareto else "dot"}" data-name="{e(p.row.name)}" data-x="{p.x!r}" data-y="{p.y!r}">'
        f'<title>{e(p.row.name)}: {p.y:g}, '
        f'{human(p.x)}</title></circle></a>' for p in points)
    label = "parameters (log scale)" if x_axis == "params" else "GFLOPS (log scale)"
    return (f'<svg id="plot" viewBox="0 0 {_W} {_H}" role="group" aria-labelledby="plot-title" '
            f'xmlns="http://www.w3.org/2000/svg"><title id="plot-title">{e(metric)} against {label}</title>'
            f'{"".join(grid)}'
            f'<polyline points="{line}" class="front"/>{dots}'
            f'<text x="{(_W + _LEFT) / 2}" y="{_H - 8}" text-anchor="middle" class="axis">{label}</text>'
            f'<text x="14" y="{(_H - _BOTTOM) / 2}" text-anchor="middle" class="axis" '
            f'transform="rotate(-90 14 {(_H - _BOTTOM) / 2})">{e(metric)}</text></svg>')


# -- the model card ------------------------------------------------------------------------


#: How `preprocessing_words` says each resize mode (`zoo.preprocessing.PreprocessSpec`).
_RESIZE_WORDS = {"shorter_side": "resize the shorter side to", "contain": "resize, keeping the ratio, to fit within",
                 "cover": "resize, keeping the ratio, to cover"}


def preprocessing_words(spec: dict[str, Any] | None) -> str:
    """A weights entry's preprocessing spec (`zoo.preprocessing.PreprocessSpec` JSON) in one sentence."""
    if not spec:
        return "not declared"
    steps = []
    if spec.get("resize_size"):
        how = _RESIZE_WORDS.get(spec.get("resize_mode"), "resize the image to")
        steps.append(f"{how} {'x'.join(map(str, spec['resize_size']))} "
                     f"({spec.get('interpolation', 'bilinear')}{', antialiased' if spec.get('antialias') else ''})")
    if spec.get("crop_size"):
        fill = spec.get("pad_fill")
        steps.append(f"centre-crop {'x'.join(map(str, spec['crop_size']))}"
                     + (f", padding with ({', '.join(map(str, fill))})" if fill else ""))
    steps.append(f"{spec.get('channel_order', 'RGB')} values in [{', '.join(f'{v:g}' for v in spec.get('value_range', (0, 1)))}]")
    if spec.get("mean") and spec.get("std"):
        steps.append(f"minus mean ({', '.join(f'{v:.3g}' for v in spec['mean'])}), "
                     f"divided by std ({', '.join(f'{v:.3g}' for v in spec['std'])})")
    steps.append(f"{spec.get('layout', 'CHW')} layout")
    return f"{spec.get('kind', 'image')}: " + "; ".join(steps)


def _link_or_text(value: Any) -> str:
    """`value` as text, linked when it is an http(s) URL; empty for None."""
    if value is None:
        return ""
    text = str(value)
    return f'<a href="{e(text)}" rel="noreferrer">{e(text)}</a>' if text.startswith(("https://", "http://")) else e(text)


def _metrics_list(metrics: dict[str, Any]) -> str:
    return "".join(f"<li>{e(dataset)}: " + ", ".join(f"{e(k)} {e(v)}" for k, v in values.items()) + "</li>"
                   for dataset, values in (metrics or {}).items() if isinstance(values, dict))


def _measured(measurements: Sequence[dict[str, Any]], weights: str, label: str = "") -> str:
    """The figures ``zoo eval --record`` measured for `weights`, as a list marked measured (each item after
    `label`); empty for none."""
    items = "".join(f'<li data-kind="{e(m.kind)}">{label}{e(m.summary())}</li>'
                    for m in map(Measurement.from_json, measurements) if m.weights == weights)
    return f'<ul class="measured" aria-label="measured by zoo eval --record">{items}</ul>' if items else ""


#: The most category names a card shows in its own page; a longer list is a page of its own
#: (``/categories/NAME?weights=WEIGHTS``), loaded into the card when opened.
CATEGORIES_INLINE = 1000


def file_bytes(w: dict[str, Any]) -> int | None:
    """The size of weights entry `w`'s file: as the catalog knows it (declared with the file's hash, or learned by
    verifying the file), else as its plugin's metadata declares it (``_file_size``, in MiB as torchvision gives
    it, which ``zoo show`` shows too); None when neither says."""
    if w["file_size"]:
        return w["file_size"]
    declared = w["meta"].get("_file_size")
    return round(declared * (1 << 20)) if isinstance(declared, (int, float)) and declared > 0 else None


def file_words(url: str) -> str:
    """Where a weights file comes from, for a visitor: an http(s) URL linked; anything else (a ``file://`` URL
    of a plugin's file, a path, another store's URL) by its file name only, never the server's folders."""
    if url.startswith(("https://", "http://")):
        return f'<a href="{e(url)}" rel="noreferrer">{e(url)}</a>'
    name = re.split(r"[/\\]", url.rstrip("/\\"))[-1]
    bundled = url.startswith("file:") or "://" not in url
    return f'<code>{e(name)}</code>{" (bundled with the plugin)" if bundled else ""}'


#: reST's inline markup, matched in HTML-escaped text: ``literal``, :role:`target` (also ``~`` and
#: ``title <target>`` forms), `text <url>`_ and `interpreted text`.
_INLINE = re.compile(r"``(?P<literal>.+?)``"
                     r"|:[\w.+-]+:`(?P<tilde>~?)(?P<role>[^`]+)`"
                     r"|`(?P<text>[^`]+?)\s*&lt;(?P<url>[^`\s]+)&gt;`__?"
                     r"|`(?P<cited>[^`]+)`_{0,2}")
_BULLET = re.compile(r"^\s*[-*+]\s+")


def _inline(escaped: str) -> str:
    """The inline markup of `escaped` (reST, already HTML-escaped) as HTML: literals and roles as code, links to
    http(s) as links (any other link as its text)."""
    def one(match: re.Match[str]) -> str:
        if match["literal"] is not None:
            return f"<code>{match['literal']}</code>"
        if match["role"] is not None:
            titled = re.fullmatch(r"(.+?)\s*&lt;.*&gt;", match["role"])
            shown = titled[1] if titled else match["role"].rsplit(".", 1)[-1] if match["tilde"] else match["role"]
            return f"<code>{shown}</code>"
        if match["url"] is not None:
            url = match["url"]
            return (f'<a href="{url}" rel="noreferrer">{match["text"]}</a>'
                    if url.startswith(("https://", "http://")) else match["text"])
        return f"<em>{match['cited']}</em>"

    return _INLINE.sub(one, escaped)


def docs_html(text: str) -> str:
    """A plugin's docs text (reST, as torchvision's docstrings write it) as HTML: paragraphs, bullet lists,
    ``literals`` and :roles:`targets` as code, `links <https://...>`_ as links (http and https only). The text
    is HTML-escaped before any of it is read, so that no markup of its own reaches the page."""
    parts = []
    for block in re.split(r"\n\s*\n", inspect.cleandoc(text)):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        if _BULLET.match(lines[0]):
            items: list[str] = []
            for line in lines:
                if _BULLET.match(line):
                    items.append(_BULLET.sub("", line))
                else:
                    items[-1] += " " + line.strip()
            parts.append("<ul>" + "".join(f"<li>{_inline(escape(item))}</li>" for item in items) + "</ul>")
        else:
            parts.append(f"<p>{_inline(escape(' '.join(line.strip() for line in lines)))}</p>")
    return f'<div class="docs">{"".join(parts)}</div>'


def usage_snippet(lines: Sequence[str], label: str) -> str:
    """Lines of code to copy, as a block that the card's script gives a copy button."""
    return f'<pre class="usage" data-label="{e(label)}"><code>{e(chr(10).join(lines))}</code></pre>'


def _usage_lines(model: str, weights: str, exports: Sequence[dict[str, Any]]) -> list[str]:
    """How to use `weights` of `model`: zoo.get_model and zoo export, and the runtime's Predictor where an export
    of them is published."""
    py = json.dumps
    lines = ["import zoo", f"model = zoo.get_model({py(model)}, weights={py(weights)})", "",
             "# an ONNX file, from the command line",
             f"zoo export {shlex.quote(model)} --weights {shlex.quote(weights)}"]
    if any(x["weights"] == weights for x in exports):
        lines += ["", "# the published export, without torch", "from zoo.runtime import Predictor",
                  f"predictor = Predictor.from_registry({py(model)}, {py(weights)})"]
    return lines


def _category_list(w: dict[str, Any]) -> tuple[str, ...]:
    return tuple(map(str, w["meta"].get("categories") or ()))


def _categories(record: dict[str, Any], w: dict[str, Any], first: dict[tuple[str, ...], str]) -> str:
    """The categories of weights `w`: collapsed, the names in the card up to `CATEGORIES_INLINE` and a page of
    their own (loaded when opened) beyond; "the same as" the first weights of `first` that has the same list."""
    categories = _category_list(w)
    if not categories:
        return ""
    if categories in first:
        owner = first[categories]
        return (f'the same {len(categories):,} as <a href="#weights-{e(quote(owner, safe="/:@."))}">'
                f'{e(owner)}</a>')
    first[categories] = w["name"]
    summary = f"<summary>{len(categories):,} categories</summary>"
    if len(categories) <= CATEGORIES_INLINE:
        return f'<details class="categories">{summary}<p>{e(", ".join(categories))}</p></details>'
    href = f"/categories/{quote(record['name'])}?weights={quote(w['name'], safe='')}"
    return (f'<details class="categories" data-src="{e(href)}">{summary}<div class="loaded-body">'
            f'<a href="{e(href)}">open the list</a></div></details>')


def _weights_facts(w: dict[str, Any]) -> dict[str, str]:
    """What the card says of weights `w` besides its categories, as HTML by label: only what it has."""
    meta, size = w["meta"], file_bytes(w)
    facts = {"task": e(w["task"]),
             "file": f'{size_text(size) if size else "size not known until fetched"} · {file_words(w["url"])}',
             "SHA-256": f'<code class="sha256">{e(w["sha256"] or "not known until the file is fetched and verified")}'
                        '</code>',
             "claimed metrics": f"<ul>{_metrics_list(meta.get('_metrics', {}))}</ul>",
             "preprocessing": e(preprocessing_words(w["transforms"])),
             "recipe": _link_or_text(meta.get("recipe")), "docs": docs_html(str(meta.get("_docs") or "")),
             "GFLOPS": e(meta.get("_ops")), "license": _link_or_text(meta.get("license"))}
    return {label: html for label, html in facts.items()
            if html not in ("", "<ul></ul>", '<div class="docs"></div>')}


def _facts_list(facts: dict[str, str]) -> str:
    return "".join(f"<dt>{e(label)}</dt><dd>{html}</dd>" for label, html in facts.items())


def _weights_section(record: dict[str, Any], measurements: Sequence[dict[str, Any]],
                     exports: Sequence[dict[str, Any]]) -> str:
    """Each weights entry: what it alone has (what all have in common said once before them), what
    ``zoo eval --record`` measured of it, and how to use it."""
    weights = record["weights"]
    if not weights:
        return "<p>No pretrained weights.</p>"
    facts = [_weights_facts(w) for w in weights]
    first: dict[tuple[str, ...], str] = {}
    if len({_category_list(w) for w in weights}) == 1:
        facts[0]["categories"] = _categories(record, weights[0], first)
        facts[1:] = [{**f, "categories": facts[0]["categories"]} for f in facts[1:]]
    else:
        facts = [{**f, "categories": _categories(record, w, first)} for f, w in zip(facts, weights)]
    facts = [{label: html for label, html in f.items() if html} for f in facts]
    shared = {label: html for label, html in facts[0].items()
              if len(facts) > 1 and all(f.get(label) == html for f in facts[1:])}
    common = f'<dl class="common">{_facts_list(shared)}</dl>' if shared else ""
    items = []
    for w, own in zip(weights, facts):
        measured = _measured(measurements, w["name"])
        items.append(
            f'<section class="weights" id="weights-{e(w["name"])}" data-weights="{e(w["name"])}"><h3>{e(w["name"])}'
            f'{" <small>default</small>" if w["is_default"] else ""}</h3>'
            f'<dl>{_facts_list({k: v for k, v in own.items() if k not in shared})}'
            f'{f"<dt>measured metrics</dt><dd>{measured}</dd>" if measured else ""}</dl>'
            f'{usage_snippet(_usage_lines(record["name"], w["name"], exports), "using " + w["name"])}</section>')
    intro = f"<p>Common to all {len(weights)}:</p>" if shared else ""
    return intro + common + "".join(items)


def _published_section(record: dict[str, Any], measurements: Sequence[dict[str, Any]],
                       exports: Sequence[dict[str, Any]]) -> str:
    """The published versions: a table (the file to download, what each was fine-tuned from, claimed metrics,
    then those measured), how to use each, then the lineage of each that has one (`_lineage_section`)."""
    published = record["published"]
    if not published:
        return "<p>Nothing published for this model.</p>"
    rows = "".join(
        f'<tr id="published-{e(p["spec"])}"><td>{e(p["spec"])}</td>'
        f'<td>{e(", ".join("@" + a for a in p["aliases"]))}</td>'
        f'<td><code class="sha256">{e(p["sha256"])}</code></td>'
        f'<td class="num">{size_text(p["size"])} · <a class="download" href="/api/v1/weights/{e(p["sha256"])}" '
        f'download>download</a></td>'
        f'<td class="from">{_parent_link(record, p["from_weights"]) if p["from_weights"] else ""}</td>'
        f'<td>{e(", ".join(f"{k} {v:g}" for k, v in p["metrics"].items()))}'
        f'{_measured(measurements, p["spec"], "measured: ")}</td>'
        f'<td>{e(p["description"])}</td><td>{e(p["created_at"][:10])}</td></tr>' for p in published)
    usage = "".join(f'<figure class="usage-published" data-spec="{e(p["spec"])}"><figcaption>Using '
                    f'{e(p["spec"])}</figcaption>'
                    f'{usage_snippet(_usage_lines(record["name"], p["spec"], exports), "using " + p["spec"])}</figure>'
                    for p in published)
    lineages = "".join(_lineage_section(record, PublishedWeights.from_json(p)) for p in published)
    table = ('<table id="published"><thead><tr><th>version</th><th>aliases</th><th>SHA-256</th><th>file</th>'
             '<th>fine-tuned from</th><th>metrics</th><th>description</th><th>published</th></tr></thead>'
             f'<tbody>{rows}</tbody></table>')
    return scrolling("published versions", table) + usage + lineages


def _lineage_section(record: dict[str, Any], p: PublishedWeights) -> str:
    """What published version `p` (of `record`'s model) was made from: the weights it was fine-tuned from,
    linked (`_parent_link`), its data and training in words, and its training curves (`curves_svg`); empty
    for a version that records none of it."""
    if p.from_weights is None and p.run is None:
        return ""
    parent = _parent_link(record, p.from_weights) if p.from_weights else "random initialisation"
    sha = f' <code class="sha256">{e(p.base_sha256)}</code>' if p.base_sha256 else ""
    facts = "".join(f"<dt>{e(key)}</dt><dd>{e(text)}</dd>" for key, text in p.lineage().items())
    epochs = p.run_epochs()
    return (f'<section class="lineage" id="lineage-{e(p.spec)}" data-spec="{e(p.spec)}"><h3>{e(p.spec)}</h3>'
            f'<dl><dt>fine-tuned from</dt><dd class="parent">{parent}{sha}</dd>{facts}</dl>'
            f'{curves_svg(epochs, p.spec) if epochs else ""}</section>')


def _parent_link(record: dict[str, Any], parent: str) -> str:
    """`parent` (weights of `record`'s model, or a published spec) linked: to its section of this card, or to
    the published version's record in the API when this card does not show it."""
    if any(w["name"] == parent for w in record["weights"]):
        href = f"#weights-{quote(parent, safe='/:@.')}"
    elif any(p["spec"] == parent for p in record["published"]):
        href = f"#published-{quote(parent, safe='/:@.')}"
    elif is_spec(parent):
        spec = parse_spec(parent)
        href = f"/api/v1/published/{quote(spec.namespace)}/{quote(spec.name)}" + (
            f"/versions/{spec.version}" if spec.version is not None else "")
    else:
        return e(parent)
    return f'<a href="{e(href)}" rel="parent">{e(parent)}</a>'


_CW, _CH, _PAD = 300, 210, 36  # one panel of the training curves: width, height, margin for the axes


def curves_svg(epochs: Sequence[dict[str, float]], title: str) -> str:
    """Training curves as an inline SVG (no script, no external file; it scales to its container's width): val
    acc@1 per epoch on the left, train and val loss on the right, one point per epoch and series that has it."""
    numbers = [(m.get("epoch", i + 1), m) for i, m in enumerate(epochs)]  # (epoch, its metrics)
    first, last = min(n for n, _ in numbers), max(n for n, _ in numbers)

    def panel(left: float, name: str, series: Sequence[tuple[str, str]], low: float, high: float) -> str:
        def sx(epoch: float) -> float:  # one epoch alone: in the middle
            share = (epoch - first) / (last - first) if last != first else 0.5
            return left + _PAD + share * (_CW - 1.5 * _PAD)

        def sy(value: float) -> float:
            return _CH - _PAD - (value - low) / ((high - low) or 1) * (_CH - 1.5 * _PAD)

        legend = " ".join(f'<tspan class="{_CURVE_CLASSES[key]}">{e(label)}</tspan>' for key, label in series)
        parts = [f'<text x="{left + _CW / 2:.1f}" y="14" text-anchor="middle" class="axis">{e(name)}: {legend}</text>',
                 (f'<line x1="{left + _PAD}" x2="{left + _CW - _PAD / 2}" y1="{sy(low):.1f}" y2="{sy(low):.1f}" '
                  'class="grid"/>'),
                 f'<text x="{left + _PAD - 4}" y="{sy(high) + 4:.1f}" text-anchor="end" class="tick">{high:.3g}</text>',
                 f'<text x="{left + _PAD - 4}" y="{sy(low) + 4:.1f}" text-anchor="end" class="tick">{low:.3g}</text>',
                 f'<text x="{sx(first):.1f}" y="{_CH - _PAD + 14}" text-anchor="middle" class="tick">{first:g}</text>',
                 f'<text x="{sx(last):.1f}" y="{_CH - _PAD + 14}" text-anchor="middle" class="tick">{last:g}</text>',
                 f'<text x="{left + _CW / 2:.1f}" y="{_CH - 4}" text-anchor="middle" class="axis">epoch</text>']
        for key, label in series:
            points = [(n, m[key]) for n, m in numbers if key in m]
            line = " ".join(f"{sx(n):.1f},{sy(v):.1f}" for n, v in points)
            parts.append(f'<polyline points="{line}" class="{_CURVE_CLASSES[key]}"/>')
            parts += [f'<circle cx="{sx(n):.1f}" cy="{sy(v):.1f}" r="2.5" class="{_CURVE_CLASSES[key]}" '
                      f'data-epoch="{n:g}"><title>epoch {n:g}: {e(label)} {v:.4g}</title></circle>' for n, v in points]
        return "".join(parts)

    accs = [m["acc@1"] for m in epochs if "acc@1" in m]
    losses = [m[k] for m in epochs for k in ("train_loss", "val_loss") if k in m]
    acc = panel(0, "percent", [("acc@1", "val acc@1")], *((min(accs), max(accs)) if accs else (0, 100)))
    loss = panel(_CW, "loss", [("train_loss", "train loss"), ("val_loss", "val loss")],
                 0.0, max(losses, default=1.0))
    return (f'<svg class="curves" viewBox="0 0 {2 * _CW} {_CH}" width="100%" role="img" '
            f'xmlns="http://www.w3.org/2000/svg"><title>training curves of {e(title)}</title>{acc}{loss}</svg>')


#: The class of each training curve's line, points and legend (`curves_svg`; the stylesheet colours them).
_CURVE_CLASSES = {"acc@1": "acc1", "train_loss": "train-loss", "val_loss": "val-loss"}


def verification_words(verified_by: str | None) -> str:
    """Who verified a published export (`zoo.records.PublishedExport.verified_by`), for people."""
    if verified_by == VERIFIED_BY_REGISTRY:
        return "verified by this registry against PyTorch when it was published"
    return "claimed by its publisher, not verified again by this registry"


def _exports_section(exports: Sequence[dict[str, Any]]) -> str:
    if not exports:
        return "<p>No published exports.</p>"
    items = []
    for x in exports:
        checks = "".join(
            f'<tr><td>{e(c.get("name"))}</td><td>{e("x".join(map(str, c.get("input_shape", []))))}</td>'
            f'<td class="num">{c.get("max_abs_error", 0):.3g}</td><td class="num">{c.get("max_rel_error", 0):.3g}</td>'
            f'<td>{"passed" if c.get("passed") else "FAILED"}</td></tr>'
            for c in x["metadata"].get("verification", []) if isinstance(c, dict))
        sha = e(x["sha256"])
        table = ('<table class="checks"><thead><tr><th>output</th><th>input</th><th>max abs error</th>'
                 f'<th>max rel error</th><th>verification</th></tr></thead><tbody>{checks}</tbody></table>')
        items.append(
            f'<section class="export" data-sha256="{sha}"><h3>{e(x["weights"])} · opset '
            f'{e(x["metadata"].get("opset", "?"))}</h3><p><code class="sha256">{sha}</code> · {size_text(x["size"])} · '
            f'<a href="/graph/{sha}/">graph</a> · <a href="/try?export={sha}">try it</a> · '
            f'<a href="/api/v1/exports/{sha}/file" download="{sha[:12]}.onnx">download</a></p>'
            f'<p class="verified-by" data-verified-by="{e(x["verified_by"])}">'
            f'{e(verification_words(x["verified_by"]))}. The checks the file records:</p>'
            f'{scrolling(f"checks of {sha[:12]}", table)}</section>')
    return "".join(items)


def card_page(record: dict[str, Any], exports: Sequence[dict[str, Any]],
              measurements: Sequence[dict[str, Any]] = ()) -> str:
    """A model's card: its catalog record (claimed metrics and those `measurements` measured), published
    versions, exports and (fetched) per-layer summary."""
    plugin = record["plugin"]
    facts = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in (
        ("qualified name", e(record["qualified_name"])), ("task", e(record["task"])),
        ("plugin", e(f'{plugin["namespace"]} ({plugin["distribution"] or plugin["name"]} {plugin["version"] or ""})')),
        ("parameters", f'{human(record["num_params"])} <small>{e(record["num_params"])}</small>'
                       if record["num_params"] is not None else ""),
        ("builder", f'<code>{e(record["builder"])}</code>'), ("tags", e(", ".join(record["tags"] or []))),
        ("input size", e("x".join(map(str, record["input_size"] or [])) or "any")),
        ("providers", e(", ".join(record["providers"])))) if v)
    name = quote(record["name"])
    body = (f'<h1 id="model-name">{e(record["name"])}</h1><dl class="facts">{facts}</dl>'
            f'<h2>Weights</h2>{_weights_section(record, measurements, exports)}'
            f'<h2>Published versions</h2>{_published_section(record, measurements, exports)}'
            f'<h2>Exports</h2>{_exports_section(exports)}'
            f'<h2>Layers</h2><details id="layers" data-src="/layers/{name}"><summary>per-layer summary '
            f'(builds the model on the server)</summary><div class="loaded-body"><a href="/layers/{name}">open</a>'
            f'</div></details>')
    return layout(record["name"], body, scripts=["card.js"])


def layers_page(name: str, summary: dict[str, Any] | None, reason: str | None) -> str:
    """The per-layer summary of model `name` as a page of its own, linked back to its card; the card's script
    shows its ``.fragment`` in the card."""
    body = (f'<h1>{e(name)}: layers</h1><p><a href="/models/{quote(name)}">Back to the card of {e(name)}</a></p>'
            f'<div class="fragment">{layers_fragment(summary, reason)}</div>')
    return layout(f"{name}: layers", body)


def categories_page(name: str, weights: str, categories: Sequence[str]) -> str:
    """The categories of weights `weights` of model `name`, numbered as the head's outputs are, as a page of its
    own linked back to the card; the card's script shows its ``.fragment`` in the card when opened."""
    items = "".join(f"<li>{e(c)}</li>" for c in categories)
    body = (f'<h1>{e(weights)}: categories</h1><p><a href="/models/{quote(name)}#weights-{e(quote(weights))}">'
            f'Back to the card of {e(name)}</a></p><div class="fragment"><ol class="categories" start="0">'
            f'{items}</ol></div>')
    return layout(f"{weights}: categories", body)


def layers_fragment(summary: dict[str, Any] | None, reason: str | None) -> str:
    """The per-layer summary (`zoo.tools.summary.ModelSummary.to_json`) as a table, or why there is none."""
    if summary is None:
        return f'<p class="unavailable">{e(reason)}</p>'
    rows = "".join(f'<tr><td><code>{e(r["path"] or "(model)")}</code></td><td>{e(r["type"])}</td>'
                   f'<td>{e(r["output_shape"])}</td><td class="num">{r["params"]:,}</td>'
                   f'<td>{e(r["trainable"])}</td></tr>' for r in summary["layers"])
    totals = summary["totals"]
    table = ('<table class="layers"><thead><tr><th>module</th><th>type</th><th>output</th><th>params</th>'
             f'<th>trainable</th></tr></thead><tbody>{rows}</tbody></table>')
    return (f'<p>input {e(summary["inputs"])}: {totals["params"]:,} parameters, '
            f'{size_text(totals["activation_bytes"])} of activations</p>{scrolling("layers", table)}')


# -- try it -----------------------------------------------------------------------------------


def try_page(exports: Iterable[dict[str, Any]], samples: Sequence[str], chosen: str | None, max_bytes: int) -> str:
    """Pick an export and an image (uploaded or a bundled sample); the script posts it and shows the drawing."""
    exports = list(exports)
    options = "".join(
        f'<option value="{e(x["sha256"])}" data-verified-by="{e(x["verified_by"])}"'
        f'{" selected" if x["sha256"] == chosen else ""}>{e(x["model"])} · {e(x["weights"])} · '
        f'{e(x["metadata"].get("task", ""))} · {e(x["sha256"][:12])} · '
        f'{"verified" if x["verified_by"] == VERIFIED_BY_REGISTRY else "claimed, not verified"}</option>'
        for x in exports)
    if not options:
        return layout("Try it", "<h1>Try it</h1><p>No export is published yet: <code>zoo publish export FILE</code> "
                                "a verified export first.</p>", active="try")
    pictures = "".join(
        f'<label class="sample"><input type="radio" name="sample" value="/static/samples/{e(s)}"'
        f'{" checked" if i == 0 else ""}><img src="/static/samples/{e(s)}" alt="{e(s)}" width="96"></label>'
        for i, s in enumerate(samples))
    body = (f'<h1>Try it</h1><form id="try" data-max-bytes="{max_bytes}" autocomplete="off"><label>Export '
            f'<select id="export" '
            f'name="export">{options}</select></label><fieldset><legend>Image</legend>{pictures}<label>or upload '
            f'<input type="file" id="upload" accept="image/*"></label></fieldset><button type="submit">Predict'
            f'</button></form>{_claimed_note(exports)}<p id="status" role="status"></p><div class="drawn" hidden>'
            f'<p id="summary"></p><img id="drawn" alt=""><details><summary>the result as data (JSON)</summary>'
            f'<pre id="result" tabindex="0" aria-label="the result as data"></pre></details></div>')
    return layout("Try it", body, active="try", scripts=["try.js"])


def _claimed_note(exports: Sequence[dict[str, Any]]) -> str:
    """What "verified" and "claimed" mean in the try page's list, where any export is only claimed."""
    claimed = [x for x in exports if x["verified_by"] != VERIFIED_BY_REGISTRY]
    if not claimed:
        return ""
    verified = verification_words(VERIFIED_BY_REGISTRY)
    return (f'<p id="verification-note" class="note">Exports marked "verified" were {verified}. '
            f'{len(claimed)} marked "claimed" {"was" if len(claimed) == 1 else "were"} verified by their publisher '
            f'only: this registry could not run their model to check them, so their predictions may not be what '
            f'the model gives.</p>')
