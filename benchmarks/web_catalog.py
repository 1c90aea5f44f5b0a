"""The web catalog's page loads in Chromium on a catalog of 10,000 models.

Installs the fixture plugin ``tests/plugins/zoo-fixture-many`` (as benchmarks/catalog_scale.py
does), syncs a SQLite catalog with it, starts ``zoo serve`` on it, and loads pages of the web
catalog in the installed Chromium driven by Playwright (tests/browser.py: every request to
another server aborted), `--loads` times each after one warm-up load. For each page: the
server's answer (request sent to first byte), navigation start to the load event, and to the
table rendered (the ``zoo-table-rendered`` mark the page's script sets once the table or plot is
in the document); medians and 90th percentiles in milliseconds. Prints a markdown table and
writes ``benchmarks/results/web_catalog.md``.

    .venv/bin/python benchmarks/web_catalog.py [--models 10000] [--loads 20]

Issue 15's target: the catalog page (first page, 10,000 models) loads in under 1 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from _measure import ROOT, child_env, machine_line, markdown_table, median_p90, run_child, write_result, zoo_argv
from catalog_scale import install_fixture

sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the tests' browser harness and server launcher, as pytest sees them
from tests.browser import chromium, offline_page  # noqa: E402
from tests.test_serve import start_service  # noqa: E402

#: The pages loaded, by label: the catalog's first page, sorted, filtered, far pages, and the compare plot.
PAGES = {
    "catalog, first page (by name)": "/",
    "sorted by best metric, descending": "/?sort=metric&order=desc",
    "sorted by parameters, 500 rows": "/?sort=params&order=desc&per=500",
    "task filter and max params": "/?task=embedding&max_params=20000",
    "pattern matching ten names": "/?q=many_*_0001%3F",
    "page 200 of 200": "/?page=200",
    "compare view, task=detection (2,500 points)": "/compare?task=detection",
}
TARGET_MS = 1000.0
#: Read in the page after its load event: navigation timings and the page's own mark, in ms since navigation start.
_TIMINGS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const mark = performance.getEntriesByName("zoo-table-rendered")[0];
  return {server: nav.responseStart - nav.requestStart, load: nav.loadEventEnd,
          table: mark ? mark.startTime : null, rows: document.querySelectorAll("#catalog tbody tr, #plot circle").length};
}"""


def load_times(origin: str, loads: int) -> dict[str, dict[str, Any]]:
    """Each page's median and p90 of server, load and table times over `loads` loads (after a warm-up)."""
    results: dict[str, dict[str, Any]] = {}
    with chromium() as browser:
        page, elsewhere = offline_page(browser, origin)
        for label, path in PAGES.items():
            samples: dict[str, list[float]] = {"server": [], "load": [], "table": []}
            for i in range(loads + 1):
                page.goto(origin + path, wait_until="load")
                page.wait_for_function("() => performance.getEntriesByType('navigation')[0].loadEventEnd > 0")
                timing = page.evaluate(_TIMINGS)
                if i:  # the first load warms the server's caches and the browser's static files
                    for key in samples:
                        samples[key].append(timing[key])
            results[label] = {"rows": timing["rows"], **{key: median_p90(values) for key, values in samples.items()}}
        if elsewhere:
            raise SystemExit(f"the pages asked for other servers: {elsewhere[:5]}")
    return results


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), which `machine_line` does not say; and that no GPU is used."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "CPU model unknown; no GPU used"
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")
    return f"CPU: {name}; no GPU used (Chromium runs with --disable-gpu)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000, help="models the fixture plugin registers")
    parser.add_argument("--loads", type=int, default=20, help="timed loads of each page (default 20)")
    parser.add_argument("--output", default="web_catalog.md", help="path under benchmarks/results/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder, site = Path(tmp), Path(tmp) / "site"
        install_fixture(site)
        path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(site)) if p)
        env = {"PYTHONPATH": path, "ZOO_LOAD_PLUGINS": "many", "ZOO_FIXTURE_MANY": str(args.models),
               "ZOO_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}", "ZOO_ARTIFACTS": str(folder / "artifacts")}
        synced = run_child(zoo_argv("sync"), child_env(**env), folder)
        service = start_service(env, folder / "serve.log")
        try:
            results = load_times(service.url, args.loads)
        finally:
            service.stop()
    rows = [[label, f"`{PAGES[label]}`", r["rows"], *(f"{r[key][0]:.0f} / {r[key][1]:.0f}" for key in
                                                     ("server", "table", "load"))] for label, r in results.items()]
    first = results["catalog, first page (by name)"]["load"]
    text = "\n".join([
        f"The web catalog's pages in Chromium (headless, Playwright; requests to other servers blocked) on a SQLite "
        f"catalog of {args.models:,} models (zoo-fixture-many), served by one `zoo serve` process; {args.loads} loads "
        "of each page after one warm-up; median / p90 in milliseconds since navigation start.",
        "",
        markdown_table(["page", "URL", "rows (points)", "server answer (ms)", "table rendered (ms)", "load event (ms)"],
                       rows),
        "",
        f"Target: the catalog page loads in under {TARGET_MS:.0f} ms: median {first[0]:.0f} ms, p90 {first[1]:.0f} ms "
        f"({'met' if first[1] < TARGET_MS else 'NOT met'}).",
        f"`zoo sync` of the catalog: {synced.wall_s:.1f} s.",
        "",
        machine_line(),
        cpu_model(),
    ])
    write_result(args.output, text)


if __name__ == "__main__":
    main()
